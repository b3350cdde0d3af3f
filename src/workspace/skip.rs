//! The skip rules that need no walk: secret and generated file names, code extensions,
//! and what a file's bytes say (binary, minified, generated).

use super::SkipReason;
use std::fs;
use std::path::Path;

/// How much of a file [`classify_content`] scans for NUL bytes.
pub(super) const BINARY_SCAN_BYTES: usize = 8 * 1024;
/// How much of a file [`classify_content`] scans for minified lines.
pub(super) const MINIFIED_SCAN_BYTES: usize = 64 * 1024;
/// A line longer than this (in the scanned window) may mean minified text...
pub(super) const MINIFIED_LONG_LINE: usize = 1000;
/// ...if the average line in the window is also longer than this.
pub(super) const MINIFIED_AVG_LINE: usize = 300;
/// How many leading lines may carry a "generated, do not edit" header.
pub(super) const HEADER_LINES: usize = 5;

/// Run `f` on the ASCII-lowercased file name of `path` (its last '/' or '\'
/// separated component), without allocating for ordinary names.
pub(super) fn with_lower_name<R>(path: &str, f: impl FnOnce(&str) -> R) -> R {
    let name = match path.rfind(['/', '\\']) {
        Some(i) => &path[i + 1..],
        None => path,
    };
    let mut buf = [0u8; 256];
    if name.len() <= buf.len() {
        let buf = &mut buf[..name.len()];
        buf.copy_from_slice(name.as_bytes());
        buf.make_ascii_lowercase();
        // ASCII lowercasing keeps UTF-8 valid.
        match std::str::from_utf8(buf) {
            Ok(lower) => f(lower),
            Err(_) => f(&name.to_ascii_lowercase()),
        }
    } else {
        f(&name.to_ascii_lowercase())
    }
}

/// Extension after the last '.', if the name has one (not counting a leading dot).
pub(super) fn extension(name: &str) -> Option<&str> {
    match name.rfind('.') {
        Some(i) if i > 0 => Some(&name[i + 1..]),
        _ => None,
    }
}

/// Source and documentation extensions: a file named like a secret but with
/// one of these (`credentials.rs`, `id_rsa_test.go`, `credentials.md`) is code
/// about secrets, not a secret.
pub(super) fn is_code_extension(ext: &str) -> bool {
    matches!(
        ext,
        "rs" | "py"
            | "pyi"
            | "js"
            | "mjs"
            | "cjs"
            | "ts"
            | "mts"
            | "cts"
            | "jsx"
            | "tsx"
            | "go"
            | "java"
            | "kt"
            | "kts"
            | "scala"
            | "groovy"
            | "c"
            | "h"
            | "cc"
            | "cpp"
            | "cxx"
            | "hpp"
            | "hh"
            | "hxx"
            | "cs"
            | "fs"
            | "vb"
            | "rb"
            | "php"
            | "swift"
            | "m"
            | "mm"
            | "lua"
            | "pl"
            | "pm"
            | "r"
            | "jl"
            | "ex"
            | "exs"
            | "erl"
            | "hs"
            | "ml"
            | "mli"
            | "dart"
            | "vue"
            | "svelte"
            | "astro"
            | "sh"
            | "bash"
            | "zsh"
            | "fish"
            | "ps1"
            | "sql"
            | "md"
            | "mdx"
            | "rst"
            | "adoc"
            | "html"
            | "htm"
            | "css"
            | "scss"
            | "sass"
            | "less"
            | "zig"
            | "nim"
            | "clj"
            | "cljs"
            | "elm"
            | "proto"
            | "graphql"
            | "tf"
    )
}

