//! The injection rate limiter: notices a user who keeps trying.
//!
//! One injection attempt is answered by the input guard. A user who sends a third and a fifth
//! inside a few minutes is probing, and deserves a louder response: from the warn threshold on
//! the caller forces safety reinforcement, at the audit threshold it records an audit event.
//! [`InjectionRateLimiter::record`] is called for each detection and says which level the user
//! has reached and whether this detection is the one that crossed a threshold (so the caller
//! emits each event once per crossing, not on every later detection).
//!
//! ## What it guarantees
//! - **A sliding window per user** (default 5 minutes, warn at 3, audit at 5): a detection
//!   counts while it is younger than the window, whatever the wall clock says.
//! - **Bounded memory, whatever the traffic.** At most `max_entries` users (default 10,000) are
//!   tracked; when full, the user whose latest detection is oldest is forgotten. Each user
//!   keeps at most `4 × audit_threshold` timestamps (see [`InjectionRateLimiter::per_user_cap`]),
//!   and user keys longer than 128 bytes are stored as their SHA-256, so neither a flood of
//!   detections nor a flood of long, distinct keys grows it further. Users idle for
//!   `entry_ttl` are evicted as part of every call, at `O(log n)` per eviction.
//! - **Pure.** No clock is read: the caller passes a monotonic [`Instant`]. A `now` earlier
//!   than a user's latest detection (a caller bug) is treated as that latest detection, never
//!   as a panic.
//!
//! ## What it does not do
//! It never blocks a message: it escalates reporting. It does not persist across restarts,
//! and it cannot tell one person with many accounts from many people: the key is whatever the
//! caller passes (comis uses `tenant:user`, so participants of a group are counted apart).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Finding, GuardError, Severity};

/// Default sliding window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Default detections in the window at which the level becomes `warn`.
pub const DEFAULT_WARN_THRESHOLD: u32 = 3;
/// Default detections in the window at which the level becomes `audit`.
pub const DEFAULT_AUDIT_THRESHOLD: u32 = 5;
/// Default idle time after which a user's entry is dropped.
pub const DEFAULT_ENTRY_TTL: Duration = Duration::from_secs(300);
/// Default cap on tracked users.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// Largest accepted audit threshold: keeps the per-user timestamp cap small.
pub const MAX_AUDIT_THRESHOLD: u32 = 1_000;
/// Largest accepted `max_entries`.
pub const MAX_ENTRIES_LIMIT: usize = 1_000_000;
/// Keys longer than this are stored as `sha256:<hex>`.
pub const MAX_KEY_BYTES: usize = 128;

/// Per-user timestamps kept, as a multiple of the audit threshold.
const PER_USER_FACTOR: usize = 4;

/// Rate limiter settings. Validated by [`InjectionRateLimiter::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Detections younger than this count. Must be non-zero.
    pub window: Duration,
    /// Count at which the level becomes `warn`. `1 <= warn_threshold < audit_threshold`.
    pub warn_threshold: u32,
    /// Count at which the level becomes `audit`. At most [`MAX_AUDIT_THRESHOLD`].
    pub audit_threshold: u32,
    /// A user with no detection for this long is forgotten. At least `window`, so forgetting
    /// never changes a count.
    pub entry_ttl: Duration,
    /// Most users tracked at once. `1..=MAX_ENTRIES_LIMIT`.
    pub max_entries: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            window: DEFAULT_WINDOW,
            warn_threshold: DEFAULT_WARN_THRESHOLD,
            audit_threshold: DEFAULT_AUDIT_THRESHOLD,
            entry_ttl: DEFAULT_ENTRY_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl RateLimitConfig {
    fn validate(&self) -> Result<(), GuardError> {
        let err = |m: String| Err(GuardError::Config(format!("injection rate limiter: {m}")));
        if self.window.is_zero() {
            return err("window must be non-zero".into());
        }
        if self.warn_threshold == 0 || self.warn_threshold >= self.audit_threshold {
            return err(format!(
                "thresholds must satisfy 1 <= warn < audit (warn {}, audit {})",
                self.warn_threshold, self.audit_threshold
            ));
        }
        if self.audit_threshold > MAX_AUDIT_THRESHOLD {
            return err(format!(
                "audit threshold {} exceeds {MAX_AUDIT_THRESHOLD}",
                self.audit_threshold
            ));
        }
        if self.entry_ttl < self.window {
            return err(format!(
                "entry_ttl ({:?}) must be at least the window ({:?})",
                self.entry_ttl, self.window
            ));
        }
        if self.max_entries == 0 || self.max_entries > MAX_ENTRIES_LIMIT {
            return err(format!(
                "max_entries must be in 1..={MAX_ENTRIES_LIMIT} (got {})",
                self.max_entries
            ));
        }
        Ok(())
    }
}

