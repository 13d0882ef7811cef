//! `channels.*`: one section per platform, with the original's key names. Fail closed: every
//! channel is off until enabled, and an empty `allowFrom` lets nobody in (`["*"]` opens it).
//! Tokens and passwords are SecretRefs or vault names resolved before deserializing; they land
//! in `SecretString`, never in a plain `String`.

use comis_secrets::SecretString;
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
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TelegramConfig {
    pub enabled: bool,
    /// Telegram user ids or usernames (without `@`); `["*"]` opens the channel.
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
    /// The token BotFather gave (`123456:ABC…`).
    pub bot_token: Option<SecretString>,
    /// Public HTTPS URL Telegram posts updates to; absent = long polling.
    pub webhook_url: Option<String>,
    /// Sent back by Telegram in `X-Telegram-Bot-Api-Secret-Token`; required with `webhookUrl`
    /// (1–256 of `A-Z a-z 0-9 _ -`).
    pub webhook_secret: Option<SecretString>,
    /// Bot API base (default `https://api.telegram.org`); a self-hosted Bot API server or a test
    /// server. Its host is let through the SSRF guard.
    pub api_base: String,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_from: Vec::new(),
            agent: None,
            bot_token: None,
            webhook_url: None,
            webhook_secret: None,
            api_base: TELEGRAM_API_BASE.to_owned(),
        }
    }
}

/// The public Bot API.
pub const TELEGRAM_API_BASE: &str = "https://api.telegram.org";

/// `channels.slack` (owned by the Slack adapter).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SlackConfig {
    pub enabled: bool,
    /// Slack user ids (`U…`) or channel ids (`C…`); `["*"]` opens the channel.
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
    /// Bot user OAuth token (`xoxb-…`).
    pub bot_token: Option<SecretString>,
    /// The app's signing secret (Basic Information page); verifies Events API requests.
    pub signing_secret: Option<SecretString>,
    /// `http` (Events API over HTTP, the only mode built); `socket` is refused.
    pub mode: String,
    /// Web API base (default `https://slack.com/api`).
    pub api_base: String,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_from: Vec::new(),
            agent: None,
            bot_token: None,
            signing_secret: None,
            mode: "http".to_owned(),
            api_base: SLACK_API_BASE.to_owned(),
        }
    }
}

/// The public Slack Web API.
pub const SLACK_API_BASE: &str = "https://slack.com/api";

/// `channels.discord` (owned by the Discord adapter).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiscordConfig {
    pub enabled: bool,
    /// Discord user ids or channel ids (snowflakes); `["*"]` opens the channel.
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
    /// Bot token (Developer Portal, Bot page).
    pub bot_token: Option<SecretString>,
    /// REST base (default `https://discord.com/api/v10`).
    pub api_base: String,
    /// Gateway URL (default `wss://gateway.discord.gg/?v=10&encoding=json`).
    pub gateway_url: String,
    /// Gateway intents bitmask (default GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES |
    /// MESSAGE_CONTENT = 37377; MESSAGE_CONTENT must also be enabled in the portal).
    pub intents: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_from: Vec::new(),
            agent: None,
            bot_token: None,
            api_base: DISCORD_API_BASE.to_owned(),
            gateway_url: DISCORD_GATEWAY_URL.to_owned(),
            intents: DISCORD_DEFAULT_INTENTS,
        }
    }
}

/// The public Discord REST API.
pub const DISCORD_API_BASE: &str = "https://discord.com/api/v10";
/// The public Discord gateway.
pub const DISCORD_GATEWAY_URL: &str = "wss://gateway.discord.gg/?v=10&encoding=json";
/// GUILDS (1) | GUILD_MESSAGES (512) | DIRECT_MESSAGES (4096) | MESSAGE_CONTENT (32768).
pub const DISCORD_DEFAULT_INTENTS: u64 = 1 | (1 << 9) | (1 << 12) | (1 << 15);
