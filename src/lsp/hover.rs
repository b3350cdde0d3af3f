//! Hover: the definition and related code within a time budget, and a generated
//! explanation from the ask pipeline when one is cached (generation runs in the
//! background and fills the cache).

use super::*;

/// How long a hover may take before it answers with what it has.
pub(super) const HOVER_BUDGET: Duration = Duration::from_millis(1500);
/// Removes a hover key from the in-flight set however its generation ends.
pub(super) struct InflightGuard {
    set: Arc<dashmap::DashSet<(String, crate::store::TextHash)>>,
    key: (String, crate::store::TextHash),
}
impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.set.remove(&self.key);
    }
}

impl Backend {
    /// Hover: the definition and related code within the budget; a generated explanation
    /// when one is cached (generation runs in the background and fills the cache).
    pub(super) async fn hover_at(&self, uri: &Url, pos: Position) -> Result<Option<Hover>> {
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
    pub(super) fn explain_in_background(
        &self,
        folder: &Arc<Folder>,
        word: &str,
        hits: &[SearchHit],
        key: (String, crate::store::TextHash),
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
            if result.mode != crate::answer::AnswerMode::Generated {
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
                let link =
                    features::file_link(&c.location.root, &c.location.path, c.location.start_line);
                text = text.replace(&format!("[{}]", c.n), &format!("[[{}]]({link})", c.n));
            }
            cache.insert(key, text.clone());
            Some(text)
        }))
    }
}
