//! Runtime switches tests and benchmarks flip to make kube-sim misbehave or answer big: huge
//! generated lists, slow watch events, stalled or dropped connections, pod termination time,
//! bookmark interval and the request log.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// A list that is generated while it is streamed instead of read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeList {
    /// Resource plural, e.g. `pods`.
    pub resource: String,
    /// Only lists in this namespace (`None`: every list of the resource, all namespaces too).
    pub namespace: Option<String>,
    /// Approximate body size in bytes.
    pub bytes: u64,
}

/// How the server misbehaves with new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Normal service.
    None,
    /// Accept TCP connections and never speak (no TLS handshake).
    Accept,
    /// Complete TLS and read requests, never answer them.
    Response,
}

/// The switches. Every setter takes effect for the next request (or connection).
#[derive(Debug)]
pub struct Knobs {
    large_list: Mutex<Option<LargeList>>,
    watch_event_delay_ms: AtomicU64,
    stall: AtomicU8,
    drop_mid_response: AtomicBool,
    pod_termination_delay_ms: AtomicU64,
    bookmark_interval_ms: AtomicU64,
    request_log: AtomicBool,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            large_list: Mutex::new(None),
            watch_event_delay_ms: AtomicU64::new(0),
            stall: AtomicU8::new(0),
            drop_mid_response: AtomicBool::new(false),
            pod_termination_delay_ms: AtomicU64::new(1000),
            bookmark_interval_ms: AtomicU64::new(60_000),
            request_log: AtomicBool::new(true),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Knobs {
    /// Lists of `resource` (in `namespace`, or everywhere) return a generated list of about
    /// `bytes` bytes, produced while streaming so kube-sim's memory stays flat.
    pub fn set_large_list(&self, resource: &str, namespace: Option<&str>, bytes: u64) {
        let mut g = self.large_list.lock().unwrap_or_else(|p| p.into_inner());
        *g = Some(LargeList { resource: resource.into(), namespace: namespace.map(str::to_string), bytes });
    }

    /// Shorthand: pods in namespace `large` list as about `bytes` bytes.
    pub fn set_large_list_bytes(&self, bytes: u64) {
        self.set_large_list("pods", Some("large"), bytes);
    }

    pub fn clear_large_list(&self) {
        let mut g = self.large_list.lock().unwrap_or_else(|p| p.into_inner());
        *g = None;
    }

    pub fn large_list(&self) -> Option<LargeList> {
        self.large_list.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Each watch event waits this long before it is sent.
    pub fn set_watch_event_delay(&self, d: Duration) {
        self.watch_event_delay_ms.store(ms(d), Ordering::Relaxed);
    }

    pub fn watch_event_delay(&self) -> Duration {
        Duration::from_millis(self.watch_event_delay_ms.load(Ordering::Relaxed))
    }

    pub fn set_stall(&self, stall: Stall) {
        let v = match stall {
            Stall::None => 0,
            Stall::Accept => 1,
            Stall::Response => 2,
        };
        self.stall.store(v, Ordering::Relaxed);
    }

    pub fn stall(&self) -> Stall {
        match self.stall.load(Ordering::Relaxed) {
            1 => Stall::Accept,
            2 => Stall::Response,
            _ => Stall::None,
        }
    }

    /// Responses send half of their first body chunk, then the connection is cut.
    pub fn set_drop_mid_response(&self, on: bool) {
        self.drop_mid_response.store(on, Ordering::Relaxed);
    }

    pub fn drop_mid_response(&self) -> bool {
        self.drop_mid_response.load(Ordering::Relaxed)
    }

    /// How long a gracefully deleted pod stays Terminating before it is gone (default 1 s).
    pub fn set_pod_termination_delay(&self, d: Duration) {
        self.pod_termination_delay_ms.store(ms(d), Ordering::Relaxed);
    }

    pub fn pod_termination_delay(&self) -> Duration {
        Duration::from_millis(self.pod_termination_delay_ms.load(Ordering::Relaxed))
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (default 60 s).
    pub fn set_bookmark_interval(&self, d: Duration) {
        self.bookmark_interval_ms.store(ms(d).max(1), Ordering::Relaxed);
    }

    pub fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(self.bookmark_interval_ms.load(Ordering::Relaxed))
    }

    /// Turns the request log on or off (benchmarks turn it off).
    pub fn set_request_log(&self, on: bool) {
        self.request_log.store(on, Ordering::Relaxed);
    }

    pub fn request_log(&self) -> bool {
        self.request_log.load(Ordering::Relaxed)
    }
}
