//! How a CLI client finds its own daemon: the gateway address and the bearer token.
//!
//! Guarantees: the token comes from `COMIS_GATEWAY_TOKEN` in the environment when set (an
//! operator overriding it for one command), else from the vault entry of that name that
//! `comis init` created; it stays a `SecretString`. The address is the one the running daemon
//! wrote to its state file (the real port when the configured port is 0), else the configured
//! `gateway.host:port`.
//!
//! Does not: check that the daemon is running or that the token is accepted (the first call
//! says so), or find a gateway configured with TLS (the CLI speaks plain HTTP to loopback).

use std::path::Path;

use comis_secrets::{SecretName, SecretString, Vault};

use super::ConfigError;
use super::load;

/// The vault and environment name of the gateway token.
pub const TOKEN_VAR: &str = "COMIS_GATEWAY_TOKEN";

/// The bearer token for the local gateway, or `None` when neither source has one.
///
/// # Errors
/// [`ConfigError::Invalid`] when the vault cannot be opened (wrong key, tampered file).
pub fn gateway_token(home: &Path) -> Result<Option<SecretString>, ConfigError> {
    if let Some(v) = std::env::var_os(TOKEN_VAR).filter(|v| !v.is_empty()) {
        return Ok(Some(SecretString::from(v.to_string_lossy().into_owned())));
    }
    if !home.join(comis_secrets::vault::VAULT_FILE).exists() {
        return Ok(None);
    }
    let vault_err = |e: comis_secrets::SecretsError| ConfigError::Invalid {
        file: home.join(comis_secrets::vault::VAULT_FILE),
        pos: None,
        message: format!("reading the gateway token from the vault: {e}"),
    };
    let vault = Vault::open(home).map_err(vault_err)?;
    let name = SecretName::new(TOKEN_VAR).map_err(vault_err)?;
    vault.get(&name).map_err(vault_err)
}

/// `http://host:port` of the local gateway: the running daemon's, else the configured one.
///
/// # Errors
/// The configuration's errors when there is no running daemon to ask.
pub fn gateway_base(home: &Path) -> Result<String, ConfigError> {
    if crate::daemon::running(home).is_some()
        && let Some(state) = crate::daemon::DaemonState::read(home)
        && !state.gateway.is_empty()
    {
        if let Ok(addr) = state.gateway.parse::<std::net::SocketAddr>() {
            return Ok(format!("http://{}", reachable(addr.ip(), addr.port())));
        }
        return Ok(format!("http://{}", state.gateway));
    }
    let l = load::load(home)?;
    let (host, port) = (&l.config.gateway.host, l.config.gateway.port);
    Ok(
        match host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
            Ok(ip) => format!("http://{}", reachable(ip, port)),
            Err(_) => format!("http://{host}:{port}"),
        },
    )
}

/// A wildcard bind address is reached on loopback.
fn reachable(ip: std::net::IpAddr, port: u16) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match ip {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    std::net::SocketAddr::new(ip, port)
}
