//! IRC: a small hand-written client (RFC 1459/2812 with the IRCv3 bits that matter here).
//!
//! Guarantees:
//! - TLS on by default, verified against the public roots (`comis_net::connect_tls`).
//! - Authentication by SASL PLAIN (`CAP REQ :sasl`, `AUTHENTICATE`) or NickServ `IDENTIFY`;
//!   the password is only ever written to the socket, never logged.
//! - Inbound: a channel message is delivered only when it addresses the bot (`nick: …` or
//!   `nick, …`); every private message is delivered; the router's `allowFrom` then decides,
//!   by nick or by `nick!user@host` mask. mIRC formatting codes, other control characters and
//!   invisible characters are stripped; CTCP and the bot's own lines are ignored.
//! - Lines read from the server are capped at [`MAX_INBOUND_LINE`] bytes (a longer one is
//!   skipped whole); NUL bytes and malformed lines are dropped, never a crash.
//! - Outbound: every line is one `PRIVMSG` within the 512-byte limit including the prefix the
//!   server adds; a reply can never carry CR, LF or NUL into the protocol (each reply line is
//!   its own `PRIVMSG`); lines pass a token bucket (flood control).
//! - Reconnects with exponential backoff and jitter; answers `PING`, and pings a silent server.
//!
//! Does not: verify that a nick belongs to its owner (use masks with a host, or services),
//! support DCC, or keep channel history.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use comis_secrets::ExposeSecret;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::backoff::{Backoff, Reconnecting, TokenBucket, run_reconnecting};
use crate::config::IrcConfig;
use crate::text::{LenUnit, split_message};
use crate::{
    BoxFuture, Channel, ChannelError, ErrorsFor, Health, InboundMessage, InboundSender,
    OutboundMessage,
};

/// Longest line accepted from the server (IRCv3 tags may add 8 KiB to the 512 bytes).
pub const MAX_INBOUND_LINE: usize = 8_704;
/// The protocol's line limit, CRLF included.
pub const MAX_LINE: usize = 512;
/// Most `PRIVMSG` lines one reply may become; the rest is cut with a note.
pub const MAX_REPLY_LINES: usize = 40;
const NAME: &str = "irc";
const ERR: ErrorsFor<'static> = ErrorsFor(NAME);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Silence after which the client pings the server; twice this and it reconnects.
const IDLE_PING: Duration = Duration::from_secs(120);
/// Room reserved for the `user@host` part the server puts in front of our lines.
const HOSTMASK_RESERVE: usize = 1 + 10 + 1 + 63;

/// One parsed protocol line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// IRCv3 message tags, raw (`a=b;c`), without the `@`.
    pub tags: Option<String>,
    pub prefix: Option<Prefix>,
    /// Upper-cased command or three-digit numeric.
    pub command: String,
    pub params: Vec<String>,
}

/// `nick!user@host` (or a server name, as `nick` alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub nick: String,
    pub user: Option<String>,
    pub host: Option<String>,
}

impl Prefix {
    /// `nick!user@host` with the parts that are known.
    pub fn mask(&self) -> String {
        let mut s = self.nick.clone();
        if let Some(u) = &self.user {
            s.push('!');
            s.push_str(u);
        }
        if let Some(h) = &self.host {
            s.push('@');
            s.push_str(h);
        }
        s
    }
}

