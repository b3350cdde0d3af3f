//! Specifications of the `ragls` command line (PROTOCOL.md, "CLI"), run against the real
//! binary on a small multi-language project written by each test into its own temporary
//! folder (see `common`).

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Output;

// ---------------------------------------------------------------------------------------
// Search
// ---------------------------------------------------------------------------------------

#[test]
fn search_finds_the_retry_helper_for_a_question_about_exponential_backoff() {
    let sb = Sandbox::with_project();
    sb.index();
    let q = "retry a request with exponential backoff";
    let results = sb.search(q);
    let rank = assert_in_top(&results, 3, &retry_with_backoff(), q);
    assert_eq!(
        rank,
        0,
        "{q:?}: the retry helper should come first:\n{}",
        brief(&results)
    );
}

#[test]
fn search_finds_the_lru_evict_method_with_its_impl_symbol_path() {
    let sb = Sandbox::with_project();
    sb.index();
    let q = "evict the least recently used entry";
    let results = sb.search(q);
    let expect = lru_evict();
    // The symbol path names the impl block (with its type parameters) and the method.
    assert_eq!(expect.symbol, "impl LruCache<K, V> > fn evict");
    let rank = assert_in_top(&results, 3, &expect, q);
    assert_eq!(
        rank,
        0,
        "{q:?}: evict should come first:\n{}",
        brief(&results)
    );
}

#[test]
fn search_finds_functions_in_every_language_of_the_project() {
    let sb = Sandbox::with_project();
    sb.index();
    let cases = [
        (
            "parse the HTTP request line into method, target and version",
            parse_request_line(),
        ),
        (
            "load configuration from a file and environment variables",
            config_load(),
        ),
        (
            "token bucket rate limiter: may this request pass?",
            token_bucket_allow(),
        ),
        (
            "postpone calling a function until the user stops typing",
            debounce(),
        ),
    ];
    for (q, expect) in cases {
        let results = sb.search(q);
        assert_in_top(&results, 3, &expect, q);
    }
}

#[test]
fn search_results_carry_language_and_snippet_in_json_mode() {
    let sb = Sandbox::with_project();
    sb.index();
    let results = sb.search("evict the least recently used entry");
    let first = &results[0];
    assert_eq!(first["language"], "rust");
    let snippet = first["snippet"].as_str().expect("snippet");
    assert!(snippet.contains("pub fn evict(&mut self)"), "{snippet}");
}

#[test]
fn search_respects_top_k() {
    let sb = Sandbox::with_project();
    sb.index();
    let out = sb.ragls(
        "search",
        &["--json", "--top-k", "2", "parse the HTTP request"],
    );
    let v = json_of(&ok(out, "search --top-k 2"));
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty() && results.len() <= 2, "{v}");
}

#[test]
fn search_in_text_mode_prints_path_and_lines_of_each_result() {
    let sb = Sandbox::with_project();
    sb.index();
    let stdout = ok(
        sb.ragls("search", &["evict the least recently used entry"]),
        "search",
    );
    let e = lru_evict();
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{}:{}-{}", e.path, e.start_line, e.end_line))
            && first.contains(e.symbol),
        "first line should name {e:?}, got:\n{stdout}"
    );
}

