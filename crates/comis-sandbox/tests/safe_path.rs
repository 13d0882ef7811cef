//! safe_path on real directory trees: traversal in every spelling, symlink escapes (also
//! swapped in during use), hostile and oversized input, and the invariant that an accepted
//! path is always inside the root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use comis_sandbox::{OpenMode, PathRejection, SandboxError, check_path, open_beneath, safe_path};
use proptest::prelude::*;

struct Tree {
    _outer: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

/// root/{a/b/file.txt, dir, in-link -> a/b, abs-in -> <root>/a, out-link -> ../outside,
/// abs-out -> /etc, loop1 <-> loop2, dangling -> nothing}, and outside/secret.txt beside it.
fn tree() -> Tree {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let outside = outer.path().join("outside");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("a/b/file.txt"), "inside").unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    symlink("a/b", root.join("in-link")).unwrap();
    symlink(root.join("a"), root.join("abs-in")).unwrap();
    symlink("../outside", root.join("out-link")).unwrap();
    symlink("/etc", root.join("abs-out")).unwrap();
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    symlink("nowhere/x", root.join("dangling")).unwrap();
    symlink("a/../../outside/secret.txt", root.join("sneaky")).unwrap();
    // A sibling whose name extends the root's: the classic prefix attack.
    std::fs::create_dir_all(outer.path().join("root-evil")).unwrap();
    let root = std::fs::canonicalize(root).unwrap();
    Tree {
        _outer: outer,
        root,
        outside,
    }
}

fn reason(root: &Path, p: &str) -> PathRejection {
    match safe_path(root, p) {
        Err(SandboxError::PathRejected { reason, .. }) => reason,
        other => panic!("{p:?} was not rejected: {other:?}"),
    }
}

#[test]
fn accepts_ordinary_paths_and_returns_them_canonical() {
    let t = tree();
    let r = &t.root;
    let cases = [
        ("", r.clone()),
        (".", r.clone()),
        ("a/b/file.txt", r.join("a/b/file.txt")),
        ("./a//b/./file.txt", r.join("a/b/file.txt")),
        ("a/../a/b", r.join("a/b")),
        ("in-link/file.txt", r.join("a/b/file.txt")),
        ("abs-in/b", r.join("a/b")),
        ("new-file.txt", r.join("new-file.txt")),
        ("dir/new/deeper.txt", r.join("dir/new/deeper.txt")),
        ("dangling", r.join("nowhere/x")),
        ("50%off.txt", r.join("50%off.txt")),
        ("a..b/.x.", r.join("a..b/.x.")),
        ("a b/ünïcødé.txt", r.join("a b/ünïcødé.txt")),
    ];
    for (input, want) in cases {
        assert_eq!(safe_path(r, input).unwrap(), want, "{input:?}");
    }
    let abs = format!("{}/a/b", r.display());
    assert_eq!(safe_path(r, &abs).unwrap(), r.join("a/b"));
}

#[test]
fn rejects_every_spelling_of_traversal() {
    let t = tree();
    let r = &t.root;
    use PathRejection::*;
    let prefix_attack = format!("{}-evil/x", r.display());
    let cases: Vec<(&str, PathRejection)> = vec![
        ("../outside/secret.txt", ParentEscape),
        ("a/../../outside", ParentEscape),
        ("a/b/../../../outside", ParentEscape),
        ("/etc/passwd", AbsoluteOutsideRoot),
        (&prefix_attack, AbsoluteOutsideRoot),
        ("%2e%2e/outside", EncodedTraversal),
        ("..%2foutside", EncodedTraversal),
        ("%252e%252e%252foutside", EncodedTraversal),
        ("%25252e%25252e/x", EncodedTraversal),
        ("%2fetc%2fpasswd", EncodedTraversal),
        ("%u002e%u002e/outside", EncodedTraversal),
        ("%c0%ae%c0%ae/outside", InvalidEncoding),
        ("..\\..\\outside", BackslashTraversal),
        ("\\etc\\passwd", BackslashTraversal),
        ("C:\\Windows\\win.ini", BackslashTraversal),
        ("\u{FF0E}\u{FF0E}/outside", UnicodeTraversal),
        ("..\u{2215}outside", UnicodeTraversal),
        ("...//etc/passwd", DotDotVariant),
        ("..;/..;/x", DotDotVariant),
        ("c:WINDOWS/system32", BackslashTraversal),
        ("a\0b", NulByte),
        ("file.txt%00.png", NulByte),
        ("a\nb", ControlChar),
        ("a\u{1b}[31m", ControlChar),
        ("out-link/secret.txt", SymlinkEscape),
        ("out-link", SymlinkEscape),
        ("abs-out/passwd", SymlinkEscape),
        ("sneaky", SymlinkEscape),
        ("loop1", SymlinkLoop),
        ("missing/../../x", UnresolvableParent),
        ("a/b/file.txt/x", NotADirectory),
    ];
    for (input, want) in cases {
        let _ = reason(r, input);
        let v = check_path(r, input);
        assert!(!v.allowed && v.path.is_none(), "{input:?}");
        assert!(
            v.findings.iter().any(|f| f.name == want.name()),
            "{input:?}: {:?}",
            v.findings
        );
    }
}

