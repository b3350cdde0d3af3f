//! The vector index over chunk vectors, searched with a filter that hides deleted chunks.
//! Two kinds, chosen by size (`index.exact_search_below`):
//!
//! - `exact`: below the threshold (nearly every workspace), the vectors themselves, kept
//!   compactly in memory and scanned whole: exact nearest neighbours, nothing to build,
//!   dump or load but the store's own cache of vectors.
//! - `hnsw`: above it, an HNSW graph (hnsw_rs), dumped to disk so a warm start does not
//!   re-insert; deleted chunks stay in it as tombstones until the caller compacts.
//!
//! Either is derived data: the store holds every vector, so a missing, stale or
//! unreadable dump is simply rebuilt, and the exact index is always read from the store.

mod exact;
mod hnsw;

pub use hnsw::UnitCosine;

use crate::store::{ChunkId, Identity, Store};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// The dot product in 16 independent lanes, which the compiler turns into SIMD (a plain
/// `zip().sum()` is one serial chain of additions: float addition is not associative,
/// so it may not be reordered). Building the graph is mostly this function.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Which chunk ids are live: a bitset, so the search filter is one lookup.
#[derive(Clone, Debug, Default)]
pub struct LiveSet {
    bits: Vec<u64>,
    len: usize,
}

impl LiveSet {
    pub fn from_ids(ids: impl IntoIterator<Item = ChunkId>) -> Self {
        let mut set = LiveSet::default();
        for id in ids {
            set.insert(id);
        }
        set
    }
    pub fn insert(&mut self, id: ChunkId) {
        let Ok(i) = usize::try_from(id.0) else { return };
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        if self.bits[i / 64] & (1 << (i % 64)) == 0 {
            self.bits[i / 64] |= 1 << (i % 64);
            self.len += 1;
        }
    }
    pub fn remove(&mut self, id: ChunkId) {
        let Ok(i) = usize::try_from(id.0) else { return };
        if let Some(word) = self.bits.get_mut(i / 64) {
            if *word & (1 << (i % 64)) != 0 {
                *word &= !(1 << (i % 64));
                self.len -= 1;
            }
        }
    }
    pub fn contains(&self, id: usize) -> bool {
        self.bits
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Vectors of one workspace, searched exactly or through a graph (see the module doc).
pub struct VectorIndex {
    kind: Kind,
}

enum Kind {
    Exact(exact::Exact),
    Graph(hnsw::Graph),
}

/// The dimension `index.exact_search_below` is counted in (the built-in embedder's).
pub const EXACT_REFERENCE_DIMS: usize = 256;

impl VectorIndex {
    /// The number of chunks below which vectors of `dims` dimensions are searched exactly:
    /// `exact_search_below` at up to 256 dimensions, proportionally fewer above (a scan
    /// costs chunks x dimensions), so the scan stays within the same time.
    pub fn exact_limit(exact_search_below: usize, dims: usize) -> usize {
        let scaled = exact_search_below as u128 * EXACT_REFERENCE_DIMS as u128
            / dims.max(EXACT_REFERENCE_DIMS) as u128;
        scaled as usize
    }

    /// An empty index of the kind for `expected_points` vectors: exact below
    /// `exact_below`, a graph from there on.
    pub fn new(dims: usize, expected_points: usize, exact_below: usize) -> Self {
        if expected_points < exact_below {
            VectorIndex {
                kind: Kind::Exact(exact::Exact::new(dims).limited_to(exact_below)),
            }
        } else {
            VectorIndex::graph(dims, expected_points)
        }
    }

    /// An empty exact index (that never turns into a graph by itself).
    pub fn exact(dims: usize) -> Self {
        VectorIndex {
            kind: Kind::Exact(exact::Exact::new(dims)),
        }
    }

    /// An empty HNSW graph, sized for `expected_points`.
    pub fn graph(dims: usize, expected_points: usize) -> Self {
        VectorIndex {
            kind: Kind::Graph(hnsw::Graph::new(dims, expected_points)),
        }
    }

    /// Builds the index of the kind for `expected_points` (the live chunks) from every
    /// live vector in the store, streamed in chunk-id order: no list of them all is
    /// held, and a graph gets the same insertion order as an incremental build.
    pub fn from_store(
        store: &Store,
        identity: &Identity,
        expected_points: usize,
        exact_below: usize,
    ) -> crate::error::Result<Self> {
        let dims = identity.dimensions;
        if expected_points < exact_below {
            let exact = exact::Exact::build(dims, expected_points, |f| {
                store.for_each_live_vector(identity, f)
            })?
            .limited_to(exact_below);
            return Ok(VectorIndex {
                kind: Kind::Exact(exact),
            });
        }
        let graph = hnsw::Graph::new(dims, expected_points);
        let mut v = Vec::with_capacity(dims);
        store.for_each_live_vector(identity, &mut |id, x| {
            v.clear();
            v.extend_from_slice(x);
            crate::store::stored_precision(&mut v);
            graph.insert_one(id, &v);
        })?;
        Ok(VectorIndex {
            kind: Kind::Graph(graph),
        })
    }

    /// The same vectors as a graph (an exact index's rows, inserted in chunk-id order:
    /// the graph a build from the store would give); `None` if this is a graph already.
    pub fn to_graph(&self) -> Option<VectorIndex> {
        let Kind::Exact(e) = &self.kind else {
            return None;
        };
        let graph = hnsw::Graph::new(e.dims, e.points());
        e.for_each_in_id_order(|id, v| graph.insert_one(id, v));
        Some(VectorIndex {
            kind: Kind::Graph(graph),
        })
    }

    /// An exact index that grew to its size limit: its user should turn it into a
    /// graph ([`VectorIndex::to_graph`]).
    pub fn outgrown(&self) -> bool {
        matches!(&self.kind, Kind::Exact(e) if e.points() >= e.limit)
    }

    pub fn is_exact(&self) -> bool {
        matches!(self.kind, Kind::Exact(_))
    }

    /// "exact" or "hnsw".
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Exact(_) => "exact",
            Kind::Graph(_) => "hnsw",
        }
    }

