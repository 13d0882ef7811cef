//! `gateway.*` and `webhooks.*`, with the seeds' names and defaults.

use serde::Deserialize;

/// `gateway`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    pub tokens: Vec<TokenConfig>,
    pub tls: Option<TlsConfig>,
    pub trusted_proxies: Vec<String>,
    pub max_batch_size: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 4766,
            tokens: Vec::new(),
            tls: None,
            trusted_proxies: Vec::new(),
            max_batch_size: 50,
        }
    }
}

/// `gateway.tokens[]`. `secret` arrives here already resolved from a SecretRef or the vault.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenConfig {
    pub id: String,
    pub secret: comis_secrets::SecretString,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `gateway.tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_path: String,
    pub key_path: String,
    pub ca_path: Option<String>,
    #[serde(default = "yes")]
    pub require_client_cert: bool,
}

fn yes() -> bool {
    true
}

/// `webhooks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub enabled: bool,
    pub path: String,
    pub max_body_bytes: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: false,
            path: "/hooks".to_owned(),
            max_body_bytes: 262_144,
        }
    }
}
