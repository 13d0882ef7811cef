//! `comis init`, `config`, `daemon`, `doctor`, `completions` end to end: the real binary on a
//! temporary `COMIS_HOME`, a real daemon process, real signals, the real SQLite store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use comis_secrets::{ExposeSecret, SecretName, Vault};

const BIN: &str = env!("CARGO_BIN_EXE_comis");
const API_KEY: &str = "sk-ant-api03-Zq8Lw2Hx9Pv4Rt6Yn8Bm1Kc3Xy7";

fn comis(home: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("COMIS_HOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn init(home: &Path) {
    let o = comis(
        home,
        &["init", "--non-interactive", "--gateway-port", "0"],
        "",
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// Stops the daemon of `home` if a test left it running (a failed assertion).
struct Stopper<'a>(&'a Path);
impl Drop for Stopper<'_> {
    fn drop(&mut self) {
        let _ = comis(self.0, &["daemon", "stop", "--timeout", "10"], "");
    }
}

/// `comis init` + `comis daemon start` on `home`; the daemon stops when the result drops.
fn start_daemon(home: &Path) -> Stopper<'_> {
    init(home);
    let o = comis(home, &["daemon", "start"], "");
    let stopper = Stopper(home);
    assert!(o.status.success(), "{}", text(&o));
    stopper
}

