//! Tool policy: which tools an agent may be given, from a named profile plus per-agent allow
//! and deny lists.
//!
//! ## What it defends
//! An agent holding tools its role does not need: a messaging bot with `exec`, a coding agent
//! with the supervisor tools. A prompt injection can only use the tools the agent has, so
//! trimming them bounds the damage.
//!
//! ## What it guarantees
//! - **Deny wins.** A tool named in the deny list (directly or through a `group:`) is refused
//!   even if the profile or the allow list grants it.
//! - **Fail closed on an unknown profile.** Only the allow list is granted; nothing from a
//!   profile that does not exist.
//! - **Configuration mistakes are errors, not silent no-ops.** An unknown `group:` in the allow
//!   or deny list, or a malformed tool name, makes [`ToolPolicy::new`] fail: a misspelt deny
//!   entry must not leave the operator believing a tool is removed.
//!
//! ## What it does not guarantee
//! It decides availability by name only; it says nothing about how a granted tool is used
//! (the exec validator, SSRF guard, safe path and approval gate do). `full` grants every tool
//! name, including ones that do not exist yet.
//!
//! Profiles follow the original, except `minimal`: the product documentation promises "exec,
//! read, write" and this implementation follows the documentation (the original shipped only
//! read and write).

use std::collections::BTreeSet;

use serde::Serialize;

use crate::{Finding, GuardError, Severity};

/// The named profiles and their tools. `full` is empty and means every tool.
pub const PROFILES: &[(&str, &[&str])] = &[
    ("minimal", &["exec", "read", "write"]),
    (
        "coding",
        &[
            "read",
            "edit",
            "write",
            "grep",
            "find",
            "ls",
            "apply_patch",
            "exec",
            "process",
        ],
    ),
    ("messaging", &["message", "session_status"]),
    (
        "supervisor",
        &[
            "agents_manage",
            "obs_query",
            "sessions_manage",
            "memory_manage",
            "channels_manage",
            "tokens_manage",
            "models_manage",
            "skills_manage",
            "mcp_manage",
            "heartbeat_manage",
        ],
    ),
    ("full", &[]),
    // Operational presets for non-interactive runs.
    (
        "cron-minimal",
        &[
            "web_search",
            "message",
            "read_file",
            "write_file",
            "list_dir",
            "memory_store",
            "memory_search",
            "cron",
            "discover",
        ],
    ),
    (
        "heartbeat-minimal",
        &["message", "memory_store", "memory_search", "discover"],
    ),
];

/// Groups usable as `group:<name>` in allow and deny lists.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "group:coding",
        &[
            "read",
            "edit",
            "write",
            "grep",
            "find",
            "ls",
            "apply_patch",
            "exec",
            "process",
        ],
    ),
    ("group:web", &["web_fetch", "web_search", "browser"]),
    ("group:browser", &["browser"]),
    (
        "group:memory",
        &["memory_search", "memory_get", "memory_store"],
    ),
    ("group:scheduling", &["cron"]),
    ("group:messaging", &["message"]),
    (
        "group:sessions",
        &[
            "sessions_list",
            "sessions_history",
            "sessions_send",
            "sessions_spawn",
            "session_status",
            "session_search",
            "subagents",
            "agents_list",
            "pipeline",
        ],
    ),
    (
        "group:platform_actions",
        &[
            "discord_action",
            "telegram_action",
            "slack_action",
            "whatsapp_action",
        ],
    ),
    (
        "group:supervisor",
        &[
            "agents_manage",
            "obs_query",
            "sessions_manage",
            "memory_manage",
            "channels_manage",
            "tokens_manage",
            "models_manage",
            "skills_manage",
            "mcp_manage",
            "heartbeat_manage",
        ],
    ),
    (
        "group:context",
        &["ctx_search", "ctx_inspect", "ctx_recall"],
    ),
    ("group:context_expand", &["ctx_expand", "ctx_inspect"]),
];

const FULL: &str = "full";
const CATEGORY: &str = "tool_policy";
const MAX_TOOL_NAME: usize = 128;

/// Why a tool is or is not available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicyReason {
    Allowed,
    /// Neither the profile nor the allow list grants the tool.
    NotInProfile,
    /// The deny list removes the tool; `group` names the `group:` entry that did, or is
    /// `None` when the tool was denied by name.
    ExplicitDeny {
        group: Option<String>,
    },
}

/// The decision for one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub allowed: bool,
    pub reason: PolicyReason,
    pub findings: Vec<Finding>,
}

