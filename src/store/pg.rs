//! The shared team index: PostgreSQL with pgvector, many repositories and refs in one
//! database, built by CI (`ragls index --store URL --ref main`) and read by every editor.
//!
//! Content-addressed: a file version (`blobs`: path + content hash) owns its chunks, so
//! branches and repositories that share a file share its chunks; the embedding cache is
//! keyed by (embedder, dimensions, text hash) and shared by everything. A ref names a
//! snapshot (`snapshot_files`: path -> file version); a new state of a ref is written as
//! a new snapshot and the ref switches to it in the same transaction, so a reader sees
//! the old state or the new one, never a mix, and a writer killed mid-update leaves the
//! ref as it was. Lexical search is BM25 over statistics kept in a table (`postings`:
//! per term and chunk, its occurrences in the head and the body), scored exactly as the
//! SQLite index's FTS5 scores it (the statistics from the snapshot), so both backends
//! rank alike — measured against PostgreSQL's own full-text search (`ts_rank`), which
//! ranked worse and, counting term frequencies out of tsvectors, ran slower; vectors sit in a pgvector HNSW index (one partial index per
//! dimension), kept at the cache's half-float precision as the local graph keeps them.
//!
//! This module only stores and queries; what to index, and merging with the local
//! overlay, belong to the engine. Every call blocks (on a runtime of its own), so it can
//! be used from the engine's synchronous code, the servers' blocking tasks included.
//! No URL with its password ever reaches a message: see [`scrub_url`].

use super::{ChunkId, Identity, NewChunk, StoredChunk, TextHash};
use crate::chunk::{Chunk, ChunkKind, Language};
use crate::config::scrub_url;
use crate::error::{Error, Result};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The schema this ragls writes and reads. Each entry of [`MIGRATIONS`] moves the
/// database one version up; a database newer than this is refused, never downgraded.
pub const PG_SCHEMA_VERSION: i32 = 1;

const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE repos (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE snapshots (
    id bigserial PRIMARY KEY,
    repo_id bigint NOT NULL REFERENCES repos(id),
    embedder text NOT NULL,
    dimensions integer NOT NULL,
    chunk_count bigint NOT NULL DEFAULT 0,
    -- BM25's average document length (terms per chunk) over the snapshot.
    avg_terms real NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE refs (
    repo_id bigint NOT NULL REFERENCES repos(id),
    name text NOT NULL,
    snapshot_id bigint NOT NULL REFERENCES snapshots(id),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repo_id, name)
);
-- A file version: its chunks are shared by every snapshot that has it.
CREATE TABLE blobs (
    id bigserial PRIMARY KEY,
    path text NOT NULL,
    content_hash bytea NOT NULL,
    skip_reason text,
    UNIQUE (path, content_hash)
);
CREATE TABLE snapshot_files (
    snapshot_id bigint NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    path text NOT NULL,
    blob_id bigint NOT NULL REFERENCES blobs(id),
    PRIMARY KEY (snapshot_id, path)
);
CREATE INDEX snapshot_files_by_blob ON snapshot_files(blob_id, snapshot_id);
CREATE TABLE chunks (
    id bigserial PRIMARY KEY,
    blob_id bigint NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    ord integer NOT NULL,
    language text NOT NULL,
    kind text NOT NULL,
    symbol text NOT NULL,
    name text NOT NULL,
    start_byte bigint NOT NULL,
    end_byte bigint NOT NULL,
    start_line integer NOT NULL,
    end_line integer NOT NULL,
    text text NOT NULL,
    text_hash bytea NOT NULL,
    -- The chunk's length in lexical terms, head and body (BM25's document length).
    terms integer NOT NULL
);
CREATE INDEX chunks_by_blob ON chunks(blob_id);
-- Covering: the vector search's filter probes it once per neighbour.
CREATE INDEX chunks_by_text_hash ON chunks(text_hash) INCLUDE (blob_id);
-- The lexical index: BM25's statistics kept in a table, one row per (term, chunk), with
-- the term's occurrences in the chunk's head (name, symbol path, file path) and body.
CREATE TABLE postings (
    term text NOT NULL,
    blob_id bigint NOT NULL REFERENCES blobs(id) ON DELETE CASCADE,
    chunk_id bigint NOT NULL,
    head smallint NOT NULL,
    body smallint NOT NULL,
    terms integer NOT NULL
);
CREATE INDEX postings_by_term ON postings(term) INCLUDE (blob_id, chunk_id, head, body, terms);
CREATE INDEX postings_by_blob ON postings(blob_id);
-- The embedding cache, shared by every repository and ref. Vectors of any dimension;
-- each dimension in use gets a partial HNSW index (see `ensure_vector_index`).
CREATE TABLE embeddings (
    embedder text NOT NULL,
    dimensions integer NOT NULL,
    text_hash bytea NOT NULL,
    vector vector NOT NULL,
    PRIMARY KEY (embedder, dimensions, text_hash)
);
"#,
];

