//! The file tools against a real workspace: legitimate work passes, every escape is refused by
//! `safe_path`, hostile arguments are refused before anything touches the disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tool_support;

use comis_agent::tool::ToolError;
use serde_json::json;
use tool_support::*;

#[tokio::test]
async fn write_read_edit_list_delete_round_trip() {
    let f = Fixture::new();
    let w = f
        .call(
            "file.write",
            json!({"path": "notes.txt", "content": "alpha\nbeta\n"}),
        )
        .await
        .unwrap();
    assert!(!w.external);
    let r = f
        .call("file.read", json!({"path": "notes.txt"}))
        .await
        .unwrap();
    assert_eq!(r.text, "alpha\nbeta\n");
    assert!(r.external, "file contents are external");
    f.call(
        "file.edit",
        json!({"path": "notes.txt", "oldText": "beta", "newText": "gamma"}),
    )
    .await
    .unwrap();
    f.call(
        "file.write",
        json!({"path": "notes.txt", "content": "delta\n", "append": true}),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(f.ws.join("notes.txt")).unwrap(),
        "alpha\ngamma\ndelta\n"
    );
    std::fs::create_dir(f.ws.join("sub")).unwrap();
    std::fs::write(f.ws.join("sub/x.rs"), "fn main() {}").unwrap();
    let l = f
        .call("file.list", json!({"recursive": true}))
        .await
        .unwrap();
    assert_eq!(l.text, "notes.txt\t18\nsub/\nsub/x.rs\t12");
    f.call("file.delete", json!({"path": "notes.txt"}))
        .await
        .unwrap();
    assert!(!f.ws.join("notes.txt").exists());
    // An empty directory can go; a full one cannot.
    assert!(matches!(
        f.call("file.delete", json!({"path": "sub"})).await,
        Err(ToolError::Failed(_))
    ));
    f.call("file.delete", json!({"path": "sub/x.rs"}))
        .await
        .unwrap();
    f.call("file.delete", json!({"path": "sub"})).await.unwrap();
    assert!(!f.ws.join("sub").exists());
}

