//! MCP server benchmark (not a test: it prints figures beside their targets and asserts
//! nothing). It drives the release binary's `ragls mcp` over stdio with raw JSON-RPC,
//! offline (builtin embedder), on a fresh index in a temporary cache folder.
//!
//! usage: cargo build --release && cargo bench --bench mcp -- [CORPUS_DIR]
//!   CORPUS_DIR defaults to the folder printed by `../shared/eval/perf-corpus.sh`
//!   (/tmp/ragls-perf-corpus/corpus). The binary is `target/release/ragls` (or $RAGLS_BIN).
//!
//! Measures: start to an up-to-date index (a `reindex` call waits for the background
//! index); `search_code` latency (request written to reply read), median and p95 over 500
//! calls with top_k 10; and what a top_k 10 result costs an agent's context, in tokens
//! (characters / 4) of the text content the model reads (and of the structured copy).
//! Queries are the words of the corpus's own function names, in a fixed order.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

const CALLS: usize = 500;

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: i64,
}

impl Server {
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.stdin, "{msg}").expect("write to the server");
        self.stdin.flush().expect("flush");
        loop {
            let mut line = String::new();
            if self.stdout.read_line(&mut line).expect("read") == 0 {
                eprintln!("mcp bench: the server closed its output");
                std::process::exit(1);
            }
            let v: Value = serde_json::from_str(&line).expect("JSON-RPC on stdout");
            if v["id"] == id {
                return v;
            }
        }
    }

    fn notify(&mut self, method: &str) {
        writeln!(
            self.stdin,
            "{}",
            json!({"jsonrpc": "2.0", "method": method})
        )
        .expect("write");
    }
}

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
                "mcp bench: no corpus folder {corpus} (run ../shared/eval/perf-corpus.sh first)"
            );
            std::process::exit(2);
        }
    };
    let bin = std::env::var_os("RAGLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/ragls"));
    if !bin.is_file() {
        eprintln!(
            "mcp bench: no binary {} (run `cargo build --release` first)",
            bin.display()
        );
        std::process::exit(2);
    }
    let home = tempfile::tempdir().expect("temporary folder");
    let mut child = Command::new(&bin)
        .args(["mcp", "--workspace"])
        .arg(&corpus)
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env_remove("OPENROUTER_API_KEY")
        // A developer's shared index must not leak into the tests.
        .env_remove("RAGLS_STORE_URL")
        .env_remove("RAGLS_STORE_REF")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ragls mcp");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut s = Server {
        child,
        stdin,
        stdout,
        next_id: 0,
    };

    let t0 = Instant::now();
    s.request(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}),
    );
    s.notify("notifications/initialized");
    let ready = s.request("tools/call", json!({"name": "reindex", "arguments": {}}));
    let ready_s = t0.elapsed().as_secs_f64();
    let status = s.request(
        "tools/call",
        json!({"name": "index_status", "arguments": {}}),
    );
    let st = &status["result"]["structuredContent"];

    let queries = queries_from_corpus(&corpus, CALLS);
    let mut latencies = Vec::with_capacity(CALLS);
    let mut text_tokens = Vec::with_capacity(CALLS);
    let mut structured_tokens = Vec::with_capacity(CALLS);
    let mut empty = 0usize;
    for q in &queries {
        let started = Instant::now();
        let r = s.request(
            "tools/call",
            json!({"name": "search_code", "arguments": {"query": q, "top_k": 10}}),
        );
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        let result = &r["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or("");
        text_tokens.push(text.chars().count() as f64 / 4.0);
        structured_tokens
            .push(result["structuredContent"].to_string().chars().count() as f64 / 4.0);
        if result["structuredContent"]["results"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            empty += 1;
        }
    }
    drop(s.stdin);
    let _ = s.child.wait();

    println!(
        "ragls mcp on {} ({} files, {} chunks)",
        corpus.display(),
        st["files"],
        st["chunks"]
    );
    println!(
        "start to index up to date (cold, via reindex): {ready_s:.2} s  [{}]",
        ready["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or("?")
    );
    println!(
        "search_code latency, {CALLS} calls, top_k 10: median {:.2} ms, p95 {:.2} ms  (target p95 <= 20 ms); {empty} returned nothing",
        percentile(&mut latencies, 0.5),
        percentile(&mut latencies, 0.95)
    );
    println!(
        "top_k 10 result size, tokens (chars / 4) of the text the model reads: median {:.0}, p95 {:.0}, max {:.0}  (target <= 2,500)",
        percentile(&mut text_tokens, 0.5),
        percentile(&mut text_tokens, 0.95),
        percentile(&mut text_tokens, 1.0)
    );
    println!(
        "  the structured copy (structuredContent): median {:.0}, p95 {:.0}, max {:.0}",
        percentile(&mut structured_tokens, 0.5),
        percentile(&mut structured_tokens, 0.95),
        percentile(&mut structured_tokens, 1.0)
    );
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The words of the corpus's function names ("parse generic argument"), spread over the
/// sorted list, repeated as needed.
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
            let Some(rest) = line.trim_start().split("fn ").nth(1) else {
                continue;
            };
            let name: String = rest
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
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
