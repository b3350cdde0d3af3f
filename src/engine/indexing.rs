//! Incremental indexing: walk, read and chunk changed files in parallel, embed what the
//! cache lacks, commit each batch in one transaction; editor buffers as overlays.

use super::*;
use std::time::Duration;

/// Files read, chunked and committed together: the unit of crash recovery.
pub(super) const FILES_PER_BATCH: usize = 128;

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
    /// With a local model that embeds in the background: its coverage after this run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_vectors: Option<super::ModelVectors>,
    pub elapsed_ms: u64,
}

/// A chunk ready to be stored, with its embedding text and the hash that keys its vector.
pub(super) struct PreparedChunk {
    pub(super) stored: NewChunk,
    pub(super) text_hash: TextHash,
    pub(super) embedding_text: String,
}

/// The outcome of reading one new or changed file (done in parallel, no store access).
pub(super) enum Prepared {
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

/// A batch's plans, the vectors the cache had and the texts left to embed.
pub(super) struct PlannedBatch {
    plans: Vec<Plan>,
    vectors: HashMap<TextHash, Vec<f32>>,
    missing: Vec<(TextHash, String)>,
    /// Left to the batch before, which embeds them: in the cache once it has committed.
    deferred: Vec<TextHash>,
}

/// What one embedding call brings back: vectors, and why it stopped if it failed.
type Embedded = (Vec<(TextHash, Vec<f32>)>, Option<String>);

/// A planned batch whose texts are being embedded on another thread.
struct EmbedJob<'scope> {
    n: usize,
    files: u64,
    planned: PlannedBatch,
    /// The texts it asked for (a later batch does not ask for them again).
    asked: HashSet<TextHash>,
    embed: Option<std::thread::ScopedJoinHandle<'scope, (Instant, Instant, Embedded)>>,
}

/// Time during which embedding calls were in progress, overlapping calls counted once.
#[derive(Default)]
struct EmbedSpan {
    total: Duration,
    last_end: Option<Instant>,
}

impl EmbedSpan {
    /// Calls are added in the order they started.
    fn add(&mut self, started: Instant, ended: Instant) {
        let from = match self.last_end {
            Some(end) if end > started => end,
            _ => started,
        };
        self.total += ended.saturating_duration_since(from);
        self.last_end = Some(self.last_end.map_or(ended, |end| end.max(ended)));
    }

    fn total_ms(&self) -> u64 {
        self.total.as_millis() as u64
    }
}

/// Embeds texts in the embedder's own batch size; stops at the first failure.
fn embed_texts(embedder: &dyn Embedder, missing: &[(TextHash, &str)]) -> Embedded {
    let mut fresh = Vec::with_capacity(missing.len());
    for group in missing.chunks(embedder.batch_size().max(1)) {
        let texts: Vec<&str> = group.iter().map(|(_, t)| *t).collect();
        match embedder.embed(&texts) {
            Ok(out) if out.len() == texts.len() => {
                fresh.extend(group.iter().map(|(h, _)| *h).zip(out))
            }
            Ok(out) => {
                let why = format!(
                    "the embedder returned {} vectors for {} texts",
                    out.len(),
                    texts.len()
                );
                return (fresh, Some(why));
            }
            Err(e) => return (fresh, Some(format!("embedding failed: {e}"))),
        }
    }
    (fresh, None)
}

