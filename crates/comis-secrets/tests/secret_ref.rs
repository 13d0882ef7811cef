//! SecretRef sources against real files and real credential-helper processes.
//!
//! The product never spawns processes outside comis-sandbox; this test file implements
//! [`HelperRunner`] with `std::process` (tests may spawn) to exercise the protocol validation
//! and the deadline end to end with real helper programs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use comis_secrets::secret_ref::{MAX_HELPER_OUTPUT, SecretRef, SecretSource};
use comis_secrets::{
    ExposeSecret, HelperError, HelperRunner, SecretManager, SecretRefResolver, SecretString,
    SecretsError,
};
use serde_json::json;

/// A credential-helper runner on `std::process`: no shell, stdin written then closed, stdout
/// read up to the limit, killed at the deadline.
struct ProcessRunner;

impl HelperRunner for ProcessRunner {
    fn run(
        &self,
        argv: &[String],
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, HelperError> {
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_clear()
            .spawn()
            .map_err(|e| HelperError::Spawn(e.to_string()))?;
        let mut input = child.stdin.take().unwrap();
        let data = stdin.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = (&mut out)
                .take(MAX_HELPER_OUTPUT as u64 + 1)
                .read_to_end(&mut buf);
            buf
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                return Err(HelperError::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let _ = writer.join();
        let buf = reader.join().unwrap();
        if buf.len() > MAX_HELPER_OUTPUT {
            return Err(HelperError::OutputTooLarge(MAX_HELPER_OUTPUT));
        }
        if !status.success() {
            return Err(HelperError::Failed(status.to_string()));
        }
        Ok(buf)
    }
}

const VALUE: &str = "helper-secret-9f8e7d6c5b4a";

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    fs::write(&p, body).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
    p.to_str().unwrap().to_owned()
}

fn exec_ref(helper: &str, id: &str) -> SecretRef {
    SecretRef {
        source: SecretSource::Exec,
        provider: helper.to_owned(),
        id: id.to_owned(),
    }
}

fn mgr() -> SecretManager {
    SecretManager::from_values([("API".to_owned(), SecretString::from("from-manager"))])
}

/// A helper that checks the request like a real one would, then answers for each id.
const ECHO_HELPER: &str = r#"#!/usr/bin/env python3
import json, sys
req = json.load(sys.stdin)
assert req["protocolVersion"] == 1, req
assert isinstance(req["provider"], str)
ids = req["ids"]
assert isinstance(ids, list) and len(ids) == 1
print(json.dumps({"protocolVersion": 1, "values": {i: "helper-secret-9f8e7d6c5b4a" for i in ids}}))
"#;

#[test]
fn exec_source_speaks_the_protocol() {
    let d = tempfile::tempdir().unwrap();
    let helper = script(
        d.path(),
        "helper.py",
        &ECHO_HELPER.replace("/usr/bin/env python3", &python()),
    );
    let m = mgr();
    let runner = ProcessRunner;
    let r = SecretRefResolver::new(&m).with_runner(&runner);
    let v = r
        .resolve(&exec_ref(&helper, "db/password"), "/db/password")
        .unwrap();
    assert_eq!(v.expose_secret(), VALUE);

    let cfg = json!({"db": {"password": {"source": "exec", "provider": helper, "id": "x"}}});
    let rc = r.resolve_config(&cfg).unwrap();
    assert_eq!(rc.value()["db"]["password"], VALUE);
    assert!(!format!("{rc:?}").contains(VALUE));
}

fn python() -> String {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).exists() {
            return p.to_owned();
        }
    }
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn malformed_helper_answers_are_refused_without_leaking() {
    let d = tempfile::tempdir().unwrap();
    let answers = [
        ("not-json", format!("echo '{VALUE}'")),
        (
            "wrong-version",
            format!(r#"echo '{{"protocolVersion":2,"values":{{"x":"{VALUE}"}}}}'"#),
        ),
        (
            "string-version",
            format!(r#"echo '{{"protocolVersion":"1","values":{{"x":"{VALUE}"}}}}'"#),
        ),
        ("no-values", r#"echo '{"protocolVersion":1}'"#.to_owned()),
        (
            "other-id",
            format!(r#"echo '{{"protocolVersion":1,"values":{{"y":"{VALUE}"}}}}'"#),
        ),
        (
            "number",
            r#"echo '{"protocolVersion":1,"values":{"x":12345678}}'"#.to_owned(),
        ),
        (
            "empty",
            r#"echo '{"protocolVersion":1,"values":{"x":""}}'"#.to_owned(),
        ),
        (
            "extra-field",
            format!(
                r#"echo '{{"protocolVersion":1,"values":{{"x":"{VALUE}"}},"debug":"{VALUE}"}}'"#
            ),
        ),
        ("array", format!(r#"echo '["{VALUE}"]'"#)),
        ("nothing", "true".to_owned()),
        (
            "error-reported",
            r#"echo '{"protocolVersion":1,"values":{},"errors":{"x":{"message":"vault locked"}}}'"#
                .to_owned(),
        ),
        (
            "exit-1",
            format!(r#"echo '{{"protocolVersion":1,"values":{{"x":"{VALUE}"}}}}'; exit 1"#),
        ),
        (
            "huge",
            format!("head -c {} /dev/zero | tr '\\0' a", MAX_HELPER_OUTPUT + 10),
        ),
    ];
    let m = mgr();
    let runner = ProcessRunner;
    let r = SecretRefResolver::new(&m).with_runner(&runner);
    for (name, body) in answers {
        let helper = script(
            d.path(),
            name,
            &format!("#!/bin/sh\ncat >/dev/null\n{body}\n"),
        );
        let e = r
            .resolve(&exec_ref(&helper, "x"), "/cfg/field")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/cfg/field"), "{name}: {msg}");
        assert!(!msg.contains(VALUE), "{name}: error leaks the value: {msg}");
        if name == "error-reported" {
            assert!(msg.contains("vault locked"), "{msg}");
        }
        if name == "exit-1" || name == "huge" {
            assert!(matches!(e, SecretsError::Helper { .. }), "{name}: {msg}");
        }
    }
}

#[test]
fn a_hanging_helper_is_killed_at_the_deadline() {
    let d = tempfile::tempdir().unwrap();
    let pidfile = d.path().join("pid");
    let helper = script(
        d.path(),
        "hang",
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            pidfile.display()
        ),
    );
    let m = mgr();
    let runner = ProcessRunner;
    let r = SecretRefResolver::new(&m)
        .with_runner(&runner)
        .with_exec_timeout(Duration::from_millis(300));
    let e = r.resolve(&exec_ref(&helper, "x"), "/t").unwrap_err();
    assert!(
        matches!(
            e,
            SecretsError::Helper {
                source: HelperError::Timeout(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("killed"), "{e}");
    let pid = fs::read_to_string(&pidfile).unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    assert!(
        !proc_dir.exists(),
        "the helper still runs after the deadline"
    );
}

#[test]
fn exec_provider_must_be_an_absolute_path_and_no_shell_is_involved() {
    let d = tempfile::tempdir().unwrap();
    let marker = d.path().join("pwned");
    let m = mgr();
    let runner = ProcessRunner;
    let r = SecretRefResolver::new(&m).with_runner(&runner);
    for provider in ["helper", "./helper", "sh -c id"] {
        let e = r
            .resolve(&exec_ref(provider, "x"), "/a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute path"), "{e}");
    }
    let hostile = format!("/bin/echo; touch {}", marker.display());
    assert!(r.resolve(&exec_ref(&hostile, "x"), "/a").is_err());
    assert!(!marker.exists(), "a shell interpreted the provider");
}

// ------------------------------------------------------------------------------------------
// file source

fn file_ref(id: &str) -> SecretRef {
    SecretRef {
        source: SecretSource::File,
        provider: "default".into(),
        id: id.to_owned(),
    }
}

#[test]
fn file_source_reads_trimmed_text_and_json_pointers() {
    let d = tempfile::tempdir().unwrap();
    let m = mgr();
    let r = SecretRefResolver::new(&m);
    let plain = d.path().join("token.txt");
    fs::write(&plain, "  tok-from-file\n").unwrap();
    let v = r.resolve(&file_ref(plain.to_str().unwrap()), "/a").unwrap();
    assert_eq!(v.expose_secret(), "tok-from-file");

    let j = d.path().join("creds.json");
    fs::write(
        &j,
        r#"{"openai":{"api/key":"sk-json","n":5,"list":["first"]},"a~b":"tilde"}"#,
    )
    .unwrap();
    let p = j.to_str().unwrap();
    let get = |ptr: &str| r.resolve(&file_ref(&format!("{p}#{ptr}")), "/a");
    assert_eq!(get("/openai/api~1key").unwrap().expose_secret(), "sk-json");
    assert_eq!(get("/a~0b").unwrap().expose_secret(), "tilde");
    assert_eq!(get("/openai/list/0").unwrap().expose_secret(), "first");
    for bad in [
        "/openai/n",
        "/openai",
        "/missing",
        "",
        "openai",
        "/openai/list/9",
    ] {
        let e = get(bad).unwrap_err().to_string();
        assert!(!e.contains("sk-json"), "{e}");
    }
    // The whole config path works too.
    let rc = r
        .resolve_config(&json!({"k": {"source": "file", "id": format!("{p}#/openai/api~1key")}}))
        .unwrap();
    assert_eq!(rc.value()["k"], "sk-json");
}

#[test]
fn file_source_refuses_hostile_paths() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    fs::create_dir(&home).unwrap();
    let key = home.join("master.key");
    fs::write(&key, "k".repeat(64)).unwrap();
    let m = mgr();
    let r = SecretRefResolver::new(&m).restrict_comis_home(&home);
    let ok = d.path().join("ok.txt");
    fs::write(&ok, "fine-value").unwrap();

    let link_proc = d.path().join("environ");
    std::os::unix::fs::symlink("/proc/self/environ", &link_proc).unwrap();
    let link_key = d.path().join("key-link");
    std::os::unix::fs::symlink(&key, &link_key).unwrap();
    let link_ok = d.path().join("ok-link");
    std::os::unix::fs::symlink(&ok, &link_ok).unwrap();
    let big = d.path().join("big");
    fs::write(&big, vec![b'a'; 1024 * 1024 + 1]).unwrap();
    let empty = d.path().join("empty");
    fs::write(&empty, "  \n").unwrap();
    let binary = d.path().join("bin");
    fs::write(&binary, b"\xff\xfe\x00").unwrap();
    let fifo = d.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let dir_in_proc = d.path().join("proc-dir");
    std::os::unix::fs::symlink("/proc/self", &dir_in_proc).unwrap();

    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let hostile = [
        "relative/path".to_owned(),
        format!("{}/../ok.txt", s(&home)),
        "/proc/self/environ".to_owned(),
        "/sys/kernel/notes".to_owned(),
        "/dev/zero".to_owned(),
        s(&link_proc),
        s(&key),
        s(&link_key),
        format!("{}/environ", s(&dir_in_proc)),
        s(&big),
        s(&empty),
        s(&binary),
        s(&fifo),
        s(d.path()),
        s(&d.path().join("missing")),
    ];
    for id in hostile {
        let e = r.resolve(&file_ref(&id), "/x").unwrap_err();
        assert!(matches!(e, SecretsError::SecretRef { .. }), "{id}: {e}");
        assert!(!e.to_string().contains(&"k".repeat(16)), "{e}");
    }
    // A symlink to an ordinary file is fine.
    assert_eq!(
        r.resolve(&file_ref(&s(&link_ok)), "/x")
            .unwrap()
            .expose_secret(),
        "fine-value"
    );
}

#[test]
fn env_source_and_substitution_use_the_manager() {
    let m = mgr();
    let r = SecretRefResolver::new(&m);
    let rc = r
        .resolve_config(&json!({"a": {"source": "env", "id": "API"}, "b": "x-${API}-y"}))
        .unwrap();
    assert_eq!(rc.value()["a"], "from-manager");
    assert_eq!(rc.value()["b"], "x-from-manager-y");
    let e = r
        .resolve_config(&json!({"c": "${NOT_SET}"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOT_SET") && e.contains("/c"), "{e}");
}
