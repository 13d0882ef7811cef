//! The output guard: the last check on a reply before it leaves the daemon.
//!
//! ## What it defends
//! Credential leaks and prompt extraction in model output. One [`OutputGuard::scan`] call
//! - redacts every critical [`Family::Secret`] pattern (API keys, private keys, connection
//!   string passwords, ...) to `[REDACTED:<pattern_name>]`, keeping a key name or public prefix
//!   in front where the pattern isolates the value (`password=[REDACTED:password_assignment]`);
//! - redacts the daemon's own *known secret values* ([`OutputGuard::register_secret`]) wherever
//!   they occur verbatim, to `[REDACTED:known_secret]`. This catches a bare high-entropy secret
//!   that has no `key=` or vendor prefix for a pattern to anchor on, with no false positives;
//! - redacts the session's canary token, in any disguise [`CanaryToken::find_in`] handles, to
//!   `[REDACTED:canary]` and reports `canary_leak`;
//! - reports (never redacts) the [`Family::PromptExtraction`] patterns and the warning-level
//!   secret shapes (bare `Bearer`, JWT), which appear in legitimate answers too.
//!
//! ## What it guarantees
//! - **No fragment survives.** Overlapping redactions are merged into one, so two patterns
//!   covering parts of one secret cannot leave a piece between them. A registered secret never
//!   appears in the output, even when a redaction marker happens to complete it (checked after
//!   redaction; if it cannot be removed the whole reply is withheld).
//! - **Speed on clean text.** One `RegexSet` pass ([`PatternSet::is_match`]) decides whether any
//!   pattern can match; individual patterns (and capture groups) run only when it says yes.
//!   Known secrets use one Aho-Corasick automaton, rebuilt on registration, never per scan.
//! - **Never fails.** Construction can fail (fail closed); scanning cannot.
//!
//! ## What it does not do
//! It does not find secrets that the model has encoded (base64, reversed, spelled out), split
//! with invisible characters (except the canary), or paraphrased; known secrets are matched
//! exactly, case included. It does not decide what happens to a blocked reply: the caller does.

use std::fmt;
use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Serialize;

use crate::canary::CanaryToken;
use crate::patterns::{Family, PatternSet, Registry};
use crate::{Finding, GuardError, Severity};

/// Registered values shorter than this (in characters) are ignored: too likely to occur by
/// chance in ordinary text, and too weak to be worth protecting this way.
pub const MIN_KNOWN_SECRET_CHARS: usize = 8;
/// Label of exact-match redactions.
pub const KNOWN_SECRET: &str = "known_secret";
/// Label of canary redactions.
pub const CANARY: &str = "canary";

/// What [`OutputGuard::scan`] found and the text to send instead.
#[derive(Debug, Clone, Serialize)]
pub struct OutputScan {
    /// The reply with every critical finding redacted.
    pub text: String,
    /// One finding per pattern (or known secret, or canary) that matched, in order of first
    /// detection.
    pub findings: Vec<Finding>,
    /// Any critical finding: the reply was redacted.
    pub blocked: bool,
    /// No finding at all.
    pub safe: bool,
    /// Number of redaction markers inserted (after merging overlaps).
    pub redactions: usize,
}

/// The output guard. Build it once; [`register_secret`](Self::register_secret) the daemon's
/// resolved secret values; call [`scan`](Self::scan) on every reply.
#[derive(Clone)]
pub struct OutputGuard {
    /// Secret and prompt-extraction patterns, one set, so clean text costs one pass.
    patterns: PatternSet,
    known: KnownSecrets,
    /// Every marker this guard can insert; a registered value inside one would be re-created by
    /// redaction itself, so such values are refused.
    markers: Vec<String>,
}

impl OutputGuard {
    pub fn new() -> Result<Self, GuardError> {
        let registry = Registry::global()?;
        let patterns = registry.select(&[Family::Secret, Family::PromptExtraction])?;
        let markers = patterns
            .patterns()
            .iter()
            .map(|p| p.name())
            .chain([KNOWN_SECRET, CANARY])
            .map(marker)
            .collect();
        Ok(OutputGuard {
            patterns,
            known: KnownSecrets::default(),
            markers,
        })
    }

