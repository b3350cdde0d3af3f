//! The vector index: an HNSW graph (hnsw_rs) over chunk vectors, searched with a filter
//! that hides deleted chunks, dumped to disk so a warm start does not re-insert.
//!
//! It is derived data: the store holds every vector, so a missing, stale or unreadable
//! dump is simply rebuilt. Deleted chunks stay in the graph as tombstones (hnsw_rs has no
//! removal) until the caller compacts, that is rebuilds, past a threshold.

use crate::store::{stored_precision, ChunkId};
use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Graph width and build effort, measured on the 1M-line corpus (49k chunks, built-in
/// embedder; README, "Performance"): 12 / 40 builds the graph in about 0.65 of the time of
/// 16 / 64 for a recall@50 of 0.48 instead of 0.54 against an exact scan.
const MAX_CONNECTIONS: usize = 12;
const MAX_LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 40;
const SIDECAR: &str = "vectors.json";

/// Cosine distance for unit vectors: `1 - a.b`, clamped so rounding never makes it
/// negative (hnsw_rs's own `DistDot` asserts on that).
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).clamp(0.0, 2.0)
    }
}

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

pub struct VectorIndex {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    dims: usize,
    /// Points in the graph, tombstones included.
    points: AtomicUsize,
    /// The chunk ids in the graph: a chunk is inserted at most once, however many paths
    /// (the indexer, the model's background embedding, query-time embedding) offer it.
    ids: Mutex<HashSet<usize>>,
}

