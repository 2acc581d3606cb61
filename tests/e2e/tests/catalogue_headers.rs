//! Security catalogue, "Headers and smuggling", end to end: raw HTTP/1.1 bytes over TLS (the
//! client libraries refuse to send most of these) and raw h2 frames against the real proxy,
//! with the stand-in API server's request log showing exactly what reached the cluster.
//!
//! Not applicable as written: a LF inside an HTTP/1.1 header value cannot be sent (a bare LF
//! ends the header line, so it is a new header — covered by the smuggling framings), so CR and
//! NUL are sent over HTTP/1.1 and LF over h2, where a malformed field is a stream error
//! (RFC 9113 §8.2.1) rather than a 400; and kubegate sends no `Impersonate-Extra-*` values
//! (its identity is a user and groups), so "extra values" are checked as refused client input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kube_sim::reqlog::LoggedRequest;
use kubegate_e2e::wire::{self, Raw, frame, h2frame};
use kubegate_e2e::*;
use serde_json::{Value, json};

/// The requests the stand-in API server received whose path ends with `suffix`.
fn arrived(stack: &Stack, suffix: &str) -> Vec<LoggedRequest> {
    stack.sims[0].requests().into_iter().filter(|r| r.path.ends_with(suffix)).collect()
}

/// The upstream saw kubegate's credential and exactly the intended impersonation, nothing of
/// the client's.
#[track_caller]
fn only_kubegates_identity(r: &LoggedRequest, user: &str, groups: &[&str]) {
    assert_eq!(r.header_all("authorization"), vec![format!("Bearer {UPSTREAM_TOKEN}").as_str()], "{r:?}");
    assert_eq!(r.header_all("impersonate-user"), vec![user], "{r:?}");
    assert_eq!(r.header_all("impersonate-group"), groups.to_vec(), "{r:?}");
    for (name, _) in &r.headers {
        let foreign_impersonation =
            name.starts_with("impersonate-") && name != "impersonate-user" && name != "impersonate-group";
        let forwarded = name.starts_with("x-remote-") || name.starts_with("x-forwarded-");
        assert!(!foreign_impersonation && !forwarded, "client header {name} reached the cluster: {r:?}");
    }
    assert_eq!(r.effective.as_ref().map(|u| u.name.as_str()), Some(user), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_smuggling_and_control_bytes_are_refused() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 1, load_balancer: false, ..Options::default() })
            .await;
    let env = stack.register(0, "one").await;
    let tina = stack.create_user("Tina.Upper", "tina-password", "user").await;
    // A team whose name needs care in a header: '/', '%', upper case, spaces inside.
    let (code, team) =
        stack.api("POST", "/api/teams", Some(&stack.admin), Some(json!({"name": "Ops/50% Team"}))).await;
    assert_eq!(code, 200, "{team}");
    let team_id = team["id"].as_u64().unwrap();
    let (code, body) = stack
        .api(
            "POST",
            &format!("/api/teams/{team_id}/members"),
            Some(&stack.admin),
            Some(json!({"userId": tina})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    stack
        .set_access(env, json!([{"userId": tina, "role": "standard", "namespaces": ["dev"]}]), json!([]))
        .await;
    let session = stack.session("Tina.Upper", "tina-password").await;
    let kc = stack.kubeconfig_file(&session, &[env], "tina").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    let user = "kubegate:Tina.Upper";
    let groups = ["kubegate:role:standard", "kubegate:team:Ops/50% Team", "system:authenticated"];
    let port = stack.public_port;
    let base = format!("/api/endpoints/{env}/kubernetes");

    // kubectl auth whoami (v1.33) shows exactly the intended identity.
    let whoami = ok(kubectl(33, &kc, &["auth", "whoami", "-o", "json"]));
    let review: Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(review["status"]["userInfo"]["username"], user, "{whoami}");
    let got: Vec<&str> = review["status"]["userInfo"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(got, groups, "{whoami}");

    // Client identity headers in any letter case: removed, never merged.
    let mut raw = Raw::connect(port, &stack.ca_pem, &[b"http/1.1"]).await;
    let request = wire::request(
        "GET",
        &format!("{base}/api/v1/namespaces/dev/pods/api"),
        &token,
        &[
            "iMpErSoNaTe-UsEr: admin",
            "IMPERSONATE-GROUP: system:masters",
            "impersonate-group: kubegate:role:environment-admin",
            "Impersonate-Uid: 0",
            "Impersonate-Extra-Scopes: cluster-admin",
            "X-REMOTE-USER: admin",
            "x-Remote-Group: system:masters",
            "X-Remote-Extra-Scopes: all",
            "X-Forwarded-For: 10.0.0.1",
            "AUTHORIZATION: Bearer stolen-admin-token",
        ],
    );
    raw.send(&request).await.unwrap();
    let r = raw.response(Duration::from_secs(20)).await.unwrap();
    assert_eq!(r.status, 200, "{} {}", r.head, r.body_text());
    let seen = arrived(&stack, "/namespaces/dev/pods/api");
    only_kubegates_identity(seen.last().unwrap(), user, &groups);

    // Connection naming kubegate's own headers: the client's are stripped first, kubegate's
    // impersonation and credential still reach the cluster (capsule-proxy CVE-2022-23652).
    stack.sims[0].clear_requests();
    let mut raw = Raw::connect(port, &stack.ca_pem, &[b"http/1.1"]).await;
    raw.send(&wire::request(
        "GET",
        &format!("{base}/api/v1/namespaces/dev/pods/worker"),
        &token,
        &["Connection: Impersonate-User, Impersonate-Group, Authorization", "Impersonate-User: admin"],
    ))
    .await
    .unwrap();
    let r = raw.response(Duration::from_secs(20)).await.unwrap();
    assert!(r.status == 200 || r.status == 404, "{} {}", r.head, r.body_text());
    let seen = arrived(&stack, "/namespaces/dev/pods/worker");
    assert_eq!(seen.len(), 1);
    only_kubegates_identity(&seen[0], user, &groups);

    // Smuggling framings: 400 and the connection closed; nothing reaches the cluster.
    stack.sims[0].clear_requests();
    let target = format!("{base}/api/v1/namespaces/dev/configmaps");
    let smuggles: [(&str, String); 5] = [
        (
            "Content-Length with Transfer-Encoding",
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/v1/namespaces/kube-system/secrets HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
        ),
        (
            "two Transfer-Encoding headers",
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
        (
            "Content-Length: +3",
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: +3\r\n\r\n{{}}x"
            ),
        ),
        (
            "two different Content-Length headers",
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{{}}"
            ),
        ),
        (
            "an oversized chunk size",
            format!(
                "POST {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n{{}}\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (what, bytes) in &smuggles {
        let mut raw = Raw::connect(port, &stack.ca_pem, &[b"http/1.1"]).await;
        raw.send(bytes.as_bytes()).await.ok();
        let r = raw.response(Duration::from_secs(10)).await;
        assert_eq!(r.as_ref().map(|r| r.status), Some(400), "{what}: {r:?}");
        assert!(raw.closed_within(Duration::from_secs(10)).await, "{what}: the connection stayed open");
    }
    // The smuggled second request never reached the cluster. (A body whose framing breaks
    // only after the proxy began streaming it upstream reaches the cluster as an aborted
    // request, never as a complete one.)
    for r in stack.sims[0].requests() {
        assert!(!r.path.contains("secrets"), "a smuggled request reached the cluster: {r:?}");
        assert!(r.status >= 400, "a smuggled body was accepted upstream: {r:?}");
    }

    // NUL, CR (and obs-fold) in a header value over HTTP/1.1: 400.
    for (what, line) in [("NUL", "X-Note: a\0b"), ("CR", "X-Note: a\rb"), ("obs-fold", "X-Note: a\r\n b")] {
        let mut raw = Raw::connect(port, &stack.ca_pem, &[b"http/1.1"]).await;
        raw.send(&wire::request("GET", &format!("{base}/version"), &token, &[line])).await.ok();
        let r = raw.response(Duration::from_secs(10)).await;
        assert_eq!(r.as_ref().map(|r| r.status), Some(400), "{what}: {r:?}");
    }
    // ... and LF, CR, NUL over h2 (where they can be sent): the stream is refused.
    for (what, value) in [("LF", &b"a\nb"[..]), ("CR", &b"a\rb"[..]), ("NUL", &b"a\0b"[..])] {
        let mut raw = wire::h2_raw(port, &stack.ca_pem).await;
        let mut block = wire::h2_request_block(
            "GET",
            &format!("{base}/version"),
            &format!("127.0.0.1:{port}"),
            &[("authorization", &format!("Bearer {token}"))],
        );
        block.extend(wire::hpack_literal(b"x-note", value));
        raw.send(&frame(h2frame::HEADERS, h2frame::END_HEADERS | h2frame::END_STREAM, 1, &block))
            .await
            .unwrap();
        let seen = wire::h2_watch(&mut raw, Duration::from_secs(3)).await;
        assert!(
            seen.rst_streams > 0 || seen.goaway.is_some(),
            "{what} in an h2 header value was not refused: {seen:?}"
        );
        assert_eq!(seen.headers, 0, "{what}: the request was answered as if valid: {seen:?}");
    }

    // h2 :authority conflicting with Host: refused (and HTTP/1.1 absolute-form likewise).
    stack.sims[0].clear_requests();
    let tls = wire::connector(&stack.ca_pem, &[b"h2"]);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let io = tls.connect(rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(io).await.unwrap();
    tokio::spawn(conn);
    for (authority, host) in
        [(format!("127.0.0.1:{port}"), "evil.example"), ("evil.example".to_string(), "127.0.0.1")]
    {
        let req = http::Request::builder()
            .uri(format!("https://{authority}{base}/api/v1/namespaces/dev/pods"))
            .header("host", host)
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        let (resp, _) = h2.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status().as_u16(), 400, ":authority {authority} vs Host {host}");
    }
    let mut raw = Raw::connect(port, &stack.ca_pem, &[b"http/1.1"]).await;
    raw.send(
        format!("GET https://evil.example{base}/api/v1/namespaces/dev/pods HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(raw.response(Duration::from_secs(10)).await.map(|r| r.status), Some(400));
    assert!(arrived(&stack, "/namespaces/dev/pods").is_empty(), "a conflicting request reached the cluster");
}
