//! `comis doctor [--fix] [--json]`: the security audit of a set-up.
//!
//! Each check gives pass, warn or fail and a one-line fix. Exit status 1 when any check fails
//! (after `--fix`, the checks are run again and that result counts), 0 otherwise.
//!
//! `--fix` repairs only what is safe to repair without the operator's judgement, and prints
//! each change: permissions of `COMIS_HOME` and its files (0700 / 0600), a missing gateway
//! token (generated into the vault and referenced from the config), plaintext secrets in
//! `config.yaml` (moved into the vault, replaced by `${NAME}`). A config edit is kept only if
//! the edited file still validates; otherwise the file is restored.
//!
//! Does not: change security settings (approvals, audit, exposure) on its own — turning a
//! protection back on is reported with the line to write, because the operator may have a
//! reason the doctor cannot see.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use comis_secrets::redact::is_secret_key;
use comis_secrets::secret_ref::SecretRef;
use comis_secrets::{ExposeSecret, SecretName, Vault};
use serde::Serialize;
use serde_json::Value;

use super::{CliError, out};
use crate::config::load::{self, Loaded};
use crate::config::schema::Config;
use crate::config::{home, yaml};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Repair what is safe to repair (permissions, missing token, plaintext secrets).
    #[arg(long)]
    fix: bool,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub message: String,
    /// One line that fixes it (empty on pass).
    pub fix: String,
}

fn check(
    id: &'static str,
    status: Status,
    message: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        id,
        status,
        message: message.into(),
        fix: fix.into(),
    }
}

