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
    pub mcp: McpConfig,
    pub store: StoreConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    pub api_key_env: String,
    pub timeout_s: u64,
    pub max_retries: u32,
    /// The most one remote step (embedding a batch, a rerank, a chat answer) may take,
    /// retries and waits included; past it the step fails and ragls falls back.
    pub total_timeout_s: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            base_url: "https://openrouter.ai/api/v1".into(),
            api_key_env: "OPENROUTER_API_KEY".into(),
            timeout_s: 60,
            max_retries: 4,
            total_timeout_s: 180,
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
    /// Search the vectors exactly (a scan, nothing on disk) below this many chunks; an
    /// HNSW graph from there on. Counted at 256 dimensions: wider vectors switch at
    /// proportionally fewer chunks (`ann::VectorIndex::exact_limit`); 0 = always the graph.
    pub exact_search_below: usize,
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
            exact_search_below: 100_000,
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
    /// `lexical_weight` and `vector_weight` for an index whose vectors come from a local
    /// transformer model (`embedding.provider = "local"`): its vectors say far more than
    /// the built-in embedder's, so the defaults trust them more (tuned on dev-eval).
    pub model_lexical_weight: f32,
    pub model_vector_weight: f32,
    /// With a local transformer model: weight of the built-in hashed embedder's cosine
    /// over the fused candidates, a third list (0 = off).
    pub model_hashed_weight: f32,
    /// With a local transformer model: the best this many lexical candidates that lack a
    /// model vector are embedded at query time (and cached), so the first questions rank
    /// semantically before the background pass is done (0 = off).
    pub lazy_embed: usize,
    pub rrf_k: f32,
    /// BM25 weight of the chunk's head (symbol name, symbol path, file path) against its body.
    pub head_weight: f32,
    /// HNSW search breadth.
    pub ef_search: usize,
    /// Ranking prior: the fused score of a test, example, benchmark or vendored chunk is
    /// multiplied by this for a question that does not name tests (1 = off).
    pub secondary_factor: f32,
    /// Ranking prior: each further hit of a file, past its best `file_decay_after`, is
    /// multiplied by this once more (the next by it, the one after by its square...; 1 = off).
    pub file_decay: f32,
    /// How many hits of one file keep their score before `file_decay` applies.
    pub file_decay_after: usize,
    /// Ranking prior: a query that is an identifier (`JoinSet`, `Session.request`,
    /// `foo::bar`) puts chunks of that exact name first, definitions before usages.
    pub identifier_first: bool,
}

impl Default for RetrieveConfig {
    fn default() -> Self {
        RetrieveConfig {
            lexical_candidates: 50,
            vector_candidates: 50,
            fusion: Fusion::Weighted,
            lexical_weight: 1.0,
            vector_weight: 0.5,
            model_lexical_weight: 0.8,
            model_vector_weight: 1.0,
            model_hashed_weight: 0.5,
            lazy_embed: 8,
            rrf_k: 60.0,
            head_weight: 4.0,
            ef_search: 64,
            secondary_factor: 0.5,
            file_decay: 1.0,
            file_decay_after: 2,
            identifier_first: true,
        }
    }
}

/// The most results a search or an answer may use (the CLI and the server say so alike).
pub const MAX_TOP_K: usize = 100;
/// The most retries of one remote call.
pub const MAX_RETRIES: u32 = 10;

/// The MCP server's output limits (`ragls mcp`), so an agent's context is not wasted.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Lines of code shown per `search_code` / `related_code` result.
    pub snippet_lines: usize,
    /// The most bytes `read_code` returns at once.
    pub read_max_bytes: usize,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            snippet_lines: 6,
            read_max_bytes: 64 * 1024,
        }
    }
}

