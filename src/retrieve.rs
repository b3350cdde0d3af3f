//! Hybrid retrieval's pure core: fusing a lexical ranking and a vector ranking into one.
//!
//! Two fusions, chosen in settings (`retrieve.fusion`): weighted z-score fusion (each
//! list's scores standardised, shifted so its weakest candidate contributes 0, weighted
//! and summed; a candidate absent from a list gets 0 from it) and reciprocal rank fusion.
//! Measured on `../shared/eval/dev-eval.sh`, weighted fusion wins: a weak signal's ranks
//! count as much as a strong one's under RRF, its standardised scores do not.
//! [`hybrid`] fetches the candidates (BM25 from the store, nearest neighbours from the
//! vector index) and fuses them; everything else here is pure.

use crate::config::{Fusion, RetrieveConfig};
use crate::embed::Embedder;
use crate::error::Result;
use crate::store::{ChunkId, Identity, StoredChunk};
use crate::tokenize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

pub mod explain;
pub use explain::{Explain, Ranked};
pub mod priors;
mod sources;
pub use sources::{CandidateSource, LocalIndex, Ranking, RankingQuery, Rankings, SharedSnapshot};

/// How to order the fused candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rerank {
    /// The fused order.
    None,
    /// The offline scorer only: no request, for latency-bound callers (hover).
    Offline,
    /// The remote cross-encoder when configured (falling back to offline), else offline.
    Best,
}

/// What retrieval found, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieval {
    pub hits: Vec<SearchHit>,
    /// Fallbacks taken (no vector search, rerank failed...), in words.
    pub notes: Vec<String>,
    /// "offline", or the remote rerank model; `None` when not reranked.
    pub reranked_by: Option<String>,
    pub retrieve_ms: u64,
    pub rerank_ms: Option<u64>,
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// The workspace folder (index root) the chunk belongs to; its path is relative to it.
    pub root: PathBuf,
    pub chunk: StoredChunk,
    pub score: f32,
    /// Why it ranked here: the figures of fusion and rerank ([`explain`]).
    pub explain: Explain,
    /// The ranking priors that changed `score` after fusion, and by how much
    /// (see [`priors`]); empty when none did.
    pub priors: Vec<priors::PriorEffect>,
}

/// One candidate after fusion, with the scores it came from (for the reranker and for
/// explaining a result).
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    pub id: ChunkId,
    pub score: f32,
    /// The raw score and 1-based rank in each list; `None` when absent from it.
    pub lexical: Option<Ranked>,
    pub vector: Option<Ranked>,
}

/// Where one index's candidates come from.
pub struct Candidates<'a> {
    /// The folder the index covers; every hit carries it.
    pub root: &'a Path,
    /// The index read: the local one (SQLite and the HNSW graph), or a shared snapshot.
    pub source: &'a dyn CandidateSource,
    /// Embeds the query for the vector search.
    pub embedder: &'a dyn Embedder,
    /// The question's query embedding, shared by every index it asks (one request to a
    /// remote embedder per question, not one per index).
    pub query_vector: &'a QueryVector,
    /// Also score every lexical candidate that has a vector by its exact cosine, not only
    /// what the graph returns: for a model whose vectors cover the index only partly
    /// (still embedding in the background), this is how they count at once.
    pub rescore_lexical: bool,
    /// Weight of a third list, the built-in hashed embedder's cosine over the fused
    /// candidates (computed at query time from their text; 0 = off): with a local model it
    /// adds the character-level signal the model lacks (`retrieve.model_hashed_weight`).
    pub hashed_weight: f32,
}

/// A question's query embedding: computed by the first index that needs it, then
/// reused by the others (the local overlay and the shared ref ask the same question).
#[derive(Default)]
pub struct QueryVector(std::cell::OnceCell<std::result::Result<Vec<f32>, String>>);

impl QueryVector {
    /// The embedding of `query`, embedding it on first use; `None` when that failed
    /// (said once in `notes`, by the first caller).
    fn get(&self, embedder: &dyn Embedder, query: &str, notes: &mut Vec<String>) -> Option<&[f32]> {
        let mut failed = None;
        let got = self.0.get_or_init(|| {
            embedder.embed_query(query).map_err(|e| {
                let why = e.to_string();
                failed = Some(why.clone());
                why
            })
        });
        if let Some(why) = failed {
            notes.push(format!(
                "vector search unavailable ({why}); lexical results only"
            ));
        }
        got.as_deref().ok()
    }
}

