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
use crate::embed::{self, Embedder};
use crate::error::{Error, Result};
use crate::provider::chat::ChatClient;
use crate::provider::{Provider, RemoteReranker};
use crate::rerank::{self, Candidate};
use crate::retrieve;
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

/// Files read, chunked and committed together: the unit of crash recovery.
const FILES_PER_BATCH: usize = 128;
const LOCK_FILE: &str = "lock";

/// Where long work reports how far it got. The CLI draws a bar, the server sends
/// `$/progress`; tests count.
pub trait IndexProgress: Sync {
    fn start(&self, total_files: u64);
    fn advance(&self, files: u64);
    fn finish(&self);
    /// Editor buffers that changed meanwhile; the indexer applies them between batches,
    /// in order, so a long index never holds an edit back for long.
    fn take_documents(&self) -> Vec<DocumentUpdate> {
        Vec::new()
    }
}

/// An editor buffer's new text (`Some`), or its closing (`None`: the file on disk is
/// what counts again).
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentUpdate {
    pub path: String,
    pub text: Option<String>,
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl IndexProgress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What one `index` run did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndexReport {
    pub files_seen: u64,
    pub files_unchanged: u64,
    pub files_changed: u64,
    pub files_removed: u64,
    pub chunks_added: u64,
    pub chunks_removed: u64,
    pub chunks_kept: u64,
    /// Vectors computed by the embedder in this run.
    pub embedded: u64,
    /// Vectors found in the embedding cache.
    pub cached: u64,
    /// Files not indexed, by reason (all of them, not only this run's).
    pub skipped: BTreeMap<String, u64>,
    /// Files that could not be read in this run: (path, reason).
    pub failed: Vec<(String, String)>,
    pub rebuilt: bool,
    /// Set when embedding failed: the index serves lexical retrieval only, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Requests made to a remote embedding service in this run.
    pub requests: u64,
    /// Time spent waiting for the embedder.
    pub embed_ms: u64,
    /// Chunk texts too long for the embedding model, embedded truncated.
    pub truncated: u64,
    pub elapsed_ms: u64,
}

/// How to order the fused candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rerank {
    /// The fused order.
    None,
    /// The offline scorer only: no request, for latency-bound callers (hover).
    Offline,
    /// The remote cross-encoder when configured (falling back to offline), else offline.
    Best,
}

/// What retrieval found, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    pub hits: Vec<SearchHit>,
    /// Fallbacks taken (no vector search, rerank failed...), in words.
    pub notes: Vec<String>,
    /// "offline", or the remote rerank model; `None` when not reranked.
    pub reranked_by: Option<String>,
    pub retrieve_ms: u64,
    pub rerank_ms: Option<u64>,
}

/// An answer about to be generated: see [`Engine::plan_answer`].
#[derive(Clone, Debug)]
pub struct AnswerPlan {
    pub question: String,
    /// The sources in the prompt, best first (`[n]` is `sources[n-1]`).
    pub sources: Vec<answer::Source>,
    pub messages: Vec<crate::answer::prompt::ChatMessage>,
    pub models: answer::Models,
    pub timings: answer::Timings,
    pub notes: Vec<String>,
    /// `None` offline: the answer is extractive.
    pub chat: Option<ChatClient>,
}

impl AnswerPlan {
    pub fn extractive(self) -> AskResult {
        let mut result =
            answer::extractive(&self.question, &self.sources, self.models, self.timings);
        result.notes = self.notes;
        result
    }

