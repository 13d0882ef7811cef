//! Starting the comis daemon itself in the background (`comis daemon start`).
//!
//! **Defends against** the daemon staying tied to the terminal that started it: it gets its own
//! process group (a Ctrl-C or hang-up of that terminal does not reach it), `/dev/null` as
//! standard input, the log file as standard output and error, and `/` as working directory
//! (so it keeps no directory busy).
//!
//! **Guarantees.** The program is the path given (the running `comis` binary), executed
//! directly with the arguments given, no shell.
//!
//! **Does not** filter the environment or sandbox the daemon: it is the operator's own trusted
//! program, and it reads its `COMIS_HOME`, `COMIS_MASTER_KEY` and the environment SecretRefs
//! name from the environment it is started with. Never pass agent-controlled text here.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::SandboxError;

/// Starts `program args…` detached, writing both output streams to `log`. The caller owns the
/// returned child (to notice an early exit); dropping it does not stop the daemon.
///
/// # Errors
/// [`SandboxError::Spawn`] when the program cannot be started, [`SandboxError::Io`] when the
/// log file handle cannot be duplicated.
pub fn spawn_daemon(program: &Path, args: &[OsString], log: File) -> Result<Child, SandboxError> {
    let err_log = log.try_clone().map_err(|source| SandboxError::Io {
        what: "duplicating the daemon log file handle".into(),
        source,
    })?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err_log))
        .current_dir("/")
        .process_group(0)
        .spawn()
        .map_err(|source| SandboxError::Spawn {
            program: program.display().to_string(),
            source,
        })
}