/// Hybrid search: the lexical (BM25) and vector candidates for `query`, fused, adjusted
/// by the ranking priors ([`priors::apply`]), the best `pool` loaded as hits, best first.
/// When the query cannot be embedded the lexical results stand alone and `notes` says so.
pub fn hybrid(
    c: &Candidates<'_>,
    query: &str,
    pool: usize,
    rc: &RetrieveConfig,
    notes: &mut Vec<String>,
) -> Result<Vec<SearchHit>> {
    let terms = tokenize::terms(query);
    let embedded = match c.source.searches_vectors() {
        true => c.query_vector.get(c.embedder, query, notes),
        false => None,
    };
    let Rankings {
        lexical,
        mut vector,
        chunks: mut rows,
    } = c.source.rankings(&RankingQuery {
        terms: &terms,
        lexical_limit: rc.lexical_candidates,
        head_weight: rc.head_weight,
        vector: embedded,
        vector_limit: rc.vector_candidates,
        ef: rc.ef_search,
        // Where texts are read apart, the pool's come with the rankings, most likely.
        texts_top: pool,
    })?;
    if let (Some(q), true) = (&embedded, c.rescore_lexical) {
        rescore_lexical(c, q, &lexical, &mut vector)?;
    }
    let mut fused = fuse(&lexical, &vector, rc);
    // The priors may lift a candidate from below the pool, so all candidates are loaded
    // (at most lexical_candidates + vector_candidates).
    let ids: Vec<ChunkId> = fused
        .iter()
        .map(|f| f.id)
        .filter(|id| !rows.contains_key(id))
        .collect();
    if !ids.is_empty() {
        rows.extend(c.source.chunks(&ids)?);
    }
    if c.hashed_weight > 0.0 {
        add_hashed(query, &mut fused, &rows, c.hashed_weight, rc)?;
    }
    let mut hits: Vec<SearchHit> = fused
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            rows.remove(&f.id).map(|chunk| SearchHit {
                root: c.root.to_path_buf(),
                chunk,
                score: f.score,
                explain: Explain {
                    lexical: f.lexical,
                    vector: f.vector,
                    fused: Ranked {
                        score: f.score,
                        rank: i + 1,
                    },
                    ..Explain::default()
                },
                priors: Vec::new(),
            })
        })
        .collect();
    priors::apply(query, &mut hits, rc);
    hits.truncate(pool);
    c.source.fill_texts(&mut hits)?;
    Ok(hits)
}

/// Adds the built-in hashed embedder's z-scored cosine between the query and each fused
/// candidate's embedding text, weighted, to its fused score, and re-sorts.
fn add_hashed(
    query: &str,
    fused: &mut [Fused],
    rows: &HashMap<ChunkId, StoredChunk>,
    weight: f32,
    rc: &RetrieveConfig,
) -> Result<()> {
    use crate::embed::{BuiltinEmbedder, BUILTIN_DIMENSIONS};
    let hashed = BuiltinEmbedder::new(BUILTIN_DIMENSIONS);
    let q = hashed.embed_query(query)?;
    let present: Vec<(ChunkId, String)> = fused
        .iter()
        .filter_map(|f| {
            rows.get(&f.id).map(|r| {
                (
                    f.id,
                    crate::chunk::embedding_text(&r.path, &r.chunk.symbol, &r.chunk.text),
                )
            })
        })
        .collect();
    let texts: Vec<&str> = present.iter().map(|(_, t)| t.as_str()).collect();
    let vectors = hashed.embed(&texts)?;
    let mut list: Vec<(ChunkId, f32)> = present
        .iter()
        .zip(&vectors)
        .map(|((id, _), v)| (*id, crate::ann::dot(&q, v)))
        .collect();
    list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let by_id: HashMap<ChunkId, f32> = list
        .iter()
        .map(|(id, _)| *id)
        .zip(contributions(&list, rc, weight))
        .collect();
    for f in fused.iter_mut() {
        f.score += by_id.get(&f.id).copied().unwrap_or(0.0);
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    Ok(())
}

/// Adds to `vector` the exact cosine of each lexical candidate that has a stored vector
/// and that the graph did not return, keeping it best first.
fn rescore_lexical(
    c: &Candidates<'_>,
    query: &[f32],
    lexical: &[(ChunkId, f32)],
    vector: &mut Vec<(ChunkId, f32)>,
) -> Result<()> {
    let identity = Identity {
        embedder: c.embedder.id(),
        dimensions: query.len(),
    };
    let returned: HashSet<ChunkId> = vector.iter().map(|(id, _)| *id).collect();
    let others: Vec<ChunkId> = lexical
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !returned.contains(id))
        .collect();
    let have = c.source.vectors_of(&identity, &others)?;
    vector.extend(have.iter().map(|(id, v)| (*id, crate::ann::dot(query, v))));
    vector.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(())
}

