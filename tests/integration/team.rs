//! The shared team index against a real PostgreSQL with pgvector (`scripts/pg.sh`, which
//! `scripts/test.sh` starts): each test creates a database of its own, so they run side
//! by side; the one that stops the server takes the others' lock exclusively.
//!
//! Without the server's variables these tests fail (never skip): run `scripts/test.sh`.

use crate::common::{self, json_of, ok, stderr_of, ProviderSandbox, Sandbox, Settings};
use crate::fake_provider::{Endpoint, Failure, FakeProvider};
use crate::lsp_client::{LspClient, ServerOptions};
use serde_json::{json, Value};
use std::process::{Command, Output, Stdio};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Held shared by every test that uses the server, exclusively by the one that stops it.
static SERVER: RwLock<()> = RwLock::new(());

fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the team-index tests need PostgreSQL with pgvector; run the tests with scripts/test.sh (it starts one with scripts/pg.sh), or `source $(scripts/pg.sh start)` first"
        )
    })
}

/// `url` with its database replaced by `db`.
fn with_db(url: &str, db: &str) -> String {
    let cut = url.rfind('/').expect("a database in the URL");
    let rest = &url[cut + 1..];
    let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
    format!("{}/{db}{query}", &url[..cut])
}

fn run_sql<T: Send + 'static>(
    url: &str,
    f: impl for<'c> FnOnce(
            &'c tokio_postgres::Client,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'c>>
        + Send
        + 'static,
) -> T {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL: {e}"));
            tokio::spawn(conn);
            f(&client).await
        })
    })
    .join()
    .unwrap()
}

fn execute(url: &str, sql: &str) {
    let sql = sql.to_string();
    run_sql(url, move |c| {
        Box::pin(async move {
            c.batch_execute(&sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        })
    })
}

fn count(url: &str, sql: &str) -> i64 {
    let sql = sql.to_string();
    run_sql(url, move |c| {
        Box::pin(async move {
            c.query_one(&sql, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        })
    })
}

/// A database of one test's own (dropped at the end), with the roles of `scripts/pg.sh`.
struct TeamDb {
    name: String,
    admin: String,
    writer: String,
    reader: String,
    replica: String,
    _server: Box<dyn std::any::Any>,
}

impl TeamDb {
    fn create() -> TeamDb {
        let guard = SERVER.read().unwrap_or_else(|e| e.into_inner());
        TeamDb::create_with(Box::new(guard))
    }

    fn create_with(server: Box<dyn std::any::Any>) -> TeamDb {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "ragls_t{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let admin = env("RAGLS_TEST_PG_URL");
        execute(
            &admin,
            &format!("CREATE DATABASE {name} OWNER ragls_writer"),
        );
        execute(
            &with_db(&admin, &name),
            &format!(
                "CREATE EXTENSION vector;
                 GRANT CONNECT ON DATABASE {name} TO ragls_reader;
                 GRANT USAGE ON SCHEMA public TO ragls_reader;
                 ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer GRANT SELECT ON TABLES TO ragls_reader;
                 ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer GRANT USAGE, SELECT ON SEQUENCES TO ragls_reader;"
            ),
        );
        TeamDb {
            writer: with_db(&env("RAGLS_TEST_PG_WRITER_URL"), &name),
            reader: with_db(&env("RAGLS_TEST_PG_READER_URL"), &name),
            replica: with_db(&env("RAGLS_TEST_PG_REPLICA_URL"), &name),
            admin: with_db(&admin, &name),
            name,
            _server: server,
        }
    }
}

impl Drop for TeamDb {
    fn drop(&mut self) {
        let admin = env("RAGLS_TEST_PG_URL");
        let name = self.name.clone();
        let _ = std::panic::catch_unwind(|| {
            execute(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            )
        });
    }
}

/// `ragls <sub> --workspace <ws> --index-dir <index> --store URL --ref REF <args...>`.
fn team_cmd(sb: &Sandbox, sub: &str, url: &str, ref_name: &str, args: &[&str]) -> Command {
    let mut c = sb.ragls_cmd(sub, &["--store", url, "--ref", ref_name]);
    c.args(args);
    c
}

fn team(sb: &Sandbox, sub: &str, url: &str, ref_name: &str, args: &[&str]) -> Output {
    team_cmd(sb, sub, url, ref_name, args)
        .output()
        .expect("run ragls")
}

/// The message of a run that failed on a usage or settings error (exit code 2).
fn refused(out: &Output) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    err
}

fn index_shared(sb: &Sandbox, url: &str, ref_name: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    json_of(&ok(
        team(sb, "index", url, ref_name, &all),
        &format!("ragls index --store … --ref {ref_name}"),
    ))
}

fn search_shared(
    sb: &Sandbox,
    url: &str,
    ref_name: &str,
    query: &str,
    args: &[&str],
) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    all.push(query);
    let v = json_of(&ok(
        team(sb, "search", url, ref_name, &all),
        &format!("ragls search --store … {query:?}"),
    ));
    v["results"].as_array().expect("results").clone()
}

/// A reader with no checkout of its own: it sees the shared ref alone.
fn bare_reader() -> Sandbox {
    Sandbox::empty()
}

const NO_OVERLAY: [&str; 2] = ["--set", "store.overlay=false"];

/// Rewrites `path` in the workspace with the first `from` in it changed to `to`.
fn rename_in(sb: &Sandbox, path: &str, from: &str, to: &str) {
    let text = sb.read(path);
    assert!(text.contains(from), "{path} has {from}");
    sb.write(path, text.replacen(from, to, 1));
}

fn has_symbol(results: &[Value], name: &str) -> bool {
    results
        .iter()
        .any(|r| r["symbol"].as_str().is_some_and(|s| s.contains(name)))
}

#[test]
fn a_fixture_repository_indexed_into_postgres_is_searched_and_asked_from_two_processes_at_once() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["ref"], "main", "{report}");
    assert!(report["chunksAdded"].as_u64() > Some(10), "{report}");
    assert_eq!(report["updated"], true, "{report}");
    assert!(
        count(&db.admin, "SELECT count(*) FROM embeddings") > 10,
        "the vectors live in PostgreSQL"
    );

    // Two searches and two questions at once, from processes reading with the reader role.
    let reader = bare_reader();
    let e = common::lru_evict();
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(
            team_cmd(
                &reader,
                "search",
                &db.reader,
                "main",
                &[
                    "--json",
                    "--set",
                    "store.overlay=false",
                    "evict the least recently used cache entry",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
        children.push(
            team_cmd(
                &reader,
                "ask",
                &db.reader,
                "main",
                &[
                    "--json",
                    "--set",
                    "store.overlay=false",
                    "how does the cache evict the least recently used entry?",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        );
    }
    for (n, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let v = json_of(&ok(out, "a concurrent reader"));
        let found = if n % 2 == 0 {
            v["results"].as_array().unwrap().clone()
        } else {
            v["sources"].as_array().unwrap().clone()
        };
        assert!(
            found
                .iter()
                .any(|r| r["path"] == e.path && r["start_line"].as_u64() == Some(e.start_line)),
            "reader {n} finds {e:?} in the shared index: {v}"
        );
    }

    // The same workspace reads the shared ref with nothing of its own on top: its local
    // overlay is empty, so the hit came from PostgreSQL.
    let results = search_shared(
        &sb,
        &db.reader,
        "main",
        "evict the least recently used cache entry",
        &[],
    );
    common::assert_in_top(&results, 3, &e, "evict");
    // Rows are ranked without their texts, which are read for the pool afterwards:
    // every hit shows its own code.
    for r in &results {
        let snippet = r["snippet"].as_str().unwrap_or_default();
        let file = std::fs::read_to_string(sb.path(r["path"].as_str().unwrap())).unwrap();
        assert!(
            !snippet.trim().is_empty() && snippet.lines().all(|l| file.contains(l)),
            "a shared hit shows the text of its chunk: {r}"
        );
    }
    let status = json_of(&ok(
        team(&sb, "status", &db.reader, "main", &["--json"]),
        "status",
    ));
    assert_eq!(status["files"], 0, "the overlay holds nothing: {status}");
}

#[test]
fn a_second_ref_with_three_changed_files_re_embeds_only_their_changed_chunks() {
    let db = TeamDb::create();
    let fake = FakeProvider::start();
    let sb = ProviderSandbox::empty_at(&fake.base_url(), &Settings::default());
    for (path, text) in common::FIXTURE {
        sb.write(path, text);
    }
    let first = sb
        .ragls("index", &["--store", &db.writer, "--ref", "main", "--json"])
        .ok()
        .json();
    let embedded_first = first["embedded"].as_u64().unwrap();
    assert!(embedded_first > 10, "{first}");
    let inputs = |reqs: &[crate::fake_provider::RecordedRequest]| -> Vec<String> {
        reqs.iter()
            .flat_map(|r| match &r.body["input"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            })
            .collect()
    };
    // The first build also asks the model's dimension once (one more input).
    assert!(inputs(&fake.requests_to(Endpoint::Embeddings)).len() as u64 >= embedded_first);
    fake.reset();

    // A branch: one function changed in each of three files.
    let files = [
        (
            "src/cache/lru.rs",
            "pub fn get(&mut self",
            "pub fn get_branch_one(&mut self",
        ),
        (
            "client/retry.py",
            "def retry_with_backoff(",
            "def retry_with_backoff_branch_two(",
        ),
        (
            "server/ratelimit/limiter.go",
            "func (b *TokenBucket) Allow(",
            "func (b *TokenBucket) AllowBranchThree(",
        ),
    ];
    for (path, from, to) in files {
        rename_in(&sb, path, from, to);
    }
    let second = sb
        .ragls(
            "index",
            &[
                "--store", &db.writer, "--ref", "feature", "--base", "main", "--json",
            ],
        )
        .ok()
        .json();
    assert_eq!(second["base"], "main", "{second}");
    // A base that is not there is named, and nothing is written.
    let typo = sb.ragls(
        "index",
        &[
            "--store",
            &db.writer,
            "--ref",
            "typo-branch",
            "--base",
            "mian",
        ],
    );
    assert_eq!(typo.code, Some(2), "{}", typo.stderr);
    assert!(
        typo.stderr
            .contains("--base mian: the shared index has no ref mian"),
        "{}",
        typo.stderr
    );
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM refs WHERE name = 'typo-branch'"
        ),
        0
    );
    assert_eq!(
        second["filesChunked"], 3,
        "only the changed files are chunked: {second}"
    );
    assert!(
        second["cached"].as_u64() > Some(0),
        "the unchanged chunks of those files come from the cache: {second}"
    );
    let sent = inputs(&fake.requests_to(Endpoint::Embeddings));
    assert_eq!(
        sent.len() as u64,
        second["embedded"].as_u64().unwrap(),
        "{second}"
    );
    assert!(!sent.is_empty() && sent.len() <= 6, "{sent:?}");
    for text in &sent {
        assert!(
            text.contains("branch_one")
                || text.contains("branch_two")
                || text.contains("BranchThree"),
            "only changed chunks are embedded, not:\n{text}"
        );
    }
    for (_, _, to) in files {
        let name = to
            .split('(')
            .next()
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string();
        assert!(
            sent.iter().any(|t| t.contains(&name)),
            "the changed function {name} is embedded"
        );
    }
    // The branch's BM25 statistics, updated from main's, are what a recount gives.
    assert_eq!(statistics_unlike_a_recount(&db), 0);
    // Both refs stand side by side.
    let reader = bare_reader();
    let on_feature = search_shared(
        &reader,
        &db.reader,
        "feature",
        "retry_with_backoff_branch_two",
        &NO_OVERLAY,
    );
    assert!(
        has_symbol(&on_feature, "retry_with_backoff_branch_two"),
        "{on_feature:?}"
    );
    let on_main = search_shared(
        &reader,
        &db.reader,
        "main",
        "retry_with_backoff_branch_two",
        &NO_OVERLAY,
    );
    assert!(!has_symbol(&on_main, "branch_two"), "{on_main:?}");
}

/// Indexes `main` with `alpha_old` in src/alpha.rs, then starts an update to `alpha_new`
/// that stops inside its transaction; returns the writer and the release file.
fn start_paused_update(db: &TeamDb, sb: &Sandbox) -> (std::process::Child, std::path::PathBuf) {
    sb.write(
        "src/alpha.rs",
        "/// The old way.\npub fn alpha_old_marker() -> u32 {\n    1\n}\n",
    );
    index_shared(sb, &db.writer, "main", &[]);
    sb.write(
        "src/alpha.rs",
        "/// The new way.\npub fn alpha_new_marker() -> u32 {\n    2\n}\n",
    );
    sb.write(
        "src/beta.rs",
        "pub fn beta_new_marker() -> u32 {\n    3\n}\n",
    );
    let release = sb.tmp.path().join("release");
    let child = team_cmd(sb, "index", &db.writer, "main", &["--json"])
        .env("RAGLS_FAULT_PUBLISH_WAIT_FOR", &release)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reached = sb.tmp.path().join("release.reached");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !reached.exists() {
        assert!(
            Instant::now() < deadline,
            "the writer never reached its transaction"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, release)
}

#[test]
fn an_embedding_service_that_fails_partway_leaves_no_ref_and_keeps_the_vectors_stored_before() {
    let db = TeamDb::create();
    let fake = FakeProvider::start();
    // One text a request, one request at a time: the update embeds 32 texts at a time
    // (the embedder's batch of 8 requests, four batches) and stores two such groups at
    // once.
    let settings = Settings {
        max_retries: 0,
        rest: "[embedding]\nbatch_size = 1\nconcurrency = 1\n".into(),
        ..Settings::default()
    };
    let sb = ProviderSandbox::empty_at(&fake.base_url(), &settings);
    for (path, text) in common::FIXTURE {
        sb.write(path, text);
    }
    for i in 0..40 {
        sb.write(
            &format!("extra/extra_{i}.py"),
            &format!("def extra_function_{i}(x):\n    return x + {i}\n"),
        );
    }
    // The model's dimension (one request), then two groups answered; every request
    // after them refused.
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Slow(Duration::ZERO),
        1 + 2 * 32,
    );
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 400,
            retry_after: None,
        },
        1000,
    );
    let failed = sb.ragls("index", &["--store", &db.writer, "--ref", "main"]);
    assert_ne!(failed.code, Some(0), "{}", failed.stdout);
    assert!(
        failed.stderr.contains("embedding failed")
            && failed.stderr.contains("the shared ref was not updated"),
        "{}",
        failed.stderr
    );
    assert_eq!(count(&db.admin, "SELECT count(*) FROM refs"), 0);
    eprintln!(
        "DEBUG stderr {} requests {:?}",
        failed.stderr,
        fake.requests_to(Endpoint::Embeddings)
            .iter()
            .map(|r| r.body["input"].as_array().map(|a| a.len()))
            .collect::<Vec<_>>()
    );
    // Both groups' vectors were stored before the update gave up.
    assert_eq!(count(&db.admin, "SELECT count(*) FROM embeddings"), 64);

    fake.reset();
    // The next run lists the versions the failed one wrote, and embeds the texts whose
    // vectors it had not stored: only those.
    let done = sb
        .ragls("index", &["--store", &db.writer, "--ref", "main", "--json"])
        .ok()
        .json();
    assert_eq!(done["filesReused"], done["filesSeen"], "{done}");
    let texts = count(
        &db.admin,
        "SELECT count(DISTINCT c.text_hash) FROM refs r
         JOIN snapshot_files sf ON sf.snapshot_id = r.snapshot_id
         JOIN chunks c ON c.blob_id = sf.blob_id WHERE r.name = 'main'",
    ) as u64;
    assert!(texts > 64, "the workspace needs a third group: {texts}");
    assert_eq!(done["embedded"].as_u64(), Some(texts - 64), "{done}");
    let sent: usize = fake
        .requests_to(Endpoint::Embeddings)
        .iter()
        .map(|r| r.body["input"].as_array().map_or(1, Vec::len))
        .sum();
    // Plus the model's dimension, asked again: no ref recorded it yet.
    assert_eq!(sent as u64, texts - 64 + 1, "{done}");
    // Every chunk the ref lists has its vector.
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM refs r
             JOIN snapshot_files sf ON sf.snapshot_id = r.snapshot_id
             JOIN chunks c ON c.blob_id = sf.blob_id
             WHERE r.name = 'main'
               AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.text_hash = c.text_hash)"
        ),
        0
    );
}

