//! The lexical stage: BM25 over the FTS5 table `chunks_fts` (columns head and body), scored
//! here with the very formula of FTS5's `bm25()` instead of by `bm25()` itself.
//!
//! Why: `SELECT ... bm25(chunks_fts) ... ORDER BY ... LIMIT 50` calls `bm25()` once per
//! matching row, and each call reads the row's token count from `chunks_fts_docsize` (a
//! B-tree lookup), walks the positions of every query term in the row and feeds a sorter.
//! An OR of common terms ("fn", "mut", "test") matches tens of thousands of chunks at a
//! million lines, so that per-row work was most of a search's CPU. Here FTS5 only walks each
//! term's postings once, in C, through an auxiliary function (`ragls_postings`, registered
//! per connection) that uses `xQueryPhrase` exactly as `bm25()` does to count a term's
//! documents, and returns per posting the row id and the term's count in head and body.
//! The token count of each chunk is kept in memory (two varints per chunk in
//! `chunks_fts_docsize`, refreshed by id: chunk ids only grow, so new rows are those above
//! the largest id seen). The score is then computed from the same inputs FTS5 uses (row
//! count and total tokens from `xRowCount` / `xColumnTotalSize`, documents per term from the
//! walk, weighted term frequency summed per occurrence, head before body) with the same
//! floating-point operations in the same order, so each score is bit-identical to
//! `bm25()`'s; only rows with exactly equal scores may come out in another order (FTS5's
//! sorter leaves that order unspecified; here the lower chunk id comes first).
//!
//! Any surprise (the function cannot be registered, a size record does not decode, a
//! matching row has no size record) falls back to FTS5's own `bm25()` query, which stays
//! available as [`Store::lexical_search_fts5`], the reference the tests compare against.

use super::{ChunkId, Store};
use crate::error::Result;
use rusqlite::types::ValueRef;
use rusqlite::{ffi, params, Connection, OptionalExtension};
use std::cell::RefCell;
use std::os::raw::{c_int, c_void};

/// FTS5's `bm25()` constants (fts5_aux.c).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// The auxiliary function's name; registered on each connection that searches.
const POSTINGS_FN: &std::ffi::CStr = c"ragls_postings";

/// What the lexical stage keeps between searches of one connection.
#[derive(Default)]
pub(super) struct LexicalCache {
    state: RefCell<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// `None` until the first search tried to register the function; `Some(false)`: it
    /// could not be, so every search takes FTS5's own `bm25()`.
    registered: Option<bool>,
    /// Tokens of each chunk (head + body: `xColumnSize(-1)`): (row id, tokens), by id.
    /// Sorted, because postings come in id order too: scoring merges them, no hashing.
    lengths: Vec<(i64, u32)>,
    /// The largest row id in `lengths`; rows above it are new.
    max_id: i64,
    /// How many rows the table had at the last search (FTS5's row count). Entries of
    /// deleted chunks are harmless, since postings never name them, but once `lengths`
    /// holds more than twice this they are dropped by a full reload, to bound memory in a
    /// long-lived server that re-indexes edits.
    live: usize,
}

/// The FTS5 match expression a search asks; `None` when there is nothing to ask (no
/// usable term, or no result wanted).
fn query_of(terms: &[String], limit: usize) -> Option<String> {
    let unique = unique_terms(terms);
    (!unique.is_empty() && limit > 0).then(|| match_expression(&unique))
}

/// The query terms FTS5 is asked for: non-empty, alphanumeric (anything else would be
/// FTS5 query syntax), each once, in their first order (the phrase order that the scores
/// are summed in).
fn unique_terms(terms: &[String]) -> Vec<&str> {
    let mut unique: Vec<&str> = Vec::new();
    for t in terms {
        if !t.is_empty() && t.chars().all(|c| c.is_alphanumeric()) && !unique.contains(&t.as_str())
        {
            unique.push(t);
        }
    }
    unique
}

