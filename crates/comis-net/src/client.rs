//! [`GuardedClient`]: the daemon's one outbound HTTP client.
//!
//! **Defends** against SSRF through every door an HTTP client has: the URL, each redirect, DNS
//! (rebinding), proxies from the environment, oversized or endless responses.
//!
//! **Guarantees.**
//! - Every URL, and every redirect target, passes [`SsrfPolicy::check_parsed`] before a
//!   connection is considered; names are resolved only by the pinning resolver (see
//!   [`crate::resolve`]): one lookup per connection, every answer checked, connection only to
//!   checked addresses, SNI and `Host` keep the name.
//! - Redirects are followed by this code, never by the library: at most
//!   [`ClientConfig::max_redirects`] (5), each hop re-checked; 301/302 turn POST into GET and
//!   303 turns anything but HEAD into GET (dropping the body); credentials (`Authorization`,
//!   `Cookie`, `Proxy-Authorization` and the request's own sensitive headers) are dropped when
//!   a redirect leaves the origin.
//! - The whole exchange (all hops and the body) is bounded by [`ClientConfig::timeout`]; the
//!   body by [`ClientConfig::max_response_bytes`] (5 MiB), checked while it streams, so a
//!   lying `Content-Length` or an endless body stops at the limit. No decompression, so no
//!   decompression bombs.
//! - [`GuardedClient::fetch_stream`] gives the same checks with the body read chunk by chunk
//!   as it arrives (for server-sent events), bounded by its own [`StreamLimits`].
//! - `HTTP_PROXY`/`HTTPS_PROXY` are ignored (a proxy would resolve names for us), and TLS is
//!   always verified (rustls, web PKI roots plus configured extra roots).
//! - Errors and audit events name URLs without their query string (queries carry tokens).
//!
//! **Does not** make the response trustworthy: callers wrap it as external content.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use rustls_pki_types::CertificateDer;
use url::Url;

use crate::NetError;
use crate::audit::{EgressContext, NetAudit, NetEvent, NoAudit};
use crate::policy::{Refusal, SsrfPolicy, Target};
use crate::resolve::{PinRefused, PinningResolve, Resolver, SystemResolver};

/// Limits and trust of a [`GuardedClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest response body, in bytes (default 5 MiB).
    pub max_response_bytes: u64,
    /// The whole exchange, redirects and body included (default 30 s).
    pub timeout: Duration,
    /// Establishing one connection, TLS included (default 10 s).
    pub connect_timeout: Duration,
    /// Redirects followed before giving up (default 5).
    pub max_redirects: usize,
    /// `User-Agent` sent when the request sets none.
    pub user_agent: String,
    /// Roots trusted in addition to the web PKI (a corporate CA; a test CA).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_response_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
            user_agent: concat!("comis/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_roots: Vec::new(),
        }
    }
}

/// One request.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// `GET`, `POST`, … (default `GET`).
    pub method: String,
    pub url: String,
    /// Extra headers. `Host`, `Content-Length`, `Connection`, `Transfer-Encoding`, `TE`,
    /// `Upgrade` and `Proxy-*` are refused: the client owns them.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Header names (besides `Authorization`, `Cookie`) dropped when a redirect leaves the
    /// origin, e.g. `x-api-key`.
    pub sensitive_headers: Vec<String>,
    /// Who asked, for audit events.
    pub context: Option<EgressContext>,
}

impl FetchRequest {
    /// A `GET` of `url`.
    #[must_use]
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            sensitive_headers: Vec::new(),
            context: None,
        }
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct FetchResponse {
    pub status: u16,
    /// The URL that answered (after redirects).
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Every URL that redirected, in order.
    pub redirects: Vec<String>,
}

/// Limits of one [`GuardedClient::fetch_stream`] exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// The whole exchange: connecting, redirects, headers and every chunk of the body.
    pub timeout: Duration,
    /// Largest total body, in bytes, counted as the chunks arrive.
    pub max_bytes: u64,
}

