//! The answer plan: from a retrieval to the prompt, models and chat client; and how a
//! generation attempt finishes (a failure falls back to the extractive answer).

use super::*;

/// An answer about to be generated: see [`Engine::plan_answer`].
#[derive(Clone, Debug)]
pub struct AnswerPlan {
    pub question: String,
    /// The sources in the prompt, best first (`[n]` is `sources[n-1]`).
    pub sources: Vec<answer::Source>,
    pub messages: Vec<crate::provider::chat::ChatMessage>,
    pub models: answer::Models,
    pub timings: answer::Timings,
    pub notes: Vec<String>,
    /// `None` offline: the answer is extractive.
    pub chat: Option<ChatClient>,
}

impl AnswerPlan {
    pub fn extractive(self) -> AskResult {
        let mut result =
            answer::extractive(&self.question, &self.sources, self.models, self.timings);
        result.notes = self.notes;
        result
    }

    /// The result of a generation attempt; a failed one falls back to extractive.
    pub fn finish(
        mut self,
        outcome: std::result::Result<
            crate::provider::chat::ChatOutcome,
            crate::provider::ProviderError,
        >,
        generate_ms: u64,
    ) -> AskResult {
        self.timings.generate_ms = Some(generate_ms);
        match outcome {
            Ok(o) => answer::generated(
                &o.text,
                &self.sources,
                self.models,
                self.timings,
                o.usage,
                self.notes,
            ),
            Err(e) => {
                self.notes.push(format!(
                    "generation failed ({e}); showing the sources instead"
                ));
                self.extractive()
            }
        }
    }
}

impl Engine {
    /// Everything needed to generate an answer from a retrieval: the prompt (sources
    /// trimmed to the token budget), the models and the chat client, if any. The server
    /// streams the answer itself, so that cancelling the request drops the connection.
    pub fn plan_answer(
        &self,
        question: &str,
        retrieval: &Retrieval,
        editor_context: Option<String>,
    ) -> AnswerPlan {
        let mut sources: Vec<answer::Source> =
            retrieval.hits.iter().map(answer::source_of).collect();
        let models = answer::Models {
            embedding: self.embedder.model_name(),
            rerank: retrieval.reranked_by.clone(),
            chat: self.chat.as_ref().map(|c| c.model().to_string()),
        };
        let timings = answer::Timings {
            retrieve_ms: retrieval.retrieve_ms,
            rerank_ms: retrieval.rerank_ms,
            generate_ms: None,
        };
        let mut messages = Vec::new();
        if self.chat.is_some() {
            let prompt_sources: Vec<PromptSource> = retrieval
                .hits
                .iter()
                .map(|h| PromptSource {
                    path: h.chunk.path.clone(),
                    start_line: h.chunk.start_line,
                    end_line: h.chunk.end_line,
                    symbol: (!h.chunk.symbol.is_empty()).then(|| h.chunk.symbol.clone()),
                    language: h.chunk.language,
                    text: h.chunk.text.clone(),
                })
                .collect();
            let options = PromptOptions {
                max_context_tokens: self.config.chat.max_context_tokens,
                editor_context,
            };
            let built = prompt::build(question, &prompt_sources, &options);
            sources.truncate(built.used);
            messages = built.messages;
        }
        AnswerPlan {
            question: question.to_string(),
            sources,
            messages,
            models,
            timings,
            notes: retrieval.notes.clone(),
            chat: self.chat.clone(),
        }
    }
}
