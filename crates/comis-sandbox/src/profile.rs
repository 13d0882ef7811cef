//! The bubblewrap profile: the exact argument list that puts a command in its sandbox.
//!
//! **Defends against** a command reading or changing anything on the host beyond its
//! workspace: other users' and the daemon's files (`$COMIS_HOME`: vault, master key, database,
//! config), SSH keys, `/etc/shadow`, other processes (their environment, signals, ptrace), the
//! network, the host's hostname, IPC and cgroups.
//!
//! **Guarantees.** Every namespace is unshared (user, mount, pid, ipc, uts, cgroup, and net
//! unless `network: host`); nested user namespaces are disabled where bubblewrap can; all
//! capabilities are dropped and the command runs as an unprivileged uid (1000, "agent") mapped
//! to the daemon's; it dies with its parent and runs in a new session (no terminal injection).
//! The filesystem is an empty tmpfs holding only: read-only system directories (`/usr`, `/bin`,
//! `/sbin`, `/lib*`), a minimal read-only subset of `/etc` (loader cache, certificates,
//! alternatives, time zone; `resolv.conf`/`hosts` only with network), a synthesized
//! `/etc/passwd` and `/etc/group`, a fresh `/proc` of its own PID namespace, a minimal `/dev`,
//! a private size-limited `/tmp`, the workspace read-write at its real path, and the
//! operator's extra read-only paths; in `network: broker` mode also the broker's socket and,
//! with a [`BrokerRelay`], the `comis` binary and the broker CA (read-only, at fixed paths
//! under `/run/comis`), with the relay started before the command. Each hidden path (the daemon passes `$COMIS_HOME`'s
//! secrets) that falls inside a bound path is masked (an empty read-only tmpfs or `/dev/null`
//! over it); a bound path equal to a hidden one, `/` or a system directory is refused. The
//! seccomp filters are attached.
//!
//! **Does not** hide what is inside the workspace from the command (that is its purpose), nor
//! limit disk use inside it (see [`crate::limits`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rustix::fd::{AsRawFd, OwnedFd};
use serde::Serialize;

use crate::SandboxError;
use crate::env::{SANDBOX_GID, SANDBOX_UID, SANDBOX_USER};
use crate::process::data_pipe;

/// Where the credential broker's socket appears inside a `network: broker` sandbox.
pub const BROKER_SOCKET_IN_SANDBOX: &str = "/run/comis/broker.sock";
/// Where the broker's CA certificate appears (read-only) inside a `network: broker` sandbox
/// with a [`BrokerRelay`]; the CA bundle variables of the broker's environment name it.
pub const BROKER_CA_IN_SANDBOX: &str = "/run/comis/broker-ca.pem";
/// Where the relay program (the `comis` binary) appears, read-only.
pub const RELAY_PROGRAM_IN_SANDBOX: &str = "/run/comis/comis";
/// The loopback address the relay listens on inside the sandbox (the proxy variables' host).
pub const RELAY_LISTEN: &str = "127.0.0.1:3128";
/// Largest broker CA certificate accepted, in bytes.
pub const MAX_CA_PEM_BYTES: usize = 32 * 1024;

/// What a `network: broker` sandbox needs to give its command a working HTTPS proxy: the
/// relay program (the daemon's own `comis` binary, run as `comis broker-relay`) and the
/// broker's CA certificate. Daemon configuration, never an agent's.
///
/// With it, the profile binds the program and the certificate read-only at fixed paths
/// ([`RELAY_PROGRAM_IN_SANDBOX`], [`BROKER_CA_IN_SANDBOX`]) and starts the relay before the
/// command, which runs only once the relay listens. The relay needs no reaping: the command
/// is the sandbox's main process, and when it ends bubblewrap's PID namespace ends with it,
/// killing the relay. Without it, broker mode offers only the bare socket.
#[derive(Debug, Clone)]
pub struct BrokerRelay {
    program: PathBuf,
    ca_pem: String,
}

