//! The engine: one workspace's index, and the operations the CLI and the server share —
//! index (incrementally), search (hybrid, reranked) and status.
//!
//! It wires the parts together and owns the order of work: walk -> read and chunk (in
//! parallel) -> embed what the cache lacks -> commit each batch of files in one store
//! transaction -> insert the new vectors into the vector index -> dump it. It does not
//! print: progress goes through [`IndexProgress`], results come back as data.

use crate::ann::{Feeder, LiveSet, SharedVectors, VectorIndex};
use crate::answer::prompt::{self, PromptOptions, PromptSource};
use crate::answer::{self, AskResult};
use crate::chunk::{self, ChunkBudget};
use crate::config::Config;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::provider::chat::ChatClient;
use crate::provider::{Provider, RemoteReranker};
use crate::rerank::{self, Reranker};
use crate::retrieve;
pub use crate::retrieve::{Rerank, Retrieval, SearchHit};
use crate::store::{self, ChunkId, FileState, Identity, NewChunk, Store, StoredChunk, TextHash};
use crate::tokenize;
use crate::workspace::{self, WalkOptions, WalkedFile};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod content_hashes;
mod indexing;
mod location;
mod model;
mod plan;
mod priority;
mod readers;
mod shared_update;
mod status;
mod team;
mod vectors;
mod writer_base;

pub use indexing::{DocumentUpdate, IndexProgress, IndexReport, NoProgress};
pub use location::{index_dir_for, workspace_root};
use location::{lock_is_held, take_lock};
pub use model::{BackgroundModel, ModelProgress, ModelVectors, NoModelProgress, BACKGROUND_BATCH};
pub use plan::AnswerPlan;
pub use priority::{in_background, lower_this_thread};
pub use readers::ReaderPool;
pub use shared_update::{index_shared, SharedIndexReport};
pub use status::{EmbeddingInfo, IndexState, Status};
pub use team::SharedRef;

pub struct Engine {
    root: PathBuf,
    index_dir: PathBuf,
    config: Config,
    embedder: Arc<dyn Embedder>,
    store: Store,
    vectors: Arc<SharedVectors>,
    /// Why embedding failed in this process (the index serves lexical retrieval).
    degraded: Option<String>,
    /// Paths whose text comes from an editor buffer, not from the disk.
    overlays: HashSet<String>,
    reranker: Option<RemoteReranker>,
    chat: Option<ChatClient>,
    /// While indexing: takes the graph's inserts and removals on a thread of its own.
    feeder: Option<Feeder>,
    /// Texts embedded at query time by this engine (`model`).
    lazily_embedded: u64,
    /// The shared team index this workspace reads (`store.url`); the store above is
    /// then its local overlay (see `team`).
    shared: Option<SharedRef>,
    /// Why the last index run could not narrow to the overlay (the database was away).
    shared_note: Option<String>,
    /// Content hashes of the workspace's files by path, with the size and mtime they were
    /// read at: a long-lived engine (the server's) compares with the shared ref by stats.
    content_hashes: HashMap<String, (u64, i64, [u8; 32])>,
    _lock: Option<File>,
}

impl Engine {
    /// Opens (creating if needed) the index of `root` for indexing; takes the index's
    /// lock, so two writers never interleave.
    pub fn open_for_writing(root: &Path, config: Config, index_dir: PathBuf) -> Result<Engine> {
        Engine::open_for_writing_with(root, config, index_dir, SharedVectors::new())
    }

    /// [`Engine::open_for_writing`], sharing its vector index with other engines (the
    /// server's readers) so they see each committed batch at once.
    pub fn open_for_writing_with(
        root: &Path,
        config: Config,
        index_dir: PathBuf,
        vectors: Arc<SharedVectors>,
    ) -> Result<Engine> {
        let index_dir = team::overlay_dir(&config, index_dir);
        std::fs::create_dir_all(&index_dir).map_err(|e| {
            Error::io(
                format!("cannot create the index folder {}", index_dir.display()),
                e,
            )
        })?;
        let lock = take_lock(&index_dir)?;
        let store = Store::open(&index_dir)?;
        Engine::assemble(root, config, index_dir, store, Some(lock), vectors)
    }

