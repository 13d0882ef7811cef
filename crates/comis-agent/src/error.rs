//! The crate's one error type.

use thiserror::Error;

/// Everything the runtime can fail with. Each variant is a clear, reportable reason; none of them
/// takes the daemon down.
#[derive(Debug, Error)]
pub enum AgentError {
    /// The named agent is not configured.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// Configuration that cannot be used (named key and reason).
    #[error("invalid config {key}: {reason}")]
    Config { key: String, reason: String },
    /// A provider failed in a way that is not retried (or retries ran out).
    #[error("provider {provider}: {reason}")]
    Provider { provider: String, reason: String },
    /// A guard layer could not be built.
    #[error(transparent)]
    Guard(#[from] comis_guard::GuardError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] comis_store::StoreError),
    /// Secrets failed (a missing secret refuses the request).
    #[error(transparent)]
    Secrets(#[from] comis_secrets::SecretsError),
    /// Outbound network failed or was refused.
    #[error(transparent)]
    Net(#[from] comis_net::NetError),
    /// Chat-button callback data that is malformed, forged or expired.
    #[error("approval callback refused: {0}")]
    Callback(&'static str),
    /// The runtime is shutting down.
    #[error("shutting down")]
    ShuttingDown,
}
