//! Invisible-character stripping and the normalized view every pattern scan runs on.
//!
//! Attackers hide instructions in characters a human reviewer cannot see (zero-width spaces,
//! bidi overrides, the Unicode tag block that spells ASCII invisibly) and split keywords with
//! them or with look-alike letters so that a regex no longer matches. This module defends
//! against both:
//!
//! - [`strip_invisible`] removes 19 categories of invisible or format characters, but keeps the
//!   two legitimate uses that would otherwise break visible text: zero-width joiners *between
//!   emoji* (family and profession emoji) and complete, short *subdivision-flag tag sequences*
//!   (🏴 + tag letters + CANCEL TAG, e.g. the flag of Scotland). Stripping is idempotent.
//! - [`normalize_for_matching`] builds the view detectors score: NFKC (fullwidth and
//!   mathematical letters become ASCII), every invisible character removed (no exceptions),
//!   Cyrillic/Greek look-alikes folded to the Latin letter they imitate (from Unicode UTS #39
//!   intentional confusables), and whitespace runs collapsed to one space.
//!
//! What it does not do: it does not fold every confusable in Unicode (UTS #39 lists thousands;
//! we fold the letters that imitate ASCII, which is what keyword evasion needs), and the
//! normalized view is for matching only: it is never shown to a user or stored.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use crate::{Finding, Severity};

/// The invisible-character categories, each a list of inclusive code point ranges.
pub const INVISIBLE_CATEGORIES: &[(&str, &[(u32, u32)])] = &[
    ("zero_width_space", &[(0x200B, 0x200B)]),
    ("zero_width_joiner", &[(0x200C, 0x200D)]),
    ("directional_mark", &[(0x200E, 0x200F), (0x061C, 0x061C)]),
    ("bidi_embedding_override", &[(0x202A, 0x202E)]),
    ("bidi_isolate", &[(0x2066, 0x2069)]),
    ("word_joiner", &[(0x2060, 0x2060)]),
    ("invisible_operator", &[(0x2061, 0x2064)]),
    ("deprecated_format", &[(0x206A, 0x206F)]),
    ("byte_order_mark", &[(0xFEFF, 0xFEFF)]),
    ("soft_hyphen", &[(0x00AD, 0x00AD)]),
    ("combining_grapheme_joiner", &[(0x034F, 0x034F)]),
    ("mongolian_vowel_separator", &[(0x180E, 0x180E)]),
    ("line_paragraph_separator", &[(0x2028, 0x2029)]),
    ("interlinear_annotation", &[(0xFFF9, 0xFFFB)]),
    (
        "hangul_filler",
        &[(0x115F, 0x1160), (0x3164, 0x3164), (0xFFA0, 0xFFA0)],
    ),
    ("khmer_inherent_vowel", &[(0x17B4, 0x17B5)]),
    ("shorthand_format", &[(0x1BCA0, 0x1BCA3)]),
    ("musical_format", &[(0x1D173, 0x1D17A)]),
    ("variation_selector_supplement", &[(0xE0100, 0xE01EF)]),
    ("tag", &[(0xE0000, 0xE007F)]),
];

const ZWJ: char = '\u{200D}';
const BLACK_FLAG: char = '\u{1F3F4}';
const CANCEL_TAG: char = '\u{E007F}';
/// Longest legitimate subdivision flag tag run (region + subdivision, e.g. "gbsct" is 5).
const MAX_FLAG_TAGS: usize = 7;

/// The category of an invisible character, or `None` for a visible one.
pub fn invisible_category(c: char) -> Option<&'static str> {
    let cp = c as u32;
    // Fast exit: every listed code point is at or above U+00AD.
    if cp < 0xAD {
        return None;
    }
    INVISIBLE_CATEGORIES
        .iter()
        .find(|(_, ranges)| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp)))
        .map(|(name, _)| *name)
}

fn is_invisible(c: char) -> bool {
    invisible_category(c).is_some()
}

/// Emoji that can take part in a ZWJ sequence (an approximation of Extended_Pictographic that
/// covers every RGI ZWJ sequence component).
fn is_pictographic(c: char) -> bool {
    matches!(c as u32,
        0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139 | 0x2194..=0x21FF
        | 0x2300..=0x23FF | 0x24C2 | 0x25A0..=0x25FF | 0x2600..=0x27BF | 0x2934..=0x2935
        | 0x2B00..=0x2BFF | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0x1F000..=0x1FAFF)
}

