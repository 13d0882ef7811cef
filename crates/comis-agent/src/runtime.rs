//! The runtime's public face: what the gateway, the channels and the CLI call.
//!
//! CONTRACT (lead, start of issue 7): the shapes below are what other crates code against. The
//! loop behind them is built in this crate; gateway and channels must not reach past them.

use serde::Serialize;

use crate::message::Usage;

/// Where a message came from. Untrusted by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    /// `gateway`, `irc`, `email`, `telegram`, …
    pub channel: String,
    /// Platform sender id (nick mask, address, user id, token id).
    pub sender: String,
}

/// One inbound message for an agent.
#[derive(Debug, Clone)]
pub struct TurnRequest {
    pub agent_id: String,
    /// Conversation key; history and transcript are per session.
    pub session: String,
    pub text: String,
    pub origin: Origin,
    /// Caller-supplied trace id (for correlation); the runtime makes one when absent.
    pub trace_id: Option<String>,
}

/// Why a turn ended without a normal model answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Arrival checkpoint refused the input; the model was not called.
    InputBlocked,
    /// Budget or context guard refused before the provider call.
    BudgetExceeded,
    /// Circuit open: fallback answer, provider not called.
    CircuitOpen,
    /// `maxSteps` reached.
    StepLimit,
    /// The provider failed.
    ProviderFailed,
}

/// The answer to a turn: always already through the output guard.
#[derive(Debug, Clone, Serialize)]
pub struct TurnReply {
    pub text: String,
    pub stopped: Option<Stopped>,
    pub usage: Usage,
    pub trace_id: String,
    /// Audit ids of the security events this turn produced (evidence for the demo and tests).
    pub audit_ids: Vec<i64>,
}

/// Live progress of a turn, for streaming clients.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// Reply text that has passed the output guard.
    Text {
        text: String,
    },
    ToolStarted {
        action: String,
    },
    ApprovalRequested {
        id: String,
        action: String,
        summary: String,
    },
    ApprovalResolved {
        id: String,
        approved: bool,
    },
}
