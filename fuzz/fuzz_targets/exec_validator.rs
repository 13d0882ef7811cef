//! The exec validator must never panic, and must refuse any command with `$(` outside quotes.
#![no_main]

use comis_guard::shell::{validate_command, validate_env};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = std::str::from_utf8(data) else { return };
    let verdict = validate_command(cmd);
    assert_eq!(verdict.allowed, verdict.reason.is_none());
    if !cmd.contains('\'') && !cmd.contains('\\') && cmd.contains("$(") {
        assert!(!verdict.allowed, "unquoted substitution allowed: {cmd:?}");
    }
    // Split the same bytes into env pairs: the env gate must not panic either.
    let pairs: Vec<(String, String)> = cmd
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let _ = validate_env(&pairs);
});