#[test]
fn search_explain_figures_are_consistent_with_the_ranking() {
    let sb = Sandbox::with_project();
    // Few vector candidates, so some results are found lexically only.
    sb.write(".ragls.toml", "[retrieve]\nvector_candidates = 3\n");
    sb.index();
    let q = "evict the least recently used entry";
    let search = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["--json", "--explain", "--top-k", "10"];
        all.extend_from_slice(args);
        all.push(q);
        json_of(&ok(sb.ragls("search", &all), "search --explain"))["results"]
            .as_array()
            .expect("results")
            .clone()
    };
    let rank = |r: &Value, list: &str| r["explain"][list]["rank"].as_u64();
    let score = |r: &Value, list: &str| r["explain"][list]["score"].as_f64();

    // Without rerank the results are in fused order, scored by the fused score.
    let fused = search(&["--no-rerank"]);
    assert!(fused.len() > 3, "{}", brief(&fused));
    let fused_ranks: Vec<u64> = fused.iter().map(|r| rank(r, "fused").unwrap()).collect();
    assert_eq!(fused_ranks, (1..=fused.len() as u64).collect::<Vec<_>>());
    for r in &fused {
        assert_eq!(score(r, "fused"), r["score"].as_f64(), "{r}");
        assert!(r["explain"].get("offline").is_none(), "{r}");
        assert!(
            rank(r, "lexical").is_some() || rank(r, "vector").is_some(),
            "{r}"
        );
        assert!(rank(r, "vector").is_none_or(|v| v <= 3), "{r}");
    }
    // Lexical ranks follow the BM25 scores; the best BM25 score is lexical rank 1.
    let mut lexical: Vec<(f64, u64)> = fused
        .iter()
        .filter_map(|r| Some((score(r, "lexical")?, rank(r, "lexical")?)))
        .collect();
    lexical.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(lexical.first().map(|l| l.1), Some(1), "{lexical:?}");
    assert!(lexical.windows(2).all(|w| w[0].1 < w[1].1), "{lexical:?}");
    // A hit found only lexically has no vector figures.
    let only_lexical = fused
        .iter()
        .find(|r| rank(r, "vector").is_none())
        .expect("with 3 vector candidates, some hits are lexical only");
    assert!(only_lexical["explain"].get("vector").is_none());
    assert!(rank(only_lexical, "lexical").is_some());

    // With the offline rerank, each result shows the scorer's figures, and its score.
    let reranked = search(&[]);
    for r in &reranked {
        let o = &r["explain"]["offline"];
        assert_eq!(o["score"].as_f64(), r["score"].as_f64(), "{r}");
        for f in ["fused", "name", "symbol", "path", "kind"] {
            let x = o[f].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&x), "{f} of {r}");
        }
        assert!(rank(r, "fused").is_some(), "{r}");
    }

    // A query that is one identifier lifts its definition by a prior, shown with its delta.
    let out = ok(
        sb.ragls("search", &["--json", "--explain", "--no-rerank", "evict"]),
        "search --explain evict",
    );
    let first = json_of(&out)["results"][0].clone();
    let e = &first["explain"];
    assert_eq!(e["priors"][0]["prior"], "identifier", "{first}");
    let delta = e["priors"][0]["delta"].as_f64().unwrap_or_default();
    let (fused, score) = (
        score(&first, "fused").unwrap(),
        first["score"].as_f64().unwrap(),
    );
    assert!(
        (fused + delta - score).abs() < 1e-3,
        "fused + prior = score: {first}"
    );

    // Text mode: the figures under each result; without --explain, none.
    let text = ok(sb.ragls("search", &["--explain", q]), "search --explain");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].trim_start().starts_with("lexical: "), "{text}");
    assert!(lines[3].trim_start().starts_with("fused: "), "{text}");
    assert!(text.contains("offline rerank: "), "{text}");
    let plain = ok(sb.ragls("search", &[q]), "search");
    assert!(!plain.contains("lexical: "), "{plain}");
}

// ---------------------------------------------------------------------------------------
// Batch mode
// ---------------------------------------------------------------------------------------

/// The last alphanumeric word of a symbol path: `impl LruCache<K, V> > fn evict` -> `evict`.
fn last_word(symbol: &str) -> Option<&str> {
    symbol
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .rfind(|w| !w.is_empty())
}

/// Checks one batch result against the file on disk: relative path, 1-based inclusive
/// lines within the file, non-blank first and last lines, and the symbol's name inside.
fn check_result_against_file(sb: &Sandbox, r: &Value) {
    let keys: BTreeSet<&str> = r
        .as_object()
        .expect("result is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["path", "start_line", "end_line", "score", "symbol", "kind"]),
        "batch results have exactly these keys: {r}"
    );
    let path = r["path"].as_str().expect("path is a string");
    assert!(
        !path.starts_with('/') && !path.starts_with("./") && !path.contains('\\'),
        "path is workspace-relative: {path}"
    );
    assert!(sb.path(path).is_file(), "{path} is a file of the workspace");
    assert!(r["score"].is_number(), "{r}");
    assert!(r["kind"].as_str().is_some_and(|k| !k.is_empty()), "{r}");
    let text = sb.read(path);
    let lines: Vec<&str> = text.lines().collect();
    let (start, end) = (u(r, "start_line") as usize, u(r, "end_line") as usize);
    assert!(
        1 <= start && start <= end && end <= lines.len(),
        "lines {start}-{end} of {path} ({} lines)",
        lines.len()
    );
    assert!(
        !lines[start - 1].trim().is_empty(),
        "{path}:{start} (start_line) is blank"
    );
    assert!(
        !lines[end - 1].trim().is_empty(),
        "{path}:{end} (end_line) is blank"
    );
    let symbol = r["symbol"].as_str().expect("symbol is a string");
    if let Some(name) = last_word(symbol) {
        let body = lines[start - 1..end].join("\n");
        assert!(
            body.contains(name),
            "{path}:{start}-{end} should contain {name:?} (symbol {symbol:?}):\n{body}"
        );
    }
}

