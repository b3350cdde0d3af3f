//! Static embedding models in the model2vec layout (`config.json`, `tokenizer.json`,
//! `model.safetensors` with an `embeddings` table, optionally per-token `weights` and a
//! vocabulary `mapping`): a text's vector is the mean of its tokens' rows — no network
//! of layers, so thousands of chunks per second on a CPU.
//!
//! As model2vec does: no special tokens, unknown tokens dropped, at most
//! [`MAX_TOKENS`] tokens, unit length unless `config.json` says `"normalize": false`
//! (ragls normalises anyway for its dot-product index; the direction is the same).

use super::ModelFolder;
use crate::embed::{normalize, Embedder};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use tokenizers::Tokenizer;

/// Tokens of one text that count (model2vec's default `max_length`).
pub const MAX_TOKENS: usize = 512;

pub struct StaticEmbedder {
    id: String,
    name: String,
    tokenizer: Tokenizer,
    /// `[rows, dims]`, row-major.
    table: Vec<f32>,
    dims: usize,
    /// Token id -> row (identity when the model has no mapping).
    mapping: Option<Vec<usize>>,
    /// Per-token weight (1 when the model has none).
    weights: Option<Vec<f32>>,
    unk: Option<u32>,
}

fn tensor(folder: &ModelFolder, t: &Tensor, what: &str) -> Result<Tensor> {
    t.to_dtype(DType::F32)
        .map_err(|e| folder.error(&format!("model.safetensors: {what}: {e}")))
}

impl StaticEmbedder {
    pub fn load(folder: &ModelFolder) -> Result<StaticEmbedder> {
        let weights_bytes = folder.read("model.safetensors")?;
        let tensors = candle_core::safetensors::load_buffer(&weights_bytes, &Device::Cpu)
            .map_err(|e| folder.error(&format!("model.safetensors: {e}")))?;
        let table = tensors
            .get("embeddings")
            .ok_or_else(|| folder.error("model.safetensors has no `embeddings` tensor"))?;
        let table = tensor(folder, table, "embeddings")?;
        let (rows, dims) = table
            .dims2()
            .map_err(|_| folder.error("the `embeddings` tensor is not a matrix"))?;
        if rows == 0 || dims == 0 {
            return Err(folder.error("the `embeddings` tensor is empty"));
        }
        let table: Vec<f32> = table
            .flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| folder.error(&format!("embeddings: {e}")))?;
        let weights = match tensors.get("weights") {
            Some(w) => Some(
                tensor(folder, w, "weights")?
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(|e| folder.error(&format!("weights: {e}")))?,
            ),
            None => None,
        };
        let mapping = match tensors.get("mapping") {
            Some(m) => {
                let m: Vec<i64> = m
                    .to_dtype(DType::I64)
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1())
                    .map_err(|e| folder.error(&format!("mapping: {e}")))?;
                if m.iter().any(|&r| r < 0 || r as usize >= rows) {
                    return Err(folder.error("the `mapping` tensor points outside the table"));
                }
                Some(m.into_iter().map(|r| r as usize).collect())
            }
            None => None,
        };
        let tokenizer_bytes = folder.read("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| folder.error(&format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| folder.error(&format!("tokenizer.json: {e}")))?;
        let unk = unk_token(&tokenizer_bytes).and_then(|t| tokenizer.token_to_id(&t));
        let config = folder.read("config.json").unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(&weights_bytes);
        h.update(&tokenizer_bytes);
        h.update(&config);
        let id = format!(
            "local-static:{}:{}",
            folder.name,
            &h.finalize().to_hex().as_str()[..16]
        );
        Ok(StaticEmbedder {
            id,
            name: folder.name.clone(),
            tokenizer,
            table,
            dims,
            mapping,
            weights,
            unk,
        })
    }

    fn row(&self, token: u32) -> Option<(&[f32], f32)> {
        let t = token as usize;
        let row = match &self.mapping {
            Some(m) => *m.get(t)?,
            None => t,
        };
        let slice = self.table.get(row * self.dims..(row + 1) * self.dims)?;
        let weight = match &self.weights {
            Some(w) => *w.get(t)?,
            None => 1.0,
        };
        Some((slice, weight))
    }
}

/// The unknown token's text from `tokenizer.json` (`model.unk_token`, or the vocabulary
/// entry at `model.unk_id` for Unigram models).
fn unk_token(tokenizer_json: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(tokenizer_json).ok()?;
    let model = v.get("model")?;
    if let Some(t) = model.get("unk_token").and_then(|t| t.as_str()) {
        return Some(t.to_string());
    }
    let id = model.get("unk_id")?.as_u64()? as usize;
    let entry = model.get("vocab")?.as_array()?.get(id)?;
    entry.get(0)?.as_str().map(String::from)
}

