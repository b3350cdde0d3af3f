//! Ranking priors: what users expect of a code search tool, applied to the fused hits
//! before the reranker (fuse -> priors -> rerank). Each is a setting of `[retrieve]` and
//! each hit records which priors changed its score and by how much ([`PriorEffect`]).
//! Pure: no I/O.
//!
//! - **secondary code** (`secondary_factor`): for a question that does not name tests,
//!   benchmarks or examples, a chunk of a test, example, benchmark or vendored file (or of
//!   a `mod tests`, `class Test...`, `def test_...`) has its score multiplied by the
//!   factor: demoted, never dropped.
//! - **diversity** (`file_decay`, `file_decay_after`): past the best `file_decay_after`
//!   hits of a file, the next is multiplied by the decay, the one after by its square, and
//!   so on, so that one file does not fill the results while other files match.
//! - **identifier first** (`identifier_first`): a query that is one identifier
//!   (`JoinSet`, `parse_http_request`, `Session.request`, `foo::bar`) puts the chunks
//!   named exactly so above every other hit: definitions (functions, types...) before
//!   usages (impl blocks, statements), and those whose qualifiers (`Session`, `foo`)
//!   appear in their symbol path or file path first.

use super::SearchHit;
use crate::chunk::ChunkKind;
use crate::config::RetrieveConfig;

/// Which prior changed a hit's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prior {
    /// A test, example, benchmark or vendored chunk, demoted.
    Secondary,
    /// A further hit of a file already in the results, decayed.
    Diversity,
    /// The exact definition (or use) of the identifier the query is, lifted.
    Identifier,
}

/// What one prior did to one hit's score: `delta` is added (negative: demoted).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorEffect {
    pub prior: Prior,
    pub delta: f32,
}

/// Applies the enabled priors to `hits` (fused scores, any order) and sorts them by the
/// new score, best first (ties keep their order).
pub fn apply(query: &str, hits: &mut Vec<SearchHit>, rc: &RetrieveConfig) {
    sort(hits);
    if rc.secondary_factor < 1.0 && !names_secondary_code(query) {
        for h in hits.iter_mut() {
            if is_secondary(&h.chunk.path, &h.chunk.symbol) {
                let new = h.score * rc.secondary_factor;
                record(h, Prior::Secondary, new);
            }
        }
        sort(hits);
    }
    if rc.file_decay < 1.0 {
        let mut seen: std::collections::HashMap<(&std::path::Path, &str), i32> =
            std::collections::HashMap::with_capacity(hits.len());
        let mut factors = Vec::with_capacity(hits.len());
        for h in hits.iter() {
            let n = seen
                .entry((h.root.as_path(), h.chunk.path.as_str()))
                .or_insert(0);
            let past = (*n - rc.file_decay_after.max(1) as i32 + 1).max(0);
            factors.push(rc.file_decay.powi(past));
            *n += 1;
        }
        for (h, f) in hits.iter_mut().zip(factors) {
            if f < 1.0 {
                let new = h.score * f;
                record(h, Prior::Diversity, new);
            }
        }
        sort(hits);
    }
    if rc.identifier_first {
        if let Some(ident) = Identifier::parse(query) {
            let best = hits.iter().map(|h| h.score).fold(0.0f32, f32::max);
            let step = best.abs() + 1.0;
            for h in hits.iter_mut() {
                let tier = ident.tier(&h.chunk.name, &h.chunk.symbol, &h.chunk.path, h.chunk.kind);
                if tier > 0 {
                    let new = h.score + tier as f32 * step;
                    record(h, Prior::Identifier, new);
                }
            }
            sort(hits);
        }
    }
}

fn record(h: &mut SearchHit, prior: Prior, new: f32) {
    let delta = new - h.score;
    if delta != 0.0 {
        h.priors.push(PriorEffect { prior, delta });
        h.score = new;
    }
}

fn sort(hits: &mut [SearchHit]) {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score));
}

/// The lower-cased words of `text`, identifiers split (`TestServer` -> `test`, `server`).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    crate::tokenize::for_each_word(text, |w| crate::tokenize::split_identifier(w, &mut out));
    out
}

/// Whether the query asks about tests, specs, benchmarks or examples themselves.
pub fn names_secondary_code(query: &str) -> bool {
    words(query).iter().any(|w| {
        w.starts_with("test")
            || w.starts_with("bench")
            || w.starts_with("example")
            || matches!(
                w.as_str(),
                "spec" | "specs" | "fixture" | "fixtures" | "mock" | "mocks"
            )
    })
}

