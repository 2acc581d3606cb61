//! The bus adapter against a real nats-server: feeds, reset detection, request/reply.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kubegate_bus::{Bus, FeedError, FeedItem, NatsConfig, RpcError, RpcFailure, StreamDef};
use kubegate_events::identity::{IdentityEvent, UserDisabled};
use kubegate_events::{Actor, DomainEvent, Envelope, RawEnvelope};
use kubegate_testsupport::nats::NatsServer;
use tokio_util::sync::CancellationToken;

async fn bus(nats: &NatsServer) -> Bus {
    let bus = Bus::connect(&NatsConfig::new(nats.url(), "test")).await.unwrap();
    assert!(bus.wait_connected(Duration::from_secs(5)).await);
    bus
}

fn raw(position: u64) -> RawEnvelope {
    let mut e = Envelope::new(
        "user-1",
        Actor::system("test"),
        "c",
        IdentityEvent::UserDisabled(UserDisabled { user_id: position }),
    );
    e.id = uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + u128::from(position));
    e.sequence = position;
    e.position = position;
    e.to_raw().unwrap()
}

async fn publish(bus: &Bus, from: u64, to: u64) {
    let events: Vec<RawEnvelope> = (from..=to).map(raw).collect();
    let items: Vec<(&str, &RawEnvelope)> =
        events.iter().map(|e| ("kubegate.identity.user.disabled", e)).collect();
    // Right after a NATS restart JetStream may take a moment to answer: retry like the relay does.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while let Err(e) = bus.publish_events(&items).await {
        assert!(std::time::Instant::now() < deadline, "publish kept failing: {e}");
    }
}

async fn next(feed: &mut kubegate_bus::Feed) -> FeedItem {
    tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("feed item in time")
        .expect("feed open")
}

#[tokio::test]
async fn a_feed_replays_catches_up_and_follows() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    // Ensuring twice changes nothing.
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    publish(&bus, 1, 5).await;
    // A re-publish of the same ids inside the window is dropped by the stream.
    publish(&bus, 4, 5).await;
    assert_eq!(bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap(), 5);

    let mut feed =
        kubegate_bus::Feed::follow(bus.clone(), "KUBEGATE_IDENTITY", &IdentityEvent::subject_filter(), 1);
    let mut seen = Vec::new();
    loop {
        match next(&mut feed).await {
            FeedItem::Event { envelope, .. } => seen.push(envelope.position),
            FeedItem::CaughtUp { stream_sequence } => {
                assert_eq!(stream_sequence, 5);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    publish(&bus, 6, 6).await;
    match next(&mut feed).await {
        FeedItem::Event { stream_sequence: 6, envelope } => {
            assert_eq!(
                envelope.decode::<IdentityEvent>().unwrap().event,
                IdentityEvent::UserDisabled(UserDisabled { user_id: 6 })
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // Garbage on a kubegate subject is reported, never applied.
    bus.client().publish("kubegate.identity.user.disabled", "not json".into()).await.unwrap();
    assert!(matches!(next(&mut feed).await, FeedItem::Undecodable { stream_sequence: 7, .. }));
}

#[tokio::test]
async fn an_empty_stream_is_caught_up_at_once_and_a_deleted_one_is_reported() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    bus.ensure_stream(&StreamDef::environments()).await.unwrap();
    let mut feed =
        kubegate_bus::Feed::follow(bus.clone(), "KUBEGATE_ENVIRONMENTS", "kubegate.environments.>", 1);
    assert!(matches!(next(&mut feed).await, FeedItem::CaughtUp { stream_sequence: 0 }));
    bus.jetstream().delete_stream("KUBEGATE_ENVIRONMENTS").await.unwrap();
    assert!(matches!(next(&mut feed).await, FeedItem::Reset(FeedError::StreamGone(_))));
}

#[tokio::test]
async fn a_feed_resumes_after_nats_restarts() {
    let mut nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    publish(&bus, 1, 3).await;
    let mut feed = kubegate_bus::Feed::follow(bus.clone(), "KUBEGATE_IDENTITY", "kubegate.identity.>", 1);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let FeedItem::Event { envelope, .. } = next(&mut feed).await {
            seen.push(envelope.position);
        }
    }
    nats.stop();
    nats.start();
    assert!(bus.wait_connected(Duration::from_secs(10)).await);
    publish(&bus, 4, 4).await;
    loop {
        match next(&mut feed).await {
            FeedItem::Event { envelope, .. } => {
                assert_eq!(envelope.position, 4);
                break;
            }
            FeedItem::CaughtUp { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn request_reply_is_typed() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    let shutdown = CancellationToken::new();
    let server = bus.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        server
            .serve("kubegate.rpc.test.double", "test", stop, |n: u64, correlation: String| async move {
                if n == 0 {
                    Err(RpcFailure { status: 400, message: "zero is not allowed".into() })
                } else {
                    Ok((n * 2, correlation))
                }
            })
            .await
            .unwrap();
    });
    // Wait until the subscription is live.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let answer: (u64, String) = loop {
        match bus.request("kubegate.rpc.test.double", &21u64, "corr-9", Duration::from_secs(1)).await {
            Ok(v) => break v,
            Err(RpcError::NoResponders(_)) if std::time::Instant::now() < deadline => {
                tokio::task::yield_now().await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(answer, (42, "corr-9".to_string()));
    let err = bus
        .request::<_, (u64, String)>("kubegate.rpc.test.double", &0u64, "c", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Remote(RpcFailure { status: 400, .. })), "{err}");
    let err = bus
        .request::<_, u64>("kubegate.rpc.test.nobody", &1u64, "c", Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::NoResponders(_)), "{err}");
    let err = bus
        .request::<_, u64>("kubegate.rpc.test.double", &"text", "c", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Remote(RpcFailure { status: 400, .. })), "{err}");
    shutdown.cancel();
}

/// One batch larger than the acknowledgements the context lets be outstanding (4,096) is
/// published whole, not stuck waiting on itself.
#[tokio::test]
async fn a_batch_larger_than_the_ack_limit_is_published() {
    let nats = NatsServer::start_new();
    let bus = bus(&nats).await;
    bus.ensure_stream(&StreamDef::identity()).await.unwrap();
    let published = tokio::time::timeout(Duration::from_secs(60), publish(&bus, 1, 10_000)).await;
    assert!(published.is_ok(), "a 10,000-event batch did not finish within 60 s");
    assert_eq!(bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap(), 10_000);
}