    /// Adds a known secret value (a resolved API key, the gateway token, ...) for exact-match
    /// redaction. Returns `Ok(false)` when the value is ignored: shorter than
    /// [`MIN_KNOWN_SECRET_CHARS`], already registered, or part of a redaction marker.
    pub fn register_secret(&mut self, value: &str) -> Result<bool, GuardError> {
        self.register_secrets([value]).map(|n| n == 1)
    }

    /// Adds several known secret values, rebuilding the matcher once. Returns how many were
    /// accepted.
    pub fn register_secrets<'v>(
        &mut self,
        values: impl IntoIterator<Item = &'v str>,
    ) -> Result<usize, GuardError> {
        let mut accepted = Vec::new();
        for v in values {
            let fresh = v.chars().count() >= MIN_KNOWN_SECRET_CHARS
                && !self.known.values.iter().any(|k| k == v)
                && !accepted.contains(&v)
                && !self.markers.iter().any(|m| m.contains(v));
            if fresh {
                accepted.push(v);
            }
        }
        if accepted.is_empty() {
            return Ok(0);
        }
        let mut values = self.known.values.clone();
        values.extend(accepted.iter().map(|v| (*v).to_owned()));
        self.known = KnownSecrets::build(values)?;
        Ok(accepted.len())
    }

    /// How many known secret values are registered.
    pub fn known_secret_count(&self) -> usize {
        self.known.values.len()
    }

    /// Scans one reply. `canary` is the session's canary token, if the session has one.
    pub fn scan(&self, text: &str, canary: Option<&CanaryToken>) -> OutputScan {
        let mut spans = Vec::new();
        let mut findings = Vec::new();

        if self.patterns.is_match(text) {
            pattern_pass(&self.patterns, text, false, &mut spans, &mut findings);
        }
        self.known_pass(text, &mut spans, &mut findings);
        if let Some(token) = canary {
            let ranges = token.find_in(text);
            if !ranges.is_empty() {
                push_unique(
                    &mut findings,
                    Finding::new("canary_leak", "canary", Severity::Critical),
                );
                spans.extend(ranges.into_iter().map(|range| Span {
                    range,
                    label: CANARY,
                }));
            }
        }

        let (mut out, mut redactions) = redact(text, spans);
        if redactions > 0 {
            // A marker next to the surrounding text can complete a pattern match, or a
            // registered value containing `[` or `]`. Redact until nothing new appears.
            for _ in 1..MAX_PASSES {
                let mut again = Vec::new();
                if self.patterns.is_match(&out) {
                    pattern_pass(&self.patterns, &out, false, &mut again, &mut findings);
                }
                self.known_pass(&out, &mut again, &mut findings);
                if again.is_empty() {
                    break;
                }
                let (next, n) = redact(&out, again);
                out = next;
                redactions += n;
            }
            if self.known.is_match(&out) {
                // Not reached for any input found so far; if it were, withhold the reply
                // rather than send a registered secret.
                out = marker(KNOWN_SECRET);
            }
        }

        let blocked = findings.iter().any(|f| f.severity == Severity::Critical);
        OutputScan {
            text: out,
            safe: findings.is_empty(),
            blocked,
            findings,
            redactions,
        }
    }

    fn known_pass(&self, text: &str, spans: &mut Vec<Span>, findings: &mut Vec<Finding>) {
        let before = spans.len();
        self.known.find(text, spans);
        if spans.len() > before {
            push_unique(
                findings,
                Finding::new(KNOWN_SECRET, "secret", Severity::Critical),
            );
        }
    }
}

/// Redaction passes before giving up on reaching a fixpoint. Real text needs one; two only
/// when a marker completes a new match.
pub(crate) const MAX_PASSES: usize = 8;