impl BrokerRelay {
    /// `program` is the `comis` binary (canonicalized; must be a regular file), `ca_pem` the
    /// broker CA certificate in PEM. The certificate is handed to bubblewrap as data, never as
    /// a host path, so no other host file can be exposed through it; it must hold
    /// certificates only (a private key is refused).
    ///
    /// # Errors
    /// [`SandboxError::Config`] naming what is wrong.
    pub fn new(program: &Path, ca_pem: &str) -> Result<BrokerRelay, SandboxError> {
        let program = std::fs::canonicalize(program)
            .ok()
            .filter(|p| p.is_file())
            .ok_or_else(|| {
                SandboxError::Config(format!(
                    "broker relay program {} is not a file",
                    program.display()
                ))
            })?;
        if ca_pem.len() > MAX_CA_PEM_BYTES
            || !ca_pem
                .trim_start()
                .starts_with("-----BEGIN CERTIFICATE-----")
            || ca_pem.contains("PRIVATE KEY")
            || ca_pem.contains('\0')
        {
            return Err(SandboxError::Config(
                "the broker CA must be PEM certificates only (no private key), at most 32 KiB"
                    .into(),
            ));
        }
        Ok(BrokerRelay {
            program,
            ca_pem: ca_pem.to_owned(),
        })
    }

    /// The relay program on the host.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// The words after bubblewrap's `--` for a broker sandbox with a relay: a POSIX `sh` starts
/// the relay in the background and waits, through a command substitution, for its `ready`
/// line and the end of its output (the relay closes its stdout once listening); then it
/// `exec`s the real command, which keeps the sandbox's stdin, stdout and stderr. If the relay
/// does not come up the command is not run (exit 125).
pub(crate) fn relay_wrapper(command: Vec<OsString>) -> Vec<OsString> {
    let script = format!(
        "r=$(\"$0\" broker-relay --listen {RELAY_LISTEN} --socket {BROKER_SOCKET_IN_SANDBOX} \
         --ready </dev/null &); \
         [ \"$r\" = ready ] || {{ echo 'comis: the broker relay did not start' >&2; exit 125; }}; \
         exec \"$@\""
    );
    let mut words: Vec<OsString> = vec![
        "/bin/sh".into(),
        "-c".into(),
        script.into(),
        RELAY_PROGRAM_IN_SANDBOX.into(),
    ];
    words.extend(command);
    words
}

/// The network a sandboxed command gets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "socket")]
pub enum Network {
    /// No network at all: a private namespace with only loopback (the default).
    #[default]
    None,
    /// No network except the credential broker, whose Unix socket (this host path) is bound
    /// at [`BROKER_SOCKET_IN_SANDBOX`]. Chosen explicitly per agent.
    Broker(PathBuf),
    /// The host's network. Chosen explicitly per agent.
    Host,
}

impl Network {
    /// The name used in config and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Network::None => "none",
            Network::Broker(_) => "broker",
            Network::Host => "host",
        }
    }
}

/// Optional bubblewrap features, detected from `bwrap --help` (older versions lack them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BwrapFeatures {
    /// `--disable-userns` (0.8): no nested user namespaces inside.
    pub disable_userns: bool,
    /// `--size` for `--tmpfs` (0.7).
    pub tmpfs_size: bool,
}

impl BwrapFeatures {
    pub(crate) fn from_help(help: &str) -> Self {
        BwrapFeatures {
            disable_userns: help.contains("--disable-userns"),
            tmpfs_size: help.contains("--size"),
        }
    }
}

/// System directories bound read-only (or recreated as the same symlink on merged-/usr hosts).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// The minimal `/etc` a command needs: the loader, certificates, alternatives, time zone,
/// name-service switch and service names. Neither `passwd`/`group` (synthesized) nor anything
/// with secrets or host identity (`shadow`, `ssh`, `machine-id`, `hostname`).
const ETC_FILES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/nsswitch.conf",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/etc/crypto-policies",
];

/// Files needed only when the command has the host's network.
const ETC_NETWORK_FILES: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
];

