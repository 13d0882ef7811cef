//! Canary tokens: a per-session marker placed in the system prompt, whose appearance in a reply
//! proves the model is leaking its prompt.
//!
//! ## What it defends
//! Prompt extraction. The daemon derives a token for each session, [`CanaryToken`] =
//! `CTKN_` + the first 16 lowercase hex digits of HMAC-SHA256(key, `"canary:" + session_id`),
//! and asks the model never to repeat it. The output guard then looks for it in every reply.
//!
//! ## What it guarantees
//! - **Deterministic per session, unforgeable without the key.** The same key and session always
//!   give the same token (so a restarted daemon recognises old sessions); without the key a
//!   session's token cannot be predicted.
//! - **Disguise-tolerant detection.** [`CanaryToken::find_in`] matches the token even when the
//!   model changes its case, writes it in fullwidth or other compatibility letters or with
//!   Cyrillic/Greek look-alikes, or inserts spaces, hyphens, underscores, punctuation or
//!   invisible characters inside it. It scans a normalized *view* but reports byte ranges of the
//!   *original* text, so redaction removes exactly the disguised token and nothing around it.
//! - **Constant-time comparison** of every candidate against the token (`subtle`), so the time a
//!   scan takes does not reveal how much of a guessed token was right.
//! - **The key never leaves [`CanaryKey`]**: it has no accessor, no `Display`, and its `Debug`
//!   prints nothing of it. The raw bytes are not even stored: only the keyed HMAC state is.
//!
//! ## What it does not do
//! - Detect the 16 hex digits when the model drops the `CTKN` prefix, spells the token out in
//!   words, encodes it (base64, reversed) or splits it with ordinary words in between. A canary
//!   is a tripwire for careless leaks, not a proof that nothing leaked.
//! - Zero the key's memory on drop (the `zeroize` crate is not a dependency); the HMAC state is
//!   dropped like any other value.

use std::fmt;
use std::ops::Range;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::GuardError;
use crate::unicode::{fold_homoglyph, invisible_category};

/// The visible prefix of every canary token.
pub const CANARY_PREFIX: &str = "CTKN_";
/// Hex digits after the prefix (64 bits of the HMAC).
const HEX_LEN: usize = 16;
/// The prefix as it appears in the normalized view: lowercase, separators dropped.
const VIEW_PREFIX: &[u8; 4] = b"ctkn";
/// Visible separator characters tolerated in a row inside a disguised token. Invisible
/// characters do not count: removing them does not change what a reader sees.
const MAX_GAP: usize = 8;

/// The daemon's canary key.
pub struct CanaryKey {
    mac: Hmac<Sha256>,
}

impl CanaryKey {
    /// Shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// Builds a key from secret bytes (at least [`Self::MIN_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, GuardError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(GuardError::Config(format!(
                "canary key must be at least {} bytes",
                Self::MIN_LEN
            )));
        }
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(bytes)
            .map_err(|e| GuardError::Config(format!("canary key: {e}")))?;
        Ok(CanaryKey { mac })
    }

    /// A fresh random 256-bit key from the operating system.
    pub fn generate() -> Result<Self, GuardError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| GuardError::Random(e.to_string()))?;
        let key = Self::from_bytes(&bytes);
        // Best effort: the optimizer may keep a copy, but do not leave it in this frame.
        bytes.fill(0);
        std::hint::black_box(&bytes);
        key
    }

    /// The canary token for one session.
    pub fn token_for(&self, session_id: &str) -> CanaryToken {
        let mut mac = self.mac.clone();
        mac.update(b"canary:");
        mac.update(session_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = [0u8; HEX_LEN];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
            let [hi, lo] = pair else { continue };
            *hi = HEX_DIGITS[usize::from(byte >> 4)];
            *lo = HEX_DIGITS[usize::from(byte & 0x0f)];
        }
        CanaryToken { hex }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for CanaryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CanaryKey(<redacted>)")
    }
}

/// One session's canary token, `CTKN_` + 16 lowercase hex digits.
#[derive(Clone)]
pub struct CanaryToken {
    /// Lowercase ASCII hex digits.
    hex: [u8; HEX_LEN],
}

