//! The circuit breaker: one per provider and model (the original had one per agent).
//!
//! States `closed → open → halfOpen` as in the original, plus what it left out:
//! - **closed**: calls go through; `failureThreshold` consecutive failures (a call slower
//!   than `latencyThresholdMs`, when set, is a failure too) open the circuit.
//! - **open**: [`CircuitBreaker::allow`] answers [`CircuitOpen`] at once — the provider is
//!   not called — until `resetTimeoutMs` has passed since it opened.
//! - **halfOpen**: exactly one probe is let through. Its success closes the circuit, its
//!   failure re-opens it; a probe that reports nothing within `halfOpenTimeoutMs` (a
//!   cancelled turn) counts as failed, so the circuit can never stick half-open.
//!
//! Every transition emits `circuit:state_changed` on the [`EventBus`] with `provider`,
//! `model`, `from`, `to` (`closed` | `open` | `halfOpen`) and `failures`; through
//! [`CircuitBreaker::call_provider_traced`] also with the trace id of the call that caused it,
//! and the audit ids come back to the caller as evidence.
//!
//! Two ways to use it: [`CircuitBreaker::call`] wraps a future (checks, times, records), or
//! [`CircuitBreaker::allow`] then [`record_success`](CircuitBreaker::record_success) /
//! [`record_failure`](CircuitBreaker::record_failure) for callers that need to decide what
//! counts as a failure themselves. [`counts_as_failure`] is that decision for providers, and
//! [`CircuitBreaker::call_provider`] is `call` with it for one provider request.
//!
//! Time comes from a [`Clock`], so tests move it instead of sleeping.
//!
//! Does not: pick the fallback (the runtime answers with it), or share state across processes.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::CircuitBreakerConfig;
use crate::event::{Event, EventBus, EventKind, Outcome};
use crate::provider::ProviderError;

/// A source of monotonic time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut o = lock(&self.offset);
        *o = o.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + *lock(&self.offset)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state stays consistent under every operation; a panic elsewhere must not wedge it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    /// The name used in events (the original's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "halfOpen",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The immediate answer while the circuit is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitOpen {
    pub provider: String,
    pub model: String,
    /// Until the next probe may go (zero while a probe is in flight).
    pub retry_in: Duration,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit open for {}/{}: provider not called (next probe in {} ms)",
            self.provider,
            self.model,
            self.retry_in.as_millis()
        )
    }
}

impl std::error::Error for CircuitOpen {}

/// What [`CircuitBreaker::call`] returns on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError<E> {
    /// The circuit is open; the call was not made.
    Open(CircuitOpen),
    /// The call was made and failed.
    Failed(E),
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Open(o) => o.fmt(f),
            CallError::Failed(e) => e.fmt(f),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for CallError<E> {}

/// Whether a provider error says the provider is unhealthy. A request the provider refused
/// as malformed (400, 404, 413, 422) is our problem, not an outage, and does not count;
/// everything else does (429, 5xx, timeouts, broken streams, transport, bad keys).
pub fn counts_as_failure(e: &ProviderError) -> bool {
    !matches!(
        e,
        ProviderError::Rejected {
            status: 400 | 404 | 413 | 422,
            ..
        }
    )
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    failures: u32,
    opened_at: Instant,
    /// When the half-open probe was let through.
    probe_since: Option<Instant>,
}

/// One breaker (one provider and model).
#[derive(Debug)]
pub struct CircuitBreaker {
    provider: String,
    model: String,
    config: CircuitBreakerConfig,
    clock: Arc<dyn Clock>,
    bus: EventBus,
    agent_id: Option<String>,
    inner: Mutex<Inner>,
}

type Transition = (CircuitState, CircuitState, u32);

