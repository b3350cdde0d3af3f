//! Why a hit ranked where it did (`ragls search --explain`, `rag/search` and
//! `search_code` with `explain`): the figures recorded where they are computed — the
//! candidate lists and the fusion in [`super::hybrid`], the offline scorer and the
//! cross-encoder in `rerank::rerank` — carried on the hit in one [`Explain`]. The fronts
//! only render it ([`to_json`], [`lines`]), with the ranking priors the hit records
//! ([`SearchHit::priors`]). Pure.

use super::priors::{Prior, PriorEffect};
use super::SearchHit;
use serde::Serialize;
use serde_json::Value;

/// A score and its 1-based rank in the list it came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Ranked {
    pub score: f32,
    pub rank: usize,
}

/// The offline scorer's features of one hit, each in [0, 1] (see `rerank`), and the
/// weighted sum it scored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct OfflineScore {
    pub score: f32,
    /// The score it had before (fused, after any prior) as a share of the best candidate's.
    pub fused: f32,
    /// How much of the query the chunk's name, symbol path and file path cover.
    pub name: f32,
    pub symbol: f32,
    pub path: f32,
    /// The prior on the chunk's kind.
    pub kind: f32,
}

/// The cross-encoder's score of one hit.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RemoteScore {
    pub model: String,
    pub score: f32,
}

/// Why one hit ranked where it did. Ranks are within the hit's own folder's candidates.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Explain {
    /// BM25 score and rank among the lexical candidates; `None`: not a lexical candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lexical: Option<Ranked>,
    /// Cosine similarity and rank among the vector candidates; `None`: not one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Ranked>,
    /// The fused score and rank (before priors and rerank).
    pub fused: Ranked,
    /// The offline scorer's features and score, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<OfflineScore>,
    /// The cross-encoder's score, when its order stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteScore>,
}

/// A hit's explanation as JSON (the same object in the CLI, `rag/search` and MCP):
/// `{lexical?: {score, rank}, vector?: {score, rank}, fused: {score, rank},
/// priors?: [{prior, delta}], offline?: {score, fused, name, symbol, path, kind},
/// remote?: {model, score}}`; `priors` are applied in order after fusion, before rerank.
pub fn to_json(hit: &SearchHit) -> Value {
    let mut v = serde_json::to_value(&hit.explain).unwrap_or(Value::Null);
    if !hit.priors.is_empty() {
        v["priors"] = hit
            .priors
            .iter()
            .map(|p| serde_json::json!({"prior": prior_name(p.prior), "delta": p.delta}))
            .collect();
    }
    v
}

/// The name of a prior as the output says it (the setting it comes from is in README).
pub fn prior_name(p: Prior) -> &'static str {
    match p {
        Prior::Secondary => "secondary",
        Prior::Diversity => "diversity",
        Prior::Identifier => "identifier",
    }
}

fn priors_text(priors: &[PriorEffect]) -> String {
    priors
        .iter()
        .map(|p| format!("{} {:+.3}", prior_name(p.prior), p.delta))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The same with every number rounded to 3 decimals (MCP: an agent's tokens).
pub fn to_compact_json(hit: &SearchHit) -> Value {
    let mut v = to_json(hit);
    round(&mut v);
    v
}

fn round(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64() {
                *v = serde_json::json!((x * 1000.0).round() / 1000.0);
            }
        }
        Value::Object(m) => m.values_mut().for_each(round),
        Value::Array(a) => a.iter_mut().for_each(round),
        _ => {}
    }
}