    /// Opens an existing index for searching; `None` when the workspace has none yet or
    /// it was built by another embedder (it must be re-indexed first).
    pub fn open_for_reading(
        root: &Path,
        config: Config,
        index_dir: PathBuf,
    ) -> Result<Option<Engine>> {
        Engine::open_for_reading_with(root, config, index_dir, SharedVectors::new())
    }

    /// [`Engine::open_for_reading`], sharing the vector index of a writer.
    pub fn open_for_reading_with(
        root: &Path,
        config: Config,
        index_dir: PathBuf,
        vectors: Arc<SharedVectors>,
    ) -> Result<Option<Engine>> {
        let index_dir = team::overlay_dir(&config, index_dir);
        let Some(store) = Store::open_existing(&index_dir)? else {
            return Ok(None);
        };
        let engine = Engine::assemble(root, config, index_dir, store, None, vectors)?;
        if engine.store.identity()? != Some(engine.identity()) {
            return Ok(None);
        }
        Ok(Some(engine))
    }

    /// Whether this engine is the index's writer (it holds the lock).
    fn holds_lock(&self) -> bool {
        self._lock.is_some()
    }

    fn assemble(
        root: &Path,
        config: Config,
        index_dir: PathBuf,
        store: Store,
        lock: Option<File>,
        vectors: Arc<SharedVectors>,
    ) -> Result<Engine> {
        let embedder = crate::provider::embeddings::embedder_for(&config)?;
        // A remote model's dimension is whatever the index recorded for it last time.
        if let Some(recorded) = store.identity()? {
            if recorded.embedder == embedder.id() && recorded.dimensions > 0 {
                embedder.assume_dimensions(recorded.dimensions);
            }
        }
        let provider = Provider::from_config(&config.provider);
        let reranker = provider
            .clone()
            .filter(|_| config.rerank.enabled && !config.rerank.model.is_empty())
            .map(|p| RemoteReranker::new(p, &config.rerank.model));
        let chat = provider
            .filter(|_| !config.chat.model.is_empty())
            .map(|p| ChatClient::new(p, &config.chat.model));
        let shared = SharedRef::from_config(root, &config)?;
        Ok(Engine {
            root: root.to_path_buf(),
            index_dir,
            config,
            embedder: embedder.into(),
            store,
            vectors,
            degraded: None,
            overlays: HashSet::new(),
            reranker,
            chat,
            feeder: None,
            lazily_embedded: 0,
            shared,
            shared_note: None,
            content_hashes: HashMap::new(),
            _lock: lock,
        })
    }

    /// Chunks in the index (a count, no walk).
    pub fn chunk_count(&self) -> Result<u64> {
        Ok(self.store.counts()?.chunks)
    }

    /// The chunk of `path` (workspace-relative) at 1-based `line`, if indexed.
    pub fn chunk_at(&self, path: &str, line: u32) -> Result<Option<StoredChunk>> {
        self.store.chunk_at(path, line)
    }

    pub fn shared_vectors(&self) -> Arc<SharedVectors> {
        self.vectors.clone()
    }