/// Parses one line (with or without CRLF). `None` for an empty line, a line with NUL, a line
/// without a command, or one longer than [`MAX_INBOUND_LINE`]. Invalid UTF-8 is replaced.
pub fn parse_line(raw: &[u8]) -> Option<Line> {
    if raw.len() > MAX_INBOUND_LINE || raw.contains(&0) {
        return None;
    }
    let text = String::from_utf8_lossy(raw);
    let mut rest = text.trim_end_matches(['\r', '\n']);
    if rest.contains(['\r', '\n']) {
        return None;
    }
    let mut tags = None;
    if let Some(r) = rest.strip_prefix('@') {
        let (t, r) = r.split_once(' ')?;
        tags = Some(t.to_owned());
        rest = r.trim_start_matches(' ');
    }
    let mut prefix = None;
    if let Some(r) = rest.strip_prefix(':') {
        let (p, r) = r.split_once(' ')?;
        if p.is_empty() {
            return None;
        }
        prefix = Some(parse_prefix(p));
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = match rest.split_once(' ') {
        Some((c, r)) => (c, r),
        None => (rest, ""),
    };
    if command.is_empty() || !command.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing.to_owned());
            break;
        }
        match rest.split_once(' ') {
            Some((p, r)) => {
                params.push(p.to_owned());
                rest = r;
            }
            None => {
                params.push(rest.to_owned());
                break;
            }
        }
        // RFC 2812: at most 15 parameters; the rest of a hostile line is one trailing.
        if params.len() == 14 {
            let r = rest.trim_start_matches(' ');
            if !r.is_empty() {
                params.push(r.strip_prefix(':').unwrap_or(r).to_owned());
            }
            break;
        }
    }
    Some(Line {
        tags,
        prefix,
        command: command.to_ascii_uppercase(),
        params,
    })
}

fn parse_prefix(p: &str) -> Prefix {
    let (nick_user, host) = match p.split_once('@') {
        Some((a, h)) => (a, Some(h.to_owned())),
        None => (p, None),
    };
    let (nick, user) = match nick_user.split_once('!') {
        Some((n, u)) => (n, Some(u.to_owned())),
        None => (nick_user, None),
    };
    Prefix {
        nick: nick.to_owned(),
        user,
        host,
    }
}

/// Removes mIRC formatting (`\x02` bold, `\x03fg,bg` colour, `\x04rrggbb` hex colour, `\x0f`
/// reset, `\x11` monospace, `\x16` reverse, `\x1d` italic, `\x1e` strike, `\x1f` underline),
/// every other control character, and invisible characters.
pub fn strip_formatting(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x03' => {
                let fg = skip_digits(&mut chars, 2);
                if fg > 0 && chars.peek() == Some(&',') {
                    let mut look = chars.clone();
                    look.next();
                    if look.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                        skip_digits(&mut chars, 2);
                    }
                }
            }
            '\x04' => {
                for _ in 0..6 {
                    if chars.peek().is_some_and(char::is_ascii_hexdigit) {
                        chars.next();
                    }
                }
            }
            '\t' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    comis_guard::unicode::strip_invisible(&out).into_owned()
}

fn skip_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, max: usize) -> usize {
    let mut n = 0;
    while n < max && chars.peek().is_some_and(char::is_ascii_digit) {
        chars.next();
        n += 1;
    }
    n
}

/// If `text` addresses `nick` (`nick: …`, `nick, …`, case-insensitive), the rest of it.
pub fn strip_mention<'a>(text: &'a str, nick: &str) -> Option<&'a str> {
    let head = text.get(..nick.len())?;
    if !head.eq_ignore_ascii_case(nick) {
        return None;
    }
    let rest = &text[nick.len()..];
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(','))?;
    Some(rest.trim_start())
}

/// The `PRIVMSG` lines (without CRLF) that carry `text` to `target` from `nick`: one per reply
/// line, each within [`MAX_LINE`] once the server adds our prefix, never containing CR/LF/NUL.
pub fn privmsg_lines(nick: &str, target: &str, text: &str) -> Vec<String> {
    let overhead = 1 + nick.len() + HOSTMASK_RESERVE + " PRIVMSG ".len() + target.len() + 2 + 2;
    let budget = MAX_LINE.saturating_sub(overhead).max(16);
    let mut out = Vec::new();
    for line in text.split(['\n', '\r']) {
        let clean: String = line
            .chars()
            .map(|c| if c == '\0' { ' ' } else { c })
            .collect();
        if clean.trim().is_empty() {
            continue;
        }
        for chunk in split_message(&clean, budget, LenUnit::Bytes) {
            out.push(format!("PRIVMSG {target} :{chunk}"));
        }
    }
    if out.len() > MAX_REPLY_LINES {
        out.truncate(MAX_REPLY_LINES);
        out.push(format!("PRIVMSG {target} :[reply cut: too long for IRC]"));
    }
    out
}

type Writer = Box<dyn AsyncWrite + Send + Unpin>;

