#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const NOW: i64 = 1_800_000_000;

fn claims(scope: Scope, exp: Option<i64>) -> Claims {
    Claims { sub: "7".into(), name: "alice".into(), jti: "0193a6f2-tok".into(), iat: NOW - 10, exp, scope }
}

fn setup() -> (SigningKey, KeySet) {
    let key = SigningKey::from_seed("k1", &[7u8; 32]).unwrap();
    let mut keys = KeySet::new();
    keys.insert(key.kid(), &key.public_key()).unwrap();
    (key, keys)
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token with arbitrary header and payload JSON, signed by `key` over the exact bytes.
fn forge(key: &ed25519_dalek::SigningKey, header: &str, payload: &str) -> String {
    use ed25519_dalek::Signer;
    let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig.to_bytes()))
}

fn our_dalek_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
}

#[test]
fn mint_and_verify_round_trip() {
    let (key, keys) = setup();
    let c = claims(Scope::Kubeconfig, Some(NOW + 60));
    let token = key.mint(&c).unwrap();
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW).unwrap(), c);
    let never = claims(Scope::Kubeconfig, None);
    let token = key.mint(&never).unwrap();
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW + 10 * 365 * 86400).unwrap(), never);
    // The header is exactly what the contract says.
    let header = peek_header(&token).unwrap();
    assert_eq!(header.alg, "EdDSA");
    assert_eq!(header.kid.as_deref(), Some("k1"));
}

#[test]
fn minted_tokens_are_the_bytes_jsonwebtoken_encodes() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    // Ed25519 signatures are deterministic, so the whole token can be compared.
    let (key, _) = setup();
    let der = our_dalek_key().to_pkcs8_der().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    header.typ = Some("JWT".into());
    for c in [
        claims(Scope::Kubeconfig, Some(NOW + 60)),
        claims(Scope::Session, None),
        Claims { name: "o'brien \"ü\" \u{1}".into(), ..claims(Scope::Kubeconfig, None) },
    ] {
        let expected = jsonwebtoken::encode(&header, &c, &encoding).unwrap();
        assert_eq!(key.mint(&c).unwrap(), expected);
    }
}

#[test]
fn expired_is_refused() {
    let (key, keys) = setup();
    let token = key.mint(&claims(Scope::Kubeconfig, Some(NOW))).unwrap();
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::Expired));
    assert!(keys.verify(&token, Scope::Kubeconfig, NOW - 1).is_ok());
}

#[test]
fn scope_confusion_is_refused() {
    let (key, keys) = setup();
    let session = key.mint(&claims(Scope::Session, Some(NOW + 60))).unwrap();
    assert_eq!(
        keys.verify(&session, Scope::Kubeconfig, NOW),
        Err(TokenError::WrongScope { expected: "kubeconfig", found: "session" })
    );
    let kc = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    assert!(matches!(keys.verify(&kc, Scope::Session, NOW), Err(TokenError::WrongScope { .. })));
    // The header's `typ` decides nothing: whatever it says (or when it is absent), a session
    // token signed by our own key is still a session token.
    let payload = serde_json::to_string(&claims(Scope::Session, Some(NOW + 60))).unwrap();
    for typ in [r#","typ":"JWT""#, r#","typ":"kubeconfig""#, r#","typ":"at+jwt""#, r#","typ":"""#, ""] {
        let header = format!(r#"{{"alg":"EdDSA","kid":"k1"{typ}}}"#);
        let token = forge(&our_dalek_key(), &header, &payload);
        assert_eq!(
            keys.verify(&token, Scope::Kubeconfig, NOW),
            Err(TokenError::WrongScope { expected: "kubeconfig", found: "session" }),
            "typ {typ:?}"
        );
        assert!(keys.verify(&token, Scope::Session, NOW).is_ok(), "typ {typ:?}: a genuine session token");
    }
}

#[test]
fn alg_none_in_any_case_is_refused() {
    let (_, keys) = setup();
    let payload = serde_json::to_string(&claims(Scope::Kubeconfig, None)).unwrap();
    for alg in ["none", "noNE", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(format!(r#"{{"alg":"{alg}","kid":"k1"}}"#).as_bytes()),
            b64(payload.as_bytes())
        );
        assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::AlgNone), "{alg}");
    }
}

