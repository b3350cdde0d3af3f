//! Local embedding models, run in-process on the CPU in pure Rust
//! (`embedding.provider = "local"`): transformer encoders in the sentence-transformers
//! layout ([`transformer`]) and static models in the model2vec layout ([`static_model`]).
//!
//! The model is a folder: `embedding.model_dir`, else the copy of `embedding.model` that
//! `ragls model pull` put in the cache ([`hub`]). Without one, the caller falls back to
//! the built-in embedder after one line saying how to get a model.

mod bert;
pub mod hub;
pub mod static_model;
pub mod transformer;

use crate::config::EmbeddingConfig;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

/// The model `provider = "local"` uses when `embedding.model` names none of its own.
pub const DEFAULT_LOCAL_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// A model folder on disk and the name it is known by.
pub struct ModelFolder {
    pub dir: PathBuf,
    pub name: String,
}

impl ModelFolder {
    pub fn new(dir: &Path, name: &str) -> ModelFolder {
        ModelFolder {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    /// A file of the folder (an error naming it when it cannot be read).
    pub fn read(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(file);
        std::fs::read(&path).map_err(|e| {
            Error::Config(format!(
                "local model {}: cannot read {}: {e}",
                self.name,
                path.display()
            ))
        })
    }

    /// A JSON file of the folder, or `None` when it does not exist.
    pub fn read_json(&self, file: &str) -> Result<Option<serde_json::Value>> {
        let path = self.dir.join(file);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = self.read(file)?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.error(&format!("{file} is not valid JSON: {e}")))
    }

    pub fn error(&self, what: &str) -> Error {
        Error::Config(format!(
            "local model {} ({}): {what}",
            self.name,
            self.dir.display()
        ))
    }

    /// A model2vec static model (else a transformer encoder with a BERT config).
    fn is_static(&self) -> Result<bool> {
        let config = self.read_json("config.json")?;
        let field = |k: &str| config.as_ref().and_then(|c| c.get(k)).cloned();
        Ok(field("model_type")
            .and_then(|t| t.as_str().map(String::from))
            .as_deref()
            == Some("model2vec")
            || field("hidden_size").is_none())
    }
}

/// The model name `embedding.model` means for the local provider (the remote default
/// means "no choice made": the default local model).
pub fn model_name(config: &EmbeddingConfig) -> String {
    if config.model.is_empty() || config.model == EmbeddingConfig::default().model {
        DEFAULT_LOCAL_MODEL.to_string()
    } else {
        config.model.clone()
    }
}

/// Where the local model of these settings lives, `None` when it is not installed.
pub fn locate(config: &EmbeddingConfig) -> Result<Option<ModelFolder>> {
    if !config.model_dir.is_empty() {
        let dir = PathBuf::from(&config.model_dir);
        if !dir.join("config.json").is_file() && !dir.join("model.safetensors").is_file() {
            return Err(Error::Config(format!(
                "setting embedding.model_dir: {} holds no model (config.json, tokenizer.json, model.safetensors)",
                dir.display()
            )));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| config.model_dir.clone());
        return Ok(Some(ModelFolder { dir, name }));
    }
    let name = model_name(config);
    let dir = hub::model_dir(&name)?;
    Ok(dir
        .join("model.safetensors")
        .is_file()
        .then_some(ModelFolder { dir, name }))
}

/// Query and document prefixes: the settings when given, else what the model's
/// `config_sentence_transformers.json` prompts say, else the known conventions (e5:
/// `query: ` / `passage: `; bge English: the retrieval instruction on queries).
pub fn prefixes(config: &EmbeddingConfig, folder: &ModelFolder) -> Result<(String, String)> {
    let (mut query, mut document) = (String::new(), String::new());
    let name = folder.name.to_lowercase();
    if name.contains("e5") {
        query = "query: ".into();
        document = "passage: ".into();
    } else if name.contains("bge") && name.contains("en") {
        query = "Represent this sentence for searching relevant passages: ".into();
    }
    if let Some(st) = folder.read_json("config_sentence_transformers.json")? {
        if let Some(prompts) = st.get("prompts").and_then(|p| p.as_object()) {
            let prompt = |k: &str| prompts.get(k).and_then(|v| v.as_str()).map(String::from);
            if let Some(q) = prompt("query") {
                query = q;
            }
            if let Some(d) = prompt("document").or_else(|| prompt("passage")) {
                document = d;
            }
        }
    }
    if let Some(q) = &config.query_prefix {
        query = q.clone();
    }
    if let Some(d) = &config.document_prefix {
        document = d.clone();
    }
    Ok((query, document))
}

/// Loads the local model of these settings; `Ok(None)` when none is installed.
pub fn load(config: &EmbeddingConfig) -> Result<Option<Box<dyn Embedder>>> {
    Ok(load_shared(config)?.map(|m| Box::new(Shared(m)) as Box<dyn Embedder>))
}

/// Models in memory, by folder and settings: the engines of one process (the server's
/// writer and its pool of readers) share one copy instead of loading one each. Held
/// weakly, so a model no engine uses is freed.
type LoadedModels = std::sync::Mutex<HashMap<String, Weak<dyn Embedder>>>;
static LOADED: OnceLock<LoadedModels> = OnceLock::new();

/// Like [`load`], shared with every other user of the same model and settings.
pub fn load_shared(config: &EmbeddingConfig) -> Result<Option<Arc<dyn Embedder>>> {
    let Some(folder) = locate(config)? else {
        return Ok(None);
    };
    let weights = folder.dir.join("model.safetensors");
    let stamp = std::fs::metadata(&weights)
        .map(|m| format!("{}:{:?}", m.len(), m.modified().ok()))
        .unwrap_or_default();
    let key = format!(
        "{}|{stamp}|{:?}|{:?}|{}|{}",
        folder.dir.display(),
        config.query_prefix,
        config.document_prefix,
        config.max_tokens,
        config.dimensions
    );
    let loaded = LOADED.get_or_init(Default::default);
    if let Some(model) = loaded
        .lock()
        .ok()
        .and_then(|m| m.get(&key).and_then(Weak::upgrade))
    {
        return Ok(Some(model));
    }
    let embedder: Arc<dyn Embedder> = if folder.is_static()? {
        Arc::new(static_model::StaticEmbedder::load(&folder)?)
    } else {
        let (query, document) = prefixes(config, &folder)?;
        Arc::new(transformer::TransformerEmbedder::load(
            &folder,
            query,
            document,
            config.max_tokens,
        )?)
    };
    if config.dimensions != 0 && config.dimensions != embedder.dimensions() {
        return Err(Error::Config(format!(
            "setting embedding.dimensions = {}: the local model {} has {} dimensions; set 0 (the model's own)",
            config.dimensions,
            folder.name,
            embedder.dimensions()
        )));
    }
    if let Ok(mut m) = loaded.lock() {
        m.retain(|_, w| w.strong_count() > 0);
        m.insert(key, Arc::downgrade(&embedder));
    }
    Ok(Some(embedder))
}

/// A shared model behind the `Box<dyn Embedder>` the engine holds.
struct Shared(Arc<dyn Embedder>);

impl Embedder for Shared {
    fn id(&self) -> String {
        self.0.id()
    }
    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.0.embed(texts)
    }
    fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.0.embed_query(query)
    }
    fn truncated_inputs(&self) -> usize {
        self.0.truncated_inputs()
    }
    fn embeds_in_background(&self) -> bool {
        self.0.embeds_in_background()
    }
    fn provider_name(&self) -> &'static str {
        self.0.provider_name()
    }
    fn model_name(&self) -> String {
        self.0.model_name()
    }
}

