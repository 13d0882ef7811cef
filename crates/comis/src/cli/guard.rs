//! `comis guard <detector>`: every comis-guard detector on the command line.
//!
//! Items come on stdin (see [`super::items`]); each yields exactly one JSON object on stdout:
//! `index` (0-based item number), `flagged` (the detector found anything), `findings`
//! (`[{name, category, severity}]`), then the detector's own fields. An item that cannot be read
//! yields `{index, error}` and processing continues. Exit status is 0 whatever was found, 1 with
//! `--fail-on flagged` when any item was flagged (or was an error), 2 on a usage or I/O error.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use comis_guard::canary::{CanaryKey, CanaryToken};
use comis_guard::classify::Classifier;
use comis_guard::input::{InputAction, InputGuard, InputGuardConfig};
use comis_guard::logscrub::LogScrubber;
use comis_guard::memscan::MemoryValidator;
use comis_guard::output::OutputGuard;
use comis_guard::shell::CommandValidator;
use comis_guard::skillscan::{SkillScanConfig, SkillScanner, SkillVerdict};
use comis_guard::toolout::{DEFAULT_MAX_CHARS, ToolOutputSanitizer};
use comis_guard::unicode;
use comis_guard::wrap::{ContentWrapper, SourceKind, WrapOptions};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::CliError;
use super::items::{Framing, Items};

