//! `GET /ws`: JSON-RPC over WebSocket with server notifications.
//!
//! Guarantees:
//! - The token comes from `Authorization: Bearer` or `?token=`; a missing or bad one gets the
//!   upgrade and then close code 4001 at once, before any message is read. A token without
//!   `ws`, `rpc` or `admin` gets 4003.
//! - Every message re-checks that the token is still active: revocation closes the socket
//!   (4001) at the next message.
//! - Per connection: text frames only (binary → −32700), `wsMessageRateLimit` (→ −32000),
//!   `wsMaxMessageBytes` (→ −32600; frames past twice that size end the connection without being
//!   buffered whole).
//! - Notifications carry no id: `heartbeat` every `wsHeartbeatMs`, `agent.stream.event` for a
//!   streamed turn (all before that call's response), and `approval.requested` to admin tokens.
//! - On shutdown clients get close 1001 "Server shutting down".
//!
//! Not guaranteed: delivery of notifications to a client that reads too slowly (the outbound
//! queue is bounded; a full queue waits, and a dead peer ends the connection).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap};
use axum::response::Response;
use comis_agent::event::EventKind;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::auth::{Caller, WindowCounter};
use crate::rpc::{self, INVALID_REQUEST, PARSE_ERROR, RATE_LIMITED};
use crate::server::{AppState, client_ip, conn_info, now_ms, stopped};

/// Close code for a missing, invalid or revoked token.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
/// Close code for a valid token without a WebSocket-capable scope.
pub const CLOSE_FORBIDDEN: u16 = 4003;

#[derive(Debug, Deserialize)]
pub(crate) struct WsQuery {
    #[serde(default)]
    token: Option<String>,
}

pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    ext: Extensions,
    ws: WebSocketUpgrade,
) -> Response {
    let conn = conn_info(&ext);
    let ip = client_ip(&ext, &conn);
    let cap = state.config.ws_max_message_bytes.saturating_mul(2);
    let ws = ws.max_message_size(cap).max_frame_size(cap);
    match state.check_token(&headers, q.token.as_deref(), ip, &conn) {
        Err(reason) => {
            state.auth_failed(ip, conn.client_cn.as_deref(), "/ws", reason);
            refuse(ws, CLOSE_UNAUTHORIZED, "Unauthorized")
        }
        Ok(caller) if !caller.has_any(&["ws", "rpc", "admin"]) => {
            state.auth_failed(ip, conn.client_cn.as_deref(), "/ws", "insufficient scope");
            refuse(ws, CLOSE_FORBIDDEN, "Insufficient scope: requires 'ws'")
        }
        Ok(caller) => ws.on_upgrade(move |socket| async move {
            session(state, caller, socket).await;
            // Released only now: an open socket counts against maxConnections.
            drop(conn.slot);
        }),
    }
}

fn refuse(ws: WebSocketUpgrade, code: u16, reason: &'static str) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        let _ = socket.send(close(code, reason)).await;
    })
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

async fn session(state: Arc<AppState>, caller: Caller, socket: WebSocket) {
    state.metrics.ws_connections.fetch_add(1, Ordering::Relaxed);
    state.metrics.ws_active.fetch_add(1, Ordering::Relaxed);
    let (sink, mut stream) = socket.split();
    let (out_tx, out_rx) = mpsc::channel::<Value>(256);
    let (close_tx, close_rx) = watch::channel::<Option<(u16, &'static str)>>(None);
    let writer = tokio::spawn(write_loop(
        state.clone(),
        caller.has_scope("admin"),
        sink,
        out_rx,
        close_rx,
    ));

    let limit = state.config.ws_message_rate_limit;
    let mut counter =
        WindowCounter::new(Duration::from_millis(limit.window_ms), limit.max_messages);
    let max = state.config.ws_max_message_bytes;
    let mut writer = writer;
    let mut writer_done = false;
    loop {
        let msg = tokio::select! {
            next = stream.next() => match next {
                Some(Ok(m)) => m,
                _ => break,
            },
            // The writer has closed the socket (shutdown, dead peer): stop reading too.
            _ = &mut writer => { writer_done = true; break; }
        };
        let text = match msg {
            Message::Text(t) => Some(t),
            Message::Binary(_) => None,
            Message::Close(_) => break,
            _ => continue,
        };
        if !state.tokens.is_active(&caller.token_id) {
            let _ = close_tx.send(Some((CLOSE_UNAUTHORIZED, "Token revoked")));
            break;
        }
        if !counter.allow() {
            let _ = out_tx
                .send(rpc::error_value(
                    Value::Null,
                    RATE_LIMITED,
                    "Rate limit exceeded",
                ))
                .await;
            continue;
        }
        let Some(text) = text else {
            let _ = out_tx
                .send(rpc::error_value(
                    Value::Null,
                    PARSE_ERROR,
                    "Binary messages not supported",
                ))
                .await;
            continue;
        };
        if text.len() > max {
            let msg = format!("Invalid Request: message larger than {max} bytes");
            let _ = out_tx
                .send(rpc::error_value(Value::Null, INVALID_REQUEST, &msg))
                .await;
            continue;
        }
        let (state, caller, out) = (state.clone(), caller.clone(), out_tx.clone());
        tokio::spawn(async move {
            if let Some(answer) =
                rpc::handle_payload(&state, &caller, text.as_bytes(), Some(&out)).await
            {
                let _ = out.send(answer).await;
            }
        });
    }
    drop(out_tx);
    if !writer_done {
        let _ = writer.await;
    }
    drop(close_tx);
    state.metrics.ws_active.fetch_sub(1, Ordering::Relaxed);
}

async fn write_loop(
    state: Arc<AppState>,
    admin: bool,
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<Value>,
    mut close_rx: watch::Receiver<Option<(u16, &'static str)>>,
) {
    let period = Duration::from_millis(state.config.ws_heartbeat_ms.max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut shutdown = state.shutdown.clone();
    let mut bus = state.events.subscribe();
    let mut close_live = true;
    let mut bus_live = admin;
    loop {
        let message = tokio::select! {
            // A pending close wins over queued output: a revoked token gets nothing more.
            biased;
            changed = close_rx.changed(), if close_live => match (changed.is_ok(), read_close(&close_rx)) {
                (true, Some((code, reason))) => {
                    let _ = sink.send(close(code, reason)).await;
                    break;
                }
                (true, None) => continue,
                (false, _) => { close_live = false; continue; }
            },
            next = out.recv() => match next {
                Some(v) => Message::Text(v.to_string().into()),
                None => break,
            },
            _ = heartbeat.tick() => {
                Message::Text(json!({"jsonrpc": "2.0", "method": "heartbeat", "params": {"ts": now_ms()}}).to_string().into())
            }
            () = stopped(&mut shutdown) => {
                let _ = sink.send(close(1001, "Server shutting down")).await;
                break;
            }
            event = bus.recv(), if bus_live => match event {
                Ok(e) if e.event.kind == EventKind::ApprovalRequested => {
                    let mut params = e.event.data.clone();
                    if let Some(agent) = &e.event.agent_id { params.insert("agentId".into(), agent.clone().into()); }
                    if let Some(trace) = &e.event.trace_id { params.insert("traceId".into(), trace.clone().into()); }
                    Message::Text(json!({"jsonrpc": "2.0", "method": "approval.requested", "params": params}).to_string().into())
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => { bus_live = false; continue; }
            },
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

fn read_close(rx: &watch::Receiver<Option<(u16, &'static str)>>) -> Option<(u16, &'static str)> {
    *rx.borrow()
}
