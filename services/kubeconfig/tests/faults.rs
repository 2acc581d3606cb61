//! What the service does when what it depends on is away: readiness waits for identity's events,
//! a download without identity is a clear 503, NATS coming back resumes the view, and a stream
//! reset under the service makes it fail closed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn readyz(h: &Harness) -> Value {
    let url = format!("http://127.0.0.1:{}/readyz", h.svc.admin_port);
    match reqwest::get(url).await {
        Ok(resp) => resp.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn download_status(h: &Harness, session: &str) -> (u16, Value) {
    let resp = h.download(Some(session), "", Some("text/yaml")).await;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_identity_and_downloads_fail_clearly_without_it() {
    let mut h = Harness::start_with(Options { kubeconfig_first: true, ..Default::default() }).await;

    // Without identity's stream the service is up but not ready, and says why.
    let report = kubegate_testsupport::wait::until(
        "the event store to be replayed",
        Duration::from_secs(30),
        || async {
            let r = readyz(&h).await;
            (r["checks"]["event-store"]["ok"] == true).then_some(r)
        },
    )
    .await;
    assert_eq!(report["ready"], false, "{report}");
    assert_eq!(report["checks"]["identity-projection"]["ok"], false, "{report}");

    h.identity.start_ready(Duration::from_secs(60));
    h.svc.wait_ready(Duration::from_secs(30));
    let admin = h.admin().await;
    h.wait_known(&admin).await;
    h.environment(&admin, "demo").await;
    assert_eq!(download_status(&h, &admin).await.0, 200);

    // Identity away: the token cannot be issued.
    assert_eq!(h.identity.terminate(Duration::from_secs(20)), Some(0));
    let (status, body) = download_status(&h, &admin).await;
    assert_eq!((status, body), (503, json!({"message": "the identity service did not answer; try again"})));
    assert!(h.svc.is_ready(), "the view of identity is still good");
    h.identity.start_ready(Duration::from_secs(60));
    kubegate_testsupport::wait::until("downloads to work again", Duration::from_secs(15), || async {
        (download_status(&h, &admin).await.0 == 200).then_some(())
    })
    .await;

    // NATS bounced: the view resumes and learns what identity records afterwards.
    h.nats.stop();
    h.nats.start();
    let (_, bob) = h.user(&admin, "bob", "user").await;
    let (status, body) = download_status(&h, &bob).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("you have access to no environment yet; ask an admin to grant you one"))
    );
    kubegate_testsupport::wait::until(
        "admin downloads after the bounce",
        Duration::from_secs(15),
        || async { (download_status(&h, &admin).await.0 == 200).then_some(()) },
    )
    .await;

    // The identity stream deleted under the service: it stops trusting what it built from it.
    let bus = h.bus().await;
    bus.jetstream().delete_stream("KUBEGATE_IDENTITY").await.unwrap();
    kubegate_testsupport::wait::until("readiness to drop", Duration::from_secs(15), || async {
        (!h.svc.is_ready()).then_some(())
    })
    .await;
    let report = readyz(&h).await;
    assert_eq!(report["checks"]["identity-projection"]["ok"], false, "{report}");
    let (status, body) = download_status(&h, &admin).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("kubegate is still loading users"), "{body}");
}
