//! `system.exec`: run an agent's shell command, after the policy, inside the sandbox.
//!
//! **Defends against** the most dangerous tool an agent has. Every run passes, in order: the
//! exec state (no sandbox = no exec, unless the operator wrote `never`), the command's basic
//! shape, the [`CommandPolicy`] (the guard's exec validator, command denylist and env
//! denylist, supplied by the caller), the env hard floor, the workspace and `safe_path` on the
//! working directory; then it spawns bubblewrap with the profile, the seccomp filters, the
//! rlimits and the cgroup.
//!
//! **Guarantees.** A command that fails any check is never spawned (`SandboxError::Blocked`,
//! `PathRejected`, `ExecDisabled`). The child's environment holds nothing from the daemon's
//! own; the only daemon-set variables are a broker run's [`ExecRequest::system_env`], held to
//! the broker's fixed names and value shapes.
//! The wall timeout kills the whole tree; output is capped.
//!
//! **Does not** decide *whether* an agent may exec at all (tool policy, approvals) or which
//! network an agent gets (the caller passes the agent's configured [`Network`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::SandboxError;
use crate::cgroup::{CgroupSupport, SandboxCgroup};
use crate::env::{SystemEnv, build_env, check_agent_env, check_system_env};
use crate::limits::Limits;
use crate::probe::HostProbe;
use crate::process::{Exit, Launch, Stream, launch};
use crate::profile::{
    self, BROKER_SOCKET_IN_SANDBOX, BrokerRelay, BwrapFeatures, Network, ProfileSpec,
};
use crate::safe_path::safe_path;
use crate::seccomp::{self, SeccompPrograms};

/// Longest command accepted, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Largest stdin accepted, in bytes.
pub const MAX_STDIN_BYTES: usize = 8 * 1024 * 1024;

/// The check every command passes before it is spawned: the guard's exec validator, command
/// denylist and env denylist. comis-sandbox ships no implementation on purpose: the daemon
/// supplies one built on `comis_guard::shell`, so a sandbox can never run without it by
/// accident.
pub trait CommandPolicy: Send + Sync {
    /// `Ok(())` to allow, `Err(reason)` to refuse. `command` is the shell command exactly as
    /// it will be run (`bash -c`), `env` the variables the agent asked to set.
    fn check(&self, command: &str, env: &[(String, String)]) -> Result<(), String>;
}

/// `execSandbox.enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Sandbox when the host can; otherwise exec is disabled (the default).
    #[default]
    Auto,
    /// Like `auto`, but a host without a working sandbox is a start-up error.
    Always,
    /// Run commands unsandboxed. Only the operator can choose this.
    Never,
}

impl std::str::FromStr for SandboxMode {
    type Err = SandboxError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(SandboxMode::Auto),
            "always" => Ok(SandboxMode::Always),
            "never" => Ok(SandboxMode::Never),
            other => Err(SandboxError::Config(format!(
                "execSandbox.enabled must be auto, always or never, not {other:?}"
            ))),
        }
    }
}

/// What the operator configured.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    pub limits: Limits,
    /// Paths no command may see (the daemon passes `$COMIS_HOME`, its vault, master key,
    /// database and config). Masked wherever they fall inside a bound path.
    pub hidden: Vec<PathBuf>,
    /// Extra read-only paths (`execSandbox.readOnlyAllowPaths`).
    pub read_only: Vec<PathBuf>,
    /// The relay program and CA that make `network: broker` a working HTTPS proxy (see
    /// [`BrokerRelay`]). Without it, broker mode offers the bare socket only.
    pub broker_relay: Option<BrokerRelay>,
}

