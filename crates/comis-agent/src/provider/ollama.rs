//! Ollama: `POST {baseUrl}/api/chat`, streamed as newline-delimited JSON.
//!
//! Guarantees: text deltas reach the sink as they arrive; `message.tool_calls` (arguments as
//! an object, usually without an id) become tool calls with ids made up here
//! (`ollama_call_N`); usage comes from `prompt_eval_count` / `eval_count` of the final
//! `done: true` line. A stream without that line, or a line that is not JSON, is
//! [`ProviderError::Malformed`]; an `{"error": …}` line is the server's error.
//!
//! Does not: pull models, set `keep_alive`, or send images.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::message::{
    ChatRequest, ChatResponse, ContentBlock, Role, StopReason, StreamDelta, Usage,
};
use crate::provider::http::{Endpoint, MAX_ERROR_MESSAGE, snippet};
use crate::provider::openai::{function_tools, tool_result_text};
use crate::provider::sse::TooLong;
use crate::provider::{BoxFuture, DeltaSink, Provider, ProviderError};

/// The default `baseUrl`.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:11434";

/// An Ollama provider.
#[derive(Debug)]
pub struct OllamaProvider {
    id: String,
    endpoint: Endpoint,
}

impl OllamaProvider {
    pub(crate) fn new(id: String, endpoint: Endpoint) -> OllamaProvider {
        OllamaProvider { id, endpoint }
    }
}

/// The request body for `request`.
pub fn request_body(request: &ChatRequest) -> Value {
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    // Ollama matches tool results to calls by the tool's name.
    let mut names: HashMap<&str, &str> = HashMap::new();
    for m in &request.messages {
        let text = m.text();
        match m.role {
            Role::User => {
                for b in &m.content {
                    if let ContentBlock::ToolResult {
                        tool_use_id,
                        content,
                        is_error,
                    } = b
                    {
                        let content = tool_result_text(content, *is_error);
                        let mut msg = json!({"role": "tool", "content": content});
                        if let Some(name) = names.get(tool_use_id.as_str()) {
                            msg["tool_name"] = json!(name);
                        }
                        messages.push(msg);
                    }
                }
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let mut calls = Vec::new();
                for b in &m.content {
                    if let ContentBlock::ToolUse { id, name, input } = b {
                        names.insert(id, name);
                        let args = if input.is_object() {
                            input.clone()
                        } else {
                            json!({})
                        };
                        calls.push(json!({"function": {"name": name, "arguments": args}}));
                    }
                }
                let mut msg = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                messages.push(msg);
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        body.insert("tools".into(), function_tools(&request.tools));
    }
    body.insert("stream".into(), json!(true));
    body.insert(
        "options".into(),
        json!({"num_predict": request.max_tokens.max(1)}),
    );
    Value::Object(body)
}

/// Folds the NDJSON lines of one answer into a [`ChatResponse`].
pub struct Accumulator<'a> {
    text: String,
    calls: Vec<ContentBlock>,
    usage: Usage,
    done_reason: Option<String>,
    done: bool,
    deltas: DeltaSink<'a>,
}

impl std::fmt::Debug for Accumulator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("calls", &self.calls.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<'a> Accumulator<'a> {
    pub fn new(deltas: DeltaSink<'a>) -> Accumulator<'a> {
        Accumulator {
            text: String::new(),
            calls: Vec::new(),
            usage: Usage::default(),
            done_reason: None,
            done: false,
            deltas,
        }
    }

    /// Applies one line.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] for a line that is not JSON or a tool call without a
    /// name; [`ProviderError::Server`] for an error line.
    pub fn on_line(&mut self, line: &[u8]) -> Result<(), ProviderError> {
        if self.done || line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let v: Value = serde_json::from_slice(line).map_err(|e| {
            ProviderError::Malformed(format!(
                "line: {e}: {}",
                snippet(&String::from_utf8_lossy(line))
            ))
        })?;
        if let Some(err) = v.get("error") {
            let message = err.as_str().map_or_else(|| err.to_string(), str::to_owned);
            return Err(ProviderError::Server {
                status: 500,
                message: comis_guard::unicode::display_safe(&message, MAX_ERROR_MESSAGE),
            });
        }
        let message = v.get("message").unwrap_or(&Value::Null);
        if let Some(piece) = message.get("content").and_then(Value::as_str)
            && !piece.is_empty()
        {
            self.text.push_str(piece);
            (self.deltas)(StreamDelta::Text(piece.to_owned()));
        }
        for call in message
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                return Err(ProviderError::Malformed("tool call without a name".into()));
            }
            let input = match call.pointer("/function/arguments") {
                Some(Value::Object(o)) => Value::Object(o.clone()),
                // Some models put the arguments in a string; accept it if it is an object.
                Some(Value::String(s)) => serde_json::from_str(s)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        ProviderError::Malformed(format!(
                            "tool call {name} arguments: {}",
                            snippet(s)
                        ))
                    })?,
                None | Some(Value::Null) => json!({}),
                Some(other) => {
                    return Err(ProviderError::Malformed(format!(
                        "tool call {name} arguments: {}",
                        snippet(&other.to_string())
                    )));
                }
            };
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(
                    || format!("ollama_call_{}", self.calls.len()),
                    str::to_owned,
                );
            self.calls.push(ContentBlock::ToolUse {
                id,
                name: name.to_owned(),
                input,
            });
        }
        if v.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.done_reason = v
                .get("done_reason")
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.usage = Usage {
                input_tokens: v
                    .get("prompt_eval_count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
                output_tokens: v.get("eval_count").and_then(Value::as_u64).unwrap_or(0),
            };
        }
        Ok(())
    }

    /// The complete answer.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] when the `done: true` line never came.
    pub fn finish(self) -> Result<ChatResponse, ProviderError> {
        if !self.done {
            return Err(ProviderError::Malformed(
                "the stream ended before done: true".into(),
            ));
        }
        let has_tool = !self.calls.is_empty();
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        content.extend(self.calls);
        let stop_reason = match self.done_reason.as_deref() {
            _ if has_tool => StopReason::ToolUse,
            Some("stop") | None => StopReason::EndTurn,
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::Other,
        };
        Ok(ChatResponse::assistant(content, stop_reason, self.usage))
    }
}

