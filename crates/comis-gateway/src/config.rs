//! `gateway.*` and `webhooks.*`, with the seeds' names and defaults.
//!
//! Guarantees: every key the seeds list for `gateway` deserializes with its documented default;
//! unknown keys are refused (a typo in a security setting must not silently fall back).
//! Not guaranteed here: semantic checks (token length, loopback without tokens, TLS files) — those
//! happen when the gateway binds, see [`crate::Gateway::bind`].

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
    pub rate_limit: RateLimitConfig,
    /// Browser origins allowed to call the gateway cross-origin. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Silences the plain-HTTP warning on a non-loopback bind (it never allows binding without
    /// tokens).
    pub allow_insecure_http: bool,
    /// Peers (IP or CIDR) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    pub http_body_limit_bytes: usize,
    pub ws_max_message_bytes: usize,
    pub ws_message_rate_limit: WsRateLimitConfig,
    pub max_batch_size: usize,
    pub ws_heartbeat_ms: u64,
    /// Accepted for compatibility with the original's config; this gateway serves no web UI.
    pub web: WebConfig,
    /// Open connections at once; further connections are closed on accept.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slowloris) and to finish a TLS handshake.
    pub header_read_timeout_ms: u64,
    /// Time a handler has to produce a response head (agent turns included; streams are not cut).
    pub request_timeout_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 4766,
            tokens: Vec::new(),
            tls: None,
            rate_limit: RateLimitConfig::default(),
            cors_origins: Vec::new(),
            allow_insecure_http: false,
            trusted_proxies: Vec::new(),
            http_body_limit_bytes: 1024 * 1024,
            ws_max_message_bytes: 1024 * 1024,
            ws_message_rate_limit: WsRateLimitConfig::default(),
            max_batch_size: 50,
            ws_heartbeat_ms: 30_000,
            web: WebConfig::default(),
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 300_000,
        }
    }
}

/// `gateway.rateLimit`: per client IP, `/health` exempt.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub window_ms: u64,
    pub max_requests: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            window_ms: 60_000,
            max_requests: 100,
        }
    }
}

/// `gateway.wsMessageRateLimit`: per WebSocket connection.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WsRateLimitConfig {
    pub max_messages: u32,
    pub window_ms: u64,
}

impl Default for WsRateLimitConfig {
    fn default() -> Self {
        WsRateLimitConfig {
            max_messages: 60,
            window_ms: 60_000,
        }
    }
}

/// `gateway.web`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebConfig {
    pub enabled: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { enabled: true }
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
    /// The shared HMAC secret for hooks that have none of their own.
    pub token: Option<comis_secrets::SecretString>,
    pub max_body_bytes: usize,
    /// Freshness window of `x-webhook-timestamp`, seconds, both directions.
    pub max_age_sec: u64,
    pub hooks: Vec<HookConfig>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            enabled: false,
            path: "/hooks".to_owned(),
            token: None,
            max_body_bytes: 262_144,
            max_age_sec: 300,
            hooks: Vec::new(),
        }
    }
}

/// `webhooks.hooks[]`: one named endpoint `POST <path>/<name>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookConfig {
    pub name: String,
    /// Falls back to `webhooks.token`; a hook with neither refuses to start.
    #[serde(default)]
    pub secret: Option<comis_secrets::SecretString>,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// The agent that receives the payload; the default agent when absent.
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Session key of the turn; `webhook:<name>` when absent.
    #[serde(default)]
    pub session_key: Option<String>,
}

/// The MAC a hook's sender uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
    Sha384,
    Sha512,
}

impl HmacAlgorithm {
    /// The prefix senders may put before the signature (`sha256=`).
    pub fn name(self) -> &'static str {
        match self {
            HmacAlgorithm::Sha256 => "sha256",
            HmacAlgorithm::Sha384 => "sha384",
            HmacAlgorithm::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha384 => 48,
            HmacAlgorithm::Sha512 => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_keys_and_defaults() {
        let c: GatewayConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 4766));
        assert_eq!(
            (c.rate_limit.window_ms, c.rate_limit.max_requests),
            (60_000, 100)
        );
        assert_eq!(c.http_body_limit_bytes, 1_048_576);
        assert_eq!(c.ws_max_message_bytes, 1_048_576);
        assert_eq!(
            (
                c.ws_message_rate_limit.max_messages,
                c.ws_message_rate_limit.window_ms
            ),
            (60, 60_000)
        );
        assert_eq!((c.max_batch_size, c.ws_heartbeat_ms), (50, 30_000));
        assert!(c.enabled && c.web.enabled && !c.allow_insecure_http);

        let c: GatewayConfig = serde_json::from_value(serde_json::json!({
            "host": "0.0.0.0",
            "tokens": [{"id": "default", "secret": "s".repeat(32), "scopes": ["*"]}],
            "tls": {"certPath": "c", "keyPath": "k", "caPath": "ca"},
            "rateLimit": {"maxRequests": 5},
            "corsOrigins": ["https://a.example"],
            "trustedProxies": ["10.0.0.0/8"],
            "wsMessageRateLimit": {"maxMessages": 10, "windowMs": 1000},
            "allowInsecureHttp": true,
            "web": {"enabled": false},
        }))
        .unwrap();
        assert!(
            c.tls.unwrap().require_client_cert,
            "requireClientCert defaults to true"
        );
        assert_eq!(c.rate_limit.window_ms, 60_000);
        assert_eq!(c.ws_message_rate_limit.max_messages, 10);

        let typo = serde_json::from_value::<GatewayConfig>(serde_json::json!({"tokns": []}));
        assert!(typo.is_err());
    }

    #[test]
    fn webhook_keys_and_defaults() {
        let w: WebhooksConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(!w.enabled);
        assert_eq!(
            (w.path.as_str(), w.max_body_bytes, w.max_age_sec),
            ("/hooks", 262_144, 300)
        );
        let w: WebhooksConfig = serde_json::from_value(serde_json::json!({
            "enabled": true,
            "token": "t".repeat(32),
            "hooks": [{"name": "gh", "algorithm": "sha512", "agentId": "ops", "sessionKey": "s"}],
        }))
        .unwrap();
        assert_eq!(w.hooks[0].algorithm, HmacAlgorithm::Sha512);
        assert!(
            serde_json::from_value::<WebhooksConfig>(
                serde_json::json!({"hooks": [{"name": "x", "algorithm": "md5"}]})
            )
            .is_err()
        );
    }
}
