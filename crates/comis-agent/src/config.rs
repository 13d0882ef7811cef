//! The config sections the runtime owns, with the seeds' key names and defaults.
//!
//! The binary composes these into the one `Config` read from `config.yaml`. Every struct denies
//! unknown keys: a typo is an error, never a silently ignored setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `agents.<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Display name.
    pub name: Option<String>,
    /// `providers.entries` id.
    pub provider: String,
    pub model: String,
    /// Workspace directory; default `$COMIS_HOME/workspaces/<id>`.
    pub workspace: Option<String>,
    pub max_steps: u32,
    pub max_tokens: u32,
    /// Messages of history sent with each request.
    pub history_window: usize,
    pub context_window_tokens: u64,
    pub context_guard: ContextGuardConfig,
    pub budgets: BudgetConfig,
    pub circuit_breaker: CircuitBreakerConfig,
    pub secrets: AgentSecretsConfig,
    pub skills: SkillsConfig,
    pub rag: RagConfig,
    pub max_tool_result_chars: usize,
    /// Sub-agent spawn depth limit (≤ 3).
    pub max_spawn_depth: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            name: None,
            provider: "default".to_owned(),
            model: String::new(),
            workspace: None,
            max_steps: 150,
            max_tokens: 4096,
            history_window: 40,
            context_window_tokens: 200_000,
            context_guard: ContextGuardConfig::default(),
            budgets: BudgetConfig::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            secrets: AgentSecretsConfig::default(),
            skills: SkillsConfig::default(),
            rag: RagConfig::default(),
            max_tool_result_chars: 50_000,
            max_spawn_depth: 3,
        }
    }
}

/// `agents.<id>.contextGuard`: percent of the context window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ContextGuardConfig {
    pub warn_percent: u8,
    pub block_percent: u8,
}

impl Default for ContextGuardConfig {
    fn default() -> Self {
        ContextGuardConfig {
            warn_percent: 80,
            block_percent: 95,
        }
    }
}

/// `agents.<id>.budgets`, in tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BudgetConfig {
    pub per_execution: u64,
    pub per_hour: u64,
    pub per_day: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            per_execution: 2_000_000,
            per_hour: 10_000_000,
            per_day: 100_000_000,
        }
    }
}

/// `agents.<id>.circuitBreaker`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    pub failure_threshold: u32,
    pub reset_timeout_ms: u64,
    pub half_open_timeout_ms: u64,
    /// A call slower than this counts as a failure (0 = latency not considered).
    pub latency_threshold_ms: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 5,
            reset_timeout_ms: 60_000,
            half_open_timeout_ms: 30_000,
            latency_threshold_ms: 0,
        }
    }
}

/// `agents.<id>.secrets`. An empty allow list grants nothing (fail closed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AgentSecretsConfig {
    pub allow: Vec<String>,
}

/// `agents.<id>.skills`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SkillsConfig {
    pub tool_policy: ToolPolicyConfig,
    pub exec_sandbox: ExecSandboxConfig,
}

/// `agents.<id>.skills.toolPolicy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ToolPolicyConfig {
    /// minimal | coding | messaging | supervisor | full.
    pub profile: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl Default for ToolPolicyConfig {
    fn default() -> Self {
        ToolPolicyConfig {
            profile: "full".to_owned(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// `agents.<id>.skills.execSandbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExecSandboxConfig {
    /// "always" (default) or "never". "never" means exec is refused: no sandbox, no exec.
    pub enabled: String,
    pub read_only_allow_paths: Vec<String>,
}

impl Default for ExecSandboxConfig {
    fn default() -> Self {
        ExecSandboxConfig {
            enabled: "always".to_owned(),
            read_only_allow_paths: Vec::new(),
        }
    }
}

/// `agents.<id>.rag`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RagConfig {
    pub include_trust_levels: Vec<String>,
}

impl Default for RagConfig {
    fn default() -> Self {
        RagConfig {
            include_trust_levels: vec!["system".to_owned(), "learned".to_owned()],
        }
    }
}

/// `providers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProvidersConfig {
    pub entries: BTreeMap<String, ProviderEntry>,
}

/// `providers.entries.<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProviderEntry {
    /// anthropic | openai | ollama | scripted.
    #[serde(rename = "type")]
    pub kind: String,
    pub base_url: String,
    /// Vault or environment name of the API key.
    pub api_key_name: Option<String>,
    pub timeout_ms: u64,
    pub max_retries: u32,
    pub headers: BTreeMap<String, String>,
    pub capabilities: CapabilitiesConfig,
    pub models: Vec<String>,
    /// For `type: scripted` only: the script file.
    pub script: Option<String>,
}

impl Default for ProviderEntry {
    fn default() -> Self {
        ProviderEntry {
            kind: String::new(),
            base_url: String::new(),
            api_key_name: None,
            timeout_ms: 120_000,
            max_retries: 2,
            headers: BTreeMap::new(),
            capabilities: CapabilitiesConfig::default(),
            models: Vec::new(),
            script: None,
        }
    }
}

/// `providers.entries.<id>.capabilities`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CapabilitiesConfig {
    /// frontier | mid | small | nano | unknown. Unknown is treated as small (fail closed).
    pub capability_class: String,
}

impl Default for CapabilitiesConfig {
    fn default() -> Self {
        CapabilitiesConfig {
            capability_class: "unknown".to_owned(),
        }
    }
}

/// `approvals`. Unlike the original, destructive actions always need approval; this section
/// tunes timing only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    pub enabled: bool,
    pub default_timeout_ms: u64,
    pub denial_cache_ttl_ms: u64,
    pub batch_approval_ttl_ms: u64,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            enabled: true,
            default_timeout_ms: 300_000,
            denial_cache_ttl_ms: 60_000,
            batch_approval_ttl_ms: 30_000,
        }
    }
}
