//! A sentence-transformers model folder run in-process: the tokenizer, the BERT encoder,
//! the model's pooling and normalisation, its token limit, and query/document prefixes.
//!
//! Texts are sorted by token count and grouped so that a group pads little and never
//! exceeds a token budget (bounded memory: the attention scores of one group are at most
//! `heads * budget * longest` floats); each group is one forward pass over all cores.

use super::bert::{pool, Bert, BertConfig, Pooling};
use super::ModelFolder;
use crate::embed::{normalize, Embedder};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenizers::{Tokenizer, TruncationParams};

/// Padded tokens per forward pass (memory bound; 8 texts of 256 tokens, or more shorter ones).
const GROUP_TOKENS: usize = 2048;
/// Longer inputs are cut (on a character boundary) before tokenizing: far more characters
/// than the token limit can use, so only the tokenizer's work is saved.
const CHARS_PER_TOKEN_CAP: usize = 16;

pub struct TransformerEmbedder {
    id: String,
    name: String,
    tokenizer: Tokenizer,
    bert: Bert,
    pooling: Pooling,
    max_tokens: usize,
    query_prefix: String,
    document_prefix: String,
    truncated: AtomicUsize,
}

/// What `modules.json`, `1_Pooling/config.json` and `sentence_bert_config.json` say.
#[derive(Debug, PartialEq)]
pub struct PipelineSettings {
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_tokens: Option<usize>,
}

/// Reads the sentence-transformers pipeline of a folder (mean pooling, no normalisation
/// and the encoder's own limit when the files are absent, as sentence-transformers does).
pub fn pipeline_settings(folder: &ModelFolder) -> Result<PipelineSettings> {
    let mut settings = PipelineSettings {
        pooling: Pooling::Mean,
        normalize: false,
        max_tokens: None,
    };
    let mut pooling_dir = "1_Pooling".to_string();
    if let Some(modules) = folder.read_json("modules.json")? {
        for module in modules.as_array().into_iter().flatten() {
            let kind = module.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let path = module.get("path").and_then(|t| t.as_str()).unwrap_or("");
            if kind.ends_with(".Normalize") {
                settings.normalize = true;
            } else if kind.ends_with(".Pooling") && !path.is_empty() {
                pooling_dir = path.to_string();
            }
        }
    }
    if let Some(p) = folder.read_json(&format!("{pooling_dir}/config.json"))? {
        let on = |key: &str| p.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        if on("pooling_mode_cls_token") {
            settings.pooling = Pooling::Cls;
        } else if on("pooling_mode_mean_tokens") {
            settings.pooling = Pooling::Mean;
        } else {
            return Err(folder.error(&format!(
                "{pooling_dir}/config.json asks for a pooling other than mean or CLS, which ragls does not support"
            )));
        }
    }
    if let Some(s) = folder.read_json("sentence_bert_config.json")? {
        settings.max_tokens = s
            .get("max_seq_length")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
    }
    Ok(settings)
}