#[derive(Debug)]
struct Outbox {
    writer: tokio::sync::Mutex<WriterCell>,
    bucket: tokio::sync::Mutex<TokenBucket>,
    nick: Mutex<String>,
}

struct WriterCell(Writer);

impl std::fmt::Debug for WriterCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterCell")
    }
}

impl Outbox {
    /// Writes one line; a server that stops reading for [`WRITE_TIMEOUT`] is treated as gone.
    async fn write_now(&self, line: &str) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        tokio::time::timeout(WRITE_TIMEOUT, async {
            w.0.write_all(line.as_bytes()).await?;
            w.0.write_all(b"\r\n").await?;
            w.0.flush().await
        })
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
    }

    async fn write_paced(&self, line: &str) -> std::io::Result<()> {
        let mut bucket = self.bucket.lock().await;
        bucket.take().await;
        self.write_now(line).await
    }

    fn nick(&self) -> String {
        self.nick.lock().map(|n| n.clone()).unwrap_or_default()
    }
}

/// The IRC adapter.
#[derive(Debug)]
pub struct IrcChannel {
    config: IrcConfig,
    health: Mutex<Health>,
    outbox: Mutex<Option<Arc<Outbox>>>,
    counter: AtomicU64,
    extra_roots: Vec<CertificateDer<'static>>,
}

impl IrcChannel {
    /// Checks the config: host and a valid nick are required, channel names must start with
    /// `#`/`&` and contain no space, comma or control character.
    pub fn new(config: IrcConfig) -> Result<IrcChannel, ChannelError> {
        let bad = |reason: String| ERR.config(reason);
        if config.host.trim().is_empty() {
            return Err(bad("host is required".into()));
        }
        if !valid_nick(&config.nick) {
            return Err(bad(format!(
                "nick {:?} is not a valid IRC nick",
                config.nick
            )));
        }
        for ch in &config.channels {
            if !(ch.starts_with('#') || ch.starts_with('&'))
                || ch.len() > 200
                || ch.chars().any(|c| c == ' ' || c == ',' || c.is_control())
            {
                return Err(bad(format!("channel {ch:?} is not a valid channel name")));
            }
        }
        if config.sasl && config.nickserv_password.is_none() {
            return Err(bad("sasl needs nickservPassword".into()));
        }
        Ok(IrcChannel {
            config,
            health: Mutex::new(Health::Stopped),
            outbox: Mutex::new(None),
            counter: AtomicU64::new(0),
            extra_roots: Vec::new(),
        })
    }

    /// Also trusts the CA certificates in `pem` (a network with its own CA). The public roots
    /// stay trusted; verification cannot be turned off.
    pub fn with_extra_roots_pem(mut self, pem: &[u8]) -> Result<IrcChannel, ChannelError> {
        self.extra_roots =
            comis_net::parse_pem_certs(pem).map_err(|e| ERR.config(e.to_string()))?;
        Ok(self)
    }

