//! The credential broker: an HTTPS proxy inside the daemon that puts real credentials into a
//! sandboxed CLI's requests at the network boundary, so the sandbox only ever holds a
//! placeholder.
//!
//! **Defends** API keys against the process that uses them: `env`, `/proc/self/environ`,
//! config files and memory inside the sandbox show the placeholder only. Combined with the
//! sandbox's `network: broker` mode (no network but the broker's Unix socket), it also stops
//! direct egress.
//!
//! **How a request flows.** The sandbox's `HTTPS_PROXY` points at the [`crate::relay`] on its
//! loopback, which forwards to this broker's Unix socket. For each `CONNECT`:
//! 1. the token in `Proxy-Authorization` must open a live session → else **407**;
//! 2. some binding must name `host:port` → else **403**;
//! 3. the broker answers 200 and terminates TLS with a leaf from its own CA
//!    ([`ca::BrokerCa`]); inside, for each request:
//! 4. the normalized path must match a rule of a binding → else **403**;
//! 5. the binding's secret must resolve through the run's scoped secret access → else
//!    **502**;
//! 6. the credential is set (header, bearer or query parameter, replacing whatever the client
//!    sent, placeholder included), hop-by-hop and proxy headers are dropped, and the request
//!    goes upstream through the [`GuardedClient`]: SSRF-checked, DNS-pinned, verified TLS, no
//!    redirects followed (3xx go back to the CLI, whose next CONNECT is checked again).
//!
//! **Guarantees.** Every refusal (407/403/502 and malformed requests) is answered by the
//! broker before any byte goes upstream, with `Connection: close`, and is an audit event
//! ([`NetEvent::Deny`]); every injection is an [`NetEvent::Inject`]; both carry the run's
//! agent id and trace id. Request bodies are bounded ([`BrokerLimits`]), header reads time
//! out, connections are capped.
//!
//! **Does not** broker OAuth or subscription logins (only static header/bearer/query
//! credentials), plain-HTTP proxying (refused with 405), HTTP/2 inside the tunnel, or
//! protect a credential from an upstream that echoes it back.

pub mod bindings;
pub mod ca;
pub mod session;

use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use comis_secrets::{ExposeSecret, SecretAccess};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc};
use url::Url;

pub use bindings::{Binding, Bindings, HostRule, Inject};
pub use ca::BrokerCa;
pub use session::{BrokerSession, SANDBOX_CA_FILE, SessionInfo, Sessions, TokenError};

use crate::NetError;
use crate::audit::{EgressContext, NetAudit, NetEvent, printable};
use crate::client::{GuardedClient, display_url};

/// Where the broker's socket appears inside a `network: broker` sandbox.
pub const SANDBOX_SOCKET: &str = "/run/comis/broker.sock";

/// Bounds of the broker.
#[derive(Debug, Clone)]
pub struct BrokerLimits {
    /// Largest request body forwarded (default 32 MiB).
    pub max_request_bytes: usize,
    /// Largest response body forwarded (default 256 MiB; LLM streams are long).
    pub max_response_bytes: u64,
    /// Time to receive a request's headers (default 30 s).
    pub header_timeout: Duration,
    /// Concurrent connections on the socket (default 256).
    pub max_connections: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 32 * 1024 * 1024,
            max_response_bytes: 256 * 1024 * 1024,
            header_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

type Body = BoxBody<Bytes, io::Error>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

struct Inner {
    bindings: Bindings,
    ca: BrokerCa,
    upstream: GuardedClient,
    sessions: Arc<Sessions>,
    audit: Arc<dyn NetAudit>,
    limits: BrokerLimits,
}

/// The broker. Clone it freely; clones share sessions and caches.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bindings", &self.inner.bindings)
            .finish_non_exhaustive()
    }
}

/// One refusal: status, reason for the audit and the client, and whose run it was.
struct Deny {
    status: StatusCode,
    reason: String,
}