#[test]
fn batch_search_writes_one_line_per_query_with_the_id_echoed() {
    let sb = Sandbox::with_project();
    sb.index();
    let queries = sb.tmp.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        concat!(
            r#"{"id": "q-backoff", "query": "retry a request with exponential backoff"}"#,
            "\n",
            r#"{"id": 7, "query": "evict the least recently used entry"}"#,
            "\n\n",
            r#"{"id": "q-config", "query": "load configuration from a file and environment variables"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = sb
        .command()
        .args(["search", "--workspace"])
        .arg(&sb.ws)
        .arg("--index-dir")
        .arg(&sb.index)
        .args(["--top-k", "5", "--queries"])
        .arg(&queries)
        .output()
        .unwrap();
    let stdout = ok(out, "search --queries");
    let lines: Vec<Value> = stdout.lines().map(json_of).collect();
    assert_eq!(lines.len(), 3, "one line per (non-blank) query:\n{stdout}");
    assert_eq!(lines[0]["id"], "q-backoff");
    assert_eq!(lines[1]["id"], 7, "a number id stays a number");
    assert_eq!(lines[2]["id"], "q-config");
    let expected = [retry_with_backoff(), lru_evict(), config_load()];
    for (line, expect) in lines.iter().zip(&expected) {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            BTreeSet::from_iter(keys),
            BTreeSet::from(["id", "results"]),
            "{line}"
        );
        let results = line["results"].as_array().expect("results array");
        assert!(!results.is_empty() && results.len() <= 5, "{line}");
        for r in results {
            check_result_against_file(&sb, r);
        }
        assert_in_top(results, 3, expect, &line["id"].to_string());
    }
    // The line at start_line of the expected chunk is part of the function.
    let e = lru_evict();
    let text = sb.read(e.path);
    let first = text.lines().nth(e.start_line as usize - 1).unwrap();
    assert!(
        first.contains("Evicts the least recently used entry"),
        "{first}"
    );
    let last = text.lines().nth(e.end_line as usize - 1).unwrap();
    assert_eq!(last, "    }");
}

#[test]
fn batch_search_rejects_a_line_that_is_not_a_query() {
    let sb = Sandbox::with_project();
    sb.index();
    let queries = sb.tmp.path().join("bad.jsonl");
    std::fs::write(
        &queries,
        "{\"id\": 1, \"query\": \"parse\"}\nnot json at all\n",
    )
    .unwrap();
    let out = sb.ragls("search", &["--queries", queries.to_str().unwrap()]);
    assert_one_line_error(&out, 2, &["bad.jsonl:2"]);
}

// ---------------------------------------------------------------------------------------
// Incremental indexing
// ---------------------------------------------------------------------------------------

const REPORT_KEYS: [&str; 13] = [
    "filesSeen",
    "filesUnchanged",
    "filesChanged",
    "filesRemoved",
    "chunksAdded",
    "chunksRemoved",
    "chunksKept",
    "embedded",
    "cached",
    "skipped",
    "failed",
    "rebuilt",
    "elapsedMs",
];

#[test]
fn index_json_prints_a_camel_case_report() {
    let sb = Sandbox::with_project();
    let r = sb.index();
    for key in REPORT_KEYS {
        assert!(r.get(key).is_some(), "report lacks {key}: {r}");
    }
    assert_eq!(u(&r, "filesSeen"), FIXTURE.len() as u64);
    assert_eq!(u(&r, "filesChanged"), FIXTURE.len() as u64);
    assert_eq!(u(&r, "filesUnchanged"), 0);
    assert!(u(&r, "chunksAdded") >= FIXTURE.len() as u64, "{r}");
    assert_eq!(
        u(&r, "embedded") + u(&r, "cached"),
        u(&r, "chunksAdded"),
        "{r}"
    );
    assert_eq!(r["rebuilt"], false);
    assert_eq!(r["failed"], serde_json::json!([]));
}

#[test]
fn reindexing_an_unchanged_tree_is_a_no_op() {
    let sb = Sandbox::with_project();
    let first = sb.index();
    let second = sb.index();
    assert_eq!(u(&second, "filesSeen"), u(&first, "filesSeen"));
    assert_eq!(
        u(&second, "filesUnchanged"),
        FIXTURE.len() as u64,
        "{second}"
    );
    assert_eq!(u(&second, "filesChanged"), 0, "{second}");
    assert_eq!(u(&second, "filesRemoved"), 0, "{second}");
    assert_eq!(u(&second, "chunksAdded"), 0, "{second}");
    assert_eq!(u(&second, "chunksRemoved"), 0, "{second}");
    assert_eq!(u(&second, "embedded"), 0, "{second}");
    let status = sb.status();
    assert_eq!(u(&status, "chunks"), u(&first, "chunksAdded"));
}

