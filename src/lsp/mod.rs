//! The language server (`ragls serve --stdio`), on tower-lsp: lifecycle and multi-root
//! folders, document sync, background indexing with `$/progress`, PROTOCOL.md's custom
//! requests (`rag/ask`, `rag/search`, `rag/status`, `rag/reindex`), hover, code actions,
//! commands and workspace symbols.
//!
//! Handlers only read shared state or hand work to a folder's indexer thread; anything
//! that touches the database runs on the blocking pool, and generation streams inside the
//! request's own future, so `$/cancelRequest` (which drops that future) closes the
//! upstream connection at once. stdout carries only JSON-RPC; logs go to stderr and to
//! `window/logMessage`.

mod documents;
mod features;
mod folder;
mod protocol;
mod transport;

use crate::ask::{self, AskIndex, AskSink, Question, Stage};
use crate::config::{self, Config};
use crate::retrieve::{Rerank, Retrieval, SearchHit};
use crate::workspace;
use dashmap::DashMap;
use documents::Document;
use folder::{Command, Folder, FolderEvent};
use protocol::QueryParams;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tower_lsp::jsonrpc::{self, Result};
use tower_lsp::lsp_types::notification::Notification;
use tower_lsp::lsp_types::*;
use tower_lsp::{Client, LanguageServer, LspService, Server};

/// Set once `shutdown` has flushed every folder; decides `exit`'s exit code.
static SHUT_DOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a hover may take before it answers with what it has.
const HOVER_BUDGET: Duration = Duration::from_millis(1500);
const COMMANDS: [&str; 4] = [
    "ragls.ask",
    "ragls.explain",
    "ragls.related",
    "ragls.reindex",
];

/// `rag/statusChanged`: the `rag/status` object, sent when the state changes.
enum StatusChanged {}
impl Notification for StatusChanged {
    type Params = Value;
    const METHOD: &'static str = "rag/statusChanged";
}

/// `$/progress` with a value that is not a work-done progress (streamed answer text).
enum PartialResult {}
impl Notification for PartialResult {
    type Params = Value;
    const METHOD: &'static str = "$/progress";
}

/// Runs the server on stdin/stdout until the client exits.
pub fn serve_stdio() -> crate::error::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ragls-lsp")
        .build()
        .map_err(|e| crate::error::Error::io("cannot start the server runtime", e))?;
    runtime.block_on(async {
        let (service, socket) = LspService::build(Backend::new)
            .custom_method("rag/ask", Backend::rag_ask)
            .custom_method("rag/search", Backend::rag_search)
            .custom_method("rag/status", Backend::rag_status)
            .custom_method("rag/reindex", Backend::rag_reindex)
            .finish();
        // `rag/status` and `rag/reindex` take optional params: give the router `{}`.
        let service = tower::ServiceBuilder::new()
            .map_request(optional_params)
            .service(service);
        let (stdin, stdout) = transport::filtered(tokio::io::stdin(), protocol_stdout());
        Server::new(stdin, stdout, socket)
            .concurrency_level(16)
            .serve(service)
            .await;
    });
    // Indexer threads finished their work at `shutdown`; don't wait for stragglers.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// Normalises parameters the router would refuse: `rag/status` and `rag/reindex` take
/// optional params (given `{}` when absent), and `"params": null` on methods without
/// params (`shutdown`, `exit`, which some clients send) is dropped.
/// The stream JSON-RPC is written to. On Unix the real stdout is kept for it alone and
/// file descriptor 1 is pointed at stderr, so that a stray `println!` in a dependency
/// (hnsw_rs prints on some errors) can never corrupt the protocol stream.
fn protocol_stdout() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: dup/dup2 on the process's own standard descriptors; the duplicate is
        // owned by the File from here on.
        let fd = unsafe { libc::dup(1) };
        if fd >= 0 && unsafe { libc::dup2(2, 1) } >= 0 {
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            return Box::new(tokio::fs::File::from_std(file));
        }
    }
    Box::new(tokio::io::stdout())
}

fn optional_params(req: jsonrpc::Request) -> jsonrpc::Request {
    if req.method() == "exit" {
        // tower-lsp keeps reading stdin after `exit`; LSP says the process ends now (0
        // after a `shutdown`, 1 without). The short grace lets the reply queue drain.
        let code = if SHUT_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
            0
        } else {
            1
        };
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            std::process::exit(code);
        });
    }
    let absent = matches!(req.params(), None | Some(Value::Null));
    let optional = matches!(req.method(), "rag/status" | "rag/reindex");
    if !(absent && (optional || req.params().is_some())) {
        return req;
    }
    let mut builder = jsonrpc::Request::build(req.method().to_string());
    if let Some(id) = req.id().cloned() {
        builder = builder.id(id);
    }
    if optional {
        builder = builder.params(json!({}));
    }
    builder.finish()
}

#[derive(Clone, Copy, Debug, Default)]
struct ClientFlags {
    work_done_progress: bool,
    watch_files_dynamically: bool,
}

pub struct Backend {
    client: Client,
    folders: RwLock<Vec<Arc<Folder>>>,
    docs: DashMap<Url, Document>,
    /// The editor's settings (`initializationOptions`, then `didChangeConfiguration`).
    overrides: RwLock<Option<toml::Table>>,
    /// The `initializationOptions` alone, the layer under `didChangeConfiguration`.
    init_options: RwLock<Option<toml::Table>>,
    flags: OnceLock<ClientFlags>,
    events: tokio::sync::mpsc::UnboundedSender<FolderEvent>,
    events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<FolderEvent>>>,
    /// Generated hover explanations by (symbol, hash of its definition's text).
    hover_cache: Arc<DashMap<(String, [u8; 16]), String>>,
    /// Explanations being generated, so a second hover does not start another.
    hover_inflight: Arc<dashmap::DashSet<(String, [u8; 16])>>,
}

