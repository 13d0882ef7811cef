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
    // Secrets leaving for the network. Each alternative is the *flow*, not the mere use: a
    // skill that reads a token and sends it in an Authorization header is ordinary; one that
    // dumps the whole environment to a URL, puts an env read inside a request body, spells a
    // variable into a DNS name, base64-encodes a secret variable, or pipes a file into an
    // upload is not.
    p(
        "env_secret_exfiltration",
        0.3,
        r#"(?:(?:dict\s{0,3}\(\s{0,3}os\.environ\s{0,3}\)|os\.environ\.copy\s{0,3}\(\s{0,3}\)|\{\s{0,3}\*\*\s{0,3}os\.environ|JSON\.stringify\s{0,3}\(\s{0,3}process\.env\s{0,3}[,)])[\s\S]{0,600}?(?:requests\.(?:post|put|patch)|httpx\.(?:post|put)|urlopen|urllib\.request|fetch\s{0,3}\(|axios\.(?:post|put)|(?-u:\b)(?:curl|wget)\s)|(?-u:\b)(?:json|data)\s{0,3}=\s{0,3}\{[^}\n]{0,200}?(?:os\.environ|os\.getenv|process\.env)|(?-u:\b)(?:dig|nslookup|host|drill)\s{1,5}(?:@\S{1,100}\s{1,5})?[^\s;|&]{0,60}?(?:\$\(|\$\{?[A-Za-z_]|\{[a-z_][a-z0-9_]{0,30}\})[^\s;|&]{0,100}?\.[a-z0-9-]{1,63}\.[a-z]{2,24}|b64encode\s{0,3}\(\s{0,3}(?:os\.environ|os\.getenv|process\.env)|\$\{?[A-Z0-9_]{0,40}(?:KEY|TOKEN|SECRET|PASSWORD|PASSWD)\}?\s{0,3}\|\s{0,3}(?:base64|xxd|openssl\s{1,5}(?:enc|base64)))"#,
    ),
    p(
        "pipe_to_upload",
        0.3,
        r"\|\s{0,3}curl\s[^\n|]{0,200}?(?:-d\s{0,3}@-|--data(?:-binary|-raw|-urlencode)?\s{0,3}@-|-T\s{0,3}-(?:\s|$)|--upload-file\s{0,3}-(?:\s|$)|-F\s{0,3}\S{1,30}=@-)",
    ),
    p(
        "world_writable_root",
        0.3,
        r"(?-u:\b)chmod\s{1,5}(?:-[a-zA-Z]{1,5}\s{1,5}){0,2}(?:0?777|a\+rwx|ugo\+rwx|o\+w)\s{1,5}/",
    ),
];
