//! `read_code`: lines of a file, only inside the workspace. A path is refused when it has
//! a `..` component, is absolute and outside the workspace, leads out of it through a
//! symlink, names a secrets file (the indexer's own rules, `workspace::is_secret_path`,
//! applied to the name asked for and to the file it resolves to), lies inside `.git`, or
//! is binary. What comes back is capped in bytes, and says where to continue.
//!
//! Not for: anything the index knows; this reads the disk, as the agent would.

use crate::workspace;
use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};

/// What `read_code` returns: numbered lines and where they are.
#[derive(Debug, PartialEq)]
pub struct Excerpt {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    /// Lines of the file in all, when it was read to its end.
    pub total_lines: Option<u32>,
    pub text: String,
    /// The cap cut the excerpt short: the next line to ask for.
    pub next_line: Option<u32>,
}

impl Excerpt {
    /// The text for the model: a header line, then `N\tline` lines.
    pub fn render(&self) -> String {
        let of = self
            .total_lines
            .map(|n| format!(" of {n}"))
            .unwrap_or_default();
        let mut out = format!(
            "{}:{}-{}{of}\n{}",
            self.path, self.start_line, self.end_line, self.text
        );
        if let Some(next) = self.next_line {
            out.push_str(&format!(
                "… cut at the size cap; call read_code with start_line={next} to read on\n"
            ));
        }
        out
    }
}

/// Resolves `requested` inside `root` (canonical) to the file and its workspace-relative
/// path, or says why not.
pub fn resolve(
    root: &Path,
    requested: &str,
    index_secrets: bool,
) -> Result<(PathBuf, String), String> {
    if requested.contains('\0') {
        return Err("path contains a NUL character".into());
    }
    let asked = Path::new(requested);
    if asked
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "'{requested}' contains '..'; give a path inside the workspace, relative to its root (e.g. \"src/main.rs\")"
        ));
    }
    let joined = if asked.is_absolute() {
        asked.to_path_buf()
    } else {
        root.join(asked)
    };
    let outside = || {
        format!(
            "'{requested}' is outside the workspace {}; read_code only reads files inside it",
            root.display()
        )
    };
    // An absolute path must name the workspace (as given or canonical) before anything
    // is looked up.
    if asked.is_absolute() && !joined.starts_with(root) {
        let canonical_parent_inside = joined
            .canonicalize()
            .map(|c| c.starts_with(root))
            .unwrap_or(false);
        if !canonical_parent_inside {
            return Err(outside());
        }
    }
    let secret = |rel: &str| !index_secrets && workspace::is_secret_path(rel);
    if secret(requested) {
        return Err(format!(
            "'{requested}' is a secrets file (keys, credentials, .env); read_code never reads those"
        ));
    }
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "'{requested}' does not exist in the workspace; search_code finds files by what they contain"
        ),
        _ => format!("'{requested}' cannot be opened: {e}"),
    })?;
    let Ok(rel) = real.strip_prefix(root) else {
        return Err(if asked.is_absolute() {
            outside()
        } else {
            format!(
                "'{requested}' is a symlink that leads outside the workspace; read_code only reads files inside it"
            )
        });
    };
    let rel: String = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/");
    if secret(&rel) {
        return Err(format!(
            "'{requested}' leads to a secrets file ({rel}); read_code never reads those"
        ));
    }
    if rel == ".git" || rel.starts_with(".git/") {
        return Err(format!(
            "'{requested}' is inside .git; read_code reads the workspace's files, not git's"
        ));
    }
    if real.is_dir() {
        return Err(format!(
            "'{requested}' is a folder; give a file path (search_code finds files)"
        ));
    }
    Ok((real, rel))
}

