//! Settings: built-in defaults, merged with `~/.config/ragls/config.toml`, then
//! `<workspace>/.ragls.toml`, then overrides from the command line or the editor (later
//! wins), and validated with errors that name the file and the key at fault.
//!
//! The key names are the contract of PROTOCOL.md ("Settings"). The API key is never a
//! setting: only the *name* of the variable that holds it is.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub provider: ProviderConfig,
    pub embedding: EmbeddingConfig,
    pub rerank: RerankConfig,
    pub chat: ChatConfig,
    pub index: IndexConfig,
    pub retrieve: RetrieveConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    pub api_key_env: String,
    pub timeout_s: u64,
    pub max_retries: u32,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            base_url: "https://openrouter.ai/api/v1".into(),
            api_key_env: "OPENROUTER_API_KEY".into(),
            timeout_s: 60,
            max_retries: 4,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    /// Remote when an API key is set, else the built-in embedder.
    Auto,
    Builtin,
    Remote,
    Local,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingConfig {
    pub provider: EmbeddingProvider,
    pub model: String,
    /// 0 = the model's own (for the built-in embedder: the built-in `BUILTIN_DIMENSIONS`).
    pub dimensions: usize,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Cap on the characters of all inputs of one request.
    pub max_request_chars: usize,
    /// Longer texts are truncated to this many characters (and counted) before embedding.
    pub max_input_chars: usize,
    pub model_dir: String,
    /// Local models: text put before a query (unset = the model's convention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_prefix: Option<String>,
    /// Local models: text put before a document chunk (unset = the model's convention).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_prefix: Option<String>,
    /// Local transformer models: tokens per text (0 = the model's own limit, e.g. 256 for
    /// all-MiniLM-L6-v2); fewer is faster, and cuts long chunks shorter.
    pub max_tokens: usize,
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        EmbeddingConfig {
            provider: EmbeddingProvider::Auto,
            model: "openai/text-embedding-3-small".into(),
            dimensions: 0,
            batch_size: 64,
            concurrency: 4,
            max_request_chars: 200_000,
            max_input_chars: 24_000,
            model_dir: String::new(),
            query_prefix: None,
            document_prefix: None,
            max_tokens: 0,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RerankConfig {
    pub enabled: bool,
    pub model: String,
    pub candidates: usize,
    pub top_k: usize,
    pub min_score: f32,
    /// Weights of the offline reranker (used when no remote reranker is configured).
    pub offline: OfflineRerankConfig,
}

impl Default for RerankConfig {
    fn default() -> Self {
        RerankConfig {
            enabled: true,
            model: "cohere/rerank-v3.5".into(),
            candidates: 30,
            top_k: 5,
            min_score: 0.0,
            offline: OfflineRerankConfig::default(),
        }
    }
}

/// The transparent offline scorer: a weighted sum of features in [0, 1]
/// (see `rerank.rs`). Tuned on `../shared/eval/dev-eval.sh`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OfflineRerankConfig {
    pub fused: f32,
    pub name: f32,
    pub symbol: f32,
    pub path: f32,
    pub kind: f32,
}

impl Default for OfflineRerankConfig {
    fn default() -> Self {
        OfflineRerankConfig {
            fused: 1.0,
            name: 0.3,
            symbol: 0.1,
            path: 0.05,
            kind: 0.1,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    pub model: String,
    pub max_context_tokens: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            model: "openai/gpt-4o-mini".into(),
            max_context_tokens: 8000,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Where the index lives; empty = `$XDG_CACHE_HOME/ragls/<workspace id>`.
    pub dir: String,
    pub max_file_bytes: u64,
    /// Extra gitignore-style globs, on top of .gitignore/.ignore/.raglsignore.
    pub exclude: Vec<String>,
    /// Index `.env`, keys and other secrets files too (off by default).
    pub index_secrets: bool,
    pub chunk_max_bytes: usize,
    pub chunk_min_bytes: usize,
    pub chunk_max_lines: usize,
    /// Rebuild the vector index when this share of its entries is deleted.
    pub compact_deleted_ratio: f32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            dir: String::new(),
            max_file_bytes: 1 << 20,
            exclude: Vec::new(),
            index_secrets: false,
            chunk_max_bytes: 2000,
            chunk_min_bytes: 250,
            chunk_max_lines: 80,
            compact_deleted_ratio: 0.25,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// z-scored scores, weighted and summed.
    Weighted,
    /// Reciprocal rank fusion, `sum w / (k + rank)`.
    Rrf,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieveConfig {
    pub lexical_candidates: usize,
    pub vector_candidates: usize,
    pub fusion: Fusion,
    pub lexical_weight: f32,
    pub vector_weight: f32,
    pub rrf_k: f32,
    /// BM25 weight of the chunk's head (symbol name, symbol path, file path) against its body.
    pub head_weight: f32,
    /// HNSW search breadth.
    pub ef_search: usize,
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        RetrieveConfig {
            lexical_candidates: 50,
            vector_candidates: 50,
            fusion: Fusion::Weighted,
            lexical_weight: 1.0,
            vector_weight: 0.5,
            rrf_k: 60.0,
            head_weight: 4.0,
            ef_search: 64,
        }
    }
}

/// The user-wide settings file: `$XDG_CONFIG_HOME/ragls/config.toml` or `~/.config/...`.
pub fn user_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("ragls/config.toml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/ragls/config.toml"))
}

/// Loads defaults < user file < `<workspace>/.ragls.toml` < `overrides` (a TOML table, for
/// the CLI's and the editor's settings), then validates.
pub fn load(workspace: &Path, overrides: Option<toml::Table>) -> Result<Config> {
    let mut merged = toml::Table::new();
    let files = user_config_path()
        .into_iter()
        .chain([workspace.join(".ragls.toml")]);
    for file in files {
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    Error::Config(format!("{}: {}", file.display(), one_line(&e.to_string())))
                })?;
                // Check each file on its own so the error names the file at fault.
                from_table(table.clone())
                    .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
                deep_merge(&mut merged, table);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "cannot read settings file {}: {e}",
                    file.display()
                )))
            }
        }
    }
    if let Some(over) = overrides {
        deep_merge(&mut merged, over);
    }
    let config = from_table(merged).map_err(Error::Config)?;
    config.validate()?;
    Ok(config)
}

