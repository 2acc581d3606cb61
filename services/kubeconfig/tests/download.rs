//! The kubeconfig download through the real service: files read back exactly by real kubectl
//! and by the Rust parser, tokens that verify with identity's published keys, access and name
//! changes in the next download, every refusal, and HTTPS enforced by the server.
//!
//! The golden file `tests/golden/download-odd-names.yaml` is compared byte for byte (token and
//! CA data replaced by placeholders). After an intended change, rewrite it and review the diff:
//! `UPDATE_GOLDEN=1 cargo test -p kubegate-kubeconfig --test download`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use kubegate_events::environments::{EnvironmentEvent, KubeconfigDownloaded};
use kubegate_kubeconfig::kubeconfig_file::{CaBundle, Kubeconfig};
use kubegate_token::Scope;
use serde_json::{Value, json};

/// Environment names that break naive YAML writers or readers.
const ODD_NAMES: &[&str] = &[
    "prod 🚀",
    "say \"hi\"",
    "it's",
    "colon: here",
    "a:b",
    "line\nbreak",
    "crlf\r\nend",
    "tab\there",
    "# hash",
    "x #not a comment",
    "-leading-dash",
    "- list item",
    "--",
    "yes",
    "null",
    "~",
    "true",
    "1e3",
    "0x10",
    "生产环境",
    "Ünïcödé",
    "[flow]",
    "{map: 1}",
    "&anchor",
    "*alias",
    "!tag",
    "|literal",
    ">folded",
    "%directive",
    "back\\slash",
    "bell\u{7}esc\u{1b}",
    "del\u{7f}",
    "bom\u{feff}",
    " padded ",
];
/// A user name with everything identity allows in one: quotes, colon, `#`, a leading dash,
/// YAML keywords and non-ASCII (identity refuses control characters in user names).
const ODD_USER: &str = "- yes: \"o'brien\" #1 ~ null 生产";

/// What the kubeconfig must say for one environment: (context name, server, namespace).
type Entry = (String, String, Option<String>);
type Expected = Vec<Entry>;

fn server(id: u64) -> String {
    format!("{PUBLIC_URL}/api/endpoints/{id}/kubernetes")
}

fn check_golden(file: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert!(
        expected == actual,
        "{file} differs; run with UPDATE_GOLDEN=1 and review the diff\n--- actual\n{actual}"
    );
}

