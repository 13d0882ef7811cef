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

/// Starts `program args…` detached, writing both output streams to `log`, with `env` set on top
/// of the inherited environment (e.g. an absolute `COMIS_HOME`: the daemon runs in `/`, where a
/// relative one would name another directory). The caller owns the returned child (to notice
/// an early exit); dropping it does not stop the daemon.
///
/// # Errors
/// [`SandboxError::Spawn`] when the program cannot be started, [`SandboxError::Io`] when the
/// log file handle cannot be duplicated.
pub fn spawn_daemon(
    program: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    log: File,
) -> Result<Child, SandboxError> {
    let err_log = log.try_clone().map_err(|source| SandboxError::Io {
        what: "duplicating the daemon log file handle".into(),
        source,
    })?;
    Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn detached_child_writes_to_the_log_in_its_own_group() {
        let t = tempfile::tempdir().unwrap();
        let log_path = t.path().join("log");
        let log = File::create(&log_path).unwrap();
        let args: Vec<OsString> = [
            "-c",
            "echo out; echo err >&2; cut -d' ' -f5 /proc/$$/stat; pwd; read x || echo eof; echo $MARK",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let env = [(OsString::from("MARK"), OsString::from("set"))];
        let mut child = spawn_daemon(Path::new("/bin/sh"), &args, &env, log).unwrap();
        let pid = child.id();
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert!(lines.contains(&"out") && lines.contains(&"err"), "{text}");
        // Its own process group (leader = itself), `/` as cwd, /dev/null as stdin.
        assert!(lines.contains(&pid.to_string().as_str()), "{text}");
        assert!(lines.contains(&"/") && lines.contains(&"eof"), "{text}");
        assert!(lines.contains(&"set"), "{text}");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let t = tempfile::tempdir().unwrap();
        let log = File::create(t.path().join("log")).unwrap();
        let e = spawn_daemon(Path::new("/nonexistent/comis"), &[], &[], log).unwrap_err();
        assert!(matches!(e, SandboxError::Spawn { .. }), "{e}");
    }
}
