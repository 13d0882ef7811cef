//! The environment a command starts with: empty, plus a fixed allowlist comis writes itself,
//! plus the variables the agent asked for once they passed the policy and a hard floor.
//!
//! **Defends against** secrets leaking into a command through inherited variables (API keys in
//! the daemon's environment, tokens, `SSH_AUTH_SOCK`, …) and against variables that change how
//! the loader, the C library or the shell behave before the command's first line runs
//! (`LD_PRELOAD`, `GLIBC_TUNABLES`, `BASH_ENV`, exported shell functions).
//!
//! **Guarantees.** Nothing of the daemon's environment is read or passed on: the child's
//! environment is built from constants and the workspace path alone. `HOME`, `TMPDIR` and the
//! package-manager cache variables always point into the workspace (or the private `/tmp`) and
//! cannot be overridden. Agent variables must be well-formed names with bounded, NUL-free
//! values.
//!
//! **Does not** decide which agent variables are acceptable beyond the hard floor: that is the
//! guard's env policy (run by [`crate::CommandPolicy`] before this).

use std::path::Path;

use zeroize::Zeroizing;

use crate::SandboxError;

/// Variables the daemon sets for a `network: broker` run (see
/// [`crate::ExecRequest::system_env`]). Values are zeroized on drop and `Debug` shows the
/// names only: the proxy URL carries the run's session token.
#[derive(Clone, Default)]
pub struct SystemEnv(Vec<(String, Zeroizing<String>)>);

impl SystemEnv {
    /// The variables, as `BrokerSession::sandbox_env` returns them.
    pub fn new(vars: impl IntoIterator<Item = (String, Zeroizing<String>)>) -> SystemEnv {
        SystemEnv(vars.into_iter().collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The variables' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }

    pub(crate) fn vars(&self) -> &[(String, Zeroizing<String>)] {
        &self.0
    }
}

impl std::fmt::Debug for SystemEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// `PATH` inside the sandbox (system directories only; nothing writable is on it).
pub const SANDBOX_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The user name and ids commands run as inside the sandbox.
pub const SANDBOX_USER: &str = "agent";
pub const SANDBOX_UID: u32 = 1000;
pub const SANDBOX_GID: u32 = 1000;

/// Most variables an agent may add.
pub const MAX_AGENT_VARS: usize = 64;
/// Longest agent variable name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest agent variable value, in bytes.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

/// Cache and data locations redirected under `<workspace>/.cache` (one per package manager),
/// so downloads land in the workspace instead of failing on a read-only home.
const CACHE_VARS: &[(&str, &str)] = &[
    ("XDG_CACHE_HOME", ".cache"),
    ("NPM_CONFIG_CACHE", ".cache/npm"),
    ("PIP_CACHE_DIR", ".cache/pip"),
    ("UV_CACHE_DIR", ".cache/uv"),
    ("CARGO_HOME", ".cache/cargo"),
    ("GOPATH", ".cache/go"),
    ("GOMODCACHE", ".cache/go/pkg/mod"),
    ("GOCACHE", ".cache/go-build"),
    ("GEM_HOME", ".cache/gem"),
    ("PYTHONUSERBASE", ".local"),
];

/// Variables an agent may never set, whatever the policy says: they act before the command
/// (loader, C library, shell start-up) or undo the redirections above.
fn is_reserved(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "HOME",
        "TMPDIR",
        "USER",
        "LOGNAME",
        "GLIBC_TUNABLES",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "IFS",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCPATH",
        "NLSPATH",
        "COMIS_BROKER_SOCKET",
    ];
    EXACT.contains(&name)
        || CACHE_VARS.iter().any(|(n, _)| *n == name)
        || name.starts_with("LD_")
        || name.starts_with("DYLD_")
        || name.starts_with("BASH_FUNC_")
        || name.starts_with("MALLOC_")
}

/// Whether `name` is a portable variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= MAX_NAME_BYTES
}

/// Checks the variables an agent asked for against the hard floor.
pub fn check_agent_env(vars: &[(String, String)]) -> Result<(), SandboxError> {
    if vars.len() > MAX_AGENT_VARS {
        return Err(SandboxError::Blocked(format!(
            "too many environment variables ({} > {MAX_AGENT_VARS})",
            vars.len()
        )));
    }
    for (name, value) in vars {
        if !is_valid_name(name) {
            return Err(SandboxError::Blocked(format!(
                "invalid environment variable name {:?}",
                name.chars().take(64).collect::<String>()
            )));
        }
        if is_reserved(name) {
            return Err(SandboxError::Blocked(format!(
                "environment variable {name} may not be set by an agent"
            )));
        }
        if value.len() > MAX_VALUE_BYTES || value.contains('\0') {
            return Err(SandboxError::Blocked(format!(
                "environment variable {name}: value too long or contains NUL"
            )));
        }
    }
    Ok(())
}

