//! BM25's statistics of a snapshot for the questions that read it: each term's count of
//! chunks (its document frequency) and the snapshot's chunk count and average chunk
//! length, read from the database once per process and kept ([`KeptStatistics`]), since
//! a snapshot never changes. A question reads those it lacks in its own round trip
//! ([`PgStore::search_snapshot`]); [`PgStore::idf`] reads them on their own, for a
//! question whose BM25 the database ranks (it is sent the idf) and for a server readying
//! its pool.

use super::*;
use tokio_postgres::Row;

/// A snapshot's chunk count and average chunk length in terms (BM25's N and avgdl).
pub(super) const SNAPSHOT_STATISTICS: &str = "SELECT chunk_count, (term_total::real / greatest(chunk_count, 1))::real FROM snapshots WHERE id = $1";

/// Each term's document frequency in a snapshot whose list is full (`$1`): its count of
/// postings there (`snapshot_postings.n`, read without the value), for the terms `$2`,
/// each row with its term's place in `$2` (from 1).
pub(super) const DOCUMENT_FREQUENCIES: &str = "SELECT u.o::integer, coalesce((SELECT s.n
       FROM snapshot_postings s WHERE s.snapshot_id = $1 AND s.term = u.t), 0)::bigint
     FROM unnest($2::text[]) WITH ORDINALITY AS u(t, o)";

/// [`DOCUMENT_FREQUENCIES`] for a snapshot that lists changes (`$1` its base, `$3` its
/// own rows' versions, `$4` the base's versions it replaces): the base's count, less the
/// replaced versions' postings, plus its own versions', those found by (term, version):
/// each version's own rows, and the first places of the rows of the versions it shares
/// postings with (schema 12).
pub(super) const CHANGED_DOCUMENT_FREQUENCIES: &str = "SELECT u.o::integer, (coalesce((SELECT s.n
       FROM snapshot_postings s WHERE s.snapshot_id = $1 AND s.term = u.t), 0)
       + coalesce((SELECT sum(cardinality(p.packed)) FROM postings p
                   WHERE p.term = u.t AND p.blob_id = ANY($3::bigint[])), 0)
       + (SELECT count(*) FROM version_sources s
          JOIN postings p ON p.term = u.t AND p.blob_id = s.src CROSS JOIN LATERAL unnest(p.packed) AS e(f)
          WHERE s.blob_id = ANY($3::bigint[]) AND (e.f >> 40) & 16777215 <= s.upto)
       - coalesce((SELECT sum(cardinality(p.packed)) FROM postings p
                   WHERE p.term = u.t AND p.blob_id = ANY($4::bigint[])), 0)
       - (SELECT count(*) FROM version_sources s
          JOIN postings p ON p.term = u.t AND p.blob_id = s.src CROSS JOIN LATERAL unnest(p.packed) AS e(f)
          WHERE s.blob_id = ANY($4::bigint[]) AND (e.f >> 40) & 16777215 <= s.upto))::bigint
     FROM unnest($2::text[]) WITH ORDINALITY AS u(t, o)";

/// A term's inverse document frequency among a snapshot's `total` chunks, `count` of
/// which have it (FTS5's: ln((N - n + 0.5) / (n + 0.5)), at least 1e-6).
pub(super) fn idf_of(total: i64, count: i64) -> f32 {
    let (n, df) = (total.max(1) as f32, count as f32);
    ((n - df + 0.5) / (df + 0.5)).ln().max(1e-6)
}

/// BM25's statistics kept per process: by (snapshot, term), the term's idf and count of
/// chunks; the snapshot's average chunk length and chunk count under the empty term (no
/// real term is empty). A snapshot never changes.
pub(in crate::store::pg) type KeptStatistics = Mutex<HashMap<(i64, String), (f32, i64)>>;

/// A term's (idf, count of chunks), by term.
pub(super) type TermStatistics = HashMap<String, (f32, i64)>;

/// The average length's key in [`KeptStatistics`].
const AVERAGE: &str = "";

/// What [`KeptStatistics`] has of `terms` in `snapshot`: those kept, those not, and the
/// average chunk length.
pub(super) fn kept_statistics(
    kept: &KeptStatistics,
    snapshot: i64,
    terms: &[String],
) -> (TermStatistics, Vec<String>, Option<f32>) {
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    let mut average = None;
    match kept.lock() {
        Ok(cache) => {
            average = cache.get(&(snapshot, AVERAGE.to_string())).map(|a| a.0);
            for t in terms {
                match cache.get(&(snapshot, t.clone())) {
                    Some(v) => {
                        out.insert(t.clone(), *v);
                    }
                    None => missing.push(t.clone()),
                }
            }
        }
        Err(_) => missing = terms.to_vec(),
    }
    (out, missing, average)
}

/// Keeps what was read of a snapshot: its chunk count `total` and average length, and
/// each term's count of chunks; returns the terms' (idf, count).
pub(super) fn keep_statistics(
    kept: &KeptStatistics,
    snapshot: i64,
    total: i64,
    average: f32,
    terms: &[String],
    counts: &[i64],
) -> Vec<(f32, i64)> {
    let read: Vec<(f32, i64)> = counts.iter().map(|&c| (idf_of(total, c), c)).collect();
    if let Ok(mut cache) = kept.lock() {
        cache.insert((snapshot, AVERAGE.to_string()), (average, total));
        for (t, v) in terms.iter().zip(&read) {
            cache.insert((snapshot, t.clone()), *v);
        }
    }
    read
}