/// A response whose body is read as it arrives (server-sent events, NDJSON), still bounded in
/// total size and time.
#[derive(Debug)]
pub struct FetchStream {
    pub status: u16,
    /// The URL that answered (after redirects).
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Every URL that redirected, in order.
    pub redirects: Vec<String>,
    resp: reqwest::Response,
    target: Url,
    deadline: tokio::time::Instant,
    limits: StreamLimits,
    read: u64,
    client: GuardedClient,
}

impl FetchStream {
    /// The value of the first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next chunk of the body as it arrived; `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`NetError::Timeout`] past the exchange's deadline, [`NetError::TooLarge`] past its
    /// size limit, [`NetError::Transport`] when the connection fails mid-body.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, NetError> {
        let next = tokio::time::timeout_at(self.deadline, self.resp.chunk()).await;
        let chunk = match next {
            Err(_) => {
                return Err(NetError::Timeout {
                    url: display_url(&self.target),
                    secs: self.limits.timeout.as_secs(),
                });
            }
            Ok(r) => r.map_err(|e| {
                self.client
                    .transport_error(&self.target, &e, &EgressContext::default())
            })?,
        };
        if let Some(c) = &chunk {
            self.read = self.read.saturating_add(c.len() as u64);
            if self.read > self.limits.max_bytes {
                return Err(NetError::TooLarge {
                    url: display_url(&self.target),
                    limit: self.limits.max_bytes,
                });
            }
        }
        Ok(chunk)
    }

    /// The rest of the body, whole (still bounded); for error answers.
    ///
    /// # Errors
    /// As [`next_chunk`](Self::next_chunk).
    pub async fn collect(mut self) -> Result<Bytes, NetError> {
        let mut buf = Vec::new();
        while let Some(c) = self.next_chunk().await? {
            buf.extend_from_slice(&c);
        }
        Ok(Bytes::from(buf))
    }
}

/// The guarded outbound HTTP client. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct GuardedClient {
    inner: reqwest::Client,
    policy: Arc<SsrfPolicy>,
    config: Arc<ClientConfig>,
    audit: Arc<dyn NetAudit>,
    resolver: Arc<dyn Resolver>,
}

impl std::fmt::Debug for GuardedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedClient")
            .field("policy", &self.policy)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// URL text for errors and events: no userinfo, no query, no fragment, bounded.
pub(crate) fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    comis_guard::unicode::display_safe(u.as_str(), 300)
}

fn display_raw(url: &str) -> String {
    Url::parse(url).map_or_else(
        |_| comis_guard::unicode::display_safe(url.split(['?', '#']).next().unwrap_or(""), 300),
        |u| display_url(&u),
    )
}

/// Headers callers may not set.
fn reserved_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "host"
            | "content-length"
            | "connection"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "keep-alive"
            | "trailer"
    ) || n.starts_with("proxy-")
}

impl GuardedClient {
    /// A client with the system resolver.
    ///
    /// # Errors
    /// [`NetError::Config`] when the TLS configuration or the client cannot be built.
    pub fn new(policy: SsrfPolicy, config: ClientConfig) -> Result<Self, NetError> {
        Self::with_resolver(policy, config, Arc::new(SystemResolver), Arc::new(NoAudit))
    }

