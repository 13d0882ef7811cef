//! `comis fetch URL`: one request through the guarded client, the way an agent's web fetch
//! goes out (SSRF guard, DNS pinning, redirects re-checked, size and time limits).
//!
//! Prints one JSON object on stdout: `{status, url, bytes, redirects}` (the final URL after
//! redirects, the body size). `--output FILE` saves the body; it is never printed, since a
//! fetched page is untrusted. A URL the guard refuses prints `{blocked: true, finding,
//! reason}` and exits 1; any other failure is one line on stderr and exit 2.
//!
//! Exceptions come from `--allow-host` (same syntax as `security.ssrf.allowHosts`); without
//! one the strict policy applies.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use comis_net::{ClientConfig, GuardedClient, NetError, SsrfPolicy};
use serde_json::json;

use super::CliError;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The http(s) URL to fetch.
    url: String,
    /// An SSRF exception: a host name, *.suffix, an address or a CIDR (repeatable).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Largest response body accepted, in bytes.
    #[arg(long, default_value_t = 5 * 1024 * 1024)]
    max_bytes: u64,
    /// Time limit for the whole exchange, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Write the body to this file (created; refused if it exists).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(args: FetchArgs) -> Result<ExitCode, CliError> {
    let policy = SsrfPolicy::with_allow_hosts(&args.allow_hosts)?;
    if args.timeout == 0 || args.timeout > 600 {
        return Err(CliError::Usage("--timeout must be 1..=600 seconds".into()));
    }
    let config = ClientConfig {
        max_response_bytes: args.max_bytes,
        timeout: Duration::from_secs(args.timeout),
        ..ClientConfig::default()
    };
    let url = args.url;
    let result = comis_net::block_on(async move {
        let client = GuardedClient::new(policy, config)?;
        client.get(&url).await
    });
    let mut out = std::io::stdout().lock();
    match result {
        Ok(resp) => {
            if let Some(path) = &args.output {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(&resp.body))
                    .map_err(|e| CliError::Usage(format!("writing {}: {e}", path.display())))?;
            }
            let line = json!({
                "status": resp.status,
                "url": resp.url,
                "bytes": resp.body.len(),
                "redirects": resp.redirects,
            });
            writeln!(out, "{line}").map_err(CliError::Stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(NetError::Blocked(refusal)) => {
            let line = json!({
                "blocked": true,
                "finding": refusal.finding().name,
                "reason": refusal.to_string(),
            });
            writeln!(out, "{line}").map_err(CliError::Stdout)?;
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
