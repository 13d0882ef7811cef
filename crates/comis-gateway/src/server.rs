//! Binding, the accept loop, per-connection limits, the shared front middleware (client address,
//! rate limit, CORS, request timeout) and the small routes (`/health`, `/metrics`, webhooks).
//!
//! Guarantees:
//! - A non-loopback bind without tokens is refused; without TLS it is reported in
//!   [`Gateway::warnings`] (unless `allowInsecureHttp`). The gateway never prints: the daemon
//!   decides where warnings go.
//! - At most `maxConnections` connections are open; further ones are closed on accept. A client
//!   gets `headerReadTimeoutMs` to finish a TLS handshake and to send each request head
//!   (slowloris); a handler gets `requestTimeoutMs` to produce a response head.
//! - Every route but `/health` counts against the client's rate limit before any other work.
//! - Authentication failures and webhook rejections become events on the bus, with the client
//!   address and, under mTLS, the certificate CN.
//!
//! Not guaranteed: fairness between clients beyond the per-IP window, or HTTP/2.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use comis_agent::event::{Event, EventBus, EventKind, Outcome};
use comis_agent::runtime::{Origin, TurnRequest};
use comis_guard::wrap::{SourceKind, WrapOptions};
use comis_secrets::{ExposeSecret, SecretString};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{self, Caller, IpNet, RateLimiter, TokenStore};
use crate::backend::{AgentInfo, Backend};
use crate::config::{GatewayConfig, HmacAlgorithm, WebhooksConfig};
use crate::platform::{self, PlatformHandler};
use crate::webhook::{self, ReplayCache};
use crate::{GatewayError, openai, rpc, tls, ws};

/// The TCP peer and, under mTLS, the verified certificate's CN. Set once per connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub client_cn: Option<String>,
    /// The connection's slot under `maxConnections`; a WebSocket session keeps it after the
    /// HTTP connection has handed its socket over.
    pub slot: Option<Arc<OwnedSemaphorePermit>>,
}

/// The client address after the trusted-proxy rule. Set by the front middleware.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub IpAddr);

struct Hook {
    secret: SecretString,
    algorithm: HmacAlgorithm,
    agent_id: Option<String>,
    session_key: String,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub requests: AtomicU64,
    pub auth_failures: AtomicU64,
    pub rate_limited: AtomicU64,
    pub rpc_calls: AtomicU64,
    pub rpc_errors: AtomicU64,
    pub turns: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub webhooks_rejected: AtomicU64,
    pub ws_connections: AtomicU64,
    pub ws_active: AtomicI64,
    pub connections_active: AtomicI64,
    pub connections_refused: AtomicU64,
    pub tls_failures: AtomicU64,
    pub timeouts: AtomicU64,
}

pub(crate) struct AppState {
    pub config: GatewayConfig,
    pub backend: Arc<dyn Backend>,
    pub events: EventBus,
    /// Shared with [`TokenRevoker`]s, which must not hold the rest of the state.
    pub tokens: Arc<TokenStore>,
    pub metrics: Metrics,
    pub started_ms: i64,
    pub local_addr: SocketAddr,
    pub tls: bool,
    pub shutdown: watch::Receiver<bool>,
    trusted: Vec<IpNet>,
    limiter: RateLimiter,
    hooks: HashMap<String, Hook>,
    webhook_prefix: Option<String>,
    webhook_max_body: usize,
    webhook_max_age: i64,
    replay: Arc<ReplayCache>,
    platform: Vec<(Arc<str>, PlatformHandler)>,
}

impl AppState {
    /// Records a refused authentication (bus event + counter).
    pub fn auth_failed(&self, ip: IpAddr, cn: Option<&str>, path: &str, reason: &str) {
        self.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        let mut event = Event::new(EventKind::AuthFailed, Outcome::Denied)
            .with("ip", ip.to_string())
            .with("path", path)
            .with("reason", reason);
        if let Some(cn) = cn {
            event = event.with("client", cn);
        }
        self.events.emit(event);
    }

