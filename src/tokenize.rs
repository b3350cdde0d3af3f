//! Code-aware tokens: the one place that decides what a "word" is, for the lexical index,
//! the built-in embedder and the offline reranker alike.
//!
//! Identifiers are split at `_` and at case changes, so `parseHttpRequest`,
//! `parse_http_request` and the words "parse http request" share the terms
//! `pars`, `http`, `request` (stemmed), and the whole identifier is kept too (`parsehttprequest`)
//! so that an exact identifier in a query still counts most. English stopwords are dropped
//! from queries and documents alike. This module does no I/O and holds no state but a
//! stemmer.

use rust_stemmers::{Algorithm, Stemmer};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

/// Words that carry no meaning for retrieval, in prose queries or in code comments.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can", "could", "did",
    "do", "does", "doing", "each", "for", "from", "had", "has", "have", "having", "he", "her",
    "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just",
    "may", "me", "might", "more", "most", "must", "my", "no", "nor", "not", "of", "off", "on",
    "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should",
    "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there",
    "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very",
    "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will",
    "with", "would", "you", "your", "yours", "also", "e", "g", "ie", "eg", "etc", "via", "whether",
    "any", "all", "both", "few", "there", "given", "used", "uses", "use", "using",
];

fn is_stopword(word: &str) -> bool {
    if word.len() > 7 {
        // Longer than the longest stopword ("through", "whether").
        return false;
    }
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    let set = SET.get_or_init(|| STOPWORDS.iter().copied().collect());
    set.contains(word) || (word.len() == 1 && !word.as_bytes()[0].is_ascii_digit())
}

fn stemmer() -> &'static Stemmer {
    static STEMMER: OnceLock<Stemmer> = OnceLock::new();
    STEMMER.get_or_init(|| Stemmer::create(Algorithm::English))
}

/// Calls `f` with each identifier-like word of `text` (letters, digits, `_`), in order.
pub fn for_each_word<'t>(text: &'t str, mut f: impl FnMut(&'t str)) {
    let mut start = None;
    for (i, c) in text.char_indices() {
        let is_word = c.is_alphanumeric() || c == '_';
        match (is_word, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                f(&text[s..i]);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        f(&text[s..]);
    }
}

/// Splits one identifier into its lower-cased parts: `parseHTTPRequest2` ->
/// `parse`, `http`, `request2`; `__init__` -> `init`.
pub fn split_identifier(word: &str, out: &mut Vec<String>) {
    let mut lower = String::new();
    let mut ends = Vec::new();
    split_into(word, &mut lower, &mut ends);
    let mut start = 0;
    for end in ends {
        out.push(lower[start..end].to_string());
        start = end;
    }
}

/// [`split_identifier`] without an allocation per part: the parts are appended to
/// `lower` (cleared first), each ending at the offset pushed to `ends` (cleared first).
/// All of `lower` is the compound identifier.
fn split_into(word: &str, lower: &mut String, ends: &mut Vec<usize>) {
    lower.clear();
    ends.clear();
    let mut part_start = 0;
    fn flush(lower: &str, ends: &mut Vec<usize>, part_start: &mut usize) {
        if lower.len() > *part_start {
            ends.push(lower.len());
            *part_start = lower.len();
        }
    }
    if word.is_ascii() {
        // The common case, byte by byte (for ASCII the rules below are the same).
        let b = word.as_bytes();
        for (i, &c) in b.iter().enumerate() {
            if c == b'_' {
                flush(lower, ends, &mut part_start);
                continue;
            }
            if c.is_ascii_uppercase() && lower.len() > part_start {
                let prev = b[i - 1];
                let next_is_lower = b.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_is_lower)
                {
                    flush(lower, ends, &mut part_start);
                }
            }
            lower.push(char::from(c.to_ascii_lowercase()));
        }
    } else {
        let chars: Vec<char> = word.chars().collect();
        for i in 0..chars.len() {
            let c = chars[i];
            if c == '_' {
                flush(lower, ends, &mut part_start);
                continue;
            }
            if c.is_uppercase() && lower.len() > part_start {
                let prev = chars[i - 1];
                let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                // A boundary before an upper-case letter that follows a lower-case one or
                // a digit (`parseHttp`), or that starts a word after an acronym
                // (`HTTPRequest`).
                if prev.is_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_uppercase() && next_is_lower)
                {
                    flush(lower, ends, &mut part_start);
                }
            }
            lower.extend(c.to_lowercase());
        }
    }
    flush(lower, ends, &mut part_start);
}

/// Stems one lower-cased word ("requests" -> "request", "parsing" -> "pars").
pub fn stem(word: &str) -> String {
    stemmer().stem(word).into_owned()
}

/// Calls `f` with the stem of `word`. Code repeats its words, so each thread remembers
/// the stems it computed (Snowball is the costliest step of tokenizing).
fn with_stem(word: &str, f: &mut impl FnMut(&str)) {
    /// Past this many distinct words the memo starts over (bounded memory).
    const MEMO_CAP: usize = 1 << 16;
    thread_local! {
        static MEMO: RefCell<HashMap<Box<str>, Box<str>, BuildHasherDefault<Fnv>>> =
            RefCell::new(HashMap::default());
    }
    MEMO.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            // Re-entered from `f` (never in this crate): stem without the memo.
            f(&stemmer().stem(word));
            return;
        };
        if let Some(s) = memo.get(word) {
            f(s);
            return;
        }
        if memo.len() >= MEMO_CAP {
            memo.clear();
        }
        let s: Box<str> = stemmer().stem(word).into();
        f(&s);
        memo.insert(word.into(), s);
    });
}

