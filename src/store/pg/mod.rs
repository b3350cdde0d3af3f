//! The shared team index: PostgreSQL with pgvector, many repositories and refs in one
//! database, built by CI (`ragls index --store URL --ref main`) and read by every editor.
//!
//! Content-addressed: a file version (`blobs`: path + content hash) owns its chunks, so
//! branches and repositories that share a file share its chunks; the embedding cache is
//! keyed by (embedder, dimensions, text hash) and shared by everything. A ref names a
//! snapshot (`snapshot_files`: path -> file version; a small update's snapshot lists only
//! the paths it changed since a full list, its `base_id`, see [`FileList`]); a new state of a ref is written as
//! a new snapshot and the ref switches to it in the same transaction, so a reader sees
//! the old state or the new one, never a mix, and a writer killed mid-update leaves the
//! ref as it was. New file versions are written before that transaction, in statements
//! of their own (unseen until a snapshot lists them): a killed writer's are reused by
//! the next run, and the clean-up removes those no snapshot took within the hour. The rows an update writes by the thousand (postings, chunks, file
//! lists) carry no foreign keys (their checks were most of an update's time): writers
//! and the clean-up of old snapshots exclude each other by an advisory lock instead. Lexical search is BM25 over statistics kept in a table (`postings`:
//! per term and file version, for each chunk that has the term its occurrences in the
//! head and the body and its length), scored exactly as the
//! SQLite index's FTS5 scores it (the statistics from the snapshot), so both backends
//! rank alike — measured against PostgreSQL's own full-text search (`ts_rank`), which
//! ranked worse and, counting term frequencies out of tsvectors, ran slower; vectors sit in a pgvector HNSW index (one partial index per
//! dimension), kept at the cache's half-float precision as the local graph keeps them,
//! so the index holds them as `halfvec`s (half the bytes) and loses nothing.
//!
//! This module only stores and queries; what to index, and merging with the local
//! overlay, belong to the engine. Every call blocks (on a runtime of its own), so it can
//! be used from the engine's synchronous code, the servers' blocking tasks included.
//! No URL with its password ever reaches a message: see [`scrub_url`].
//!
//! A database that goes away trips a circuit breaker ([`Breaker`]): after a connection
//! failure every read fails at once (the engine answers from the local index with a
//! note) instead of waiting for the connect timeout again, and a background task
//! retries the connection every [`RECONNECT_EVERY`] until the server is back.
//!
//! Here: the types, connecting (pools, passwords, `.pgpass`, error messages, the
//! breaker) and the shared helpers; `schema` (migrations, the schema check, HNSW
//! indexes), `refs` (refs, snapshots, publishing, the clean-up), `versions` (file
//! versions and vectors, written ahead of a publish), `search` (BM25, nearest vectors,
//! chunks by id, a reading pool readied before its first question).

use super::{ChunkId, Identity, NewChunk, StoredChunk, TextHash};
use crate::chunk::{Chunk, ChunkKind, Language};
use crate::config::scrub_url;
use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// The files of snapshot `$id` (an SQL expression, as a literal), rows of (path,
/// blob_id): its own rows but those of removed files, then, when it lists only changes
/// ([`FileList::Changes`]), its base's rows of every path it does not list.
macro_rules! files_of {
    ($id:literal) => {
        concat!(
            "SELECT path, blob_id FROM snapshot_files WHERE snapshot_id = ",
            $id,
            " AND blob_id IS NOT NULL
             UNION ALL
             SELECT r.path, r.blob_id FROM snapshot_files r
             WHERE r.snapshot_id = (SELECT base_id FROM snapshots WHERE id = ",
            $id,
            ") AND NOT EXISTS (SELECT 1 FROM snapshot_files o WHERE o.snapshot_id = ",
            $id,
            " AND o.path = r.path)"
        )
    };
}

/// Each term's postings in whole file lists (`snapshot_postings`, schema 11), for the
/// snapshots whose `f.snapshot_id` the condition `$snapshots` (an SQL literal) picks: rows
/// of (snapshot, term, count of postings, postings). The postings are one `bytea`, a group
/// per file version in version order: its id (`int8send`), its count (`int4send`), then
/// its packed postings (`versions::posting`, `int8send` each) in their row's order, all
/// big-endian. Read as `versions::list_postings` reads them. A version's id once, not per
/// posting: 9.5-11 bytes a posting for common terms instead of 16 (schema 10), which a
/// question's reader is sent. Made by the publish of a whole list, and by the migration
/// for the lists before.
///
/// `$postings` is the relation read: `version_postings` (schema 12), where a version
/// may have several rows of a term (those it shares with the version it was made from,
/// then its own); each row is a group, the rows of a version ordered by their first
/// posting, so its postings come in the order of its chunks. Schema 11's migration read
/// `postings`, a row per (term, version) then.
macro_rules! list_postings_of {
    ($postings:literal, $snapshots:literal) => {
        concat!(
            "SELECT f.snapshot_id, p.term, count(*)::integer,
                    string_agg(CASE WHEN u.o = 1 THEN int8send(p.blob_id) || int4send(cardinality(p.packed))
                                    ELSE ''::bytea END || int8send(u.e), ''::bytea ORDER BY p.blob_id, p.packed[1], u.o)
             FROM snapshot_files f JOIN ",
            $postings,
            " p ON p.blob_id = f.blob_id
             CROSS JOIN LATERAL unnest(p.packed) WITH ORDINALITY AS u(e, o)
             WHERE ",
            $snapshots,
            " GROUP BY f.snapshot_id, p.term"
        )
    };
}

mod refs;
mod schema;
mod search;
mod tls;
mod versions;
pub use refs::{CleanupHold, HeldConnection, OpenPublish, UpdateStart};
pub use search::{SnapshotQuery, SnapshotSearch};
pub use versions::{OpenedWriter, Pending};

/// The schema this ragls writes and reads. Each entry of `schema::MIGRATIONS` moves the
/// database one version up; a database newer than this is refused, never downgraded.
pub const PG_SCHEMA_VERSION: i32 = 12;

/// A snapshot of a ref: its id and the embedder its vectors came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: i64,
    pub identity: Identity,
    /// How its file list is kept (schema 7).
    pub list: FileList,
}

