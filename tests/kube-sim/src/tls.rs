//! TLS: a CA generated at start, a serving certificate for 127.0.0.1, ::1 and localhost, ALPN
//! `h2` + `http/1.1`, and optional client-certificate verification against a configured CA.
//! [`ClientCa`] issues client certificates for tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::Error;

/// A certificate authority that can issue certificates.
pub struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Authority {
    /// A new self-signed CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<Authority, Error> {
        let key = KeyPair::generate().map_err(|e| Error::Tls(format!("generating CA key: {e}")))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Tls(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(|e| Error::Tls(format!("signing CA: {e}")))?;
        Ok(Authority { pem: cert.pem(), params, key })
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    fn issue(&self, params: CertificateParams) -> Result<(String, String, Vec<u8>, Vec<u8>), Error> {
        let key = KeyPair::generate().map_err(|e| Error::Tls(format!("generating key: {e}")))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| Error::Tls(format!("signing: {e}")))?;
        Ok((cert.pem(), key.serialize_pem(), cert.der().to_vec(), key.serialize_der()))
    }
}

/// A client CA for tests: issue certificates whose CN is the user and O values the groups.
pub struct ClientCa {
    authority: Authority,
}

/// A client certificate and its key, both PEM.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert").field("key_pem", &"<redacted>").finish_non_exhaustive()
    }
}

impl ClientCa {
    pub fn generate() -> Result<ClientCa, Error> {
        Ok(ClientCa { authority: Authority::generate("kube-sim client CA")? })
    }

    /// The CA certificate to put in [`crate::Config::client_ca_pem`].
    pub fn pem(&self) -> &str {
        self.authority.pem()
    }

    /// A client certificate for `user` in `groups` (at most two groups: the certificate
    /// generator keeps one value per attribute type, so the second O goes under its raw OID).
    pub fn issue(&self, user: &str, groups: &[&str]) -> Result<ClientCert, Error> {
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Tls(e.to_string()))?;
        params.distinguished_name.push(DnType::CommonName, user);
        match groups {
            [] => {}
            [one] => params.distinguished_name.push(DnType::OrganizationName, *one),
            [one, two] => {
                params.distinguished_name.push(DnType::OrganizationName, *one);
                params.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 10]), *two);
            }
            _ => return Err(Error::Config("client certificates carry at most two groups".into())),
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert_pem, key_pem, _, _) = self.authority.issue(params)?;
        Ok(ClientCert { cert_pem, key_pem })
    }
}

/// The serving side: CA PEM for clients and the rustls configuration.
pub struct ServerTls {
    pub ca_pem: String,
    pub config: Arc<ServerConfig>,
}

/// Generates a CA and serving certificate and builds the server configuration.
pub fn server(client_ca_pem: Option<&str>) -> Result<ServerTls, Error> {
    let ca = Authority::generate("kube-sim CA")?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])
    .map_err(|e| Error::Tls(e.to_string()))?;
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))));
    params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (_, _, cert_der, key_der) = ca.issue(params)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| Error::Config(format!("client CA PEM: {e}")))?;
                roots.add(cert).map_err(|e| Error::Config(format!("client CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::Config("client CA PEM holds no certificate".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key_der));
    let mut config = builder
        .with_single_cert(vec![CertificateDer::from(cert_der)], key)
        .map_err(|e| Error::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(ServerTls { ca_pem: ca.pem().to_string(), config: Arc::new(config) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certs_carry_user_and_groups() {
        let Ok(ca) = ClientCa::generate() else { panic!() };
        let Ok(c) = ca.issue("alice", &["devs", "ops"]) else { panic!() };
        let Ok(der) = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()) else { panic!() };
        let Some(user) = crate::auth::cert_user(&der) else { panic!() };
        assert_eq!(user.name, "alice");
        assert_eq!(user.groups, vec!["devs", "ops", "system:authenticated"]);
        assert!(server(Some(ca.pem())).is_ok());
        assert!(server(Some("garbage")).is_err());
    }
}
