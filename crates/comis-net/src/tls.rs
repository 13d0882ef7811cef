//! TLS configuration: one place that decides which roots the daemon trusts.
//!
//! **Guarantees.** Client connections verify the server against the Mozilla roots shipped in
//! `webpki-roots` plus only the extra roots the operator configured; there is no switch to
//! turn verification off. The crypto provider is `ring`, TLS 1.2 and 1.3 only.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::NetError;

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting the public web PKI and `extra_roots`.
pub(crate) fn client_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, NetError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| NetError::Config(format!("extra TLS root rejected: {e}")))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Every certificate in a PEM document.
///
/// # Errors
/// [`NetError::Config`] when the text holds no certificate or a malformed one.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Config(format!("PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(NetError::Config("PEM holds no certificate".into()));
    }
    Ok(certs)
}

/// A TLS client stream over TCP, for the non-HTTP protocols the channels speak (IRC, IMAP).
pub type TlsTcpStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Wraps a connected `tcp` in TLS to `server_name`, verified like every other client
/// connection here (public roots plus `extra_roots`; no way to skip verification). Only the
/// TLS layer: the caller chose and connected the address (an operator-configured server).
///
/// # Errors
/// [`NetError::Config`] for an invalid server name or root; [`NetError::Transport`] when the
/// handshake or verification fails.
pub async fn connect_tls(
    tcp: tokio::net::TcpStream,
    server_name: &str,
    extra_roots: &[CertificateDer<'static>],
) -> Result<TlsTcpStream, NetError> {
    let config = client_config(extra_roots)?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| NetError::Config(format!("TLS server name {server_name:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| NetError::Transport {
            url: server_name.to_owned(),
            detail: format!("TLS: {e}"),
        })
}