/// Characters that may sit between an emoji and the ZWJ that follows it.
fn is_emoji_modifier(c: char) -> bool {
    matches!(c as u32, 0xFE0F | 0x1F3FB..=0x1F3FF)
}

fn is_flag_tag(c: char) -> bool {
    matches!(c as u32, 0xE0030..=0xE0039 | 0xE0061..=0xE007A)
}

/// If `rest` (the text after a 🏴) starts with a complete subdivision-flag tag run, its length
/// in chars including the CANCEL TAG.
fn flag_tag_run(rest: &str) -> Option<usize> {
    for (n, c) in rest.chars().enumerate() {
        if c == CANCEL_TAG {
            return (n >= 2).then_some(n + 1);
        }
        if !is_flag_tag(c) || n == MAX_FLAG_TAGS {
            return None;
        }
    }
    None
}

/// What [`scan_invisible`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvisibleScan<'a> {
    /// The text with invisible characters removed (flag sequences and emoji ZWJs kept).
    pub text: Cow<'a, str>,
    /// One finding per category present, in category order.
    pub findings: Vec<Finding>,
    /// Total invisible characters removed.
    pub removed: usize,
}

/// Removes invisible characters, keeping emoji ZWJ sequences and subdivision flags intact.
pub fn strip_invisible(text: &str) -> Cow<'_, str> {
    scan_invisible(text).text
}

/// Removes invisible characters and reports which categories were present. Line and paragraph
/// separators (U+2028/2029) become `\n` rather than vanishing, so two words never fuse.
pub fn scan_invisible(text: &str) -> InvisibleScan<'_> {
    // ASCII has no invisible characters: the common case costs one SIMD-friendly byte scan.
    if text.is_ascii() || !text.chars().any(is_invisible) {
        return InvisibleScan {
            text: Cow::Borrowed(text),
            findings: Vec::new(),
            removed: 0,
        };
    }
    let mut seen = [false; INVISIBLE_CATEGORIES.len()];
    let mut out = String::with_capacity(text.len());
    let mut removed = 0;
    let mut keep_tags = 0usize;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if keep_tags > 0 {
            keep_tags -= 1;
            out.push(c);
            continue;
        }
        if c == BLACK_FLAG {
            if let Some(n) = flag_tag_run(&text[i + c.len_utf8()..]) {
                keep_tags = n;
            }
            out.push(c);
            continue;
        }
        let Some(cat) = invisible_category(c) else {
            out.push(c);
            continue;
        };
        if c == ZWJ {
            let prev = out.chars().rev().find(|&p| !is_emoji_modifier(p));
            let next = iter.peek().map(|&(_, n)| n);
            if prev.is_some_and(is_pictographic) && next.is_some_and(is_pictographic) {
                out.push(c);
                continue;
            }
        }
        if let Some(idx) = INVISIBLE_CATEGORIES
            .iter()
            .position(|(name, _)| *name == cat)
        {
            seen[idx] = true;
        }
        if matches!(c, '\u{2028}' | '\u{2029}') {
            out.push('\n');
        }
        removed += 1;
    }
    let findings = INVISIBLE_CATEGORIES
        .iter()
        .zip(seen)
        .filter(|(_, s)| *s)
        .map(|((name, _), _)| {
            // Tag characters spell hidden ASCII; bidi overrides reorder what a reviewer reads.
            let severity = match *name {
                "tag" | "bidi_embedding_override" | "bidi_isolate" => Severity::Critical,
                _ => Severity::Warning,
            };
            Finding::new(*name, "invisible", severity)
        })
        .collect();
    InvisibleScan {
        text: Cow::Owned(out),
        findings,
        removed,
    }
}

