//! `comis init`: a working, safe set-up in one command.
//!
//! Creates `COMIS_HOME` (0700) with `config.yaml` (0600), the master key (0600, unless
//! `COMIS_MASTER_KEY` is set), a vault holding a generated gateway token (64 hex characters,
//! 256 bits) that the config names instead of containing, the default agent and its workspace.
//! On a terminal it asks for the provider, the model and the API key (hidden); with
//! `--non-interactive` everything comes from flags and the key, if any, from standard input.
//!
//! Guarantees: an existing `config.yaml` is never overwritten without `--force`; an existing
//! vault and master key are kept (re-running with `--force` cannot lock the operator out of
//! their secrets). No secret is written to the config file or printed.
//!
//! Does not: enable a channel (it prepares the section of the one chosen, disabled with an
//! empty `allowFrom`: the platform credentials and senders are the operator's to add), or check
//! that the API key works (`comis doctor` warns when a provider has none).

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use comis_secrets::{SecretName, SecretString, Vault, prompt};

use super::{CliError, out};
use crate::config::schema::DEFAULT_AGENT;
use crate::config::{home, load};

/// The vault name of the gateway token `init` generates (the original's CLI variable).
pub const GATEWAY_TOKEN_NAME: &str = "COMIS_GATEWAY_TOKEN";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Take every answer from flags (for scripts); never prompt.
    #[arg(long)]
    non_interactive: bool,
    /// LLM provider: anthropic, openai or ollama.
    #[arg(long)]
    provider: Option<String>,
    /// Model of the default agent.
    #[arg(long)]
    model: Option<String>,
    /// Read the provider API key from standard input (stored in the vault, never in the config).
    #[arg(long)]
    api_key_stdin: bool,
    /// Gateway port on 127.0.0.1.
    #[arg(long, default_value_t = 4766)]
    gateway_port: u16,
    /// Provider base URL (for a local or proxy endpoint).
    #[arg(long)]
    base_url: Option<String>,
    /// Replace an existing config.yaml (the vault and the master key are kept).
    #[arg(long)]
    force: bool,
}

struct ProviderKind {
    kind: &'static str,
    base_url: &'static str,
    model: &'static str,
    key_name: Option<&'static str>,
}

const PROVIDERS: &[ProviderKind] = &[
    ProviderKind {
        kind: "anthropic",
        base_url: "https://api.anthropic.com",
        model: "claude-sonnet-4-5",
        key_name: Some("ANTHROPIC_API_KEY"),
    },
    ProviderKind {
        kind: "openai",
        base_url: "https://api.openai.com/v1",
        model: "gpt-4o-mini",
        key_name: Some("OPENAI_API_KEY"),
    },
    ProviderKind {
        kind: "ollama",
        base_url: "http://127.0.0.1:11434",
        model: "llama3.2",
        key_name: None,
    },
];

fn provider_kind(name: &str) -> Result<&'static ProviderKind, CliError> {
    PROVIDERS.iter().find(|p| p.kind == name).ok_or_else(|| {
        CliError::Usage(format!(
            "unknown provider {name:?}: choose one of anthropic, openai, ollama"
        ))
    })
}

fn ask(question: &str, default: &str) -> Result<String, CliError> {
    eprint!("{question} [{default}]: ");
    let _ = io::stderr().flush();
    let mut line = String::new();
    io::stdin()
        .lock()
        .take_line(&mut line)
        .map_err(CliError::Stdin)?;
    let line = line.trim();
    Ok(if line.is_empty() {
        default.to_owned()
    } else {
        line.to_owned()
    })
}

trait TakeLine {
    fn take_line(&mut self, buf: &mut String) -> io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    /// One line of at most 1 KiB (an answer, not a file).
    fn take_line(&mut self, buf: &mut String) -> io::Result<usize> {
        let mut limited = io::Read::take(self, 1024);
        limited.read_line(buf)
    }
}

/// A random token: 32 bytes from the OS, as 64 hex characters.
pub fn generate_token() -> Result<SecretString, CliError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| CliError::Usage(format!("random source unavailable: {e}")))?;
    let mut hex = String::with_capacity(64);
    for b in bytes.iter() {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok(SecretString::from(hex))
}