#[tokio::test]
async fn new_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    f.call("file.write", json!({"path": "k", "content": "x"}))
        .await
        .unwrap();
    let mode = std::fs::metadata(f.ws.join("k"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn large_files_are_paged() {
    let f = Fixture::new();
    let line = "0123456789abcdefghijklmnopqrstuvwxyz\n";
    std::fs::write(f.ws.join("big.txt"), line.repeat(3000)).unwrap(); // 111,000 bytes
    let r = f
        .call("file.read", json!({"path": "big.txt"}))
        .await
        .unwrap();
    assert!(r.text.starts_with(line));
    assert!(
        r.text.ends_with(
            "[file.read: bytes 0..50000 of 111000; call again with offset 50000 for more]"
        ),
        "{}",
        &r.text[r.text.len() - 120..]
    );
    let r = f
        .call("file.read", json!({"path": "big.txt", "offset": 110000}))
        .await
        .unwrap();
    assert!(
        r.text
            .ends_with("[file.read: bytes 110000..111000 of 111000]")
    );
    // A page that starts inside a multi-byte character skips to the next whole one.
    std::fs::write(f.ws.join("u.txt"), "ééé").unwrap();
    let r = f
        .call(
            "file.read",
            json!({"path": "u.txt", "offset": 1, "maxChars": 1}),
        )
        .await
        .unwrap();
    assert!(
        r.text.starts_with("é\n[file.read: bytes 1..4 of 6"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn edit_needs_exactly_one_match() {
    let f = Fixture::new();
    std::fs::write(f.ws.join("a.txt"), "x = 1\nx = 1\n").unwrap();
    let r = f
        .call(
            "file.edit",
            json!({"path": "a.txt", "oldText": "x = 1", "newText": "y"}),
        )
        .await;
    assert_invalid(&r);
    let r = f
        .call(
            "file.edit",
            json!({"path": "a.txt", "oldText": "z", "newText": "y"}),
        )
        .await;
    assert!(matches!(r, Err(ToolError::Failed(_))), "{r:?}");
    let r = f
        .call(
            "file.edit",
            json!({"path": "a.txt", "oldText": "", "newText": "y"}),
        )
        .await;
    assert_invalid(&r);
    assert_eq!(
        std::fs::read_to_string(f.ws.join("a.txt")).unwrap(),
        "x = 1\nx = 1\n"
    );
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused_by_safe_path() {
    let f = Fixture::new();
    let secret = f.dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET").unwrap();
    std::os::unix::fs::symlink(&secret, f.ws.join("link")).unwrap();
    std::os::unix::fs::symlink(f.dir.path(), f.ws.join("up")).unwrap();
    let escapes = [
        "../secret.txt",
        "a/../../secret.txt",
        "/etc/passwd",
        secret.to_str().unwrap(),
        "link",
        "up/secret.txt",
        "%2e%2e/secret.txt",
        "..\\secret.txt",
    ];
    for p in escapes {
        for (action, args) in [
            ("file.read", json!({"path": p})),
            ("file.write", json!({"path": p, "content": "pwned"})),
            (
                "file.edit",
                json!({"path": p, "oldText": "TOP", "newText": "X"}),
            ),
            ("file.delete", json!({"path": p})),
            ("file.list", json!({"path": p})),
        ] {
            let r = f.call(action, args).await;
            assert_refused(&r, "safe_path");
        }
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "TOP-SECRET");
    assert!(std::fs::read_to_string("/etc/passwd").is_ok());
}

#[tokio::test]
async fn the_workspace_root_and_special_files_are_not_targets() {
    let f = Fixture::new();
    for p in [".", "", "/", "sub/.."] {
        let r = f.call("file.delete", json!({"path": p})).await;
        assert!(r.is_err(), "{p}: {r:?}");
    }
    assert!(f.ws.is_dir());
    // A FIFO would block a reader forever: refused before it is opened.
    let fifo = f.ws.join("pipe");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let r = f.call("file.read", json!({"path": "pipe"})).await;
    assert!(
        matches!(r, Err(ToolError::Failed(ref m)) if m.contains("regular")),
        "{r:?}"
    );
    let r = f
        .call("file.write", json!({"path": "pipe", "content": "x"}))
        .await;
    assert!(
        matches!(r, Err(ToolError::Failed(ref m)) if m.contains("regular")),
        "{r:?}"
    );
    // Binary files are not text.
    std::fs::write(f.ws.join("bin"), [0u8, 1, 2, 0xff]).unwrap();
    assert!(f.call("file.read", json!({"path": "bin"})).await.is_err());
    // A missing parent directory is not created.
    let r = f
        .call(
            "file.write",
            json!({"path": "no/such/dir.txt", "content": "x"}),
        )
        .await;
    assert!(matches!(r, Err(ToolError::Failed(_))), "{r:?}");
}

#[tokio::test]
async fn deleting_a_symlink_removes_the_link_not_its_target() {
    let f = Fixture::new();
    std::fs::write(f.ws.join("target.txt"), "keep").unwrap();
    std::os::unix::fs::symlink("target.txt", f.ws.join("alias")).unwrap();
    f.call("file.delete", json!({"path": "alias"}))
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(f.ws.join("alias")).is_err());
    assert_eq!(
        std::fs::read_to_string(f.ws.join("target.txt")).unwrap(),
        "keep"
    );
}

#[tokio::test]
async fn listing_escapes_control_characters_in_names() {
    let f = Fixture::new();
    std::fs::write(f.ws.join("evil\nname.txt\t999"), "").unwrap();
    let l = f.call("file.list", json!({})).await.unwrap();
    assert_eq!(l.text.lines().count(), 1, "{}", l.text);
    assert!(l.external);
}

#[tokio::test]
async fn hostile_arguments_are_refused() {
    let f = Fixture::new();
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    let long_path = "a/".repeat(3000);
    let cases = [
        ("file.read", json!({})),
        ("file.read", json!({"path": 7})),
        ("file.read", json!({"path": "a", "extra": true})),
        ("file.read", json!({"path": "a\u{0}b"})),
        ("file.read", json!({"path": long_path})),
        ("file.read", json!({"path": "a", "maxChars": 0})),
        ("file.read", json!({"path": "a", "maxChars": 1_000_000})),
        ("file.read", json!({"path": "a", "offset": -1})),
        ("file.read", json!("a")),
        ("file.read", json!(["a"])),
        ("file.write", json!({"path": "a"})),
        ("file.write", json!({"path": "a", "content": big})),
        ("file.write", json!({"path": "a", "content": "x\u{0}y"})),
        (
            "file.write",
            json!({"path": "a", "content": "x", "append": "yes"}),
        ),
        (
            "file.write",
            json!({"path": "a", "content": "x", "mode": 511}),
        ),
        ("file.edit", json!({"path": "a", "oldText": "x"})),
        (
            "file.edit",
            json!({"path": "a", "old_text": "x", "newText": "y"}),
        ),
        ("file.list", json!({"recursive": 1})),
        ("file.list", json!({"maxEntries": 100_000})),
        ("file.list", json!({"followSymlinks": true})),
        ("file.delete", json!({"path": ["a"]})),
        ("file.delete", json!({"path": "a", "recursive": true})),
        ("file.delete", json!({"path": "  "})),
    ];
    for (action, args) in cases {
        let shown = format!("{action} {args:.80}");
        let r = f.call(action, args).await;
        assert_invalid(&r);
        let _ = shown;
    }
    assert_eq!(
        std::fs::read_dir(&f.ws).unwrap().count(),
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn symlinks_that_stay_inside_are_followed_for_reading() {
    let f = Fixture::new();
    std::fs::create_dir(f.ws.join("real")).unwrap();
    std::fs::write(f.ws.join("real/a.txt"), "inside").unwrap();
    std::os::unix::fs::symlink("real", f.ws.join("dirlink")).unwrap();
    std::os::unix::fs::symlink("real/a.txt", f.ws.join("filelink")).unwrap();
    let r = f
        .call("file.read", json!({"path": "dirlink/a.txt"}))
        .await
        .unwrap();
    assert_eq!(r.text, "inside");
    let l = f
        .call("file.list", json!({"path": "dirlink"}))
        .await
        .unwrap();
    assert_eq!(l.text, "a.txt\t6");
    // A link that stays inside resolves to its target, which is what gets written.
    f.call("file.write", json!({"path": "filelink", "content": "x"}))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(f.ws.join("real/a.txt")).unwrap(),
        "x"
    );
    assert!(
        std::fs::symlink_metadata(f.ws.join("filelink"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
