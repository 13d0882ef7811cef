//! The comis agent runtime: where the guard layers meet a model.
//!
//! One turn runs through the checkpoints of DESIGN.md in order — arrival (input validation,
//! invisible-character strip, input guard, injection rate limiter), context assembly (safety core
//! by capability class, canary, trust-filtered memory, external content wrapped), the budget guard
//! and circuit breaker before every provider call, act (tool policy → action classifier →
//! approval gate → the tool's own validator → sandbox or guarded client), tool results sanitized
//! and wrapped, respond (output guard with the agent's secret values and canary), store (memory
//! write validator, transcript). Every decision is an [`event::Event`] on one [`event::EventBus`].
//!
//! What it guarantees: none of those decisions depends on the model behaving. A blocked input
//! never reaches a provider; a call over budget never leaves the process; a destructive or
//! unknown action never runs without an operator's approval; no reply leaves unscanned.
//!
//! What it does not: judge whether an allowed, approved action was wise.
#![forbid(unsafe_code)]

pub mod approval;
pub mod breaker;
pub mod budget;
pub mod config;
pub mod context;
pub mod error;
pub mod event;
pub mod message;
pub mod provider;
pub mod runtime;
pub mod tool;

pub use error::AgentError;
pub use event::{Event, EventBus, EventKind, EventSink};
