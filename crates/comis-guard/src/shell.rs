//! The exec command validator: decides whether a shell command line the agent asked to run may
//! reach `/bin/bash -c`.
//!
//! ## What it defends
//! A prompt-injected model that tries to use the `exec` tool to run something other than what
//! a reviewer of the command text would see (command, process and zsh substitution, encoded
//! bytes, quote-split names, IFS and brace tricks), to destroy the host (recursive deletes of `/`
//! or `~`, `mkfs`, writes to block devices, fork bombs, shutdown), to read or plant credentials
//! (`/etc/shadow`, `~/.ssh`, the comis `.env` and auth profiles, `/proc/*/environ`), to hand
//! data or code to a shell or the network through a pipe, or to smuggle loader and interpreter
//! hooks through the environment (`LD_PRELOAD`, `BASH_ENV`, `NODE_OPTIONS`, ...).
//!
//! ## How
//! Gates run in the order of the original implementation and the first gate that fires names
//! the verdict's [`Blocker`]; every gate still runs so the findings list shows everything seen:
//! `sanitize` (control, invisible and odd-space characters, length), `substitution`, `pipe`,
//! `denylist`, `ifs`, `brace`, `proc`, `desync`, then per simple command `path`, `redirect`,
//! `zsh`, and for [`validate_exec`] finally `env`.
//!
//! A single quote-aware lexer (NORMAL, single, double, ANSI-C `$'…'` and backtick states,
//! backslash escapes outside single quotes) feeds every gate, so no gate can disagree with
//! another about what is quoted. Each simple command is also reduced to a *canonical* form
//! (quotes removed, `sudo`/`env`/`xargs`/`timeout`-style wrappers and `VAR=value` prefixes
//! skipped, program replaced by its basename) and the registry's [`Family::ExecDeny`] patterns
//! run on both the raw text and every canonical form, so `"r""m" -rf /` and `sudo /bin/rm -rf /`
//! meet the same rule as `rm -rf /`. A command string handed to a nested shell (`bash -c`,
//! `su -c`, `env -S`, `watch`, a shell's `<<<` here-string, a helper variable such as
//! `GIT_SSH_COMMAND`) is validated recursively.
//!
//! Path arguments are judged the way the kernel will see them: normalised (`/etc/./shadow`),
//! glob-matched with shell rules (`/et?/shad*`), and resolved against what earlier commands
//! of the same line established: a `cd` (`cd /etc && rm hosts`) or a literal assignment
//! (`d=/etc; rm $d/hosts`). An expansion that cannot be resolved is treated like a glob.
//!
//! Two places where quoting does *not* make text inert are handled: array subscripts that
//! bash evaluates arithmetically (`[[ 'a[$(id)]' -eq 0 ]]` runs `id`), and `$'…'`, where `\'`
//! does not close the string. Variables the env gate refuses are refused when the command
//! sets them itself (`LD_PRELOAD=x ls`, `export BASH_ENV=…`).
//!
//! ## What it guarantees
//! - Fail closed: input the lexer cannot read the way bash would (unterminated quotes,
//!   unbalanced parentheses, empty commands between operators, dynamic or quote-split program
//!   names) is refused with blocker `desync`; if the pattern registry failed to build, every
//!   command is refused.
//! - Linear time in the input and no panics; inputs longer than the kernel's per-argument limit
//!   ([`MAX_COMMAND_BYTES`]) are refused before any parsing.
//! - `validate_env` is an allowlist: a name not on it is refused even if no rule names it.
//!
//! ## What it does not guarantee
//! It is a text filter in front of the OS sandbox, not a replacement for it. It cannot see into
//! script files, into interpreter code (`python -c`, `perl -e`, `awk 'BEGIN{system(…)}'`; only
//! raw-text patterns apply there), into variables set outside the command or assembled at run
//! time (`p='$'; …` fed to arithmetic), or into `case` statements (refused as desync); and a
//! determined attacker with a shell can find spellings no denylist lists. Substitution is
//! refused even where it would be harmless (`$(date)`): deliberately strict, because its output
//! is unknowable here. `find -exec` and `xargs rm` are refused as in the original, which costs
//! many legitimate `find` one-liners.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Serialize;

use crate::patterns::{Family, PatternSet, Registry};
use crate::{Finding, GuardError, Severity};

/// Longest command accepted, in bytes. Linux refuses a single `execve` argument longer than
/// `MAX_ARG_STRLEN` (32 pages, 131,072 bytes including the NUL), so `bash -c <longer>` could
/// never run; refusing first also bounds the validator's work on hostile input.
pub const MAX_COMMAND_BYTES: usize = 131_071;

/// Deepest chain of nested command strings (`bash -c "sh -c '…'"`) that is analysed.
const MAX_NESTING: usize = 4;

/// Bound on distinct findings kept per verdict, so a megabyte of repeated tricks cannot turn
/// into a megabyte of audit event.
const MAX_HITS: usize = 64;

/// Which gate refused a command. Ordered as the gates run: the verdict names the earliest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Blocker {
    /// Control, invisible or ambiguous-space characters, or an over-long command.
    Sanitize,
    /// `$(…)`, backticks, `<(…)`, `>(…)`, zsh `=(…)` and `=cmd`.
    Substitution,
    /// Data piped into a shell, an interpreter reading stdin, or a network tool.
    Pipe,
    /// The [`Family::ExecDeny`] patterns and encoded (ANSI-C) escapes.
    Denylist,
    /// `$IFS`, `${…IFS…}`, `IFS=`.
    Ifs,
    /// Unquoted brace expansion with a comma or `..`.
    Brace,
    /// `/proc/<pid>/environ`.
    Proc,
    /// The validator and bash would disagree about what runs.
    Desync,
    /// A mutating command aimed at a protected path.
    Path,
    /// An output redirection aimed at a protected path or a shell start-up file.
    Redirect,
    /// zsh modules and builtins that bypass everything else (`zmodload`, `ztcp`, `fc -e`, ...).
    Zsh,
    /// An environment variable outside the allowlist.
    Env,
}

impl Blocker {
    /// The lowercase id used in messages, JSON and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocker::Sanitize => "sanitize",
            Blocker::Substitution => "substitution",
            Blocker::Pipe => "pipe",
            Blocker::Denylist => "denylist",
            Blocker::Ifs => "ifs",
            Blocker::Brace => "brace",
            Blocker::Proc => "proc",
            Blocker::Desync => "desync",
            Blocker::Path => "path",
            Blocker::Redirect => "redirect",
            Blocker::Zsh => "zsh",
            Blocker::Env => "env",
        }
    }

    fn category(self) -> &'static str {
        match self {
            Blocker::Sanitize => "exec_sanitize",
            Blocker::Substitution => "exec_substitution",
            Blocker::Pipe => "exec_pipe",
            Blocker::Denylist => "exec_denylist",
            Blocker::Ifs => "exec_ifs",
            Blocker::Brace => "exec_brace",
            Blocker::Proc => "exec_proc_environ",
            Blocker::Desync => "exec_desync",
            Blocker::Path => "exec_path",
            Blocker::Redirect => "exec_redirect",
            Blocker::Zsh => "exec_zsh",
            Blocker::Env => "exec_env",
        }
    }
}

/// The validator's answer for one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandVerdict {
    pub allowed: bool,
    /// Why the command was refused, naming the blocking gate first (`"denylist: …"`).
    pub reason: Option<String>,
    /// The earliest gate (in gate order) that refused the command.
    pub blocker: Option<Blocker>,
    /// Everything every gate saw, one finding per distinct rule.
    pub findings: Vec<Finding>,
}

/// The answer for an environment override map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvVerdict {
    pub allowed: bool,
    /// Why the first refused variable was refused.
    pub reason: Option<String>,
    /// Every refused variable name, in input order.
    pub denied: Vec<String>,
    pub findings: Vec<Finding>,
}

// ---------------------------------------------------------------------------------------------
// Public entry points
// ---------------------------------------------------------------------------------------------

/// The exec validator with its registry patterns compiled. Build once, share freely.
#[derive(Debug, Clone)]
pub struct CommandValidator {
    /// Every `ExecDeny` pattern except the pipe-target and conditional ones.
    deny: PatternSet,
    /// `pipe_*` patterns, matched only on commands that read a pipe.
    pipe: PatternSet,
    /// `subst_*` patterns, matched only on lines that evaluate arithmetic.
    arith: PatternSet,
}

static DEFAULT_VALIDATOR: LazyLock<Result<CommandValidator, GuardError>> =
    LazyLock::new(CommandValidator::new);

impl CommandValidator {
    /// Selects the [`Family::ExecDeny`] patterns from the global registry.
    pub fn new() -> Result<Self, GuardError> {
        let reg = Registry::global()?;
        let exec = |prefix: Option<&'static str>| {
            reg.select_where(move |d| {
                let conditional =
                    d.name.starts_with(PIPE_PREFIX) || d.name.starts_with(ARITH_PREFIX);
                d.family == Family::ExecDeny
                    && match prefix {
                        Some(p) => d.name.starts_with(p),
                        None => !conditional,
                    }
            })
        };
        Ok(CommandValidator {
            deny: exec(None)?,
            pipe: exec(Some(PIPE_PREFIX))?,
            arith: exec(Some(ARITH_PREFIX))?,
        })
    }

    /// Validates one command line.
    pub fn validate(&self, command: &str) -> CommandVerdict {
        let mut hits = Hits::default();
        self.analyze(command, 0, &mut hits);
        hits.into_verdict()
    }

    /// Validates a command line and the environment overrides it will run with; the env gate
    /// runs last, as in the original pipeline.
    pub fn validate_with_env(&self, command: &str, env: &[(String, String)]) -> CommandVerdict {
        let mut hits = Hits::default();
        self.analyze(command, 0, &mut hits);
        check_env(env, &mut hits);
        hits.into_verdict()
    }

    fn analyze(&self, cmd: &str, depth: usize, hits: &mut Hits) {
        if !sanitize(cmd, hits) {
            return;
        }
        let segments = lex(cmd, hits);

        for p in self.deny.matching(cmd) {
            hits.push_pattern(p.name(), p.category(), None);
        }

        let mut state = LineState::default();
        let mut arithmetic = false;
        for raw_seg in &segments {
            let substituted = state.substitute(raw_seg);
            let seg = substituted.as_ref().unwrap_or(raw_seg);
            for w in seg
                .words
                .iter()
                .chain(seg.redirects.iter().filter_map(|r| r.target.as_ref()))
            {
                if let Some(inner) = brace_expansion(&w.skeleton) {
                    hits.push(
                        Blocker::Brace,
                        "brace_expansion",
                        format!("unquoted brace expansion {{{inner}}} builds words the validator never sees; quote the braces"),
                    );
                }
            }
            check_redirects(seg, &state, hits);
            arithmetic |= evaluates_subscripts(seg);

            let Some(view) = CommandView::resolve(seg) else {
                check_ifs_assignments(seg, None, hits);
                for (nested, via) in check_inline_env(seg, None, hits) {
                    self.analyze_nested(&nested, via, depth, hits);
                }
                state.record(seg, None);
                continue;
            };
            arithmetic |= evaluates_arithmetic(seg, &view);
            let snippet = truncate(&view.canonical, 100);
            for p in self.deny.matching(&view.canonical) {
                hits.push_pattern(p.name(), p.category(), Some(&snippet));
            }
            if seg.piped {
                for p in self.pipe.matching(&view.canonical) {
                    hits.push_pattern(p.name(), p.category(), Some(&snippet));
                }
            }
            check_command_word(seg, &view, hits);
            check_ifs_assignments(seg, Some(&view), hits);
            let helper_commands = check_inline_env(seg, Some(&view), hits);
            check_mutation_paths(seg, &view, &state, hits);
            check_sensitive_paths(seg, &view, &state, hits);
            state.record(seg, Some(&view));

            for (nested, via) in view.nested_commands(seg).into_iter().chain(helper_commands) {
                self.analyze_nested(&nested, via, depth, hits);
            }
        }
        if arithmetic {
            for p in self.arith.matching(cmd) {
                hits.push_pattern(p.name(), p.category(), None);
            }
        }
    }

    fn analyze_nested(&self, nested: &str, via: &str, depth: usize, hits: &mut Hits) {
        if depth + 1 > MAX_NESTING {
            hits.push(
                Blocker::Desync,
                "nesting_too_deep",
                format!("command strings nested more than {MAX_NESTING} levels deep (via `{via}`)"),
            );
            return;
        }
        let saved = std::mem::replace(&mut hits.context, format!("in `{via}` string: "));
        self.analyze(nested, depth + 1, hits);
        hits.context = saved;
    }
}

