//! Reranking: reorders the fused candidates before they are shown or sent to a model.
//!
//! The offline reranker is a transparent scorer, a weighted sum of features in [0, 1]:
//! the fused retrieval score (as a share of the best candidate's), how much of the query the
//! chunk's own name covers, how much its symbol path and its file path cover, and a prior
//! on its kind (a function is a likelier answer than a block of imports). The weights are
//! settings (`rerank.offline`), tuned on `../shared/eval/dev-eval.sh`. Pure: no I/O.
//!
//! Both rerankers sit behind [`Reranker`]: [`Offline`] and the remote cross-encoder
//! (`provider::RemoteReranker`). [`rerank`] is the one place that orders hits: offline
//! first, then the cross-encoder with `rerank.min_score`, falling back to the offline
//! order when it fails.

use crate::chunk::ChunkKind;
use crate::config::OfflineRerankConfig;
use crate::error::Result;
use crate::provider::RemoteReranker;
use crate::retrieve::explain::{OfflineScore, RemoteScore};
use crate::retrieve::SearchHit;
use crate::tokenize;
use std::collections::{HashMap, HashSet};

/// Something that orders retrieved hits for a query.
pub trait Reranker: Send + Sync {
    /// What results report as their reranker: "offline", or the model.
    fn name(&self) -> String;
    /// (index into `hits`, score), best first; a remote model may return fewer.
    fn order(&self, query: &str, hits: &[SearchHit], top_k: usize) -> Result<Vec<(usize, f32)>>;
    /// [`Reranker::order`] with the features behind each score when the scorer has them
    /// (the offline one), for explaining a result.
    fn order_explained(
        &self,
        query: &str,
        hits: &[SearchHit],
        top_k: usize,
    ) -> Result<Vec<(usize, f32, Option<OfflineScore>)>> {
        Ok(self
            .order(query, hits, top_k)?
            .into_iter()
            .map(|(i, s)| (i, s, None))
            .collect())
    }
}

/// The offline scorer ([`offline_scores`]) as a [`Reranker`]; ties break by chunk id.
pub struct Offline<'a>(pub &'a OfflineRerankConfig);

impl Reranker for Offline<'_> {
    fn name(&self) -> String {
        "offline".into()
    }

    fn order(&self, query: &str, hits: &[SearchHit], top_k: usize) -> Result<Vec<(usize, f32)>> {
        Ok(self
            .order_explained(query, hits, top_k)?
            .into_iter()
            .map(|(i, s, _)| (i, s))
            .collect())
    }

    fn order_explained(
        &self,
        query: &str,
        hits: &[SearchHit],
        _top_k: usize,
    ) -> Result<Vec<(usize, f32, Option<OfflineScore>)>> {
        let terms = tokenize::terms(query);
        let candidates: Vec<Candidate<'_>> = hits
            .iter()
            .map(|h| Candidate {
                fused: h.score,
                name: &h.chunk.name,
                symbol: &h.chunk.symbol,
                path: &h.chunk.path,
                kind: h.chunk.kind,
            })
            .collect();
        let mut order: Vec<(usize, f32, Option<OfflineScore>)> =
            offline_features(&terms, &candidates, self.0)
                .into_iter()
                .enumerate()
                .map(|(i, f)| (i, f.score, Some(f)))
                .collect();
        order.sort_by(|a, b| {
            b.1.total_cmp(&a.1)
                .then(hits[a.0].chunk.id.cmp(&hits[b.0].chunk.id))
        });
        Ok(order)
    }
}

/// The remote cross-encoder; blocks on the shared HTTP runtime.
impl Reranker for RemoteReranker {
    fn name(&self) -> String {
        self.model().to_string()
    }

    fn order(&self, query: &str, hits: &[SearchHit], top_k: usize) -> Result<Vec<(usize, f32)>> {
        let texts: Vec<String> = hits
            .iter()
            .map(|h| crate::chunk::embedding_text(&h.chunk.path, &h.chunk.symbol, &h.chunk.text))
            .collect();
        let docs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let rt = crate::provider::blocking_runtime()?;
        Ok(rt.block_on(self.rerank(query, &docs, top_k))?)
    }
}

