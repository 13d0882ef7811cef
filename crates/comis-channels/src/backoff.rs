//! Pacing helpers: reconnect backoff with jitter, a token bucket for flood control, and the
//! circuit breaker that stops calling a platform that keeps failing.
//!
//! Guarantees: backoff delays grow exponentially from `base` to `max` and carry random jitter
//! (so many clients cut off at once do not reconnect in lockstep); the bucket never lets more
//! than `burst` items through back to back and then one per `interval`; an open breaker refuses
//! every call until its cooldown is over and then lets exactly one probe through. None of them
//! guarantees the remote side accepts the pace: a server may have stricter limits.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::{ChannelError, Health, InboundSender};

/// A random fraction in `[0, 1)`. Without OS randomness it is ½: delays stay bounded, only the
/// spread is lost.
fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    match getrandom::fill(&mut b) {
        // 24 bits: the largest fraction times any delay still rounds below the delay.
        Ok(()) => f64::from(u32::from_le_bytes(b) >> 8) / f64::from(1u32 << 24),
        Err(_) => 0.5,
    }
}

/// `d` scaled by a random factor in `[0, 1)` (Discord's first heartbeat, a re-identify wait).
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(random_fraction())
}

/// Exponential backoff with ±25 % jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.max);
        // Factor in [0.75, 1.25).
        capped.mul_f64(0.75 + 0.5 * random_fraction())
    }

    /// After a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

/// Token bucket: `burst` tokens, one more every `interval`.
#[derive(Debug)]
pub struct TokenBucket {
    burst: u32,
    interval: Duration,
    tokens: u32,
    last: Instant,
}

impl TokenBucket {
    pub fn new(burst: u32, interval: Duration) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            burst,
            interval,
            tokens: burst,
            last: Instant::now(),
        }
    }

    fn refill(&mut self) {
        if self.interval.is_zero() {
            self.tokens = self.burst;
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.last);
        let new = (elapsed.as_nanos() / self.interval.as_nanos().max(1)) as u64;
        if new > 0 {
            let add = u32::try_from(new).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(add).min(self.burst);
            self.last += self.interval.saturating_mul(add.min(self.burst));
            if self.tokens == self.burst {
                self.last = now;
            }
        }
    }

    /// Takes a token now if one is there.
    pub fn try_take(&mut self) -> bool {
        self.refill();
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }

    /// Waits for a token and takes it.
    pub async fn take(&mut self) {
        while !self.try_take() {
            let due = self.last + self.interval;
            tokio::time::sleep_until(due).await;
        }
    }
}

/// The health of a connection-based channel (IRC, email) after one session ended: `Stopped`
/// when the session ended the channel (`Ok(true)`: stop requested) or the daemon no longer
/// listens, and the run loop returns; else it reconnects after a backoff. A refusal
/// (`ChannelError::Api`: bad password, SASL refused) will not fix itself, so it shows as
/// `Failed` while retries go on and `comis daemon status` points at the config.
fn health_after_session(result: &Result<bool, ChannelError>, inbound: &InboundSender) -> Health {
    match result {
        Ok(true) => Health::Stopped,
        _ if inbound.is_closed() => Health::Stopped,
        Err(ChannelError::Api { .. }) => Health::Failed,
        _ => Health::Reconnecting,
    }
}

/// A connection-based channel (IRC, email) whose `run` is [`run_reconnecting`].
pub(crate) trait Reconnecting: Send + Sync {
    /// One connection until it breaks: `Ok(true)` when the daemon stops, `Ok(false)`/`Err`
    /// mean reconnect. The session resets `backoff` once it is established.
    fn one_session(
        &self,
        inbound: &InboundSender,
        backoff: &mut Backoff,
    ) -> impl Future<Output = Result<bool, ChannelError>> + Send;
    /// Where the channel keeps its health.
    fn health_slot(&self) -> &Mutex<Health>;
    /// Clean-up after a session, before the health changes (IRC drops its outbox).
    fn session_ended(&self) {}

    fn set_health(&self, h: Health) {
        if let Ok(mut g) = self.health_slot().lock() {
            *g = h;
        }
    }

    /// The current health; `Failed` if a panic poisoned the slot.
    fn current_health(&self) -> Health {
        self.health_slot()
            .lock()
            .map(|h| *h)
            .unwrap_or(Health::Failed)
    }
}

