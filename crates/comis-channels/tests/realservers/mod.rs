//! Helpers for tests that start real servers: free loopback ports, binaries on PATH, waiting
//! for a server to listen, an event sink that records what the router emits.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comis_agent::event::{Event, EventKind, EventSink};

pub fn which(binary: &str) -> Option<PathBuf> {
    let candidates = [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ];
    candidates
        .iter()
        .map(|d| PathBuf::from(d).join(binary))
        .find(|p| p.is_file())
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until something accepts on `port` (the server is up), or panics after 30 s.
pub async fn wait_for_port(port: u16, child: &mut tokio::process::Child) {
    for _ in 0..600 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("server exited before listening on {port}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port} after 30 s");
}

/// Records every event, and lets a test wait for one.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Event>>,
    notify: tokio::sync::Notify,
}

impl EventSink for Recorder {
    fn record(&self, event: &Event) -> Option<i64> {
        self.events.lock().unwrap().push(event.clone());
        self.notify.notify_waiters();
        None
    }
}

impl Recorder {
    pub fn count(&self, kind: EventKind, pred: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind && pred(e))
            .count()
    }

    /// Waits until `n` events of `kind` match `pred` (panics after 60 s: a failure, not a
    /// timing assertion).
    pub async fn wait_for(
        self: &Arc<Self>,
        kind: EventKind,
        n: usize,
        pred: impl Fn(&Event) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.notify.notified();
            if self.count(kind, &pred) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited 60 s for {n} {kind} events; have {:?}",
                    self.events.lock().unwrap()
                );
            }
        }
    }
}

pub fn data_str<'a>(e: &'a Event, key: &str) -> &'a str {
    e.data.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// A throwaway CA named `ca_name` and a `localhost` certificate it signed, written to
/// `dir/cert.pem` and `dir/key.pem`. Returns the CA certificate's PEM (the client's extra
/// root) and the two paths (for the server's config).
pub fn localhost_cert(dir: &std::path::Path, ca_name: &str) -> (String, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca_cert.pem(), cert_file, key_file)
}
