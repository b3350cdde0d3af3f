//! The local model cache (`$XDG_CACHE_HOME/ragls/models/<name>`) and `ragls model pull`:
//! downloading a named model's files from the Hugging Face hub (`$HF_ENDPOINT`, default
//! `https://huggingface.co`; URLs `/{name}/resolve/{revision}/{file}`).
//!
//! Every file is checked against the hub's checksum — the sha256 in `x-linked-etag` for
//! large (LFS) files, the git blob sha1 in `etag` for small ones — and the model appears
//! in the cache all at once: files go to a hidden temporary folder that is renamed into
//! place only when every file is verified. `$HF_TOKEN`, when set, authenticates (gated
//! models); it is never printed.

use crate::error::{Error, Result};
use sha1::Digest as _;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files every model needs.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// Files a sentence-transformers model may have (pooling, normalisation, token limit,
/// prompts); missing ones are fine.
pub const OPTIONAL_FILES: [&str; 4] = [
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

/// `$XDG_CACHE_HOME/ragls/models` (or `~/.cache/ragls/models`).
pub fn models_dir() -> Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            Error::Config(
                "neither XDG_CACHE_HOME nor HOME is set; set embedding.model_dir to a model folder"
                    .into(),
            )
        })?;
    Ok(cache.join("ragls/models"))
}

/// Checks a hub model name (`org/name` or `name`) so that it is a safe relative path.
pub fn check_name(name: &str) -> Result<()> {
    let parts: Vec<&str> = name.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{name:?} is not a model name; use the hub's form, e.g. sentence-transformers/all-MiniLM-L6-v2"
        )))
    }
}

/// Where the cached copy of model `name` lives (whether or not it exists).
pub fn model_dir(name: &str) -> Result<PathBuf> {
    check_name(name).map_err(|e| Error::Config(format!("setting embedding.model: {e}")))?;
    Ok(models_dir()?.join(name))
}

/// A model in the cache.
#[derive(Debug, serde::Serialize)]
pub struct Installed {
    pub name: String,
    pub path: String,
    pub bytes: u64,
}