/// `/proc` files that expose kernel state (addresses, physical pages, slab layout, other
/// keyrings, the kernel log) and are readable by the sandbox's uid when the daemon runs as root
/// (bubblewrap then maps it to uid 0 outside). Masked with `/dev/null`, as container runtimes do.
const PROC_MASK_FILES: &[&str] = &[
    "/proc/kcore",
    "/proc/kmsg",
    "/proc/kallsyms",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/kpageflags",
    "/proc/kpagecount",
    "/proc/kpagecgroup",
    "/proc/slabinfo",
    "/proc/vmallocinfo",
    "/proc/pagetypeinfo",
    "/proc/iomem",
    "/proc/ioports",
    "/proc/config.gz",
];

/// `/proc` directories replaced by an empty read-only tmpfs (hardware and driver interfaces).
const PROC_MASK_DIRS: &[&str] = &["/proc/acpi", "/proc/scsi", "/proc/driver", "/proc/asound"];

/// Everything that varies per command.
#[derive(Debug, Clone)]
pub(crate) struct ProfileSpec<'a> {
    /// Canonical workspace (bound read-write at the same path); `None` for the probe.
    pub workspace: Option<&'a Path>,
    /// Canonical working directory inside the workspace.
    pub cwd: Option<&'a Path>,
    pub network: &'a Network,
    /// Canonical paths that must never be visible.
    pub hidden: &'a [PathBuf],
    /// Canonical extra read-only paths.
    pub read_only: &'a [PathBuf],
    pub features: BwrapFeatures,
    pub tmp_size: u64,
    /// Seccomp programs (deny list, clone3), or `None` to run without.
    pub seccomp: Option<(&'a [u8], &'a [u8])>,
    /// The relay and CA for `network: broker` (ignored for other networks).
    pub relay: Option<&'a BrokerRelay>,
}

/// A ready argument list and the descriptors it refers to (to be inherited by bubblewrap).
#[derive(Debug)]
pub(crate) struct BuiltProfile {
    pub args: Vec<OsString>,
    pub fds: Vec<OwnedFd>,
}

