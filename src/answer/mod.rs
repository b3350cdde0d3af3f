//! Answers: the `rag/ask` result, built from ranked sources.
//!
//! Offline (no chat model reachable) the answer is extractive: the best sources, each with
//! its symbol and `path:line`, numbered `[n]` like a generated answer's citations, and a
//! line saying how to turn on generated answers. Pure: sources in, answer out.

pub mod citations;
pub mod prompt;

use crate::chunk::{ChunkKind, Language};
pub use crate::provider::chat::Usage;
use crate::retrieve::SearchHit;
use serde::Serialize;

/// How many lines of a chunk a snippet shows.
const SNIPPET_LINES: usize = 8;

/// Where a source or a citation points: a workspace folder, a path relative to it, a
/// 1-based inclusive line range and the symbol path. On the wire its fields sit in the
/// source's or citation's object (`root` is not part of the wire form).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Location {
    /// The workspace folder `path` is relative to (not part of the wire form).
    #[serde(skip)]
    pub root: std::path::PathBuf,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

/// A retrieved chunk given as context, with its location.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Source {
    #[serde(flatten)]
    pub location: Location,
    pub kind: ChunkKind,
    pub language: Language,
    pub score: f32,
    pub snippet: String,
    /// The text of the chunk's last line, so a range can end where the chunk does (not
    /// part of the wire form).
    #[serde(skip)]
    pub last_line: String,
}

/// A source the answer cites as `[n]`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Citation {
    pub n: usize,
    #[serde(flatten)]
    pub location: Location,
    pub snippet: String,
}

impl Citation {
    /// Citation number `n` of a source.
    pub fn of(n: usize, s: &Source) -> Citation {
        Citation {
            n,
            location: s.location.clone(),
            snippet: s.snippet.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Models {
    pub embedding: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    pub retrieve_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generate_ms: Option<u64>,
}

/// How an answer was made: written by the chat model, or the sources themselves
/// (offline, or when generation failed). On the wire: "generated" / "extractive".
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AnswerMode {
    Generated,
    Extractive,
}

impl std::fmt::Display for AnswerMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnswerMode::Generated => "generated",
            AnswerMode::Extractive => "extractive",
        })
    }
}

/// The `rag/ask` result of PROTOCOL.md (CLI form: paths and 1-based lines).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AskResult {
    pub answer: String,
    pub citations: Vec<Citation>,
    pub sources: Vec<Source>,
    pub mode: AnswerMode,
    pub models: Models,
    pub timings: Timings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Fallbacks taken on the way (rerank failed, generation failed...), in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The line that tells an offline user how to get written answers.
pub const ENABLE_GENERATION_HINT: &str = "Generated answers are off (no API key). Set OPENROUTER_API_KEY, or point \
provider.base_url at a local OpenAI-compatible server, to get a written answer that cites these sources.";

pub fn source_of(hit: &SearchHit) -> Source {
    let c = &hit.chunk;
    Source {
        location: Location {
            root: hit.root.clone(),
            path: c.path.clone(),
            start_line: c.start_line,
            end_line: c.end_line,
            symbol: (!c.symbol.is_empty()).then(|| c.symbol.clone()),
        },
        kind: c.kind,
        language: c.language,
        score: hit.score,
        snippet: snippet(&c.text),
        last_line: c.text.lines().last().unwrap_or("").to_string(),
    }
}

/// The first lines of a chunk, without leading blank lines.
pub fn snippet(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take(SNIPPET_LINES)
        .collect();
    lines.join("\n")
}

/// The offline answer: the best sources, numbered, each with its symbol and location.
pub fn extractive(
    question: &str,
    sources: &[Source],
    models: Models,
    timings: Timings,
) -> AskResult {
    let mut answer = String::new();
    if sources.is_empty() {
        answer.push_str(&format!(
            "Nothing in the index matches \"{}\". Try other words, or check `ragls status` for files that were skipped.\n",
            question.trim()
        ));
    } else {
        answer.push_str(&format!(
            "The code most relevant to \"{}\":\n\n",
            question.trim()
        ));
        for (i, s) in sources.iter().enumerate() {
            let what = s
                .location
                .symbol
                .as_deref()
                .map(|sym| format!("`{sym}` ({})", s.kind))
                .unwrap_or_else(|| s.kind.to_string());
            answer.push_str(&format!(
                "{}. {what} in {}:{} [{}]\n",
                i + 1,
                s.location.path,
                s.location.start_line,
                i + 1
            ));
            answer.push_str(&format!("```{}\n{}\n```\n", s.language, s.snippet));
        }
    }
    answer.push('\n');
    answer.push_str(ENABLE_GENERATION_HINT);
    let citations = sources
        .iter()
        .enumerate()
        .map(|(i, s)| Citation::of(i + 1, s))
        .collect();
    AskResult {
        answer,
        citations,
        sources: sources.to_vec(),
        mode: AnswerMode::Extractive,
        models,
        timings,
        usage: None,
        notes: Vec::new(),
    }
}

