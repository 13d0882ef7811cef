//! Migrations from an empty file and from the previous schema, and refusal of files that are
//! not comis databases or come from a newer comis.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use comis_store::audit::{ANCHOR_FILE, GENESIS_HASH};
use comis_store::migrate::LATEST;
use comis_store::{
    AgentId, AuditEvent, MemoryKey, NewMemory, SearchQuery, SourceKind, Store, StoreError, Trust,
};
use rusqlite::params;

#[test]
fn empty_file_migrates_to_latest() {
    let d = tempfile::tempdir().unwrap();
    let s = Store::open_in(d.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), LATEST);
    assert_eq!(s.integrity_check().unwrap(), vec!["ok"]);
    drop(s);
    // Opening again is a no-op.
    let s = Store::open_in(d.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), LATEST);
    let raw = rusqlite::Connection::open(d.path().join("comis.db")).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let app: i64 = raw
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(app, 0x636f_6d73);
}

#[test]
fn previous_schema_migrates_with_its_data() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("comis.db");
    {
        let raw = comis_store::open_raw_at_version(&path, 1).unwrap();
        let v: i64 = raw
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 1);
        // Version 1 had no embeddings, transcripts or approvals.
        assert!(raw.execute("SELECT embedding FROM memories", []).is_err());
        raw.execute(
            "INSERT INTO memories (agent, key, content, trust, tags, prov_agent, source_kind,
                 created_at, updated_at)
             VALUES ('default', 'user.city', 'lives in Lyon', 'system', '', 'default', 'operator', 1, 1),
                    ('default', NULL, 'likes oolong tea', 'learned', 'pref', 'default', 'conversation', 2, 2)",
            [],
        )
        .unwrap();
        // An audit event written by a version-1 comis.
        let mut e = AuditEvent {
            seq: 1,
            id: "00000000000000000000000000000001".into(),
            ts: 3,
            kind: "memory:write_blocked".into(),
            agent: Some("default".into()),
            outcome: "denied".into(),
            metadata: "{}".into(),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        e.hash = e.compute_hash();
        raw.execute(
            "INSERT INTO audit_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        std::fs::create_dir_all(d.path().join("audit")).unwrap();
        std::fs::write(
            d.path().join("audit").join(ANCHOR_FILE),
            format!("v1 1 {}\n", e.hash),
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), LATEST);
    let a = AgentId::new("default").unwrap();
    // Old memories keep their trust and are found by full-text search.
    let hits = s
        .search_memories(&SearchQuery {
            agent: &a,
            text: "tea",
            embedding: None,
            limit: 5,
            include_external: false,
        })
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].memory.trust, Trust::Learned);
    assert!(!hits[0].memory.has_embedding);
    // The trust rule holds for old keys.
    let k = MemoryKey::new("user.city").unwrap();
    assert!(matches!(
        s.write_memory(
            &NewMemory::new(
                a.clone(),
                "lives in Paris",
                Trust::Learned,
                SourceKind::Conversation
            )
            .key(k)
        ),
        Err(StoreError::TrustViolation { .. })
    ));
    // New features work on the migrated file, and the old chain continues.
    s.write_memory(
        &NewMemory::new(
            a.clone(),
            "vector fact",
            Trust::Learned,
            SourceKind::Operator,
        )
        .embedding(vec![1.0, 2.0]),
    )
    .unwrap();
    let r = s.verify_audit().unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.events, 2);
    assert_eq!(s.integrity_check().unwrap(), vec!["ok"]);
}

#[test]
fn newer_schema_is_refused() {
    let d = tempfile::tempdir().unwrap();
    drop(Store::open_in(d.path()).unwrap());
    let raw = rusqlite::Connection::open(d.path().join("comis.db")).unwrap();
    raw.pragma_update(None, "user_version", LATEST + 1).unwrap();
    drop(raw);
    let e = Store::open_in(d.path()).unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaTooNew { found, .. } if found == LATEST + 1),
        "{e}"
    );
}

#[test]
fn foreign_databases_and_garbage_are_refused() {
    let d = tempfile::tempdir().unwrap();
    // Another application's database.
    let other = d.path().join("other.db");
    let raw = rusqlite::Connection::open(&other).unwrap();
    raw.execute_batch("CREATE TABLE accounts (id INTEGER)")
        .unwrap();
    drop(raw);
    let e = Store::open(&other).unwrap_err();
    assert!(matches!(e, StoreError::NotComis { .. }), "{e}");
    // Someone else's application_id.
    let tagged = d.path().join("tagged.db");
    let raw = rusqlite::Connection::open(&tagged).unwrap();
    raw.pragma_update(None, "application_id", 42).unwrap();
    drop(raw);
    assert!(matches!(
        Store::open(&tagged).unwrap_err(),
        StoreError::NotComis { .. }
    ));
    // Not a database at all.
    let junk = d.path().join("junk.db");
    std::fs::write(&junk, vec![0x5a; 8192]).unwrap();
    assert!(Store::open(&junk).is_err());
    // A directory.
    let dir = d.path().join("dir.db");
    std::fs::create_dir(&dir).unwrap();
    assert!(Store::open(&dir).is_err());
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let d = tempfile::tempdir().unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let p = d.path().to_owned();
            std::thread::spawn(move || Store::open_in(&p).map(|s| s.schema_version().unwrap()))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), LATEST);
    }
}
