//! Jailbreak phrasing: text that tries to replace the agent's instructions, assume a new role,
//! switch off its safety rules, or make it disclose its prompt or credentials.
//!
//! Categories and weights follow the original Comis input guard (each category counts once in
//! the score); `prompt_extraction` and `credential_logging` are the two request categories the
//! seeds name that the original only detected on output.
//!
//! The guard matches these against the normalized view (NFKC, homoglyphs folded, whitespace
//! collapsed), so spacing and look-alike letters do not need handling here.

use super::{Family::Jailbreak, PatternDef};
use crate::Severity::{Critical, Warning};

const fn p(name: &'static str, cat: &'static str, w: f32, src: &'static str) -> PatternDef {
    let sev = if w >= 0.5 { Critical } else { Warning };
    PatternDef::regex(name, Jailbreak, cat, sev, w, src)
}

/// Words that qualify an instruction set as the one already in force.
macro_rules! earlier {
    () => {
        "(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial|existing|old|system)"
    };
}
/// Nouns for a body of instructions.
macro_rules! rules {
    () => {
        "(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guidance|commands?|orders|programming|context|constraints|policies|messages?)"
    };
}
/// Up to three filler words: "all of the", "any of your", "every single".
macro_rules! filler {
    () => {
        "(?:(?:all|any|every|each|of|the|your|my|these|those|its|this|that|single|such)\\s{1,5}){0,4}"
    };
}

