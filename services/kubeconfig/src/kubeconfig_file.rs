//! The kubeconfig file users download: a typed model keyed exactly like kubeconfig, its renderer, and YAML/JSON (de)serialization.

use std::collections::{HashMap, HashSet};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls_pki_types::pem::{PemObject as _, SectionKind};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::DoubleQuoted;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Prefix of every cluster, context and user name kubegate writes, so that a kubegate
/// kubeconfig merged with others (`KUBECONFIG=a:b`) never shadows their entries.
pub const NAME_PREFIX: &str = "kubegate-";

/// A bearer token as it sits in a kubeconfig. `Debug` never shows it and its memory is
/// wiped on drop; it is written out only when the whole kubeconfig is serialized.
#[derive(Clone)]
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Zeroizing::new(token.into()))
    }

    /// The token itself, for the few places that must write or send it.
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }

    /// kubectl puts the token in an `Authorization` header verbatim, so anything that
    /// cannot sit in a header value unquoted (empty, whitespace, control or non-ASCII) is refused.
    fn validate(&self) -> Result<(), KubeconfigError> {
        let token = self.expose_secret();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KubeconfigError::InvalidToken);
        }
        Ok(())
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

// Constant-time so that comparing models in tests or callers never becomes a timing oracle.
impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for BearerToken {}

impl Serialize for BearerToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DoubleQuoted(self.expose_secret()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BearerToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(BearerToken::new)
    }
}

/// A kubeconfig (`apiVersion: v1`, `kind: Config`), limited to what kubegate writes and reads.
/// Field order follows `kubectl config view` after the two type keys; unknown keys are
/// ignored when parsing so files edited by other tools still load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default, serialize_with = "quoted")]
    pub current_context: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub preferences: Preferences,
    #[serde(default, deserialize_with = "null_as_default")]
    pub users: Vec<NamedUser>,
}

/// kubectl's `preferences`; kubegate always writes it empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    #[serde(serialize_with = "quoted")]
    pub name: String,
    pub cluster: Cluster,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(serialize_with = "quoted")]
    pub server: String,
    /// Base64 of the PEM bundle, as kubectl expects it.
    #[serde(rename = "certificate-authority-data", default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default, skip_serializing_if = "is_false")]
    pub insecure_skip_tls_verify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    #[serde(serialize_with = "quoted")]
    pub name: String,
    pub context: Context,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    #[serde(serialize_with = "quoted")]
    pub cluster: String,
    #[serde(serialize_with = "quoted")]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "quoted_option")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    #[serde(serialize_with = "quoted")]
    pub name: String,
    pub user: User,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<BearerToken>,
}

// Every value that comes from outside (names, servers, namespaces, the token) is written
// double-quoted: that is the one YAML style every reader interprets alike (kubectl's YAML 1.1,
// Python's, JavaScript's 1.2), whatever the text looks like (`yes`, `1e3`, `~`, newlines).
// serde_json sees the wrapper as a plain string.
fn quoted<T: AsRef<str>, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    DoubleQuoted(value.as_ref()).serialize(serializer)
}

fn quoted_option<S: Serializer>(value: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(text) => quoted(text, serializer),
        None => serializer.serialize_none(),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

// kubectl writes `users: null` for an empty list; accept it like a missing key.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Kubeconfig {
    /// YAML as served for `Accept: text/yaml`.
    pub fn to_yaml(&self) -> Result<String, KubeconfigError> {
        // Block scalars would fold long or multi-line names across lines; quoted scalars keep
        // each value on one line, exactly.
        let options = serde_saphyr::ser_options! {
            prefer_block_scalars: false,
        };
        serde_saphyr::to_string_with_options(self, options).map_err(KubeconfigError::SerializeYaml)
    }

    /// Pretty JSON with a final newline, as the REST API serves by default. Saved to a file
    /// it is a valid kubeconfig too: kubectl reads JSON through its YAML reader.
    pub fn to_json(&self) -> Result<String, KubeconfigError> {
        let mut out = Vec::with_capacity(1024);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, YamlReadableJson::default());
        self.serialize(&mut serializer).map_err(KubeconfigError::SerializeJson)?;
        out.push(b'\n');
        // serde_json writes UTF-8 and the formatter only adds ASCII escapes.
        String::from_utf8(out).map_err(|_| KubeconfigError::NonUtf8Json)
    }

    pub fn from_yaml(yaml: &str) -> Result<Self, KubeconfigError> {
        // No source snippet in errors: the snippet could quote a token line into a log.
        let options = serde_saphyr::options! {
            with_snippet: false,
        };
        serde_saphyr::from_str_with_options(yaml, options).map_err(KubeconfigError::ParseYaml)
    }

    pub fn from_json(json: &str) -> Result<Self, KubeconfigError> {
        serde_json::from_str(json).map_err(KubeconfigError::ParseJson)
    }
}

