//! `system.exec`: a shell command in the agent's sandbox.
//!
//! Guarantees: no sandbox, no exec (`ctx.sandbox` `None` is a refusal, and a sandbox whose
//! state is disabled refuses too). Every command passes the guard's exec validator
//! ([`comis_sandbox::GuardPolicy`]: denylist, substitution, env denylist such as `LD_PRELOAD`)
//! and the sandbox's own env floor before bubblewrap starts it; the working directory goes
//! through `safe_path`. The agent may shorten the configured wall timeout, never lengthen it.
//! The child starts from an empty environment (the sandbox's guarantee), output is capped by the
//! sandbox and again at [`MAX_RESULT_CHARS`] here, and the result is marked external.
//!
//! Does not: decide whether the agent may exec at all (tool policy and the approval gate ran
//! before this), or choose the agent's network (every run here has `Network::None`; broker or
//! host networking needs the agent's configured mode in the context).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use comis_sandbox::{ExecRequest, Exit, GuardPolicy, Network};
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, MAX_RESULT_CHARS, blocking, invalid};
use super::file::sandbox_err;
use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::provider::BoxFuture;

/// Longest command, in bytes (the sandbox's own limit).
pub const MAX_COMMAND_BYTES: usize = comis_sandbox::exec::MAX_COMMAND_BYTES;
/// Largest stdin, in bytes.
pub const MAX_STDIN_BYTES: usize = 1024 * 1024;
/// Most environment variables one call may set.
pub const MAX_ENV_VARS: usize = 64;

/// `system.exec`.
#[derive(Debug, Default)]
pub struct SystemExec {
    /// The exec validator, compiled on first use (it compiles the denylist once).
    policy: OnceLock<Result<Arc<GuardPolicy>, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExecArgs {
    command: String,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    stdin: Option<String>,
}

impl SystemExec {
    fn policy(&self) -> Result<Arc<GuardPolicy>, ToolError> {
        self.policy
            .get_or_init(|| GuardPolicy::new().map(Arc::new).map_err(|e| e.to_string()))
            .clone()
            // Fail closed: without the validator nothing runs.
            .map_err(|reason| ToolError::Refused {
                layer: "exec_validator",
                reason: format!("the exec validator could not be built: {reason}"),
            })
    }
}

fn render(exit: Exit, truncated: bool, stdout: &[u8], stderr: &[u8]) -> String {
    let status = match exit {
        Exit::Code(c) => format!("exit code {c}"),
        Exit::Signal(s) => format!("killed by signal {s}"),
        Exit::TimedOut => "timed out (the process tree was killed)".to_owned(),
    };
    let mut out = status;
    if truncated {
        out.push_str(" (output truncated at the sandbox's cap)");
    }
    out.push('\n');
    out.push_str("--- stdout ---\n");
    out.push_str(&String::from_utf8_lossy(stdout));
    if !stderr.is_empty() {
        out.push_str("\n--- stderr ---\n");
        out.push_str(&String::from_utf8_lossy(stderr));
    }
    args::truncate(&out, MAX_RESULT_CHARS).0
}

impl Tool for SystemExec {
    fn action(&self) -> &'static str {
        "system.exec"
    }
    fn description(&self) -> &'static str {
        "Run a shell command in your sandboxed workspace (no network, empty environment, time \
         and output limits). Needs an operator's approval."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "command": {"type": "string", "description": "Run with bash -c."},
                "cwd": {"type": "string", "description": "Working directory relative to the workspace."},
                "env": {"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": MAX_ENV_VARS},
                "timeoutMs": {"type": "integer", "minimum": 100, "description": "Shorter than the configured timeout only."},
                "stdin": {"type": "string"}
            }),
            &["command"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: ExecArgs = args::parse(args)?;
            args::cap("command", &a.command, MAX_COMMAND_BYTES, false)?;
            if let Some(cwd) = &a.cwd {
                args::cap("cwd", cwd, super::file::MAX_PATH_ARG_BYTES, true)?;
            }
            if a.env.len() > MAX_ENV_VARS {
                return Err(invalid(&format!(
                    "more than {MAX_ENV_VARS} environment variables"
                )));
            }
            for (k, v) in &a.env {
                args::cap("env name", k, 256, false)?;
                args::cap("env value", v, 32 * 1024, true)?;
            }
            if let Some(s) = &a.stdin {
                args::cap("stdin", s, MAX_STDIN_BYTES, true)?;
            }
            let Some(sandbox) = ctx.sandbox.clone() else {
                return Err(ToolError::Refused {
                    layer: "sandbox",
                    reason: "no sandbox is configured for this agent, so exec is off".into(),
                });
            };
            let configured = sandbox.limits().timeout;
            let timeout = match a.timeout_ms {
                None => None,
                Some(ms) if ms < 100 => {
                    return Err(invalid("`timeoutMs` must be at least 100"));
                }
                Some(ms) => Some(Duration::from_millis(ms).min(configured)),
            };
            let policy = self.policy()?;
            let req = ExecRequest {
                command: a.command,
                workspace: ctx.workspace.clone(),
                cwd: a.cwd,
                env: a.env.into_iter().collect(),
                stdin: a.stdin.map(String::into_bytes),
                network: Network::None,
                timeout,
                ..ExecRequest::default()
            };
            let outcome =
                blocking(move || sandbox.run(&req, policy.as_ref()).map_err(sandbox_err)).await?;
            Ok(ToolOutput::external(render(
                outcome.report.exit,
                outcome.report.truncated,
                &outcome.stdout,
                &outcome.stderr,
            )))
        })
    }
}
