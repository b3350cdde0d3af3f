//! The command line: `ragls index | search | ask | status`, the same engine as the server
//! without an editor. Output schemas and exit codes are PROTOCOL.md's ("CLI").
//!
//! This is the only layer that prints: results to stdout, progress and messages to
//! stderr (a progress bar only when stderr is a terminal).

use crate::answer;
use crate::ask::{self, AskIndex, AskSink, Question};
use crate::config::{self, Config};
use crate::engine::{self, Engine, IndexProgress, IndexReport, Rerank, SearchHit};
use crate::error::{Error, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod model;
mod output;
use model::*;
use output::*;

#[derive(Parser, Debug)]
#[command(
    name = "ragls",
    version,
    about = "Ask questions about your codebase; answers cite the code."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build or update the index of a workspace.
    Index {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// Start from an empty index (cached embeddings are reused).
        #[arg(long)]
        rebuild: bool,
        /// With a shared index: the ref to start from (default: the ref's own previous
        /// state), e.g. `--ref feature-x --base main`.
        #[arg(long, value_name = "REF")]
        base: Option<String>,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Find the code that matches a question (retrieval only).
    Search {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// How many results to return (1 to 100).
        #[arg(long, default_value_t = 10, value_parser = parse_top_k)]
        top_k: usize,
        /// Print results as JSON.
        #[arg(long)]
        json: bool,
        /// Batch mode: read `{"id", "query"}` lines from FILE, write one JSON line per query.
        #[arg(long, value_name = "FILE", conflicts_with = "query")]
        queries: Option<PathBuf>,
        /// Skip the reranker (fused order).
        #[arg(long)]
        no_rerank: bool,
        /// Say why each result ranked where it did: its lexical (BM25) and vector scores
        /// and ranks, fused score and rank, and the rerank figures (an `explain` object per
        /// result with --json or --queries).
        #[arg(long)]
        explain: bool,
        /// The question.
        #[arg(required_unless_present = "queries")]
        query: Option<String>,
    },
    /// Answer a question from the workspace, citing file locations.
    Ask {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// How many sources to use (1 to 100).
        #[arg(long, value_parser = parse_top_k)]
        top_k: Option<usize>,
        /// Print the rag/ask result as JSON.
        #[arg(long)]
        json: bool,
        /// The question.
        question: String,
    },
    /// Run the language server (LSP over stdin/stdout) for VS Code, Neovim and others.
    Serve {
        /// Speak LSP on stdin/stdout (the default, and the only transport).
        #[arg(long)]
        stdio: bool,
        #[command(flatten)]
        shared: SharedArgs,
    },
    /// Run the MCP server (Model Context Protocol over stdin/stdout) for coding agents.
    Mcp {
        #[command(flatten)]
        ws: WorkspaceArgs,
    },
    /// Measure retrieval quality on this workspace: recall@1/5/10, MRR@10, nDCG@10.
    Eval {
        #[command(flatten)]
        ws: WorkspaceArgs,
        /// A query set: lines {"id", "query", "gold": [{"path", "start_line"?, "end_line"?}]}.
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "generate",
            required_unless_present = "generate"
        )]
        queries: Option<PathBuf>,
        /// Generate N queries from the workspace's own doc comments (removed from a copy).
        #[arg(long, value_name = "N")]
        generate: Option<usize>,
        /// Also write the generated queries to FILE (to re-run them with --queries).
        #[arg(long, value_name = "FILE", requires = "generate")]
        save_queries: Option<PathBuf>,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
        // `--set KEY=VALUE` (repeatable) comes with the workspace arguments.
    },
    /// Show the state of a workspace's index.
    Status {
        #[command(flatten)]
        ws: WorkspaceArgs,
        #[arg(long)]
        json: bool,
    },
    /// Local embedding models: list the installed ones, download one.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelAction {
    /// The models in the cache ($XDG_CACHE_HOME/ragls/models).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Download a model from the Hugging Face hub ($HF_ENDPOINT) into the cache.
    Pull {
        /// The hub's name, e.g. sentence-transformers/all-MiniLM-L6-v2.
        name: String,
        /// A branch, tag or commit.
        #[arg(long, default_value = "main")]
        revision: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct WorkspaceArgs {
    /// The workspace folder.
    #[arg(long, short = 'w', default_value = ".")]
    pub workspace: PathBuf,
    /// Where the index lives (default: $XDG_CACHE_HOME/ragls/<workspace id>).
    #[arg(long, value_name = "DIR")]
    pub index_dir: Option<PathBuf>,
    /// A setting for this run, over the settings files (repeatable), e.g.
    /// `--set embedding.provider=local`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub shared: SharedArgs,
}

/// The shared team index: `--store URL` (setting `store.url`, or `RAGLS_STORE_URL`) and
/// `--ref NAME` (setting `store.ref`; default: the current git branch, else `main`).
#[derive(Args, Debug, Clone, Default)]
pub struct SharedArgs {
    /// A shared index: postgres://user@host:port/database (the password from PGPASSWORD,
    /// ~/.pgpass, or RAGLS_STORE_URL; never from a file in the repository).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// The ref (branch) of the shared index to index or to read.
    #[arg(long = "ref", value_name = "NAME")]
    pub ref_name: Option<String>,
}

impl SharedArgs {
    /// The flags as `--set` items (they are settings, given on the command line).
    fn as_set(&self) -> Vec<String> {
        let quoted = |v: &str| toml::Value::String(v.to_string()).to_string();
        let mut out = Vec::new();
        if let Some(url) = &self.store {
            out.push(format!("store.url={}", quoted(url)));
        }
        if let Some(r) = &self.ref_name {
            out.push(format!("store.ref={}", quoted(r)));
        }
        out
    }
}

impl WorkspaceArgs {
    /// `--set` items with `--store` and `--ref` among them.
    pub fn all_set(&self) -> Vec<String> {
        let mut set = self.set.clone();
        set.extend(self.shared.as_set());
        set
    }
}

/// `--set` arguments as a settings table: `a.b=v`, the value read as TOML (a number, a
/// boolean, a quoted string, an array) or else taken as a plain string.
pub fn set_overrides(set: &[String]) -> Result<Option<toml::Table>> {
    if set.is_empty() {
        return Ok(None);
    }
    let mut table = toml::Table::new();
    for item in set {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--set {item}: expected KEY=VALUE, e.g. --set embedding.provider=local"
            ))
        })?;
        let keys: Vec<&str> = key.trim().split('.').collect();
        if keys.iter().any(|k| k.is_empty()) {
            return Err(Error::Usage(format!("--set {item}: the key is empty")));
        }
        let value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        let mut nested = value;
        for k in keys.iter().rev() {
            let mut t = toml::Table::new();
            t.insert(k.to_string(), nested);
            nested = toml::Value::Table(t);
        }
        if let toml::Value::Table(t) = nested {
            config::deep_merge(&mut table, t);
        }
    }
    Ok(Some(table))
}

