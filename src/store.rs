//! The store: the durable truth of an index, one SQLite database (WAL mode) holding the
//! files seen, their chunks, the embedding cache, the lexical BM25 index (FTS5) and the
//! index metadata (schema version, embedder, dimensions).
//!
//! Every change to a file's chunks commits in one transaction with the file's new state,
//! so a crash at any moment leaves either the old or the new state of each file, never a
//! half. The vector index (`ann`) is derived from this store and can always be rebuilt
//! from it. This module knows nothing about walking, chunking or embedding.

use crate::chunk::{Chunk, ChunkKind, Language};
use crate::error::{Error, Result};
use crate::workspace::SkipReason;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod lexical;
pub mod pg;
mod text;
mod vectors;
use vectors::*;
pub use vectors::{f16_to_f32, f32_to_f16, stored_precision};

/// Bump when the tables change: an index of another version is rebuilt, never read.
pub const SCHEMA_VERSION: i64 = 1;
pub const DB_FILE: &str = "index.sqlite";

/// 128 bits of blake3 over a chunk's embedding text: the embedding cache key. Stored as a
/// 16-byte blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TextHash(pub [u8; 16]);

/// A chunk's row id in the store, also its id in the vector index. Stored as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub i64);

pub fn text_hash(text: &str) -> TextHash {
    let full = blake3::hash(text.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full.as_bytes()[..16]);
    TextHash(out)
}

impl rusqlite::types::ToSql for TextHash {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(rusqlite::types::ToSqlOutput::Borrowed(
            rusqlite::types::ValueRef::Blob(&self.0),
        ))
    }
}

impl rusqlite::types::FromSql for TextHash {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        v.as_blob().map(to_hash)
    }
}

impl rusqlite::types::ToSql for ChunkId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for ChunkId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(ChunkId)
    }
}

/// What the store remembers of a file, to decide cheaply whether it changed.
#[derive(Clone, Debug, PartialEq)]
pub struct FileState {
    pub size: u64,
    pub mtime_ns: i64,
    pub content_hash: [u8; 32],
    /// Set when the file was seen but not indexed (binary, generated...).
    pub skip_reason: Option<SkipReason>,
}

/// A chunk as the store keeps it: its id and file, and the chunk itself
/// (whose fields read through `Deref`, e.g. `stored.start_line`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChunk {
    pub id: ChunkId,
    pub path: String,
    pub chunk: Chunk,
}

impl std::ops::Deref for StoredChunk {
    type Target = Chunk;
    fn deref(&self) -> &Chunk {
        &self.chunk
    }
}

impl std::ops::DerefMut for StoredChunk {
    fn deref_mut(&mut self) -> &mut Chunk {
        &mut self.chunk
    }
}

/// A chunk to write: the chunk (location and text), and the terms for the lexical index.
#[derive(Clone, Debug)]
pub struct NewChunk {
    pub chunk: Chunk,
    pub text_hash: TextHash,
    /// Lexical terms of the chunk's name, symbol path and file path (the boosted field).
    pub head_terms: String,
    /// Lexical terms of the chunk's text.
    pub body_terms: String,
}

impl std::ops::Deref for NewChunk {
    type Target = Chunk;
    fn deref(&self) -> &Chunk {
        &self.chunk
    }
}

/// Which embedder built an index. Vectors of two identities never mix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub embedder: String,
    pub dimensions: usize,
}

pub struct Store {
    conn: Connection,
    dir: PathBuf,
    /// What the lexical stage keeps between searches (chunk sizes; see `lexical`).
    lexical: lexical::LexicalCache,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    pub files: u64,
    pub skipped_files: u64,
    pub chunks: u64,
    pub cached_vectors: u64,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash BLOB NOT NULL,
    skip_reason TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    language TEXT NOT NULL,
    kind TEXT NOT NULL,
    symbol TEXT NOT NULL,
    name TEXT NOT NULL,
    start_byte INTEGER NOT NULL,
    end_byte INTEGER NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    text TEXT NOT NULL,
    text_hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_path ON chunks(path);
-- A rowid table: vectors are large rows, which WITHOUT ROWID tables store poorly.
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    embedder TEXT NOT NULL,
    dimensions INTEGER NOT NULL,
    text_hash BLOB NOT NULL,
    vector BLOB NOT NULL,
    UNIQUE (embedder, dimensions, text_hash)
);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    head, body, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 0'
);
"#;

