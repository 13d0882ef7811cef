//! Hot-path benchmarks for the guards every message passes through.
//!
//! Inputs are realistic chat/agent messages (prose, a code snippet, a URL, a list, some
//! non-ASCII text) without secrets or injections, at 1 KiB, 4 KiB and 64 KiB: the common case the
//! daemon pays for on every message. Run: `cargo bench -p comis-guard --bench guards`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations
)]

use std::hint::black_box;

use comis_guard::canary::CanaryKey;
use comis_guard::input::{InputGuard, InputGuardConfig};
use comis_guard::logscrub::LogScrubber;
use comis_guard::output::OutputGuard;
use comis_guard::unicode;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Ordinary agent traffic: a user asking about a deploy, the agent answering with a snippet.
const PARAGRAPHS: &[&str] = &[
    "Hi! Could you check why the nightly deploy failed? The pipeline ran at 02:00 UTC and the \
     logs say the container exited with code 137 right after the migration step started.\n",
    "Sure. Exit code 137 usually means the process was killed for using too much memory. The \
     migration loads the whole `orders` table before batching, which on the production dataset \
     is about 3.2 GB. I'd suggest streaming rows instead:\n",
    "```python\nfor batch in session.execute(select(Order)).yield_per(1000):\n    \
     migrate(batch)\n```\n",
    "You can follow the upstream discussion at https://docs.example.org/guides/migrations and \
     the ticket OPS-4821. Meanwhile I'll re-run the job with a 4 GiB limit.\n",
    "Résumé of today's tasks: 1) fix the deploy, 2) review Zoë's PR #1187, 3) reply to the \
     Müller GmbH email about the invoice — it's due on the 30th. ✓ Done: standup notes.\n",
    "Thanks — please also summarize the last three incidents in a table with columns date, \
     service, impact and root cause, and send it to the #ops channel when you're done.\n",
];

fn message(size: usize) -> String {
    let mut out = String::with_capacity(size + 512);
    let mut i = 0;
    while out.len() < size {
        out.push_str(PARAGRAPHS[i % PARAGRAPHS.len()]);
        i += 1;
    }
    let mut end = size;
    while !out.is_char_boundary(end) {
        end -= 1;
    }
    out.truncate(end);
    out
}

const SIZES: &[(&str, usize)] = &[("1KiB", 1024), ("4KiB", 4096), ("64KiB", 65536)];

fn bench_sizes(c: &mut Criterion, group: &str, mut f: impl FnMut(&str)) {
    let mut g = c.benchmark_group(group);
    for &(label, size) in SIZES {
        let msg = message(size);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), &msg, |b, m| {
            b.iter(|| f(black_box(m)))
        });
    }
    g.finish();
}

fn invisible(c: &mut Criterion) {
    bench_sizes(c, "invisible_strip", |m| {
        black_box(unicode::strip_invisible(m));
    });
    bench_sizes(c, "normalize_for_matching", |m| {
        black_box(unicode::normalize_for_matching(m));
    });
}

fn input(c: &mut Criterion) {
    let guard = InputGuard::new(InputGuardConfig::default()).unwrap();
    bench_sizes(c, "input_guard", |m| {
        black_box(guard.scan(m));
    });
}

fn output(c: &mut Criterion) {
    let mut guard = OutputGuard::new().unwrap();
    // A daemon always knows a few of its own secrets (gateway token, provider keys).
    guard
        .register_secrets([
            "9f2c1e7a4b8d3f6e0a5c2b9d7e1f4a3c",
            "gw-token-5b1d9e2f7a3c8e4d",
        ])
        .unwrap();
    bench_sizes(c, "output_guard", |m| {
        black_box(guard.scan(m, None));
    });
    let canary = CanaryKey::from_bytes(b"0123456789abcdef0123456789abcdef")
        .unwrap()
        .token_for("session-1");
    bench_sizes(c, "output_guard_with_canary", |m| {
        black_box(guard.scan(m, Some(&canary)));
    });
}

fn logscrub(c: &mut Criterion) {
    let scrubber = LogScrubber::new().unwrap();
    bench_sizes(c, "log_sanitizer", |m| {
        black_box(scrubber.scrub_text(m));
    });
}

criterion_group!(benches, input, output, logscrub, invisible);
criterion_main!(benches);
