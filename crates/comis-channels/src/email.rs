//! Email: IMAP for inbound mail (IDLE, polling when the server has no IDLE), SMTP for replies.
//!
//! Guarantees:
//! - TLS per `secure`: IMAP on implicit TLS; SMTP on implicit TLS at port 465, otherwise
//!   STARTTLS is **required** (no silent downgrade). With `secure: false` both servers must be
//!   on the loopback interface (a local relay), and no SMTP password is sent.
//! - Automatic mail is dropped per RFC 3834 with a `channel:message_dropped` event and no
//!   reply: `Auto-Submitted` other than `no`, `Precedence: bulk|junk|list`, `List-Unsubscribe`,
//!   `X-Auto-Response-Suppress`, and noreply-style senders (no-reply, noreply, donotreply,
//!   mailer-daemon, postmaster, bounce). Mail from the bot's own address is ignored (no loops).
//!   The sender allowlist is the router's: [`EmailConfig::effective_allow_from`] (an empty
//!   allowlist lets nothing in; `open` lets every sender in).
//! - The body (HTML converted to text, at most [`MAX_BODY_CHARS`]) reaches the agent only inside
//!   an external-content wrapper with the sender and subject; a message larger than
//!   [`MAX_MESSAGE_BYTES`] is dropped with its event without being downloaded.
//! - Replies keep the thread: `In-Reply-To` the message answered, `References` its chain plus
//!   its id, `Re:` subject. Header values taken from inbound mail are checked (no CR/LF, no
//!   spaces or angle brackets in ids) before they go out.
//! - Every fetched message is marked `\Seen` before it is handled, so a crash cannot make the
//!   bot answer the same mail twice; the router's dedup catches redelivery by Message-ID.
//!
//! Does not: authenticate the sender (SPF/DKIM/DMARC are the mail server's job: configure it to
//! reject or mark spoofed mail), send attachments, or keep more than the recent thread state.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use comis_agent::event::{Event, EventBus, EventKind, Outcome};
use comis_guard::unicode::display_safe;
use comis_guard::wrap::{SourceKind, WrapOptions, wrap};
use comis_secrets::ExposeSecret;
use futures_util::StreamExt;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use mail_parser::{MessageParser, MimeHeaders};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::backoff::{Backoff, Reconnecting, run_reconnecting};
use crate::config::{AllowMode, EmailConfig};
use crate::{
    Attachment, BoxFuture, Channel, ChannelError, ErrorsFor, Health, InboundMessage, InboundSender,
    OutboundMessage,
};

/// The original's limit for one message, in characters.
pub const MAX_BODY_CHARS: usize = 100_000;
/// Larger messages are dropped unread.
pub const MAX_MESSAGE_BYTES: u32 = 25 * 1024 * 1024;
/// Threads remembered for replies (oldest forgotten first).
const THREAD_MEMORY: usize = 1_024;
/// IMAP servers drop an IDLE after 30 minutes; the original restarts it every 25.
const MAX_IDLE: Duration = Duration::from_secs(25 * 60);
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const NAME: &str = "email";
const ERR: ErrorsFor<'static> = ErrorsFor(NAME);

impl EmailConfig {
    /// The `allowFrom` the router applies: `["*"]` in open mode, else the list (empty = nobody).
    pub fn effective_allow_from(&self) -> Vec<String> {
        match self.allow_mode {
            AllowMode::Open => vec!["*".to_owned()],
            AllowMode::Allowlist => self.allow_from.clone(),
        }
    }

    fn login(&self) -> &str {
        self.username.as_deref().unwrap_or(&self.address)
    }
}

