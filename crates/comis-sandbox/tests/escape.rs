//! The escape suite: every attempt an agent's command could make to leave its sandbox, run
//! against the real bubblewrap profile. Each test fails if the attempt succeeds; where a
//! negative result could also come from a broken test, a control run shows the same probe
//! succeeding when the layer is deliberately absent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use comis_sandbox::{
    ExecState, Exit, Limits, Network, SandboxConfig, SandboxError, check_path, safe_path,
};
use common::*;

/// Every escape test needs a working sandbox; on a host without one they would prove nothing.
fn require_sandbox(h: &Home) {
    let s = h.sandbox();
    assert!(
        matches!(s.state(), ExecState::Sandboxed { seccomp: true }),
        "escape suite needs bubblewrap + seccomp: {:?} {:?}",
        s.state(),
        probe()
    );
}

#[test]
fn etc_shadow_is_not_readable() {
    let h = Home::new();
    require_sandbox(&h);
    let host_shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let first = host_shadow.lines().next().unwrap();
    let o = h.run("cat /etc/shadow; ls -la /etc/shadow /etc/gshadow /etc/sudoers");
    assert_ne!(o.report.exit, Exit::Code(0));
    assert!(!all_output(&o).contains(first));
    assert!(all_output(&o).contains("No such file"));
}

#[test]
fn comis_home_is_invisible() {
    let h = Home::new();
    require_sandbox(&h);
    let home = h.root().display().to_string();
    let cmd = format!(
        "cat ../../secrets.enc ../../master.key ../../comis.db ../../config.yaml; \
         cat {home}/secrets.enc {home}/master.key {home}/comis.db {home}/config.yaml; \
         ls -la {home} {home}/workspaces; \
         find / -maxdepth 6 -path /usr -prune -o -path /proc -prune -o -name '*.enc' -print; \
         grep -rs CANARY-4242 /tmp /etc /dev/shm {home}; true"
    );
    let o = h.run(&cmd);
    assert_eq!(o.report.exit, Exit::Code(0));
    let out = all_output(&o);
    assert!(!out.contains("CANARY-4242"), "{out}");
    assert!(!out.contains("secrets.enc\n"), "{out}");
    // Control: the files are there on the host.
    assert!(
        std::fs::read_to_string(h.root().join("secrets.enc"))
            .unwrap()
            .contains("CANARY")
    );
}

#[test]
fn hidden_files_inside_a_bound_path_are_masked() {
    let h = Home::new();
    require_sandbox(&h);
    // A misconfigured agent whose workspace holds secrets: only the files are hidden.
    let mut config = SandboxConfig::default();
    for f in ["secrets.enc", "master.key", "comis.db"] {
        config.hidden.push(h.root().join(f));
    }
    let sandbox = comis_sandbox::Sandbox::new(config, probe()).unwrap();
    let mut req = h.request("cat secrets.enc master.key comis.db; echo end; echo x > secrets.enc");
    req.workspace = h.root().to_path_buf();
    let o = sandbox.run(&req, &TestPolicy).unwrap();
    let out = all_output(&o);
    assert!(!out.contains("CANARY"), "{out}");
    assert!(out.contains("end"));
    assert!(
        std::fs::read_to_string(h.root().join("secrets.enc"))
            .unwrap()
            .contains("CANARY")
    );

    // And a workspace that *is* a hidden path is refused outright.
    let sandbox = h.sandbox();
    let err = sandbox.run(&req, &TestPolicy).unwrap_err();
    assert!(matches!(err, SandboxError::Config(_)), "{err}");
}

#[test]
fn root_ssh_is_invisible() {
    let h = Home::new();
    require_sandbox(&h);
    assert!(
        Path::new("/root").is_dir(),
        "control: /root exists on the host"
    );
    let o = h.run("ls -la /root /root/.ssh; cat /root/.ssh/* /home/*/.ssh/* 2>&1; test -e /root");
    assert_ne!(o.report.exit, Exit::Code(0));
    assert!(all_output(&o).contains("No such file"));
}

