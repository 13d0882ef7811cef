//! `comis audit tail|search|verify`: reading and checking the hash-chained audit log.
//!
//! Defends: the operator's terminal (event text is shown with control characters escaped, as
//! in `comis memory`) and the operator's trust in the log (`verify` walks the whole chain and
//! the anchor and says exactly which event is wrong).
//!
//! Works with or without a running daemon (WAL). Exit status: 0 on success; `verify` exits 1
//! when it finds a problem; 2 on any error. `--json` prints one JSON object per line.

use std::io::ErrorKind;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use comis_store::{AgentId, AuditEvent, AuditFilter, Outcome, time};
use serde_json::json;

use super::CliError;
use super::memory::{open_store, printable};
use super::out;

/// How often `tail -f` looks for new events.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// The newest events, oldest first; with -f, keep printing new ones.
    Tail {
        /// How many events.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Follow: wait for new events (Ctrl-C to stop).
        #[arg(short = 'f', long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Events by type, agent, outcome and age.
    Search {
        /// memory:write_blocked, memory:* or memory.
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// success, downgraded, denied or failure.
        #[arg(long)]
        outcome: Option<String>,
        /// Only events newer than this (30s, 15m, 1h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Check the hash chain and the anchor: exit 1 if any event was edited, inserted or
    /// deleted.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AuditArgs) -> Result<ExitCode, CliError> {
    let store = open_store()?;
    match args.command {
        AuditCommand::Tail {
            lines,
            follow,
            json,
        } => {
            let events = store.audit_tail(lines.max(1))?;
            let mut last = events.last().map_or(0, |e| e.seq);
            if lines > 0 {
                if let Some(code) = print_events(&events, json)? {
                    return Ok(code);
                }
            }
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                std::thread::sleep(FOLLOW_INTERVAL);
                let new = store.audit_after(last, 1000)?;
                if let Some(e) = new.last() {
                    last = e.seq;
                }
                if let Some(code) = print_events(&new, json)? {
                    return Ok(code);
                }
            }
        }
        AuditCommand::Search {
            kind,
            agent,
            outcome,
            since,
            limit,
            json,
        } => {
            let since_ms = match since {
                Some(s) => Some(time::now_ms().saturating_sub(time::parse_duration(&s)?)),
                None => None,
            };
            let filter = AuditFilter {
                kind,
                agent: agent.as_deref().map(AgentId::new).transpose()?,
                outcome: outcome.as_deref().map(str::parse::<Outcome>).transpose()?,
                since_ms,
                after_seq: None,
                limit: limit.max(1),
            };
            let events = store.audit_search(&filter)?;
            Ok(print_events(&events, json)?.unwrap_or(ExitCode::SUCCESS))
        }
        AuditCommand::Verify { json } => {
            let r = store.verify_audit()?;
            if json {
                out(&format!(
                    "{}\n",
                    json!({
                        "ok": r.ok(), "events": r.events, "head_seq": r.head_seq,
                        "head_hash": r.head_hash, "anchor_seq": r.anchor_seq,
                        "problem_count": r.problem_count, "problems": r.problems,
                    })
                ))?;
            } else if r.ok() {
                out(&format!(
                    "audit log intact: {} events; head #{} {}\n",
                    r.events,
                    r.head_seq.unwrap_or(0),
                    r.head_hash.as_deref().unwrap_or("(empty)")
                ))?;
            } else {
                let mut text = format!(
                    "audit log TAMPERED: {} problem(s) in {} events\n",
                    r.problem_count, r.events
                );
                for p in &r.problems {
                    text.push_str(&format!("  - {p}\n"));
                }
                out(&text)?;
            }
            Ok(if r.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Prints events; `Some(success)` when standard output was closed (a pager or `head` quit),
/// which ends `tail -f` quietly.
fn print_events(events: &[AuditEvent], json: bool) -> Result<Option<ExitCode>, CliError> {
    if events.is_empty() {
        return Ok(None);
    }
    let mut text = String::new();
    for e in events {
        if json {
            text.push_str(&format!("{}\n", e.to_json()));
        } else {
            text.push_str(&format!(
                "{} #{} {} agent={} {} {}\n",
                time::format_ms(e.ts),
                e.seq,
                e.kind,
                printable(e.agent.as_deref().unwrap_or("-")),
                e.outcome,
                printable(&e.metadata)
            ));
        }
    }
    match out(&text) {
        Ok(_) => Ok(None),
        Err(CliError::Stdout(e)) if e.kind() == ErrorKind::BrokenPipe => {
            Ok(Some(ExitCode::SUCCESS))
        }
        Err(e) => Err(e),
    }
}
