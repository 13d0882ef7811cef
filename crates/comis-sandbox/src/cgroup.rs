//! Per-sandbox control groups: an exact process-count limit (`pids.max`) and a memory limit for
//! everything one command starts, on hosts where the daemon may create cgroups.
//!
//! **Defends against** a fork bomb or a memory hog that rlimits alone cannot stop:
//! `RLIMIT_NPROC` counts every process of the real user (and root is exempt from it), and
//! `RLIMIT_AS` is per process. A cgroup counts exactly the sandbox's tasks, whoever they run as.
//!
//! **Guarantees.** When a [`CgroupSupport`] was found at start-up, each command gets a fresh
//! cgroup under the daemon's own (v2: one directory; v1: one per hierarchy), with its limits
//! written before the command starts; the child moves itself into it between `fork` and
//! `exec`, so no descendant is ever outside it. A cgroup is reused by a later command only once
//! it is empty (creating one costs milliseconds on some kernels); on drop, whatever is left in
//! it is killed and the directory removed.
//!
//! **Does not** create hierarchies or enable controllers: on cgroup v2 the daemon's cgroup
//! must already delegate `pids` (and `memory`) to its children (systemd `Delegate=yes`, or a
//! root daemon on a host that enabled them). Where nothing is available, `probe` says so and
//! the process limit falls back to `RLIMIT_NPROC`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use serde::Serialize;

use crate::limits::Limits;

/// Prefix of the cgroups comis creates (so stale ones can be found and removed).
const PREFIX: &str = "comis-sbx-";

/// Which cgroup version a controller was found under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    V1,
    V2,
}

/// One controller the daemon can use: where its children are created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControllerDir {
    pub controller: &'static str,
    pub version: CgroupVersion,
    pub dir: PathBuf,
}

/// The cgroup controllers usable for sandboxes on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupSupport {
    pub pids: Option<ControllerDir>,
    pub memory: Option<ControllerDir>,
}

impl CgroupSupport {
    /// Finds the daemon's cgroups and keeps each controller only if a child cgroup can really
    /// be created there (a write test, removed at once).
    pub fn detect() -> CgroupSupport {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut support = CgroupSupport::default();
        for controller in ["pids", "memory"] {
            let found = find_controller(&mountinfo, &membership, controller).filter(writable);
            if let Some(c) = &found {
                remove_stale(&c.dir);
            }
            match controller {
                "pids" => support.pids = found,
                _ => support.memory = found,
            }
        }
        support
    }

    /// Whether the process count is limited by a cgroup (otherwise `RLIMIT_NPROC` is used).
    pub fn limits_processes(&self) -> bool {
        self.pids.is_some()
    }

    /// Creates the cgroup(s) of one command with its limits.
    pub(crate) fn create(&self, limits: &Limits) -> std::io::Result<SandboxCgroup> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut group = SandboxCgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for (controller, value) in [
            (&self.pids, limits.processes),
            (&self.memory, limits.memory),
        ] {
            let Some(c) = controller else { continue };
            let dir = c.dir.join(&name);
            if !group.dirs.contains(&dir) {
                fs::create_dir(&dir)?;
                group.dirs.push(dir.clone());
                // v1: the child writes `0` to `tasks`, which moves only the calling thread
                // (after `fork` the child's only one, so the whole process) and lets the
                // kernel skip the global threadgroup lock that a `cgroup.procs` write takes:
                // that lock waits for an RCU grace period, 10–20 ms on a loaded host, on
                // every spawn. v2 has no such file for domain cgroups, so `cgroup.procs`.
                let join_file = match c.version {
                    CgroupVersion::V1 => "tasks",
                    CgroupVersion::V2 => "cgroup.procs",
                };
                group.procs.push(rustix::fs::open(
                    dir.join(join_file),
                    OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
            }
            let file = match (c.controller, c.version) {
                ("pids", _) => "pids.max",
                (_, CgroupVersion::V2) => "memory.max",
                (_, CgroupVersion::V1) => "memory.limit_in_bytes",
            };
            fs::write(dir.join(file), value.to_string())?;
            if c.controller == "memory" && c.version == CgroupVersion::V2 {
                // Keep the limit meaningful: no escaping into swap.
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
        }
        Ok(group)
    }
}

/// The live cgroup(s) of one command. Dropping it kills what is left and removes it.
#[derive(Debug)]
pub(crate) struct SandboxCgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<OwnedFd>,
}

impl SandboxCgroup {
    /// The descriptors the child writes `0` to (itself) before `exec`: `tasks` on v1,
    /// `cgroup.procs` on v2.
    pub(crate) fn procs_fds(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.procs.iter().map(|fd| fd.try_clone()).collect()
    }