    /// Checks the bearer token (header, or `?token=` where allowed). On failure returns the
    /// audit reason; the caller decides the response shape (401, WS close 4001).
    pub fn check_token(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        ip: IpAddr,
        conn: &ConnInfo,
    ) -> Result<Caller, &'static str> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let presented = match (auth::bearer(header), query_token) {
            (Some(t), _) => t,
            (None, Some(t)) if !t.is_empty() => t,
            _ => return Err("missing token"),
        };
        match self.tokens.verify(presented) {
            Some((token_id, scopes)) => Ok(Caller {
                token_id,
                scopes,
                ip,
                client_cn: conn.client_cn.clone(),
            }),
            None => Err("invalid token"),
        }
    }

    /// Header-token authentication for plain HTTP routes: 401 on failure, 403 without one of
    /// `scopes`.
    // The error is the finished refusal, returned once per request; boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    pub fn authenticate(
        &self,
        req: &axum::http::request::Parts,
        scopes: &[&str],
    ) -> Result<Caller, Response> {
        let conn = conn_info(&req.extensions);
        let ip = client_ip(&req.extensions, &conn);
        let path = req.uri.path();
        let caller = self
            .check_token(&req.headers, None, ip, &conn)
            .map_err(|reason| {
                self.auth_failed(ip, conn.client_cn.as_deref(), path, reason);
                unauthorized()
            })?;
        if !caller.has_any(scopes) {
            self.auth_failed(ip, conn.client_cn.as_deref(), path, "insufficient scope");
            return Err(error_response(
                StatusCode::FORBIDDEN,
                &format!(
                    "Insufficient scope: requires '{}'",
                    scopes.first().unwrap_or(&"*")
                ),
            ));
        }
        Ok(caller)
    }

    /// The agent a caller meant: the named one, else the configured default.
    pub fn resolve_agent(&self, named: Option<&str>) -> Result<AgentInfo, String> {
        let agents = self.backend.agents();
        match named {
            Some(id) => agents
                .into_iter()
                .find(|a| a.id == id)
                .ok_or_else(|| format!("unknown agent '{id}'")),
            None => default_agent(agents).ok_or_else(|| "no agents are configured".to_owned()),
        }
    }
}

pub(crate) fn default_agent(agents: Vec<AgentInfo>) -> Option<AgentInfo> {
    let pos = agents
        .iter()
        .position(|a| a.default)
        .or_else(|| agents.iter().position(|a| a.id == "default"))
        .unwrap_or(0);
    agents.into_iter().nth(pos)
}

pub(crate) fn conn_info(ext: &axum::http::Extensions) -> ConnInfo {
    ext.get::<ConnInfo>().cloned().unwrap_or(ConnInfo {
        peer: SocketAddr::from(([0, 0, 0, 0], 0)),
        client_cn: None,
        slot: None,
    })
}

pub(crate) fn client_ip(ext: &axum::http::Extensions, conn: &ConnInfo) -> IpAddr {
    ext.get::<ClientIp>()
        .map(|c| c.0)
        .unwrap_or_else(|| auth::canonical(conn.peer.ip()))
}

pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn unauthorized() -> Response {
    let mut r = error_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Reads a body up to `limit` bytes; `Err(413)` beyond it.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, Response> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("Request body larger than {limit} bytes"),
        )),
        Err(_) => Err(error_response(StatusCode::BAD_REQUEST, "Unreadable body")),
    }
}

pub(crate) use comis_store::time::{format_ms, now_ms};

/// Upper bound for `gateway.maxConnections` (far above what one process can hold open).
const MAX_CONNECTIONS: usize = 1_000_000;

/// A bound, not yet serving gateway. Bind first to learn the address (port 0 in tests).
/// Revokes tokens of a running gateway; see [`Gateway::revoker`].
#[derive(Clone)]
pub struct TokenRevoker {
    /// Not the gateway state: the agent runtime holds the revoker, and the state holds the
    /// runtime (through the backend), so holding the state — or the backend strongly — would
    /// be a cycle that keeps every runtime and gateway a SIGHUP reload replaces alive.
    tokens: Arc<TokenStore>,
    backend: Weak<dyn Backend>,
    events: EventBus,
}

impl std::fmt::Debug for TokenRevoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRevoker").finish_non_exhaustive()
    }
}

impl TokenRevoker {
    /// Revokes `id` for an agent's tool call (see [`revoke_token`]); false when there is no
    /// such active token.
    pub fn revoke(&self, id: &str, by: &str) -> bool {
        match self.backend.upgrade() {
            Some(backend) => {
                revoke_token(&self.tokens, backend.as_ref(), &self.events, id, by).is_some()
            }
            None => self.tokens.revoke(id).is_some(),
        }
    }
}