/// Parses settings given as a table (e.g. an editor's `initializationOptions`).
pub fn from_table(table: toml::Table) -> std::result::Result<Config, String> {
    Config::deserialize(toml::Value::Table(table)).map_err(|e| one_line(&e.to_string()))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Recursively merges `over` into `base`; tables merge, everything else is replaced.
pub fn deep_merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => deep_merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::Config(format!("setting {key}: {why}")));
        if self.index.max_file_bytes == 0 {
            return bad("index.max_file_bytes", "must be greater than 0");
        }
        if self.index.chunk_max_bytes < 200 {
            return bad("index.chunk_max_bytes", "must be at least 200");
        }
        if self.index.chunk_min_bytes >= self.index.chunk_max_bytes {
            return bad(
                "index.chunk_min_bytes",
                "must be smaller than index.chunk_max_bytes",
            );
        }
        if self.index.chunk_max_lines < 5 {
            return bad("index.chunk_max_lines", "must be at least 5");
        }
        if !(0.0..=1.0).contains(&self.index.compact_deleted_ratio) {
            return bad("index.compact_deleted_ratio", "must be between 0 and 1");
        }
        if self.embedding.batch_size == 0 || self.embedding.concurrency == 0 {
            return bad("embedding.batch_size/concurrency", "must be at least 1");
        }
        if self.embedding.max_input_chars < 256
            || self.embedding.max_request_chars < self.embedding.max_input_chars
        {
            return bad(
                "embedding.max_input_chars/max_request_chars",
                "max_input_chars must be at least 256 and at most max_request_chars",
            );
        }
        if self.embedding.dimensions > 8192 {
            return bad(
                "embedding.dimensions",
                "must be at most 8192 (0 = the model's own)",
            );
        }
        if self.retrieve.lexical_candidates == 0 && self.retrieve.vector_candidates == 0 {
            return bad(
                "retrieve.lexical_candidates",
                "lexical and vector candidates cannot both be 0",
            );
        }
        if self.retrieve.ef_search == 0 {
            return bad("retrieve.ef_search", "must be at least 1");
        }
        if self.rerank.top_k == 0 {
            return bad("rerank.top_k", "must be at least 1");
        }
        if self.provider.base_url.trim().is_empty()
            || !(self.provider.base_url.starts_with("http://")
                || self.provider.base_url.starts_with("https://"))
        {
            return bad("provider.base_url", "must be an http:// or https:// URL");
        }
        for glob in &self.index.exclude {
            if glob.trim().is_empty() {
                return bad("index.exclude", "contains an empty pattern");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> std::result::Result<Config, String> {
        from_table(text.parse::<toml::Table>().map_err(|e| e.to_string())?)
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn protocol_keys_parse() {
        let c = parse(
            r#"
            [provider]
            base_url = "http://localhost:11434/v1"
            [embedding]
            provider = "builtin"
            dimensions = 128
            [rerank]
            top_k = 7
            [index]
            exclude = ["vendor/**"]
            "#,
        )
        .unwrap();
        assert_eq!(c.provider.base_url, "http://localhost:11434/v1");
        assert_eq!(c.embedding.provider, EmbeddingProvider::Builtin);
        assert_eq!(c.embedding.dimensions, 128);
        assert_eq!(c.rerank.top_k, 7);
        assert_eq!(c.index.exclude, ["vendor/**"]);
        assert_eq!(c.chat, ChatConfig::default());
    }

    #[test]
    fn a_misspelt_key_is_named_in_the_error() {
        let err = parse("[index]\nmax_file_byte = 10\n").unwrap_err();
        assert!(err.contains("max_file_byte"), "{err}");
    }

    #[test]
    fn later_layers_win_and_tables_merge() {
        let mut base: toml::Table = "[index]\nmax_file_bytes = 10\nexclude = [\"a\"]\n"
            .parse()
            .unwrap();
        let over: toml::Table = "[index]\nexclude = [\"b\"]\n".parse().unwrap();
        deep_merge(&mut base, over);
        let c = from_table(base).unwrap();
        assert_eq!(c.index.max_file_bytes, 10);
        assert_eq!(c.index.exclude, ["b"]);
    }

    #[test]
    fn bad_values_are_rejected_with_the_key() {
        let c = parse("[index]\nchunk_min_bytes = 5000\n").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("index.chunk_min_bytes"), "{err}");
        let c = parse("[provider]\nbase_url = \"ftp://x\"\n").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("provider.base_url"));
    }

    #[test]
    fn workspace_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".ragls.toml"), "[index\n").unwrap();
        let err = load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains(".ragls.toml"), "{err}");
        assert!(!err.contains('\n'));
    }
}
