#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_events::audit::{
    AuditEvent, AuditSubject, AuditTarget, Decision, RequestAudited, SessionEnded, SessionKind,
};
use kubegate_events::{Actor, Envelope};

use super::*;

/// The `RequestAudited` record numbered `p`.
pub(in crate::audit) fn record(p: u64) -> Envelope<AuditEvent> {
    let event = AuditEvent::RequestAudited(RequestAudited {
        request_id: format!("r-{p}"),
        subject: AuditSubject {
            user_id: Some(1),
            username: Some("alice".into()),
            token_id: None,
            role: None,
            impersonated_user: None,
            impersonated_groups: vec![],
            client_address: "127.0.0.1:1".into(),
        },
        target: AuditTarget {
            environment_id: Some(1),
            verb: "list".into(),
            api_group: None,
            namespace: None,
            resource: Some("pods".into()),
            subresource: None,
            name: None,
            path: "/api/v1/pods".into(),
        },
        decision: Decision::Allowed,
        reason: None,
        status: 200,
        duration_us: 1,
        bytes_in: 0,
        bytes_out: 0,
        user_agent: None,
    });
    let mut env = Envelope::new("proxy-test".to_string(), Actor::system("proxy"), format!("r-{p}"), event);
    env.position = p;
    env.sequence = p;
    env
}

/// A `SessionEnded` record numbered `p` (another subject).
fn session_ended(p: u64) -> Envelope<AuditEvent> {
    let event = AuditEvent::SessionEnded(SessionEnded {
        session_id: format!("s-{p}"),
        request_id: format!("r-{p}"),
        kind: SessionKind::Exec,
        started_at: chrono::Utc::now(),
        duration_us: 1,
        bytes_in: 0,
        bytes_out: 0,
        end_reason: "closed".into(),
    });
    let mut env = Envelope::new("proxy-test".to_string(), Actor::system("proxy"), format!("r-{p}"), event);
    env.position = p;
    env.sequence = p;
    env
}

/// Records as the publisher encodes them.
pub(in crate::audit) fn encoded(records: &[Envelope<AuditEvent>]) -> Vec<Encoded<'static>> {
    records.iter().map(|r| encode(r).unwrap()).collect()
}

fn positions(m: &Packed) -> Vec<u64> {
    m.envelopes().iter().map(|r| r.position).collect()
}

#[test]
fn consecutive_records_of_one_subject_share_a_message() {
    let records = vec![record(1), record(2), session_ended(3), record(4), record(5), record(6)];
    let packed = pack(&encoded(&records));
    let got: Vec<(&str, Vec<u64>)> = packed.iter().map(|m| (m.message.subject, positions(m))).collect();
    assert_eq!(
        got,
        vec![
            ("kubegate.audit.request.audited", vec![1, 2]),
            ("kubegate.audit.session.ended", vec![3]),
            ("kubegate.audit.request.audited", vec![4, 5, 6]),
        ]
    );
    assert_eq!(records_in(&packed), 6);
    // One record is a message exactly as every other producer writes one.
    assert_eq!(packed[1].message.payload.as_ref(), records[2].to_raw().unwrap().to_vec().as_slice());
    assert_eq!(packed[1].message.id, records[2].id.to_string());
    assert_eq!(packed[0].message.id, format!("{}+2", records[0].id));
    // The envelopes come back as they were.
    let back = packed[2].envelopes();
    assert_eq!(back[2].to_vec(), records[5].to_raw().unwrap().to_vec());
}

#[test]
fn a_message_holds_at_most_its_share_of_records_and_bytes() {
    let records: Vec<Envelope<AuditEvent>> = (1..=(PACK_RECORDS as u64 * 2 + 3)).map(record).collect();
    let packed = pack(&encoded(&records));
    assert_eq!(packed.iter().map(|m| m.records).collect::<Vec<_>>(), vec![PACK_RECORDS, PACK_RECORDS, 3]);
    assert!(packed.iter().all(|m| m.message.payload.len() <= PACK_BYTES));
    let all: Vec<u64> = packed.iter().flat_map(positions).collect();
    assert_eq!(all, (1..=(PACK_RECORDS as u64 * 2 + 3)).collect::<Vec<_>>(), "in order, none lost");

    // Large records: the byte limit cuts first.
    let mut big = record(1);
    if let AuditEvent::RequestAudited(r) = &mut big.event {
        r.target.path = "x".repeat(60 * 1024);
    }
    let packed = pack(&encoded(&vec![big; 9]));
    assert!(packed.len() >= 3, "{} messages", packed.len());
    assert!(packed.iter().all(|m| m.message.payload.len() <= PACK_BYTES));
    assert_eq!(records_in(&packed), 9);
}

#[test]
fn a_message_is_read_back_as_packed() {
    let packed = pack(&encoded(&[record(1), record(2), record(3)])).remove(0);
    let back = Packed::read(&packed.message.payload).unwrap();
    let (a, b) = (&back.message, &packed.message);
    assert_eq!((a.subject, a.id.as_str(), back.records), (b.subject, b.id.as_str(), 3));
    assert!(Packed::read(b"[]").is_err(), "a message without a record");
    assert!(Packed::read(b"not json").is_err());
}