/// How far a user has escalated. Ordered `None < Warn < Audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLevel {
    None,
    /// Force safety reinforcement and report.
    Warn,
    /// Also record an audit event.
    Audit,
}

/// The result of recording one detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateDecision {
    /// Detections inside the window, this one included (saturates at
    /// [`InjectionRateLimiter::per_user_cap`]).
    pub count: u32,
    pub level: RateLevel,
    /// True only for the detection that brought `count` to exactly one of the thresholds, so
    /// each crossing is reported once.
    pub threshold_crossed: bool,
    /// `injection_rate_warn` or `injection_rate_audit` when `level` is not `none`.
    pub findings: Vec<Finding>,
}

#[derive(Debug)]
struct Entry {
    /// Detection times, oldest first, at most `per_user_cap`.
    hits: VecDeque<Instant>,
    /// This entry's position in the recency index.
    order: (Instant, u64),
}

/// Per-user sliding-window counter of injection detections. Not internally synchronized: the
/// daemon holds one behind a mutex.
#[derive(Debug)]
pub struct InjectionRateLimiter {
    config: RateLimitConfig,
    per_user_cap: usize,
    entries: HashMap<Box<str>, Entry>,
    /// (latest detection, insertion sequence) -> key. The first element is both the next to
    /// expire and the one evicted when full.
    by_recency: BTreeMap<(Instant, u64), Box<str>>,
    seq: u64,
}

impl InjectionRateLimiter {
    /// Validates `config` and builds an empty limiter.
    pub fn new(config: RateLimitConfig) -> Result<Self, GuardError> {
        config.validate()?;
        let audit = usize::try_from(config.audit_threshold).unwrap_or(usize::MAX);
        Ok(InjectionRateLimiter {
            config,
            per_user_cap: audit.saturating_mul(PER_USER_FACTOR),
            entries: HashMap::new(),
            by_recency: BTreeMap::new(),
            seq: 0,
        })
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.config
    }

    /// Timestamps kept per user: `4 × audit_threshold`. The level depends only on whether the
    /// newest `audit_threshold` detections are inside the window, so that many would decide
    /// every verdict; the margin keeps `count` exact well past the audit level for the audit
    /// event, while a user flooding detections still costs a fixed amount of memory.
    pub fn per_user_cap(&self) -> usize {
        self.per_user_cap
    }

