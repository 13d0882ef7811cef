//! Resource limits for every process comis starts: the wall clock, the output it may produce,
//! and kernel rlimits (CPU seconds, address space, file size, open files, process count, no
//! core dumps).
//!
//! **Defends against** a command (steered or just buggy) exhausting the host: an endless loop,
//! a runaway allocation, a file that fills the disk, a fork bomb, a flood of output that would
//! fill the daemon's memory and the model's context.
//!
//! **Guarantees.** The rlimits are set in the child between `fork` and `exec` (see
//! [`crate::process`]) and are inherited by everything the command starts. The wall timeout
//! kills the whole process tree. Output past the cap is dropped and replaced by one marker.
//!
//! **Does not** bound the disk a command may fill in its workspace with many files (only the
//! size of each file), nor memory across processes unless a cgroup is available (see
//! [`crate::cgroup`]). `RLIMIT_NPROC` counts every process of the real user (and root is
//! exempt from it), which is why a per-sandbox cgroup `pids.max` is preferred where the host
//! offers one.

use std::time::Duration;

use serde::Serialize;

use crate::SandboxError;

/// Shortest wall timeout accepted (seeds: 100 ms).
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest wall timeout accepted (seeds: 600 s).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// The limits applied to one command. [`Limits::default`] is the secure default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Wall-clock time before the whole process tree is killed (default 120 s).
    pub timeout: Duration,
    /// Bytes of stdout + stderr kept; the rest is dropped behind a marker (default 1 MiB).
    pub output_cap: usize,
    /// `RLIMIT_CPU` per process, in seconds (default 120).
    pub cpu_seconds: u64,
    /// `RLIMIT_AS` per process, in bytes (default 4 GiB).
    pub address_space: u64,
    /// `RLIMIT_FSIZE`: largest file a process may write, in bytes (default 1 GiB).
    pub file_size: u64,
    /// `RLIMIT_NOFILE` (default 1024).
    pub open_files: u64,
    /// Processes (tasks) per sandbox: cgroup `pids.max`, or `RLIMIT_NPROC` without one
    /// (default 256).
    pub processes: u64,
    /// Memory of the whole sandbox where a memory cgroup is available (default 2 GiB).
    pub memory: u64,
    /// Size of the sandbox's private `/tmp` where bubblewrap supports `--size` (default 256 MiB).
    pub tmp_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(120),
            output_cap: 1024 * 1024,
            cpu_seconds: 120,
            address_space: 4 << 30,
            file_size: 1 << 30,
            open_files: 1024,
            processes: 256,
            memory: 2 << 30,
            tmp_size: 256 << 20,
        }
    }
}

impl Limits {
    /// Checks every value is usable; a zero or absurd limit is a configuration error rather
    /// than a silently broken sandbox.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |what: &str| Err(SandboxError::Config(format!("limit out of range: {what}")));
        if self.timeout < MIN_TIMEOUT || self.timeout > MAX_TIMEOUT {
            return bad("timeout must be between 100 ms and 600 s");
        }
        if self.output_cap == 0 || self.output_cap > 64 << 20 {
            return bad("output cap must be between 1 byte and 64 MiB");
        }
        if self.cpu_seconds == 0 {
            return bad("cpu seconds must be at least 1");
        }
        if self.address_space < 64 << 20 {
            return bad("address space must be at least 64 MiB");
        }
        if self.file_size == 0 {
            return bad("file size must be at least 1 byte");
        }
        if self.open_files < 16 {
            return bad("open files must be at least 16");
        }
        if self.processes < 4 {
            return bad("processes must be at least 4");
        }
        if self.memory < 64 << 20 {
            return bad("memory must be at least 64 MiB");
        }
        if self.tmp_size < 1 << 20 {
            return bad("tmp size must be at least 1 MiB");
        }
        Ok(())
    }

    /// The same limits with another wall timeout (clamped to the accepted range).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.clamp(MIN_TIMEOUT, MAX_TIMEOUT);
        self
    }

    /// The rlimits to set in the child. `nproc` is included only when no cgroup limits the
    /// process count (see the module docs).
    pub(crate) fn rlimits(&self, include_nproc: bool) -> RlimitSet {
        use rustix::process::Resource;
        let mut set = RlimitSet::default();
        // CPU: SIGXCPU at the soft limit, SIGKILL a few seconds later at the hard one.
        set.push(
            Resource::Cpu,
            self.cpu_seconds,
            self.cpu_seconds.saturating_add(5),
        );
        set.push(Resource::As, self.address_space, self.address_space);
        set.push(Resource::Fsize, self.file_size, self.file_size);
        set.push(Resource::Nofile, self.open_files, self.open_files);
        // No core dumps: they fill disks and can carry whatever was in memory.
        set.push(Resource::Core, 0, 0);
        if include_nproc {
            set.push(Resource::Nproc, self.processes, self.processes);
        }
        set
    }
}

/// A fixed-size list of rlimits, `Copy` so the pre-exec hook can carry it without allocating.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RlimitSet {
    items: [Option<(rustix::process::Resource, u64, u64)>; 8],
}

impl RlimitSet {
    fn push(&mut self, resource: rustix::process::Resource, soft: u64, hard: u64) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some((resource, soft, hard));
        }
    }

    /// Applies every limit to the calling process. Only raw syscalls: safe between `fork` and
    /// `exec`.
    pub(crate) fn apply(&self) -> std::io::Result<()> {
        for (resource, soft, hard) in self.items.iter().flatten() {
            rustix::process::setrlimit(
                *resource,
                rustix::process::Rlimit {
                    current: Some(*soft),
                    maximum: Some(*hard),
                },
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_issue() {
        let l = Limits::default();
        l.validate().unwrap();
        assert_eq!(l.timeout, Duration::from_secs(120));
        assert_eq!(l.output_cap, 1 << 20);
    }

    #[test]
    fn absurd_values_are_refused() {
        let cases: [fn(&mut Limits); 5] = [
            |l| l.timeout = Duration::ZERO,
            |l| l.timeout = Duration::from_secs(601),
            |l| l.output_cap = 0,
            |l| l.processes = 0,
            |l| l.address_space = 1,
        ];
        for change in cases {
            let mut l = Limits::default();
            change(&mut l);
            assert!(l.validate().is_err(), "{l:?}");
        }
    }

    #[test]
    fn with_timeout_clamps() {
        let l = Limits::default().with_timeout(Duration::from_secs(10_000));
        assert_eq!(l.timeout, MAX_TIMEOUT);
        let l = Limits::default().with_timeout(Duration::ZERO);
        assert_eq!(l.timeout, MIN_TIMEOUT);
    }
}
