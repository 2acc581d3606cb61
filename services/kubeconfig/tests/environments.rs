//! Environments and access policies through the REST API of the real service: validation,
//! permissions, one event per change, restarts, and credentials that never exist in clear
//! outside the request that brought them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use kubegate_events::environments::EnvironmentEvent;
use kubegate_seal::{SealedCredential, UpstreamCredential};
use kubegate_testsupport::net::free_port;
use kubegate_testsupport::process::Service;
use serde_json::{Value, json};

fn kubeconfig_service(env: &[(&str, String)]) -> Service {
    Service::new("kubeconfig", env!("CARGO_BIN_EXE_kubegate-kubeconfig"), env)
}

#[test]
fn bad_configuration_exits_64_with_one_line_that_never_shows_a_key() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = kubegate_tls::DevPki::ensure(pki_dir.path()).unwrap();
    let (public, secret) = kubegate_seal::generate_fleet_key();
    let secret_text = secret.to_secret_string().expose_secret().to_string();
    let base = |fleet: Option<String>, ca: String, url: &str| {
        let mut env = vec![
            ("KUBEGATE_KUBECONFIG_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("KUBEGATE_KUBECONFIG_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none".to_string()),
            ("KUBEGATE_PUBLIC_CA_FILE", ca),
            ("KUBEGATE_PUBLIC_URL", url.to_string()),
            ("KUBEGATE_TLS_CERT", pki.server_cert.display().to_string()),
            ("KUBEGATE_TLS_KEY", pki.server_key.display().to_string()),
        ];
        if let Some(f) = fleet {
            env.push(("KUBEGATE_FLEET_PUBLIC_KEY", f));
        }
        kubeconfig_service(&env)
    };
    let ca = pki.ca_cert.display().to_string();
    let cases: Vec<(Service, &str)> = vec![
        (base(None, ca.clone(), PUBLIC_URL), "required arguments were not provided"),
        (base(Some(secret_text.clone()), ca.clone(), PUBLIC_URL), "KUBEGATE_FLEET_PUBLIC_KEY"),
        (base(Some("age1nonsense".into()), ca.clone(), PUBLIC_URL), "KUBEGATE_FLEET_PUBLIC_KEY"),
        (base(Some(public.to_string()), "/nonexistent/ca.pem".into(), PUBLIC_URL), "KUBEGATE_PUBLIC_CA_FILE"),
        (
            base(Some(public.to_string()), pki.server_key.display().to_string(), PUBLIC_URL),
            "KUBEGATE_PUBLIC_CA_FILE",
        ),
        (base(Some(public.to_string()), ca.clone(), "http://kubegate.test"), "KUBEGATE_PUBLIC_URL"),
    ];
    for (mut svc, expected) in cases {
        let (code, out) = svc.run_to_exit(Duration::from_secs(30));
        assert_eq!(code, Some(64), "{out}");
        assert_eq!(out.trim().lines().count(), 1, "one line: {out}");
        assert!(out.contains(expected), "{expected}: {out}");
        assert!(!out.contains(&secret_text), "a secret key is never printed: {out}");
        assert!(!out.contains("PRIVATE KEY"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environments_are_registered_validated_changed_and_removed_one_event_per_change() {
    let mut h = Harness::start().await;
    let admin = h.admin().await;
    let (_, alice) = h.user(&admin, "alice", "user").await;

    // Registration and its refusals: nothing is recorded for a refused request.
    let ca = h.ca_pem.clone();
    let base =
        json!({"name": "prod", "url": "https://10.0.0.1:6443", "caCert": ca, "token": "upstream-token"});
    let with = |change: Value| {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let refusals = [
        (json!({"url": "http://10.0.0.1:6443"}), 400, "url must be an https:// URL"),
        (json!({"url": "https://user:pw@10.0.0.1"}), 400, "user info is not allowed"),
        (json!({"caCert": null}), 400, "caCert is required unless insecureSkipTlsVerify"),
        (json!({"caCert": "not a certificate"}), 400, "caCert:"),
        (json!({"insecureSkipTlsVerify": true}), 400, "not both"),
        (json!({"token": null}), 400, "a credential is required"),
        (json!({"clientCert": "x", "clientKey": "y"}), 400, "give one credential"),
        (json!({"token": null, "clientCert": "x"}), 400, "clientCert and clientKey go together"),
        (json!({"token": "has space"}), 400, "token: the token contains whitespace"),
        (json!({"name": ""}), 400, "1 to 128 characters"),
        (json!({"name": "x".repeat(129)}), 400, "1 to 128 characters"),
        (json!({"colour": "red"}), 400, "unknown field `colour`"),
        (json!({"insecureSkipTlsVerify": "kg-leaky-value"}), 400, "[value not shown]"),
    ];
    for (change, status, message) in refusals {
        let (s, body) = h.call("POST", "/api/endpoints", Some(&admin), Some(with(change.clone()))).await;
        assert_eq!(s, status, "{change}: {body}");
        let m = body["message"].as_str().unwrap();
        assert!(m.contains(message), "{change}: {m}");
        assert!(!m.contains("kg-leaky-value"), "values are not echoed: {m}");
    }
    assert!(h.stored_rows().await.is_empty(), "refused requests record nothing");

    let (s, body) = h.call("POST", "/api/endpoints", Some(&admin), Some(base.clone())).await;
    assert_eq!((s, body.clone()), (200, json!({"id": 1})));
    let (s, body) = h.call("POST", "/api/endpoints", Some(&admin), Some(with(json!({"name": "PROD"})))).await;
    assert_eq!(s, 409, "names are unique regardless of case: {body}");
    let insecure = json!({"name": "lab ✨", "url": "https://lab.example:6443/", "insecureSkipTlsVerify": true, "token": "t"});
    let (s, body) = h.call("POST", "/api/endpoints", Some(&admin), Some(insecure)).await;
    assert_eq!((s, body), (200, json!({"id": 2})));

    // Non-admins are refused on every admin route, and see only what they may reach.
    for (method, path, body) in [
        ("POST", "/api/endpoints", Some(base.clone())),
        ("PUT", "/api/endpoints/1", Some(json!({"name": "x"}))),
        ("DELETE", "/api/endpoints/1", None),
        ("GET", "/api/endpoints/1/access", None),
        ("PUT", "/api/endpoints/1/access", Some(json!({"users": [], "teams": []}))),
    ] {
        let (s, b) = h.call(method, path, Some(&alice), body).await;
        assert_eq!(
            (s, b["message"].as_str().unwrap()),
            (403, "this requires the admin role"),
            "{method} {path}"
        );
    }
    let (s, list) = h.call("GET", "/api/endpoints", Some(&alice), None).await;
    assert_eq!((s, list), (200, json!([])));
    let (s, body) = h.call("GET", "/api/endpoints/1", Some(&alice), None).await;
    assert_eq!((s, body["message"].as_str().unwrap()), (403, "you have no access to environment 1"));
    let (s, _) = h.call("GET", "/api/endpoints/9", Some(&alice), None).await;
    assert_eq!(s, 404);
    let (s, body) = h.call("GET", "/api/endpoints/abc", Some(&admin), None).await;
    assert_eq!((s, body["message"].as_str().unwrap()), (400, "environment ids are positive integers"));
    let (s, _) = h.call("GET", "/api/endpoints", None, None).await;
    assert_eq!(s, 401);

    // What an admin sees: never the credential, only its kind.
    let (s, one) = h.call("GET", "/api/endpoints/1", Some(&admin), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        one,
        json!({
            "id": 1, "name": "prod", "url": "https://10.0.0.1:6443", "insecureSkipTlsVerify": false,
            "hasCaCert": true, "credential": {"kind": "token"}, "role": "environment-admin", "namespaces": []
        })
    );
    let (_, two) = h.call("GET", "/api/endpoints/2", Some(&admin), None).await;
    assert_eq!(
        (two["url"].as_str(), two["hasCaCert"].as_bool()),
        (Some("https://lab.example:6443"), Some(false))
    );

    // Access: refusals name the unknown ids; a valid policy round-trips.
    let (s, body) = h
        .call(
            "PUT",
            "/api/endpoints/1/access",
            Some(&admin),
            Some(json!({"users": [{"userId": 2, "role": "standard", "namespaces": ["dev"]}, {"userId": 77, "role": "helpdesk"}],
                        "teams": [{"teamId": 5, "role": "read-only", "namespaces": ["qa"]}]})),
        )
        .await;
    assert_eq!((s, body["message"].as_str().unwrap()), (400, "unknown user ids: 77; unknown team ids: 5"));
    for (policy, message) in [
        (json!({"users": [{"userId": 2, "role": "standard"}], "teams": []}), "needs at least one namespace"),
        (
            json!({"users": [{"userId": 2, "role": "operator", "namespaces": ["dev"]}], "teams": []}),
            "takes no namespaces",
        ),
        (
            json!({"users": [{"userId": 2, "role": "standard", "namespaces": ["Dev"]}], "teams": []}),
            "not a valid namespace",
        ),
        (json!({"users": [{"userId": 2, "role": "owner"}], "teams": []}), "unknown variant `owner`"),
        (json!({"users": []}), "missing field `teams`"),
    ] {
        let (s, body) = h.call("PUT", "/api/endpoints/1/access", Some(&admin), Some(policy)).await;
        assert_eq!(s, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(message), "{body}");
    }
    let policy =
        json!({"users": [{"userId": 2, "role": "standard", "namespaces": ["web", "dev"]}], "teams": []});
    let stored = h.set_access(&admin, 1, policy).await;
    let expected =
        json!({"users": [{"userId": 2, "role": "standard", "namespaces": ["dev", "web"]}], "teams": []});
    assert_eq!(stored, expected);
    let (_, got) = h.call("GET", "/api/endpoints/1/access", Some(&admin), None).await;
    assert_eq!(got, expected);
    let (s, list) = h.call("GET", "/api/endpoints", Some(&alice), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        list,
        json!([{"id": 1, "name": "prod", "url": "https://10.0.0.1:6443", "insecureSkipTlsVerify": false,
                "hasCaCert": true, "role": "standard", "namespaces": ["dev", "web"]}]),
        "users see their role and namespaces, not the credential kind"
    );

    // Changes: each kind its own event; a change with one bad field changes nothing.
    let (s, body) = h
        .call(
            "PUT",
            "/api/endpoints/1",
            Some(&admin),
            Some(json!({"name": "production", "url": "ftp://x", "token": "new"})),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = h
        .call(
            "PUT",
            "/api/endpoints/1",
            Some(&admin),
            Some(json!({"name": "production", "url": "https://10.0.0.9:6443", "token": "rotated-token"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["url"].as_str()),
        (Some("production"), Some("https://10.0.0.9:6443"))
    );
    let (s, body) =
        h.call("PUT", "/api/endpoints/2", Some(&admin), Some(json!({"name": "PRODUCTION"}))).await;
    assert_eq!(s, 409, "{body}");
    let (s, body) = h.call("PUT", "/api/endpoints/2", Some(&admin), Some(json!({"caCert": h.ca_pem}))).await;
    assert_eq!(
        (s, body["hasCaCert"].as_bool(), body["insecureSkipTlsVerify"].as_bool()),
        (200, Some(true), Some(false))
    );

    // Removal; ids are never reused, names are free again.
    let (s, _) = h.call("DELETE", "/api/endpoints/2", Some(&admin), None).await;
    assert_eq!(s, 204);
    let (s, _) = h.call("DELETE", "/api/endpoints/2", Some(&admin), None).await;
    assert_eq!(s, 404);
    let (s, _) = h.call("GET", "/api/endpoints/2", Some(&admin), None).await;
    assert_eq!(s, 404);
    let lab =
        json!({"name": "lab ✨", "url": "https://lab.example", "insecureSkipTlsVerify": true, "token": "t"});
    let (s, body) = h.call("POST", "/api/endpoints", Some(&admin), Some(lab)).await;
    assert_eq!((s, body), (200, json!({"id": 3})));

    let types = h.stored_types().await;
    assert_eq!(
        types,
        [
            "EnvironmentRegistered",
            "EnvironmentRegistered",
            "AccessPolicySet",
            "EnvironmentRenamed",
            "EnvironmentEndpointChanged",
            "EnvironmentCredentialRotated",
            "EnvironmentEndpointChanged",
            "EnvironmentRemoved",
            "EnvironmentRegistered",
        ]
    );

    // Everything survives a restart, and every published event matches its schema.
    // An idle h2 connection would hold the drain for its whole grace period: close ours first
    // (the runtime has other threads to do that while this one waits for the process).
    h.client = new_client(&h.ca_pem);
    let stopping = std::time::Instant::now();
    assert_eq!(h.svc.terminate(Duration::from_secs(20)), Some(0), "SIGTERM drains and exits 0");
    assert!(stopping.elapsed() < Duration::from_secs(5), "drained in {:?}", stopping.elapsed());
    h.svc.start_ready(Duration::from_secs(60));
    h.client = new_client(&h.ca_pem);
    let (_, list) = h.call("GET", "/api/endpoints", Some(&admin), None).await;
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["production", "lab ✨"]);
    let (_, got) = h.call("GET", "/api/endpoints/1/access", Some(&admin), None).await;
    assert_eq!(got, expected);
    let (_, body) = h
        .call(
            "POST",
            "/api/endpoints",
            Some(&admin),
            Some(json!({"name": "four", "url": "https://h", "insecureSkipTlsVerify": true, "token": "t"})),
        )
        .await;
    assert_eq!(body, json!({"id": 4}));

    let bus = h.bus().await;
    let events = stream_events(&bus, "KUBEGATE_ENVIRONMENTS", 10).await;
    assert_eq!(events.iter().map(|e| e.position).collect::<Vec<_>>(), (1..=10).collect::<Vec<u64>>());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events/environments");
    for e in &events {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{}.v{}.json", e.event_type, e.version))).unwrap(),
        )
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let value: Value = serde_json::from_slice(&e.to_vec()).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|x| x.to_string()).collect();
        assert!(errors.is_empty(), "{} does not match its schema: {errors:?}", e.event_type);
        assert!(e.decode::<EnvironmentEvent>().is_ok());
        assert_eq!(e.actor, kubegate_events::Actor::User { id: 1, name: "admin".into() });
    }
}

/// A client certificate and key, as an operator would paste them.
fn client_certificate() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["kubegate-upstream".into()]).unwrap();
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

/// The lines of a PEM's base64 body: each is long enough to be recognised anywhere.
fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_string).collect()
}

#[tokio::test]
async fn credentials_never_exist_in_clear_in_the_log_the_bus_or_the_logs() {
    let h = Harness::start().await;
    let admin = h.admin().await;
    let token = "kg-test-secret-3f9a6c1e0b7d4a2f9e8c5b3a1d0f7e6c";
    let rotated = "kg-test-secret-rotated-77c1d2e3f4a5b6c7d8e9f0a1";
    let (cert, key) = client_certificate();
    let key_lines = pem_body_lines(&key);
    assert!(!key_lines.is_empty());

    let (s, body) = h
        .call(
            "POST",
            "/api/endpoints",
            Some(&admin),
            Some(json!({"name": "with-token", "url": "https://10.0.0.1:6443", "caCert": h.ca_pem, "token": token})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = h
        .call(
            "POST",
            "/api/endpoints",
            Some(&admin),
            Some(json!({"name": "with-cert", "url": "https://10.0.0.2:6443", "caCert": h.ca_pem, "clientCert": cert, "clientKey": key})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (_, one) = h.call("GET", "/api/endpoints/2", Some(&admin), None).await;
    assert_eq!(one["credential"], json!({"kind": "client-certificate"}));
    let (s, body) = h.call("PUT", "/api/endpoints/1", Some(&admin), Some(json!({"token": rotated}))).await;
    assert_eq!(s, 200, "{body}");
    // A refused credential is not echoed either.
    let (s, body) = h
        .call(
            "PUT",
            "/api/endpoints/1",
            Some(&admin),
            Some(json!({"clientCert": cert, "clientKey": "kg-not-a-key-9d8c"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(!body.to_string().contains("kg-not-a-key-9d8c"), "{body}");

    let secrets: Vec<&str> =
        [token, rotated].into_iter().chain(key_lines.iter().map(String::as_str)).collect();
    let rows = h.stored_rows().await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        for secret in &secrets {
            assert!(!row.contains(secret), "the event store holds a credential in clear: {row}");
        }
        assert!(row.contains("BEGIN AGE ENCRYPTED FILE"), "{row}");
    }
    let bus = h.bus().await;
    let messages = stream_messages(&bus, "KUBEGATE_ENVIRONMENTS", 3).await;
    assert_eq!(messages.len(), 3);
    for m in &messages {
        let text = String::from_utf8_lossy(m);
        for secret in &secrets {
            assert!(!text.contains(secret), "the bus carries a credential in clear: {text}");
        }
    }
    let logs = h.svc.logs();
    for secret in secrets.iter().chain([&"kg-not-a-key-9d8c"]) {
        assert!(!logs.contains(secret), "the service logged a credential");
    }

    // What was stored is the credential, sealed so the proxy fleet (and only it) opens it.
    let events: Vec<EnvironmentEvent> = messages
        .iter()
        .map(|m| {
            kubegate_events::RawEnvelope::from_slice(m).unwrap().decode::<EnvironmentEvent>().unwrap().event
        })
        .collect();
    let open = |sealed: &kubegate_events::environments::SealedCredential| {
        kubegate_seal::open(&h.fleet_secret, &SealedCredential::from_armored(sealed.0.clone()).unwrap())
            .unwrap()
    };
    let EnvironmentEvent::EnvironmentRegistered(first) = &events[0] else { panic!("{:?}", events[0]) };
    assert_eq!(open(&first.credential), UpstreamCredential::token(token).unwrap());
    let EnvironmentEvent::EnvironmentRegistered(second) = &events[1] else { panic!() };
    assert_eq!(
        open(&second.credential),
        UpstreamCredential::client_certificate(cert.clone(), key.clone()).unwrap()
    );
    let EnvironmentEvent::EnvironmentCredentialRotated(third) = &events[2] else { panic!() };
    assert_eq!(open(&third.credential), UpstreamCredential::token(rotated).unwrap());
    let (_, other_secret) = kubegate_seal::generate_fleet_key();
    let sealed = SealedCredential::from_armored(third.credential.0.clone()).unwrap();
    assert!(kubegate_seal::open(&other_secret, &sealed).is_err(), "another key cannot open it");
}