/// Names the daemon may set through [`crate::ExecRequest::system_env`] besides the
/// placeholders: the proxy variables (upper and lower case, as tools disagree), Node's switch
/// to honour them, and the CA bundle variables of the common runtimes. The same list as
/// `comis_net::broker::BrokerSession::sandbox_env` writes.
const SYSTEM_PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
];
const SYSTEM_NO_PROXY_VARS: &[&str] = &["NO_PROXY", "no_proxy"];
const SYSTEM_CA_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];
/// The variables [`build_env`] always sets that are not already reserved.
const BASE_VARS: &[&str] = &["PATH", "SHELL", "LANG", "TERM", "LANGUAGE"];
/// How every broker placeholder value starts (`comis_net::broker::Binding::placeholder`).
pub const BROKER_PLACEHOLDER_PREFIX: &str = "comis-broker-placeholder-";

/// Checks the daemon-set environment of a broker sandbox: only the names the broker needs,
/// each with the only value shape it may have. Proxy variables must name the in-sandbox relay
/// (`http://…@127.0.0.1:3128`), `NO_PROXY` must be empty, the CA variables must name the
/// read-only CA file at [`crate::profile::BROKER_CA_IN_SANDBOX`], `NODE_USE_ENV_PROXY` must be
/// `1`, and any other name must be a well-formed, non-reserved variable holding a broker
/// placeholder. So even a confused caller cannot use this channel to set `LD_PRELOAD`, point a
/// CA variable at a file of its choosing or smuggle a real credential in.
pub fn check_system_env(vars: &SystemEnv) -> Result<(), SandboxError> {
    let vars = vars.vars();
    use crate::profile::{BROKER_CA_IN_SANDBOX, RELAY_LISTEN};
    if vars.len() > MAX_AGENT_VARS {
        return Err(SandboxError::Config(format!(
            "too many daemon environment variables ({} > {MAX_AGENT_VARS})",
            vars.len()
        )));
    }
    let relay_suffix = format!("@{RELAY_LISTEN}");
    for (name, value) in vars {
        let n = name.as_str();
        let value = value.as_str();
        let ok = if SYSTEM_PROXY_VARS.contains(&n) {
            value.starts_with("http://")
                && value.ends_with(&relay_suffix)
                && !value.contains(['\n', '\r', ' '])
        } else if SYSTEM_NO_PROXY_VARS.contains(&n) {
            value.is_empty()
        } else if SYSTEM_CA_VARS.contains(&n) {
            value == BROKER_CA_IN_SANDBOX
        } else if n == "NODE_USE_ENV_PROXY" {
            value == "1"
        } else {
            // A placeholder may not replace a variable comis itself sets (`PATH`, `SHELL`,
            // …) nor one that changes how programs behave (`LC_*`, the reserved names).
            is_valid_name(n)
                && !is_reserved(n)
                && !BASE_VARS.contains(&n)
                && !n.starts_with("LC_")
                && value.starts_with(BROKER_PLACEHOLDER_PREFIX)
                && value.len() <= MAX_NAME_BYTES * 2
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        };
        if !ok {
            return Err(SandboxError::Config(format!(
                "daemon environment variable {:?} is not one the credential broker sets, or \
                 its value does not have the broker's shape",
                n.chars().take(64).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// The complete environment of a command run in `workspace` (the path as the command sees it),
/// with the agent's variables (already checked) appended last.
pub fn build_env(workspace: &Path, agent: &[(String, String)]) -> Vec<(String, String)> {
    let ws = workspace.to_string_lossy();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), SANDBOX_PATH.into()),
        ("HOME".into(), ws.clone().into_owned()),
        ("USER".into(), SANDBOX_USER.into()),
        ("LOGNAME".into(), SANDBOX_USER.into()),
        ("SHELL".into(), "/bin/sh".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TERM".into(), "dumb".into()),
        ("TMPDIR".into(), "/tmp".into()),
    ];
    for (name, rel) in CACHE_VARS {
        env.push(((*name).into(), format!("{ws}/{rel}")));
    }
    for (name, value) in agent {
        match env.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1.clone_from(value),
            None => env.push((name.clone(), value.clone())),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn reserved_and_malformed_names_are_refused() {
        for name in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "GLIBC_TUNABLES",
            "BASH_ENV",
            "BASH_FUNC_ls%%",
            "HOME",
            "CARGO_HOME",
            "1ABC",
            "A-B",
            "",
            "A=B",
        ] {
            let vars = vec![(name.to_owned(), "x".to_owned())];
            assert!(check_agent_env(&vars).is_err(), "{name}");
        }
        let ok = vec![("RUST_LOG".to_owned(), "debug".to_owned())];
        check_agent_env(&ok).unwrap();
    }

    fn pairs(p: &[(&str, &str)]) -> SystemEnv {
        SystemEnv::new(
            p.iter()
                .map(|(k, v)| ((*k).to_owned(), Zeroizing::new((*v).to_owned()))),
        )
    }

    proptest::proptest! {
        /// Whatever the daemon passes, an accepted variable is one of the broker's own names
        /// or a placeholder under a name the floor allows; never a reserved one.
        #[test]
        fn system_env_accepts_only_broker_shapes(
            name in "[A-Za-z_]{1,3}[A-Za-z0-9_ =-]{0,12}|LD_PRELOAD|PATH|HTTPS_PROXY|SSL_CERT_FILE",
            value in "(comis-broker-placeholder-)?[a-z0-9 ;$/:@.-]{0,20}",
        ) {
            let vars = pairs(&[(name.as_str(), value.as_str())]);
            if check_system_env(&vars).is_ok() {
                let fixed = SYSTEM_PROXY_VARS.contains(&name.as_str())
                    || SYSTEM_NO_PROXY_VARS.contains(&name.as_str())
                    || SYSTEM_CA_VARS.contains(&name.as_str())
                    || name == "NODE_USE_ENV_PROXY";
                proptest::prop_assert!(fixed || (
                    value.starts_with(BROKER_PLACEHOLDER_PREFIX)
                        && !is_reserved(&name)
                        && is_valid_name(&name)
                        && name != "PATH"
                ));
                proptest::prop_assert!(!value.contains([' ', ';', '$']));
            }
        }
    }

    #[test]
    fn system_env_accepts_the_broker_environment() {
        check_system_env(&pairs(&[
            ("HTTPS_PROXY", "http://comis:cbt_abc@127.0.0.1:3128"),
            ("http_proxy", "http://comis:cbt_abc@127.0.0.1:3128"),
            ("NO_PROXY", ""),
            ("NODE_USE_ENV_PROXY", "1"),
            ("SSL_CERT_FILE", "/run/comis/broker-ca.pem"),
            ("NODE_EXTRA_CA_CERTS", "/run/comis/broker-ca.pem"),
            ("GH_TOKEN", "comis-broker-placeholder-github"),
        ]))
        .unwrap();
        check_system_env(&SystemEnv::default()).unwrap();
    }

    #[test]
    fn system_env_refuses_anything_else() {
        for (k, v) in [
            ("LD_PRELOAD", "comis-broker-placeholder-x"),
            ("BASH_ENV", "comis-broker-placeholder-x"),
            ("HOME", "comis-broker-placeholder-x"),
            ("PATH", "comis-broker-placeholder-x"),
            ("LC_ALL", "comis-broker-placeholder-x"),
            ("COMIS_BROKER_SOCKET", "comis-broker-placeholder-x"),
            ("GH_TOKEN", "ghp_realtoken"),
            ("GH_TOKEN", "comis-broker-placeholder-x; rm -rf /"),
            ("HTTPS_PROXY", "http://evil.test:8080"),
            ("HTTPS_PROXY", "http://x@127.0.0.1:3128\nLD_PRELOAD=1"),
            ("NO_PROXY", "*"),
            ("SSL_CERT_FILE", "/etc/shadow"),
            ("NODE_USE_ENV_PROXY", "0"),
            ("A-B", "comis-broker-placeholder-x"),
            ("", "comis-broker-placeholder-x"),
        ] {
            assert!(check_system_env(&pairs(&[(k, v)])).is_err(), "{k}={v}");
        }
        let many = SystemEnv::new((0..65).map(|i| {
            (
                format!("V{i}"),
                Zeroizing::new(format!("{BROKER_PLACEHOLDER_PREFIX}{i}")),
            )
        }));
        assert!(check_system_env(&many).is_err());
        let dbg = format!(
            "{:?}",
            pairs(&[("HTTPS_PROXY", "http://comis:cbt_secret@127.0.0.1:3128")])
        );
        assert!(
            dbg.contains("HTTPS_PROXY") && !dbg.contains("cbt_secret"),
            "{dbg}"
        );
    }

    #[test]
    fn oversized_input_is_refused() {
        let many: Vec<_> = (0..65).map(|i| (format!("V{i}"), String::new())).collect();
        assert!(check_agent_env(&many).is_err());
        let long = vec![("V".to_owned(), "x".repeat(MAX_VALUE_BYTES + 1))];
        assert!(check_agent_env(&long).is_err());
        let nul = vec![("V".to_owned(), "a\0b".to_owned())];
        assert!(check_agent_env(&nul).is_err());
    }

    #[test]
    fn caches_point_into_the_workspace() {
        let env = build_env(Path::new("/w"), &[("NODE_ENV".into(), "test".into())]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/w"));
        assert_eq!(get("PIP_CACHE_DIR"), Some("/w/.cache/pip"));
        assert_eq!(get("CARGO_HOME"), Some("/w/.cache/cargo"));
        assert_eq!(get("NODE_ENV"), Some("test"));
        assert_eq!(get("PATH"), Some(SANDBOX_PATH));
    }
}
