//! The audit chain against an attacker with write access to the database file: every edit,
//! insertion and deletion is detected, including deletion of the newest events (via the
//! anchor). The attacker here drops the append-only triggers first, as a real one would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use comis_store::audit::{ANCHOR_FILE, GENESIS_HASH, MAX_METADATA_BYTES};
use comis_store::{
    AgentId, AuditEvent, AuditFilter, EventType, NewAuditEvent, Outcome, Store, VerifyProblem,
};
use rusqlite::{Connection, params};

fn ev(kind: &str, n: i64) -> NewAuditEvent {
    NewAuditEvent::new(EventType::new(kind).unwrap(), Outcome::Success)
        .agent(&AgentId::new("default").unwrap())
        .meta("n", n)
}

/// A store with `n` events, and a raw connection with the append-only triggers dropped.
fn setup(n: i64) -> (tempfile::TempDir, Store, Connection) {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    for i in 1..=n {
        s.audit(ev("test:event", i)).unwrap();
    }
    assert!(s.verify_audit().unwrap().ok());
    let raw = Connection::open(d.path().join("comis.db")).unwrap();
    raw.execute_batch("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;")
        .unwrap();
    (d, s, raw)
}

fn row(raw: &Connection, seq: i64) -> AuditEvent {
    raw.query_row(
        "SELECT seq, id, ts, type, agent, outcome, metadata, prev_hash, hash FROM audit_events WHERE seq = ?1",
        [seq],
        |r| {
            Ok(AuditEvent {
                seq: r.get(0)?,
                id: r.get(1)?,
                ts: r.get(2)?,
                kind: r.get(3)?,
                agent: r.get(4)?,
                outcome: r.get(5)?,
                metadata: r.get(6)?,
                prev_hash: r.get(7)?,
                hash: r.get(8)?,
            })
        },
    )
    .unwrap()
}

fn insert(raw: &Connection, e: &AuditEvent) {
    raw.execute(
        "INSERT INTO audit_events (seq, id, ts, type, agent, outcome, metadata, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            e.seq,
            e.id,
            e.ts,
            e.kind,
            e.agent,
            e.outcome,
            e.metadata,
            e.prev_hash,
            e.hash
        ],
    )
    .unwrap();
}

fn problems(s: &Store) -> Vec<VerifyProblem> {
    let r = s.verify_audit().unwrap();
    assert_eq!(r.ok(), r.problems.is_empty());
    r.problems
}

#[test]
fn intact_chain_verifies_and_links() {
    let (_d, s, raw) = setup(5);
    let first = row(&raw, 1);
    assert_eq!(first.prev_hash, GENESIS_HASH);
    for seq in 2..=5 {
        assert_eq!(row(&raw, seq).prev_hash, row(&raw, seq - 1).hash);
    }
    let r = s.verify_audit().unwrap();
    assert_eq!((r.events, r.head_seq, r.anchor_seq), (5, Some(5), Some(5)));
    assert_eq!(r.head_hash.as_deref(), Some(row(&raw, 5).hash.as_str()));
}

#[test]
fn triggers_keep_the_log_append_only_for_comis() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    s.audit(ev("test:event", 1)).unwrap();
    let raw = Connection::open(d.path().join("comis.db")).unwrap();
    assert!(
        raw.execute("UPDATE audit_events SET outcome = 'denied'", [])
            .is_err()
    );
    assert!(raw.execute("DELETE FROM audit_events", []).is_err());
    assert!(s.verify_audit().unwrap().ok());
}

#[test]
fn edit_of_any_field_is_detected() {
    for (col, value) in [
        ("outcome", "'denied'"),
        ("type", "'test:other'"),
        ("agent", "'mallory'"),
        ("agent", "NULL"),
        ("metadata", "'{\"n\":99}'"),
        ("ts", "ts + 1"),
        ("id", "'forged'"),
    ] {
        let (_d, s, raw) = setup(5);
        raw.execute(
            &format!("UPDATE audit_events SET {col} = {value} WHERE seq = 3"),
            [],
        )
        .unwrap();
        let p = problems(&s);
        assert_eq!(p, vec![VerifyProblem::Edited { seq: 3 }], "{col}");
    }
}

