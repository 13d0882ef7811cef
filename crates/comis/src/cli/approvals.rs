//! `comis approvals list|approve ID|deny ID`: the operator's side of the approval gate, over the
//! running daemon's JSON-RPC (`approvals.list`, `approvals.resolve`; the token needs `admin`).
//!
//! Guarantees: an unknown id or a refused token is one line on stderr and exit 2; a request
//! already resolved the other way is reported with its first decision and exit 1; nothing is resolved without an explicit id (a 4+ character prefix is
//! accepted by the daemon).
//!
//! Does not: resolve approvals while the daemon is stopped (stopping denies them all).

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::rpc::RpcClient;
use super::{CliError, out};

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Debug, Subcommand)]
enum ApprovalsCommand {
    /// Show pending requests.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let the action run.
    Approve {
        /// Request id (or a prefix of 4+ characters).
        id: String,
        /// Why (recorded with the resolution).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse the action.
    Deny {
        /// Request id (or a prefix of 4+ characters).
        id: String,
        /// Why (recorded with the resolution).
        #[arg(long)]
        reason: Option<String>,
    },
}

pub fn run(args: ApprovalsArgs) -> Result<ExitCode, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    let client = RpcClient::local(Duration::from_secs(30))?;
    rt.block_on(async {
        match args.command {
            ApprovalsCommand::List { json } => list(&client, json).await,
            ApprovalsCommand::Approve { id, reason } => resolve(&client, id, true, reason).await,
            ApprovalsCommand::Deny { id, reason } => resolve(&client, id, false, reason).await,
        }
    })
}

fn field(v: &Value, key: &str) -> String {
    let s = v.get(key).and_then(Value::as_str).unwrap_or_default();
    comis_guard::unicode::display_safe(s, 200)
}

async fn list(client: &RpcClient, as_json: bool) -> Result<ExitCode, CliError> {
    let pending = client.call_daemon("approvals.list", json!({})).await?;
    if as_json {
        return out(&format!("{pending}\n"));
    }
    let items = pending.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return out("no pending approvals\n");
    }
    let mut s = String::from("ID\tAGENT\tACTION\tSUMMARY\n");
    for a in &items {
        s.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            field(a, "id"),
            field(a, "agent_id"),
            field(a, "action"),
            field(a, "summary")
        ));
    }
    out(&s)
}

async fn resolve(
    client: &RpcClient,
    id: String,
    approved: bool,
    reason: Option<String>,
) -> Result<ExitCode, CliError> {
    let mut params = json!({"id": id, "approved": approved});
    if let Some(r) = reason {
        params["reason"] = json!(r);
    }
    let r = client.call_daemon("approvals.resolve", params).await?;
    let shown =
        comis_guard::unicode::display_safe(r.get("id").and_then(Value::as_str).unwrap_or(&id), 200);
    let by = field(&r, "by");
    // The daemon's answer is authoritative: resolving an already resolved request returns the
    // first decision, which may not be the one asked for.
    let now = r.get("approved").and_then(Value::as_bool) == Some(true);
    let verdict = |a: bool| if a { "approved" } else { "denied" };
    if now != approved {
        eprintln!(
            "comis: approval {shown} was already {} (by {by})",
            verdict(now)
        );
        return Ok(ExitCode::from(1));
    }
    out(&format!("{} {shown}\n", verdict(now)))
}
