//! What hybrid retrieval reads from an index, behind one trait: the local index (the
//! SQLite store's BM25 and the in-process HNSW graph) and a snapshot of the shared team
//! index (BM25 from PostgreSQL tables, and pgvector). [`super::hybrid`] fuses either alike.

use super::SearchHit;
use crate::ann::SharedVectors;
use crate::error::Result;
use crate::store::pg::{PgStore, Snapshot, SnapshotQuery};
use crate::store::{ChunkId, Identity, Store, StoredChunk};
use std::cell::Cell;
use std::collections::HashMap;

/// The candidates of one index: lexical and nearest-neighbour rankings (best first,
/// higher is better) and the chunks they name.
pub trait CandidateSource {
    /// Lexical candidates for already tokenized `terms`; head terms (name, symbol, path)
    /// count `head_weight` times the body's.
    fn lexical(
        &self,
        terms: &[String],
        limit: usize,
        head_weight: f32,
    ) -> Result<Vec<(ChunkId, f32)>>;
    /// Whether [`CandidateSource::nearest`] can answer (vector search on and possible).
    fn searches_vectors(&self) -> bool;
    /// The chunks nearest to an embedded query, by cosine similarity.
    fn nearest(&self, query: &[f32], limit: usize, ef: usize) -> Result<Vec<(ChunkId, f32)>>;
    fn chunks(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>>;
    /// The vectors `embedder` has for these chunks (those it lacks are left out): how
    /// lexical candidates are rescored by a model that covers the index only partly. An
    /// index without such a partial model has none to give.
    fn vectors_of(
        &self,
        _embedder: &Identity,
        _ids: &[ChunkId],
    ) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        Ok(Vec::new())
    }
    /// Fills in the texts of hits whose chunks were read without them (a source that
    /// reads texts only for the pool, see [`Rankings::chunks`]).
    fn fill_texts(&self, _hits: &mut [SearchHit]) -> Result<()> {
        Ok(())
    }
    /// Both rankings: the lexical one and, given an embedded query, the nearest chunks.
    /// A source that can fetch them at once, with their chunks (a database: one round
    /// trip instead of three), overrides this.
    fn rankings(&self, ask: &RankingQuery<'_>) -> Result<Rankings> {
        let lexical = self.lexical(ask.terms, ask.lexical_limit, ask.head_weight)?;
        let vector = match ask.vector {
            Some(q) => self.nearest(q, ask.vector_limit, ask.ef)?,
            None => Vec::new(),
        };
        Ok(Rankings {
            lexical,
            vector,
            chunks: HashMap::new(),
        })
    }
}

/// One ranking: (chunk id, score), best first.
pub type Ranking = Vec<(ChunkId, f32)>;

/// What [`CandidateSource::rankings`] found.
pub struct Rankings {
    pub lexical: Ranking,
    pub vector: Ranking,
    /// Chunks already read with the rankings (by id); the others are read with
    /// [`CandidateSource::chunks`]. A source may leave their texts empty, to be read
    /// for the pool alone by [`CandidateSource::fill_texts`].
    pub chunks: HashMap<ChunkId, StoredChunk>,
}

/// What [`CandidateSource::rankings`] is asked.
pub struct RankingQuery<'a> {
    pub terms: &'a [String],
    pub lexical_limit: usize,
    pub head_weight: f32,
    /// The embedded query; `None`: no vector ranking.
    pub vector: Option<&'a [f32]>,
    pub vector_limit: usize,
    pub ef: usize,
    /// A source that reads texts apart ([`Rankings::chunks`]) reads those of each
    /// ranking's best this many with the rankings (the pool's, most likely).
    pub texts_top: usize,
}

/// One person's index: the SQLite store and the loaded vector graph (`None` when vector
/// search is off).
pub struct LocalIndex<'a> {
    pub store: &'a Store,
    pub vectors: Option<&'a SharedVectors>,
}

