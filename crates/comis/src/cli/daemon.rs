//! `comis daemon start|stop|status|logs|install-service`: the daemon as a well-kept Unix service.
//!
//! Exit status: `start` 0 when the daemon is ready, 1 when it refused (invalid config, already
//! running); `status` 0 running, 3 not running (LSB); `stop` 0 when stopped or not running.
//! `start` validates the configuration itself before starting anything, so a broken file is
//! reported on the terminal with its `file:line:col`, not only in the log.
//!
//! Does not: manage several homes at once, or rotate the log file.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{CliError, out};
use crate::config::{ConfigError, home, load};
use crate::daemon::{self, DaemonState};

#[derive(Debug, Args)]
pub struct DaemonArgs {
    #[command(subcommand)]
    command: DaemonCommand,
}

#[derive(Debug, Subcommand)]
enum DaemonCommand {
    /// Start the daemon in the background (or in the foreground for service managers).
    Start {
        /// Stay in the foreground, logging to standard error (systemd, containers).
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon gracefully (pending approvals are denied, the audit log flushed).
    Stop {
        /// Seconds to wait for it to finish.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Show whether the daemon runs (exit 0) or not (exit 3), and what it runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the daemon log.
    Logs {
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to print first.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
    /// Write a hardened systemd user unit that runs `comis daemon start --foreground`.
    InstallService {
        /// Print the unit to standard output instead of writing it.
        #[arg(long)]
        print: bool,
    },
}

pub fn run(args: DaemonArgs) -> Result<ExitCode, CliError> {
    match args.command {
        DaemonCommand::Start { foreground: true } => daemon::run::run_foreground(),
        DaemonCommand::Start { foreground: false } => start(&home::ensure()?),
        DaemonCommand::Stop { timeout } => stop(&home::path()?, Duration::from_secs(timeout)),
        DaemonCommand::Status { json } => status(json),
        DaemonCommand::Logs { follow, lines } => logs(follow, lines),
        DaemonCommand::InstallService { print } => install_service(print),
    }
}

fn configured_log(home: &Path) -> Result<(load::Loaded, PathBuf), ConfigError> {
    let l = load::load(home)?;
    let p = daemon::log_path(home, l.config.daemon.logging.file_path.as_deref());
    Ok((l, p))
}

/// Starts a background daemon for `home` and waits until it is ready.
pub(crate) fn start(home: &Path) -> Result<ExitCode, CliError> {
    let home = home.to_owned();
    let log = match configured_log(&home) {
        Ok((_, log)) => log,
        Err(e @ (ConfigError::Invalid { .. } | ConfigError::Missing { .. })) => {
            eprintln!("comis: refusing to start: {e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(pid) = daemon::running(&home) {
        eprintln!("comis: refusing to start: a daemon is already running (pid {pid})");
        return Ok(ExitCode::from(1));
    }
    if let Some(dir) = log.parent() {
        home::ensure_dir(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(|source| ConfigError::Io {
            action: "opening the daemon log",
            path: log.clone(),
            source,
        })?;
    let offset = file.metadata().map_or(0, |m| m.len());
    let exe = std::env::current_exe().map_err(|source| ConfigError::Io {
        action: "finding the comis binary",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let args: Vec<OsString> = ["daemon", "start", "--foreground"]
        .iter()
        .map(OsString::from)
        .collect();
    let env = [(
        OsString::from(home::HOME_VAR),
        home.clone().into_os_string(),
    )];
    let mut child = comis_sandbox::spawn_daemon(&exe, &args, &env, file)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = DaemonState::read(&home)
            && s.pid == child.id()
        {
            return out(&format!(
                "comis daemon started (pid {}), log: {}\n",
                s.pid,
                log.display()
            ));
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "comis: the daemon exited during start-up ({status}); its log says:\n{}",
                tail_from(&log, offset)
            );
            return Ok(ExitCode::from(1));
        }
        if Instant::now() > deadline {
            return Err(CliError::Usage(format!(
                "the daemon (pid {}) is not ready after 30 s; see {}",
                child.id(),
                log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn tail_from(path: &Path, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(offset));
        let _ = f.take(64 * 1024).read_to_string(&mut s);
    }
    s
}

/// Stops the daemon of `home` (SIGTERM, then waits up to `timeout`).
pub(crate) fn stop(home: &Path, timeout: Duration) -> Result<ExitCode, CliError> {
    let home = home.to_owned();
    let Some(pid) = daemon::running(&home) else {
        return out("comis daemon is not running\n");
    };
    let Some(target) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return Err(CliError::Usage(format!(
            "the daemon holds the lock but its pid file is unreadable; stop it with \
             `kill` after checking {}",
            home.join(daemon::PID_FILE).display()
        )));
    };
    rustix::process::kill_process(target, rustix::process::Signal::TERM)
        .map_err(|e| CliError::Usage(format!("sending SIGTERM to pid {pid}: {e}")))?;
    let deadline = Instant::now() + timeout;
    while daemon::running(&home).is_some() {
        if Instant::now() > deadline {
            return Err(CliError::Usage(format!(
                "the daemon (pid {pid}) did not stop within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    out(&format!("comis daemon stopped (pid {pid})\n"))
}

fn status(as_json: bool) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    let not_running = || {
        if as_json {
            let _ = out("{\"running\":false}\n");
        } else {
            let _ = out("comis daemon is not running\n");
        }
        Ok(ExitCode::from(3))
    };
    let Some(pid) = daemon::running(&home) else {
        return not_running();
    };
    let state = DaemonState::read(&home).unwrap_or(DaemonState {
        pid,
        ..DaemonState::default()
    });
    let uptime = daemon::now().saturating_sub(state.started_at);
    if as_json {
        let v = serde_json::json!({
            "running": true,
            "pid": pid,
            "uptimeSeconds": uptime,
            "gateway": state.gateway,
            "agents": state.agents,
            "channels": state.channels,
            "sandbox": state.sandbox.iter().map(|(n, a, d)| serde_json::json!({"layer": n, "active": a, "detail": d})).collect::<Vec<_>>(),
        });
        out(&format!("{v}\n"))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = format!(
        "comis daemon is running\n  pid:      {pid}\n  uptime:   {uptime}s\n  gateway:  {}\n  agents:   {}\n  channels: {}\n",
        if state.gateway.is_empty() {
            "not started"
        } else {
            &state.gateway
        },
        state.agents.join(", "),
        if state.channels.is_empty() {
            "none".to_owned()
        } else {
            state.channels.join(", ")
        },
    );
    if state.sandbox.is_empty() {
        s.push_str("  sandbox:  probing…\n");
    } else {
        for (name, active, detail) in &state.sandbox {
            s.push_str(&format!(
                "  sandbox:  {name:<14} {} ({detail})\n",
                if *active { "on " } else { "OFF" }
            ));
        }
    }
    out(&s)
}

fn logs(follow: bool, lines: usize) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    let path = match configured_log(&home) {
        Ok((_, p)) => p,
        Err(_) => daemon::log_path(&home, None),
    };
    let mut f = std::fs::File::open(&path).map_err(|source| ConfigError::Io {
        action: "opening the daemon log",
        path: path.clone(),
        source,
    })?;
    let len = f.metadata().map_or(0, |m| m.len());
    // The last lines are within the last 1 MiB for any sane line length.
    let start = len.saturating_sub(1024 * 1024);
    let mut text = tail_from(&path, start);
    if start > 0 {
        text = text
            .split_once('\n')
            .map_or(String::new(), |(_, r)| r.to_owned());
    }
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    let mut stdout = std::io::stdout().lock();
    for l in &all[from..] {
        writeln!(stdout, "{l}").map_err(CliError::Stdout)?;
    }
    stdout.flush().map_err(CliError::Stdout)?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = len;
    loop {
        let now_len = f.metadata().map_or(pos, |m| m.len());
        if now_len < pos {
            pos = 0; // truncated or replaced: start over
        }
        if now_len > pos {
            f.seek(SeekFrom::Start(pos)).map_err(CliError::Stdin)?;
            let mut buf = Vec::new();
            (&mut f)
                .take(now_len - pos)
                .read_to_end(&mut buf)
                .map_err(CliError::Stdin)?;
            pos += buf.len() as u64;
            stdout.write_all(&buf).map_err(CliError::Stdout)?;
            stdout.flush().map_err(CliError::Stdout)?;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where `install-service` writes the unit.
pub const UNIT_PATH: &str = "/etc/systemd/system/comis.service";

/// The systemd unit for `home`, running `exe` as user `uid`.
///
/// A system unit with `User=` rather than a `--user` unit: in a user manager the sandboxing
/// options below need `PrivateUsers=`, and that is one of the settings bwrap cannot live with.
pub fn unit(exe: &Path, home: &Path, uid: u32) -> String {
    format!(
        "[Unit]\n\
         Description=comis security-first AI agent daemon\n\
         After=network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         User={uid}\n\
         Environment=COMIS_HOME={home}\n\
         ExecStart={exe} daemon start --foreground\n\
         ExecReload=/bin/kill -HUP $MAINPID\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         UMask=0077\n\
         # Hardening that still lets bubblewrap build the exec sandbox. bwrap needs unprivileged\n\
         # user namespaces (and mount, pid, net namespaces inside them) and a writable cgroup\n\
         # subtree, so PrivateUsers=, RestrictNamespaces=, ProtectControlGroups= and any\n\
         # SystemCallFilter= on unshare/clone/setns are deliberately absent: each of them makes\n\
         # every exec fail closed. NoNewPrivileges= is fine with an unprivileged bwrap (it sets\n\
         # no_new_privs for its children itself) but not with a setuid-root bwrap.\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=read-only\n\
         ReadWritePaths={home}\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictSUIDSGID=yes\n\
         RestrictRealtime=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         # AF_NETLINK: bwrap brings up the loopback of a sandbox's network namespace with it.\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK\n\
         SystemCallArchitectures=native\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         Delegate=yes\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        exe = exe.display(),
        home = home.display(),
    )
}

fn install_service(print: bool) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    let exe = std::env::current_exe().map_err(|source| ConfigError::Io {
        action: "finding the comis binary",
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let text = unit(&exe, &home, rustix::process::getuid().as_raw());
    if print {
        return out(&text);
    }
    let path = Path::new(UNIT_PATH);
    std::fs::write(path, text.as_bytes()).map_err(|e| {
        CliError::Usage(format!(
            "writing {UNIT_PATH}: {e} (run it as root, or use --print and install the unit \
             yourself)"
        ))
    })?;
    out(&format!(
        "wrote {UNIT_PATH}\nenable it with: systemctl daemon-reload && systemctl enable --now comis\n"
    ))
}
