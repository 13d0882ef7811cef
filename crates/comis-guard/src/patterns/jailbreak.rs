//! Registry family: see [`super::Family`].

use super::PatternDef;

pub(super) const PATTERNS: &[PatternDef] = &[];
