//! Writing a ref of the shared team index (`ragls index --store`): the workspace is
//! walked and every file hashed (but those unchanged on disk since this workspace's
//! last run, by size and mtime); a file whose content the base ref (the ref's previous
//! state, or `--base`) has is kept as it is, one that the database has under another ref
//! is reused, and only the rest is chunked; only chunk texts missing from the shared
//! embedding cache are embedded. The new file versions and vectors are written ahead of
//! the ref's transaction, which lists them in a new snapshot and switches the ref to it.

use super::content_hashes::{
    content_hash, load_content_hashes_from, remember_hashes, Remembering, WRITER_HASHES_FILE,
};
use super::team::SharedRef;
use super::writer_base::{Keeping, Remembered};
use super::*;
use crate::store::pg::{
    CleanupHold, KnownVersions, NewFileVersion, Pending, PgStore, RefUpdate, RefUpdateStart,
    Snapshot, SnapshotFile, SnapshotStamp, UpdateStart, Via,
};
use std::sync::{Mutex, OnceLock};

/// What `ragls index --store` did.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SharedIndexReport {
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The ref the update started from (`None`: a first build).
    pub base: Option<String>,
    pub files_seen: u64,
    pub files_unchanged: u64,
    /// Changed files whose version another ref already had (nothing chunked).
    pub files_reused: u64,
    /// Files read to hash them (the rest unchanged on disk since the last run by size
    /// and mtime, their hashes remembered).
    pub files_hashed: u64,
    /// Files read and chunked in this run.
    pub files_chunked: u64,
    pub files_removed: u64,
    pub chunks_added: u64,
    /// Vectors computed by the embedder in this run.
    pub embedded: u64,
    /// Vectors found in the shared embedding cache.
    pub cached: u64,
    /// Requests made to a remote embedding service in this run.
    pub requests: u64,
    /// Whether the ref moved (false: it was up to date).
    pub updated: bool,
    pub snapshot: i64,
    pub elapsed_ms: u64,
    /// Time spent reading and chunking the changed files once the walk was done (those
    /// chunked while it went on count only as far as they were waited for).
    pub chunk_ms: u64,
    /// Time spent walking the workspace and hashing the files changed on disk.
    pub hash_ms: u64,
    /// Time spent in the embedding cache and the embedder (the last batch's vectors
    /// are stored during the publish, and counted there).
    pub embed_ms: u64,
    /// Time spent writing the new state and switching the ref (one transaction).
    pub publish_ms: u64,
}