#[test]
fn oversized_and_malformed_input() {
    let t = tree();
    assert_eq!(reason(&t.root, &"a/".repeat(3000)), PathRejection::TooLong);
    assert_eq!(reason(&t.root, &"x".repeat(256)), PathRejection::TooLong);
    assert!(safe_path(&t.root, &"x".repeat(255)).is_ok());
    let deep = "d/".repeat(500);
    assert!(safe_path(&t.root, &deep).is_ok());
    // A root that does not exist or is a file.
    assert_eq!(
        reason(Path::new("/nonexistent-root"), "a"),
        PathRejection::BadRoot
    );
    assert_eq!(
        reason(&t.root.join("a/b/file.txt"), "a"),
        PathRejection::BadRoot
    );
    // Errors never echo control characters back.
    let err = safe_path(&t.root, "../\n\u{1b}x").unwrap_err().to_string();
    assert!(!err.contains('\n') && !err.contains('\u{1b}'), "{err}");
}

#[test]
fn verdict_serializes_in_the_guard_shape() {
    let t = tree();
    let v = serde_json::to_value(check_path(&t.root, "../x")).unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["findings"][0]["category"], "path_traversal");
    assert_eq!(v["findings"][0]["severity"], "critical");
    let v = serde_json::to_value(check_path(&t.root, "a/b")).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["path"], t.root.join("a/b").display().to_string());
}

#[test]
fn open_beneath_reads_writes_and_refuses() {
    let t = tree();
    let mut s = String::new();
    open_beneath(&t.root, "in-link/file.txt", OpenMode::Read)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "inside");
    std::io::Write::write_all(
        &mut open_beneath(&t.root, "dir/out.txt", OpenMode::WriteTruncate).unwrap(),
        b"ok",
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(t.root.join("dir/out.txt")).unwrap(),
        "ok"
    );
    assert!(open_beneath(&t.root, "out-link/secret.txt", OpenMode::Read).is_err());
    assert!(open_beneath(&t.root, "missing.txt", OpenMode::Read).is_err());
    assert!(open_beneath(&t.root, "no/such/dir/x", OpenMode::WriteTruncate).is_err());
    assert!(open_beneath(&t.root, "", OpenMode::Read).is_err());
}

/// A symlink swapped in and out while files are opened through it: no open may ever read
/// the outside file.
#[test]
fn symlink_swapped_during_use_never_escapes() {
    let t = tree();
    let root = t.root.clone();
    std::fs::create_dir_all(root.join("swap-real")).unwrap();
    std::fs::write(root.join("swap-real/secret.txt"), "inside").unwrap();
    let stop = AtomicBool::new(false);
    let escaped = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let link = root.join("swap");
            let tmp = root.join("swap.tmp");
            while !stop.load(Ordering::Relaxed) {
                for target in [root.join("swap-real"), t.outside.clone()] {
                    let _ = std::fs::remove_file(&tmp);
                    symlink(&target, &tmp).unwrap();
                    std::fs::rename(&tmp, &link).unwrap();
                }
            }
        });
        for _ in 0..3000 {
            if let Ok(mut f) = open_beneath(&root, "swap/secret.txt", OpenMode::Read) {
                let mut s = String::new();
                let _ = f.read_to_string(&mut s);
                if s.contains("SECRET") {
                    escaped.store(true, Ordering::Relaxed);
                }
            }
            if let Ok(p) = safe_path(&root, "swap/secret.txt") {
                assert!(p.starts_with(&root), "{p:?}");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        !escaped.load(Ordering::Relaxed),
        "read the outside file through a swapped link"
    );
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just("in-link".to_owned()),
        Just("abs-in".to_owned()),
        Just("out-link".to_owned()),
        Just("abs-out".to_owned()),
        Just("sneaky".to_owned()),
        Just("dangling".to_owned()),
        Just("%2e%2e".to_owned()),
        Just("..\\".to_owned()),
        "[a-z%./\\\\]{1,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Whatever the input, an accepted path is inside the canonical root.
    #[test]
    fn accepted_paths_stay_inside(parts in prop::collection::vec(component(), 0..8), abs in any::<bool>()) {
        let t = tree();
        let joined = parts.join("/");
        let input = if abs { format!("{}/{joined}", t.root.display()) } else { joined };
        if let Ok(p) = safe_path(&t.root, &input) {
            prop_assert!(p.starts_with(&t.root), "{input:?} -> {p:?}");
            prop_assert!(!p.components().any(|c| c.as_os_str() == ".."), "{p:?}");
        }
    }

    /// Arbitrary text never panics and a refusal always carries a finding.
    #[test]
    fn arbitrary_text_gets_a_verdict(input in any::<String>()) {
        let t = tree();
        let v = check_path(&t.root, &input);
        prop_assert_eq!(v.allowed, v.findings.is_empty());
        if let Some(p) = v.path {
            prop_assert!(Path::new(&p).starts_with(&t.root));
        }
    }
}
