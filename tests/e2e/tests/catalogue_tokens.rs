//! Security catalogue, "Tokens", end to end against the real proxy: every forged, confused,
//! oversized or malformed token is refused with 401 (431 for oversized headers, before any
//! signature work), nothing named in a token header is fetched, and revoking a token closes the
//! watch and exec sessions open with it within the revocation target (1 s).
//!
//! Forgeries that need a key the proxy trusts (duplicate claims, JSON serialization, `jku`
//! signed by a trusted key) use a test key injected as a `SigningKeyAdded` event into the
//! identity stream — the proxy trusts what that stream says, which is why the bus permissions
//! let only identity publish there (`bus_permissions.rs`). The injection comes last: it takes
//! positions identity will use next.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kubegate_e2e::wire::Raw;
use kubegate_e2e::*;
use kubegate_events::identity::{IdentityEvent, SigningKeyAdded};
use kubegate_events::{Actor, Envelope, SealedSecret};
use serde_json::{Value, json};
use sha2::Digest;

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

fn parts(token: &str) -> (String, String, Vec<u8>) {
    let mut it = token.split('.');
    let (h, p, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    (h.to_string(), p.to_string(), URL_SAFE_NO_PAD.decode(s).unwrap())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(data.iter().copied()).collect();
    let inner = sha2::Sha256::digest(&inner);
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
    sha2::Sha256::digest(&outer).to_vec()
}

/// A compact token with `header` and `payload` JSON text, signed by `key` over the exact bytes.
fn signed(key: &ed25519_dalek::SigningKey, header: &str, payload: &str) -> String {
    use ed25519_dalek::Signer;
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    format!("{input}.{}", b64(&key.sign(input.as_bytes()).to_bytes()))
}

async fn status(stack: &Stack, env: u64, token: &str) -> (u16, String) {
    let r = stack
        .client
        .get(stack.url(&format!("/api/endpoints/{env}/kubernetes/api/v1/namespaces/dev/pods")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

#[track_caller]
fn refused(got: (u16, String), what: &str) {
    assert_eq!(got.0, 401, "{what}: {}", got.1);
}

/// Publishes identity event `event` at `position` (what only identity may do on a real bus).
async fn inject(stack: &Stack, position: u64, event: IdentityEvent) {
    let bus = stack.bus().await;
    let subject = kubegate_events::envelope::subject_of::<IdentityEvent>(match &event {
        IdentityEvent::SigningKeyAdded(_) => "SigningKeyAdded",
        _ => unreachable!(),
    })
    .unwrap();
    let mut e = Envelope::new("signing-key-e2e", Actor::system("e2e"), "e2e", event);
    e.sequence = position;
    e.position = position;
    bus.publish_events(&[(subject, &e.to_raw().unwrap())]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_confused_and_oversized_tokens_are_refused_and_revocation_cuts_open_streams() {
    let stack =
        Stack::start(Options { proxies: 1, environments: 1, load_balancer: false, ..Options::default() })
            .await;
    let env = stack.register(0, "one").await;
    let tina = stack.create_user("tina", "tina-password", "user").await;
    stack
        .set_access(env, json!([{"userId": tina, "role": "standard", "namespaces": ["dev"]}]), json!([]))
        .await;
    let session = stack.session("tina", "tina-password").await;
    let kc = stack.kubeconfig_file(&session, &[env], "tina").await;
    stack.wait_environment_everywhere(&kc).await;
    let token = token_of(&kc);
    assert_eq!(status(&stack, env, &token).await.0, 200, "control: the real token works");

    // The identity stream tells the proxy's key; an attacker may know it too.
    let bus = stack.bus().await;
    let n = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
    let events = read_stream(&bus, "KUBEGATE_IDENTITY", n, Duration::from_secs(10)).await;
    let key_event = events.iter().find(|e| e.event_type == "SigningKeyAdded").unwrap();
    let key: Value = serde_json::from_str(key_event.payload.get()).unwrap();
    let kid = key["kid"].as_str().unwrap().to_string();
    let public = URL_SAFE_NO_PAD.decode(key["public_key"].as_str().unwrap()).unwrap();
    let (_, payload, signature) = parts(&token);

    // alg none in any spelling: 401.
    for alg in ["none", "noNE", "NONE", "None"] {
        let t = format!("{}.{payload}.", b64(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#).as_bytes()));
        refused(status(&stack, env, &t).await, alg);
        let t = format!(
            "{}.{payload}.{}",
            b64(format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#).as_bytes()),
            b64(&signature)
        );
        refused(status(&stack, env, &t).await, alg);
    }
    // HS256 keyed with the Ed25519 public key (raw bytes and its text): 401; only EdDSA.
    for secret in [public.clone(), b64(&public).into_bytes()] {
        let input = format!(
            "{}.{payload}",
            b64(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#).as_bytes())
        );
        let t = format!("{input}.{}", b64(&hmac_sha256(&secret, input.as_bytes())));
        refused(status(&stack, env, &t).await, "HS256 with the public key");
    }
    // kid: path traversal, SQL-ish text, 10 KB: exact-match lookup only, 401.
    for bad_kid in
        ["../../x".to_string(), format!("{kid}' OR '1'='1"), format!("../{kid}"), "k".repeat(10 * 1024)]
    {
        let header = json!({"alg": "EdDSA", "kid": bad_kid}).to_string();
        let t = format!("{}.{payload}.{}", b64(header.as_bytes()), b64(&signature));
        refused(status(&stack, env, &t).await, "odd kid");
    }
    // Non-canonical signature (S + L): rejected by strict verification.
    let mut s = [0u8; 32];
    s.copy_from_slice(&signature[32..]);
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L[i]) + carry;
        s[i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    let mut malleable = signature[..32].to_vec();
    malleable.extend_from_slice(&s);
    let (h, p, _) = parts(&token);
    refused(status(&stack, env, &format!("{h}.{p}.{}", b64(&malleable))).await, "S + L");

    // Scope confusion: a session token at the proxy, a kubeconfig token at the admin API.
    refused(status(&stack, env, &session).await, "session token at the proxy");
    let (code, body) = stack.api("GET", "/api/users", Some(&token), None).await;
    assert_eq!(code, 401, "kubeconfig token at the admin API: {body}");

    // 64 KB bearer token, 101 headers: 431 from the HTTP layer, before any token work.
    let mut raw = Raw::connect(stack.public_port, &stack.ca_pem, &[b"http/1.1"]).await;
    let big = "a".repeat(64 * 1024);
    raw.send(&wire::request("GET", &format!("/api/endpoints/{env}/kubernetes/version"), &big, &[]))
        .await
        .ok();
    let r = raw.response(Duration::from_secs(10)).await.expect("an answer to a 64 KB token");
    assert_eq!(r.status, 431, "{}", r.head);
    let mut raw = Raw::connect(stack.public_port, &stack.ca_pem, &[b"http/1.1"]).await;
    let many: Vec<String> = (0..101).map(|i| format!("X-Filler-{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    raw.send(&wire::request("GET", &format!("/api/endpoints/{env}/kubernetes/version"), &token, &many))
        .await
        .ok();
    let r = raw.response(Duration::from_secs(10)).await.expect("an answer to 101 headers");
    assert_eq!(r.status, 431, "{}", r.head);

    // Revoking a token closes the watch and the exec session open with it, within 1 s.
    let mut watch = Running::start(33, &kc, &["get", "pods", "-w", "-n", "dev"], &[]);
    watch.wait_line("api", Duration::from_secs(30)).await;
    let mut exec = Running::start(
        33,
        &kc,
        &["exec", "-n", "dev", "api", "--", "sh", "-c", "echo started; sleep 120"],
        &[],
    );
    exec.wait_line("started", Duration::from_secs(30)).await;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&payload).unwrap()).unwrap();
    let jti = claims["jti"].as_str().unwrap();
    let (code, body) =
        stack.api("DELETE", &format!("/api/kubeconfig-tokens/{jti}"), Some(&stack.admin), None).await;
    assert_eq!(code, 204, "{body}");
    let revoked = Instant::now();
    for (what, child) in [("watch", &mut watch.child), ("exec", &mut exec.child)] {
        let left = Duration::from_secs(1).saturating_sub(revoked.elapsed());
        let ended = tokio::time::timeout(left, child.wait()).await;
        assert!(ended.is_ok(), "the {what} stream was still open 1 s after its token was revoked");
    }
    refused(status(&stack, env, &token).await, "revoked");

    // From here on, forgeries with a key the proxy trusts (see the module comment).
    let n = bus.last_sequence("KUBEGATE_IDENTITY").await.unwrap();
    let events = read_stream(&bus, "KUBEGATE_IDENTITY", n, Duration::from_secs(10)).await;
    let next = events.iter().map(|e| e.position).max().unwrap() + 1;
    let test_key = kubegate_token::SigningKey::from_seed("e2e-trusted", &[9u8; 32]).unwrap();
    inject(
        &stack,
        next,
        IdentityEvent::SigningKeyAdded(SigningKeyAdded {
            kid: "e2e-trusted".into(),
            public_key: test_key.public_key(),
            private_key: SealedSecret("not-needed".into()),
        }),
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({"sub": tina.to_string(), "name": "tina", "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now - 5, "exp": now + 600, "scope": "kubeconfig"});
    let dalek = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let good_header = r#"{"alg":"EdDSA","typ":"JWT","kid":"e2e-trusted"}"#;
    let control = signed(&dalek, good_header, &claims.to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&stack, env, &control).await.0 != 200 {
        assert!(Instant::now() < deadline, "the injected key never became trusted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // jku / x5u / jwk: ignored, nothing fetched. A trusted signature still counts; a key in
    // the header never does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lport = listener.local_addr().unwrap().port();
    let fetched = Arc::new(AtomicUsize::new(0));
    let counter = fetched.clone();
    let accept = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[66u8; 32]);
    let attacker_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(attacker.verifying_key().as_bytes())});
    for field in [
        json!({"jku": format!("https://127.0.0.1:{lport}/jwks")}),
        json!({"x5u": format!("https://127.0.0.1:{lport}/x5u")}),
    ] {
        let mut header = json!({"alg": "EdDSA", "typ": "JWT", "kid": "e2e-trusted"});
        header.as_object_mut().unwrap().extend(field.as_object().unwrap().clone());
        let t = signed(&dalek, &header.to_string(), &claims.to_string());
        assert_eq!(
            status(&stack, env, &t).await.0,
            200,
            "a trusted signature with {field} (the field is ignored)"
        );
        let t = signed(&attacker, &header.to_string(), &claims.to_string());
        refused(status(&stack, env, &t).await, "attacker key behind jku/x5u");
    }
    for kid in ["e2e-trusted", "attacker"] {
        let header = json!({"alg": "EdDSA", "kid": kid, "jwk": attacker_jwk});
        refused(
            status(&stack, env, &signed(&attacker, &header.to_string(), &claims.to_string())).await,
            "jwk",
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fetched.load(Ordering::SeqCst), 0, "the proxy fetched a URL named in a token header");
    accept.abort();

    // Duplicate claims in the payload, and the JSON (non-compact) serialization: 401 even with
    // a trusted signature.
    let dup = format!(
        r#"{{"sub":"{tina}","name":"tina","jti":"{}","iat":{},"exp":{},"scope":"session","scope":"kubeconfig"}}"#,
        uuid::Uuid::new_v4(),
        now - 5,
        now + 600
    );
    refused(status(&stack, env, &signed(&dalek, good_header, &dup)).await, "duplicate claims");
    let dup_sub = format!(
        r#"{{"sub":"1","sub":"{tina}","name":"tina","jti":"{}","iat":{},"exp":{},"scope":"kubeconfig"}}"#,
        uuid::Uuid::new_v4(),
        now - 5,
        now + 600
    );
    refused(status(&stack, env, &signed(&dalek, good_header, &dup_sub)).await, "duplicate sub");
    let dup_header = r#"{"alg":"EdDSA","kid":"e2e-trusted","kid":"other"}"#;
    refused(
        status(&stack, env, &signed(&dalek, dup_header, &claims.to_string())).await,
        "duplicate header field",
    );
    let (h, p, s) = parts(&control);
    let json_serialization = json!({"protected": h, "payload": p, "signature": b64(&s)}).to_string();
    refused(status(&stack, env, &json_serialization).await, "JSON serialization");
    let flattened = json!({"payload": p, "signatures": [{"protected": h, "signature": b64(&s)}]}).to_string();
    refused(status(&stack, env, &flattened).await, "general JSON serialization");

    // A low-order Ed25519 key: the proxy refuses to load it, so a signature that any message
    // satisfies under it (R = identity, S = 0) gets 401.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    inject(
        &stack,
        next + 1,
        IdentityEvent::SigningKeyAdded(SigningKeyAdded {
            kid: "e2e-weak".into(),
            public_key: b64(&identity_point),
            private_key: SealedSecret("not-needed".into()),
        }),
    )
    .await;
    let header = r#"{"alg":"EdDSA","typ":"JWT","kid":"e2e-weak"}"#;
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.to_string().as_bytes()));
    let mut sig = identity_point.to_vec();
    sig.extend_from_slice(&[0u8; 32]);
    let weak = format!("{input}.{}", b64(&sig));
    // The key event is applied (a later trusted-key token still works) yet the weak one fails.
    let after = json!({"sub": tina.to_string(), "name": "tina", "jti": uuid::Uuid::new_v4().to_string(),
        "iat": now - 4, "exp": now + 600, "scope": "kubeconfig"});
    assert_eq!(status(&stack, env, &signed(&dalek, good_header, &after.to_string())).await.0, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        refused(status(&stack, env, &weak).await, "low-order key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
