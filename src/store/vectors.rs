//! The embedding cache: vectors stored as half floats, keyed by embedder and text hash.

use super::{ChunkId, Identity, Store, TextHash};
use crate::error::Result;
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

impl Store {
    /// Cached vectors for these text hashes (those missing are simply absent).
    pub fn cached_vectors(
        &self,
        id: &Identity,
        hashes: &[TextHash],
    ) -> Result<HashMap<TextHash, Vec<f32>>> {
        let mut st = self.conn.prepare_cached(
            "SELECT vector FROM embeddings WHERE embedder=?1 AND dimensions=?2 AND text_hash=?3",
        )?;
        let mut out = HashMap::new();
        for h in hashes {
            if out.contains_key(h) {
                continue;
            }
            let v: Option<Vec<u8>> = st
                .query_row(params![id.embedder, id.dimensions as i64, h], |r| r.get(0))
                .optional()?;
            if let Some(bytes) = v {
                if let Some(v) = blob_to_vector(&bytes, id.dimensions) {
                    out.insert(*h, v);
                }
            }
        }
        Ok(out)
    }

    /// Every live chunk's vector in chunk-id order, handed to `f` one at a time (the
    /// vector index is built from this without a list of them all in memory).
    pub fn for_each_live_vector(
        &self,
        id: &Identity,
        f: &mut dyn FnMut(ChunkId, &[f32]),
    ) -> Result<()> {
        let mut st = self.conn.prepare(
            "SELECT c.id, e.vector FROM chunks c JOIN embeddings e
             ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash
             ORDER BY c.id",
        )?;
        let mut rows = st.query(params![id.embedder, id.dimensions as i64])?;
        while let Some(r) = rows.next()? {
            let chunk: ChunkId = r.get(0)?;
            let blob = r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            if let Some(v) = blob_to_vector(blob, id.dimensions) {
                f(chunk, &v);
            }
        }
        Ok(())
    }

    /// How many live chunks have a vector of this embedder, and how many chunks there are.
    pub fn vector_coverage(&self, id: &Identity) -> Result<(u64, u64)> {
        let done: i64 = self.conn.query_row(
            "SELECT count(*) FROM chunks c JOIN embeddings e
             ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash",
            params![id.embedder, id.dimensions as i64],
            |r| r.get(0),
        )?;
        let total: i64 = self
            .conn
            .query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
        Ok((done as u64, total as u64))
    }

