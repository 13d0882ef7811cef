//! The guarded client against real local servers (HTTP and TLS on 127.0.0.x), with the SSRF
//! policy opened only for the test addresses through `allowHosts`, and resolvers at the DNS
//! seam that answer what an attacker's DNS would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use comis_net::audit::{NetEvent, NoAudit};
use comis_net::{
    ClientConfig, EgressContext, FetchRequest, GuardedClient, NetAudit, NetError, SsrfPolicy,
};
use common::{Handler, TableResolver, TestPki, http, https, respond};

fn ok(body: &'static str) -> Handler {
    Arc::new(move |_| respond(200, &[], body))
}

fn client(allow: &[&str], resolver: Arc<TableResolver>) -> GuardedClient {
    client_with(allow, resolver, ClientConfig::default())
}

fn client_with(
    allow: &[&str],
    resolver: Arc<TableResolver>,
    config: ClientConfig,
) -> GuardedClient {
    GuardedClient::with_resolver(
        SsrfPolicy::with_allow_hosts(allow).unwrap(),
        config,
        resolver,
        Arc::new(NoAudit),
    )
    .unwrap()
}

fn finding(e: &NetError) -> String {
    e.refusal()
        .map(|r| r.finding().name.into_owned())
        .unwrap_or_else(|| format!("not blocked: {e}"))
}

#[tokio::test]
async fn fetches_an_excepted_local_server() {
    let s = http("127.0.0.1", ok("hello")).await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let r = c
        .get(&format!("http://127.0.0.1:{}/x?q=1", s.port()))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"hello");
    assert!(r.redirects.is_empty());
    let seen = &s.requests()[0];
    assert_eq!(seen.uri, "/x?q=1");
    assert!(seen.header("user-agent").unwrap().starts_with("comis/"));
}

#[tokio::test]
async fn strict_policy_never_connects_to_loopback() {
    let s = http("127.0.0.1", ok("secret")).await;
    let resolver = TableResolver::with(&[("sneaky.example", &[&["127.0.0.1"]])]);
    let c = client(&[], Arc::clone(&resolver));
    for url in [
        format!("http://127.0.0.1:{}/", s.port()),
        format!("http://127.1:{}/", s.port()),
        format!("http://0x7f.1:{}/", s.port()),
        format!("http://2130706433:{}/", s.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", s.port()),
        format!("http://localhost:{}/", s.port()),
    ] {
        let e = c.get(&url).await.unwrap_err();
        assert!(e.refusal().is_some(), "{url}: {e}");
    }
    let e = c
        .get(&format!("http://sneaky.example:{}/", s.port()))
        .await
        .unwrap_err();
    assert_eq!(finding(&e), "loopback");
    assert_eq!(s.connections(), 0);
}

/// DNS rebinding: the name answers a permitted address first and a forbidden one after.
/// 127.0.0.2 stands for the public address (the only one allowHosts lists); the "internal"
/// service listens on 127.0.0.1 at the same port.
#[tokio::test]
async fn rebinding_resolver_never_reaches_the_private_address() {
    let (public, private) = loop {
        let public = tokio::net::TcpListener::bind(("127.0.0.2", 0))
            .await
            .unwrap();
        let port = public.local_addr().unwrap().port();
        if let Ok(private) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            break (public, private);
        }
    };
    let close: Handler = Arc::new(|_| respond(200, &[("connection", "close")], "public"));
    let public = common::http_server(public, close);
    let private = common::http_server(private, ok("internal"));
    let resolver = TableResolver::with(&[(
        "rebind.example",
        &[&["127.0.0.2"], &["127.0.0.1"], &["127.0.0.1"]],
    )]);
    let c = client(&["127.0.0.2"], Arc::clone(&resolver));
    let url = format!("http://rebind.example:{}/", public.port());
    let r = c.get(&url).await.unwrap();
    assert_eq!(&r.body[..], b"public");
    // One lookup for one connection: nothing re-resolves between check and connect.
    assert_eq!(resolver.lookups(), 1);
    // The server closed the connection, so the next request resolves again: now private.
    let e = c.get(&url).await.unwrap_err();
    assert_eq!(finding(&e), "loopback");
    assert_eq!(private.connections(), 0);
    assert_eq!(public.connections(), 1);
    assert_eq!(
        public.requests()[0].header("host").unwrap(),
        format!("rebind.example:{}", public.port())
    );
}

#[tokio::test]
async fn mixed_answer_with_any_private_address_is_refused() {
    let s = http("127.0.0.2", ok("x")).await;
    let resolver = TableResolver::with(&[("mixed.example", &[&["127.0.0.2", "10.0.0.7"]])]);
    let c = client(&["127.0.0.2"], resolver);
    let e = c
        .get(&format!("http://mixed.example:{}/", s.port()))
        .await
        .unwrap_err();
    assert_eq!(finding(&e), "private");
    assert_eq!(s.connections(), 0);
}

