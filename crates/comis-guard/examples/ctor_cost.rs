//! Time and memory of each guard constructor, in the order the daemon builds them.
//! `cargo run --release -p comis-guard --example ctor_cost`
#![forbid(unsafe_code)]
// A measuring tool: its report is its stdout; a failed constructor is a failed measurement.
#![allow(clippy::print_stdout, clippy::unwrap_used)]
use std::time::Instant;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn step<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    println!(
        "{name:<28} {:>7.1} ms  rss {:>7} kB",
        t.elapsed().as_secs_f64() * 1e3,
        rss_kb()
    );
    v
}

fn main() {
    use comis_guard::*;
    let _r = step("registry", || patterns::Registry::global().unwrap());
    let _l = step("log scrubber", || logscrub::LogScrubber::new().unwrap());
    let mut o = step("output guard", || output::OutputGuard::new().unwrap());
    step("output register secret", || {
        o.register_secrets(["abcdefghijklmnop0123456789"]).unwrap()
    });
    let _ = step("output first scan", || {
        o.scan("hello sk-ant-api03-xxxxxxxxxxxxxxxxxxxxxxxx", None)
    });
    let _i = step("input guard", || {
        input::InputGuard::new(input::InputGuardConfig::default()).unwrap()
    });
    let _s = step("tool output sanitizer", || {
        toolout::ToolOutputSanitizer::new().unwrap()
    });
    let _w = step("content wrapper", || wrap::ContentWrapper::new().unwrap());
    let _m = step("memory validator", || {
        memscan::MemoryValidator::new().unwrap()
    });
    let _c = step("classifier", || {
        classify::ClassifierBuilder::with_defaults().seal()
    });
}
