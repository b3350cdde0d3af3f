//! `ragls mcp`: a Model Context Protocol server over stdio (on `rmcp`, the official Rust
//! SDK) for coding agents, on the same index as the editor and the CLI.
//!
//! The front only translates: a tool call's arguments are checked (`tools`), the engine
//! is called through the one adapter (`adapter`), and the result is rendered compactly
//! (`tools`) so an agent's context is not wasted. `read_code` reads the disk inside the
//! workspace only (`read`). Bad arguments come back as tool errors (`isError: true`)
//! saying what to fix; nothing the client sends makes the server exit. stdout carries only
//! MCP JSON-RPC: everything else goes to stderr. Not for: retrieval or answer logic.

mod adapter;
pub mod read;
pub mod tools;

use crate::ask::{self, AskIndex, Question, Quiet};
use crate::config;
use crate::engine::Rerank;
use crate::error::{Error, Result};
use adapter::{IndexProgressState, RunEvent, Workspace};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ProgressToken,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, Peer, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tools::Call;

const INSTRUCTIONS: &str = "ragls indexes this workspace's code (syntax-aware chunks, hybrid lexical + vector search). \
Use search_code to find where something is implemented, read_code to read around a hit, related_code for code \
related to a location, ask for an answer with [n] citations. Results are path:start-end locations, 1-based lines.";

