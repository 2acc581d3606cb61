#![allow(clippy::unwrap_used, clippy::expect_used)]

use kubegate_events::audit::{AuditEvent, AuditSubject, AuditTarget, Decision, RequestAudited};
use kubegate_events::{Actor, Envelope, RawEnvelope};

use super::*;

fn record(p: u64) -> RawEnvelope {
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
    env.to_raw().unwrap()
}

fn positions(chunk: &[Spooled]) -> Vec<u64> {
    chunk.iter().map(|s| s.record.position).collect()
}

#[test]
fn records_come_back_a_chunk_at_a_time_and_leave_only_when_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.spool");
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&(1..=5).map(record).collect::<Vec<_>>()).unwrap();
    let (chunk, _) = spool.read_chunk(2).unwrap();
    assert_eq!(positions(&chunk), vec![1, 2]);
    // Reading again without consuming gives the same records.
    assert_eq!(positions(&spool.read_chunk(2).unwrap().0), vec![1, 2]);
    spool.consume_to(chunk[1].end).unwrap();
    assert_eq!(positions(&spool.read_chunk(10).unwrap().0), vec![3, 4, 5]);

    // The offset survives a restart; appends go after what is there.
    drop(spool);
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[record(6)]).unwrap();
    let (chunk, scanned) = spool.read_chunk(10).unwrap();
    assert_eq!(positions(&chunk), vec![3, 4, 5, 6]);
    let before = spool.bytes();
    assert!(before > 0);
    // All consumed: the file is emptied and the offset forgotten.
    spool.consume_to(scanned).unwrap();
    assert_eq!(spool.bytes(), 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert!(!spool.offset_path().exists());
    assert!(spool.read_chunk(10).unwrap().0.is_empty());
}

#[test]
fn a_torn_last_record_is_dropped_and_damaged_lines_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.spool");
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[record(1)]).unwrap();
    drop(spool);
    // A damaged line, a good one, and a record torn mid-write.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"not json\n").unwrap();
    f.write_all(&record(2).to_vec()).unwrap();
    f.write_all(b"\n").unwrap();
    f.write_all(&record(3).to_vec()[..40]).unwrap();
    drop(f);
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[record(4)]).unwrap();
    let (chunk, scanned) = spool.read_chunk(10).unwrap();
    assert_eq!(positions(&chunk), vec![1, 2, 4], "the torn record did not swallow the next one");
    spool.consume_to(scanned).unwrap();
    assert_eq!(spool.bytes(), 0);
}

#[test]
fn an_offset_past_the_end_replays_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.spool");
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[record(1), record(2)]).unwrap();
    std::fs::write(spool.offset_path(), "999999").unwrap();
    let spool = Spool::open(path).unwrap();
    assert_eq!(positions(&spool.read_chunk(10).unwrap().0), vec![1, 2]);
}
