//! `memory.search`, `memory.store`, `memory.clear`: the agent's long-term memory.
//!
//! Guarantees: every write goes through `Store::write_memory`, whose memory write validator
//! blocks or downgrades instruction-like content; the tool reports the decision on `ctx.events`
//! (`memory:write_blocked` / `memory:write_downgraded`, with the agent and trace ids, never the
//! content) and a block is `Refused { layer: "memory_validator" }`. A memory written by the
//! model is at most `learned` (source `conversation`). Every call acts on the calling agent's
//! own memories only: the agent id comes from the context, never from the arguments. Search
//! leaves `external` memories out unless asked and marks its result external unless every hit
//! is `system`. `memory.clear` removes the agent's `learned` and `external` memories; `system`
//! memories stay (the agent's trust is `learned`, and the store refuses a lower-trust delete).
//!
//! Does not: decide that a stored fact is true or benign (the validator is a heuristic).

use comis_store::memory::{ListFilter, Selector};
use comis_store::{
    AgentId, MemoryKey, NewMemory, SearchQuery, SourceKind, StoreError, Tag, Trust, WriteVerdict,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::{self, MAX_RESULT_CHARS, blocking, invalid};
use super::{Tool, ToolContext, ToolError, ToolOutput};
use crate::event::{Event, EventKind, Outcome};
use crate::provider::BoxFuture;

/// Largest memory content, in bytes (the store's limit).
pub const MAX_CONTENT_BYTES: usize = comis_store::memory::MAX_CONTENT_BYTES;
/// Longest search query, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Most results one search returns.
pub const MAX_SEARCH_RESULTS: usize = 50;
/// Most memories one `memory.clear` removes.
pub const MAX_CLEAR: usize = 10_000;

fn agent_id(ctx: &ToolContext) -> Result<AgentId, ToolError> {
    AgentId::new(&ctx.agent_id).map_err(|e| ToolError::Failed(format!("agent id: {e}")))
}

fn store_err(e: StoreError) -> ToolError {
    match e {
        StoreError::Invalid { .. } => invalid(&e.to_string()),
        StoreError::WriteBlocked { .. } => ToolError::Refused {
            layer: "memory_validator",
            reason: e.to_string(),
        },
        StoreError::TrustViolation { .. } => ToolError::Refused {
            layer: "memory_trust",
            reason: e.to_string(),
        },
        other => ToolError::Failed(other.to_string()),
    }
}

/// Labels the store accepts for provenance (it refuses control characters and long labels).
fn label(s: &str) -> Option<String> {
    comis_store::types::check_label("label", s)
        .ok()
        .filter(|_| !s.is_empty())
        .map(|_| s.to_owned())
}

// ---------------------------------------------------------------------------------------------

/// `memory.search`.
#[derive(Debug, Default)]
pub struct MemorySearch;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SearchArgs {
    query: String,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    include_external: bool,
}

impl Tool for MemorySearch {
    fn action(&self) -> &'static str {
        "memory.search"
    }
    fn description(&self) -> &'static str {
        "Search your long-term memory by words. Each result carries its trust: system, \
         learned or external (external memories are left out unless includeExternal is true)."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_RESULTS},
                "includeExternal": {"type": "boolean", "default": false}
            }),
            &["query"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: SearchArgs = args::parse(args)?;
            args::cap("query", &a.query, MAX_QUERY_BYTES, false)?;
            let limit = a.limit.unwrap_or(10);
            if limit == 0 || limit > MAX_SEARCH_RESULTS {
                return Err(invalid(&format!(
                    "`limit` must be between 1 and {MAX_SEARCH_RESULTS}"
                )));
            }
            let agent = agent_id(ctx)?;
            let store = ctx.store.clone();
            let hits = blocking(move || {
                store
                    .search_memories(&SearchQuery {
                        agent: &agent,
                        text: &a.query,
                        embedding: None,
                        limit,
                        include_external: a.include_external,
                    })
                    .map_err(store_err)
            })
            .await?;
            let external = hits.iter().any(|h| h.memory.trust != Trust::System);
            let items: Vec<Value> = hits
                .iter()
                .map(|h| {
                    json!({
                        "id": h.memory.id.0,
                        "trust": h.memory.trust.as_str(),
                        "key": h.memory.key,
                        "tags": h.memory.tags,
                        "content": h.memory.content,
                    })
                })
                .collect();
            let text = serde_json::to_string(&json!({ "results": items }))
                .map_err(|e| ToolError::Failed(e.to_string()))?;
            Ok(ToolOutput {
                text: args::truncate(&text, MAX_RESULT_CHARS).0,
                external,
            })
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `memory.store`.
#[derive(Debug, Default)]
pub struct MemoryStore;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StoreArgs {
    content: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

impl Tool for MemoryStore {
    fn action(&self) -> &'static str {
        "memory.store"
    }
    fn description(&self) -> &'static str {
        "Remember a fact in your long-term memory (optionally under a key, replacing the \
         previous fact with that key). Instruction-like content is refused or kept at external \
         trust."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "content": {"type": "string", "maxLength": MAX_CONTENT_BYTES},
                "key": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,128}$"},
                "tags": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}, "maxItems": comis_store::memory::MAX_TAGS}
            }),
            &["content"],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: StoreArgs = args::parse(args)?;
            args::cap("content", &a.content, MAX_CONTENT_BYTES, false)?;
            if a.tags.len() > comis_store::memory::MAX_TAGS {
                return Err(invalid(&format!(
                    "more than {} tags",
                    comis_store::memory::MAX_TAGS
                )));
            }
            let agent = agent_id(ctx)?;
            let mut m = NewMemory::new(agent, a.content, Trust::Learned, SourceKind::Conversation);
            if let Some(k) = &a.key {
                m = m.key(MemoryKey::new(k).map_err(|e| invalid(&e.to_string()))?);
            }
            for t in &a.tags {
                m = m.tag(Tag::new(t).map_err(|e| invalid(&e.to_string()))?);
            }
            m.provenance.session = label(&ctx.session);
            m.provenance.trace_id = label(&ctx.trace_id);
            let store = ctx.store.clone();
            let result = blocking(move || Ok(store.write_memory(&m))).await?;
            let event = |kind, outcome| {
                Event::new(kind, outcome)
                    .agent(&ctx.agent_id)
                    .trace(&ctx.trace_id)
                    .with("tool", "memory.store")
            };
            match result {
                Ok(o) if o.verdict == WriteVerdict::Downgraded => {
                    ctx.events.emit(
                        event(EventKind::MemoryWriteDowngraded, Outcome::Modified)
                            .with("memoryId", o.id.0)
                            .with("reasons", o.reasons.clone()),
                    );
                    Ok(ToolOutput::internal(format!(
                        "stored memory {} at external trust: the content looked like \
                         instructions ({})",
                        o.id,
                        o.reasons.join(", ")
                    )))
                }
                Ok(o) => Ok(ToolOutput::internal(format!(
                    "stored memory {} ({} trust)",
                    o.id, o.trust
                ))),
                Err(StoreError::WriteBlocked { reasons }) => {
                    ctx.events.emit(
                        event(EventKind::MemoryWriteBlocked, Outcome::Denied)
                            .with("reasons", reasons.clone()),
                    );
                    Err(store_err(StoreError::WriteBlocked { reasons }))
                }
                Err(e) => Err(store_err(e)),
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------

/// `memory.clear`.
#[derive(Debug, Default)]
pub struct MemoryClear;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClearArgs {
    /// Only the memory with this key; without it, every memory the agent may remove.
    #[serde(default)]
    key: Option<String>,
}

fn clear_all(
    store: &comis_store::Store,
    agent: &AgentId,
    actor: &str,
) -> Result<(usize, usize), ToolError> {
    let mut removed = 0;
    let mut kept = 0;
    let mut before = None;
    while removed < MAX_CLEAR {
        let page = store
            .list_memories(&ListFilter {
                agent: Some(agent.clone()),
                trust: None,
                include_external: true,
                before,
                limit: 500,
            })
            .map_err(store_err)?;
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        for m in page {
            if m.trust > Trust::Learned {
                kept += 1;
                continue;
            }
            store
                .remove_memory(Some(agent), &Selector::Id(m.id), Trust::Learned, actor)
                .map_err(store_err)?;
            removed += 1;
            if removed >= MAX_CLEAR {
                break;
            }
        }
    }
    Ok((removed, kept))
}

impl Tool for MemoryClear {
    fn action(&self) -> &'static str {
        "memory.clear"
    }
    fn description(&self) -> &'static str {
        "Forget your learned and external memories (or only the one with `key`). System \
         memories stay. Needs an operator's approval."
    }
    fn parameters(&self) -> Value {
        args::object_schema(
            json!({
                "key": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,128}$"}
            }),
            &[],
        )
    }
    fn call<'a>(
        &'a self,
        ctx: &'a ToolContext,
        args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let a: ClearArgs = args::parse(args)?;
            let agent = agent_id(ctx)?;
            let actor = format!("agent:{}", agent.as_str());
            let store = ctx.store.clone();
            let text = match a.key {
                Some(k) => {
                    let key = MemoryKey::new(&k).map_err(|e| invalid(&e.to_string()))?;
                    blocking(move || {
                        store
                            .remove_memory(
                                Some(&agent),
                                &Selector::Key(key),
                                Trust::Learned,
                                &actor,
                            )
                            .map_err(store_err)
                    })
                    .await?;
                    format!("forgot memory key {k}")
                }
                None => {
                    let (removed, kept) =
                        blocking(move || clear_all(&store, &agent, &actor)).await?;
                    format!("forgot {removed} memories; {kept} system memories kept")
                }
            };
            Ok(ToolOutput::internal(text))
        })
    }
}
