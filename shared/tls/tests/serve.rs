//! The dev PKI and the shared accept loop: TLS with ALPN, connection info, graceful drain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use kubegate_tls::{ConnInfo, DevPki, ServeOptions, client_config, serve_router, server_config};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn serves_https_with_the_dev_ca_and_drains_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let pki = DevPki::ensure(dir.path()).unwrap();
    let ca = std::fs::read_to_string(&pki.ca_cert).unwrap();
    // A second call keeps the same CA (users may already trust it).
    let again = DevPki::ensure(dir.path()).unwrap();
    assert_eq!(std::fs::read_to_string(&again.ca_cert).unwrap(), ca);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&pki.ca_key).unwrap().permissions().mode() & 0o777, 0o600);

    let tls = server_config(
        &std::fs::read_to_string(&pki.server_cert).unwrap(),
        &std::fs::read_to_string(&pki.server_key).unwrap(),
        &[b"h2", b"http/1.1"],
    )
    .unwrap();
    let router = Router::new()
        .route(
            "/who",
            get(|axum::Extension(info): axum::Extension<ConnInfo>| async move {
                format!("{} tls={}", info.remote.ip(), info.tls)
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve_router(listener, router, ServeOptions::tls(tls), shutdown.clone()));

    let client = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&ca, None, &[b"h2", b"http/1.1"]).unwrap())
        .build()
        .unwrap();
    let resp = client.get(format!("https://127.0.0.1:{}/who", addr.port())).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.text().await.unwrap(), "127.0.0.1 tls=true");

    // A request in flight when shutdown begins still completes.
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client.get(format!("https://localhost:{}/slow", addr.port())).send().await.unwrap().text().await
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    assert_eq!(slow.await.unwrap().unwrap(), "done");
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");

    // A client that does not trust the CA is refused.
    let other = kubegate_tls::DevCa::generate("other").unwrap();
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(other.cert_pem(), None, &[b"http/1.1"]).unwrap())
        .build()
        .unwrap();
    assert!(stranger.get(format!("https://127.0.0.1:{}/who", addr.port())).send().await.is_err());
}