/// Revokes `id` at once, asks the backend to record it durably and emits
/// `gateway:token_revoked` (which token, who revoked it, whether it was recorded). `None` when there is no
/// such active token, else whether the record was written (if not, the token is revoked only
/// until the daemon restarts; the backend reports why).
pub(crate) fn revoke_token(
    tokens: &TokenStore,
    backend: &dyn Backend,
    events: &EventBus,
    id: &str,
    by: &str,
) -> Option<bool> {
    let digest = tokens.revoke(id)?;
    let persisted = backend.record_revocation(digest).is_ok();
    events.emit(
        Event::new(EventKind::TokenRevoked, Outcome::Allowed)
            // `tokenId`: the audit scrubber redacts any field named `token`.
            .with("tokenId", id)
            .with("by", by)
            .with("persisted", persisted),
    );
    Some(persisted)
}

pub struct Gateway {
    listener: TcpListener,
    state: Arc<AppState>,
    acceptor: Option<TlsAcceptor>,
    warnings: Vec<String>,
    shutdown_tx: watch::Sender<bool>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.state.local_addr)
            .field("tls", &self.state.tls)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates the configuration and binds `host:port`. Refuses (fail closed): a non-loopback
    /// host without tokens, short or duplicate token secrets, unknown scopes, a hook without a
    /// secret, unreadable TLS files, client certificates required without a CA.
    pub async fn bind(
        config: GatewayConfig,
        webhooks: WebhooksConfig,
        backend: Arc<dyn Backend>,
        events: EventBus,
    ) -> Result<Gateway, GatewayError> {
        Self::bind_with(config, webhooks, backend, events, Vec::new()).await
    }

    /// [`Gateway::bind`] plus platform endpoints: each `(path, handler)` is mounted as `POST
    /// path` without bearer-token auth (the handler verifies the platform's signature; see
    /// [`crate::platform`]). Also refuses a malformed path, one under a gateway route or
    /// `webhooks.path`, and a path given twice.
    pub async fn bind_with(
        config: GatewayConfig,
        webhooks: WebhooksConfig,
        backend: Arc<dyn Backend>,
        events: EventBus,
        platform: Vec<(String, PlatformHandler)>,
    ) -> Result<Gateway, GatewayError> {
        let tokens = Arc::new(TokenStore::new(&config.tokens)?);
        tokens.mark_revoked(&backend.revoked_tokens());
        let replay = backend.replay_cache().unwrap_or_default();
        let trusted = config
            .trusted_proxies
            .iter()
            .map(|s| IpNet::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        if config.max_batch_size == 0 || !(1..=MAX_CONNECTIONS).contains(&config.max_connections) {
            return Err(GatewayError::Config(format!(
                "gateway.maxBatchSize must be at least 1 and gateway.maxConnections 1..={MAX_CONNECTIONS}"
            )));
        }
        let hooks = build_hooks(&webhooks)?;
        platform::validate(
            &platform,
            webhooks.enabled.then_some(webhooks.path.as_str()),
        )?;
        let agents = backend.agents();
        for (name, hook) in &hooks {
            if let Some(agent) = &hook.agent_id
                && !agents.iter().any(|a| &a.id == agent)
            {
                return Err(GatewayError::Config(format!(
                    "webhooks.hooks '{name}': unknown agent '{agent}'"
                )));
            }
        }
        let acceptor = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };

        // Resolve first: an unsafe address is refused before anything listens on it.
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((config.host.as_str(), config.port))
            .await
            .map_err(|e| GatewayError::Bind(format!("{}:{}: {e}", config.host, config.port)))?
            .collect();
        let public = addrs.iter().find(|a| !a.ip().is_loopback());
        let mut warnings = Vec::new();
        if let Some(public) = public {
            if tokens.is_empty() {
                return Err(GatewayError::Config(format!(
                    "refusing to listen on non-loopback {public} without gateway.tokens: \
                     anyone who reaches the port would drive the agents"
                )));
            }
            if acceptor.is_none() && !config.allow_insecure_http {
                warnings.push(format!(
                    "WARNING: the gateway listens on non-loopback {public} over plain HTTP: \
                     tokens and replies cross the network unencrypted. Set gateway.tls, or \
                     gateway.allowInsecureHttp: true to acknowledge."
                ));
            }
        }
        let listener = TcpListener::bind(&addrs[..])
            .await
            .map_err(|e| GatewayError::Bind(format!("{}:{}: {e}", config.host, config.port)))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| GatewayError::Bind(e.to_string()))?;
        if tokens.is_empty() {
            warnings.push(
                "the gateway has no tokens: every route except /health and webhooks answers 401"
                    .into(),
            );
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            limiter: RateLimiter::new(
                Duration::from_millis(config.rate_limit.window_ms),
                config.rate_limit.max_requests,
            ),
            webhook_prefix: webhooks.enabled.then(|| webhooks.path.clone()),
            webhook_max_body: webhooks.max_body_bytes,
            webhook_max_age: i64::try_from(webhooks.max_age_sec).unwrap_or(300),
            tls: acceptor.is_some(),
            config,
            backend,
            events,
            tokens,
            metrics: Metrics::default(),
            started_ms: now_ms(),
            local_addr,
            shutdown: shutdown_rx,
            trusted,
            hooks,
            replay,
            platform: platform
                .into_iter()
                .map(|(path, handler)| (Arc::from(path), handler))
                .collect(),
        });
        Ok(Gateway {
            listener,
            state,
            acceptor,
            warnings,
            shutdown_tx,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.state.local_addr
    }

    /// A handle that revokes gateway tokens while the gateway runs (the agents' `tokens.revoke`
    /// tool reaches it through the daemon). Revocation takes effect on the next request.
    pub fn revoker(&self) -> TokenRevoker {
        TokenRevoker {
            tokens: Arc::clone(&self.state.tokens),
            backend: Arc::downgrade(&self.state.backend),
            events: self.state.events.clone(),
        }
    }

    /// Start-up warnings for the daemon to show (plain HTTP on a public address, no tokens).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Serves until `shutdown` completes, then stops accepting, tells WebSocket clients (close
    /// 1001), lets in-flight requests finish for up to 5 s, and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), GatewayError> {
        let Gateway {
            listener,
            state,
            acceptor,
            shutdown_tx,
            ..
        } = self;
        let app = router(state.clone());
        let cap = state.config.max_connections;
        let permits = Arc::new(Semaphore::new(cap));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        // Out of file descriptors and the like: back off instead of spinning.
                        Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue; }
                    };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        state.metrics.connections_refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    };
                    let state = state.clone();
                    let app = app.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        state.metrics.connections_active.fetch_add(1, Ordering::Relaxed);
                        serve_connection(stream, peer, acceptor, app, &state, Arc::new(permit)).await;
                        state.metrics.connections_active.fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }
        }
        drop(listener);
        let _ = shutdown_tx.send(true);
        let all = u32::try_from(cap).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(all)).await;
        Ok(())
    }
}