/// Whether and how commands run on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum ExecState {
    /// In bubblewrap; `seccomp` says whether the second layer is on.
    Sandboxed { seccomp: bool },
    /// Unsandboxed, because the operator chose `never`.
    Unsandboxed,
    /// Exec is off; the reason says what the host lacks.
    Disabled(String),
}

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The shell command (run as `bash -c COMMAND`, or `sh -c` where bash is absent).
    pub command: String,
    /// The agent's workspace, bound read-write; also `HOME`.
    pub workspace: PathBuf,
    /// Working directory relative to the workspace (checked with `safe_path`).
    pub cwd: Option<String>,
    /// Variables the agent asked to set. Checked by the [`CommandPolicy`] and the hard floor.
    pub env: Vec<(String, String)>,
    /// Variables the daemon sets for a `network: broker` run: the broker session's
    /// environment (`BrokerSession::sandbox_env`: proxy URL with the session token, CA
    /// bundle paths, credential placeholders).
    ///
    /// **Why a separate channel.** These names are exactly what the guard's env policy must
    /// refuse from an agent: an agent that could set `HTTPS_PROXY` or `SSL_CERT_FILE` could
    /// route traffic or trust a CA of its choosing. They come from the daemon, not the agent,
    /// so they do not go through the [`CommandPolicy`]; instead they are held to a stricter,
    /// fixed allowlist ([`crate::env::check_system_env`]: only the broker's names, each with the
    /// only value shape it may have), they are accepted only with `network: broker` and a
    /// configured [`BrokerRelay`], and they are applied last, so an agent variable of the same
    /// name cannot replace a placeholder. Never fill this from agent input.
    pub system_env: SystemEnv,
    /// Bytes for the command's stdin.
    pub stdin: Option<Vec<u8>>,
    /// The agent's network mode.
    pub network: Network,
    /// Overrides the configured wall timeout (clamped to 100 ms – 600 s).
    pub timeout: Option<Duration>,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    pub exit: Exit,
    /// Output was cut at the cap (a marker says so in the output).
    pub truncated: bool,
    pub elapsed: Duration,
    /// False only in `never` mode.
    pub sandboxed: bool,
}

/// A run with its output captured.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    pub report: ExecReport,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The configured sandbox for this host. Build once at start-up from the probe.
#[derive(Debug)]
pub struct Sandbox {
    state: ExecState,
    limits: Limits,
    hidden: Vec<PathBuf>,
    read_only: Vec<PathBuf>,
    broker_relay: Option<BrokerRelay>,
    bwrap: Option<PathBuf>,
    features: BwrapFeatures,
    seccomp: Option<SeccompPrograms>,
    cgroups: CgroupSupport,
    /// Empty cgroups kept for reuse (at most [`CGROUP_POOL`]).
    cgroup_pool: Arc<Mutex<Vec<SandboxCgroup>>>,
    shell: PathBuf,
    warnings: Vec<String>,
}

/// Idle cgroups kept for reuse.
const CGROUP_POOL: usize = 8;

