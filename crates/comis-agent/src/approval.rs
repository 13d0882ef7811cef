//! The approval gate: destructive (and unknown) actions wait for a human.
//!
//! What it guarantees:
//! - **Only an operator approves.** A request is resolved by [`ApprovalGate::resolve`] (JSON-RPC,
//!   the CLI, a chat command), by a verified chat-button callback, or denied by the timeout or
//!   shutdown. Nothing the model sends (`_confirmed: true` or any other argument) is read here.
//! - **Fail closed.** No answer within `approvals.defaultTimeoutMs` (300,000) is a denial; a store
//!   failure is a denial; a request after [`ApprovalGate::shutdown`] is a denial; shutdown denies
//!   every pending request.
//! - **Caches with mutual invalidation**, keyed by (agent, action, SHA-256 of the arguments'
//!   canonical JSON): an operator's approval is remembered for `batchApprovalTtlMs` (30 s) and
//!   clears the denial entry; an operator's denial is remembered for `denialCacheTtlMs` (60 s) and
//!   clears the approval entry ("denial always wins"); a timeout clears the approval entry and
//!   fills nothing.
//! - **Identical parallel requests join one pending entry** and get the same answer.
//! - **Persisted.** Every request is a row in the store (audited there as `approval:requested`
//!   / `approval:resolved` in the same transaction; the bus gets a broadcast copy); the store's
//!   answer is authoritative, so a late approval cannot flip a timeout. A waiting request also
//!   notices a resolution written by another process (`comis approvals approve` on the database)
//!   within half a second.
//! - **Signed chat buttons.** [`ApprovalGate::sign_callback`] makes callback data
//!   `<id>:<a|d>:<expires unix s>:<tag>` (≤ 64 bytes, Telegram's limit), the tag being the first
//!   12 bytes of HMAC-SHA256 under the gate's key, compared in constant time.
//!
//! What it does not: decide what is destructive (the classifier does) or notify a channel (the
//! caller forwards [`TurnEvent::ApprovalRequested`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use comis_store::approval::{BY_TIMEOUT, MAX_PARAMS_BYTES};
use comis_store::{AgentId, ApprovalId, ApprovalStatus, Decision, NewApproval, Store};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc::UnboundedSender, watch};

use crate::AgentError;
use crate::config::ApprovalsConfig;
use crate::event::{Event, EventBus, EventKind, Outcome};
use crate::runtime::TurnEvent;

/// Who denies requests still pending at shutdown.
pub const BY_SHUTDOWN: &str = "system:shutdown";
/// Who denies when the gate cannot record a request (fail closed).
pub const BY_ERROR: &str = "system:error";
/// Who answers from the approval cache.
pub const BY_CACHED_APPROVAL: &str = "system:cached-approval";
/// Who answers from the denial cache.
pub const BY_CACHED_DENIAL: &str = "system:cached-denial";

const TAG_BYTES: usize = 12;
const CALLBACK_CONTEXT: &[u8] = b"comis-approval-callback:v1:";
const SUMMARY_CHARS: usize = 200;
/// How often a waiting request checks the store for a resolution made by another process.
const POLL: Duration = Duration::from_millis(500);

/// A request waiting for an operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    pub id: String,
    pub agent_id: String,
    pub session: String,
    pub action: String,
    /// One display-safe line: the action and its arguments, shortened.
    pub summary: String,
    pub params: Value,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub approved: bool,
    /// `cli:<user>`, `chat:<sender>`, `system:timeout`, `system:cached-approval`, …
    pub by: String,
    /// The request id, when a request was made (not for cache answers).
    pub id: Option<String>,
}

/// What the loop asks the gate.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalRequest<'a> {
    pub agent_id: &'a str,
    pub session: &'a str,
    /// Dotted action name (`system.exec`).
    pub action: &'a str,
    /// Wire name the model used (`system_exec`).
    pub tool: &'a str,
    pub args: &'a Value,
    pub trace_id: &'a str,
}

/// A verified chat-button press.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAction {
    pub id: String,
    pub approve: bool,
}

type CacheKey = (String, String, [u8; 32]);

#[derive(Debug)]
struct Pending {
    key: CacheKey,
    info: PendingApproval,
    trace_id: String,
    deadline: Instant,
    tx: watch::Sender<Option<Resolution>>,
}

#[derive(Debug, Default)]
struct State {
    pending: HashMap<String, Pending>,
    by_key: HashMap<CacheKey, String>,
    approved: HashMap<CacheKey, Instant>,
    denied: HashMap<CacheKey, Instant>,
    closed: bool,
}

