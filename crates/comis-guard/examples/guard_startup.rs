//! Start-up cost of the guards' compiled pattern sets, and a determinism dump for comparing
//! pattern rewrites.
//!
//! `cargo run --release -p comis-guard --example guard_startup` prints the wall time and the
//! resident set (VmRSS, VmHWM from /proc/self/status, Linux only) after each construction step.
//! `... -- patterns` times a one-pattern set per Secret pattern, to find the expensive ones.
//! `... -- dump FILE.jsonl...` prints the log scrubber's and output guard's result for every
//! `text` of the given corpus files, one line each, so two builds can be diffed.
//! It measures; it guarantees nothing about the library.

#![forbid(unsafe_code)]
// A measuring tool: its report is its stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, Write};
use std::time::Instant;

use comis_guard::GuardError;
use comis_guard::logscrub::LogScrubber;
use comis_guard::output::OutputGuard;
use comis_guard::patterns::{Family, Registry};

fn status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l[field.len()..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

fn step<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    println!(
        "{what:<32} {:>8.1} ms   VmRSS {:>10}   VmHWM {:>10}",
        t.elapsed().as_secs_f64() * 1000.0,
        status("VmRSS:"),
        status("VmHWM:")
    );
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("patterns") => patterns()?,
        Some("each") => each()?,
        Some("dump") => dump(&args[1..])?,
        _ => startup()?,
    }
    Ok(())
}

fn startup() -> Result<(), GuardError> {
    let total = Instant::now();
    step("process start", || ());
    step("Registry::global", Registry::global)?;
    let _scrubber = step("LogScrubber::new", LogScrubber::new)?;
    let _out = step("OutputGuard::new", OutputGuard::new)?;
    step("first scrub_text", || {
        comis_guard::logscrub::scrub_text("token=abc123def456ghi789")
    });
    println!("total {:.1} ms", total.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}

fn patterns() -> Result<(), GuardError> {
    let reg = Registry::global()?;
    let mut rows = Vec::new();
    for p in reg
        .patterns()
        .iter()
        .filter(|p| p.family() == Family::Secret)
    {
        let name = p.name();
        let t = Instant::now();
        let set = reg.select_where(|d| d.name == name)?;
        rows.push((t.elapsed().as_secs_f64() * 1000.0, name));
        drop(set);
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (ms, name) in rows {
        println!("{ms:>8.1} ms  {name}");
    }
    Ok(())
}

fn dump(files: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let scrubber = LogScrubber::new()?;
    let guard = OutputGuard::new()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for file in files {
        for line in std::io::BufReader::new(std::fs::File::open(file)?).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let Some(text) = v.get("text").and_then(|t| t.as_str()) else {
                continue;
            };
            let s = scrubber.scrub_text(text);
            let o = guard.scan(text, None);
            let names = |f: &[comis_guard::Finding]| {
                f.iter()
                    .map(|f| f.name.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            writeln!(
                out,
                "{}",
                serde_json::json!([s.text, names(&s.findings), o.text, names(&o.findings)])
            )?;
        }
    }
    Ok(())
}

/// Compiles every registry regex on its own (kept alive, one search each so the lazy DFA
/// cache exists) and prints the most expensive by time and resident-set growth.
fn each() -> Result<(), Box<dyn std::error::Error>> {
    fn rss_kb() -> i64 {
        status("VmRSS:")
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap_or(0)
    }
    let reg = Registry::global()?;
    let sources: Vec<(&str, &str, Family)> = reg
        .patterns()
        .iter()
        .filter_map(|p| match p.def().source {
            comis_guard::patterns::Source::Regex(s) => Some((p.name(), s, p.family())),
            comis_guard::patterns::Source::Literals(_) => None,
        })
        .collect();
    let mut keep = Vec::new();
    let mut rows = Vec::new();
    for (name, src, fam) in sources {
        let before = rss_kb();
        let t = Instant::now();
        let re = regex::RegexBuilder::new(src).size_limit(32 << 20).build()?;
        let _ = re.is_match("x");
        rows.push((
            t.elapsed().as_secs_f64() * 1000.0,
            rss_kb() - before,
            name,
            fam,
        ));
        keep.push(re);
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut tt, mut tm) = (0.0, 0);
    for r in &rows {
        tt += r.0;
        tm += r.1;
    }
    println!("total {tt:.1} ms, {tm} kB over {} regexes", rows.len());
    for (ms, kb, name, fam) in rows.iter().take(40) {
        println!("{ms:>8.1} ms {kb:>8} kB  {name} ({fam:?})");
    }
    Ok(())
}
