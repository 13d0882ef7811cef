//! Tools the model may call, each with its action class and its own argument validator.
//!
//! A tool never decides whether it may run: the loop has already applied the tool policy, the
//! action classifier and the approval gate. A tool validates its own arguments (paths through
//! `safe_path`, commands through the exec validator, URLs through the SSRF guard) and runs through
//! the sandbox or the guarded client. Its output goes back through the tool output sanitizer and
//! is wrapped as external content by the loop, not by the tool.

use std::fmt;

use serde_json::Value;

use crate::provider::BoxFuture;

/// What a tool returns to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    /// True when the text came from outside (a web page, a file the agent did not write, a
    /// process's output) and must be wrapped as external content.
    pub external: bool,
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

/// What a tool may reach for the calling agent. Filled in by the runtime.
#[derive(Debug)]
pub struct ToolContext {
    pub agent_id: String,
    pub trace_id: String,
    pub workspace: std::path::PathBuf,
}