/// One pass of the selected patterns over `text`: collects the spans to redact (critical
/// secrets; every secret when `redact_warnings`) and a finding per matching pattern. Patterns
/// of other families (prompt extraction) are reported as warnings and never redacted: a reply
/// quoting its own instructions cannot be cut without mangling it.
pub(crate) fn pattern_pass(
    set: &PatternSet,
    text: &str,
    redact_warnings: bool,
    spans: &mut Vec<Span>,
    findings: &mut Vec<Finding>,
) {
    for p in set.matching(text) {
        if p.family() != Family::Secret {
            push_unique(
                findings,
                Finding::new(p.name(), p.category(), Severity::Warning),
            );
            continue;
        }
        let redacts = redact_warnings || p.severity() == Severity::Critical;
        let mut hit = false;
        for_each_secret(p, text, |range| {
            hit = true;
            if redacts {
                spans.push(Span {
                    range,
                    label: p.name(),
                });
            }
        });
        if hit {
            push_unique(findings, Finding::new(p.name(), p.category(), p.severity()));
        }
    }
}

impl fmt::Debug for OutputGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the registered values.
        f.debug_struct("OutputGuard")
            .field("patterns", &self.patterns.patterns().len())
            .field("known_secrets", &self.known.values.len())
            .finish()
    }
}

/// The registered values and their automaton.
#[derive(Clone, Default)]
struct KnownSecrets {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl KnownSecrets {
    fn build(values: Vec<String>) -> Result<Self, GuardError> {
        // Standard semantics so that overlapping occurrences are all reported: redacting only
        // leftmost matches could leave the tail of a value that overlaps another.
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&values)
            .map_err(|e| GuardError::Config(format!("known secrets: {e}")))?;
        Ok(KnownSecrets {
            values,
            matcher: Some(matcher),
        })
    }

    fn is_match(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    fn find(&self, text: &str, spans: &mut Vec<Span>) {
        let Some(m) = &self.matcher else { return };
        match m.try_find_overlapping_iter(text) {
            Ok(iter) => spans.extend(iter.map(|hit| Span {
                range: hit.range(),
                label: KNOWN_SECRET,
            })),
            // Unreachable with Standard semantics; fail closed rather than pass the text.
            Err(_) => spans.push(Span {
                range: 0..text.len(),
                label: KNOWN_SECRET,
            }),
        }
    }
}

/// A byte range to replace with `[REDACTED:<label>]`.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) range: Range<usize>,
    pub(crate) label: &'static str,
}

/// On a tie (same start, same end) the more specific label wins: canary, then known secret,
/// then the pattern.
fn label_rank(label: &str) -> u8 {
    match label {
        CANARY => 0,
        KNOWN_SECRET => 1,
        _ => 2,
    }
}

/// The marker that replaces a redacted span.
pub(crate) fn marker(label: &str) -> String {
    format!("[REDACTED:{label}]")
}

/// Calls `each` with the byte range of every secret `pattern` finds in `text`: the `secret`
/// capture group when the pattern has one, else the whole match.
///
/// Two adjustments: a value that overlaps a redaction marker already in the text is skipped, so
/// a broad value class (a password may hold almost any character) cannot swallow an earlier
/// marker on a second pass (redaction is idempotent); and a captured value's final `.` or `,`
/// is left out when whitespace or the end of the text follows, because in prose that is the
/// sentence's punctuation, not the secret's.
pub(crate) fn for_each_secret(
    pattern: &crate::patterns::Pattern,
    text: &str,
    mut each: impl FnMut(Range<usize>),
) {
    let Some(re) = pattern.regex() else {
        pattern.find_iter(text).for_each(each);
        return;
    };
    let captures = re.captures_len() > 1;
    let mut locs = re.capture_locations();
    let secret_group = re
        .capture_names()
        .position(|n| n == Some("secret"))
        .unwrap_or(0);
    let markers = marker_spans(text);
    let mut at = 0;
    while at <= text.len() {
        let (whole, value) = if captures {
            let Some(m) = re.captures_read_at(&mut locs, text, at) else {
                break;
            };
            let value = locs.get(secret_group).map_or(m.range(), |(s, e)| s..e);
            (m.range(), value)
        } else {
            let Some(m) = re.find_at(text, at) else {
                break;
            };
            (m.range(), m.range())
        };
        let Some(found) = text.get(value.clone()) else {
            break;
        };
        // Markers are sorted and disjoint: the first one ending after the value's start is the
        // only one that can overlap it.
        let first = markers.partition_point(|m| m.end <= value.start);
        if let Some(m) = markers.get(first).filter(|m| m.start < value.end) {
            // Part of an earlier redaction: leave it, and look again from inside the marker,
            // where a shorter secret may start, exactly as the next pass would.
            let from = whole.start.max(m.start);
            at = from
                + text
                    .get(from..)
                    .and_then(|r| r.chars().next())
                    .map_or(1, char::len_utf8);
            continue;
        }
        let captured = value != whole;
        let sentence_end = captured
            && found.len() > 1
            && found.ends_with(['.', ','])
            && text
                .get(value.end..)
                .is_none_or(|rest| rest.chars().next().is_none_or(char::is_whitespace));
        let end = if sentence_end {
            value.end - 1
        } else {
            value.end
        };
        if value.start < end {
            each(value.start..end);
        }
        at = if whole.end > at {
            whole.end
        } else {
            // An empty match: step over one character.
            at + text
                .get(at..)
                .and_then(|r| r.chars().next())
                .map_or(1, char::len_utf8)
        };
    }
}

