//! Slack adapter: Events API requests signed as Slack signs them, and a local Web API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use comis_channels::config::SlackConfig;
use comis_channels::slack::SlackChannel;
use comis_channels::{Channel, Health, OutboundMessage};
use common::{Recorded, Reply, eventually, recv, serve};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TOKEN: &str = "xoxb-test-token";

type Headers = Vec<(String, String)>;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign_with(secret: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        ("X-Slack-Request-Timestamp".into(), ts.to_string()),
        ("X-Slack-Signature".into(), format!("v0={sig}")),
        ("Content-Type".into(), "application/json".into()),
    ]
}

fn sign(body: &[u8]) -> Vec<(String, String)> {
    sign_with(SECRET, now(), body)
}

fn event(id: &str, ev: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"token": "legacy", "team_id": "T1", "api_app_id": "A1",
        "type": "event_callback", "event_id": id, "event_time": now(), "event": ev}),
    )
    .unwrap()
}

fn msg(ts: &str, user: &str, text: &str) -> Value {
    json!({"type": "message", "channel": "C0123", "channel_type": "channel", "user": user,
           "text": text, "ts": ts})
}

/// Web API server: auth.test names the bot UBOT; chat.postMessage answers from a script.
fn web_api(script: Arc<Mutex<Vec<Reply>>>) -> common::Handler {
    Arc::new(move |r: &Recorded| {
        assert_eq!(r.header("authorization"), Some(&*format!("Bearer {TOKEN}")));
        match r.path.as_str() {
            "/api/auth.test" => Reply::json(
                200,
                &json!({"ok": true, "user_id": "UBOT", "team_id": "T1"}),
            ),
            "/api/chat.postMessage" => script
                .lock()
                .unwrap()
                .pop()
                .unwrap_or_else(|| Reply::json(200, &json!({"ok": true, "ts": "1.2"}))),
            _ => Reply::json(404, &json!({"ok": false, "error": "unknown_method"})),
        }
    })
}

fn config(base: &str) -> SlackConfig {
    SlackConfig {
        enabled: true,
        bot_token: Some(TOKEN.into()),
        signing_secret: Some(SECRET.into()),
        api_base: format!("{base}/api"),
        ..SlackConfig::default()
    }
}