#[tokio::test]
async fn unresolvable_name_is_refused() {
    let c = client(&[], TableResolver::with(&[]));
    let e = c.get("http://nowhere.example/").await.unwrap_err();
    assert_eq!(finding(&e), "unresolved_host");
}

#[tokio::test]
async fn redirect_to_metadata_is_refused_and_audited() {
    let s = http(
        "127.0.0.1",
        Arc::new(|_| {
            respond(
                302,
                &[("location", "http://169.254.169.254/latest/meta-data/")],
                "",
            )
        }),
    )
    .await;
    let events = Arc::new(Mutex::new(Vec::<NetEvent>::new()));
    let sink = Arc::clone(&events);
    let audit: Arc<dyn NetAudit> =
        Arc::new(move |e: &NetEvent| sink.lock().unwrap().push(e.clone()));
    let c = GuardedClient::with_resolver(
        SsrfPolicy::with_allow_hosts(&["127.0.0.1"]).unwrap(),
        ClientConfig::default(),
        TableResolver::with(&[]),
        audit,
    )
    .unwrap();
    let mut req = FetchRequest::get(format!("http://127.0.0.1:{}/start", s.port()));
    req.context = Some(EgressContext::new("agent-7", "trace-42"));
    let e = c.fetch(req).await.unwrap_err();
    assert_eq!(finding(&e), "cloud_metadata");
    let events = events.lock().unwrap();
    let NetEvent::BlockedEgress {
        context,
        url,
        finding,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (context.agent_id.as_str(), context.trace_id.as_str()),
        ("agent-7", "trace-42")
    );
    assert_eq!(url, "http://169.254.169.254/latest/meta-data/");
    assert_eq!(finding, "cloud_metadata");
}

#[tokio::test]
async fn redirect_to_a_name_resolving_private_is_refused_before_connecting() {
    let s = http(
        "127.0.0.1",
        Arc::new(|_| respond(301, &[("location", "http://intranet.example/admin")], "")),
    )
    .await;
    let resolver = TableResolver::with(&[("intranet.example", &[&["192.168.1.10"]])]);
    let c = client(&["127.0.0.1"], resolver);
    let e = c
        .get(&format!("http://127.0.0.1:{}/", s.port()))
        .await
        .unwrap_err();
    assert_eq!(finding(&e), "private");
    for loc in [
        "http://[::ffff:a9fe:a9fe]/",
        "file:///etc/passwd",
        "http://localhost/",
        "gopher://x.example/",
    ] {
        let h: Handler = Arc::new(move |_| respond(307, &[("location", loc)], ""));
        let s = http("127.0.0.1", h).await;
        let c = client(&["127.0.0.1"], TableResolver::with(&[]));
        let e = c
            .get(&format!("http://127.0.0.1:{}/", s.port()))
            .await
            .unwrap_err();
        assert!(e.refusal().is_some(), "{loc}: {e}");
    }
}

/// `/r/N` redirects to `/r/N-1`; `/r/0` answers.
fn chain() -> Handler {
    Arc::new(|seen| {
        let n: usize = seen.uri.trim_start_matches("/r/").parse().unwrap_or(0);
        if n == 0 {
            respond(200, &[], "end")
        } else {
            respond(302, &[("location", &format!("/r/{}", n - 1))], "")
        }
    })
}

#[tokio::test]
async fn five_redirects_are_followed_six_are_refused() {
    let s = http("127.0.0.1", chain()).await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let r = c
        .get(&format!("http://127.0.0.1:{}/r/5", s.port()))
        .await
        .unwrap();
    assert_eq!((r.status, r.redirects.len()), (200, 5));
    assert!(r.url.ends_with("/r/0"));
    let e = c
        .get(&format!("http://127.0.0.1:{}/r/6", s.port()))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::TooManyRedirects { max: 5 }), "{e}");
    // The second chain stopped at the sixth redirect: /r/0 was requested by the first only.
    let seen = s.requests();
    assert_eq!(seen.len(), 12);
    assert_eq!(seen.iter().filter(|r| r.uri == "/r/0").count(), 1);
}

#[tokio::test]
async fn redirect_without_valid_location_is_an_error() {
    let s = http(
        "127.0.0.1",
        Arc::new(|_| respond(302, &[("location", "http://[::1")], "")),
    )
    .await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let e = c
        .get(&format!("http://127.0.0.1:{}/", s.port()))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::BadRedirect { .. }), "{e}");
    // A 3xx without Location is a final response.
    let s = http("127.0.0.1", Arc::new(|_| respond(304, &[], ""))).await;
    let r = c
        .get(&format!("http://127.0.0.1:{}/", s.port()))
        .await
        .unwrap();
    assert_eq!(r.status, 304);
}

