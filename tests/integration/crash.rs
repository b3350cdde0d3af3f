//! Crash safety: an index run that dies at any moment (abort, `kill -9`) leaves an index
//! that opens, answers from the files it committed, and is completed by the next run
//! without redoing the committed files. The result equals a clean index of the same tree.

use crate::common;

use common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// (files, chunks) of a status object.
fn counts(status: &Value) -> (u64, u64) {
    (u(status, "files"), u(status, "chunks"))
}

/// Builds a clean index of the sandbox's tree in a second index folder; returns its status.
fn clean_reference(sb: &Sandbox) -> Value {
    let dir = sb.tmp.path().join("reference-index");
    sb.index_in(&dir);
    sb.status_in(&dir)
}

/// The query that finds the first function of many-file fixture file `i`.
fn query_for(i: usize) -> String {
    many_fn(i).replace('_', " ")
}

fn assert_finds_file(sb: &Sandbox, i: usize) {
    let q = query_for(i);
    let results = sb.search(&q);
    let paths = paths_of(&results);
    assert!(
        paths.iter().take(3).any(|p| *p == many_path(i)),
        "{q:?} should find {} in the top 3:\n{}",
        many_path(i),
        brief(&results)
    );
}

#[test]
fn an_index_run_aborted_after_its_first_batch_is_usable_and_is_completed_by_the_next_run() {
    const N: usize = 400;
    let sb = Sandbox::empty();
    write_many_files(&sb, N);

    // Abort right after the first committed batch, like `kill -9` at that moment.
    let out = sb
        .ragls_cmd("index", &[])
        .env("RAGLS_FAULT_ABORT_AFTER_BATCHES", "1")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the fault injection must kill the run: {:?}\n{}",
        out.status,
        stderr_of(&out)
    );
    assert!(
        out.status.signal().is_some(),
        "died by a signal, not an exit code: {:?}",
        out.status
    );

    // The index opens and reflects the committed files only.
    let s = sb.status();
    let committed = u(&s, "files");
    assert!(
        (1..N as u64).contains(&committed),
        "some but not all files are committed: {s}"
    );
    assert!(u(&s, "pendingFiles") > 0, "{s}");
    assert_eq!(
        committed + u(&s, "pendingFiles"),
        N as u64,
        "every file is either committed or pending: {s}"
    );
    assert!(
        u(&s, "chunks") >= committed,
        "a committed file has its chunks: {s}"
    );
    // Files are indexed in path order, so the first file is among the committed ones.
    assert_finds_file(&sb, 0);

    // The next run does only what is left.
    let r = sb.index();
    assert_eq!(
        u(&r, "filesChanged"),
        N as u64 - committed,
        "only the uncommitted files are read: {r}"
    );
    assert_eq!(u(&r, "filesUnchanged"), committed, "{r}");
    assert_eq!(u(&r, "filesRemoved"), 0, "{r}");
    assert_eq!(u(&r, "chunksRemoved"), 0, "{r}");
    assert_eq!(r["failed"], serde_json::json!([]));

    let s = sb.status();
    assert_eq!(u(&s, "pendingFiles"), 0, "{s}");
    assert_eq!(s["state"], "ready");
    let reference = clean_reference(&sb);
    assert_eq!(
        counts(&s),
        counts(&reference),
        "resumed index {s}\nclean index {reference}"
    );
    assert_eq!(u(&s, "files"), N as u64);
    assert_finds_file(&sb, N - 1);
    assert_finds_file(&sb, N / 2);
    assert_finds_file(&sb, 0);
}

#[test]
fn an_index_run_aborted_after_its_last_batch_needs_no_more_reading() {
    // 300 files = 3 batches of 128: the abort lands after everything was committed but
    // before the vector index was saved. The next run must re-read nothing.
    const N: usize = 300;
    let sb = Sandbox::empty();
    write_many_files(&sb, N);
    let out = sb
        .ragls_cmd("index", &[])
        .env("RAGLS_FAULT_ABORT_AFTER_BATCHES", "3")
        .output()
        .unwrap();
    assert!(out.status.signal().is_some(), "{:?}", out.status);
    assert_eq!(u(&sb.status(), "files"), N as u64);
    assert_finds_file(&sb, N - 1);
    let r = sb.index();
    assert_eq!(u(&r, "filesChanged"), 0, "{r}");
    assert_eq!(u(&r, "embedded"), 0, "{r}");
    assert_eq!(counts(&sb.status()), counts(&clean_reference(&sb)));
}