#[derive(Debug, Args)]
pub struct GuardArgs {
    #[command(subcommand)]
    detector: Detector,
    /// Treat each input line as one plain-text item instead of a JSON-encoded string.
    #[arg(long, global = true)]
    raw: bool,
    /// Exit with status 1 when any item is flagged (for CI pipelines).
    #[arg(long, value_enum, global = true)]
    fail_on: Option<FailOn>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FailOn {
    Flagged,
}

#[derive(Debug, Subcommand)]
enum Detector {
    /// Input guard: `score` in [0,1], `risk` (low|medium|high), `action`
    /// (pass|warn|reinforce|block).
    Input {
        /// Score at or above which risk is medium (action reinforce).
        #[arg(long, default_value_t = 0.4)]
        medium: f32,
        /// Score at or above which risk is high (action warn, or block with --block).
        #[arg(long, default_value_t = 0.7)]
        high: f32,
        /// Block high-risk items instead of warning.
        #[arg(long)]
        block: bool,
    },
    /// Output guard: `text` with secrets, registered values and the canary redacted.
    Output {
        /// A known secret value to redact by exact match (repeatable). Values on the command
        /// line are visible to other local users: prefer test values here.
        #[arg(long = "secret", value_name = "VALUE")]
        secrets: Vec<String>,
        /// The daemon's canary key (at least 16 bytes); with --session, checks for that
        /// session's canary token.
        #[arg(long, requires = "session")]
        canary_key: Option<String>,
        /// Session id whose canary token to detect.
        #[arg(long, requires = "canary_key")]
        session: Option<String>,
    },
    /// Invisible-character stripping: `text` without hidden characters.
    Invisible,
    /// External content wrapping: `text` wrapped in random 24-hex delimiters as untrusted data.
    Wrap {
        /// Where the content came from: email, webhook, api, file_read, web_fetch,
        /// channel_metadata, web_search or document.
        #[arg(long, default_value = "web_fetch")]
        source: String,
        /// Sender shown in the metadata (sanitized to one short line).
        #[arg(long)]
        sender: Option<String>,
        /// Subject shown in the metadata (sanitized to one short line).
        #[arg(long)]
        subject: Option<String>,
        /// Leave out the security notice header.
        #[arg(long)]
        no_warning: bool,
    },
    /// Tool output sanitizer: `text` normalized, instruction-like text redacted, truncated.
    Toolout {
        /// Maximum characters kept before truncation at a line boundary.
        #[arg(long, default_value_t = DEFAULT_MAX_CHARS)]
        max_chars: usize,
    },
    /// Memory write validator: `verdict` block | downgrade | store, with `reasons`.
    Memwrite,
    /// Log sanitizer: `text` with free-text credentials redacted.
    Logscrub,
    /// Exec command validator: `allowed` and `reason` (the gate that refused it).
    Command,
    /// SSRF guard: items are URLs an agent asked to fetch; `allowed`, `reason`, and
    /// `addresses` (what the host resolved to).
    Url {
        /// Check literal hosts only; a name is treated as unresolved and so blocked.
        #[arg(long)]
        no_resolve: bool,
        /// A private host the operator really wants reachable (`security.ssrf.allowHosts`);
        /// repeatable.
        #[arg(long = "allow-host", value_name = "HOST")]
        allow_hosts: Vec<String>,
    },
    /// Safe path: items are paths an agent asked for, checked against --root; `allowed`,
    /// `reason`, and `path` (the canonical path inside the root).
    Path {
        /// The directory the paths must stay inside (an agent's workspace).
        #[arg(long)]
        root: PathBuf,
    },
    /// Action classifier: items are action names (e.g. `file.delete`); `class` is read |
    /// mutate | destructive (unknown actions are destructive).
    Classify,
    /// Skill content scanner (18 rules): `verdict` block | pass.
    Skill {
        /// Report critical findings without blocking the skill.
        #[arg(long)]
        no_block_on_critical: bool,
    },
}

/// A constructed detector: built once, applied to every item.
enum Prepared {
    Input(Box<InputGuard>),
    Output {
        guard: Box<OutputGuard>,
        canary: Option<CanaryToken>,
    },
    Logscrub(Box<LogScrubber>),
    Command(Box<CommandValidator>),
    Classify(Box<Classifier>),
    Path(PathBuf),
    Url {
        policy: Box<comis_net::SsrfPolicy>,
        resolve: bool,
    },
    Invisible,
    Wrap {
        wrapper: Box<ContentWrapper>,
        source: SourceKind,
        sender: Option<String>,
        subject: Option<String>,
        warning: bool,
    },
    Toolout {
        sanitizer: Box<ToolOutputSanitizer>,
        max_chars: usize,
    },
    Memwrite(Box<MemoryValidator>),
    Skill(Box<SkillScanner>),
}

impl Prepared {
    fn build(detector: Detector) -> Result<Self, CliError> {
        Ok(match detector {
            Detector::Input {
                medium,
                high,
                block,
            } => {
                let action = if block {
                    InputAction::Block
                } else {
                    InputAction::Warn
                };
                let config = InputGuardConfig {
                    medium_threshold: medium,
                    high_threshold: high,
                    action,
                };
                Prepared::Input(Box::new(InputGuard::new(config)?))
            }
            Detector::Output {
                secrets,
                canary_key,
                session,
            } => {
                let mut guard = OutputGuard::new()?;
                guard.register_secrets(secrets.iter().map(String::as_str))?;
                let canary = match (canary_key, session) {
                    (Some(key), Some(session)) => {
                        Some(CanaryKey::from_bytes(key.as_bytes())?.token_for(&session))
                    }
                    _ => None,
                };
                Prepared::Output {
                    guard: Box::new(guard),
                    canary,
                }
            }
            Detector::Logscrub => Prepared::Logscrub(Box::new(LogScrubber::new()?)),
            Detector::Command => Prepared::Command(Box::new(CommandValidator::new()?)),
            Detector::Url {
                no_resolve,
                allow_hosts,
            } => Prepared::Url {
                policy: Box::new(comis_net::SsrfPolicy::with_allow_hosts(&allow_hosts)?),
                resolve: !no_resolve,
            },
            Detector::Path { root } => {
                if !root.is_dir() {
                    return Err(CliError::Usage(format!(
                        "--root {} is not a directory",
                        root.display()
                    )));
                }
                Prepared::Path(root)
            }
            Detector::Classify => Prepared::Classify(Box::default()),
            Detector::Invisible => Prepared::Invisible,
            Detector::Wrap {
                source,
                sender,
                subject,
                no_warning,
            } => Prepared::Wrap {
                wrapper: Box::new(ContentWrapper::new()?),
                source: source.parse()?,
                sender,
                subject,
                warning: !no_warning,
            },
            Detector::Toolout { max_chars } => Prepared::Toolout {
                sanitizer: Box::new(ToolOutputSanitizer::new()?),
                max_chars,
            },
            Detector::Memwrite => Prepared::Memwrite(Box::new(MemoryValidator::new()?)),
            Detector::Skill {
                no_block_on_critical,
            } => {
                let config = SkillScanConfig {
                    block_on_critical: !no_block_on_critical,
                };
                Prepared::Skill(Box::new(SkillScanner::new(config)?))
            }
        })
    }

