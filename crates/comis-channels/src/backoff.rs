//! Pacing helpers: reconnect backoff with jitter, and a token bucket for flood control.
//!
//! Guarantees: backoff delays grow exponentially from `base` to `max` and carry random jitter
//! (so many clients cut off at once do not reconnect in lockstep); the bucket never lets more
//! than `burst` items through back to back and then one per `interval`. Neither guarantees the
//! remote side accepts the pace: a server may have stricter limits.

use std::time::Duration;

use tokio::time::Instant;

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
        let mut byte = [0u8; 2];
        // Without randomness the delay is still bounded; only the spread is lost.
        let r = if getrandom::fill(&mut byte).is_ok() {
            u16::from_le_bytes(byte)
        } else {
            u16::MAX / 2
        };
        // Factor in [0.75, 1.25].
        let factor = 0.75 + 0.5 * f64::from(r) / f64::from(u16::MAX);
        capped.mul_f64(factor)
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

#[cfg(test)]
mod tests {
    use super::*;

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
