//! The broker's certificate authority: the key that lets the broker terminate TLS for the
//! hosts a sandboxed CLI talks to.
//!
//! **Guarantees.** The CA is generated once (ECDSA P-256) and kept in the data directory:
//! `broker-ca.key` (0600, created with `O_EXCL`) and `broker-ca.pem`. Only the certificate is
//! ever offered to a sandbox; the key stays in the daemon (the sandbox hides `$COMIS_HOME`).
//! A half-present pair (key without certificate or the reverse) is an error, never silently
//! regenerated: the certificate may already be trusted somewhere. The CA may sign leaves only
//! (path length 0). Leaf certificates are made per host on first use and cached.
//!
//! **Does not** constrain the names the CA can sign: it is trusted only inside sandboxes
//! through their CA-bundle variables, never installed in the host's trust store.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::NetError;

/// File name of the CA certificate in the data directory.
pub const CA_CERT_FILE: &str = "broker-ca.pem";
/// File name of the CA private key in the data directory.
pub const CA_KEY_FILE: &str = "broker-ca.key";

/// The broker CA and its cache of leaf TLS configurations.
pub struct BrokerCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    leaves: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for BrokerCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCa").finish_non_exhaustive()
    }
}

/// The CA's parameters. Deterministic, so the issuer can be rebuilt from the key alone (the
/// subject and key identifier of issued leaves then match the stored certificate).
fn ca_params() -> Result<CertificateParams, NetError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "comis");
    dn.push(DnType::CommonName, "comis credential broker CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn ca_err(e: rcgen::Error) -> NetError {
    NetError::Ca(e.to_string())
}

impl BrokerCa {
    /// A new CA held in memory only (tests, or a daemon without a data directory).
    ///
    /// # Errors
    /// [`NetError::Ca`] when key generation or signing fails.
    pub fn generate() -> Result<Self, NetError> {
        let key = KeyPair::generate().map_err(ca_err)?;
        let params = ca_params()?;
        let cert = params.self_signed(&key).map_err(ca_err)?;
        Ok(Self::from_parts(cert.pem(), Issuer::new(params, key)))
    }

    fn from_parts(cert_pem: String, issuer: Issuer<'static, KeyPair>) -> Self {
        Self {
            cert_pem,
            issuer,
            leaves: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the CA from `dir`, creating it the first time.
    ///
    /// # Errors
    /// [`NetError::Io`] on file errors; [`NetError::Ca`] when only one of the two files
    /// exists or the key does not parse.
    pub fn load_or_create(dir: &Path) -> Result<Self, NetError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let io = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |source| NetError::Io { what, source }
        };
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                let key_pem = Zeroizing::new(
                    fs::read_to_string(&key_path).map_err(io("reading", &key_path))?,
                );
                let cert_pem = fs::read_to_string(&cert_path).map_err(io("reading", &cert_path))?;
                let key = KeyPair::from_pem(&key_pem)
                    .map_err(|e| NetError::Ca(format!("{}: {e}", key_path.display())))?;
                crate::tls::parse_pem_certs(cert_pem.as_bytes())?;
                Ok(Self::from_parts(cert_pem, Issuer::new(ca_params()?, key)))
            }
            (false, false) => {
                let key = KeyPair::generate().map_err(ca_err)?;
                let params = ca_params()?;
                let cert = params.self_signed(&key).map_err(ca_err)?;
                let key_pem = Zeroizing::new(key.serialize_pem());
                write_new(&key_path, key_pem.as_bytes(), 0o600)
                    .map_err(io("creating", &key_path))?;
                write_new(&cert_path, cert.pem().as_bytes(), 0o644)
                    .map_err(io("creating", &cert_path))?;
                Ok(Self::from_parts(cert.pem(), Issuer::new(params, key)))
            }
            _ => Err(NetError::Ca(format!(
                "{} and {} must both exist or both be absent; remove the one left over to \
                 create a new broker CA",
                key_path.display(),
                cert_path.display()
            ))),
        }
    }

    /// The CA certificate (PEM), the only part a sandbox ever sees.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server configuration presenting a leaf for `host`, made once per host.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, NetError> {
        if let Some(c) = self.leaves.lock().ok().and_then(|m| m.get(host).cloned()) {
            return Ok(c);
        }
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(vec![host.to_owned()]).map_err(ca_err)?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, host);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(ca_err)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Ca(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key_der)
            .map_err(|e| NetError::Ca(e.to_string()))?;
        // The tunnel speaks HTTP/1.1 only; say so, so clients offering h2 fall back.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut m) = self.leaves.lock() {
            if m.len() > 1024 {
                m.clear();
            }
            m.insert(host.to_owned(), Arc::clone(&config));
        }
        Ok(config)
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_then_loaded() {
        let d = tempfile::tempdir().unwrap();
        let a = BrokerCa::load_or_create(d.path()).unwrap();
        let mode = fs::metadata(d.path().join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = BrokerCa::load_or_create(d.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        assert!(!a.cert_pem().contains("PRIVATE KEY"));
        b.server_config("api.anthropic.com").unwrap();
    }

    #[test]
    fn half_present_pair_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        BrokerCa::load_or_create(d.path()).unwrap();
        fs::remove_file(d.path().join(CA_CERT_FILE)).unwrap();
        assert!(matches!(
            BrokerCa::load_or_create(d.path()),
            Err(NetError::Ca(_))
        ));
        fs::write(d.path().join(CA_CERT_FILE), "garbage").unwrap();
        assert!(BrokerCa::load_or_create(d.path()).is_err());
    }
}