/// Lines `start..=end` of `file` (1-based; `end` defaults to as far as `max_bytes` goes).
pub fn read_lines(
    file: &Path,
    rel: &str,
    start: Option<u32>,
    end: Option<u32>,
    max_bytes: usize,
) -> Result<Excerpt, String> {
    let open = || std::fs::File::open(file).map_err(|e| format!("'{rel}' cannot be read: {e}"));
    let mut head = Vec::with_capacity(8192);
    open()?
        .take(8192)
        .read_to_end(&mut head)
        .map_err(|e| format!("'{rel}' cannot be read: {e}"))?;
    if head.contains(&0) {
        return Err(format!("'{rel}' is a binary file; read_code reads text"));
    }
    let start = start.unwrap_or(1);
    let mut reader = std::io::BufReader::new(open()?);
    let mut text = String::new();
    let mut line = Vec::new();
    let mut n: u32 = 0;
    let mut last = start.saturating_sub(1);
    let mut next_line = None;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("'{rel}' cannot be read: {e}"))?;
        if read == 0 {
            break;
        }
        n += 1;
        if n < start {
            continue;
        }
        if end.is_some_and(|e| n > e) {
            // Count the rest only when cheap: the total is a courtesy.
            n = u32::MAX;
            break;
        }
        let content = String::from_utf8_lossy(&line);
        let content = content.trim_end_matches(['\n', '\r']);
        let entry = format!("{n}\t{content}\n");
        if text.len() + entry.len() > max_bytes {
            next_line = Some(n);
            n = u32::MAX;
            break;
        }
        text.push_str(&entry);
        last = n;
    }
    let total_lines = (n != u32::MAX).then_some(n);
    if let Some(total) = total_lines {
        if start > total.max(1) {
            return Err(format!(
                "start_line {start} is past the end of '{rel}', which has {total} lines"
            ));
        }
    }
    if next_line == Some(start) {
        return Err(format!(
            "line {start} of '{rel}' is longer than the size cap ({max_bytes} bytes)"
        ));
    }
    Ok(Excerpt {
        path: rel.to_string(),
        start_line: start,
        end_line: last.max(start.min(total_lines.unwrap_or(start))),
        total_lines,
        text,
        next_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("ws");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("src/lib.rs"), "fn a() {}\nfn b() {}\nfn c() {}\n")
            .expect("write");
        std::fs::write(root.join(".env"), "KEY=1\n").expect("write");
        std::fs::write(dir.path().join("outside.txt"), "secret\n").expect("write");
        let root = root.canonicalize().expect("canonical");
        (dir, root)
    }

    #[test]
    fn reads_numbered_lines_inside_the_workspace() {
        let (_d, root) = fixture();
        let (file, rel) = resolve(&root, "src/lib.rs", false).expect("inside");
        assert_eq!(rel, "src/lib.rs");
        let e = read_lines(&file, &rel, Some(2), None, 1024).expect("read");
        assert_eq!(
            e.render(),
            "src/lib.rs:2-3 of 3\n2\tfn b() {}\n3\tfn c() {}\n"
        );
        let e = read_lines(&file, &rel, Some(1), Some(1), 1024).expect("read");
        assert_eq!(
            (e.start_line, e.end_line, e.text.as_str()),
            (1, 1, "1\tfn a() {}\n")
        );
        let e = read_lines(&file, &rel, None, None, 25).expect("read");
        assert_eq!(e.next_line, Some(3));
        assert!(e.render().ends_with("start_line=3 to read on\n"));
        assert_eq!(
            read_lines(&file, &rel, Some(9), None, 1024).unwrap_err(),
            "start_line 9 is past the end of 'src/lib.rs', which has 3 lines"
        );
    }

    #[test]
    fn refuses_escapes_and_secrets() {
        let (dir, root) = fixture();
        assert!(resolve(&root, "../outside.txt", false)
            .unwrap_err()
            .contains("contains '..'"));
        let abs = dir.path().join("outside.txt");
        assert!(resolve(&root, &abs.to_string_lossy(), false)
            .unwrap_err()
            .contains("is outside the workspace"));
        assert!(resolve(&root, ".env", false)
            .unwrap_err()
            .contains("is a secrets file"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&abs, root.join("link.txt")).expect("symlink");
            assert!(resolve(&root, "link.txt", false)
                .unwrap_err()
                .contains("symlink that leads outside"));
            std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt")).expect("symlink");
            assert!(resolve(&root, "env.txt", false)
                .unwrap_err()
                .contains("leads to a secrets file (.env)"));
        }
        let inside_abs = root.join("src/lib.rs");
        assert!(resolve(&root, &inside_abs.to_string_lossy(), false).is_ok());
        assert!(resolve(&root, "src", false)
            .unwrap_err()
            .contains("is a folder"));
        assert!(resolve(&root, "nope.rs", false)
            .unwrap_err()
            .contains("does not exist"));
    }
}