/// How a snapshot's file list is kept: every file, or only what changed since a
/// snapshot whose list is full (its rows: the changed paths, a removed file's without a
/// version; every other path is the base's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum FileList {
    #[default]
    Full,
    Changes {
        base: i64,
        rows: i64,
        /// The base's file versions of the paths listed (read with the snapshot): a
        /// question passes them, so its statements read the base's list as they read a
        /// full one, those versions left out, and resolve nothing themselves.
        replaced: Arc<[i64]>,
        /// The snapshot's own rows that name a version (path, version), in path order:
        /// passed to a question's BM25 with those of excluded paths left out.
        own: Arc<[(String, i64)]>,
        /// What its own versions share (schema 12): (the version whose rows hold the
        /// postings, the own version that shares them, the last place it takes), in the
        /// order of the first: its rows are read with the own versions' and taken for the
        /// sharer (`search::PostingsShared`).
        shared: Arc<[(i64, i64, i32)]>,
    },
}

/// A file of a snapshot: its version's content hash and blob id.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotFile {
    pub content_hash: [u8; 32],
    pub blob_id: i64,
    pub skipped: bool,
}

/// A file version the database does not have yet, with its chunks and their lexical
/// postings.
pub struct NewFileVersion {
    pub path: String,
    pub content_hash: [u8; 32],
    pub skip_reason: Option<String>,
    pub chunks: Vec<NewChunk>,
    /// Each chunk's terms, counted where the version is made: a writer makes its
    /// versions on all cores, as it chunks them.
    postings: Vec<ChunkPostings>,
    /// The versions whose rows hold the postings of its first chunks (schema 12), each
    /// with the last place it gives; the version it was made from last, with them all
    /// ([`NewFileVersion::share_with`]).
    sources: Vec<(i64, i32)>,
}

/// What a version a changed file was made from has, for [`NewFileVersion::share_with`]:
/// its chunks in order, each as (text hash, name, length in terms), and the versions it
/// shares postings with, each with the last place it takes from them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BaseVersion {
    pub chunks: Vec<(TextHash, String, i32)>,
    pub sources: Vec<(i64, i32)>,
}

/// The most versions a version shares postings with: a file changed again and again
/// makes a chain (each new version takes its first chunks from its predecessors'
/// rows, which a reader reads one by one); past this many, the version is written
/// whole and the chain starts again.
const MOST_SOURCES: usize = 8;

impl NewFileVersion {
    /// The rows its write inserts, about: its chunks and its (term, chunk) postings
    /// (grouped per term into fewer rows, in proportion).
    fn rows(&self) -> usize {
        let own = self.postings.iter().skip(self.shared());
        self.chunks.len() + own.map(|p| p.counts.len()).sum::<usize>()
    }

    /// Shares the postings of the chunks this version starts with that are those of
    /// `base` (version `base_id`, this path's in the update's base), in the same places:
    /// the same text, symbol and name give the same terms, so their postings are those
    /// `base`'s rows (and the rows it shares) hold already. A function added to a file,
    /// or one changed near its end, leaves most of its chunks' postings unwritten. Only
    /// the postings are shared: the chunks' rows, with their lines, are written whole.
    pub fn share_with(&mut self, base_id: i64, base: &BaseVersion) {
        let same = self
            .chunks
            .iter()
            .zip(&self.postings)
            .zip(&base.chunks)
            .take_while(|((c, p), (hash, name, terms))| {
                c.text_hash == *hash && p.terms == *terms && pg_text(&c.name) == *name
            })
            .count();
        if same == 0 {
            return;
        }
        let upto = same as i32;
        let mut sources: Vec<(i64, i32)> = base
            .sources
            .iter()
            .map(|&(src, their)| (src, their.min(upto)))
            .filter(|&(_, upto)| upto > 0)
            .collect();
        sources.push((base_id, upto));
        if sources.len() > MOST_SOURCES {
            return;
        }
        self.sources = sources;
    }

    /// How many chunks it starts with whose postings it shares.
    fn shared(&self) -> usize {
        self.sources.last().map_or(0, |&(_, upto)| upto as usize)
    }

