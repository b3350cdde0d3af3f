//! Citation markers in a generated answer: find the `[n]`s, check them, renumber them.
//!
//! The model cites the prompt's numbered sources with markers like `[2]`, `[1, 3]`, `[2][4]`
//! or `[1-3]`. [`parse`] maps them to source indexes and rewrites the answer so that its
//! markers count up from `[1]` in order of first appearance and refer only to sources that
//! exist, which is what `rag/ask` promises (`answer`'s `[n]` refers to `citations[n-1]`).
//! Square brackets that are not citations are left alone: code (inline spans and fenced
//! blocks), markdown links and images, reference definitions, task boxes, escaped brackets.
//!
//! Pure text in, text out. It does not build `Citation` objects, read the sources, or check
//! that a claim is supported by the source it cites.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq)]
pub struct CitedAnswer {
    /// The answer with markers renumbered so that the k-th distinct cited source (in order of
    /// first appearance) is `[k]`. Markers for sources that don't exist (0, or > n_sources) are
    /// removed cleanly: no empty brackets, no space left before punctuation, no double spaces.
    /// Grouped forms are normalised to adjacent single markers in ascending order:
    /// `[3, 1]`, `[1,3]`, `[3][1]` and `[1-3]` all become `[1][2]`-style runs like `[1][2][3]`,
    /// with a source cited twice in one group written once.
    pub text: String,
    /// For each new number k (1-based, index k-1): the 0-based index of the source it refers to.
    pub cited: Vec<usize>,
}

/// Recognises `[n]`, `[1, 3]`, `[1,3]`, `[2][4]`, `[1-3]` (a range, also with an en dash:
/// expands to 1, 2, 3); spaces inside the brackets are allowed. Not citations: anything in
/// inline code or fenced code blocks (`a[1]` inside backticks or ``` fences), markdown links
/// `[text](url)` and their URLs, `[n](url)`, images `![..]`, reference links `[text][1]`,
/// reference definitions (`[1]: url` at the start of a line), task boxes `[ ]`/`[x]`, and
/// escaped `\[1]`. A `[1]:` inside a sentence ("the policy [1]: ...") is a citation.
pub fn parse(answer: &str, n_sources: usize) -> CitedAnswer {
    parse_numbering(answer, n_sources, false)
}

/// Like [`parse`], but a valid marker keeps its number: `[n]` stays `[n]` (source n), so the
/// markers a client showed while the answer streamed mean the same in the final answer.
/// `cited` lists the cited source indexes in order of first appearance, as in [`parse`].
pub fn parse_keeping_numbers(answer: &str, n_sources: usize) -> CitedAnswer {
    parse_numbering(answer, n_sources, true)
}

fn parse_numbering(answer: &str, n_sources: usize, keep_numbers: bool) -> CitedAnswer {
    let bytes = answer.as_bytes();
    let code = code_ranges(answer);
    let mut code = code.iter().peekable();
    let mut text = String::with_capacity(answer.len());
    let mut new_number: Vec<Option<usize>> = vec![None; n_sources];
    let mut cited = Vec::new();
    // `answer[copied..i]` is literal text not yet copied to `text`.
    let mut copied = 0;
    let mut i = 0;
    // Where the last citation marker ended, to tell `[2][4]` from a reference link `[x][4]`.
    let mut last_marker_end = None;

    while i < bytes.len() {
        while code.peek().is_some_and(|r| r.end <= i) {
            code.next();
        }
        if let Some(r) = code.peek() {
            if r.start <= i {
                i = r.end;
                continue;
            }
        }
        match bytes[i] {
            b']' if bytes.get(i + 1) == Some(&b'(') => {
                // A link's destination: skip it whole (it may contain brackets).
                i = link_destination_end(answer, i + 1);
                continue;
            }
            b'[' => {}
            _ => {
                i += 1;
                continue;
            }
        }
        let escaped_or_image = i > 0 && matches!(bytes[i - 1], b'\\' | b'!');
        let reference_link = i > 0 && bytes[i - 1] == b']' && last_marker_end != Some(i);
        let group = if escaped_or_image || reference_link {
            None
        } else {
            marker_group(answer, i, n_sources)
        };
        let Some((end, numbers)) = group else {
            i += 1;
            continue;
        };
        last_marker_end = Some(end);

        let mut group_numbers: Vec<usize> = Vec::new();
        for n in numbers {
            let Some(index) = n.checked_sub(1).filter(|&index| index < n_sources) else {
                continue;
            };
            let k = *new_number[index].get_or_insert_with(|| {
                cited.push(index);
                cited.len()
            });
            group_numbers.push(if keep_numbers { index + 1 } else { k });
        }
        group_numbers.sort_unstable();
        group_numbers.dedup();

        text.push_str(&answer[copied..i]);
        i = end;
        if group_numbers.is_empty() {
            i = remove_cleanly(&mut text, answer, end);
        } else {
            for k in group_numbers {
                text.push_str(&format!("[{k}]"));
            }
        }
        copied = i;
    }
    text.push_str(&answer[copied..]);
    CitedAnswer { text, cited }
}