    pub fn dims(&self) -> usize {
        match &self.kind {
            Kind::Exact(e) => e.dims,
            Kind::Graph(g) => g.dims,
        }
    }

    /// Vectors held: for a graph, tombstones included; an exact index has none.
    pub fn points(&self) -> usize {
        match &self.kind {
            Kind::Exact(e) => e.points(),
            Kind::Graph(g) => g.points(),
        }
    }

    /// Memory held by an exact index's vectors (0 for a graph: hnsw_rs does not say).
    pub fn exact_bytes(&self) -> usize {
        match &self.kind {
            Kind::Exact(e) => e.heap_bytes(),
            Kind::Graph(_) => 0,
        }
    }

    /// Adds vectors of new chunks. Vectors of the wrong dimension are ignored rather
    /// than corrupting the index, and every vector is kept at the precision of the
    /// embedding cache (half floats), so one read back from the store ranks the same as
    /// a freshly computed one.
    ///
    /// A graph takes them one at a time in chunk-id order, so it depends only on the
    /// vectors and their ids: the same chunks give the same graph (and the same rankings)
    /// whether they come in one batch or many (batches come in id order: ids grow), and
    /// hnsw_rs draws the levels from a fixed seed. Parallel insertion would race on the
    /// graph, so two builds would differ. An exact index ranks the same whatever the
    /// order.
    pub fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
        match &self.kind {
            Kind::Exact(e) => e.insert(items),
            Kind::Graph(g) => g.insert(items),
        }
    }

    /// Whether the index holds a vector for this chunk (for a graph, live or not).
    pub fn contains(&self, id: ChunkId) -> bool {
        match &self.kind {
            Kind::Exact(e) => e.contains(id),
            Kind::Graph(g) => g.contains(id),
        }
    }

    /// Drops the vectors of deleted chunks from an exact index (a graph keeps them as
    /// tombstones, hidden by the live set, until it is rebuilt).
    pub fn remove(&self, ids: &[ChunkId]) {
        if let Kind::Exact(e) = &self.kind {
            e.remove(ids);
        }
    }

    /// The `k` nearest live chunks to `query`, as (id, cosine similarity), best first.
    /// `ef` is the graph's search breadth (an exact scan has none).
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: &LiveSet,
    ) -> Vec<(ChunkId, f32)> {
        if self.points() == 0
            || k == 0
            || query.len() != self.dims()
            || query.iter().all(|x| *x == 0.0)
        {
            return Vec::new();
        }
        match &self.kind {
            Kind::Exact(e) => e.search(query, k, live),
            Kind::Graph(g) => g.search(query, k, ef, live),
        }
    }

    /// Writes a graph next to a sidecar naming the store generation it reflects (the
    /// sidecar is replaced atomically last, so a crash leaves the old dump or the new
    /// one). An exact index has nothing to write: it removes any graph dump instead.
    pub fn save(&self, dir: &Path, generation: u64) -> std::io::Result<()> {
        match &self.kind {
            Kind::Exact(_) => {
                VectorIndex::remove_dump(dir);
                Ok(())
            }
            Kind::Graph(g) => g.save(dir, generation),
        }
    }

    /// Removes the graph dump in `dir`, if any.
    pub fn remove_dump(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(hnsw::SIDECAR));
        hnsw::remove_dumps(dir, None);
    }

    /// Whether the graph dump on disk already reflects `generation` (nothing to write).
    pub fn dump_is_current(dir: &Path, generation: u64, points: usize) -> bool {
        hnsw::Graph::dump_is_current(dir, generation, points)
    }

    /// Loads the graph dump if it exists, matches `generation` and `dims`, and reads
    /// cleanly.
    pub fn load(dir: &Path, generation: u64, dims: usize) -> Option<VectorIndex> {
        hnsw::Graph::load(dir, generation, dims).map(|g| VectorIndex {
            kind: Kind::Graph(g),
        })
    }
}

