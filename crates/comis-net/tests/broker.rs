//! The credential broker end to end on one host: a real `curl` talks to the in-sandbox relay
//! (TCP on loopback), the relay to the broker's Unix socket, the broker to a local TLS
//! upstream with its own test CA (reached through the guarded client: pinned DNS, verified
//! TLS). Checks the swap, and that 407, 403 and 502 stop before anything reaches upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use comis_net::broker::{Bindings, Broker, BrokerCa, BrokerLimits, BrokerSession};
use comis_net::{ClientConfig, EgressContext, GuardedClient, NetAudit, NetEvent, SsrfPolicy};
use comis_secrets::{SecretManager, SecretString};
use common::{Handler, Server, TableResolver, TestPki, https, respond};

const HOST: &str = "api.upstream.test";
const REAL: &str = "real-key-8c1f2b";

struct Rig {
    broker: Broker,
    upstream: Server,
    relay: SocketAddr,
    ca_file: tempfile::NamedTempFile,
    events: Arc<Mutex<Vec<NetEvent>>>,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let pki = TestPki::new();
    let echo: Handler = Arc::new(|seen| {
        respond(
            200,
            &[("x-upstream", "yes")],
            format!("{} {}", seen.method, seen.uri),
        )
    });
    let upstream = https("127.0.0.1", &pki, &[HOST], echo).await;
    let port = upstream.port();
    let bindings = Bindings::parse(&serde_json::json!([
        {"name": "hdr", "secret": "UPSTREAM_KEY", "env": "UPSTREAM_KEY",
         "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/v1/", "auth": "header", "name": "x-api-key"}]},
        {"name": "qry", "secret": "UPSTREAM_KEY", "env": "UPSTREAM_QUERY_KEY",
         "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/q/", "auth": "query", "name": "token"}]},
        {"name": "bear", "secret": "UPSTREAM_KEY", "env": "UPSTREAM_BEARER",
         "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/b/", "auth": "bearer"}]},
        {"name": "gone", "secret": "NOT_SET", "env": "GONE_KEY",
         "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/m/", "auth": "bearer"}]}
    ]))
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let audit: Arc<dyn NetAudit> =
        Arc::new(move |e: &NetEvent| sink.lock().unwrap().push(e.clone()));
    // The upstream is on loopback here, so the test opens exactly that name.
    let client = GuardedClient::with_resolver(
        SsrfPolicy::with_allow_hosts(&[HOST]).unwrap(),
        ClientConfig {
            extra_roots: vec![pki.ca_der.clone()],
            ..ClientConfig::default()
        },
        TableResolver::with(&[(HOST, &[&["127.0.0.1"]])]),
        Arc::clone(&audit),
    )
    .unwrap();
    let broker = Broker::new(
        bindings,
        BrokerCa::generate().unwrap(),
        client,
        audit,
        BrokerLimits::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("broker.sock");
    let listener = Broker::bind(&sock).unwrap();
    let b = broker.clone();
    tokio::spawn(async move { b.serve(listener).await });
    let relay_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let relay = relay_listener.local_addr().unwrap();
    tokio::spawn(comis_net::relay::serve(relay_listener, sock));
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), broker.ca_pem()).unwrap();
    Rig {
        broker,
        upstream,
        relay,
        ca_file,
        events,
        _dir: dir,
    }
}

fn secrets(with_key: bool) -> Arc<SecretManager> {
    let mut v = vec![(
        "OTHER".to_owned(),
        SecretString::from("unrelated".to_owned()),
    )];
    if with_key {
        v.push((
            "UPSTREAM_KEY".to_owned(),
            SecretString::from(REAL.to_owned()),
        ));
    }
    Arc::new(SecretManager::from_values(v))
}

/// curl's result: the CONNECT status, the final status, and the body.
#[derive(Debug)]
struct Curl {
    connect: u16,
    code: u16,
    body: String,
}

impl Rig {
    fn session(&self, agent: &str) -> BrokerSession {
        self.broker
            .open_session(
                EgressContext::new(agent, format!("trace-{agent}")),
                secrets(true),
            )
            .unwrap()
    }

