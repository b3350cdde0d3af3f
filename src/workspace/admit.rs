//! Admission of editor text: the same rules as indexing (not a secret, within size, not
//! binary or generated) for buffers and editor context, and reads that cannot leave the
//! workspace root.

use super::{classify_content, is_secret_path, SkipReason};
use std::path::Path;

/// The one admission rule for text that may be indexed or shown to a model: editor
/// buffers, editor context (selections, hovered words) and files read for them. A path
/// must not look like a secret (unless `index_secrets`), the text must fit in
/// `max_file_bytes` and must not be binary or generated. `rel_path` is relative to a
/// workspace root: text from outside every root is never admitted (the caller cannot
/// name it).
pub fn admit_text(
    rel_path: &str,
    bytes: &[u8],
    max_file_bytes: u64,
    index_secrets: bool,
) -> Result<(), SkipReason> {
    if !index_secrets && is_secret_path(rel_path) {
        return Err(SkipReason::Secret);
    }
    if bytes.len() as u64 > max_file_bytes {
        return Err(SkipReason::TooLarge);
    }
    match classify_content(bytes) {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// Reads `root/rel_path` for the editor under [`admit_text`]'s rule: a secret's path is
/// refused before any read, a path that resolves outside `root` (a symlink, `..`) or is
/// not a regular file is refused, and at most `max_file_bytes + 1` bytes are read.
pub fn read_admitted(
    root: &Path,
    rel_path: &str,
    max_file_bytes: u64,
    index_secrets: bool,
) -> Result<String, SkipReason> {
    if !index_secrets && is_secret_path(rel_path) {
        return Err(SkipReason::Secret);
    }
    let root = root.canonicalize().map_err(|_| SkipReason::Unreadable)?;
    let path = root
        .join(rel_path)
        .canonicalize()
        .map_err(|_| SkipReason::Unreadable)?;
    if !path.starts_with(&root) {
        return Err(SkipReason::SymlinkEscape);
    }
    // Never blocks on a FIFO; the type is checked on the opened descriptor.
    let bytes = match super::read_file(&path, max_file_bytes) {
        Ok(super::FileRead::Bytes(bytes)) => bytes,
        Ok(super::FileRead::Skipped(reason)) => return Err(reason),
        Err(_) => return Err(SkipReason::Unreadable),
    };
    admit_text(rel_path, &bytes, max_file_bytes, index_secrets)?;
    String::from_utf8(bytes).map_err(|_| SkipReason::Binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editor_text_passes_the_indexing_rules() {
        assert_eq!(admit_text("src/a.rs", b"fn a() {}\n", 100, false), Ok(()));
        assert_eq!(
            admit_text(".env", b"TOKEN=x\n", 100, false),
            Err(SkipReason::Secret)
        );
        assert_eq!(admit_text(".env", b"TOKEN=x\n", 100, true), Ok(()));
        assert_eq!(
            admit_text("src/a.rs", b"fn a() {}\n", 4, false),
            Err(SkipReason::TooLarge)
        );
        assert_eq!(
            admit_text("a.bin", b"\x7fELF\x00\x01", 100, false),
            Err(SkipReason::Binary)
        );
    }

    #[test]
    fn reads_stay_inside_the_root_and_skip_secrets_unread() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ws");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.rs"), "fn a() {}\n").unwrap();
        std::fs::write(root.join("id_rsa"), "KEY\n").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "secret\n").unwrap();
        assert_eq!(
            read_admitted(&root, "a.rs", 100, false).as_deref(),
            Ok("fn a() {}\n")
        );
        assert_eq!(
            read_admitted(&root, "id_rsa", 100, false),
            Err(SkipReason::Secret)
        );
        assert_eq!(
            read_admitted(&root, "../outside.txt", 100, false),
            Err(SkipReason::SymlinkEscape)
        );
        assert_eq!(
            read_admitted(&root, "a.rs", 3, false),
            Err(SkipReason::TooLarge)
        );
    }
}
