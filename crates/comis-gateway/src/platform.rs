//! Platform endpoints: chat platforms (Slack's Events API, Telegram's webhook mode) that push
//! to the daemon, mounted by the daemon without the gateway knowing any platform.
//!
//! Guarantees:
//! - A platform path is `POST` only, checked at bind: well-formed, not under a built-in route
//!   (`/health`, `/metrics`, `/rpc`, `/ws`, `/v1`), not under the generic webhook prefix, not
//!   mounted twice. A bad path refuses the bind (the router would otherwise panic).
//! - No bearer token is asked for: the platform's own signature or secret is the
//!   authentication, and the [`PlatformHandler`] verifies it. The front middleware still applies
//!   (per-IP rate limit, request timeout), and the body is cut at `gateway.httpBodyLimitBytes`
//!   (413) before the handler sees a byte.
//! - A refusal (the reply's `rejected`, or an oversized body) is a
//!   [`EventKind::WebhookRejected`] event with the path, the client address and the reason.
//!
//! Does not: verify anything itself, parse the payload, or start a turn — the handler does.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use comis_agent::event::{Event, EventKind, Outcome};

use crate::GatewayError;
use crate::backend::BoxFuture;
use crate::server::{AppState, client_ip, conn_info, read_body};

/// What a platform handler answers; the gateway sends it as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformReply {
    /// HTTP status (anything outside 200..=599 becomes 500).
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Why the request was refused, for the audit event; `None` when accepted or ignored.
    pub rejected: Option<String>,
}

/// Handles one request to a platform path: the request headers (names lower-case, values that
/// are not visible ASCII left out) and the bounded body. It must verify the platform's
/// signature itself.
pub type PlatformHandler =
    Arc<dyn Fn(Vec<(String, String)>, Bytes) -> BoxFuture<'static, PlatformReply> + Send + Sync>;

/// First path segments the gateway's own routes use.
pub(crate) const RESERVED: [&str; 5] = ["health", "metrics", "rpc", "ws", "v1"];

/// `/` followed by segments of letters, digits, `-` or `_` (no trailing `/`).
pub(crate) fn well_formed(path: &str) -> bool {
    let mut segments = path.split('/');
    segments.next() == Some("")
        && path.len() > 1
        && segments.all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn first_segment(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// Checks the platform paths against each other, the built-in routes and the generic webhook
/// prefix (`None` when webhooks are off).
pub(crate) fn validate(
    platform: &[(String, PlatformHandler)],
    webhook_prefix: Option<&str>,
) -> Result<(), GatewayError> {
    let mut seen: Vec<&str> = Vec::new();
    for (path, _) in platform {
        if !well_formed(path) {
            return Err(GatewayError::Config(format!(
                "platform path '{path}' must be '/' followed by segments of letters, digits, \
                 '-' or '_'"
            )));
        }
        if RESERVED.contains(&first_segment(path)) {
            return Err(GatewayError::Config(format!(
                "platform path '{path}' collides with a gateway route (/health, /metrics, /rpc, \
                 /ws, /v1)"
            )));
        }
        if let Some(prefix) = webhook_prefix.map(|p| p.trim_end_matches('/'))
            && (path == prefix || path.starts_with(&format!("{prefix}/")))
        {
            return Err(GatewayError::Config(format!(
                "platform path '{path}' collides with webhooks.path '{prefix}'"
            )));
        }
        if seen.contains(&path.as_str()) {
            return Err(GatewayError::Config(format!(
                "platform path '{path}' is mounted twice"
            )));
        }
        seen.push(path);
    }
    Ok(())
}

fn rejected(state: &AppState, path: &str, ip: IpAddr, cn: Option<&str>, reason: &str) {
    state
        .metrics
        .webhooks_rejected
        .fetch_add(1, Ordering::Relaxed);
    // The reason is the handler's text, possibly echoing what the sender sent.
    let mut event = Event::new(EventKind::WebhookRejected, Outcome::Denied)
        .with("path", path)
        .with("ip", ip.to_string())
        .with("reason", comis_guard::unicode::display_safe(reason, 200));
    if let Some(cn) = cn {
        event = event.with("client", cn);
    }
    state.events.emit(event);
}

/// One request to a platform path.
pub(crate) async fn deliver(
    State(state): State<Arc<AppState>>,
    path: Arc<str>,
    handler: PlatformHandler,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let conn = conn_info(&parts.extensions);
    let ip = client_ip(&parts.extensions, &conn);
    let body = match read_body(body, state.config.http_body_limit_bytes).await {
        Ok(b) => b,
        Err(r) => {
            let reason = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body too large"
            } else {
                "unreadable body"
            };
            rejected(&state, &path, ip, conn.client_cn.as_deref(), reason);
            return r;
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let reply = handler(headers, body).await;
    match &reply.rejected {
        Some(reason) => rejected(&state, &path, ip, conn.client_cn.as_deref(), reason),
        None => {
            state
                .metrics
                .webhooks_accepted
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    let status = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| (200..600).contains(&s.as_u16()))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = HeaderValue::from_str(&reply.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    (status, [(header::CONTENT_TYPE, content_type)], reply.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for good in ["/webhooks/slack", "/a", "/x-y/z_1"] {
            assert!(well_formed(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "webhooks",
            "/webhooks/",
            "//x",
            "/a//b",
            "/a/{id}",
            "/a/*",
            "/a b",
            "/ä",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
