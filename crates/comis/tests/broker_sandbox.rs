//! The credential broker with the real sandbox, through the real path: `comis sandbox run
//! --network broker --broker-socket … --broker-ca … --broker-env …` binds the broker's CA and
//! the comis binary, starts the relay (`comis broker-relay`) inside and runs the command once
//! it listens. A `curl` inside reaches a local TLS upstream (its own test CA) through the
//! relay and the broker's Unix socket (the only network path bound in), and the upstream
//! receives the real key, while `env` and `/proc/self/environ` inside show only the
//! placeholder, the broker's refusals are observed, and direct egress fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use comis_net::broker::SANDBOX_CA_FILE;
use comis_net::broker::{Bindings, Broker, BrokerCa, BrokerLimits};
use comis_net::resolve::{LookupFuture, Resolver};
use comis_net::{ClientConfig, EgressContext, GuardedClient, NetAudit, NetEvent, SsrfPolicy};
use comis_sandbox::HostProbe;
use comis_secrets::{SecretManager, SecretString};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_comis");
const HOST: &str = "api.upstream.test";
const REAL: &str = "sk-real-5f0c9d1e7a";

/// The upstream's name resolves to loopback (the test's only "internet").
#[derive(Debug)]
struct UpstreamDns;
impl Resolver for UpstreamDns {
    fn lookup<'a>(&'a self, host: &'a str) -> LookupFuture<'a> {
        let ok = host == HOST;
        Box::pin(async move {
            if ok {
                Ok(vec!["127.0.0.1".parse().unwrap()])
            } else {
                Err(std::io::Error::new(std::io::ErrorKind::NotFound, "unknown"))
            }
        })
    }
}