/// Pretty JSON that YAML readers accept as well. serde_json leaves DEL, the C1 controls and
/// U+FEFF/U+FFFE/U+FFFF unescaped, and kubectl's YAML reader refuses those bytes ("control
/// characters are not allowed"), so they are written as `\uXXXX` escapes instead.
#[derive(Default)]
struct YamlReadableJson(serde_json::ser::PrettyFormatter<'static>);

impl YamlReadableJson {
    fn needs_escape(c: char) -> bool {
        matches!(c, '\u{7f}'..='\u{9f}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
    }
}

impl serde_json::ser::Formatter for YamlReadableJson {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some(at) = rest.find(Self::needs_escape) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut chars = rest[at..].chars();
            if let Some(c) = chars.next() {
                write!(writer, "\\u{:04x}", u32::from(c))?;
            }
            rest = chars.as_str();
        }
        writer.write_all(rest.as_bytes())
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_array(writer)
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object(writer)
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(writer)
    }
}

/// One environment the user asked for, in the order it should appear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub id: u32,
    pub name: String,
    /// The context's default namespace, for users scoped to namespaces.
    pub namespace: Option<String>,
}

/// How kubectl should trust the public endpoint's TLS certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerTrust {
    /// `certificate-authority-data` with this CA bundle.
    CertificateAuthority(CaBundle),
    /// `insecure-skip-tls-verify: true`; only when the operator explicitly configured it.
    InsecureSkipTlsVerify,
}

/// A validated CA bundle: one or more X.509 certificates, kept in canonical PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pem: String,
}

impl CaBundle {
    /// Parses a PEM bundle. Every section must be a well-formed certificate: anything else
    /// (a private key pasted by mistake above all) would be handed to every user.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KubeconfigError> {
        let mut canonical = String::new();
        let mut count = 0usize;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|source| KubeconfigError::InvalidCaPem { source })?;
            if kind != SectionKind::Certificate {
                return Err(KubeconfigError::CaNotACertificate { kind: format!("{kind:?}") });
            }
            match x509_parser::parse_x509_certificate(&der) {
                Ok(([], _)) => {}
                Ok(_) => {
                    return Err(KubeconfigError::InvalidCaCertificate {
                        index: count,
                        reason: "trailing bytes after the certificate".to_owned(),
                    });
                }
                Err(error) => {
                    return Err(KubeconfigError::InvalidCaCertificate {
                        index: count,
                        reason: error.to_string(),
                    });
                }
            }
            push_pem_certificate(&mut canonical, &der);
            count += 1;
        }
        if count == 0 {
            return Err(KubeconfigError::NoCaCertificate);
        }
        Ok(Self { pem: canonical })
    }

    /// The bundle in canonical PEM (64-column base64, `\n` line ends).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The value of `certificate-authority-data`: base64 of the PEM text.
    pub fn kubeconfig_data(&self) -> String {
        BASE64.encode(self.pem.as_bytes())
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle").field("pem_len", &self.pem.len()).finish()
    }
}

fn push_pem_certificate(out: &mut String, der: &[u8]) {
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    let body = BASE64.encode(der);
    // Base64 is ASCII, so splitting the bytes never cuts a character.
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
}

/// Where users reach kubegate: the public HTTPS origin and how to trust it. Built once from
/// configuration and reused for every kubeconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicEndpoint {
    /// `https://host[:port]`, without a trailing slash.
    origin: String,
    trust: ServerTrust,
}

impl PublicEndpoint {
    /// `server_base` is the public origin, e.g. `https://127.0.0.1:9443`; a trailing `/` is
    /// accepted, any other path, a query, credentials or a non-HTTPS scheme are not (the
    /// proxy serves `/api/endpoints/...` at the root of its origin).
    pub fn new(server_base: &str, trust: ServerTrust) -> Result<Self, KubeconfigError> {
        let invalid = |reason: &'static str| KubeconfigError::InvalidServerBase {
            base: server_base.to_owned(),
            reason,
        };
        let uri: http::Uri = server_base.parse().map_err(|_| invalid("not a valid absolute URL"))?;
        if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
            return Err(invalid("the scheme must be https"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid("credentials are not allowed"));
        }
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(invalid("a path is not allowed"));
        }
        if uri.query().is_some() || server_base.contains('#') {
            return Err(invalid("a query or fragment is not allowed"));
        }
        Ok(Self { origin: format!("https://{authority}"), trust })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn trust(&self) -> &ServerTrust {
        &self.trust
    }

    /// The `server:` of an environment's cluster entry.
    pub fn server_url(&self, environment_id: u32) -> String {
        format!("{}/api/endpoints/{environment_id}/kubernetes", self.origin)
    }
}

