//! `ragls eval` on a fixture workspace: a hand-made query set gives hand-computed figures,
//! and `--generate` makes its set from the workspace's doc comments (removed from a copy,
//! the workspace itself untouched).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ragls");

const FILES: &[(&str, &str)] = &[
    (
        "src/retry.rs",
        "/// Calls the operation again after each failure, waiting twice as long every time.\npub fn retry_with_backoff(attempts: u32) -> u32 {\n    let mut delay = 1;\n    for _ in 0..attempts {\n        delay *= 2;\n    }\n    delay\n}\n",
    ),
    (
        "src/cache.rs",
        "/// Removes the least recently used entry from the cache storage.\npub fn evict_oldest(entries: &mut Vec<u32>) {\n    if !entries.is_empty() {\n        entries.remove(0);\n    }\n}\n\n/// Too short.\npub fn tiny() {}\n",
    ),
    (
        "src/tokenize.py",
        "def split_identifier(name):\n    \"\"\"Splits a camelCase or snake_case identifier into words.\"\"\"\n    return name.replace('_', ' ').split()\n",
    ),
];

fn workspace() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (rel, text) in FILES {
        let p = tmp.path().join("ws").join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    std::fs::create_dir_all(tmp.path().join("cache")).expect("mkdir");
    tmp
}

fn eval(tmp: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("eval")
        .arg("--workspace")
        .arg(tmp.join("ws"))
        .args(args)
        .arg("--json")
        .env("XDG_CACHE_HOME", tmp.join("cache"))
        .env("XDG_CONFIG_HOME", tmp.join("config"))
        .env_remove("OPENROUTER_API_KEY")
        // A developer's shared index must not leak into the tests.
        .env_remove("RAGLS_STORE_URL")
        .env_remove("RAGLS_STORE_REF")
        .output()
        .expect("ragls runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn a_hand_made_query_set_gives_hand_computed_figures() {
    let tmp = workspace();
    // q1: the retry function (found first, chunk and file);
    // q2: gold in a file that does not exist (missed at both levels);
    // q3: gold is the whole file holding the answer (a hit at both levels);
    // q4: gold is other lines of the right file (a chunk miss, a file hit at rank 1).
    let queries = [
        r#"{"id": "q1", "query": "retry_with_backoff", "gold": [{"path": "src/retry.rs", "start_line": 2, "end_line": 8}]}"#,
        r#"{"id": "q2", "query": "evict_oldest", "gold": [{"path": "src/missing.rs", "start_line": 1, "end_line": 5}]}"#,
        r#"{"id": "q3", "query": "split_identifier", "gold": [{"path": "src/tokenize.py"}]}"#,
        r#"{"id": 4, "query": "evict_oldest", "gold": [{"path": "src/cache.rs", "start_line": 100, "end_line": 120}]}"#,
    ];
    let file = tmp.path().join("queries.jsonl");
    std::fs::write(&file, queries.join("\n")).expect("write");
    let report = eval(tmp.path(), &["--queries", file.to_str().expect("utf-8")]);
    assert_eq!(report["queries"], 4);
    // chunk ranks 1, -, 1, -: recall@k 2/4, MRR (1 + 1) / 4, nDCG the same.
    let chunk = &report["chunk"];
    for key in ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"] {
        assert_eq!(chunk[key], 0.5, "chunk {key}: {report}");
    }
    // file ranks 1, -, 1, 1: 3/4 everywhere.
    let files = &report["file"];
    for key in ["recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10"] {
        assert_eq!(files[key], 0.75, "file {key}: {report}");
    }
}

#[test]
fn generate_makes_queries_from_doc_comments_of_a_copy() {
    let tmp = workspace();
    let saved = tmp.path().join("generated.jsonl");
    let report = eval(
        tmp.path(),
        &[
            "--generate",
            "10",
            "--save-queries",
            saved.to_str().expect("utf-8"),
            "--set",
            "retrieve.vector_weight=0.3",
        ],
    );
    // `tiny`'s doc has fewer than four words; the others make one query each.
    assert_eq!(report["queries"], 3, "{report}");
    assert_eq!(report["settings"][0], "retrieve.vector_weight=0.3");
    let lines: Vec<Value> = std::fs::read_to_string(&saved)
        .expect("saved")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let mut golds: Vec<String> = lines
        .iter()
        .map(|l| {
            let g = &l["gold"][0];
            format!(
                "{}:{}-{} {}",
                g["path"].as_str().unwrap_or(""),
                g["start_line"],
                g["end_line"],
                l["query"].as_str().unwrap_or("")
            )
        })
        .collect();
    golds.sort();
    assert_eq!(
        golds,
        [
            "src/cache.rs:2-6 Removes the least recently used entry from the cache storage.",
            "src/retry.rs:2-8 Calls the operation again after each failure, waiting twice as long every time.",
            "src/tokenize.py:1-3 Splits a camelCase or snake_case identifier into words.",
        ]
    );
    // The workspace keeps its doc comments: only the copy was stripped.
    let original = std::fs::read_to_string(tmp.path().join("ws/src/retry.rs")).expect("read");
    assert!(original.starts_with("/// Calls the operation again"));
}