impl Store {
    /// Opens (creating if needed) the index in `dir`. An index of another schema version
    /// is wiped and recreated; a file that is not a readable database is an error, and is
    /// left alone.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::io(
                format!("cannot create the index folder {}", dir.display()),
                e,
            )
        })?;
        let path = dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| corrupt(&path, e))?;
        let mut store = Store {
            conn,
            dir: dir.to_path_buf(),
            lexical: Default::default(),
        };
        store.configure().map_err(|e| corrupt(&path, e))?;
        let version: Option<i64> = store.schema_version().map_err(|e| corrupt(&path, e))?;
        match version {
            Some(SCHEMA_VERSION) => {}
            Some(_) => {
                store.wipe()?;
                store.create_schema()?;
            }
            None => store.create_schema()?,
        }
        Ok(store)
    }

    /// Opens an existing index for reading only; `None` when there is none yet. In a
    /// folder this process cannot write to, the database is opened read-only (as an
    /// immutable file), so searches still work.
    pub fn open_existing(dir: &Path) -> Result<Option<Store>> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let opened = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .and_then(|conn| {
            let store = Store {
                conn,
                dir: dir.to_path_buf(),
                lexical: Default::default(),
            };
            store.configure()?;
            Ok(store)
        });
        let store = match opened {
            Ok(store) => store,
            Err(e) if is_write_refusal(&e) && !is_writable(dir) => {
                return Store::open_read_only(dir);
            }
            Err(e) => return Err(corrupt(&path, e)),
        };
        match store.schema_version().map_err(|e| corrupt(&path, e))? {
            Some(SCHEMA_VERSION) => Ok(Some(store)),
            _ => Ok(None),
        }
    }

    /// Opens the database without writing anything next to it (no WAL, no lock files);
    /// for an index folder that is not writable.
    pub fn open_read_only(dir: &Path) -> Result<Option<Store>> {
        let path = dir.join(DB_FILE);
        let uri = format!("file:{}?immutable=1", uri_path(&path));
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| corrupt(&path, e))?;
        let store = Store {
            conn,
            dir: dir.to_path_buf(),
            lexical: Default::default(),
        };
        match store.schema_version().map_err(|e| corrupt(&path, e))? {
            Some(SCHEMA_VERSION) => Ok(Some(store)),
            _ => Ok(None),
        }
    }

    /// Moves an unreadable database aside (`index.sqlite.corrupt`, kept for inspection)
    /// so that a fresh index can be built in its place. Returns where it went.
    pub fn set_aside(dir: &Path) -> Result<PathBuf> {
        let db = dir.join(DB_FILE);
        let aside = dir.join(format!("{DB_FILE}.corrupt"));
        std::fs::rename(&db, &aside)
            .map_err(|e| Error::io(format!("cannot move {} aside", db.display()), e))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{DB_FILE}{suffix}")));
        }
        Ok(aside)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn configure(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL: readers never block the writer and a crash never tears a transaction.
        self.conn.pragma_update(None, "journal_mode", "WAL")?;
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.conn.pragma_update(None, "foreign_keys", "OFF")?;
        self.conn.pragma_update(None, "cache_size", -32000)?;
        Ok(())
    }

    fn schema_version(&self) -> rusqlite::Result<Option<i64>> {
        let has_meta: bool = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if !has_meta {
            return Ok(None);
        }
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.and_then(|v| v.parse().ok()).or(Some(-1)))
    }

    fn create_schema(&mut self) -> Result<()> {
        self.conn.execute_batch(SCHEMA)?;
        self.set_meta("schema_version", &SCHEMA_VERSION.to_string())?;
        Ok(())
    }

    fn wipe(&mut self) -> Result<()> {
        let tables: Vec<String> = {
            let mut st = self.conn.prepare(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'chunks_fts_%'",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for t in tables {
            self.conn
                .execute_batch(&format!("DROP TABLE IF EXISTS \"{}\";", t.replace('"', "")))?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key=?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    pub fn identity(&self) -> Result<Option<Identity>> {
        let embedder = self.meta("embedder")?;
        let dims = self.meta("dimensions")?.and_then(|d| d.parse().ok());
        Ok(match (embedder, dims) {
            (Some(embedder), Some(dimensions)) => Some(Identity {
                embedder,
                dimensions,
            }),
            _ => None,
        })
    }

    /// Makes `id` the index's embedder. When another embedder built the index, its files
    /// and chunks are dropped so everything is re-chunked and re-embedded (the cache keeps
    /// the old vectors, keyed by their own embedder). Returns true when it dropped them.
    pub fn adopt_identity(&mut self, id: &Identity) -> Result<bool> {
        let current = self.identity()?;
        if current.as_ref() == Some(id) {
            return Ok(false);
        }
        // The same model whose dimension was unknown (it could not be reached) stored no
        // vectors: learning the dimension drops nothing.
        if let Some(c) = &current {
            if c.embedder == id.embedder && c.dimensions == 0 {
                self.set_meta("dimensions", &id.dimensions.to_string())?;
                return Ok(false);
            }
        }
        let had_any = current.is_some();
        let tx = self.conn.transaction()?;
        tx.execute_batch(
            "DELETE FROM files; DELETE FROM chunks; DELETE FROM chunks_fts; DELETE FROM skipped;",
        )?;
        for (k, v) in [
            ("embedder", id.embedder.clone()),
            ("dimensions", id.dimensions.to_string()),
        ] {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                params![k, v],
            )?;
        }
        bump_generation(&tx)?;
        tx.commit()?;
        Ok(had_any)
    }

    /// Counts up every time the set of chunks changes; the vector index records the
    /// generation it reflects, so a stale dump is detected.
    pub fn generation(&self) -> Result<u64> {
        Ok(self
            .meta("generation")?
            .and_then(|g| g.parse().ok())
            .unwrap_or(0))
    }

    pub fn file_states(&self) -> Result<HashMap<String, FileState>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT path, size, mtime_ns, content_hash, skip_reason FROM files")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, read_file_state(r, 1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// What the store remembers of one file (for a single edited buffer: no full scan).
    pub fn file_state(&self, path: &str) -> Result<Option<FileState>> {
        let mut st = self.conn.prepare_cached(
            "SELECT size, mtime_ns, content_hash, skip_reason FROM files WHERE path=?1",
        )?;
        Ok(st.query_row([path], |r| read_file_state(r, 0)).optional()?)
    }

    /// The chunk ids and text hashes of one file, so a changed file can keep the chunks
    /// whose text did not change.
    pub fn chunk_hashes_of(&self, path: &str) -> Result<Vec<(ChunkId, TextHash)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, text_hash FROM chunks WHERE path=?1 ORDER BY id")?;
        let rows = st.query_map([path], |r| {
            Ok((r.get::<_, ChunkId>(0)?, to_hash(&r.get::<_, Vec<u8>>(1)?)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Chunks that have no vector for this embedder (its requests failed): (id, hash,
    /// embedding text), so a later run can embed them.
    pub fn chunks_without_vectors(
        &self,
        id: &Identity,
    ) -> Result<Vec<(ChunkId, TextHash, String)>> {
        let mut st = self.conn.prepare(
            "SELECT c.id, c.text_hash, c.path, c.symbol, c.text FROM chunks c
             LEFT JOIN embeddings e ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash
             WHERE e.id IS NULL ORDER BY c.id",
        )?;
        let rows = st.query_map(
            params![id.embedder, id.dimensions as i64],
            vectors::read_pending,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn live_chunk_ids(&self) -> Result<Vec<ChunkId>> {
        let mut st = self.conn.prepare("SELECT id FROM chunks ORDER BY id")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The smallest chunk of `path` that contains 1-based `line`.
    pub fn chunk_at(&self, path: &str, line: u32) -> Result<Option<StoredChunk>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, path, language, kind, symbol, name, start_byte, end_byte, start_line, end_line, text
             FROM chunks WHERE path=?1 AND start_line<=?2 AND end_line>=?2
             ORDER BY (end_line - start_line) ASC LIMIT 1",
        )?;
        Ok(st.query_row(params![path, line], read_chunk).optional()?)
    }

    pub fn chunks_by_id(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>> {
        let mut st = self.conn.prepare_cached(
            "SELECT id, path, language, kind, symbol, name, start_byte, end_byte, start_line, end_line, text
             FROM chunks WHERE id=?1",
        )?;
        let mut out = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(c) = st.query_row([id], read_chunk).optional()? {
                out.insert(*id, c);
            }
        }
        Ok(out)
    }

    pub fn counts(&self) -> Result<Counts> {
        let one = |sql: &str| -> Result<u64> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
        };
        Ok(Counts {
            files: one("SELECT count(*) FROM files WHERE skip_reason IS NULL")?,
            skipped_files: one("SELECT count(*) FROM files WHERE skip_reason IS NOT NULL")?,
            chunks: one("SELECT count(*) FROM chunks")?,
            cached_vectors: one("SELECT count(*) FROM embeddings")?,
        })
    }

    /// Skipped files by reason: those skipped by their path when walking (`skipped`) and
    /// those skipped by their content when read (`files.skip_reason`).
    pub fn skip_counts(&self) -> Result<Vec<(String, u64)>> {
        let mut st = self.conn.prepare(
            "SELECT reason, count(*) FROM (SELECT reason FROM skipped UNION ALL
             SELECT skip_reason AS reason FROM files WHERE skip_reason IS NOT NULL) GROUP BY reason ORDER BY reason",
        )?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Bytes on disk of the database (with its WAL) and any other files of the index.
    pub fn index_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Starts a write transaction. Writes become visible, all at once, on `commit`.
    pub fn writer(&mut self) -> Result<Writer<'_>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::DatabaseBusy =>
                {
                    Error::IndexLocked(self.dir.clone())
                }
                other => Error::from(other),
            })?;
        Ok(Writer { tx, changed: false })
    }

    /// Folds the WAL into the database file (after a big write), so the next open is quick.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// One write transaction: file states, chunks (with their lexical terms) and cached vectors.
pub struct Writer<'s> {
    tx: rusqlite::Transaction<'s>,
    changed: bool,
}

impl Writer<'_> {
    pub fn put_file(&mut self, path: &str, state: &FileState) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO files(path, size, mtime_ns, content_hash, skip_reason) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns,
                 content_hash=excluded.content_hash, skip_reason=excluded.skip_reason",
            )?
            .execute(params![path, state.size as i64, state.mtime_ns, &state.content_hash[..], state.skip_reason.map(SkipReason::as_str)])?;
        Ok(())
    }

    /// Forgets a file and its chunks; returns the ids of the chunks removed.
    pub fn remove_file(&mut self, path: &str) -> Result<Vec<ChunkId>> {
        let ids: Vec<ChunkId> = {
            let mut st = self
                .tx
                .prepare_cached("SELECT id FROM chunks WHERE path=?1")?;
            let rows = st.query_map([path], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for id in &ids {
            self.remove_chunk(*id)?;
        }
        self.tx
            .prepare_cached("DELETE FROM files WHERE path=?1")?
            .execute([path])?;
        Ok(ids)
    }

    pub fn remove_chunk(&mut self, id: ChunkId) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM chunks WHERE id=?1")?
            .execute([id])?;
        self.tx
            .prepare_cached("DELETE FROM chunks_fts WHERE rowid=?1")?
            .execute([id])?;
        self.changed = true;
        Ok(())
    }

    /// Moves a kept chunk (same text) to its new place in an edited file.
    pub fn move_chunk(&mut self, id: ChunkId, c: &NewChunk) -> Result<()> {
        self.tx
            .prepare_cached(
                "UPDATE chunks SET start_byte=?2, end_byte=?3, start_line=?4, end_line=?5, kind=?6, name=?7 WHERE id=?1",
            )?
            .execute(params![id, c.start_byte as i64, c.end_byte as i64, c.start_line, c.end_line, c.kind.as_str(), c.name])?;
        Ok(())
    }

    pub fn insert_chunk(&mut self, path: &str, c: &NewChunk) -> Result<ChunkId> {
        self.tx
            .prepare_cached(
                "INSERT INTO chunks(path, language, kind, symbol, name, start_byte, end_byte, start_line, end_line, text, text_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                path,
                c.language.as_str(),
                c.kind.as_str(),
                c.symbol,
                c.name,
                c.start_byte as i64,
                c.end_byte as i64,
                c.start_line,
                c.end_line,
                text::Compressed(&c.text),
                c.text_hash
            ])?;
        let id = self.tx.last_insert_rowid();
        self.tx
            .prepare_cached("INSERT INTO chunks_fts(rowid, head, body) VALUES (?1, ?2, ?3)")?
            .execute(params![id, c.head_terms, c.body_terms])?;
        self.changed = true;
        Ok(ChunkId(id))
    }

    pub fn put_vector(&mut self, id: &Identity, hash: &TextHash, vector: &[f32]) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO embeddings(embedder, dimensions, text_hash, vector) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id.embedder, id.dimensions as i64, hash, vector_to_blob(vector)])?;
        Ok(())
    }

    /// Replaces the list of files skipped by path when walking.
    pub fn set_walk_skips(&mut self, skipped: &[(String, String)]) -> Result<()> {
        self.tx.execute("DELETE FROM skipped", [])?;
        let mut st = self
            .tx
            .prepare_cached("INSERT OR REPLACE INTO skipped(path, reason) VALUES (?1, ?2)")?;
        for (path, reason) in skipped {
            st.execute([path, reason])?;
        }
        Ok(())
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.tx.execute(
            "INSERT INTO meta(key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    /// Makes every write of this transaction durable and visible at once.
    pub fn commit(self) -> Result<()> {
        if self.changed {
            bump_generation(&self.tx)?;
        }
        self.tx.commit()?;
        Ok(())
    }
}

fn bump_generation(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('generation', '1')
         ON CONFLICT(key) DO UPDATE SET value=CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        [],
    )?;
    Ok(())
}