/// Binds and serves until `shutdown`; [`Gateway::bind`] + [`Gateway::run`].
pub async fn serve(
    config: GatewayConfig,
    webhooks: WebhooksConfig,
    backend: Arc<dyn Backend>,
    events: EventBus,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GatewayError> {
    Gateway::bind(config, webhooks, backend, events)
        .await?
        .run(shutdown)
        .await
}

fn build_hooks(webhooks: &WebhooksConfig) -> Result<HashMap<String, Hook>, GatewayError> {
    let mut hooks = HashMap::new();
    if !webhooks.enabled {
        return Ok(hooks);
    }
    // Checked here because the router would refuse (panic on) a malformed or clashing route.
    let trimmed = webhooks.path.trim_end_matches('/');
    if !platform::well_formed(trimmed)
        || platform::RESERVED.contains(&trimmed.split('/').nth(1).unwrap_or(""))
    {
        return Err(GatewayError::Config(format!(
            "webhooks.path '{}' must be '/' followed by segments of letters, digits, '-' or '_', \
             and must not start with /health, /metrics, /rpc, /ws or /v1",
            webhooks.path
        )));
    }
    for h in &webhooks.hooks {
        let valid_name = !h.name.is_empty()
            && h.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            return Err(GatewayError::Config(format!(
                "webhooks.hooks: name '{}' must be letters, digits, '-' or '_'",
                h.name
            )));
        }
        let secret = h
            .secret
            .clone()
            .or_else(|| webhooks.token.clone())
            .ok_or_else(|| {
                GatewayError::Config(format!(
                    "webhooks.hooks '{}': no secret (set its secret or webhooks.token)",
                    h.name
                ))
            })?;
        if secret.expose_secret().chars().count() < auth::MIN_SECRET_CHARS {
            return Err(GatewayError::Config(format!(
                "webhooks.hooks '{}': secret must be at least {} characters",
                h.name,
                auth::MIN_SECRET_CHARS
            )));
        }
        let hook = Hook {
            secret,
            algorithm: h.algorithm,
            agent_id: h.agent_id.clone(),
            session_key: h
                .session_key
                .clone()
                .unwrap_or_else(|| format!("webhook:{}", h.name)),
        };
        if hooks.insert(h.name.clone(), hook).is_some() {
            return Err(GatewayError::Config(format!(
                "webhooks.hooks: duplicate name '{}'",
                h.name
            )));
        }
    }
    Ok(hooks)
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: Router,
    state: &AppState,
    slot: Arc<OwnedSemaphorePermit>,
) {
    let _ = stream.set_nodelay(true);
    let head_timeout = Duration::from_millis(state.config.header_read_timeout_ms);
    match acceptor {
        None => {
            let info = ConnInfo {
                peer,
                client_cn: None,
                slot: Some(slot),
            };
            drive(TokioIo::new(stream), info, app, state, head_timeout).await;
        }
        Some(acceptor) => {
            let tls = match tokio::time::timeout(head_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    state.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                    state.auth_failed(
                        auth::canonical(peer.ip()),
                        None,
                        "(tls handshake)",
                        &format!("tls handshake failed: {e}"),
                    );
                    return;
                }
                Err(_) => {
                    state.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let client_cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(tls::common_name);
            let info = ConnInfo {
                peer,
                client_cn,
                slot: Some(slot),
            };
            drive(TokioIo::new(tls), info, app, state, head_timeout).await;
        }
    }
}

async fn drive<I>(io: TokioIo<I>, info: ConnInfo, app: Router, state: &AppState, head: Duration)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc =
        tower::ServiceExt::map_request(app, move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(info.clone());
            req
        });
    let svc = TowerToHyperService::new(svc);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let mut shutdown = state.shutdown.clone();
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once shutdown has been signalled (or the signal is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/rpc", post(rpc::http_rpc))
        .route("/ws", get(ws::upgrade))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{id}", get(openai::model));
    if let Some(prefix) = &state.webhook_prefix {
        r = r.route(
            &format!("{}/{{name}}", prefix.trim_end_matches('/')),
            post(webhook_delivery),
        );
    }
    for (path, handler) in &state.platform {
        let (p, h) = (path.clone(), handler.clone());
        r = r.route(
            path,
            post(move |s: State<Arc<AppState>>, req: Request| {
                platform::deliver(s, p.clone(), h.clone(), req)
            }),
        );
    }
    r.fallback(|| async { error_response(StatusCode::NOT_FOUND, "Not found") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), front))
        .with_state(state)
}