/// A TLS upstream that records each request head and answers with its request line.
async fn upstream(
    seen: Arc<Mutex<Vec<String>>>,
) -> (u16, rustls_pki_types::CertificateDer<'static>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "upstream test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![HOST.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or("").to_owned();
                seen.lock().unwrap().push(head);
                let body = format!("upstream saw: {line}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, ca_cert.der().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxed_curl_gets_the_real_key_upstream_and_only_the_placeholder_inside() {
    let probe = HostProbe::run(None);
    assert!(
        probe.namespaces.active,
        "this test needs a working bubblewrap sandbox: {}",
        probe.namespaces.detail
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (port, upstream_ca) = upstream(Arc::clone(&seen)).await;

    // The daemon side: bindings, CA, guarded upstream client, broker on a Unix socket.
    let home = tempfile::Builder::new()
        .prefix("comis-home-")
        .tempdir_in("/tmp")
        .unwrap();
    let run_dir = home.path().join("run");
    std::fs::create_dir(&run_dir).unwrap();
    let bindings = Bindings::parse(&serde_json::json!([{
        "name": "upstream", "secret": "UPSTREAM_KEY", "env": "UPSTREAM_KEY",
        "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/v1/", "auth": "header", "name": "x-api-key"}]
    }, {
        "name": "gone", "secret": "NOT_IN_THE_VAULT", "env": "GONE_KEY",
        "hostRules": [{"host": HOST, "port": port, "pathPrefix": "/m/", "auth": "bearer"}]
    }]))
    .unwrap();
    let events = Arc::new(Mutex::new(Vec::<NetEvent>::new()));
    let sink = Arc::clone(&events);
    let audit: Arc<dyn NetAudit> =
        Arc::new(move |e: &NetEvent| sink.lock().unwrap().push(e.clone()));
    let client = GuardedClient::with_resolver(
        SsrfPolicy::with_allow_hosts(&[HOST]).unwrap(),
        ClientConfig {
            extra_roots: vec![upstream_ca],
            ..ClientConfig::default()
        },
        Arc::new(UpstreamDns),
        Arc::clone(&audit),
    )
    .unwrap();
    let ca = BrokerCa::load_or_create(home.path()).unwrap();
    let broker = Broker::new(bindings, ca, client, audit, BrokerLimits::default());
    let socket = run_dir.join("broker.sock");
    let listener = Broker::bind(&socket).unwrap();
    let b = broker.clone();
    tokio::spawn(async move { b.serve(listener).await });

    // What the daemon hands the sandbox: the CA certificate and the session's environment
    // (proxy URL with the token, CA variables naming the fixed in-sandbox path, placeholders).
    let ca_file = home.path().join("broker-ca.pem");
    std::fs::write(&ca_file, broker.ca_pem()).unwrap();
    let secrets = Arc::new(SecretManager::from_values([(
        "UPSTREAM_KEY".to_owned(),
        SecretString::from(REAL.to_owned()),
    )]));
    let session = broker
        .open_session(EgressContext::new("coder", "trace-sbx"), secrets)
        .unwrap();
    let relay = "127.0.0.1:3128".parse().unwrap();
    let env_file = home.path().join("broker.env");
    let env_text: String = session
        .sandbox_env(broker.bindings(), relay, SANDBOX_CA_FILE)
        .into_iter()
        .map(|(k, v)| format!("{k}={}\n", v.as_str()))
        .collect();
    std::fs::write(&env_file, env_text).unwrap();

    let workspace = home.path().join("workspaces/coder");
    std::fs::create_dir_all(&workspace).unwrap();
    // The probe is a script in the workspace: the command line stays plain (`sh probe.sh`)
    // for the exec validator, and the script shows what the sandbox and the broker stop.
    // No retries: the sandbox starts the command only once the relay listens.
    let script = format!(
        "curl -sS --max-time 30 -H \"x-api-key: $UPSTREAM_KEY\" https://{HOST}:{port}/v1/messages; echo\n\
         echo ENV-BEGIN; env; echo ENV-END\n\
         echo PROC-BEGIN; cat /proc/self/environ | tr '\\0' '\\n'; echo PROC-END\n\
         curl -s -o /dev/null -w 'bad-token=%{{http_connect}}\\n' --proxy http://comis:cbt_forged@127.0.0.1:3128 https://{HOST}:{port}/v1/x\n\
         curl -s -o /dev/null -w 'unbound-host=%{{http_connect}}\\n' https://evil.example/\n\
         curl -s -o /dev/null -w 'unbound-path=%{{http_code}}\\n' https://{HOST}:{port}/admin\n\
         curl -s -o /dev/null -w 'missing-secret=%{{http_code}}\\n' https://{HOST}:{port}/m/x\n\
         curl -sS --noproxy '*' --max-time 5 -k https://127.0.0.1:{port}/v1/messages\n\
         echo \"direct=$?\"\n"
    );
    std::fs::write(workspace.join("probe.sh"), script).unwrap();

    // The real path: `comis sandbox run --network broker`, which binds the CA and this
    // binary, starts the relay inside and waits for it before running the command.
    let args: Vec<std::ffi::OsString> = vec![
        "sandbox".into(),
        "run".into(),
        "--workspace".into(),
        workspace.clone().into(),
        "--hide".into(),
        home.path().into(),
        "--network".into(),
        "broker".into(),
        "--broker-socket".into(),
        socket.clone().into(),
        "--broker-ca".into(),
        ca_file.clone().into(),
        "--broker-env".into(),
        env_file.clone().into(),
        "--timeout".into(),
        "90".into(),
        "--".into(),
        "sh probe.sh".into(),
    ];
    let home_dir = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args(&args)
            .env("COMIS_HOME", &home_dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stdout}\n{stderr}\n{:?}", out.status);
    assert_eq!(out.status.code(), Some(0), "{all}");

    // Through the broker: the upstream got the real key, the CLI got the answer.
    assert!(stdout.contains("upstream saw: GET /v1/messages"), "{all}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains(&format!("x-api-key: {REAL}").to_ascii_lowercase()),
        "{}",
        heads[0]
    );
    // Inside: only the placeholder, in env and in /proc/self/environ; never the key.
    let section = |a: &str, b: &str| {
        stdout
            .split(a)
            .nth(1)
            .and_then(|s| s.split(b).next())
            .unwrap_or("")
            .to_owned()
    };
    for part in [
        section("ENV-BEGIN", "ENV-END"),
        section("PROC-BEGIN", "PROC-END"),
    ] {
        assert!(
            part.contains("UPSTREAM_KEY=comis-broker-placeholder-upstream"),
            "{part} / {all}"
        );
        assert!(part.contains("HTTPS_PROXY=http://comis:cbt_"), "{part}");
    }
    assert!(
        !all.contains(REAL),
        "the real key leaked into the sandbox: {all}"
    );
    // Each refusal is observed inside, and none of them reached the upstream.
    for want in [
        "bad-token=407",
        "unbound-host=403",
        "unbound-path=403",
        "missing-secret=502",
    ] {
        assert!(stdout.contains(want), "{want}: {all}");
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Direct egress (the upstream's own address, bypassing the proxy) fails: no network.
    assert!(
        stdout.contains("direct=") && !stdout.contains("direct=0"),
        "{all}"
    );
    // Audited with the run's ids.
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NetEvent::Inject { context, .. }
        if context.agent_id == "coder" && context.trace_id == "trace-sbx")),
        "{events:?}"
    );
    drop(session);
    assert_eq!(broker.live_sessions(), 0);
}