/// Orders `hits` for `query`: by `offline`, then by `remote` when given, whose scores
/// below `min_score` drop a hit; when `remote` fails the offline order stands. Every
/// fallback is said in `notes`. Returns the name of the reranker whose order stands.
pub fn rerank(
    query: &str,
    hits: &mut Vec<SearchHit>,
    top_k: usize,
    offline: &dyn Reranker,
    remote: Option<&dyn Reranker>,
    min_score: f32,
    notes: &mut Vec<String>,
) -> String {
    let mut by = offline.name();
    match offline.order_explained(query, hits, top_k) {
        Ok(order) => {
            let order = order.into_iter().map(|(i, s, features)| (i, (s, features)));
            *hits = in_order(std::mem::take(hits), order, |h, (score, features)| {
                h.score = score;
                h.explain.offline = features;
            });
        }
        Err(e) => notes.push(format!(
            "offline rerank failed ({e}); using the fused order"
        )),
    }
    if let Some(remote) = remote {
        match remote.order(query, hits, top_k) {
            Ok(order) => {
                let kept: Vec<(usize, f32)> =
                    order.into_iter().filter(|(_, s)| *s >= min_score).collect();
                if kept.is_empty() && !hits.is_empty() {
                    notes.push(format!("no source reached rerank.min_score = {min_score}"));
                }
                *hits = in_order(std::mem::take(hits), kept, |h, score| h.score = score);
                by = remote.name();
                for h in hits.iter_mut() {
                    h.explain.remote = Some(RemoteScore {
                        model: by.clone(),
                        score: h.score,
                    });
                }
            }
            Err(e) => notes.push(format!("rerank failed ({e}); using the offline order")),
        }
    }
    by
}

/// The hits at the places `order` names, in its order, each given what the order says
/// of it (`set`): moved, not copied (a hit carries its chunk's text). A place named
/// again is dropped.
fn in_order<X>(
    hits: Vec<SearchHit>,
    order: impl IntoIterator<Item = (usize, X)>,
    mut set: impl FnMut(&mut SearchHit, X),
) -> Vec<SearchHit> {
    let mut slots: Vec<Option<SearchHit>> = hits.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|(i, said)| {
            let mut h = slots.get_mut(i)?.take()?;
            set(&mut h, said);
            Some(h)
        })
        .collect()
}

/// What the offline reranker needs to know of a candidate.
#[derive(Clone, Debug)]
pub struct Candidate<'a> {
    pub fused: f32,
    pub name: &'a str,
    pub symbol: &'a str,
    pub path: &'a str,
    pub kind: ChunkKind,
}