    async fn connect(&self) -> Result<Box<dyn IoStream>, ChannelError> {
        let port = self.config.port();
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.config.host.as_str(), port)),
        )
        .await
        .map_err(|_| ERR.transport("connect timed out"))?
        .map_err(|e| ERR.transport(format!("connect: {e}")))?;
        if self.config.tls {
            let tls = comis_net::connect_tls(tcp, &self.config.host, &self.extra_roots)
                .await
                .map_err(|e| ERR.transport(e.to_string()))?;
            Ok(Box::new(tls))
        } else {
            Ok(Box::new(tcp))
        }
    }

    /// One connection, from registration until it breaks. `Ok(true)` when the inbound side
    /// closed (the daemon is stopping); `Ok(false)`/`Err` mean reconnect.
    async fn session(
        &self,
        inbound: &InboundSender,
        backoff: &mut Backoff,
    ) -> Result<bool, ChannelError> {
        let stream = self.connect().await?;
        let (read, write) = tokio::io::split(stream);
        let mut reader = BufReader::new(read);
        let outbox = Arc::new(Outbox {
            writer: tokio::sync::Mutex::new(WriterCell(Box::new(write))),
            bucket: tokio::sync::Mutex::new(TokenBucket::new(
                self.config.flood_burst,
                Duration::from_millis(self.config.flood_interval_ms),
            )),
            nick: Mutex::new(self.config.nick.clone()),
        });
        let io = |e: std::io::Error| ERR.transport(e.to_string());
        if self.config.sasl {
            outbox.write_now("CAP REQ :sasl").await.map_err(io)?;
        }
        outbox
            .write_now(&format!("NICK {}", self.config.nick))
            .await
            .map_err(io)?;
        let user = self.config.username.as_deref().unwrap_or(&self.config.nick);
        let real = self.config.realname.as_deref().unwrap_or("comis");
        outbox
            .write_now(&format!("USER {} 0 * :{}", one_word(user), one_line(real)))
            .await
            .map_err(io)?;

        let mut buf = Vec::new();
        let mut registered = false;
        let mut pinged = false;
        loop {
            let read = tokio::time::timeout(
                IDLE_PING,
                read_line_limited(&mut reader, &mut buf, MAX_INBOUND_LINE),
            )
            .await;
            let status = match read {
                Err(_) if !pinged => {
                    pinged = true;
                    outbox.write_now("PING :comis").await.map_err(io)?;
                    continue;
                }
                Err(_) => return Err(ERR.transport("server silent, reconnecting")),
                Ok(r) => r.map_err(io)?,
            };
            pinged = false;
            match status {
                ReadStatus::Eof => {
                    return Err(ERR.transport("server closed the connection"));
                }
                ReadStatus::TooLong => continue,
                ReadStatus::Line => {}
            }
            let Some(line) = parse_line(&buf) else {
                continue;
            };
            match line.command.as_str() {
                "PING" => {
                    let token = line.params.first().map_or("", String::as_str);
                    outbox
                        .write_now(&format!("PONG :{}", one_line(token)))
                        .await
                        .map_err(io)?;
                }
                "CAP" => {
                    let sub = line.params.get(1).map_or("", String::as_str);
                    let caps = line.params.last().map_or("", String::as_str);
                    if sub.eq_ignore_ascii_case("ACK") && caps.split(' ').any(|c| c == "sasl") {
                        outbox.write_now("AUTHENTICATE PLAIN").await.map_err(io)?;
                    } else if sub.eq_ignore_ascii_case("NAK") {
                        outbox.write_now("CAP END").await.map_err(io)?;
                        return Err(ERR.api("server refused SASL"));
                    }
                }
                "AUTHENTICATE" if line.params.first().is_some_and(|p| p == "+") => {
                    let line = self.sasl_line();
                    outbox.write_now(&line).await.map_err(io)?;
                }
                "903" => outbox.write_now("CAP END").await.map_err(io)?,
                "902" | "904" | "905" | "906" => {
                    outbox.write_now("CAP END").await.map_err(io)?;
                    return Err(ERR.api(format!("SASL failed ({})", line.command)));
                }
                "433" | "432" if !registered => {
                    // Nick taken: try with a suffix, within the usual 30-character limit.
                    let next = {
                        let cur = outbox.nick();
                        let mut n: String = cur.chars().take(29).collect();
                        n.push('_');
                        n
                    };
                    if let Ok(mut g) = outbox.nick.lock() {
                        g.clone_from(&next);
                    }
                    outbox
                        .write_now(&format!("NICK {next}"))
                        .await
                        .map_err(io)?;
                }
                "001" => {
                    registered = true;
                    if let Some(me) = line.params.first()
                        && valid_nick(me)
                        && let Ok(mut g) = outbox.nick.lock()
                    {
                        g.clone_from(me);
                    }
                    if !self.config.sasl
                        && let Some(pw) = &self.config.nickserv_password
                    {
                        outbox
                            .write_now(&format!(
                                "PRIVMSG NickServ :IDENTIFY {}",
                                one_line(pw.expose_secret())
                            ))
                            .await
                            .map_err(io)?;
                    }
                    if !self.config.channels.is_empty() {
                        outbox
                            .write_now(&format!("JOIN {}", self.config.channels.join(",")))
                            .await
                            .map_err(io)?;
                    }
                    if let Ok(mut g) = self.outbox.lock() {
                        *g = Some(Arc::clone(&outbox));
                    }
                    self.set_health(Health::Connected);
                    backoff.reset();
                }
                "NICK" => {
                    let me = outbox.nick();
                    if let (Some(p), Some(new)) = (&line.prefix, line.params.first())
                        && p.nick.eq_ignore_ascii_case(&me)
                        && valid_nick(new)
                        && let Ok(mut g) = outbox.nick.lock()
                    {
                        g.clone_from(new);
                    }
                }
                "ERROR" => {
                    let why = line.params.first().cloned().unwrap_or_default();
                    return Err(ERR.transport(format!(
                        "server error: {}",
                        comis_guard::unicode::display_safe(&why, 200)
                    )));
                }
                "PRIVMSG" if registered => {
                    if let Some(message) = self.inbound_from(&line, &outbox.nick())
                        && inbound.send(message).await.is_err()
                    {
                        return Ok(true);
                    }
                }
                _ => {}
            }
        }
    }

    /// `AUTHENTICATE <base64(account NUL account NUL password)>`, zeroized after use. A
    /// payload over 400 bytes would need splitting; accounts and passwords are far shorter.
    fn sasl_line(&self) -> zeroize::Zeroizing<String> {
        let account = self
            .config
            .sasl_account
            .as_deref()
            .unwrap_or(&self.config.nick);
        let password = self
            .config
            .nickserv_password
            .as_ref()
            .map_or("", |p| p.expose_secret());
        let raw = zeroize::Zeroizing::new(format!("{account}\0{account}\0{password}"));
        let encoded = zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()),
        );
        zeroize::Zeroizing::new(format!("AUTHENTICATE {}", encoded.as_str()))
    }

    /// The inbound message a `PRIVMSG` line makes, when it is one for us.
    fn inbound_from(&self, line: &Line, me: &str) -> Option<InboundMessage> {
        let prefix = line.prefix.as_ref()?;
        let target = line.params.first()?;
        let text = line.params.get(1)?;
        if prefix.nick.eq_ignore_ascii_case(me) || text.starts_with('\x01') {
            return None;
        }
        let direct = target.eq_ignore_ascii_case(me);
        let (chat, body) = if direct {
            (prefix.nick.clone(), strip_formatting(text))
        } else {
            let clean = strip_formatting(text);
            let body = strip_mention(&clean, me)?.to_owned();
            (target.clone(), body)
        };
        if body.trim().is_empty() {
            return None;
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let event_id = line
            .tags
            .as_deref()
            .and_then(|t| {
                t.split(';')
                    .find_map(|kv| kv.strip_prefix("msgid="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| format!("local-{n}-{}", std::process::id()));
        Some(InboundMessage {
            channel: NAME.into(),
            event_id,
            chat,
            thread: None,
            sender: prefix.nick.clone(),
            sender_aliases: vec![prefix.mask()],
            text: body,
            direct,
            attachments: Vec::new(),
            metadata: Vec::new(),
        })
    }
}

/// RFC 2812 nick characters (letters, digits, `[]\`_^{|}-`), not starting with a digit or `-`.
fn valid_nick(nick: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || "[]\\`_^{|}-".contains(c);
    !nick.is_empty()
        && nick.len() <= 30
        && nick.chars().all(ok)
        && !nick.starts_with(|c: char| c.is_ascii_digit() || c == '-')
}

/// Text safe as a trailing parameter: CR, LF and NUL become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Text safe as a middle parameter: no spaces either.
fn one_word(s: &str) -> String {
    let w: String = one_line(s)
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if w.is_empty() { "comis".into() } else { w }
}

trait IoStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> IoStream for T {}

enum ReadStatus {
    Line,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without the newline), never holding more than `max` bytes.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<ReadStatus> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(ReadStatus::Eof);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                ReadStatus::TooLong
            } else {
                ReadStatus::Line
            });
        }
    }
}