impl CircuitBreaker {
    /// A closed breaker for `provider`/`model`, emitting on `bus`.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        config: CircuitBreakerConfig,
        bus: EventBus,
        clock: Arc<dyn Clock>,
    ) -> CircuitBreaker {
        let now = clock.now();
        CircuitBreaker {
            provider: provider.into(),
            model: model.into(),
            config,
            clock,
            bus,
            agent_id: None,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                failures: 0,
                opened_at: now,
                probe_since: None,
            }),
        }
    }

    /// Tags events with the agent.
    #[must_use]
    pub fn for_agent(mut self, agent_id: impl Into<String>) -> CircuitBreaker {
        self.agent_id = Some(agent_id.into());
        self
    }

    fn reset_timeout(&self) -> Duration {
        Duration::from_millis(self.config.reset_timeout_ms)
    }

    fn half_open_timeout(&self) -> Duration {
        Duration::from_millis(self.config.half_open_timeout_ms)
    }

    /// Brings time-driven transitions up to date (a lost probe re-opens).
    fn tick(&self, inner: &mut Inner, now: Instant, out: &mut Vec<Transition>) {
        if inner.state == CircuitState::HalfOpen
            && let Some(since) = inner.probe_since
            && now.saturating_duration_since(since) >= self.half_open_timeout()
        {
            inner.state = CircuitState::Open;
            inner.opened_at = now;
            inner.probe_since = None;
            out.push((CircuitState::HalfOpen, CircuitState::Open, inner.failures));
        }
    }

    /// The state now (time-driven transitions applied, but no probe started).
    pub fn state(&self) -> CircuitState {
        let mut out = Vec::new();
        let state = {
            let mut inner = lock(&self.inner);
            self.tick(&mut inner, self.clock.now(), &mut out);
            inner.state
        };
        self.emit(out, None);
        state
    }

    /// Asks to make one call. `Ok` means call the provider and then report the outcome with
    /// [`record_success`](Self::record_success) or [`record_failure`](Self::record_failure);
    /// when this `Ok` was the half-open probe, not reporting counts as a failure after
    /// `halfOpenTimeoutMs`.
    ///
    /// # Errors
    /// [`CircuitOpen`] while open, or while the one probe is in flight.
    pub fn allow(&self) -> Result<(), CircuitOpen> {
        self.allow_traced(None).0
    }

    fn allow_traced(&self, trace: Option<&str>) -> (Result<(), CircuitOpen>, Vec<i64>) {
        let now = self.clock.now();
        let mut out = Vec::new();
        let verdict = {
            let mut inner = lock(&self.inner);
            self.tick(&mut inner, now, &mut out);
            match inner.state {
                CircuitState::Closed => Ok(()),
                CircuitState::Open => {
                    let open_for = now.saturating_duration_since(inner.opened_at);
                    if open_for >= self.reset_timeout() {
                        inner.state = CircuitState::HalfOpen;
                        inner.probe_since = Some(now);
                        out.push((CircuitState::Open, CircuitState::HalfOpen, inner.failures));
                        Ok(())
                    } else {
                        Err(self.open_answer(self.reset_timeout() - open_for))
                    }
                }
                CircuitState::HalfOpen => {
                    if inner.probe_since.is_some() {
                        Err(self.open_answer(Duration::ZERO))
                    } else {
                        inner.probe_since = Some(now);
                        Ok(())
                    }
                }
            }
        };
        (verdict, self.emit(out, trace))
    }

    fn open_answer(&self, retry_in: Duration) -> CircuitOpen {
        CircuitOpen {
            provider: self.provider.clone(),
            model: self.model.clone(),
            retry_in,
        }
    }

    /// Reports a call that succeeded after `latency`. Over `latencyThresholdMs` (when set) it
    /// counts as a failure.
    pub fn record_success(&self, latency: Duration) {
        self.record_success_traced(latency, None);
    }

    fn record_success_traced(&self, latency: Duration, trace: Option<&str>) -> Vec<i64> {
        let threshold = self.config.latency_threshold_ms;
        if threshold > 0 && latency > Duration::from_millis(threshold) {
            return self.record_failure_traced(trace);
        }
        let mut out = Vec::new();
        {
            let mut inner = lock(&self.inner);
            self.tick(&mut inner, self.clock.now(), &mut out);
            match inner.state {
                CircuitState::Closed => inner.failures = 0,
                CircuitState::HalfOpen => {
                    inner.state = CircuitState::Closed;
                    inner.failures = 0;
                    inner.probe_since = None;
                    out.push((CircuitState::HalfOpen, CircuitState::Closed, 0));
                }
                // A call that began before the circuit opened: it proves little; the probe
                // decides.
                CircuitState::Open => {}
            }
        }
        self.emit(out, trace)
    }

    /// Reports a failed call.
    pub fn record_failure(&self) {
        self.record_failure_traced(None);
    }

    fn record_failure_traced(&self, trace: Option<&str>) -> Vec<i64> {
        let now = self.clock.now();
        let mut out = Vec::new();
        {
            let mut inner = lock(&self.inner);
            self.tick(&mut inner, now, &mut out);
            inner.failures = inner.failures.saturating_add(1);
            match inner.state {
                CircuitState::Closed if inner.failures >= self.config.failure_threshold.max(1) => {
                    inner.state = CircuitState::Open;
                    inner.opened_at = now;
                    out.push((CircuitState::Closed, CircuitState::Open, inner.failures));
                }
                CircuitState::HalfOpen => {
                    inner.state = CircuitState::Open;
                    inner.opened_at = now;
                    inner.probe_since = None;
                    out.push((CircuitState::HalfOpen, CircuitState::Open, inner.failures));
                }
                _ => {}
            }
        }
        self.emit(out, trace)
    }

    /// Runs `f` if the circuit allows it, timing it and recording the outcome; every `Err`
    /// counts as a failure (use [`call_counting`](Self::call_counting) to choose).
    ///
    /// # Errors
    /// [`CallError::Open`] without calling `f`; [`CallError::Failed`] with `f`'s error.
    pub async fn call<T, E, F, Fut>(&self, f: F) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_counting(f, |_| true).await
    }

    /// Like [`call`](Self::call); an error counts as a failure only when `is_failure` says so
    /// (for providers: [`counts_as_failure`]).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_counting<T, E, F, Fut>(
        &self,
        f: F,
        is_failure: impl Fn(&E) -> bool,
    ) -> Result<T, CallError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_traced(f, is_failure, None).await.0
    }

    /// `call_counting` with the transitions tagged with `trace`; also returns their audit ids.
    async fn call_traced<T, E, F, Fut>(
        &self,
        f: F,
        is_failure: impl Fn(&E) -> bool,
        trace: Option<&str>,
    ) -> (Result<T, CallError<E>>, Vec<i64>)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let (verdict, mut ids) = self.allow_traced(trace);
        if let Err(open) = verdict {
            return (Err(CallError::Open(open)), ids);
        }
        let started = self.clock.now();
        let result = f().await;
        let more = match &result {
            Ok(_) => self
                .record_success_traced(self.clock.now().saturating_duration_since(started), trace),
            Err(e) if is_failure(e) => self.record_failure_traced(trace),
            // The provider answered; it is healthy even if our request was not.
            Err(_) => self.record_success_traced(Duration::ZERO, trace),
        };
        ids.extend(more);
        (result.map_err(CallError::Failed), ids)
    }

    /// One provider call through the breaker, counting failures with [`counts_as_failure`].
    ///
    /// # Errors
    /// [`CallError::Open`] without calling the provider; [`CallError::Failed`] with its error.
    pub async fn call_provider(
        &self,
        provider: &dyn crate::provider::Provider,
        request: &crate::message::ChatRequest,
        deltas: crate::provider::DeltaSink<'_>,
    ) -> Result<crate::message::ChatResponse, CallError<ProviderError>> {
        self.call_counting(|| provider.complete(request, deltas), counts_as_failure)
            .await
    }

    /// One provider call through the breaker, like [`call_provider`](Self::call_provider),
    /// with the transitions it causes tagged with `trace_id`. Returns the audit ids of those
    /// events alongside the result, so the turn can cite them.
    ///
    /// # Errors
    /// As [`call_provider`](Self::call_provider).
    pub async fn call_provider_traced(
        &self,
        provider: &dyn crate::provider::Provider,
        request: &crate::message::ChatRequest,
        deltas: crate::provider::DeltaSink<'_>,
        trace_id: &str,
    ) -> (
        Result<crate::message::ChatResponse, CallError<ProviderError>>,
        Vec<i64>,
    ) {
        self.call_traced(
            || provider.complete(request, deltas),
            counts_as_failure,
            Some(trace_id),
        )
        .await
    }

    fn emit(&self, transitions: Vec<Transition>, trace: Option<&str>) -> Vec<i64> {
        let mut ids = Vec::new();
        for (from, to, failures) in transitions {
            let outcome = match to {
                CircuitState::Closed => Outcome::Allowed,
                CircuitState::HalfOpen => Outcome::Modified,
                CircuitState::Open => Outcome::Failed,
            };
            let mut event = Event::new(EventKind::CircuitStateChanged, outcome)
                .with("provider", self.provider.as_str())
                .with("model", self.model.as_str())
                .with("from", from.as_str())
                .with("to", to.as_str())
                .with("failures", failures);
            if let Some(a) = &self.agent_id {
                event = event.agent(a);
            }
            if let Some(t) = trace {
                event = event.trace(t);
            }
            ids.extend(self.bus.emit(event));
        }
        ids
    }
}

