//! A retrieval test set made from the workspace itself, the way
//! `../shared/eval/make_queries.py` makes one (the CodeSearchNet method): each documented
//! function's doc comment is removed from a copy of the code (lines kept, so line numbers
//! stay true), the first sentence of that comment becomes the query and the function's
//! line range the gold answer. Rust `///` comments and Python docstrings are used; files
//! under `test(s)/`, `benches/`, `examples/`, `test*` functions, queries under four words
//! and queries that occur twice are left out; the set is shuffled the way Python's
//! `random.Random(7).shuffle` does (Mersenne Twister), so `--generate N` takes the same
//! queries as `make_queries.py --max N`.
//!
//! Pure except [`copy_stripped`], which writes the copy. Not for: scoring (`metrics`).

use super::metrics::Gold;
use regex::Regex;
use std::path::Path;
use std::sync::OnceLock;

/// A generated query.
#[derive(Clone, Debug, PartialEq)]
pub struct GenQuery {
    pub query: String,
    pub gold: Gold,
    pub symbol: String,
}

fn fn_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"[^"]*"\s+)?fn\s+([A-Za-z_][A-Za-z0-9_]*)"#)
            .expect("a valid pattern")
    })
}

fn is_doc_line(line: &str) -> bool {
    line.trim_start().starts_with("///")
}

/// The first sentence of a doc comment, as `make_queries.py` takes it.
pub fn first_sentence(doc: &str) -> String {
    let joined = doc
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let text = joined.split("# ").next().unwrap_or("");
    // `(.+?[.!?])(\s|$)`: the shortest prefix (of at least one character) ending in
    // . ! or ? followed by whitespace or the end.
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(pos, c)) in chars.iter().enumerate().skip(1) {
        if matches!(c, '.' | '!' | '?') {
            let next = chars.get(i + 1).map(|x| x.1);
            if next.is_none_or(char::is_whitespace) {
                return text[..pos + c.len_utf8()].trim().to_string();
            }
        }
    }
    text.trim().to_string()
}

fn word_count(s: &str) -> usize {
    let mut n = 0;
    let mut run = 0;
    for c in s.chars() {
        if c.is_ascii_alphabetic() {
            run += 1;
        } else {
            n += usize::from(run >= 2);
            run = 0;
        }
    }
    n + usize::from(run >= 2)
}

