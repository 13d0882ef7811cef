//! Command-line surface. Each subcommand lives in its own module and returns an exit code;
//! errors are values and end as one line on stderr with exit status 2.

mod approvals;
mod audit;
mod chat;
mod config;
mod daemon;
mod demo;
mod doctor;
mod fetch;
mod guard;
pub(crate) mod init;
mod items;
mod memory;
mod relay;
mod rpc;
mod sandbox;
mod secrets;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// comis: a security-first, headless, multi-agent AI daemon.
#[derive(Debug, Parser)]
#[command(name = "comis", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run text through one of the guard detectors (stdin in, JSON lines out).
    Guard(guard::GuardArgs),
    /// Manage the encrypted secrets vault ($COMIS_HOME/secrets.enc).
    Secrets(secrets::SecretsArgs),
    /// Inspect and manage agent memories ($COMIS_HOME/comis.db).
    Memory(memory::MemoryArgs),
    /// Read and verify the hash-chained audit log.
    Audit(audit::AuditArgs),
    /// Fetch a URL through the guarded client (SSRF guard, DNS pinning, limits).
    Fetch(fetch::FetchArgs),
    /// Relay the sandbox's proxy port to the credential broker (run inside sandboxes).
    #[command(hide = true)]
    BrokerRelay(relay::RelayArgs),
    /// Run a command in the exec sandbox, or show what this host can enforce.
    Sandbox(sandbox::SandboxArgs),
    /// Create $COMIS_HOME: config, master key, vault with a gateway token, default agent.
    Init(init::InitArgs),
    /// Validate or show config.yaml.
    Config(config::ConfigArgs),
    /// Start, stop and inspect the daemon.
    Daemon(daemon::DaemonArgs),
    /// Start a throw-away daemon with a prompt-injected agent and show every attack stopped.
    Demo(demo::DemoArgs),
    /// Talk to an agent through the running daemon (one message with -m, else a REPL).
    Chat(chat::ChatArgs),
    /// List and resolve pending approval requests of the running daemon.
    Approvals(approvals::ApprovalsArgs),
    /// Check the set-up for insecure settings (and repair what is safe to repair).
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// Shells `comis completions` can write for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn completions(shell: Shell) -> Result<ExitCode, CliError> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "comis", &mut buf)
        }
        Shell::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "comis", &mut buf)
        }
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "comis", &mut buf)
        }
    }
    out(&String::from_utf8_lossy(&buf))
}

/// The one error type of the CLI.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Guard(#[from] comis_guard::GuardError),
    #[error("{0}")]
    Sandbox(#[from] comis_sandbox::SandboxError),
    #[error("reading standard input: {0}")]
    Stdin(std::io::Error),
    #[error("writing standard output: {0}")]
    Stdout(std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Secrets(#[from] comis_secrets::SecretsError),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Store(#[from] comis_store::StoreError),
    #[error("{0}")]
    Net(#[from] comis_net::NetError),
    /// The gateway answered a JSON-RPC error (or refused the token: code 401).
    #[error("gateway error {code}: {message}")]
    Rpc { code: i64, message: String },
}

/// Writes `text` to standard output; the one way subcommands print their result.
pub(crate) fn out(text: &str) -> Result<ExitCode, CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(CliError::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Guard(args) => guard::run(args),
        Command::Secrets(args) => secrets::run(args),
        Command::Memory(args) => memory::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::BrokerRelay(args) => relay::run(args),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Init(args) => init::run(args),
        Command::Config(args) => config::run(args),
        Command::Daemon(args) => daemon::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Approvals(args) => approvals::run(args),
        Command::Completions { shell } => completions(shell),
    }
}
