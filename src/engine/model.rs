//! A slow local model's vectors (a transformer on the CPU), which nobody waits for:
//! indexing commits chunks without them, so the index answers at once; a background pass
//! at the lowest CPU priority fills them in, batch by committed batch; and at query time
//! the best lexical candidates that still lack one are embedded on the spot.
//!
//! How this coexists with the rest: one embedder per index still holds — the index's
//! vectors are the model's, cached by (model id, dimensions, text hash) like any
//! embedder's. Until the model covers every chunk, the vector list of a query is the graph
//! over the chunks embedded so far plus the exact cosine of every lexical candidate that
//! has a vector (`retrieve::hybrid`, `rescore_lexical`), and the best few candidates are
//! embedded first. The built-in embedder does not stand in meanwhile: re-scoring the
//! lexical candidates with the model ranks better than the hashed vectors do, and a
//! second vector index would double the upkeep for the minutes the backlog lasts.
//!
//! Resuming is free: the pass asks the store which chunks lack a vector, so whatever a
//! killed process committed is never embedded again.

use super::*;

/// Chunks per committed batch of background embedding: small, so a kill loses little and
/// a shutdown never waits long for the model.
pub const BACKGROUND_BATCH: usize = 16;

/// How far the model's vectors cover the index (`modelVectors` in `rag/status`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ModelVectors {
    /// Chunks that have a vector of the model.
    pub done: u64,
    /// Chunks in the index.
    pub total: u64,
    pub model: String,
}

/// Where background embedding reports how far it got, and learns that it should stop.
pub trait ModelProgress: Sync {
    fn update(&self, coverage: &ModelVectors);
    /// Checked between batches (settings changed, the server is shutting down).
    fn stop_requested(&self) -> bool {
        false
    }
}

/// Progress that goes nowhere.
pub struct NoModelProgress;

impl ModelProgress for NoModelProgress {
    fn update(&self, _: &ModelVectors) {}
}

/// `RAGLS_FAULT_ABORT_AFTER_MODEL_BATCHES=N` aborts the process right after the N-th
/// committed batch of model vectors: the resume test kills ragls at a known point.
fn fault_abort_after_model_batches() -> Option<usize> {
    std::env::var("RAGLS_FAULT_ABORT_AFTER_MODEL_BATCHES")
        .ok()?
        .parse()
        .ok()
}

/// Embeds every chunk that lacks a vector of `embedder`, one small committed batch at a
/// time, adding each batch to the vector graph; `low_priority` runs the model on threads
/// that only get the CPU when nothing else wants it. Returns the texts embedded.
fn backfill(
    store: &mut Store,
    embedder: &dyn Embedder,
    identity: &Identity,
    vectors: &SharedVectors,
    low_priority: bool,
    progress: &dyn ModelProgress,
) -> Result<u64> {
    let (mut done, total) = store.vector_coverage(identity)?;
    let model = embedder.model_name();
    let report = |done: u64, total: u64| {
        progress.update(&ModelVectors {
            done,
            total,
            model: model.clone(),
        })
    };
    report(done, total);
    let abort_after = fault_abort_after_model_batches();
    let mut after = ChunkId(i64::MIN);
    let (mut batches, mut embedded) = (0usize, 0u64);
    while !progress.stop_requested() {
        let pending = store.chunks_without_vectors_after(identity, after, BACKGROUND_BATCH)?;
        let Some(last) = pending.last() else {
            break;
        };
        after = last.0;
        let texts = embed_and_store(store, identity, vectors, &pending, |texts| {
            if !low_priority {
                return embedder.embed(texts);
            }
            match super::priority::idle_pool() {
                Some(pool) => pool.install(|| embedder.embed(texts)),
                None => embedder.embed(texts),
            }
        })?;
        done += pending.len() as u64;
        embedded += texts;
        report(done.min(total), total);
        batches += 1;
        if abort_after == Some(batches) {
            // Fault injection for the resume test: die like `kill -9` would.
            std::process::abort();
        }
    }
    catch_up_graph(store, identity, vectors)?;
    let (done, total) = store.vector_coverage(identity)?;
    report(done, total);
    Ok(embedded)
}

/// Embeds the distinct texts of `pending` (chunk, text hash, embedding text) with `embed`,
/// caches their vectors in one transaction and adds every chunk's vector to the vector
/// index (a loaded graph, the server's shared one, takes them now; a later load catches
/// up). The one path of the background pass and of query-time embedding. Returns the
/// texts embedded.
fn embed_and_store(
    store: &mut Store,
    identity: &Identity,
    vectors: &SharedVectors,
    pending: &[(ChunkId, TextHash, String)],
    embed: impl FnOnce(&[&str]) -> Result<Vec<Vec<f32>>>,
) -> Result<u64> {
    let mut seen = HashSet::new();
    let unique: Vec<&(ChunkId, TextHash, String)> =
        pending.iter().filter(|(_, h, _)| seen.insert(*h)).collect();
    let texts: Vec<&str> = unique.iter().map(|(_, _, t)| t.as_str()).collect();
    let out = embed(&texts)?;
    if out.len() != texts.len() {
        return Err(Error::Other(format!(
            "the model returned {} vectors for {} texts",
            out.len(),
            texts.len()
        )));
    }
    let by_hash: HashMap<TextHash, Vec<f32>> = unique.iter().map(|(_, h, _)| *h).zip(out).collect();
    let mut w = store.writer()?;
    for (h, v) in &by_hash {
        w.put_vector(identity, h, v)?;
    }
    w.commit()?;
    let items: Vec<(ChunkId, Vec<f32>)> = pending
        .iter()
        .filter_map(|(id, h, _)| by_hash.get(h).map(|v| (*id, v.clone())))
        .collect();
    vectors.insert(&items);
    Ok(texts.len() as u64)
}