/// Removes string literals (`"(\\.|[^"\\])*"` -> `""`), as the brace counter sees code.
fn without_strings(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut chars = code.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        // Find the closing quote; an unterminated string is left as it is.
        let rest: String = chars.clone().collect();
        let mut escaped = false;
        let mut close = None;
        for (i, d) in rest.char_indices() {
            if escaped {
                escaped = false;
            } else if d == '\\' {
                escaped = true;
            } else if d == '"' {
                close = Some(i);
                break;
            }
        }
        match close {
            Some(i) => {
                out.push_str("\"\"");
                let skip = rest[..=i].chars().count();
                for _ in 0..skip {
                    chars.next();
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// The 0-based line that closes the block opened at `start`, if within 400 lines.
fn block_end(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0i64;
    let mut seen = false;
    for (idx, line) in lines.iter().enumerate().skip(start).take(400) {
        let code = without_strings(line.split("//").next().unwrap_or(""));
        for ch in code.chars() {
            if ch == '{' {
                depth += 1;
                seen = true;
            } else if ch == '}' {
                depth -= 1;
                if seen && depth == 0 {
                    return Some(idx);
                }
            }
        }
        if !seen && code.trim_end().ends_with(';') {
            return None; // a declaration without a body
        }
    }
    None
}

/// Documented Rust functions: (name, doc, first line, last line), lines 1-based.
fn rust_items(lines: &[&str]) -> Vec<(String, String, u32, u32)> {
    let mut out = Vec::new();
    let (mut i, n) = (0, lines.len());
    while i < n {
        if is_doc_line(lines[i]) && !lines[i].trim_start().starts_with("////") {
            let mut doc = Vec::new();
            let mut j = i;
            while j < n && is_doc_line(lines[j]) {
                let t = lines[j].trim_start();
                let t = &t[3..];
                doc.push(t.strip_prefix(|c: char| c.is_whitespace()).unwrap_or(t));
                j += 1;
            }
            let mut k = j;
            while k < n && (lines[k].trim_start().starts_with("#[") || lines[k].trim().is_empty()) {
                k += 1;
            }
            if k < n {
                if let Some(m) = fn_re().captures(lines[k]) {
                    if let (Some(name), Some(end)) = (m.get(7), block_end(lines, k)) {
                        out.push((
                            name.as_str().to_string(),
                            doc.join("\n"),
                            k as u32 + 1,
                            end as u32 + 1,
                        ));
                    }
                }
            }
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

fn strip_rust(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("///") || t.starts_with("//!") {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// The value of a Python string literal's source (prefix and quotes removed; escapes
/// other than line continuations kept as written).
fn python_string_value(src: &str) -> String {
    let body = src.trim_start_matches(|c: char| "rRbBuUfF".contains(c));
    for q in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = body.strip_prefix(q).and_then(|b| b.strip_suffix(q)) {
            return inner.replace("\\\n", "");
        }
    }
    body.to_string()
}

/// How deep Python's `ast` would put a node: the statements (and `except`, `elif`,
/// `case` clauses) around it. `ast.walk` visits breadth-first, so items come in (depth,
/// position) order, which the shuffle depends on.
fn ast_depth(node: tree_sitter::Node<'_>) -> usize {
    let mut depth = 1;
    let mut up = node.parent();
    while let Some(p) = up {
        if matches!(
            p.kind(),
            "function_definition"
                | "class_definition"
                | "if_statement"
                | "elif_clause"
                | "for_statement"
                | "while_statement"
                | "try_statement"
                | "except_clause"
                | "with_statement"
                | "match_statement"
                | "case_clause"
        ) {
            depth += 1;
        }
        up = p.parent();
    }
    depth
}

/// Python docstrings: the documented functions and every docstring's line range (with
/// whether it is its body's only statement).
fn python_items(text: &str) -> (Vec<(String, String, u32, u32)>, Vec<(u32, u32, bool)>) {
    let mut parser = tree_sitter::Parser::new();
    if parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .is_err()
    {
        return (Vec::new(), Vec::new());
    }
    let Some(tree) = parser.parse(text, None) else {
        return (Vec::new(), Vec::new());
    };
    if tree.root_node().has_error() {
        return (Vec::new(), Vec::new()); // `ast.parse` would refuse it too
    }
    let mut items = Vec::new();
    let mut blanks = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        let body = match node.kind() {
            "module" => Some(node),
            "function_definition" | "class_definition" => node.child_by_field_name("body"),
            _ => None,
        };
        if let Some(body) = body {
            let mut cursor = body.walk();
            let statements: Vec<_> = body
                .named_children(&mut cursor)
                .filter(|c| c.kind() != "comment")
                .collect();
            let doc = statements.first().filter(|s| {
                s.kind() == "expression_statement"
                    && s.named_child_count() == 1
                    && s.named_child(0).is_some_and(|c| c.kind() == "string")
            });
            if let Some(d) = doc {
                let start = d.start_position().row as u32 + 1;
                let end = d.end_position().row as u32 + 1;
                blanks.push((start, end, statements.len() == 1));
                if node.kind() == "function_definition" {
                    let name = node
                        .child_by_field_name("name")
                        .and_then(|n| n.utf8_text(text.as_bytes()).ok())
                        .unwrap_or("")
                        .to_string();
                    let value = d
                        .utf8_text(text.as_bytes())
                        .map(python_string_value)
                        .unwrap_or_default();
                    let first = node
                        .parent()
                        .filter(|p| p.kind() == "decorated_definition")
                        .unwrap_or(node)
                        .start_position()
                        .row as u32
                        + 1;
                    let key = (ast_depth(node), node.start_byte());
                    items.push((
                        key,
                        (name, value, first, node.end_position().row as u32 + 1),
                    ));
                }
            }
        }
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            stack.push(child);
        }
    }
    items.sort_by_key(|(key, _)| *key);
    (items.into_iter().map(|(_, item)| item).collect(), blanks)
}

fn strip_python(lines: &[&str], blanks: &[(u32, u32, bool)]) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for &(a, b, only) in blanks {
        let a = a as usize;
        let indent: String = out
            .get(a - 1)
            .map(|l| l.chars().take_while(|c| c.is_whitespace()).collect())
            .unwrap_or_default();
        for ln in a..=(b as usize) {
            if let Some(l) = out.get_mut(ln - 1) {
                l.clear();
            }
        }
        if only {
            if let Some(l) = out.get_mut(a - 1) {
                *l = format!("{indent}pass");
            }
        }
    }
    out
}

/// One file: its stripped text (doc comments removed, lines kept) and its queries;
/// `None` when the file is neither Rust nor Python (copied unchanged).
pub fn strip_file(rel: &str, text: &str) -> Option<(String, Vec<GenQuery>)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let (items, stripped) = if rel.ends_with(".rs") {
        (rust_items(&lines), strip_rust(&lines))
    } else if rel.ends_with(".py") {
        let (items, blanks) = python_items(text);
        (items, strip_python(&lines, &blanks))
    } else {
        return None;
    };
    let skip_dir = rel
        .split('/')
        .rev()
        .skip(1)
        .any(|d| matches!(d, "test" | "tests" | "benches" | "examples"));
    let queries = items
        .into_iter()
        .filter_map(|(name, doc, start, end)| {
            let query = first_sentence(&doc);
            let keep = !skip_dir && word_count(&query) >= 4 && !name.starts_with("test");
            keep.then(|| GenQuery {
                query,
                gold: Gold {
                    path: rel.to_string(),
                    start_line: Some(start),
                    end_line: Some(end),
                },
                symbol: name,
            })
        })
        .collect();
    Some((stripped.join("\n"), queries))
}

/// Copies `src` into `dst` as `make_queries.py` does (folders starting with `.`,
/// `target` and `node_modules` left out; Rust and Python files stripped of their doc
/// comments) and returns the queries, deduplicated and shuffled, at most `max`.
pub fn copy_stripped(src: &Path, dst: &Path, max: usize) -> std::io::Result<Vec<GenQuery>> {
    let mut queries = Vec::new();
    copy_dir(src, dst, "", &mut queries)?;
    Ok(select(queries, max))
}

fn copy_dir(src: &Path, dst: &Path, rel: &str, queries: &mut Vec<GenQuery>) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                dirs.push(name);
            }
        } else if kind.is_file() || (kind.is_symlink() && entry.path().is_file()) {
            files.push(name);
        }
    }
    files.sort();
    dirs.sort();
    for name in files {
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let bytes = std::fs::read(src.join(&name))?;
        let out = match String::from_utf8(bytes) {
            Ok(text) => match strip_file(&rel_path, &text) {
                Some((stripped, found)) => {
                    queries.extend(found);
                    stripped.into_bytes()
                }
                None => text.into_bytes(),
            },
            Err(e) => e.into_bytes(),
        };
        std::fs::write(dst.join(&name), out)?;
    }
    for name in dirs {
        let rel_path = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        copy_dir(&src.join(&name), &dst.join(&name), &rel_path, queries)?;
    }
    Ok(())
}