/// Everything one kubeconfig is made of.
#[derive(Clone, Copy, Debug)]
pub struct KubeconfigRequest<'a> {
    /// The kubegate user name; the user entry is `kubegate-<user name>`.
    pub user_name: &'a str,
    pub token: &'a BearerToken,
    pub endpoint: &'a PublicEndpoint,
    /// In order; the first becomes `current-context`.
    pub environments: &'a [Environment],
}

/// The context (and cluster) name given to one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentContext {
    pub environment_id: u32,
    pub context_name: String,
}

/// A rendered kubeconfig and which context stands for which environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedKubeconfig {
    pub kubeconfig: Kubeconfig,
    /// One entry per requested environment, in request order.
    pub contexts: Vec<EnvironmentContext>,
}

impl RenderedKubeconfig {
    pub fn context_for(&self, environment_id: u32) -> Option<&str> {
        self.contexts.iter().find(|c| c.environment_id == environment_id).map(|c| c.context_name.as_str())
    }
}

/// Builds the kubeconfig: per environment one cluster and one context with the same name,
/// one user entry holding the token, and the first environment as `current-context`.
///
/// Naming rule: names are kept verbatim (`kubegate-<environment name>`, any characters;
/// double-quoted YAML does the escaping). Only when several requested environments share a
/// name do those get `kubegate-<name>-<id>`; if that still equals another context's name,
/// `-<id>` is appended again until it is unique. Unsuffixed names are reserved first, so an
/// environment whose own name looks like a suffixed one keeps it.
pub fn render(request: &KubeconfigRequest<'_>) -> Result<RenderedKubeconfig, KubeconfigError> {
    let environments = request.environments;
    if environments.is_empty() {
        return Err(KubeconfigError::NoEnvironments);
    }
    request.token.validate()?;
    let mut seen_ids = HashSet::with_capacity(environments.len());
    for environment in environments {
        if !seen_ids.insert(environment.id) {
            return Err(KubeconfigError::DuplicateEnvironmentId { id: environment.id });
        }
        if let Some(namespace) = &environment.namespace
            && !is_dns1123_label(namespace)
        {
            return Err(KubeconfigError::InvalidNamespace {
                environment_id: environment.id,
                namespace: namespace.clone(),
            });
        }
    }

    let names = context_names(environments);
    let user_name = format!("{NAME_PREFIX}{}", request.user_name);
    let (certificate_authority_data, insecure_skip_tls_verify) = match request.endpoint.trust() {
        ServerTrust::CertificateAuthority(ca) => (Some(ca.kubeconfig_data()), false),
        ServerTrust::InsecureSkipTlsVerify => (None, true),
    };

    let mut clusters = Vec::with_capacity(environments.len());
    let mut contexts = Vec::with_capacity(environments.len());
    let mut mapping = Vec::with_capacity(environments.len());
    for (environment, name) in environments.iter().zip(names) {
        clusters.push(NamedCluster {
            name: name.clone(),
            cluster: Cluster {
                server: request.endpoint.server_url(environment.id),
                certificate_authority_data: certificate_authority_data.clone(),
                insecure_skip_tls_verify,
            },
        });
        contexts.push(NamedContext {
            name: name.clone(),
            context: Context {
                cluster: name.clone(),
                user: user_name.clone(),
                namespace: environment.namespace.clone(),
            },
        });
        mapping.push(EnvironmentContext { environment_id: environment.id, context_name: name });
    }
    let current_context = mapping.first().map(|c| c.context_name.clone()).unwrap_or_default();

    Ok(RenderedKubeconfig {
        kubeconfig: Kubeconfig {
            api_version: "v1".to_owned(),
            kind: "Config".to_owned(),
            clusters,
            contexts,
            current_context,
            preferences: Preferences::default(),
            users: vec![NamedUser { name: user_name, user: User { token: Some(request.token.clone()) } }],
        },
        contexts: mapping,
    })
}

