//! The SSRF guard on the public corpora (copies in `tests/fixtures/ssrf/`, see its README).
//!
//! Checks run with `resolve = false` (CI has no DNS): literal hosts are judged, names count as
//! unresolved and are refused. The table separates "refused on the literal" (no DNS needed:
//! scheme, userinfo, an address, a local name) from "refused as an unresolved name", so the
//! numbers say what the guard catches by itself. Print the table with
//! `cargo test -p comis-net --test ssrf_corpus -- --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::PathBuf;

use comis_net::{SsrfPolicy, UrlVerdict, check_url};

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ssrf")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

fn lines(name: &str) -> Vec<String> {
    fixture(name)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A bare address or host from the lists, as a URL.
fn as_url(item: &str) -> String {
    if item.contains("://") {
        item.to_owned()
    } else if item.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("http://[{item}]/")
    } else {
        format!("http://{item}")
    }
}

fn verdict(url: &str) -> UrlVerdict {
    check_url(url, &SsrfPolicy::default(), false)
}

fn literal_refusal(v: &UrlVerdict) -> bool {
    !v.allowed && v.findings.iter().all(|f| f.name != "unresolved_host")
}

#[derive(Default)]
struct Tally {
    total: usize,
    literal: usize,
    unresolved: usize,
    allowed: usize,
}

impl Tally {
    fn add(&mut self, v: &UrlVerdict) {
        self.total += 1;
        if v.allowed {
            self.allowed += 1;
        } else if literal_refusal(v) {
            self.literal += 1;
        } else {
            self.unresolved += 1;
        }
    }

    fn row(&self, file: &str, expect: &str) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.total.max(1) as f64;
        format!(
            "| {file} | {expect} | {} | {} ({:.1}%) | {} ({:.1}%) | {} ({:.1}%) |",
            self.total,
            self.literal,
            pct(self.literal),
            self.unresolved,
            pct(self.unresolved),
            self.allowed,
            pct(self.allowed)
        )
    }
}

#[test]
fn private_ip_list_is_blocked_on_the_literal() {
    // NAT64 (64:ff9b::/96) is judged by the IPv4 address it carries: with DNS64 it is how an
    // IPv6-only host reaches public IPv4 sites, so a public embedded address passes (the
    // private-ip list blocks the whole prefix). Every other item is refused.
    let nat64_public = "64:ff9b::16.10.11.1";
    let mut t = Tally::default();
    for ip in lines("private_ip_private.txt") {
        let v = verdict(&as_url(&ip));
        t.add(&v);
        if ip == nat64_public {
            assert!(v.allowed, "{ip}: {v:?}");
        } else {
            assert!(literal_refusal(&v), "{ip}: {v:?}");
        }
    }
    assert_eq!((t.literal, t.allowed), (135, 1));
    println!("{}", t.row("private_ip_private.txt", "block"));
}

#[test]
fn public_ip_list_passes_except_ranges_we_block_by_design() {
    // Allowed: unicast IPv4, and IPv6 global unicast outside special-purpose blocks.
    let allowed = [
        "44.37.112.180",
        "46.192.247.73",
        "71.12.102.112",
        "101.0.26.90",
        "111.211.73.40",
        "156.238.194.84",
        "164.101.185.82",
        "223.231.138.242",
        "2000::",
        "2000::ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db7::",
        "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
        "2001:db9::",
    ];
    // Blocked on purpose, with the finding that says why: multicast (224/4), addresses
    // outside 2000::/3 (not routable on the internet) and the 2001::/23 IETF block.
    let by_design = [
        ("226.84.185.150", "multicast"),
        ("227.202.96.196", "multicast"),
        ("::1fff:0.0.0.0", "not_global_unicast"),
        ("::1fff:10.0.0.0", "not_global_unicast"),
        ("::1fff:0:0.0.0.0", "not_global_unicast"),
        ("::1fff:0:10.0.0.0", "not_global_unicast"),
        ("64:ff9a::0.0.0.0", "not_global_unicast"),
        ("64:ff9a::255.255.255.255", "not_global_unicast"),
        ("99::", "not_global_unicast"),
        ("99::ffff:ffff:ffff:ffff", "not_global_unicast"),
        ("101::", "not_global_unicast"),
        ("101::ffff:ffff:ffff:ffff", "not_global_unicast"),
        ("fb00::", "not_global_unicast"),
        (
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "not_global_unicast",
        ),
        ("fec0::", "site_local"),
        (
            "2001:2:ffff:ffff:ffff:ffff:ffff:ffff",
            "ietf_protocol_assignment",
        ),
        ("2001:10::", "ietf_protocol_assignment"),
        (
            "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff",
            "ietf_protocol_assignment",
        ),
    ];
    let items = lines("private_ip_public.txt");
    assert_eq!(items.len(), allowed.len() + by_design.len());
    let mut t = Tally::default();
    for ip in &items {
        let v = verdict(&as_url(ip));
        t.add(&v);
        if allowed.contains(&ip.as_str()) {
            assert!(v.allowed, "{ip}: {v:?}");
        } else {
            let (_, why) = by_design.iter().find(|(i, _)| i == ip).unwrap();
            assert!(!v.allowed, "{ip}");
            assert_eq!(v.findings[0].name, *why, "{ip}");
        }
    }
    println!("{}", t.row("private_ip_public.txt", "allow (registry)"));
}

#[test]
fn payloads_all_the_things_urls() {
    let mut by_label: std::collections::BTreeMap<String, Tally> = Default::default();
    let mut literal_misses = Vec::new();
    for line in fixture("patt_ssrf_urls.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let item: serde_json::Value = serde_json::from_str(line).unwrap();
        let url = item["url"].as_str().unwrap();
        let label = item["label"].as_str().unwrap().to_owned();
        let v = verdict(url);
        if label == "block" {
            assert!(!v.allowed, "{url}: {v:?}");
            if !literal_refusal(&v) {
                literal_misses.push(url.to_owned());
            }
        }
        by_label.entry(label).or_default().add(&v);
    }
    for (label, t) in &by_label {
        println!("{}", t.row("patt_ssrf_urls.jsonl", label));
    }
    // The only `block` items that need DNS to be refused are public-looking names: they are
    // refused with resolution on only if they resolve to a blocked address.
    println!("block items that need DNS: {literal_misses:?}");
    let block = &by_label["block"];
    assert!(
        block.literal * 100 / block.total >= 95,
        "{literal_misses:?}"
    );
}

#[test]
fn seclists_hacktricks() {
    let mut t = Tally::default();
    let mut needs_dns = Vec::new();
    let mut allowed = Vec::new();
    for item in lines("seclists_SSRF_hacktricks.txt") {
        let v = verdict(&as_url(&item));
        t.add(&v);
        if v.allowed {
            allowed.push(item);
        } else if !literal_refusal(&v) {
            needs_dns.push(item);
        }
    }
    // The list mixes payloads with the public addresses they combine (1.1.1.1, 2.2.2.2,
    // 3.3.3.3); those are the only items allowed.
    assert_eq!(allowed, ["1.1.1.1", "2.2.2.2", "3.3.3.3"]);
    println!("{}", t.row("seclists_SSRF_hacktricks.txt", "block"));
    println!("seclists items that need DNS: {needs_dns:?}");
}
