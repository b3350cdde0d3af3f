//! Embedders turn chunk texts and queries into vectors. [`Embedder`] is the seam: the
//! built-in offline embedder implements it here, the remote provider implements it too.
//!
//! This module does not cache: the store keeps vectors by (embedder id, dimensions, text
//! hash), and the indexer only asks for what the cache lacks.

mod builtin;

pub use builtin::{BuiltinEmbedder, BUILTIN_DIMENSIONS};

use crate::config::{Config, EmbeddingProvider};
use crate::error::{Error, Result};

/// Something that maps texts to L2-normalised vectors of a fixed dimension.
pub trait Embedder: Send + Sync {
    /// A stable identity for the model and its settings; part of the cache key and the
    /// index metadata, so a change means the vectors are rebuilt, never mixed.
    fn id(&self) -> String;
    fn dimensions(&self) -> usize;
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
    /// "builtin", "remote" or "local", for status reports.
    fn provider_name(&self) -> &'static str;
    /// The model name, for status reports.
    fn model_name(&self) -> String;
}

/// Picks the embedder the settings ask for. Until the remote provider lands, `auto`
/// means the built-in embedder; `remote`/`local` are refused with a clear reason.
pub fn from_config(config: &Config) -> Result<Box<dyn Embedder>> {
    match config.embedding.provider {
        EmbeddingProvider::Auto | EmbeddingProvider::Builtin => {
            let dims = if config.embedding.dimensions == 0 { BUILTIN_DIMENSIONS } else { config.embedding.dimensions };
            Ok(Box::new(BuiltinEmbedder::new(dims)))
        }
        EmbeddingProvider::Remote | EmbeddingProvider::Local => Err(Error::Config(format!(
            "setting embedding.provider = \"{}\" is not available in this build yet; use \"auto\" or \"builtin\"",
            if config.embedding.provider == EmbeddingProvider::Remote { "remote" } else { "local" }
        ))),
    }
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
