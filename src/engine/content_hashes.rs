//! The content hashes a workspace keeps between runs (`path \t size \t mtime \t hash`
//! lines in its index folder): a file unchanged on disk since it was last hashed, by
//! size and mtime, is not read again. The local overlay keeps one list, the shared
//! index's writer another ([`remember_hashes`]), each process owning its file.

use crate::workspace::{self, WalkedFile};
use std::collections::HashMap;
use std::path::Path;

/// Where a writer of the shared index keeps its workspace's content hashes between runs
/// (beside the overlay's own, which a reader writes: each process owns its file).
pub(super) const WRITER_HASHES_FILE: &str = "shared-writer-hashes.tsv";

/// Saves the hashes of this walk for the next run, leaving out "racy" files: a file
/// modified in the same clock tick as (or after) it was read could change again with
/// the same size and mtime. Best effort; nothing is written when nothing changed. The
/// file is written on a thread of its own: the returned handle waits for it.
pub(super) fn remember_hashes(
    dir: &Path,
    files: &[WalkedFile],
    hashed: &[(String, Option<[u8; 32]>)],
    remembered: &HashMap<String, (u64, i64, [u8; 32])>,
    read_after: std::time::SystemTime,
) -> Option<Remembering> {
    let read_after_ns = read_after
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let trusted = |mtime_ns: i64| {
        // Whole seconds: a file system of coarse timestamps (FAT: 2 s), so the margin
        // is two of them; else its clock ticks in milliseconds.
        let margin = if mtime_ns % 1_000_000_000 == 0 {
            2_000_000_000
        } else {
            100_000_000
        };
        mtime_ns != 0 && mtime_ns < read_after_ns - margin
    };
    let fresh: HashMap<String, (u64, i64, [u8; 32])> = files
        .iter()
        .zip(hashed)
        .filter_map(|(f, (_, hash))| {
            let hash = (*hash)?;
            trusted(f.mtime_ns).then(|| (f.rel_path.clone(), (f.size, f.mtime_ns, hash)))
        })
        .collect();
    if fresh == *remembered {
        return None;
    }
    // Written beside the rest of the update (1-3 ms for the performance corpus's 476
    // files, most of it formatting, were on the walk's path to the first query).
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("ragls-remember-hashes".into())
        .spawn(move || {
            if std::fs::create_dir_all(&dir).is_ok() {
                save_content_hashes_as(&dir, WRITER_HASHES_FILE, &fresh);
            }
        })
        .ok()
        .map(|h| Remembering(Some(h)))
}

/// The writing of a walk's hashes for the next run ([`remember_hashes`]): waited for when
/// dropped, so a process that ends after the update leaves the file whole.
pub(super) struct Remembering(Option<std::thread::JoinHandle<()>>);

impl Drop for Remembering {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

/// blake3 of a file's content, as the store records it; `None` when it cannot be read
/// (then it is left out, as an unreadable file is locally).
pub(super) fn content_hash(path: &Path, max_bytes: u64) -> Option<[u8; 32]> {
    match workspace::read_file(path, max_bytes) {
        Ok(workspace::FileRead::Bytes(bytes)) => Some(*blake3::hash(&bytes).as_bytes()),
        _ => None,
    }
}

/// Where the workspace's content hashes are kept between runs, so a CLI run compares
/// the working tree with the ref by stats, not by reading every file.
pub(super) const CONTENT_HASHES_FILE: &str = "content-hashes.tsv";

/// `path \t size \t mtime \t hash` lines; an unreadable file is simply an empty cache.
pub(super) fn load_content_hashes(dir: &Path) -> HashMap<String, (u64, i64, [u8; 32])> {
    load_content_hashes_from(dir, CONTENT_HASHES_FILE)
}

pub(super) fn load_content_hashes_from(
    dir: &Path,
    file: &str,
) -> HashMap<String, (u64, i64, [u8; 32])> {
    let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut f = line.rsplitn(4, '\t');
            let hash = f.next()?;
            let mtime = f.next()?.parse().ok()?;
            let size = f.next()?.parse().ok()?;
            let path = f.next()?;
            let h = *blake3::Hash::from_hex(hash).ok()?.as_bytes();
            Some((path.to_string(), (size, mtime, h)))
        })
        .collect()
}

/// Best effort (a failed write costs a re-read next time); written aside, then renamed.
pub(super) fn save_content_hashes(dir: &Path, hashes: &HashMap<String, (u64, i64, [u8; 32])>) {
    save_content_hashes_as(dir, CONTENT_HASHES_FILE, hashes)
}

pub(super) fn save_content_hashes_as(
    dir: &Path,
    file: &str,
    hashes: &HashMap<String, (u64, i64, [u8; 32])>,
) {
    use std::fmt::Write as _;
    let mut text = String::new();
    for (path, (size, mtime, hash)) in hashes {
        if path.contains(['\t', '\n']) {
            continue;
        }
        // blake3's hex: a byte at a time through `write!` was most of the cost.
        let hex = blake3::Hash::from_bytes(*hash).to_hex();
        let _ = writeln!(text, "{path}\t{size}\t{mtime}\t{hex}");
    }
    // A name of its own per process: two writers of one workspace never mix lines.
    let tmp = dir.join(format!("{file}.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, dir.join(file));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashes_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut hashes = HashMap::new();
        hashes.insert("src/a b.rs".to_string(), (12u64, -1i64, [7u8; 32]));
        hashes.insert("bad\tname".to_string(), (1, 1, [1; 32]));
        save_content_hashes(dir.path(), &hashes);
        hashes.remove("bad\tname");
        assert_eq!(load_content_hashes(dir.path()), hashes);
        assert!(load_content_hashes(&dir.path().join("none")).is_empty());
    }
}