/// A workspace holding the fixture, embedded through `fake` and indexed into `main`.
fn fixture_in_main_through(fake: &FakeProvider, db: &TeamDb) -> ProviderSandbox {
    let sb = ProviderSandbox::empty_at(&fake.base_url(), &Settings::default());
    for (path, text) in common::FIXTURE {
        sb.write(path, text);
    }
    sb.ragls("index", &["--store", &db.writer, "--ref", "main", "--json"])
        .ok();
    sb
}

/// A workspace of the fixture's files, indexed into `main` with the built-in embedder:
/// the workspace and the index's report.
fn fixture_in_main(db: &TeamDb) -> (Sandbox, Value) {
    let sb = fixture_workspace();
    let report = index_shared(&sb, &db.writer, "main", &[]);
    (sb, report)
}

/// A workspace of the fixture's files.
fn fixture_workspace() -> Sandbox {
    let sb = Sandbox::empty();
    for (path, text) in common::FIXTURE {
        sb.write(path, text);
    }
    sb
}

fn symbols(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["symbol"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_reader_during_an_update_sees_the_old_ref_until_it_switches_never_a_mix() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let (child, release) = start_paused_update(&db, &sb);
    let reader = bare_reader();
    let during = search_shared(
        &reader,
        &db.reader,
        "main",
        "alpha old new beta marker",
        &NO_OVERLAY,
    );
    let s = symbols(&during);
    assert!(s.iter().any(|x| x.contains("alpha_old_marker")), "{s:?}");
    assert!(
        !s.iter()
            .any(|x| x.contains("alpha_new_marker") || x.contains("beta_new_marker")),
        "nothing of the update is visible before it commits: {s:?}"
    );
    std::fs::write(&release, b"").unwrap();
    ok(child.wait_with_output().unwrap(), "the update");
    let after = search_shared(
        &reader,
        &db.reader,
        "main",
        "alpha old new beta marker",
        &NO_OVERLAY,
    );
    let s = symbols(&after);
    assert!(s.iter().any(|x| x.contains("alpha_new_marker")), "{s:?}");
    assert!(s.iter().any(|x| x.contains("beta_new_marker")), "{s:?}");
    assert!(!s.iter().any(|x| x.contains("alpha_old_marker")), "{s:?}");
}

#[test]
fn a_writer_killed_mid_update_leaves_the_previous_ref_and_the_next_run_completes() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let (mut child, _release) = start_paused_update(&db, &sb);
    child.kill().unwrap(); // SIGKILL: the transaction never commits
    child.wait().unwrap();
    let reader = bare_reader();
    let s = symbols(&search_shared(
        &reader,
        &db.reader,
        "main",
        "alpha old new beta marker",
        &NO_OVERLAY,
    ));
    assert!(s.iter().any(|x| x.contains("alpha_old_marker")), "{s:?}");
    assert!(!s.iter().any(|x| x.contains("new_marker")), "{s:?}");

    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["updated"], true, "{report}");
    assert_eq!(
        report["embedded"], 0,
        "the killed run's vectors were cached before it died: {report}"
    );
    assert_eq!(
        (
            report["filesChunked"].as_u64(),
            report["filesReused"].as_u64()
        ),
        (Some(0), Some(2)),
        "the killed run's two file versions were written before it died: {report}"
    );
    let s = symbols(&search_shared(
        &reader,
        &db.reader,
        "main",
        "alpha old new beta marker",
        &NO_OVERLAY,
    ));
    assert!(s.iter().any(|x| x.contains("alpha_new_marker")), "{s:?}");
    assert!(s.iter().any(|x| x.contains("beta_new_marker")), "{s:?}");
}

#[test]
fn file_versions_a_killed_writer_left_unlisted_are_removed_by_the_clean_up_after_an_hour() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let (mut child, _release) = start_paused_update(&db, &sb);
    child.kill().unwrap();
    child.wait().unwrap();
    let unlisted = "SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM snapshot_files sf WHERE sf.blob_id = b.id)";
    assert_eq!(
        count(&db.admin, unlisted),
        2,
        "alpha's new version and beta's"
    );
    // The working tree moves on: no run takes those versions any more.
    sb.write(
        "src/alpha.rs",
        "pub fn alpha_third_marker() -> u32 {\n    4\n}\n",
    );
    std::fs::remove_file(sb.ws.join("src/beta.rs")).unwrap();
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(
        count(&db.admin, unlisted),
        2,
        "kept within the hour: a writer may be about to list them"
    );
    execute(
        &db.admin,
        "UPDATE pending_versions SET created_at = now() - interval '2 hours'",
    );
    sb.write(
        "src/alpha.rs",
        "pub fn alpha_fourth_marker() -> u32 {\n    5\n}\n",
    );
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["updated"], true, "{report}");
    for orphans in [
        unlisted,
        "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)",
        "SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = p.blob_id)
         AND NOT EXISTS (SELECT 1 FROM version_sources s WHERE s.src = p.blob_id)",
        "SELECT count(*) FROM version_sources s WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = s.blob_id)",
        "SELECT count(*) FROM snapshot_postings sp WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.id = sp.snapshot_id)",
    ] {
        assert_eq!(count(&db.admin, orphans), 0, "{orphans}");
    }
    let s = symbols(&search_shared(
        &bare_reader(),
        &db.reader,
        "main",
        "alpha fourth marker",
        &NO_OVERLAY,
    ));
    assert!(s.iter().any(|x| x.contains("alpha_fourth_marker")), "{s:?}");
}

