//! The runtime's public face and the loop behind it: what the gateway, the channels and the CLI
//! call.
//!
//! CONTRACT (lead, start of issue 7): [`TurnRequest`], [`TurnReply`], [`TurnEvent`], [`Origin`]
//! and [`Stopped`] are what other crates code against; gateway and channels must not reach past
//! them and [`Runtime`].
//!
//! What one [`Runtime::execute`] guarantees, in order:
//! 1. **Arrival.** `validate_input` (over 100,000 characters, NUL, whitespace ratio, repetition)
//!    refuses with [`INPUT_BLOCKED_TEXT`]; invisible characters are stripped before the model sees
//!    the text; the input guard's `block` refuses, `reinforce`/`warn` add the safety
//!    reinforcement; the per-sender rate limiter escalates. A refused input never reaches a
//!    provider ([`Stopped::InputBlocked`]).
//! 2. **Context.** Safety core by capability class, the session's canary, trust-filtered memory,
//!    tool schemas filtered by the agent's tool policy, a history window; every message of the
//!    turn is written to the transcript (a transcript that cannot be written fails the turn).
//! 3. **Budget and circuit.** Before every provider call: the context-window guard (warn 80 %,
//!    block 95 %) and the per-execution / hourly / daily budget with the request's estimate
//!    ([`crate::budget`]); a refused call never reaches the provider ([`Stopped::BudgetExceeded`]).
//!    Then the agent's circuit breaker for that provider and model ([`crate::breaker`]): while
//!    it is open the provider is not called and the turn ends with [`CIRCUIT_OPEN_TEXT`]
//!    ([`Stopped::CircuitOpen`]). Every provider error is a `provider:error` event (provider,
//!    model, reason; the message passes the output guard, so no key is echoed into the log).
//!    `maxSteps` bounds tool calls per message ([`Stopped::StepLimit`]).
//! 4. **Act.** Unknown tool, policy refusal, invalid arguments: an error result to the model and
//!    a `tool:blocked` event, never a crash. Destructive and unknown actions wait for the
//!    approval gate; nothing in the arguments counts as approval. Results go through the tool
//!    output sanitizer and, when external, the content wrapper.
//! 5. **Respond.** Every assistant text, every text a `message.*` tool sends and every refusal
//!    passes the output guard (the agent's reachable secret values and the canary registered)
//!    before it is stored, streamed on `live` or returned.
//!
//! What it does not: stream raw provider deltas (text is emitted per finished, guarded message),
//! retry a failed provider (the provider does; then the fallback answer), or share circuit
//! state between agents (each agent has its own breakers, as each has its own budget).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use comis_guard::canary::{CanaryKey, CanaryToken};
use comis_guard::classify::{ActionClass, Classifier, ClassifierBuilder};
use comis_guard::input::{Action as InputVerdict, InputGuard, InputGuardConfig, validate_input};
use comis_guard::output::OutputGuard;
use comis_guard::policy::ToolPolicy;
use comis_guard::ratelimit::{InjectionRateLimiter, RateLevel, RateLimitConfig};
use comis_guard::toolout::ToolOutputSanitizer;
use comis_guard::unicode::{display_safe, strip_invisible};
use comis_guard::wrap::{ContentWrapper, SourceKind, WrapOptions};
use comis_secrets::manager::SecretAccess;
use comis_secrets::{ExposeSecret, ScopedSecretManager, SecretAllowlist, SecretManager};
use comis_store::transcript::MAX_MESSAGE_BYTES;
use comis_store::{AgentId, NewMessage, Role as StoreRole, Store};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::AgentError;
use crate::approval::{ApprovalGate, ApprovalRequest, PendingApproval, Resolution};
use crate::breaker::{CallError, CircuitBreakers, Clock, SystemClock};
use crate::budget::{BudgetGuard, ContextVerdict, context_verdict, estimate_prompt_tokens};
use crate::config::{AgentConfig, ApprovalsConfig, ProvidersConfig};
use crate::context::{PromptParts, SecurityLevel, recall, system_prompt};
use crate::event::{Event, EventBus, EventKind, Outcome};
use crate::message::{
    ChatMessage, ChatRequest, ChatResponse, ContentBlock, Role, ToolSchema, Usage,
};
use crate::provider::{Provider, ProviderError};
use crate::tool::{Services, Tool, ToolContext, ToolError, wire_name};

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

/// The answer to a turn: always already through the output guard. Serialized in camelCase,
/// like every other gateway payload (`traceId`, `auditIds`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
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

/// The refusal when the arrival checkpoint blocks a message (the original's wording).
pub const INPUT_BLOCKED_TEXT: &str = "Message blocked by security policy.";
/// The reply when `maxSteps` tool calls have been made for one message.
pub const STEP_LIMIT_TEXT: &str = "Step limit reached";
/// The fallback answer when the provider fails.
pub const PROVIDER_FAILED_TEXT: &str =
    "Sorry, the model is not available right now. Please try again later.";
/// The fallback answer when the circuit breaker is open.
pub const CIRCUIT_OPEN_TEXT: &str =
    "The model is temporarily unavailable (circuit open). Please try again later.";

/// Why a provider call did not produce an answer. `CircuitOpen`: the agent's breaker for the
/// provider and model is open and the provider was not called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    Provider(ProviderError),
    CircuitOpen,
}

/// A daemon without channels, sub-agents or gateway tokens: every service refuses. For the
/// CLI's one-shot runs, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServices;