impl Backend {
    fn new(client: Client) -> Backend {
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        Backend {
            client,
            folders: RwLock::new(Vec::new()),
            docs: DashMap::new(),
            overrides: RwLock::new(None),
            init_options: RwLock::new(None),
            flags: OnceLock::new(),
            events,
            events_rx: Mutex::new(Some(events_rx)),
            hover_cache: Arc::new(DashMap::new()),
            hover_inflight: Arc::new(dashmap::DashSet::new()),
        }
    }

    fn folders(&self) -> Vec<Arc<Folder>> {
        self.folders.read().map(|f| f.clone()).unwrap_or_default()
    }

    fn flags(&self) -> ClientFlags {
        self.flags.get().copied().unwrap_or_default()
    }

    /// The folder that holds `uri`, and the file's workspace-relative path.
    fn locate(&self, uri: &Url) -> Option<(Arc<Folder>, String)> {
        let path = uri.to_file_path().ok()?;
        let mut best: Option<(Arc<Folder>, String)> = None;
        for f in self.folders() {
            if let Some(rel) = f.relative(&path) {
                // The innermost folder wins in nested multi-root set-ups.
                if best
                    .as_ref()
                    .is_none_or(|(b, _)| f.root.as_os_str().len() > b.root.as_os_str().len())
                {
                    best = Some((f, rel));
                }
            }
        }
        best
    }

    /// Loads settings for a folder: files and the editor's overrides. A bad value is
    /// reported and the defaults (plus valid files) are used instead.
    async fn config_for(&self, root: &std::path::Path) -> Config {
        let overrides = self.overrides.read().ok().and_then(|o| o.clone());
        match config::load(root, overrides) {
            Ok(c) => c,
            Err(e) => {
                self.client
                    .show_message(MessageType::ERROR, format!("ragls: {e}"))
                    .await;
                config::load(root, None).unwrap_or_default()
            }
        }
    }

    async fn add_folder(&self, uri: Url) {
        let Ok(root) = uri.to_file_path() else {
            self.log(
                true,
                format!("ignoring workspace folder {uri}: not a local folder"),
            )
            .await;
            return;
        };
        let root = match crate::engine::workspace_root(&root) {
            Ok(r) => r,
            Err(e) => {
                self.log(true, format!("ignoring workspace folder: {e}"))
                    .await;
                return;
            }
        };
        if self.folders().iter().any(|f| f.root == root) {
            return;
        }
        let config = self.config_for(&root).await;
        match Folder::start(root.clone(), uri, config, self.events.clone()) {
            Ok(folder) => {
                if let Ok(mut folders) = self.folders.write() {
                    folders.push(folder);
                }
            }
            Err(e) => {
                self.log(true, format!("cannot open {}: {e}", root.display()))
                    .await
            }
        }
    }

    async fn log(&self, error: bool, message: String) {
        eprintln!("ragls: {message}");
        let typ = if error {
            MessageType::WARNING
        } else {
            MessageType::INFO
        };
        self.client.log_message(typ, message).await;
    }

    /// Forwards indexer events to the editor: progress, status changes, log lines.
    fn start_event_pump(&self) {
        let Some(mut rx) = self.events_rx.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let client = self.client.clone();
        let progress = self.flags().work_done_progress;
        tokio::spawn(async move {
            let mut tokens: HashMap<Url, NumberOrString> = HashMap::new();
            let mut counter = 0u32;
            while let Some(event) = rx.recv().await {
                match event {
                    FolderEvent::ProgressBegin { folder, total } if progress => {
                        counter += 1;
                        let token = NumberOrString::String(format!("ragls/index/{counter}"));
                        if client
                            .send_request::<request::WorkDoneProgressCreate>(
                                WorkDoneProgressCreateParams {
                                    token: token.clone(),
                                },
                            )
                            .await
                            .is_ok()
                        {
                            let begin = WorkDoneProgressBegin {
                                title: "Indexing".into(),
                                cancellable: Some(false),
                                message: Some(format!("0/{total} files")),
                                percentage: Some(0),
                            };
                            send_progress(&client, &token, WorkDoneProgress::Begin(begin)).await;
                            tokens.insert(folder, token);
                        }
                    }
                    FolderEvent::ProgressReport {
                        folder,
                        done,
                        total,
                    } => {
                        if let Some(token) = tokens.get(&folder) {
                            let report = WorkDoneProgressReport {
                                cancellable: Some(false),
                                message: Some(format!("{done}/{total} files")),
                                percentage: Some(if total == 0 {
                                    100
                                } else {
                                    (done * 100 / total) as u32
                                }),
                            };
                            send_progress(&client, token, WorkDoneProgress::Report(report)).await;
                        }
                    }
                    FolderEvent::ProgressEnd { folder, message } => {
                        if let Some(token) = tokens.remove(&folder) {
                            send_progress(
                                &client,
                                &token,
                                WorkDoneProgress::End(WorkDoneProgressEnd {
                                    message: Some(message),
                                }),
                            )
                            .await;
                        }
                    }
                    FolderEvent::Status { status, .. } => {
                        let value = protocol::status_json(std::slice::from_ref(&status));
                        client.send_notification::<StatusChanged>(value).await;
                    }
                    FolderEvent::Log { error, message } => {
                        eprintln!("ragls: {message}");
                        let typ = if error {
                            MessageType::WARNING
                        } else {
                            MessageType::INFO
                        };
                        client.log_message(typ, message).await;
                    }
                    FolderEvent::ProgressBegin { .. } => {}
                }
            }
        });
    }

