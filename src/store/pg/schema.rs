//! The shared index's schema: the migrations ragls applies (versioned in
//! `ragls_schema`), the check a reader makes, and the HNSW index per vector dimension.

use super::*;

/// A migration's statement that grants on table `$to` what was granted on `$from` to
/// anyone but its owner: a reader granted `SELECT` table by table (not by default
/// privileges) keeps reading when a migration replaces or adds a table.
macro_rules! grants_copied {
    ($from:literal, $to:literal) => {
        concat!(
            "DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS who,
                    a.privilege_type AS what
             FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = '",
            $from,
            "'::regclass AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT %s ON ",
            $to,
            " TO %s', g.what, g.who);
    END LOOP;
END $$;"
        )
    };
}

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
    -- The terms of all its chunks: BM25's average document length is term_total / chunk_count.
    term_total bigint NOT NULL DEFAULT 0,
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
    // 2: no foreign keys to `blobs` and `snapshots` from the rows a ref update writes by
    // the thousand (postings, chunks, file lists): each row's check locked the row it
    // referenced. Writers and the clean-up of old snapshots exclude each other by an
    // advisory lock instead, and the clean-up removes what the cascades removed.
    r#"
ALTER TABLE postings DROP CONSTRAINT IF EXISTS postings_blob_id_fkey;
ALTER TABLE chunks DROP CONSTRAINT IF EXISTS chunks_blob_id_fkey;
ALTER TABLE snapshot_files DROP CONSTRAINT IF EXISTS snapshot_files_blob_id_fkey;
ALTER TABLE snapshot_files DROP CONSTRAINT IF EXISTS snapshot_files_snapshot_id_fkey;
"#,
    // 3: file versions are written before the transaction that lists them in a snapshot
    // (see `PgStore::write_versions`). Each new one is noted here; the clean-up takes
    // the notes older than an hour and removes the versions no snapshot took (their
    // writer died or failed), a small table rather than a pass over every version.
    r#"
