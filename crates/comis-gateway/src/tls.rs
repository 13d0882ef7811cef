//! TLS and mutual TLS for the gateway (rustls, TLS 1.2 and 1.3 only).
//!
//! Guarantees: with `caPath` every client certificate is verified against that CA alone (not
//! the system roots); with `requireClientCert` a client without one never completes the
//! handshake; the verified leaf's CN becomes the caller's identity. A configuration that asks
//! for client certificates without a CA is refused at start-up rather than running unverified.
//!
//! The server certificate and the CA must be inside their validity period at start-up.
//!
//! Not guaranteed: certificate revocation (no CRL/OCSP) or expiry warnings ahead of time.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::GatewayError;
use crate::config::TlsConfig;

fn load_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, GatewayError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| GatewayError::Tls(format!("gateway.tls.{what} '{path}': {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::Tls(format!("gateway.tls.{what} '{path}': {e}")))?;
    if certs.is_empty() {
        return Err(GatewayError::Tls(format!(
            "gateway.tls.{what} '{path}': no certificate found"
        )));
    }
    // As in the original: an expired (or not yet valid) certificate or CA is fatal at start,
    // not a surprise at the first handshake.
    for cert in &certs {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            GatewayError::Tls(format!(
                "gateway.tls.{what} '{path}': unparsable certificate: {e}"
            ))
        })?;
        if !parsed.validity().is_valid() {
            return Err(GatewayError::Tls(format!(
                "gateway.tls.{what} '{path}': certificate '{}' is outside its validity period",
                parsed.subject()
            )));
        }
    }
    Ok(certs)
}

/// Builds the server configuration from `gateway.tls`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, GatewayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = load_certs(&tls.cert_path, "certPath")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_path)
        .map_err(|e| GatewayError::Tls(format!("gateway.tls.keyPath '{}': {e}", tls.key_path)))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| GatewayError::Tls(e.to_string()))?;
    let builder = match &tls.ca_path {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca, "caPath")? {
                roots
                    .add(cert)
                    .map_err(|e| GatewayError::Tls(format!("gateway.tls.caPath '{ca}': {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.require_client_cert {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| GatewayError::Tls(format!("gateway.tls.caPath '{ca}': {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if tls.require_client_cert => {
            return Err(GatewayError::Tls(
                "gateway.tls.requireClientCert is true but gateway.tls.caPath is not set: \
                 client certificates cannot be verified (set caPath, or requireClientCert: false)"
                    .into(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| GatewayError::Tls(format!("gateway.tls certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject CN of a (verified) leaf certificate.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
