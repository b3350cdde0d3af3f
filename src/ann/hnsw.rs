//! The graph index for large workspaces: an HNSW graph (hnsw_rs) over chunk vectors,
//! searched with a filter that hides deleted chunks, dumped to disk so a warm start does
//! not re-insert.
//!
//! Deleted chunks stay in the graph as tombstones (hnsw_rs has no removal) until the
//! caller compacts, that is rebuilds, past a threshold.

use super::{dot, LiveSet};
use crate::store::{stored_precision, ChunkId};
use hnsw_rs::prelude::{AnnT, Distance, Hnsw, HnswIo};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Graph width and build effort, measured on the 1M-line corpus (49k chunks, built-in
/// embedder; README, "Performance"): 12 / 40 builds the graph in about 0.65 of the time of
/// 16 / 64 for a recall@50 of 0.48 instead of 0.54 against an exact scan.
const MAX_CONNECTIONS: usize = 12;
const MAX_LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 40;
pub(super) const SIDECAR: &str = "vectors.json";

/// Cosine distance for unit vectors: `1 - a.b`, clamped so rounding never makes it
/// negative (hnsw_rs's own `DistDot` asserts on that).
#[derive(Clone, Copy, Debug, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).clamp(0.0, 2.0)
    }
}

pub(super) struct Graph {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    pub(super) dims: usize,
    /// Points in the graph, tombstones included.
    points: AtomicUsize,
    /// The chunk ids in the graph: a chunk is inserted at most once, however many paths
    /// (the indexer, the model's background embedding, query-time embedding) offer it.
    ids: Mutex<HashSet<usize>>,
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

/// Removes every graph dump in `dir` but `keep`'s files (all of them for `None`).
pub(super) fn remove_dumps(dir: &Path, keep: Option<&str>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let kept = keep.is_some_and(|k| name.starts_with(&format!("{k}.")));
            if name.starts_with("vectors-") && !kept {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Graph {
    pub(super) fn new(dims: usize, expected_points: usize) -> Self {
        let mut hnsw = Hnsw::new(
            MAX_CONNECTIONS,
            expected_points.max(1024),
            MAX_LAYERS,
            EF_CONSTRUCTION,
            UnitCosine,
        );
        hnsw.set_searching_mode(false);
        Graph {
            hnsw,
            dims,
            points: AtomicUsize::new(0),
            ids: Mutex::new(HashSet::new()),
        }
    }

    pub(super) fn points(&self) -> usize {
        self.points.load(Ordering::Relaxed)
    }

    /// See [`super::VectorIndex::insert`]: one at a time, in chunk-id order, at the
    /// cache's precision.
    pub(super) fn insert(&self, items: &[(ChunkId, Vec<f32>)]) {
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

    /// Inserts one vector already at the cache's precision (the caller keeps id order).
    pub(super) fn insert_one(&self, id: ChunkId, v: &[f32]) {
        let fresh = v.len() == self.dims
            && id.0 >= 0
            && self
                .ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.0 as usize);
        if fresh {
            self.hnsw.insert_slice((v, id.0 as usize));
            self.points.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the graph holds a point for this chunk (live or not).
    pub(super) fn contains(&self, id: ChunkId) -> bool {
        id.0 >= 0
            && self
                .ids
                .lock()
                .map(|ids| ids.contains(&(id.0 as usize)))
                .unwrap_or(false)
    }

    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        live: &LiveSet,
    ) -> Vec<(ChunkId, f32)> {
        let filter = |id: &usize| live.contains(*id);
        self.hnsw
            .search_filter(query, k, ef.max(k), Some(&filter))
            .into_iter()
            .map(|n| (ChunkId(n.get_origin_id() as i64), 1.0 - n.get_distance()))
            .collect()
    }

    /// Writes the graph next to a sidecar naming the store generation it reflects. The
    /// sidecar is replaced atomically last, so a crash leaves the old dump or the new one.
    pub(super) fn save(&self, dir: &Path, generation: u64) -> std::io::Result<()> {
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
        remove_dumps(dir, Some(&basename));
        Ok(())
    }

    pub(super) fn dump_is_current(dir: &Path, generation: u64, points: usize) -> bool {
        std::fs::read(dir.join(SIDECAR))
            .ok()
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok())
            .is_some_and(|s| s.generation == generation && s.points == points)
    }

    pub(super) fn load(dir: &Path, generation: u64, dims: usize) -> Option<Graph> {
        let sidecar: Sidecar =
            serde_json::from_slice(&std::fs::read(dir.join(SIDECAR)).ok()?).ok()?;
        if sidecar.generation != generation || sidecar.dims != dims {
            return None;
        }
        if sidecar.points == 0 {
            return Some(Graph::new(dims, 1024));
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
        Some(Graph {
            hnsw,
            dims,
            points: AtomicUsize::new(sidecar.points),
            ids: Mutex::new(ids),
        })
    }
}
