//! The host probe: what this machine can enforce, found by trying it.
//!
//! **Defends against** believing in a sandbox that is not there. The seeds' original looked
//! for `bwrap` on `PATH` and, when the smoke test failed, ran commands unsandboxed with a
//! warning; here exec is disabled instead unless the operator chose `never`.
//!
//! **Guarantees.** `bwrap` is looked for in fixed system locations (never through `PATH`, which
//! an attacker could prepend to) or at the path the operator configured. The smoke test runs
//! the real profile — every namespace, dropped capabilities, the seccomp filters — and reads
//! `/proc/self/status` from inside to confirm the filter and the capability drop are in force.
//! If only the seccomp part fails, the namespaces are re-tested alone so the report says which
//! layer is missing. cgroup support is found by creating (and removing) a test cgroup.
//!
//! **Does not** repeat itself: the daemon probes once at start-up; a host that changes later
//! (bwrap uninstalled) makes each exec fail with the spawn error instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::cgroup::CgroupSupport;
use crate::limits::Limits;
use crate::process::{Exit, Launch, Stream, launch};
use crate::profile::{self, BwrapFeatures, Network, ProfileSpec};
use crate::seccomp;

/// Where bubblewrap is looked for, in order.
pub const BWRAP_LOCATIONS: &[&str] = &["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/// Whether one layer is in force, and why (not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    pub active: bool,
    pub detail: String,
}

impl LayerStatus {
    fn on(detail: impl Into<String>) -> Self {
        LayerStatus {
            active: true,
            detail: detail.into(),
        }
    }
    fn off(detail: impl Into<String>) -> Self {
        LayerStatus {
            active: false,
            detail: detail.into(),
        }
    }
}

/// What the host supports.
#[derive(Debug, Clone, Serialize)]
pub struct HostProbe {
    /// The bubblewrap binary found, if any.
    pub bwrap: Option<PathBuf>,
    pub bwrap_version: Option<String>,
    pub bwrap_features: BwrapFeatures,
    /// Namespaces + capability drop (the bubblewrap smoke test).
    pub namespaces: LayerStatus,
    /// The seccomp filter, confirmed from inside the sandbox.
    pub seccomp: LayerStatus,
    /// Landlock: reported, not applied (see `detail`).
    pub landlock: LayerStatus,
    /// The per-sandbox cgroup controllers usable by this process.
    pub cgroups: CgroupSupport,
    /// The process runs as root (root is exempt from `RLIMIT_NPROC`).
    pub root: bool,
    /// The host looks like a container (`/.dockerenv`, `/run/.containerenv`).
    pub container: bool,
}

impl HostProbe {
    /// Probes the host. `bwrap` overrides the search for the binary.
    pub fn run(bwrap: Option<&Path>) -> HostProbe {
        let found = match bwrap {
            Some(p) => p.is_file().then(|| p.to_path_buf()),
            None => BWRAP_LOCATIONS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
        };
        let cgroups = CgroupSupport::detect();
        let root = rustix::process::geteuid().is_root();
        let container =
            Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists();
        let landlock = landlock_status();
        let Some(bwrap) = found else {
            let missing = LayerStatus::off(format!(
                "bubblewrap not found (looked in {}); install it: apt install bubblewrap",
                BWRAP_LOCATIONS.join(", ")
            ));
            return HostProbe {
                bwrap: None,
                bwrap_version: None,
                bwrap_features: BwrapFeatures::default(),
                namespaces: missing.clone(),
                seccomp: LayerStatus::off("needs bubblewrap"),
                landlock,
                cgroups,
                root,
                container,
            };
        };
        let version = capture(&bwrap, &["--version"]).map(|s| s.trim().to_owned());
        let features = capture(&bwrap, &["--help"])
            .map(|h| BwrapFeatures::from_help(&h))
            .unwrap_or_default();
        let (namespaces, seccomp) = smoke(&bwrap, features);
        HostProbe {
            bwrap: Some(bwrap),
            bwrap_version: version.ok(),
            bwrap_features: features,
            namespaces,
            seccomp,
            landlock,
            cgroups,
            root,
            container,
        }
    }

    /// How the process count of a sandbox is limited on this host.
    pub fn process_limit(&self) -> LayerStatus {
        match (&self.cgroups.pids, self.root) {
            (Some(c), _) => {
                LayerStatus::on(format!("cgroup pids.max per sandbox ({})", c.dir.display()))
            }
            (None, false) => LayerStatus::on(
                "RLIMIT_NPROC (counts every process of this user: run comis as its own user)",
            ),
            (None, true) => LayerStatus::off(
                "none: root is exempt from RLIMIT_NPROC and no cgroup pids controller is \
                 writable; a fork bomb is stopped only by the timeout",
            ),
        }
    }
}

/// Runs `bwrap ARGS` unsandboxed (trusted, fixed arguments) and returns its stdout.
fn capture(bwrap: &Path, args: &[&str]) -> Result<String, String> {
    let mut out = Vec::new();
    let finished = launch(
        Launch {
            program: bwrap.to_path_buf(),
            args: args.iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: Some(PathBuf::from("/")),
            stdin: None,
            rlimits: Limits::default().rlimits(false),
            pass_fds: Vec::new(),
            cgroup_procs: Vec::new(),
            timeout: Duration::from_secs(5),
            output_cap: 64 * 1024,
        },
        None,
        &mut |s, d| {
            if s == Stream::Stdout {
                out.extend_from_slice(d);
            }
        },
    )
    .map_err(|e| e.to_string())?;
    if finished.exit.success() {
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        Err(format!("exited with {:?}", finished.exit))
    }
}

