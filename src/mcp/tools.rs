//! The MCP tools: their names, descriptions (written for a model), JSON schemas, the
//! checking of a call's arguments into a typed [`Call`], and the compact rendering of
//! results. Pure: no engine, no I/O, so every message an agent can get is unit-tested.
//!
//! A bad argument is a message saying what to fix (the server returns it as a tool
//! error, `isError: true`), never a protocol error and never a crash.

use crate::answer::{AnswerMode, AskResult};
use crate::chunk::Language;
use crate::retrieve::SearchHit;
use serde_json::{json, Map, Value};

/// Largest `top_k` a search may ask for.
pub const MAX_TOP_K: usize = 50;
pub const DEFAULT_TOP_K: usize = 10;
/// Languages a `language` filter may name (the chunker's names).
pub const LANGUAGES: &[&str] = &[
    "rust",
    "python",
    "javascript",
    "typescript",
    "tsx",
    "go",
    "java",
    "c",
    "cpp",
    "markdown",
    "text",
];
/// Longest query or question accepted, in characters.
const MAX_QUERY_CHARS: usize = 2000;

/// A checked tool call.
#[derive(Clone, Debug)]
pub enum Call {
    Search {
        query: String,
        top_k: usize,
        path_glob: Option<globset::GlobMatcher>,
        language: Option<Language>,
        /// Say why each result ranked where it did.
        explain: bool,
    },
    Ask {
        question: String,
    },
    Read {
        path: String,
        start_line: Option<u32>,
        end_line: Option<u32>,
    },
    Related {
        path: String,
        line: u32,
        top_k: usize,
    },
    Status,
    Reindex {
        full: bool,
    },
}

/// One tool as `tools/list` shows it: name, description, input schema.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Value,
    pub read_only: bool,
}

/// The tools, in the order `tools/list` gives them.
pub fn specs() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "search_code",
            description: "Search this workspace's code by meaning and by name (hybrid BM25 + vector search over syntax-aware chunks, reranked). Use it first to find where something is implemented or defined; ask in plain words or with identifiers. Returns the best chunks, best first: path:start_line-end_line, symbol path, kind, score, and a short snippet. Read more of a hit with read_code.",
            schema: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to find, e.g. \"where are failed requests retried\" or \"parse_http_request\"."},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": DEFAULT_TOP_K, "description": "How many results (1-50)."},
                    "path_glob": {"type": "string", "description": "Only files matching this glob, relative to the workspace root, e.g. \"src/**/*.rs\" or \"**/tests/**\"."},
                    "language": {"type": "string", "enum": LANGUAGES, "description": "Only chunks in this language."},
                    "explain": {"type": "boolean", "default": false, "description": "Also say why each result ranked where it did: BM25 and vector score and rank, fused score and rank, rerank score. For debugging a search; costs tokens."}
                },
                "required": ["query"],
                "additionalProperties": false
            }),
            read_only: true,
        },
        ToolSpec {
            name: "ask",
            description: "Answer a question about this workspace from its code. The answer cites its sources as [n] markers, followed by the cited locations (path:start-end and symbol). Without a configured chat model the answer is extractive: the best matching code, numbered like citations. Notes say when a step fell back. Prefer search_code when you only need locations.",
            schema: json!({
                "type": "object",
                "properties": {
                    "question": {"type": "string", "description": "The question, in plain words."}
                },
                "required": ["question"],
                "additionalProperties": false
            }),
            read_only: true,
        },
        ToolSpec {
            name: "read_code",
            description: "Read lines of a file in this workspace (paths relative to the workspace root; nothing outside it, no secrets files such as .env or private keys). Returns the lines numbered, at most a size cap per call; when cut short it says which start_line to ask for next.",
            schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the workspace root, e.g. \"src/main.rs\"."},
                    "start_line": {"type": "integer", "minimum": 1, "description": "First line (1-based, default 1)."},
                    "end_line": {"type": "integer", "minimum": 1, "description": "Last line, inclusive (default: as far as the size cap allows)."}
                },
                "required": ["path"],
                "additionalProperties": false
            }),
            read_only: true,
        },
        ToolSpec {
            name: "related_code",
            description: "Find code related to a location: the chunk at path:line (a function, a type...) is looked up in the index and code that resembles it or uses its names is returned, best first, in the same form as search_code.",
            schema: json!({
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "File path relative to the workspace root."},
                    "line": {"type": "integer", "minimum": 1, "description": "A 1-based line inside the code of interest."},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": DEFAULT_TOP_K, "description": "How many results (1-50)."}
                },
                "required": ["path", "line"],
                "additionalProperties": false
            }),
            read_only: true,
        },
        ToolSpec {
            name: "index_status",
            description: "The state of this workspace's index: ready, indexing (with files left), degraded (lexical search only, and why) or error; files and chunks indexed, files pending, the embedding model, files skipped by reason.",
            schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
            read_only: true,
        },
        ToolSpec {
            name: "reindex",
            description: "Bring the index up to date with the files on disk (only changed files are re-read) and wait for it, reporting progress; full=true rebuilds it from scratch. Rarely needed: the index is updated when the server starts.",
            schema: json!({
                "type": "object",
                "properties": {
                    "full": {"type": "boolean", "default": false, "description": "Rebuild from scratch instead of updating."}
                },
                "additionalProperties": false
            }),
            read_only: false,
        },
    ]
}

