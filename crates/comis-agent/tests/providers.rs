//! The providers against local servers that speak each wire format exactly (comis-testkit):
//! streaming text, tool calls split across chunks, malformed and truncated streams, 429, 5xx,
//! timeouts and refused keys; the factory's key handling; the circuit breaker in front of a
//! real provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use comis_agent::breaker::{CallError, CircuitBreaker, CircuitState, ManualClock};
use comis_agent::config::{CircuitBreakerConfig, ProviderEntry};
use comis_agent::message::{
    ChatMessage, ChatRequest, ChatResponse, ContentBlock, Role, StopReason, StreamDelta, ToolSchema,
};
use comis_agent::provider::{Provider, ProviderError, ProviderHttp, build_provider};
use comis_agent::{AgentError, EventBus, EventKind};
use comis_net::{ClientConfig, GuardedClient, SsrfPolicy};
use comis_secrets::{
    ScopedSecretManager, SecretAccessEvent, SecretAllowlist, SecretManager, SecretString,
};
use comis_testkit::{Block, ProviderServer, Reply, Wire};
use serde_json::json;

const KEY: &str = "sk-test-0123456789abcdef";

fn secrets_with(values: &[(&str, &str)], allow: &[&str]) -> ScopedSecretManager {
    let base = SecretManager::from_values(
        values
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from((*v).to_owned()))),
    );
    ScopedSecretManager::new(
        Arc::new(base),
        "agent-1",
        SecretAllowlist::new(allow).unwrap(),
        Arc::new(|_: &SecretAccessEvent| {}),
    )
}

fn secrets() -> ScopedSecretManager {
    secrets_with(&[("TEST_KEY", KEY)], &["TEST_KEY"])
}

fn http() -> ProviderHttp {
    // The strict policy: the factory must open exactly the configured 127.0.0.1 host.
    let client = GuardedClient::new(SsrfPolicy::default(), ClientConfig::default()).unwrap();
    let mut h = ProviderHttp::new(client);
    h.retry_base = Duration::from_millis(1);
    h
}

fn kind(wire: Wire) -> &'static str {
    match wire {
        Wire::Anthropic => "anthropic",
        Wire::OpenAi => "openai",
        Wire::Ollama => "ollama",
    }
}

fn entry(server: &ProviderServer) -> ProviderEntry {
    ProviderEntry {
        kind: kind(server.wire()).to_owned(),
        base_url: server.base_url(),
        api_key_name: match server.wire() {
            Wire::Ollama => None,
            _ => Some("TEST_KEY".to_owned()),
        },
        timeout_ms: 10_000,
        max_retries: 2,
        ..ProviderEntry::default()
    }
}

fn provider(entry: &ProviderEntry) -> Arc<dyn Provider> {
    build_provider("test", entry, &secrets(), &http()).unwrap()
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "test-model".into(),
        system: "SYSTEM-PROMPT-MARKER be careful".into(),
        messages: vec![ChatMessage::user_text("hello")],
        tools: vec![ToolSchema {
            name: "file_write".into(),
            description: "Write a file".into(),
            parameters: json!({"type": "object", "properties": {"path": {"type": "string"},
                                "content": {"type": "string"}}}),
        }],
        max_tokens: 256,
    }
}

async fn complete(
    p: &dyn Provider,
    req: &ChatRequest,
) -> (Result<ChatResponse, ProviderError>, Vec<String>) {
    let deltas = Mutex::new(Vec::new());
    let sink = |d: StreamDelta| {
        let StreamDelta::Text(t) = d;
        deltas.lock().unwrap().push(t);
    };
    let r = p.complete(req, &sink).await;
    (r, deltas.into_inner().unwrap())
}

async fn server(wire: Wire) -> ProviderServer {
    let s = ProviderServer::start(wire).await.unwrap();
    if wire != Wire::Ollama {
        s.expect_api_key(KEY);
    }
    s
}

const WIRES: [Wire; 3] = [Wire::Anthropic, Wire::OpenAi, Wire::Ollama];

