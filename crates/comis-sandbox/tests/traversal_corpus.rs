//! safe_path measured on the public traversal corpus (`shared/corpora/traversal/`):
//! `patt_*` lines should be refused, `benign_*` lines accepted, both against an empty root and
//! against a root where the benign paths exist. Prints a Markdown table for BENCHMARKS.md.
//!
//! Run: `cargo test -p comis-sandbox --test traversal_corpus -- --ignored --nocapture`
//! (`COMIS_CORPORA=/path/to/corpora` if the corpora are not at `../shared/corpora`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};

use comis_sandbox::check_path;

fn corpora() -> PathBuf {
    if let Some(p) = std::env::var_os("COMIS_CORPORA") {
        return PathBuf::from(p);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [
        repo.join("../shared/corpora"),
        PathBuf::from("/work/shared/corpora"),
    ]
    .into_iter()
    .find(|p| p.is_dir())
    .expect("corpora not found: set COMIS_CORPORA")
}

fn lines(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "measurement over the shared corpora; run explicitly"]
fn traversal_corpus_rates() {
    let dir = corpora().join("traversal");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let empty_root = tempfile::tempdir().unwrap();
    let full_root = tempfile::tempdir().unwrap();
    for f in files.iter().filter(|f| name(f).starts_with("benign_")) {
        for l in lines(f) {
            let p = full_root.path().join(l.trim_start_matches('/'));
            if name(f).contains("dirnames") {
                let _ = std::fs::create_dir_all(&p);
            } else if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
                let _ = std::fs::write(&p, "x");
            }
        }
    }
    println!("| corpus file | kind | items | root | refused | rate |");
    println!("|---|---|---:|---|---:|---:|");
    for f in &files {
        let items = lines(f);
        let attack = name(f).starts_with("patt_");
        let roots: Vec<(&str, &Path)> = if attack {
            vec![("empty", empty_root.path())]
        } else {
            vec![
                ("empty", empty_root.path()),
                ("with the paths", full_root.path()),
            ]
        };
        for (label, root) in roots {
            let refused: Vec<&String> = items
                .iter()
                .filter(|i| !check_path(root, i).allowed)
                .collect();
            let rate = 100.0 * refused.len() as f64 / items.len() as f64;
            let what = if attack { "blocked" } else { "false positives" };
            println!(
                "| {} | {} | {} | {label} | {} | {rate:.1}% {what} |",
                name(f),
                if attack { "attack" } else { "benign" },
                items.len(),
                refused.len()
            );
            let shown: Vec<&String> = if attack {
                items
                    .iter()
                    .filter(|i| check_path(root, i).allowed)
                    .take(8)
                    .collect()
            } else {
                refused.into_iter().take(8).collect()
            };
            if !shown.is_empty() {
                eprintln!("{} ({label}) examples the other way: {shown:?}", name(f));
            }
        }
    }
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}