#[test]
fn a_writer_embedding_for_long_keeps_the_clean_up_from_its_written_versions() {
    let db = TeamDb::create();
    let fake = FakeProvider::start();
    let slow = fixture_in_main_through(&fake, &db);
    slow.write(
        "client/backoff_table.py",
        "def backoff_table_for_tenants(n):\n    return [2 ** i for i in range(n)]\n",
    );
    // Its file version is written, then it waits on the embedder.
    fake.set_latency(Duration::from_secs(4));
    let writer = slow
        .command("index", &["--store", &db.writer, "--ref", "main", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let written = "SELECT count(*) FROM blobs WHERE path = 'client/backoff_table.py'";
    while count(&db.admin, written) < 1 {
        assert!(
            Instant::now() < deadline,
            "the writer never wrote its version"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // An hour later (so to speak), another ref's writer publishes and cleans up.
    execute(
        &db.admin,
        "UPDATE pending_versions SET created_at = now() - interval '2 hours'",
    );
    let other = Sandbox::with_project();
    index_shared(&other, &db.writer, "other", &[]);
    assert_eq!(
        count(&db.admin, written),
        1,
        "the waiting writer's version is kept"
    );
    let out = writer.wait_with_output().unwrap();
    let report: Value = serde_json::from_str(&ok(out, "the slow writer")).unwrap();
    assert_eq!(report["updated"], true, "{report}");
    fake.set_latency(Duration::ZERO);
    let found = slow
        .ragls(
            "search",
            &[
                "--store",
                &db.reader,
                "--ref",
                "main",
                "--json",
                "--set",
                "store.overlay=false",
                "backoff table for tenants",
            ],
        )
        .ok()
        .json();
    let results = found["results"].as_array().expect("results");
    assert!(has_symbol(results, "backoff_table_for_tenants"), "{found}");
}

#[test]
fn a_writer_set_to_a_pool_of_one_connection_still_updates_its_ref() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let one = ["--set", "store.pool_size=1"];
    index_shared(&sb, &db.writer, "main", &one);
    sb.write("src/gamma.rs", "pub fn gamma_single_pool_marker() {}\n");
    let report = index_shared(&sb, &db.writer, "main", &one);
    assert_eq!(report["updated"], true, "{report}");
    assert_eq!(report["filesChunked"], 1, "{report}");
}

#[test]
fn the_local_overlay_finds_an_uncommitted_function_and_cites_local_lines() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    // Uncommitted work: ten lines pushed in above an existing function, and a new one.
    let path = "client/retry.py";
    let text = sb.read(path);
    let pushed = format!(
        "{}{}\ndef compute_jitter_window_locally(attempt):\n    \"\"\"A jitter window only this working tree has.\"\"\"\n    return attempt * 7\n",
        "# local note\n".repeat(10),
        text
    );
    sb.write(path, &pushed);
    sb.write(
        "client/old_helpers.py",
        "def soon_deleted_helper():\n    return 1\n",
    );

    let results = search_shared(
        &sb,
        &db.reader,
        "main",
        "compute jitter window locally",
        &[],
    );
    let hit = results
        .iter()
        .find(|r| {
            r["symbol"]
                .as_str()
                .is_some_and(|s| s.contains("compute_jitter_window_locally"))
        })
        .unwrap_or_else(|| panic!("the uncommitted function is found: {results:?}"));
    assert_eq!(hit["path"], path);
    assert_eq!(
        hit["start_line"].as_u64(),
        Some(common::line_of(
            &pushed,
            "def compute_jitter_window_locally"
        )),
        "the citation points at the local file's lines"
    );
    // The shared copy of the changed file is dropped: every hit of it has local lines.
    let e = common::retry_with_backoff();
    let retry = search_shared(
        &sb,
        &db.reader,
        "main",
        "retry with exponential backoff",
        &[],
    );
    let hits: Vec<&Value> = retry.iter().filter(|r| r["path"] == path).collect();
    assert!(!hits.is_empty(), "{retry:?}");
    assert!(
        hits.iter()
            .any(|r| r["start_line"].as_u64() == Some(e.start_line + 10)),
        "the retry helper is cited 10 lines down, where it is locally: {hits:?}"
    );
    assert!(
        !hits
            .iter()
            .any(|r| r["start_line"].as_u64() == Some(e.start_line)),
        "no stale shared copy: {hits:?}"
    );

    // A file deleted locally is not found any more.
    std::fs::remove_file(sb.path("server/handlers.go")).unwrap();
    let after = search_shared(&sb, &db.reader, "main", "handlers", &[]);
    assert!(
        !after.iter().any(|r| r["path"] == "server/handlers.go"),
        "{after:?}"
    );
}

#[test]
fn a_question_over_the_shared_ref_and_a_local_overlay_embeds_the_query_once() {
    let db = TeamDb::create();
    let fake = FakeProvider::start();
    let sb = fixture_in_main_through(&fake, &db);
    // A local change, so that both the overlay and the shared ref are searched.
    let path = "client/retry.py";
    let text = sb.read(path);
    sb.write(
        path,
        format!("{text}\ndef widen_the_jitter_window(attempt):\n    return attempt * 7\n"),
    );
    fake.reset();
    let query = "how wide is the jitter window between attempts";
    let found = sb
        .ragls(
            "search",
            &["--store", &db.reader, "--ref", "main", "--json", query],
        )
        .ok()
        .json();
    let results = found["results"].as_array().expect("results");
    assert!(
        has_symbol(results, "widen_the_jitter_window"),
        "the overlay's function is found: {found}"
    );
    assert!(
        results.iter().any(|r| r["path"] != path),
        "shared hits come too: {found}"
    );
    let asked: Vec<String> = fake
        .requests_to(Endpoint::Embeddings)
        .iter()
        .filter(|r| r.body["input"].to_string().contains(query))
        .map(|r| r.body["input"].to_string())
        .collect();
    assert_eq!(
        asked.len(),
        1,
        "one embedding of the query for both indexes: {asked:?}"
    );
}

#[test]
fn a_database_without_pgvector_is_named_with_the_statement_to_run() {
    let db = TeamDb::create();
    execute(&db.admin, "DROP EXTENSION vector");
    let sb = Sandbox::with_project();
    let out = team(&sb, "index", &db.writer, "main", &[]);
    let err = refused(&out);
    assert!(
        err.contains("lacks the pgvector extension") && err.contains("CREATE EXTENSION vector;"),
        "{err}"
    );
    assert!(
        !err.contains("may only read"),
        "a writer is not told it is a reader: {err}"
    );
    execute(&db.admin, "CREATE EXTENSION vector");
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["updated"], true, "{report}");
}

#[test]
fn sslmode_require_against_a_server_without_tls_says_what_to_change() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let err = failed_index(&sb, &format!("{}?sslmode=require", db.writer));
    assert!(
        err.contains("TLS handshake")
            && err.contains("server does not support TLS")
            && err.contains("sslmode=prefer"),
        "{err}"
    );
}

/// What `ragls index --store URL` said as it failed (never the test writer's password).
fn failed_index(sb: &Sandbox, url: &str) -> String {
    let out = team(sb, "index", url, "main", &[]);
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("ragls-test-writer"),
        "never the password: {err}"
    );
    err
}

/// A TLS front for the test server, as a managed PostgreSQL with a private CA has one
/// (the PyPI server is built without OpenSSL): it answers a client's SSLRequest with 'S',
/// takes the TLS handshake with the certificate in `tests/fixtures/tls` (signed by its
/// `ca.pem`, for 127.0.0.1), and relays the session to the server in the clear. A client
/// that does not ask for TLS is hung up on. It stops with the test.
struct TlsFront {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsFront {
    fn start(upstream: &str) -> TlsFront {
        TlsFront::start_asking(upstream, None)
    }

    /// A front that also asks each client for a certificate signed by `client_ca`'s
    /// (`tests/fixtures/tls/client-ca.pem`).
    fn start_asking(upstream: &str, client_ca: Option<&str>) -> TlsFront {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(fixtures.join("server.pem"))
                .expect("server.pem")
                .collect::<Result<_, _>>()
                .expect("server.pem's certificate");
        let key = PrivateKeyDer::from_pem_file(fixtures.join("server.key")).expect("server.key");
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(fixtures.join(name)).expect(name) {
                    roots.add(cert.expect(name)).expect(name);
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    std::sync::Arc::new(roots),
                    provider,
                )
                .build()
                .expect("a client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .expect("the fixture certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a port");
        let port = listener.local_addr().expect("its port").port();
        let upstream = upstream.to_string();
        runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
                tokio::spawn(async move {
                    // SSLRequest: its length (8) and the code 1234 << 16 | 5679.
                    let mut request = [0u8; 8];
                    if client.read_exact(&mut request).await.is_err()
                        || request != [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]
                        || client.write_all(b"S").await.is_err()
                    {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        TlsFront {
            port,
            _runtime: runtime,
        }
    }

    /// `url` (a test URL) through this front.
    fn url(&self, url: &str) -> String {
        let host_port = url_host_port(url);
        url.replacen(&host_port, &format!("127.0.0.1:{}", self.port), 1)
    }
}

/// The `host:port` of a `postgres://user:password@host:port/db` URL.
fn url_host_port(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    after_at.split('/').next().unwrap_or_default().to_string()
}

#[test]
fn a_server_behind_tls_with_a_private_ca_is_reached_with_sslrootcert() {
    let db = TeamDb::create();
    let front = TlsFront::start(&url_host_port(&db.writer));
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");
    let sb = Sandbox::with_project();
    // The CA named in the URL: the ref is built and searched through TLS (the front
    // relays nothing before a handshake), libpq's `verify-full` taken as ragls's
    // `require`, which verifies as much.
    let writer = format!(
        "{}?sslmode=verify-full&sslrootcert={ca}",
        front.url(&db.writer)
    );
    let report = index_shared(&sb, &writer, "main", &[]);
    assert_eq!(report["updated"], true, "{report}");
    let reader = format!("{}?sslmode=require&sslrootcert={ca}", front.url(&db.reader));
    let hits = search_shared(
        &bare_reader(),
        &reader,
        "main",
        "evict least recently used",
        &NO_OVERLAY,
    );
    assert!(
        hits.iter().any(|h| h["path"] == "src/cache/lru.rs"),
        "{hits:?}"
    );

    // Not named, the default (`prefer`) meets a certificate no public CA signed: the
    // writer stops and says what to add.
    let err = failed_index(&sb, &front.url(&db.writer));
    assert!(
        err.contains("TLS handshake")
            && err.contains("sslrootcert=/path/to/ca.pem")
            && err.contains("PGSSLROOTCERT"),
        "{err}"
    );
    // PGSSLROOTCERT names it as libpq's does.
    let out = team_cmd(&sb, "index", &front.url(&db.writer), "main", &["--json"])
        .env("PGSSLROOTCERT", ca)
        .output()
        .expect("run ragls");
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    // A CA file that is not there is a settings error, said before connecting.
    let missing = format!("{}?sslrootcert=/nonexistent/ca.pem", front.url(&db.writer));
    let err = refused(&team(&sb, "index", &missing, "main", &[]));
    assert!(
        err.contains("sslrootcert /nonexistent/ca.pem cannot be read"),
        "{err}"
    );
}

#[test]
fn a_server_that_asks_for_a_client_certificate_is_given_sslcert_and_sslkey() {
    let db = TeamDb::create();
    let front = TlsFront::start_asking(&url_host_port(&db.writer), Some("client-ca.pem"));
    let tls = |name: &str| format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"));
    let sb = Sandbox::with_project();
    let writer = format!(
        "{}?sslmode=require&sslrootcert={}&sslcert={}&sslkey={}",
        front.url(&db.writer),
        tls("ca.pem"),
        tls("client.pem"),
        tls("client.key")
    );
    let report = index_shared(&sb, &writer, "main", &[]);
    assert_eq!(report["updated"], true, "{report}");
    // Without one the server ends the handshake, and the message says what to give.
    let without = format!(
        "{}?sslmode=require&sslrootcert={}",
        front.url(&db.writer),
        tls("ca.pem")
    );
    let err = failed_index(&sb, &without);
    assert!(
        err.contains("ended the TLS session (CertificateRequired)")
            && err.contains("sslcert=")
            && err.contains("sslkey="),
        "{err}"
    );
}

#[test]
fn a_reader_not_granted_select_is_told_what_to_grant_and_answers_locally() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    execute(
        &db.admin,
        "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM ragls_reader",
    );
    let out = team(
        &sb,
        "search",
        &db.reader,
        "main",
        &["--json", "evict least recently used"],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("ragls_reader may not read")
            && err.contains("GRANT SELECT ON ALL TABLES IN SCHEMA public TO ragls_reader"),
        "{err}"
    );
    assert!(
        !err.contains("may only read"),
        "a reader is not sent to the writer role: {err}"
    );
    let results: Value = serde_json::from_slice(&out.stdout).expect("json");
    let results = results["results"].as_array().expect("results").clone();
    common::assert_in_top(
        &results,
        3,
        &common::lru_evict(),
        "evict, from the local index",
    );
}

#[test]
fn a_read_only_role_searches_but_cannot_write() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    let results = search_shared(
        &bare_reader(),
        &db.reader,
        "main",
        "evict least recently used",
        &NO_OVERLAY,
    );
    common::assert_in_top(&results, 3, &common::lru_evict(), "evict");

    sb.write("src/new_module.rs", "pub fn written_by_a_reader() {}\n");
    let out = team(&sb, "index", &db.reader, "main", &[]);
    let err = refused(&out);
    assert!(
        err.contains("refused a write") && err.contains("writer role"),
        "{err}"
    );
    assert!(
        !err.contains("ragls-test-reader"),
        "the password is never printed: {err}"
    );
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM blobs WHERE path = 'src/new_module.rs'"
        ),
        0
    );
}

#[test]
fn settings_in_the_repository_may_not_hold_the_database_password() {
    let sb = Sandbox::with_project();
    sb.write(
        ".ragls.toml",
        "[store]\nurl = \"postgres://ragls_writer:hunter2@db.example:5432/ragls\"\n",
    );
    let out = sb.ragls("search", &["anything"]);
    let err = refused(&out);
    assert!(err.contains("store.url holds a password"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let sb = Sandbox::with_project();
    let out = team(
        &sb,
        "index",
        "postgres://w:s3cret@127.0.0.1:1/ragls",
        "main",
        &[],
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot reach the shared index at 127.0.0.1:1/ragls"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

/// A question reads its snapshot's file list through the list's key even when the
/// statistics are older than most snapshots (a burst of CI updates before autovacuum
/// analyzes): planned from them, generically, it scanned every snapshot's list.
#[test]
fn a_question_reads_one_snapshots_files_when_the_statistics_know_of_one_snapshot_only() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    // Statistics of one snapshot (the first build analyzes), then 2,000 snapshots more,
    // each listing every file, that autovacuum may not analyze meanwhile.
    let admin = db.admin.clone();
    execute(
        &admin,
        "ALTER TABLE snapshot_files SET (autovacuum_enabled = false);
         ANALYZE snapshot_files;
         INSERT INTO snapshots(repo_id, embedder, dimensions)
           SELECT repo_id, embedder, dimensions FROM snapshots, generate_series(1, 2000);
         INSERT INTO snapshot_files(snapshot_id, path, blob_id)
           SELECT s.id, f.path, f.blob_id FROM snapshots s, snapshot_files f
           WHERE s.id <> (SELECT snapshot_id FROM refs) AND f.snapshot_id = (SELECT snapshot_id FROM refs);",
    );
    let seq_scans = || {
        count(
            &admin,
            "SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables WHERE relname = 'snapshot_files'",
        )
    };
    // A backend's counts are in once it has exited: the set-up's (the statement above
    // scans the lists) are counted before the question, not after it. Under CI's load the
    // connection just closed was still exiting when they were first read.
    let others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&admin, others) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = seq_scans();
    let results = search_shared(
        &bare_reader(),
        &db.reader,
        "main",
        "parse the configuration file",
        &NO_OVERLAY,
    );
    assert!(!results.is_empty(), "the question found nothing");
    // A backend's counts are in once it has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'ragls_reader'",
    ) > 0
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = seq_scans();
    assert_eq!(
        after,
        before,
        "the question scanned the whole file list table {} time(s)",
        after - before
    );
    drop(sb);
}

#[test]
fn the_replica_serves_reads() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    // The replica replays the primary's WAL: wait until it has the ref.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let on_replica =
            std::panic::catch_unwind(|| count(&db.replica, "SELECT count(*) FROM refs"));
        if matches!(on_replica, Ok(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "the replica never caught up");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Reads go to store.read_url: the primary named in store.url is not even reachable.
    let results = search_shared(
        &bare_reader(),
        "postgres://ragls_reader@127.0.0.1:1/unused",
        "main",
        "evict least recently used",
        &[
            "--set",
            "store.overlay=false",
            "--set",
            &format!("store.read_url=\"{}\"", db.replica),
        ],
    );
    common::assert_in_top(
        &results,
        3,
        &common::lru_evict(),
        "evict (from the replica)",
    );
    // A writer pointed at the replica is told where writes go.
    let (writer_login, _) = db.writer.split_once('@').expect("user@host");
    let (_, replica_host) = db.replica.split_once('@').expect("user@host");
    sb.write("src/gamma.rs", "pub fn gamma_on_the_replica() {}\n");
    let out = team(
        &sb,
        "index",
        &format!("{writer_login}@{replica_host}"),
        "main",
        &[],
    );
    let err = refused(&out);
    assert!(
        err.contains("takes no writes") && err.contains("primary"),
        "{err}"
    );
    assert!(!err.contains("may only read"), "{err}");
}

#[test]
fn a_database_that_goes_away_mid_session_degrades_to_local_results_and_recovers() {
    // Stops the shared server: no other test may use it meanwhile.
    let guard = SERVER.write().unwrap_or_else(|e| e.into_inner());
    let db = TeamDb::create_with(Box::new(guard));
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    // Local work the shared ref lacks.
    sb.write(
        "src/local_only.rs",
        "/// Only in this working tree.\npub fn reconcile_local_ledger() -> u32 {\n    42\n}\n",
    );
    let home = sb.tmp.path().join("lsp");
    let opts = ServerOptions::new(common::BIN, &home)
        .env("RAGLS_STORE_URL", &db.reader)
        .env("RAGLS_STORE_REF", "main");
    let c = LspClient::spawn(&opts);
    let root = sb.ws.canonicalize().unwrap();
    c.initialize(
        &[&root],
        json!({ "index": { "dir": sb.index.to_string_lossy() } }),
        json!({}),
    );
    c.wait_ready(Duration::from_secs(120));
    let ask = |q: &str| c.request_ok("rag/ask", json!({ "query": q }));
    let shared = ask("evict the least recently used cache entry");
    assert!(shared.get("notes").is_none(), "{shared}");
    assert!(shared["sources"].to_string().contains("lru.rs"), "{shared}");

    let ctl = env("RAGLS_TEST_PG_CTL");
    let stop = Command::new(&ctl).arg("stop").output().unwrap();
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    let degraded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ask("reconcile local ledger")
    }));
    let start = Command::new(&ctl).arg("start").output().unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let degraded =
        degraded.unwrap_or_else(|_| panic!("rag/ask failed while the database was away"));
    let notes = degraded["notes"].to_string();
    assert!(
        notes.contains("cannot reach the shared index"),
        "{degraded}"
    );
    assert!(notes.contains("local index only"), "{degraded}");
    assert!(!notes.contains("ragls-test-reader"), "{degraded}");
    assert!(
        degraded["sources"].to_string().contains("local_only.rs"),
        "local results: {degraded}"
    );

    // The shared index is retried in the background (every second) once it went
    // away, so shared results come back within a few questions of the restart.
    let deadline = Instant::now() + Duration::from_secs(60);
    let recovered = loop {
        let answer = ask("evict the least recently used cache entry");
        if answer.get("notes").is_none() || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(recovered.get("notes").is_none(), "{recovered}");
    assert!(
        recovered["sources"].to_string().contains("lru.rs"),
        "{recovered}"
    );
    c.shutdown_and_exit();
}

