//! The shared team index from the engine's side, reading: which database and ref a
//! workspace reads, the local overlay on top of it, and a server's pool readied before
//! its first question. Writing a ref (`ragls index --store`) is `shared_update`.
//!
//! The engine's own SQLite index becomes the *local overlay*: it holds only the files
//! whose content differs from the ref's (and editor buffers); hits of those paths (and
//! of files deleted locally) are dropped from the shared results and the overlay's hits
//! merged in, so citations point at the local lines. When the database cannot be
//! reached, the overlay is the whole workspace (the local index) and each answer says so.

use super::content_hashes::{content_hash, load_content_hashes, save_content_hashes};
use super::*;
use crate::config::StoreConfig;
use crate::store::pg::{PgOptions, PgStore, Snapshot};
use std::sync::Mutex;

/// Meta key of the local overlay: the paths the ref has and the workspace has not.
const DELETED_META: &str = "shared_deleted";

/// The shared ref a workspace reads: the database and which (repository, ref).
#[derive(Clone)]
pub struct SharedRef {
    pub store: Arc<PgStore>,
    pub repo: String,
    pub ref_name: String,
}

/// One pool set per database for the whole process, however many engines (the
/// servers' readers) read it: the connection count stays bounded by `store.pool_size`.
fn pooled_store(config: &StoreConfig) -> Result<Arc<PgStore>> {
    type Key = (String, String, usize, usize);
    static STORES: Mutex<Vec<(Key, Arc<PgStore>)>> = Mutex::new(Vec::new());
    let key = (
        config.url.clone(),
        config.read_url.clone(),
        config.pool_size,
        config.reader_bm25_pairs,
    );
    let mut stores = STORES
        .lock()
        .map_err(|_| Error::Other("the database pool registry is poisoned".into()))?;
    if let Some((_, s)) = stores.iter().find(|(k, _)| *k == key) {
        return Ok(s.clone());
    }
    let store = Arc::new(PgStore::connect(&PgOptions {
        url: config.url.clone(),
        read_url: Some(config.read_url.clone()).filter(|u| !u.is_empty()),
        pool_size: config.pool_size,
        reader_bm25_pairs: config.reader_bm25_pairs,
    })?);
    stores.push((key, store.clone()));
    Ok(store)
}

impl SharedRef {
    /// The shared ref the settings name, `None` without `store.url`. Connects lazily.
    pub fn from_config(root: &Path, config: &Config) -> Result<Option<SharedRef>> {
        if !config.store.is_shared() {
            return Ok(None);
        }
        Ok(Some(SharedRef {
            store: pooled_store(&config.store)?,
            repo: repo_name(root, &config.store),
            ref_name: ref_name(root, &config.store),
        }))
    }

    fn describe(&self) -> String {
        format!(
            "{}@{} at {}",
            self.repo,
            self.ref_name,
            self.store.read_location()
        )
    }
}

/// `store.ref`, else the workspace's current git branch (`.git/HEAD`), else `main`.
pub fn ref_name(root: &Path, config: &StoreConfig) -> String {
    if !config.ref_name.trim().is_empty() {
        return config.ref_name.trim().to_string();
    }
    git_dir(root)
        .and_then(|d| std::fs::read_to_string(d.join("HEAD")).ok())
        .and_then(|head| {
            head.trim()
                .strip_prefix("ref: refs/heads/")
                .map(str::to_string)
        })
        .unwrap_or_else(|| "main".into())
}

/// `store.repo`, else the name of the git remote `origin` (`…/name.git`), else the
/// workspace folder's name: CI's checkout and a developer's clone agree on it.
pub fn repo_name(root: &Path, config: &StoreConfig) -> String {
    if !config.repo.trim().is_empty() {
        return config.repo.trim().to_string();
    }
    let from_origin = git_dir(root)
        .and_then(|d| std::fs::read_to_string(d.join("config")).ok())
        .and_then(|text| {
            let mut in_origin = false;
            for line in text.lines() {
                let line = line.trim();
                if line.starts_with('[') {
                    in_origin = line == "[remote \"origin\"]";
                } else if in_origin {
                    if let Some(url) = line.strip_prefix("url").map(str::trim_start) {
                        let url = url.trim_start_matches('=').trim();
                        let name = url
                            .trim_end_matches('/')
                            .rsplit(['/', ':'])
                            .next()?
                            .trim_end_matches(".git");
                        return Some(name.to_string()).filter(|n| !n.is_empty());
                    }
                }
            }
            None
        });
    from_origin.unwrap_or_else(|| {
        root.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "workspace".into())
    })
}

