//! Workspace walker: decides which files under a workspace root are candidates
//! for indexing, and says why the others were skipped.
//!
//! It walks the tree with `ignore`'s parallel walker, honouring `.gitignore`
//! (even outside a git repository), `.ignore`, git's global and per-repo
//! excludes, and ragls's own `.raglsignore`, and then applies ragls's policy:
//! secrets, well-known lockfiles and minified bundles, over-large files, config
//! `exclude` globs and symlinks that leave the root are reported as skipped
//! with a [`SkipReason`]. [`walk`] only stats files; it never opens them, so
//! re-walking an unchanged tree is cheap. Content checks (binary, minified or
//! generated text) need the bytes and live in [`classify_content`], which the
//! indexer calls after it has read a new or changed file.
//!
//! This module is not for reading, hashing, chunking or watching files, and it
//! keeps no state between walks: change detection (comparing `size` and
//! `mtime_ns` with the index) belongs to the indexer.
//!
//! `.raglsignore` uses gitignore syntax and takes precedence over `.gitignore`
//! and `.ignore` at every depth, so a negation in it re-includes what they
//! exclude. As in git, a directory that is excluded is never entered, so to
//! re-include something inside a directory that `.gitignore` excludes, first
//! re-include the directory itself with `!dir/`:
//!
//! ```text
//! # .gitignore             # .raglsignore
//! vendor/                  !vendor/            <- re-enters vendor/ (all of it)
//!                          vendor/*            <- optional: drop it again...
//!                          !vendor/keep.rs     <- ...except this file
//! ```
//!
//! `!vendor/keep.rs` on its own does not work, because `vendor/` is never
//! entered. If the `.gitignore` pattern matches the files themselves (for
//! example `generated/**` rather than `generated/`), the negation must match
//! them too (`!generated/**`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

mod admit;
mod skip;
pub use admit::{admit_text, read_admitted};
use skip::*;
pub use skip::{classify_content, is_secret_path, read_file, FileRead};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::{DirEntry, ParallelVisitor, ParallelVisitorBuilder, WalkBuilder, WalkState};

/// Name of ragls's own ignore file (gitignore syntax, highest precedence).
pub const RAGLS_IGNORE_FILE: &str = ".raglsignore";

/// Options for [`walk`].
#[derive(Clone, Debug)]
pub struct WalkOptions {
    /// Files larger than this are skipped as [`SkipReason::TooLarge`]. Default 1 MiB.
    pub max_file_bytes: u64,
    /// Extra gitignore-style globs (from config), matched on the path relative
    /// to the root, on top of the ignore files. Matching paths are skipped as
    /// [`SkipReason::Excluded`]; a matching directory is reported once and not
    /// entered.
    pub exclude: Vec<String>,
    /// Index files that look like secrets (see [`is_secret_path`]). Default false.
    pub index_secrets: bool,
    /// Walker threads; 0 lets `ignore` choose.
    pub threads: usize,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_bytes: 1024 * 1024,
            exclude: Vec::new(),
            index_secrets: false,
            threads: 0,
        }
    }
}

/// Why a file is not indexed.
///
/// Gitignored (and `.ignore`d / `.raglsignore`d) paths are not a reason: they
/// are simply not seen, and not counted. Neither are the contents of
/// `.git`, `.hg`, `.svn`, `.jj`, `node_modules`, `__pycache__` and Python
/// virtualenvs, which are never entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// Larger than [`WalkOptions::max_file_bytes`].
    TooLarge,
    /// Has a NUL byte near the start (from [`classify_content`]).
    Binary,
    /// A well-known lockfile or minified bundle (by name), or minified /
    /// machine-generated text (from [`classify_content`]).
    Generated,
    /// Looks like a secret (see [`is_secret_path`]).
    Secret,
    /// A symlink whose target lies outside the workspace root.
    SymlinkEscape,
    /// Matched a config `exclude` glob.
    Excluded,
    /// Could not be stat'ed or listed (permission denied, dangling symlink),
    /// or has no read permission bits at all.
    Unreadable,
    /// Not a regular file: a FIFO, a socket or a device (never opened for a
    /// blocking read).
    Special,
}

impl SkipReason {
    /// Every reason, in declaration order.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::TooLarge,
        SkipReason::Binary,
        SkipReason::Generated,
        SkipReason::Secret,
        SkipReason::SymlinkEscape,
        SkipReason::Excluded,
        SkipReason::Unreadable,
        SkipReason::Special,
    ];

    /// Stable snake_case name, suitable for storage and display.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::TooLarge => "too_large",
            SkipReason::Binary => "binary",
            SkipReason::Generated => "generated",
            SkipReason::Secret => "secret",
            SkipReason::SymlinkEscape => "symlink_escape",
            SkipReason::Excluded => "excluded",
            SkipReason::Unreadable => "unreadable",
            SkipReason::Special => "special",
        }
    }

    /// Inverse of [`SkipReason::as_str`].
    pub fn from_name(s: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A file that should be indexed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkedFile {
    /// Relative to the root, '/' separated, no leading "./". Non-UTF-8 names
    /// are converted lossily; `abs_path` is always exact.
    pub rel_path: String,
    /// The root as given (made absolute, symlinks not resolved) joined with
    /// the relative path.
    pub abs_path: PathBuf,
    /// Size in bytes, from the walk's stat.
    pub size: u64,
    /// Modification time in ns since the epoch (0 if unknown).
    pub mtime_ns: i64,
}

/// Result of [`walk`].
#[derive(Clone, Debug, Default)]
pub struct WalkOutcome {
    /// Files to index, sorted by `rel_path`.
    pub files: Vec<WalkedFile>,
    /// (rel_path, reason) for paths seen but not indexed, sorted by rel_path.
    /// A directory that is pruned as a whole (excluded, escaping symlink,
    /// unreadable) appears once under its own path. An unreadable root
    /// appears as ".".
    pub skipped: Vec<(String, SkipReason)>,
}

/// Why [`walk`] could not start.
#[derive(Debug)]
pub enum WalkError {
    RootMissing(PathBuf),
    RootNotADirectory(PathBuf),
    BadExcludeGlob { glob: String, message: String },
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::RootMissing(p) => write!(
                f,
                "workspace root {} does not exist or cannot be accessed; \
                 pass an existing directory",
                p.display()
            ),
            WalkError::RootNotADirectory(p) => write!(
                f,
                "workspace root {} is not a directory; pass the directory \
                 that contains your code",
                p.display()
            ),
            WalkError::BadExcludeGlob { glob, message } => write!(
                f,
                "invalid exclude glob {glob:?} in config: {message}; fix or \
                 remove it (gitignore syntax, e.g. \"target/\" or \"*.min.js\")"
            ),
        }
    }
}

