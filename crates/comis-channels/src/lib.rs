//! Chat channels: each platform adapter turns platform events into one [`InboundMessage`] shape
//! and sends replies that have already passed the output guard.
//!
//! Every inbound message is untrusted. The [`Channel`] trait is the whole contract between an
//! adapter and the daemon: adapters know their platform's wire format and nothing about agents;
//! routing, the fail-closed sender filter and dedup live beside the trait, not in each adapter.
//!
//! CONTRACT (lead, start of issue 10): the shapes below are what adapters and the daemon code
//! against.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod discord;
pub mod email;
pub mod filter;
pub mod irc;
pub mod router;
pub mod slack;
pub mod telegram;
pub mod text;
pub mod web_common;

pub use email::EmailChannel;
pub use filter::SenderFilter;
pub use irc::IrcChannel;
pub use router::{ApprovalCommand, ApprovalHandler, Dispatch, Router, TurnHandler};
pub use web_common::WebhookReply;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

/// A boxed future, so channels can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An attachment, as metadata only (name and type are attacker-controlled text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub name: String,
    pub mime: Option<String>,
    pub size: Option<u64>,
}

/// One inbound message, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InboundMessage {
    /// Channel name from config (`irc`, `email`, `telegram`, …).
    pub channel: String,
    /// Platform event id, for dedup of redelivered events.
    pub event_id: String,
    /// Conversation: IRC target, mail thread root, Telegram chat id, Slack channel, …
    pub chat: String,
    /// Thread within the chat, when the platform has them.
    pub thread: Option<String>,
    /// Platform sender identity as matched by `allowFrom`.
    pub sender: String,
    /// Extra identities `allowFrom` may match (e.g. IRC `nick!user@host`).
    pub sender_aliases: Vec<String>,
    pub text: String,
    /// A private message (or addressed to the bot).
    pub direct: bool,
    pub attachments: Vec<Attachment>,
    /// Platform metadata shown to the agent wrapped as external content (subject, …).
    pub metadata: Vec<(String, String)>,
}

/// One reply. `text` has passed the output guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub chat: String,
    pub thread: Option<String>,
    /// The inbound event this answers (mail Message-ID, Slack ts, …).
    pub in_reply_to: Option<String>,
    pub text: String,
}

/// Health of one channel, shown by `comis daemon status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Starting,
    Connected,
    Reconnecting,
    Failed,
    Stopped,
}

/// Why a channel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{channel}: config: {reason}")]
    Config { channel: String, reason: String },
    #[error("{channel}: protocol: {reason}")]
    Protocol { channel: String, reason: String },
    #[error("{channel}: transport: {reason}")]
    Transport { channel: String, reason: String },
    #[error("{channel}: platform API refused: {reason}")]
    Api { channel: String, reason: String },
    #[error("{channel}: stopped")]
    Stopped { channel: String },
}

/// [`ChannelError`] constructors bound to one channel's name, so each adapter names itself
/// once (`const ERR: ErrorsFor = ErrorsFor(NAME);`) rather than repeating the struct literal.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorsFor<'a>(pub(crate) &'a str);

impl ErrorsFor<'_> {
    pub(crate) fn config(self, reason: impl Into<String>) -> ChannelError {
        ChannelError::Config {
            channel: self.0.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn protocol(self, reason: impl Into<String>) -> ChannelError {
        ChannelError::Protocol {
            channel: self.0.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn transport(self, reason: impl Into<String>) -> ChannelError {
        ChannelError::Transport {
            channel: self.0.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn api(self, reason: impl Into<String>) -> ChannelError {
        ChannelError::Api {
            channel: self.0.into(),
            reason: reason.into(),
        }
    }
}

/// Where an adapter delivers inbound messages.
pub type InboundSender = tokio::sync::mpsc::Sender<InboundMessage>;

/// One platform adapter.
pub trait Channel: Send + Sync + fmt::Debug {
    /// The config name (`irc`, `email`, …).
    fn name(&self) -> &str;
    /// The platform's limit for one message, in characters (IRC: bytes per line).
    fn max_message_len(&self) -> usize;
    /// Connects and delivers inbound messages until stopped; reconnects with backoff itself.
    fn run(self: Arc<Self>, inbound: InboundSender)
    -> BoxFuture<'static, Result<(), ChannelError>>;
    /// Sends one reply (the adapter chunks to its platform's limit).
    fn send<'a>(&'a self, message: OutboundMessage) -> BoxFuture<'a, Result<(), ChannelError>>;
    fn health(&self) -> Health;
}
