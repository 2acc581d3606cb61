//! Kubernetes protobuf request bodies (kubectl 1.32+ sends them for typed calls such as
//! `auth can-i`, `auth whoami` and `create secret|configmap|namespace|deployment|role…`): the
//! `k8s\0` magic, the `runtime.Unknown` envelope, and the object decoded into its JSON form
//! with the field table in [`crate::proto_schema`]. Answers are always JSON.

use chrono::{DateTime, SecondsFormat};
use serde_json::{Map, Value};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtoError(pub String);

fn err(m: impl Into<String>) -> ProtoError {
    ProtoError(m.into())
}

/// How a field's value is encoded.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    Str,
    Bytes,
    Bool,
    Int,
    Float,
    /// metav1.Time / MicroTime: `{seconds, nanos}` → RFC 3339.
    Time,
    /// resource.Quantity: `{string}` → string.
    Quantity,
    /// intstr.IntOrString: `{type, intVal, strVal}` → number or string.
    IntOrString,
    /// runtime.RawExtension / FieldsV1: `{raw}` → embedded JSON.
    Raw,
    /// metav1.Duration: `{duration (ns)}` → Go duration string.
    Duration,
    /// ExtraValue: `{repeated items}` → array of strings.
    Strings,
    MapStr,
    MapBytes,
    MapMsg(&'static Ty),
    Msg(&'static str),
}

/// One field: number, JSON name, type, repeated.
#[derive(Debug)]
pub struct F(pub u32, pub &'static str, pub Ty, pub bool);

/// One field of a message on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed64(u64),
    Fixed32(u32),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ProtoError> {
    let mut out: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| err("truncated varint"))?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(err("varint too long"))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], ProtoError> {
    let end = pos.checked_add(n).filter(|e| *e <= buf.len()).ok_or_else(|| err("truncated field"))?;
    let b = &buf[*pos..end];
    *pos = end;
    Ok(b)
}

/// The fields of one message, in wire order.
fn fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ProtoError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let num = u32::try_from(tag >> 3).map_err(|_| err("field number overflow"))?;
        let wire = match tag & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let b = take(buf, &mut pos, 8)?;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().map_err(|_| err("fixed64"))?))
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| err("length overflow"))?;
                Wire::Bytes(take(buf, &mut pos, len)?)
            }
            5 => {
                let b = take(buf, &mut pos, 4)?;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().map_err(|_| err("fixed32"))?))
            }
            w => return Err(err(format!("unsupported wire type {w}"))),
        };
        out.push((num, wire));
    }
    Ok(out)
}

fn string(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| err("invalid utf-8"))
}

fn bytes_of<'a>(w: Wire<'a>, what: &str) -> Result<&'a [u8], ProtoError> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err(err(format!("{what}: expected a length-delimited field"))),
    }
}

fn int_of(w: Wire<'_>) -> i64 {
    match w {
        Wire::Varint(v) | Wire::Fixed64(v) => v as i64,
        Wire::Fixed32(v) => i64::from(v as i32),
        Wire::Bytes(_) => 0,
    }
}

/// Pointer fields in the Go types: present with a zero value means "set to zero".
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "shareProcessNamespace",
    "hostUsers",
    "immutable",
    "gracePeriodSeconds",
    "orphanDependents",
    "runAsUser",
    "runAsGroup",
    "runAsNonRoot",
    "privileged",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "priority",
    "optional",
    "defaultMode",
    "deletionGracePeriodSeconds",
    "allowed",
    "authenticated",
];

fn schema(name: &str) -> Option<&'static [F]> {
    crate::proto_schema::MESSAGES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

