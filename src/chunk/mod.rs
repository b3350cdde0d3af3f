//! Chunking: turns one file's text into retrieval units that follow the
//! syntax tree, so that each chunk is a whole function, method, type or
//! section where the budget allows, labelled with its enclosing symbol path.
//!
//! It is not for reading files, embedding, or indexing: callers hand in a
//! path and bytes and get back [`Chunk`]s with byte and line ranges into the
//! (lossily decoded) text. It never panics and never drops a non-blank line:
//! the chunks of a file are in file order, do not overlap, and together cover
//! every non-blank line (blank-only stretches between chunks may be left out).
//!
//! # Strategies
//! * Rust, Python, JavaScript, TypeScript, TSX, Go, Java, C and C++ are parsed
//!   with tree-sitter (one cached parser per language per thread). Items become
//!   chunks; a container that does not fit the [`ChunkBudget`] is split into its
//!   members plus a leftover chunk of the container's own kind (its header,
//!   fields, ...); an oversized item is cut at child-node boundaries (statements)
//!   and, below that, at line and then character boundaries. Text between items
//!   (imports, top-level statements) becomes `block` chunks. Comments and
//!   attributes directly above an item (no blank line between) and a comment on
//!   its last line belong to the item.
//! * Markdown is cut at ATX headings outside fenced code blocks (`section`).
//! * Everything else is cut at blank lines (`text`); so is a code file whose
//!   grammar cannot produce a tree at all (`block`).
//!
//! Budgets below 16 bytes or 1 line are treated as 16 bytes and 1 line. No
//! chunk exceeds `max_bytes` or `max_lines`: lines longer than `max_bytes`
//! are cut at character boundaries (preferably after a space), so several
//! chunks may share one line.
//!
//! Consecutive sibling chunks that are each under `min_bytes` are merged while
//! the result fits the budget (in markdown a small section also joins the
//! section after it). A merged chunk keeps the kind its parts share (else
//! `block`; sections stay `section`), takes the longest common symbol path of
//! its parts, and the first non-empty name among them.
//!
//! # Symbol paths
//! Segments are joined with `" > "`, outermost first, and end with the chunk's
//! own item; leftovers of a split container carry the container's path.
//! * Rust: `fn f`, `struct S`, `union U`, `enum E`, `trait T`, `impl Type`,
//!   `impl Trait for Type`, `mod m`, `macro m`, `const C`, `static S`, `type T`,
//!   `extern "C"`; e.g. `impl Scheduler > fn poll`, `mod tests > fn it_works`.
//! * Python: `class C`, `def f`; e.g. `class Session > def request`.
//! * JavaScript/TypeScript/TSX: `function f` (also for arrow functions and
//!   function expressions assigned to a `const`/`let`/`var`), `class C`,
//!   `method m`, `interface I`, `type T`, `enum E`, `namespace N`, `module M`;
//!   `export` and `declare` wrappers are part of the chunk but not of the path;
//!   an anonymous default export is named `default`.
//! * Go: `func f`, `func (*Recv) m` (receiver type, no receiver name), `type T`,
//!   `const C`, `var V`.
//! * Java: `class C`, `interface I`, `enum E`, `record R`, `@interface A`,
//!   `method m`, `constructor C`.
//! * C/C++: `function f` (`function Foo::bar` for out-of-class definitions),
//!   `struct S`, `union U`, `enum E`, `class C`, `namespace N`, `type T`
//!   (typedef), `macro M` (`#define`), `extern "C"`.
//! * Markdown: the heading trail, e.g. `Install > From source`.

mod languages;
mod markdown;
mod syntax;
mod text;

#[cfg(test)]
mod tests;

use text::{Piece, Source};

/// A file's language, as detected from its path. Stored and serialized as
/// [`Language::as_str`] ("rust", "python", ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Go,
    Java,
    C,
    Cpp,
    Markdown,
    Text,
}

