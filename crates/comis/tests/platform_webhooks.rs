//! Platform webhooks through the daemon end to end: the real binary, the gateway's
//! `/webhooks/slack` and `/webhooks/telegram` endpoints, requests signed (Slack) or carrying the
//! secret token (Telegram) as the platforms send them, the scripted agent, and a local server
//! that speaks the Slack Web API / Telegram Bot API in place of slack.com and api.telegram.org.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const BIN: &str = env!("CARGO_BIN_EXE_comis");
const BOT_TOKEN: &str = "xoxb-1111-2222-daemontesttoken";
const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TELEGRAM_TOKEN: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
const TELEGRAM_SECRET: &str = "webhook-secret_0123456789";

fn comis(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("COMIS_HOME", home)
        .env("SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .env("TELEGRAM_BOT_TOKEN", TELEGRAM_TOKEN)
        .env("TELEGRAM_WEBHOOK_SECRET", TELEGRAM_SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Stops the daemon of `home` if the test ends early.
struct Stopper<'a>(&'a Path);
impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = comis(self.0, &["daemon", "stop", "--timeout", "10"]);
    }
}

fn wait_for(what: &str, home: &Path, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        if Instant::now() > deadline {
            let log = fs::read_to_string(home.join("logs/daemon.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; daemon log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- the local Slack Web API

#[derive(Debug, Clone)]
struct Call {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// Answers every Web API method with `ok` (auth.test names the bot UBOT) and records the call.
fn slack_api() -> (SocketAddr, Arc<Mutex<Vec<Call>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let recorded = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let recorded = recorded.clone();
            std::thread::spawn(move || serve_one(stream, &recorded));
        }
    });
    (addr, calls)
}

fn serve_one(stream: TcpStream, calls: &Mutex<Vec<Call>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let path = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().unwrap(),
                "authorization" => authorization = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let answer = if path.ends_with("/auth.test") {
        json!({"ok": true, "user_id": "UBOT", "team_id": "T1"})
    } else {
        // Slack's chat.postMessage and Telegram's methods both take this.
        json!({"ok": true, "ts": "1700000001.000300", "result": {"message_id": 99}})
    };
    calls.lock().unwrap().push(Call {
        path,
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let answer = answer.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{answer}",
        answer.len()
    );
}

// ---------------------------------------------------------------- Slack's side

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Slack's scheme: `v0=` + hex HMAC-SHA256 of `v0:<timestamp>:<body>` under the signing secret.
fn signed(secret: &str, body: &[u8]) -> Vec<(String, String)> {
    let ts = now();
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

fn message_event(user: &str, text: &str, ts: &str, thread: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": format!("Ev{ts}"), "event_time": now(),
        "event": {"type": "message", "channel": "C0123", "channel_type": "channel",
                  "user": user, "text": text, "ts": ts, "thread_ts": thread}
    }))
    .unwrap()
}

/// One HTTP/1.1 request to the gateway; (status, body).
fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Initialises `home` with the scripted agent and `channels` (YAML under `channels:`), starts
/// the daemon and returns the gateway address.
fn start_daemon(home: &Path, channels: &str) -> String {
    let o = comis(home, &["init", "--non-interactive", "--gateway-port", "0"]);
    assert!(o.status.success(), "{}", text(&o));
    let script = home.join("agent.json");
    fs::write(&script, r#"{"steps": [{"text": "hello from comis"}]}"#).unwrap();
    fs::write(
        home.join("config.yaml"),
        format!(
            "logLevel: debug\n\
             gateway:\n  host: 127.0.0.1\n  port: 0\n\
             providers:\n  entries:\n    s:\n      type: scripted\n      script: {script}\n\
             agents:\n  default:\n    provider: s\n    model: scripted\n\
             channels:\n{channels}",
            script = json!(script.display().to_string()),
        ),
    )
    .unwrap();
    let o = comis(home, &["daemon", "start"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = comis(home, &["daemon", "status", "--json"]);
    let status: Value = serde_json::from_slice(&o.stdout).unwrap();
    let gateway = status["gateway"].as_str().unwrap_or_default().to_owned();
    assert!(!gateway.is_empty(), "{status}");
    gateway
}

#[test]
fn a_signed_slack_message_gets_the_agents_reply_in_its_thread_and_a_forged_one_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let (api, calls) = slack_api();
    let _stop = Stopper(&home);
    let gateway = start_daemon(
        &home,
        &format!(
            "  slack:\n    enabled: true\n    \
             botToken: {{source: env, id: SLACK_BOT_TOKEN}}\n    \
             signingSecret: {{source: env, id: SLACK_SIGNING_SECRET}}\n    \
             apiBase: http://{api}/api\n    allowFrom: [\"U1\"]\n"
        ),
    );
    // auth.test is the adapter's first call once it runs (and can take events).
    wait_for("the Slack adapter's auth.test", &home, || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == "/api/auth.test")
    });

    // A message from the allowed user, in a thread, signed with the signing secret.
    let body = message_event("U1", "hi comis", "1700000000.000200", "1700000000.000100");
    let headers = signed(SIGNING_SECRET, &body);
    let (code, answer) = request(&gateway, "POST", "/webhooks/slack", &headers, &body);
    assert_eq!(code, 200, "{answer}");
    wait_for("the reply through chat.postMessage", &home, || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == "/api/chat.postMessage")
    });
    let post = calls
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.path == "/api/chat.postMessage")
        .cloned()
        .unwrap();
    assert_eq!(post.body["channel"], "C0123", "{post:?}");
    assert_eq!(post.body["thread_ts"], "1700000000.000100", "{post:?}");
    assert!(
        post.body["text"]
            .as_str()
            .unwrap()
            .contains("hello from comis"),
        "{post:?}"
    );
    assert_eq!(
        post.authorization.as_deref(),
        Some(&*format!("Bearer {BOT_TOKEN}"))
    );

    // Signed with another secret: refused, recorded, and the daemon serves on.
    let forged = message_event("U1", "forged", "1700000000.000300", "1700000000.000100");
    let (code, answer) = request(
        &gateway,
        "POST",
        "/webhooks/slack",
        &signed("not-the-signing-secret-0123456789", &forged),
        &forged,
    );
    assert_eq!(code, 401, "{answer}");
    // Unsigned: refused the same way.
    let (code, _) = request(&gateway, "POST", "/webhooks/slack", &[], &forged);
    assert_eq!(code, 401);
    let (code, health) = request(&gateway, "GET", "/health", &[], b"");
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"ok\""), "{health}");
    let store = comis_store::Store::open_in(&home).unwrap();
    wait_for("the refusal in the audit log", &home, || {
        store.audit_tail(50).unwrap().iter().any(|e| {
            let e = e.to_json();
            e["type"] == "gateway:webhook_rejected"
                && e["metadata"]["path"] == "/webhooks/slack"
                && e["metadata"]["reason"] == "bad signature"
                && e["metadata"]["ip"] == "127.0.0.1"
        })
    });
    let posts = calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.path == "/api/chat.postMessage")
        .count();
    assert_eq!(posts, 1, "a refused request reached the agent");

    // The accepted request, sent again: a replay, refused — and still refused after a reload
    // has replaced the adapter.
    let (code, answer) = request(&gateway, "POST", "/webhooks/slack", &headers, &body);
    assert_eq!(code, 401, "{answer}");
    assert!(answer.contains("replayed"), "{answer}");
    let pid: i32 = fs::read_to_string(home.join("daemon.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let status = || {
        let o = comis(&home, &["daemon", "status", "--json"]);
        serde_json::from_slice::<Value>(&o.stdout).unwrap_or_default()
    };
    wait_for("the reloaded gateway", &home, || {
        status()["gateway"]
            .as_str()
            .is_some_and(|g| !g.is_empty() && g != gateway)
    });
    let reloaded = status()["gateway"].as_str().unwrap().to_owned();
    let (code, answer) = request(&reloaded, "POST", "/webhooks/slack", &headers, &body);
    assert_eq!(code, 401, "a reload forgot an accepted request: {answer}");
    assert!(answer.contains("replayed"), "{answer}");
    let o = comis(&home, &["daemon", "stop"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_telegram_update_with_the_secret_token_gets_the_agents_reply_and_a_wrong_one_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let (api, calls) = slack_api();
    let _stop = Stopper(&home);
    let gateway = start_daemon(
        &home,
        &format!(
            "  telegram:\n    enabled: true\n    \
             botToken: {{source: env, id: TELEGRAM_BOT_TOKEN}}\n    \
             webhookUrl: https://bot.example/webhooks/telegram\n    \
             webhookSecret: {{source: env, id: TELEGRAM_WEBHOOK_SECRET}}\n    \
             apiBase: http://{api}\n    allowFrom: [\"42\"]\n"
        ),
    );
    let path_of = |method: &str| format!("/bot{TELEGRAM_TOKEN}/{method}");
    // setWebhook is the adapter's first call in webhook mode.
    wait_for("the Telegram adapter's setWebhook", &home, || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == path_of("setWebhook"))
    });
    let update = serde_json::to_vec(&json!({"update_id": 1, "message": {
        "message_id": 10, "date": 0,
        "from": {"id": 42, "is_bot": false, "first_name": "Ada", "username": "ada"},
        "chat": {"id": 42, "type": "private"}, "text": "hi comis"}}))
    .unwrap();
    let secret = |v: &str| {
        vec![
            ("X-Telegram-Bot-Api-Secret-Token".to_owned(), v.to_owned()),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    };
    let (code, answer) = request(
        &gateway,
        "POST",
        "/webhooks/telegram",
        &secret(TELEGRAM_SECRET),
        &update,
    );
    assert_eq!(code, 200, "{answer}");
    wait_for("the reply through sendMessage", &home, || {
        calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.path == path_of("sendMessage"))
    });
    let send = calls
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.path == path_of("sendMessage"))
        .cloned()
        .unwrap();
    assert_eq!(
        send.body["chat_id"].to_string().trim_matches('"'),
        "42",
        "{send:?}"
    );
    assert!(
        send.body["text"]
            .as_str()
            .unwrap()
            .contains("hello from comis"),
        "{send:?}"
    );
    let (code, _) = request(
        &gateway,
        "POST",
        "/webhooks/telegram",
        &secret("webhook-secret_guessed000"),
        &update,
    );
    assert_eq!(code, 401);
    let (code, _) = request(&gateway, "GET", "/health", &[], b"");
    assert_eq!(code, 200);
    // Slack is not configured: its path is not mounted.
    let (code, _) = request(&gateway, "POST", "/webhooks/slack", &[], b"{}");
    assert_eq!(code, 404);
    let o = comis(&home, &["daemon", "stop"]);
    assert!(o.status.success(), "{}", text(&o));
}
