//! A local model that nobody waits for (not a test: it prints figures, asserts nothing):
//! what query-time embedding adds to a query, and how long the background pass takes to
//! give every chunk a model vector while searches go on.
//!
//! usage: cargo bench --bench model_background -- MODEL_DIR [CORPUS_DIR] [QUERIES] [LAZY] [no-pass]
//!   MODEL_DIR: a sentence-transformers folder (e.g. $RAGLS_TEST_MINILM);
//!   CORPUS_DIR defaults to the folder printed by `../shared/eval/perf-corpus.sh` (a
//!   subfolder, e.g. .../corpus/syn-2.0.119, for a shorter run);
//!   QUERIES (default 40): the first sentences of the corpus's doc comments, asked in order;
//!   LAZY: `retrieve.lazy_embed` (default: the setting's default); `no-pass` skips step 3.
//!
//! Times are wall clock and, for query-time embedding, also the process's CPU time (on a
//! shared machine the wall clock alone misleads).
//!
//! 1. Indexes the corpus into a temporary folder (lexical; the model's backlog is left).
//! 2. Each query three times, each on a reading engine as the server's are: without
//!    query-time embedding (the base), with it (its best lexical candidates are embedded
//!    and cached), and again (nothing left to embed). Prints p50/p95 of the added time.
//! 3. Runs the background pass on a thread of its own at the lowest priority (as the
//!    server does) while the main thread searches every 100 ms (query-time embedding
//!    off, so what is measured is the pass's effect on searches); prints the time until
//!    every chunk has a vector, and the searches' p50/p95.

mod support;

use ragls::config::{Config, EmbeddingConfig, EmbeddingProvider};
use ragls::engine::{Engine, ModelProgress, ModelVectors, NoProgress, Rerank};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cpu_ms() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    t(u.ru_utime) + t(u.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (n = {})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    )
}

/// The first sentences of `///` doc comments of the corpus: natural-language questions
/// whose answer is in the corpus.
fn doc_sentences(root: &std::path::Path, n: usize) -> Vec<String> {
    let files = ragls::workspace::walk(root, &ragls::workspace::WalkOptions::default())
        .expect("walk")
        .files;
    let mut out = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f.abs_path) else {
            continue;
        };
        for line in text.lines() {
            let Some(doc) = line.trim().strip_prefix("/// ") else {
                continue;
            };
            let sentence = doc.split(". ").next().unwrap_or("").trim_end_matches('.');
            if sentence.split_whitespace().count() >= 5 && !out.contains(&sentence.to_string()) {
                out.push(sentence.to_string());
                if out.len() == n {
                    return out;
                }
                break; // one per file: varied questions
            }
        }
    }
    out
}

struct Counting {
    coverage: std::sync::Mutex<Option<ModelVectors>>,
}

impl ModelProgress for Counting {
    fn update(&self, c: &ModelVectors) {
        if let Ok(mut m) = self.coverage.lock() {
            *m = Some(c.clone());
        }
    }
}

