//! The development PKI: a local CA and server certificates for `make up` and the tests, written
//! under `.kubegate/`. Production deployments bring their own certificates.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::config::TlsError;

/// A certificate authority that can sign server (and client) certificates.
pub struct DevCa {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn ca_params(common_name: &str) -> Result<CertificateParams, TlsError> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "kubegate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl DevCa {
    /// A new CA named `common_name`.
    pub fn generate(common_name: &str) -> Result<DevCa, TlsError> {
        let params = ca_params(common_name)?;
        let key = KeyPair::generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(DevCa { params, key, cert_pem: cert.pem() })
    }

    /// A CA previously written by [`DevCa::write`] (same name, same key).
    pub fn load(common_name: &str, cert_pem: String, key_pem: &str) -> Result<DevCa, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::Generate(e.to_string()))?;
        Ok(DevCa { params: ca_params(common_name)?, key, cert_pem })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses), with its key, both PEM.
    pub fn issue_server(&self, names: &[&str]) -> Result<(String, String), TlsError> {
        self.issue(names[0], names, ExtendedKeyUsagePurpose::ServerAuth, None)
    }

    /// A client certificate with `common_name` (the user) and `organizations` (the groups).
    pub fn issue_client(
        &self,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<(String, String), TlsError> {
        self.issue(common_name, &[], ExtendedKeyUsagePurpose::ClientAuth, Some(organizations))
    }

    fn issue(
        &self,
        common_name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        organizations: Option<&[&str]>,
    ) -> Result<(String, String), TlsError> {
        let gen_err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().map_err(gen_err)?),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        for o in organizations.unwrap_or_default() {
            dn.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().map_err(gen_err)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The files of the development PKI in one directory.
#[derive(Debug, Clone)]
pub struct DevPki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl DevPki {
    /// Creates `dir/ca.pem`, `dir/ca-key.pem`, `dir/server.pem` and `dir/server-key.pem` when
    /// missing (the server certificate covers 127.0.0.1, ::1 and localhost). Existing files are
    /// kept, so a CA that users already trust stays the same across restarts.
    pub fn ensure(dir: &Path) -> Result<DevPki, TlsError> {
        let pki = DevPki {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
        };
        std::fs::create_dir_all(dir).map_err(|source| write_err(dir, source))?;
        let ca = if pki.ca_cert.exists() && pki.ca_key.exists() {
            DevCa::load("kubegate development CA", read(&pki.ca_cert)?, &read(&pki.ca_key)?)?
        } else {
            let ca = DevCa::generate("kubegate development CA")?;
            write_secret(&pki.ca_key, &ca.key_pem())?;
            std::fs::write(&pki.ca_cert, ca.cert_pem()).map_err(|source| write_err(&pki.ca_cert, source))?;
            // A new CA invalidates any older server certificate.
            let _ = std::fs::remove_file(&pki.server_cert);
            ca
        };
        if !(pki.server_cert.exists() && pki.server_key.exists()) {
            let (cert, key) = ca.issue_server(&["localhost", "127.0.0.1", "::1"])?;
            write_secret(&pki.server_key, &key)?;
            std::fs::write(&pki.server_cert, cert).map_err(|source| write_err(&pki.server_cert, source))?;
        }
        Ok(pki)
    }
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path)
        .map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

fn write_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Write { path: path.display().to_string(), source }
}

/// Writes a key readable by its owner only.
fn write_secret(path: &Path, content: &str) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| write_err(path, source))?;
    f.write_all(content.as_bytes()).map_err(|source| write_err(path, source))
}