/// The vector index and the live set of one workspace, shared by the engine that writes
/// the index and the engines that answer queries meanwhile (the language server), so a
/// batch is searchable the moment it is committed. hnsw_rs allows inserts and searches
/// at the same time; an exact index takes a write lock for the moment a batch's rows
/// are copied in; the locks here only guard swapping the index (a load, compaction, a
/// change of kind).
///
/// Shared vectors made with [`SharedVectors::lazy`] (the server's) are loaded in the
/// background: a search that finds them unloaded starts the load and answers lexically
/// meanwhile, so a large index never delays the editor's first answers.
#[derive(Default)]
pub struct SharedVectors {
    index: RwLock<Option<Arc<VectorIndex>>>,
    live: RwLock<LiveSet>,
    loading: Mutex<()>,
    lazy: bool,
    /// Set once a background load was started (it runs once per index).
    background: AtomicBool,
}

impl SharedVectors {
    pub fn new() -> Arc<SharedVectors> {
        Arc::new(SharedVectors::default())
    }

    /// Shared vectors that searches load in the background (see the type's doc).
    pub fn lazy() -> Arc<SharedVectors> {
        Arc::new(SharedVectors {
            lazy: true,
            ..SharedVectors::default()
        })
    }

    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    /// True for the first caller only (until [`SharedVectors::clear`]): that one starts
    /// the background load.
    pub fn claim_background_load(&self) -> bool {
        !self.background.swap(true, Ordering::AcqRel)
    }

    /// Held while loading or rebuilding, so two engines never both do it.
    pub fn loading(&self) -> std::sync::MutexGuard<'_, ()> {
        self.loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_loaded(&self) -> bool {
        self.index.read().map(|i| i.is_some()).unwrap_or(false)
    }

    /// Installs a (loaded or rebuilt) index and the ids that are live in the store.
    pub fn install(&self, index: VectorIndex, live: LiveSet) {
        if let Ok(mut l) = self.live.write() {
            *l = live;
        }
        if let Ok(mut i) = self.index.write() {
            *i = Some(Arc::new(index));
        }
    }

    /// Forgets the index (for a change of embedder); the next user loads or rebuilds it.
    pub fn clear(&self) {
        let _loading = self.loading();
        if let Ok(mut i) = self.index.write() {
            *i = None;
        }
        if let Ok(mut l) = self.live.write() {
            *l = LiveSet::default();
        }
        self.background.store(false, Ordering::Release);
    }

    pub fn current(&self) -> Option<Arc<VectorIndex>> {
        self.index.read().ok().and_then(|i| i.clone())
    }

