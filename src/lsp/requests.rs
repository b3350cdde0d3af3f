//! PROTOCOL.md's custom requests: `rag/ask` (driving the ask pipeline inside the
//! request's future, with stage progress and streamed deltas), `rag/search`, `rag/status`
//! and `rag/reindex`; editor context, admitted like indexed text.

use super::*;

/// `$/progress` with a value that is not a work-done progress (streamed answer text).
pub(super) enum PartialResult {}
impl Notification for PartialResult {
    type Params = Value;
    const METHOD: &'static str = "$/progress";
}
/// A `rag/ask` request's sink: the generation stage as work-done progress, answer deltas
/// as partial results, both through one channel so they reach the client in order.
pub(super) struct RequestSink {
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

    /// Issue 12: the numbered sources go out before any answer text, as `$/progress
    /// {token, value: {sources}}`, so clients can make each streamed `[n]` a link at once.
    fn sources(&mut self, sources: &[crate::answer::Source]) {
        if let Some(token) = &self.partial {
            let sources: Vec<Value> = sources.iter().map(protocol::source_json).collect();
            let _ = self
                .tx
                .send(json!({ "token": token, "value": { "sources": sources } }));
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
/// The end of a request's stage progress, sent on completion or, if the request is
/// cancelled, when its future is dropped.
pub(super) struct StageEnd {
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
/// The client's `rerank` flag: on (the default) is the best reranker available.
pub(super) fn rerank_flag(flag: Option<bool>) -> Rerank {
    if flag.unwrap_or(true) {
        Rerank::Best
    } else {
        Rerank::None
    }
}

impl Backend {
    /// Editor context: the selected text (or the line under the cursor), with its place.
    pub(super) async fn editor_context(
        &self,
        uri: &Url,
        range: Option<Range>,
    ) -> Option<(String, String)> {
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
    pub(super) fn indexes(&self, scope: Option<&Url>) -> Vec<Arc<dyn AskIndex>> {
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
    pub(super) async fn search_hits(
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

    pub(super) async fn query_with_context(&self, p: &QueryParams) -> (String, Option<String>) {
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

    pub(super) async fn rag_ask(&self, params: Value) -> Result<Value> {
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

    pub(super) async fn ask(
        &self,
        p: &QueryParams,
        stage: Option<&NumberOrString>,
    ) -> Result<Value> {
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

    pub(super) async fn rag_search(&self, params: Value) -> Result<Value> {
        let p: QueryParams = protocol::parse("rag/search", params)?;
        p.check("rag/search")?;
        let top_k = p.top_k.unwrap_or(10);
        let (query, _) = self.query_with_context(&p).await;
        let scope = p.text_document.as_ref().map(|d| d.uri.clone());
        let hits = self
            .search_hits(query, top_k, rerank_flag(p.rerank), scope.as_ref())
            .await?;
        let explain = p.explain.unwrap_or(false);
        let results: Vec<Value> = hits
            .iter()
            .map(|h| {
                let mut v = protocol::source_json(&crate::answer::source_of(h));
                if explain {
                    v["explain"] = crate::retrieve::explain::to_json(h);
                }
                v
            })
            .collect();
        Ok(json!({ "results": results }))
    }

    pub(super) async fn rag_status(&self, _params: Value) -> Result<Value> {
        let statuses: Vec<_> = self.folders().iter().map(|f| f.status()).collect();
        Ok(protocol::status_json(&statuses))
    }

    pub(super) async fn rag_reindex(&self, params: Value) -> Result<Value> {
        let p: protocol::ReindexParams = protocol::parse("rag/reindex", params)?;
        let full = p.full.unwrap_or(false);
        for f in self.folders() {
            f.send(Command::Index { full });
        }
        Ok(json!({ "started": true, "full": full }))
    }
}