/// The shared team index (PostgreSQL with pgvector). Empty `url`: the local index only.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user@host:port/database` (also `RAGLS_STORE_URL`). The password comes
    /// from the environment's URL, `PGPASSWORD` or `~/.pgpass`, never from a workspace file.
    pub url: String,
    /// A streaming replica that reads go to (writes always go to `url`).
    pub read_url: String,
    /// The ref (branch) to index or to read; empty = the workspace's current git branch,
    /// else `main`.
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The repository's name in the shared index; empty = the git remote `origin`'s
    /// name, else the workspace folder's name.
    pub repo: String,
    /// Connections per pool at most.
    pub pool_size: usize,
    /// A question's BM25 over at most this many (term, chunk) postings is ranked by the
    /// reader, the postings sent to it (some 24 bytes each); over more, by the database.
    /// Ranking them in the database took most of its time per question. 0: always the
    /// database (a database far away, where the bytes cost more than its time).
    pub reader_bm25_pairs: usize,
    /// Layer the working tree's own changes over the shared ref (a small local index of
    /// the files that differ). Off: the shared ref alone (a bot without a checkout).
    pub overlay: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            read_url: String::new(),
            ref_name: String::new(),
            repo: String::new(),
            pool_size: 4,
            reader_bm25_pairs: 20_000,
            overlay: true,
        }
    }
}

