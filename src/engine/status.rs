//! The index's state for `status` and `rag/status`, and the pure change detection that
//! `index` and `status` share.

use super::*;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EmbeddingInfo {
    pub provider: String,
    pub model: String,
    pub dimensions: usize,
}

/// The `rag/status` object of PROTOCOL.md, plus the CLI's extras.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub state: IndexState,
    pub workspace: String,
    pub index_dir: String,
    pub files: u64,
    pub chunks: u64,
    pub pending_files: u64,
    pub index_bytes: u64,
    pub embedding: EmbeddingInfo,
    pub skipped: BTreeMap<String, u64>,
    /// With a local model that embeds in the background: how many chunks have its
    /// vectors so far (`modelVectors`; absent for other embedders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_vectors: Option<ModelVectors>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_indexed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The shared team index read (`repo@ref at host:port/db`); the counts above are
    /// then the local overlay's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
}

impl Status {
    /// The status of a workspace with nothing indexed (yet), in `state`.
    pub fn empty(root: &Path, index_dir: &Path, state: IndexState) -> Status {
        Status {
            state,
            workspace: root.display().to_string(),
            index_dir: index_dir.display().to_string(),
            files: 0,
            chunks: 0,
            pending_files: 0,
            index_bytes: 0,
            embedding: EmbeddingInfo {
                provider: String::new(),
                model: String::new(),
                dimensions: 0,
            },
            skipped: BTreeMap::new(),
            model_vectors: None,
            last_indexed: None,
            last_error: None,
            shared: None,
        }
    }
}

impl Engine {
    /// The index's state. `pending_files` counts what a re-index would touch (a walk and
    /// stats, no reads).
    pub fn status(&self) -> Result<Status> {
        let counts = self.store.counts()?;
        let known = self.store.file_states()?;
        let walked = workspace::walk(&self.root, &self.walk_options())
            .map_err(|e| Error::Usage(e.to_string()))?;
        let changes = changes(&walked.files, &known, &self.overlays);
        // With a shared index the local store is the overlay, narrowed when indexing: a
        // walk's difference from it is not work pending.
        let pending = if self.shared.is_some() {
            0
        } else {
            (changes.to_read.len() + changes.removed.len()) as u64
        };
        // Another process indexing holds the lock; this engine holding it means idle here.
        let indexing = self._lock.is_none()
            && lock_is_held(&self.index_dir)
            && self.store.meta("indexing")?.as_deref() != Some("0");
        let degraded = self.store.meta("degraded")?.filter(|d| !d.is_empty());
        let interrupted = !indexing && self.interrupted()?;
        let state = match (indexing, &degraded) {
            (true, _) => IndexState::Indexing,
            (false, Some(_)) => IndexState::Degraded,
            (false, None) => IndexState::Ready,
        };
        Ok(Status {
            state,
            workspace: self.root.display().to_string(),
            index_dir: self.index_dir.display().to_string(),
            files: counts.files,
            chunks: counts.chunks,
            pending_files: pending,
            index_bytes: self.store.index_bytes(),
            embedding: self.embedding_info(),
            skipped: self.store.skip_counts()?.into_iter().collect(),
            model_vectors: self.model_vectors()?,
            last_indexed: self.store.meta("last_indexed")?,
            last_error: match (interrupted, degraded) {
                (true, _) => Some(format!(
                    "the last index run was interrupted before it finished ({pending} file(s) pending); run `ragls index` to finish it"
                )),
                (false, Some(d)) => Some(format!(
                    "{d}; retrieval is lexical only until `ragls index` succeeds"
                )),
                (false, None) => None,
            },
            shared: self.shared_description(),
        })
    }

    /// Whether the last index run stopped before its end (killed, crashed), so the index
    /// lacks files, and no process is indexing now: the run's mark is still set, or no
    /// run ever finished.
    pub fn interrupted(&self) -> Result<bool> {
        if self._lock.is_some() || lock_is_held(&self.index_dir) {
            return Ok(false);
        }
        Ok(self.store.meta("indexing")?.as_deref() == Some("1")
            || self.store.meta("last_indexed")?.is_none())
    }

