//! `comis memory add|search|list|rm|stats`: the operator's view of agent memory.
//!
//! Defends: the operator's terminal against stored content. Memories hold text that came from
//! chats, tools and the web; in text output every control and bidi-override character is
//! shown escaped (`\u{1b}`), so a memory cannot move the cursor, recolour the screen or fake
//! a line. `--json` prints one JSON object per line (JSON strings escape control characters),
//! each with its `trust`.
//!
//! Works with or without a running daemon: the database is in WAL mode, so this process and
//! the daemon can both open `$COMIS_HOME/comis.db`. The security decisions made here (a
//! blocked or downgraded write, a refused overwrite or removal) are audit events like the
//! daemon's. Exit status: 0 on success, 2 on any error or refusal (one line on stderr).

use std::io::{self, Read};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comis_store::memory::{ListFilter, MAX_CONTENT_BYTES, Selector};
use comis_store::{
    AgentId, MemoryId, MemoryKey, NewMemory, SearchQuery, SourceKind, Store, Tag, Trust,
    WriteVerdict, time,
};
use serde_json::json;

use super::{CliError, out};
use crate::config::home;

/// The agent used when `--agent` is not given.
pub const DEFAULT_AGENT: &str = "default";
/// Who the audit log names for actions taken from this command line.
const OPERATOR: &str = "operator:cli";

#[derive(Debug, Args)]
pub struct MemoryArgs {
    #[command(subcommand)]
    command: MemoryCommand,
}