impl std::error::Error for WalkError {}

/// Walk the workspace with `ignore`'s parallel walker and return the files to
/// index plus the skipped paths with reasons. Only stats files (never reads
/// their contents), so an unchanged tree is cheap to re-walk.
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<WalkOutcome, WalkError> {
    walk_impl(root, opts, false, None)
}

/// [`walk`], telling `on_file` of each file to index as the walk finds it (on the
/// walker's thread, before the walk is done): work on a file can start while the rest
/// of the tree is walked. A file may be told of and yet not be in the outcome (the
/// same file reached twice through a symlink is kept once).
pub fn walk_visiting(
    root: &Path,
    opts: &WalkOptions,
    on_file: &(dyn Fn(&WalkedFile) + Sync),
) -> Result<WalkOutcome, WalkError> {
    walk_impl(root, opts, false, Some(on_file))
}

/// `hermetic` leaves out everything outside `root` (global gitignore, ignore
/// files in parent directories) so that tests do not depend on the machine.
fn walk_impl(
    root: &Path,
    opts: &WalkOptions,
    hermetic: bool,
    on_file: Option<&(dyn Fn(&WalkedFile) + Sync)>,
) -> Result<WalkOutcome, WalkError> {
    let missing = || WalkError::RootMissing(root.to_path_buf());
    let meta = fs::metadata(root).map_err(|_| missing())?;
    if !meta.is_dir() {
        return Err(WalkError::RootNotADirectory(root.to_path_buf()));
    }
    let walk_root = std::path::absolute(root).map_err(|_| missing())?;
    let canon_root = fs::canonicalize(root).map_err(|_| missing())?;
    let exclude = build_exclude(&walk_root, &opts.exclude)?;

    let ctx = Arc::new(Ctx {
        walk_root,
        canon_root,
        exclude,
        max_file_bytes: opts.max_file_bytes,
        index_secrets: opts.index_secrets,
        filtered: Mutex::new(Vec::new()),
    });

    let mut builder = WalkBuilder::new(&ctx.walk_root);
    builder
        .standard_filters(true)
        .hidden(false)
        .parents(!hermetic)
        .ignore(true)
        .git_ignore(true)
        .git_global(!hermetic)
        .git_exclude(true)
        .require_git(false)
        .follow_links(true)
        .threads(opts.threads)
        .add_custom_ignore_filename(RAGLS_IGNORE_FILE);
    let filter_ctx = Arc::clone(&ctx);
    builder.filter_entry(move |dent| filter_entry(&filter_ctx, dent));

    let sink = Mutex::new(Vec::new());
    builder.build_parallel().visit(&mut CollectorBuilder {
        ctx: &ctx,
        sink: &sink,
        on_file,
    });

    let mut files = Vec::new();
    let mut skipped = take(&ctx.filtered);
    let mut link_dirs = Vec::new();
    for part in take(&sink) {
        files.extend(part.files);
        skipped.extend(part.skipped);
        link_dirs.extend(part.link_dirs);
    }
    dedupe_links(&mut files, &link_dirs, &ctx.canon_root);

    let mut files: Vec<WalkedFile> = files.into_iter().map(|f| f.file).collect();
    files.sort_unstable_by(|a, b| a.rel_path.cmp(&b.rel_path));
    skipped.sort_unstable();
    skipped.dedup();
    Ok(WalkOutcome { files, skipped })
}

fn build_exclude(walk_root: &Path, globs: &[String]) -> Result<Gitignore, WalkError> {
    let mut gb = GitignoreBuilder::new(walk_root);
    for glob in globs {
        if let Err(err) = gb.add_line(None, glob) {
            return Err(WalkError::BadExcludeGlob {
                glob: glob.clone(),
                message: glob_error_message(&err),
            });
        }
    }
    gb.build().map_err(|err| WalkError::BadExcludeGlob {
        glob: globs.join(" "),
        message: glob_error_message(&err),
    })
}

/// The innermost message of a glob error, without the glob repeated.
fn glob_error_message(err: &ignore::Error) -> String {
    match err {
        ignore::Error::Glob { err, .. } => err.clone(),
        ignore::Error::WithLineNumber { err, .. }
        | ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. } => glob_error_message(err),
        other => other.to_string(),
    }
}

fn take<T>(m: &Mutex<Vec<T>>) -> Vec<T> {
    std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner))
}

/// Shared, read-only state of one walk (plus what `filter_entry` records).
struct Ctx {
    /// The root as given, made absolute; every walked path starts with it.
    walk_root: PathBuf,
    /// The root with all symlinks resolved, for the escape check.
    canon_root: PathBuf,
    exclude: Gitignore,
    max_file_bytes: u64,
    index_secrets: bool,
    /// Skips decided in `filter_entry` (pruned directories, symlinks); rare,
    /// so a mutex is fine.
    filtered: Mutex<Vec<(String, SkipReason)>>,
}

impl Ctx {
    /// Path relative to the walk root, '/' separated; None if not under it.
    fn rel<'p>(&self, path: &'p Path) -> Option<Cow<'p, str>> {
        let rel = path.strip_prefix(&self.walk_root).ok()?;
        let s = rel.to_string_lossy();
        if cfg!(windows) && s.contains('\\') {
            return Some(Cow::Owned(s.replace('\\', "/")));
        }
        Some(s)
    }

    fn record_filtered(&self, path: &Path, reason: SkipReason) {
        if let Some(rel) = self.rel(path) {
            let rel = if rel.is_empty() {
                ".".to_string()
            } else {
                rel.into_owned()
            };
            self.filtered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((rel, reason));
        }
    }

    fn is_outside(&self, path: &Path) -> bool {
        match fs::canonicalize(path) {
            Ok(target) => !target.starts_with(&self.canon_root),
            // Resolved a moment ago by the walker; if it vanished, treat it as
            // unsafe rather than follow it.
            Err(_) => true,
        }
    }
}

