//! # comis-net
//!
//! The outbound network of comis: the only crate that speaks HTTP to the world (an
//! architecture test keeps HTTP clients out of every other crate).
//!
//! - [`ip`] and [`policy`]: the SSRF guard. Every URL is parsed the WHATWG way, every
//!   address judged against the IANA special-purpose ranges (embedded IPv4 included), local
//!   names refused, exceptions only from `security.ssrf.allowHosts`. [`check_url`] is what
//!   `comis guard url` prints.
//! - [`resolve`]: the DNS seam ([`Resolver`]) and the pinning resolver handed to the HTTP
//!   client: one lookup per connection, refused if **any** answer is blocked, and the
//!   connection goes only to the addresses that were checked.
//! - [`client`]: [`GuardedClient`], the outbound HTTP client: redirects followed by our code
//!   (each hop re-checked, at most 5), bounded response size and time, no proxy from the
//!   environment, verified TLS (rustls).
//! - [`broker`]: the credential broker, an HTTPS proxy on a Unix socket for sandboxes in
//!   `network: broker` mode that swaps placeholders for real secrets at the network boundary,
//!   and [`relay`], the tiny TCP-to-socket relay that runs inside the sandbox.
//!
//! - [`ws`]: the WebSocket client ([`ws::connect`]), same SSRF checks and DNS pinning.
//!
//! ## What this crate does not defend
//! - A process that opens its own sockets: only the OS sandbox (no network, or broker-only)
//!   stops that; this crate guards the daemon's own requests.
//! - What an allowed public server sends back: responses are bounded in size and time, and
//!   must be treated as untrusted external content by the caller.
#![forbid(unsafe_code)]

pub mod audit;
pub mod broker;
pub mod client;
pub mod ip;
pub mod policy;
pub mod relay;
pub mod resolve;
mod tls;
pub mod ws;

pub use audit::{EgressContext, NetAudit, NetEvent};
pub use client::{
    ClientConfig, FetchRequest, FetchResponse, FetchStream, GuardedClient, StreamLimits,
};
pub use policy::{Refusal, SsrfPolicy, UrlVerdict, check_url};
pub use resolve::{LookupFuture, Resolver, SystemResolver};
pub use tls::{TlsTcpStream, connect_tls, parse_pem_certs};

/// The one error type of this crate. Messages name the host, the URL or the setting
/// concerned, never a secret value or a session token.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The SSRF guard refused the URL, a redirect target or a resolved address.
    #[error("blocked: {0}")]
    Blocked(Refusal),
    /// More redirects than allowed.
    #[error("too many redirects (more than {max})")]
    TooManyRedirects { max: usize },
    /// A redirect response without a usable `Location`.
    #[error("redirect from {url} has no valid Location: {detail}")]
    BadRedirect { url: String, detail: String },
    /// The response body is larger than the limit.
    #[error("response from {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    /// The whole exchange took longer than the limit.
    #[error("request to {url} timed out after {secs} s")]
    Timeout { url: String, secs: u64 },
    /// Connecting, TLS or HTTP failed.
    #[error("request to {url} failed: {detail}")]
    Transport { url: String, detail: String },
    /// A malformed request (method, header) built by the caller.
    #[error("invalid request: {0}")]
    Request(String),
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// The broker's certificate authority could not be created or loaded.
    #[error("broker CA: {0}")]
    Ca(String),
    /// A filesystem or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl NetError {
    /// The SSRF refusal, when this error is one.
    #[must_use]
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            NetError::Blocked(r) => Some(r),
            _ => None,
        }
    }
}

/// Runs a future to completion on a fresh single-threaded runtime, for synchronous callers
/// such as the CLI (the daemon calls the async API on its own runtime).
///
/// # Errors
/// [`NetError::Io`] when the runtime cannot be built; otherwise the future's own result.
pub fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|source| NetError::Io {
            what: "starting the network runtime".into(),
            source,
        })?
        .block_on(fut)
}
