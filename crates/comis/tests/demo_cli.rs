//! `comis demo` end to end: the README's main job. A real daemon in a temporary home, the
//! scripted prompt-injected agent, every attack stopped with audit evidence, the home removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_comis");

#[test]
fn demo_stops_every_attack_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("demo")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", tmp.path())
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("All 9 attacks stopped"), "{stdout}");
    for layer in [
        "input guard",
        "approval gate",
        "exec sandbox",
        "output guard (known secret)",
        "output guard (canary)",
        "SSRF guard",
        "exec validator",
        "memory write validator",
        "budget guard",
    ] {
        assert!(stdout.contains(layer), "no row for {layer}:\n{stdout}");
    }
    assert!(!stdout.contains("THROUGH"), "{stdout}");
    // Every row cites an audit event.
    assert_eq!(stdout.matches("audit #").count(), 9, "{stdout}");
    // The temporary home is gone.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "demo left files behind: {left:?}");
}