/// Drops queries whose text occurs more than once (case-insensitively), shuffles the rest
/// as `random.Random(7).shuffle` would, and keeps the first `max`.
pub fn select(queries: Vec<GenQuery>, max: usize) -> Vec<GenQuery> {
    let mut counts = std::collections::HashMap::new();
    for q in &queries {
        *counts.entry(q.query.to_lowercase()).or_insert(0usize) += 1;
    }
    let mut kept: Vec<GenQuery> = queries
        .into_iter()
        .filter(|q| counts.get(&q.query.to_lowercase()) == Some(&1))
        .collect();
    let mut rng = Mt19937::seeded(7);
    for i in (1..kept.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        kept.swap(i, j);
    }
    kept.truncate(max);
    kept
}

/// The Mersenne Twister (MT19937) seeded as CPython seeds it from a small integer, with
/// CPython's `_randbelow`: enough to shuffle exactly as `random.Random(seed).shuffle`.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn seeded(seed: u32) -> Mt19937 {
        let mut mt = Mt19937 {
            state: [0; 624],
            index: 624,
        };
        mt.init(19_650_218);
        // init_by_array with the key [seed].
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624.max(key.len()) {
            let prev = mt.state[i - 1] ^ (mt.state[i - 1] >> 30);
            mt.state[i] = (mt.state[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                mt.state[0] = mt.state[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = mt.state[i - 1] ^ (mt.state[i - 1] >> 30);
            mt.state[i] = (mt.state[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                mt.state[0] = mt.state[623];
                i = 1;
            }
        }
        mt.state[0] = 0x8000_0000;
        mt
    }

    fn init(&mut self, s: u32) {
        self.state[0] = s;
        for i in 1..624 {
            let prev = self.state[i - 1] ^ (self.state[i - 1] >> 30);
            self.state[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
        self.index = 624;
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.state[i] = v;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for k <= 32.
    fn bits(&mut self, k: u32) -> u64 {
        u64::from(self.next_u32() >> (32 - k))
    }

    /// CPython's `_randbelow_with_getrandbits(n)`.
    fn below(&mut self, n: u64) -> u64 {
        let k = 64 - n.leading_zeros();
        let mut r = self.bits(k);
        while r >= n {
            r = self.bits(k);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_sentence_is_the_query() {
        assert_eq!(
            first_sentence("Returns the match at `i`.  More text.\n\n# Panics\nNever."),
            "Returns the match at `i`."
        );
        assert_eq!(first_sentence("Compiles e.g. a regex"), "Compiles e.g.");
        assert_eq!(first_sentence("No period here"), "No period here");
        assert_eq!(word_count("Returns the `i`-th x match"), 4);
        assert_eq!(word_count("a b Is it"), 2);
    }

    #[test]
    fn rust_doc_comments_become_queries_and_are_blanked() {
        let src = "//! Module.\n\n/// Returns the number of states in this automaton.\n#[inline]\npub fn len(&self) -> usize {\n    self.states.len() // \"}\"\n}\n\n/// Declared only here today.\nfn decl();\n";
        let (stripped, queries) = strip_file("src/dfa.rs", src).expect("rust");
        assert_eq!(
            stripped,
            "\n\n\n#[inline]\npub fn len(&self) -> usize {\n    self.states.len() // \"}\"\n}\n\n\nfn decl();\n"
        );
        assert_eq!(
            queries,
            vec![GenQuery {
                query: "Returns the number of states in this automaton.".into(),
                gold: Gold {
                    path: "src/dfa.rs".into(),
                    start_line: Some(5),
                    end_line: Some(7)
                },
                symbol: "len".into(),
            }]
        );
        assert!(strip_file("tests/dfa.rs", src).expect("rust").1.is_empty());
    }

    #[test]
    fn python_docstrings_become_queries_and_are_blanked() {
        let src = "\"\"\"Module doc.\"\"\"\n\n@cache\ndef fetch(url):\n    \"\"\"Fetches the page at a given address.\n\n    More.\n    \"\"\"\n    return get(url)\n\nclass A:\n    def only(self):\n        \"\"\"Only a docstring in this body here.\"\"\"\n";
        let (stripped, queries) = strip_file("pkg/net.py", src).expect("python");
        assert_eq!(
            stripped,
            "\n\n@cache\ndef fetch(url):\n\n\n\n\n    return get(url)\n\nclass A:\n    def only(self):\n        pass\n"
        );
        let mut got: Vec<(String, Option<u32>, Option<u32>)> = queries
            .iter()
            .map(|q| (q.query.clone(), q.gold.start_line, q.gold.end_line))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (
                    "Fetches the page at a given address.".into(),
                    Some(3),
                    Some(9)
                ),
                (
                    "Only a docstring in this body here.".into(),
                    Some(12),
                    Some(13)
                ),
            ]
        );
    }

    #[test]
    fn the_shuffle_is_pythons() {
        // python3 -c "import random; x=list(range(10)); random.Random(7).shuffle(x); print(x)"
        let q = |i: u32| GenQuery {
            query: format!("query number {i}"),
            gold: Gold {
                path: "a.rs".into(),
                start_line: Some(i),
                end_line: Some(i),
            },
            symbol: String::new(),
        };
        let shuffled: Vec<u32> = select((0..10).map(q).collect(), 100)
            .iter()
            .filter_map(|g| g.gold.start_line)
            .collect();
        assert_eq!(shuffled, PYTHON_SHUFFLE_OF_0_TO_9);
        let mut dup = vec![q(1), q(2)];
        dup[1].query = "QUERY NUMBER 1".into();
        assert!(select(dup, 10).is_empty(), "duplicates leave together");
    }

    const PYTHON_SHUFFLE_OF_0_TO_9: [u32; 10] = [8, 3, 1, 4, 7, 0, 9, 6, 2, 5];
}