/// Runs before an entry is handed to the visitor (and before a directory is
/// read). Returning false drops the entry and, for a directory, its subtree.
fn filter_entry(ctx: &Ctx, dent: &DirEntry) -> bool {
    if dent.depth() == 0 {
        return true;
    }
    let is_dir = dent.file_type().is_some_and(|ft| ft.is_dir());
    if never_entered(dent.file_name(), is_dir, dent.path()) {
        return false;
    }
    let is_link = dent.path_is_symlink();
    if !is_dir && !is_link {
        // Plain files are classified by the visitor, without a lock.
        return true;
    }
    let Some(rel) = ctx.rel(dent.path()) else {
        return true;
    };
    if ctx.exclude.matched(rel.as_ref(), is_dir).is_ignore() {
        ctx.record_filtered(dent.path(), SkipReason::Excluded);
        return false;
    }
    if is_link && ctx.is_outside(dent.path()) {
        ctx.record_filtered(dent.path(), SkipReason::SymlinkEscape);
        return false;
    }
    true
}

/// Directories that are never entered and never counted: VCS metadata,
/// dependency and cache trees.
fn never_entered(name: &std::ffi::OsStr, is_dir: bool, path: &Path) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    match name {
        // A `.git` *file* (worktrees, submodules) is VCS metadata too.
        ".git" => true,
        ".hg" | ".svn" | ".jj" | "node_modules" | "__pycache__" => is_dir,
        ".venv" | "venv" => is_dir && path.join("pyvenv.cfg").is_file(),
        _ => false,
    }
}

/// What one walker thread collected.
#[derive(Default)]
struct Part {
    files: Vec<RawFile>,
    skipped: Vec<(String, SkipReason)>,
    /// Relative paths of symlinked directories (inside the root) that were entered.
    link_dirs: Vec<String>,
}

struct RawFile {
    file: WalkedFile,
    /// The file itself is a symlink (its parents may be too; see `dedupe_links`).
    via_link: bool,
    /// (device, inode) where the platform has them.
    id: Option<(u64, u64)>,
}

struct CollectorBuilder<'a> {
    ctx: &'a Ctx,
    sink: &'a Mutex<Vec<Part>>,
    on_file: Option<&'a (dyn Fn(&WalkedFile) + Sync)>,
}

impl<'s> ParallelVisitorBuilder<'s> for CollectorBuilder<'s> {
    fn build(&mut self) -> Box<dyn ParallelVisitor + 's> {
        Box::new(Collector {
            ctx: self.ctx,
            sink: self.sink,
            on_file: self.on_file,
            part: Part::default(),
        })
    }
}

struct Collector<'a> {
    ctx: &'a Ctx,
    sink: &'a Mutex<Vec<Part>>,
    on_file: Option<&'a (dyn Fn(&WalkedFile) + Sync)>,
    part: Part,
}

impl Drop for Collector<'_> {
    fn drop(&mut self) {
        let part = std::mem::take(&mut self.part);
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(part);
    }
}

impl ParallelVisitor for Collector<'_> {
    fn visit(&mut self, entry: Result<DirEntry, ignore::Error>) -> WalkState {
        match entry {
            Ok(dent) => self.visit_entry(dent),
            Err(err) => self.visit_error(&err, None),
        }
        WalkState::Continue
    }
}

impl Collector<'_> {
    fn skip(&mut self, rel: &str, reason: SkipReason) {
        let rel = if rel.is_empty() { "." } else { rel };
        self.part.skipped.push((rel.to_string(), reason));
    }

    fn visit_entry(&mut self, dent: DirEntry) {
        if dent.depth() == 0 {
            return;
        }
        let Some(ft) = dent.file_type() else { return };
        if ft.is_dir() {
            if dent.path_is_symlink() {
                if let Some(rel) = self.ctx.rel(dent.path()) {
                    self.part.link_dirs.push(rel.into_owned());
                }
            }
            return;
        }
        if !ft.is_file() {
            // Sockets, fifos, devices: never read, counted as skipped.
            if let Some(rel) = self.ctx.rel(dent.path()) {
                self.skip(&rel, SkipReason::Special);
            }
            return;
        }
        let Some(rel) = self.ctx.rel(dent.path()) else {
            return;
        };
        if self.ctx.exclude.matched(rel.as_ref(), false).is_ignore() {
            return self.skip(&rel, SkipReason::Excluded);
        }
        if !self.ctx.index_secrets && is_secret_path(&rel) {
            return self.skip(&rel, SkipReason::Secret);
        }
        if is_generated_name(&rel) {
            return self.skip(&rel, SkipReason::Generated);
        }
        let md = match dent.metadata() {
            Ok(md) => md,
            Err(_) => return self.skip(&rel, SkipReason::Unreadable),
        };
        if md.len() > self.ctx.max_file_bytes {
            return self.skip(&rel, SkipReason::TooLarge);
        }
        if no_read_permission(&md) {
            return self.skip(&rel, SkipReason::Unreadable);
        }
        let rel_path = rel.into_owned();
        let via_link = dent.path_is_symlink();
        let file = WalkedFile {
            rel_path,
            size: md.len(),
            mtime_ns: mtime_ns(&md),
            abs_path: dent.into_path(),
        };
        if let Some(on_file) = self.on_file {
            on_file(&file);
        }
        self.part.files.push(RawFile {
            id: file_id(&md),
            via_link,
            file,
        });
    }

    /// Walk errors: unreadable directories and entries, dangling symlinks,
    /// symlink loops. Errors in ignore files (bad globs) are not about the
    /// files being walked and are dropped.
    fn visit_error(&mut self, err: &ignore::Error, path: Option<&Path>) {
        match err {
            ignore::Error::Partial(errs) => {
                for e in errs {
                    self.visit_error(e, path);
                }
            }
            ignore::Error::WithPath { path, err } => self.visit_error(err, Some(path)),
            ignore::Error::WithDepth { err, .. } => self.visit_error(err, path),
            // A symlink to an ancestor directory. Inside the root it only
            // repeats what is walked anyway; above the root it escapes.
            ignore::Error::Loop { child, .. } => {
                let escapes = self.ctx.is_outside(child);
                if let Some(rel) = self.ctx.rel(child).filter(|_| escapes) {
                    self.skip(&rel, SkipReason::SymlinkEscape);
                }
            }
            ignore::Error::Io(_) => {
                if let Some(rel) = path.and_then(|p| self.ctx.rel(p)) {
                    self.skip(&rel, SkipReason::Unreadable);
                }
            }
            _ => {}
        }
    }
}