/// Merges the retrievals of several indexes (workspace folders) into one: hits by score
/// (ties keep the indexes' order), the best `top_k`; notes in order; the first reranker
/// named; the slowest times (the indexes are searched side by side). Each hit keeps its
/// own `root`, so equal relative paths in two folders stay apart.
pub fn merge(per_index: Vec<Retrieval>, top_k: usize) -> Retrieval {
    let mut merged = Retrieval {
        hits: Vec::new(),
        notes: Vec::new(),
        reranked_by: None,
        retrieve_ms: 0,
        rerank_ms: None,
    };
    for r in per_index {
        merged.hits.extend(r.hits);
        merged.notes.extend(r.notes);
        merged.reranked_by = merged.reranked_by.or(r.reranked_by);
        merged.retrieve_ms = merged.retrieve_ms.max(r.retrieve_ms);
        merged.rerank_ms = merged.rerank_ms.max(r.rerank_ms);
    }
    merged.hits.sort_by(|a, b| b.score.total_cmp(&a.score));
    merged.hits.truncate(top_k);
    merged
}

/// Fuses two rankings (each best first, higher score better) into one, best first.
/// Ties break by chunk id so results are deterministic.
pub fn fuse(
    lexical: &[(ChunkId, f32)],
    vector: &[(ChunkId, f32)],
    config: &RetrieveConfig,
) -> Vec<Fused> {
    let mut by_id: HashMap<ChunkId, Fused> = HashMap::new();
    let lex = contributions(lexical, config, config.lexical_weight);
    let vec = contributions(vector, config, config.vector_weight);
    // Lexical first, then vector: the order the scores are summed in.
    for (ranking, contrib, is_lexical) in [(lexical, lex, true), (vector, vec, false)] {
        for (rank, ((id, raw), c)) in ranking.iter().zip(contrib).enumerate() {
            let f = by_id.entry(*id).or_insert(Fused {
                id: *id,
                score: 0.0,
                lexical: None,
                vector: None,
            });
            f.score += c;
            let ranked = Some(Ranked {
                score: *raw,
                rank: rank + 1,
            });
            if is_lexical {
                f.lexical = ranked;
            } else {
                f.vector = ranked;
            }
        }
    }
    let mut out: Vec<Fused> = by_id.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

fn contributions(list: &[(ChunkId, f32)], config: &RetrieveConfig, weight: f32) -> Vec<f32> {
    match config.fusion {
        Fusion::Rrf => (0..list.len())
            .map(|rank| weight / (config.rrf_k + rank as f32 + 1.0))
            .collect(),
        Fusion::Weighted => {
            if list.is_empty() {
                return Vec::new();
            }
            let n = list.len() as f32;
            let mean = list.iter().map(|(_, s)| s).sum::<f32>() / n;
            let var = list.iter().map(|(_, s)| (s - mean).powi(2)).sum::<f32>() / n;
            let std = var.sqrt();
            if std < 1e-9 {
                // One candidate, or all equal: each gets the full weight.
                return vec![weight; list.len()];
            }
            let min = list.iter().map(|(_, s)| *s).fold(f32::INFINITY, f32::min);
            list.iter().map(|(_, s)| weight * (s - min) / std).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(root: &str, path: &str, score: f32) -> SearchHit {
        SearchHit {
            root: PathBuf::from(root),
            chunk: StoredChunk {
                id: ChunkId(1),
                path: path.into(),
                chunk: crate::chunk::Chunk::test_function("x"),
            },
            score,
            explain: Explain::default(),
            priors: Vec::new(),
        }
    }

    fn retrieval(hits: Vec<SearchHit>, note: &str, ms: u64) -> Retrieval {
        Retrieval {
            hits,
            notes: vec![note.to_string()],
            reranked_by: Some("offline".into()),
            retrieve_ms: ms,
            rerank_ms: Some(ms),
        }
    }

    #[test]
    fn merging_folders_keeps_each_hits_root_and_the_best_scores() {
        let a = retrieval(
            vec![hit("/a", "src/lib.rs", 0.9), hit("/a", "src/x.rs", 0.2)],
            "a",
            5,
        );
        let b = retrieval(vec![hit("/b", "src/lib.rs", 0.5)], "b", 7);
        let m = merge(vec![a, b], 2);
        let got: Vec<(&str, &str)> = m
            .hits
            .iter()
            .map(|h| (h.root.to_str().unwrap(), h.chunk.path.as_str()))
            .collect();
        assert_eq!(got, vec![("/a", "src/lib.rs"), ("/b", "src/lib.rs")]);
        assert_eq!(m.notes, vec!["a", "b"]);
        assert_eq!((m.retrieve_ms, m.rerank_ms), (7, Some(7)));
        assert_eq!(m.reranked_by.as_deref(), Some("offline"));
        assert!(merge(Vec::new(), 3).hits.is_empty());
    }

    fn config(fusion: Fusion) -> RetrieveConfig {
        RetrieveConfig {
            fusion,
            lexical_weight: 1.0,
            vector_weight: 1.0,
            ..RetrieveConfig::default()
        }
    }

    #[test]
    fn a_candidate_in_both_lists_beats_one_in_either() {
        let lexical = [(ChunkId(1), 10.0), (ChunkId(2), 8.0), (ChunkId(3), 1.0)];
        let vector = [(ChunkId(4), 0.9), (ChunkId(2), 0.85), (ChunkId(5), 0.1)];
        for fusion in [Fusion::Weighted, Fusion::Rrf] {
            let fused = fuse(&lexical, &vector, &config(fusion));
            assert_eq!(fused[0].id, ChunkId(2), "{fusion:?}: {fused:?}");
            assert_eq!(
                fused[0].lexical,
                Some(Ranked {
                    score: 8.0,
                    rank: 2
                })
            );
            assert_eq!(
                fused[0].vector,
                Some(Ranked {
                    score: 0.85,
                    rank: 2
                })
            );
            let only_vector = fused.iter().find(|f| f.id == ChunkId(4)).unwrap();
            assert_eq!(only_vector.lexical, None);
            assert_eq!(only_vector.vector.map(|r| r.rank), Some(1));
            assert_eq!(fused.len(), 5);
        }
    }

    #[test]
    fn weighted_fusion_follows_score_gaps_rrf_only_ranks() {
        // The lexical list is decisive (one clear winner); the vector list ranks that
        // winner third, close behind two others.
        let lexical = [
            (ChunkId(1), 30.0),
            (ChunkId(2), 3.0),
            (ChunkId(3), 2.9),
            (ChunkId(4), 2.8),
        ];
        let vector = [
            (ChunkId(2), 0.8),
            (ChunkId(3), 0.7),
            (ChunkId(1), 0.6),
            (ChunkId(4), 0.2),
        ];
        let weighted = fuse(&lexical, &vector, &config(Fusion::Weighted));
        assert_eq!(weighted[0].id, ChunkId(1), "{weighted:?}");
        let rrf = fuse(&lexical, &vector, &config(Fusion::Rrf));
        assert_eq!(
            rrf[0].id,
            ChunkId(2),
            "RRF lets the flat list drag the clear winner down: {rrf:?}"
        );
    }

    #[test]
    fn the_hashed_list_lifts_the_candidate_whose_text_resembles_the_query() {
        let row = |id: i64, path: &str, text: &str| {
            let mut h = hit("/a", path, 0.0).chunk;
            h.id = ChunkId(id);
            h.chunk.text = text.into();
            (ChunkId(id), h)
        };
        let rows: HashMap<ChunkId, StoredChunk> = [
            row(
                1,
                "src/colors.rs",
                "fn blend(a: Rgb, b: Rgb) -> Rgb { a.mix(b) }",
            ),
            row(
                2,
                "src/http.rs",
                "fn parse_request_line(line: &str) -> Request",
            ),
            row(3, "src/area.rs", "fn disc(radius: f64) -> f64"),
        ]
        .into_iter()
        .collect();
        let tie = |id: i64| Fused {
            id: ChunkId(id),
            score: 1.0,
            lexical: None,
            vector: None,
        };
        let mut fused = vec![tie(1), tie(2), tie(3)];
        let rc = config(Fusion::Weighted);
        add_hashed("parse the request line", &mut fused, &rows, 0.5, &rc).unwrap();
        assert_eq!(fused[0].id, ChunkId(2), "{fused:?}");
        assert!(fused[0].score > 1.0 && fused[2].score >= 1.0, "{fused:?}");
    }

    #[test]
    fn empty_lists_fuse_to_nothing_and_one_list_keeps_its_order() {
        assert!(fuse(&[], &[], &config(Fusion::Weighted)).is_empty());
        let only = fuse(
            &[(ChunkId(7), 3.0), (ChunkId(8), 2.0), (ChunkId(9), 1.0)],
            &[],
            &config(Fusion::Weighted),
        );
        assert_eq!(
            only.iter().map(|f| f.id).collect::<Vec<_>>(),
            [7, 8, 9].map(ChunkId)
        );
    }
}
