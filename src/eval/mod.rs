//! `ragls eval`: retrieval quality on the user's own code. Either a hand-made query set
//! (`--queries FILE.jsonl`, lines `{id, query, gold: [{path, start_line?, end_line?}]}`)
//! against the workspace, or a set generated from the workspace itself (`--generate N`:
//! doc comments removed from a temporary copy, see `generate`), indexed in a temporary
//! index and scored — so settings (`--set retrieve.vector_weight=0.3`) can be compared on
//! one's own code in one command. Figures: recall@1/5/10, MRR@10, nDCG@10 at chunk and at
//! file level (`metrics`).
//!
//! This module runs the steps and returns a report; it does not print (the CLI does).

pub mod generate;
pub mod metrics;

use crate::config;
use crate::engine::{self, Engine, NoProgress};
use crate::error::{Error, Result};
use metrics::{Gold, Ranked, Scores};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One query of a set.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub id: String,
    pub query: String,
    pub gold: Vec<Gold>,
}

/// What to evaluate.
pub struct EvalOptions {
    pub workspace: PathBuf,
    pub index_dir: Option<PathBuf>,
    pub source: QuerySource,
    /// `key=value` settings over the workspace's (TOML values; bare words are strings).
    pub set: Vec<String>,
}

pub enum QuerySource {
    File(PathBuf),
    Generate { max: usize, save: Option<PathBuf> },
}

/// The figures, and what they were measured on.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalReport {
    pub queries: usize,
    /// "file" (a query set) or "generated".
    pub source: String,
    pub chunks: u64,
    pub chunk: Scores,
    pub file: Scores,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

/// Parses `--set key=value` items into a settings table (`a.b=1` -> `[a] b = 1`).
pub fn overrides(items: &[String]) -> Result<Option<toml::Table>> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut table = toml::Table::new();
    for item in items {
        let Some((key, raw)) = item.split_once('=') else {
            return Err(Error::Usage(format!(
                "--set {item}: expected key=value, e.g. --set retrieve.vector_weight=0.3"
            )));
        };
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let parts: Vec<&str> = key.trim().split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(Error::Usage(format!(
                "--set {item}: the key must be a setting name such as retrieve.vector_weight"
            )));
        }
        let mut at = &mut table;
        for p in &parts[..parts.len() - 1] {
            let next = at
                .entry(p.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            at = match next {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(Error::Usage(format!(
                        "--set {item}: {p} is a value, not a section"
                    )))
                }
            };
        }
        at.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(Some(table))
}

/// Reads a query set: one JSON object per line (blank lines skipped).
pub fn read_queries(file: &Path) -> Result<Vec<Query>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        Error::Usage(format!(
            "cannot read the queries file {}: {e}",
            file.display()
        ))
    })?;
    parse_queries(&text)
        .map_err(|(line, why)| Error::Usage(format!("{}:{line}: {why}", file.display())))
}

/// Parses query lines; an error is (line number, what is wrong).
pub fn parse_queries(text: &str) -> std::result::Result<Vec<Query>, (usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| (n + 1, why.to_string());
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(&format!("not a JSON object: {e}")))?;
        let id = match v.get("id") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(x)) => x.to_string(),
            _ => return Err(bad("each line needs an \"id\" (a string or a number)")),
        };
        let query = v
            .get("query")
            .and_then(|q| q.as_str())
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| bad("each line needs a non-empty \"query\""))?
            .to_string();
        let gold: Vec<Gold> = v
            .get("gold")
            .cloned()
            .and_then(|g| serde_json::from_value(g).ok())
            .filter(|g: &Vec<Gold>| !g.is_empty())
            .ok_or_else(|| {
                bad("each line needs \"gold\": [{\"path\", \"start_line\"?, \"end_line\"?}, ...]")
            })?;
        out.push(Query { id, query, gold });
    }
    Ok(out)
}