    /// A client with a given resolver and audit sink.
    ///
    /// # Errors
    /// [`NetError::Config`] when the TLS configuration or the client cannot be built.
    pub fn with_resolver(
        policy: SsrfPolicy,
        config: ClientConfig,
        resolver: Arc<dyn Resolver>,
        audit: Arc<dyn NetAudit>,
    ) -> Result<Self, NetError> {
        let policy = Arc::new(policy);
        let tls = crate::tls::client_config(&config.extra_roots)?;
        let pin = PinningResolve {
            resolver: Arc::clone(&resolver),
            policy: Arc::clone(&policy),
        };
        let inner = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .dns_resolver(Arc::new(pin))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| NetError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            inner,
            policy,
            config: Arc::new(config),
            audit,
            resolver,
        })
    }

    /// A client like this one (limits, resolver, audit) whose policy also excepts `hosts`:
    /// for a host the operator configured (a provider's `baseUrl` on 127.0.0.1 or the LAN),
    /// never for one a model supplied. The new client has its own connection pool.
    ///
    /// # Errors
    /// [`NetError::Config`] for a malformed host entry or when the client cannot be built.
    pub fn with_allowed_hosts<S: AsRef<str>>(&self, hosts: &[S]) -> Result<Self, NetError> {
        let policy = self.policy.with_extra_allow_hosts(hosts)?;
        Self::with_resolver(
            policy,
            (*self.config).clone(),
            Arc::clone(&self.resolver),
            Arc::clone(&self.audit),
        )
    }

    /// The policy this client enforces.
    #[must_use]
    pub fn policy(&self) -> &SsrfPolicy {
        &self.policy
    }

    /// The limits of this client.
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `GET url`, following redirects, body read whole (bounded).
    ///
    /// # Errors
    /// See [`fetch`](Self::fetch).
    pub async fn get(&self, url: &str) -> Result<FetchResponse, NetError> {
        self.fetch(FetchRequest::get(url)).await
    }

    /// Sends `req`, following redirects, and reads the body whole (bounded).
    ///
    /// # Errors
    /// [`NetError::Blocked`] (URL, redirect hop or resolved address), `TooManyRedirects`,
    /// `BadRedirect`, `TooLarge`, `Timeout`, `Transport`, `Request`.
    pub async fn fetch(&self, req: FetchRequest) -> Result<FetchResponse, NetError> {
        let shown = display_raw(&req.url);
        let limit = self.config.timeout;
        match tokio::time::timeout(limit, self.fetch_inner(req)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout {
                url: shown,
                secs: limit.as_secs(),
            }),
        }
    }

    /// The client to use for an operator-configured base URL (a provider's `baseUrl`): this
    /// one when the strict rules already let the URL through, otherwise a copy whose policy
    /// excepts exactly that URL's host (so `http://127.0.0.1:11434` works for a local model
    /// server). Never call this with a URL a model or a message supplied.
    ///
    /// # Errors
    /// [`NetError::Request`] when `url` is not an absolute `http`/`https` URL with a host;
    /// [`NetError::Config`] when the copy cannot be built.
    pub fn for_configured_url(&self, url: &str) -> Result<Self, NetError> {
        let parsed =
            Url::parse(url).map_err(|e| NetError::Request(format!("{}: {e}", display_raw(url))))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(NetError::Request(format!(
                "{}: only http and https URLs",
                display_url(&parsed)
            )));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => {
                return Err(NetError::Request(format!(
                    "{}: no host",
                    display_url(&parsed)
                )));
            }
        };
        if self.policy.check_parsed(parsed).is_ok() {
            return Ok(self.clone());
        }
        self.with_allowed_hosts(&[host])
    }

    /// Sends `req`, following redirects like [`fetch`](Self::fetch), and hands back the body
    /// as a stream of chunks read as they arrive: for server-sent events and NDJSON, which
    /// must be parsed before the answer is complete. `limits` replaces the client's own
    /// timeout and size limit for this exchange.
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch), up to the response headers; then from
    /// [`FetchStream::next_chunk`].
    pub async fn fetch_stream(
        &self,
        req: FetchRequest,
        limits: StreamLimits,
    ) -> Result<FetchStream, NetError> {
        let shown = display_raw(&req.url);
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let opened = tokio::time::timeout_at(deadline, self.open(req)).await;
        let (resp, target, redirects) = opened.map_err(|_| NetError::Timeout {
            url: shown,
            secs: limits.timeout.as_secs(),
        })??;
        if resp.content_length().is_some_and(|n| n > limits.max_bytes) {
            return Err(NetError::TooLarge {
                url: display_url(&target),
                limit: limits.max_bytes,
            });
        }
        Ok(FetchStream {
            status: resp.status().as_u16(),
            url: target.to_string(),
            headers: header_pairs(resp.headers()),
            redirects,
            resp,
            target,
            deadline,
            limits,
            read: 0,
            client: self.clone(),
        })
    }

    async fn fetch_inner(&self, req: FetchRequest) -> Result<FetchResponse, NetError> {
        let (resp, target, redirects) = self.open(req).await?;
        self.finish(resp, &target, redirects).await
    }

    /// Sends `req` and follows redirects up to the final response's headers.
    async fn open(
        &self,
        req: FetchRequest,
    ) -> Result<(reqwest::Response, Url, Vec<String>), NetError> {
        let ctx = req.context.clone().unwrap_or_default();
        let mut method = Method::from_bytes(req.method.as_bytes())
            .map_err(|_| NetError::Request(format!("bad method {:?}", req.method)))?;
        if method == Method::CONNECT {
            return Err(NetError::Request("CONNECT is not a fetch".into()));
        }
        let mut headers = build_headers(&req.headers)?;
        let mut sensitive: Vec<HeaderName> = vec![
            header::AUTHORIZATION,
            header::COOKIE,
            header::PROXY_AUTHORIZATION,
        ];
        for name in &req.sensitive_headers {
            sensitive.push(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| NetError::Request(format!("bad header name {name:?}")))?,
            );
        }
        let mut body = req.body.map(Bytes::from);
        let mut target = self.check(self.policy.check_literal(&req.url), &req.url, &ctx)?;
        let mut redirects = Vec::new();
        loop {
            let resp = self
                .send_once(
                    method.clone(),
                    &target.url,
                    headers.clone(),
                    body.clone(),
                    &ctx,
                )
                .await?;
            let status = resp.status();
            let location = resp.headers().get(header::LOCATION).cloned();
            let is_redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let Some(location) = location.filter(|_| is_redirect) else {
                return Ok((resp, target.url, redirects));
            };
            if redirects.len() >= self.config.max_redirects {
                return Err(NetError::TooManyRedirects {
                    max: self.config.max_redirects,
                });
            }
            let bad = |detail: &str| NetError::BadRedirect {
                url: display_url(&target.url),
                detail: detail.to_owned(),
            };
            let loc = location.to_str().map_err(|_| bad("Location is not text"))?;
            let next_url = target
                .url
                .join(loc)
                .map_err(|e| bad(&format!("Location does not parse: {e}")))?;
            let shown = next_url.to_string();
            let next = self.check(self.policy.check_parsed(next_url), &shown, &ctx)?;
            let to_get = match status {
                StatusCode::SEE_OTHER => method != Method::HEAD,
                StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => method == Method::POST,
                _ => false,
            };
            if to_get {
                method = Method::GET;
                body = None;
                headers.remove(header::CONTENT_TYPE);
            }
            if next.url.origin() != target.url.origin() {
                for name in &sensitive {
                    headers.remove(name);
                }
            }
            redirects.push(display_url(&target.url));
            target = next;
        }
    }

    /// Records a refusal with the request's context, and turns it into an error.
    fn check(
        &self,
        verdict: Result<Target, Refusal>,
        url: &str,
        ctx: &EgressContext,
    ) -> Result<Target, NetError> {
        verdict.map_err(|r| self.blocked(r, url, ctx))
    }

    fn blocked(&self, refusal: Refusal, url: &str, ctx: &EgressContext) -> NetError {
        self.audit.record(&NetEvent::BlockedEgress {
            context: ctx.clone(),
            url: display_raw(url),
            finding: refusal.finding().name.into_owned(),
            reason: refusal.to_string(),
        });
        NetError::Blocked(refusal)
    }

    /// One exchange with no redirect handling: the caller has already checked `url`.
    pub(crate) async fn send_once(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        ctx: &EgressContext,
    ) -> Result<reqwest::Response, NetError> {
        let mut rb = self.inner.request(method, url.clone()).headers(headers);
        if let Some(b) = body {
            rb = rb.body(b);
        }
        rb.send()
            .await
            .map_err(|e| self.transport_error(url, &e, ctx))
    }

    /// Maps a reqwest error; a refusal from the pinning resolver becomes `Blocked`.
    pub(crate) fn transport_error(
        &self,
        url: &Url,
        e: &reqwest::Error,
        ctx: &EgressContext,
    ) -> NetError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        let mut chain = Vec::new();
        while let Some(s) = source {
            if let Some(PinRefused(refusal)) = s.downcast_ref::<PinRefused>() {
                return self.blocked(refusal.clone(), url.as_str(), ctx);
            }
            if !std::ptr::eq(s, e as &dyn std::error::Error) {
                chain.push(s.to_string());
            }
            source = s.source();
        }
        let shown = display_url(url);
        if e.is_timeout() {
            return NetError::Timeout {
                url: shown,
                secs: self.config.connect_timeout.as_secs(),
            };
        }
        // reqwest's own message may contain the full URL (with its query); use ours.
        let kind = if e.is_connect() {
            "connect"
        } else if e.is_body() {
            "body"
        } else {
            "http"
        };
        let detail = if chain.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}: {}", chain.join(": "))
        };
        NetError::Transport {
            url: shown,
            detail: comis_guard::unicode::display_safe(&detail, 500),
        }
    }

    async fn finish(
        &self,
        resp: reqwest::Response,
        url: &Url,
        redirects: Vec<String>,
    ) -> Result<FetchResponse, NetError> {
        let status = resp.status().as_u16();
        let headers = header_pairs(resp.headers());
        let body = self
            .read_limited(resp, url, self.config.max_response_bytes)
            .await?;
        Ok(FetchResponse {
            status,
            url: url.to_string(),
            headers,
            body,
            redirects,
        })
    }

    /// Reads a body, stopping as soon as it exceeds `limit`.
    pub(crate) async fn read_limited(
        &self,
        mut resp: reqwest::Response,
        url: &Url,
        limit: u64,
    ) -> Result<Bytes, NetError> {
        let too_large = || NetError::TooLarge {
            url: display_url(url),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, &e, &EgressContext::default()))?
        {
            if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    }
}

