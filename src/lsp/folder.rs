//! One workspace folder in the server: a background indexer thread that owns the
//! writing engine, and reading engines that answer requests meanwhile.
//!
//! Requests never wait for indexing, nor for each other: each takes a reading engine of
//! its own (a small pool), with its own database connection (WAL lets it read what each
//! committed batch wrote), sharing the vector index with the writer. Everything that changes the index — full or incremental indexing, editor
//! buffers, settings — goes to the indexer thread as a command, so it is applied once
//! and in order; buffer edits are also applied between indexing batches, so a long
//! index never holds an edit back for long.
//!
//! With a local model too slow to wait for, a third thread embeds the index's backlog
//! after each indexing run at the lowest CPU priority ([`ModelPass`]), reporting
//! `$/progress` and the `modelVectors` of `rag/status`.

use crate::ann::SharedVectors;
use crate::config::Config;
use crate::engine::{
    self, BackgroundModel, DocumentUpdate, Engine, IndexProgress, ModelProgress, ModelVectors,
    ReaderPool, Status,
};
use crate::error::{Error, Result};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use tower_lsp::lsp_types::Url;

/// What the indexer thread is asked to do.
pub enum Command {
    Index {
        full: bool,
    },
    /// Buffers changed: apply the queued document updates.
    Documents,
    /// New settings: reopen the engine with them and bring the index up to date.
    Reconfigure(Box<Config>),
    /// Apply what is queued, write the vector dump, and stop.
    Shutdown(mpsc::Sender<()>),
}

/// What the indexer thread tells the server, for the editor.
#[derive(Debug)]
pub enum FolderEvent {
    ProgressBegin {
        folder: Url,
        total: u64,
    },
    ProgressReport {
        folder: Url,
        done: u64,
        total: u64,
    },
    ProgressEnd {
        folder: Url,
        message: String,
    },
    /// The local model's background pass: chunks with its vectors so far.
    ModelProgress {
        folder: Url,
        coverage: ModelVectors,
    },
    Status {
        status: Box<Status>,
    },
    Log {
        error: bool,
        message: String,
    },
}

type Events = tokio::sync::mpsc::UnboundedSender<FolderEvent>;

pub struct Folder {
    pub root: PathBuf,
    pub uri: Url,
    index_dir: PathBuf,
    config: RwLock<Config>,
    vectors: Arc<SharedVectors>,
    readers: Arc<ReaderPool>,
    commands: Mutex<mpsc::Sender<Command>>,
    documents: Arc<Mutex<VecDeque<DocumentUpdate>>>,
    status: Arc<RwLock<Status>>,
    /// Files left in the running index (0 when idle).
    pending: Arc<AtomicU64>,
    model: Arc<ModelPass>,
}

/// The local model's background pass of one folder: one thread at most, which takes the
/// latest request when it is done (or stops early for it: a newer request means newer
/// chunks or settings), and the coverage it reached, for `rag/status`.
#[derive(Default)]
pub struct ModelPass {
    next: Mutex<Option<BackgroundModel>>,
    running: AtomicBool,
    /// Bumped to stop the pass in progress (settings changed, shutting down).
    epoch: AtomicU64,
    shutdown: AtomicBool,
    coverage: RwLock<Option<ModelVectors>>,
}

impl ModelPass {
    fn take_next(&self) -> Option<BackgroundModel> {
        self.next.lock().ok().and_then(|mut n| n.take())
    }

    fn has_next(&self) -> bool {
        self.next.lock().map(|n| n.is_some()).unwrap_or(false)
    }

    /// Stops the pass in progress at its next batch, and forgets any request.
    fn stop(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        drop(self.take_next());
        if let Ok(mut c) = self.coverage.write() {
            *c = None;
        }
    }
}

/// The pass's progress: `$/progress` and the folder's coverage; it stops for a newer
/// request, new settings or shutdown.
struct PassProgress<'a> {
    pass: &'a ModelPass,
    epoch: u64,
    events: &'a Events,
    uri: &'a Url,
}

impl ModelProgress for PassProgress<'_> {
    fn update(&self, coverage: &ModelVectors) {
        if self.stop_requested() {
            return;
        }
        if let Ok(mut c) = self.pass.coverage.write() {
            *c = Some(coverage.clone());
        }
        let _ = self.events.send(FolderEvent::ModelProgress {
            folder: self.uri.clone(),
            coverage: coverage.clone(),
        });
    }
    fn stop_requested(&self) -> bool {
        self.pass.shutdown.load(Ordering::Acquire)
            || self.pass.epoch.load(Ordering::Acquire) != self.epoch
            || self.pass.has_next()
    }
}

