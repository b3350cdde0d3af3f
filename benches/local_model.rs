//! Throughput of a local embedding model on the performance corpus (not a test: it
//! prints figures, asserts nothing).
//!
//! usage: cargo bench --bench local_model -- MODEL_DIR [CORPUS_DIR] [CHUNKS] [MAX_TOKENS]
//!   MODEL_DIR: a sentence-transformers or model2vec folder (e.g. $RAGLS_TEST_MINILM);
//!   CORPUS_DIR defaults to the folder printed by `../shared/eval/perf-corpus.sh`;
//!   CHUNKS (default 2000): the first chunks of the corpus in path order, embedded in the
//!   indexer's batches; MAX_TOKENS: `embedding.max_tokens` (default 0, the model's own).
//!
//! Prints chunks per second (wall clock), the process's CPU time (user + system: on a
//! shared machine the wall clock alone misleads) and peak RSS.

mod support;

use ragls::chunk::{chunk_file, ChunkBudget};
use ragls::config::{EmbeddingConfig, EmbeddingProvider};
use ragls::workspace::{walk, WalkOptions};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn peak_rss_mb() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

fn main() {
    let args = support::args();
    let Some(model_dir) = args.first().cloned() else {
        eprintln!("local_model: usage: cargo bench --bench local_model -- MODEL_DIR [CORPUS_DIR] [CHUNKS] [MAX_TOKENS]");
        std::process::exit(2);
    };
    let rest: Vec<String> = args[1..].to_vec();
    let root = support::corpus_root(&rest, "local_model");
    let n: usize = rest.get(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let max_tokens: usize = rest.get(2).and_then(|n| n.parse().ok()).unwrap_or(0);

    let files = walk(&root, &WalkOptions::default()).expect("walk").files;
    let budget = ChunkBudget::default();
    let mut texts = Vec::with_capacity(n);
    'files: for f in &files {
        let Ok(bytes) = std::fs::read(&f.abs_path) else {
            continue;
        };
        for c in chunk_file(&f.rel_path, &bytes, &budget) {
            texts.push(c.embedding_text(&f.rel_path));
            if texts.len() == n {
                break 'files;
            }
        }
    }
    let config = EmbeddingConfig {
        provider: EmbeddingProvider::Local,
        model_dir,
        max_tokens,
        ..EmbeddingConfig::default()
    };
    let (cpu0, t) = (cpu_seconds(), Instant::now());
    let model = ragls::embed::local::load(&config)
        .expect("load the model")
        .expect("a model folder");
    let load = t.elapsed().as_secs_f64();
    let (cpu1, t) = (cpu_seconds(), Instant::now());
    let mut done = 0;
    for batch in texts.chunks(model.batch_size()) {
        let refs: Vec<&str> = batch.iter().map(|s| s.as_str()).collect();
        done += model.embed(&refs).expect("embed").len();
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu1;
    let chars: usize = texts.iter().map(|t| t.len()).sum();
    println!(
        "model               {} ({} dims)",
        model.model_name(),
        model.dimensions()
    );
    println!(
        "corpus              {} (first {done} chunks, {:.0} bytes each on average)",
        root.display(),
        chars as f64 / done.max(1) as f64
    );
    println!("load                {load:.2} s (cpu {:.2} s)", cpu1 - cpu0);
    println!(
        "embed               {wall:.2} s wall, {cpu:.2} s cpu ({:.2} cores busy)",
        cpu / wall
    );
    println!(
        "throughput          {:.1} chunks/s wall, {:.1} chunks per cpu-second",
        done as f64 / wall,
        done as f64 / cpu
    );
    println!(
        "truncated           {} chunks cut to the token limit",
        model.truncated_inputs()
    );
    println!("peak RSS            {:.0} MB", peak_rss_mb());
}
