//! File versions and vectors, written ahead of a ref's transaction: which versions
//! the database has already, new versions with their chunks and postings (grouped per
//! term and version), the embedding cache's lookups and inserts, and the [`Pending`]
//! handle their writes run behind. Content-addressed and immutable, they are unseen
//! until a snapshot lists them (`refs`), so a writer that dies leaves nothing
//! half-visible, and the next run reuses what it wrote.
//!
//! They are committed with `synchronous_commit` off, each statement setting it for its
//! own transaction: the ref's transaction, which commits after them and waits for the
//! disk, flushes the write-ahead log up to its own commit and so theirs with it. A
//! server that crashes before then loses only rows that no snapshot lists yet (the
//! next run writes them again), and an update no longer waits for a flush per
//! connection (6-7 ms of a 1% update of the performance corpus on a server that syncs
//! its disk).

use super::*;
use std::collections::HashSet;

impl PgStore {
    /// The ids of file versions the database has already, by (path, content hash), and
    /// fresh ids for the others, in one round trip; and the texts of those versions'
    /// chunks that have no vector of embedder `id` (see [`KnownVersions::unembedded`]).
    ///
    /// With them, what the versions `bases` have (those of the changed paths in the
    /// update's base): their chunks' keys and the versions they share postings with, for
    /// [`NewFileVersion::share_with`].
    pub fn known_versions(
        &self,
        keys: &[(String, [u8; 32])],
        bases: &[i64],
        id: &Identity,
        via: Option<Via>,
    ) -> Result<KnownVersions> {
        if keys.is_empty() {
            return Ok(KnownVersions::default());
        }
        let bases = bases.to_vec();
        let paths: Vec<String> = keys.iter().map(|(p, _)| p.clone()).collect();
        let hashes: Vec<Vec<u8>> = keys.iter().map(|(_, h)| h.to_vec()).collect();
        let wanted = keys.len() as i64;
        let (embedder, dimensions) = (id.embedder.clone(), id.dimensions as i32);
        self.write_via(via, move |db| async move {
            let (by_key, count): (&[&(dyn tokio_postgres::types::ToSql + Sync)], _) =
                (&[&paths, &hashes], [&wanted as &(dyn tokio_postgres::types::ToSql + Sync)]);
            let by_identity: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&paths, &hashes, &embedder, &dimensions];
            let base_ids: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&bases];
            let (known, fresh, unembedded, base_chunks, base_sources) = tokio::join!(
                db.query(
                    "SELECT b.path, b.content_hash, b.id, b.skip_reason IS NOT NULL FROM blobs b
                     JOIN unnest($1::text[], $2::bytea[]) AS k(path, hash) ON b.path = k.path AND b.content_hash = k.hash",
                    by_key,
                ),
                db.query_one(
                    "SELECT array_agg(nextval('blobs_id_seq')) FROM generate_series(1, $1::bigint)",
                    &count,
                ),
                db.query(UNEMBEDDED_CHUNKS, &by_identity),
                db.query(
                    "SELECT blob_id, text_hash, name, terms FROM chunks
                     WHERE blob_id = ANY($1::bigint[]) ORDER BY blob_id, ord",
                    &base_ids,
                ),
                db.query(
                    "SELECT blob_id, src, upto FROM version_sources WHERE blob_id = ANY($1::bigint[])",
                    &base_ids,
                ),
            );
            let mut bases: HashMap<i64, BaseVersion> = HashMap::new();
            for r in base_chunks? {
                bases.entry(r.get(0)).or_default().chunks.push((
                    hash16(r.get::<_, &[u8]>(1)),
                    r.get(2),
                    r.get(3),
                ));
            }
            for r in base_sources? {
                if let Some(base) = bases.get_mut(&r.get::<_, i64>(0)) {
                    base.sources.push((r.get(1), r.get(2)));
                }
            }
            let unembedded = unembedded?
                .into_iter()
                .map(|r| {
                    let text = crate::chunk::embedding_text(r.get(1), r.get(2), r.get(3));
                    (hash16(r.get::<_, &[u8]>(0)), text)
                })
                .collect();
            let known = known?;
            let skipped = known
                .iter()
                .filter(|r| r.get::<_, bool>(3))
                .map(|r| r.get::<_, i64>(2))
                .collect();
            let known = known
                .into_iter()
                .map(|r| {
                    (
                        (r.get::<_, String>(0), hash32(r.get::<_, &[u8]>(1))),
                        r.get(2),
                    )
                })
                .collect();
            let fresh_ids: Vec<i64> = fresh?.get(0);
            if fresh_ids.len() != wanted as usize {
                return Err(Error::Store(format!(
                    "shared index at {}: asked for {wanted} file version ids, got {}",
                    db.at,
                    fresh_ids.len()
                )));
            }
            Ok(KnownVersions {
                known,
                skipped,
                fresh_ids,
                unembedded,
                bases,
            })
        })
    }

    /// Writes new file versions with their chunks and postings, `fresh_ids[i]` the id
    /// of `versions[i]`. In statements of their own, not in a ref's transaction: a
    /// version is immutable and unseen until a snapshot lists it, so it is written while
    /// the update embeds, and one written by a run that dies is reused by the next (the
    /// clean-up removes versions no snapshot took within the hour). Starts at once and
    /// returns; [`Pending::wait`] gives the outcome.
    pub fn write_versions(
        &self,
        versions: Vec<NewFileVersion>,
        fresh_ids: &[i64],
        opened: Option<OpenedWriter>,
    ) -> Result<Pending<WrittenVersions>> {
        if versions.len() > fresh_ids.len() {
            return Err(Error::Store(format!(
                "{} new file versions for {} ids",
                versions.len(),
                fresh_ids.len()
            )));
        }
        if versions.is_empty() {
            return Ok(Pending(None));
        }
        if let Some(v) = versions
            .iter()
            .find(|v| v.chunks.len() >= 1 << CHUNK_ORD_BITS)
        {
            return Err(Error::Usage(format!(
                "{} has {} chunks, more than the shared index takes in a file; leave it out with `index.exclude`",
                v.path,
                v.chunks.len()
            )));
        }
        let fresh_ids = fresh_ids[..versions.len()].to_vec();
        let chunks: usize = versions.iter().map(|v| v.chunks.len()).sum();
        let lanes = if chunks < ONE_WRITER_BELOW_CHUNKS {
            1
        } else {
            VERSION_WRITERS
        };
        let (pool, at) = (self.primary.clone(), self.primary_at.clone());
        let task = runtime()?.spawn(async move {
            // The rows are built off the caller's thread: it goes on to embed.
            let lanes = tokio::task::spawn_blocking(move || {
                writer_lanes(versions, &fresh_ids, lanes)
                    .into_iter()
                    .map(|(versions, ids)| version_batches(versions, &ids, VERSIONS_BATCH_CHUNKS))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| Error::Other(format!("building file version rows stopped: {e}")))?;
            let mut opened = opened;
            let lanes = lanes.into_iter().filter(|l| !l.is_empty()).map(|lane| {
                let (pool, at) = (pool.clone(), at.clone());
                let opened = opened.take();
                async move {
                    let client = match opened {
                        Some(opened) => opened.connection(&pool, &at).await?,
                        None => pool.get().await.map_err(|e| db_error(&at, e))?,
                    };
                    let statement = client
                        .prepare_cached(INSERT_VERSIONS)
                        .await
                        .map_err(|e| db_error(&at, e))?;
                    let mut written = WrittenVersions::default();
                    for batch in lane {
                        insert_versions(&client, &statement, batch, &mut written)
                            .await
                            .map_err(|e| db_error(&at, e))?;
                    }
                    Ok::<_, Error>(written)
                }
            });
            let mut written = WrittenVersions::default();
            for lane in futures_util::future::join_all(lanes).await {
                let lane = lane?;
                written.files.extend(lane.files);
                written.chunks_added += lane.chunks_added;
                written.file_versions_added += lane.file_versions_added;
            }
            Ok(written)
        });
        Ok(Pending(Some(task)))
    }

    /// Starts asking which of these texts the embedding cache has a vector for (of
    /// this embedder), and returns at once: the update goes on meanwhile.
    pub fn cached_texts(
        &self,
        id: &Identity,
        hashes: &[TextHash],
        via: Option<Via>,
    ) -> Result<Pending<HashSet<TextHash>>> {
        if hashes.is_empty() {
            return Ok(Pending(None));
        }
        let via = via.unwrap_or_else(|| Via::Pool(self.primary.clone()));
        let (at, id) = (self.primary_at.clone(), id.clone());
        let keys: Vec<Vec<u8>> = hashes.iter().map(|h| h.0.to_vec()).collect();
        Ok(Pending(Some(runtime()?.spawn(async move {
            let db = Db::via(via, at).await?;
            let rows = db
                .query(
                    "SELECT text_hash FROM embeddings
                     WHERE embedder = $1 AND dimensions = $2 AND text_hash = ANY($3::bytea[])",
                    &[&id.embedder, &(id.dimensions as i32), &keys],
                )
                .await?;
            Ok(rows
                .into_iter()
                .map(|r| hash16(r.get::<_, &[u8]>(0)))
                .collect())
        }))))
    }

    /// Starts opening a connection for [`PgStore::write_versions`], its statement
    /// prepared, while the update's files are still being chunked: a pooled connection
    /// is opened when the versions are sent otherwise (a new one: 1.2 ms on the
    /// performance corpus, authentication included, on the way to the update's commit).
    pub fn open_writer(&self) -> Result<OpenedWriter> {
        let (pool, at) = (self.primary.clone(), self.primary_at.clone());
        Ok(OpenedWriter(runtime()?.spawn(async move {
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            client
                .prepare_cached(INSERT_VERSIONS)
                .await
                .map_err(|e| db_error(&at, e))?;
            Ok(client)
        })))
    }

    /// Starts adding vectors to the shared embedding cache, in a transaction of their
    /// own: the cache is valid whatever becomes of the ref update that computed them,
    /// so a writer killed later does not pay for them again. Returns at once.
    pub fn put_vectors(
        &self,
        id: &Identity,
        items: Vec<(TextHash, Vec<f32>)>,
        via: Option<Via>,
    ) -> Result<Pending<()>> {
        if items.is_empty() {
            return Ok(Pending(None));
        }
        Ok(Pending(Some(runtime()?.spawn(store_vectors(
            via.unwrap_or_else(|| Via::Pool(self.primary.clone())),
            self.primary_at.clone(),
            id.clone(),
            items,
        )))))
    }
}

