//! Builds the daemon's services from the validated config: the exec sandbox, the guarded
//! client, the providers, the agent runtime, the gateway and the channels.
//!
//! Guarantees: nothing here turns a layer off. A provider whose key is missing still exists and
//! answers every call with a clear "key missing" error (the daemon starts; `comis doctor`
//! says why); a host without a working sandbox gets no exec (the tool refuses); channel
//! messages go through the same `Runtime::execute` as gateway requests. Channels that receive
//! over HTTP (Slack; Telegram in webhook mode) are mounted on the gateway at
//! [`SLACK_WEBHOOK_PATH`] and [`TELEGRAM_WEBHOOK_PATH`] and answered by the adapter, which
//! verifies the platform's signature or secret token before anything reaches the router.
//!
//! Builds once per configuration: a SIGHUP reload stops these services and calls [`wire`] again
//! (see [`super::run`]).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use comis_agent::config::ProviderEntry;
use comis_agent::event::EventBus;
use comis_agent::message::{ChatRequest, ChatResponse};
use comis_agent::provider::scripted::ScriptedProvider;
use comis_agent::provider::{
    BoxFuture, DeltaSink, Provider, ProviderError, ProviderHttp, build_provider,
};
use comis_agent::runtime::{Origin, Runtime, TurnRequest};
use comis_agent::tool::Services;
use comis_channels::{Channel, OutboundMessage, Router, WebhookReply};
use comis_gateway::backend::AgentInfo;
use comis_gateway::{PlatformHandler, PlatformReply};
use comis_net::{ClientConfig, GuardedClient, SsrfPolicy};
use comis_secrets::{ScopedSecretManager, SecretAccess, SecretAllowlist, SecretManager};
use serde_json::{Value, json};

use super::backend::DaemonBackend;
use crate::cli::CliError;
use crate::config::schema::{Config, DEFAULT_AGENT};

/// A provider that cannot be used (its key is missing, its entry invalid): every call fails
/// with the reason, so turns end with the runtime's provider-failed answer.
#[derive(Debug)]
struct Unavailable {
    id: String,
    reason: String,
}

impl Provider for Unavailable {
    fn id(&self) -> &str {
        &self.id
    }

    fn complete<'a>(
        &'a self,
        _request: &'a ChatRequest,
        _deltas: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        let reason = self.reason.clone();
        Box::pin(async move { Err(ProviderError::Transport(reason)) })
    }
}

/// Secret reads by a provider (its API key), recorded on the bus like an agent's.
fn provider_scope(
    secrets: &Arc<SecretManager>,
    id: &str,
    entry: &ProviderEntry,
    bus: &EventBus,
) -> Result<ScopedSecretManager, CliError> {
    let names: Vec<String> = entry.api_key_name.iter().cloned().collect();
    let defaults = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"];
    let allow: Vec<String> = if names.is_empty() {
        defaults.iter().map(|s| (*s).to_owned()).collect()
    } else {
        names
    };
    let allow = SecretAllowlist::new(&allow)?;
    let base: Arc<dyn SecretAccess + Send + Sync> = secrets.clone();
    Ok(ScopedSecretManager::new(
        base,
        format!("provider:{id}"),
        allow,
        comis_agent::event::secret_observer(bus.clone()),
    ))
}

fn providers(
    config: &Config,
    secrets: &Arc<SecretManager>,
    http: &GuardedClient,
    bus: &EventBus,
) -> Result<BTreeMap<String, Arc<dyn Provider>>, CliError> {
    let mut out: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    let provider_http = ProviderHttp::new(http.clone());
    for (id, entry) in &config.providers.entries {
        let built: Result<Arc<dyn Provider>, comis_agent::AgentError> = if entry.kind == "scripted"
        {
            ScriptedProvider::from_entry(id, entry).map(|p| Arc::new(p) as Arc<dyn Provider>)
        } else {
            let scope = provider_scope(secrets, id, entry, bus)?;
            build_provider(id, entry, &scope, &provider_http)
        };
        let provider = match built {
            Ok(p) => p,
            Err(comis_agent::AgentError::Config { key, reason }) => {
                return Err(CliError::Usage(format!("invalid config {key}: {reason}")));
            }
            Err(e) => {
                tracing::warn!(provider = %id, error = %e, "provider unavailable");
                Arc::new(Unavailable {
                    id: id.clone(),
                    reason: e.to_string(),
                })
            }
        };
        out.insert(id.clone(), provider);
    }
    Ok(out)
}

