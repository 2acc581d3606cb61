//! The header rewrite on any client headers: the client's `Authorization`, `Impersonate-*`,
//! `X-Remote-*`, `X-Forwarded-*` and hop-by-hop headers (and whatever its `Connection` names)
//! never reach the upstream, kubegate's own impersonation and credential always do — exactly
//! once and unchanged — and every other header passes through as it came.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use kubegate_fuzz::headers::{Impersonation, ImpersonationHeaders, is_upgrade_request, prepare_upstream_headers};
use libfuzzer_sys::fuzz_target;

fn dropped(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
            | "authorization" | "forwarded" | "x-real-ip" | "host"
    ) || ["proxy-", "impersonate-", "x-remote-", "x-forwarded-"].iter().any(|p| name.starts_with(p))
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut lines = rest.split(|&b| b == b'\n');
    let username = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let team = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let mut client = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        else {
            continue;
        };
        client.append(name, value);
    }
    let groups = vec!["kubegate:role:standard".to_string(), format!("kubegate:team:{team}"), "system:authenticated".into()];
    let Ok(identity) = ImpersonationHeaders::new(&Impersonation { username: &username, uid: None, groups: &groups, extra: &[] })
    else {
        return;
    };
    let credential = (flags & 1 == 1).then(|| HeaderValue::from_static("Bearer kubegate-upstream"));
    let upgrade = is_upgrade_request(&client);
    let Ok(out) = prepare_upstream_headers(&client, upgrade, &identity, credential.as_ref()) else { return };

    let users: Vec<_> = out.get_all("impersonate-user").iter().collect();
    assert_eq!(users, vec![identity.user()], "impersonated user changed");
    let sent_groups: Vec<_> = out.get_all("impersonate-group").iter().map(|v| v.as_bytes().to_vec()).collect();
    let want_groups: Vec<_> = groups.iter().map(|g| g.as_bytes().to_vec()).collect();
    assert_eq!(sent_groups, want_groups, "impersonated groups changed");
    let auth: Vec<_> = out.get_all("authorization").iter().collect();
    assert_eq!(auth, credential.iter().collect::<Vec<_>>(), "client Authorization passed or ours lost");
    for name in out.keys() {
        let n = name.as_str();
        match n {
            "impersonate-user" | "impersonate-group" | "authorization" => {}
            "connection" | "upgrade" => assert!(upgrade, "{n} forwarded on a plain request"),
            _ => assert!(!dropped(n), "client header {n} reached the upstream"),
        }
    }
    if upgrade {
        assert_eq!(out.get_all("connection").iter().collect::<Vec<_>>(), vec![HeaderValue::from_static("Upgrade")]);
    }
    // Everything else passes unchanged, unless the client's Connection header names it.
    let named: Vec<String> = client
        .get_all("connection")
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b',').map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    for name in client.keys() {
        let n = name.as_str();
        if dropped(n) || named.iter().any(|t| t == n) {
            continue;
        }
        let a: Vec<_> = client.get_all(name).iter().collect();
        let b: Vec<_> = out.get_all(name).iter().collect();
        assert_eq!(a, b, "client header {n} changed on the way");
    }
});