impl Language {
    const ALL: [Language; 11] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::TypeScript,
        Language::Tsx,
        Language::Go,
        Language::Java,
        Language::C,
        Language::Cpp,
        Language::Markdown,
        Language::Text,
    ];

    /// By extension (rs, py/pyi, js/mjs/cjs/jsx, ts/mts/cts, tsx, go, java, c/h,
    /// cc/cpp/cxx/hpp/hh/hxx, md/markdown; case-insensitive); everything else -> Text.
    pub fn from_path(path: &str) -> Language {
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let Some((stem, ext)) = file.rsplit_once('.') else {
            return Language::Text;
        };
        if stem.is_empty() {
            // A dotfile such as `.rs` has no extension.
            return Language::Text;
        }
        match ext.to_ascii_lowercase().as_str() {
            "rs" => Language::Rust,
            "py" | "pyi" => Language::Python,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            "java" => Language::Java,
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Language::Cpp,
            "md" | "markdown" => Language::Markdown,
            _ => Language::Text,
        }
    }

    /// Lower-case stable name: "rust", "python", "javascript", "typescript",
    /// "tsx", "go", "java", "c", "cpp", "markdown", "text".
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
            Language::Java => "java",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Markdown => "markdown",
            Language::Text => "text",
        }
    }

    /// Inverse of [`Language::as_str`].
    pub fn from_name(name: &str) -> Option<Language> {
        Language::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// What a chunk is. Stable lower-case names via [`ChunkKind::as_str`], also when
/// stored and serialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Impl,
    Interface,
    Module,
    Type,
    Const,
    Macro,
    /// A markdown section.
    Section,
    /// Merged or top-level code, leftovers between items.
    Block,
    /// Plain-text fallback.
    Text,
}

