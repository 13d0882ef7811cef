//! The one place comis starts a process: fork, apply the limits in the child, exec, then
//! collect output under a cap and a wall clock, and kill the whole tree when time is up.
//!
//! **Defends against** a child that outlives its time (and its children that do), output
//! floods, descriptors leaking into children, and a child that survives the daemon.
//!
//! **Guarantees.** The child starts with exactly the environment it is given (the daemon's own
//! is cleared), in its own process group, with `PR_SET_PDEATHSIG = SIGKILL`, the rlimits, the
//! cgroup (if any) joined and only the listed descriptors inherited — all set between `fork`
//! and `exec` with raw syscalls. Output is delivered in order per stream as it arrives, up to
//! the cap, then one marker. At the deadline the process group (and the cgroup) is killed with
//! `SIGKILL`; a sandboxed tree also dies with its PID namespace when bubblewrap does.
//!
//! **Does not** interpret the output or the exit status.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fd::{AsFd, OwnedFd};
use rustix::io::FdFlags;
use rustix::process::{Pid, PidfdFlags, Signal};
use serde::Serialize;

use crate::SandboxError;
use crate::cgroup::{SandboxCgroup, join_self};
use crate::limits::RlimitSet;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// The wall timeout expired and the tree was killed.
    TimedOut,
}

impl Exit {
    /// The conventional shell status: the code, `128 + signal`, or 124 for a timeout (as
    /// `timeout(1)`).
    pub fn shell_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::TimedOut => 124,
        }
    }

    /// Whether the command exited with 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

/// How long output is still read after the child exited (descendants outside the sandbox may
/// hold the pipes open).
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Everything needed to start one process.
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub stdin: Option<Vec<u8>>,
    pub rlimits: RlimitSet,
    /// Descriptors the child inherits (their `FD_CLOEXEC` is cleared in the child only).
    pub pass_fds: Vec<OwnedFd>,
    /// `cgroup.procs` descriptors the child joins before `exec`.
    pub cgroup_procs: Vec<OwnedFd>,
    pub timeout: Duration,
    pub output_cap: usize,
}

/// What [`launch`] reports.
#[derive(Debug)]
pub(crate) struct Finished {
    pub exit: Exit,
    pub truncated: bool,
    pub elapsed: Duration,
}

/// Starts `l` and collects its output into `sink` until it ends or its time is up.
pub(crate) fn launch(
    l: Launch,
    cgroup: Option<&SandboxCgroup>,
    sink: &mut dyn FnMut(Stream, &[u8]),
) -> Result<Finished, SandboxError> {
    let start = Instant::now();
    let program_name = l.program.display().to_string();
    let mut cmd = Command::new(&l.program);
    cmd.args(&l.args)
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if l.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &l.cwd {
        cmd.current_dir(cwd);
    }
    let rlimits = l.rlimits;
    let pass_fds = l.pass_fds;
    let cgroup_procs = l.cgroup_procs;
    let parent = rustix::process::getpid();
    // SAFETY: `pre_exec` runs in the forked child before `exec`, where only async-signal-safe
    // work is allowed. The hook makes raw system calls through rustix (prctl, getppid,
    // setrlimit, fcntl, write) on values captured before the fork; it allocates nothing, takes
    // no lock and touches no shared state.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("parent exited before exec"));
            }
            join_self(&cgroup_procs)?;
            rlimits.apply()?;
            for fd in &pass_fds {
                rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            }
            Ok(())
        });
    }
    let spawned = cmd.spawn();
    // The hook (and with it the parent's copies of the passed descriptors) goes now.
    drop(cmd);
    let mut child = spawned.map_err(|source| SandboxError::Spawn {
        program: program_name,
        source,
    })?;

    let writer = match (child.stdin.take(), l.stdin) {
        (Some(mut pipe), Some(data)) => Some(std::thread::spawn(move || {
            // A child that does not read its input gets EPIPE here; that is not an error.
            let _ = pipe.write_all(&data);
        })),
        _ => None,
    };

    let mut collector = Collector::new(l.output_cap, sink);
    let outcome = collect(&mut child, start + l.timeout, cgroup, &mut collector);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let exit = match outcome {
        Ok(exit) => exit,
        Err(e) => {
            kill_tree(&child, cgroup);
            let _ = child.wait();
            return Err(SandboxError::Io {
                what: "collecting the output of a command".into(),
                source: e,
            });
        }
    };
    Ok(Finished {
        exit,
        truncated: collector.truncated,
        elapsed: start.elapsed(),
    })
}

/// Delivers output to the sink up to the cap, then one marker.
struct Collector<'a> {
    cap: usize,
    delivered: usize,
    truncated: bool,
    sink: &'a mut dyn FnMut(Stream, &[u8]),
}

impl<'a> Collector<'a> {
    fn new(cap: usize, sink: &'a mut dyn FnMut(Stream, &[u8])) -> Self {
        Collector {
            cap,
            delivered: 0,
            truncated: false,
            sink,
        }
    }

