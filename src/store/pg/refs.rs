//! Refs and snapshots: resolving a ref, the files of a snapshot, the file versions and
//! vectors the database already has, and publishing a ref's new state in one transaction.

use super::*;

impl PgStore {
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
        block(store_vectors(
            self.primary.clone(),
            self.primary_at.clone(),
            id.clone(),
            items.to_vec(),
        ))
    }

    /// Writes a ref's new state and switches the ref to it, all in one transaction. The
    /// update's `vectors` go to the embedding cache meanwhile, on a connection and in a
    /// transaction of their own (the graph's inserts are as slow as the rest of the
    /// update together), committed before the ref switches.
    pub fn publish(&self, update: RefUpdate<'_>) -> Result<Published> {
        let pool = self.primary.clone();
        let at = self.primary_at.clone();
        let vectors = update.vectors;
        let repo = update.repo.to_string();
        let ref_name = update.ref_name.to_string();
        let identity = update.identity.clone();
        let base = update.base;
        let dropped = update.dropped;
        // The lexical postings of every new chunk, counted on all cores before the
        // transaction begins (counting them in it, on one thread, was a fifth of it).
        let changed: Vec<(ChangedFile, Vec<ChunkPostings>)> = {
            use rayon::prelude::*;
            update
                .changed
                .into_par_iter()
                .map(|f| {
                    let postings = match &f {
                        ChangedFile::New(v) => v.chunks.iter().map(ChunkPostings::of).collect(),
                        ChangedFile::Known { .. } => Vec::new(),
                    };
                    (f, postings)
                })
                .collect()
        };
        block(async move {
            // Spawned: should this transaction fail, the vectors are cached all the same.
            let vectors_stored = (!vectors.is_empty()).then(|| {
                tokio::spawn(store_vectors(
                    pool.clone(),
                    at.clone(),
                    identity.clone(),
                    vectors,
                ))
            });
            let mut client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let err = |e: tokio_postgres::Error| db_error(&at, e);
            let tx = client.transaction().await.map_err(err)?;
            // One writer per ref at a time; other refs update side by side. The shared
            // lock keeps the clean-up of old snapshots out while any ref is written (see
            // `collect_garbage`): what this update takes from the base, and the file
            // versions it reuses, stay until it commits.
            tx.execute(
                "SELECT pg_advisory_xact_lock_shared($3), pg_advisory_xact_lock(hashtext($1 || ':' || $2))",
                &[&repo, &ref_name, &GARBAGE_LOCK],
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
                // The base outlives this transaction (the clean-up waits for the shared
                // lock), unless a clean-up removed it before: then start over.
                let kept = tx
                    .query_opt("SELECT 1 FROM snapshots WHERE id = $1", &[&base])
                    .await
                    .map_err(err)?;
                if kept.is_none() {
                    return Err(Error::Usage(format!(
                        "the state {ref_name} was updated from is gone (another writer moved it meanwhile); run `ragls index` again"
                    )));
                }
            }
            let mut published = Published {
                snapshot,
                ..Published::default()
            };
            // File versions reused from other refs outlive this transaction too, if a
            // clean-up did not remove them before it began.
            let reused: Vec<i64> = changed
                .iter()
                .filter_map(|(f, _)| match f {
                    ChangedFile::Known { blob_id, .. } => Some(*blob_id),
                    ChangedFile::New(_) => None,
                })
                .collect();
            if !reused.is_empty() {
                let kept = tx
                    .query(
                        "SELECT id FROM blobs WHERE id = ANY($1::bigint[])",
                        &[&reused],
                    )
                    .await
                    .map_err(err)?;
                if kept.len() < reused.len() {
                    return Err(Error::Usage(format!(
                        "file versions this update of {ref_name} reuses were removed meanwhile (another writer's clean-up); run `ragls index` again"
                    )));
                }
            }
            let mut paths = Vec::with_capacity(changed.len());
            let mut blob_ids = Vec::with_capacity(changed.len());
            let mut batch = Vec::new();
            let mut batch_chunks = 0;
            for (file, postings) in changed {
                match file {
                    ChangedFile::Known { path, blob_id } => {
                        paths.push(path);
                        blob_ids.push(blob_id);
                    }
                    ChangedFile::New(v) => {
                        batch_chunks += v.chunks.len();
                        batch.push((v, postings));
                        // Statements of bounded size (a first build is one transaction
                        // too), yet few of them: a round trip per file was most of an
                        // update's time.
                        if batch_chunks >= VERSIONS_BATCH_CHUNKS {
                            let written =
                                insert_versions(&tx, std::mem::take(&mut batch), &mut published)
                                    .await
                                    .map_err(err)?;
                            batch_chunks = 0;
                            for (path, blob_id) in written {
                                paths.push(path);
                                blob_ids.push(blob_id);
                            }
                        }
                    }
                }
            }
            if !batch.is_empty() {
                let written = insert_versions(&tx, batch, &mut published)
                    .await
                    .map_err(err)?;
                for (path, blob_id) in written {
                    paths.push(path);
                    blob_ids.push(blob_id);
                }
            }
            // The new file list in one statement: the base's files but the dropped and the
            // changed ones, and the changed ones. In path order, so the primary key grows
            // at its right edge (a new snapshot's keys sort after every other's).
            tx.execute(
                "INSERT INTO snapshot_files(snapshot_id, path, blob_id)
                 SELECT $1, f.path, f.blob_id FROM (
                    SELECT path, blob_id FROM snapshot_files WHERE snapshot_id = $2
                       AND path NOT IN (SELECT unnest($3::text[]) UNION ALL SELECT unnest($4::text[]))
                    UNION ALL SELECT p, b FROM unnest($4::text[], $5::bigint[]) AS u(p, b)) f
                 ORDER BY f.path",
                &[&snapshot, &base, &dropped, &paths, &blob_ids],
            )
            .await
            .map_err(err)?;
            // BM25's statistics of the new snapshot: from the base's, less the dropped
            // files' chunks, plus the changed files' (no pass over the whole snapshot).
            let updated_stats = match base {
                Some(base) => {
                    tx.execute(
                    "UPDATE snapshots SET (chunk_count, term_total) = (
                        SELECT b.chunk_count - d.n + a.n, b.term_total - d.t + a.t
                        FROM snapshots b,
                             (SELECT count(c.id) AS n, coalesce(sum(c.terms), 0) AS t FROM snapshot_files sf
                              JOIN chunks c ON c.blob_id = sf.blob_id
                              WHERE sf.snapshot_id = $2 AND sf.path = ANY($3::text[])) d,
                             (SELECT count(c.id) AS n, coalesce(sum(c.terms), 0) AS t
                              FROM unnest($4::bigint[]) AS x(blob_id) JOIN chunks c ON c.blob_id = x.blob_id) a
                        WHERE b.id = $2)
                     WHERE id = $1",
                    &[&snapshot, &base, &dropped, &blob_ids],
                )
                    .await
                }
                None => {
                    tx.execute(
                    "UPDATE snapshots SET (chunk_count, term_total) = (SELECT count(*), coalesce(sum(c.terms), 0)
                        FROM snapshot_files sf JOIN chunks c ON c.blob_id = sf.blob_id WHERE sf.snapshot_id = $1) WHERE id = $1",
                    &[&snapshot],
                )
                    .await
                }
            };
            updated_stats.map_err(err)?;
            fault_pause_in_publish().await;
            if let Some(stored) = vectors_stored {
                stored.await.map_err(|e| {
                    Error::Other(format!("storing the vectors stopped unexpectedly: {e}"))
                })??;
            }
            tx.execute(
                "INSERT INTO refs(repo_id, name, snapshot_id) VALUES ($1, $2, $3)
                 ON CONFLICT (repo_id, name) DO UPDATE SET snapshot_id = excluded.snapshot_id, updated_at = now()",
                &[&repo_id, &ref_name, &snapshot],
            )
            .await
            .map_err(err)?;
            tx.commit().await.map_err(err)?;
            collect_garbage(&mut client, repo_id).await.map_err(err)?;
            // A first build (or a large change) leaves the planner's statistics far off
            // until autovacuum comes by: refresh them now (best effort). (A VACUUM here
            // too was measured: searches right after it were slower, not faster.)
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
                    .batch_execute(
                        "ANALYZE postings; ANALYZE chunks; ANALYZE snapshot_files; ANALYZE blobs; ANALYZE embeddings;",
                    )
                    .await;
            }
            Ok(published)
        })
    }
}

