//! `POST /rerank` (Cohere's shape, as OpenRouter serves it): a cross-encoder scores each
//! candidate against the query. Results point into the request's documents by `index`;
//! the document text in a response is optional and ignored.

use super::{Provider, ProviderError};

/// The longest document text sent for reranking (characters); the rest of a chunk adds
/// cost, not signal.
const MAX_DOCUMENT_CHARS: usize = 4_000;

#[derive(Debug, Clone)]
pub struct RemoteReranker {
    provider: Provider,
    model: String,
}

impl RemoteReranker {
    pub fn new(provider: Provider, model: &str) -> RemoteReranker {
        RemoteReranker {
            provider,
            model: model.to_string(),
        }
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    /// Scores `documents` against `query`; returns (document index, relevance), best first.
    pub async fn rerank(
        &self,
        query: &str,
        documents: &[&str],
        top_n: usize,
    ) -> Result<Vec<(usize, f32)>, ProviderError> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<&str> = documents
            .iter()
            .map(|d| truncate(d, MAX_DOCUMENT_CHARS))
            .collect();
        let body = serde_json::json!({ "model": self.model, "query": query, "documents": docs, "top_n": top_n.min(docs.len()) });
        let resp = self.provider.post("rerank", &body, true).await?;
        let value: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| ProviderError::BadResponse(format!("rerank: {e}")))?;
        parse_results(&value, documents.len())
    }
}

fn parse_results(
    value: &serde_json::Value,
    n_documents: usize,
) -> Result<Vec<(usize, f32)>, ProviderError> {
    let results = value
        .get("results")
        .and_then(|r| r.as_array())
        .ok_or_else(|| ProviderError::BadResponse("rerank: no \"results\" list".into()))?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        let index = r.get("index").and_then(|i| i.as_u64()).map(|i| i as usize);
        let score = r.get("relevance_score").and_then(|s| s.as_f64());
        match (index, score) {
            (Some(i), Some(s)) if i < n_documents => out.push((i, s as f32)),
            _ => {
                return Err(ProviderError::BadResponse(
                    "rerank: a result lacks a valid index or relevance_score".into(),
                ))
            }
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(out)
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_by_index_and_sort_best_first() {
        let v = serde_json::json!({"results": [
            {"index": 2, "relevance_score": 0.2},
            {"index": 0, "relevance_score": 0.9, "document": {"text": "ignored"}}
        ]});
        assert_eq!(parse_results(&v, 3).unwrap(), vec![(0, 0.9), (2, 0.2)]);
    }

    #[test]
    fn an_index_out_of_range_is_a_bad_response() {
        let v = serde_json::json!({"results": [{"index": 5, "relevance_score": 0.2}]});
        assert!(matches!(
            parse_results(&v, 3),
            Err(ProviderError::BadResponse(_))
        ));
    }
}
