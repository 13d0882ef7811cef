//! Discord adapter against a local gateway (a real WebSocket server speaking the gateway's
//! JSON protocol) and a local REST server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use comis_channels::config::DiscordConfig;
use comis_channels::discord::DiscordChannel;
use comis_channels::{Channel, ChannelError, Health, InboundMessage, OutboundMessage};
use common::{Recorded, Reply, eventually, recv, serve};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.test-token";

type Ws = WebSocketStream<TcpStream>;

/// The gateway side of one connection. A reader task acknowledges heartbeats at once (when
/// `ack`), so a busy test never starves the adapter's watchdog; every payload is forwarded.
/// Dropping the peer drops the TCP connection without a close frame.
struct Peer {
    out: mpsc::UnboundedSender<Message>,
    incoming: mpsc::UnboundedReceiver<Value>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn peer(ws: Ws, ack: bool) -> Peer {
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let (in_tx, incoming) = mpsc::unbounded_channel();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return;
            }
        }
    });
    let acks = out.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let v = match m {
                Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(f) => json!({"close": f.map(|f| u16::from(f.code))}),
                _ => continue,
            };
            if ack && v["op"] == 1 {
                let _ = acks.send(Message::text(json!({"op": 11}).to_string()));
            }
            if in_tx.send(v).is_err() {
                return;
            }
        }
    });
    Peer {
        out,
        incoming,
        tasks: vec![writer, reader],
    }
}

/// A gateway server: each accepted connection goes to the test with the path it asked for.
async fn gateway() -> (SocketAddr, mpsc::Receiver<(String, Ws)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let path = Arc::new(Mutex::new(String::new()));
            let p = Arc::clone(&path);
            let cb = move |req: &Request, resp: Response| {
                *p.lock().unwrap() = req.uri().to_string();
                Ok(resp)
            };
            if let Ok(ws) = tokio_tungstenite::accept_hdr_async(sock, cb).await {
                let path = path.lock().unwrap().clone();
                if tx.send((path, ws)).await.is_err() {
                    return;
                }
            }
        }
    });
    (addr, rx)
}

async fn next_conn(rx: &mut mpsc::Receiver<(String, Ws)>, ack: bool) -> (String, Peer) {
    let (path, ws) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the adapter did not (re)connect")
        .unwrap();
    (path, peer(ws, ack))
}

async fn put(p: &mut Peer, v: Value) {
    p.out.send(Message::text(v.to_string())).unwrap();
}