#[cfg(unix)]
fn file_id(md: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((md.dev(), md.ino()))
}

#[cfg(not(unix))]
fn file_id(_md: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn no_read_permission(md: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    md.permissions().mode() & 0o444 == 0
}

#[cfg(not(unix))]
fn no_read_permission(_md: &fs::Metadata) -> bool {
    false
}

fn mtime_ns(md: &fs::Metadata) -> i64 {
    let Ok(t) = md.modified() else { return 0 };
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Drop files reached through a symlink (the file itself or a symlinked
/// parent directory) when the same file is also walked under another path.
/// A file reached only through links is kept once, under its smallest path.
/// Costs nothing when the tree has no symlinks.
fn dedupe_links(files: &mut Vec<RawFile>, link_dirs: &[String], canon_root: &Path) {
    if link_dirs.is_empty() && !files.iter().any(|f| f.via_link) {
        return;
    }
    for f in files.iter_mut() {
        if !f.via_link {
            f.via_link = link_dirs.iter().any(|d| {
                f.file.rel_path.len() > d.len()
                    && f.file.rel_path.starts_with(d.as_str())
                    && f.file.rel_path.as_bytes()[d.len()] == b'/'
            });
        }
    }
    // Identity: (device, inode) where available, else the canonical path.
    let key = |f: &RawFile| -> Option<Result<(u64, u64), PathBuf>> {
        if let Some(id) = f.id {
            return Some(Ok(id));
        }
        let path = if f.via_link {
            fs::canonicalize(&f.file.abs_path).ok()?
        } else {
            canon_root.join(&f.file.rel_path)
        };
        Some(Err(path))
    };
    let mut seen = HashSet::new();
    for f in files.iter().filter(|f| !f.via_link) {
        if let Some(k) = key(f) {
            seen.insert(k);
        }
    }
    files.sort_unstable_by(|a, b| a.file.rel_path.cmp(&b.file.rel_path));
    files.retain(|f| {
        if !f.via_link {
            return true;
        }
        match key(f) {
            Some(k) => seen.insert(k),
            None => true,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    fn write(root: &Path, rel: &str, contents: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// A temp dir holding `files` (rel path, contents).
    fn tree(files: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (rel, contents) in files {
            write(dir.path(), rel, contents);
        }
        dir
    }

    /// Walk without the machine's global gitignore or parent ignore files.
    fn walk_with(root: &Path, opts: &WalkOptions) -> WalkOutcome {
        walk_impl(root, opts, true, None).unwrap()
    }

    fn walk_default(root: &Path) -> WalkOutcome {
        walk_with(root, &WalkOptions::default())
    }

    fn paths(out: &WalkOutcome) -> Vec<&str> {
        out.files.iter().map(|f| f.rel_path.as_str()).collect()
    }

    fn skipped(out: &WalkOutcome) -> Vec<(&str, &str)> {
        out.skipped
            .iter()
            .map(|(p, r)| (p.as_str(), r.as_str()))
            .collect()
    }

    #[test]
    fn a_visiting_walk_tells_of_each_file_it_keeps_and_of_nothing_it_skips() {
        let dir = tree(&[
            (".gitignore", "*.log\n"),
            ("src/main.rs", "fn main() {}"),
            ("src/lib.rs", "pub fn f() {}"),
            ("run.log", "x"),
            (".env", "KEY=secret"),
        ]);
        let told = Mutex::new(Vec::new());
        let out = walk_impl(
            dir.path(),
            &WalkOptions::default(),
            true,
            Some(&|f: &WalkedFile| told.lock().unwrap().push(f.rel_path.clone())),
        )
        .unwrap();
        let mut told = told.into_inner().unwrap();
        told.sort();
        assert_eq!(told, paths(&out));
        assert_eq!(told, [".gitignore", "src/lib.rs", "src/main.rs"]);
    }

    #[test]
    fn gitignore_is_honoured_without_a_git_dir_and_ignored_files_are_not_counted() {
        let dir = tree(&[
            (".gitignore", "target/\n*.log\n"),
            ("src/main.rs", "fn main() {}"),
            ("target/debug/out.rs", "x"),
            ("run.log", "x"),
        ]);
        let out = walk_default(dir.path());
        assert_eq!(paths(&out), [".gitignore", "src/main.rs"]);
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn nested_gitignore_applies_below_its_directory_only() {
        let dir = tree(&[
            ("a/.gitignore", "*.txt\n"),
            ("a/x.txt", "x"),
            ("a/b/y.txt", "y"),
            ("z.txt", "z"),
        ]);
        assert_eq!(paths(&walk_default(dir.path())), ["a/.gitignore", "z.txt"]);
    }

    #[test]
    fn dot_ignore_file_is_honoured() {
        let dir = tree(&[(".ignore", "docs/\n"), ("docs/a.md", "a"), ("b.md", "b")]);
        assert_eq!(paths(&walk_default(dir.path())), [".ignore", "b.md"]);
    }

    #[test]
    fn raglsignore_excludes_files_and_directories() {
        let dir = tree(&[
            (".raglsignore", "fixtures/\n*.snap\n"),
            ("fixtures/big.rs", "x"),
            ("src/a.rs", "a"),
            ("src/a.snap", "s"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".raglsignore", "src/a.rs"]
        );
    }

    #[test]
    fn raglsignore_negation_reincludes_a_file_that_gitignore_excludes() {
        let dir = tree(&[
            (".gitignore", "*.gen.rs\n"),
            (".raglsignore", "!keep.gen.rs\n"),
            ("keep.gen.rs", "k"),
            ("drop.gen.rs", "d"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".gitignore", ".raglsignore", "keep.gen.rs"]
        );
    }

    #[test]
    fn raglsignore_dir_negation_reenters_a_directory_that_gitignore_excludes() {
        let dir = tree(&[
            (".gitignore", "vendor/\ngenerated\n"),
            (".raglsignore", "!vendor/\n!generated/\n"),
            ("vendor/keep.rs", "k"),
            ("vendor/sub/other.rs", "o"),
            ("generated/api.rs", "g"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [
                ".gitignore",
                ".raglsignore",
                "generated/api.rs",
                "vendor/keep.rs",
                "vendor/sub/other.rs"
            ]
        );
    }

    #[test]
    fn raglsignore_file_negation_alone_cannot_reach_into_an_excluded_directory() {
        // As in git: vendor/ is never entered, so the negation never sees keep.rs.
        let dir = tree(&[
            (".gitignore", "vendor/\n"),
            (".raglsignore", "!vendor/keep.rs\n"),
            ("vendor/keep.rs", "k"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".gitignore", ".raglsignore"]
        );
    }

    #[test]
    fn raglsignore_can_reinclude_one_file_of_an_excluded_directory() {
        // The documented idiom: re-enter the directory, drop its contents
        // again, re-include the one file.
        let dir = tree(&[
            (".gitignore", "vendor/\n"),
            (".raglsignore", "!vendor/\nvendor/*\n!vendor/keep.rs\n"),
            ("vendor/keep.rs", "k"),
            ("vendor/drop.rs", "d"),
            ("vendor/sub/drop.rs", "d"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".gitignore", ".raglsignore", "vendor/keep.rs"]
        );
    }

    #[test]
    fn gitignore_pattern_matching_files_needs_a_matching_negation() {
        // `generated/**` matches the files themselves, so `!generated/` only
        // re-enters the directory; `!generated/**` re-includes the files.
        let only_dir = tree(&[
            (".gitignore", "generated/**\n"),
            (".raglsignore", "!generated/\n"),
            ("generated/api.rs", "g"),
        ]);
        assert_eq!(
            paths(&walk_default(only_dir.path())),
            [".gitignore", ".raglsignore"]
        );
        let files_too = tree(&[
            (".gitignore", "generated/**\n"),
            (".raglsignore", "!generated/**\n"),
            ("generated/api.rs", "g"),
            ("generated/sub/x.rs", "x"),
        ]);
        assert_eq!(
            paths(&walk_default(files_too.path())),
            [
                ".gitignore",
                ".raglsignore",
                "generated/api.rs",
                "generated/sub/x.rs"
            ]
        );
    }

    #[test]
    fn nested_gitignore_does_not_override_root_raglsignore() {
        let dir = tree(&[
            (".raglsignore", "!*.log\n"),
            ("sub/.gitignore", "*.log\n"),
            ("sub/keep.log", "k"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".raglsignore", "sub/.gitignore", "sub/keep.log"]
        );
    }

    const SECRETS: [&str; 15] = [
        ".env",
        ".envrc",
        "services/api/.envrc",
        ".docker/config.json",
        ".env.local",
        ".env.production",
        "deploy/id_rsa",
        "deploy/id_ed25519",
        "certs/server.pem",
        "certs/server.key",
        "credentials.json",
        ".aws/credentials",
        ".npmrc",
        "config/secrets.yaml",
        "infra/terraform.tfstate",
    ];
    const NOT_SECRETS: [&str; 6] = [
        "docker/config.json",
        ".env.example",
        ".env.sample",
        "deploy/id_rsa.pub",
        "src/credentials.rs",
        "config/settings.yaml",
    ];

    #[test]
    fn secrets_are_skipped_with_reason_and_their_templates_kept() {
        let dir = TempDir::new().unwrap();
        for p in SECRETS.iter().chain(NOT_SECRETS.iter()) {
            write(dir.path(), p, "x");
        }
        let out = walk_default(dir.path());
        let mut want_files = NOT_SECRETS.to_vec();
        want_files.sort();
        assert_eq!(paths(&out), want_files);
        let mut want_skipped: Vec<(&str, &str)> = SECRETS.iter().map(|p| (*p, "secret")).collect();
        want_skipped.sort();
        assert_eq!(skipped(&out), want_skipped);
    }

    #[cfg(unix)]
    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    }

    /// Runs `f` on a thread; fails if it has not finished within 10 s (a hang).
    fn within_bound<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("blocked: no answer within 10 s")
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_counted_as_special_and_never_blocks_a_read() {
        let dir = tree(&[("a.rs", "fn a() {}")]);
        mkfifo(&dir.path().join("pipe.rs"));
        let out = walk_default(dir.path());
        assert_eq!(paths(&out), ["a.rs"]);
        assert_eq!(skipped(&out), [("pipe.rs", "special")]);
        // Replaced by a FIFO after the walk: the read sees it on the opened descriptor.
        let fifo = dir.path().join("pipe.rs");
        let got = within_bound(move || read_file(&fifo, 1 << 20).unwrap());
        assert_eq!(got, FileRead::Skipped(SkipReason::Special));
    }

    #[test]
    fn a_file_that_grew_past_the_limit_is_not_read_in_full() {
        let dir = tree(&[("small.rs", "fn a() {}"), ("big.rs", &"x".repeat(5000))]);
        assert_eq!(
            read_file(&dir.path().join("small.rs"), 9).unwrap(),
            FileRead::Bytes(b"fn a() {}".to_vec())
        );
        assert_eq!(
            read_file(&dir.path().join("big.rs"), 4096).unwrap(),
            FileRead::Skipped(SkipReason::TooLarge)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_longer_than_its_size_said_is_read_only_up_to_the_limit() {
        // A /proc file is a regular file whose size says 0 but whose content is longer:
        // like a file that grew after it was stat'ed, only the limit + 1 bytes are read.
        let status = Path::new("/proc/self/status");
        assert_eq!(fs::metadata(status).unwrap().len(), 0);
        assert_eq!(
            read_file(status, 100).unwrap(),
            FileRead::Skipped(SkipReason::TooLarge)
        );
        assert!(matches!(read_file(status, 1 << 20).unwrap(), FileRead::Bytes(b) if b.len() > 100));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_device_behind_a_symlink_is_never_read() {
        // /dev/zero never ends; through a symlink, as the walk would hand it over.
        let dir = TempDir::new().unwrap();
        let link = dir.path().join("zero.rs");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let got = within_bound(move || read_file(&link, 1 << 20).unwrap());
        assert_eq!(got, FileRead::Skipped(SkipReason::Special));
    }

    #[test]
    fn index_secrets_keeps_secret_files() {
        let dir = TempDir::new().unwrap();
        for p in SECRETS {
            write(dir.path(), p, "x");
        }
        let opts = WalkOptions {
            index_secrets: true,
            ..WalkOptions::default()
        };
        let out = walk_with(dir.path(), &opts);
        assert_eq!(out.files.len(), SECRETS.len());
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn is_secret_path_rules() {
        for p in [
            ".env",
            ".ENV",
            "a/.env.staging",
            ".env.local.backup",
            "keystore.jks",
            "release.keystore",
            "cert.p12",
            "cert.pfx",
            "id_dsa",
            "id_ecdsa_sk",
            "home/.ssh/id_ed25519",
            "Credentials.yml",
            ".pypirc",
            ".netrc",
            "_netrc",
            ".git-credentials",
            "web/.htpasswd",
            "secrets.json",
            "secrets.toml",
            "secrets.yml",
            "prod.tfstate.backup",
            "service-account-prod.json",
            "win\\path\\.env",
            ".envrc",
            "app/.envrc",
            ".docker/config.json",
            "home/.docker/config.json",
        ] {
            assert!(is_secret_path(p), "{p} should be a secret");
        }
        for p in [
            "",
            ".env.example",
            ".env.template",
            ".env.local.example",
            "env.rs",
            "docker/config.json",
            "id_rsa.pub",
            "src/credentials.rs",
            "docs/credentials.md",
            "id_rsa_parser.go",
            "secrets.rs",
            "secrets.md",
            "service-account.yaml",
            "keys/README",
            "monkey.rs",
        ] {
            assert!(!is_secret_path(p), "{p} should not be a secret");
        }
    }

    #[test]
    fn files_over_the_size_limit_are_too_large() {
        let dir = tree(&[("small.rs", "12345"), ("big.rs", "123456")]);
        let opts = WalkOptions {
            max_file_bytes: 5,
            ..WalkOptions::default()
        };
        let out = walk_with(dir.path(), &opts);
        assert_eq!(paths(&out), ["small.rs"]);
        assert_eq!(skipped(&out), [("big.rs", "too_large")]);
    }

    #[test]
    fn lockfiles_and_minified_bundles_are_generated_by_name() {
        let names = [
            "Cargo.lock",
            "web/package-lock.json",
            "yarn.lock",
            "pnpm-lock.yaml",
            "poetry.lock",
            "go.sum",
            "static/app.min.js",
            "static/app.min.css",
            "static/app.js.map",
        ];
        let dir = TempDir::new().unwrap();
        for n in names {
            write(dir.path(), n, "x");
        }
        write(dir.path(), "static/app.js", "x");
        let out = walk_default(dir.path());
        assert_eq!(paths(&out), ["static/app.js"]);
        let mut want: Vec<(&str, &str)> = names.iter().map(|n| (*n, "generated")).collect();
        want.sort();
        assert_eq!(skipped(&out), want);
    }

    #[test]
    fn exclude_globs_skip_files_and_prune_directories_once() {
        let dir = tree(&[
            ("data/a.json", "a"),
            ("data/deep/b.json", "b"),
            ("src/x.snap", "s"),
            ("src/lib.rs", "l"),
            ("src/keep.snap", "k"),
        ]);
        let opts = WalkOptions {
            exclude: vec!["/data/".into(), "*.snap".into(), "!keep.snap".into()],
            ..WalkOptions::default()
        };
        let out = walk_with(dir.path(), &opts);
        assert_eq!(paths(&out), ["src/keep.snap", "src/lib.rs"]);
        assert_eq!(
            skipped(&out),
            [("data", "excluded"), ("src/x.snap", "excluded")]
        );
    }

    #[test]
    fn exclude_beats_the_other_reasons() {
        let dir = tree(&[(".env", "x"), ("Cargo.lock", "x")]);
        let opts = WalkOptions {
            exclude: vec![".env".into(), "*.lock".into()],
            ..WalkOptions::default()
        };
        let out = walk_with(dir.path(), &opts);
        assert_eq!(
            skipped(&out),
            [(".env", "excluded"), ("Cargo.lock", "excluded")]
        );
    }

    #[test]
    fn bad_exclude_glob_is_an_error_naming_the_glob() {
        let dir = tree(&[("a.rs", "a")]);
        let opts = WalkOptions {
            exclude: vec!["ok/".into(), "src/{a,b".into()],
            ..WalkOptions::default()
        };
        let err = walk(dir.path(), &opts).unwrap_err();
        match &err {
            WalkError::BadExcludeGlob { glob, message } => {
                assert_eq!(glob, "src/{a,b");
                assert!(message.contains("unclosed alternate group"), "{message}");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains("\"src/{a,b\""), "{msg}");
        assert!(msg.contains("exclude"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn root_missing_and_root_not_a_directory_are_errors() {
        let dir = tree(&[("file.rs", "x")]);
        let missing = dir.path().join("nope");
        let err = walk(&missing, &WalkOptions::default()).unwrap_err();
        assert!(matches!(&err, WalkError::RootMissing(p) if p == &missing));
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");

        let file = dir.path().join("file.rs");
        let err = walk(&file, &WalkOptions::default()).unwrap_err();
        assert!(matches!(&err, WalkError::RootNotADirectory(p) if p == &file));
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn vcs_and_dependency_directories_are_never_walked_nor_counted() {
        let dir = tree(&[
            (".git/config", "x"),
            (".git/HEAD", "x"),
            (".hg/store", "x"),
            (".svn/entries", "x"),
            (".jj/repo", "x"),
            ("web/node_modules/left-pad/index.js", "x"),
            ("pkg/__pycache__/m.cpython-312.pyc", "x"),
            (".venv/pyvenv.cfg", "home = /usr"),
            (".venv/lib/site.py", "x"),
            ("venv/pyvenv.cfg", "home = /usr"),
            ("venv/lib/site.py", "x"),
            ("tools/venv/notes.md", "not a virtualenv: no pyvenv.cfg"),
            ("sub/.git", "gitdir: ../.git/modules/sub"),
            ("sub/lib.rs", "x"),
        ]);
        let out = walk_default(dir.path());
        assert_eq!(paths(&out), ["sub/lib.rs", "tools/venv/notes.md"]);
        assert!(out.skipped.is_empty());
    }

    #[test]
    fn hidden_non_secret_files_are_walked() {
        let dir = tree(&[
            (".github/workflows/ci.yml", "on: push"),
            (".editorconfig", "root = true"),
        ]);
        assert_eq!(
            paths(&walk_default(dir.path())),
            [".editorconfig", ".github/workflows/ci.yml"]
        );
    }

    #[test]
    fn rel_paths_use_slashes_are_sorted_and_carry_stat_data() {
        let dir = tree(&[
            ("b/z.rs", "z"),
            ("a/b/c.rs", "abc"),
            ("a.rs", "a"),
            ("B.rs", "b"),
            ("a/a.rs", "aa"),
        ]);
        let out = walk_default(dir.path());
        assert_eq!(
            paths(&out),
            ["B.rs", "a.rs", "a/a.rs", "a/b/c.rs", "b/z.rs"]
        );
        let abc = &out.files[3];
        assert_eq!(abc.size, 3);
        assert!(abc.mtime_ns > 0);
        assert!(abc.abs_path.is_absolute());
        assert_eq!(fs::read_to_string(&abc.abs_path).unwrap(), "abc");
        assert!(abc.abs_path.ends_with("a/b/c.rs"));
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let dir = TempDir::new().unwrap();
        for i in 0..40 {
            write(dir.path(), &format!("d{}/sub{}/f{i}.rs", i % 7, i % 3), "x");
            write(dir.path(), &format!("d{}/.env.{i}", i % 5), "x");
        }
        let one = walk_with(
            dir.path(),
            &WalkOptions {
                threads: 1,
                ..WalkOptions::default()
            },
        );
        let many = walk_with(
            dir.path(),
            &WalkOptions {
                threads: 4,
                ..WalkOptions::default()
            },
        );
        assert_eq!(one.files, many.files);
        assert_eq!(one.skipped, many.skipped);
        assert_eq!(one.files.len(), 40);
        assert_eq!(one.skipped.len(), 40);
    }

    #[test]
    fn relative_root_gives_absolute_abs_paths_and_clean_rel_paths() {
        let dir = tree(&[("src/a.rs", "a")]);
        let cwd = std::env::current_dir().unwrap();
        // A relative spelling of the root, without changing the process cwd.
        let rel_root: PathBuf = match dir.path().strip_prefix(&cwd) {
            Ok(r) => r.to_path_buf(),
            Err(_) => {
                let mut up = PathBuf::new();
                for _ in cwd.components().skip(1) {
                    up.push("..");
                }
                up.join(dir.path().strip_prefix("/").unwrap_or(dir.path()))
            }
        };
        let out = walk_default(&rel_root);
        assert_eq!(paths(&out), ["src/a.rs"]);
        assert!(out.files[0].abs_path.is_absolute());
        assert_eq!(fs::read_to_string(&out.files[0].abs_path).unwrap(), "a");
    }

    #[test]
    fn public_walk_finds_plain_source_files() {
        let dir = tree(&[("src/main.rs", "fn main() {}")]);
        let out = walk(dir.path(), &WalkOptions::default()).unwrap();
        assert!(paths(&out).contains(&"src/main.rs"));
    }

    #[test]
    fn skip_reason_names_round_trip() {
        let names: Vec<&str> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "too_large",
                "binary",
                "generated",
                "secret",
                "symlink_escape",
                "excluded",
                "unreadable",
                "special"
            ]
        );
        for r in SkipReason::ALL {
            assert_eq!(SkipReason::from_name(r.as_str()), Some(r));
        }
        assert_eq!(SkipReason::from_name("ignored"), None);
        assert_eq!(SkipReason::from_name("Binary"), None);
    }

    #[test]
    fn classify_nul_byte_is_binary() {
        assert_eq!(
            classify_content(b"\x7fELF\x02\x01\x01\x00\x00"),
            Some(SkipReason::Binary)
        );
        let mut late = b"let x = 1;\n".repeat(900);
        late.push(0);
        assert_eq!(
            classify_content(&late),
            None,
            "NUL after the first 8 KiB is not looked at"
        );
    }

    #[test]
    fn classify_minified_one_line_js_is_generated() {
        let js = "var a=1;function f(b){return b+a}".repeat(100);
        assert_eq!(classify_content(js.as_bytes()), Some(SkipReason::Generated));
    }

    #[test]
    fn classify_one_long_line_in_normal_code_is_kept() {
        let mut src = String::new();
        for i in 0..200 {
            src.push_str(&format!("    let x{i} = compute({i});\n"));
        }
        src.push_str(&format!("const TABLE: &[u8] = &[{}];\n", "0, ".repeat(600)));
        assert_eq!(classify_content(src.as_bytes()), None);
    }

    #[test]
    fn classify_normal_code_and_empty_are_kept() {
        assert_eq!(classify_content(b""), None);
        assert_eq!(
            classify_content(b"fn main() {\n    println!(\"hi\");\n}\n"),
            None
        );
        assert_eq!(
            classify_content("// héllo wörld\nlet s = \"ü\";\n".as_bytes()),
            None
        );
    }

    #[test]
    fn classify_generated_headers() {
        for src in [
            "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage pb\n",
            "# -*- coding: utf-8 -*-\n# Generated by the protocol buffer compiler.  DO NOT EDIT!\n",
            "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n",
            "# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.\n# yarn lockfile v1\n",
            "// automatically generated by the FlatBuffers compiler, do not modify\n",
            "/**\n * Autogenerated by Thrift Compiler (0.9.3)\n *\n * DO NOT EDIT UNLESS YOU ARE SURE\n *  @generated\n */\n",
            "// @generated SignedSource<<0123456789abcdef>>\nexport const x = 1;\n",
            "# This file has been automatically generated by tool. DO NOT EDIT.\n",
            "\u{feff}// <auto-generated>\n//   This code was generated by a tool.\n// </auto-generated>\n",
        ] {
            assert_eq!(classify_content(src.as_bytes()), Some(SkipReason::Generated), "{src}");
        }
    }

    #[test]
    fn classify_hand_written_files_that_mention_markers_are_kept() {
        for src in [
            "//! Skips files marked @generated or DO NOT EDIT.\nfn main() {}\n",
            "# Detects \"DO NOT EDIT\" headers in generated code.\nimport re\n",
            "// TODO: do not edit this by hand once codegen exists\nfn f() {}\n",
            "// Generated tables are in tables.rs.\nmod tables;\n",
            "# This file configures generated docs; do not edit it casually.\n[docs]\n",
            "# Generated files: do not edit them by hand\n\nRun `make gen`.\n",
            "fn main() {}\n\n\n\n\n// Code generated by hand. DO NOT EDIT.\n",
            "let s = \"// Code generated by x. DO NOT EDIT.\";\n",
        ] {
            assert_eq!(classify_content(src.as_bytes()), None, "{src}");
        }
    }

    #[cfg(unix)]
    mod unix {
        use super::*;
        use std::os::unix::fs::{symlink, PermissionsExt};

        #[test]
        fn symlinks_escaping_the_root_are_skipped_and_not_followed() {
            let outside = tree(&[("secret.txt", "s"), ("lib/a.rs", "a"), ("lib/b.rs", "b")]);
            let dir = tree(&[("src/main.rs", "m")]);
            symlink(
                outside.path().join("secret.txt"),
                dir.path().join("notes.txt"),
            )
            .unwrap();
            symlink(outside.path().join("lib"), dir.path().join("src/ext")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), ["src/main.rs"]);
            assert_eq!(
                skipped(&out),
                [
                    ("notes.txt", "symlink_escape"),
                    ("src/ext", "symlink_escape")
                ]
            );
        }

        #[test]
        fn relative_symlink_climbing_out_of_the_root_escapes() {
            let top = tree(&[("root/a.rs", "a"), ("other/b.rs", "b")]);
            let root = top.path().join("root");
            symlink("../other", root.join("sib")).unwrap();
            symlink("..", root.join("up")).unwrap();
            let out = walk_default(&root);
            assert_eq!(paths(&out), ["a.rs"]);
            assert_eq!(
                skipped(&out),
                [("sib", "symlink_escape"), ("up", "symlink_escape")]
            );
        }

        #[test]
        fn symlinks_inside_the_root_are_followed_without_duplicates() {
            let dir = tree(&[("src/a.rs", "a"), ("src/b.rs", "b"), ("gen/only.rs", "o")]);
            // A file link and a directory link to walked files: not indexed twice.
            symlink("src/a.rs", dir.path().join("a_link.rs")).unwrap();
            symlink("src", dir.path().join("src_link")).unwrap();
            // A link to a file that is only reachable through the link: kept.
            fs::write(dir.path().join(".gitignore"), "/gen/\n").unwrap();
            symlink("gen", dir.path().join("gen_link")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(
                paths(&out),
                [".gitignore", "gen_link/only.rs", "src/a.rs", "src/b.rs"]
            );
            assert!(out.skipped.is_empty());
        }

        #[test]
        fn root_given_through_a_symlink_is_not_an_escape() {
            let top = tree(&[("real/src/a.rs", "a")]);
            symlink("real", top.path().join("alias")).unwrap();
            symlink(
                top.path().join("alias/src/a.rs"),
                top.path().join("real/abs_link.rs"),
            )
            .unwrap();
            let out = walk_default(&top.path().join("alias"));
            assert_eq!(paths(&out), ["src/a.rs"]);
            assert!(out.files[0].abs_path.starts_with(top.path().join("alias")));
            assert!(out.skipped.is_empty());
        }

        #[test]
        fn symlink_loops_terminate() {
            let dir = tree(&[("a/b/file.rs", "f")]);
            symlink(".", dir.path().join("self")).unwrap();
            symlink("..", dir.path().join("a/b/parent")).unwrap();
            symlink("../..", dir.path().join("a/b/root")).unwrap();
            symlink("loop2", dir.path().join("loop1")).unwrap();
            symlink("loop1", dir.path().join("loop2")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), ["a/b/file.rs"]);
            // The self-referential file links cannot be resolved.
            assert_eq!(
                skipped(&out),
                [("loop1", "unreadable"), ("loop2", "unreadable")]
            );
        }

        #[test]
        fn dangling_symlink_is_unreadable() {
            let dir = tree(&[("a.rs", "a")]);
            symlink("missing.rs", dir.path().join("dangling.rs")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), ["a.rs"]);
            assert_eq!(skipped(&out), [("dangling.rs", "unreadable")]);
        }

        #[test]
        fn gitignored_symlink_is_neither_followed_nor_counted() {
            let outside = tree(&[("x.rs", "x")]);
            let dir = tree(&[(".gitignore", "result\n")]);
            symlink(outside.path(), dir.path().join("result")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), [".gitignore"]);
            assert!(out.skipped.is_empty());
        }

        #[test]
        fn files_without_read_permission_are_unreadable() {
            let dir = tree(&[("locked.rs", "x"), ("open.rs", "y")]);
            fs::set_permissions(
                dir.path().join("locked.rs"),
                fs::Permissions::from_mode(0o000),
            )
            .unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), ["open.rs"]);
            assert_eq!(skipped(&out), [("locked.rs", "unreadable")]);
        }

        #[test]
        fn directory_that_cannot_be_listed_is_unreadable() {
            let dir = tree(&[("locked/inner.rs", "x"), ("open.rs", "y")]);
            let locked = dir.path().join("locked");
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
            let listable = fs::read_dir(&locked).is_ok(); // true when running as root
            let out = walk_default(dir.path());
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
            if listable {
                assert_eq!(paths(&out), ["locked/inner.rs", "open.rs"]);
                assert!(out.skipped.is_empty());
            } else {
                assert_eq!(paths(&out), ["open.rs"]);
                assert_eq!(skipped(&out), [("locked", "unreadable")]);
            }
        }

        #[test]
        fn sockets_are_not_indexed_and_are_counted_as_special() {
            let dir = tree(&[("a.rs", "a")]);
            let _listener =
                std::os::unix::net::UnixListener::bind(dir.path().join("daemon.sock")).unwrap();
            let out = walk_default(dir.path());
            assert_eq!(paths(&out), ["a.rs"]);
            assert_eq!(skipped(&out), [("daemon.sock", "special")]);
        }
    }
}