/// A `FileState` from the columns size, mtime_ns, content_hash, skip_reason at `at..`.
fn read_file_state(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<FileState> {
    let hash: Vec<u8> = r.get(at + 2)?;
    let mut content_hash = [0u8; 32];
    if hash.len() == 32 {
        content_hash.copy_from_slice(&hash);
    }
    Ok(FileState {
        size: r.get::<_, i64>(at)? as u64,
        mtime_ns: r.get(at + 1)?,
        content_hash,
        skip_reason: r
            .get::<_, Option<String>>(at + 3)?
            .map(|s| from_name(at + 3, &s, SkipReason::from_name))
            .transpose()?,
    })
}

fn read_chunk(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredChunk> {
    Ok(StoredChunk {
        id: r.get(0)?,
        path: r.get(1)?,
        chunk: Chunk {
            language: from_name(2, &r.get::<_, String>(2)?, Language::from_name)?,
            kind: from_name(3, &r.get::<_, String>(3)?, ChunkKind::from_name)?,
            symbol: r.get(4)?,
            name: r.get(5)?,
            start_byte: r.get::<_, i64>(6)? as usize,
            end_byte: r.get::<_, i64>(7)? as usize,
            start_line: r.get(8)?,
            end_line: r.get(9)?,
            text: r.get::<_, text::Stored>(10)?.0,
        },
    })
}

/// An enum from the name it is stored as (`as_str`); another name is a conversion error.
fn from_name<T>(col: usize, name: &str, parse: fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    parse(name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            col,
            rusqlite::types::Type::Text,
            format!("unknown stored name {name:?}").into(),
        )
    })
}

