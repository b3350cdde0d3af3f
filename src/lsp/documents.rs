//! Open editor buffers: their text, applied from `didOpen`/`didChange` (full or
//! incremental, positions in UTF-16 as LSP says), in version order even if notifications
//! arrive out of order, and the position arithmetic the features need. Pure: no I/O.

use std::collections::BTreeMap;
use tower_lsp::lsp_types::{Position, Range, TextDocumentContentChangeEvent};

/// One open buffer.
#[derive(Clone, Debug)]
pub struct Document {
    pub text: String,
    pub version: i32,
    /// Changes that arrived ahead of their turn, by version.
    early: BTreeMap<i32, Vec<TextDocumentContentChangeEvent>>,
}

impl Document {
    pub fn new(text: String, version: i32) -> Self {
        Document {
            text,
            version,
            early: BTreeMap::new(),
        }
    }

    /// Applies a `didChange` of `version`. Changes are applied strictly in version order:
    /// one that arrives early waits for its predecessors; a stale one is ignored. Returns
    /// true when the text changed.
    pub fn change(&mut self, version: i32, changes: Vec<TextDocumentContentChangeEvent>) -> bool {
        if version <= self.version {
            return false;
        }
        self.early.insert(version, changes);
        let mut changed = false;
        while let Some(entry) = self.early.first_entry() {
            let v = *entry.key();
            // A full-text change needs no predecessor; an incremental one does.
            let full = entry.get().iter().any(|c| c.range.is_none());
            if v != self.version + 1 && !full {
                break;
            }
            let changes = entry.remove();
            for c in changes {
                apply(&mut self.text, c);
            }
            self.version = v;
            changed = true;
        }
        changed
    }
}

fn apply(text: &mut String, change: TextDocumentContentChangeEvent) {
    match change.range {
        None => *text = change.text,
        Some(range) => {
            let start = offset_at(text, range.start);
            let end = offset_at(text, range.end).max(start);
            text.replace_range(start..end, &change.text);
        }
    }
}

/// The byte offset of an LSP position (UTF-16 column), clamped to the text.
pub fn offset_at(text: &str, pos: Position) -> usize {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i as u32 == pos.line {
            return offset + utf16_to_byte(line.trim_end_matches(['\n', '\r']), pos.character);
        }
        offset += line.len();
    }
    text.len()
}

/// The byte index in `line` of UTF-16 column `col` (clamped to the line's end).
fn utf16_to_byte(line: &str, col: u32) -> usize {
    let mut units = 0u32;
    for (i, c) in line.char_indices() {
        if units >= col {
            return i;
        }
        units += c.len_utf16() as u32;
    }
    line.len()
}

/// The UTF-16 length of a line (what LSP counts columns in).
pub fn utf16_len(line: &str) -> u32 {
    line.encode_utf16().count() as u32
}

/// The LSP range covering 1-based inclusive lines `start..=end` of a chunk whose last
/// line is `last_line_text`.
pub fn line_range(start_line: u32, end_line: u32, last_line_text: &str) -> Range {
    Range {
        start: Position {
            line: start_line.saturating_sub(1),
            character: 0,
        },
        end: Position {
            line: end_line.saturating_sub(1),
            character: utf16_len(last_line_text.trim_end_matches('\r')),
        },
    }
}

/// The identifier under (or just before) the cursor, if any.
pub fn word_at(text: &str, pos: Position) -> Option<String> {
    let offset = offset_at(text, pos);
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let before = &text[..offset];
    let after = &text[offset..];
    let start = before
        .char_indices()
        .rev()
        .take_while(|(_, c)| is_word(*c))
        .last()
        .map_or(offset, |(i, _)| i);
    let end = offset
        + after
            .char_indices()
            .take_while(|(_, c)| is_word(*c))
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &text[start..end];
    (!word.is_empty() && !word.chars().all(|c| c.is_ascii_digit())).then(|| word.to_string())
}

