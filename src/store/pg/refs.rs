//! Refs and snapshots: resolving a ref, the files of a snapshot, the file versions and
//! vectors the database already has, and publishing a ref's new state in one transaction.

use super::*;

impl PgStore {
    /// The snapshot a ref points at now (read from the replica when there is one), and
    /// remembered for [`PgStore::cached_ref_snapshot`]. The first call checks that the
    /// database holds a schema this ragls reads.
    pub fn ref_snapshot(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        if !self.schema_checked.load(Ordering::Relaxed) {
            self.check_schema()?;
            self.schema_checked.store(true, Ordering::Relaxed);
        }
        let found = self.read(snapshot_on(
            self.reader.clone(),
            self.reader_at.clone(),
            repo.to_string(),
            ref_name.to_string(),
        ))?;
        if let Ok(mut refs) = self.refs.lock() {
            let key = (repo.to_string(), ref_name.to_string());
            match &found {
                Some(s) => refs.insert(key, s.clone()),
                None => refs.remove(&key),
            };
        }
        Ok(found)
    }

    /// The snapshot a ref pointed at when last read, without asking the database (it
    /// asks when there is none). A snapshot never changes, so reading a remembered one
    /// is never a mix; that it is still the ref's is checked by the query that reads it
    /// ([`PgStore::search_snapshot`] says when the ref has moved, and forgets it).
    pub fn cached_ref_snapshot(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        let key = (repo.to_string(), ref_name.to_string());
        let known = self.refs.lock().ok().and_then(|r| r.get(&key).cloned());
        match known {
            Some(s) if !self.is_away() => Ok(Some(s)),
            _ => self.ref_snapshot(repo, ref_name),
        }
    }

    /// Forgets the remembered snapshot of a ref (it has moved).
    pub(super) fn forget_ref(&self, repo: &str, ref_name: &str) {
        if let Ok(mut refs) = self.refs.lock() {
            refs.remove(&(repo.to_string(), ref_name.to_string()));
        }
    }

    /// [`PgStore::ref_snapshot`] on the primary (a writer's base: a replica may lag).
    pub fn ref_snapshot_on_primary(&self, repo: &str, ref_name: &str) -> Result<Option<Snapshot>> {
        block(snapshot_on(
            self.primary.clone(),
            self.primary_at.clone(),
            repo.to_string(),
            ref_name.to_string(),
        ))
    }

    /// Every file of a snapshot: path -> its version.
    pub fn snapshot_files(&self, snapshot: i64) -> Result<HashMap<String, SnapshotFile>> {
        self.read(snapshot_files_on(
            self.reader.clone(),
            self.reader_at.clone(),
            snapshot,
        ))
    }

    /// [`PgStore::snapshot_files`] read from the primary.
    pub fn snapshot_files_on_primary(
        &self,
        snapshot: i64,
    ) -> Result<HashMap<String, SnapshotFile>> {
        block(snapshot_files_on(
            self.primary.clone(),
            self.primary_at.clone(),
            snapshot,
        ))
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
                crate::store::stored_precision(&mut v);
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
                // The base must outlive this transaction: another writer's clean-up of
                // old snapshots waits for it (or already removed it: then start over).
                let kept = tx
                    .query_opt(
                        "SELECT 1 FROM snapshots WHERE id = $1 FOR KEY SHARE",
                        &[&base],
                    )
                    .await
                    .map_err(err)?;
                if kept.is_none() {
                    return Err(Error::Usage(format!(
                        "the state {ref_name} was updated from is gone (another writer moved it meanwhile); run `ragls index` again"
                    )));
                }
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
            // File versions reused from other refs must outlive this transaction too.
            let reused: Vec<i64> = changed
                .iter()
                .filter_map(|f| match f {
                    ChangedFile::Known { blob_id, .. } => Some(*blob_id),
                    ChangedFile::New(_) => None,
                })
                .collect();
            if !reused.is_empty() {
                let kept = tx
                    .query(
                        "SELECT id FROM blobs WHERE id = ANY($1::bigint[]) FOR KEY SHARE",
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
            // until autovacuum comes by: refresh them now (best effort). VACUUM too, for
            // the visibility map: without it BM25 reads the postings through the heap
            // (a bitmap heap scan) instead of from their covering index alone, measured
            // 9.4 ms against 2.1 ms (EXPLAIN ANALYZE) for a query whose terms match 3,000
            // postings on the performance corpus. VACUUM cannot share a statement batch
            // (an implicit transaction): one each. It marks no page all-visible while
            // another transaction's snapshot predates the publish (autovacuum analyzing
            // the new rows, measured to happen right after a first build): then it is
            // run again, a few times at most, until most pages are.
            let total: i64 = client
                .query_one(
                    "SELECT chunk_count FROM snapshots WHERE id = $1",
                    &[&snapshot],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            if published.chunks_added * 10 > total as u64 {
                for table in ["postings", "chunks", "snapshot_files"] {
                    for _ in 0..5 {
                        if client
                            .batch_execute(&format!("VACUUM (ANALYZE) {table}"))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        let visible: f64 = client
                            .query_one(
                                "SELECT relallvisible::float8 / greatest(relpages, 1) FROM pg_class WHERE oid = $1::text::regclass",
                                &[&table],
                            )
                            .await
                            .map(|r| r.get(0))
                            .unwrap_or(1.0);
                        if visible >= 0.9 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                let _ = client
                    .batch_execute("ANALYZE blobs; ANALYZE embeddings;")
                    .await;
            }
            Ok(published)
        })
    }
}

/// The snapshot a ref points at, on one pool.
async fn snapshot_on(
    pool: Pool,
    at: String,
    repo: String,
    ref_name: String,
) -> Result<Option<Snapshot>> {
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
}

/// A snapshot's files: path -> its version.
async fn snapshot_files_on(
    pool: Pool,
    at: String,
    snapshot: i64,
) -> Result<HashMap<String, SnapshotFile>> {
    {
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
    }
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