/// pgvector's HNSW index takes vectors of at most this many dimensions.
const HNSW_MAX_DIMENSIONS: usize = 2000;

/// A snapshot of a ref: its id and the embedder its vectors came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub id: i64,
    pub identity: Identity,
}

/// A file of a snapshot: its version's content hash and blob id.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotFile {
    pub content_hash: [u8; 32],
    pub blob_id: i64,
    pub skipped: bool,
}

/// A file version the database does not have yet, with its chunks.
pub struct NewFileVersion {
    pub path: String,
    pub content_hash: [u8; 32],
    pub skip_reason: Option<String>,
    pub chunks: Vec<NewChunk>,
}

/// A file of the new snapshot that differs from the base.
pub enum ChangedFile {
    /// A version the database has already (another branch or repository has it).
    Known {
        path: String,
        blob_id: i64,
    },
    New(NewFileVersion),
}

/// The new state of a ref: the base snapshot's files minus `dropped`, plus `changed`.
pub struct RefUpdate<'a> {
    pub repo: &'a str,
    pub ref_name: &'a str,
    pub identity: &'a Identity,
    pub base: Option<i64>,
    pub dropped: Vec<String>,
    pub changed: Vec<ChangedFile>,
}

/// What publishing a ref wrote.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Published {
    pub snapshot: i64,
    pub chunks_added: u64,
    pub file_versions_added: u64,
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
}