/// A connection being opened for a writer ([`PgStore::open_writer`]). Dropped unused, it
/// goes back to the pool once open.
pub struct OpenedWriter(tokio::task::JoinHandle<Result<deadpool_postgres::Object>>);

impl OpenedWriter {
    /// The connection; should opening it have failed, one of the pool's.
    async fn connection(self, pool: &Pool, at: &str) -> Result<deadpool_postgres::Object> {
        match self.0.await {
            Ok(Ok(client)) => Ok(client),
            _ => pool.get().await.map_err(|e| db_error(at, e)),
        }
    }
}

/// Work running on the database's runtime: rows being written
/// ([`PgStore::write_versions`], [`PgStore::put_vectors`]) or a lookup
/// ([`PgStore::cached_texts`]).
pub struct Pending<T>(Option<tokio::task::JoinHandle<Result<T>>>);

impl<T: Default + Send + 'static> Pending<T> {
    /// Nothing to write.
    pub fn nothing() -> Pending<T> {
        Pending(None)
    }

    /// Waits until the work is done.
    pub fn wait(self) -> Result<T> {
        block(self.finish())
    }

    pub(super) async fn finish(self) -> Result<T> {
        match self.0 {
            None => Ok(T::default()),
            Some(task) => task.await.map_err(|e| {
                Error::Other(format!(
                    "a write to the shared index stopped unexpectedly: {e}"
                ))
            })?,
        }
    }
}