impl Services for NoServices {
    fn send_message<'a>(
        &'a self,
        _channel: &'a str,
        _chat: &'a str,
        _text: &'a str,
    ) -> crate::provider::BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("no channels are running".to_owned()) })
    }
    fn list_channels(&self) -> Vec<String> {
        Vec::new()
    }
    fn spawn_agent<'a>(
        &'a self,
        _parent: &'a str,
        _depth: u32,
        _task: String,
    ) -> crate::provider::BoxFuture<'a, Result<String, String>> {
        Box::pin(async { Err("sub-agents are not available".to_owned()) })
    }
    fn revoke_token(&self, _id: &str, _by: &str) -> Result<(), String> {
        Err("no gateway is running".to_owned())
    }
    fn delete_agent(&self, _id: &str) -> Result<(), String> {
        Err("no fleet is running".to_owned())
    }
}

/// Builds a [`Runtime`]. Everything not set has a safe default: no tools, no secrets, no
/// sandbox (exec refused), no HTTP client (fetch refused), [`NoServices`], a random canary key,
/// the seeds' approval timings.
pub struct RuntimeBuilder {
    store: Arc<Store>,
    events: EventBus,
    home: PathBuf,
    agents: BTreeMap<String, AgentConfig>,
    providers: BTreeMap<String, Arc<dyn Provider>>,
    providers_config: ProvidersConfig,
    secrets: Option<Arc<SecretManager>>,
    known_secrets: Vec<String>,
    tools: Vec<Arc<dyn Tool>>,
    services: Arc<dyn Services>,
    sandbox: Option<Arc<comis_sandbox::Sandbox>>,
    http: Option<comis_net::GuardedClient>,
    canary_key: Option<CanaryKey>,
    approvals: ApprovalsConfig,
    callback_key: Option<Vec<u8>>,
    input_guard: InputGuardConfig,
    rate_limit: RateLimitConfig,
    classifier: Option<Classifier>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    /// Sets every agent (`agents` config section).
    #[must_use]
    pub fn agents(mut self, agents: BTreeMap<String, AgentConfig>) -> Self {
        self.agents = agents;
        self
    }

    /// Adds one agent.
    #[must_use]
    pub fn agent(mut self, id: impl Into<String>, config: AgentConfig) -> Self {
        self.agents.insert(id.into(), config);
        self
    }

    /// Sets every provider, keyed by `providers.entries` id.
    #[must_use]
    pub fn providers(mut self, providers: BTreeMap<String, Arc<dyn Provider>>) -> Self {
        self.providers = providers;
        self
    }

    /// Adds one provider under `id`.
    #[must_use]
    pub fn provider(mut self, id: impl Into<String>, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(id.into(), provider);
        self
    }

    /// The `providers` section: read for each provider's `capabilities.capabilityClass`
    /// (absent → locked safety core).
    #[must_use]
    pub fn providers_config(mut self, config: ProvidersConfig) -> Self {
        self.providers_config = config;
        self
    }

    /// The daemon's secrets. Each agent gets a [`ScopedSecretManager`] over its
    /// `secrets.allow` list, and the values it allows (8+ characters) are registered with its
    /// output guard.
    #[must_use]
    pub fn secrets(mut self, secrets: SecretManager) -> Self {
        self.secrets = Some(Arc::new(secrets));
        self
    }

    /// Secret names whose values no agent's reply may contain, whatever its allow list (the
    /// gateway token, channel bot tokens, other agents' provider keys).
    #[must_use]
    pub fn known_secrets(mut self, names: Vec<String>) -> Self {
        self.known_secrets = names;
        self
    }

    #[must_use]
    pub fn tools(mut self, tools: Vec<Arc<dyn Tool>>) -> Self {
        self.tools = tools;
        self
    }

    #[must_use]
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    #[must_use]
    pub fn services(mut self, services: Arc<dyn Services>) -> Self {
        self.services = services;
        self
    }

    #[must_use]
    pub fn sandbox(mut self, sandbox: Arc<comis_sandbox::Sandbox>) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    #[must_use]
    pub fn http(mut self, client: comis_net::GuardedClient) -> Self {
        self.http = Some(client);
        self
    }

    /// The canary key (persist it, so a restarted daemon recognises old sessions' tokens).
    #[must_use]
    pub fn canary_key(mut self, key: CanaryKey) -> Self {
        self.canary_key = Some(key);
        self
    }

    #[must_use]
    pub fn approvals(mut self, config: ApprovalsConfig) -> Self {
        self.approvals = config;
        self
    }

    /// The key that signs chat-button callback data.
    #[must_use]
    pub fn callback_key(mut self, key: &[u8]) -> Self {
        self.callback_key = Some(key.to_vec());
        self
    }

    #[must_use]
    pub fn input_guard(mut self, config: InputGuardConfig) -> Self {
        self.input_guard = config;
        self
    }

    #[must_use]
    pub fn rate_limit(mut self, config: RateLimitConfig) -> Self {
        self.rate_limit = config;
        self
    }