    /// Adds vectors of newly committed chunks. An exact index that outgrows its limit
    /// is turned into a graph here, so a first index of a huge tree builds its graph
    /// while it indexes (searches use the exact index meanwhile).
    pub fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
        if let Some(index) = self.current() {
            index.insert(items);
            if index.outgrown() {
                if let Some(graph) = index.to_graph() {
                    if let Ok(mut slot) = self.index.write() {
                        if slot.as_ref().is_some_and(|i| Arc::ptr_eq(i, &index)) {
                            *slot = Some(Arc::new(graph));
                        }
                    }
                }
            }
        }
        if let Ok(mut live) = self.live.write() {
            for (id, _) in items {
                live.insert(*id);
            }
        }
    }

    /// Hides chunks that were deleted from the store (and drops their vectors from an
    /// exact index).
    pub fn remove(&self, ids: &[ChunkId]) {
        if let Ok(mut live) = self.live.write() {
            for id in ids {
                live.remove(*id);
            }
        }
        if let Some(index) = self.current() {
            index.remove(ids);
        }
    }

    pub fn live_len(&self) -> usize {
        self.live.read().map(|l| l.len()).unwrap_or(0)
    }

    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<(ChunkId, f32)> {
        let Some(index) = self.current() else {
            return Vec::new();
        };
        match self.live.read() {
            Ok(live) => index.search(query, k, ef, &live),
            Err(_) => Vec::new(),
        }
    }
}

enum FeedOp {
    Insert(Vec<(ChunkId, Vec<f32>)>),
    Remove(Vec<ChunkId>),
}