/// The `.git` folder of a workspace (a worktree's `.git` file points at its own).
fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot_git = root.join(".git");
    if dot_git.is_dir() {
        return Some(dot_git);
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let dir = text.trim().strip_prefix("gitdir:")?.trim();
    Some(root.join(dir))
}

/// Where the local overlay of a workspace that reads a shared index lives: beside its
/// local index, never in place of it.
pub(super) fn overlay_dir(config: &Config, index_dir: PathBuf) -> PathBuf {
    if config.store.is_shared() {
        index_dir.join("team-overlay")
    } else {
        index_dir
    }
}

/// A question put to the shared ref ([`Engine::shared_hits`]).
#[derive(Clone, Copy)]
pub(super) struct SharedQuestion<'a> {
    pub query: &'a str,
    /// The question's embedding, shared with the local overlay's search.
    pub query_vector: &'a crate::retrieve::QueryVector,
    /// The paths whose shared hits are dropped: the overlay's ([`Engine::overlay_paths`]).
    pub excluded: &'a [String],
    pub pool: usize,
    pub use_vectors: bool,
    /// The fusion's settings, as the overlay's search used them (a local model's
    /// weights when it embeds), so that both lists' scores compare.
    pub rc: &'a crate::config::RetrieveConfig,
}

/// Resolves a shared ref and readies `connections` of its reading pool.
fn warm(shared: &SharedRef, connections: usize) -> Result<()> {
    match shared
        .store
        .cached_ref_snapshot(&shared.repo, &shared.ref_name)?
    {
        Some(snapshot) => shared.store.warm_reader(&snapshot, connections),
        None => Ok(()),
    }
}

impl Engine {
    /// The shared ref this engine reads, when the settings name one.
    pub fn shared_ref(&self) -> Option<&SharedRef> {
        self.shared.as_ref()
    }