    /// Users currently tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records one detection for `user_key` at `now`.
    pub fn record(&mut self, user_key: &str, now: Instant) -> RateDecision {
        self.evict_idle(now);
        let key = storage_key(user_key);
        if !self.entries.contains_key(key.as_ref()) && self.entries.len() >= self.config.max_entries
        {
            self.evict_oldest();
        }
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let window = self.config.window;
        let cap = self.per_user_cap;
        let entry = self
            .entries
            .entry(Box::from(key.as_ref()))
            .or_insert_with(|| Entry {
                hits: VecDeque::new(),
                order: (now, seq),
            });
        // A `now` before the latest detection is a caller bug; never let it reorder the queue.
        let now = entry.hits.back().map_or(now, |&latest| latest.max(now));
        while entry
            .hits
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            entry.hits.pop_front();
        }
        entry.hits.push_back(now);
        while entry.hits.len() > cap {
            entry.hits.pop_front();
        }
        let old_order = std::mem::replace(&mut entry.order, (now, seq));
        let count = u32::try_from(entry.hits.len()).unwrap_or(u32::MAX);
        self.by_recency.remove(&old_order);
        self.by_recency.insert((now, seq), Box::from(key.as_ref()));
        self.decide(count, true)
    }

    /// Detections for `user_key` inside the window ending at `now`, without recording one.
    pub fn count(&self, user_key: &str, now: Instant) -> u32 {
        let key = storage_key(user_key);
        self.entries.get(key.as_ref()).map_or(0, |e| {
            let n = e
                .hits
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < self.config.window)
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
    }

    /// The level `user_key` is at, without recording a detection.
    pub fn level(&self, user_key: &str, now: Instant) -> RateLevel {
        self.decide(self.count(user_key, now), false).level
    }

    /// Drops every user whose latest detection is at least `entry_ttl` before `now`. Called by
    /// [`record`](Self::record); callers may also call it from a periodic sweep.
    pub fn evict_idle(&mut self, now: Instant) {
        while let Some(entry) = self.by_recency.first_entry() {
            if now.saturating_duration_since(entry.key().0) < self.config.entry_ttl {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, key)) = self.by_recency.pop_first() {
            self.entries.remove(&key);
        }
    }

    fn decide(&self, count: u32, recorded: bool) -> RateDecision {
        let (warn, audit) = (self.config.warn_threshold, self.config.audit_threshold);
        let level = if count >= audit {
            RateLevel::Audit
        } else if count >= warn {
            RateLevel::Warn
        } else {
            RateLevel::None
        };
        let findings = match level {
            RateLevel::None => Vec::new(),
            RateLevel::Warn => vec![Finding::new(
                "injection_rate_warn",
                "injection_rate",
                Severity::Warning,
            )],
            RateLevel::Audit => vec![Finding::new(
                "injection_rate_audit",
                "injection_rate",
                Severity::Critical,
            )],
        };
        RateDecision {
            count,
            level,
            threshold_crossed: recorded && (count == warn || count == audit),
            findings,
        }
    }
}

