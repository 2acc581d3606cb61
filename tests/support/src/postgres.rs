//! A fresh PostgreSQL database per test on the machine's server (`KUBEGATE_TEST_PG`, default
//! `host=127.0.0.1 port=5432 user=postgres`), dropped when the handle is dropped.

use tokio_postgres::NoTls;

pub struct TestDb {
    pub name: String,
    admin_dsn: String,
}

fn admin_dsn() -> String {
    std::env::var("KUBEGATE_TEST_PG").unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres".to_string())
}

impl TestDb {
    /// Creates database `kg_<random>`.
    pub async fn create() -> TestDb {
        Self::create_on(&admin_dsn()).await
    }

    /// Creates database `kg_<random>` on the server `admin` (`host=… port=… user=…`) names.
    pub async fn create_on(admin: &str) -> TestDb {
        let admin = admin.to_string();
        let name = format!("kg_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) = tokio_postgres::connect(&format!("{admin} dbname=postgres"), NoTls)
            .await
            .expect("connect to PostgreSQL (is it running on 127.0.0.1:5432?)");
        let task = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        drop(client);
        let _ = task.await;
        TestDb { name, admin_dsn: admin }
    }

    /// A libpq-style connection string for this database.
    pub fn dsn(&self) -> String {
        format!("{} dbname={}", self.admin_dsn, self.name)
    }

    /// A `postgres://` URL for this database.
    pub fn url(&self) -> String {
        let mut host = "127.0.0.1".to_string();
        let mut port = "5432".to_string();
        let mut user = "postgres".to_string();
        for part in self.admin_dsn.split_whitespace() {
            if let Some((k, v)) = part.split_once('=') {
                match k {
                    "host" => host = v.to_string(),
                    "port" => port = v.to_string(),
                    "user" => user = v.to_string(),
                    _ => {}
                }
            }
        }
        format!("postgres://{user}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dsn = format!("{} dbname=postgres", self.admin_dsn);
        let name = self.name.clone();
        // Drop runs outside any runtime guarantee: use a short-lived thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok((client, conn)) = tokio_postgres::connect(&dsn, NoTls).await {
                        tokio::spawn(conn);
                        let _ = client
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