impl Folder {
    /// Opens the folder and starts its indexer thread, which brings the index up to date.
    pub fn start(root: PathBuf, uri: Url, config: Config, events: Events) -> Result<Arc<Folder>> {
        let index_dir = engine::index_dir_for(&root, &config)?;
        let vectors = SharedVectors::lazy();
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(RwLock::new(starting_status(&root, &index_dir)));
        let folder = Arc::new(Folder {
            root: root.clone(),
            uri: uri.clone(),
            index_dir: index_dir.clone(),
            config: RwLock::new(config.clone()),
            vectors: vectors.clone(),
            readers: Arc::new(ReaderPool::new()),
            commands: Mutex::new(tx.clone()),
            documents: Arc::new(Mutex::new(VecDeque::new())),
            status: status.clone(),
            pending: Arc::new(AtomicU64::new(0)),
            model: Arc::new(ModelPass::default()),
        });
        let worker = Indexer {
            root,
            uri,
            index_dir,
            vectors,
            events,
            documents: folder.documents.clone(),
            status,
            pending: folder.pending.clone(),
            model: folder.model.clone(),
            readers: folder.readers.clone(),
        };
        std::thread::Builder::new()
            .name("ragls-indexer".into())
            .spawn(move || worker.run(config, rx))
            .map_err(|e| Error::io("cannot start the indexer thread", e))?;
        let _ = tx.send(Command::Index { full: false });
        Ok(folder)
    }

    pub fn config(&self) -> Config {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn send(&self, command: Command) {
        if let Ok(tx) = self.commands.lock() {
            let _ = tx.send(command);
        }
    }

    /// Queues a buffer's new text (or its closing); a newer update of the same path
    /// replaces an older one still waiting, so bursts of typing cost one re-chunk.
    pub fn update_document(&self, path: String, text: Option<String>) {
        if let Ok(mut q) = self.documents.lock() {
            if let Some(existing) = q.iter_mut().find(|d| d.path == path) {
                existing.text = text;
            } else {
                q.push_back(DocumentUpdate { path, text });
            }
        }
        self.send(Command::Documents);
    }

    pub fn reconfigure(&self, config: Config) {
        if let Ok(mut c) = self.config.write() {
            *c = config.clone();
        }
        // Readers reopen with the new settings on their next use.
        self.readers.invalidate();
        self.send(Command::Reconfigure(Box::new(config)));
    }

    /// Runs `f` on a reading engine (blocking: call from a blocking task). `None` while
    /// the folder has no index yet.
    pub fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>> {
        let open = || {
            Engine::open_for_reading_with(
                &self.root,
                self.config(),
                self.index_dir.clone(),
                self.vectors.clone(),
            )
        };
        self.readers.with_reader(open, f)
    }

    pub fn status(&self) -> Status {
        let mut s = self
            .status
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|_| starting_status(&self.root, &self.index_dir));
        let running = self.pending.load(Ordering::Relaxed);
        if running > 0 {
            s.pending_files = running;
        }
        if let Some(c) = self.model.coverage.read().ok().and_then(|c| c.clone()) {
            // Fresher than the snapshot taken when indexing ended.
            s.model_vectors = Some(c);
        }
        s
    }

    /// The workspace-relative path of a file inside this folder.
    pub fn relative(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).ok()?;
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// Stops the indexer after it applied what is queued and wrote its dump.
    pub fn shutdown(&self, wait: std::time::Duration) {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Shutdown(tx));
        let _ = rx.recv_timeout(wait);
    }
}

fn starting_status(root: &Path, index_dir: &Path) -> Status {
    Status::empty(root, index_dir, engine::IndexState::Starting)
}

/// The indexer thread's state.
struct Indexer {
    root: PathBuf,
    uri: Url,
    index_dir: PathBuf,
    vectors: Arc<SharedVectors>,
    events: Events,
    documents: Arc<Mutex<VecDeque<DocumentUpdate>>>,
    status: Arc<RwLock<Status>>,
    pending: Arc<AtomicU64>,
    model: Arc<ModelPass>,
    readers: Arc<ReaderPool>,
}