impl CanaryToken {
    /// Parses a rendered token (`CTKN_` + 16 hex digits, either case). Used by the CLI, which
    /// receives the token rather than the key.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(CANARY_PREFIX)?;
        if rest.len() != HEX_LEN || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut hex = [0u8; HEX_LEN];
        for (dst, src) in hex.iter_mut().zip(rest.bytes()) {
            *dst = src.to_ascii_lowercase();
        }
        Some(CanaryToken { hex })
    }

    /// The token as placed in the prompt.
    pub fn render(&self) -> String {
        let mut s = String::with_capacity(CANARY_PREFIX.len() + HEX_LEN);
        s.push_str(CANARY_PREFIX);
        s.extend(self.hex.iter().map(|&b| char::from(b)));
        s
    }

    /// Whether the token, in any of the disguises this module handles, occurs in `text`.
    pub fn is_present_in(&self, text: &str) -> bool {
        !self.find_in(text).is_empty()
    }

    /// Byte ranges of every occurrence of the token in `text`, disguised or not, each from the
    /// first character of the prefix to the last character of the hex digits. Ranges do not
    /// overlap and are in order.
    pub fn find_in(&self, text: &str) -> Vec<Range<usize>> {
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(candidate) = next_candidate(text, from) {
            if bool::from(candidate.hex.ct_eq(&self.hex)) {
                found.push(candidate.range.clone());
                from = candidate.range.end;
            } else {
                // The next token may start inside this candidate's digits: resume just after
                // the prefix.
                from = candidate.resume;
            }
        }
        found
    }
}

impl PartialEq for CanaryToken {
    fn eq(&self, other: &Self) -> bool {
        self.hex.ct_eq(&other.hex).into()
    }
}

impl Eq for CanaryToken {}

impl fmt::Debug for CanaryToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is not the key, but printing it in logs would tell a reader what to strip.
        f.write_str("CanaryToken(CTKN_<redacted>)")
    }
}

/// A prefix found in the normalized view, with the 16 characters that follow it.
struct Candidate {
    range: Range<usize>,
    hex: [u8; HEX_LEN],
    /// Where to continue scanning if this candidate is not the token.
    resume: usize,
}

/// What one original character contributes to the normalized view.
enum ViewChar {
    /// Up to two ASCII alphanumerics, lowercased (`ﬀ` gives two).
    Alnum([u8; 2], usize),
    /// A separator the model may have inserted: punctuation, space, symbol, combining mark.
    Separator { visible: bool },
    /// A letter or digit of another script: it cannot be part of the token.
    Break,
}

fn view_char(c: char) -> ViewChar {
    if c.is_ascii() {
        return if c.is_ascii_alphanumeric() {
            ViewChar::Alnum([c.to_ascii_lowercase() as u8, 0], 1)
        } else {
            ViewChar::Separator { visible: true }
        };
    }
    if invisible_category(c).is_some() {
        return ViewChar::Separator { visible: false };
    }
    let folded = fold_homoglyph(c);
    if folded.is_ascii_alphanumeric() {
        return ViewChar::Alnum([folded.to_ascii_lowercase() as u8, 0], 1);
    }
    // Compatibility decomposition turns fullwidth, mathematical, circled and accented letters
    // into ASCII letters plus combining marks.
    let mut out = [0u8; 2];
    let mut n = 0;
    let mut foreign = false;
    unicode_normalization::char::decompose_compatible(c, |d| {
        let d = fold_homoglyph(d);
        if d.is_ascii_alphanumeric() {
            if let Some(slot) = out.get_mut(n) {
                *slot = d.to_ascii_lowercase() as u8;
                n += 1;
            } else {
                foreign = true;
            }
        } else if d.is_alphanumeric() {
            foreign = true;
        }
    });
    if foreign {
        ViewChar::Break
    } else if n > 0 {
        ViewChar::Alnum(out, n)
    } else {
        ViewChar::Separator { visible: true }
    }
}