/// The daemon side of the tools' `Services` port: channels for `message.send`, the runtime for
/// sub-agents. Holds the runtime weakly (the runtime holds this).
#[derive(Debug, Default)]
pub struct DaemonServices {
    runtime: OnceLock<Weak<Runtime>>,
    channels: OnceLock<BTreeMap<String, Arc<dyn Channel>>>,
    tokens: OnceLock<comis_gateway::TokenRevoker>,
}

impl Services for DaemonServices {
    fn send_message<'a>(
        &'a self,
        channel: &'a str,
        chat: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ch = self
                .channels
                .get()
                .and_then(|m| m.get(channel))
                .ok_or_else(|| format!("no running channel {channel:?}"))?;
            ch.send(OutboundMessage {
                chat: chat.to_owned(),
                thread: None,
                in_reply_to: None,
                text: text.to_owned(),
            })
            .await
            .map_err(|e| e.to_string())
        })
    }

    fn list_channels(&self) -> Vec<String> {
        self.channels
            .get()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn spawn_agent<'a>(
        &'a self,
        parent: &'a str,
        depth: u32,
        task: String,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let runtime = self
                .runtime
                .get()
                .and_then(Weak::upgrade)
                .ok_or_else(|| "the runtime is shutting down".to_owned())?;
            let req = TurnRequest {
                agent_id: parent.to_owned(),
                session: format!("subagent:{parent}:{depth}:{}", crate::daemon::now()),
                text: task,
                origin: Origin {
                    channel: "subagent".to_owned(),
                    sender: format!("agent:{parent}"),
                },
                trace_id: None,
            };
            runtime
                .execute_at_depth(req, None, depth)
                .await
                .map(|r| r.text)
                .map_err(|e| e.to_string())
        })
    }

    fn revoke_token(&self, id: &str, by: &str) -> Result<(), String> {
        let tokens = self
            .tokens
            .get()
            .ok_or_else(|| "the gateway is not running".to_owned())?;
        if tokens.revoke(id, by) {
            Ok(())
        } else {
            Err(format!("no active gateway token {id:?}"))
        }
    }

    fn delete_agent(&self, _id: &str) -> Result<(), String> {
        Err("agents are defined in config.yaml: remove the agent there and reload".into())
    }
}

/// Everything started, for shutdown and status.
pub struct Wired {
    pub runtime: Arc<Runtime>,
    pub gateway: comis_gateway::Gateway,
    pub router: Option<Arc<Router>>,
}

/// The default agent: `default` when configured, else the first by name.
pub fn default_agent(config: &Config) -> String {
    if config.agents.contains_key(DEFAULT_AGENT) {
        DEFAULT_AGENT.to_owned()
    } else {
        config.agents.keys().next().cloned().unwrap_or_default()
    }
}

/// What [`wire`] builds from.
pub struct Parts<'a> {
    pub home: &'a std::path::Path,
    pub config: &'a Config,
    pub redacted_config: Value,
    pub secrets: Arc<SecretManager>,
    pub store: Arc<comis_store::Store>,
    pub bus: EventBus,
    pub sandbox: Option<Arc<comis_sandbox::Sandbox>>,
    pub status: Arc<dyn Fn() -> Value + Send + Sync>,
    pub replay: ReplayCaches,
}

/// Replay caches that outlive one set of services (see `DaemonContext::replay`).
#[derive(Debug, Default, Clone)]
pub struct ReplayCaches {
    pub webhooks: Arc<comis_gateway::webhook::ReplayCache>,
    pub slack: Arc<comis_channels::slack::ReplayCache>,
}

