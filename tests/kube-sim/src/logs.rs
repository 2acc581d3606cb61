//! Container logs. Every container writes one line per interval from the moment it started;
//! lines are computed from the clock rather than kept, so logs cost no memory and `follow`
//! sees a new line each interval.

use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use serde_json::Value;

/// The newest lines kept, as if older ones were rotated away.
pub const MAX_LINES: u64 = 10_000;

/// Options of a `/log` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

/// A container's log clock.
#[derive(Debug, Clone)]
pub struct LogSource {
    pub pod: String,
    pub container: String,
    pub started: DateTime<Utc>,
    pub interval: std::time::Duration,
}

impl LogSource {
    /// The log of `container` in `pod`; started at its `startedAt` (or the pod's creation).
    pub fn for_pod(pod: &Value, container: &str, interval: std::time::Duration) -> LogSource {
        let started = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(container)))
            .and_then(|c| c.pointer("/state/running/startedAt"))
            .and_then(Value::as_str)
            .or_else(|| pod.pointer("/metadata/creationTimestamp").and_then(Value::as_str))
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(Utc::now);
        LogSource {
            pod: pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string(),
            container: container.to_string(),
            started,
            interval: if interval.is_zero() { std::time::Duration::from_secs(1) } else { interval },
        }
    }

    fn step(&self) -> ChronoDuration {
        ChronoDuration::from_std(self.interval).unwrap_or_else(|_| ChronoDuration::seconds(1))
    }

    /// When line `n` (1-based) is written.
    pub fn time_of(&self, n: u64) -> DateTime<Utc> {
        self.started + self.step() * i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX)
    }

    /// How many lines exist at `now` (the first is written at start).
    pub fn count_at(&self, now: DateTime<Utc>) -> u64 {
        if now < self.started {
            return 0;
        }
        let elapsed = (now - self.started).num_milliseconds().max(0) as u128;
        let step = self.interval.as_millis().max(1);
        u64::try_from(elapsed / step).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Line `n`, with its timestamp when asked.
    pub fn line(&self, n: u64, timestamps: bool) -> String {
        let text = format!("{} log line {n} container={}", self.pod, self.container);
        if timestamps {
            format!("{} {text}\n", self.time_of(n).to_rfc3339_opts(SecondsFormat::Nanos, true))
        } else {
            format!("{text}\n")
        }
    }

    /// The line numbers a non-follow read returns at `now`.
    pub fn initial_range(&self, opts: &LogOptions, now: DateTime<Utc>) -> std::ops::RangeInclusive<u64> {
        let last = self.count_at(now);
        let mut first = last.saturating_sub(MAX_LINES - 1).max(1);
        if let Some(since) = opts.since {
            while first <= last && self.time_of(first) < since {
                first += 1;
            }
        }
        if let Some(tail) = opts.tail_lines {
            first = first.max(last.saturating_sub(tail).saturating_add(1));
        }
        first..=last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn source() -> LogSource {
        let pod = json!({"metadata": {"name": "nginx", "creationTimestamp": "2025-01-01T00:00:00Z"}});
        LogSource::for_pod(&pod, "nginx", Duration::from_secs(1))
    }

    fn at(secs: i64) -> DateTime<Utc> {
        source().started + ChronoDuration::seconds(secs)
    }

    #[test]
    fn counting() {
        let s = source();
        assert_eq!(s.count_at(at(-1)), 0);
        assert_eq!(s.count_at(at(0)), 1);
        assert_eq!(s.count_at(at(9)), 10);
        assert_eq!(s.line(3, false), "nginx log line 3 container=nginx\n");
        assert!(s.line(1, true).starts_with("2025-01-01T00:00:00.000000000Z nginx log line 1"));
    }

    #[test]
    fn ranges() {
        let s = source();
        let all = LogOptions::default();
        assert_eq!(s.initial_range(&all, at(9)), 1..=10);
        let tail = LogOptions { tail_lines: Some(3), ..LogOptions::default() };
        assert_eq!(s.initial_range(&tail, at(9)), 8..=10);
        let tail0 = LogOptions { tail_lines: Some(0), ..LogOptions::default() };
        assert!(s.initial_range(&tail0, at(9)).is_empty());
        let since = LogOptions { since: Some(at(5)), ..LogOptions::default() };
        assert_eq!(s.initial_range(&since, at(9)), 6..=10);
        assert_eq!(*s.initial_range(&all, at(20_000)).start(), 20_001 - MAX_LINES + 1);
    }
}