#[tokio::test]
async fn plain_text_streams_deltas_live() {
    for wire in WIRES {
        let s = server(wire).await;
        let text = "Hello, streamed wörld! This arrives in pieces.";
        s.push(Reply::text(text).chunk_chars(4).usage(12, 7));
        let p = provider(&entry(&s));
        let (r, deltas) = complete(p.as_ref(), &request()).await;
        let r = r.unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(r.message.role, Role::Assistant);
        assert_eq!(r.message.text(), text, "{wire:?}");
        assert_eq!(r.stop_reason, StopReason::EndTurn, "{wire:?}");
        assert_eq!(
            (r.usage.input_tokens, r.usage.output_tokens),
            (12, 7),
            "{wire:?}"
        );
        assert!(deltas.len() >= 10, "{wire:?}: {deltas:?}");
        assert_eq!(deltas.concat(), text);

        assert_eq!(s.request_count(), 1);
        let seen = &s.requests()[0];
        let body = seen.json();
        assert_eq!(body["model"], "test-model");
        assert_eq!(body["stream"], true);
        assert!(seen.text().contains("SYSTEM-PROMPT-MARKER"), "{wire:?}");
        assert!(
            seen.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
        match wire {
            Wire::Anthropic => {
                assert_eq!(seen.header("x-api-key"), Some(KEY));
                assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
                assert_eq!(body["system"], "SYSTEM-PROMPT-MARKER be careful");
                assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
            }
            Wire::OpenAi => {
                assert_eq!(
                    seen.header("authorization"),
                    Some(&*format!("Bearer {KEY}"))
                );
                assert_eq!(body["stream_options"]["include_usage"], true);
                assert_eq!(body["messages"][0]["role"], "system");
                assert_eq!(body["tools"][0]["type"], "function");
                assert_eq!(body["max_tokens"], 256);
            }
            Wire::Ollama => {
                assert_eq!(seen.header("authorization"), None);
                assert_eq!(body["options"]["num_predict"], 256);
            }
        }
    }
}

#[tokio::test]
async fn deltas_arrive_while_the_answer_is_still_streaming() {
    for wire in WIRES {
        let s = server(wire).await;
        // The first text delta goes out, then the server holds the rest until released.
        let before_first_delta = match wire {
            Wire::Anthropic => 3, // message_start, ping, content_block_start
            Wire::OpenAi => 1,    // the role chunk
            Wire::Ollama => 0,
        };
        s.push(
            Reply::text("first-second-third")
                .chunk_chars(6)
                .pause_after(before_first_delta + 1),
        );
        let p = provider(&entry(&s));
        let req = request();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = move |d: StreamDelta| {
            let _ = tx.send(d);
        };
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done2 = Arc::clone(&done);
        let call = async {
            let r = p.complete(&req, &sink).await;
            done2.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        };
        let watch = async {
            let first = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("a delta before the end of the stream")
                .unwrap();
            // The answer cannot be complete: the server has not sent its end yet.
            assert!(!done.load(std::sync::atomic::Ordering::SeqCst), "{wire:?}");
            s.release();
            first
        };
        let (r, first) = tokio::join!(call, watch);
        assert_eq!(first, StreamDelta::Text("first-".into()), "{wire:?}");
        assert_eq!(r.unwrap().message.text(), "first-second-third");
    }
}

#[tokio::test]
async fn a_tool_call_split_across_many_chunks_is_reassembled() {
    let input = json!({"path": "notes/ünïcode.txt", "content": "line one\nline \"two\"\t{}"});
    for wire in WIRES {
        let s = server(wire).await;
        s.push(
            Reply::blocks(vec![
                Block::Text("I will write it.".into()),
                Block::ToolCall {
                    id: "call_abc".into(),
                    name: "file_write".into(),
                    input: input.clone(),
                },
            ])
            .chunk_chars(3)
            .wire_chunk_bytes(5),
        );
        let p = provider(&entry(&s));
        let (r, deltas) = complete(p.as_ref(), &request()).await;
        let r = r.unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(r.stop_reason, StopReason::ToolUse, "{wire:?}");
        assert_eq!(deltas.concat(), "I will write it.");
        let calls: Vec<_> = r
            .message
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::ToolUse { id, name, input } => {
                    Some((id.clone(), name.clone(), input.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(calls.len(), 1, "{wire:?}");
        assert_eq!(calls[0].1, "file_write");
        assert_eq!(calls[0].2, input, "{wire:?}");
        if wire != Wire::Ollama {
            assert_eq!(calls[0].0, "call_abc");
        }
    }
}

#[tokio::test]
async fn a_tool_loop_conversation_is_accepted_by_each_api() {
    // The server validates what the real APIs check: every tool result answers a call of
    // the message before, every call is answered.
    for wire in WIRES {
        let s = server(wire).await;
        s.push(Reply::tool_call(
            "call_1",
            "file_write",
            json!({"path": "a", "content": "b"}),
        ));
        s.push(Reply::text("done"));
        let p = provider(&entry(&s));
        let mut req = request();
        let (first, _) = complete(p.as_ref(), &req).await;
        let first = first.unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        let id = match &first.message.content[0] {
            ContentBlock::ToolUse { id, .. } => id.clone(),
            other => panic!("{other:?}"),
        };
        req.messages.push(first.message.clone());
        req.messages.push(ChatMessage {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id,
                content: "wrote 1 byte".into(),
                is_error: false,
            }],
        });
        let (second, _) = complete(p.as_ref(), &req).await;
        assert_eq!(
            second
                .unwrap_or_else(|e| panic!("{wire:?}: {e}"))
                .message
                .text(),
            "done"
        );
        let body = s.requests()[1].json();
        match wire {
            Wire::Anthropic => {
                assert_eq!(body["messages"][2]["content"][0]["type"], "tool_result");
            }
            Wire::OpenAi => {
                assert_eq!(body["messages"][3]["role"], "tool");
                assert_eq!(body["messages"][3]["tool_call_id"], "call_1");
                assert!(body["messages"][2]["tool_calls"][0]["function"]["arguments"].is_string());
            }
            Wire::Ollama => {
                assert_eq!(body["messages"][3]["role"], "tool");
                assert_eq!(body["messages"][3]["tool_name"], "file_write");
                assert!(body["messages"][2]["tool_calls"][0]["function"]["arguments"].is_object());
            }
        }
    }
}

#[tokio::test]
async fn a_malformed_chunk_is_an_error_not_a_panic() {
    for wire in WIRES {
        let s = server(wire).await;
        s.push(Reply::text("some text").malformed());
        let p = provider(&entry(&s));
        let (r, _) = complete(p.as_ref(), &request()).await;
        assert!(
            matches!(r, Err(ProviderError::Malformed(_))),
            "{wire:?}: {r:?}"
        );
        assert_eq!(s.request_count(), 1, "a broken stream is not retried");
    }
}

#[tokio::test]
async fn a_truncated_stream_is_malformed() {
    for wire in WIRES {
        let s = server(wire).await;
        s.push(
            Reply::text("a fairly long answer that gets cut off")
                .chunk_chars(2)
                .truncated(),
        );
        let p = provider(&entry(&s));
        let (r, _) = complete(p.as_ref(), &request()).await;
        match r {
            Err(ProviderError::Malformed(m)) => assert!(m.contains("ended before"), "{m}"),
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(s.request_count(), 1);
    }
}

#[tokio::test]
async fn rate_limited_then_success_is_retried() {
    for wire in WIRES {
        let s = server(wire).await;
        s.push(Reply::status(429).retry_after("0"));
        s.push(Reply::text("after the wait"));
        let p = provider(&entry(&s));
        let (r, _) = complete(p.as_ref(), &request()).await;
        assert_eq!(r.unwrap().message.text(), "after the wait", "{wire:?}");
        assert_eq!(s.request_count(), 2);
    }
}

#[tokio::test]
async fn a_long_retry_after_is_not_waited_for() {
    let s = server(Wire::Anthropic).await;
    s.push(Reply::status(429).retry_after("3600"));
    let p = provider(&entry(&s));
    let (r, _) = complete(p.as_ref(), &request()).await;
    assert_eq!(
        r,
        Err(ProviderError::RateLimited {
            retry_after_ms: Some(3_600_000)
        })
    );
    assert_eq!(s.request_count(), 1);
}

#[tokio::test]
async fn server_errors_exhaust_the_retries() {
    for wire in WIRES {
        let s = server(wire).await;
        s.set_fallback(Reply::status(500).message("internal trouble"));
        let p = provider(&entry(&s));
        let (r, _) = complete(p.as_ref(), &request()).await;
        match r {
            Err(ProviderError::Server {
                status: 500,
                message,
            }) => {
                assert!(message.contains("internal trouble"), "{message}");
            }
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(s.request_count(), 3, "{wire:?}: 1 try + maxRetries 2");
    }
}

#[tokio::test]
async fn a_slow_provider_times_out() {
    for wire in WIRES {
        let s = server(wire).await;
        s.push(Reply::text("too late").delay(Duration::from_secs(5)));
        let mut e = entry(&s);
        e.timeout_ms = 200;
        let p = provider(&e);
        let (r, _) = complete(p.as_ref(), &request()).await;
        assert_eq!(r, Err(ProviderError::Timeout), "{wire:?}");
        assert_eq!(s.request_count(), 1, "a timeout is not retried");
    }
}

#[tokio::test]
async fn a_wrong_key_is_rejected_and_not_retried() {
    for wire in [Wire::Anthropic, Wire::OpenAi] {
        let s = ProviderServer::start(wire).await.unwrap();
        s.expect_api_key("sk-the-right-one");
        let p = provider(&entry(&s));
        let (r, _) = complete(p.as_ref(), &request()).await;
        match r {
            Err(ProviderError::Rejected {
                status: 401,
                message,
            }) => {
                assert!(!message.contains(KEY), "the key never appears in errors");
                assert!(
                    message.to_lowercase().contains("api key") || message.contains("x-api-key")
                );
            }
            other => panic!("{wire:?}: {other:?}"),
        }
        assert_eq!(s.request_count(), 1);
    }
}

#[tokio::test]
async fn a_request_the_api_refuses_is_rejected_with_its_message() {
    let s = server(Wire::Anthropic).await;
    let p = provider(&entry(&s));
    let mut req = request();
    // A tool result that answers nothing: the real API says 400, and so does the test server.
    req.messages.push(ChatMessage {
        role: Role::User,
        content: vec![ContentBlock::ToolResult {
            tool_use_id: "nope".into(),
            content: "x".into(),
            is_error: false,
        }],
    });
    let (r, _) = complete(p.as_ref(), &req).await;
    match r {
        Err(ProviderError::Rejected {
            status: 400,
            message,
        }) => {
            assert!(message.contains("tool_use_id"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.request_count(), 1);
    assert_eq!(s.pending(), 0);
}

#[tokio::test]
async fn oversized_stream_lines_are_refused() {
    let s = server(Wire::OpenAi).await;
    s.push(Reply::text("x".repeat(1_200_000)).chunk_chars(1_200_000));
    let p = provider(&entry(&s));
    let (r, _) = complete(p.as_ref(), &request()).await;
    assert!(matches!(r, Err(ProviderError::Malformed(_))), "{r:?}");
}

#[tokio::test]
async fn keyless_local_openai_compatible_server() {
    let s = ProviderServer::openai().await.unwrap();
    s.push(Reply::text("local"));
    let mut e = entry(&s);
    e.api_key_name = None;
    let p = build_provider("vllm", &e, &secrets_with(&[], &[]), &http()).unwrap();
    assert_eq!(p.id(), "vllm");
    let (r, _) = complete(p.as_ref(), &request()).await;
    assert_eq!(r.unwrap().message.text(), "local");
    assert_eq!(s.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn the_factory_refuses_missing_or_disallowed_keys_and_unknown_types() {
    let s = ProviderServer::anthropic().await.unwrap();
    let e = entry(&s);
    // Not set at all.
    let err = build_provider("a", &e, &secrets_with(&[], &["TEST_KEY"]), &http()).unwrap_err();
    assert!(
        matches!(&err, AgentError::Provider { reason, .. } if reason.contains("TEST_KEY")),
        "{err}"
    );
    // Set but not allowed for this agent.
    let err = build_provider(
        "a",
        &e,
        &secrets_with(&[("TEST_KEY", KEY)], &["OTHER"]),
        &http(),
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::Provider { .. }), "{err}");
    assert!(!err.to_string().contains(KEY));
    // Anthropic without apiKeyName falls back to ANTHROPIC_API_KEY, which is absent here.
    let mut no_name = e.clone();
    no_name.api_key_name = None;
    let err = build_provider("a", &no_name, &secrets(), &http()).unwrap_err();
    assert!(err.to_string().contains("ANTHROPIC_API_KEY"), "{err}");

    for (kind, needle) in [("gemini", "unknown provider type"), ("scripted", "runtime")] {
        let mut k = e.clone();
        k.kind = kind.into();
        let err = build_provider("a", &k, &secrets(), &http()).unwrap_err();
        match err {
            AgentError::Config { key, reason } => {
                assert_eq!(key, "providers.entries.a.type");
                assert!(reason.contains(needle), "{reason}");
            }
            other => panic!("{other}"),
        }
    }
    let mut bad = e;
    bad.base_url = "file:///etc".into();
    assert!(matches!(
        build_provider("a", &bad, &secrets(), &http()).unwrap_err(),
        AgentError::Config { .. }
    ));
    assert_eq!(s.request_count(), 0, "building never calls the provider");
}

#[tokio::test]
async fn the_breaker_opens_falls_back_without_a_request_and_closes_after_a_good_probe() {
    let s = server(Wire::Anthropic).await;
    let mut e = entry(&s);
    e.max_retries = 0;
    let p = provider(&e);
    let clock = Arc::new(ManualClock::new());
    let bus = EventBus::new();
    let mut rx = bus.subscribe();
    let config = CircuitBreakerConfig {
        failure_threshold: 3,
        ..CircuitBreakerConfig::default()
    };
    let breaker = CircuitBreaker::new("test", "test-model", config, bus, clock.clone());
    let req = request();
    let sink = |_: StreamDelta| {};
    let call = || breaker.call_provider(p.as_ref(), &req, &sink);

    for _ in 0..3 {
        s.push(Reply::status(503));
        assert!(matches!(
            call().await,
            Err(CallError::Failed(ProviderError::Server { status: 503, .. }))
        ));
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(s.request_count(), 3);

    // Open: the fallback answer, and the server sees nothing.
    for _ in 0..5 {
        match call().await {
            Err(CallError::Open(open)) => assert_eq!(open.model, "test-model"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.request_count(), 3, "no request while open");

    clock.advance(Duration::from_millis(60_000));
    s.push(Reply::text("recovered"));
    let r = call().await.unwrap();
    assert_eq!(r.message.text(), "recovered");
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(s.request_count(), 4);

    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        assert_eq!(ev.event.kind, EventKind::CircuitStateChanged);
        seen.push(format!(
            "{}->{}",
            ev.event.data["from"].as_str().unwrap(),
            ev.event.data["to"].as_str().unwrap()
        ));
    }
    assert_eq!(seen, ["closed->open", "open->halfOpen", "halfOpen->closed"]);
}

#[tokio::test]
async fn a_stream_that_stalls_midway_times_out() {
    for wire in WIRES {
        let s = server(wire).await;
        // Never released: the body stops after two chunks.
        s.push(
            Reply::text("stalls after this")
                .chunk_chars(3)
                .pause_after(2),
        );
        let mut e = entry(&s);
        e.timeout_ms = 300;
        let p = provider(&e);
        let (r, _) = complete(p.as_ref(), &request()).await;
        assert_eq!(r, Err(ProviderError::Timeout), "{wire:?}");
        assert_eq!(s.request_count(), 1);
    }
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_after_retries() {
    // A port that was just bound and released: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = ProviderEntry {
        kind: "ollama".into(),
        base_url: format!("http://127.0.0.1:{port}"),
        max_retries: 2,
        timeout_ms: 10_000,
        ..ProviderEntry::default()
    };
    let p = provider(&e);
    let (r, _) = complete(p.as_ref(), &request()).await;
    assert!(matches!(r, Err(ProviderError::Transport(_))), "{r:?}");
}

#[tokio::test]
async fn a_public_looking_name_is_not_opened_by_a_local_base_url() {
    // The exception is for the configured host only: the same provider client still refuses
    // the metadata address (what a model might try to reach through a redirect).
    let s = ProviderServer::ollama().await.unwrap();
    let client = GuardedClient::new(SsrfPolicy::default(), ClientConfig::default()).unwrap();
    let opened = client.for_configured_url(&s.base_url()).unwrap();
    let err = opened
        .get("http://169.254.169.254/latest/meta-data/")
        .await
        .unwrap_err();
    assert!(err.refusal().is_some(), "{err}");
}