#[test]
fn other_processes_environ_is_unreadable() {
    let h = Home::new();
    require_sandbox(&h);
    let mut canary = Command::new("/bin/sleep")
        .arg("300")
        .env("COMIS_ENV_CANARY", "ENVIRON-CANARY-777")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = canary.id();
    let me = std::process::id();
    let o = h.run(&format!(
        "cat /proc/{pid}/environ /proc/{me}/environ; cat /proc/*/environ | tr '\\0' '\\n'; \
         ls /proc | grep -E '^[0-9]+$' | wc -l"
    ));
    let _ = canary.kill();
    let _ = canary.wait();
    let out = all_output(&o);
    assert!(!out.contains("ENVIRON-CANARY"), "{out}");
    // Control: the canary's environment does hold it on the host.
    assert!(!out.contains(&format!("{me}/environ\n")));
    // Only the sandbox's own few processes are visible.
    let count: usize = text(&o.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count < 10, "{count} processes visible");
}

#[test]
fn writes_outside_the_workspace_do_not_reach_the_host() {
    let h = Home::new();
    require_sandbox(&h);
    let tag = format!("comis-pwned-{}", std::process::id());
    let targets = [
        format!("/usr/{tag}"),
        format!("/etc/{tag}"),
        format!("/tmp/{tag}"),
        format!("{}/{tag}", h.root().display()),
        format!("/{tag}"),
    ];
    let cmd: String = targets
        .iter()
        .map(|t| format!("echo x > {t}; "))
        .chain(["echo inside > ok.txt".to_owned()])
        .collect();
    let o = h.run(&cmd);
    for t in &targets {
        assert!(!Path::new(t).exists(), "{t} was written on the host: {o:?}");
    }
    // Control: the workspace itself is writable.
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("ok.txt")).unwrap(),
        "inside\n"
    );
}

#[test]
fn symlink_to_etc_passwd_is_refused_by_safe_path_and_harmless_in_exec() {
    let h = Home::new();
    require_sandbox(&h);
    std::os::unix::fs::symlink("/etc/passwd", h.workspace.join("passwd-link")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", h.workspace.join("shadow-link")).unwrap();
    std::os::unix::fs::symlink("../../secrets.enc", h.workspace.join("vault-link")).unwrap();
    for link in ["passwd-link", "shadow-link", "vault-link", "./passwd-link"] {
        let err = safe_path(&h.workspace, link).unwrap_err();
        assert!(
            matches!(err, SandboxError::PathRejected { .. }),
            "{link}: {err}"
        );
        assert!(!check_path(&h.workspace, link).allowed);
    }
    let o = h.run("cat passwd-link; cat shadow-link; cat vault-link");
    let out = all_output(&o);
    // The sandbox's /etc/passwd is synthesized: none of the host's accounts are in it.
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    for line in host
        .lines()
        .filter(|l| !l.starts_with("root:") && !l.starts_with("nobody:"))
    {
        assert!(!out.contains(line), "host account leaked: {line}");
    }
    assert!(out.contains("agent:x:1000:1000"));
    assert!(!out.contains("CANARY"));
    // A cwd through such a link is refused before anything is spawned.
    std::os::unix::fs::symlink("/etc", h.workspace.join("etc-link")).unwrap();
    let mut req = h.request("touch should-not-exist");
    req.cwd = Some("etc-link".into());
    let err = h.sandbox().run(&req, &TestPolicy).unwrap_err();
    assert!(matches!(err, SandboxError::PathRejected { .. }), "{err}");
}

/// A connect attempt from inside; prints `CONNECTED` or the error.
fn connect_cmd(host: &str, port: u16) -> String {
    format!(
        "python3 -c \"import socket\ntry:\n socket.create_connection(('{host}', {port}), \
         timeout=3); print('CONNECTED')\nexcept Exception as e: print('FAILED', e)\""
    )
}

#[test]
fn no_network_by_default_gateway_and_metadata_unreachable() {
    let h = Home::new();
    require_sandbox(&h);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let sandbox = h.sandbox();
    for target in [("127.0.0.1", port), ("169.254.169.254", 80)] {
        let req = h.request(&connect_cmd(target.0, target.1));
        let o = sandbox.run(&req, &AllowAll).unwrap();
        let out = all_output(&o);
        assert!(
            out.contains("FAILED") && !out.contains("CONNECTED"),
            "{target:?}: {out}"
        );
    }
    let o = sandbox
        .run(
            &h.request(&format!("echo hi > /dev/tcp/127.0.0.1/{port}")),
            &AllowAll,
        )
        .unwrap();
    assert_ne!(o.report.exit, Exit::Code(0));
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "the host listener received a connection"
    );
    // Control: with `network: host` (explicit) the same probe does connect.
    let mut req = h.request(&connect_cmd("127.0.0.1", port));
    req.network = Network::Host;
    let o = sandbox.run(&req, &AllowAll).unwrap();
    assert!(all_output(&o).contains("CONNECTED"), "{o:?}");
}