#[test]
fn hs256_with_public_key_as_secret_is_refused() {
    use jsonwebtoken::{EncodingKey, Header};
    let (key, keys) = setup();
    let public_raw = URL_SAFE_NO_PAD.decode(key.public_key()).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims(Scope::Kubeconfig, None),
        &EncodingKey::from_secret(&public_raw).unwrap(),
    )
    .unwrap();
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::AlgNotAllowed("HS256".into())));
    let payload = serde_json::to_string(&claims(Scope::Kubeconfig, None)).unwrap();
    for alg in ["RS256", "ES256", "PS256", "HS512", "eddsa", "Ed25519"] {
        let token = forge(&our_dalek_key(), &format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), &payload);
        assert!(
            matches!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::AlgNotAllowed(_))),
            "{alg}"
        );
    }
}

#[test]
fn hostile_kids_are_exact_match_only() {
    let (_, keys) = setup();
    let payload = serde_json::to_string(&claims(Scope::Kubeconfig, None)).unwrap();
    for kid in ["../../x", "k1' OR '1'='1", "K1", "k1 ", "k1\u{0}", ""] {
        let header = serde_json::json!({"alg": "EdDSA", "kid": kid}).to_string();
        let token = forge(&our_dalek_key(), &header, &payload);
        assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::UnknownKid), "{kid:?}");
    }
    let long_kid = "a".repeat(10 * 1024);
    let header = serde_json::json!({"alg": "EdDSA", "kid": long_kid}).to_string();
    let token = forge(&our_dalek_key(), &header, &payload);
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::Oversized));
    let header = r#"{"alg":"EdDSA"}"#;
    let token = forge(&our_dalek_key(), header, &payload);
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::MissingKid));
}

#[test]
fn embedded_key_headers_are_ignored() {
    // The attacker signs with their own key and points at it with jwk/jku/x5u; we only ever use
    // the key registered under the kid, so the signature fails.
    let (_, keys) = setup();
    let attacker = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let attacker_pub = b64(attacker.verifying_key().as_bytes());
    let payload = serde_json::to_string(&claims(Scope::Kubeconfig, None)).unwrap();
    let header = serde_json::json!({
        "alg": "EdDSA", "kid": "k1",
        "jwk": {"kty": "OKP", "crv": "Ed25519", "x": attacker_pub},
        "jku": "https://127.0.0.1:1/keys", "x5u": "https://127.0.0.1:1/cert"
    })
    .to_string();
    let token = forge(&attacker, &header, &payload);
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
    // The same headers on a token we signed are simply ignored.
    let token = forge(&our_dalek_key(), &header, &payload);
    assert!(keys.verify(&token, Scope::Kubeconfig, NOW).is_ok());
}

