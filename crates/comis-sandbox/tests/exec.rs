//! Legitimate work passes through the sandbox, and every check before the spawn refuses what
//! it should (with the command never run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use comis_sandbox::{
    ExecState, Exit, HostProbe, Limits, Sandbox, SandboxConfig, SandboxError, SandboxMode,
};
use common::*;

#[test]
fn gcc_compiles_and_runs_a_c_file_in_the_workspace() {
    let h = Home::new();
    std::fs::write(
        h.workspace.join("hello.c"),
        "#include <stdio.h>\nint main(void){printf(\"hello %d\\n\", 6*7);return 0;}\n",
    )
    .unwrap();
    let o = h.run("gcc -O1 -o hello hello.c && ./hello");
    assert_eq!(o.report.exit, Exit::Code(0), "{o:?}");
    assert_eq!(text(&o.stdout), "hello 42\n");
    assert!(h.workspace.join("hello").is_file());
}

#[test]
fn python_script_runs() {
    let h = Home::new();
    std::fs::write(
        h.workspace.join("s.py"),
        "import json,sys,os\nprint(json.dumps({'sum': sum(range(10)), 'home': os.environ['HOME']}))\n",
    )
    .unwrap();
    let o = h.run("python3 s.py");
    assert_eq!(o.report.exit, Exit::Code(0), "{o:?}");
    let want = format!(
        "{{\"sum\": 45, \"home\": \"{}\"}}\n",
        std::fs::canonicalize(&h.workspace).unwrap().display()
    );
    assert_eq!(text(&o.stdout), want);
}

#[test]
fn git_init_and_commit() {
    let h = Home::new();
    let o = h.run(
        "git init -q repo && cd repo && echo hi > a.txt && git add a.txt && \
         git -c user.name=agent -c user.email=agent@example.invalid commit -qm first && \
         git log --oneline | wc -l",
    );
    assert_eq!(o.report.exit, Exit::Code(0), "{o:?}");
    assert_eq!(text(&o.stdout).trim(), "1");
    assert!(h.workspace.join("repo/.git").is_dir());
}

#[test]
fn environment_is_the_allowlist_only() {
    let h = Home::new();
    let mut req = h.request("env; echo; tr '\\0' '\\n' < /proc/self/environ");
    req.env = vec![("RUST_LOG".into(), "debug".into())];
    let o = h.sandbox().run(&req, &TestPolicy).unwrap();
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "TERM",
        "TMPDIR",
        "XDG_CACHE_HOME",
        "NPM_CONFIG_CACHE",
        "PIP_CACHE_DIR",
        "UV_CACHE_DIR",
        "CARGO_HOME",
        "GOPATH",
        "GOMODCACHE",
        "GOCACHE",
        "GEM_HOME",
        "PYTHONUSERBASE",
        "RUST_LOG",
        // set by bash / env themselves
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    ];
    for line in text(&o.stdout).lines().filter(|l| !l.is_empty()) {
        let name = line.split('=').next().unwrap();
        assert!(allowed.contains(&name), "unexpected variable {name}");
    }
    assert!(text(&o.stdout).contains("RUST_LOG=debug"));
}

#[test]
fn refused_commands_never_run() {
    let h = Home::new();
    let sandbox = h.sandbox();
    let cases: Vec<(String, Vec<(String, String)>)> = vec![
        ("touch ran; BLOCK-ME".into(), vec![]),
        ("touch ran\nrm -rf /".into(), vec![]),
        (
            "touch ran".into(),
            vec![("LD_PRELOAD".into(), "/tmp/x.so".into())],
        ),
        (
            "touch ran".into(),
            vec![("PYTHONSTARTUP".into(), "x".into())],
        ),
        ("touch ran".into(), vec![("BAD NAME".into(), "x".into())]),
        ("touch ran".into(), vec![("HOME".into(), "/".into())]),
        ("touch ran\0x".into(), vec![]),
        ("   ".into(), vec![]),
        (format!("touch ran; #{}", "x".repeat(70_000)), vec![]),
    ];
    for (command, env) in cases {
        let mut req = h.request(&command);
        req.env = env.clone();
        let err = sandbox.run(&req, &TestPolicy).unwrap_err();
        assert!(
            matches!(err, SandboxError::Blocked(_)),
            "{command:?} {env:?}: {err}"
        );
        assert!(!h.workspace.join("ran").exists(), "{command:?} ran");
    }
}

#[test]
fn cwd_is_checked_with_safe_path() {
    let h = Home::new();
    std::fs::create_dir_all(h.workspace.join("sub/dir")).unwrap();
    let sandbox = h.sandbox();
    let mut req = h.request("pwd");
    req.cwd = Some("sub/dir".into());
    let o = sandbox.run(&req, &TestPolicy).unwrap();
    assert!(text(&o.stdout).trim().ends_with("agent1/sub/dir"), "{o:?}");
    for bad in ["../..", "/etc", "%2e%2e/%2e%2e", "sub/../../..", "missing"] {
        req.cwd = Some(bad.into());
        assert!(sandbox.run(&req, &TestPolicy).is_err(), "{bad}");
    }
}

#[test]
fn output_is_capped_with_a_marker() {
    let h = Home::new();
    let limits = Limits {
        output_cap: 10_000,
        ..Limits::default()
    };
    let sandbox = h.sandbox_with(SandboxConfig {
        limits,
        ..SandboxConfig::default()
    });
    let o = sandbox
        .run(
            &h.request("head -c 5000000 /dev/zero | tr '\\0' a; echo done >&2"),
            &TestPolicy,
        )
        .unwrap();
    assert!(o.report.truncated);
    let out = text(&o.stdout);
    assert!(out.starts_with(&"a".repeat(10_000)));
    assert!(
        out.ends_with("[comis: output truncated at 10000 bytes]\n"),
        "{}",
        &out[9_990..]
    );
    assert!(o.stdout.len() + o.stderr.len() < 10_100);
    assert_eq!(o.report.exit, Exit::Code(0));
}