/// A generated answer: its `[n]` markers are parsed, markers for sources that do not
/// exist are removed, and the rest are renumbered so that `[k]` is `citations[k-1]`.
pub fn generated(
    text: &str,
    sources: &[Source],
    models: Models,
    timings: Timings,
    usage: Option<Usage>,
    notes: Vec<String>,
) -> AskResult {
    let cited = citations::parse(text, sources.len());
    let citations = cited
        .cited
        .iter()
        .enumerate()
        .filter_map(|(k, &i)| sources.get(i).map(|s| Citation::of(k + 1, s)))
        .collect();
    AskResult {
        answer: cited.text,
        citations,
        sources: sources.to_vec(),
        mode: AnswerMode::Generated,
        models,
        timings,
        usage,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, line: u32, symbol: Option<&str>) -> Source {
        Source {
            location: Location {
                root: std::path::PathBuf::from("/ws"),
                path: path.into(),
                start_line: line,
                end_line: line + 3,
                symbol: symbol.map(String::from),
            },
            kind: crate::chunk::ChunkKind::Function,
            language: crate::chunk::Language::Rust,
            score: 1.0,
            snippet: "fn poll() {\n}".into(),
            last_line: "}".into(),
        }
    }

    #[test]
    fn extractive_answers_number_each_source_with_its_location() {
        let r = extractive(
            "how does polling work?",
            &[
                source("src/sched.rs", 10, Some("impl Scheduler > fn poll")),
                source("src/io.rs", 3, None),
            ],
            Models {
                embedding: "builtin".into(),
                rerank: None,
                chat: None,
            },
            Timings::default(),
        );
        assert_eq!(r.mode, AnswerMode::Extractive);
        assert!(
            r.answer
                .contains("1. `impl Scheduler > fn poll` (function) in src/sched.rs:10 [1]"),
            "{}",
            r.answer
        );
        assert!(
            r.answer.contains("2. function in src/io.rs:3 [2]"),
            "{}",
            r.answer
        );
        assert!(r.answer.contains("OPENROUTER_API_KEY"));
        assert_eq!(r.citations.len(), 2);
        assert_eq!(
            (
                r.citations[1].n,
                r.citations[1].location.start_line,
                r.citations[1].location.end_line
            ),
            (2, 3, 6)
        );
    }

    #[test]
    fn generated_answers_renumber_citations_and_drop_unknown_markers() {
        let sources = [
            source("src/a.rs", 1, Some("fn a")),
            source("src/b.rs", 10, None),
        ];
        let r = generated(
            "B does it [2], helped by A [1]. Not [7].",
            &sources,
            Models {
                embedding: "e".into(),
                rerank: None,
                chat: Some("c".into()),
            },
            Timings::default(),
            None,
            Vec::new(),
        );
        assert_eq!(r.mode, AnswerMode::Generated);
        assert_eq!(r.answer, "B does it [1], helped by A [2]. Not.");
        assert_eq!(r.citations.len(), 2);
        assert_eq!(
            (
                r.citations[0].n,
                r.citations[0].location.path.as_str(),
                r.citations[0].location.start_line
            ),
            (1, "src/b.rs", 10)
        );
        assert_eq!(
            (r.citations[1].n, r.citations[1].location.path.as_str()),
            (2, "src/a.rs")
        );
        assert_eq!(r.sources.len(), 2);
    }

    #[test]
    fn no_sources_says_so() {
        let r = extractive(
            "zzz",
            &[],
            Models {
                embedding: "b".into(),
                rerank: None,
                chat: None,
            },
            Timings::default(),
        );
        assert!(r.answer.starts_with("Nothing in the index matches \"zzz\""));
        assert!(r.citations.is_empty());
    }

    #[test]
    fn snippets_skip_leading_blank_lines_and_stop_after_a_few_lines() {
        let text = "\n\nfn a() {\n1\n2\n3\n4\n5\n6\n7\n8\n9\n}";
        let s = snippet(text);
        assert!(s.starts_with("fn a() {"));
        assert_eq!(s.lines().count(), SNIPPET_LINES);
    }
}
