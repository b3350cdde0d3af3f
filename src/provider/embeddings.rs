//! `POST /embeddings`: the remote embedder. Many inputs per request (up to
//! `embedding.batch_size` texts and a cap on characters), several requests in flight
//! (`embedding.concurrency`), vectors put back in input order by their `index`.
//! Calls made at the same time (the indexer embeds the next batch while the previous one
//! finishes) share those `concurrency` slots, the earlier call's requests first, so the
//! slots stay full across calls without ever exceeding the limit.
//!
//! A text longer than the model takes is truncated (and counted), never dropped; a
//! request the server calls too long is split in two and retried. Caching is not done
//! here: the store caches by (model, dimensions, text hash) and asks only for misses.

use super::{blocking_runtime, Provider, ProviderError};
use crate::config::{Config, EmbeddingConfig, EmbeddingProvider};
use crate::embed::{normalize, BuiltinEmbedder, Embedder, BUILTIN_DIMENSIONS};
use crate::error::{Error, Result};
use futures_util::stream::{self, StreamExt};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct RemoteEmbedder {
    provider: Provider,
    model: String,
    /// Asked of the server (`dimensions`); 0 = the model's own.
    requested_dims: usize,
    /// Learnt from the index metadata or the first response.
    dims: OnceLock<usize>,
    batch_size: usize,
    concurrency: usize,
    max_input_chars: usize,
    max_request_chars: usize,
    requests: AtomicU64,
    truncated: AtomicUsize,
    /// The `concurrency` request slots, shared by every call on this embedder.
    slots: tokio::sync::Semaphore,
    /// Held by the call that is starting its requests: a later call takes slots only once
    /// every request of the earlier one has started.
    turn: tokio::sync::Mutex<()>,
    /// Why learning the dimension failed: asked once per process, then remembered.
    probe_failure: std::sync::Mutex<Option<String>>,
}

impl RemoteEmbedder {
    pub fn new(provider: Provider, config: &EmbeddingConfig) -> RemoteEmbedder {
        let dims = OnceLock::new();
        if config.dimensions > 0 {
            let _ = dims.set(config.dimensions);
        }
        RemoteEmbedder {
            provider,
            model: config.model.clone(),
            requested_dims: config.dimensions,
            dims,
            batch_size: config.batch_size.max(1),
            concurrency: config.concurrency.max(1),
            max_input_chars: config.max_input_chars.max(256),
            max_request_chars: config.max_request_chars.max(config.max_input_chars),
            requests: AtomicU64::new(0),
            truncated: AtomicUsize::new(0),
            slots: tokio::sync::Semaphore::new(config.concurrency.max(1)),
            turn: tokio::sync::Mutex::new(()),
            probe_failure: std::sync::Mutex::new(None),
        }
    }

    /// Embeds many texts: split into requests, `concurrency` in flight, results in order.
    pub async fn embed_async(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let inputs: Vec<String> = texts.iter().map(|t| self.fit(t)).collect();
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        let mut chars = 0;
        for (i, t) in inputs.iter().enumerate() {
            let full = i - start >= self.batch_size
                || (chars + t.len() > self.max_request_chars && i > start);
            if full {
                groups.push(start..i);
                start = i;
                chars = 0;
            }
            chars += t.len();
        }
        if start < inputs.len() {
            groups.push(start..inputs.len());
        }
        // Each request holds a slot while it runs. This call takes slots for its requests
        // in order while it has the turn, collecting finished requests meanwhile.
        let mut results: Vec<(usize, Result<Vec<Vec<f32>>, ProviderError>)> = Vec::new();
        let mut running = stream::FuturesUnordered::new();
        let mut groups = groups.into_iter();
        let mut next = groups.next();
        let mut turn = Some(self.turn.lock().await);
        while next.is_some() || !running.is_empty() {
            let Some(range) = next.clone() else {
                turn = None;
                if let Some(r) = running.next().await {
                    results.push(r);
                }
                continue;
            };
            tokio::select! {
                biased;
                Some(r) = running.next(), if !running.is_empty() => results.push(r),
                permit = self.slots.acquire() => {
                    // Never closed: the semaphore lives as long as the embedder.
                    let permit = permit.map_err(|e| ProviderError::BadResponse(e.to_string()))?;
                    let slice = &inputs[range.clone()];
                    running.push(async move {
                        let _slot = permit;
                        (range.start, self.embed_group(slice).await)
                    });
                    next = groups.next();
                }
            }
        }
        drop(turn);
        let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        for (start, result) in results {
            for (offset, v) in result?.into_iter().enumerate() {
                out[start + offset] = Some(v);
            }
        }
        out.into_iter()
            .map(|v| {
                v.ok_or_else(|| {
                    ProviderError::BadResponse("a vector is missing from the response".into())
                })
            })
            .collect()
    }

