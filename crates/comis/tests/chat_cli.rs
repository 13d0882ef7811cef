//! `comis chat` and `comis approvals` end to end: the real binary, a real daemon on a temporary
//! `COMIS_HOME`, its real gateway, and the model as a LOCAL server speaking the OpenAI wire
//! format (comis-testkit). The official OpenAI Python client talks to the daemon's
//! `/v1/chat/completions` when it is installed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use comis_secrets::{ExposeSecret, SecretName, Vault};
use comis_testkit::provider::{ProviderServer, Reply};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_comis");

fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_clear()
        .env("COMIS_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn comis(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = command(home, args).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops the daemon of `home` when the test ends, passed or failed.
struct Stopper(PathBuf);
impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = comis(&self.0, &["daemon", "stop", "--timeout", "10"], "");
    }
}

/// A home whose default agent answers through `provider` (an OpenAI wire server), with the
/// gateway on a free loopback port; the daemon is not started.
fn home_with(dir: &Path, provider: &ProviderServer) -> PathBuf {
    let home = dir.join("home");
    let o = comis(
        &home,
        &["init", "--non-interactive", "--gateway-port", "0"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    let config = format!(
        "gateway:\n\
         \x20 host: 127.0.0.1\n\
         \x20 port: 0\n\
         \x20 tokens:\n\
         \x20   - id: default\n\
         \x20     secret: {{ source: env, id: COMIS_GATEWAY_TOKEN }}\n\
         \x20     scopes: [\"*\"]\n\
         providers:\n\
         \x20 entries:\n\
         \x20   local:\n\
         \x20     type: openai\n\
         \x20     baseUrl: \"{}\"\n\
         \x20     maxRetries: 0\n\
         agents:\n\
         \x20 default:\n\
         \x20   provider: local\n\
         \x20   model: gpt-test\n\
         approvals:\n\
         \x20 defaultTimeoutMs: 600000\n",
        provider.base_url()
    );
    std::fs::write(home.join("config.yaml"), config).unwrap();
    home
}

fn start(home: &Path) -> Stopper {
    let o = comis(home, &["daemon", "start"], "");
    let stopper = Stopper(home.to_owned());
    assert!(o.status.success(), "{}", text(&o));
    stopper
}

fn token(home: &Path) -> String {
    Vault::open(home)
        .unwrap()
        .get(&SecretName::new("COMIS_GATEWAY_TOKEN").unwrap())
        .unwrap()
        .unwrap()
        .expose_secret()
        .to_owned()
}

fn gateway(home: &Path) -> String {
    let state: Value =
        serde_json::from_slice(&std::fs::read(home.join("daemon.json")).unwrap()).unwrap();
    state["gateway"].as_str().unwrap().to_owned()
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_kinds(home: &Path) -> Vec<String> {
    let store = comis_store::Store::open_in(home).unwrap();
    store
        .audit_tail(500)
        .unwrap()
        .iter()
        .map(|e| e.to_json()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn chat_m_answers_through_a_local_openai_server() {
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    provider.push(Reply::text("Hello from the local model."));
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), &provider);
    let _stop = start(&home);

    let o = comis(&home, &["chat", "-m", "hi"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "Hello from the local model.\n", "{}", text(&o));

    let requests = provider.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body = requests[0].json();
    assert_eq!(body["model"], "gpt-test", "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system", "{body}");
    assert!(
        !messages[0]["content"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{body}"
    );
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "user", "{body}");
    assert!(last["content"].to_string().contains("hi"), "{body}");
}

#[test]
fn chat_fails_clearly_without_a_daemon_or_with_a_bad_token() {
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), &provider);
    // Not started: the configured port 0 cannot be reached.
    let o = comis(&home, &["chat", "-m", "hi"], "");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("daemon"), "{}", text(&o));
    let _stop = start(&home);
    let o = command(&home, &["chat", "-m", "hi"])
        .env("COMIS_GATEWAY_TOKEN", "0".repeat(64))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("401"), "{}", text(&o));
    assert!(!text(&o).contains(&token(&home)), "{}", text(&o));
    let o = command(&home, &["approvals", "list"])
        .env("COMIS_GATEWAY_TOKEN", "0".repeat(64))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(provider.request_count(), 0);
}

