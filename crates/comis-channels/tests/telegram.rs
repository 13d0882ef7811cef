//! Telegram adapter against a local server speaking the Bot API wire format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comis_channels::config::TelegramConfig;
use comis_channels::telegram::{InlineButton, SECRET_HEADER, TelegramChannel};
use comis_channels::{Channel, Health, OutboundMessage};
use common::{Recorded, Reply, eventually, recv, serve};
use serde_json::{Value, json};

const TOKEN: &str = "123456:TEST-token_abc";

fn config(base: &str) -> TelegramConfig {
    TelegramConfig {
        enabled: true,
        bot_token: Some(TOKEN.into()),
        api_base: base.to_owned(),
        ..TelegramConfig::default()
    }
}

fn message(update_id: i64, from_id: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id * 10, "date": 0,
        "from": {"id": from_id, "is_bot": false, "first_name": "Ada", "username": "ada"},
        "chat": {"id": from_id, "type": "private"}, "text": text}})
}

/// A Bot API server: `getUpdates` answers the queued updates from `offset` on (a short hold
/// when there are none), everything else `ok`, unless `sendMessage` has scripted answers.
struct Bot {
    updates: Mutex<Vec<Value>>,
    send_script: Mutex<Vec<Reply>>,
    get_script: Mutex<Vec<Reply>>,
}

fn bot_server(bot: Arc<Bot>) -> common::Handler {
    Arc::new(move |r: &Recorded| {
        assert!(r.path.starts_with(&format!("/bot{TOKEN}/")), "{}", r.path);
        let method = r.path.rsplit('/').next().unwrap();
        match method {
            "getUpdates" => {
                if let Some(scripted) = bot.get_script.lock().unwrap().pop() {
                    return scripted;
                }
                let offset = r.json()["offset"].as_i64().unwrap();
                let list: Vec<Value> = bot
                    .updates
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|u| u["update_id"].as_i64().is_none_or(|id| id >= offset))
                    .take(100)
                    .cloned()
                    .collect();
                let empty = list.is_empty();
                let reply = Reply::json(200, &json!({"ok": true, "result": list}));
                if empty {
                    reply.after(Duration::from_millis(50))
                } else {
                    reply
                }
            }
            "sendMessage" => bot.send_script.lock().unwrap().pop().unwrap_or_else(|| {
                Reply::json(200, &json!({"ok": true, "result": {"message_id": 1}}))
            }),
            _ => Reply::json(200, &json!({"ok": true, "result": true})),
        }
    })
}