/// The breakers of one agent, one per provider and model, made on first use.
#[derive(Debug)]
pub struct CircuitBreakers {
    config: CircuitBreakerConfig,
    bus: EventBus,
    clock: Arc<dyn Clock>,
    agent_id: Option<String>,
    map: Mutex<HashMap<(String, String), Arc<CircuitBreaker>>>,
}

impl CircuitBreakers {
    pub fn new(config: CircuitBreakerConfig, bus: EventBus, clock: Arc<dyn Clock>) -> Self {
        CircuitBreakers {
            config,
            bus,
            clock,
            agent_id: None,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Tags every breaker's events with the agent.
    #[must_use]
    pub fn for_agent(mut self, agent_id: impl Into<String>) -> Self {
        self.agent_id = Some(agent_id.into());
        self
    }

    /// The breaker for `provider`/`model`.
    pub fn get(&self, provider: &str, model: &str) -> Arc<CircuitBreaker> {
        let mut map = lock(&self.map);
        let key = (provider.to_owned(), model.to_owned());
        Arc::clone(map.entry(key).or_insert_with(|| {
            let mut b = CircuitBreaker::new(
                provider,
                model,
                self.config.clone(),
                self.bus.clone(),
                Arc::clone(&self.clock),
            );
            b.agent_id.clone_from(&self.agent_id);
            Arc::new(b)
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn setup(threshold: u32) -> (CircuitBreaker, Arc<ManualClock>, EventBus) {
        let clock = Arc::new(ManualClock::new());
        let bus = EventBus::new();
        let config = CircuitBreakerConfig {
            failure_threshold: threshold,
            ..CircuitBreakerConfig::default()
        };
        let b = CircuitBreaker::new("p", "m", config, bus.clone(), clock.clone()).for_agent("a");
        (b, clock, bus)
    }

    fn transitions(
        rx: &mut tokio::sync::broadcast::Receiver<crate::event::Emitted>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(e) = rx.try_recv() {
            assert_eq!(e.event.kind, EventKind::CircuitStateChanged);
            assert_eq!(e.event.agent_id.as_deref(), Some("a"));
            assert_eq!(e.event.data["provider"], "p");
            assert_eq!(e.event.data["model"], "m");
            out.push(format!(
                "{}->{}",
                e.event.data["from"].as_str().unwrap(),
                e.event.data["to"].as_str().unwrap()
            ));
        }
        out
    }

    #[test]
    fn opens_after_threshold_and_recovers_through_one_probe() {
        let (b, clock, bus) = setup(3);
        let mut rx = bus.subscribe();
        for _ in 0..2 {
            assert!(b.allow().is_ok());
            b.record_failure();
        }
        assert_eq!(b.state(), CircuitState::Closed);
        b.allow().unwrap();
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Open);
        let open = b.allow().unwrap_err();
        assert_eq!(open.retry_in, Duration::from_secs(60));
        clock.advance(Duration::from_millis(59_999));
        assert!(b.allow().is_err());
        clock.advance(Duration::from_millis(1));
        assert!(b.allow().is_ok(), "the probe");
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert!(b.allow().is_err(), "only one probe at a time");
        b.record_success(Duration::from_millis(5));
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(
            transitions(&mut rx),
            ["closed->open", "open->halfOpen", "halfOpen->closed"]
        );
    }

    #[test]
    fn success_resets_the_count_and_a_failed_probe_reopens() {
        let (b, clock, bus) = setup(2);
        let mut rx = bus.subscribe();
        b.record_failure();
        b.record_success(Duration::ZERO);
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Closed, "not consecutive");
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Open);
        clock.advance(Duration::from_secs(60));
        b.allow().unwrap();
        b.record_failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert!(b.allow().is_err(), "a fresh reset timeout");
        assert_eq!(
            transitions(&mut rx),
            ["closed->open", "open->halfOpen", "halfOpen->open"]
        );
    }

    #[test]
    fn a_lost_probe_reopens_after_the_half_open_timeout() {
        let (b, clock, bus) = setup(1);
        let mut rx = bus.subscribe();
        b.record_failure();
        clock.advance(Duration::from_secs(60));
        b.allow().unwrap();
        clock.advance(Duration::from_secs(29));
        assert!(b.allow().is_err());
        assert_eq!(b.state(), CircuitState::HalfOpen);
        clock.advance(Duration::from_secs(1));
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            transitions(&mut rx),
            ["closed->open", "open->halfOpen", "halfOpen->open"]
        );
    }

    #[test]
    fn slow_calls_count_as_failures_when_a_latency_threshold_is_set() {
        let clock = Arc::new(ManualClock::new());
        let config = CircuitBreakerConfig {
            failure_threshold: 2,
            latency_threshold_ms: 100,
            ..CircuitBreakerConfig::default()
        };
        let b = CircuitBreaker::new("p", "m", config, EventBus::new(), clock);
        b.record_success(Duration::from_millis(100));
        b.record_success(Duration::from_millis(101));
        b.record_success(Duration::from_millis(500));
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[tokio::test]
    async fn call_does_not_run_the_future_while_open() {
        let (b, _clock, _bus) = setup(1);
        let r: Result<(), _> = b.call(|| async { Err::<(), _>("boom") }).await;
        assert_eq!(r, Err(CallError::Failed("boom")));
        let mut ran = false;
        let r: Result<(), CallError<&str>> = b
            .call(|| {
                ran = true;
                async { Ok(()) }
            })
            .await;
        assert!(matches!(r, Err(CallError::Open(_))));
        assert!(!ran);
    }

    #[tokio::test]
    async fn rejected_requests_do_not_open_the_circuit() {
        let (b, _clock, _bus) = setup(1);
        let bad = ProviderError::Rejected {
            status: 400,
            message: "bad".into(),
        };
        let r: Result<(), _> = b
            .call_counting(|| async { Err(bad.clone()) }, counts_as_failure)
            .await;
        assert!(matches!(r, Err(CallError::Failed(_))));
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(counts_as_failure(&ProviderError::Timeout));
    }

    #[test]
    fn breakers_are_per_provider_and_model() {
        let set = CircuitBreakers::new(
            CircuitBreakerConfig {
                failure_threshold: 1,
                ..CircuitBreakerConfig::default()
            },
            EventBus::new(),
            Arc::new(ManualClock::new()),
        );
        set.get("p", "m1").record_failure();
        assert_eq!(set.get("p", "m1").state(), CircuitState::Open);
        assert_eq!(set.get("p", "m2").state(), CircuitState::Closed);
        assert_eq!(set.get("q", "m1").state(), CircuitState::Closed);
    }
}
