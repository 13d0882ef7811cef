//! `comis config validate|show`: the configuration as the daemon will read it.
//!
//! Guarantees: `validate` runs exactly the daemon's loader (same limits, same SecretRef
//! resolution, same strictness) and exits 0 when the daemon would accept the file, 1 with the
//! `file:line:col: message` otherwise. `show` prints the resolved configuration as JSON with
//! every secret-derived field, every secret-like key and every vault value `[REDACTED]`.
//!
//! Does not: show defaults that the file leaves out (the typed sections are not serializable
//! in every crate); `comis doctor` reports on the effective values.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{CliError, out};
use crate::config::{ConfigError, home, load};

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check $COMIS_HOME/config.yaml as the daemon would (exit 0 valid, 1 invalid).
    Validate,
    /// Print the resolved configuration with every secret redacted.
    Show,
}

pub fn run(args: ConfigArgs) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    match args.command {
        ConfigCommand::Validate => match load::load(&home) {
            Ok(l) => out(&format!("{}: valid\n", l.path.display())),
            Err(e @ (ConfigError::Invalid { .. } | ConfigError::Missing { .. })) => {
                eprintln!("comis: {e}");
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        },
        ConfigCommand::Show => {
            let l = load::load(&home)?;
            let mut redactor = comis_secrets::redact::Redactor::new();
            if home.join(comis_secrets::vault::VAULT_FILE).exists() {
                let vault = comis_secrets::Vault::open(&home)?;
                redactor = redactor.with_vault_values(&vault)?;
            }
            let shown = redactor.redact(&l.redacted());
            let text = serde_json::to_string_pretty(&shown)
                .map_err(|e| CliError::Usage(format!("rendering the configuration: {e}")))?;
            out(&format!("{text}\n"))
        }
    }
}