#[tokio::test]
async fn credentials_are_dropped_when_a_redirect_leaves_the_origin() {
    let b = http("127.0.0.1", ok("b")).await;
    let target = format!("http://127.0.0.1:{}/landing", b.port());
    let a = http(
        "127.0.0.1",
        Arc::new(move |seen| {
            if seen.uri == "/same" {
                respond(302, &[("location", "/final")], "")
            } else if seen.uri == "/final" {
                respond(200, &[], "a")
            } else {
                respond(303, &[("location", target.as_str())], "")
            }
        }),
    )
    .await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let mut req = FetchRequest::get(format!("http://127.0.0.1:{}/cross", a.port()));
    req.method = "POST".into();
    req.body = Some(b"payload".to_vec());
    req.headers = vec![
        ("authorization".into(), "Bearer tok".into()),
        ("x-api-key".into(), "k".into()),
        ("content-type".into(), "text/plain".into()),
    ];
    req.sensitive_headers = vec!["x-api-key".into()];
    let r = c.fetch(req.clone()).await.unwrap();
    assert_eq!(&r.body[..], b"b");
    let seen_b = &b.requests()[0];
    assert_eq!(seen_b.method, "GET"); // 303 turns POST into GET
    assert!(seen_b.body.is_empty());
    assert!(seen_b.header("authorization").is_none());
    assert!(seen_b.header("x-api-key").is_none());
    assert!(seen_b.header("content-type").is_none());
    // Same origin keeps them (302 after POST becomes GET, headers stay).
    req.url = format!("http://127.0.0.1:{}/same", a.port());
    c.fetch(req).await.unwrap();
    let fin = a
        .requests()
        .into_iter()
        .find(|r| r.uri == "/final")
        .unwrap();
    assert_eq!(fin.header("authorization"), Some("Bearer tok"));
    assert_eq!(fin.header("x-api-key"), Some("k"));
}

#[tokio::test]
async fn response_size_is_bounded() {
    let limit = 5 * 1024 * 1024;
    let exact = http(
        "127.0.0.1",
        Arc::new(move |_| respond(200, &[], vec![b'a'; limit])),
    )
    .await;
    let over = http(
        "127.0.0.1",
        Arc::new(move |_| respond(200, &[], vec![b'a'; limit + 1])),
    )
    .await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let r = c
        .get(&format!("http://127.0.0.1:{}/", exact.port()))
        .await
        .unwrap();
    assert_eq!(r.body.len(), limit);
    let e = c
        .get(&format!("http://127.0.0.1:{}/", over.port()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::TooLarge { limit: l, .. } if l == limit as u64),
        "{e}"
    );
}

/// A raw server sending an endless chunked body: the limit stops it while streaming.
#[tokio::test]
async fn endless_chunked_body_stops_at_the_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let chunk = format!("400\r\n{}\r\n", "z".repeat(1024));
        for _ in 0..100_000 {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let config = ClientConfig {
        max_response_bytes: 64 * 1024,
        ..ClientConfig::default()
    };
    let c = client_with(&["127.0.0.1"], TableResolver::with(&[]), config);
    let e = c
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::TooLarge { .. }), "{e}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (_s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let config = ClientConfig {
        timeout: Duration::from_millis(300),
        ..ClientConfig::default()
    };
    let c = client_with(&["127.0.0.1"], TableResolver::with(&[]), config);
    let e = c
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
}

#[tokio::test]
async fn tls_is_verified_and_keeps_the_name() {
    let pki = TestPki::new();
    let s = https("127.0.0.1", &pki, &["tls.example"], ok("over tls")).await;
    let resolver = TableResolver::with(&[("tls.example", &[&["127.0.0.1"]])]);
    let url = format!("https://tls.example:{}/v1", s.port());
    // Without the test CA the certificate is refused.
    let c = client(&["tls.example"], Arc::clone(&resolver));
    let e = c.get(&url).await.unwrap_err();
    assert!(matches!(e, NetError::Transport { .. }), "{e}");
    // With it, the request goes through, to the pinned address, with SNI and Host = the name.
    let config = ClientConfig {
        extra_roots: vec![pki.ca_der.clone()],
        ..ClientConfig::default()
    };
    let c = client_with(&["tls.example"], resolver, config);
    let r = c.get(&url).await.unwrap();
    assert_eq!(&r.body[..], b"over tls");
    let seen = s.requests().pop().unwrap();
    assert_eq!(seen.sni.as_deref(), Some("tls.example"));
    assert_eq!(
        seen.header("host").unwrap(),
        format!("tls.example:{}", s.port())
    );
    // A certificate for another name is refused even with the CA trusted.
    let other = https("127.0.0.1", &pki, &["other.example"], ok("x")).await;
    let e = c
        .get(&format!("https://tls.example:{}/", other.port()))
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::Transport { .. }), "{e}");
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn hostile_requests_are_refused_before_any_connection() {
    let c = client(&[], TableResolver::with(&[]));
    let mut req = FetchRequest::get("http://8.8.8.8/");
    req.method = "BAD METHOD".into();
    assert!(matches!(c.fetch(req).await, Err(NetError::Request(_))));
    let mut req = FetchRequest::get("https://93.184.216.34/");
    req.headers = vec![("host".into(), "internal".into())];
    // Checked before connecting: 93.184.216.34 is public, so only the header stops it.
    assert!(matches!(c.fetch(req).await, Err(NetError::Request(_))));
    for url in [
        "",
        "ftp://x.example/",
        "http://user@x.example/",
        &"h".repeat(20_000),
    ] {
        assert!(
            c.get(url).await.unwrap_err().refusal().is_some(),
            "{url:.40}"
        );
    }
}

