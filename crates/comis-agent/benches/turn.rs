//! Overhead of every checkpoint for one turn with one tool call and a 2 KB message, excluding
//! provider latency: the scripted provider answers instantly, the tool is trivial, and what is
//! measured is the runtime around them — input validation, invisible strip, input guard, memory
//! recall, system prompt, budget and context guards and the circuit breaker (twice), the act
//! checkpoint (policy, classifier, argument check, sanitizer), the output guard, the audit event
//! and four transcript writes to a real SQLite store. Target: ≤ 1 ms at the median.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use comis_agent::EventBus;
use comis_agent::config::AgentConfig;
use comis_agent::event::AuditSink;
use comis_agent::provider::BoxFuture;
use comis_agent::provider::scripted::{Script, ScriptStep, ScriptedProvider};
use comis_agent::runtime::{Origin, Runtime, TurnRequest};
use comis_agent::tool::{Tool, ToolContext, ToolError, ToolOutput};
use comis_store::Store;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

#[derive(Debug)]
struct Trivial;

impl Tool for Trivial {
    fn action(&self) -> &'static str {
        "file.read"
    }
    fn description(&self) -> &'static str {
        "Reads a file."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    fn call<'a>(
        &'a self,
        _ctx: &'a ToolContext,
        _args: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async {
            Ok(ToolOutput {
                text: "The file says the meeting moved to Thursday at 10.".into(),
                external: true,
            })
        })
    }
}

fn message_2kb() -> String {
    let sentence = "Could you look at the project notes and tell me when the next planning \
                    meeting is, and whether the budget review moved as well? ";
    let mut s = String::new();
    while s.len() < 2_048 {
        s.push_str(sentence);
    }
    s.truncate(2_048);
    s
}

fn bench(c: &mut Criterion) {
    turn(c, "turn_one_tool_call_2kb", true);
    // The same without the audit sink: the runtime's own overhead, apart from the store's
    // per-event audit transaction and chain-head anchor file.
    turn(c, "turn_one_tool_call_2kb_no_audit_sink", false);
}

fn turn(c: &mut Criterion, name: &str, audit: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in(dir.path()).unwrap());
    let mut bus = EventBus::new();
    if audit {
        bus.add_sink(Arc::new(AuditSink::new(Arc::clone(&store))));
    }
    let provider = Arc::new(ScriptedProvider::new(
        "scripted",
        Script {
            steps: vec![
                ScriptStep::call("file_read", json!({"path": "notes.txt"})),
                ScriptStep::text("The planning meeting is on Thursday at 10."),
            ],
            repeat: true,
        },
    ));
    let runtime = Runtime::builder(Arc::clone(&store), bus, dir.path())
        .agent(
            "bench",
            AgentConfig {
                provider: "scripted".into(),
                model: "script".into(),
                // Thousands of turns a second would exhaust the real hourly cap mid-bench.
                budgets: comis_agent::config::BudgetConfig {
                    per_execution: u64::MAX,
                    per_hour: u64::MAX,
                    per_day: u64::MAX,
                },
                ..AgentConfig::default()
            },
        )
        .provider("scripted", provider)
        .tool(Arc::new(Trivial))
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let text = message_2kb();
    let mut n = 0u64;
    c.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            let req = TurnRequest {
                agent_id: "bench".into(),
                // A fresh session per turn keeps the history window from growing.
                session: format!("s{n}"),
                text: text.clone(),
                origin: Origin {
                    channel: "gateway".into(),
                    sender: "bench".into(),
                },
                trace_id: None,
            };
            let reply = rt.block_on(runtime.execute(req, None)).unwrap();
            assert!(reply.stopped.is_none());
        });
    });
}

/// The parts, to see where a turn's time goes.
fn parts(c: &mut Criterion) {
    let text = message_2kb();
    let guard = comis_guard::input::InputGuard::new(Default::default()).unwrap();
    c.bench_function("part_validate_and_input_guard_2kb", |b| {
        b.iter(|| {
            let v = comis_guard::input::validate_input(&text);
            let s = guard.scan(&text);
            (v.valid, s.score)
        });
    });
    let out = comis_guard::output::OutputGuard::new().unwrap();
    let key = comis_guard::canary::CanaryKey::from_bytes(&[7u8; 32]).unwrap();
    let canary = key.token_for("a:b:c");
    c.bench_function("part_output_guard_2kb", |b| {
        b.iter(|| out.scan(&text, Some(&canary)).redactions);
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_in(dir.path()).unwrap();
    let agent = comis_store::AgentId::new("bench").unwrap();
    c.bench_function("part_transcript_append_2kb", |b| {
        b.iter(|| {
            store
                .append_message(&comis_store::NewMessage {
                    agent: agent.clone(),
                    channel: "gateway".into(),
                    thread: "s".into(),
                    role: comis_store::Role::User,
                    sender: None,
                    content: text.clone(),
                    trace_id: None,
                })
                .unwrap()
                .seq
        });
    });
    c.bench_function("part_audit_event", |b| {
        b.iter(|| {
            store
                .audit(comis_store::NewAuditEvent::new(
                    comis_store::EventType::new("tool:executed").unwrap(),
                    comis_store::Outcome::Success,
                ))
                .unwrap()
                .seq
        });
    });
    // What the circuit breaker adds to each provider call: the per-agent map lookup, the
    // admission check and the recorded success (twice per turn with one tool call).
    let breakers = comis_agent::breaker::CircuitBreakers::new(
        comis_agent::config::CircuitBreakerConfig::default(),
        EventBus::new(),
        Arc::new(comis_agent::breaker::SystemClock),
    )
    .for_agent("bench");
    c.bench_function("part_circuit_breaker_call", |b| {
        b.iter(|| {
            let breaker = breakers.get("scripted", "script");
            breaker.allow().unwrap();
            breaker.record_success(std::time::Duration::from_micros(1));
        });
    });
    c.bench_function("part_memory_recall_2kb", |b| {
        b.iter(|| {
            store
                .search_memories(&comis_store::SearchQuery {
                    agent: &agent,
                    text: &text[..200],
                    embedding: None,
                    limit: 5,
                    include_external: false,
                })
                .unwrap()
                .len()
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = bench, parts
}
criterion_main!(benches);
