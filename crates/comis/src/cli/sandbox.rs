//! `comis sandbox`: run a command exactly as an agent's `system.exec` would, and show what
//! the host can enforce.
//!
//! `run` goes through the same path as the daemon: host probe, exec state (fails closed), the
//! command policy, the env floor, `safe_path` on the working directory, then the bubblewrap
//! profile with seccomp, rlimits and a cgroup. Output is streamed; the exit status is the
//! command's (124 after a timeout, 126 when the command was refused or exec is disabled).
//! `probe` prints each layer and exits 1 when exec would be disabled on this host.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use comis_sandbox::{
    BrokerRelay, ExecRequest, ExecState, Exit, GuardPolicy, HostProbe, LayerStatus, Network,
    Sandbox, SandboxConfig, SandboxError, Stream, SystemEnv,
};
use zeroize::Zeroizing;

use super::CliError;

/// Exit status when a command is refused before it runs (as a shell's "cannot execute").
const EXIT_REFUSED: u8 = 126;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(subcommand)]
    command: SandboxCommand,
}

#[derive(Debug, Subcommand)]
enum SandboxCommand {
    /// Run a command in the agent sandbox: CMD… is joined with spaces into one shell command
    /// (as `ssh` does) and run as `bash -c`, exactly like an agent's exec.
    Run(Box<RunArgs>),
    /// Print what this host supports and which sandbox layers are active.
    Probe {
        /// Print the probe as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The workspace bound read-write (also HOME); default: the current directory.
    #[arg(long)]
    workspace: Option<PathBuf>,
    /// Working directory, relative to the workspace (checked with safe_path).
    #[arg(long)]
    cwd: Option<String>,
    /// Network for the command: none (default), broker (needs --broker-socket) or host.
    #[arg(long, value_enum, default_value = "none")]
    network: NetworkArg,
    /// The credential broker's Unix socket (for --network broker).
    #[arg(long)]
    broker_socket: Option<PathBuf>,
    /// The broker's CA certificate (PEM). With it, --network broker gets a working HTTPS
    /// proxy: the certificate is bound read-only at /run/comis/broker-ca.pem and the relay
    /// (this binary, `comis broker-relay`) starts on 127.0.0.1:3128 before the command.
    #[arg(long, requires = "broker_socket")]
    broker_ca: Option<PathBuf>,
    /// The broker session's environment, as the daemon writes it: a file of NAME=VALUE lines
    /// (proxy URL with the session token, CA variables, placeholders). Set by the daemon, not
    /// checked like an agent's --env, but only the broker's own names and value shapes pass.
    #[arg(long, requires = "broker_ca")]
    broker_env: Option<PathBuf>,
    /// Wall timeout in seconds (default 120, at most 600); the whole process tree is killed.
    #[arg(long)]
    timeout: Option<f64>,
    /// A path the command must never see, even inside the workspace (repeatable; the daemon
    /// passes $COMIS_HOME and its secret files).
    #[arg(long = "hide")]
    hide: Vec<PathBuf>,
    /// An environment variable for the command, NAME=VALUE (repeatable; checked like an
    /// agent's).
    #[arg(long = "env")]
    env: Vec<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkArg {
    None,
    Broker,
    Host,
}

pub fn run(args: SandboxArgs) -> Result<ExitCode, CliError> {
    match args.command {
        SandboxCommand::Run(a) => run_command(*a),
        SandboxCommand::Probe { json } => probe(json),
    }
}

fn run_command(a: RunArgs) -> Result<ExitCode, CliError> {
    let network = match (a.network, a.broker_socket) {
        (NetworkArg::None, None) => Network::None,
        (NetworkArg::Host, None) => Network::Host,
        (NetworkArg::Broker, Some(socket)) => Network::Broker(socket),
        (NetworkArg::Broker, None) => {
            return Err(CliError::Usage(
                "--network broker needs the credential broker's socket: --broker-socket PATH"
                    .into(),
            ));
        }
        (_, Some(_)) => {
            return Err(CliError::Usage(
                "--broker-socket only goes with --network broker".into(),
            ));
        }
    };
    let timeout = match a.timeout {
        None => None,
        Some(s) if s.is_finite() && s > 0.0 && s <= 600.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(CliError::Usage(format!(
                "--timeout must be between 0 and 600 seconds, not {s}"
            )));
        }
    };
    let env = a
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| CliError::Usage(format!("--env wants NAME=VALUE, not {kv:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let workspace = match a.workspace {
        Some(w) => w,
        None => std::env::current_dir()
            .map_err(|e| CliError::Usage(format!("the current directory: {e}")))?,
    };

    let broker_relay = match &a.broker_ca {
        Some(ca) => {
            let pem = read_small(ca, "--broker-ca")?;
            let program = std::env::current_exe()
                .map_err(|e| CliError::Usage(format!("finding the comis binary: {e}")))?;
            Some(BrokerRelay::new(&program, &pem)?)
        }
        None => None,
    };
    let system_env = match &a.broker_env {
        Some(file) => {
            let text = Zeroizing::new(read_small(file, "--broker-env")?);
            SystemEnv::new(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        l.split_once('=')
                            .map(|(k, v)| (k.to_owned(), Zeroizing::new(v.to_owned())))
                            .ok_or_else(|| {
                                CliError::Usage(
                                    "--broker-env: every line must be NAME=VALUE".into(),
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            )
        }
        None => SystemEnv::default(),
    };

    let probe = HostProbe::run(None);
    let config = SandboxConfig {
        hidden: a.hide,
        broker_relay,
        ..SandboxConfig::default()
    };
    let sandbox = Sandbox::new(config, &probe)?;
    for warning in sandbox.warnings() {
        eprintln!("comis: WARNING: {warning}");
    }
    let request = ExecRequest {
        command: a.command.join(" "),
        workspace,
        cwd: a.cwd,
        env,
        system_env,
        stdin: None,
        network,
        timeout,
    };
    let policy = GuardPolicy::new()?;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut write_failed = None;
    let result = sandbox.run_streaming(&request, &policy, &mut |stream, data| {
        let written = match stream {
            Stream::Stdout => {
                let mut out = stdout.lock();
                out.write_all(data).and_then(|()| out.flush())
            }
            Stream::Stderr => {
                let mut err = stderr.lock();
                err.write_all(data).and_then(|()| err.flush())
            }
        };
        if let Err(e) = written {
            write_failed.get_or_insert(e);
        }
    });
    let report = match result {
        Ok(report) => report,
        Err(
            e @ (SandboxError::Blocked(_)
            | SandboxError::PathRejected { .. }
            | SandboxError::ExecDisabled(_)),
        ) => {
            eprintln!("comis: refused: {e}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(e) = write_failed {
        return Err(CliError::Stdout(e));
    }
    if report.exit == Exit::TimedOut {
        eprintln!(
            "comis: timed out after {:.1} s; the command and its children were killed",
            report.elapsed.as_secs_f64()
        );
    }
    Ok(ExitCode::from(
        u8::try_from(report.exit.shell_code()).unwrap_or(1),
    ))
}

/// Largest --broker-ca / --broker-env file read.
const MAX_BROKER_FILE_BYTES: u64 = 64 * 1024;

/// Reads a small text file named by `flag` (bounded, UTF-8). Errors name the flag and the
/// path, never the content (the env file holds a session token).
fn read_small(path: &std::path::Path, flag: &str) -> Result<String, CliError> {
    use std::io::Read;
    let fail = |what: String| CliError::Usage(format!("{flag} {}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_BROKER_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    if text.len() as u64 > MAX_BROKER_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_BROKER_FILE_BYTES} bytes")));
    }
    Ok(text)
}

fn probe(json: bool) -> Result<ExitCode, CliError> {
    let probe = HostProbe::run(None);
    let sandbox = Sandbox::new(SandboxConfig::default(), &probe)?;
    let ok = matches!(sandbox.state(), ExecState::Sandboxed { .. });
    let mut text = String::new();
    if json {
        let value = serde_json::json!({
            "probe": probe,
            "process_limit": probe.process_limit(),
            "exec": sandbox.state(),
            "warnings": sandbox.warnings(),
        });
        text = format!("{value}\n");
    } else {
        let bwrap = match (&probe.bwrap, &probe.bwrap_version) {
            (Some(p), Some(v)) => format!("{} ({v})", p.display()),
            (Some(p), None) => p.display().to_string(),
            (None, _) => "not found".into(),
        };
        text.push_str(&format!("{:<12} {bwrap}\n", "bubblewrap"));
        let memory = match &probe.cgroups.memory {
            Some(c) => LayerStatus {
                active: true,
                detail: format!("cgroup memory limit per sandbox ({})", c.dir.display()),
            },
            None => LayerStatus {
                active: false,
                detail: "no writable memory cgroup; RLIMIT_AS per process only".into(),
            },
        };
        for (name, layer) in [
            ("namespaces", &probe.namespaces),
            ("seccomp", &probe.seccomp),
            ("landlock", &probe.landlock),
            ("processes", &probe.process_limit()),
            ("memory", &memory),
        ] {
            let state = if layer.active { "active" } else { "inactive" };
            text.push_str(&format!("{name:<12} {state:<9} {}\n", layer.detail));
        }
        text.push_str(&format!(
            "{:<12} {:<9} none by default; broker and host only when chosen per agent\n",
            "network", "active"
        ));
        let exec = match sandbox.state() {
            ExecState::Sandboxed { .. } => "sandboxed".to_owned(),
            ExecState::Unsandboxed => "UNSANDBOXED".to_owned(),
            ExecState::Disabled(reason) => format!("DISABLED: {reason}"),
        };
        text.push_str(&format!(
            "{:<12} {exec} (execSandbox.enabled: auto)\n",
            "exec"
        ));
        for warning in sandbox.warnings() {
            eprintln!("comis: WARNING: {warning}");
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
