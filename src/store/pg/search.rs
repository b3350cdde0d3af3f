//! Reading a snapshot for a question: BM25 over the postings, nearest vectors through
//! pgvector, chunks by id, and the sizes the benchmark prints.
//!
//! A question is one round trip on one connection ([`PgStore::search_snapshot`]): the
//! check that the ref still points at the remembered snapshot, BM25 and the nearest
//! vectors, each returning its chunks' rows, sent pipelined, as statements prepared once
//! per connection (a statement sent as text costs a round trip of its own to prepare).
//! Measured on the performance corpus, the round trips and the waits for a second
//! pooled connection, not the server's work, were most of a question's time. The rows
//! come without their texts: only some 30 of the ~90 candidates make the pool.
//!
//! BM25 is ranked by the reader, not the database, while the query's postings are few
//! (`store.reader_bm25_pairs`): the database finds them and sends them; the reader sums
//! them ([`bm25_ranked`]) and, in a second round trip on the same connection, reads its
//! winners' rows with the texts of both rankings' best ([`SnapshotQuery::texts_top`]).
//! Unnesting, grouping and scoring every (term, chunk) pair was some 70% of the
//! database's time per question, and 16 editors share one database while each has its
//! own cores. Texts still missing once the pool is chosen (the database ranked BM25, or
//! a prior lifted a chunk from further down) are read then ([`PgStore::chunk_texts`]):
//! a round trip that each question paid before, and one more wait for the thread that
//! asks, which is what sets the 16 clients' p95 on two cores.

use super::*;
use shared::PostingsShared;
use statistics::*;
use tokio_postgres::Row;

/// A question's first statement: the snapshot ref `$2` of repository `$1` points at now
/// (NULL: none), checked beside the question's queries, and the question's settings for
/// the session (see [`PgStore::search_snapshot`]), `$3` the HNSW walk's breadth. Set by a
/// prepared statement rather than `SET`s: those are parsed and planned at every question,
/// each a message of its own.
const QUESTION_START: &str =
    "SELECT (SELECT r.snapshot_id FROM refs r JOIN repos p ON p.id = r.repo_id
       WHERE p.name = $1 AND r.name = $2),
     set_config('plan_cache_mode', 'force_generic_plan', false),
     set_config('enable_sort', 'off', false),
     set_config('hnsw.ef_search', $3, false),
     set_config('hnsw.iterative_scan', 'relaxed_order', false)";

/// A question's last statement: the settings other statements on the connection would
/// meet put back to the session's defaults (a NULL value resets).
const QUESTION_END: &str =
    "SELECT set_config('plan_cache_mode', NULL, false), set_config('enable_sort', NULL, false)";

/// The chunk columns a question's rankings return after their first two (id, score):
/// all but the text. The texts are read afterwards for the candidates that make the
/// pool ([`PgStore::chunk_texts`]): some 30 of the ~90 ranked. With 16 clients on the
/// performance corpus that answered 5% more questions a second, the second round trip
/// included.
const CHUNK_COLUMNS: &str =
    "b.path, c.language, c.kind, c.symbol, c.name, c.start_byte, c.end_byte,
    c.start_line, c.end_line";

/// BM25 (FTS5's bm25(): per query term, idf * w * (k1 + 1) / (w + k1 * (1 - b + b * len / avg)),
/// w = head_weight * (the term's head occurrences) + (its body occurrences)): the best
/// `$4` chunks and their scores. $1 snapshot, $2 terms, $3 their idf, $5 excluded paths,
/// $6 head weight, $7 average length. A row of postings holds a term's postings for every
/// chunk of one file version that has it, in an array unnested in the select list (in
/// `FROM`, a function scan stored each row's elements first: 3.9 ms against 2.6), each
/// element packed as `versions::posting` packs it, the chunk's id made from the row's
/// version and the chunk's place as `versions::chunk_id` makes it. `files` gives each
/// version whose rows are read (`src`), the listed version they are for (`target`) and
/// the last place taken from them (`upto`): a listed version's own rows, all of them,
/// and the rows of the versions it shares postings with (schema 12), their first places.
const BM25_TOP: &str = "SELECT x.chunk_id,
       sum(x.idf * (($6::real * x.head + x.body) * 2.2::real)
           / (($6::real * x.head + x.body) + 1.2::real * (0.25::real + 0.75::real * x.terms / $7::real)))::real AS s
  FROM (SELECT y.idf, (y.target << 24) | ((y.f >> 40) & 16777215) AS chunk_id,
               ((y.f >> 32) & 255)::real AS head, ((y.f >> 16) & 65535)::real AS body,
               (y.f & 65535)::real AS terms
        FROM (SELECT q.idf, sf.target, sf.upto, unnest(p.packed) AS f
              FROM unnest($2::text[], $3::real[]) AS q(t, idf)
              JOIN postings p ON p.term = q.t
              JOIN files sf ON sf.src = p.blob_id) y
        WHERE (y.f >> 40) & 16777215 <= y.upto) x
  GROUP BY x.chunk_id ORDER BY s DESC, x.chunk_id LIMIT $4";

/// The file list's query for [`SNAPSHOT_BLOBS`], the excluded paths `$excluded`.
macro_rules! snapshot_blobs {
    ($excluded:literal) => {
        concat!(
            "SELECT blob_id FROM snapshot_files WHERE snapshot_id = $1 AND NOT (path = ANY(",
            $excluded,
            "::text[])) ORDER BY path"
        )
    };
}