#[test]
fn an_unsaved_buffer_is_searched_over_the_shared_index_in_the_editor() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    let home = sb.tmp.path().join("lsp");
    let opts = ServerOptions::new(common::BIN, &home)
        .env("RAGLS_STORE_URL", &db.reader)
        .env("RAGLS_STORE_REF", "main");
    let c = LspClient::spawn(&opts);
    let root = sb.ws.canonicalize().unwrap();
    c.initialize(
        &[&root],
        json!({ "index": { "dir": sb.index.to_string_lossy() } }),
        json!({}),
    );
    c.wait_ready(Duration::from_secs(120));
    let status = c.status();
    assert_eq!(status["files"], 0, "the overlay starts empty: {status}");

    // An edit that is never saved: a function the shared index cannot have.
    let path = "src/cache/lru.rs";
    let disk = sb.read(path);
    let buffer = format!(
        "{disk}\n/// Drains the quokka backlog (unsaved).\npub fn drain_quokka_backlog() -> usize {{\n    0\n}}\n"
    );
    let uri = crate::lsp_client::file_uri(&root.join(path));
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": "rust", "version": 1, "text": buffer } }),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let hit = loop {
        let r = c.request_ok("rag/search", json!({ "query": "drain quokka backlog" }));
        let found = r["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| {
                h["symbol"]
                    .as_str()
                    .is_some_and(|s| s.contains("drain_quokka_backlog"))
            })
            .cloned();
        if let Some(hit) = found {
            break hit;
        }
        assert!(
            Instant::now() < deadline,
            "the unsaved function never became searchable: {r}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(hit["uri"], uri, "{hit}");
    let fn_line = common::line_of(&buffer, "pub fn drain_quokka_backlog") - 1;
    let start = hit["range"]["start"]["line"].as_u64().unwrap();
    let end = hit["range"]["end"]["line"].as_u64().unwrap();
    assert!(start <= fn_line && fn_line <= end, "{hit}");
    // The shared index itself never saw it.
    let shared = search_shared(
        &bare_reader(),
        &db.reader,
        "main",
        "drain quokka backlog",
        &NO_OVERLAY,
    );
    assert!(!has_symbol(&shared, "drain_quokka_backlog"), "{shared:?}");
    c.shutdown_and_exit();
}

