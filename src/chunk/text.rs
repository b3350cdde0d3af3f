//! Byte-range arithmetic shared by every chunking strategy: the line index,
//! trimming, budget checks, cutting oversized spans by lines (and overlong lines
//! by characters), greedy packing, the merging of small neighbours, and the
//! plain-text fallback that splits at blank lines.
//!
//! It is not for recognising syntax: the tree-sitter driven strategy lives in
//! `syntax.rs`/`languages.rs` and the markdown scanner in `markdown.rs`; they
//! hand their cut points to the helpers here.

use std::ops::Range;

use crate::chunk::{ChunkBudget, ChunkKind};

/// The text being chunked plus a line index and the (sanitised) budget.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    line_starts: Vec<usize>,
    pub max_bytes: usize,
    pub min_bytes: usize,
    pub max_lines: usize,
}

/// A chunk before it is cut out of the text: a raw byte range (it may still
/// carry leading/trailing whitespace) and the identity it will be given.
#[derive(Clone, Debug)]
pub(crate) struct Piece {
    pub start: usize,
    pub end: usize,
    pub kind: ChunkKind,
    /// Symbol path segments, outermost first.
    pub path: Vec<String>,
    pub name: String,
}

/// A piece plus whether it may be merged with small neighbours.
pub(crate) struct Entry {
    pub piece: Piece,
    pub mergeable: bool,
}

/// How small neighbours are merged.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergePolicy {
    /// Consecutive pieces merge only while every one of them is under `min_bytes`.
    AllSmall,
    /// As `AllSmall`, and additionally a small piece absorbs the piece after it
    /// whatever its size (markdown: a heading-only section joins its first subsection).
    SmallAbsorbsNext,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str, budget: &ChunkBudget) -> Source<'a> {
        let mut line_starts = Vec::with_capacity(text.len() / 32 + 1);
        line_starts.push(0);
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Source {
            text,
            line_starts,
            // Tiny budgets would make no progress possible; clamp them.
            max_bytes: budget.max_bytes.max(16),
            min_bytes: budget.min_bytes,
            max_lines: budget.max_lines.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// 0-based line holding `byte`.
    pub fn line_of(&self, byte: usize) -> usize {
        self.line_starts
            .partition_point(|&s| s <= byte)
            .saturating_sub(1)
    }

    /// 0-based line of the last byte of a non-empty range ending at `end`.
    pub fn last_line_of(&self, start: usize, end: usize) -> usize {
        self.line_of(end.saturating_sub(1).max(start))
    }

    /// Byte offset where the line holding `byte` starts.
    pub fn line_start(&self, byte: usize) -> usize {
        self.line_starts[self.line_of(byte)]
    }

    fn is_space(&self, i: usize) -> bool {
        self.text.as_bytes()[i].is_ascii_whitespace()
    }

    /// Moves `pos` back to the start of its line when only whitespace precedes
    /// it there and that line start is not before `floor`.
    pub fn snap(&self, pos: usize, floor: usize) -> usize {
        let pos = pos.min(self.len());
        let ls = self.line_start(pos);
        // Scanned backwards so that a node deep into a long line costs little.
        if ls >= floor && (ls..pos).rev().all(|i| self.is_space(i)) {
            ls
        } else {
            pos
        }
    }

    /// The range without leading blank lines and trailing whitespace. The start
    /// keeps the indentation of its first line when the range starts at or
    /// before that line's start. `None` when the range is whitespace only.
    pub fn trim(&self, range: Range<usize>) -> Option<Range<usize>> {
        let end = range.end.min(self.len());
        let mut first = range.start;
        while first < end && self.is_space(first) {
            first += 1;
        }
        if first >= end {
            return None;
        }
        let ls = self.line_start(first);
        let start = if ls >= range.start { ls } else { first };
        let mut last = end;
        while last > first && self.is_space(last - 1) {
            last -= 1;
        }
        Some(start..last)
    }

    /// Whether the range, once trimmed, is within max_bytes and max_lines.
    pub fn fits(&self, range: Range<usize>) -> bool {
        match self.trim(range) {
            None => true,
            Some(r) => {
                r.end - r.start <= self.max_bytes
                    && self.last_line_of(r.start, r.end) - self.line_of(r.start) < self.max_lines
            }
        }
    }

    /// Trimmed byte length (0 for whitespace only).
    pub fn trimmed_len(&self, range: Range<usize>) -> usize {
        self.trim(range).map_or(0, |r| r.end - r.start)
    }

    /// Cuts `range` into spans that each fit the budget, at line boundaries;
    /// a line longer than max_bytes is cut at character boundaries, preferably
    /// after whitespace. Appends the unpacked line spans to `out`.
    pub fn split_lines(&self, range: Range<usize>, out: &mut Vec<Range<usize>>) {
        let mut pos = range.start;
        while pos < range.end {
            let line = self.line_of(pos);
            let next = self
                .line_starts
                .get(line + 1)
                .copied()
                .unwrap_or(self.len())
                .min(range.end);
            if next - pos <= self.max_bytes {
                out.push(pos..next);
            } else {
                self.split_long_line(pos..next, out);
            }
            pos = next;
        }
    }

    fn split_long_line(&self, range: Range<usize>, out: &mut Vec<Range<usize>>) {
        let bytes = self.text.as_bytes();
        let mut pos = range.start;
        while pos < range.end {
            if range.end - pos <= self.max_bytes {
                out.push(pos..range.end);
                break;
            }
            let mut cut = pos + self.max_bytes;
            while cut > pos && !self.text.is_char_boundary(cut) {
                cut -= 1;
            }
            if cut == pos {
                // Budget smaller than one character: take the character whole.
                cut = pos + 1;
                while cut < range.end && !self.text.is_char_boundary(cut) {
                    cut += 1;
                }
            } else {
                let floor = pos + self.max_bytes / 2;
                if let Some(ws) = (floor..cut)
                    .rev()
                    .find(|&i| bytes[i] == b' ' || bytes[i] == b'\t')
                {
                    cut = ws + 1;
                }
            }
            out.push(pos..cut);
            pos = cut;
        }
    }

    /// Greedily joins consecutive contiguous spans while the join fits.
    pub fn pack(&self, spans: &[Range<usize>]) -> Vec<Range<usize>> {
        let mut packed: Vec<Range<usize>> = Vec::new();
        for span in spans {
            match packed.last_mut() {
                Some(cur) if self.fits(cur.start..span.end) => cur.end = span.end,
                _ => packed.push(span.clone()),
            }
        }
        packed
    }

    /// Cuts `range` into budget-sized spans, preferring the given cut points
    /// (ascending byte offsets inside the range); pieces between cut points that
    /// are still too big are cut by lines.
    pub fn cut_at(&self, range: Range<usize>, points: &[usize]) -> Vec<Range<usize>> {
        if self.fits(range.clone()) {
            return vec![range];
        }
        let mut fine = Vec::new();
        let mut start = range.start;
        let bounds = points
            .iter()
            .copied()
            .filter(|&p| p > range.start && p < range.end)
            .chain(std::iter::once(range.end));
        for end in bounds {
            if end <= start {
                continue;
            }
            if self.fits(start..end) {
                fine.push(start..end);
            } else {
                self.split_lines(start..end, &mut fine);
            }
            start = end;
        }
        self.pack(&fine)
    }

    /// Start offsets of paragraphs: the first non-blank line after one or more
    /// blank lines, for every line accepted by `breakable` (given the line's
    /// 0-based index).
    pub fn paragraph_starts(&self, mut breakable: impl FnMut(usize) -> bool) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut after_blank = false;
        for (line, &ls) in self.line_starts.iter().enumerate() {
            let le = self
                .line_starts
                .get(line + 1)
                .copied()
                .unwrap_or(self.len());
            let blank = (ls..le).all(|i| self.is_space(i));
            if blank {
                after_blank = after_blank || breakable(line);
            } else {
                if after_blank && line > 0 {
                    starts.push(ls);
                }
                after_blank = false;
            }
        }
        starts
    }
}