impl From<TooLong> for ProviderError {
    fn from(e: TooLong) -> ProviderError {
        ProviderError::Malformed(e.to_string())
    }
}

impl Provider for OllamaProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let body = request_body(request).to_string().into_bytes();
            let mut acc = Accumulator::new(deltas);
            self.endpoint
                .stream_lines(&body, |line| acc.on_line(line))
                .await?;
            acc.finish()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn run(lines: &[&str]) -> Result<ChatResponse, ProviderError> {
        let sink = |_: StreamDelta| {};
        let mut acc = Accumulator::new(&sink);
        for l in lines {
            acc.on_line(l.as_bytes())?;
        }
        acc.finish()
    }

    #[test]
    fn string_arguments_and_usage() {
        let r = run(&[
            r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"a","arguments":"{\"k\":2}"}}]},"done":false}"#,
            "",
            r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":4,"eval_count":6}"#,
        ])
        .unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 4,
                output_tokens: 6
            }
        );
        assert_eq!(
            r.message.content,
            vec![ContentBlock::ToolUse {
                id: "ollama_call_0".into(),
                name: "a".into(),
                input: json!({"k": 2})
            }]
        );
    }

    #[test]
    fn error_lines_bad_arguments_and_truncation() {
        assert!(matches!(
            run(&[r#"{"error":"model 'x' not found"}"#]),
            Err(ProviderError::Server { .. })
        ));
        assert!(matches!(
            run(&[r#"{"message":{"tool_calls":[{"function":{"name":"a","arguments":"[1]"}}]}}"#]),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            run(&[r#"{"message":{"content":"hi"},"done":false}"#]),
            Err(ProviderError::Malformed(_))
        ));
    }
}
