//! Hostile text through the memory store: any search text is a valid query (never a database
//! error), and any content either stores, is refused for a stated reason (blocked, invalid,
//! trust), or downgrades — never a database error; recall never returns `external` memories
//! unless asked.
#![no_main]

use std::sync::LazyLock;

use comis_store::{AgentId, NewMemory, SearchQuery, SourceKind, Store, StoreError, Trust};
use libfuzzer_sys::fuzz_target;

static STORE: LazyLock<(Store, AgentId)> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("comis-fuzz-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open_in(&dir).expect("store opens");
    let agent = AgentId::new("fuzz").expect("agent id");
    for (text, trust) in [
        ("alpha beta gamma", Trust::System),
        ("delta NEAR epsilon OR zeta", Trust::Learned),
        ("external alpha content", Trust::External),
    ] {
        store
            .write_memory(&NewMemory::new(agent.clone(), text, trust, SourceKind::Operator))
            .expect("seed");
    }
    (store, agent)
});

fuzz_target!(|data: &[u8]| {
    let (store, agent) = &*STORE;
    let text = String::from_utf8_lossy(data);
    let hits = store
        .search_memories(&SearchQuery {
            agent,
            text: &text,
            embedding: None,
            limit: 10,
            include_external: false,
        })
        .expect("any search text is a valid query");
    assert!(hits.iter().all(|h| h.memory.trust != Trust::External));
    if data.first().is_some_and(|b| b % 8 == 0) {
        match store.write_memory(&NewMemory::new(
            agent.clone(),
            text.as_ref(),
            Trust::Learned,
            SourceKind::Conversation,
        )) {
            Ok(w) => assert!(w.trust <= Trust::Learned),
            Err(
                StoreError::WriteBlocked { .. }
                | StoreError::Invalid { .. }
                | StoreError::TrustViolation { .. },
            ) => {}
            Err(e) => panic!("unexpected store error: {e}"),
        }
    }
});
