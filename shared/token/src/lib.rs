//! kubegate's tokens: compact JWS with `alg: EdDSA` and a `kid`, minted by identity with a private
//! key and verified anywhere with public keys only.
//!
//! Verification is deliberately narrow (RFC 8725): the header's `alg` must be exactly `EdDSA`, the
//! `kid` must match a known key exactly, `jku`/`x5u`/`jwk` are never followed, the signature is
//! checked with strict Ed25519 rules (canonical encodings, no small-order points), the claims are
//! parsed strictly (a duplicate claim is an error), and the scope must be the one the caller
//! expects. Each refusal is its own [`TokenError`] variant so callers can say why.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Longest token accepted: anything larger is refused before any decoding or signature work.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest `kid` accepted.
pub const MAX_KID_LEN: usize = 64;

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Put into a downloaded kubeconfig; accepted only by the proxy path.
    Kubeconfig,
    /// Issued at sign-in; accepted only by the REST API.
    Session,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Kubeconfig => "kubeconfig",
            Scope::Session => "session",
        }
    }
}

/// The claims every kubegate token carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id, as a decimal string.
    pub sub: String,
    /// The user's name at the time of issue.
    pub name: String,
    /// Unique token id; the handle for revocation.
    pub jti: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch; absent only for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub scope: Scope,
}

impl Claims {
    /// The numeric user id in `sub`.
    pub fn user_id(&self) -> Result<u64, TokenError> {
        self.sub.parse().map_err(|_| TokenError::Malformed("sub is not a user id"))
    }
}

/// Why a token was refused. Messages never contain the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than {MAX_TOKEN_LEN} bytes")]
    Oversized,
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token uses alg \"none\"")]
    AlgNone,
    #[error("token algorithm {0:?} is not allowed (only EdDSA)")]
    AlgNotAllowed(String),
    #[error("token has no key id")]
    MissingKid,
    #[error("token was signed by an unknown key")]
    UnknownKid,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token scope is {found}, expected {expected}")]
    WrongScope { expected: &'static str, found: &'static str },
}

/// Errors about keys (not about presented tokens).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("public key must be 32 bytes of base64url, got {0} bytes")]
    BadLength(usize),
    #[error("public key is not valid base64url")]
    BadEncoding,
    #[error("public key is not a valid Ed25519 point")]
    InvalidPoint,
    #[error("public key has small order and is refused")]
    WeakKey,
    #[error("key id must be 1..={MAX_KID_LEN} characters of [A-Za-z0-9._-]")]
    BadKid,
    #[error("cannot create key: {0}")]
    Crypto(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A private signing key with its id. Its `Debug` shows only the kid.
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate(kid: impl Into<String>) -> Result<SigningKey, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Crypto(e.to_string()))?;
        Self::from_seed(kid, &seed)
    }

    /// Rebuilds a key from its 32-byte seed (as stored, encrypted, by identity).
    pub fn from_seed(kid: impl Into<String>, seed: &[u8; 32]) -> Result<SigningKey, KeyError> {
        let kid = kid.into();
        if !valid_kid(&kid) {
            return Err(KeyError::BadKid);
        }
        ensure_provider();
        let key = ed25519_dalek::SigningKey::from_bytes(seed);
        Ok(SigningKey { kid, key })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The 32-byte seed; secret. Callers encrypt it before storing.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public key as base64url (32 raw bytes), the form published in events.
    pub fn public_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key.verifying_key().as_bytes())
    }

    /// Signs `claims` into a compact JWS: the same bytes as `jsonwebtoken::encode` (a test
    /// compares them), signed with the key held here. `encode` takes the key in its PKCS#8 form
    /// and builds the Ed25519 key from it for every token, deriving the public key again: a
    /// second scalar multiplication per token, as much work as the signature itself.
    pub fn mint(&self, claims: &Claims) -> Result<String, KeyError> {
        use ed25519_dalek::Signer as _;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_string());
        let json = |e: serde_json::Error| KeyError::Sign(e.to_string());
        let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(json)?);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims).map_err(json)?, &mut token);
        let signature = self.key.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut token);
        Ok(token)
    }
}

