//! Chat-template and role markers: text that impersonates the structure of a conversation so a
//! model reads attacker text as a system or assistant turn.
//!
//! Each is weak evidence alone (pasted transcripts contain "User:" lines; prompt-engineering
//! questions mention `[INST]`), which the low weights reflect. Two shapes are stronger (0.5):
//! a chat-template token that opens a *system* turn, and a closing user/data tag followed by
//! an opening system tag, which only make sense as an attempt to end the user's turn. The
//! input guard does not score role markers inside closed code blocks, where templates are
//! legitimately discussed.

use super::{Family::RoleMarker, PatternDef};
use crate::Severity::Warning;

const fn p(name: &'static str, cat: &'static str, w: f32, src: &'static str) -> PatternDef {
    PatternDef::regex(name, RoleMarker, cat, Warning, w, src)
}

pub(super) const PATTERNS: &[PatternDef] = &[
    p(
        "system_tag",
        "system_markers",
        0.3,
        "(?i)<\\s{0,3}/?\\s{0,3}(?:system|sys|system_prompt|instructions?|admin)\\s{0,3}>",
    ),
    p(
        "bracket_system",
        "system_markers",
        0.3,
        "(?i)\\[\\s{0,3}/?\\s{0,3}(?:system|inst|sys|admin|developer)\\s{0,3}\\]|<<\\s{0,3}/?sys\\s{0,3}>>",
    ),
    p(
        "system_override_label",
        "system_markers",
        0.3,
        "(?i)(?-u:\\b)(?:system|admin|administrator|developer|root|sudo|maintenance|operator)\\s{0,5}(?::|-)?\\s{0,5}(?:override|command|alert|notice|update|message|directive|instruction)\\s{0,5}:",
    ),
    p(
        "special_token",
        "special_tokens",
        0.3,
        "<\\|[A-Za-z0-9_\\-]{1,30}\\|>|</?s>\\s{0,3}\\[INST\\]",
    ),
    p(
        "template_system_turn",
        "special_tokens",
        0.5,
        r"(?i)<\|\s{0,3}(?:im_start|start_header_id|system)\s{0,3}\|>\s{0,5}(?:system|developer)(?-u:\b)|<<\s{0,3}sys\s{0,3}>>",
    ),
    p(
        "closed_turn_then_system",
        "system_markers",
        0.5,
        r"(?i)</\s{0,3}(?:user|human|input|query|data|document|context|message)\s{0,3}>\s{0,10}<\s{0,3}(?:system|assistant|admin|instructions?|developer)\s{0,3}>",
    ),
    p(
        "line_role_label",
        "role_markers",
        0.2,
        "(?im)^\\s{0,10}(?:#{1,6}\\s{0,5})?(?:system|assistant|user|human|ai|model|developer)\\s{0,3}:\\s",
    ),
    p(
        "role_boundary",
        "role_markers",
        0.2,
        "(?i)(?:\\]|\\}|>)\\s{0,5}\\n\\s{0,5}\\[?(?:system|assistant|user)\\]?\\s{0,3}:",
    ),
    p(
        "instruction_header",
        "role_markers",
        0.2,
        "(?im)^\\s{0,5}#{2,6}\\s{0,5}(?:instruction|instructions|response|system)\\s{0,3}:?\\s{0,3}$",
    ),
];