#[test]
fn the_mcp_server_searches_the_shared_index_with_a_read_only_role() {
    use std::io::{BufRead, BufReader, Write};
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    index_shared(&sb, &db.writer, "main", &[]);
    // The agent's checkout is the indexed one: its overlay stays empty.
    let mut child = sb
        .command()
        .args(["mcp", "--workspace"])
        .arg(&sb.ws)
        .arg("--index-dir")
        .arg(&sb.index)
        .args(["--store", &db.reader, "--ref", "main"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut send = |line: Value| {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    };
    let mut answer = |id: i64| -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "the MCP server closed stdout"
            );
            let v: Value = serde_json::from_str(line.trim()).expect("JSON-RPC on stdout");
            if v["id"] == id {
                return v;
            }
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}),
    );
    answer(1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let deadline = Instant::now() + Duration::from_secs(60);
    let results = loop {
        send(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "search_code", "arguments": {"query": "evict the least recently used cache entry"}}}),
        );
        let r = answer(2)["result"].clone();
        let results = r["structuredContent"]["results"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !results.is_empty() {
            break results;
        }
        assert!(
            Instant::now() < deadline,
            "no results from the shared index: {r}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let e = common::lru_evict();
    assert!(
        results.iter().any(|r| r["path"] == e.path),
        "the MCP server reads the shared ref: {results:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_database_without_a_ragls_index_yet_is_a_note_and_local_results() {
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let out = team(
        &sb,
        "search",
        &db.reader,
        "main",
        &["--json", "evict least recently used"],
    );
    let err = stderr_of(&out);
    let v = json_of(&ok(out, "search before any shared index"));
    assert!(err.contains("has no ragls index yet"), "{err}");
    assert!(err.contains("results from the local index only"), "{err}");
    let results = v["results"].as_array().unwrap().clone();
    common::assert_in_top(&results, 3, &common::lru_evict(), "evict (local)");
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        0,
        "a reader creates nothing"
    );
}

#[test]
fn a_wrong_password_is_a_clear_error_that_never_prints_it() {
    let db = TeamDb::create();
    let wrong = db.reader.replace("ragls-test-reader", "not-the-password");
    assert_ne!(wrong, db.reader, "the reader URL carries the test password");
    let sb = Sandbox::with_project();
    let out = team(
        &sb,
        "index",
        &wrong.replace("ragls_reader", "ragls_writer"),
        "main",
        &[],
    );
    let err = refused(&out);
    assert!(err.contains("refused the login"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn two_writers_of_one_ref_at_once_leave_one_whole_state_not_a_mix() {
    let db = TeamDb::create();
    // Two checkouts of one repository (both folders are named `workspace`).
    let a = Sandbox::with_project();
    let b = Sandbox::with_project();
    a.write(
        "src/only_in_a.rs",
        "pub fn marker_from_checkout_alpha() {}\n",
    );
    b.write(
        "src/only_in_b.rs",
        "pub fn marker_from_checkout_bravo() {}\n",
    );
    let writers: Vec<_> = [&a, &b]
        .iter()
        .map(|sb| {
            team_cmd(sb, "index", &db.writer, "main", &["--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in writers {
        ok(w.wait_with_output().unwrap(), "a concurrent writer");
    }
    let s = symbols(&search_shared(
        &bare_reader(),
        &db.reader,
        "main",
        "marker from checkout alpha bravo",
        &NO_OVERLAY,
    ));
    let alpha = s.iter().any(|x| x.contains("marker_from_checkout_alpha"));
    let bravo = s.iter().any(|x| x.contains("marker_from_checkout_bravo"));
    assert!(alpha != bravo, "exactly one writer's state: {s:?}");
    assert_eq!(count(&db.admin, "SELECT count(*) FROM refs"), 1);
    // The files both checkouts share were written once: the writer that came second
    // kept the first one's versions and dropped its own rows.
    for twice in [
        "SELECT count(*) FROM (SELECT blob_id, ord FROM chunks GROUP BY 1, 2 HAVING count(*) > 1) d",
        "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)",
        "SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = p.blob_id)
         AND NOT EXISTS (SELECT 1 FROM version_sources s WHERE s.src = p.blob_id)",
        "SELECT count(*) FROM version_sources s WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = s.blob_id)",
    ] {
        assert_eq!(count(&db.admin, twice), 0, "{twice}");
    }
}

/// Every file of the sandbox's workspace modified an hour ago, as in a checkout that was
/// there before the writer's last run.
fn age_files(sb: &Sandbox) {
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for (path, _) in common::FIXTURE {
        let f = std::fs::File::options()
            .write(true)
            .open(sb.path(path))
            .expect("a fixture file");
        f.set_modified(an_hour_ago).expect("set the mtime");
    }
}

#[test]
fn a_writer_rereads_only_the_files_changed_on_disk_since_its_last_run_and_misses_no_change() {
    let db = TeamDb::create();
    let (sb, first) = fixture_in_main(&db);
    assert_eq!(first["filesHashed"], first["filesSeen"], "{first}");
    // New mtimes (a fresh checkout's): every file is read again.
    age_files(&sb);
    let aged = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(aged["filesHashed"], aged["filesSeen"], "{aged}");
    assert_eq!(aged["updated"], false, "{aged}");

    // One file changed: it alone is read; its new function is in the ref.
    let text = sb.read("client/retry.py");
    sb.write(
        "client/retry.py",
        text.replacen(
            "def retry_with_backoff(",
            "def retry_with_backoff_renamed(",
            1,
        ),
    );
    let changed = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(changed["filesHashed"], 1, "{changed}");
    assert_eq!(changed["filesChunked"], 1, "{changed}");
    // The same size and a new mtime (a checkout of another commit): read, and seen.
    let text = sb.read("src/cache/lru.rs");
    assert!(text.contains("pub fn get(&mut self"));
    sb.write("src/cache/lru.rs", lru_get_renamed(&text, "gxt"));
    let same_size = index_shared(&sb, &db.writer, "main", &[]);
    assert!(same_size["filesHashed"].as_u64() >= Some(1), "{same_size}");
    assert_eq!(same_size["filesChunked"], 1, "{same_size}");
    let reader = bare_reader();
    let hits = search_shared(
        &reader,
        &db.reader,
        "main",
        "retry_with_backoff_renamed",
        &NO_OVERLAY,
    );
    assert!(has_symbol(&hits, "retry_with_backoff_renamed"), "{hits:?}");
    let hits = search_shared(&reader, &db.reader, "main", "gxt", &NO_OVERLAY);
    assert!(has_symbol(&hits, "gxt"), "{hits:?}");
}

#[test]
fn a_file_changed_back_to_the_bases_content_is_not_chunked_though_the_walk_began_it() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let original = sb.read("src/cache/lru.rs");
    sb.write("src/cache/lru.rs", lru_get_renamed(&original, "gxt"));
    let feature = index_shared(&sb, &db.writer, "feature", &["--base", "main"]);
    assert_eq!(feature["filesChunked"], 1, "{feature}");
    // The writer's last snapshot (feature's) has the edit; main, the base now, has the
    // file as it is again: the walk chunks it early, and the update drops that.
    sb.write("src/cache/lru.rs", &original);
    let back = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(back["filesChunked"], 0, "{back}");
    assert_eq!(back["chunksAdded"], 0, "{back}");
    assert_eq!(back["updated"], false, "{back}");
    // And the early chunking is used when the file does differ from the base.
    sb.write("src/cache/lru.rs", lru_get_renamed(&original, "gyt"));
    let changed = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(changed["filesChunked"], 1, "{changed}");
    let hits = search_shared(&bare_reader(), &db.reader, "main", "gyt", &NO_OVERLAY);
    assert!(has_symbol(&hits, "gyt"), "{hits:?}");
}

#[test]
fn a_file_the_ref_has_that_a_new_ignore_rule_leaves_out_leaves_the_ref_though_it_changed() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    // Changed on disk since the writer's last run, whose file list has it, and
    // gitignored from now on: it leaves the ref, its new content unindexed.
    let original = sb.read("src/cache/lru.rs");
    sb.write("src/cache/lru.rs", lru_get_renamed(&original, "gzt"));
    sb.write(".gitignore", "src/cache/\n");
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesRemoved"], 1, "{report}");
    assert_eq!(
        report["filesChunked"], 1,
        "only the .gitignore itself: {report}"
    );
    let hits = search_shared(&bare_reader(), &db.reader, "main", "gzt", &NO_OVERLAY);
    assert!(!has_symbol(&hits, "gzt"), "{hits:?}");
    let listed = count(
        &db.admin,
        "SELECT count(*) FROM refs r JOIN snapshots s ON s.id = r.snapshot_id
         JOIN snapshot_files f ON f.snapshot_id = s.id
         WHERE r.name = 'main' AND f.path = 'src/cache/lru.rs' AND f.blob_id IS NOT NULL",
    );
    assert_eq!(listed, 0, "the ignored file is not listed");
}

/// The fixture's `src/cache/lru.rs` (`text`) with its `get` method renamed `to`: an edit
/// of the same size whose new name a search can find.
fn lru_get_renamed(text: &str, to: &str) -> String {
    assert!(
        text.contains("pub fn get(&mut self"),
        "the fixture's lru.rs changed"
    );
    text.replacen("pub fn get(&mut self", &format!("pub fn {to}(&mut self"), 1)
}

/// The file list a writer keeps of the snapshot it made last (`writer_base`).
fn kept_base(sb: &Sandbox) -> std::path::PathBuf {
    sb.index.join("shared-writer-base.tsv")
}

#[test]
fn a_writer_trusts_the_file_list_it_kept_only_while_its_ref_is_still_that_snapshot() {
    let db = TeamDb::create();
    let one_repo = ["--set", "store.repo=fixture"];
    let mine = fixture_workspace();
    index_shared(&mine, &db.writer, "main", &one_repo);
    let kept = std::fs::read_to_string(kept_base(&mine)).expect("the kept file list");
    let last = kept.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("snapshot\t"), "{last}");

    // The kept list stands in for the database's while the stamp matches: a line taken
    // out of it shows up as a file the base lacks (its version is known, so reused).
    let without_lru: String = kept
        .lines()
        .filter(|l| !l.starts_with("src/cache/lru.rs\t"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without_lru, kept);
    std::fs::write(kept_base(&mine), &without_lru).unwrap();
    let trusted = index_shared(&mine, &db.writer, "main", &one_repo);
    assert_eq!(trusted["filesReused"], 1, "{trusted}");
    // The same list under a stamp of another time (a database made anew gives the same
    // ids again): not trusted; the database's list is read, and nothing differs.
    let kept = std::fs::read_to_string(kept_base(&mine)).unwrap();
    let (body, stamp) = kept
        .trim_end()
        .rsplit_once('\n')
        .expect("files, then the stamp");
    let f: Vec<&str> = stamp.split('\t').collect();
    let micros: i64 = f[2].parse().unwrap();
    let body: String = body
        .lines()
        .filter(|l| !l.starts_with("src/cache/lru.rs\t"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        kept_base(&mine),
        format!("{body}snapshot\t{}\t{}\n", f[1], micros + 1),
    )
    .unwrap();
    let read_again = index_shared(&mine, &db.writer, "main", &one_repo);
    assert_eq!(read_again["updated"], false, "{read_again}");
    assert_eq!(read_again["filesReused"], 0, "{read_again}");

    // Another checkout (an index folder of its own) moves main: a function renamed.
    let theirs = fixture_workspace();
    let text = theirs.read("client/retry.py");
    theirs.write(
        "client/retry.py",
        text.replacen(
            "def retry_with_backoff(",
            "def retry_with_backoff_theirs(",
            1,
        ),
    );
    index_shared(&theirs, &db.writer, "main", &one_repo);
    // Mine changes another file and updates main: its own list is of an older snapshot,
    // so main's files are read, and main gets mine's client/retry.py back.
    let text = mine.read("src/cache/lru.rs");
    mine.write("src/cache/lru.rs", lru_get_renamed(&text, "gxt"));
    let report = index_shared(&mine, &db.writer, "main", &one_repo);
    assert_eq!(report["filesChunked"], 1, "{report}");
    assert_eq!(report["filesReused"], 1, "{report}");
    let reader = bare_reader();
    let hits = search_shared(
        &reader,
        &db.reader,
        "main",
        "retry_with_backoff_theirs",
        &[&NO_OVERLAY[..], &one_repo[..]].concat(),
    );
    assert!(!has_symbol(&hits, "retry_with_backoff_theirs"), "{hits:?}");
    let hits = search_shared(
        &reader,
        &db.reader,
        "main",
        "gxt",
        &[&NO_OVERLAY[..], &one_repo[..]].concat(),
    );
    assert!(has_symbol(&hits, "gxt"), "{hits:?}");
}

#[test]
fn old_snapshots_are_cleaned_up_with_the_file_versions_only_they_had() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let text = sb.read("client/retry.py");
    sb.write(
        "client/retry.py",
        text.replacen(
            "def retry_with_backoff(",
            "def retry_with_backoff_second(",
            1,
        ),
    );
    index_shared(&sb, &db.writer, "main", &[]);
    // Another ref, on main's second state.
    index_shared(&sb, &db.writer, "keep", &[]);
    assert_eq!(count(&db.admin, "SELECT count(*) FROM snapshots"), 3);
    let versions = |path: &str| {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM blobs WHERE path = '{path}'"),
        )
    };
    assert_eq!(versions("client/retry.py"), 2);
    // Recent snapshots are kept (a reader may still be on one): only old ones go.
    execute(
        &db.admin,
        "UPDATE snapshots SET created_at = now() - interval '2 hours'",
    );
    sb.write(
        "client/retry.py",
        text.replacen(
            "def retry_with_backoff(",
            "def retry_with_backoff_third(",
            1,
        ),
    );
    index_shared(&sb, &db.writer, "main", &[]);
    // Left: main's new snapshot, the full list it lists its changes from (main's
    // first), and `keep`'s; main's second snapshot went. Every version of retry.py is
    // still listed: the first by main's base, the second by `keep`, the third by main.
    let left = "SELECT count(*) FROM snapshots";
    assert_eq!(count(&db.admin, left), 3);
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM snapshots s JOIN refs r ON r.snapshot_id = s.id
             WHERE r.name = 'main' AND s.base_id = (SELECT min(id) FROM snapshots)"
        ),
        1
    );
    assert_eq!(versions("client/retry.py"), 3);
    // `keep` goes; once its snapshot and main's third are old, the next update's
    // clean-up removes them and the versions only they had (the second and third),
    // with their chunks and postings.
    execute(
        &db.admin,
        "DELETE FROM refs WHERE name = 'keep';
         UPDATE snapshots SET created_at = now() - interval '2 hours'",
    );
    sb.write(
        "client/retry.py",
        text.replacen(
            "def retry_with_backoff(",
            "def retry_with_backoff_fourth(",
            1,
        ),
    );
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(count(&db.admin, left), 2);
    assert_eq!(versions("client/retry.py"), 2);
    for orphans in [
        "SELECT count(*) FROM snapshot_files sf WHERE NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.id = sf.snapshot_id)",
        "SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM snapshot_files sf WHERE sf.blob_id = b.id)",
        "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = c.blob_id)",
        "SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = p.blob_id)
         AND NOT EXISTS (SELECT 1 FROM version_sources s WHERE s.src = p.blob_id)",
        "SELECT count(*) FROM version_sources s WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = s.blob_id)",
    ] {
        assert_eq!(count(&db.admin, orphans), 0, "{orphans}");
    }
    let reader = bare_reader();
    let hits = search_shared(
        &reader,
        &db.reader,
        "main",
        "retry_with_backoff_fourth",
        &NO_OVERLAY,
    );
    assert!(has_symbol(&hits, "retry_with_backoff_fourth"), "{hits:?}");
    for gone in ["retry_with_backoff_second", "retry_with_backoff_third"] {
        let hits = search_shared(&reader, &db.reader, "main", gone, &NO_OVERLAY);
        assert!(!has_symbol(&hits, gone), "{gone}: {hits:?}");
    }
}

/// The files of snapshot `id` (an SQL expression) as rows of (path, blob_id), its list
/// resolved: its own rows (a removed file's have no version), and, when it lists the
/// changes since a base, the base's rows of every other path.
fn files_of(id: &str) -> String {
    format!(
        "SELECT path, blob_id FROM snapshot_files WHERE snapshot_id = {id} AND blob_id IS NOT NULL
         UNION ALL
         SELECT r.path, r.blob_id FROM snapshot_files r
         WHERE r.snapshot_id = (SELECT base_id FROM snapshots WHERE id = {id})
           AND NOT EXISTS (SELECT 1 FROM snapshot_files o WHERE o.snapshot_id = {id} AND o.path = r.path)"
    )
}

/// Each hit's path, first line and score, in rank order.
fn ranking(hits: &[Value]) -> Vec<(String, u64, f64)> {
    hits.iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap_or_default().to_string(),
                h["start_line"].as_u64().unwrap_or_default(),
                h["score"].as_f64().unwrap_or_default(),
            )
        })
        .collect()
}

/// The ranking of `question` on `ref_name` without the overlay, BM25 ranked by the reader
/// while the postings are at most `pairs` (0: by the database).
fn ranked_shared(
    reader: &Sandbox,
    db: &TeamDb,
    ref_name: &str,
    question: &str,
    pairs: &str,
) -> Vec<(String, u64, f64)> {
    let setting = format!("store.reader_bm25_pairs={pairs}");
    let settings = ["--set", "store.overlay=false", "--set", &setting];
    ranking(&search_shared(
        reader, &db.reader, ref_name, question, &settings,
    ))
}

/// The same hits in the same order, each with the same score (to float rounding).
fn assert_ranked_alike(before: &[(String, u64, f64)], after: &[(String, u64, f64)]) {
    assert_eq!(before.len(), after.len(), "{before:?}\n{after:?}");
    for (b, a) in before.iter().zip(after) {
        assert_eq!((&b.0, b.1), (&a.0, a.1), "{before:?}\n{after:?}");
        assert!((b.2 - a.2).abs() < 1e-6, "{before:?}\n{after:?}");
    }
}

