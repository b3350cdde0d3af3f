//! A BERT-family encoder (BERT, MiniLM, bge, e5) on candle, CPU only: the forward pass
//! from token ids to the last hidden states, with the weights of a Hugging Face
//! `model.safetensors`. Inference only — no dropout, no gradients.
//!
//! Matrices are pre-transposed once at load, so each layer is a handful of large
//! matrix products (which candle's `gemm` spreads over all cores) plus row-wise
//! softmax and layer norms.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;

type CResult<T> = candle_core::Result<T>;

/// The parts of a Hugging Face `config.json` the encoder needs.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_positions() -> usize {
    512
}
fn default_act() -> String {
    "gelu".into()
}

/// A dense layer with its weight stored as `[in, out]` (transposed once).
struct Dense {
    w: Tensor,
    b: Tensor,
}

impl Dense {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        x.matmul(&self.w)?.broadcast_add(&self.b)
    }
}

struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl Norm {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        candle_nn::ops::layer_norm(x, &self.w, &self.b, self.eps)
    }
}

struct Layer {
    /// Query, key and value in one product: `[hidden, 3 * hidden]`.
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    inter: Dense,
    out: Dense,
    out_norm: Norm,
}

pub struct Bert {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    hidden: usize,
    max_positions: usize,
    gelu_tanh: bool,
}

/// Finds tensors whatever prefix the checkpoint uses (`bert.`, `model.` or none).
struct Weights {
    map: HashMap<String, Tensor>,
    prefix: String,
}

impl Weights {
    fn get(&self, name: &str) -> Result<Tensor, String> {
        let key = format!("{}{name}", self.prefix);
        let t = self
            .map
            .get(&key)
            .ok_or_else(|| format!("the weights lack the tensor {key}"))?;
        t.to_dtype(DType::F32).map_err(|e| e.to_string())
    }
}