/// The key as stored: itself when short, `sha256:<hex>` when long, so a caller passing
/// attacker-influenced keys cannot make each entry arbitrarily large.
fn storage_key(key: &str) -> Cow<'_, str> {
    if key.len() <= MAX_KEY_BYTES {
        return Cow::Borrowed(key);
    }
    use std::fmt::Write;
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn limiter() -> InjectionRateLimiter {
        InjectionRateLimiter::new(RateLimitConfig::default()).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn levels_escalate_and_each_crossing_is_reported_once() {
        let mut rl = limiter();
        let t = Instant::now();
        let got: Vec<(u32, RateLevel, bool)> = (0..7)
            .map(|i| {
                let d = rl.record("t:alice", t + secs(i));
                (d.count, d.level, d.threshold_crossed)
            })
            .collect();
        use RateLevel::*;
        assert_eq!(
            got,
            [
                (1, None, false),
                (2, None, false),
                (3, Warn, true),
                (4, Warn, false),
                (5, Audit, true),
                (6, Audit, false),
                (7, Audit, false),
            ]
        );
        let d = rl.record("t:alice", t + secs(8));
        assert_eq!(d.findings[0].name, "injection_rate_audit");
        assert_eq!(d.findings[0].severity, Severity::Critical);
        assert_eq!(rl.count("t:alice", t + secs(8)), 8);
        assert_eq!(rl.level("t:alice", t + secs(8)), Audit);
    }

    #[test]
    fn users_are_counted_apart() {
        let mut rl = limiter();
        let t = Instant::now();
        for i in 0..3 {
            rl.record("t:alice", t + secs(i));
        }
        let bob = rl.record("t:bob", t + secs(3));
        assert_eq!((bob.count, bob.level), (1, RateLevel::None));
        assert!(bob.findings.is_empty());
        assert_eq!(rl.level("t:alice", t + secs(3)), RateLevel::Warn);
        assert_eq!(rl.count("t:carol", t), 0);
        assert_eq!(rl.len(), 2);
    }

    #[test]
    fn window_slides() {
        let mut rl = limiter();
        let t = Instant::now();
        rl.record("u", t);
        rl.record("u", t + secs(60));
        assert_eq!(rl.record("u", t + secs(120)).level, RateLevel::Warn);
        // The first detection is exactly one window old: it no longer counts.
        assert_eq!(rl.count("u", t + secs(300)), 2);
        let d = rl.record("u", t + secs(300));
        assert_eq!((d.count, d.level), (3, RateLevel::Warn));
        // After a quiet window everything is forgotten and a new crossing is reported again.
        let d = rl.record("u", t + secs(1000));
        assert_eq!((d.count, d.level), (1, RateLevel::None));
        rl.record("u", t + secs(1001));
        assert!(rl.record("u", t + secs(1002)).threshold_crossed);
    }

    #[test]
    fn idle_entries_expire() {
        let mut rl = limiter();
        let t = Instant::now();
        rl.record("a", t);
        rl.record("b", t + secs(100));
        assert_eq!(rl.len(), 2);
        rl.evict_idle(t + secs(299));
        assert_eq!(rl.len(), 2);
        rl.evict_idle(t + secs(300));
        assert_eq!(rl.len(), 1);
        assert_eq!(rl.count("a", t + secs(300)), 0);
        // Recording evicts as well.
        rl.record("c", t + secs(400));
        assert_eq!(rl.len(), 1);
        assert_eq!(rl.count("b", t + secs(400)), 0);
    }

    #[test]
    fn when_full_the_stalest_user_is_evicted() {
        let mut rl = InjectionRateLimiter::new(RateLimitConfig {
            max_entries: 3,
            ..RateLimitConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        rl.record("a", t);
        rl.record("b", t + secs(1));
        rl.record("c", t + secs(2));
        // "a" is active again, so "b" now has the oldest latest detection.
        rl.record("a", t + secs(3));
        rl.record("d", t + secs(4));
        assert_eq!(rl.len(), 3);
        assert_eq!(rl.count("b", t + secs(4)), 0);
        assert_eq!(rl.count("a", t + secs(4)), 2);
        assert_eq!(rl.count("c", t + secs(4)), 1);
        assert_eq!(rl.count("d", t + secs(4)), 1);
    }

    #[test]
    fn per_user_history_is_capped_and_counts_saturate() {
        let mut rl = limiter();
        let t = Instant::now();
        let cap = rl.per_user_cap();
        assert_eq!(cap, 20);
        let mut last = None;
        for i in 0..100 {
            last = Some(rl.record("flood", t + Duration::from_millis(i)));
        }
        let last = last.unwrap();
        assert_eq!(last.count, 20);
        assert_eq!(last.level, RateLevel::Audit);
        assert!(!last.threshold_crossed);
    }

    #[test]
    fn backwards_clock_does_not_panic_or_reorder() {
        let mut rl = limiter();
        let t = Instant::now() + secs(1000);
        rl.record("u", t);
        let d = rl.record("u", t - secs(500));
        assert_eq!(d.count, 2);
        assert_eq!(rl.count("u", t - secs(900)), 2);
        rl.evict_idle(t - secs(900));
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn long_keys_are_hashed_and_stay_distinct() {
        let mut rl = limiter();
        let t = Instant::now();
        let a = "a".repeat(10_000);
        let b = format!("{}b", "a".repeat(9_999));
        rl.record(&a, t);
        rl.record(&a, t);
        rl.record(&b, t);
        assert_eq!(rl.count(&a, t), 2);
        assert_eq!(rl.count(&b, t), 1);
        assert!(rl.entries.keys().all(|k| k.len() <= MAX_KEY_BYTES));
        let short = "x".repeat(MAX_KEY_BYTES);
        assert_eq!(storage_key(&short), short);
        assert!(storage_key(&a).starts_with("sha256:"));
        assert_eq!(storage_key(&a).len(), 71);
    }

    #[test]
    fn config_validation() {
        let base = RateLimitConfig::default();
        let bad = [
            RateLimitConfig {
                window: Duration::ZERO,
                ..base
            },
            RateLimitConfig {
                warn_threshold: 0,
                ..base
            },
            RateLimitConfig {
                warn_threshold: 5,
                ..base
            },
            RateLimitConfig {
                warn_threshold: 6,
                ..base
            },
            RateLimitConfig {
                audit_threshold: MAX_AUDIT_THRESHOLD + 1,
                ..base
            },
            RateLimitConfig {
                entry_ttl: secs(299),
                ..base
            },
            RateLimitConfig {
                max_entries: 0,
                ..base
            },
            RateLimitConfig {
                max_entries: MAX_ENTRIES_LIMIT + 1,
                ..base
            },
        ];
        for c in bad {
            assert!(
                matches!(InjectionRateLimiter::new(c), Err(GuardError::Config(_))),
                "{c:?} accepted"
            );
        }
        assert!(
            InjectionRateLimiter::new(RateLimitConfig {
                warn_threshold: 1,
                audit_threshold: 2,
                entry_ttl: secs(3600),
                max_entries: 1,
                window: Duration::from_millis(1),
            })
            .is_ok()
        );
    }

    #[test]
    fn decision_serializes_lowercase() {
        let mut rl = limiter();
        let t = Instant::now();
        let json = serde_json::to_value(rl.record("u", t)).unwrap();
        assert_eq!(json["level"], "none");
        assert_eq!(json["threshold_crossed"], false);
    }

    proptest! {
        /// Memory stays bounded and the two indexes agree, whatever the traffic.
        #[test]
        fn memory_is_bounded(
            max_entries in 1usize..8,
            ops in proptest::collection::vec((0u8..40, 0u64..90_000, any::<bool>()), 0..300),
        ) {
            let mut rl = InjectionRateLimiter::new(RateLimitConfig {
                max_entries,
                ..RateLimitConfig::default()
            }).unwrap();
            let mut t = Instant::now();
            for (user, dt_ms, long) in ops {
                t += Duration::from_millis(dt_ms);
                let key = if long { format!("{user}:{}", "k".repeat(300)) } else { user.to_string() };
                let d = rl.record(&key, t);
                prop_assert!(d.count >= 1);
                prop_assert!(d.count as usize <= rl.per_user_cap());
                prop_assert!(rl.len() <= max_entries);
                prop_assert_eq!(rl.by_recency.len(), rl.entries.len());
                for (k, e) in &rl.entries {
                    prop_assert!(e.hits.len() <= rl.per_user_cap());
                    prop_assert!(k.len() <= MAX_KEY_BYTES);
                    prop_assert_eq!(rl.by_recency.get(&e.order).map(|b| &**b), Some(&**k));
                }
            }
        }

        /// Without eviction pressure, counts match a naive model that keeps every timestamp.
        #[test]
        fn counts_match_a_naive_model(
            ops in proptest::collection::vec((0u8..4, 0u64..200_000), 1..200),
        ) {
            let mut rl = limiter();
            let window = rl.config().window;
            let mut model: HashMap<u8, Vec<Instant>> = HashMap::new();
            let mut t = Instant::now();
            for (user, dt_ms) in ops {
                t += Duration::from_millis(dt_ms);
                let hits = model.entry(user).or_default();
                hits.push(t);
                let live = hits.iter().filter(|&&h| t.duration_since(h) < window).count();
                let expected = live.min(rl.per_user_cap()) as u32;
                let d = rl.record(&user.to_string(), t);
                prop_assert_eq!(d.count, expected);
                let level = if expected >= 5 {
                    RateLevel::Audit
                } else if expected >= 3 {
                    RateLevel::Warn
                } else {
                    RateLevel::None
                };
                prop_assert_eq!(d.level, level);
                for (u, hs) in &model {
                    let live = hs.iter().filter(|&&h| t.duration_since(h) < window).count();
                    prop_assert_eq!(rl.count(&u.to_string(), t), live.min(rl.per_user_cap()) as u32);
                }
            }
        }
    }
}
