//! The simulated cluster: the store plus what controllers and the kubelet would do around it
//! (namespace contents, graceful pod termination, namespace deletion) and the write operations
//! the API and the library handle share. Every write goes through here so watches see it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::objects::{self, Allocator, Ctx, meta_str};
use crate::patch;
use crate::rbac::RbacIndex;
use crate::resources::{self, ResId, ResourceDef, ids};
use crate::status::ApiError;
use crate::store::{Key, Store, StoreError, Stored};

/// What a DELETE did.
pub struct Deleted {
    /// The object as last stored (with `deletionTimestamp` when termination is pending).
    pub obj: Arc<Stored>,
    /// True when the object is gone now; false when it terminates later.
    pub gone: bool,
}

/// The kinds of PATCH bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    /// Server-side apply, approximated: create when absent, else strategic merge.
    Apply,
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

pub struct Cluster {
    pub store: Store,
    pub alloc: Allocator,
    pub node_name: String,
    pub ca_pem: String,
    pub knobs: Arc<crate::knobs::Knobs>,
    rbac: RwLock<(u64, Arc<RbacIndex>)>,
}

fn store_err(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(def, name),
        StoreError::AlreadyExists => ApiError::already_exists(def, name),
        StoreError::Conflict => ApiError::conflict(def, name),
    }
}

fn parse_rv(def: &ResourceDef, name: &str, rv: &str) -> Result<Option<u64>, ApiError> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<u64>().map(Some).map_err(|_| ApiError::conflict(def, name))
}