    /// Readies the shared ref for questions: resolves it and has `connections` of the
    /// reading pool connected with a question's statements prepared
    /// ([`PgStore::warm_reader`]). Nothing to do without a shared ref, or while it has
    /// no state yet.
    pub fn warm_shared(&self, connections: usize) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        warm(shared, connections)
    }

    /// [`Engine::warm_shared`] with one connection, on a thread of its own: a server
    /// calls it as a folder's index is ready, and goes on. A database that is away is
    /// said by the first question, with its local results.
    pub fn start_warming_shared(&self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("ragls-pg-warm".into())
            .spawn(move || {
                // Its failure is the first question's to say (with local results).
                let _ = warm(&shared, 1);
            });
    }

    /// In a workspace that reads a shared index, narrows a walk to the local overlay: the
    /// files whose content differs from the ref's. Remembers the ref's files the
    /// workspace lacks. When the database cannot be reached the walk is left whole (the
    /// overlay becomes the local index) and `Some(note)` says why.
    pub(super) fn narrow_to_overlay(
        &mut self,
        walked: &mut workspace::WalkOutcome,
    ) -> Result<Option<String>> {
        let Some(shared) = self.shared.clone() else {
            return Ok(None);
        };
        if !self.config.store.overlay {
            walked.files.clear();
            self.store.set_meta(DELETED_META, "[]")?;
            return Ok(None);
        }
        let files = match shared_files(&shared) {
            Ok(files) => files,
            // Away, or no ragls index there yet: the local index is the whole workspace.
            Err(Error::SharedUnreachable(why) | Error::Usage(why)) => {
                self.store.set_meta(DELETED_META, "[]")?;
                return Ok(Some(format!("{why}; indexing the whole workspace locally")));
            }
            Err(e) => return Err(e),
        };
        let max_bytes = self.config.index.max_file_bytes;
        let known = self.store.file_states()?;
        if self.content_hashes.is_empty() {
            self.content_hashes = load_content_hashes(&self.index_dir);
        }
        let remembered = &self.content_hashes;
        let hashes: Vec<Option<[u8; 32]>> = walked
            .files
            .par_iter()
            .map(|f| {
                if !files.contains_key(&f.rel_path) {
                    return None;
                }
                // Unchanged on disk since it was last hashed (by the overlay, or by an
                // earlier run of this engine): that hash. Else the file is read.
                let same = |size: u64, mtime: i64| size == f.size && mtime == f.mtime_ns;
                match (known.get(&f.rel_path), remembered.get(&f.rel_path)) {
                    (Some(k), _) if same(k.size, k.mtime_ns) => Some(k.content_hash),
                    (_, Some((size, mtime, hash))) if same(*size, *mtime) => Some(*hash),
                    _ => content_hash(&f.abs_path, max_bytes),
                }
            })
            .collect();
        let differs: Vec<bool> = walked
            .files
            .iter()
            .zip(&hashes)
            .map(|(f, ours)| match (files.get(&f.rel_path), ours) {
                (Some(theirs), Some(ours)) => theirs != ours,
                _ => true,
            })
            .collect();
        let mut learned = false;
        for (f, hash) in walked.files.iter().zip(hashes) {
            if let Some(hash) = hash {
                let entry = (f.size, f.mtime_ns, hash);
                learned |= self.content_hashes.get(&f.rel_path) != Some(&entry);
                self.content_hashes.insert(f.rel_path.clone(), entry);
            }
        }
        if learned && self.holds_lock() {
            save_content_hashes(&self.index_dir, &self.content_hashes);
        }
        let seen: HashSet<&str> = walked.files.iter().map(|f| f.rel_path.as_str()).collect();
        let mut deleted: Vec<&String> = files
            .keys()
            .filter(|p| !seen.contains(p.as_str()))
            .collect();
        deleted.sort();
        let deleted = serde_json::to_string(&deleted).unwrap_or_else(|_| "[]".into());
        let mut keep = differs.into_iter();
        walked.files.retain(|_| keep.next().unwrap_or(true));
        self.store.set_meta(DELETED_META, &deleted)?;
        Ok(None)
    }

    /// Retrieval over the shared ref, the local overlay's paths left out; `Err(note)`
    /// when the database cannot be reached (the caller answers from the overlay).
    ///
    /// The ref's snapshot is the one remembered from the last question (no round trip to
    /// resolve it); the question's query checks that the ref still points there, and
    /// when it has moved the question is asked again of the new snapshot, so a reader
    /// sees a new state as soon as it is published, and one state per answer.
    pub(super) fn shared_hits(
        &self,
        shared: &SharedRef,
        asked: &SharedQuestion<'_>,
        notes: &mut Vec<String>,
    ) -> Result<std::result::Result<Vec<SearchHit>, String>> {
        let SharedQuestion {
            query,
            query_vector,
            excluded,
            pool,
            use_vectors,
            rc,
        } = *asked;
        let mut fresh = false;
        loop {
            let resolved = if fresh {
                shared.store.ref_snapshot(&shared.repo, &shared.ref_name)
            } else {
                shared
                    .store
                    .cached_ref_snapshot(&shared.repo, &shared.ref_name)
            };
            let snapshot = match resolved {
                Ok(Some(s)) => s,
                Ok(None) => {
                    notes.push(format!(
                        "the shared index has no ref {} of {} yet; results from the local index only",
                        shared.ref_name, shared.repo
                    ));
                    return Ok(Ok(Vec::new()));
                }
                Err(Error::SharedUnreachable(why)) => return Ok(Err(why)),
                // No ragls schema there yet, or one of another version: said, not fatal.
                Err(Error::Usage(why)) => {
                    notes.push(format!("{why}; results from the local index only"));
                    return Ok(Ok(Vec::new()));
                }
                Err(e) => return Err(e),
            };
            let identity = self.identity();
            let vectors = use_vectors && snapshot.identity == identity;
            let mut asked_notes = Vec::new();
            if use_vectors && !vectors {
                asked_notes.push(format!(
                    "the shared ref {} was embedded by {} ({} dimensions), this workspace embeds with {}; shared results are lexical only",
                    shared.ref_name, snapshot.identity.embedder, snapshot.identity.dimensions, identity.embedder
                ));
            }
            let source = retrieve::SharedSnapshot {
                store: &shared.store,
                repo: &shared.repo,
                ref_name: &shared.ref_name,
                snapshot: &snapshot,
                excluded,
                vectors,
                moved: Default::default(),
            };
            let sources = retrieve::Candidates {
                root: &self.root,
                source: &source,
                embedder: self.embedder.as_ref(),
                query_vector,
                // The shared index holds whole embeddings of one embedder; no partial model
                // to rescore with, no third list.
                rescore_lexical: false,
                hashed_weight: 0.0,
            };
            let found = retrieve::hybrid(&sources, query, pool, rc, &mut asked_notes);
            // The ref moved since it was remembered: once more, of its new snapshot (a
            // second move meanwhile is answered from the snapshot read: whole, if late).
            if source.moved.get() && !fresh && found.is_ok() {
                fresh = true;
                continue;
            }
            notes.extend(asked_notes);
            return match found {
                Ok(hits) => Ok(Ok(hits)),
                Err(Error::SharedUnreachable(why)) => Ok(Err(why)),
                Err(e) => Err(e),
            };
        }
    }

    /// The paths whose shared hits are dropped: every file the overlay holds (changed
    /// locally, or an editor buffer) and the ref's files the workspace lacks.
    pub(super) fn overlay_paths(&self) -> Result<Vec<String>> {
        let mut paths: Vec<String> = self.store.file_states()?.into_keys().collect();
        if let Some(deleted) = self.store.meta(DELETED_META)? {
            paths.extend(serde_json::from_str::<Vec<String>>(&deleted).unwrap_or_default());
        }
        paths.extend(self.overlays.iter().cloned());
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Why the last index run held the whole workspace locally (the shared index could
    /// not be reached then); `None` when it narrowed to the overlay.
    pub fn shared_note(&self) -> Option<&str> {
        self.shared_note.as_deref()
    }

    /// `(repo@ref at host)` of the shared index, for status lines.
    pub fn shared_description(&self) -> Option<String> {
        self.shared.as_ref().map(SharedRef::describe)
    }
}

/// The ref's files by path -> content hash (skipped files included: their content is
/// the same as the workspace's, so they are not part of the overlay either).
fn shared_files(shared: &SharedRef) -> Result<HashMap<String, [u8; 32]>> {
    let Some(snapshot): Option<Snapshot> =
        shared.store.ref_snapshot(&shared.repo, &shared.ref_name)?
    else {
        return Ok(HashMap::new());
    };
    Ok(shared
        .store
        .snapshot_files(snapshot.id)?
        .into_iter()
        .map(|(p, f)| (p, f.content_hash))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ref_is_the_setting_else_the_git_branch_else_main() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::default();
        assert_eq!(ref_name(dir.path(), &config), "main");
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref: refs/heads/feature/x\n").unwrap();
        assert_eq!(ref_name(dir.path(), &config), "feature/x");
        config.ref_name = "release".into();
        assert_eq!(ref_name(dir.path(), &config), "release");
    }

    #[test]
    fn the_repository_is_named_by_its_origin_else_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkout");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        let config = StoreConfig::default();
        assert_eq!(repo_name(&root, &config), "checkout");
        std::fs::write(
            root.join(".git/config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = git@github.com:acme/payments.git\n",
        )
        .unwrap();
        assert_eq!(repo_name(&root, &config), "payments");
    }
}
