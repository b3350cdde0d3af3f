//! The wire forms of PROTOCOL.md's custom requests: parameters with clear errors for
//! malformed input, and the CLI-shaped results (paths, 1-based lines) turned into LSP
//! shapes (file URIs, 0-based ranges). Pure, except for reading a file's line to find
//! its length when the chunk text does not say it.

use crate::answer::{AskResult, Source};
use crate::engine::Status;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::Path;
use tower_lsp::jsonrpc;
use tower_lsp::lsp_types::{Range, Url};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TextDocumentRef {
    pub uri: Url,
}

/// `rag/ask` and `rag/search` parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryParams {
    pub query: String,
    pub text_document: Option<TextDocumentRef>,
    pub range: Option<Range>,
    pub top_k: Option<usize>,
    pub rerank: Option<bool>,
    /// `rag/search`: give each source an `explain` object (why it ranked there).
    pub explain: Option<bool>,
    pub partial_result_token: Option<Value>,
    pub work_done_token: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReindexParams {
    pub full: Option<bool>,
}

pub fn parse<T: for<'de> Deserialize<'de>>(method: &str, params: Value) -> jsonrpc::Result<T> {
    serde_json::from_value(params)
        .map_err(|e| jsonrpc::Error::invalid_params(format!("{method}: {e}")))
}

impl QueryParams {
    pub fn check(&self, method: &str) -> jsonrpc::Result<()> {
        if self.query.trim().is_empty() && self.range.is_none() {
            return Err(jsonrpc::Error::invalid_params(format!(
                "{method}: \"query\" is empty"
            )));
        }
        if self.top_k == Some(0) || self.top_k.is_some_and(|k| k > 100) {
            return Err(jsonrpc::Error::invalid_params(format!(
                "{method}: \"topK\" must be between 1 and 100"
            )));
        }
        Ok(())
    }
}

/// The file URI of a workspace-relative path.
pub fn uri_of(root: &Path, rel: &str) -> Value {
    Url::from_file_path(root.join(rel))
        .map(|u| Value::String(u.to_string()))
        .unwrap_or(Value::Null)
}

/// A source's LSP range: its lines, to the end of its last line.
pub fn range_of(start_line: u32, end_line: u32, snippet_or_text: &str) -> Range {
    let last = if end_line > start_line {
        snippet_or_text
            .lines()
            .nth((end_line - start_line) as usize)
            .unwrap_or("")
    } else {
        snippet_or_text.lines().next().unwrap_or("")
    };
    crate::lsp::documents::line_range(start_line, end_line, last)
}

/// A source in LSP form: its folder's file URI and the range of its lines.
pub fn source_json(s: &Source) -> Value {
    let at = &s.location;
    let mut v = json!({
        "uri": uri_of(&at.root, &at.path),
        "range": crate::lsp::documents::line_range(at.start_line, at.end_line, &s.last_line),
        "kind": s.kind,
        "language": s.language,
        "score": s.score,
        "snippet": s.snippet,
    });
    if let Some(sym) = &at.symbol {
        v["symbol"] = sym.clone().into();
    }
    v
}

/// The `rag/ask` result in LSP form. Each source and citation carries its folder and the
/// text of its last line, so each range is the chunk's real extent in the right folder.
pub fn ask_json(result: &AskResult) -> Value {
    let sources: Vec<Value> = result.sources.iter().map(source_json).collect();
    let citations: Vec<Value> = result
        .citations
        .iter()
        .map(|c| {
            let last = result
                .sources
                .iter()
                .find(|s| {
                    let (a, b) = (&s.location, &c.location);
                    a.root == b.root && a.path == b.path && a.start_line == b.start_line
                })
                .map(|s| s.last_line.as_str())
                .unwrap_or_default();
            let at = &c.location;
            let mut v = json!({
                "n": c.n,
                "uri": uri_of(&at.root, &at.path),
                "range": crate::lsp::documents::line_range(at.start_line, at.end_line, last),
                "snippet": c.snippet,
            });
            if let Some(sym) = &at.symbol {
                v["symbol"] = sym.clone().into();
            }
            v
        })
        .collect();
    let mut v = json!({
        "answer": result.answer,
        "citations": citations,
        "sources": sources,
        "mode": result.mode,
        "models": result.models,
        "timings": result.timings,
    });
    if let Some(u) = &result.usage {
        v["usage"] = serde_json::to_value(u).unwrap_or(Value::Null);
    }
    if !result.notes.is_empty() {
        v["notes"] = json!(result.notes);
    }
    v
}

/// The `rag/status` object for several folders: the first folder's fields, with counts
/// summed and the worst state.
pub fn status_json(statuses: &[Status]) -> Value {
    let Some(first) = statuses.first() else {
        return json!({ "state": "ready", "files": 0, "chunks": 0, "pendingFiles": 0, "indexBytes": 0,
                       "embedding": { "provider": "", "model": "", "dimensions": 0 }, "folders": [] });
    };
    let worst = statuses.iter().max_by_key(|s| s.state).unwrap_or(first);
    let mut v = serde_json::to_value(first).unwrap_or(Value::Null);
    v["state"] = worst.state.to_string().into();
    v["files"] = statuses.iter().map(|s| s.files).sum::<u64>().into();
    v["chunks"] = statuses.iter().map(|s| s.chunks).sum::<u64>().into();
    v["pendingFiles"] = statuses.iter().map(|s| s.pending_files).sum::<u64>().into();
    v["indexBytes"] = statuses.iter().map(|s| s.index_bytes).sum::<u64>().into();
    if let Some(e) = statuses.iter().find_map(|s| s.last_error.clone()) {
        v["lastError"] = e.into();
    }
    v["folders"] = serde_json::to_value(statuses).unwrap_or(Value::Null);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_end_at_the_last_line_of_the_chunk() {
        let r = range_of(10, 12, "fn a() {\n    b();\n}");
        assert_eq!(
            (r.start.line, r.start.character, r.end.line, r.end.character),
            (9, 0, 11, 1)
        );
    }

    #[test]
    fn malformed_params_are_invalid_params_errors() {
        let err = parse::<QueryParams>("rag/ask", json!({"query": 5})).unwrap_err();
        assert_eq!(err.code, jsonrpc::ErrorCode::InvalidParams);
        let p: QueryParams = parse("rag/search", json!({"query": " ", "topK": 3})).unwrap();
        assert!(p.check("rag/search").is_err());
        let p: QueryParams = parse("rag/search", json!({"query": "x", "topK": 0})).unwrap();
        assert!(p.check("rag/search").is_err());
    }
}
