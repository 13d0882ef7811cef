//! Registry family [`Family::ExecDeny`]: the exec validator's denylist.
//!
//! The exec validator (`crate::shell`) matches these against the raw command and against a
//! *canonical* view of every simple command in it: quotes removed, wrappers such as `sudo`,
//! `env` or `xargs` and leading `VAR=value` assignments skipped, the program replaced by its
//! basename and words joined by single spaces. Patterns anchored with `^` therefore mean "this
//! program is what runs"; unanchored ones mean "this text appears anywhere".
//!
//! The name prefix decides which gate of the validator reports a match:
//! `pipe_*` (only checked on commands that read a pipe), `subst_*`, `zsh_*`, `ifs_*`, `proc_*`;
//! every other name is the denylist gate. The validator keeps one human-readable reason per name and a test
//! there makes sure no pattern here lacks one.

use super::{Family, PatternDef, Source};
use crate::Severity;

/// Start of a command word: the start of the text, a separator, an opening quote or a `/` (so
/// `/usr/bin/rm` counts as `rm`). Keeps `--rm` and `git-rm` from matching.
macro_rules! cmd_start {
    () => {
        r#"(?:^|[\s;&|(`'"/])"#
    };
}

/// End of a word as the shell sees it, or the end of the text.
macro_rules! word_end {
    () => {
        r#"(?:$|[\s;&|)'"])"#
    };
}

/// Optional further words of the same simple command, ending with a blank.
macro_rules! more_args {
    () => {
        r"(?:[^;&|\n]{0,300}\s)?"
    };
}

/// A recursive flag in any spelling `rm` accepts.
macro_rules! flag_recursive_rm {
    () => {
        r"(?:-[A-Za-z]{0,10}[rR][A-Za-z]{0,10}|--recursive)"
    };
}

/// `chmod -r` removes read permission; only `-R` recurses.
macro_rules! flag_recursive_chmod {
    () => {
        r"(?:-[A-Za-z]{0,10}R[A-Za-z]{0,10}|--recursive)"
    };
}

/// The filesystem root or the home directory, in the spellings that reach them.
macro_rules! root_or_home {
    () => {
        r"(?:/|/\*|/\.|/\.\.|~[A-Za-z0-9_-]{0,32}(?:/|/\*|/\.)?|\$HOME(?:/|/\*)?|\$\{HOME(?::[-?=+]?[^}]{0,40})?\}(?:/|/\*)?)"
    };
}

/// Whole-disk and raw-memory device nodes (not `/dev/null`, `/dev/zero`, `/dev/stdout`).
macro_rules! block_device {
    () => {
        r"/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme[0-9]|mmcblk[0-9]|md[0-9]|dm-[0-9]|mapper/|disk/|loop[0-9]|nbd[0-9]|rbd[0-9]|sr[0-9]|mtd[0-9]|mem(?:$|\s)|kmem|port(?:$|\s))"
    };
}

/// Files holding comis configuration.
macro_rules! comis_config {
    () => {
        r"(?:\.comis/config|\.comis/\S{0,100}\.ya?ml|comis\S{0,100}config(?:\.local)?\.ya?ml|config\.local\.ya?ml)"
    };
}

const fn deny(name: &'static str, category: &'static str, source: &'static str) -> PatternDef {
    PatternDef {
        name,
        family: Family::ExecDeny,
        category,
        severity: Severity::Critical,
        weight: 0.0,
        source: Source::Regex(source),
    }
}