/// The models in the cache, by name.
pub fn list() -> Result<Vec<Installed>> {
    let root = models_dir()?;
    let mut found = Vec::new();
    let visible_dirs = |dir: &Path| -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(n, _)| !n.starts_with('.'))
            .collect()
    };
    for (first, path) in visible_dirs(&root) {
        let candidates = if path.join("model.safetensors").is_file() {
            vec![(first.clone(), path)]
        } else {
            visible_dirs(&path)
                .into_iter()
                .map(|(second, p)| (format!("{first}/{second}"), p))
                .collect()
        };
        for (name, dir) in candidates {
            if dir.join("model.safetensors").is_file() {
                let bytes = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum();
                found.push(Installed {
                    name,
                    path: dir.display().to_string(),
                    bytes,
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The hub's address: `$HF_ENDPOINT`, else the public hub.
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

/// What `pull` reports about each file, for progress on stderr.
pub trait PullProgress {
    /// A file starts (`total` bytes when the hub said).
    fn start(&self, file: &str, total: Option<u64>);
    /// `done` bytes of the current file so far.
    fn advance(&self, done: u64);
    /// The file is complete and verified (`check` says how).
    fn finish(&self, file: &str, bytes: u64, check: &str);
}

/// Downloads model `name` at `revision` into the cache; returns its folder.
pub fn pull(name: &str, revision: &str, progress: &dyn PullProgress) -> Result<PathBuf> {
    check_name(name)?;
    let final_dir = models_dir()?.join(name);
    let parent = final_dir
        .parent()
        .ok_or_else(|| Error::Other("the model cache has no parent folder".into()))?
        .to_path_buf();
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    let leaf = final_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(".{leaf}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the HTTP runtime", e))?;
    let result = runtime.block_on(download_all(name, revision, &temp, progress));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(e);
    }
    // Replace an older copy only now that the new one is complete.
    if final_dir.exists() {
        let old = parent.join(format!(".{leaf}.old-{}", std::process::id()));
        std::fs::rename(&final_dir, &old)
            .map_err(|e| Error::io(format!("cannot replace {}", final_dir.display()), e))?;
        let _ = std::fs::remove_dir_all(&old);
    }
    std::fs::rename(&temp, &final_dir)
        .map_err(|e| Error::io(format!("cannot create {}", final_dir.display()), e))?;
    Ok(final_dir)
}

async fn download_all(
    name: &str,
    revision: &str,
    temp: &Path,
    progress: &dyn PullProgress,
) -> Result<()> {
    let http = |redirects: bool| {
        reqwest::Client::builder()
            .redirect(if redirects {
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            })
            .connect_timeout(std::time::Duration::from_secs(30))
            .user_agent(concat!("ragls/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Other(format!("cannot start the HTTP client: {e}")))
    };
    let (no_redirect, follow) = (http(false)?, http(true)?);
    let base = endpoint();
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let files = REQUIRED_FILES
        .iter()
        .map(|f| (f, true))
        .chain(OPTIONAL_FILES.iter().map(|f| (f, false)));
    for (file, required) in files {
        let url = format!("{base}/{name}/resolve/{revision}/{file}");
        let auth = |r: reqwest::RequestBuilder| match &token {
            Some(t) => r.bearer_auth(t),
            None => r,
        };
        let first = auth(no_redirect.get(&url))
            .send()
            .await
            .map_err(|e| Error::Other(format!("cannot reach the model hub at {base}: {e}")))?;
        let status = first.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            if required {
                return Err(Error::Usage(format!(
                    "the hub at {base} has no {file} for {name} (revision {revision}); is the name right, and is it a sentence-transformers or model2vec model?"
                )));
            }
            continue;
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Error::Usage(format!(
                "the hub refused {name} ({status}); for a gated or private model set $HF_TOKEN"
            )));
        }
        let header = |r: &reqwest::Response, k: &str| {
            r.headers()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let expected = header(&first, "x-linked-etag").or_else(|| header(&first, "etag"));
        let expected_size = header(&first, "x-linked-size").and_then(|s| s.parse::<u64>().ok());
        let response = if status.is_redirection() {
            let location = header(&first, "location").ok_or_else(|| {
                Error::Other(format!("the hub redirected {file} without a location"))
            })?;
            let target = first.url().join(&location).map_err(|e| {
                Error::Other(format!("the hub sent a bad redirect for {file}: {e}"))
            })?;
            // The redirect target (a CDN) gets no token.
            follow
                .get(target)
                .send()
                .await
                .map_err(|e| Error::Other(format!("cannot download {file} of {name}: {e}")))?
        } else {
            first
        };
        if !response.status().is_success() {
            return Err(Error::Other(format!(
                "cannot download {file} of {name}: the hub answered {}",
                response.status()
            )));
        }
        let total = expected_size.or(response.content_length());
        progress.start(file, total);
        let path = temp.join(file);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&path)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?,
        );
        let mut sha256 = sha2::Sha256::new();
        let mut body = Vec::new(); // only small files are kept for the git blob hash
        let mut done = 0u64;
        let mut response = response;
        while let Some(piece) = response
            .chunk()
            .await
            .map_err(|e| Error::Other(format!("the download of {file} broke off: {e}")))?
        {
            sha256.update(&piece);
            if done < 16 << 20 {
                body.extend_from_slice(&piece);
            }
            done += piece.len() as u64;
            out.write_all(&piece)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            progress.advance(done);
        }
        out.flush()
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        drop(out);
        if let Some(size) = total {
            if size != done {
                return Err(Error::Other(format!(
                    "the download of {file} of {name} is incomplete ({done} of {size} bytes); run the command again"
                )));
            }
        }
        let sha256 = hex(&sha256.finalize());
        let check = verify(expected.as_deref(), &sha256, &body, done).map_err(|why| {
            Error::Other(format!(
                "{file} of {name} failed its checksum ({why}); the download is discarded, run the command again"
            ))
        })?;
        progress.finish(file, done, check);
    }
    Ok(())
}

/// Checks a file against the hub's etag: a sha256 (LFS files) or the git blob sha1
/// (small files). Returns how it was checked.
fn verify(
    etag: Option<&str>,
    sha256: &str,
    body: &[u8],
    size: u64,
) -> std::result::Result<&'static str, String> {
    let Some(etag) = etag else {
        return Ok("no checksum from the hub");
    };
    let etag = etag
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_ascii_lowercase();
    let is_hex = |n: usize| etag.len() == n && etag.chars().all(|c| c.is_ascii_hexdigit());
    if is_hex(64) {
        return if etag == sha256 {
            Ok("sha256 verified")
        } else {
            Err(format!("sha256 {sha256}, the hub says {etag}"))
        };
    }
    if is_hex(40) && body.len() as u64 == size {
        let mut h = sha1::Sha1::new();
        h.update(format!("blob {size}\0").as_bytes());
        h.update(body);
        let got = hex(&h.finalize());
        return if etag == got {
            Ok("git sha1 verified")
        } else {
            Err(format!("git sha1 {got}, the hub says {etag}"))
        };
    }
    Ok("no checksum from the hub")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_relative_paths() {
        assert!(check_name("sentence-transformers/all-MiniLM-L6-v2").is_ok());
        assert!(check_name("minishlab/potion-code-16M").is_ok());
        assert!(check_name("local").is_ok());
        for bad in ["", "../x", "a/../b", "a/b/c", "/abs", "a/.hidden", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn checksums_follow_the_hub_etags() {
        let body = b"hello\n";
        let sha = hex(&sha2::Sha256::digest(body));
        assert_eq!(
            verify(Some(&format!("\"{sha}\"")), &sha, body, 6),
            Ok("sha256 verified")
        );
        // `git hash-object` of "hello\n".
        let git = "ce013625030ba8dba906f756967f9e9ca394464a";
        assert_eq!(verify(Some(git), &sha, body, 6), Ok("git sha1 verified"));
        assert!(verify(Some(&"0".repeat(64)), &sha, body, 6).is_err());
        assert!(verify(Some(&"0".repeat(40)), &sha, body, 6).is_err());
        assert_eq!(verify(None, &sha, body, 6), Ok("no checksum from the hub"));
    }
}