/// Runs sessions until the channel stops, with backoff between them; health follows
/// [`health_after_session`].
pub(crate) async fn run_reconnecting<C: Reconnecting>(
    channel: &C,
    inbound: &InboundSender,
) -> Result<(), ChannelError> {
    let mut backoff = Backoff::default();
    channel.set_health(Health::Starting);
    loop {
        let result = channel.one_session(inbound, &mut backoff).await;
        channel.session_ended();
        let health = health_after_session(&result, inbound);
        channel.set_health(health);
        if health == Health::Stopped {
            return Ok(());
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Consecutive failures that open a [`CircuitBreaker`] (router sends and platform API calls).
pub const BREAKER_THRESHOLD: u32 = 5;

/// A change of a [`CircuitBreaker`]'s state worth reporting (`circuit:state_changed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitChange {
    Opened,
    Closed,
}

#[derive(Debug, Clone, Copy)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; others are refused until it reports or `deadline` passes (a probe
    /// whose caller was cancelled never reports, and must not keep the circuit shut forever).
    HalfOpen {
        deadline: Instant,
    },
}

/// A circuit breaker: after `threshold` consecutive failures calls are refused for `cooldown`;
/// then one probe is let through, whose success closes the circuit and whose failure opens it
/// for another `cooldown`. What counts as a failure is the caller's choice (a platform outage,
/// not a refusal the caller caused).
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<Circuit>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cooldown: Duration) -> CircuitBreaker {
        CircuitBreaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(Circuit::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Circuit> {
        // A poisoned lock only means another task panicked holding it; the state is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go ahead now; after the cooldown the first caller becomes the probe.
    pub fn allow(&self) -> bool {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            Circuit::Closed { .. } => true,
            Circuit::Open { until: t } | Circuit::HalfOpen { deadline: t } if now < t => false,
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => {
                *state = Circuit::HalfOpen {
                    deadline: now + self.cooldown,
                };
                true
            }
        }
    }

    /// Records the outcome of an allowed call; says when the circuit opened or closed.
    pub fn record(&self, ok: bool) -> Option<CircuitChange> {
        let mut state = self.lock();
        match (*state, ok) {
            (Circuit::Closed { .. }, true) => {
                *state = Circuit::Closed { failures: 0 };
                None
            }
            (_, true) => {
                *state = Circuit::Closed { failures: 0 };
                Some(CircuitChange::Closed)
            }
            (Circuit::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    *state = Circuit::Open {
                        until: Instant::now() + self.cooldown,
                    };
                    Some(CircuitChange::Opened)
                } else {
                    *state = Circuit::Closed { failures };
                    None
                }
            }
            (Circuit::HalfOpen { .. }, false) => {
                *state = Circuit::Open {
                    until: Instant::now() + self.cooldown,
                };
                Some(CircuitChange::Opened)
            }
            // A call started before the circuit opened failed late: already open.
            (Circuit::Open { .. }, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_consecutive_failures_and_probes_once() {
        let cooldown = Duration::from_secs(30);
        let b = CircuitBreaker::new(3, cooldown);
        for _ in 0..2 {
            assert!(b.allow());
            assert_eq!(b.record(false), None);
        }
        assert_eq!(b.record(true), None, "a success resets the count");
        for _ in 0..2 {
            assert_eq!(b.record(false), None);
        }
        assert_eq!(b.record(false), Some(CircuitChange::Opened));
        assert_eq!(b.record(false), None, "a late failure does not reopen");
        assert!(!b.allow());
        tokio::time::advance(cooldown).await;
        assert!(b.allow(), "the probe");
        assert!(!b.allow(), "only one probe at a time");
        assert_eq!(b.record(false), Some(CircuitChange::Opened));
        assert!(!b.allow(), "a failed probe reopens for a full cooldown");
        tokio::time::advance(cooldown).await;
        assert!(b.allow());
        // The probe's caller vanished: after another cooldown a new probe may go.
        tokio::time::advance(cooldown).await;
        assert!(b.allow());
        assert_eq!(b.record(true), Some(CircuitChange::Closed));
        assert!(b.allow() && b.allow());
        assert_eq!(b.record(false), None, "closed: one failure does not reopen");
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(1)) < Duration::from_secs(1));
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(75) && first <= Duration::from_millis(125));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_millis(2_500), "{d:?}");
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_millis(1_500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_a_burst_then_paces() {
        let mut bucket = TokenBucket::new(3, Duration::from_secs(1));
        assert!(bucket.try_take() && bucket.try_take() && bucket.try_take());
        assert!(!bucket.try_take());
        let start = Instant::now();
        bucket.take().await;
        bucket.take().await;
        // Paused clock: the waits advance virtual time exactly.
        assert!(Instant::now().duration_since(start) >= Duration::from_secs(2));
        assert!(!bucket.try_take());
    }
}
