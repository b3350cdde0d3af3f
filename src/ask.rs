//! The ask pipeline, written once: retrieve across one or more indexes -> rerank (inside
//! each index's retrieval) -> merge -> plan the prompt -> generate, falling back to the
//! extractive answer -> finish. The CLI drives it to stdout, the server inside a
//! request's future (dropping that future drops the upstream chat connection at once),
//! and hover explanations and commands go through the same functions.
//!
//! Indexes are reached through [`AskIndex`], whose calls block (database, remote rerank);
//! they run on tokio's blocking pool. What happens on the way is reported to an
//! [`AskSink`]: stages, answer deltas, notes.

use crate::answer::{AskResult, Source};
use crate::engine::{AnswerPlan, Engine};
use crate::error::{Error, Result};
use crate::retrieve::{self, Rerank, Retrieval};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One index the pipeline can ask: a workspace folder's reading engine. `None` from
/// either call means the index is not ready (not built yet).
pub trait AskIndex: Send + Sync {
    /// Hybrid retrieval with rerank, the hits carrying this index's root.
    fn retrieve(&self, query: &str, top_k: usize, how: Rerank) -> Result<Option<Retrieval>>;
    /// The prompt and chat client for answering `question` from `retrieval`.
    fn plan(
        &self,
        question: &str,
        retrieval: &Retrieval,
        editor_context: Option<String>,
    ) -> Result<Option<AnswerPlan>>;
}

/// A stage of the pipeline, for progress reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Retrieving,
    Generating,
}

impl Stage {
    /// The stage in words, as progress messages show it.
    pub fn label(self) -> &'static str {
        match self {
            Stage::Retrieving => "Retrieving",
            Stage::Generating => "Generating",
        }
    }
}

/// Where the pipeline reports as it goes. Every method defaults to doing nothing.
pub trait AskSink: Send {
    /// A stage begins.
    fn stage(&mut self, _stage: Stage) {}
    /// The numbered sources, before any answer text: `[n]` is `sources[n-1]`, in the
    /// streamed text and in the result alike (issue 12).
    fn sources(&mut self, _sources: &[Source]) {}
    /// A piece of generated answer text, in order.
    fn delta(&mut self, _text: &str) {}
    /// A fallback taken (rerank failed, generation failed...), in words.
    fn note(&mut self, _note: &str) {}
}

/// A sink that ignores everything.
pub struct Quiet;
impl AskSink for Quiet {}

/// A question to answer.
#[derive(Clone, Debug)]
pub struct Question {
    /// The question as asked (it leads the prompt).
    pub text: String,
    /// What retrieval searches for: the question, plus editor context when there is some.
    pub query: String,
    pub top_k: usize,
    pub rerank: Rerank,
    /// The editor's selection with its place, for the prompt.
    pub editor_context: Option<String>,
}

/// The whole pipeline over `indexes` (the first index that answers plans the prompt).
/// `Ok(None)`: no index is ready yet.
pub async fn ask(
    indexes: &[Arc<dyn AskIndex>],
    question: &Question,
    sink: &mut (dyn AskSink + Send),
) -> Result<Option<AskResult>> {
    sink.stage(Stage::Retrieving);
    let Some((planner, retrieval)) =
        retrieve_all(indexes, &question.query, question.top_k, question.rerank).await?
    else {
        return Ok(None);
    };
    answer(
        &planner,
        &question.text,
        retrieval,
        question.editor_context.clone(),
        sink,
    )
    .await
}

/// Retrieval over every index, merged ([`retrieve::merge`]); also the first index that
/// answered, which plans the prompt. `Ok(None)`: none is ready.
pub async fn retrieve_all(
    indexes: &[Arc<dyn AskIndex>],
    query: &str,
    top_k: usize,
    how: Rerank,
) -> Result<Option<(Arc<dyn AskIndex>, Retrieval)>> {
    let mut first = None;
    let mut found = Vec::new();
    for index in indexes {
        let i = index.clone();
        let q = query.to_string();
        let r = tokio::task::spawn_blocking(move || i.retrieve(&q, top_k, how))
            .await
            .map_err(|e| Error::Usage(format!("retrieval stopped: {e}")))??;
        if let Some(r) = r {
            first.get_or_insert_with(|| index.clone());
            found.push(r);
        }
    }
    Ok(first.map(|f| (f, retrieve::merge(found, top_k))))
}

/// From a retrieval to the answer: plan, then generate (streaming deltas to `sink`) or
/// answer extractively, and finish (a failed generation falls back, with a note).
/// `Ok(None)`: the index is not ready.
pub async fn answer(
    index: &Arc<dyn AskIndex>,
    question: &str,
    retrieval: Retrieval,
    editor_context: Option<String>,
    sink: &mut (dyn AskSink + Send),
) -> Result<Option<AskResult>> {
    let i = index.clone();
    let q = question.to_string();
    let Some(plan) = tokio::task::spawn_blocking(move || i.plan(&q, &retrieval, editor_context))
        .await
        .map_err(|e| Error::Usage(format!("planning stopped: {e}")))??
    else {
        return Ok(None);
    };
    sink.sources(&plan.sources);
    let result = match plan.chat.clone() {
        None => plan.extractive(),
        Some(chat) => {
            sink.stage(Stage::Generating);
            let started = Instant::now();
            let mut on_delta = |d: &str| sink.delta(d);
            // Dropping this future (a cancelled request) drops the stream and its connection.
            let outcome = chat.stream(&plan.messages, &mut on_delta).await;
            plan.finish(outcome, started.elapsed().as_millis() as u64)
        }
    };
    for note in &result.notes {
        sink.note(note);
    }
    Ok(Some(result))
}

/// An index read through engines: each call of the pipeline runs on one of them.
pub trait ReadsEngine: Send + Sync {
    /// Runs `f` on a reading engine (blocking). `None` while there is no index yet.
    fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>>;
}

impl<R: ReadsEngine> AskIndex for R {
    fn retrieve(&self, query: &str, top_k: usize, how: Rerank) -> Result<Option<Retrieval>> {
        self.with_reader(|e| e.retrieve(query, top_k, how))
    }

    fn plan(
        &self,
        question: &str,
        retrieval: &Retrieval,
        editor_context: Option<String>,
    ) -> Result<Option<AnswerPlan>> {
        self.with_reader(|e| Ok(e.plan_answer(question, retrieval, editor_context)))
    }
}

/// The CLI's index: one engine, used from the blocking pool.
impl ReadsEngine for Mutex<Engine> {
    fn with_reader<T>(&self, f: impl FnOnce(&mut Engine) -> Result<T>) -> Result<Option<T>> {
        let mut engine = self
            .lock()
            .map_err(|_| Error::Usage("the index is unavailable".into()))?;
        f(&mut engine).map(Some)
    }
}
