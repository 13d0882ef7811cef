//! The email channel against real servers on free loopback ports: Debian's dovecot (IMAP, with
//! IDLE) holds the bot's mailbox, python3-aiosmtpd receives the replies into a maildir. An
//! allowed sender gets an answer in the same thread; a stranger, an auto-reply and a mailing-list
//! message get nothing, each with its audit event (recorded in a real hash-chained audit log).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "realservers/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comis_agent::event::{AuditSink, EventBus, EventKind};
use comis_agent::runtime::TurnRequest;
use comis_channels::config::EmailConfig;
use comis_channels::email::EmailChannel;
use comis_channels::{Channel, Router, TurnHandler};
use common::{Recorder, data_str, free_port, wait_for_port, which};

const PYTHON: &str = "/usr/bin/python3";

/// dovecot on `port`: plain IMAP, or implicit TLS with `tls` = (cert, key) files.
fn dovecot_conf(dir: &Path, port: u16, tls: Option<(&Path, &Path)>) -> String {
    let d = dir.display();
    let (ssl, listeners) = match tls {
        None => (
            "ssl = no\ndisable_plaintext_auth = no\n".to_owned(),
            format!(
                "  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n\
                 inet_listener imaps {{\n    port = 0\n  }}\n"
            ),
        ),
        Some((cert, key)) => (
            format!(
                "ssl = required\nssl_cert = <{}\nssl_key = <{}\n",
                cert.display(),
                key.display()
            ),
            format!(
                "  inet_listener imap {{\n    port = 0\n  }}\n\
                 inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port}\n    ssl = yes\n  }}\n"
            ),
        ),
    };
    format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\n\
         instance_name = comis-test-{port}\nprotocols = imap\nlisten = 127.0.0.1\n{ssl}\
         auth_mechanisms = plain login\n\
         mail_location = maildir:{d}/mail/%u\n\
         default_internal_user = dovecot\ndefault_login_user = dovenull\nfirst_valid_uid = 1\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid=dovecot gid=dovecot home={d}/mail/%u\n}}\n\
         service imap-login {{\n  chroot =\n{listeners}}}\n\
         service anvil {{\n  chroot =\n}}\n"
    )
}

fn mail(from: &str, id: &str, subject: &str, extra: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: bot@example.test\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\n\
         Date: Fri, 4 Dec 2026 10:00:00 +0000\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
}

async fn append(port: u16, raw: &str) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    let mut session = client
        .login("bot@example.test", "s3cret")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    session
        .append("INBOX", None, None, raw.as_bytes())
        .await
        .unwrap();
    session.logout().await.unwrap();
}