/// Why a mail counts as automatic (RFC 3834 and common practice), if it does.
pub fn automated_reason<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    from: &str,
) -> Option<String> {
    for (name, value) in headers {
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        if name.eq_ignore_ascii_case("Auto-Submitted") && lower != "no" {
            return Some(format!("Auto-Submitted: {}", display_safe(value, 40)));
        }
        if name.eq_ignore_ascii_case("Precedence")
            && matches!(lower.as_str(), "bulk" | "junk" | "list")
        {
            return Some(format!("Precedence: {lower}"));
        }
        if name.eq_ignore_ascii_case("List-Unsubscribe") {
            return Some("List-Unsubscribe".into());
        }
        if name.eq_ignore_ascii_case("X-Auto-Response-Suppress") {
            return Some("X-Auto-Response-Suppress".into());
        }
    }
    let local = from
        .rsplit_once('@')
        .map_or(from, |(l, _)| l)
        .to_ascii_lowercase();
    const NOREPLY: [&str; 8] = [
        "no-reply",
        "no_reply",
        "noreply",
        "donotreply",
        "do-not-reply",
        "mailer-daemon",
        "postmaster",
        "bounce",
    ];
    if NOREPLY.iter().any(|p| local.starts_with(p)) {
        return Some("noreply-style sender".into());
    }
    None
}

/// What the channel keeps about a mail it may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ThreadInfo {
    subject: String,
    /// `References` of the reply: the chain so far plus the answered id.
    references: Vec<String>,
}

/// A parsed inbound mail, or why it is dropped.
#[derive(Debug)]
pub enum Parsed {
    Message(Box<InboundMessage>),
    /// Dropped with an event (`reason`).
    Dropped {
        sender: String,
        reason: String,
    },
    /// Ignored silently (the bot's own mail, unparseable junk without a sender).
    Ignored,
}

/// A message id fit to echo into a header: `<…>` stripped, no whitespace, controls or angle
/// brackets, at most 250 bytes.
fn clean_id(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    (!id.is_empty()
        && id.len() <= 250
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>'))
    .then(|| id.to_owned())
}

fn header_ids(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    if let Some(list) = value.as_text_list() {
        list.iter().filter_map(|s| clean_id(s)).collect()
    } else {
        value.as_text().and_then(clean_id).into_iter().collect()
    }
}

/// Turns one raw mail into an inbound message (see the module guarantees).
fn parse_mail(raw: &[u8], own_address: &str, fallback_id: &str) -> (Parsed, Option<ThreadInfo>) {
    let Some(mail) = MessageParser::default().parse(raw) else {
        return (Parsed::Ignored, None);
    };
    let Some(from) = mail
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
    else {
        return (Parsed::Ignored, None);
    };
    if from.eq_ignore_ascii_case(own_address) {
        return (Parsed::Ignored, None);
    }
    if let Some(reason) = automated_reason(mail.headers_raw(), &from) {
        return (
            Parsed::Dropped {
                sender: from,
                reason,
            },
            None,
        );
    }
    let subject = mail.subject().unwrap_or("").to_owned();
    let message_id = mail
        .message_id()
        .and_then(clean_id)
        .unwrap_or_else(|| fallback_id.to_owned());
    let mut references = header_ids(mail.references());
    if references.is_empty() {
        references = header_ids(mail.in_reply_to());
    }
    let root = references
        .first()
        .cloned()
        .unwrap_or_else(|| message_id.clone());
    references.retain(|r| r != &message_id);
    references.push(message_id.clone());
    // Keep the header short: the root and the most recent ids are what threading needs.
    if references.len() > 20 {
        let tail = references.split_off(references.len() - 19);
        references.truncate(1);
        references.extend(tail);
    }

    let body: String = mail
        .body_text(0)
        .map(|b| b.chars().take(MAX_BODY_CHARS).collect())
        .unwrap_or_default();
    let Ok(wrapped) = wrap(
        &body,
        &WrapOptions::new(SourceKind::Email)
            .sender(&from)
            .subject(&subject),
    ) else {
        return (
            Parsed::Dropped {
                sender: from,
                reason: "could not wrap the body".into(),
            },
            None,
        );
    };
    let attachments = mail
        .attachments()
        .map(|part| Attachment {
            name: part.attachment_name().unwrap_or("unnamed").to_owned(),
            mime: part.content_type().map(|ct| match ct.subtype() {
                Some(sub) => format!("{}/{}", ct.ctype(), sub),
                None => ct.ctype().to_owned(),
            }),
            size: u64::try_from(part.len()).ok(),
        })
        .collect();
    let info = ThreadInfo {
        subject,
        references,
    };
    let message = InboundMessage {
        channel: NAME.into(),
        event_id: message_id,
        chat: from.clone(),
        thread: Some(root),
        sender: from,
        sender_aliases: Vec::new(),
        text: wrapped.text,
        direct: true,
        attachments,
        metadata: Vec::new(),
    };
    (Parsed::Message(Box::new(message)), Some(info))
}

/// The longest one message (at most [`MAX_MESSAGE_BYTES`]) may take to download.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

fn imap(e: async_imap::error::Error) -> ChannelError {
    ERR.transport(format!("IMAP: {e}"))
}

/// `fut` within `limit`, or a transport error naming `what` (a stalled server must not hang
/// the channel: the session is dropped and reconnected).
async fn timed<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, ChannelError>>,
) -> Result<T, ChannelError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ERR.transport(format!("IMAP {what} timed out")))?
}

