//! The exact index for all but huge workspaces: every live chunk's vector as half floats
//! (the embedding cache's own precision) in memory, searched by a full scan.
//!
//! At tens of thousands of chunks a scan is a few milliseconds, needs no graph to build,
//! dump or load, holds half the memory of the graph's `f32` copies (and none of its
//! links), finds the true nearest neighbours, and ranks by construction the same way
//! whatever the order the vectors came in (ties go to the smaller chunk id).
//!
//! Layout: blocks of 64 rows, each block stored dimension by dimension (the 64 rows'
//! first components, then their second...). A scan keeps a block's 64 sums in
//! registers and reads only the dimensions where the query is not zero: a query of the
//! built-in embedder (a few words hashed into 256 dimensions) sets about a tenth of them,
//! so a scan reads about a tenth of the vectors; a dense query reads them all, once.
//!
//! Rows are kept dense: removing a chunk moves the last row into its place, so inserts
//! and removals cost only what changed.

use super::LiveSet;
use crate::store::{f16_to_f32, f32_to_f16, ChunkId};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::RwLock;

/// Rows per block.
const BLOCK: usize = 64;
/// Below this much work (rows x dimensions the query sets) one thread scans; above it
/// the blocks are split across the cores.
pub(super) const PARALLEL_WORK: usize = 4 << 20;
/// At most this many threads scan one query.
const MAX_THREADS: usize = 4;

#[derive(Default)]
struct Rows {
    /// Chunk id of each row.
    ids: Vec<i64>,
    /// Row `r`'s component `d` is `data[(r / BLOCK) * dims * BLOCK + d * BLOCK + r % BLOCK]`,
    /// an IEEE half float; the unused rows of the last block are zero.
    data: Vec<u16>,
    /// Row of each chunk id.
    slot: HashMap<i64, usize>,
}

pub(super) struct Exact {
    pub(super) dims: usize,
    /// Rows from which the user should turn this into a graph.
    pub(super) limit: usize,
    rows: RwLock<Rows>,
}

#[inline]
fn at(dims: usize, row: usize, d: usize) -> usize {
    (row / BLOCK) * dims * BLOCK + d * BLOCK + row % BLOCK
}

/// A scored row, ordered so that the greatest is the better hit: higher score, then the
/// smaller chunk id (a total order: rankings never depend on the order of the rows).
#[derive(Clone, Copy, Debug)]
struct Scored {
    score: f32,
    id: i64,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(&self.id))
    }
}