/// [`snapshot_blobs`] for a snapshot that lists its changes to a base ([`FileList`]):
/// `$1` is the base, whose list is read as a full one's but for the versions `$replaced`
/// (the base's of the paths the snapshot lists), then the versions of the snapshot's own
/// rows, `$own` (a removed file's has none), those of excluded paths left out: the reader
/// passes both, read with the snapshot. Read from the table, the own rows doubled the
/// list's estimated size, and the generic plan hashed the postings instead of the list.
/// Nothing is resolved per row: resolving the list in SQL (each base row probing the
/// snapshot's for its path) made 16 clients' p95 a third higher. The replaced versions
/// are a hashed `NOT IN`: as `<> ALL` of the array (compared one by one, a parameter's
/// array is never hashed), 250 of them at a million lines doubled a question's time.
macro_rules! changed_blobs {
    ($excluded:literal, $own:literal, $replaced:literal) => {
        concat!(
            "(SELECT blob_id FROM snapshot_files WHERE snapshot_id = $1 AND NOT (path = ANY(",
            $excluded,
            "::text[])) AND blob_id NOT IN (SELECT unnest(",
            $replaced,
            "::bigint[])) ORDER BY path)
             UNION ALL SELECT unnest(",
            $own,
            "::bigint[])"
        )
    };
}

// After the file lists' macros, which its statements use too.
mod shared;
mod statistics;

/// The file versions of snapshot `$1` but those of the paths `$5`, for [`BM25_TOP`]: read
/// once and joined by hash. Planned generically, the join probed the file lists' index
/// once per matching row of the postings instead (0.8 ms of 2.6 for four terms on the
/// performance corpus; hashed, the query took 2.3). In path order: with sorts off for a
/// question, only the file lists' primary key (snapshot, path) gives it, so the list is
/// read through it whatever the statistics say. A generic plan made from statistics of
/// before a burst of updates (one snapshot then, 61 after sixty) read every snapshot's
/// list instead: the postings query took 3.3-4.5 ms against 0.7-0.9.
const SNAPSHOT_BLOBS: &str = snapshot_blobs!("$5");

/// [`SNAPSHOT_BLOBS`] for a snapshot that lists changes: `$1` its base, `$8` its own rows'
/// versions, `$9` the base's versions it replaces ([`changed_blobs`]).
const CHANGED_BLOBS: &str = changed_blobs!("$5", "$8", "$9");

/// [`BM25_TOP`], then the winners' rows; `changes`: of a snapshot that lists changes
/// ([`CHANGED_BLOBS`]).
fn lexical_sql(changes: bool) -> String {
    let files = if changes {
        CHANGED_BLOBS
    } else {
        SNAPSHOT_BLOBS
    };
    format!(
        "WITH listed AS MATERIALIZED ({files}),
         files AS MATERIALIZED (
           SELECT blob_id AS src, blob_id AS target, 16777215 AS upto FROM listed
           UNION ALL
           SELECT s.src, s.blob_id, s.upto FROM listed JOIN version_sources s ON s.blob_id = listed.blob_id),
         top AS ({BM25_TOP})
         SELECT top.chunk_id, top.s, {CHUNK_COLUMNS}
         FROM top JOIN chunks c ON c.id = top.chunk_id JOIN blobs b ON b.id = c.blob_id
         ORDER BY top.s DESC, top.chunk_id"
    )
}

/// The postings of the terms `$2` in the whole file list `$1` (a list of changes' base),
/// a row per term (schema 10's `snapshot_postings`): the term's place in `$2` (from 1)
/// and its postings in one value ([`versions::list_postings`]), what a reader ranks
/// itself ([`bm25_ranked`]). The reader drops the versions of the excluded paths
/// ([`LISTED_VERSIONS`]) and, for a list of changes, those it replaced; a list of
/// changes' own versions' postings come apart ([`OWN_POSTINGS`]). A row per term and
/// file version before (400-700 for four terms on the performance corpus), each joined
/// to the file list: 16 clients ran 3,100 such statements a second, 14,500 of these.
const LIST_POSTINGS: &str = "SELECT q.o::integer, s.postings
     FROM unnest($2::text[]) WITH ORDINALITY AS q(t, o)
     JOIN snapshot_postings s ON s.snapshot_id = $1 AND s.term = q.t";

/// [`LIST_POSTINGS`] for a question with terms whose statistics the reader has not kept
/// yet (they are read in the same round trip: [`DOCUMENT_FREQUENCIES`]): the postings
/// are sent only while the list's are at most `$3` in all, else none (the database ranks
/// them then, [`BM25_TOP`]). The counts are read without the values.
const LIST_POSTINGS_AT_MOST: &str = "SELECT x.o, x.postings FROM (
       SELECT q.o::integer AS o, s.postings, sum(s.n) OVER () AS pairs
       FROM unnest($2::text[]) WITH ORDINALITY AS q(t, o)
       JOIN snapshot_postings s ON s.snapshot_id = $1 AND s.term = q.t) x
     WHERE x.pairs <= $3::bigint";

/// The postings of the terms `$2` in a list of changes' own file versions `$1`, rows of
/// (the term's place in `$2`, from 1; the version; its postings, as
/// `postings.packed`), found by (term, version) in the term index (schema 10). `$1` holds
/// the versions they share postings with too (schema 12): the reader takes those rows'
/// first places for the sharer ([`PostingsShared`]).
const OWN_POSTINGS: &str = "SELECT q.o::integer, p.blob_id, p.packed
     FROM unnest($2::text[]) WITH ORDINALITY AS q(t, o)
     JOIN postings p ON p.term = q.t AND p.blob_id = ANY($1::bigint[])";

/// The versions of the paths `$2` in the file list `$1`: those of the excluded paths,
/// whose postings a reader drops from [`LIST_POSTINGS`]' (a list of changes' own rows
/// leave them out already: [`list_parameters`]).
const LISTED_VERSIONS: &str = "SELECT blob_id FROM snapshot_files
     WHERE snapshot_id = $1 AND path = ANY($2::text[]) AND blob_id IS NOT NULL";

/// The rows of the chunks `$1`, each with its text when it is one of `$2` (else NULL): for
/// a ranking made by the reader, its winners' rows, read with the texts of both rankings'
/// best (see [`SnapshotQuery::texts_top`]). The path is read per chunk: joined, the
/// generic plan hashed the whole of `blobs` for some 50 chunks.
fn chunk_rows_sql() -> String {
    let columns = CHUNK_COLUMNS.replacen(
        "b.path",
        "(SELECT b.path FROM blobs b WHERE b.id = c.blob_id)",
        1,
    );
    format!(
        "SELECT c.id, CASE WHEN c.id = ANY($2::bigint[]) THEN c.text END, {columns}
         FROM chunks c WHERE c.id = ANY($1::bigint[])"
    )
}

/// A `bigint[]` read in place from the row the server sent (binary), without copying its
/// elements into a vector: a question's postings are thousands of them.
struct Int8Array<'a>(postgres_protocol::types::Array<'a>);

impl<'a> tokio_postgres::types::FromSql<'a> for Int8Array<'a> {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Int8Array(postgres_protocol::types::array_from_sql(raw)?))
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::INT8_ARRAY
    }
}

