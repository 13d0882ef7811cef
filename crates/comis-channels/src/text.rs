//! Text helpers every adapter shares: splitting replies to a platform's limit.
//!
//! Guarantees: every chunk is non-empty and within the limit (in characters, UTF-8 bytes or
//! UTF-16 code units, as the platform counts); chunks are cut on character boundaries, at a line break when one is in reach, else
//! at a space, else hard; concatenating the chunks gives back the text apart from the break
//! characters cut at. Does not know any markup: a code block may be split in the middle.

/// How a platform counts its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenUnit {
    /// Unicode scalar values (Discord, Slack).
    Chars,
    /// UTF-8 bytes (IRC's line limit).
    Bytes,
    /// UTF-16 code units (Telegram): a character outside the BMP, such as most emoji, counts 2.
    Utf16,
}

impl LenUnit {
    /// The size of `c` in this unit.
    pub fn of(self, c: char) -> usize {
        match self {
            LenUnit::Chars => 1,
            LenUnit::Bytes => c.len_utf8(),
            LenUnit::Utf16 => c.len_utf16(),
        }
    }

    /// The length of `s` in this unit.
    pub fn measure(self, s: &str) -> usize {
        match self {
            LenUnit::Bytes => s.len(),
            _ => s.chars().map(|c| self.of(c)).sum(),
        }
    }
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
        let len = unit.of(c);
        if used + len > max {
            // A single character larger than the limit still has to go somewhere.
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

    #[test]
    fn utf16_limit_counts_astral_characters_twice() {
        // Telegram's 4096 UTF-16 units hold only 2048 emoji.
        let chunks = split_message(&"😀".repeat(4096), 4096, LenUnit::Utf16);
        assert_eq!(chunks.len(), 2);
        assert!(chunks.iter().all(|c| c.chars().count() == 2048));
        assert_eq!(split_message("😀😀", 1, LenUnit::Utf16), ["😀", "😀"]);
        assert_eq!(LenUnit::Utf16.measure("a😀é"), 4);
    }

    proptest! {
        #[test]
        fn chunks_respect_the_limit(text in ".{0,300}", max in 1usize..50) {
            for unit in [LenUnit::Chars, LenUnit::Bytes, LenUnit::Utf16] {
                let chunks = split_message(&text, max, unit);
                for c in &chunks {
                    prop_assert!(!c.is_empty());
                    let len = unit.measure(c);
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