async fn running(
    server_base: &str,
    queue: usize,
) -> (
    Arc<SlackChannel>,
    tokio::sync::mpsc::Receiver<comis_channels::InboundMessage>,
    tokio::task::JoinHandle<Result<(), comis_channels::ChannelError>>,
) {
    let ch = Arc::new(SlackChannel::new(&config(server_base), &[]).unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(queue);
    let run = tokio::spawn(Arc::clone(&ch).run(tx));
    let c = Arc::clone(&ch);
    eventually(move || c.health() == Health::Connected).await;
    (ch, rx, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_verification_needs_a_valid_signature() {
    let server = serve(web_api(Arc::default())).await;
    let (ch, _rx, _run) = running(&server.base(), 4).await;
    let body = br#"{"token":"x","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let r = ch.handle_webhook(&sign(body), body);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    // Unsigned, it gets nothing.
    let r = ch.handle_webhook(&[], body);
    assert_eq!(r.status, 401);
    assert!(r.body.iter().all(|b| *b != b'3'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_replayed_and_malformed_requests_are_refused() {
    let server = serve(web_api(Arc::default())).await;
    let (ch, mut rx, _run) = running(&server.base(), 16).await;
    let body = event("Ev1", msg("1700000000.000100", "U1", "hello"));
    let t = now();
    let cases: Vec<(&str, Headers, u16)> = vec![
        ("wrong secret", sign_with("not-the-secret", t, &body), 401),
        ("stale", sign_with(SECRET, t - 301, &body), 401),
        ("future", sign_with(SECRET, t + 301, &body), 401),
        ("no headers", vec![], 401),
        (
            "timestamp not a number",
            {
                let mut h = sign(&body);
                h[0].1 = "soon".into();
                h
            },
            401,
        ),
        (
            "signature for another timestamp",
            {
                let mut h = sign_with(SECRET, t - 10, &body);
                h[0].1 = t.to_string();
                h
            },
            401,
        ),
        (
            "v1 scheme",
            {
                let mut h = sign(&body);
                h[1].1 = h[1].1.replacen("v0=", "v1=", 1);
                h
            },
            401,
        ),
        (
            "uppercase hex",
            {
                let mut h = sign(&body);
                h[1].1 = h[1].1.to_uppercase();
                h
            },
            401,
        ),
    ];
    for (what, headers, status) in cases {
        let r = ch.handle_webhook(&headers, &body);
        assert_eq!(r.status, status, "{what}");
        assert!(r.rejected.is_some(), "{what}");
    }
    // A body changed after signing.
    let headers = sign(&body);
    let tampered = event("Ev1", msg("1700000000.000100", "U1", "hellO"));
    assert_eq!(ch.handle_webhook(&headers, &tampered).status, 401);

    // The genuine request: accepted once, then a replay is refused.
    assert_eq!(ch.handle_webhook(&headers, &body).status, 200);
    let r = ch.handle_webhook(&headers, &body);
    assert_eq!(
        (r.status, r.rejected.as_deref()),
        (401, Some("replayed request"))
    );
    let m = recv(&mut rx).await;
    assert_eq!(m.text, "hello");
    assert_eq!(m.chat, "C0123");
    assert_eq!(m.sender, "U1");
    assert_eq!(m.event_id, "C0123:1700000000.000100");

    // Signed but hostile bodies.
    let junk = b"{\"type\": \"event_callback\", \"event\": ";
    assert_eq!(ch.handle_webhook(&sign(junk), junk).status, 400);
    let big = vec![b'x'; 2 * 1024 * 1024];
    assert_eq!(ch.handle_webhook(&sign(&big), &big).status, 413);
    let huge_text = event("Ev2", msg("1700000000.000200", "U1", &"y".repeat(60_000)));
    assert_eq!(ch.handle_webhook(&sign(&huge_text), &huge_text).status, 200);
    let m = recv(&mut rx).await;
    assert_eq!(m.text.chars().count(), 40_000);
    assert!(m.metadata.contains(&("truncated".into(), "true".into())));

    // Still working after all of it.
    let ok = event("Ev3", msg("1700000000.000300", "U2", "still here"));
    assert_eq!(ch.handle_webhook(&sign(&ok), &ok).status, 200);
    assert_eq!(recv(&mut rx).await.text, "still here");
    assert_eq!(ch.health(), Health::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_edits_self_and_unknown_events_are_dropped() {
    let server = serve(web_api(Arc::default())).await;
    let (ch, mut rx, _run) = running(&server.base(), 16).await;
    let mut bot = msg("1.1", "U9", "from a bot");
    bot["bot_id"] = json!("B1");
    let mut edit = msg("1.2", "U1", "edited");
    edit["subtype"] = json!("message_changed");
    let drops = [
        event("E1", bot),
        event("E2", edit),
        event("E3", msg("1.3", "UBOT", "my own echo")),
        event(
            "E4",
            json!({"type": "reaction_added", "user": "U1", "reaction": "+1"}),
        ),
        event("E5", json!({"type": "message"})),
        event("E6", json!("not an object")),
        serde_json::to_vec(&json!({"type": "app_rate_limited", "minute_rate_limited": 1})).unwrap(),
        serde_json::to_vec(&json!({"type": "something_new"})).unwrap(),
    ];
    for body in &drops {
        let r = ch.handle_webhook(&sign(body), body);
        assert_eq!((r.status, r.rejected), (200, None));
    }
    let mut threaded = msg("1.4", "U1", "in a thread");
    threaded["thread_ts"] = json!("1.0");
    threaded["files"] = json!([{"name": "../../etc/passwd", "mimetype": "text/plain", "size": 12}]);
    threaded["subtype"] = json!("file_share");
    let body = event("E7", threaded);
    assert_eq!(ch.handle_webhook(&sign(&body), &body).status, 200);
    let m = recv(&mut rx).await;
    assert_eq!(m.text, "in a thread");
    assert_eq!(m.thread.as_deref(), Some("1.0"));
    assert_eq!(m.attachments[0].name, "../../etc/passwd");
    // Nothing else was delivered.
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_absorbed_with_503s_and_the_channel_keeps_going() {
    let server = serve(web_api(Arc::default())).await;
    let (ch, mut rx, run) = running(&server.base(), 8).await;
    let mut statuses = Vec::new();
    for i in 0..200 {
        let body = event(&format!("F{i}"), msg(&format!("2.{i}"), "U1", "flood"));
        statuses.push(ch.handle_webhook(&sign(&body), &body).status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 8);
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 192);
    for _ in 0..8 {
        recv(&mut rx).await;
    }
    let body = event("after", msg("3.0", "U1", "after"));
    assert_eq!(ch.handle_webhook(&sign(&body), &body).status, 200);
    assert_eq!(recv(&mut rx).await.text, "after");
    ch.stop();
    run.await.unwrap().unwrap();
    // Stopped: events are refused so Slack retries later.
    let body = event("late", msg("4.0", "U1", "late"));
    assert_eq!(ch.handle_webhook(&sign(&body), &body).status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_chunked_threaded_and_wait_out_429() {
    let script: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let server = serve(web_api(Arc::clone(&script))).await;
    let ch = SlackChannel::new(&config(&server.base()), &[]).unwrap();
    let text = "line of text\n".repeat(700);
    script.lock().unwrap().push(
        Reply::json(429, &json!({"ok": false, "error": "ratelimited"})).header("Retry-After", "1"),
    );
    ch.send(OutboundMessage {
        chat: "C0123".into(),
        thread: Some("1700000000.000100".into()),
        in_reply_to: None,
        text: text.clone(),
    })
    .await
    .unwrap();
    let posts = server.requests_to("/chat.postMessage");
    // The first was refused with 429 and repeated.
    assert_eq!(posts[0].json(), posts[1].json());
    let mut pieces = Vec::new();
    for p in &posts[1..] {
        let b = p.json();
        let piece = b["text"].as_str().unwrap();
        assert!(piece.chars().count() <= 4000);
        assert_eq!(b["channel"], "C0123");
        assert_eq!(b["thread_ts"], "1700000000.000100");
        pieces.push(piece.to_owned());
    }
    assert_eq!(posts.len(), 4);
    common::assert_rejoins(&pieces, &text);

    script.lock().unwrap().push(Reply::json(
        200,
        &json!({"ok": false, "error": "channel_not_found"}),
    ));
    let err = ch
        .send(OutboundMessage {
            chat: "C0404".into(),
            thread: None,
            in_reply_to: None,
            text: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("channel_not_found"), "{err}");
    let bad = OutboundMessage {
        chat: "C1/../../admin".into(),
        thread: None,
        in_reply_to: None,
        text: "x".into(),
    };
    assert!(ch.send(bad).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_fails_the_channel() {
    let server = serve(Arc::new(|_: &Recorded| {
        Reply::json(200, &json!({"ok": false, "error": "invalid_auth"}))
    }))
    .await;
    let ch = Arc::new(SlackChannel::new(&config(&server.base()), &[]).unwrap());
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = Arc::clone(&ch).run(tx).await.unwrap_err();
    assert!(err.to_string().contains("invalid_auth"));
    assert_eq!(ch.health(), Health::Failed);
}

#[test]
fn config_is_checked() {
    let mut cfg = config("http://127.0.0.1:1");
    cfg.mode = "socket".into();
    assert!(SlackChannel::new(&cfg, &[]).is_err());
    let mut cfg = config("http://127.0.0.1:1");
    cfg.signing_secret = None;
    assert!(SlackChannel::new(&cfg, &[]).is_err());
    let parsed: SlackConfig =
        serde_json::from_value(json!({"botToken": "xoxb-1", "signingSecret": "s"})).unwrap();
    assert_eq!(
        (parsed.mode.as_str(), parsed.api_base.as_str()),
        ("http", "https://slack.com/api")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_platform_opens_the_circuit() {
    let server = serve(Arc::new(|_: &Recorded| {
        Reply::raw(503, "<html>down</html>")
    }))
    .await;
    let ch = SlackChannel::new(&config(&server.base()), &[]).unwrap();
    let msg = OutboundMessage {
        chat: "C0123".into(),
        thread: None,
        in_reply_to: None,
        text: "x".into(),
    };
    for _ in 0..5 {
        let err = ch.send(msg.clone()).await.unwrap_err();
        assert!(!err.to_string().contains("circuit"), "{err}");
    }
    let err = ch.send(msg).await.unwrap_err();
    assert!(err.to_string().contains("circuit open"), "{err}");
    assert_eq!(
        server.requests_to("/chat.postMessage").len(),
        5,
        "failed fast"
    );
}