/// Words that are keywords in the languages ragls indexes: code actions are not offered
/// on them ("Ask about import" asks nothing useful).
pub fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as",
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "def",
        "default",
        "del",
        "do",
        "elif",
        "else",
        "enum",
        "except",
        "export",
        "extends",
        "false",
        "finally",
        "fn",
        "for",
        "from",
        "func",
        "function",
        "go",
        "if",
        "impl",
        "import",
        "in",
        "interface",
        "is",
        "lambda",
        "let",
        "loop",
        "match",
        "mod",
        "mut",
        "new",
        "nil",
        "None",
        "not",
        "null",
        "or",
        "and",
        "package",
        "pass",
        "pub",
        "raise",
        "return",
        "self",
        "Self",
        "static",
        "struct",
        "super",
        "switch",
        "this",
        "throw",
        "trait",
        "true",
        "True",
        "False",
        "try",
        "type",
        "typeof",
        "use",
        "var",
        "void",
        "where",
        "while",
        "with",
        "yield",
    ];
    KEYWORDS.contains(&word)
}

/// The text inside an LSP range.
pub fn text_in(text: &str, range: Range) -> &str {
    let start = offset_at(text, range.start);
    let end = offset_at(text, range.end).max(start);
    &text[start..end]
}

/// The 0-based line's text (without its line ending).
pub fn line_text(text: &str, line: u32) -> &str {
    text.split('\n')
        .nth(line as usize)
        .unwrap_or("")
        .trim_end_matches('\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(line: u32, character: u32) -> Position {
        Position { line, character }
    }

    fn edit(range: Option<Range>, text: &str) -> TextDocumentContentChangeEvent {
        TextDocumentContentChangeEvent {
            range,
            range_length: None,
            text: text.into(),
        }
    }

    #[test]
    fn incremental_edits_apply_at_utf16_positions() {
        let mut d = Document::new("let é = 1;\nfn main() {}\n".into(), 1);
        // `é` is one UTF-16 unit: column 5 is right after it.
        assert!(d.change(
            2,
            vec![edit(
                Some(Range {
                    start: pos(0, 5),
                    end: pos(0, 5)
                }),
                "x"
            )]
        ));
        assert_eq!(d.text, "let éx = 1;\nfn main() {}\n");
        assert!(d.change(
            3,
            vec![edit(
                Some(Range {
                    start: pos(1, 3),
                    end: pos(1, 7)
                }),
                "start"
            )]
        ));
        assert_eq!(d.text, "let éx = 1;\nfn start() {}\n");
    }

    #[test]
    fn changes_apply_in_version_order_whatever_order_they_arrive_in() {
        let mut d = Document::new("abc".into(), 1);
        let at_end = |col| {
            Some(Range {
                start: pos(0, col),
                end: pos(0, col),
            })
        };
        assert!(
            !d.change(3, vec![edit(at_end(4), "e")]),
            "version 3 waits for 2"
        );
        assert_eq!(d.text, "abc");
        assert!(d.change(2, vec![edit(at_end(3), "d")]));
        assert_eq!((d.text.as_str(), d.version), ("abcde", 3));
        assert!(
            !d.change(2, vec![edit(at_end(0), "stale")]),
            "stale versions are ignored"
        );
    }

    #[test]
    fn a_full_text_change_needs_no_predecessor() {
        let mut d = Document::new("old".into(), 1);
        assert!(d.change(5, vec![edit(None, "new")]));
        assert_eq!((d.text.as_str(), d.version), ("new", 5));
    }

    #[test]
    fn words_and_ranges() {
        let text = "fn parse_request(x: u8) {}\n";
        assert_eq!(word_at(text, pos(0, 5)).as_deref(), Some("parse_request"));
        assert_eq!(
            word_at(text, pos(0, 16)).as_deref(),
            Some("parse_request"),
            "just after the word"
        );
        assert_eq!(word_at(text, pos(0, 2)).as_deref(), Some("fn"));
        assert_eq!(word_at("a + 1", pos(0, 4)), None);
        assert_eq!(
            text_in(
                text,
                Range {
                    start: pos(0, 3),
                    end: pos(0, 16)
                }
            ),
            "parse_request"
        );
        let r = line_range(3, 5, "    }");
        assert_eq!((r.start, r.end), (pos(2, 0), pos(4, 5)));
    }
}
