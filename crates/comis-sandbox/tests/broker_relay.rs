//! `network: broker` with a [`BrokerRelay`]: the daemon-set environment channel and the relay
//! wiring, against the real bubblewrap profile. The relay here is a stand-in script bound
//! where the `comis` binary would be (the real relay is exercised end to end by
//! `crates/comis/tests/broker_sandbox.rs`); what is tested is the sandbox's part: what it
//! binds, in which order it starts things, what it lets through and what it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use comis_sandbox::{
    BrokerRelay, ExecState, Exit, Network, SandboxConfig, SandboxError, SystemEnv,
};
use common::*;
use zeroize::Zeroizing;

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";

/// A stand-in relay: records that it ran (and with which arguments) in the workspace,
/// announces `ready`, closes its stdout, and then stays up like the real one.
const GOOD_RELAY: &str = "#!/bin/sh\n\
    echo \"$*\" > \"$HOME/relay-args\"\n\
    echo ready\n\
    exec >/dev/null\n\
    exec sleep 600\n";

/// A relay that fails before listening.
const BAD_RELAY: &str = "#!/bin/sh\necho 'relay: cannot bind' >&2\nexit 1\n";

struct Fixture {
    home: Home,
    _dir: tempfile::TempDir,
    relay: PathBuf,
    socket: PathBuf,
    _listener: UnixListener,
}

fn fixture(relay_script: &str) -> Fixture {
    let home = Home::new();
    assert!(
        matches!(home.sandbox().state(), ExecState::Sandboxed { .. }),
        "these tests need a working sandbox: {:?}",
        probe()
    );
    let dir = tempfile::Builder::new()
        .prefix("comis-relay-")
        .tempdir_in("/tmp")
        .unwrap();
    let relay = dir.path().join("comis");
    std::fs::write(&relay, relay_script).unwrap();
    std::fs::set_permissions(&relay, std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("broker.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    Fixture {
        home,
        _dir: dir,
        relay,
        socket,
        _listener: listener,
    }
}

impl Fixture {
    fn sandbox(&self) -> comis_sandbox::Sandbox {
        self.home.sandbox_with(SandboxConfig {
            broker_relay: Some(BrokerRelay::new(&self.relay, CA).unwrap()),
            ..SandboxConfig::default()
        })
    }

    fn request(&self, command: &str, system: &[(&str, &str)]) -> comis_sandbox::ExecRequest {
        let mut req = self.home.request(command);
        req.network = Network::Broker(self.socket.clone());
        req.system_env = system_env(system);
        req.timeout = Some(Duration::from_secs(60));
        req
    }
}

fn system_env(vars: &[(&str, &str)]) -> SystemEnv {
    SystemEnv::new(
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), Zeroizing::new((*v).to_owned()))),
    )
}

const BROKER_ENV: &[(&str, &str)] = &[
    ("HTTPS_PROXY", "http://comis:cbt_tok3n@127.0.0.1:3128"),
    ("https_proxy", "http://comis:cbt_tok3n@127.0.0.1:3128"),
    ("NO_PROXY", ""),
    ("NODE_USE_ENV_PROXY", "1"),
    ("SSL_CERT_FILE", "/run/comis/broker-ca.pem"),
    ("NODE_EXTRA_CA_CERTS", "/run/comis/broker-ca.pem"),
    ("GH_TOKEN", "comis-broker-placeholder-github"),
];

#[test]
fn relay_starts_before_the_command_and_ends_with_it() {
    let f = fixture(GOOD_RELAY);
    let req = f.request(
        "cat relay-args; cat /run/comis/broker-ca.pem; echo \"proxy=$HTTPS_PROXY\"; \
         echo \"ca=$SSL_CERT_FILE gh=$GH_TOKEN\"; \
         (echo x > /run/comis/broker-ca.pem) 2>/dev/null || echo ca-read-only; \
         (echo x > /run/comis/comis) 2>/dev/null || echo relay-read-only",
        BROKER_ENV,
    );
    let o = f.sandbox().run(&req, &AllowAll).unwrap();
    let out = all_output(&o);
    // The relay ran first, told where to listen and which socket to use.
    assert!(
        out.contains(
            "broker-relay --listen 127.0.0.1:3128 --socket /run/comis/broker.sock --ready"
        ),
        "{out}"
    );
    assert!(out.contains("MIIBfake"), "{out}");
    assert!(
        out.contains("proxy=http://comis:cbt_tok3n@127.0.0.1:3128"),
        "{out}"
    );
    assert!(
        out.contains("ca=/run/comis/broker-ca.pem gh=comis-broker-placeholder-github"),
        "{out}"
    );
    assert!(
        out.contains("ca-read-only") && out.contains("relay-read-only"),
        "{out}"
    );
    // The stand-in relay would sleep for ten minutes: the run ends with the command anyway.
    assert_eq!(o.report.exit, Exit::Code(0), "{out}");
}

#[test]
fn a_relay_that_does_not_start_means_the_command_does_not_run() {
    let f = fixture(BAD_RELAY);
    let o = f
        .sandbox()
        .run(&f.request("echo COMMAND-RAN", BROKER_ENV), &AllowAll)
        .unwrap();
    let out = all_output(&o);
    assert_eq!(o.report.exit, Exit::Code(125), "{out}");
    assert!(!out.contains("COMMAND-RAN"), "{out}");
    assert!(out.contains("broker relay did not start"), "{out}");
}