pub(super) enum Plan {
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

pub(super) fn prepare(
    f: &WalkedFile,
    known: Option<&FileState>,
    budget: &ChunkBudget,
    max_bytes: u64,
) -> Prepared {
    match workspace::read_file(&f.abs_path, max_bytes) {
        Ok(workspace::FileRead::Bytes(bytes)) => {
            prepare_bytes(&f.rel_path, f.size, f.mtime_ns, &bytes, known, budget)
        }
        // Changed since the walk (grown past the limit, replaced by a FIFO): skipped.
        Ok(workspace::FileRead::Skipped(reason)) => Prepared::Skipped {
            path: f.rel_path.clone(),
            state: FileState {
                size: f.size,
                mtime_ns: f.mtime_ns,
                content_hash: [0; 32],
                skip_reason: Some(reason),
            },
        },
        Err(e) => Prepared::Failed {
            path: f.rel_path.clone(),
            reason: e.to_string(),
        },
    }
}

/// Hashes, checks and chunks one file's content (from disk or from an editor buffer).
pub(super) fn prepare_bytes(
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
            state.skip_reason = k.skip_reason;
            return Prepared::Touched { path, state };
        }
    }
    if let Some(reason) = workspace::classify_content(bytes) {
        state.skip_reason = Some(reason);
        return Prepared::Skipped { path, state };
    }
    let chunks = chunk::chunk_file(&path, bytes, budget)
        .into_iter()
        .map(|c| {
            let embedding_text = c.embedding_text(&path);
            let text_hash = store::text_hash(&embedding_text);
            let head = format!("{} {} {}", c.name, c.symbol, path_words(&path));
            let stored = NewChunk {
                head_terms: tokenize::terms_line(&head),
                body_terms: tokenize::terms_line(&c.text),
                chunk: c,
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
pub(super) fn path_words(path: &str) -> String {
    let without_ext = match path.rfind('.') {
        Some(dot) if dot > path.rfind('/').map_or(0, |s| s + 1) => &path[..dot],
        _ => path,
    };
    without_ext.replace(['/', '.', '-'], " ")
}

/// `RAGLS_FAULT_ABORT_AFTER_BATCHES=N` makes indexing abort the process right after the
/// N-th committed batch of files: the crash tests use it to kill ragls at a known point.
pub(super) fn fault_abort_after_batches() -> Option<usize> {
    std::env::var("RAGLS_FAULT_ABORT_AFTER_BATCHES")
        .ok()?
        .parse()
        .ok()
}

impl Engine {
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

        let mut walked = workspace::walk(&self.root, &self.walk_options())
            .map_err(|e| Error::Usage(e.to_string()))?;
        // Reading a shared index: only the files that differ from the ref are indexed here.
        self.shared_note = self.narrow_to_overlay(&mut walked)?;
        report.files_seen = walked.files.len() as u64;
        let known = self.store.file_states()?;

        let status::Changes {
            to_read,
            unchanged,
            removed,
        } = status::changes(&walked.files, &known, &self.overlays);
        report.files_unchanged += unchanged;

        progress.start(to_read.len() as u64);
        if !to_read.is_empty() || !removed.is_empty() {
            // The graph is needed only when something changed: an unchanged tree costs
            // stats, not a graph load.
            self.load_vectors()?;
            self.drain_feeder();
            self.feeder = Some(Feeder::start(self.vectors.clone()));
        }
        let budget = self.budget();
        let max_bytes = self.config.index.max_file_bytes;
        // Pipelined: while one batch's texts are being embedded, the next batch is read,
        // chunked and planned, and its requests queue behind the first batch's, so the
        // embedder's request slots stay full across batch boundaries. Batches still
        // commit one at a time, in order, each file's state with its chunks.
        let embedder = self.embedder.clone();
        let background = embedder.embeds_in_background();
        let mut embed_span = EmbedSpan::default();
        let batches: Vec<_> = to_read.chunks(FILES_PER_BATCH).collect();
        let prepare_batch = |n: usize| -> Vec<Prepared> {
            batches[n]
                .par_iter()
                .map(|f| prepare(f, known.get(&f.rel_path), &budget, max_bytes))
                .collect()
        };
        let prepare_batch = &prepare_batch;
        // The threads below run their parallel work at this thread's priority (a
        // server's indexing is background work: engine::priority).
        let priority = priority::Priority::of_this_thread();
        std::thread::scope(|scope| -> Result<()> {
            let mut in_flight: Option<EmbedJob<'_>> = None;
            // Reading and chunking run a batch ahead, on the pool's threads, while this
            // thread plans and commits (SQLite writes are serial): both cores stay busy.
            let mut ahead = batches
                .first()
                .map(|_| scope.spawn(move || priority.run(|| prepare_batch(0))));
            for (n, batch) in batches.iter().enumerate() {
                let prepared: Vec<Prepared> = ahead
                    .take()
                    .expect("a batch prepared ahead")
                    .join()
                    .map_err(|_| Error::Usage("reading files panicked".into()))?;
                if n + 1 < batches.len() {
                    ahead = Some(scope.spawn(move || priority.run(|| prepare_batch(n + 1))));
                }
                let mut planned = self.plan_batch(prepared, &identity, &mut report)?;
                // Texts the batch in flight is embedding already: found in the cache once
                // that batch commits, never asked twice.
                if let Some(job) = &in_flight {
                    let mut deferred = Vec::new();
                    planned.missing.retain(|(h, _)| {
                        let asked = job.asked.contains(h);
                        if asked {
                            deferred.push(*h);
                        }
                        !asked
                    });
                    planned.deferred = deferred;
                }
                let asked: HashSet<TextHash> = planned.missing.iter().map(|(h, _)| *h).collect();
                let embed = if background || self.degraded.is_some() || planned.missing.is_empty() {
                    None
                } else {
                    let embedder = embedder.as_ref();
                    let missing: Vec<(TextHash, String)> = std::mem::take(&mut planned.missing);
                    Some(scope.spawn(move || {
                        let embed = || {
                            let started = Instant::now();
                            let texts: Vec<(TextHash, &str)> =
                                missing.iter().map(|(h, t)| (*h, t.as_str())).collect();
                            let outcome = embed_texts(embedder, &texts);
                            (started, Instant::now(), outcome)
                        };
                        // An in-process embedder computes on the pool; a remote one
                        // waits on the network, which must not hold a pool thread.
                        if embedder.provider_name() == "remote" {
                            embed()
                        } else {
                            priority.run(embed)
                        }
                    }))
                };
                let job = EmbedJob {
                    n,
                    files: batch.len() as u64,
                    planned,
                    asked,
                    embed,
                };
                if let Some(previous) = in_flight.replace(job) {
                    self.complete_batch(
                        previous,
                        &identity,
                        &mut report,
                        &mut embed_span,
                        progress,
                    )?;
                    let docs = progress.take_documents();
                    if !docs.is_empty() {
                        // An edit waits for the batch in flight to commit: it may need
                        // the same texts, and must land after it.
                        if let Some(current) = in_flight.take() {
                            self.complete_batch(
                                current,
                                &identity,
                                &mut report,
                                &mut embed_span,
                                progress,
                            )?;
                        }
                        for doc in docs {
                            self.apply_document(doc)?;
                        }
                    }
                }
            }
            if let Some(last) = in_flight.take() {
                self.complete_batch(last, &identity, &mut report, &mut embed_span, progress)?;
                for doc in progress.take_documents() {
                    self.apply_document(doc)?;
                }
            }
            Ok(())
        })?;
        report.embed_ms += embed_span.total_ms();
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

    pub(super) fn commit_batch(
        &mut self,
        prepared: Vec<Prepared>,
        identity: &Identity,
        report: &mut IndexReport,
    ) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let mut planned = self.plan_batch(prepared, identity, report)?;
        let embed_started = Instant::now();
        // A model too slow to wait for leaves the chunks without vectors: the index is
        // searchable at once, and `model` fills them in (background, query time).
        let missing = std::mem::take(&mut planned.missing);
        let fresh = if self.embedder.embeds_in_background() {
            Vec::new()
        } else {
            let texts: Vec<(TextHash, &str)> =
                missing.iter().map(|(h, t)| (*h, t.as_str())).collect();
            self.embed_missing(&texts)
        };
        report.embed_ms += embed_started.elapsed().as_millis() as u64;
        self.write_batch(planned, fresh, identity, report)
    }

    /// Waits for a pipelined batch's vectors, commits it, reports progress.
    fn complete_batch(
        &mut self,
        job: EmbedJob<'_>,
        identity: &Identity,
        report: &mut IndexReport,
        span: &mut EmbedSpan,
        progress: &dyn IndexProgress,
    ) -> Result<()> {
        let fresh = match job.embed {
            None => Vec::new(),
            Some(handle) => {
                let (started, ended, (fresh, failure)) = handle
                    .join()
                    .map_err(|_| Error::Usage("the embedding thread panicked".into()))?;
                span.add(started, ended);
                if let Some(why) = failure {
                    if self.degraded.is_none() {
                        self.degraded = Some(why);
                    }
                }
                fresh
            }
        };
        // Searchable as soon as committed: the batch's vectors go into the graph now.
        let new_vectors = self.write_batch(job.planned, fresh, identity, report)?;
        self.insert_vectors(new_vectors);
        progress.advance(job.files);
        if fault_abort_after_batches() == Some(job.n + 1) {
            // Fault injection for the crash tests: die like `kill -9` would.
            std::process::abort();
        }
        Ok(())
    }

    /// Which chunks each changed file keeps (same text, same hash), which are new, the
    /// vectors the cache has for them and the texts left to embed. Reads only.
    pub(super) fn plan_batch(
        &mut self,
        prepared: Vec<Prepared>,
        identity: &Identity,
        report: &mut IndexReport,
    ) -> Result<PlannedBatch> {
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
        let vectors = self.store.cached_vectors(identity, &needed)?;
        report.cached += needed.iter().filter(|h| vectors.contains_key(*h)).count() as u64;
        let mut missing: Vec<(TextHash, String)> = Vec::new();
        let mut asked: HashSet<TextHash> = HashSet::new();
        for plan in &plans {
            if let Plan::Replace { add, .. } = plan {
                for c in add {
                    if !vectors.contains_key(&c.text_hash) && asked.insert(c.text_hash) {
                        missing.push((c.text_hash, c.embedding_text.clone()));
                    }
                }
            }
        }
        Ok(PlannedBatch {
            plans,
            vectors,
            missing,
            deferred: Vec::new(),
        })
    }

    /// Commits a planned batch in one transaction: the fresh vectors into the cache, each
    /// file's chunks with its new state. Returns the vectors for the graph.
    fn write_batch(
        &mut self,
        planned: PlannedBatch,
        fresh: Vec<(TextHash, Vec<f32>)>,
        identity: &Identity,
        report: &mut IndexReport,
    ) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let PlannedBatch {
            plans,
            mut vectors,
            deferred,
            ..
        } = planned;
        report.embedded += fresh.len() as u64;
        let mut new_vectors = Vec::new();
        if !deferred.is_empty() {
            let found = self.store.cached_vectors(identity, &deferred)?;
            report.cached += found.len() as u64;
            vectors.extend(found);
        }
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
                        prepare(
                            &walked,
                            known.as_ref(),
                            &self.budget(),
                            self.config.index.max_file_bytes,
                        )
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

    /// Embeds texts the cache lacks. On failure the run goes on without vectors (the
    /// chunks are still searchable lexically), remembers why, and asks no more.
    pub(super) fn embed_missing(
        &mut self,
        missing: &[(TextHash, &str)],
    ) -> Vec<(TextHash, Vec<f32>)> {
        if self.degraded.is_some() {
            return Vec::new();
        }
        let (fresh, failure) = embed_texts(self.embedder.as_ref(), missing);
        if failure.is_some() {
            self.degraded = failure;
        }
        fresh
    }

    /// Embeds chunks that earlier runs stored without a vector (their requests failed).
    pub(super) fn embed_pending(
        &mut self,
        identity: &Identity,
        report: &mut IndexReport,
    ) -> Result<()> {
        if self.degraded.is_some() || self.embedder.embeds_in_background() {
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
}