/// Validates one command line with the process-wide validator. Refuses everything if the
/// pattern registry failed to build (fail closed).
pub fn validate_command(command: &str) -> CommandVerdict {
    match &*DEFAULT_VALIDATOR {
        Ok(v) => v.validate(command),
        Err(e) => registry_failure(e),
    }
}

/// [`validate_command`] plus the environment gate.
pub fn validate_exec(command: &str, env: &[(String, String)]) -> CommandVerdict {
    match &*DEFAULT_VALIDATOR {
        Ok(v) => v.validate_with_env(command, env),
        Err(e) => registry_failure(e),
    }
}

fn registry_failure(e: &GuardError) -> CommandVerdict {
    let mut hits = Hits::default();
    hits.push(
        Blocker::Denylist,
        "validator_unavailable",
        format!("exec validator unavailable, refusing every command: {e}"),
    );
    hits.into_verdict()
}

/// Validates environment overrides for an exec call against the allowlist.
pub fn validate_env(env: &[(String, String)]) -> EnvVerdict {
    let mut hits = Hits::default();
    let denied = check_env(env, &mut hits);
    let verdict = hits.into_verdict();
    EnvVerdict {
        allowed: verdict.allowed,
        reason: verdict.reason,
        denied,
        findings: verdict.findings,
    }
}

/// Splits a command line into its simple commands, on `&&`, `||`, `;`, `|`, `|&`, `&` and
/// subshell parentheses outside quotes. Returns trimmed slices of the input; empty pieces are
/// dropped. Redirections such as `2>&1` and `&>` are not separators.
pub fn split_segments(command: &str) -> Vec<&str> {
    let mut scratch = Hits::default();
    lex(command, &mut scratch)
        .iter()
        .filter_map(|s| command.get(s.start..s.end))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Findings collection
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Hit {
    blocker: Blocker,
    name: &'static str,
    category: &'static str,
    reason: String,
}

#[derive(Debug, Default)]
struct Hits {
    list: Vec<Hit>,
    /// Prefix for reasons found inside a nested command string.
    context: String,
}

impl Hits {
    fn push(&mut self, blocker: Blocker, name: &'static str, reason: impl Into<String>) {
        self.push_full(blocker, name, blocker.category(), reason.into());
    }

    fn push_pattern(&mut self, name: &'static str, category: &'static str, seg: Option<&str>) {
        let blocker = blocker_for_pattern(name);
        let base = pattern_reason(name);
        let reason = match seg {
            Some(s) => format!("{base} (in `{s}`)"),
            None => base.to_string(),
        };
        self.push_full(blocker, name, category, reason);
    }

    fn push_full(
        &mut self,
        blocker: Blocker,
        name: &'static str,
        category: &'static str,
        reason: String,
    ) {
        if self.list.len() >= MAX_HITS || self.list.iter().any(|h| h.name == name) {
            return;
        }
        let reason = if self.context.is_empty() {
            reason
        } else {
            format!("{}{reason}", self.context)
        };
        self.list.push(Hit {
            blocker,
            name,
            category,
            reason,
        });
    }

    /// The blocking hit is the first hit of the earliest gate; its finding is listed first.
    fn into_verdict(mut self) -> CommandVerdict {
        let first = self
            .list
            .iter()
            .enumerate()
            .min_by_key(|(_, h)| h.blocker)
            .map(|(i, _)| i);
        if let Some(i) = first {
            let h = self.list.remove(i);
            self.list.insert(0, h);
        }
        let (blocker, reason) = match self.list.first() {
            Some(h) => (
                Some(h.blocker),
                Some(format!("{}: {}", h.blocker.as_str(), h.reason)),
            ),
            None => (None, None),
        };
        let findings = self
            .list
            .iter()
            .map(|h| Finding::new(h.name, h.category, Severity::Critical))
            .collect();
        CommandVerdict {
            allowed: blocker.is_none(),
            reason,
            blocker,
            findings,
        }
    }
}

const PIPE_PREFIX: &str = "pipe_";
const ARITH_PREFIX: &str = "subst_";

fn blocker_for_pattern(name: &str) -> Blocker {
    if name.starts_with(PIPE_PREFIX) {
        Blocker::Pipe
    } else if name.starts_with(ARITH_PREFIX) {
        Blocker::Substitution
    } else if name.starts_with("zsh_") {
        Blocker::Zsh
    } else if name.starts_with("ifs_") {
        Blocker::Ifs
    } else if name.starts_with("proc_") {
        Blocker::Proc
    } else {
        Blocker::Denylist
    }
}

/// One sentence per registry pattern, for the verdict's reason. A test keeps this in step with
/// `patterns/exec.rs`.
fn pattern_reason(name: &str) -> &'static str {
    match name {
        "rm_recursive_root" => "Recursive delete of the filesystem root or the home directory",
        "rm_no_preserve_root" => "rm with --no-preserve-root",
        "filesystem_format" => "Filesystem format command",
        "dd_to_device" => "dd writing to a block device",
        "redirect_to_device" => "Redirection onto a block device",
        "fork_bomb" => "Fork bomb pattern",
        "chmod_recursive_root" => {
            "Recursive permission or owner change on the root or home directory"
        }
        "chmod_world_writable_system" => "World-writable permissions on a system path",
        "system_power" => "Shutting down or rebooting the host",
        "system_runlevel" => "Changing the runlevel (init 0 / init 6)",
        "systemctl_power" => "Powering off, rebooting or isolating the host through systemctl",
        "kill_all_processes" => "Killing every process",
        "setuid_bit" => "Setting the setuid or setgid bit",
        "file_capabilities" => "Granting file capabilities (setcap)",
        "etc_credential_file" => "Access to a sensitive system file (passwd, shadow, sudoers)",
        "ssh_directory" => "Access to an SSH key directory",
        "credential_store" => {
            "Access to a credential store (cloud, git, docker, kube, netrc, gnupg)"
        }
        "comis_env_file" => {
            "Access to the secret envfile is blocked. Use the gateway tool with action='env_list' to see which secret names are configured (names only, no values). Secret values are never returned to the agent"
        }
        "comis_auth_profiles" => "Access to comis auth-profiles.json (OAuth tokens) is blocked",
        "comis_config_edit" | "comis_config_redirect" => {
            "Direct config file modification bypasses validation and audit. Use the gateway tool's config.patch instead"
        }
        "eval_builtin" => "Shell eval executes arbitrary code",
        "source_builtin" => {
            "Shell source (or `.`) executes an arbitrary script file. For virtualenvs, call the venv binary directly (e.g. .venv/bin/python3) instead of sourcing activate"
        }
        "trap_builtin" => "trap runs its string as shell code, like eval",
        "let_builtin" => "let evaluates arithmetic, where array subscripts can run commands",
        "mapfile_callback" => "mapfile/readarray -C runs a callback string as shell code",
        "enable_loadable_builtin" => "enable -f loads a shared object into the shell",
        "find_exec" => "find -exec/-execdir/-ok can execute arbitrary commands",
        "fd_exec" => "fd -x/--exec can execute arbitrary commands",
        "xargs_dangerous" => "xargs feeding a destructive command or a shell",
        "curl_pipe_shell" => "Download piped straight into a shell or interpreter",
        "ansi_c_quoting" => {
            "ANSI-C quoting ($'...') with escape sequences can encode arbitrary commands, bypassing command validation"
        }
        "variable_slice_obfuscation" => {
            "Single-character variable slice (${VAR:n:1}), a known way to smuggle '/' or spaces past filters"
        }
        "sed_execute_command" => "sed 'e' command executes pattern space as a shell command",
        "sed_write_command" => "sed 'w' command writes pattern space to an arbitrary file",
        "sed_substitute_exec_flag" => "sed substitution with the 'e' (execute) or 'w' (write) flag",
        "dev_tcp_socket" => "Network socket through /dev/tcp or /dev/udp (reverse shell)",
        "netcat_exec" => "netcat running a program for the remote end (bind or reverse shell)",
        "socat_exec" => "socat running a program for the remote end (bind or reverse shell)",
        "interactive_shell" => "Interactive shell (-i), the core of a reverse shell",
        "shellshock_function" => "Shellshock-style function definition",
        "php_webshell" => "PHP web shell executing request parameters",
        "php_request_code" => "PHP code that acts on request parameters (web shell)",
        "browser_command_option" => "Chromium option that runs an arbitrary command",
        "psql_pipe_output" => "psql output piped into a program",
        "ssh_command_option" => "ssh option that runs a local command (ProxyCommand, LocalCommand)",
        "git_command_option" => "git option or transport that runs an arbitrary command",
        "git_config_override_command" => {
            "git -c override of a setting that runs a command (pager, editor, askpass, alias)"
        }
        "download_then_execute" => "Download followed by running a script in the same command",
        "crontab_modify" => {
            "Installing or removing crontab entries (persistence); use the cron tool instead"
        }
        "container_host_escape" => {
            "Container with host root, host PID namespace, privileges or the docker socket (host escape)"
        }
        "tar_command_option" => "tar option that runs an arbitrary command",
        "subst_arithmetic_subscript" => {
            "Array subscript holding a command substitution in a line that evaluates arithmetic: bash runs it even from inside quotes"
        }
        "ifs_reference" | "ifs_expansion" => "IFS variable usage could bypass security validation",
        "proc_environ" => {
            "Access to /proc/*/environ is blocked (environment variable exfiltration)"
        }
        "pipe_to_shell" => {
            "Pipe into a shell interpreter (remote code execution). Piping data to shell interpreters is blocked"
        }
        "pipe_to_network" => {
            "Pipe into a network tool (potential data exfiltration). Piping data to network tools is blocked"
        }
        "pipe_to_interpreter" => "Pipe into an interpreter that executes its standard input",
        "zsh_dangerous_builtin" => "zsh module or builtin that bypasses the shell's usual commands",
        "zsh_fc_execute" => "zsh/bash 'fc -e' (history execute)",
        _ => "Matched an exec denylist pattern",
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or(s)),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Gate 0: sanitize
// ---------------------------------------------------------------------------------------------

/// Returns false if the command must not be parsed at all (too long).
fn sanitize(cmd: &str, hits: &mut Hits) -> bool {
    if cmd.len() > MAX_COMMAND_BYTES {
        hits.push(
            Blocker::Sanitize,
            "command_too_long",
            format!(
                "command is {} bytes, longer than the {MAX_COMMAND_BYTES}-byte limit of one exec argument; write a script with the write tool and run it",
                cmd.len()
            ),
        );
        return false;
    }
    if cmd.is_ascii() && !cmd.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return true;
    }
    let mut seen: Vec<&'static str> = Vec::new();
    for (pos, c) in cmd.chars().enumerate() {
        let Some(kind) = forbidden_char(c) else {
            continue;
        };
        if !seen.contains(&kind) {
            seen.push(kind);
            hits.push(Blocker::Sanitize, kind, char_reason(cmd, pos, c));
        }
    }
    true
}