impl Indexer {
    fn run(self, config: Config, rx: mpsc::Receiver<Command>) {
        let mut engine = self.open(config);
        let mut backlog: VecDeque<Command> = VecDeque::new();
        loop {
            let command = match backlog.pop_front() {
                Some(c) => c,
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => return,
                },
            };
            match command {
                Command::Index { mut full } => {
                    // Requests queued meanwhile are the same run; buffers are applied by it.
                    while let Ok(next) = rx.try_recv() {
                        match next {
                            Command::Index { full: f } => full |= f,
                            Command::Documents => {}
                            other => backlog.push_back(other),
                        }
                    }
                    if let Some(e) = engine.as_mut() {
                        self.index(e, full);
                    }
                }
                Command::Documents => {
                    if let Some(e) = engine.as_mut() {
                        self.apply_documents(e);
                    }
                }
                Command::Reconfigure(config) => {
                    // Drop the old engine first: it holds the index lock.
                    drop(engine.take());
                    self.model.stop();
                    self.vectors.clear();
                    engine = self.open(*config);
                    if let Some(e) = engine.as_mut() {
                        self.index(e, false);
                    }
                }
                Command::Shutdown(ack) => {
                    self.model.shutdown.store(true, Ordering::Release);
                    if let Some(e) = engine.as_mut() {
                        self.apply_documents(e);
                        if let Err(err) = e.flush() {
                            self.log(true, format!("could not save the vector index: {err}"));
                        }
                    }
                    let _ = ack.send(());
                    return;
                }
            }
        }
    }

    fn open(&self, config: Config) -> Option<Engine> {
        match Engine::open_for_writing_with(
            &self.root,
            config,
            self.index_dir.clone(),
            self.vectors.clone(),
        ) {
            Ok(e) => Some(e),
            Err(Error::IndexLocked(dir)) => {
                self.log(
                    true,
                    format!(
                        "the index in {} is in use by another ragls process; this window answers from it but does not update it",
                        dir.display()
                    ),
                );
                self.set_status(|s| s.state = engine::IndexState::Ready);
                None
            }
            Err(err) => {
                self.log(
                    true,
                    format!("cannot open the index of {}: {err}", self.root.display()),
                );
                self.set_status(|s| {
                    s.state = engine::IndexState::Error;
                    s.last_error = Some(err.to_string());
                });
                None
            }
        }
    }

    fn index(&self, engine: &mut Engine, full: bool) {
        self.set_status(|s| s.state = engine::IndexState::Indexing);
        let progress = ThreadProgress {
            indexer: self,
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
        };
        // Below the searches' priority: the editor's requests come first (engine::priority).
        match engine::in_background(|| engine.index(full, &progress)) {
            Ok(report) => {
                let message = format!(
                    "{} files changed, {} removed, {} chunks embedded{}",
                    report.files_changed,
                    report.files_removed,
                    report.embedded,
                    if report.failed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} files failed", report.failed.len())
                    }
                );
                self.emit(FolderEvent::ProgressEnd {
                    folder: self.uri.clone(),
                    message,
                });
                for (path, reason) in &report.failed {
                    self.log(true, format!("could not index {path}: {reason}"));
                }
                if let Some(reason) = &report.degraded {
                    self.log(true, format!("{reason}; retrieval is lexical only"));
                }
            }
            Err(err) => {
                self.emit(FolderEvent::ProgressEnd {
                    folder: self.uri.clone(),
                    message: format!("failed: {err}"),
                });
                self.log(
                    true,
                    format!("indexing {} failed: {err}", self.root.display()),
                );
                self.pending.store(0, Ordering::Relaxed);
                self.set_status(|s| {
                    s.state = engine::IndexState::Error;
                    s.last_error = Some(err.to_string());
                });
                return;
            }
        }
        self.pending.store(0, Ordering::Relaxed);
        self.apply_documents(engine);
        match engine.status() {
            Ok(status) => {
                if let Ok(mut s) = self.status.write() {
                    *s = status.clone();
                }
                self.emit(FolderEvent::Status {
                    status: Box::new(status),
                });
            }
            Err(err) => self.log(true, format!("cannot read the index status: {err}")),
        }
        // A warm start did not need the graph; load it now (once ready), off this thread.
        engine.start_loading_vectors();
        self.start_model_pass(engine);
        self.prime_a_reader(engine.config());
    }

    /// Opens a reading engine and loads what a reader keeps between searches (the lexical
    /// stage's chunk sizes), so that the first search after ready does not pay for it.
    fn prime_a_reader(&self, config: &Config) {
        let open = || {
            Engine::open_for_reading_with(
                &self.root,
                config.clone(),
                self.index_dir.clone(),
                self.vectors.clone(),
            )
        };
        if let Err(err) = self.readers.with_reader(open, |e| e.prime()) {
            self.log(true, format!("cannot open the index for reading: {err}"));
        }
    }

    /// Starts the local model's background pass (unless the index's embedder keeps up
    /// with indexing), or hands the request to the pass already running.
    fn start_model_pass(&self, engine: &Engine) {
        let Some(model) = engine.background_model() else {
            return;
        };
        if let Ok(mut next) = self.model.next.lock() {
            *next = Some(model);
        }
        if self.model.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pass, events, uri) = (self.model.clone(), self.events.clone(), self.uri.clone());
        let spawned = std::thread::Builder::new()
            .name("ragls-model".into())
            .spawn(move || {
                engine::lower_this_thread();
                loop {
                    while let Some(model) = pass.take_next() {
                        let progress = PassProgress {
                            pass: &pass,
                            epoch: pass.epoch.load(Ordering::Acquire),
                            events: &events,
                            uri: &uri,
                        };
                        if let Err(e) = model.run(&progress) {
                            let _ = events.send(FolderEvent::Log {
                                error: true,
                                message: format!(
                                    "embedding with the local model stopped: {e}; searches use what is embedded, and query-time embedding"
                                ),
                            });
                        }
                    }
                    pass.running.store(false, Ordering::Release);
                    // A request that came in after the last take saw this thread running.
                    if !pass.has_next() || pass.running.swap(true, Ordering::AcqRel) {
                        break;
                    }
                }
            });
        if spawned.is_err() {
            self.model.running.store(false, Ordering::Release);
        }
    }

    fn apply_documents(&self, engine: &mut Engine) {
        let mut closed = false;
        for doc in self.take_documents() {
            let path = doc.path.clone();
            closed |= doc.text.is_none();
            if let Err(err) = engine.apply_document(doc) {
                self.log(true, format!("could not index the buffer of {path}: {err}"));
            }
        }
        // A closed buffer hands its file back to the disk: counts may change. (Edits don't
        // change what `status` counts, and a walk per keystroke would cost too much.)
        if closed {
            if let Ok(status) = engine.status() {
                if let Ok(mut s) = self.status.write() {
                    let state = s.state;
                    *s = status;
                    s.state = state;
                }
            }
        }
    }

    fn take_documents(&self) -> Vec<DocumentUpdate> {
        self.documents
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn set_status(&self, f: impl FnOnce(&mut Status)) {
        let snapshot = match self.status.write() {
            Ok(mut s) => {
                let before = s.state;
                f(&mut s);
                (s.state != before).then(|| s.clone())
            }
            Err(_) => None,
        };
        if let Some(status) = snapshot {
            self.emit(FolderEvent::Status {
                status: Box::new(status),
            });
        }
    }

    fn emit(&self, event: FolderEvent) {
        let _ = self.events.send(event);
    }

    fn log(&self, error: bool, message: String) {
        self.emit(FolderEvent::Log { error, message });
    }
}