    /// Whether no task is left in any of its directories (so it can be reused).
    pub(crate) fn is_empty(&self) -> bool {
        self.dirs.iter().all(|dir| {
            fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|l| l.trim().is_empty())
        })
    }

    /// Kills every task still in the cgroup.
    pub(crate) fn kill_all(&self) {
        for dir in &self.dirs {
            if fs::write(dir.join("cgroup.kill"), "1").is_ok() {
                continue;
            }
            if let Ok(list) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in list.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    }
                }
            }
        }
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.dirs {
            // Killed tasks take a moment to leave; rmdir fails with EBUSY until they have.
            for attempt in 0..100u64 {
                if fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                if attempt % 10 == 9 {
                    self.kill_all();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Writes `0` (the caller) into each join file (`tasks` on v1, `cgroup.procs` on v2). Called
/// between `fork` and `exec`, where the child has a single thread, so moving the calling
/// thread moves the whole process. Only `write(2)`: async-signal-safe.
pub(crate) fn join_self(procs: &[OwnedFd]) -> std::io::Result<()> {
    for fd in procs {
        rustix::io::write(fd, b"0")?;
    }
    Ok(())
}

/// Finds where `controller` lives for this process, from `/proc/self/mountinfo` and
/// `/proc/self/cgroup`.
fn find_controller(
    mountinfo: &str,
    membership: &str,
    controller: &'static str,
) -> Option<ControllerDir> {
    // v1 first: on hybrid hosts the controllers live there, not in the (empty) v2 tree.
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mount)) = (pre.get(3), pre.get(4)) else {
            continue;
        };
        let (Some(fstype), Some(opts)) = (post.first(), post.get(2)) else {
            continue;
        };
        if *fstype == "cgroup" && opts.split(',').any(|o| o == controller) {
            let path = membership.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',').any(|c| c == controller).then_some(path)
            })?;
            let dir = join_under(mount, root, path)?;
            return Some(ControllerDir {
                controller,
                version: CgroupVersion::V1,
                dir,
            });
        }
    }
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        if post.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let (Some(root), Some(mount)) = (pre.get(3), pre.get(4)) else {
            continue;
        };
        let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = join_under(mount, root, path)?;
        let delegated = fs::read_to_string(dir.join("cgroup.subtree_control")).ok()?;
        if delegated.split_whitespace().any(|c| c == controller) {
            return Some(ControllerDir {
                controller,
                version: CgroupVersion::V2,
                dir,
            });
        }
    }
    None
}

/// The directory of cgroup `path` under a mount whose root is `root` (both as the kernel
/// prints them; mount points with escaped characters are not supported).
fn join_under(mount: &str, root: &str, path: &str) -> Option<PathBuf> {
    if mount.contains('\\') {
        return None;
    }
    let rel = if root == "/" {
        path
    } else {
        path.strip_prefix(root).unwrap_or(path)
    };
    let mut dir = PathBuf::from(mount);
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            return None;
        }
        dir.push(part);
    }
    dir.is_dir().then_some(dir)
}

/// Whether a child cgroup can be created (and removed) in `c.dir`.
fn writable(c: &ControllerDir) -> bool {
    let probe = c.dir.join(format!("{PREFIX}probe-{}", std::process::id()));
    if fs::create_dir(&probe).is_err() {
        return false;
    }
    let ok = fs::OpenOptions::new()
        .write(true)
        .open(probe.join(match c.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        }))
        .and_then(|mut f| f.flush())
        .is_ok();
    let _ = fs::remove_dir(&probe);
    ok
}

/// Removes empty cgroups left by a comis process that no longer exists.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let owner = rest.split('-').next().unwrap_or("");
        let alive = owner
            .parse::<u32>()
            .is_ok_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive || owner == "probe" {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const HYBRID: &str = "\
35 25 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
40 35 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 35 0:36 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_v1_controller_paths() {
        let membership = "8:pids:/\n4:memory:/x/y\n0::/\n";
        let c = find_controller(HYBRID, membership, "pids").unwrap();
        assert_eq!(c.version, CgroupVersion::V1);
        assert_eq!(c.dir, PathBuf::from("/sys/fs/cgroup/pids"));
    }

    #[test]
    fn hostile_membership_paths_are_refused() {
        assert_eq!(join_under("/sys/fs/cgroup/pids", "/", "/../../etc"), None);
        assert_eq!(join_under("/a\\040b", "/", "/"), None);
    }
}