fn go_duration(ns: i64) -> String {
    let secs = ns / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Decodes one value of type `ty`; `None` for a zero value that JSON would omit.
fn value(ty: Ty, w: Wire<'_>, keep_zero: bool, depth: usize) -> Result<Option<Value>, ProtoError> {
    if depth > 64 {
        return Err(err("message nesting too deep"));
    }
    Ok(match ty {
        Ty::Str => {
            let s = string(bytes_of(w, "string")?)?;
            (!s.is_empty() || keep_zero).then_some(Value::String(s))
        }
        Ty::Bytes => {
            use base64::Engine;
            Some(Value::String(base64::engine::general_purpose::STANDARD.encode(bytes_of(w, "bytes")?)))
        }
        Ty::Bool => {
            let b = int_of(w) != 0;
            (b || keep_zero).then_some(Value::Bool(b))
        }
        Ty::Int => {
            let n = int_of(w);
            (n != 0 || keep_zero).then(|| Value::from(n))
        }
        Ty::Float => match w {
            Wire::Fixed64(v) => serde_json::Number::from_f64(f64::from_bits(v)).map(Value::Number),
            Wire::Fixed32(v) => serde_json::Number::from_f64(f64::from(f32::from_bits(v))).map(Value::Number),
            _ => None,
        },
        Ty::Time => {
            let (mut secs, mut nanos) = (0i64, 0i64);
            for (n, f) in fields(bytes_of(w, "time")?)? {
                match n {
                    1 => secs = int_of(f),
                    2 => nanos = int_of(f),
                    _ => {}
                }
            }
            if secs == 0 && nanos == 0 {
                None
            } else {
                DateTime::from_timestamp(secs, u32::try_from(nanos).unwrap_or(0))
                    .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
            }
        }
        Ty::Quantity => {
            let mut s = String::new();
            for (n, f) in fields(bytes_of(w, "quantity")?)? {
                if n == 1 {
                    s = string(bytes_of(f, "quantity")?)?;
                }
            }
            Some(Value::String(s))
        }
        Ty::IntOrString => {
            let (mut kind, mut int, mut text) = (0i64, 0i64, String::new());
            for (n, f) in fields(bytes_of(w, "intstr")?)? {
                match n {
                    1 => kind = int_of(f),
                    2 => int = int_of(f),
                    3 => text = string(bytes_of(f, "intstr")?)?,
                    _ => {}
                }
            }
            Some(if kind == 1 { Value::String(text) } else { Value::from(int) })
        }
        Ty::Raw => {
            let mut raw: &[u8] = &[];
            for (n, f) in fields(bytes_of(w, "raw")?)? {
                if n == 1 {
                    raw = bytes_of(f, "raw")?;
                }
            }
            if raw.is_empty() { None } else { serde_json::from_slice(raw).ok() }
        }
        Ty::Duration => {
            let mut ns = 0;
            for (n, f) in fields(bytes_of(w, "duration")?)? {
                if n == 1 {
                    ns = int_of(f);
                }
            }
            Some(Value::String(go_duration(ns)))
        }
        Ty::Strings => {
            let mut items = Vec::new();
            for (n, f) in fields(bytes_of(w, "extra value")?)? {
                if n == 1 {
                    items.push(Value::String(string(bytes_of(f, "extra value")?)?));
                }
            }
            Some(Value::Array(items))
        }
        Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_) => {
            // A map entry; the caller merges entries into one object.
            let (mut key, mut val) = (String::new(), None);
            for (n, f) in fields(bytes_of(w, "map entry")?)? {
                match n {
                    1 => key = string(bytes_of(f, "map key")?)?,
                    2 => {
                        val = match ty {
                            Ty::MapStr => Some(Value::String(string(bytes_of(f, "map value")?)?)),
                            Ty::MapBytes => value(Ty::Bytes, f, true, depth + 1)?,
                            Ty::MapMsg(inner) => value(*inner, f, true, depth + 1)?,
                            _ => None,
                        }
                    }
                    _ => {}
                }
            }
            let default = match ty {
                Ty::MapMsg(Ty::Strings) => Value::Array(Vec::new()),
                _ => Value::String(String::new()),
            };
            let mut m = Map::new();
            m.insert(key, val.unwrap_or(default));
            Some(Value::Object(m))
        }
        Ty::Msg(name) => Some(message(name, bytes_of(w, name)?, depth + 1)?),
    })
}

