//! The gateway: the daemon's front door (HTTP, JSON-RPC, WebSocket, OpenAI-compatible API,
//! webhooks), closed unless a caller proves who it is.
//!
//! What it guarantees: every route except `GET /health`, signed webhooks and the platform
//! endpoints the daemon mounts (whose handlers verify the platform's own signature) needs a bearer
//! token (compared in constant time against every configured token) holding the route's or
//! method's scope; every client is rate-limited before any work; bodies, WebSocket messages,
//! batches, connections, header reads and handlers are bounded; a non-loopback bind without
//! tokens is refused; under mTLS the certificate's CN is the caller's identity in events;
//! webhook payloads reach an agent only HMAC-verified, fresh, unreplayed and wrapped as
//! external content. Refusals are events on the [`comis_agent::EventBus`].
//!
//! What it does not: decide what an authenticated caller's turn may do — that is the runtime's
//! checkpoints, reached only through the [`Backend`] port.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod config;
mod openai;
pub mod platform;
pub mod rpc;
mod server;
pub mod tls;
pub mod webhook;
mod ws;

pub use backend::{
    AgentInfo, ApprovalResolution, AuditQuery, Backend, BackendError, BoxFuture, HistoryQuery,
    MemoryQuery, SessionQuery,
};
pub use config::{
    GatewayConfig, HmacAlgorithm, HookConfig, TlsConfig, TokenConfig, WebhooksConfig,
};
pub use platform::{PlatformHandler, PlatformReply};
pub use server::{Gateway, TokenRevoker, serve};
pub use ws::{CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED};

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A configuration value is unsafe or inconsistent (checked before binding).
    #[error("gateway config: {0}")]
    Config(String),
    /// TLS files or settings.
    #[error("gateway tls: {0}")]
    Tls(String),
    /// The address could not be bound.
    #[error("gateway bind: {0}")]
    Bind(String),
}