impl CandidateSource for LocalIndex<'_> {
    fn lexical(
        &self,
        terms: &[String],
        limit: usize,
        head_weight: f32,
    ) -> Result<Vec<(ChunkId, f32)>> {
        self.store.lexical_search(terms, limit, head_weight)
    }

    fn searches_vectors(&self) -> bool {
        self.vectors.is_some()
    }

    fn nearest(&self, query: &[f32], limit: usize, ef: usize) -> Result<Vec<(ChunkId, f32)>> {
        Ok(self
            .vectors
            .map(|v| v.search(query, limit, ef))
            .unwrap_or_default())
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>> {
        self.store.chunks_by_id(ids)
    }

    fn vectors_of(&self, embedder: &Identity, ids: &[ChunkId]) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        Ok(self.store.vectors_of_chunks(embedder, ids)?.0)
    }
}

/// One snapshot of a ref in the shared index, resolved once per question so that both
/// rankings read the same state even while a writer switches the ref. Paths in
/// `excluded` (those the local overlay holds) are left out.
pub struct SharedSnapshot<'a> {
    pub store: &'a PgStore,
    pub repo: &'a str,
    pub ref_name: &'a str,
    pub snapshot: &'a Snapshot,
    /// Set when the question found the ref pointing elsewhere: what it read is the
    /// snapshot's (whole, never a mix), but no longer the ref's.
    pub moved: Cell<bool>,
    pub excluded: &'a [String],
    /// Vector search is on and the snapshot's vectors come from the querying embedder.
    pub vectors: bool,
}

impl CandidateSource for SharedSnapshot<'_> {
    fn lexical(
        &self,
        terms: &[String],
        limit: usize,
        head_weight: f32,
    ) -> Result<Vec<(ChunkId, f32)>> {
        // One path to the database for a question's reads: `rankings`, asked for this list.
        let ask = RankingQuery {
            terms,
            lexical_limit: limit,
            head_weight,
            vector: None,
            vector_limit: 0,
            ef: 0,
            texts_top: 0,
        };
        Ok(self.rankings(&ask)?.lexical)
    }

    fn searches_vectors(&self) -> bool {
        self.vectors
    }

    fn nearest(&self, query: &[f32], limit: usize, ef: usize) -> Result<Vec<(ChunkId, f32)>> {
        let ask = RankingQuery {
            terms: &[],
            lexical_limit: 0,
            head_weight: 0.0,
            vector: Some(query),
            vector_limit: limit,
            ef,
            texts_top: 0,
        };
        Ok(self.rankings(&ask)?.vector)
    }

    fn chunks(&self, ids: &[ChunkId]) -> Result<HashMap<ChunkId, StoredChunk>> {
        self.store.chunks_by_id(ids)
    }

    fn fill_texts(&self, hits: &mut [SearchHit]) -> Result<()> {
        let ids: Vec<ChunkId> = hits
            .iter()
            .filter(|h| h.chunk.chunk.text.is_empty())
            .map(|h| h.chunk.id)
            .collect();
        let mut texts = self.store.chunk_texts(&ids)?;
        for h in hits.iter_mut() {
            if let Some(text) = texts.remove(&h.chunk.id) {
                h.chunk.chunk.text = text;
            }
        }
        Ok(())
    }

    fn rankings(&self, ask: &RankingQuery<'_>) -> Result<Rankings> {
        let found = self.store.search_snapshot(&SnapshotQuery {
            repo: self.repo,
            ref_name: self.ref_name,
            snapshot: self.snapshot,
            terms: ask.terms,
            lexical_limit: ask.lexical_limit,
            head_weight: ask.head_weight,
            vector: ask.vector.filter(|_| self.vectors),
            vector_limit: ask.vector_limit,
            ef: ask.ef,
            excluded: self.excluded,
            texts_top: ask.texts_top,
        })?;
        self.moved.set(found.moved);
        Ok(Rankings {
            lexical: found.lexical,
            vector: found.vector,
            chunks: found.chunks,
        })
    }
}
