//! # comis-sandbox
//!
//! The only crate of comis that starts processes, and the OS sandbox they run in.
//!
//! - [`exec`]: an agent's `system.exec` — policy, env floor, `safe_path` on the working
//!   directory, then bubblewrap with every namespace unshared, seccomp, rlimits and a cgroup.
//!   Exec **fails closed**: without a working sandbox it is disabled unless the operator wrote
//!   `execSandbox.enabled: never`. The network is off unless an agent is configured for
//!   `broker` or `host`.
//! - [`probe`]: what the host can enforce, found by running the real profile at start-up.
//! - [`safe_path`]: the one way an agent path reaches the filesystem.
//! - [`helper`]: operator-configured programs (credential helpers), no shell, empty env.
//! - [`daemon`]: the comis daemon itself, started detached by `comis daemon start`.
//! - [`memory`]: handing the heap's freed pages back to the kernel once start-up is done.
//!
//! ## What this crate guarantees
//! No secret of the daemon reaches a child: every child starts from an empty environment (a
//! broker run adds only the broker's proxy, CA and placeholder variables, never a credential).
//! Every child has a wall timeout that kills its whole tree, an output cap and rlimits. A
//! sandboxed command sees its workspace, read-only system directories and nothing of the
//! host's users, processes, network or `$COMIS_HOME`.
//!
//! ## What it does not guarantee
//! A kernel vulnerability reachable through the syscalls that remain allowed can still break
//! out; the layers narrow that surface, they do not remove it. Disk use inside a workspace is
//! bounded per file only.
//!
//! `unsafe` appears twice, each with a `SAFETY` note: in [`process`] for `pre_exec`, and in
//! [`memory`] for `malloc_trim`.

pub mod cgroup;
pub mod daemon;
pub mod env;
pub mod exec;
pub mod helper;
pub mod limits;
pub mod memory;
pub mod policy;
pub mod probe;
mod process;
pub mod profile;
pub mod safe_path;
pub mod seccomp;

pub use daemon::spawn_daemon;
pub use env::SystemEnv;
pub use exec::{
    CommandPolicy, ExecOutcome, ExecReport, ExecRequest, ExecState, Sandbox, SandboxConfig,
    SandboxMode,
};
pub use helper::{HelperOutput, run_trusted_helper};
pub use limits::Limits;
pub use policy::GuardPolicy;
pub use probe::{HostProbe, LayerStatus};
pub use process::{Exit, Stream};
pub use profile::{BrokerRelay, Network};
pub use safe_path::{OpenMode, PathRejection, PathVerdict, check_path, open_beneath, safe_path};

/// The one error type of this crate. Messages name the thing that failed, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy, the env floor or the command's shape refused the command; it was not run.
    #[error("blocked: {0}")]
    Blocked(String),
    /// A path was refused by `safe_path`.
    #[error("path {path:?} refused: {reason}")]
    PathRejected { path: String, reason: PathRejection },
    /// Exec is disabled on this host (no working sandbox and not `never`).
    #[error("exec is disabled: {0}")]
    ExecDisabled(String),
    /// Invalid configuration (limits, workspace, paths).
    #[error("sandbox configuration: {0}")]
    Config(String),
    /// The seccomp filter could not be built.
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    /// The process could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// Another I/O failure, with what was being done.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}