#[test]
fn edit_with_recomputed_hash_breaks_the_next_link() {
    let (_d, s, raw) = setup(5);
    let mut e = row(&raw, 3);
    e.outcome = "denied".into();
    e.hash = e.compute_hash();
    raw.execute(
        "UPDATE audit_events SET outcome = ?1, hash = ?2 WHERE seq = 3",
        params![e.outcome, e.hash],
    )
    .unwrap();
    assert_eq!(problems(&s), vec![VerifyProblem::BrokenLink { seq: 4 }]);
}

#[test]
fn deletion_in_the_middle_is_detected() {
    let (_d, s, raw) = setup(5);
    raw.execute("DELETE FROM audit_events WHERE seq = 3", [])
        .unwrap();
    let p = problems(&s);
    assert!(
        p.contains(&VerifyProblem::Gap {
            expected: 3,
            found: 4
        }),
        "{p:?}"
    );
    assert!(p.contains(&VerifyProblem::BrokenLink { seq: 4 }), "{p:?}");
}

#[test]
fn deletion_of_the_first_event_is_detected() {
    let (_d, s, raw) = setup(3);
    raw.execute("DELETE FROM audit_events WHERE seq = 1", [])
        .unwrap();
    let p = problems(&s);
    assert!(
        p.contains(&VerifyProblem::Gap {
            expected: 1,
            found: 2
        }),
        "{p:?}"
    );
    assert!(p.contains(&VerifyProblem::BrokenLink { seq: 2 }), "{p:?}");
}

#[test]
fn deletion_of_the_newest_events_is_detected_by_the_anchor() {
    let (_d, s, raw) = setup(5);
    raw.execute("DELETE FROM audit_events WHERE seq >= 4", [])
        .unwrap();
    assert_eq!(
        problems(&s),
        vec![VerifyProblem::Truncated {
            anchor_seq: 5,
            last_seq: 3
        }]
    );
    // Deleting everything too.
    raw.execute("DELETE FROM audit_events", []).unwrap();
    assert_eq!(
        problems(&s),
        vec![VerifyProblem::Truncated {
            anchor_seq: 5,
            last_seq: 0
        }]
    );
}

#[test]
fn truncate_then_append_is_detected() {
    // The attacker removes event 5 and lets comis append a new event 5 after it.
    let (_d, s, raw) = setup(5);
    raw.execute("DELETE FROM audit_events WHERE seq = 5", [])
        .unwrap();
    s.audit(ev("test:event", 6)).unwrap();
    assert!(!s.verify_audit().unwrap().ok());
}

#[test]
fn insertion_is_detected() {
    // At the end, with a plausible hash copied from elsewhere.
    let (_d, s, raw) = setup(4);
    let mut forged = row(&raw, 4);
    forged.seq = 5;
    forged.id = "forged-end".into();
    insert(&raw, &forged);
    let p = problems(&s);
    assert!(p.contains(&VerifyProblem::Edited { seq: 5 }), "{p:?}");

    // In the middle, renumbering what follows, with a correctly computed hash for the
    // forged event itself.
    let (_d, s, raw) = setup(4);
    for seq in (3..=4).rev() {
        raw.execute(
            "UPDATE audit_events SET seq = seq + 1 WHERE seq = ?1",
            [seq],
        )
        .unwrap();
    }
    let prev = row(&raw, 2);
    let mut forged = AuditEvent {
        seq: 3,
        id: "forged-middle".into(),
        ts: prev.ts,
        kind: "approval:resolved".into(),
        agent: Some("default".into()),
        outcome: "success".into(),
        metadata: "{}".into(),
        prev_hash: prev.hash.clone(),
        hash: String::new(),
    };
    forged.hash = forged.compute_hash();
    insert(&raw, &forged);
    let p = problems(&s);
    // Event 4 (formerly 3) no longer matches its own seq, nor links to the forged one.
    assert!(p.contains(&VerifyProblem::Edited { seq: 4 }), "{p:?}");
    assert!(p.contains(&VerifyProblem::BrokenLink { seq: 4 }), "{p:?}");
    assert!(!p.contains(&VerifyProblem::Edited { seq: 3 }));
}

