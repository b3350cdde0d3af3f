//! Where an index lives (per workspace, under the cache folder) and the writer lock.

use super::*;

pub(super) const LOCK_FILE: &str = "lock";

/// The folder of a workspace's index: `index.dir`, else `$XDG_CACHE_HOME/ragls/<id>`.
pub fn index_dir_for(root: &Path, config: &Config) -> Result<PathBuf> {
    if !config.index.dir.is_empty() {
        return Ok(PathBuf::from(&config.index.dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            Error::Config("neither XDG_CACHE_HOME nor HOME is set; pass --index-dir".into())
        })?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let hash = blake3::hash(root.to_string_lossy().as_bytes()).to_hex();
    Ok(cache
        .join("ragls")
        .join(format!("{}-{}", sanitize(&name), &hash[..12])))
}

pub(super) fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks that `path` is a workspace folder and returns its canonical form.
pub fn workspace_root(path: &Path) -> Result<PathBuf> {
    let root = path.canonicalize().map_err(|e| {
        Error::Usage(format!(
            "workspace folder {} cannot be opened: {e}",
            path.display()
        ))
    })?;
    if !root.is_dir() {
        return Err(Error::Usage(format!(
            "workspace {} is not a folder",
            path.display()
        )));
    }
    Ok(root)
}

pub(super) fn take_lock(index_dir: &Path) -> Result<File> {
    let path = index_dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                Error::Usage(format!(
                    "the index folder {} is not writable ({e}); `ragls search` and `ragls ask` still read it, but indexing needs write access: make it writable, or set index.dir to another folder",
                    index_dir.display()
                ))
            }
            _ => Error::io(format!("cannot open the index lock {}", path.display()), e),
        })?;
    // A lock released a moment ago can still look held for a moment: a child process
    // that another thread of this process is starting keeps a copy of every descriptor
    // (the lock's among them) until it execs. So a busy lock is asked again a few times
    // over ~100 ms before it counts as another process's.
    let mut tries = 0;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::IndexLocked(index_dir.to_path_buf()))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(
                    format!("cannot lock the index {}", path.display()),
                    e,
                ))
            }
        }
    }
}

pub(super) fn lock_is_held(index_dir: &Path) -> bool {
    let Ok(file) = File::options().write(true).open(index_dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(_) => false,
    }
}
