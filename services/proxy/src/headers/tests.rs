#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn client(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        // `from_bytes` accepts any letter case and lower-cases it, as hyper does when parsing.
        map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    map
}

fn identity(groups: &[String]) -> ImpersonationHeaders {
    ImpersonationHeaders::new(&Impersonation { username: "alice", uid: None, groups, extra: &[] }).unwrap()
}

fn default_groups() -> Vec<String> {
    vec![
        "kubegate:role:standard".to_string(),
        "kubegate:team:dev".to_string(),
        "system:authenticated".to_string(),
    ]
}

fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    map.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

fn bearer() -> HeaderValue {
    HeaderValue::from_static("Bearer kubegate-sa-token")
}

/// What kubegate itself must always send, whatever the client did.
fn assert_kubegate_identity(out: &HeaderMap, groups: &[String]) {
    assert_eq!(values(out, "impersonate-user"), vec![b"kubegate:alice".as_slice()]);
    let expected: Vec<&[u8]> = groups.iter().map(|g| g.as_bytes()).collect();
    assert_eq!(values(out, "impersonate-group"), expected);
    assert_eq!(values(out, "authorization"), vec![b"Bearer kubegate-sa-token".as_slice()]);
    assert!(out.get("authorization").unwrap().is_sensitive());
}

#[test]
fn client_identity_headers_are_removed_in_any_letter_case() {
    let groups = default_groups();
    let headers = client(&[
        ("Authorization", "Bearer users-own-token"),
        ("AUTHORIZATION", "Basic YWRtaW46YWRtaW4="),
        ("authorization", "Bearer second"),
        ("Proxy-Authorization", "Basic eA=="),
        ("IMPERSONATE-USER", "system:admin"),
        ("Impersonate-Group", "system:masters"),
        ("impersonate-group", "system:nodes"),
        ("Impersonate-Uid", "0"),
        ("Impersonate-Extra-Scopes", "view"),
        ("impersonate-extra-acme.com%2fproject", "x"),
        ("X-Remote-User", "admin"),
        ("X-REMOTE-GROUP", "system:masters"),
        ("x-remote-extra-scopes", "all"),
        ("X-Forwarded-For", "10.0.0.1"),
        ("X-Forwarded-Host", "evil"),
        ("X-Forwarded-Proto", "http"),
        ("X-FORWARDED-USER", "admin"),
        ("Forwarded", "for=10.0.0.1;by=evil"),
        ("X-Real-IP", "10.0.0.1"),
        ("Host", "evil.example"),
        ("Accept", "application/json"),
    ]);
    let out = prepare_upstream_headers(&headers, false, &identity(&groups), Some(&bearer())).unwrap();
    assert_kubegate_identity(&out, &groups);
    for name in out.keys() {
        let name = name.as_str();
        assert!(
            !name.starts_with("x-remote-")
                && !name.starts_with("x-forwarded-")
                && !name.starts_with("proxy-")
                && !name.starts_with("impersonate-extra-")
                && !matches!(name, "forwarded" | "x-real-ip" | "host" | "impersonate-uid"),
            "{name} was forwarded"
        );
    }
    assert_eq!(out.len(), 1 + 1 + groups.len() + 1, "{out:?}");
    assert_eq!(values(&out, "accept"), vec![b"application/json".as_slice()]);
}

#[test]
fn connection_cannot_remove_kubegates_own_headers() {
    let groups = default_groups();
    for connection in [
        "Impersonate-User, Impersonate-Group, Authorization",
        "impersonate-user,impersonate-group,authorization,impersonate-uid",
        "close, IMPERSONATE-USER , Authorization",
        "Impersonate-Extra-Scopes, Keep-Alive",
    ] {
        let headers = client(&[
            ("Connection", connection),
            ("Impersonate-User", "system:admin"),
            ("Authorization", "Bearer users-own-token"),
            ("Accept", "*/*"),
        ]);
        let out = prepare_upstream_headers(&headers, false, &identity(&groups), Some(&bearer())).unwrap();
        assert_kubegate_identity(&out, &groups);
        assert!(!out.contains_key("connection"), "{connection}");
    }
    // The same on an upgrade, where Connection itself is re-created by kubegate.
    let headers = client(&[
        ("Connection", "Upgrade, Impersonate-User, Impersonate-Group, Authorization"),
        ("Upgrade", "websocket"),
    ]);
    let out = prepare_upstream_headers(&headers, true, &identity(&groups), Some(&bearer())).unwrap();
    assert_kubegate_identity(&out, &groups);
    assert_eq!(values(&out, "connection"), vec![b"Upgrade".as_slice()]);
}

