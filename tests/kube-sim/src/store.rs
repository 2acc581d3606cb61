//! The object store: every stored object keyed by resource, namespace and name, one global
//! resourceVersion counter, a bounded history of change events for watches that resume from a
//! resourceVersion, and a broadcast channel that feeds every live watch.
//!
//! Readers take an `Arc` of the current map and serialize outside the lock; a writer copies the
//! map only while some reader or paginated list still holds the previous one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

use crate::resources::{self, ResId};

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub res: ResId,
    pub ns: String,
    pub name: String,
}

impl Key {
    pub fn new(res: ResId, ns: &str, name: &str) -> Key {
        Key { res, ns: ns.to_string(), name: name.to_string() }
    }
}

/// A stored object with its JSON encoding made once.
#[derive(Debug)]
pub struct Stored {
    pub value: Value,
    pub json: Bytes,
    pub rv: u64,
}

impl Stored {
    fn new(mut value: Value, rv: u64) -> Stored {
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Stored { value, json, rv }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, shared by every watch that sees it.
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub etype: EventType,
    pub key: Key,
    pub obj: Arc<Stored>,
    /// The object before a modification (for selector transitions).
    pub prev: Option<Arc<Stored>>,
    line: OnceLock<Bytes>,
}

impl Event {
    pub fn new(rv: u64, etype: EventType, key: Key, obj: Arc<Stored>, prev: Option<Arc<Stored>>) -> Event {
        Event { rv, etype, key, obj, prev, line: OnceLock::new() }
    }

    /// `{"type":"ADDED","object":{...}}\n`, encoded once.
    pub fn json_line(&self) -> Bytes {
        self.line
            .get_or_init(|| {
                let mut v = Vec::with_capacity(self.obj.json.len() + 32);
                v.extend_from_slice(b"{\"type\":\"");
                v.extend_from_slice(self.etype.as_str().as_bytes());
                v.extend_from_slice(b"\",\"object\":");
                v.extend_from_slice(&self.obj.json);
                v.extend_from_slice(b"}\n");
                Bytes::from(v)
            })
            .clone()
    }
}

type Objects = BTreeMap<Key, Arc<Stored>>;

/// A consistent view of every object at one resourceVersion.
#[derive(Clone)]
pub struct Snapshot {
    pub rv: u64,
    objects: Arc<Objects>,
}

impl Snapshot {
    /// Objects of `res`, in one namespace or all, in key order, starting after `after`.
    pub fn range<'a>(
        &'a self,
        res: ResId,
        ns: Option<&'a str>,
        after: Option<&'a Key>,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Stored>)> + 'a {
        let start = Key { res, ns: ns.unwrap_or("").to_string(), name: String::new() };
        self.objects
            .range(start..)
            .skip_while(move |(k, _)| after.is_some_and(|a| *k <= a))
            .take_while(move |(k, _)| k.res == res && ns.is_none_or(|n| k.ns == n))
    }

    pub fn get(&self, key: &Key) -> Option<&Arc<Stored>> {
        self.objects.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Key, &Arc<Stored>)> {
        self.objects.iter()
    }
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    NotFound,
    AlreadyExists,
    Conflict,
}

/// Where a new watch starts: the events to send first, the live receiver (no gap, no overlap)
/// and the store's resourceVersion when the backlog was taken.
pub struct WatchStart {
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub rv: u64,
}

/// A watch could not start: the requested resourceVersion was compacted away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOld {
    pub requested: u64,
    pub oldest: u64,
}

struct Inner {
    rv: u64,
    objects: Arc<Objects>,
    history: VecDeque<Arc<Event>>,
    /// Events at or below this resourceVersion are gone from the history.
    compacted: u64,
    snapshots: VecDeque<(Instant, Snapshot)>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    inner: RwLock<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
    history_cap: usize,
    rbac_generation: AtomicU64,
}

const SNAPSHOT_TTL: Duration = Duration::from_secs(300);
const SNAPSHOT_CAP: usize = 64;

