//! Reranking: reorders the fused candidates before they are shown or sent to a model.
//!
//! The offline reranker is a transparent scorer, a weighted sum of features in [0, 1]:
//! the fused retrieval score (as a share of the best candidate's), how much of the query the
//! chunk's own name covers, how much its symbol path and its file path cover, and a prior
//! on its kind (a function is a likelier answer than a block of imports). The weights are
//! settings (`rerank.offline`), tuned on `../shared/eval/dev-eval.sh`. Pure: no I/O.

use crate::config::OfflineRerankConfig;
use crate::tokenize;
use std::collections::HashSet;

/// What the offline reranker needs to know of a candidate.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub fused: f32,
    pub name: &'a str,
    pub symbol: &'a str,
    pub path: &'a str,
    pub kind: &'a str,
}

/// Scores every candidate; the caller sorts. `query_terms` come from `tokenize::terms`.
pub fn offline_scores(
    query_terms: &[String],
    candidates: &[Candidate<'_>],
    w: &OfflineRerankConfig,
) -> Vec<f32> {
    let query: HashSet<&str> = query_terms.iter().map(String::as_str).collect();
    let best = candidates.iter().map(|c| c.fused).fold(0.0, f32::max);
    candidates
        .iter()
        .map(|c| {
            let fused = if best > 0.0 {
                c.fused.max(0.0) / best
            } else {
                1.0
            };
            w.fused * fused
                + w.name * coverage(&query, c.name)
                + w.symbol * coverage(&query, c.symbol)
                + w.path * coverage(&query, c.path)
                + w.kind * kind_prior(c.kind)
        })
        .collect()
}

/// The share of the query's terms found among the terms of `text`.
fn coverage(query: &HashSet<&str>, text: &str) -> f32 {
    if query.is_empty() || text.is_empty() {
        return 0.0;
    }
    let terms: HashSet<String> = tokenize::terms(text).into_iter().collect();
    let found = query.iter().filter(|t| terms.contains(**t)).count();
    found as f32 / query.len() as f32
}

/// How likely a chunk of this kind is to be what a question is about.
pub fn kind_prior(kind: &str) -> f32 {
    match kind {
        "function" | "method" => 1.0,
        "class" | "struct" | "enum" | "trait" | "interface" | "impl" | "type" | "macro" => 0.7,
        "section" | "module" => 0.5,
        "const" | "block" => 0.3,
        _ => 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(fused: f32, name: &'a str, kind: &'a str) -> Candidate<'a> {
        Candidate {
            fused,
            name,
            symbol: name,
            path: "src/lib.rs",
            kind,
        }
    }

    #[test]
    fn a_name_that_says_the_query_lifts_a_slightly_weaker_candidate() {
        let q = tokenize::terms("parse the http request");
        let scores = offline_scores(
            &q,
            &[
                cand(1.0, "handle", "function"),
                cand(0.9, "parse_http_request", "function"),
            ],
            &OfflineRerankConfig::default(),
        );
        assert!(scores[1] > scores[0], "{scores:?}");
    }

    #[test]
    fn the_fused_score_still_dominates_a_large_gap() {
        let q = tokenize::terms("retry with backoff");
        let scores = offline_scores(
            &q,
            &[
                cand(10.0, "send", "function"),
                cand(0.5, "retry", "block"),
                cand(0.0, "x", "text"),
            ],
            &OfflineRerankConfig::default(),
        );
        assert!(scores[0] > scores[1], "{scores:?}");
    }

    #[test]
    fn functions_are_preferred_over_import_blocks_when_all_else_is_equal() {
        let q = tokenize::terms("cache");
        let scores = offline_scores(
            &q,
            &[cand(1.0, "", "block"), cand(1.0, "", "function")],
            &OfflineRerankConfig::default(),
        );
        assert!(scores[1] > scores[0]);
    }
}
