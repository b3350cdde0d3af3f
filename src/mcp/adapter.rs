//! The MCP server's one door into the engine: every index, search, ask and status call
//! the tools make goes through [`Workspace`], so when the engine's API moves only this
//! file follows.
//!
//! A workspace has a background indexer thread that owns the writing engine (it brings
//! the index up to date at start and on `reindex`), and a small pool of reading engines
//! that answer tool calls meanwhile from what is committed so far (SQLite WAL; the vector
//! graph is shared with the writer). When another ragls process (an editor, `ragls
//! index`) holds the index, this server only reads it. Not for: rendering results or
//! checking arguments (see `tools`), nor async: every method here blocks.

use crate::ann::SharedVectors;
use crate::ask::ReadsEngine;
use crate::config::Config;
use crate::engine::{
    self, Engine, IndexProgress, IndexReport, IndexState, ReaderPool, Rerank, Retrieval, Status,
};
use crate::error::{Error, Result};
use crate::store::StoredChunk;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// How far the running index is; sent on a watch channel for progress notifications.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexProgressState {
    pub running: bool,
    pub done: u64,
    pub total: u64,
    /// Bumped at the end of each run, so a waiter can tell runs apart.
    pub runs: u64,
}

/// What a finished index run says, for `reindex` and the log.
pub type RunOutcome = std::result::Result<IndexReport, String>;

/// What the caller of [`Workspace::reindex`] hears: progress, then the outcome.
#[derive(Debug)]
pub enum RunEvent {
    Progress { done: u64, total: u64 },
    Done(RunOutcome),
}

type Reply = tokio::sync::mpsc::UnboundedSender<RunEvent>;

enum Job {
    Index { full: bool, reply: Option<Reply> },
}

pub struct Workspace {
    root: PathBuf,
    index_dir: PathBuf,
    config: Config,
    vectors: Arc<SharedVectors>,
    readers: ReaderPool,
    jobs: Mutex<mpsc::Sender<Job>>,
    progress: tokio::sync::watch::Sender<IndexProgressState>,
    /// Why this process cannot write the index (another process holds it), if so.
    writer_note: Arc<Mutex<Option<String>>>,
    last_outcome: Arc<Mutex<Option<RunOutcome>>>,
}

impl Workspace {
    /// Opens the workspace and starts its indexer, which brings the index up to date in
    /// the background.
    pub fn open(root: &Path, config: Config, index_dir: Option<PathBuf>) -> Result<Arc<Workspace>> {
        let root = engine::workspace_root(root)?;
        let index_dir = match index_dir {
            Some(d) => d,
            None => engine::index_dir_for(&root, &config)?,
        };
        let vectors = SharedVectors::new();
        let (tx, rx) = mpsc::channel();
        let (progress, _) = tokio::sync::watch::channel(IndexProgressState::default());
        let ws = Arc::new(Workspace {
            root: root.clone(),
            index_dir: index_dir.clone(),
            config: config.clone(),
            vectors: vectors.clone(),
            readers: ReaderPool::new(),
            jobs: Mutex::new(tx.clone()),
            progress: progress.clone(),
            writer_note: Arc::new(Mutex::new(None)),
            last_outcome: Arc::new(Mutex::new(None)),
        });
        let indexer = Indexer {
            root,
            index_dir,
            config,
            vectors,
            progress,
            writer_note: ws.writer_note.clone(),
            last_outcome: ws.last_outcome.clone(),
            model_running: Default::default(),
        };
        std::thread::Builder::new()
            .name("ragls-mcp-indexer".into())
            .spawn(move || indexer.run(rx))
            .map_err(|e| Error::io("cannot start the indexer thread", e))?;
        let _ = tx.send(Job::Index {
            full: false,
            reply: None,
        });
        Ok(ws)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Follows the indexer's progress.
    pub fn watch_progress(&self) -> tokio::sync::watch::Receiver<IndexProgressState> {
        self.progress.subscribe()
    }

    pub fn progress(&self) -> IndexProgressState {
        *self.progress.borrow()
    }

    /// Hybrid retrieval, reranked, from what is indexed so far; `None` before anything is.
    pub fn search(&self, query: &str, top_k: usize) -> Result<Option<Retrieval>> {
        self.with_reader(|e| e.retrieve(query, top_k, Rerank::Best))
    }

    /// The indexed chunk of `path` (workspace-relative) at 1-based `line`.
    pub fn chunk_at(&self, path: &str, line: u32) -> Result<Option<StoredChunk>> {
        Ok(self.with_reader(|e| e.chunk_at(path, line))?.flatten())
    }

    /// The index's state, with the running index's progress and the writer's situation.
    pub fn status(&self) -> Result<Status> {
        let progress = self.progress();
        let mut status = match self.with_reader(|e| e.status())? {
            Some(s) => s,
            None => Status::empty(&self.root, &self.index_dir, IndexState::Indexing),
        };
        if progress.running {
            status.state = IndexState::Indexing;
            status.pending_files = progress.total.saturating_sub(progress.done);
        }
        // A run that failed (not one refused because another process writes) is an error.
        if let Some(Err(e)) = self.last_outcome.lock().ok().and_then(|o| o.clone()) {
            if self.writer_note().is_none() {
                status.state = IndexState::Error;
                status.last_error = Some(e);
            }
        }
        Ok(status)
    }

    /// Why this process only reads the index, if it does.
    pub fn writer_note(&self) -> Option<String> {
        self.writer_note.lock().ok().and_then(|n| n.clone())
    }

    /// Queues an index run; the receiver hears its progress and outcome.
    pub fn reindex(&self, full: bool) -> tokio::sync::mpsc::UnboundedReceiver<RunEvent> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if let Ok(jobs) = self.jobs.lock() {
            let _ = jobs.send(Job::Index {
                full,
                reply: Some(tx),
            });
        }
        rx
    }

    fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>> {
        let open = || {
            Engine::open_for_reading_with(
                &self.root,
                self.config.clone(),
                self.index_dir.clone(),
                self.vectors.clone(),
            )
        };
        self.readers.with_reader(open, f)
    }
}

/// The ask pipeline (`crate::ask`) reads this workspace through its reading engines.
impl ReadsEngine for Workspace {
    fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>> {
        Workspace::with_reader(self, f)
    }
}

/// The indexer thread: owns the writing engine while it can take the index's lock.
struct Indexer {
    root: PathBuf,
    index_dir: PathBuf,
    config: Config,
    vectors: Arc<SharedVectors>,
    progress: tokio::sync::watch::Sender<IndexProgressState>,
    writer_note: Arc<Mutex<Option<String>>>,
    last_outcome: Arc<Mutex<Option<RunOutcome>>>,
    /// A local model's background pass is running (one at a time; each picks up every
    /// chunk committed before it ends).
    model_running: Arc<std::sync::atomic::AtomicBool>,
}

impl Indexer {
    fn run(self, jobs: mpsc::Receiver<Job>) {
        let mut writer: Option<Engine> = None;
        while let Ok(Job::Index { mut full, reply }) = jobs.recv() {
            let mut replies: Vec<Reply> = reply.into_iter().collect();
            // Requests queued meanwhile are the same run.
            while let Ok(Job::Index { full: f, reply }) = jobs.try_recv() {
                full |= f;
                replies.extend(reply);
            }
            let outcome = self.index(&mut writer, full, &replies);
            if let Ok(mut last) = self.last_outcome.lock() {
                *last = Some(outcome.clone());
            }
            for r in replies {
                let _ = r.send(RunEvent::Done(outcome.clone()));
            }
        }
        if let Some(mut e) = writer {
            let _ = e.flush();
        }
    }

    fn index(&self, writer: &mut Option<Engine>, full: bool, replies: &[Reply]) -> RunOutcome {
        if writer.is_none() {
            match Engine::open_for_writing_with(
                &self.root,
                self.config.clone(),
                self.index_dir.clone(),
                self.vectors.clone(),
            ) {
                Ok(e) => {
                    *writer = Some(e);
                    self.set_note(None);
                }
                Err(Error::IndexLocked(dir)) => {
                    let note = format!(
                        "another ragls process (an editor or `ragls index`) holds the index in {}; this server answers from it and that process keeps it current",
                        dir.display()
                    );
                    self.set_note(Some(note.clone()));
                    return Err(note);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        let Some(engine) = writer.as_mut() else {
            return Err("the index could not be opened".into());
        };
        self.progress.send_modify(|p| {
            p.running = true;
            p.done = 0;
            p.total = 0;
        });
        let progress = WatchProgress {
            watch: &self.progress,
            replies,
            done: AtomicU64::new(0),
        };
        // Below the tool calls' priority: searches come first (engine::priority).
        let result = crate::engine::in_background(|| engine.index(full, &progress));
        self.progress.send_modify(|p| {
            p.running = false;
            p.runs += 1;
        });
        if let Some(model) = engine.background_model() {
            self.start_model_pass(model);
        }
        // The process's pool of the shared index is the readers' too: its first tool
        // call does not connect.
        engine.start_warming_shared();
        result.map_err(|e| e.to_string())
    }

    /// Embeds a local model's backlog on a thread of its own, at the lowest priority.
    fn start_model_pass(&self, model: crate::engine::BackgroundModel) {
        if self.model_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = self.model_running.clone();
        let spawned = std::thread::Builder::new()
            .name("ragls-model".into())
            .spawn(move || {
                crate::engine::lower_this_thread();
                if let Err(e) = model.run(&crate::engine::NoModelProgress) {
                    eprintln!("ragls: embedding with the local model stopped: {e}");
                }
                running.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.model_running.store(false, Ordering::Release);
        }
    }

    fn set_note(&self, note: Option<String>) {
        if let Ok(mut n) = self.writer_note.lock() {
            *n = note;
        }
    }
}

/// Progress to the watch channel (anyone waiting on the index) and to the callers that
/// asked for this run.
struct WatchProgress<'a> {
    watch: &'a tokio::sync::watch::Sender<IndexProgressState>,
    replies: &'a [Reply],
    done: AtomicU64,
}

impl WatchProgress<'_> {
    fn tell(&self, done: u64, total: u64) {
        for r in self.replies {
            let _ = r.send(RunEvent::Progress { done, total });
        }
    }
}

impl IndexProgress for WatchProgress<'_> {
    fn start(&self, total_files: u64) {
        self.watch.send_modify(|p| p.total = total_files);
        self.tell(0, total_files);
    }
    fn advance(&self, files: u64) {
        let done = self.done.fetch_add(files, Ordering::Relaxed) + files;
        let mut total = 0;
        self.watch.send_modify(|p| {
            p.done = done;
            total = p.total;
        });
        self.tell(done, total);
    }
    fn finish(&self) {}
}
