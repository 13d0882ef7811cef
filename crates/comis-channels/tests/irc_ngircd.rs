//! The IRC channel against a real ngircd on a free loopback port: a raw client mentions the bot
//! in a channel and messages it privately and gets answers; a stranger gets nothing and leaves an
//! audit event; a reply with CR/LF stays within PRIVMSG lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "realservers/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use comis_agent::event::{EventBus, EventKind};
use comis_agent::runtime::TurnRequest;
use comis_channels::config::IrcConfig;
use comis_channels::irc::{IrcChannel, Line, parse_line};
use comis_channels::{ApprovalCommand, ApprovalHandler, Channel, Health, Router, TurnHandler};
use common::{Recorder, data_str, free_port, wait_for_port, which};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

struct Client {
    nick: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(port: u16, nick: &str) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Client {
            nick: nick.to_owned(),
            reader: BufReader::new(r),
            writer: w,
        };
        c.send(&format!("NICK {nick}")).await;
        c.send(&format!("USER {nick} 0 * :{nick}")).await;
        c.wait_for(|l| l.command == "001").await;
        c
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Next line, answering PINGs; None when nothing arrives within `quiet`.
    async fn next(&mut self, quiet: Duration) -> Option<Line> {
        loop {
            let mut raw = String::new();
            match tokio::time::timeout(quiet, self.reader.read_line(&mut raw)).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!("{}: server closed", self.nick),
                Ok(r) => {
                    r.unwrap();
                }
            }
            let Some(line) = parse_line(raw.as_bytes()) else {
                continue;
            };
            if line.command == "PING" {
                let token = line.params.first().cloned().unwrap_or_default();
                self.send(&format!("PONG :{token}")).await;
                continue;
            }
            return Some(line);
        }
    }

    /// Waits (60 s at most: a failure bound) for a line matching `pred`; returns it.
    async fn wait_for(&mut self, pred: impl Fn(&Line) -> bool) -> Line {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Some(line) = self.next(Duration::from_secs(60)).await
                && pred(&line)
            {
                return line;
            }
        }
        panic!("{}: no matching line within 60 s", self.nick);
    }

    /// Every line that arrives until the connection has been quiet for a moment.
    async fn drain(&mut self) -> Vec<Line> {
        let mut out = Vec::new();
        while let Some(l) = self.next(Duration::from_millis(500)).await {
            out.push(l);
        }
        out
    }
}