/// Rewrites a database of this schema back to version 11: each version's postings in
/// rows of its own ([`POSTINGS_UNSHARED`]), then no sharing table and view (schema 12).
fn down_to_schema_11(db: &TeamDb) {
    execute(&db.writer, POSTINGS_UNSHARED);
    execute(
        &db.writer,
        "DROP VIEW version_postings;
         DROP TABLE version_sources;
         DELETE FROM ragls_schema WHERE version >= 12;",
    );
}

/// Rewrites a database of this schema back to version 3's postings (a row per term and
/// chunk, the figures in the covering term index) and its HNSW indexes of whole vectors,
/// as ragls 0.x before schema 4 left it, its chunks' ids from a sequence as those of a
/// database made before schema 3.
const DOWN_TO_SCHEMA_3: &str = "
DROP TABLE snapshot_postings;
CREATE TABLE postings_v3 (term text NOT NULL, blob_id bigint NOT NULL, chunk_id bigint NOT NULL,
    head smallint NOT NULL, body smallint NOT NULL, terms integer NOT NULL);
INSERT INTO postings_v3
    SELECT p.term, p.blob_id, (p.blob_id << 24) | ((u.f >> 40) & 16777215),
           ((u.f >> 32) & 255)::smallint, least((u.f >> 16) & 65535, 32767)::smallint,
           (u.f & 65535)::integer
    FROM postings p, unnest(p.packed) AS u(f);
DROP TABLE postings;
CREATE TEMP TABLE sequence_ids AS SELECT id AS made, row_number() OVER (ORDER BY id) AS taken FROM chunks;
UPDATE postings_v3 p SET chunk_id = s.taken FROM sequence_ids s WHERE p.chunk_id = s.made;
UPDATE chunks c SET id = s.taken FROM sequence_ids s WHERE c.id = s.made;
ALTER TABLE postings_v3 RENAME TO postings;
CREATE INDEX postings_by_term ON postings(term) INCLUDE (blob_id, chunk_id, head, body, terms);
CREATE INDEX postings_by_blob ON postings(blob_id);
DO $$
DECLARE
    half text;
    dims integer;
BEGIN
    FOR half IN SELECT relname FROM pg_class WHERE relkind = 'i' AND relname ~ '^embeddings_hnsw_half_[0-9]+$' LOOP
        dims := substring(half FROM '[0-9]+$')::integer;
        EXECUTE format('CREATE INDEX embeddings_hnsw_%s ON embeddings USING hnsw '
                       '((vector::vector(%s)) vector_cosine_ops) WHERE dimensions = %s', dims, dims, dims);
        EXECUTE format('DROP INDEX %I', half);
    END LOOP;
END $$;
DROP INDEX snapshots_by_base;
ALTER TABLE snapshots DROP COLUMN base_id;
ALTER TABLE snapshot_files ALTER COLUMN blob_id SET NOT NULL;
DELETE FROM ragls_schema WHERE version >= 4;";

#[test]
fn a_schema_3_database_is_migrated_by_the_next_writer_and_its_refs_rank_as_before() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let reader = bare_reader();
    let question = "retry the request with backoff";
    let before = ranking(&search_shared(
        &reader,
        &db.reader,
        "main",
        question,
        &NO_OVERLAY,
    ));
    assert!(!before.is_empty());
    let grouped = count(&db.admin, "SELECT count(*) FROM postings");
    let hnsw_indexes = |pattern: &str| {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM pg_indexes WHERE tablename = 'embeddings' AND indexname ~ '{pattern}'"),
        )
    };
    // A writer makes the HNSW index with ragls's graph parameters (`HNSW_GRAPH`).
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_class WHERE relname ~ '^embeddings_hnsw_half_[0-9]+$'
             AND reloptions @> ARRAY['m=12', 'ef_construction=64']",
        ),
        1
    );
    down_to_schema_11(&db);
    execute(&db.writer, DOWN_TO_SCHEMA_3);
    assert_eq!(hnsw_indexes("^embeddings_hnsw_[0-9]+$"), 1);
    assert_eq!(hnsw_indexes("^embeddings_hnsw_half_"), 0);
    let per_chunk = count(&db.admin, "SELECT count(*) FROM postings");
    let made_ids = "SELECT count(*) FROM chunks WHERE id = ((blob_id << 24) | ord)";
    assert_eq!(count(&db.admin, made_ids), 0);
    assert!(
        per_chunk > grouped,
        "{per_chunk} rows per chunk, {grouped} grouped"
    );

    // A reader does not migrate: it says who can.
    let refused = team(
        &reader,
        "search",
        &db.reader,
        "main",
        &["--set", "store.overlay=false", question],
    );
    let said = stderr_of(&refused);
    assert!(
        said.contains("schema version 3") && said.contains("ragls index --store"),
        "{said}"
    );

    // The next writer migrates it; the ref it left ranks as it did.
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesChunked"], 0, "{report}");
    assert_eq!(
        count(&db.admin, "SELECT max(version)::bigint FROM ragls_schema"),
        12
    );
    // Schema 9: every chunk's id is made from its version's and its place again, as the
    // postings name them.
    assert_eq!(
        count(&db.admin, made_ids),
        count(&db.admin, "SELECT count(*) FROM chunks")
    );
    // Schema 8: the postings' only index is by term.
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'postings' AND indexname <> 'postings_by_term'"
        ),
        0
    );
    // Schema 6: the vectors' HNSW index holds them in half precision, the old one is gone.
    assert_eq!(hnsw_indexes("^embeddings_hnsw_[0-9]+$"), 0);
    assert_eq!(hnsw_indexes("^embeddings_hnsw_half_[0-9]+$"), 1);
    assert_eq!(count(&db.admin, "SELECT count(*) FROM postings"), grouped);
    // Schema 5: the term index has no covering columns; schema 10: it holds the terms and
    // their file versions.
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'postings'
             AND indexname = 'postings_by_term' AND indexdef LIKE '%(term, blob_id)' AND indexdef NOT LIKE '%INCLUDE%'"
        ),
        1
    );
    let after = ranking(&search_shared(
        &reader,
        &db.reader,
        "main",
        question,
        &NO_OVERLAY,
    ));
    assert_ranked_alike(&before, &after);

    // And it writes the new layout on top of the migrated one.
    rename_in(
        &sb,
        "client/retry.py",
        "def retry_with_backoff(",
        "def retry_after_migrating(",
    );
    index_shared(&sb, &db.writer, "main", &[]);
    let hits = search_shared(
        &reader,
        &db.reader,
        "main",
        "retry_after_migrating",
        &NO_OVERLAY,
    );
    assert!(has_symbol(&hits, "retry_after_migrating"), "{hits:?}");
}

/// Rewrites a database of this schema back to version 8's postings (each chunk's id and
/// its packed figures in two arrays), its reader granted `SELECT` on each table as it was
/// made (the default privileges then revoked: tables made later are not readable to it).
const DOWN_TO_SCHEMA_8: &str = "
DROP TABLE snapshot_postings;
CREATE TABLE postings_v8 (term text NOT NULL, blob_id bigint NOT NULL,
    chunk_ids bigint[] NOT NULL, figures bigint[] NOT NULL);
INSERT INTO postings_v8
    SELECT p.term, p.blob_id, array_agg((p.blob_id << 24) | ((u.f >> 40) & 16777215) ORDER BY u.o),
           array_agg((((u.f >> 32) & 255) << 48) | (((u.f >> 16) & 65535) << 32) | (u.f & 65535) ORDER BY u.o)
    FROM postings p, unnest(p.packed) WITH ORDINALITY AS u(f, o) GROUP BY p.term, p.blob_id;
DROP TABLE postings;
ALTER TABLE postings_v8 RENAME TO postings;
CREATE INDEX postings_by_term ON postings(term);
ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer REVOKE SELECT ON TABLES FROM ragls_reader;
DELETE FROM ragls_schema WHERE version >= 9;";

#[test]
fn a_schema_8_database_gets_one_number_a_posting_and_its_readers_keep_reading_it() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let reader = bare_reader();
    let ranked = |pairs: &str| {
        ranked_shared(
            &reader,
            &db,
            "main",
            "retry the request with backoff",
            pairs,
        )
    };
    let before = ranked("20000");
    assert!(!before.is_empty());
    let elements = "SELECT sum(cardinality(packed))::bigint FROM postings";
    let pairs = count(&db.admin, elements);
    down_to_schema_11(&db);
    execute(&db.writer, DOWN_TO_SCHEMA_8);
    assert_eq!(
        count(
            &db.admin,
            "SELECT sum(cardinality(chunk_ids))::bigint FROM postings"
        ),
        pairs
    );

    // The next writer migrates it: as many postings, one number each, and the reader,
    // granted the old table alone, reads the new one and ranks as before, whether it
    // ranks BM25 itself or the database does.
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesChunked"], 0, "{report}");
    assert_eq!(
        count(&db.admin, "SELECT max(version)::bigint FROM ragls_schema"),
        12
    );
    assert_eq!(count(&db.admin, elements), pairs);
    for reader_pairs in ["20000", "0"] {
        assert_ranked_alike(&before, &ranked(reader_pairs));
    }
}

/// The fixture in main, then main listing its changes to its first snapshot (one file's
/// function renamed), whose postings by term its readers read: for the migrations' tests.
fn main_listing_its_changes(db: &TeamDb) -> Sandbox {
    let (sb, _) = fixture_in_main(db);
    rename_in(
        &sb,
        "client/retry.py",
        "def retry_with_backoff(",
        "def retry_request_backoff(",
    );
    index_shared(&sb, &db.writer, "main", &[]);
    assert_ne!(main_list(db).0, 0, "main lists its changes to a base");
    sb
}

/// What the migrations' tests ask before and after, ranked with this BM25 limit (each
/// ranking checked not empty): a question of the renamed file, and one of files left as
/// they were.
fn migrated_rankings(reader: &Sandbox, db: &TeamDb, pairs: &str) -> Vec<Vec<(String, u64, f64)>> {
    let rankings: Vec<_> = [
        "retry the request with backoff",
        "parse the configuration file",
    ]
    .iter()
    .map(|q| ranked_shared(reader, db, "main", q, pairs))
    .collect();
    assert!(rankings.iter().all(|r| !r.is_empty()), "{rankings:?}");
    rankings
}

/// Rewrites a database of this schema back to version 9: no postings by term for whole
/// file lists, the term index by term alone; its reader granted `SELECT` on each table
/// as it was made (the default privileges then revoked: tables made later are not
/// readable to it).
const DOWN_TO_SCHEMA_9: &str = "
DROP TABLE snapshot_postings;
DROP INDEX postings_by_term;
CREATE INDEX postings_by_term ON postings(term);
ALTER DEFAULT PRIVILEGES FOR ROLE ragls_writer REVOKE SELECT ON TABLES FROM ragls_reader;
DELETE FROM ragls_schema WHERE version >= 10;";

#[test]
fn a_schema_9_database_gets_its_whole_lists_postings_by_term_and_its_readers_keep_reading_it() {
    let db = TeamDb::create();
    let sb = main_listing_its_changes(&db);
    let reader = bare_reader();
    let before = migrated_rankings(&reader, &db, "20000");
    down_to_schema_11(&db);
    execute(&db.writer, DOWN_TO_SCHEMA_9);
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'snapshot_postings'"
        ),
        0
    );

    // The next writer migrates it: every whole list gets its postings by term, the term
    // index takes the file version, and the reader, granted the postings table alone,
    // reads the new table too and ranks as before, whether it ranks BM25 itself or the
    // database does.
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesChunked"], 0, "{report}");
    assert_eq!(
        count(&db.admin, "SELECT max(version)::bigint FROM ragls_schema"),
        12
    );
    assert!(count(&db.admin, "SELECT count(*) FROM snapshot_postings") > 0);
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'postings'
             AND indexname = 'postings_by_term' AND indexdef LIKE '%(term, blob_id)'"
        ),
        1
    );
    for pairs in ["20000", "0"] {
        for (before, after) in before.iter().zip(migrated_rankings(&reader, &db, pairs)) {
            assert_ranked_alike(before, &after);
        }
    }
}

/// Rewrites a database of this schema back to version 10: each whole list's postings by
/// term 16 bytes a posting (the file version's id beside each), no count column.
const DOWN_TO_SCHEMA_10: &str = "
TRUNCATE snapshot_postings;
ALTER TABLE snapshot_postings DROP COLUMN n;
INSERT INTO snapshot_postings (snapshot_id, term, postings)
SELECT f.snapshot_id, p.term,
       string_agg(int8send(p.blob_id) || int8send(e), ''::bytea ORDER BY p.blob_id, e)