struct Resolved {
    root: PathBuf,
    config: Config,
    index_dir: PathBuf,
}

fn resolve(ws: &WorkspaceArgs) -> Result<Resolved> {
    let root = engine::workspace_root(&ws.workspace)?;
    let config = config::load(&root, set_overrides(&ws.all_set())?)?;
    let index_dir = match &ws.index_dir {
        Some(d) => d.clone(),
        None => engine::index_dir_for(&root, &config)?,
    };
    Ok(Resolved {
        root,
        config,
        index_dir,
    })
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Index {
            ws,
            rebuild,
            base,
            json,
        } => cmd_index(&ws, rebuild, base.as_deref(), json),
        Command::Search {
            ws,
            top_k,
            json,
            queries,
            no_rerank,
            explain,
            query,
        } => {
            // Check the queries file before any indexing work.
            let input = queries
                .as_ref()
                .map(|file| {
                    std::fs::File::open(file).map_err(|e| {
                        Error::Usage(format!(
                            "cannot read the queries file {}: {e}",
                            file.display()
                        ))
                    })
                })
                .transpose()?;
            let mut engine = open_for_search(&ws)?;
            match (queries, input) {
                (Some(file), Some(input)) => {
                    search_batch(&mut engine, &file, input, top_k, !no_rerank, explain)
                }
                _ => {
                    let query = query.unwrap_or_default();
                    let how = if no_rerank {
                        Rerank::None
                    } else {
                        Rerank::Best
                    };
                    let retrieval = engine.retrieve(&query, top_k, how)?;
                    if engine.shared_ref().is_some() {
                        // A shared index that went away: the results are local, say so.
                        for note in &retrieval.notes {
                            eprintln!("ragls: note: {note}");
                        }
                    }
                    print_hits(&retrieval.hits, json, explain)
                }
            }
        }
        Command::Ask {
            ws,
            top_k,
            json,
            question,
        } => {
            let engine = open_for_search(&ws)?;
            let top_k = top_k.unwrap_or(engine.config().rerank.top_k);
            let index: Arc<dyn AskIndex> = Arc::new(Mutex::new(engine));
            let question = Question {
                query: question.clone(),
                text: question,
                top_k,
                rerank: Rerank::Best,
                editor_context: None,
            };
            let mut sink = StdoutSink {
                json,
                streamed: false,
            };
            let result = crate::provider::blocking_runtime()?
                .block_on(ask::ask(&[index], &question, &mut sink))?
                .ok_or_else(|| crate::error::Error::Usage("the index is not ready yet".into()))?;
            let streamed = sink.streamed;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", to_json(&result)?).map_err(stdout_error)?;
                return Ok(());
            }
            if result.mode == answer::AnswerMode::Generated {
                // The text was streamed as it came; the citations follow, clickable.
                if !streamed {
                    write!(out, "{}", shown_text(&result.answer)).map_err(stdout_error)?;
                }
                writeln!(out, "\n").map_err(stdout_error)?;
                for c in &result.citations {
                    let symbol = c
                        .location
                        .symbol
                        .as_deref()
                        .map(|s| format!("  {}", shown(s)))
                        .unwrap_or_default();
                    writeln!(
                        out,
                        "[{}] {}:{}{symbol}",
                        c.n,
                        shown(&c.location.path),
                        c.location.start_line
                    )
                    .map_err(stdout_error)?;
                }
                if let Some(u) = &result.usage {
                    let cost = u.cost.map(|c| format!(", ${c:.5}")).unwrap_or_default();
                    eprintln!(
                        "ragls: {} prompt + {} completion tokens{cost}",
                        u.prompt_tokens, u.completion_tokens
                    );
                }
            } else {
                if streamed {
                    // Partial generated text is on stdout already: set the fallback apart.
                    writeln!(out, "\n\n{ASK_FALLBACK_SEPARATOR}\n").map_err(stdout_error)?;
                }
                writeln!(out, "{}", shown_text(result.answer.trim_end())).map_err(stdout_error)?;
            }
            Ok(())
        }
        Command::Serve { stdio: _, shared } => {
            // The editor's settings come per folder; the flags reach every folder's
            // settings through the environment, under what the editor sets.
            if let Some(url) = &shared.store {
                std::env::set_var(config::STORE_URL_ENV, url);
            }
            if let Some(r) = &shared.ref_name {
                std::env::set_var(config::STORE_REF_ENV, r);
            }
            crate::lsp::serve_stdio()
        }
        Command::Model { action } => cmd_model(action),
        Command::Eval {
            ws,
            queries,
            generate,
            save_queries,
            json,
        } => {
            let source = match (queries, generate) {
                (Some(file), _) => crate::eval::QuerySource::File(file),
                (None, Some(0)) => {
                    return Err(Error::Usage("--generate needs at least 1 query".into()))
                }
                (None, Some(max)) => crate::eval::QuerySource::Generate {
                    max,
                    save: save_queries,
                },
                (None, None) => {
                    return Err(Error::Usage(
                        "give --queries FILE.jsonl or --generate N".into(),
                    ))
                }
            };
            let report = crate::eval::run(&crate::eval::EvalOptions {
                workspace: ws.workspace,
                index_dir: ws.index_dir,
                source,
                set: ws.set,
            })?;
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", to_json(&report)?).map_err(stdout_error)?;
            } else {
                print_eval(&mut out, &report).map_err(stdout_error)?;
            }
            Ok(())
        }
        Command::Mcp { ws } => crate::mcp::serve_stdio(
            &ws.workspace,
            ws.index_dir.clone(),
            set_overrides(&ws.all_set())?,
        ),
        Command::Status { ws, json } => {
            let r = resolve(&ws)?;
            let status = match Engine::open_for_reading(
                &r.root,
                r.config.clone(),
                r.index_dir.clone(),
            )? {
                Some(engine) => engine.status()?,
                None => {
                    let mut s =
                        engine::Status::empty(&r.root, &r.index_dir, engine::IndexState::Error);
                    s.last_error = Some(format!(
                        "no index for this workspace with the current settings; run `ragls index --workspace {}`",
                        r.root.display()
                    ));
                    s
                }
            };
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", to_json(&status)?).map_err(stdout_error)?;
            } else {
                print_status(&mut out, &status).map_err(stdout_error)?;
            }
            Ok(())
        }
    }
}