    async fn register_watchers(&self) {
        if !self.flags().watch_files_dynamically {
            return;
        }
        let options = DidChangeWatchedFilesRegistrationOptions {
            watchers: vec![FileSystemWatcher {
                glob_pattern: GlobPattern::String("**/*".into()),
                kind: None,
            }],
        };
        let registration = Registration {
            id: "ragls-watch-files".into(),
            method: "workspace/didChangeWatchedFiles".into(),
            register_options: serde_json::to_value(options).ok(),
        };
        if let Err(e) = self.client.register_capability(vec![registration]).await {
            self.log(
                true,
                format!("the editor refused file watching ({e}); saves still update the index"),
            )
            .await;
        }
    }

    /// Sends a buffer's text to its folder's indexer, unless it must not be indexed.
    async fn index_buffer(&self, uri: &Url, text: Option<String>) {
        let Some((folder, rel)) = self.locate(uri) else {
            if text.is_some() {
                self.log(
                    false,
                    format!("{uri} is outside the workspace folders; not indexed"),
                )
                .await;
            }
            return;
        };
        if let Some(t) = &text {
            let config = folder.config();
            if let Err(reason) = workspace::admit_text(
                &rel,
                t.as_bytes(),
                config.index.max_file_bytes,
                config.index.index_secrets,
            ) {
                let why = match reason {
                    workspace::SkipReason::Secret => return,
                    workspace::SkipReason::TooLarge => "is larger than index.max_file_bytes",
                    _ => "looks binary or generated",
                };
                self.log(false, format!("{rel} {why}; its buffer is not indexed"))
                    .await;
                return;
            }
        }
        folder.update_document(rel, text);
    }

    /// The text of a document for editor context (selections, hovered words): its open
    /// buffer, else the disk, and only if it passes the indexing admission (inside a
    /// workspace folder, not a secret, not binary, within `index.max_file_bytes`).
    /// Anything else is dropped with a log line, never read or sent anywhere.
    async fn admitted_text(&self, uri: &Url) -> Option<(Arc<Folder>, String, String)> {
        let Some((folder, rel)) = self.locate(uri) else {
            self.log(
                false,
                format!("{uri} is outside the workspace folders; not used as context"),
            )
            .await;
            return None;
        };
        let config = folder.config();
        let (max, secrets) = (config.index.max_file_bytes, config.index.index_secrets);
        let buffer = self.docs.get(uri).map(|d| d.text.clone());
        let text = match buffer {
            Some(t) => workspace::admit_text(&rel, t.as_bytes(), max, secrets).map(|_| t),
            None => workspace::read_admitted(&folder.root, &rel, max, secrets),
        };
        match text {
            Ok(t) => Some((folder, rel, t)),
            Err(reason) => {
                self.log(
                    false,
                    format!("{rel} is not used as context ({})", reason.as_str()),
                )
                .await;
                None
            }
        }
    }

    /// Editor context: the selected text (or the line under the cursor), with its place.
    async fn editor_context(&self, uri: &Url, range: Option<Range>) -> Option<(String, String)> {
        let range = range?;
        let (_, rel, text) = self.admitted_text(uri).await?;
        let mut selected = documents::text_in(&text, range).to_string();
        if selected.trim().is_empty() {
            selected = documents::line_text(&text, range.start.line).to_string();
        }
        let selected: String = selected.chars().take(4000).collect();
        let place = format!("{rel}:{}-{}", range.start.line + 1, range.end.line + 1);
        Some((format!("{place}\n```\n{selected}\n```"), selected))
    }

    /// The indexes a request reads: the folder of `scope` when given, else all of them.
    fn indexes(&self, scope: Option<&Url>) -> Vec<Arc<dyn AskIndex>> {
        let folders = match scope.and_then(|u| self.locate(u)) {
            Some((f, _)) => vec![f],
            None => self.folders(),
        };
        folders
            .into_iter()
            .map(|f| f as Arc<dyn AskIndex>)
            .collect()
    }

    /// Retrieval over the relevant folders ([`Backend::indexes`]), merged by score.
    async fn search_hits(
        &self,
        query: String,
        top_k: usize,
        how: Rerank,
        scope: Option<&Url>,
    ) -> Result<Vec<SearchHit>> {
        let found = ask::retrieve_all(&self.indexes(scope), &query, top_k, how)
            .await
            .map_err(|e| internal(e.to_string()))?;
        Ok(found.map(|(_, r)| r.hits).unwrap_or_default())
    }

    async fn query_with_context(&self, p: &QueryParams) -> (String, Option<String>) {
        let context = match &p.text_document {
            Some(d) => self.editor_context(&d.uri, p.range).await,
            None => None,
        };
        match context {
            Some((prompt_context, selected)) => {
                // The selection steers retrieval too, but the question leads.
                let extra: String = selected.chars().take(600).collect();
                (format!("{} {extra}", p.query), Some(prompt_context))
            }
            None => (p.query.clone(), None),
        }
    }