impl Broker {
    /// A broker forwarding through `upstream` (whose SSRF policy and TLS roots apply).
    #[must_use]
    pub fn new(
        bindings: Bindings,
        ca: BrokerCa,
        upstream: GuardedClient,
        audit: Arc<dyn NetAudit>,
        limits: BrokerLimits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                bindings,
                ca,
                upstream,
                sessions: Arc::new(Sessions::default()),
                audit,
                limits,
            }),
        }
    }

    /// Opens the session of one sandboxed run; dropping the handle ends it.
    ///
    /// # Errors
    /// [`NetError::Config`] when no random token can be made.
    pub fn open_session(
        &self,
        context: EgressContext,
        secrets: Arc<dyn SecretAccess + Send + Sync>,
    ) -> Result<BrokerSession, NetError> {
        self.inner.sessions.open(context, secrets)
    }

    /// The bindings in force.
    #[must_use]
    pub fn bindings(&self) -> &Bindings {
        &self.inner.bindings
    }

    /// The CA certificate to offer inside sandboxes.
    #[must_use]
    pub fn ca_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// Live sessions.
    #[must_use]
    pub fn live_sessions(&self) -> usize {
        self.inner.sessions.live()
    }

    /// Binds the broker socket at `path` (replacing a stale socket file) with mode 0600.
    ///
    /// # Errors
    /// [`NetError::Io`].
    pub fn bind(path: &Path) -> Result<UnixListener, NetError> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |source| NetError::Io { what, source }
        };
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.file_type().is_socket() {
                return Err(NetError::Config(format!(
                    "{} exists and is not a socket",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(io("removing stale socket"))?;
        }
        let listener = UnixListener::bind(path).map_err(io("binding the broker socket"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restricting the broker socket"))?;
        Ok(listener)
    }

    /// Serves connections from `listener` until the task is dropped.
    ///
    /// # Errors
    /// [`NetError::Io`] when accepting fails for good.
    pub async fn serve(&self, listener: UnixListener) -> Result<(), NetError> {
        let permits = Arc::new(Semaphore::new(self.inner.limits.max_connections));
        loop {
            let (stream, _) = listener.accept().await.map_err(|source| NetError::Io {
                what: "accepting on the broker socket".into(),
                source,
            })?;
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                return Ok(());
            };
            let this = self.clone();
            tokio::spawn(async move {
                this.serve_connection(stream).await;
                drop(permit);
            });
        }
    }

    /// Serves one proxy connection (CONNECT requests) on any stream.
    pub async fn serve_connection<S>(&self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let this = self.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.on_connect(req)) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.limits.header_timeout)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades()
            .await;
    }

    fn deny(&self, ctx: &EgressContext, host: &str, d: &Deny) -> Response<Body> {
        self.inner.audit.record(&NetEvent::Deny {
            context: ctx.clone(),
            status: d.status.as_u16(),
            host: printable(host, 255),
            reason: d.reason.clone(),
        });
        let mut resp = Response::new(full(format!("comis broker: {}\n", d.reason)));
        *resp.status_mut() = d.status;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if d.status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            h.insert(
                header::PROXY_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"comis-broker\""),
            );
        }
        resp
    }

    /// Gate 1 and 2: the token, then the host. Answers 200 and starts the tunnel, or refuses.
    fn on_connect(&self, req: Request<Incoming>) -> Response<Body> {
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        let shown = authority.clone().unwrap_or_else(|| req.uri().to_string());
        let anon = EgressContext::default();
        if req.method() != Method::CONNECT {
            let d = Deny {
                status: StatusCode::METHOD_NOT_ALLOWED,
                reason: "only HTTPS (CONNECT) is brokered".into(),
            };
            return self.deny(&anon, &shown, &d);
        }
        let token = req
            .headers()
            .get(header::PROXY_AUTHORIZATION)
            .map(|v| session::token_from_header(v.as_bytes()));
        let session = match token {
            None => Err(TokenError::Missing),
            Some(None) => Err(TokenError::Invalid),
            Some(Some(t)) => self.inner.sessions.authenticate(&t),
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                let d = Deny {
                    status: StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    reason: e.as_str().into(),
                };
                return self.deny(&anon, &shown, &d);
            }
        };
        let target = req.uri().authority().and_then(|a| {
            let host = bindings::normalize_host(a.host())?;
            Some((host, a.port_u16().unwrap_or(443)))
        });
        let Some((host, port)) = target.filter(|(h, p)| self.inner.bindings.allows_host(h, *p))
        else {
            let d = Deny {
                status: StatusCode::FORBIDDEN,
                reason: format!("no broker binding for {}", printable(&shown, 255)),
            };
            return self.deny(&session.context, &shown, &d);
        };
        let this = self.clone();
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                this.tunnel(TokioIo::new(upgraded), session, host, port)
                    .await;
            }
        });
        Response::new(full(Bytes::new()))
    }

    /// Terminates TLS as `host` and serves the requests inside.
    async fn tunnel<S>(&self, io: S, session: Arc<SessionInfo>, host: String, port: u16)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Ok(config) = self.inner.ca.server_config(&host) else {
            return;
        };
        let Ok(tls) = tokio_rustls::TlsAcceptor::from(config).accept(io).await else {
            return;
        };
        let this = self.clone();
        let svc = service_fn(move |req: Request<Incoming>| {
            let this = this.clone();
            let session = Arc::clone(&session);
            let host = host.clone();
            async move { Ok::<_, Infallible>(this.forward(req, &session, &host, port).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.inner.limits.header_timeout)
            .serve_connection(TokioIo::new(tls), svc)
            .await;
    }

    /// Gates 4 and 5, the swap, and the upstream exchange.
    async fn forward(
        &self,
        req: Request<Incoming>,
        session: &SessionInfo,
        host: &str,
        port: u16,
    ) -> Response<Body> {
        let ctx = &session.context;
        let deny =
            |status: StatusCode, reason: String| self.deny(ctx, host, &Deny { status, reason });
        let pq = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let base = if port == 443 {
            format!("https://{}", url_host(host))
        } else {
            format!("https://{}:{port}", url_host(host))
        };
        // Parse the path the way the upstream will see it (dot segments and %2e resolved),
        // then match bindings on that normalized path.
        let Some(mut url) = Url::parse(&base)
            .ok()
            .and_then(|b| b.join(&pq).ok())
            .filter(|u| {
                u.host_str()
                    .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                    == Some(host)
                    && u.port_or_known_default() == Some(port)
            })
        else {
            return deny(StatusCode::BAD_REQUEST, "malformed request target".into());
        };
        let Some((binding, rule)) = self.inner.bindings.find(host, port, url.path()) else {
            return deny(
                StatusCode::FORBIDDEN,
                format!("no broker binding for {host}{}", printable(url.path(), 200)),
            );
        };
        let secret = match session.secrets.require(&binding.secret) {
            Ok(s) => s,
            Err(e) => {
                return deny(
                    StatusCode::BAD_GATEWAY,
                    format!("credential for binding {}: {e}", binding.name),
                );
            }
        };
        let method = req.method().clone();
        let mut headers = forwardable(req.headers());
        match &rule.inject {
            Inject::Bearer | Inject::Header(_) => {
                let value = match &rule.inject {
                    Inject::Bearer => format!("Bearer {}", secret.expose_secret()),
                    _ => secret.expose_secret().to_owned(),
                };
                let value = zeroize::Zeroizing::new(value);
                let Ok(mut v) = HeaderValue::from_str(&value) else {
                    return deny(
                        StatusCode::BAD_GATEWAY,
                        format!("secret {} is not a valid header value", binding.secret),
                    );
                };
                v.set_sensitive(true);
                let name = match &rule.inject {
                    Inject::Header(n) => n.clone(),
                    _ => header::AUTHORIZATION,
                };
                headers.insert(name, v);
            }
            Inject::Query(name) => set_query_param(&mut url, name, secret.expose_secret()),
        }
        let body = match Limited::new(req.into_body(), self.inner.limits.max_request_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return deny(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "request body over {} bytes or unreadable",
                        self.inner.limits.max_request_bytes
                    ),
                );
            }
        };
        self.inner.audit.record(&NetEvent::Inject {
            context: ctx.clone(),
            host: host.to_owned(),
            path: printable(url.path(), 200),
            binding: binding.name.clone(),
            secret: binding.secret.clone(),
        });
        let upstream = self
            .inner
            .upstream
            .send_once(method, &url, headers, Some(body), ctx)
            .await;
        drop(secret);
        match upstream {
            Ok(resp) => self.relay_response(resp, url),
            Err(e) => {
                let status = if e.refusal().is_some() {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::BAD_GATEWAY
                };
                deny(status, format!("upstream {}: {e}", display_url(&url)))
            }
        }
    }

    /// Streams an upstream response back, bounded by the response limit.
    fn relay_response(&self, resp: reqwest::Response, url: Url) -> Response<Body> {
        let status = resp.status();
        let headers = forwardable(resp.headers());
        let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
        let limit = self.inner.limits.max_response_bytes;
        tokio::spawn(async move {
            let mut resp = resp;
            let mut total: u64 = 0;
            loop {
                let item = match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        total = total.saturating_add(chunk.len() as u64);
                        if total > limit {
                            Err(io::Error::other(format!(
                                "response from {} over {limit} bytes",
                                display_url(&url)
                            )))
                        } else {
                            Ok(chunk)
                        }
                    }
                    Ok(None) => return,
                    Err(_) => Err(io::Error::other("upstream body failed")),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        let mut out = Response::new(ChannelBody { rx }.boxed());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        out
    }
}

/// A response body fed by a channel.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Headers that may cross the proxy: end-to-end ones only (RFC 9110 §7.6.1), without `Host`
/// and the proxy's own credentials.
fn forwardable(h: &HeaderMap) -> HeaderMap {
    let mut hop: Vec<HeaderName> = vec![
        header::CONNECTION,
        header::HOST,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::CONTENT_LENGTH,
        HeaderName::from_static("keep-alive"),
    ];
    // Names listed in Connection are hop-by-hop too.
    for v in h.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            hop.extend(
                s.split(',')
                    .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()),
            );
        }
    }
    let mut out = HeaderMap::new();
    for (k, v) in h {
        if !hop.contains(k) && !k.as_str().starts_with("proxy-") {
            out.append(k.clone(), v.clone());
        }
    }
    out
}

/// Sets `name` to `value` in the query, replacing every occurrence the client sent.
fn set_query_param(url: &mut Url, name: &str, value: &str) {
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut q = url.query_pairs_mut();
    q.clear();
    for (k, v) in &kept {
        q.append_pair(k, v);
    }
    q.append_pair(name, value);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn query_param_is_replaced_not_duplicated() {
        let mut u =
            Url::parse("https://finnhub.io/api/v1/quote?symbol=AAPL&token=PH&token=x").unwrap();
        set_query_param(&mut u, "token", "real");
        assert_eq!(u.query(), Some("symbol=AAPL&token=real"));
    }

    #[test]
    fn hop_by_hop_and_proxy_headers_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("x-secret-hop"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::HOST, HeaderValue::from_static("evil.example"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let out = forwardable(&h);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("x-keep"));
    }
}
