//! A JSON-RPC client for the local gateway, shared by `comis chat`, `comis approvals` and
//! `comis demo`: the CLI drives the daemon exactly as any other client does, through the front
//! door and with a bearer token.
//!
//! It goes out through the guarded client with one SSRF exception, the gateway's own loopback
//! address: the CLI can reach its daemon and nothing else on the host.

use std::time::Duration;

use comis_net::{ClientConfig, FetchRequest, GuardedClient, SsrfPolicy};
use comis_secrets::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::CliError;

/// A connection to one gateway.
#[derive(Debug, Clone)]
pub struct RpcClient {
    http: GuardedClient,
    base: String,
    token: SecretString,
}

impl RpcClient {
    /// `base` is `http://127.0.0.1:4766` (no trailing slash); `timeout` bounds one call,
    /// which for `agent.execute` includes the whole turn.
    pub fn new(base: &str, token: SecretString, timeout: Duration) -> Result<RpcClient, CliError> {
        let url = url::Url::parse(base)
            .map_err(|e| CliError::Usage(format!("gateway URL {base:?}: {e}")))?;
        let host = url
            .host_str()
            .ok_or_else(|| CliError::Usage(format!("gateway URL {base:?} has no host")))?;
        let policy = SsrfPolicy::with_allow_hosts(&[host])?;
        let config = ClientConfig {
            timeout,
            max_response_bytes: 16 * 1024 * 1024,
            ..ClientConfig::default()
        };
        Ok(RpcClient {
            http: GuardedClient::new(policy, config)?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The client of this home's daemon: address and token as [`crate::config::access`] finds
    /// them.
    pub fn local(timeout: Duration) -> Result<RpcClient, CliError> {
        let home = crate::config::home::path()?;
        let token = crate::config::access::gateway_token(&home)?.ok_or_else(|| {
            CliError::Usage(format!(
                "no gateway token: run `comis init`, or set {}",
                crate::config::access::TOKEN_VAR
            ))
        })?;
        let base = crate::config::access::gateway_base(&home)?;
        RpcClient::new(&base, token, timeout)
    }

    /// `http://host:port` of the gateway.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token (for the WebSocket, which carries it in its URL).
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// Calls `method`, and when the daemon cannot be reached at all says so in words.
    pub async fn call_daemon(&self, method: &str, params: Value) -> Result<Value, CliError> {
        match self.call(method, params).await {
            Err(CliError::Net(e)) if !self.healthy().await => Err(CliError::Usage(format!(
                "cannot reach the comis daemon at {} ({e}); is it running? (`comis daemon start`)",
                self.base
            ))),
            other => other,
        }
    }

    /// `GET /health`: true on a 200.
    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(&format!("{}/health", self.base)).await, Ok(r) if r.status == 200)
    }

    /// Calls `method`; a JSON-RPC error becomes [`CliError::Rpc`].
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CliError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let mut req = FetchRequest::get(format!("{}/rpc", self.base));
        req.method = "POST".to_owned();
        req.headers = vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            (
                "authorization".to_owned(),
                format!("Bearer {}", self.token.expose_secret()),
            ),
        ];
        req.body = Some(serde_json::to_vec(&body).map_err(|e| CliError::Usage(e.to_string()))?);
        let resp = self.http.fetch(req).await?;
        if resp.status == 401 {
            return Err(CliError::Rpc {
                code: 401,
                message: "the gateway refused the token (401)".to_owned(),
            });
        }
        let value: Value = serde_json::from_slice(&resp.body).map_err(|e| CliError::Rpc {
            code: i64::from(resp.status),
            message: format!("unreadable gateway answer: {e}"),
        })?;
        if let Some(err) = value.get("error") {
            return Err(CliError::Rpc {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
            });
        }
        Ok(value.get("result").cloned().unwrap_or(Value::Null))
    }
}