/// Whether a chunk at `path` (relative, `/`-separated) with this symbol path is test,
/// example, benchmark or vendored code rather than the implementation.
pub fn is_secondary(path: &str, symbol: &str) -> bool {
    // Runs for every candidate of every question: no allocation but the file name's.
    let (dirs, file) = match path.rfind(['/', '\\']) {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    let file = file.to_ascii_lowercase();
    let file = file.as_str();
    const DIRS: &[&str] = &[
        "test",
        "tests",
        "testing",
        "testdata",
        "test_data",
        "__tests__",
        "__mocks__",
        "spec",
        "specs",
        "fixtures",
        "example",
        "examples",
        "bench",
        "benches",
        "benchmark",
        "benchmarks",
        "vendor",
        "vendored",
        "third_party",
        "third-party",
        "thirdparty",
        "node_modules",
    ];
    if !dirs.is_empty()
        && dirs
            .split(['/', '\\'])
            .any(|d| DIRS.iter().any(|x| x.eq_ignore_ascii_case(d)))
    {
        return true;
    }
    let stem = file.split('.').next().unwrap_or("");
    let secondary_file = matches!(stem, "test" | "tests" | "conftest" | "benches")
        || stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || stem.ends_with("_spec")
        || stem.ends_with("_bench")
        || file.contains(".test.")
        || file.contains(".spec.")
        // Java and C#: FooTest.java, FooTests.cs (case matters: not "Latest.java").
        || path.rsplit(['/', '\\']).next().is_some_and(|f| {
            let s = f.split('.').next().unwrap_or("");
            (s.ends_with("Test") || s.ends_with("Tests")) && s.len() > 5
        });
    if secondary_file {
        return true;
    }
    symbol.split(" > ").any(|seg| {
        let name = seg.rsplit(' ').next().unwrap_or("");
        (seg.starts_with("mod ") && matches!(name, "test" | "tests"))
            || (seg.starts_with("class ") && name.starts_with("Test"))
            || ((seg.starts_with("def ") || seg.starts_with("fn ") || seg.starts_with("func "))
                && (name.starts_with("test_") || name.starts_with("Test")))
    })
}

/// A query that is one identifier, maybe qualified: `JoinSet`, `Session.request`,
/// `foo::bar`, `Foo#bar`, `Foo->bar`.
#[derive(Debug, PartialEq)]
pub struct Identifier {
    /// The last segment: the name a chunk must have.
    pub name: String,
    /// The segments before it, which the chunk's symbol path or file path should contain.
    pub qualifiers: Vec<String>,
}

impl Identifier {
    pub fn parse(query: &str) -> Option<Identifier> {
        let q = query.trim().trim_end_matches("()");
        if q.is_empty() || q.contains(char::is_whitespace) {
            return None;
        }
        let segments: Vec<&str> = q
            .split("::")
            .flat_map(|s| s.split("->"))
            .flat_map(|s| s.split(['.', '#']))
            .collect();
        let ident = |s: &&str| {
            let mut c = s.chars();
            c.next().is_some_and(|f| f.is_alphabetic() || f == '_')
                && c.all(|c| c.is_alphanumeric() || c == '_')
        };
        if !segments.iter().all(ident) {
            return None;
        }
        let (name, qualifiers) = segments.split_last()?;
        Some(Identifier {
            name: name.to_string(),
            qualifiers: qualifiers.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// 0 when the chunk is not named so; else 1, plus 1 for a definition, plus 1 when the
    /// query is qualified and every qualifier is a word of the symbol path or file path.
    pub fn tier(&self, name: &str, symbol: &str, path: &str, kind: ChunkKind) -> u32 {
        if name != self.name {
            return 0;
        }
        let mut tier = 1;
        if is_definition(kind) {
            tier += 1;
        }
        if !self.qualifiers.is_empty() {
            let mut known: Vec<&str> = Vec::new();
            crate::tokenize::for_each_word(symbol, |w| known.push(w));
            crate::tokenize::for_each_word(path, |w| known.push(w));
            if self.qualifiers.iter().all(|q| known.contains(&q.as_str())) {
                tier += 1;
            }
        }
        tier
    }
}

/// Kinds that define a name (as opposed to impl blocks, statements, text).
fn is_definition(kind: ChunkKind) -> bool {
    use ChunkKind::*;
    matches!(
        kind,
        Function
            | Method
            | Class
            | Struct
            | Enum
            | Trait
            | Interface
            | Type
            | Macro
            | Const
            | Module
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChunkId, StoredChunk};

    fn hit(id: i64, path: &str, symbol: &str, kind: ChunkKind, score: f32) -> SearchHit {
        SearchHit {
            root: "/ws".into(),
            chunk: StoredChunk {
                id: ChunkId(id),
                path: path.into(),
                chunk: crate::chunk::Chunk {
                    language: crate::chunk::Language::Rust,
                    kind,
                    symbol: symbol.into(),
                    name: symbol
                        .rsplit(" > ")
                        .next()
                        .and_then(|s| s.rsplit(' ').next())
                        .unwrap_or("")
                        .into(),
                    start_byte: 0,
                    end_byte: 1,
                    start_line: 1,
                    end_line: 1,
                    text: "x".into(),
                },
            },
            score,
            explain: Default::default(),
            priors: Vec::new(),
        }
    }

    fn only(secondary: f32, decay: f32, identifier: bool) -> RetrieveConfig {
        RetrieveConfig {
            secondary_factor: secondary,
            file_decay: decay,
            file_decay_after: 1,
            identifier_first: identifier,
            ..RetrieveConfig::default()
        }
    }

    fn ids(hits: &[SearchHit]) -> Vec<i64> {
        hits.iter().map(|h| h.chunk.id.0).collect()
    }

    #[test]
    fn tests_examples_benches_and_vendored_code_are_recognised_by_path_or_symbol() {
        for path in [
            "tests/api.rs",
            "src/foo/tests/helpers.rs",
            "test_models.py",
            "pkg/server_test.go",
            "web/app.test.ts",
            "web/app.spec.tsx",
            "examples/client.rs",
            "benches/perf.rs",
            "vendor/lib/x.c",
            "third_party/zlib/inflate.c",
            "src/main/java/FooTest.java",
            "src/chunk/tests.rs",
            "conftest.py",
        ] {
            assert!(is_secondary(path, ""), "{path}");
        }
        assert!(is_secondary("src/lib.rs", "mod tests > fn it_works"));
        assert!(is_secondary(
            "pkg/models.py",
            "class TestSession > def setup"
        ));
        assert!(is_secondary("pkg/models.py", "def test_request"));
        for (path, symbol) in [
            ("src/lib.rs", "impl Session > fn request"),
            ("src/latest.rs", "fn contest"),
            ("src/attestation/mod.rs", ""),
            ("src/main/java/Latest.java", ""),
            ("requests/models.py", "class Response > def json"),
        ] {
            assert!(!is_secondary(path, symbol), "{path} {symbol}");
        }
    }

    #[test]
    fn implementation_beats_a_slightly_stronger_test_for_a_question_but_the_test_stays() {
        let mut hits = vec![
            hit(
                1,
                "tests/session.rs",
                "fn sends_cookies",
                ChunkKind::Function,
                1.0,
            ),
            hit(2, "src/session.rs", "fn send", ChunkKind::Function, 0.8),
        ];
        apply("how are cookies sent?", &mut hits, &only(0.5, 1.0, false));
        assert_eq!(ids(&hits), [2, 1], "demoted, never filtered out");
        assert_eq!(
            hits[1].priors,
            [PriorEffect {
                prior: Prior::Secondary,
                delta: -0.5
            }]
        );
        assert!(hits[0].priors.is_empty());
    }

    #[test]
    fn a_question_that_names_tests_keeps_tests_where_they_are() {
        for query in [
            "which test checks cookies?",
            "the spec for sessions",
            "benchmark of the parser",
            "TestSession setup",
        ] {
            let mut hits = vec![
                hit(
                    1,
                    "tests/session.rs",
                    "fn sends_cookies",
                    ChunkKind::Function,
                    1.0,
                ),
                hit(2, "src/session.rs", "fn send", ChunkKind::Function, 0.8),
            ];
            apply(query, &mut hits, &only(0.5, 1.0, false));
            assert_eq!(ids(&hits), [1, 2], "{query}");
        }
        assert!(!names_secondary_code("the latest contest attestation"));
    }

    #[test]
    fn one_file_does_not_fill_the_results_when_other_files_match() {
        let mut hits = vec![
            hit(1, "src/a.rs", "fn a1", ChunkKind::Function, 1.0),
            hit(2, "src/a.rs", "fn a2", ChunkKind::Function, 0.95),
            hit(3, "src/a.rs", "fn a3", ChunkKind::Function, 0.9),
            hit(4, "src/b.rs", "fn b1", ChunkKind::Function, 0.8),
        ];
        apply("parse the input", &mut hits, &only(1.0, 0.8, false));
        // a1 keeps 1.0; a2 0.95 * 0.8 = 0.76; a3 0.9 * 0.64 = 0.576; b1 keeps 0.8.
        assert_eq!(ids(&hits), [1, 4, 2, 3]);
        assert_eq!(hits[0].priors, []);
        assert_eq!(hits[2].priors[0].prior, Prior::Diversity);
        assert!((hits[2].priors[0].delta + 0.19).abs() < 1e-6);
        // The same file in two workspace folders is two files.
        let mut two_roots = vec![
            hit(1, "src/a.rs", "fn a1", ChunkKind::Function, 1.0),
            SearchHit {
                root: "/other".into(),
                ..hit(2, "src/a.rs", "fn a2", ChunkKind::Function, 0.9)
            },
        ];
        apply("parse", &mut two_roots, &only(1.0, 0.8, false));
        assert!(two_roots.iter().all(|h| h.priors.is_empty()));
        // With two hits of a file kept whole, only the third decays.
        let mut hits = vec![
            hit(1, "src/a.rs", "fn a1", ChunkKind::Function, 1.0),
            hit(2, "src/a.rs", "fn a2", ChunkKind::Function, 0.95),
            hit(3, "src/a.rs", "fn a3", ChunkKind::Function, 0.9),
            hit(4, "src/b.rs", "fn b1", ChunkKind::Function, 0.8),
        ];
        let keep_two = RetrieveConfig {
            file_decay_after: 2,
            ..only(1.0, 0.8, false)
        };
        apply("parse the input", &mut hits, &keep_two);
        assert_eq!(ids(&hits), [1, 2, 4, 3]);
    }

    #[test]
    fn identifier_queries_are_recognised_in_the_usual_spellings() {
        let id = |q: &str| Identifier::parse(q).map(|i| (i.name, i.qualifiers));
        assert_eq!(id("JoinSet"), Some(("JoinSet".into(), vec![])));
        assert_eq!(
            id("parse_http_request"),
            Some(("parse_http_request".into(), vec![]))
        );
        assert_eq!(
            id("Session.request"),
            Some(("request".into(), vec!["Session".into()]))
        );
        assert_eq!(
            id("tokio::task::JoinSet"),
            Some(("JoinSet".into(), vec!["tokio".into(), "task".into()]))
        );
        assert_eq!(
            id(" spawn_blocking() "),
            Some(("spawn_blocking".into(), vec![]))
        );
        assert_eq!(id("how do I spawn"), None);
        assert_eq!(id("a+b"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn an_identifier_query_puts_the_definition_first_then_usages_then_the_rest() {
        let mut hits = vec![
            hit(
                1,
                "src/task.rs",
                "fn spawn_in_set",
                ChunkKind::Function,
                3.0,
            ),
            hit(2, "src/set.rs", "impl JoinSet", ChunkKind::Impl, 2.0),
            hit(3, "src/set.rs", "struct JoinSet", ChunkKind::Struct, 0.5),
            hit(4, "src/other.rs", "fn other", ChunkKind::Function, 1.0),
        ];
        apply("JoinSet", &mut hits, &only(1.0, 1.0, true));
        assert_eq!(ids(&hits), [3, 2, 1, 4]);
        assert_eq!(hits[0].priors[0].prior, Prior::Identifier);
        assert!(hits[2].priors.is_empty());
    }

    #[test]
    fn a_qualified_identifier_prefers_the_chunk_inside_its_qualifier() {
        let mut hits = vec![
            hit(
                1,
                "requests/api.py",
                "def request",
                ChunkKind::Function,
                2.0,
            ),
            hit(
                2,
                "requests/sessions.py",
                "class Session > def request",
                ChunkKind::Method,
                1.0,
            ),
        ];
        apply("Session.request", &mut hits, &only(1.0, 1.0, true));
        assert_eq!(ids(&hits), [2, 1]);
        let mut hits = vec![
            hit(1, "src/a.rs", "fn bar", ChunkKind::Function, 2.0),
            hit(2, "src/foo.rs", "fn bar", ChunkKind::Function, 1.0),
        ];
        apply("foo::bar", &mut hits, &only(1.0, 1.0, true));
        assert_eq!(ids(&hits), [2, 1], "the module is the file");
    }

    #[test]
    fn priors_that_are_off_change_nothing() {
        let mut hits = vec![
            hit(1, "tests/a.rs", "fn a", ChunkKind::Function, 1.0),
            hit(2, "tests/a.rs", "fn JoinSet", ChunkKind::Function, 0.5),
        ];
        apply("JoinSet", &mut hits, &only(1.0, 1.0, false));
        assert_eq!(ids(&hits), [1, 2]);
        assert!(hits.iter().all(|h| h.priors.is_empty()));
    }
}