/// FNV-1a for the stem memo's short keys (std's SipHash costs more than it saves here).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// Calls `f` with each lexical term of `text`, in order: the terms of [`terms`], without
/// allocating one `String` per term.
pub fn for_each_term(text: &str, mut f: impl FnMut(&str)) {
    let mut lower = String::new();
    let mut ends = Vec::new();
    for_each_word(text, |word| {
        split_into(word, &mut lower, &mut ends);
        if ends.len() > 1 && lower.len() <= 40 {
            // The whole compound identifier, lower-cased, without `_`.
            f(&lower);
        }
        let mut start = 0;
        for &end in &ends {
            let p = &lower[start..end];
            start = end;
            if p.len() > 40 || is_stopword(p) {
                continue;
            }
            with_stem(p, &mut f);
        }
    });
}

/// The lexical terms of a text: identifier parts, stemmed, stopwords removed, plus the
/// whole compound identifier (lower-cased, without `_`) when it has several parts.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_term(text, |t| out.push(t.to_string()));
    out
}

/// The terms of a text joined by spaces: the form the full-text index stores.
pub fn terms_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for_each_term(text, |t| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(t);
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(word: &str) -> Vec<String> {
        let mut out = Vec::new();
        split_identifier(word, &mut out);
        out
    }

    #[test]
    fn identifiers_split_at_case_and_underscores() {
        assert_eq!(parts("parseHttpRequest"), ["parse", "http", "request"]);
        assert_eq!(parts("parse_http_request"), ["parse", "http", "request"]);
        assert_eq!(parts("HTTPRequest"), ["http", "request"]);
        assert_eq!(parts("__init__"), ["init"]);
        assert_eq!(parts("utf8Decode"), ["utf8", "decode"]);
        assert_eq!(parts("NFA"), ["nfa"]);
    }

    #[test]
    fn camel_snake_and_prose_share_terms() {
        let camel = terms("parseHttpRequest");
        let snake = terms("parse_http_request");
        let prose = terms("parse an HTTP request");
        for t in ["pars", "http", "request"] {
            assert!(camel.contains(&t.to_string()), "{camel:?}");
            assert!(snake.contains(&t.to_string()), "{snake:?}");
            assert!(prose.contains(&t.to_string()), "{prose:?}");
        }
        assert!(camel.contains(&"parsehttprequest".to_string()));
        assert_eq!(camel, snake);
    }

    #[test]
    fn stopwords_and_single_letters_are_dropped() {
        assert_eq!(
            terms("Returns the number of patterns in a DFA"),
            ["return", "number", "pattern", "dfa"]
        );
        assert_eq!(terms("x = 1"), ["1"]);
    }

    /// The straightforward tokenizer this module's fast path replaced, kept as the
    /// reference: an allocation per part, a stemmer call per word.
    fn reference_terms(text: &str) -> Vec<String> {
        fn split(word: &str, out: &mut Vec<String>) {
            let chars: Vec<char> = word.chars().collect();
            let mut part = String::new();
            for i in 0..chars.len() {
                let c = chars[i];
                if c == '_' {
                    if !part.is_empty() {
                        out.push(std::mem::take(&mut part));
                    }
                    continue;
                }
                if c.is_uppercase() && !part.is_empty() {
                    let prev = chars[i - 1];
                    let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                    if prev.is_lowercase()
                        || prev.is_ascii_digit()
                        || (prev.is_uppercase() && next_is_lower)
                    {
                        out.push(std::mem::take(&mut part));
                    }
                }
                part.extend(c.to_lowercase());
            }
            if !part.is_empty() {
                out.push(part);
            }
        }
        let mut out = Vec::new();
        for_each_word(text, |word| {
            let mut parts = Vec::new();
            split(word, &mut parts);
            if parts.len() > 1 {
                let compound: String = parts.concat();
                if compound.len() <= 40 {
                    out.push(compound);
                }
            }
            for p in &parts {
                if p.len() > 40 || is_stopword(p) {
                    continue;
                }
                out.push(stem(p));
            }
        });
        out
    }

    #[test]
    fn the_fast_tokenizer_gives_the_reference_terms() {
        let texts = [
            "fn parse_http_request(buf: &[u8]) -> Result<Request, ParseError> { todo!() }",
            "/// Returns the number of patterns in a DFA.\nimpl<'a> HTTPRequest2Builder for X {}",
            "__init__ self.assertEqual(x, y) getXMLHttpRequest utf8Decode NFA A B c1D",
            "Größe ÜberStraße naïveCafé İstanbul ΣΊΣΥΦΟΣ ǅungla snake_Case_ÄÖ",
            "a_very_long_identifier_that_goes_on_and_on_past_forty_characters_total",
            "running runs ran connection connections connected queries querying",
            "",
            "___ 123 4five SIX_seven eightNine",
        ];
        for t in texts {
            assert_eq!(terms(t), reference_terms(t), "{t:?}");
            // The stem memo gives the same answer the second time.
            assert_eq!(terms(t), reference_terms(t), "{t:?}");
            assert_eq!(terms_line(t), reference_terms(t).join(" "));
        }
    }
}
