//! What the benchmarks share: their command line (positional arguments, cargo's own
//! `--bench` flags left out) and the corpus folder they run on.

use std::path::PathBuf;

/// The positional arguments given after `cargo bench --bench NAME --`.
pub fn args() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// The corpus folder: the first argument, else where `../shared/eval/perf-corpus.sh`
/// puts it. Exits with a one-line reason when it is missing.
pub fn corpus_root(args: &[String], bench: &str) -> PathBuf {
    let corpus = args
        .first()
        .cloned()
        .unwrap_or_else(|| "/tmp/ragls-perf-corpus/corpus".into());
    match ragls::engine::workspace_root(std::path::Path::new(&corpus)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{bench}: {e} (run ../shared/eval/perf-corpus.sh first)");
            std::process::exit(2);
        }
    }
}
