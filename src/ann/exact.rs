//! The exact index for all but huge workspaces: every live chunk's vector in one
//! contiguous block of half floats (the embedding cache's own precision), searched by a
//! full scan.
//!
//! At tens of thousands of chunks a scan is a few milliseconds, needs no graph to build,
//! dump or load, holds half the memory of the graph's `f32` copies (and none of its
//! links), finds the true nearest neighbours, and ranks by construction the same way
//! whatever the order the vectors came in (ties go to the smaller chunk id).
//!
//! Rows are kept dense: removing a chunk moves the last row into its place, so inserts
//! and removals cost only what changed.

use super::LiveSet;
use crate::store::{f16_to_f32, f32_to_f16, ChunkId};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::RwLock;

/// Below this much work (rows x dimensions) one thread scans; above it the rows are split
/// across the cores (at 256 dimensions: from 32k rows up).
pub(super) const PARALLEL_WORK: usize = 8 << 20;
/// At most this many threads scan one query.
const MAX_THREADS: usize = 4;

#[derive(Default)]
struct Rows {
    /// Chunk id of each row.
    ids: Vec<i64>,
    /// Row `i` is `data[i * dims..(i + 1) * dims]`, IEEE half floats.
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
        match self.slot.get(&id) {
            Some(&row) => {
                for (d, x) in self.data[row * dims..(row + 1) * dims].iter_mut().zip(v) {
                    *d = f32_to_f16(*x);
                }
            }
            None => {
                self.slot.insert(id, self.ids.len());
                self.ids.push(id);
                self.data.extend(v.iter().map(|x| f32_to_f16(*x)));
            }
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
            self.data
                .copy_within(last * dims..(last + 1) * dims, row * dims);
            self.slot.insert(moved, row);
        }
        self.ids.pop();
        self.data.truncate(last * dims);
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
            data: Vec::with_capacity(expected * dims),
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
            for (x, h) in v
                .iter_mut()
                .zip(&rows.data[row * self.dims..(row + 1) * self.dims])
            {
                *x = f16_to_f32(*h);
            }
            f(ChunkId(id), &v);
        }
    }

    /// The `k` live rows most similar to `query` (dot product: cosine for unit vectors),
    /// best first, ties to the smaller chunk id.
    pub(super) fn search(&self, query: &[f32], k: usize, live: &LiveSet) -> Vec<(ChunkId, f32)> {
        let rows = self.read();
        let dims = self.dims;
        let n = rows.ids.len();
        let threads = if n * dims >= PARALLEL_WORK {
            std::thread::available_parallelism()
                .map(|p| p.get())
                .unwrap_or(1)
                .clamp(1, MAX_THREADS)
        } else {
            1
        };
        let scan = |lo: usize, hi: usize| {
            let mut top = TopK::new(k);
            scan_rows(
                query,
                &rows.data[lo * dims..hi * dims],
                &rows.ids[lo..hi],
                dims,
                live,
                &mut top,
            );
            top
        };
        let top = if threads <= 1 {
            scan(0, n)
        } else {
            let per = n.div_ceil(threads);
            std::thread::scope(|s| {
                let parts: Vec<_> = (1..threads)
                    .map(|t| {
                        let (lo, hi) = ((t * per).min(n), ((t + 1) * per).min(n));
                        s.spawn(move || scan(lo, hi))
                    })
                    .collect();
                let mut top = scan(0, per.min(n));
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

/// Scores every live row of `data` (rows of `dims` half floats, chunk ids in `ids`) into
/// `top`, with the fastest dot product this processor has.
fn scan_rows(
    query: &[f32],
    data: &[u16],
    ids: &[i64],
    dims: usize,
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
            unsafe { scan_rows_avx2(query, data, ids, dims, live, top) };
            return;
        }
    }
    scan_rows_with(query, data, ids, dims, live, top, dot_f16_portable);
}

#[inline(always)]
fn scan_rows_with(
    query: &[f32],
    data: &[u16],
    ids: &[i64],
    dims: usize,
    live: &LiveSet,
    top: &mut TopK,
    dot: impl Fn(&[f32], &[u16]) -> f32,
) {
    for (row, &id) in data.chunks_exact(dims).zip(ids) {
        if !live.contains(id as usize) {
            continue;
        }
        top.offer(Scored {
            score: dot(query, row),
            id,
        });
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scan_rows_avx2(
    query: &[f32],
    data: &[u16],
    ids: &[i64],
    dims: usize,
    live: &LiveSet,
    top: &mut TopK,
) {
    scan_rows_with(query, data, ids, dims, live, top, |q, r| {
        // SAFETY: only reached from a function compiled for these features, which the
        // caller checked.
        unsafe { dot_f16_avx2(q, r) }
    });
}

/// `query . row` for a row of half floats: 32 components a step in four 8-lane
/// accumulators, converted with F16C and summed with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn dot_f16_avx2(query: &[f32], row: &[u16]) -> f32 {
    use std::arch::x86_64::*;
    let n = query.len().min(row.len());
    let (q, r) = (query.as_ptr(), row.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            let h = _mm256_cvtph_ps(_mm_loadu_si128(r.add(i + 8 * j) as *const __m128i));
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i + 8 * j)), h, *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        let h = _mm256_cvtph_ps(_mm_loadu_si128(r.add(i) as *const __m128i));
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), h, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let mut total = lanes.iter().sum::<f32>();
    while i < n {
        total += query[i] * f16_to_f32(row[i]);
        i += 1;
    }
    total
}

/// `query . row` for a row of half floats, without special instructions.
fn dot_f16_portable(query: &[f32], row: &[u16]) -> f32 {
    const LANES: usize = 8;
    let n = query.len().min(row.len());
    let (q, r) = (&query[..n], &row[..n]);
    let mut acc = [0.0f32; LANES];
    let (cq, cr) = (q.chunks_exact(LANES), r.chunks_exact(LANES));
    let tail: f32 = cq
        .remainder()
        .iter()
        .zip(cr.remainder())
        .map(|(x, h)| x * f16_to_f32(*h))
        .sum();
    for (x, h) in cq.zip(cr) {
        for i in 0..LANES {
            acc[i] += x[i] * f16_to_f32(h[i]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_agree_with_the_plain_sum() {
        for dims in [1, 7, 8, 31, 32, 33, 100, 256, 384] {
            let q: Vec<f32> = (0..dims)
                .map(|i| ((i * 37 % 19) as f32 - 9.0) / 13.0)
                .collect();
            let row: Vec<u16> = (0..dims)
                .map(|i| f32_to_f16(((i * 11 % 23) as f32 - 11.0) / 17.0))
                .collect();
            let plain: f32 = q.iter().zip(&row).map(|(x, h)| x * f16_to_f32(*h)).sum();
            assert!((dot_f16_portable(&q, &row) - plain).abs() < 1e-4, "{dims}");
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
            {
                let fast = unsafe { dot_f16_avx2(&q, &row) };
                assert!((fast - plain).abs() < 1e-4, "{dims}: {fast} vs {plain}");
            }
        }
    }

    #[test]
    fn rows_stay_dense_through_removals() {
        let index = Exact::new(2);
        let items: Vec<(ChunkId, Vec<f32>)> = (1..=5)
            .map(|i| (ChunkId(i), vec![i as f32 / 8.0, 0.5]))
            .collect();
        index.insert(&items);
        index.remove(&[ChunkId(2), ChunkId(5), ChunkId(42)]);
        assert_eq!(index.points(), 3);
        let mut seen = Vec::new();
        index.for_each_in_id_order(|id, v| seen.push((id.0, v[0])));
        assert_eq!(seen, vec![(1, 0.125), (3, 0.375), (4, 0.5)]);
        // Replacing a row keeps one row per chunk.
        index.insert(&[(ChunkId(3), vec![0.75, 0.5])]);
        assert_eq!(index.points(), 3);
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