/// The original's list (C0 controls but TAB, DEL, NBSP, soft hyphen, Ogham and the U+2000
/// spaces, zero-width and directional marks, line/paragraph separators, narrow and
/// mathematical spaces, word joiner, ideographic space, BOM), plus: CR (a one-line command has
/// no use for it, and it can overwrite what a terminal shows a reviewer), C1 controls, and
/// every invisible character the Unicode layer knows (bidi overrides and isolates, tags).
/// Positions in reasons count characters, not bytes.
fn forbidden_char(c: char) -> Option<&'static str> {
    match c {
        '\t' => None,
        '\n' => Some("line_feed"),
        '\r' => Some("carriage_return"),
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => Some("control_character"),
        '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}' | '\u{202f}' | '\u{205f}' | '\u{3000}' => {
            Some("unicode_space")
        }
        _ => crate::unicode::invisible_category(c).map(|_| "invisible_character"),
    }
}

fn char_reason(cmd: &str, pos: usize, c: char) -> String {
    let mut msg = format!(
        "Command contains invisible/ambiguous character U+{:04X} at position {pos}. This can bypass security validation. Remove the character and retry.",
        c as u32
    );
    if c == '\n' {
        if looks_like_file_write(cmd) {
            msg.push_str(" To write files, use the 'write' tool (or 'edit' for targeted changes) instead of a shell heredoc in exec.");
        } else {
            msg.push_str(" For multi-line scripts, use command='python3 -' (or 'node -', 'bash -') with the 'input' parameter for the script body.");
        }
    }
    msg
}

/// Whether a multi-line command is really a file write (heredoc into cat/tee, an echo, or a
/// redirection on the first line): the LF hint then points to the write tool.
fn looks_like_file_write(cmd: &str) -> bool {
    let first_line = cmd.split('\n').next().unwrap_or("");
    let first_word = first_line.split_whitespace().next().unwrap_or("");
    matches!(first_word, "cat" | "tee" | "echo" | "printf") || first_line.contains('>')
}

// ---------------------------------------------------------------------------------------------
// The lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    And,
    Or,
    Pipe,
    PipeErr,
    Semi,
    Background,
    CaseEnd,
    OpenParen,
    CloseParen,
    Newline,
}

/// One shell word after quote removal, plus what the lexer noticed while reading it.
#[derive(Debug, Clone, Default)]
struct Word {
    /// The word as the program would receive it, with expansions left as written.
    text: String,
    /// Real quoting (`'…'`, `"…"`, `$'…'`, `$"…"`) occurs in the word.
    quote_parts: usize,
    /// A character outside any quote or escape occurs in the word.
    has_unquoted: bool,
    /// An empty quote pair (`''`, `""`) occurs: only useful to split a word.
    empty_quote: bool,
    /// A backslash escapes an ordinary letter or digit after the word's first character
    /// (`w\ho\am\i`). A leading `\cmd` is the common alias-bypass idiom and is not counted.
    escaped_plain: bool,
    /// A parameter, command or arithmetic expansion occurs in the word.
    dynamic: bool,
    /// An unquoted glob character occurs in the word.
    glob: bool,
    /// A `${name[…]}` expansion occurs: its subscript is evaluated arithmetically.
    subscript_expansion: bool,
    /// The word's unquoted structure: quoted and expanded spans each become `_`. Brace
    /// expansion is judged on this.
    skeleton: String,
}

impl Word {
    fn push_unquoted(&mut self, c: char) {
        self.text.push(c);
        self.skeleton.push(c);
        self.has_unquoted = true;
    }

    fn push_expansion(&mut self, raw: &str) {
        self.text.push_str(raw);
        self.skeleton.push('_');
        self.dynamic = true;
    }

    /// `NAME=` or `NAME+=` with nothing else yet: the start of an (array) assignment.
    fn is_assignment_start(&self) -> bool {
        self.quote_parts == 0
            && !self.dynamic
            && self
                .text
                .strip_suffix("+=")
                .or_else(|| self.text.strip_suffix('='))
                .is_some_and(is_name)
    }
}

#[derive(Debug, Clone)]
struct Redirect {
    op: &'static str,
    target: Option<Word>,
}

#[derive(Debug, Clone, Default)]
struct Segment {
    start: usize,
    end: usize,
    /// Standard input comes from a pipe.
    piped: bool,
    /// Opened by `((`: an arithmetic command.
    arith: bool,
    words: Vec<Word>,
    redirects: Vec<Redirect>,
}

impl Segment {
    fn is_empty(&self) -> bool {
        self.words.is_empty() && self.redirects.is_empty()
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Characters that end an unquoted word.
fn is_meta(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\n' | b'|' | b'&' | b';' | b'(' | b')' | b'<' | b'>'
    )
}

struct Lexer<'a, 'h> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    hits: &'h mut Hits,
    /// How deep this lexer sits inside `$(…)`, `<(…)` or `arr=(…)` bodies.
    depth: usize,
}

/// Bodies of `$(…)` and friends nested deeper than this are not lexed again (the outer
/// construct is already refused or counted); keeps recursion, and the stack, bounded.
const MAX_LEX_DEPTH: usize = 8;

fn lex(s: &str, hits: &mut Hits) -> Vec<Segment> {
    lex_at(s, hits, 0)
}

fn lex_at(s: &str, hits: &mut Hits, depth: usize) -> Vec<Segment> {
    let mut lx = Lexer {
        s,
        b: s.as_bytes(),
        i: 0,
        hits,
        depth,
    };
    lx.run()
}