fn new_bot(updates: Vec<Value>) -> Arc<Bot> {
    Arc::new(Bot {
        updates: Mutex::new(updates),
        send_script: Mutex::new(Vec::new()),
        get_script: Mutex::new(Vec::new()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_delivers_filters_hostile_updates_and_absorbs_a_flood() {
    let huge = "A".repeat(100_000);
    let bot = new_bot(vec![
        message(1, 42, "hello"),
        // A bot, a malformed message, an unknown kind, a non-object: all skipped.
        json!({"update_id": 2, "message": {"message_id": 20, "from": {"id": 7, "is_bot": true},
               "chat": {"id": 7, "type": "private"}, "text": "I am a bot"}}),
        json!({"update_id": 3, "message": {"text": 5}}),
        json!({"update_id": 4, "poll": {"id": "p"}}),
        json!("not an update"),
        message(5, 42, &huge),
    ]);
    let server = serve(bot_server(Arc::clone(&bot))).await;
    let ch = Arc::new(
        TelegramChannel::new(&config(&server.base()), &[])
            .unwrap()
            .with_poll_timeout(0),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let run = tokio::spawn(Arc::clone(&ch).run(tx));

    let first = recv(&mut rx).await;
    assert_eq!(first.text, "hello");
    assert_eq!(first.sender, "42");
    assert_eq!(first.sender_aliases, ["ada"]);
    assert_eq!(first.chat, "42");
    assert!(first.direct);
    assert_eq!(first.event_id, "42:10");
    let second = recv(&mut rx).await;
    assert_eq!(second.text.len(), 40_000);
    assert!(
        second
            .metadata
            .contains(&("truncated".into(), "true".into()))
    );
    eventually(|| {
        server
            .requests_to("/getUpdates")
            .iter()
            .any(|r| r.json()["offset"] == 6)
    })
    .await;
    assert_eq!(ch.health(), Health::Connected);

    // A flood: every update delivered once, through a small queue (back-pressure, no loss).
    bot.updates
        .lock()
        .unwrap()
        .extend((100..400).map(|i| message(i, 1000 + i, &format!("m{i}"))));
    let mut seen = HashSet::new();
    for _ in 100..400 {
        let m = recv(&mut rx).await;
        assert!(seen.insert(m.event_id.clone()), "duplicate {}", m.event_id);
    }
    assert_eq!(seen.len(), 300);

    // Still running: a later message arrives.
    bot.updates
        .lock()
        .unwrap()
        .push(message(500, 42, "after the flood"));
    assert_eq!(recv(&mut rx).await.text, "after the flood");
    ch.stop();
    run.await.unwrap().unwrap();
    assert_eq!(ch.health(), Health::Stopped);
    // Polling mode cleared any webhook first.
    assert_eq!(server.requests_to("/deleteWebhook").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_absorbed_and_polling_goes_on() {
    let bot = new_bot(vec![message(1, 42, "survived")]);
    // Popped from the end: HTML error page, then a truncated JSON document, then a 500.
    *bot.get_script.lock().unwrap() = vec![
        Reply::json(
            500,
            &json!({"ok": false, "error_code": 500, "description": "oops"}),
        ),
        Reply::raw(200, "{\"ok\": true, \"result\": [{\"update_id\""),
        Reply::raw(502, "<html>bad gateway</html>"),
    ];
    let server = serve(bot_server(Arc::clone(&bot))).await;
    let ch = Arc::new(
        TelegramChannel::new(&config(&server.base()), &[])
            .unwrap()
            .with_poll_timeout(0)
            .with_backoff(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let run = tokio::spawn(Arc::clone(&ch).run(tx));
    assert_eq!(recv(&mut rx).await.text, "survived");
    assert!(server.requests_to("/getUpdates").len() >= 4);
    ch.stop();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_fails_the_channel() {
    let server = serve(Arc::new(|_: &Recorded| {
        Reply::json(
            401,
            &json!({"ok": false, "error_code": 401, "description": "Unauthorized"}),
        )
    }))
    .await;
    let ch = Arc::new(TelegramChannel::new(&config(&server.base()), &[]).unwrap());
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let err = Arc::clone(&ch).run(tx).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    assert!(!err.to_string().contains(TOKEN));
    assert_eq!(ch.health(), Health::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_chunks_at_4096_utf16_units_and_threads_the_reply() {
    let bot = new_bot(Vec::new());
    let server = serve(bot_server(bot)).await;
    let ch = TelegramChannel::new(&config(&server.base()), &[]).unwrap();
    let text = format!("{}\n{}{}", "word ".repeat(1000), "😀".repeat(3000), "tail");
    ch.send(OutboundMessage {
        chat: "-100123".into(),
        thread: Some("7".into()),
        in_reply_to: Some("-100123:55".into()),
        text: text.clone(),
    })
    .await
    .unwrap();
    let sent = server.requests_to("/sendMessage");
    assert!(sent.len() >= 3, "{}", sent.len());
    let mut pieces = Vec::new();
    for (i, r) in sent.iter().enumerate() {
        let b = r.json();
        let piece = b["text"].as_str().unwrap();
        assert!(piece.encode_utf16().count() <= 4096);
        assert_eq!(b["chat_id"], -100123);
        assert_eq!(b["message_thread_id"], 7);
        assert!(b.get("parse_mode").is_none());
        assert_eq!(b.get("reply_parameters").is_some(), i == 0);
        pieces.push(piece.to_owned());
    }
    common::assert_rejoins(&pieces, &text);
    assert_eq!(sent[0].json()["reply_parameters"]["message_id"], 55);

    // Not a chat id: refused before any request.
    let before = server.requests_to("/sendMessage").len();
    let bad = OutboundMessage {
        chat: "../../deleteWebhook?x=".into(),
        thread: None,
        in_reply_to: None,
        text: "x".into(),
    };
    assert!(ch.send(bad).await.is_err());
    assert_eq!(server.requests_to("/sendMessage").len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let bot = new_bot(Vec::new());
    *bot.send_script.lock().unwrap() = vec![Reply::json(
        429,
        &json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
                "parameters": {"retry_after": 1}}),
    )];
    let server = serve(bot_server(Arc::clone(&bot))).await;
    let ch = TelegramChannel::new(&config(&server.base()), &[]).unwrap();
    let started = std::time::Instant::now();
    ch.send(OutboundMessage {
        chat: "42".into(),
        thread: None,
        in_reply_to: None,
        text: "after the limit".into(),
    })
    .await
    .unwrap();
    let sent = server.requests_to("/sendMessage");
    assert_eq!(sent.len(), 2);
    // Waiting is the behaviour under test: the retry did not come before retry_after.
    assert!(started.elapsed() >= Duration::from_secs(1));
    // A limit longer than the cap is an error, not an hour-long stall.
    *bot.send_script.lock().unwrap() = vec![Reply::json(
        429,
        &json!({"ok": false, "error_code": 429, "parameters": {"retry_after": 3600}}),
    )];
    let err = ch
        .send(OutboundMessage {
            chat: "42".into(),
            thread: None,
            in_reply_to: None,
            text: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rate limited"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_buttons_carry_opaque_callback_data() {
    let server = serve(bot_server(new_bot(Vec::new()))).await;
    let ch = TelegramChannel::new(&config(&server.base()), &[]).unwrap();
    let msg = OutboundMessage {
        chat: "42".into(),
        thread: None,
        in_reply_to: None,
        text: "Approve rm -rf build?".into(),
    };
    let too_long = InlineButton {
        text: "Approve".into(),
        callback_data: "x".repeat(65),
    };
    assert!(
        ch.send_with_buttons(msg.clone(), &[too_long])
            .await
            .is_err()
    );
    let buttons = [
        InlineButton {
            text: "Approve".into(),
            callback_data: format!("a:{}", "s".repeat(62)),
        },
        InlineButton {
            text: "Deny".into(),
            callback_data: "d:abc".into(),
        },
    ];
    ch.send_with_buttons(msg, &buttons).await.unwrap();
    let sent = server.requests_to("/sendMessage");
    assert_eq!(sent.len(), 1);
    let kb = &sent[0].json()["reply_markup"]["inline_keyboard"];
    assert_eq!(kb[0][0]["callback_data"].as_str().unwrap().len(), 64);
    assert_eq!(kb[1][0]["text"], "Deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_checks_the_secret_and_survives_hostile_requests() {
    let server = serve(bot_server(new_bot(Vec::new()))).await;
    let mut cfg = config(&server.base());
    cfg.webhook_url = Some("https://bot.example/hooks/telegram".into());
    cfg.webhook_secret = Some("s3cret-TOKEN_1".into());
    let ch = Arc::new(TelegramChannel::new(&cfg, &[]).unwrap());
    let good = vec![(SECRET_HEADER.to_lowercase(), "s3cret-TOKEN_1".to_owned())];
    let update = serde_json::to_vec(&message(1, 42, "via webhook")).unwrap();

    // Before run: not accepting.
    assert_eq!(ch.handle_webhook(&good, &update).status, 503);

    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let run = tokio::spawn(Arc::clone(&ch).run(tx));
    eventually(|| ch.health() == Health::Connected).await;
    let set = server.requests_to("/setWebhook");
    assert_eq!(set[0].json()["secret_token"], "s3cret-TOKEN_1");
    assert_eq!(set[0].json()["url"], "https://bot.example/hooks/telegram");

    for bad in [
        vec![],
        vec![(SECRET_HEADER.to_owned(), "s3cret-TOKEN_2".to_owned())],
        vec![(SECRET_HEADER.to_owned(), "s3cret-TOKEN_1x".to_owned())],
        vec![(SECRET_HEADER.to_owned(), String::new())],
    ] {
        let r = ch.handle_webhook(&bad, &update);
        assert_eq!(r.status, 401);
        assert!(r.rejected.is_some());
    }
    assert_eq!(ch.handle_webhook(&good, b"{not json").status, 400);
    assert_eq!(
        ch.handle_webhook(&good, &vec![b' '; 2 * 1024 * 1024])
            .status,
        413
    );
    let unknown = serde_json::to_vec(&json!({"update_id": 9, "chat_boost": {}})).unwrap();
    let r = ch.handle_webhook(&good, &unknown);
    assert_eq!((r.status, r.rejected), (200, None));

    let r = ch.handle_webhook(&good, &update);
    assert_eq!(r.status, 200);
    let m = recv(&mut rx).await;
    assert_eq!(m.text, "via webhook");

    // A button press: delivered as a callback_query carrying its data, and acknowledged.
    let cb = json!({"update_id": 2, "callback_query": {"id": "cbq1",
        "from": {"id": 42, "is_bot": false, "first_name": "Ada"},
        "message": {"message_id": 5, "chat": {"id": 42, "type": "private"}},
        "data": "a:signed"}});
    assert_eq!(
        ch.handle_webhook(&good, &serde_json::to_vec(&cb).unwrap())
            .status,
        200
    );
    let m = recv(&mut rx).await;
    assert_eq!(m.text, "a:signed");
    assert!(
        m.metadata
            .contains(&("kind".into(), "callback_query".into()))
    );
    eventually(|| !server.requests_to("/answerCallbackQuery").is_empty()).await;

    // A flood beyond the queue: refused with 503 (Telegram redelivers), never blocking.
    let accepted = AtomicUsize::new(0);
    for i in 0..50 {
        let u = serde_json::to_vec(&message(100 + i, 42, "flood")).unwrap();
        let r = ch.handle_webhook(&good, &u);
        assert!(r.status == 200 || r.status == 503);
        if r.status == 200 {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 4);
    for _ in 0..4 {
        recv(&mut rx).await;
    }
    assert_eq!(ch.handle_webhook(&good, &update).status, 200);
    assert_eq!(ch.health(), Health::Connected);
    ch.stop();
    run.await.unwrap().unwrap();
}

#[test]
fn config_is_checked_fail_closed() {
    let mut cfg = TelegramConfig::default();
    assert!(TelegramChannel::new(&cfg, &[]).is_err(), "no token");
    cfg.bot_token = Some(TOKEN.into());
    cfg.webhook_url = Some("https://bot.example/hook".into());
    assert!(
        TelegramChannel::new(&cfg, &[]).is_err(),
        "webhook without secret"
    );
    cfg.webhook_secret = Some("bad secret!".into());
    assert!(TelegramChannel::new(&cfg, &[]).is_err(), "secret charset");
    cfg.webhook_secret = Some("good_secret".into());
    assert!(TelegramChannel::new(&cfg, &[]).is_ok());
    cfg.webhook_url = Some("http://bot.example/hook".into());
    assert!(
        TelegramChannel::new(&cfg, &[]).is_err(),
        "plain http webhook"
    );
    let parsed: TelegramConfig = serde_json::from_value(json!({
        "enabled": true, "botToken": "1:x", "allowFrom": ["42"]}))
    .unwrap();
    assert_eq!(parsed.api_base, "https://api.telegram.org");
    assert!(serde_json::from_value::<TelegramConfig>(json!({"botTokn": "x"})).is_err());
}

#[tokio::test]
async fn transport_errors_never_show_the_token() {
    // Nothing listens on port 9 of loopback (discard is not run on test machines).
    let ch = TelegramChannel::new(&config("http://127.0.0.1:9"), &[]).unwrap();
    let err = ch
        .send(OutboundMessage {
            chat: "42".into(),
            thread: None,
            in_reply_to: None,
            text: "x".into(),
        })
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("TEST-token"), "{err}");
    assert!(err.to_string().contains("<token>"), "{err}");
}
