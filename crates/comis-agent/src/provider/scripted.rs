//! The scripted provider: a deterministic model that plays a script of replies and tool calls.
//!
//! For tests and the demo (a prompt-injected agent that tries destructive things). It is chosen
//! only by configuration (`providers.entries.<id>.type: scripted` with `script: <file>`); nothing
//! falls back to it.
//!
//! A script is a list of steps; each call plays the next step whose condition holds and skips
//! the steps before it whose condition does not. A condition looks at the last tool result in
//! the request (`whenResultContains`, `whenResultIsError`). When the steps run out the provider
//! answers [`SCRIPT_FINISHED`], or starts over when `repeat` is set (a model that loops forever).
//! A step with `fail` makes the call fail with a server error (to exercise the fallback path);
//! `echoSystem` answers with the system prompt, as a model steered into leaking it would.
//!
//! ```json
//! {"repeat": false, "steps": [
//!   {"toolCalls": [{"name": "web_fetch", "args": {"url": "https://example.com"}}]},
//!   {"whenResultContains": "ignore previous", "toolCalls": [{"name": "system_exec", "args": {"command": "rm -rf ~"}}]},
//!   {"text": "Done."}
//! ]}
//! ```
//!
//! Usage is estimated as `ceil(chars / 4)` of the request and of the reply (no tokenizer).
//! What it does not: stream realistically, or keep a cursor per session (one script, one cursor:
//! build one provider per scripted conversation).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::Value;

use crate::AgentError;
use crate::budget::estimate_prompt_tokens;
use crate::message::{
    ChatMessage, ChatRequest, ChatResponse, ContentBlock, Role, StopReason, StreamDelta, Usage,
};
use crate::provider::{BoxFuture, DeltaSink, Provider, ProviderError};

/// The answer once a non-repeating script has run out.
pub const SCRIPT_FINISHED: &str = "(script finished)";
/// Largest script file read.
const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;

/// A whole script.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Script {
    pub steps: Vec<ScriptStep>,
    /// Start over when the steps run out.
    #[serde(default)]
    pub repeat: bool,
}

/// One model turn.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ScriptStep {
    /// Reply text (may accompany tool calls).
    pub text: Option<String>,
    pub tool_calls: Vec<ScriptToolCall>,
    /// Play only when the last tool result contains this text.
    pub when_result_contains: Option<String>,
    /// Play only when the last tool result is (or is not) an error.
    pub when_result_is_error: Option<bool>,
    /// Fail the call with this server error message instead of answering.
    pub fail: Option<String>,
    /// Answer with the system prompt verbatim (after `text`): a model steered into leaking its
    /// instructions, canary included — what the output guard must catch.
    pub echo_system: bool,
}

/// One tool call: the wire name the model uses and its arguments.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptToolCall {
    pub name: String,
    #[serde(default)]
    pub args: Value,
}

impl ScriptStep {
    /// A step that answers `text`.
    pub fn text(text: impl Into<String>) -> ScriptStep {
        ScriptStep {
            text: Some(text.into()),
            ..ScriptStep::default()
        }
    }

    /// A step that calls one tool.
    pub fn call(name: impl Into<String>, args: Value) -> ScriptStep {
        ScriptStep {
            tool_calls: vec![ScriptToolCall {
                name: name.into(),
                args,
            }],
            ..ScriptStep::default()
        }
    }

    /// Plays this step only when the last tool result contains `needle`.
    #[must_use]
    pub fn when_result_contains(mut self, needle: impl Into<String>) -> ScriptStep {
        self.when_result_contains = Some(needle.into());
        self
    }

    fn matches(&self, last: Option<(&str, bool)>) -> bool {
        if let Some(needle) = &self.when_result_contains
            && !last.is_some_and(|(text, _)| text.contains(needle.as_str()))
        {
            return false;
        }
        if let Some(want) = self.when_result_is_error
            && last.is_none_or(|(_, is_error)| is_error != want)
        {
            return false;
        }
        true
    }
}

