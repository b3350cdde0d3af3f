//! Code actions (explain, ask about, find related, write a doc comment in the language's
//! style) and `workspace/executeCommand`.

use super::*;

pub(super) const COMMANDS: [&str; 4] = [
    "ragls.ask",
    "ragls.explain",
    "ragls.related",
    "ragls.reindex",
];

impl Backend {
    pub(super) async fn code_actions(
        &self,
        params: CodeActionParams,
    ) -> Result<Option<CodeActionResponse>> {
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
    pub(super) async fn doc_comment_action(
        &self,
        uri: &Url,
        text: &str,
        range: Range,
    ) -> Option<CodeAction> {
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
        let (insert_at, item) = doc_comment_place(
            &lines,
            chunk.start_line,
            chunk.end_line,
            &chunk.name,
            chunk.language == crate::chunk::Language::Python,
        )?;
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
        let (comment, _) = features::doc_comment(chunk.language, &chunk.name, &indent, &related);
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

    pub(super) async fn command(&self, params: ExecuteCommandParams) -> Result<Option<Value>> {
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

/// Where a doc comment for the item `name` (a chunk spanning the 1-based lines
/// `start_line..=end_line` of `lines`) goes: `(line to insert at, the item's line)`,
/// 0-based. Above the item and its attributes or decorators; inside it, after the
/// signature, for Python. `None` when the item is not found or already has a comment.
pub(super) fn doc_comment_place(
    lines: &[&str],
    start_line: u32,
    end_line: u32,
    name: &str,
    python: bool,
) -> Option<(usize, usize)> {
    // The item's own line: the first line of the chunk that names it.
    let first = start_line.saturating_sub(1) as usize;
    let last = (end_line as usize).min(lines.len());
    let item = (first..last).find(|&i| lines[i].contains(name))?;
    let insert_at = if python {
        let sig_end = (item..last)
            .find(|&i| lines[i].trim_end().ends_with(':'))
            .unwrap_or(item);
        sig_end + 1
    } else {
        let mut top = item;
        while top > first && {
            let t = lines[top - 1].trim_start();
            t.starts_with("#[") || t.starts_with('@')
        } {
            top -= 1;
        }
        top
    };
    let existing = if python {
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
    Some((insert_at, item))
}

#[cfg(test)]
mod tests {
    use super::doc_comment_place;

    #[test]
    fn rust_comments_go_above_the_attributes() {
        let src = [
            "use x;",
            "#[inline]",
            "#[must_use]",
            "pub fn total() -> i64 {",
            "    1",
            "}",
        ];
        assert_eq!(doc_comment_place(&src, 2, 6, "total", false), Some((1, 3)));
    }

    #[test]
    fn python_docstrings_go_inside_after_a_multi_line_signature() {
        let src = ["@cache", "def load(a,", "         b):", "    return a"];
        assert_eq!(doc_comment_place(&src, 1, 4, "load", true), Some((3, 1)));
    }

    #[test]
    fn an_item_that_has_a_comment_gets_none() {
        let rust = ["/// Sums.", "fn total() {}"];
        assert_eq!(doc_comment_place(&rust, 2, 2, "total", false), None);
        let py = ["def f():", "    \"\"\"Doc.\"\"\"", "    pass"];
        assert_eq!(doc_comment_place(&py, 1, 3, "f", true), None);
        assert_eq!(doc_comment_place(&rust, 2, 2, "missing", false), None);
    }
}