/// Builds or updates `ref_name` of the workspace in the shared index: only files that
/// differ from `base` (default: the ref itself) are chunked, only texts the cache lacks
/// are embedded, and the ref switches to its new state in one transaction.
pub fn index_shared(
    root: &Path,
    config: &Config,
    base: Option<&str>,
    progress: &dyn IndexProgress,
) -> Result<SharedIndexReport> {
    let started = Instant::now();
    let budget = ChunkBudget {
        max_bytes: config.index.chunk_max_bytes,
        min_bytes: config.index.chunk_min_bytes,
        max_lines: config.index.chunk_max_lines,
    };
    let max_bytes = config.index.max_file_bytes;
    // The file list of the snapshot this workspace's writer made last: when that is the
    // base, the database does not send it again, and the files that differ from it are
    // chunked while the walk goes on.
    let remembered = super::location::index_dir_for(root, config)
        .ok()
        .and_then(|dir| Remembered::load(&dir));
    let (early_done, early_results) = std::sync::mpsc::channel();
    let early = remembered
        .as_ref()
        .map(|r| EarlyChunks::new(&r.files, budget, max_bytes, early_done));
    // The walk and the hashing need nothing from the database: they run beside
    // connecting, migrating and reading the base's file list (each some milliseconds,
    // most of a small update's time before it).
    let (setup, on_disk) = std::thread::scope(|s| {
        let on_disk = s.spawn(|| hash_workspace(root, config, early.as_ref()));
        let setup = shared_setup(root, config, base, remembered.as_ref().map(|r| r.stamp));
        let on_disk = on_disk.join().unwrap_or_else(|_| {
            Err(Error::Other(
                "walking the workspace stopped unexpectedly".into(),
            ))
        });
        (setup, on_disk)
    });
    // Collected once the database is being asked about the changed files (below).
    let early = BegunChunks {
        started: early.map_or(0, EarlyChunks::started),
        results: early_results,
    };
    let SharedSetup {
        shared,
        embedder,
        identity,
        current,
        base_snapshot,
        base_files,
        hold,
        requests_before,
        mut report,
    } = setup?;
    let OnDisk {
        walked,
        hashed,
        // Held to the end of the update, when the hashes are surely written.
        remembering: _remembering,
        files_hashed,
        hash_ms,
    } = on_disk?;
    let store = &shared.store;
    // Not read from the database: the base is the remembered snapshot.
    let base_files = match base_files {
        BaseFiles::Read(files) => files,
        BaseFiles::Remembered => remembered.map(|r| r.files).unwrap_or_default(),
    };
    report.files_seen = walked.files.len() as u64;
    report.files_hashed = files_hashed;
    report.hash_ms = hash_ms;
    progress.start(walked.files.len() as u64);
    let mut changed_paths: Vec<(&WalkedFile, [u8; 32])> = Vec::new();
    for (f, (_, hash)) in walked.files.iter().zip(&hashed) {
        let Some(hash) = hash else { continue };
        match base_files.get(&f.rel_path) {
            Some(known) if known.content_hash == *hash => report.files_unchanged += 1,
            _ => changed_paths.push((f, *hash)),
        }
    }
    let seen: HashSet<&str> = walked.files.iter().map(|f| f.rel_path.as_str()).collect();
    let mut dropped: Vec<String> = base_files
        .keys()
        .filter(|p| !seen.contains(p.as_str()))
        .cloned()
        .collect();
    report.files_removed = dropped.len() as u64;
    let keys: Vec<(String, [u8; 32])> = changed_paths
        .iter()
        .map(|(f, h)| (f.rel_path.clone(), *h))
        .collect();
    // The base's versions of the changed paths: a new version may share their postings.
    let bases: Vec<i64> = changed_paths
        .iter()
        .filter_map(|(f, _)| base_files.get(&f.rel_path))
        .filter(|known| !known.skipped)
        .map(|known| known.blob_id)
        .collect();
    let same_base = match (&current, &base_snapshot) {
        (Some(c), Some(b)) => c.id == b.id,
        _ => false,
    };
    let chunk_started = Instant::now();
    // The connection the new versions are written on opens while they are chunked.
    let opened_writer = match changed_paths.is_empty() {
        true => None,
        false => store.open_writer().ok(),
    };
    // Which changed files' versions the database has already (another ref's, an earlier
    // state's) is asked while the files are chunked: once the answer is in, a file it
    // names is not chunked; one chunked before it came is dropped.
    let answer: OnceLock<KnownVersions> = OnceLock::new();
    let (answered, prepared) = std::thread::scope(|s| {
        let asking = s.spawn(|| {
            let _ =
                answer.set(store.known_versions(&keys, &bases, &identity, hold.connection())?);
            Ok(())
        });
        // The changed files chunked during the walk, each where its content is the one
        // chunked (a file that changed again since is chunked anew).
        let mut early_chunked = early.wait();
        let chunked_early: Vec<Option<ChunkedFile>> = changed_paths
            .iter()
            .map(|(f, hash)| match early_chunked.remove(&f.rel_path) {
                Some((h, version)) if h == *hash => Some(version),
                _ => None,
            })
            .collect();
        let prepared: Vec<ChunkedFile> = changed_paths
            .par_iter()
            .zip(chunked_early)
            .map(|((f, hash), early)| {
                if let Some(version) = early {
                    return version;
                }
                let known = answer
                    .get()
                    .is_some_and(|k| k.known.contains_key(&(f.rel_path.clone(), *hash)));
                if known {
                    return None;
                }
                new_version(indexing::prepare(f, None, &budget, max_bytes))
            })
            .collect();
        let known = asking.join().unwrap_or_else(|_| {
            Err(Error::Other(
                "asking for known file versions stopped unexpectedly".into(),
            ))
        });
        (known, prepared)
    });
    answered?;
    let mut versions_known = answer.into_inner().unwrap_or_default();
    report.chunk_ms = chunk_started.elapsed().as_millis() as u64;
    // The new file versions go to the database at once, written while their texts are
    // embedded (each text once).
    let mut changed: Vec<(String, i64)> = Vec::with_capacity(changed_paths.len());
    let mut needed: Vec<(TextHash, String)> = Vec::new();
    let mut asked = HashSet::new();
    let mut versions = Vec::new();
    for ((f, hash), version) in changed_paths.iter().zip(prepared) {
        if base_files.contains_key(&f.rel_path) {
            dropped.push(f.rel_path.clone());
        }
        if let Some(blob_id) = versions_known.known.get(&(f.rel_path.clone(), *hash)) {
            report.files_reused += 1;
            changed.push((f.rel_path.clone(), *blob_id));
            continue;
        }
        report.files_chunked += 1;
        // None: unreadable now (removed since the walk), left out of the new state.
        let Some((mut version, texts)) = version else {
            continue;
        };
        if let Some(known) = base_files.get(&f.rel_path) {
            if let Some(base) = versions_known.bases.get(&known.blob_id) {
                version.share_with(known.blob_id, base);
            }
        }
        for (text_hash, text) in texts {
            if asked.insert(text_hash) {
                needed.push((text_hash, text));
            }
        }
        versions.push(version);
    }
    // The reused versions' texts that lack a vector (their writer stopped before it
    // stored them all) are embedded with the new ones.
    for (text_hash, text) in std::mem::take(&mut versions_known.unembedded) {
        if asked.insert(text_hash) {
            needed.push((text_hash, text));
        }
    }
    // Which texts the cache has is asked first: the answer comes while the versions'
    // rows are built and sent.
    let hashes: Vec<TextHash> = needed.iter().map(|(h, _)| *h).collect();
    let cached = store.cached_texts(&identity, &hashes, hold.connection())?;
    // Each new version's id and whether it is a skipped file, for the file list kept
    // for the next update.
    let new_ids: HashMap<String, (i64, bool)> = versions
        .iter()
        .zip(&versions_known.fresh_ids)
        .map(|(v, id)| (v.path.clone(), (*id, v.skip_reason.is_some())))
        .collect();
    let writing = store.write_versions(versions, &versions_known.fresh_ids, opened_writer)?;
    let embed_started = Instant::now();
    let embedded = embed_for_shared(
        store,
        &*embedder,
        &identity,
        needed,
        cached,
        hold.connection(),
        &mut report,
    );
    report.embed_ms = embed_started.elapsed().as_millis() as u64;
    let embedded = match embedded {
        Ok(vectors) => vectors,
        Err(e) => {
            // Nothing is left writing when an update returns.
            let _ = writing.wait();
            return Err(e);
        }
    };
    // The ref's transaction begins now, listing the base's files that stay while the
    // new versions and vectors are still being written (see `PgStore::begin_publish`);
    // not before the embedding, which may wait on a remote model for minutes: an open
    // transaction holds back the server's vacuum (and may meet
    // `idle_in_transaction_session_timeout`).
    let nothing_to_switch = same_base && changed_paths.is_empty() && dropped.is_empty();
    // The last vectors go with the publish (it waits for them before its transaction
    // begins); without one they are waited for here.
    let (open_publish, last_vectors) = if nothing_to_switch {
        (None, embedded)
    } else {
        let mut replaced = dropped.clone();
        replaced.extend(changed_paths.iter().map(|(f, _)| f.rel_path.clone()));
        match store.begin_publish(RefUpdateStart {
            repo: &shared.repo,
            ref_name: &shared.ref_name,
            identity: &identity,
            base: base_snapshot.as_ref(),
            base_files: base_files.len(),
            replaced,
            hold,
            vectors: embedded,
        }) {
            Ok(open) => (Some(open), Pending::nothing()),
            Err(e) => {
                let _ = writing.wait();
                return Err(e);
            }
        }
    };
    // Waited for either way: nothing is left writing once this returns.
    let written = match writing.wait() {
        Ok(w) => w,
        Err(e) => {
            if let Some(open_publish) = open_publish {
                open_publish.abandon();
            }
            last_vectors.wait()?;
            return Err(e);
        }
    };
    report.chunks_added = written.chunks_added;
    let hashes: HashMap<&str, [u8; 32]> = changed_paths
        .iter()
        .map(|(f, h)| (f.rel_path.as_str(), *h))
        .collect();
    let new_list = new_file_list(
        base_files,
        &dropped,
        &changed,
        &written.files,
        &versions_known,
        &new_ids,
        &hashes,
    );
    changed.extend(written.files);
    // Begun above whenever anything may change; when nothing did after all (the changed
    // files unreadable now), the transaction is rolled back as it is dropped.
    let unchanged = same_base && changed.is_empty() && dropped.is_empty();
    let switching = match open_publish {
        Some(open_publish) if unchanged => {
            open_publish.abandon();
            None
        }
        open_publish => open_publish,
    };
    if let Some(open_publish) = switching {
        let publish_started = Instant::now();
        // Written aside while the publish runs; kept under the new snapshot's stamp.
        let keeping = new_list.and_then(|files| {
            let dir = super::location::index_dir_for(root, config).ok()?;
            Keeping::start(&dir, files)
        });
        let published = open_publish.finish(RefUpdate {
            dropped,
            changed,
            chunks_added: report.chunks_added,
        })?;
        if let Some(keeping) = keeping {
            keeping.keep(published.stamp);
        }
        report.updated = true;
        report.snapshot = published.snapshot;
        report.publish_ms = publish_started.elapsed().as_millis() as u64;
    } else {
        last_vectors.wait()?;
        report.snapshot = current.map(|c| c.id).unwrap_or_default();
    }
    report.requests = embedder.requests_sent() - requests_before;
    progress.advance(walked.files.len() as u64);
    progress.finish();
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The file list of the snapshot an update publishes, as the database will hold it: the
/// base's files but the dropped and the changed ones, and the changed ones (`known`:
/// versions the database had; `written`: the new ones, by the ids they were written
/// under). `None` when a new version was found written by another writer meanwhile
/// (its id is that writer's, and what it holds is not known here).
fn new_file_list(
    mut files: HashMap<String, SnapshotFile>,
    dropped: &[String],
    known: &[(String, i64)],
    written: &[(String, i64)],
    versions_known: &KnownVersions,
    new_ids: &HashMap<String, (i64, bool)>,
    hashes: &HashMap<&str, [u8; 32]>,
) -> Option<HashMap<String, SnapshotFile>> {
    for path in dropped {
        files.remove(path);
    }
    let known = known
        .iter()
        .map(|(path, id)| Some((path, *id, versions_known.skipped.contains(id))));
    let written = written.iter().map(|(path, id)| match new_ids.get(path) {
        Some(&(fresh, skipped)) if fresh == *id => Some((path, *id, skipped)),
        _ => None,
    });
    for entry in known.chain(written) {
        let (path, blob_id, skipped) = entry?;
        let content_hash = *hashes.get(path.as_str())?;
        files.insert(
            path.clone(),
            SnapshotFile {
                content_hash,
                blob_id,
                skipped,
            },
        );
    }
    Some(files)
}

/// A changed file chunked: its new version and its chunks' embedding texts; `None` when
/// it could not be read.
type ChunkedFile = Option<(NewFileVersion, Vec<(TextHash, String)>)>;

/// A chunked file as the shared index stores it: the new version (its postings counted
/// here, on the chunking thread) and its chunks' embedding texts; `None` when the file
/// could not be read.
fn new_version(prepared: indexing::Prepared) -> ChunkedFile {
    let (path, state, chunks) = match prepared {
        indexing::Prepared::Chunked {
            path,
            state,
            chunks,
        } => (path, state, chunks),
        indexing::Prepared::Skipped { path, state }
        | indexing::Prepared::Touched { path, state } => (path, state, Vec::new()),
        indexing::Prepared::Failed { .. } => return None,
    };
    let mut texts = Vec::with_capacity(chunks.len());
    let mut stored = Vec::with_capacity(chunks.len());
    for c in chunks {
        texts.push((c.text_hash, c.embedding_text));
        stored.push(c.stored);
    }
    let version = NewFileVersion::new(
        path,
        state.content_hash,
        state.skip_reason.map(|r| r.as_str().to_string()),
        stored,
    );
    Some((version, texts))
}

/// What a shared update knows from the database before it looks at the changes.
struct SharedSetup {
    shared: SharedRef,
    embedder: Box<dyn Embedder>,
    identity: Identity,
    /// The ref's snapshot now (`None`: a first build).
    current: Option<Snapshot>,
    /// The snapshot the update starts from, and its files.
    base_snapshot: Option<Snapshot>,
    base_files: BaseFiles,
    /// Keeps the clean-up from removing what this run reads, reuses and writes.
    hold: CleanupHold,
    /// The embedder's requests before this run (a remote model's dimension may be
    /// asked here).
    requests_before: u64,
    report: SharedIndexReport,
}

/// The files of the snapshot an update starts from.
enum BaseFiles {
    /// As the database sent them.
    Read(HashMap<String, SnapshotFile>),
    /// Not sent: the base is the snapshot this workspace's writer published last, whose
    /// list it kept ([`Remembered`]).
    Remembered,
}

/// Connects (a writer: the schema is created or migrated), resolves the ref and its
/// base and reads the base's file list.
fn shared_setup(
    root: &Path,
    config: &Config,
    base: Option<&str>,
    remembered: Option<SnapshotStamp>,
) -> Result<SharedSetup> {
    // A writer works on up to five connections at once (its hold on the clean-up,
    // which also reads what the database has and, later, runs the ref's transaction;
    // two writing file versions; two storing a large update's vectors), and seven are
    // allowed: a smaller pool, set for the editors, would make it wait on itself.
    let mut config = config.clone();
    config.store.pool_size = config.store.pool_size.max(WRITER_CONNECTIONS);
    let config = &config;
    let shared = SharedRef::from_config(root, config)?
        .ok_or_else(|| Error::Usage("no shared index: give --store URL or set store.url".into()))?;
    let store = &shared.store;
    // Creates or migrates the schema when it is not current (found in the same round trip).
    let start = store.open_update(&shared.repo, &shared.ref_name, base, remembered)?;
    if let (Some(b), Some(None)) = (base, &start.named_base) {
        return Err(Error::Usage(format!(
            "--base {b}: the shared index has no ref {b} of {}",
            shared.repo
        )));
    }
    let embedder = crate::provider::embeddings::embedder_for(config)?;
    let requests_before = embedder.requests_sent();
    // A remote model's dimension is what the ref recorded for it: no probe request.
    let recorded = start
        .current
        .as_ref()
        .or(start.named_base.as_ref().and_then(|b| b.as_ref()))
        .map(|s| s.identity.clone());
    if let Some(recorded) = recorded {
        if recorded.embedder == embedder.id() && recorded.dimensions > 0 {
            embedder.assume_dimensions(recorded.dimensions);
        }
    }
    let dims = embedder.dimensions();
    if dims == 0 {
        return Err(Error::Other(format!(
            "embedding failed ({}); the shared ref was not updated",
            embedder
                .last_error()
                .unwrap_or_else(|| "the model's dimension is unknown".into())
        )));
    }
    let identity = Identity {
        embedder: embedder.id(),
        dimensions: dims,
    };
    if !start.has_vector_index(dims) {
        store.ensure_vector_index(dims)?;
    }
    let UpdateStart {
        hold,
        current,
        named_base,
        base_files,
        ..
    } = start;
    let mut report = SharedIndexReport {
        repo: shared.repo.clone(),
        ref_name: shared.ref_name.clone(),
        ..SharedIndexReport::default()
    };
    let base_name = base.unwrap_or(&shared.ref_name).to_string();
    let base_snapshot = match named_base {
        Some(named) => named,
        None => current.clone(),
    }
    // Vectors of another embedder are not reused: that base is rebuilt from nothing.
    .filter(|s| s.identity == identity);
    report.base = base_snapshot.as_ref().map(|_| base_name);
    let base_files = match (&base_snapshot, base_files) {
        (None, _) => BaseFiles::Read(HashMap::new()),
        (Some(_), Some(files)) => BaseFiles::Read(files),
        (Some(_), None) => BaseFiles::Remembered,
    };
    Ok(SharedSetup {
        shared,
        embedder,
        identity,
        current,
        base_snapshot,
        base_files,
        hold,
        requests_before,
        report,
    })
}

/// The workspace as it is on disk: its files and their content hashes.
struct OnDisk {
    walked: workspace::WalkOutcome,
    /// Each walked file's content hash, in the walk's order (`None`: unreadable).
    hashed: Vec<(String, Option<[u8; 32]>)>,
    /// This walk's hashes being saved for the next run.
    remembering: Option<Remembering>,
    files_hashed: u64,
    hash_ms: u64,
}

/// Embeds the texts the shared cache lacks (`cached`: those it has, being asked), a
/// batch at a time, each batch stored while the next is embedded, and returns the last
/// batch's storing: the ref switches once it is done (those before are kept should a
/// later step fail).
fn embed_for_shared(
    store: &PgStore,
    embedder: &dyn crate::embed::Embedder,
    identity: &Identity,
    needed: Vec<(TextHash, String)>,
    cached: Pending<HashSet<TextHash>>,
    held: Option<Via>,
    report: &mut SharedIndexReport,
) -> Result<Pending<()>> {
    let cached = cached.wait()?;
    report.cached = cached.len() as u64;
    let missing: Vec<(TextHash, String)> = needed
        .into_iter()
        .filter(|(h, _)| !cached.contains(h))
        .collect();
    // Vectors are stored on VECTOR_WRITERS connections at once: each new vector's
    // insertion into the HNSW graph is the server's work of a whole process, and one
    // connection storing them was most of a first build's time (a core busy, the other
    // idle).
    let mut storing: std::collections::VecDeque<Pending<()>> = std::collections::VecDeque::new();
    let wait_all =
        |storing: std::collections::VecDeque<Pending<()>>| Pending::all(storing.into())?.wait();
    let group_size = embedder.batch_size().max(1) * 4;
    // A small update's vectors (one group) are stored on the connection of the writer's
    // hold, which is idle until its publish: no connection of their own to open.
    let via = match missing.len() <= group_size {
        true => held,
        false => None,
    };
    for group in missing.chunks(group_size) {
        let texts: Vec<&str> = group.iter().map(|(_, t)| t.as_str()).collect();
        let vectors = match embedder.embed(&texts) {
            Ok(v) => v,
            Err(e) => {
                wait_all(storing)?;
                return Err(Error::Other(format!(
                    "embedding failed ({e}); the shared ref was not updated (vectors computed so far are cached)"
                )));
            }
        };
        if vectors.len() != texts.len() {
            wait_all(storing)?;
            return Err(Error::Other(format!(
                "the embedder returned {} vectors for {} texts; the shared ref was not updated",
                vectors.len(),
                texts.len()
            )));
        }
        let items: Vec<(TextHash, Vec<f32>)> = group.iter().map(|(h, _)| *h).zip(vectors).collect();
        report.embedded += items.len() as u64;
        if storing.len() >= VECTOR_WRITERS {
            if let Some(oldest) = storing.pop_front() {
                if let Err(e) = oldest.wait() {
                    wait_all(storing)?;
                    return Err(e);
                }
            }
        }
        storing.push_back(store.put_vectors(identity, items, via.clone())?);
    }
    // The last ones are waited for in the ref's transaction, before its commit.
    Pending::all(storing.into())
}

/// Connections that store new vectors at once (see `embed_for_shared`).
const VECTOR_WRITERS: usize = 2;

/// Walks the workspace and hashes what changed on disk since this workspace last wrote
/// a ref (size and mtime as the last run saw them); everything in a fresh CI checkout,
/// whose mtimes are all new.
fn hash_workspace(root: &Path, config: &Config, early: Option<&EarlyChunks>) -> Result<OnDisk> {
    let hash_started = Instant::now();
    let hash_cache = super::location::index_dir_for(root, config).ok();
    let remembered = hash_cache
        .as_deref()
        .map(|d| load_content_hashes_from(d, WRITER_HASHES_FILE))
        .unwrap_or_default();
    let walk_options = WalkOptions {
        max_file_bytes: config.index.max_file_bytes,
        exclude: config.index.exclude.clone(),
        index_secrets: config.index.index_secrets,
        // A tree the size of the last run's is walked on one thread below
        // SERIAL_WALK_BELOW_FILES: the parallel walker's threads cost more than they
        // save there (see the constant).
        threads: match remembered.len() {
            n if n > 0 && n < SERIAL_WALK_BELOW_FILES => 1,
            _ => 0,
        },
    };
    let walk_started = std::time::SystemTime::now();
    let max_bytes = config.index.max_file_bytes;
    let read = std::sync::atomic::AtomicU64::new(0);
    // A file the same on disk (size and mtime) as at the last run: its hash then.
    let unchanged_on_disk = |f: &WalkedFile| match remembered.get(&f.rel_path) {
        Some((size, mtime, hash))
            if *size == f.size
                && *mtime == f.mtime_ns
                && f.mtime_ns != 0
                && f.size <= max_bytes =>
        {
            Some(*hash)
        }
        _ => None,
    };
    // The first few files changed on disk are hashed as the walk finds them, and those
    // that differ from the last snapshot's are chunked at once (see [`EarlyChunks`]).
    let hashed_early: Mutex<HashMap<String, Option<[u8; 32]>>> = Mutex::new(HashMap::new());
    let on_file = |f: &WalkedFile| {
        let Some(early) = early else { return };
        if unchanged_on_disk(f).is_some() {
            return;
        }
        let mut hashed_early = hashed_early.lock().unwrap_or_else(|e| e.into_inner());
        if hashed_early.len() >= EARLY_FILES {
            return;
        }
        read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hash = content_hash(&f.abs_path, max_bytes);
        if let Some(hash) = hash {
            early.chunk_if_changed(f, hash);
        }
        hashed_early.insert(f.rel_path.clone(), hash);
    };
    let walked = workspace::walk_visiting(root, &walk_options, &on_file)
        .map_err(|e| Error::Usage(e.to_string()))?;
    let hashed_early = hashed_early.into_inner().unwrap_or_else(|e| e.into_inner());
    // What is known without reading, then the rest read on every core. Not on the
    // thread pool when nothing is left to read: the files chunked early keep it busy,
    // and a parallel pass would wait for them.
    let mut hashed: Vec<(String, Option<Option<[u8; 32]>>)> = walked
        .files
        .iter()
        .map(|f| {
            let known = match unchanged_on_disk(f) {
                Some(hash) => Some(Some(hash)),
                None => hashed_early.get(&f.rel_path).copied(),
            };
            (f.rel_path.clone(), known)
        })
        .collect();
    if hashed.iter().any(|(_, known)| known.is_none()) {
        hashed
            .par_iter_mut()
            .zip(&walked.files)
            .filter(|((_, known), _)| known.is_none())
            .for_each(|((_, known), f)| {
                read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *known = Some(content_hash(&f.abs_path, max_bytes));
            });
    }
    let hashed: Vec<(String, Option<[u8; 32]>)> = hashed
        .into_iter()
        .map(|(path, known)| (path, known.flatten()))
        .collect();
    let remembering = hash_cache
        .as_deref()
        .and_then(|dir| remember_hashes(dir, &walked.files, &hashed, &remembered, walk_started));
    Ok(OnDisk {
        walked,
        hashed,
        remembering,
        files_hashed: read.into_inner(),
        hash_ms: hash_started.elapsed().as_millis() as u64,
    })
}

/// A changed file as chunked during the walk: its path, the content hash it was chunked
/// for, and its new version (`None`: it could not be read then), or `None` when chunking
/// it panicked.
type EarlyChunk = (String, [u8; 32], Option<ChunkedFile>);

/// Files chunked while the walk goes on: a file that changed on disk and whose content
/// is not the one in the snapshot this workspace's writer published last (which is the
/// base of most updates) is chunked as soon as the walk finds it, on the thread pool,
/// while the walker's thread goes on and the set-up waits for the database. The update
/// takes the versions of the files that did change from the base, chunked for the
/// content it has now, and drops the rest. Without it the chunking began once the walk
/// was done: on the performance corpus, 3.5 ms into a 1% update of 17.
struct EarlyChunks<'a> {
    last_list: &'a HashMap<String, SnapshotFile>,
    budget: ChunkBudget,
    max_bytes: u64,
    started: std::sync::atomic::AtomicUsize,
    /// Where each file begun is sent once chunked ([`BegunChunks`] receives them).
    done: std::sync::mpsc::Sender<EarlyChunk>,
}