/// A connection to the shared index: a bounded pool on the primary and, when a replica
/// is configured, one on the replica for reads.
pub struct PgStore {
    primary: Pool,
    reader: Pool,
    primary_at: String,
    reader_at: String,
    /// Inverse document frequencies by (snapshot, term): a snapshot never changes, so
    /// they are computed once per process.
    idf: Arc<Mutex<HashMap<(i64, String), f32>>>,
    /// Whether the reading side's schema was found readable (checked once, lazily).
    schema_checked: std::sync::atomic::AtomicBool,
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

/// Runs `fut` on the database runtime and waits for it. Works from any thread, inside
/// another runtime too (it never nests `block_on`).
fn block<T: Send + 'static>(fut: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    runtime()?.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| Error::Other("the database task stopped unexpectedly".into()))?
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
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| {
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
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Other(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
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
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .create_timeout(Some(Duration::from_secs(10)))
        .wait_timeout(Some(Duration::from_secs(30)))
        .build()
        .map_err(|e| Error::Other(format!("cannot set up the connection pool: {e}")))?;
    Ok((pool, at))
}

/// A database error in one line, naming where; connection failures become
/// [`Error::SharedUnreachable`] so that readers can fall back to their local index.
fn db_error(at: &str, e: impl std::fmt::Display + std::fmt::Debug) -> Error {
    let text = e.to_string();
    let debug = format!("{e:?}");
    let (lower_text, lower_debug) = (text.to_lowercase(), debug.to_lowercase());
    // Refused, timed out, closed, reset or shutting down: the database is away (for now).
    let unreachable = [
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
    .any(|m| lower_text.contains(m) || lower_debug.contains(m));
    let permission = text.contains("permission denied")
        || debug.contains("InsufficientPrivilege")
        || debug.contains("42501")
        || debug.contains("25006");
    let detail = match db_detail(&debug) {
        Some(d) => d,
        None => text,
    };
    if permission {
        return Error::Config(format!(
            "the shared index at {at} refused a write ({detail}); this role may only read: index with a writer role"
        ));
    }
    if unreachable {
        return Error::SharedUnreachable(format!(
            "cannot reach the shared index at {at} ({detail}); check that PostgreSQL is running there and that store.url is right"
        ));
    }
    Error::Store(format!("shared index at {at}: {detail}"))
}

/// The server's own message out of a tokio-postgres error's debug form, when it has one.
fn db_detail(debug: &str) -> Option<String> {
    let start = debug.find("message: \"")? + "message: \"".len();
    let end = debug[start..].find('"')? + start;
    Some(debug[start..end].to_string())
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
        let mut counts: HashMap<String, (u32, u32)> = HashMap::new();
        let mut terms = 0;
        for (text, in_head) in [(&c.head_terms, true), (&c.body_terms, false)] {
            for term in lexical_terms(text) {
                terms += 1;
                let entry = counts.entry(term).or_default();
                if in_head {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort();
        ChunkPostings { counts, terms }
    }
}

/// The lexical terms of a terms line: runs of letters and digits, lower-cased.
fn lexical_terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
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
            schema_checked: Default::default(),
        })
    }

    /// `host:port/database` of the primary, for messages.
    pub fn location(&self) -> &str {
        &self.primary_at
    }

    /// `host:port/database` that reads go to (the replica when one is configured).
    pub fn read_location(&self) -> &str {
        &self.reader_at
    }

    /// Creates or upgrades the schema (writers only). Concurrent writers serialise on an
    /// advisory lock, so each migration runs once.
    pub fn migrate(&self) -> Result<()> {
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        block(async move {
            let mut client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let tx = client.transaction().await.map_err(|e| db_error(&at, e))?;
            tx.batch_execute(
                "SELECT pg_advisory_xact_lock(7261536); CREATE TABLE IF NOT EXISTS ragls_schema (version integer NOT NULL)",
            )
            .await
            .map_err(|e| db_error(&at, e))?;
            let version: Option<i32> = tx
                .query_opt("SELECT max(version) FROM ragls_schema", &[])
                .await
                .map_err(|e| db_error(&at, e))?
                .and_then(|r| r.get(0));
            let version = version.unwrap_or(0);
            if version > PG_SCHEMA_VERSION {
                return Err(newer_schema(&at, version));
            }
            for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(sql).await.map_err(|e| db_error(&at, e))?;
                tx.execute(
                    "INSERT INTO ragls_schema(version) VALUES ($1)",
                    &[&(i as i32 + 1)],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            }
            tx.commit().await.map_err(|e| db_error(&at, e))?;
            Ok(())
        })
    }

    /// Checks that the database holds a schema this ragls reads, without writing.
    pub fn check_schema(&self) -> Result<()> {
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let row = client
                .query_one("SELECT to_regclass('ragls_schema') IS NOT NULL", &[])
                .await
                .map_err(|e| db_error(&at, e))?;
            let exists: bool = row.get(0);
            if !exists {
                return Err(Error::Usage(format!(
                    "the shared index at {at} has no ragls index yet; build one with `ragls index --store URL` (a writer role)"
                )));
            }
            let v: Option<i32> = client
                .query_one("SELECT max(version) FROM ragls_schema", &[])
                .await
                .map_err(|e| db_error(&at, e))?
                .get(0);
            match v.unwrap_or(0) {
                PG_SCHEMA_VERSION => Ok(()),
                v if v > PG_SCHEMA_VERSION => Err(newer_schema(&at, v)),
                v => Err(Error::Usage(format!(
                    "the shared index at {at} has schema version {v}, older than this ragls ({PG_SCHEMA_VERSION}); run `ragls index --store URL` with a writer role to migrate it"
                ))),
            }
        })
    }

    /// The snapshot a ref points at now (read from the replica when there is one). The
    /// first call checks that the database holds a schema this ragls reads.
    pub fn ref_snapshot(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        use std::sync::atomic::Ordering;
        if !self.schema_checked.load(Ordering::Relaxed) {
            self.check_schema()?;
            self.schema_checked.store(true, Ordering::Relaxed);
        }
        self.snapshot_on(&self.reader, &self.reader_at, repo, ref_name)
    }

    /// [`PgStore::ref_snapshot`] on the primary (a writer's base: a replica may lag).
    pub fn ref_snapshot_on_primary(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        self.snapshot_on(&self.primary, &self.primary_at, repo, ref_name)
    }

    fn snapshot_on(
        &self,
        pool: &Pool,
        at: &str,
        repo: &str,
        ref_name: &str,
    ) -> Result<Option<Snapshot>> {
        let pool = pool.clone();
        let at = at.to_string();
        let (repo, ref_name) = (repo.to_string(), ref_name.to_string());
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let row = client
                .query_opt(
                    "SELECT s.id, s.embedder, s.dimensions FROM refs r JOIN repos p ON p.id = r.repo_id
                     JOIN snapshots s ON s.id = r.snapshot_id WHERE p.name = $1 AND r.name = $2",
                    &[&repo, &ref_name],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(row.map(|r| Snapshot {
                id: r.get(0),
                identity: Identity {
                    embedder: r.get(1),
                    dimensions: r.get::<_, i32>(2) as usize,
                },
            }))
        })
    }

    /// Every file of a snapshot: path -> its version.
    pub fn snapshot_files(&self, snapshot: i64) -> Result<HashMap<String, SnapshotFile>> {
        self.snapshot_files_on(&self.reader, &self.reader_at, snapshot)
    }

    /// [`PgStore::snapshot_files`] read from the primary.
    pub fn snapshot_files_on_primary(
        &self,
        snapshot: i64,
    ) -> Result<HashMap<String, SnapshotFile>> {
        self.snapshot_files_on(&self.primary, &self.primary_at, snapshot)
    }

    fn snapshot_files_on(
        &self,
        pool: &Pool,
        at: &str,
        snapshot: i64,
    ) -> Result<HashMap<String, SnapshotFile>> {
        let pool = pool.clone();
        let at = at.to_string();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    "SELECT sf.path, b.content_hash, b.id, b.skip_reason IS NOT NULL FROM snapshot_files sf
                     JOIN blobs b ON b.id = sf.blob_id WHERE sf.snapshot_id = $1",
                    &[&snapshot],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    (
                        r.get::<_, String>(0),
                        SnapshotFile {
                            content_hash: hash32(r.get::<_, &[u8]>(1)),
                            blob_id: r.get(2),
                            skipped: r.get(3),
                        },
                    )
                })
                .collect())
        })
    }

    /// The ids of file versions the database has already, by (path, content hash).
    pub fn known_versions(
        &self,
        keys: &[(String, [u8; 32])],
    ) -> Result<HashMap<(String, [u8; 32]), i64>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        let paths: Vec<String> = keys.iter().map(|(p, _)| p.clone()).collect();
        let hashes: Vec<Vec<u8>> = keys.iter().map(|(_, h)| h.to_vec()).collect();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    "SELECT b.path, b.content_hash, b.id FROM blobs b
                     JOIN unnest($1::text[], $2::bytea[]) AS k(path, hash) ON b.path = k.path AND b.content_hash = k.hash",
                    &[&paths, &hashes],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    (
                        (r.get::<_, String>(0), hash32(r.get::<_, &[u8]>(1))),
                        r.get(2),
                    )
                })
                .collect())
        })
    }

    /// Cached vectors for these text hashes (the ones missing are absent).
    pub fn cached_vectors(
        &self,
        id: &Identity,
        hashes: &[TextHash],
    ) -> Result<HashMap<TextHash, Vec<f32>>> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        let id = id.clone();
        let keys: Vec<Vec<u8>> = hashes.iter().map(|h| h.0.to_vec()).collect();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    "SELECT text_hash, vector FROM embeddings
                     WHERE embedder = $1 AND dimensions = $2 AND text_hash = ANY($3::bytea[])",
                    &[&id.embedder, &(id.dimensions as i32), &keys],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(rows
                .into_iter()
                .map(|r| {
                    let v: pgvector::Vector = r.get(1);
                    (hash16(r.get::<_, &[u8]>(0)), v.to_vec())
                })
                .collect())
        })
    }

    /// Adds vectors to the shared embedding cache, in a transaction of their own: the
    /// cache is valid whatever becomes of the ref update that computed them, so a writer
    /// killed later does not pay for them again.
    pub fn put_vectors(&self, id: &Identity, items: &[(TextHash, Vec<f32>)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        let id = id.clone();
        let hashes: Vec<Vec<u8>> = items.iter().map(|(h, _)| h.0.to_vec()).collect();
        // The local index keeps vectors at half precision; the shared one alike, so both
        // rank the same neighbours.
        let vectors: Vec<pgvector::Vector> = items
            .iter()
            .map(|(_, v)| {
                let mut v = v.clone();
                super::stored_precision(&mut v);
                vector_of(&v)
            })
            .collect();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            client
                .execute(
                    "INSERT INTO embeddings(embedder, dimensions, text_hash, vector)
                     SELECT $1, $2, h, v FROM unnest($3::bytea[], $4::vector[]) AS u(h, v)
                     ON CONFLICT DO NOTHING",
                    &[&id.embedder, &(id.dimensions as i32), &hashes, &vectors],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(())
        })
    }

    /// Writes a ref's new state and switches the ref to it, all in one transaction.
    pub fn publish(&self, update: RefUpdate<'_>) -> Result<Published> {
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        let repo = update.repo.to_string();
        let ref_name = update.ref_name.to_string();
        let identity = update.identity.clone();
        let base = update.base;
        let dropped = update.dropped;
        let changed = update.changed;
        block(async move {
            let mut client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let err = |e: tokio_postgres::Error| db_error(&at, e);
            let tx = client.transaction().await.map_err(err)?;
            // One writer per ref at a time; other refs update side by side.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1 || ':' || $2))",
                &[&repo, &ref_name],
            )
            .await
            .map_err(err)?;
            let repo_id: i64 = tx
                .query_one(
                    "INSERT INTO repos(name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                    &[&repo],
                )
                .await
                .map_err(err)?
                .get(0);
            let snapshot: i64 = tx
                .query_one(
                    "INSERT INTO snapshots(repo_id, embedder, dimensions) VALUES ($1, $2, $3) RETURNING id",
                    &[&repo_id, &identity.embedder, &(identity.dimensions as i32)],
                )
                .await
                .map_err(err)?
                .get(0);
            if let Some(base) = base {
                tx.execute(
                    "INSERT INTO snapshot_files(snapshot_id, path, blob_id)
                     SELECT $1, path, blob_id FROM snapshot_files WHERE snapshot_id = $2 AND NOT (path = ANY($3::text[]))",
                    &[&snapshot, &base, &dropped],
                )
                .await
                .map_err(err)?;
            }
            let mut published = Published {
                snapshot,
                ..Published::default()
            };
            let insert_blob = tx
                .prepare(
                    "INSERT INTO blobs(path, content_hash, skip_reason) VALUES ($1, $2, $3)
                     ON CONFLICT (path, content_hash) DO UPDATE SET path = excluded.path RETURNING id, (xmax = 0)",
                )
                .await
                .map_err(err)?;
            let insert_chunks = tx
                .prepare(
                    "INSERT INTO chunks(blob_id, ord, language, kind, symbol, name, start_byte, end_byte,
                        start_line, end_line, text, text_hash, terms)
                     SELECT $1, o::integer, l, k, s, n, sb, eb, sl, el, t, h, tc
                     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
                        $8::integer[], $9::integer[], $10::text[], $11::bytea[], $12::integer[])
                        WITH ORDINALITY AS u(l, k, s, n, sb, eb, sl, el, t, h, tc, o)
                     RETURNING id, ord",
                )
                .await
                .map_err(err)?;
            let insert_postings = tx
                .prepare(
                    "INSERT INTO postings(term, blob_id, chunk_id, head, body, terms)
                     SELECT t, $1, c, h, b, n FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::smallint[], $6::integer[])
                        AS u(t, c, h, b, n)",
                )
                .await
                .map_err(err)?;
            let mut paths = Vec::with_capacity(changed.len());
            let mut blob_ids = Vec::with_capacity(changed.len());
            for file in changed {
                match file {
                    ChangedFile::Known { path, blob_id } => {
                        paths.push(path);
                        blob_ids.push(blob_id);
                    }
                    ChangedFile::New(v) => {
                        let row = tx
                            .query_one(
                                &insert_blob,
                                &[&v.path, &v.content_hash.to_vec(), &v.skip_reason],
                            )
                            .await
                            .map_err(err)?;
                        let blob_id: i64 = row.get(0);
                        let inserted: bool = row.get(1);
                        // A version another writer added meanwhile has its chunks already.
                        if inserted && !v.chunks.is_empty() {
                            let c = &v.chunks;
                            let col = |f: &dyn Fn(&NewChunk) -> String| -> Vec<String> {
                                c.iter().map(f).collect()
                            };
                            let language = col(&|c| c.language.as_str().to_string());
                            let kind = col(&|c| c.kind.as_str().to_string());
                            let symbol = col(&|c| pg_text(&c.symbol));
                            let name = col(&|c| pg_text(&c.name));
                            let text = col(&|c| pg_text(&c.text));
                            let sb: Vec<i64> = c.iter().map(|c| c.start_byte as i64).collect();
                            let eb: Vec<i64> = c.iter().map(|c| c.end_byte as i64).collect();
                            let sl: Vec<i32> = c.iter().map(|c| c.start_line as i32).collect();
                            let el: Vec<i32> = c.iter().map(|c| c.end_line as i32).collect();
                            let th: Vec<Vec<u8>> =
                                c.iter().map(|c| c.text_hash.0.to_vec()).collect();
                            let postings: Vec<ChunkPostings> =
                                c.iter().map(ChunkPostings::of).collect();
                            let lengths: Vec<i32> = postings.iter().map(|p| p.terms).collect();
                            let ids = tx
                                .query(
                                    &insert_chunks,
                                    &[
                                        &blob_id, &language, &kind, &symbol, &name, &sb, &eb, &sl,
                                        &el, &text, &th, &lengths,
                                    ],
                                )
                                .await
                                .map_err(err)?;
                            let mut terms = Vec::new();
                            let mut chunk_ids = Vec::new();
                            let mut heads: Vec<i16> = Vec::new();
                            let mut bodies: Vec<i16> = Vec::new();
                            let mut lens = Vec::new();
                            for row in ids {
                                let id: i64 = row.get(0);
                                let ord: i32 = row.get(1);
                                let Some(p) = postings.get(ord as usize - 1) else {
                                    continue;
                                };
                                for (term, (head, body)) in &p.counts {
                                    terms.push(term.clone());
                                    chunk_ids.push(id);
                                    heads.push((*head).min(i16::MAX as u32) as i16);
                                    bodies.push((*body).min(i16::MAX as u32) as i16);
                                    lens.push(p.terms);
                                }
                            }
                            tx.execute(
                                &insert_postings,
                                &[&blob_id, &terms, &chunk_ids, &heads, &bodies, &lens],
                            )
                            .await
                            .map_err(err)?;
                            published.chunks_added += c.len() as u64;
                            published.file_versions_added += 1;
                        }
                        paths.push(v.path);
                        blob_ids.push(blob_id);
                    }
                }
            }
            tx.execute(
                "INSERT INTO snapshot_files(snapshot_id, path, blob_id) SELECT $1, p, b FROM unnest($2::text[], $3::bigint[]) AS u(p, b)
                 ON CONFLICT (snapshot_id, path) DO UPDATE SET blob_id = excluded.blob_id",
                &[&snapshot, &paths, &blob_ids],
            )
            .await
            .map_err(err)?;
            tx.execute(
                "UPDATE snapshots SET (chunk_count, avg_terms) = (SELECT count(*), coalesce(avg(c.terms), 0)::real
                    FROM snapshot_files sf JOIN chunks c ON c.blob_id = sf.blob_id WHERE sf.snapshot_id = $1) WHERE id = $1",
                &[&snapshot],
            )
            .await
            .map_err(err)?;
            fault_pause_in_publish().await;
            tx.execute(
                "INSERT INTO refs(repo_id, name, snapshot_id) VALUES ($1, $2, $3)
                 ON CONFLICT (repo_id, name) DO UPDATE SET snapshot_id = excluded.snapshot_id, updated_at = now()",
                &[&repo_id, &ref_name, &snapshot],
            )
            .await
            .map_err(err)?;
            // Snapshots no ref points at any more, older than any search can still be
            // reading (a reader resolves its snapshot once per question), and then the
            // file versions (with their chunks) that no snapshot has. The embedding cache
            // stays: it is what makes the next branch cheap.
            let dropped_snapshots = tx
                .execute(
                    "DELETE FROM snapshots s WHERE s.repo_id = $1 AND s.created_at < now() - interval '1 hour'
                     AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.snapshot_id = s.id)",
                    &[&repo_id],
                )
                .await
                .map_err(err)?;
            if dropped_snapshots > 0 {
                tx.execute(
                    "DELETE FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM snapshot_files sf WHERE sf.blob_id = b.id)",
                    &[],
                )
                .await
                .map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
            // A first build (or a large change) leaves the planner's statistics far off
            // until autovacuum comes by: refresh them now (best effort).
            let total: i64 = client
                .query_one(
                    "SELECT chunk_count FROM snapshots WHERE id = $1",
                    &[&snapshot],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            if published.chunks_added * 10 > total as u64 {
                let _ = client
                    .batch_execute("ANALYZE postings; ANALYZE chunks; ANALYZE snapshot_files; ANALYZE blobs; ANALYZE embeddings;")
                    .await;
            }
            Ok(published)
        })
    }

    /// Makes sure vectors of `dimensions` have their HNSW index (writers only).
    pub fn ensure_vector_index(&self, dimensions: usize) -> Result<()> {
        if dimensions == 0 || dimensions > HNSW_MAX_DIMENSIONS {
            return Ok(());
        }
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            client
                .batch_execute(&format!(
                    "SELECT pg_advisory_lock(7261537);
                     CREATE INDEX IF NOT EXISTS embeddings_hnsw_{dimensions} ON embeddings
                     USING hnsw ((vector::vector({dimensions})) vector_cosine_ops) WHERE dimensions = {dimensions};
                     SELECT pg_advisory_unlock(7261537);"
                ))
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(())
        })
    }

    /// Lexical candidates of a snapshot, best first, scored as the SQLite index scores
    /// them (FTS5's `bm25()`, k1 1.2, b 0.75, head occurrences counting `head_weight`
    /// times): the postings of the query's terms, restricted to the snapshot's files.
    /// Paths in `excluded` (the local overlay's) are left out.
    pub fn lexical_search(
        &self,
        snapshot: i64,
        terms: &[String],
        limit: usize,
        head_weight: f32,
        excluded: &[String],
    ) -> Result<Vec<(ChunkId, f32)>> {
        let mut unique: Vec<String> = Vec::new();
        for t in terms {
            let t = t.to_lowercase();
            if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric()) && !unique.contains(&t) {
                unique.push(t);
            }
        }
        if unique.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let (idf, avg_terms) = self.idf(snapshot, &unique)?;
        let weights: Vec<f32> = unique
            .iter()
            .map(|t| idf.get(t).copied().unwrap_or(0.0))
            .collect();
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let excluded = excluded.to_vec();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            // FTS5's bm25(): per query term, idf * w * (k1 + 1) / (w + k1 * (1 - b + b * len / avg)),
            // w = head_weight * (the term's head occurrences) + (its body occurrences).
            let rows = client
                .query(
                    "SELECT p.chunk_id,
                            sum(q.idf * (($6::real * p.head + p.body) * 2.2::real)
                                / (($6::real * p.head + p.body) + 1.2::real * (0.25::real + 0.75::real * p.terms / $7::real)))::real AS s
                     FROM unnest($2::text[], $3::real[]) AS q(t, idf)
                     JOIN postings p ON p.term = q.t
                     JOIN snapshot_files sf ON sf.blob_id = p.blob_id AND sf.snapshot_id = $1
                     WHERE NOT (sf.path = ANY($5::text[]))
                     GROUP BY p.chunk_id ORDER BY s DESC, p.chunk_id LIMIT $4",
                    &[
                        &snapshot,
                        &unique,
                        &weights,
                        &(limit as i64),
                        &excluded,
                        &head_weight,
                        &avg_terms.max(1.0),
                    ],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(rows
                .into_iter()
                .map(|r| (ChunkId(r.get(0)), r.get::<_, Option<f32>>(1).unwrap_or(0.0)))
                .collect())
        })
    }

    /// BM25's statistics of a snapshot: each term's inverse document frequency among its
    /// chunks (FTS5's: ln((N - n + 0.5) / (n + 0.5)), at least 1e-6), and the average
    /// chunk length in terms. A snapshot never changes, so they are kept per process.
    fn idf(&self, snapshot: i64, terms: &[String]) -> Result<(HashMap<String, f32>, f32)> {
        // The average length is kept under the empty term (no real term is empty).
        const AVERAGE: &str = "";
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        let mut average = None;
        if let Ok(cache) = self.idf.lock() {
            average = cache.get(&(snapshot, AVERAGE.to_string())).copied();
            for t in terms {
                match cache.get(&(snapshot, t.clone())) {
                    Some(v) => {
                        out.insert(t.clone(), *v);
                    }
                    None => missing.push(t.clone()),
                }
            }
        }
        if let (true, Some(average)) = (missing.is_empty(), average) {
            return Ok((out, average));
        }
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let asked = missing.clone();
        let (total, average, counts): (i64, f32, Vec<i64>) = block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let row = client
                .query_one(
                    "SELECT chunk_count, avg_terms FROM snapshots WHERE id = $1",
                    &[&snapshot],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    "SELECT (SELECT count(*) FROM postings p JOIN snapshot_files sf
                               ON sf.blob_id = p.blob_id AND sf.snapshot_id = $1 WHERE p.term = u.t)
                     FROM unnest($2::text[]) WITH ORDINALITY AS u(t, o) ORDER BY o",
                    &[&snapshot, &asked],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok((
                row.get(0),
                row.get(1),
                rows.into_iter().map(|r| r.get(0)).collect(),
            ))
        })?;
        let n = total.max(1) as f32;
        let mut cache = self.idf.lock().ok();
        if let Some(cache) = cache.as_mut() {
            cache.insert((snapshot, AVERAGE.to_string()), average);
        }
        for (t, df) in missing.into_iter().zip(counts) {
            let df = df as f32;
            let idf = ((n - df + 0.5) / (df + 0.5)).ln().max(1e-6);
            if let Some(cache) = cache.as_mut() {
                cache.insert((snapshot, t.clone()), idf);
            }
            out.insert(t, idf);
        }
        Ok((out, average))
    }

    /// The `limit` chunks of a snapshot nearest to `query` (cosine similarity, best
    /// first), from the HNSW index with pgvector's iterative scan for the filter.
    pub fn nearest(
        &self,
        snapshot: &Snapshot,
        query: &[f32],
        limit: usize,
        ef: usize,
        excluded: &[String],
    ) -> Result<Vec<(ChunkId, f32)>> {
        let dims = snapshot.identity.dimensions;
        if dims == 0 || query.len() != dims || limit == 0 {
            return Ok(Vec::new());
        }
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let id = snapshot.id;
        let embedder = snapshot.identity.embedder.clone();
        let q = vector_of(query);
        let excluded = excluded.to_vec();
        let ef = ef.max(limit).min(1000);
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            // Session settings (every query of ragls on a pooled connection wants them):
            // one round trip, not a transaction's four.
            client
                .batch_execute(&format!(
                    "SET hnsw.ef_search = {ef}; SET hnsw.iterative_scan = relaxed_order;"
                ))
                .await
                .map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    &format!(
                        "WITH nn AS (
                           SELECT e.text_hash, e.vector::vector({dims}) <=> $2::vector({dims}) AS d FROM embeddings e
                           WHERE e.dimensions = {dims} AND e.embedder = $3 AND EXISTS (
                             SELECT 1 FROM chunks c JOIN snapshot_files sf ON sf.blob_id = c.blob_id
                             WHERE c.text_hash = e.text_hash AND sf.snapshot_id = $1 AND NOT (sf.path = ANY($5::text[])))
                           ORDER BY e.vector::vector({dims}) <=> $2::vector({dims}) LIMIT $4)
                         SELECT c.id, (1 - nn.d)::real FROM nn JOIN chunks c ON c.text_hash = nn.text_hash
                         JOIN snapshot_files sf ON sf.blob_id = c.blob_id AND sf.snapshot_id = $1
                         WHERE NOT (sf.path = ANY($5::text[]))
                         ORDER BY nn.d, c.id LIMIT $4"
                    ),
                    &[&id, &q, &embedder, &(limit as i64), &excluded],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(rows
                .into_iter()
                .map(|r| (ChunkId(r.get(0)), r.get::<_, f32>(1)))
                .collect())
        })
    }

    /// Chunks by id, with the path of their file.
    pub fn chunks_by_id(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let rows = client
                .query(
                    "SELECT c.id, b.path, c.language, c.kind, c.symbol, c.name, c.start_byte, c.end_byte,
                            c.start_line, c.end_line, c.text
                     FROM chunks c JOIN blobs b ON b.id = c.blob_id WHERE c.id = ANY($1::bigint[])",
                    &[&ids],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            let mut out = HashMap::with_capacity(rows.len());
            for r in rows {
                let id = ChunkId(r.get(0));
                let language: String = r.get(2);
                let kind: String = r.get(3);
                let (Some(language), Some(kind)) =
                    (Language::from_name(&language), ChunkKind::from_name(&kind))
                else {
                    continue;
                };
                out.insert(
                    id,
                    StoredChunk {
                        id,
                        path: r.get(1),
                        chunk: Chunk {
                            language,
                            kind,
                            symbol: r.get(4),
                            name: r.get(5),
                            start_byte: r.get::<_, i64>(6) as usize,
                            end_byte: r.get::<_, i64>(7) as usize,
                            start_line: r.get::<_, i32>(8) as u32,
                            end_line: r.get::<_, i32>(9) as u32,
                            text: r.get(10),
                        },
                    },
                );
            }
            Ok(out)
        })
    }

    /// Figures for `status` and the benchmark: chunks of the snapshot, bytes of the database.
    pub fn sizes(&self, snapshot: i64) -> Result<(u64, u64)> {
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        block(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let row = client
                .query_one(
                    "SELECT (SELECT chunk_count FROM snapshots WHERE id = $1), pg_database_size(current_database())",
                    &[&snapshot],
                )
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok((
                row.get::<_, Option<i64>>(0).unwrap_or(0) as u64,
                row.get::<_, i64>(1) as u64,
            ))
        })
    }
}

fn newer_schema(at: &str, version: i32) -> Error {
    Error::Usage(format!(
        "the shared index at {at} has schema version {version}, newer than this ragls reads ({PG_SCHEMA_VERSION}); upgrade ragls"
    ))
}

/// Fault injection for the tests: `RAGLS_FAULT_PUBLISH_WAIT_FOR=FILE` makes a ref update
/// stop inside its transaction, after writing everything but before switching the ref:
/// it creates `FILE.reached`, then waits until `FILE` exists (a test reads meanwhile, or
/// kills the process). Unset, it costs nothing.
async fn fault_pause_in_publish() {
    let Some(release) = std::env::var_os("RAGLS_FAULT_PUBLISH_WAIT_FOR") else {
        return;
    };
    let release = std::path::PathBuf::from(release);
    let mut reached = release.clone().into_os_string();
    reached.push(".reached");
    let _ = std::fs::write(&reached, b"");
    while !release.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