#[test]
fn stdin_still_reaches_the_command() {
    let f = fixture(GOOD_RELAY);
    let mut req = f.request("cat", &[]);
    req.stdin = Some(b"to-the-command".to_vec());
    let o = f.sandbox().run(&req, &AllowAll).unwrap();
    assert_eq!(text(&o.stdout), "to-the-command", "{o:?}");
}

#[test]
fn the_daemon_env_wins_over_an_agent_variable_of_the_same_name() {
    let f = fixture(GOOD_RELAY);
    let mut req = f.request("echo \"gh=$GH_TOKEN\"", BROKER_ENV);
    req.env = vec![("GH_TOKEN".into(), "agent-chosen".into())];
    let o = f.sandbox().run(&req, &AllowAll).unwrap();
    let out = all_output(&o);
    assert!(out.contains("gh=comis-broker-placeholder-github"), "{out}");
    assert!(!out.contains("agent-chosen"), "{out}");
}

#[test]
fn the_daemon_env_is_not_shown_to_the_agent_policy() {
    // The policy sees the agent's variables only: the broker's names are exactly what it
    // must refuse from an agent, so a policy that refuses them does not block the run.
    struct RefuseProxyVars;
    impl comis_sandbox::CommandPolicy for RefuseProxyVars {
        fn check(&self, _: &str, env: &[(String, String)]) -> Result<(), String> {
            match env
                .iter()
                .find(|(n, _)| n.contains("PROXY") || n.contains("CERT"))
            {
                Some((n, _)) => Err(format!("agent may not set {n}")),
                None => Ok(()),
            }
        }
    }
    let f = fixture(GOOD_RELAY);
    let o = f
        .sandbox()
        .run(
            &f.request("echo \"$HTTPS_PROXY\"", BROKER_ENV),
            &RefuseProxyVars,
        )
        .unwrap();
    assert!(text(&o.stdout).contains("cbt_tok3n"), "{o:?}");
    // …and the same names from the agent are refused.
    let mut req = f.request("true", &[]);
    req.env = vec![("HTTPS_PROXY".into(), "http://evil.test:1".into())];
    assert!(matches!(
        f.sandbox().run(&req, &RefuseProxyVars),
        Err(SandboxError::Blocked(_))
    ));
}

#[test]
fn hostile_daemon_env_is_refused_before_anything_runs() {
    let f = fixture(GOOD_RELAY);
    for bad in [
        ("LD_PRELOAD", "comis-broker-placeholder-x"),
        ("BASH_ENV", "comis-broker-placeholder-x"),
        ("PATH", "comis-broker-placeholder-x"),
        ("GH_TOKEN", "ghp_a_real_token"),
        ("HTTPS_PROXY", "http://evil.test:8080"),
        ("SSL_CERT_FILE", "/tmp/attacker-ca.pem"),
        ("NO_PROXY", "*"),
        ("BAD NAME", "comis-broker-placeholder-x"),
    ] {
        let req = f.request("touch ran", &[bad]);
        let err = f.sandbox().run(&req, &AllowAll).unwrap_err();
        assert!(matches!(err, SandboxError::Config(_)), "{bad:?}: {err}");
        assert!(
            !err.to_string().contains(bad.1) || bad.1.is_empty() || bad.1 == "*",
            "{err}"
        );
        assert!(!f.home.workspace.join("ran").exists(), "{bad:?}");
    }
}

#[test]
fn daemon_env_needs_broker_mode_and_a_relay() {
    let f = fixture(GOOD_RELAY);
    // No relay configured.
    let req = f.request("true", BROKER_ENV);
    assert!(matches!(
        f.home.sandbox().run(&req, &AllowAll),
        Err(SandboxError::Config(_))
    ));
    // Not broker mode.
    let mut req = f.request("true", BROKER_ENV);
    req.network = Network::None;
    assert!(matches!(
        f.sandbox().run(&req, &AllowAll),
        Err(SandboxError::Config(_))
    ));
    // Without a relay, broker mode is still the bare socket (nothing bound at the CA path).
    let req = f.request("test -e /run/comis/broker-ca.pem || echo no-ca", &[]);
    let o = f.home.sandbox().run(&req, &AllowAll).unwrap();
    assert!(text(&o.stdout).contains("no-ca"), "{o:?}");
}

#[test]
fn broker_relay_refuses_keys_junk_and_missing_programs() {
    let f = fixture(GOOD_RELAY);
    let key = format!("{CA}-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n");
    for pem in [
        key.as_str(),
        "",
        "not a certificate",
        &format!("{CA}{}", "A".repeat(40 * 1024)),
        "-----BEGIN CERTIFICATE-----\n\0\n",
    ] {
        assert!(BrokerRelay::new(&f.relay, pem).is_err(), "{:.40}", pem);
    }
    assert!(BrokerRelay::new(Path::new("/nonexistent/comis"), CA).is_err());
    assert!(BrokerRelay::new(Path::new("/usr"), CA).is_err());
    // A relay program that is a hidden path is never bound.
    let hidden = f.home.root().join("master.key");
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sandbox = f.home.sandbox_with(SandboxConfig {
        broker_relay: Some(BrokerRelay::new(&hidden, CA).unwrap()),
        ..SandboxConfig::default()
    });
    assert!(matches!(
        sandbox.run(&f.request("true", &[]), &AllowAll),
        Err(SandboxError::Config(_))
    ));
}