CREATE TABLE pending_versions (
    blob_id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
"#,
    // 4: postings grouped per (term, file version), the chunks' figures in arrays: a
    // file version's terms are a third as many rows as its (term, chunk) pairs, and an
    // update's inserts (a heap and two index records a row) were most of its time. The
    // term index no longer covers the figures: BM25 reads them from the heap, for a
    // third as many rows.
    r#"
ALTER TABLE postings RENAME TO postings_by_chunk;
CREATE TABLE postings (
    term text NOT NULL,
    blob_id bigint NOT NULL,
    -- One element per chunk of the version that has the term, in both: its id, and
    -- the term's occurrences in its head and its body and its length in terms, packed
    -- as head << 48 | body << 32 | length (one array to unnest, not three).
    chunk_ids bigint[] NOT NULL,
    figures bigint[] NOT NULL
);
INSERT INTO postings(term, blob_id, chunk_ids, figures)
SELECT term, blob_id, array_agg(chunk_id ORDER BY chunk_id),
       array_agg((head::bigint << 48) | (body::bigint << 32) | terms::bigint ORDER BY chunk_id)
FROM postings_by_chunk GROUP BY term, blob_id ORDER BY term, blob_id;
DROP TABLE postings_by_chunk;
CREATE INDEX postings_by_term ON postings(term) INCLUDE (blob_id);
CREATE INDEX postings_by_blob ON postings(blob_id);
ANALYZE postings;
"#,
    // 5: the term index without the file version's id. A B-tree with INCLUDE columns
    // keeps every entry whole (no deduplication), and a term has an entry per file
    // version that has it: the index took four times the pages, and an update's
    // postings took half as long again to insert (874 rows: 7.2 ms against 4.6, median
    // of eight). Nothing read the id from the index: BM25 reads each row's arrays from
    // the heap. Built before the old one goes, so readers wait only for the swap.
    r#"
CREATE INDEX postings_by_term_5 ON postings(term);
DROP INDEX postings_by_term;
ALTER INDEX postings_by_term_5 RENAME TO postings_by_term;
"#,
    // 6: the HNSW indexes hold the vectors as `halfvec`s: their values are half floats
    // already (the embedding cache's precision), so nothing is lost, and each graph
    // element takes half the bytes: a question's walk reads fewer pages (the
    // nearest-vectors query ~12% faster on the performance corpus, the index 5.7 MB
    // against 9.3), and models of up to 4,000 dimensions get an index (2,000 before).
    // Each dimension that had an index gets the new one here, built before the old is
    // dropped; others get theirs from the next writer that meets them.
    r#"
DO $$
DECLARE
    old text;
    dims integer;
BEGIN
    FOR old IN SELECT c.relname FROM pg_class c
               WHERE c.relkind = 'i' AND c.relname ~ '^embeddings_hnsw_[0-9]+$' AND pg_table_is_visible(c.oid)
    LOOP
        dims := substring(old FROM '[0-9]+$')::integer;
        EXECUTE format('CREATE INDEX IF NOT EXISTS embeddings_hnsw_half_%s ON embeddings '
                       'USING hnsw ((vector::halfvec(%s)) halfvec_cosine_ops) WHERE dimensions = %s',
                       dims, dims, dims);
        EXECUTE format('DROP INDEX %I', old);
    END LOOP;
END $$;
"#,
    // 7: a snapshot may list only what changed since a full list (`base_id`): its rows
    // in `snapshot_files` are the paths it changed, a removed file's with no version
    // (NULL); every other path is the base's. A small update wrote a copy of its base's
    // whole list before (476 rows and their index entries on the performance corpus,
    // the most rows it wrote). A base is always a full list: a publish whose changes
    // outgrow its bound writes a full list again (see `refs::ListShape`).
    r#"
ALTER TABLE snapshots ADD COLUMN base_id bigint;
CREATE INDEX snapshots_by_base ON snapshots(base_id) WHERE base_id IS NOT NULL;
ALTER TABLE snapshot_files ALTER COLUMN blob_id DROP NOT NULL;
"#,
    // 8: no index of the postings by file version. Only the clean-up looked postings up
    // that way (a version's postings go with it), and keeping the index was an eighth of
    // what an update's postings cost to insert: five files' 1,446 rows took 8.6-10.0 ms
    // with it and 7.4-8.4 without (alternating runs; the heap alone takes 0.2, the term
    // index the rest). The clean-up reads the table once instead (see `collect_garbage`).
    r#"
DROP INDEX IF EXISTS postings_by_blob;
"#,
    // 9: a posting is one array element, not two: the chunk's place in its file version
    // packed with the counts (`versions::posting`), its id made from the row's version
    // and the place (`versions::chunk_id`). The server sends an array element by
    // element, and a question's postings are thousands: 16 clients' postings statements
    // took a third less CPU in all (2,900 -> 4,000 a second on the performance corpus),
    // and the table is a third smaller. Chunks whose ids a sequence gave (before schema
    // 3) take their made ids, their postings first read by the old ones. The new table
    // gets the old one's grants (a reader granted `SELECT` table by table keeps reading).
    concat!(
        r#"
ALTER TABLE postings RENAME TO postings_8;
CREATE TABLE postings (
    term text NOT NULL,
    blob_id bigint NOT NULL,
    -- One element per chunk of the version that has the term: its place in the version
    -- << 40 | the term's occurrences in its head << 32 | in its body << 16 | its length.
    packed bigint[] NOT NULL
);
INSERT INTO postings(term, blob_id, packed)
SELECT p.term, p.blob_id,
       array_agg((o.ord << 40) | (least(u.f >> 48, 255) << 32)
                 | (least((u.f >> 32) & 65535, 65535) << 16) | least(u.f & 4294967295, 65535)
                 ORDER BY o.ord)
FROM postings_8 p
CROSS JOIN LATERAL unnest(p.chunk_ids, p.figures) AS u(chunk_id, f)
CROSS JOIN LATERAL (
    SELECT CASE WHEN u.chunk_id >> 24 = p.blob_id THEN u.chunk_id & 16777215
                ELSE (SELECT c.ord::bigint FROM chunks c WHERE c.id = u.chunk_id) END AS ord) o
WHERE o.ord IS NOT NULL
GROUP BY p.term, p.blob_id ORDER BY p.term, p.blob_id;
"#,
        grants_copied!("postings_8", "postings"),
        r#"
DROP TABLE postings_8;
CREATE INDEX postings_by_term ON postings(term);
UPDATE chunks SET id = -id WHERE id <> ((blob_id << 24) | ord);
UPDATE chunks SET id = (blob_id << 24) | ord WHERE id < 0;
ANALYZE postings;
"#
    ),
    // 10: each term's postings in a whole file list, in one value (`snapshot_postings`,
    // made as the list is published: `list_postings_of`). A reader read a question's
    // postings as a row per term and file version (some 400-700 for four terms on the
    // performance corpus), each joined to the snapshot's file list: 3,100 such
    // statements a second under 16 clients, against 14,500 reading a value per term.
    // A list of changes reads its base's and drops what it replaced, and reads its own
    // versions' postings by (term, version): the term index takes the version too
    // (39,000 statements a second for an update's 23 versions; by term alone, every row
    // of the term was read to find them). The new table gets the postings' grants.
    concat!(
        r#"
CREATE TABLE snapshot_postings (
    snapshot_id bigint NOT NULL,
    term text NOT NULL,
    -- 16 bytes a posting: its file version's id, then the packed posting (`postings.packed`).
    postings bytea NOT NULL,
    PRIMARY KEY (snapshot_id, term)
);
-- Kept whole, not compressed: a question reads a term's at once.
ALTER TABLE snapshot_postings ALTER COLUMN postings SET STORAGE EXTERNAL;
"#,
        // Filled by schema 11, in its layout.
        grants_copied!("postings", "snapshot_postings"),
        r#"
DROP INDEX postings_by_term;
CREATE INDEX postings_by_term ON postings(term, blob_id);
"#
    ),
    // 11: a whole list's postings of a term hold each file version's id once, with its
    // count of postings, instead of beside each posting: 9.5-11 bytes a posting for
    // common terms instead of 16 (see `list_postings_of`). A question's reader is sent
    // them all (50-100 KB a question on the performance corpus), and each of their
    // bytes is copied out of the server's TOAST chunks and through both sockets. The
    // count is a column of its own: the document frequencies and the reader's limit
    // read it without the value.
    concat!(
        r#"
TRUNCATE snapshot_postings;
ALTER TABLE snapshot_postings ADD COLUMN n integer NOT NULL;
-- Joined by hash: the new lists' statistics say "1 row", and a whole list's versions
-- are most of the postings.
SET LOCAL enable_nestloop = off;
INSERT INTO snapshot_postings (snapshot_id, term, n, postings)
"#,
        list_postings_of!(
            "postings",
            "f.snapshot_id IN (SELECT id FROM snapshots WHERE base_id IS NULL)"
        ),
        r#";
RESET enable_nestloop;
ANALYZE snapshot_postings;
"#
    ),
    // 12: a changed file's new version shares the postings of the chunks it starts
    // with unchanged with the version it was made from (its path's in the update's
    // base): its rows in `postings` hold only its other chunks' postings, and
    // `version_sources` names the versions whose rows give it the first `upto` chunks'
    // (their places are the same). A 1% update of the performance corpus (a function
    // added to each of five files) wrote some 1,200 postings rows, each with its term
    // index entry: most of its versions' statement, on the way to the update's commit.
    // A question reads the sources' rows with the own rows (by term and version) and
    // keeps their first places; `version_postings` gives each version its own rows and
    // those it shares, for the writer's whole lists (`list_postings_of`).
    concat!(
        r#"
CREATE TABLE version_sources (
    blob_id bigint NOT NULL,
    src bigint NOT NULL,
    upto integer NOT NULL,
    PRIMARY KEY (blob_id, src)
);
CREATE INDEX version_sources_by_src ON version_sources(src);
CREATE VIEW version_postings AS
    SELECT p.term, p.blob_id, p.packed FROM postings p
    UNION ALL
    SELECT p.term, s.blob_id, shared.packed
    FROM version_sources s
    JOIN postings p ON p.blob_id = s.src
    CROSS JOIN LATERAL (
        SELECT array_agg(u.e ORDER BY u.o) AS packed
        FROM unnest(p.packed) WITH ORDINALITY AS u(e, o)
        WHERE (u.e >> 40) & 16777215 <= s.upto) shared
    WHERE shared.packed IS NOT NULL;
"#,
        grants_copied!("postings", "version_sources"),
        grants_copied!("postings", "version_postings"),
    ),
];