/// Decodes message `name` into JSON (unknown fields are skipped).
pub fn message(name: &str, buf: &[u8], depth: usize) -> Result<Value, ProtoError> {
    let table = schema(name).ok_or_else(|| err(format!("no protobuf schema for {name}")))?;
    let mut out = Map::new();
    for (num, w) in fields(buf)? {
        let Some(f) = table.iter().find(|f| f.0 == num) else { continue };
        let keep_zero = f.3 || KEEP_ZERO.contains(&f.1);
        let Some(v) = value(f.2, w, keep_zero, depth)? else { continue };
        match f.2 {
            Ty::MapStr | Ty::MapBytes | Ty::MapMsg(_) => {
                let slot = out.entry(f.1.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let (Value::Object(m), Value::Object(entry)) = (slot, v) {
                    m.extend(entry);
                }
            }
            _ if f.3 => {
                let slot = out.entry(f.1.to_string()).or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(a) = slot {
                    a.push(v);
                }
            }
            _ => {
                out.insert(f.1.to_string(), v);
            }
        }
    }
    Ok(Value::Object(out))
}

/// The decoded envelope: apiVersion, kind and the raw object bytes.
pub struct Unknown<'a> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'a [u8],
}

/// Strips the magic and decodes `runtime.Unknown`.
pub fn unwrap_envelope(body: &[u8]) -> Result<Unknown<'_>, ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or_else(|| err("missing k8s protobuf magic"))?;
    let mut out = Unknown { api_version: String::new(), kind: String::new(), raw: &[] };
    for (num, f) in fields(rest)? {
        match (num, f) {
            (1, Wire::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match (n, f) {
                        (1, Wire::Bytes(b)) => out.api_version = string(b)?,
                        (2, Wire::Bytes(b)) => out.kind = string(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(raw)) => out.raw = raw,
            _ => {}
        }
    }
    Ok(out)
}

/// The schema message of `apiVersion` + `kind`.
fn message_name(api_version: &str, kind: &str) -> Option<String> {
    let package = match api_version {
        "v1" => "api.core.v1".to_string(),
        "meta.k8s.io/v1" if kind == "DeleteOptions" => {
            return Some("apimachinery.pkg.apis.meta.v1.DeleteOptions".into());
        }
        "authentication.k8s.io/v1beta1" | "authentication.k8s.io/v1alpha1" => {
            "api.authentication.v1".to_string()
        }
        av => {
            let (group, version) = av.split_once('/')?;
            format!("api.{}.{version}", group.split('.').next()?)
        }
    };
    if kind == "DeleteOptions" {
        return Some("apimachinery.pkg.apis.meta.v1.DeleteOptions".into());
    }
    let name = format!("{package}.{kind}");
    schema(&name).map(|_| name)
}

/// Decodes a protobuf request body into the JSON object it stands for.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtoError> {
    let u = unwrap_envelope(body)?;
    let name = message_name(&u.api_version, &u.kind).ok_or_else(|| {
        err(format!("protobuf bodies of kind {:?} ({}) are not supported", u.kind, u.api_version))
    })?;
    let mut v = message(&name, u.raw, 0)?;
    if let Value::Object(m) = &mut v {
        let mut typed = Map::new();
        typed.insert("kind".into(), Value::String(u.kind));
        typed.insert("apiVersion".into(), Value::String(u.api_version));
        typed.extend(std::mem::take(m));
        *m = typed;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint_bytes(mut n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                return v;
            }
            v.push(b | 0x80);
        }
    }

    fn ld(num: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = varint_bytes((u64::from(num) << 3) | 2);
        let mut n = payload.len();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                v.push(b);
                break;
            }
            v.push(b | 0x80);
        }
        v.extend_from_slice(payload);
        v
    }

    fn vi(num: u8, value: u64) -> Vec<u8> {
        let mut v = varint_bytes(u64::from(num) << 3);
        v.extend(varint_bytes(value));
        v
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = ld(1, api_version.as_bytes());
        tm.extend(ld(2, kind.as_bytes()));
        let mut body = MAGIC.to_vec();
        body.extend(ld(1, &tm));
        body.extend(ld(2, raw));
        body.extend(ld(3, b""));
        body.extend(ld(4, b""));
        body
    }

    fn meta(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
        let mut m = ld(1, name.as_bytes());
        m.extend(ld(2, b""));
        m.extend(ld(8, &[]));
        for (k, v) in labels {
            let mut entry = ld(1, k.as_bytes());
            entry.extend(ld(2, v.as_bytes()));
            m.extend(ld(11, &entry));
        }
        m
    }

    #[test]
    fn decodes_ssar() {
        let mut ra = ld(1, b"default");
        ra.extend(ld(2, b"get"));
        ra.extend(ld(5, b"pods"));
        let mut obj = ld(1, &[]);
        obj.extend(ld(2, &ld(1, &ra)));
        obj.extend(ld(3, &vi(1, 0)));
        let Ok(v) = decode_object(&envelope("authorization.k8s.io/v1", "SelfSubjectAccessReview", &obj))
        else {
            panic!()
        };
        assert_eq!(v["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "get", "resource": "pods"})
        );
        assert_eq!(v["status"], json!({"allowed": false}));
    }

    #[test]
    fn decodes_secrets_with_bytes_and_maps() {
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, b"b"));
        let mut secret = ld(1, &meta("s1", &[("app", "x")]));
        secret.extend(ld(2, &entry));
        secret.extend(ld(3, b"Opaque"));
        let Ok(v) = decode_object(&envelope("v1", "Secret", &secret)) else { panic!() };
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["metadata"], json!({"name": "s1", "labels": {"app": "x"}}));
        assert_eq!(v["data"], json!({"a": "Yg=="}));
        assert_eq!(v["type"], "Opaque");
    }

    #[test]
    fn decodes_deployments() {
        // spec: replicas 0 (pointer, kept), selector, template with a container and a quantity
        let mut sel_entry = ld(1, b"app");
        sel_entry.extend(ld(2, b"web"));
        let selector = ld(1, &sel_entry);
        let mut q_entry = ld(1, b"cpu");
        q_entry.extend(ld(2, &ld(1, b"100m")));
        let resources = ld(2, &q_entry);
        let mut container = ld(1, b"nginx");
        container.extend(ld(2, b"nginx"));
        container.extend(ld(8, &resources));
        container.extend(vi(18, 0));
        let mut port = vi(3, 80);
        port.extend(ld(4, b"TCP"));
        container.extend(ld(6, &port));
        let pod_spec = ld(2, &container);
        let mut template = ld(1, &meta("", &[("app", "web")]));
        template.extend(ld(2, &pod_spec));
        let mut spec = vi(1, 0);
        spec.extend(ld(2, &selector));
        spec.extend(ld(3, &template));
        spec.extend(ld(4, &[]));
        let mut dep = ld(1, &meta("web", &[]));
        dep.extend(ld(2, &spec));
        dep.extend(ld(3, &[]));
        let v = match decode_object(&envelope("apps/v1", "Deployment", &dep)) {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        };
        assert_eq!(v["spec"]["replicas"], 0);
        assert_eq!(v["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));
        let c = &v["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["name"], "nginx");
        assert_eq!(c["resources"]["requests"]["cpu"], "100m");
        assert_eq!(c["ports"], json!([{"containerPort": 80, "protocol": "TCP"}]));
        assert!(c.get("tty").is_none());
        assert_eq!(v["status"], json!({}));
        assert_eq!(v["spec"]["template"]["metadata"], json!({"labels": {"app": "web"}}));
    }

    #[test]
    fn every_schema_reference_resolves() {
        for (name, fields) in crate::proto_schema::MESSAGES {
            for f in *fields {
                let inner = match f.2 {
                    Ty::Msg(n) => Some(n),
                    Ty::MapMsg(Ty::Msg(n)) => Some(*n),
                    _ => None,
                };
                if let Some(n) = inner {
                    assert!(schema(n).is_some(), "{name}.{} refers to unknown {n}", f.1);
                }
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_object(b"{}").is_err());
        assert!(decode_object(b"k8s\0\x0a\x50").is_err());
        assert!(decode_object(&envelope("v1", "Unicorn", &[])).is_err());
    }
}