    /// Up to `limit` chunks past `after`, in id order, that lack a vector of this
    /// embedder: (id, hash, embedding text). The background embedding walks them with a
    /// cursor, so each batch costs one indexed range scan, not a scan of the backlog.
    pub fn chunks_without_vectors_after(
        &self,
        id: &Identity,
        after: ChunkId,
        limit: usize,
    ) -> Result<Vec<(ChunkId, TextHash, String)>> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.id, c.text_hash, c.path, c.symbol, c.text FROM chunks c
             WHERE c.id > ?3 AND NOT EXISTS (SELECT 1 FROM embeddings e
               WHERE e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash)
             ORDER BY c.id LIMIT ?4",
        )?;
        let rows = st.query_map(
            params![id.embedder, id.dimensions as i64, after, limit as i64],
            read_pending,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// For these chunks: the vectors this embedder has for them, and those it lacks
    /// (id, hash, embedding text). Unknown ids are in neither.
    #[allow(clippy::type_complexity)]
    pub fn vectors_of_chunks(
        &self,
        id: &Identity,
        chunks: &[ChunkId],
    ) -> Result<(Vec<(ChunkId, Vec<f32>)>, Vec<(ChunkId, TextHash, String)>)> {
        let mut st = self.conn.prepare_cached(
            "SELECT c.id, c.text_hash, c.path, c.symbol, c.text, e.vector FROM chunks c
             LEFT JOIN embeddings e ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash
             WHERE c.id=?3",
        )?;
        let (mut have, mut lack) = (Vec::new(), Vec::new());
        for chunk in chunks {
            let row = st
                .query_row(params![id.embedder, id.dimensions as i64, chunk], |r| {
                    let vector: Option<Vec<u8>> = r.get(5)?;
                    Ok((read_pending(r)?, vector))
                })
                .optional()?;
            match row {
                Some(((c, _, _), Some(bytes))) => {
                    if let Some(v) = blob_to_vector(&bytes, id.dimensions) {
                        have.push((c, v));
                    }
                }
                Some((pending, None)) => lack.push(pending),
                None => {}
            }
        }
        Ok((have, lack))
    }

    /// The ids of the live chunks that have a vector of this embedder.
    pub fn live_vector_ids(&self, id: &Identity) -> Result<Vec<ChunkId>> {
        let mut st = self.conn.prepare(
            "SELECT c.id FROM chunks c JOIN embeddings e
             ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash ORDER BY c.id",
        )?;
        let rows = st.query_map(params![id.embedder, id.dimensions as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every live chunk's vector, for rebuilding the vector index.
    pub fn live_vectors(&self, id: &Identity) -> Result<Vec<(ChunkId, Vec<f32>)>> {
        let mut st = self.conn.prepare(
            "SELECT c.id, e.vector FROM chunks c JOIN embeddings e
             ON e.embedder=?1 AND e.dimensions=?2 AND e.text_hash=c.text_hash",
        )?;
        let rows = st.query_map(params![id.embedder, id.dimensions as i64], |r| {
            Ok((
                r.get::<_, ChunkId>(0)?,
                blob_to_vector(r.get_ref(1)?.as_blob()?, id.dimensions),
            ))
        })?;
        Ok(rows
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .filter_map(|(chunk, v)| Some((chunk, v?)))
            .collect())
    }
}

/// (id, text hash, embedding text) from columns 0-4: id, text_hash, path, symbol, text.
pub(super) fn read_pending(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ChunkId, TextHash, String)> {
    let path: String = r.get(2)?;
    let symbol: String = r.get(3)?;
    let text: super::text::Stored = r.get(4)?;
    Ok((
        r.get(0)?,
        r.get(1)?,
        crate::chunk::embedding_text(&path, &symbol, &text.0),
    ))
}

/// Vectors are cached as IEEE half floats (2 bytes a component, little-endian): half the
/// disk of `f32`, and far more precision than a cosine ranking notices (the vector graph
/// rounds the same way, see [`stored_precision`], so a vector read back from the cache
/// builds the same graph as a freshly computed one).
pub(super) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| f32_to_f16(*x).to_le_bytes())
        .collect()
}

/// A cached vector of `dims` components: half floats, or the `f32` of indexes written
/// before (same schema); `None` for a blob of another size.
pub(super) fn blob_to_vector(b: &[u8], dims: usize) -> Option<Vec<f32>> {
    if b.len() == dims * 2 {
        Some(
            b.chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
        )
    } else if b.len() == dims * 4 {
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    } else {
        None
    }
}

/// Rounds `v` to the precision the embedding cache keeps (half floats).
pub fn stored_precision(v: &mut [f32]) {
    for x in v {
        *x = f16_to_f32(f32_to_f16(*x));
    }
}

/// `f32` -> IEEE 754 binary16 bits, rounding to nearest, ties to even.
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        // Infinity stays infinity; NaN stays NaN.
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        // A half subnormal (or zero): the value in units of 2^-24.
        if e < -10 {
            return sign;
        }
        let man = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let mut r = man >> shift;
        let rem = man & ((1u32 << shift) - 1);
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    // A carry out of the mantissa bumps the exponent, as it should.
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// IEEE 754 binary16 bits -> `f32` (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match exp {
        0 => {
            let magnitude = man as f32 * f32::from_bits(0x3380_0000); // 2^-24
            return if sign != 0 { -magnitude } else { magnitude };
        }
        0x1f => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}