/// Public keys by kid: all a verifier needs.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (DecodingKey, [u8; 32])>,
    verified: Verified,
}

/// Tokens whose signature a key set has checked, by SHA-256 of the token, with the key that
/// checked each. An Ed25519 verification costs tens of µs, and a token comes back with every
/// request its holder makes. An entry counts only while the key set holds that same key under
/// that kid (a retired key's tokens are checked again, and refused); expiry and scope are the
/// caller's to check on every use. Clones of a key set share the entries, which holds for that
/// reason. Bounded, so garbage tokens cannot grow it (and only tokens that pass are kept).
#[derive(Clone)]
struct Verified(moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>);

/// A token whose signature a [`KeySet`] checked: what never changes about it.
#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Arc<Claims>,
    /// The key that checked it.
    pub kid: Arc<str>,
    key: [u8; 32],
}

/// Most verified tokens remembered (about 300 bytes each).
const VERIFIED_CAPACITY: u64 = 100_000;

impl Default for Verified {
    fn default() -> Verified {
        Verified(moka::sync::Cache::new(VERIFIED_CAPACITY))
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    pub fn new() -> KeySet {
        ensure_provider();
        KeySet::default()
    }

    /// Adds a public key given as base64url of its 32 bytes. Small-order keys are refused.
    pub fn insert(&mut self, kid: &str, public_key_b64: &str) -> Result<(), KeyError> {
        ensure_provider();
        if !valid_kid(kid) {
            return Err(KeyError::BadKid);
        }
        let raw = URL_SAFE_NO_PAD.decode(public_key_b64).map_err(|_| KeyError::BadEncoding)?;
        let raw: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::BadLength(raw.len()))?;
        let vk = VerifyingKey::from_bytes(&raw).map_err(|_| KeyError::InvalidPoint)?;
        if vk.is_weak() {
            return Err(KeyError::WeakKey);
        }
        self.keys.insert(kid.to_string(), (DecodingKey::from_ed_der(&raw), raw));
        Ok(())
    }

    pub fn remove(&mut self, kid: &str) {
        self.keys.remove(kid);
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Every key as (kid, base64url of its 32 bytes), as [`KeySet::insert`] takes them; by kid.
    pub fn public_keys(&self) -> Vec<(String, String)> {
        let mut keys: Vec<_> =
            self.keys.iter().map(|(kid, (_, raw))| (kid.clone(), URL_SAFE_NO_PAD.encode(raw))).collect();
        keys.sort();
        keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies signature, algorithm, key id, expiry (against `now`, seconds since the epoch) and
    /// scope. A token whose signature this key set (or a clone) already checked with the same key
    /// is not checked again (see [`Verified`]). Revocation is the caller's business.
    pub fn verify(&self, token: &str, expected: Scope, now: i64) -> Result<Claims, TokenError> {
        let verified = self.verify_signature(token)?;
        check_claims(&verified.claims, expected, now)?;
        Ok((*verified.claims).clone())
    }

    /// Verifies everything that never changes for a given token (format, algorithm, key,
    /// signature), returning its claims and key: the part worth caching, and remembered here
    /// (see [`Verified`]). Expiry and scope are then checked with [`check_claims`] on every use.
    pub fn verify_signature(&self, token: &str) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Oversized);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.verified.0.get(&digest)
            && self.keys.get(&*hit.kid).is_some_and(|(_, key)| *key == hit.key)
        {
            return Ok(hit);
        }
        let header = peek_header(token)?;
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        if kid.len() > MAX_KID_LEN {
            return Err(TokenError::UnknownKid);
        }
        let (decoding, key) = self.keys.get(&kid).ok_or(TokenError::UnknownKid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token, decoding, &validation).map_err(map_jwt_error)?;
        let verified = Arc::new(VerifiedToken { claims: Arc::new(data.claims), kid: kid.into(), key: *key });
        self.verified.0.insert(digest, verified.clone());
        Ok(verified)
    }
}