#[test]
fn full_recomputation_is_caught_by_the_anchor_only_if_it_differs() {
    // The attacker rewrites event 2 and recomputes every later hash: the chain is consistent,
    // but the anchored head no longer matches.
    let (_d, s, raw) = setup(4);
    let mut prev = row(&raw, 1).hash;
    for seq in 2..=4 {
        let mut e = row(&raw, seq);
        if seq == 2 {
            e.outcome = "denied".into();
        }
        e.prev_hash = prev.clone();
        e.hash = e.compute_hash();
        raw.execute(
            "UPDATE audit_events SET outcome = ?2, prev_hash = ?3, hash = ?4 WHERE seq = ?1",
            params![seq, e.outcome, e.prev_hash, e.hash],
        )
        .unwrap();
        prev = e.hash;
    }
    assert_eq!(problems(&s), vec![VerifyProblem::AnchorMismatch { seq: 4 }]);
}

#[test]
fn anchor_missing_or_garbled_is_reported() {
    let (d, s, _raw) = setup(2);
    let anchor = d.path().join("audit").join(ANCHOR_FILE);
    std::fs::remove_file(&anchor).unwrap();
    assert_eq!(problems(&s), vec![VerifyProblem::AnchorMissing]);
    std::fs::write(&anchor, "garbage").unwrap();
    assert!(matches!(
        problems(&s)[..],
        [VerifyProblem::AnchorUnreadable { .. }]
    ));
    // The next append repairs nothing silently: a garbled anchor stays a finding until an
    // operator removes it, but a fresh anchor after removal is accepted again.
    std::fs::remove_file(&anchor).unwrap();
    s.audit(ev("test:event", 3)).unwrap();
    assert!(s.verify_audit().unwrap().ok());
}

#[test]
fn empty_log_verifies() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    let r = s.verify_audit().unwrap();
    assert!(r.ok());
    assert_eq!((r.events, r.head_seq), (0, None));
}

#[test]
fn search_filters_and_tail() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    s.audit(ev("memory:write_blocked", 1)).unwrap();
    s.audit(ev("memory:deleted", 2)).unwrap();
    s.audit(
        NewAuditEvent::new(
            EventType::new("approval:resolved").unwrap(),
            Outcome::Denied,
        )
        .agent(&AgentId::new("other").unwrap()),
    )
    .unwrap();
    let find = |f: AuditFilter| s.audit_search(&f).unwrap().len();
    assert_eq!(find(AuditFilter::default()), 3);
    assert_eq!(
        find(AuditFilter {
            kind: Some("memory:*".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        find(AuditFilter {
            kind: Some("memory".into()),
            ..Default::default()
        }),
        2
    );
    assert_eq!(
        find(AuditFilter {
            kind: Some("memory:deleted".into()),
            ..Default::default()
        }),
        1
    );
    // LIKE wildcards in the filter are literal.
    assert_eq!(
        find(AuditFilter {
            kind: Some("%".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        find(AuditFilter {
            kind: Some("memory:_eleted".into()),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        find(AuditFilter {
            agent: Some(AgentId::new("other").unwrap()),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        find(AuditFilter {
            outcome: Some(Outcome::Denied),
            ..Default::default()
        }),
        1
    );
    assert_eq!(
        find(AuditFilter {
            since_ms: Some(i64::MAX),
            ..Default::default()
        }),
        0
    );
    assert_eq!(
        find(AuditFilter {
            after_seq: Some(2),
            ..Default::default()
        }),
        1
    );
    assert!(
        s.audit_search(&AuditFilter {
            kind: Some("a\nb".into()),
            ..Default::default()
        })
        .is_err()
    );
    let tail = s.audit_tail(2).unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.audit_after(1, 10).unwrap().len(), 2);
    let j = tail[1].to_json();
    assert_eq!(j["type"], "approval:resolved");
    assert_eq!(j["outcome"], "denied");
    assert!(j["ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn oversized_metadata_is_replaced_not_dropped() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    let e = s
        .audit(ev("test:event", 1).meta("blob", "x".repeat(MAX_METADATA_BYTES * 2)))
        .unwrap();
    assert!(e.metadata.len() < 200);
    assert!(e.metadata.contains("metadata_omitted"));
    assert!(s.verify_audit().unwrap().ok());
}

#[test]
fn concurrent_appenders_build_one_chain() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = d.path().to_owned();
            std::thread::spawn(move || {
                let s = Store::open_in(&p).unwrap();
                for i in 0..30 {
                    s.audit(ev("test:event", t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let r = s.verify_audit().unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 120);
    // The anchor is written after each commit, so racing writers may leave it behind the
    // head (a lower bound is all it promises), never ahead.
    assert!(r.anchor_seq.is_some_and(|a| (1..=120).contains(&a)));
}
