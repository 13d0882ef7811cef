//! The approval gate against a real store: joins, caches, timeout, shutdown, signed callbacks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use comis_agent::EventBus;
use comis_agent::approval::{
    ApprovalGate, ApprovalRequest, BY_CACHED_APPROVAL, BY_CACHED_DENIAL, BY_SHUTDOWN,
};
use comis_agent::config::ApprovalsConfig;
use comis_agent::event::AuditSink;
use comis_store::{ApprovalStatus, Store};
use serde_json::{Value, json};

fn gate(timeout_ms: u64) -> (tempfile::TempDir, Arc<Store>, ApprovalGate) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_in(dir.path()).unwrap());
    let mut bus = EventBus::new();
    bus.add_sink(Arc::new(AuditSink::new(Arc::clone(&store))));
    let g = ApprovalGate::new(
        Arc::clone(&store),
        bus,
        ApprovalsConfig {
            default_timeout_ms: timeout_ms,
            ..ApprovalsConfig::default()
        },
        Some(b"callback key for tests"),
    )
    .unwrap();
    (dir, store, g)
}

fn req<'a>(args: &'a Value) -> ApprovalRequest<'a> {
    ApprovalRequest {
        agent_id: "alice",
        session: "s1",
        action: "system.exec",
        tool: "system_exec",
        args,
        trace_id: "t1",
    }
}

