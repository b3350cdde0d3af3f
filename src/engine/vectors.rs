//! Upkeep of the derived vector index: loading (or rebuilding) it, inserting new vectors,
//! compacting and dumping it.

use super::*;

impl Engine {
    /// Writes what only memory holds (the vector graph's dump), e.g. before shutdown.
    pub fn flush(&mut self) -> Result<()> {
        self.finish_vectors()
    }

    pub(super) fn chunk_ids_of_path(&self, path: &str) -> Result<Vec<ChunkId>> {
        Ok(self
            .store
            .chunk_hashes_of(path)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Loads the vector index from its dump, or rebuilds it from the store when the dump
    /// is missing, stale or unreadable. Engines sharing the vectors load them once.
    pub(super) fn load_vectors(&mut self) -> Result<()> {
        if self.vectors.is_loaded() {
            return Ok(());
        }
        if self.identity().dimensions == 0 {
            // No vectors without a known dimension: retrieval is lexical for now.
            return Ok(());
        }
        let shared = self.vectors.clone();
        let _loading = shared.loading();
        if self.vectors.is_loaded() {
            return Ok(());
        }
        let dims = self.identity().dimensions;
        let generation = self.store.generation()?;
        let live = LiveSet::from_ids(self.store.live_chunk_ids()?);
        let exact_below = VectorIndex::exact_limit(self.config.index.exact_search_below, dims);
        // Below the threshold the index is exact, read from the store's vectors: there is
        // no graph to load.
        let dumped = (live.len() >= exact_below)
            .then(|| VectorIndex::load(&self.index_dir, generation, dims))
            .flatten();
        let index = match dumped {
            Some(index) => index,
            None => {
                let index = VectorIndex::from_store(
                    &self.store,
                    &self.identity(),
                    live.len(),
                    exact_below,
                )?;
                // Only the writer (it holds the index's lock) rewrites the dump: a reader
                // rebuilds in memory and leaves the file to the process responsible for it.
                if !index.is_exact() && index.points() > 0 && self.holds_lock() {
                    // Best effort: a failed dump only costs a rebuild next time.
                    let _ = index.save(&self.index_dir, generation);
                }
                index
            }
        };
        self.vectors.install(index, live);
        // A dump of the same chunks may lack vectors committed since (a slow model's
        // background or query-time embedding): the graph takes them now.
        if self.embeds_in_background() {
            model::catch_up_graph(&self.store, &self.identity(), &self.vectors)?;
        }
        Ok(())
    }

    /// Starts loading the vector graph on a thread of its own (once), unless it is loaded
    /// already; searches meanwhile are lexical. The thread reads through its own
    /// connection to the index.
    pub fn start_loading_vectors(&self) {
        if self.vectors.is_loaded()
            || self.identity().dimensions == 0
            || !self.vectors.claim_background_load()
        {
            return;
        }
        let (root, config, dir) = (
            self.root.clone(),
            self.config.clone(),
            self.index_dir.clone(),
        );
        let vectors = self.vectors.clone();
        let spawned = std::thread::Builder::new()
            .name("ragls-vectors".into())
            .spawn(move || {
                let loaded = Engine::open_for_reading_with(&root, config, dir, vectors.clone())
                    .and_then(|engine| match engine {
                        Some(mut engine) => engine.load_vectors(),
                        None => Ok(()),
                    });
                if let Err(e) = loaded {
                    eprintln!("ragls: cannot load the vector index: {e}");
                }
                if !vectors.is_loaded() {
                    // Not loaded (an error, or no index yet): a later search tries again.
                    vectors.clear();
                }
            });
        if spawned.is_err() {
            // No thread: the next search tries again.
            self.vectors.clear();
        }
    }

    pub(super) fn insert_vectors(&mut self, new_vectors: Vec<(ChunkId, Vec<f32>)>) {
        match &self.feeder {
            Some(f) => f.insert(new_vectors),
            None => self.vectors.insert(&new_vectors),
        }
    }

    pub(super) fn remove_vectors(&mut self, ids: Vec<ChunkId>) {
        match &self.feeder {
            Some(f) => f.remove(ids),
            None => self.vectors.remove(&ids),
        }
    }

    /// Waits for the graph to take in what the feeder was given.
    pub(super) fn drain_feeder(&mut self) {
        if let Some(f) = self.feeder.take() {
            f.finish();
        }
    }

    /// Compacts the vector index when tombstones pass the threshold, and dumps it for the
    /// next start.
    pub(super) fn finish_vectors(&mut self) -> Result<()> {
        self.drain_feeder();
        let generation = self.store.generation()?;
        let identity = self.identity();
        let Some(index) = self.vectors.current() else {
            return Ok(());
        };
        let tombstones = index.points().saturating_sub(self.vectors.live_len());
        let ratio = self.config.index.compact_deleted_ratio;
        // The kind follows the size: exact below the threshold, a graph from there on.
        let exact_below =
            VectorIndex::exact_limit(self.config.index.exact_search_below, index.dims());
        let wrong_kind = index.is_exact() != (self.vectors.live_len() < exact_below);
        let index = if wrong_kind
            || (index.points() > 0 && tombstones as f32 > ratio * index.points() as f32)
        {
            let live = LiveSet::from_ids(self.store.live_chunk_ids()?);
            let fresh = VectorIndex::from_store(&self.store, &identity, live.len(), exact_below)?;
            self.vectors.install(fresh, live);
            self.vectors.current().unwrap_or(index)
        } else {
            index
        };
        if index.is_exact() {
            // Nothing to write; a graph dump of earlier runs is garbage now.
            if self.holds_lock() {
                VectorIndex::remove_dump(&self.index_dir);
            }
            return Ok(());
        }
        if VectorIndex::dump_is_current(&self.index_dir, generation, index.points()) {
            // Unchanged: rewriting the same dump in place would only risk tearing it.
            return Ok(());
        }
        index.save(&self.index_dir, generation).map_err(|e| {
            Error::io(
                format!(
                    "cannot write the vector index in {}",
                    self.index_dir.display()
                ),
                e,
            )
        })
    }
}