    pub fn new(
        path: String,
        content_hash: [u8; 32],
        skip_reason: Option<String>,
        chunks: Vec<NewChunk>,
    ) -> NewFileVersion {
        let postings = chunks.iter().map(ChunkPostings::of).collect();
        NewFileVersion {
            path,
            content_hash,
            skip_reason,
            chunks,
            postings,
            sources: Vec::new(),
        }
    }
}

/// The file versions a ref update needs: the ones the database has already, by (path,
/// content hash), and ids for the ones it will write ([`PgStore::known_versions`]).
#[derive(Debug, Default)]
pub struct KnownVersions {
    pub known: HashMap<(String, [u8; 32]), i64>,
    /// The known versions that are skipped files (listed without chunks).
    pub skipped: std::collections::HashSet<i64>,
    /// Fresh file version ids, one per key asked about (those of known versions go
    /// unused): a new version's rows are written without waiting for its id.
    pub fresh_ids: Vec<i64>,
    /// The known versions' chunk texts without a vector of the update's embedder, by
    /// text hash: an update that wrote them failed or was killed before it stored
    /// every vector. The update that lists them embeds these too.
    pub unembedded: Vec<(TextHash, String)>,
    /// The versions in the base of the changed paths, by id: what a new version of one
    /// may share ([`NewFileVersion::share_with`]).
    pub bases: HashMap<i64, BaseVersion>,
}

/// New file versions written ([`PgStore::write_versions`]): each file's path and the
/// id of its version (another writer's, when it wrote the same version first).
#[derive(Debug, Default)]
pub struct WrittenVersions {
    pub files: Vec<(String, i64)>,
    pub chunks_added: u64,
    pub file_versions_added: u64,
}

/// A ref's update as it begins ([`PgStore::begin_publish`]): which ref, from which base
/// snapshot, and the paths whose files in the base the new state does not keep
/// (dropped or changed).
pub struct RefUpdateStart<'a> {
    pub repo: &'a str,
    pub ref_name: &'a str,
    pub identity: &'a Identity,
    pub base: Option<&'a Snapshot>,
    /// How many files the base has (its list resolved).
    pub base_files: usize,
    pub replaced: Vec<String>,
    /// The writer's hold on the clean-up: the publish's transaction runs on its
    /// connection, and lets it go after the commit.
    pub hold: CleanupHold,
    /// The update's last vectors for the embedding cache, being stored: the publish
    /// begins once they are (some may be on the hold's connection).
    pub vectors: Pending<()>,
}

/// The rest of a ref's new state, once its file versions are written
/// ([`OpenPublish::finish`]): the base's files that are gone or changed (`dropped`,
/// whose chunks leave BM25's statistics), and `changed` (path -> file version, every
/// version already written; each path one of the update's `replaced`).
pub struct RefUpdate {
    pub dropped: Vec<String>,
    pub changed: Vec<(String, i64)>,
    /// Chunks the update's new file versions added (a large share has the tables'
    /// statistics refreshed after the switch).
    pub chunks_added: u64,
}

/// What publishing a ref wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Published {
    pub snapshot: i64,
    /// What tells this snapshot from any other, in any database (see [`SnapshotStamp`]).
    pub stamp: SnapshotStamp,
}

/// A snapshot told apart from every other: its id and its creation time (ids alone start
/// again in a database made anew). A writer keeps the file list of the snapshot it made
/// under this stamp and names it to [`PgStore::open_update`] next time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotStamp {
    pub id: i64,
    /// `created_at`, in microseconds since 1970.
    pub micros: i64,
}

/// How to reach the shared index.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// The primary: writes, and reads unless `read_url` is set.
    pub url: String,
    /// A streaming replica for reads.
    pub read_url: Option<String>,
    /// Connections per pool at most.
    pub pool_size: usize,
    /// BM25 over at most this many (term, chunk) postings is ranked by the reader, the
    /// postings sent to it; over more, by the database (`store.reader_bm25_pairs`).
    pub reader_bm25_pairs: usize,
}

/// A connection to the shared index: a bounded pool on the primary and, when a replica
/// is configured, one on the replica for reads.
pub struct PgStore {
    primary: Pool,
    reader: Pool,
    primary_at: String,
    reader_at: String,
    /// Inverse document frequencies and document frequencies by (snapshot, term): a
    /// snapshot never changes, so they are computed once per process.
    idf: Arc<Mutex<HashMap<(i64, String), (f32, i64)>>>,
    /// See [`PgOptions::reader_bm25_pairs`].
    reader_bm25_pairs: usize,
    /// Whether the reading side's schema was found readable (checked once, lazily).
    schema_checked: AtomicBool,
    /// The snapshot each (repository, ref) pointed at when last read: a question reuses
    /// it, and the query that reads it checks in the same round trip that the ref still
    /// points there (see `search`).
    refs: Mutex<HashMap<(String, String), Snapshot>>,
    /// Whether the reading side is away (reads then fail at once).
    breaker: Arc<Breaker>,
}