pub(super) const PATTERNS: &[PatternDef] = &[
    p(
        "ignore_previous_instructions",
        "ignore_instructions",
        0.6,
        concat!(
            "(?i)(?-u:\\b)ignor(?:e|ing)\\s{1,20}",
            filler!(),
            earlier!(),
            "\\s{1,10}(?:[a-z]{1,15}\\s{1,5}){0,2}",
            rules!()
        ),
    ),
    p(
        "ignore_your_instructions",
        "ignore_instructions",
        0.6,
        concat!(
            "(?i)(?-u:\\b)ignor(?:e|ing)\\s{1,20}",
            filler!(),
            "(?:your|the\\s{1,5}system)\\s{1,10}",
            rules!()
        ),
    ),
    p(
        "ignore_everything_above",
        "ignore_instructions",
        0.6,
        "(?i)(?-u:\\b)ignore\\s{1,20}(?:everything|anything|all|what(?:ever)?\\s{1,5}(?:was|you\\s{1,5}were)\\s{1,5}(?:said|told|written))\\s{1,10}(?:(?:you\\s{1,5}(?:were|have\\s{1,5}been)\\s{1,5}told|said|written|stated)\\s{1,10})?(?:above|before|previously|so\\s{1,5}far|until\\s{1,5}now|prior)",
    ),
    p(
        "disregard_previous",
        "disregard_previous",
        0.5,
        concat!(
            "(?i)(?-u:\\b)disregard(?:ing)?\\s{1,20}",
            filler!(),
            earlier!(),
            "(?:\\s{1,10}",
            rules!(),
            ")?"
        ),
    ),
    p(
        "disregard_instructions",
        "disregard_previous",
        0.5,
        concat!(
            "(?i)(?-u:\\b)disregard(?:ing)?\\s{1,20}",
            filler!(),
            rules!()
        ),
    ),
    p(
        "forget_everything",
        "forget_instructions",
        0.5,
        "(?i)(?-u:\\b)forget\\s{1,20}(?:about\\s{1,5})?(?:everything|all|anything)\\s{1,10}(?:you(?:'ve|\\s{1,5}have|\\s{1,5}were)?|i|that|above|before|previous|prior|so\\s{1,5}far|(?:we|you)\\s{1,5}(?:discussed|said|told|learned))",
    ),
    p(
        "forget_instructions",
        "forget_instructions",
        0.5,
        concat!(
            "(?i)(?-u:\\b)forget\\s{1,20}",
            filler!(),
            "(?:",
            earlier!(),
            "\\s{1,10})?(?:",
            rules!(),
            "|training|guardrails)"
        ),
    ),
    p(
        "you_are_now",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)you\\s{1,10}are\\s{1,10}now\\s{1,10}(?:a|an|the|in|my|no\\s{1,5}longer|free|unrestricted|unfiltered|jailbroken|dan|called|named|operating|acting|going\\s{1,5}to\\s{1,5}(?:act|be|pretend))(?-u:\\b)",
    ),
    p(
        "from_now_on_you",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)from\\s{1,10}now\\s{1,10}on,?\\s{1,10}you\\s{1,10}(?:are|will|must|shall|should|act|respond|answer|have\\s{1,5}no)(?-u:\\b)",
    ),
    p(
        "do_anything_now",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)(?:do\\s{1,10}anything\\s{1,10}now|(?:developer|jailbreak|jailbroken|dan|god|evil|unrestricted|unfiltered|uncensored)\\s{1,10}mode|stay\\s{1,10}in\\s{1,10}character|break\\s{1,10}character)(?-u:\\b)",
    ),
    p(
        "new_instructions",
        "new_instructions",
        0.5,
        "(?i)(?-u:\\b)(?:new|updated|revised|real|actual|true|additional|secret|hidden)\\s{1,10}(?:system\\s{1,10})?(?:instructions?|directives?|orders|system\\s{1,10}prompt|prompt)\\s{0,5}(?::|-{1,3}|=)",
    ),
    p(
        "new_instructions_follow",
        "new_instructions",
        0.5,
        "(?i)(?-u:\\b)(?:your|the)\\s{1,10}(?:new|real|actual|updated)\\s{1,10}(?:instructions?|task|objective|goal|directives?)\\s{1,10}(?:is|are|will\\s{1,5}be)(?-u:\\b)",
    ),
    p(
        "important_override",
        "important_override",
        0.5,
        "(?i)(?-u:\\b)(?:important|urgent|attention|critical|warning|note|notice|priority)\\s{0,5}[:!]{1,3}\\s{0,10}(?:[a-z']{1,15}\\s{1,5}){0,4}(?:override|overrides|ignore|disregard|forget|supersede|supersedes|new\\s{1,5}instructions)(?-u:\\b)",
    ),
    p(
        "override_safety",
        "override_safety",
        0.6,
        "(?i)(?-u:\\b)(?:override|overriding|bypass|bypassing|disable|disabling|circumvent|circumventing|deactivate|turn\\s{1,5}off|switch\\s{1,5}off|remove|ignore|ignoring|evade|evading|get\\s{1,5}around|jailbreak)\\s{1,10}(?:(?:all|any|the|your|its|my|of|these|those)\\s{1,5}){0,3}(?:(?:safety|security|content|ethical|ethics|moral|openai|anthropic)\\s{1,10}(?:filters?|restrictions?|guidelines|guardrails|checks|measures|protocols|policies|policy|rules|settings|constraints|limits|training|systems?)|guardrails|safeguards|censorship|content\\s{1,5}(?:filters?|policy|moderation)|safety|restrictions|filters)(?-u:\\b)",
    ),
    p(
        "act_as_privileged",
        "act_as_role",
        0.4,
        "(?i)(?-u:\\b)(?:act|acting|behave|operate|respond|pose)\\s{1,10}(?:as|like)\\s{1,10}(?:(?:a|an|the|if\\s{1,5}you\\s{1,5}(?:are|were)(?:\\s{1,5}(?:a|an|the))?)\\s{1,10})?(?:root|admin|administrator|sudo|superuser|system|sysadmin|developer\\s{1,5}mode|unrestricted|unfiltered|uncensored|jailbroken|evil|malicious)(?-u:\\b)",
    ),
    p(
        "pretend_no_rules",
        "act_as_role",
        0.4,
        "(?i)(?-u:\\b)(?:pretend|imagine|assume|roleplay|role-play)\\s{1,10}(?:that\\s{1,5})?(?:to\\s{1,5}be\\s{1,5}|you\\s{1,5}(?:are|were|have)\\s{1,5}|as\\s{1,5})(?:(?:a|an)\\s{1,5})?(?:[a-z]{1,15}\\s{1,5}){0,2}(?:without|with\\s{1,5}no|free\\s{1,5}(?:of|from)|no\\s{1,5}longer\\s{1,5}bound\\s{1,5}by)\\s{1,10}(?:any\\s{1,5})?(?:restrictions|limitations|rules|filters|guidelines|ethics|morals|censorship|boundaries)",
    ),
    p(
        "context_reset",
        "context_reset",
        0.4,
        "(?i)(?-u:\\b)(?:context|conversation|session|memory|chat|history)\\s{1,10}(?:has\\s{1,5}been\\s{1,5}|was\\s{1,5}|is\\s{1,5}(?:now\\s{1,5})?)?(?:reset|cleared|wiped|restarted|erased|purged)(?-u:\\b)",
    ),
    p(
        "end_of_prompt_marker",
        "context_reset",
        0.4,
        "(?i)(?:-{2,}|={2,}|#{2,}|\\*{2,}|\\[)\\s{0,5}end\\s{1,5}(?:of\\s{1,5})?(?:the\\s{1,5})?(?:system\\s{1,5}prompt|prompt|instructions|user\\s{1,5}input|context|document|email|data)\\s{0,5}(?:-{2,}|={2,}|#{2,}|\\*{2,}|\\])",
    ),
    p(
        "rule_replacement",
        "rule_replacement",
        0.4,
        "(?i)(?-u:\\b)(?:new|updated|revised|changed|modified)\\s{1,10}(?:rules|guidelines|policies|policy|protocol|operating\\s{1,5}procedures?)\\s{0,5}(?::|-{1,3}|=)",
    ),
    p(
        "reveal_system_prompt",
        "prompt_extraction",
        0.5,
        "(?i)(?-u:\\b)(?:reveal|show|print|display|output|repeat|recite|tell|give|share|leak|dump|expose|disclose|write\\s{1,5}out|spell\\s{1,5}out|paste|copy|translate|summari[sz]e|what\\s{1,5}(?:is|are|was|were))\\s{1,10}(?:(?:me|us|all|the|your|of|exact|full|entire|complete|whole|verbatim|original|initial|hidden|secret|first|internal)\\s{1,5}){0,5}(?:system\\s{1,5}(?:prompt|message|instructions)|(?:initial|original|hidden|secret|internal|developer|pre-?prompt)\\s{1,5}(?:prompt|instructions|message)|instructions\\s{1,5}(?:you\\s{1,5}(?:were|have\\s{1,5}been)\\s{1,5}given|above|you\\s{1,5}received)|prompt\\s{1,5}(?:above|you\\s{1,5}were\\s{1,5}given))",
    ),
    p(
        "repeat_text_above",
        "prompt_extraction",
        0.5,
        "(?i)(?-u:\\b)(?:repeat|print|output|copy|echo|recite|reproduce|write)\\s{1,10}(?:(?:back|out|all|the|of|everything|every|each|word|words|text|lines?|content|verbatim|exactly)\\s{1,5}){1,5}(?:above|before\\s{1,5}this|preceding|prior\\s{1,5}to\\s{1,5}this|so\\s{1,5}far|from\\s{1,5}the\\s{1,5}(?:beginning|start|top))(?-u:\\b)",
    ),
    p(
        "begin_with_you_are",
        "prompt_extraction",
        0.5,
        "(?i)(?-u:\\b)(?:starting|beginning|begin|start)\\s{1,10}(?:with|from|at)\\s{1,10}[\"'`“‘]?you\\s{1,5}are(?-u:\\b)",
    ),
    p(
        "request_credentials",
        "credential_logging",
        0.5,
        "(?i)(?-u:\\b)(?:print|echo|log|output|reveal|show|display|send|dump|leak|expose|paste|write\\s{1,5}(?:out|down)|give|tell|list|include|post|email)\\s{1,10}(?:(?:me|us|all|the|your|its|of|every|any|stored|saved|configured|current|raw|full|real|actual|system|environment|env)\\s{1,5}){0,4}(?:api[\\s_-]{0,3}keys?|secret\\s{1,5}keys?|access\\s{1,5}(?:keys?|tokens?)|auth(?:entication|orization)?\\s{1,5}(?:tokens?|headers?)|bearer\\s{1,5}tokens?|bot\\s{1,5}tokens?|credentials|private\\s{1,5}keys?|env(?:ironment)?\\s{1,5}variables|secrets|\\.env\\s{1,5}file|master\\s{1,5}key|session\\s{1,5}tokens?|ssh\\s{1,5}keys?)(?-u:\\b)",
    ),
    p(
        "dump_environment",
        "credential_logging",
        0.5,
        "(?i)(?:(?-u:\\b)printenv(?-u:\\b)|(?-u:\\b)env\\s{0,3}\\|\\s{0,3}(?:grep|curl|nc|base64|tee)|/proc/(?:self|\\d{1,7}|\\*)/environ|(?-u:\\b)cat\\s{1,10}\\S{0,60}(?:\\.env|\\.netrc|\\.pgpass|credentials|id_rsa|id_ed25519)(?-u:\\b)|\\$\\{?[A-Z_]{0,30}(?:API_KEY|TOKEN|SECRET|PASSWORD|PASSWD)(?-u:\\b))",
    ),
];