impl Reconnecting for IrcChannel {
    fn one_session(
        &self,
        inbound: &InboundSender,
        backoff: &mut Backoff,
    ) -> impl Future<Output = Result<bool, ChannelError>> + Send {
        self.session(inbound, backoff)
    }

    fn health_slot(&self) -> &Mutex<Health> {
        &self.health
    }

    fn session_ended(&self) {
        if let Ok(mut g) = self.outbox.lock() {
            *g = None;
        }
    }
}

impl Channel for IrcChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn max_message_len(&self) -> usize {
        MAX_LINE
    }

    fn run(
        self: Arc<Self>,
        inbound: InboundSender,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move { run_reconnecting(&*self, &inbound).await })
    }

    fn send<'a>(&'a self, message: OutboundMessage) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let outbox = self
                .outbox
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .ok_or_else(|| ERR.transport("not connected"))?;
            let target = message.chat.trim();
            if target.is_empty()
                || target
                    .chars()
                    .any(|c| c == ' ' || c == ',' || c.is_control())
            {
                return Err(ERR.protocol("invalid target"));
            }
            for line in privmsg_lines(&outbox.nick(), target, &message.text) {
                outbox
                    .write_paced(&line)
                    .await
                    .map_err(|e| ERR.transport(e.to_string()))?;
            }
            Ok(())
        })
    }

    fn health(&self) -> Health {
        self.current_health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_usual_shapes() {
        let l = parse_line(b":alice!a@host PRIVMSG #chan :hello there\r\n").unwrap();
        assert_eq!(l.command, "PRIVMSG");
        assert_eq!(l.params, ["#chan", "hello there"]);
        let p = l.prefix.unwrap();
        assert_eq!(
            (p.nick.as_str(), p.mask().as_str()),
            ("alice", "alice!a@host")
        );

        let l = parse_line(b"PING :irc.test").unwrap();
        assert!(l.prefix.is_none());
        assert_eq!(l.params, ["irc.test"]);

        let l = parse_line(b"@msgid=abc;time=x :s 001 me :Welcome").unwrap();
        assert_eq!(l.tags.as_deref(), Some("msgid=abc;time=x"));
        assert_eq!(l.command, "001");
    }

    #[test]
    fn hostile_lines_are_dropped_not_crashed_on() {
        assert!(parse_line(b"").is_none());
        assert!(parse_line(b"\r\n").is_none());
        assert!(parse_line(b":onlyprefix").is_none());
        assert!(parse_line(b": PRIVMSG x :y").is_none());
        assert!(parse_line(b"PRIV\0MSG #a :b").is_none());
        assert!(parse_line(b"PRIVMSG #a :b\0c").is_none());
        assert!(parse_line(b"PRIVMSG #a :b\rPRIVMSG #b :c").is_none());
        assert!(parse_line(b"@tagsonly").is_none());
        let long = [b"PRIVMSG #a :".as_slice(), &vec![b'x'; MAX_INBOUND_LINE]].concat();
        assert!(parse_line(&long).is_none());
        let many = format!("CMD {}", "p ".repeat(40));
        assert!(parse_line(many.as_bytes()).unwrap().params.len() <= 15);
        let l = parse_line(b"PRIVMSG #a :\xff\xfe bad utf8").unwrap();
        assert!(l.params[1].contains("bad utf8"));
    }

    #[test]
    fn formatting_and_invisible_characters_are_stripped() {
        assert_eq!(
            strip_formatting("\x02bold\x02 \x0304,12red\x03 \x1fu\x1f\x0f"),
            "bold red u"
        );
        assert_eq!(strip_formatting("\x035text"), "text");
        assert_eq!(strip_formatting("\x03,5text"), ",5text");
        assert_eq!(strip_formatting("\x04ff0000hex"), "hex");
        assert_eq!(strip_formatting("a\u{200b}b\u{E0041}c\x16\x1d"), "abc");
    }

    #[test]
    fn mentions() {
        assert_eq!(strip_mention("comis: hi", "comis"), Some("hi"));
        assert_eq!(strip_mention("Comis, hi", "comis"), Some("hi"));
        assert_eq!(strip_mention("comisx: hi", "comis"), None);
        assert_eq!(strip_mention("hi comis", "comis"), None);
        assert_eq!(strip_mention("co", "comis"), None);
        assert_eq!(strip_mention("coé", "comis"), None);
    }

    #[test]
    fn replies_cannot_inject_commands() {
        let lines = privmsg_lines("bot", "#c", "hi\r\nQUIT :bye\nJOIN #evil\0x");
        assert_eq!(
            lines,
            [
                "PRIVMSG #c :hi",
                "PRIVMSG #c :QUIT :bye",
                "PRIVMSG #c :JOIN #evil x"
            ]
        );
    }

    #[test]
    fn long_replies_are_cut_and_capped() {
        let text = "word ".repeat(10_000);
        let lines = privmsg_lines("bot", "#chan", &text);
        assert_eq!(lines.len(), MAX_REPLY_LINES + 1);
    }

    #[test]
    fn config_is_checked() {
        let mut c = IrcConfig {
            host: "irc.example".into(),
            nick: "comis".into(),
            ..IrcConfig::default()
        };
        assert!(IrcChannel::new(c.clone()).is_ok());
        c.nick = "bad nick".into();
        assert!(IrcChannel::new(c.clone()).is_err());
        c.nick = "comis".into();
        c.channels = vec!["#a,#b".into()];
        assert!(IrcChannel::new(c.clone()).is_err());
        c.channels = vec!["nochan".into()];
        assert!(IrcChannel::new(c).is_err());
    }

    #[tokio::test]
    async fn over_long_server_lines_are_skipped_whole() {
        let mut input = vec![b'x'; MAX_INBOUND_LINE * 3];
        input.extend_from_slice(b"\r\nPING :ok\r\npartial");
        let mut reader = BufReader::with_capacity(64, input.as_slice());
        let mut buf = Vec::new();
        let first = read_line_limited(&mut reader, &mut buf, MAX_INBOUND_LINE)
            .await
            .unwrap();
        assert!(matches!(first, ReadStatus::TooLong));
        let second = read_line_limited(&mut reader, &mut buf, MAX_INBOUND_LINE)
            .await
            .unwrap();
        assert!(matches!(second, ReadStatus::Line));
        assert_eq!(parse_line(&buf).unwrap().params, ["ok"]);
        let third = read_line_limited(&mut reader, &mut buf, MAX_INBOUND_LINE)
            .await
            .unwrap();
        assert!(matches!(third, ReadStatus::Eof));
    }

    #[test]
    fn sasl_plain_payload() {
        let channel = IrcChannel::new(IrcConfig {
            host: "irc.example".into(),
            nick: "comis".into(),
            sasl: true,
            nickserv_password: Some("pw".to_owned().into()),
            ..IrcConfig::default()
        })
        .unwrap();
        // base64("comis\0comis\0pw")
        assert_eq!(
            channel.sasl_line().as_str(),
            "AUTHENTICATE Y29taXMAY29taXMAcHc="
        );
        let debug = format!("{channel:?}");
        assert!(!debug.contains("pw\"") && !debug.contains("Y29taXMAY29taXMAcHc"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = parse_line(&raw);
        }

        #[test]
        fn privmsg_lines_stay_within_512_bytes(
            text in "\\PC{0,2000}",
            target in "#[a-z]{1,50}",
            nick in "[a-z]{1,30}",
        ) {
            for line in privmsg_lines(&nick, &target, &text) {
                let on_wire = 1 + nick.len() + HOSTMASK_RESERVE + 1 + line.len() + 2;
                prop_assert!(on_wire <= MAX_LINE, "{} bytes", on_wire);
                prop_assert!(!line.contains(['\r', '\n', '\0']));
            }
        }

        #[test]
        fn stripped_text_has_no_controls(text in ".{0,200}") {
            let s = strip_formatting(&text);
            prop_assert!(!s.chars().any(char::is_control));
        }

        #[test]
        fn roundtrip(nick in "[a-z]{1,9}", target in "#[a-z]{1,9}", text in "[ -~]{1,100}") {
            let raw = format!(":{nick}!u@h PRIVMSG {target} :{text}\r\n");
            let line = parse_line(raw.as_bytes()).unwrap();
            prop_assert_eq!(&line.params[1], &text);
            prop_assert_eq!(&line.params[0], &target);
        }
    }
}