/// Adds vectors to the shared embedding cache in a transaction of their own.
async fn store_vectors(
    pool: Pool,
    at: String,
    id: Identity,
    items: Vec<(TextHash, Vec<f32>)>,
) -> Result<()> {
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
}

/// The advisory lock between writers (shared, for a publish's whole transaction) and
/// the clean-up of old snapshots (exclusive). It stands in for foreign keys to `blobs`
/// and `snapshots`, whose per-row checks (a row lock on the referenced row for each
/// posting, chunk and file written) were most of the cost of writing a ref.
const GARBAGE_LOCK: i64 = 7261538;

/// Removes, in a transaction of its own, the repository's snapshots no ref points at
/// any more and older than any search can still be reading (a reader resolves its
/// snapshot once per question), then the file versions (with their chunks and
/// postings) that no snapshot has any more. Skipped while another writer publishes
/// (the next writer's turn comes); the embedding cache stays: it is what makes the
/// next branch cheap.
async fn collect_garbage(
    client: &mut deadpool_postgres::Client,
    repo_id: i64,
) -> std::result::Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let locked: bool = tx
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&GARBAGE_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(());
    }
    let gone: Vec<i64> = tx
        .query(
            "DELETE FROM snapshots s WHERE s.repo_id = $1 AND s.created_at < now() - interval '1 hour'
             AND NOT EXISTS (SELECT 1 FROM refs r WHERE r.snapshot_id = s.id) RETURNING id",
            &[&repo_id],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let blobs: Vec<i64> = tx
        .query(
            "WITH f AS (DELETE FROM snapshot_files WHERE snapshot_id = ANY($1::bigint[]) RETURNING blob_id)
             SELECT DISTINCT blob_id FROM f",
            &[&gone],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    let blobs: Vec<i64> = tx
        .query(
            "DELETE FROM blobs b WHERE b.id = ANY($1::bigint[])
             AND NOT EXISTS (SELECT 1 FROM snapshot_files sf WHERE sf.blob_id = b.id) RETURNING id",
            &[&blobs],
        )
        .await?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        "DELETE FROM postings WHERE blob_id = ANY($1::bigint[])",
        &[&blobs],
    )
    .await?;
    tx.execute(
        "DELETE FROM chunks WHERE blob_id = ANY($1::bigint[])",
        &[&blobs],
    )
    .await?;
    tx.commit().await
}