/// Spawns `ragls index` and SIGKILLs it after `delay`. Returns whether it had already
/// finished on its own.
fn index_and_kill_after(sb: &Sandbox, index: &Path, delay: Duration) -> bool {
    let mut child = sb
        .ragls_cmd_in("index", index, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let finished = matches!(child.try_wait(), Ok(Some(_)));
    let _ = child.kill();
    let status = child.wait().unwrap();
    finished || status.success()
}

#[test]
fn a_killed_index_run_leaves_an_index_that_opens_and_resumes_wherever_it_died() {
    const N: usize = 3000;
    let sb = Sandbox::empty();
    write_many_files(&sb, N);
    let reference = clean_reference(&sb);
    assert_eq!(u(&reference, "files"), N as u64);

    // Kill several runs at different moments; each resumes the previous one's work.
    // Whatever the moment (before the store exists, mid-batch, while saving vectors,
    // after the end), the index must open and answer.
    for delay_ms in [30, 120, 250, 400] {
        index_and_kill_after(&sb, &sb.index, Duration::from_millis(delay_ms));
        // `search` opens what the killed run left (or, if it died before creating the
        // store, builds the index first): either way it answers.
        let out = sb.ragls("search", &["--json", "reconcile amber ledger"]);
        let stdout = ok(out, &format!("search after a kill at {delay_ms} ms"));
        let results = json_of(&stdout)["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let s = sb.status();
        assert_eq!(s["state"], "ready", "after a kill at {delay_ms} ms: {s}");
        assert_eq!(
            u(&s, "files") + u(&s, "pendingFiles"),
            N as u64,
            "every file is either committed or pending after a kill at {delay_ms} ms: {s}"
        );
        assert_eq!(
            results.is_empty(),
            u(&s, "chunks") == 0,
            "{s}\n{}",
            brief(&results)
        );
        for r in &results {
            assert!(sb.path(r["path"].as_str().unwrap()).is_file(), "{r}");
        }
    }

    let r = sb.index();
    assert_eq!(r["failed"], serde_json::json!([]), "{r}");
    assert_eq!(u(&r, "filesSeen"), N as u64, "{r}");
    let s = sb.status();
    assert_eq!(u(&s, "pendingFiles"), 0, "{s}");
    assert_eq!(
        counts(&s),
        counts(&reference),
        "resumed index {s}\nclean index {reference}"
    );
    assert_finds_file(&sb, N - 1);
    assert_finds_file(&sb, 0);
    // And one more run is a no-op.
    let again = sb.index();
    assert_eq!(u(&again, "filesChanged"), 0, "{again}");
}

/// Rewrites every file of the many-file fixture with a revision mark, so that the next
/// index run has every file to redo.
fn write_revision(sb: &Sandbox, n: usize, revision: usize) {
    write_many_files(sb, n);
    for i in 0..n {
        let path = sb.path(&many_path(i));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "\n/// Revision {revision} of this module.\npub const REVISION: u32 = {revision};\n"
        ));
        std::fs::write(&path, text).unwrap();
    }
}

#[test]
fn fifty_kills_at_random_points_of_indexing_always_leave_an_index_that_opens_answers_and_completes()
{
    // 150 files: two batches of 128, so kills land in either batch, between them, while
    // the vectors are saved, or after the end.
    const N: usize = 150;
    const KILLS: usize = 50;
    let sb = Sandbox::empty();
    write_revision(&sb, N, 0);
    let started = std::time::Instant::now();
    sb.index();
    // Kill points spread over a little more than one full run (so some land after its end).
    let span_ms = (started.elapsed().as_millis() as u64).clamp(50, 5000) * 6 / 5;
    let mut seed: u64 = 0x00c0_ffee_d00d;
    let mut finished_before_kill = 0;
    let mut checked = 0;
    for kill in 1..=KILLS {
        write_revision(&sb, N, kill);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % span_ms);
        if index_and_kill_after(&sb, &sb.index, delay) {
            finished_before_kill += 1;
        }
        // It opens: every file is committed (in its old or its new revision); what the
        // killed run did not redo is pending.
        let s = sb.status();
        assert_eq!(u(&s, "files"), N as u64, "kill {kill} at {delay:?}: {s}");
        assert!(
            u(&s, "pendingFiles") <= N as u64,
            "kill {kill} at {delay:?}: {s}"
        );
        // It answers.
        let out = sb.ragls("search", &["--json", &query_for(N / 2)]);
        let stdout = ok(out, &format!("search after kill {kill} at {delay:?}"));
        let results = json_of(&stdout)["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !results.is_empty(),
            "kill {kill} at {delay:?}: no results; {s}"
        );
        // Every tenth kill: the next run completes with the counts of a clean index.
        if kill % 10 == 0 {
            let r = sb.index();
            assert_eq!(r["failed"], serde_json::json!([]), "{r}");
            let s = sb.status();
            assert_eq!(u(&s, "pendingFiles"), 0, "{s}");
            let reference = sb.tmp.path().join(format!("reference-{kill}"));
            sb.index_in(&reference);
            let reference = sb.status_in(&reference);
            assert_eq!(
                counts(&s),
                counts(&reference),
                "after kill {kill}: resumed index {s}\nclean index {reference}"
            );
            assert_finds_file(&sb, N - 1);
            checked += 1;
        }
    }
    println!(
        "kill -9 suite: {KILLS} kills at random points within {span_ms} ms \
         ({finished_before_kill} landed after the run had ended); the index opened and answered \
         after all {KILLS}; {checked} completions matched a clean index"
    );
}
