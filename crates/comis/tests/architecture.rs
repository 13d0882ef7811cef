//! Architecture tests: the security coding rules of the project, checked over the sources of
//! every workspace crate so that a regression fails the build instead of relying on review.
//!
//! Rules (see DESIGN.md):
//! - every crate forbids `unsafe` (only `comis-sandbox` may use it, with `// SAFETY:` notes);
//! - every crate inherits the workspace lints (no `unwrap`/`expect`/`panic!` outside tests);
//! - `comis-guard` is pure: no file, network, process, environment or async use;
//! - processes are spawned only by `comis-sandbox`;
//! - the environment is read only by configuration and secrets code;
//! - regexes come from the linear-time `regex` crate only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn crates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(workspace_root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    out.sort();
    assert!(
        out.len() >= 2,
        "expected the workspace crates under crates/"
    );
    out
}

fn crate_name(dir: &Path) -> String {
    dir.file_name().unwrap().to_string_lossy().into_owned()
}

/// Rust sources of a crate that ship in the product (src/), as (path, text).
fn product_sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("src")];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                out.push((p, text));
            }
        }
    }
    out
}

/// The product part of a source file: nothing of a test-only module file (`tests.rs`, declared
/// `#[cfg(test)] mod tests;`), and only what precedes the first `#[cfg(test)]` elsewhere.
fn non_test_part<'a>(path: &Path, text: &'a str) -> &'a str {
    if path.file_name().is_some_and(|n| n == "tests.rs") {
        return "";
    }
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_crate_forbids_unsafe_except_the_sandbox() {
    for dir in crates() {
        let name = crate_name(&dir);
        if name == "comis-sandbox" {
            continue;
        }
        for root in ["src/lib.rs", "src/main.rs"] {
            let path = dir.join(root);
            if path.is_file() {
                let text = fs::read_to_string(&path).unwrap();
                assert!(
                    text.contains("#![forbid(unsafe_code)]"),
                    "{} must declare #![forbid(unsafe_code)]",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_crate_inherits_workspace_lints() {
    for dir in crates() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} must inherit the workspace lints",
            dir.display()
        );
    }
    let root = fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    for lint in [
        // `deny` (not `forbid`) so comis-sandbox alone can allow its pre_exec block; every
        // other crate forbids unsafe at its root (checked above).
        "unsafe_code = \"deny\"",
        "unwrap_used = \"deny\"",
        "expect_used = \"deny\"",
        "panic = \"deny\"",
    ] {
        assert!(root.contains(lint), "workspace lints must keep {lint}");
    }
}

#[test]
fn sandbox_unsafe_is_rare_and_justified() {
    let dir = workspace_root().join("crates/comis-sandbox");
    let mut blocks = 0;
    for (path, text) in product_sources(&dir) {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if !(code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe impl"))
            {
                continue;
            }
            blocks += 1;
            let before = &lines[i.saturating_sub(8)..i];
            assert!(
                before
                    .iter()
                    .any(|l| l.trim_start().starts_with("// SAFETY:")),
                "{}:{} has `unsafe` without a `// SAFETY:` comment just above",
                path.display(),
                i + 1
            );
        }
    }
    assert!(
        blocks <= 2,
        "comis-sandbox has {blocks} unsafe blocks: keep it minimal"
    );
}

#[test]
fn guard_crate_is_pure() {
    let dir = workspace_root().join("crates/comis-guard");
    let banned = [
        "std::fs",
        "std::net",
        "std::process",
        "std::env",
        "tokio",
        "File::open",
        "TcpStream",
        "Command::new",
        "std::io::stdin",
        "thread::spawn",
    ];
    for (path, text) in product_sources(&dir) {
        let code = non_test_part(&path, &text);
        for word in banned {
            assert!(
                !code.contains(word),
                "{} uses `{word}`: comis-guard must stay free of I/O",
                path.display()
            );
        }
    }
}

#[test]
fn only_the_sandbox_spawns_processes() {
    for dir in crates() {
        if crate_name(&dir) == "comis-sandbox" {
            continue;
        }
        for (path, text) in product_sources(&dir) {
            let code = non_test_part(&path, &text);
            assert!(
                !code.contains("Command::new") && !code.contains("process::Command"),
                "{} spawns a process: only comis-sandbox may",
                path.display()
            );
        }
    }
}

#[test]
fn environment_is_read_only_by_config_and_secrets() {
    for dir in crates() {
        let name = crate_name(&dir);
        if name == "comis-secrets" {
            continue;
        }
        for (path, text) in product_sources(&dir) {
            let in_config = path.components().any(|c| c.as_os_str() == "config");
            if in_config {
                continue;
            }
            let code = non_test_part(&path, &text);
            for word in ["env::var", "env::vars", "std::env::var_os", "env::set_var"] {
                assert!(
                    !code.contains(word),
                    "{} reads the environment (`{word}`): only config and secrets code may",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn only_linear_time_regex_engines() {
    let lock = fs::read_to_string(workspace_root().join("Cargo.lock")).unwrap();
    for engine in ["fancy-regex", "pcre2", "onig"] {
        assert!(
            !lock.contains(&format!("name = \"{engine}\"")),
            "{engine} is a backtracking regex engine: use the regex crate"
        );
    }
}

/// The dependency names in the product sections (`[dependencies]`, `[build-dependencies]`,
/// target-specific ones) of a crate manifest; dev-dependencies are test code.
fn product_dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_product = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            let header = line.trim_matches(|c| c == '[' || c == ']');
            in_product = header.ends_with("dependencies") && !header.ends_with("dev-dependencies");
            // `[dependencies.reqwest]` style tables name the crate in the header.
            if let Some(name) = header.strip_prefix("dependencies.") {
                out.push(name.trim().to_owned());
            }
            continue;
        }
        if in_product && let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && !key.starts_with('#') {
                out.push(key.split('.').next().unwrap().trim().to_owned());
            }
        }
    }
    out
}

#[test]
fn only_comis_net_has_an_http_client() {
    // Outbound HTTP must pass the SSRF guard, DNS pinning and the redirect checks of
    // comis-net's GuardedClient; a second client in another crate would bypass all of them.
    // (A future HTTP *server* crate such as the gateway depends on axum, not on these.)
    const CLIENTS: [&str; 18] = [
        "reqwest",
        "hyper",
        "hyper-util",
        "hyper-rustls",
        "hyper-tls",
        "h2",
        "ureq",
        "isahc",
        "surf",
        "curl",
        "attohttpc",
        "minreq",
        "http-req",
        "awc",
        "tokio-rustls",
        "tokio-tungstenite",
        "tungstenite",
        "async-tungstenite",
    ];
    let mut checked = 0;
    for dir in crates() {
        let name = crate_name(&dir);
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let deps = product_dependencies(&manifest);
        checked += 1;
        if name == "comis-net" {
            assert!(
                deps.iter().any(|d| d == "reqwest"),
                "comis-net lost its client?"
            );
            continue;
        }
        // The test kit runs local *servers* (hyper) for tests; it never ships (checked below).
        if name == "comis-testkit" {
            assert!(
                manifest.contains("publish = false"),
                "comis-testkit must not be published"
            );
            continue;
        }
        for dep in &deps {
            if server_side_use_allowed(&name, dep, &manifest) {
                continue;
            }
            assert!(
                !CLIENTS.contains(&dep.as_str()),
                "{name} depends on {dep}: outbound HTTP goes through comis-net's GuardedClient"
            );
        }
        if name == "comis-gateway" {
            for (path, text) in product_sources(&dir) {
                let code = non_test_part(&path, &text);
                for client_api in SERVER_CRATE_CLIENT_APIS {
                    assert!(
                        !code.contains(client_api),
                        "{} uses {client_api}: the gateway is a server; outbound HTTP goes \
                         through comis-net",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(checked >= 3);
    // The parser itself: a manifest that does declare a client is caught.
    let probe = "[package]\nname = \"x\"\n[dependencies]\nreqwest.workspace = true\n\
                 [dev-dependencies]\nhyper = \"1\"\n[dependencies.ureq]\nversion = \"2\"\n";
    assert_eq!(product_dependencies(probe), ["reqwest", "ureq"]);
}

#[test]
fn the_test_kit_is_only_ever_a_dev_dependency() {
    for dir in crates() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(
            !product_dependencies(&manifest)
                .iter()
                .any(|d| d == "comis-testkit"),
            "{} depends on comis-testkit outside [dev-dependencies]",
            crate_name(&dir)
        );
    }
}

/// The gateway is an HTTP *server*: it drives hyper's server connection itself (for the
/// connection cap, header-read timeout and per-connection TLS identity) and accepts TLS with
/// tokio-rustls. It may name those crates, with no `client` feature, and its sources may not
/// touch their client halves.
const SERVER_CRATES: &[(&str, &[&str])] =
    &[("comis-gateway", &["hyper", "hyper-util", "tokio-rustls"])];
const SERVER_CRATE_CLIENT_APIS: [&str; 5] = [
    "TlsConnector",
    "hyper::client",
    "hyper_util::client",
    "client::conn",
    "ClientConfig",
];

fn server_side_use_allowed(name: &str, dep: &str, manifest: &str) -> bool {
    let listed = SERVER_CRATES
        .iter()
        .any(|(n, deps)| *n == name && deps.contains(&dep));
    let line = manifest.lines().find(|l| {
        l.trim_start().starts_with(&format!("{dep} "))
            || l.trim_start().starts_with(&format!("{dep}."))
    });
    listed && line.is_some_and(|l| !l.contains("client"))
}

/// `tests.rs` files are exempt from the product rules above, so each must really be test-only:
/// declared `#[cfg(test)] mod tests;` in its parent module.
#[test]
fn test_module_files_are_test_only() {
    for dir in crates() {
        for (path, _) in product_sources(&dir) {
            if path.file_name().is_none_or(|n| n != "tests.rs") {
                continue;
            }
            let module_dir = path.parent().unwrap();
            let parent = module_dir.with_extension("rs");
            let parent = if parent.is_file() {
                parent
            } else {
                module_dir.join("mod.rs")
            };
            let text = fs::read_to_string(&parent).unwrap();
            assert!(
                text.contains("#[cfg(test)]\nmod tests;"),
                "{} must be declared `#[cfg(test)] mod tests;` in {}",
                path.display(),
                parent.display()
            );
        }
    }
}

/// DESIGN.md's dependency arrows: the workspace crates each library may use (arrows point down
/// the crates table only). A crate not listed here is not checked yet.
const ARROWS: &[(&str, &[&str])] = &[
    ("comis-guard", &[]),
    ("comis-secrets", &["comis-guard"]),
    ("comis-sandbox", &["comis-guard"]),
    ("comis-net", &["comis-guard", "comis-secrets"]),
    ("comis-store", &["comis-guard"]),
];

#[test]
fn workspace_dependencies_follow_the_design_arrows() {
    for dir in crates() {
        let name = crate_name(&dir);
        let Some((_, allowed)) = ARROWS.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let deps = manifest
            .split("\n[dependencies]\n")
            .nth(1)
            .map_or("", |rest| rest.split("\n[").next().unwrap_or(""));
        for line in deps.lines() {
            let dep = line.split(['.', ' ', '=']).next().unwrap_or("");
            if dep.starts_with("comis") {
                assert!(
                    allowed.contains(&dep),
                    "{name} depends on {dep}: DESIGN.md allows only {allowed:?}"
                );
            }
        }
    }
}

/// The panic lints are denied workspace-wide; product code may not switch them off locally.
#[test]
fn product_code_does_not_allow_panics() {
    for dir in crates() {
        for (path, text) in product_sources(&dir) {
            let code = non_test_part(&path, &text);
            for lint in [
                "clippy::unwrap_used",
                "clippy::expect_used",
                "clippy::panic",
            ] {
                let allowed = code.match_indices("allow(").any(|(i, _)| {
                    code[i..]
                        .split(')')
                        .next()
                        .is_some_and(|args| args.contains(lint))
                });
                assert!(!allowed, "{} allows {lint} outside tests", path.display());
            }
        }
    }
}
