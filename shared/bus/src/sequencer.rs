//! Applying a producer's events exactly once and in order, whatever the bus delivers: positions
//! already applied are skipped (a re-publish after the de-duplication window), positions ahead of
//! the next expected one are held back until the gap closes. A gap that stays open is reported so
//! the consumer can stop trusting its state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What happened to an offered item.
#[derive(Debug, PartialEq)]
pub enum Offer<T> {
    /// These items, in position order, may now be applied (the offered one and any it unblocked).
    Ready(Vec<T>),
    /// Already applied: skip.
    Duplicate,
    /// Ahead of a gap: kept until the missing position arrives.
    Held { missing: u64 },
    /// Too many items held: the gap is not going to close by itself.
    Overflow,
}

#[derive(Debug)]
pub struct Sequencer<T> {
    last: u64,
    held: BTreeMap<u64, T>,
    gap_since: Option<Instant>,
    max_held: usize,
}

impl<T> Sequencer<T> {
    /// `last_applied` is 0 for a consumer starting from nothing.
    pub fn new(last_applied: u64) -> Sequencer<T> {
        Sequencer { last: last_applied, held: BTreeMap::new(), gap_since: None, max_held: 100_000 }
    }

    pub fn with_max_held(mut self, max_held: usize) -> Self {
        self.max_held = max_held;
        self
    }

    /// The last position released for applying.
    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// How long a gap has been open, if one is.
    pub fn gap_age(&self, now: Instant) -> Option<Duration> {
        self.gap_since.map(|t| now.saturating_duration_since(t))
    }

    pub fn offer(&mut self, position: u64, item: T, now: Instant) -> Offer<T> {
        if position <= self.last || self.held.contains_key(&position) {
            return Offer::Duplicate;
        }
        if position != self.last + 1 {
            if self.held.len() >= self.max_held {
                return Offer::Overflow;
            }
            self.held.insert(position, item);
            self.gap_since.get_or_insert(now);
            return Offer::Held { missing: self.last + 1 };
        }
        let mut ready = vec![item];
        self.last = position;
        while let Some(next) = self.held.remove(&(self.last + 1)) {
            ready.push(next);
            self.last += 1;
        }
        self.gap_since = if self.held.is_empty() { None } else { Some(now) };
        Offer::Ready(ready)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn in_order_duplicates_and_gaps() {
        let now = Instant::now();
        let mut s = Sequencer::new(0);
        assert_eq!(s.offer(1, "a", now), Offer::Ready(vec!["a"]));
        assert_eq!(s.offer(1, "a", now), Offer::Duplicate);
        assert_eq!(s.offer(3, "c", now), Offer::Held { missing: 2 });
        assert_eq!(s.offer(3, "c", now), Offer::Duplicate);
        assert_eq!(s.offer(4, "d", now), Offer::Held { missing: 2 });
        assert!(s.gap_age(now + Duration::from_secs(1)).unwrap() >= Duration::from_secs(1));
        assert_eq!(s.offer(2, "b", now), Offer::Ready(vec!["b", "c", "d"]));
        assert_eq!(s.last(), 4);
        assert_eq!(s.gap_age(now), None);
        assert_eq!(s.offer(2, "b", now), Offer::Duplicate);
    }

    #[test]
    fn overflow_is_reported() {
        let now = Instant::now();
        let mut s = Sequencer::new(10).with_max_held(2);
        assert_eq!(s.offer(12, 12, now), Offer::Held { missing: 11 });
        assert_eq!(s.offer(13, 13, now), Offer::Held { missing: 11 });
        assert_eq!(s.offer(14, 14, now), Offer::Overflow);
        assert_eq!(s.offer(11, 11, now), Offer::Ready(vec![11, 12, 13]));
    }
}