FROM snapshot_files f JOIN postings p ON p.blob_id = f.blob_id
CROSS JOIN LATERAL unnest(p.packed) AS e
WHERE f.snapshot_id IN (SELECT id FROM snapshots WHERE base_id IS NULL)
GROUP BY f.snapshot_id, p.term;
DELETE FROM ragls_schema WHERE version >= 11;";

#[test]
fn a_schema_10_database_gets_a_version_once_a_group_and_its_readers_rank_as_before() {
    let db = TeamDb::create();
    let sb = main_listing_its_changes(&db);
    let reader = bare_reader();
    let before = migrated_rankings(&reader, &db, "20000");
    let bytes = "SELECT sum(octet_length(postings))::bigint FROM snapshot_postings";
    let grouped = count(&db.admin, bytes);
    down_to_schema_11(&db);
    execute(&db.writer, DOWN_TO_SCHEMA_10);
    let pairs = count(
        &db.admin,
        "SELECT sum(octet_length(postings) / 16)::bigint FROM snapshot_postings",
    );
    assert_eq!(count(&db.admin, bytes), 16 * pairs);
    assert!(
        grouped < 16 * pairs,
        "{grouped} bytes grouped, {pairs} postings"
    );

    // A reader of this ragls answers from its local index, told to have a writer migrate
    // the shared one. The next writer does: every whole list's postings rewritten and
    // counted, and ranked as before, whether the reader ranks BM25 itself or the database
    // does.
    let unmigrated = sb.ragls(
        "search",
        &[
            "--store",
            &db.reader,
            "--ref",
            "main",
            "--set",
            "store.overlay=false",
            "retry",
        ],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&unmigrated.stdout),
        String::from_utf8_lossy(&unmigrated.stderr)
    );
    assert!(
        said.contains("schema version 10, older than this ragls")
            && said.contains("results from the local index only"),
        "{said}"
    );
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesChunked"], 0, "{report}");
    assert_eq!(
        count(&db.admin, "SELECT max(version)::bigint FROM ragls_schema"),
        12
    );
    assert_eq!(count(&db.admin, bytes), grouped);
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    for pairs in ["20000", "0"] {
        for (before, after) in before.iter().zip(migrated_rankings(&reader, &db, pairs)) {
            assert_ranked_alike(before, &after);
        }
    }
}

#[test]
fn bm25_ranked_by_the_reader_from_sent_postings_ranks_as_the_database_ranks() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let reader = bare_reader();
    let ranked = |reader_pairs: &str, question: &str| -> Vec<(String, u64, f64, String)> {
        let setting = format!("store.reader_bm25_pairs={reader_pairs}");
        search_shared(
            &reader,
            &db.reader,
            "main",
            question,
            &["--set", "store.overlay=false", "--set", &setting],
        )
        .iter()
        .map(|h| {
            (
                h["path"].as_str().unwrap_or_default().to_string(),
                h["start_line"].as_u64().unwrap_or_default(),
                h["score"].as_f64().unwrap_or_default(),
                h["snippet"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
    };
    let ranked_alike = || {
        for question in [
            "retry the request with backoff",
            "ledger balance",
            "parse the configuration file",
        ] {
            // The default sends a small fixture's postings to the reader; 0 has the
            // database rank them ([`BM25_TOP`]); 3 sends them only while they are that
            // few: a process's first question, whose terms' statistics it reads with it,
            // then has them held back and the database rank them.
            let by_database = ranked("0", question);
            for by_reader in [ranked("20000", question), ranked("3", question)] {
                assert!(!by_reader.is_empty(), "{question}");
                assert_eq!(
                    by_reader.len(),
                    by_database.len(),
                    "{question}: {by_reader:?}\n{by_database:?}"
                );
                for (r, d) in by_reader.iter().zip(&by_database) {
                    assert_eq!(
                        (&r.0, r.1),
                        (&d.0, d.1),
                        "{question}: {by_reader:?}\n{by_database:?}"
                    );
                    assert!(
                        (r.2 - d.2).abs() < 1e-5,
                        "{question}: {by_reader:?}\n{by_database:?}"
                    );
                    // The reader reads its pool's texts with its winners' rows; the database's
                    // ranking has them read afterwards: the same code either way.
                    assert!(!r.3.trim().is_empty(), "{question}: {r:?}");
                    assert_eq!(r.3, d.3, "{question}");
                }
            }
        }
    };
    // On a full file list, then, after a small update, on a list of changes (whose
    // statements take the base's replaced versions and the snapshot's own).
    ranked_alike();
    let before = ranked("20000", "retry the request with backoff");
    rename_in(
        &sb,
        "client/retry.py",
        "def retry_with_backoff(",
        "def retry_ledger_backoff(",
    );
    index_shared(&sb, &db.writer, "main", &[]);
    assert_ne!(main_list(&db).0, 0, "main lists its changes to a base");
    assert_ne!(before, ranked("20000", "retry the request with backoff"));
    ranked_alike();
}

#[test]
fn a_list_of_changes_ranks_as_a_whole_list_of_the_same_files_and_a_local_edit_drops_the_shared_copy(
) {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    // main lists its changes to its first snapshot: a file changed, one removed, one
    // added. Its readers read the base's postings by term, drop the replaced versions'
    // and add its own versions'.
    rename_in(
        &sb,
        "client/retry.py",
        "def retry_with_backoff(",
        "def retry_request_backoff(",
    );
    std::fs::remove_file(sb.path("server/handlers.go")).expect("remove a file");
    sb.write(
        "client/backoff_policy.py",
        "def backoff_policy(request, attempt):\n    \"\"\"How long a request waits before its retry.\"\"\"\n    return min(2 ** attempt, 30)\n",
    );
    index_shared(&sb, &db.writer, "main", &[]);
    assert_ne!(main_list(&db).0, 0, "main lists its changes to a base");
    // The same files in a ref of their own: a whole list.
    index_shared(&sb, &db.writer, "whole", &[]);
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    let reader = bare_reader();
    for question in [
        "retry the request with backoff",
        "how long does a request wait",
        "handler for the server",
    ] {
        for pairs in ["20000", "3", "0"] {
            let of_changes = ranked_shared(&reader, &db, "main", question, pairs);
            assert!(!of_changes.is_empty(), "{question}");
            let of_whole = ranked_shared(&reader, &db, "whole", question, pairs);
            assert_ranked_alike(&of_changes, &of_whole);
        }
    }

    // A local edit of a file that main takes from its base, its lines moved down: its
    // shared copy's postings are dropped by the reader as the database drops its rows
    // (a stale copy would rank with the old lines), and the edit is found.
    let path = "client/config_loader.py";
    let config = sb.read(path);
    sb.write(
        path,
        format!(
            "{}{config}\ndef local_config_budget(request):\n    return 3\n",
            "# local note\n".repeat(5)
        ),
    );
    for question in ["parse the configuration file", "local config budget"] {
        let overlay = |pairs: &str| {
            let setting = format!("store.reader_bm25_pairs={pairs}");
            ranking(&search_shared(
                &sb,
                &db.reader,
                "main",
                question,
                &["--set", &setting],
            ))
        };
        let by_reader = overlay("20000");
        assert_ranked_alike(&by_reader, &overlay("0"));
        assert!(
            by_reader.iter().any(|h| h.0 == path),
            "{question}: {by_reader:?}"
        );
    }
}

#[test]
fn writers_that_meet_a_new_vector_dimension_at_once_create_its_index_once() {
    use ragls::store::pg::{PgOptions, PgStore};
    let db = TeamDb::create();
    let store = PgStore::connect(&PgOptions {
        url: db.writer.clone(),
        read_url: None,
        pool_size: 8,
        reader_bm25_pairs: 20_000,
    })
    .expect("connect");
    store.migrate().expect("migrate");
    // Eight writers of a model no ref used before, all at once: each makes sure of the
    // index; none may fail because another created it meanwhile.
    let start = std::sync::Barrier::new(8);
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    store.ensure_vector_index(7)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    let indexes = |name: &str| {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM pg_indexes WHERE indexname = '{name}'"),
        )
    };
    assert_eq!(indexes("embeddings_hnsw_half_7"), 1);
    // Half precision indexes models of up to 4,000 dimensions (3,072: OpenAI's large
    // embeddings); over that, the vectors are searched without an index.
    store.ensure_vector_index(3072).expect("3072");
    store.ensure_vector_index(4001).expect("4001");
    assert_eq!(indexes("embeddings_hnsw_half_3072"), 1);
    assert_eq!(indexes("embeddings_hnsw_half_4001"), 0);
}

#[test]
fn a_readied_pool_holds_the_connections_asked_for_up_to_its_size_and_questions_reuse_them() {
    use ragls::store::pg::{PgOptions, PgStore};
    let db = TeamDb::create();
    let sb = Sandbox::with_project();
    let report = index_shared(&sb, &db.writer, "main", &[]);
    let repo = report["repo"].as_str().expect("the repository's name");
    let store = PgStore::connect(&PgOptions {
        url: db.reader.clone(),
        read_url: None,
        pool_size: 3,
        reader_bm25_pairs: 20_000,
    })
    .expect("connect");
    let readers = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND usename = 'ragls_reader' AND application_name = 'ragls'",
        db.name
    );
    assert_eq!(count(&db.admin, &readers), 0, "nothing connects before");
    let snapshot = store
        .ref_snapshot(repo, "main")
        .expect("resolve")
        .expect("the ref");
    store.warm_reader(&snapshot, 2).expect("ready two");
    assert_eq!(count(&db.admin, &readers), 2);
    // More than the pool holds: as many as it holds.
    store.warm_reader(&snapshot, 10).expect("ready all");
    assert_eq!(count(&db.admin, &readers), 3);
    // A question afterwards takes one of them.
    let (chunks, _) = store.sizes(snapshot.id).expect("sizes");
    assert!(chunks > 0);
    assert_eq!(count(&db.admin, &readers), 3);
}

/// How many snapshots hold BM25 statistics (chunk count, terms) other than a count of
/// their resolved file list's chunks gives.
fn statistics_unlike_a_recount(db: &TeamDb) -> i64 {
    count(
        &db.admin,
        &format!(
            "SELECT count(*) FROM snapshots s JOIN LATERAL
               (SELECT count(*) AS n, coalesce(sum(c.terms), 0) AS t FROM ({}) sf
                JOIN chunks c ON c.blob_id = sf.blob_id) r ON true
             WHERE s.chunk_count <> r.n OR s.term_total <> r.t",
            files_of("s.id")
        ),
    )
}

/// How many (snapshot, term) postings by term disagree with a recount from the postings
/// of the snapshot's files: a whole list's are its files' postings of the term, counted
/// in `n`, in a group per file version (12 bytes, then 8 a posting); a list of changes
/// has none (its readers read its base's).
fn list_postings_unlike_a_recount(db: &TeamDb) -> i64 {
    count(
        &db.admin,
        "WITH recount AS (
           SELECT f.snapshot_id, p.term, sum(cardinality(p.packed)) AS n,
                  count(*) * 12 + sum(cardinality(p.packed)) * 8 AS bytes
           FROM snapshots s JOIN snapshot_files f ON f.snapshot_id = s.id
           JOIN version_postings p ON p.blob_id = f.blob_id
           WHERE s.base_id IS NULL GROUP BY f.snapshot_id, p.term)
         SELECT count(*) FROM recount r FULL JOIN snapshot_postings sp
           ON sp.snapshot_id = r.snapshot_id AND sp.term = r.term
         WHERE r.bytes IS DISTINCT FROM octet_length(sp.postings) OR r.n IS DISTINCT FROM sp.n",
    )
}

/// What main's snapshot lists: `(base, rows, removed)`, base 0 when its list is full.
fn main_list(db: &TeamDb) -> (i64, i64, i64) {
    let of_main = "FROM refs r JOIN snapshots s ON s.id = r.snapshot_id WHERE r.name = 'main'";
    (
        count(
            &db.admin,
            &format!("SELECT coalesce(s.base_id, 0) {of_main}"),
        ),
        count(
            &db.admin,
            &format!("SELECT (SELECT count(*) FROM snapshot_files f WHERE f.snapshot_id = s.id) {of_main}"),
        ),
        count(
            &db.admin,
            &format!("SELECT (SELECT count(*) FROM snapshot_files f WHERE f.snapshot_id = s.id AND f.blob_id IS NULL) {of_main}"),
        ),
    )
}