impl StoreConfig {
    /// Whether a shared index is configured.
    pub fn is_shared(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

/// The variable that gives `store.url` from the environment (over the settings files,
/// under `--store`).
pub const STORE_URL_ENV: &str = "RAGLS_STORE_URL";
/// The variable that gives `store.ref` from the environment (`ragls serve --ref`).
pub const STORE_REF_ENV: &str = "RAGLS_STORE_REF";

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
                // Check each file as it is added, so the error names the file at fault.
                let named = |e: String| Error::Config(format!("{}: {e}", file.display()));
                let parsed = from_table(table.clone()).map_err(named)?;
                if file.starts_with(workspace) {
                    refuse_password_in_repository(&file, &parsed.store)?;
                }
                deep_merge(&mut merged, table);
                from_table(merged.clone())
                    .map_err(named)?
                    .check()
                    .map_err(named)?;
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
    let from_env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let mut store = toml::Table::new();
    for (var, key) in [(STORE_URL_ENV, "url"), (STORE_REF_ENV, "ref")] {
        if let Some(value) = from_env(var) {
            store.insert(key.into(), toml::Value::String(value));
        }
    }
    if !store.is_empty() {
        let mut over = toml::Table::new();
        over.insert("store".into(), toml::Value::Table(store));
        deep_merge(&mut merged, over);
    }
    let overridden = overrides.is_some();
    if let Some(over) = overrides {
        deep_merge(&mut merged, over);
    }
    let config = from_table(merged).map_err(Error::Config)?;
    config.check().map_err(|e| {
        Error::Config(if overridden {
            format!("settings given by the command line or the editor: {e}")
        } else {
            e
        })
    })?;
    Ok(config)
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`; also hides a
/// `password=` parameter. For every message and log line that names a URL.
pub fn scrub_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let start = rest_start + colon + 1;
                out.replace_range(start..rest_start + at, "***");
            }
        }
    }
    let lower = out.to_ascii_lowercase();
    if let Some(p) = lower.find("password=") {
        let start = p + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

/// Whether a URL carries a password itself (refused in a workspace's settings file).
pub fn url_has_password(url: &str) -> bool {
    scrub_url(url) != url
}

/// A settings file inside the workspace is committed and shared: a database password in
/// it would leak, so such a file is refused.
fn refuse_password_in_repository(file: &Path, store: &StoreConfig) -> Result<()> {
    for (key, url) in [
        ("store.url", &store.url),
        ("store.read_url", &store.read_url),
    ] {
        if url_has_password(url) {
            return Err(Error::Config(format!(
                "{}: {key} holds a password, and this file is in the repository; remove the password and give it by PGPASSWORD, ~/.pgpass or {STORE_URL_ENV}",
                file.display()
            )));
        }
    }
    Ok(())
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
        self.check().map_err(Error::Config)
    }

    /// [`Config::validate`] with the bare message (the caller names the file).
    fn check(&self) -> std::result::Result<(), String> {
        let bad = |key: &str, why: &str| Err(format!("setting {key}: {why}"));
        let floats = [
            ("rerank.min_score", self.rerank.min_score),
            ("rerank.offline.fused", self.rerank.offline.fused),
            ("rerank.offline.name", self.rerank.offline.name),
            ("rerank.offline.symbol", self.rerank.offline.symbol),
            ("rerank.offline.path", self.rerank.offline.path),
            ("rerank.offline.kind", self.rerank.offline.kind),
            (
                "index.compact_deleted_ratio",
                self.index.compact_deleted_ratio,
            ),
            ("retrieve.lexical_weight", self.retrieve.lexical_weight),
            ("retrieve.vector_weight", self.retrieve.vector_weight),
            (
                "retrieve.model_lexical_weight",
                self.retrieve.model_lexical_weight,
            ),
            (
                "retrieve.model_vector_weight",
                self.retrieve.model_vector_weight,
            ),
            (
                "retrieve.model_hashed_weight",
                self.retrieve.model_hashed_weight,
            ),
            ("retrieve.rrf_k", self.retrieve.rrf_k),
            ("retrieve.head_weight", self.retrieve.head_weight),
        ];
        for (key, value) in floats {
            if !value.is_finite() {
                return bad(key, "must be a finite number (not inf or nan)");
            }
        }
        for (key, value) in [
            ("retrieve.lexical_weight", self.retrieve.lexical_weight),
            ("retrieve.vector_weight", self.retrieve.vector_weight),
            (
                "retrieve.model_lexical_weight",
                self.retrieve.model_lexical_weight,
            ),
            (
                "retrieve.model_vector_weight",
                self.retrieve.model_vector_weight,
            ),
            (
                "retrieve.model_hashed_weight",
                self.retrieve.model_hashed_weight,
            ),
            ("retrieve.head_weight", self.retrieve.head_weight),
        ] {
            if !(0.0..=1000.0).contains(&value) {
                return bad(key, "must be between 0 and 1000");
            }
        }
        if !(self.retrieve.rrf_k > 0.0 && self.retrieve.rrf_k <= 100_000.0) {
            return bad(
                "retrieve.rrf_k",
                "must be greater than 0 and at most 100000",
            );
        }
        // Upper bounds keep a typo (1e8) from exhausting memory or time.
        let ranges: [(&str, u64, u64, u64); 17] = [
            (
                "retrieve.lazy_embed",
                self.retrieve.lazy_embed as u64,
                0,
                100,
            ),
            ("provider.timeout_s", self.provider.timeout_s, 1, 3600),
            (
                "provider.max_retries",
                self.provider.max_retries.into(),
                0,
                MAX_RETRIES.into(),
            ),
            (
                "provider.total_timeout_s",
                self.provider.total_timeout_s,
                1,
                86_400,
            ),
            (
                "embedding.batch_size",
                self.embedding.batch_size as u64,
                1,
                4096,
            ),
            (
                "embedding.concurrency",
                self.embedding.concurrency as u64,
                1,
                64,
            ),
            ("rerank.candidates", self.rerank.candidates as u64, 1, 1000),
            (
                "rerank.top_k",
                self.rerank.top_k as u64,
                1,
                MAX_TOP_K as u64,
            ),
            (
                "chat.max_context_tokens",
                self.chat.max_context_tokens as u64,
                256,
                10_000_000,
            ),
            (
                "index.max_file_bytes",
                self.index.max_file_bytes,
                1,
                1 << 30,
            ),
            (
                "index.chunk_max_bytes",
                self.index.chunk_max_bytes as u64,
                200,
                1 << 20,
            ),
            (
                "index.chunk_max_lines",
                self.index.chunk_max_lines as u64,
                5,
                100_000,
            ),
            (
                "retrieve.lexical_candidates",
                self.retrieve.lexical_candidates as u64,
                0,
                10_000,
            ),
            (
                "retrieve.vector_candidates",
                self.retrieve.vector_candidates as u64,
                0,
                10_000,
            ),
            (
                "retrieve.ef_search",
                self.retrieve.ef_search as u64,
                1,
                10_000,
            ),
            (
                "embedding.max_input_chars",
                self.embedding.max_input_chars as u64,
                256,
                10_000_000,
            ),
            (
                "embedding.max_request_chars",
                self.embedding.max_request_chars as u64,
                256,
                100_000_000,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(
                    key,
                    &format!("must be between {min} and {max} (it is {value})"),
                );
            }
        }
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
        if !(1..=256).contains(&self.store.pool_size) {
            return bad("store.pool_size", "must be between 1 and 256");
        }
        for (key, url) in [
            ("store.url", &self.store.url),
            ("store.read_url", &self.store.read_url),
        ] {
            if !url.is_empty()
                && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
            {
                return bad(key, "must be a postgres:// URL (or empty)");
            }
        }
        if self.mcp.read_max_bytes < 1024 {
            return bad("mcp.read_max_bytes", "must be at least 1024");
        }
        if self.retrieve.ef_search == 0 {
            return bad("retrieve.ef_search", "must be at least 1");
        }
        for (key, v) in [
            ("retrieve.secondary_factor", self.retrieve.secondary_factor),
            ("retrieve.file_decay", self.retrieve.file_decay),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(key, "must be greater than 0 and at most 1 (1 = off)");
            }
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
            // An unclosed `[` is taken literally by gitignore and would silently match
            // nothing: refused here.
            let mut check = ignore::gitignore::GitignoreBuilder::new("/");
            check.allow_unclosed_class(false);
            if let Err(e) = check.add_line(None, glob) {
                let why = match &e {
                    ignore::Error::Glob { err, .. } => err.clone(),
                    other => other.to_string(),
                };
                return bad(
                    "index.exclude",
                    &format!("{glob:?} is not a valid glob ({})", one_line(&why)),
                );
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
    fn the_bad_values_of_the_fault_probe_are_rejected_with_their_key() {
        for (text, key) in [
            (
                "[retrieve]\nlexical_weight = inf",
                "retrieve.lexical_weight",
            ),
            ("[retrieve]\nvector_weight = nan", "retrieve.vector_weight"),
            ("[retrieve]\nrrf_k = -1.0", "retrieve.rrf_k"),
            ("[retrieve]\nef_search = 100000000", "retrieve.ef_search"),
            ("[rerank]\nmin_score = nan", "rerank.min_score"),
            ("[rerank]\ncandidates = 0", "rerank.candidates"),
            ("[rerank]\ntop_k = 1000", "rerank.top_k"),
            (
                "[embedding]\nconcurrency = 100000000",
                "embedding.concurrency",
            ),
            (
                "[provider]\nmax_retries = 4294967295",
                "provider.max_retries",
            ),
            ("[provider]\ntimeout_s = 0", "provider.timeout_s"),
            (
                "[provider]\ntotal_timeout_s = 0",
                "provider.total_timeout_s",
            ),
            ("[index]\nexclude = [\"[unclosed\"]", "index.exclude"),
        ] {
            let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        // Wrong types and negative counts are refused by the parser, naming the key.
        for (text, key) in [
            ("[rerank]\ncandidates = -1", "candidates"),
            ("[retrieve]\nef_search = 1e8", "ef_search"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
        let ok = parse("[index]\nexclude = [\"!keep/\", \"/build/\", \"**/*.gen.rs\"]").unwrap();
        ok.validate().unwrap();
    }

    #[test]
    fn a_range_error_names_the_file_that_has_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".ragls.toml"), "[retrieve]\nrrf_k = -1.0\n").unwrap();
        let err = load(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains(".ragls.toml"), "{err}");
        assert!(err.contains("retrieve.rrf_k"), "{err}");
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