/// The counts of chunks per term from a statement's rows (the term's place in the asked
/// list from 1, its count), for `n` terms.
pub(super) fn counts_of_rows(rows: &[Row], n: usize) -> Vec<i64> {
    let mut counts = vec![0i64; n];
    for r in rows {
        let place = r.get::<_, i32>(0).max(1) as usize - 1;
        if let Some(count) = counts.get_mut(place) {
            *count = r.get(1);
        }
    }
    counts
}

impl PgStore {
    /// BM25's statistics of a snapshot: each term's inverse document frequency among its
    /// chunks ([`idf_of`]) and that count of chunks, and the average chunk length in
    /// terms, read once per process ([`KeptStatistics`]).
    pub(super) fn idf(&self, of: &Snapshot, terms: &[String]) -> Result<(TermStatistics, f32)> {
        let snapshot = of.id;
        let (list_id, replaced, own) = list_parameters(of, &[]);
        let (mut out, missing, average) = kept_statistics(&self.idf, snapshot, terms);
        if let (true, Some(average)) = (missing.is_empty(), average) {
            return Ok((out, average));
        }
        let asked = missing.clone();
        let (total, average, counts): (i64, f32, Vec<i64>) =
            self.read_with(move |db| async move {
                let err = |e: tokio_postgres::Error| db_error(&db.at, e);
                let frequencies = match replaced {
                    Some(_) => CHANGED_DOCUMENT_FREQUENCIES,
                    None => DOCUMENT_FREQUENCIES,
                };
                let (of_snapshot, of_terms) =
                    tokio::try_join!(db.prepared(SNAPSHOT_STATISTICS), db.prepared(frequencies))?;
                // All in one round trip, on a generic plan: a custom one trusts the
                // statistics of `snapshot_files`, which know nothing of a snapshot
                // published since they were gathered ("1 row"), and probed the postings
                // once per file of the snapshot: 0.4-1.2 s a question at a million lines
                // right after an update, against 6-35 ms. Sorts off, as for a question's
                // BM25: the file list is read through its key.
                let snapshot_params: [Param<'_>; 1] = [&snapshot];
                let terms_params = with_changes(
                    vec![&list_id, &asked],
                    replaced.as_ref().map(|r| [&own as Param<'_>, r]),
                );
                let (_, row, rows, _) = tokio::try_join!(
                    db.client.batch_execute(
                        "SET plan_cache_mode = force_generic_plan; SET enable_sort = off"
                    ),
                    db.client.query_one(&of_snapshot, &snapshot_params),
                    db.client.query(&of_terms, &terms_params),
                    db.client
                        .batch_execute("RESET plan_cache_mode; RESET enable_sort"),
                )
                .map_err(err)?;
                let counts = counts_of_rows(&rows, asked.len());
                Ok((
                    row.get::<_, Option<i64>>(0).unwrap_or(0),
                    row.get(1),
                    counts,
                ))
            })?;
        let read = keep_statistics(&self.idf, snapshot, total, average, &missing, &counts);
        out.extend(missing.into_iter().zip(read));
        Ok((out, average))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_is_fts5s_and_never_below_its_floor() {
        // ln((N - n + 0.5) / (n + 0.5))
        assert!((idf_of(100, 1) - (99.5f32 / 1.5).ln()).abs() < 1e-6);
        assert!(idf_of(100, 1) > idf_of(100, 10), "rarer terms weigh more");
        // A term in more than half the chunks would weigh below zero: FTS5 floors it.
        assert_eq!(idf_of(100, 80), 1e-6);
        // An empty snapshot counts as one chunk (no division by zero, no NaN).
        assert!(idf_of(0, 0).is_finite());
    }

    #[test]
    fn statistics_kept_for_one_snapshot_are_found_for_it_alone() {
        let kept = KeptStatistics::default();
        let terms = ["ledger".to_string(), "balance".to_string()];
        let (found, missing, average) = kept_statistics(&kept, 7, &terms);
        assert!(found.is_empty());
        assert_eq!(missing, terms.to_vec());
        assert_eq!(average, None);

        let read = keep_statistics(&kept, 7, 100, 42.5, &terms[..1], &[3]);
        assert_eq!(read, vec![(idf_of(100, 3), 3)]);
        let (found, missing, average) = kept_statistics(&kept, 7, &terms);
        assert_eq!(found.get("ledger"), Some(&(idf_of(100, 3), 3)));
        assert_eq!(
            missing,
            vec!["balance".to_string()],
            "only what was read is kept"
        );
        assert_eq!(average, Some(42.5));
        // Another snapshot of the same ref knows nothing of it.
        let (found, missing, average) = kept_statistics(&kept, 8, &terms);
        assert!(found.is_empty() && average.is_none());
        assert_eq!(missing.len(), 2);
    }
}
