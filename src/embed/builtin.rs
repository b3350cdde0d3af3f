//! The built-in embedder: no download, no network, deterministic. A text becomes the
//! signed feature-hashing projection of its code-aware terms (see `tokenize`) and of the
//! character trigrams of those terms, with sub-linear term frequencies, L2-normalised.
//!
//! Terms give exact-word similarity; trigrams let `tokenizer` meet `tokenize` and
//! `utf8` meet `utf-8`. The first two lines of an embedding text (path and symbol path)
//! count double, since they name what the chunk is.

use super::{normalize, Embedder};
use crate::error::Result;
use crate::tokenize;
use rayon::prelude::*;

/// Chosen by measurement on `../shared/eval/dev-eval.sh` (see README, "Retrieval quality").
pub const BUILTIN_DIMENSIONS: usize = 256;

/// Changing the features changes this version, so old vectors are never mixed with new.
const FEATURE_VERSION: u32 = 1;
const TRIGRAM_WEIGHT: f32 = 0.35;
const HEAD_WEIGHT: f32 = 2.0;

#[derive(Clone, Debug)]
pub struct BuiltinEmbedder {
    dims: usize,
}

impl BuiltinEmbedder {
    pub fn new(dims: usize) -> Self {
        BuiltinEmbedder { dims: dims.max(8) }
    }

    /// The vector of one text (pure; the unit of work that `embed` runs in parallel).
    pub fn vector(&self, text: &str) -> Vec<f32> {
        // (feature hash, weight) pairs, summed per feature after a sort: no hash map, and
        // the same order of additions in every process (bit-identical vectors).
        let mut features: Vec<(u64, f32)> = Vec::with_capacity(text.len() / 2);
        let (head, body) = split_head(text);
        let mut padded = Vec::with_capacity(48);
        add_terms(&mut features, &mut padded, head, HEAD_WEIGHT);
        add_terms(&mut features, &mut padded, body, 1.0);
        // Stable: each feature's weights add up in the order they came.
        features.sort_by_key(|(hash, _)| *hash);
        let mut v = vec![0.0f32; self.dims];
        let mut i = 0;
        while i < features.len() {
            let hash = features[i].0;
            let mut weight = 0.0f32;
            while i < features.len() && features[i].0 == hash {
                weight += features[i].1;
                i += 1;
            }
            let slot = (hash % self.dims as u64) as usize;
            let sign = if (hash >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            // Sub-linear term frequency: ten mentions are not ten times the evidence.
            v[slot] += sign * weight.ln_1p();
        }
        normalize(&mut v);
        v
    }
}

/// The first two lines (path, symbol path) and the rest.
fn split_head(text: &str) -> (&str, &str) {
    let mut cut = 0;
    for _ in 0..2 {
        match text[cut..].find('\n') {
            Some(i) => cut += i + 1,
            None => return (text, ""),
        }
    }
    (&text[..cut], &text[cut..])
}

/// Appends the features of `text`'s terms: each term, and the character trigrams of
/// terms of 3 bytes or more (with `^`/`$` marking the ends). `padded` is scratch space.
fn add_terms(features: &mut Vec<(u64, f32)>, padded: &mut Vec<u8>, text: &str, weight: f32) {
    tokenize::for_each_term(text, |term| {
        features.push((fnv1a(term.as_bytes(), 0), weight));
        let bytes = term.as_bytes();
        if bytes.len() >= 3 {
            padded.clear();
            padded.push(b'^');
            padded.extend_from_slice(bytes);
            padded.push(b'$');
            for gram in padded.windows(3) {
                features.push((fnv1a(gram, 1), weight * TRIGRAM_WEIGHT));
            }
        }
    });
}

/// FNV-1a, seeded so that words and trigrams hash apart. Stable across platforms and
/// releases (the vectors are cached on disk), which `std`'s hasher does not promise.
fn fnv1a(bytes: &[u8], seed: u8) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Final mix so that the low bits (the slot) and the top bit (the sign) are independent.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

impl Embedder for BuiltinEmbedder {
    fn id(&self) -> String {
        format!("builtin:hash-v{FEATURE_VERSION}")
    }
    fn dimensions(&self) -> usize {
        self.dims
    }
    fn batch_size(&self) -> usize {
        256
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.par_iter().map(|t| self.vector(t)).collect())
    }
    /// On the calling thread: a parallel iterator would queue the query behind whatever
    /// the thread pool is doing (a server's indexing) for a few microseconds of work.
    fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        Ok(self.vector(query))
    }
    fn provider_name(&self) -> &'static str {
        "builtin"
    }
    fn model_name(&self) -> String {
        format!("builtin-hash-v{FEATURE_VERSION}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::dot;

    #[test]
    fn vectors_are_deterministic_and_unit_length() {
        let e = BuiltinEmbedder::new(256);
        let a = e.vector("src/lib.rs\nfn parse\nfn parse(input: &str) {}");
        assert_eq!(
            a,
            e.vector("src/lib.rs\nfn parse\nfn parse(input: &str) {}")
        );
        assert_eq!(a.len(), 256);
        assert!((dot(&a, &a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn related_texts_are_closer_than_unrelated_ones() {
        let e = BuiltinEmbedder::new(256);
        let query = e.vector("parse an http request");
        let related = e.vector(
            "src/http.rs\nfn parse_http_request\nfn parse_http_request(buf: &[u8]) -> Request {}",
        );
        let unrelated = e.vector("src/color.rs\nfn blend\nfn blend(a: Rgb, b: Rgb) -> Rgb {}");
        assert!(dot(&query, &related) > dot(&query, &unrelated) + 0.2);
    }

    #[test]
    fn trigrams_bridge_word_variants() {
        let e = BuiltinEmbedder::new(256);
        let q = e.vector("tokenizer");
        assert!(dot(&q, &e.vector("tokenize the input")) > dot(&q, &e.vector("render the output")));
    }

    #[test]
    fn empty_text_gives_a_zero_vector_not_nan() {
        let v = BuiltinEmbedder::new(64).vector("");
        assert!(v.iter().all(|x| *x == 0.0));
    }

    /// The hash-map formulation the sorted one replaced: same features, same weights.
    fn reference_vector(dims: usize, text: &str) -> Vec<f32> {
        let mut features: std::collections::HashMap<u64, f32> = Default::default();
        let (head, body) = split_head(text);
        for (part, weight) in [(head, HEAD_WEIGHT), (body, 1.0)] {
            for term in tokenize::terms(part) {
                *features.entry(fnv1a(term.as_bytes(), 0)).or_default() += weight;
                if term.len() >= 3 {
                    let padded = format!("^{term}$");
                    for gram in padded.as_bytes().windows(3) {
                        *features.entry(fnv1a(gram, 1)).or_default() += weight * TRIGRAM_WEIGHT;
                    }
                }
            }
        }
        let mut v = vec![0.0f32; dims];
        for (hash, weight) in features {
            let sign = if (hash >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            v[(hash % dims as u64) as usize] += sign * weight.ln_1p();
        }
        normalize(&mut v);
        v
    }

    #[test]
    fn sorted_features_give_the_hash_map_vector() {
        let e = BuiltinEmbedder::new(256);
        for text in [
            "src/http/request.rs\nimpl Request > fn parse\nfn parse(buf: &[u8]) -> Request { parse_http(buf) }",
            "README.md\nInstall > From source\nRun `cargo install ragls` and parse, parse, parse.",
            "a.rs\nfn x",
        ] {
            let (a, b) = (e.vector(text), reference_vector(256, text));
            assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6), "{text:?}");
        }
    }
}