/// The tables a reader reads.
const READ_TABLES: &[&str] = &[
    "ragls_schema",
    "repos",
    "refs",
    "snapshots",
    "snapshot_files",
    "blobs",
    "chunks",
    "postings",
    "snapshot_postings",
    "version_sources",
    "embeddings",
];

/// The HNSW graphs' parameters: 12 neighbours a layer (24 on the lowest) instead of
/// pgvector's 16, its 64 candidates while inserting. An insertion rewrites fewer
/// neighbours' lists, and a new vector is in the index before its ref switches. On
/// bigcorp (48,903 vectors, one build each, recall@10 at `ef_search` 64 of 200 of its
/// vectors against exact distances): the first build into PostgreSQL 22.5 s at 0.983,
/// against 30.1 s at 0.986 with pgvector's defaults; 12 and 40 (the embedded graph's)
/// took 21.3 s at 0.974, 16 and 40 28.2 s at 0.963. An index made before keeps its
/// parameters: rebuilt at once (`CREATE INDEX` on the table's vectors) the graph came
/// out worse than grown by insertions (0.966 against 0.983), so no migration rebuilds it.
const HNSW_GRAPH: &str = "WITH (m = 12, ef_construction = 64)";

/// pgvector's HNSW index takes `halfvec`s of at most this many dimensions.
const HNSW_MAX_DIMENSIONS: usize = 4000;