impl Int8Array<'_> {
    /// The elements, in order (a NULL one or a malformed array ends them: the writer
    /// stores neither).
    fn values(&self) -> impl Iterator<Item = i64> + '_ {
        use fallible_iterator::FallibleIterator;
        self.0
            .values()
            .iterator()
            .map_while(|v| v.ok().flatten())
            .map_while(|bytes| postgres_protocol::types::int8_from_sql(bytes).ok())
    }
}

/// BM25 exactly as [`BM25_TOP`] computes it (the same `f32` operations, each chunk's
/// terms summed in their order), over postings the reader was sent: each (the term's
/// place in `idf`, its file version, the posting packed as [`versions::posting`] packs
/// it). The best `limit`, best first, ties by chunk id.
///
/// Each term's postings are kept apart and merged by chunk: a whole list's come by
/// chunk already (`list_postings_of` orders them by version and posting), so only a
/// term with a list of changes' own postings after them is sorted. Sorting every
/// (chunk, term) pair instead was a seventh of the reader's CPU under 16 clients.
fn bm25_ranked<I>(
    postings: I,
    idf: &[f32],
    head_weight: f32,
    avg_terms: f32,
    limit: usize,
) -> Vec<(ChunkId, f32)>
where
    I: IntoIterator<Item = (usize, i64, i64)>,
{
    let mut by_term: Vec<Vec<(i64, f32)>> = vec![Vec::new(); idf.len()];
    for (term, blob_id, p) in postings {
        let Some(&idf) = idf.get(term) else { continue };
        let (ord, head, body, terms) = versions::posting_fields(p);
        let (head, body, terms) = (head as f32, body as f32, terms as f32);
        let w = head_weight * head + body;
        by_term[term].push((
            versions::chunk_id(blob_id, ord as usize),
            idf * (w * 2.2) / (w + 1.2 * (0.25 + 0.75 * terms / avg_terms)),
        ));
    }
    for postings in &mut by_term {
        if !postings.is_sorted_by_key(|&(chunk, _)| chunk) {
            // Stable: a term's postings of one chunk (there is one) keep their order.
            postings.sort_by_key(|&(chunk, _)| chunk);
        }
    }
    // Every term's next posting; a chunk's sum takes its terms in their order.
    let mut next = vec![0usize; by_term.len()];
    let longest = by_term.iter().map(Vec::len).max().unwrap_or(0);
    let mut ranked: Vec<(i64, f32)> = Vec::with_capacity(longest);
    loop {
        let least = by_term
            .iter()
            .zip(&next)
            .filter_map(|(postings, &i)| postings.get(i).map(|&(chunk, _)| chunk))
            .min();
        let Some(chunk) = least else { break };
        let mut sum: Option<f32> = None;
        for (postings, i) in by_term.iter().zip(&mut next) {
            while let Some(&(c, s)) = postings.get(*i) {
                if c != chunk {
                    break;
                }
                sum = Some(sum.map_or(s, |sum| sum + s));
                *i += 1;
            }
        }
        ranked.extend(sum.map(|s| (chunk, s)));
    }
    let best_first = |a: &(i64, f32), b: &(i64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if ranked.len() > limit && limit > 0 {
        ranked.select_nth_unstable_by(limit - 1, best_first);
    }
    ranked.truncate(limit);
    ranked.sort_by(best_first);
    ranked.into_iter().map(|(id, s)| (ChunkId(id), s)).collect()
}

/// A question's BM25 ([`PgStore::search_snapshot`]): its terms, their idf, the average
/// chunk length, and who ranks it: the reader, from the postings it is sent
/// ([`LIST_POSTINGS`]), or the database ([`BM25_TOP`]).
struct LexicalAsk {
    terms: Vec<String>,
    /// Each term's idf (0 for those of `unknown`, until read).
    idf: Vec<f32>,
    /// The average chunk length, at least 1 (1 until read: `avg_known`).
    avg: f32,
    avg_known: bool,
    /// Each term's count of chunks (0 for those of `unknown`, until read).
    counts: Vec<i64>,
    by_reader: bool,
    /// The terms whose statistics this process has not kept yet: read in the question's
    /// round trip, with the snapshot's, while its postings come with a limit
    /// ([`LIST_POSTINGS_AT_MOST`]).
    unknown: Vec<String>,
}

impl LexicalAsk {
    /// Whether the question reads statistics ([`LexicalAsk::unknown`], or the average).
    fn reads_statistics(&self) -> bool {
        !self.unknown.is_empty() || !self.avg_known
    }

    /// [`BM25_TOP`]'s parameters (a list of changes' two follow: [`with_changes`]).
    fn top_params<'p>(
        &'p self,
        list_id: &'p i64,
        limit: &'p i64,
        excluded: &'p Vec<String>,
        head_weight: &'p f32,
    ) -> Vec<Param<'p>> {
        vec![
            list_id,
            &self.terms,
            &self.idf,
            limit,
            excluded,
            head_weight,
            &self.avg,
        ]
    }
}

/// The `$4` chunks of snapshot `$1` nearest to `$2` (embedder `$3`), paths `$5` left
/// out, with their rows: the HNSW index with pgvector's iterative scan, each vector it
/// yields joined at once to the snapshot's chunks of its text (those that have none are
/// the filter), the path from the snapshot's file list. Joined after a `LIMIT` on the
/// vectors instead, every chunk and file was looked up twice: 400 questions in psql took
/// 0.50-0.55 s against 0.56 (the same 50 rows). The scan's order is relaxed (see
/// `QUESTION_START`): the reader sorts the rows by score ([`best_first`]). The distances
/// are those of the index, in half precision (see schema 6); `$2` is sent whole (a
/// `vector`) and cast here, once (a sub-select: written in place, a generic plan cast it
/// again for every row, a fiftieth of the machine's time under 16 clients). Each row's
/// distance is returned and ordered by as one column: a score computed beside the
/// `ORDER BY` was a second cast and distance a row. `changes`: of a snapshot that lists
/// its changes to a base,
/// `$1` the base, `$6` the snapshot, `$7` the base's versions it replaces
/// ([`changed_blobs`]): a chunk is the snapshot's when its version is in the snapshot's
/// own rows or in the base's but those replaced.
fn nearest_sql(dims: usize, changes: bool) -> String {
    let columns = CHUNK_COLUMNS.replacen("b.path", "sf.path", 1);
    let listed = if changes {
        "sf.snapshot_id = ANY(ARRAY[$1::bigint, $6::bigint])
             AND (sf.snapshot_id = $6 OR sf.blob_id NOT IN (SELECT unnest($7::bigint[])))"
    } else {
        "sf.snapshot_id = $1"
    };
    format!(
        "SELECT x.id, e.vector::halfvec({dims}) <=> (SELECT $2::vector({dims})::halfvec({dims})) AS distance, x.*
         FROM embeddings e
         CROSS JOIN LATERAL (
           SELECT {columns}, c.id FROM chunks c JOIN snapshot_files sf ON sf.blob_id = c.blob_id
           WHERE c.text_hash = e.text_hash AND {listed} AND NOT (sf.path = ANY($5::text[]))) x
         WHERE e.dimensions = {dims} AND e.embedder = $3
         ORDER BY distance LIMIT $4"
    )
}

