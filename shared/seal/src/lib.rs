//! Upstream cluster credentials sealed (age, X25519) to the proxy fleet's public key, so only proxies can read them.

use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Largest sealed credential [`open`] reads: certificate chains are a few kB, so anything near
/// this is not one of ours.
pub const MAX_SEALED_LEN: usize = 1024 * 1024;

const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
const SECRET_KEY_PREFIX: &str = "AGE-SECRET-KEY-1";
const PUBLIC_KEY_PREFIX: &str = "age1";

/// A secret text: `Debug` and `Display` print `[redacted]`, and the memory is wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

// Only deserialization: a secret is never written out by serde, only sealed.
impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// The fleet's public key (`age1…`): what the kubeconfig service seals to. Not secret.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetPublicKey(age::x25519::Recipient);

impl FleetPublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.to_ascii_uppercase().starts_with(SECRET_KEY_PREFIX) {
            return Err(KeyError::SecretKeyGivenAsPublic);
        }
        if !text.starts_with(PUBLIC_KEY_PREFIX) {
            return Err(KeyError::InvalidPublicKey { reason: "it does not start with \"age1\"" });
        }
        age::x25519::Recipient::from_str(text)
            .map(Self)
            .map_err(|reason| KeyError::InvalidPublicKey { reason })
    }
}

impl fmt::Display for FleetPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for FleetPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FleetPublicKey({})", self.0)
    }
}

impl FromStr for FleetPublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for FleetPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FleetPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The fleet's secret key (`AGE-SECRET-KEY-1…`), held by proxies only. Never printed; the
/// underlying key is wiped on drop.
#[derive(Clone)]
pub struct FleetSecretKey(age::x25519::Identity);

impl FleetSecretKey {
    /// Parses the key alone; surrounding whitespace (a key file's final newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.starts_with(PUBLIC_KEY_PREFIX) {
            return Err(KeyError::PublicKeyGivenAsSecret);
        }
        if !text.to_ascii_uppercase().starts_with(SECRET_KEY_PREFIX) {
            return Err(KeyError::InvalidSecretKey { reason: "it does not start with \"AGE-SECRET-KEY-1\"" });
        }
        age::x25519::Identity::from_str(text)
            .map(Self)
            .map_err(|reason| KeyError::InvalidSecretKey { reason })
    }

    pub fn public_key(&self) -> FleetPublicKey {
        FleetPublicKey(self.0.to_public())
    }

    /// The `AGE-SECRET-KEY-1…` text, to store the key where proxies load it from.
    pub fn to_secret_string(&self) -> SecretString {
        SecretString::new(self.0.to_string().expose_secret())
    }
}

impl fmt::Debug for FleetSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetSecretKey([redacted])")
    }
}

impl FromStr for FleetSecretKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// A new fleet key pair from the operating system's random source.
pub fn generate_fleet_key() -> (FleetPublicKey, FleetSecretKey) {
    let secret = FleetSecretKey(age::x25519::Identity::generate());
    (secret.public_key(), secret)
}

/// The credential kubegate presents to an environment's API server. Built only through
/// [`UpstreamCredential::token`] and [`UpstreamCredential::client_certificate`], which validate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamCredential {
    #[non_exhaustive]
    Token { token: SecretString },
    #[non_exhaustive]
    ClientCertificate {
        /// The client certificate, then any intermediates, in PEM.
        cert_pem: String,
        key_pem: SecretString,
    },
}

impl UpstreamCredential {
    /// A bearer token: non-empty, visible ASCII only (it goes into an `Authorization` header).
    pub fn token(token: impl Into<String>) -> Result<Self, CredentialError> {
        let token = SecretString::new(token);
        validate_token(token.expose_secret())?;
        Ok(Self::Token { token })
    }

    /// A client certificate chain and its private key (PKCS#8, PKCS#1 or SEC1), both PEM.
    /// Both must parse and the key must belong to the first certificate.
    pub fn client_certificate(
        cert_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Result<Self, CredentialError> {
        let cert_pem = cert_pem.into();
        let key_pem = SecretString::new(key_pem);
        validate_client_certificate(&cert_pem, key_pem.expose_secret())?;
        Ok(Self::ClientCertificate { cert_pem, key_pem })
    }
}

impl fmt::Display for UpstreamCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token { .. } => f.write_str("bearer token [redacted]"),
            Self::ClientCertificate { .. } => f.write_str("client certificate, key [redacted]"),
        }
    }
}

fn validate_token(token: &str) -> Result<(), CredentialError> {
    if token.is_empty() {
        return Err(CredentialError::EmptyToken);
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialError::TokenCharacters);
    }
    Ok(())
}

fn validate_client_certificate(cert_pem: &str, key_pem: &str) -> Result<(), CredentialError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CredentialError::CertificatePem { source })?;
    if chain.is_empty() {
        return Err(CredentialError::NoCertificate);
    }
    // The PEM parser's errors can quote a line of the input; for the key that line is secret.
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| CredentialError::PrivateKeyPem)?;
    let provider = rustls::crypto::ring::default_provider();
    match rustls::sign::CertifiedKey::from_der(chain, key, &provider) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CredentialError::KeyMismatch)
        }
        Err(source) => Err(CredentialError::Unusable { source }),
    }
}

