//! Benchmark of the shared team index on PostgreSQL (not a test: it prints figures,
//! asserts nothing).
//!
//! usage: RAGLS_BENCH_PG_URL=postgres://writer@host/db cargo bench --bench team -- [CORPUS_DIR] [QUERIES]
//!   (`bench/team.sh` starts a PostgreSQL with `scripts/pg.sh` and passes its writer URL.)
//!
//! Prints: full index of the corpus into a fresh ref; forty updates (`TEAM_ROUNDS`) of the ref, each with
//! another 1% of the files changed, beside the time to re-chunk those files alone, and
//! their medians; a process's first question, cold and warmed; search latency (median,
//! p95) with 1 and with 16 concurrent clients, each client a reading engine of its own
//! with a connection of its own (threads of one process: their questions run on its
//! database runtime, as a server's concurrent requests do), then the 16 through the default pool (`store.pool_size`),
//! the pool readied first as a server readies it; the same, 1 and 16 clients, with new
//! questions, each asked once (the fixed ten find every term's statistics kept after
//! their first round; a team's questions keep bringing new terms, whose statistics a
//! reader asks the database for);
//! and the database's size. The corpus is copied to a temporary folder first (its mtimes
//! kept), so the changes never touch it.

use ragls::config::Config;
use ragls::engine::{Engine, NoProgress};
use std::path::Path;
use std::time::Instant;

mod support;