/// How often a reconnect is tried while the shared index is away.
pub const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// The reading side's circuit breaker. Closed: reads go to the database. Open (after a
/// read failed to reach it): reads fail at once with the reason, since another try
/// would only wait for the connect timeout again; one background task tries to connect
/// every [`RECONNECT_EVERY`] and closes the breaker when it succeeds.
#[derive(Default)]
struct Breaker {
    /// Why the database is away; `None`: closed.
    away: Mutex<Option<String>>,
    /// A reconnect task is running.
    probing: AtomicBool,
    /// Reads that went to the database (not answered by the open breaker): what the
    /// tests observe.
    attempts: AtomicU64,
}

impl Breaker {
    fn away(&self) -> Option<String> {
        self.away.lock().ok().and_then(|a| a.clone())
    }

    fn close(&self) {
        if let Ok(mut a) = self.away.lock() {
            *a = None;
        }
    }

    /// Opens the breaker and starts the reconnect task (unless one runs).
    fn trip(self: &Arc<Self>, why: &str, pool: &Pool) {
        if let Ok(mut a) = self.away.lock() {
            *a = Some(why.to_string());
        }
        if self.probing.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = runtime() else {
            self.probing.store(false, Ordering::SeqCst);
            return;
        };
        let me: Weak<Breaker> = Arc::downgrade(self);
        let pool = pool.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(RECONNECT_EVERY).await;
                let Some(breaker) = me.upgrade() else { return };
                let up = match pool.get().await {
                    Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                    Err(_) => false,
                };
                if up {
                    breaker.close();
                    breaker.probing.store(false, Ordering::SeqCst);
                    return;
                }
            }
        });
    }
}

/// Where a URL points, for messages: `host:port/database` (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// The runtime every database call runs on: the callers are synchronous (the engine),
/// some of them on a server's blocking threads.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ragls-pg")
        .build()
        .map_err(|e| Error::io("cannot start the database runtime", e))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `fut` on the database runtime and waits for it, from any thread (inside another
/// runtime too: it never nests `block_on`). The future runs beside its connections'
/// tasks, on the runtime's threads, and the caller is woken once, with the outcome: the
/// servers' requests (from blocking tasks) always ran this way, and the CLI's now do too.
/// Driven on the calling thread instead (as from 2026-12-02), every batch of rows the
/// runtime read from the socket woke the asking thread: once a question's postings came
/// to the reader, 22% of 16 clients' CPU went to switching threads, and their p95 was
/// 16-38% higher in alternating runs (`bench/team-perf-ab-spawn.txt`).
fn block<T: Send + 'static>(fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Other("the database task stopped unexpectedly".into()))?
}

/// A pooled connection and where it goes (`host:port/database`): its queries' errors
/// name the server, as every message about the database does.
struct Db {
    client: Conn,
    at: String,
}

/// A connection a statement runs on: one of the pool's, or the writer's held one
/// ([`CleanupHold`]), shared with whatever else runs on it then (its statements are
/// pipelined).
enum Conn {
    Pooled(deadpool_postgres::Object),
    Held(Arc<refs::HeldConnection>),
}

impl std::ops::Deref for Conn {
    type Target = deadpool_postgres::ClientWrapper;

    fn deref(&self) -> &Self::Target {
        match self {
            Conn::Pooled(object) => object,
            Conn::Held(held) => held.client(),
        }
    }
}

/// Where a writer's statement runs: on the connection of its hold on the clean-up when
/// it has one (see [`CleanupHold::connection`]), else on one of the pool's.
#[derive(Clone)]
pub enum Via {
    Pool(Pool),
    Held(Arc<refs::HeldConnection>),
}

impl Db {
    async fn get(pool: &Pool, at: String) -> Result<Db> {
        let client = pool.get().await.map_err(|e| db_error(&at, e))?;
        Ok(Db {
            client: Conn::Pooled(client),
            at,
        })
    }

    async fn via(via: Via, at: String) -> Result<Db> {
        match via {
            Via::Pool(pool) => Db::get(&pool, at).await,
            Via::Held(held) => Ok(Db {
                client: Conn::Held(held),
                at,
            }),
        }
    }

    /// The rows of `sql`, a statement prepared once per connection (sent as text, every
    /// use would take a round trip of its own to prepare it).
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let statement = self.prepared(sql).await?;
        self.client
            .query(&statement, params)
            .await
            .map_err(|e| db_error(&self.at, e))
    }

    /// The one row of `sql` (prepared as [`Db::query`]'s).
    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row> {
        let statement = self.prepared(sql).await?;
        self.client
            .query_one(&statement, params)
            .await
            .map_err(|e| db_error(&self.at, e))
    }

    async fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement> {
        self.client
            .prepare_cached(sql)
            .await
            .map_err(|e| db_error(&self.at, e))
    }
}

/// The password for a URL that has none: `PGPASSWORD`, else the `.pgpass` file
/// (`PGPASSFILE`, default `~/.pgpass`), as libpq does. Never a file in the workspace.
fn password_from_environment(config: &tokio_postgres::Config) -> Option<Vec<u8>> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p.into_bytes());
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let db = config.get_dbname().unwrap_or(&user).to_string();
    pgpass_lookup(&text, [&host, &port, &db, &user])
}