impl Lexer<'_, '_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.i + ahead).copied()
    }

    fn rest(&self) -> &[u8] {
        self.b.get(self.i..).unwrap_or(&[])
    }

    fn char_at(&self, i: usize) -> Option<char> {
        self.s.get(i..).and_then(|r| r.chars().next())
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(0), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn operator(&self) -> Option<(Op, usize)> {
        let r = self.rest();
        let op = match r {
            [b'&', b'&', ..] => (Op::And, 2),
            [b'&', b'>', ..] => return None,
            [b'&', ..] => (Op::Background, 1),
            [b'|', b'|', ..] => (Op::Or, 2),
            [b'|', b'&', ..] => (Op::PipeErr, 2),
            [b'|', ..] => (Op::Pipe, 1),
            [b';', b';', b'&', ..] => (Op::CaseEnd, 3),
            [b';', b';', ..] | [b';', b'&', ..] => (Op::CaseEnd, 2),
            [b';', ..] => (Op::Semi, 1),
            [b'(', ..] => (Op::OpenParen, 1),
            [b')', ..] => (Op::CloseParen, 1),
            [b'\n', ..] => (Op::Newline, 1),
            _ => return None,
        };
        Some(op)
    }

    fn run(&mut self) -> Vec<Segment> {
        let mut segs = Vec::new();
        let mut cur = Segment::default();
        let mut depth = 0usize;
        let mut last_op: Option<Op> = None;
        let mut last_op_at = usize::MAX - 1;

        loop {
            self.skip_blanks();
            let Some(c) = self.peek(0) else { break };

            if c == b'#' {
                self.comment();
                continue;
            }

            if let Some((op, len)) = self.operator() {
                let op_at = self.i;
                self.i += len;
                let empty = cur.is_empty();
                match op {
                    Op::OpenParen => {
                        if !empty && cur.words.len() == 1 && self.function_parens() {
                            // `name() { …; }`: a function definition. The body starts a new
                            // simple command, so its first word is checked as a program.
                            cur.end = op_at;
                            segs.push(std::mem::take(&mut cur));
                            cur = Segment {
                                start: self.i,
                                ..Segment::default()
                            };
                            last_op = Some(Op::Semi);
                            continue;
                        }
                        // After reserved words only (`do (cd x; make)`), `(` opens a subshell.
                        let only_keywords = cur.redirects.is_empty()
                            && cur
                                .words
                                .iter()
                                .all(|w| w.quote_parts == 0 && KEYWORDS.contains(&w.text.as_str()));
                        if !empty && !only_keywords {
                            self.hits.push(
                                Blocker::Desync,
                                "unexpected_parenthesis",
                                "unquoted '(' after a word is a syntax error in bash; quote it",
                            );
                        }
                        depth += 1;
                    }
                    Op::CloseParen => {
                        if depth == 0 {
                            self.hits.push(
                                Blocker::Desync,
                                "unbalanced_parenthesis",
                                "unmatched ')' outside quotes",
                            );
                        } else {
                            depth -= 1;
                        }
                        if empty && last_op == Some(Op::OpenParen) {
                            self.hits.push(
                                Blocker::Desync,
                                "empty_command",
                                "empty subshell '()'",
                            );
                        }
                    }
                    Op::Newline => {}
                    Op::CaseEnd => self.hits.push(
                        Blocker::Desync,
                        "case_terminator",
                        "';;', ';&' and ';;&' outside a case statement are a syntax error; case statements are not supported",
                    ),
                    _ => {
                        if empty && last_op != Some(Op::CloseParen) {
                            self.hits.push(
                                Blocker::Desync,
                                "empty_command",
                                "an operator with no command before it (leading or doubled ';', '|', '&', '&&', '||') is a syntax error in bash",
                            );
                        }
                    }
                }
                // A subshell opened right after a pipe still reads that pipe.
                let piped = match op {
                    Op::Pipe | Op::PipeErr => true,
                    Op::OpenParen => cur.piped && empty,
                    _ => false,
                };
                if !empty {
                    cur.end = op_at;
                    segs.push(std::mem::take(&mut cur));
                }
                // `((` with nothing between: an arithmetic command, not two subshells.
                let arith = op == Op::OpenParen
                    && last_op == Some(Op::OpenParen)
                    && last_op_at + 1 == op_at;
                cur = Segment {
                    start: self.i,
                    piped,
                    arith,
                    ..Segment::default()
                };
                last_op = Some(op);
                last_op_at = op_at;
                continue;
            }

            if let Some(fd_len) = self.fd_redirect_prefix() {
                self.i += fd_len;
                let r = self.redirect();
                cur.redirects.push(r);
                continue;
            }
            let is_redirect = match self.rest() {
                [b'<' | b'>', b'(', ..] => false,
                [b'<' | b'>', ..] | [b'&', b'>', ..] => true,
                _ => false,
            };
            if is_redirect {
                let r = self.redirect();
                cur.redirects.push(r);
                continue;
            }

            let w = self.word();
            cur.words.push(w);
        }

        if depth > 0 {
            self.hits.push(
                Blocker::Desync,
                "unbalanced_parenthesis",
                "unclosed '(' outside quotes",
            );
        }
        if cur.is_empty() {
            if matches!(last_op, Some(Op::And | Op::Or | Op::Pipe | Op::PipeErr)) {
                self.hits.push(
                    Blocker::Desync,
                    "dangling_operator",
                    "command ends with '&&', '||' or '|' and nothing after it",
                );
            }
        } else {
            cur.end = self.b.len();
            segs.push(cur);
        }
        segs
    }

    /// After `name(`: if only blanks and `)` follow, consume them and report a function
    /// definition.
    fn function_parens(&mut self) -> bool {
        let mut j = self.i;
        while matches!(self.b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        if self.b.get(j) == Some(&b')') {
            self.i = j + 1;
            true
        } else {
            false
        }
    }

    /// A `#` at the start of a word starts a comment that runs to the end of the line.
    fn comment(&mut self) {
        let start = self.i + 1;
        let end = self
            .b
            .iter()
            .skip(start)
            .position(|&b| b == b'\n')
            .map_or(self.b.len(), |p| start + p);
        let body = self.b.get(start..end).unwrap_or(&[]);
        if body.iter().any(|&b| b == b'\'' || b == b'"') {
            self.hits.push(
                Blocker::Desync,
                "comment_quote_desync",
                "Comment-quote desync detected: unquoted # followed by quote characters could enable injection",
            );
        }
        self.i = end;
    }

    /// Length of a `2>`-style file descriptor prefix at the cursor, if any.
    fn fd_redirect_prefix(&self) -> Option<usize> {
        let r = self.rest();
        let digits = r.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        match (r.get(digits), r.get(digits + 1)) {
            (Some(b'<' | b'>'), Some(b'(')) => None,
            (Some(b'<' | b'>'), _) => Some(digits),
            _ => None,
        }
    }

    fn redirect(&mut self) -> Redirect {
        const OPS: [&str; 12] = [
            "&>>", "&>", ">>", ">|", ">&", "<<<", "<<-", "<<", "<>", "<&", ">", "<",
        ];
        let op = OPS
            .iter()
            .copied()
            .find(|op| self.rest().starts_with(op.as_bytes()))
            .unwrap_or("<");
        self.i += op.len();
        self.skip_blanks();
        let starts_word = match self.rest() {
            [] => false,
            [b'<' | b'>', b'(', ..] => true,
            [b, ..] => !is_meta(*b),
        };
        if !starts_word {
            self.hits.push(
                Blocker::Desync,
                "missing_redirect_target",
                format!("redirection '{op}' without a target"),
            );
            return Redirect { op, target: None };
        }
        Redirect {
            op,
            target: Some(self.word()),
        }
    }

    fn word(&mut self) -> Word {
        let mut w = Word::default();
        let word_start = self.i;
        while let Some(c) = self.peek(0) {
            match c {
                b'<' | b'>' if self.peek(1) == Some(b'(') => {
                    self.hits.push(
                        Blocker::Substitution,
                        "process_substitution",
                        "Process substitution <(...) or >(...) detected",
                    );
                    self.opaque_parens(&mut w, self.i + 1);
                }
                b'(' if w.is_assignment_start() => {
                    // `arr=(a b c)`: the elements are words; lex them for substitutions.
                    let s = self.s;
                    let start = self.i;
                    let (end, closed) = match self.balanced(start, b'(', b')') {
                        Some(e) => (e, true),
                        None => (self.b.len(), false),
                    };
                    let inner_end = if closed { end - 1 } else { end };
                    if let Some(inner) = s.get(start + 1..inner_end) {
                        self.sub_lex(inner);
                    }
                    if !closed {
                        self.hits.push(
                            Blocker::Desync,
                            "unbalanced_parenthesis",
                            "unclosed '(' in an array assignment",
                        );
                    }
                    w.text.push_str(s.get(start..end).unwrap_or(""));
                    w.skeleton.push('_');
                    self.i = end;
                }
                b'(' if w.text.ends_with('=') && w.quote_parts == 0 => {
                    self.hits.push(
                        Blocker::Substitution,
                        "zsh_process_substitution",
                        "Zsh process substitution =(...) detected",
                    );
                    self.opaque_parens(&mut w, self.i);
                }
                _ if is_meta(c) => break,
                b'\\' => match self.char_at(self.i + 1) {
                    Some(e) => {
                        if self.i > word_start && e.is_ascii_alphanumeric() {
                            w.escaped_plain = true;
                        }
                        if e != '\n' {
                            w.text.push(e);
                            w.skeleton.push('_');
                        }
                        self.i += 1 + e.len_utf8();
                    }
                    None => {
                        w.push_unquoted('\\');
                        self.i += 1;
                    }
                },
                b'\'' => self.single_quoted(&mut w),
                b'"' => {
                    self.i += 1;
                    self.double_quoted(&mut w);
                }
                b'`' => self.backtick(&mut w),
                b'$' => self.dollar(&mut w, false),
                b'=' => {
                    if self.i == word_start
                        && self
                            .peek(1)
                            .is_some_and(|n| n.is_ascii_alphabetic() || n == b'_')
                    {
                        self.hits.push(
                            Blocker::Substitution,
                            "zsh_equals_expansion",
                            "Zsh equals expansion (=cmd) detected",
                        );
                    }
                    w.push_unquoted('=');
                    self.i += 1;
                }
                b'*' | b'?' | b'[' => {
                    w.glob = true;
                    w.push_unquoted(c as char);
                    self.i += 1;
                }
                _ => {
                    let ch = self.char_at(self.i).unwrap_or('\u{fffd}');
                    w.push_unquoted(ch);
                    self.i += ch.len_utf8().max(1);
                }
            }
        }
        w
    }

    fn single_quoted(&mut self, w: &mut Word) {
        let start = self.i + 1;
        w.quote_parts += 1;
        w.skeleton.push('_');
        match self.b.iter().skip(start).position(|&b| b == b'\'') {
            Some(len) => {
                let body = self.s.get(start..start + len).unwrap_or("");
                w.empty_quote |= body.is_empty();
                w.text.push_str(body);
                self.i = start + len + 1;
            }
            None => {
                self.unterminated("single quote");
                w.text.push_str(self.s.get(start..).unwrap_or(""));
                self.i = self.b.len();
            }
        }
    }

    /// Cursor just after the opening `"`.
    fn double_quoted(&mut self, w: &mut Word) {
        w.quote_parts += 1;
        w.skeleton.push('_');
        let before = w.text.len();
        loop {
            let Some(c) = self.peek(0) else {
                self.unterminated("double quote");
                break;
            };
            match c {
                b'"' => {
                    self.i += 1;
                    break;
                }
                b'\\' => match self.peek(1) {
                    Some(e @ (b'$' | b'`' | b'"' | b'\\')) => {
                        w.text.push(e as char);
                        self.i += 2;
                    }
                    Some(b'\n') => self.i += 2,
                    _ => {
                        w.text.push('\\');
                        self.i += 1;
                    }
                },
                b'`' => self.backtick(w),
                b'$' => self.dollar(w, true),
                _ => {
                    let ch = self.char_at(self.i).unwrap_or('\u{fffd}');
                    w.text.push(ch);
                    self.i += ch.len_utf8().max(1);
                }
            }
        }
        w.empty_quote |= w.text.len() == before;
    }

    fn backtick(&mut self, w: &mut Word) {
        self.hits.push(
            Blocker::Substitution,
            "backtick_substitution",
            "Backtick substitution detected",
        );
        let start = self.i;
        let mut j = self.i + 1;
        loop {
            match self.b.get(j) {
                None => {
                    self.unterminated("backtick");
                    break;
                }
                Some(b'\\') => j += 2,
                Some(b'`') => {
                    j += 1;
                    break;
                }
                Some(_) => j += 1,
            }
        }
        let end = j.min(self.b.len());
        w.push_expansion(self.s.get(start..end).unwrap_or(""));
        self.i = end;
    }

    fn dollar(&mut self, w: &mut Word, in_double: bool) {
        match self.peek(1) {
            Some(b'(') => {
                let (name, what) = if self.peek(2) == Some(b'(') {
                    (
                        "arithmetic_expansion",
                        "Arithmetic expansion $((...)) detected (array subscripts in it can run commands)",
                    )
                } else {
                    (
                        "command_substitution",
                        "Shell command substitution $(...) detected",
                    )
                };
                self.hits.push(Blocker::Substitution, name, what);
                self.opaque_parens(w, self.i + 1);
            }
            Some(b'{') => {
                let s = self.s;
                let start = self.i;
                let (end, inner_end) = match self.balanced(start + 1, b'{', b'}') {
                    Some(e) => (e, e - 1),
                    None => {
                        self.unterminated("parameter expansion ${");
                        (self.b.len(), self.b.len())
                    }
                };
                if let Some(inner) = s.get(start + 2..inner_end) {
                    scan_substitutions(inner, self.hits);
                    let name = inner.trim_start_matches(['!', '#']).split('[').next();
                    w.subscript_expansion |= inner.contains('[') && name.is_some_and(is_name);
                }
                w.push_expansion(s.get(start..end).unwrap_or(""));
                self.i = end;
            }
            Some(b'\'') if !in_double => self.ansi_c(w),
            Some(b'"') if !in_double => {
                self.i += 2;
                self.double_quoted(w);
            }
            Some(n) if n.is_ascii_alphabetic() || n == b'_' => {
                let start = self.i;
                let mut j = self.i + 1;
                while self
                    .b
                    .get(j)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    j += 1;
                }
                w.push_expansion(self.s.get(start..j).unwrap_or(""));
                self.i = j;
            }
            Some(n) if n.is_ascii_digit() || b"@*#?$!-".contains(&n) => {
                w.push_expansion(self.s.get(self.i..self.i + 2).unwrap_or(""));
                self.i += 2;
            }
            _ => {
                if in_double {
                    w.text.push('$');
                } else {
                    w.push_unquoted('$');
                }
                self.i += 1;
            }
        }
    }

    /// `$'…'`: backslash escapes apply, so `\'` does not close the string (a plain
    /// single-quote tracker gets this wrong and can be walked out of sync).
    fn ansi_c(&mut self, w: &mut Word) {
        w.quote_parts += 1;
        w.skeleton.push('_');
        self.i += 2;
        let before = w.text.len();
        loop {
            let Some(c) = self.peek(0) else {
                self.unterminated("ANSI-C quote $'");
                break;
            };
            match c {
                b'\'' => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    let Some(e) = self.char_at(self.i + 1) else {
                        w.text.push('\\');
                        self.i += 1;
                        continue;
                    };
                    let decoded = match e {
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        'a' => Some('\u{7}'),
                        'b' => Some('\u{8}'),
                        'e' | 'E' => Some('\u{1b}'),
                        'f' => Some('\u{c}'),
                        'v' => Some('\u{b}'),
                        '\\' | '\'' | '"' | '?' => Some(e),
                        _ => None,
                    };
                    match decoded {
                        Some(d) => w.text.push(d),
                        None => {
                            // `\0` alone is NUL (the `read -d $'\0'` idiom) and encodes nothing.
                            let nul_only = e == '0' && !matches!(self.peek(2), Some(b'0'..=b'7'));
                            if !nul_only && matches!(e, 'x' | 'u' | 'U' | 'c' | '0'..='7') {
                                self.hits.push(
                                    Blocker::Denylist,
                                    "ansi_c_encoded_escape",
                                    "ANSI-C quoting ($'...') with escape sequences can encode arbitrary commands, bypassing command validation",
                                );
                            }
                            w.text.push('\\');
                            w.text.push(e);
                        }
                    }
                    self.i += 1 + e.len_utf8();
                }
                _ => {
                    let ch = self.char_at(self.i).unwrap_or('\u{fffd}');
                    w.text.push(ch);
                    self.i += ch.len_utf8().max(1);
                }
            }
        }
        w.empty_quote |= w.text.len() == before;
    }

    /// Consumes `(…)` starting at `open` (which holds `(`), from the cursor, into `w` as an
    /// expansion. The content is lexed too, so its findings are reported.
    fn opaque_parens(&mut self, w: &mut Word, open: usize) {
        let s = self.s;
        let start = self.i;
        let (end, inner_end) = match self.balanced(open, b'(', b')') {
            Some(e) => (e, e - 1),
            None => {
                self.unterminated("parenthesis");
                (self.b.len(), self.b.len())
            }
        };
        if let Some(inner) = s.get(open + 1..inner_end) {
            self.sub_lex(inner);
        }
        w.push_expansion(s.get(start..end).unwrap_or(""));
        self.i = end;
    }

    /// Lexes the body of a nested construct for its findings, up to [`MAX_LEX_DEPTH`].
    fn sub_lex(&mut self, inner: &str) {
        if self.depth < MAX_LEX_DEPTH {
            lex_at(inner, self.hits, self.depth + 1);
        }
    }

    /// Index just past the bracket matching the one at `open`, skipping quoted text; `None`
    /// if it never closes.
    fn balanced(&self, open: usize, up: u8, down: u8) -> Option<usize> {
        let mut depth = 0usize;
        let mut j = open;
        while let Some(&b) = self.b.get(j) {
            match b {
                b'\\' => j += 1,
                b'\'' => match self.b.iter().skip(j + 1).position(|&x| x == b'\'') {
                    Some(p) => j += p + 1,
                    None => return None,
                },
                b'"' => {
                    j += 1;
                    while let Some(&x) = self.b.get(j) {
                        if x == b'\\' {
                            j += 1;
                        } else if x == b'"' {
                            break;
                        }
                        j += 1;
                    }
                }
                _ if b == up => depth += 1,
                _ if b == down => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(j + 1);
                    }
                }
                _ => {}
            }
            j += 1;
        }
        None
    }

    fn unterminated(&mut self, what: &str) {
        self.hits.push(
            Blocker::Desync,
            "unterminated_quote",
            format!("unterminated {what}: bash would refuse this command"),
        );
    }
}

