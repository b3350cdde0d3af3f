//! The editor features' pure parts: hover markdown, doc comments in each language's own
//! style, and the mapping of chunk kinds to LSP symbol kinds. No I/O, no server state.

use crate::chunk::{ChunkKind, Language};
use crate::engine::SearchHit;
use crate::tokenize;
use tower_lsp::lsp_types::SymbolKind;

/// `file:///…#L<n>` for a workspace path and a 1-based line.
pub fn file_link(root: &std::path::Path, rel: &str, line: u32) -> String {
    let uri = tower_lsp::lsp_types::Url::from_file_path(root.join(rel))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| rel.to_string());
    format!("{uri}#L{line}")
}

/// Hover markdown for `word`: the best matching definition with a snippet, related code
/// as links, and a generated explanation when one is ready.
pub fn hover_markdown(
    word: &str,
    hits: &[SearchHit],
    link: &dyn Fn(&str, u32) -> String,
    explanation: Option<&str>,
) -> String {
    let mut md = String::new();
    let definition = hits
        .iter()
        .find(|h| h.chunk.name == word)
        .or_else(|| hits.first());
    if let Some(explanation) = explanation {
        md.push_str(explanation.trim());
        md.push_str("\n\n");
    }
    if let Some(d) = definition {
        let what = if d.chunk.symbol.is_empty() {
            d.chunk.kind.to_string()
        } else {
            format!("`{}`", d.chunk.symbol)
        };
        md.push_str(&format!(
            "**{what}** — [{}:{}]({})\n\n```{}\n{}\n```\n",
            d.chunk.path,
            d.chunk.start_line,
            link(&d.chunk.path, d.chunk.start_line),
            d.chunk.language,
            crate::answer::snippet(&d.chunk.text)
        ));
    }
    let related: Vec<&SearchHit> = hits
        .iter()
        .filter(|h| Some(h.chunk.id) != definition.map(|d| d.chunk.id))
        .take(4)
        .collect();
    if !related.is_empty() {
        md.push_str("\nRelated:\n");
        for h in related {
            let label = if h.chunk.symbol.is_empty() {
                h.chunk.kind.to_string()
            } else {
                h.chunk.symbol.clone()
            };
            md.push_str(&format!(
                "- [`{label}`]({}) {}:{}\n",
                link(&h.chunk.path, h.chunk.start_line),
                h.chunk.path,
                h.chunk.start_line
            ));
        }
    }
    md
}

/// A doc comment for the item named `name`, in the language's own style, indented like
/// the item, summarising what its name says and pointing at related code. Returns the
/// lines to insert and whether they go *inside* the item, after its first line (Python
/// docstrings), rather than above it.
pub fn doc_comment(
    language: Language,
    name: &str,
    indent: &str,
    related: &[String],
) -> (String, bool) {
    let mut words = Vec::new();
    tokenize::split_identifier(name, &mut words);
    let mut summary = words.join(" ");
    if let Some(first) = summary.get(..1) {
        summary = first.to_uppercase() + &summary[1..];
    }
    if summary.is_empty() {
        summary = "Describe this item".into();
    }
    let see_also = if related.is_empty() {
        String::new()
    } else {
        format!("See also: {}.", related.join(", "))
    };
    let lines: Vec<String> = [format!("{summary}."), see_also]
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    match language {
        Language::Rust => (
            lines.iter().map(|l| format!("{indent}/// {l}\n")).collect(),
            false,
        ),
        Language::Python => {
            let inner = format!("{indent}    ");
            let mut s = format!("{inner}\"\"\"{}\n", lines[0]);
            for l in &lines[1..] {
                s.push_str(&format!("\n{inner}{l}\n"));
            }
            s.push_str(&format!("{inner}\"\"\"\n"));
            (s, true)
        }
        Language::Go => {
            // Go's convention: the comment starts with the name.
            let mut s = format!(
                "{indent}// {name} {}\n",
                lines[0].trim_end_matches('.').to_lowercase() + "."
            );
            for l in &lines[1..] {
                s.push_str(&format!("{indent}// {l}\n"));
            }
            (s, false)
        }
        _ => {
            let mut s = format!("{indent}/**\n");
            for l in &lines {
                s.push_str(&format!("{indent} * {l}\n"));
            }
            s.push_str(&format!("{indent} */\n"));
            (s, false)
        }
    }
}

pub fn symbol_kind(kind: ChunkKind) -> SymbolKind {
    match kind {
        ChunkKind::Function => SymbolKind::FUNCTION,
        ChunkKind::Method => SymbolKind::METHOD,
        ChunkKind::Class => SymbolKind::CLASS,
        ChunkKind::Struct => SymbolKind::STRUCT,
        ChunkKind::Enum => SymbolKind::ENUM,
        ChunkKind::Trait | ChunkKind::Interface => SymbolKind::INTERFACE,
        ChunkKind::Impl => SymbolKind::CLASS,
        ChunkKind::Module => SymbolKind::MODULE,
        ChunkKind::Type => SymbolKind::TYPE_PARAMETER,
        ChunkKind::Const => SymbolKind::CONSTANT,
        ChunkKind::Macro => SymbolKind::FUNCTION,
        ChunkKind::Section => SymbolKind::STRING,
        ChunkKind::Block | ChunkKind::Text => SymbolKind::FILE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doc_comments_follow_each_language() {
        let related = vec!["`fn retry` (src/net.rs:10)".to_string()];
        let (rust, inside) = doc_comment(Language::Rust, "parse_request", "    ", &related);
        assert_eq!(
            rust,
            "    /// Parse request.\n    /// See also: `fn retry` (src/net.rs:10).\n"
        );
        assert!(!inside);
        let (py, inside) = doc_comment(Language::Python, "parseRequest", "", &[]);
        assert_eq!(py, "    \"\"\"Parse request.\n    \"\"\"\n");
        assert!(inside);
        let (go, _) = doc_comment(Language::Go, "ParseRequest", "", &[]);
        assert_eq!(go, "// ParseRequest parse request.\n");
        let (ts, _) = doc_comment(Language::TypeScript, "parseRequest", "  ", &[]);
        assert_eq!(ts, "  /**\n   * Parse request.\n   */\n");
    }
}
