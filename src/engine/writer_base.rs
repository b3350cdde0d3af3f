//! A writer's memory of the shared-index snapshot it made last: that snapshot's file list,
//! kept in the workspace's index folder under the snapshot's stamp (id and creation
//! time), so that the next update from the same base does not read the list from the
//! database again (on the performance corpus, 476 rows and a tenth of a small update's
//! server time). The database still decides: the list stands in only when the base's
//! stamp there is the one kept ([`PgStore::open_update`]), and a list that does not
//! read back whole is not offered.
//!
//! [`PgStore::open_update`]: crate::store::pg::PgStore::open_update

use crate::store::pg::{SnapshotFile, SnapshotStamp};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The kept list: a line per file (path, blob id, skipped, content hash, tab-separated),
/// then a last line `snapshot <id> <micros>`, written last, so a list cut short has none.
const FILE: &str = "shared-writer-base.tsv";

/// A kept file list and the snapshot it is of.
pub(super) struct Remembered {
    pub stamp: SnapshotStamp,
    pub files: HashMap<String, SnapshotFile>,
}

impl Remembered {
    /// The list kept in `dir`; `None` when there is none or it does not read back whole.
    pub fn load(dir: &Path) -> Option<Remembered> {
        let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
        let (body, trailer) = split_trailer(&text)?;
        let mut f = trailer.split('\t');
        if f.next()? != "snapshot" {
            return None;
        }
        let stamp = SnapshotStamp {
            id: f.next()?.parse().ok()?,
            micros: f.next()?.parse().ok()?,
        };
        let files = body
            .lines()
            .map(parse_line)
            .collect::<Option<HashMap<_, _>>>()?;
        Some(Remembered { stamp, files })
    }
}

/// The text before the last line and the last line.
fn split_trailer(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_suffix('\n')?;
    match text.rfind('\n') {
        Some(i) => Some((&text[..=i], &text[i + 1..])),
        None => Some(("", text)),
    }
}

fn parse_line(line: &str) -> Option<(String, SnapshotFile)> {
    let mut f = line.split('\t');
    let path = f.next()?.to_string();
    let blob_id = f.next()?.parse().ok()?;
    let skipped = match f.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let content_hash = *blake3::Hash::from_hex(f.next()?).ok()?.as_bytes();
    if f.next().is_some() {
        return None;
    }
    Some((
        path,
        SnapshotFile {
            content_hash,
            blob_id,
            skipped,
        },
    ))
}

/// A new snapshot's file list being written aside while the snapshot is published;
/// [`Keeping::keep`] stamps it and puts it in place. Dropped without that (the publish
/// failed), it leaves the kept list as it was.
pub(super) struct Keeping {
    dir: PathBuf,
    tmp: PathBuf,
    writing: Option<std::thread::JoinHandle<bool>>,
}

impl Keeping {
    /// Starts writing `files` on a thread of its own; `None` when a path cannot be
    /// written in this form (a tab or a line break in it): a list missing a file would
    /// hide that file's changes from the next update.
    pub fn start(dir: &Path, files: HashMap<String, SnapshotFile>) -> Option<Keeping> {
        if files.keys().any(|p| p.contains(['\t', '\n', '\r'])) {
            return None;
        }
        // A name of its own per process: two writers of one workspace never mix lines.
        let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
        let (folder, path) = (dir.to_path_buf(), tmp.clone());
        let writing = std::thread::Builder::new()
            .name("ragls-keep-base".into())
            .spawn(move || {
                let mut text = String::with_capacity(files.len() * 120);
                for (path, f) in &files {
                    let _ = writeln!(
                        text,
                        "{path}\t{}\t{}\t{}",
                        f.blob_id,
                        u8::from(f.skipped),
                        blake3::Hash::from_bytes(f.content_hash).to_hex()
                    );
                }
                std::fs::create_dir_all(&folder).is_ok() && std::fs::write(&path, text).is_ok()
            })
            .ok()?;
        Some(Keeping {
            dir: dir.to_path_buf(),
            tmp,
            writing: Some(writing),
        })
    }

    /// Stamps the list with the snapshot published and puts it in place (best effort: a
    /// list not kept costs the next update a read of the base's files).
    pub fn keep(mut self, stamp: SnapshotStamp) {
        let written = self
            .writing
            .take()
            .is_some_and(|w| w.join().unwrap_or(false));
        if !written {
            return;
        }
        let trailer = format!("snapshot\t{}\t{}\n", stamp.id, stamp.micros);
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, trailer.as_bytes()));
        if appended.is_ok() {
            let _ = std::fs::rename(&self.tmp, self.dir.join(FILE));
        }
    }
}

impl Drop for Keeping {
    fn drop(&mut self) {
        if let Some(w) = self.writing.take() {
            let _ = w.join();
        }
        // Gone once renamed; else a list never stamped.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(blob_id: i64, byte: u8, skipped: bool) -> SnapshotFile {
        SnapshotFile {
            content_hash: [byte; 32],
            blob_id,
            skipped,
        }
    }

    #[test]
    fn a_kept_list_reads_back_under_the_stamp_it_was_kept_with() {
        let dir = tempfile::tempdir().unwrap();
        let files = HashMap::from([
            ("src/a.rs".to_string(), file(7, 0xab, false)),
            ("big.bin".to_string(), file(9, 0x01, true)),
        ]);
        let stamp = SnapshotStamp {
            id: 42,
            micros: 1_764_700_000_123_456,
        };
        Keeping::start(dir.path(), files.clone())
            .unwrap()
            .keep(stamp);
        let back = Remembered::load(dir.path()).expect("the kept list");
        assert_eq!(back.stamp, stamp);
        assert_eq!(back.files, files);
        // The list written aside is gone once kept.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_list_whose_publish_failed_leaves_the_kept_one_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let first = HashMap::from([("a.rs".to_string(), file(1, 1, false))]);
        let stamp = SnapshotStamp { id: 1, micros: 10 };
        Keeping::start(dir.path(), first.clone())
            .unwrap()
            .keep(stamp);
        let second = HashMap::from([("b.rs".to_string(), file(2, 2, false))]);
        drop(Keeping::start(dir.path(), second).unwrap());
        let back = Remembered::load(dir.path()).unwrap();
        assert_eq!((back.stamp, back.files), (stamp, first));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_list_cut_short_or_damaged_is_not_offered() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("a.rs\t1\t0\t{}\n", "ab".repeat(32));
        // No stamp line: the write stopped before it.
        std::fs::write(dir.path().join(FILE), &line).unwrap();
        assert!(Remembered::load(dir.path()).is_none());
        // A line that does not read.
        std::fs::write(
            dir.path().join(FILE),
            format!("{line}b.rs\tx\t0\t00\nsnapshot\t1\t10\n"),
        )
        .unwrap();
        assert!(Remembered::load(dir.path()).is_none());
        std::fs::write(dir.path().join(FILE), format!("{line}snapshot\t1\t10\n")).unwrap();
        assert_eq!(Remembered::load(dir.path()).unwrap().files.len(), 1);
    }

    #[test]
    fn a_path_the_list_cannot_hold_means_no_list() {
        let dir = tempfile::tempdir().unwrap();
        let files = HashMap::from([("a\tb.rs".to_string(), file(1, 1, false))]);
        assert!(Keeping::start(dir.path(), files).is_none());
    }
}