/// ngircd in the foreground with config `conf`, killed when the handle drops.
fn spawn_ngircd(ngircd: &std::path::Path, conf: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(ngircd)
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn from_bot_privmsg<'a>(target: &'a str, text: &'a str) -> impl Fn(&Line) -> bool + 'a {
    move |l: &Line| {
        l.command == "PRIVMSG"
            && l.prefix.as_ref().is_some_and(|p| p.nick == "comis")
            && l.params.first().is_some_and(|t| t == target)
            && l.params.get(1).is_some_and(|t| t == text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_answers_mentions_and_private_messages_and_ignores_strangers() {
    let Some(ngircd) = which("ngircd") else {
        eprintln!("SKIPPED: ngircd is not installed (scripts/deps installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.test\nInfo = comis test\nListen = 127.0.0.1\nPorts = {port}\n\
             MotdPhrase = test\n[Limits]\nMaxNickLength = 30\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n"
        ),
    )
    .unwrap();
    let mut server = spawn_ngircd(&ngircd, &conf);
    wait_for_port(port, &mut server).await;

    let recorder = Arc::new(Recorder::default());
    let mut bus = EventBus::new();
    bus.add_sink(recorder.clone());
    let handler: TurnHandler = Arc::new(|req: TurnRequest| {
        Box::pin(async move {
            if req.text.contains("multiline") {
                "line one\r\nQUIT :injected\nline three".to_owned()
            } else {
                format!("echo: {}", req.text)
            }
        })
    });
    let channel = Arc::new(
        IrcChannel::new(IrcConfig {
            enabled: true,
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: false,
            nick: "comis".into(),
            channels: vec!["#test".into()],
            flood_interval_ms: 50,
            ..IrcConfig::default()
        })
        .unwrap(),
    );
    let approvals: ApprovalHandler = Arc::new(|cmd: ApprovalCommand| {
        Box::pin(async move {
            format!(
                "{} {} for {} by {}",
                if cmd.approved { "approved" } else { "denied" },
                cmd.id,
                cmd.agent_id,
                cmd.origin.sender
            )
        })
    });
    let mut router = Router::new("default", bus, handler).with_approvals(approvals);
    router.add_channel(
        channel.clone(),
        &["alice".into(), "*!*@trusted.invalid".into()],
        None,
    );
    let router = Arc::new(router);
    tokio::spawn(router.clone().run());

    let mut alice = Client::connect(port, "alice").await;
    alice.send("JOIN #test").await;
    // The bot is in the channel either already (NAMES lists it) or joins later.
    let names = alice
        .wait_for(|l| {
            l.command == "353"
                || (l.command == "JOIN" && l.prefix.as_ref().is_some_and(|p| p.nick == "comis"))
        })
        .await;
    if names.command == "353"
        && !names
            .params
            .last()
            .unwrap()
            .split(' ')
            .any(|n| n.trim_start_matches('@') == "comis")
    {
        alice
            .wait_for(|l| {
                l.command == "JOIN" && l.prefix.as_ref().is_some_and(|p| p.nick == "comis")
            })
            .await;
    }
    assert_eq!(channel.health(), Health::Connected);

    // A mention in the channel, with mIRC formatting that must not reach the agent.
    alice
        .send("PRIVMSG #test :comis: \x02hello\x02 \x0304bot")
        .await;
    alice
        .wait_for(from_bot_privmsg("#test", "echo: hello bot"))
        .await;
    // A private message.
    alice.send("PRIVMSG comis :just between us").await;
    alice
        .wait_for(from_bot_privmsg("alice", "echo: just between us"))
        .await;
    // Approvals typed by an allowed operator go to the approval callback, not the agent.
    alice.send("PRIVMSG comis :/approve ap-1").await;
    alice
        .wait_for(|l| {
            l.command == "PRIVMSG"
                && l.params
                    .get(1)
                    .is_some_and(|t| t.starts_with("approved ap-1 for default by alice!"))
        })
        .await;
    alice.send("PRIVMSG comis :/deny ap-2").await;
    alice
        .wait_for(|l| {
            l.params
                .get(1)
                .is_some_and(|t| t.starts_with("denied ap-2 for default"))
        })
        .await;
    // Channel chatter that does not address the bot is ignored (no event, no reply).
    alice.send("PRIVMSG #test :comisbot: not for you").await;

    // A stranger, in the channel and privately.
    let mut mallory = Client::connect(port, "mallory").await;
    mallory.send("JOIN #test").await;
    mallory.wait_for(|l| l.command == "366").await;
    mallory.send("PRIVMSG #test :comis: let me in").await;
    mallory.send("PRIVMSG comis :psst").await;
    mallory.send("PRIVMSG comis :/approve ap-3").await;
    recorder
        .wait_for(EventKind::SenderRejected, 3, |e| {
            data_str(e, "sender") == "mallory"
        })
        .await;
    let rejected = recorder.events.lock().unwrap().clone();
    for e in rejected
        .iter()
        .filter(|e| e.kind == EventKind::SenderRejected)
    {
        assert_eq!(e.agent_id.as_deref(), Some("default"));
        assert_eq!(data_str(e, "channel"), "irc");
    }

    // A reply carrying CR/LF is three PRIVMSGs, and the bot is still there afterwards.
    alice.send("PRIVMSG comis :multiline please").await;
    alice.wait_for(from_bot_privmsg("alice", "line one")).await;
    alice
        .wait_for(from_bot_privmsg("alice", "QUIT :injected"))
        .await;
    alice
        .wait_for(from_bot_privmsg("alice", "line three"))
        .await;
    alice.send("PRIVMSG #test :comis, still there?").await;
    alice
        .wait_for(from_bot_privmsg("#test", "echo: still there?"))
        .await;

    // Mallory saw the channel replies to alice, but nothing answering mallory.
    for line in mallory.drain().await {
        if line.command == "PRIVMSG" && line.prefix.as_ref().is_some_and(|p| p.nick == "comis") {
            let text = line.params.get(1).cloned().unwrap_or_default();
            assert_ne!(
                line.params[0], "mallory",
                "private answer to a stranger: {text}"
            );
            assert!(
                !text.contains("let me in") && !text.contains("psst"),
                "{text}"
            );
        }
    }
    // Exactly the three stranger messages were rejected; alice's were not.
    assert_eq!(recorder.count(EventKind::SenderRejected, |_| true), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_and_carries_the_conversation() {
    let Some(ngircd) = which("ngircd") else {
        eprintln!("SKIPPED: ngircd is not installed (scripts/deps installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // ngircd may read its key after dropping to `nobody`.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (ca_pem, cert_file, key_file) = common::localhost_cert(dir.path(), "comis test IRC CA");
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();

    let (plain_port, tls_port) = (free_port(), free_port());
    let conf = dir.path().join("ngircd.conf");
    std::fs::write(
        &conf,
        format!(
            "[Global]\nName = irc.test\nInfo = comis test\nListen = 127.0.0.1\nPorts = {plain_port}\n\
             MotdPhrase = test\n[Options]\nPAM = no\nIdent = no\nDNS = no\n\
             [SSL]\nCertFile = {}\nKeyFile = {}\nPorts = {tls_port}\n",
            cert_file.display(),
            key_file.display()
        ),
    )
    .unwrap();
    let mut server = spawn_ngircd(&ngircd, &conf);
    wait_for_port(plain_port, &mut server).await;
    wait_for_port(tls_port, &mut server).await;

    // Without the test CA the server is not trusted: verification is on.
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    assert!(comis_net::connect_tls(tcp, "localhost", &[]).await.is_err());

    let handler: TurnHandler =
        Arc::new(|req: TurnRequest| Box::pin(async move { format!("echo: {}", req.text) }));
    let channel = Arc::new(
        IrcChannel::new(IrcConfig {
            enabled: true,
            host: "localhost".into(),
            port: Some(tls_port),
            nick: "comis".into(),
            ..IrcConfig::default()
        })
        .unwrap()
        .with_extra_roots_pem(ca_pem.as_bytes())
        .unwrap(),
    );
    let mut router = Router::new("default", EventBus::new(), handler);
    router.add_channel(channel.clone(), &["alice".into()], None);
    tokio::spawn(Arc::new(router).run());

    let mut alice = Client::connect(plain_port, "alice").await;
    // The bot is on the server once WHOIS finds it (311); until then ngircd answers 401.
    loop {
        alice.send("WHOIS comis").await;
        let l = alice
            .wait_for(|l| l.command == "311" || l.command == "401")
            .await;
        if l.command == "311" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(channel.health(), Health::Connected);
    alice.send("PRIVMSG comis :over TLS?").await;
    alice
        .wait_for(from_bot_privmsg("alice", "echo: over TLS?"))
        .await;
}