/// Printed by `ask` between generated text that broke off and the extractive answer.
pub const ASK_FALLBACK_SEPARATOR: &str =
    "---- the generated answer broke off; the extractive answer follows ----";

/// A locked index explained: a holder that is not indexing is an editor's server (it
/// keeps the lock while it runs, and the index up to date), so waiting would not help.
fn explain_lock(err: Error) -> Error {
    let Error::IndexLocked(dir) = &err else {
        return err;
    };
    let idle = crate::store::Store::open_existing(dir)
        .ok()
        .flatten()
        .and_then(|s| s.meta("indexing").ok().flatten())
        .is_some_and(|v| v == "0");
    if !idle {
        return err;
    }
    Error::Usage(format!(
        "the index at {} is in use by a running ragls server (an editor has this workspace open), which keeps it up to date itself; `ragls search` and `ragls ask` use it as it is. To re-index now, use the editor's reindex command, or close the editor and run `ragls index` again",
        dir.display()
    ))
}

/// `--top-k`: the same range as the server's `topK`, refused (not capped) outside it.
fn parse_top_k(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(k) if (1..=config::MAX_TOP_K).contains(&k) => Ok(k),
        _ => Err(format!(
            "must be a whole number between 1 and {} (the server's topK limit too)",
            config::MAX_TOP_K
        )),
    }
}

