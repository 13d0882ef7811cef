//! Secret names.
//!
//! Defends: the vault, the CLI and `${VAR}` substitution against names that could be confused
//! with something else (path separators, shell or JSON metacharacters, control characters,
//! invisible Unicode, absurd lengths).
//!
//! Guarantees: a [`SecretName`] is 1..=[`MAX_NAME_LEN`] ASCII characters, `[A-Za-z_]` then
//! `[A-Za-z0-9_]*` — the shape of an environment variable, so every vault entry can also be
//! referenced as `${NAME}`. Names are case-sensitive, like environment variables (only the
//! allowlist *patterns* of scoped access match case-insensitively).
//!
//! Does not: decide who may read a name (see [`crate::manager`]). Error messages never echo the
//! rejected name in full, because a user who pasted a value where a name was expected should
//! not see it printed back into logs.

use std::fmt;

use crate::SecretsError;

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// A validated secret name. Not secret itself: it may be printed and logged.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`SecretsError::InvalidName`] saying which rule failed (without repeating the name).
    pub fn new(name: &str) -> Result<Self, SecretsError> {
        let invalid = |reason: String| Err(SecretsError::InvalidName { reason });
        if name.is_empty() {
            return invalid("the name is empty".into());
        }
        if name.len() > MAX_NAME_LEN {
            return invalid(format!(
                "the name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ));
        }
        for (i, c) in name.chars().enumerate() {
            let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
            if !ok {
                let shown = if c.is_ascii_graphic() {
                    format!("'{c}'")
                } else {
                    format!("U+{:04X}", u32::from(c))
                };
                return invalid(format!(
                    "character {} ({shown}) is not allowed; names use A-Z, a-z, 0-9 and _ and \
                     do not start with a digit",
                    i + 1
                ));
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretName({})", self.0)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_env_var_shapes() {
        for n in ["OPENAI_API_KEY", "a", "_", "_x9", "Telegram_Bot_Token_2"] {
            assert_eq!(SecretName::new(n).unwrap().as_str(), n);
        }
        assert!(SecretName::new(&"A".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn rejects_hostile_names_without_echoing_them() {
        let long = "B".repeat(MAX_NAME_LEN + 1);
        for n in [
            "",
            "9LIVES",
            "a-b",
            "a.b",
            "../etc/passwd",
            "A B",
            "A\u{200B}B",
            "ÄPI",
            "A\nB",
            "A\0B",
            "${X}",
            long.as_str(),
        ] {
            let e = SecretName::new(n).unwrap_err().to_string();
            assert!(e.starts_with("invalid secret name"), "{e}");
            if n.len() > 3 {
                assert!(!e.contains(n), "error echoes the name: {e}");
            }
        }
    }

    proptest! {
        #[test]
        fn valid_iff_env_shape(s in "\\PC{0,40}") {
            let ok = SecretName::new(&s).is_ok();
            let expect = !s.is_empty()
                && s.len() <= MAX_NAME_LEN
                && s.chars().next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && s.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            prop_assert_eq!(ok, expect);
        }
    }
}
