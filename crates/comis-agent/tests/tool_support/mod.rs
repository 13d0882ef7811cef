//! Shared fixtures for the tool tests: a real store, a real workspace, a recording `Services`
//! port (a port of the daemon, not a provider), and helpers to call a tool by action name.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use comis_agent::EventBus;
use comis_agent::event::Emitted;
use comis_agent::provider::BoxFuture;
use comis_agent::tool::{Services, Tool, ToolContext, ToolError, ToolOutput, builtin_tools};
use serde_json::Value;

/// Records every call; answers from fixed data.
#[derive(Debug, Default)]
pub struct RecordingServices {
    pub calls: Mutex<Vec<String>>,
}

impl RecordingServices {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl Services for RecordingServices {
    fn send_message<'a>(
        &'a self,
        channel: &'a str,
        chat: &'a str,
        text: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if channel != "irc" {
                return Err(format!("no channel {channel}"));
            }
            self.log(format!("send {channel} {chat} {text}"));
            Ok(())
        })
    }
    fn list_channels(&self) -> Vec<String> {
        vec!["irc".into(), "email".into()]
    }
    fn spawn_agent<'a>(
        &'a self,
        parent: &'a str,
        depth: u32,
        task: String,
    ) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            self.log(format!("spawn {parent} {depth} {task}"));
            Ok(format!(
                "sub-agent of {parent} at depth {depth} did: {task}"
            ))
        })
    }
    fn revoke_token(&self, id: &str, _by: &str) -> Result<(), String> {
        self.log(format!("revoke {id}"));
        Ok(())
    }
    fn delete_agent(&self, id: &str) -> Result<(), String> {
        self.log(format!("delete {id}"));
        Ok(())
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ws: PathBuf,
    pub ctx: ToolContext,
    pub services: Arc<RecordingServices>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("comis-tools-")
            .tempdir_in("/tmp")
            .unwrap();
        let ws = dir.path().join("workspace");
        std::fs::create_dir(&ws).unwrap();
        let store = Arc::new(comis_store::Store::open(&dir.path().join("comis.db")).unwrap());
        let services = Arc::new(RecordingServices::default());
        let ctx = ToolContext {
            agent_id: "alpha".into(),
            trace_id: "trace-1".into(),
            session: "s1".into(),
            workspace: ws.clone(),
            sandbox: None,
            http: None,
            store,
            events: EventBus::new(),
            services: services.clone(),
            depth: 0,
        };
        Fixture {
            dir,
            ws,
            ctx,
            services,
        }
    }

    pub async fn call(&self, action: &str, args: Value) -> Result<ToolOutput, ToolError> {
        call_with(&self.ctx, action, args).await
    }
}

pub fn tool(action: &str) -> Arc<dyn Tool> {
    builtin_tools()
        .into_iter()
        .find(|t| t.action() == action)
        .unwrap_or_else(|| panic!("no tool {action}"))
}

pub async fn call_with(
    ctx: &ToolContext,
    action: &str,
    args: Value,
) -> Result<ToolOutput, ToolError> {
    tool(action).call(ctx, args).await
}

/// The probed sandbox of this host (bubblewrap is installed on CI and here).
pub fn sandbox() -> Arc<comis_sandbox::Sandbox> {
    static SB: OnceLock<Arc<comis_sandbox::Sandbox>> = OnceLock::new();
    SB.get_or_init(|| {
        let probe = comis_sandbox::HostProbe::run(None);
        let sb =
            comis_sandbox::Sandbox::new(comis_sandbox::SandboxConfig::default(), &probe).unwrap();
        assert!(
            matches!(sb.state(), comis_sandbox::ExecState::Sandboxed { .. }),
            "bubblewrap must work on this host: {:?}",
            sb.state()
        );
        Arc::new(sb)
    })
    .clone()
}

/// Drains the events emitted so far on a subscription.
pub fn drain(rx: &mut tokio::sync::broadcast::Receiver<Emitted>) -> Vec<Emitted> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[track_caller]
pub fn assert_invalid(r: &Result<ToolOutput, ToolError>) {
    assert!(
        matches!(r, Err(ToolError::InvalidArguments(_))),
        "expected invalid arguments, got {r:?}"
    );
}

#[track_caller]
pub fn assert_refused(r: &Result<ToolOutput, ToolError>, want: &str) {
    match r {
        Err(ToolError::Refused { layer, .. }) if *layer == want => {}
        other => panic!("expected refusal by {want}, got {other:?}"),
    }
}
