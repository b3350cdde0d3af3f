//! Markdown strategy: a hand-written line scanner that cuts a document into
//! sections at ATX headings (`#` to `######`), ignoring `#` lines inside
//! fenced code blocks (``` and ~~~). A section's symbol is its heading trail
//! ("Install > From source"); oversized sections are cut at blank lines outside
//! fences, and a section under `min_bytes` joins the section after it.
//!
//! It is not a markdown parser: setext headings (underlined with `===`),
//! HTML blocks and indented code blocks are treated as ordinary text.

use crate::chunk::text::{merge_small, Entry, MergePolicy, Piece, Source};
use crate::chunk::ChunkKind;

/// A section: where it starts and its heading trail (empty before the first heading).
struct Section {
    start: usize,
    path: Vec<String>,
    name: String,
}

/// An open fenced code block: the fence character and its length.
struct Fence {
    marker: u8,
    len: usize,
}

pub(crate) fn chunk_markdown(src: &Source) -> Vec<Piece> {
    let text = src.text;
    let mut sections = vec![Section {
        start: 0,
        path: Vec::new(),
        name: String::new(),
    }];
    let mut trail: Vec<(usize, String)> = Vec::new();
    // Lines inside fences (including the fence lines), by 0-based index.
    let mut fenced_lines: Vec<bool> = Vec::new();
    let mut fence: Option<Fence> = None;
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        match &fence {
            Some(open) => {
                fenced_lines.push(true);
                if closes(body, open) {
                    fence = None;
                }
            }
            None => {
                if let Some(opened) = opens(body) {
                    fenced_lines.push(true);
                    fence = Some(opened);
                } else {
                    fenced_lines.push(false);
                    if let Some((level, title)) = heading(body) {
                        while trail.last().is_some_and(|(l, _)| *l >= level) {
                            trail.pop();
                        }
                        trail.push((level, title.clone()));
                        sections.push(Section {
                            start: line_start,
                            path: trail
                                .iter()
                                .map(|(_, t)| t.clone())
                                .filter(|t| !t.is_empty())
                                .collect(),
                            name: title,
                        });
                    }
                }
            }
        }
        line_start += line.len();
    }
    let breaks = src.paragraph_starts(|line| !fenced_lines.get(line).copied().unwrap_or(false));

    let mut entries = Vec::new();
    for (k, section) in sections.iter().enumerate() {
        let end = sections.get(k + 1).map_or(src.len(), |next| next.start);
        if end <= section.start {
            continue;
        }
        let spans = src.cut_at(section.start..end, &breaks);
        let whole = spans.len() == 1;
        for span in spans {
            entries.push(Entry {
                piece: Piece {
                    start: span.start,
                    end: span.end,
                    kind: ChunkKind::Section,
                    path: section.path.clone(),
                    name: section.name.clone(),
                },
                mergeable: whole,
            });
        }
    }
    merge_small(src, entries, MergePolicy::SmallAbsorbsNext)
}

/// Up to three spaces of indentation, as CommonMark allows before block markers.
fn unindent(line: &str) -> Option<&str> {
    let rest = line.trim_start_matches(' ');
    (line.len() - rest.len() <= 3).then_some(rest)
}

fn opens(line: &str) -> Option<Fence> {
    let rest = unindent(line)?;
    let marker = *rest.as_bytes().first()?;
    if marker != b'`' && marker != b'~' {
        return None;
    }
    let len = rest.bytes().take_while(|&b| b == marker).count();
    if len < 3 || (marker == b'`' && rest[len..].contains('`')) {
        return None;
    }
    Some(Fence { marker, len })
}

fn closes(line: &str, fence: &Fence) -> bool {
    let Some(rest) = unindent(line) else {
        return false;
    };
    let len = rest.bytes().take_while(|&b| b == fence.marker).count();
    len >= fence.len && rest[len..].trim().is_empty()
}

/// `## Title ##` -> (2, "Title").
fn heading(line: &str) -> Option<(usize, String)> {
    let rest = unindent(line)?;
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let after = &rest[level..];
    if !after.is_empty() && !after.starts_with([' ', '\t']) {
        return None;
    }
    let mut title = after.trim();
    // An optional closing sequence of #s, preceded by a space.
    let stripped = title.trim_end_matches('#');
    if stripped.is_empty() || stripped.ends_with([' ', '\t']) {
        title = stripped.trim_end();
    }
    Some((
        level,
        title.split_whitespace().collect::<Vec<_>>().join(" "),
    ))
}
