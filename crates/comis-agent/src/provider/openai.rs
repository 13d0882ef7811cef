//! OpenAI Chat Completions: `POST {baseUrl}/chat/completions` with `stream: true` and
//! `stream_options.include_usage`. The same client serves OpenAI-compatible servers (vLLM,
//! llama.cpp server, Groq, OpenRouter, LM Studio), keyless when the server needs no key.
//!
//! Guarantees: tool calls are assembled per `index` from `tool_calls` deltas (id, name and
//! argument pieces arrive in separate chunks) and their arguments parsed only at the end;
//! text deltas reach the sink as they arrive; the answer is complete only with
//! `data: [DONE]` — a stream that ends before it, or a chunk that is not JSON, is
//! [`ProviderError::Malformed`]. Tool results go back as `role: "tool"` messages with their
//! `tool_call_id`, right after the assistant message that asked for them.
//!
//! Does not: use the Responses API, `n > 1`, logprobs or images.

use serde_json::{Map, Value, json};

use crate::message::{
    ChatMessage, ChatRequest, ChatResponse, ContentBlock, Role, StopReason, StreamDelta,
    ToolSchema, Usage,
};
use crate::provider::http::{Endpoint, snippet, stream_error_object};
use crate::provider::{BoxFuture, DeltaSink, Provider, ProviderError};

/// The default `baseUrl`.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// An OpenAI (or OpenAI-compatible) Chat Completions provider.
#[derive(Debug)]
pub struct OpenAiProvider {
    id: String,
    endpoint: Endpoint,
    /// OpenAI itself wants `max_completion_tokens` (its newer models refuse `max_tokens`);
    /// compatible servers know `max_tokens`.
    completion_tokens_field: bool,
}

impl OpenAiProvider {
    pub(crate) fn new(id: String, endpoint: Endpoint, official: bool) -> OpenAiProvider {
        OpenAiProvider {
            id,
            endpoint,
            completion_tokens_field: official,
        }
    }
}

/// The request body for `request`; `official` picks `max_completion_tokens`.
pub fn request_body(request: &ChatRequest, official: bool) -> Value {
    let mut messages = Vec::new();
    if !request.system.is_empty() {
        messages.push(json!({"role": "system", "content": request.system}));
    }
    for m in &request.messages {
        push_messages(m, &mut messages);
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("messages".into(), Value::Array(messages));
    let field = if official {
        "max_completion_tokens"
    } else {
        "max_tokens"
    };
    body.insert(field.into(), json!(request.max_tokens.max(1)));
    if !request.tools.is_empty() {
        body.insert("tools".into(), function_tools(&request.tools));
    }
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    Value::Object(body)
}

/// Tools in the `{"type": "function", "function": …}` form (Ollama takes the same).
pub(crate) fn function_tools(tools: &[ToolSchema]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({"type": "function", "function": {"name": t.name,
                   "description": t.description, "parameters": t.parameters}})
        })
        .collect()
}

/// A tool result as the text of a `role: "tool"` message, which has no error flag.
pub(crate) fn tool_result_text(content: &str, is_error: bool) -> String {
    if is_error {
        format!("Error: {content}")
    } else {
        content.to_owned()
    }
}