fn cmd_index(ws: &WorkspaceArgs, rebuild: bool, base: Option<&str>, json: bool) -> Result<()> {
    let r = resolve(ws)?;
    if r.config.store.is_shared() {
        if rebuild {
            return Err(Error::Usage(
                "--rebuild is for the local index; a shared ref is rebuilt from nothing by indexing it under a new --ref".into(),
            ));
        }
        return cmd_index_shared(&r, base, json);
    }
    if base.is_some() {
        return Err(Error::Usage(
            "--base needs a shared index (--store URL or store.url)".into(),
        ));
    }
    let open_and_index = || -> Result<(Engine, engine::IndexReport)> {
        let mut engine = Engine::open_for_writing(&r.root, r.config.clone(), r.index_dir.clone())
            .map_err(explain_lock)?;
        let mut report = engine.index(rebuild, &BarProgress::new())?;
        // `ragls index` is an explicit request for a whole index: a local model's vectors
        // are embedded now, with a bar, batch by committed batch (an interrupted run keeps
        // what it did). Searches and the server never wait for them.
        if engine.embeds_in_background() && report.degraded.is_none() {
            let started = std::time::Instant::now();
            report.embedded += engine.embed_backlog(&ModelBar::new())?;
            report.embed_ms += started.elapsed().as_millis() as u64;
            report.model_vectors = engine.model_vectors()?;
            report.elapsed_ms += started.elapsed().as_millis() as u64;
        }
        Ok((engine, report))
    };
    // A damaged database (its header, or garbage in interior pages that only a query
    // meets) is set aside by `--rebuild`, and the index built afresh.
    let (engine, report) = match open_and_index() {
        Err(Error::IndexCorrupt { reason, .. }) if rebuild => {
            let aside = crate::store::Store::set_aside(&r.index_dir)?;
            eprintln!(
                "ragls: the index in {} could not be read ({reason}); moved it to {} and rebuilding",
                r.index_dir.display(),
                aside.display()
            );
            open_and_index()?
        }
        other => other?,
    };
    if json {
        writeln!(std::io::stdout().lock(), "{}", to_json(&report)?).map_err(stdout_error)?;
    }
    eprintln!("{}", summary(&r.root, &report, &engine));
    warn_failed(&report);
    Ok(())
}

/// `ragls index --store URL`: builds or updates the workspace's ref in the shared index.
fn cmd_index_shared(r: &Resolved, base: Option<&str>, json: bool) -> Result<()> {
    // The writer remembers its workspace's content hashes in the index folder.
    let mut config = r.config.clone();
    config.index.dir = r.index_dir.to_string_lossy().into_owned();
    let report = engine::index_shared(&r.root, &config, base, &BarProgress::new())?;
    if json {
        writeln!(std::io::stdout().lock(), "{}", to_json(&report)?).map_err(stdout_error)?;
    }
    let from = report
        .base
        .as_deref()
        .map(|b| format!(" from {b}"))
        .unwrap_or_else(|| " (first build)".into());
    eprintln!(
        "ragls: shared index {}@{}{from}: {} files, {} unchanged, {} chunked, {} reused, {} removed; {} chunks added, {} embedded, {} from the cache{}, in {} ms",
        report.repo,
        report.ref_name,
        report.files_seen,
        report.files_unchanged,
        report.files_chunked,
        report.files_reused,
        report.files_removed,
        report.chunks_added,
        report.embedded,
        report.cached,
        if report.updated { "" } else { "; the ref was up to date" },
        report.elapsed_ms
    );
    Ok(())
}

