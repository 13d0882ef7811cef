//! `channels.*`: one section per platform, with the original's key names. Fail closed: every
//! channel is off until enabled, and an empty `allowFrom` lets nobody in (`["*"]` opens it).
//! Tokens and passwords are SecretRefs or vault names resolved before deserializing; they land
//! in `SecretString`, never in a plain `String`.

use serde::Deserialize;

/// `channels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChannelsConfig {
    pub irc: Option<IrcConfig>,
    pub email: Option<EmailConfig>,
    pub telegram: Option<TelegramConfig>,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
}

/// `channels.irc` (owned by the IRC adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IrcConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    /// Agent id; default agent when absent.
    pub agent: Option<String>,
}

/// `channels.email` (owned by the email adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EmailConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
}

/// `channels.telegram` (owned by the Telegram adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TelegramConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
}

/// `channels.slack` (owned by the Slack adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SlackConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
}

/// `channels.discord` (owned by the Discord adapter).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiscordConfig {
    pub enabled: bool,
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
}