fn push_messages(m: &ChatMessage, out: &mut Vec<Value>) {
    let text = m.text();
    match m.role {
        Role::User => {
            // Tool answers first: they must directly follow the assistant's tool calls.
            for b in &m.content {
                if let ContentBlock::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                } = b
                {
                    let content = tool_result_text(content, *is_error);
                    out.push(json!({"role": "tool", "tool_call_id": tool_use_id,
                                    "content": content}));
                }
            }
            if !text.is_empty() {
                out.push(json!({"role": "user", "content": text}));
            }
        }
        Role::Assistant => {
            let calls: Vec<Value> = m
                .content
                .iter()
                .filter_map(|b| match b {
                    ContentBlock::ToolUse { id, name, input } => Some(json!({
                        "id": id, "type": "function",
                        "function": {"name": name, "arguments": input.to_string()}})),
                    _ => None,
                })
                .collect();
            let mut msg = Map::new();
            msg.insert("role".into(), json!("assistant"));
            msg.insert(
                "content".into(),
                if text.is_empty() && !calls.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                },
            );
            if !calls.is_empty() {
                msg.insert("tool_calls".into(), Value::Array(calls));
            }
            out.push(Value::Object(msg));
        }
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Folds the `data:` payloads of one answer into a [`ChatResponse`].
pub struct Accumulator<'a> {
    text: String,
    calls: Vec<(u64, PartialCall)>,
    usage: Usage,
    finish: Option<String>,
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
            finish: None,
            done: false,
            deltas,
        }
    }

    /// Applies one `data:` payload.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] for a payload that is not JSON; the mapped error for an
    /// `error` object.
    pub fn on_data(&mut self, data: &str) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ProviderError::Malformed(format!("chunk: {e}: {}", snippet(data))))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            return Err(stream_error_object(err));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage.input_tokens = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
            self.usage.output_tokens = u
                .get("completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0);
        }
        let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(piece) = delta.get("content").and_then(Value::as_str)
            && !piece.is_empty()
        {
            self.text.push_str(piece);
            (self.deltas)(StreamDelta::Text(piece.to_owned()));
        }
        for (n, call) in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            // Some compatible servers leave out `index` when there is one call.
            let index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(n as u64);
            let slot = match self.calls.iter().position(|(i, _)| *i == index) {
                Some(p) => &mut self.calls[p].1,
                None => {
                    self.calls.push((index, PartialCall::default()));
                    let last = self.calls.len() - 1;
                    &mut self.calls[last].1
                }
            };
            if let Some(id) = call.get("id").and_then(Value::as_str)
                && !id.is_empty()
            {
                id.clone_into(&mut slot.id);
            }
            if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                slot.name.push_str(name);
            }
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                slot.arguments.push_str(args);
            }
        }
        Ok(())
    }

    /// The complete answer.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] without `[DONE]`, or for a tool call without a name or
    /// with arguments that do not parse.
    pub fn finish(mut self) -> Result<ChatResponse, ProviderError> {
        if !self.done {
            return Err(ProviderError::Malformed(
                "the stream ended before data: [DONE]".into(),
            ));
        }
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(ContentBlock::Text { text: self.text });
        }
        self.calls.sort_by_key(|(i, _)| *i);
        for (index, call) in self.calls {
            if call.name.is_empty() {
                return Err(ProviderError::Malformed(format!(
                    "tool call {index} has no name"
                )));
            }
            let input = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&call.arguments).map_err(|e| {
                    ProviderError::Malformed(format!(
                        "tool call {} arguments: {e}: {}",
                        call.name,
                        snippet(&call.arguments)
                    ))
                })?
            };
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            content.push(ContentBlock::ToolUse {
                id,
                name: call.name,
                input,
            });
        }
        let has_tool = content.iter().any(ContentBlock::is_tool_use);
        let stop_reason = match self.finish.as_deref() {
            _ if has_tool => StopReason::ToolUse,
            Some("stop") => StopReason::EndTurn,
            Some("length") => StopReason::MaxTokens,
            _ => StopReason::Other,
        };
        Ok(ChatResponse::assistant(content, stop_reason, self.usage))
    }
}

impl Provider for OpenAiProvider {
    fn id(&self) -> &str {
        &self.id
    }

    fn complete<'a>(
        &'a self,
        request: &'a ChatRequest,
        deltas: DeltaSink<'a>,
    ) -> BoxFuture<'a, Result<ChatResponse, ProviderError>> {
        Box::pin(async move {
            let body = request_body(request, self.completion_tokens_field)
                .to_string()
                .into_bytes();
            let mut acc = Accumulator::new(deltas);
            self.endpoint
                .stream_sse(&body, |event| acc.on_data(&event.data))
                .await?;
            acc.finish()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn run(datas: &[&str]) -> Result<ChatResponse, ProviderError> {
        let sink = |_: StreamDelta| {};
        let mut acc = Accumulator::new(&sink);
        for d in datas {
            acc.on_data(d)?;
        }
        acc.finish()
    }

    #[test]
    fn calls_without_index_or_id_and_parallel_calls() {
        let r = run(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"a","arguments":"{\"x\""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}},{"index":1,"id":"c2","function":{"name":"b","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ])
        .unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(
            r.message.content,
            vec![
                ContentBlock::ToolUse {
                    id: "call_0".into(),
                    name: "a".into(),
                    input: json!({"x": 1})
                },
                ContentBlock::ToolUse {
                    id: "c2".into(),
                    name: "b".into(),
                    input: json!({})
                },
            ]
        );
    }

    #[test]
    fn errors_and_truncation() {
        assert!(matches!(
            run(&[r#"{"choices":[{"delta":{"content":"x"}}]}"#]),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            run(&[r#"{"error":{"message":"boom","type":"server_error"}}"#]),
            Err(ProviderError::Server { .. })
        ));
        assert!(matches!(
            run(&[
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{}"}}]}}]}"#,
                "[DONE]"
            ]),
            Err(ProviderError::Malformed(_))
        ));
        assert!(matches!(
            run(&["not json"]),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn official_openai_gets_max_completion_tokens() {
        let req = ChatRequest {
            model: "m".into(),
            system: "s".into(),
            messages: vec![ChatMessage::user_text("hi")],
            tools: Vec::new(),
            max_tokens: 5,
        };
        assert_eq!(request_body(&req, true)["max_completion_tokens"], 5);
        assert!(request_body(&req, true).get("max_tokens").is_none());
        assert_eq!(request_body(&req, false)["max_tokens"], 5);
    }
}