/// Files in `COMIS_HOME` that must be private: top level and `logs/`.
fn private_files(home: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [home.to_owned(), home.join("logs")] {
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

fn private_dirs(home: &Path) -> Vec<PathBuf> {
    let mut out = vec![home.to_owned()];
    for d in ["logs", "workspaces"] {
        let p = home.join(d);
        if p.is_dir() {
            out.push(p);
        }
    }
    out
}

fn mode(p: &Path) -> Option<u32> {
    fs::symlink_metadata(p).ok().map(|m| m.mode() & 0o777)
}

fn permissions(home: &Path, out: &mut Vec<Check>) {
    let mut bad = Vec::new();
    for d in private_dirs(home) {
        if let Some(m) = mode(&d)
            && m & 0o077 != 0
        {
            bad.push(format!("{} is {m:03o} (want 700)", d.display()));
        }
    }
    for f in private_files(home) {
        if let Some(m) = mode(&f)
            && m & 0o077 != 0
        {
            bad.push(format!("{} is {m:03o} (want 600)", f.display()));
        }
    }
    out.push(if bad.is_empty() {
        check(
            "permissions",
            Status::Pass,
            "COMIS_HOME and its files are private to you",
            "",
        )
    } else {
        check(
            "permissions",
            Status::Fail,
            format!("other users can reach comis data: {}", bad.join("; ")),
            format!(
                "comis doctor --fix (or chmod 700 {0} && chmod 600 {0}/*)",
                home.display()
            ),
        )
    });
}

fn fix_permissions(home: &Path, changes: &mut Vec<String>) {
    let mut set = |p: &Path, want: u32| {
        if let Some(m) = mode(p)
            && m & 0o077 != 0
            && fs::set_permissions(p, fs::Permissions::from_mode(want)).is_ok()
        {
            changes.push(format!("chmod {want:03o} {} (was {m:03o})", p.display()));
        }
    };
    for d in private_dirs(home) {
        set(&d, 0o700);
    }
    for f in private_files(home) {
        set(&f, 0o600);
    }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A string written literally (not a `${NAME}` reference) under a secret-like key (or in a
/// list under one).
fn plaintext_secrets(raw: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![(String::new(), raw, false)];
    while let Some((ptr, v, secret)) = todo.pop() {
        match v {
            Value::String(s) if secret && !s.is_empty() && !s.contains("${") => found.push(ptr),
            Value::Object(o) => {
                if secret && SecretRef::from_object(o, &ptr).ok().flatten().is_some() {
                    continue;
                }
                // The nearest key decides (not any ancestor: `tokens[0].id` is not secret).
                for (k, child) in o {
                    let p = format!("{ptr}/{}", yaml::escape(k));
                    todo.push((p, child, is_secret_key(k) && k != "apiKeyName"));
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    todo.push((format!("{ptr}/{i}"), child, secret));
                }
            }
            _ => {}
        }
    }
    found.sort();
    found
}

fn dotted(ptr: &str) -> String {
    ptr.trim_start_matches('/').replace('/', ".")
}

fn config_checks(home: &Path, l: &Loaded, out: &mut Vec<Check>) {
    let c: &Config = &l.config;
    let gw = &c.gateway;
    // Exposure.
    let loopback = is_loopback(&gw.host);
    out.push(
        match (gw.enabled, loopback, gw.tls.is_some(), gw.tokens.is_empty()) {
            (false, ..) => check("gateway-exposure", Status::Pass, "gateway disabled", ""),
            (true, true, ..) => check(
                "gateway-exposure",
                Status::Pass,
                format!("gateway listens on loopback ({}:{})", gw.host, gw.port),
                "",
            ),
            (true, false, true, false) => check(
                "gateway-exposure",
                Status::Warn,
                format!("gateway listens on {} with TLS and tokens", gw.host),
                "keep it behind a firewall; prefer 127.0.0.1 and a tunnel",
            ),
            (true, false, ..) => check(
                "gateway-exposure",
                Status::Fail,
                format!(
                    "gateway listens on non-loopback {} without {}",
                    gw.host,
                    if gw.tls.is_none() { "TLS" } else { "tokens" }
                ),
                "set gateway.host: 127.0.0.1, or configure gateway.tls and gateway.tokens",
            ),
        },
    );
    // Tokens.
    let weak: Vec<&str> = gw
        .tokens
        .iter()
        .filter(|t| t.secret.expose_secret().chars().count() < 32)
        .map(|t| t.id.as_str())
        .collect();
    out.push(if !gw.enabled {
        check("gateway-tokens", Status::Pass, "gateway disabled", "")
    } else if gw.tokens.is_empty() {
        check(
            "gateway-tokens",
            Status::Fail,
            "the gateway has no tokens",
            "comis doctor --fix (generates one into the vault)",
        )
    } else if !weak.is_empty() {
        check(
            "gateway-tokens",
            Status::Fail,
            format!("weak gateway token(s) (< 32 characters): {}", weak.join(", ")),
            "store a long random value: openssl rand -hex 32 | comis secrets set COMIS_GATEWAY_TOKEN",
        )
    } else {
        check(
            "gateway-tokens",
            Status::Pass,
            format!("{} gateway token(s), all ≥ 32 characters", gw.tokens.len()),
            "",
        )
    });
    // Plaintext secrets.
    let plain = plaintext_secrets(&l.raw);
    out.push(if plain.is_empty() {
        check(
            "plaintext-secrets",
            Status::Pass,
            "no plaintext secret in config.yaml",
            "",
        )
    } else {
        check(
            "plaintext-secrets",
            Status::Fail,
            format!(
                "plaintext secret(s) in config.yaml at {}",
                plain
                    .iter()
                    .map(|p| dotted(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "comis doctor --fix (moves them into the vault and writes ${NAME} instead)",
        )
    });
    // Approvals.
    let ac = &c.security.action_confirmation;
    out.push(if ac.require_for_destructive && c.approvals.enabled {
        check("approvals", Status::Pass, "destructive actions need approval", "")
    } else {
        check(
            "approvals",
            Status::Fail,
            "approval of destructive actions is switched off in the config",
            "set security.actionConfirmation.requireForDestructive: true and approvals.enabled: true",
        )
    });
    // Audit and log redaction.
    out.push(if c.security.audit_log {
        check(
            "audit-log",
            Status::Pass,
            "security events go to the hash-chained audit log",
            "",
        )
    } else {
        check(
            "audit-log",
            Status::Fail,
            "security.auditLog is false: security decisions leave no evidence",
            "set security.auditLog: true",
        )
    });
    out.push(if c.security.log_redaction {
        check(
            "log-redaction",
            Status::Pass,
            "log lines are scrubbed of credentials",
            "",
        )
    } else {
        check(
            "log-redaction",
            Status::Warn,
            "security.logRedaction is false (this daemon scrubs logs regardless)",
            "set security.logRedaction: true",
        )
    });
    // SSRF allow list.
    let hosts = &c.security.ssrf.allow_hosts;
    let dangerous: Vec<&String> = hosts
        .iter()
        .filter(|h| {
            let h = h.to_lowercase();
            h == "*" || h.starts_with("169.254.") || h.contains("metadata") || h == "0.0.0.0"
        })
        .collect();
    out.push(if !dangerous.is_empty() {
        check(
            "ssrf-allow-list",
            Status::Fail,
            format!("security.ssrf.allowHosts opens cloud metadata or everything: {dangerous:?}"),
            "remove those entries from security.ssrf.allowHosts",
        )
    } else if hosts.is_empty() {
        check("ssrf-allow-list", Status::Pass, "no SSRF exceptions", "")
    } else {
        check(
            "ssrf-allow-list",
            Status::Warn,
            format!("SSRF exceptions: {}", hosts.join(", ")),
            "keep security.ssrf.allowHosts to hosts you run",
        )
    });
    // Skill scanning (agents.<id>.skills.contentScanning.enabled, on unless switched off).
    let off: Vec<&String> = c
        .agents
        .keys()
        .filter(|id| {
            l.raw
                .pointer(&format!(
                    "/agents/{}/skills/contentScanning/enabled",
                    yaml::escape(id)
                ))
                .is_some_and(|v| v == &Value::Bool(false))
        })
        .collect();
    out.push(if off.is_empty() {
        check(
            "skill-scanning",
            Status::Pass,
            "skill content scanning is on",
            "",
        )
    } else {
        check(
            "skill-scanning",
            Status::Fail,
            format!("skill content scanning is off for {off:?}"),
            "set agents.<id>.skills.contentScanning.enabled: true",
        )
    });
    // Email allowlist.
    out.push(match &c.channels.email {
        Some(e) if e.enabled && e.allow_from.iter().any(|a| a == "*") => check(
            "email-allowlist",
            Status::Fail,
            "email channel accepts mail from anyone (allowFrom: [\"*\"])",
            "list the senders in channels.email.allowFrom",
        ),
        Some(e) if e.enabled && e.allow_from.is_empty() => check(
            "email-allowlist",
            Status::Warn,
            "email channel is enabled with an empty allowFrom: nobody can reach the agent",
            "list the senders in channels.email.allowFrom",
        ),
        _ => check(
            "email-allowlist",
            Status::Pass,
            "email channel off or allow-listed",
            "",
        ),
    });
    // Webhook secrets (the section's secret field, however the gateway names it).
    let wh = l.raw.get("webhooks");
    let has_secret = wh
        .and_then(Value::as_object)
        .is_some_and(|o| o.iter().any(|(k, v)| is_secret_key(k) && !v.is_null()));
    out.push(if !c.webhooks.enabled {
        check("webhook-secrets", Status::Pass, "webhooks disabled", "")
    } else if has_secret {
        check("webhook-secrets", Status::Pass, "webhooks require a secret", "")
    } else {
        check(
            "webhook-secrets",
            Status::Fail,
            "webhooks are enabled without a token or HMAC secret",
            "set webhooks.token: ${WEBHOOK_TOKEN} and store it with comis secrets set WEBHOOK_TOKEN",
        )
    });
    // Provider keys.
    let secrets = load::secret_manager(home).ok();
    let mut missing = Vec::new();
    for (id, p) in &c.providers.entries {
        if let Some(name) = &p.api_key_name {
            let has = secrets
                .as_ref()
                .is_some_and(|s| comis_secrets::SecretAccess::has(s, name));
            if !has {
                missing.push(format!("{id} ({name})"));
            }
        }
    }
    out.push(if missing.is_empty() {
        check(
            "provider-keys",
            Status::Pass,
            "every provider that needs a key has one",
            "",
        )
    } else {
        check(
            "provider-keys",
            Status::Warn,
            format!("provider(s) without an API key: {}", missing.join(", ")),
            format!(
                "comis secrets set {}",
                c.providers
                    .entries
                    .values()
                    .find_map(|p| p.api_key_name.clone())
                    .unwrap_or_default()
            ),
        )
    });
}

fn sandbox_check(out: &mut Vec<Check>) {
    let p = comis_sandbox::HostProbe::run(None);
    let layers = [("namespaces", &p.namespaces), ("seccomp", &p.seccomp)];
    let off: Vec<String> = layers
        .iter()
        .filter(|(_, s)| !s.active)
        .map(|(n, s)| format!("{n}: {}", s.detail))
        .collect();
    out.push(if off.is_empty() {
        check(
            "sandbox",
            Status::Pass,
            format!(
                "exec sandbox works ({}; namespaces, seccomp; landlock {})",
                p.bwrap_version.as_deref().unwrap_or("bwrap"),
                if p.landlock.active { "on" } else { "off" }
            ),
            "",
        )
    } else {
        check(
            "sandbox",
            Status::Warn,
            format!("exec is disabled (fails closed): {}", off.join("; ")),
            "install bubblewrap and allow unprivileged user namespaces",
        )
    });
}

/// Runs every check.
pub fn checks(home: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    if !home.exists() {
        out.push(check(
            "setup",
            Status::Fail,
            format!("{} does not exist", home.display()),
            "comis init",
        ));
        return out;
    }
    permissions(home, &mut out);
    match load::load(home) {
        Ok(l) => {
            out.push(check(
                "config",
                Status::Pass,
                format!("{} is valid", l.path.display()),
                "",
            ));
            config_checks(home, &l, &mut out);
        }
        Err(e) => out.push(check(
            "config",
            Status::Fail,
            e.to_string(),
            "fix the file (comis config validate shows the error)",
        )),
    }
    sandbox_check(&mut out);
    out
}

/// Replaces the character range `range` of `text` with `with`.
fn splice(text: &str, range: (usize, usize), with: &str) -> Option<String> {
    let byte = |ci: usize| {
        text.char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .nth(ci)
    };
    let (a, b) = (byte(range.0)?, byte(range.1)?);
    Some(format!("{}{with}{}", &text[..a], &text[b..]))
}

/// A vault name for the secret at `ptr`: `GATEWAY_TOKENS_0_SECRET`.
fn vault_name(ptr: &str) -> String {
    let mut n: String = ptr
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, '_');
    }
    n
}

fn fix_config(home: &Path, changes: &mut Vec<String>) -> Result<(), CliError> {
    let path = load::config_path(home);
    let Ok(original) = load::read_bounded(&path) else {
        return Ok(());
    };
    let Ok((raw, spans)) = yaml::parse(&original) else {
        return Ok(());
    };
    let mut text = original.clone();
    let mut to_store = Vec::new();
    let mut notes = Vec::new();
    // Plaintext secrets, last in the file first so earlier ranges stay valid.
    let mut plain: Vec<(String, (usize, usize))> = plaintext_secrets(&raw)
        .into_iter()
        .filter_map(|p| spans.scalar_range(&p).map(|r| (p, r)))
        .collect();
    plain.sort_by_key(|(_, r)| std::cmp::Reverse(r.0));
    for (ptr, range) in plain {
        let Some(Value::String(value)) = raw.pointer(&ptr) else {
            continue;
        };
        let name = vault_name(&ptr);
        let Some(edited) = splice(&text, range, &format!("\"${{{name}}}\"")) else {
            continue;
        };
        text = edited;
        to_store.push((
            SecretName::new(&name)?,
            comis_secrets::SecretString::from(value.clone()),
        ));
        notes.push(format!(
            "moved the plaintext secret at {} into the vault as {name}",
            dotted(&ptr)
        ));
    }
    // A missing gateway token.
    let gw = raw.get("gateway");
    let enabled = gw
        .and_then(|g| g.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let no_tokens = gw
        .and_then(|g| g.get("tokens"))
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if enabled && no_tokens && gw.and_then(|g| g.get("tokens")).is_none() {
        let entry = format!(
            "tokens: [{{ id: default, secret: {{ source: env, id: {} }}, scopes: [\"*\"] }}]",
            super::init::GATEWAY_TOKEN_NAME
        );
        let edited = match (gw, spans.key("/gateway")) {
            (None, _) => Some(format!(
                "{}{}gateway:\n  {entry}\n",
                text,
                if text.ends_with('\n') || text.is_empty() {
                    ""
                } else {
                    "\n"
                }
            )),
            (Some(Value::Object(o)), Some(kpos)) if !o.is_empty() => {
                // Block style: insert a sibling before the first child key, same indent.
                o.keys()
                    .filter_map(|k| spans.key(&format!("/gateway/{}", yaml::escape(k))))
                    .filter(|p| p.line > kpos.line)
                    .min_by_key(|p| p.line)
                    .and_then(|child| {
                        insert_line(
                            &text,
                            child.line,
                            &format!("{}{entry}", " ".repeat(child.col - 1)),
                        )
                    })
            }
            _ => None,
        };
        match edited {
            Some(t) => {
                text = t;
                let vault = Vault::open_or_create(home)?.0;
                let name = SecretName::new(super::init::GATEWAY_TOKEN_NAME)?;
                if vault.get(&name)?.is_none() {
                    to_store.push((name, super::init::generate_token()?));
                    notes.push(format!(
                        "generated a gateway token into the vault as {}",
                        super::init::GATEWAY_TOKEN_NAME
                    ));
                }
                notes.push("added gateway.tokens referencing it".to_owned());
            }
            None => notes.push(
                "could not add a gateway token automatically: add gateway.tokens by hand"
                    .to_owned(),
            ),
        }
    }
    if text == original {
        changes.extend(notes);
        return Ok(());
    }
    let (vault, _) = Vault::open_or_create(home)?;
    if !to_store.is_empty() {
        vault.set_many(&to_store)?;
    }
    home::write_private(&path, text.as_bytes())?;
    if let Err(e) = load::load(home) {
        home::write_private(&path, original.as_bytes())?;
        changes.push(format!(
            "restored config.yaml: the automatic edit did not validate ({e})"
        ));
        return Ok(());
    }
    changes.extend(notes);
    Ok(())
}

fn insert_line(text: &str, line: usize, content: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + content.len() + 1);
    let mut inserted = false;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            out.push_str(content);
            out.push('\n');
            inserted = true;
        }
        out.push_str(l);
    }
    inserted.then_some(out)
}

pub fn run(args: DoctorArgs) -> Result<ExitCode, CliError> {
    let home = home::path()?;
    let mut changes = Vec::new();
    if args.fix && home.exists() {
        fix_permissions(&home, &mut changes);
        fix_config(&home, &mut changes)?;
    }
    let results = checks(&home);
    let failed = results.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let v = serde_json::json!({"checks": results, "changes": changes, "ok": !failed});
        out(&format!("{v}\n"))?;
    } else {
        let mut s = String::new();
        for ch in &changes {
            s.push_str(&format!("FIXED {ch}\n"));
        }
        for c in &results {
            let tag = match c.status {
                Status::Pass => "PASS",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            s.push_str(&format!("{tag}  {:<18} {}\n", c.id, c.message));
            if c.status != Status::Pass && !c.fix.is_empty() {
                s.push_str(&format!("      {:<18} fix: {}\n", "", c.fix));
            }
        }
        out(&s)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