async fn wait_pending(g: &ApprovalGate, n: usize) -> Vec<comis_agent::approval::PendingApproval> {
    for _ in 0..2_000 {
        let p = g.pending();
        if p.len() == n {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("never saw {n} pending requests");
}

#[tokio::test]
async fn identical_parallel_requests_join_one_entry() {
    let (_d, store, g) = gate(60_000);
    let args = json!({"command": "rm -rf /tmp/x"});
    let (g1, g2) = (g.clone(), g.clone());
    let (a1, a2) = (args.clone(), args.clone());
    let t1 = tokio::spawn(async move { g1.request(req(&a1), None).await });
    let t2 = tokio::spawn(async move { g2.request(req(&a2), None).await });
    let pending = wait_pending(&g, 1).await;
    // Give the second request time to join rather than create a second entry.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(g.pending().len(), 1);
    assert_eq!(store.pending_approvals(None).unwrap().len(), 1);
    g.resolve(&pending[0].id, false, "cli:op").unwrap();
    let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
    assert!(!r1.approved && !r2.approved);
    assert_eq!(r1.id, r2.id);
    assert_eq!(r1.by, "cli:op");
}

#[tokio::test]
async fn denial_and_approval_caches_invalidate_each_other() {
    let (_d, _s, g) = gate(60_000);
    let args = json!({"command": "a"});
    // Operator denies: the next identical request is denied from the cache, no new entry.
    let g1 = g.clone();
    let a = args.clone();
    let t = tokio::spawn(async move { g1.request(req(&a), None).await });
    let p = wait_pending(&g, 1).await;
    g.resolve(&p[0].id, false, "cli:op").unwrap();
    assert!(!t.await.unwrap().approved);
    let cached = g.request(req(&args), None).await;
    assert!(!cached.approved);
    assert_eq!(cached.by, BY_CACHED_DENIAL);

    // Different arguments are a different key: a new request, approved this time.
    let other = json!({"command": "b"});
    let g1 = g.clone();
    let o = other.clone();
    let t = tokio::spawn(async move { g1.request(req(&o), None).await });
    let p = wait_pending(&g, 1).await;
    g.resolve(&p[0].id, true, "cli:op").unwrap();
    assert!(t.await.unwrap().approved);
    let again = g.request(req(&other), None).await;
    assert!(again.approved);
    assert_eq!(again.by, BY_CACHED_APPROVAL);
}

#[tokio::test]
async fn timeout_denies_and_a_late_approval_cannot_flip_it() {
    let (_d, store, g) = gate(100);
    let args = json!({"command": "x"});
    let r = g.request(req(&args), None).await;
    assert!(!r.approved);
    assert_eq!(r.by, "system:timeout");
    let id = r.id.unwrap();
    let late = g.resolve(&id, true, "cli:late").unwrap();
    assert!(!late.approved);
    let stored = store
        .get_approval(&comis_store::ApprovalId::new(&id).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, ApprovalStatus::Denied);
    // A timeout fills no cache: the next identical request asks again.
    let g1 = g.clone();
    let t = tokio::spawn(async move { g1.request(req(&args), None).await });
    let r2 = t.await.unwrap();
    assert_ne!(r2.id.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn shutdown_denies_pending_and_later_requests() {
    let (_d, store, g) = gate(60_000);
    let args = json!({"command": "x"});
    let g1 = g.clone();
    let a = args.clone();
    let t = tokio::spawn(async move { g1.request(req(&a), None).await });
    wait_pending(&g, 1).await;
    g.shutdown();
    let r = t.await.unwrap();
    assert!(!r.approved);
    assert_eq!(r.by, BY_SHUTDOWN);
    assert!(store.pending_approvals(None).unwrap().is_empty());
    let after = g.request(req(&json!({"command": "y"})), None).await;
    assert!(!after.approved);
    assert_eq!(after.by, BY_SHUTDOWN);
}

#[tokio::test]
async fn oversized_arguments_are_stored_bounded_and_still_gated() {
    let (_d, store, g) = gate(60_000);
    let args = json!({"command": "x".repeat(200_000)});
    let g1 = g.clone();
    let a = args.clone();
    let t = tokio::spawn(async move { g1.request(req(&a), None).await });
    let p = wait_pending(&g, 1).await;
    assert_eq!(p[0].params["truncated"], json!(true));
    // 200 characters and the `…` marking the cut.
    assert!(p[0].summary.chars().count() <= 201);
    assert_eq!(store.pending_approvals(None).unwrap().len(), 1);
    g.resolve(&p[0].id, false, "cli:op").unwrap();
    assert!(!t.await.unwrap().approved);
}

#[test]
fn resolving_unknown_or_malformed_ids_is_an_error() {
    let (_d, _s, g) = gate(1_000);
    assert!(g.resolve("zz", true, "cli:op").is_err());
    assert!(g.resolve("abcd", true, "cli:op").is_err());
    assert!(g.resolve(&"0".repeat(32), true, "cli:op").is_err());
    assert!(g.resolve("../../etc/passwd", true, "cli:op").is_err());
}

#[test]
fn callback_data_is_signed_bounded_and_expires() {
    let (_d, _s, g) = gate(1_000);
    let id = "0123456789abcdef0123456789abcdef";
    let data = g.sign_callback(id, true, 2_000_000_000);
    assert!(data.len() <= 64, "{} bytes", data.len());
    let ok = g.verify_callback_at(&data, 1_999_999_999).unwrap();
    assert_eq!(ok.id, id);
    assert!(ok.approve);
    // Expired.
    assert!(g.verify_callback_at(&data, 2_000_000_001).is_err());
    // Flipping deny→approve, changing the id or the expiry breaks the tag.
    let deny = g.sign_callback(id, false, 2_000_000_000);
    let forged = deny.replacen(":d:", ":a:", 1);
    assert!(g.verify_callback_at(&forged, 0).is_err());
    let later = data.replacen("2000000000", "2100000000", 1);
    assert!(g.verify_callback_at(&later, 0).is_err());
    let other_id = data.replacen("0123", "9999", 1);
    assert!(g.verify_callback_at(&other_id, 0).is_err());
    // Another gate's key does not verify it.
    let (_d2, _s2, g2) = {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in(dir.path()).unwrap());
        let g2 = ApprovalGate::new(
            Arc::clone(&store),
            EventBus::new(),
            ApprovalsConfig::default(),
            Some(b"another key"),
        )
        .unwrap();
        (dir, store, g2)
    };
    assert!(g2.verify_callback_at(&data, 0).is_err());
    // Hostile input never panics.
    for junk in [
        "",
        ":",
        ":::",
        "a:b:c:d:e",
        &"x".repeat(10_000),
        "id:a:notanumber:AAAAAAAAAAAAAAAA",
        "\u{0}:\u{0}",
    ] {
        assert!(g.verify_callback_at(junk, 0).is_err(), "{junk:?}");
    }
}

#[tokio::test]
async fn a_resolution_written_by_another_process_is_noticed() {
    let (_d, store, g) = gate(60_000);
    let args = json!({"command": "x"});
    let g1 = g.clone();
    let t = tokio::spawn(async move { g1.request(req(&args), None).await });
    let p = wait_pending(&g, 1).await;
    // The CLI resolves the row directly, not through this gate.
    store
        .resolve_approval(
            &comis_store::ApprovalId::new(&p[0].id).unwrap(),
            comis_store::Decision::Approve,
            "cli:alice",
            None,
        )
        .unwrap();
    let r = t.await.unwrap();
    assert!(r.approved);
    assert_eq!(r.by, "cli:alice");
    assert!(g.pending().is_empty());
}

#[tokio::test]
async fn a_signed_button_resolves_and_a_forged_one_does_not() {
    let (_d, _s, g) = gate(60_000);
    let args = json!({"command": "x"});
    let g1 = g.clone();
    let t = tokio::spawn(async move { g1.request(req(&args), None).await });
    let p = wait_pending(&g, 1).await;
    let far = comis_store::time::now_ms() / 1000 + 600;
    let approve = g.sign_callback(&p[0].id, true, far);
    let forged = approve.replacen(":a:", ":d:", 1);
    assert!(g.resolve_callback(&forged, "chat:mallory").is_err());
    assert_eq!(g.pending().len(), 1);
    let r = g.resolve_callback(&approve, "chat:42").unwrap();
    assert!(r.approved);
    let got = t.await.unwrap();
    assert!(got.approved);
    assert_eq!(got.by, "chat:42");
}