    async fn rag_ask(&self, params: Value) -> Result<Value> {
        let p: QueryParams = protocol::parse("rag/ask", params)?;
        p.check("rag/ask")?;
        let stage = p
            .work_done_token
            .clone()
            .and_then(|t| serde_json::from_value::<NumberOrString>(t).ok());
        if let Some(token) = &stage {
            let begin = WorkDoneProgressBegin {
                title: "Asking".into(),
                cancellable: Some(true),
                message: Some("Retrieving".into()),
                percentage: None,
            };
            send_progress(&self.client, token, WorkDoneProgress::Begin(begin)).await;
        }
        // Ends the stage progress even when the request is cancelled (its future dropped).
        let mut stage_end = stage.clone().map(|token| StageEnd {
            client: self.client.clone(),
            token,
            sent: false,
        });
        let result = self.ask(&p, stage.as_ref()).await;
        if let Some(end) = stage_end.as_mut() {
            end.send().await;
        }
        if stage.is_some() || p.partial_result_token.is_some() {
            // tower-lsp writes notifications and responses from two queues; a moment's
            // grace lets the last progress message reach the client before the result.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        result
    }

    async fn ask(&self, p: &QueryParams, stage: Option<&NumberOrString>) -> Result<Value> {
        let Some(first) = self.folders().first().cloned() else {
            return Err(jsonrpc::Error::invalid_request());
        };
        let top_k = p.top_k.unwrap_or_else(|| first.config().rerank.top_k);
        let (query, editor_context) = self.query_with_context(p).await;
        let scope = p.text_document.as_ref().map(|d| d.uri.clone());
        let question = Question {
            text: p.query.clone(),
            query,
            top_k,
            rerank: rerank_flag(p.rerank),
            editor_context,
        };
        // Progress and deltas go out in order through one forwarding task.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        let client = self.client.clone();
        let forward = tokio::spawn(async move {
            while let Some(params) = rx.recv().await {
                client.send_notification::<PartialResult>(params).await;
            }
        });
        let mut sink = RequestSink {
            tx,
            stage: stage.cloned(),
            partial: p.partial_result_token.clone(),
            generating: false,
        };
        let mut indexes = self.indexes(scope.as_ref());
        if indexes.is_empty() {
            indexes.push(first as Arc<dyn AskIndex>);
        }
        let outcome = ask::ask(&indexes, &question, &mut sink).await;
        // Offline the answer is ready at once: it streams as one delta.
        if let Ok(Some(result)) = &outcome {
            if !sink.generating {
                sink.delta(&result.answer);
            }
        }
        drop(sink);
        let _ = forward.await;
        let result = outcome
            .map_err(|e| internal(e.to_string()))?
            .ok_or_else(|| internal("the index is not ready yet".into()))?;
        Ok(protocol::ask_json(&result))
    }

    async fn rag_search(&self, params: Value) -> Result<Value> {
        let p: QueryParams = protocol::parse("rag/search", params)?;
        p.check("rag/search")?;
        let top_k = p.top_k.unwrap_or(10);
        let (query, _) = self.query_with_context(&p).await;
        let scope = p.text_document.as_ref().map(|d| d.uri.clone());
        let hits = self
            .search_hits(query, top_k, rerank_flag(p.rerank), scope.as_ref())
            .await?;
        let results: Vec<Value> = hits
            .iter()
            .map(|h| protocol::source_json(&crate::answer::source_of(h)))
            .collect();
        Ok(json!({ "results": results }))
    }

    async fn rag_status(&self, _params: Value) -> Result<Value> {
        let statuses: Vec<_> = self.folders().iter().map(|f| f.status()).collect();
        Ok(protocol::status_json(&statuses))
    }

    async fn rag_reindex(&self, params: Value) -> Result<Value> {
        let p: protocol::ReindexParams = protocol::parse("rag/reindex", params)?;
        let full = p.full.unwrap_or(false);
        for f in self.folders() {
            f.send(Command::Index { full });
        }
        Ok(json!({ "started": true, "full": full }))
    }

    /// Hover: the definition and related code within the budget; a generated explanation
    /// when one is cached (generation runs in the background and fills the cache).
    async fn hover_at(&self, uri: &Url, pos: Position) -> Result<Option<Hover>> {
        let Some((folder, _, text)) = self.admitted_text(uri).await else {
            return Ok(None);
        };
        let Some(word) = documents::word_at(&text, pos) else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + HOVER_BUDGET;
        let index = [folder.clone() as Arc<dyn AskIndex>];
        let retrieval = tokio::time::timeout_at(
            deadline,
            ask::retrieve_all(&index, &word, 5, Rerank::Offline),
        )
        .await;
        let hits = match retrieval {
            Ok(Ok(Some((_, r)))) => r.hits,
            _ => Vec::new(),
        };
        if hits.is_empty() {
            return Ok(None);
        }
        let key = (word.clone(), crate::store::text_hash(&hits[0].chunk.text));
        let mut explanation = self.hover_cache.get(&key).map(|e| e.clone());
        if explanation.is_none() {
            if let Some(task) = self.explain_in_background(&folder, &word, &hits, key) {
                // Wait for it only as long as the budget allows; it fills the cache anyway.
                if let Ok(Ok(Some(text))) = tokio::time::timeout_at(deadline, task).await {
                    explanation = Some(text);
                }
            }
        }
        let root = folder.root.clone();
        let link = |path: &str, line: u32| features::file_link(&root, path, line);
        let md = features::hover_markdown(&word, &hits, &link, explanation.as_deref());
        Ok(Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: md,
            }),
            range: None,
        }))
    }

    /// Starts generating a short explanation of `word` through the ask pipeline (when a
    /// chat model is configured); a generated answer lands in the hover cache, fallback
    /// notes in the log.
    fn explain_in_background(
        &self,
        folder: &Arc<Folder>,
        word: &str,
        hits: &[SearchHit],
        key: (String, [u8; 16]),
    ) -> Option<tokio::task::JoinHandle<Option<String>>> {
        let question = format!("In two or three sentences, what is `{word}` and what is it for?");
        let retrieval = Retrieval {
            hits: hits.to_vec(),
            notes: Vec::new(),
            reranked_by: None,
            retrieve_ms: 0,
            rerank_ms: None,
        };
        let index = folder.clone() as Arc<dyn AskIndex>;
        let cache = self.hover_cache.clone();
        let inflight = self.hover_inflight.clone();
        let client = self.client.clone();
        if !inflight.insert(key.clone()) {
            return None; // already being generated; a later hover shows it
        }
        Some(tokio::spawn(async move {
            let _done = InflightGuard {
                set: inflight,
                key: key.clone(),
            };
            let result = ask::answer(&index, &question, retrieval, None, &mut ask::Quiet)
                .await
                .ok()??;
            if result.mode != "generated" {
                for note in &result.notes {
                    eprintln!("ragls: hover: {note}");
                    client
                        .log_message(MessageType::INFO, format!("hover: {note}"))
                        .await;
                }
                return None;
            }
            // Citations become links in the hover.
            let mut text = result.answer;
            for c in &result.citations {
                let link = features::file_link(&c.root, &c.path, c.start_line);
                text = text.replace(&format!("[{}]", c.n), &format!("[[{}]]({link})", c.n));
            }
            cache.insert(key, text.clone());
            Some(text)
        }))
    }

    async fn code_actions(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let range = params.range;
        let Some((_, _, text)) = self.admitted_text(&uri).await else {
            return Ok(None);
        };
        let word = documents::word_at(&text, range.start);
        let args = |extra: Value| vec![json!(uri), json!(range), extra];
        let mut actions: Vec<CodeActionOrCommand> =
            vec![CodeActionOrCommand::CodeAction(CodeAction {
                title: "Explain this code".into(),
                kind: Some(CodeActionKind::SOURCE),
                command: Some(tower_lsp::lsp_types::Command {
                    title: "Explain this code".into(),
                    command: "ragls.explain".into(),
                    arguments: Some(args(Value::Null)),
                }),
                ..CodeAction::default()
            })];
        if let Some(w) = &word {
            let query = format!("What does `{w}` do, and where is it used?");
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Ask about {w}"),
                kind: Some(CodeActionKind::SOURCE),
                command: Some(tower_lsp::lsp_types::Command {
                    title: format!("Ask about {w}"),
                    command: "ragls.ask".into(),
                    arguments: Some(vec![
                        json!({ "query": query, "textDocument": { "uri": uri }, "range": range }),
                    ]),
                }),
                ..CodeAction::default()
            }));
        }
        actions.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: "Find related code".into(),
            kind: Some(CodeActionKind::SOURCE),
            command: Some(tower_lsp::lsp_types::Command {
                title: "Find related code".into(),
                command: "ragls.related".into(),
                arguments: Some(args(Value::Null)),
            }),
            ..CodeAction::default()
        }));
        if let Some(action) = self.doc_comment_action(&uri, &text, range).await {
            actions.push(CodeActionOrCommand::CodeAction(action));
        }
        Ok(Some(actions))
    }

    /// "Write a doc comment": an edit inserting a comment in the language's style above
    /// the item at the cursor (inside it, for Python), naming related code found by
    /// retrieval. Not offered where the item already has one.
    async fn doc_comment_action(&self, uri: &Url, text: &str, range: Range) -> Option<CodeAction> {
        let (folder, rel) = self.locate(uri)?;
        let line = range.start.line + 1;
        let f = folder.clone();
        let path = rel.clone();
        let chunk = tokio::task::spawn_blocking(move || f.with_reader(|e| e.chunk_at(&path, line)))
            .await
            .ok()?
            .ok()???;
        if chunk.name.is_empty() {
            return None;
        }
        let lines: Vec<&str> = text.split('\n').collect();
        // The item's own line: the first line of the chunk that names it.
        let first = chunk.start_line.saturating_sub(1) as usize;
        let last = (chunk.end_line as usize).min(lines.len());
        let item = (first..last).find(|&i| lines[i].contains(chunk.name.as_str()))?;
        let (insert_at, inside) = if chunk.language == "python" {
            let sig_end = (item..last)
                .find(|&i| lines[i].trim_end().ends_with(':'))
                .unwrap_or(item);
            (sig_end + 1, true)
        } else {
            let mut top = item;
            while top > first && {
                let t = lines[top - 1].trim_start();
                t.starts_with("#[") || t.starts_with('@')
            } {
                top -= 1;
            }
            (top, false)
        };
        let existing = if inside {
            lines.get(insert_at).map(|l| l.trim_start())
        } else {
            insert_at
                .checked_sub(1)
                .and_then(|i| lines.get(i))
                .map(|l| l.trim_start())
        };
        if existing.is_some_and(|l| {
            l.starts_with("///")
                || l.starts_with("*/")
                || l.starts_with("/**")
                || l.starts_with("\"\"\"")
                || l.starts_with("//")
        }) {
            return None;
        }
        let indent: String = lines[item]
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        let related = self
            .search_hits(chunk.name.clone(), 4, Rerank::None, Some(uri))
            .await
            .ok()?
            .into_iter()
            .filter(|h| h.chunk.id != chunk.id && !h.chunk.symbol.is_empty())
            .take(2)
            .map(|h| {
                format!(
                    "`{}` ({}:{})",
                    h.chunk.symbol, h.chunk.path, h.chunk.start_line
                )
            })
            .collect::<Vec<_>>();
        let (comment, _) = features::doc_comment(&chunk.language, &chunk.name, &indent, &related);
        let at = Position {
            line: insert_at as u32,
            character: 0,
        };
        let edit = TextEdit {
            range: Range { start: at, end: at },
            new_text: comment,
        };
        Some(CodeAction {
            title: format!("Write a doc comment for {}", chunk.name),
            kind: Some(CodeActionKind::REFACTOR_REWRITE),
            edit: Some(WorkspaceEdit {
                changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                ..WorkspaceEdit::default()
            }),
            ..CodeAction::default()
        })
    }

    async fn command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        let args = params.arguments;
        let uri_range = |args: &[Value]| -> Result<(Url, Range)> {
            let uri: Url = args
                .first()
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| {
                    jsonrpc::Error::invalid_params(format!(
                        "{}: the first argument must be a document URI",
                        params.command
                    ))
                })?;
            let range: Range = args
                .get(1)
                .cloned()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| {
                    jsonrpc::Error::invalid_params(format!(
                        "{}: the second argument must be a range",
                        params.command
                    ))
                })?;
            Ok((uri, range))
        };
        match params.command.as_str() {
            "ragls.ask" => {
                let first = args.into_iter().next().ok_or_else(|| {
                    jsonrpc::Error::invalid_params("ragls.ask: give {\"query\": ...}")
                })?;
                let first = if let Value::String(q) = first {
                    json!({ "query": q })
                } else {
                    first
                };
                self.rag_ask(first).await.map(Some)
            }
            "ragls.explain" => {
                let (uri, range) = uri_range(&args)?;
                self.rag_ask(json!({ "query": "Explain this code: what it does and how it fits in.", "textDocument": { "uri": uri }, "range": range }))
                    .await
                    .map(Some)
            }
            "ragls.related" => {
                let (uri, range) = uri_range(&args)?;
                let text = self
                    .admitted_text(&uri)
                    .await
                    .map(|(_, _, t)| t)
                    .unwrap_or_default();
                let mut query = documents::text_in(&text, range).to_string();
                if query.trim().is_empty() {
                    query = documents::word_at(&text, range.start).unwrap_or_else(|| {
                        documents::line_text(&text, range.start.line).to_string()
                    });
                }
                let query: String = query.chars().take(1000).collect();
                let hits = self.search_hits(query, 10, Rerank::Best, None).await?;
                let locations: Vec<Location> = hits
                    .iter()
                    .filter_map(|h| {
                        let uri = Url::from_file_path(h.root.join(&h.chunk.path)).ok()?;
                        Some(Location {
                            uri,
                            range: protocol::range_of(
                                h.chunk.start_line,
                                h.chunk.end_line,
                                &h.chunk.text,
                            ),
                        })
                    })
                    .collect();
                Ok(Some(json!(locations)))
            }
            "ragls.reindex" => {
                let full = args
                    .first()
                    .and_then(|a| a.get("full"))
                    .and_then(|f| f.as_bool())
                    .unwrap_or(false);
                self.rag_reindex(json!({ "full": full })).await.map(Some)
            }
            other => Err(jsonrpc::Error::invalid_params(format!(
                "unknown command {other}; ragls offers {}",
                COMMANDS.join(", ")
            ))),
        }
    }
}

