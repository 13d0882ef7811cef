//! `comis fetch` end to end: the real binary against a real HTTP server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_comis");

/// Serves `responses` (raw HTTP), one per connection, then stops. Each response must say
/// `connection: close`: the server drops the socket after it, and a client that kept it alive
/// would see a reset.
fn server(responses: Vec<String>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for resp in responses {
            let Ok((mut s, _)) = l.accept() else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

fn fetch(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .arg("fetch")
        .args(args)
        .env_clear()
        .env("COMIS_HOME", home.path())
        .output()
        .unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{o:?}"))
}

#[test]
fn blocked_urls_exit_1_with_the_finding() {
    for (url, finding) in [
        ("http://169.254.169.254/latest/meta-data/", "cloud_metadata"),
        ("http://[::ffff:7f00:1]:4766/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://metadata.google.internal/", "blocked_hostname"),
        ("file:///etc/passwd", "scheme_not_allowed"),
        ("http://user@8.8.8.8/", "userinfo"),
        ("not a url", "invalid_url"),
    ] {
        let o = fetch(&[url]);
        assert_eq!(o.status.code(), Some(1), "{url}: {o:?}");
        let v = json(&o);
        assert_eq!(v["blocked"], true);
        assert_eq!(v["finding"], finding, "{url}");
    }
}

#[test]
fn an_excepted_local_server_is_fetched_and_redirects_are_reported() {
    let port = server(vec![
        "HTTP/1.1 302 Found\r\nlocation: /final\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .into(),
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello".into(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("body");
    let url = format!("http://127.0.0.1:{port}/start");
    let o = fetch(&[
        &url,
        "--allow-host",
        "127.0.0.1",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v = json(&o);
    assert_eq!(v["status"], 200);
    assert_eq!(v["bytes"], 5);
    assert_eq!(v["url"], format!("http://127.0.0.1:{port}/final"));
    assert_eq!(v["redirects"][0], url);
    assert_eq!(std::fs::read(&out).unwrap(), b"hello");
    // Without the exception the same server is refused.
    assert_eq!(fetch(&[&url]).status.code(), Some(1));
}

#[test]
fn a_redirect_to_metadata_is_blocked() {
    let port = server(vec![
        "HTTP/1.1 301 Moved\r\nlocation: http://[::ffff:169.254.169.254]/\r\ncontent-length: 0\r\n\r\n"
            .into(),
    ]);
    let o = fetch(&[
        &format!("http://127.0.0.1:{port}/"),
        "--allow-host",
        "127.0.0.1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(json(&o)["finding"], "cloud_metadata");
}

#[test]
fn too_large_and_bad_options_exit_2() {
    let port = server(vec![format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{}",
        "x".repeat(100)
    )]);
    let url = format!("http://127.0.0.1:{port}/");
    let o = fetch(&[&url, "--allow-host", "127.0.0.1", "--max-bytes", "10"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("larger than 10 bytes"));
    let o = fetch(&["http://x.example/", "--allow-host", "http://bad"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("allowHosts"));
    let o = fetch(&["http://x.example/", "--timeout", "0"]);
    assert_eq!(o.status.code(), Some(2));
}
