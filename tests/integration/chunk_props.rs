//! Robustness of the pure text parts, without nightly fuzzing: property tests feed random
//! bytes and random token soups (keywords, brackets, quotes, comments, odd Unicode) of
//! every chunked language to the chunker and the tokenizer. Whatever the input: no panic,
//! chunks in order and within the size budget, line ranges inside the file, text equal
//! to the file's slice. Seeded by proptest (failures are shrunk and printed); a modest
//! case count keeps it to seconds.

use proptest::prelude::*;
use ragls::chunk::{chunk_file, ChunkBudget};
use ragls::tokenize;

/// One path per chunker (tree-sitter languages, Markdown, plain text).
const PATHS: [&str; 13] = [
    "src/lib.rs",
    "app/main.py",
    "web/app.js",
    "web/app.ts",
    "web/view.tsx",
    "cmd/main.go",
    "src/Main.java",
    "src/io.c",
    "src/io.h",
    "src/io.cpp",
    "README.md",
    "notes.txt",
    "Makefile",
];

/// Tokens that stress parsers: openers without closers, string and comment starts,
/// keywords of every language, line breaks of every kind, multi-byte characters.
const TOKENS: [&str; 48] = [
    "fn",
    "def",
    "class",
    "struct",
    "impl",
    "func",
    "function",
    "interface",
    "enum",
    "mod",
    "pub",
    "return",
    "if",
    "else",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "<",
    ">",
    ";",
    ":",
    ",",
    "\"",
    "'",
    "`",
    "/*",
    "*/",
    "//",
    "#",
    "##",
    "```",
    "---",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "    ",
    "x",
    "_private",
    "HTTPServer2",
    "é",
    "日本",
    "🦀",
    "\u{0}",
    "=>",
];

fn budget() -> impl Strategy<Value = ChunkBudget> {
    (16usize..3000, 0usize..400, 1usize..120).prop_map(|(max_bytes, min, max_lines)| ChunkBudget {
        max_bytes,
        min_bytes: min.min(max_bytes),
        max_lines,
    })
}

fn token_soup() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..600)
        .prop_map(|tokens| tokens.join(" ").into_bytes())
}

/// The chunker's promises for any input.
fn check(path: &str, bytes: &[u8], budget: &ChunkBudget) -> Result<(), TestCaseError> {
    let chunks = chunk_file(path, bytes, budget);
    let text = String::from_utf8_lossy(bytes);
    let lines = 1 + text.matches('\n').count() as u32;
    let mut previous_end = 0;
    for c in &chunks {
        prop_assert!(c.start_byte < c.end_byte, "empty chunk {c:?}");
        prop_assert!(c.start_byte >= previous_end, "out of order: {c:?}");
        prop_assert!(c.end_byte <= text.len(), "past the end: {c:?}");
        previous_end = c.end_byte;
        prop_assert_eq!(&c.text, &text[c.start_byte..c.end_byte]);
        prop_assert!(
            c.text.len() <= budget.max_bytes.max(16),
            "over max_bytes {}: {} bytes",
            budget.max_bytes,
            c.text.len()
        );
        prop_assert!(
            ((c.end_line - c.start_line) as usize) < budget.max_lines.max(1),
            "over max_lines {}: {c:?}",
            budget.max_lines
        );
        prop_assert!(
            1 <= c.start_line && c.start_line <= c.end_line && c.end_line <= lines,
            "lines {}-{} outside 1-{lines}",
            c.start_line,
            c.end_line
        );
    }
    Ok(())
}

/// The tokenizer's promises: no panic, terms are non-empty and free of whitespace.
fn check_tokenizer(bytes: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(bytes);
    for term in tokenize::terms(&text) {
        prop_assert!(!term.is_empty());
        prop_assert!(!term.chars().any(char::is_whitespace), "{term:?}");
    }
    let line = tokenize::terms_line(&text);
    prop_assert!(!line.contains('\n'));
    let mut words = Vec::new();
    tokenize::for_each_word(&text, |w| words.push(w.to_string()));
    let mut parts = Vec::new();
    for w in &words {
        tokenize::split_identifier(w, &mut parts);
        let _ = tokenize::stem(w);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_a_chunker(
        path in prop::sample::select(PATHS.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..3000),
        budget in budget(),
    ) {
        check(path, &bytes, &budget)?;
    }

    #[test]
    fn token_soups_never_break_a_chunker(
        path in prop::sample::select(PATHS.to_vec()),
        bytes in token_soup(),
        budget in budget(),
    ) {
        check(path, &bytes, &budget)?;
    }

    #[test]
    fn the_tokenizer_takes_any_text(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        soup in token_soup(),
    ) {
        check_tokenizer(&bytes)?;
        check_tokenizer(&soup)?;
    }
}
