//! Language-server benchmark (not a test: it prints figures beside their targets and
//! asserts nothing). It drives the release binary over stdio with the same JSON-RPC client
//! as the integration tests (`tests/support/lsp_client.rs`), offline (builtin embedder).
//!
//! usage: cargo build --release && cargo bench --bench lsp -- [CORPUS_DIR] [QUERIES]
//!   CORPUS_DIR defaults to the folder printed by `../shared/eval/perf-corpus.sh`
//!   (/tmp/ragls-perf-corpus/corpus); QUERIES (default 1000) is how many `rag/search`
//!   requests are timed once ready. The binary is `target/release/ragls` (or $RAGLS_BIN).
//!
//! Measures, on a fresh index folder (a temporary HOME / XDG_CACHE_HOME):
//! * cold `initialize` -> ready, while `rag/search` runs back to back from right after
//!   `initialize` until ready: median / p95 "during indexing" (how many found anything is
//!   printed too: the first batches take a moment to land);
//! * `rag/search` median / p95 over QUERIES queries once ready;
//! * `didChange` -> visible to `rag/search`: a buffer of a corpus file gets a uniquely
//!   named function appended (incremental change), then searches run until one returns it
//!   (median over 20 edits);
//! * the server's peak RSS (VmHWM) before shutdown;
//! * warm `initialize` -> ready: a new server on the existing index, then the same
//!   QUERIES searches in it, and its peak RSS.
//!
//! `LSP_BENCH_WARM_ONLY=1` builds the index with `ragls index` instead and measures only
//! the warm server (quicker on a large corpus).
//!
//! Queries are the words of the corpus's own function names ("parse generic argument"), in
//! a fixed order, so runs are comparable.

#[path = "../tests/support/lsp_client.rs"]
mod lsp_client;

