//! # comis-guard
//!
//! Every pure detector and transform that the comis checkpoints call: value in, verdict out.
//! Nothing in this crate performs I/O, spawns a task or reads the environment, so each
//! detector can be used alone (from the `comis guard` CLI, from a CI pipeline, from a test) and
//! behaves identically everywhere.
//!
//! ## What this crate guarantees
//! - **One pattern registry.** Every regex and literal list lives in [`patterns`], each regex
//!   compiled once, on first use. Guards select families from it; none carries a private copy.
//! - **Linear time.** Patterns use the `regex` crate (finite automata, no backtracking), so no
//!   input can make a detector take super-linear time.
//! - **No panics.** Construction returns [`GuardError`] if the registry cannot be built;
//!   scanning never fails.
//!
//! ## What it does not guarantee
//! Detectors are heuristics. An input that scores `low` is not proven benign; comis relies on
//! independent layers (sandbox, tool policy, approval gates, output guard) behind these.
#![forbid(unsafe_code)]

pub mod canary;
pub mod classify;
pub mod finding;
pub mod hex;
pub mod input;
pub mod logscrub;
pub mod memscan;
pub mod output;
pub mod patterns;
pub mod policy;
pub mod ratelimit;
pub mod shell;
pub mod skillscan;
pub mod toolout;
pub mod unicode;
pub mod wrap;

pub use finding::{Finding, Severity};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A registry pattern failed to compile. This is a programming error caught by the
    /// registry's own tests; at run time it makes every guard refuse to start (fail closed).
    #[error("pattern registry failed to build: pattern `{name}`: {reason}")]
    Registry { name: &'static str, reason: String },
    /// A configuration value is outside its allowed range.
    #[error("invalid guard configuration: {0}")]
    Config(String),
    /// The operating system's random source failed.
    #[error("random source unavailable: {0}")]
    Random(String),
}