/// Applies inserts and removals to shared vectors on a thread of its own, in the order
/// given: while the indexer parses and writes the next batch on the other cores, the
/// index takes in the last one (graph inserts are sequential, see
/// [`VectorIndex::insert`]; an exact index that outgrows its limit becomes a graph
/// there). Without a thread, it applies them at once.
pub struct Feeder {
    vectors: Arc<SharedVectors>,
    tx: Option<std::sync::mpsc::SyncSender<FeedOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feeder {
    pub fn start(vectors: Arc<SharedVectors>) -> Feeder {
        // Bounded: an indexer that runs ahead of the graph waits rather than queueing
        // every vector of the tree in memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<FeedOp>(2);
        let shared = vectors.clone();
        let thread = std::thread::Builder::new()
            .name("ragls-graph".into())
            .spawn(move || {
                for op in rx {
                    match op {
                        FeedOp::Insert(items) => shared.insert(&items),
                        FeedOp::Remove(ids) => shared.remove(&ids),
                    }
                }
            })
            .ok();
        Feeder {
            vectors,
            tx: thread.as_ref().map(|_| tx),
            thread,
        }
    }

    pub fn insert(&self, items: Vec<(ChunkId, Vec<f32>)>) {
        if items.is_empty() {
            return;
        }
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(FeedOp::Insert(items)) {
                    if let FeedOp::Insert(items) = e.0 {
                        self.vectors.insert(&items);
                    }
                }
            }
            None => self.vectors.insert(&items),
        }
    }

    pub fn remove(&self, ids: Vec<ChunkId>) {
        if ids.is_empty() {
            return;
        }
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(FeedOp::Remove(ids)) {
                    if let FeedOp::Remove(ids) = e.0 {
                        self.vectors.remove(&ids);
                    }
                }
            }
            None => self.vectors.remove(&ids),
        }
    }

    /// Waits until everything sent is applied. If the thread died, the index is
    /// incomplete: it is dropped, to be rebuilt from the store by its next user.
    pub fn finish(mut self) {
        self.join();
    }

    fn join(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                self.vectors.clear();
            }
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::normalize;

    fn unit(seed: u64, dims: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut v: Vec<f32> = (0..dims)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 1000) as f32 / 500.0 - 1.0
            })
            .collect();
        normalize(&mut v);
        v
    }

    fn sample(n: i64) -> Vec<(ChunkId, Vec<f32>)> {
        (1..=n)
            .map(|id| (ChunkId(id), unit(id as u64, 32)))
            .collect()
    }

    #[test]
    fn finds_the_exact_vector_first() {
        let items = sample(500);
        let index = VectorIndex::graph(32, 500);
        index.insert(&items);
        let live = LiveSet::from_ids((1..=500).map(ChunkId));
        let hits = index.search(&items[41].1, 5, 64, &live);
        assert_eq!(hits[0].0, ChunkId(42));
        assert!((hits[0].1 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn deleted_chunks_are_never_returned() {
        let items = sample(300);
        let index = VectorIndex::graph(32, 300);
        index.insert(&items);
        let mut live = LiveSet::from_ids((1..=300).map(ChunkId));
        live.remove(ChunkId(42));
        let hits = index.search(&items[41].1, 10, 64, &live);
        assert!(hits.iter().all(|(id, _)| *id != ChunkId(42)));
        assert_eq!(hits.len(), 10);
    }

    #[test]
    fn a_dump_reloads_and_a_stale_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let items = sample(200);
        let index = VectorIndex::graph(32, 200);
        index.insert(&items);
        index.save(dir.path(), 7).unwrap();
        let live = LiveSet::from_ids((1..=200).map(ChunkId));
        let loaded = VectorIndex::load(dir.path(), 7, 32).expect("reload");
        assert_eq!(loaded.points(), 200);
        assert_eq!(loaded.search(&items[9].1, 1, 32, &live)[0].0, ChunkId(10));
        assert!(
            VectorIndex::load(dir.path(), 8, 32).is_none(),
            "another generation is stale"
        );
        assert!(
            VectorIndex::load(dir.path(), 7, 64).is_none(),
            "another dimension is stale"
        );
    }

    #[test]
    fn a_corrupt_dump_is_refused_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let index = VectorIndex::graph(32, 100);
        index.insert(&sample(100));
        index.save(dir.path(), 1).unwrap();
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(".graph") {
                std::fs::write(e.path(), b"garbage").unwrap();
            }
        }
        assert!(VectorIndex::load(dir.path(), 1, 32).is_none());
    }

    #[test]
    fn live_set_counts_and_bounds() {
        let mut s = LiveSet::from_ids([1, 5, 5, 1000].map(ChunkId));
        assert_eq!(s.len(), 3);
        s.remove(ChunkId(5));
        s.remove(ChunkId(5));
        s.remove(ChunkId(99_999));
        assert_eq!(s.len(), 2);
        assert!(s.contains(1000) && !s.contains(5) && !s.contains(1_000_000));
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        for dims in [1, 7, 16, 33, 256] {
            let (a, b) = (unit(3, dims), unit(4, dims));
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-5, "{dims}");
        }
        assert!((dot(&unit(5, 256), &unit(5, 256)) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn the_same_vectors_give_the_same_graph_however_they_are_batched() {
        let n = 1500;
        let items = sample(n);
        let whole = VectorIndex::graph(32, n as usize);
        whole.insert(&items);
        // Another build: batches of other sizes, each shuffled.
        let batched = VectorIndex::graph(32, n as usize);
        for b in items.chunks(170) {
            let mut b = b.to_vec();
            b.reverse();
            batched.insert(&b);
        }
        let live = LiveSet::from_ids((1..=n).map(ChunkId));
        for q in 0..100u64 {
            let query = unit(10_000 + q, 32);
            // A small search width, so that any difference between the graphs would show.
            assert_eq!(
                whole.search(&query, 10, 10, &live),
                batched.search(&query, 10, 10, &live),
                "query {q}"
            );
        }
    }

    #[test]
    fn a_feeder_applies_inserts_and_removals_in_order() {
        let shared = SharedVectors::new();
        shared.install(VectorIndex::graph(32, 100), LiveSet::default());
        let feeder = Feeder::start(shared.clone());
        let items = sample(100);
        feeder.insert(items[..50].to_vec());
        feeder.remove(vec![ChunkId(7), ChunkId(8)]);
        feeder.insert(items[50..].to_vec());
        feeder.remove(vec![ChunkId(99)]);
        feeder.finish();
        assert_eq!(shared.current().map(|i| i.points()), Some(100));
        assert_eq!(shared.live_len(), 97);
        let hits = shared.search(&items[6].1, 100, 100);
        assert!(hits.iter().all(|(id, _)| ![7, 8, 99].contains(&id.0)));
        assert_eq!(hits.len(), 97);
    }

    /// The reference an exact index must match: every vector at the cache's precision,
    /// scored in f64, best first, ties to the smaller id.
    fn brute_force(
        items: &[(ChunkId, Vec<f32>)],
        query: &[f32],
        k: usize,
        live: &LiveSet,
    ) -> Vec<(ChunkId, f64)> {
        let mut scored: Vec<(ChunkId, f64)> = items
            .iter()
            .filter(|(id, _)| live.contains(id.0 as usize))
            .map(|(id, v)| {
                let mut v = v.clone();
                stored_precision(&mut v);
                let s: f64 = v
                    .iter()
                    .zip(query)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                (*id, s)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0 .0.cmp(&b.0 .0)));
        scored.truncate(k);
        scored
    }

    fn assert_matches_reference(got: &[(ChunkId, f32)], want: &[(ChunkId, f64)], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g.1 as f64 - w.1).abs() < 1e-4,
                "{what}: rank {i}: {g:?} vs {w:?}"
            );
            // The same chunk at every rank, unless the reference itself has a near tie there.
            let tied = |j: usize| want.get(j).is_some_and(|o| (o.1 - w.1).abs() < 1e-4);
            if !(i > 0 && tied(i - 1)) && !tied(i + 1) {
                assert_eq!(g.0, w.0, "{what}: rank {i}");
            }
        }
    }

    use crate::store::stored_precision;

    #[test]
    fn exact_search_gives_the_brute_force_top_k() {
        for dims in [32, 256] {
            let items: Vec<(ChunkId, Vec<f32>)> = (1..=3000)
                .map(|id| (ChunkId(id), unit(id as u64, dims)))
                .collect();
            let index = VectorIndex::exact(dims);
            index.insert(&items);
            let live = LiveSet::from_ids(items.iter().map(|(id, _)| *id));
            for q in 0..40u64 {
                let mut query = unit(50_000 + q, dims);
                if q % 2 == 1 {
                    // Sparse, like a query of the built-in embedder: most components zero.
                    for (d, x) in query.iter_mut().enumerate() {
                        if (d as u64 * 7 + q) % 10 != 0 {
                            *x = 0.0;
                        }
                    }
                }
                let got = index.search(&query, 50, 0, &live);
                assert_matches_reference(
                    &got,
                    &brute_force(&items, &query, 50, &live),
                    &format!("{dims}d query {q}"),
                );
            }
            // A chunk's own vector is its nearest neighbour, at similarity 1.
            let hits = index.search(&items[41].1, 1, 0, &live);
            assert_eq!(hits[0].0, ChunkId(42));
            assert!((hits[0].1 - 1.0).abs() < 1e-3);
        }
    }

    #[test]
    fn a_large_exact_scan_split_across_threads_gives_the_same_top_k() {
        // Enough work (rows x dimensions) to be split across threads.
        let dims = 256;
        let n = (exact::PARALLEL_WORK / dims + 1000) as i64;
        let items: Vec<(ChunkId, Vec<f32>)> = (1..=n)
            .map(|id| (ChunkId(id), unit(id as u64, dims)))
            .collect();
        let index = VectorIndex::exact(dims);
        index.insert(&items);
        let live = LiveSet::from_ids(items.iter().map(|(id, _)| *id));
        for q in 0..3u64 {
            let query = unit(90_000 + q, dims);
            assert_matches_reference(
                &index.search(&query, 20, 0, &live),
                &brute_force(&items, &query, 20, &live),
                &format!("query {q}"),
            );
        }
    }

    #[test]
    fn an_exact_index_never_returns_deleted_chunks() {
        let items = sample(400);
        let shared = SharedVectors::new();
        shared.install(VectorIndex::exact(32), LiveSet::default());
        shared.insert(&items);
        let gone: Vec<ChunkId> = (1..=400).filter(|i| i % 3 == 0).map(ChunkId).collect();
        shared.remove(&gone);
        assert_eq!(shared.current().unwrap().points(), 400 - gone.len());
        for (id, v) in items.iter().step_by(7) {
            let hits = shared.search(v, 400, 0);
            assert_eq!(hits.len(), 400 - gone.len());
            assert!(hits.iter().all(|(h, _)| h.0 % 3 != 0), "{hits:?}");
            if id.0 % 3 != 0 {
                assert_eq!(hits[0].0, *id);
            }
        }
        // The vector of a deleted chunk, searched for, finds anything but that chunk.
        let hits = shared.search(&items[2].1, 5, 0);
        assert!(hits.iter().all(|(h, _)| *h != ChunkId(3)));
    }

    #[test]
    fn exact_rankings_do_not_depend_on_order_batches_or_history() {
        let items = sample(1200);
        let whole = VectorIndex::exact(32);
        whole.insert(&items);
        // Another history: reversed batches, plus chunks inserted and deleted again, and
        // one vector replaced by itself.
        let other = VectorIndex::exact(32);
        let extra: Vec<(ChunkId, Vec<f32>)> = (5000..5100)
            .map(|id| (ChunkId(id), unit(id as u64, 32)))
            .collect();
        other.insert(&extra[..50]);
        for b in items.chunks(170).rev() {
            let mut b = b.to_vec();
            b.reverse();
            other.insert(&b);
        }
        other.insert(&extra[50..]);
        other.remove(&extra.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        other.insert(&items[10..11]);
        assert_eq!(other.points(), whole.points());
        let live = LiveSet::from_ids((1..=1200).map(ChunkId));
        for q in 0..60u64 {
            let query = unit(20_000 + q, 32);
            assert_eq!(
                whole.search(&query, 10, 0, &live),
                other.search(&query, 10, 0, &live),
                "query {q}"
            );
        }
    }

    #[test]
    fn an_exact_index_turns_into_the_graph_a_fresh_build_gives_past_its_limit() {
        let items = sample(600);
        let shared = SharedVectors::new();
        shared.install(VectorIndex::new(32, 0, 500), LiveSet::default());
        assert!(shared.current().unwrap().is_exact());
        let feeder = Feeder::start(shared.clone());
        for b in items.chunks(100) {
            feeder.insert(b.to_vec());
        }
        feeder.remove(vec![ChunkId(5)]);
        feeder.finish();
        let index = shared.current().unwrap();
        assert!(!index.is_exact(), "600 vectors are past the limit of 500");
        // The graph is the one built from scratch from the same vectors in id order.
        let fresh = VectorIndex::new(32, 600, 500);
        assert!(!fresh.is_exact());
        fresh.insert(&items);
        let mut live = LiveSet::from_ids((1..=600).map(ChunkId));
        live.remove(ChunkId(5));
        for q in 0..50u64 {
            let query = unit(30_000 + q, 32);
            let got = shared.search(&query, 10, 10);
            assert_eq!(got, fresh.search(&query, 10, 10, &live), "query {q}");
            assert!(got.iter().all(|(id, _)| *id != ChunkId(5)));
        }
    }

    #[test]
    fn the_threshold_is_counted_in_256_dimension_vectors() {
        assert_eq!(VectorIndex::exact_limit(100_000, 256), 100_000);
        assert_eq!(VectorIndex::exact_limit(100_000, 64), 100_000);
        assert_eq!(VectorIndex::exact_limit(100_000, 768), 33_333);
        assert_eq!(VectorIndex::exact_limit(usize::MAX, 3072), usize::MAX / 12);
        assert_eq!(VectorIndex::exact_limit(0, 384), 0);
    }

    #[test]
    fn the_kind_follows_the_size() {
        assert!(VectorIndex::new(8, 99, 100).is_exact());
        assert!(!VectorIndex::new(8, 100, 100).is_exact());
        assert!(
            !VectorIndex::new(8, 0, 0).is_exact(),
            "0 turns exact search off"
        );
        let exact = VectorIndex::exact(32);
        exact.insert(&sample(50));
        let graph = exact.to_graph().expect("an exact index becomes a graph");
        assert_eq!((graph.kind_name(), graph.points()), ("hnsw", 50));
        assert!(graph.to_graph().is_none());
    }

    #[test]
    fn an_exact_index_writes_nothing_and_removes_an_old_graph_dump() {
        let dir = tempfile::tempdir().unwrap();
        let graph = VectorIndex::graph(32, 100);
        graph.insert(&sample(100));
        graph.save(dir.path(), 3).unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().count() >= 3);
        let exact = VectorIndex::exact(32);
        exact.insert(&sample(100));
        exact.save(dir.path(), 4).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(VectorIndex::load(dir.path(), 3, 32).is_none());
    }
}
