//! The Anthropic Messages API: `POST {baseUrl}/v1/messages` with `stream: true`.
//!
//! Guarantees: the answer is assembled from the documented SSE events (`message_start`,
//! `content_block_start` / `_delta` / `_stop` for `text` and `tool_use`, `message_delta`,
//! `message_stop`, `ping`, `error`); a tool call's `input_json_delta` pieces are joined and
//! parsed only at its block's end; text deltas reach the sink as they arrive. An answer is
//! complete only with `message_stop`: a stream that ends before it, or any event whose JSON
//! does not parse, is [`ProviderError::Malformed`]. Unknown event and block types (thinking,
//! new server tools) are skipped, as the API's versioning policy asks of clients.
//!
//! Does not: use extended thinking, prompt caching or images.

use serde_json::{Map, Value, json};

use crate::message::{
    ChatMessage, ChatRequest, ChatResponse, ContentBlock, Role, StopReason, StreamDelta, Usage,
};
use crate::provider::http::{Endpoint, snippet, stream_error_object};
use crate::provider::sse::SseEvent;
use crate::provider::{BoxFuture, DeltaSink, Provider, ProviderError};

/// The API version sent in `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// The default `baseUrl`.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// An Anthropic Messages API provider.
#[derive(Debug)]
pub struct AnthropicProvider {
    id: String,
    endpoint: Endpoint,
}

impl AnthropicProvider {
    pub(crate) fn new(id: String, endpoint: Endpoint) -> AnthropicProvider {
        AnthropicProvider { id, endpoint }
    }
}

/// The request body for `request`.
pub fn request_body(request: &ChatRequest) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    body.insert("max_tokens".into(), json!(request.max_tokens.max(1)));
    if !request.system.is_empty() {
        body.insert("system".into(), json!(request.system));
    }
    body.insert("messages".into(), Value::Array(messages));
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                json!({"name": t.name, "description": t.description,
                       "input_schema": t.parameters})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("stream".into(), json!(true));
    Value::Object(body)
}

fn message_json(m: &ChatMessage) -> Value {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let content: Vec<Value> = m
        .content
        .iter()
        .filter_map(|b| match b {
            // The API refuses empty text blocks.
            ContentBlock::Text { text } if text.is_empty() => None,
            ContentBlock::Text { text } => Some(json!({"type": "text", "text": text})),
            ContentBlock::ToolUse { id, name, input } => {
                let input = if input.is_object() {
                    input.clone()
                } else {
                    json!({})
                };
                Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
            }
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => Some(json!({"type": "tool_result", "tool_use_id": tool_use_id,
                             "content": content, "is_error": is_error})),
        })
        .collect();
    json!({"role": role, "content": content})
}

enum Partial {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
    },
    /// A block type we do not use (thinking, server tools): kept out of the answer.
    Skipped,
}

/// Folds the SSE events of one answer into a [`ChatResponse`].
pub struct Accumulator<'a> {
    blocks: Vec<(usize, Partial)>,
    usage: Usage,
    stop: Option<String>,
    done: bool,
    deltas: DeltaSink<'a>,
}