/// After dropping a marker that ended at `end`, tidies the whitespace around the gap and
/// returns where copying resumes: `X [7].` -> `X.`, `a [7] b` -> `a b`, `[7] Foo` -> `Foo`.
fn remove_cleanly(text: &mut String, answer: &str, end: usize) -> usize {
    let kept = text.trim_end_matches([' ', '\t']).len();
    let at_line_start = kept == 0 || text[..kept].ends_with('\n');
    let rest = &answer[end..];
    if at_line_start {
        // Keep the indentation, drop the space that separated the marker from the text.
        return end + (rest.len() - rest.trim_start_matches([' ', '\t']).len());
    }
    let next = rest.chars().next();
    if next.is_none_or(|c| c.is_whitespace() || ".,;:!?)]".contains(c)) {
        text.truncate(kept);
    }
    end
}

/// The run of adjacent citation markers starting at `start` (a `[`): where it ends and the
/// source numbers it names, in order. `None` when `start` is not a citation marker.
fn marker_group(answer: &str, start: usize, n_sources: usize) -> Option<(usize, Vec<usize>)> {
    let (mut end, mut numbers) = marker(answer, start, n_sources)?;
    while answer.as_bytes().get(end) == Some(&b'[') {
        let Some((next_end, more)) = marker(answer, end, n_sources) else {
            break;
        };
        numbers.extend(more);
        end = next_end;
    }
    Some((end, numbers))
}

/// One marker `[...]` at `start`: where it ends and its numbers, ranges expanded (only up to
/// `n_sources`: numbers beyond it are invalid anyway, and `[1-99999999]` must stay cheap).
fn marker(answer: &str, start: usize, n_sources: usize) -> Option<(usize, Vec<usize>)> {
    const MAX_INNER: usize = 64;
    let rest = &answer[start + 1..];
    let close = rest.find(']').filter(|&c| c <= MAX_INNER)?;
    let inner = &rest[..close];
    let end = start + 1 + close + 1;
    let after = answer.as_bytes().get(end);
    if after == Some(&b'(') {
        return None; // `[1](url)`: a link
    }
    if after == Some(&b':')
        && answer[..start]
            .rsplit('\n')
            .next()
            .is_some_and(|l| l.trim().is_empty())
    {
        return None; // `[1]: url` at the start of a line: a reference definition
    }
    let mut numbers = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        match item.split_once(['-', '–']) {
            Some((from, to)) => {
                let (from, to) = (number(from.trim())?, number(to.trim())?);
                // A backwards range, or one wholly past the sources, names nothing.
                numbers.extend(from..=to.min(n_sources));
            }
            None => numbers.push(number(item)?),
        }
    }
    Some((end, numbers))
}

/// A citation number: ASCII digits only (too large to be a source reads as `usize::MAX`).
fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(usize::MAX))
}

/// The end of a link destination `(...)` opening at `open`, balancing nested parentheses on
/// one line; just past `open` when it never closes.
fn link_destination_end(answer: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (offset, c) in answer[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return open + offset + 1;
                }
            }
            '\n' => break,
            _ => {}
        }
    }
    open + 1
}

/// Byte ranges of code: fenced blocks (fence lines included; an unclosed fence runs to the
/// end) and inline code spans, sorted and disjoint.
fn code_ranges(answer: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut prose_start = 0;
    let mut fence: Option<(u8, usize, usize)> = None; // (char, length, block start)
    let mut offset = 0;
    for line in answer.split_inclusive('\n') {
        let line_start = offset;
        offset += line.len();
        let t = line.trim_start_matches([' ', '\t']);
        match fence {
            None => {
                if let Some((c, n)) = fence_open(t) {
                    inline_code_spans(answer, prose_start..line_start, &mut ranges);
                    fence = Some((c, n, line_start));
                }
            }
            Some((c, n, block_start)) => {
                let t = t.trim_end();
                if t.len() >= n && t.bytes().all(|b| b == c) {
                    ranges.push(block_start..offset);
                    fence = None;
                    prose_start = offset;
                }
            }
        }
    }
    match fence {
        Some((_, _, block_start)) => ranges.push(block_start..answer.len()),
        None => inline_code_spans(answer, prose_start..answer.len(), &mut ranges),
    }
    ranges
}