impl Pending<()> {
    /// Writes running side by side, as one: done when all are, the first error (in
    /// the order given) its outcome. Each is waited for, failed or not: nothing is
    /// left writing once it is done.
    pub fn all(pending: Vec<Pending<()>>) -> Result<Pending<()>> {
        if pending.len() <= 1 {
            return Ok(pending.into_iter().next().unwrap_or(Pending(None)));
        }
        Ok(Pending(Some(runtime()?.spawn(async move {
            let mut outcome = Ok(());
            for p in pending {
                if let Err(e) = p.finish().await {
                    outcome = outcome.and(Err(e));
                }
            }
            outcome
        }))))
    }
}

/// Adds vectors to the shared embedding cache in a transaction of their own, committed
/// without waiting for the disk (see the module's docs).
async fn store_vectors(
    via: Via,
    at: String,
    id: Identity,
    mut items: Vec<(TextHash, Vec<f32>)>,
) -> Result<()> {
    // In key order: two transactions adding some of the same texts (two writers' at
    // once) then wait for each other's keys in one order, never in a cycle (a deadlock,
    // which the server ends by failing one of them).
    items.sort_unstable_by(|a, b| a.0 .0.cmp(&b.0 .0));
    let hashes: Vec<Vec<u8>> = items.iter().map(|(h, _)| h.0.to_vec()).collect();
    // The local index keeps vectors at half precision; the shared one alike, so both
    // rank the same neighbours.
    let vectors: Vec<pgvector::Vector> = items
        .into_iter()
        .map(|(_, mut v)| {
            crate::store::stored_precision(&mut v);
            pgvector::Vector::from(v)
        })
        .collect();
    let db = Db::via(via, at).await?;
    db.query(
        "WITH added AS (
           INSERT INTO embeddings(embedder, dimensions, text_hash, vector)
           SELECT $1, $2, h, v FROM unnest($3::bytea[], $4::vector[]) AS u(h, v)
           ON CONFLICT DO NOTHING)
         SELECT set_config('synchronous_commit', 'off', true)",
        &[&id.embedder, &(id.dimensions as i32), &hashes, &vectors],
    )
    .await?;
    Ok(())
}

