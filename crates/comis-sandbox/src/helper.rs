//! Trusted helpers: programs the *operator* configured (a SecretRef `exec` credential helper
//! such as a password-manager CLI), run without a shell and without the agent sandbox.
//!
//! **Defends against** a helper inheriting the daemon's environment, hanging forever, flooding
//! memory, leaving a core dump with a secret in it, or leaving its answer in freed memory.
//!
//! **Guarantees.** `argv` is executed directly (no shell, so no quoting or injection), with an
//! empty environment plus a system `PATH`, stdin as given, working directory `/`, the default
//! rlimits with core dumps off, its own process group killed at the timeout, and output capped
//! at [`HELPER_OUTPUT_CAP`]. Stdout is returned in a zeroizing buffer allocated once at full
//! size (so no reallocation leaves a copy behind), and the read buffer is wiped.
//!
//! **Does not** sandbox the helper: it is trusted configuration, and a credential helper
//! usually needs the operator's files and network. Never pass agent-controlled text here.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::SandboxError;
use crate::limits::{Limits, MAX_TIMEOUT, MIN_TIMEOUT};
use crate::process::{Exit, Launch, Stream, launch};

/// Bytes of stdout + stderr kept from a helper.
pub const HELPER_OUTPUT_CAP: usize = 1024 * 1024;
/// Room for the truncation marker after the cap.
const MARKER_ROOM: usize = 128;

/// What a helper produced.
#[derive(Debug)]
pub struct HelperOutput {
    pub exit: Exit,
    /// Stdout, wiped when dropped.
    pub stdout: Zeroizing<Vec<u8>>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

/// Runs the operator-configured program `argv` with `stdin`, killed after `timeout` (clamped
/// to 100 ms – 600 s).
pub fn run_trusted_helper(
    argv: &[String],
    stdin: &[u8],
    timeout: Duration,
) -> Result<HelperOutput, SandboxError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SandboxError::Config("helper command is empty".into()));
    };
    if program.is_empty() || argv.iter().any(|a| a.contains('\0')) {
        return Err(SandboxError::Config(
            "helper command has an empty program or a NUL byte".into(),
        ));
    }
    let limits = Limits::default();
    let mut stdout = Zeroizing::new(Vec::with_capacity(HELPER_OUTPUT_CAP + MARKER_ROOM));
    let mut stderr = Vec::new();
    let finished = launch(
        Launch {
            program: program.into(),
            args: args.iter().map(Into::into).collect(),
            env: vec![("PATH".into(), crate::env::SANDBOX_PATH.into())],
            cwd: Some("/".into()),
            stdin: Some(stdin.to_vec()),
            rlimits: limits.rlimits(false),
            pass_fds: Vec::new(),
            cgroup_procs: Vec::new(),
            timeout: timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT),
            output_cap: HELPER_OUTPUT_CAP,
        },
        None,
        &mut |s, d| match s {
            // Within capacity by construction (cap + marker), so this never reallocates.
            Stream::Stdout => stdout.extend_from_slice(d),
            Stream::Stderr => stderr.extend_from_slice(d),
        },
    )?;
    Ok(HelperOutput {
        exit: finished.exit,
        stdout,
        stderr,
        truncated: finished.truncated,
    })
}
