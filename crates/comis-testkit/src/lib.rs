//! # comis-testkit
//!
//! Test-only helpers shared by the crates' integration tests (`publish = false`; only ever a
//! dev-dependency — an architecture test keeps it out of product dependencies).
//!
//! - [`provider`]: [`ProviderServer`], a local HTTP server on `127.0.0.1:0` that speaks the
//!   Anthropic Messages, OpenAI Chat Completions or Ollama `/api/chat` wire format exactly:
//!   it validates requests the way the real API does (answering 400/401 with the real error
//!   shapes), plays a queue of scripted [`Reply`]s as real SSE / NDJSON streams, injects
//!   faults (malformed chunk, truncated stream, 429 with `Retry-After`, 5xx, delays), counts
//!   requests and keeps their bodies for assertions.
//!
//! What it does not: model a provider's intelligence, or its rate limiting beyond what a
//! script says.
#![forbid(unsafe_code)]

pub mod provider;

pub use provider::{Block, ProviderServer, Received, Reply, Wire};