fn header_pairs(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn build_headers(pairs: &[(String, String)]) -> Result<HeaderMap, NetError> {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| NetError::Request(format!("bad header name {k:?}")))?;
        if reserved_header(&name) {
            return Err(NetError::Request(format!(
                "header {name} is set by the client, not the caller"
            )));
        }
        let value = HeaderValue::from_str(v)
            .map_err(|_| NetError::Request(format!("bad value for header {name}")))?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn display_url_drops_query_and_userinfo() {
        let u = Url::parse("https://u:p@api.example/v1/x?token=SECRET#frag").unwrap();
        assert_eq!(display_url(&u), "https://api.example/v1/x");
        assert_eq!(display_raw("not a url?token=SECRET"), "not a url");
    }

    #[test]
    fn reserved_headers_are_refused() {
        for h in [
            "Host",
            "content-length",
            "Proxy-Authorization",
            "Transfer-Encoding",
        ] {
            assert!(build_headers(&[(h.into(), "x".into())]).is_err(), "{h}");
        }
        assert!(build_headers(&[("bad name".into(), "x".into())]).is_err());
        assert!(build_headers(&[("x-a".into(), "line\nbreak".into())]).is_err());
        assert_eq!(
            build_headers(&[("Accept".into(), "text/html".into())])
                .unwrap()
                .len(),
            1
        );
    }
}