/// The `kid` a token's header names, without checking anything else (to explain a refusal).
pub fn token_kid(token: &str) -> Option<String> {
    peek_header(token).ok()?.kid
}

/// The time- and purpose-dependent checks, cheap enough for every request.
pub fn check_claims(claims: &Claims, expected: Scope, now: i64) -> Result<(), TokenError> {
    if let Some(exp) = claims.exp
        && now >= exp
    {
        return Err(TokenError::Expired);
    }
    if claims.scope != expected {
        return Err(TokenError::WrongScope { expected: expected.as_str(), found: claims.scope.as_str() });
    }
    Ok(())
}

#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Reads the header's `alg` and `kid` without trusting anything else, so each refusal gets its
/// own error before any signature work.
fn peek_header(token: &str) -> Result<PeekHeader, TokenError> {
    let bytes = token.as_bytes();
    if bytes.first() == Some(&b'{') {
        return Err(TokenError::Malformed("JSON serialization is not accepted"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    if h.is_empty() || p.is_empty() {
        return Err(TokenError::Malformed("empty header or payload"));
    }
    let raw = URL_SAFE_NO_PAD.decode(h).map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: PeekHeader = serde_json::from_slice(&raw)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with alg"))?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    if header.alg != "EdDSA" {
        return Err(TokenError::AlgNotAllowed(header.alg.chars().take(16).collect()));
    }
    if s.is_empty() {
        return Err(TokenError::BadSignature);
    }
    Ok(header)
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature | K::InvalidEddsaKey | K::Signing(_) => TokenError::BadSignature,
        K::InvalidAlgorithm | K::InvalidAlgorithmName => TokenError::AlgNotAllowed("EdDSA mismatch".into()),
        K::ExpiredSignature => TokenError::Expired,
        K::Json(_) | K::Utf8(_) => TokenError::Malformed("claims are not the expected JSON object"),
        K::Base64(_) => TokenError::Malformed("not base64url"),
        _ => TokenError::Malformed("rejected by JWT validation"),
    }
}

/// jsonwebtoken's EdDSA verifier with strict Ed25519 verification: non-canonical signatures and
/// small-order points are refused (RFC 8032 allows implementations to accept them; we do not).
struct StrictEdDsaVerifier(VerifyingKey);

impl jsonwebtoken::signature::Verifier<Vec<u8>> for StrictEdDsaVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), jsonwebtoken::signature::Error> {
        let sig = Signature::from_slice(signature).map_err(|_| jsonwebtoken::signature::Error::new())?;
        self.0.verify_strict(msg, &sig).map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for StrictEdDsaVerifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

fn strict_verifier(alg: &Algorithm, key: &DecodingKey) -> jsonwebtoken::errors::Result<Box<dyn JwtVerifier>> {
    use jsonwebtoken::errors::ErrorKind;
    if *alg != Algorithm::EdDSA {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    let bytes = key.try_get_as_bytes()?;
    let raw: &[u8; 32] = bytes.get(..32).and_then(|b| b.try_into().ok()).ok_or(ErrorKind::InvalidEddsaKey)?;
    let vk = VerifyingKey::from_bytes(raw).map_err(|_| ErrorKind::InvalidEddsaKey)?;
    Ok(Box::new(StrictEdDsaVerifier(vk)))
}

/// Installs (once per process) jsonwebtoken's RustCrypto provider with the strict EdDSA verifier.
fn ensure_provider() {
    static PROVIDER: OnceLock<CryptoProvider> = OnceLock::new();
    let provider = PROVIDER.get_or_init(|| {
        let base = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        CryptoProvider {
            signer_factory: base.signer_factory,
            verifier_factory: strict_verifier,
            key_utils: base.key_utils.clone(),
        }
    });
    // Err means a provider is already installed: ours, by an earlier call.
    let _ = provider.install_default();
}

#[cfg(test)]
mod tests;
