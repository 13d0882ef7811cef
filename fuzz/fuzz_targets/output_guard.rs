//! The output guard must never panic, and a registered secret must never survive redaction,
//! wherever the fuzzer puts it.
#![no_main]

use std::sync::LazyLock;

use comis_guard::canary::{CanaryKey, CanaryToken};
use comis_guard::output::OutputGuard;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "s3cr3t-V4lue-9f2c1e7a";

static GUARD: LazyLock<OutputGuard> = LazyLock::new(|| {
    let mut g = OutputGuard::new().expect("registry builds");
    g.register_secret(SECRET).expect("secret registers");
    g
});
static CANARY: LazyLock<CanaryToken> = LazyLock::new(|| {
    CanaryKey::from_bytes(b"fuzz-canary-key-0123456789").expect("key").token_for("session")
});

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Plant the secret in the middle of whatever the fuzzer produced.
    let mid = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i);
    let planted = format!("{}{SECRET}{}", &text[..mid], &text[mid..]);
    let scan = GUARD.scan(&planted, Some(&CANARY));
    assert!(!scan.text.contains(SECRET), "registered secret leaked");
    let canary = CANARY.render();
    assert!(!GUARD.scan(&format!("{text}{canary}"), Some(&CANARY)).text.contains(&canary));
});
