//! The common vocabulary of every detector: a [`Finding`] names what was seen, which family of
//! threat it belongs to, and how severe it is. Every guard reports findings in this one shape so
//! audit events, metrics and the CLI can treat all detectors alike.

use std::borrow::Cow;

use serde::Serialize;

/// How serious a finding is. Ordered: `Info < Warning < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth recording, not worth acting on alone.
    Info,
    /// Suspicious: callers warn, reinforce or downgrade trust.
    Warning,
    /// Callers block or redact.
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One thing a detector saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Finding {
    /// Stable machine name, e.g. `aws_access_key` or `typoglycemia:ignore`.
    pub name: Cow<'static, str>,
    /// The family of threat, e.g. `secret`, `jailbreak`, `exec_injection`.
    pub category: Cow<'static, str>,
    pub severity: Severity,
}

impl Finding {
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        category: impl Into<Cow<'static, str>>,
        severity: Severity,
    ) -> Self {
        Finding {
            name: name.into(),
            category: category.into(),
            severity,
        }
    }
}