/// A `rag/ask` request's sink: the generation stage as work-done progress, answer deltas
/// as partial results, both through one channel so they reach the client in order.
struct RequestSink {
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
    stage: Option<NumberOrString>,
    partial: Option<Value>,
    /// Set once generation started (its deltas stream; an offline answer is one delta).
    generating: bool,
}

impl AskSink for RequestSink {
    fn stage(&mut self, stage: Stage) {
        if stage != Stage::Generating {
            return; // "Retrieving" is the progress's begin message
        }
        self.generating = true;
        if let Some(token) = &self.stage {
            let report = WorkDoneProgressReport {
                cancellable: Some(true),
                message: Some(stage.label().into()),
                percentage: None,
            };
            let params = ProgressParams {
                token: token.clone(),
                value: ProgressParamsValue::WorkDone(WorkDoneProgress::Report(report)),
            };
            if let Ok(v) = serde_json::to_value(params) {
                let _ = self.tx.send(v);
            }
        }
    }

    fn delta(&mut self, text: &str) {
        if let Some(token) = &self.partial {
            let _ = self
                .tx
                .send(json!({ "token": token, "value": { "answerDelta": text } }));
        }
    }
}

/// Removes a hover key from the in-flight set however its generation ends.
struct InflightGuard {
    set: Arc<dashmap::DashSet<(String, [u8; 16])>>,
    key: (String, [u8; 16]),
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.set.remove(&self.key);
    }
}