#[test]
fn hop_by_hop_headers_and_those_connection_names_are_stripped() {
    let headers = client(&[
        ("Connection", "keep-alive, X-Custom"),
        ("connection", "  x-other ,\tX-Third  "),
        ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"),
        ("TE", "trailers"),
        ("Trailer", "Expires"),
        ("Transfer-Encoding", "chunked"),
        ("Upgrade", "websocket"),
        ("X-Custom", "1"),
        ("X-Other", "2"),
        ("x-third", "3"),
        ("X-Kept", "4"),
        ("Content-Type", "application/json"),
        ("Content-Length", "12"),
    ]);
    let out = prepare_upstream_headers(&headers, false, &identity(&default_groups()), None).unwrap();
    for gone in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-custom",
        "x-other",
        "x-third",
        "authorization",
    ] {
        assert!(!out.contains_key(gone), "{gone} was forwarded");
    }
    assert_eq!(values(&out, "x-kept"), vec![b"4".as_slice()]);
    assert_eq!(values(&out, "content-length"), vec![b"12".as_slice()]);
    assert_eq!(values(&out, "content-type"), vec![b"application/json".as_slice()]);
}

#[test]
fn an_upgrade_keeps_connection_upgrade_and_upgrade_only() {
    // What kubectl 1.32 sends for exec over WebSocket.
    let headers = client(&[
        ("Host", "127.0.0.1:9443"),
        ("User-Agent", "kubectl/v1.32.5 (linux/amd64) kubernetes/9894294"),
        ("Authorization", "Bearer users-kubeconfig-token"),
        ("Connection", "Upgrade, Keep-Alive, X-Drop"),
        ("Kubectl-Command", "kubectl exec"),
        ("Sec-WebSocket-Key", "9uclHoU9hkphF7+DumONxg=="),
        ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
        ("Sec-WebSocket-Version", "13"),
        ("Upgrade", "websocket"),
        ("Keep-Alive", "timeout=5"),
        ("X-Drop", "1"),
    ]);
    let groups = default_groups();
    let out = prepare_upstream_headers(&headers, true, &identity(&groups), Some(&bearer())).unwrap();
    assert_kubegate_identity(&out, &groups);
    assert_eq!(values(&out, "connection"), vec![b"Upgrade".as_slice()]);
    assert_eq!(values(&out, "upgrade"), vec![b"websocket".as_slice()]);
    assert_eq!(values(&out, "sec-websocket-key"), vec![b"9uclHoU9hkphF7+DumONxg==".as_slice()]);
    assert_eq!(values(&out, "sec-websocket-protocol"), vec![b"v5.channel.k8s.io".as_slice()]);
    assert_eq!(values(&out, "sec-websocket-version"), vec![b"13".as_slice()]);
    assert!(!out.contains_key("keep-alive") && !out.contains_key("x-drop") && !out.contains_key("host"));

    // SPDY (kubectl 1.27): several X-Stream-Protocol-Version values, all kept in order.
    let headers = client(&[
        ("Connection", "Upgrade"),
        ("Upgrade", "SPDY/3.1"),
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
        ("X-Stream-Protocol-Version", "v2.channel.k8s.io"),
        ("X-Stream-Protocol-Version", "channel.k8s.io"),
    ]);
    let out = prepare_upstream_headers(&headers, true, &identity(&groups), None).unwrap();
    assert_eq!(values(&out, "upgrade"), vec![b"SPDY/3.1".as_slice()]);
    assert_eq!(values(&out, "x-stream-protocol-version").len(), 4);
    assert_eq!(values(&out, "x-stream-protocol-version")[0], b"v4.channel.k8s.io");

    let no_upgrade = client(&[("Connection", "Upgrade")]);
    assert_eq!(
        prepare_upstream_headers(&no_upgrade, true, &identity(&groups), None),
        Err(HeaderError::MissingUpgrade)
    );
    assert_eq!(HeaderError::MissingUpgrade.status_code(), StatusCode::BAD_REQUEST);
}