/// The original tracker's substitution scan, for text the lexer keeps opaque (`${…}` bodies):
/// `$(`, backticks and process substitution outside single quotes.
fn scan_substitutions(text: &str, hits: &mut Hits) {
    #[derive(PartialEq)]
    enum St {
        Normal,
        Single,
        Double,
    }
    let b = text.as_bytes();
    let mut st = St::Normal;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match st {
            St::Single => {
                if c == b'\'' {
                    st = St::Normal;
                }
            }
            St::Normal | St::Double => match c {
                b'\\' => i += 1,
                b'\'' if st == St::Normal => st = St::Single,
                b'"' => {
                    st = if st == St::Normal {
                        St::Double
                    } else {
                        St::Normal
                    }
                }
                b'`' => hits.push(
                    Blocker::Substitution,
                    "backtick_substitution",
                    "Backtick substitution detected",
                ),
                b'$' if b.get(i + 1) == Some(&b'(') => hits.push(
                    Blocker::Substitution,
                    "command_substitution",
                    "Shell command substitution $(...) detected",
                ),
                b'<' | b'>' if st == St::Normal && b.get(i + 1) == Some(&b'(') => hits.push(
                    Blocker::Substitution,
                    "process_substitution",
                    "Process substitution <(...) or >(...) detected",
                ),
                _ => {}
            },
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// Gate: brace expansion
// ---------------------------------------------------------------------------------------------

/// The body of the first unquoted `{…}` in a word skeleton that contains `,` or `..`.
fn brace_expansion(skeleton: &str) -> Option<String> {
    if !skeleton.contains('{') {
        return None;
    }
    let mut opens: Vec<usize> = Vec::new();
    for (i, c) in skeleton.char_indices() {
        match c {
            '{' => opens.push(i),
            '}' => {
                if let Some(o) = opens.pop() {
                    let inner = skeleton.get(o + 1..i).unwrap_or("");
                    if inner.contains(',') || inner.contains("..") {
                        return Some(truncate(inner, 40));
                    }
                }
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Command resolution: which program a simple command runs
// ---------------------------------------------------------------------------------------------

/// Reserved words that may precede the command in a simple command's word list.
const KEYWORDS: &[&str] = &[
    "{", "}", "!", "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "esac",
];

/// Programs that run their remaining arguments as a command.
struct Wrapper {
    name: &'static str,
    /// Options that take a separate argument.
    opts_with_arg: &'static [&'static str],
    /// Leading `VAR=value` words are accepted (env, sudo).
    assignments: bool,
    /// Positional arguments before the command (timeout's DURATION, chroot's NEWROOT).
    positional: usize,
}

const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        name: "sudo",
        opts_with_arg: &[
            "-u",
            "-g",
            "-C",
            "-D",
            "-h",
            "-p",
            "-r",
            "-t",
            "-U",
            "-T",
            "-R",
            "--user",
            "--group",
            "--chdir",
            "--prompt",
            "--role",
            "--type",
            "--other-user",
            "--close-from",
            "--host",
            "--command-timeout",
        ],
        assignments: true,
        positional: 0,
    },
    Wrapper {
        name: "doas",
        opts_with_arg: &["-u", "-C"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "env",
        opts_with_arg: &["-u", "-C", "-S", "--unset", "--chdir", "--split-string"],
        assignments: true,
        positional: 0,
    },
    Wrapper {
        name: "nice",
        opts_with_arg: &["-n", "--adjustment"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "ionice",
        opts_with_arg: &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "timeout",
        opts_with_arg: &["-s", "-k", "--signal", "--kill-after"],
        assignments: false,
        positional: 1,
    },
    Wrapper {
        name: "stdbuf",
        opts_with_arg: &["-i", "-o", "-e", "--input", "--output", "--error"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "time",
        opts_with_arg: &["-f", "-o", "--format", "--output"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "xargs",
        opts_with_arg: &[
            "-a",
            "-d",
            "-E",
            "-I",
            "-L",
            "-n",
            "-P",
            "-s",
            "--arg-file",
            "--delimiter",
            "--eof",
            "--replace",
            "--max-lines",
            "--max-args",
            "--max-procs",
            "--max-chars",
            "--process-slot-var",
        ],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "exec",
        opts_with_arg: &["-a"],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "chroot",
        opts_with_arg: &["--userspec", "--groups"],
        assignments: false,
        positional: 1,
    },
    Wrapper {
        name: "nohup",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "setsid",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "command",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "builtin",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "noglob",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "nocorrect",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "busybox",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
    Wrapper {
        name: "unbuffer",
        opts_with_arg: &[],
        assignments: false,
        positional: 0,
    },
];

/// Shells whose `-c` argument is itself a command line.
const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh",
];

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

#[derive(Debug)]
struct CommandView {
    /// Index of the program word in the segment.
    idx: usize,
    /// The program's basename.
    name: String,
    /// Program basename and dequoted arguments joined by single spaces.
    canonical: String,
    /// Command strings found while skipping wrappers (`env -S '…'`).
    wrapper_nested: Vec<(String, &'static str)>,
}

impl CommandView {
    fn resolve(seg: &Segment) -> Option<CommandView> {
        let words = &seg.words;
        let mut i = 0;
        let mut wrapper_nested = Vec::new();
        let mut last_wrapper: Option<usize> = None;
        loop {
            let Some(w) = words.get(i) else {
                // `env -S '…'` alone: the wrapper is the program, its string still matters.
                let idx = last_wrapper?;
                i = idx;
                break;
            };
            let t = w.text.as_str();
            // `NAME=value` prefixes, judged on the unquoted structure: `X="a b" cmd` is an
            // assignment, `$X=1 cmd` is not.
            if is_assignment(&w.skeleton) {
                i += 1;
                continue;
            }
            // Reserved words only count unquoted.
            if w.quote_parts == 0 && !w.escaped_plain && KEYWORDS.contains(&t) {
                i += 1;
                continue;
            }
            if w.dynamic {
                break;
            }
            let base = basename(t);
            // `command -v x` looks x up rather than running it.
            if base == "command"
                && words
                    .get(i + 1)
                    .is_some_and(|n| n.text == "-v" || n.text == "-V")
            {
                break;
            }
            let Some(spec) = WRAPPERS.iter().find(|s| s.name == base) else {
                break;
            };
            last_wrapper = Some(i);
            i += 1;
            // Options.
            while let Some(o) = words.get(i) {
                let ot = o.text.as_str();
                if ot == "--" {
                    i += 1;
                    break;
                }
                if !ot.starts_with('-') || ot == "-" {
                    break;
                }
                let key = ot.split('=').next().unwrap_or(ot);
                let takes_arg = spec.opts_with_arg.contains(&ot);
                if spec.name == "env" && (key == "-S" || key == "--split-string") {
                    let value = if takes_arg {
                        words.get(i + 1).map(|n| n.text.clone())
                    } else if let Some(v) = ot.strip_prefix("-S") {
                        Some(v.to_string())
                    } else {
                        ot.split_once('=').map(|(_, v)| v.to_string())
                    };
                    if let Some(v) = value {
                        wrapper_nested.push((v, "env -S"));
                    }
                }
                i += if takes_arg { 2 } else { 1 };
            }
            if spec.assignments {
                while words.get(i).is_some_and(|w| is_assignment(&w.skeleton)) {
                    i += 1;
                }
            }
            i += spec.positional;
        }
        let w = words.get(i)?;
        let name = basename(&w.text).to_string();
        let mut canonical = name.clone();
        for a in words.iter().skip(i + 1) {
            canonical.push(' ');
            canonical.push_str(&a.text);
        }
        Some(CommandView {
            idx: i,
            name,
            canonical,
            wrapper_nested,
        })
    }

    /// Command strings this command hands to another shell: `bash -c STR`, `su -c STR`,
    /// `watch ARGS…`, a shell's `<<< STR` here-string, `env -S STR`.
    fn nested_commands(&self, seg: &Segment) -> Vec<(String, &'static str)> {
        let mut out = self.wrapper_nested.clone();
        let args = seg.words.get(self.idx + 1..).unwrap_or(&[]);
        let name = self.name.as_str();
        if SHELLS.contains(&name) {
            let mut c_flag = false;
            let mut j = 0;
            while let Some(a) = args.get(j) {
                let t = a.text.as_str();
                if t == "--" || t == "-" {
                    j += 1;
                    break;
                }
                if let Some(v) = t.strip_prefix("--command=") {
                    out.push((v.to_string(), "shell --command"));
                    return out;
                }
                if t == "--command" {
                    c_flag = true;
                } else if matches!(t, "-o" | "+o" | "-O" | "+O" | "--init-file" | "--rcfile") {
                    j += 1;
                } else if (t.starts_with('-') || t.starts_with('+')) && !t.starts_with("--") {
                    c_flag |= t.get(1..).is_some_and(|f| f.contains('c'));
                } else if !t.starts_with("--") {
                    break;
                }
                j += 1;
            }
            if c_flag {
                if let Some(a) = args.get(j) {
                    out.push((a.text.clone(), "sh -c"));
                }
            } else {
                for r in &seg.redirects {
                    if r.op == "<<<" {
                        if let Some(t) = &r.target {
                            out.push((t.text.clone(), "shell <<<"));
                        }
                    }
                }
            }
        } else if name == "su" || name == "runuser" {
            let mut it = args.iter();
            while let Some(a) = it.next() {
                if a.text == "-c" || a.text == "--command" {
                    if let Some(v) = it.next() {
                        out.push((v.text.clone(), "su -c"));
                    }
                } else if let Some(v) = a.text.strip_prefix("--command=") {
                    out.push((v.to_string(), "su -c"));
                }
            }
        } else if name == "watch" {
            let mut j = 0;
            while let Some(a) = args.get(j) {
                if a.text == "-n" || a.text == "--interval" || a.text == "-q" {
                    j += 2;
                } else if a.text.starts_with('-') {
                    j += 1;
                } else {
                    break;
                }
            }
            let rest: Vec<&str> = args
                .get(j..)
                .unwrap_or(&[])
                .iter()
                .map(|a| a.text.as_str())
                .collect();
            if !rest.is_empty() {
                out.push((rest.join(" "), "watch"));
            }
        }
        out
    }
}

fn is_assignment(t: &str) -> bool {
    match t.split_once('=') {
        Some((name, _)) => {
            let name = name.strip_suffix('+').unwrap_or(name);
            let name = match name.split_once('[') {
                Some((n, idx)) if idx.ends_with(']') => n,
                _ => name,
            };
            is_name(name)
        }
        None => false,
    }
}

/// What earlier commands of the same line tell the later ones: literal variable values
/// (`d=/etc; rm $d/hosts`) and the working directory (`cd /etc && rm hosts`). Only values a
/// shell cannot split or glob are remembered; anything else makes the variable unknown again.
#[derive(Debug, Default)]
struct LineState {
    /// A map, not a list: a line of 20,000 assignments must not make lookups quadratic.
    vars: HashMap<String, String>,
    /// An absolute path, or `~` / `~/…` for the home directory.
    cwd: Option<String>,
}

impl LineState {
    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    fn set(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(v) => {
                self.vars.insert(name.to_string(), v.to_string());
            }
            None => {
                self.vars.remove(name);
            }
        }
    }

    /// The segment with known `$NAME` / `${NAME}` replaced, if anything changed.
    fn substitute(&self, seg: &Segment) -> Option<Segment> {
        if self.vars.is_empty() {
            return None;
        }
        let mut out = seg.clone();
        let mut changed = false;
        let targets = out.redirects.iter_mut().filter_map(|r| r.target.as_mut());
        for w in out.words.iter_mut().chain(targets) {
            if !w.dynamic {
                continue;
            }
            if let Some(t) = self.expand(&w.text) {
                w.dynamic = t.contains(['$', '`']);
                w.text = t;
                changed = true;
            }
        }
        changed.then_some(out)
    }

    fn expand(&self, text: &str) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut changed = false;
        let mut rest = text;
        while let Some(p) = rest.find('$') {
            out.push_str(rest.get(..p).unwrap_or(""));
            let after = rest.get(p + 1..).unwrap_or("");
            let (name, consumed) = match after.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(close) => (inner.get(..close).unwrap_or(""), close + 2),
                    None => ("", 0),
                },
                None => {
                    let n = after
                        .bytes()
                        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                        .count();
                    (after.get(..n).unwrap_or(""), n)
                }
            };
            match self.get(name).filter(|_| is_name(name)) {
                Some(v) => {
                    out.push_str(v);
                    rest = after.get(consumed..).unwrap_or("");
                    changed = true;
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    fn record(&mut self, seg: &Segment, view: Option<&CommandView>) {
        let name = view.map_or("", |v| v.name.as_str());
        let idx = view.map_or(seg.words.len(), |v| v.idx);
        let declares = matches!(
            name,
            "export" | "declare" | "typeset" | "local" | "readonly"
        );
        // Prefix assignments (`X=1 cmd`) last only for that command.
        let persistent: Box<dyn Iterator<Item = &Word>> = if view.is_none() {
            Box::new(seg.words.iter())
        } else if declares {
            Box::new(seg.words.iter().skip(idx + 1))
        } else {
            Box::new(std::iter::empty())
        };
        for w in persistent {
            if !is_assignment(&w.skeleton) {
                continue;
            }
            let Some((lhs, value)) = w.text.split_once('=') else {
                continue;
            };
            let plain = is_name(lhs);
            let var = lhs.split(['[', '+']).next().unwrap_or(lhs);
            let safe = plain
                && !w.dynamic
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./~:@%+=,-".contains(c));
            self.set(var, safe.then_some(value));
        }
        let args = seg.words.get(idx + 1..).unwrap_or(&[]);
        match name {
            "read" | "mapfile" | "readarray" | "for" | "select" | "getopts" | "unset" => {
                for a in args.iter().filter(|a| is_name(&a.text)) {
                    self.set(&a.text, None);
                }
            }
            "cd" | "pushd" => {
                let target = args
                    .iter()
                    .find(|a| !a.text.starts_with('-') || a.text == "-");
                self.cwd = match target {
                    None => Some("~".to_string()),
                    Some(t) if t.dynamic || t.text == "-" => None,
                    Some(t) => self.resolve_path(&t.text),
                };
            }
            _ => {}
        }
    }

    /// Absolute or home-relative spelling of a path, using the known working directory.
    fn resolve_path(&self, path: &str) -> Option<String> {
        if path.starts_with('/') {
            return Some(normalize_abs(path));
        }
        if path == "~" || path.starts_with("~/") {
            return Some(format!("~/{}", normalize_rel(path.get(1..).unwrap_or(""))));
        }
        let cwd = self.cwd.as_deref()?;
        if cwd.starts_with('/') {
            Some(normalize_abs(&format!("{cwd}/{path}")))
        } else {
            let base = cwd.get(1..).unwrap_or("");
            Some(format!("~/{}", normalize_rel(&format!("{base}/{path}"))))
        }
    }

    /// The word, re-spelled against the known working directory when it is relative.
    fn locate(&self, w: &Word) -> Word {
        let t = w.text.as_str();
        let relative = !t.is_empty() && !t.starts_with(['/', '~', '$']);
        match self
            .cwd
            .as_ref()
            .filter(|_| relative)
            .and_then(|_| self.resolve_path(t))
        {
            Some(p) => Word {
                text: p,
                ..w.clone()
            },
            None => w.clone(),
        }
    }
}

/// The env gate's named variables set by the command line itself (`LD_PRELOAD=x ls`,
/// `export BASH_ENV=…`, `env NODE_OPTIONS=… node`), which would otherwise walk around the
/// allowlist on the exec tool's `env` parameter. Only real shell assignments count: prefixes
/// of the command (and of `env`/`sudo`), bare assignments, and `export`/`declare` arguments;
/// `vercel -e ENV=x` is an argument, not an assignment. Variables whose value is itself a
/// command line (`EDITOR`, `GIT_SSH_COMMAND`, ...) are not refused outright: their value is
/// returned to be validated as a nested command. `IFS` has its own gate.
fn check_inline_env(
    seg: &Segment,
    view: Option<&CommandView>,
    hits: &mut Hits,
) -> Vec<(String, &'static str)> {
    let idx = view.map_or(seg.words.len(), |v| v.idx);
    let declares = view.is_some_and(|v| {
        matches!(
            v.name.as_str(),
            "export" | "declare" | "typeset" | "local" | "readonly"
        )
    });
    let mut nested = Vec::new();
    for (i, w) in seg.words.iter().enumerate() {
        let assignment = is_assignment(&w.skeleton);
        let counts = if i < idx {
            assignment
        } else {
            // `export LD_PRELOAD` exports a value set earlier on the line.
            declares && i > idx && (assignment || is_name(&w.text))
        };
        if !counts {
            continue;
        }
        let name = w.skeleton.split(['=', '+', '[']).next().unwrap_or("");
        if name == "IFS" {
            continue;
        }
        let Some((finding, why)) = env_risk(name) else {
            continue;
        };
        let value = w.text.split_once('=').map(|(_, v)| v);
        match value {
            Some(v) if finding == "env_helper_command" => {
                nested.push((v.to_string(), "helper variable"))
            }
            _ => hits.push(
                Blocker::Env,
                finding,
                format!("Environment variable '{name}' set in the command is blocked: it {why}"),
            ),
        }
    }
    nested
}

/// Whether the segment is an arithmetic command (`(( … ))`), expands `${a[…]}` or assigns
/// `a[…]=…`: all evaluate a subscript arithmetically.
fn evaluates_subscripts(seg: &Segment) -> bool {
    seg.arith
        || seg.words.iter().any(|w| {
            w.subscript_expansion
                || (is_assignment(&w.skeleton)
                    && w.skeleton
                        .split('=')
                        .next()
                        .is_some_and(|n| n.contains('[')))
        })
}

/// Whether this command evaluates its arguments arithmetically, where bash expands array
/// subscripts (and the substitutions in them) even from quoted strings: `[[ x -eq y ]]`,
/// `let`, and `declare`-style builtins with `-i`, `-a` or `-A`.
fn evaluates_arithmetic(seg: &Segment, view: &CommandView) -> bool {
    let args = || {
        seg.words
            .iter()
            .skip(view.idx + 1)
            .filter(|w| w.quote_parts == 0)
    };
    match view.name.as_str() {
        "[[" => args().any(|w| {
            matches!(
                w.text.as_str(),
                "-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge"
            )
        }),
        "let" => true,
        "declare" | "typeset" | "local" | "readonly" | "export" => {
            args().any(|w| w.text.starts_with('-') && w.text.contains(['i', 'a', 'A']))
        }
        _ => false,
    }
}

/// `IFS=` changes how every later expansion splits into words, which lets a command hide
/// its real arguments. The one common, harmless use is a prefix on `read` (`while IFS= read
/// -r line`), where it only affects how `read` splits its input: that is allowed.
fn check_ifs_assignments(seg: &Segment, view: Option<&CommandView>, hits: &mut Hits) {
    let reader = view.is_some_and(|v| matches!(v.name.as_str(), "read" | "mapfile" | "readarray"));
    for (i, w) in seg.words.iter().enumerate() {
        let sets_ifs = w.skeleton.starts_with("IFS=") || w.skeleton.starts_with("IFS+=");
        let prefix_of_reader = reader && view.is_some_and(|v| i < v.idx);
        if sets_ifs && !prefix_of_reader {
            hits.push(
                Blocker::Ifs,
                "ifs_assignment",
                "IFS assignment could bypass security validation (only `IFS=… read` is allowed)",
            );
        }
    }
}

/// The program word itself must be readable: not an expansion, not a glob, not split by
/// quotes or escapes into pieces a text filter cannot reassemble.
fn check_command_word(seg: &Segment, view: &CommandView, hits: &mut Hits) {
    let Some(w) = seg.words.get(view.idx) else {
        return;
    };
    let test_bracket = w.text == "[" || w.text == "[[";
    if w.dynamic || (w.glob && !test_bracket) {
        hits.push(
            Blocker::Desync,
            "dynamic_command_name",
            format!(
                "the program to run (`{}`) comes from an expansion or glob, so no check can see what runs; write the program name literally",
                truncate(&w.text, 60)
            ),
        );
    } else if w.escaped_plain || w.empty_quote || (w.quote_parts > 0 && w.has_unquoted) {
        hits.push(
            Blocker::Desync,
            "obfuscated_command_name",
            format!(
                "the program name is split by quotes or backslashes (runs `{}`); write it plainly",
                truncate(&w.text, 60)
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gates: protected paths (mutation commands) and redirect targets
// ---------------------------------------------------------------------------------------------

/// Exact paths no mutating command may target.
const PROTECTED_PATHS: &[&str] = &[
    "/",
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/lib32",
    "/opt",
    "/proc",
    "/root",
    "/sys",
    "/usr",
    "/var",
    "/home",
    "/tmp",
    "/var/log",
    "/var/tmp",
    "/usr/local",
];

/// Paths under which nothing may be mutated. The original's nine plus the binary and library
/// directories it left out (`/bin/ls` on a non-merged-usr host, `/usr/lib`).
const PROTECTED_PREFIXES: &[&str] = &[
    "/etc/",
    "/boot/",
    "/proc/",
    "/sys/",
    "/usr/bin/",
    "/usr/sbin/",
    "/usr/local/",
    "/var/log/",
    "/var/tmp/",
    "/bin/",
    "/sbin/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/root/",
    "/var/spool/",
];

/// Whole-disk and memory devices (prefix match under `/dev/`).
const DEVICE_PREFIXES: &[&str] = &[
    "/dev/sd",
    "/dev/hd",
    "/dev/vd",
    "/dev/xvd",
    "/dev/nvme",
    "/dev/mmcblk",
    "/dev/md",
    "/dev/dm-",
    "/dev/mapper/",
    "/dev/disk/",
    "/dev/loop",
    "/dev/mem",
    "/dev/kmem",
    "/dev/port",
];

/// Paths relative to a home directory that hold keys, credentials, agent state or code that
/// runs at login.
const HOME_SENSITIVE: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".comis",
    ".config",
    ".aws",
    ".kube",
    ".docker",
    ".netrc",
    ".gitconfig",
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
];

/// Shell start-up files: protected wherever they are, since the working directory may be home.
const STARTUP_FILES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zshenv",
    ".zprofile",
    ".zlogin",
    ".gitconfig",
];

/// Mutating commands: every path operand is checked.
const MUTATE_ALL: &[&str] = &[
    "rm", "rmdir", "unlink", "shred", "truncate", "chmod", "chown", "chgrp", "chattr", "setfacl",
    "touch", "mkdir", "tee", "mv",
];

/// Copying commands: only the destination is mutated.
const MUTATE_DEST: &[&str] = &["cp", "install", "ln", "rsync"];

/// Lexically normalises an absolute path: collapses `//`, `.` and `..` (never above `/`).
fn normalize_abs(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            _ => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn normalize_rel(path: &str) -> String {
    let n = normalize_abs(path);
    n.trim_start_matches('/').to_string()
}

/// The path relative to a home directory, for `~/x`, `~user/x`, `$HOME/x`, `${HOME}/x`,
/// `/root/x` and `/home/<user>/x`.
fn home_relative(text: &str, normalized_abs: Option<&str>) -> Option<String> {
    if let Some(rest) = strip_home_variable(text) {
        return Some(normalize_rel(rest));
    }
    if let Some(rest) = text.strip_prefix('~') {
        let rest = rest.find('/').and_then(|p| rest.get(p..)).unwrap_or("");
        return Some(normalize_rel(rest));
    }
    let n = normalized_abs?;
    if let Some(rest) = n.strip_prefix("/root/") {
        return Some(rest.to_string());
    }
    n.strip_prefix("/home/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, inner)| inner.to_string())
}

/// The rest of a path that starts with `$HOME`, `${HOME}` or `${HOME:…}` (`${HOME:?}`).
fn strip_home_variable(text: &str) -> Option<&str> {
    let rest = if let Some(r) = text.strip_prefix("$HOME") {
        r
    } else {
        let r = text.strip_prefix("${HOME")?;
        let close = r.find('}')?;
        let modifier = r.get(..close)?;
        if !(modifier.is_empty() || modifier.starts_with(':')) {
            return None;
        }
        r.get(close + 1..)?
    };
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The literal text before the first glob character or expansion, with its directory part
/// normalised.
fn glob_literal_prefix(text: &str) -> Option<String> {
    let g = text.find(['*', '?', '[', '$', '`'])?;
    let prefix = text.get(..g).unwrap_or("");
    let dir_end = prefix.rfind('/').map_or(0, |i| i + 1);
    let mut lit = normalize_abs(prefix.get(..dir_end).unwrap_or("/"));
    if !lit.ends_with('/') {
        lit.push('/');
    }
    lit.push_str(prefix.get(dir_end..).unwrap_or(""));
    Some(lit)
}

/// Why a path operand is protected, or `None`. A glob is judged by its literal prefix: it is
/// protected if some protected path could match it (`/e*` can match `/etc`; `*` never matches
/// a leading dot, so `~/*.log` cannot match `~/.ssh`). Words whose value comes from an
/// expansion other than `$HOME` cannot be judged and pass; the sandbox is the backstop.
fn protected_reason(w: &Word) -> Option<String> {
    let t = w.text.as_str();
    if t.is_empty() {
        return None;
    }
    let home_prefixed = strip_home_variable(t).is_some();
    if w.dynamic && !home_prefixed && !t.starts_with('/') {
        return None;
    }
    let abs = t.starts_with('/').then(|| normalize_abs(t));
    if let Some(p) = abs.as_deref() {
        // An unknown expansion may be empty or anything: judge it like a glob.
        let open_ended = w.glob || (w.dynamic && !home_prefixed);
        if open_ended {
            if let Some(lit) = glob_literal_prefix(t) {
                let hit = PROTECTED_PATHS.iter().any(|x| x.starts_with(lit.as_str()))
                    || PROTECTED_PREFIXES
                        .iter()
                        .chain(DEVICE_PREFIXES)
                        .any(|x| lit.starts_with(x) || x.starts_with(lit.as_str()));
                if hit {
                    return Some(format!("'{t}', which can expand to protected system paths"));
                }
            }
        } else if PROTECTED_PATHS.contains(&p) {
            return Some(format!("protected path '{p}'"));
        } else if let Some(pre) = PROTECTED_PREFIXES.iter().find(|x| p.starts_with(**x)) {
            return Some(format!("protected path '{p}' (under {pre})"));
        } else if DEVICE_PREFIXES.iter().any(|x| p.starts_with(x)) {
            return Some(format!("block or memory device '{p}'"));
        }
    }
    if let Some(rest) = home_relative(t, abs.as_deref()) {
        let lit = if w.glob {
            rest.find(['*', '?', '[', '$'])
                .and_then(|g| rest.get(..g))
                .map(str::to_string)
        } else {
            None
        };
        let hit = HOME_SENSITIVE.iter().any(|s| {
            rest == *s
                || rest.strip_prefix(s).is_some_and(|r| r.starts_with('/'))
                || lit.as_deref().is_some_and(|l| {
                    l.starts_with('.') && (s.starts_with(l) || l.starts_with(&format!("{s}/")))
                })
        });
        return hit.then(|| format!("sensitive home path '~/{rest}'"));
    }
    if abs.is_none() {
        let rel = normalize_rel(t);
        let base = basename(&rel);
        return STARTUP_FILES
            .contains(&base)
            .then(|| format!("shell start-up file '{rel}'"));
    }
    None
}

fn check_redirects(seg: &Segment, state: &LineState, hits: &mut Hits) {
    for r in &seg.redirects {
        let Some(t) = &r.target else { continue };
        let writes = match r.op {
            ">" | ">>" | ">|" | "&>" | "&>>" | "<>" => true,
            ">&" => !(t.text == "-" || t.text.bytes().all(|b| b.is_ascii_digit())),
            _ => false,
        };
        if !writes {
            continue;
        }
        if let Some(why) = protected_reason(&state.locate(t)) {
            hits.push(
                Blocker::Redirect,
                "redirect_protected_path",
                format!("Output redirection '{}' targets {why}", r.op),
            );
        }
    }
}

/// Files whose contents are credentials, by absolute path (with their descendants).
const SENSITIVE_FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/master.passwd",
    "/etc/security/opasswd",
];

/// Credentials relative to a home directory (with their descendants).
const SENSITIVE_HOME_FILES: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws/credentials",
    ".netrc",
    ".git-credentials",
    ".pgpass",
    ".docker/config.json",
    ".kube/config",
    ".comis/.env",
    ".comis/auth-profiles.json",
];

/// Longest path a word can be (`PATH_MAX`); longer words are not paths and are not globbed.
const MAX_PATH_BYTES: usize = 4096;

/// The denylist's file rules only see literal text. This check resolves each argument the way
/// the kernel would see it: `.`/`..`/`//` collapsed, against a `cd` earlier on the line, and
/// with globs matched (`/et?/shad*` is `/etc/shadow`).
fn check_sensitive_paths(seg: &Segment, view: &CommandView, state: &LineState, hits: &mut Hits) {
    let args = seg.words.iter().skip(view.idx + 1);
    let targets = seg.redirects.iter().filter_map(|r| r.target.as_ref());
    for w in args.chain(targets) {
        // `--file=/etc/shadow`, `-d @/etc/shadow`: the value after `=` or `@` is the path.
        let tail = w.text.rsplit(['=', '@']).next().unwrap_or("");
        let candidates = [w.text.as_str(), tail];
        for text in candidates
            .iter()
            .filter(|t| !t.is_empty())
            .take(if tail == w.text { 1 } else { 2 })
        {
            let word = Word {
                text: (*text).to_string(),
                ..w.clone()
            };
            if let Some(p) = sensitive_path(&state.locate(&word)) {
                if p.starts_with("/proc/") {
                    hits.push(
                        Blocker::Proc,
                        "proc_environ_path",
                        format!("Access to '{p}' is blocked (environment variable exfiltration)"),
                    );
                } else {
                    hits.push(
                        Blocker::Denylist,
                        "sensitive_path",
                        format!("Access to credential path '{p}'"),
                    );
                }
                return;
            }
        }
    }
}

fn sensitive_path(w: &Word) -> Option<String> {
    let t = w.text.as_str();
    if t.is_empty() || t.len() > MAX_PATH_BYTES {
        return None;
    }
    let home_prefixed = strip_home_variable(t).is_some();
    if w.dynamic && !home_prefixed {
        return None;
    }
    let abs = t.starts_with('/').then(|| normalize_abs(t));
    if let Some(n) = abs.as_deref() {
        let hit = SENSITIVE_FILES.iter().any(|s| path_matches(n, s, w.glob))
            || (n.starts_with("/proc/") && n.ends_with("/environ"))
            || (w.glob && glob_path_match(n, "/proc/self/environ"));
        if hit {
            return Some(n.to_string());
        }
    }
    let rest = home_relative(t, abs.as_deref())?;
    SENSITIVE_HOME_FILES
        .iter()
        .any(|s| path_matches(&rest, s, w.glob))
        .then(|| format!("~/{rest}"))
}

/// `path` is `sensitive` or inside it; with `glob`, `path` is a pattern that can match either.
fn path_matches(path: &str, sensitive: &str, glob: bool) -> bool {
    if glob {
        glob_path_match(path, sensitive) || glob_path_match(path, &format!("{sensitive}/x"))
    } else {
        path == sensitive
            || path
                .strip_prefix(sensitive)
                .is_some_and(|r| r.starts_with('/'))
    }
}

/// Shell pathname matching: `*`, `?` and `[…]` never cross `/` and never match a leading `.`.
fn glob_path_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    p.len() == s.len()
        && p.iter().zip(&s).all(|(pc, sc)| {
            let pc: Vec<char> = pc.chars().collect();
            let sc: Vec<char> = sc.chars().collect();
            glob_component(&pc, &sc)
        })
}

fn glob_component(p: &[char], s: &[char]) -> bool {
    let leading_dot = s.first() == Some(&'.');
    let (mut pi, mut si) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let wildcard_ok = !(si == 0 && leading_dot);
        let step = match p.get(pi) {
            Some('*') if wildcard_ok || si > 0 => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some('?') if wildcard_ok => Some(pi + 1),
            Some('[') => match bracket(p, pi, s.get(si).copied().unwrap_or('\0')) {
                Some((true, next)) if wildcard_ok => Some(next),
                Some(_) => None,
                None => (s.get(si) == Some(&'[')).then_some(pi + 1),
            },
            Some(c) => (s.get(si) == Some(c)).then_some(pi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                pi = next;
                si += 1;
            }
            None => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p.iter().skip(pi).all(|c| *c == '*')
}

/// A `[…]` class at `p[at]` tested against `c`: `(matched, index after ']')`, or `None` if the
/// class never closes (the `[` is then literal).
fn bracket(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let mut i = at + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|e| *e != ']') {
            let hi = *p.get(i + 2)?;
            matched |= ch <= c && c <= hi;
            i += 3;
        } else {
            matched |= ch == c;
            i += 1;
        }
    }
}

/// Path operands of a mutating command (words after the program that are not options).
fn check_mutation_paths(seg: &Segment, view: &CommandView, state: &LineState, hits: &mut Hits) {
    let args = seg.words.get(view.idx + 1..).unwrap_or(&[]);
    let name = view.name.as_str();
    let operands = || {
        let mut after_dashdash = false;
        args.iter().filter(move |a| {
            if after_dashdash {
                return true;
            }
            if a.text == "--" {
                after_dashdash = true;
                return false;
            }
            !(a.text.starts_with('-') && a.text.len() > 1)
        })
    };
    let in_place = args.iter().any(|a| {
        a.text == "--in-place"
            || a.text.starts_with("--in-place=")
            || (a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains('i'))
    });
    let with_text = |w: &Word, text: &str| Word {
        text: text.to_string(),
        ..w.clone()
    };
    let mut targets: Vec<Word> = Vec::new();
    if MUTATE_ALL.contains(&name) || ((name == "sed" || name == "perl") && in_place) {
        targets.extend(operands().cloned());
    } else if MUTATE_DEST.contains(&name) {
        let mut explicit = false;
        for (k, a) in args.iter().enumerate() {
            if a.text == "-t" || a.text == "--target-directory" {
                targets.extend(args.get(k + 1).cloned());
                explicit = true;
            } else if let Some(v) = a.text.strip_prefix("--target-directory=") {
                targets.push(with_text(a, v));
                explicit = true;
            }
        }
        if !explicit {
            // Not `last()`: the filter is stateful (`--`), so it must run front to back.
            let all: Vec<&Word> = operands().collect();
            targets.extend(all.last().map(|w| (*w).clone()));
        }
    } else if name == "dd" {
        // `of=PATH` is the only thing dd writes.
        for a in args {
            if let Some(path) = a.text.strip_prefix("of=") {
                targets.push(with_text(a, path));
            }
        }
    } else if name == "find" && args.iter().any(|a| a.text == "-delete") {
        targets.extend(
            args.iter()
                .take_while(|a| !a.text.starts_with('-') && a.text != "(" && a.text != "!")
                .cloned(),
        );
    }
    if let Some(why) = targets
        .iter()
        .find_map(|t| protected_reason(&state.locate(t)))
    {
        hits.push(
            Blocker::Path,
            "mutation_protected_path",
            format!("Mutation command '{name}' targets {why}"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Gate: environment allowlist
// ---------------------------------------------------------------------------------------------

/// Environment variables an exec call may override. Everything else is refused (fail closed).
pub const SAFE_ENV_VARS: &[&str] = &[
    // Locale and display
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_COLLATE",
    "LC_NUMERIC",
    "LC_TIME",
    "LC_MONETARY",
    "TZ",
    "TERM",
    "COLORTERM",
    "FORCE_COLOR",
    "NO_COLOR",
    "COLUMNS",
    "LINES",
    // Runtime behaviour that cannot load code
    "NODE_ENV",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "DEBUG",
    "VERBOSE",
    "LOG_LEVEL",
    "CI",
    // Paths
    "HOME",
    "USER",
    "SHELL",
    "PATH",
    "TMPDIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
    // Platform signals
    "LS_COLORS",
    "CLICOLOR",
    "CLICOLOR_FORCE",
];

/// Name prefixes an exec call may override.
pub const SAFE_ENV_PREFIXES: &[&str] = &["LC_"];

/// Names refused with a specific reason (they are also outside the allowlist; naming them
/// makes the audit trail say what was attempted).
fn env_risk(name: &str) -> Option<(&'static str, &'static str)> {
    const LOADER: (&str, &str) = (
        "env_loader_injection",
        "makes the dynamic loader inject or search attacker-chosen libraries in every program",
    );
    const STARTUP: (&str, &str) = (
        "env_shell_startup",
        "makes the shell run code or change how it parses before the command runs",
    );
    const INTERP: (&str, &str) = (
        "env_interpreter_injection",
        "makes an interpreter load attacker-chosen code or options",
    );
    const HELPER: (&str, &str) = (
        "env_helper_command",
        "names a program that tools run on their own (askpass, editor, pager, ssh command)",
    );
    if name.starts_with("LD_") || name.starts_with("DYLD_") {
        return Some(LOADER);
    }
    if name.starts_with("BASH_FUNC_") {
        return Some(STARTUP);
    }
    if name.starts_with("GIT_CONFIG") || name.to_ascii_lowercase().starts_with("npm_config_") {
        return Some(HELPER);
    }
    let risk = match name {
        "GCONV_PATH" | "MALLOC_CHECK_" | "HOSTALIASES" | "LOCPATH" | "NLSPATH"
        | "RESOLV_HOST_CONF" => LOADER,
        "BASH_ENV" | "ENV" | "PROMPT_COMMAND" | "PS4" | "SHELLOPTS" | "BASHOPTS" | "IFS"
        | "CDPATH" | "GLOBIGNORE" | "ZDOTDIR" | "BASH_XTRACEFD" | "HISTFILE" | "INPUTRC" => STARTUP,
        "PYTHONPATH" | "PYTHONSTARTUP" | "PYTHONHOME" | "PYTHONINSPECT" | "PERL5OPT"
        | "PERL5LIB" | "PERLLIB" | "PERL5DB" | "RUBYOPT" | "RUBYLIB" | "NODE_OPTIONS"
        | "NODE_PATH" | "JAVA_TOOL_OPTIONS" | "_JAVA_OPTIONS" | "JDK_JAVA_OPTIONS"
        | "CLASSPATH" | "LUA_INIT" | "LUA_PATH" | "LUA_CPATH" | "PHPRC" | "PHP_INI_SCAN_DIR"
        | "R_PROFILE" | "R_PROFILE_USER" | "TCLLIBPATH" => INTERP,
        "GIT_ASKPASS" | "SSH_ASKPASS" | "SUDO_ASKPASS" | "GIT_SSH" | "GIT_SSH_COMMAND"
        | "GIT_EXEC_PATH" | "GIT_EDITOR" | "GIT_PAGER" | "GIT_PROXY_COMMAND"
        | "GIT_EXTERNAL_DIFF" | "EDITOR" | "VISUAL" | "PAGER" | "MANPAGER" | "BROWSER"
        | "LESSOPEN" | "LESSCLOSE" => HELPER,
        _ => return None,
    };
    Some(risk)
}

fn check_env(env: &[(String, String)], hits: &mut Hits) -> Vec<String> {
    let mut denied = Vec::new();
    for (name, value) in env {
        let problem: Option<(&'static str, String)> = if !is_name(name) {
            Some((
                "env_invalid_name",
                format!(
                    "environment variable name '{}' is not a valid shell name",
                    truncate(name, 40)
                ),
            ))
        } else if let Some((finding, why)) = env_risk(name) {
            Some((
                finding,
                format!("Environment variable '{name}' is blocked: it {why}"),
            ))
        } else if SAFE_ENV_VARS.contains(&name.as_str())
            || SAFE_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            value.contains('\0').then(|| {
                (
                    "env_value_nul",
                    format!("environment variable '{name}' has a NUL byte in its value"),
                )
            })
        } else {
            Some((
                "env_not_allowlisted",
                format!(
                    "Environment variable '{name}' is not in the allowed list. Only safe variables (locale, display, build config) can be overridden."
                ),
            ))
        };
        if let Some((finding, reason)) = problem {
            hits.push(Blocker::Env, finding, reason);
            denied.push(name.clone());
        }
    }
    denied
}

#[cfg(test)]
mod tests;