/// A statement's parameter.
type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);

/// The parameters of a full list's statement, then, for a snapshot that lists changes,
/// the two its statements take besides (see [`changed_blobs`], [`nearest_sql`]).
fn with_changes<'p>(mut params: Vec<Param<'p>>, changes: Option<[Param<'p>; 2]>) -> Vec<Param<'p>> {
    params.extend(changes.into_iter().flatten());
    params
}

/// What a question's statements take for a snapshot's file list: the list they read as a
/// full one (the snapshot's, or its base's) and, for a snapshot that lists changes, the
/// base's versions it replaces and its own versions but those of the `excluded` paths
/// (see [`changed_blobs`]).
fn list_parameters(snapshot: &Snapshot, excluded: &[String]) -> (i64, Option<Vec<i64>>, Vec<i64>) {
    match &snapshot.list {
        FileList::Full => (snapshot.id, None, Vec::new()),
        FileList::Changes {
            base,
            replaced,
            own,
            ..
        } => {
            let own = own
                .iter()
                .filter(|(path, _)| !excluded.contains(path))
                .map(|(_, version)| *version)
                .collect();
            (*base, Some(replaced.to_vec()), own)
        }
    }
}

/// Best score first, then the lower chunk id (the order `bm25_ranked` gives, and the
/// vector ranking's once sorted).
fn best_first(a: &(ChunkId, f32), b: &(ChunkId, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0 .0.cmp(&b.0 .0))
}

/// The terms BM25 is asked for: lower-cased, alphanumeric, each once, in their first
/// order (as the SQLite index asks FTS5).
fn bm25_terms(terms: &[String]) -> Vec<String> {
    let mut unique: Vec<String> = Vec::new();
    for t in terms {
        let t = t.to_lowercase();
        if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric()) && !unique.contains(&t) {
            unique.push(t);
        }
    }
    unique
}

/// The texts of the chunks `$1` ([`PgStore::chunk_texts`]).
const CHUNK_TEXTS: &str = "SELECT id, text FROM chunks WHERE id = ANY($1::bigint[])";

/// A chunk from a row whose column 0 is its id and `CHUNK_COLUMNS` start at `at`.
fn chunk_of_row(r: &Row, at: usize) -> Option<StoredChunk> {
    let id = ChunkId(r.get(0));
    let language = Language::from_name(r.get::<_, &str>(at + 1))?;
    let kind = ChunkKind::from_name(r.get::<_, &str>(at + 2))?;
    Some(StoredChunk {
        id,
        path: r.get(at),
        chunk: Chunk {
            language,
            kind,
            symbol: r.get(at + 3),
            name: r.get(at + 4),
            start_byte: r.get::<_, i64>(at + 5) as usize,
            end_byte: r.get::<_, i64>(at + 6) as usize,
            start_line: r.get::<_, i32>(at + 7) as u32,
            end_line: r.get::<_, i32>(at + 8) as u32,
            // Read later, for the pool only (see `CHUNK_COLUMNS`).
            text: String::new(),
        },
    })
}

/// What a question asks of a snapshot ([`PgStore::search_snapshot`]).
pub struct SnapshotQuery<'a> {
    pub repo: &'a str,
    pub ref_name: &'a str,
    pub snapshot: &'a Snapshot,
    pub terms: &'a [String],
    pub lexical_limit: usize,
    pub head_weight: f32,
    /// The embedded query; `None`: no vector ranking.
    pub vector: Option<&'a [f32]>,
    pub vector_limit: usize,
    pub ef: usize,
    pub excluded: &'a [String],
    /// The texts of each ranking's best this many are read with the rows (where the
    /// reader ranks BM25, in the same round trip as its winners' rows); the others' are
    /// left empty, for [`PgStore::chunk_texts`].
    pub texts_top: usize,
}

/// What a question read: both rankings (best first), the rows of every chunk they
/// name (with the texts of each ranking's best [`SnapshotQuery::texts_top`] where the
/// reader ranked BM25, the others' empty: [`PgStore::chunk_texts`]), and whether the ref
/// had moved away from the snapshot read.
pub struct SnapshotSearch {
    pub lexical: Vec<(ChunkId, f32)>,
    pub vector: Vec<(ChunkId, f32)>,
    pub chunks: HashMap<ChunkId, StoredChunk>,
    /// The ref points at another snapshot now (or at none): the caller resolves it again
    /// ([`PgStore::ref_snapshot`]) and asks again to see the new state.
    pub moved: bool,
}