#[test]
fn tampered_payload_and_signature_are_refused() {
    let (key, keys) = setup();
    let token = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut c = claims(Scope::Kubeconfig, Some(NOW + 60));
    c.sub = "1".into();
    parts[1] = b64(serde_json::to_string(&c).unwrap().as_bytes());
    assert_eq!(keys.verify(&parts.join("."), Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
    let token2 = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    let (rest, _) = token2.rsplit_once('.').unwrap();
    assert_eq!(keys.verify(&format!("{rest}.AAAA"), Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
    assert_eq!(keys.verify(&format!("{rest}."), Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
}

#[test]
fn non_canonical_signature_is_refused() {
    // S + L (the group order) verifies under lax rules on some implementations; strict refuses.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let (key, keys) = setup();
    let token = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    let forged = format!("{rest}.{}", b64(&sig));
    assert_eq!(keys.verify(&forged, Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
}

#[test]
fn small_order_public_key_is_refused() {
    // The identity point (encoded as 1 followed by zeros) has order 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut keys = KeySet::new();
    assert!(matches!(keys.insert("weak", &b64(&identity)), Err(KeyError::WeakKey)));
    assert!(matches!(keys.insert("short", &b64(&[1u8; 31])), Err(KeyError::BadLength(31))));
    assert!(matches!(keys.insert("../x", &b64(&[1u8; 32])), Err(KeyError::BadKid)));
}

#[test]
fn oversized_and_malformed_inputs_are_refused_cheaply() {
    let (_, keys) = setup();
    let huge = "a".repeat(64 * 1024);
    assert_eq!(keys.verify(&huge, Scope::Kubeconfig, NOW), Err(TokenError::Oversized));
    for bad in ["", "a", "a.b", "a.b.c.d", "..", "!!.!!.!!", "eyJhbGciOiJFZERTQSJ9..sig"] {
        assert!(matches!(keys.verify(bad, Scope::Kubeconfig, NOW), Err(TokenError::Malformed(_))), "{bad:?}");
    }
    let json_serialization =
        r#"{"payload":"e30","signatures":[{"protected":"eyJhbGciOiJFZERTQSJ9","signature":"AA"}]}"#;
    assert!(matches!(keys.verify(json_serialization, Scope::Kubeconfig, NOW), Err(TokenError::Malformed(_))));
}

#[test]
fn duplicate_claims_are_refused() {
    let (_, keys) = setup();
    let header = r#"{"alg":"EdDSA","kid":"k1"}"#;
    let payload = r#"{"sub":"7","name":"alice","jti":"j","iat":1,"scope":"kubeconfig","scope":"session"}"#;
    let token = forge(&our_dalek_key(), header, payload);
    assert!(matches!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::Malformed(_))));
    let payload = r#"{"sub":"7","sub":"1","name":"alice","jti":"j","iat":1,"scope":"kubeconfig"}"#;
    let token = forge(&our_dalek_key(), header, payload);
    assert!(matches!(keys.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::Malformed(_))));
}

#[test]
fn errors_and_debug_never_show_secrets() {
    let (key, keys) = setup();
    let token = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    let dbg = format!("{key:?} {keys:?}");
    assert!(!dbg.contains(&b64(&[7u8; 32])));
    let err = keys.verify(&format!("{token}x"), Scope::Kubeconfig, NOW).unwrap_err();
    assert!(!err.to_string().contains(&token));
}

#[test]
fn a_remembered_signature_still_answers_to_expiry_scope_and_the_key() {
    let (key, keys) = setup();
    let token = key.mint(&claims(Scope::Kubeconfig, Some(NOW + 60))).unwrap();
    assert!(keys.verify(&token, Scope::Kubeconfig, NOW).is_ok());
    // Remembered from here on: expiry and scope are still checked on every use.
    assert!(keys.verify(&token, Scope::Kubeconfig, NOW).is_ok());
    assert_eq!(keys.verify(&token, Scope::Kubeconfig, NOW + 61), Err(TokenError::Expired));
    assert!(matches!(keys.verify(&token, Scope::Session, NOW), Err(TokenError::WrongScope { .. })));
    // A clone shares what was remembered, and a key set without the key refuses the token.
    let mut retired = keys.clone();
    retired.remove("k1");
    assert_eq!(retired.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::UnknownKid));
    // Another key under the same kid: the remembered check was made with the old one.
    let other = SigningKey::from_seed("k1", &[9u8; 32]).unwrap();
    let mut replaced = keys.clone();
    replaced.insert("k1", &other.public_key()).unwrap();
    assert_eq!(replaced.verify(&token, Scope::Kubeconfig, NOW), Err(TokenError::BadSignature));
    assert!(keys.verify(&token, Scope::Kubeconfig, NOW).is_ok());
}