#[tokio::test]
async fn connect_time_refusal_is_audited_once_with_the_context() {
    let events = Arc::new(Mutex::new(Vec::<NetEvent>::new()));
    let sink = Arc::clone(&events);
    let audit: Arc<dyn NetAudit> =
        Arc::new(move |e: &NetEvent| sink.lock().unwrap().push(e.clone()));
    let c = GuardedClient::with_resolver(
        SsrfPolicy::default(),
        ClientConfig::default(),
        TableResolver::with(&[("evil.example", &[&["8.8.8.8", "::ffff:10.0.0.1"]])]),
        audit,
    )
    .unwrap();
    let mut req = FetchRequest::get("https://evil.example/x?token=SECRET");
    req.context = Some(EgressContext::new("a", "t"));
    let e = c.fetch(req).await.unwrap_err();
    assert_eq!(finding(&e), "private");
    let events = events.lock().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let NetEvent::BlockedEgress { context, url, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(context.agent_id, "a");
    assert_eq!(url, "https://evil.example/x");
}

#[tokio::test]
async fn fetch_stream_reads_chunks_and_stops_at_the_size_limit() {
    use comis_net::StreamLimits;
    let s = http("127.0.0.1", ok("0123456789")).await;
    let c = client(&["127.0.0.1"], TableResolver::with(&[]));
    let url = format!("http://127.0.0.1:{}/sse", s.port());
    let limits = StreamLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 100,
    };
    let mut st = c
        .fetch_stream(FetchRequest::get(&url), limits)
        .await
        .unwrap();
    assert_eq!(st.status, 200);
    let mut got = Vec::new();
    while let Some(chunk) = st.next_chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"0123456789");

    let small = StreamLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 4,
    };
    let err = c
        .fetch_stream(FetchRequest::get(&url), small)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::TooLarge { limit: 4, .. }), "{err}");
}

#[tokio::test]
async fn fetch_stream_keeps_the_ssrf_guard_and_extra_hosts_open_only_a_copy() {
    use comis_net::StreamLimits;
    let s = http("127.0.0.1", ok("x")).await;
    let strict = client(&[], TableResolver::with(&[]));
    let url = format!("http://127.0.0.1:{}/", s.port());
    let limits = StreamLimits {
        timeout: Duration::from_secs(10),
        max_bytes: 100,
    };
    let err = strict
        .fetch_stream(FetchRequest::get(&url), limits)
        .await
        .unwrap_err();
    assert!(err.refusal().is_some(), "{err}");
    let opened = strict.with_allowed_hosts(&["127.0.0.1"]).unwrap();
    let st = opened
        .fetch_stream(FetchRequest::get(&url), limits)
        .await
        .unwrap();
    assert_eq!(&st.collect().await.unwrap()[..], b"x");
    assert!(strict.policy().is_strict());
    assert_eq!(s.requests().len(), 1);
}

#[tokio::test]
async fn a_configured_base_url_on_loopback_gets_its_own_exception() {
    let s = http("127.0.0.1", ok("y")).await;
    let strict = client(&[], TableResolver::with(&[]));
    let base = format!("http://127.0.0.1:{}/v1", s.port());
    let opened = strict.for_configured_url(&base).unwrap();
    let r = opened.get(&format!("{base}/models")).await.unwrap();
    assert_eq!(&r.body[..], b"y");
    // Only that host: another loopback address stays refused.
    let other = opened.get("http://127.0.0.2:1/").await.unwrap_err();
    assert!(other.refusal().is_some(), "{other}");
    assert!(strict.for_configured_url("file:///etc/passwd").is_err());
    assert!(strict.for_configured_url("not a url").is_err());
}