/// A fence opening line (already stripped of indentation): its char and length.
fn fence_open(t: &str) -> Option<(u8, usize)> {
    let c = *t.as_bytes().first().filter(|&&c| c == b'`' || c == b'~')?;
    let n = t.bytes().take_while(|&b| b == c).count();
    // A backtick fence's info string cannot contain backticks (then it is inline code).
    (n >= 3 && !(c == b'`' && t[n..].contains('`'))).then_some((c, n))
}

/// Inline code spans in `prose`: a run of N backticks up to the next run of exactly N, within
/// one paragraph (not across a blank line). Unmatched runs are literal text.
fn inline_code_spans(answer: &str, prose: Range<usize>, ranges: &mut Vec<Range<usize>>) {
    let bytes = answer.as_bytes();
    let mut i = prose.start;
    while i < prose.end {
        if bytes[i] == b'\\' {
            i += 2; // an escaped character (an escaped backtick opens nothing)
            continue;
        }
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let open_end = run_end(bytes, i, prose.end);
        let n = open_end - i;
        let limit = paragraph_end(answer, open_end, prose.end);
        let mut j = open_end;
        let mut close = None;
        while j < limit {
            if bytes[j] == b'`' {
                let e = run_end(bytes, j, limit);
                if e - j == n {
                    close = Some(e);
                    break;
                }
                j = e;
            } else {
                j += 1;
            }
        }
        match close {
            Some(e) => {
                ranges.push(i..e);
                i = e;
            }
            None => i = open_end,
        }
    }
}

fn run_end(bytes: &[u8], start: usize, limit: usize) -> usize {
    start
        + bytes[start..limit]
            .iter()
            .take_while(|&&b| b == b'`')
            .count()
}

