//! Exact scan against the HNSW graph, to choose `index.exact_search_below`: query latency
//! of an exact scan at several sizes (256 dimensions, the built-in embedder's), its
//! memory, and the graph's build time, latency and recall@50 at one size.
//!
//! usage: cargo bench --bench ann [-- SIZES...]   (default 50000 100000 250000 400000)
//! Figures only; nothing is asserted.

use ragls::ann::{LiveSet, VectorIndex};
use ragls::store::ChunkId;
use std::time::Instant;

const DIMS: usize = 256;
const K: usize = 50;
const QUERIES: usize = 200;

fn unit(seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v: Vec<f32> = (0..DIMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Sparse-ish, like a feature-hashing embedding: most components small.
            let u = (x % 10_000) as f32 / 10_000.0;
            if u > 0.8 {
                (u - 0.8) * 5.0 * if x & (1 << 40) != 0 { 1.0 } else { -1.0 }
            } else {
                0.0
            }
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-9);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn percentile(mut ms: Vec<f64>, p: f64) -> f64 {
    ms.sort_by(|a, b| a.total_cmp(b));
    ms[((ms.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if args.is_empty() {
        vec![50_000, 100_000, 250_000, 400_000]
    } else {
        args
    };
    let queries: Vec<Vec<f32>> = (0..QUERIES as u64).map(|q| unit(1 << 40 | q)).collect();
    for &n in &sizes {
        let items: Vec<(ChunkId, Vec<f32>)> = (1..=n as i64)
            .map(|id| (ChunkId(id), unit(id as u64)))
            .collect();
        let live = LiveSet::from_ids(items.iter().map(|(id, _)| *id));
        let t = Instant::now();
        let exact = VectorIndex::exact(DIMS);
        for b in items.chunks(1000) {
            exact.insert(b);
        }
        let build = t.elapsed().as_secs_f64();
        let mut ms = Vec::new();
        for q in &queries {
            let t = Instant::now();
            std::hint::black_box(exact.search(q, K, 0, &live));
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "exact {n:>7} x {DIMS}: build {build:.2} s, {:.1} MB, search median {:.2} ms, p95 {:.2} ms",
            exact.exact_bytes() as f64 / 1e6,
            percentile(ms.clone(), 0.5),
            percentile(ms, 0.95)
        );
        if n == sizes[0] {
            let t = Instant::now();
            let graph = exact.to_graph().expect("a graph");
            let build = t.elapsed().as_secs_f64();
            let (mut ms, mut found) = (Vec::new(), 0usize);
            for q in &queries {
                let t = Instant::now();
                let hits = graph.search(q, K, 64, &live);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                let truth: std::collections::HashSet<ChunkId> = exact
                    .search(q, K, 0, &live)
                    .into_iter()
                    .map(|h| h.0)
                    .collect();
                found += hits.iter().filter(|h| truth.contains(&h.0)).count();
            }
            println!(
                "hnsw  {n:>7} x {DIMS}: build {build:.2} s, search (ef 64) median {:.2} ms, p95 {:.2} ms, recall@{K} {:.2}",
                percentile(ms.clone(), 0.5),
                percentile(ms, 0.95),
                found as f64 / (QUERIES * K) as f64
            );
        }
    }
}