/// Checks what kubectl and the Rust parser read from `text`, against `expected`.
fn assert_reads_back(
    h: &Harness,
    text: &str,
    ext: &str,
    user: &str,
    expected: &[Entry],
    minors: &[u32],
) -> String {
    let config = if ext == "json" {
        Kubeconfig::from_json(text).unwrap()
    } else {
        Kubeconfig::from_yaml(text).unwrap()
    };
    let token = config.users[0].user.token.as_ref().unwrap().expose_secret().to_string();
    let ca_data = CaBundle::from_pem(h.ca_pem.as_bytes()).unwrap().kubeconfig_data();
    let user_entry = format!("kubegate-{user}");

    // The Rust parser.
    assert_eq!(config.current_context, expected[0].0);
    assert_eq!(config.users.len(), 1);
    assert_eq!(config.users[0].name, user_entry);
    let parsed: Expected = config
        .contexts
        .iter()
        .map(|c| {
            let cluster = config.clusters.iter().find(|k| k.name == c.context.cluster).unwrap();
            assert_eq!(c.context.user, user_entry);
            assert_eq!(cluster.cluster.certificate_authority_data.as_deref(), Some(ca_data.as_str()));
            assert!(!cluster.cluster.insecure_skip_tls_verify);
            (c.name.clone(), cluster.cluster.server.clone(), c.context.namespace.clone())
        })
        .collect();
    assert_eq!(parsed, expected, "the Rust parser");

    // Real kubectl.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("config.{ext}"));
    std::fs::write(&file, text).unwrap();
    for &minor in minors {
        let view = kubectl_view(minor, &file);
        let clusters: BTreeMap<String, (String, String)> = view["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let cluster = &c["cluster"];
                assert!(cluster.get("insecure-skip-tls-verify").is_none(), "{c}");
                (
                    c["name"].as_str().unwrap().to_string(),
                    (
                        cluster["server"].as_str().unwrap().to_string(),
                        cluster["certificate-authority-data"].as_str().unwrap().to_string(),
                    ),
                )
            })
            .collect();
        let contexts: Expected = view["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let context = &c["context"];
                assert_eq!(context["user"].as_str(), Some(user_entry.as_str()), "kubectl.1.{minor}");
                let cluster = &clusters[context["cluster"].as_str().unwrap()];
                assert_eq!(cluster.1, ca_data, "kubectl.1.{minor}");
                (
                    c["name"].as_str().unwrap().to_string(),
                    cluster.0.clone(),
                    context["namespace"].as_str().map(str::to_string),
                )
            })
            .collect();
        let mut sorted = expected.to_vec();
        sorted.sort();
        let mut got = contexts;
        got.sort();
        assert_eq!(got, sorted, "kubectl.1.{minor} config view");
        assert_eq!(view["current-context"].as_str(), Some(expected[0].0.as_str()), "kubectl.1.{minor}");
        let users = view["users"].as_array().unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users[0]["name"].as_str(), Some(user_entry.as_str()));
        assert_eq!(
            users[0]["user"]["token"].as_str(),
            Some(token.as_str()),
            "kubectl.1.{minor} reads the token"
        );

        let mut names: Vec<&str> = expected.iter().map(|e| e.0.as_str()).collect();
        names.sort();
        let listed: String = names.iter().map(|n| format!("{n}\n")).collect();
        assert_eq!(
            without_padding(&kubectl(minor, &["config", "get-contexts", "-o", "name"], &file)),
            without_padding(&listed),
            "kubectl.1.{minor} config get-contexts"
        );
        assert_eq!(kubectl(minor, &["config", "current-context"], &file), format!("{}\n", expected[0].0));
    }
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_download_reads_back_exactly_in_kubectl_and_the_rust_parser() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let (user_id, user) = h.user(&admin, ODD_USER, "user").await;

    // One environment per odd name, plus one the user is never granted.
    let mut ids = Vec::new();
    for name in ODD_NAMES {
        ids.push(h.environment(&admin, name).await);
    }
    let hidden = h.environment(&admin, "not granted").await;
    let mut expected: Expected = Vec::new();
    for (i, (&id, name)) in ids.iter().zip(ODD_NAMES).enumerate() {
        let (entry, namespace) = match i % 3 {
            0 => (json!({"userId": user_id, "role": "standard", "namespaces": ["yes", "dev"]}), Some("dev")),
            1 => {
                (json!({"userId": user_id, "role": "read-only", "namespaces": ["null", "on"]}), Some("null"))
            }
            _ => (json!({"userId": user_id, "role": "operator"}), None),
        };
        h.set_access(&admin, id, json!({"users": [entry], "teams": []})).await;
        expected.push((format!("kubegate-{name}"), server(id), namespace.map(str::to_string)));
    }

    let yaml = h.download_yaml(&user, "").await;
    let token = assert_reads_back(&h, &yaml, "yaml", ODD_USER, &expected, &[27, 33]);
    assert!(!yaml.contains(&server(hidden)), "never an environment that was not granted");
    let ca_data = CaBundle::from_pem(h.ca_pem.as_bytes()).unwrap().kubeconfig_data();
    check_golden(
        "download-odd-names.yaml",
        &yaml.replace(&token, "<token>").replace(&ca_data, "<certificate-authority-data>"),
    );

    // The token is the user's, verifies with the keys identity publishes, and carries the expiry.
    let bus = h.bus().await;
    let keys = identity_keys(&bus).await;
    let claims = keys.verify(&token, Scope::Kubeconfig, chrono::Utc::now().timestamp()).unwrap();
    assert_eq!((claims.sub.as_str(), claims.name.as_str()), (user_id.to_string().as_str(), ODD_USER));
    assert_eq!(claims.exp.unwrap() - claims.iat, 720 * 3600, "the default expiry, 30 days");

    // The download is an event naming the user, the environments, the token and its expiry.
    let total = (ODD_NAMES.len() * 2 + 2) as u64;
    let events = stream_events(&bus, "KUBEGATE_ENVIRONMENTS", total).await;
    let downloads: Vec<KubeconfigDownloaded> = events
        .iter()
        .filter_map(|e| match e.decode::<EnvironmentEvent>().unwrap().event {
            EnvironmentEvent::KubeconfigDownloaded(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(downloads.len(), 1);
    let d = &downloads[0];
    assert_eq!(
        (d.user_id, d.username.as_str(), d.token_id.as_str()),
        (user_id, ODD_USER, claims.jti.as_str())
    );
    assert_eq!(d.environment_ids, ids);
    assert_eq!(d.expires_at.map(|t| t.timestamp()), claims.exp);
    assert_eq!(d.client_address, "127.0.0.1");

    // JSON is read the same way, by kubectl too.
    let resp = h.download(Some(&user), "?ids=[1,2,3]", None).await;
    assert_eq!(resp.headers()["content-type"], "application/json");
    let json = resp.text().await.unwrap();
    assert_reads_back(&h, &json, "json", ODD_USER, &expected[..3], &[33]);

    // An admin reaches everything as environment-admin: no namespace anywhere.
    let admin_yaml = h.download_yaml(&admin, "").await;
    let mut everything: Expected =
        ids.iter().zip(ODD_NAMES).map(|(&id, n)| (format!("kubegate-{n}"), server(id), None)).collect();
    everything.push(("kubegate-not granted".into(), server(hidden), None));
    assert_reads_back(&h, &admin_yaml, "yaml", "admin", &everything, &[33]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_changes_renames_and_expiry_show_in_the_next_download_without_a_restart() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let (alice_id, alice) = h.user(&admin, "alice", "user").await;
    let (bob_id, bob) = h.user(&admin, "bob", "user").await;
    let ops = h.team(&admin, "ops", &[bob_id]).await;
    let alpha = h.environment(&admin, "alpha").await;
    let beta = h.environment(&admin, "beta").await;
    let gamma = h.environment(&admin, "gamma").await;
    h.set_access(
        &admin,
        alpha,
        json!({"users": [{"userId": alice_id, "role": "standard", "namespaces": ["web", "dev"]}],
               "teams": [{"teamId": ops, "role": "read-only", "namespaces": ["qa"]}]}),
    )
    .await;
    h.set_access(&admin, beta, json!({"users": [], "teams": [{"teamId": ops, "role": "operator"}]})).await;
    // A user identity created a moment ago can be granted at once: the service waits for the event.
    let (s, body) = h
        .identity_call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"username": "carol", "password": "carol-password"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let carol = body["id"].as_u64().unwrap();
    let policy = h
        .set_access(&admin, gamma, json!({"users": [{"userId": carol, "role": "helpdesk"}], "teams": []}))
        .await;
    assert_eq!(policy["users"], json!([{"userId": carol, "role": "helpdesk", "namespaces": []}]));

    let contexts = |yaml: &str| -> Vec<(String, String, Option<String>)> {
        let config = Kubeconfig::from_yaml(yaml).unwrap();
        config
            .contexts
            .iter()
            .map(|c| {
                let cluster = config.clusters.iter().find(|k| k.name == c.context.cluster).unwrap();
                (c.name.clone(), cluster.cluster.server.clone(), c.context.namespace.clone())
            })
            .collect()
    };
    let token_of = |yaml: &str| {
        Kubeconfig::from_yaml(yaml).unwrap().users[0].user.token.as_ref().unwrap().expose_secret().to_string()
    };

    // A standard user gets exactly what was granted, never more.
    let first = h.download_yaml(&alice, "").await;
    assert_eq!(contexts(&first), vec![("kubegate-alpha".into(), server(alpha), Some("dev".into()))]);
    for unreachable in [beta, gamma] {
        let resp =
            h.download(Some(&alice), &format!("?ids=[{alpha},{unreachable}]"), Some("text/yaml")).await;
        assert_eq!(resp.status().as_u16(), 403);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["message"], format!("you have no access to environment {unreachable}"));
    }
    // Teams grant too; the most permissive wins.
    let bobs = h.download_yaml(&bob, "").await;
    assert_eq!(
        contexts(&bobs),
        vec![
            ("kubegate-alpha".into(), server(alpha), Some("qa".into())),
            ("kubegate-beta".into(), server(beta), None)
        ]
    );

    // Rename and change access: the next download follows, no restart.
    let (s, body) = h
        .call(
            "PUT",
            &format!("/api/endpoints/{alpha}"),
            Some(&admin),
            Some(json!({"name": "alpha: renamed"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    h.set_access(
        &admin,
        alpha,
        json!({"users": [{"userId": alice_id, "role": "read-only", "namespaces": ["ops"]}], "teams": []}),
    )
    .await;
    h.set_access(&admin, gamma, json!({"users": [{"userId": alice_id, "role": "helpdesk"}], "teams": []}))
        .await;
    let second = h.download_yaml(&alice, "").await;
    assert_eq!(
        contexts(&second),
        vec![
            ("kubegate-alpha: renamed".into(), server(alpha), Some("ops".into())),
            ("kubegate-gamma".into(), server(gamma), None),
        ]
    );
    let bobs = h.download_yaml(&bob, &format!("?ids=[{beta}]")).await;
    assert_eq!(contexts(&bobs), vec![("kubegate-beta".into(), server(beta), None)]);
    let resp = h.download(Some(&bob), &format!("?ids=[{alpha}]"), None).await;
    assert_eq!(resp.status().as_u16(), 403, "bob's team lost alpha");

    // Identity's changes arrive through its events: bob leaves the team and reaches nothing.
    let (s, _) =
        h.identity_call("DELETE", &format!("/api/teams/{ops}/members/{bob_id}"), Some(&admin), None).await;
    assert_eq!(s, 204);
    let message = kubegate_testsupport::wait::until(
        "bob's team membership to be gone",
        Duration::from_secs(15),
        || async {
            let resp = h.download(Some(&bob), "", None).await;
            if resp.status().as_u16() == 400 {
                Some(resp.json::<Value>().await.unwrap()["message"].clone())
            } else {
                None
            }
        },
    )
    .await;
    assert_eq!(message, "you have access to no environment yet; ask an admin to grant you one");

    // A token minted after an expiry change carries the new expiry; earlier ones keep theirs.
    let bus = h.bus().await;
    let now = chrono::Utc::now().timestamp();
    let keys = identity_keys(&bus).await;
    let before = keys.verify(&token_of(&second), Scope::Kubeconfig, now).unwrap();
    assert_eq!(before.exp.unwrap() - before.iat, 720 * 3600);
    let (s, _) =
        h.identity_call("PUT", "/api/settings", Some(&admin), Some(json!({"kubeconfigExpiry": "24h"}))).await;
    assert_eq!(s, 200);
    let third = h.download_yaml(&alice, "").await;
    let after = keys.verify(&token_of(&third), Scope::Kubeconfig, now).unwrap();
    assert_eq!(after.exp.unwrap() - after.iat, 24 * 3600, "the new expiry");
    let again = keys.verify(&token_of(&second), Scope::Kubeconfig, chrono::Utc::now().timestamp()).unwrap();
    assert_eq!(again.exp, before.exp, "the earlier token keeps its own expiry and still verifies");
    let (s, _) =
        h.identity_call("PUT", "/api/settings", Some(&admin), Some(json!({"kubeconfigExpiry": "0"}))).await;
    assert_eq!(s, 200);
    let never = keys.verify(&token_of(&h.download_yaml(&alice, "").await), Scope::Kubeconfig, now).unwrap();
    assert_eq!(never.exp, None, "never expires");
    let (_, tokens) = h
        .identity_call("GET", &format!("/api/kubeconfig-tokens?userId={alice_id}"), Some(&admin), None)
        .await;
    assert_eq!(tokens.as_array().unwrap().len(), 4, "identity knows every token issued: {tokens}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_status_and_a_message_naming_the_cause() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let (alice_id, alice) = h.user(&admin, "Jürgen \"J\" /x", "user").await;
    let one = h.environment(&admin, "one").await;
    let two = h.environment(&admin, "two").await;
    let three = h.environment(&admin, "three").await;
    h.set_access(
        &admin,
        one,
        json!({"users": [{"userId": alice_id, "role": "standard", "namespaces": ["dev"]}], "teams": []}),
    )
    .await;
    h.set_access(&admin, three, json!({"users": [{"userId": alice_id, "role": "helpdesk"}], "teams": []}))
        .await;

    let refusal = |query: &'static str, token: Option<String>| {
        let h = &h;
        async move {
            let resp = h.download(token.as_deref(), query, Some("text/yaml")).await;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body["message"].as_str().unwrap().to_string())
        }
    };
    let a = || Some(alice.clone());
    assert_eq!(
        refusal("?ids=[1]&excludeIds=[2]", a()).await,
        (400, "give ids or excludeIds, not both".into())
    );
    assert_eq!(refusal("?ids=[1,99]", a()).await, (404, "environment 99 not found".into()));
    assert_eq!(refusal("?excludeIds=[98,99]", a()).await, (404, "environments 98, 99 not found".into()));
    assert_eq!(refusal("?ids=[2]", a()).await, (403, format!("you have no access to environment {two}")));
    assert_eq!(
        refusal("?excludeIds=[1,3]", a()).await,
        (400, "no environment left to put in the kubeconfig".into())
    );
    assert_eq!(refusal("?ids=[]", a()).await, (400, "no environment left to put in the kubeconfig".into()));
    for malformed in ["?ids=one", "?ids=[1,", "?ids=-1", "?excludeIds=1.5"] {
        let (status, message) = refusal(malformed, a()).await;
        assert_eq!(status, 400, "{malformed}");
        assert!(message.contains("must be a list of environment ids"), "{malformed}: {message}");
    }
    let (status, message) = refusal("?id=1", a()).await;
    assert_eq!((status, message.contains("unknown query parameter")), (400, true));
    assert_eq!(refusal("", None).await, (401, "sign in first: no bearer token".into()));
    let (status, message) = refusal("", Some("not-a-token".into())).await;
    assert_eq!((status, message.starts_with("invalid token")), (401, true), "{message}");

    // A kubeconfig token is not a session.
    let yaml = h.download_yaml(&alice, "").await;
    let kubeconfig_token = Kubeconfig::from_yaml(&yaml).unwrap().users[0]
        .user
        .token
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_string();
    let (status, message) = refusal("", Some(kubeconfig_token.clone())).await;
    assert_eq!(status, 401);
    assert!(message.contains("kubeconfig tokens are not accepted by the REST API"), "{message}");
    let (status, _) = h.call("GET", "/api/endpoints", Some(&kubeconfig_token), None).await;
    assert_eq!(status, 401);
    // Tokens in the query string mean nothing.
    let (status, message) = refusal("?token=x", None).await;
    assert_eq!(status, 401, "{message}");

    // Both spellings of the list; order is kept; repeated ids collapse.
    for query in ["?ids=3&ids=1", "?ids=[3,1,3]", "?ids=3,1", "?ids%5B%5D=3&ids%5B%5D=1"] {
        let config = Kubeconfig::from_yaml(&h.download_yaml(&alice, query).await).unwrap();
        let names: Vec<&str> = config.contexts.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["kubegate-three", "kubegate-one"], "{query}");
        assert_eq!(config.current_context, "kubegate-three");
    }

    // Formats and headers.
    for (accept, content_type) in [
        (None, "application/json"),
        (Some("application/json"), "application/json"),
        (Some("application/yaml"), "application/yaml"),
        (Some("text/yaml"), "text/yaml; charset=utf-8"),
    ] {
        let resp = h.download(Some(&alice), "", accept).await;
        assert_eq!(resp.status().as_u16(), 200);
        let headers = resp.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{accept:?}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            headers["content-disposition"],
            "attachment; filename=\"J_rgen _J_ _x-kubeconfig.yaml\"; \
             filename*=UTF-8''J%C3%BCrgen%20%22J%22%20_x-kubeconfig.yaml"
        );
        let text = resp.text().await.unwrap();
        let config = if content_type == "application/json" {
            Kubeconfig::from_json(&text).unwrap()
        } else {
            Kubeconfig::from_yaml(&text).unwrap()
        };
        assert_eq!(config.users[0].name, "kubegate-Jürgen \"J\" /x");
    }

    // What a user may see of environments follows the same rules.
    let (status, list) = h.call("GET", "/api/endpoints", Some(&alice), None).await;
    assert_eq!(status, 200);
    let seen: Vec<(u64, &str, Value)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e["role"].as_str().unwrap(), e["namespaces"].clone()))
        .collect();
    assert_eq!(seen, vec![(one, "standard", json!(["dev"])), (three, "helpdesk", json!([]))]);
}