/// The chunks of the file versions `($1[i], $2[i])` (path, content hash) whose texts have
/// no vector of embedder `$3` at `$4` dimensions: their text hash, path, symbol and text.
/// A version is written ahead of its vectors (see [`PgStore::write_versions`]), so one
/// written by an update that failed or was killed while embedding lacks some.
const UNEMBEDDED_CHUNKS: &str = "SELECT c.text_hash, b.path, c.symbol, c.text FROM blobs b
     JOIN unnest($1::text[], $2::bytea[]) AS k(path, hash) ON b.path = k.path AND b.content_hash = k.hash
     JOIN chunks c ON c.blob_id = b.id
     WHERE NOT EXISTS (SELECT 1 FROM embeddings e
                       WHERE e.embedder = $3 AND e.dimensions = $4 AND e.text_hash = c.text_hash)";

/// New file versions are written this many chunks at a time (with their postings, some
/// fifty rows a chunk): few statements, each of a size the server takes in its stride.
const VERSIONS_BATCH_CHUNKS: usize = 2000;

/// Connections that write new file versions at once.
const VERSION_WRITERS: usize = 2;

/// Fewer new chunks than this are written on one connection: a second one costs a
/// server process and an authentication, more than it saves on a small update's rows.
const ONE_WRITER_BELOW_CHUNKS: usize = 500;

/// Shares new file versions (with their ids) among `lanes` connections, so that each
/// writes about as many rows: the largest first, each to the lane with the fewest rows
/// so far. A version's rows are its chunks and its (term, chunk) postings (the grouped
/// rows follow them). Written side by side, the update waits for the slowest lane: split
/// by chunks in file order, a 1% update's two lanes wrote 500 and 342 postings rows
/// (9.4 and 7.7 ms); shared by rows, the rest of the update after chunking took some
/// 0.8 ms less (four A/B pairs of 60 rounds on the performance corpus).
fn writer_lanes(
    versions: Vec<NewFileVersion>,
    ids: &[i64],
    lanes: usize,
) -> Vec<(Vec<NewFileVersion>, Vec<i64>)> {
    let mut order: Vec<(usize, NewFileVersion, i64)> = versions
        .into_iter()
        .zip(ids.iter().copied())
        .map(|(v, id)| (v.rows(), v, id))
        .collect();
    order.sort_by(|a, b| b.0.cmp(&a.0));
    let mut out: Vec<(usize, Vec<NewFileVersion>, Vec<i64>)> = (0..lanes.max(1))
        .map(|_| (0, Vec::new(), Vec::new()))
        .collect();
    for (n, v, id) in order {
        if let Some(lane) = out.iter_mut().min_by_key(|l| l.0) {
            lane.0 += n;
            lane.1.push(v);
            lane.2.push(id);
        }
    }
    out.into_iter()
        .filter(|l| !l.1.is_empty())
        .map(|(_, v, ids)| (v, ids))
        .collect()
}

/// A chunk's id, made from its file version's id and its place in the file: no round
/// trip to take ids from a sequence. Ids taken from the `chunks` sequence (before schema
/// version 3) stay below them: a version has fewer than 2^24 chunks, so the sequence
/// never passed 2^24 times the largest version id then, and new version ids are larger.
pub(super) fn chunk_id(blob_id: i64, ord: usize) -> i64 {
    (blob_id << CHUNK_ORD_BITS) | ord as i64
}

pub(super) const CHUNK_ORD_BITS: u32 = 24;

/// New file versions' rows, column by column as their statements take them.
#[derive(Default)]
struct VersionBatch {
    blob_id: Vec<i64>,
    path: Vec<String>,
    content_hash: Vec<Vec<u8>>,
    skip_reason: Vec<Option<String>>,
    chunk_counts: Vec<usize>,
    chunks: ChunkColumns,
    postings: PostingColumns,
    sources: SourceColumns,
}

/// The versions new ones share postings with (`version_sources`, schema 12).
#[derive(Default)]
struct SourceColumns {
    blob_id: Vec<i64>,
    src: Vec<i64>,
    upto: Vec<i32>,
}

#[derive(Default)]
struct ChunkColumns {
    id: Vec<i64>,
    blob_id: Vec<i64>,
    ord: Vec<i32>,
    language: Vec<String>,
    kind: Vec<String>,
    symbol: Vec<String>,
    name: Vec<String>,
    start_byte: Vec<i64>,
    end_byte: Vec<i64>,
    start_line: Vec<i32>,
    end_line: Vec<i32>,
    text: Vec<String>,
    text_hash: Vec<Vec<u8>>,
    terms: Vec<i32>,
}

