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

use crate::SandboxError;

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