/// Merges consecutive small mergeable pieces (see [`MergePolicy`]). A merged
/// piece takes the first piece's kind when all share it (else `Block`, except
/// that sections stay sections), the longest common symbol path of its parts,
/// and the first non-empty name among its parts.
pub(crate) fn merge_small(src: &Source, entries: Vec<Entry>, policy: MergePolicy) -> Vec<Piece> {
    struct Group {
        piece: Piece,
        mergeable: bool,
        all_small: bool,
        last_small: bool,
    }
    let mut groups: Vec<Group> = Vec::with_capacity(entries.len());
    for entry in entries {
        let len = src.trimmed_len(entry.piece.start..entry.piece.end);
        if len == 0 {
            // Blank-only stretches carry nothing and must not sway a merge.
            continue;
        }
        let small = entry.mergeable && len < src.min_bytes;
        if let Some(group) = groups.last_mut() {
            let wanted = match policy {
                MergePolicy::AllSmall => group.all_small && small,
                MergePolicy::SmallAbsorbsNext => (group.all_small && small) || group.last_small,
            };
            if wanted
                && group.mergeable
                && entry.mergeable
                && src.fits(group.piece.start..entry.piece.end)
            {
                absorb(&mut group.piece, entry.piece);
                group.all_small &= small;
                group.last_small = small;
                continue;
            }
        }
        groups.push(Group {
            piece: entry.piece,
            mergeable: entry.mergeable,
            all_small: small,
            last_small: small,
        });
    }
    groups.into_iter().map(|g| g.piece).collect()
}

fn absorb(into: &mut Piece, next: Piece) {
    into.end = next.end;
    if into.kind != next.kind {
        into.kind = if into.kind == ChunkKind::Section {
            ChunkKind::Section
        } else {
            ChunkKind::Block
        };
    }
    let common = into
        .path
        .iter()
        .zip(next.path.iter())
        .take_while(|(a, b)| a == b)
        .count();
    into.path.truncate(common);
    if into.name.is_empty() {
        into.name = next.name;
    }
}

/// Plain-text strategy: paragraphs (separated by blank lines) packed into
/// budget-sized pieces of the given kind, with an empty symbol.
pub(crate) fn chunk_plain(src: &Source, kind: ChunkKind) -> Vec<Piece> {
    let points = src.paragraph_starts(|_| true);
    src.cut_at(0..src.len(), &points)
        .into_iter()
        .map(|r| Piece {
            start: r.start,
            end: r.end,
            kind,
            path: Vec::new(),
            name: String::new(),
        })
        .collect()
}
