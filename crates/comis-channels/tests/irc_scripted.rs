//! The IRC client against a scripted local server speaking the IRC wire format, for what a real
//! ngircd cannot show: SASL PLAIN and NickServ, a taken nick, and a hostile server (over-long
//! lines, NUL bytes, lines without a command, CTCP) that the client must absorb.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use comis_agent::event::EventBus;
use comis_agent::runtime::TurnRequest;
use comis_channels::config::IrcConfig;
use comis_channels::irc::IrcChannel;
use comis_channels::{Channel, Health, Router, TurnHandler};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

struct Peer {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Peer {
    /// The next line the client sent (60 s at most: a failure bound).
    async fn expect(&mut self, want: &str) {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), self.reader.read_line(&mut line))
            .await
            .expect("client silent")
            .unwrap();
        assert!(n > 0, "client closed while {want:?} was expected");
        assert_eq!(line.trim_end_matches(['\r', '\n']), want);
    }

    async fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).await.unwrap();
    }

    /// Registration with SASL PLAIN up to the client's credentials (`plain`: their base64),
    /// answered with numeric `verdict` (903 success, 904 refusal), then `CAP END`.
    async fn sasl_exchange(&mut self, plain: &str, verdict: &str) {
        self.expect("CAP REQ :sasl").await;
        self.expect("NICK comis").await;
        self.expect("USER comis 0 * :comis").await;
        self.send(b":srv CAP * ACK :sasl\r\n").await;
        self.expect("AUTHENTICATE PLAIN").await;
        self.send(b"AUTHENTICATE +\r\n").await;
        self.expect(&format!("AUTHENTICATE {plain}")).await;
        self.send(format!(":srv {verdict} comis :SASL\r\n").as_bytes())
            .await;
        self.expect("CAP END").await;
    }
}

async fn start(config: IrcConfig) -> (Peer, Arc<IrcChannel>, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let channel = Arc::new(
        IrcChannel::new(IrcConfig {
            host: "127.0.0.1".into(),
            port: Some(port),
            tls: false,
            nick: "comis".into(),
            flood_interval_ms: 10,
            ..config
        })
        .unwrap(),
    );
    let handler: TurnHandler =
        Arc::new(|req: TurnRequest| Box::pin(async move { format!("echo: {}", req.text) }));
    let mut router = Router::new("default", EventBus::new(), handler);
    router.add_channel(channel.clone(), &["alice".into()], None);
    tokio::spawn(Arc::new(router).run());
    let peer = accept(&listener).await;
    (peer, channel, listener)
}

async fn accept(listener: &TcpListener) -> Peer {
    let (stream, _) = tokio::time::timeout(Duration::from_secs(60), listener.accept())
        .await
        .expect("client did not connect")
        .unwrap();
    let (r, w) = stream.into_split();
    Peer {
        reader: BufReader::new(r),
        writer: w,
    }
}

#[tokio::test]
async fn sasl_plain_then_a_hostile_server_is_absorbed() {
    let (mut server, _channel, _listener) = start(IrcConfig {
        sasl: true,
        nickserv_password: Some("pw".to_owned().into()),
        channels: vec!["#a".into()],
        ..IrcConfig::default()
    })
    .await;
    // "comis\0comis\0pw"
    server.sasl_exchange("Y29taXMAY29taXMAcHc=", "903").await;
    // Nick taken: the client picks another.
    server
        .send(b":srv 433 * comis :Nickname is already in use\r\n")
        .await;
    server.expect("NICK comis_").await;
    server.send(b":srv 001 comis_ :Welcome\r\n").await;
    server.expect("JOIN #a").await;

    // Garbage the client must skip: an over-long line, NULs, no command, a bare prefix, tags
    // only, invalid UTF-8, CTCP, a message from itself, a channel line not addressed to it.
    server
        .send(
            &[
                b":x PRIVMSG comis_ :".as_slice(),
                &vec![b'A'; 20_000],
                b"\r\n",
            ]
            .concat(),
        )
        .await;
    server
        .send(b":alice!a@h PRIVMSG comis_ :hi\0there\r\n")
        .await;
    server
        .send(b"\r\n:\r\n:onlyprefix\r\n@tag\r\n\xff\xfe\r\n")
        .await;
    server
        .send(b":alice!a@h PRIVMSG comis_ :\x01VERSION\x01\r\n")
        .await;
    server
        .send(b":comis_!c@h PRIVMSG comis_ :talking to myself\r\n")
        .await;
    server
        .send(b":alice!a@h PRIVMSG #a :comis: wrong nick now\r\n")
        .await;
    server.send(b"PING :still-there\r\n").await;
    server.expect("PONG :still-there").await;
    // The first line answered is the one that addresses the current nick.
    server
        .send(b":alice!a@h PRIVMSG #a :comis_: \x0304real\x03 question\r\n")
        .await;
    server.expect("PRIVMSG #a :echo: real question").await;
}

#[tokio::test]
async fn nickserv_identify_after_welcome_and_reconnect_after_error() {
    let (mut server, channel, listener) = start(IrcConfig {
        nickserv_password: Some("pw".to_owned().into()),
        ..IrcConfig::default()
    })
    .await;
    server.expect("NICK comis").await;
    server.expect("USER comis 0 * :comis").await;
    server.send(b":srv 001 comis :Welcome\r\n").await;
    server.expect("PRIVMSG NickServ :IDENTIFY pw").await;
    server.send(b":alice!a@h PRIVMSG comis :line one\r\n").await;
    server.expect("PRIVMSG alice :echo: line one").await;
    assert_eq!(channel.health(), Health::Connected);

    // The server says goodbye: the client comes back (after its backoff) and registers again.
    server.send(b"ERROR :Closing link (maintenance)\r\n").await;
    drop(server);
    let mut again = accept(&listener).await;
    again.expect("NICK comis").await;
    again.expect("USER comis 0 * :comis").await;
    again.send(b":srv 001 comis :Welcome back\r\n").await;
    again.expect("PRIVMSG NickServ :IDENTIFY pw").await;
    again.send(b":alice!a@h PRIVMSG comis :line two\r\n").await;
    again.expect("PRIVMSG alice :echo: line two").await;
}

#[tokio::test]
async fn refused_sasl_shows_as_failed_and_is_retried() {
    let (mut server, channel, listener) = start(IrcConfig {
        sasl: true,
        nickserv_password: Some("wrong".to_owned().into()),
        ..IrcConfig::default()
    })
    .await;
    // "comis\0comis\0wrong"
    server
        .sasl_exchange("Y29taXMAY29taXMAd3Jvbmc=", "904")
        .await;
    // The client gives up on this connection and comes back after its backoff.
    let mut again = accept(&listener).await;
    assert_eq!(channel.health(), Health::Failed);
    again.expect("CAP REQ :sasl").await;
}