#[test]
fn an_edited_function_is_reembedded_and_the_rest_of_its_file_is_kept() {
    let sb = Sandbox::with_project();
    sb.index();
    let chunks_before = u(&sb.status(), "chunks");
    // Rename `evict` (and its one caller, `put`): two chunks of lru.rs change, the others
    // (block, new, get, detach, attach_front...) keep their text.
    let edited = LRU_RS
        .replace("self.evict();", "self.discard_stalest();")
        .replace(
            "/// Evicts the least recently used entry: unlinks the tail",
            "/// Discards the stalest entry: unlinks the tail",
        )
        .replace(
            "pub fn evict(&mut self)",
            "pub fn discard_stalest(&mut self)",
        );
    assert_ne!(edited, LRU_RS);
    sb.write("src/cache/lru.rs", &edited);
    sb.set_mtime("src/cache/lru.rs", 1_500_000_000);
    let r = sb.index();
    assert_eq!(u(&r, "filesChanged"), 1, "{r}");
    assert_eq!(u(&r, "filesUnchanged"), FIXTURE.len() as u64 - 1, "{r}");
    assert_eq!(u(&r, "chunksAdded"), 2, "only put and evict changed: {r}");
    assert_eq!(u(&r, "chunksRemoved"), 2, "{r}");
    assert_eq!(
        u(&r, "embedded"),
        2,
        "only the changed chunks are embedded: {r}"
    );
    assert!(
        u(&r, "chunksKept") >= 3,
        "the unchanged functions of lru.rs are kept: {r}"
    );
    assert_eq!(u(&sb.status(), "chunks"), chunks_before);

    let results = sb.search("discard stalest entry");
    let (start_line, end_line) = span_of(&edited, "/// Discards the stalest entry", "    }");
    let expect = Expect {
        path: "src/cache/lru.rs",
        start_line,
        end_line,
        symbol: "impl LruCache<K, V> > fn discard_stalest",
        kind: "method",
    };
    assert_in_top(&results, 1, &expect, "discard stalest entry");
    let results = sb.search("evict");
    assert!(
        results.iter().all(|r| !r["symbol"]
            .as_str()
            .unwrap_or_default()
            .ends_with("fn evict")),
        "the old name is gone:\n{}",
        brief(&results)
    );
}

#[test]
fn kept_chunks_move_with_their_function_when_lines_are_inserted_above() {
    let sb = Sandbox::with_project();
    sb.index();
    // Three new lines at the top of the file shift every function down by three.
    let edited =
        format!("// Copyright 2024 Orchard authors.\n// SPDX-License-Identifier: MIT\n\n{LRU_RS}");
    sb.write("src/cache/lru.rs", &edited);
    let r = sb.index();
    assert_eq!(u(&r, "filesChanged"), 1, "{r}");
    assert!(u(&r, "chunksKept") >= 3, "{r}");
    let e = lru_evict();
    let moved = Expect {
        start_line: e.start_line + 3,
        end_line: e.end_line + 3,
        ..e
    };
    assert_in_top(
        &sb.search("evict the least recently used entry"),
        1,
        &moved,
        "after the shift",
    );
}

#[test]
fn a_deleted_file_leaves_the_index() {
    let sb = Sandbox::with_project();
    sb.index();
    let chunks_before = u(&sb.status(), "chunks");
    std::fs::remove_file(sb.path("client/retry.py")).unwrap();
    let r = sb.index();
    assert_eq!(u(&r, "filesRemoved"), 1, "{r}");
    assert_eq!(u(&r, "filesChanged"), 0, "{r}");
    assert!(u(&r, "chunksRemoved") >= 2, "{r}");
    let status = sb.status();
    assert_eq!(u(&status, "files"), FIXTURE.len() as u64 - 1);
    assert_eq!(u(&status, "chunks"), chunks_before - u(&r, "chunksRemoved"));
    let results = sb.search("retry a request with exponential backoff");
    assert!(
        !paths_of(&results).contains(&"client/retry.py".to_string()),
        "{}",
        brief(&results)
    );
}

#[test]
fn a_renamed_file_is_found_under_its_new_path_only() {
    let sb = Sandbox::with_project();
    sb.index();
    std::fs::rename(sb.path("client/retry.py"), sb.path("client/backoff.py")).unwrap();
    let r = sb.index();
    assert_eq!(u(&r, "filesRemoved"), 1, "{r}");
    assert_eq!(u(&r, "filesChanged"), 1, "{r}");
    let results = sb.search("retry a request with exponential backoff");
    let paths = paths_of(&results);
    assert!(
        !paths.contains(&"client/retry.py".to_string()),
        "{}",
        brief(&results)
    );
    let expect = Expect {
        path: "client/backoff.py",
        ..retry_with_backoff()
    };
    assert_in_top(&results, 1, &expect, "after the rename");
}

// ---------------------------------------------------------------------------------------
// What is not indexed
// ---------------------------------------------------------------------------------------