struct Inner {
    store: Arc<Store>,
    events: EventBus,
    config: ApprovalsConfig,
    key: [u8; 32],
    state: Mutex<State>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalGate")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The gate; cheap to clone, one per daemon.
#[derive(Debug, Clone)]
pub struct ApprovalGate {
    inner: Arc<Inner>,
}

enum Start {
    Done(Resolution),
    Wait {
        id: String,
        deadline: Instant,
        rx: watch::Receiver<Option<Resolution>>,
        new: Option<PendingApproval>,
    },
}

impl ApprovalGate {
    /// A gate over `store`. `callback_key` signs chat-button data; `None` draws a random key
    /// (buttons then stop working across restarts, which is also when pending requests end).
    ///
    /// # Errors
    /// [`AgentError::Config`] when the random source fails.
    pub fn new(
        store: Arc<Store>,
        events: EventBus,
        config: ApprovalsConfig,
        callback_key: Option<&[u8]>,
    ) -> Result<ApprovalGate, AgentError> {
        let key = match callback_key {
            Some(k) => Sha256::digest(k).into(),
            None => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| AgentError::Config {
                    key: "approvals".into(),
                    reason: format!("random source unavailable: {e}"),
                })?;
                k
            }
        };
        Ok(ApprovalGate {
            inner: Arc::new(Inner {
                store,
                events,
                config,
                key,
                state: Mutex::new(State::default()),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The timeout for new requests.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.default_timeout_ms.max(1))
    }

    /// Asks for approval and waits for the answer (or the timeout). Never fails: every error is
    /// a denial.
    pub async fn request(
        &self,
        req: ApprovalRequest<'_>,
        live: Option<&UnboundedSender<TurnEvent>>,
    ) -> Resolution {
        let key: CacheKey = (
            req.agent_id.to_owned(),
            req.action.to_owned(),
            digest(req.args),
        );
        let start = self.start(&req, key);
        let (id, deadline, mut rx, new) = match start {
            Start::Done(r) => return r,
            Start::Wait {
                id,
                deadline,
                rx,
                new,
            } => (id, deadline, rx, new),
        };
        let summary = new
            .as_ref()
            .map_or_else(|| summarize(req.action, req.args), |p| p.summary.clone());
        if let Some(info) = new {
            self.inner.events.publish_recorded(
                Event::new(EventKind::ApprovalRequested, Outcome::Allowed)
                    .agent(req.agent_id)
                    .trace(req.trace_id)
                    .with("approval_id", info.id.as_str())
                    .with("action", info.action.as_str())
                    .with("expires_at_ms", info.expires_at_ms),
                None,
            );
        }
        if let Some(live) = live {
            let _ = live.send(TurnEvent::ApprovalRequested {
                id: id.clone(),
                action: req.action.to_owned(),
                summary,
            });
        }
        let resolution = self.wait(&id, deadline, &mut rx).await;
        if let Some(live) = live {
            let _ = live.send(TurnEvent::ApprovalResolved {
                id,
                approved: resolution.approved,
            });
        }
        resolution
    }

    /// Waits for the answer: from this process (a watch notification) or from another one that
    /// resolved the row directly (`comis approvals approve` on the database; polled every
    /// [`POLL`]), until `deadline`, when the request is denied by `system:timeout`.
    async fn wait(
        &self,
        id: &str,
        deadline: Instant,
        rx: &mut watch::Receiver<Option<Resolution>>,
    ) -> Resolution {
        loop {
            let slice = deadline.min(Instant::now() + POLL);
            let waited = tokio::time::timeout_at(
                tokio::time::Instant::from_std(slice),
                rx.wait_for(Option::is_some),
            )
            .await;
            match waited {
                Ok(Ok(r)) => return r.clone().unwrap_or_else(|| deny(BY_ERROR, Some(id))),
                // Sender gone without an answer: settle below.
                Ok(Err(_)) => break,
                Err(_) if Instant::now() >= deadline => break,
                Err(_) => {
                    let resolved_elsewhere = ApprovalId::new(id)
                        .ok()
                        .and_then(|aid| self.inner.store.get_approval(&aid).ok().flatten())
                        .is_some_and(|a| a.status != ApprovalStatus::Pending);
                    if resolved_elsewhere {
                        break;
                    }
                }
            }
        }
        // Idempotent: a row already resolved (elsewhere, or just now) comes back as it is, and
        // every waiter and the caches learn the store's answer.
        self.finish(id, Decision::Deny, BY_TIMEOUT, Some("timed out"))
            .unwrap_or_else(|_| deny(BY_ERROR, Some(id)))
    }

    fn start(&self, req: &ApprovalRequest<'_>, key: CacheKey) -> Start {
        let now = Instant::now();
        let mut st = self.state();
        if st.closed {
            return Start::Done(deny(BY_SHUTDOWN, None));
        }
        st.approved.retain(|_, until| *until > now);
        st.denied.retain(|_, until| *until > now);
        if st.approved.contains_key(&key) {
            return Start::Done(Resolution {
                approved: true,
                by: BY_CACHED_APPROVAL.into(),
                id: None,
            });
        }
        if st.denied.contains_key(&key) {
            return Start::Done(deny(BY_CACHED_DENIAL, None));
        }
        if let Some(id) = st.by_key.get(&key)
            && let Some(p) = st.pending.get(id)
        {
            return Start::Wait {
                id: id.clone(),
                deadline: p.deadline,
                rx: p.tx.subscribe(),
                new: None,
            };
        }
        let timeout = self.timeout();
        let params = bounded_params(req.args);
        let new = NewApproval {
            agent: match AgentId::new(req.agent_id) {
                Ok(a) => a,
                Err(_) => return Start::Done(deny(BY_ERROR, None)),
            },
            session: req.session.to_owned(),
            tool: req.tool.to_owned(),
            action: req.action.to_owned(),
            params: params.clone(),
            timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
        };
        // Recorded while holding the lock, so an identical request cannot make a second row.
        let stored = match self.inner.store.request_approval(&new) {
            Ok(a) => a,
            Err(_) => return Start::Done(deny(BY_ERROR, None)),
        };
        let id = stored.id.as_str().to_owned();
        let info = PendingApproval {
            id: id.clone(),
            agent_id: req.agent_id.to_owned(),
            session: req.session.to_owned(),
            action: req.action.to_owned(),
            summary: summarize(req.action, req.args),
            params,
            created_at_ms: stored.created_at,
            expires_at_ms: stored.expires_at,
        };
        let (tx, rx) = watch::channel(None);
        let deadline = now + timeout;
        st.by_key.insert(key.clone(), id.clone());
        st.pending.insert(
            id.clone(),
            Pending {
                key,
                info: info.clone(),
                trace_id: req.trace_id.to_owned(),
                deadline,
                tx,
            },
        );
        Start::Wait {
            id,
            deadline,
            rx,
            new: Some(info),
        }
    }

    /// Pending requests, oldest first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let mut all: Vec<PendingApproval> = self
            .state()
            .pending
            .values()
            .map(|p| p.info.clone())
            .collect();
        all.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        all
    }

    /// An operator's answer. `id` may be the full id or a prefix of at least 4 hex digits (as
    /// typed in `/approve 1a2b3c4d`); `by` names the operator (`cli:alice`, `chat:123`).
    ///
    /// # Errors
    /// [`AgentError::Store`] for an unknown, ambiguous or malformed id.
    pub fn resolve(&self, id: &str, approved: bool, by: &str) -> Result<Resolution, AgentError> {
        let id = if id.len() == 32 {
            ApprovalId::new(id)?.as_str().to_owned()
        } else {
            self.inner.store.find_approval(id)?.id.as_str().to_owned()
        };
        let decision = if approved {
            Decision::Approve
        } else {
            Decision::Deny
        };
        self.finish(&id, decision, by, None)
    }

    fn finish(
        &self,
        id: &str,
        decision: Decision,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Resolution, AgentError> {
        let aid = ApprovalId::new(id)?;
        // The store is authoritative and idempotent: a late approval of a timed-out request
        // comes back denied.
        let stored = self
            .inner
            .store
            .resolve_approval(&aid, decision, by, reason)?;
        let resolution = Resolution {
            approved: stored.status == ApprovalStatus::Approved,
            by: stored.resolved_by.clone().unwrap_or_else(|| by.to_owned()),
            id: Some(id.to_owned()),
        };
        let now = Instant::now();
        let mut st = self.state();
        if let Some(p) = st.pending.remove(id) {
            st.by_key.remove(&p.key);
            let cfg = &self.inner.config;
            if resolution.approved {
                st.denied.remove(&p.key);
                if cfg.batch_approval_ttl_ms > 0 {
                    st.approved.insert(
                        p.key.clone(),
                        now + Duration::from_millis(cfg.batch_approval_ttl_ms),
                    );
                }
            } else {
                st.approved.remove(&p.key);
                let system = resolution.by.starts_with("system:");
                if !system && cfg.denial_cache_ttl_ms > 0 {
                    st.denied.insert(
                        p.key.clone(),
                        now + Duration::from_millis(cfg.denial_cache_ttl_ms),
                    );
                }
            }
            let _ = p.tx.send(Some(resolution.clone()));
            drop(st);
            self.inner.events.publish_recorded(
                Event::new(
                    EventKind::ApprovalResolved,
                    if resolution.approved {
                        Outcome::Allowed
                    } else {
                        Outcome::Denied
                    },
                )
                .agent(&p.info.agent_id)
                .trace(&p.trace_id)
                .with("approval_id", id)
                .with("action", p.info.action.as_str())
                .with("approved", resolution.approved)
                .with("resolved_by", resolution.by.as_str()),
                None,
            );
        }
        Ok(resolution)
    }

    /// Denies every pending request and every later one (daemon shutdown).
    pub fn shutdown(&self) {
        let ids: Vec<String> = {
            let mut st = self.state();
            st.closed = true;
            st.pending.keys().cloned().collect()
        };
        for id in ids {
            if self
                .finish(
                    &id,
                    Decision::Deny,
                    BY_SHUTDOWN,
                    Some("the daemon is shutting down"),
                )
                .is_err()
            {
                // The store failed: still release the waiter, denied.
                let mut st = self.state();
                if let Some(p) = st.pending.remove(&id) {
                    st.by_key.remove(&p.key);
                    let _ = p.tx.send(Some(deny(BY_SHUTDOWN, Some(&id))));
                }
            }
        }
    }

    fn tag(&self, body: &str) -> Option<[u8; TAG_BYTES]> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.inner.key).ok()?;
        mac.update(CALLBACK_CONTEXT);
        mac.update(body.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(full.get(..TAG_BYTES)?);
        Some(tag)
    }

    /// Callback data for a chat button that approves (or denies) `id`, valid until
    /// `expires_at_s` (Unix seconds).
    pub fn sign_callback(&self, id: &str, approve: bool, expires_at_s: i64) -> String {
        let body = format!("{id}:{}:{expires_at_s}", if approve { 'a' } else { 'd' });
        let tag = self.tag(&body).unwrap_or([0u8; TAG_BYTES]);
        format!("{body}:{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// A chat-button press: verifies `data` and resolves the request it names on behalf of `by`
    /// (`chat:<sender>`).
    ///
    /// # Errors
    /// [`AgentError::Callback`] for malformed, forged or expired data; as
    /// [`ApprovalGate::resolve`] otherwise.
    pub fn resolve_callback(&self, data: &str, by: &str) -> Result<Resolution, AgentError> {
        let action = self.verify_callback(data)?;
        self.resolve(&action.id, action.approve, by)
    }

    /// Checks callback data now.
    ///
    /// # Errors
    /// [`AgentError::Callback`] when malformed, forged or expired.
    pub fn verify_callback(&self, data: &str) -> Result<CallbackAction, AgentError> {
        self.verify_callback_at(data, comis_store::time::now_ms() / 1000)
    }

    /// Checks callback data at `now_s` (Unix seconds).
    ///
    /// # Errors
    /// [`AgentError::Callback`] when malformed, forged or expired.
    pub fn verify_callback_at(&self, data: &str, now_s: i64) -> Result<CallbackAction, AgentError> {
        let bad = |why: &'static str| AgentError::Callback(why);
        if data.len() > 128 {
            return Err(bad("malformed"));
        }
        let (body, tag) = data.rsplit_once(':').ok_or(bad("malformed"))?;
        let given = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad("malformed"))?;
        let expected = self.tag(body).ok_or(bad("malformed"))?;
        if given.len() != TAG_BYTES || !bool::from(expected.as_slice().ct_eq(&given)) {
            return Err(bad("bad signature"));
        }
        let mut parts = body.split(':');
        let (Some(id), Some(verb), Some(exp), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("malformed"));
        };
        let approve = match verb {
            "a" => true,
            "d" => false,
            _ => return Err(bad("malformed")),
        };
        let exp: i64 = exp.parse().map_err(|_| bad("malformed"))?;
        if now_s > exp {
            return Err(bad("expired"));
        }
        Ok(CallbackAction {
            id: id.to_owned(),
            approve,
        })
    }
}

fn deny(by: &str, id: Option<&str>) -> Resolution {
    Resolution {
        approved: false,
        by: by.to_owned(),
        id: id.map(str::to_owned),
    }
}

/// SHA-256 of the canonical JSON (serde_json's map is ordered without `preserve_order`).
fn digest(args: &Value) -> [u8; 32] {
    Sha256::digest(args.to_string().as_bytes()).into()
}

/// The arguments as stored: whole when they fit the store's limit, otherwise a digest and a
/// preview (a huge `file.write` must still be reviewable and must not fail the request).
fn bounded_params(args: &Value) -> Value {
    let text = args.to_string();
    if text.len() <= MAX_PARAMS_BYTES / 2 {
        return args.clone();
    }
    let preview: String = text.chars().take(4_096).collect();
    let d = digest(args);
    let mut hex = String::with_capacity(64);
    for b in d {
        hex.push_str(&format!("{b:02x}"));
    }
    json!({"truncated": true, "bytes": text.len(), "sha256": hex, "preview": preview})
}

fn summarize(action: &str, args: &Value) -> String {
    let args: String = args.to_string().chars().take(SUMMARY_CHARS + 1).collect();
    comis_guard::unicode::display_safe(&format!("{action} {args}"), SUMMARY_CHARS)
}