/// The vector index and the live set of one workspace, shared by the engine that writes
/// the index and the engines that answer queries meanwhile (the language server), so a
/// batch is searchable the moment it is committed. hnsw_rs allows inserts and searches
/// at the same time; the locks here only guard swapping the graph (compaction).
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
    /// Set once a background load was started (it runs once per graph).
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

    /// Installs a (loaded or rebuilt) graph and the ids that are live in the store.
    pub fn install(&self, index: VectorIndex, live: LiveSet) {
        if let Ok(mut l) = self.live.write() {
            *l = live;
        }
        if let Ok(mut i) = self.index.write() {
            *i = Some(Arc::new(index));
        }
    }

    /// Forgets the graph (for a change of embedder); the next user loads or rebuilds it.
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

    /// Adds vectors of newly committed chunks.
    pub fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
        if let Some(index) = self.current() {
            index.insert(items);
        }
        if let Ok(mut live) = self.live.write() {
            for (id, _) in items {
                live.insert(*id);
            }
        }
    }

    /// Hides chunks that were deleted from the store.
    pub fn remove(&self, ids: &[ChunkId]) {
        if let Ok(mut live) = self.live.write() {
            for id in ids {
                live.remove(*id);
            }
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
/// graph takes in the last one (graph inserts are sequential, see
/// [`VectorIndex::insert`]). Without a thread, it applies them at once.
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

    /// Waits until everything sent is applied. If the thread died, the graph is
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

#[derive(serde::Serialize, serde::Deserialize)]
struct Sidecar {
    generation: u64,
    dims: usize,
    points: usize,
    basename: String,
    /// blake3 of the graph and data files: a torn or corrupt dump is never handed to
    /// hnsw_rs (which would print to stdout, or panic, on some corruptions).
    #[serde(default)]
    checksums: Vec<String>,
}

fn dump_files(dir: &Path, basename: &str) -> [std::path::PathBuf; 2] {
    [
        dir.join(format!("{basename}.hnsw.graph")),
        dir.join(format!("{basename}.hnsw.data")),
    ]
}

fn checksums(dir: &Path, basename: &str) -> Option<Vec<String>> {
    dump_files(dir, basename)
        .iter()
        .map(|p| {
            std::fs::read(p)
                .ok()
                .map(|b| blake3::hash(&b).to_hex().to_string())
        })
        .collect()
}

impl VectorIndex {
    pub fn new(dims: usize, expected_points: usize) -> Self {
        let mut hnsw = Hnsw::new(
            MAX_CONNECTIONS,
            expected_points.max(1024),
            MAX_LAYERS,
            EF_CONSTRUCTION,
            UnitCosine,
        );
        hnsw.set_searching_mode(false);
        VectorIndex {
            hnsw,
            dims,
            points: AtomicUsize::new(0),
            ids: Mutex::new(HashSet::new()),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Points in the graph, tombstones included.
    pub fn points(&self) -> usize {
        self.points.load(Ordering::Relaxed)
    }

    /// Inserts vectors one at a time in chunk-id order, so the graph depends only on the
    /// vectors and their ids: the same chunks give the same graph (and the same rankings)
    /// whether they come in one batch or many (batches come in id order: ids grow), and
    /// hnsw_rs draws the levels from a fixed seed. Parallel insertion would race on the
    /// graph, so two builds would differ. Vectors of the
    /// wrong dimension are ignored rather than corrupting the graph.
    ///
    /// The vectors are rounded to the precision of the embedding cache first, so a vector
    /// read back from the store builds the same graph as a freshly computed one.
    pub fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let mut data: Vec<(Vec<f32>, usize)> = items
            .iter()
            .filter(|(id, v)| v.len() == self.dims && id.0 >= 0 && ids.insert(id.0 as usize))
            .map(|(id, v)| {
                let mut v = v.clone();
                stored_precision(&mut v);
                (v, id.0 as usize)
            })
            .collect();
        drop(ids);
        data.sort_by_key(|(_, id)| *id);
        for (v, id) in &data {
            self.hnsw.insert_slice((v.as_slice(), *id));
        }
        self.points.fetch_add(data.len(), Ordering::Relaxed);
    }

    /// Whether the graph holds a point for this chunk (live or not).
    pub fn contains(&self, id: ChunkId) -> bool {
        id.0 >= 0
            && self
                .ids
                .lock()
                .map(|ids| ids.contains(&(id.0 as usize)))
                .unwrap_or(false)
    }

    /// The `k` nearest live chunks to `query`, as (id, cosine similarity), best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: &LiveSet,
    ) -> Vec<(ChunkId, f32)> {
        if self.points() == 0
            || k == 0
            || query.len() != self.dims
            || query.iter().all(|x| *x == 0.0)
        {
            return Vec::new();
        }
        let filter = |id: &usize| live.contains(*id);
        self.hnsw
            .search_filter(query, k, ef.max(k), Some(&filter))
            .into_iter()
            .map(|n| (ChunkId(n.get_origin_id() as i64), 1.0 - n.get_distance()))
            .collect()
    }

    /// Writes the graph next to a sidecar naming the store generation it reflects. The
    /// sidecar is replaced atomically last, so a crash leaves the old dump or the new one.
    pub fn save(&self, dir: &Path, generation: u64) -> std::io::Result<()> {
        let basename = format!("vectors-{generation}");
        let points = self.points();
        let mut sums = Vec::new();
        if points > 0 {
            // hnsw_rs panics when it cannot create its files; that must not end the caller.
            let dumped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.hnsw.file_dump(dir, &basename)
            }));
            match dumped {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                Err(_) => {
                    return Err(std::io::Error::other(
                        "the vector graph could not be written",
                    ))
                }
            }
            sums = checksums(dir, &basename)
                .ok_or_else(|| std::io::Error::other("the vector dump cannot be read back"))?;
        }
        let sidecar = Sidecar {
            generation,
            dims: self.dims,
            points,
            basename: basename.clone(),
            checksums: sums,
        };
        let tmp = dir.join(format!("{SIDECAR}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&sidecar).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, dir.join(SIDECAR))?;
        // Old dumps are garbage now.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("vectors-") && !name.starts_with(&format!("{basename}.")) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Whether the dump on disk already reflects `generation` (nothing to write).
    pub fn dump_is_current(dir: &Path, generation: u64, points: usize) -> bool {
        std::fs::read(dir.join(SIDECAR))
            .ok()
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok())
            .is_some_and(|s| s.generation == generation && s.points == points)
    }

    /// Loads the dump if it exists, matches `generation` and `dims`, and reads cleanly.
    pub fn load(dir: &Path, generation: u64, dims: usize) -> Option<VectorIndex> {
        let sidecar: Sidecar =
            serde_json::from_slice(&std::fs::read(dir.join(SIDECAR)).ok()?).ok()?;
        if sidecar.generation != generation || sidecar.dims != dims {
            return None;
        }
        if sidecar.points == 0 {
            return Some(VectorIndex::new(dims, 1024));
        }
        // hnsw_rs ties the graph's lifetime to its loader; one loader per process start
        // is leaked on purpose (a few hundred bytes).
        if checksums(dir, &sidecar.basename).as_ref() != Some(&sidecar.checksums) {
            return None;
        }
        let basename = sidecar.basename.clone();
        let loaded = std::panic::catch_unwind(move || {
            let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(dir, &basename)));
            io.load_hnsw::<f32, UnitCosine>()
        });
        let mut hnsw = loaded.ok()?.ok()?;
        if hnsw.get_nb_point() != sidecar.points {
            return None;
        }
        hnsw.set_searching_mode(false);
        let ids: HashSet<usize> = hnsw
            .get_point_indexation()
            .into_iter()
            .map(|p| p.get_origin_id())
            .collect();
        Some(VectorIndex {
            hnsw,
            dims,
            points: AtomicUsize::new(sidecar.points),
            ids: Mutex::new(ids),
        })
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
        let index = VectorIndex::new(32, 500);
        index.insert(&items);
        let live = LiveSet::from_ids((1..=500).map(ChunkId));
        let hits = index.search(&items[41].1, 5, 64, &live);
        assert_eq!(hits[0].0, ChunkId(42));
        assert!((hits[0].1 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn deleted_chunks_are_never_returned() {
        let items = sample(300);
        let index = VectorIndex::new(32, 300);
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
        let index = VectorIndex::new(32, 200);
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
        let index = VectorIndex::new(32, 100);
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
        let whole = VectorIndex::new(32, n as usize);
        whole.insert(&items);
        // Another build: batches of other sizes, each shuffled.
        let batched = VectorIndex::new(32, n as usize);
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
        shared.install(VectorIndex::new(32, 100), LiveSet::default());
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
}
