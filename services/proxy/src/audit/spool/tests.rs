#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::audit::pack::pack;
use crate::audit::pack::tests::{encoded, record};

/// One message holding one record.
fn one(p: u64) -> Packed {
    pack(&encoded(&[record(p)])).remove(0)
}

fn positions(chunk: &[Spooled]) -> Vec<u64> {
    chunk.iter().flat_map(|s| s.message.envelopes()).map(|r| r.position).collect()
}

#[test]
fn records_come_back_a_chunk_at_a_time_and_leave_only_when_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.spool");
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&(1..=5).map(one).collect::<Vec<_>>()).unwrap();
    let (chunk, _) = spool.read_chunk(2).unwrap();
    assert_eq!(positions(&chunk), vec![1, 2]);
    // Reading again without consuming gives the same records.
    assert_eq!(positions(&spool.read_chunk(2).unwrap().0), vec![1, 2]);
    spool.consume_to(chunk[1].end).unwrap();
    assert_eq!(positions(&spool.read_chunk(10).unwrap().0), vec![3, 4, 5]);

    // The offset survives a restart; appends go after what is there.
    drop(spool);
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[one(6)]).unwrap();
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
    spool.append(&[one(1)]).unwrap();
    drop(spool);
    // A damaged line, a good one, and a record torn mid-write.
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"not json\n").unwrap();
    f.write_all(&record(2).encode().unwrap()).unwrap();
    f.write_all(b"\n").unwrap();
    f.write_all(&record(3).encode().unwrap()[..40]).unwrap();
    drop(f);
    let mut spool = Spool::open(path.clone()).unwrap();
    spool.append(&[one(4)]).unwrap();
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
    spool.append(&[one(1), one(2)]).unwrap();
    std::fs::write(spool.offset_path(), "999999").unwrap();
    let spool = Spool::open(path).unwrap();
    assert_eq!(positions(&spool.read_chunk(10).unwrap().0), vec![1, 2]);
}

#[test]
fn a_packed_message_comes_back_whole_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path().join("audit.spool")).unwrap();
    let packed = pack(&encoded(&(1..=3).map(record).collect::<Vec<_>>()));
    assert_eq!(packed.len(), 1);
    spool.append(&packed).unwrap();
    spool.append(&[one(4)]).unwrap();
    let (chunk, _) = spool.read_chunk(1).unwrap();
    assert_eq!(positions(&chunk), vec![1, 2, 3], "one message, three records");
    let (back, sent) = (&chunk[0].message, &packed[0]);
    assert_eq!(back.message.id, sent.message.id, "published again, the stream can drop it as a duplicate");
    assert_eq!(back.message.payload, sent.message.payload);
    assert_eq!(back.records, 3);
}
