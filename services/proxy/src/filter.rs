//! The one place the proxy reads an answer: a namespace-scoped user's list or watch of
//! `namespaces` keeps only the namespaces granted to them (plain lists, Tables, and watch events
//! line by line, without buffering the stream).

use std::collections::HashSet;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{ACCEPT, ACCEPT_ENCODING, HeaderValue};
use http_body::{Body, Frame};
use serde_json::Value;

use crate::body::BoxError;

/// Largest list answer kubegate will filter in memory.
pub const MAX_FILTERED_LIST: usize = 64 << 20;

/// Makes the upstream answer something filterable: JSON (or a JSON Table), uncompressed.
pub fn prepare_request_headers(headers: &mut HeaderMap) {
    headers.remove(ACCEPT_ENCODING);
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kept: Vec<&str> =
        accept.split(',').map(str::trim).filter(|t| !t.is_empty() && !t.contains("protobuf")).collect();
    let value = if kept.is_empty() { "application/json".to_string() } else { kept.join(",") };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(ACCEPT, v);
    }
}

fn name_of(object: &Value) -> Option<&str> {
    object.get("metadata")?.get("name")?.as_str()
}

/// Keeps the granted items (or Table rows) of a list document. `None` if it is not JSON we
/// understand (then nothing is passed on).
pub fn filter_list(body: &[u8], allowed: &HashSet<&str>) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    filter_document(&mut doc, allowed);
    serde_json::to_vec(&doc).ok()
}

/// Filters a list, a Table or a single object in place; true if anything is left.
fn filter_document(doc: &mut Value, allowed: &HashSet<&str>) -> bool {
    if doc.get("kind").and_then(Value::as_str) == Some("Table") {
        if let Some(rows) = doc.get_mut("rows").and_then(Value::as_array_mut) {
            rows.retain(|row| {
                let name = row
                    .get("object")
                    .and_then(name_of)
                    .or_else(|| row.get("cells").and_then(|c| c.get(0)).and_then(Value::as_str));
                name.map(|n| allowed.contains(n)).unwrap_or(false)
            });
            return !rows.is_empty();
        }
        return false;
    }
    if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
        items.retain(|item| name_of(item).map(|n| allowed.contains(n)).unwrap_or(false));
        return true;
    }
    name_of(doc).map(|n| allowed.contains(n)).unwrap_or(false)
}

/// Filters one watch event line; `None` drops it.
pub fn filter_watch_line(line: &[u8], allowed: &HashSet<&str>) -> Option<Vec<u8>> {
    let trimmed = line.trim_ascii();
    if trimmed.is_empty() {
        return None;
    }
    let mut event: Value = serde_json::from_slice(trimmed).ok()?;
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "BOOKMARK" || kind == "ERROR" {
        return Some(trimmed.to_vec());
    }
    let object = event.get_mut("object")?;
    if !filter_document(object, allowed) {
        return None;
    }
    serde_json::to_vec(&event).ok()
}

/// A watch answer filtered event by event as it streams.
pub struct WatchFilter<B> {
    inner: B,
    allowed: HashSet<String>,
    pending: BytesMut,
    done: bool,
}

impl<B> WatchFilter<B> {
    pub fn new(inner: B, allowed: &[String]) -> WatchFilter<B> {
        WatchFilter {
            inner,
            allowed: allowed.iter().cloned().collect(),
            pending: BytesMut::new(),
            done: false,
        }
    }

    fn drain_lines(&mut self, flush_rest: bool) -> Option<Bytes> {
        let allowed: HashSet<&str> = self.allowed.iter().map(String::as_str).collect();
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
            let line = self.pending.split_to(i + 1);
            if let Some(kept) = filter_watch_line(&line, &allowed) {
                out.extend_from_slice(&kept);
                out.push(b'\n');
            }
        }
        if flush_rest && !self.pending.is_empty() {
            let line = self.pending.split();
            if let Some(kept) = filter_watch_line(&line, &allowed) {
                out.extend_from_slice(&kept);
                out.push(b'\n');
            }
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }
}

/// Lines longer than this are refused (a watch event of a namespace is small).
const MAX_LINE: usize = 4 << 20;

impl<B> Body for WatchFilter<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.pending.extend_from_slice(&data);
                        if this.pending.len() > MAX_LINE {
                            this.done = true;
                            return Poll::Ready(Some(Err("watch event too large to filter".into())));
                        }
                        if let Some(out) = this.drain_lines(false) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => {
                    this.done = true;
                    return match this.drain_lines(true) {
                        Some(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        None => Poll::Ready(None),
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http_body_util::BodyExt;
    use serde_json::json;

    use super::*;

    fn allowed() -> HashSet<&'static str> {
        ["dev", "qa"].into_iter().collect()
    }

    #[test]
    fn plain_lists_keep_granted_items() {
        let list = json!({"kind": "NamespaceList", "items": [
            {"metadata": {"name": "default"}}, {"metadata": {"name": "dev"}}, {"metadata": {"name": "kube-system"}}
        ]});
        let out: Value =
            serde_json::from_slice(&filter_list(&serde_json::to_vec(&list).unwrap(), &allowed()).unwrap())
                .unwrap();
        assert_eq!(out["items"], json!([{"metadata": {"name": "dev"}}]));
    }

    #[test]
    fn tables_keep_granted_rows_with_or_without_objects() {
        let table = json!({"kind": "Table", "columnDefinitions": [], "rows": [
            {"cells": ["default", "Active"], "object": {"metadata": {"name": "default"}}},
            {"cells": ["qa", "Active"], "object": {"metadata": {"name": "qa"}}},
            {"cells": ["dev", "Active"]},
        ]});
        let out: Value =
            serde_json::from_slice(&filter_list(&serde_json::to_vec(&table).unwrap(), &allowed()).unwrap())
                .unwrap();
        let names: Vec<&str> =
            out["rows"].as_array().unwrap().iter().map(|r| r["cells"][0].as_str().unwrap()).collect();
        assert_eq!(names, vec!["qa", "dev"]);
        assert!(filter_list(b"not json", &allowed()).is_none());
    }

    #[tokio::test]
    async fn watch_events_are_filtered_across_chunk_boundaries() {
        let (mut tx, rx) = http_body_util::channel::Channel::<Bytes, BoxError>::new(8);
        let filtered = WatchFilter::new(rx, &["dev".to_string()]);
        tokio::spawn(async move {
            tx.send_data(Bytes::from_static(
                b"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"kube-",
            ))
            .await
            .unwrap();
            tx.send_data(Bytes::from_static(
                b"system\"}}}\n{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"dev\"}}}\n",
            ))
            .await
            .unwrap();
            tx.send_data(Bytes::from_static(
                b"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}",
            ))
            .await
            .unwrap();
        });
        let out = filtered.collect().await.unwrap().to_bytes();
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["object"]["metadata"]["name"], "dev");
        assert_eq!(lines[1]["type"], "BOOKMARK");
    }

    #[test]
    fn request_headers_ask_for_plain_json() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        prepare_request_headers(&mut h);
        assert_eq!(h[ACCEPT], "application/json;as=Table;v=v1;g=meta.k8s.io,application/json");
        assert!(h.get(ACCEPT_ENCODING).is_none());
    }
}