impl ChunkKind {
    const ALL: [ChunkKind; 15] = [
        ChunkKind::Function,
        ChunkKind::Method,
        ChunkKind::Class,
        ChunkKind::Struct,
        ChunkKind::Enum,
        ChunkKind::Trait,
        ChunkKind::Impl,
        ChunkKind::Interface,
        ChunkKind::Module,
        ChunkKind::Type,
        ChunkKind::Const,
        ChunkKind::Macro,
        ChunkKind::Section,
        ChunkKind::Block,
        ChunkKind::Text,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChunkKind::Function => "function",
            ChunkKind::Method => "method",
            ChunkKind::Class => "class",
            ChunkKind::Struct => "struct",
            ChunkKind::Enum => "enum",
            ChunkKind::Trait => "trait",
            ChunkKind::Impl => "impl",
            ChunkKind::Interface => "interface",
            ChunkKind::Module => "module",
            ChunkKind::Type => "type",
            ChunkKind::Const => "const",
            ChunkKind::Macro => "macro",
            ChunkKind::Section => "section",
            ChunkKind::Block => "block",
            ChunkKind::Text => "text",
        }
    }

    /// Inverse of [`ChunkKind::as_str`].
    pub fn from_name(s: &str) -> Option<ChunkKind> {
        ChunkKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for ChunkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ChunkBudget {
    /// Chunks above this many bytes are split at child boundaries (default 2000).
    pub max_bytes: usize,
    /// Adjacent small sibling chunks under this many bytes each are merged
    /// while the merge stays within max_bytes (default 250).
    pub min_bytes: usize,
    /// Hard cap on lines per chunk (default 80); a node longer than this is split too.
    pub max_lines: usize,
}

impl Default for ChunkBudget {
    fn default() -> Self {
        ChunkBudget {
            max_bytes: 2000,
            min_bytes: 250,
            max_lines: 80,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    pub language: Language,
    pub kind: ChunkKind,
    /// Enclosing symbol path including the chunk's own item, e.g.
    /// "impl Scheduler > fn poll", "class Session > def request",
    /// "mod tests > fn it_works"; for markdown the heading trail
    /// "Install > From source"; empty for anonymous top-level text.
    pub symbol: String,
    /// The innermost item's bare name ("poll", "request", "Scheduler"); empty when none.
    pub name: String,
    /// Byte range [start, end) into the text that was chunked.
    pub start_byte: usize,
    pub end_byte: usize,
    /// 1-based inclusive line range.
    pub start_line: u32,
    pub end_line: u32,
    /// The chunk's source text (exactly text[start_byte..end_byte]).
    pub text: String,
}

impl Chunk {
    /// The text given to embedders: first line the path, second line the
    /// symbol path (omitted if empty), then the text.
    pub fn embedding_text(&self, path: &str) -> String {
        embedding_text(path, &self.symbol, &self.text)
    }
}

#[cfg(test)]
impl Chunk {
    /// A one-line function chunk of `text`, for tests that need some chunk.
    pub(crate) fn test_function(text: &str) -> Chunk {
        Chunk {
            language: Language::Rust,
            kind: ChunkKind::Function,
            symbol: String::new(),
            name: String::new(),
            start_byte: 0,
            end_byte: text.len(),
            start_line: 1,
            end_line: 1,
            text: text.into(),
        }
    }
}

/// The text given to embedders for a chunk at `path` with this symbol path and text
/// (also used to re-embed stored chunks, so it must stay in step with the hash).
pub fn embedding_text(path: &str, symbol: &str, text: &str) -> String {
    let mut out = String::with_capacity(path.len() + symbol.len() + text.len() + 2);
    out.push_str(path);
    out.push('\n');
    if !symbol.is_empty() {
        out.push_str(symbol);
        out.push('\n');
    }
    out.push_str(text);
    out
}

/// Chunk one file. `path` is workspace-relative ('/' separated) and only used
/// for language detection. `bytes` may be invalid UTF-8 (decoded lossily
/// first; ranges refer to the decoded text, which equals the input when it is
/// valid UTF-8). Never panics; returns an empty Vec only for empty or
/// whitespace-only input.
pub fn chunk_file(path: &str, bytes: &[u8], budget: &ChunkBudget) -> Vec<Chunk> {
    let decoded = String::from_utf8_lossy(bytes);
    let text: &str = &decoded;
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Vec::new();
    }
    let language = Language::from_path(path);
    let src = Source::new(text, budget);
    let pieces = match language {
        Language::Markdown => markdown::chunk_markdown(&src),
        Language::Text => text::chunk_plain(&src, ChunkKind::Text),
        _ => syntax::chunk_code(&src, language)
            .unwrap_or_else(|| text::chunk_plain(&src, ChunkKind::Block)),
    };
    finish(&src, language, pieces)
}

/// Trims pieces, drops blank ones and cuts their text out.
fn finish(src: &Source, language: Language, pieces: Vec<Piece>) -> Vec<Chunk> {
    let text = src.text;
    let ceil = |mut i: usize| {
        i = i.min(text.len());
        while !text.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let mut chunks = Vec::with_capacity(pieces.len());
    let mut covered = 0;
    for piece in pieces {
        // Pieces are contiguous by construction; clamping keeps them ordered
        // and non-overlapping even if a strategy misbehaves.
        let start = ceil(piece.start).max(covered);
        let end = ceil(piece.end);
        if end <= start {
            continue;
        }
        let Some(range) = src.trim(start..end) else {
            continue;
        };
        let Some(body) = text.get(range.clone()) else {
            continue;
        };
        covered = range.end;
        chunks.push(Chunk {
            language,
            kind: piece.kind,
            symbol: piece.path.join(" > "),
            name: piece.name,
            start_byte: range.start,
            end_byte: range.end,
            start_line: line_number(src.line_of(range.start)),
            end_line: line_number(src.last_line_of(range.start, range.end)),
            text: body.to_string(),
        });
    }
    chunks
}

fn line_number(line: usize) -> u32 {
    u32::try_from(line + 1).unwrap_or(u32::MAX)
}
