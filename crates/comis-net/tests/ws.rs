//! `ws::connect` against real local WebSocket servers, over TLS with a test CA, with resolvers
//! at the DNS seam answering what an attacker's DNS would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use comis_net::SsrfPolicy;
use comis_net::ws::{WsConfig, WsMessage, connect_with_resolver};
use common::{TableResolver, TestPki};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

/// A TLS WebSocket echo server on 127.0.0.1 with a certificate for `name`; counts TCP
/// connections and records the SNI each TLS handshake asked for.
async fn wss_echo(
    pki: &TestPki,
    name: &str,
) -> (u16, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(&[name])));
    let conns = Arc::new(AtomicUsize::new(0));
    let snis = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, s) = (Arc::clone(&conns), Arc::clone(&snis));
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                if let Some(n) = tls.get_ref().1.server_name() {
                    s.lock().unwrap().push(n.to_owned());
                }
                let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, conns, snis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_pinned_name_and_an_extra_root() {
    let pki = TestPki::new();
    let (port, _conns, snis) = wss_echo(&pki, "gateway.test").await;
    let resolver = TableResolver::with(&[("gateway.test", &[&["127.0.0.1"]])]);
    let policy = SsrfPolicy::with_allow_hosts(&["gateway.test"]).unwrap();
    let config = WsConfig {
        extra_roots: vec![pki.ca_der.clone()],
        ..WsConfig::default()
    };
    let url = format!("wss://gateway.test:{port}/?v=10&encoding=json");
    let mut ws = connect_with_resolver(&url, &policy, &config, resolver.clone())
        .await
        .unwrap();
    ws.send_text("{\"op\":1}").await.unwrap();
    assert_eq!(
        ws.recv().await.unwrap(),
        Some(WsMessage::Text("{\"op\":1}".into()))
    );
    ws.close(1000, "bye").await;
    assert_eq!(snis.lock().unwrap().as_slice(), ["gateway.test"]);
    assert_eq!(resolver.lookups(), 1);

    // The same server without trusting the test CA: TLS fails, nothing is spoken.
    let err = connect_with_resolver(&url, &policy, &WsConfig::default(), resolver)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_and_mixed_answers_are_refused_before_connecting() {
    let pki = TestPki::new();
    let (port, conns, _) = wss_echo(&pki, "gateway.test").await;
    let config = WsConfig {
        extra_roots: vec![pki.ca_der.clone()],
        ..WsConfig::default()
    };
    let strict = SsrfPolicy::default();
    for answers in [&["127.0.0.1"][..], &["93.184.216.34", "127.0.0.1"][..]] {
        let resolver = TableResolver::with(&[("gateway.test", &[answers])]);
        let url = format!("wss://gateway.test:{port}/");
        let err = connect_with_resolver(&url, &strict, &config, resolver)
            .await
            .unwrap_err();
        assert!(err.refusal().is_some(), "{answers:?}: {err}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 0, "no connection was made");
}