/// New file versions are written this many chunks at a time (with their postings, some
/// fifty rows a chunk): few statements, each of a size the server takes in its stride.
const VERSIONS_BATCH_CHUNKS: usize = 2000;

/// Writes file versions with their chunks and postings in three statements, and returns
/// each version's (path, blob id). A version another writer added meanwhile keeps the
/// chunks it has. Postings go in sorted by term, so the term index takes each leaf page
/// once per batch rather than once per chunk.
async fn insert_versions(
    tx: &tokio_postgres::Transaction<'_>,
    versions: Vec<(NewFileVersion, Vec<ChunkPostings>)>,
    published: &mut Published,
) -> std::result::Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let (versions, version_postings): (Vec<NewFileVersion>, Vec<Vec<ChunkPostings>>) =
        versions.into_iter().unzip();
    let paths: Vec<&str> = versions.iter().map(|v| v.path.as_str()).collect();
    let hashes: Vec<Vec<u8>> = versions.iter().map(|v| v.content_hash.to_vec()).collect();
    let reasons: Vec<Option<&str>> = versions.iter().map(|v| v.skip_reason.as_deref()).collect();
    // Paths are unique within an update, so no row is touched twice (ON CONFLICT refuses that).
    let rows = tx
        .query(
            "INSERT INTO blobs(path, content_hash, skip_reason)
             SELECT p, h, r FROM unnest($1::text[], $2::bytea[], $3::text[]) AS u(p, h, r)
             ON CONFLICT (path, content_hash) DO UPDATE SET path = excluded.path
             RETURNING path, id, (xmax = 0)",
            &[&paths, &hashes, &reasons],
        )
        .await?;
    let mut ids: HashMap<String, (i64, bool)> = rows
        .into_iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
        .collect();
    let mut written = Vec::with_capacity(versions.len());
    let mut chunk_blob: Vec<i64> = Vec::new();
    let mut chunks: Vec<&NewChunk> = Vec::new();
    let mut postings: Vec<ChunkPostings> = Vec::new();
    for (v, p) in versions.iter().zip(version_postings) {
        let Some(&(blob_id, inserted)) = ids.get(&v.path) else {
            continue;
        };
        written.push((v.path.clone(), blob_id));
        // A version another writer added meanwhile has its chunks already.
        if inserted && !v.chunks.is_empty() {
            chunk_blob.extend(std::iter::repeat_n(blob_id, v.chunks.len()));
            chunks.extend(v.chunks.iter());
            postings.extend(p);
            published.chunks_added += v.chunks.len() as u64;
            published.file_versions_added += 1;
        }
    }
    ids.clear();
    if chunks.is_empty() {
        return Ok(written);
    }
    let col =
        |f: &dyn Fn(&NewChunk) -> String| -> Vec<String> { chunks.iter().map(|c| f(c)).collect() };
    let language = col(&|c| c.language.as_str().to_string());
    let kind = col(&|c| c.kind.as_str().to_string());
    let symbol = col(&|c| pg_text(&c.symbol));
    let name = col(&|c| pg_text(&c.name));
    let text = col(&|c| pg_text(&c.text));
    let sb: Vec<i64> = chunks.iter().map(|c| c.start_byte as i64).collect();
    let eb: Vec<i64> = chunks.iter().map(|c| c.end_byte as i64).collect();
    let sl: Vec<i32> = chunks.iter().map(|c| c.start_line as i32).collect();
    let el: Vec<i32> = chunks.iter().map(|c| c.end_line as i32).collect();
    let th: Vec<Vec<u8>> = chunks.iter().map(|c| c.text_hash.0.to_vec()).collect();
    let lengths: Vec<i32> = postings.iter().map(|p| p.terms).collect();
    // ord counts from 1 within each file version.
    let mut ords: Vec<i32> = Vec::with_capacity(chunks.len());
    for (i, b) in chunk_blob.iter().enumerate() {
        let ord = match i {
            0 => 1,
            _ if chunk_blob[i - 1] == *b => ords[i - 1] + 1,
            _ => 1,
        };
        ords.push(ord);
    }
    let rows = tx
        .query(
            "INSERT INTO chunks(blob_id, ord, language, kind, symbol, name, start_byte, end_byte,
                start_line, end_line, text, text_hash, terms)
             SELECT b, o, l, k, s, n, sb, eb, sl, el, t, h, tc
             FROM unnest($1::bigint[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::bigint[], $8::bigint[], $9::integer[], $10::integer[], $11::text[], $12::bytea[],
                $13::integer[]) AS u(b, o, l, k, s, n, sb, eb, sl, el, t, h, tc)
             RETURNING id, blob_id, ord",
            &[
                &chunk_blob, &ords, &language, &kind, &symbol, &name, &sb, &eb, &sl, &el, &text,
                &th, &lengths,
            ],
        )
        .await?;
    let index: HashMap<(i64, i32), usize> = chunk_blob
        .iter()
        .zip(&ords)
        .enumerate()
        .map(|(i, (b, o))| ((*b, *o), i))
        .collect();
    let mut rows_out: Vec<(&str, i64, i64, i16, i16, i32)> = Vec::new();
    for row in rows {
        let (id, blob_id, ord): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
        let Some(&i) = index.get(&(blob_id, ord)) else {
            continue;
        };
        let p = &postings[i];
        for (term, (head, body)) in &p.counts {
            rows_out.push((
                term.as_str(),
                blob_id,
                id,
                (*head).min(i16::MAX as u32) as i16,
                (*body).min(i16::MAX as u32) as i16,
                p.terms,
            ));
        }
    }
    rows_out.sort_unstable_by(|a, b| (a.0, a.2).cmp(&(b.0, b.2)));
    let terms: Vec<&str> = rows_out.iter().map(|r| r.0).collect();
    let blobs: Vec<i64> = rows_out.iter().map(|r| r.1).collect();
    let chunk_ids: Vec<i64> = rows_out.iter().map(|r| r.2).collect();
    let heads: Vec<i16> = rows_out.iter().map(|r| r.3).collect();
    let bodies: Vec<i16> = rows_out.iter().map(|r| r.4).collect();
    let lens: Vec<i32> = rows_out.iter().map(|r| r.5).collect();
    tx.execute(
        "INSERT INTO postings(term, blob_id, chunk_id, head, body, terms)
         SELECT t, b, c, h, d, n FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::smallint[],
            $5::smallint[], $6::integer[]) AS u(t, b, c, h, d, n)",
        &[&terms, &blobs, &chunk_ids, &heads, &bodies, &lens],
    )
    .await?;
    Ok(written)
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