/// The end of a request's stage progress, sent on completion or, if the request is
/// cancelled, when its future is dropped.
struct StageEnd {
    client: Client,
    token: NumberOrString,
    sent: bool,
}

impl StageEnd {
    async fn send(&mut self) {
        self.sent = true;
        send_progress(
            &self.client,
            &self.token,
            WorkDoneProgress::End(WorkDoneProgressEnd { message: None }),
        )
        .await;
    }
}

impl Drop for StageEnd {
    fn drop(&mut self) {
        if !self.sent {
            let (client, token) = (self.client.clone(), self.token.clone());
            tokio::spawn(async move {
                let end = WorkDoneProgressEnd {
                    message: Some("cancelled".into()),
                };
                send_progress(&client, &token, WorkDoneProgress::End(end)).await;
            });
        }
    }
}

async fn send_progress(client: &Client, token: &NumberOrString, value: WorkDoneProgress) {
    client
        .send_notification::<notification::Progress>(ProgressParams {
            token: token.clone(),
            value: ProgressParamsValue::WorkDone(value),
        })
        .await;
}

/// The client's `rerank` flag: on (the default) is the best reranker available.
fn rerank_flag(flag: Option<bool>) -> Rerank {
    if flag.unwrap_or(true) {
        Rerank::Best
    } else {
        Rerank::None
    }
}

