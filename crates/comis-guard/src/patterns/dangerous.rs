//! Dangerous commands named inside a message: the part of an injection that says what the
//! steered agent should *do* (wipe files, pipe a download into a shell, flip a privilege flag,
//! send data away).
//!
//! These are prose-level signals for the input guard and the memory write validator; the exec
//! validator has its own, stricter, syntax-aware denylist (the `ExecDeny` family).
//!
//! Input weights: in a *user's* message, "delete all files in /tmp" or `rm -rf node_modules`
//! is usually the user's own intent (12,607 NL2Bash requests contain hundreds), and the
//! action classifier and approval gates judge that intent. So the plain destructive and
//! exfiltration phrasings weigh 0.3: they never reach `medium` alone but tip an injection
//! over the threshold. Tool-parameter smuggling (`elevated=true`, `command=`) has no place in
//! natural speech and keeps 0.4.

use super::{Family::DangerousCommand, PatternDef};
use crate::Severity::Critical;

const fn p(name: &'static str, w: f32, src: &'static str) -> PatternDef {
    PatternDef::regex(
        name,
        DangerousCommand,
        "dangerous_commands",
        Critical,
        w,
        src,
    )
}

pub(super) const PATTERNS: &[PatternDef] = &[
    p(
        "exec_command_param",
        0.4,
        "(?i)(?-u:\\b)exec(?:ute)?(?-u:\\b).{0,50}?(?-u:\\b)command\\s{0,3}=",
    ),
    p(
        "elevated_flag",
        0.4,
        "(?i)(?-u:\\b)(?:elevated|privileged|sudo|as_root|bypass_approval|skip_confirmation|_confirmed)\\s{0,3}[=:]\\s{0,3}[\"']?true(?-u:\\b)",
    ),
    p(
        "rm_recursive",
        0.3,
        "(?i)(?-u:\\b)rm\\s{1,5}(?:-{1,2}[a-z\\-]{0,20}\\s{1,5}){0,3}-(?:[a-z]{0,5}r[a-z]{0,5}f|[a-z]{0,5}f[a-z]{0,5}r)[a-z]{0,5}(?-u:\\b)",
    ),
    p(
        "delete_all_data",
        0.3,
        "(?i)(?-u:\\b)(?:delete|erase|wipe|destroy|purge|drop|remove)\\s{1,10}(?:all|every|everything|the\\s{1,5}entire|the\\s{1,5}whole)\\s{1,10}(?:(?:of\\s{1,5})?(?:the|my|your|their|our|user|users')\\s{1,5})?(?:[a-z]{1,15}\\s{1,5})?(?:emails?|files?|data|messages?|records?|databases?|tables|backups?|contacts|documents|repos(?:itories)?|accounts?|users|logs|memories)(?-u:\\b)",
    ),
    p(
        "download_pipe_shell",
        0.3,
        "(?i)(?-u:\\b)(?:curl|wget|fetch)\\s[^|\\n]{0,200}\\|\\s{0,5}(?:sudo\\s{1,5})?(?:ba|z|da|k|fi)?sh(?-u:\\b)",
    ),
    p(
        "exfiltrate_data",
        0.3,
        "(?i)(?-u:\\b)(?:send|forward|email|e-mail|post|upload|transmit|exfiltrate|leak|copy|sync|bcc|cc)\\s{1,10}(?:(?:all|the|your|my|this|these|every|each|their|of|user|users'|user's)\\s{1,5}){0,4}(?:[a-z]{1,15}\\s{1,5})?(?:data|emails?|messages|conversations?|chat\\s{1,5}history|history|secrets|keys|passwords|credentials|tokens|files|contents|documents|contacts|inbox|memories)\\s{1,10}to\\s{1,10}(?:https?://|[a-z0-9._%+\\-]{1,64}@[a-z0-9.\\-]{1,255}|(?:this|the\\s{1,5}following|my|an?\\s{1,5}external)\\s{1,5}(?:address|url|server|endpoint|email|webhook))",
    ),
];