/// Client address, CORS, rate limit, request timeout — in that order, before any route.
async fn front(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let conn = conn_info(req.extensions());
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = auth::client_ip(conn.peer.ip(), forwarded, &state.trusted);
    req.extensions_mut().insert(ClientIp(ip));

    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| state.config.cors_origins.iter().any(|a| a == o))
        })
        .cloned();
    if req.method() == Method::OPTIONS
        && let Some(origin) = &origin
    {
        let mut r = StatusCode::NO_CONTENT.into_response();
        cors_headers(r.headers_mut(), origin);
        return r;
    }

    let decision = if req.uri().path() == "/health" {
        auth::RateDecision::Allow
    } else {
        state.limiter.allow(ip)
    };
    if let auth::RateDecision::Refuse { report, reason } = decision {
        state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        if report {
            state.events.emit(
                Event::new(EventKind::RateLimited, Outcome::Denied)
                    .with("ip", ip.to_string())
                    .with("path", req.uri().path())
                    .with("reason", reason),
            );
        }
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({
                "error": "Too many requests",
                "code": rpc::RATE_LIMITED,
            })),
        )
            .into_response();
        let retry = state.config.rate_limit.window_ms.div_ceil(1000).to_string();
        if let Ok(v) = HeaderValue::from_str(&retry) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }

    let limit = Duration::from_millis(state.config.request_timeout_ms);
    let mut response = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            state.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            error_response(StatusCode::SERVICE_UNAVAILABLE, "Request timed out")
        }
    };
    if let Some(origin) = &origin {
        cors_headers(response.headers_mut(), origin);
    }
    response
}

fn cors_headers(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(json!({
        "status": "ok",
        "timestamp": format_ms(now_ms()),
        "startedAt": format_ms(state.started_ms),
    }))
    .into_response()
}