/// The smoke test: the full profile with seccomp, then (if that failed) without.
fn smoke(bwrap: &Path, features: BwrapFeatures) -> (LayerStatus, LayerStatus) {
    let programs = match seccomp::build() {
        Ok(p) => Some(p),
        Err(e) => {
            let ns = run_smoke(bwrap, features, None);
            return (
                ns_status(ns),
                LayerStatus::off(format!("filter not built: {e}")),
            );
        }
    };
    let with = run_smoke(
        bwrap,
        features,
        programs
            .as_ref()
            .map(|p| (p.deny.as_slice(), p.clone3.as_slice())),
    );
    match with {
        Ok(status) => {
            let filters = field(&status, "Seccomp_filters").unwrap_or("?").to_owned();
            let seccomp = if field(&status, "Seccomp") == Some("2") {
                LayerStatus::on(format!(
                    "filter mode, {filters} filter(s), {} syscalls denied, clone3 → ENOSYS",
                    seccomp::DENIED_SYSCALLS.len()
                ))
            } else {
                LayerStatus::off("bubblewrap accepted the filter but it is not in force")
            };
            (ns_status(Ok(status)), seccomp)
        }
        Err(e) => {
            let ns = run_smoke(bwrap, features, None);
            let seccomp = if ns.is_ok() {
                LayerStatus::off(format!("bubblewrap refused the filter: {e}"))
            } else {
                LayerStatus::off("needs the namespaces")
            };
            (ns_status(ns), seccomp)
        }
    }
}

fn ns_status(result: Result<String, String>) -> LayerStatus {
    match result {
        Ok(status) => {
            let caps = field(&status, "CapEff").unwrap_or("?");
            if caps.trim_start_matches('0').is_empty() {
                LayerStatus::on(
                    "user, mount, pid, ipc, uts, cgroup, net namespaces; no capabilities",
                )
            } else {
                LayerStatus::off(format!("sandbox runs with capabilities {caps}"))
            }
        }
        Err(e) => LayerStatus::off(format!("smoke test failed: {e}")),
    }
}

/// Runs `cat /proc/self/status` in the real profile (no workspace) and returns the output.
fn run_smoke(
    bwrap: &Path,
    features: BwrapFeatures,
    seccomp: Option<(&[u8], &[u8])>,
) -> Result<String, String> {
    let spec = ProfileSpec {
        workspace: None,
        cwd: None,
        network: &Network::None,
        hidden: &[],
        read_only: &[],
        features,
        tmp_size: Limits::default().tmp_size,
        seccomp,
        relay: None,
    };
    let built = profile::build(&spec).map_err(|e| e.to_string())?;
    let mut args = built.args;
    args.push("/bin/cat".into());
    args.push("/proc/self/status".into());
    let mut out = Vec::new();
    let mut err = Vec::new();
    let finished = launch(
        Launch {
            program: bwrap.to_path_buf(),
            args,
            env: vec![("PATH".into(), crate::env::SANDBOX_PATH.into())],
            cwd: Some(PathBuf::from("/")),
            stdin: None,
            rlimits: Limits::default().rlimits(false),
            pass_fds: built.fds,
            cgroup_procs: Vec::new(),
            timeout: Duration::from_secs(5),
            output_cap: 64 * 1024,
        },
        None,
        &mut |s, d| match s {
            Stream::Stdout => out.extend_from_slice(d),
            Stream::Stderr => err.extend_from_slice(d),
        },
    )
    .map_err(|e| e.to_string())?;
    match finished.exit {
        Exit::Code(0) => Ok(String::from_utf8_lossy(&out).into_owned()),
        other => Err(format!(
            "exit {}: {}",
            other.shell_code(),
            String::from_utf8_lossy(&err)
                .trim()
                .chars()
                .take(300)
                .collect::<String>()
        )),
    }
}

/// The value of `Name:` in a `/proc/PID/status` text.
fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Landlock is reported, not applied: a Landlock domain forbids `mount(2)`, so it cannot be
/// put on bubblewrap (which must mount to build the sandbox), and comis runs no helper inside
/// the sandbox to apply it after. seccomp is the second kernel layer instead.
fn landlock_status() -> LayerStatus {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").ok();
    let kernel = match lsms {
        Some(l) if l.split(',').any(|m| m.trim() == "landlock") => "enabled in this kernel",
        Some(_) => "not enabled in this kernel",
        None => "kernel support unknown (securityfs not mounted)",
    };
    LayerStatus::off(format!(
        "not applied ({kernel}): a Landlock domain forbids the mounts bubblewrap makes; \
         seccomp is the second layer"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn status_fields_parse() {
        let s = "Name:\tcat\nSeccomp:\t2\nCapEff:\t0000000000000000\n";
        assert_eq!(field(s, "Seccomp"), Some("2"));
        assert_eq!(field(s, "Missing"), None);
        assert!(ns_status(Ok(s.into())).active);
        assert!(!ns_status(Ok("CapEff:\t000001ffffffffff\n".into())).active);
    }
}