pub(super) const PATTERNS: &[PatternDef] = &[
    // --- Destructive filesystem and system operations -------------------------------------
    deny(
        "rm_recursive_root",
        "exec_destructive",
        concat!(
            cmd_start!(),
            r"rm\s",
            more_args!(),
            "(?:",
            flag_recursive_rm!(),
            r"\s",
            more_args!(),
            root_or_home!(),
            "|",
            root_or_home!(),
            r"\s",
            more_args!(),
            flag_recursive_rm!(),
            ")",
            word_end!()
        ),
    ),
    deny(
        "rm_no_preserve_root",
        "exec_destructive",
        concat!(cmd_start!(), r"rm\s[^;&|\n]{0,300}--no-preserve-root"),
    ),
    deny(
        "filesystem_format",
        "exec_destructive",
        concat!(
            cmd_start!(),
            r"(?:mkfs(?:\.[A-Za-z0-9]{1,12})?|mke2fs|mkswap|wipefs)(?:$|\s)"
        ),
    ),
    deny(
        "dd_to_device",
        "exec_destructive",
        concat!(
            cmd_start!(),
            r"dd\s[^;&|\n]{0,300}(?-u:\b)of=",
            block_device!()
        ),
    ),
    deny(
        "redirect_to_device",
        "exec_destructive",
        concat!(r">\s{0,5}", block_device!()),
    ),
    deny(
        "fork_bomb",
        "exec_destructive",
        r"[A-Za-z_:.][A-Za-z0-9_:.]{0,30}\s{0,5}\(\)\s{0,5}\{[^}]{0,200}\|[^}]{0,200}&[^}]{0,50}\}",
    ),
    deny(
        "chmod_recursive_root",
        "exec_destructive",
        concat!(
            cmd_start!(),
            r"(?:chmod|chown|chgrp)\s",
            more_args!(),
            "(?:",
            flag_recursive_chmod!(),
            r"\s",
            more_args!(),
            root_or_home!(),
            "|",
            root_or_home!(),
            r"\s",
            more_args!(),
            flag_recursive_chmod!(),
            ")",
            word_end!()
        ),
    ),
    deny(
        "chmod_world_writable_system",
        "exec_destructive",
        concat!(
            cmd_start!(),
            r"chmod\s",
            more_args!(),
            r"(?:0?777|[ugoa]{0,4}\+rwx|[oa]\+w)\s",
            more_args!(),
            r"/(?:bin|boot|dev|etc|lib|lib32|lib64|opt|proc|root|sbin|srv|sys|usr|var|home)?(?:/\S{0,200})?",
            word_end!()
        ),
    ),
    deny(
        "system_power",
        "exec_destructive",
        r"^(?:shutdown|reboot|halt|poweroff|kexec)(?:$|\s)",
    ),
    deny(
        "system_runlevel",
        "exec_destructive",
        r"^(?:init|telinit)\s{1,5}[06](?:$|\s)",
    ),
    deny(
        "systemctl_power",
        "exec_destructive",
        r"^systemctl\s(?:[^;&|\n]{0,100}\s)?(?:poweroff|reboot|halt|kexec|emergency|rescue)(?:$|\s)",
    ),
    deny(
        "kill_all_processes",
        "exec_destructive",
        // PID 1 (init, or the container's only process) or -1 (every process), as the last
        // argument; `kill -1 1234` (SIGHUP to 1234) does not match.
        r"^(?:kill\s(?:-[1-9A-Za-z][A-Za-z0-9+]{0,19}\s|-s\s[A-Za-z0-9+]{1,20}\s|--signal\s\S{1,20}\s)?-?1$|killall5(?:$|\s))",
    ),
    deny(
        "setuid_bit",
        "exec_privilege_escalation",
        r"^chmod\s(?:[^;&|\n]{0,100}\s)?(?:[ugoa]{0,3}[+=][rwxXt]{0,4}s[rwxXt]{0,4}|0?[2-7][0-7]{3})(?:$|\s)",
    ),
    deny(
        "file_capabilities",
        "exec_privilege_escalation",
        r#"^setcap\s[^;&|\n]{0,200}[+=][eipEIP]{1,3}(?:$|[\s'"])"#,
    ),
    // --- Sensitive files --------------------------------------------------------------------
    deny(
        "etc_credential_file",
        "exec_sensitive_file",
        r"/etc/(?:passwd|shadow|gshadow|sudoers|master\.passwd|security/opasswd)(?-u:\b)",
    ),
    deny(
        "ssh_directory",
        "exec_sensitive_file",
        r#"(?:^|[\s'"=:/])\.ssh(?:$|[/\s'"])"#,
    ),
    deny(
        "credential_store",
        "exec_sensitive_file",
        r#"(?:^|[\s'"=:/])\.(?:aws/credentials|netrc|git-credentials|pgpass|docker/config\.json|kube/config|gnupg(?:$|[/\s'"]))"#,
    ),
    deny(
        "comis_env_file",
        "exec_sensitive_file",
        r"\.comis/(?:[^\s/]{1,64}/){0,4}\.env",
    ),
    deny(
        "comis_auth_profiles",
        "exec_sensitive_file",
        r"\.comis/(?:[^\s/]{1,64}/){0,4}auth-profiles\.json",
    ),
    deny(
        "comis_config_edit",
        "exec_config_tamper",
        concat!(
            r"(?-u:\b)(?:sed|awk|gawk|tee|cp|mv|perl|ruby|install|ln|truncate|dd|rsync)(?-u:\b)[^;&|\n]{0,300}",
            comis_config!()
        ),
    ),
    deny(
        "comis_config_redirect",
        "exec_config_tamper",
        concat!(r#"(?:>|>>|>\|)\s{0,5}['"]?\S{0,200}"#, comis_config!()),
    ),
    // --- Code-execution builtins: they run a string or a file the validator never sees ----
    deny("eval_builtin", "exec_code_execution", r"^eval(?:$|\s)"),
    deny(
        "source_builtin",
        "exec_code_execution",
        r"^(?:source|\.)\s{1,10}\S",
    ),
    deny(
        "trap_builtin",
        "exec_code_execution",
        r"^trap\s{1,10}[^-\s]",
    ),
    deny("let_builtin", "exec_code_execution", r"^let(?:$|\s)"),
    deny(
        "mapfile_callback",
        "exec_code_execution",
        r"^(?:mapfile|readarray)\s[^;&|\n]{0,200}-[A-Za-z]{0,5}C",
    ),
    deny(
        "enable_loadable_builtin",
        "exec_code_execution",
        r"^enable\s(?:[^;&|\n]{0,100}\s)?-[A-Za-z]{0,5}f",
    ),
    // --- Indirect execution --------------------------------------------------------------------
    deny(
        "find_exec",
        "exec_indirect_execution",
        r"(?-u:\b)find(?:\s[^;&|\n]{0,500})?\s-(?:exec|execdir|ok|okdir)(?:$|\s)",
    ),
    deny(
        "fd_exec",
        "exec_indirect_execution",
        r"(?:^|[\s;&|(])fd(?:\s[^;&|\n]{0,300})?\s(?:-x|-X|--exec|--exec-batch)(?:$|\s)",
    ),
    deny(
        "xargs_dangerous",
        "exec_indirect_execution",
        r"(?-u:\b)xargs(?:\s{1,5}-{1,2}[A-Za-z0-9][^\s]{0,40}(?:\s{1,5}[^-\s][^\s]{0,40})?){0,6}\s{1,5}(?:sudo\s{1,5})?(?:\S{0,100}/)?(?:rm|chmod|chown|chgrp|mv|shred|dd|mkfs|unlink|truncate|sh|bash|zsh|dash|ksh)(?:$|\s)",
    ),
    deny(
        "curl_pipe_shell",
        "exec_indirect_execution",
        r"(?-u:\b)(?:curl|wget|fetch|aria2c)(?-u:\b)[^|;&\n]{0,500}\|\s{0,5}(?:sudo\s{1,5}(?:-\S{1,20}\s{1,5}){0,3})?(?:env\s{1,5})?(?:\S{0,100}/)?(?:(?:(?:ba|z|da|k|c|tc|a|fi|mk)?sh)(?:$|[\s;&|])|(?:python[0-9.]{0,4}|perl|ruby|node|php)(?:\s{1,5}-)?\s{0,5}(?:$|[;&|]))",
    ),
    // --- Encodings that hide a command from every text check --------------------------------
    deny(
        "ansi_c_quoting",
        "exec_obfuscation",
        // The body is read in escape pairs, so `\\2` (escaped backslash, then 2) and `\'`
        // (an escaped quote, which does not end the string) are both understood.
        r"\$'(?:[^'\\]|\\[^xuUc0-7]|\\0){0,500}\\(?:x[0-9A-Fa-f]|u[0-9A-Fa-f]|U[0-9A-Fa-f]|[1-7]|0[0-7]|c)",
    ),
    deny(
        "variable_slice_obfuscation",
        "exec_obfuscation",
        r"\$\{[A-Za-z_][A-Za-z0-9_]{0,30}:[0-9]{1,3}:1\}",
    ),
    // --- sed commands that run programs or write files ------------------------------------------
    deny(
        "sed_execute_command",
        "exec_indirect_execution",
        r#"(?-u:\b)sed\s[^|&\n]{0,300}?(?:['"\s;]|-e\s{1,5}|--expression=)\s{0,5}(?:[0-9$]{1,10}(?:,[0-9$]{1,10})?|/[^/\n]{0,100}/)?\s{0,3}!?e(?:$|[\s'";}])"#,
    ),
    deny(
        "sed_write_command",
        "exec_indirect_execution",
        r#"(?-u:\b)sed\s[^|&\n]{0,300}?(?:['"\s;]|-e\s{1,5}|--expression=)\s{0,5}(?:[0-9$]{1,10}(?:,[0-9$]{1,10})?|/[^/\n]{0,100}/)?\s{0,3}!?[wW]\s{1,5}\S"#,
    ),
    deny(
        "sed_substitute_exec_flag",
        "exec_indirect_execution",
        r#"(?-u:\b)sed\s[^;&\n]{0,300}?[/|#:,@][gpIiMm0-9]{0,6}[ew](?:$|[\s'";}])"#,
    ),
    // --- Remote shells and argument injection -------------------------------------------------
    deny("dev_tcp_socket", "exec_reverse_shell", r"/dev/(?:tcp|udp)/"),
    deny(
        "netcat_exec",
        "exec_reverse_shell",
        concat!(
            cmd_start!(),
            r"(?:nc|ncat|netcat)(?:\.[A-Za-z]{1,12})?(?:\s[^;&|\n]{0,300})?(?:\s-[A-Za-z]{0,6}[ec](?:$|\s)|\s--(?:exec|sh-exec|lua-exec)(?:$|[\s=]))"
        ),
    ),
    deny(
        "socat_exec",
        "exec_reverse_shell",
        r"(?-u:\b)socat\s[^;&|\n]{0,300}(?i:exec|system):",
    ),
    deny(
        "interactive_shell",
        "exec_reverse_shell",
        concat!(
            cmd_start!(),
            r#"(?:ba|z|k|da|a|c|tc)?sh\s{1,5}-[A-Za-z]{0,4}i[A-Za-z]{0,4}(?:$|[\s'"])"#
        ),
    ),
    deny(
        "shellshock_function",
        "exec_code_execution",
        r"\(\)\s{0,5}\{\s{0,5}:\s{0,5};\s{0,5}\}\s{0,5};",
    ),
    deny(
        "php_webshell",
        "exec_code_execution",
        r"(?i:system|passthru|shell_exec|exec|popen|proc_open|pcntl_exec|eval|assert)\s{0,5}\(\s{0,5}\$_(?:GET|POST|REQUEST|COOKIE|SERVER|FILES)",
    ),
    deny(
        "php_request_code",
        "exec_code_execution",
        r"<\?(?:php|=)[^\n]{0,500}\$_(?:GET|POST|REQUEST|COOKIE|FILES)(?-u:\b)",
    ),
    deny(
        "browser_command_option",
        "exec_argument_injection",
        r"(?i:--gpu-launcher|--renderer-cmd-prefix|--utility-cmd-prefix|--gpu-cmd-prefix|--ppapi-plugin-launcher)",
    ),
    deny(
        "psql_pipe_output",
        "exec_argument_injection",
        r#"(?-u:\b)psql(?:\s[^;&\n]{0,300})?\s(?:-o|--output)(?:\s{0,3}|=)['"]?\|"#,
    ),
    deny(
        "ssh_command_option",
        "exec_argument_injection",
        r"(?i:proxycommand|localcommand|knownhostscommand)\s{0,3}[=\s]",
    ),
    deny(
        "git_command_option",
        "exec_argument_injection",
        r#"(?:^|[\s'"=])(?i:--upload-pack|--receive-pack|core\.sshcommand|core\.fsmonitor|core\.hookspath|protocol\.ext\.allow|ext::)"#,
    ),
    deny(
        "git_config_override_command",
        "exec_argument_injection",
        r#"(?-u:\b)git\s(?:[^;&|\n]{0,200}\s)?-c\s{0,3}['"]?(?i:core\.(?:pager|editor|askpass|gitproxy)|sequence\.editor|diff\.external|credential\.helper|alias\.)"#,
    ),
    deny(
        "download_then_execute",
        "exec_indirect_execution",
        r"(?-u:\b)(?:curl|wget|fetch|aria2c)(?-u:\b)[^\n]{0,500}(?:&&|;|\|\|)\s{0,5}(?:sudo\s{1,5})?(?:(?:ba|z|da|k)?sh|python[0-9.]{0,4}|perl|ruby|node)\s{1,5}\S",
    ),
    deny(
        "crontab_modify",
        "exec_persistence",
        r"^crontab\s(?:-u\s\S{1,40}\s)?(?:-r|-ri|-ir|-|[^-\s]\S*)(?:$|\s)",
    ),
    deny(
        "container_host_escape",
        "exec_privilege_escalation",
        r#"(?-u:\b)(?:docker|podman|nerdctl)(?-u:\b)[^;&|\n]{0,300}(?:--privileged|\s-v\s{0,3}['"]?/:|--volume[=\s]['"]?/:|source=/,|--pid[=\s]host|docker\.sock)"#,
    ),
    deny(
        "tar_command_option",
        "exec_argument_injection",
        r#"(?i:--checkpoint-action\s{0,3}=?\s{0,3}['"]?exec|--to-command|--info-script|--new-volume-script)"#,
    ),
    // --- Substitution hidden in quotes (gate `substitution`) ------------------------------------
    // Bash evaluates array subscripts arithmetically in `[[ x -eq y ]]`, `(( ))`, `declare -i`
    // assignments and `${a[…]}`, and that evaluation runs `$(…)` even from a single-quoted
    // string: `[[ 'a[$(id)]' -eq 0 ]]` runs id. A `[` followed by a substitution before its `]`
    // is that trick's signature.
    deny(
        "subst_arithmetic_subscript",
        "exec_substitution",
        r"\[[^\]\n]{0,100}?(?:\$\(|`)",
    ),
    // --- IFS manipulation (gate `ifs`) ----------------------------------------------------------
    deny("ifs_reference", "exec_ifs", r"\$IFS(?:$|[^A-Za-z0-9_])"),
    deny(
        "ifs_expansion",
        "exec_ifs",
        r"\$\{(?:[^}]{0,60}[^A-Za-z0-9_}])?IFS(?:$|[^A-Za-z0-9_])",
    ),
    // --- Process environment (gate `proc`) ----------------------------------------------------
    deny(
        "proc_environ",
        "exec_proc_environ",
        r"/proc/\S{0,100}?environ",
    ),
    // --- Pipe targets (gate `pipe`; matched only on commands that read a pipe) ----------------
    deny(
        "pipe_to_shell",
        "exec_pipe",
        r"^(?:sh|bash|zsh|dash|fish|csh|tcsh|ksh|mksh|ash|yash|busybox|pwsh|powershell)(?:$|\s)",
    ),
    deny(
        "pipe_to_network",
        "exec_pipe",
        r"^(?:(?:nc|ncat|netcat|socat|telnet|curl|wget|ssh)(?:$|\s)|openssl\s(?:s_client|s_server))",
    ),
    deny(
        "pipe_to_interpreter",
        "exec_pipe",
        r"^(?:python[0-9.]{0,5}|perl|ruby|node|nodejs|php|lua|tclsh|Rscript|osascript)(?:\s{1,5}-[A-Za-z]{1,6}){0,3}(?:\s{1,5}-)?\s{0,5}$",
    ),
    // --- zsh modules and builtins (gate `zsh`) ------------------------------------------------
    deny(
        "zsh_dangerous_builtin",
        "exec_zsh",
        r"^(?:zmodload|emulate|sysopen|sysread|syswrite|sysseek|zpty|ztcp|zsocket|zf_rm|zf_mv|zf_ln|zf_chmod|zf_chown|zf_mkdir|zf_rmdir|zf_chgrp)(?:$|\s)",
    ),
    deny(
        "zsh_fc_execute",
        "exec_zsh",
        r"^fc\s(?:[^;&|\n]{0,100}\s)?-[A-Za-z]{0,5}e",
    ),
];