/// Scores every candidate; the caller sorts. `query_terms` come from `tokenize::terms`.
pub fn offline_scores(
    query_terms: &[String],
    candidates: &[Candidate<'_>],
    w: &OfflineRerankConfig,
) -> Vec<f32> {
    offline_features(query_terms, candidates, w)
        .into_iter()
        .map(|f| f.score)
        .collect()
}

/// Every candidate's features and the weighted sum of them ([`offline_scores`]).
pub fn offline_features(
    query_terms: &[String],
    candidates: &[Candidate<'_>],
    w: &OfflineRerankConfig,
) -> Vec<OfflineScore> {
    let query: HashSet<&str> = query_terms.iter().map(String::as_str).collect();
    let best = candidates.iter().map(|c| c.fused).fold(0.0, f32::max);
    // Candidates share paths (several chunks of a file) and often names: each text is
    // tokenized once per question.
    let mut seen: HashMap<&str, f32> = HashMap::new();
    let mut covered = |text| *seen.entry(text).or_insert_with(|| coverage(&query, text));
    candidates
        .iter()
        .map(|c| {
            let mut f = OfflineScore {
                score: 0.0,
                fused: if best > 0.0 {
                    c.fused.max(0.0) / best
                } else {
                    1.0
                },
                name: covered(c.name),
                symbol: covered(c.symbol),
                path: covered(c.path),
                kind: kind_prior(c.kind),
            };
            f.score = w.fused * f.fused
                + w.name * f.name
                + w.symbol * f.symbol
                + w.path * f.path
                + w.kind * f.kind;
            f
        })
        .collect()
}

/// The share of the query's terms found among the terms of `text`.
fn coverage(query: &HashSet<&str>, text: &str) -> f32 {
    if query.is_empty() || text.is_empty() {
        return 0.0;
    }
    // Each query term once, however often the text says it; no string per term (this
    // runs for three fields of every candidate of every question).
    let mut found: Vec<&str> = Vec::with_capacity(query.len());
    tokenize::for_each_term(text, |t| {
        if let Some(q) = query.get(t) {
            if !found.contains(q) {
                found.push(q);
            }
        }
    });
    found.len() as f32 / query.len() as f32
}

/// How likely a chunk of this kind is to be what a question is about.
pub fn kind_prior(kind: ChunkKind) -> f32 {
    use ChunkKind::*;
    match kind {
        Function | Method => 1.0,
        Class | Struct | Enum | Trait | Interface | Impl | Type | Macro => 0.7,
        Section | Module => 0.5,
        Const | Block => 0.3,
        Text => 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(fused: f32, name: &str, kind: ChunkKind) -> Candidate<'_> {
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
                cand(1.0, "handle", ChunkKind::Function),
                cand(0.9, "parse_http_request", ChunkKind::Function),
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
                cand(10.0, "send", ChunkKind::Function),
                cand(0.5, "retry", ChunkKind::Block),
                cand(0.0, "x", ChunkKind::Text),
            ],
            &OfflineRerankConfig::default(),
        );
        assert!(scores[0] > scores[1], "{scores:?}");
    }

    /// A reranker that fails, or answers with a fixed order.
    struct Fixed(Option<Vec<(usize, f32)>>);
    impl Reranker for Fixed {
        fn name(&self) -> String {
            "fixed".into()
        }
        fn order(&self, _: &str, _: &[SearchHit], _: usize) -> Result<Vec<(usize, f32)>> {
            self.0
                .clone()
                .ok_or_else(|| crate::error::Error::Other("down".into()))
        }
    }

    fn hits(names: &[&str]) -> Vec<SearchHit> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| SearchHit {
                root: "/ws".into(),
                chunk: crate::store::StoredChunk {
                    id: crate::store::ChunkId(i as i64),
                    path: format!("src/{n}.rs"),
                    chunk: crate::chunk::Chunk {
                        language: crate::chunk::Language::Rust,
                        kind: crate::chunk::ChunkKind::Function,
                        symbol: n.to_string(),
                        name: n.to_string(),
                        start_byte: 0,
                        end_byte: 1,
                        start_line: 1,
                        end_line: 1,
                        text: "x".into(),
                    },
                },
                score: 1.0,
                explain: Default::default(),
                priors: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_remote_order_stands_above_min_score_and_a_failure_keeps_the_offline_one() {
        let config = OfflineRerankConfig::default();
        let offline = Offline(&config);
        let mut h = hits(&["send", "retry_backoff"]);
        let mut notes = Vec::new();
        let by = rerank("retry backoff", &mut h, 2, &offline, None, 0.0, &mut notes);
        assert_eq!(
            (by.as_str(), h[0].chunk.name.as_str()),
            ("offline", "retry_backoff")
        );
        let o = h[0].explain.offline.expect("offline figures recorded");
        assert_eq!((o.score, o.name, o.fused), (h[0].score, 1.0, 1.0));
        assert_eq!(h[1].explain.offline.map(|o| o.name), Some(0.0));

        let remote = Fixed(Some(vec![(1, 0.9), (0, 0.1)]));
        let by = rerank(
            "retry backoff",
            &mut h,
            2,
            &offline,
            Some(&remote),
            0.5,
            &mut notes,
        );
        assert_eq!(by, "fixed");
        assert_eq!(h.len(), 1, "below min_score is dropped");
        assert_eq!(h[0].explain.remote.as_ref().map(|r| r.score), Some(0.9));
        assert!(h[0].explain.offline.is_some(), "the offline figures stay");
        assert_eq!((h[0].chunk.name.as_str(), h[0].score), ("send", 0.9));
        assert!(notes.is_empty(), "{notes:?}");

        let mut h = hits(&["send", "retry_backoff"]);
        let by = rerank(
            "retry backoff",
            &mut h,
            2,
            &offline,
            Some(&Fixed(None)),
            0.0,
            &mut notes,
        );
        assert_eq!(
            (by.as_str(), h[0].chunk.name.as_str()),
            ("offline", "retry_backoff")
        );
        assert_eq!(notes, vec!["rerank failed (down); using the offline order"]);
    }

    #[test]
    fn functions_are_preferred_over_import_blocks_when_all_else_is_equal() {
        let q = tokenize::terms("cache");
        let scores = offline_scores(
            &q,
            &[
                cand(1.0, "", ChunkKind::Block),
                cand(1.0, "", ChunkKind::Function),
            ],
            &OfflineRerankConfig::default(),
        );
        assert!(scores[1] > scores[0]);
    }
}
