//! The opaque cursor of `GET /api/audit`: where each stream's reading continues. The merge hands
//! out rows of each stream in stream order, so "the first sequence not handed out" per stream is
//! an exact place to continue from, whatever the filters.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::row::Source;

/// Per stream, the sequence to continue at (0: not positioned; start from `since`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub next: [u64; 3],
}

const VERSION: &str = "v1";

impl Cursor {
    pub fn get(&self, source: Source) -> u64 {
        self.next[source.index()]
    }

    pub fn set(&mut self, source: Source, sequence: u64) {
        self.next[source.index()] = sequence;
    }

    pub fn encode(&self) -> String {
        let [i, e, a] = self.next;
        URL_SAFE_NO_PAD.encode(format!("{VERSION}:{i}:{e}:{a}"))
    }

    /// The cursor, or `None` for anything this server did not issue.
    pub fn decode(s: &str) -> Option<Cursor> {
        if s.len() > 200 {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(s.trim()).ok()?).ok()?;
        let mut parts = text.split(':');
        if parts.next()? != VERSION {
            return None;
        }
        let mut next = [0u64; 3];
        for slot in &mut next {
            *slot = parts.next()?.parse().ok()?;
        }
        parts.next().is_none().then_some(Cursor { next })
    }
}
