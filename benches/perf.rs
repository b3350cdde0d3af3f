//! Performance benchmark of the engine (not a test: it prints figures, asserts nothing).
//!
//! usage: cargo bench --bench perf -- [CORPUS_DIR] [QUERIES]
//!   CORPUS_DIR defaults to the folder printed by `../shared/eval/perf-corpus.sh`
//!   (/tmp/ragls-perf-corpus/corpus); QUERIES (default 1000) search queries are made from
//!   the corpus's own symbol names ("parse generic argument"), so they are realistic and
//!   repeatable.
//!
//! Prints: cold index time, no-change re-index time, warm start to first result (open the
//! index, load the vector dump, answer one query), median and p95 search latency, and the
//! process's peak RSS. The CLI-level figures (a fresh process per step) come from
//! `bench/perf.sh`.

use ragls::config::Config;
mod support;

use ragls::engine::{Engine, NoProgress};
use std::time::Instant;

fn main() {
    let args = support::args();
    let n_queries: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let root = support::corpus_root(&args, "perf");
    let index_dir = std::env::temp_dir().join(format!("ragls-perf-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&index_dir);
    let config = Config::default();

    let t = Instant::now();
    let mut engine =
        Engine::open_for_writing(&root, config.clone(), index_dir.clone()).expect("open");
    let report = engine.index(false, &NoProgress).expect("index");
    let cold = t.elapsed();
    let t = Instant::now();
    let again = engine.index(false, &NoProgress).expect("re-index");
    let noop = t.elapsed();
    drop(engine);

    let t = Instant::now();
    let mut engine = Engine::open_for_reading(&root, config, index_dir.clone())
        .expect("open")
        .expect("an index");
    let first = engine
        .search("parse a generic type parameter", 10, true)
        .expect("search");
    let warm = t.elapsed();

    let queries = queries_from_symbols(&mut engine, n_queries);
    let mut latencies = Vec::with_capacity(queries.len());
    for q in &queries {
        let t = Instant::now();
        let hits = engine.search(q, 10, true).expect("search");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(hits);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let status = engine.status().expect("status");

    println!(
        "corpus              {} ({} files, {} chunks)",
        root.display(),
        status.files,
        status.chunks
    );
    println!(
        "cold index          {:.2} s ({} chunks embedded)",
        cold.as_secs_f64(),
        report.embedded
    );
    println!(
        "no-change re-index  {:.3} s (changed {}, embedded {})",
        noop.as_secs_f64(),
        again.files_changed,
        again.embedded
    );
    println!(
        "warm start -> first {:.3} s ({} results)",
        warm.as_secs_f64(),
        first.len()
    );
    println!(
        "search latency      median {:.2} ms, p95 {:.2} ms, max {:.2} ms over {} queries",
        pct(0.5),
        pct(0.95),
        pct(1.0),
        latencies.len()
    );
    println!("peak RSS            {} MB", peak_rss_kb() / 1024);
    println!(
        "index size          {:.1} MB",
        status.index_bytes as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&index_dir);
}

/// Queries made of the words of the corpus's own symbol names, in a fixed order.
fn queries_from_symbols(engine: &mut Engine, n: usize) -> Vec<String> {
    let seeds = [
        "parse",
        "verify",
        "connection",
        "query",
        "expression",
        "token",
        "handshake",
        "insert",
        "generic",
        "error",
    ];
    let mut out = Vec::new();
    for seed in seeds.iter().cycle().take(200) {
        for hit in engine.search(seed, 20, false).unwrap_or_default() {
            let mut words = Vec::new();
            ragls::tokenize::split_identifier(&hit.chunk.name, &mut words);
            if words.len() >= 2 {
                out.push(words.join(" "));
            }
        }
        if out.len() >= n * 2 {
            break;
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        out.push("parse".into());
    }
    out.iter().cycle().take(n).cloned().collect()
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0)
            })
        })
        .unwrap_or(0)
}