/// The replies the SMTP server received, parsed, once there are `n` of them (60 s at most).
async fn wait_for_sent(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let new = dir.join("new");
    for _ in 0..1_200 {
        let files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if files.len() >= n {
            return files.iter().map(|f| std::fs::read(f).unwrap()).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} replies after 60 s");
}

/// The dovecot binary and a fresh directory with the bot's mail store and password file; None,
/// after saying so, when dovecot or aiosmtpd is not installed.
fn mail_dir() -> Option<(PathBuf, tempfile::TempDir)> {
    let (Some(dovecot), true) = (
        which("dovecot"),
        Path::new("/usr/lib/python3/dist-packages/aiosmtpd").is_dir(),
    ) else {
        eprintln!(
            "SKIPPED: dovecot-imapd or python3-aiosmtpd is not installed (scripts/deps installs them)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    // dovecot drops to its own users: they must reach the directory and write the store.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path().join("mail")).unwrap();
    std::fs::set_permissions(
        dir.path().join("mail"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("passwd"),
        "bot@example.test:{PLAIN}s3cret\n",
    )
    .unwrap();
    Some((dovecot, dir))
}

/// dovecot (plain IMAP on loopback, `extra` appended to its config) and aiosmtpd (plain SMTP
/// into the `sent` maildir). None, after saying so, when either is not installed.
struct PlainServers {
    dir: tempfile::TempDir,
    imap_port: u16,
    smtp_port: u16,
    sent: PathBuf,
    _children: Vec<tokio::process::Child>,
}

impl PlainServers {
    async fn start(extra: &str) -> Option<PlainServers> {
        let (dovecot, dir) = mail_dir()?;
        let imap_port = free_port();
        let smtp_port = free_port();
        let conf = dir.path().join("dovecot.conf");
        let text = dovecot_conf(dir.path(), imap_port, None) + extra;
        std::fs::write(&conf, text).unwrap();
        let mut imap_server = tokio::process::Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let sent = dir.path().join("sent");
        let mut smtp_server = tokio::process::Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{smtp_port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&sent)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_port(imap_port, &mut imap_server).await;
        wait_for_port(smtp_port, &mut smtp_server).await;
        Some(PlainServers {
            dir,
            imap_port,
            smtp_port,
            sent,
            _children: vec![imap_server, smtp_server],
        })
    }

    fn config(&self) -> EmailConfig {
        EmailConfig {
            enabled: true,
            imap_host: "127.0.0.1".into(),
            imap_port: self.imap_port,
            smtp_host: "127.0.0.1".into(),
            smtp_port: self.smtp_port,
            secure: false,
            address: "bot@example.test".into(),
            password: Some("s3cret".to_owned().into()),
            allow_from: vec!["alice@example.test".into()],
            ..EmailConfig::default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_sender_gets_a_threaded_answer_and_automatic_or_strange_mail_gets_nothing() {
    let Some(servers) = PlainServers::start("").await else {
        return;
    };
    let (dir, imap_port, sent) = (servers.dir.path(), servers.imap_port, servers.sent.clone());

    // One mail waits before the bot starts (the first drain), the rest arrive while it IDLEs.
    let question = mail(
        "Alice <alice@example.test>",
        "q1@example.test",
        "Question",
        "",
        "What is 2+2?",
    );
    append(imap_port, &question).await;

    let store = Arc::new(comis_store::Store::open(&dir.join("comis.db")).unwrap());
    let recorder = Arc::new(Recorder::default());
    let mut bus = EventBus::new();
    bus.add_sink(Arc::new(AuditSink::new(store.clone())));
    bus.add_sink(recorder.clone());
    let handler: TurnHandler =
        Arc::new(|req: TurnRequest| Box::pin(async move { format!("echo: {}", req.text) }));
    let config = EmailConfig {
        // Far longer than the test may take: the later mails must wake the bot through IDLE.
        polling_interval_ms: 600_000,
        ..servers.config()
    };
    let allow = config.effective_allow_from();
    let channel = Arc::new(EmailChannel::new(config, bus.clone(), "default").unwrap());
    let mut router = Router::new("default", bus, handler);
    router.add_channel(channel.clone(), &allow, None);
    let router = Arc::new(router);
    tokio::spawn(router.clone().run());

    let first = wait_for_sent(&sent, 1).await;
    let reply = mail_parser::MessageParser::default()
        .parse(&first[0])
        .unwrap();
    assert_eq!(reply.in_reply_to().as_text(), Some("q1@example.test"));
    assert_eq!(reply.subject(), Some("Re: Question"));
    let to = reply
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap();
    assert_eq!(to, "alice@example.test");
    let body = reply.body_text(0).unwrap();
    assert!(body.starts_with("echo: "), "{body}");
    assert!(body.contains("What is 2+2?"));
    // The agent saw the body as external content, with the sender and subject.
    assert!(
        body.contains("<<<UNTRUSTED_") && body.contains("Subject: Question"),
        "{body}"
    );

    // A stranger, an auto-reply and a list message (both from the allowed address).
    append(
        imap_port,
        &mail(
            "mallory@example.test",
            "s1@example.test",
            "Hi",
            "",
            "let me in",
        ),
    )
    .await;
    append(
        imap_port,
        &mail(
            "alice@example.test",
            "a1@example.test",
            "Out of office",
            "Auto-Submitted: auto-replied\r\n",
            "away",
        ),
    )
    .await;
    append(
        imap_port,
        &mail(
            "alice@example.test",
            "l1@example.test",
            "[list] digest",
            "Precedence: list\r\nList-Unsubscribe: <mailto:leave@lists.example.test>\r\n",
            "news",
        ),
    )
    .await;
    recorder
        .wait_for(EventKind::SenderRejected, 1, |e| {
            data_str(e, "sender") == "mallory@example.test"
        })
        .await;
    recorder
        .wait_for(EventKind::MessageDropped, 2, |_| true)
        .await;
    let reasons: Vec<String> = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::MessageDropped)
        .map(|e| data_str(e, "reason").to_owned())
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("Auto-Submitted")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("Precedence") || r == "List-Unsubscribe"),
        "{reasons:?}"
    );

    // The first question delivered again (a redelivery with the same Message-ID): no answer.
    append(imap_port, &question).await;
    // Hostile mail: no sender at all, a broken MIME tree, a forged reply chain with CR/LF
    // smuggling in an id. None is answered; the bot carries on.
    append(imap_port, "Subject: nobody\r\n\r\n\u{1}\u{7f} junk\r\n").await;
    append(
        imap_port,
        &mail(
            "mallory@example.test",
            "s2@example.test",
            "=?utf-8?B?!!!?=",
            "Content-Type: multipart/mixed; boundary=\"x\"\r\n",
            "--x\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x--",
        ),
    )
    .await;
    // A follow-up in the thread: answered with the whole chain in References.
    append(
        imap_port,
        &mail(
            "alice@example.test",
            "q2@example.test",
            "Re: Re: Question",
            "In-Reply-To: <r1@example.test>\r\nReferences: <q1@example.test> <r1@example.test>\r\n",
            "And 3+3?",
        ),
    )
    .await;
    let all = wait_for_sent(&sent, 2).await;
    let parsed: Vec<_> = all
        .iter()
        .map(|raw| mail_parser::MessageParser::default().parse(raw).unwrap())
        .collect();
    let second = parsed
        .iter()
        .find(|m| m.in_reply_to().as_text() == Some("q2@example.test"))
        .expect("reply to q2");
    let refs = second
        .references()
        .as_text_list()
        .map(|l| l.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(
        refs,
        ["q1@example.test", "r1@example.test", "q2@example.test"]
    );
    assert_eq!(second.subject(), Some("Re: Re: Question"));
    // Only alice's two questions were answered: nothing for the stranger, the auto-reply, the
    // list or the redelivered question, though they all arrived before the second question.
    assert_eq!(parsed.len(), 2);
    for m in &parsed {
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap();
        assert_eq!(to, "alice@example.test");
    }

    // The four drops (two strangers, the auto-reply, the list) are in the hash-chained audit log.
    recorder
        .wait_for(EventKind::SenderRejected, 2, |e| {
            data_str(e, "sender") == "mallory@example.test"
        })
        .await;
    let report = store.verify_audit().unwrap();
    assert_eq!(report.events, 4);
    let logged: Vec<String> = store
        .audit_tail(10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        logged
            .iter()
            .filter(|k| k.as_str() == "channel:message_dropped")
            .count(),
        2,
        "{logged:?}"
    );
    assert!(
        logged.iter().any(|k| k == "channel:sender_rejected"),
        "{logged:?}"
    );
    assert_eq!(channel.health(), comis_channels::Health::Connected);
}

/// `secure: true`, the default: IMAP on implicit TLS, SMTP with STARTTLS required and AUTH,
/// both verified against a test CA given as an extra root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_mode_uses_imaps_and_starttls_with_auth() {
    let Some((dovecot, dir)) = mail_dir() else {
        return;
    };

    let (ca_pem, cert_file, key_file) = common::localhost_cert(dir.path(), "comis test mail CA");

    let imap_port = free_port();
    let smtp_port = free_port();
    let conf = dir.path().join("dovecot.conf");
    std::fs::write(
        &conf,
        dovecot_conf(dir.path(), imap_port, Some((&cert_file, &key_file))),
    )
    .unwrap();
    let mut imap_server = tokio::process::Command::new(dovecot)
        .arg("-F")
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let sent = dir.path().join("sent");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_server.py");
    let mut smtp_server = tokio::process::Command::new(PYTHON)
        .arg(&script)
        .arg(smtp_port.to_string())
        .arg(&sent)
        .arg(&cert_file)
        .arg(&key_file)
        .args(["bot@example.test", "s3cret"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(imap_port, &mut imap_server).await;
    wait_for_port(smtp_port, &mut smtp_server).await;

    // Deliver the question over IMAPS too (the server has no plain-text port).
    let roots = comis_net::parse_pem_certs(ca_pem.as_bytes()).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", imap_port))
        .await
        .unwrap();
    let tls = comis_net::connect_tls(tcp, "localhost", &roots)
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tls);
    client.read_response().await.unwrap();
    let mut session = client
        .login("bot@example.test", "s3cret")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let question = mail(
        "alice@example.test",
        "t1@example.test",
        "Secure?",
        "",
        "Over TLS?",
    );
    session
        .append("INBOX", None, None, question.as_bytes())
        .await
        .unwrap();
    session.logout().await.unwrap();

    let handler: TurnHandler =
        Arc::new(|req: TurnRequest| Box::pin(async move { format!("echo: {}", req.text) }));
    let config = EmailConfig {
        enabled: true,
        imap_host: "localhost".into(),
        imap_port,
        smtp_host: "localhost".into(),
        smtp_port,
        address: "bot@example.test".into(),
        password: Some("s3cret".to_owned().into()),
        allow_from: vec!["alice@example.test".into()],
        ..EmailConfig::default()
    };
    assert!(config.secure, "secure is the default");
    let allow = config.effective_allow_from();
    let channel = Arc::new(
        EmailChannel::new(config, EventBus::new(), "default")
            .unwrap()
            .with_extra_roots_pem(ca_pem.as_bytes())
            .unwrap(),
    );
    let mut router = Router::new("default", EventBus::new(), handler);
    router.add_channel(channel, &allow, None);
    tokio::spawn(Arc::new(router).run());

    let replies = wait_for_sent(&sent, 1).await;
    let reply = mail_parser::MessageParser::default()
        .parse(&replies[0])
        .unwrap();
    assert_eq!(reply.in_reply_to().as_text(), Some("t1@example.test"));
    assert!(reply.body_text(0).unwrap().contains("Over TLS?"));
}

/// A server without IDLE: the channel polls every `pollingIntervalMs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_channel_polls() {
    // dovecot still understands IDLE but no longer announces it, so the client must not use it.
    let Some(servers) = PlainServers::start("imap_capability = IMAP4rev1 LITERAL+\n").await else {
        return;
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", servers.imap_port))
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    let mut session = client
        .login("bot@example.test", "s3cret")
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    assert!(!session.capabilities().await.unwrap().has_str("IDLE"));
    session.logout().await.unwrap();

    let handler: TurnHandler =
        Arc::new(|req: TurnRequest| Box::pin(async move { format!("echo: {}", req.text) }));
    let config = EmailConfig {
        polling_interval_ms: 1_000,
        ..servers.config()
    };
    let allow = config.effective_allow_from();
    let channel = Arc::new(EmailChannel::new(config, EventBus::new(), "default").unwrap());
    let mut router = Router::new("default", EventBus::new(), handler);
    router.add_channel(channel.clone(), &allow, None);
    tokio::spawn(Arc::new(router).run());
    // Wait until the channel is logged in, then deliver: only a poll can find this mail.
    for _ in 0..1_200 {
        if channel.health() == comis_channels::Health::Connected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(channel.health(), comis_channels::Health::Connected);
    append(
        servers.imap_port,
        &mail(
            "alice@example.test",
            "p1@example.test",
            "Poll",
            "",
            "found by polling",
        ),
    )
    .await;
    let replies = wait_for_sent(&servers.sent, 1).await;
    let reply = mail_parser::MessageParser::default()
        .parse(&replies[0])
        .unwrap();
    assert_eq!(reply.in_reply_to().as_text(), Some("p1@example.test"));
}
