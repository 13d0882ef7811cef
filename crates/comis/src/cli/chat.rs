//! `comis chat`: talk to an agent through the running daemon's gateway, as any client would.
//!
//! With `-m` one message goes out as JSON-RPC `agent.execute` and the reply text is printed
//! (exit 0; a refused token, an unreachable daemon or a gateway error is one line on stderr and
//! exit 2). Without it, a REPL over `GET /ws`: each line is an `agent.stream` call whose
//! `agent.stream.event` notifications print as they arrive; an `approval_requested` event asks
//! "approve? [y/N]" on the terminal and answers with `approvals.resolve` over HTTP (the socket is
//! busy with the streamed call).
//!
//! Guarantees: the only hosts contacted are the gateway's (SSRF policy with that one loopback
//! exception); the token never appears in output or errors (the WebSocket URL is shown without
//! its query). Server text is printed display-safe (no terminal control sequences).
//!
//! Does not: keep history between REPL runs (the daemon's session does), or reconnect a
//! dropped socket.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use comis_net::SsrfPolicy;
use comis_net::ws::{WsConfig, WsMessage};
use comis_secrets::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::rpc::RpcClient;
use super::{CliError, out};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The agent to talk to (default: the configured default agent).
    #[arg(long)]
    agent: Option<String>,
    /// The session key (default: chosen by the gateway for this token).
    #[arg(long)]
    session: Option<String>,
    /// Send this one message, print the reply and exit.
    #[arg(short, long)]
    message: Option<String>,
    /// Seconds one turn may take (it includes waiting for approvals).
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

pub fn run(args: ChatArgs) -> Result<ExitCode, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let client = RpcClient::local(Duration::from_secs(args.timeout))?;
    match args.message.clone() {
        Some(message) => rt.block_on(once(&client, &args, message)),
        None => rt.block_on(repl(&client, &args)),
    }
}

fn turn_params(args: &ChatArgs, message: String) -> Value {
    let mut p = json!({ "message": message });
    if let Some(a) = &args.agent {
        p["agentId"] = json!(a);
    }
    if let Some(s) = &args.session {
        p["sessionKey"] = json!(s);
    }
    p
}

fn safe(text: &str) -> String {
    comis_guard::unicode::strip_invisible(text)
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

async fn once(client: &RpcClient, args: &ChatArgs, message: String) -> Result<ExitCode, CliError> {
    let reply = client
        .call_daemon("agent.execute", turn_params(args, message))
        .await?;
    let text = reply
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    out(&format!("{}\n", safe(text)))
}

/// Stdin lines, read on a blocking thread so the socket keeps being served meanwhile.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn prompt(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(text.as_bytes());
    let _ = o.flush();
}

async fn repl(client: &RpcClient, args: &ChatArgs) -> Result<ExitCode, CliError> {
    let base = url::Url::parse(client.base())
        .map_err(|e| CliError::Usage(format!("gateway URL {}: {e}", client.base())))?;
    let host = base.host_str().unwrap_or("127.0.0.1").to_owned();
    let mut ws_url = base.clone();
    let _ = ws_url.set_scheme("ws");
    ws_url.set_path("/ws");
    ws_url
        .query_pairs_mut()
        .append_pair("token", client.token().expose_secret());
    let policy = SsrfPolicy::with_allow_hosts(&[host.as_str()])?;
    let mut ws = match comis_net::ws::connect(ws_url.as_str(), &policy, &WsConfig::default()).await
    {
        Ok(ws) => ws,
        Err(e) if !client.healthy().await => {
            return Err(CliError::Usage(format!(
                "cannot reach the comis daemon at {} ({e}); is it running? (`comis daemon start`)",
                client.base()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let interactive = std::io::stdin().is_terminal();
    let mut lines = stdin_lines();
    let mut next_id: u64 = 1;
    loop {
        if interactive {
            prompt("you> ");
        }
        let Some(line) = lines.recv().await else {
            break;
        };
        let line = line.trim().to_owned();
        if line.is_empty() {
            continue;
        }
        if line == "/quit" || line == "/exit" {
            break;
        }
        let id = next_id;
        next_id += 1;
        let call = json!({"jsonrpc": "2.0", "id": id, "method": "agent.stream",
                          "params": turn_params(args, line)});
        ws.send_text(&call.to_string()).await?;
        match stream_turn(&mut ws, client, &mut lines, id).await? {
            Turn::Done => {}
            Turn::Closed(why) => {
                eprintln!("comis: the gateway closed the connection: {why}");
                return Ok(ExitCode::from(2));
            }
        }
    }
    ws.close(1000, "bye").await;
    Ok(ExitCode::SUCCESS)
}

enum Turn {
    Done,
    Closed(String),
}

/// Serves the socket until the answer to call `id` arrives.
async fn stream_turn(
    ws: &mut comis_net::ws::WsConnection,
    client: &RpcClient,
    lines: &mut mpsc::Receiver<String>,
    id: u64,
) -> Result<Turn, CliError> {
    let mut printed = false;
    loop {
        let msg = match ws.recv().await? {
            None => return Ok(Turn::Closed("connection ended".into())),
            Some(WsMessage::Close { code, reason }) => {
                return Ok(Turn::Closed(format!("{code} {}", safe(&reason))));
            }
            Some(WsMessage::Binary(_)) => continue,
            Some(WsMessage::Text(t)) => t,
        };
        let Ok(v) = serde_json::from_str::<Value>(&msg) else {
            continue;
        };
        if v.get("id").and_then(Value::as_u64) == Some(id) {
            if let Some(err) = v.get("error") {
                let m = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("error");
                eprintln!("comis: gateway error: {}", safe(m));
            } else if !printed {
                let text = v["result"]["text"].as_str().unwrap_or_default();
                out(&format!("{}\n", safe(text)))?;
            } else {
                out("\n")?;
            }
            return Ok(Turn::Done);
        }
        if v.get("method").and_then(Value::as_str) != Some("agent.stream.event")
            || v["params"]["requestId"].as_u64() != Some(id)
        {
            continue;
        }
        let ev = &v["params"]["event"];
        match ev["type"].as_str().unwrap_or_default() {
            "text" => {
                // Each event is one whole assistant message (per step), not a token delta.
                if printed {
                    prompt("\n");
                }
                printed = true;
                prompt(&safe(ev["text"].as_str().unwrap_or_default()));
            }
            "tool_started" => {
                eprintln!("[tool {}]", safe(ev["action"].as_str().unwrap_or_default()));
            }
            "approval_requested" => {
                let aid = ev["id"].as_str().unwrap_or_default().to_owned();
                prompt(&format!(
                    "\napproval {} for {}: {}\napprove? [y/N] ",
                    safe(&aid),
                    safe(ev["action"].as_str().unwrap_or_default()),
                    safe(ev["summary"].as_str().unwrap_or_default())
                ));
                let answer = lines.recv().await.unwrap_or_default();
                if !std::io::stdin().is_terminal() {
                    // No echo from a terminal: end the prompt's line ourselves.
                    prompt("\n");
                }
                let approved = matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes");
                let params = json!({"id": aid, "approved": approved});
                if let Err(e) = client.call("approvals.resolve", params).await {
                    eprintln!("comis: resolving approval {}: {e}", safe(&aid));
                }
            }
            "approval_resolved" => {
                let verdict = if ev["approved"].as_bool() == Some(true) {
                    "approved"
                } else {
                    "denied"
                };
                eprintln!(
                    "[approval {} {verdict}]",
                    safe(ev["id"].as_str().unwrap_or_default())
                );
            }
            _ => {}
        }
    }
}