    /// One request; split in two when the server says it is too long.
    fn embed_group<'a>(
        &'a self,
        inputs: &'a [String],
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<Vec<f32>>, ProviderError>> + Send + 'a>,
    > {
        Box::pin(async move {
            match self.request(inputs).await {
                Err(ProviderError::InputTooLong { .. }) if inputs.len() > 1 => {
                    let (a, b) = inputs.split_at(inputs.len() / 2);
                    let mut first = self.embed_group(a).await?;
                    first.extend(self.embed_group(b).await?);
                    Ok(first)
                }
                Err(ProviderError::InputTooLong { .. })
                    if inputs.len() == 1 && inputs[0].len() > 256 =>
                {
                    self.truncated.fetch_add(1, Ordering::Relaxed);
                    let half = cut(&inputs[0], inputs[0].len() / 2).to_string();
                    self.embed_group(std::slice::from_ref(&half))
                        .await
                        .map(|v| v.into_iter().collect())
                }
                other => other,
            }
        })
    }

    async fn request(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, ProviderError> {
        let mut body =
            serde_json::json!({ "model": self.model, "input": inputs, "encoding_format": "float" });
        if self.requested_dims > 0 {
            body["dimensions"] = self.requested_dims.into();
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        let resp = self.provider.post("embeddings", &body, true).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ProviderError::BadResponse(format!("embeddings: {e}")))?;
        // Read straight into vectors: a response holds batch x dimensions numbers, and a
        // generic JSON tree allocates a value for each of them.
        let parsed: EmbeddingsBody = serde_json::from_slice(&bytes)
            .map_err(|e| ProviderError::BadResponse(format!("embeddings: {e}")))?;
        let data = parsed
            .data
            .ok_or_else(|| ProviderError::BadResponse("embeddings: no \"data\" list".into()))?;
        let mut out: Vec<Option<Vec<f32>>> = vec![None; inputs.len()];
        for (position, item) in data.into_iter().enumerate() {
            // By `index`, never by position alone; fall back to position if it is absent.
            let index = item.index.map(|i| i as usize).unwrap_or(position);
            let vector = item.embedding.ok_or_else(|| {
                ProviderError::BadResponse("embeddings: an item has no \"embedding\"".into())
            })?;
            if index >= out.len() {
                return Err(ProviderError::BadResponse(format!(
                    "embeddings: index {index} out of range"
                )));
            }
            let dims = *self.dims.get_or_init(|| vector.len());
            if vector.len() != dims {
                return Err(ProviderError::BadResponse(format!(
                    "embeddings: got {} dimensions, expected {dims}",
                    vector.len()
                )));
            }
            let mut v = vector;
            normalize(&mut v);
            out[index] = Some(v);
        }
        out.into_iter()
            .enumerate()
            .map(|(i, v)| {
                v.ok_or_else(|| {
                    ProviderError::BadResponse(format!("embeddings: no vector for input {i}"))
                })
            })
            .collect()
    }

    /// Cuts a text the model cannot take whole.
    fn fit(&self, text: &str) -> String {
        if text.len() <= self.max_input_chars {
            return text.to_string();
        }
        self.truncated.fetch_add(1, Ordering::Relaxed);
        cut(text, self.max_input_chars).to_string()
    }
}

/// The part of an embeddings response the client reads (OpenAI's shape).
#[derive(serde::Deserialize)]
struct EmbeddingsBody {
    data: Option<Vec<EmbeddingItem>>,
}

#[derive(serde::Deserialize)]
struct EmbeddingItem {
    index: Option<u64>,
    embedding: Option<Vec<f32>>,
}

/// The longest prefix of `text` within `max` bytes that ends on a char boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Embedder for RemoteEmbedder {
    fn id(&self) -> String {
        format!("remote:{}#{}", self.provider.base_url(), self.model)
    }
    fn dimensions(&self) -> usize {
        if let Some(d) = self.dims.get() {
            return *d;
        }
        let mut failure = match self.probe_failure.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if failure.is_some() {
            return 0;
        }
        // Unknown yet: one probe request tells (the store remembers it afterwards).
        match self.embed(&["dimension probe"]) {
            Ok(v) => v.first().map_or(0, Vec::len),
            Err(e) => {
                *failure = Some(e.to_string());
                0
            }
        }
    }
    fn known_dimensions(&self) -> Option<usize> {
        self.dims.get().copied()
    }
    fn truncated_inputs(&self) -> usize {
        self.truncated.load(Ordering::Relaxed)
    }
    fn retry(&self) {
        if let Ok(mut f) = self.probe_failure.lock() {
            *f = None;
        }
    }
    fn last_error(&self) -> Option<String> {
        self.probe_failure.lock().ok().and_then(|f| f.clone())
    }
    fn batch_size(&self) -> usize {
        // The indexer hands over many texts at once; this embedder batches them itself.
        self.batch_size * self.concurrency * 8
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let rt = blocking_runtime()?;
        rt.block_on(self.embed_async(texts)).map_err(Error::from)
    }
    fn assume_dimensions(&self, dims: usize) {
        let _ = self.dims.set(dims);
    }
    fn requests_sent(&self) -> u64 {
        self.provider.attempts()
    }
    fn provider_name(&self) -> &'static str {
        "remote"
    }
    fn model_name(&self) -> String {
        self.model.clone()
    }
}

