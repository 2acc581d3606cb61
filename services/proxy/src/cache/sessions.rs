//! Open streams (watches, `logs -f`, exec, attach, port-forward) by token, user and environment,
//! so a revocation closes them at once instead of when they end by themselves; and the
//! per-user watch count behind the watch limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Entry {
    token_id: Arc<str>,
    kid: Arc<str>,
    user_id: u64,
    iat: i64,
    environment_id: u64,
    cancel: CancellationToken,
}

/// Who holds a stream open.
#[derive(Debug, Clone)]
pub struct Holder {
    pub token_id: Arc<str>,
    pub kid: Arc<str>,
    pub user_id: u64,
    pub iat: i64,
    pub environment_id: u64,
}

#[derive(Debug, Default)]
pub struct Sessions {
    next: AtomicU64,
    open: DashMap<u64, Entry>,
    watches: DashMap<u64, usize>,
}

impl Sessions {
    /// Registers a stream; cancelling the returned token closes it. Call [`Sessions::close`]
    /// with the id when it ends.
    pub fn open(&self, holder: Holder) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        self.open.insert(
            id,
            Entry {
                token_id: holder.token_id,
                kid: holder.kid,
                user_id: holder.user_id,
                iat: holder.iat,
                environment_id: holder.environment_id,
                cancel: cancel.clone(),
            },
        );
        metrics::gauge!("kubegate_proxy_open_streams").set(self.open.len() as f64);
        (id, cancel)
    }

    pub fn close(&self, id: u64) {
        self.open.remove(&id);
        metrics::gauge!("kubegate_proxy_open_streams").set(self.open.len() as f64);
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    fn cut(&self, hit: impl Fn(&Entry) -> bool) {
        for e in self.open.iter() {
            if hit(e.value()) {
                e.cancel.cancel();
            }
        }
    }

    pub fn cut_token(&self, token_id: &str) {
        self.cut(|e| &*e.token_id == token_id);
    }

    /// Streams of `user_id` opened with tokens issued before `cutoff` (seconds).
    pub fn cut_user(&self, user_id: u64, cutoff: i64) {
        self.cut(|e| e.user_id == user_id && e.iat < cutoff);
    }

    pub fn cut_kid(&self, kid: &str) {
        self.cut(|e| &*e.kid == kid);
    }

    pub fn cut_environment(&self, environment_id: u64) {
        self.cut(|e| e.environment_id == environment_id);
    }

    /// Streams in `environment_id` whose user `lost(user_id)` says has no access any more.
    pub fn cut_environment_where(&self, environment_id: u64, lost: impl Fn(u64) -> bool) {
        self.cut(|e| e.environment_id == environment_id && lost(e.user_id));
    }

    pub fn cut_all(&self) {
        self.cut(|_| true);
    }

    /// Counts a new watch of `user_id`; false when the user already has `max`.
    pub fn try_start_watch(&self, user_id: u64, max: usize) -> bool {
        let mut n = self.watches.entry(user_id).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    pub fn end_watch(&self, user_id: u64) {
        if let Some(mut n) = self.watches.get_mut(&user_id) {
            *n = n.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(token: &str, user: u64, iat: i64, env: u64) -> Holder {
        Holder { token_id: token.into(), kid: "k1".into(), user_id: user, iat, environment_id: env }
    }

    #[test]
    fn revocations_close_exactly_the_streams_they_hit() {
        let s = Sessions::default();
        let (_, a) = s.open(holder("t1", 1, 100, 1));
        let (_, b) = s.open(holder("t2", 1, 200, 1));
        let (id_c, c) = s.open(holder("t3", 2, 100, 2));
        s.cut_token("t1");
        assert!(a.is_cancelled() && !b.is_cancelled() && !c.is_cancelled());
        s.cut_user(1, 150);
        assert!(!b.is_cancelled(), "a token issued after the cut-off stays open");
        s.cut_user(1, 201);
        assert!(b.is_cancelled());
        s.close(id_c);
        s.cut_environment(2);
        assert!(!c.is_cancelled(), "closed streams are forgotten");
    }

    #[test]
    fn watches_are_limited_per_user() {
        let s = Sessions::default();
        assert!(s.try_start_watch(1, 2));
        assert!(s.try_start_watch(1, 2));
        assert!(!s.try_start_watch(1, 2));
        assert!(s.try_start_watch(2, 2));
        s.end_watch(1);
        assert!(s.try_start_watch(1, 2));
    }
}
