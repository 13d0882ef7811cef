//! Trusted helpers (SecretRef `exec` credential helpers): no shell, empty env plus PATH,
//! timeout that kills, output cap.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use comis_sandbox::{Exit, SandboxError, run_trusted_helper};

fn argv(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn runs_without_a_shell_with_stdin() {
    // `$(id)` stays literal: there is no shell to expand it.
    let out = run_trusted_helper(
        &argv(&["echo", "$(id)", ";", "ls"]),
        b"",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(out.exit, Exit::Code(0));
    assert_eq!(&out.stdout[..], b"$(id) ; ls\n");
    let out =
        run_trusted_helper(&argv(&["/bin/cat"]), b"{\"v\":1}", Duration::from_secs(5)).unwrap();
    assert_eq!(&out.stdout[..], b"{\"v\":1}");
}

#[test]
fn environment_is_path_only() {
    let out = run_trusted_helper(&argv(&["/usr/bin/env"]), b"", Duration::from_secs(5)).unwrap();
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(env.lines().count(), 1, "{env}");
    assert!(env.starts_with("PATH="));
}

#[test]
fn timeout_kills_the_helper_and_its_children() {
    let start = Instant::now();
    let out = run_trusted_helper(
        &argv(&["/bin/sh", "-c", "sleep 917263 & sleep 917263"]),
        b"",
        Duration::from_millis(300),
    )
    .unwrap();
    assert_eq!(out.exit, Exit::TimedOut);
    assert!(start.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("917263"))
        })
        .count();
    assert_eq!(left, 0);
}

#[test]
fn output_is_capped() {
    let out = run_trusted_helper(
        &argv(&["/bin/sh", "-c", "head -c 3000000 /dev/zero"]),
        b"",
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(out.truncated);
    assert!(out.stdout.len() <= comis_sandbox::helper::HELPER_OUTPUT_CAP + 128);
}

#[test]
fn malformed_argv_is_refused() {
    for bad in [vec![], argv(&[""]), argv(&["/bin/echo", "a\0b"])] {
        let err = run_trusted_helper(&bad, b"", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, SandboxError::Config(_)), "{err}");
    }
    let err = run_trusted_helper(&argv(&["/nonexistent/helper"]), b"", Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err}");
}