/// An age file (ASCII armor) holding one [`UpstreamCredential`]. Safe to store and publish;
/// `Debug` shows only its length.
///
/// The kubeconfig service seals a credential as soon as an operator submits it, so its database
/// and the bus only ever carry this; proxies hold the [`FleetSecretKey`] and [`open`] it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredential(String);

impl SealedCredential {
    /// Accepts a stored sealed credential after a quick shape check; [`open`] does the rest.
    pub fn from_armored(armored: impl Into<String>) -> Result<Self, SealError> {
        let armored = armored.into();
        if armored.len() > MAX_SEALED_LEN {
            return Err(SealError::TooLarge);
        }
        let trimmed = armored.trim();
        if !trimmed.starts_with(ARMOR_BEGIN) || !trimmed.ends_with(ARMOR_END) {
            return Err(SealError::NotArmored);
        }
        Ok(Self(armored))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Debug for SealedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredential").field("len", &self.0.len()).finish()
    }
}

impl Serialize for SealedCredential {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SealedCredential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let armored = String::deserialize(deserializer)?;
        Self::from_armored(armored).map_err(serde::de::Error::custom)
    }
}

/// What is inside the age file when sealing: `{"type":"token","token":…}` or
/// `{"type":"clientCertificate","certPem":…,"keyPem":…}`. Borrows, so no extra copy of a
/// secret exists; the JSON bytes live only inside [`seal`] and [`open`], wiped on drop.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Plain<'a> {
    Token { token: &'a str },
    ClientCertificate { cert_pem: &'a str, key_pem: &'a str },
}

/// What is inside the age file when opening; secrets land directly in [`SecretString`]s.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
enum Opened {
    Token { token: SecretString },
    ClientCertificate { cert_pem: String, key_pem: SecretString },
}

/// Encrypts `credential` to the fleet key.
pub fn seal(fleet: &FleetPublicKey, credential: &UpstreamCredential) -> Result<SealedCredential, SealError> {
    let plain = match credential {
        UpstreamCredential::Token { token } => Plain::Token { token: token.expose_secret() },
        UpstreamCredential::ClientCertificate { cert_pem, key_pem } => {
            Plain::ClientCertificate { cert_pem, key_pem: key_pem.expose_secret() }
        }
    };
    let json = Zeroizing::new(serde_json::to_vec(&plain).map_err(|_| SealError::Encode)?);
    let armored = age::encrypt_and_armor(&fleet.0, &json).map_err(|source| SealError::Encrypt { source })?;
    Ok(SealedCredential(armored))
}

/// Decrypts with the fleet secret key and validates the credential again, so a proxy never
/// uses something the kubeconfig service would not have accepted.
pub fn open(fleet: &FleetSecretKey, sealed: &SealedCredential) -> Result<UpstreamCredential, SealError> {
    if sealed.0.len() > MAX_SEALED_LEN {
        return Err(SealError::TooLarge);
    }
    let json = Zeroizing::new(age::decrypt(&fleet.0, sealed.0.as_bytes()).map_err(|error| match error {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        other => SealError::Corrupt { source: other },
    })?);
    // serde_json's messages may quote the offending value, which could be the secret.
    let opened: Opened = serde_json::from_slice(&json).map_err(|_| SealError::Payload)?;
    match opened {
        Opened::Token { token } => {
            validate_token(token.expose_secret())?;
            Ok(UpstreamCredential::Token { token })
        }
        Opened::ClientCertificate { cert_pem, key_pem } => {
            validate_client_certificate(&cert_pem, key_pem.expose_secret())?;
            Ok(UpstreamCredential::ClientCertificate { cert_pem, key_pem })
        }
    }
}

/// A fleet key that cannot be used. Never carries the text that was given.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("invalid fleet public key: {reason}")]
    InvalidPublicKey { reason: &'static str },
    #[error("invalid fleet secret key: {reason}")]
    InvalidSecretKey { reason: &'static str },
    #[error("a fleet secret key (AGE-SECRET-KEY-1…) was given where the public key (age1…) belongs")]
    SecretKeyGivenAsPublic,
    #[error("a fleet public key (age1…) was given where the secret key (AGE-SECRET-KEY-1…) belongs")]
    PublicKeyGivenAsSecret,
}

/// An upstream credential that is refused. Never carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the token is empty")]
    EmptyToken,
    #[error("the token contains whitespace, control or non-ASCII characters")]
    TokenCharacters,
    #[error("the client certificate is not valid PEM")]
    CertificatePem {
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the client certificate PEM contains no certificate")]
    NoCertificate,
    #[error("the client key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    PrivateKeyPem,
    #[error("the client key does not belong to the client certificate")]
    KeyMismatch,
    #[error("the client certificate or key cannot be used")]
    Unusable {
        #[source]
        source: rustls::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the credential could not be encoded for sealing")]
    Encode,
    #[error("sealing failed")]
    Encrypt {
        #[source]
        source: age::EncryptError,
    },
    #[error("the sealed credential was not sealed to this fleet key")]
    WrongKey,
    #[error("the sealed credential is damaged or not an age file")]
    Corrupt {
        #[source]
        source: age::DecryptError,
    },
    #[error("the sealed credential is not an ASCII-armored age file")]
    NotArmored,
    #[error("the sealed credential is larger than {MAX_SEALED_LEN} bytes")]
    TooLarge,
    #[error("the sealed credential does not hold a credential kubegate understands")]
    Payload,
    #[error("the sealed credential holds an invalid credential")]
    Credential(#[from] CredentialError),
}