/// The line said when `provider = "local"` finds no model.
pub fn missing_model_message(config: &EmbeddingConfig) -> String {
    format!(
        "embedding.provider = \"local\" but the model {} is not installed: run `ragls model pull {}` or set embedding.model_dir to a model folder; using the built-in embedder (lexical) meanwhile",
        model_name(config),
        model_name(config)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixes_of(
        name: &str,
        prompts: Option<&str>,
        config: &EmbeddingConfig,
    ) -> (String, String) {
        let tmp = tempfile::tempdir().unwrap();
        if let Some(p) = prompts {
            std::fs::write(tmp.path().join("config_sentence_transformers.json"), p).unwrap();
        }
        prefixes(config, &ModelFolder::new(tmp.path(), name)).unwrap()
    }

    #[test]
    fn prefixes_follow_the_model_then_its_prompts_then_the_settings() {
        let none = EmbeddingConfig::default();
        let empty = (String::new(), String::new());
        assert_eq!(
            prefixes_of("sentence-transformers/all-MiniLM-L6-v2", None, &none),
            empty
        );
        assert_eq!(
            prefixes_of("intfloat/e5-small-v2", None, &none),
            ("query: ".into(), "passage: ".into())
        );
        let bge = prefixes_of("BAAI/bge-small-en-v1.5", None, &none);
        assert!(bge.0.starts_with("Represent this sentence"), "{bge:?}");
        assert_eq!(bge.1, "");
        let prompts = r#"{"prompts": {"query": "Q: ", "document": "D: "}}"#;
        assert_eq!(
            prefixes_of("acme/model", Some(prompts), &none),
            ("Q: ".into(), "D: ".into())
        );
        let set = EmbeddingConfig {
            query_prefix: Some("search: ".into()),
            document_prefix: Some(String::new()),
            ..EmbeddingConfig::default()
        };
        assert_eq!(
            prefixes_of("intfloat/e5-small-v2", Some(prompts), &set),
            ("search: ".into(), String::new())
        );
    }

    #[test]
    fn the_local_default_model_replaces_the_remote_default_name() {
        let mut c = EmbeddingConfig::default();
        assert_eq!(model_name(&c), DEFAULT_LOCAL_MODEL);
        c.model = "minishlab/potion-code-16M".into();
        assert_eq!(model_name(&c), "minishlab/potion-code-16M");
        assert!(missing_model_message(&c).contains("ragls model pull minishlab/potion-code-16M"));
    }

    #[test]
    fn one_model_in_memory_serves_every_engine_with_the_same_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let tokenizer = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1}}
        });
        std::fs::write(tmp.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
        std::fs::write(
            tmp.path().join("config.json"),
            r#"{"model_type": "model2vec"}"#,
        )
        .unwrap();
        let header = r#"{"embeddings":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
        let mut st = (header.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(header.as_bytes());
        for x in [0f32, 0.0, 1.0, 0.0] {
            st.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(tmp.path().join("model.safetensors"), st).unwrap();
        let config = EmbeddingConfig {
            model_dir: tmp.path().display().to_string(),
            ..EmbeddingConfig::default()
        };
        let a = load_shared(&config).unwrap().unwrap();
        let b = load_shared(&config).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the same settings share one model");
        let other = EmbeddingConfig {
            max_tokens: 64,
            ..config.clone()
        };
        let c = load_shared(&other).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &c), "other settings get their own");
        let boxed = load(&config).unwrap().unwrap();
        assert_eq!(boxed.id(), a.id());
        assert_eq!(boxed.embed(&["a"]).unwrap(), vec![vec![1.0, 0.0]]);
    }

    #[test]
    fn a_model_dir_without_a_model_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = EmbeddingConfig {
            model_dir: tmp.path().display().to_string(),
            ..EmbeddingConfig::default()
        };
        let err = locate(&c).err().expect("an error").to_string();
        assert!(err.starts_with("setting embedding.model_dir:"), "{err}");
        assert!(err.contains("holds no model"), "{err}");
    }
}
