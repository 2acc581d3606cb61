//! SQL migrations from `schemas/sql/eventstore/`, applied once each, in order, under a lock so
//! replicas starting together do not race.

use crate::store::{StoreError, pg_message};

/// (name, SQL) in the order they apply.
const MIGRATIONS: &[(&str, &str)] = &[
    ("eventstore/0001_events.sql", include_str!("../../../schemas/sql/eventstore/0001_events.sql")),
    (
        "eventstore/0002_append_function.sql",
        include_str!("../../../schemas/sql/eventstore/0002_append_function.sql"),
    ),
    (
        "eventstore/0003_the_log_is_the_outbox.sql",
        include_str!("../../../schemas/sql/eventstore/0003_the_log_is_the_outbox.sql"),
    ),
];

const MIGRATION_LOCK: i64 = 0x6b67_6d69_6772_6174; // "kgmigrat"

pub(crate) async fn apply(client: &mut deadpool_postgres::Client) -> Result<(), StoreError> {
    let unavailable = |e: tokio_postgres::Error| StoreError::Unavailable(pg_message(&e));
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(unavailable)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS kubegate_schema_migrations (
             name TEXT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(unavailable)?;
    for (name, sql) in MIGRATIONS {
        let done = tx
            .query_opt("SELECT 1 FROM kubegate_schema_migrations WHERE name = $1", &[name])
            .await
            .map_err(unavailable)?;
        if done.is_some() {
            continue;
        }
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Migration(format!("{name}: {}", pg_message(&e))))?;
        tx.execute("INSERT INTO kubegate_schema_migrations (name) VALUES ($1)", &[name])
            .await
            .map_err(unavailable)?;
        tracing::info!(migration = name, "applied migration");
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(())
}