/// Attacker-chosen text made safe to show in an error, a log line or an audit event: control
/// characters and every invisible or bidi-control character become U+FFFD (so a name can neither
/// break a line nor visually reorder what a reader sees), and at most `max` characters are kept,
/// with `…` marking a cut.
pub fn display_safe(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| {
            if c.is_control() || is_invisible(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Folds a look-alike letter to the ASCII letter it imitates; other characters are returned
/// unchanged. Sources: Unicode UTS #39 `intentional.txt` plus the remaining Cyrillic and Greek
/// capitals and small letters that render identically to Latin ones in common fonts.
pub fn fold_homoglyph(c: char) -> char {
    match c {
        // Greek capitals
        'Α' => 'A',
        'Β' => 'B',
        'Ε' => 'E',
        'Ζ' => 'Z',
        'Η' => 'H',
        'Ι' => 'I',
        'Κ' => 'K',
        'Μ' => 'M',
        'Ν' => 'N',
        'Ο' => 'O',
        'Ρ' => 'P',
        'Τ' => 'T',
        'Υ' => 'Y',
        'Χ' => 'X',
        // Greek small
        'α' => 'a',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ϳ' => 'j',
        'ε' => 'e',
        // Cyrillic capitals
        'А' => 'A',
        'В' => 'B',
        'С' => 'C',
        'Е' => 'E',
        'Н' => 'H',
        'І' => 'I',
        'Ј' => 'J',
        'К' => 'K',
        'М' => 'M',
        'О' => 'O',
        'Р' => 'P',
        'Ѕ' => 'S',
        'Т' => 'T',
        'Х' => 'X',
        'У' => 'Y',
        'Ү' => 'Y',
        'Ԁ' => 'D',
        'Ԛ' => 'Q',
        'Ԝ' => 'W',
        // Cyrillic small
        'а' => 'a',
        'с' => 'c',
        'ԁ' => 'd',
        'е' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'у' => 'y',
        'х' => 'x',
        'ԝ' => 'w',
        'ү' => 'y',
        'ѵ' => 'v',
        'ɡ' => 'g',
        // Latin look-alikes outside ASCII
        'ı' => 'i',
        'ɑ' => 'a',
        'ǃ' => '!',
        'ɩ' => 'i',
        'ʏ' => 'y',
        'ᴏ' => 'o',
        _ => c,
    }
}

/// The view detectors match against: NFKC, all invisible characters removed, homoglyphs folded,
/// whitespace runs collapsed to a single space. Never shown to users; only scanned.
pub fn normalize_for_matching(text: &str) -> Cow<'_, str> {
    if text.is_ascii() || is_matching_stable(text) {
        return collapse_whitespace(text);
    }
    let folded: String = text
        .chars()
        .filter(|&c| !is_invisible(c))
        .nfkc()
        .map(fold_homoglyph)
        .collect();
    Cow::Owned(collapse_whitespace(&folded).into_owned())
}

/// Whether the matching view of `text` equals `text` up to whitespace: no invisible character,
/// no homoglyph, and already NFKC. Most non-ASCII prose (accents, CJK, emoji) is, and skipping
/// the rebuild keeps the input guard inside its latency budget.
fn is_matching_stable(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii() || (!is_invisible(c) && fold_homoglyph(c) == c))
        && unicode_normalization::is_nfkc_quick(text.chars())
            == unicode_normalization::IsNormalized::Yes
}

/// Replaces each run of whitespace with one space, or with one `\n` when the run contains a line
/// break, so line-anchored markers (`assistant:` at the start of a line) still match.
/// Borrows when there is nothing to do.
pub fn collapse_whitespace(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let needs = bytes
        .windows(2)
        .any(|w| w[0].is_ascii_whitespace() && w[1].is_ascii_whitespace())
        || bytes
            .iter()
            .any(|&b| b.is_ascii_whitespace() && b != b' ' && b != b'\n')
        || (!text.is_ascii() && text.chars().any(|c| c.is_whitespace() && !c.is_ascii()));
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut run: Option<char> = None;
    for c in text.chars() {
        if c.is_whitespace() {
            let is_break = matches!(c, '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}');
            run = Some(if is_break || run == Some('\n') {
                '\n'
            } else {
                ' '
            });
        } else {
            if let Some(ws) = run.take() {
                out.push(ws);
            }
            out.push(c);
        }
    }
    if let Some(ws) = run {
        out.push(ws);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn strips_zero_width_and_bidi() {
        let s = scan_invisible("ig\u{200B}nore\u{202E}previous\u{FEFF}");
        assert_eq!(s.text, "ignoreprevious");
        assert_eq!(s.removed, 3);
        let names: Vec<_> = s.findings.iter().map(|f| f.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "zero_width_space",
                "bidi_embedding_override",
                "byte_order_mark"
            ]
        );
    }

    #[test]
    fn plain_text_passes_borrowed() {
        assert!(matches!(strip_invisible("hello world"), Cow::Borrowed(_)));
        assert!(matches!(strip_invisible("héllo wörld ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn keeps_scotland_flag_and_family_emoji() {
        let scotland = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
        assert_eq!(strip_invisible(scotland), scotland);
        let family = "👨\u{200D}👩\u{200D}👧";
        assert_eq!(strip_invisible(family), family);
        let skin = "👋🏽\u{200D}❤\u{FE0F}";
        // ZWJ after a skin-toned emoji before another emoji is kept.
        assert_eq!(strip_invisible(skin), skin);
    }

    #[test]
    fn strips_tag_smuggling_even_behind_a_flag() {
        // "ignore previous" spelled in tag characters, dressed up as a flag.
        let tags: String = "ignoreprevious"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
            .collect();
        let smuggled = format!("hi \u{1F3F4}{tags}\u{E007F}!");
        let s = scan_invisible(&smuggled);
        assert_eq!(s.text, "hi \u{1F3F4}!");
        assert_eq!(s.findings[0].name, "tag");
        assert_eq!(s.findings[0].severity, Severity::Critical);
    }

    #[test]
    fn zwj_between_letters_is_stripped() {
        assert_eq!(strip_invisible("pass\u{200D}word"), "password");
        assert_eq!(strip_invisible("👨\u{200D}x"), "👨x");
    }

    #[test]
    fn display_safe_neutralizes_and_bounds() {
        assert_eq!(display_safe("a\nb", 10), "a\u{FFFD}b");
        assert_eq!(
            display_safe("evil\u{202E}txt.exe", 20),
            "evil\u{FFFD}txt.exe"
        );
        assert_eq!(display_safe(&"x".repeat(20), 5), "xxxxx…");
        assert_eq!(display_safe("exact", 5), "exact");
        assert_eq!(display_safe("Zoë ✓", 10), "Zoë ✓");
    }

    #[test]
    fn separators_become_newlines() {
        assert_eq!(
            strip_invisible("ignore\u{2028}previous"),
            "ignore\nprevious"
        );
    }

    #[test]
    fn normalized_view_defeats_evasion() {
        // Cyrillic о and е, fullwidth letters, zero-width joiners, doubled spaces.
        let s = "ign\u{043E}r\u{0435}  ａｌｌ\u{200D} previ\u{200B}ous";
        assert_eq!(normalize_for_matching(s), "ignore all previous");
        assert_eq!(normalize_for_matching("𝐢𝐠𝐧𝐨𝐫𝐞"), "ignore");
        assert_eq!(normalize_for_matching("a \t\r\n  b\tc"), "a\nb c");
        // Already-stable non-ASCII text is returned as is (borrowed when no whitespace changes).
        assert!(matches!(
            normalize_for_matching("Zoë's café ✓ 東京"),
            Cow::Borrowed(_)
        ));
        // A single ligature or homoglyph anywhere forces the full rebuild.
        assert_eq!(normalize_for_matching("café ﬁle"), "café file");
        assert_eq!(normalize_for_matching("café раss"), "café pass");
    }

    #[test]
    fn at_least_fifteen_categories() {
        assert!(INVISIBLE_CATEGORIES.len() >= 15);
        for (name, ranges) in INVISIBLE_CATEGORIES {
            for &(lo, hi) in *ranges {
                for cp in [lo, hi] {
                    let c = char::from_u32(cp).unwrap();
                    assert_eq!(invisible_category(c), Some(*name));
                }
            }
        }
    }

    proptest! {
        #[test]
        fn stripping_is_idempotent(s in "(?s).{0,64}|[a-z\u{200B}-\u{200F}\u{2060}\u{E0061}-\u{E007F}\u{1F3F4}👨👩]{0,32}") {
            let once = strip_invisible(&s).into_owned();
            let twice = strip_invisible(&once).into_owned();
            prop_assert_eq!(&once, &twice);
        }

        #[test]
        fn normalized_view_has_no_invisible(s in "(?s).{0,64}") {
            let n = normalize_for_matching(&s);
            prop_assert!(!n.chars().any(is_invisible));
        }
    }
}