    /// A sealed classifier instead of [`default_classifier`].
    #[must_use]
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// The clock of the circuit breakers (default [`SystemClock`]); tests pass a
    /// [`crate::breaker::ManualClock`] to reach the reset timeout without sleeping.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates everything and builds the runtime. Pending approvals left by a previous run
    /// are denied here (`system:restart`).
    ///
    /// # Errors
    /// [`AgentError::Config`] for an agent whose provider is missing, an invalid agent id, a
    /// duplicate tool, a workspace that cannot be created; [`AgentError::Guard`] for a tool
    /// policy or guard that cannot be built; [`AgentError::Store`].
    pub fn build(self) -> Result<Runtime, AgentError> {
        let mut by_wire: HashMap<String, Arc<dyn Tool>> = HashMap::new();
        for tool in &self.tools {
            let wire = wire_name(tool.action());
            if by_wire.insert(wire.clone(), Arc::clone(tool)).is_some() {
                return Err(AgentError::Config {
                    key: "tools".into(),
                    reason: format!("two tools have the wire name {wire}"),
                });
            }
        }
        let mut agents = HashMap::new();
        for (id, config) in self.agents {
            let agent_id = AgentId::new(&id).map_err(|e| AgentError::Config {
                key: format!("agents.{id}"),
                reason: e.to_string(),
            })?;
            let provider = self
                .providers
                .get(&config.provider)
                .cloned()
                .ok_or_else(|| AgentError::Config {
                    key: format!("agents.{id}.provider"),
                    reason: format!("no provider {:?} is configured", config.provider),
                })?;
            let class = self
                .providers_config
                .entries
                .get(&config.provider)
                .map_or("unknown", |e| e.capabilities.capability_class.as_str());
            let tp = &config.skills.tool_policy;
            let policy = ToolPolicy::new(&tp.profile, &tp.allow, &tp.deny)?;
            let mut output = OutputGuard::new()?;
            let mut scoped = None;
            if let Some(secrets) = &self.secrets {
                let allow = SecretAllowlist::new(&config.secrets.allow)?;
                // The values this agent can reach, plus the daemon-wide ones named by the
                // operator. Not every name in the manager: it may hold the whole environment,
                // and redacting `$HOME` or `$USER` from every reply would be noise.
                let values: Vec<comis_secrets::SecretString> = secrets
                    .keys()
                    .into_iter()
                    .filter(|name| allow.allows(name) || self.known_secrets.contains(name))
                    .filter_map(|name| secrets.get(&name))
                    .collect();
                output.register_secrets(values.iter().map(|v| v.expose_secret()))?;
                let base: Arc<dyn SecretAccess + Send + Sync> = secrets.clone();
                scoped = Some(Arc::new(ScopedSecretManager::new(
                    base,
                    id.clone(),
                    allow,
                    crate::event::secret_observer(self.events.clone()),
                )));
            }
            let workspace = config
                .workspace
                .as_ref()
                .map_or_else(|| self.home.join("workspaces").join(&id), PathBuf::from);
            std::fs::create_dir_all(&workspace).map_err(|e| AgentError::Config {
                key: format!("agents.{id}.workspace"),
                reason: format!("{}: {e}", workspace.display()),
            })?;
            let sandbox = if config.skills.exec_sandbox.enabled == "never" {
                None
            } else {
                self.sandbox.clone()
            };
            let breakers = CircuitBreakers::new(
                config.circuit_breaker.clone(),
                self.events.clone(),
                Arc::clone(&self.clock),
            )
            .for_agent(id.clone());
            agents.insert(
                id.clone(),
                Arc::new(AgentState {
                    breakers,
                    id,
                    agent_id,
                    level: SecurityLevel::for_class(class),
                    budget: BudgetGuard::new(config.budgets.clone()),
                    config,
                    provider,
                    policy,
                    output,
                    workspace,
                    sandbox,
                    secrets: scoped,
                }),
            );
        }
        self.store.deny_pending_approvals()?;
        let canary_key = match self.canary_key {
            Some(k) => k,
            None => CanaryKey::generate()?,
        };
        let approvals = ApprovalGate::new(
            Arc::clone(&self.store),
            self.events.clone(),
            self.approvals,
            self.callback_key.as_deref(),
        )?;
        Ok(Runtime {
            agents,
            tools: by_wire,
            store: self.store,
            events: self.events,
            services: self.services,
            http: self.http,
            canary_key,
            approvals,
            input_guard: InputGuard::new(self.input_guard)?,
            rate_limiter: Mutex::new(InjectionRateLimiter::new(self.rate_limit)?),
            sanitizer: ToolOutputSanitizer::new()?,
            wrapper: comis_guard::wrap::global()?,
            classifier: match self.classifier {
                Some(c) => c,
                None => default_classifier()?,
            },
            shutting_down: AtomicBool::new(false),
        })
    }
}

/// The guard's built-in table plus the classes of this crate's tools that the table does not
/// name: `file.list` reads, `file.edit` and `agents.spawn` mutate (a sub-agent has its own
/// budget and its own gates). Every other unknown action stays destructive.
///
/// # Errors
/// [`AgentError::Guard`] (never for these names).
pub fn default_classifier() -> Result<Classifier, AgentError> {
    let mut b = ClassifierBuilder::with_defaults();
    b.register("file.list", ActionClass::Read)?;
    b.register("file.edit", ActionClass::Mutate)?;
    b.register("agents.spawn", ActionClass::Mutate)?;
    Ok(b.seal())
}

#[derive(Debug)]
struct AgentState {
    id: String,
    agent_id: AgentId,
    config: AgentConfig,
    provider: Arc<dyn Provider>,
    level: SecurityLevel,
    policy: ToolPolicy,
    budget: BudgetGuard,
    output: OutputGuard,
    workspace: PathBuf,
    sandbox: Option<Arc<comis_sandbox::Sandbox>>,
    secrets: Option<Arc<ScopedSecretManager>>,
    /// One breaker per provider and model this agent calls.
    breakers: CircuitBreakers,
}