#[test]
fn stdin_reaches_the_command() {
    let h = Home::new();
    let mut req = h.request("wc -c");
    req.stdin = Some(vec![b'x'; 300_000]);
    let o = h.sandbox().run(&req, &TestPolicy).unwrap();
    assert_eq!(text(&o.stdout).trim(), "300000");
    req.stdin = Some(vec![0; comis_sandbox::exec::MAX_STDIN_BYTES + 1]);
    assert!(h.sandbox().run(&req, &TestPolicy).is_err());
}

#[test]
fn rlimits_bound_file_size_and_memory() {
    let h = Home::new();
    let limits = Limits {
        file_size: 1 << 20,
        address_space: 512 << 20,
        ..Limits::default()
    };
    let sandbox = h.sandbox_with(SandboxConfig {
        limits,
        ..SandboxConfig::default()
    });
    let o = sandbox
        .run(
            &h.request("head -c 3000000 /dev/zero > big; ls -l big | awk '{print $5}'"),
            &TestPolicy,
        )
        .unwrap();
    assert_eq!(text(&o.stdout).trim(), "1048576", "{o:?}");
    let o = sandbox
        .run(
            &h.request("python3 -c \"b = bytearray(2 * 1024**3); print('allocated')\""),
            &TestPolicy,
        )
        .unwrap();
    assert!(!text(&o.stdout).contains("allocated"));
    assert!(text(&o.stderr).contains("MemoryError"), "{o:?}");
    let o = h.run("ulimit -c; ulimit -t; ulimit -n");
    assert_eq!(text(&o.stdout), "0\n120\n1024\n");
}

#[test]
fn exit_codes_and_signals() {
    let h = Home::new();
    assert_eq!(h.run("exit 7").report.exit, Exit::Code(7));
    assert_eq!(h.run("kill -TERM $$").report.exit.shell_code(), 143);
    assert!(h.run("true").report.exit.success());
}

#[test]
fn timeout_is_reported_and_clamped() {
    let h = Home::new();
    let mut req = h.request("sleep 5");
    req.timeout = Some(Duration::ZERO); // clamped up to 100 ms
    let o = h.sandbox().run(&req, &TestPolicy).unwrap();
    assert_eq!(o.report.exit, Exit::TimedOut);
    assert!(o.report.elapsed < Duration::from_secs(4));
    assert_eq!(o.report.exit.shell_code(), 124);
}

#[test]
fn no_sandbox_means_no_exec_unless_never() {
    let h = Home::new();
    let missing = HostProbe::run(Some(std::path::Path::new("/nonexistent/bwrap")));
    assert!(!missing.namespaces.active);
    let auto = Sandbox::new(SandboxConfig::default(), &missing).unwrap();
    assert!(matches!(auto.state(), ExecState::Disabled(_)));
    assert!(auto.warnings().iter().any(|w| w.contains("DISABLED")));
    let err = auto.run(&h.request("touch ran"), &TestPolicy).unwrap_err();
    assert!(matches!(err, SandboxError::ExecDisabled(_)), "{err}");
    assert!(!h.workspace.join("ran").exists());

    let always = SandboxConfig {
        mode: SandboxMode::Always,
        ..SandboxConfig::default()
    };
    assert!(Sandbox::new(always, &missing).is_err());

    let never = SandboxConfig {
        mode: SandboxMode::Never,
        ..SandboxConfig::default()
    };
    let never = Sandbox::new(never, &missing).unwrap();
    assert_eq!(never.state(), &ExecState::Unsandboxed);
    assert!(never.warnings().iter().any(|w| w.contains("UNSANDBOXED")));
    let o = never
        .run(&h.request("touch ran; env | wc -l"), &TestPolicy)
        .unwrap();
    assert!(!o.report.sandboxed);
    assert!(h.workspace.join("ran").exists());
    // Even unsandboxed the environment is the allowlist, not the daemon's.
    let n: usize = text(&o.stdout).trim().parse().unwrap();
    assert!(n < 25, "{n} variables");
    // And the policy still runs first.
    assert!(never.run(&h.request("BLOCK-ME"), &TestPolicy).is_err());
}

#[test]
fn host_directories_cannot_be_workspaces() {
    let h = Home::new();
    let sandbox = h.sandbox();
    for ws in ["/", "/etc", "/usr", "/root", "/home", "/proc"] {
        let mut req = h.request("true");
        req.workspace = ws.into();
        let err = sandbox.run(&req, &TestPolicy).unwrap_err();
        assert!(matches!(err, SandboxError::Config(_)), "{ws}: {err}");
    }
}

#[test]
fn mode_parses_and_limits_validate() {
    assert_eq!("never".parse::<SandboxMode>().unwrap(), SandboxMode::Never);
    assert!("sometimes".parse::<SandboxMode>().is_err());
    let bad = SandboxConfig {
        limits: Limits {
            output_cap: 0,
            ..Limits::default()
        },
        ..SandboxConfig::default()
    };
    assert!(Sandbox::new(bad, probe()).is_err());
}

#[test]
fn concurrent_runs_do_not_interfere() {
    let h = Home::new();
    let sandbox = h.sandbox();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let sandbox = &sandbox;
                let h = &h;
                s.spawn(move || {
                    let o = sandbox
                        .run(&h.request(&format!("echo run-{i}")), &TestPolicy)
                        .unwrap();
                    assert_eq!(text(&o.stdout), format!("run-{i}\n"));
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    });
}