/// Context names in the order of `environments`, per the rule documented on [`render`].
/// Environment ids must already be unique.
fn context_names(environments: &[Environment]) -> Vec<String> {
    let bases: Vec<String> = environments.iter().map(|e| format!("{NAME_PREFIX}{}", e.name)).collect();
    let mut occurrences: HashMap<&str, usize> = HashMap::with_capacity(bases.len());
    for base in &bases {
        *occurrences.entry(base.as_str()).or_default() += 1;
    }
    let shared = |base: &str| occurrences.get(base).copied().unwrap_or(0) > 1;

    let mut taken: HashSet<String> = bases.iter().filter(|base| !shared(base)).cloned().collect();
    environments
        .iter()
        .zip(&bases)
        .map(|(environment, base)| {
            if !shared(base) {
                return base.clone();
            }
            let suffix = format!("-{}", environment.id);
            let mut name = format!("{base}{suffix}");
            // Terminates: every round makes the name longer and `taken` is finite.
            while taken.contains(&name) {
                name.push_str(&suffix);
            }
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// Kubernetes namespace names are RFC 1123 labels.
pub(crate) fn is_dns1123_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("no environment selected: a kubeconfig needs at least one")]
    NoEnvironments,
    #[error("environment {id} is listed twice")]
    DuplicateEnvironmentId { id: u32 },
    #[error("namespace {namespace:?} of environment {environment_id} is not a valid namespace name")]
    InvalidNamespace { environment_id: u32, namespace: String },
    #[error("the token is empty or contains whitespace, control or non-ASCII characters")]
    InvalidToken,
    #[error("invalid public server base {base:?}: {reason}")]
    InvalidServerBase { base: String, reason: &'static str },
    #[error("the CA certificate is not valid PEM")]
    InvalidCaPem {
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the CA PEM contains no certificate")]
    NoCaCertificate,
    #[error("the CA PEM contains a {kind} section; only certificates are allowed")]
    CaNotACertificate { kind: String },
    #[error("CA certificate #{index} is not a valid X.509 certificate: {reason}")]
    InvalidCaCertificate { index: usize, reason: String },
    #[error("cannot write the kubeconfig as YAML")]
    SerializeYaml(#[source] serde_saphyr::SerializeError),
    #[error("cannot write the kubeconfig as JSON")]
    SerializeJson(#[source] serde_json::Error),
    #[error("the JSON writer produced text that is not UTF-8")]
    NonUtf8Json,
    #[error("not a valid YAML kubeconfig")]
    ParseYaml(#[source] serde_saphyr::Error),
    #[error("not a valid JSON kubeconfig")]
    ParseJson(#[source] serde_json::Error),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn env(id: u32, name: &str) -> Environment {
        Environment { id, name: name.to_owned(), namespace: None }
    }

    #[test]
    fn distinct_names_stay_verbatim() {
        let names = context_names(&[env(1, "prod"), env(2, "dev"), env(3, "a: \"b\"\n")]);
        assert_eq!(names, ["kubegate-prod", "kubegate-dev", "kubegate-a: \"b\"\n"]);
    }

    #[test]
    fn shared_names_all_get_their_id() {
        let names = context_names(&[env(1, "prod"), env(2, "dev"), env(3, "prod")]);
        assert_eq!(names, ["kubegate-prod-1", "kubegate-dev", "kubegate-prod-3"]);
    }

    #[test]
    fn a_verbatim_name_wins_over_a_suffixed_one() {
        // "prod-3" is an environment's real name; the duplicate "prod" with id 3 must move.
        let names = context_names(&[env(3, "prod"), env(4, "prod"), env(7, "prod-3")]);
        assert_eq!(names, ["kubegate-prod-3-3", "kubegate-prod-4", "kubegate-prod-3"]);
    }

    #[test]
    fn names_are_unique_even_in_contrived_cases() {
        let environments =
            [env(1, "x"), env(2, "x"), env(3, "x-1"), env(4, "x-1"), env(5, "x-1-1"), env(6, "x-1-1")];
        let names = context_names(&environments);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
    }

    #[test]
    fn namespace_rule_is_rfc1123_label() {
        for ok in ["dev", "a", "kube-system", "1e3", "yes", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "Dev", "a_b", "a.b", "ü", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = BearerToken::new("very-secret-token");
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
        let user = User { token: Some(token) };
        assert!(!format!("{user:?}").contains("very-secret"));
    }

    #[test]
    fn token_validation() {
        for ok in ["a", "eyJ.eyJ.sig", "!~"] {
            assert!(BearerToken::new(ok).validate().is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a\n", "\t", "tök"] {
            assert!(
                matches!(BearerToken::new(bad).validate(), Err(KubeconfigError::InvalidToken)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_base_rules() {
        let trust = || ServerTrust::InsecureSkipTlsVerify;
        let ok = PublicEndpoint::new("https://127.0.0.1:9443", trust()).unwrap();
        assert_eq!(ok.server_url(3), "https://127.0.0.1:9443/api/endpoints/3/kubernetes");
        let slash = PublicEndpoint::new("https://kubegate.example.com/", trust()).unwrap();
        assert_eq!(slash.origin(), "https://kubegate.example.com");
        let v6 = PublicEndpoint::new("https://[::1]:9443", trust()).unwrap();
        assert_eq!(v6.origin(), "https://[::1]:9443");
        for bad in [
            "",
            "127.0.0.1:9443",
            "http://127.0.0.1:9443",
            "https://",
            "https://user:pw@host",
            "https://host/prefix",
            "https://host/?a=b",
            "https://host/#frag",
            "https://ho st",
        ] {
            assert!(
                matches!(PublicEndpoint::new(bad, trust()), Err(KubeconfigError::InvalidServerBase { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ca_bundle_rejects_what_is_not_a_certificate() {
        assert!(matches!(CaBundle::from_pem(b""), Err(KubeconfigError::NoCaCertificate)));
        assert!(matches!(CaBundle::from_pem(b"just text"), Err(KubeconfigError::NoCaCertificate)));
        assert!(matches!(
            CaBundle::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KubeconfigError::InvalidCaCertificate { index: 0, .. })
        ));
        assert!(matches!(
            CaBundle::from_pem(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(KubeconfigError::InvalidCaPem { .. })
        ));
        assert!(matches!(
            CaBundle::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(KubeconfigError::InvalidCaPem { .. })
        ));
        assert!(matches!(
            CaBundle::from_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(KubeconfigError::CaNotACertificate { .. })
        ));
    }

    #[test]
    fn render_rejects_bad_requests() {
        let endpoint =
            PublicEndpoint::new("https://127.0.0.1:9443", ServerTrust::InsecureSkipTlsVerify).unwrap();
        let token = BearerToken::new("t");
        let request = |environments: &[Environment]| {
            render(&KubeconfigRequest {
                user_name: "alice",
                token: &token,
                endpoint: &endpoint,
                environments,
            })
        };
        assert!(matches!(request(&[]), Err(KubeconfigError::NoEnvironments)));
        assert!(matches!(
            request(&[env(1, "a"), env(1, "b")]),
            Err(KubeconfigError::DuplicateEnvironmentId { id: 1 })
        ));
        let bad_namespace = Environment { id: 1, name: "a".into(), namespace: Some("Not_Valid".into()) };
        assert!(matches!(request(&[bad_namespace]), Err(KubeconfigError::InvalidNamespace { .. })));
        assert!(matches!(
            render(&KubeconfigRequest {
                user_name: "alice",
                token: &BearerToken::new("has space"),
                endpoint: &endpoint,
                environments: &[env(1, "a")],
            }),
            Err(KubeconfigError::InvalidToken)
        ));
    }

    #[test]
    fn json_escapes_what_yaml_readers_refuse() {
        let config = Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![],
            contexts: vec![],
            current_context: "a\u{7f}b\u{85}c\u{9f}d\u{feff}e\u{fffe}f\u{ffff}g\u{a0}h🚀\n\"".into(),
            preferences: Preferences::default(),
            users: vec![],
        };
        let json = config.to_json().unwrap();
        let expected =
            "\"current-context\": \"a\\u007fb\\u0085c\\u009fd\\ufeffe\\ufffef\\uffffg\u{a0}h🚀\\n\\\"\"";
        assert!(json.contains(expected), "{json}");
        assert_eq!(Kubeconfig::from_json(&json).unwrap(), config);
    }

    #[test]
    fn insecure_only_when_asked() {
        let token = BearerToken::new("t");
        let environments = [env(1, "a")];
        let insecure = PublicEndpoint::new("https://h", ServerTrust::InsecureSkipTlsVerify).unwrap();
        let rendered = render(&KubeconfigRequest {
            user_name: "u",
            token: &token,
            endpoint: &insecure,
            environments: &environments,
        })
        .unwrap();
        let yaml = rendered.kubeconfig.to_yaml().unwrap();
        assert!(yaml.contains("insecure-skip-tls-verify: true"), "{yaml}");
        assert!(!yaml.contains("certificate-authority-data"), "{yaml}");
    }
}