/// Builds runtime, gateway and channels. The gateway is bound (not yet serving) on return.
pub async fn wire(parts: Parts<'_>) -> Result<Wired, CliError> {
    let Parts {
        home,
        config,
        redacted_config,
        secrets,
        store,
        bus,
        sandbox,
        status,
        replay,
    } = parts;
    let policy = SsrfPolicy::with_allow_hosts(&config.security.ssrf.allow_hosts)?;
    let http = GuardedClient::new(policy, ClientConfig::default())?;
    let providers = providers(config, &secrets, &http, &bus)?;
    let services = Arc::new(DaemonServices::default());
    let mut known = vec![crate::cli::init::GATEWAY_TOKEN_NAME.to_owned()];
    known.extend(
        config
            .providers
            .entries
            .values()
            .filter_map(|e| e.api_key_name.clone()),
    );
    let mut builder = Runtime::builder(store.clone(), bus.clone(), home)
        .agents(config.agents.clone())
        .providers(providers)
        .providers_config(config.providers.clone())
        .secrets((*secrets).clone())
        .known_secrets(known)
        .tools(comis_agent::tool::builtin_tools())
        .services(services.clone())
        .http(http)
        .approvals(config.approvals.clone())
        .input_guard(config.security.input_guard.to_guard())
        .canary_key(comis_guard::canary::CanaryKey::generate()?);
    if let Some(sandbox) = sandbox {
        builder = builder.sandbox(sandbox);
    }
    let runtime = Arc::new(
        builder
            .build()
            .map_err(|e| CliError::Usage(e.to_string()))?,
    );
    let _ = services.runtime.set(Arc::downgrade(&runtime));

    let default = default_agent(config);
    let agents: Vec<AgentInfo> = config
        .agents
        .iter()
        .map(|(id, a)| AgentInfo {
            id: id.clone(),
            provider: a.provider.clone(),
            model: a.model.clone(),
            default: *id == default,
        })
        .collect();
    let backend = Arc::new(DaemonBackend {
        runtime: runtime.clone(),
        store: store.clone(),
        agents,
        redacted_config,
        secret_names: vault_names(home),
        started: Instant::now(),
        status,
        revoked: super::revoked::RevokedTokens::load(home)?,
        replay: replay.webhooks.clone(),
    });
    // Channels first: the ones that receive over HTTP hand the gateway their endpoints.
    let wired_channels = channels(config, &runtime, &bus, &default, &replay)?;
    let _ = services.channels.set(wired_channels.map.clone());
    let gateway = comis_gateway::Gateway::bind_with(
        config.gateway.clone(),
        config.webhooks.clone(),
        backend.clone(),
        bus.clone(),
        wired_channels.platform,
    )
    .await
    .map_err(|e| CliError::Usage(format!("gateway: {e}")))?;
    let _ = services.tokens.set(gateway.revoker());
    for w in gateway.warnings() {
        tracing::warn!(warning = %w, "gateway");
    }

    Ok(Wired {
        runtime,
        gateway,
        router: wired_channels.router,
    })
}

type ChannelMap = BTreeMap<String, Arc<dyn Channel>>;

/// Where the gateway mounts the Slack Events API endpoint.
pub const SLACK_WEBHOOK_PATH: &str = "/webhooks/slack";
/// Where the gateway mounts the Telegram webhook endpoint (point `webhookUrl` at it).
pub const TELEGRAM_WEBHOOK_PATH: &str = "/webhooks/telegram";

/// The enabled channels: their router, the adapters by name (for `message.send`) and the
/// endpoints of those that receive over HTTP.
#[derive(Default)]
struct ChannelSet {
    router: Option<Arc<Router>>,
    map: ChannelMap,
    platform: Vec<(String, PlatformHandler)>,
}

/// An adapter's `handle_webhook`.
type HandleWebhook<C> = fn(&C, &[(String, String)], &[u8]) -> WebhookReply;

/// A gateway endpoint answered by an adapter's `handle_webhook`, which verifies the platform's
/// signature or secret itself. The closure holds the concrete adapter (the router holds it too,
/// as `dyn Channel`).
fn endpoint<C: Send + Sync + 'static>(
    adapter: Arc<C>,
    handle: HandleWebhook<C>,
) -> PlatformHandler {
    Arc::new(move |headers: Vec<(String, String)>, body: bytes::Bytes| {
        let reply = handle(&adapter, &headers, &body);
        Box::pin(async move {
            PlatformReply {
                status: reply.status,
                content_type: reply.content_type.to_owned(),
                body: reply.body,
                rejected: reply.rejected,
            }
        })
    })
}