#[test]
fn approvals_deny_from_the_cli_stops_a_pending_exec() {
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("ran");
    provider.push(Reply::tool_call(
        "call_1",
        "system_exec",
        json!({"command": format!("touch {}", marker.display())}),
    ));
    provider.push(Reply::text("All done."));
    let home = home_with(t.path(), &provider);
    let _stop = start(&home);
    let o = comis(&home, &["approvals", "list"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "no pending approvals\n");

    let chat: Child = command(&home, &["chat", "-m", "please run it"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pending = wait_for("the approval request", || {
        let o = comis(&home, &["approvals", "list", "--json"], "");
        assert!(o.status.success(), "{}", text(&o));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v.as_array().unwrap().first().cloned()
    });
    assert_eq!(pending["action"], "system.exec", "{pending}");
    let id = pending["id"].as_str().unwrap();
    let o = comis(&home, &["approvals", "list"], "");
    assert!(stdout(&o).contains(id), "{}", text(&o));
    assert!(stdout(&o).contains("system.exec"), "{}", text(&o));

    let o = comis(
        &home,
        &["approvals", "deny", id, "--reason", "not today"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), format!("denied {id}\n"));
    let o = chat.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(stdout(&o), "All done.\n", "{}", text(&o));
    assert!(!marker.exists(), "the denied command ran");

    // The model was told the action was denied and not run.
    let requests = provider.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let followup = requests[1].text();
    assert!(followup.contains("denied"), "{followup}");
    assert!(followup.contains("not run"), "{followup}");
    let kinds = audit_kinds(&home);
    for k in ["approval:requested", "approval:resolved"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not in {kinds:?}");
    }
    // Approving it afterwards does not undo the denial.
    let o = comis(&home, &["approvals", "approve", id], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already denied"), "{}", text(&o));
    // An unknown id is an error.
    let o = comis(
        &home,
        &["approvals", "deny", "ffffffffffffffffffffffffffffffff"],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn chat_repl_streams_over_websocket_and_asks_before_a_destructive_action() {
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    let t = tempfile::tempdir().unwrap();
    let marker = t.path().join("ran");
    provider.push(Reply::text("Streamed hello.").chunk_chars(3));
    provider.push(Reply::tool_call(
        "call_1",
        "system_exec",
        json!({"command": format!("touch {}", marker.display())}),
    ));
    provider.push(Reply::text("Understood, not running it."));
    let home = home_with(t.path(), &provider);
    let _stop = start(&home);

    // Line one is a plain turn; line two triggers the approval, line three answers it "n".
    let o = comis(&home, &["chat"], "hello\nplease run it\nn\n");
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("Streamed hello.\n"), "{}", text(&o));
    assert!(out.contains("approve? [y/N]"), "{}", text(&o));
    assert!(out.contains("system.exec"), "{}", text(&o));
    assert!(out.contains("Understood, not running it."), "{}", text(&o));
    // Progress arrives as agent.stream.event notifications on the socket.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("denied]"), "{}", text(&o));
    assert!(!marker.exists(), "the denied command ran");
    assert_eq!(provider.request_count(), 3);
    // Both turns were one session: the third request carries the first exchange.
    assert!(provider.requests()[2].text().contains("Streamed hello."));
}

#[test]
fn openai_python_client_chats_and_streams_through_the_gateway() {
    let probe = Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    if !matches!(&probe, Ok(o) if o.status.success()) {
        eprintln!("skipped: the openai Python package is not installed (scripts/deps installs it)");
        return;
    }
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    provider.push(Reply::text("Answer one."));
    provider.push(Reply::text("Answer two, streamed.").chunk_chars(4));
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), &provider);
    let _stop = start(&home);
    let script = r#"
import sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0, timeout=120)
r = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "first"}])
print("FULL:" + r.choices[0].message.content)
s = client.chat.completions.create(model="default", stream=True,
                                   messages=[{"role": "user", "content": "second"}])
parts = [c.choices[0].delta.content or "" for c in s if c.choices]
print("CHUNKS:%d" % len([p for p in parts if p]))
print("STREAM:" + "".join(parts))
"#;
    let base = format!("http://{}/v1", gateway(&home));
    let o = Command::new("python3")
        .args(["-c", script, &base, &token(&home)])
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("FULL:Answer one.\n"), "{}", text(&o));
    assert!(
        out.contains("STREAM:Answer two, streamed.\n"),
        "{}",
        text(&o)
    );
    assert!(!out.contains("CHUNKS:0"), "{}", text(&o));
    assert_eq!(provider.request_count(), 2);
}

#[test]
fn model_text_cannot_drive_the_terminal() {
    let rt = runtime();
    let provider = rt.block_on(ProviderServer::openai()).unwrap();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2Jred\u{202e}txt.exe\rgone";
    provider.set_fallback(Reply::text(hostile));
    let t = tempfile::tempdir().unwrap();
    let home = home_with(t.path(), &provider);
    let _stop = start(&home);
    for (args, stdin) in [(&["chat", "-m", "hi"][..], ""), (&["chat"][..], "hi\n")] {
        let o = comis(&home, args, stdin);
        assert!(o.status.success(), "{}", text(&o));
        let out = stdout(&o);
        assert!(out.contains("red"), "{out:?}");
        for bad in ['\u{1b}', '\u{7}', '\u{202e}', '\r'] {
            assert!(!out.contains(bad), "{bad:?} in {out:?}");
        }
    }
    assert_eq!(provider.request_count(), 2);
}