/// True for paths that look like secrets: `.env` and `.env.*` (except
/// `*.example`, `*.sample`, `*.template`), private keys and keystores
/// (`*.pem`, `*.key`, `*.p12`, `*.pfx`, `*.jks`, `*.keystore`, `id_rsa*`,
/// `id_dsa*`, `id_ecdsa*`, `id_ed25519*` but not `*.pub`), credential files
/// (`credentials*`, `.envrc`, `.docker/config.json`, `.npmrc`, `.pypirc`, `.netrc`, `_netrc`,
/// `.git-credentials`, `.htpasswd`, `secrets.{yaml,yml,json,toml}`,
/// `service-account*.json`), and Terraform state (`*.tfstate`,
/// `*.tfstate.backup`). Only the file name is looked at, case-insensitively.
/// The prefix rules (`id_*`, `credentials*`, `service-account*`) do not apply
/// to source or documentation files such as `credentials.rs`.
pub fn is_secret_path(rel_path: &str) -> bool {
    let lower = rel_path.to_ascii_lowercase();
    if lower == ".docker/config.json" || lower.ends_with("/.docker/config.json") {
        return true;
    }
    with_lower_name(rel_path, |name| {
        if matches!(
            name,
            ".env"
                | ".envrc"
                | ".npmrc"
                | ".pypirc"
                | ".netrc"
                | "_netrc"
                | ".git-credentials"
                | ".htpasswd"
        ) {
            return true;
        }
        if let Some(rest) = name.strip_prefix(".env.") {
            let template = [".example", ".sample", ".template"]
                .iter()
                .any(|s| rest.ends_with(s) || rest == &s[1..]);
            return !template;
        }
        let ext = extension(name);
        if matches!(
            ext,
            Some("pem" | "key" | "p12" | "pfx" | "jks" | "keystore" | "tfstate")
        ) || name.ends_with(".tfstate.backup")
        {
            return true;
        }
        if let Some(rest) = name.strip_prefix("secrets.") {
            return matches!(
                extension(rest).unwrap_or(rest),
                "yaml" | "yml" | "json" | "toml"
            );
        }
        if ext.is_some_and(is_code_extension) {
            return false;
        }
        if ["id_rsa", "id_dsa", "id_ecdsa", "id_ed25519"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            return ext != Some("pub");
        }
        if name.starts_with("credentials") {
            return true;
        }
        (name.starts_with("service-account") || name.starts_with("service_account"))
            && ext == Some("json")
    })
}

/// Well-known lockfiles, minified bundles and source maps, by name.
pub(super) fn is_generated_name(rel_path: &str) -> bool {
    with_lower_name(rel_path, |name| {
        matches!(
            name,
            "cargo.lock"
                | "package-lock.json"
                | "npm-shrinkwrap.json"
                | "yarn.lock"
                | "pnpm-lock.yaml"
                | "bun.lock"
                | "bun.lockb"
                | "deno.lock"
                | "poetry.lock"
                | "pipfile.lock"
                | "uv.lock"
                | "pdm.lock"
                | "composer.lock"
                | "gemfile.lock"
                | "go.sum"
                | "go.work.sum"
                | "flake.lock"
                | "mix.lock"
                | "pubspec.lock"
                | "podfile.lock"
                | "package.resolved"
                | "packages.lock.json"
                | "gradle.lockfile"
        ) || name.ends_with(".min.js")
            || name.ends_with(".min.mjs")
            || name.ends_with(".min.css")
            || name.ends_with(".map")
    })
}

/// What [`read_file`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum FileRead {
    /// The whole content (at most the size limit).
    Bytes(Vec<u8>),
    /// Not read: the opened file is not a regular file, or it has grown past the limit.
    Skipped(SkipReason),
}

/// Reads a file the walk accepted, safely against what may have changed since: the file
/// is opened without blocking (a FIFO put in its place would otherwise block the open
/// until a writer comes), its type is checked on the opened descriptor, and at most
/// `max_bytes + 1` bytes are read, so a file that grew past the limit is skipped as
/// [`SkipReason::TooLarge`] without reading it all.
pub fn read_file(path: &Path, max_bytes: u64) -> std::io::Result<FileRead> {
    use std::io::Read;
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    let md = file.metadata()?;
    if !md.is_file() {
        return Ok(FileRead::Skipped(SkipReason::Special));
    }
    if md.len() > max_bytes {
        return Ok(FileRead::Skipped(SkipReason::TooLarge));
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Ok(FileRead::Skipped(SkipReason::TooLarge));
    }
    Ok(FileRead::Bytes(bytes))
}