fn main() {
    let args = support::args();
    let n_queries: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(400);
    let corpus = support::corpus_root(&args, "team");
    let Ok(url) = std::env::var("RAGLS_BENCH_PG_URL") else {
        eprintln!(
            "team: set RAGLS_BENCH_PG_URL to a writer's postgres:// URL (bench/team.sh does)"
        );
        std::process::exit(2);
    };
    let tmp = std::env::temp_dir().join(format!("ragls-team-bench-{}", std::process::id()));
    // The copy goes however the run ends (a panic included).
    let _cleanup = RemoveOnDrop(tmp.clone());
    let root = tmp.join("corpus");
    copy_tree(&corpus, &root);
    let root = ragls::engine::workspace_root(&root).expect("the copied corpus");
    let index_dir = tmp.join("overlay");
    let mut config = Config::default();
    config.store.url = url;
    config.store.ref_name = format!("bench-{}", std::process::id());
    config.store.repo = "team-bench".into();
    config.store.pool_size = 16;
    config.store.overlay = false;
    // The writer's remembered content hashes go with the rest of the run's files.
    config.index.dir = index_dir.to_string_lossy().into_owned();

    let t = Instant::now();
    let full = ragls::engine::index_shared(&root, &config, None, &NoProgress).expect("index");
    let full_s = t.elapsed().as_secs_f64();
    println!(
        "full index          {full_s:.2} s ({} files, {} chunks, {} embedded)",
        full.files_seen, full.chunks_added, full.embedded
    );

    // 1% of the files changed, a function appended to each: forty times, each time the
    // next of five sets of 1% in turn. One small update's figures move with the machine
    // by a factor of two, and the first rounds are the slower: on one binary the median
    // of five rounds came out 5.6-5.9x re-chunking where forty gave 4.3-4.8x.
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.sort();
    let budget = ragls::chunk::ChunkBudget {
        max_bytes: config.index.chunk_max_bytes,
        min_bytes: config.index.chunk_min_bytes,
        max_lines: config.index.chunk_max_lines,
    };
    // TEAM_ROUNDS=80 gives steadier medians still (A/B runs of one change).
    let rounds_wanted: usize = std::env::var("TEAM_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(40);
    let mut rounds = Vec::with_capacity(rounds_wanted);
    let mut update = None;
    for round in 0..rounds_wanted {
        let changed: Vec<_> = files
            .iter()
            .skip(round * 20 % 100)
            .step_by(100)
            .cloned()
            .collect();
        for f in &changed {
            let mut text = std::fs::read_to_string(f).unwrap_or_default();
            text.push_str("\n/// Added for the benchmark.\npub fn team_bench_added_function() -> u32 {\n    7\n}\n");
            std::fs::write(f, text).expect("write a changed file");
        }
        let t = Instant::now();
        for f in &changed {
            let bytes = std::fs::read(f).unwrap_or_default();
            let rel = f.strip_prefix(&root).unwrap_or(f).to_string_lossy();
            std::hint::black_box(ragls::chunk::chunk_file(&rel, &bytes, &budget));
        }
        let rechunk_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let report =
            ragls::engine::index_shared(&root, &config, None, &NoProgress).expect("update");
        let update_s = t.elapsed().as_secs_f64();
        println!(
            "1% update, round {}  {:.1} ms ({} files changed, {} chunked, {} embedded; walk + hash {} ms, chunk {} ms, embed {} ms, publish {} ms); re-chunking them alone {:.1} ms; ratio {:.1}x",
            round + 1,
            update_s * 1000.0,
            changed.len(),
            report.files_chunked,
            report.embedded,
            report.hash_ms,
            report.chunk_ms,
            report.embed_ms,
            report.publish_ms,
            rechunk_s * 1000.0,
            update_s / rechunk_s.max(1e-9)
        );
        rounds.push((update_s, rechunk_s));
        update = Some(report);
    }
    let update = update.expect("an update");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratios: Vec<f64> = rounds.iter().map(|(u, r)| u / r.max(1e-9)).collect();
    println!(
        "1% update           median of {rounds_wanted}: {:.1} ms; re-chunking alone {:.1} ms; ratio {:.1}x (each round's {:.1}-{:.1}x)",
        median(rounds.iter().map(|r| r.0 * 1000.0).collect()),
        median(rounds.iter().map(|r| r.1 * 1000.0).collect()),
        median(ratios.clone()),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(0.0, f64::max),
    );

    let queries = queries(n_queries);
    // New questions, each asked once in the process, from the corpus's doc comments: a
    // term's statistics are kept per process once asked, and the ten fixed questions
    // find all of them kept after their first round.
    let new_questions = distinct_queries(&files, 2 * n_queries);
    {
        let mut writer =
            Engine::open_for_writing(&root, config.clone(), index_dir.clone()).expect("open");
        writer.index(false, &NoProgress).expect("overlay");
    }
    // A process's first question, in a process of its own (a pool of its own): cold, it
    // connects and prepares first; warmed, as a server readies its pool when it starts
    // (`Engine::warm_shared`), it does not.
    for (what, pool, warm) in [("cold", 2usize, false), ("warmed", 3, true)] {
        let mut config = config.clone();
        config.store.pool_size = pool;
        let mut engine = Engine::open_for_reading(&root, config, index_dir.clone())
            .expect("open")
            .expect("an overlay");
        if warm {
            engine.warm_shared(1).expect("warm the pool");
        }
        let t = Instant::now();
        std::hint::black_box(engine.search(&queries[0], 10, true).expect("search"));
        println!(
            "first question      {what}: {:.1} ms",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    // Each client a connection of its own (as 16 editors would have), then the same 16
    // through one process's default pool, where they queue for its few connections. The
    // pool is readied first, as each editor's server readies its own when it starts: the
    // figures are of questions, not of connecting (the first question's, above).
    // Then new questions, one client and 16 with a connection each, each phase its own.
    let default_pool = Config::default().store.pool_size;
    let half = new_questions.len() / 2;
    let phases = [
        ("search", 1usize, 16usize, &queries[..]),
        ("search", 16, 16, &queries[..]),
        ("search", 16, default_pool, &queries[..]),
        ("new questions", 1, 16, &new_questions[..half]),
        ("new questions", 16, 16, &new_questions[half..]),
    ];
    for (what, clients, pool, queries) in phases {
        if queries.is_empty() {
            continue;
        }
        let mut config = config.clone();
        config.store.pool_size = pool;
        Engine::open_for_reading(&root, config.clone(), index_dir.clone())
            .expect("open")
            .expect("an overlay")
            .warm_shared(clients.min(pool))
            .expect("warm the pool");
        // Every client asks at least one question (fewer questions than clients are
        // asked again).
        let per_client = (queries.len() / clients).max(1);
        let started = Instant::now();
        let mut latencies: Vec<f64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let root = root.clone();
                    let config = config.clone();
                    let index_dir = index_dir.clone();
                    let mine: Vec<String> = queries
                        .iter()
                        .cycle()
                        .skip(c * per_client)
                        .take(per_client)
                        .cloned()
                        .collect();
                    s.spawn(move || {
                        let mut engine = Engine::open_for_reading(&root, config, index_dir)
                            .expect("open")
                            .expect("an overlay");
                        let mut out = Vec::with_capacity(mine.len());
                        for q in &mine {
                            let t = Instant::now();
                            let hits = engine.search(q, 10, true).expect("search");
                            out.push(t.elapsed().as_secs_f64() * 1000.0);
                            std::hint::black_box(hits);
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("a client"))
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        let through = if pool < clients {
            format!(" through a pool of {pool}")
        } else {
            String::new()
        };
        println!(
            "{what}, {clients:>2} client(s){through} median {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} queries, {:.0} queries/s)",
            pct(0.5),
            pct(0.95),
            pct(1.0),
            latencies.len(),
            latencies.len() as f64 / wall
        );
    }
    let engine = Engine::open_for_reading(&root, config.clone(), index_dir.clone())
        .expect("open")
        .expect("an overlay");
    if let Some(shared) = engine.shared_ref() {
        if let Ok((chunks, bytes)) = shared.store.sizes(update.snapshot) {
            println!(
                "database size       {:.1} MB ({chunks} chunks in the ref)",
                bytes as f64 / 1e6
            );
        }
    }
}

/// Removes a folder when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Queries in the corpus's vocabulary, fixed so runs compare.
fn queries(n: usize) -> Vec<String> {
    let base = [
        "parse a generic type parameter",
        "verify the server certificate chain",
        "open a database connection",
        "build an insert statement",
        "handshake state machine",
        "token stream to string",
        "error when the query fails",
        "expression with a where clause",
        "read a tls record",
        "derive input attributes",
    ];
    base.iter().cycle().take(n).map(|s| s.to_string()).collect()
}

/// Questions made of the corpus's own doc comments (`///` lines of its files, in path
/// order, five to eight words each), each asked once: new terms keep coming, as in a
/// team's day, where the ten fixed questions find every statistic cached.
fn distinct_queries(files: &[std::path::PathBuf], n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut seen = std::collections::HashSet::new();
    'files: for f in files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let Some(doc) = line.trim().strip_prefix("///") else {
                continue;
            };
            let words: Vec<&str> = doc
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .filter(|w| w.len() > 1)
                .take(8)
                .collect();
            if words.len() < 5 {
                continue;
            }
            let q = words.join(" ").to_lowercase();
            if seen.insert(q.clone()) {
                out.push(q);
                if out.len() == n {
                    break 'files;
                }
            }
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the corpus").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => copy_tree(&path, &target),
            Ok(t) if t.is_file() => {
                let _ = std::fs::copy(&path, &target);
                // The corpus's own mtimes (`cp -p`), as a checkout that was there before
                // has them: a writer trusts the hashes it remembers only of files not
                // modified in the moments before it read them.
                if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                    if let Ok(f) = std::fs::File::options().write(true).open(&target) {
                        let _ = f.set_modified(modified);
                    }
                }
            }
            _ => {}
        }
    }
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
