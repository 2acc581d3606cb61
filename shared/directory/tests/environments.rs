//! The environments snapshot: kubeconfig's writer keeps every event of the stream but the
//! downloads, and a reader loads it apart from the directory snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kubegate_bus::{Bus, NatsConfig, StreamDef};
use kubegate_directory::environments::{DOWNLOADED, EnvironmentLog};
use kubegate_directory::snapshot;
use kubegate_directory::writer::{self, WriterConfig};
use kubegate_events::environments::{
    AccessPolicySet, CredentialKind, EnvironmentEvent, EnvironmentRegistered, EnvironmentRenamed,
    KubeconfigDownloaded, SealedCredential,
};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use kubegate_testsupport::nats::NatsServer;
use tokio_util::sync::CancellationToken;

/// Position p of a made-up environments log: two environments, a policy and a rename among
/// downloads.
fn event(p: u64) -> EnvironmentEvent {
    match p {
        1 | 5 => EnvironmentEvent::EnvironmentRegistered(EnvironmentRegistered {
            environment_id: p,
            name: format!("env-{p}"),
            url: "https://127.0.0.1:6443".into(),
            ca_pem: None,
            insecure_skip_tls_verify: false,
            credential: SealedCredential("sealed".into()),
            credential_kind: CredentialKind::Token,
        }),
        3 => EnvironmentEvent::AccessPolicySet(AccessPolicySet {
            environment_id: 1,
            users: vec![],
            teams: vec![],
        }),
        9 => EnvironmentEvent::EnvironmentRenamed(EnvironmentRenamed {
            environment_id: 5,
            name: "renamed".into(),
        }),
        _ => EnvironmentEvent::KubeconfigDownloaded(KubeconfigDownloaded {
            user_id: 1,
            username: "alice".into(),
            environment_ids: vec![1],
            token_id: format!("t-{p}"),
            expires_at: None,
            client_address: "127.0.0.1".into(),
        }),
    }
}

async fn publish(bus: &Bus, positions: std::ops::RangeInclusive<u64>) -> Vec<RawEnvelope> {
    let events: Vec<_> = positions
        .map(|p| {
            let e = event(p);
            let subject = e.subject();
            let mut env = Envelope::new(format!("s-{p}"), Actor::system("kubeconfig"), "test", e);
            env.position = p;
            env.sequence = 1;
            (subject, env.to_raw().unwrap())
        })
        .collect();
    let refs: Vec<(&str, &RawEnvelope)> = events.iter().map(|(s, e)| (*s, e)).collect();
    bus.publish_events(&refs).await.unwrap();
    events.into_iter().map(|(_, e)| e).collect()
}

#[tokio::test]
async fn the_environments_snapshot_holds_every_event_but_the_downloads() {
    let nats = NatsServer::start_new();
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "environments-test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(10)).await);
    bus.ensure_stream(&StreamDef::environments()).await.unwrap();
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    let events = publish(&bus, 1..=12).await;
    let stop = CancellationToken::new();
    let config =
        WriterConfig { every: 4, max_age: Duration::from_secs(3600), check: Duration::from_millis(50) };
    let task = tokio::spawn(writer::run::<EnvironmentLog>(bus.clone(), config, || true, stop.clone()));
    let mark = kubegate_testsupport::wait::until(
        "a snapshot at the stream's end",
        Duration::from_secs(20),
        || async {
            snapshot::latest_mark_of::<EnvironmentLog>(&bus)
                .await
                .ok()
                .flatten()
                .filter(|m| m.stream_sequence == 12)
        },
    )
    .await;
    assert_eq!((mark.position, mark.event_id), (12, events[11].id));

    let loaded = snapshot::load_of::<EnvironmentLog>(&bus).await.unwrap().unwrap();
    let kept: Vec<u64> = loaded.state.events.iter().map(|e| e.position).collect();
    assert_eq!(kept, vec![1, 3, 5, 9], "every event but the downloads, in position order");
    assert!(loaded.state.events.iter().all(|e| e.event_type != DOWNLOADED));
    let renamed = loaded.state.events[3].decode::<EnvironmentEvent>().unwrap();
    assert_eq!(renamed.event, event(9));
    // Apart from the directory snapshot: that one is not there.
    assert!(snapshot::latest_mark(&bus).await.unwrap().is_none());
    assert!(snapshot::load(&bus).await.unwrap().is_none());
    stop.cancel();
    task.await.unwrap();
}