    /// Runs curl with exactly the environment a broker sandbox gets (proxy from the session).
    async fn curl(&self, proxy: Option<String>, path: &str, extra: &[&str]) -> Curl {
        let url = format!("https://{HOST}:{}{path}", self.upstream.port());
        let mut cmd = Command::new("curl");
        cmd.env_clear()
            .args([
                "-sS",
                "--max-time",
                "20",
                "-w",
                "\n%{http_connect} %{http_code}",
            ])
            .arg("--cacert")
            .arg(self.ca_file.path())
            .args(extra)
            .arg(url);
        match proxy {
            Some(p) => cmd.args(["--proxy", &p]),
            None => cmd.args(["--proxy", &format!("http://{}", self.relay)]),
        };
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, codes) = text.rsplit_once('\n').unwrap();
        let mut it = codes.split(' ').map(|c| c.parse().unwrap_or(0));
        Curl {
            connect: it.next().unwrap(),
            code: it.next().unwrap(),
            body: body.to_owned(),
        }
    }

    fn deny_statuses(&self) -> Vec<u16> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                NetEvent::Deny { status, .. } => Some(*status),
                _ => None,
            })
            .collect()
    }
}

fn proxy_of(s: &BrokerSession, relay: SocketAddr) -> String {
    s.proxy_url(relay).as_str().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_query_and_bearer_are_swapped_for_the_real_secret() {
    let rig = rig().await;
    let s = rig.session("coder");
    let proxy = proxy_of(&s, rig.relay);
    let r = rig
        .curl(
            Some(proxy.clone()),
            "/v1/messages",
            &["-H", "x-api-key: comis-broker-placeholder-hdr", "-d", "{}"],
        )
        .await;
    assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    assert_eq!(r.body, "POST /v1/messages");
    let r = rig
        .curl(
            Some(proxy.clone()),
            "/q/quote?symbol=AAPL&token=comis-broker-placeholder-qry",
            &[],
        )
        .await;
    assert_eq!(r.code, 200, "{r:?}");
    // Dot segments are resolved before matching, and the resolved path is what is sent.
    let r = rig
        .curl(Some(proxy.clone()), "/b/../admin", &["--path-as-is"])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    let r = rig
        .curl(Some(proxy.clone()), "/b/%2e%2e/admin", &["--path-as-is"])
        .await;
    assert_eq!(r.code, 403, "{r:?}");
    let r = rig
        .curl(
            Some(proxy),
            "/b/x/../user",
            &["--path-as-is", "-H", "authorization: Bearer placeholder"],
        )
        .await;
    assert_eq!((r.code, r.body.as_str()), (200, "GET /b/user"), "{r:?}");

    let seen = rig.upstream.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("x-api-key"), Some(REAL));
    assert!(seen[0].header("proxy-authorization").is_none());
    assert_eq!(seen[1].uri, format!("/q/quote?symbol=AAPL&token={REAL}"));
    assert_eq!(
        seen[2].header("authorization"),
        Some(format!("Bearer {REAL}").as_str())
    );
    assert_eq!(seen[0].sni.as_deref(), Some(HOST));

    let events = rig.events.lock().unwrap();
    let injects: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            NetEvent::Inject {
                context,
                binding,
                secret,
                path,
                ..
            } => Some((
                context.agent_id.clone(),
                context.trace_id.clone(),
                binding.clone(),
                secret.clone(),
                path.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(injects.len(), 3);
    assert_eq!(
        injects[0],
        (
            "coder".into(),
            "trace-coder".into(),
            "hdr".into(),
            "UPSTREAM_KEY".into(),
            "/v1/messages".into()
        )
    );
    // No event carries the secret or the token.
    let all = serde_json::to_string(&*events).unwrap();
    assert!(!all.contains(REAL));
    assert!(!all.contains("cbt_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_missing_and_reused_tokens_get_407_and_nothing_upstream() {
    let rig = rig().await;
    let r = rig.curl(None, "/v1/x", &[]).await;
    assert_eq!(r.connect, 407, "missing: {r:?}");
    let bad = format!("http://comis:cbt_forged@{}", rig.relay);
    let r = rig.curl(Some(bad), "/v1/x", &[]).await;
    assert_eq!(r.connect, 407, "forged: {r:?}");
    let s = rig.session("a");
    let proxy = proxy_of(&s, rig.relay);
    drop(s); // the run ended
    let r = rig.curl(Some(proxy), "/v1/x", &[]).await;
    assert_eq!(r.connect, 407, "reused: {r:?}");
    assert_eq!(rig.upstream.connections(), 0);
    assert_eq!(rig.deny_statuses(), [407, 407, 407]);
    let reasons: Vec<String> = rig
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            NetEvent::Deny { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        reasons[0].contains("missing")
            && reasons[1].contains("invalid")
            && reasons[2].contains("reused")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_host_or_path_gets_403_and_nothing_upstream() {
    let rig = rig().await;
    let s = rig.session("b");
    let proxy = proxy_of(&s, rig.relay);
    // A host with no binding: refused at CONNECT, before any TLS.
    let mut cmd = Command::new("curl");
    cmd.env_clear()
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_connect}",
            "--proxy",
            &proxy,
        ])
        .arg("https://evil.example/steal");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    // A bound host on another port, and a path outside every prefix.
    let r = rig.curl(Some(proxy.clone()), "/admin", &[]).await;
    assert_eq!((r.connect, r.code), (200, 403), "{r:?}");
    let r = rig.curl(Some(proxy), "/v1", &[]).await;
    assert_eq!(r.code, 403, "/v1 without the slash is outside /v1/: {r:?}");
    assert_eq!(rig.upstream.connections(), 0);
    assert_eq!(rig.deny_statuses(), [403, 403, 403]);
    let events = rig.events.lock().unwrap();
    let NetEvent::Deny { context, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(
        (context.agent_id.as_str(), context.trace_id.as_str()),
        ("b", "trace-b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_denied_secret_gets_502_and_nothing_upstream() {
    let rig = rig().await;
    let s = rig.session("c");
    let r = rig.curl(Some(proxy_of(&s, rig.relay)), "/m/x", &[]).await;
    assert_eq!((r.connect, r.code), (200, 502), "{r:?}");
    assert!(r.body.contains("NOT_SET"), "{r:?}");
    // A run whose scoped access lacks the key.
    let s = rig
        .broker
        .open_session(EgressContext::new("d", "t-d"), secrets(false))
        .unwrap();
    let r = rig.curl(Some(proxy_of(&s, rig.relay)), "/v1/x", &[]).await;
    assert_eq!(r.code, 502, "{r:?}");
    assert_eq!(rig.upstream.connections(), 0);
    assert_eq!(rig.deny_statuses(), [502, 502]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_garbage_on_the_socket_are_refused() {
    let rig = rig().await;
    let s = rig.session("e");
    let mut cmd = Command::new("curl");
    cmd.env_clear()
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--proxy",
            &proxy_of(&s, rig.relay),
        ])
        .arg(format!("http://{HOST}:{}/v1/x", rig.upstream.port()));
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    // Raw garbage through the relay: the broker answers 400 and closes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = tokio::net::TcpStream::connect(rig.relay).await.unwrap();
    c.write_all(b"\x00\x01garbage\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf).await;
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(rig.upstream.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_a_sandbox_gets_holds_only_the_placeholder() {
    let rig = rig().await;
    let s = rig.session("f");
    let env = s.sandbox_env(
        rig.broker.bindings(),
        rig.relay,
        &rig.ca_file.path().to_string_lossy(),
    );
    // The same shell commands the sandbox test runs: env and /proc/self/environ.
    let mut cmd = Command::new("sh");
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(["-c", "env; echo PROC; cat /proc/self/environ | tr '\\0' '\\n'; curl -sS --max-time 20 -H \"x-api-key: $UPSTREAM_KEY\" \"https://api.upstream.test:$PORT/v1/who\""])
        .env("PORT", rig.upstream.port().to_string());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("UPSTREAM_KEY=comis-broker-placeholder-hdr"),
        "{text}"
    );
    assert!(!text.contains(REAL), "{text}");
    assert!(text.ends_with("GET /v1/who"), "{text}");
    assert_eq!(rig.upstream.requests()[0].header("x-api-key"), Some(REAL));
}