/// Builds the bubblewrap arguments up to (and including) `--`; the command follows.
pub(crate) fn build(spec: &ProfileSpec<'_>) -> Result<BuiltProfile, SandboxError> {
    let mut a = Args::default();
    let mut fds = Vec::new();

    a.flag("--unshare-user");
    a.flag("--unshare-ipc");
    a.flag("--unshare-pid");
    a.flag("--unshare-uts");
    a.flag("--unshare-cgroup");
    match spec.network {
        Network::Host => {}
        Network::None | Network::Broker(_) => a.flag("--unshare-net"),
    }
    if spec.features.disable_userns {
        a.flag("--disable-userns");
    }
    a.opt("--uid", SANDBOX_UID.to_string());
    a.opt("--gid", SANDBOX_GID.to_string());
    a.opt("--hostname", "comis-sandbox");
    a.flag("--die-with-parent");
    a.flag("--new-session");
    a.opt("--cap-drop", "ALL");

    for dir in SYSTEM_DIRS {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(path).map_err(|e| SandboxError::Io {
                    what: format!("reading the symlink {dir}"),
                    source: e,
                })?;
                a.two("--symlink", target, path);
            }
            Ok(m) if m.is_dir() => a.two("--ro-bind", path, path),
            _ => {}
        }
    }
    let etc_net: &[&str] = match spec.network {
        Network::Host => ETC_NETWORK_FILES,
        _ => &[],
    };
    for file in ETC_FILES.iter().chain(etc_net) {
        if Path::new(file).exists() {
            a.two("--ro-bind", file, file);
        }
    }
    let home = spec
        .workspace
        .map(|w| w.to_string_lossy().into_owned())
        .filter(|h| !h.contains([':', '\n']))
        .unwrap_or_else(|| "/".into());
    let passwd = format!(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n\
         {SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}:comis agent:{home}:/bin/sh\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    );
    let group = format!("root:x:0:\n{SANDBOX_USER}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n");
    for (data, dest) in [(passwd, "/etc/passwd"), (group, "/etc/group")] {
        let fd = data_pipe(data.as_bytes())?;
        a.two("--ro-bind-data", fd.as_raw_fd().to_string(), dest);
        fds.push(fd);
    }

    a.opt("--proc", "/proc");
    for file in PROC_MASK_FILES {
        if Path::new(file).exists() {
            a.two("--ro-bind", "/dev/null", file);
        }
    }
    for dir in PROC_MASK_DIRS {
        if Path::new(dir).is_dir() {
            a.opt("--tmpfs", dir);
            a.opt("--remount-ro", dir);
        }
    }
    a.opt("--dev", "/dev");
    if spec.features.tmpfs_size {
        a.opt("--size", spec.tmp_size.to_string());
    }
    a.opt("--tmpfs", "/tmp");

    let mut binds: Vec<&Path> = Vec::new();
    if let Some(ws) = spec.workspace {
        check_not_hidden(ws, spec.hidden)?;
        a.two("--bind", ws, ws);
        binds.push(ws);
    }
    for ro in spec.read_only {
        check_not_hidden(ro, spec.hidden)?;
        a.two("--ro-bind", ro, ro);
        binds.push(ro);
    }
    for hidden in spec.hidden {
        if !binds.iter().any(|b| hidden.starts_with(b)) {
            continue;
        }
        match std::fs::metadata(hidden) {
            Ok(m) if m.is_dir() => {
                a.opt("--tmpfs", hidden);
                a.opt("--remount-ro", hidden);
            }
            Ok(_) => a.two("--ro-bind", "/dev/null", hidden),
            // Not there: nothing to hide now.
            Err(_) => {}
        }
    }
    if let Network::Broker(socket) = spec.network {
        a.two("--bind", socket, BROKER_SOCKET_IN_SANDBOX);
        if let Some(relay) = spec.relay {
            check_not_hidden(&relay.program, spec.hidden)?;
            a.two("--ro-bind", &relay.program, RELAY_PROGRAM_IN_SANDBOX);
            let fd = data_pipe(relay.ca_pem.as_bytes())?;
            a.two(
                "--ro-bind-data",
                fd.as_raw_fd().to_string(),
                BROKER_CA_IN_SANDBOX,
            );
            fds.push(fd);
        }
    }
    a.opt(
        "--chdir",
        spec.cwd.or(spec.workspace).unwrap_or(Path::new("/")),
    );
    if let Some((deny, clone3)) = spec.seccomp {
        for program in [deny, clone3] {
            let fd = data_pipe(program)?;
            a.opt("--add-seccomp-fd", fd.as_raw_fd().to_string());
            fds.push(fd);
        }
    }
    a.flag("--");
    Ok(BuiltProfile { args: a.0, fds })
}

/// A bound path may lie inside a hidden one (a workspace under `$COMIS_HOME`), but may not be
/// one, nor be `/`, a system directory or a host directory such as `/etc` or `/home` (binding
/// one of those would expose the host it is meant to hide).
fn check_not_hidden(bound: &Path, hidden: &[PathBuf]) -> Result<(), SandboxError> {
    if hidden.iter().any(|h| h == bound) {
        return Err(SandboxError::Config(format!(
            "{} is a hidden path and cannot be bound into a sandbox",
            bound.display()
        )));
    }
    const HOST_DIRS: &[&str] = &[
        "/etc", "/proc", "/sys", "/dev", "/boot", "/var", "/run", "/root", "/home", "/tmp",
    ];
    if bound == Path::new("/")
        || SYSTEM_DIRS
            .iter()
            .chain(HOST_DIRS)
            .any(|d| Path::new(d) == bound)
    {
        return Err(SandboxError::Config(format!(
            "{} cannot be bound read-write or as an extra path",
            bound.display()
        )));
    }
    Ok(())
}

#[derive(Default)]
struct Args(Vec<OsString>);

impl Args {
    fn flag(&mut self, f: &str) {
        self.0.push(f.into());
    }
    fn opt(&mut self, f: &str, v: impl Into<OsString>) {
        self.0.push(f.into());
        self.0.push(v.into());
    }
    fn two(&mut self, f: &str, a: impl Into<OsString>, b: impl Into<OsString>) {
        self.0.push(f.into());
        self.0.push(a.into());
        self.0.push(b.into());
    }
}