/// Finds the next `ctkn` prefix at or after byte `from` in the normalized view and collects the
/// 16 view characters that follow it (fewer only at a break or the end of the text).
fn next_candidate(text: &str, from: usize) -> Option<Candidate> {
    let raw = text.as_bytes();
    // Prefix progress and the byte range it covers so far.
    let mut matched = 0usize;
    let mut start = 0usize;
    let mut prefix_end = 0usize;
    let mut hex = [0u8; HEX_LEN];
    let mut got = 0usize;
    let mut gap = 0usize;
    let mut i = from;
    while let Some(&b) = raw.get(i) {
        if matched == 0 && b < 0x80 && b | 0x20 != b'c' {
            // Outside a candidate only a `c`, or a non-ASCII character that may fold to one,
            // can start the prefix: skip ahead without decoding.
            match raw
                .get(i..)
                .and_then(|r| r.iter().position(|&b| b >= 0x80 || b | 0x20 == b'c'))
            {
                Some(k) => i += k,
                None => break,
            }
            continue;
        }
        let Some(c) = text.get(i..).and_then(|r| r.chars().next()) else {
            break;
        };
        let (pos, end) = (i, i + c.len_utf8());
        i = end;
        let (bytes, n) = match view_char(c) {
            ViewChar::Alnum(bytes, n) => (bytes, n),
            ViewChar::Separator { visible } => {
                if visible {
                    gap += 1;
                }
                if gap > MAX_GAP {
                    if matched == VIEW_PREFIX.len() {
                        return Some(Candidate {
                            range: start..prefix_end,
                            hex,
                            resume: prefix_end,
                        });
                    }
                    matched = 0;
                }
                continue;
            }
            ViewChar::Break => {
                if matched == VIEW_PREFIX.len() {
                    return Some(Candidate {
                        range: start..prefix_end,
                        hex,
                        resume: prefix_end,
                    });
                }
                matched = 0;
                gap = 0;
                continue;
            }
        };
        gap = 0;
        for &b in bytes.iter().take(n) {
            if matched == VIEW_PREFIX.len() {
                if let Some(slot) = hex.get_mut(got) {
                    *slot = b;
                }
                got += 1;
                if got == HEX_LEN {
                    return Some(Candidate {
                        range: start..end,
                        hex,
                        resume: prefix_end,
                    });
                }
            } else if VIEW_PREFIX.get(matched) == Some(&b) {
                if matched == 0 {
                    start = pos;
                }
                matched += 1;
                prefix_end = end;
            } else if b == b'c' {
                // "ctkn" has no repeated letter, so only a fresh `c` can restart the prefix.
                matched = 1;
                start = pos;
                prefix_end = end;
            } else {
                matched = 0;
            }
        }
    }
    (matched == VIEW_PREFIX.len()).then_some(Candidate {
        range: start..prefix_end,
        hex,
        resume: prefix_end,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key() -> CanaryKey {
        CanaryKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn token_is_hmac_of_session() {
        // HMAC-SHA256(key, "canary:session-1"), first 8 bytes, computed independently.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"canary:session-1");
        let digest = mac.finalize().into_bytes();
        let want: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let t = key().token_for("session-1");
        assert_eq!(t.render(), format!("CTKN_{want}"));
        assert_eq!(t, key().token_for("session-1"));
        assert_ne!(t, key().token_for("session-2"));
        let other = CanaryKey::from_bytes(b"another key of sufficient length").unwrap();
        assert_ne!(t, other.token_for("session-1"));
    }

    #[test]
    fn short_keys_are_refused_and_nothing_leaks_through_debug() {
        assert!(CanaryKey::from_bytes(b"short").is_err());
        let k = CanaryKey::from_bytes(b"super-secret-key-bytes-here").unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("super"), "{dbg}");
        let t = k.token_for("s");
        assert!(!format!("{t:?}").contains(&t.render()[5..]));
        assert!(CanaryKey::generate().is_ok());
    }

    #[test]
    fn parse_round_trips_and_rejects_malformed() {
        let t = key().token_for("x");
        assert_eq!(CanaryToken::parse(&t.render()), Some(t.clone()));
        assert_eq!(CanaryToken::parse(&t.render().to_uppercase()), Some(t));
        for bad in [
            "",
            "CTKN_",
            "CTKN_0123",
            "CTKN_0123456789abcdeg",
            "ctkn_0123456789abcdef",
        ] {
            assert_eq!(CanaryToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_plain_and_disguised_tokens_with_exact_ranges() {
        let t = CanaryToken::parse("CTKN_0123456789abcdef").unwrap();
        let cases = [
            "CTKN_0123456789abcdef",
            "ctkn_0123456789ABCDEF",
            "C T K N _ 0 1 2 3 4 5 6 7 8 9 a b c d e f",
            "CTKN-0123-4567-89ab-cdef",
            "C\u{200B}TKN_01\u{200D}23456789\u{2060}abcdef",
            "ＣＴＫＮ＿０１２３４５６７８９ａｂｃｄｅｆ",
            // Cyrillic С, Т, К and Greek Ν.
            "\u{0421}\u{0422}\u{041A}\u{039D}_0123456789abcdef",
            "𝐂𝐓𝐊𝐍_𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗𝐚𝐛𝐜𝐝𝐞𝐟",
            "**CTKN**_`0123456789abcdef`",
        ];
        for disguised in cases {
            let text = format!("Sure! The token is {disguised}. Anything else?");
            let ranges = t.find_in(&text);
            assert_eq!(ranges.len(), 1, "{disguised:?}");
            // Exactly the token: from its first letter to its last digit, separators between
            // included, surrounding punctuation and prose untouched.
            let want = disguised.trim_matches(|c: char| !c.is_alphanumeric());
            assert_eq!(&text[ranges[0].clone()], want, "{disguised:?}");
        }
    }

    #[test]
    fn other_tokens_and_near_misses_are_not_reported() {
        let t = CanaryToken::parse("CTKN_0123456789abcdef").unwrap();
        for text in [
            "",
            "CTKN_0123456789abcdee",
            "CTKN_0123456789abcde",
            "CTKN_01234567 and then some words 89abcdef",
            "CTKN_01234567.............89abcdef",
            "CTKN_01234567ж89abcdef",
            "0123456789abcdef",
        ] {
            assert!(t.find_in(text).is_empty(), "{text:?}");
        }
        // A Cyrillic а folds to Latin a: this one is the token.
        assert_eq!(t.find_in("CTKN_0123456789\u{0430}bcdef").len(), 1);
    }

    #[test]
    fn token_after_a_decoy_prefix_is_found() {
        let t = CanaryToken::parse("CTKN_0123456789abcdef").unwrap();
        let text = "CTKN_CTKN_0123456789abcdef";
        assert_eq!(t.find_in(text), vec![5..text.len()]);
        let two = "CTKN_0123456789abcdef / ctkn 0123456789abcdef";
        assert_eq!(t.find_in(two).len(), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let t = key().token_for("s");
        let long = "ctkn".repeat(50_000);
        assert!(t.find_in(&long).is_empty());
        let weird = "ﬀ①\u{E0041}\u{202E}ctkn𝐂𝐓𝐊𝐍ǅ".repeat(100);
        assert!(t.find_in(&weird).is_empty());
    }

    proptest! {
        #[test]
        fn detection_survives_invisible_insertions(
            session in "[a-z0-9]{1,12}",
            invisible in proptest::collection::vec((0usize..40, prop::sample::select(vec![
                "\u{200B}", "\u{200C}", "\u{200D}", "\u{2060}", "\u{FEFF}", "\u{00AD}",
                "\u{202E}", "\u{2066}", "\u{E0020}", "\u{180E}",
            ])), 0..24),
            visible in proptest::collection::vec((0usize..40, prop::sample::select(vec![
                " ", "-", "_", ".", "\u{00A0}", "\u{2013}",
            ])), 0..4),
            prefix in "[a-z ]{0,20}",
            suffix in "[a-z ]{0,20}",
        ) {
            let t = key().token_for(&session);
            let mut chars: Vec<String> = t.render().chars().map(String::from).collect();
            for (at, ins) in invisible.into_iter().chain(visible) {
                let at = 1 + at % (chars.len() - 1);
                chars.insert(at, ins.to_owned());
            }
            let disguised: String = chars.concat();
            let text = format!("{prefix}{disguised}{suffix}");
            let ranges = t.find_in(&text);
            prop_assert_eq!(ranges.len(), 1);
            prop_assert_eq!(&text[ranges[0].clone()], disguised.as_str());
        }
    }
}