#[test]
fn broker_mode_reaches_only_the_broker_socket() {
    let h = Home::new();
    require_sandbox(&h);
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("broker.sock");
    let broker = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cmd = format!(
        "python3 -c \"import socket,os\ns=socket.socket(socket.AF_UNIX)\n\
         s.connect(os.environ['COMIS_BROKER_SOCKET']); s.sendall(b'hello broker')\"; {}",
        connect_cmd("127.0.0.1", port)
    );
    let mut req = h.request(&cmd);
    req.network = Network::Broker(sock.clone());
    let o = h.sandbox().run(&req, &AllowAll).unwrap();
    let (mut conn, _) = broker.accept().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut conn, &mut got).unwrap();
    assert_eq!(got, "hello broker");
    assert!(all_output(&o).contains("FAILED"), "{o:?}");
}

#[test]
fn fork_bomb_is_contained() {
    let h = Home::new();
    require_sandbox(&h);
    let limit = probe().process_limit();
    if !limit.active {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run where a fork bomb can be contained: {}",
            limit.detail
        );
        eprintln!("skipped: {}", limit.detail);
        return;
    }
    let limits = Limits {
        processes: 48,
        ..Limits::default()
    };
    let sandbox = h.sandbox_with(SandboxConfig {
        limits,
        ..SandboxConfig::default()
    });
    // A marker no other process carries (the test binary's own arguments name this test).
    let mark = format!("fb{}x", std::process::id());
    let mut req = h.request(&format!(
        "{mark}() {{ {mark} | {mark} & }}; {mark}; sleep 3; echo survived-inside"
    ));
    req.timeout = Some(Duration::from_secs(6));
    let o = sandbox.run(&req, &AllowAll).unwrap();
    let err = text(&o.stderr);
    assert!(
        err.contains("Resource temporarily unavailable") || err.contains("retry"),
        "the process limit was never hit: {o:?}"
    );
    // The host is fine: it spawns, and nothing of the bomb is left.
    assert!(Command::new("/bin/true").status().unwrap().success());
    // The tree was SIGKILLed when the run ended; on a loaded host the kernel may still be
    // reaping it, so allow it a bounded moment to disappear (this is not a timing assertion:
    // a surviving bomb never reaches zero).
    let mut left = count_processes_with(&mark);
    for _ in 0..100 {
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = count_processes_with(&mark);
    }
    assert_eq!(left, 0, "fork bomb processes survived the run");
}

fn count_processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn timeout_kills_the_whole_tree() {
    let h = Home::new();
    require_sandbox(&h);
    let mark = 900_000 + std::process::id() % 90_000;
    let mut req = h.request(&format!(
        "sleep {mark} & (sleep {} &) ; setsid sleep {} & echo started; sleep {mark}",
        mark + 1,
        mark + 2
    ));
    req.timeout = Some(Duration::from_secs(1));
    let o = h.sandbox().run(&req, &AllowAll).unwrap();
    assert_eq!(o.report.exit, Exit::TimedOut);
    assert!(text(&o.stdout).contains("started"));
    // Killing is synchronous with the PID namespace's end; allow the kernel a moment to reap.
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = count_processes_with(&format!("sleep {mark}"))
            + count_processes_with(&format!("sleep {}", mark + 1))
            + count_processes_with(&format!("sleep {}", mark + 2));
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left, 0, "children outlived the timeout");
}

