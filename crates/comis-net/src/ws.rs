//! [`connect`]: the daemon's one WebSocket client (the Discord gateway speaks it).
//!
//! **Guarantees.**
//! - The URL (`ws:` or `wss:` only, no userinfo) passes the same SSRF checks as an HTTP URL
//!   ([`SsrfPolicy::check_parsed`] on its `http:`/`https:` twin), and the host is resolved
//!   **once** by the pinning resolver: every answer checked, the TCP connection goes only to a
//!   checked address. No redirects are followed (a WebSocket handshake answered with anything
//!   but `101` fails).
//! - `wss:` is verified TLS (rustls, web PKI roots plus configured extra roots), SNI keeps the
//!   name.
//! - Connecting and the handshake are bounded by [`WsConfig::connect_timeout`]; one message by
//!   [`WsConfig::max_message_bytes`] (larger frames fail the read instead of growing memory).
//! - Pings are answered by the library; [`WsConnection::recv`] returns only text, binary and
//!   close frames.
//!
//! **Does not** make what the server sends trustworthy: callers parse it as hostile input.
//! Errors name the URL without its query string.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use url::Url;

use crate::NetError;
use crate::client::display_url;
use crate::policy::{SsrfPolicy, TargetHost};
use crate::resolve::{PinningResolve, Resolver, SystemResolver};

/// Limits and trust of a WebSocket connection.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message (and frame), in bytes (default 8 MiB: a Discord READY can be large).
    pub max_message_bytes: usize,
    /// Resolving, connecting, TLS and the upgrade together (default 15 s).
    pub connect_timeout: Duration,
    /// Roots trusted in addition to the web PKI.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(15),
            extra_roots: Vec::new(),
        }
    }
}

/// One message received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
    /// The peer closed (`code` 1005 when it gave none).
    Close {
        code: u16,
        reason: String,
    },
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open WebSocket connection.
pub struct WsConnection {
    inner: WebSocketStream<Box<dyn Io>>,
    shown: String,
}

impl std::fmt::Debug for WsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsConnection")
            .field("url", &self.shown)
            .finish_non_exhaustive()
    }
}

impl WsConnection {
    fn transport(&self, detail: impl std::fmt::Display) -> NetError {
        NetError::Transport {
            url: self.shown.clone(),
            detail: comis_guard::unicode::display_safe(&detail.to_string(), 500),
        }
    }

    /// Sends one text message.
    ///
    /// # Errors
    /// [`NetError::Transport`] when the connection is broken.
    pub async fn send_text(&mut self, text: &str) -> Result<(), NetError> {
        self.inner
            .send(Message::text(text))
            .await
            .map_err(|e| self.transport(e))
    }

    /// The next text, binary or close message; `Ok(None)` when the stream ended without a
    /// close frame. Cancel-safe: dropping the future loses no message.
    ///
    /// # Errors
    /// [`NetError::Transport`] for a broken connection, a protocol violation or a message
    /// over the size limit.
    pub async fn recv(&mut self) -> Result<Option<WsMessage>, NetError> {
        loop {
            let Some(msg) = self.inner.next().await else {
                return Ok(None);
            };
            match msg.map_err(|e| self.transport(e))? {
                Message::Text(t) => return Ok(Some(WsMessage::Text(t.as_str().to_owned()))),
                Message::Binary(b) => return Ok(Some(WsMessage::Binary(b.to_vec()))),
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.as_str().to_owned())
                    });
                    return Ok(Some(WsMessage::Close { code, reason }));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Sends a close frame with `code` and flushes; errors of an already broken connection
    /// are ignored (closing is best effort).
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.inner.close(Some(frame)).await;
    }
}

/// Connects to `url` with the system resolver.
///
/// # Errors
/// See [`connect_with_resolver`].
pub async fn connect(
    url: &str,
    policy: &SsrfPolicy,
    config: &WsConfig,
) -> Result<WsConnection, NetError> {
    connect_with_resolver(url, policy, config, Arc::new(SystemResolver)).await
}