    pub fn index_dir(&self) -> &Path {
        &self.index_dir
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Loads what searches keep in memory (the lexical stage's chunk sizes) ahead of the
    /// first search, and readies a shared ref's connection in the background.
    pub fn prime(&mut self) -> Result<()> {
        self.start_warming_shared();
        self.store.prime_lexical()
    }

    pub fn embedder(&self) -> &dyn Embedder {
        self.embedder.as_ref()
    }

    /// The index identity, without asking a remote service (dimension 0 = unknown).
    fn identity(&self) -> Identity {
        Identity {
            embedder: self.embedder.id(),
            dimensions: self.embedder.known_dimensions().unwrap_or(0),
        }
    }

    fn walk_options(&self) -> WalkOptions {
        WalkOptions {
            max_file_bytes: self.config.index.max_file_bytes,
            exclude: self.config.index.exclude.clone(),
            index_secrets: self.config.index.index_secrets,
            ..WalkOptions::default()
        }
    }

    fn budget(&self) -> ChunkBudget {
        ChunkBudget {
            max_bytes: self.config.index.chunk_max_bytes,
            min_bytes: self.config.index.chunk_min_bytes,
            max_lines: self.config.index.chunk_max_lines,
        }
    }

    /// Hybrid search: lexical and vector candidates, fused, reranked. See [`Engine::retrieve`].
    pub fn search(&mut self, query: &str, top_k: usize, rerank: bool) -> Result<Vec<SearchHit>> {
        let how = if rerank { Rerank::Best } else { Rerank::None };
        Ok(self.retrieve(query, top_k, how)?.hits)
    }

    /// Hybrid retrieval: lexical and vector candidates, fused, then reranked — by the
    /// remote cross-encoder when one is configured (falling back to the offline scorer
    /// if it fails), else by the offline scorer. Every fallback is said in `notes`.
    pub fn retrieve(&mut self, query: &str, top_k: usize, how: Rerank) -> Result<Retrieval> {
        let rerank = how != Rerank::None;
        let started = Instant::now();
        let mut notes = Vec::new();
        let model = self.embedder.embeds_in_background();
        let mut rc = self.config.retrieve.clone();
        if model {
            rc.lexical_weight = rc.model_lexical_weight;
            rc.vector_weight = rc.model_vector_weight;
        }
        let use_vectors = rc.vector_candidates > 0 && rc.vector_weight > 0.0;
        if use_vectors {
            if self.vectors.is_lazy() {
                // The server: never wait for the graph; it loads in the background and
                // the answers are lexical until it is there.
                self.start_loading_vectors();
            } else {
                self.load_vectors()?;
            }
        }
        if use_vectors && model && rc.lazy_embed > 0 {
            // The model's backlog may not have reached this query's candidates yet.
            if let Err(e) = self.embed_candidates(query, rc.lazy_embed) {
                notes.push(format!(
                    "query-time embedding with the local model failed ({e})"
                ));
            }
        }
        let pool = if rerank {
            self.config.rerank.candidates.max(top_k)
        } else {
            top_k
        };
        let query_vector = retrieve::QueryVector::default();
        // Over a shared ref the local index is the overlay: the files that differ from
        // the ref. With none, there is nothing in it to ask.
        let overlay = match &self.shared {
            Some(_) => Some(self.overlay_paths()?),
            None => None,
        };
        let mut hits = Vec::new();
        if overlay.as_ref().is_none_or(|paths| !paths.is_empty()) {
            let local = retrieve::LocalIndex {
                store: &self.store,
                vectors: use_vectors.then_some(&*self.vectors),
            };
            let sources = retrieve::Candidates {
                root: &self.root,
                source: &local,
                embedder: self.embedder.as_ref(),
                query_vector: &query_vector,
                rescore_lexical: model,
                hashed_weight: if model { rc.model_hashed_weight } else { 0.0 },
            };
            hits = retrieve::hybrid(&sources, query, pool, &rc, &mut notes)?;
        }
        if let (Some(shared), Some(overlay)) = (&self.shared, &overlay) {
            // The shared ref's hits, less the paths the local overlay holds, with the
            // overlay's own hits: one list by fused score.
            let asked = team::SharedQuestion {
                query,
                query_vector: &query_vector,
                excluded: overlay,
                pool,
                use_vectors,
                rc: &rc,
            };
            match self.shared_hits(shared, &asked, &mut notes)? {
                Ok(shared_hits) => {
                    hits.extend(shared_hits);
                    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
                    hits.truncate(pool);
                }
                Err(why) => notes.push(format!("{why}; results from the local index only")),
            }
        }
        let retrieve_ms = started.elapsed().as_millis() as u64;
        let mut reranked_by = None;
        let mut rerank_ms = None;
        if rerank && hits.len() > 1 {
            let started = Instant::now();
            let offline = rerank::Offline(&self.config.rerank.offline);
            let remote = self
                .reranker
                .as_ref()
                .filter(|_| how == Rerank::Best)
                .map(|r| r as &dyn Reranker);
            reranked_by = Some(rerank::rerank(
                query,
                &mut hits,
                top_k,
                &offline,
                remote,
                self.config.rerank.min_score,
                &mut notes,
            ));
            rerank_ms = Some(started.elapsed().as_millis() as u64);
        }
        hits.truncate(top_k);
        Ok(Retrieval {
            hits,
            notes,
            reranked_by,
            retrieve_ms,
            rerank_ms,
        })
    }
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_words_drop_the_extension_only() {
        assert_eq!(
            indexing::path_words("src/http/client.rs"),
            "src http client"
        );
        assert_eq!(indexing::path_words(".github/ci"), " github ci");
        assert_eq!(indexing::path_words("Makefile"), "Makefile");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