impl Sandbox {
    /// Decides the exec state from the configuration and the probe. Fails only on invalid
    /// configuration, or in `always` mode on a host without a working sandbox.
    pub fn new(config: SandboxConfig, probe: &HostProbe) -> Result<Sandbox, SandboxError> {
        config.limits.validate()?;
        let mut warnings = Vec::new();
        let hidden = config
            .hidden
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        let read_only = config
            .read_only
            .iter()
            .map(|p| {
                std::fs::canonicalize(p).map_err(|e| {
                    SandboxError::Config(format!("read-only path {}: {e}", p.display()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut seccomp_programs = None;
        let state = match config.mode {
            SandboxMode::Never => {
                warnings.push(
                    "execSandbox.enabled is `never`: shell commands run UNSANDBOXED with the \
                     daemon's own access to this host"
                        .into(),
                );
                ExecState::Unsandboxed
            }
            SandboxMode::Auto | SandboxMode::Always if !probe.namespaces.active => {
                let reason = format!("no working sandbox: {}", probe.namespaces.detail);
                if config.mode == SandboxMode::Always {
                    return Err(SandboxError::ExecDisabled(reason));
                }
                warnings.push(format!(
                    "exec is DISABLED: {reason}. Fix the host, or set execSandbox.enabled: \
                     never to run commands unsandboxed (not recommended)"
                ));
                ExecState::Disabled(reason)
            }
            SandboxMode::Auto | SandboxMode::Always => {
                if probe.seccomp.active {
                    seccomp_programs = Some(seccomp::build()?);
                } else {
                    warnings.push(format!(
                        "seccomp layer is OFF: {}; commands run in namespaces only",
                        probe.seccomp.detail
                    ));
                }
                ExecState::Sandboxed {
                    seccomp: seccomp_programs.is_some(),
                }
            }
        };
        let process_limit = probe.process_limit();
        if !process_limit.active && state != ExecState::Disabled(String::new()) {
            warnings.push(format!("process limit: {}", process_limit.detail));
        }
        let shell = if Path::new("/bin/bash").is_file() {
            PathBuf::from("/bin/bash")
        } else {
            PathBuf::from("/bin/sh")
        };
        Ok(Sandbox {
            state,
            limits: config.limits,
            hidden,
            read_only,
            broker_relay: config.broker_relay,
            bwrap: probe.bwrap.clone(),
            features: probe.bwrap_features,
            seccomp: seccomp_programs,
            cgroups: probe.cgroups.clone(),
            cgroup_pool: Arc::new(Mutex::new(Vec::new())),
            shell,
            warnings,
        })
    }

    /// Whether and how commands run.
    pub fn state(&self) -> &ExecState {
        &self.state
    }

    /// What the daemon must log loudly at start-up (empty when every layer is on).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The configured limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Runs `req` and captures its output.
    pub fn run(
        &self,
        req: &ExecRequest,
        policy: &dyn CommandPolicy,
    ) -> Result<ExecOutcome, SandboxError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let report = self.run_streaming(req, policy, &mut |s, d| match s {
            Stream::Stdout => stdout.extend_from_slice(d),
            Stream::Stderr => stderr.extend_from_slice(d),
        })?;
        Ok(ExecOutcome {
            report,
            stdout,
            stderr,
        })
    }

    /// Runs `req`, handing output to `sink` as it arrives.
    pub fn run_streaming(
        &self,
        req: &ExecRequest,
        policy: &dyn CommandPolicy,
        sink: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecReport, SandboxError> {
        if let ExecState::Disabled(reason) = &self.state {
            return Err(SandboxError::ExecDisabled(reason.clone()));
        }
        check_command(&req.command)?;
        if req
            .stdin
            .as_ref()
            .is_some_and(|s| s.len() > MAX_STDIN_BYTES)
        {
            return Err(SandboxError::Blocked(format!(
                "stdin larger than {MAX_STDIN_BYTES} bytes"
            )));
        }
        policy
            .check(&req.command, &req.env)
            .map_err(SandboxError::Blocked)?;
        check_agent_env(&req.env)?;
        let relay = match &req.network {
            Network::Broker(_) => self.broker_relay.as_ref(),
            _ => None,
        };
        if !req.system_env.is_empty() {
            if relay.is_none() {
                return Err(SandboxError::Config(
                    "daemon environment variables are only for network: broker with a \
                     configured broker relay"
                        .into(),
                ));
            }
            check_system_env(&req.system_env)?;
        }
        let workspace = std::fs::canonicalize(&req.workspace)
            .ok()
            .filter(|w| w.is_dir())
            .ok_or_else(|| {
                SandboxError::Config(format!(
                    "workspace {} is not a directory",
                    req.workspace.display()
                ))
            })?;
        let cwd = safe_path(&workspace, req.cwd.as_deref().unwrap_or(""))?;
        if !cwd.is_dir() {
            return Err(SandboxError::Blocked(format!(
                "working directory {} does not exist",
                cwd.display()
            )));
        }
        if let Network::Broker(socket) = &req.network
            && !socket.exists()
        {
            return Err(SandboxError::Config(format!(
                "network broker: the broker socket {} does not exist",
                socket.display()
            )));
        }
        let limits = match req.timeout {
            Some(t) => self.limits.clone().with_timeout(t),
            None => self.limits.clone(),
        };
        let cgroup = self.take_cgroup()?;
        let cgroup_procs = match &cgroup {
            Some(cg) => cg.procs_fds().map_err(|e| SandboxError::Io {
                what: "opening the sandbox cgroup".into(),
                source: e,
            })?,
            None => Vec::new(),
        };
        let mut env = build_env(&workspace, &req.env);
        for (name, value) in req.system_env.vars() {
            match env.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1.clone_from(value),
                None => env.push((name.clone(), value.as_str().to_owned())),
            }
        }
        if matches!(req.network, Network::Broker(_)) {
            env.push((
                "COMIS_BROKER_SOCKET".into(),
                BROKER_SOCKET_IN_SANDBOX.into(),
            ));
        }
        let shell_args: Vec<OsString> = vec!["-c".into(), req.command.clone().into()];
        let rlimits = limits.rlimits(!self.cgroups.limits_processes());
        let launch_spec = match (&self.state, &self.bwrap) {
            (ExecState::Sandboxed { .. }, Some(bwrap)) => {
                let spec = ProfileSpec {
                    workspace: Some(&workspace),
                    cwd: Some(&cwd),
                    network: &req.network,
                    hidden: &self.hidden,
                    read_only: &self.read_only,
                    features: self.features,
                    tmp_size: limits.tmp_size,
                    seccomp: self
                        .seccomp
                        .as_ref()
                        .map(|p| (p.deny.as_slice(), p.clone3.as_slice())),
                    relay,
                };
                let built = profile::build(&spec)?;
                let mut args = built.args;
                let mut command: Vec<OsString> = vec![self.shell.clone().into()];
                command.extend(shell_args);
                match relay {
                    Some(_) => args.extend(profile::relay_wrapper(command)),
                    None => args.extend(command),
                }
                Launch {
                    program: bwrap.clone(),
                    args,
                    env,
                    cwd: Some(PathBuf::from("/")),
                    stdin: req.stdin.clone(),
                    rlimits,
                    pass_fds: built.fds,
                    cgroup_procs,
                    timeout: limits.timeout,
                    output_cap: limits.output_cap,
                }
            }
            (ExecState::Unsandboxed, _) => Launch {
                program: self.shell.clone(),
                args: shell_args,
                env,
                cwd: Some(cwd),
                stdin: req.stdin.clone(),
                rlimits,
                pass_fds: Vec::new(),
                cgroup_procs,
                timeout: limits.timeout,
                output_cap: limits.output_cap,
            },
            _ => {
                return Err(SandboxError::ExecDisabled("no bubblewrap binary".into()));
            }
        };
        let finished = launch(launch_spec, cgroup.as_ref(), sink);
        if let Some(cg) = cgroup {
            self.return_cgroup(cg);
        }
        let finished = finished?;
        Ok(ExecReport {
            exit: finished.exit,
            truncated: finished.truncated,
            elapsed: finished.elapsed,
            sandboxed: matches!(self.state, ExecState::Sandboxed { .. }),
        })
    }
}

impl Sandbox {
    /// An empty cgroup with this sandbox's limits: from the pool, or new.
    fn take_cgroup(&self) -> Result<Option<SandboxCgroup>, SandboxError> {
        if self.cgroups.pids.is_none() && self.cgroups.memory.is_none() {
            return Ok(None);
        }
        let pooled = self.cgroup_pool.lock().ok().and_then(|mut p| p.pop());
        if let Some(cg) = pooled {
            return Ok(Some(cg));
        }
        self.cgroups
            .create(&self.limits)
            .map(Some)
            .map_err(|e| SandboxError::Io {
                what: "creating the sandbox cgroup".into(),
                source: e,
            })
    }

    /// Puts a cgroup back for reuse once it is empty; otherwise it is killed and removed.
    fn return_cgroup(&self, cg: SandboxCgroup) {
        cg.kill_all();
        if cg.is_empty() {
            pool_cgroup(&self.cgroup_pool, cg);
            return;
        }
        // Killed tasks take a moment to leave the cgroup (bubblewrap's PID 1 is often still
        // being reaped). Waiting for that here added ~10 ms to one command in ten; wait on a
        // thread instead, still killing, and reuse the cgroup only once it is empty. If the
        // thread cannot start, the closure (and with it `cg`) is dropped here: kill, wait,
        // remove, as before.
        let pool = Arc::clone(&self.cgroup_pool);
        let _ = std::thread::Builder::new()
            .name("comis-cgroup-reap".into())
            .spawn(move || {
                for _ in 0..REAP_TRIES {
                    std::thread::sleep(Duration::from_millis(5));
                    if cg.is_empty() {
                        pool_cgroup(&pool, cg);
                        return;
                    }
                    cg.kill_all();
                }
                // Still busy after a second: dropping kills what is left and removes it.
            });
    }
}

/// How often (every 5 ms) a returned cgroup is checked for emptiness before it is removed.
const REAP_TRIES: usize = 200;

/// Keeps an empty cgroup for reuse, or drops (removes) it when the pool is full.
fn pool_cgroup(pool: &Mutex<Vec<SandboxCgroup>>, cg: SandboxCgroup) {
    if let Ok(mut pool) = pool.lock()
        && pool.len() < CGROUP_POOL
    {
        pool.push(cg);
    }
}

/// The command's shape, before any policy: present, bounded, no NUL (which would silently cut
/// it at exec).
fn check_command(command: &str) -> Result<(), SandboxError> {
    if command.trim().is_empty() {
        return Err(SandboxError::Blocked("empty command".into()));
    }
    if command.len() > MAX_COMMAND_BYTES {
        return Err(SandboxError::Blocked(format!(
            "command longer than {MAX_COMMAND_BYTES} bytes"
        )));
    }
    if command.contains('\0') {
        return Err(SandboxError::Blocked("command contains a NUL byte".into()));
    }
    Ok(())
}
