//! The input guard must never panic and always score within [0, 1].
#![no_main]

use std::sync::LazyLock;

use comis_guard::input::{InputGuard, InputGuardConfig};
use libfuzzer_sys::fuzz_target;

static GUARD: LazyLock<InputGuard> =
    LazyLock::new(|| InputGuard::new(InputGuardConfig::default()).expect("registry builds"));

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let scan = GUARD.scan(&text);
    assert!((0.0..=1.0).contains(&scan.score), "score {} out of range", scan.score);
    let _ = comis_guard::input::validate_input(&text);
});