use lsp_client::{file_uri, LspClient, ServerOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cap on the searches run while the cold index is built (they run back to back).
const MAX_DURING_QUERIES: usize = 100_000;
const DEFAULT_QUERIES: usize = 1000;
const EDITS: usize = 20;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let corpus = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/tmp/ragls-perf-corpus/corpus".into());
    let corpus = match Path::new(&corpus).canonicalize() {
        Ok(p) if p.is_dir() => p,
        _ => {
            eprintln!(
                "lsp bench: no corpus folder {corpus} (run ../shared/eval/perf-corpus.sh first)"
            );
            std::process::exit(2);
        }
    };
    let bin = std::env::var_os("RAGLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ragls"));
    if !bin.is_file() {
        eprintln!(
            "lsp bench: no binary {} (run `cargo build --release` first)",
            bin.display()
        );
        std::process::exit(2);
    }
    let n_queries: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_QUERIES);
    let home = tempfile::tempdir().expect("temporary home");
    let opts = ServerOptions::new(&bin, home.path());
    let queries = queries_from_corpus(&corpus, n_queries);
    let caps = json!({ "window": { "workDoneProgress": true } });

    if std::env::var_os("LSP_BENCH_WARM_ONLY").is_some() {
        warm_only(&opts, &bin, &corpus, &queries, caps);
        return;
    }

    // ---- cold: a fresh index, searched while it is built
    let c = LspClient::spawn(&opts);
    let t0 = Instant::now();
    c.initialize(&[&corpus], Value::Null, caps.clone());
    let mut during = Vec::new();
    let mut during_hits = 0usize;
    let mut qi = 0usize;
    while during.len() < MAX_DURING_QUERIES && ready_at(&c).is_none() {
        let (ms, n) = timed_search(&c, &queries[qi % queries.len()]);
        qi += 1;
        during.push(ms);
        during_hits += usize::from(n > 0);
    }
    let cold_ready = wait_ready_at(&c, Duration::from_secs(3600)).duration_since(t0);
    let status = c.wait_ready(Duration::from_secs(60));

    // ---- searches once ready
    let mut after = Vec::with_capacity(n_queries);
    for q in &queries {
        after.push(timed_search(&c, q).0);
    }

    // ---- didChange -> visible
    let (file, text) = edit_target(&corpus);
    let uri = file_uri(&file);
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "rust", "version": 1, "text": text } }),
    );
    let mut buffer = text;
    let mut visible = Vec::with_capacity(EDITS);
    let mut missed = 0usize;
    for i in 0..EDITS {
        let name = format!("lspbench_{}_{}", probe_word(i), probe_word(i + 7));
        // Over the chunker's minimum size, so the function is a chunk of its own.
        let func = format!(
            "\n/// Reconciles the {name} ledger entries against the bank statement of the\n/// month, so that the bench can find this function by its unique name.\npub fn {name}(entries: &[i64], statement: i64) -> bool {{\n    let total: i64 = entries.iter().copied().sum();\n    let mismatch = (total - statement).abs();\n    mismatch == 0 && !entries.is_empty()\n}}\n"
        );
        let line = buffer.split('\n').count() as u32 - 1;
        // The 0-based line of `pub fn` once the edit is applied.
        let fn_line = u64::from(line) + 3;
        let col = buffer
            .rsplit('\n')
            .next()
            .unwrap_or("")
            .encode_utf16()
            .count() as u32;
        let query = name.replace('_', " ");
        let t = Instant::now();
        c.notify(
            "textDocument/didChange",
            json!({
                "textDocument": { "uri": uri, "version": i as i64 + 2 },
                "contentChanges": [ { "range": { "start": { "line": line, "character": col }, "end": { "line": line, "character": col } }, "text": func } ],
            }),
        );
        buffer.push_str(&func);
        let mut seen = false;
        while t.elapsed() < Duration::from_secs(10) {
            let r = c.request_ok("rag/search", json!({ "query": query, "topK": 5 }));
            if r["results"].as_array().is_some_and(|rs| {
                rs.iter().any(|x| {
                    x["uri"] == uri.as_str()
                        && x["range"]["start"]["line"]
                            .as_u64()
                            .is_some_and(|l| l <= fn_line)
                        && x["range"]["end"]["line"]
                            .as_u64()
                            .is_some_and(|l| l >= fn_line)
                })
            }) {
                seen = true;
                break;
            }
        }
        if seen {
            visible.push(t.elapsed().as_secs_f64() * 1000.0);
        } else {
            missed += 1;
        }
    }
    c.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": uri } }),
    );
    let cold_rss = c.peak_rss_kib();
    c.shutdown_and_exit();

    // ---- warm: a new server on the existing index
    let warm = warm_server(&opts, &corpus, &queries, caps);
    let (warm_ready, warm_status, first, warm_searches, warm_rss) =
        (warm.ready, warm.status, warm.first, warm.searches, warm.rss);

    // ---- figures
    let s = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "corpus                  {} ({} files, {} chunks, embedding {} {}d)",
        corpus.display(),
        s(&status, "files"),
        s(&status, "chunks"),
        status["embedding"]["provider"].as_str().unwrap_or("?"),
        status["embedding"]["dimensions"]
    );
    println!("binary                  {}", bin.display());
    println!(
        "cold init -> ready      {:>8.2} s",
        cold_ready.as_secs_f64()
    );
    println!(
        "warm init -> ready      {:>8.3} s    target <= 0.5 s  {}   (first search {:.1} ms; {} files)",
        warm_ready.as_secs_f64(),
        verdict(warm_ready.as_secs_f64() <= 0.5),
        first,
        s(&warm_status, "files"),
    );
    print_latency(
        "search during indexing",
        &during,
        100.0,
        &format!("{during_hits} with results"),
    );
    print_latency("search after indexing", &after, 30.0, "");
    print_latency("search, warm server", &warm_searches, 30.0, "");
    if visible.is_empty() {
        println!("didChange -> visible    never within 10 s ({missed} edits)");
    } else {
        let med = pct(&mut visible.clone(), 0.5);
        let p95 = pct(&mut visible.clone(), 0.95);
        println!(
            "didChange -> visible    median {med:>7.1} ms  p95 {p95:>7.1} ms  target median <= 200 ms  {}   ({} edits{})",
            verdict(med <= 200.0),
            visible.len(),
            if missed > 0 {
                format!(", {missed} never visible within 10 s")
            } else {
                String::new()
            }
        );
    }
    let mb = |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.0} MB", k as f64 / 1024.0));
    println!(
        "peak RSS (server)       cold {}, warm {}",
        mb(cold_rss),
        mb(warm_rss)
    );
}

/// A server started on an existing index: its figures.
struct Warm {
    ready: Duration,
    status: Value,
    first: f64,
    searches: Vec<f64>,
    rss: Option<u64>,
}

fn warm_server(opts: &ServerOptions, corpus: &Path, queries: &[String], caps: Value) -> Warm {
    let c = LspClient::spawn(opts);
    let t0 = Instant::now();
    c.initialize(&[corpus], Value::Null, caps);
    let ready = wait_ready_at(&c, Duration::from_secs(600)).duration_since(t0);
    let status = c.wait_ready(Duration::from_secs(60));
    let first = timed_search(&c, &queries[0]).0;
    let searches: Vec<f64> = queries.iter().map(|q| timed_search(&c, q).0).collect();
    let rss = c.peak_rss_kib();
    c.shutdown_and_exit();
    Warm {
        ready,
        status,
        first,
        searches,
        rss,
    }
}