impl Bert {
    /// Builds the encoder from safetensors bytes and its config.
    pub fn load(config: &BertConfig, safetensors: &[u8]) -> Result<Bert, String> {
        let device = Device::Cpu;
        let map = candle_core::safetensors::load_buffer(safetensors, &device)
            .map_err(|e| format!("cannot read the weights: {e}"))?;
        let prefix = ["", "bert.", "model.", "0.auto_model."]
            .into_iter()
            .find(|p| map.contains_key(&format!("{p}embeddings.word_embeddings.weight")))
            .ok_or("the weights have no embeddings.word_embeddings.weight: not a BERT model")?
            .to_string();
        let w = Weights { map, prefix };
        let hidden = config.hidden_size;
        if config.num_attention_heads == 0 || !hidden.is_multiple_of(config.num_attention_heads) {
            return Err("config.json: hidden_size is not a multiple of num_attention_heads".into());
        }
        let eps = config.layer_norm_eps as f32;
        let err = |e: candle_core::Error| e.to_string();
        let dense = |name: &str| -> Result<Dense, String> {
            Ok(Dense {
                w: w.get(&format!("{name}.weight"))?
                    .t()
                    .and_then(|t| t.contiguous())
                    .map_err(err)?,
                b: w.get(&format!("{name}.bias"))?,
            })
        };
        let norm = |name: &str| -> Result<Norm, String> {
            Ok(Norm {
                w: w.get(&format!("{name}.weight"))?,
                b: w.get(&format!("{name}.bias"))?,
                eps,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            let q = dense(&format!("{p}.attention.self.query"))?;
            let k = dense(&format!("{p}.attention.self.key"))?;
            let v = dense(&format!("{p}.attention.self.value"))?;
            let qkv = Dense {
                w: Tensor::cat(&[&q.w, &k.w, &v.w], 1).map_err(err)?,
                b: Tensor::cat(&[&q.b, &k.b, &v.b], 0).map_err(err)?,
            };
            layers.push(Layer {
                qkv,
                attn_out: dense(&format!("{p}.attention.output.dense"))?,
                attn_norm: norm(&format!("{p}.attention.output.LayerNorm"))?,
                inter: dense(&format!("{p}.intermediate.dense"))?,
                out: dense(&format!("{p}.output.dense"))?,
                out_norm: norm(&format!("{p}.output.LayerNorm"))?,
            });
        }
        let gelu_tanh = match config.hidden_act.as_str() {
            "gelu" | "gelu_python" => false,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_approximate" => true,
            other => {
                return Err(format!(
                    "config.json: activation {other:?} is not supported"
                ))
            }
        };
        Ok(Bert {
            word: w.get("embeddings.word_embeddings.weight")?,
            position: w.get("embeddings.position_embeddings.weight")?,
            token_type: w.get("embeddings.token_type_embeddings.weight")?,
            emb_norm: norm("embeddings.LayerNorm")?,
            layers,
            heads: config.num_attention_heads,
            hidden,
            max_positions: config.max_position_embeddings,
            gelu_tanh,
        })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Last hidden states `[batch, len, hidden]` for `ids` (row-major `[batch, len]`, padded
    /// with anything) and `mask` (1 for real tokens, 0 for padding).
    pub fn forward(&self, ids: &[u32], mask: &[f32], batch: usize, len: usize) -> CResult<Tensor> {
        let device = Device::Cpu;
        let (h, heads) = (self.hidden, self.heads);
        let head_dim = h / heads;
        let ids_t = Tensor::from_slice(ids, batch * len, &device)?;
        let positions: Vec<u32> = (0..len as u32).collect();
        let pos_t = Tensor::from_slice(&positions, len, &device)?;
        let words = self
            .word
            .index_select(&ids_t, 0)?
            .reshape((batch, len, h))?;
        let pos = self.position.index_select(&pos_t, 0)?; // [len, h]
        let types = self.token_type.get(0)?; // [h]
        let x = words.broadcast_add(&pos)?.broadcast_add(&types)?;
        let mut x = self.emb_norm.forward(&x)?.reshape((batch * len, h))?;
        // Padding gets a large negative score before the softmax: [batch, 1, 1, len].
        let bias: Vec<f32> = mask.iter().map(|m| (m - 1.0) * 10_000.0).collect();
        let bias = Tensor::from_vec(bias, (batch, 1, 1, len), &device)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?; // [b*len, 3h]
            let qkv = qkv.reshape((batch, len, 3, heads, head_dim))?;
            let q = qkv
                .narrow(2, 0, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let k = qkv
                .narrow(2, 1, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let v = qkv
                .narrow(2, 2, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs
                .matmul(&v)? // [b, heads, len, hd]
                .transpose(1, 2)?
                .reshape((batch * len, h))?;
            let attn = layer
                .attn_norm
                .forward(&(layer.attn_out.forward(&ctx)? + &x)?)?;
            let inter = layer.inter.forward(&attn)?;
            let inter = if self.gelu_tanh {
                inter.gelu()?
            } else {
                inter.gelu_erf()?
            };
            x = layer
                .out_norm
                .forward(&(layer.out.forward(&inter)? + &attn)?)?;
        }
        x.reshape((batch, len, h))
    }
}

/// How token states become one vector (sentence-transformers' `1_Pooling/config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    Mean,
    Cls,
}

/// Pools `[batch, len, hidden]` states into one row per text.
pub fn pool(states: &Tensor, mask: &[f32], pooling: Pooling) -> CResult<Vec<Vec<f32>>> {
    let (batch, len, _) = states.dims3()?;
    let pooled = match pooling {
        Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
        Pooling::Mean => {
            let m = Tensor::from_slice(mask, (batch, len, 1), states.device())?;
            let summed = states.broadcast_mul(&m)?.sum(1)?; // [batch, hidden]
            let counts = m.sum(1)?.clamp(1e-9, f32::MAX)?; // [batch, 1]
            summed.broadcast_div(&counts)?
        }
    };
    pooled.to_vec2::<f32>()
}
