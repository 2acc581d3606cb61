//! The k-way merge of the streams' rows by time. Each stream is read in its own order; the merge
//! always hands out the oldest head, so it needs a row (or the knowledge that there is none) from
//! every stream still replaying before it may hand out anything. Once every stream has caught
//! up, rows are handed out as they arrive. No I/O: the replay feeds it batches.

use std::collections::VecDeque;

use crate::row::{At, Row, Source};
use crate::source::Batch;

/// What the merge can do next.
// A row is handed from the lane's buffer to the writer once; boxing it would cost an allocation
// per row for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Step {
    /// The oldest row.
    Emit(Row),
    /// Lane `n` is still replaying and has nothing buffered: its next batch is needed first.
    Need(usize),
    /// Every lane has caught up and nothing is buffered.
    Idle,
}

#[derive(Debug)]
struct Lane {
    source: Source,
    rows: VecDeque<Row>,
    caught_up: bool,
    /// Where the reader is: rows before it are buffered or handed out.
    next: At,
}

#[derive(Debug)]
pub struct Merger {
    lanes: Vec<Lane>,
    scanned: u64,
    undecodable: u64,
}

impl Merger {
    /// A merge of one lane per source, in the order given; `starts` are their first places
    /// (sequence 0 when unknown).
    pub fn new(lanes: &[(Source, At)]) -> Merger {
        Merger {
            lanes: lanes
                .iter()
                .map(|(source, start)| Lane {
                    source: *source,
                    rows: VecDeque::new(),
                    caught_up: false,
                    next: *start,
                })
                .collect(),
            scanned: 0,
            undecodable: 0,
        }
    }

    pub fn push(&mut self, lane: usize, batch: Batch) {
        self.scanned += batch.scanned;
        self.undecodable += batch.undecodable;
        if let Some(l) = self.lanes.get_mut(lane) {
            l.rows.extend(batch.rows);
            l.caught_up |= batch.caught_up;
            if batch.next_sequence > 0 {
                l.next = l.next.max(At::message(batch.next_sequence));
            }
        }
    }

    pub fn step(&mut self) -> Step {
        if let Some(i) = self.lanes.iter().position(|l| !l.caught_up && l.rows.is_empty()) {
            return Step::Need(i);
        }
        let oldest = self
            .lanes
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.rows.front().map(|r| (i, r.key())))
            .min_by(|a, b| a.1.cmp(&b.1))
            .map(|(i, _)| i);
        match oldest.and_then(|i| self.lanes[i].rows.pop_front()) {
            Some(row) => Step::Emit(row),
            None => Step::Idle,
        }
    }

    /// Whether every lane has caught up.
    pub fn caught_up(&self) -> bool {
        self.lanes.iter().all(|l| l.caught_up)
    }

    /// Per lane, the first place not handed out yet: rows still buffered, or what the reader
    /// has not reached. Reading again from there continues exactly after the last row handed
    /// out (sequence 0: the lane has not been positioned).
    pub fn positions(&self) -> Vec<(Source, At)> {
        self.lanes.iter().map(|l| (l.source, l.rows.front().map(Row::at).unwrap_or(l.next))).collect()
    }

    /// Messages looked at so far, and those that were not readable events.
    pub fn scanned(&self) -> (u64, u64) {
        (self.scanned, self.undecodable)
    }
}