impl Store {
    /// A store whose first resourceVersion is `start_rv + 1`, keeping `history_cap` events.
    pub fn new(start_rv: u64, history_cap: usize, broadcast_cap: usize) -> Store {
        let (tx, _) = broadcast::channel(broadcast_cap.max(16));
        Store {
            inner: RwLock::new(Inner {
                rv: start_rv,
                objects: Arc::new(BTreeMap::new()),
                history: VecDeque::new(),
                compacted: 0,
                snapshots: VecDeque::new(),
            }),
            tx,
            history_cap: history_cap.max(1),
            rbac_generation: AtomicU64::new(0),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.read().rv
    }

    /// Bumped on every RBAC write; the authorizer rebuilds its index when it changes.
    pub fn rbac_generation(&self) -> u64 {
        self.rbac_generation.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> Snapshot {
        let inner = self.read();
        Snapshot { rv: inner.rv, objects: inner.objects.clone() }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Stored>> {
        self.read().objects.get(key).cloned()
    }

    /// Keeps `snap` for `continue` tokens issued at its resourceVersion.
    pub fn retain_snapshot(&self, snap: &Snapshot) {
        let mut inner = self.write();
        let now = Instant::now();
        inner.snapshots.retain(|(t, s)| now.duration_since(*t) < SNAPSHOT_TTL && s.rv != snap.rv);
        if inner.snapshots.len() >= SNAPSHOT_CAP {
            inner.snapshots.pop_front();
        }
        inner.snapshots.push_back((now, snap.clone()));
    }

    /// The snapshot a `continue` token refers to, if still kept.
    pub fn snapshot_at(&self, rv: u64) -> Option<Snapshot> {
        let inner = self.read();
        let now = Instant::now();
        inner
            .snapshots
            .iter()
            .find(|(t, s)| s.rv == rv && now.duration_since(*t) < SNAPSHOT_TTL)
            .map(|(_, s)| s.clone())
    }

    fn commit(
        &self,
        inner: &mut Inner,
        etype: EventType,
        key: Key,
        obj: Arc<Stored>,
        prev: Option<Arc<Stored>>,
    ) {
        if resources::is_rbac(key.res) {
            self.rbac_generation.fetch_add(1, Ordering::AcqRel);
        }
        let ev = Arc::new(Event::new(obj.rv, etype, key, obj, prev));
        if inner.history.len() >= self.history_cap
            && let Some(old) = inner.history.pop_front()
        {
            inner.compacted = old.rv;
        }
        inner.history.push_back(ev.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// Creates an object; fails when the key exists.
    pub fn create(&self, key: Key, value: Value) -> Result<Arc<Stored>, StoreError> {
        let mut inner = self.write();
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        inner.rv += 1;
        let stored = Arc::new(Stored::new(value, inner.rv));
        Arc::make_mut(&mut inner.objects).insert(key.clone(), stored.clone());
        self.commit(&mut inner, EventType::Added, key, stored.clone(), None);
        Ok(stored)
    }

    /// Creates or replaces an object unconditionally.
    pub fn upsert(&self, key: Key, value: Value) -> Arc<Stored> {
        let mut inner = self.write();
        inner.rv += 1;
        let stored = Arc::new(Stored::new(value, inner.rv));
        let prev = Arc::make_mut(&mut inner.objects).insert(key.clone(), stored.clone());
        let etype = if prev.is_some() { EventType::Modified } else { EventType::Added };
        self.commit(&mut inner, etype, key, stored.clone(), prev);
        stored
    }

    /// Read-modify-write under the store lock. `f` sees the current object and returns the new
    /// one, `Ok(None)` to leave it unchanged, or an error that is passed through.
    pub fn modify<E>(
        &self,
        key: &Key,
        f: impl FnOnce(&Arc<Stored>) -> Result<Option<Value>, E>,
    ) -> Result<Result<Arc<Stored>, E>, StoreError> {
        let mut inner = self.write();
        let Some(cur) = inner.objects.get(key).cloned() else { return Err(StoreError::NotFound) };
        let new = match f(&cur) {
            Ok(Some(v)) => v,
            Ok(None) => return Ok(Ok(cur)),
            Err(e) => return Ok(Err(e)),
        };
        inner.rv += 1;
        let stored = Arc::new(Stored::new(new, inner.rv));
        Arc::make_mut(&mut inner.objects).insert(key.clone(), stored.clone());
        self.commit(&mut inner, EventType::Modified, key.clone(), stored.clone(), Some(cur));
        Ok(Ok(stored))
    }

    /// Replaces an object; with `expected_rv` set, fails with `Conflict` when it moved on.
    pub fn update(
        &self,
        key: &Key,
        value: Value,
        expected_rv: Option<u64>,
    ) -> Result<Arc<Stored>, StoreError> {
        match self.modify(key, |cur| {
            if expected_rv.is_some_and(|rv| rv != cur.rv) {
                return Err(StoreError::Conflict);
            }
            Ok(Some(value))
        })? {
            Ok(s) => Ok(s),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object. The DELETED event carries the object at a new resourceVersion.
    pub fn delete(&self, key: &Key, expected_rv: Option<u64>) -> Result<Arc<Stored>, StoreError> {
        let mut inner = self.write();
        let Some(cur) = inner.objects.get(key).cloned() else { return Err(StoreError::NotFound) };
        if expected_rv.is_some_and(|rv| rv != cur.rv) {
            return Err(StoreError::Conflict);
        }
        inner.rv += 1;
        Arc::make_mut(&mut inner.objects).remove(key);
        let gone = Arc::new(Stored::new(cur.value.clone(), inner.rv));
        self.commit(&mut inner, EventType::Deleted, key.clone(), gone.clone(), Some(cur));
        Ok(gone)
    }

    /// Starts a watch. With `from = None` the caller gets the current objects as ADDED events
    /// (resourceVersion unset or "0"); otherwise every kept event after `from`.
    pub fn watch(&self, from: Option<u64>, res: ResId, ns: Option<&str>) -> Result<WatchStart, TooOld> {
        let inner = self.read();
        let rx = self.tx.subscribe();
        let mut backlog = Vec::new();
        match from {
            None => {
                let snap = Snapshot { rv: inner.rv, objects: inner.objects.clone() };
                for (k, obj) in snap.range(res, ns, None) {
                    backlog.push(Arc::new(Event::new(
                        obj.rv,
                        EventType::Added,
                        k.clone(),
                        obj.clone(),
                        None,
                    )));
                }
            }
            Some(rv) => {
                if rv < inner.compacted {
                    return Err(TooOld { requested: rv, oldest: inner.compacted + 1 });
                }
                for ev in inner.history.iter().filter(|e| e.rv > rv) {
                    if ev.key.res == res && ns.is_none_or(|n| ev.key.ns == n) {
                        backlog.push(ev.clone());
                    }
                }
            }
        }
        Ok(WatchStart { backlog, rx, rv: inner.rv })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ids;
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn crud_and_versions() {
        let s = Store::new(1000, 100, 100);
        let k = Key::new(ids::pods(), "default", "a");
        let Ok(a) = s.create(k.clone(), pod("a")) else { panic!() };
        assert_eq!(a.rv, 1001);
        assert_eq!(a.value["metadata"]["resourceVersion"], "1001");
        assert_eq!(s.create(k.clone(), pod("a")).err(), Some(StoreError::AlreadyExists));
        assert_eq!(s.update(&k, pod("a"), Some(1)).err(), Some(StoreError::Conflict));
        let Ok(b) = s.update(&k, pod("a"), Some(1001)) else { panic!() };
        assert_eq!(b.rv, 1002);
        let Ok(d) = s.delete(&k, None) else { panic!() };
        assert_eq!(d.rv, 1003);
        assert!(s.get(&k).is_none());
        assert_eq!(s.delete(&k, None).err(), Some(StoreError::NotFound));
    }

    #[test]
    fn snapshots_are_consistent() {
        let s = Store::new(0, 100, 100);
        for n in ["a", "b", "c"] {
            let _ = s.create(Key::new(ids::pods(), "default", n), pod(n));
        }
        let _ = s.create(Key::new(ids::pods(), "other", "z"), pod("z"));
        let snap = s.snapshot();
        let _ = s.delete(&Key::new(ids::pods(), "default", "b"), None);
        let names: Vec<&str> =
            snap.range(ids::pods(), Some("default"), None).map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        let after = Key::new(ids::pods(), "default", "a");
        let names: Vec<&str> =
            snap.range(ids::pods(), Some("default"), Some(&after)).map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(names, vec!["b", "c"]);
        assert_eq!(snap.range(ids::pods(), None, None).count(), 4);
        assert_eq!(s.snapshot().range(ids::pods(), Some("default"), None).count(), 2);
        assert_eq!(snap.range(ids::configmaps(), None, None).count(), 0);
    }

    #[test]
    fn watch_backlog_and_compaction() {
        let s = Store::new(0, 3, 100);
        let k = |n: &str| Key::new(ids::pods(), "default", n);
        for n in ["a", "b", "c", "d"] {
            let _ = s.create(k(n), pod(n));
        }
        // history keeps rv 2..=4; rv 1 was compacted
        let Ok(start) = s.watch(Some(2), ids::pods(), Some("default")) else { panic!() };
        assert_eq!(start.backlog.iter().map(|e| e.rv).collect::<Vec<_>>(), vec![3, 4]);
        assert!(s.watch(Some(1), ids::pods(), None).is_ok());
        assert_eq!(s.watch(Some(0), ids::pods(), None).err(), Some(TooOld { requested: 0, oldest: 2 }));
        let Ok(WatchStart { backlog: initial, mut rx, rv }) = s.watch(None, ids::pods(), None) else {
            panic!()
        };
        assert_eq!(initial.len(), 4);
        assert_eq!(rv, 4);
        let _ = s.delete(&k("a"), None);
        let Ok(ev) = rx.try_recv() else { panic!() };
        assert_eq!(ev.etype, EventType::Deleted);
        assert!(ev.json_line().starts_with(b"{\"type\":\"DELETED\",\"object\":{"));
    }
}