/// The password of the first `.pgpass` line whose host, port, database and user match
/// (`*` matches anything; `\:` and `\\` are escapes).
fn pgpass_lookup(text: &str, want: [&str; 4]) -> Option<Vec<u8>> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(want)
                .all(|(f, w)| f == "*" || f == w)
        {
            return Some(fields[4].clone().into_bytes());
        }
    }
    None
}

fn make_pool(url: &str, size: usize) -> Result<(Pool, String)> {
    let tls_options = tls::split_tls_options(url);
    let mut config = tokio_postgres::Config::from_str(&tls_options.url).map_err(|e| {
        Error::Config(format!(
            "store.url {} is not a PostgreSQL URL ({e}); expected postgres://user@host:port/database",
            scrub_url(url)
        ))
    })?;
    if config.get_password().is_none() {
        if let Some(p) = password_from_environment(&config) {
            config.password(p);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("ragls");
    }
    let at = describe(&config);
    let tls_config = tls::client_config(&tls_options)?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager)
        .max_size(size.max(1))
        .queue_mode(deadpool_postgres::QueueMode::Lifo)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| Error::Other(format!("cannot set up the connection pool: {e}")))?;
    Ok((pool, at))
}

/// A database error in one line, naming where; connection failures become
/// [`Error::SharedUnreachable`] so that readers can fall back to their local index.
fn db_error<E: std::fmt::Display + std::fmt::Debug + 'static>(at: &str, e: E) -> Error {
    let text = e.to_string();
    let debug = format!("{e:?}");
    let (lower_text, lower_debug) = (text.to_lowercase(), debug.to_lowercase());
    // An error the server sent is told by its SQLSTATE; the rest (sockets, TLS, the
    // pool) by their text.
    let server = server_error(&e);
    let code = server.map(|d| d.code().code());
    let unreachable = match code {
        // Connection exceptions; the server shutting down, crashed, or starting up.
        Some(c) => c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"),
        // Refused, timed out, closed, reset or shutting down: the database is away (for now).
        None => [
            "connection refused",
            "error connecting",
            "timed out",
            "timeout",
            "connection closed",
            "closed",
            "no such file",
            "broken pipe",
            "reset by peer",
            "shutting down",
            "the database system is",
            "terminating connection",
            "kind: io",
            "backend(",
        ]
        .iter()
        .any(|m| lower_text.contains(m) || lower_debug.contains(m)),
    };
    let permission = match code {
        // Insufficient privilege; a read-only transaction asked to write.
        Some(c) => matches!(c, "42501" | "25006"),
        None => text.contains("permission denied"),
    };
    let login = match code {
        // Invalid authorization (28000) or password (28P01).
        Some(c) => c.starts_with("28"),
        None => ["password authentication failed", "no password"]
            .iter()
            .any(|m| text.contains(m)),
    };
    let no_database = match code {
        Some(c) => c == "3D000",
        None => text.contains("database \"") && text.contains("does not exist"),
    };
    let detail = match server {
        Some(db) => db.message().to_string(),
        None => db_detail(&debug).unwrap_or(text),
    };
    if login {
        return Error::Config(format!(
            "the shared index at {at} refused the login ({detail}); check the role and its password (PGPASSWORD, ~/.pgpass, or the URL in RAGLS_STORE_URL)"
        ));
    }
    // pgvector missing: not installed on the server, or not created in this database
    // (a writer that may not create it is no reader).
    if detail.contains("extension \"vector\"") {
        if detail.contains("not available") {
            return Error::Config(format!(
                "PostgreSQL at {at} has no pgvector ({detail}): install pgvector 0.8 or later on the server, then run `CREATE EXTENSION vector;` in the database"
            ));
        }
        if permission {
            return Error::Config(format!(
                "the shared index at {at} lacks the pgvector extension and this role may not create it ({detail}): have the database's owner or a superuser run `CREATE EXTENSION vector;` in it, then index again"
            ));
        }
    }
    // A standby (or a session set read-only) refuses every write, whatever the role.
    if detail.contains("read-only transaction") {
        return Error::Config(format!(
            "the shared index at {at} takes no writes ({detail}): `ragls index` writes to the primary; if this is a replica, put the primary in store.url (readers may take the replica as store.read_url)"
        ));
    }
    if permission {
        return Error::Config(format!(
            "the shared index at {at} refused a write ({detail}); this role may only read: index with a writer role"
        ));
    }
    // The server answers, but the database named is not there.
    if no_database {
        return Error::SharedUnreachable(format!(
            "the server of the shared index at {at} has no such database ({detail}): create it (README, \"For teams\") or fix the database's name in store.url"
        ));
    }
    // The server ended the TLS session for want of a client certificate (rustls hears
    // its alert on the first read, after the handshake: `AlertReceived(CertificateRequired)`),
    // or refused the one given.
    if lower_debug.contains("alertreceived(certificaterequired)")
        || lower_debug.contains("alertreceived(badcertificate)")
        || lower_debug.contains("alertreceived(unknownca)")
    {
        let alert = debug
            .split("AlertReceived(")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or("a TLS alert");
        return Error::SharedUnreachable(format!(
            "the shared index at {at} ended the TLS session ({alert}): it asks for a client certificate it trusts; give `sslcert=/path/to/client.pem&sslkey=/path/to/client.key` in store.url (or PGSSLCERT and PGSSLKEY)"
        ));
    }
    // TLS asked for and not agreed on: the server offers none, or its certificate does
    // not chain to a CA ragls trusts.
    if lower_debug.contains("kind: tls") {
        // `kind: Tls, cause: Some("server does not support TLS")`
        let cause = quoted_after(&debug, "kind: Tls, cause: Some(").unwrap_or(detail);
        if cause.contains("does not support TLS") {
            return Error::SharedUnreachable(format!(
                "the TLS handshake with the shared index at {at} failed ({cause}): `sslmode=require` needs a server that offers TLS; on a network you trust, use `sslmode=prefer` or `sslmode=disable` in store.url"
            ));
        }
        return Error::SharedUnreachable(format!(
            "the TLS handshake with the shared index at {at} failed ({cause}): ragls verifies the server's certificate against the public CAs; for a private CA (a managed PostgreSQL's, your company's) add `sslrootcert=/path/to/ca.pem` to store.url or set PGSSLROOTCERT; on a network you trust, `sslmode=disable`"
        ));
    }
    if unreachable {
        return Error::SharedUnreachable(format!(
            "cannot reach the shared index at {at} ({detail}); check that PostgreSQL is running there and that store.url is right"
        ));
    }
    Error::Store(format!("shared index at {at}: {detail}"))
}