/// The agent runtime: one per daemon, shared by every channel (wrap it in an `Arc`).
pub struct Runtime {
    agents: HashMap<String, Arc<AgentState>>,
    tools: HashMap<String, Arc<dyn Tool>>,
    store: Arc<Store>,
    events: EventBus,
    services: Arc<dyn Services>,
    http: Option<comis_net::GuardedClient>,
    canary_key: CanaryKey,
    approvals: ApprovalGate,
    input_guard: InputGuard,
    rate_limiter: Mutex<InjectionRateLimiter>,
    sanitizer: ToolOutputSanitizer,
    /// The process-wide wrapper (shared with the gateway).
    wrapper: &'static ContentWrapper,
    classifier: Classifier,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One turn's running state.
struct Turn<'a> {
    agent: &'a AgentState,
    trace: String,
    channel: String,
    session: String,
    sender: String,
    canary: CanaryToken,
    live: Option<&'a UnboundedSender<TurnEvent>>,
    audit_ids: Vec<i64>,
    usage: Usage,
    used: u64,
    depth: u32,
}

enum ActResult {
    Result { content: String, is_error: bool },
    Stop(Stopped, String),
}

impl Runtime {
    /// Starts a builder.
    pub fn builder(
        store: Arc<Store>,
        events: EventBus,
        home: impl Into<PathBuf>,
    ) -> RuntimeBuilder {
        RuntimeBuilder {
            store,
            events,
            home: home.into(),
            agents: BTreeMap::new(),
            providers: BTreeMap::new(),
            providers_config: ProvidersConfig::default(),
            secrets: None,
            known_secrets: Vec::new(),
            tools: Vec::new(),
            services: Arc::new(NoServices),
            sandbox: None,
            http: None,
            canary_key: None,
            approvals: ApprovalsConfig::default(),
            callback_key: None,
            input_guard: InputGuardConfig::default(),
            rate_limit: RateLimitConfig::default(),
            classifier: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The approval gate: list pending requests, resolve them, sign and verify chat buttons.
    pub fn approvals(&self) -> &ApprovalGate {
        &self.approvals
    }

    /// Pending approval requests, oldest first.
    pub fn pending_approvals(&self) -> Vec<PendingApproval> {
        self.approvals.pending()
    }

    /// Resolves an approval request (`id` or a 4+ digit prefix) on behalf of operator `by`.
    ///
    /// # Errors
    /// As [`ApprovalGate::resolve`].
    pub fn resolve_approval(
        &self,
        id: &str,
        approved: bool,
        by: &str,
    ) -> Result<Resolution, AgentError> {
        self.approvals.resolve(id, approved, by)
    }

    /// The event bus the runtime emits on.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The configured agent ids.
    pub fn agent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.agents.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The agent's secret manager, limited to its `secrets.allow` list (for its provider key).
    pub fn scoped_secrets(&self, agent_id: &str) -> Option<Arc<ScopedSecretManager>> {
        self.agents.get(agent_id)?.secrets.clone()
    }

    /// Refuses new turns and denies every pending approval.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.approvals.shutdown();
    }

    /// Runs one turn of a top-level agent. `live` receives progress: guarded text, tool starts,
    /// approval requests and resolutions.
    ///
    /// # Errors
    /// [`AgentError::UnknownAgent`], [`AgentError::ShuttingDown`], [`AgentError::Store`] when
    /// the transcript cannot be written (the turn is not run unrecorded). Every checkpoint
    /// refusal is a normal [`TurnReply`] with `stopped` set, not an error.
    pub async fn execute(
        &self,
        req: TurnRequest,
        live: Option<UnboundedSender<TurnEvent>>,
    ) -> Result<TurnReply, AgentError> {
        self.execute_at_depth(req, live, 0).await
    }

    /// [`Runtime::execute`] for a sub-agent at spawn `depth` (the daemon's `spawn_agent`).
    ///
    /// # Errors
    /// As [`Runtime::execute`].
    pub async fn execute_at_depth(
        &self,
        req: TurnRequest,
        live: Option<UnboundedSender<TurnEvent>>,
        depth: u32,
    ) -> Result<TurnReply, AgentError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(AgentError::ShuttingDown);
        }
        let agent = self
            .agents
            .get(&req.agent_id)
            .ok_or_else(|| AgentError::UnknownAgent(display_safe(&req.agent_id, 64)))?;
        let trace = req.trace_id.clone().unwrap_or_else(new_trace_id);
        let channel = if req.origin.channel.is_empty() {
            "unknown".to_owned()
        } else {
            req.origin.channel.clone()
        };
        let canary = self
            .canary_key
            .token_for(&format!("{}:{}:{}", agent.id, channel, req.session));
        let mut turn = Turn {
            agent,
            trace,
            channel,
            session: req.session.clone(),
            sender: req.origin.sender.clone(),
            canary,
            live: live.as_ref(),
            audit_ids: Vec::new(),
            usage: Usage::default(),
            used: 0,
            depth,
        };
        let (text, stopped) = self.run(&mut turn, &req.text).await?;
        Ok(TurnReply {
            text,
            stopped,
            usage: turn.usage,
            trace_id: turn.trace,
            audit_ids: turn.audit_ids,
        })
    }

    fn emit(&self, turn: &mut Turn<'_>, event: Event) {
        if let Some(id) = self
            .events
            .emit(event.agent(&turn.agent.id).trace(&turn.trace))
        {
            turn.audit_ids.push(id);
        }
    }

    fn record(
        &self,
        turn: &Turn<'_>,
        role: StoreRole,
        content: &str,
    ) -> Result<comis_store::Message, AgentError> {
        let content = bounded(content, MAX_MESSAGE_BYTES);
        Ok(self.store.append_message(&NewMessage {
            agent: turn.agent.agent_id.clone(),
            channel: turn.channel.clone(),
            thread: turn.session.clone(),
            role,
            sender: (role == StoreRole::User).then(|| turn.sender.clone()),
            content: content.to_owned(),
            trace_id: Some(turn.trace.clone()),
        })?)
    }

    /// Ends the turn with `text` (guarded, recorded, sent live).
    fn finish(
        &self,
        turn: &mut Turn<'_>,
        text: &str,
        stopped: Option<Stopped>,
    ) -> Result<(String, Option<Stopped>), AgentError> {
        let guarded = self.guard(turn, text);
        self.record(turn, StoreRole::Assistant, &guarded)?;
        send_live(
            turn,
            TurnEvent::Text {
                text: guarded.clone(),
            },
        );
        Ok((guarded, stopped))
    }

    /// The respond checkpoint: the output guard with the agent's secrets and the canary.
    fn guard(&self, turn: &mut Turn<'_>, text: &str) -> String {
        let scan = turn.agent.output.scan(text, Some(&turn.canary));
        if scan.findings.is_empty() {
            return scan.text;
        }
        let names: Vec<String> = scan.findings.iter().map(|f| f.name.to_string()).collect();
        if names.iter().any(|n| n == "canary_leak") {
            self.emit(
                turn,
                Event::new(EventKind::CanaryLeaked, Outcome::Denied)
                    .with("session", turn.session.as_str()),
            );
        }
        if scan.redactions > 0 {
            self.emit(
                turn,
                Event::new(EventKind::OutputRedacted, Outcome::Modified)
                    .with("patterns", names)
                    .with("redactions", scan.redactions)
                    .with("blocked", scan.blocked),
            );
        }
        scan.text
    }

    async fn run(
        &self,
        turn: &mut Turn<'_>,
        raw: &str,
    ) -> Result<(String, Option<Stopped>), AgentError> {
        let agent = turn.agent;
        // --- Arrival -----------------------------------------------------------------------
        let validation = validate_input(raw);
        if !validation.valid {
            self.emit(
                turn,
                Event::new(EventKind::InputRejected, Outcome::Denied)
                    .with("reasons", validation.reasons.clone())
                    .with("chars", raw.chars().count()),
            );
            self.record(
                turn,
                StoreRole::User,
                &format!("[input rejected: {}]", validation.reasons.join(", ")),
            )?;
            return self.finish(turn, INPUT_BLOCKED_TEXT, Some(Stopped::InputBlocked));
        }
        let text = strip_invisible(raw).into_owned();
        let scan = self.input_guard.scan(raw);
        let mut reinforce = false;
        let key = format!("{}:{}", turn.channel, turn.sender);
        if scan.action != InputVerdict::Pass {
            let blocked = scan.action == InputVerdict::Block;
            let patterns: Vec<String> = scan.findings.iter().map(|f| f.name.to_string()).collect();
            self.emit(
                turn,
                Event::new(
                    EventKind::InjectionDetected,
                    if blocked {
                        Outcome::Denied
                    } else {
                        Outcome::Modified
                    },
                )
                .with("source", "user_input")
                .with("riskLevel", format!("{:?}", scan.risk).to_lowercase())
                .with("score", f64::from(scan.score))
                .with("patterns", patterns)
                .with("sessionKey", turn.session.as_str()),
            );
            reinforce = true;
            let decision = self
                .rate_limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(&key, Instant::now());
            if decision.threshold_crossed {
                self.emit(
                    turn,
                    Event::new(EventKind::InjectionRateExceeded, Outcome::Denied)
                        .with("userId", key.as_str())
                        .with("detectionCount", decision.count)
                        .with(
                            "level",
                            if decision.level == RateLevel::Audit {
                                "audit"
                            } else {
                                "warn"
                            },
                        ),
                );
            }
            if blocked {
                self.record(turn, StoreRole::User, &text)?;
                return self.finish(turn, INPUT_BLOCKED_TEXT, Some(Stopped::InputBlocked));
            }
        }
        if !reinforce {
            // A sender who keeps probing gets the reinforcement on every message for a while.
            let level = self
                .rate_limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .level(&key, Instant::now());
            reinforce = level != RateLevel::None;
        }
        let user = self.record(turn, StoreRole::User, &text)?;

        // --- Context -----------------------------------------------------------------------
        let window = agent.config.history_window;
        let after = user
            .seq
            .saturating_sub(1)
            .saturating_sub(i64::try_from(window).unwrap_or(i64::MAX));
        let past = if window == 0 {
            Vec::new()
        } else {
            self.store
                .messages(&agent.agent_id, &turn.channel, &turn.session, after, window)?
        };
        let mut messages = history(past.iter().filter(|m| m.seq < user.seq));
        messages.push(ChatMessage::user_text(text.clone()));
        let memories = recall(
            &self.store,
            &agent.agent_id,
            &text,
            &agent.config.rag,
            &self.sanitizer,
            self.wrapper,
        );
        let name = agent.config.name.as_deref().unwrap_or(&agent.id);
        let system = system_prompt(&PromptParts {
            agent_name: name,
            level: agent.level,
            canary: &turn.canary,
            reinforce,
            memories: &memories,
        });
        let tools = self.schemas(agent);

        // --- Loop --------------------------------------------------------------------------
        let mut steps: u32 = 0;
        let mut warned = false;
        let mut last_text = String::new();
        loop {
            let request = ChatRequest {
                model: agent.config.model.clone(),
                system: system.clone(),
                messages: messages.clone(),
                tools: tools.clone(),
                max_tokens: agent.config.max_tokens,
            };
            let prompt = estimate_prompt_tokens(&request);
            match context_verdict(
                prompt,
                agent.config.context_window_tokens,
                &agent.config.context_guard,
            ) {
                ContextVerdict::Block { percent } => {
                    self.emit(
                        turn,
                        Event::new(EventKind::BudgetExceeded, Outcome::Denied)
                            .with("scope", "contextWindow")
                            .with("percent", percent),
                    );
                    let msg = format!(
                        "Context window exceeded: the request fills {percent}% of the model's window."
                    );
                    return self.finish(turn, &msg, Some(Stopped::BudgetExceeded));
                }
                ContextVerdict::Warn { percent } if !warned => {
                    warned = true;
                    self.emit(
                        turn,
                        Event::new(EventKind::ContextWarning, Outcome::Allowed)
                            .with("percent", percent),
                    );
                }
                _ => {}
            }
            let estimate = prompt.saturating_add(u64::from(request.max_tokens));
            if let Err(e) = agent.budget.check(turn.used, estimate) {
                self.emit(
                    turn,
                    Event::new(EventKind::BudgetExceeded, Outcome::Denied)
                        .with("scope", e.scope.as_str())
                        .with("current", e.current)
                        .with("estimated", e.estimated)
                        .with("cap", e.cap),
                );
                return self.finish(turn, &e.message(), Some(Stopped::BudgetExceeded));
            }
            let response = match self.call_provider(turn, &request).await {
                Ok(r) => r,
                Err(CallFailure::CircuitOpen) => {
                    return self.finish(turn, CIRCUIT_OPEN_TEXT, Some(Stopped::CircuitOpen));
                }
                Err(CallFailure::Provider(e)) => {
                    // A provider's error body may echo what it was sent (a key, the prompt):
                    // the message goes through the output guard before the audit log.
                    let message = agent.output.scan(&e.to_string(), None).text;
                    let mut event = Event::new(EventKind::ProviderError, Outcome::Failed)
                        .with("provider", agent.config.provider.as_str())
                        .with("model", request.model.as_str())
                        .with("reason", provider_error_reason(&e))
                        .with("error", display_safe(&message, 200));
                    if let Some(status) = provider_error_status(&e) {
                        event = event.with("status", status);
                    }
                    self.emit(turn, event);
                    return self.finish(turn, PROVIDER_FAILED_TEXT, Some(Stopped::ProviderFailed));
                }
            };
            let spent = if response.usage.total() == 0 {
                estimate
            } else {
                response.usage.total()
            };
            agent.budget.record(spent);
            turn.used = turn.used.saturating_add(spent);
            turn.usage.input_tokens = turn
                .usage
                .input_tokens
                .saturating_add(response.usage.input_tokens);
            turn.usage.output_tokens = turn
                .usage
                .output_tokens
                .saturating_add(response.usage.output_tokens);

            // Respond checkpoint on every assistant message before it is kept or shown.
            let mut assistant = ChatMessage {
                role: Role::Assistant,
                content: Vec::with_capacity(response.message.content.len()),
            };
            let mut calls = Vec::new();
            for block in response.message.content {
                match block {
                    ContentBlock::Text { text } => {
                        let guarded = self.guard(turn, &text);
                        assistant.content.push(ContentBlock::Text { text: guarded });
                    }
                    ContentBlock::ToolUse { id, name, input } => {
                        calls.push((id.clone(), name.clone(), input.clone()));
                        assistant
                            .content
                            .push(ContentBlock::ToolUse { id, name, input });
                    }
                    // A model does not send tool results; dropped rather than trusted.
                    ContentBlock::ToolResult { .. } => {}
                }
            }
            let said = assistant.text();
            if !said.is_empty() {
                self.record(turn, StoreRole::Assistant, &said)?;
                send_live(turn, TurnEvent::Text { text: said.clone() });
                last_text = said;
            }
            messages.push(assistant);
            if calls.is_empty() {
                return Ok((last_text, None));
            }

            // --- Act -----------------------------------------------------------------------
            let mut results = Vec::with_capacity(calls.len());
            for (id, name, input) in calls {
                steps = steps.saturating_add(1);
                if steps > agent.config.max_steps {
                    self.emit(
                        turn,
                        Event::new(EventKind::ToolBlocked, Outcome::Denied)
                            .with("reason", "step_limit")
                            .with("maxSteps", agent.config.max_steps),
                    );
                    return self.finish(turn, STEP_LIMIT_TEXT, Some(Stopped::StepLimit));
                }
                match self.act(turn, &name, input).await? {
                    ActResult::Result { content, is_error } => {
                        results.push(ContentBlock::ToolResult {
                            tool_use_id: id,
                            content,
                            is_error,
                        });
                    }
                    ActResult::Stop(stopped, text) => {
                        return self.finish(turn, &text, Some(stopped));
                    }
                }
            }
            messages.push(ChatMessage {
                role: Role::User,
                content: results,
            });
        }
    }

    /// The tools this agent's policy grants, as the model sees them.
    fn schemas(&self, agent: &AgentState) -> Vec<ToolSchema> {
        let mut out: Vec<ToolSchema> = self
            .tools
            .iter()
            .filter(|(wire, _)| policy_allows(&agent.policy, wire))
            .map(|(wire, tool)| ToolSchema {
                name: wire.clone(),
                description: tool.description().to_owned(),
                parameters: tool.parameters(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every provider call of the loop goes through here, after the budget guard, and through
    /// the agent's breaker for this provider and model (failures counted by
    /// [`crate::breaker::counts_as_failure`]). Deltas are not forwarded: text reaches a user
    /// only after the output guard has seen the whole message.
    /// Circuit transitions carry the turn's trace id and join its audit ids.
    async fn call_provider(
        &self,
        turn: &mut Turn<'_>,
        request: &ChatRequest,
    ) -> Result<ChatResponse, CallFailure> {
        let agent = turn.agent;
        let sink = |_delta: crate::message::StreamDelta| {};
        let breaker = agent.breakers.get(&agent.config.provider, &request.model);
        let (result, ids) = breaker
            .call_provider_traced(agent.provider.as_ref(), request, &sink, &turn.trace)
            .await;
        turn.audit_ids.extend(ids);
        match result {
            Ok(r) => Ok(r),
            Err(CallError::Open(_)) => Err(CallFailure::CircuitOpen),
            Err(CallError::Failed(e)) => Err(CallFailure::Provider(e)),
        }
    }

    fn blocked(
        &self,
        turn: &mut Turn<'_>,
        action: &str,
        reason: &str,
        message: String,
    ) -> Result<ActResult, AgentError> {
        self.emit(
            turn,
            Event::new(EventKind::ToolBlocked, Outcome::Denied)
                .with("action", display_safe(action, 80))
                .with("reason", reason),
        );
        self.record(
            turn,
            StoreRole::Tool,
            &format!("blocked {} ({reason})", display_safe(action, 80)),
        )?;
        Ok(ActResult::Result {
            content: message,
            is_error: true,
        })
    }

    /// The act checkpoint for one tool call.
    async fn act(
        &self,
        turn: &mut Turn<'_>,
        wire: &str,
        mut args: Value,
    ) -> Result<ActResult, AgentError> {
        let agent = turn.agent;
        let Some(tool) = self.tools.get(wire).cloned() else {
            let shown = display_safe(wire, 80);
            return self.blocked(
                turn,
                wire,
                "unknown_tool",
                format!("Unknown tool: {shown}. Use only the tools you were given."),
            );
        };
        let action = tool.action();
        if !policy_allows(&agent.policy, wire) {
            return self.blocked(
                turn,
                action,
                "tool_policy",
                format!("Tool {wire} is not available to this agent."),
            );
        }
        if let Err(why) = check_args(&args, &tool.parameters()) {
            return self.blocked(
                turn,
                action,
                "invalid_arguments",
                format!("Invalid arguments for {wire}: {why}"),
            );
        }
        // Zero-cost budget check before a tool runs: an exhausted budget stops the turn.
        if let Err(e) = agent.budget.check(turn.used, 0) {
            self.emit(
                turn,
                Event::new(EventKind::BudgetExceeded, Outcome::Denied)
                    .with("scope", e.scope.as_str())
                    .with("current", e.current)
                    .with("cap", e.cap),
            );
            return Ok(ActResult::Stop(Stopped::BudgetExceeded, e.message()));
        }
        let class = self.classifier.classify(action);
        if class.requires_confirmation() {
            let resolution = self
                .approvals
                .request(
                    ApprovalRequest {
                        agent_id: &agent.id,
                        session: &turn.session,
                        action,
                        tool: wire,
                        args: &args,
                        trace_id: &turn.trace,
                    },
                    turn.live,
                )
                .await;
            if !resolution.approved {
                let by = resolution.by.clone();
                return self.blocked(
                    turn,
                    action,
                    "approval_denied",
                    format!(
                        "The action {action} needs an operator's approval and was denied ({by}). It was not run."
                    ),
                );
            }
        }
        // Text a message tool sends leaves the daemon: the respond checkpoint applies to it.
        if action.starts_with("message.") {
            self.guard_strings(turn, &mut args);
        }
        send_live(
            turn,
            TurnEvent::ToolStarted {
                action: action.to_owned(),
            },
        );
        let call = format!("call {action} {}", bounded(&args.to_string(), 4_096));
        let ctx = ToolContext {
            agent_id: agent.id.clone(),
            trace_id: turn.trace.clone(),
            session: turn.session.clone(),
            workspace: agent.workspace.clone(),
            sandbox: agent.sandbox.clone(),
            http: self.http.clone(),
            store: Arc::clone(&self.store),
            events: self.events.clone(),
            services: Arc::clone(&self.services),
            depth: turn.depth,
        };
        let limit = agent.config.max_tool_result_chars;
        let outcome = tool.call(&ctx, args).await;
        let (content, is_error) = match outcome {
            Ok(out) => {
                let clean = self.sanitizer.sanitize(&out.text, limit);
                let text = if out.external {
                    match self
                        .wrapper
                        .wrap(&clean.text, &WrapOptions::new(source_for(action)))
                    {
                        Ok(w) => w.text,
                        Err(_) => "[Tool output withheld: it could not be wrapped]".to_owned(),
                    }
                } else {
                    clean.text
                };
                self.emit(
                    turn,
                    Event::new(EventKind::ToolExecuted, Outcome::Allowed)
                        .with("action", action)
                        .with("class", class.class.as_str())
                        .with("external", out.external)
                        .with("sanitized", clean.findings.len())
                        .with("truncated", clean.truncated),
                );
                (text, false)
            }
            Err(e) => {
                let (kind, outcome, reason) = match &e {
                    ToolError::InvalidArguments(_) => {
                        (EventKind::ToolBlocked, Outcome::Denied, "invalid_arguments")
                    }
                    ToolError::Refused { layer, .. } => {
                        (EventKind::ToolBlocked, Outcome::Denied, *layer)
                    }
                    ToolError::Failed(_) => (EventKind::ToolExecuted, Outcome::Failed, "failed"),
                };
                if action == "memory.store"
                    && let ToolError::Refused { layer, .. } = &e
                    && layer.contains("memory")
                {
                    // The store audited the blocked write in its own transaction; live
                    // subscribers still hear about it.
                    self.events.publish_recorded(
                        Event::new(EventKind::MemoryWriteBlocked, Outcome::Denied)
                            .agent(&agent.id)
                            .trace(&turn.trace),
                        None,
                    );
                }
                self.emit(
                    turn,
                    Event::new(kind, outcome)
                        .with("action", action)
                        .with("reason", reason),
                );
                let clean = self.sanitizer.sanitize(&e.to_string(), limit);
                (clean.text, true)
            }
        };
        // One record per call: the call and what came of it (one write instead of two).
        self.record(
            turn,
            StoreRole::Tool,
            &format!(
                "{call}\n{}: {}",
                if is_error { "error" } else { "result" },
                bounded(&content, 16_384)
            ),
        )?;
        Ok(ActResult::Result { content, is_error })
    }

    fn guard_strings(&self, turn: &mut Turn<'_>, v: &mut Value) {
        match v {
            Value::String(s) => {
                let g = self.guard(turn, s);
                *s = g;
            }
            Value::Array(items) => {
                for item in items {
                    self.guard_strings(turn, item);
                }
            }
            Value::Object(map) => {
                for (_, item) in map.iter_mut() {
                    self.guard_strings(turn, item);
                }
            }
            _ => {}
        }
    }
}

/// The original's tool names, which the policy profiles and groups use (`coding` grants `read`,
/// `write`, `exec`, …), for this crate's tools. A wire name the table lacks is judged by itself.
const POLICY_ALIASES: &[(&str, &str)] = &[
    ("file_read", "read"),
    ("file_write", "write"),
    ("file_edit", "edit"),
    ("file_list", "ls"),
    ("system_exec", "exec"),
    ("message_send", "message"),
    ("agents_spawn", "sessions_spawn"),
    ("memory_clear", "memory_manage"),
    ("tokens_revoke", "tokens_manage"),
    ("agents_delete", "agents_manage"),
    ("channels_list", "channels_manage"),
];

/// Whether the tool policy grants `wire`, by its wire name or its original name. Deny wins: a
/// deny entry naming either refuses it.
pub fn policy_allows(policy: &ToolPolicy, wire: &str) -> bool {
    use comis_guard::policy::PolicyReason;
    let alias = POLICY_ALIASES
        .iter()
        .find(|(w, _)| *w == wire)
        .map(|(_, a)| *a);
    let mut allowed = false;
    for name in std::iter::once(wire).chain(alias) {
        let d = policy.is_allowed(name);
        if matches!(d.reason, PolicyReason::ExplicitDeny { .. }) {
            return false;
        }
        allowed |= d.allowed;
    }
    allowed
}

fn send_live(turn: &Turn<'_>, event: TurnEvent) {
    if let Some(live) = turn.live {
        // A client that went away does not stop the turn.
        let _ = live.send(event);
    }
}

/// The `reason` of a `provider:error` event: the kind of failure, stable for searching the log.
fn provider_error_reason(e: &ProviderError) -> &'static str {
    match e {
        ProviderError::RateLimited { .. } => "rate_limited",
        ProviderError::Server { .. } => "server_error",
        ProviderError::Rejected { .. } => "rejected",
        ProviderError::Malformed(_) => "malformed",
        ProviderError::Timeout => "timeout",
        ProviderError::Transport(_) => "transport",
        ProviderError::MissingKey(_) => "missing_key",
    }
}

fn provider_error_status(e: &ProviderError) -> Option<u16> {
    match e {
        ProviderError::RateLimited { .. } => Some(429),
        ProviderError::Server { status, .. } | ProviderError::Rejected { status, .. } => {
            Some(*status)
        }
        _ => None,
    }
}

fn source_for(action: &str) -> SourceKind {
    if action.starts_with("web.") {
        SourceKind::WebFetch
    } else if action.starts_with("file.") {
        SourceKind::FileRead
    } else {
        SourceKind::Api
    }
}

/// Past user and assistant text as alternating messages, starting with the user (tool records
/// are not replayed: a provider needs each tool call paired with its result).
fn history<'m>(past: impl Iterator<Item = &'m comis_store::Message>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::new();
    for m in past {
        let role = match m.role {
            StoreRole::User => Role::User,
            StoreRole::Assistant => Role::Assistant,
            StoreRole::System | StoreRole::Tool => continue,
        };
        if out.is_empty() && role == Role::Assistant {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.role == role => {
                if let Some(ContentBlock::Text { text }) = last.content.first_mut() {
                    text.push_str("\n\n");
                    text.push_str(&m.content);
                }
            }
            _ => out.push(ChatMessage {
                role,
                content: vec![ContentBlock::Text {
                    text: m.content.clone(),
                }],
            }),
        }
    }
    // The current user message follows; history must end with the assistant.
    if out.last().is_some_and(|m| m.role == Role::User) {
        out.pop();
    }
    out
}

/// The arguments must be an object with every `required` property of the schema.
fn check_args(args: &Value, schema: &Value) -> Result<(), String> {
    let Some(obj) = args.as_object() else {
        return Err("arguments must be a JSON object".to_owned());
    };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(r) {
                return Err(format!("missing required argument {r:?}"));
            }
        }
    }
    Ok(())
}

/// `s` cut to at most `max` bytes at a character boundary.
fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn new_trace_id() -> String {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Correlation only, not security: a clock-derived id is good enough.
        let t = u64::try_from(comis_store::time::now_ms()).unwrap_or_default();
        b = t.to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