/// A hit's explanation in words, one line per stage, for people.
pub fn lines(hit: &SearchHit) -> Vec<String> {
    let e = &hit.explain;
    let ranked = |r: &Option<Ranked>, what: &str| match r {
        Some(r) => format!("{what} {:.3} (rank {})", r.score, r.rank),
        None => "not a candidate".to_string(),
    };
    let mut out = vec![
        format!("lexical: {}", ranked(&e.lexical, "bm25")),
        format!("vector:  {}", ranked(&e.vector, "cosine")),
        format!("fused:   {:.3} (rank {})", e.fused.score, e.fused.rank),
    ];
    if !hit.priors.is_empty() {
        out.push(format!("priors:  {}", priors_text(&hit.priors)));
    }
    if let Some(o) = &e.offline {
        out.push(format!(
            "offline rerank: {:.3} (fused share {:.2}, name {:.2}, symbol {:.2}, path {:.2}, kind {:.2})",
            o.score, o.fused, o.name, o.symbol, o.path, o.kind
        ));
    }
    if let Some(r) = &e.remote {
        out.push(format!("cross-encoder {}: {:.3}", r.model, r.score));
    }
    out
}

/// The same in one short line (MCP's text).
pub fn summary(hit: &SearchHit) -> String {
    let e = &hit.explain;
    let mut parts = Vec::new();
    if let Some(r) = e.lexical {
        parts.push(format!("bm25 {:.2} #{}", r.score, r.rank));
    }
    if let Some(r) = e.vector {
        parts.push(format!("vector {:.3} #{}", r.score, r.rank));
    }
    parts.push(format!("fused {:.3} #{}", e.fused.score, e.fused.rank));
    if !hit.priors.is_empty() {
        parts.push(format!("prior {}", priors_text(&hit.priors)));
    }
    if let Some(o) = &e.offline {
        parts.push(format!("offline {:.3}", o.score));
    }
    if let Some(r) = &e.remote {
        parts.push(format!("cross-encoder {:.3}", r.score));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(explain: Explain) -> SearchHit {
        SearchHit {
            root: "/ws".into(),
            chunk: crate::store::StoredChunk {
                id: crate::store::ChunkId(1),
                path: "src/lib.rs".into(),
                chunk: crate::chunk::Chunk {
                    language: crate::chunk::Language::Rust,
                    kind: crate::chunk::ChunkKind::Function,
                    symbol: "parse".into(),
                    name: "parse".into(),
                    start_byte: 0,
                    end_byte: 1,
                    start_line: 1,
                    end_line: 1,
                    text: "x".into(),
                },
            },
            score: 1.0,
            explain,
            priors: Vec::new(),
        }
    }

    #[test]
    fn absent_stages_are_absent_and_numbers_round_in_the_compact_form() {
        let h = hit(Explain {
            lexical: Some(Ranked {
                score: 12.345678,
                rank: 1,
            }),
            vector: None,
            fused: Ranked {
                score: 1.0,
                rank: 2,
            },
            offline: None,
            remote: Some(RemoteScore {
                model: "m".into(),
                score: 0.5,
            }),
        });
        let v = to_compact_json(&h);
        assert_eq!(v["lexical"]["score"], serde_json::json!(12.346));
        assert_eq!(v["lexical"]["rank"], 1);
        assert!(v.get("vector").is_none() && v.get("offline").is_none());
        assert_eq!(v["remote"]["model"], "m");
        let l = lines(&h);
        assert_eq!(l[0], "lexical: bm25 12.346 (rank 1)");
        assert_eq!(l[1], "vector:  not a candidate");
        assert_eq!(
            summary(&h),
            "bm25 12.35 #1, fused 1.000 #2, cross-encoder 0.500"
        );
        assert!(v.get("priors").is_none());

        let mut h = h;
        h.priors = vec![PriorEffect {
            prior: Prior::Secondary,
            delta: -0.5,
        }];
        let v = to_json(&h);
        assert_eq!(v["priors"][0]["prior"], "secondary");
        assert_eq!(v["priors"][0]["delta"], -0.5);
        assert_eq!(lines(&h)[3], "priors:  secondary -0.500");
        assert!(summary(&h).contains("fused 1.000 #2, prior secondary -0.500"));
    }
}