/// The fixture plus one file for each reason not to index it, each with a unique word.
fn project_with_files_not_to_index() -> Sandbox {
    let sb = Sandbox::with_project();
    let largest = FIXTURE.iter().map(|(_, t)| t.len()).max().unwrap();
    let cap = 8000;
    assert!(largest < cap, "the fixture's files must fit under the cap");
    sb.write(".ragls.toml", format!("[index]\nmax_file_bytes = {cap}\n"));
    sb.write(".gitignore", "scratch_notes.md\nprivate/\n");
    sb.write(
        "scratch_notes.md",
        "# Scratch\n\nThe zanzibar rollout plan, not for the index.\n",
    );
    sb.write(
        "private/payroll.rs",
        "/// Pays the quokka team.\npub fn quokka_payroll() -> u32 { 42 }\n",
    );
    sb.write(
        ".env",
        "API_TOKEN=sk-test-123\nDATABASE_URL=postgres://marmoset@localhost/orchard\n",
    );
    sb.write("id_rsa", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA pangolin\n-----END OPENSSH PRIVATE KEY-----\n");
    sb.write(
        "assets/logo.bin",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR wombat sprite\0\0\x01\x02".as_slice(),
    );
    let mut big = String::from(
        "//! Generated lookup table of okapi coefficients.\n\npub const OKAPI: &[u32] = &[\n",
    );
    while big.len() <= cap + 1000 {
        big.push_str("    1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987,\n");
    }
    big.push_str("];\n");
    sb.write("src/okapi_table.rs", &big);
    sb
}

#[test]
fn ignored_secret_binary_and_oversized_files_are_not_searchable() {
    let sb = project_with_files_not_to_index();
    sb.index();
    let hidden = [
        ("zanzibar rollout plan", "scratch_notes.md"),
        ("quokka payroll", "private/payroll.rs"),
        ("API_TOKEN sk-test-123", ".env"),
        ("marmoset postgres database url", ".env"),
        ("pangolin private key", "id_rsa"),
        ("wombat sprite", "assets/logo.bin"),
        ("okapi coefficients lookup table", "src/okapi_table.rs"),
    ];
    for (q, path) in hidden {
        let results = sb.search(q);
        assert!(
            !paths_of(&results).iter().any(|p| p == path),
            "{q:?} must not find {path}:\n{}",
            brief(&results)
        );
        for r in &results {
            let snippet = r["snippet"].as_str().unwrap_or_default();
            assert!(
                !snippet.contains("sk-test-123"),
                "the secret leaked into a result: {r}"
            );
        }
    }
    // The project's own code is still found.
    assert_in_top(
        &sb.search("retry a request with exponential backoff"),
        3,
        &retry_with_backoff(),
        "retry",
    );
}

#[test]
fn status_counts_skipped_files_by_reason() {
    let sb = project_with_files_not_to_index();
    let r = sb.index();
    let status = sb.status();
    let skipped = &status["skipped"];
    assert_eq!(skipped["secret"], 2, "{status}");
    assert_eq!(skipped["binary"], 1, "{status}");
    assert_eq!(skipped["too_large"], 1, "{status}");
    assert!(skipped.get("generated").is_none(), "{status}");
    // Gitignored files are not seen at all, so they are not counted as skipped.
    let total: u64 = skipped
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 4, "{status}");
    assert_eq!(
        r["skipped"], *skipped,
        "the index report gives the same counts"
    );
    // Indexed: the fixture plus .ragls.toml and .gitignore (text files).
    assert_eq!(u(&status, "files"), FIXTURE.len() as u64 + 2, "{status}");
}

#[test]
fn a_raglsignore_negation_re_includes_a_gitignored_file() {
    let sb = project_with_files_not_to_index();
    sb.index();
    assert!(
        !paths_of(&sb.search("zanzibar rollout plan")).contains(&"scratch_notes.md".to_string())
    );
    sb.write(".raglsignore", "!scratch_notes.md\n");
    let r = sb.index();
    assert!(u(&r, "filesChanged") >= 1, "{r}");
    let results = sb.search("zanzibar rollout plan");
    assert_eq!(
        results[0]["path"],
        "scratch_notes.md",
        "{}",
        brief(&results)
    );
    // The directory excluded by .gitignore stays out: it was not re-included.
    assert!(!paths_of(&sb.search("quokka payroll")).contains(&"private/payroll.rs".to_string()));
}

// ---------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------