/// The best `k` seen so far: a min-heap (by [`Scored`]'s order) of at most `k` entries.
struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Scored>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }
    #[inline]
    fn offer(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(s));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if s > worst.0 {
                *worst = std::cmp::Reverse(s);
            }
        }
    }
    fn merge(mut self, other: TopK) -> TopK {
        for s in other.heap {
            self.offer(s.0);
        }
        self
    }
    fn into_sorted(self) -> Vec<Scored> {
        let mut v: Vec<Scored> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

impl Rows {
    /// Adds or replaces the row of `id`; `v` has the index's dimension.
    fn upsert(&mut self, dims: usize, id: i64, v: &[f32]) {
        let row = match self.slot.get(&id) {
            Some(&row) => row,
            None => {
                let row = self.ids.len();
                if row.is_multiple_of(BLOCK) {
                    self.data.resize(self.data.len() + dims * BLOCK, 0);
                }
                self.slot.insert(id, row);
                self.ids.push(id);
                row
            }
        };
        let base = at(dims, row, 0);
        for (h, x) in self.data[base..].iter_mut().step_by(BLOCK).zip(v) {
            *h = f32_to_f16(*x);
        }
    }

    /// Removes the row of `id`, moving the last row into its place.
    fn remove(&mut self, dims: usize, id: i64) {
        let Some(row) = self.slot.remove(&id) else {
            return;
        };
        let last = self.ids.len() - 1;
        if row != last {
            let moved = self.ids[last];
            self.ids[row] = moved;
            for d in 0..dims {
                self.data[at(dims, row, d)] = self.data[at(dims, last, d)];
            }
            self.slot.insert(moved, row);
        }
        for d in 0..dims {
            self.data[at(dims, last, d)] = 0;
        }
        self.ids.pop();
        if last.is_multiple_of(BLOCK) {
            self.data.truncate((last / BLOCK) * dims * BLOCK);
        }
    }

    fn row(&self, dims: usize, row: usize, out: &mut [f32]) {
        for (d, x) in out.iter_mut().enumerate().take(dims) {
            *x = f16_to_f32(self.data[at(dims, row, d)]);
        }
    }
}

impl Exact {
    pub(super) fn new(dims: usize) -> Self {
        Exact {
            dims,
            limit: usize::MAX,
            rows: RwLock::new(Rows::default()),
        }
    }

    pub(super) fn limited_to(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// An index built from vectors given one at a time (the store's, streamed), with room
    /// for `expected` of them.
    pub(super) fn build(
        dims: usize,
        expected: usize,
        fill: impl FnOnce(&mut dyn FnMut(ChunkId, &[f32])) -> crate::error::Result<()>,
    ) -> crate::error::Result<Exact> {
        let mut rows = Rows {
            ids: Vec::with_capacity(expected),
            data: Vec::with_capacity(expected.div_ceil(BLOCK) * BLOCK * dims),
            slot: HashMap::with_capacity(expected),
        };
        fill(&mut |id, v| {
            if v.len() == dims && id.0 >= 0 {
                rows.upsert(dims, id.0, v);
            }
        })?;
        rows.ids.shrink_to_fit();
        rows.data.shrink_to_fit();
        Ok(Exact {
            dims,
            limit: usize::MAX,
            rows: RwLock::new(rows),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Rows> {
        self.rows.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn points(&self) -> usize {
        self.read().ids.len()
    }

    /// Bytes held by the vectors and their bookkeeping (for the figures).
    pub(super) fn heap_bytes(&self) -> usize {
        let rows = self.read();
        rows.data.capacity() * 2 + rows.ids.capacity() * 8 + rows.slot.capacity() * 24
    }

    /// Adds (or replaces) vectors; those of another dimension are ignored.
    pub(super) fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
        let mut rows = self.write();
        for (id, v) in items {
            if v.len() == self.dims && id.0 >= 0 {
                rows.upsert(self.dims, id.0, v);
            }
        }
    }

    /// Whether a row holds this chunk.
    pub(super) fn contains(&self, id: ChunkId) -> bool {
        self.read().slot.contains_key(&id.0)
    }

    pub(super) fn remove(&self, ids: &[ChunkId]) {
        let mut rows = self.write();
        for id in ids {
            rows.remove(self.dims, id.0);
        }
    }

    /// Every vector in chunk-id order, at the cache's precision (to build a graph from).
    pub(super) fn for_each_in_id_order(&self, mut f: impl FnMut(ChunkId, &[f32])) {
        let rows = self.read();
        let mut order: Vec<(i64, usize)> = rows.slot.iter().map(|(id, r)| (*id, *r)).collect();
        order.sort_unstable();
        let mut v = vec![0.0f32; self.dims];
        for (id, row) in order {
            rows.row(self.dims, row, &mut v);
            f(ChunkId(id), &v);
        }
    }

    /// The `k` live rows most similar to `query` (dot product: cosine for unit vectors),
    /// best first, ties to the smaller chunk id.
    pub(super) fn search(&self, query: &[f32], k: usize, live: &LiveSet) -> Vec<(ChunkId, f32)> {
        let rows = self.read();
        let dims = self.dims;
        let n = rows.ids.len();
        let blocks = n.div_ceil(BLOCK);
        // The query's non-zero components, in dimension order (the order of the sums).
        let set: Vec<(usize, f32)> = query
            .iter()
            .take(dims)
            .enumerate()
            .filter(|(_, q)| **q != 0.0)
            .map(|(d, q)| (d, *q))
            .collect();
        let threads = if n * set.len() >= PARALLEL_WORK {
            std::thread::available_parallelism()
                .map(|p| p.get())
                .unwrap_or(1)
                .clamp(1, MAX_THREADS)
        } else {
            1
        };
        let scan = |lo: usize, hi: usize| {
            let mut top = TopK::new(k);
            scan_blocks(&set, &rows, dims, lo, hi, live, &mut top);
            top
        };
        let top = if threads <= 1 {
            scan(0, blocks)
        } else {
            let per = blocks.div_ceil(threads);
            std::thread::scope(|s| {
                let parts: Vec<_> = (1..threads)
                    .map(|t| {
                        let (lo, hi) = ((t * per).min(blocks), ((t + 1) * per).min(blocks));
                        s.spawn(move || scan(lo, hi))
                    })
                    .collect();
                let mut top = scan(0, per.min(blocks));
                for p in parts {
                    match p.join() {
                        Ok(part) => top = top.merge(part),
                        Err(e) => std::panic::resume_unwind(e),
                    }
                }
                top
            })
        };
        top.into_sorted()
            .into_iter()
            .map(|s| (ChunkId(s.id), s.score))
            .collect()
    }
}

/// Scores the live rows of blocks `lo..hi` into `top`: `set` is the query's non-zero
/// components (dimension, value), with the fastest instructions this processor has.
fn scan_blocks(
    set: &[(usize, f32)],
    rows: &Rows,
    dims: usize,
    lo: usize,
    hi: usize,
    live: &LiveSet,
    top: &mut TopK,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the processor has the features the function is compiled for.
            unsafe { scan_blocks_avx2(set, rows, dims, lo, hi, live, top) };
            return;
        }
    }
    scan_blocks_with(set, rows, dims, lo, hi, live, top, block_sums_portable);
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn scan_blocks_with(
    set: &[(usize, f32)],
    rows: &Rows,
    dims: usize,
    lo: usize,
    hi: usize,
    live: &LiveSet,
    top: &mut TopK,
    sums: impl Fn(&[(usize, f32)], &[u16], &mut [f32; BLOCK]),
) {
    let mut scores = [0.0f32; BLOCK];
    for b in lo..hi {
        let block = &rows.data[b * dims * BLOCK..(b + 1) * dims * BLOCK];
        let ids = &rows.ids[b * BLOCK..rows.ids.len().min((b + 1) * BLOCK)];
        sums(set, block, &mut scores);
        for (&id, &score) in ids.iter().zip(&scores) {
            if live.contains(id as usize) {
                top.offer(Scored { score, id });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scan_blocks_avx2(
    set: &[(usize, f32)],
    rows: &Rows,
    dims: usize,
    lo: usize,
    hi: usize,
    live: &LiveSet,
    top: &mut TopK,
) {
    scan_blocks_with(set, rows, dims, lo, hi, live, top, |s, b, out| {
        // SAFETY: only reached from a function compiled for these features, which the
        // caller checked.
        unsafe { block_sums_avx2(s, b, out) }
    });
}

/// The 64 sums of one block: for each set dimension in order, 64 half floats converted
/// with F16C and accumulated with FMA in eight 8-lane registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn block_sums_avx2(set: &[(usize, f32)], block: &[u16], out: &mut [f32; BLOCK]) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); BLOCK / 8];
    for &(d, q) in set {
        let column = &block[d * BLOCK..(d + 1) * BLOCK];
        let p = column.as_ptr();
        let qv = _mm256_set1_ps(q);
        for (j, a) in acc.iter_mut().enumerate() {
            let h = _mm256_cvtph_ps(_mm_loadu_si128(p.add(8 * j) as *const __m128i));
            *a = _mm256_fmadd_ps(qv, h, *a);
        }
    }
    for (j, a) in acc.iter().enumerate() {
        _mm256_storeu_ps(out.as_mut_ptr().add(8 * j), *a);
    }
}

/// [`block_sums_avx2`] without special instructions.
fn block_sums_portable(set: &[(usize, f32)], block: &[u16], out: &mut [f32; BLOCK]) {
    *out = [0.0; BLOCK];
    for &(d, q) in set {
        for (o, h) in out.iter_mut().zip(&block[d * BLOCK..(d + 1) * BLOCK]) {
            *o = q.mul_add(f16_to_f32(*h), *o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_of(dims: usize) -> (Vec<(usize, f32)>, Vec<u16>, Vec<[f32; 2]>) {
        let set: Vec<(usize, f32)> = (0..dims)
            .filter(|d| d % 3 != 1)
            .map(|d| (d, ((d * 37 % 19) as f32 - 9.0) / 13.0))
            .collect();
        let block: Vec<u16> = (0..dims * BLOCK)
            .map(|i| f32_to_f16(((i * 11 % 23) as f32 - 11.0) / 17.0))
            .collect();
        let plain = (0..BLOCK)
            .map(|r| {
                let s: f32 = set
                    .iter()
                    .map(|(d, q)| q * f16_to_f32(block[d * BLOCK + r]))
                    .sum();
                [s, 0.0]
            })
            .collect();
        (set, block, plain)
    }

    #[test]
    fn the_kernels_agree_with_the_plain_sum() {
        for dims in [1, 7, 8, 33, 256, 384] {
            let (set, block, plain) = block_of(dims);
            let mut out = [0.0f32; BLOCK];
            block_sums_portable(&set, &block, &mut out);
            for r in 0..BLOCK {
                assert!((out[r] - plain[r][0]).abs() < 1e-4, "{dims} {r}");
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                let mut fast = [0.0f32; BLOCK];
                unsafe { block_sums_avx2(&set, &block, &mut fast) };
                // The same operations in the same order: the same bits.
                assert_eq!(fast, out, "{dims}");
            }
        }
    }

    #[test]
    fn rows_stay_dense_through_removals() {
        let index = Exact::new(2);
        let items: Vec<(ChunkId, Vec<f32>)> = (1..=(BLOCK as i64 + 5))
            .map(|i| (ChunkId(i), vec![i as f32 / 128.0, 0.5]))
            .collect();
        index.insert(&items);
        let gone: Vec<ChunkId> = [2, 5, 42, 66, 67, 68, 69, 1000].map(ChunkId).to_vec();
        index.remove(&gone);
        assert_eq!(index.points(), BLOCK + 5 - 7);
        let mut seen = Vec::new();
        index.for_each_in_id_order(|id, v| seen.push((id.0, v[0], v[1])));
        let want: Vec<(i64, f32, f32)> = (1..=(BLOCK as i64 + 5))
            .filter(|i| !gone.contains(&ChunkId(*i)))
            .map(|i| (i, i as f32 / 128.0, 0.5))
            .collect();
        assert_eq!(seen, want);
        // The last block went with its last row, and the unused rows are zero.
        {
            let rows = index.read();
            assert_eq!(rows.data.len(), 2 * BLOCK);
            for r in rows.ids.len()..BLOCK {
                assert_eq!((rows.data[at(2, r, 0)], rows.data[at(2, r, 1)]), (0, 0));
            }
        }
        // Replacing a row keeps one row per chunk.
        index.insert(&[(ChunkId(3), vec![0.75, 0.5])]);
        assert_eq!(index.points(), BLOCK + 5 - 7);
    }

    #[test]
    fn top_k_breaks_ties_by_chunk_id() {
        let mut top = TopK::new(2);
        for id in [9, 3, 7, 1] {
            top.offer(Scored { score: 0.5, id });
        }
        let ids: Vec<i64> = top.into_sorted().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1, 3]);
    }
}
