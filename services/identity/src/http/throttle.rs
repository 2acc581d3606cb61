//! Sign-in throttling: too many failures for one user name, or from one client address, within
//! a window close the door for the rest of that window. Kept in memory per replica.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub per_user: u32,
    pub per_address: u32,
    pub window: Duration,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    failures: u32,
    /// When a refusal was last recorded as an event (one per minute is enough).
    last_recorded: Option<Instant>,
}

#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    windows: Mutex<HashMap<String, Window>>,
}

/// Bound on tracked keys, so a flood of made-up names cannot grow memory without limit.
const MAX_KEYS: usize = 100_000;

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Throttle {
        Throttle { limits, windows: Mutex::new(HashMap::new()) }
    }

    fn keys(user: &str, address: &str) -> [(String, u32); 2] {
        [(format!("u:{}", user.to_lowercase()), 0), (format!("a:{address}"), 1)]
    }

    /// `Err(retry_after)` when either the user or the address is locked out now.
    pub fn check(&self, user: &str, address: &str, now: Instant) -> Result<(), Duration> {
        let Ok(windows) = self.windows.lock() else { return Ok(()) };
        let mut wait = Duration::ZERO;
        for (key, kind) in Self::keys(user, address) {
            let limit = if kind == 0 { self.limits.per_user } else { self.limits.per_address };
            if let Some(w) = windows.get(&key) {
                let age = now.saturating_duration_since(w.started);
                if age < self.limits.window && w.failures >= limit {
                    wait = wait.max(self.limits.window - age);
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Whether a refusal for this user/address should be recorded as an event now.
    pub fn should_record_refusal(&self, user: &str, address: &str, now: Instant) -> bool {
        let Ok(mut windows) = self.windows.lock() else { return true };
        let key = format!("u:{}|a:{address}", user.to_lowercase());
        let w = windows.entry(key).or_insert(Window { started: now, failures: 0, last_recorded: None });
        match w.last_recorded {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(60) => false,
            _ => {
                w.last_recorded = Some(now);
                true
            }
        }
    }

    pub fn record_failure(&self, user: &str, address: &str, now: Instant) {
        let Ok(mut windows) = self.windows.lock() else { return };
        if windows.len() >= MAX_KEYS {
            let window = self.limits.window;
            windows.retain(|_, w| now.saturating_duration_since(w.started) < window);
        }
        for (key, _) in Self::keys(user, address) {
            let w = windows.entry(key).or_insert(Window { started: now, failures: 0, last_recorded: None });
            if now.saturating_duration_since(w.started) >= self.limits.window {
                w.started = now;
                w.failures = 0;
            }
            w.failures += 1;
        }
    }

    /// A successful sign-in clears the user's count (not the address's).
    pub fn clear_user(&self, user: &str) {
        if let Ok(mut windows) = self.windows.lock() {
            windows.remove(&format!("u:{}", user.to_lowercase()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_limit_and_reopens_after_the_window() {
        let t =
            Throttle::new(ThrottleLimits { per_user: 3, per_address: 5, window: Duration::from_secs(60) });
        let now = Instant::now();
        for _ in 0..3 {
            assert!(t.check("Alice", "10.0.0.1", now).is_ok());
            t.record_failure("alice", "10.0.0.1", now);
        }
        let wait = t.check("ALICE", "10.0.0.9", now).unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait > Duration::from_secs(59));
        assert!(t.check("bob", "10.0.0.1", now).is_ok(), "address limit not reached yet");
        for _ in 0..2 {
            t.record_failure("bob", "10.0.0.1", now);
        }
        assert!(t.check("carol", "10.0.0.1", now).is_err(), "address limit reached");
        assert!(t.check("alice", "10.0.0.9", now + Duration::from_secs(61)).is_ok());
        t.clear_user("bob");
        assert!(t.check("bob", "10.0.0.2", now).is_ok());
    }
}