/// Connects to `url` (`ws:` or `wss:`), resolving through `resolver`.
///
/// # Errors
/// [`NetError::Blocked`] (scheme, URL or resolved address), [`NetError::Timeout`],
/// [`NetError::Transport`] (connect, TLS, handshake), [`NetError::Config`] (TLS roots).
pub async fn connect_with_resolver(
    url: &str,
    policy: &SsrfPolicy,
    config: &WsConfig,
    resolver: Arc<dyn Resolver>,
) -> Result<WsConnection, NetError> {
    let parsed = Url::parse(url)
        .map_err(|e| NetError::Blocked(crate::Refusal::InvalidUrl(e.to_string())))?;
    let shown = display_url(&parsed);
    let limit = config.connect_timeout;
    match tokio::time::timeout(limit, connect_inner(parsed, policy, config, resolver)).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout {
            url: shown,
            secs: limit.as_secs(),
        }),
    }
}

async fn connect_inner(
    url: Url,
    policy: &SsrfPolicy,
    config: &WsConfig,
    resolver: Arc<dyn Resolver>,
) -> Result<WsConnection, NetError> {
    let shown = display_url(&url);
    let tls = match url.scheme() {
        "ws" => false,
        "wss" => true,
        other => return Err(NetError::Blocked(crate::Refusal::Scheme(other.to_owned()))),
    };
    // The HTTP twin carries the same host and port through the one set of SSRF rules.
    let twin_text = format!(
        "{}{}",
        if tls { "https" } else { "http" },
        &url.as_str()[url.scheme().len()..]
    );
    let twin = Url::parse(&twin_text)
        .map_err(|e| NetError::Blocked(crate::Refusal::InvalidUrl(e.to_string())))?;
    let target = policy.check_parsed(twin).map_err(NetError::Blocked)?;
    let port = target
        .url
        .port_or_known_default()
        .ok_or_else(|| NetError::Request("no port".into()))?;
    let (ips, sni) = match &target.host {
        TargetHost::Ip(ip) => (vec![*ip], ip.to_string()),
        TargetHost::Name(name) => {
            let pin = PinningResolve {
                resolver,
                policy: Arc::new(policy.clone()),
            };
            (
                pin.pin(name).await.map_err(NetError::Blocked)?,
                name.clone(),
            )
        }
    };
    let transport = |detail: String| NetError::Transport {
        url: shown.clone(),
        detail: comis_guard::unicode::display_safe(&detail, 500),
    };
    let mut last = String::from("no address");
    let mut tcp = None;
    for ip in ips {
        match TcpStream::connect((ip, port)).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("connect {ip}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| transport(last))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if tls {
        let client = crate::tls::client_config(&config.extra_roots)?;
        let name = ServerName::try_from(sni).map_err(|e| transport(format!("server name: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, tcp)
            .await
            .map_err(|e| transport(format!("TLS: {e}")))?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let (inner, _response) =
        tokio_tungstenite::client_async_with_config(url.as_str(), io, Some(ws_config))
            .await
            .map_err(|e| transport(format!("handshake: {e}")))?;
    Ok(WsConnection { inner, shown })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn refuses_other_schemes_and_private_hosts() {
        let strict = SsrfPolicy::default();
        let cfg = WsConfig::default();
        for url in [
            "http://example.com/",
            "ws://127.0.0.1:9/",
            "wss://169.254.169.254/",
            "ws://localhost:9/",
            "ws://user:pw@example.com/",
        ] {
            let e = connect(url, &strict, &cfg).await.unwrap_err();
            assert!(e.refusal().is_some(), "{url}: {e}");
        }
    }

    #[tokio::test]
    async fn echo_through_a_local_server_allowed_by_policy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(sock).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() {
                    ws.send(m).await.unwrap();
                    ws.send(Message::Ping(vec![1].into())).await.unwrap();
                    ws.send(Message::binary(vec![0u8; 64])).await.unwrap();
                    ws.send(Message::binary(vec![0u8; 4096])).await.unwrap();
                }
            }
        });
        let policy = SsrfPolicy::with_allow_hosts(&["127.0.0.1"]).unwrap();
        let cfg = WsConfig {
            max_message_bytes: 1024,
            ..WsConfig::default()
        };
        let mut c = connect(&format!("ws://{addr}/gw?v=10"), &policy, &cfg)
            .await
            .unwrap();
        c.send_text("hello").await.unwrap();
        assert_eq!(
            c.recv().await.unwrap(),
            Some(WsMessage::Text("hello".into()))
        );
        // The ping is answered and skipped.
        assert_eq!(
            c.recv().await.unwrap(),
            Some(WsMessage::Binary(vec![0; 64]))
        );
        // Over the limit: a read error, not memory growth.
        assert!(c.recv().await.is_err());
    }
}