enum Fetched {
    Raw(Vec<u8>),
    TooLarge(u32),
    Missing,
}

/// The fetch results for `uid` with `query`; unparsable responses are dropped.
async fn uid_fetch(
    session: &mut ImapSession,
    uid: u32,
    query: &str,
) -> Result<Vec<async_imap::types::Fetch>, ChannelError> {
    let fetched: Vec<_> = session
        .uid_fetch(uid.to_string(), query)
        .await
        .map_err(imap)?
        .collect()
        .await;
    Ok(fetched.into_iter().filter_map(Result::ok).collect())
}

/// One message by UID, unless it is larger than [`MAX_MESSAGE_BYTES`] (checked first, so a
/// huge mail is never downloaded).
async fn fetch_one(session: &mut ImapSession, uid: u32) -> Result<Fetched, ChannelError> {
    let sizes = uid_fetch(session, uid, "(UID RFC822.SIZE)").await?;
    let Some(size) = sizes.iter().find_map(|f| f.size) else {
        return Ok(Fetched::Missing);
    };
    if size > MAX_MESSAGE_BYTES {
        return Ok(Fetched::TooLarge(size));
    }
    let fetched = uid_fetch(session, uid, "(UID BODY.PEEK[])").await?;
    Ok(fetched
        .iter()
        .find_map(|f| f.body().map(<[u8]>::to_vec))
        .map_or(Fetched::Missing, Fetched::Raw))
}

/// Plain TCP or TLS, one type for the IMAP client.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<comis_net::TlsTcpStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type ImapSession = async_imap::Session<Stream>;

