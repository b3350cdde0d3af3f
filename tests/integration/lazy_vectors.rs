//! What keeps a large index cheap to reopen: re-indexing an unchanged tree does not load
//! the vector graph, and the server's engines (lazy shared vectors) answer lexically at
//! once while the graph loads in the background.

use ragls::ann::SharedVectors;
use ragls::config::{Config, EmbeddingProvider};
use ragls::engine::{Engine, NoProgress};
use std::path::Path;
use std::time::{Duration, Instant};

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src")).unwrap();
    for (name, body) in [
        (
            "ledger",
            "Reconciles the ledger entries against the bank statement.",
        ),
        (
            "socket",
            "Opens a socket and retries the connection with backoff.",
        ),
        (
            "parser",
            "Parses a generic type parameter list of a declaration.",
        ),
    ] {
        std::fs::write(
            root.join(format!("src/{name}.rs")),
            format!("/// {body}\npub fn {name}_entry(input: &[u8]) -> usize {{\n    input.len() * 2 + 1\n}}\n"),
        )
        .unwrap();
    }
}

fn config() -> Config {
    let mut c = Config::default();
    c.embedding.provider = EmbeddingProvider::Builtin;
    c
}

#[test]
fn an_unchanged_tree_is_reindexed_without_loading_the_graph() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir) = (tmp.path().join("ws"), tmp.path().join("index"));
    write_tree(&root);
    let mut first = Engine::open_for_writing(&root, config(), dir.clone()).unwrap();
    first.index(false, &NoProgress).unwrap();
    assert!(first.shared_vectors().is_loaded());
    drop(first);

    let mut engine = Engine::open_for_writing(&root, config(), dir).unwrap();
    let report = engine.index(false, &NoProgress).unwrap();
    assert_eq!(report.files_changed, 0, "{report:?}");
    assert!(!engine.shared_vectors().is_loaded());
    // A search (outside the server) loads it when it needs it.
    let hits = engine.search("bank statement ledger", 3, true).unwrap();
    assert!(hits[0].chunk.path.ends_with("ledger.rs"), "{hits:?}");
    assert!(engine.shared_vectors().is_loaded());
}

#[test]
fn a_lazy_engine_answers_at_once_and_loads_the_graph_in_the_background() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir) = (tmp.path().join("ws"), tmp.path().join("index"));
    write_tree(&root);
    Engine::open_for_writing(&root, config(), dir.clone())
        .unwrap()
        .index(false, &NoProgress)
        .unwrap();

    let vectors = SharedVectors::lazy();
    let mut engine =
        Engine::open_for_writing_with(&root, config(), dir.clone(), vectors.clone()).unwrap();
    engine.index(false, &NoProgress).unwrap();
    let hits = engine.search("socket connection backoff", 3, true).unwrap();
    assert!(hits[0].chunk.path.ends_with("socket.rs"), "{hits:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !vectors.is_loaded() {
        assert!(Instant::now() < deadline, "the graph never loaded");
        std::thread::sleep(Duration::from_millis(10));
    }
    let hits = engine.search("generic type parameter", 3, true).unwrap();
    assert!(hits[0].chunk.path.ends_with("parser.rs"), "{hits:?}");
}
