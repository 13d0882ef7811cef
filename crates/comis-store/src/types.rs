//! Small validated types shared by the store: who (agent), how much trust, from where.
//!
//! Defends: malformed identifiers and labels reaching SQL, FTS, the audit log or a terminal.
//! Every type here is checked once, at construction, so the rest of the crate cannot store an
//! agent id with a newline or a tag with a space in it.
//!
//! Guarantees: an [`AgentId`] is 1–64 of `[A-Za-z0-9_-]`; a [`MemoryKey`] 1–128 of
//! `[A-Za-z0-9_.:/-]`; a [`Tag`] 1–64 of `[A-Za-z0-9_.:-]`; a free-text label (channel,
//! sender, session, trace id) at most [`MAX_LABEL_BYTES`] bytes with no control characters.
//!
//! Does not: decide whether an agent exists (that is configuration's job).

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::{Result, StoreError};

/// Longest free-text label (channel, thread, sender, session, trace id), in bytes.
pub const MAX_LABEL_BYTES: usize = 256;

fn check_charset(
    what: &'static str,
    s: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
    described: &str,
) -> Result<()> {
    if s.is_empty() {
        return Err(StoreError::Invalid {
            what,
            reason: "it is empty".into(),
        });
    }
    if s.len() > max {
        return Err(StoreError::Invalid {
            what,
            reason: format!("it is {} bytes long; the limit is {max}", s.len()),
        });
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(StoreError::Invalid {
            what,
            reason: format!("character {c:?} is not allowed (use {described})"),
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr, $described:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `s`.
            ///
            /// # Errors
            /// [`StoreError::Invalid`] naming the offending character or length.
            pub fn new(s: &str) -> Result<Self> {
                check_charset($what, s, $max, $allowed, $described)?;
                Ok($name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self> {
                $name::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An agent identifier, e.g. `default` or `research-2`.
    AgentId,
    "agent id",
    64,
    |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-',
    "letters, digits, '_' and '-'"
);

id_type!(
    /// The name of a fact (`user.favorite_color`): at most one memory per agent has it.
    MemoryKey,
    "memory key",
    128,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'),
    "letters, digits and _ . : / -"
);

id_type!(
    /// A memory tag, e.g. `preference` or `security-tainted`.
    Tag,
    "tag",
    64,
    |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'),
    "letters, digits and _ . : -"
);

/// Checks a free-text label: bounded, no control characters (they could forge lines in a
/// terminal or a log).
///
/// # Errors
/// [`StoreError::Invalid`].
pub fn check_label(what: &'static str, s: &str) -> Result<()> {
    if s.len() > MAX_LABEL_BYTES {
        return Err(StoreError::Invalid {
            what,
            reason: format!(
                "it is {} bytes long; the limit is {MAX_LABEL_BYTES}",
                s.len()
            ),
        });
    }
    if s.chars().any(char::is_control) {
        return Err(StoreError::Invalid {
            what,
            reason: "it contains control characters".into(),
        });
    }
    Ok(())
}

/// How far a memory is trusted. Ordered: `External < Learned < System`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trust {
    /// From tools, APIs, the web, or downgraded by the validator. Left out of recall by default.
    External,
    /// Learned from conversation.
    Learned,
    /// Put there by the platform or the operator.
    System,
}

impl Trust {
    pub const ALL: [Trust; 3] = [Trust::System, Trust::Learned, Trust::External];

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::System => "system",
            Trust::Learned => "learned",
            Trust::External => "external",
        }
    }

    pub(crate) fn from_db(s: &str) -> Result<Trust> {
        s.parse()
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trust {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Trust> {
        match s {
            "system" => Ok(Trust::System),
            "learned" => Ok(Trust::Learned),
            "external" => Ok(Trust::External),
            _ => Err(StoreError::Invalid {
                what: "trust level",
                reason: format!("{s:?} is not one of system, learned, external"),
            }),
        }
    }
}

impl Serialize for Trust {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Where a memory's content came from. It caps the trust a write can get: content from a
/// tool, an API or the web is `external` whatever the caller asks, conversation is at most
/// `learned`, and only the platform or the operator can write `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    System,
    Operator,
    Conversation,
    Tool,
    Web,
    Api,
    Unknown,
}

impl SourceKind {
    pub const ALL: [SourceKind; 7] = [
        SourceKind::System,
        SourceKind::Operator,
        SourceKind::Conversation,
        SourceKind::Tool,
        SourceKind::Web,
        SourceKind::Api,
        SourceKind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::System => "system",
            SourceKind::Operator => "operator",
            SourceKind::Conversation => "conversation",
            SourceKind::Tool => "tool",
            SourceKind::Web => "web",
            SourceKind::Api => "api",
            SourceKind::Unknown => "unknown",
        }
    }

    /// The highest trust content from this source may have.
    pub fn trust_ceiling(self) -> Trust {
        match self {
            SourceKind::System | SourceKind::Operator => Trust::System,
            SourceKind::Conversation | SourceKind::Unknown => Trust::Learned,
            SourceKind::Tool | SourceKind::Web | SourceKind::Api => Trust::External,
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<SourceKind> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| StoreError::Invalid {
                what: "source kind",
                reason: format!(
                    "{s:?} is not one of system, operator, conversation, tool, web, api, unknown"
                ),
            })
    }
}

impl Serialize for SourceKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// 128 random bits as 32 lowercase hex digits.
pub(crate) fn random_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex(&b))
}

pub(crate) use comis_guard::hex::encode as hex;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn identifiers_accept_and_refuse() {
        assert!(AgentId::new("default").is_ok());
        assert!(AgentId::new("agent_2-b").is_ok());
        for bad in ["", "a b", "a\nb", "ä", "a/b", &"x".repeat(65)] {
            assert!(AgentId::new(bad).is_err(), "{bad:?}");
        }
        assert!(MemoryKey::new("user.favorite:color/v-2").is_ok());
        assert!(MemoryKey::new("a key").is_err());
        assert!(Tag::new("security-tainted").is_ok());
        assert!(Tag::new("a/b").is_err());
        assert!(check_label("channel", "telegram").is_ok());
        assert!(check_label("channel", "a\u{1b}[2J").is_err());
        assert!(check_label("channel", &"x".repeat(257)).is_err());
    }

    #[test]
    fn trust_order_and_ceilings() {
        assert!(Trust::System > Trust::Learned && Trust::Learned > Trust::External);
        for t in Trust::ALL {
            assert_eq!(t.as_str().parse::<Trust>().unwrap(), t);
        }
        assert!("admin".parse::<Trust>().is_err());
        assert_eq!(SourceKind::Web.trust_ceiling(), Trust::External);
        assert_eq!(SourceKind::Conversation.trust_ceiling(), Trust::Learned);
        assert_eq!(SourceKind::Operator.trust_ceiling(), Trust::System);
        for k in SourceKind::ALL {
            assert_eq!(k.as_str().parse::<SourceKind>().unwrap(), k);
        }
    }

    #[test]
    fn hex_and_ids() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        let a = random_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_id().unwrap());
    }
}