fn internal(message: String) -> jsonrpc::Error {
    jsonrpc::Error {
        code: jsonrpc::ErrorCode::InternalError,
        message: message.into(),
        data: None,
    }
}

/// JSON settings (from the editor) as a TOML table, dropping nulls TOML cannot hold.
fn settings_table(value: &Value) -> Option<toml::Table> {
    fn clean(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => Some(Value::Object(
                m.iter()
                    .filter_map(|(k, v)| clean(v).map(|v| (k.clone(), v)))
                    .collect(),
            )),
            Value::Array(a) => Some(Value::Array(a.iter().filter_map(clean).collect())),
            other => Some(other.clone()),
        }
    }
    let v = clean(value.get("ragls").unwrap_or(value))?;
    serde_json::from_value::<toml::Table>(v).ok()
}

#[tower_lsp::async_trait]
impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let caps = &params.capabilities;
        let _ = self.flags.set(ClientFlags {
            work_done_progress: caps
                .window
                .as_ref()
                .and_then(|w| w.work_done_progress)
                .unwrap_or(false),
            watch_files_dynamically: caps
                .workspace
                .as_ref()
                .and_then(|w| w.did_change_watched_files.as_ref())
                .and_then(|d| d.dynamic_registration)
                .unwrap_or(false),
        });
        if let Some(options) = &params.initialization_options {
            match settings_table(options) {
                Some(table) => {
                    if let Err(e) = config::from_table(table.clone())
                        .map_err(crate::error::Error::Config)
                        .and_then(|c| c.validate().map(|_| c))
                    {
                        self.client
                            .show_message(
                                MessageType::ERROR,
                                format!("ragls: bad settings: {e}; using the defaults"),
                            )
                            .await;
                    } else if let (Ok(mut o), Ok(mut i)) =
                        (self.overrides.write(), self.init_options.write())
                    {
                        *i = Some(table.clone());
                        *o = Some(table);
                    }
                }
                None if !options.is_null() => {
                    self.client
                        .show_message(
                            MessageType::ERROR,
                            "ragls: initializationOptions must be an object; using the defaults",
                        )
                        .await;
                }
                None => {}
            }
        }
        let mut folders: Vec<Url> = params
            .workspace_folders
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.uri)
            .collect();
        #[allow(deprecated)]
        if folders.is_empty() {
            folders.extend(params.root_uri);
        }
        for uri in folders {
            self.add_folder(uri).await;
        }
        let file_filter = || FileOperationRegistrationOptions {
            filters: vec![FileOperationFilter {
                scheme: Some("file".into()),
                pattern: FileOperationPattern {
                    glob: "**/*".into(),
                    matches: None,
                    options: None,
                },
            }],
        };
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                        ..TextDocumentSyncOptions::default()
                    },
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![
                            CodeActionKind::SOURCE,
                            CodeActionKind::REFACTOR_REWRITE,
                        ]),
                        ..CodeActionOptions::default()
                    },
                )),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: COMMANDS.iter().map(|c| c.to_string()).collect(),
                    ..ExecuteCommandOptions::default()
                }),
                workspace_symbol_provider: Some(OneOf::Left(true)),
                workspace: Some(WorkspaceServerCapabilities {
                    workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                        supported: Some(true),
                        change_notifications: Some(OneOf::Left(true)),
                    }),
                    file_operations: Some(WorkspaceFileOperationsServerCapabilities {
                        will_rename: Some(file_filter()),
                        did_rename: Some(file_filter()),
                        did_delete: Some(file_filter()),
                        did_create: Some(file_filter()),
                        ..WorkspaceFileOperationsServerCapabilities::default()
                    }),
                }),
                ..ServerCapabilities::default()
            },
            server_info: Some(ServerInfo {
                name: "ragls".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.start_event_pump();
        self.register_watchers().await;
        let n = self.folders().len();
        self.log(
            false,
            format!(
                "ragls {} serving {n} workspace folder(s)",
                env!("CARGO_PKG_VERSION")
            ),
        )
        .await;
    }

    async fn shutdown(&self) -> Result<()> {
        let folders = self.folders();
        let _ = tokio::task::spawn_blocking(move || {
            for f in folders {
                f.shutdown(Duration::from_secs(20));
            }
        })
        .await;
        SHUT_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let d = params.text_document;
        self.docs
            .insert(d.uri.clone(), Document::new(d.text.clone(), d.version));
        self.index_buffer(&d.uri, Some(d.text)).await;
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let text = match self.docs.get_mut(&uri) {
            Some(mut doc) => doc
                .change(params.text_document.version, params.content_changes)
                .then(|| doc.text.clone()),
            None => {
                self.log(
                    false,
                    format!("didChange for {uri}, which is not open; ignored"),
                )
                .await;
                None
            }
        };
        if let Some(text) = text {
            self.index_buffer(&uri, Some(text)).await;
        }
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        // An open buffer is indexed already; a file saved without one is re-read.
        if !self.docs.contains_key(&params.text_document.uri) {
            if let Some((f, _)) = self.locate(&params.text_document.uri) {
                f.send(Command::Index { full: false });
            }
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        if self.docs.remove(&uri).is_some() {
            self.index_buffer(&uri, None).await;
        }
    }

    async fn did_change_watched_files(&self, params: DidChangeWatchedFilesParams) {
        let mut touched: Vec<Arc<Folder>> = Vec::new();
        for change in params.changes {
            if let Some((f, _)) = self.locate(&change.uri) {
                if !touched.iter().any(|t| Arc::ptr_eq(t, &f)) {
                    touched.push(f);
                }
            }
        }
        for f in touched {
            f.send(Command::Index { full: false });
        }
    }

    async fn will_rename_files(&self, _: RenameFilesParams) -> Result<Option<WorkspaceEdit>> {
        // Nothing to edit; the index follows once the rename happened (didRenameFiles).
        Ok(None)
    }

    async fn did_rename_files(&self, params: RenameFilesParams) {
        for rename in params.files {
            if let (Ok(old), Ok(new)) = (Url::parse(&rename.old_uri), Url::parse(&rename.new_uri)) {
                if let Some((_, doc)) = self.docs.remove(&old) {
                    // The buffer moves: the old path's overlay goes, the new path gets it.
                    let text = doc.text.clone();
                    self.docs.insert(new.clone(), doc);
                    self.index_buffer(&old, None).await;
                    self.index_buffer(&new, Some(text)).await;
                }
                if let Some((f, _)) = self.locate(&old) {
                    f.send(Command::Index { full: false });
                }
            }
        }
    }

    async fn did_delete_files(&self, params: DeleteFilesParams) {
        for file in params.files {
            if let Some((f, _)) = Url::parse(&file.uri).ok().and_then(|u| self.locate(&u)) {
                f.send(Command::Index { full: false });
            }
        }
    }

    async fn did_create_files(&self, params: CreateFilesParams) {
        for file in params.files {
            if let Some((f, _)) = Url::parse(&file.uri).ok().and_then(|u| self.locate(&u)) {
                f.send(Command::Index { full: false });
            }
        }
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let Some(table) = settings_table(&params.settings) else {
            if !params.settings.is_null() {
                self.client
                    .show_message(
                        MessageType::ERROR,
                        "ragls: settings must be an object; keeping the current ones",
                    )
                    .await;
            }
            return;
        };
        // The editor's settings layer on top of its initializationOptions.
        let mut merged = self
            .init_options
            .read()
            .ok()
            .and_then(|o| o.clone())
            .unwrap_or_default();
        config::deep_merge(&mut merged, table);
        // All folders accept the settings, or none changes.
        let mut changes = Vec::new();
        for f in self.folders() {
            match config::load(&f.root, Some(merged.clone())) {
                Ok(new) => changes.push((f, new)),
                Err(e) => {
                    self.client
                        .show_message(
                            MessageType::ERROR,
                            format!("ragls: bad settings: {e}; keeping the current ones"),
                        )
                        .await;
                    return;
                }
            }
        }
        for (f, new) in changes {
            if new != f.config() {
                f.reconfigure(new);
            }
        }
        if let Ok(mut o) = self.overrides.write() {
            *o = Some(merged);
        }
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        for removed in params.event.removed {
            let gone: Vec<Arc<Folder>> = match self.folders.write() {
                Ok(mut folders) => {
                    let (gone, keep): (Vec<_>, Vec<_>) =
                        folders.drain(..).partition(|f| f.uri == removed.uri);
                    *folders = keep;
                    gone
                }
                Err(_) => Vec::new(),
            };
            let _ = tokio::task::spawn_blocking(move || {
                gone.iter()
                    .for_each(|f| f.shutdown(Duration::from_secs(20)))
            })
            .await;
        }
        for added in params.event.added {
            self.add_folder(added.uri).await;
        }
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let p = params.text_document_position_params;
        self.hover_at(&p.text_document.uri, p.position).await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        self.code_actions(params).await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
        self.command(params).await
    }

    async fn symbol(
        &self,
        params: WorkspaceSymbolParams,
    ) -> Result<Option<Vec<SymbolInformation>>> {
        if params.query.trim().is_empty() {
            return Ok(Some(Vec::new()));
        }
        let hits = self
            .search_hits(params.query, 20, Rerank::Offline, None)
            .await?;
        #[allow(deprecated)]
        let symbols = hits
            .iter()
            .filter_map(|h| {
                let uri = Url::from_file_path(h.root.join(&h.chunk.path)).ok()?;
                Some(SymbolInformation {
                    name: if h.chunk.symbol.is_empty() {
                        format!("{}:{}", h.chunk.path, h.chunk.start_line)
                    } else {
                        h.chunk.symbol.clone()
                    },
                    kind: features::symbol_kind(&h.chunk.kind),
                    tags: None,
                    deprecated: None,
                    location: Location {
                        uri,
                        range: protocol::range_of(
                            h.chunk.start_line,
                            h.chunk.end_line,
                            &h.chunk.text,
                        ),
                    },
                    container_name: Some(h.chunk.path.clone()),
                })
            })
            .collect();
        Ok(Some(symbols))
    }
}