impl PgStore {
    /// A question's reading of a snapshot on one connection: in one round trip the ref
    /// check, BM25 (or the postings the reader ranks) and the nearest vectors (each with
    /// its chunks' rows), pipelined; when the reader ranked BM25, a second for its
    /// winners' rows and the likely pool's texts.
    /// Running BM25 and the vector search on two connections side by side was measured
    /// slower under 16 clients: every question then waited for a second connection.
    pub fn search_snapshot(&self, ask: &SnapshotQuery<'_>) -> Result<SnapshotSearch> {
        let snapshot = ask.snapshot;
        let unique = bm25_terms(ask.terms);
        let lexical = if unique.is_empty() || ask.lexical_limit == 0 {
            None
        } else {
            // Statistics not kept yet are read with the question (no round trip of their
            // own), and its postings sent only while they are few enough
            // ([`LIST_POSTINGS_AT_MOST`]).
            let (mut statistics, mut unknown, mut avg) =
                kept_statistics(&self.idf, snapshot.id, &unique);
            let limit = self.reader_bm25_pairs as i64;
            let counts_of = |statistics: &TermStatistics| -> Vec<i64> {
                unique
                    .iter()
                    .map(|t| statistics.get(t).map_or(0, |s| s.1))
                    .collect()
            };
            let kept_pairs: i64 = counts_of(&statistics).iter().sum();
            if (limit == 0 || kept_pairs > limit) && (!unknown.is_empty() || avg.is_none()) {
                // The database will rank them (always, or these terms' postings alone are
                // more than a reader ranks): it is sent the idf, read first.
                let (read, average) = self.idf(snapshot, &unique)?;
                (statistics, avg) = (read, Some(average));
                unknown.clear();
            }
            let idf: Vec<f32> = unique
                .iter()
                .map(|t| statistics.get(t).map_or(0.0, |s| s.0))
                .collect();
            let counts = counts_of(&statistics);
            // At most this many postings come back (the excluded paths' are not sent).
            let pairs: i64 = counts.iter().sum();
            Some(LexicalAsk {
                terms: unique,
                idf,
                avg: avg.unwrap_or(1.0).max(1.0),
                avg_known: avg.is_some(),
                counts,
                by_reader: limit > 0 && (!unknown.is_empty() || pairs <= limit),
                unknown,
            })
        };
        let dims = snapshot.identity.dimensions;
        let nearest = ask
            .vector
            .filter(|q| dims > 0 && q.len() == dims && ask.vector_limit > 0)
            .map(vector_of);
        let pool = self.reader.clone();
        let at = self.reader_at.clone();
        let id = snapshot.id;
        let (list_id, replaced, own) = list_parameters(snapshot, ask.excluded);
        let shared = PostingsShared::of(snapshot, &own);
        let changes = replaced.is_some();
        let embedder = snapshot.identity.embedder.clone();
        let excluded = ask.excluded.to_vec();
        let (repo, ref_name) = (ask.repo.to_string(), ask.ref_name.to_string());
        let (lexical_limit, vector_limit) = (ask.lexical_limit as i64, ask.vector_limit as i64);
        let head_weight = ask.head_weight;
        let texts_top = ask.texts_top;
        let ef = ask.ef.max(ask.vector_limit).min(1000);
        let limit = self.reader_bm25_pairs as i64;
        let kept = self.idf.clone();
        // The whole list's parameters, for statistics read with the question (they count
        // every file, the excluded ones too).
        let whole_list = lexical
            .as_ref()
            .filter(|l| l.reads_statistics())
            .map(|_| list_parameters(snapshot, &[]));
        let out = self.read(async move {
            let mut lexical = lexical;
            let err = |e: tokio_postgres::Error| db_error(&at, e);
            let client = pool.get().await.map_err(|e| db_error(&at, e))?;
            let (lexical_text, nearest_text) = (lexical_sql(changes), nearest_sql(dims, changes));
            let reads_statistics = lexical.as_ref().is_some_and(LexicalAsk::reads_statistics);
            let postings_text = match reads_statistics {
                false => LIST_POSTINGS,
                true => LIST_POSTINGS_AT_MOST,
            };
            // What a reader that ranks BM25 reads besides its list's postings: a list of
            // changes' own versions' postings, and the excluded paths' versions.
            let by_reader = lexical.as_ref().is_some_and(|l| l.by_reader);
            let reads_own = by_reader && !own.is_empty();
            let own_read = shared.read();
            let reads_excluded = by_reader && !excluded.is_empty();
            let frequencies_text = if changes {
                CHANGED_DOCUMENT_FREQUENCIES
            } else {
                DOCUMENT_FREQUENCIES
            };
            // The question's settings, made by its first statement and undone by its last
            // (`QUESTION_START`, `QUESTION_END`), all in the one round trip:
            // - No sorts: the planner may rank the snapshot's chunks by exact distance
            //   (every vector's distance computed, then sorted) instead of walking the HNSW
            //   graph, once the tables are vacuumed and index-only scans look cheap:
            //   measured at 57 ms a question against 2 ms. The other statements need
            //   their sorts and keep them (no plan without one exists).
            // - Generic plans: planned once per connection, not at every question with the
            //   question's values (BM25's custom plan cost 0.55 ms of its 2 ms; the
            //   throughput of 16 clients went up a fifth). Their shapes do not depend on
            //   the values: the terms and the excluded paths are arrays, the snapshot one
            //   of many. The statistics' statements need both as well (see `idf`).
            // Undone at the end: the pool also serves the writer's one-off statements,
            // which keep PostgreSQL's choices.
            let ef = ef.to_string();
            // Prepared once per connection (the first use pipelines them).
            let rows_text = chunk_rows_sql();
            let (
                start,
                end,
                lexical_stmt,
                nearest_stmt,
                rows_stmt,
                statistics_stmts,
                own_stmt,
                excluded_stmt,
            ) = tokio::try_join!(
                client.prepare_cached(QUESTION_START),
                client.prepare_cached(QUESTION_END),
                async {
                    match &lexical {
                        Some(l) if l.by_reader => {
                            client.prepare_cached(postings_text).await.map(Some)
                        }
                        Some(_) => client.prepare_cached(&lexical_text).await.map(Some),
                        None => Ok(None),
                    }
                },
                async {
                    match nearest {
                        Some(_) => client.prepare_cached(&nearest_text).await.map(Some),
                        None => Ok(None),
                    }
                },
                async {
                    match &lexical {
                        Some(l) if l.by_reader => client.prepare_cached(&rows_text).await.map(Some),
                        _ => Ok(None),
                    }
                },
                async {
                    if !reads_statistics {
                        return Ok(None);
                    }
                    let (of_snapshot, of_terms) = tokio::try_join!(
                        client.prepare_cached(SNAPSHOT_STATISTICS),
                        client.prepare_cached(frequencies_text)
                    )?;
                    Ok(Some((of_snapshot, of_terms)))
                },
                async {
                    match reads_own {
                        true => client.prepare_cached(OWN_POSTINGS).await.map(Some),
                        false => Ok(None),
                    }
                },
                async {
                    match reads_excluded {
                        true => client.prepare_cached(LISTED_VERSIONS).await.map(Some),
                        false => Ok(None),
                    }
                },
            )
            .map_err(err)?;
            // First on the wire (the futures are polled in order): the ref check and the
            // settings; the statistics not kept yet; then the rankings; last the settings
            // undone.
            let now = async {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&repo, &ref_name, &ef];
                client.query_one(&start, &params).await
            };
            let unknown: Vec<String> = lexical
                .as_ref()
                .map(|l| l.unknown.clone())
                .unwrap_or_default();
            let statistics = async {
                match (&statistics_stmts, &whole_list) {
                    (Some((of_snapshot, of_terms)), Some((list, replaced, own))) => {
                        let snapshot_params: [Param<'_>; 1] = [&id];
                        let terms_params = with_changes(
                            vec![list, &unknown],
                            replaced.as_ref().map(|r| [own as Param<'_>, r]),
                        );
                        let (row, rows) = tokio::try_join!(
                            client.query_one(of_snapshot, &snapshot_params),
                            client.query(of_terms, &terms_params),
                        )?;
                        Ok(Some((row, rows)))
                    }
                    _ => Ok(None),
                }
            };
            // A snapshot that lists changes passes two more after the parameters a full
            // list's statements take: BM25's its own versions, the nearest vectors' its id,
            // each then the replaced versions (see `changed_blobs`, `nearest_sql`).
            let lexical_changes = replaced.as_ref().map(|r| [&own as Param<'_>, r]);
            let nearest_changes = replaced.as_ref().map(|r| [&id as Param<'_>, r]);
            let lexical_rows = async {
                match (&lexical_stmt, &lexical) {
                    (Some(stmt), Some(l)) if l.by_reader && reads_statistics => {
                        client.query(stmt, &[&list_id, &l.terms, &limit]).await
                    }
                    (Some(stmt), Some(l)) if l.by_reader => {
                        client.query(stmt, &[&list_id, &l.terms]).await
                    }
                    (Some(stmt), Some(l)) => {
                        let params = with_changes(
                            l.top_params(&list_id, &lexical_limit, &excluded, &head_weight),
                            lexical_changes,
                        );
                        client.query(stmt, &params).await
                    }
                    _ => Ok(Vec::new()),
                }
            };
            let nearest_rows = async {
                match (&nearest_stmt, &nearest) {
                    (Some(stmt), Some(q)) => {
                        let params = with_changes(
                            vec![&list_id, q, &embedder, &vector_limit, &excluded],
                            nearest_changes,
                        );
                        client.query(stmt, &params).await
                    }
                    _ => Ok(Vec::new()),
                }
            };
            let own_rows = async {
                match (&own_stmt, &lexical) {
                    (Some(stmt), Some(l)) => client.query(stmt, &[&own_read, &l.terms]).await,
                    _ => Ok(Vec::new()),
                }
            };
            let excluded_rows = async {
                match &excluded_stmt {
                    Some(stmt) => client.query(stmt, &[&list_id, &excluded]).await,
                    None => Ok(Vec::new()),
                }
            };
            let undone = client.execute(&end, &[]);
            let (now, statistics, mut lexical_rows, own_rows, excluded_rows, nearest_rows, _) =
                match tokio::try_join!(
                    now,
                    statistics,
                    lexical_rows,
                    own_rows,
                    excluded_rows,
                    nearest_rows,
                    undone
                ) {
                    Ok(found) => found,
                    Err(e) => {
                        // Stopped half way, the question may have left its settings on
                        // the session: the connection is closed, not given back.
                        drop(deadpool_postgres::Object::take(client));
                        return Err(err(e));
                    }
                };
            let now: Option<i64> = now.try_get(0).map_err(err)?;
            // The statistics read: kept, and put in their terms' places.
            if let (Some((row, rows)), Some(l)) = (&statistics, lexical.as_mut()) {
                let total = row.try_get::<_, Option<i64>>(0).map_err(err)?.unwrap_or(0);
                let average: f32 = row.try_get(1).map_err(err)?;
                let counts = counts_of_rows(rows, l.unknown.len());
                let read = keep_statistics(&kept, id, total, average, &l.unknown, &counts);
                for (t, (idf, count)) in l.unknown.iter().zip(read) {
                    if let Some(place) = l.terms.iter().position(|x| x == t) {
                        l.idf[place] = idf;
                        l.counts[place] = count;
                    }
                }
                l.avg = average.max(1.0);
                l.avg_known = true;
            }
            // More postings than a reader ranks were held back: the database ranks them,
            // in a second round trip with the question's settings again.
            if let (Some(l), true) = (lexical.as_mut(), reads_statistics) {
                if lexical_rows.is_empty() && l.counts.iter().sum::<i64>() > limit {
                    l.by_reader = false;
                    let stmt = client.prepare_cached(&lexical_text).await.map_err(err)?;
                    let params = with_changes(
                        l.top_params(&list_id, &lexical_limit, &excluded, &head_weight),
                        lexical_changes,
                    );
                    let params_start: [Param<'_>; 3] = [&repo, &ref_name, &ef];
                    match tokio::try_join!(
                        client.query_one(&start, &params_start),
                        client.query(&stmt, &params),
                        client.execute(&end, &[]),
                    ) {
                        Ok((_, rows, _)) => lexical_rows = rows,
                        Err(e) => {
                            drop(deadpool_postgres::Object::take(client));
                            return Err(err(e));
                        }
                    }
                }
            }
            let mut chunks = HashMap::with_capacity(lexical_rows.len() + nearest_rows.len());
            // Each row's score from its second column: BM25's, or the cosine distance of
            // the nearest vectors (the similarity is 1 - it, computed as the database
            // computed it before: in double precision, then rounded to single).
            let mut ranking = |rows: Vec<Row>, distances: bool| -> Vec<(ChunkId, f32)> {
                rows.iter()
                    .filter_map(|r| {
                        let chunk = chunk_of_row(r, 2)?;
                        let score = match distances {
                            true => r.get::<_, Option<f64>>(1).map_or(0.0, |d| (1.0 - d) as f32),
                            false => r.get::<_, Option<f32>>(1).unwrap_or(0.0),
                        };
                        let id = chunk.id;
                        chunks.entry(id).or_insert(chunk);
                        Some((id, score))
                    })
                    .collect()
            };
            let mut vector = ranking(nearest_rows, true);
            vector.sort_by(best_first);
            let lexical = match (&lexical, &rows_stmt) {
                (Some(l), Some(rows_stmt)) if l.by_reader => {
                    // The list's postings but those of the versions it no longer has
                    // (replaced, or of excluded paths), then its own versions'; each in
                    // its terms' order, as the database sums them.
                    let mut dropped: Vec<i64> = replaced.clone().unwrap_or_default();
                    for r in &excluded_rows {
                        dropped.push(r.try_get(0).map_err(err)?);
                    }
                    dropped.sort_unstable();
                    dropped.dedup();
                    let mut listed = Vec::with_capacity(lexical_rows.len());
                    for r in &lexical_rows {
                        let place = r.try_get::<_, i32>(0).map_err(err)?.max(1) - 1;
                        let bytes: &[u8] = r.try_get(1).map_err(err)?;
                        listed.push((place as usize, bytes));
                    }
                    listed.sort_by_key(|&(place, _)| place);
                    let mut own_postings = Vec::with_capacity(own_rows.len());
                    for r in &own_rows {
                        let place = r.try_get::<_, i32>(0).map_err(err)?.max(1) - 1;
                        let blob_id: i64 = r.try_get(1).map_err(err)?;
                        let packed: Int8Array = r.try_get(2).map_err(err)?;
                        own_postings.push((place as usize, blob_id, packed));
                    }
                    own_postings.sort_by_key(|&(place, ..)| place);
                    let from_list = listed.iter().flat_map(|&(place, bytes)| {
                        versions::list_postings(bytes)
                            .filter(|(blob_id, _)| {
                                dropped.is_empty() || dropped.binary_search(blob_id).is_err()
                            })
                            .map(move |(blob_id, p)| (place, blob_id, p))
                    });
                    let shared = &shared;
                    let from_own = own_postings.iter().flat_map(|(place, blob_id, p)| {
                        let place = *place;
                        shared.targets(*blob_id).flat_map(move |(target, upto)| {
                            p.values()
                                .filter(move |&p| versions::posting_fields(p).0 <= upto)
                                .map(move |p| (place, target, p))
                        })
                    });
                    let ranked = bm25_ranked(
                        from_list.chain(from_own),
                        &l.idf,
                        head_weight,
                        l.avg,
                        lexical_limit as usize,
                    );
                    // The winners' rows, but those the vector ranking brought already,
                    // and the texts of both rankings' best.
                    let mut texts: Vec<i64> = Vec::with_capacity(2 * texts_top);
                    texts.extend(ranked.iter().take(texts_top).map(|(id, _)| id.0));
                    texts.extend(vector.iter().take(texts_top).map(|(id, _)| id.0));
                    let mut read: Vec<i64> = ranked
                        .iter()
                        .filter(|(id, _)| !chunks.contains_key(id))
                        .map(|(id, _)| id.0)
                        .collect();
                    read.extend(&texts);
                    read.sort_unstable();
                    read.dedup();
                    if !read.is_empty() {
                        for r in client
                            .query(rows_stmt, &[&read, &texts])
                            .await
                            .map_err(err)?
                        {
                            let Some(chunk) = chunk_of_row(&r, 2) else {
                                continue;
                            };
                            let text: Option<String> = r.try_get(1).map_err(err)?;
                            let held = chunks.entry(chunk.id).or_insert(chunk);
                            if let Some(text) = text {
                                held.chunk.text = text;
                            }
                        }
                    }
                    ranked
                        .into_iter()
                        .filter(|(id, _)| chunks.contains_key(id))
                        .collect()
                }
                _ => ranking(lexical_rows, false),
            };
            Ok(SnapshotSearch {
                lexical,
                vector,
                chunks,
                moved: now != Some(id),
            })
        })?;
        if out.moved {
            self.forget_ref(ask.repo, ask.ref_name);
        }
        Ok(out)
    }

    /// Readies the reading pool for questions on `snapshot`: `connections` of it (at
    /// most the pool's size) connected, each with a question's statements prepared, and
    /// the snapshot's BM25 statistics read. A server does it as it starts, so that its
    /// first question does not connect (a TCP and SCRAM handshake, a server process
    /// started) and prepare its statements first.
    pub fn warm_reader(&self, snapshot: &Snapshot, connections: usize) -> Result<()> {
        self.idf(snapshot, &[])?;
        let dims = snapshot.identity.dimensions;
        // The statements of the snapshot's shape (see `search_snapshot`).
        let changes = matches!(snapshot.list, FileList::Changes { .. });
        let (pool, at) = (self.reader.clone(), self.reader_at.clone());
        let connections = connections.clamp(1, pool.status().max_size.max(1));
        self.read(async move {
            let warming = (0..connections).map(|_| {
                let (pool, at) = (pool.clone(), at.clone());
                async move {
                    let db = Db::get(&pool, at).await?;
                    let (lexical, nearest, rows) = (
                        lexical_sql(changes),
                        nearest_sql(dims, changes),
                        chunk_rows_sql(),
                    );
                    let frequencies = if changes {
                        CHANGED_DOCUMENT_FREQUENCIES
                    } else {
                        DOCUMENT_FREQUENCIES
                    };
                    tokio::try_join!(
                        db.prepared(QUESTION_START),
                        db.prepared(QUESTION_END),
                        db.prepared(&lexical),
                        db.prepared(LIST_POSTINGS),
                        db.prepared(LIST_POSTINGS_AT_MOST),
                        // An editor's questions leave its local edits' paths out.
                        db.prepared(LISTED_VERSIONS),
                        async {
                            match changes {
                                true => db.prepared(OWN_POSTINGS).await.map(Some),
                                false => Ok(None),
                            }
                        },
                        db.prepared(SNAPSHOT_STATISTICS),
                        db.prepared(frequencies),
                        db.prepared(&rows),
                        db.prepared(CHUNK_TEXTS),
                        async {
                            match dims {
                                0 => Ok(None),
                                _ => db.prepared(&nearest).await.map(Some),
                            }
                        },
                    )?;
                    Ok::<_, Error>(db)
                }
            });
            // All held at once, so that each is a connection of its own.
            let warmed = futures_util::future::try_join_all(warming).await?;
            drop(warmed);
            Ok(())
        })
    }

    /// The texts of chunks, by id (a chunk's text never changes: any snapshot's will do).
    pub fn chunk_texts(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        self.read_with(move |db| async move {
            let rows = db.query(CHUNK_TEXTS, &[&ids]).await?;
            Ok(rows
                .into_iter()
                .map(|r| (ChunkId(r.get(0)), r.get(1)))
                .collect())
        })
    }

    /// Chunks by id, with the path of their file.
    pub fn chunks_by_id(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
        self.read_with(move |db| async move {
            let rows = db
                .query(
                    "SELECT c.id, b.path, c.language, c.kind, c.symbol, c.name, c.start_byte, c.end_byte,
                            c.start_line, c.end_line, c.text
                     FROM chunks c JOIN blobs b ON b.id = c.blob_id WHERE c.id = ANY($1::bigint[])",
                    &[&ids],
                )
                .await?;
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
        self.read_with(move |db| async move {
            let row = db
                .query_one(
                    "SELECT (SELECT chunk_count FROM snapshots WHERE id = $1), pg_database_size(current_database())",
                    &[&snapshot],
                )
                .await?;
            Ok((
                row.get::<_, Option<i64>>(0).unwrap_or(0) as u64,
                row.get::<_, i64>(1) as u64,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk's posting for one term as the writer stores it: chunk `ord` of a version.
    fn posting(ord: i64, head: u32, body: u32, terms: i32) -> i64 {
        versions::posting(ord, head, body, terms)
    }

    /// The id of chunk `ord` of file version 3, which the tests' postings are of.
    fn id(ord: usize) -> i64 {
        versions::chunk_id(3, ord)
    }

    /// BM25 of one term in one chunk, in `f64`, as FTS5 defines it (k1 1.2, b 0.75).
    fn bm25(idf: f64, head_weight: f64, head: f64, body: f64, terms: f64, avg: f64) -> f64 {
        let w = head_weight * head + body;
        idf * w * 2.2 / (w + 1.2 * (0.25 + 0.75 * terms / avg))
    }

    #[test]
    fn a_reader_ranks_postings_by_bm25_summed_over_the_query_terms() {
        // Term 0 ("ledger") in chunks 7 and 9, term 1 ("balance") in chunks 9 and 11.
        let rows = vec![
            (0, 3, posting(7, 1, 2, 40)),
            (0, 3, posting(9, 0, 1, 80)),
            (1, 3, posting(9, 0, 3, 80)),
            (1, 3, posting(11, 0, 1, 10)),
        ];
        let idf = [1.5f32, 0.75];
        let ranked = bm25_ranked(rows.clone(), &idf, 2.0, 50.0, 10);
        let expected = [
            (
                id(9),
                bm25(1.5, 2.0, 0.0, 1.0, 80.0, 50.0) + bm25(0.75, 2.0, 0.0, 3.0, 80.0, 50.0),
            ),
            (id(7), bm25(1.5, 2.0, 1.0, 2.0, 40.0, 50.0)),
            (id(11), bm25(0.75, 2.0, 0.0, 1.0, 10.0, 50.0)),
        ];
        let mut by_score = expected.to_vec();
        by_score.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(
            ranked.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
            by_score.iter().map(|(id, _)| *id).collect::<Vec<_>>()
        );
        for ((_, got), (_, want)) in ranked.iter().zip(&by_score) {
            assert!((*got as f64 - want).abs() < 1e-5, "{got} against {want}");
        }
        // The limit keeps the best; a term with no idf (not asked) adds nothing.
        let best = bm25_ranked(rows.clone(), &idf, 2.0, 50.0, 1);
        assert_eq!(best.len(), 1);
        assert_eq!(best[0].0, ranked[0].0);
        let first_term_only = bm25_ranked(rows.clone(), &idf[..1], 2.0, 50.0, 10);
        assert_eq!(
            first_term_only
                .iter()
                .map(|(id, _)| id.0)
                .collect::<Vec<_>>(),
            vec![id(7), id(9)]
        );
    }

    #[test]
    fn postings_in_any_order_sum_each_chunks_terms_in_the_terms_order() {
        // Five terms over chunks of three versions, each term's postings in chunk order
        // (a whole list's) and then out of it (a list of changes' own), the terms
        // interleaved: every chunk's score is the f32 sum of its terms' in term order,
        // as the database's sum() makes it.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut draw = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let idf = [0.3f32, 2.5, 1.1, 0.07, 4.0];
        let mut rows = Vec::new();
        for term in 0..idf.len() {
            let mut listed: Vec<(i64, i64)> = (0..40)
                .map(|_| (1 + draw(2) as i64, draw(60) as i64))
                .collect();
            listed.sort_unstable();
            listed.dedup();
            let own: Vec<(i64, i64)> = (0..8).map(|_| (7, draw(60) as i64)).collect();
            let mut own = own;
            own.sort_unstable();
            own.dedup();
            own.reverse();
            for (blob, ord) in listed.into_iter().chain(own) {
                let p = posting(
                    ord,
                    draw(3) as u32,
                    1 + draw(9) as u32,
                    5 + draw(300) as i32,
                );
                rows.push((term, blob, p));
            }
        }
        // Interleave the terms as rows of several statements would come.
        for i in (1..rows.len()).rev() {
            if draw(3) == 0 {
                let j = i - 1;
                if rows[i].0 != rows[j].0 {
                    rows.swap(i, j);
                }
            }
        }
        let score = |term: usize, p: i64| {
            let (_, head, body, terms) = versions::posting_fields(p);
            let w = 2.0f32 * head as f32 + body as f32;
            idf[term] * (w * 2.2) / (w + 1.2 * (0.25 + 0.75 * terms as f32 / 50.0))
        };
        let mut by_chunk: std::collections::BTreeMap<i64, Vec<(usize, f32)>> = Default::default();
        for &(term, blob, p) in &rows {
            let (ord, ..) = versions::posting_fields(p);
            by_chunk
                .entry(versions::chunk_id(blob, ord as usize))
                .or_default()
                .push((term, score(term, p)));
        }
        let mut expected: Vec<(i64, f32)> = by_chunk
            .into_iter()
            .map(|(chunk, mut terms)| {
                terms.sort_by_key(|&(term, _)| term);
                let mut sum = terms[0].1;
                for &(_, s) in &terms[1..] {
                    sum += s;
                }
                (chunk, sum)
            })
            .collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        expected.truncate(25);
        let ranked = bm25_ranked(rows, &idf, 2.0, 50.0, 25);
        assert_eq!(
            ranked
                .iter()
                .map(|(id, s)| (id.0, s.to_bits()))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|&(id, s)| (id, s.to_bits()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn equal_scores_rank_by_chunk_id_as_the_database_orders_them() {
        let same = |ord| posting(ord, 0, 1, 20);
        let rows = vec![(0, 3, same(30)), (0, 3, same(10)), (0, 3, same(20))];
        let ranked = bm25_ranked(rows.clone(), &[1.0], 2.0, 20.0, 2);
        assert_eq!(
            ranked.iter().map(|(id, _)| id.0).collect::<Vec<_>>(),
            vec![id(10), id(20)]
        );
        assert!(bm25_ranked(rows.clone(), &[1.0], 2.0, 20.0, 0).is_empty());
    }
}