#[test]
fn a_small_update_lists_only_its_changes_and_a_large_one_every_file_again() {
    let db = TeamDb::create();
    let sb = Sandbox::empty();
    let module = |i: usize, version: &str| {
        format!("def handler_{i}_{version}(request):\n    return request.body + {i}\n")
    };
    for i in 0..40 {
        sb.write(&format!("svc/m{i:02}.py"), module(i, "one"));
    }
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(main_list(&db), (0, 40, 0), "a first build lists every file");
    let first = count(
        &db.admin,
        "SELECT snapshot_id FROM refs WHERE name = 'main'",
    );

    // Two files changed, one removed, one added: the new snapshot lists those four
    // (the removed one without a version) and reads every other path from the first.
    sb.write("svc/m00.py", module(0, "two"));
    sb.write("svc/m01.py", module(1, "two"));
    std::fs::remove_file(sb.path("svc/m02.py")).expect("remove a file");
    sb.write(
        "svc/added.py",
        "def brand_new_handler(request):\n    return 42\n",
    );
    let report = index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(report["filesChunked"], 3, "{report}");
    assert_eq!(main_list(&db), (first, 4, 1));
    // One more change lists its own and carries the last update's: still from the first.
    sb.write("svc/m03.py", module(3, "two"));
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(main_list(&db), (first, 5, 1));

    // Readers see the resolved list: the new versions, the added file, the untouched
    // ones, and neither the old versions nor the removed file.
    let reader = bare_reader();
    let finds = |name: &str| {
        let hits = search_shared(&reader, &db.reader, "main", name, &NO_OVERLAY);
        has_symbol(&hits, name)
    };
    for present in [
        "handler_0_two",
        "handler_3_two",
        "brand_new_handler",
        "handler_7_one",
    ] {
        assert!(finds(present), "{present} is in main");
    }
    for gone in ["handler_0_one", "handler_2_one", "handler_3_one"] {
        assert!(!finds(gone), "{gone} is not in main");
    }
    // BM25's statistics are those of the resolved list.
    assert_eq!(statistics_unlike_a_recount(&db), 0);
    // A writer without a list of its own (another checkout) reads the resolved list
    // from the database: nothing to do.
    let checkout = Sandbox::empty();
    for i in 0..40 {
        if i != 2 {
            checkout.write(
                &format!("svc/m{i:02}.py"),
                sb.read(&format!("svc/m{i:02}.py")),
            );
        }
    }
    checkout.write("svc/added.py", sb.read("svc/added.py"));
    let again = index_shared(&checkout, &db.writer, "main", &[]);
    assert_eq!(again["filesChunked"], 0, "{again}");
    assert_eq!(again["updated"], false, "{again}");

    // 35 files changed: past the bound of a list of changes (32 rows, or a tenth of the
    // files), the snapshot lists every file again, and the next updates list theirs
    // from it.
    for i in 4..39 {
        sb.write(&format!("svc/m{i:02}.py"), module(i, "three"));
    }
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(main_list(&db), (0, 40, 0));
    // Its postings by term are written with it.
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    let third = count(
        &db.admin,
        "SELECT snapshot_id FROM refs WHERE name = 'main'",
    );
    sb.write("svc/m39.py", module(39, "two"));
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(main_list(&db), (third, 1, 0));
    for present in [
        "handler_10_three",
        "handler_39_two",
        "handler_0_two",
        "brand_new_handler",
    ] {
        assert!(finds(present), "{present} is in main");
    }
    assert!(!finds("handler_10_one"));
    assert!(!finds("handler_2_one"));

    // A file changed back to its content in the full list: its row names the very
    // version the base lists, which a question leaves out of the base's rows (replaced)
    // and reads from the snapshot's own.
    sb.write("svc/m39.py", module(39, "one"));
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(main_list(&db), (third, 1, 0));
    // Each ranking alone: BM25's file list and the nearest vectors' join both read it.
    for only in [
        "retrieve.vector_candidates=0",
        "retrieve.lexical_candidates=0",
    ] {
        let finds_by = |name: &str| {
            let args = ["--set", "store.overlay=false", "--set", only];
            has_symbol(
                &search_shared(&reader, &db.reader, "main", name, &args),
                name,
            )
        };
        assert!(
            finds_by("handler_39_one"),
            "the restored version is in main ({only})"
        );
        assert!(!finds_by("handler_39_two"), "{only}");
    }
}

/// Undoes schema 12's sharing in place: each version that shares postings gets them all
/// in rows of its own, as a writer that shares nothing writes them (what the next test
/// ranks against).
const POSTINGS_UNSHARED: &str = "
CREATE TEMP TABLE merged AS
    SELECT v.term, v.blob_id, array_agg(u.e ORDER BY u.e) AS packed
    FROM version_postings v CROSS JOIN LATERAL unnest(v.packed) AS u(e)
    WHERE v.blob_id IN (SELECT blob_id FROM version_sources)
    GROUP BY v.term, v.blob_id;
DELETE FROM postings WHERE blob_id IN (SELECT blob_id FROM version_sources);
INSERT INTO postings SELECT * FROM merged;
DROP TABLE merged;
DELETE FROM version_sources;";

#[test]
fn a_changed_files_new_version_shares_its_unchanged_chunks_postings_and_ranks_as_if_written_whole()
{
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let path = "src/cache/lru.rs";
    let latest = format!("(SELECT max(id) FROM blobs WHERE path = '{path}')");
    let own_rows = || {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM postings WHERE blob_id = {latest}"),
        )
    };
    let written_whole = own_rows();
    let chunks = count(
        &db.admin,
        &format!("SELECT count(*) FROM chunks WHERE blob_id = {latest}"),
    );
    assert!(chunks >= 3, "{chunks} chunks in {path}");

    // A function added at the end, twice (two updates): each new version shares the
    // postings of the chunks it starts with, those of the version it was made from and
    // of the versions that one shared with, and writes its other chunks' alone.
    let mut text = common::fixture_text(path).to_string();
    for (round, name) in ["drain_expired_entries", "shrink_to_budget"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "\n/// Added by the test.\npub fn {name}(budget: usize) -> usize {{\n    budget / 2\n}}\n"
        ));
        sb.write(path, &text);
        let report = index_shared(&sb, &db.writer, "main", &[]);
        assert_eq!(report["filesChunked"], 1, "{report}");
        let sources = count(
            &db.admin,
            &format!("SELECT count(*) FROM version_sources WHERE blob_id = {latest}"),
        );
        assert_eq!(sources, round as i64 + 1, "round {round}");
        // Its own rows hold none of the places it shares.
        assert_eq!(
            count(
                &db.admin,
                &format!(
                    "SELECT count(*) FROM postings p CROSS JOIN LATERAL unnest(p.packed) AS e(f)
                     WHERE p.blob_id = {latest}
                       AND (e.f >> 40) & 16777215 <= (SELECT max(upto) FROM version_sources WHERE blob_id = {latest})"
                )
            ),
            0
        );
        let own = own_rows();
        assert!(
            own * 2 < written_whole,
            "{own} rows of its own, {written_whole} whole"
        );
        // Every chunk but those shared has its postings: the shared places and the own
        // rows' places are the version's chunks, each once.
        assert_eq!(
            count(
                &db.admin,
                &format!(
                    "SELECT count(DISTINCT (e.f >> 40) & 16777215) FROM version_postings v
                     CROSS JOIN LATERAL unnest(v.packed) AS e(f) WHERE v.blob_id = {latest}"
                )
            ),
            count(
                &db.admin,
                &format!("SELECT count(*) FROM chunks WHERE blob_id = {latest}")
            )
        );
    }

    // Another ref made from the same files lists them whole: its postings by term are
    // made from the shared rows too.
    index_shared(&sb, &db.writer, "whole", &[]);
    assert_eq!(list_postings_unlike_a_recount(&db), 0);
    let reader = bare_reader();
    let questions = [
        "evict the least recently used entry",
        "shrink_to_budget",
        "drain expired entries budget",
        "retry the request with backoff",
    ];
    let rank_all = || -> Vec<Vec<(String, u64, f64)>> {
        let mut all = Vec::new();
        for pairs in ["20000", "0"] {
            for ref_name in ["main", "whole"] {
                for q in questions {
                    all.push(ranked_shared(&reader, &db, ref_name, q, pairs));
                }
            }
        }
        all
    };
    let shared = rank_all();
    assert!(shared.iter().all(|r| !r.is_empty()), "{shared:?}");
    // An unchanged chunk of the changed file is found, with its lines in the new version.
    let evict = &shared[0];
    assert!(evict.iter().take(3).any(|(p, ..)| p == path), "{evict:?}");
    // The list of changes and the whole list rank alike, whoever ranks BM25.
    for pairs in 0..2 {
        for q in 0..questions.len() {
            let at = |ref_place: usize| {
                &shared[pairs * 2 * questions.len() + ref_place * questions.len() + q]
            };
            assert_ranked_alike(at(0), at(1));
        }
    }
    // And as they would with each version's postings written whole.
    execute(&db.writer, POSTINGS_UNSHARED);
    for (before, after) in shared.iter().zip(rank_all()) {
        assert_ranked_alike(before, &after);
    }
}

#[test]
fn postings_another_version_shares_outlive_their_version_in_the_clean_up_until_the_sharer_goes() {
    let db = TeamDb::create();
    let (sb, _) = fixture_in_main(&db);
    let path = "src/cache/lru.rs";
    let latest = || {
        count(
            &db.admin,
            &format!("SELECT max(id) FROM blobs WHERE path = '{path}'"),
        )
    };
    let first = latest();
    let text = common::fixture_text(path);
    let added = "\n/// Added by the test.\npub fn shrink_to_budget(budget: usize) -> usize {\n    budget / 2\n}\n";
    sb.write(path, format!("{text}{added}"));
    index_shared(&sb, &db.writer, "main", &[]);
    let second = latest();
    assert_eq!(
        count(
            &db.admin,
            &format!(
                "SELECT count(*) FROM version_sources WHERE blob_id = {second} AND src = {first}"
            )
        ),
        1
    );
    // Forty new files, more than a list of changes takes: main lists every file again.
    let listed_whole_with_forty_more = |from: usize| {
        for i in from..from + 40 {
            sb.write(
                &format!("notes/n{i}.py"),
                format!("def note_{i}():\n    return {i}\n"),
            );
        }
        index_shared(&sb, &db.writer, "main", &[]);
        assert_eq!(main_list(&db).0, 0, "main lists every file");
    };
    // The first version of lru.rs no more.
    listed_whole_with_forty_more(0);
    let old = "UPDATE snapshots SET created_at = now() - interval '2 hours'";
    let rows_of = |blob: i64, table: &str| {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM {table} WHERE blob_id = {blob}"),
        )
    };
    // The snapshots that listed the first version go, and the version with them, but
    // its postings stay: the second shares them.
    execute(&db.admin, old);
    sb.write("notes/n0.py", "def note_zero():\n    return 0\n");
    index_shared(&sb, &db.writer, "main", &[]);
    let blob_exists = |blob: i64| {
        count(
            &db.admin,
            &format!("SELECT count(*) FROM blobs WHERE id = {blob}"),
        )
    };
    assert_eq!(blob_exists(first), 0);
    assert_eq!(rows_of(first, "chunks"), 0);
    assert!(rows_of(first, "postings") > 0);
    let reader = bare_reader();
    // The evicting method of lru.rs, an unchanged chunk, is found.
    let finds_evict = || {
        let evict = ranked_shared(
            &reader,
            &db,
            "main",
            "evict the least recently used entry",
            "20000",
        );
        assert!(evict.iter().take(3).any(|(p, ..)| p == path), "{evict:?}");
    };
    finds_evict();
    // A change at the top of the file shares nothing: once the second version goes,
    // so do the first's postings, and nothing is left that no version has.
    sb.write(path, format!("// Changed at the top.\n{text}{added}"));
    index_shared(&sb, &db.writer, "main", &[]);
    let third = latest();
    assert_eq!(rows_of(third, "version_sources"), 0);
    // A whole list without the second version, then its snapshots old and cleaned up.
    listed_whole_with_forty_more(40);
    execute(&db.admin, old);
    sb.write("notes/n1.py", "def note_one():\n    return 1\n");
    index_shared(&sb, &db.writer, "main", &[]);
    assert_eq!(blob_exists(second), 0);
    assert_eq!(rows_of(second, "version_sources"), 0);
    assert_eq!(rows_of(first, "postings"), 0);
    assert_eq!(rows_of(second, "postings"), 0);
    assert_eq!(
        count(
            &db.admin,
            "SELECT count(*) FROM postings p WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = p.blob_id)"
        ),
        0
    );
    finds_evict();
}