pub fn run(args: InitArgs) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    let config_path = load::config_path(&home);
    if config_path.exists() && !args.force {
        return Err(CliError::Usage(format!(
            "{} already exists: refusing to overwrite it (use --force to replace the config; \
             the vault and master key are kept)",
            config_path.display()
        )));
    }
    let interactive = !args.non_interactive && io::stdin().is_terminal();
    let provider_name = match (&args.provider, interactive) {
        (Some(p), _) => p.clone(),
        (None, true) => ask("Provider (anthropic, openai, ollama)", "anthropic")?,
        (None, false) => "anthropic".to_owned(),
    };
    let provider = provider_kind(&provider_name)?;
    let model = match (&args.model, interactive) {
        (Some(m), _) => m.clone(),
        (None, true) => ask("Model", provider.model)?,
        (None, false) => provider.model.to_owned(),
    };
    let api_key = match provider.key_name {
        None => None,
        Some(_) if args.api_key_stdin => Some(prompt::read_from(
            io::stdin().lock(),
            comis_secrets::vault::MAX_VALUE_LEN,
        )?),
        Some(name) if interactive => {
            let k = prompt::read_hidden(
                &format!("{name} (input hidden, empty to skip): "),
                comis_secrets::vault::MAX_VALUE_LEN,
            );
            // An empty answer is a choice (set it later), not an error.
            k.ok()
        }
        Some(_) => None,
    };
    let channel = if interactive {
        let c = ask(
            "Chat channel to prepare (none, irc, email, telegram, slack, discord)",
            "none",
        )?;
        match c.as_str() {
            "none" => None,
            "irc" | "email" | "telegram" | "slack" | "discord" => Some(c),
            other => {
                return Err(CliError::Usage(format!(
                    "unknown channel {other:?}: choose none, irc, email, telegram, slack or discord"
                )));
            }
        }
    } else {
        None
    };

    home::ensure_dir(&home)?;
    for dir in ["logs", "workspaces"] {
        home::ensure_dir(&home.join(dir))?;
    }
    home::ensure_dir(&home.join("workspaces").join(DEFAULT_AGENT))?;
    let (vault, created_key) = Vault::open_or_create(&home)?;
    let token_name = SecretName::new(GATEWAY_TOKEN_NAME)?;
    let mut items = vec![(token_name, generate_token()?)];
    if let (Some(key), Some(name)) = (api_key, provider.key_name) {
        items.push((SecretName::new(name)?, key));
    }
    let stored_key = items.len() > 1;
    vault.set_many(&items)?;
    let base_url = args.base_url.as_deref().unwrap_or(provider.base_url);
    let mut config = render(provider, &model, base_url, args.gateway_port);
    if let Some(c) = channel {
        // Prepared, not enabled: a channel with an empty allowFrom lets nobody in, and the
        // platform credentials go into the vault first.
        config.push_str(&format!(
            "channels:\n  {c}:\n    enabled: false  # set allowFrom, then enable\n    allowFrom: []\n"
        ));
    }
    home::write_private(&config_path, config.as_bytes())?;
    report(&home, created_key, provider, stored_key)
}

fn report(
    home: &Path,
    created_key: bool,
    provider: &ProviderKind,
    stored_key: bool,
) -> Result<ExitCode, CliError> {
    let mut msg = format!(
        "comis is set up in {}\n  config:    {}\n  vault:     {} (gateway token {GATEWAY_TOKEN_NAME})\n",
        home.display(),
        load::config_path(home).display(),
        home.join(comis_secrets::vault::VAULT_FILE).display(),
    );
    if created_key {
        msg.push_str(&format!(
            "  master key: {} (back it up: without it the vault cannot be read)\n",
            comis_secrets::master_key::key_file_path(home).display()
        ));
    }
    match (provider.key_name, stored_key) {
        (Some(name), false) => msg.push_str(&format!(
            "  no API key yet: store it with `comis secrets set {name}`\n"
        )),
        (Some(name), true) => msg.push_str(&format!("  API key stored in the vault as {name}\n")),
        (None, _) => {}
    }
    msg.push_str("next: comis doctor, then comis daemon start\n");
    out(&msg)
}

/// YAML-quotes `s` (double quotes, JSON escaping is valid YAML).
fn q(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn render(provider: &ProviderKind, model: &str, base_url: &str, port: u16) -> String {
    let key_line = provider
        .key_name
        .map(|k| format!("      apiKeyName: {k}\n"))
        .unwrap_or_default();
    format!(
        "# comis configuration, written by `comis init`. Secrets are not in this file: they\n\
         # live in the vault (secrets.enc) and are referenced by name.\n\
         logLevel: info\n\
         gateway:\n\
         \x20 host: 127.0.0.1\n\
         \x20 port: {port}\n\
         \x20 tokens:\n\
         \x20   - id: default\n\
         \x20     secret: {{ source: env, id: {GATEWAY_TOKEN_NAME} }}\n\
         \x20     scopes: [\"*\"]\n\
         providers:\n\
         \x20 entries:\n\
         \x20   {kind}:\n\
         \x20     type: {kind}\n\
         \x20     baseUrl: {url}\n\
         {key_line}\
         agents:\n\
         \x20 {DEFAULT_AGENT}:\n\
         \x20   provider: {kind}\n\
         \x20   model: {model}\n\
         security:\n\
         \x20 logRedaction: true\n\
         \x20 auditLog: true\n\
         \x20 actionConfirmation:\n\
         \x20   requireForDestructive: true\n",
        kind = provider.kind,
        url = q(base_url),
        model = q(model),
    )
}