#[derive(Debug, Subcommand)]
enum MemoryCommand {
    /// Store a memory (run through the memory write validator first). The content is the
    /// argument, or standard input when it is absent or `-`.
    Add {
        #[arg(allow_hyphen_values = true)]
        content: Option<String>,
        #[arg(long, default_value = DEFAULT_AGENT)]
        agent: String,
        /// system, learned or external.
        #[arg(long, default_value = "learned")]
        trust: String,
        /// Name the fact: a later write with the same key replaces it, unless it has less
        /// trust.
        #[arg(long)]
        key: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Full-text recall, as the agent would get it (external memories only with
    /// --include-external).
    Search {
        #[arg(allow_hyphen_values = true)]
        query: String,
        #[arg(long, default_value = DEFAULT_AGENT)]
        agent: String,
        #[arg(long)]
        include_external: bool,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// List memories, newest first.
    List {
        /// Only this agent's (default: every agent).
        #[arg(long)]
        agent: Option<String>,
        /// Only this trust level.
        #[arg(long)]
        trust: Option<String>,
        #[arg(long)]
        include_external: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Remove a memory by id, or by --key (with --agent).
    #[command(alias = "delete")]
    Rm {
        id: Option<i64>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// The trust to act with (the operator has system); a memory more trusted than this
        /// is not removed.
        #[arg(long, default_value = "system")]
        trust: String,
        #[arg(long)]
        json: bool,
    },
    /// Counts per agent and trust level.
    Stats {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: MemoryArgs) -> Result<ExitCode, CliError> {
    let store = open_store()?;
    match args.command {
        MemoryCommand::Add {
            content,
            agent,
            trust,
            key,
            tags,
            json,
        } => add(&store, content, &agent, &trust, key, &tags, json),
        MemoryCommand::Search {
            query,
            agent,
            include_external,
            limit,
            json,
        } => {
            let agent = AgentId::new(&agent)?;
            let hits = store.search_memories(&SearchQuery {
                agent: &agent,
                text: &query,
                embedding: None,
                limit,
                include_external,
            })?;
            let mut text = String::new();
            for h in &hits {
                if json {
                    text.push_str(&format!("{}\n", h.to_json()));
                } else {
                    text.push_str(&format!("{}  score {:.2}\n", line(&h.memory), h.score));
                }
            }
            if hits.is_empty() && !json {
                eprintln!("comis: no memories of {agent} match");
            }
            out(&text)
        }
        MemoryCommand::List {
            agent,
            trust,
            include_external,
            limit,
            json,
        } => {
            let filter = ListFilter {
                agent: agent.as_deref().map(AgentId::new).transpose()?,
                trust: trust.as_deref().map(str::parse).transpose()?,
                include_external,
                before: None,
                limit: limit.max(1),
            };
            let mut text = String::new();
            for m in store.list_memories(&filter)? {
                if json {
                    text.push_str(&format!("{}\n", m.to_json()));
                } else {
                    text.push_str(&format!("{}\n", line(&m)));
                }
            }
            out(&text)
        }
        MemoryCommand::Rm {
            id,
            key,
            agent,
            trust,
            json,
        } => {
            let selector = match (id, key) {
                (Some(id), None) => Selector::Id(MemoryId(id)),
                (None, Some(k)) => Selector::Key(MemoryKey::new(&k)?),
                _ => {
                    return Err(CliError::Usage(
                        "give a memory id, or --key with --agent (not both)".into(),
                    ));
                }
            };
            let agent = match (&selector, agent) {
                (_, Some(a)) => Some(AgentId::new(&a)?),
                (Selector::Key(_), None) => Some(AgentId::new(DEFAULT_AGENT)?),
                (Selector::Id(_), None) => None,
            };
            let actor: Trust = trust.parse()?;
            let m = store.remove_memory(agent.as_ref(), &selector, actor, OPERATOR)?;
            if json {
                out(&format!("{}\n", json!({"removed": m.to_json()})))
            } else {
                out(&format!(
                    "removed memory {} ({}) of agent {}\n",
                    m.id, m.trust, m.agent
                ))
            }
        }
        MemoryCommand::Stats { agent, json } => {
            let agent = agent.as_deref().map(AgentId::new).transpose()?;
            let st = store.memory_stats(agent.as_ref())?;
            if json {
                return out(&format!(
                    "{}\n",
                    serde_json::to_value(&st).unwrap_or_default()
                ));
            }
            let mut text = String::new();
            for g in &st.groups {
                text.push_str(&format!(
                    "{:<20} {:<9} {:>9} memories  {:>9} embedded\n",
                    g.agent,
                    g.trust.as_str(),
                    g.memories,
                    g.embedded
                ));
            }
            text.push_str(&format!(
                "total {} memories; database {} bytes ({})\n",
                st.total,
                st.database_bytes,
                store.path().display()
            ));
            out(&text)
        }
    }
}

fn add(
    store: &Store,
    content: Option<String>,
    agent: &str,
    trust: &str,
    key: Option<String>,
    tags: &[String],
    json: bool,
) -> Result<ExitCode, CliError> {
    let content = match content.as_deref() {
        None | Some("-") => read_stdin(MAX_CONTENT_BYTES)?,
        Some(c) => c.to_owned(),
    };
    let agent = AgentId::new(agent)?;
    let mut m = NewMemory::new(agent.clone(), content, trust.parse()?, SourceKind::Operator);
    m.provenance.channel = Some("cli".into());
    m.provenance.sender = Some(OPERATOR.into());
    if let Some(k) = key {
        m.key = Some(MemoryKey::new(&k)?);
    }
    for t in tags {
        m.tags.push(Tag::new(t)?);
    }
    let w = store.write_memory(&m)?;
    if w.verdict == WriteVerdict::Downgraded {
        eprintln!(
            "comis: the content looks like an instruction ({}); it was downgraded to external \
             trust and is left out of recall unless --include-external is given",
            w.reasons.join(", ")
        );
    }
    if json {
        return out(&format!(
            "{}\n",
            json!({
                "id": w.id.0, "agent": agent.as_str(), "trust": w.trust, "verdict": w.verdict,
                "reasons": w.reasons, "replaced": w.replaced,
            })
        ));
    }
    let mut text = format!(
        "stored memory {} for agent {agent} at {} trust",
        w.id, w.trust
    );
    if let Some(prev) = w.replaced {
        text.push_str(&format!(" (replaced the {prev} memory with this key)"));
    }
    text.push('\n');
    out(&text)
}

/// Opens `$COMIS_HOME/comis.db` (creating the directory 0700 and the file 0600).
pub(super) fn open_store() -> Result<Store, CliError> {
    let home = home::ensure()?;
    Ok(Store::open_in(&home)?)
}

/// Reads at most `max` bytes of UTF-8 from standard input.
fn read_stdin(max: usize) -> Result<String, CliError> {
    let mut buf = Vec::new();
    io::stdin()
        .lock()
        .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(CliError::Stdin)?;
    if buf.len() > max {
        return Err(CliError::Usage(format!(
            "the content on standard input exceeds {max} bytes"
        )));
    }
    let mut s = String::from_utf8(buf)
        .map_err(|_| CliError::Usage("standard input is not valid UTF-8".into()))?;
    // A trailing newline from `echo` is not part of the memory.
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Ok(s)
}

/// One memory as a text line: `#id [trust] agent key: content (date via channel)`.
fn line(m: &comis_store::Memory) -> String {
    let key = m
        .key
        .as_deref()
        .map(|k| format!(" {k}:"))
        .unwrap_or_default();
    let via = m
        .channel
        .as_deref()
        .map(|c| format!(" via {}", printable(c)))
        .unwrap_or_default();
    let date = time::format_ms(m.created_at);
    format!(
        "#{} [{}] {}{key} {} ({}{via})",
        m.id,
        m.trust,
        m.agent,
        printable(&m.content),
        date.get(..10).unwrap_or(&date),
    )
}

/// `s` with control characters (including newlines) and every invisible character of the
/// guard's table (bidi controls, zero-width, tag characters, …) escaped, so stored text can
/// neither drive the terminal nor hide or reorder what the operator reads.
pub(super) fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || comis_guard::unicode::invisible_category(c).is_some() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::printable;

    #[test]
    fn terminal_controls_are_escaped() {
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\ny"), "x\\u{a}y");
        assert_eq!(printable("abc\u{202e}cba"), "abc\\u{202e}cba");
        assert_eq!(printable("café 東京"), "café 東京");
        // Hidden text: a zero-width space and a tag character are shown, not swallowed.
        assert_eq!(printable("a\u{200b}b"), "a\\u{200b}b");
        assert_eq!(printable("hi\u{e0069}"), "hi\\u{e0069}");
    }
}