/// The most files hashed and chunked during the walk: past them (a checkout of another
/// branch) the files are hashed on every core once the walk is done, and chunked once
/// the base's list is in.
const EARLY_FILES: usize = 32;

impl<'a> EarlyChunks<'a> {
    fn new(
        last_list: &'a HashMap<String, SnapshotFile>,
        budget: ChunkBudget,
        max_bytes: u64,
        done: std::sync::mpsc::Sender<EarlyChunk>,
    ) -> Self {
        EarlyChunks {
            last_list,
            budget,
            max_bytes,
            started: Default::default(),
            done,
        }
    }

    /// Starts chunking `f`, of content `hash`, unless the last snapshot has that content.
    fn chunk_if_changed(&self, f: &WalkedFile, hash: [u8; 32]) {
        if self.last_list.get(&f.rel_path).map(|s| s.content_hash) == Some(hash) {
            return;
        }
        let sender = self.done.clone();
        let (f, budget, max_bytes) = (f.clone(), self.budget, self.max_bytes);
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rayon::spawn(move || {
            // A panic here would abort the process (a spawned job has no caller to
            // unwind to): the file is left to the update's own chunking instead.
            let version = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                new_version(indexing::prepare(&f, None, &budget, max_bytes))
            }));
            let _ = sender.send((f.rel_path, hash, version.ok()));
        });
    }

    /// How many files were begun (the walk is done with the last snapshot's list).
    fn started(self) -> usize {
        self.started.into_inner()
    }
}

/// The files [`EarlyChunks`] began chunking.
struct BegunChunks {
    started: usize,
    results: std::sync::mpsc::Receiver<EarlyChunk>,
}

impl BegunChunks {
    /// Waits for them and returns each by path, with the hash it was chunked for.
    fn wait(self) -> HashMap<String, ([u8; 32], ChunkedFile)> {
        self.results
            .iter()
            .take(self.started)
            .filter_map(|(path, hash, version)| Some((path, (hash, version?))))
            .collect()
    }
}

/// A writer whose last run hashed fewer files than this walks the workspace on one
/// thread. Medians of 40 walks on two cores: the performance corpus (476 files) 1.96 ms
/// on one thread against 2.8 on the parallel walker's two; bigcorp (3,254 files) 19 ms
/// against 13.9.
const SERIAL_WALK_BELOW_FILES: usize = 1500;

/// The connections a writer of the shared index may hold at once (see `shared_setup`).
const WRITER_CONNECTIONS: usize = 7;
