//! kube-sim's wire behaviour checked directly over HTTPS: authentication, discovery, OpenAPI,
//! tables, lists, watches, errors, impersonation, reviews, RBAC, logs, knobs and the request log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{ADMIN, ALICE, Http, KUBEGATE, NOBODY, read_to_end, read_until};
use serde_json::{Value, json};

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
const DISCOVERY_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

fn status_of(v: &Value) -> (&str, &str, i64) {
    (
        v["kind"].as_str().unwrap_or_default(),
        v["reason"].as_str().unwrap_or_default(),
        v["code"].as_i64().unwrap_or_default(),
    )
}

#[tokio::test]
async fn authentication_failures_are_401_status() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    for token in [None, Some("wrong")] {
        let r = http.request("GET", "/api/v1/namespaces/default/pods", token, &[], None).await;
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(status_of(&v), ("Status", "Unauthorized", 401));
        assert_eq!(v["message"], "Unauthorized");
    }
    let r = http.request("GET", "/version", None, &[("authorization", "Basic eDp5")], None).await;
    assert_eq!(r.status, 401);
    let r = http.get("/version", ADMIN).await;
    assert_eq!(r.json()["gitVersion"], "v1.32.0");
    let r = http.get("/healthz", NOBODY).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    sim.shutdown().await;
}

#[tokio::test]
async fn anonymous_requests_when_enabled() {
    let mut cfg = common::config();
    cfg.anonymous = true;
    let sim = common::start_with(cfg).await;
    let http = Http::new(&sim);
    let r = http.request("GET", "/readyz", None, &[], None).await;
    assert_eq!(r.status, 200);
    let r = http.request("GET", "/api/v1/pods", None, &[], None).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn discovery_follows_accept() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http.request("GET", "/api?timeout=32s", Some(ADMIN), &[("accept", DISCOVERY_V2)], None).await;
    assert_eq!(r.content_type(), "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
    let v = r.json();
    assert_eq!(v["kind"], "APIGroupDiscoveryList");
    let core = &v["items"][0]["versions"][0];
    assert_eq!(core["freshness"], "Current");
    assert!(
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resource"] == "pods" && r["singularResource"] == "pod")
    );

    let beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = http.request("GET", "/apis", Some(ADMIN), &[("accept", beta)], None).await;
    assert_eq!(r.content_type(), "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList");
    let groups: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    for g in ["apps", "authentication.k8s.io", "authorization.k8s.io", "rbac.authorization.k8s.io"] {
        assert!(groups.contains(&g.to_string()), "{groups:?}");
    }

    let r = http.request("GET", "/api", Some(ADMIN), &[("accept", "application/json, */*")], None).await;
    assert_eq!(r.json()["kind"], "APIVersions");
    let r = http.get("/apis", ADMIN).await;
    assert_eq!(r.json()["kind"], "APIGroupList");
    let r = http.get("/api/v1", ADMIN).await;
    let v = r.json();
    assert_eq!(v["kind"], "APIResourceList");
    assert!(v["resources"].as_array().unwrap().iter().any(|r| r["name"] == "pods/exec"));
    assert_eq!(http.get("/apis/apps/v1", ADMIN).await.json()["groupVersion"], "apps/v1");
    assert_eq!(http.get("/apis/apps", ADMIN).await.json()["kind"], "APIGroup");
    assert_eq!(http.get("/apis/nope/v1", ADMIN).await.status, 404);
    let r = http
        .request("GET", "/api", Some(ADMIN), &[("accept", "application/vnd.kubernetes.protobuf")], None)
        .await;
    assert_eq!(r.status, 406);
    sim.shutdown().await;
}

#[tokio::test]
async fn openapi_documents() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let idx = http.get("/openapi/v3", ADMIN).await.json();
    let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap().to_string();
    let doc = http.get(&url, ADMIN).await;
    assert_eq!(doc.headers.get("cache-control").unwrap(), "public, immutable");
    let doc = doc.json();
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    let r = http
        .request(
            "GET",
            "/openapi/v2?timeout=32s",
            Some(ADMIN),
            &[("accept", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")],
            None,
        )
        .await;
    assert_eq!(r.content_type(), "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
    assert_eq!(&r.body[..], &[0x0a, 0x03, b'2', b'.', b'0']);
    assert_eq!(http.get("/swagger-2.0.0.pb-v1", ADMIN).await.status, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn tables_and_partial_metadata() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http
        .request("GET", "/api/v1/namespaces/default/pods?limit=500", Some(ADMIN), &[("accept", TABLE)], None)
        .await;
    assert_eq!(r.content_type(), "application/json");
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        cols,
        ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    let row = t["rows"].as_array().unwrap().iter().find(|r| r["cells"][0] == "nginx").unwrap();
    assert_eq!(row["cells"][1], "1/1");
    assert_eq!(row["cells"][2], "Running");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["namespace"], "default");

    let t = http
        .request(
            "GET",
            "/api/v1/namespaces/default/pods/nginx?includeObject=Object",
            Some(ADMIN),
            &[("accept", TABLE)],
            None,
        )
        .await
        .json();
    assert_eq!(t["rows"][0]["object"]["kind"], "Pod");
    let t = http
        .request("GET", "/api/v1/namespaces?includeObject=None", Some(ADMIN), &[("accept", TABLE)], None)
        .await
        .json();
    assert!(t["rows"][0].get("object").is_none());
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Status", "Age"]);
    let beta = "application/json;as=Table;v=v1beta1;g=meta.k8s.io";
    let t = http
        .request("GET", "/apis/apps/v1/namespaces/dev/deployments", Some(ADMIN), &[("accept", beta)], None)
        .await
        .json();
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(t["rows"][0]["cells"][1], "1/1");

    let pm = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
    let l = http
        .request("GET", "/api/v1/namespaces/dev/configmaps", Some(ADMIN), &[("accept", pm)], None)
        .await
        .json();
    assert_eq!(l["kind"], "PartialObjectMetadataList");
    assert!(l["items"][0].get("data").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn lists_paginate_on_a_consistent_snapshot() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    for i in 0..5 {
        sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("page-{i}"), "namespace": "dev", "labels": {"page": "yes"}}}))
            .unwrap();
    }
    let first =
        http.get("/api/v1/namespaces/dev/configmaps?labelSelector=page%3Dyes&limit=2", ADMIN).await.json();
    assert_eq!(first["kind"], "ConfigMapList");
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&first), ["page-0", "page-1"]);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    // Changes after the first page do not show up in later pages.
    sim.delete_object("v1", "ConfigMap", "dev", "page-3").unwrap();
    sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "page-9", "namespace": "dev", "labels": {"page": "yes"}}}))
        .unwrap();
    let enc = token.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    let second = http
        .get(
            &format!("/api/v1/namespaces/dev/configmaps?labelSelector=page%3Dyes&limit=2&continue={enc}"),
            ADMIN,
        )
        .await
        .json();
    assert_eq!(names(&second), ["page-2", "page-3"]);
    assert_eq!(second["metadata"]["resourceVersion"], rv.as_str());
    let enc2 = second["metadata"]["continue"]
        .as_str()
        .unwrap()
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let third = http
        .get(
            &format!("/api/v1/namespaces/dev/configmaps?labelSelector=page%3Dyes&limit=2&continue={enc2}"),
            ADMIN,
        )
        .await
        .json();
    assert_eq!(names(&third), ["page-4"]);
    assert!(third["metadata"].get("continue").is_none());

    let all = http.get("/api/v1/configmaps?limit=3", ADMIN).await.json();
    assert!(all["metadata"]["remainingItemCount"].as_u64().unwrap() > 0);
    let bad = http.get("/api/v1/namespaces/dev/configmaps?continue=bm9wZQ%3D%3D", ADMIN).await;
    assert_eq!(bad.status, 400);
    let sel = http.get("/api/v1/pods?fieldSelector=metadata.namespace%3Ddev,status.phase%3DRunning&labelSelector=app+in+(api,worker)", ADMIN).await.json();
    assert_eq!(sel["items"].as_array().unwrap().len(), 2);
    let r = http.get("/api/v1/pods?fieldSelector=spec.bogus%3Dx", ADMIN).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "field label not supported: spec.bogus");
    let r = http.get("/api/v1/pods?labelSelector=app+in+nginx", ADMIN).await;
    assert_eq!(r.status, 400);
    sim.shutdown().await;
}

