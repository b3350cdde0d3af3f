//! Reproducible rankings: two fresh builds of the index of the same files give the same
//! results for every query, and so does a rebuild that takes its vectors from the
//! embedding cache. (Below `index.exact_search_below` the vector search is an exact scan,
//! ties to the smaller chunk id; above it the graph is built in chunk-id order from a
//! fixed seed; either keeps the cached vectors' precision.)

use ragls::config::{Config, EmbeddingProvider};
use ragls::engine::{Engine, NoProgress};
use std::path::Path;

const WORDS: [&str; 24] = [
    "parse", "token", "stream", "buffer", "socket", "retry", "cache", "header", "request",
    "response", "queue", "timer", "signal", "thread", "lock", "graph", "vector", "index", "query",
    "cursor", "frame", "window", "budget", "ledger",
];

/// A tree of Rust files with many small, distinct functions (a few thousand chunks).
fn write_tree(root: &Path) {
    for f in 0..120 {
        let mut text = String::new();
        for g in 0..12 {
            let n = f * 12 + g;
            let (a, b, c) = (
                WORDS[n % 24],
                WORDS[(n / 24 + 7 * g) % 24],
                WORDS[(n * 7 + f) % 24],
            );
            text.push_str(&format!(
                "/// Moves the {a} of the {b} into the {c}, counting {n} steps.\npub fn {a}_{b}_{c}_{n}(input: &[u8]) -> usize {{\n    let {a} = input.len() + {n};\n    let {b} = {a} * 3 + input.iter().filter(|x| **x > {g}).count();\n    {a} + {b}\n}}\n\n"
            ));
        }
        let dir = root.join(format!("mod_{}", f % 9));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("file_{f}.rs")), text).unwrap();
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.embedding.provider = EmbeddingProvider::Builtin;
    // A narrow graph search, so that two different graphs would show in the rankings.
    c.retrieve.ef_search = 12;
    c
}

/// (path, start line, end line, score) of the top 10 of each query.
fn rankings(engine: &mut Engine) -> Vec<Vec<(String, u32, u32, String)>> {
    let mut out = Vec::new();
    for i in 0..60 {
        let q = format!(
            "{} the {} of a {}",
            WORDS[i % 24],
            WORDS[(i * 5 + 3) % 24],
            WORDS[(i * 11 + 1) % 24]
        );
        let hits = engine.search(&q, 10, true).expect("search");
        out.push(
            hits.iter()
                .map(|h| {
                    (
                        h.chunk.path.clone(),
                        h.chunk.start_line,
                        h.chunk.end_line,
                        format!("{:.6}", h.score),
                    )
                })
                .collect(),
        );
    }
    out
}

#[test]
fn two_fresh_builds_and_a_cached_rebuild_rank_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    write_tree(&root);
    let build = |dir: &str, rebuild: bool| {
        let index = tmp.path().join(dir);
        let mut engine = Engine::open_for_writing(&root, config(), index).expect("open");
        let report = engine.index(rebuild, &NoProgress).expect("index");
        (report, rankings(&mut engine))
    };
    let (first, a) = build("index-a", false);
    assert!(first.chunks_added > 1000, "{first:?}");
    assert!(a.iter().all(|r| r.len() == 10));
    let (_, b) = build("index-b", false);
    assert_eq!(a, b, "two fresh builds rank differently");
    let (again, c) = build("index-a", true);
    assert_eq!(
        again.cached, first.embedded,
        "the rebuild's vectors come from the cache"
    );
    assert_eq!(a, c, "a rebuild from cached vectors ranks differently");
}

/// The same with the vectors in an HNSW graph (the kind above `index.exact_search_below`).
#[test]
fn two_fresh_graph_builds_rank_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("ws");
    write_tree(&root);
    let mut graph = config();
    graph.index.exact_search_below = 0;
    let build = |dir: &str| {
        let index = tmp.path().join(dir);
        let mut engine = Engine::open_for_writing(&root, graph.clone(), index).expect("open");
        engine.index(false, &NoProgress).expect("index");
        assert!(!engine.shared_vectors().current().unwrap().is_exact());
        rankings(&mut engine)
    };
    assert_eq!(build("index-a"), build("index-b"));
}

fn graph_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vectors"))
        .collect();
    names.sort();
    names
}

/// Below the threshold nothing of the vectors is written (the store's cache is all);
/// a workspace that crosses it gets a graph and its dump, and one back below it drops
/// them and ranks as before.
#[test]
fn the_vector_index_switches_kind_across_the_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir) = (tmp.path().join("ws"), tmp.path().join("index"));
    write_tree(&root);
    let open = |config: Config| Engine::open_for_writing(&root, config, dir.clone()).unwrap();

    let mut engine = open(config());
    let first = engine.index(false, &NoProgress).unwrap();
    assert!(engine.shared_vectors().current().unwrap().is_exact());
    let exact = rankings(&mut engine);
    assert!(graph_files(&dir).is_empty(), "{:?}", graph_files(&dir));
    drop(engine);

    // A threshold below the index's size: the first search builds the graph and dumps it.
    let mut small = config();
    small.index.exact_search_below = (first.chunks_added / 2) as usize;
    let mut engine = open(small.clone());
    assert_eq!(engine.index(false, &NoProgress).unwrap().files_changed, 0);
    let graph = rankings(&mut engine);
    assert!(!engine.shared_vectors().current().unwrap().is_exact());
    assert!(graph_files(&dir).contains(&"vectors.json".to_string()));
    assert!(graph.iter().all(|r| r.len() == 10));
    drop(engine);
    // The next start loads that dump.
    let mut engine = open(small);
    assert_eq!(rankings(&mut engine), graph);
    drop(engine);

    // Back under the threshold: a run that changes something drops the graph and its
    // files; the rankings are the exact ones again.
    let touched = root.join("mod_0/file_0.rs");
    std::fs::File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    let mut engine = open(config());
    engine.index(false, &NoProgress).unwrap();
    assert!(engine.shared_vectors().current().unwrap().is_exact());
    assert!(graph_files(&dir).is_empty(), "{:?}", graph_files(&dir));
    assert_eq!(rankings(&mut engine), exact);
}
