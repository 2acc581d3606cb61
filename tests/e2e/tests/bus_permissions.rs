//! The bus as a trust boundary, on the whole stack: NATS with TLS and one user per service, with
//! the permissions of `deploy/kubernetes/base/nats/auth.conf` (rendered through
//! `deploy/local/nats.conf.in`, as `make up` does). The stack works as usual through it; the
//! proxy's credential cannot mint a token, forge an identity or environment event, delete a
//! stream or read another service's private subjects (token requests, reply inboxes); a client
//! without credentials, with a wrong password or without TLS cannot connect at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt;
use kubegate_bus::{Bus, NatsConfig};
use kubegate_e2e::*;
use kubegate_events::identity::{IdentityEvent, UserDisabled};
use kubegate_events::{Actor, Envelope};
use serde_json::{Value, json};

const TOKEN_SUBJECT: &str = "kubegate.rpc.identity.kubeconfig-token.issue";

async fn refused(config: NatsConfig) -> bool {
    match Bus::connect(&config).await {
        Ok(bus) => !bus.wait_connected(Duration::from_secs(2)).await,
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_bus_credential_can_do_only_the_proxys_part() {
    let stack = Stack::start(Options {
        proxies: 1,
        environments: 1,
        load_balancer: false,
        nats_users: true,
        nats_tls: true,
        ..Options::default()
    })
    .await;
    // The whole flow works through the permissioned bus: events, token requests, audit.
    let env = stack.register(0, "one").await;
    let proxy = stack.bus_as(Some("kubegate-proxy")).await;
    let mut snoops = Vec::new();
    for subject in
        [TOKEN_SUBJECT, "_INBOX_kubegate_kubeconfig.>", "_INBOX_kubegate_identity.>", "_INBOX.>", ">"]
    {
        snoops.push((subject, proxy.client().subscribe(subject).await.unwrap()));
    }
    let kc = stack.kubeconfig_file(&stack.admin, &[env], "admin").await;
    stack.wait_environment_everywhere(&kc).await;
    let out = ok(kubectl(33, &kc, &["get", "pods", "-n", "default"]));
    assert!(out.contains("nginx"), "{out}");
    let audit = stack.bus().await;
    let records = stack.stream(&audit, "KUBEGATE_AUDIT", 1, Duration::from_secs(20)).await;
    assert!(records.iter().any(|r| r.event_type == "RequestAudited"));

    // The token request and its answer (identity → kubeconfig) were not readable by the proxy.
    for (subject, mut sub) in snoops {
        let read = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
        assert!(read.is_err(), "the proxy's credential read {subject}");
    }

    // It cannot ask for a token.
    let asked = proxy
        .request::<Value, Value>(TOKEN_SUBJECT, &json!({"userId": 1}), "e2e", Duration::from_secs(2))
        .await;
    assert!(asked.is_err(), "the proxy's credential obtained a token: {asked:?}");

    // It cannot publish an identity or environment event, through JetStream or plainly.
    let identity_before = audit.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
    let environments_before = audit.last_sequence("KUBEGATE_ENVIRONMENTS").await.unwrap();
    let mut forged = Envelope::new(
        "user-1",
        Actor::system("intruder"),
        "forged",
        IdentityEvent::UserDisabled(UserDisabled { user_id: 1 }),
    );
    forged.sequence = 99;
    forged.position = identity_before + 1;
    let raw = forged.to_raw().unwrap();
    for subject in ["kubegate.identity.user.disabled", "kubegate.environments.environment.removed"] {
        let published = proxy.publish_events(&[(subject, &raw)]).await;
        assert!(published.is_err(), "the proxy's credential published on {subject}");
        proxy.client().publish(subject, raw.to_vec().into()).await.unwrap();
    }
    proxy.client().flush().await.unwrap();
    // Nor delete or purge another service's stream.
    assert!(proxy.jetstream().delete_stream("KUBEGATE_IDENTITY").await.is_err());
    // Give a forged message every chance to land before looking.
    let _ = tokio::time::timeout(Duration::from_millis(300), futures::future::pending::<()>()).await;
    assert_eq!(
        audit.last_sequence("KUBEGATE_IDENTITY").await.unwrap(),
        identity_before,
        "forged identity event"
    );
    assert_eq!(
        audit.last_sequence("KUBEGATE_ENVIRONMENTS").await.unwrap(),
        environments_before,
        "forged environment event"
    );
    // The token still works: nothing forged reached the replica.
    let token = token_of(&kc);
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/default/pods")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Without credentials, with a wrong password, or without TLS: no connection at all.
    let access = &stack.nats_access;
    assert!(refused(access.config(None, "anonymous")).await, "a client without credentials connected");
    let mut wrong = access.config(Some("kubegate-proxy"), "guesser");
    wrong.password = Some("guess".into());
    assert!(refused(wrong).await, "a wrong password connected");
    let mut plain = access.config(Some("kubegate-proxy"), "plain");
    plain.url = plain.url.replace("tls://", "nats://");
    plain.tls_ca = None;
    assert!(refused(plain).await, "a client without TLS connected");
}