/// Where the paragraph containing `from` ends: the start of the next blank line, or `to`.
fn paragraph_end(answer: &str, from: usize, to: usize) -> usize {
    let mut p = from;
    while let Some(nl) = answer[p..to].find('\n') {
        let line_start = p + nl + 1;
        let line_end = answer[line_start..to]
            .find('\n')
            .map_or(to, |e| line_start + e);
        if answer[line_start..line_end].trim().is_empty() {
            return line_start;
        }
        p = line_start;
    }
    to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cited(text: &str, cited: &[usize]) -> CitedAnswer {
        CitedAnswer {
            text: text.into(),
            cited: cited.to_vec(),
        }
    }

    #[test]
    fn a_single_marker_maps_to_its_source() {
        assert_eq!(
            parse("Retries back off [1].", 2),
            cited("Retries back off [1].", &[0])
        );
    }

    #[test]
    fn markers_are_renumbered_in_order_of_first_appearance() {
        assert_eq!(
            parse("A [3]. B [1]. C [3].", 3),
            cited("A [1]. B [2]. C [1].", &[2, 0])
        );
    }

    #[test]
    fn comma_groups_become_adjacent_markers_in_ascending_order() {
        assert_eq!(parse("Both [1, 3].", 3), cited("Both [1][2].", &[0, 2]));
        assert_eq!(parse("Both [1,3].", 3), cited("Both [1][2].", &[0, 2]));
        // Numbering follows first appearance (3 before 1), the group is then written sorted.
        assert_eq!(
            parse("Both [3, 1]. Then [1].", 3),
            cited("Both [1][2]. Then [2].", &[2, 0])
        );
        assert_eq!(
            parse("Spaces [ 2 ,1 ].", 2),
            cited("Spaces [1][2].", &[1, 0])
        );
    }

    #[test]
    fn adjacent_markers_are_one_group() {
        assert_eq!(parse("See [2][4].", 4), cited("See [1][2].", &[1, 3]));
        assert_eq!(
            parse("A [2]. B [4][2].", 4),
            cited("A [1]. B [1][2].", &[1, 3])
        );
    }

    #[test]
    fn ranges_expand_with_a_hyphen_or_an_en_dash() {
        assert_eq!(parse("All [1-3].", 3), cited("All [1][2][3].", &[0, 1, 2]));
        assert_eq!(parse("All [2–3].", 3), cited("All [1][2].", &[1, 2]));
        // A range reaching past the sources keeps the part that exists.
        assert_eq!(parse("All [2-9].", 3), cited("All [1][2].", &[1, 2]));
        assert_eq!(
            parse("Huge [1-18446744073709551615].", 2),
            cited("Huge [1][2].", &[0, 1])
        );
        // A backwards range names nothing and is removed.
        assert_eq!(parse("Odd [3-1].", 3), cited("Odd.", &[]));
    }

    #[test]
    fn a_source_cited_twice_in_one_group_is_written_once() {
        assert_eq!(parse("Twice [1, 1][1].", 1), cited("Twice [1].", &[0]));
    }

    #[test]
    fn markers_for_missing_sources_are_removed_cleanly() {
        assert_eq!(parse("uses X [7].", 2), cited("uses X.", &[]));
        assert_eq!(parse("zero [0] here", 2), cited("zero here", &[]));
        assert_eq!(parse("a [7] b [1] c", 2), cited("a b [1] c", &[0]));
        assert_eq!(
            parse("[9] Starts a line.\n  [9] indented", 2),
            cited("Starts a line.\n  indented", &[])
        );
        assert_eq!(parse("glued[9], then", 2), cited("glued, then", &[]));
        assert_eq!(parse("(see [9])", 2), cited("(see)", &[]));
        assert_eq!(parse("end [9]\nnext", 2), cited("end\nnext", &[]));
        assert_eq!(parse("two [8] [9] gone", 2), cited("two gone", &[]));
        assert_eq!(
            parse("big [99999999999999999999999].", 2),
            cited("big.", &[])
        );
        assert_eq!(parse("all invalid [3]", 0), cited("all invalid", &[]));
    }

    #[test]
    fn invalid_numbers_in_a_group_are_dropped_and_the_rest_kept() {
        assert_eq!(parse("Mixed [1, 7].", 2), cited("Mixed [1].", &[0]));
        assert_eq!(parse("Mixed [7][2].", 2), cited("Mixed [1].", &[1]));
    }

    #[test]
    fn inline_code_is_untouched() {
        let answer = "Index `a[2]` and ``b[2] `x` [1]`` then [2].";
        assert_eq!(
            parse(answer, 2),
            cited("Index `a[2]` and ``b[2] `x` [1]`` then [1].", &[1])
        );
    }

    #[test]
    fn an_unmatched_backtick_does_not_hide_later_citations() {
        assert_eq!(
            parse("A stray ` tick [2].\n\nNext `x` [2].", 2),
            cited("A stray ` tick [1].\n\nNext `x` [1].", &[1])
        );
    }

    #[test]
    fn fenced_code_blocks_are_untouched() {
        let answer = "Use it [2]:\n\n```rust\nlet x = v[2];\n```\n\n~~~\nw[1]\n~~~\nDone [2].";
        assert_eq!(
            parse(answer, 2),
            cited(
                "Use it [1]:\n\n```rust\nlet x = v[2];\n```\n\n~~~\nw[1]\n~~~\nDone [1].",
                &[1]
            )
        );
        // Indented fences (in list items), longer closing fences, and an unclosed fence.
        let answer = "- item [2]\n  ````\n  a[1]\n  ```\n  b[1]\n  `````\nafter [1]\n```\nc[2]";
        assert_eq!(
            parse(answer, 2),
            cited(
                "- item [1]\n  ````\n  a[1]\n  ```\n  b[1]\n  `````\nafter [2]\n```\nc[2]",
                &[1, 0]
            )
        );
    }

    #[test]
    fn links_images_and_reference_definitions_are_untouched() {
        let answer = "[docs](https://x.io/a[1]) [1](file:///a.rs#L3) ![2](img.png) [see][2] [2].\n\n[1]: https://example.com";
        assert_eq!(
            parse(answer, 2),
            cited(
                "[docs](https://x.io/a[1]) [1](file:///a.rs#L3) ![2](img.png) [see][2] [1].\n\n[1]: https://example.com",
                &[1]
            )
        );
    }

    #[test]
    fn a_marker_followed_by_a_colon_mid_sentence_is_a_citation() {
        assert_eq!(
            parse("The policy [2]: exponential.", 2),
            cited("The policy [1]: exponential.", &[1])
        );
    }

    #[test]
    fn task_boxes_escapes_and_other_brackets_are_untouched() {
        let answer = "- [ ] todo\n- [x] done [2]\n\\[1] and [a, b] and [] and [1,] and [-1]";
        assert_eq!(
            parse(answer, 2),
            cited(
                "- [ ] todo\n- [x] done [1]\n\\[1] and [a, b] and [] and [1,] and [-1]",
                &[1]
            )
        );
    }

    #[test]
    fn nothing_cited_leaves_the_text_unchanged() {
        let answer = "No sources were relevant; `x[1]` is just code.\n\n```\ny[2]\n```";
        assert_eq!(parse(answer, 3), cited(answer, &[]));
        assert_eq!(parse("", 3), cited("", &[]));
    }

    #[test]
    fn multibyte_text_around_markers_is_preserved() {
        assert_eq!(
            parse("Größe — ✓ [2]; 🦀 [9] ok", 2),
            cited("Größe — ✓ [1]; 🦀 ok", &[1])
        );
    }
}
