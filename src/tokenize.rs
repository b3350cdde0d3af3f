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
use std::collections::HashSet;
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
    let chars: Vec<char> = word.chars().collect();
    let mut part = String::new();
    for i in 0..chars.len() {
        let c = chars[i];
        if c == '_' {
            flush(&mut part, out);
            continue;
        }
        if c.is_uppercase() && !part.is_empty() {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            // A boundary before an upper-case letter that follows a lower-case one or a
            // digit (`parseHttp`), or that starts a word after an acronym (`HTTPRequest`).
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                flush(&mut part, out);
            }
        }
        part.extend(c.to_lowercase());
    }
    flush(&mut part, out);
}

fn flush(part: &mut String, out: &mut Vec<String>) {
    if !part.is_empty() {
        out.push(std::mem::take(part));
    }
}

/// Stems one lower-cased word ("requests" -> "request", "parsing" -> "pars").
pub fn stem(word: &str) -> String {
    stemmer().stem(word).into_owned()
}

/// The lexical terms of a text: identifier parts, stemmed, stopwords removed, plus the
/// whole compound identifier (lower-cased, without `_`) when it has several parts.
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for_each_word(text, |word| {
        parts.clear();
        split_identifier(word, &mut parts);
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

/// The terms of a text joined by spaces: the form the full-text index stores.
pub fn terms_line(text: &str) -> String {
    terms(text).join(" ")
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
}
