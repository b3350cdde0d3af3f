//! Faults on the command line's side of the index: interior corruption of the database, a
//! FIFO in the workspace, bad settings, names that carry control characters. Each case is a
//! bug the fault probe found; each test failed before its fix.

use crate::common;
use crate::lsp_client;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command, killing it if it has not finished within `bound` (a hang detector, not
/// a timing assertion). Returns its output, or None when it hung.
fn run_bounded(mut cmd: Command, bound: Duration) -> Option<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ragls");
    let deadline = Instant::now() + bound;
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Overwrites the root page of table `table` in the database with garbage: the file still
/// opens (its header and schema are intact) but every query that reads the table fails.
fn corrupt_table(db: &Path, table: &str) {
    let (root, page_size) = {
        let conn = rusqlite::Connection::open(db).unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        // Fold the WAL into the file, so the garbage is not masked by newer pages.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        (root as u64, page_size as u64)
    };
    let mut bytes = std::fs::read(db).unwrap();
    let start = ((root - 1) * page_size) as usize;
    for (i, b) in bytes[start..start + page_size as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn interior_corruption_is_reported_with_advice_and_rebuild_sets_the_database_aside() {
    let sb = Sandbox::with_project();
    sb.index();
    let db = sb.index.join("index.sqlite");
    corrupt_table(&db, "chunks");

    // A change makes `index` read the damaged table.
    sb.write("src/extra.rs", "pub fn extra_helper() -> u32 { 7 }\n");
    let out = sb.ragls("index", &[]);
    let stderr = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "exit 2 (the user can fix it):\n{stderr}"
    );
    assert!(
        stderr.contains("damaged") && stderr.contains("ragls index --rebuild"),
        "says what is wrong and what to do:\n{stderr}"
    );
    let out = sb.ragls("search", &["evict the least recently used entry"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));

    let out = sb.ragls("index", &["--rebuild", "--json"]);
    let stdout = ok(out, "index --rebuild after interior corruption");
    let r = json_of(&stdout);
    assert_eq!(r["rebuilt"], true, "{r}");
    assert_eq!(u(&r, "filesChanged"), FIXTURE.len() as u64 + 1, "{r}");
    assert!(
        sb.index.join("index.sqlite.corrupt").is_file(),
        "the damaged database is kept aside for inspection"
    );
    assert_in_top(
        &sb.search("evict the least recently used entry"),
        3,
        &lru_evict(),
        "after the rebuild",
    );
}

#[cfg(unix)]
#[test]
fn a_fifo_in_the_workspace_never_blocks_indexing_and_is_counted_as_skipped() {
    let sb = Sandbox::with_project();
    let fifo = sb.path("src/pipe.rs");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let out = run_bounded(sb.ragls_cmd("index", &["--json"]), Duration::from_secs(120))
        .expect("`ragls index` blocked on a FIFO");
    let r = json_of(&ok(out, "index with a FIFO"));
    assert_eq!(u(&r, "filesSeen"), FIXTURE.len() as u64, "{r}");
    assert_eq!(r["skipped"]["special"], 1, "{r}");
    // The lock was released: the next run is not refused as "in use".
    let again = run_bounded(sb.ragls_cmd("index", &["--json"]), Duration::from_secs(120))
        .expect("the second run blocked");
    ok(again, "second index");
}

#[test]
fn bad_settings_are_refused_naming_the_file_and_the_key() {
    let cases = [
        (
            "[retrieve]\nlexical_weight = inf\n",
            "retrieve.lexical_weight",
        ),
        ("[retrieve]\nrrf_k = -1.0\n", "retrieve.rrf_k"),
        ("[rerank]\nmin_score = nan\n", "rerank.min_score"),
        ("[rerank]\ncandidates = 0\n", "rerank.candidates"),
        ("[retrieve]\nef_search = 100000000\n", "retrieve.ef_search"),
        (
            "[embedding]\nconcurrency = 100000000\n",
            "embedding.concurrency",
        ),
        (
            "[provider]\nmax_retries = 4294967295\n",
            "provider.max_retries",
        ),
        ("[index]\nexclude = [\"[unclosed\"]\n", "index.exclude"),
    ];
    for (toml, key) in cases {
        let sb = Sandbox::with_project();
        sb.write(".ragls.toml", toml);
        let out = sb.ragls("search", &["evict"]);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(
            stderr.contains(".ragls.toml") && stderr.contains(key),
            "{toml}: the error names the file and the key:\n{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
}

#[test]
fn top_k_over_the_servers_limit_is_refused_not_capped() {
    let sb = Sandbox::with_project();
    let out = sb.ragls("search", &["--top-k", "1000", "evict"]);
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("between 1 and 100"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_file_name_with_control_characters_is_printed_escaped() {
    let sb = Sandbox::with_project();
    let name = "src/evil\u{1b}[2J\nname.rs";
    sb.write(
        name,
        "pub fn quokka_escape_sequence_target() -> u8 { 27 }\n",
    );
    sb.index();
    let out = sb.ragls("search", &["quokka escape sequence target"]);
    let stdout = ok(out, "search");
    assert!(!stdout.contains('\u{1b}'), "raw ESC on stdout: {stdout:?}");
    assert!(
        stdout.contains("src/evil\\u{1b}[2J\\nname.rs"),
        "the name is shown escaped: {stdout:?}"
    );
}

#[test]
fn an_interrupted_first_index_says_it_is_incomplete_and_how_to_finish_it() {
    const N: usize = 300;
    let sb = Sandbox::empty();
    write_many_files(&sb, N);
    let out = sb
        .ragls_cmd("index", &[])
        .env("RAGLS_FAULT_ABORT_AFTER_BATCHES", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault injection kills the run");

    let s = sb.status();
    assert!(u(&s, "pendingFiles") > 0, "{s}");
    let said = s["lastError"].as_str().unwrap_or_default();
    assert!(
        said.contains("interrupted") && said.contains("ragls index"),
        "status says the last run was interrupted and how to finish it: {s}"
    );
    // A search answers from what was committed and says the index is incomplete.
    let q = many_fn(N - 1).replace('_', " ");
    let out = sb.ragls("search", &[&q]);
    let stderr = stderr_of(&out);
    ok(out, "search on an interrupted index");
    assert!(
        stderr.contains("incomplete") && stderr.contains("ragls index"),
        "{stderr}"
    );
    // Finishing it clears the note.
    let r = sb.index();
    assert_eq!(r["failed"], serde_json::json!([]), "{r}");
    let s = sb.status();
    assert_eq!(u(&s, "pendingFiles"), 0, "{s}");
    assert!(s["lastError"].is_null(), "{s}");
    let out = sb.ragls("search", &[&q]);
    assert!(!stderr_of(&out).contains("incomplete"));
}

#[test]
fn index_next_to_an_idle_server_says_the_server_keeps_the_index() {
    let sb = Sandbox::with_project();
    let ws = sb.ws.canonicalize().unwrap();
    let server = lsp_client::LspClient::spawn(&lsp_client::ServerOptions::new(BIN, sb.tmp.path()));
    server.initialize(&[&ws], serde_json::Value::Null, serde_json::json!({}));
    server.wait_ready(Duration::from_secs(120));
    // Same environment, default index folder: the one the server holds.
    let out = sb
        .command()
        .arg("index")
        .arg("--workspace")
        .arg(&ws)
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("running ragls server") && !stderr.contains("wait for it to finish"),
        "says who holds the index instead of asking to wait forever: {stderr}"
    );
    // Search still works next to it.
    let out = sb
        .command()
        .args(["search", "--workspace"])
        .arg(&ws)
        .arg("evict the least recently used entry")
        .output()
        .unwrap();
    ok(out, "search next to the server");
    server.shutdown_and_exit();
}

#[test]
fn the_server_resumes_an_interrupted_index() {
    const N: usize = 300;
    let sb = Sandbox::empty();
    write_many_files(&sb, N);
    let ws = sb.ws.canonicalize().unwrap();
    // Killed in the default index folder, the one the server opens.
    let out = sb
        .command()
        .arg("index")
        .arg("--workspace")
        .arg(&ws)
        .env("RAGLS_FAULT_ABORT_AFTER_BATCHES", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault injection kills the run");
    let server = lsp_client::LspClient::spawn(&lsp_client::ServerOptions::new(BIN, sb.tmp.path()));
    server.initialize(&[&ws], serde_json::Value::Null, serde_json::json!({}));
    let s = server.wait_ready(Duration::from_secs(120));
    assert_eq!(u(&s, "files"), N as u64, "{s}");
    assert_eq!(u(&s, "pendingFiles"), 0, "{s}");
    assert!(s["lastError"].is_null(), "{s}");
    server.shutdown_and_exit();
}
