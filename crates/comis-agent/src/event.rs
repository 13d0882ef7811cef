//! The one typed event bus.
//!
//! Every checkpoint decision becomes an [`Event`] with the agent and trace it belongs to. Sinks
//! (the hash-chained audit log, tracing) record it synchronously, so a decision is on disk before
//! the turn goes on; live subscribers (the gateway's WebSocket, metrics) get a broadcast copy and
//! may lag without slowing the turn down.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::broadcast;

/// The kinds of event the runtime emits. The string names are stable: they are the audit log's
/// `kind` column and the names users of the original system search for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    InjectionDetected,
    InjectionRateExceeded,
    InputRejected,
    SecretAccessed,
    ApprovalRequested,
    ApprovalResolved,
    ToolExecuted,
    ToolBlocked,
    BudgetExceeded,
    ContextWarning,
    CircuitStateChanged,
    CanaryLeaked,
    OutputRedacted,
    MemoryWriteBlocked,
    MemoryWriteDowngraded,
    ProviderError,
    NetRequest,
    NetBlocked,
    SenderRejected,
    MessageDropped,
    AuthFailed,
    WebhookRejected,
    RateLimited,
    TokenRevoked,
    ConfigReloaded,
    DaemonStarted,
    DaemonStopped,
}

impl EventKind {
    /// Every kind, for tests and documentation.
    pub const ALL: &'static [EventKind] = &[
        EventKind::InjectionDetected,
        EventKind::InjectionRateExceeded,
        EventKind::InputRejected,
        EventKind::SecretAccessed,
        EventKind::ApprovalRequested,
        EventKind::ApprovalResolved,
        EventKind::ToolExecuted,
        EventKind::ToolBlocked,
        EventKind::BudgetExceeded,
        EventKind::ContextWarning,
        EventKind::CircuitStateChanged,
        EventKind::CanaryLeaked,
        EventKind::OutputRedacted,
        EventKind::MemoryWriteBlocked,
        EventKind::MemoryWriteDowngraded,
        EventKind::ProviderError,
        EventKind::NetRequest,
        EventKind::NetBlocked,
        EventKind::SenderRejected,
        EventKind::MessageDropped,
        EventKind::AuthFailed,
        EventKind::WebhookRejected,
        EventKind::RateLimited,
        EventKind::TokenRevoked,
        EventKind::ConfigReloaded,
        EventKind::DaemonStarted,
        EventKind::DaemonStopped,
    ];

    /// The stable `area:event` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::InjectionDetected => "security:injection_detected",
            EventKind::InjectionRateExceeded => "security:injection_rate_exceeded",
            EventKind::InputRejected => "security:input_rejected",
            EventKind::SecretAccessed => "secret:accessed",
            EventKind::ApprovalRequested => "approval:requested",
            EventKind::ApprovalResolved => "approval:resolved",
            EventKind::ToolExecuted => "tool:executed",
            EventKind::ToolBlocked => "tool:blocked",
            EventKind::BudgetExceeded => "budget:exceeded",
            EventKind::ContextWarning => "budget:context_warning",
            EventKind::CircuitStateChanged => "circuit:state_changed",
            EventKind::CanaryLeaked => "canary:leaked",
            EventKind::OutputRedacted => "output:redacted",
            EventKind::MemoryWriteBlocked => "memory:write_blocked",
            EventKind::MemoryWriteDowngraded => "memory:write_downgraded",
            EventKind::ProviderError => "provider:error",
            EventKind::NetRequest => "net:request",
            EventKind::NetBlocked => "net:blocked",
            EventKind::SenderRejected => "channel:sender_rejected",
            EventKind::MessageDropped => "channel:message_dropped",
            EventKind::AuthFailed => "gateway:auth_failed",
            EventKind::WebhookRejected => "gateway:webhook_rejected",
            EventKind::RateLimited => "gateway:rate_limited",
            EventKind::TokenRevoked => "gateway:token_revoked",
            EventKind::ConfigReloaded => "daemon:config_reloaded",
            EventKind::DaemonStarted => "daemon:started",
            EventKind::DaemonStopped => "daemon:stopped",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the recorded action went ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed / done.
    Allowed,
    /// Allowed with reduced trust or redaction.
    Modified,
    /// Refused by a security rule.
    Denied,
    /// Failed for another reason.
    Failed,
}

impl Outcome {
    /// The audit log's outcome for this one.
    pub fn to_store(self) -> comis_store::audit::Outcome {
        use comis_store::audit::Outcome as S;
        match self {
            Outcome::Allowed => S::Success,
            Outcome::Modified => S::Downgraded,
            Outcome::Denied => S::Denied,
            Outcome::Failed => S::Failure,
        }
    }
}