impl TransformerEmbedder {
    pub fn load(
        folder: &ModelFolder,
        query_prefix: String,
        document_prefix: String,
        max_tokens: usize,
    ) -> Result<TransformerEmbedder> {
        let config_text = folder.read("config.json")?;
        let config: BertConfig = serde_json::from_slice(&config_text)
            .map_err(|e| folder.error(&format!("config.json: {e}")))?;
        if let Some(kind) = config.model_type.as_deref() {
            if kind != "bert" {
                return Err(folder.error(&format!(
                    "config.json: model_type {kind:?} is not supported (ragls runs BERT-family encoders such as all-MiniLM-L6-v2, bge and e5)"
                )));
            }
        }
        let settings = pipeline_settings(folder)?;
        let weights = folder.read("model.safetensors")?;
        let bert = Bert::load(&config, &weights).map_err(|e| folder.error(&e))?;
        let tokenizer_bytes = folder.read("tokenizer.json")?;
        let mut tokenizer = Tokenizer::from_bytes(&tokenizer_bytes)
            .map_err(|e| folder.error(&format!("tokenizer.json: {e}")))?;
        let max_tokens = Some(max_tokens)
            .filter(|&n| n > 0)
            .or(settings.max_tokens)
            .unwrap_or(bert.max_positions())
            .min(bert.max_positions())
            .max(2);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|e| folder.error(&format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);
        // The id changes with the weights, the tokenizer and every setting that changes
        // a document's vector.
        let mut h = blake3::Hasher::new();
        h.update(&weights);
        h.update(&tokenizer_bytes);
        h.update(&config_text);
        h.update(
            format!(
                "{:?}|{}|{max_tokens}|{document_prefix}",
                settings.pooling, settings.normalize
            )
            .as_bytes(),
        );
        let id = format!(
            "local:{}:{}",
            folder.name,
            &h.finalize().to_hex().as_str()[..16]
        );
        Ok(TransformerEmbedder {
            id,
            name: folder.name.clone(),
            tokenizer,
            bert,
            pooling: settings.pooling,
            max_tokens,
            query_prefix,
            document_prefix,
            truncated: AtomicUsize::new(0),
        })
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    fn embed_with_prefix(&self, prefix: &str, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let cap = self.max_tokens * CHARS_PER_TOKEN_CAP;
        let inputs: Vec<String> = texts
            .iter()
            .map(|t| format!("{prefix}{}", cut_chars(t, cap)))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs.iter().map(|s| s.as_str()).collect(), true)
            .map_err(|e| Error::Other(format!("tokenizing for the local model failed: {e}")))?;
        let truncated = encodings
            .iter()
            .zip(texts)
            .filter(|(e, t)| !e.get_overflowing().is_empty() || t.len() > cap)
            .count();
        self.truncated.fetch_add(truncated, Ordering::Relaxed);
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].get_ids().len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encodings.len()];
        let mut start = 0;
        while start < order.len() {
            // Sorted ascending, so the group's last text is its longest.
            let mut end = start + 1;
            while end < order.len()
                && encodings[order[end]].get_ids().len() * (end + 1 - start) <= GROUP_TOKENS
            {
                end += 1;
            }
            let group = &order[start..end];
            let len = encodings[order[end - 1]].get_ids().len().max(1);
            let mut ids = vec![0u32; group.len() * len];
            let mut mask = vec![0f32; group.len() * len];
            for (row, &i) in group.iter().enumerate() {
                let tokens = encodings[i].get_ids();
                ids[row * len..row * len + tokens.len()].copy_from_slice(tokens);
                mask[row * len..row * len + tokens.len()].fill(1.0);
            }
            let states = self
                .bert
                .forward(&ids, &mask, group.len(), len)
                .and_then(|s| pool(&s, &mask, self.pooling))
                .map_err(|e| Error::Other(format!("the local model failed: {e}")))?;
            for (&i, mut v) in group.iter().zip(states) {
                // Always unit length (the index compares by dot product); a model without a
                // Normalize module gets the same directions, hence the same cosines.
                normalize(&mut v);
                out[i] = v;
            }
            start = end;
        }
        Ok(out)
    }
}

/// The first `max` characters of `s`.
fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

impl Embedder for TransformerEmbedder {
    fn id(&self) -> String {
        self.id.clone()
    }
    fn dimensions(&self) -> usize {
        self.bert.hidden_size()
    }
    fn batch_size(&self) -> usize {
        64
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_with_prefix(&self.document_prefix, texts)
    }
    fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut v = self.embed_with_prefix(&self.query_prefix, &[query])?;
        v.pop()
            .ok_or_else(|| Error::Other("the local model returned no vector".into()))
    }
    fn truncated_inputs(&self) -> usize {
        self.truncated.load(Ordering::Relaxed)
    }
    fn embeds_in_background(&self) -> bool {
        true
    }
    fn provider_name(&self) -> &'static str {
        "local"
    }
    fn model_name(&self) -> String {
        self.name.clone()
    }
}
