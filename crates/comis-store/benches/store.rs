//! Store benchmarks: memory inserts (single and batched, validator included) and full-text
//! recall latency at 100k and 1M memories.
//!
//! The large databases are built once and cached under `target/comis-store-bench/` (building
//! 1M rows takes a minute or two); delete that directory to rebuild. Set
//! `COMIS_BENCH_SIZES=100000` to skip the 1M database.
//!
//! Data: synthetic sentences of 8–24 words drawn from a 20,000-word vocabulary with a Zipf
//! (s = 1) distribution, so a few words are as common as "the" and most are rare, as in
//! natural text. Queries: 3 words drawn from the same distribution (so most contain a very
//! common word, the hard case for OR-ranked BM25), and 3 words from the rarer half.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use comis_store::{AgentId, NewMemory, Options, SearchQuery, SourceKind, Store, Trust};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const VOCAB: usize = 20_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Corpus {
    words: Vec<String>,
    cdf: Vec<f64>,
}

impl Corpus {
    fn new() -> Corpus {
        const SYL: [&str; 24] = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "be", "da", "fu", "go", "hi", "jo",
            "ku", "la", "me", "no", "pa", "qi", "re", "so", "tu", "wa",
        ];
        let words = (0..VOCAB)
            .map(|i| {
                let mut w = String::new();
                let mut x = i + 24;
                while x > 0 {
                    w.push_str(SYL[x % 24]);
                    x /= 24;
                }
                w.push('x'); // keep the porter stemmer from merging words
                w
            })
            .collect();
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=VOCAB)
            .map(|r| {
                acc += 1.0 / r as f64;
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Corpus { words, cdf }
    }
    fn zipf(&self, rng: &mut Rng) -> &str {
        let u = rng.unit();
        let i = self.cdf.partition_point(|c| *c < u).min(VOCAB - 1);
        &self.words[i]
    }
    fn sentence(&self, rng: &mut Rng) -> String {
        let n = 8 + rng.below(17);
        (0..n).map(|_| self.zipf(rng)).collect::<Vec<_>>().join(" ")
    }
}

fn agent() -> AgentId {
    AgentId::new("bench").unwrap()
}

fn memory(content: String) -> NewMemory {
    NewMemory::new(agent(), content, Trust::Learned, SourceKind::Conversation)
}

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/comis-store-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(path: &Path) -> Store {
    Store::open_with(path, Options { audit_anchor: None }).unwrap()
}

/// A database with `n` memories, built once and reused.
fn fixture(corpus: &Corpus, n: usize) -> Store {
    let path = bench_dir().join(format!("memories-{n}.db"));
    if path.exists() {
        let s = open(&path);
        if s.memory_stats(None).unwrap().total == n as u64 {
            return s;
        }
        drop(s);
        std::fs::remove_file(&path).unwrap();
    }
    let s = open(&path);
    let mut rng = Rng(0x5eed_0000 + n as u64);
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let batch: Vec<NewMemory> = (0..(n - done).min(10_000))
            .map(|_| memory(corpus.sentence(&mut rng)))
            .collect();
        done += batch.len();
        for r in s.write_memories(&batch).unwrap() {
            r.unwrap();
        }
    }
    eprintln!(
        "built {n} memories in {:.1}s ({:.0}/s)",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
    s
}

fn sizes() -> Vec<usize> {
    std::env::var("COMIS_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn inserts(c: &mut Criterion) {
    let corpus = Corpus::new();
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let s = open(&dir.path().join("inserts.db"));
    let mut rng = Rng(42);
    let mut g = c.benchmark_group("insert");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single", |b| {
        b.iter_batched(
            || memory(corpus.sentence(&mut rng)),
            |m| s.write_memory(&m).unwrap(),
            BatchSize::SmallInput,
        );
    });
    g.throughput(Throughput::Elements(1000));
    g.bench_function("batch_1000", |b| {
        b.iter_batched(
            || {
                (0..1000)
                    .map(|_| memory(corpus.sentence(&mut rng)))
                    .collect::<Vec<_>>()
            },
            |batch| s.write_memories(&batch).unwrap(),
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn search(c: &mut Criterion) {
    let corpus = Corpus::new();
    let mut g = c.benchmark_group("search");
    for n in sizes() {
        let s = fixture(&corpus, n);
        let mut rng = Rng(7);
        let zipf_queries: Vec<String> = (0..500)
            .map(|_| {
                (0..3)
                    .map(|_| corpus.zipf(&mut rng))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let rare_queries: Vec<String> = (0..500)
            .map(|_| {
                (0..3)
                    .map(|_| corpus.words[VOCAB / 2 + rng.below(VOCAB / 2)].as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let a = agent();
        for (name, queries) in [("zipf", &zipf_queries), ("rare", &rare_queries)] {
            // Percentiles over every query once (criterion reports the mean).
            let mut timed: Vec<(Duration, &String)> = queries
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    let hits = s
                        .search_memories(&SearchQuery {
                            agent: &a,
                            text: q,
                            embedding: None,
                            limit: 10,
                            include_external: false,
                        })
                        .unwrap();
                    std::hint::black_box(hits);
                    (t.elapsed(), q)
                })
                .collect();
            timed.sort();
            if std::env::var_os("COMIS_BENCH_SLOWEST").is_some() {
                for (t, q) in timed.iter().rev().take(5) {
                    eprintln!("  slow {t:?}: {q}");
                }
            }
            let times: Vec<Duration> = timed.iter().map(|(t, _)| *t).collect();
            eprintln!(
                "search {name} @ {n}: p50 {:?}  p95 {:?}  p99 {:?}  max {:?}",
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.99),
                times[times.len() - 1]
            );
            let mut i = 0;
            g.bench_function(format!("{name}_{n}"), |b| {
                b.iter(|| {
                    i = (i + 1) % queries.len();
                    s.search_memories(&SearchQuery {
                        agent: &a,
                        text: &queries[i],
                        embedding: None,
                        limit: 10,
                        include_external: false,
                    })
                    .unwrap()
                });
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = inserts, search
}
criterion_main!(benches);