/// Content checks, run by the indexer after it has read a (new or changed)
/// file. Returns None when the file should be indexed.
///
/// * A NUL byte in the first 8 KiB: [`SkipReason::Binary`].
/// * Minified text: in the first 64 KiB, a line longer than 1000 bytes while
///   the average line is longer than 300 bytes: [`SkipReason::Generated`].
/// * A machine-written header in the first 5 lines: a comment that *starts*
///   by saying the file is generated and (on that or a following header line)
///   says not to edit it (`// Code generated by protoc-gen-go. DO NOT EDIT.`,
///   `# This file is automatically @generated by Cargo.` + `# It is not
///   intended for manual editing.`), or a comment that is just `@generated`
///   (optionally followed by `SignedSource<<…>>`) or `<auto-generated>`:
///   [`SkipReason::Generated`]. Hand-written files that merely mention these
///   markers in a sentence are kept.
pub fn classify_content(bytes: &[u8]) -> Option<SkipReason> {
    let head = &bytes[..bytes.len().min(BINARY_SCAN_BYTES)];
    if head.contains(&0) {
        return Some(SkipReason::Binary);
    }
    let window = &bytes[..bytes.len().min(MINIFIED_SCAN_BYTES)];
    if looks_minified(window) || has_generated_header(window) {
        return Some(SkipReason::Generated);
    }
    None
}

pub(super) fn looks_minified(window: &[u8]) -> bool {
    if window.len() <= MINIFIED_LONG_LINE {
        return false;
    }
    let mut lines = 0usize;
    let mut longest = 0usize;
    for line in window.split(|&b| b == b'\n') {
        lines += 1;
        longest = longest.max(line.len());
    }
    if window.last() == Some(&b'\n') {
        lines -= 1; // the empty piece after the final newline
    }
    longest > MINIFIED_LONG_LINE && window.len() / lines.max(1) > MINIFIED_AVG_LINE
}

pub(super) fn has_generated_header(window: &[u8]) -> bool {
    let window = window.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(window);
    let bodies: Vec<Option<String>> = window
        .split(|&b| b == b'\n')
        .take(HEADER_LINES)
        .map(|line| comment_body(&String::from_utf8_lossy(line)).map(str::to_ascii_lowercase))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let Some(body) = body else { continue };
        // A bare marker line: `@generated` (Meta/Buck, Thrift), optionally
        // signed, or .NET's `<auto-generated>`.
        if body == "@generated"
            || body.starts_with("@generated signedsource")
            || body.starts_with("<auto-generated")
        {
            return true;
        }
        let statement = body.replace("@generated", "generated");
        if starts_generated_statement(&statement)
            && bodies[i..].iter().flatten().any(|b| says_do_not_edit(b))
        {
            return true;
        }
        if body.starts_with("do not edit") && body.contains("generated") {
            return true;
        }
    }
    false
}

/// The text of a comment line without its comment markers, or None if the
/// line is not a comment.
pub(super) fn comment_body(line: &str) -> Option<&str> {
    const OPENERS: [&str; 16] = [
        "<!--", "//!", "///", "//", "/**", "/*!", "/*", "(*", "{-", "--", "#", ";;", ";", "*", "%",
        "'",
    ];
    let t = line.trim();
    let rest = OPENERS.iter().find_map(|p| t.strip_prefix(p))?;
    let rest = rest.trim_end();
    let rest = ["*/", "-->", "*)", "-}"]
        .iter()
        .find_map(|c| rest.strip_suffix(c))
        .unwrap_or(rest);
    Some(rest.trim())
}

pub(super) fn starts_generated_statement(body: &str) -> bool {
    const PREFIXES: [&str; 6] = [
        "code generated",
        "generated by",
        "generated from",
        "autogenerated",
        "auto-generated",
        "automatically generated",
    ];
    // "this file is (automatically) generated", "this code was
    // auto-generated", "this is an autogenerated file": the claim must come
    // within the first few words.
    const THIS_PREFIXES: [&str; 8] = [
        "this file is ",
        "this file was ",
        "this file has been ",
        "this code is ",
        "this code was ",
        "this code has been ",
        "this is an ",
        "this is a ",
    ];
    PREFIXES.iter().any(|p| body.starts_with(p))
        || (THIS_PREFIXES.iter().any(|p| body.starts_with(p))
            && body
                .split_whitespace()
                .take(6)
                .any(|w| w.contains("generated")))
}

pub(super) fn says_do_not_edit(body: &str) -> bool {
    [
        "do not edit",
        "don't edit",
        "do not modify",
        "don't modify",
        "not intended for manual editing",
        "should not be edited",
        "must not be edited",
    ]
    .iter()
    .any(|p| body.contains(p))
}