impl std::fmt::Debug for Accumulator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("blocks", &self.blocks.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

fn u64_at(v: &Value, pointer: &str) -> Option<u64> {
    v.pointer(pointer).and_then(Value::as_u64)
}

impl<'a> Accumulator<'a> {
    pub fn new(deltas: DeltaSink<'a>) -> Accumulator<'a> {
        Accumulator {
            blocks: Vec::new(),
            usage: Usage::default(),
            stop: None,
            done: false,
            deltas,
        }
    }

    fn block(&mut self, index: usize) -> Option<&mut Partial> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, p)| p)
    }

    /// Applies one event.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] for invalid JSON or an event out of order; the mapped
    /// error for an `error` event.
    pub fn on_event(&mut self, event: &SseEvent) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        let data: Value = serde_json::from_str(&event.data).map_err(|e| {
            ProviderError::Malformed(format!(
                "event {}: {e}: {}",
                event.event,
                snippet(&event.data)
            ))
        })?;
        // The `type` in the data is authoritative; the `event:` line names the same.
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(event.event.as_str());
        let index = data
            .get("index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        match kind {
            "message_start" => {
                let m = data.get("message").unwrap_or(&Value::Null);
                self.usage.input_tokens = input_tokens(m.get("usage").unwrap_or(&Value::Null));
                self.usage.output_tokens = u64_at(m, "/usage/output_tokens").unwrap_or(0);
            }
            "content_block_start" => {
                let index = index.ok_or_else(|| malformed("content_block_start without index"))?;
                let block = data.get("content_block").unwrap_or(&Value::Null);
                let partial = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                        if !text.is_empty() {
                            (self.deltas)(StreamDelta::Text(text.to_owned()));
                        }
                        Partial::Text(text.to_owned())
                    }
                    Some("tool_use") => {
                        let id = block.get("id").and_then(Value::as_str).unwrap_or("");
                        let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                        if id.is_empty() || name.is_empty() {
                            return Err(malformed("tool_use block without id or name"));
                        }
                        Partial::Tool {
                            id: id.to_owned(),
                            name: name.to_owned(),
                            json: String::new(),
                        }
                    }
                    _ => Partial::Skipped,
                };
                self.blocks.push((index, partial));
            }
            "content_block_delta" => {
                let index = index.ok_or_else(|| malformed("content_block_delta without index"))?;
                let delta = data.get("delta").unwrap_or(&Value::Null);
                let deltas = self.deltas;
                let block = self
                    .block(index)
                    .ok_or_else(|| malformed("delta for a block that never started"))?;
                match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), Partial::Text(text)) => {
                        let piece = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        text.push_str(piece);
                        if !piece.is_empty() {
                            deltas(StreamDelta::Text(piece.to_owned()));
                        }
                    }
                    (Some("input_json_delta"), Partial::Tool { json, .. }) => {
                        json.push_str(
                            delta
                                .get("partial_json")
                                .and_then(Value::as_str)
                                .unwrap_or(""),
                        );
                    }
                    (Some("text_delta" | "input_json_delta"), _) => {
                        return Err(malformed("delta type does not match its block"));
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = index.ok_or_else(|| malformed("content_block_stop without index"))?;
                if self.block(index).is_none() {
                    return Err(malformed("stop for a block that never started"));
                }
            }
            "message_delta" => {
                if let Some(s) = data.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(s.to_owned());
                }
                if let Some(out) = u64_at(&data, "/usage/output_tokens") {
                    self.usage.output_tokens = out;
                }
                let usage = data.get("usage").unwrap_or(&Value::Null);
                if usage.get("input_tokens").is_some() {
                    self.usage.input_tokens = input_tokens(usage);
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                return Err(stream_error_object(
                    data.get("error").unwrap_or(&Value::Null),
                ));
            }
            // `ping` and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    /// The complete answer.
    ///
    /// # Errors
    /// [`ProviderError::Malformed`] when `message_stop` never came or a tool call's JSON
    /// does not parse.
    pub fn finish(mut self) -> Result<ChatResponse, ProviderError> {
        if !self.done {
            return Err(malformed("the stream ended before message_stop"));
        }
        self.blocks.sort_by_key(|(i, _)| *i);
        let mut content = Vec::new();
        for (_, partial) in self.blocks {
            match partial {
                Partial::Text(text) if !text.is_empty() => {
                    content.push(ContentBlock::Text { text });
                }
                Partial::Tool { id, name, json } => {
                    let input = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json).map_err(|e| {
                            ProviderError::Malformed(format!(
                                "tool call {name} input: {e}: {}",
                                snippet(&json)
                            ))
                        })?
                    };
                    content.push(ContentBlock::ToolUse { id, name, input });
                }
                _ => {}
            }
        }
        let has_tool = content.iter().any(ContentBlock::is_tool_use);
        let stop_reason = match self.stop.as_deref() {
            Some("end_turn" | "stop_sequence") => StopReason::EndTurn,
            Some("tool_use") => StopReason::ToolUse,
            Some("max_tokens") => StopReason::MaxTokens,
            _ if has_tool => StopReason::ToolUse,
            _ => StopReason::Other,
        };
        Ok(ChatResponse::assistant(content, stop_reason, self.usage))
    }
}

