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
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IrcConfig {
    pub enabled: bool,
    /// Nicks or `nick!user@host` masks (`*` and `?` glob); empty = nobody, `["*"]` = everybody.
    pub allow_from: Vec<String>,
    /// Agent id; default agent when absent.
    pub agent: Option<String>,
    pub host: String,
    /// Default 6697 with TLS, 6667 without.
    pub port: Option<u16>,
    pub nick: String,
    /// Ident sent in `USER`; the nick when absent.
    pub username: Option<String>,
    pub realname: Option<String>,
    /// TLS to the server, verified against the public roots. On unless turned off.
    pub tls: bool,
    /// Channels to join (`#name`).
    pub channels: Vec<String>,
    /// Account password: sent by SASL PLAIN when `sasl` is on, else as NickServ `IDENTIFY`.
    pub nickserv_password: Option<SecretString>,
    /// Authenticate with SASL PLAIN (account = `saslAccount` or the nick) before registration.
    pub sasl: bool,
    pub sasl_account: Option<String>,
    /// Flood control: lines that may go out back to back, then one per `floodIntervalMs`.
    pub flood_burst: u32,
    pub flood_interval_ms: u64,
}

impl Default for IrcConfig {
    fn default() -> Self {
        IrcConfig {
            enabled: false,
            allow_from: Vec::new(),
            agent: None,
            host: String::new(),
            port: None,
            nick: String::new(),
            username: None,
            realname: None,
            tls: true,
            channels: Vec::new(),
            nickserv_password: None,
            sasl: false,
            sasl_account: None,
            flood_burst: 5,
            flood_interval_ms: 2_000,
        }
    }
}

impl IrcConfig {
    /// The configured port, or the protocol default for the TLS setting.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 6697 } else { 6667 })
    }
}

/// `channels.email.allowMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllowMode {
    /// Only `allowFrom` addresses; an empty list lets nothing in.
    #[default]
    Allowlist,
    /// Any sender (automatic mail is still dropped).
    Open,
}

/// `channels.email` (owned by the email adapter).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EmailConfig {
    pub enabled: bool,
    /// Sender addresses, matched case-insensitively and exactly.
    pub allow_from: Vec<String>,
    pub agent: Option<String>,
    pub allow_mode: AllowMode,
    pub imap_host: String,
    pub imap_port: u16,
    pub smtp_host: String,
    pub smtp_port: u16,
    /// TLS for both servers: IMAP on implicit TLS; SMTP on implicit TLS at port 465, else
    /// STARTTLS required. Off means plain text (only for a relay on the same host).
    pub secure: bool,
    /// The bot's own address (`From:` of replies, and never answered itself).
    pub address: String,
    /// Login for IMAP and SMTP; `address` when absent.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// Mailbox watched for new mail.
    pub mailbox: String,
    /// Poll interval when the server has no IDLE, and the longest one IDLE waits.
    pub polling_interval_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            enabled: false,
            allow_from: Vec::new(),
            agent: None,
            allow_mode: AllowMode::Allowlist,
            imap_host: String::new(),
            imap_port: 993,
            smtp_host: String::new(),
            smtp_port: 587,
            secure: true,
            address: String::new(),
            username: None,
            password: None,
            mailbox: "INBOX".to_owned(),
            polling_interval_ms: 60_000,
        }
    }
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