/// Reads until a payload with `op` arrives (or, for `op` = u64::MAX, a close).
async fn expect_op(p: &mut Peer, op: u64) -> Value {
    let fut = async {
        loop {
            let v = p.incoming.recv().await.expect("connection ended");
            if v["op"] == op || (op == u64::MAX && v.get("close").is_some()) {
                return v;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("no op {op} from the adapter"))
}

fn hello(ms: u64) -> Value {
    json!({"op": 10, "d": {"heartbeat_interval": ms}, "s": null, "t": null})
}

fn dispatch(s: u64, t: &str, d: Value) -> Value {
    json!({"op": 0, "s": s, "t": t, "d": d})
}

fn message(id: &str, author: &str, content: &str) -> Value {
    json!({"id": id, "channel_id": "555", "author": {"id": author, "username": "ada"},
           "content": content, "attachments": [], "mentions": []})
}

fn config(gw: SocketAddr, api: &str) -> DiscordConfig {
    DiscordConfig {
        enabled: true,
        bot_token: Some(TOKEN.into()),
        api_base: format!("{api}/api/v10"),
        gateway_url: format!("ws://{gw}/?v=10&encoding=json"),
        ..DiscordConfig::default()
    }
}

fn start(
    cfg: &DiscordConfig,
    queue: usize,
) -> (
    Arc<DiscordChannel>,
    mpsc::Receiver<InboundMessage>,
    tokio::task::JoinHandle<Result<(), ChannelError>>,
) {
    let ch = Arc::new(
        DiscordChannel::new(cfg, &[])
            .unwrap()
            .with_backoff(Duration::from_millis(10), Duration::from_millis(100)),
    );
    let (tx, rx) = mpsc::channel(queue);
    let run = tokio::spawn(Arc::clone(&ch).run(tx));
    (ch, rx, run)
}

async fn identify_and_ready(ws: &mut Peer, gw: SocketAddr, interval: u64) -> Value {
    put(ws, hello(interval)).await;
    let ident = expect_op(ws, 2).await;
    put(
        ws,
        dispatch(
            1,
            "READY",
            json!({"v": 10, "session_id": "sess1",
            "resume_gateway_url": format!("ws://{gw}/resume"),
            "user": {"id": "999", "username": "comis", "bot": true}, "guilds": []}),
        ),
    )
    .await;
    ident
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_dispatch_hostile_frames_resume_reconnect_and_invalid_session() {
    let (gw, mut conns) = gateway().await;
    let cfg = config(gw, "http://127.0.0.1:9");
    let (ch, mut rx, run) = start(&cfg, 64);

    // 1. Hello → Identify with the token and intents; READY; heartbeats carry the sequence.
    let (path, mut ws) = next_conn(&mut conns, true).await;
    assert!(
        path.contains("v=10") && path.contains("encoding=json"),
        "{path}"
    );
    let ident = identify_and_ready(&mut ws, gw, 150).await;
    assert_eq!(ident["d"]["token"], TOKEN);
    assert_eq!(ident["d"]["intents"], 37377);
    assert_eq!(ident["d"]["properties"]["browser"], "comis");
    let beat = expect_op(&mut ws, 1).await;
    assert_eq!(beat["d"], 1);
    eventually(|| ch.health() == Health::Connected).await;

    // The gateway asks for a heartbeat: one comes at once.
    put(&mut ws, json!({"op": 1, "d": null})).await;
    expect_op(&mut ws, 1).await;

    // 2. A user's message is delivered.
    put(
        &mut ws,
        dispatch(2, "MESSAGE_CREATE", message("1001", "42", "hi there")),
    )
    .await;
    let m = recv(&mut rx).await;
    assert_eq!(
        (m.text.as_str(), m.chat.as_str(), m.sender.as_str()),
        ("hi there", "555", "42")
    );
    assert_eq!(m.event_id, "1001");
    assert!(m.direct, "no guild_id: a DM");

    // 3. Hostile and irrelevant frames: dropped, session intact.
    ws.out.send(Message::text("{not json")).unwrap();
    ws.out.send(Message::binary(vec![0xff; 100])).unwrap();
    put(&mut ws, json!({"op": 42, "d": {}})).await;
    put(&mut ws, json!({"op": "zero"})).await;
    put(
        &mut ws,
        dispatch(3, "TYPING_START", json!({"channel_id": "555"})),
    )
    .await;
    put(
        &mut ws,
        dispatch(4, "MESSAGE_CREATE", json!({"content": 5})),
    )
    .await;
    let mut bot = message("1005", "77", "beep");
    bot["author"]["bot"] = json!(true);
    put(&mut ws, dispatch(5, "MESSAGE_CREATE", bot)).await;
    put(
        &mut ws,
        dispatch(6, "MESSAGE_CREATE", message("1006", "999", "my own echo")),
    )
    .await;
    let mut hooked = message("1007", "43", "from a webhook");
    hooked["webhook_id"] = json!("88");
    put(&mut ws, dispatch(7, "MESSAGE_CREATE", hooked)).await;
    let mut pathy = message("1008", "42", "x");
    pathy["channel_id"] = json!("555/../../users/@me");
    put(&mut ws, dispatch(8, "MESSAGE_CREATE", pathy)).await;
    let mut guild = message("1009", "42", &"z".repeat(100_000));
    guild["guild_id"] = json!("31337");
    guild["mentions"] = json!([{"id": "999"}]);
    guild["attachments"] = json!([{"id": "1", "filename": "evil\u{202e}gpj.exe", "size": 10,
                                   "content_type": "application/octet-stream"}]);
    put(&mut ws, dispatch(9, "MESSAGE_CREATE", guild)).await;
    let m = recv(&mut rx).await;
    assert_eq!(m.event_id, "1009", "nothing hostile got through before it");
    assert_eq!(m.text.chars().count(), 40_000);
    assert!(m.direct, "mentioned in a guild");
    assert_eq!(m.attachments[0].name, "evil\u{202e}gpj.exe");
    assert!(m.metadata.contains(&("guild".into(), "31337".into())));

    // 4. A forced close (TCP dropped, no close frame): the adapter resumes at the resume URL
    //    with the session id and the last sequence.
    drop(ws);
    let (path, mut ws) = next_conn(&mut conns, true).await;
    assert!(path.starts_with("/resume"), "{path}");
    put(&mut ws, hello(150)).await;
    let resume = expect_op(&mut ws, 6).await;
    assert_eq!(resume["d"]["session_id"], "sess1");
    assert_eq!(resume["d"]["seq"], 9);
    assert_eq!(resume["d"]["token"], TOKEN);
    put(&mut ws, dispatch(10, "RESUMED", json!({}))).await;
    put(
        &mut ws,
        dispatch(11, "MESSAGE_CREATE", message("1011", "42", "after resume")),
    )
    .await;
    assert_eq!(recv(&mut rx).await.text, "after resume");

    // 5. op 7 Reconnect: a new connection that resumes.
    put(&mut ws, json!({"op": 7, "d": null})).await;
    let (_, mut ws) = next_conn(&mut conns, true).await;
    put(&mut ws, hello(150)).await;
    assert_eq!(expect_op(&mut ws, 6).await["d"]["seq"], 11);

    // 6. op 9 Invalid Session, not resumable: a fresh Identify on the configured URL.
    put(&mut ws, json!({"op": 9, "d": false})).await;
    let (path, mut ws) = next_conn(&mut conns, true).await;
    assert!(!path.starts_with("/resume"), "{path}");
    put(&mut ws, hello(150)).await;
    expect_op(&mut ws, 2).await;
    put(
        &mut ws,
        dispatch(
            1,
            "READY",
            json!({"session_id": "sess2", "user": {"id": "999"}}),
        ),
    )
    .await;
    put(
        &mut ws,
        dispatch(2, "MESSAGE_CREATE", message("1100", "42", "new session")),
    )
    .await;
    assert_eq!(recv(&mut rx).await.text, "new session");

    ch.stop();
    run.await.unwrap().unwrap();
    assert_eq!(ch.health(), Health::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_absorbed_with_back_pressure_and_heartbeats_go_on() {
    let (gw, mut conns) = gateway().await;
    let (ch, mut rx, run) = start(&config(gw, "http://127.0.0.1:9"), 4);
    let (_, mut ws) = next_conn(&mut conns, true).await;
    identify_and_ready(&mut ws, gw, 100).await;
    for i in 0..300u64 {
        let id = (10_000 + i).to_string();
        put(
            &mut ws,
            dispatch(2 + i, "MESSAGE_CREATE", message(&id, "42", "flood")),
        )
        .await;
    }
    // The daemon is slow: nothing is taken while the gateway sees two more heartbeats, and
    // the adapter does not mistake its own stall for a dead connection.
    expect_op(&mut ws, 1).await;
    expect_op(&mut ws, 1).await;
    let mut last = 0u64;
    for _ in 0..300 {
        let id: u64 = recv(&mut rx).await.event_id.parse().unwrap();
        assert!(id > last, "in order, once");
        last = id;
    }
    assert_eq!(last, 10_299);
    put(
        &mut ws,
        dispatch(400, "MESSAGE_CREATE", message("20000", "42", "after")),
    )
    .await;
    assert_eq!(recv(&mut rx).await.text, "after");
    assert!(conns.try_recv().is_err(), "no reconnect happened");
    while let Ok(v) = ws.incoming.try_recv() {
        assert!(v.get("close").is_none(), "the adapter closed: {v}");
    }
    assert_eq!(ch.health(), Health::Connected);
    ch.stop();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_heartbeat_ack_reconnects_and_resumes() {
    let (gw, mut conns) = gateway().await;
    let (ch, _rx, run) = start(&config(gw, "http://127.0.0.1:9"), 4);
    let (_, mut ws) = next_conn(&mut conns, false).await;
    identify_and_ready(&mut ws, gw, 100).await;
    // Heartbeats are read but never acknowledged: a zombie connection.
    let beat = expect_op(&mut ws, 1).await;
    assert_eq!(beat["d"], 1);
    // The adapter gives up on this connection (close frame, code not 1000) ...
    let closed = expect_op(&mut ws, u64::MAX).await;
    assert_ne!(closed["close"], 1000, "{closed}");
    assert!(closed["close"].is_u64(), "{closed}");
    // ... and resumes on a new one.
    let (path, mut ws) = next_conn(&mut conns, true).await;
    assert!(path.starts_with("/resume"));
    put(&mut ws, hello(100)).await;
    assert_eq!(expect_op(&mut ws, 6).await["d"]["session_id"], "sess1");
    ch.stop();
    run.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentication_close_fails_the_channel() {
    let (gw, mut conns) = gateway().await;
    let (ch, _rx, run) = start(&config(gw, "http://127.0.0.1:9"), 4);
    let (_, mut ws) = next_conn(&mut conns, true).await;
    put(&mut ws, hello(1000)).await;
    expect_op(&mut ws, 2).await;
    ws.out
        .send(Message::Close(Some(CloseFrame {
            code: 4004.into(),
            reason: "Authentication failed.".into(),
        })))
        .unwrap();
    let err = run.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("4004"), "{err}");
    assert_eq!(ch.health(), Health::Failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_speaks_garbage_is_retried_not_fatal() {
    let (gw, mut conns) = gateway().await;
    let (ch, mut rx, run) = start(&config(gw, "http://127.0.0.1:9"), 4);
    // No Hello, only junk, then gone; an absurd heartbeat interval; then a healthy gateway.
    let (_, ws) = next_conn(&mut conns, true).await;
    ws.out.send(Message::text("garbage")).unwrap();
    drop(ws);
    let (_, mut ws) = next_conn(&mut conns, true).await;
    put(&mut ws, hello(0)).await;
    let (_, mut ws) = next_conn(&mut conns, true).await;
    identify_and_ready(&mut ws, gw, 200).await;
    put(
        &mut ws,
        dispatch(2, "MESSAGE_CREATE", message("2001", "42", "finally")),
    )
    .await;
    assert_eq!(recv(&mut rx).await.text, "finally");
    assert_eq!(ch.health(), Health::Connected);
    ch.stop();
    run.await.unwrap().unwrap();
}

/// REST server: per-request arrival times, scripted answers for create-message.
fn rest(script: Arc<Mutex<Vec<Reply>>>, times: Arc<Mutex<Vec<Instant>>>) -> common::Handler {
    Arc::new(move |r: &Recorded| {
        assert_eq!(r.header("authorization"), Some(&*format!("Bot {TOKEN}")));
        assert_eq!(r.path, "/api/v10/channels/555/messages");
        times.lock().unwrap().push(Instant::now());
        script
            .lock()
            .unwrap()
            .pop()
            .unwrap_or_else(|| Reply::json(200, &json!({"id": "1", "channel_id": "555"})))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_chunked_at_2000_and_honour_rate_limits() {
    let script: Arc<Mutex<Vec<Reply>>> = Arc::default();
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let api = serve(rest(Arc::clone(&script), Arc::clone(&times))).await;
    let ch =
        DiscordChannel::new(&config("127.0.0.1:9".parse().unwrap(), &api.base()), &[]).unwrap();
    // Popped from the end: the first answer empties the bucket for 0.5 s, the second is a
    // 429 with retry_after 0.3 s, then success.
    *script.lock().unwrap() = vec![
        Reply::json(
            429,
            &json!({"message": "You are being rate limited.", "retry_after": 0.3,
                                 "global": false}),
        )
        .header("Retry-After", "1"),
        Reply::json(200, &json!({"id": "1"}))
            .header("X-RateLimit-Limit", "5")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset-After", "0.5"),
    ];
    let text = format!("{} tail", "é".repeat(4500));
    ch.send(OutboundMessage {
        chat: "555".into(),
        thread: None,
        in_reply_to: Some("1001".into()),
        text: text.clone(),
    })
    .await
    .unwrap();
    let posts = api.requests_to("/messages");
    let t = times.lock().unwrap().clone();
    // Three chunks, one of them sent twice after the 429.
    assert_eq!(posts.len(), 4);
    assert!(
        t[1] - t[0] >= Duration::from_millis(500),
        "bucket wait honoured"
    );
    assert!(
        t[2] - t[1] >= Duration::from_millis(300),
        "retry_after honoured"
    );
    assert_eq!(posts[1].json(), posts[2].json());
    let mut joined = String::new();
    for (i, p) in [&posts[0], &posts[2], &posts[3]].into_iter().enumerate() {
        let b = p.json();
        let piece = b["content"].as_str().unwrap();
        assert!(piece.chars().count() <= 2000);
        assert_eq!(b["allowed_mentions"]["parse"], json!([]));
        assert_eq!(b.get("message_reference").is_some(), i == 0);
        joined.push_str(piece);
    }
    assert_eq!(joined, text);
    assert_eq!(posts[0].json()["message_reference"]["message_id"], "1001");

    // Refusals: a bad channel id never reaches the server; an API error is reported.
    let before = api.requests_to("/messages").len();
    for chat in ["555/../../guilds/1", "", "abc"] {
        let m = OutboundMessage {
            chat: chat.into(),
            thread: None,
            in_reply_to: None,
            text: "x".into(),
        };
        assert!(ch.send(m).await.is_err());
    }
    assert_eq!(api.requests_to("/messages").len(), before);
    script.lock().unwrap().push(Reply::json(
        403,
        &json!({"message": "Missing Permissions", "code": 50013}),
    ));
    let m = OutboundMessage {
        chat: "555".into(),
        thread: None,
        in_reply_to: None,
        text: "x".into(),
    };
    let err = ch.send(m).await.unwrap_err();
    assert!(err.to_string().contains("Missing Permissions"), "{err}");
}

#[test]
fn config_defaults_and_checks() {
    let parsed: DiscordConfig = serde_json::from_value(json!({"botToken": "x"})).unwrap();
    assert_eq!(parsed.intents, 37377);
    assert_eq!(
        parsed.gateway_url,
        "wss://gateway.discord.gg/?v=10&encoding=json"
    );
    assert!(DiscordChannel::new(&DiscordConfig::default(), &[]).is_err());
    let mut bad = parsed.clone();
    bad.gateway_url = "not a url".into();
    assert!(DiscordChannel::new(&bad, &[]).is_err());
}