/// A batch's postings. Gathered one per (term, chunk), then grouped per (term, file
/// version) for their rows ([`PostingColumns::grouped`]).
#[derive(Default)]
struct PostingColumns {
    term: Vec<String>,
    chunk_id: Vec<i64>,
    /// The postings, packed as the table keeps them ([`posting`]).
    packed: Vec<i64>,
    /// One per row, in term order: the row's term and file version, and where its
    /// chunks' postings lie in the columns above (1-based, inclusive, as SQL slices).
    groups: PostingGroups,
}

/// A posting in one number, as `postings.packed` keeps it: the chunk's place in its file
/// version (its id is made from the two: [`chunk_id`]) << 40 | the term's occurrences in
/// its head << 32 | in its body << 16 | the chunk's length in terms. One array element a
/// (term, chunk), not two: the server sends an array element by element, and a
/// question's postings are thousands of them. The counts are held at their fields'
/// largest (255 in a head, 65,535 in a body or a length: a chunk of the default 2,000
/// bytes has some 400 terms).
pub(super) fn posting(ord: i64, head: u32, body: u32, length: i32) -> i64 {
    let head = head.min(POSTING_HEAD_MAX) as i64;
    let body = body.min(POSTING_COUNT_MAX) as i64;
    let length = length.clamp(0, POSTING_COUNT_MAX as i32) as i64;
    (ord & ((1 << CHUNK_ORD_BITS) - 1)) << 40 | head << 32 | body << 16 | length
}

/// The largest head count a posting holds ([`posting`]).
const POSTING_HEAD_MAX: u32 = 255;
/// The largest body count and length a posting holds ([`posting`]).
const POSTING_COUNT_MAX: u32 = 65_535;

/// A posting's fields ([`posting`]): the chunk's place in its version, the term's head
/// and body counts, the chunk's length.
pub(super) fn posting_fields(p: i64) -> (i64, u32, u32, u32) {
    (
        (p >> 40) & ((1 << CHUNK_ORD_BITS) - 1),
        ((p >> 32) & 255) as u32,
        ((p >> 16) & 65_535) as u32,
        (p & 65_535) as u32,
    )
}

/// A whole file list's postings of a term as `snapshot_postings` keeps them
/// ([`list_postings_of`]), a group per file version in the order of their ids: the
/// version's id (8 bytes), its count of postings (4), then each posting ([`posting`], 8),
/// all big-endian. Yields (version, posting); a torn group yields what it holds whole.
pub(super) fn list_postings(bytes: &[u8]) -> impl Iterator<Item = (i64, i64)> + '_ {
    let number = |b: &[u8]| b.try_into().map(i64::from_be_bytes).unwrap_or_default();
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let (head, after) = rest.split_at_checked(12)?;
        let version = number(&head[..8]);
        let count = u32::from_be_bytes(head[8..].try_into().ok()?) as usize;
        // A torn group ends the value: it takes the rest, whole postings only.
        let (postings, next) = after.split_at(count.saturating_mul(8).min(after.len()));
        rest = next;
        Some(postings.chunks_exact(8).map(move |p| (version, number(p))))
    })
    .flatten()
}

#[derive(Default)]
struct PostingGroups {
    term: Vec<String>,
    blob_id: Vec<i64>,
    first: Vec<i32>,
    last: Vec<i32>,
}