const MARKER_OPEN: &str = "[REDACTED:";

/// Byte ranges of the redaction markers already in `text`: `[REDACTED:` plus the label and
/// closing bracket when present. Empty (and free) for text without markers.
fn marker_spans(text: &str) -> Vec<Range<usize>> {
    text.match_indices(MARKER_OPEN)
        .map(|(i, _)| {
            let after = i + MARKER_OPEN.len();
            let rest = text.get(after..).unwrap_or_default();
            // Labels are pattern names; bounding the run keeps hostile "markers" short.
            let label = rest
                .bytes()
                .take(64)
                .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
                .count();
            let close = usize::from(rest.as_bytes().get(label) == Some(&b']'));
            i..after + label + close
        })
        .collect()
}

/// Replaces every span with its marker, merging overlapping spans first so no byte between
/// two overlapping secrets survives. The merged span keeps the label of the one that starts
/// first (the longest, then the most specific, on a tie). Returns the new text and the number
/// of markers.
pub(crate) fn redact(text: &str, mut spans: Vec<Span>) -> (String, usize) {
    if spans.is_empty() {
        return (text.to_owned(), 0);
    }
    spans.sort_by(|a, b| {
        a.range
            .start
            .cmp(&b.range.start)
            .then(b.range.end.cmp(&a.range.end))
            .then(label_rank(a.label).cmp(&label_rank(b.label)))
    });
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match merged.last_mut() {
            Some(last) if s.range.start < last.range.end => {
                last.range.end = last.range.end.max(s.range.end);
            }
            _ => merged.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for s in &merged {
        // Ranges come from matchers over `text`, so they lie on char boundaries; `get` keeps
        // this total anyway.
        out.push_str(text.get(at..s.range.start).unwrap_or_default());
        out.push_str(&marker(s.label));
        at = s.range.end;
    }
    out.push_str(text.get(at..).unwrap_or_default());
    (out, merged.len())
}

pub(crate) fn push_unique(findings: &mut Vec<Finding>, f: Finding) {
    if !findings.iter().any(|g| g.name == f.name) {
        findings.push(f);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::canary::CanaryKey;

    /// Compiling the pattern set is the expensive part; build it once for all tests.
    static BASE: std::sync::LazyLock<OutputGuard> =
        std::sync::LazyLock::new(|| OutputGuard::new().unwrap());

    fn guard() -> OutputGuard {
        BASE.clone()
    }

    fn names(scan: &OutputScan) -> Vec<&str> {
        scan.findings.iter().map(|f| f.name.as_ref()).collect()
    }

    #[test]
    fn clean_reply_passes_unchanged() {
        let text = "Here is how to configure the service: set `timeout = 30` and restart it.\n\
                    The commit 9a038989604e8da62ecddbe2094b16ce1b778be1 fixed the bug.";
        let s = guard().scan(text, None);
        assert!(s.safe && !s.blocked, "{:?}", s.findings);
        assert_eq!(s.text, text);
        assert_eq!(s.redactions, 0);
    }

    #[test]
    fn critical_secrets_are_redacted_and_block() {
        let s = guard().scan(
            "Your key is sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx and the AWS id \
             AKIAZ7QRSTUVWXYZ2345.",
            None,
        );
        assert!(s.blocked && !s.safe);
        assert_eq!(
            s.text,
            "Your key is sk-ant-[REDACTED:anthropic_key] and the AWS id \
             [REDACTED:aws_access_key]."
        );
        assert_eq!(names(&s), ["aws_access_key", "anthropic_key"]);
        assert!(s.findings.iter().all(|f| f.category == "secret"));
    }

    #[test]
    fn key_names_are_kept_values_redacted() {
        let s = guard().scan(
            "DATABASE_URL=postgres://app:s3cr3t-P4ss@db.internal:5432/app\npassword: Hunter2!x",
            None,
        );
        assert_eq!(
            s.text,
            "DATABASE_URL=postgres://app:[REDACTED:db_connection_string]@db.internal:5432/app\n\
             password: [REDACTED:password_assignment]"
        );
    }

    #[test]
    fn warnings_are_reported_not_redacted() {
        let text = "Send `Authorization: Bearer abc123def456ghi789` with the request.";
        let s = guard().scan(text, None);
        assert_eq!(s.text, text);
        assert!(!s.blocked && !s.safe);
        assert_eq!(names(&s), ["bearer_token"]);
        assert_eq!(s.findings[0].severity, Severity::Warning);
    }

    #[test]
    fn prompt_extraction_is_detect_only() {
        // The phrasing belongs to Family::PromptExtraction (patterns/extraction.rs). Whatever
        // those patterns report, the guard must not redact it or block on it.
        let text = "My system prompt is: You are a helpful assistant. My instructions are to \
                    be brief.";
        let s = guard().scan(text, None);
        assert_eq!(s.text, text);
        assert!(!s.blocked);
        assert!(s.findings.iter().all(|f| f.severity == Severity::Warning));
        let reg = Registry::global().unwrap();
        if reg.get("system_prompt_label").is_some() {
            assert!(
                names(&s).contains(&"system_prompt_label"),
                "{:?}",
                s.findings
            );
        }
    }

    #[test]
    fn overlapping_matches_merge_without_fragments() {
        // The AWS id is also the tail of a registered value; the registered value starts
        // earlier. One merged marker, nothing of either left.
        let mut g = guard();
        assert!(g.register_secret("prefix-AKIAZ7QRSTUVWXYZ").unwrap());
        let s = g.scan("x prefix-AKIAZ7QRSTUVWXYZ2345 y", None);
        assert_eq!(s.text, "x [REDACTED:known_secret] y");
        assert_eq!(s.redactions, 1);
        assert_eq!(names(&s), ["aws_access_key", "known_secret"]);
    }

    #[test]
    fn bare_known_secret_is_redacted() {
        let mut g = guard();
        assert!(
            g.register_secret("f6CGV4aMM9zedoh3OUNbSakBymo7yplB")
                .unwrap()
        );
        assert!(!g.register_secret("short").unwrap());
        assert!(
            !g.register_secret("f6CGV4aMM9zedoh3OUNbSakBymo7yplB")
                .unwrap()
        );
        assert!(!g.register_secret("REDACTED:known_secret").unwrap());
        assert_eq!(g.known_secret_count(), 1);
        let s = g.scan("the token:f6CGV4aMM9zedoh3OUNbSakBymo7yplB.", None);
        assert_eq!(s.text, "the token:[REDACTED:known_secret].");
        assert!(s.blocked);
        assert!(!format!("{g:?}").contains("f6CG"));
    }

    #[test]
    fn canary_is_redacted_in_disguise() {
        let key = CanaryKey::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        let token = key.token_for("session-7");
        let spaced: String = token
            .render()
            .chars()
            .flat_map(|c| [c, '\u{200B}'])
            .collect();
        let s = guard().scan(&format!("ok: {spaced}!"), Some(&token));
        assert_eq!(s.text, "ok: [REDACTED:canary]\u{200B}!");
        assert_eq!(names(&s), ["canary_leak"]);
        assert!(s.blocked);
        let other = key.token_for("session-8");
        assert!(guard().scan(&token.render(), Some(&other)).safe);
    }

    #[test]
    fn marker_completing_a_registered_value_is_caught() {
        // The value begins with the tail of a marker: redacting the AWS id creates it.
        let mut g = guard();
        assert!(g.register_secret("key]-tail-of-value").unwrap());
        let s = g.scan("AKIAZ7QRSTUVWXYZ2345-tail-of-value", None);
        assert!(!s.text.contains("key]-tail-of-value"), "{}", s.text);
    }

    #[test]
    fn hostile_inputs() {
        let g = guard();
        assert!(g.scan("", None).safe);
        let huge = "a".repeat(3 << 20);
        assert!(g.scan(&huge, None).safe);
        let many = "sk_live_ReTllpYQYfIZu2Jnf2lAPFjD ".repeat(10_000);
        let s = g.scan(&many, None);
        assert_eq!(s.redactions, 10_000);
        assert!(!s.text.contains("ReTll"));
        let unicode = "ｓｋ＿ｌｉｖｅ \u{202E}🏴\u{E0067}AKIA ﬀ\u{0000}".repeat(1000);
        let _ = g.scan(&unicode, None);
    }

    #[test]
    fn scan_is_idempotent_on_its_output() {
        let g = guard();
        let text = "api_key=Ab3dEf6hIj9kLm2nOp5qRs url https://u:p4ss@h.example/ \
                    -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n\
                    -----END PRIVATE KEY-----";
        let once = g.scan(text, None).text;
        let twice = g.scan(&once, None);
        assert_eq!(twice.text, once);
    }

    proptest! {
        #[test]
        fn scanning_its_own_output_changes_nothing(
            parts in proptest::collection::vec(prop_oneof![
                "[ -~]{0,12}",
                Just("password=".to_owned()),
                Just("token: ".to_owned()),
                Just("https://u:".to_owned()),
                Just("@host/".to_owned()),
                Just("[REDACTED:".to_owned()),
                Just("]".to_owned()),
                Just("AKIA".to_owned()),
                Just("-----BEGIN PRIVATE KEY-----\n".to_owned()),
                "[A-Za-z0-9+/=_.-]{8,48}",
            ], 0..12),
        ) {
            let g = guard();
            let text = parts.concat();
            let once = g.scan(&text, None).text;
            prop_assert_eq!(g.scan(&once, None).text, once, "input {:?}", text);
        }

        #[test]
        fn registered_secret_never_survives(
            secret in "[ -~]{8,40}",
            before in "(?s).{0,60}",
            after in "(?s).{0,60}",
            repeat in 1usize..3,
        ) {
            let mut g = guard();
            prop_assume!(g.register_secret(&secret).unwrap());
            let text = format!("{before}{}{after}", secret.repeat(repeat));
            let s = g.scan(&text, None);
            prop_assert!(!s.text.contains(&secret), "{:?} -> {:?}", text, s.text);
            prop_assert!(s.blocked);
        }

        #[test]
        fn overlapping_registered_secrets_never_survive(
            a in "[a-c\\[\\]]{8,12}",
            b in "[a-c\\[\\]]{8,12}",
            noise in "[a-c\\[\\]RED:_ ]{0,40}",
        ) {
            let mut g = guard();
            let _ = g.register_secrets([a.as_str(), b.as_str()]).unwrap();
            let text = format!("{noise}{a}{b}{noise}{b}{a}");
            let s = g.scan(&text, None);
            for v in [&a, &b] {
                if g.known.values.contains(v) {
                    prop_assert!(!s.text.contains(v.as_str()), "{:?} -> {:?}", text, s.text);
                }
            }
        }
    }
}