fn channels(
    config: &Config,
    runtime: &Arc<Runtime>,
    bus: &EventBus,
    default: &str,
    replay: &ReplayCaches,
) -> Result<ChannelSet, CliError> {
    let c = &config.channels;
    let allow_hosts = &config.security.ssrf.allow_hosts;
    let bad = |e: comis_channels::ChannelError| CliError::Usage(e.to_string());
    // (adapter, its allowFrom, its agent)
    type Bound = (Arc<dyn Channel>, Vec<String>, Option<String>);
    let mut bound: Vec<Bound> = Vec::new();
    let mut platform: Vec<(String, PlatformHandler)> = Vec::new();
    if let Some(x) = c.irc.as_ref().filter(|x| x.enabled) {
        let ch = comis_channels::IrcChannel::new(x.clone()).map_err(bad)?;
        bound.push((Arc::new(ch), x.allow_from.clone(), x.agent.clone()));
    }
    if let Some(x) = c.email.as_ref().filter(|x| x.enabled) {
        let agent = x.agent.clone().unwrap_or_else(|| default.to_owned());
        let ch = comis_channels::EmailChannel::new(x.clone(), bus.clone(), &agent).map_err(bad)?;
        bound.push((Arc::new(ch), x.effective_allow_from(), x.agent.clone()));
    }
    if let Some(x) = c.telegram.as_ref().filter(|x| x.enabled) {
        let ch =
            Arc::new(comis_channels::telegram::TelegramChannel::new(x, allow_hosts).map_err(bad)?);
        // Webhook mode: Telegram posts updates here; without webhookUrl the adapter polls.
        if x.webhook_url.is_some() {
            platform.push((
                TELEGRAM_WEBHOOK_PATH.to_owned(),
                endpoint(Arc::clone(&ch), |c, h, b| c.handle_webhook(h, b)),
            ));
        }
        bound.push((ch, x.allow_from.clone(), x.agent.clone()));
    }
    if let Some(x) = c.slack.as_ref().filter(|x| x.enabled) {
        let ch = Arc::new(
            comis_channels::slack::SlackChannel::new(x, allow_hosts)
                .map_err(bad)?
                .with_replay_cache(replay.slack.clone()),
        );
        platform.push((
            SLACK_WEBHOOK_PATH.to_owned(),
            endpoint(Arc::clone(&ch), |c, h, b| c.handle_webhook(h, b)),
        ));
        bound.push((ch, x.allow_from.clone(), x.agent.clone()));
    }
    if let Some(x) = c.discord.as_ref().filter(|x| x.enabled) {
        let ch = comis_channels::discord::DiscordChannel::new(x, allow_hosts).map_err(bad)?;
        bound.push((Arc::new(ch), x.allow_from.clone(), x.agent.clone()));
    }
    if bound.is_empty() {
        return Ok(ChannelSet::default());
    }
    let turn_runtime = Arc::clone(runtime);
    let handler: comis_channels::TurnHandler = Arc::new(move |req: TurnRequest| {
        let runtime = Arc::clone(&turn_runtime);
        Box::pin(async move {
            match runtime.execute(req, None).await {
                Ok(reply) => reply.text,
                Err(e) => {
                    tracing::warn!(error = %e, "channel turn failed");
                    String::new()
                }
            }
        })
    });
    let approve_runtime = Arc::clone(runtime);
    let approvals: comis_channels::ApprovalHandler =
        Arc::new(move |cmd: comis_channels::ApprovalCommand| {
            let runtime = Arc::clone(&approve_runtime);
            Box::pin(async move {
                let by = format!("chat:{}:{}", cmd.origin.channel, cmd.origin.sender);
                match runtime.resolve_approval(&cmd.id, cmd.approved, &by) {
                    Ok(r) if r.approved => format!("Approved {}.", cmd.id),
                    Ok(_) => format!("Denied {}.", cmd.id),
                    Err(e) => format!("Could not resolve {}: {e}", cmd.id),
                }
            })
        });
    let mut router = Router::new(default, bus.clone(), handler).with_approvals(approvals);
    let mut map = ChannelMap::new();
    for (ch, allow, agent) in bound {
        map.insert(ch.name().to_owned(), Arc::clone(&ch));
        router.add_channel(ch, &allow, agent.as_deref());
    }
    Ok(ChannelSet {
        router: Some(Arc::new(router)),
        map,
        platform,
    })
}

/// Names in the vault (never values); empty without a vault.
fn vault_names(home: &std::path::Path) -> Vec<String> {
    if !home.join(comis_secrets::vault::VAULT_FILE).exists() {
        return Vec::new();
    }
    comis_secrets::Vault::open(home)
        .and_then(|v| v.list())
        .map(|entries| {
            entries
                .into_iter()
                .map(|e| e.name.as_str().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The status facts the gateway and `daemon status` show.
pub fn status_json(addr: &str, channels: &[(String, String)]) -> Value {
    json!({
        "gateway": addr,
        "channels": channels.iter().map(|(n, h)| json!({"name": n, "health": h})).collect::<Vec<_>>(),
    })
}