/// Runs the MCP server on stdin/stdout for the workspace at `workspace` until the client
/// closes stdin.
pub fn serve_stdio(
    workspace: &Path,
    index_dir: Option<PathBuf>,
    overrides: Option<toml::Table>,
) -> Result<()> {
    let root = crate::engine::workspace_root(workspace)?;
    let config = config::load(&root, overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    let stdout = crate::stdio::protocol_stdout();
    runtime.block_on(async move {
        let ws = Workspace::open(&root, config, index_dir)?;
        let server = McpServer { ws: ws.clone() };
        let running = server
            .serve((tokio::io::stdin(), stdout))
            .await
            .map_err(|e| Error::Other(format!("the MCP client did not initialize: {e}")))?;
        let _ = running.waiting().await;
        Ok::<(), Error>(())
    })?;
    // The indexer thread saves its work per batch; don't wait for a run in progress.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// A tool's output: text for the model, and the same as JSON (`structuredContent`).
type Rendered = (String, Option<Value>);

#[derive(Clone)]
struct McpServer {
    ws: Arc<Workspace>,
}

fn text_result(text: String, structured: Option<Value>) -> CallToolResponse {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = structured;
    result.into()
}

fn error_result(message: String) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message)]).into()
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("ragls", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, McpError> {
        let tools = tools::specs()
            .into_iter()
            .map(|s| {
                let schema = match s.schema {
                    Value::Object(map) => map,
                    _ => serde_json::Map::new(),
                };
                Tool::new(s.name, s.description, Arc::new(schema)).with_annotations(
                    ToolAnnotations::new()
                        .read_only(s.read_only)
                        .destructive(false)
                        .idempotent(true),
                )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, McpError> {
        let call = match tools::parse(&request.name, request.arguments.as_ref()) {
            Ok(call) => call,
            Err(message) => return Ok(error_result(message)),
        };
        if let Call::Reindex { full } = call {
            return Ok(self.reindex(full, context).await);
        }
        let token = context.meta.get_progress_token();
        let mut progress = self.ws.watch_progress();
        let waited = std::time::Instant::now();
        loop {
            return Ok(match self.attempt(&call).await {
                Ok(Some((text, structured))) => text_result(text, structured),
                Ok(None) => {
                    // A cold start: nothing is committed yet. Wait for the indexer's first
                    // batch (reporting its progress), then answer from what it holds.
                    if self.ws.progress().running && waited.elapsed() < FIRST_BATCH_WAIT {
                        let change =
                            tokio::time::timeout(Duration::from_millis(500), progress.changed());
                        if let Ok(Ok(())) = change.await {
                            let p = *progress.borrow_and_update();
                            notify_progress(&context.peer, token.as_ref(), p).await;
                        }
                        continue;
                    }
                    error_result(
                        "nothing is indexed yet: the index is being built; try again in a few seconds (index_status shows progress)".into(),
                    )
                }
                Err(message) => error_result(message),
            });
        }
    }
}

impl McpServer {
    /// One try at a call: `Ok(None)` while nothing is indexed yet.
    async fn attempt(&self, call: &Call) -> std::result::Result<Option<Rendered>, String> {
        if let Call::Ask { question } = call {
            // The one ask pipeline, as the CLI and the editor use it.
            let index: Arc<dyn AskIndex> = self.ws.clone();
            let q = Question {
                text: question.clone(),
                query: question.clone(),
                top_k: self.ws.config().rerank.top_k,
                rerank: Rerank::Best,
                editor_context: None,
            };
            let Some(result) = ask::ask(&[index], &q, &mut Quiet)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            let notes: Vec<String> = building_note(&self.ws).into_iter().collect();
            let (text, json) = tools::render_answer(&result, &notes);
            return Ok(Some((text, Some(json))));
        }
        let ws = self.ws.clone();
        let call = call.clone();
        match tokio::task::spawn_blocking(move || run_call(&ws, call)).await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("the tool failed unexpectedly ({e}); try again")),
        }
    }
}

/// Says that results come from a partial index, while the index is being built.
fn building_note(ws: &Workspace) -> Option<String> {
    let p = ws.progress();
    p.running.then(|| {
        format!(
            "the index is being built ({}/{} files so far); results come from what is indexed already",
            p.done, p.total
        )
    })
}

/// How long a call made before anything is indexed waits for the first batch.
const FIRST_BATCH_WAIT: Duration = Duration::from_secs(30);

/// One `notifications/progress` for a call that asked for them (a `progressToken`).
async fn notify_progress(
    peer: &Peer<RoleServer>,
    token: Option<&ProgressToken>,
    p: IndexProgressState,
) {
    let Some(token) = token else { return };
    if !(p.running && p.total > 0) {
        return;
    }
    let note = ProgressNotificationParam::new(token.clone(), p.done as f64)
        .with_total(p.total as f64)
        .with_message(format!("indexing: {}/{} files", p.done, p.total));
    let _ = peer.notify_progress(note).await;
}

impl McpServer {
    /// Starts an index run and waits for it, sending progress notifications when the
    /// call asked for them (a `progressToken`).
    async fn reindex(&self, full: bool, context: RequestContext<RoleServer>) -> CallToolResponse {
        let token = context.meta.get_progress_token();
        let mut events = self.ws.reindex(full);
        let outcome = loop {
            match events.recv().await {
                Some(RunEvent::Progress { done, total }) => {
                    let p = IndexProgressState {
                        running: true,
                        done,
                        total,
                        runs: 0,
                    };
                    notify_progress(&context.peer, token.as_ref(), p).await;
                }
                Some(RunEvent::Done(outcome)) => break Some(outcome),
                None => break None,
            }
        };
        match outcome {
            Some(Ok(report)) => {
                let text = format!(
                    "index up to date: {} files seen, {} new or changed, {} removed, {} unchanged; {} chunks added, {} removed{}{}",
                    report.files_seen,
                    report.files_changed,
                    report.files_removed,
                    report.files_unchanged,
                    report.chunks_added,
                    report.chunks_removed,
                    if report.failed.is_empty() {
                        String::new()
                    } else {
                        format!("; {} files could not be read", report.failed.len())
                    },
                    report
                        .degraded
                        .as_deref()
                        .map(|d| format!("; degraded: {d}"))
                        .unwrap_or_default()
                );
                text_result(text, serde_json::to_value(&report).ok())
            }
            Some(Err(message)) => error_result(message),
            None => error_result("the indexer stopped; restart the MCP server".into()),
        }
    }
}

/// Runs one (checked) call against the workspace: text for the model and the same as
/// JSON, `None` while nothing is indexed yet, or the message of a tool error.
fn run_call(ws: &Workspace, call: Call) -> std::result::Result<Option<Rendered>, String> {
    let engine_error = |e: Error| e.to_string();
    let building = || building_note(ws);
    let snippet_lines = ws.config().mcp.snippet_lines;
    match call {
        Call::Search {
            query,
            top_k,
            path_glob,
            language,
            explain,
        } => {
            let filtered = path_glob.is_some() || language.is_some();
            let fetch = if filtered {
                (top_k * 10).max(200)
            } else {
                top_k
            };
            let Some(retrieval) = ws.search(&query, fetch).map_err(engine_error)? else {
                return Ok(None);
            };
            let hits: Vec<_> = retrieval
                .hits
                .iter()
                .filter(|h| tools::keeps(h, path_glob.as_ref(), language))
                .take(top_k)
                .collect();
            let mut notes = retrieval.notes.clone();
            notes.extend(building());
            let (text, json) = tools::render_hits(&hits, snippet_lines, &notes, explain);
            Ok(Some((text, Some(json))))
        }
        Call::Read {
            path,
            start_line,
            end_line,
        } => {
            let config = ws.config();
            let (file, rel) = read::resolve(ws.root(), &path, config.index.index_secrets)?;
            let excerpt =
                read::read_lines(&file, &rel, start_line, end_line, config.mcp.read_max_bytes)?;
            let json = json!({
                "path": excerpt.path,
                "start_line": excerpt.start_line,
                "end_line": excerpt.end_line,
                "total_lines": excerpt.total_lines,
                "next_line": excerpt.next_line,
            });
            Ok(Some((excerpt.render(), Some(json))))
        }
        Call::Related { path, line, top_k } => {
            let (_, rel) = read::resolve(ws.root(), &path, ws.config().index.index_secrets)?;
            let Some(chunk) = ws.chunk_at(&rel, line).map_err(engine_error)? else {
                return Err(format!(
                    "no indexed code at {rel}:{line} (the file is not indexed, or the line is past its end); index_status shows what is indexed"
                ));
            };
            let body: String = chunk.text.chars().take(1500).collect();
            let query = format!("{} {} {body}", chunk.name, chunk.symbol);
            let Some(retrieval) = ws.search(&query, top_k + 1).map_err(engine_error)? else {
                return Ok(None);
            };
            let hits: Vec<_> = retrieval
                .hits
                .iter()
                .filter(|h| h.chunk.id != chunk.id)
                .take(top_k)
                .collect();
            let mut notes = vec![format!(
                "related to {}:{}-{} {}",
                chunk.path, chunk.start_line, chunk.end_line, chunk.symbol
            )];
            notes.extend(retrieval.notes.iter().cloned());
            let (text, json) = tools::render_hits(&hits, snippet_lines, &notes, false);
            Ok(Some((text, Some(json))))
        }
        Call::Status => {
            let status = ws.status().map_err(engine_error)?;
            let mut json = serde_json::to_value(&status).map_err(|e| e.to_string())?;
            if let Some(note) = ws.writer_note() {
                json["note"] = json!(note);
            }
            Ok(Some((json.to_string(), Some(json))))
        }
        Call::Ask { .. } | Call::Reindex { .. } => {
            Err("this tool is handled by the server, not here".into())
        }
    }
}