impl Cluster {
    pub fn new(store: Store, ca_pem: String, knobs: Arc<crate::knobs::Knobs>) -> Cluster {
        Cluster {
            store,
            alloc: Allocator::default(),
            node_name: "kube-sim-node".into(),
            ca_pem,
            knobs,
            rbac: RwLock::new((u64::MAX, Arc::new(RbacIndex::default()))),
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx { now: Utc::now(), alloc: &self.alloc, node_name: &self.node_name }
    }

    /// The RBAC index, rebuilt after any RBAC write.
    pub fn rbac(&self) -> Arc<RbacIndex> {
        let generation = self.store.rbac_generation();
        {
            let g = self.rbac.read().unwrap_or_else(|p| p.into_inner());
            if g.0 == generation {
                return g.1.clone();
            }
        }
        let snap = self.store.snapshot();
        let kinds = [ids::clusterroles(), ids::roles(), ids::clusterrolebindings(), ids::rolebindings()];
        let objects: Vec<(&str, &Value)> = kinds
            .iter()
            .flat_map(|id| snap.range(*id, None, None).map(|(_, o)| (resources::def(*id).kind, &o.value)))
            .collect();
        let idx = Arc::new(RbacIndex::build(objects));
        let mut g = self.rbac.write().unwrap_or_else(|p| p.into_inner());
        *g = (generation, idx.clone());
        idx
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.store.get(&Key::new(ids::namespaces(), "", ns)).is_some()
    }

    fn key(def_id: ResId, ns: &str, name: &str) -> Key {
        let def = resources::def(def_id);
        Key::new(def_id, if def.namespaced { ns } else { "" }, name)
    }

    /// Creates an object (validation, defaults, status, side effects).
    pub fn create(&self, id: ResId, ns: &str, obj: Value, dry_run: bool) -> Result<Arc<Stored>, ApiError> {
        let def = resources::def(id);
        if def.namespaced && !self.namespace_exists(ns) {
            return Err(ApiError::namespace_not_found(ns));
        }
        let obj = objects::prepare_create(def, ns, obj, &self.ctx())?;
        let name = meta_str(&obj, "name").to_string();
        let key = Self::key(id, ns, &name);
        if dry_run {
            if self.store.get(&key).is_some() {
                return Err(ApiError::already_exists(def, &name));
            }
            return Ok(Arc::new(Stored {
                json: bytes::Bytes::from(obj.to_string()),
                value: obj,
                rv: self.store.rv(),
            }));
        }
        let stored = self.store.create(key, obj).map_err(|e| store_err(def, &name, e))?;
        if id == ids::namespaces() {
            self.populate_namespace(&name);
        }
        Ok(stored)
    }

    /// What the service-account and root-CA controllers put in every new namespace.
    fn populate_namespace(&self, ns: &str) {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
        let _ = self.create(ids::serviceaccounts(), ns, sa, false);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                         "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
            "data": {"ca.crt": self.ca_pem}});
        let _ = self.create(ids::configmaps(), ns, cm, false);
    }

    /// Replaces an object (PUT). `subresource` is "" or "status".
    pub fn update(
        &self,
        id: ResId,
        ns: &str,
        name: &str,
        obj: Value,
        subresource: &str,
        dry_run: bool,
    ) -> Result<(Arc<Stored>, bool), ApiError> {
        let def = resources::def(id);
        let key = Self::key(id, ns, name);
        let expected = parse_rv(def, name, meta_str(&obj, "resourceVersion"))?;
        let Some(cur) = self.store.get(&key) else {
            let creatable = resources::is_rbac(id) || def.kind == "Event";
            if creatable && subresource.is_empty() {
                if expected.is_some() {
                    return Err(ApiError::not_found(def, name));
                }
                let mut obj = obj;
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut)
                    && m.get("name").and_then(Value::as_str).unwrap_or_default().is_empty()
                {
                    m.insert("name".into(), Value::String(name.to_string()));
                }
                let body_name = meta_str(&obj, "name").to_string();
                if body_name != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                return self.create(id, ns, obj, dry_run).map(|s| (s, true));
            }
            return Err(ApiError::not_found(def, name));
        };
        let ctx = self.ctx();
        if dry_run {
            if expected.is_some_and(|rv| rv != cur.rv) {
                return Err(ApiError::conflict(def, name));
            }
            let new = objects::prepare_update(def, &cur.value, obj, subresource, &ctx)?;
            return Ok((
                Arc::new(Stored { json: bytes::Bytes::from(new.to_string()), value: new, rv: cur.rv }),
                false,
            ));
        }
        let res = self
            .store
            .modify(&key, |cur| {
                if expected.is_some_and(|rv| rv != cur.rv) {
                    return Err(ApiError::conflict(def, name));
                }
                objects::prepare_update(def, &cur.value, obj, subresource, &ctx).map(Some)
            })
            .map_err(|e| store_err(def, name, e))?;
        res.map(|s| (s, false))
    }

    /// Applies a patch. Returns the object and whether it was created (server-side apply).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        id: ResId,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        subresource: &str,
        dry_run: bool,
    ) -> Result<(Arc<Stored>, bool), ApiError> {
        let def = resources::def(id);
        let key = Self::key(id, ns, name);
        if kind == PatchKind::Apply && self.store.get(&key).is_none() {
            let mut obj = body.clone();
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.insert("name".into(), Value::String(name.to_string()));
            }
            return self.create(id, ns, obj, dry_run).map(|s| (s, true));
        }
        let ctx = self.ctx();
        let compute = |cur: &Arc<Stored>| -> Result<Option<Value>, ApiError> {
            let patched = match kind {
                PatchKind::Json => patch::json_patch(&cur.value, body),
                PatchKind::Merge => {
                    let mut v = cur.value.clone();
                    patch::merge_patch(&mut v, body);
                    Ok(v)
                }
                PatchKind::Strategic | PatchKind::Apply => {
                    patch::strategic_merge_patch(def.kind, &cur.value, body)
                }
            }
            .map_err(|e| match e.code {
                400 => ApiError::bad_request(e.message),
                _ => ApiError::new(422, "Invalid", e.message),
            })?;
            let patched_rv = meta_str(&patched, "resourceVersion").to_string();
            if !patched_rv.is_empty() && patched_rv != cur.rv.to_string() {
                return Err(ApiError::conflict(def, name));
            }
            let new = objects::prepare_update(def, &cur.value, patched, subresource, &ctx)?;
            Ok(Some(new))
        };
        if dry_run {
            let cur = self.store.get(&key).ok_or_else(|| ApiError::not_found(def, name))?;
            let new = compute(&cur)?.unwrap_or_else(|| cur.value.clone());
            return Ok((
                Arc::new(Stored { json: bytes::Bytes::from(new.to_string()), value: new, rv: cur.rv }),
                false,
            ));
        }
        let res = self.store.modify(&key, compute).map_err(|e| store_err(def, name, e))?;
        res.map(|s| (s, false))
    }

    /// Deletes an object: pods terminate gracefully, namespaces take their contents with them.
    pub fn delete(
        self: &Arc<Self>,
        id: ResId,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let def = resources::def(id);
        let key = Self::key(id, ns, name);
        let cur = self.store.get(&key).ok_or_else(|| ApiError::not_found(def, name))?;
        if let Some(uid) = &opts.precondition_uid {
            let actual = meta_str(&cur.value, "uid");
            if uid != actual {
                return Err(ApiError {
                    message: format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}",
                        crate::status::qualified(def.group, def.plural)
                    ),
                    ..ApiError::conflict(def, name)
                });
            }
        }
        if let Some(rv) = &opts.precondition_rv
            && *rv != cur.rv.to_string()
        {
            return Err(ApiError {
                message: format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    crate::status::qualified(def.group, def.plural),
                    cur.rv
                ),
                ..ApiError::conflict(def, name)
            });
        }
        if opts.dry_run {
            return Ok(Deleted { obj: cur, gone: true });
        }
        if id == ids::pods() {
            let grace = opts
                .grace_period_seconds
                .or_else(|| cur.value.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30);
            if grace > 0 {
                return self.terminate_pod(&key, &cur, grace);
            }
        }
        if id == ids::namespaces() {
            return self.delete_namespace(&key, name);
        }
        let gone = self.store.delete(&key, None).map_err(|e| store_err(def, name, e))?;
        Ok(Deleted { obj: gone, gone: true })
    }

    /// Marks a pod Terminating and removes it after the termination delay.
    fn terminate_pod(
        self: &Arc<Self>,
        key: &Key,
        cur: &Arc<Stored>,
        grace: i64,
    ) -> Result<Deleted, ApiError> {
        let def = resources::def(key.res);
        if cur.value.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
            return Ok(Deleted { obj: cur.clone(), gone: false });
        }
        let when = objects::timestamp(Utc::now() + chrono::Duration::seconds(grace));
        let marked = self
            .store
            .modify(key, |c| -> Result<Option<Value>, ApiError> {
                let mut v = c.value.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("deletionTimestamp".into(), Value::String(when.clone()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                Ok(Some(v))
            })
            .map_err(|e| store_err(def, &key.name, e))??;
        let delay =
            self.knobs.pod_termination_delay().min(Duration::from_secs(u64::try_from(grace).unwrap_or(0)));
        let uid = meta_str(&marked.value, "uid").to_string();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let weak = Arc::downgrade(self);
                let key = key.clone();
                handle.spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(cluster) = weak.upgrade()
                        && cluster.store.get(&key).is_some_and(|s| meta_str(&s.value, "uid") == uid)
                    {
                        let _ = cluster.store.delete(&key, None);
                    }
                });
                Ok(Deleted { obj: marked, gone: false })
            }
            Err(_) => {
                let gone = self.store.delete(key, None).map_err(|e| store_err(def, &key.name, e))?;
                Ok(Deleted { obj: gone, gone: true })
            }
        }
    }

    fn delete_namespace(&self, key: &Key, name: &str) -> Result<Deleted, ApiError> {
        let def = resources::def(key.res);
        let now = objects::timestamp(Utc::now());
        let marked = self
            .store
            .modify(key, |c| -> Result<Option<Value>, ApiError> {
                let mut v = c.value.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.insert("deletionTimestamp".into(), Value::String(now.clone()));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                if let Some(m) = v.as_object_mut() {
                    m.insert("status".into(), json!({"phase": "Terminating"}));
                }
                Ok(Some(v))
            })
            .map_err(|e| store_err(def, name, e))??;
        let snap = self.store.snapshot();
        let contents: Vec<Key> = snap
            .iter()
            .filter(|(k, _)| k.ns == name && resources::def(k.res).namespaced)
            .map(|(k, _)| k.clone())
            .collect();
        for k in contents {
            let _ = self.store.delete(&k, None);
        }
        let _ = self.store.delete(key, None);
        Ok(Deleted { obj: marked, gone: true })
    }

    /// Creates or replaces `obj` wherever its apiVersion/kind/namespace put it, status included.
    pub fn apply_object(&self, obj: Value) -> Result<Arc<Stored>, ApiError> {
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
        let (id, def) = resources::by_kind(av, kind).ok_or_else(|| {
            ApiError::bad_request(format!("no resource serves apiVersion {av:?} kind {kind:?}"))
        })?;
        let ns = if def.namespaced {
            let n = meta_str(&obj, "namespace");
            if n.is_empty() { "default".to_string() } else { n.to_string() }
        } else {
            String::new()
        };
        let name = meta_str(&obj, "name").to_string();
        let status = obj.get("status").cloned();
        let key = Self::key(id, &ns, &name);
        let stored = if self.store.get(&key).is_some() && !name.is_empty() {
            let mut obj = obj;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            self.update(id, &ns, &name, obj, "", false)?.0
        } else {
            self.create(id, &ns, obj, false)?
        };
        match status {
            Some(s) if stored.value.get("status") != Some(&s) => {
                let mut v = stored.value.clone();
                if let Some(m) = v.as_object_mut() {
                    m.insert("status".into(), s);
                }
                Ok(self.update(id, &ns, meta_str(&stored.value, "name"), v, "status", false)?.0)
            }
            _ => Ok(stored),
        }
    }
}