/// `"t1" OR "t2" ...`: every chunk that has any of the terms, in head or body.
fn match_expression(unique: &[&str]) -> String {
    unique
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

impl Store {
    /// BM25 over the lexical index: `terms` are already tokenized (see `tokenize`); head
    /// terms count `head_weight` times the body's. Returns (chunk id, score), best first;
    /// higher is better. The ranking of FTS5's `bm25()` ([`Store::lexical_search_fts5`]),
    /// computed at a fraction of its cost (see the module's doc).
    pub fn lexical_search(
        &self,
        terms: &[String],
        limit: usize,
        head_weight: f32,
    ) -> Result<Vec<(ChunkId, f32)>> {
        let Some(expr) = query_of(terms, limit) else {
            return Ok(Vec::new());
        };
        match self.scored_here(&expr, limit, head_weight)? {
            Some(hits) => Ok(hits),
            None => self.fts5_bm25(&expr, limit, head_weight),
        }
    }

    /// Registers the scoring function and loads the chunk sizes now (a server does this
    /// once ready), so that the first search does not pay for them.
    pub fn prime_lexical(&self) -> Result<()> {
        let mut state = self.lexical.state.borrow_mut();
        if state.registered.is_none() {
            state.registered = Some(register(&self.conn).is_ok());
        }
        if state.registered == Some(true) {
            let _snapshot = if self.conn.is_autocommit() {
                Some(self.conn.unchecked_transaction()?)
            } else {
                None
            };
            state.refresh(&self.conn)?;
        }
        Ok(())
    }

    /// The same ranking from FTS5's own `bm25()`, one call per matching row: the reference
    /// [`Store::lexical_search`] is compared against, and its fallback.
    pub fn lexical_search_fts5(
        &self,
        terms: &[String],
        limit: usize,
        head_weight: f32,
    ) -> Result<Vec<(ChunkId, f32)>> {
        let Some(expr) = query_of(terms, limit) else {
            return Ok(Vec::new());
        };
        self.fts5_bm25(&expr, limit, head_weight)
    }

    fn fts5_bm25(&self, expr: &str, limit: usize, head_weight: f32) -> Result<Vec<(ChunkId, f32)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT rowid, bm25(chunks_fts, ?1, 1.0) AS s FROM chunks_fts WHERE chunks_fts MATCH ?2 ORDER BY s LIMIT ?3",
        )?;
        let rows = st.query_map(params![head_weight as f64, expr, limit as i64], |r| {
            Ok((r.get::<_, ChunkId>(0)?, -(r.get::<_, f64>(1)? as f32)))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The best `limit` chunks scored here; `None` when this path cannot answer (then
    /// FTS5's `bm25()` does).
    fn scored_here(
        &self,
        expr: &str,
        limit: usize,
        head_weight: f32,
    ) -> Result<Option<Vec<(ChunkId, f32)>>> {
        let mut state = self.lexical.state.borrow_mut();
        if state.registered.is_none() {
            state.registered = Some(register(&self.conn).is_ok());
        }
        if state.registered != Some(true) {
            return Ok(None);
        }
        // One read transaction, so that the sizes and the postings come from the same
        // snapshot even while an indexer commits (outside one, every statement would take
        // its own). Inside a caller's transaction, that one already is the snapshot.
        let tx = if self.conn.is_autocommit() {
            Some(self.conn.unchecked_transaction()?)
        } else {
            None
        };
        if !state.refresh(&self.conn)? {
            return Ok(None);
        }
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached(
                "SELECT ragls_postings(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1 LIMIT 1",
            )?
            .query_row([expr], |r| r.get(0))
            .optional()?;
        let Some(blob) = blob else {
            // Nothing matches.
            return Ok(Some(Vec::new()));
        };
        let Some(postings) = Postings::decode(&blob) else {
            return Ok(None);
        };
        let hits = state.score(&self.conn, &postings, limit, head_weight as f64)?;
        drop(tx);
        Ok(hits)
    }
}

impl CacheState {
    /// Loads the sizes of rows added since the last call (all of them the first time, or
    /// when ids went backwards: the table was emptied and refilled). False when a size
    /// record does not decode.
    fn refresh(&mut self, conn: &Connection) -> Result<bool> {
        let max: Option<i64> = conn
            .prepare_cached("SELECT max(id) FROM chunks_fts_docsize")?
            .query_row([], |r| r.get(0))?;
        let max = max.unwrap_or(0);
        let full = max < self.max_id || self.lengths.len() > 2 * self.live + 10_000;
        if full {
            self.lengths.clear();
            self.max_id = 0;
        }
        if max == self.max_id {
            return Ok(true);
        }
        // In id order (the table's own), so that appending keeps `lengths` sorted.
        let mut st =
            conn.prepare_cached("SELECT id, sz FROM chunks_fts_docsize WHERE id > ?1 ORDER BY id")?;
        let mut rows = st.query([self.max_id])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let ValueRef::Blob(sz) = r.get_ref(1)? else {
                return Ok(false);
            };
            let Some(len) = row_tokens(sz) else {
                return Ok(false);
            };
            self.lengths.push((id, len));
            self.max_id = id;
        }
        Ok(true)
    }

    /// A row's token count, from memory (looked for from `*at` on: rows are asked for in
    /// id order, so `*at` only moves forward) or, for a row this snapshot has that the
    /// cache missed, from its size record.
    fn tokens(&self, conn: &Connection, at: &mut usize, id: i64) -> Result<Option<u32>> {
        // Galloping: doubling steps past the rows before `id`, then a binary search.
        let l = &self.lengths;
        let (mut lo, mut hi, mut step) = (*at, *at, 1);
        while hi < l.len() && l[hi].0 < id {
            lo = hi + 1;
            hi += step;
            step *= 2;
        }
        let hi = hi.min(l.len()).max(lo);
        *at = lo + l[lo..hi].partition_point(|x| x.0 < id);
        if let Some(&(found, n)) = l.get(*at) {
            if found == id {
                return Ok(Some(n));
            }
        }
        let sz: Option<Option<Vec<u8>>> = conn
            .prepare_cached("SELECT sz FROM chunks_fts_docsize WHERE id=?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        Ok(sz.flatten().and_then(|b| row_tokens(&b)))
    }

    /// FTS5's bm25 (fts5_aux.c, `fts5Bm25Function`) for every row in `postings`, the best
    /// `limit` kept. `None` when a row's size is unknown.
    fn score(
        &mut self,
        conn: &Connection,
        postings: &Postings,
        limit: usize,
        head_weight: f64,
    ) -> Result<Option<Vec<(ChunkId, f32)>>> {
        self.live = usize::try_from(postings.rows).unwrap_or(0);
        let avgdl = postings.tokens as f64 / postings.rows as f64;
        let idfs: Vec<f64> = postings
            .phrases
            .iter()
            .map(|phrase| {
                let hits = phrase.len() as i64;
                let idf = (((postings.rows - hits) as f64 + 0.5) / (hits as f64 + 0.5)).ln();
                if idf <= 0.0 {
                    1e-6
                } else {
                    idf
                }
            })
            .collect();
        // Each phrase's postings are in id order: merged, every row is met once with all
        // its phrases at hand, and its sum is added up in phrase order, as bm25() does
        // (the phrases a row lacks add an exact 0.0 there).
        let mut next = vec![0usize; postings.phrases.len()];
        let mut at = 0;
        let mut ranked: Vec<(i64, f64)> =
            Vec::with_capacity(postings.phrases.iter().map(|p| p.len()).max().unwrap_or(0));
        loop {
            let Some(id) = postings
                .phrases
                .iter()
                .zip(&next)
                .filter_map(|(p, &i)| p.get(i).map(|e| e.0))
                .min()
            else {
                break;
            };
            let Some(tokens) = self.tokens(conn, &mut at, id)? else {
                return Ok(None);
            };
            let d = tokens as f64;
            let mut score = 0.0f64;
            for ((phrase, i), idf) in postings.phrases.iter().zip(next.iter_mut()).zip(&idfs) {
                let Some(&(pid, in_head, in_body)) = phrase.get(*i) else {
                    continue;
                };
                if pid != id {
                    continue;
                }
                *i += 1;
                // bm25() adds a column's weight per occurrence, head (column 0) first.
                let mut freq = 0.0f64;
                for _ in 0..in_head {
                    freq += head_weight;
                }
                for _ in 0..in_body {
                    freq += 1.0;
                }
                score += idf * ((freq * (K1 + 1.0)) / (freq + K1 * (1.0 - B + B * d / avgdl)));
            }
            ranked.push((id, score));
        }
        let order = |a: &(i64, f64), b: &(i64, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if ranked.len() > limit {
            ranked.select_nth_unstable_by(limit - 1, order);
            ranked.truncate(limit);
        }
        ranked.sort_unstable_by(order);
        Ok(Some(
            ranked
                .into_iter()
                .map(|(id, s)| (ChunkId(id), s as f32))
                .collect(),
        ))
    }
}

/// A row's tokens in all columns (what `xColumnSize(-1)` sums) from its size record in
/// `chunks_fts_docsize`: one SQLite varint per column (head, body).
fn row_tokens(blob: &[u8]) -> Option<u32> {
    let mut at = 0;
    let mut total: u32 = 0;
    for _ in 0..2 {
        let (v, n) = varint(blob.get(at..)?)?;
        at += n;
        total = total.checked_add(u32::try_from(v).ok()?)?;
    }
    (at == blob.len()).then_some(total)
}

/// An SQLite varint (big-endian, 7 bits a byte, the 9th byte all 8): (value, bytes).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(byte), 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// What `ragls_postings` returns, decoded: the table's row and token totals and, per
/// phrase of the query in order, its postings (row id, occurrences in head, in body).
struct Postings {
    rows: i64,
    tokens: i64,
    phrases: Vec<Vec<(i64, u32, u32)>>,
}

impl Postings {
    /// Layout (little-endian): rows i64, tokens i64, phrases u32, then per phrase a count
    /// u32 and that many (id i64, head u32, body u32).
    fn decode(b: &[u8]) -> Option<Postings> {
        let mut at = 0;
        let mut take = |n: usize| -> Option<&[u8]> {
            let s = b.get(at..at + n)?;
            at += n;
            Some(s)
        };
        let rows = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let tokens = i64::from_le_bytes(take(8)?.try_into().ok()?);
        let n = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let mut phrases = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
            let raw = take(count.checked_mul(16)?)?;
            let phrase: Vec<(i64, u32, u32)> = raw
                .chunks_exact(16)
                .map(|e| {
                    (
                        i64::from_le_bytes(e[0..8].try_into().unwrap()),
                        u32::from_le_bytes(e[8..12].try_into().unwrap()),
                        u32::from_le_bytes(e[12..16].try_into().unwrap()),
                    )
                })
                .collect();
            // Scoring merges the phrases, so each must be in id order, as xQueryPhrase
            // walks it; were it not, FTS5's bm25() answers instead.
            if phrase.windows(2).any(|w| w[0].0 >= w[1].0) {
                return None;
            }
            phrases.push(phrase);
        }
        (rows > 0).then_some(Postings {
            rows,
            tokens,
            phrases,
        })
    }
}

/// Registers `ragls_postings` on this connection through the `fts5_api` pointer
/// (`SELECT fts5(?1)` with a bound pointer: SQLite's documented way to reach it).
fn register(conn: &Connection) -> std::result::Result<(), c_int> {
    // SAFETY: plain SQLite C API calls on this connection's handle, which outlives them;
    // the statement is finalized before returning; `api` is written by SQLite through the
    // pointer bound for the statement's one step, read only after it.
    unsafe {
        let db = conn.handle();
        let mut stmt: *mut ffi::sqlite3_stmt = std::ptr::null_mut();
        let rc = ffi::sqlite3_prepare_v2(
            db,
            c"SELECT fts5(?1)".as_ptr(),
            -1,
            &mut stmt,
            std::ptr::null_mut(),
        );
        if rc != ffi::SQLITE_OK {
            return Err(rc);
        }
        let mut api: *mut ffi::fts5_api = std::ptr::null_mut();
        ffi::sqlite3_bind_pointer(
            stmt,
            1,
            (&mut api as *mut *mut ffi::fts5_api).cast::<c_void>(),
            c"fts5_api_ptr".as_ptr(),
            None,
        );
        ffi::sqlite3_step(stmt);
        ffi::sqlite3_finalize(stmt);
        if api.is_null() || (*api).iVersion < 2 {
            return Err(ffi::SQLITE_ERROR);
        }
        let Some(create) = (*api).xCreateFunction else {
            return Err(ffi::SQLITE_ERROR);
        };
        match create(
            api,
            POSTINGS_FN.as_ptr(),
            std::ptr::null_mut(),
            Some(postings_fn),
            None,
        ) {
            ffi::SQLITE_OK => Ok(()),
            rc => Err(rc),
        }
    }
}

/// The auxiliary function: on the row it is called for, walks every phrase's postings
/// (`xQueryPhrase`) and returns them as one blob ([`Postings::decode`]'s layout).
unsafe extern "C" fn postings_fn(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    ctx: *mut ffi::sqlite3_context,
    _n: c_int,
    _args: *mut *mut ffi::sqlite3_value,
) {
    // No panic may cross into C: it becomes an SQL error.
    // SAFETY: SQLite calls this with a valid API table and context for the current row.
    let out = std::panic::catch_unwind(|| unsafe { collect(&*api, fts) });
    // SAFETY: `ctx` is this call's result context; SQLite copies the blob (TRANSIENT).
    unsafe {
        match out {
            Ok(Ok(blob)) => ffi::sqlite3_result_blob64(
                ctx,
                blob.as_ptr().cast::<c_void>(),
                blob.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            ),
            Ok(Err(rc)) => ffi::sqlite3_result_error_code(ctx, rc),
            Err(_) => ffi::sqlite3_result_error_code(ctx, ffi::SQLITE_INTERNAL),
        }
    }
}

/// # Safety
/// `api` and `fts` are what SQLite passed to an auxiliary function call.
unsafe fn collect(
    api: &ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
) -> std::result::Result<Vec<u8>, c_int> {
    let (Some(row_count), Some(total_size), Some(phrase_count), Some(query_phrase)) = (
        api.xRowCount,
        api.xColumnTotalSize,
        api.xPhraseCount,
        api.xQueryPhrase,
    ) else {
        return Err(ffi::SQLITE_ERROR);
    };
    let mut rows: i64 = 0;
    let mut tokens: i64 = 0;
    // SAFETY: the caller's contract; the out-pointers are live locals.
    unsafe {
        ok(row_count(fts, &mut rows))?;
        ok(total_size(fts, -1, &mut tokens))?;
    }
    // SAFETY: as above.
    let n = unsafe { phrase_count(fts) };
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&tokens.to_le_bytes());
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for i in 0..n {
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut walk = Walk {
            out: &mut out,
            count: 0,
        };
        // SAFETY: `walk` outlives the call, which passes it back to `on_row` only.
        unsafe {
            ok(query_phrase(
                fts,
                i,
                (&mut walk as *mut Walk<'_>).cast::<c_void>(),
                Some(on_row),
            ))?;
        }
        let count = walk.count;
        out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    }
    Ok(out)
}

fn ok(rc: c_int) -> std::result::Result<(), c_int> {
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(rc)
    }
}

/// One phrase's walk: the blob being written and how many rows it has so far.
struct Walk<'a> {
    out: &'a mut Vec<u8>,
    count: u32,
}

/// `xQueryPhrase`'s callback, once per row that has the phrase (phrase 0 of this context):
/// appends (row id, occurrences in head, in body).
unsafe extern "C" fn on_row(
    api: *const ffi::Fts5ExtensionApi,
    fts: *mut ffi::Fts5Context,
    user: *mut c_void,
) -> c_int {
    // SAFETY: `user` is the `Walk` that `collect` passed, alive for the whole walk; `api`
    // and `fts` come from SQLite for this row.
    unsafe {
        let walk = &mut *user.cast::<Walk<'_>>();
        let api = &*api;
        let (Some(rowid), Some(first), Some(next)) =
            (api.xRowid, api.xPhraseFirst, api.xPhraseNext)
        else {
            return ffi::SQLITE_ERROR;
        };
        let id = rowid(fts);
        let mut it = ffi::Fts5PhraseIter {
            a: std::ptr::null(),
            b: std::ptr::null(),
        };
        let (mut col, mut off): (c_int, c_int) = (0, 0);
        let rc = first(fts, 0, &mut it, &mut col, &mut off);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let (mut head, mut body) = (0u32, 0u32);
        while col >= 0 {
            if col == 0 {
                head += 1;
            } else {
                body += 1;
            }
            next(fts, &mut it, &mut col, &mut off);
        }
        walk.out.extend_from_slice(&id.to_le_bytes());
        walk.out.extend_from_slice(&head.to_le_bytes());
        walk.out.extend_from_slice(&body.to_le_bytes());
        walk.count += 1;
        ffi::SQLITE_OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Chunk, ChunkKind, Language};
    use crate::store::{text_hash, NewChunk};

    /// A deterministic stream of pseudo-random numbers (xorshift).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Words with skewed frequencies, like code: a few in nearly every chunk ("fn"), some
    /// in many, most in few.
    fn word(rng: &mut Rng) -> String {
        match rng.below(10) {
            0..=2 => ["fn", "let", "mut"][rng.below(3)].to_string(),
            3..=5 => format!("common{}", rng.below(8)),
            _ => format!("rare{}", rng.below(300)),
        }
    }

    fn new_chunk(rng: &mut Rng, n: usize) -> NewChunk {
        let head: Vec<String> = (0..1 + rng.below(4)).map(|_| word(rng)).collect();
        let body: Vec<String> = (0..1 + rng.below(60)).map(|_| word(rng)).collect();
        let text = body.join(" ");
        NewChunk {
            chunk: Chunk {
                language: Language::Rust,
                kind: ChunkKind::Function,
                symbol: format!("fn f{n}"),
                name: format!("f{n}"),
                start_byte: 0,
                end_byte: text.len(),
                start_line: 1,
                end_line: 1,
                text: text.clone(),
            },
            text_hash: text_hash(&text),
            head_terms: head.join(" "),
            body_terms: text,
        }
    }

    fn add_chunks(s: &mut Store, rng: &mut Rng, from: usize, n: usize) -> Vec<ChunkId> {
        let mut w = s.writer().unwrap();
        let ids = (from..from + n)
            .map(|i| {
                w.insert_chunk(&format!("f{}.rs", i % 40), &new_chunk(rng, i))
                    .unwrap()
            })
            .collect();
        w.commit().unwrap();
        ids
    }

    fn queries(rng: &mut Rng) -> Vec<Vec<String>> {
        let mut qs: Vec<Vec<String>> = (0..150)
            .map(|_| (0..1 + rng.below(5)).map(|_| word(rng)).collect())
            .filter(|q: &Vec<String>| !q.is_empty())
            .collect();
        qs.push(vec!["fn".into()]);
        qs.push(vec!["fn".into(), "let".into(), "mut".into()]);
        qs.push(vec!["absent".into(), "rare7".into()]);
        qs.push(vec!["absent".into()]);
        qs
    }

    /// Asserts that both paths give the same chunks with bit-equal scores, best first;
    /// only chunks with exactly equal scores may swap.
    fn assert_same(s: &Store, terms: &[String], limit: usize, head_weight: f32) {
        let unique = unique_terms(terms);
        // The path itself, not `lexical_search`, which would hide a fallback to FTS5.
        let here = s
            .scored_here(&match_expression(&unique), limit, head_weight)
            .unwrap()
            .expect("scored here, no fallback");
        assert_eq!(here, s.lexical_search(terms, limit, head_weight).unwrap());
        let fts5 = s.lexical_search_fts5(terms, limit, head_weight).unwrap();
        let scores = |v: &[(ChunkId, f32)]| v.iter().map(|h| h.1.to_bits()).collect::<Vec<_>>();
        assert_eq!(scores(&here), scores(&fts5), "{terms:?}");
        // Chunks by score group: ties may be cut elsewhere at the limit, so the last
        // group is compared by score only.
        let last = here.last().map(|h| h.1);
        let group = |v: &[(ChunkId, f32)]| {
            let mut g: Vec<(u32, ChunkId)> = v
                .iter()
                .filter(|h| Some(h.1) != last)
                .map(|h| (h.1.to_bits(), h.0))
                .collect();
            g.sort();
            g
        };
        assert_eq!(group(&here), group(&fts5), "{terms:?}");
    }

    #[test]
    fn scores_and_ranking_match_fts5_bm25_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut rng = Rng(0x5eed);
        add_chunks(&mut s, &mut rng, 0, 600);
        let qs = queries(&mut rng);
        for q in &qs {
            for (limit, head_weight) in [(50, 4.0), (10, 1.0), (1000, 2.5), (1, 0.3)] {
                assert_same(&s, q, limit, head_weight);
            }
        }
        // The common words really do match most chunks: what made bm25() slow.
        assert!(s.lexical_search(&["fn".into()], 1000, 4.0).unwrap().len() > 300);
        assert!(s
            .lexical_search(&["absent".into()], 50, 4.0)
            .unwrap()
            .is_empty());
        assert!(s.lexical_search(&[], 50, 4.0).unwrap().is_empty());
        assert!(s.lexical_search(&["fn".into()], 0, 4.0).unwrap().is_empty());
    }

    #[test]
    fn chunks_added_and_removed_after_a_search_are_seen_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut rng = Rng(42);
        let first = add_chunks(&mut s, &mut rng, 0, 200);
        let qs = queries(&mut rng);
        for q in &qs {
            assert_same(&s, q, 50, 4.0);
        }
        // Through this store's own writer...
        add_chunks(&mut s, &mut rng, 200, 150);
        let mut w = s.writer().unwrap();
        for id in &first[..120] {
            w.remove_chunk(*id).unwrap();
        }
        w.commit().unwrap();
        for q in &qs {
            assert_same(&s, q, 50, 4.0);
        }
        let all = s
            .lexical_search(&["fn".into(), "let".into()], 10_000, 4.0)
            .unwrap();
        assert!(all.iter().all(|h| !first[..120].contains(&h.0)));
        // ...and through another connection (an indexer beside a server).
        let mut other = Store::open(dir.path()).unwrap();
        let added = add_chunks(&mut other, &mut rng, 350, 100);
        for q in &qs {
            assert_same(&s, q, 50, 4.0);
        }
        let all = s
            .lexical_search(&["fn".into(), "let".into(), "mut".into()], 10_000, 4.0)
            .unwrap();
        assert!(added.iter().any(|id| all.iter().any(|h| h.0 == *id)));
        // Emptied and refilled: the sizes are loaded afresh.
        let mut w = other.writer().unwrap();
        for id in s.live_chunk_ids().unwrap() {
            w.remove_chunk(id).unwrap();
        }
        w.commit().unwrap();
        assert!(s
            .lexical_search(&["fn".into()], 50, 4.0)
            .unwrap()
            .is_empty());
        add_chunks(&mut other, &mut rng, 450, 80);
        for q in &qs {
            assert_same(&s, q, 50, 4.0);
        }
    }

    #[test]
    fn a_read_only_index_is_scored_here_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(7);
        {
            let mut s = Store::open(dir.path()).unwrap();
            add_chunks(&mut s, &mut rng, 0, 100);
            s.checkpoint().unwrap();
        }
        let s = Store::open_read_only(dir.path()).unwrap().unwrap();
        for q in &queries(&mut rng) {
            assert_same(&s, q, 50, 4.0);
        }
        assert_eq!(s.lexical.state.borrow().registered, Some(true));
    }

    #[test]
    fn a_primed_store_has_every_chunk_size_before_its_first_search() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let mut rng = Rng(11);
        add_chunks(&mut s, &mut rng, 0, 120);
        assert!(s.lexical.state.borrow().lengths.is_empty());
        s.prime_lexical().unwrap();
        assert_eq!(s.lexical.state.borrow().lengths.len(), 120);
        assert_eq!(s.lexical.state.borrow().registered, Some(true));
        for q in &queries(&mut rng) {
            assert_same(&s, q, 50, 4.0);
        }
    }

    #[test]
    fn varints_and_size_records_decode_like_sqlite() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0x82, 0x80, 0x01]), Some((0x8001, 3)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x80]), None);
        assert_eq!(row_tokens(&[0x03, 0x81, 0x00]), Some(131));
        assert_eq!(row_tokens(&[0x03]), None, "a column missing");
        assert_eq!(row_tokens(&[0x03, 0x01, 0x01]), None, "a column too many");
    }
}