/// Adds to a loaded graph every live chunk whose vector the store has and the graph lacks:
/// vectors committed after the dump (a killed pass, query-time embedding in another
/// process), or chunks that share a text with one embedded meanwhile.
pub(super) fn catch_up_graph(
    store: &Store,
    identity: &Identity,
    vectors: &SharedVectors,
) -> Result<()> {
    let Some(index) = vectors.current() else {
        return Ok(());
    };
    let missing: Vec<ChunkId> = store
        .live_vector_ids(identity)?
        .into_iter()
        .filter(|id| !index.contains(*id))
        .collect();
    if !missing.is_empty() {
        let (have, _) = store.vectors_of_chunks(identity, &missing)?;
        vectors.insert(&have);
    }
    Ok(())
}

/// The background pass of one index, runnable on a thread of its own (the server's): it
/// opens its own connection to the store and shares the vector graph and the model with
/// the engines of the process.
pub struct BackgroundModel {
    config: Config,
    index_dir: PathBuf,
    vectors: Arc<SharedVectors>,
}

impl BackgroundModel {
    /// Embeds the backlog at the lowest priority; stops between batches when asked.
    pub fn run(&self, progress: &dyn ModelProgress) -> Result<u64> {
        let mut store = Store::open(&self.index_dir)?;
        let embedder = crate::provider::embeddings::embedder_for(&self.config)?;
        let identity = Identity {
            embedder: embedder.id(),
            dimensions: embedder.dimensions(),
        };
        if !embedder.embeds_in_background() || store.identity()? != Some(identity.clone()) {
            // Another embedder's index (settings changed meanwhile): nothing of ours to do.
            return Ok(0);
        }
        backfill(
            &mut store,
            embedder.as_ref(),
            &identity,
            &self.vectors,
            true,
            progress,
        )
    }
}

impl Engine {
    /// Whether this index's vectors come from a model too slow to wait for, which embeds
    /// in the background and at query time instead of while indexing.
    pub fn embeds_in_background(&self) -> bool {
        self.embedder.embeds_in_background()
    }

    /// How far the model's vectors cover the index; `None` for embedders that keep up
    /// with indexing.
    pub fn model_vectors(&self) -> Result<Option<ModelVectors>> {
        if !self.embeds_in_background() {
            return Ok(None);
        }
        let (done, total) = self.store.vector_coverage(&self.identity())?;
        Ok(Some(ModelVectors {
            done,
            total,
            model: self.embedder.model_name(),
        }))
    }

    /// Embeds the model's backlog now, at normal priority (`ragls index`: the user asked
    /// for an index and waits for it), committing batch by batch: an interrupted run
    /// loses one batch at most. Returns the texts embedded.
    pub fn embed_backlog(&mut self, progress: &dyn ModelProgress) -> Result<u64> {
        if !self.embeds_in_background() || self.degraded.is_some() {
            return Ok(0);
        }
        self.load_vectors()?;
        self.drain_feeder();
        let identity = self.identity();
        let embedded = backfill(
            &mut self.store,
            self.embedder.as_ref(),
            &identity,
            &self.vectors,
            false,
            progress,
        )?;
        self.finish_vectors()?;
        Ok(embedded)
    }

    /// The background pass for this index, to run on a thread of the caller's (`None`
    /// unless the model embeds in the background).
    pub fn background_model(&self) -> Option<BackgroundModel> {
        self.embeds_in_background().then(|| BackgroundModel {
            config: self.config.clone(),
            index_dir: self.index_dir.clone(),
            vectors: self.vectors.clone(),
        })
    }

    /// Query-time embedding: the best `limit` lexical candidates of `query` that lack a
    /// model vector are embedded now (one forward pass) and cached in the store, so the
    /// first questions already rank semantically. A query whose candidates all have
    /// vectors costs one lexical search and no model call. Returns the texts embedded.
    pub(super) fn embed_candidates(&mut self, query: &str, limit: usize) -> Result<u64> {
        let rc = &self.config.retrieve;
        let terms = tokenize::terms(query);
        let ids: Vec<ChunkId> = self
            .store
            .lexical_search(&terms, limit, rc.head_weight)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let identity = self.identity();
        let (_, lack) = self.store.vectors_of_chunks(&identity, &ids)?;
        if lack.is_empty() {
            return Ok(0);
        }
        let texts = embed_and_store(&mut self.store, &identity, &self.vectors, &lack, |t| {
            self.embedder.embed(t)
        })?;
        self.lazily_embedded += texts;
        Ok(texts)
    }

    /// Texts this engine embedded at query time so far.
    pub fn lazily_embedded(&self) -> u64 {
        self.lazily_embedded
    }
}