/// Checks a call's arguments. The error is one line saying what to fix.
pub fn parse(name: &str, args: Option<&Map<String, Value>>) -> Result<Call, String> {
    let empty = Map::new();
    let args = args.unwrap_or(&empty);
    let Some(spec) = specs().into_iter().find(|s| s.name == name) else {
        return Err(format!(
            "unknown tool '{name}'; the tools are {}",
            tool_names().join(", ")
        ));
    };
    let allowed: Vec<&str> = spec.schema["properties"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if let Some(unknown) = args.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(if allowed.is_empty() {
            format!("{name} takes no arguments, but got '{unknown}'")
        } else {
            format!(
                "{name} has no argument '{unknown}'; it takes {}",
                allowed.join(", ")
            )
        });
    }
    let a = Args { tool: name, args };
    Ok(match name {
        "search_code" => Call::Search {
            query: a.text("query")?,
            top_k: a.count("top_k", DEFAULT_TOP_K)?,
            path_glob: a
                .optional_str("path_glob")?
                .map(|g| {
                    globset::GlobBuilder::new(&g)
                        .literal_separator(false)
                        .build()
                        .map(|g| g.compile_matcher())
                        .map_err(|e| format!("path_glob '{g}' is not a valid glob: {e}"))
                })
                .transpose()?,
            language: a
                .optional_str("language")?
                .map(|l| {
                    let l = l.to_ascii_lowercase();
                    Language::from_name(&l).ok_or_else(|| {
                        format!(
                            "language '{l}' is not known; use one of {}",
                            LANGUAGES.join(", ")
                        )
                    })
                })
                .transpose()?,
            explain: a.flag("explain")?,
        },
        "ask" => Call::Ask {
            question: a.text("question")?,
        },
        "read_code" => {
            let start_line = a.optional_line("start_line")?;
            let end_line = a.optional_line("end_line")?;
            if let (Some(s), Some(e)) = (start_line, end_line) {
                if e < s {
                    return Err(format!(
                        "end_line ({e}) is before start_line ({s}); give end_line >= start_line"
                    ));
                }
            }
            Call::Read {
                path: a.path()?,
                start_line,
                end_line,
            }
        }
        "related_code" => Call::Related {
            path: a.path()?,
            line: a
                .optional_line("line")?
                .ok_or_else(|| a.missing("line", "a 1-based line number, e.g. 42"))?,
            top_k: a.count("top_k", DEFAULT_TOP_K)?,
        },
        "index_status" => Call::Status,
        "reindex" => Call::Reindex {
            full: a.flag("full")?,
        },
        _ => unreachable!("every spec has a parser"),
    })
}

pub fn tool_names() -> Vec<&'static str> {
    specs().iter().map(|s| s.name).collect()
}

struct Args<'a> {
    tool: &'a str,
    args: &'a Map<String, Value>,
}

