//! LLM providers behind one object-safe trait.
//!
//! A provider turns a [`ChatRequest`] into a [`ChatResponse`], speaking its service's wire format
//! over the guarded client from `comis-net`. Retries with backoff for what is safe to retry (429,
//! 5xx, connection failures before any byte of the answer); a clear [`ProviderError`] for the
//! rest. Circuit breaking and budgets are the caller's job, not the provider's.

pub mod scripted;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::message::{ChatRequest, ChatResponse, StreamDelta};

pub mod anthropic;
pub mod factory;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod sse;

pub use factory::build_provider;
pub use http::ProviderHttp;

/// A boxed future, so providers can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Receives streamed deltas as they arrive.
pub type DeltaSink<'a> = &'a (dyn Fn(StreamDelta) + Send + Sync);

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// 429 after retries.
    RateLimited { retry_after_ms: Option<u64> },
    /// 5xx after retries.
    Server { status: u16, message: String },
    /// 4xx other than 429: our request or key is wrong; not retried.
    Rejected { status: u16, message: String },
    /// The answer could not be parsed (malformed JSON, truncated stream).
    Malformed(String),
    /// No answer in time.
    Timeout,
    /// Could not connect, or the network layer refused.
    Transport(String),
    /// The API key named in config is missing or not allowed for this agent.
    MissingKey(String),
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::RateLimited { .. } => write!(f, "rate limited by the provider"),
            ProviderError::Server { status, message } => {
                write!(f, "server error {status}: {message}")
            }
            ProviderError::Rejected { status, message } => {
                write!(f, "request rejected {status}: {message}")
            }
            ProviderError::Malformed(m) => write!(f, "malformed response: {m}"),
            ProviderError::Timeout => write!(f, "timed out"),
            ProviderError::Transport(m) => write!(f, "transport: {m}"),
            ProviderError::MissingKey(name) => write!(f, "API key {name:?} is not available"),
        }
    }
}

impl std::error::Error for ProviderError {}

/// One configured model endpoint.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider id from config (`anthropic`, `local-vllm`, `scripted`).
    fn id(&self) -> &str;

    /// Sends one request; streams text deltas to `deltas` when the wire format streams.
    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>>;
}