fn main() {
    let args = support::args();
    let Some(model_dir) = args.first().cloned() else {
        eprintln!("model_background: usage: cargo bench --bench model_background -- MODEL_DIR [CORPUS_DIR] [QUERIES]");
        std::process::exit(2);
    };
    let rest: Vec<String> = args[1..].to_vec();
    let root = support::corpus_root(&rest, "model_background");
    let n_queries: usize = rest.get(1).and_then(|n| n.parse().ok()).unwrap_or(40);
    let lazy_embed: Option<usize> = rest.get(2).and_then(|n| n.parse().ok());
    let tmp = tempfile::tempdir().expect("tempdir");
    let index_dir = tmp.path().join("index");
    let mut config = Config::default();
    config.embedding = EmbeddingConfig {
        provider: EmbeddingProvider::Local,
        model_dir,
        ..EmbeddingConfig::default()
    };
    if let Some(n) = lazy_embed {
        config.retrieve.lazy_embed = n;
    }

    // 1. The lexical index: usable at once.
    let t = Instant::now();
    let mut writer =
        Engine::open_for_writing(&root, config.clone(), index_dir.clone()).expect("open the index");
    let report = writer.index(false, &NoProgress).expect("index");
    let coverage = writer.model_vectors().expect("coverage").expect("a model");
    println!("corpus              {}", root.display());
    println!(
        "index (lexical)     {:.1} s: {} files, {} chunks, {} with model vectors",
        t.elapsed().as_secs_f64(),
        report.files_seen,
        coverage.total,
        coverage.done
    );

    // 2. Query-time embedding.
    let queries = doc_sentences(&root, n_queries);
    let open = |lazy: usize| {
        let mut c = config.clone();
        c.retrieve.lazy_embed = lazy;
        Engine::open_for_reading_with(&root, c, index_dir.clone(), writer.shared_vectors())
            .expect("open")
            .expect("an index")
    };
    let (mut base, mut lazy) = (open(0), open(config.retrieve.lazy_embed));
    let (mut added, mut again, mut embedded) = (Vec::new(), Vec::new(), Vec::new());
    let mut added_cpu = Vec::new();
    let time = |e: &mut Engine, q: &str| {
        let t = Instant::now();
        e.retrieve(q, 10, Rerank::Best).expect("retrieve");
        t.elapsed().as_secs_f64() * 1000.0
    };
    for q in &queries {
        let c0 = cpu_ms();
        let b = time(&mut base, q);
        let c1 = cpu_ms();
        let before = lazy.lazily_embedded();
        let first = time(&mut lazy, q);
        let c2 = cpu_ms();
        embedded.push((lazy.lazily_embedded() - before) as f64);
        let second = time(&mut lazy, q);
        added.push((first - b).max(0.0));
        added_cpu.push(((c2 - c1) - (c1 - c0)).max(0.0));
        again.push((second - b).max(0.0));
    }
    println!(
        "query-time embedding (retrieve.lazy_embed = {}), {} queries:",
        config.retrieve.lazy_embed,
        queries.len()
    );
    println!(
        "  texts embedded    {}",
        summary(embedded).replace(" ms", "")
    );
    println!("  added, first ask  {}", summary(added));
    println!("  its CPU time      {}", summary(added_cpu));
    println!("  added, asked again {}", summary(again));

    if rest.get(3).map(String::as_str) == Some("no-pass") {
        return;
    }
    // 3. The background pass while searches go on; first the same searches without it, for
    // comparison on a machine that may be busy with other work.
    let mut alone = Vec::new();
    for i in 0..150 {
        alone.push(time(&mut base, &queries[i % queries.len().max(1)]));
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("searches, no pass   {}", summary(alone));
    let pass = writer.background_model().expect("a background model");
    let progress = Arc::new(Counting {
        coverage: Default::default(),
    });
    let done = Arc::new(AtomicBool::new(false));
    let embedded_total = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let worker = {
        let (progress, done, embedded_total) =
            (progress.clone(), done.clone(), embedded_total.clone());
        std::thread::spawn(move || {
            ragls::engine::lower_this_thread();
            let n = pass.run(progress.as_ref()).expect("background pass");
            embedded_total.store(n, Ordering::Relaxed);
            done.store(true, Ordering::Release);
        })
    };
    let mut searches = Vec::new();
    let mut i = 0;
    while !done.load(Ordering::Acquire) {
        let q = &queries[i % queries.len().max(1)];
        searches.push(time(&mut base, q));
        i += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    worker.join().expect("the pass");
    let secs = t.elapsed().as_secs_f64();
    let c = progress.coverage.lock().unwrap().clone().expect("coverage");
    println!(
        "background pass     {secs:.1} s until {}/{} chunks had vectors ({} embedded here, {:.1} chunks/s)",
        c.done,
        c.total,
        embedded_total.load(Ordering::Relaxed),
        embedded_total.load(Ordering::Relaxed) as f64 / secs
    );
    println!("  searches meanwhile {}", summary(searches));
}
