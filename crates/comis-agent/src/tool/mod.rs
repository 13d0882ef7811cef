//! Tools the model may call, each with its action class and its own argument validator.
//!
//! A tool never decides whether it may run: the loop has already applied the tool policy, the
//! action classifier and the approval gate. A tool validates its own arguments (paths through
//! `safe_path`, commands through the exec validator, URLs through the SSRF guard) and runs through
//! the sandbox or the guarded client. Its output goes back through the tool output sanitizer and
//! is wrapped as external content by the loop, not by the tool.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::provider::BoxFuture;

pub mod args;
pub mod exec;
pub mod file;
pub mod fleet;
pub mod memory;
pub mod web;

pub use exec::SystemExec;
pub use file::{FileDelete, FileEdit, FileList, FileRead, FileWrite};
pub use fleet::{AgentsDelete, AgentsSpawn, ChannelsList, MessageSend, TokensRevoke};
pub use memory::{MemoryClear, MemorySearch, MemoryStore};
pub use web::WebFetch;

/// Every built-in tool, in a stable order. The runtime filters this list by the agent's tool
/// policy before the model sees it; each tool's `action()` is its class in the classifier.
///
/// The `layer` of a [`ToolError::Refused`] from these tools is one of: `safe_path` (path outside
/// the workspace), `exec_validator` (command or env refused), `sandbox` (no working sandbox),
/// `network` (no client for this agent), `ssrf` (address refused), `memory_validator` (poisoned
/// memory write), `memory_trust` (lower trust may not replace or delete higher), `spawn_depth`.
pub fn builtin_tools() -> Vec<Arc<dyn Tool>> {
    vec![
        Arc::new(FileRead),
        Arc::new(FileWrite),
        Arc::new(FileEdit),
        Arc::new(FileList),
        Arc::new(FileDelete),
        Arc::new(SystemExec::default()),
        Arc::new(WebFetch),
        Arc::new(MemorySearch),
        Arc::new(MemoryStore),
        Arc::new(MemoryClear),
        Arc::new(MessageSend),
        Arc::new(ChannelsList),
        Arc::new(AgentsSpawn),
        Arc::new(TokensRevoke),
        Arc::new(AgentsDelete),
    ]
}

/// What a tool returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    /// True when the text came from outside (a web page, a file the agent did not write, a
    /// process's output) and must be wrapped as external content.
    pub external: bool,
}

impl ToolOutput {
    /// Text the tool wrote itself (a confirmation, a listing of its own state).
    pub fn internal(text: String) -> ToolOutput {
        ToolOutput {
            text,
            external: false,
        }
    }

    /// Text that came from outside and must be wrapped as external content.
    pub fn external(text: String) -> ToolOutput {
        ToolOutput {
            text,
            external: true,
        }
    }
}

/// Why a tool call failed; shown to the model as an error result, never a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolError {
    /// Arguments missing, of the wrong type, or refused by the tool's validator.
    InvalidArguments(String),
    /// Refused by a security layer the tool consults (path outside workspace, SSRF, exec denylist).
    Refused { layer: &'static str, reason: String },
    /// Failed while running.
    Failed(String),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::InvalidArguments(m) => write!(f, "invalid arguments: {m}"),
            ToolError::Refused { layer, reason } => write!(f, "refused by {layer}: {reason}"),
            ToolError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for ToolError {}

/// Converts a dotted action name (`file.write`) to the provider-safe wire name (`file_write`).
pub fn wire_name(action: &str) -> String {
    action.replace('.', "_")
}

/// One tool.
pub trait Tool: Send + Sync + fmt::Debug {
    /// The dotted action name; also its action class in the classifier.
    fn action(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// JSON Schema of the arguments.
    fn parameters(&self) -> Value;
    /// Runs the call. `ctx` carries the calling agent's workspace, sandbox, client and store.
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// What a tool may reach for the calling agent. Built by the runtime for each call.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub agent_id: String,
    pub trace_id: String,
    pub session: String,
    /// The agent's workspace root; every agent-supplied path is resolved beneath it with
    /// `comis_sandbox::safe_path`.
    pub workspace: std::path::PathBuf,
    /// The exec sandbox; `None` means exec is refused (no sandbox, no exec).
    pub sandbox: Option<std::sync::Arc<comis_sandbox::Sandbox>>,
    /// The SSRF-guarded client for `web.fetch`; `None` means no network for this agent.
    pub http: Option<comis_net::GuardedClient>,
    pub store: std::sync::Arc<comis_store::Store>,
    pub events: crate::event::EventBus,
    /// Daemon services reached by messaging, sub-agent and admin tools.
    pub services: std::sync::Arc<dyn Services>,
    /// Sub-agent depth of the calling agent (0 for a top-level agent; spawn refused at 3).
    pub depth: u32,
}

/// Daemon services that tools reach but the agent crate does not own (channels, the runtime's
/// sub-agents, gateway tokens). The daemon implements this; each call is already approved and
/// policy-checked by the time it arrives.
pub trait Services: Send + Sync + fmt::Debug {
    /// Sends `text` (already through the output guard) to a chat on a channel.
    fn send_message<'a>(
        &'a self,
        channel: &'a str,
        chat: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Names of the running channels.
    fn list_channels(&self) -> Vec<String>;
    /// Runs `task` as a sub-agent of `parent` at `depth` with its own budget; returns its reply.
    fn spawn_agent<'a>(
        &'a self,
        parent: &'a str,
        depth: u32,
        task: String,
    ) -> BoxFuture<'a, Result<String, String>>;
    /// Revokes a gateway token by id; `by` names who asked (for the audit record).
    fn revoke_token(&self, id: &str, by: &str) -> Result<(), String>;
    /// Removes an agent from the running fleet.
    fn delete_agent(&self, id: &str) -> Result<(), String>;
}
