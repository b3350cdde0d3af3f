//! Reading a snapshot for a question: BM25 over the postings, nearest vectors through
//! pgvector, chunks by id, and the sizes the benchmark prints.

use super::*;

impl PgStore {
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
        match self.lexical_query(snapshot, terms, limit, head_weight, excluded)? {
            Some(query) => block(query),
            None => Ok(Vec::new()),
        }
    }

    /// [`PgStore::lexical_search`]'s query, to run (`None`: nothing to ask).
    fn lexical_query(
        &self,
        snapshot: i64,
        terms: &[String],
        limit: usize,
        head_weight: f32,
        excluded: &[String],
    ) -> Result<Option<impl Future<Output = Result<Vec<(ChunkId, f32)>>> + Send + 'static>> {
        let mut unique: Vec<String> = Vec::new();
        for t in terms {
            let t = t.to_lowercase();
            if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric()) && !unique.contains(&t) {
                unique.push(t);
            }
        }
        if unique.is_empty() || limit == 0 {
            return Ok(None);
        }
        let (idf, avg_terms) = self.idf(snapshot, &unique)?;
        let weights: Vec<f32> = unique
            .iter()
            .map(|t| idf.get(t).copied().unwrap_or(0.0))
            .collect();
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let excluded = excluded.to_vec();
        Ok(Some(async move {
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
        }))
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
                    "SELECT chunk_count, (term_total::real / greatest(chunk_count, 1))::real FROM snapshots WHERE id = $1",
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
        match self.nearest_query(snapshot, query, limit, ef, excluded) {
            Some(query) => block(query),
            None => Ok(Vec::new()),
        }
    }

    /// Both rankings of a snapshot at once, on two connections: the lexical one and,
    /// with a query vector, the nearest neighbours (a question waits for the slower
    /// of the two, not for both in turn).
    #[allow(clippy::too_many_arguments)]
    pub fn lexical_and_nearest(
        &self,
        snapshot: &Snapshot,
        terms: &[String],
        lexical_limit: usize,
        head_weight: f32,
        query: Option<&[f32]>,
        vector_limit: usize,
        ef: usize,
        excluded: &[String],
    ) -> Result<(Vec<(ChunkId, f32)>, Vec<(ChunkId, f32)>)> {
        let lexical =
            self.lexical_query(snapshot.id, terms, lexical_limit, head_weight, excluded)?;
        let nearest =
            query.and_then(|q| self.nearest_query(snapshot, q, vector_limit, ef, excluded));
        block(async move {
            let lexical = async move {
                match lexical {
                    Some(q) => q.await,
                    None => Ok(Vec::new()),
                }
            };
            let nearest = async move {
                match nearest {
                    Some(q) => q.await,
                    None => Ok(Vec::new()),
                }
            };
            let (lexical, nearest) = tokio::join!(lexical, nearest);
            Ok((lexical?, nearest?))
        })
    }

    /// [`PgStore::nearest`]'s query, to run (`None`: nothing to ask).
    fn nearest_query(
        &self,
        snapshot: &Snapshot,
        query: &[f32],
        limit: usize,
        ef: usize,
        excluded: &[String],
    ) -> Option<impl Future<Output = Result<Vec<(ChunkId, f32)>>> + Send + 'static> {
        let dims = snapshot.identity.dimensions;
        if dims == 0 || query.len() != dims || limit == 0 {
            return None;
        }
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let id = snapshot.id;
        let embedder = snapshot.identity.embedder.clone();
        let q = vector_of(query);
        let excluded = excluded.to_vec();
        let ef = ef.max(limit).min(1000);
        Some(async move {
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