impl Embedder for StaticEmbedder {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn dimensions(&self) -> usize {
        self.dims
    }
    fn batch_size(&self) -> usize {
        256
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| Error::Other(format!("tokenizing for the local model failed: {e}")))?;
        Ok(encodings
            .iter()
            .map(|e| {
                let mut sum = vec![0f32; self.dims];
                let mut count = 0usize;
                let tokens = e.get_ids().iter().filter(|&&t| Some(t) != self.unk);
                for &t in tokens.take(MAX_TOKENS) {
                    if let Some((row, w)) = self.row(t) {
                        sum.iter_mut().zip(row).for_each(|(s, x)| *s += w * x);
                        count += 1;
                    }
                }
                if count > 0 {
                    sum.iter_mut().for_each(|s| *s /= count as f32);
                }
                normalize(&mut sum);
                sum
            })
            .collect())
    }
    fn provider_name(&self) -> &'static str {
        "local"
    }
    fn model_name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Safetensors bytes for F32 tensors given as (name, shape, values).
    fn safetensors(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, shape, values) in tensors {
            let start = data.len();
            data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let header = serde_json::Value::Object(header).to_string();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn write_model(dir: &std::path::Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> ModelFolder {
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "Lowercase"},
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "unk_token": "[UNK]",
                      "vocab": {"[UNK]": 0, "circle": 1, "radius": 2, "csv": 3, "line": 4}}
        });
        std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
        std::fs::write(
            dir.join("config.json"),
            r#"{"model_type": "model2vec", "normalize": true}"#,
        )
        .unwrap();
        std::fs::write(dir.join("model.safetensors"), safetensors(tensors)).unwrap();
        ModelFolder::new(dir, "tiny")
    }

    fn table() -> (&'static str, Vec<usize>, Vec<f32>) {
        #[rustfmt::skip]
        let rows = vec![
            0.0, 0.0, 0.0, // [UNK]
            1.0, 0.0, 0.0, // circle
            0.0, 1.0, 0.0, // radius
            0.0, 0.0, 1.0, // csv
            0.0, 0.0, 3.0, // line
        ];
        ("embeddings", vec![5, 3], rows)
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn a_text_is_the_normalised_mean_of_its_known_tokens() {
        let tmp = tempfile::tempdir().unwrap();
        let model = StaticEmbedder::load(&write_model(tmp.path(), &[table()])).unwrap();
        assert_eq!(model.dimensions(), 3);
        let v = model
            .embed(&["circle radius", "Circle zzz", "csv line", "zzz", ""])
            .unwrap();
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!(close(&v[0], &[h, h, 0.0]), "{:?}", v[0]);
        // Lowercased by the tokenizer; the unknown word is left out, not averaged in.
        assert!(close(&v[1], &[1.0, 0.0, 0.0]), "{:?}", v[1]);
        // (csv + line) / 2 = [0, 0, 2] -> unit length.
        assert!(close(&v[2], &[0.0, 0.0, 1.0]), "{:?}", v[2]);
        // Nothing known: the zero vector.
        assert!(close(&v[3], &[0.0, 0.0, 0.0]), "{:?}", v[3]);
        assert!(close(&v[4], &[0.0, 0.0, 0.0]), "{:?}", v[4]);
        assert!(close(
            &model.embed_query("radius").unwrap(),
            &[0.0, 1.0, 0.0]
        ));
        assert!(
            model.id().starts_with("local-static:tiny:"),
            "{}",
            model.id()
        );
    }

    #[test]
    fn token_weights_and_a_vocabulary_mapping_are_applied() {
        let tmp = tempfile::tempdir().unwrap();
        let weights = ("weights", vec![5], vec![0.0, 1.0, 3.0, 1.0, 1.0]);
        // Tokens 3 and 4 (csv, line) share row 1; 1 and 2 keep theirs.
        let mapping_model = {
            let dir = tmp.path().join("mapped");
            std::fs::create_dir_all(&dir).unwrap();
            let mut t = safetensors(&[table(), weights.clone()]);
            // A mapping tensor in I64: rebuild the file with it.
            let mapping: Vec<i64> = vec![0, 1, 2, 1, 1];
            t = with_i64(&t, "mapping", &mapping);
            let folder = write_model(&dir, &[table()]);
            std::fs::write(dir.join("model.safetensors"), t).unwrap();
            StaticEmbedder::load(&folder).unwrap()
        };
        let weighted = {
            let dir = tmp.path().join("weighted");
            std::fs::create_dir_all(&dir).unwrap();
            StaticEmbedder::load(&write_model(&dir, &[table(), weights])).unwrap()
        };
        // (1 * circle + 3 * radius) / 2 -> [1, 3, 0] / sqrt(10).
        let v = weighted.embed(&["circle radius"]).unwrap().remove(0);
        let n = 10f32.sqrt();
        assert!(close(&v, &[1.0 / n, 3.0 / n, 0.0]), "{v:?}");
        // csv -> row 1 (circle's), weight 1.
        let v = mapping_model.embed(&["csv"]).unwrap().remove(0);
        assert!(close(&v, &[1.0, 0.0, 0.0]), "{v:?}");
        assert_ne!(weighted.id(), mapping_model.id());
    }

    /// Adds an I64 tensor to safetensors bytes.
    fn with_i64(file: &[u8], name: &str, values: &[i64]) -> Vec<u8> {
        let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&file[8..8 + n]).unwrap();
        let mut data = file[8 + n..].to_vec();
        let start = data.len();
        data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.into(),
            serde_json::json!({"dtype": "I64", "shape": [values.len()], "data_offsets": [start, data.len()]}),
        );
        let header = serde_json::Value::Object(header).to_string();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }
}