/// One tool the policy removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilteredTool {
    pub tool: String,
    pub reason: PolicyReason,
}

/// The result of applying the policy to a tool list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyFilter {
    /// Granted tools, in input order.
    pub allowed: Vec<String>,
    /// Removed tools with the reason for each (emitted as `tool:policy_filtered`).
    pub filtered: Vec<FilteredTool>,
    /// One finding per distinct reason.
    pub findings: Vec<Finding>,
}

/// A validated tool policy for one agent.
#[derive(Debug, Clone)]
pub struct ToolPolicy {
    profile: String,
    /// `None` for `full` (every tool), otherwise the granted names before the deny list.
    granted: Option<BTreeSet<String>>,
    /// Denied tool name -> the group that denied it (`None`: denied by name).
    denied: Vec<(String, Option<String>)>,
    profile_known: bool,
}

impl ToolPolicy {
    /// Builds a policy. `allow` and `deny` may name tools or `group:` entries.
    ///
    /// Errors on an unknown `group:` or a malformed tool name. An unknown *profile* is not an
    /// error: the policy then grants only the allow list (fail closed), and every decision
    /// carries an `unknown_profile` finding.
    pub fn new<A, D>(profile: &str, allow: &[A], deny: &[D]) -> Result<Self, GuardError>
    where
        A: AsRef<str>,
        D: AsRef<str>,
    {
        let profile_tools = PROFILES
            .iter()
            .find(|(name, _)| *name == profile)
            .map(|(_, tools)| *tools);
        let mut granted: Option<BTreeSet<String>> = if profile == FULL {
            None
        } else {
            Some(
                profile_tools
                    .unwrap_or(&[])
                    .iter()
                    .map(|t| (*t).to_string())
                    .collect(),
            )
        };
        for entry in allow {
            let tools = expand(entry.as_ref())?;
            if let Some(set) = granted.as_mut() {
                set.extend(tools.iter().map(|t| (*t).to_string()));
            }
        }
        let mut denied: Vec<(String, Option<String>)> = Vec::new();
        for entry in deny {
            let entry = entry.as_ref();
            let group = entry.starts_with("group:").then(|| entry.to_string());
            for tool in expand(entry)? {
                if !denied.iter().any(|(t, _)| t == tool) {
                    denied.push((tool.to_string(), group.clone()));
                }
            }
        }
        Ok(ToolPolicy {
            profile: profile.to_string(),
            granted,
            denied,
            profile_known: profile_tools.is_some(),
        })
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// Whether the profile name is one of [`PROFILES`].
    pub fn profile_known(&self) -> bool {
        self.profile_known
    }

    /// Decides whether `tool` is available.
    pub fn is_allowed(&self, tool: &str) -> Decision {
        let mut findings = Vec::new();
        if !self.profile_known {
            findings.push(Finding::new("unknown_profile", CATEGORY, Severity::Warning));
        }
        let reason = if let Some((_, group)) = self.denied.iter().find(|(t, _)| t == tool) {
            PolicyReason::ExplicitDeny {
                group: group.clone(),
            }
        } else if self.granted.as_ref().is_none_or(|set| set.contains(tool)) {
            PolicyReason::Allowed
        } else {
            PolicyReason::NotInProfile
        };
        match reason {
            PolicyReason::Allowed => {}
            PolicyReason::NotInProfile => {
                findings.push(Finding::new(
                    "tool_not_in_profile",
                    CATEGORY,
                    Severity::Info,
                ));
            }
            PolicyReason::ExplicitDeny { .. } => {
                findings.push(Finding::new("tool_explicit_deny", CATEGORY, Severity::Info));
            }
        }
        Decision {
            allowed: reason == PolicyReason::Allowed,
            reason,
            findings,
        }
    }

    /// Splits a tool list into granted and removed tools.
    pub fn filter<T: AsRef<str>>(&self, tools: &[T]) -> PolicyFilter {
        let mut allowed = Vec::new();
        let mut filtered = Vec::new();
        let mut findings: Vec<Finding> = Vec::new();
        for tool in tools {
            let tool = tool.as_ref();
            let d = self.is_allowed(tool);
            for f in d.findings {
                if !findings.contains(&f) {
                    findings.push(f);
                }
            }
            if d.allowed {
                allowed.push(tool.to_string());
            } else {
                filtered.push(FilteredTool {
                    tool: tool.to_string(),
                    reason: d.reason,
                });
            }
        }
        PolicyFilter {
            allowed,
            filtered,
            findings,
        }
    }
}

/// A tool name, or the members of a `group:` entry.
fn expand(entry: &str) -> Result<Vec<&str>, GuardError> {
    if entry.starts_with("group:") {
        return GROUPS
            .iter()
            .find(|(name, _)| *name == entry)
            .map(|(_, tools)| tools.to_vec())
            .ok_or_else(|| {
                let known: Vec<&str> = GROUPS.iter().map(|(n, _)| *n).collect();
                GuardError::Config(format!(
                    "unknown tool group `{entry}` (known: {})",
                    known.join(", ")
                ))
            });
    }
    let valid = !entry.is_empty()
        && entry.len() <= MAX_TOOL_NAME
        && entry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if valid {
        Ok(vec![entry])
    } else {
        Err(GuardError::Config(format!(
            "invalid tool name {:?} in tool policy",
            entry.chars().take(40).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NONE: &[&str] = &[];

    fn policy(profile: &str, allow: &[&str], deny: &[&str]) -> ToolPolicy {
        ToolPolicy::new(profile, allow, deny).unwrap()
    }

    fn group(name: &str) -> &'static [&'static str] {
        GROUPS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .unwrap()
    }

    #[test]
    fn profiles_grant_their_tools() {
        let p = policy("minimal", NONE, NONE);
        for t in ["exec", "read", "write"] {
            assert!(p.is_allowed(t).allowed, "{t}");
        }
        for t in ["web_fetch", "memory_search", "message", "edit"] {
            let d = p.is_allowed(t);
            assert!(!d.allowed);
            assert_eq!(d.reason, PolicyReason::NotInProfile);
            assert_eq!(d.findings[0].name, "tool_not_in_profile");
        }
        let p = policy("coding", NONE, NONE);
        assert!(p.is_allowed("apply_patch").allowed && p.is_allowed("process").allowed);
        assert!(!p.is_allowed("message").allowed);
        let p = policy("messaging", NONE, NONE);
        assert!(p.is_allowed("message").allowed && p.is_allowed("session_status").allowed);
        assert!(!p.is_allowed("exec").allowed);
        let p = policy("supervisor", NONE, NONE);
        assert!(p.is_allowed("tokens_manage").allowed);
        assert!(!p.is_allowed("exec").allowed);
        let p = policy("heartbeat-minimal", NONE, NONE);
        assert!(p.is_allowed("discover").allowed && !p.is_allowed("exec").allowed);
    }

    #[test]
    fn full_grants_everything_but_the_deny_list() {
        let p = policy("full", NONE, NONE);
        for t in ["exec", "anything_new", "browser"] {
            assert_eq!(p.is_allowed(t).reason, PolicyReason::Allowed);
        }
        let p = policy("full", NONE, &["exec", "group:web"]);
        assert!(!p.is_allowed("exec").allowed);
        assert!(!p.is_allowed("browser").allowed);
        assert!(p.is_allowed("read").allowed);
    }

    #[test]
    fn allow_extends_and_groups_expand() {
        let p = policy("minimal", &["group:web", "memory_get"], NONE);
        for t in group("group:web") {
            assert!(p.is_allowed(t).allowed, "{t}");
        }
        assert!(p.is_allowed("memory_get").allowed);
        assert!(!p.is_allowed("memory_store").allowed);
        let p = policy("messaging", &["group:memory"], NONE);
        for t in ["memory_search", "memory_get", "memory_store", "message"] {
            assert!(p.is_allowed(t).allowed, "{t}");
        }
    }

    #[test]
    fn deny_wins_and_names_its_group() {
        let p = policy("coding", &["exec", "group:web"], &["exec", "group:web"]);
        assert_eq!(
            p.is_allowed("exec").reason,
            PolicyReason::ExplicitDeny { group: None }
        );
        assert_eq!(
            p.is_allowed("browser").reason,
            PolicyReason::ExplicitDeny {
                group: Some("group:web".into())
            }
        );
        assert_eq!(p.is_allowed("exec").findings[0].name, "tool_explicit_deny");
        // The first deny entry covering a tool is the one reported.
        let p = policy("full", NONE, &["group:coding", "exec"]);
        assert_eq!(
            p.is_allowed("exec").reason,
            PolicyReason::ExplicitDeny {
                group: Some("group:coding".into())
            }
        );
    }

    #[test]
    fn unknown_profile_grants_only_the_allow_list() {
        let p = policy("minimall", &["read"], NONE);
        assert!(!p.profile_known());
        let d = p.is_allowed("read");
        assert!(d.allowed);
        assert!(d.findings.iter().any(|f| f.name == "unknown_profile"));
        for t in ["exec", "write", "anything"] {
            assert_eq!(p.is_allowed(t).reason, PolicyReason::NotInProfile, "{t}");
        }
        let p = policy("", NONE, NONE);
        assert!(!p.is_allowed("read").allowed);
        // Profile names are exact.
        assert!(!policy("Full", NONE, NONE).is_allowed("exec").allowed);
    }

    #[test]
    fn config_mistakes_are_errors() {
        for (allow, deny) in [
            (vec!["group:wbe"], vec![]),
            (vec![], vec!["group:nope"]),
            (vec![""], vec![]),
            (vec![], vec!["ex ec"]),
            (vec!["group:"], vec![]),
        ] {
            let r = ToolPolicy::new("coding", &allow, &deny);
            assert!(
                matches!(r, Err(GuardError::Config(_))),
                "{allow:?} {deny:?}"
            );
        }
        let err = ToolPolicy::new("coding", NONE, &["group:webb"]).unwrap_err();
        assert!(err.to_string().contains("group:web"));
    }

    #[test]
    fn filter_reports_each_removed_tool() {
        let p = policy("minimal", &["web_fetch"], &["write"]);
        let tools = ["read", "write", "exec", "web_fetch", "browser", "message"];
        let f = p.filter(&tools);
        assert_eq!(f.allowed, ["read", "exec", "web_fetch"]);
        assert_eq!(
            f.filtered,
            vec![
                FilteredTool {
                    tool: "write".into(),
                    reason: PolicyReason::ExplicitDeny { group: None }
                },
                FilteredTool {
                    tool: "browser".into(),
                    reason: PolicyReason::NotInProfile
                },
                FilteredTool {
                    tool: "message".into(),
                    reason: PolicyReason::NotInProfile
                },
            ]
        );
        assert_eq!(f.findings.len(), 2);
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["filtered"][0]["reason"]["kind"], "explicit_deny");
        assert_eq!(json["filtered"][1]["reason"]["kind"], "not_in_profile");
        let empty: [&str; 0] = [];
        assert!(p.filter(&empty).allowed.is_empty());
    }

    #[test]
    fn tables_are_consistent() {
        for (name, tools) in PROFILES.iter().chain(GROUPS) {
            for t in *tools {
                assert!(expand(t).is_ok(), "{name}: {t}");
            }
        }
        for (name, _) in GROUPS {
            assert!(name.starts_with("group:"));
        }
        assert_eq!(PROFILES.len(), 7);
        assert_eq!(GROUPS.len(), 11);
    }

    fn tool_name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "read",
                "write",
                "exec",
                "edit",
                "browser",
                "web_fetch",
                "message",
                "cron",
                "memory_get",
                "tokens_manage",
            ])
            .prop_map(str::to_string),
            "[a-z_]{1,12}",
        ]
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => tool_name(),
            1 => prop::sample::select(GROUPS.iter().map(|(n, _)| *n).collect::<Vec<_>>())
                .prop_map(str::to_string),
        ]
    }

    proptest! {
        #[test]
        fn deny_always_wins(
            profile in prop::sample::select(vec!["minimal", "coding", "messaging", "supervisor", "full", "bogus"]),
            allow in prop::collection::vec(entry(), 0..6),
            deny in prop::collection::vec(entry(), 0..6),
            probe in tool_name(),
        ) {
            let p = ToolPolicy::new(profile, &allow, &deny).unwrap();
            let denied: Vec<&str> = deny.iter().flat_map(|e| expand(e).unwrap()).collect();
            let allowed_by_list: Vec<&str> = allow.iter().flat_map(|e| expand(e).unwrap()).collect();
            let d = p.is_allowed(&probe);
            if denied.contains(&probe.as_str()) {
                prop_assert!(!d.allowed);
                let is_deny = matches!(d.reason, PolicyReason::ExplicitDeny { .. });
                prop_assert!(is_deny);
            } else if allowed_by_list.contains(&probe.as_str()) || profile == "full" {
                prop_assert!(d.allowed);
            }
            if profile == "bogus" && d.allowed {
                prop_assert!(allowed_by_list.contains(&probe.as_str()));
            }
        }
    }
}
