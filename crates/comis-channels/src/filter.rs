//! The fail-closed sender filter every channel shares.
//!
//! Guarantees: an empty list lets nobody in; `*` must be written to let everybody in; an entry
//! without `*`/`?` matches an identity exactly (ASCII case-insensitively: IRC nicks and mail
//! addresses are case-insensitive); an entry with them is a glob (`*` any run, `?` one
//! character), as IRC masks are written. Matching is linear in practice (the two-pointer glob
//! algorithm, no regex, no recursion), so a hostile identity cannot make it slow.
//!
//! Does not guarantee that an identity is authentic: that is the platform's job (IRC services,
//! mail authentication). A nick can be taken by anyone when services do not protect it; masks
//! with a host part are the stronger choice on IRC.

/// `allowFrom`, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderFilter {
    entries: Vec<String>,
}

impl SenderFilter {
    pub fn new<S: AsRef<str>>(allow_from: &[S]) -> SenderFilter {
        SenderFilter {
            entries: allow_from
                .iter()
                .map(|e| e.as_ref().trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// True when any identity matches any entry. Nobody when the list is empty.
    pub fn allows<S: AsRef<str>>(&self, identities: &[S]) -> bool {
        self.entries
            .iter()
            .any(|entry| identities.iter().any(|id| matches(entry, id.as_ref())))
    }

    /// True when the filter lets nobody in.
    pub fn is_closed(&self) -> bool {
        self.entries.is_empty()
    }
}

fn matches(entry: &str, identity: &str) -> bool {
    if entry.contains(['*', '?']) {
        glob(entry, identity)
    } else {
        entry.eq_ignore_ascii_case(identity)
    }
}

/// `*`/`?` glob, ASCII case-insensitive. Iterative with one backtrack point: O(n·m) worst case.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let t: Vec<char> = text.chars().map(|c| c.to_ascii_lowercase()).collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_list_lets_nobody_in() {
        let f = SenderFilter::new::<&str>(&[]);
        assert!(f.is_closed());
        assert!(!f.allows(&["alice", ""]));
        assert!(!SenderFilter::new(&["", "  "]).allows(&[""]));
    }

    #[test]
    fn star_lets_everybody_in() {
        let f = SenderFilter::new(&["*"]);
        assert!(f.allows(&["anyone"]));
        assert!(f.allows(&[""]));
    }

    #[test]
    fn exact_entries_match_whole_identities_case_insensitively() {
        let f = SenderFilter::new(&["Alice", "bob@example.org"]);
        assert!(f.allows(&["alice"]));
        assert!(f.allows(&["BOB@example.ORG"]));
        assert!(!f.allows(&["alice2"]));
        assert!(!f.allows(&["malice"]));
        assert!(!f.allows(&["bob@example.org.evil"]));
    }

    #[test]
    fn irc_masks_glob() {
        let f = SenderFilter::new(&["*!*@trusted.example", "op?!ident@*"]);
        assert!(f.allows(&["x", "mallory!m@trusted.example"]));
        assert!(!f.allows(&["mallory!m@trusted.example.evil"]));
        assert!(f.allows(&["op1!ident@host"]));
        assert!(!f.allows(&["op12!ident@host"]));
        assert!(!f.allows(&["op1!other@host"]));
    }

    #[test]
    fn pathological_globs_stay_fast() {
        let pattern = "*a*a*a*a*a*a*a*a*b";
        let text = "a".repeat(5_000);
        assert!(!glob(pattern, &text));
    }

    proptest! {
        #[test]
        fn a_literal_matches_itself_and_star_matches_all(s in "[a-zA-Z0-9!@.]{0,40}") {
            prop_assert!(glob(&s, &s));
            prop_assert!(glob("*", &s));
            let with_star = format!("{s}*");
            let text = format!("{}tail", s);
            prop_assert!(glob(&with_star, &text));
        }

        #[test]
        fn glob_never_panics(p in ".{0,30}", t in ".{0,60}") {
            let _ = glob(&p, &t);
        }
    }
}
