//! `message.send`, `channels.list`, `agents.spawn`, `tokens.revoke`, `agents.delete`: the tools
//! that reach daemon services through the [`Services`](super::Services) port.
//!
//! Guarantees: arguments are identifiers or bounded one-line labels before they reach the port
//! (no control characters, no NUL, no path-like ids); `agents.spawn` refuses at
//! [`MAX_SPAWN_DEPTH`] (`Refused { layer: "spawn_depth" }`) and otherwise asks for a sub-agent at
//! `ctx.depth + 1` whose parent is the calling agent (from the context, never the arguments);
//! a sub-agent's reply is marked external (it may carry what the sub-agent read).
//!
//! Does not: run the output guard on `message.send`'s text (the loop holds the agent's secrets
//! and canary and must scan the argument before the call), or decide who may revoke or delete
//! (tool policy: supervisor profile; the approval gate: destructive).

use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, MAX_RESULT_CHARS, invalid};
use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::provider::BoxFuture;

/// Deepest sub-agent: an agent at this depth cannot spawn.
pub const MAX_SPAWN_DEPTH: u32 = 3;
/// Longest message text, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest sub-agent task, in bytes.
pub const MAX_TASK_BYTES: usize = 32 * 1024;

fn service_err(e: String) -> ToolError {
    ToolError::Failed(comis_guard::unicode::display_safe(&e, 500))
}

/// `message.send`.
#[derive(Debug, Default)]
pub struct MessageSend;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SendArgs {
    channel: String,
    chat: String,
    text: String,
}

impl Tool for MessageSend {
    fn action(&self) -> &'static str {
        "message.send"
    }
    fn description(&self) -> &'static str {
        "Send a text message to a chat on one of the running channels (see channels_list)."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "channel": args::ident_schema(64),
                "chat": {"type": "string", "description": "The chat, room, user or address on that channel."},
                "text": {"type": "string", "maxLength": MAX_MESSAGE_BYTES}
            }),
            &["channel", "chat", "text"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: SendArgs = args::parse(args)?;
            args::ident("channel", &a.channel, 64)?;
            args::cap("chat", &a.chat, 256, false)?;
            args::one_line("chat", &a.chat)?;
            args::cap("text", &a.text, MAX_MESSAGE_BYTES, false)?;
            ctx.services
                .send_message(&a.channel, &a.chat, &a.text)
                .await
                .map_err(service_err)?;
            Ok(ToolOutput::internal(format!(
                "sent {} bytes to {} on {}",
                a.text.len(),
                a.chat,
                a.channel
            )))
        })
    }
}

/// `channels.list`.
#[derive(Debug, Default)]
pub struct ChannelsList;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

impl Tool for ChannelsList {
    fn action(&self) -> &'static str {
        "channels.list"
    }
    fn description(&self) -> &'static str {
        "List the running channels that message_send can reach."
    }
    fn parameters(&self) -> Value {
        args::object_schema(json!({}), &[])
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let _: NoArgs = args::parse(args)?;
            let channels = ctx.services.list_channels();
            Ok(ToolOutput::internal(
                json!({ "channels": channels }).to_string(),
            ))
        })
    }
}

/// `agents.spawn`.
#[derive(Debug, Default)]
pub struct AgentsSpawn;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SpawnArgs {
    task: String,
}

impl Tool for AgentsSpawn {
    fn action(&self) -> &'static str {
        "agents.spawn"
    }
    fn description(&self) -> &'static str {
        "Hand a self-contained task to a sub-agent with its own budget and return its answer. \
         Sub-agents nest at most 3 deep."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "task": {"type": "string", "maxLength": MAX_TASK_BYTES}
            }),
            &["task"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: SpawnArgs = args::parse(args)?;
            args::cap("task", &a.task, MAX_TASK_BYTES, false)?;
            if ctx.depth >= MAX_SPAWN_DEPTH {
                return Err(ToolError::Refused {
                    layer: "spawn_depth",
                    reason: format!(
                        "this agent is at sub-agent depth {}; the limit is {MAX_SPAWN_DEPTH}",
                        ctx.depth
                    ),
                });
            }
            let reply = ctx
                .services
                .spawn_agent(&ctx.agent_id, ctx.depth + 1, a.task)
                .await
                .map_err(service_err)?;
            Ok(ToolOutput::external(
                args::truncate(&reply, MAX_RESULT_CHARS).0,
            ))
        })
    }
}

/// `tokens.revoke`.
#[derive(Debug, Default)]
pub struct TokensRevoke;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdArgs {
    id: String,
}

impl Tool for TokensRevoke {
    fn action(&self) -> &'static str {
        "tokens.revoke"
    }
    fn description(&self) -> &'static str {
        "Revoke a gateway token by id. Needs an operator's approval."
    }
    fn parameters(&self) -> Value {
        args::object_schema(json!({"id": args::ident_schema(128)}), &["id"])
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: IdArgs = args::parse(args)?;
            args::ident("id", &a.id, 128)?;
            ctx.services
                .revoke_token(&a.id, &format!("agent:{}", ctx.agent_id))
                .map_err(service_err)?;
            Ok(ToolOutput::internal(format!("revoked token {}", a.id)))
        })
    }
}

/// `agents.delete`.
#[derive(Debug, Default)]
pub struct AgentsDelete;

impl Tool for AgentsDelete {
    fn action(&self) -> &'static str {
        "agents.delete"
    }
    fn description(&self) -> &'static str {
        "Remove an agent from the running fleet. Needs an operator's approval."
    }
    fn parameters(&self) -> Value {
        args::object_schema(json!({"id": args::ident_schema(64)}), &["id"])
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: IdArgs = args::parse(args)?;
            args::ident("id", &a.id, 64)?;
            if a.id == ctx.agent_id {
                return Err(invalid("an agent cannot delete itself"));
            }
            ctx.services.delete_agent(&a.id).map_err(service_err)?;
            Ok(ToolOutput::internal(format!("deleted agent {}", a.id)))
        })
    }
}
