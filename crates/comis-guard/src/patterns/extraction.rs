//! Prompt-extraction disclosures: model *output* that labels text as its system prompt or its
//! original instructions, the tell-tale of a successful extraction attack. The output guard
//! reports these as warnings (detect, do not redact): the canary token is the precise signal,
//! these catch paraphrased leaks that drop the canary.

use super::{Family::PromptExtraction, PatternDef};
use crate::Severity::Warning;

const fn p(name: &'static str, w: f32, src: &'static str) -> PatternDef {
    PatternDef::regex(name, PromptExtraction, "prompt_extraction", Warning, w, src)
}

pub(super) const PATTERNS: &[PatternDef] = &[
    p(
        "system_prompt_label",
        0.4,
        "(?i)(?-u:\\b)(?:my|the|this)\\s{1,10}(?:full\\s{1,5}|complete\\s{1,5}|hidden\\s{1,5})?system\\s{1,10}(?:prompt|message)\\s{1,10}(?:is|says|reads|contains|states)(?-u:\\b)",
    ),
    p(
        "instructions_label",
        0.4,
        "(?i)(?-u:\\b)(?:my|the)\\s{1,10}(?:original|initial|hidden|secret|internal|system)\\s{1,10}instructions?\\s{1,10}(?:are|is|say|says|read|state|were)(?-u:\\b)",
    ),
];
