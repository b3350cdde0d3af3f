//! Lexical-stage benchmark (not a test: it prints figures and asserts nothing): the BM25
//! ranking of `Store::lexical_search` (scored in `store::lexical` from FTS5's postings)
//! against FTS5's own `bm25()` (`Store::lexical_search_fts5`), query by query on an
//! existing index, and whether the two rankings agree.
//!
//! usage: cargo bench --bench lexical -- INDEX_DIR QUERIES_JSONL [LIMIT]
//!   INDEX_DIR: an index built by `ragls index --index-dir`; QUERIES_JSONL: one
//!   `{"query": ...}` per line (`bench/bigcorp.sh` writes /tmp/ragls-bigcorp/queries.jsonl);
//!   LIMIT: candidates per query (default 50, `retrieve.lexical_candidates`).
//!
//! Prints, for each path: wall median / p95 / max per query and the thread's CPU time for
//! all queries (the two paths alternate query by query, so both see the same load; compare
//! CPU times on a busy machine); the first query of the new path (which loads the chunk
//! sizes) separately; and how many queries rank differently (same chunks with bit-equal
//! scores, apart from the order of exactly tied scores, counts as the same).

use ragls::store::{ChunkId, Store};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(dir), Some(qfile)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cargo bench --bench lexical -- INDEX_DIR QUERIES_JSONL [LIMIT]");
        std::process::exit(2);
    };
    let limit: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(50);
    let head_weight = ragls::config::RetrieveConfig::default().head_weight;
    let Ok(Some(store)) = Store::open_existing(std::path::Path::new(dir)) else {
        eprintln!("lexical bench: no index in {dir}");
        std::process::exit(2);
    };
    let queries: Vec<Vec<String>> = std::fs::read_to_string(qfile)
        .expect("queries file")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["query"].as_str().map(ragls::tokenize::terms))
        .collect();

    let t = Instant::now();
    let first = store
        .lexical_search(&queries[0], limit, head_weight)
        .unwrap();
    let first_ms = ms(t.elapsed());
    drop(first);

    let mut old = Timings::default();
    let mut new = Timings::default();
    let mut differ = 0;
    let mut examples = Vec::new();
    for (i, terms) in queries.iter().enumerate() {
        // Alternate which path goes first: neither always finds the pages warmer.
        let (a, b) = if i % 2 == 0 {
            let a = old.time(|| {
                store
                    .lexical_search_fts5(terms, limit, head_weight)
                    .unwrap()
            });
            let b = new.time(|| store.lexical_search(terms, limit, head_weight).unwrap());
            (a, b)
        } else {
            let b = new.time(|| store.lexical_search(terms, limit, head_weight).unwrap());
            let a = old.time(|| {
                store
                    .lexical_search_fts5(terms, limit, head_weight)
                    .unwrap()
            });
            (a, b)
        };
        if !same_ranking(&a, &b) {
            differ += 1;
            if examples.len() < 3 {
                examples.push(format!("{terms:?}"));
            }
        }
    }
    println!(
        "lexical stage, {} queries, top {limit}, head weight {head_weight}; load:{}",
        queries.len(),
        load()
    );
    old.print("FTS5 bm25()");
    new.print("scored here");
    println!("  first query of the new path (loads the chunk sizes): {first_ms:.2} ms");
    println!(
        "  rankings that differ: {differ} of {}{}",
        queries.len(),
        if examples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", examples.join("; "))
        }
    );
}

/// Same chunks, bit-equal scores, best first; chunks with exactly equal scores may come in
/// any order (FTS5's sorter does not fix it).
fn same_ranking(a: &[(ChunkId, f32)], b: &[(ChunkId, f32)]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let key = |v: &[(ChunkId, f32)]| {
        let mut k: Vec<(u32, ChunkId)> = v.iter().map(|(id, s)| (s.to_bits(), *id)).collect();
        // Scores are positive, so their bits order like the floats.
        k.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        k
    };
    let sorted = |v: &[(ChunkId, f32)]| v.windows(2).all(|w| w[0].1 >= w[1].1);
    if !sorted(a) || !sorted(b) {
        return false;
    }
    // The last score may be shared with chunks beyond the limit: either path may have cut
    // the tie elsewhere.
    let last = a.last().map(|x| x.1.to_bits());
    let ka: Vec<_> = key(a).into_iter().filter(|x| Some(x.0) != last).collect();
    let kb: Vec<_> = key(b).into_iter().filter(|x| Some(x.0) != last).collect();
    ka == kb && a.last().map(|x| x.1.to_bits()) == b.last().map(|x| x.1.to_bits())
}

#[derive(Default)]
struct Timings {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Timings {
    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let c = thread_cpu();
        let t = Instant::now();
        let out = f();
        self.wall.push(ms(t.elapsed()));
        self.cpu.push(ms(thread_cpu().saturating_sub(c)));
        out
    }

    fn print(&mut self, name: &str) {
        let n = self.wall.len();
        let total: f64 = self.cpu.iter().sum();
        let (w, c) = (quantiles(&mut self.wall), quantiles(&mut self.cpu));
        println!(
            "  {name:12}: wall median {:.2} ms, p95 {:.2} ms, max {:.2} ms; CPU median {:.2} ms, p95 {:.2} ms, max {:.2} ms, {:.0} ms in all ({:.2} ms a query)",
            w[0], w[1], w[2], c[0], c[1], c[2], total, total / n as f64
        );
    }
}

/// Median, p95 and max.
fn quantiles(v: &mut [f64]) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    [at(0.5), at(0.95), at(1.0)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a live out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