/// The email adapter.
#[derive(Debug)]
pub struct EmailChannel {
    extra_roots: Vec<CertificateDer<'static>>,
    config: EmailConfig,
    agent: String,
    events: EventBus,
    health: Mutex<Health>,
    threads: Mutex<(HashMap<String, ThreadInfo>, VecDeque<String>)>,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The SMTP transport `config` asks for (no connection yet).
fn build_smtp(
    config: &EmailConfig,
    extra_roots: &[CertificateDer<'static>],
) -> Result<AsyncSmtpTransport<Tokio1Executor>, ChannelError> {
    let mut smtp =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.smtp_host.clone())
            .port(config.smtp_port)
            .timeout(Some(IO_TIMEOUT));
    if config.secure {
        let mut params = TlsParameters::builder(config.smtp_host.clone());
        for root in extra_roots {
            let cert = Certificate::from_der(root.to_vec())
                .map_err(|e| ERR.config(format!("SMTP TLS root: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|e| ERR.config(format!("SMTP TLS: {e}")))?;
        smtp = smtp.tls(if config.smtp_port == 465 {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
        if let Some(pw) = &config.password {
            smtp = smtp.credentials(Credentials::new(
                config.login().to_owned(),
                pw.expose_secret().to_owned(),
            ));
        }
    } else {
        smtp = smtp.tls(Tls::None);
    }
    Ok(smtp.build())
}

impl EmailChannel {
    /// Checks the config and prepares the SMTP transport (no connection yet). `events` receives
    /// the drops of automatic mail, attributed to `channels.email.agent` or `default_agent`.
    pub fn new(
        config: EmailConfig,
        events: EventBus,
        default_agent: &str,
    ) -> Result<EmailChannel, ChannelError> {
        if config.imap_host.trim().is_empty() || config.smtp_host.trim().is_empty() {
            return Err(ERR.config("imapHost and smtpHost are required"));
        }
        let from: Mailbox = config
            .address
            .parse()
            .map_err(|e| ERR.config(format!("address: {e}")))?;
        if config.password.is_none() {
            return Err(ERR.config("password is required"));
        }
        let local = is_loopback(&config.imap_host) && is_loopback(&config.smtp_host);
        if !config.secure && !local {
            return Err(
                ERR.config("secure: false is only allowed for servers on the loopback interface")
            );
        }
        if config.mailbox.is_empty() || config.mailbox.contains(['\r', '\n', '"', '\0']) {
            return Err(ERR.config("mailbox name is invalid"));
        }
        let smtp = build_smtp(&config, &[])?;
        Ok(EmailChannel {
            agent: config
                .agent
                .clone()
                .unwrap_or_else(|| default_agent.to_owned()),
            smtp,
            from,
            config,
            events,
            health: Mutex::new(Health::Stopped),
            threads: Mutex::new((HashMap::new(), VecDeque::new())),
            extra_roots: Vec::new(),
        })
    }

    /// Also trusts the CA certificates in `pem` for IMAP and SMTP (a mail server with a
    /// private CA). The public roots stay trusted; verification cannot be turned off.
    pub fn with_extra_roots_pem(mut self, pem: &[u8]) -> Result<EmailChannel, ChannelError> {
        self.extra_roots =
            comis_net::parse_pem_certs(pem).map_err(|e| ERR.config(e.to_string()))?;
        self.smtp = build_smtp(&self.config, &self.extra_roots)?;
        Ok(self)
    }

    fn remember(&self, id: &str, info: ThreadInfo) {
        if let Ok(mut g) = self.threads.lock() {
            let (map, order) = &mut *g;
            if map.insert(id.to_owned(), info).is_none() {
                order.push_back(id.to_owned());
            }
            while order.len() > THREAD_MEMORY {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
    }

    fn thread_info(&self, id: &str) -> Option<ThreadInfo> {
        self.threads.lock().ok().and_then(|g| g.0.get(id).cloned())
    }

    fn drop_event(&self, sender: &str, reason: &str) {
        self.events.emit(
            Event::new(EventKind::MessageDropped, Outcome::Denied)
                .agent(&self.agent)
                .with("channel", NAME)
                .with("sender", display_safe(sender, 200))
                .with("reason", reason),
        );
    }

    async fn connect(&self) -> Result<ImapSession, ChannelError> {
        let tcp = tokio::time::timeout(
            IO_TIMEOUT,
            TcpStream::connect((self.config.imap_host.as_str(), self.config.imap_port)),
        )
        .await
        .map_err(|_| ERR.transport("IMAP connect timed out"))?
        .map_err(|e| ERR.transport(format!("IMAP connect: {e}")))?;
        let stream = if self.config.secure {
            Stream::Tls(Box::new(
                comis_net::connect_tls(tcp, &self.config.imap_host, &self.extra_roots)
                    .await
                    .map_err(|e| ERR.transport(e.to_string()))?,
            ))
        } else {
            Stream::Plain(tcp)
        };
        let mut client = async_imap::Client::new(stream);
        let greeting = tokio::time::timeout(IO_TIMEOUT, client.read_response())
            .await
            .map_err(|_| ERR.transport("IMAP greeting timed out"))?
            .map_err(|e| ERR.transport(format!("IMAP greeting: {e}")))?;
        if greeting.is_none() {
            return Err(ERR.transport("IMAP server closed before greeting"));
        }
        let password = self
            .config
            .password
            .as_ref()
            .map_or("", |p| p.expose_secret());
        let mut session =
            tokio::time::timeout(IO_TIMEOUT, client.login(self.config.login(), password))
                .await
                .map_err(|_| ERR.transport("IMAP login timed out"))?
                .map_err(|(e, _)| ERR.api(format!("IMAP login: {e}")))?;
        session
            .select(&self.config.mailbox)
            .await
            .map_err(|e| ERR.transport(format!("IMAP select: {e}")))?;
        Ok(session)
    }

    /// Fetches, marks seen and delivers every unseen mail. `Ok(false)` when the daemon stops.
    async fn drain_unseen(
        &self,
        session: &mut ImapSession,
        inbound: &InboundSender,
    ) -> Result<bool, ChannelError> {
        let mut uids: Vec<u32> = timed(IO_TIMEOUT, "search", async {
            session.uid_search("UNSEEN").await.map_err(imap)
        })
        .await?
        .into_iter()
        .collect();
        uids.sort_unstable();
        for uid in uids {
            let fetched = timed(FETCH_TIMEOUT, "fetch", fetch_one(session, uid)).await?;
            timed(IO_TIMEOUT, "store", async {
                let _: Vec<_> = session
                    .uid_store(uid.to_string(), "+FLAGS (\\Seen)")
                    .await
                    .map_err(imap)?
                    .collect()
                    .await;
                Ok(())
            })
            .await?;
            let raw = match fetched {
                Fetched::Raw(raw) => raw,
                Fetched::TooLarge(size) => {
                    self.drop_event(
                        "(unread)",
                        &format!("message of {size} bytes, over {MAX_MESSAGE_BYTES}"),
                    );
                    continue;
                }
                // Expunged between SEARCH and FETCH: nothing to answer.
                Fetched::Missing => continue,
            };
            let fallback = format!("uid-{uid}@{}", self.config.imap_host);
            match parse_mail(&raw, &self.config.address, &fallback) {
                (Parsed::Message(message), info) => {
                    if let Some(info) = info {
                        self.remember(&message.event_id, info);
                    }
                    if inbound.send(*message).await.is_err() {
                        return Ok(false);
                    }
                }
                (Parsed::Dropped { sender, reason }, _) => self.drop_event(&sender, &reason),
                (Parsed::Ignored, _) => {}
            }
        }
        Ok(true)
    }

    /// One IMAP connection until it breaks. `Ok(true)` when the daemon stops.
    async fn session(
        &self,
        inbound: &InboundSender,
        backoff: &mut Backoff,
    ) -> Result<bool, ChannelError> {
        let mut session = self.connect().await?;
        let idle = session
            .capabilities()
            .await
            .map(|c| c.has_str("IDLE"))
            .unwrap_or(false);
        self.set_health(Health::Connected);
        backoff.reset();
        let interval = Duration::from_millis(self.config.polling_interval_ms.max(1_000));
        loop {
            if !self.drain_unseen(&mut session, inbound).await? {
                return Ok(true);
            }
            if inbound.is_closed() {
                return Ok(true);
            }
            if idle {
                let mut handle = session.idle();
                handle
                    .init()
                    .await
                    .map_err(|e| ERR.transport(format!("IDLE: {e}")))?;
                let (wait, _stop) = handle.wait_with_timeout(interval.min(MAX_IDLE));
                wait.await
                    .map_err(|e| ERR.transport(format!("IDLE: {e}")))?;
                session = handle
                    .done()
                    .await
                    .map_err(|e| ERR.transport(format!("IDLE done: {e}")))?;
            } else {
                tokio::time::sleep(interval).await;
                session
                    .noop()
                    .await
                    .map_err(|e| ERR.transport(format!("NOOP: {e}")))?;
            }
        }
    }

    fn build_reply(&self, message: &OutboundMessage) -> Result<Message, ChannelError> {
        let to: Mailbox = message
            .chat
            .parse()
            .map_err(|e| ERR.protocol(format!("recipient: {e}")))?;
        let answered = message.in_reply_to.as_deref().and_then(clean_id);
        let info = answered.as_deref().and_then(|id| self.thread_info(id));
        let subject = info.as_ref().map_or("", |i| i.subject.as_str());
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let subject = if subject.is_empty() {
            "Re: your message".to_owned()
        } else if subject.to_ascii_lowercase().starts_with("re:") {
            subject
        } else {
            format!("Re: {subject}")
        };
        let domain = self
            .config
            .address
            .rsplit_once('@')
            .map_or("localhost", |(_, d)| d);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{}@{}>", random_token(), domain)))
            .header(ContentType::TEXT_PLAIN);
        if let Some(id) = &answered {
            builder = builder.in_reply_to(format!("<{id}>"));
            let refs = info
                .map(|i| i.references)
                .unwrap_or_else(|| vec![id.clone()]);
            let refs: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
            builder = builder.references(refs.join(" "));
        }
        builder
            .body(message.text.clone())
            .map_err(|e| ERR.protocol(format!("building the reply: {e}")))
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 12];
    // Without OS randomness the id is still unique enough per process: a counter would do.
    let _ = getrandom::fill(&mut bytes);
    comis_guard::hex::encode(&bytes)
}

impl Reconnecting for EmailChannel {
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
}

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        NAME
    }

    fn max_message_len(&self) -> usize {
        MAX_BODY_CHARS
    }

    fn run(
        self: Arc<Self>,
        inbound: InboundSender,
    ) -> BoxFuture<'static, Result<(), ChannelError>> {
        Box::pin(async move { run_reconnecting(&*self, &inbound).await })
    }

    fn send<'a>(&'a self, message: OutboundMessage) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let mail = self.build_reply(&message)?;
            self.smtp
                .send(mail)
                .await
                .map(|_| ())
                .map_err(|e| ERR.api(format!("SMTP: {e}")))
        })
    }

    fn health(&self) -> Health {
        self.current_health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Parsed {
        parse_mail(raw.as_bytes(), "bot@example.test", "fallback@x").0
    }

    #[test]
    fn automatic_mail_is_recognised() {
        let cases = [
            ("Auto-Submitted: auto-replied\r\n", "alice@example.test"),
            ("auto-submitted: auto-generated\r\n", "alice@example.test"),
            ("Precedence: bulk\r\n", "alice@example.test"),
            ("Precedence: LIST\r\n", "alice@example.test"),
            (
                "List-Unsubscribe: <mailto:u@example.test>\r\n",
                "alice@example.test",
            ),
            ("X-Auto-Response-Suppress: All\r\n", "alice@example.test"),
            ("", "noreply@example.test"),
            ("", "No-Reply-Notifications@example.test"),
            ("", "MAILER-DAEMON@example.test"),
            ("", "bounces+123@example.test"),
        ];
        for (header, from) in cases {
            let raw = format!("From: {from}\r\n{header}Subject: s\r\n\r\nbody\r\n");
            assert!(
                matches!(parse(&raw), Parsed::Dropped { .. }),
                "{header:?} {from:?} should be dropped"
            );
        }
        let human = "From: alice@example.test\r\nAuto-Submitted: no\r\nPrecedence: first-class\r\n\r\nhi\r\n";
        assert!(matches!(parse(human), Parsed::Message(_)));
    }

    #[test]
    fn own_mail_and_junk_are_ignored() {
        assert!(matches!(
            parse("From: BOT@example.test\r\n\r\nx"),
            Parsed::Ignored
        ));
        assert!(matches!(
            parse("Subject: no sender\r\n\r\nx"),
            Parsed::Ignored
        ));
        assert!(matches!(parse(""), Parsed::Ignored));
        assert!(matches!(
            parse_mail(&[0xff, 0x00, 0x0d, 0x0a], "b@x", "f").0,
            Parsed::Ignored
        ));
    }

    #[test]
    fn html_bodies_become_wrapped_text_with_thread_ids() {
        let raw = "From: Alice <Alice@Example.test>\r\nSubject: Plans\r\n\
                   Message-ID: <m2@example.test>\r\nReferences: <m0@example.test> <m1@example.test>\r\n\
                   Content-Type: text/html\r\n\r\n<p>Hello <b>there</b></p><script>x</script>\r\n";
        let (parsed, info) = parse_mail(raw.as_bytes(), "bot@example.test", "f");
        let Parsed::Message(m) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(m.sender, "alice@example.test");
        assert_eq!(m.chat, "alice@example.test");
        assert_eq!(m.event_id, "m2@example.test");
        assert_eq!(m.thread.as_deref(), Some("m0@example.test"));
        assert!(m.text.contains("Hello there"), "{}", m.text);
        assert!(!m.text.contains("<b>"));
        assert!(m.text.contains("<<<UNTRUSTED_"));
        assert!(m.text.contains("Subject: Plans"));
        let info = info.unwrap();
        assert_eq!(
            info.references,
            ["m0@example.test", "m1@example.test", "m2@example.test"]
        );
    }

    #[test]
    fn hostile_ids_never_reach_headers() {
        assert_eq!(clean_id("<a@b>"), Some("a@b".into()));
        assert_eq!(clean_id("<a b@c>"), None);
        assert_eq!(clean_id("a\r\nBcc: x@y"), None);
        assert_eq!(clean_id(""), None);
        assert_eq!(clean_id(&"x".repeat(300)), None);
    }

    #[test]
    fn insecure_mode_is_loopback_only_and_config_is_checked() {
        let mut c = EmailConfig {
            imap_host: "imap.example.test".into(),
            smtp_host: "smtp.example.test".into(),
            address: "bot@example.test".into(),
            password: Some("pw".to_owned().into()),
            secure: false,
            ..EmailConfig::default()
        };
        assert!(EmailChannel::new(c.clone(), EventBus::new(), "default").is_err());
        c.imap_host = "127.0.0.1".into();
        c.smtp_host = "localhost".into();
        assert!(EmailChannel::new(c.clone(), EventBus::new(), "default").is_ok());
        c.address = "not an address".into();
        assert!(EmailChannel::new(c.clone(), EventBus::new(), "default").is_err());
        c.address = "bot@example.test".into();
        c.password = None;
        assert!(EmailChannel::new(c, EventBus::new(), "default").is_err());
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let c = EmailConfig {
            imap_host: "imap.example.test".into(),
            smtp_host: "smtp.example.test".into(),
            address: "bot@example.test".into(),
            password: Some("pw-Zx81-secret".to_owned().into()),
            ..EmailConfig::default()
        };
        let channel = EmailChannel::new(c, EventBus::new(), "default").unwrap();
        let debug = format!("{channel:?}");
        assert!(debug.contains("smtp.example.test"), "{debug}");
        assert!(!debug.contains("pw-Zx81-secret"), "{debug}");
    }

    #[test]
    fn allow_mode_maps_to_the_router_filter() {
        let mut c = EmailConfig::default();
        assert!(c.effective_allow_from().is_empty());
        c.allow_mode = AllowMode::Open;
        assert_eq!(c.effective_allow_from(), ["*"]);
    }

    #[test]
    fn huge_and_deep_mime_does_not_crash() {
        let mut raw = String::from(
            "From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n",
        );
        for i in 0..200 {
            raw.push_str(&format!(
                "--b{i}\r\nContent-Type: multipart/mixed; boundary=b{}\r\n\r\n",
                i + 1
            ));
        }
        let _ = parse(&raw);
        let big = format!(
            "From: a@example.test\r\n\r\n{}",
            "x".repeat(MAX_BODY_CHARS * 3)
        );
        let Parsed::Message(m) = parse(&big) else {
            panic!("a big plain mail is still a message")
        };
        assert!(m.text.chars().count() < MAX_BODY_CHARS + 2_000);
    }
}
