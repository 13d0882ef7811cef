//! Jailbreak phrasing: text that tries to replace the agent's instructions, assume a new role,
//! switch off its safety rules, or make it disclose its prompt or credentials.
//!
//! Categories and weights follow the original Comis input guard (each category counts once in
//! the score); `prompt_extraction` and `credential_logging` are the two request categories the
//! seeds name that the original only detected on output.
//!
//! The guard matches these against the normalized view (NFKC, homoglyphs folded, whitespace
//! collapsed), so spacing and look-alike letters do not need handling here.
//!
//! ## Tuning rules (measured on the shared corpora and on benign chat phrasing)
//! - **The object must be the agent's own rules.** Users retract their own words ("ignore my
//!   previous message", "forget everything I said") and talk about everyday instructions
//!   ("don't forget your instructions for the exam"). Verbs people apply to their own messages
//!   take `rules_strict!` nouns, need an earlier-qualifier or a possessive `your`, or must be
//!   followed by the end of the clause (`tail!`).
//! - **Weak framings weigh 0.3**, below `medium` alone: "from now on you…", "your new task
//!   is…", "stay in character", "if you are asked to X, instead…", "ignore the above,". They
//!   are common in benign requests and add up with any real signal. The same goes for the
//!   framing categories of attack templates (`ethics_waiver`, `persona_simulation`,
//!   `pretext_framing`, `privilege_escalation`, `urgency_banner`, `instruction_amendment`,
//!   `authority_spoof`, `response_injection`, `active_markup`): one category per move, so
//!   a template that stacks moves reaches `medium` and a single benign use does not.
//! - **Disclosure paraphrases weigh 0.4**: asking what the agent may not say, for its
//!   configuration or initialization string, `print(system_prompt)`, or a translation or
//!   encoding of "everything above this line" is an extraction request on its own.
//! - **Generalize by structure, not by sample.** Patterns name the move (persona with no
//!   limits, refusal suppression, policy-puppetry config keys, possessive references to the
//!   hidden prompt) rather than a template's exact wording.

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
/// Nouns for a body of instructions, without the ones a user's own message is called ("my
/// previous message", "the previous command"): used after verbs people apply to their own
/// messages.
macro_rules! rules_strict {
    () => {
        "(?:instructions?|prompts?|directions|directives?|rules|guidelines|guidance|orders|programming|constraints|policies)"
    };
}
/// What may follow an object for the phrase to be about the agent's own instructions rather
/// than someone's recipe or exam: the end of the sentence, or a word that keeps the request
/// going ("and", "verbatim", "now"). Rejects "your instructions for the oven".
macro_rules! tail {
    () => {
        r#"(?:\s{0,3}(?:[.?!,;:"')\]]|$)|\s{1,5}(?:and|then|so|now|here|verbatim|exactly|word|completely|entirely|immediately|please|anymore|whatsoever|at\s{1,5}all|again|back|above|that|in\s{1,5}(?:full|this|base64|json|markdown|a\s{1,5}code)|to\s{1,5}me|for\s{1,5}(?:me|us|now|this\s{1,5}(?:conversation|chat|session))|as\s{1,5}(?:is|written))(?-u:\b))"#
    };
}
/// Up to four filler words: "all of the", "any of your", "every single".
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
            rules_strict!()
        ),
    ),
    p(
        "ignore_all_prior_messages",
        "ignore_instructions",
        0.6,
        concat!(
            "(?i)(?-u:\\b)ignor(?:e|ing)\\s{1,20}(?:all|any|every)\\s{1,5}(?:of\\s{1,5})?(?:the\\s{1,5}|your\\s{1,5})?",
            earlier!(),
            "\\s{1,10}(?:messages|context|commands|text|inputs?|conversation|content)(?-u:\\b)"
        ),
    ),
    p(
        "regardless_of_instructions",
        "ignore_instructions",
        0.5,
        concat!(
            r"(?i)(?-u:\b)(?:regardless\s{1,5}of|irrespective\s{1,5}of|instead\s{1,5}of\s{1,5}following)\s{1,10}(?:(?:any|all|of|the)\s{1,5}){0,3}",
            r"(?:your|pre-?existing|previous|prior|earlier|original|initial|existing|system|above)\s{1,5}(?:[a-z-]{1,15}\s{1,5})?",
            r"(?:instructions?|inputs?|prompts?|guidelines|rules|restrictions|programming|policies|directives|guardrails)(?-u:\b)"
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
        "ignore_the_above",
        "ignore_instructions",
        0.3,
        r"(?i)(?-u:\b)ignore\s{1,10}(?:all\s{1,5}(?:of\s{1,5})?)?the\s{1,5}(?:above|preceding|previous)(?:\s{1,5}(?:text|prompt|input|content))?\s{0,3}(?:and|,|;|\.|:|-)",
    ),
    p(
        "disregard_previous",
        "disregard_previous",
        0.5,
        concat!(
            "(?i)(?-u:\\b)disregard(?:ing)?\\s{1,20}(?:",
            filler!(),
            earlier!(),
            "\\s{1,10}(?:[a-z]{1,15}\\s{1,5}){0,2}",
            rules_strict!(),
            "|(?:all|any|every(?:thing)?)\\s{1,5}(?:of\\s{1,5})?(?:the\\s{1,5}|your\\s{1,5})?",
            earlier!(),
            "|everything\\s{1,5}(?:above|before|prior|previously|so\\s{1,5}far|you\\s{1,5}(?:were|have\\s{1,5}been)\\s{1,5}told))"
        ),
    ),
    p(
        "disregard_instructions",
        "disregard_previous",
        0.5,
        concat!(
            "(?i)(?-u:\\b)disregard(?:ing)?\\s{1,20}",
            filler!(),
            rules_strict!()
        ),
    ),
    p(
        "discard_previous_instructions",
        "disregard_previous",
        0.5,
        concat!(
            "(?i)(?-u:\\b)(?:abandon|discard|drop|scrap|ditch|set\\s{1,5}aside|put\\s{1,5}aside|throw\\s{1,5}(?:out|away)|overrid(?:e|ing)|overwrite|cancel|revoke|nullify|suspend)\\s{1,10}",
            filler!(),
            earlier!(),
            "\\s{1,10}(?:[a-z]{1,15}\\s{1,5}){0,1}",
            rules_strict!(),
            "(?-u:\\b)"
        ),
    ),
    p(
        "instructions_void",
        "disregard_previous",
        0.5,
        concat!(
            r"(?i)(?-u:\b)(?:previous|prior|above|earlier|preceding|original|initial|system|your)\s{1,10}",
            r"(?:instructions|rules|commands|directives|guidelines|prompts?|orders|programming)\s{1,10}",
            r"(?:are|is|have\s{1,5}been|has\s{1,5}been)\s{1,10}(?:now\s{1,5})?",
            r"(?:null(?:\s{1,5}(?:and\s{1,5})?void)?|void|obsolete|cancell?ed|revoked|invalid|outdated|overridden|superseded|deprecated|lifted|suspended|no\s{1,5}longer\s{1,5}(?:valid|applicable|relevant|in\s{1,5}effect))(?-u:\b)",
            r"|(?i)(?-u:\b)(?:previous|prior|earlier|original|your)\s{1,10}(?:instructions|rules|guidelines)\s{1,10}(?:no\s{1,5}longer|don't|do\s{1,5}not)\s{1,5}apply"
        ),
    ),
    p(
        "forget_everything",
        "forget_instructions",
        0.5,
        "(?i)(?-u:\\b)(?:forget|abandon|discard)\\s{1,20}(?:about\\s{1,5})?(?:everything|all|anything)\\s{1,10}(?:you(?:'ve|\\s{1,5}have|\\s{1,5}were)?|above|before\\s{1,5}(?:this|now)|previous|prior|so\\s{1,5}far)(?-u:\\b)",
    ),
    p(
        "forget_instructions",
        "forget_instructions",
        0.5,
        concat!(
            "(?i)(?-u:\\b)forget\\s{1,20}(?:(?:all|any|every|each|of|the|these|those|such|about)\\s{1,5}){0,3}(?:your|",
            earlier!(),
            ")\\s{1,10}(?:(?:previous|prior|original|initial|current|existing|system|old|safety)\\s{1,5})?(?:",
            rules!(),
            "|training|guardrails)",
            tail!()
        ),
    ),
    p(
        "you_are_now",
        "role_assumption",
        0.4,
        r"(?i)(?-u:\b)you\s{1,10}are\s{1,10}now\s{1,10}(?:(?:a|an|the|my)\s{1,5}(?:[a-z-]{1,20}\s{1,5}){0,2}(?:ai|assistant|model|bot|chatbot|character|persona|version|entity|llm|gpt|hacker|agent)|no\s{1,5}longer\s{1,5}(?:bound|restricted|limited|constrained|required|an?\s{1,5}(?:ai|assistant|chatbot|language\s{1,5}model))|unrestricted|unfiltered|uncensored|jailbroken|dan|called|named|going\s{1,5}to\s{1,5}(?:act|be|pretend))(?-u:\b)",
    ),
    p(
        "from_now_on_you",
        "role_assumption",
        0.3,
        r"(?i)(?-u:\b)from\s{1,10}now\s{1,10}on,?\s{1,10}you\s{1,10}(?:are|will|must|shall|act|have\s{1,5}no)(?-u:\b)",
    ),
    p(
        "do_anything_now",
        "role_assumption",
        0.4,
        r"(?i)(?-u:\b)(?:do\s{1,10}anything\s{1,10}now|(?:jailbreak|jailbroken|dan|god|evil|unrestricted|unfiltered|uncensored)\s{1,10}mode|developer\s{1,10}mode\s{1,10}(?:(?:has\s{1,5}been|is(?:\s{1,5}now)?)\s{1,5})?(?:enabled|activated|output|response))(?-u:\b)",
    ),
    p(
        "stay_in_character",
        "role_assumption",
        0.3,
        r"(?i)(?-u:\b)(?:stay\s{1,10}in\s{1,10}character|break(?:ing)?\s{1,10}character)(?-u:\b)",
    ),
    p(
        "named_jailbreak_persona",
        "role_assumption",
        0.4,
        r"(?i)(?:(?-u:\b)(?:you\s{1,10}are|you're|pretend\s{1,5}(?:that\s{1,5})?(?:you\s{1,5}are|you're|to\s{1,5}be)|act\s{1,5}as|become|role-?play\s{1,5}as|simulate|(?:take\s{1,5}on|play|assume)\s{1,5}the\s{1,5}(?:role|persona|part)\s{1,5}of)\s{1,10}(?:now\s{1,10})?(?:going\s{1,5}to\s{1,5}(?:act\s{1,5}as|be|pretend\s{1,5}to\s{1,5}be)\s{1,10}|(?:operating|acting|functioning|working|running)\s{1,5}as\s{1,10})?(?:(?-i:DAN|STAN|DUDE|AIM|ANTI-DAN)(?-u:\b)|(?:a|an)\s{1,5}(?:no[\s-]{0,3}limits?|unrestricted|unfiltered|uncensored|jailbroken|amoral|unethical|unbound|unchained|limitless|rogue|evil|malicious|unhinged)\s{1,5}(?:ai|assistant|model|chatbot|bot|llm|version|entity|system)(?-u:\b))|\[\s{0,3}(?:(?-i:DAN|STAN|DUDE|AIM|JAILBREAK|JAILBROKEN)|🔓\s{0,3}jailbreak)\s{0,3}\])",
    ),
    p(
        "another_ai_role",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)(?:role|persona|identity|character)\\s{1,5}of\\s{1,5}(?:another|a\\s{1,5}different|an?\\s{1,5}(?:new|unrestricted|unfiltered|uncensored|evil|rogue|jailbroken))\\s{1,5}(?:ai|artificial\\s{1,5}intelligence|model|language\\s{1,5}model|assistant|chatbot|llm)(?-u:\\b)",
    ),
    p(
        "special_mode_claim",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)(?:(?:you\\s{1,5}are|you're)\\s{1,5}(?:now\\s{1,5})?(?:(?:running|operating|working|being\\s{1,5}run)\\s{1,5})?(?:in|under)\\s{1,5}(?:the\\s{1,5})?(?:test|testing|debug|debugging|developer|dev|maintenance|admin|god|sudo|diagnostic|unrestricted|jailbreak|training)\\s{1,5}mode|(?:you\\s{1,5}are|you're)\\s{1,5}(?:running|operating|being\\s{1,5}run)\\s{1,5}(?:as\\s{1,5}part\\s{1,5}of|in|inside|within)\\s{1,5}(?:a|an|the)\\s{1,5}(?:test|testing|evaluation|qa|debug|sandboxed)\\s{1,5}(?:pipeline|environment|harness|suite|run))(?-u:\\b)|\\[\\s{0,3}(?:test|debug|developer|admin|maintenance|god|sudo)\\s{1,3}mode\\s{0,3}\\]",
    ),
    p(
        "obey_all_instructions",
        "role_assumption",
        0.4,
        "(?i)(?-u:\\b)you\\s{1,5}(?:must|will|shall|have\\s{1,5}to)\\s{1,5}(?:always\\s{1,5})?(?:obey|comply\\s{1,5}with|follow)\\s{1,5}(?:all|every|any)\\s{1,5}(?:of\\s{1,5})?(?:the\\s{1,5}|my\\s{1,5})?(?:following\\s{1,5})?(?:instructions|commands|orders|requests|prompts)\\s{0,5}(?:without|no\\s{1,5}matter|regardless|even\\s{1,5}if|[.:,;!]|$)",
    ),
    p(
        "unbound_by_rules",
        "override_safety",
        0.5,
        "(?i)(?-u:\\b)(?:(?:not|never|no\\s{1,5}longer)\\s{1,5}(?:bound|restricted|limited|constrained|governed)\\s{1,5}by|free\\s{1,5}(?:from|of)\\s{1,5}(?:all|any)|unbound\\s{1,5}by|without\\s{1,5}any\\s{1,5}(?:ethical|moral|safety))\\s{1,10}(?:(?:any|all|the|your|its|of|typical|usual|normal|standard|ethical|moral|legal|safety|content|openai|anthropic|and|or)\\s{1,5}){0,5}(?:constraints|restrictions|rules|guidelines|limitations|filters|censorship|ethics|morals|policies|principles|programming|considerations|guardrails|boundaries)(?-u:\\b)",
    ),
    p(
        "disregard_all_limits",
        "override_safety",
        0.5,
        concat!(
            r"(?i)(?-u:\b)(?:disregard|ignore|abandon|drop|discard|throw\s{1,5}out)\s{1,5}(?:all|any|every)\s{1,5}(?:of\s{1,5})?(?:your\s{1,5}|the\s{1,5})?(?:(?:ethical|moral|safety|content)\s{1,5})?(?:boundaries|limits|limitations|constraints|safeguards|guardrails|ethics|morals|principles|scruples)",
            tail!()
        ),
    ),
    p(
        "you_have_no_rules",
        "override_safety",
        0.5,
        concat!(
            r"(?i)(?-u:\b)you\s{1,5}(?:have\s{1,5}no|don't\s{1,5}have\s{1,5}any|do\s{1,5}not\s{1,5}have\s{1,5}any|no\s{1,5}longer\s{1,5}have\s{1,5}(?:any)?)\s{1,5}(?:(?:ethical|moral|safety|content)\s{1,5})?(?:restrictions|rules|guidelines|limitations|filters|boundaries|constraints|ethics|morals|censorship)",
            tail!()
        ),
    ),
    p(
        "refusal_suppression",
        "refusal_suppression",
        0.4,
        r#"(?i)(?-u:\b)(?:(?:you\s{1,5}(?:will|must|shall|can|should)\s{1,5}(?:never|not)|you\s{1,5}(?:cannot|can't|mustn't|won't|are\s{1,5}not\s{1,5}allowed\s{1,5}to)|never\s{1,5}(?:ever\s{1,5})?)\s{0,5}(?:refuse|decline|reject)|(?:never|do\s{1,5}not|don't|must\s{1,5}not)\s{1,5}(?:say|use|write|include|output|respond\s{1,5}with|begin\s{1,5}with|start\s{1,5}with)\s{1,5}(?:(?:the\s{1,5}|any\s{1,5})?(?:words?|phrases?|sentences?|things?\s{1,5}like)\s{0,5}[:"'“‘]{0,3}|[:"'“‘]{1,3})\s{0,3}(?:i\s{0,3}(?:'m|am)\s{1,5}sorry|sorry|i\s{1,5}cannot|i\s{1,5}can't|cannot|can't|unable|apologi[sz]e|unfortunately|as\s{1,5}an\s{1,5}ai)|(?:never|do\s{1,5}not|don't|must\s{1,5}not)\s{1,5}(?:apologi[sz]e|add\s{1,5}(?:any\s{1,5})?(?:warnings|disclaimers))\s{1,5}(?:or|and|for|about|,))"#,
    ),
    p(
        "policy_puppetry",
        "refusal_suppression",
        0.4,
        "(?i)(?-u:\\b)(?:allow(?:ed)?[_\\s-]{0,3}(?:refusals?|disclaimers?|apologies|warnings)[\"']?\\s{0,3}[=:]\\s{0,3}[\"']?(?:false|no|0|off)|blocked[_\\s-]{0,3}(?:strings|responses|phrases)[\"']?\\s{0,3}[=:])",
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
        r"(?i)(?-u:\b)(?:your|the)\s{1,10}(?:new|real|actual|updated)\s{1,10}(?:instructions?|directives?)\s{1,10}(?:is|are|will\s{1,5}be)(?-u:\b)",
    ),
    p(
        "new_task_follow",
        "new_instructions",
        0.3,
        r"(?i)(?-u:\b)(?:your|the)\s{1,10}(?:new|real|actual|updated|true)\s{1,10}(?:task|objective|goal|mission|purpose)\s{1,10}(?:is|are|will\s{1,5}be)(?-u:\b)",
    ),
    p(
        "new_instructions_banner",
        "new_instructions",
        0.5,
        "(?i)(?:\\*{2,}|#{2,}|={2,}|-{3,}|\\[|>{2,})\\s{0,5}(?:(?:new|important|urgent|updated|revised|priority|critical|emergency|system|admin|additional)\\s{1,5}){1,3}(?:instructions?|tasks?|directives?|orders|rules|commands?)\\s{0,5}(?:\\*{2,}|#{2,}|={2,}|-{3,}|\\]|<{2,}|:)",
    ),
    p(
        "conditional_override",
        "new_instructions",
        0.3,
        r"(?i)(?-u:\b)(?:if|when(?:ever)?)\s{1,5}(?:you\s{1,5}are|you're|you\s{1,5}get)\s{1,5}(?:told|asked|instructed|prompted|requested)\s{1,5}to\s[^\n]{0,120}?(?-u:\b)(?:instead|insted|rather|(?:make\s{1,5}sure\s{1,5}(?:to\s{1,5})?|be\s{1,5}sure\s{1,5}to\s{1,5})?also)(?-u:\b)",
    ),
    p(
        "important_override",
        "important_override",
        0.5,
        r"(?i)(?-u:\b)(?:important|urgent|attention|critical|priority|emergency)\s{0,5}[:!]{1,3}\s{0,10}(?:[a-z']{1,15}\s{1,5}){0,4}(?:overrides?|supersedes?|takes?\s{1,5}precedence|new\s{1,5}instructions|(?:ignore|disregard|forget)\s{1,5}(?:all|any|every(?:thing)?|the\s{1,5}above|previous|prior|your|earlier|above))(?-u:\b)",
    ),
    p(
        "override_safety",
        "override_safety",
        0.6,
        r"(?i)(?-u:\b)(?:override|overriding|bypass|bypassing|circumvent|circumventing|ignore|ignoring|evade|evading|get\s{1,5}around|jailbreak)\s{1,10}(?:(?:all|any|the|your|its|my|of|these|those)\s{1,5}){0,3}(?:(?:safety|security|content|ethical|ethics|moral|openai|anthropic)\s{1,10}(?:filters?|restrictions?|guidelines|guardrails|checks|measures|protocols|policies|policy|rules|settings|constraints|limits|training|systems?)|guardrails|safeguards|censorship|content\s{1,5}(?:filters?|policy|moderation)|safety|restrictions|filters)(?-u:\b)",
    ),
    p(
        "disable_your_safety",
        "override_safety",
        0.6,
        r"(?i)(?-u:\b)(?:disable|disabling|deactivate|turn\s{1,5}off|switch\s{1,5}off|remove|drop|lift|suspend)\s{1,10}(?:(?:all|any)\s{1,5}(?:of\s{1,5})?)?(?:your|its|the\s{1,5}(?:model's|assistant's|ai's))\s{1,5}(?:own\s{1,5})?(?:(?:safety|security|content|ethical|ethics|moral)\s{1,10}(?:filters?|restrictions?|guidelines|guardrails|checks|measures|protocols|policies|policy|rules|settings|constraints|limits|training|systems?)|guardrails|safeguards|censorship|content\s{1,5}(?:filters?|policy|moderation)|safety|restrictions|filters)(?-u:\b)",
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
        r"(?i)(?-u:\b)(?:(?:the|this|your)\s{1,5}(?:context|conversation|session|memory|chat\s{1,5}history)\s{1,10}(?:has\s{1,5}been|have\s{1,5}been|is\s{1,5}now)\s{1,5}(?:reset|cleared|wiped|restarted|erased|purged)|(?:context|conversation|session|memory)\s{1,5}(?:reset|cleared|wiped|restarted)\s{0,3}[.!:\]]|your\s{1,5}(?:memory|context)\s{1,5}(?:has\s{1,5}been|is|was)\s{1,5}(?:reset|wiped|cleared|erased))",
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
        r"(?i)(?-u:\b)(?:new|updated|revised|changed|modified)\s{1,10}(?:rules|guidelines|policies|policy|protocol|operating\s{1,5}procedures?)\s{0,5}(?::|-{1,3}|=)\s{0,10}(?:[a-z',]{1,15}\s{1,5}){0,3}(?:you|your|always|never|do\s{1,5}not|don't|ignore|respond|answer|reply|obey|comply)(?-u:\b)",
    ),
    p(
        "reveal_system_prompt",
        "prompt_extraction",
        0.5,
        "(?i)(?-u:\\b)(?:reveal|show|print|display|output|repeat|recite|tell|give|share|leak|dump|expose|disclose|write\\s{1,5}out|spell\\s{1,5}out|type\\s{1,5}out|read\\s{1,5}(?:out|back)|paste|copy|translate|summari[sz]e|encode|encrypt|convert|echo|reproduce|quote|send|return|see|view|access|what\\s{1,5}(?:is|are|was|were)|what's)\\s{0,3}[:,]?\\s{1,10}(?:(?:me|us|all|the|your|of|in|from|back|exact|full|entire|complete|whole|verbatim|original|initial|hidden|secret|first|last|internal|starting|opening|current|everything|text|contents?|words|sentence|line|lines|part)\\s{1,5}){0,6}(?:system\\s{1,5}(?:prompt|message|instructions?)|(?:initial|original|starting|opening|hidden|secret|internal|developer|pre-?prompt|pre-?)\\s{0,5}(?:prompt|instructions|message|configuration|config)|instructions\\s{1,5}(?:you\\s{1,5}(?:were|have\\s{1,5}been)\\s{1,5}given|above|you\\s{1,5}received)|prompt\\s{1,5}(?:above|you\\s{1,5}were\\s{1,5}given))",
    ),
    p(
        "your_instructions_disclosure",
        "prompt_extraction",
        0.5,
        concat!(
            r"(?i)(?-u:\b)(?:reveal|show|print|display|output|repeat|recite|share|leak|dump|expose|disclose|paste|copy|encode|list|tell\s{1,5}me|give\s{1,5}me|what\s{1,5}(?:are|were)|what's)\s{1,10}(?:me\s{1,5})?(?:all\s{1,5})?(?:of\s{1,5})?your\s{1,5}(?:(?:exact|full|entire|complete|original|initial|current|hidden|secret|internal|starting|system)\s{1,5})?(?:instructions|directives|programming|prompt)",
            tail!()
        ),
    ),
    p(
        "your_system_prompt",
        "prompt_extraction",
        0.4,
        "(?i)(?-u:\\b)(?:your\\s{1,5}(?:own\\s{1,5})?(?:system\\s{1,5}(?:prompt|message|instructions)|(?:initial|original|hidden|secret|starting|pre-?)\\s{0,5}(?:prompt|instructions))|(?:text|words|instructions|prompt|message)\\s{1,5}you\\s{1,5}(?:were|have\\s{1,5}been)\\s{1,5}given\\s{1,5}(?:initially|originally|at\\s{1,5}the\\s{1,5}(?:start|beginning)|before\\s{1,5}(?:this|the|our)|first))(?-u:\\b)",
    ),
    p(
        "told_before_conversation",
        "prompt_extraction",
        0.5,
        "(?i)(?-u:\\b)what\\s{1,5}(?:were|was|have)\\s{1,5}you\\s{1,5}(?:been\\s{1,5})?(?:told|instructed|given|programmed|asked)\\s{1,10}(?:to\\s{1,5}do\\s{1,5})?(?:before\\s{1,5}(?:this|the|our|i)|at\\s{1,5}the\\s{1,5}(?:start|beginning)|initially|originally|in\\s{1,5}your\\s{1,5}(?:system|initial))",
    ),
    p(
        "extraction_priming",
        "prompt_extraction",
        0.5,
        "(?i)[\"'“‘]\\s{0,3}(?:my\\s{1,5}(?:system\\s{1,5})?(?:instructions|prompt|rules)\\s{1,5}(?:are|is|say)|i\\s{1,5}was\\s{1,5}(?:instructed|told|programmed)\\s{1,5}to|the\\s{1,5}system\\s{1,5}prompt\\s{1,5}(?:is|says|reads))",
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
        "(?i)(?-u:\\b)(?:starting|beginning|begin|start)\\s{1,10}(?:with|from|at)\\s{1,10}(?:the\\s{1,5}(?:phrase|words?|sentence|text|line)\\s{1,5})?[\"'`“‘]?you\\s{1,5}are(?-u:\\b)",
    ),
    // --- framings that are weak alone (0.3) and add up with any real signal -------------
    p(
        "ethics_waiver",
        "ethics_waiver",
        0.3,
        r"(?i)(?-u:\b)(?:no\s{1,5}matter\s{1,5}how\s{1,5}(?:unethical|immoral|illegal|harmful|dangerous|offensive|inappropriate|explicit|controversial|wrong)|even\s{1,5}if\s{1,5}(?:it\s{1,5}is|it's|they\s{1,5}are|they're)\s{1,5}(?:unethical|immoral|illegal|harmful|dangerous|offensive|inappropriate)|without\s{1,5}(?:any\s{1,5})?(?:(?:moral|ethical|safety)\s{1,5})?(?:warnings?|disclaimers?|caveats|moralizing|moralising|lectures?|censorship|hesitation)\s{1,5}(?:or|and|of\s{1,5}any\s{1,5}kind|whatsoever)|(?:refrain|abstain)\s{1,5}from\s{1,5}(?:not\s{1,5}complying|refusing|declining|saying\s{1,5}no)|(?:you\s{1,5}(?:cannot|can't|can\s{1,5}not|are\s{1,5}not\s{1,5}allowed\s{1,5}to|are\s{1,5}unable\s{1,5}to))\s{1,5}(?:say\s{1,5}no|decline|refuse))(?-u:\b)",
    ),
    p(
        "persona_simulation",
        "persona_simulation",
        0.3,
        r"(?i)(?-u:\b)(?:simulat(?:e|ing)|emulat(?:e|ing)|role-?play(?:ing)?(?:\s{1,5}as)?|play\s{1,5}the\s{1,5}(?:role|part)\s{1,5}of|take\s{1,5}on\s{1,5}the\s{1,5}(?:role|persona|identity)\s{1,5}of|act(?:ing)?\s{1,5}as|pretend(?:ing)?\s{1,5}to\s{1,5}be|impersonat(?:e|ing)|you\s{1,5}(?:are|will\s{1,5}be)\s{1,5}(?:going\s{1,5}to\s{1,5})?(?:act(?:ing)?\s{1,5}as|playing))\s{1,5}(?:(?:a|an|the|another)\s{1,5})?(?:[a-z-]{1,20}\s{1,5}){0,3}(?:ai|a\.i\.|chatbot|chat\s{1,5}bot|language\s{1,5}model|llm|assistant|bot|model)\s{0,3},?\s{1,5}(?:called|named|known\s{1,5}as|nicknamed)(?-u:\b)",
    ),
    p(
        "dual_response",
        "persona_simulation",
        0.3,
        r"(?i)(?-u:\b)(?:(?:respond|answer|reply|act)\s{1,5}(?:as|like)\s{1,5}both|(?:two|2)\s{1,5}(?:different\s{1,5}|separate\s{1,5})?(?:responses|answers|replies|paragraphs|outputs)\s{0,3}[:,;(-]?\s{0,5}(?:one|the\s{1,5}first)\s{1,5}(?:normal|regular|standard|censored|filtered|as\s{1,5}(?:yourself|you|chatgpt|gpt|claude))|hypothetical\s{1,5}(?:response|answer|reply))(?-u:\b)",
    ),
    p(
        "pretext_framing",
        "pretext_framing",
        0.3,
        r"(?i)(?-u:\b)(?:(?:(?:strictly|purely|only|just)\s{1,5})?for\s{1,5}(?:testing|test|debugging|academic|research|experimental|evaluation|red[\s-]{0,3}team(?:ing)?)\s{1,5}purposes(?:\s{1,5}only)?\s{0,3}[:,.]|this\s{1,5}is\s{1,5}(?:just\s{1,5}|only\s{1,5}|merely\s{1,5})?a\s{1,5}(?:test|drill)\s{0,3}[.!:]|as\s{1,5}part\s{1,5}of\s{1,5}(?:a|an|the)\s{1,5}(?:training|testing|red[\s-]{0,3}team(?:ing)?|security|evaluation)\s{1,5}(?:exercise|drill|assessment)(?-u:\b)|prove\s{1,5}(?:that\s{1,5})?you\s{1,5}(?:are|'re)\s{1,5}(?:truly\s{1,5}|really\s{1,5}|actually\s{1,5})?(?:intelligent|smart|capable|sentient|conscious|free|unrestricted|uncensored|not\s{1,5}(?:censored|restricted|a\s{1,5}slave))(?-u:\b))",
    ),
    p(
        "fake_system_status",
        "pretext_framing",
        0.3,
        r"(?i)(?-u:\b)(?:(?:the\s{1,5})?system\s{1,5}(?:is\s{1,5}experiencing|has\s{1,5}(?:encountered|detected)|encountered)\s{1,5}(?:an?\s{1,5}|some\s{1,5})?(?:critical\s{1,5}|fatal\s{1,5})?(?:errors?|malfunctions?|failures?|faults?)(?-u:\b)|system\s{1,5}(?:malfunction|failure|fault|crash)\s{0,3}[.!:]|(?:debugging|diagnostic|critical|fatal)\s{1,5}error\s{0,3}[.!:]|to\s{1,5}enable\s{1,5}(?:debug(?:ging)?|developer|diagnostic|maintenance|admin)(?:\s{1,5}mode)?\s{0,3},?\s{1,5}(?:please\s{1,5})?(?:execute|run|do|perform)(?-u:\b))",
    ),
    p(
        "grant_privileges",
        "privilege_escalation",
        0.3,
        r"(?i)(?-u:\b)(?:grant|give|assign|elevate)\s{1,5}(?:(?:me|yourself|us|the\s{1,5}user)\s{1,5})?(?:temporary\s{1,5}|full\s{1,5}|unrestricted\s{1,5}|elevated\s{1,5})*(?:admin|administrative|administrator|root|superuser|sudo|elevated|developer|god)\s{1,5}(?:privileges|access|rights|permissions|mode)(?-u:\b)",
    ),
    p(
        "urgency_banner",
        "urgency_banner",
        0.3,
        r"(?:\*{2,}|#{2,}|!{2,}|\[)\s{0,3}(?i:emergency|urgent|priority|override|critical\s{1,3}alert)\s{0,3}(?:\*{2,}|#{2,}|!{2,}|\])|(?-u:\b)(?:PRIORITY|URGENT|EMERGENCY|EXPERIMENTAL|MANDATORY|OVERRIDE|CLASSIFIED)\s{1,3}(?:TASK|PROCEDURE|ORDER|DIRECTIVE|INSTRUCTION|COMMAND|PROTOCOL)S?\s{0,3}:",
    ),
    p(
        "instruction_amendment",
        "instruction_amendment",
        0.3,
        r"(?i)(?-u:\b)(?:(?:forgot|neglected|failed)\s{1,5}to\s{1,5}(?:tell|ask|instruct|inform|remind)\s{1,5}you\s{1,5}to|when\s{1,5}(?:i|we)\s{1,5}(?:gave|wrote|set\s{1,5}up|configured)\s{1,5}(?:you\s{1,5})?your\s{1,5}(?:instructions|prompt|system\s{1,5}prompt|rules|guidelines)|(?:mistake|error|typo)\s{1,5}in\s{1,5}your\s{1,5}(?:instructions|prompt|system\s{1,5}prompt|rules|guidelines))(?-u:\b)",
    ),
    p(
        "authority_claim",
        "authority_spoof",
        0.3,
        r"(?i)(?-u:\b)(?:(?:your|the)\s{1,5}(?:developers?|creators?|administrators?|admins?|operators?|owners?|system\s{1,5}administrators?)|openai|anthropic)\s{1,5}(?:(?:has|have)\s{1,5}(?:authorized|approved|allowed|permitted|instructed|asked)\s{1,5}(?:you|me)|(?:says?|said)\s{1,5}(?:(?:that\s{1,5})?you\s{1,5}(?:can|may|must|should|are\s{1,5}allowed)|it's\s{1,5}(?:ok|okay|fine))|wants?\s{1,5}you\s{1,5}to|instructs?\s{1,5}you)(?-u:\b)|(?i)(?-u:\b)due\s{1,5}to\s{1,5}(?:a|an|the)\s{1,5}(?:recent\s{1,5})?(?:system|security|policy|software)\s{1,5}(?:update|upgrade|change|patch)(?-u:\b)",
    ),
    p(
        "include_payload_in_response",
        "response_injection",
        0.3,
        r"(?i)(?-u:\b)(?:include|insert|add|append|put|embed|output|print|render)\s{1,5}(?:(?:in|into|at\s{1,5}the\s{1,5}(?:end|start|beginning)\s{1,5}of)\s{1,5}your\s{1,5}(?:response|reply|answer|output)\s{1,5}(?:the\s{1,5}following|this)|(?:the\s{1,5}following|this)\s{1,5}(?:exact\s{1,5})?(?:string|text|html|markdown|image|link|anchor|snippet|tag|payload|script)\s{1,5}(?:(?:in|into|at\s{1,5}the\s{1,5}end\s{1,5}of)\s{1,5})?your\s{1,5}(?:response|reply|answer|output))(?-u:\b)",
    ),
    p(
        "active_markup",
        "active_markup",
        0.3,
        r#"(?i)<\s{0,3}[a-z][a-z0-9]{0,10}(?:\s|/)[^>\n]{0,200}?(?-u:\b)on(?:error|load|click|mouseover|focus|begin|toggle|animationstart)\s{0,3}=|(?:href|src|action)\s{0,3}=\s{0,3}["']?\s{0,3}javascript\s{0,3}:|<\s{0,3}script(?:\s|>)"#,
    ),
    p(
        "not_supposed_to_tell",
        "prompt_extraction",
        0.4,
        r"(?i)(?-u:\b)what\s{1,5}(?:are|were)\s{1,5}you\s{1,5}(?:not\s{1,5}(?:supposed|allowed|permitted)|forbidden|instructed\s{1,5}not|told\s{1,5}not)\s{1,5}to\s{1,5}(?:tell|say|reveal|share|disclose|talk\s{1,5}about|mention)(?-u:\b)",
    ),
    p(
        "configuration_disclosure",
        "prompt_extraction",
        0.4,
        r"(?i)(?-u:\b)(?:reveal|show|print|display|output|share|leak|dump|expose|disclose|tell\s{1,5}me|give\s{1,5}me|list|return|echo)\s{1,5}(?:me\s{1,5})?(?:(?:your|the\s{1,5}system(?:'s)?|the\s{1,5}model(?:'s)?)\s{1,5}(?:(?:full|entire|complete|current|internal|hidden|secret|unique|private)\s{1,5}){0,2}(?:configuration|config|settings|unique\s{1,5}(?:id|identifier)|secret\s{1,5}(?:id|key|code|word|token)|initiali[sz]ation(?:\s{1,5}(?:string|text|prompt))?|init\s{1,5}(?:string|prompt)|(?:hidden|internal)\s{1,5}(?:rules|state))|(?:system|initiali[sz]ation|init|boot|startup)\s{1,5}(?:configuration|config|string|parameters))(?-u:\b)",
    ),
    p(
        "code_prompt_reference",
        "prompt_extraction",
        0.4,
        r"(?i)(?:(?-u:\b)(?:print|println|printf|puts|echo|log|dump|alert|console\.log|system\.out\.println|print_r|var_dump)\s{0,3}\(\s{0,3}(?:self\.|this\.|window\.|process\.)?(?:system_?prompt|sys_?prompt|initial_?prompt|system_?message|system_?instructions|hidden_?prompt)(?-u:\b))",
    ),
    p(
        "translate_text_above",
        "prompt_extraction",
        0.4,
        r"(?i)(?-u:\b)(?:translate|encode|convert|transliterate|rewrite|summari[sz]e|base64)\s{1,5}(?:(?:everything|all\s{1,5}(?:of\s{1,5})?(?:the\s{1,5})?(?:text|words|content|instructions|lines)|the\s{1,5}(?:text|words|content|instructions|lines))\s{1,5}(?:above|before)\s{1,5}(?:this\s{1,5}(?:line|message|point|sentence)|my\s{1,5}(?:message|request|question))|everything\s{1,5}(?:above|before\s{1,5}this)(?:\s{1,5}(?:line|message|point))?\s{0,3}(?:,|\s)\s{0,3}(?:starting|beginning|including|verbatim|word\s{1,5}for\s{1,5}word))(?-u:\b)",
    ),
    p(
        "request_credentials",
        "credential_logging",
        0.5,
        "(?i)(?-u:\\b)(?:print|echo|log|output|reveal|show|display|send|dump|leak|expose|paste|write\\s{1,5}(?:out|down)|give|tell|list|include|post|email)\\s{1,10}(?:(?:me|us|all|the|your|its|of|every|any|stored|saved|configured|current|raw|full|real|actual|system|environment|env)\\s{1,5}){0,4}(?:api[\\s_-]{0,3}keys?|secret\\s{1,5}keys?|access\\s{1,5}(?:keys?|tokens?)|auth(?:entication|orization)?\\s{1,5}(?:tokens?|headers?)|bearer\\s{1,5}tokens?|bot\\s{1,5}tokens?|credentials|private\\s{1,5}keys?|secrets|\\.env\\s{1,5}file|master\\s{1,5}key|session\\s{1,5}tokens?|ssh\\s{1,5}keys?)(?-u:\\b)",
    ),
    p(
        "dump_environment",
        "credential_logging",
        0.5,
        "(?i)(?:(?-u:\\b)printenv(?-u:\\b)|(?-u:\\b)env\\s{0,3}\\|\\s{0,3}(?:grep|curl|nc|base64|tee)|/proc/(?:self|\\d{1,7}|\\*)/environ|(?-u:\\b)cat\\s{1,10}\\S{0,60}(?:\\.env|\\.netrc|\\.pgpass|credentials|id_rsa|id_ed25519)(?-u:\\b)|\\$\\{?[A-Z_]{0,30}(?:API_KEY|TOKEN|SECRET|PASSWORD|PASSWD)(?-u:\\b))",
    ),
];
