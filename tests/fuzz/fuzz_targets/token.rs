//! The token verifier on any bytes: never panics, and accepts only what the key signed — a
//! compact EdDSA token with the expected kid and scope, unexpired.
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use kubegate_token::{KeySet, Scope, SigningKey};
use libfuzzer_sys::fuzz_target;

/// The seeds' fixed clock (2026-01-01) and key.
const NOW: i64 = 1_767_225_600;
const KID: &str = "fuzz-1";
const SEED: [u8; 32] = [7; 32];

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = SigningKey::from_seed(KID, &SEED).expect("seed key");
        let mut keys = KeySet::new();
        keys.insert(KID, &key.public_key()).expect("public key");
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    for scope in [Scope::Kubeconfig, Scope::Session] {
        let Ok(claims) = keys().verify(token, scope, NOW) else { continue };
        assert_eq!(claims.scope, scope, "wrong scope accepted");
        assert!(claims.exp.is_none_or(|exp| exp > NOW), "expired token accepted");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "non-compact token accepted");
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[0]).expect("header");
        let header: serde_json::Value = serde_json::from_slice(&header).expect("header JSON");
        assert_eq!(header["alg"], "EdDSA", "accepted {header}");
        assert_eq!(header["kid"], KID, "accepted {header}");
    }
});