impl Args<'_> {
    fn missing(&self, key: &str, what: &str) -> String {
        format!("{} needs '{key}': {what}", self.tool)
    }

    /// An optional boolean, false when absent.
    fn flag(&self, key: &str) -> Result<bool, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(format!(
                "{key} must be true or false, not {}",
                describe(other)
            )),
        }
    }

    fn optional_str(&self, key: &str) -> Result<Option<String>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{key} must be a string, not {}", describe(other))),
        }
    }

    /// A required, non-empty text of bounded length.
    fn text(&self, key: &str) -> Result<String, String> {
        let s = self
            .optional_str(key)?
            .ok_or_else(|| self.missing(key, "a non-empty string"))?;
        if s.chars().count() > MAX_QUERY_CHARS {
            return Err(format!(
                "{key} is too long ({} characters); keep it under {MAX_QUERY_CHARS}",
                s.chars().count()
            ));
        }
        Ok(s)
    }

    fn path(&self) -> Result<String, String> {
        self.optional_str("path")?.ok_or_else(|| {
            self.missing(
                "path",
                "a file path relative to the workspace root, e.g. \"src/main.rs\"",
            )
        })
    }

    fn integer(&self, key: &str) -> Result<Option<u64>, String> {
        match self.args.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
                (Some(v), _) => Ok(Some(v)),
                (None, Some(f)) if f.fract() == 0.0 && f >= 0.0 && f < u32::MAX as f64 => {
                    Ok(Some(f as u64))
                }
                _ => Err(format!("{key} must be a positive whole number, not {n}")),
            },
            Some(other) => Err(format!(
                "{key} must be a positive whole number, not {}",
                describe(other)
            )),
        }
    }

    fn count(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.integer(key)? {
            None => Ok(default),
            Some(n) if (1..=MAX_TOP_K as u64).contains(&n) => Ok(n as usize),
            Some(n) => Err(format!("{key} must be between 1 and {MAX_TOP_K}, not {n}")),
        }
    }

    fn optional_line(&self, key: &str) -> Result<Option<u32>, String> {
        match self.integer(key)? {
            None => Ok(None),
            Some(n) if n >= 1 && n <= u32::MAX as u64 => Ok(Some(n as u32)),
            Some(n) => Err(format!("{key} must be a line number (1-based), not {n}")),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{}\"", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Whether a hit passes a search's filters.
pub fn keeps(
    hit: &SearchHit,
    path_glob: Option<&globset::GlobMatcher>,
    language: Option<Language>,
) -> bool {
    let language_ok = match language {
        None => true,
        Some(Language::TypeScript) => {
            matches!(hit.chunk.language, Language::TypeScript | Language::Tsx)
        }
        Some(l) => hit.chunk.language == l,
    };
    language_ok && path_glob.is_none_or(|g| g.is_match(&hit.chunk.path))
}

/// The first `lines` lines of a chunk, blank lead-in dropped, common indentation removed
/// and long lines cut, so a result costs few tokens.
pub fn snippet(text: &str, lines: usize) -> String {
    const MAX_LINE_CHARS: usize = 160;
    let picked: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take(lines)
        .collect();
    let indent = picked
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = picked
        .iter()
        .map(|l| {
            let l = l.get(indent..).unwrap_or_else(|| l.trim_start()).trim_end();
            if l.chars().count() > MAX_LINE_CHARS {
                let cut: String = l.chars().take(MAX_LINE_CHARS).collect();
                format!("{cut}…")
            } else {
                l.to_string()
            }
        })
        .collect();
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// A result list: compact text for the model and the same as structured JSON; with
/// `explain`, a `why:` line and an `explain` object per result (numbers rounded).
pub fn render_hits(
    hits: &[&SearchHit],
    snippet_lines: usize,
    notes: &[String],
    explain: bool,
) -> (String, Value) {
    let mut text = String::new();
    let mut results = Vec::new();
    if hits.is_empty() {
        text.push_str("no results\n");
    }
    for (i, h) in hits.iter().enumerate() {
        let c = &h.chunk;
        let snip = snippet(&c.text, snippet_lines);
        let what = if c.symbol.is_empty() {
            c.kind.to_string()
        } else {
            format!("{} ({})", c.symbol, c.kind)
        };
        text.push_str(&format!(
            "[{}] {}:{}-{}  {what}  score {:.3}\n",
            i + 1,
            c.path,
            c.start_line,
            c.end_line,
            h.score
        ));
        if explain {
            text.push_str(&format!(
                "    why: {}\n",
                crate::retrieve::explain::summary(h)
            ));
        }
        for l in snip.lines() {
            text.push_str("    ");
            text.push_str(l);
            text.push('\n');
        }
        let mut result = json!({
            "path": c.path,
            "start_line": c.start_line,
            "end_line": c.end_line,
            "symbol": c.symbol,
            "kind": c.kind.as_str(),
            "score": (f64::from(h.score) * 1000.0).round() / 1000.0,
            "snippet": snip,
        });
        if explain {
            result["explain"] = crate::retrieve::explain::to_compact_json(h);
        }
        results.push(result);
    }
    for n in notes {
        text.push_str(&format!("note: {n}\n"));
    }
    let mut json = json!({ "results": results });
    if !notes.is_empty() {
        json["notes"] = json!(notes);
    }
    (text, json)
}

/// An answer: its text with `[n]` markers, then the cited locations and the notes.
pub fn render_answer(result: &AskResult, notes: &[String]) -> (String, Value) {
    let mut text = result.answer.trim_end().to_string();
    if result.mode == AnswerMode::Generated && !result.citations.is_empty() {
        text.push_str("\n\nSources:\n");
        for c in &result.citations {
            let l = &c.location;
            let symbol = l
                .symbol
                .as_deref()
                .map(|s| format!("  {s}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "[{}] {}:{}-{}{symbol}\n",
                c.n, l.path, l.start_line, l.end_line
            ));
        }
    }
    let all_notes: Vec<&String> = result.notes.iter().chain(notes).collect();
    for n in &all_notes {
        text.push_str(&format!("\nnote: {n}"));
    }
    let citations: Vec<Value> = result
        .citations
        .iter()
        .map(|c| {
            json!({
                "n": c.n,
                "path": c.location.path,
                "start_line": c.location.start_line,
                "end_line": c.location.end_line,
                "symbol": c.location.symbol,
            })
        })
        .collect();
    let json = json!({
        "answer": result.answer,
        "mode": result.mode.to_string(),
        "citations": citations,
        "notes": all_notes,
    });
    (text, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{ChunkKind, Language};
    use crate::store::{ChunkId, StoredChunk};

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn err(name: &str, v: Value) -> String {
        match parse(name, Some(&args(v))) {
            Err(e) => e,
            Ok(c) => panic!("{name} accepted bad arguments: {c:?}"),
        }
    }

    #[test]
    fn every_schema_is_an_object_schema_with_its_required_keys_declared() {
        for s in specs() {
            assert_eq!(s.schema["type"], "object", "{}", s.name);
            let props = s.schema["properties"].as_object().expect("properties");
            for r in s.schema["required"].as_array().into_iter().flatten() {
                assert!(props.contains_key(r.as_str().unwrap_or("")), "{}", s.name);
            }
            assert!(
                s.description.len() > 80,
                "{} needs a real description",
                s.name
            );
        }
        assert_eq!(
            tool_names(),
            [
                "search_code",
                "ask",
                "read_code",
                "related_code",
                "index_status",
                "reindex"
            ]
        );
    }

    #[test]
    fn search_arguments_are_checked_and_defaulted() {
        let Ok(Call::Search {
            query,
            top_k,
            path_glob,
            language,
            explain,
        }) = parse("search_code", Some(&args(json!({"query": "retry"}))))
        else {
            panic!("a plain query is valid");
        };
        assert_eq!((query.as_str(), top_k), ("retry", DEFAULT_TOP_K));
        assert!(path_glob.is_none() && language.is_none() && !explain);
        assert!(matches!(
            parse(
                "search_code",
                Some(&args(json!({"query": "retry", "explain": true})))
            ),
            Ok(Call::Search { explain: true, .. })
        ));

        assert_eq!(
            err("search_code", json!({})),
            "search_code needs 'query': a non-empty string"
        );
        assert_eq!(
            err("search_code", json!({"query": 3})),
            "query must be a string, not the number 3"
        );
        assert_eq!(
            err("search_code", json!({"query": "x", "top_k": 0})),
            "top_k must be between 1 and 50, not 0"
        );
        assert_eq!(
            err("search_code", json!({"query": "x", "top_k": "5"})),
            "top_k must be a positive whole number, not the string \"5\""
        );
        assert!(
            err("search_code", json!({"query": "x", "language": "cobol"}))
                .starts_with("language 'cobol' is not known; use one of rust, python")
        );
        assert!(
            err("search_code", json!({"query": "x", "path_glob": "src/[a"}))
                .starts_with("path_glob 'src/[a' is not a valid glob")
        );
        assert_eq!(
            err("search_code", json!({"query": "x", "q": 1})),
            "search_code has no argument 'q'; it takes explain, language, path_glob, query, top_k"
        );
        assert_eq!(
            err("nope", json!({})),
            "unknown tool 'nope'; the tools are search_code, ask, read_code, related_code, index_status, reindex"
        );
    }

    #[test]
    fn line_arguments_are_checked() {
        assert_eq!(
            err(
                "read_code",
                json!({"path": "a.rs", "start_line": 9, "end_line": 3})
            ),
            "end_line (3) is before start_line (9); give end_line >= start_line"
        );
        assert_eq!(
            err("read_code", json!({"path": "a.rs", "start_line": -2})),
            "start_line must be a positive whole number, not -2"
        );
        assert_eq!(
            err("related_code", json!({"path": "a.rs"})),
            "related_code needs 'line': a 1-based line number, e.g. 42"
        );
        assert_eq!(
            err("index_status", json!({"x": 1})),
            "index_status takes no arguments, but got 'x'"
        );
        assert_eq!(
            err("reindex", json!({"full": "yes"})),
            "full must be true or false, not the string \"yes\""
        );
        assert!(matches!(
            parse(
                "related_code",
                Some(&args(json!({"path": "a.rs", "line": 4.0})))
            ),
            Ok(Call::Related { line: 4, .. })
        ));
    }

    fn hit(path: &str, language: Language, text: &str) -> SearchHit {
        SearchHit {
            root: std::path::PathBuf::from("/ws"),
            chunk: StoredChunk {
                id: ChunkId(1),
                path: path.into(),
                chunk: crate::chunk::Chunk {
                    language,
                    kind: ChunkKind::Function,
                    symbol: "impl Net > fn retry".into(),
                    name: "retry".into(),
                    start_byte: 0,
                    end_byte: text.len(),
                    start_line: 10,
                    end_line: 14,
                    text: text.into(),
                },
            },
            score: 0.81234,
            explain: Default::default(),
            priors: Vec::new(),
        }
    }

    #[test]
    fn filters_match_paths_and_languages() {
        let h = hit("src/net/retry.rs", Language::Rust, "fn retry() {}");
        let glob = |g: &str| globset::Glob::new(g).map(|g| g.compile_matcher()).ok();
        assert!(keeps(
            &h,
            glob("src/**/*.rs").as_ref(),
            Some(Language::Rust)
        ));
        assert!(!keeps(&h, glob("tests/**").as_ref(), None));
        assert!(!keeps(&h, None, Some(Language::Python)));
        let tsx = hit("ui/App.tsx", Language::Tsx, "");
        assert!(keeps(&tsx, None, Some(Language::TypeScript)));
    }

    #[test]
    fn results_are_compact() {
        let h = hit(
            "src/net.rs",
            Language::Rust,
            "\n    /// Retries.\n    fn retry() {\n        loop {}\n    }\n",
        );
        let (text, json) = render_hits(&[&h], 2, &["lexical only".to_string()], false);
        assert!(json["results"][0].get("explain").is_none());
        assert_eq!(
            text,
            "[1] src/net.rs:10-14  impl Net > fn retry (function)  score 0.812\n    /// Retries.\n    fn retry() {\nnote: lexical only\n"
        );
        assert_eq!(json["results"][0]["snippet"], "/// Retries.\nfn retry() {");
        assert_eq!(json["results"][0]["score"], 0.812);
        assert_eq!(json["notes"][0], "lexical only");
        let long = "x".repeat(300);
        assert_eq!(snippet(&long, 3).chars().count(), 161);
    }
}