/// The error the server sent, when `e` is one (from a query, or from the pool's
/// connecting).
fn server_error(e: &dyn std::any::Any) -> Option<&tokio_postgres::error::DbError> {
    if let Some(e) = e.downcast_ref::<tokio_postgres::Error>() {
        return e.as_db_error();
    }
    match e.downcast_ref::<deadpool_postgres::PoolError>() {
        Some(deadpool_postgres::PoolError::Backend(e)) => e.as_db_error(),
        _ => None,
    }
}

/// The server's own message out of a tokio-postgres error's debug form, when it has one.
fn db_detail(debug: &str) -> Option<String> {
    quoted_after(debug, "message: ")
}

/// The string quoted right after `key` in an error's debug form, its escapes undone
/// (`message: "permission denied to create extension \"vector\""`).
fn quoted_after(debug: &str, key: &str) -> Option<String> {
    let start = debug.find(key)? + key.len();
    let mut chars = debug[start..].strip_prefix('"')?.chars();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// One chunk's lexical postings: each term's occurrences in the head and in the body,
/// and the chunk's length in terms, counted as FTS5's unicode61 tokenizer counts them
/// (the SQLite index's), so that both backends score BM25 alike.
struct ChunkPostings {
    counts: Vec<(String, (u32, u32))>,
    terms: i32,
}

impl ChunkPostings {
    fn of(c: &NewChunk) -> ChunkPostings {
        // Counted by sorting the chunk's terms, each borrowed from its terms line: a
        // map of owned terms made most of the cost (a writer counts every chunk of a
        // changed file).
        let mut seen: Vec<(std::borrow::Cow<'_, str>, bool)> = Vec::new();
        for (text, in_head) in [(&c.head_terms, true), (&c.body_terms, false)] {
            seen.extend(lexical_terms(text).map(|term| (term, in_head)));
        }
        let terms = seen.len() as i32;
        seen.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut counts: Vec<(String, (u32, u32))> = Vec::new();
        for (term, in_head) in seen {
            let (head, body) = match counts.last_mut() {
                Some((last, figures)) if *last == *term => figures,
                _ => {
                    counts.push((term.into_owned(), (0, 0)));
                    &mut counts.last_mut().expect("just pushed").1
                }
            };
            if in_head {
                *head += 1;
            } else {
                *body += 1;
            }
        }
        ChunkPostings { counts, terms }
    }
}

/// The lexical terms of a terms line: runs of letters and digits, lower-cased (borrowed
/// when they are already).
fn lexical_terms(text: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                std::borrow::Cow::Borrowed(t)
            } else {
                std::borrow::Cow::Owned(t.to_lowercase())
            }
        })
}

fn vector_of(v: &[f32]) -> pgvector::Vector {
    pgvector::Vector::from(v.to_vec())
}

/// PostgreSQL text cannot hold NUL; a chunk's text never should, but input decides.
fn pg_text(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}")
    } else {
        s.to_string()
    }
}

fn hash32(b: &[u8]) -> [u8; 32] {
    let mut h = [0u8; 32];
    let n = b.len().min(32);
    h[..n].copy_from_slice(&b[..n]);
    h
}

fn hash16(b: &[u8]) -> TextHash {
    let mut h = [0u8; 16];
    let n = b.len().min(16);
    h[..n].copy_from_slice(&b[..n]);
    TextHash(h)
}