/// Opens the index for searching; indexes first when the workspace has none yet (or one
/// built by another embedder), so `ragls ask` works on a fresh machine in one command.
/// With a shared index the local overlay (the files that differ from the ref) is brought
/// up to date first; when another process is doing that, this one reads it as it is.
fn open_for_search(ws: &WorkspaceArgs) -> Result<Engine> {
    let r = resolve(ws)?;
    if r.config.store.is_shared() {
        // Another process bringing the overlay up to date holds its lock for a moment:
        // read what it has, or wait for it to finish a first one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            match Engine::open_for_writing(&r.root, r.config.clone(), r.index_dir.clone()) {
                Ok(mut engine) => {
                    // The overlay is small: no progress bar.
                    engine.index(false, &engine::NoProgress)?;
                    if let Some(note) = engine.shared_note() {
                        eprintln!("ragls: note: {note}");
                    }
                    return Ok(engine);
                }
                Err(Error::IndexLocked(dir)) => {
                    if let Some(engine) =
                        Engine::open_for_reading(&r.root, r.config.clone(), r.index_dir.clone())?
                    {
                        return Ok(engine);
                    }
                    if std::time::Instant::now() > deadline {
                        return Err(Error::IndexLocked(dir));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
            }
        }
    }
    if let Some(engine) = Engine::open_for_reading(&r.root, r.config.clone(), r.index_dir.clone())?
    {
        if engine.interrupted()? {
            // Answer from what was committed, and say what is missing.
            eprintln!(
                "ragls: note: the index of {} is incomplete: the last index run was interrupted before it finished; run `ragls index` to finish it",
                r.root.display()
            );
        }
        return Ok(engine);
    }
    eprintln!(
        "ragls: no index for {} with the current settings yet (none, or one built by another embedder); indexing it first",
        r.root.display()
    );
    let mut engine =
        Engine::open_for_writing(&r.root, r.config, r.index_dir).map_err(explain_lock)?;
    let report = engine.index(false, &BarProgress::new())?;
    eprintln!("{}", summary(&r.root, &report, &engine));
    warn_failed(&report);
    Ok(engine)
}

fn search_batch(
    engine: &mut Engine,
    file: &Path,
    input: std::fs::File,
    top_k: usize,
    rerank: bool,
    explain: bool,
) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in std::io::BufReader::new(input).lines().enumerate() {
        let line =
            line.map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
        if line.trim().is_empty() {
            continue;
        }
        let q: serde_json::Value = serde_json::from_str(&line).map_err(|e| {
            Error::Usage(format!(
                "{}:{}: not a JSON object: {e}",
                file.display(),
                n + 1
            ))
        })?;
        let (Some(id), Some(query)) = (q.get("id"), q.get("query").and_then(|v| v.as_str())) else {
            return Err(Error::Usage(format!(
                "{}:{}: each line needs \"id\" and \"query\"",
                file.display(),
                n + 1
            )));
        };
        let hits = engine.search(query, top_k, rerank)?;
        let line = serde_json::json!({ "id": id, "results": hits.iter().map(|h| hit_json(h, explain)).collect::<Vec<_>>() });
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_and_answers_are_escaped_when_printed() {
        assert_eq!(shown("src/a.rs"), "src/a.rs");
        assert_eq!(shown("evil\n\u{1b}[2Jname.rs"), "evil\\n\\u{1b}[2Jname.rs");
        assert_eq!(
            shown_text("a\n\tb\u{1b}]0;x\u{7}"),
            "a\n\tb\\u{1b}]0;x\\u{7}"
        );
    }

    #[test]
    fn top_k_is_refused_outside_the_servers_range() {
        assert_eq!(parse_top_k("7"), Ok(7));
        assert_eq!(parse_top_k("100"), Ok(100));
        for bad in ["0", "101", "-1", "1e3", "x"] {
            let err = parse_top_k(bad).unwrap_err();
            assert!(err.contains("between 1 and 100"), "{bad}: {err}");
        }
    }
}
