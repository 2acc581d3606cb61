//! The opaque cursor of `GET /api/audit`: where each stream's reading continues. The merge hands
//! out rows of each stream in stream order, so "the first place not handed out" per stream (a
//! message's sequence and a record's index in it) is an exact place to continue from, whatever
//! the filters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::row::{At, Source};

/// Per stream, the place to continue at (sequence 0: not positioned; start from `since`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub next: [At; 3],
}

/// `v2:` sequence and index per stream; `v1:` (sequences only) is still read.
const VERSION: &str = "v2";
const VERSION_1: &str = "v1";

impl Cursor {
    pub fn get(&self, source: Source) -> At {
        self.next[source.index()]
    }

    pub fn set(&mut self, source: Source, at: At) {
        self.next[source.index()] = at;
    }

    pub fn encode(&self) -> String {
        let [i, e, a] = self.next;
        URL_SAFE_NO_PAD.encode(format!(
            "{VERSION}:{}:{}:{}:{}:{}:{}",
            i.sequence, i.index, e.sequence, e.index, a.sequence, a.index
        ))
    }

    /// The cursor, or `None` for anything this server did not issue.
    pub fn decode(s: &str) -> Option<Cursor> {
        if s.len() > 200 {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()?;
        let mut parts = text.split(':');
        let with_index = match parts.next()? {
            VERSION => true,
            VERSION_1 => false,
            _ => return None,
        };
        let mut next = [At::default(); 3];
        for slot in &mut next {
            slot.sequence = parts.next()?.parse().ok()?;
            if with_index {
                slot.index = parts.next()?.parse().ok()?;
            }
        }
        parts.next().is_none().then_some(Cursor { next })
    }
}
