//! The tree-sitter strategy: parses a file and walks its scopes, turning items
//! (as recognised by `languages.rs`) into pieces, splitting oversized
//! containers into their members and oversized items at child-node
//! boundaries, and covering everything between items with leftover pieces.
//!
//! It is not for deciding what an item is called (that is `languages.rs`) nor
//! for line/byte arithmetic (that is `text.rs`). It never loses text: every
//! scope is partitioned into contiguous pieces whatever the tree looks like,
//! so ERROR nodes, truncated trees and NUL bytes only degrade the cut points.

use std::cell::RefCell;
use std::ops::Range;

use tree_sitter::{Node, Parser};

use crate::chunk::languages::{self, Item};
use crate::chunk::text::{merge_small, Entry, MergePolicy, Piece, Source};
use crate::chunk::{ChunkKind, Language};

/// Containers nested deeper than this are cut like plain items.
const MAX_SCOPE_DEPTH: usize = 24;
/// Node nesting followed when cutting an oversized item; below that, lines.
const MAX_CUT_DEPTH: usize = 96;
/// `#ifdef` nesting followed when collecting a scope's members.
const MAX_TRANSPARENT_DEPTH: usize = 16;

thread_local! {
    /// One parser per language per thread, created on first use.
    static PARSERS: RefCell<Vec<(Language, Parser)>> = const { RefCell::new(Vec::new()) };
}

fn parse(language: Language, text: &str) -> Option<tree_sitter::Tree> {
    PARSERS.with(|cell| {
        let mut parsers = cell.borrow_mut();
        let index = match parsers.iter().position(|(l, _)| *l == language) {
            Some(i) => i,
            None => {
                let mut parser = Parser::new();
                parser.set_language(&languages::grammar(language)?).ok()?;
                parsers.push((language, parser));
                parsers.len() - 1
            }
        };
        let parser = &mut parsers[index].1;
        let tree = parser.parse(text, None);
        if tree.is_none() {
            parser.reset();
        }
        tree
    })
}

/// Chunks a code file with its grammar; `None` when it cannot be parsed at all.
pub(crate) fn chunk_code(src: &Source, language: Language) -> Option<Vec<Piece>> {
    let tree = parse(language, src.text)?;
    let walker = Walker { src, language };
    let root = tree.root_node();
    let members = walker.members(root);
    let top = Scope {
        path: Vec::new(),
        kind: ChunkKind::Block,
        name: String::new(),
        holds_methods: false,
    };
    Some(walker.chunk_scope(&members, 0..src.len(), &top, 0))
}

/// Where members are being chunked: the enclosing symbol path and the identity
/// given to leftovers (the container's own header, fields, closing lines).
struct Scope {
    path: Vec<String>,
    kind: ChunkKind,
    name: String,
    holds_methods: bool,
}

struct Walker<'s> {
    src: &'s Source<'s>,
    language: Language,
}

