//! Embedders turn chunk texts and queries into vectors. [`Embedder`] is the seam: the
//! built-in offline embedder implements it here, in-process models in [`local`], the
//! remote provider implements it too (and `provider::embeddings::embedder_for` picks one
//! from the settings).
//!
//! This module does not cache: the store keeps vectors by (embedder id, dimensions, text
//! hash), and the indexer only asks for what the cache lacks.

mod builtin;
pub mod local;

pub use builtin::{BuiltinEmbedder, BUILTIN_DIMENSIONS};

use crate::error::{Error, Result};

/// Something that maps texts to L2-normalised vectors of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// A stable identity for the model and its settings; part of the cache key and the
    /// index metadata, so a change means the vectors are rebuilt, never mixed.
    fn id(&self) -> String;
    /// The vectors' dimension. A remote model whose dimension is not known yet asks the
    /// service once (0 when that fails; see [`Embedder::last_error`]).
    fn dimensions(&self) -> usize;
    /// The dimension if known without asking anyone.
    fn known_dimensions(&self) -> Option<usize> {
        Some(self.dimensions())
    }
    /// Forgets a remembered failure, so the next call may ask the service again (once
    /// per indexing run).
    fn retry(&self) {}
    /// Why the last attempt to learn the dimension failed, if it did.
    fn last_error(&self) -> Option<String> {
        None
    }
    /// How many texts to hand over per call; the caller batches to this.
    fn batch_size(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// A query's vector. Some models embed queries differently from documents.
    fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut v = self.embed(&[query])?;
        v.pop()
            .ok_or_else(|| Error::Other("the embedder returned no vector for the query".into()))
    }
    /// Tells the embedder the dimension an existing index recorded for it, so that an
    /// unchanged workspace needs no request to learn it. Fixed-size embedders ignore it.
    fn assume_dimensions(&self, _dims: usize) {}
    /// Inputs cut to fit the model so far (they are embedded truncated, not dropped).
    fn truncated_inputs(&self) -> usize {
        0
    }
    /// Requests sent to a remote service so far (0 for local embedders).
    fn requests_sent(&self) -> u64 {
        0
    }
    /// Too slow to make anyone wait for (a transformer on the CPU): the index does not
    /// wait for its vectors; they are computed in the background and, for the best
    /// lexical candidates of a query, at query time (`engine::model`).
    fn embeds_in_background(&self) -> bool {
        false
    }
    /// "builtin", "remote" or "local", for status reports.
    fn provider_name(&self) -> &'static str;
    /// The model name, for status reports.
    fn model_name(&self) -> String;
}

/// Scales `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
