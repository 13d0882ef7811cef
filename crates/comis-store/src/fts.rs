//! Turning user text into an FTS5 query that means "documents with these words".
//!
//! Defends: FTS5 query-syntax injection. Search text comes from users and from the model;
//! passed to `MATCH` as is, `"`, `*`, `NEAR(`, `OR`, `AND`, `NOT`, `-`, `^`, `+`, `:` and
//! `{col}` would either fail the query (an error the attacker controls) or change what it
//! means (a column filter, a prefix scan over the whole index, a negation).
//!
//! Guarantees: [`terms`] keeps only runs of letters and digits (lowercased, deduplicated, at
//! most [`MAX_TERMS`] of at most [`MAX_TERM_CHARS`] characters, which bounds the cost of one
//! search); [`any_of`] and [`all_of`] wrap each in double quotes (so FTS5 sees a string, never
//! an operator or a column name) and join them with `OR` / `AND`. The result is always a
//! syntactically valid FTS5 query, or `None` when the text has no words.
//!
//! Does not: support FTS5 operators for power users; the CLI and the agent get plain words.

/// Most distinct words used from one query.
pub const MAX_TERMS: usize = 16;
/// Longest word kept, in characters (longer words are cut).
pub const MAX_TERM_CHARS: usize = 64;

/// The distinct words of `text` (letters and digits, lowercased, bounded), in order.
pub fn terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let word: String = word
            .chars()
            .take(MAX_TERM_CHARS)
            .collect::<String>()
            .to_lowercase();
        if terms.contains(&word) {
            continue;
        }
        terms.push(word);
        if terms.len() == MAX_TERMS {
            break;
        }
    }
    terms
}

/// One term as an FTS5 string. Only letters and digits reach here, so there is no quote to
/// escape; doubling is kept so that this stays correct if the word rule is ever loosened.
pub fn quote(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Documents with any of `terms`, or `None` if there are none.
pub fn any_of<S: AsRef<str>>(terms: &[S]) -> Option<String> {
    join(terms, " OR ")
}

/// Documents with all of `terms`, or `None` if there are none.
pub fn all_of<S: AsRef<str>>(terms: &[S]) -> Option<String> {
    join(terms, " AND ")
}

fn join<S: AsRef<str>>(terms: &[S], op: &str) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    Some(
        terms
            .iter()
            .map(|t| quote(t.as_ref()))
            .collect::<Vec<_>>()
            .join(op),
    )
}

/// The words of `text` as a safe FTS5 query (any of them), or `None` if it has none.
pub fn to_match_query(text: &str) -> Option<String> {
    any_of(&terms(text))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn operators_become_words() {
        assert_eq!(
            to_match_query("NEAR(a b) OR c*").unwrap(),
            r#""near" OR "a" OR "b" OR "or" OR "c""#
        );
        assert_eq!(
            to_match_query("content:secret -x").unwrap(),
            r#""content" OR "secret" OR "x""#
        );
        assert_eq!(to_match_query("\"\"\" * - : ( ) ^ +"), None);
        assert_eq!(to_match_query(""), None);
        assert_eq!(
            to_match_query("Café naïve 東京").unwrap(),
            r#""café" OR "naïve" OR "東京""#
        );
    }

    #[test]
    fn bounded() {
        let many: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(
            to_match_query(&many).unwrap().matches(" OR ").count(),
            MAX_TERMS - 1
        );
        let long = "x".repeat(1000);
        assert_eq!(to_match_query(&long).unwrap().len(), MAX_TERM_CHARS + 2);
        assert_eq!(to_match_query("a A a").unwrap(), r#""a""#);
        assert_eq!(all_of(&terms("x: y")).unwrap(), r#""x" AND "y""#);
        assert_eq!(all_of::<&str>(&[]), None);
    }
}