    /// Runs the detector on one item; returns the findings and the detector's own fields.
    fn apply(&self, text: &str) -> Result<Outcome, CliError> {
        Ok(match self {
            Prepared::Input(guard) => {
                let scan = guard.scan(text);
                let fields = [
                    ("score", json!(scan.score)),
                    ("risk", json!(scan.risk)),
                    ("action", json!(scan.action)),
                ];
                Outcome::new(&scan.findings, fields, false)?
            }
            Prepared::Output { guard, canary } => {
                let scan = guard.scan(text, canary.as_ref());
                Outcome::new(&scan.findings, [("text", json!(scan.text))], false)?
            }
            Prepared::Logscrub(scrubber) => {
                let out = scrubber.scrub_text(text);
                Outcome::new(&out.findings, [("text", json!(out.text))], false)?
            }
            Prepared::Command(validator) => {
                let v = validator.validate(text);
                let fields = [("allowed", json!(v.allowed)), ("reason", json!(v.reason))];
                Outcome::new(&v.findings, fields, !v.allowed)?
            }
            Prepared::Url { policy, resolve } => {
                let v = comis_net::check_url(text, policy, *resolve);
                let fields = [
                    ("allowed", json!(v.allowed)),
                    ("reason", json!(v.reason)),
                    ("addresses", json!(v.addresses)),
                ];
                Outcome::new(&v.findings, fields, !v.allowed)?
            }
            Prepared::Path(root) => {
                let v = comis_sandbox::check_path(root, text);
                let fields = [
                    ("allowed", json!(v.allowed)),
                    ("reason", json!(v.reason)),
                    ("path", json!(v.path)),
                ];
                Outcome::new(&v.findings, fields, !v.allowed)?
            }
            Prepared::Classify(classifier) => {
                let c = classifier.classify(text);
                let fields = [("class", json!(c.class)), ("known", json!(c.known))];
                Outcome::new(&c.findings, fields, false)?
            }
            Prepared::Invisible => {
                let scan = unicode::scan_invisible(text);
                Outcome::new(&scan.findings, [("text", json!(scan.text))], false)?
            }
            Prepared::Wrap {
                wrapper,
                source,
                sender,
                subject,
                warning,
            } => {
                let mut opts = WrapOptions::new(*source).include_warning(*warning);
                if let Some(s) = sender {
                    opts = opts.sender(s);
                }
                if let Some(s) = subject {
                    opts = opts.subject(s);
                }
                let wrapped = wrapper.wrap(text, &opts)?;
                Outcome::new(&wrapped.findings, [("text", json!(wrapped.text))], false)?
            }
            Prepared::Toolout {
                sanitizer,
                max_chars,
            } => {
                let out = sanitizer.sanitize(text, *max_chars);
                let fields = [
                    ("text", json!(out.text)),
                    ("truncated", json!(out.truncated)),
                ];
                Outcome::new(&out.findings, fields, out.truncated)?
            }
            Prepared::Memwrite(validator) => {
                let v = validator.validate(text);
                let fields = [("verdict", json!(v.verdict)), ("reasons", json!(v.reasons))];
                Outcome::new(&v.findings, fields, false)?
            }
            Prepared::Skill(scanner) => {
                let scan = scanner.scan(text);
                let blocked = scan.verdict == SkillVerdict::Block;
                let fields = [
                    ("verdict", json!(scan.verdict)),
                    ("details", json!(scan.details)),
                ];
                Outcome::new(&scan.findings, fields, blocked)?
            }
        })
    }
}

/// What one detector said about one item, ready to print.
struct Outcome {
    findings: Value,
    flagged: bool,
    fields: Vec<(&'static str, Value)>,
}

impl Outcome {
    /// `force_flag` marks items a detector rejects without a finding (e.g. a refused command).
    fn new<F: Serialize>(
        findings: &[F],
        fields: impl IntoIterator<Item = (&'static str, Value)>,
        force_flag: bool,
    ) -> Result<Self, CliError> {
        let findings = serde_json::to_value(findings)
            .map_err(|e| CliError::Usage(format!("serializing findings: {e}")))?;
        let flagged = force_flag || findings.as_array().is_some_and(|a| !a.is_empty());
        Ok(Outcome {
            findings,
            flagged,
            fields: fields.into_iter().collect(),
        })
    }

    fn into_line(self, index: usize) -> Line {
        Line {
            index,
            flagged: self.flagged,
            findings: self.findings,
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}

/// The line for an item that could not be read or processed.
#[derive(Serialize)]
struct ErrorLine {
    index: usize,
    error: String,
}

/// One output line; the common fields come first, then the detector's own.
#[derive(Serialize)]
struct Line {
    index: usize,
    flagged: bool,
    findings: Value,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

pub fn run(args: GuardArgs) -> Result<ExitCode, CliError> {
    let framing = if args.raw {
        Framing::Raw
    } else {
        Framing::Json
    };
    let prepared = Prepared::build(args.detector)?;
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    let mut items = Items::new(stdin, framing);
    let mut any_flagged = false;
    let mut index = 0usize;
    while let Some(item) = items.next_item().map_err(CliError::Stdin)? {
        let written = match item
            .map_err(CliError::Usage)
            .and_then(|t| prepared.apply(&t))
        {
            Ok(outcome) => {
                any_flagged |= outcome.flagged;
                serde_json::to_writer(&mut out, &outcome.into_line(index))
            }
            Err(e) => {
                any_flagged = true;
                serde_json::to_writer(
                    &mut out,
                    &ErrorLine {
                        index,
                        error: e.to_string(),
                    },
                )
            }
        };
        written.map_err(|e| CliError::Stdout(e.into()))?;
        out.write_all(b"\n").map_err(CliError::Stdout)?;
        index += 1;
    }
    out.flush().map_err(CliError::Stdout)?;
    Ok(match args.fail_on {
        Some(FailOn::Flagged) if any_flagged => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
