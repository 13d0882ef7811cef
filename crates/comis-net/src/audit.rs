//! Audit events of the outbound network: every credential injection, every broker denial and
//! every blocked egress, each with the agent id and trace id of the run that caused it.
//!
//! **Guarantees.** Events carry names (host, path without query, binding, secret name), never
//! a secret value or a session token; text that came from the agent is bounded and stripped
//! of control characters before it is put in an event.
//!
//! **Does not** store or ship events: the daemon connects a [`NetAudit`] to its event bus.

use serde::Serialize;

/// Who caused a request: the agent and the trace of its run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EgressContext {
    pub agent_id: String,
    pub trace_id: String,
}

impl EgressContext {
    #[must_use]
    pub fn new(agent_id: impl Into<String>, trace_id: impl Into<String>) -> Self {
        Self {
            agent_id: agent_id.into(),
            trace_id: trace_id.into(),
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NetEvent {
    /// The broker put a real credential into a request and forwarded it.
    #[serde(rename = "broker:inject")]
    Inject {
        #[serde(flatten)]
        context: EgressContext,
        host: String,
        path: String,
        binding: String,
        secret: String,
    },
    /// The broker refused a request before anything went upstream.
    #[serde(rename = "broker:deny")]
    Deny {
        /// Empty when the token did not identify a session.
        #[serde(flatten)]
        context: EgressContext,
        status: u16,
        host: String,
        reason: String,
    },
    /// The SSRF guard refused an outbound request (a URL, a redirect hop or a resolved
    /// address).
    #[serde(rename = "egress:blocked")]
    BlockedEgress {
        #[serde(flatten)]
        context: EgressContext,
        url: String,
        finding: String,
        reason: String,
    },
}

/// Receives every [`NetEvent`].
pub trait NetAudit: Send + Sync {
    fn record(&self, event: &NetEvent);
}

impl<F: Fn(&NetEvent) + Send + Sync> NetAudit for F {
    fn record(&self, event: &NetEvent) {
        self(event);
    }
}

/// An audit sink that drops events (for callers that have no bus yet, e.g. the CLI).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl NetAudit for NoAudit {
    fn record(&self, _event: &NetEvent) {}
}

/// Agent-supplied text made safe for an event: control characters replaced, at most `max`
/// characters.
pub(crate) fn printable(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn events_serialize_flat_with_ids() {
        let e = NetEvent::Deny {
            context: EgressContext::new("a1", "t1"),
            status: 407,
            host: "api.anthropic.com".into(),
            reason: "missing token".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "broker:deny");
        assert_eq!(v["agent_id"], "a1");
        assert_eq!(v["trace_id"], "t1");
        assert_eq!(v["status"], 407);
    }

    #[test]
    fn printable_bounds_and_strips() {
        assert_eq!(printable("a\nb", 10), "a\u{FFFD}b");
        assert_eq!(printable(&"x".repeat(20), 5), "xxxxx…");
    }
}