impl PgStore {
    /// Creates or upgrades the schema (writers only). Concurrent writers serialise on an
    /// advisory lock, so each migration runs once.
    pub fn migrate(&self) -> Result<()> {
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        block(async move {
            let mut client = pool.get().await.map_err(|e| db_error(&at, e))?;
            // Most runs find the schema current and theirs to write: one round trip, no
            // lock (a migration still happens once, under the lock, below; a role that
            // may not write is told so there, before any work).
            if writable_schema_version(&client).await == Some(PG_SCHEMA_VERSION) {
                return Ok(());
            }
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
        self.read_with(|db| async move {
            let at = &db.at;
            let row = db
                .query_one("SELECT to_regclass('ragls_schema') IS NOT NULL", &[])
                .await?;
            let exists: bool = row.get(0);
            if !exists {
                return Err(Error::Usage(format!(
                    "the shared index at {at} has no ragls index yet; build one with `ragls index --store URL` (a writer role)"
                )));
            }
            // A reader whose role was not granted SELECT (step 1 of "For teams") is told
            // what to grant, not that it may only read.
            let row = db
                .query_one(
                    "SELECT current_user::text, coalesce(bool_and(has_table_privilege(to_regclass(t), 'SELECT')), true)
                     FROM unnest($1::text[]) AS t",
                    &[&READ_TABLES],
                )
                .await?;
            let (role, readable): (String, bool) = (row.get(0), row.get(1));
            if !readable {
                return Err(Error::Usage(format!(
                    "the role {role} may not read the shared index at {at}: have its owner run `GRANT USAGE ON SCHEMA public TO {role}; GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};` (and `ALTER DEFAULT PRIVILEGES FOR ROLE <writer> GRANT SELECT ON TABLES TO {role};` for tables to come)"
                )));
            }
            let v: Option<i32> = db
                .query_one("SELECT max(version) FROM ragls_schema", &[])
                .await?
                .get(0);
            match v.unwrap_or(0) {
                PG_SCHEMA_VERSION => Ok(()),
                v if v > PG_SCHEMA_VERSION => Err(newer_schema(at, v)),
                v => Err(Error::Usage(format!(
                    "the shared index at {at} has schema version {v}, older than this ragls ({PG_SCHEMA_VERSION}); run `ragls index --store URL` with a writer role to migrate it"
                ))),
            }
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
            // Most runs find the index there: one look, without the lock, and without
            // `CREATE INDEX IF NOT EXISTS`, whose table lock waits for every writer
            // storing vectors at the time.
            let name = vector_index_name(dimensions);
            let exists = client
                .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&name])
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            if exists {
                return Ok(());
            }
            // One implicit transaction (a batch of statements is one): the lock is the
            // transaction's, held until the index is committed, so a second writer's
            // `IF NOT EXISTS` sees it (a session lock let go before the commit did not).
            client
                .batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock(7261537);
                     CREATE INDEX IF NOT EXISTS {name} ON embeddings
                     USING hnsw ((vector::halfvec({dimensions})) halfvec_cosine_ops) {HNSW_GRAPH} WHERE dimensions = {dimensions};"
                ))
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(())
        })
    }
}

/// The HNSW index of the vectors of `dimensions` (each dimension in use has its own), in
/// half precision (schema 6; `embeddings_hnsw_{dimensions}` before).
pub(super) fn vector_index_name(dimensions: usize) -> String {
    format!("embeddings_hnsw_half_{dimensions}")
}

/// The schema version the database records and whether this role may write a ref (one
/// row: the version is NULL when none is recorded yet).
pub(super) const WRITABLE_SCHEMA: &str =
    "SELECT max(version), bool_and(has_table_privilege(t, 'INSERT'))
     FROM ragls_schema, unnest(ARRAY['snapshots', 'snapshot_files', 'blobs', 'chunks', 'postings', 'embeddings', 'refs', 'pending_versions', 'version_sources']) AS t";

/// Whether a [`WRITABLE_SCHEMA`] row says the schema is this ragls's and the role may
/// write it: a writer then goes on without [`PgStore::migrate`].
pub(super) fn schema_is_current_and_writable(version: Option<i32>, writable: Option<bool>) -> bool {
    version == Some(PG_SCHEMA_VERSION) && writable == Some(true)
}

/// The schema version the database records, read without a lock, when this role may
/// write a ref; `None` when there is none yet, the role may not write, or the read
/// failed (the caller then takes the locked path, which says why).
async fn writable_schema_version(client: &deadpool_postgres::Client) -> Option<i32> {
    let rows = client.simple_query(WRITABLE_SCHEMA).await.ok()?;
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(1) == Some("t") => {
            r.get(0).and_then(|v| v.parse().ok())
        }
        _ => None,
    })
}

fn newer_schema(at: &str, version: i32) -> Error {
    Error::Usage(format!(
        "the shared index at {at} has schema version {version}, newer than this ragls reads ({PG_SCHEMA_VERSION}); upgrade ragls"
    ))
}