    /// The result of a generation attempt; a failed one falls back to extractive.
    pub fn finish(
        mut self,
        outcome: std::result::Result<
            crate::provider::chat::ChatOutcome,
            crate::provider::ProviderError,
        >,
        generate_ms: u64,
    ) -> AskResult {
        self.timings.generate_ms = Some(generate_ms);
        match outcome {
            Ok(o) => answer::generated(
                &o.text,
                &self.sources,
                self.models,
                self.timings,
                o.usage,
                self.notes,
            ),
            Err(e) => {
                self.notes.push(format!(
                    "generation failed ({e}); showing the sources instead"
                ));
                self.extractive()
            }
        }
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub chunk: StoredChunk,
    pub score: f32,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EmbeddingInfo {
    pub provider: String,
    pub model: String,
    pub dimensions: usize,
}

/// The `rag/status` object of PROTOCOL.md, plus the CLI's extras.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub state: String,
    pub workspace: String,
    pub index_dir: String,
    pub files: u64,
    pub chunks: u64,
    pub pending_files: u64,
    pub index_bytes: u64,
    pub embedding: EmbeddingInfo,
    pub skipped: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_indexed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Status {
    /// The status of a workspace with nothing indexed (yet), in `state`.
    pub fn empty(root: &Path, index_dir: &Path, state: &str) -> Status {
        Status {
            state: state.into(),
            workspace: root.display().to_string(),
            index_dir: index_dir.display().to_string(),
            files: 0,
            chunks: 0,
            pending_files: 0,
            index_bytes: 0,
            embedding: EmbeddingInfo {
                provider: String::new(),
                model: String::new(),
                dimensions: 0,
            },
            skipped: BTreeMap::new(),
            last_indexed: None,
            last_error: None,
        }
    }
}

pub struct Engine {
    root: PathBuf,
    index_dir: PathBuf,
    config: Config,
    embedder: Box<dyn Embedder>,
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
    _lock: Option<File>,
}

/// The folder of a workspace's index: `index.dir`, else `$XDG_CACHE_HOME/ragls/<id>`.
pub fn index_dir_for(root: &Path, config: &Config) -> Result<PathBuf> {
    if !config.index.dir.is_empty() {
        return Ok(PathBuf::from(&config.index.dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            Error::Config("neither XDG_CACHE_HOME nor HOME is set; pass --index-dir".into())
        })?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let hash = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
    Ok(cache
        .join("ragls")
        .join(format!("{}-{}", sanitize(&name), &hash[..12])))
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks that `path` is a workspace folder and returns its canonical form.
pub fn workspace_root(path: &Path) -> Result<PathBuf> {
    let root = path.canonicalize().map_err(|e| {
        Error::Usage(format!(
            "workspace folder {} cannot be opened: {e}",
            path.display()
        ))
    })?;
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "workspace {} is not a folder",
            path.display()
        )));
    }
    Ok(root)
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
        let Some(store) = Store::open_existing(&index_dir)? else {
            return Ok(None);
        };
        let engine = Engine::assemble(root, config, index_dir, store, None, vectors)?;
        if engine.store.identity()? != Some(engine.identity()) {
            return Ok(None);
        }
        Ok(Some(engine))
    }

    fn assemble(
        root: &Path,
        config: Config,
        index_dir: PathBuf,
        store: Store,
        lock: Option<File>,
        vectors: Arc<SharedVectors>,
    ) -> Result<Engine> {
        let embedder = embed::from_config(&config)?;
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
        Ok(Engine {
            root: root.to_path_buf(),
            index_dir,
            config,
            embedder,
            store,
            vectors,
            degraded: None,
            overlays: HashSet::new(),
            reranker,
            chat,
            feeder: None,
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

    /// Brings the index up to date with the workspace: only new and changed files are
    /// read, only chunks whose text is new are embedded, removed files leave the index.
    /// `rebuild` starts from nothing (the embedding cache is kept).
    pub fn index(&mut self, rebuild: bool, progress: &dyn IndexProgress) -> Result<IndexReport> {
        let started = Instant::now();
        let requests_before = self.embedder.requests_sent();
        let truncated_before = self.embedder.truncated_inputs();
        // Each run tries the embedding service afresh (a long-lived server must recover).
        self.degraded = None;
        self.embedder.retry();
        // Learn the dimension (one request for a remote model seen for the first time); if
        // the service cannot be reached, this run indexes lexically and says why.
        if self.embedder.dimensions() == 0 && self.degraded.is_none() {
            self.degraded = Some(format!(
                "embedding failed: {}",
                self.embedder
                    .last_error()
                    .unwrap_or_else(|| "the model's dimension is unknown".into())
            ));
        }
        let identity = self.identity();
        let mut report = IndexReport::default();
        if rebuild {
            // Forget the identity so that adopting it drops every file and chunk.
            self.store.set_meta("embedder", "")?;
        }
        report.rebuilt = self.store.adopt_identity(&identity)? || rebuild;
        // Tells other processes that this one is indexing now, not merely holding the
        // lock (an editor's server holds it all along).
        self.store.set_meta("indexing", "1")?;

        let walked = workspace::walk(&self.root, &self.walk_options())
            .map_err(|e| Error::Usage(e.to_string()))?;
        report.files_seen = walked.files.len() as u64;
        let known = self.store.file_states()?;

        let mut to_read: Vec<&WalkedFile> = Vec::new();
        for f in &walked.files {
            if self.overlays.contains(&f.rel_path) {
                // An open editor buffer: its text, not the disk's, is indexed.
                report.files_unchanged += 1;
                continue;
            }
            match known.get(&f.rel_path) {
                Some(s) if s.size == f.size && s.mtime_ns == f.mtime_ns => {
                    report.files_unchanged += 1
                }
                _ => to_read.push(f),
            }
        }
        let seen: HashSet<&str> = walked.files.iter().map(|f| f.rel_path.as_str()).collect();
        let removed: Vec<&String> = known
            .keys()
            .filter(|p| !seen.contains(p.as_str()) && !self.overlays.contains(p.as_str()))
            .collect();

        progress.start(to_read.len() as u64);
        if !to_read.is_empty() || !removed.is_empty() {
            // The graph is needed only when something changed: an unchanged tree costs
            // stats, not a graph load.
            self.load_vectors()?;
            self.drain_feeder();
            self.feeder = Some(Feeder::start(self.vectors.clone()));
        }
        let budget = self.budget();
        let abort_after = fault_abort_after_batches();
        for (n, batch) in to_read.chunks(FILES_PER_BATCH).enumerate() {
            let prepared: Vec<Prepared> = batch
                .par_iter()
                .map(|f| prepare(f, known.get(&f.rel_path), &budget))
                .collect();
            // Searchable as soon as committed: the batch's vectors go into the graph now.
            let new_vectors = self.commit_batch(prepared, &identity, &mut report)?;
            self.insert_vectors(new_vectors);
            progress.advance(batch.len() as u64);
            for doc in progress.take_documents() {
                self.apply_document(doc)?;
            }
            if abort_after == Some(n + 1) {
                // Fault injection for the crash tests: die like `kill -9` would.
                std::process::abort();
            }
        }
        if !removed.is_empty() {
            let mut removed_ids = Vec::new();
            let mut w = self.store.writer()?;
            for path in &removed {
                let ids = w.remove_file(path)?;
                report.chunks_removed += ids.len() as u64;
                removed_ids.extend(ids);
            }
            w.commit()?;
            self.remove_vectors(removed_ids);
            report.files_removed = removed.len() as u64;
        }
        self.drain_feeder();
        {
            let mut w = self.store.writer()?;
            let skips: Vec<(String, String)> = walked
                .skipped
                .iter()
                .map(|(p, r)| (p.clone(), r.as_str().to_string()))
                .collect();
            w.set_walk_skips(&skips)?;
            w.set_meta("last_indexed", &now_rfc3339())?;
            w.set_meta("indexing", "0")?;
            w.commit()?;
        }
        self.embed_pending(&identity, &mut report)?;
        self.store
            .set_meta("degraded", self.degraded.as_deref().unwrap_or(""))?;
        report.degraded = self.degraded.clone();
        report.requests = self.embedder.requests_sent() - requests_before;
        report.truncated = (self.embedder.truncated_inputs() - truncated_before) as u64;
        self.finish_vectors()?;
        if report.files_changed > 0 || report.files_removed > 0 {
            self.store.checkpoint()?;
        }
        progress.finish();
        report.skipped = self.store.skip_counts()?.into_iter().collect();
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    fn commit_batch(
        &mut self,
        prepared: Vec<Prepared>,
        identity: &Identity,
        report: &mut IndexReport,
    ) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let mut new_vectors = Vec::new();
        // Which chunks each changed file keeps (same text, same hash), and which are new.
        let mut plans = Vec::new();
        let mut needed: Vec<TextHash> = Vec::new();
        for p in prepared {
            match p {
                Prepared::Failed { path, reason } => report.failed.push((path, reason)),
                Prepared::Touched { path, state } => plans.push(Plan::Touch { path, state }),
                Prepared::Skipped { path, state } => {
                    let drop = self.chunk_ids_of_path(&path)?;
                    plans.push(Plan::Replace {
                        path,
                        state,
                        keep: Vec::new(),
                        add: Vec::new(),
                        drop,
                    });
                }
                Prepared::Chunked {
                    path,
                    state,
                    chunks,
                } => {
                    let mut old: HashMap<TextHash, Vec<ChunkId>> = HashMap::new();
                    for (id, h) in self.store.chunk_hashes_of(&path)? {
                        old.entry(h).or_default().push(id);
                    }
                    let mut keep = Vec::new();
                    let mut add = Vec::new();
                    for c in chunks {
                        match old.get_mut(&c.text_hash).and_then(|ids| ids.pop()) {
                            Some(id) => keep.push((id, c)),
                            None => {
                                needed.push(c.text_hash);
                                add.push(c);
                            }
                        }
                    }
                    let drop = old.into_values().flatten().collect();
                    plans.push(Plan::Replace {
                        path,
                        state,
                        keep,
                        add,
                        drop,
                    });
                }
            }
        }
        // Vectors: from the cache where possible, from the embedder for the rest.
        let mut vectors = self.store.cached_vectors(identity, &needed)?;
        report.cached += needed.iter().filter(|h| vectors.contains_key(*h)).count() as u64;
        let mut missing: Vec<(TextHash, &str)> = Vec::new();
        let mut asked: HashSet<TextHash> = HashSet::new();
        for plan in &plans {
            if let Plan::Replace { add, .. } = plan {
                for c in add {
                    if !vectors.contains_key(&c.text_hash) && asked.insert(c.text_hash) {
                        missing.push((c.text_hash, c.embedding_text.as_str()));
                    }
                }
            }
        }
        let embed_started = Instant::now();
        let fresh = self.embed_missing(&missing);
        report.embed_ms += embed_started.elapsed().as_millis() as u64;
        report.embedded += fresh.len() as u64;

        let mut w = self.store.writer()?;
        for (h, v) in &fresh {
            w.put_vector(identity, h, v)?;
        }
        vectors.extend(fresh);
        let mut dropped = Vec::new();
        for plan in plans {
            match plan {
                Plan::Touch { path, state } => w.put_file(&path, &state)?,
                Plan::Replace {
                    path,
                    state,
                    keep,
                    add,
                    drop,
                } => {
                    report.files_changed += 1;
                    report.chunks_removed += drop.len() as u64;
                    for id in drop {
                        w.remove_chunk(id)?;
                        dropped.push(id);
                    }
                    for (id, c) in &keep {
                        w.move_chunk(*id, &c.stored)?;
                    }
                    report.chunks_kept += keep.len() as u64;
                    for c in &add {
                        let id = w.insert_chunk(&path, &c.stored)?;
                        if let Some(v) = vectors.get(&c.text_hash) {
                            new_vectors.push((id, v.clone()));
                        }
                    }
                    report.chunks_added += add.len() as u64;
                    w.put_file(&path, &state)?;
                }
            }
        }
        w.commit()?;
        self.remove_vectors(dropped);
        Ok(new_vectors)
    }

    /// Indexes an editor buffer's text for `path` (workspace-relative) at once, so that
    /// retrieval sees unsaved edits; `None` returns the file to its disk content.
    pub fn apply_document(&mut self, doc: DocumentUpdate) -> Result<()> {
        let identity = self.identity();
        self.load_vectors()?;
        let known = self.store.file_state(&doc.path)?;
        let mut report = IndexReport::default();
        let prepared = match doc.text {
            Some(text) => {
                self.overlays.insert(doc.path.clone());
                // mtime -1: the disk never matches, so closing the buffer re-reads the file.
                prepare_bytes(
                    &doc.path,
                    text.len() as u64,
                    -1,
                    text.as_bytes(),
                    known.as_ref(),
                    &self.budget(),
                )
            }
            None => {
                self.overlays.remove(&doc.path);
                let abs = self.root.join(&doc.path);
                match std::fs::metadata(&abs) {
                    Ok(meta) if meta.is_file() => {
                        let mtime = meta
                            .modified()
                            .ok()
                            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                            .map_or(0, |d| d.as_nanos() as i64);
                        let walked = WalkedFile {
                            rel_path: doc.path.clone(),
                            abs_path: abs,
                            size: meta.len(),
                            mtime_ns: mtime,
                        };
                        prepare(&walked, known.as_ref(), &self.budget())
                    }
                    _ => {
                        // Gone from the disk too (an unsaved new file): forget it.
                        let mut w = self.store.writer()?;
                        let ids = w.remove_file(&doc.path)?;
                        w.commit()?;
                        self.remove_vectors(ids);
                        return Ok(());
                    }
                }
            }
        };
        let new_vectors = self.commit_batch(vec![prepared], &identity, &mut report)?;
        self.insert_vectors(new_vectors);
        Ok(())
    }

    /// Writes what only memory holds (the vector graph's dump), e.g. before shutdown.
    pub fn flush(&mut self) -> Result<()> {
        self.finish_vectors()
    }

    /// Embeds texts the cache lacks. On failure the run goes on without vectors (the
    /// chunks are still searchable lexically), remembers why, and asks no more.
    fn embed_missing(&mut self, missing: &[(TextHash, &str)]) -> Vec<(TextHash, Vec<f32>)> {
        let mut fresh = Vec::with_capacity(missing.len());
        if self.degraded.is_some() {
            return fresh;
        }
        for group in missing.chunks(self.embedder.batch_size().max(1)) {
            let texts: Vec<&str> = group.iter().map(|(_, t)| *t).collect();
            match self.embedder.embed(&texts) {
                Ok(out) if out.len() == texts.len() => {
                    fresh.extend(group.iter().map(|(h, _)| *h).zip(out))
                }
                Ok(out) => {
                    self.degraded = Some(format!(
                        "the embedder returned {} vectors for {} texts",
                        out.len(),
                        texts.len()
                    ));
                    break;
                }
                Err(e) => {
                    self.degraded = Some(format!("embedding failed: {e}"));
                    break;
                }
            }
        }
        fresh
    }

    /// Embeds chunks that earlier runs stored without a vector (their requests failed).
    fn embed_pending(&mut self, identity: &Identity, report: &mut IndexReport) -> Result<()> {
        if self.degraded.is_some() {
            return Ok(());
        }
        let pending = self.store.chunks_without_vectors(identity)?;
        if pending.is_empty() {
            return Ok(());
        }
        let missing: Vec<(TextHash, &str)> =
            pending.iter().map(|(_, h, t)| (*h, t.as_str())).collect();
        let embed_started = Instant::now();
        let fresh: HashMap<TextHash, Vec<f32>> = self.embed_missing(&missing).into_iter().collect();
        report.embed_ms += embed_started.elapsed().as_millis() as u64;
        report.embedded += fresh.len() as u64;
        let mut w = self.store.writer()?;
        for (h, v) in &fresh {
            w.put_vector(identity, h, v)?;
        }
        w.commit()?;
        let new_vectors: Vec<(ChunkId, Vec<f32>)> = pending
            .iter()
            .filter_map(|(id, h, _)| fresh.get(h).map(|v| (*id, v.clone())))
            .collect();
        self.load_vectors()?;
        self.insert_vectors(new_vectors);
        Ok(())
    }

    fn chunk_ids_of_path(&self, path: &str) -> Result<Vec<ChunkId>> {
        Ok(self
            .store
            .chunk_hashes_of(path)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Loads the vector index from its dump, or rebuilds it from the store when the dump
    /// is missing, stale or unreadable. Engines sharing the vectors load them once.
    fn load_vectors(&mut self) -> Result<()> {
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
        let index = match VectorIndex::load(&self.index_dir, generation, dims) {
            Some(index) => index,
            None => {
                let all = self.store.live_vectors(&self.identity())?;
                let index = VectorIndex::new(dims, all.len());
                index.insert(&all);
                if !all.is_empty() {
                    // Best effort: a failed dump only costs a rebuild next time.
                    let _ = index.save(&self.index_dir, generation);
                }
                index
            }
        };
        self.vectors.install(index, live);
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

    fn insert_vectors(&mut self, new_vectors: Vec<(ChunkId, Vec<f32>)>) {
        match &self.feeder {
            Some(f) => f.insert(new_vectors),
            None => self.vectors.insert(&new_vectors),
        }
    }

    fn remove_vectors(&mut self, ids: Vec<ChunkId>) {
        match &self.feeder {
            Some(f) => f.remove(ids),
            None => self.vectors.remove(&ids),
        }
    }

    /// Waits for the graph to take in what the feeder was given.
    fn drain_feeder(&mut self) {
        if let Some(f) = self.feeder.take() {
            f.finish();
        }
    }

    /// Compacts the vector index when tombstones pass the threshold, and dumps it for the
    /// next start.
    fn finish_vectors(&mut self) -> Result<()> {
        self.drain_feeder();
        let generation = self.store.generation()?;
        let identity = self.identity();
        let Some(index) = self.vectors.current() else {
            return Ok(());
        };
        let tombstones = index.points().saturating_sub(self.vectors.live_len());
        let ratio = self.config.index.compact_deleted_ratio;
        let index = if index.points() > 0 && tombstones as f32 > ratio * index.points() as f32 {
            let all = self.store.live_vectors(&identity)?;
            let fresh = VectorIndex::new(index.dims(), all.len());
            fresh.insert(&all);
            let live = LiveSet::from_ids(all.iter().map(|(id, _)| *id));
            self.vectors.install(fresh, live);
            self.vectors.current().unwrap_or(index)
        } else {
            index
        };
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
        let rc = self.config.retrieve.clone();
        let terms = tokenize::terms(query);
        let lexical = self
            .store
            .lexical_search(&terms, rc.lexical_candidates, rc.head_weight)?;
        let mut vector = Vec::new();
        if rc.vector_candidates > 0 && rc.vector_weight > 0.0 {
            if self.vectors.is_lazy() {
                // The server: never wait for the graph; it loads in the background and
                // the answers are lexical until it is there.
                self.start_loading_vectors();
            } else {
                self.load_vectors()?;
            }
            match self.embedder.embed_query(query) {
                Ok(q) => {
                    vector = self.vectors.search(&q, rc.vector_candidates, rc.ef_search);
                }
                Err(e) => notes.push(format!(
                    "vector search unavailable ({e}); lexical results only"
                )),
            }
        }
        let fused = retrieve::fuse(&lexical, &vector, &rc);
        let pool = if rerank {
            self.config.rerank.candidates.max(top_k)
        } else {
            top_k
        };
        let ids: Vec<ChunkId> = fused.iter().take(pool).map(|f| f.id).collect();
        let mut rows = self.store.chunks_by_id(&ids)?;
        let mut hits: Vec<SearchHit> = fused
            .iter()
            .take(pool)
            .filter_map(|f| {
                rows.remove(&f.id).map(|chunk| SearchHit {
                    chunk,
                    score: f.score,
                })
            })
            .collect();
        let retrieve_ms = started.elapsed().as_millis() as u64;
        let mut reranked_by = None;
        let mut rerank_ms = None;
        if rerank && hits.len() > 1 {
            let started = Instant::now();
            self.rerank_offline(&terms, &mut hits);
            reranked_by = Some("offline".to_string());
            if let Some(reranker) = self.reranker.as_ref().filter(|_| how == Rerank::Best) {
                match rerank_remote(reranker, query, &hits, top_k) {
                    Ok(order) => {
                        let min = self.config.rerank.min_score;
                        let mut kept: Vec<SearchHit> = order
                            .into_iter()
                            .filter(|(_, score)| *score >= min)
                            .map(|(i, score)| SearchHit {
                                chunk: hits[i].chunk.clone(),
                                score,
                            })
                            .collect();
                        if kept.is_empty() && !hits.is_empty() {
                            notes.push(format!("no source reached rerank.min_score = {min}"));
                        }
                        std::mem::swap(&mut hits, &mut kept);
                        reranked_by = Some(reranker.model().to_string());
                    }
                    Err(e) => notes.push(format!("rerank failed ({e}); using the offline order")),
                }
            }
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

    fn rerank_offline(&self, terms: &[String], hits: &mut [SearchHit]) {
        let candidates: Vec<Candidate<'_>> = hits
            .iter()
            .map(|h| Candidate {
                fused: h.score,
                name: &h.chunk.name,
                symbol: &h.chunk.symbol,
                path: &h.chunk.path,
                kind: &h.chunk.kind,
            })
            .collect();
        let scores = rerank::offline_scores(terms, &candidates, &self.config.rerank.offline);
        for (h, s) in hits.iter_mut().zip(scores) {
            h.score = s;
        }
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk.id.cmp(&b.chunk.id))
        });
    }

    /// The whole pipeline: retrieve, rerank, and generate an answer that cites its
    /// sources, streaming the text to `on_delta`. Without a chat model (offline), or when
    /// generation fails, the answer is extractive and says why.
    pub fn ask(
        &mut self,
        question: &str,
        top_k: usize,
        editor_context: Option<String>,
        on_delta: &mut (dyn FnMut(&str) + Send),
    ) -> Result<AskResult> {
        let retrieval = self.retrieve(question, top_k, Rerank::Best)?;
        let plan = self.plan_answer(question, &retrieval, editor_context);
        let Some(chat) = plan.chat.clone() else {
            return Ok(plan.extractive());
        };
        let started = Instant::now();
        let outcome =
            crate::provider::blocking_runtime()?.block_on(chat.stream(&plan.messages, on_delta));
        Ok(plan.finish(outcome, started.elapsed().as_millis() as u64))
    }

    /// Everything needed to generate an answer from a retrieval: the prompt (sources
    /// trimmed to the token budget), the models and the chat client, if any. The server
    /// streams the answer itself, so that cancelling the request drops the connection.
    pub fn plan_answer(
        &self,
        question: &str,
        retrieval: &Retrieval,
        editor_context: Option<String>,
    ) -> AnswerPlan {
        let mut sources: Vec<answer::Source> =
            retrieval.hits.iter().map(answer::source_of).collect();
        let models = answer::Models {
            embedding: self.embedder.model_name(),
            rerank: retrieval.reranked_by.clone(),
            chat: self.chat.as_ref().map(|c| c.model().to_string()),
        };
        let timings = answer::Timings {
            retrieve_ms: retrieval.retrieve_ms,
            rerank_ms: retrieval.rerank_ms,
            generate_ms: None,
        };
        let mut messages = Vec::new();
        if self.chat.is_some() {
            let prompt_sources: Vec<PromptSource> = retrieval
                .hits
                .iter()
                .map(|h| PromptSource {
                    path: h.chunk.path.clone(),
                    start_line: h.chunk.start_line,
                    end_line: h.chunk.end_line,
                    symbol: (!h.chunk.symbol.is_empty()).then(|| h.chunk.symbol.clone()),
                    language: h.chunk.language.clone(),
                    text: h.chunk.text.clone(),
                })
                .collect();
            let options = PromptOptions {
                max_context_tokens: self.config.chat.max_context_tokens,
                editor_context,
            };
            let built = prompt::build(question, &prompt_sources, &options);
            sources.truncate(built.used);
            messages = built.messages;
        }
        AnswerPlan {
            question: question.to_string(),
            sources,
            messages,
            models,
            timings,
            notes: retrieval.notes.clone(),
            chat: self.chat.clone(),
        }
    }

    /// The index's state. `pending_files` counts what a re-index would touch (a walk and
    /// stats, no reads).
    pub fn status(&self) -> Result<Status> {
        let counts = self.store.counts()?;
        let known = self.store.file_states()?;
        let walked = workspace::walk(&self.root, &self.walk_options())
            .map_err(|e| Error::Usage(e.to_string()))?;
        let mut pending = 0u64;
        let mut seen = HashSet::new();
        for f in &walked.files {
            seen.insert(f.rel_path.as_str());
            if self.overlays.contains(&f.rel_path) {
                continue; // an open buffer is indexed already
            }
            match known.get(&f.rel_path) {
                Some(s) if s.size == f.size && s.mtime_ns == f.mtime_ns => {}
                _ => pending += 1,
            }
        }
        pending += known
            .keys()
            .filter(|p| !seen.contains(p.as_str()) && !self.overlays.contains(p.as_str()))
            .count() as u64;
        // Another process indexing holds the lock; this engine holding it means idle here.
        let indexing = self._lock.is_none()
            && lock_is_held(&self.index_dir)
            && self.store.meta("indexing")?.as_deref() != Some("0");
        let degraded = self.store.meta("degraded")?.filter(|d| !d.is_empty());
        let state = match (indexing, &degraded) {
            (true, _) => "indexing",
            (false, Some(_)) => "degraded",
            (false, None) => "ready",
        };
        Ok(Status {
            state: state.into(),
            workspace: self.root.display().to_string(),
            index_dir: self.index_dir.display().to_string(),
            files: counts.files,
            chunks: counts.chunks,
            pending_files: pending,
            index_bytes: self.store.index_bytes(),
            embedding: self.embedding_info(),
            skipped: self.store.skip_counts()?.into_iter().collect(),
            last_indexed: self.store.meta("last_indexed")?,
            last_error: degraded
                .map(|d| format!("{d}; retrieval is lexical only until `ragls index` succeeds")),
        })
    }

    pub fn embedding_info(&self) -> EmbeddingInfo {
        EmbeddingInfo {
            provider: self.embedder.provider_name().into(),
            model: self.embedder.model_name(),
            dimensions: self.identity().dimensions,
        }
    }
}

/// A chunk ready to be stored, with its embedding text and the hash that keys its vector.
struct PreparedChunk {
    stored: NewChunk,
    text_hash: TextHash,
    embedding_text: String,
}

/// The outcome of reading one new or changed file (done in parallel, no store access).
enum Prepared {
    Failed {
        path: String,
        reason: String,
    },
    /// Same content, new mtime: only the file's state changes.
    Touched {
        path: String,
        state: FileState,
    },
    Skipped {
        path: String,
        state: FileState,
    },
    Chunked {
        path: String,
        state: FileState,
        chunks: Vec<PreparedChunk>,
    },
}

enum Plan {
    Touch {
        path: String,
        state: FileState,
    },
    Replace {
        path: String,
        state: FileState,
        keep: Vec<(ChunkId, PreparedChunk)>,
        add: Vec<PreparedChunk>,
        drop: Vec<ChunkId>,
    },
}

fn prepare(f: &WalkedFile, known: Option<&FileState>, budget: &ChunkBudget) -> Prepared {
    match std::fs::read(&f.abs_path) {
        Ok(bytes) => prepare_bytes(&f.rel_path, f.size, f.mtime_ns, &bytes, known, budget),
        Err(e) => Prepared::Failed {
            path: f.rel_path.clone(),
            reason: e.to_string(),
        },
    }
}

/// Hashes, checks and chunks one file's content (from disk or from an editor buffer).
fn prepare_bytes(
    path: &str,
    size: u64,
    mtime_ns: i64,
    bytes: &[u8],
    known: Option<&FileState>,
    budget: &ChunkBudget,
) -> Prepared {
    let path = path.to_string();
    let content_hash = *blake3::hash(bytes).as_bytes();
    let mut state = FileState {
        size,
        mtime_ns,
        content_hash,
        skip_reason: None,
    };
    if let Some(k) = known {
        if k.content_hash == content_hash {
            state.skip_reason = k.skip_reason.clone();
            return Prepared::Touched { path, state };
        }
    }
    if let Some(reason) = workspace::classify_content(bytes) {
        state.skip_reason = Some(reason.as_str().to_string());
        return Prepared::Skipped { path, state };
    }
    let chunks = chunk::chunk_file(&path, bytes, budget)
        .into_iter()
        .map(|c| {
            let embedding_text = c.embedding_text(&path);
            let text_hash = store::text_hash(&embedding_text);
            let head = format!("{} {} {}", c.name, c.symbol, path_words(&path));
            let stored = NewChunk {
                language: c.language.as_str().to_string(),
                kind: c.kind.as_str().to_string(),
                head_terms: tokenize::terms_line(&head),
                body_terms: tokenize::terms_line(&c.text),
                symbol: c.symbol,
                name: c.name,
                start_byte: c.start_byte,
                end_byte: c.end_byte,
                start_line: c.start_line,
                end_line: c.end_line,
                text: c.text,
                text_hash,
            };
            PreparedChunk {
                stored,
                text_hash,
                embedding_text,
            }
        })
        .collect();
    Prepared::Chunked {
        path,
        state,
        chunks,
    }
}

/// The words of a path worth matching: folder names and the file stem, not the extension.
fn path_words(path: &str) -> String {
    let without_ext = match path.rfind('.') {
        Some(dot) if dot > path.rfind('/').map_or(0, |s| s + 1) => &path[..dot],
        _ => path,
    };
    without_ext.replace(['/', '.', '-'], " ")
}

/// `RAGLS_FAULT_ABORT_AFTER_BATCHES=N` makes indexing abort the process right after the
/// N-th committed batch of files: the crash tests use it to kill ragls at a known point.
fn fault_abort_after_batches() -> Option<usize> {
    std::env::var("RAGLS_FAULT_ABORT_AFTER_BATCHES")
        .ok()?
        .parse()
        .ok()
}

/// Asks the remote reranker to order `hits`; returns (index into hits, relevance).
fn rerank_remote(
    reranker: &RemoteReranker,
    query: &str,
    hits: &[SearchHit],
    top_k: usize,
) -> Result<Vec<(usize, f32)>> {
    let texts: Vec<String> = hits
        .iter()
        .map(|h| chunk::embedding_text(&h.chunk.path, &h.chunk.symbol, &h.chunk.text))
        .collect();
    let docs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let rt = crate::provider::blocking_runtime()?;
    Ok(rt.block_on(reranker.rerank(query, &docs, top_k))?)
}

fn take_lock(index_dir: &Path) -> Result<File> {
    let path = index_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("cannot open the index lock {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::IndexLocked(index_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(
            format!("cannot lock the index {}", path.display()),
            e,
        )),
    }
}

fn lock_is_held(index_dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(index_dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(_) => false,
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
        assert_eq!(path_words("src/http/client.rs"), "src http client");
        assert_eq!(path_words(".github/ci"), " github ci");
        assert_eq!(path_words("Makefile"), "Makefile");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
