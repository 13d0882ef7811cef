//! Text helpers every adapter shares: splitting replies to a platform's limit.
//!
//! Guarantees: every chunk is non-empty and within the limit (in characters or UTF-8 bytes, as
//! asked); chunks are cut on character boundaries, at a line break when one is in reach, else
//! at a space, else hard; concatenating the chunks gives back the text apart from the break
//! characters cut at. Does not know any markup: a code block may be split in the middle.

/// How a platform counts its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenUnit {
    Chars,
    Bytes,
}

/// Splits `text` into chunks of at most `max` units. A `max` of 0 is treated as 1.
pub fn split_message(text: &str, max: usize, unit: LenUnit) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = prefix_end(rest, max, unit);
        if end == rest.len() {
            out.push(rest.to_owned());
            break;
        }
        let window = &rest[..end];
        // Prefer the last line break, then the last whitespace, in the back half of the window
        // (a break near the start would make many tiny chunks).
        let floor = window.len() / 2;
        let cut = window
            .rfind('\n')
            .filter(|&i| i >= floor && i > 0)
            .or_else(|| {
                window
                    .char_indices()
                    .rev()
                    .find(|&(i, c)| c.is_whitespace() && i >= floor && i > 0)
                    .map(|(i, _)| i)
            });
        match cut {
            Some(i) => {
                let sep_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                push_nonempty(&mut out, &rest[..i]);
                rest = &rest[i + sep_len..];
            }
            None => {
                push_nonempty(&mut out, window);
                rest = &rest[end..];
            }
        }
    }
    out
}

fn push_nonempty(out: &mut Vec<String>, s: &str) {
    if !s.is_empty() {
        out.push(s.to_owned());
    }
}

/// Byte index just past the longest prefix of `s` within `max` units (at least one character).
fn prefix_end(s: &str, max: usize, unit: LenUnit) -> usize {
    let mut used = 0usize;
    for (i, c) in s.char_indices() {
        let len = match unit {
            LenUnit::Chars => 1,
            LenUnit::Bytes => c.len_utf8(),
        };
        if used + len > max {
            // A single character larger than the byte limit still has to go somewhere.
            return if i == 0 { c.len_utf8() } else { i };
        }
        used += len;
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split_message("hello", 10, LenUnit::Chars), ["hello"]);
        assert!(split_message("", 10, LenUnit::Chars).is_empty());
    }

    #[test]
    fn prefers_line_then_space_breaks() {
        assert_eq!(
            split_message("aaaa bbbb\ncccc", 12, LenUnit::Chars),
            ["aaaa bbbb", "cccc"]
        );
        assert_eq!(
            split_message("aaaa bbbb cccc", 10, LenUnit::Chars),
            ["aaaa bbbb", "cccc"]
        );
        assert_eq!(
            split_message("abcdefghij", 4, LenUnit::Chars),
            ["abcd", "efgh", "ij"]
        );
    }

    #[test]
    fn byte_limit_never_cuts_a_character() {
        let chunks = split_message("ééééé", 3, LenUnit::Bytes);
        assert_eq!(chunks, ["é", "é", "é", "é", "é"]);
    }

    proptest! {
        #[test]
        fn chunks_respect_the_limit(text in ".{0,300}", max in 1usize..50) {
            for unit in [LenUnit::Chars, LenUnit::Bytes] {
                let chunks = split_message(&text, max, unit);
                for c in &chunks {
                    prop_assert!(!c.is_empty());
                    let len = match unit { LenUnit::Chars => c.chars().count(), LenUnit::Bytes => c.len() };
                    let one_char = c.chars().count() == 1;
                    prop_assert!(len <= max || one_char, "chunk {c:?} over {max}");
                }
                // Nothing but break characters is lost.
                let kept: usize = chunks.iter().map(|c| c.chars().count()).sum();
                let breaks = text.chars().filter(|c| c.is_whitespace()).count();
                prop_assert!(kept + breaks >= text.chars().count());
            }
        }
    }
}