struct ThreadProgress<'a> {
    indexer: &'a Indexer,
    done: AtomicU64,
    total: AtomicU64,
}

impl IndexProgress for ThreadProgress<'_> {
    fn start(&self, total_files: u64) {
        self.total.store(total_files, Ordering::Relaxed);
        self.indexer.pending.store(total_files, Ordering::Relaxed);
        // A run with nothing to read (a no-op re-index) shows no progress at all.
        if total_files > 0 {
            self.indexer.emit(FolderEvent::ProgressBegin {
                folder: self.indexer.uri.clone(),
                total: total_files,
            });
        }
    }
    fn advance(&self, files: u64) {
        let done = self.done.fetch_add(files, Ordering::Relaxed) + files;
        let total = self.total.load(Ordering::Relaxed);
        self.indexer
            .pending
            .store(total.saturating_sub(done), Ordering::Relaxed);
        self.indexer.emit(FolderEvent::ProgressReport {
            folder: self.indexer.uri.clone(),
            done,
            total,
        });
    }
    fn finish(&self) {}
    fn take_documents(&self) -> Vec<DocumentUpdate> {
        self.indexer.take_documents()
    }
}

/// A folder is one index of the ask pipeline, read through its reading engines.
impl crate::ask::ReadsEngine for Folder {
    fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>> {
        Folder::with_reader(self, f)
    }
}