/// One checkpoint decision.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub outcome: Outcome,
    pub agent_id: Option<String>,
    pub trace_id: Option<String>,
    /// Small, already-sanitized facts (never secret values, never whole messages).
    pub data: Map<String, Value>,
}

impl Event {
    pub fn new(kind: EventKind, outcome: Outcome) -> Event {
        Event {
            kind,
            outcome,
            agent_id: None,
            trace_id: None,
            data: Map::new(),
        }
    }

    #[must_use]
    pub fn agent(mut self, agent_id: &str) -> Event {
        self.agent_id = Some(agent_id.to_owned());
        self
    }

    #[must_use]
    pub fn trace(mut self, trace_id: &str) -> Event {
        self.trace_id = Some(trace_id.to_owned());
        self
    }

    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Event {
        self.data.insert(key.to_owned(), value.into());
        self
    }
}

/// Records events durably. `record` returns the id the record got (the audit sequence number),
/// so callers can cite evidence.
pub trait EventSink: Send + Sync + fmt::Debug {
    fn record(&self, event: &Event) -> Option<i64>;
}

/// An emitted event with the evidence id the first recording sink gave it.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub event: Event,
    pub audit_id: Option<i64>,
}

/// The bus: synchronous sinks, then a broadcast to live subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    sinks: Vec<Arc<dyn EventSink>>,
    live: broadcast::Sender<Emitted>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> EventBus {
        let (live, _) = broadcast::channel(1024);
        EventBus {
            sinks: Vec::new(),
            live,
        }
    }

    /// Adds a durable sink. Call during wiring, before the bus is shared.
    pub fn add_sink(&mut self, sink: Arc<dyn EventSink>) {
        self.sinks.push(sink);
    }

    /// Records `event` in every sink, broadcasts it, and returns the audit id.
    pub fn emit(&self, event: Event) -> Option<i64> {
        let mut audit_id = None;
        for sink in &self.sinks {
            let id = sink.record(&event);
            if audit_id.is_none() {
                audit_id = id;
            }
        }
        // No live subscribers is normal (nobody watching); not an error.
        let _ = self.live.send(Emitted { event, audit_id });
        audit_id
    }

    /// Broadcasts an event that another component already recorded durably (the store audits
    /// approval and memory-write decisions in the same transaction as the change), so the audit
    /// log does not get it twice.
    pub fn publish_recorded(&self, event: Event, audit_id: Option<i64>) {
        let _ = self.live.send(Emitted { event, audit_id });
    }

    /// A live feed of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Emitted> {
        self.live.subscribe()
    }
}

/// Records every read through a scoped secret manager as `secret:accessed` (the name and the
/// decision, never the value) on `bus`.
pub fn secret_observer(bus: EventBus) -> Arc<dyn comis_secrets::SecretAccessObserver> {
    Arc::new(move |e: &comis_secrets::SecretAccessEvent| {
        let outcome = match e.outcome {
            comis_secrets::AccessOutcome::Success => Outcome::Allowed,
            comis_secrets::AccessOutcome::Denied => Outcome::Denied,
            comis_secrets::AccessOutcome::NotFound => Outcome::Failed,
        };
        bus.emit(
            Event::new(EventKind::SecretAccessed, outcome)
                .agent(&e.agent_id)
                .with("secret_name", e.secret_name.as_str()),
        );
    })
}

/// The audit log as a sink: every event is appended to the hash-chained log.
#[derive(Debug)]
pub struct AuditSink {
    store: Arc<comis_store::Store>,
}

impl AuditSink {
    pub fn new(store: Arc<comis_store::Store>) -> AuditSink {
        AuditSink { store }
    }
}

impl EventSink for AuditSink {
    fn record(&self, event: &Event) -> Option<i64> {
        let kind = comis_store::audit::EventType::new(event.kind.as_str()).ok()?;
        let mut new = comis_store::NewAuditEvent::new(kind, event.outcome.to_store());
        if let Some(agent) = &event.agent_id
            && let Ok(id) = comis_store::AgentId::new(agent)
        {
            new = new.agent(&id);
        }
        if let Some(trace) = &event.trace_id {
            new = new.meta("traceId", trace.as_str());
        }
        for (k, v) in &event.data {
            new = new.meta(k, v.clone());
        }
        self.store.audit(new).ok().map(|stored| stored.seq)
    }
}
