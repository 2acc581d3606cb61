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

/// Serving threads: each connection goes to the thread serving the fewest, stays there, and
/// every thread drains, then keeps running what its connections started until released.
#[tokio::test]
async fn serving_threads_share_connections_and_drain() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tunnel_finished = Arc::new(AtomicBool::new(false));
    let release_tunnel = CancellationToken::new();
    let router = Router::new()
        .route("/thread", get(|| async { kubegate_tls::serve::serving_thread().to_string() }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                kubegate_tls::serve::serving_thread().to_string()
            }),
        )
        .route(
            "/tunnel",
            get({
                let (finished, release) = (tunnel_finished.clone(), release_tunnel.clone());
                move || async move {
                    // Outlives its request, as a tunnel does.
                    tokio::spawn(async move {
                        release.cancelled().await;
                        finished.store(true, Ordering::SeqCst);
                    });
                    "started"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let make = move |info: ConnInfo| {
        let router = router.clone();
        tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info);
            tower::ServiceExt::oneshot(router.clone(), req)
        })
    };
    let mut serving =
        kubegate_tls::serve_on_threads(listener, 2, make, ServeOptions::plain(), shutdown.clone()).unwrap();
    assert_eq!(kubegate_tls::serve::serving_threads(), 2);

    // Two connections open at once go to different threads; each keeps its thread.
    let one = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let two = reqwest::Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", addr.port());
    let (a, b) =
        tokio::join!(async { one.get(url("/slow")).send().await.unwrap().text().await.unwrap() }, async {
            two.get(url("/slow")).send().await.unwrap().text().await.unwrap()
        },);
    let mut threads = [a.clone(), b.clone()];
    threads.sort();
    assert_eq!(threads, ["0".to_string(), "1".to_string()]);
    for _ in 0..5 {
        assert_eq!(one.get(url("/thread")).send().await.unwrap().text().await.unwrap(), a);
        assert_eq!(two.get(url("/thread")).send().await.unwrap().text().await.unwrap(), b);
    }
    assert_eq!(one.get(url("/tunnel")).send().await.unwrap().text().await.unwrap(), "started");

    // A request in flight when shutdown begins completes; then accepting stops.
    let slow = tokio::spawn({
        let one = one.clone();
        let url = url("/slow");
        async move { one.get(url).send().await.unwrap().text().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.cancel();
    assert_eq!(slow.await.unwrap().unwrap(), a);
    tokio::time::timeout(Duration::from_secs(5), serving.drained()).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed after shutdown");

    // The task a connection started still runs on its thread until the threads end.
    release_tunnel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(tunnel_finished.load(Ordering::SeqCst), "tasks run on after the drain");
    tokio::time::timeout(Duration::from_secs(5), serving.end()).await.unwrap();
}

/// Zero threads: served on the calling runtime, with the same drain.
#[tokio::test]
async fn zero_serving_threads_serve_on_the_calling_runtime() {
    let router = Router::new().route("/", get(|| async { "here" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let make = move |_: ConnInfo| {
        let router = router.clone();
        tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            tower::ServiceExt::oneshot(router.clone(), req)
        })
    };
    let serving =
        kubegate_tls::serve_on_threads(listener, 0, make, ServeOptions::plain(), shutdown.clone()).unwrap();
    let text =
        reqwest::get(format!("http://127.0.0.1:{}/", addr.port())).await.unwrap().text().await.unwrap();
    assert_eq!(text, "here");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), serving.end()).await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// The status a plain HTTP/1.1 server answers to a request carrying `fields` header fields.
async fn status_with_fields(addr: std::net::SocketAddr, fields: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = String::from("GET /ok HTTP/1.1\r\nHost: x\r\n");
    for i in 1..fields {
        request.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the connection closed before a status line");
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head).lines().next().unwrap().to_string();
    line.split(' ').nth(1).unwrap().to_string()
}

/// The limit on header fields holds at its default (hyper's own, not set on the builder) and
/// when set to another value: one field more is refused with 431 before any handler runs.
#[tokio::test]
async fn a_request_with_one_header_field_too_many_is_refused() {
    for (limit, opts) in
        [(100, ServeOptions::plain()), (20, ServeOptions { max_headers: 20, ..ServeOptions::plain() })]
    {
        assert_eq!(opts.max_headers, limit);
        let router = Router::new().route("/ok", get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_router(listener, router, opts, shutdown.clone()));
        assert_eq!(status_with_fields(addr, limit).await, "200", "{limit} fields, limit {limit}");
        assert_eq!(status_with_fields(addr, limit + 1).await, "431", "{} fields, limit {limit}", limit + 1);
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}
