//! `comis secrets set|get|list|rm|rotate-key`: the encrypted vault on the command line.
//!
//! Defends: secret values against the usual command-line leaks. A value is never taken from
//! `argv` (visible to every local user): `set` reads standard input, or prompts with echo off
//! when standard input is a terminal. `get` prints a value only with `--reveal`. Nothing else
//! ever prints a value, and errors name the secret, never its content.
//!
//! Exit status: 0 on success, 2 on any error (one line on stderr), as every comis command.
//! The vault lives in `$COMIS_HOME/secrets.enc`; the master key comes from `COMIS_MASTER_KEY`
//! or `$COMIS_HOME/master.key`, which `set` creates (0600) when there is neither key nor vault.

use std::io::{self, IsTerminal};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comis_secrets::vault::MAX_VALUE_LEN;
use comis_secrets::{ExposeSecret, KeySource, MasterKey, SecretName, Vault, prompt};
use serde_json::json;

use super::{CliError, out};
use crate::config::home;

#[derive(Debug, Args)]
pub struct SecretsArgs {
    #[command(subcommand)]
    command: SecretsCommand,
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Store a secret. The value is read from standard input (a hidden prompt on a terminal),
    /// never from the command line.
    Set {
        /// Secret name (letters, digits, _; not starting with a digit), e.g. OPENAI_API_KEY.
        name: String,
        /// Caught only to refuse it without echoing it: values never come from argv.
        #[arg(hide = true, num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        value: Vec<String>,
    },
    /// Print a secret's value to standard output (refused without --reveal).
    Get {
        /// Secret name.
        name: String,
        /// Confirm that the value may be printed.
        #[arg(long)]
        reveal: bool,
    },
    /// List secret names and when each was last set (never values).
    List {
        /// Print a JSON array instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    #[command(alias = "delete")]
    Rm {
        /// Secret name.
        name: String,
    },
    /// Re-encrypt every secret under a new master key.
    #[command(alias = "rotate")]
    RotateKey {
        /// Read the new key (64 hex characters or base64 of 32 bytes) from standard input
        /// instead of generating one. Required when the key comes from COMIS_MASTER_KEY.
        #[arg(long)]
        new_key_stdin: bool,
    },
}

pub fn run(args: SecretsArgs) -> Result<ExitCode, CliError> {
    match args.command {
        SecretsCommand::Set { name, value } => {
            if !value.is_empty() {
                return Err(CliError::Usage(
                    "secret values are never taken from the command line (every local user can \
                     read it in ps); pipe the value on standard input or type it at the prompt"
                        .into(),
                ));
            }
            set(&name)
        }
        SecretsCommand::Get { name, reveal } => get(&name, reveal),
        SecretsCommand::List { json } => list(json),
        SecretsCommand::Rm { name } => rm(&name),
        SecretsCommand::RotateKey { new_key_stdin } => rotate(new_key_stdin),
    }
}

fn open_existing() -> Result<Vault, CliError> {
    Ok(Vault::open(&home::path()?)?)
}

fn set(name: &str) -> Result<ExitCode, CliError> {
    let name = SecretName::new(name)?;
    let value = if io::stdin().is_terminal() {
        prompt::read_hidden(&format!("Value for {name} (input hidden): "), MAX_VALUE_LEN)?
    } else {
        prompt::read_from(io::stdin().lock(), MAX_VALUE_LEN)?
    };
    let home = home::ensure()?;
    let (vault, created) = Vault::open_or_create(&home)?;
    if created {
        eprintln!(
            "comis: created a new master key in {} (mode 0600); back it up: without it the \
             vault cannot be read",
            comis_secrets::master_key::key_file_path(&home).display()
        );
    }
    vault.set(&name, &value)?;
    out(&format!("stored {name} in {}\n", vault.path().display()))
}

fn get(name: &str, reveal: bool) -> Result<ExitCode, CliError> {
    let name = SecretName::new(name)?;
    if !reveal {
        return Err(CliError::Usage(format!(
            "refusing to print the value of {name}: add --reveal to print it to standard output"
        )));
    }
    let vault = open_existing()?;
    let value = vault
        .get(&name)?
        .ok_or_else(|| comis_secrets::SecretsError::NotFound {
            name: name.to_string(),
        })?;
    let mut line = zeroize::Zeroizing::new(String::with_capacity(value.expose_secret().len() + 1));
    line.push_str(value.expose_secret());
    line.push('\n');
    out(&line)
}

fn list(as_json: bool) -> Result<ExitCode, CliError> {
    let vault = open_existing()?;
    let entries = vault.list()?;
    if as_json {
        let rows: Vec<_> = entries
            .iter()
            .map(|e| json!({"name": e.name.as_str(), "updated_at": rfc3339(e.updated_at)}))
            .collect();
        return out(&format!("{}\n", serde_json::Value::Array(rows)));
    }
    if entries.is_empty() {
        eprintln!("comis: no secrets stored in {}", vault.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    let width = entries
        .iter()
        .map(|e| e.name.as_str().len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for e in &entries {
        text.push_str(&format!(
            "{:<width$}  {}\n",
            e.name.as_str(),
            rfc3339(e.updated_at)
        ));
    }
    out(&text)
}

fn rm(name: &str) -> Result<ExitCode, CliError> {
    let name = SecretName::new(name)?;
    let vault = open_existing()?;
    if !vault.remove(&name)? {
        return Err(comis_secrets::SecretsError::NotFound {
            name: name.to_string(),
        }
        .into());
    }
    out(&format!("removed {name}\n"))
}

fn rotate(new_key_stdin: bool) -> Result<ExitCode, CliError> {
    let new_key = if new_key_stdin {
        let text = prompt::read_from(io::stdin().lock(), 4096)?;
        Some(MasterKey::parse(text.expose_secret(), "standard input")?)
    } else {
        None
    };
    let mut vault = open_existing()?;
    let report = vault.rotate_key(new_key)?;
    let whereto = match &report.new_key_source {
        KeySource::File(p) => format!("the new key is in {}", p.display()),
        KeySource::Env => "set COMIS_MASTER_KEY to the new key now: the old one no longer \
                           opens the vault"
            .to_owned(),
    };
    out(&format!(
        "re-encrypted {} secret(s) under a new master key; {whereto}\n",
        report.entries
    ))
}

/// Seconds since the Unix epoch as RFC 3339 UTC.
fn rfc3339(secs: u64) -> String {
    comis_store::time::format_secs(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::rfc3339;

    #[test]
    fn formats_utc_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
    }
}