/// Splits new file versions into batches of about `per_batch` chunks and
/// builds their columns with the ids given.
fn version_batches(
    versions: Vec<NewFileVersion>,
    blob_ids: &[i64],
    per_batch: usize,
) -> Vec<VersionBatch> {
    use rayon::prelude::*;
    let mut batches = Vec::new();
    let mut batch = VersionBatch::default();
    for (v, &blob_id) in versions.into_iter().zip(blob_ids) {
        let shared = v.shared();
        for (i, (chunk, p)) in v.chunks.iter().zip(v.postings).enumerate() {
            let ord = i + 1;
            let id = chunk_id(blob_id, ord);
            let c = &mut batch.chunks;
            c.id.push(id);
            c.blob_id.push(blob_id);
            c.ord.push(ord as i32);
            c.language.push(chunk.language.as_str().to_string());
            c.kind.push(chunk.kind.as_str().to_string());
            c.symbol.push(pg_text(&chunk.symbol));
            c.name.push(pg_text(&chunk.name));
            c.start_byte.push(chunk.start_byte as i64);
            c.end_byte.push(chunk.end_byte as i64);
            c.start_line.push(chunk.start_line as i32);
            c.end_line.push(chunk.end_line as i32);
            c.text.push(pg_text(&chunk.text));
            c.text_hash.push(chunk.text_hash.0.to_vec());
            c.terms.push(p.terms);
            if i < shared {
                continue;
            }
            let q = &mut batch.postings;
            for (term, (head, body)) in p.counts {
                q.term.push(term);
                q.chunk_id.push(id);
                q.packed.push(posting(ord as i64, head, body, p.terms));
            }
        }
        for (src, upto) in v.sources {
            batch.sources.blob_id.push(blob_id);
            batch.sources.src.push(src);
            batch.sources.upto.push(upto);
        }
        batch.blob_id.push(blob_id);
        batch.chunk_counts.push(v.chunks.len());
        batch.path.push(v.path);
        batch.content_hash.push(v.content_hash.to_vec());
        batch.skip_reason.push(v.skip_reason);
        if batch.chunks.id.len() >= per_batch {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.blob_id.is_empty() {
        batches.push(batch);
    }
    batches.par_iter_mut().for_each(|b| b.postings.grouped());
    batches
}

impl PostingColumns {
    /// Sorts the postings by term, then chunk (a chunk's id leads with its version's),
    /// and marks off the runs of one term in one version, each a row: in term order, so
    /// the term index takes each leaf page once per batch rather than once per version.
    fn grouped(&mut self) {
        let mut order: Vec<usize> = (0..self.term.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            (&self.term[a], self.chunk_id[a]).cmp(&(&self.term[b], self.chunk_id[b]))
        });
        let mut term = std::mem::take(&mut self.term);
        self.term = order
            .iter()
            .map(|&i| std::mem::take(&mut term[i]))
            .collect();
        self.chunk_id = order.iter().map(|&i| self.chunk_id[i]).collect();
        self.packed = order.iter().map(|&i| self.packed[i]).collect();
        let g = &mut self.groups;
        let blob_of = |i: usize| self.chunk_id[i] >> CHUNK_ORD_BITS;
        for i in 0..self.term.len() {
            let same = i > 0 && blob_of(i) == blob_of(i - 1) && self.term[i] == self.term[i - 1];
            if same {
                if let Some(last) = g.last.last_mut() {
                    *last += 1;
                }
            } else {
                g.term.push(self.term[i].clone());
                g.blob_id.push(blob_of(i));
                g.first.push(i as i32 + 1);
                g.last.push(i as i32 + 1);
            }
        }
    }
}

/// Writes a batch of new file versions with their chunks and postings: one statement
/// (one transaction), so a version is there whole or not at all. A version another
/// writer added first keeps the chunks it has: the rows of this one are dropped.
/// Committed without waiting for the disk (see the module's docs).
const INSERT_VERSIONS: &str = "WITH v AS (
       INSERT INTO blobs(id, path, content_hash, skip_reason)
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::text[])
       ON CONFLICT (path, content_hash) DO UPDATE SET path = excluded.path
       RETURNING path, id, (xmax = 0) AS added),
     added AS (SELECT id FROM v WHERE added),
     pending AS (INSERT INTO pending_versions(blob_id) SELECT id FROM added),
     c AS (
       INSERT INTO chunks(id, blob_id, ord, language, kind, symbol, name, start_byte, end_byte,
          start_line, end_line, text, text_hash, terms)
       SELECT u.* FROM unnest($5::bigint[], $6::bigint[], $7::integer[], $8::text[], $9::text[],
          $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::integer[], $15::integer[],
          $16::text[], $17::bytea[], $18::integer[])
          AS u(id, blob_id, ord, language, kind, symbol, name, start_byte, end_byte,
               start_line, end_line, text, text_hash, terms)
       WHERE u.blob_id IN (SELECT id FROM added)),
     p AS (
       INSERT INTO postings(term, blob_id, packed)
       SELECT g.term, g.blob_id, ($23::bigint[])[g.first:g.last]
       FROM unnest($19::text[], $20::bigint[], $21::integer[], $22::integer[]) AS g(term, blob_id, first, last)
       WHERE g.blob_id IN (SELECT id FROM added)),
     s AS (
       INSERT INTO version_sources(blob_id, src, upto)
       SELECT * FROM unnest($24::bigint[], $25::bigint[], $26::integer[]) AS u(blob_id, src, upto)
       WHERE u.blob_id IN (SELECT id FROM added))
     SELECT path, id, added, set_config('synchronous_commit', 'off', true) FROM v";

