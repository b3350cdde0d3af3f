//! Retrieval metrics: recall@1/5/10, MRR@10 and nDCG@10 of ranked results against gold
//! locations, at chunk level and at file level. Pure: queries and results in, figures out.
//!
//! The method is `../shared/eval/score.py`'s, so figures compare with `dev-eval.sh`: at
//! chunk level a result is a hit when it is in a gold file and overlaps the gold line
//! range while spanning at most max(80, 2 x gold) lines (a whole-file result does not
//! "find" a five-line function); a gold entry without lines accepts any result in its
//! file. Only the first hit counts (one relevant item: nDCG@10 is 1/log2(rank + 1)). At
//! file level the results are reduced to their distinct files, in order, and a hit is a
//! gold file.

use serde::{Deserialize, Serialize};

/// Where a query's answer is: a file, or lines of it (1-based, inclusive).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Gold {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_line: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
}

/// One ranked result.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranked {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
}

/// The figures of one level, over all queries.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Scores {
    #[serde(rename = "recall@1")]
    pub recall_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
}

/// How deep the metrics look.
pub const K: usize = 10;

fn same_path(a: &str, b: &str) -> bool {
    a.trim_start_matches("./") == b.trim_start_matches("./")
}

/// Whether a result answers a gold entry at chunk level.
pub fn chunk_hit(r: &Ranked, g: &Gold) -> bool {
    if !same_path(&r.path, &g.path) {
        return false;
    }
    let (Some(gs), Some(ge)) = (g.start_line, g.end_line.or(g.start_line)) else {
        return true;
    };
    let r_len = r.end_line.saturating_sub(r.start_line) + 1;
    let g_len = ge.saturating_sub(gs) + 1;
    r.start_line <= ge && gs <= r.end_line && r_len <= 80.max(2 * g_len)
}

/// The 1-based rank of the first chunk-level hit within the top [`K`].
pub fn chunk_rank(results: &[Ranked], gold: &[Gold]) -> Option<usize> {
    results
        .iter()
        .take(K)
        .position(|r| gold.iter().any(|g| chunk_hit(r, g)))
        .map(|i| i + 1)
}

/// The 1-based rank of the first gold file among the results' distinct files (top [`K`]).
pub fn file_rank(results: &[Ranked], gold: &[Gold]) -> Option<usize> {
    let mut files: Vec<&str> = Vec::new();
    for r in results {
        if !files.iter().any(|f| same_path(f, &r.path)) {
            files.push(&r.path);
        }
    }
    files
        .iter()
        .take(K)
        .position(|f| gold.iter().any(|g| same_path(f, &g.path)))
        .map(|i| i + 1)
}

/// Averages per-query ranks (`None`: not found in the top [`K`]) into the figures.
pub fn scores(ranks: &[Option<usize>]) -> Scores {
    let n = ranks.len().max(1) as f64;
    let mut s = Scores::default();
    for rank in ranks.iter().flatten() {
        let r = *rank;
        s.recall_1 += f64::from(u8::from(r <= 1));
        s.recall_5 += f64::from(u8::from(r <= 5));
        s.recall_10 += f64::from(u8::from(r <= 10));
        s.mrr_10 += 1.0 / r as f64;
        s.ndcg_10 += 1.0 / (r as f64 + 1.0).log2();
    }
    let round = |x: f64| (x / n * 10_000.0).round() / 10_000.0;
    Scores {
        recall_1: round(s.recall_1),
        recall_5: round(s.recall_5),
        recall_10: round(s.recall_10),
        mrr_10: round(s.mrr_10),
        ndcg_10: round(s.ndcg_10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(path: &str, start: u32, end: u32) -> Ranked {
        Ranked {
            path: path.into(),
            start_line: start,
            end_line: end,
        }
    }

    fn g(path: &str, lines: Option<(u32, u32)>) -> Gold {
        Gold {
            path: path.into(),
            start_line: lines.map(|l| l.0),
            end_line: lines.map(|l| l.1),
        }
    }

    #[test]
    fn a_hit_overlaps_the_gold_lines_without_being_much_longer() {
        let gold = g("src/a.rs", Some((10, 14)));
        assert!(chunk_hit(&r("src/a.rs", 12, 30), &gold));
        assert!(
            chunk_hit(&r("./src/a.rs", 1, 80), &gold),
            "80 lines are allowed"
        );
        assert!(
            !chunk_hit(&r("src/a.rs", 1, 81), &gold),
            "a whole file is not a hit"
        );
        assert!(!chunk_hit(&r("src/a.rs", 15, 20), &gold), "no overlap");
        assert!(!chunk_hit(&r("src/b.rs", 10, 14), &gold));
        let long = g("src/a.rs", Some((100, 199)));
        assert!(
            chunk_hit(&r("src/a.rs", 1, 200), &long),
            "up to twice the gold"
        );
        assert!(
            chunk_hit(&r("src/a.rs", 500, 900), &g("src/a.rs", None)),
            "whole-file gold"
        );
    }

    #[test]
    fn file_level_ranks_distinct_files() {
        let results = [
            r("a.rs", 1, 5),
            r("a.rs", 9, 12),
            r("b.rs", 1, 3),
            r("c.rs", 1, 2),
        ];
        assert_eq!(file_rank(&results, &[g("b.rs", Some((40, 50)))]), Some(2));
        assert_eq!(chunk_rank(&results, &[g("b.rs", Some((40, 50)))]), None);
        assert_eq!(chunk_rank(&results, &[g("a.rs", Some((10, 10)))]), Some(2));
        assert_eq!(file_rank(&results, &[g("z.rs", None)]), None);
    }

    #[test]
    fn figures_match_hand_computed_ones() {
        // Ranks 1, 3, 6, missing: recall@1 1/4, @5 2/4, @10 3/4;
        // MRR (1 + 1/3 + 1/6) / 4 = 0.375; nDCG (1/log2(2) + 1/log2(4) + 1/log2(7)) / 4
        // = (1 + 0.5 + 0.35621) / 4 = 0.46405.
        let s = scores(&[Some(1), Some(3), Some(6), None]);
        assert_eq!(
            s,
            Scores {
                recall_1: 0.25,
                recall_5: 0.5,
                recall_10: 0.75,
                mrr_10: 0.375,
                ndcg_10: 0.4641,
            }
        );
        assert_eq!(scores(&[]), Scores::default());
    }
}