/// Sends SIGHUP to the daemon of `home`.
fn hup(home: &Path) {
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
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn init_creates_a_private_home_with_a_vaulted_token() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let o = comis(
        &home,
        &[
            "init",
            "--non-interactive",
            "--provider",
            "anthropic",
            "--api-key-stdin",
        ],
        API_KEY,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains(API_KEY));
    assert_eq!(mode(&home), 0o700);
    for f in ["config.yaml", "master.key", "secrets.enc"] {
        assert_eq!(mode(&home.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&home.join("workspaces/default")), 0o700);
    let config = fs::read_to_string(home.join("config.yaml")).unwrap();
    assert!(!config.contains(API_KEY), "{config}");
    assert!(config.contains("COMIS_GATEWAY_TOKEN"), "{config}");
    let vault = Vault::open(&home).unwrap();
    let token = vault
        .get(&SecretName::new("COMIS_GATEWAY_TOKEN").unwrap())
        .unwrap()
        .unwrap();
    assert!(token.expose_secret().len() >= 32);
    assert!(!config.contains(token.expose_secret()));
    let key = vault
        .get(&SecretName::new("ANTHROPIC_API_KEY").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(key.expose_secret(), API_KEY);
    let o = comis(&home, &["config", "validate"], "");
    assert!(o.status.success(), "{}", text(&o));
    // Without a key it still succeeds, and doctor warns about the provider.
    let home2 = t.path().join("nokey");
    init(&home2);
    let o = comis(&home2, &["doctor", "--json"], "");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let provider = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "provider-keys")
        .unwrap();
    assert_eq!(provider["status"], "warn", "{v}");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let key_before = fs::read(home.join("master.key")).unwrap();
    fs::write(home.join("config.yaml"), "logLevel: debug\n").unwrap();
    let o = comis(&home, &["init", "--non-interactive"], "");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--force"));
    assert_eq!(
        fs::read_to_string(home.join("config.yaml")).unwrap(),
        "logLevel: debug\n"
    );
    let o = comis(&home, &["init", "--non-interactive", "--force"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(home.join("master.key")).unwrap(), key_before);
    assert!(Vault::open(&home).is_ok());
}

#[test]
fn start_status_stop_and_a_second_start_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let o = comis(&home, &["daemon", "status"], "");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = comis(&home, &["daemon", "start"], "");
    let _stop = Stopper(&home);
    assert!(o.status.success(), "{}", text(&o));
    let o = comis(&home, &["daemon", "status", "--json"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pid = v["pid"].as_u64().unwrap();
    assert!(pid > 0);
    assert_eq!(v["agents"], serde_json::json!(["default"]));
    for args in [
        &["daemon", "start"][..],
        &["daemon", "start", "--foreground"],
    ] {
        let o = comis(&home, args, "");
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("already running"), "{}", text(&o));
    }
    assert_eq!(mode(&home.join("logs/daemon.log")), 0o600);
    // A pending approval is denied by the graceful stop.
    let store = comis_store::Store::open_in(&home).unwrap();
    let pending = store
        .request_approval(&comis_store::NewApproval {
            agent: comis_store::AgentId::new("default").unwrap(),
            session: "s".into(),
            tool: "exec".into(),
            action: "rm".into(),
            params: serde_json::json!({}),
            timeout_ms: 600_000,
        })
        .unwrap();
    let o = comis(&home, &["daemon", "stop"], "");
    assert!(o.status.success(), "{}", text(&o));
    let o = comis(&home, &["daemon", "status"], "");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let after = store.get_approval(&pending.id).unwrap().unwrap();
    assert_eq!(after.status, comis_store::ApprovalStatus::Denied);
    let kinds: Vec<String> = store
        .audit_tail(50)
        .unwrap()
        .iter()
        .map(|e| e.to_json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for k in ["daemon:started", "daemon:stopped"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not in {kinds:?}");
    }
    assert!(!home.join("daemon.pid").exists());
    let log = fs::read_to_string(home.join("logs/daemon.log")).unwrap();
    assert!(log.contains("comis daemon ready"), "{log}");
    assert!(log.contains("comis daemon stopped"), "{log}");
    let o = comis(&home, &["daemon", "logs", "-n", "1"], "");
    assert!(o.status.success(), "{}", text(&o));
    let last = String::from_utf8_lossy(&o.stdout);
    assert_eq!(last.lines().count(), 1, "{last}");
    assert!(last.contains("comis daemon stopped"), "{last}");
}

#[test]
fn a_relative_comis_home_names_the_same_directory_for_the_daemon() {
    let t = tempfile::tempdir().unwrap();
    let rel = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_clear()
            .env("COMIS_HOME", "rel-home")
            .current_dir(t.path())
            .output()
            .unwrap()
    };
    assert!(
        rel(&["init", "--non-interactive", "--gateway-port", "0"])
            .status
            .success()
    );
    let abs = t.path().join("rel-home");
    let o = rel(&["daemon", "start"]);
    let _stop = Stopper(&abs);
    assert!(o.status.success(), "{}", text(&o));
    assert!(abs.join("daemon.pid").is_file());
    let o = comis(&abs, &["daemon", "status"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn invalid_config_is_refused_with_position_and_suggestion() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    fs::write(
        home.join("config.yaml"),
        "gateway:\n  host: 127.0.0.1\n  prot: 4766\n",
    )
    .unwrap();
    let want = format!("{}:3:3:", home.join("config.yaml").display());
    for args in [
        &["config", "validate"][..],
        &["daemon", "start"],
        &["daemon", "start", "--foreground"],
    ] {
        let o = comis(&home, args, "");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(err.contains("did you mean `port`"), "{args:?}: {err}");
    }
    let o = comis(&home, &["daemon", "status"], "");
    assert_eq!(o.status.code(), Some(3));
    fs::write(home.join("config.yaml"), "gateway:\n  port: many\n").unwrap();
    let o = comis(&home, &["config", "validate"], "");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(":2:9: gateway.port"),
        "{}",
        text(&o)
    );
    // An agent whose provider is not configured: valid types, refused before the daemon
    // would fail to build it.
    fs::write(
        home.join("config.yaml"),
        "providers:\n  entries:\n    a: { type: anthropic }\nagents:\n  bot:\n    provider: b\n",
    )
    .unwrap();
    let o = comis(&home, &["config", "validate"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(":6:15: agents.bot.provider: no provider \"b\""),
        "{err}"
    );
    assert!(err.contains("configured: a"), "{err}");
}

#[test]
fn billion_laughs_and_oversized_files_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let mut lol = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (p, n) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{p}"); 9].join(",");
        lol.push_str(&format!("{n}: &{n} [{refs}]\n"));
    }
    fs::write(home.join("config.yaml"), &lol).unwrap();
    let start = Instant::now();
    let o = comis(&home, &["config", "validate"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("alias expansion"), "{}", text(&o));
    // Refused while expanding, not after building a billion nodes (generous bound for load).
    assert!(start.elapsed() < Duration::from_secs(20));
    fs::write(home.join("config.yaml"), "#".repeat(2 * 1024 * 1024)).unwrap();
    let o = comis(&home, &["config", "validate"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("limit"), "{}", text(&o));
}

#[test]
fn config_show_redacts_secrets() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let o = comis(&home, &["secrets", "set", "PROVIDER_KEY"], API_KEY);
    assert!(o.status.success(), "{}", text(&o));
    let plain = "plain-text-gateway-secret-0123456789abcdef";
    fs::write(
        home.join("config.yaml"),
        format!(
            "gateway:\n  tokens:\n    - id: a\n      secret: {plain}\n    - id: b\n      \
             secret: {{source: env, id: COMIS_GATEWAY_TOKEN}}\nproviders:\n  entries:\n    \
             p:\n      type: openai\n      headers:\n        x-custom: \"${{PROVIDER_KEY}}\"\n"
        ),
    )
    .unwrap();
    let o = comis(&home, &["config", "show"], "");
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(!shown.contains(plain), "{shown}");
    assert!(!shown.contains(API_KEY), "{shown}");
    let token = Vault::open(&home)
        .unwrap()
        .get(&SecretName::new("COMIS_GATEWAY_TOKEN").unwrap())
        .unwrap()
        .unwrap();
    assert!(!shown.contains(token.expose_secret()), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");
    assert!(shown.contains("x-custom"), "{shown}");
}

#[test]
fn sighup_with_a_broken_file_keeps_the_running_config() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let _stop = start_daemon(&home);
    let hup = || hup(&home);
    let config = home.join("config.yaml");
    let good = fs::read_to_string(&config).unwrap();
    fs::write(&config, format!("{good}agents:\n  second: {{}}\n")).unwrap(); // duplicate key
    hup();
    let log = home.join("logs/daemon.log");
    wait_for("the refused reload in the log", || {
        fs::read_to_string(&log).unwrap().contains("reload refused")
    });
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("duplicate key `agents`"), "{log_text}");
    // A credential in the refused file reaches the log only scrubbed.
    fs::write(&config, format!("{good}{API_KEY}: 1\n")).unwrap();
    hup();
    wait_for("the second refused reload", || {
        fs::read_to_string(&log)
            .unwrap()
            .matches("reload refused")
            .count()
            == 2
    });
    let log_text = fs::read_to_string(&log).unwrap();
    assert!(!log_text.contains(API_KEY), "{log_text}");
    assert!(!log_text.contains(&API_KEY[8..30]), "{log_text}");
    assert!(log_text.contains("[REDACTED"), "{log_text}");
    let o = comis(&home, &["daemon", "status", "--json"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["agents"], serde_json::json!(["default"]));
    // A valid change is taken, and `logs -f` shows it as it is written.
    let mut follow = Command::new(BIN)
        .args(["daemon", "logs", "-f", "-n", "0"])
        .env_clear()
        .env("COMIS_HOME", &home)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    fs::write(
        &config,
        good.replace("agents:\n", "agents:\n  second: { provider: anthropic }\n"),
    )
    .unwrap();
    // `logs -f -n 0` starts at the end of the file whenever it gets there: signal until a
    // reload line written after that arrives.
    let deadline = Instant::now() + Duration::from_secs(30);
    'seen: loop {
        assert!(Instant::now() < deadline, "logs -f did not show the reload");
        hup();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            assert!(
                !line.contains("reload refused"),
                "old lines were printed: {line}"
            );
            if line.contains("configuration reloaded") {
                break 'seen;
            }
        }
    }
    follow.kill().unwrap();
    follow.wait().unwrap();
    wait_for("the reloaded agents in the status", || {
        let o = comis(&home, &["daemon", "status", "--json"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["agents"] == serde_json::json!(["default", "second"])
    });
    // The reload is applied, not only recorded: the new agent answers through the gateway
    // (its provider has no key, so the answer is the provider-unavailable one), and an agent
    // the file never named is still refused.
    let o = comis(&home, &["chat", "--agent", "second", "-m", "hello"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("not available"),
        "{}",
        text(&o)
    );
    let o = comis(&home, &["chat", "--agent", "third", "-m", "hello"], "");
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn a_reload_whose_services_cannot_start_keeps_the_running_ones() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let _stop = start_daemon(&home);
    let status = || {
        let o = comis(&home, &["daemon", "status", "--json"], "");
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_default()
    };
    let before = status()["gateway"].as_str().unwrap().to_owned();
    // A port another process holds: the file is valid, its gateway cannot bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = home.join("config.yaml");
    let good = fs::read_to_string(&config).unwrap();
    assert!(good.contains("port: 0"), "{good}");
    fs::write(&config, good.replace("port: 0", &format!("port: {port}"))).unwrap();
    hup(&home);
    let log = home.join("logs/daemon.log");
    wait_for("the refused reload in the log", || {
        fs::read_to_string(&log)
            .unwrap()
            .contains("its services did not start")
    });
    // Still running, serving again from the previous configuration (port 0: the kernel picks
    // a fresh port, so the state file changes when the gateway is back).
    wait_for("the gateway back in the status", || {
        let v = status();
        v["gateway"]
            .as_str()
            .is_some_and(|g| !g.is_empty() && g != before && !g.ends_with(&format!(":{port}")))
    });
    let o = comis(&home, &["chat", "-m", "hello"], "");
    assert!(o.status.success(), "{}", text(&o));
    drop(taken);
}

fn doctor_json(home: &Path, fix: bool) -> (Option<i32>, serde_json::Value) {
    let args: &[&str] = if fix {
        &["doctor", "--json", "--fix"]
    } else {
        &["doctor", "--json"]
    };
    let o = comis(home, args, "");
    (o.status.code(), serde_json::from_slice(&o.stdout).unwrap())
}

fn status_of(v: &serde_json::Value, id: &str) -> String {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {v}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn doctor_finds_each_seeded_problem_and_fix_repairs() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let (code, v) = doctor_json(&home, false);
    assert_eq!(code, Some(0), "{v}");
    let plain = "sk-proj-plaintextsecretvalue1234567890abcdef";
    fs::write(
        home.join("config.yaml"),
        format!(
            "gateway:\n  host: 0.0.0.0\n  port: 4766\nproviders:\n  entries:\n    openai:\n      \
             type: openai\n      apiKeyName: OPENAI_API_KEY\n      headers:\n        apiKey: {plain}\n\
             security:\n  auditLog: false\n  actionConfirmation:\n    requireForDestructive: false\n  \
             ssrf:\n    allowHosts: [\"169.254.169.254\"]\nchannels:\n  email:\n    enabled: true\n    \
             allowFrom: [\"*\"]\nwebhooks:\n  enabled: true\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(home.join("config.yaml"), fs::Permissions::from_mode(0o644)).unwrap();
    let (code, v) = doctor_json(&home, false);
    assert_eq!(code, Some(1), "{v}");
    for id in [
        "permissions",
        "gateway-exposure",
        "gateway-tokens",
        "plaintext-secrets",
        "approvals",
        "audit-log",
        "ssrf-allow-list",
        "email-allowlist",
        "webhook-secrets",
    ] {
        assert_eq!(status_of(&v, id), "fail", "{id}: {v}");
    }
    assert_eq!(status_of(&v, "provider-keys"), "warn");
    assert!(
        !v.to_string().contains(plain),
        "doctor output leaks the secret"
    );

    let (code, v) = doctor_json(&home, true);
    assert_eq!(
        code,
        Some(1),
        "exposure and switched-off protections remain: {v}"
    );
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("config.yaml")), 0o600);
    for id in ["permissions", "gateway-tokens", "plaintext-secrets"] {
        assert_eq!(status_of(&v, id), "pass", "{id}: {v}");
    }
    let changes = v["changes"].to_string();
    assert!(changes.contains("chmod 700"), "{changes}");
    let config = fs::read_to_string(home.join("config.yaml")).unwrap();
    assert!(!config.contains(plain), "{config}");
    let moved = Vault::open(&home)
        .unwrap()
        .get(&SecretName::new("PROVIDERS_ENTRIES_OPENAI_HEADERS_APIKEY").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(moved.expose_secret(), plain);
    let o = comis(&home, &["config", "validate"], "");
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn doctor_flags_a_weak_token() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let o = comis(&home, &["secrets", "set", "SHORT"], "0123456789");
    assert!(o.status.success(), "{}", text(&o));
    fs::write(
        home.join("config.yaml"),
        "gateway:\n  tokens:\n    - id: a\n      secret: ${SHORT}\n",
    )
    .unwrap();
    let (code, v) = doctor_json(&home, false);
    assert_eq!(code, Some(1));
    assert_eq!(status_of(&v, "gateway-tokens"), "fail", "{v}");
}

#[test]
fn completions_and_service_unit() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    for shell in ["bash", "zsh", "fish"] {
        let o = comis(&home, &["completions", shell], "");
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("daemon"),
            "{shell}"
        );
    }
    let o = comis(&home, &["daemon", "install-service", "--print"], "");
    assert!(o.status.success(), "{}", text(&o));
    let unit = String::from_utf8_lossy(&o.stdout);
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "daemon start --foreground",
    ] {
        assert!(unit.contains(line), "{line}: {unit}");
    }
    assert!(unit.contains(&format!("ReadWritePaths={}", home.display())));
    // Settings that would stop bwrap from building the sandbox.
    for bad in [
        "\nPrivateUsers=",
        "\nRestrictNamespaces=",
        "\nProtectControlGroups=",
    ] {
        assert!(!unit.contains(bad), "{bad}");
    }
}

/// One JSON-RPC call over plain HTTP/1.1 to the gateway at `addr`.
fn rpc(addr: &str, token: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    use std::io::Read;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /rpc HTTP/1.1\r\nHost: comis\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (_, json) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(json).unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_revoked_token_stays_revoked_across_reload_and_restart() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let _stop = start_daemon(&home);
    let token = Vault::open(&home)
        .unwrap()
        .get(&SecretName::new("COMIS_GATEWAY_TOKEN").unwrap())
        .unwrap()
        .unwrap();
    let gateway = || {
        let o = comis(&home, &["daemon", "status", "--json"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["gateway"].as_str().unwrap_or_default().to_owned()
    };
    let chat_works = || comis(&home, &["chat", "-m", "hello"], "").status.success();
    assert!(chat_works());
    let v = rpc(
        &gateway(),
        token.expose_secret(),
        "tokens.revoke",
        serde_json::json!({"id": "default"}),
    );
    assert_eq!(v["result"]["revoked"], "default", "{v}");
    assert_eq!(v["result"]["persisted"], true, "{v}");
    assert!(!chat_works(), "the revoked token still works");
    let store = comis_store::Store::open_in(&home).unwrap();
    assert!(
        store.audit_tail(50).unwrap().iter().any(|e| {
            let e = e.to_json();
            e["type"] == "gateway:token_revoked"
                && e["metadata"]["tokenId"] == "default"
                && e["metadata"]["by"] == "token:default"
                && e["metadata"]["persisted"] == true
        }),
        "no audit record of the revocation"
    );
    drop(store);
    // The file names the secret's digest, never the secret.
    let file = fs::read_to_string(home.join("revoked-tokens")).unwrap();
    assert_eq!(file.trim().len(), 64, "{file}");
    assert!(!file.contains(token.expose_secret()));

    let before = gateway();
    hup(&home);
    wait_for("the reloaded gateway", || {
        let g = gateway();
        !g.is_empty() && g != before
    });
    assert!(!chat_works(), "a reload brought the revoked token back");

    let o = comis(&home, &["daemon", "stop", "--timeout", "10"], "");
    assert!(o.status.success(), "{}", text(&o));
    let o = comis(&home, &["daemon", "start"], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!chat_works(), "a restart brought the revoked token back");
    // A damaged file fails closed: the daemon refuses to start rather than forget.
    let o = comis(&home, &["daemon", "stop", "--timeout", "10"], "");
    assert!(o.status.success(), "{}", text(&o));
    fs::write(home.join("revoked-tokens"), "not a digest\n").unwrap();
    let o = comis(&home, &["daemon", "start", "--foreground"], "");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("revoked-tokens"), "{}", text(&o));
}

/// One HTTP/1.1 POST to the gateway at `addr`: the status code and the body.
fn post(addr: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: comis\r\n{extra}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (code, body.unwrap_or_default())
}

#[test]
fn a_webhook_accepted_before_a_reload_is_refused_as_a_replay_after_it() {
    use hmac::{Mac, digest::KeyInit};
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    init(&home);
    let secret = "w".repeat(40);
    let config = home.join("config.yaml");
    let mut yaml = fs::read_to_string(&config).unwrap();
    yaml.push_str(&format!(
        "webhooks:\n  enabled: true\n  hooks:\n    - name: ci\n      secret: \"{secret}\"\n"
    ));
    fs::write(&config, yaml).unwrap();
    let o = comis(&home, &["daemon", "start"], "");
    let _stop = Stopper(&home);
    assert!(o.status.success(), "{}", text(&o));
    let gateway = || {
        let o = comis(&home, &["daemon", "status", "--json"], "");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["gateway"].as_str().unwrap_or_default().to_owned()
    };
    let body = r#"{"build":"green"}"#;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    let signature = format!(
        "sha256={}",
        comis_guard::hex::encode(&mac.finalize().into_bytes())
    );
    let headers = [
        ("x-webhook-signature", signature.as_str()),
        ("x-webhook-timestamp", ts.as_str()),
    ];
    let before = gateway();
    let (code, reply) = post(&before, "/hooks/ci", &headers, body);
    assert_eq!(code, 202, "{reply}");
    let (code, reply) = post(&before, "/hooks/ci", &headers, body);
    assert_eq!(code, 401, "{reply}");
    assert!(reply.contains("replayed"), "{reply}");
    hup(&home);
    wait_for("the reloaded gateway", || {
        let g = gateway();
        !g.is_empty() && g != before
    });
    let (code, reply) = post(&gateway(), "/hooks/ci", &headers, body);
    assert_eq!(code, 401, "a reload forgot an accepted delivery: {reply}");
    assert!(reply.contains("replayed"), "{reply}");
}