/// Runs an evaluation.
pub fn run(opts: &EvalOptions) -> Result<EvalReport> {
    let root = engine::workspace_root(&opts.workspace)?;
    let overrides = overrides(&opts.set)?;
    let config = config::load(&root, overrides.clone())?;
    match &opts.source {
        QuerySource::File(file) => {
            let queries = read_queries(file)?;
            // The workspace's own index, unless settings change: then a temporary one,
            // so an experiment never rebuilds the user's index.
            let scratch = overrides.is_some().then(Scratch::new).transpose()?;
            let index_dir = match (&scratch, &opts.index_dir) {
                (Some(s), _) => s.path.join("index"),
                (None, Some(d)) => d.clone(),
                (None, None) => engine::index_dir_for(&root, &config)?,
            };
            let mut engine = open_indexed(&root, config, index_dir)?;
            score(&mut engine, &queries, "file", &opts.set)
        }
        QuerySource::Generate { max, save } => {
            let scratch = Scratch::new()?;
            let copy = scratch.path.join("workspace");
            let generated = generate::copy_stripped(&root, &copy, *max).map_err(|e| {
                Error::io(
                    format!("cannot copy {} for the evaluation", root.display()),
                    e,
                )
            })?;
            if generated.is_empty() {
                return Err(Error::Usage(format!(
                    "no documented Rust or Python function with a doc sentence of four words or more in {}; write a queries file and use --queries",
                    root.display()
                )));
            }
            let base = root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "ws".into());
            let queries: Vec<Query> = generated
                .iter()
                .enumerate()
                .map(|(i, g)| Query {
                    id: format!("{base}-{i:04}"),
                    query: g.query.clone(),
                    gold: vec![g.gold.clone()],
                })
                .collect();
            if let Some(file) = save {
                save_queries(file, &queries, &generated)?;
            }
            let copy = engine::workspace_root(&copy)?;
            let mut engine = open_indexed(&copy, config, scratch.path.join("index"))?;
            score(&mut engine, &queries, "generated", &opts.set)
        }
    }
}

fn save_queries(file: &Path, queries: &[Query], generated: &[generate::GenQuery]) -> Result<()> {
    let mut text = String::new();
    for (q, g) in queries.iter().zip(generated) {
        let line =
            serde_json::json!({ "id": q.id, "query": q.query, "gold": q.gold, "symbol": g.symbol });
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(file, text)
        .map_err(|e| Error::io(format!("cannot write the queries to {}", file.display()), e))
}

/// Brings the index of `root` up to date (or reads it while another process writes).
fn open_indexed(root: &Path, config: config::Config, index_dir: PathBuf) -> Result<Engine> {
    match Engine::open_for_writing(root, config.clone(), index_dir.clone()) {
        Ok(mut engine) => {
            engine.index(false, &NoProgress)?;
            // Measured with every vector a local model would eventually give, not with
            // whatever its background pass has reached.
            engine.embed_backlog(&crate::engine::NoModelProgress)?;
            Ok(engine)
        }
        Err(Error::IndexLocked(_)) => Engine::open_for_reading(root, config, index_dir.clone())?
            .ok_or_else(|| {
                Error::Usage(format!(
                    "the index in {} is being built by another ragls process; run ragls eval again when it is done",
                    index_dir.display()
                ))
            }),
        Err(e) => Err(e),
    }
}

fn score(
    engine: &mut Engine,
    queries: &[Query],
    source: &str,
    set: &[String],
) -> Result<EvalReport> {
    let mut chunk_ranks = Vec::with_capacity(queries.len());
    let mut file_ranks = Vec::with_capacity(queries.len());
    for q in queries {
        let hits = engine.search(&q.query, metrics::K, true)?;
        let ranked: Vec<Ranked> = hits
            .iter()
            .map(|h| Ranked {
                path: h.chunk.path.clone(),
                start_line: h.chunk.start_line,
                end_line: h.chunk.end_line,
            })
            .collect();
        chunk_ranks.push(metrics::chunk_rank(&ranked, &q.gold));
        file_ranks.push(metrics::file_rank(&ranked, &q.gold));
    }
    Ok(EvalReport {
        queries: queries.len(),
        source: source.into(),
        chunks: engine.chunk_count()?,
        chunk: metrics::scores(&chunk_ranks),
        file: metrics::scores(&file_ranks),
        settings: set.to_vec(),
    })
}

/// A temporary folder, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("ragls-eval-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| {
            Error::io(
                format!("cannot create a temporary folder {}", path.display()),
                e,
            )
        })?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_overrides_nest_and_parse_values() {
        let t = overrides(&[
            "retrieve.vector_weight=0.3".into(),
            "retrieve.fusion=rrf".into(),
            "rerank.enabled=false".into(),
        ])
        .expect("valid")
        .expect("some");
        assert_eq!(t["retrieve"]["vector_weight"].as_float(), Some(0.3));
        assert_eq!(t["retrieve"]["fusion"].as_str(), Some("rrf"));
        assert_eq!(t["rerank"]["enabled"].as_bool(), Some(false));
        assert!(overrides(&["novalue".into()]).is_err());
        assert!(overrides(&[".x=1".into()]).is_err());
        assert_eq!(overrides(&[]).expect("valid"), None);
    }

    #[test]
    fn query_lines_are_checked() {
        let ok =
            parse_queries("{\"id\": 1, \"query\": \"q\", \"gold\": [{\"path\": \"a.rs\"}]}\n\n")
                .expect("valid");
        assert_eq!(ok[0].id, "1");
        assert_eq!(ok[0].gold[0].start_line, None);
        assert_eq!(
            parse_queries("{\"id\": \"a\", \"query\": \"q\"}")
                .unwrap_err()
                .0,
            1
        );
        assert!(parse_queries("x")
            .unwrap_err()
            .1
            .starts_with("not a JSON object"));
    }
}