    fn deliver(&mut self, stream: Stream, data: &[u8]) {
        if self.truncated || data.is_empty() {
            return;
        }
        let room = self.cap - self.delivered;
        if data.len() <= room {
            (self.sink)(stream, data);
            self.delivered += data.len();
        } else {
            (self.sink)(stream, &data[..room]);
            self.delivered = self.cap;
            self.truncated = true;
            let marker = format!("\n[comis: output truncated at {} bytes]\n", self.cap);
            (self.sink)(stream, marker.as_bytes());
        }
    }
}

fn collect(
    child: &mut Child,
    deadline: Instant,
    cgroup: Option<&SandboxCgroup>,
    out: &mut Collector<'_>,
) -> std::io::Result<Exit> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let pidfd =
        child_pid(child).and_then(|pid| rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok());
    let mut buf = vec![0u8; 64 * 1024];
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut drain_until: Option<Instant> = None;

    loop {
        if status.is_none() {
            if let Some(s) = child.try_wait()? {
                status = Some(s);
                // Leftovers in the group (a backgrounded job) go with the leader.
                kill_group(child);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            } else if Instant::now() >= deadline {
                kill_tree(child, cgroup);
                status = Some(child.wait()?);
                timed_out = true;
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
        }
        let open = stdout.is_some() || stderr.is_some();
        if status.is_some() && (!open || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let until = match (status, drain_until) {
            (Some(_), Some(d)) => d,
            _ => deadline,
        };
        // Without a pidfd the exit is noticed on a short tick instead.
        let tick = if pidfd.is_some() {
            until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(10).min(until.saturating_duration_since(Instant::now()))
        };
        let timeout = Timespec {
            tv_sec: i64::try_from(tick.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(tick.subsec_nanos()),
        };
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(3);
        let mut kinds: Vec<Option<Stream>> = Vec::with_capacity(3);
        if let Some(s) = &stdout {
            fds.push(PollFd::new(s, PollFlags::IN));
            kinds.push(Some(Stream::Stdout));
        }
        if let Some(s) = &stderr {
            fds.push(PollFd::new(s, PollFlags::IN));
            kinds.push(Some(Stream::Stderr));
        }
        if status.is_none()
            && let Some(p) = &pidfd
        {
            fds.push(PollFd::new(p, PollFlags::IN));
            kinds.push(None);
        }
        if fds.is_empty() {
            // Output closed, child still running: wait for it (or the deadline) on a tick.
            std::thread::sleep(Duration::from_millis(5).min(tick));
            continue;
        }
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<Stream> = fds
            .iter()
            .zip(&kinds)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .filter_map(|(_, k)| *k)
            .collect();
        drop(fds);
        for stream in ready {
            let pipe: &mut dyn Read = match stream {
                Stream::Stdout => match stdout.as_mut() {
                    Some(p) => p,
                    None => continue,
                },
                Stream::Stderr => match stderr.as_mut() {
                    Some(p) => p,
                    None => continue,
                },
            };
            match pipe.read(&mut buf) {
                Ok(0) => match stream {
                    Stream::Stdout => stdout = None,
                    Stream::Stderr => stderr = None,
                },
                Ok(n) => out.deliver(stream, &buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    if timed_out {
        return Ok(Exit::TimedOut);
    }
    let status = match status {
        Some(s) => s,
        None => child.wait()?,
    };
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    })
}

fn child_pid(child: &Child) -> Option<Pid> {
    Pid::from_raw(i32::try_from(child.id()).ok()?)
}

/// `SIGKILL` to the child's process group (it leads its own group).
fn kill_group(child: &Child) {
    if let Some(pid) = child_pid(child) {
        let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    }
}

/// Kills everything the child started: its process group, the child itself and its cgroup.
fn kill_tree(child: &Child, cgroup: Option<&SandboxCgroup>) {
    kill_group(child);
    if let Some(pid) = child_pid(child) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
    }
    if let Some(cg) = cgroup {
        cg.kill_all();
    }
}

/// A pipe holding `data` for the child to read (`--add-seccomp-fd`, `--ro-bind-data`): written
/// and closed here, so the returned read end yields exactly `data` then EOF. Both ends are
/// close-on-exec; [`Launch::pass_fds`] clears that in the child only.
pub(crate) fn data_pipe(data: &[u8]) -> Result<OwnedFd, SandboxError> {
    let io = |what: &str, e: std::io::Error| SandboxError::Io {
        what: what.into(),
        source: e,
    };
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io("creating a pipe", e.into()))?;
    // A pipe holds 64 KiB by default; every payload here is a few KiB at most. Refuse rather
    // than block if that ever changes.
    if data.len() > 60 * 1024 {
        return Err(io(
            "writing sandbox data",
            std::io::Error::other("payload larger than a pipe buffer"),
        ));
    }
    let mut file = std::fs::File::from(write);
    file.write_all(data)
        .map_err(|e| io("writing sandbox data to a pipe", e))?;
    drop(file);
    let _ = read.as_fd();
    Ok(read)
}