    pub fn embedding_info(&self) -> EmbeddingInfo {
        EmbeddingInfo {
            provider: self.embedder.provider_name().into(),
            model: self.embedder.model_name(),
            dimensions: self.identity().dimensions,
        }
    }
}

/// An index's state (PROTOCOL.md's `state`), declared from best to worst: several
/// folders report the worst of theirs.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    Ready,
    Starting,
    Indexing,
    Degraded,
    Error,
}

impl std::fmt::Display for IndexState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexState::Ready => "ready",
            IndexState::Starting => "starting",
            IndexState::Indexing => "indexing",
            IndexState::Degraded => "degraded",
            IndexState::Error => "error",
        })
    }
}

/// What a walk means against the store's file states: the files to read (new, or their
/// size or mtime changed), how many are unchanged, and the known files the walk no longer
/// has. Open editor buffers (`overlays`) count as unchanged and are never removed. Pure;
/// `index` acts on it, `status` counts it.
pub(super) struct Changes<'a> {
    pub to_read: Vec<&'a WalkedFile>,
    pub unchanged: u64,
    pub removed: Vec<&'a String>,
}

pub(super) fn changes<'a>(
    walked: &'a [WalkedFile],
    known: &'a HashMap<String, FileState>,
    overlays: &HashSet<String>,
) -> Changes<'a> {
    let mut to_read = Vec::new();
    let mut unchanged = 0;
    for f in walked {
        if overlays.contains(&f.rel_path) {
            // An open editor buffer: its text, not the disk's, is indexed.
            unchanged += 1;
            continue;
        }
        match known.get(&f.rel_path) {
            Some(s) if s.size == f.size && s.mtime_ns == f.mtime_ns => unchanged += 1,
            _ => to_read.push(f),
        }
    }
    let seen: HashSet<&str> = walked.iter().map(|f| f.rel_path.as_str()).collect();
    let removed = known
        .keys()
        .filter(|p| !seen.contains(p.as_str()) && !overlays.contains(p.as_str()))
        .collect();
    Changes {
        to_read,
        unchanged,
        removed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walked(path: &str, size: u64, mtime_ns: i64) -> WalkedFile {
        WalkedFile {
            rel_path: path.into(),
            abs_path: PathBuf::from("/ws").join(path),
            size,
            mtime_ns,
        }
    }

    fn state(size: u64, mtime_ns: i64) -> FileState {
        FileState {
            size,
            mtime_ns,
            content_hash: [0; 32],
            skip_reason: None,
        }
    }

    #[test]
    fn changes_are_new_or_restated_files_and_known_files_gone_except_open_buffers() {
        let files = [
            walked("same.rs", 1, 1),
            walked("touched.rs", 1, 2),
            walked("new.rs", 1, 1),
            walked("open.rs", 9, 9),
        ];
        let known: HashMap<String, FileState> = [
            ("same.rs", state(1, 1)),
            ("touched.rs", state(1, 1)),
            ("open.rs", state(1, 1)),
            ("gone.rs", state(1, 1)),
            ("open_unsaved.rs", state(1, 1)),
        ]
        .into_iter()
        .map(|(p, s)| (p.to_string(), s))
        .collect();
        let overlays: HashSet<String> = ["open.rs", "open_unsaved.rs"]
            .into_iter()
            .map(String::from)
            .collect();
        let c = changes(&files, &known, &overlays);
        let to_read: Vec<&str> = c.to_read.iter().map(|f| f.rel_path.as_str()).collect();
        assert_eq!(to_read, vec!["touched.rs", "new.rs"]);
        assert_eq!(c.unchanged, 2);
        assert_eq!(c.removed, vec!["gone.rs"]);
    }
}
