//! The budget guard and the context-window guard: both decide BEFORE a provider call.
//!
//! What it guarantees: a request whose estimated cost would take the agent past its
//! per-execution, rolling per-hour or rolling per-day token cap is refused before it leaves the
//! process, and so is a request whose prompt fills `blockPercent` of the context window. The
//! rolling windows are kept per agent, in memory, pruned at 24 h and bounded in size.
//!
//! The estimate is deliberately simple and documented: `ceil(prompt chars / 4)` for the prompt
//! (system prompt, every message block, every tool schema) plus `max_tokens` for the answer — the
//! most the provider may bill for the call. It over-estimates for English and under-estimates
//! for some scripts; the caps are a cost aid, not an exact meter.
//!
//! What it does not: persist across restarts (as in the original), or know a provider's real
//! tokenizer. Actual usage reported by the provider is what is recorded after the call.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{BudgetConfig, ContextGuardConfig};
use crate::message::{ChatRequest, ContentBlock};

const HOUR: Duration = Duration::from_secs(3_600);
const DAY: Duration = Duration::from_secs(86_400);
/// Usage is kept in one-minute buckets: at most 1,440 per day whatever the call rate, so a check
/// costs the same for an idle agent and for a busy one. A bucket counts toward the hour until
/// its start is an hour old (up to a minute longer than exact: errs toward refusing).
const BUCKET: Duration = Duration::from_secs(60);

/// The prompt size of `req` in estimated tokens: `ceil(chars / 4)`.
pub fn estimate_prompt_tokens(req: &ChatRequest) -> u64 {
    let mut chars = req.system.chars().count();
    for m in &req.messages {
        for b in &m.content {
            chars += match b {
                ContentBlock::Text { text } => text.chars().count(),
                ContentBlock::ToolUse { name, input, .. } => {
                    name.chars().count() + input.to_string().chars().count()
                }
                ContentBlock::ToolResult { content, .. } => content.chars().count(),
            };
        }
    }
    for t in &req.tools {
        chars += t.name.chars().count()
            + t.description.chars().count()
            + t.parameters.to_string().chars().count();
    }
    u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX)
}

/// The full pre-call estimate: prompt plus the answer's `max_tokens`.
pub fn estimate_request_tokens(req: &ChatRequest) -> u64 {
    estimate_prompt_tokens(req).saturating_add(u64::from(req.max_tokens))
}

/// Which cap refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    PerExecution,
    PerHour,
    PerDay,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::PerExecution => "perExecution",
            BudgetScope::PerHour => "perHour",
            BudgetScope::PerDay => "perDay",
        }
    }
}

/// A refused call: `current + estimated > cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExceeded {
    pub scope: BudgetScope,
    pub current: u64,
    pub estimated: u64,
    pub cap: u64,
}

impl BudgetExceeded {
    /// The reply text, worded as in the original.
    pub fn message(&self) -> String {
        format!(
            "Budget exceeded ({}): current {} + estimated {} > cap {}",
            self.scope.as_str(),
            self.current,
            self.estimated,
            self.cap
        )
    }
}

/// One agent's token ledger.
#[derive(Debug)]
pub struct BudgetGuard {
    config: BudgetConfig,
    ledger: Mutex<VecDeque<(Instant, u64)>>,
}

impl BudgetGuard {
    pub fn new(config: BudgetConfig) -> BudgetGuard {
        BudgetGuard {
            config,
            ledger: Mutex::new(VecDeque::new()),
        }
    }

    /// Tokens spent in the last hour and the last day.
    pub fn spent(&self, now: Instant) -> (u64, u64) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut ledger, now);
        let mut hour = 0u64;
        let mut day = 0u64;
        for (at, tokens) in ledger.iter() {
            day = day.saturating_add(*tokens);
            if now.saturating_duration_since(*at) < HOUR {
                hour = hour.saturating_add(*tokens);
            }
        }
        (hour, day)
    }

    /// Refuses when `execution_used + estimated` (or the rolling hour/day sums plus
    /// `estimated`) would pass a cap. `estimated = 0` is the zero-cost check before a tool
    /// call: it refuses only a budget that is already exhausted.
    pub fn check(&self, execution_used: u64, estimated: u64) -> Result<(), BudgetExceeded> {
        let (hour, day) = self.spent(Instant::now());
        let checks = [
            (
                BudgetScope::PerExecution,
                execution_used,
                self.config.per_execution,
            ),
            (BudgetScope::PerHour, hour, self.config.per_hour),
            (BudgetScope::PerDay, day, self.config.per_day),
        ];
        for (scope, current, cap) in checks {
            let over = if estimated == 0 {
                current >= cap
            } else {
                current.saturating_add(estimated) > cap
            };
            if over {
                return Err(BudgetExceeded {
                    scope,
                    current,
                    estimated,
                    cap,
                });
            }
        }
        Ok(())
    }

    /// Records tokens a call actually used.
    pub fn record(&self, tokens: u64) {
        if tokens == 0 {
            return;
        }
        let now = Instant::now();
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        prune(&mut ledger, now);
        match ledger.back_mut() {
            Some((start, sum)) if now.saturating_duration_since(*start) < BUCKET => {
                *sum = sum.saturating_add(tokens);
            }
            _ => ledger.push_back((now, tokens)),
        }
    }
}

fn prune(ledger: &mut VecDeque<(Instant, u64)>, now: Instant) {
    while let Some((at, _)) = ledger.front() {
        if now.saturating_duration_since(*at) >= DAY {
            ledger.pop_front();
        } else {
            break;
        }
    }
}

/// The context-window guard's verdict for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextVerdict {
    Ok,
    /// At or above `warnPercent`.
    Warn {
        percent: u64,
    },
    /// At or above `blockPercent`: the call is refused.
    Block {
        percent: u64,
    },
}

/// Judges `prompt_tokens` against a `window` of tokens.
pub fn context_verdict(
    prompt_tokens: u64,
    window: u64,
    config: &ContextGuardConfig,
) -> ContextVerdict {
    if window == 0 {
        return ContextVerdict::Ok;
    }
    let percent = prompt_tokens.saturating_mul(100) / window;
    if percent >= u64::from(config.block_percent) {
        ContextVerdict::Block { percent }
    } else if percent >= u64::from(config.warn_percent) {
        ContextVerdict::Warn { percent }
    } else {
        ContextVerdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_before_spending() {
        let g = BudgetGuard::new(BudgetConfig {
            per_execution: 100,
            per_hour: 150,
            per_day: 1_000,
        });
        assert!(g.check(0, 100).is_ok());
        assert_eq!(
            g.check(1, 100).map_err(|e| e.scope),
            Err(BudgetScope::PerExecution)
        );
        g.record(120);
        assert_eq!(
            g.check(0, 40).map_err(|e| e.scope),
            Err(BudgetScope::PerHour)
        );
        assert!(g.check(0, 30).is_ok());
        // Zero-cost check: only an exhausted budget refuses.
        assert!(g.check(99, 0).is_ok());
        assert!(g.check(100, 0).is_err());
    }

    #[test]
    fn context_guard_thresholds() {
        let c = ContextGuardConfig::default();
        assert_eq!(context_verdict(79, 100, &c), ContextVerdict::Ok);
        assert_eq!(
            context_verdict(80, 100, &c),
            ContextVerdict::Warn { percent: 80 }
        );
        assert_eq!(
            context_verdict(95, 100, &c),
            ContextVerdict::Block { percent: 95 }
        );
        assert_eq!(context_verdict(u64::MAX, 0, &c), ContextVerdict::Ok);
    }
}