async fn metrics(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    if let Err(r) = state.authenticate(&parts, &["admin"]) {
        return r;
    }
    let m = &state.metrics;
    let counters: [(&str, &str, u64); 11] = [
        (
            "comis_gateway_requests_total",
            "HTTP requests received",
            m.requests.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_auth_failures_total",
            "Refused authentications",
            m.auth_failures.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_rate_limited_total",
            "Requests refused by the rate limit",
            m.rate_limited.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_rpc_calls_total",
            "JSON-RPC calls",
            m.rpc_calls.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_rpc_errors_total",
            "JSON-RPC error responses",
            m.rpc_errors.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_turns_total",
            "Agent turns started through the gateway",
            m.turns.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_webhooks_accepted_total",
            "Webhook deliveries accepted",
            m.webhooks_accepted.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_webhooks_rejected_total",
            "Webhook deliveries refused",
            m.webhooks_rejected.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_ws_connections_total",
            "WebSocket connections opened",
            m.ws_connections.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_connections_refused_total",
            "Connections closed at the connection cap",
            m.connections_refused.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_tls_handshake_failures_total",
            "Failed or timed-out TLS handshakes",
            m.tls_failures.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
        ));
    }
    let gauges: [(&str, &str, i64); 3] = [
        (
            "comis_gateway_connections_active",
            "Open TCP connections",
            m.connections_active.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_ws_connections_active",
            "Open WebSocket connections",
            m.ws_active.load(Ordering::Relaxed),
        ),
        (
            "comis_gateway_uptime_seconds",
            "Seconds since the gateway started",
            (now_ms() - state.started_ms) / 1000,
        ),
    ];
    for (name, help, value) in gauges {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

async fn webhook_delivery(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let conn = conn_info(&parts.extensions);
    let ip = client_ip(&parts.extensions, &conn);
    let reject = |status: StatusCode, reason: &str| {
        state
            .metrics
            .webhooks_rejected
            .fetch_add(1, Ordering::Relaxed);
        let mut event = Event::new(EventKind::WebhookRejected, Outcome::Denied)
            .with("hook", name.as_str())
            .with("ip", ip.to_string())
            .with("reason", reason);
        if let Some(cn) = &conn.client_cn {
            event = event.with("client", cn.as_str());
        }
        state.events.emit(event);
        error_response(status, reason)
    };
    let Some(hook) = state.hooks.get(&name) else {
        return reject(StatusCode::NOT_FOUND, "unknown hook");
    };
    let body = match read_body(body, state.webhook_max_body).await {
        Ok(b) => b,
        Err(r) => {
            let _ = reject(r.status(), "body too large");
            return r;
        }
    };
    let header_str = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    if let Err(rejection) = webhook::verify(
        hook.algorithm,
        hook.secret.expose_secret().as_bytes(),
        header_str(webhook::SIGNATURE_HEADER),
        header_str(webhook::TIMESTAMP_HEADER),
        &body,
        now_ms() / 1000,
        state.webhook_max_age,
        &state.replay,
    ) {
        return reject(StatusCode::UNAUTHORIZED, rejection.as_str());
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return reject(StatusCode::BAD_REQUEST, "body is not UTF-8");
    };
    let agent = match state.resolve_agent(hook.agent_id.as_deref()) {
        Ok(a) => a,
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    // The process-wide wrapper: its compiled patterns are shared with the runtime.
    let wrapped =
        match comis_guard::wrap::wrap(text, &WrapOptions::new(SourceKind::Webhook).sender(&name)) {
            Ok(w) => w,
            Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    state
        .metrics
        .webhooks_accepted
        .fetch_add(1, Ordering::Relaxed);
    state.metrics.turns.fetch_add(1, Ordering::Relaxed);
    let request = TurnRequest {
        agent_id: agent.id.clone(),
        session: hook.session_key.clone(),
        text: format!("Webhook '{name}' delivered this payload:\n{}", wrapped.text),
        origin: Origin {
            channel: "webhook".into(),
            sender: name.clone(),
        },
        trace_id: None,
    };
    // The sender gets its answer now; the turn runs on (senders time out in seconds).
    let backend = state.backend.clone();
    tokio::spawn(async move {
        let _ = backend.execute(request).await;
    });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": true, "hook": name, "agentId": agent.id })),
    )
        .into_response()
}