impl<'s> Walker<'s> {
    /// A node's children, with transparent wrappers (`#ifdef`) spliced in.
    fn members<'t>(&self, parent: Node<'t>) -> Vec<Node<'t>> {
        let mut out = Vec::with_capacity(parent.child_count() as usize);
        self.push_members(parent, 0, &mut out);
        out
    }

    fn push_members<'t>(&self, parent: Node<'t>, depth: usize, out: &mut Vec<Node<'t>>) {
        let mut cursor = parent.walk();
        for child in parent.children(&mut cursor) {
            // ERROR nodes are spliced in too, so that intact items inside them are found.
            let transparent = child.is_error() || languages::is_transparent(self.language, child);
            if depth < MAX_TRANSPARENT_DEPTH && transparent {
                self.push_members(child, depth + 1, out);
            } else {
                out.push(child);
            }
        }
    }

    fn start_line(&self, node: Node) -> usize {
        self.src.line_of(node.start_byte())
    }

    fn end_line(&self, node: Node) -> usize {
        self.src.last_line_of(node.start_byte(), node.end_byte())
    }

    /// Partitions `region` into pieces: items found among `members`, and
    /// leftovers (identity of `scope`) for everything between them.
    fn chunk_scope(
        &self,
        members: &[Node],
        region: Range<usize>,
        scope: &Scope,
        depth: usize,
    ) -> Vec<Piece> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut cursor = region.start;
        // Index of the first member not yet consumed by an item.
        let mut gap_first = 0;
        let mut i = 0;
        while i < members.len() {
            let node = members[i];
            if node.start_byte() >= region.end {
                break;
            }
            let Some(item) =
                languages::classify(self.language, node, self.src.text, scope.holds_methods)
            else {
                i += 1;
                continue;
            };
            // Comments and attributes directly above (no blank line between)
            // belong to the item, unless one trails the member before it.
            let mut first = i;
            while first > gap_first {
                let prev = members[first - 1];
                let adjacent = self.end_line(prev) + 1 >= self.start_line(members[first]);
                let trails_earlier = first >= 2
                    && !languages::is_attachable(members[first - 2])
                    && self.end_line(members[first - 2]) == self.start_line(prev);
                if !languages::is_attachable(prev) || !adjacent || trails_earlier {
                    break;
                }
                first -= 1;
            }
            // A comment or `;` on the item's last line belongs to it too.
            let mut last = i;
            let item_end_line = self.end_line(node);
            while last + 1 < members.len()
                && languages::is_trailer(members[last + 1])
                && self.start_line(members[last + 1]) == item_end_line
            {
                last += 1;
            }
            let start = self
                .src
                .snap(members[first].start_byte(), cursor)
                .max(cursor);
            let end = members[last].end_byte().min(region.end).max(start);
            if start > cursor {
                self.leftovers(
                    cursor..start,
                    &members[gap_first..first],
                    scope,
                    &mut entries,
                );
            }
            if end > start {
                self.item_pieces(&item, node, start..end, scope, depth, &mut entries);
            }
            cursor = end.max(cursor);
            gap_first = last + 1;
            i = last + 1;
        }
        if cursor < region.end {
            let tail = cursor..region.end;
            if !self.attach_closer(tail.clone(), &mut entries) {
                let rest = &members[gap_first.min(members.len())..];
                self.leftovers(tail, rest, scope, &mut entries);
            }
        }
        if depth > 0 {
            self.attach_opener(scope, &mut entries);
        }
        merge_small(self.src, entries, MergePolicy::AllSmall)
    }

    /// Folds a split container's small header (`impl Store {`, `class Session:`) into
    /// its first member, so that no chunk is only a header: alone it says nothing a
    /// reader can use, and it would crowd out real code in search results.
    fn attach_opener(&self, scope: &Scope, entries: &mut Vec<Entry>) {
        let [first, second, ..] = entries.as_slice() else {
            return;
        };
        let is_leftover = first.piece.path.len() == scope.path.len();
        let is_item = second.piece.path.len() > scope.path.len();
        let small = first.piece.end - first.piece.start < self.src.min_bytes;
        if is_leftover && is_item && small && self.src.fits(first.piece.start..second.piece.end) {
            let start = first.piece.start;
            entries.remove(0);
            entries[0].piece.start = start;
        }
    }

    /// Folds a tail made only of closing punctuation (`}`, `};`) into the last
    /// piece so that a split container does not end with a one-brace chunk.
    fn attach_closer(&self, tail: Range<usize>, entries: &mut [Entry]) -> bool {
        const MAX_CLOSER: usize = 8;
        let Some(trimmed) = self.src.trim(tail.clone()) else {
            // Whitespace only: give it to the previous piece (trimmed later).
            if let Some(last) = entries.last_mut() {
                last.piece.end = tail.end;
                return true;
            }
            return false;
        };
        let text = self.src.text.get(trimmed).unwrap_or("");
        let closer = text.len() <= MAX_CLOSER
            && text
                .bytes()
                .all(|b| b.is_ascii_punctuation() || b.is_ascii_whitespace());
        match entries.last_mut() {
            Some(last) if closer && self.src.fits(last.piece.start..tail.end) => {
                last.piece.end = tail.end;
                true
            }
            _ => false,
        }
    }

    /// Pieces for the text between items, cut at the given members' boundaries.
    fn leftovers(
        &self,
        range: Range<usize>,
        nodes: &[Node],
        scope: &Scope,
        entries: &mut Vec<Entry>,
    ) {
        for span in self.cut_region(range, nodes) {
            entries.push(Entry {
                piece: Piece {
                    start: span.start,
                    end: span.end,
                    kind: scope.kind,
                    path: scope.path.clone(),
                    name: scope.name.clone(),
                },
                mergeable: true,
            });
        }
    }

    fn item_pieces(
        &self,
        item: &Item,
        node: Node,
        range: Range<usize>,
        scope: &Scope,
        depth: usize,
        entries: &mut Vec<Entry>,
    ) {
        let mut path = scope.path.clone();
        path.push(item.segment.clone());
        if self.src.fits(range.clone()) {
            entries.push(Entry {
                piece: Piece {
                    start: range.start,
                    end: range.end,
                    kind: item.kind,
                    path,
                    name: item.name.clone(),
                },
                mergeable: true,
            });
            return;
        }
        if let (Some(body), true) = (item.body, depth < MAX_SCOPE_DEPTH) {
            let members = self.members(body);
            let inner = Scope {
                path,
                kind: item.kind,
                name: item.name.clone(),
                holds_methods: item.holds_methods,
            };
            for piece in self.chunk_scope(&members, range, &inner, depth + 1) {
                entries.push(Entry {
                    piece,
                    mergeable: false,
                });
            }
            return;
        }
        let children = self.members(node);
        for span in self.cut_region(range, &children) {
            entries.push(Entry {
                piece: Piece {
                    start: span.start,
                    end: span.end,
                    kind: item.kind,
                    path: path.clone(),
                    name: item.name.clone(),
                },
                mergeable: false,
            });
        }
    }

    /// Cuts `range` into budget-sized spans at the boundaries of `nodes` and,
    /// where a node is still too big, of its descendants; packs the result.
    fn cut_region(&self, range: Range<usize>, nodes: &[Node]) -> Vec<Range<usize>> {
        if self.src.fits(range.clone()) {
            return vec![range];
        }
        let mut fine = Vec::new();
        self.refine(range, nodes, 0, &mut fine);
        self.src.pack(&fine)
    }

    fn refine(
        &self,
        range: Range<usize>,
        nodes: &[Node],
        depth: usize,
        fine: &mut Vec<Range<usize>>,
    ) {
        if self.src.fits(range.clone()) {
            fine.push(range);
            return;
        }
        // Cuts fall on line starts only, so nodes cannot help within one line.
        let one_line =
            self.src.line_of(range.start) == self.src.last_line_of(range.start, range.end);
        if depth >= MAX_CUT_DEPTH || nodes.is_empty() || one_line {
            self.src.split_lines(range, fine);
            return;
        }
        // Atoms: (start, owners) where owners are the nodes starting inside.
        // Only line starts are cut points, so that a piece never begins in the
        // middle of a line; nodes starting mid-line join the atom before them
        // and are looked into only if that atom is still too big.
        let mut atoms: Vec<(usize, Range<usize>)> = vec![(range.start, 0..0)];
        for (index, node) in nodes.iter().enumerate() {
            let node_start = node.start_byte();
            if node_start < range.start || node_start >= range.end {
                continue;
            }
            let point = self.src.snap(node_start, range.start);
            let Some(current) = atoms.last_mut() else {
                continue;
            };
            if point > current.0 && point == self.src.line_start(point) {
                atoms.push((point, index..index + 1));
            } else if current.1.is_empty() {
                current.1 = index..index + 1;
            } else {
                current.1.end = index + 1;
            }
        }
        for (k, (start, owners)) in atoms.iter().enumerate() {
            let end = atoms.get(k + 1).map_or(range.end, |next| next.0);
            if end <= *start {
                continue;
            }
            if self.src.fits(*start..end) {
                fine.push(*start..end);
                continue;
            }
            let mut children = Vec::new();
            for node in &nodes[owners.clone()] {
                let mut cursor = node.walk();
                children.extend(node.children(&mut cursor));
            }
            if children.is_empty() {
                self.src.split_lines(*start..end, fine);
            } else {
                self.refine(*start..end, &children, depth + 1, fine);
            }
        }
    }
}