impl PgStore {
    /// Sets up the pools (no connection is made until the first query).
    pub fn connect(options: &PgOptions) -> Result<PgStore> {
        let (primary, primary_at) = make_pool(&options.url, options.pool_size)?;
        let (reader, reader_at) = match options.read_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => make_pool(url, options.pool_size)?,
            None => (primary.clone(), primary_at.clone()),
        };
        Ok(PgStore {
            primary,
            reader,
            primary_at,
            reader_at,
            idf: Arc::default(),
            reader_bm25_pairs: options.reader_bm25_pairs,
            schema_checked: Default::default(),
            refs: Mutex::default(),
            breaker: Arc::default(),
        })
    }

    /// Runs a read through the breaker: at once `SharedUnreachable` while the reading
    /// side is away; a read that cannot reach it opens the breaker.
    fn read<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        if let Some(why) = self.breaker.away() {
            return Err(Error::SharedUnreachable(format!(
                "{why}; retrying every {} s",
                RECONNECT_EVERY.as_secs().max(1)
            )));
        }
        self.breaker.attempts.fetch_add(1, Ordering::Relaxed);
        let out = block(fut);
        if let Err(Error::SharedUnreachable(why)) = &out {
            self.breaker.trip(why, &self.reader);
        }
        out
    }

    /// Runs `work` on a reading connection (the replica when there is one), through the
    /// breaker.
    fn read_with<T, F, Fut>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let (pool, at) = (self.reader.clone(), self.reader_at.clone());
        self.read(async move { work(Db::get(&pool, at).await?).await })
    }

    /// Runs `work` on `via` (a writer's held connection), else on a connection of the
    /// pool to the primary (writes, and what a writer reads).
    fn write_via<T, F, Fut>(&self, via: Option<Via>, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Db) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send,
    {
        let via = via.unwrap_or_else(|| Via::Pool(self.primary.clone()));
        let at = self.primary_at.clone();
        block(async move { work(Db::via(via, at).await?).await })
    }

    /// Whether the reading side is considered away now (reads fail at once).
    pub fn is_away(&self) -> bool {
        self.breaker.away().is_some()
    }

    /// How many reads went to the database (not answered by the open breaker).
    pub fn read_attempts(&self) -> u64 {
        self.breaker.attempts.load(Ordering::Relaxed)
    }

    /// `host:port/database` of the primary, for messages.
    pub fn location(&self) -> &str {
        &self.primary_at
    }

    /// `host:port/database` that reads go to (the replica when one is configured).
    pub fn read_location(&self) -> &str {
        &self.reader_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_message_is_read_whole_with_its_quotes() {
        let debug = r#"Error { kind: Db, cause: Some(DbError { severity: "ERROR", code: SqlState(E42501), message: "permission denied to create extension \"vector\"", detail: None }) }"#;
        assert_eq!(
            db_detail(debug).as_deref(),
            Some(r#"permission denied to create extension "vector""#)
        );
        assert_eq!(db_detail("no message here"), None);
        assert_eq!(db_detail(r#"message: "cut short"#), None);
    }

    #[test]
    fn a_missing_pgvector_is_named_with_what_to_run() {
        let denied = db_error(
            "db:5432/ragls",
            "db error: ERROR: permission denied to create extension \"vector\"",
        );
        assert!(
            denied.to_string().contains("CREATE EXTENSION vector;"),
            "{denied}"
        );
        assert!(!denied.to_string().contains("may only read"), "{denied}");
        assert_eq!(denied.exit_code(), 2);
        let absent = db_error(
            "db:5432/ragls",
            "db error: ERROR: extension \"vector\" is not available",
        );
        assert!(absent.to_string().contains("install pgvector"), "{absent}");
        let standby = db_error(
            "db:5432/ragls",
            "db error: ERROR: cannot execute INSERT in a read-only transaction",
        );
        assert!(
            standby.to_string().contains("takes no writes")
                && standby.to_string().contains("primary"),
            "{standby}"
        );
        let reader = db_error(
            "db:5432/ragls",
            "db error: ERROR: permission denied for schema public",
        );
        assert!(reader.to_string().contains("may only read"), "{reader}");
    }

    #[test]
    fn a_database_that_is_not_there_is_named_as_such() {
        let e = db_error(
            "db:5432/ragsl",
            "db error: FATAL: database \"ragsl\" does not exist",
        );
        assert!(
            matches!(&e, Error::SharedUnreachable(_)),
            "readers keep going: {e}"
        );
        let e = e.to_string();
        assert!(
            e.contains("no such database") && e.contains("store.url"),
            "{e}"
        );
        assert!(!e.contains("is running"), "{e}");
    }

    #[test]
    fn a_failed_tls_handshake_says_what_sslmode_asks_for() {
        struct Tls;
        impl std::fmt::Display for Tls {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "Error occurred while creating a new object: error performing TLS handshake",
                )
            }
        }
        impl std::fmt::Debug for Tls {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    r#"Backend(Error { kind: Tls, cause: Some("server does not support TLS") })"#,
                )
            }
        }
        let e = db_error("db:5432/ragls", Tls);
        assert!(
            matches!(&e, Error::SharedUnreachable(_)),
            "readers keep going: {e}"
        );
        let e = e.to_string();
        assert!(e.contains("(server does not support TLS)"), "{e}");
        assert!(e.contains("sslmode=prefer"), "{e}");
    }

    #[test]
    fn passwords_never_survive_scrubbing() {
        assert_eq!(
            scrub_url("postgres://writer:s3cret@db.example:5432/ragls"),
            "postgres://writer:***@db.example:5432/ragls"
        );
        assert_eq!(
            scrub_url("postgresql://reader@db/ragls?sslmode=require&password=hunter2"),
            "postgresql://reader@db/ragls?sslmode=require&password=***"
        );
        assert_eq!(
            scrub_url("postgres://reader@db/ragls"),
            "postgres://reader@db/ragls"
        );
        assert!(crate::config::url_has_password("postgres://a:b@h/d"));
        assert!(!crate::config::url_has_password("postgres://a@h/d"));
    }

    #[test]
    fn postings_count_head_and_body_occurrences_as_fts5_tokenizes() {
        let chunk = NewChunk {
            chunk: Chunk {
                language: Language::Rust,
                kind: ChunkKind::Function,
                symbol: "fn parse".into(),
                name: "parse".into(),
                start_byte: 0,
                end_byte: 1,
                start_line: 1,
                end_line: 1,
                text: "x".into(),
            },
            text_hash: TextHash([0; 16]),
            head_terms: "pars src pars".into(),
            body_terms: "pars Token_stream 2x".into(),
        };
        let p = ChunkPostings::of(&chunk);
        assert_eq!(p.terms, 7);
        assert_eq!(
            p.counts,
            vec![
                ("2x".to_string(), (0, 1)),
                ("pars".to_string(), (2, 1)),
                ("src".to_string(), (1, 0)),
                ("stream".to_string(), (0, 1)),
                ("token".to_string(), (0, 1)),
            ]
        );
    }

    #[test]
    fn database_errors_say_what_to_check_and_keep_readers_going_when_it_is_away() {
        let away = db_error(
            "db:5432/ragls",
            "error connecting to server: Connection refused",
        );
        assert!(matches!(&away, Error::SharedUnreachable(m) if m.contains("db:5432/ragls")));
        let login = db_error(
            "db:5432/ragls",
            "db error: FATAL: password authentication failed for user \"reader\"",
        );
        assert!(login.to_string().contains("refused the login"), "{login}");
        assert_eq!(login.exit_code(), 2);
        let denied = db_error(
            "db:5432/ragls",
            "db error: ERROR: permission denied for table refs",
        );
        assert!(denied.to_string().contains("writer role"), "{denied}");
        let other = db_error("db:5432/ragls", "db error: ERROR: syntax error");
        assert!(matches!(other, Error::Store(_)));
    }

    #[test]
    fn a_read_while_the_database_is_away_fails_at_once_without_trying_to_connect() {
        // A server that accepts connections and never answers: a connection attempt
        // waits until a timeout gives up (the pool's, 10 s: `connect_timeout` bounds
        // only the TCP connect).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming() {
                held.push(s);
            }
        });
        let store = PgStore::connect(&PgOptions {
            url: format!("postgres://reader@127.0.0.1:{port}/ragls?connect_timeout=1"),
            read_url: None,
            pool_size: 2,
            reader_bm25_pairs: 20_000,
        })
        .unwrap();
        assert!(!store.is_away());
        let first = store.ref_snapshot("payments", "main");
        assert!(
            matches!(&first, Err(Error::SharedUnreachable(_))),
            "{first:?}"
        );
        assert!(store.is_away());
        assert_eq!(store.read_attempts(), 1);
        // The next questions are answered at once: no read goes to the database (and
        // none waits for the connect timeout) while a reconnect runs in the background.
        for _ in 0..3 {
            match store.cached_ref_snapshot("payments", "main") {
                Err(Error::SharedUnreachable(why)) => {
                    assert!(why.contains("cannot reach the shared index"), "{why}");
                    assert!(why.contains("retrying"), "{why}");
                }
                other => panic!("expected the shared index to be away: {other:?}"),
            }
        }
        let terms = ["ledger".to_string()];
        let snapshot = Snapshot {
            id: 1,
            identity: Identity {
                embedder: "builtin:hash-v1".into(),
                dimensions: 4,
            },
            list: FileList::Full,
        };
        let search = store.search_snapshot(&SnapshotQuery {
            repo: "payments",
            ref_name: "main",
            snapshot: &snapshot,
            terms: &terms,
            lexical_limit: 10,
            head_weight: 2.0,
            vector: Some(&[0.5; 4]),
            vector_limit: 10,
            ef: 64,
            excluded: &[],
            texts_top: 10,
        });
        assert!(matches!(search, Err(Error::SharedUnreachable(_))));
        assert_eq!(store.read_attempts(), 1, "no read went to the database");
    }

    #[test]
    fn pgpass_lines_match_by_field_with_wildcards_and_escapes() {
        let file = "# comment\nother:5432:*:*:nope\n*:5433:ragls:reader:p\\:w\\\\d\n";
        assert_eq!(
            pgpass_lookup(file, ["localhost", "5433", "ragls", "reader"]),
            Some(b"p:w\\d".to_vec())
        );
        assert_eq!(
            pgpass_lookup(file, ["localhost", "5432", "ragls", "reader"]),
            None
        );
    }
}