/// Picks the embedder the settings ask for: `auto` is the remote provider when one is
/// configured (a key in the environment, or a non-default base URL), else the built-in
/// embedder.
pub fn embedder_for(config: &Config) -> Result<Box<dyn Embedder>> {
    let builtin = || {
        let dims = if config.embedding.dimensions == 0 {
            BUILTIN_DIMENSIONS
        } else {
            config.embedding.dimensions
        };
        Box::new(BuiltinEmbedder::new(dims)) as Box<dyn Embedder>
    };
    let remote = || {
        Provider::from_config(&config.provider)
            .map(|p| Box::new(RemoteEmbedder::new(p, &config.embedding)) as Box<dyn Embedder>)
    };
    match config.embedding.provider {
        EmbeddingProvider::Builtin => Ok(builtin()),
        EmbeddingProvider::Auto => Ok(remote().unwrap_or_else(builtin)),
        EmbeddingProvider::Remote => remote().ok_or_else(|| {
            Error::Config(format!(
                "setting embedding.provider = \"remote\" needs an API key in ${} (or provider.base_url pointing at a server that needs none)",
                config.provider.api_key_env
            ))
        }),
        EmbeddingProvider::Local => match crate::embed::local::load(&config.embedding)? {
            Some(model) => Ok(model),
            None => {
                // Said once per process; the index keeps working lexically.
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    eprintln!(
                        "ragls: {}",
                        crate::embed::local::missing_model_message(&config.embedding)
                    )
                });
                Ok(builtin())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("hello", 10), "hello");
    }
}