#[test]
fn status_after_indexing_is_ready_with_counts_and_the_builtin_embedder() {
    let sb = Sandbox::with_project();
    let r = sb.index();
    let s = sb.status();
    assert_eq!(s["state"], "ready", "{s}");
    assert_eq!(u(&s, "files"), FIXTURE.len() as u64);
    assert_eq!(u(&s, "chunks"), u(&r, "chunksAdded"));
    assert_eq!(u(&s, "pendingFiles"), 0);
    assert!(u(&s, "indexBytes") > 0);
    let e = &s["embedding"];
    assert_eq!(e["provider"], "builtin", "{s}");
    assert!(e["model"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
    assert!(u(e, "dimensions") > 0, "{s}");
    assert!(s.get("lastError").is_none(), "{s}");
}

#[test]
fn status_counts_a_touched_file_as_pending_until_the_next_index() {
    let sb = Sandbox::with_project();
    sb.index();
    sb.set_mtime("server/handlers.go", 1_400_000_000);
    let s = sb.status();
    assert_eq!(u(&s, "pendingFiles"), 1, "{s}");
    assert_eq!(s["state"], "ready");
    // Same content, new mtime: nothing is re-embedded, and nothing is pending after.
    let r = sb.index();
    assert_eq!(u(&r, "embedded"), 0, "{r}");
    assert_eq!(u(&r, "chunksAdded"), 0, "{r}");
    assert_eq!(u(&sb.status(), "pendingFiles"), 0);
}

#[test]
fn status_counts_new_and_deleted_files_as_pending() {
    let sb = Sandbox::with_project();
    sb.index();
    sb.write("client/new_module.py", "def brand_new():\n    return 1\n");
    std::fs::remove_file(sb.path("server/handlers.go")).unwrap();
    assert_eq!(u(&sb.status(), "pendingFiles"), 2);
}

#[test]
fn status_before_any_index_says_how_to_build_one_and_creates_nothing() {
    let sb = Sandbox::with_project();
    let s = sb.status();
    assert_ne!(s["state"], "ready", "{s}");
    assert_eq!(u(&s, "files"), 0);
    let err = s["lastError"].as_str().expect("lastError says why");
    assert!(err.contains("ragls index"), "{err}");
    assert!(
        !sb.index.join("index.sqlite").exists(),
        "status must not create an index"
    );
}

// ---------------------------------------------------------------------------------------
// Ask (offline)
// ---------------------------------------------------------------------------------------

#[test]
fn ask_offline_answers_extractively_with_path_and_line_and_a_hint() {
    let sb = Sandbox::with_project();
    sb.index();
    let answer = ok(
        sb.ragls(
            "ask",
            &["how do we retry a request with exponential backoff?"],
        ),
        "ask",
    );
    let e = retry_with_backoff();
    assert!(
        answer.contains(&format!("{}:{}", e.path, e.start_line)),
        "cites {}:{}:\n{answer}",
        e.path,
        e.start_line
    );
    assert!(answer.contains(e.symbol), "{answer}");
    assert!(answer.contains("[1]"), "{answer}");
    assert!(
        answer.contains("OPENROUTER_API_KEY"),
        "says how to enable generation:\n{answer}"
    );
}

#[test]
fn ask_json_is_the_rag_ask_result_with_numbered_citations() {
    let sb = Sandbox::with_project();
    sb.index();
    let v = json_of(&ok(
        sb.ragls("ask", &["--json", "evict the least recently used entry"]),
        "ask --json",
    ));
    assert_eq!(v["mode"], "extractive", "{v}");
    assert!(
        v["answer"]
            .as_str()
            .is_some_and(|a| a.contains("OPENROUTER_API_KEY")),
        "{v}"
    );
    let citations = v["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{v}");
    for (i, c) in citations.iter().enumerate() {
        assert_eq!(
            u(c, "n"),
            i as u64 + 1,
            "citations are numbered from 1: {c}"
        );
        assert!(
            v["answer"]
                .as_str()
                .unwrap()
                .contains(&format!("[{}]", i + 1)),
            "answer cites [{}]",
            i + 1
        );
    }
    let sources = v["sources"].as_array().expect("sources");
    assert!(!sources.is_empty());
    for s in sources {
        let path = s["path"].as_str().expect("source path");
        assert!(sb.path(path).is_file(), "{s}");
        assert!(
            u(s, "start_line") >= 1 && u(s, "start_line") <= u(s, "end_line"),
            "{s}"
        );
    }
    let e = lru_evict();
    let first = &sources[0];
    assert_eq!(
        (
            first["path"].as_str().unwrap(),
            u(first, "start_line"),
            u(first, "end_line")
        ),
        (e.path, e.start_line, e.end_line)
    );
    assert_eq!(first["symbol"], e.symbol);
    assert_eq!(
        (
            citations[0]["path"].as_str().unwrap(),
            u(&citations[0], "start_line")
        ),
        (e.path, e.start_line)
    );
    assert!(
        v["models"]["embedding"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

// ---------------------------------------------------------------------------------------
// First use
// ---------------------------------------------------------------------------------------

#[test]
fn search_without_an_index_builds_one_first_and_says_so() {
    let sb = Sandbox::with_project();
    let out = sb.ragls(
        "search",
        &["--json", "retry a request with exponential backoff"],
    );
    let stderr = stderr_of(&out);
    let v = json_of(&ok(out, "search on a fresh workspace"));
    assert!(
        stderr.contains("no index") && stderr.contains("indexing"),
        "stderr says it indexes first:\n{stderr}"
    );
    let results = v["results"].as_array().unwrap();
    assert_in_top(results, 1, &retry_with_backoff(), "first search");
    // The index it built is the real one: the next index run has nothing to do.
    let r = sb.index();
    assert_eq!(u(&r, "filesChanged"), 0, "{r}");
    assert_eq!(u(&r, "embedded"), 0, "{r}");
}

#[test]
fn ask_without_an_index_builds_one_first() {
    let sb = Sandbox::with_project();
    let out = sb.ragls("ask", &["how are HTTP headers parsed?"]);
    let stderr = stderr_of(&out);
    let answer = ok(out, "ask on a fresh workspace");
    assert!(stderr.contains("indexing"), "{stderr}");
    assert!(answer.contains("src/http/request.rs:"), "{answer}");
}

#[test]
fn the_default_index_lives_under_xdg_cache_home() {
    let sb = Sandbox::with_project();
    let out = sb
        .command()
        .args(["index", "--workspace"])
        .arg(&sb.ws)
        .output()
        .unwrap();
    ok(out, "index without --index-dir");
    let cache = sb.tmp.path().join("cache/ragls");
    let dirs: Vec<_> = std::fs::read_dir(&cache)
        .expect("index under XDG_CACHE_HOME/ragls")
        .flatten()
        .collect();
    assert_eq!(dirs.len(), 1, "one index folder");
    assert!(dirs[0].path().join("index.sqlite").is_file());
    assert!(!sb.index.exists());
    // And the CLI finds it again without --index-dir.
    let out = sb
        .command()
        .args(["status", "--json", "--workspace"])
        .arg(&sb.ws)
        .output()
        .unwrap();
    let s = json_of(&ok(out, "status without --index-dir"));
    assert_eq!(s["state"], "ready", "{s}");
    assert_eq!(u(&s, "files"), FIXTURE.len() as u64);
}

// ---------------------------------------------------------------------------------------
// Errors: exit code 2 and one line on stderr
// ---------------------------------------------------------------------------------------

/// Asserts the exit code, that stderr is exactly one line starting with "ragls: error:",
/// that it contains each of `needles`, and that it is no panic or backtrace.
fn assert_one_line_error(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = stderr_of(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code; stderr:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{stderr}");
    assert!(lines[0].starts_with("ragls: error:"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    for n in needles {
        assert!(
            lines[0].contains(n),
            "stderr should mention {n:?}:\n{stderr}"
        );
    }
    lines[0].to_string()
}

#[test]
fn a_missing_workspace_folder_is_a_usage_error_naming_it() {
    let sb = Sandbox::empty();
    let missing = sb.tmp.path().join("no-such-project");
    for sub in ["index", "search", "status"] {
        let mut c = sb.command();
        c.arg(sub)
            .arg("--workspace")
            .arg(&missing)
            .arg("--index-dir")
            .arg(&sb.index);
        if sub == "search" {
            c.arg("anything");
        }
        let out = c.output().unwrap();
        assert_one_line_error(&out, 2, &["no-such-project"]);
        assert!(out.stdout.is_empty(), "{sub}: nothing on stdout");
    }
    assert!(
        !sb.index.exists(),
        "no index folder is created for a missing workspace"
    );
}

#[test]
fn a_malformed_workspace_settings_file_is_a_configuration_error_naming_it() {
    let sb = Sandbox::with_project();
    sb.write(".ragls.toml", "[index\nmax_file_bytes = 10\n");
    for sub in ["index", "status"] {
        let out = sb.ragls(sub, &[]);
        assert_one_line_error(&out, 2, &[".ragls.toml"]);
    }
}

#[test]
fn a_misspelt_setting_is_a_configuration_error_naming_the_file_and_the_key() {
    let sb = Sandbox::with_project();
    sb.write(".ragls.toml", "[index]\nmax_file_byte = 2000\n");
    let out = sb.ragls("index", &[]);
    assert_one_line_error(&out, 2, &[".ragls.toml", "max_file_byte"]);
}

#[test]
fn a_bad_user_settings_file_is_a_configuration_error_naming_it() {
    let sb = Sandbox::with_project();
    let user = sb.tmp.path().join("config/ragls/config.toml");
    std::fs::create_dir_all(user.parent().unwrap()).unwrap();
    std::fs::write(&user, "[rerank]\ntop_k = \"five\"\n").unwrap();
    let out = sb.ragls("search", &["anything"]);
    assert_one_line_error(&out, 2, &["config.toml"]);
}

#[test]
fn an_unreadable_queries_file_is_a_usage_error() {
    let sb = Sandbox::with_project();
    sb.index();
    let missing = sb.tmp.path().join("missing-queries.jsonl");
    let out = sb.ragls("search", &["--queries", missing.to_str().unwrap()]);
    assert_one_line_error(&out, 2, &["missing-queries.jsonl"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn an_unreadable_queries_file_is_reported_before_any_indexing_work() {
    let sb = Sandbox::with_project();
    let missing = sb.tmp.path().join("missing-queries.jsonl");
    let out = sb.ragls("search", &["--queries", missing.to_str().unwrap()]);
    assert_one_line_error(&out, 2, &["missing-queries.jsonl"]);
    assert!(
        !sb.index.join("index.sqlite").exists(),
        "no index is built for a batch that cannot run"
    );
}

/// Writes 8 KiB of bytes that are not an SQLite database where the index file belongs;
/// returns the file and its bytes.
fn write_corrupt_index(sb: &Sandbox) -> (std::path::PathBuf, Vec<u8>) {
    std::fs::create_dir_all(&sb.index).unwrap();
    let garbage: Vec<u8> = b"this is not an SQLite database, just some bytes. "
        .iter()
        .copied()
        .cycle()
        .take(8192)
        .collect();
    let db = sb.index.join("index.sqlite");
    std::fs::write(&db, &garbage).unwrap();
    (db, garbage)
}

#[test]
fn a_corrupt_index_is_reported_with_the_rebuild_hint_and_left_untouched() {
    let sb = Sandbox::with_project();
    let (db, garbage) = write_corrupt_index(&sb);
    for (sub, args) in [
        ("search", &["retry"][..]),
        ("index", &[][..]),
        ("status", &[][..]),
        ("ask", &["retry"][..]),
    ] {
        let out = sb.ragls(sub, args);
        assert_one_line_error(&out, 2, &["--rebuild"]);
        assert_eq!(
            std::fs::read(&db).unwrap(),
            garbage,
            "{sub} must leave the corrupt file as it was"
        );
    }
}

#[test]
fn rebuild_recovers_from_a_corrupt_index() {
    let sb = Sandbox::with_project();
    let (_, garbage) = write_corrupt_index(&sb);
    // The error message tells the user to run `ragls index --rebuild`: doing so must work
    // (or, at the very least, say which file to delete instead of repeating the advice).
    let out = sb.ragls("index", &["--rebuild", "--json"]);
    if !out.status.success() {
        let stderr = stderr_of(&out);
        panic!(
            "`ragls index --rebuild` on a corrupt index failed with {:?}; it should rebuild the index{}:\n{stderr}",
            out.status,
            if stderr.contains("--rebuild") { " (it repeats its own advice to run --rebuild)" } else { "" }
        );
    }
    let stderr = stderr_of(&out);
    let r = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(r["rebuilt"], true, "{r}");
    assert_eq!(u(&r, "filesChanged"), FIXTURE.len() as u64, "{r}");
    assert!(
        stderr.contains("could not be read"),
        "says what happened to the old index:\n{stderr}"
    );
    // The unreadable file is kept for inspection, not destroyed.
    let kept = std::fs::read_dir(&sb.index)
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path()).is_ok_and(|bytes| bytes == garbage));
    assert!(
        kept,
        "the corrupt database is kept somewhere in the index folder"
    );
    assert_in_top(
        &sb.search("retry a request with exponential backoff"),
        1,
        &retry_with_backoff(),
        "after rebuild",
    );
    assert_eq!(sb.status()["state"], "ready");
}

#[test]
fn rebuild_of_a_healthy_index_starts_over_and_reuses_cached_embeddings() {
    let sb = Sandbox::with_project();
    let first = sb.index();
    let out = sb.ragls("index", &["--rebuild", "--json"]);
    let r = json_of(&ok(out, "index --rebuild"));
    assert_eq!(r["rebuilt"], true, "{r}");
    assert_eq!(u(&r, "filesChanged"), FIXTURE.len() as u64, "{r}");
    assert_eq!(
        u(&r, "embedded"),
        0,
        "every vector comes from the cache: {r}"
    );
    assert_eq!(u(&r, "cached"), u(&first, "embedded"), "{r}");
    assert_eq!(u(&sb.status(), "chunks"), u(&first, "chunksAdded"));
}

#[test]
fn a_locked_index_is_reported_as_in_use() {
    let sb = Sandbox::with_project();
    sb.index();
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(sb.index.join("lock"))
        .unwrap();
    lock.try_lock().expect("the test takes the index lock");
    let out = sb.ragls("index", &[]);
    assert_one_line_error(&out, 2, &["in use"]);
    // Readers are not blocked by a writer.
    assert_in_top(
        &sb.search("evict the least recently used entry"),
        1,
        &lru_evict(),
        "while locked",
    );
    // A holder that is not indexing (an editor's idle server) leaves the state ready;
    // one that is indexing (it marks so in the index) shows as indexing.
    assert_eq!(sb.status()["state"], "ready");
    let db = rusqlite::Connection::open(sb.index.join("index.sqlite")).unwrap();
    db.execute("UPDATE meta SET value='1' WHERE key='indexing'", [])
        .unwrap();
    assert_eq!(sb.status()["state"], "indexing");
    lock.unlock().unwrap();
    drop(lock);
    let r = sb.index();
    assert_eq!(u(&r, "filesChanged"), 0, "{r}");
    assert_eq!(sb.status()["state"], "ready");
}

#[test]
fn below_the_exact_threshold_no_vector_file_is_written() {
    let sb = Sandbox::with_project();
    sb.index();
    let vector_files: Vec<String> = std::fs::read_dir(&sb.index)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("vectors"))
        .collect();
    assert!(vector_files.is_empty(), "{vector_files:?}");
    let results = sb.search("exponential backoff retry");
    assert!(!results.is_empty(), "the exact index answers");
}

#[test]
fn a_reader_rebuilds_a_missing_vector_dump_in_memory_and_leaves_the_file_to_the_writer() {
    let sb = Sandbox::with_project();
    // The HNSW graph, not the exact index a project this small gets by default.
    sb.write(".ragls.toml", "[index]\nexact_search_below = 0\n");
    sb.index();
    let sidecar = sb.index.join("vectors.json");
    assert!(sidecar.is_file(), "the writer dumps the vector graph");
    std::fs::remove_file(&sidecar).unwrap();

    // `search` only reads: it answers from a graph rebuilt in memory, writing nothing.
    let results = sb.search("exponential backoff retry");
    assert!(!results.is_empty(), "a reader still answers");
    assert!(
        !sidecar.exists(),
        "a reader must not rewrite the vector dump without the writer lock"
    );

    // The writer is the one process that rewrites it, on its next change.
    sb.write("src/extra.rs", "pub fn added_later() -> u32 { 7 }\n");
    sb.index();
    assert!(
        sidecar.is_file(),
        "the next index run writes the dump again"
    );
}