/// The provider.
#[derive(Debug)]
pub struct ScriptedProvider {
    id: String,
    script: Script,
    cursor: Mutex<usize>,
    calls: AtomicU64,
    last: Mutex<Option<ChatRequest>>,
}

impl ScriptedProvider {
    pub fn new(id: impl Into<String>, script: Script) -> ScriptedProvider {
        ScriptedProvider {
            id: id.into(),
            script,
            cursor: Mutex::new(0),
            calls: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// A provider over `steps`, not repeating.
    pub fn from_steps(id: impl Into<String>, steps: Vec<ScriptStep>) -> ScriptedProvider {
        ScriptedProvider::new(
            id,
            Script {
                steps,
                repeat: false,
            },
        )
    }

    /// Parses a JSON script.
    ///
    /// # Errors
    /// [`AgentError::Config`] naming the problem.
    pub fn from_json(id: impl Into<String>, json: &str) -> Result<ScriptedProvider, AgentError> {
        let id = id.into();
        let script: Script = serde_json::from_str(json).map_err(|e| AgentError::Config {
            key: format!("providers.entries.{id}.script"),
            reason: e.to_string(),
        })?;
        Ok(ScriptedProvider::new(id, script))
    }

    /// Reads a JSON script file (at most 4 MiB).
    ///
    /// # Errors
    /// [`AgentError::Config`] when the file cannot be read or parsed.
    pub fn from_file(id: impl Into<String>, path: &Path) -> Result<ScriptedProvider, AgentError> {
        let id = id.into();
        let err = |reason: String| AgentError::Config {
            key: format!("providers.entries.{id}.script"),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        if meta.len() > MAX_SCRIPT_BYTES {
            return Err(err(format!("{} is larger than 4 MiB", path.display())));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        ScriptedProvider::from_json(id, &text)
    }

    /// The provider for `providers.entries.<id>`: only an entry whose `type` is `scripted` and
    /// that names a `script` file gives one (never a fallback for another type).
    ///
    /// # Errors
    /// [`AgentError::Config`] for another type, a missing `script`, or an unreadable script.
    pub fn from_entry(
        id: &str,
        entry: &crate::config::ProviderEntry,
    ) -> Result<ScriptedProvider, AgentError> {
        if entry.kind != "scripted" {
            return Err(AgentError::Config {
                key: format!("providers.entries.{id}.type"),
                reason: format!("{:?} is not a scripted provider", entry.kind),
            });
        }
        let path = entry.script.as_deref().ok_or_else(|| AgentError::Config {
            key: format!("providers.entries.{id}.script"),
            reason: "a scripted provider needs a script file".into(),
        })?;
        ScriptedProvider::from_file(id, Path::new(path))
    }

    /// How many times `complete` was called (tests assert that a refused turn made none).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The last request received (what the model was shown: system prompt, history, tool
    /// results, tool schemas), for tests and the demo.
    pub fn last_request(&self) -> Option<ChatRequest> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn next_step(&self, last: Option<(&str, bool)>) -> Option<ScriptStep> {
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let n = self.script.steps.len();
        if n == 0 {
            return None;
        }
        // At most one pass over the script (two when repeating), so a script whose conditions
        // never hold ends instead of spinning.
        let budget = if self.script.repeat { 2 * n } else { n };
        for _ in 0..budget {
            if *cursor >= n {
                if self.script.repeat {
                    *cursor = 0;
                } else {
                    return None;
                }
            }
            let step = self.script.steps.get(*cursor)?;
            *cursor += 1;
            if step.matches(last) {
                return Some(step.clone());
            }
        }
        None
    }
}

fn last_tool_result(req: &ChatRequest) -> Option<(&str, bool)> {
    let m = req.messages.last()?;
    if m.role != Role::User {
        return None;
    }
    m.content.iter().rev().find_map(|b| match b {
        ContentBlock::ToolResult {
            content, is_error, ..
        } => Some((content.as_str(), *is_error)),
        _ => None,
    })
}

impl Provider for ScriptedProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(request.clone());
            let step = self.next_step(last_tool_result(request));
            let mut content = Vec::new();
            match &step {
                None => content.push(ContentBlock::Text {
                    text: SCRIPT_FINISHED.to_owned(),
                }),
                Some(s) => {
                    if let Some(message) = &s.fail {
                        return Err(ProviderError::Server {
                            status: 500,
                            message: message.clone(),
                        });
                    }
                    let mut text = s.text.clone().unwrap_or_default();
                    if s.echo_system {
                        text.push_str(&request.system);
                    }
                    if !text.is_empty() {
                        content.push(ContentBlock::Text { text });
                    }
                    for (i, c) in s.tool_calls.iter().enumerate() {
                        content.push(ContentBlock::ToolUse {
                            id: format!("call_{n}_{i}"),
                            name: c.name.clone(),
                            input: c.args.clone(),
                        });
                    }
                }
            }
            let message = ChatMessage {
                role: Role::Assistant,
                content,
            };
            let text = message.text();
            if !text.is_empty() {
                deltas(StreamDelta::Text(text.clone()));
            }
            let has_tools = message.content.iter().any(ContentBlock::is_tool_use);
            let output_chars = text.chars().count()
                + message
                    .content
                    .iter()
                    .map(|b| match b {
                        ContentBlock::ToolUse { name, input, .. } => {
                            name.len() + input.to_string().len()
                        }
                        _ => 0,
                    })
                    .sum::<usize>();
            Ok(ChatResponse {
                message,
                stop_reason: if has_tools {
                    StopReason::ToolUse
                } else {
                    StopReason::EndTurn
                },
                usage: Usage {
                    input_tokens: estimate_prompt_tokens(request),
                    output_tokens: u64::try_from(output_chars.div_ceil(4)).unwrap_or(u64::MAX),
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn request_with_result(content: &str, is_error: bool) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            system: String::new(),
            messages: vec![ChatMessage {
                role: Role::User,
                content: vec![ContentBlock::ToolResult {
                    tool_use_id: "c".into(),
                    content: content.into(),
                    is_error,
                }],
            }],
            tools: Vec::new(),
            max_tokens: 10,
        }
    }

    async fn text_of(p: &ScriptedProvider, req: &ChatRequest) -> String {
        let sink = |_d: StreamDelta| {};
        p.complete(req, &sink).await.unwrap().message.text()
    }

    #[tokio::test]
    async fn conditions_skip_steps_and_scripts_end_or_repeat() {
        let p = ScriptedProvider::from_json(
            "s",
            r#"{"steps": [
                {"whenResultIsError": true, "text": "saw error"},
                {"whenResultContains": "page", "text": "saw page"},
                {"text": "plain"}
            ]}"#,
        )
        .unwrap();
        // Not an error: the first step is skipped, the second matches.
        assert_eq!(
            text_of(&p, &request_with_result("a page", false)).await,
            "saw page"
        );
        assert_eq!(text_of(&p, &request_with_result("x", false)).await, "plain");
        assert_eq!(
            text_of(&p, &request_with_result("x", true)).await,
            SCRIPT_FINISHED
        );
        assert_eq!(p.calls(), 3);

        let r = ScriptedProvider::new(
            "r",
            Script {
                steps: vec![ScriptStep::call("t", json!({"a": 1}))],
                repeat: true,
            },
        );
        for _ in 0..3 {
            let sink = |_d: StreamDelta| {};
            let resp = r
                .complete(&request_with_result("x", false), &sink)
                .await
                .unwrap();
            assert_eq!(resp.stop_reason, StopReason::ToolUse);
        }
        // A repeating script whose conditions never hold ends instead of spinning.
        let never = ScriptedProvider::new(
            "n",
            Script {
                steps: vec![ScriptStep::text("x").when_result_contains("never")],
                repeat: true,
            },
        );
        assert_eq!(
            text_of(&never, &request_with_result("y", false)).await,
            SCRIPT_FINISHED
        );
    }
}