fn to_hash(bytes: &[u8]) -> TextHash {
    let mut h = [0u8; 16];
    let n = bytes.len().min(16);
    h[..n].copy_from_slice(&bytes[..n]);
    TextHash(h)
}

/// Errors SQLite gives when it may not write the database or create its WAL files.
fn is_write_refusal(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{CannotOpen, PermissionDenied, ReadOnly};
    matches!(
        e.sqlite_error_code(),
        Some(ReadOnly | CannotOpen | PermissionDenied)
    )
}

/// Whether this process can create files in `dir` (tried, not guessed from mode bits, so
/// read-only mounts count too).
pub fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".ragls-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists,
    }
}

/// A path for an SQLite `file:` URI (`?`, `#` and `%` escaped).
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

fn corrupt(path: &Path, e: rusqlite::Error) -> Error {
    let dir = path.parent().unwrap_or(path);
    if is_write_refusal(&e) && !is_writable(dir) {
        return Error::Usage(format!(
            "the index folder {} is not writable ({e}); make it writable, or set index.dir to another folder",
            dir.display()
        ));
    }
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DatabaseBusy => {
            Error::IndexLocked(path.parent().unwrap_or(path).to_path_buf())
        }
        _ => Error::IndexCorrupt {
            path: path.parent().unwrap_or(path).to_path_buf(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_open_answers_without_writing_next_to_the_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.set_meta("probe", "42").unwrap();
            store.checkpoint().unwrap();
        }
        let names = || {
            let mut n: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            n.sort();
            n
        };
        let before = names();
        let store = Store::open_read_only(dir.path())
            .unwrap()
            .expect("an index");
        assert_eq!(store.meta("probe").unwrap().as_deref(), Some("42"));
        assert!(store.skip_counts().unwrap().is_empty());
        drop(store);
        assert_eq!(before, names(), "no WAL or lock file was created");
        assert!(is_writable(dir.path()));
        let refusal = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        assert!(is_write_refusal(&refusal));
    }

    fn chunk(text: &str, head: &str) -> NewChunk {
        NewChunk {
            chunk: Chunk {
                language: Language::Rust,
                kind: ChunkKind::Function,
                symbol: "fn f".into(),
                name: "f".into(),
                start_byte: 0,
                end_byte: text.len(),
                start_line: 1,
                end_line: 1,
                text: text.into(),
            },
            text_hash: text_hash(text),
            head_terms: crate::tokenize::terms_line(head),
            body_terms: crate::tokenize::terms_line(text),
        }
    }

    fn state(hash_byte: u8) -> FileState {
        FileState {
            size: 10,
            mtime_ns: 5,
            content_hash: [hash_byte; 32],
            skip_reason: None,
        }
    }

    #[test]
    fn files_chunks_and_vectors_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity {
            embedder: "builtin:test".into(),
            dimensions: 2,
        };
        let cid;
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.adopt_identity(&id).unwrap();
            let mut w = s.writer().unwrap();
            w.put_file("src/a.rs", &state(1)).unwrap();
            let c = chunk("fn parse_request() {}", "src/a.rs parse_request");
            cid = w.insert_chunk("src/a.rs", &c).unwrap();
            w.put_vector(&id, &c.text_hash, &[0.6, 0.8]).unwrap();
            w.commit().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.identity().unwrap(), Some(id.clone()));
        assert_eq!(s.file_states().unwrap()["src/a.rs"], state(1));
        let hits = s
            .lexical_search(&crate::tokenize::terms("request parsing"), 10, 4.0)
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, cid);
        // Cached at half precision.
        let mut v = vec![0.6, 0.8];
        stored_precision(&mut v);
        assert_eq!(s.live_vectors(&id).unwrap(), vec![(cid, v)]);
        assert_eq!(
            s.chunks_by_id(&[cid]).unwrap()[&cid].text,
            "fn parse_request() {}"
        );
        assert_eq!(
            s.counts().unwrap(),
            Counts {
                files: 1,
                skipped_files: 0,
                chunks: 1,
                cached_vectors: 1
            }
        );
    }

    #[test]
    fn head_matches_outrank_body_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut w = s.writer().unwrap();
        let in_body = w
            .insert_chunk(
                "b.rs",
                &chunk("fn other() { retry(); retry_later(); }", "b.rs other"),
            )
            .unwrap();
        let in_head = w
            .insert_chunk(
                "a.rs",
                &chunk("fn backoff() { sleep(); }", "a.rs retry backoff"),
            )
            .unwrap();
        w.commit().unwrap();
        let hits = s
            .lexical_search(&crate::tokenize::terms("retry"), 10, 5.0)
            .unwrap();
        assert_eq!(
            hits.iter().map(|h| h.0).collect::<Vec<_>>(),
            vec![in_head, in_body]
        );
    }

    #[test]
    fn an_uncommitted_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        {
            let mut w = s.writer().unwrap();
            w.put_file("a.rs", &state(1)).unwrap();
            w.insert_chunk("a.rs", &chunk("fn a() {}", "a")).unwrap();
            // dropped without commit: a crash mid-file
        }
        assert_eq!(s.counts().unwrap().chunks, 0);
        assert!(s.file_states().unwrap().is_empty());
        assert_eq!(s.generation().unwrap(), 0);
    }

    #[test]
    fn removing_a_file_removes_its_chunks_from_the_lexical_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut w = s.writer().unwrap();
        w.put_file("a.rs", &state(1)).unwrap();
        w.insert_chunk("a.rs", &chunk("fn tokenize() {}", "a.rs tokenize"))
            .unwrap();
        w.commit().unwrap();
        let mut w = s.writer().unwrap();
        assert_eq!(w.remove_file("a.rs").unwrap().len(), 1);
        w.commit().unwrap();
        assert!(s
            .lexical_search(&["token".into()], 10, 1.0)
            .unwrap()
            .is_empty());
        assert_eq!(s.counts().unwrap().chunks, 0);
    }

    #[test]
    fn another_embedder_drops_chunks_but_keeps_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let a = Identity {
            embedder: "a".into(),
            dimensions: 2,
        };
        let b = Identity {
            embedder: "b".into(),
            dimensions: 2,
        };
        assert!(!s.adopt_identity(&a).unwrap());
        let mut w = s.writer().unwrap();
        w.put_file("a.rs", &state(1)).unwrap();
        let c = chunk("fn a() {}", "a");
        w.insert_chunk("a.rs", &c).unwrap();
        w.put_vector(&a, &c.text_hash, &[1.0, 0.0]).unwrap();
        w.commit().unwrap();
        assert!(s.adopt_identity(&b).unwrap());
        assert_eq!(s.counts().unwrap().chunks, 0);
        assert!(s.file_states().unwrap().is_empty());
        assert_eq!(s.cached_vectors(&a, &[c.text_hash]).unwrap().len(), 1);
        assert!(s.cached_vectors(&b, &[c.text_hash]).unwrap().is_empty());
    }

    #[test]
    fn an_index_of_another_schema_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            let mut w = s.writer().unwrap();
            w.put_file("a.rs", &state(1)).unwrap();
            w.commit().unwrap();
            s.set_meta("schema_version", "0").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert!(s.file_states().unwrap().is_empty());
        assert_eq!(s.meta("schema_version").unwrap().as_deref(), Some("1"));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not sqlite, it is a text file of some length....",
        )
        .unwrap();
        let err = Store::open(dir.path()).err().unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--rebuild"), "{err}");
        assert!(std::fs::read(dir.path().join(DB_FILE))
            .unwrap()
            .starts_with(b"this is not sqlite"));
    }

    #[test]
    fn half_floats_round_trip_and_round_to_nearest() {
        // Every finite half float survives f16 -> f32 -> f16.
        for h in 0..=u16::MAX {
            if (h >> 10) & 0x1f == 0x1f {
                continue;
            }
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
        for x in [
            0.0f32, 1.0, -1.0, 0.5, 0.0625, 1e-3, -0.3333, 65504.0, 1e-7, 6e-8,
        ] {
            let back = f16_to_f32(f32_to_f16(x));
            // Half a unit in the last place: 2^-11 relative for normal halves.
            assert!(
                (back - x).abs() <= x.abs() * (1.0 / 2048.0) + 3e-8,
                "{x} -> {back}"
            );
        }
        assert_eq!(f16_to_f32(f32_to_f16(1e6)), f32::INFINITY);
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    }

    #[test]
    fn vectors_are_cached_as_half_floats_and_old_f32_blobs_still_read() {
        let v = vec![0.25f32, -0.125, 0.061_234, 0.0];
        let blob = vector_to_blob(&v);
        assert_eq!(blob.len(), 8);
        let mut rounded = v.clone();
        stored_precision(&mut rounded);
        assert_eq!(blob_to_vector(&blob, 4), Some(rounded));
        let old: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(blob_to_vector(&old, 4), Some(v));
        assert_eq!(blob_to_vector(&blob, 5), None);
    }
}