#[test]
fn upgrade_requests_are_recognised() {
    assert!(is_upgrade_request(&client(&[("Connection", "Upgrade"), ("Upgrade", "websocket")])));
    assert!(is_upgrade_request(&client(&[("connection", "keep-alive, upgrade"), ("upgrade", "SPDY/3.1")])));
    assert!(is_upgrade_request(&client(&[
        ("Connection", "keep-alive"),
        ("Connection", " UPGRADE "),
        ("Upgrade", "h2c")
    ])));
    assert!(!is_upgrade_request(&client(&[("Connection", "Upgrade")])));
    assert!(!is_upgrade_request(&client(&[("Upgrade", "websocket")])));
    assert!(!is_upgrade_request(&client(&[("Connection", "upgraded"), ("Upgrade", "websocket")])));
}

#[test]
fn group_values_are_passed_exactly_one_header_each() {
    let groups: Vec<String> = [
        "kubegate:role:read-only",
        "kubegate:team:Platform/SRE",
        "kubegate:team:db%2Fops",
        "kubegate:team:100%",
        "kubegate:team:UPPER case",
        "kubegate:team:a,b",
        "kubegate:team:Ünïcödé-チーム",
        "system:authenticated",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out =
        prepare_upstream_headers(&HeaderMap::new(), false, &identity(&groups), Some(&bearer())).unwrap();
    let sent: Vec<&[u8]> = values(&out, "impersonate-group");
    assert_eq!(sent.len(), groups.len(), "one header per group, none comma-joined");
    for (sent, group) in sent.iter().zip(&groups) {
        assert_eq!(*sent, group.as_bytes(), "sent verbatim");
    }
}

#[test]
fn many_groups_make_many_headers() {
    let teams: Vec<String> = (0..200).map(|i| format!("team-{i}")).collect();
    let groups = crate::authz::groups_for(kubegate_events::access::EnvironmentRole::Standard, &teams);
    let out = prepare_upstream_headers(&HeaderMap::new(), false, &identity(&groups), None).unwrap();
    let sent = values(&out, "impersonate-group");
    assert_eq!(sent.len(), 202);
    assert_eq!(sent[0], b"kubegate:role:standard");
    assert_eq!(sent[1], b"kubegate:team:team-0");
    assert_eq!(sent[201], b"system:authenticated");
    assert!(sent.iter().all(|v| !v.contains(&b',')));
}

#[test]
fn values_that_http_cannot_carry_are_errors_never_sent() {
    let cases: &[(&str, &str)] = &[
        ("user name", ""),
        ("user name", "ali\rce"),
        ("user name", "ali\nce"),
        ("user name", "ali\r\nImpersonate-User: admin"),
        ("user name", "ali\0ce"),
        ("user name", "ali\tce"),
        ("user name", "ali\u{7f}ce"),
        ("user name", " alice"),
        ("user name", "alice "),
        ("group", ""),
        ("group", "dev\nImpersonate-Group: system:masters"),
        ("group", "dev\0"),
        ("group", "\u{1b}[31mred"),
        ("group", "dev "),
        ("uid", "1\r\n"),
        ("extra value", "a\nb"),
        ("extra key", ""),
        ("extra key", "a\nb"),
    ];
    for (field, value) in cases {
        let value = value.to_string();
        let groups = vec![value.clone()];
        let extra = vec![(value.clone(), "v".to_string())];
        let extra_value = vec![("k".to_string(), value.clone())];
        let identity = match *field {
            "user name" => Impersonation { username: &value, uid: None, groups: &[], extra: &[] },
            "group" => Impersonation { username: "alice", uid: None, groups: &groups, extra: &[] },
            "uid" => Impersonation { username: "alice", uid: Some(&value), groups: &[], extra: &[] },
            "extra key" => Impersonation { username: "alice", uid: None, groups: &[], extra: &extra },
            _ => Impersonation { username: "alice", uid: None, groups: &[], extra: &extra_value },
        };
        let err = ImpersonationHeaders::new(&identity).unwrap_err();
        assert!(err.to_string().contains(field), "{field} {value:?}: {err}");
        assert_eq!(err.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[test]
fn the_http_types_cannot_hold_nul_cr_or_lf_from_a_client() {
    // Client values reach kubegate as `HeaderValue`s, which refuse these bytes at parse time
    // (hyper answers 400); `prepare_upstream_headers` re-checks anyway.
    for bad in [&b"a\0b"[..], b"a\rb", b"a\nb", b"a\x7fb", b"a\x01b"] {
        assert!(HeaderValue::from_bytes(bad).is_err(), "{bad:?}");
    }
    let tab = client(&[("X-Tab", "a\tb")]);
    let out = prepare_upstream_headers(&tab, false, &identity(&default_groups()), None).unwrap();
    assert_eq!(values(&out, "x-tab"), vec![b"a\tb".as_slice()]);
}

#[test]
fn reserved_system_groups_are_refused() {
    for group in ["system:masters", "system:nodes", "system:serviceaccounts", "system:unauthenticated"] {
        let groups = vec![group.to_string()];
        let err = ImpersonationHeaders::new(&Impersonation {
            username: "alice",
            uid: None,
            groups: &groups,
            extra: &[],
        })
        .unwrap_err();
        assert_eq!(err, HeaderError::ReservedGroup(group.to_string()));
    }
    // Prefixed names are kubegate's own, not Kubernetes' system groups.
    let groups = vec!["kubegate:team:system:masters".to_string()];
    assert!(
        ImpersonationHeaders::new(&Impersonation {
            username: "system:admin",
            uid: None,
            groups: &groups,
            extra: &[]
        })
        .is_ok()
    );
}

#[test]
fn user_names_are_prefixed_and_passed_exactly() {
    for name in [
        "alice",
        "Alice.Smith@example.com",
        "jörg",
        "a/b%2Fc",
        "system:admin",
        "system:serviceaccount:kube-system:default",
    ] {
        let headers = ImpersonationHeaders::new(&Impersonation {
            username: name,
            uid: Some("u-1"),
            groups: &[],
            extra: &[],
        })
        .unwrap();
        assert_eq!(headers.user().as_bytes(), format!("kubegate:{name}").as_bytes());
        let out = prepare_upstream_headers(&HeaderMap::new(), false, &headers, None).unwrap();
        assert_eq!(values(&out, "impersonate-user"), vec![format!("kubegate:{name}").as_bytes()]);
        assert_eq!(values(&out, "impersonate-uid"), vec![b"u-1".as_slice()]);
    }
}

/// The API server reads `Impersonate-Extra-<key>`: lower-case, then percent-decode.
fn server_extra_key(header_name: &str) -> String {
    let key = header_name.strip_prefix("impersonate-extra-").unwrap().to_ascii_lowercase();
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn extra_keys_are_percent_encoded_so_the_api_server_reads_them_back_exactly() {
    let extra: Vec<(String, String)> = [
        ("scopes", "view"),
        ("scopes", "edit"),
        ("acme.com/project", "Web%2FApp"),
        ("Acme.com/Project", "UPPER"),
        ("100%", "x"),
        ("with space", "y"),
        ("ключ", "значение"),
        ("a:b=c", "z"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let headers = ImpersonationHeaders::new(&Impersonation {
        username: "alice",
        uid: None,
        groups: &[],
        extra: &extra,
    })
    .unwrap();
    let out = prepare_upstream_headers(&HeaderMap::new(), false, &headers, None).unwrap();
    let mut seen: Vec<(String, Vec<u8>)> = out
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("impersonate-extra-"))
        .map(|(name, value)| (server_extra_key(name.as_str()), value.as_bytes().to_vec()))
        .collect();
    let mut expected: Vec<(String, Vec<u8>)> =
        extra.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(out.contains_key("impersonate-extra-scopes"));
    assert!(out.contains_key("impersonate-extra-acme.com%2fproject"));
    assert!(out.contains_key("impersonate-extra-%41cme.com%2f%50roject"));
    assert_eq!(values(&out, "impersonate-extra-scopes"), vec![b"view".as_slice(), b"edit".as_slice()]);
}

#[test]
fn the_credential_is_kubegates_or_absent() {
    let headers = client(&[("Authorization", "Bearer users-own-token")]);
    let out = prepare_upstream_headers(&headers, false, &identity(&default_groups()), None).unwrap();
    assert!(!out.contains_key("authorization"), "a client-certificate credential sends no Authorization");
    let out =
        prepare_upstream_headers(&headers, false, &identity(&default_groups()), Some(&bearer())).unwrap();
    assert_eq!(values(&out, "authorization"), vec![b"Bearer kubegate-sa-token".as_slice()]);
    assert!(out.get("authorization").unwrap().is_sensitive());
}

#[test]
fn ordinary_end_to_end_headers_pass_through_unchanged() {
    let headers = client(&[
        ("User-Agent", "kubectl/v1.32.5 (linux/amd64) kubernetes/9894294"),
        ("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
        ("Accept-Encoding", "gzip"),
        ("Content-Type", "application/strategic-merge-patch+json"),
        ("Kubectl-Command", "kubectl apply"),
        ("Kubectl-Session", "c2070c24-df27-46ac-a3f6-840b91e248f0"),
        ("Audit-ID", "x"),
        ("Cookie", "a=b"),
    ]);
    let out = prepare_upstream_headers(&headers, false, &identity(&default_groups()), None).unwrap();
    for (name, value) in &headers {
        assert_eq!(out.get_all(name).iter().collect::<Vec<_>>(), vec![value], "{name}");
    }
}

#[test]
fn response_hop_by_hop_headers_are_stripped_except_on_101() {
    let mut switching = client(&[
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        ("Sec-WebSocket-Protocol", "v5.channel.k8s.io"),
    ]);
    let before = switching.clone();
    strip_response_hop_by_hop(StatusCode::SWITCHING_PROTOCOLS, &mut switching);
    assert_eq!(switching, before);

    let mut ok = client(&[
        ("Connection", "close, X-Internal"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Trailer", "X-Checksum"),
        ("Proxy-Authenticate", "Basic"),
        ("Proxy-Connection", "close"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("X-Internal", "secret"),
        ("Content-Type", "application/json"),
        ("Audit-Id", "abc"),
    ]);
    strip_response_hop_by_hop(StatusCode::OK, &mut ok);
    // The order of distinct fields carries no meaning (RFC 9110 §5.3).
    let mut left: Vec<&str> = ok.keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, vec!["audit-id", "content-type"]);

    let mut forbidden = client(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
    strip_response_hop_by_hop(StatusCode::FORBIDDEN, &mut forbidden);
    assert!(forbidden.is_empty(), "a failed upgrade must not look like one");
}

#[test]
fn target_and_host_must_name_the_same_authority() {
    let uri = |s: &str| s.parse::<http::Uri>().unwrap();
    let hosts = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(http::header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    };
    // h2 :authority (or absolute-form) and Host agree, or only one of them is there.
    assert_eq!(authority_conflict(&uri("https://kg.example:9443/api"), &hosts(&["kg.example:9443"])), None);
    assert_eq!(authority_conflict(&uri("https://KG.example:9443/api"), &hosts(&["kg.EXAMPLE:9443"])), None);
    assert_eq!(authority_conflict(&uri("https://kg.example:9443/api"), &hosts(&[])), None);
    assert_eq!(authority_conflict(&uri("/api"), &hosts(&["anything"])), None);
    // They disagree, or Host is repeated: refused.
    assert!(authority_conflict(&uri("https://kg.example:9443/api"), &hosts(&["evil.example"])).is_some());
    assert!(authority_conflict(&uri("https://kg.example:9443/api"), &hosts(&["kg.example"])).is_some());
    assert!(authority_conflict(&uri("/api"), &hosts(&["a", "b"])).is_some());
}