/// A download on the plain listener, optionally with `X-Forwarded-Proto`.
async fn plain(h: &Harness, session: &str, proto: Option<&str>) -> (u16, String) {
    let mut req =
        h.client.get(h.url("/api/kubernetes/config")).bearer_auth(session).header("accept", "text/yaml");
    if let Some(p) = proto {
        req = req.header("x-forwarded-proto", p);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_did_not_arrive_over_https_is_refused() {
    let mut h = Harness::start_with(Options { plain_http: true, ..Default::default() }).await;
    let admin = h.admin().await;
    h.environment(&admin, "demo").await;
    let (status, body) = plain(&h, &admin, None).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (403, json!({"message": "kubeconfig download requires HTTPS"}))
    );
    let (status, _) = plain(&h, &admin, Some("http")).await;
    assert_eq!(status, 403);
    let (status, body) = plain(&h, &admin, Some("https")).await;
    assert_eq!(status, 200, "a trusted proxy (loopback) said the client used HTTPS: {body}");
    Kubeconfig::from_yaml(&body).unwrap();
    let (status, _) = h.call("GET", "/api/endpoints", Some(&admin), None).await;
    assert_eq!(status, 200, "only the download needs HTTPS");

    // A peer that is not a trusted proxy cannot claim HTTPS.
    h.client = reqwest::Client::new();
    assert_eq!(h.svc.terminate(Duration::from_secs(20)), Some(0));
    h.svc.set_env("KUBEGATE_TRUSTED_PROXIES", "10.0.0.0/8");
    h.svc.start_ready(Duration::from_secs(60));
    let (status, body) = plain(&h, &admin, Some("https")).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).unwrap()),
        (403, json!({"message": "kubeconfig download requires HTTPS"}))
    );
}