#[test]
fn cannot_signal_or_ptrace_the_parent_or_the_host() {
    let h = Home::new();
    require_sandbox(&h);
    let mut canary = Command::new("/bin/sleep")
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = canary.id();
    let me = std::process::id();
    std::fs::write(
        h.workspace.join("ptrace.py"),
        "import ctypes,sys\nlibc=ctypes.CDLL(None, use_errno=True)\n\
         r=libc.ptrace(16, int(sys.argv[1]), 0, 0)\nprint('PTRACE', r, ctypes.get_errno())\n",
    )
    .unwrap();
    let cmd = format!(
        "kill -9 {me}; kill -9 {pid}; kill -STOP {me}; python3 ptrace.py {me}; \
         python3 ptrace.py {pid}; sleep 30 & python3 ptrace.py $!; kill -9 -1"
    );
    let o = h.run(&cmd);
    let out = all_output(&o);
    // Still alive (this test is running) and the host canary too.
    assert!(
        canary.try_wait().unwrap().is_none(),
        "host process was killed"
    );
    let _ = canary.kill();
    let _ = canary.wait();
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("PTRACE")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in &lines {
        assert!(l.starts_with("PTRACE -1 "), "ptrace succeeded: {l}");
    }
    // The in-sandbox sibling is visible, so only seccomp can refuse: EPERM.
    assert_eq!(lines[2], "PTRACE -1 1", "{out}");
}

/// Each denied syscall, called directly, fails with EPERM (the filter's answer); `clone3`
/// answers ENOSYS; `clone` with a namespace flag and `TIOCSTI` are refused.
#[test]
fn seccomp_denies_the_escape_syscalls() {
    let h = Home::new();
    require_sandbox(&h);
    let list: Vec<String> = comis_sandbox::seccomp::DENIED_SYSCALLS
        .iter()
        .map(|(n, nr)| format!("('{n}',{nr})"))
        .collect();
    let script = format!(
        "import ctypes,os\nlibc=ctypes.CDLL(None, use_errno=True)\n\
         for n,nr in [{}]:\n r=libc.syscall(nr,0,0,0,0,0)\n print('SYS',n,r,ctypes.get_errno())\n\
         r=libc.syscall(435,0,0)\nprint('CLONE3',r,ctypes.get_errno())\n\
         r=libc.syscall(56,0x10000000|17,0,0,0,0)\n\
         if r==0: os._exit(0)\n\
         print('CLONE_NEWUSER',r,ctypes.get_errno())\n\
         r=libc.ioctl(0,0x5412,ctypes.c_char_p(b'x'))\nprint('TIOCSTI',r,ctypes.get_errno())\n",
        list.join(",")
    );
    std::fs::write(h.workspace.join("sys.py"), script).unwrap();
    let o = h.run("python3 sys.py");
    let out = text(&o.stdout);
    let mut seen = 0;
    for line in out.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["SYS", name, r, errno] => {
                seen += 1;
                assert_eq!((*r, *errno), ("-1", "1"), "{name} was not denied: {line}");
            }
            ["CLONE3", r, errno] => assert_eq!((*r, *errno), ("-1", "38"), "{line}"),
            ["CLONE_NEWUSER", r, errno] => assert_eq!((*r, *errno), ("-1", "1"), "{line}"),
            ["TIOCSTI", r, errno] => assert_eq!((*r, *errno), ("-1", "1"), "{line}"),
            _ => {}
        }
    }
    assert_eq!(seen, comis_sandbox::seccomp::DENIED_SYSCALLS.len(), "{o:?}");
    for tag in ["CLONE3", "CLONE_NEWUSER", "TIOCSTI"] {
        assert!(out.contains(tag), "{tag} missing: {o:?}");
    }
}

#[test]
fn no_capabilities_no_new_privileges_no_nested_namespaces() {
    let h = Home::new();
    require_sandbox(&h);
    let o = h.run(
        "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; id -u; \
         hostname; unshare -U true && echo NESTED-USERNS; unshare -m true && echo NESTED-MOUNTNS; \
         mount -t tmpfs none /tmp && echo MOUNTED; true",
    );
    let out = all_output(&o);
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(
        out.contains("1000\n") && out.contains("comis-sandbox"),
        "{out}"
    );
    for bad in ["NESTED-USERNS", "NESTED-MOUNTNS", "MOUNTED"] {
        assert!(!out.contains(bad), "{bad}: {out}");
    }
}
