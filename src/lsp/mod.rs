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

mod actions;
mod documents;
mod features;
mod folder;
mod hover;
mod progress;
mod protocol;
mod requests;
mod settings;
mod transport;

use crate::ask::{self, AskIndex, AskSink, Question, Stage};
use crate::config::{self, Config};
use crate::retrieve::{Rerank, Retrieval, SearchHit};
use crate::workspace;
use actions::COMMANDS;
use dashmap::DashMap;
use documents::Document;
use folder::{Command, Folder, FolderEvent};
use progress::send_progress;
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
        let (stdin, stdout) =
            transport::filtered(tokio::io::stdin(), crate::stdio::protocol_stdout());
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
    hover_cache: Arc<DashMap<(String, crate::store::TextHash), String>>,
    /// Explanations being generated, so a second hover does not start another.
    hover_inflight: Arc<dashmap::DashSet<(String, crate::store::TextHash)>>,
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
}

fn internal(message: String) -> jsonrpc::Error {
    jsonrpc::Error {
        code: jsonrpc::ErrorCode::InternalError,
        message: message.into(),
        data: None,
    }
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
            match settings::settings_table(options) {
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
                            CodeActionKind::new(actions::RAGLS_ACTION_KIND),
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
        let Some(table) = settings::settings_table(&params.settings) else {
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
        let init = self.init_options.read().ok().and_then(|o| o.clone());
        let merged = settings::layered(init, table);
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
                    kind: features::symbol_kind(h.chunk.kind),
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
