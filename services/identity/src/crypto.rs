//! Identity's secrets at rest: argon2id password hashes and Ed25519 key seeds, both sealed with
//! the master key (XChaCha20-Poly1305) before they enter an event, so neither the log nor the bus
//! ever holds them readable.

use std::fmt;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kubegate_events::SealedSecret;
use zeroize::Zeroizing;

/// What a sealed value is for; bound into the ciphertext so one cannot stand in for another.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    PasswordHash,
    SigningKey,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::PasswordHash => b"kubegate:password-hash:v1",
            Purpose::SigningKey => b"kubegate:signing-key:v1",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("a sealed secret cannot be opened with this master key")]
    CannotOpen,
    #[error("cannot hash password")]
    Hash,
    #[error("no system randomness available")]
    Random,
}

/// The 32-byte key that seals identity's secrets. `Debug` prints nothing of it.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl MasterKey {
    /// From base64 (standard or URL-safe, padded or not) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .or_else(|_| URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| CryptoError::BadMasterKey)?,
        );
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(MasterKey(Zeroizing::new(key)))
    }

    /// A fresh random key, base64-encoded (for `make up` and tests).
    pub fn generate_base64() -> Result<String, CryptoError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|_| CryptoError::Random)?;
        Ok(STANDARD.encode(key.as_ref()))
    }

    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Result<SealedSecret, CryptoError> {
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|_| CryptoError::Random)?;
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: purpose.aad() })
            .map_err(|_| CryptoError::Hash)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(SealedSecret(format!("v1:{}", STANDARD.encode(out))))
    }

    pub fn open(&self, purpose: Purpose, sealed: &SealedSecret) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let body = sealed.0.strip_prefix("v1:").ok_or(CryptoError::CannotOpen)?;
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::CannotOpen)?;
        if raw.len() < 24 + 16 {
            return Err(CryptoError::CannotOpen);
        }
        let (nonce, ct) = raw.split_at(24);
        let cipher = XChaCha20Poly1305::new(self.0.as_ref().into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: purpose.aad() })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::CannotOpen)
    }
}

/// argon2id with the crate's recommended parameters; the PHC string.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
    let hash: PasswordHash = Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::Hash)?;
    Ok(hash.to_string())
}

/// Checks `password` against a PHC string in constant time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(password.as_bytes(), &hash).is_ok(),
        Err(_) => false,
    }
}

/// Hashes and seals a password for an event.
pub fn seal_password(master: &MasterKey, password: &str) -> Result<SealedSecret, CryptoError> {
    let phc = Zeroizing::new(hash_password(password)?);
    master.seal(Purpose::PasswordHash, phc.as_bytes())
}

/// Opens a sealed hash and checks `password` against it.
pub fn check_sealed_password(
    master: &MasterKey,
    sealed: &SealedSecret,
    password: &str,
) -> Result<bool, CryptoError> {
    let phc = master.open(Purpose::PasswordHash, sealed)?;
    let phc = std::str::from_utf8(&phc).map_err(|_| CryptoError::CannotOpen)?;
    Ok(verify_password(password, phc))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open_and_purpose_binding() {
        let key = MasterKey::parse(&MasterKey::generate_base64().unwrap()).unwrap();
        let sealed = key.seal(Purpose::SigningKey, b"seed").unwrap();
        assert_eq!(key.open(Purpose::SigningKey, &sealed).unwrap().as_slice(), b"seed");
        assert!(
            key.open(Purpose::PasswordHash, &sealed).is_err(),
            "a key seed cannot pass for a password hash"
        );
        let other = MasterKey::parse(&MasterKey::generate_base64().unwrap()).unwrap();
        assert!(other.open(Purpose::SigningKey, &sealed).is_err());
        assert!(!format!("{key:?}").contains(&MasterKey::generate_base64().unwrap()[..8]));
    }

    #[test]
    fn passwords_verify_through_the_seal() {
        let key = MasterKey::parse(&MasterKey::generate_base64().unwrap()).unwrap();
        let sealed = seal_password(&key, "correct horse").unwrap();
        assert!(!sealed.0.contains("argon2"), "the hash itself is not visible");
        assert!(check_sealed_password(&key, &sealed, "correct horse").unwrap());
        assert!(!check_sealed_password(&key, &sealed, "wrong horse").unwrap());
    }

    #[test]
    fn bad_master_keys_are_refused() {
        for bad in ["", "short", "!!!!", &STANDARD.encode([0u8; 31])] {
            assert!(MasterKey::parse(bad).is_err());
        }
        assert!(MasterKey::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).is_ok());
    }
}