/// `LSP_BENCH_WARM_ONLY=1`: the index is built by `ragls index` (same cache folder as the
/// server's), then only the warm server is measured. Quicker on a large corpus.
fn warm_only(opts: &ServerOptions, bin: &Path, corpus: &Path, queries: &[String], caps: Value) {
    let home = &opts.home_root;
    let out = std::process::Command::new(bin)
        .args(["index", "-w"])
        .arg(corpus)
        .env("HOME", home.join("home"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("OPENROUTER_API_KEY")
        // A developer's shared index must not leak into the tests.
        .env_remove("RAGLS_STORE_URL")
        .env_remove("RAGLS_STORE_REF")
        .output()
        .expect("run ragls index");
    assert!(out.status.success(), "ragls index failed: {out:?}");
    let w = warm_server(opts, corpus, queries, caps);
    println!(
        "warm init -> ready      {:>8.3} s    (first search {:.1} ms; {} files)",
        w.ready.as_secs_f64(),
        w.first,
        w.status["files"].as_u64().unwrap_or(0)
    );
    print_latency("search, warm server", &w.searches, 30.0, "");
    let mb = w
        .rss
        .map_or("?".to_string(), |k| format!("{:.0} MB", k as f64 / 1024.0));
    println!("peak RSS (warm server)  {mb}");
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISSED"
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn print_latency(what: &str, v: &[f64], p95_target: f64, extra: &str) {
    if v.is_empty() {
        println!("{what:<23} no queries (ready before the first one)");
        return;
    }
    let med = pct(&mut v.to_vec(), 0.5);
    let p95 = pct(&mut v.to_vec(), 0.95);
    println!(
        "{what:<23} median {med:>7.2} ms  p95 {p95:>7.2} ms  target p95 <= {p95_target} ms  {}   ({} queries{}{})",
        verdict(p95 <= p95_target),
        v.len(),
        if extra.is_empty() { "" } else { ", " },
        extra
    );
}

/// One `rag/search`: (milliseconds, number of results).
fn timed_search(c: &LspClient, q: &str) -> (f64, usize) {
    let t = Instant::now();
    let r = c.request_ok("rag/search", json!({ "query": q, "topK": 10 }));
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    (ms, r["results"].as_array().map_or(0, Vec::len))
}

/// When the server said `rag/statusChanged` "ready" (after an "indexing"), if it did.
fn ready_at(c: &LspClient) -> Option<Instant> {
    let changes = c.notifications("rag/statusChanged");
    let indexing = changes
        .iter()
        .position(|m| m.params()["state"] == "indexing")?;
    changes[indexing..]
        .iter()
        .find(|m| matches!(m.params()["state"].as_str(), Some("ready" | "degraded")))
        .map(|m| m.at)
}

fn wait_ready_at(c: &LspClient, timeout: Duration) -> Instant {
    let mut at = None;
    c.wait_for(timeout, |_| {
        at = ready_at(c);
        at.is_some()
    });
    at.unwrap_or_else(|| c.fail("the server never said it was ready"))
}

/// A unique lowercase word for edit `i` (letters only, so it is one token).
fn probe_word(i: usize) -> String {
    const SYL: [&str; 16] = [
        "ka", "zu", "mo", "ri", "te", "vo", "xi", "pa", "lu", "ne", "gro", "sha", "qui", "bel",
        "dor", "fen",
    ];
    let mut n = i + 17;
    let mut w = String::from("q");
    for _ in 0..3 {
        w.push_str(SYL[n % SYL.len()]);
        n /= SYL.len();
        n += 3;
    }
    w
}

/// The words of the corpus's function names, `n` of them in a fixed order.
fn queries_from_corpus(corpus: &Path, n: usize) -> Vec<String> {
    let mut files = Vec::new();
    collect_rs(corpus, &mut files);
    files.sort();
    let mut names = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let Some(pos) = line.find("fn ") else {
                continue;
            };
            if pos > 0 && !line[..pos].ends_with(' ') {
                continue;
            }
            let name: String = line[pos + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
            if words.len() >= 2 {
                names.push(words.join(" "));
            }
        }
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push("parse generic argument".into());
    }
    // Spread over the whole (sorted) list, then repeat if needed.
    let step = (names.len() / n).max(1);
    let picked: Vec<String> = names.iter().step_by(step).cloned().collect();
    picked.iter().cycle().take(n).cloned().collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if p.is_dir() {
            collect_rs(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// A mid-sized Rust file of the corpus to edit (the first, in path order, of 2-40 KB).
fn edit_target(corpus: &Path) -> (PathBuf, String) {
    let mut files = Vec::new();
    collect_rs(corpus, &mut files);
    files.sort();
    for f in files {
        let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        if (2_000..40_000).contains(&len) {
            if let Ok(text) = std::fs::read_to_string(&f) {
                return (f, text);
            }
        }
    }
    panic!("no Rust file of 2-40 KB in {}", corpus.display());
}
