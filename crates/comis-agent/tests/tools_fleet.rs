//! The tools that reach daemon services, and the registry: every tool is in the classifier
//! with its class, every wire name is provider-safe, every schema forbids unknown fields.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tool_support;

use std::collections::HashSet;

use comis_agent::tool::{ToolError, builtin_tools, wire_name};
use comis_guard::classify::{ActionClass, Classifier};
use serde_json::json;
use tool_support::*;

#[tokio::test]
async fn message_send_and_channels_list_reach_the_port() {
    let f = Fixture::new();
    let o = f.call("channels.list", json!({})).await.unwrap();
    assert_eq!(o.text, r#"{"channels":["irc","email"]}"#);
    assert!(
        f.call("channels.list", serde_json::Value::Null)
            .await
            .is_ok()
    );
    f.call(
        "message.send",
        json!({"channel": "irc", "chat": "#ops", "text": "build is green"}),
    )
    .await
    .unwrap();
    assert_eq!(f.services.calls(), vec!["send irc #ops build is green"]);
    let r = f
        .call(
            "message.send",
            json!({"channel": "telegram", "chat": "1", "text": "x"}),
        )
        .await;
    assert!(
        matches!(r, Err(ToolError::Failed(ref m)) if m.contains("no channel")),
        "{r:?}"
    );
}

#[tokio::test]
async fn spawn_goes_one_level_deeper_and_stops_at_three() {
    let mut f = Fixture::new();
    let o = f
        .call("agents.spawn", json!({"task": "summarize the notes"}))
        .await
        .unwrap();
    assert_eq!(
        o.text,
        "sub-agent of alpha at depth 1 did: summarize the notes"
    );
    assert!(o.external, "a sub-agent's answer may carry what it read");
    f.ctx.depth = 2;
    f.call("agents.spawn", json!({"task": "t"})).await.unwrap();
    for depth in [3, 4, u32::MAX] {
        f.ctx.depth = depth;
        let r = f.call("agents.spawn", json!({"task": "t"})).await;
        assert_refused(&r, "spawn_depth");
    }
    assert_eq!(
        f.services.calls(),
        vec!["spawn alpha 1 summarize the notes", "spawn alpha 3 t"]
    );
}

#[tokio::test]
async fn revoke_and_delete_reach_the_port_with_clean_ids() {
    let f = Fixture::new();
    f.call("tokens.revoke", json!({"id": "tok_42"}))
        .await
        .unwrap();
    f.call("agents.delete", json!({"id": "beta"}))
        .await
        .unwrap();
    let r = f.call("agents.delete", json!({"id": "alpha"})).await;
    assert_invalid(&r);
    assert_eq!(f.services.calls(), vec!["revoke tok_42", "delete beta"]);
}

#[tokio::test]
async fn hostile_arguments_are_refused() {
    let f = Fixture::new();
    for (action, args) in [
        ("message.send", json!({"channel": "irc", "chat": "#ops"})),
        (
            "message.send",
            json!({"channel": "irc", "chat": "#ops", "text": 1}),
        ),
        (
            "message.send",
            json!({"channel": "irc/../x", "chat": "#ops", "text": "x"}),
        ),
        (
            "message.send",
            json!({"channel": "irc", "chat": "#ops\r\nPRIVMSG #x", "text": "x"}),
        ),
        (
            "message.send",
            json!({"channel": "irc", "chat": "#ops", "text": "x\u{0}"}),
        ),
        (
            "message.send",
            json!({"channel": "irc", "chat": "#ops", "text": "x".repeat(16 * 1024 + 1)}),
        ),
        (
            "message.send",
            json!({"channel": "irc", "chat": "#ops", "text": "x", "as": "admin"}),
        ),
        ("channels.list", json!({"all": true})),
        ("channels.list", json!([])),
        ("agents.spawn", json!({})),
        ("agents.spawn", json!({"task": ""})),
        ("agents.spawn", json!({"task": "x".repeat(32 * 1024 + 1)})),
        ("agents.spawn", json!({"task": "x", "depth": 0})),
        ("agents.spawn", json!({"task": "x", "parent": "root"})),
        ("tokens.revoke", json!({"id": "*"})),
        ("tokens.revoke", json!({"id": ""})),
        ("tokens.revoke", json!({"id": "a".repeat(129)})),
        ("tokens.revoke", json!({"ids": ["a"]})),
        ("agents.delete", json!({"id": "../beta"})),
        ("agents.delete", json!({"id": "beta", "_confirmed": true})),
        ("agents.delete", json!({"id": 7})),
    ] {
        let r = f.call(action, args).await;
        assert_invalid(&r);
    }
    assert!(f.services.calls().is_empty(), "nothing reached the port");
}

#[test]
fn every_tool_is_classified_with_its_class() {
    let classifier = Classifier::default();
    let expected = [
        ("file.read", ActionClass::Read),
        ("file.write", ActionClass::Mutate),
        ("file.edit", ActionClass::Mutate),
        ("file.list", ActionClass::Read),
        ("file.delete", ActionClass::Destructive),
        ("system.exec", ActionClass::Destructive),
        ("web.fetch", ActionClass::Read),
        ("memory.search", ActionClass::Read),
        ("memory.store", ActionClass::Mutate),
        ("memory.clear", ActionClass::Destructive),
        ("message.send", ActionClass::Mutate),
        ("channels.list", ActionClass::Read),
        ("agents.spawn", ActionClass::Mutate),
        ("tokens.revoke", ActionClass::Destructive),
        ("agents.delete", ActionClass::Destructive),
    ];
    let tools = builtin_tools();
    let actions: Vec<&str> = tools.iter().map(|t| t.action()).collect();
    assert_eq!(
        actions,
        expected.iter().map(|(a, _)| *a).collect::<Vec<_>>()
    );
    // `^[a-zA-Z0-9_-]+$`, what providers accept as a tool name.
    let wire_ok = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut names = HashSet::new();
    for (tool, (action, class)) in tools.iter().zip(expected) {
        assert_eq!(
            classifier.registered(action),
            Some(class),
            "{action} must be registered as {class:?}"
        );
        let w = wire_name(tool.action());
        assert!(wire_ok(&w), "{w}");
        assert!(w.len() <= 64, "{w}");
        assert!(names.insert(w), "wire names are unique");
        assert!(!tool.description().is_empty());
        let p = tool.parameters();
        assert_eq!(p["type"], "object", "{action}");
        assert_eq!(p["additionalProperties"], false, "{action}");
        assert!(p["properties"].is_object(), "{action}");
        for req in p["required"].as_array().into_iter().flatten() {
            assert!(
                p["properties"].get(req.as_str().unwrap()).is_some(),
                "{action} {req}"
            );
        }
    }
}