/// Input tokens including the cached ones (they count against budgets all the same).
fn input_tokens(usage: &Value) -> u64 {
    [
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ]
    .iter()
    .filter_map(|k| usage.get(*k).and_then(Value::as_u64))
    .fold(0u64, u64::saturating_add)
}

fn malformed(why: &str) -> ProviderError {
    ProviderError::Malformed(why.to_owned())
}

impl Provider for AnthropicProvider {
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
                .stream_sse(&body, |event| acc.on_event(event))
                .await?;
            acc.finish()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ev(data: Value) -> SseEvent {
        SseEvent {
            event: data["type"].as_str().unwrap_or("message").to_owned(),
            data: data.to_string(),
            id: None,
        }
    }

    fn run(events: &[Value]) -> Result<ChatResponse, ProviderError> {
        let sink = |_: StreamDelta| {};
        let mut acc = Accumulator::new(&sink);
        for e in events {
            acc.on_event(&ev(e.clone()))?;
        }
        acc.finish()
    }

    fn start() -> Value {
        json!({"type": "message_start", "message": {"usage": {"input_tokens": 3,
               "cache_read_input_tokens": 4, "output_tokens": 1}}})
    }

    #[test]
    fn thinking_blocks_and_unknown_events_are_skipped() {
        let r = run(&[
            start(),
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": ""}}),
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "some_future_event"}),
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 1,
                   "delta": {"type": "text_delta", "text": "hi"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"},
                   "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ])
        .unwrap();
        assert_eq!(r.message.text(), "hi");
        assert_eq!(r.message.content.len(), 1);
        assert_eq!(r.stop_reason, StopReason::MaxTokens);
        assert_eq!(
            r.usage,
            Usage {
                input_tokens: 7,
                output_tokens: 9
            }
        );
    }

    #[test]
    fn an_error_event_is_the_providers_error() {
        let r = run(&[
            start(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ]);
        assert_eq!(
            r,
            Err(ProviderError::Server {
                status: 529,
                message: "Overloaded".into()
            })
        );
    }

    #[test]
    fn hostile_sequences_are_malformed_never_panics() {
        let orphan = run(&[
            start(),
            json!({"type": "content_block_delta", "index": 7,
                   "delta": {"type": "text_delta", "text": "x"}}),
        ]);
        assert!(matches!(orphan, Err(ProviderError::Malformed(_))));
        let bad_json = run(&[
            start(),
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "tool_use", "id": "t", "name": "n", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": "{\"a\": "}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_stop"}),
        ]);
        assert!(matches!(bad_json, Err(ProviderError::Malformed(_))));
        let mismatched = run(&[
            start(),
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
        ]);
        assert!(matches!(mismatched, Err(ProviderError::Malformed(_))));
        let sink = |_: StreamDelta| {};
        let mut acc = Accumulator::new(&sink);
        let not_json = SseEvent {
            event: "message_start".into(),
            data: "{".into(),
            id: None,
        };
        assert!(matches!(
            acc.on_event(&not_json),
            Err(ProviderError::Malformed(_))
        ));
    }

    #[test]
    fn request_body_maps_blocks_and_drops_empty_text() {
        let req = ChatRequest {
            model: "m".into(),
            system: String::new(),
            messages: vec![
                ChatMessage::user_text("hi"),
                ChatMessage {
                    role: Role::Assistant,
                    content: vec![
                        ContentBlock::Text {
                            text: String::new(),
                        },
                        ContentBlock::ToolUse {
                            id: "t1".into(),
                            name: "file_read".into(),
                            input: json!("not an object"),
                        },
                    ],
                },
            ],
            tools: Vec::new(),
            max_tokens: 0,
        };
        let b = request_body(&req);
        assert!(b.get("system").is_none());
        assert!(b.get("tools").is_none());
        assert_eq!(b["max_tokens"], 1);
        assert_eq!(b["messages"][1]["content"].as_array().unwrap().len(), 1);
        assert_eq!(b["messages"][1]["content"][0]["input"], json!({}));
    }
}