/// Writes a batch of file versions ([`INSERT_VERSIONS`]) and adds what it wrote to
/// `written`.
async fn insert_versions(
    client: &deadpool_postgres::Client,
    statement: &tokio_postgres::Statement,
    batch: VersionBatch,
    written: &mut WrittenVersions,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (c, p) = (&batch.chunks, &batch.postings);
    let rows = client
        .query(
            statement,
            &[
                &batch.blob_id,
                &batch.path,
                &batch.content_hash,
                &batch.skip_reason,
                &c.id,
                &c.blob_id,
                &c.ord,
                &c.language,
                &c.kind,
                &c.symbol,
                &c.name,
                &c.start_byte,
                &c.end_byte,
                &c.start_line,
                &c.end_line,
                &c.text,
                &c.text_hash,
                &c.terms,
                &p.groups.term,
                &p.groups.blob_id,
                &p.groups.first,
                &p.groups.last,
                &p.packed,
                &batch.sources.blob_id,
                &batch.sources.src,
                &batch.sources.upto,
            ],
        )
        .await?;
    let mut added = HashSet::new();
    for r in rows {
        let id: i64 = r.get(1);
        if r.get::<_, bool>(2) {
            added.insert(id);
        }
        written.files.push((r.get::<_, String>(0), id));
    }
    for (id, n) in batch.blob_id.iter().zip(&batch.chunk_counts) {
        if added.contains(id) && *n > 0 {
            written.chunks_added += *n as u64;
            written.file_versions_added += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_are_grouped_into_one_row_per_term_and_file_version_in_term_order() {
        let (a, b) = (chunk_id(7, 1), chunk_id(7, 2));
        let c = chunk_id(9, 1);
        let mut p = PostingColumns::default();
        for (term, chunk, packed) in [
            ("parse", b, 2),
            ("token", a, 3),
            ("parse", c, 4),
            ("parse", a, 1),
        ] {
            p.term.push(term.to_string());
            p.chunk_id.push(chunk);
            p.packed.push(packed);
        }
        p.grouped();
        let g = &p.groups;
        assert_eq!(g.term, ["parse", "parse", "token"]);
        assert_eq!(g.blob_id, [7, 9, 7]);
        // Slices of the sorted columns, 1-based and inclusive as SQL takes them.
        assert_eq!(
            (g.first.clone(), g.last.clone()),
            (vec![1, 3, 4], vec![2, 3, 4])
        );
        assert_eq!(p.chunk_id, [a, b, c, a]);
        assert_eq!(p.packed, [1, 2, 4, 3]);
    }

    fn version_of(path: &str, chunks: usize, terms_per_chunk: usize) -> NewFileVersion {
        let chunks = (0..chunks)
            .map(|i| {
                let words: Vec<String> = (0..terms_per_chunk).map(|t| format!("w{t}")).collect();
                NewChunk {
                    chunk: crate::chunk::Chunk::test_function("x"),
                    text_hash: crate::store::text_hash(&format!("{path}{i}")),
                    head_terms: String::new(),
                    body_terms: words.join(" "),
                }
            })
            .collect();
        NewFileVersion::new(path.to_string(), [0; 32], None, chunks)
    }

    #[test]
    fn new_versions_are_shared_among_the_writers_so_each_writes_about_as_many_rows() {
        // In file order by chunks, the large file and one small one would share a lane.
        let versions = vec![
            version_of("a.rs", 2, 50),
            version_of("big.rs", 10, 60),
            version_of("c.rs", 3, 40),
            version_of("d.rs", 4, 50),
            version_of("e.rs", 3, 60),
        ];
        let lanes = writer_lanes(versions, &[1, 2, 3, 4, 5], 2);
        let rows = |l: &(Vec<NewFileVersion>, Vec<i64>)| -> usize {
            l.0.iter().map(NewFileVersion::rows).sum()
        };
        assert_eq!(lanes.len(), 2);
        // 610 rows for big.rs against 612 for the four others together.
        assert_eq!((rows(&lanes[0]), rows(&lanes[1])), (610, 612));
        assert_eq!(lanes[0].1, [2]);
        // Each version keeps its own id, whichever lane it goes to.
        for (versions, ids) in &lanes {
            for (v, id) in versions.iter().zip(ids) {
                let expected = ["a.rs", "big.rs", "c.rs", "d.rs", "e.rs"]
                    .iter()
                    .position(|p| *p == v.path)
                    .unwrap() as i64
                    + 1;
                assert_eq!(*id, expected);
            }
        }
        // Fewer versions than writers: no empty lane.
        assert_eq!(
            writer_lanes(vec![version_of("a.rs", 1, 1)], &[9], 2).len(),
            1
        );
    }

    /// What a version's chunks give [`NewFileVersion::share_with`] as a base.
    fn as_base(v: &NewFileVersion, sources: Vec<(i64, i32)>) -> BaseVersion {
        BaseVersion {
            chunks: v
                .chunks
                .iter()
                .zip(&v.postings)
                .map(|(c, p)| (c.text_hash, pg_text(&c.name), p.terms))
                .collect(),
            sources,
        }
    }

    #[test]
    fn a_new_version_shares_the_postings_of_the_chunks_it_starts_with_unchanged() {
        let old = version_of("a.rs", 4, 3);
        // The same four chunks, a fifth added: the four are shared, with the versions
        // the old one shared with (each up to the places they are still the same).
        let mut grown = version_of("a.rs", 5, 3);
        grown.share_with(11, &as_base(&old, vec![(7, 2), (9, 3)]));
        assert_eq!(
            (grown.shared(), grown.sources.clone()),
            (4, vec![(7, 2), (9, 3), (11, 4)])
        );
        // Its rows: its five chunks, and the postings of the fifth alone (three terms).
        assert_eq!(grown.rows(), 5 + 3);
        let batches = version_batches(vec![grown], &[12], 100);
        let b = &batches[0];
        assert_eq!(b.chunks.id.len(), 5);
        assert_eq!(b.postings.packed.len(), 3);
        assert!(b.postings.packed.iter().all(|&p| posting_fields(p).0 == 5));
        assert_eq!(
            (
                b.sources.blob_id.clone(),
                b.sources.src.clone(),
                b.sources.upto.clone()
            ),
            (vec![12, 12, 12], vec![7, 9, 11], vec![2, 3, 4])
        );

        // Changed at its second chunk: only the first is shared, and of the old one's
        // sources only what reaches it.
        let mut changed = version_of("a.rs", 4, 3);
        changed.chunks[1].text_hash = crate::store::text_hash("another text");
        changed.share_with(11, &as_base(&old, vec![(7, 2), (9, 3)]));
        assert_eq!(
            (changed.shared(), changed.sources.clone()),
            (1, vec![(7, 1), (9, 1), (11, 1)])
        );

        // A renamed first chunk (its head terms differ): nothing shared.
        let mut renamed = version_of("a.rs", 4, 3);
        renamed.chunks[0].chunk.name = "renamed".into();
        renamed.share_with(11, &as_base(&old, Vec::new()));
        assert_eq!((renamed.shared(), renamed.sources.len()), (0, 0));

        // A chain as long as it goes: the version is written whole, sharing nothing.
        let mut long = version_of("a.rs", 5, 3);
        let chain: Vec<(i64, i32)> = (1..=MOST_SOURCES as i64).map(|s| (s, 1)).collect();
        long.share_with(11, &as_base(&old, chain));
        assert_eq!((long.shared(), long.sources.len()), (0, 0));
        assert_eq!(long.rows(), 5 + 5 * 3);
    }

    #[test]
    fn a_posting_packs_its_chunks_place_and_counts_and_unpacks_to_them() {
        let p = posting(7, 3, 1_200, 412);
        assert_eq!(posting_fields(p), (7, 3, 1_200, 412));
        // The chunk's id comes back from its version's id and the place.
        let (ord, ..) = posting_fields(p);
        assert_eq!(chunk_id(42, ord as usize), chunk_id(42, 7));
        // Counts beyond a field are held at its largest; the largest place fits, though
        // the number's sign bit is set then.
        let largest = (1 << CHUNK_ORD_BITS) - 1;
        let p = posting(largest, 300, 70_000, 90_000);
        assert!(p < 0);
        assert_eq!(posting_fields(p), (largest, 255, 65_535, 65_535));
        assert_eq!(posting_fields(posting(1, 0, 0, -5)), (1, 0, 0, 0));
    }

    #[test]
    fn a_lists_postings_of_a_term_read_back_as_the_database_wrote_them() {
        // `int8send(blob_id) || int4send(count)`, then `int8send(packed)` per posting,
        // version after version: big-endian.
        let groups = [
            (5_i64, vec![posting(2, 1, 3, 40), posting(4, 0, 1, 12)]),
            (9, vec![posting((1 << 24) - 1, 0, 1, 7)]),
        ];
        let mut bytes = Vec::new();
        for (version, postings) in &groups {
            bytes.extend(version.to_be_bytes());
            bytes.extend((postings.len() as u32).to_be_bytes());
            for p in postings {
                bytes.extend(p.to_be_bytes());
            }
        }
        let written: Vec<(i64, i64)> = groups
            .iter()
            .flat_map(|(v, ps)| ps.iter().map(move |p| (*v, *p)))
            .collect();
        assert_eq!(list_postings(&bytes).collect::<Vec<_>>(), written);
        // A torn group yields its whole postings; a torn header, none.
        let mut torn = bytes.clone();
        torn.extend(11_i64.to_be_bytes());
        torn.extend(3_u32.to_be_bytes());
        torn.extend(posting(1, 0, 1, 5).to_be_bytes());
        torn.extend([0, 1, 2]);
        let read: Vec<(i64, i64)> = list_postings(&torn).collect();
        assert_eq!(read.len(), 4);
        assert_eq!(read[3], (11, posting(1, 0, 1, 5)));
        bytes.extend([0, 1, 2]);
        assert_eq!(list_postings(&bytes).count(), 3);
        assert_eq!(list_postings(&[]).count(), 0);
    }
}