fn event_types(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn watches_stream_events_as_they_happen() {
    let mut cfg = common::config();
    cfg.watch_history = 50;
    let sim = common::start_with(cfg).await;
    let http = Http::new(&sim);
    let rv = http.get("/api/v1/namespaces/default/pods", ADMIN).await.json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let mut w = http
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!(w.status(), 200);
    sim.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": "default", "labels": {"tier": "a"}},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.contains("\"w1\"")).await;
    assert_eq!(event_types(&got), [("ADDED".to_string(), "w1".to_string())]);
    sim.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": "default", "labels": {"tier": "b"}},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.contains("MODIFIED")).await;
    assert!(got.starts_with("{\"type\":\"MODIFIED\""), "{got}");
    drop(w);

    // without a resourceVersion: current state as ADDED; timeoutSeconds ends it cleanly
    let w = http
        .send("GET", "/api/v1/watch/namespaces/default/pods?timeoutSeconds=1", Some(ADMIN), &[], None)
        .await;
    let all = read_to_end(w, Duration::from_secs(10)).await;
    let names: Vec<String> = event_types(&all)
        .into_iter()
        .map(|(t, n)| {
            assert_eq!(t, "ADDED");
            n
        })
        .collect();
    assert!(names.contains(&"nginx".to_string()) && names.contains(&"w1".to_string()), "{names:?}");

    // label selector transitions: leaving the selection is DELETED, entering is ADDED
    let rv = sim.resource_version();
    let mut w = http
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/pods?watch=1&labelSelector=tier%3Db&resourceVersion={rv}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    sim.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": "default", "labels": {"tier": "c"}},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.contains("DELETED")).await;
    assert_eq!(event_types(&got), [("DELETED".to_string(), "w1".to_string())]);
    sim.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": "default", "labels": {"tier": "b"}},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.contains("ADDED")).await;
    assert!(got.contains("{\"type\":\"ADDED\""), "{got}");
    drop(w);

    // a single object by name, Table events: column definitions first, then null
    let rv = sim.resource_version();
    let mut w = http
        .send("GET", &format!("/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name%3Dw1&resourceVersion={rv}"), Some(ADMIN), &[("accept", TABLE)], None)
        .await;
    for tier in ["d", "e"] {
        sim.apply_object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w1", "namespace": "default", "labels": {"tier": tier}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
            .unwrap();
    }
    sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "noise", "namespace": "default"}})).unwrap();
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.lines().count() >= 2).await;
    let evs: Vec<Value> = got.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(evs[0]["object"]["kind"], "Table");
    assert!(evs[0]["object"]["columnDefinitions"].is_array());
    assert!(evs[1]["object"]["columnDefinitions"].is_null());
    assert_eq!(evs[1]["object"]["rows"][0]["cells"][0], "w1");
    drop(w);

    // too old: an ERROR event with a 410 Expired Status
    for i in 0..60 {
        sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("churn-{i}"), "namespace": "default"}})).unwrap();
    }
    let w = http
        .send(
            "GET",
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion=1001",
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!(w.status(), 200);
    let text = read_to_end(w, Duration::from_secs(10)).await;
    let ev: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(status_of(&ev["object"]), ("Status", "Expired", 410));
    assert!(ev["object"]["message"].as_str().unwrap().starts_with("too old resource version: 1001 ("));

    // bookmarks
    sim.knobs().set_bookmark_interval(Duration::from_millis(100));
    let rv = sim.resource_version();
    let mut w = http
        .send(
            "GET",
            &format!("/api/v1/namespaces/dev/pods?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    let got = read_until(&mut w, Duration::from_secs(10), |t| t.contains("BOOKMARK")).await;
    let ev: Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
    assert_eq!(ev["object"]["kind"], "Pod");
    assert_eq!(ev["object"]["metadata"]["resourceVersion"], rv.to_string());
    drop(w);

    // sendInitialEvents ends the initial state with the annotated bookmark
    let w = http
        .send("GET", "/api/v1/namespaces/dev/pods?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", Some(ADMIN), &[], None)
        .await;
    let text = read_to_end(w, Duration::from_secs(10)).await;
    assert!(text.contains("\"k8s.io/initial-events-end\":\"true\""), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_watch_events_knob() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    sim.knobs().set_watch_event_delay(Duration::from_millis(300));
    let rv = sim.resource_version();
    let mut w = http
        .send(
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    let t0 = std::time::Instant::now();
    sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow", "namespace": "default"}})).unwrap();
    read_until(&mut w, Duration::from_secs(10), |t| t.contains("slow")).await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    sim.shutdown().await;
}

#[tokio::test]
async fn crud_errors_match_kubernetes() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http.get("/api/v1/namespaces/default/pods/nosuch", ADMIN).await;
    assert_eq!(r.status, 404);
    let v = r.json();
    assert_eq!(v["message"], "pods \"nosuch\" not found");
    assert_eq!(v["details"], json!({"name": "nosuch", "kind": "pods"}));
    let r = http.get("/apis/apps/v1/namespaces/dev/deployments/nosuch", ADMIN).await;
    assert_eq!(r.json()["message"], "deployments.apps \"nosuch\" not found");
    assert_eq!(
        http.get("/api/v1/namespaces/default/foos", ADMIN).await.json()["message"],
        "the server could not find the requested resource"
    );

    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "1"}});
    let r = http.post_json("/api/v1/namespaces/default/configmaps", ADMIN, &cm).await;
    assert_eq!(r.status, 201);
    let created = r.json();
    assert!(created["metadata"]["uid"].is_string() && created["metadata"]["creationTimestamp"].is_string());
    let r = http.post_json("/api/v1/namespaces/default/configmaps", ADMIN, &cm).await;
    assert_eq!((r.status, r.json()["reason"].as_str().unwrap()), (409, "AlreadyExists"));
    assert_eq!(r.json()["message"], "configmaps \"cm1\" already exists");
    let r = http.post_json("/api/v1/namespaces/nowhere/configmaps", ADMIN, &cm).await;
    assert_eq!((r.status, r.json()["message"].as_str().unwrap()), (404, "namespaces \"nowhere\" not found"));
    let r = http
        .post_json(
            "/api/v1/namespaces/dev/configmaps",
            ADMIN,
            &json!({"metadata": {"name": "x", "namespace": "default"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = http
        .post_json(
            "/api/v1/namespaces/default/pods",
            ADMIN,
            &json!({"metadata": {"name": "bad"}, "spec": {"containers": [{"name": "c"}]}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let v = r.json();
    assert_eq!(v["reason"], "Invalid");
    assert_eq!(v["message"], "Pod \"bad\" is invalid: spec.containers[0].image: Required value");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.containers[0].image");
    let r = http
        .request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(ADMIN),
            &[("content-type", "application/json")],
            Some(b"{nope"),
        )
        .await;
    assert_eq!(r.status, 400);

    // optimistic concurrency on PUT
    let mut stale = created.clone();
    stale["data"]["a"] = json!("2");
    let body = serde_json::to_vec(&stale).unwrap();
    let r = http
        .request(
            "PUT",
            "/api/v1/namespaces/default/configmaps/cm1",
            Some(ADMIN),
            &[("content-type", "application/json")],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = http
        .request(
            "PUT",
            "/api/v1/namespaces/default/configmaps/cm1",
            Some(ADMIN),
            &[("content-type", "application/json")],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        "Operation cannot be fulfilled on configmaps \"cm1\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // the three patch types
    let patch = |ct: &'static str, body: Value| {
        let http = &http;
        async move {
            let b = serde_json::to_vec(&body).unwrap();
            http.request(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/cm1",
                Some(ADMIN),
                &[("content-type", ct)],
                Some(&b),
            )
            .await
        }
    };
    let r = patch("application/merge-patch+json", json!({"data": {"b": "2", "a": null}})).await;
    assert_eq!(r.json()["data"], json!({"b": "2"}));
    let r =
        patch("application/json-patch+json", json!([{"op": "add", "path": "/data/c", "value": "3"}])).await;
    assert_eq!(r.json()["data"], json!({"b": "2", "c": "3"}));
    let r =
        patch("application/strategic-merge-patch+json", json!({"metadata": {"labels": {"x": "y"}}})).await;
    assert_eq!(r.json()["metadata"]["labels"]["x"], "y");
    let r =
        patch("application/json-patch+json", json!([{"op": "test", "path": "/data/c", "value": "9"}])).await;
    assert_eq!(r.status, 422);
    let r = patch("text/plain", json!({})).await;
    assert_eq!(r.status, 415);
    let r =
        patch("application/strategic-merge-patch+json", json!({"metadata": {"resourceVersion": "1"}})).await;
    assert_eq!(r.status, 409);

    // deleting: non-pods answer a Status, pods answer the object
    let r = http.request("DELETE", "/api/v1/namespaces/default/configmaps/cm1", Some(ADMIN), &[], None).await;
    let v = r.json();
    assert_eq!((v["kind"].as_str().unwrap(), v["status"].as_str().unwrap()), ("Status", "Success"));
    assert_eq!(v["details"]["name"], "cm1");
    let r = http.request("DELETE", "/api/v1/namespaces/default/configmaps/cm1", Some(ADMIN), &[], None).await;
    assert_eq!(r.status, 404);
    let r = http
        .request(
            "DELETE",
            "/api/v1/namespaces/default/pods/busybox",
            Some(ADMIN),
            &[("content-type", "application/json")],
            Some(br#"{"gracePeriodSeconds":0}"#),
        )
        .await;
    assert_eq!(r.json()["kind"], "Pod");
    assert!(sim.get_object("v1", "Pod", "default", "busybox").is_none());
    let r = http
        .request(
            "DELETE",
            "/api/v1/namespaces/default/pods/nginx",
            Some(ADMIN),
            &[],
            Some(br#"{"propagationPolicy":"Background"}"#),
        )
        .await;
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string(), "graceful deletion marks the pod");
    common_wait(|| sim.get_object("v1", "Pod", "default", "nginx").is_none()).await;

    // deletecollection by label
    for i in 0..3 {
        sim.apply_object(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s{i}"), "namespace": "dev", "labels": {"batch": "1"}}})).unwrap();
    }
    let r = http
        .request("DELETE", "/api/v1/namespaces/dev/secrets?labelSelector=batch%3D1", Some(ADMIN), &[], None)
        .await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 3);
    assert!(sim.get_object("v1", "Secret", "dev", "s0").is_none());
    assert!(sim.get_object("v1", "Secret", "dev", "db-credentials").is_some());
    sim.shutdown().await;
}

async fn common_wait(check: impl Fn() -> bool) {
    kubegate_testsupport::wait::until("the condition", Duration::from_secs(10), || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn impersonation_is_checked_like_kubernetes() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let ssr = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1"});
    let body = serde_json::to_vec(&ssr).unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("impersonate-user", "alice"),
        ("impersonate-group", "devs"),
        ("impersonate-group", "ops"),
        ("impersonate-uid", "u-9"),
        ("impersonate-extra-example.com%2fteam", "blue"),
    ];
    let r = http
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            Some(KUBEGATE),
            &headers,
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 201);
    let u = &r.json()["status"]["userInfo"];
    assert_eq!(u["username"], "alice");
    assert_eq!(u["uid"], "u-9");
    assert_eq!(u["groups"], json!(["devs", "ops", "system:authenticated"]));
    assert_eq!(u["extra"], json!({"example.com/team": ["blue"]}));
    let logged = sim.requests().into_iter().rev().find(|r| r.path.ends_with("selfsubjectreviews")).unwrap();
    assert_eq!(logged.header_all("impersonate-group"), ["devs", "ops"]);
    assert_eq!(logged.principal.as_ref().unwrap().name, "kubegate");
    assert_eq!(logged.effective.as_ref().unwrap().groups, ["devs", "ops", "system:authenticated"]);
    assert_eq!(logged.status, 201);
    assert!(logged.body_bytes > 0);

    // the impersonated user's permissions apply
    let r = http
        .request(
            "GET",
            "/api/v1/namespaces/kube-system/pods",
            Some(KUBEGATE),
            &[("impersonate-user", "alice")],
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["details"], json!({"kind": "pods"}));
    let r = http
        .request("GET", "/api/v1/namespaces/dev/pods", Some(KUBEGATE), &[("impersonate-user", "alice")], None)
        .await;
    assert_eq!(r.status, 200);
    // kubegate itself may only impersonate
    assert_eq!(http.get("/api/v1/namespaces/dev/pods", KUBEGATE).await.status, 403);

    let r = http
        .request("GET", "/api/v1/namespaces/dev/pods", Some(ALICE), &[("impersonate-user", "bob")], None)
        .await;
    assert_eq!(r.status, 403);
    let v = r.json();
    assert_eq!(
        v["message"],
        "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    assert_eq!(v["details"], json!({"name": "bob", "kind": "users"}));
    let r = http
        .request("GET", "/api/v1/namespaces/dev/pods", Some(KUBEGATE), &[("impersonate-group", "devs")], None)
        .await;
    assert_eq!(r.status, 500);
    assert!(r.json()["message"].as_str().unwrap().contains("without impersonating a user"));
    sim.shutdown().await;
}

fn ld(num: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(num << 3) | 2, payload.len() as u8];
    v.extend_from_slice(payload);
    v
}

/// A protobuf SelfSubjectAccessReview as kubectl 1.32+ sends it.
fn ssar_proto(ns: &str, verb: &str, resource: &str) -> Vec<u8> {
    let mut ra = ld(1, ns.as_bytes());
    ra.extend(ld(2, verb.as_bytes()));
    ra.extend(ld(5, resource.as_bytes()));
    let mut obj = ld(1, &[]);
    obj.extend(ld(2, &ld(1, &ra)));
    obj.extend(ld(3, &[]));
    let mut tm = ld(1, b"authorization.k8s.io/v1");
    tm.extend(ld(2, b"SelfSubjectAccessReview"));
    let mut body = b"k8s\0".to_vec();
    body.extend(ld(1, &tm));
    body.extend(ld(2, &obj));
    body.extend(ld(3, b""));
    body.extend(ld(4, b""));
    body
}

#[tokio::test]
async fn reviews_json_and_protobuf() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let pb = [
        ("content-type", "application/vnd.kubernetes.protobuf"),
        ("accept", "application/vnd.kubernetes.protobuf,application/json"),
    ];
    let r = http
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(ALICE),
            &pb,
            Some(&ssar_proto("dev", "list", "pods")),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.content_type(), "application/json");
    let v = r.json();
    assert_eq!(v["status"]["allowed"], true);
    assert_eq!(v["spec"]["resourceAttributes"]["namespace"], "dev");
    let r = http
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            Some(ALICE),
            &pb,
            Some(&ssar_proto("default", "list", "pods")),
        )
        .await;
    assert_eq!(r.json()["status"]["allowed"], false);

    let ssar = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                      "spec": {"nonResourceAttributes": {"path": "/api", "verb": "get"}}});
    let r = http.post_json("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", NOBODY, &ssar).await;
    assert_eq!(r.json()["status"]["allowed"], true);
    let r = http
        .post_json("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", NOBODY, &json!({"spec": {}}))
        .await;
    assert_eq!(r.status, 422);

    for v in ["v1", "v1beta1"] {
        let r = http
            .post_json(
                &format!("/apis/authentication.k8s.io/{v}/selfsubjectreviews"),
                ALICE,
                &json!({"kind": "SelfSubjectReview", "apiVersion": format!("authentication.k8s.io/{v}")}),
            )
            .await;
        assert_eq!(r.status, 201);
        let body = r.json();
        assert_eq!(body["apiVersion"], format!("authentication.k8s.io/{v}"));
        assert_eq!(body["status"]["userInfo"]["username"], "alice");
        assert_eq!(body["status"]["userInfo"]["groups"], json!(["dev-team", "system:authenticated"]));
    }
    let r =
        http.post_json("/apis/authentication.k8s.io/v1alpha1/selfsubjectreviews", ALICE, &json!({})).await;
    assert_eq!(r.status, 404);

    let r = http
        .post_json(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            ALICE,
            &json!({"spec": {"namespace": "dev"}}),
        )
        .await;
    let rules = r.json()["status"]["resourceRules"].as_array().unwrap().clone();
    assert!(rules.iter().any(|r| r["resources"].as_array().unwrap().iter().any(|x| x == "pods")));
    let sar = json!({"spec": {"user": "alice", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}});
    assert_eq!(
        http.post_json("/apis/authorization.k8s.io/v1/subjectaccessreviews", ADMIN, &sar).await.json()["status"]
            ["allowed"],
        true
    );
    assert_eq!(
        http.post_json("/apis/authorization.k8s.io/v1/subjectaccessreviews", ALICE, &sar).await.status,
        403
    );
    let tr = json!({"spec": {"token": ALICE}});
    assert_eq!(
        http.post_json("/apis/authentication.k8s.io/v1/tokenreviews", ADMIN, &tr).await.json()["status"]["user"]
            ["username"],
        "alice"
    );
    assert_eq!(http.get("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ADMIN).await.status, 405);
    sim.shutdown().await;
}

#[tokio::test]
async fn rbac_objects_through_the_api() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    assert_eq!(http.get("/api/v1/namespaces/default/configmaps", NOBODY).await.status, 403);
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "cm-reader"},
                      "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]});
    assert_eq!(
        http.post_json("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles", ADMIN, &role)
            .await
            .status,
        201
    );
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "nobody-cm"},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
                         "subjects": [{"kind": "User", "name": "nobody"}]});
    assert_eq!(
        http.post_json("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", ADMIN, &binding)
            .await
            .status,
        201
    );
    assert_eq!(http.get("/api/v1/namespaces/default/configmaps", NOBODY).await.status, 200);
    assert_eq!(http.get("/api/v1/namespaces/dev/configmaps", NOBODY).await.status, 403);
    let r = http
        .post_json("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", NOBODY, &binding)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "rolebindings.rbac.authorization.k8s.io is forbidden: User \"nobody\" cannot create resource \"rolebindings\" in API group \"rbac.authorization.k8s.io\" in the namespace \"default\""
    );
    let bad = json!({"metadata": {"name": "broken"}, "subjects": []});
    assert_eq!(
        http.post_json("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", ADMIN, &bad).await.status,
        422
    );
    assert_eq!(
        http.request(
            "DELETE",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/nobody-cm",
            Some(ADMIN),
            &[],
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(http.get("/api/v1/namespaces/default/configmaps", NOBODY).await.status, 403);
    let t = http
        .request(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            Some(ADMIN),
            &[("accept", TABLE)],
            None,
        )
        .await
        .json();
    let cols: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(cols, ["Name", "Created At"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn client_certificates_authenticate() {
    let ca = kube_sim::ClientCa::generate().unwrap();
    let cert = ca.issue("carol", &["system:masters"]).unwrap();
    let mut cfg = common::config();
    cfg.client_ca_pem = Some(ca.pem().to_string());
    let sim = common::start_with(cfg).await;
    let http = Http::with(&sim, Some(&cert), true);
    let r = http
        .request(
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            None,
            &[("content-type", "application/json")],
            Some(b"{}"),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"]["userInfo"]["username"], "carol");
    assert_eq!(http.request("GET", "/api/v1/pods", None, &[], None).await.status, 200);
    let seen = sim.requests();
    assert_eq!(seen.last().unwrap().version, "HTTP/2.0");
    // token users still work on the same server, without a certificate
    let plain = Http::new(&sim);
    assert_eq!(plain.get("/api/v1/pods", ADMIN).await.status, 200);
    assert_eq!(plain.request("GET", "/api/v1/pods", None, &[], None).await.status, 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn pod_logs() {
    let mut cfg = common::config();
    cfg.log_interval = Duration::from_millis(100);
    let sim = common::start_with(cfg).await;
    let http = Http::new(&sim);
    let r = http.get("/api/v1/namespaces/default/pods/nginx/log?tailLines=2&timestamps=true", ADMIN).await;
    assert_eq!(r.content_type(), "text/plain");
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() <= 2 && !lines.is_empty(), "{text}");
    assert!(lines[0].contains("Z nginx log line") && lines[0].ends_with("container=nginx"), "{text}");
    let r = http.get("/api/v1/namespaces/dev/pods/worker/log", ADMIN).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "a container name must be specified for pod worker, choose one of: [worker log-shipper]"
    );
    let r = http.get("/api/v1/namespaces/dev/pods/worker/log?container=log-shipper", ADMIN).await;
    assert!(r.text().contains("container=log-shipper"));
    let r = http.get("/api/v1/namespaces/dev/pods/worker/log?container=nope", ADMIN).await;
    assert_eq!(r.json()["message"], "container nope is not valid for pod worker");
    let r = http.get("/api/v1/namespaces/default/pods/nginx/log?previous=true", ADMIN).await;
    assert_eq!(
        (r.status, r.json()["message"].as_str().unwrap()),
        (400, "previous terminated container \"nginx\" in pod \"nginx\" not found")
    );
    let r = http.get("/api/v1/namespaces/default/pods/nginx/log?limitBytes=5", ADMIN).await;
    assert_eq!(r.body.len(), 5);
    assert_eq!(http.get("/api/v1/namespaces/default/pods/ghost/log", ADMIN).await.status, 404);
    // follow: new lines arrive; deleting the pod ends the stream
    let mut f = http
        .send(
            "GET",
            "/api/v1/namespaces/default/pods/nginx/log?follow=true&tailLines=0",
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    read_until(&mut f, Duration::from_secs(10), |t| t.lines().count() >= 3).await;
    sim.delete_object("v1", "Pod", "default", "nginx").unwrap();
    read_to_end(f, Duration::from_secs(10)).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn stream_subresources_are_checked_before_the_hand_off() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http
        .request(
            "POST",
            "/api/v1/namespaces/default/pods/ghost/exec?command=ls&stdout=true",
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!((r.status, r.json()["message"].as_str().unwrap()), (404, "pods \"ghost\" not found"));
    let r = http
        .request(
            "POST",
            "/api/v1/namespaces/default/pods/nginx/exec?command=ls&stdout=true&container=nope",
            Some(ADMIN),
            &[],
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["message"].as_str().unwrap()),
        (400, "container nope is not valid for pod nginx")
    );
    let r = http
        .request("POST", "/api/v1/namespaces/default/pods/nginx/exec?stdout=true", Some(ADMIN), &[], None)
        .await;
    assert_eq!(r.status, 400);
    let r = http
        .request(
            "POST",
            "/api/v1/namespaces/dev/pods/api/exec?command=ls&stdout=true",
            Some(ALICE),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "pods \"api\" is forbidden: User \"alice\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"dev\""
    );
    let r = http
        .request("GET", "/api/v1/namespaces/dev/pods/api/portforward?ports=8080", Some(ALICE), &[], None)
        .await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("cannot get resource \"pods/portforward\""));
    // a WebSocket upgrade reaches the streams module
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ];
    let resp = http
        .send(
            "GET",
            "/api/v1/namespaces/default/pods/nginx/exec?command=true&stdout=true",
            Some(ADMIN),
            &ws,
            None,
        )
        .await;
    assert!(resp.status() == 101 || resp.status() == 501, "{}", resp.status());
    sim.shutdown().await;
}

#[tokio::test]
async fn large_generated_lists_stream() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    sim.knobs().set_large_list_bytes(5 * 1024 * 1024);
    let r = http.get("/api/v1/namespaces/large/pods", ADMIN).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("content-length").is_none(), "streamed, not buffered");
    let len = r.body.len();
    assert!((5 * 1024 * 1024..5 * 1024 * 1024 + 80 * 1024).contains(&len), "{len}");
    let v = r.json();
    assert_eq!(v["kind"], "PodList");
    assert!(v["items"].as_array().unwrap().len() > 1000);
    let t = http
        .request("GET", "/api/v1/namespaces/large/pods", Some(ADMIN), &[("accept", TABLE)], None)
        .await
        .json();
    assert_eq!(t["kind"], "Table");
    assert!(t["rows"].as_array().unwrap().len() > 1000);
    // other namespaces are untouched
    assert_eq!(
        http.get("/api/v1/namespaces/default/pods", ADMIN).await.json()["items"].as_array().unwrap().len(),
        2
    );
    sim.knobs().clear_large_list();
    assert!(
        http.get("/api/v1/namespaces/large/pods", ADMIN).await.json()["items"].as_array().unwrap().is_empty()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn misbehaviour_knobs() {
    let sim = common::start().await;
    // cut mid-response: the client sees a broken body
    sim.knobs().set_drop_mid_response(true);
    let http = Http::new(&sim);
    let resp = http.send("GET", "/api/v1/pods", Some(ADMIN), &[], None).await;
    let body =
        tokio::time::timeout(Duration::from_secs(10), http_body_util::BodyExt::collect(resp.into_body()))
            .await
            .unwrap();
    assert!(body.is_err(), "the body must not complete");
    sim.knobs().set_drop_mid_response(false);

    // stalled accept: TCP connects, TLS never completes
    sim.knobs().set_stall(kube_sim::Stall::Accept);
    let fresh = Http::new(&sim);
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        fresh.request("GET", "/version", Some(ADMIN), &[], None),
    )
    .await;
    assert!(attempt.is_err(), "no answer while stalled");
    // stalled response: the request is read, never answered
    sim.knobs().set_stall(kube_sim::Stall::Response);
    let fresh = Http::new(&sim);
    let attempt = tokio::time::timeout(
        Duration::from_millis(500),
        fresh.request("GET", "/version", Some(ADMIN), &[], None),
    )
    .await;
    assert!(attempt.is_err(), "no answer while stalled");
    sim.knobs().set_stall(kube_sim::Stall::None);
    let fresh = Http::new(&sim);
    assert_eq!(fresh.get("/version", ADMIN).await.status, 200);

    // the request log can be cleared and switched off
    sim.clear_requests();
    assert!(sim.requests().is_empty());
    sim.knobs().set_request_log(false);
    fresh.get("/version", ADMIN).await;
    assert!(sim.requests().is_empty());
    sim.knobs().set_request_log(true);
    fresh
        .request("GET", "/version?timeout=32s", Some(ADMIN), &[("x-first", "1"), ("x-second", "2")], None)
        .await;
    let logged = sim.requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(
        (logged[0].method.as_str(), logged[0].path.as_str(), logged[0].query.as_str()),
        ("GET", "/version", "timeout=32s")
    );
    let names: Vec<&str> = logged[0].headers.iter().map(|(k, _)| k.as_str()).collect();
    let first = names.iter().position(|n| *n == "x-first").unwrap();
    assert_eq!(names.get(first + 1), Some(&"x-second"));
    assert_eq!(logged[0].principal.as_ref().unwrap().name, "admin");
    sim.shutdown().await;
}

#[tokio::test]
async fn bench_namespaces_have_fixed_sizes() {
    let mut cfg = common::config();
    cfg.bench_namespaces = true;
    let sim = common::start_with(cfg).await;
    let http = Http::new(&sim);
    let small = http.get("/api/v1/namespaces/bench-2k/pods", ADMIN).await.body.len();
    let big = http.get("/api/v1/namespaces/bench-100k/pods", ADMIN).await.body.len();
    assert!((1500..4096).contains(&small), "{small}");
    assert!((95 * 1024..110 * 1024).contains(&big), "{big}");
    sim.shutdown().await;
}

#[tokio::test]
async fn scale_and_server_side_apply() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http
        .request(
            "PATCH",
            "/apis/apps/v1/namespaces/dev/deployments/api/scale",
            Some(ADMIN),
            &[("content-type", "application/merge-patch+json")],
            Some(br#"{"spec":{"replicas":3}}"#),
        )
        .await;
    assert_eq!(r.json()["spec"]["replicas"], 3);
    let d = sim.get_object("apps/v1", "Deployment", "dev", "api").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        http.get("/apis/apps/v1/namespaces/dev/deployments/api/scale", ADMIN).await.json()["status"]["selector"],
        "app=api"
    );

    let cm = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k: v\n";
    let ct = [("content-type", "application/apply-patch+yaml")];
    let r = http
        .request(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test",
            Some(ADMIN),
            &ct,
            Some(cm),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = http
        .request(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test",
            Some(ADMIN),
            &ct,
            Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  k2: v2\n"),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"], json!({"k": "v", "k2": "v2"}));
    let r =
        http.request("PATCH", "/api/v1/namespaces/default/configmaps/ssa", Some(ADMIN), &ct, Some(cm)).await;
    assert_eq!(r.status, 422);
    sim.shutdown().await;
}

#[tokio::test]
async fn namespaces_cascade_and_dry_run() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let r = http.post_json("/api/v1/namespaces", ADMIN, &json!({"metadata": {"name": "team-a"}})).await;
    assert_eq!(r.status, 201);
    assert!(sim.get_object("v1", "ServiceAccount", "team-a", "default").is_some());
    assert!(sim.get_object("v1", "ConfigMap", "team-a", "kube-root-ca.crt").is_some());
    let r = http
        .post_json(
            "/api/v1/namespaces/team-a/configmaps?dryRun=All",
            ADMIN,
            &json!({"metadata": {"name": "dry"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(sim.get_object("v1", "ConfigMap", "team-a", "dry").is_none());
    let r = http.request("DELETE", "/api/v1/namespaces/team-a", Some(ADMIN), &[], None).await;
    assert_eq!(r.json()["status"]["phase"], "Terminating");
    assert!(sim.get_object("v1", "Namespace", "", "team-a").is_none());
    assert!(sim.get_object("v1", "ServiceAccount", "team-a", "default").is_none());
    sim.shutdown().await;
}

/// Opens `count` watches over `clients` HTTP/2 connections, then one change reaches them all.
async fn fan_out(count: usize, clients: usize) -> Duration {
    let sim = common::start().await;
    sim.knobs().set_request_log(false);
    let rv = sim.resource_version();
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut watches = Vec::new();
    let https: Vec<_> = (0..clients).map(|_| std::sync::Arc::new(Http::with(&sim, None, true))).collect();
    for i in 0..count {
        let http = https[i % clients].clone();
        let opened = opened.clone();
        watches.push(tokio::spawn(async move {
            let mut w = http
                .send(
                    "GET",
                    &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}"),
                    Some(ADMIN),
                    &[],
                    None,
                )
                .await;
            assert_eq!(w.status(), 200);
            opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            read_until(&mut w, Duration::from_secs(60), |t| t.contains("\"fanout\"")).await;
        }));
    }
    kubegate_testsupport::wait::until("every watch to be open", Duration::from_secs(60), || {
        let n = opened.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= count).then_some(()) }
    })
    .await;
    let t0 = std::time::Instant::now();
    sim.apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fanout", "namespace": "default"}})).unwrap();
    for w in watches {
        w.await.unwrap();
    }
    let took = t0.elapsed();
    sim.shutdown().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_watches_share_one_event() {
    let took = fan_out(1000, 2).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// 10,000 concurrent watches (run with `--ignored`; prints the fan-out time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --ignored to print the fan-out time"]
async fn ten_thousand_watches() {
    let took = fan_out(10_000, 10).await;
    println!("one event reached 10000 watches in {took:?}");
}

#[tokio::test]
async fn shutdown_ends_streams() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    let w = http.send("GET", "/api/v1/namespaces/default/pods?watch=true", Some(ADMIN), &[], None).await;
    let l = http
        .send("GET", "/api/v1/namespaces/default/pods/nginx/log?follow=true", Some(ADMIN), &[], None)
        .await;
    let t0 = std::time::Instant::now();
    sim.shutdown().await;
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    let _ = read_to_end(w, Duration::from_secs(5)).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), http_body_util::BodyExt::collect(l.into_body()))
        .await
        .unwrap();
}

#[tokio::test]
async fn websocket_exec_can_require_create() {
    let exec_get_only = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: exec-get, namespace: dev}
rules:
  - apiGroups: [""]
    resources: ["pods/exec"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: exec-get, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: exec-get}
subjects: [{kind: User, name: alice}]
"#;
    let ws = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    ];
    let path = "/api/v1/namespaces/dev/pods/api/exec?command=true&stdout=true";
    // Kubernetes 1.32 behaviour: a WebSocket GET needs only `get` on pods/exec.
    let sim = common::start_with(common::config().with_rbac_yaml(exec_get_only)).await;
    let http = Http::new(&sim);
    let resp = http.send("GET", path, Some(ALICE), &ws, None).await;
    assert_ne!(resp.status(), 403);
    sim.shutdown().await;
    // With the 1.35 check on, `create` is needed as well.
    let mut cfg = common::config().with_rbac_yaml(exec_get_only);
    cfg.websocket_requires_create = true;
    let sim = common::start_with(cfg).await;
    let http = Http::new(&sim);
    let r = http.request("GET", path, Some(ALICE), &ws, None).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "pods \"api\" is forbidden: User \"alice\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"dev\""
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_can_be_added_and_removed_at_run_time() {
    let sim = common::start().await;
    let http = Http::new(&sim);
    assert_eq!(http.get("/api/v1/pods", "late-token").await.status, 401);
    sim.add_token("late-token", "late", &["system:masters"]);
    assert_eq!(http.get("/api/v1/pods", "late-token").await.status, 200);
    sim.remove_token("late-token");
    assert_eq!(http.get("/api/v1/pods", "late-token").await.status, 401);
    let r = http
        .post_json(
            "/api/v1/namespaces/dev/serviceaccounts/default/token",
            ADMIN,
            &json!({"spec": {"expirationSeconds": 3600}}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = r.json()["status"]["token"].as_str().unwrap().to_string();
    let r = http.post_json("/apis/authentication.k8s.io/v1/selfsubjectreviews", &token, &json!({})).await;
    assert_eq!(r.json()["status"]["userInfo"]["username"], "system:serviceaccount:dev:default");
    sim.shutdown().await;
}
