//! The chat prompt for a generated answer: numbered, located sources within a token budget.
//!
//! [`build`] turns the question, the ranked sources and the editor context into a system
//! and a user message. Each source is numbered `[n]` in rank order under a header naming its
//! path, lines, language and symbol, so the model can cite it and `citations` can map the
//! `[n]` markers back. The whole prompt is kept within `max_context_tokens` by the rough
//! estimate of [`estimate_tokens`]: the lowest-ranked sources are dropped first, and the best
//! source is cut at a line boundary when even it alone does not fit.
//!
//! Pure: strings in, messages out. It does not retrieve, call a model, count real tokenizer
//! tokens, or reserve room for the answer (the caller's `max_context_tokens` should leave it).

use crate::chunk::Language;
pub use crate::provider::chat::ChatMessage;

/// A retrieved chunk given to the model as a source; lines are 1-based and inclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSource {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub symbol: Option<String>,
    pub language: Language,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptOptions {
    /// The budget for the whole prompt (system + user), by [`estimate_tokens`].
    pub max_context_tokens: usize,
    /// What the user is looking at: their selection or the symbol at the cursor, with its
    /// path, already formatted. Kept to at most half the budget (cut at a line boundary).
    pub editor_context: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The system message, then the user message.
    pub messages: Vec<ChatMessage>,
    /// How many of the given sources made it into the prompt (the first `used` ones; the rest
    /// were trimmed for the budget). The source numbered `[n]` is `sources[n - 1]`.
    pub used: usize,
    /// [`estimate_tokens`] of the system message plus that of the user message.
    pub estimated_tokens: usize,
}

/// The instructions: grounded, cited, honest about gaps, concise.
pub const SYSTEM_PROMPT: &str = "\
You are a code assistant answering questions about the user's codebase.
Answer only from the numbered sources in the user's message; do not rely on outside knowledge \
about this code.
Cite every claim with the [n] marker of the source it comes from, for example [1] or [2][3]. \
Cite only source numbers that exist.
If the sources are not enough to answer, say so plainly instead of guessing.
Be concise. Use markdown, with code in fenced blocks.";

/// The line that marks where a source's (or the editor context's) text was cut.
pub const TRUNCATED_MARKER: &str = "… (truncated)";

/// Rough token estimate: characters (Unicode scalar values, not bytes) divided by 4,
/// rounded up. About right for English and code with BPE tokenizers; an overestimate for
/// long runs of plain ASCII words, an underestimate for dense non-Latin text.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// Builds the prompt. Sources are given best first. Each source is numbered `[1]`, `[2]`, ...
/// in that order and introduced by a header line like
/// `[1] src/retry.rs:10-24 (rust) impl Client > fn retry` (no symbol when `None`), followed by
/// its code in a fenced block tagged with the language. The user message holds the sources,
/// then the editor context (if any), then the question.
///
/// Budget: sources are dropped from the end until the prompt fits `max_context_tokens`. If
/// even the best source alone does not fit, its text is cut at a line boundary (or, when not
/// even its first line fits, inside that line) and a `… (truncated)` line marks the cut. If
/// not even the cut source fits, no source is used (`used == 0`). The question is never
/// dropped or cut, so a question longer than the budget gives a prompt over budget.
pub fn build(question: &str, sources: &[PromptSource], options: &PromptOptions) -> Prompt {
    let budget = options.max_context_tokens;
    let system = SYSTEM_PROMPT.to_string();
    // ceil(chars / 4) <= t  <=>  chars <= 4t, so the user message may hold this many chars.
    let user_chars_allowed = budget
        .saturating_sub(estimate_tokens(&system))
        .saturating_mul(4);

    let editor = options
        .editor_context
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let editor = editor.map(|context| {
        let cap = (budget / 2)
            .saturating_mul(4)
            .saturating_sub(EDITOR_HEADING.chars().count());
        fit_text(context, cap).unwrap_or_else(|| TRUNCATED_MARKER.to_string())
    });
    let tail = tail_section(question.trim(), editor.as_deref());
    let fixed = chars(SOURCES_HEADING) + chars(&tail);

    let sections: Vec<String> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| source_section(i + 1, s, &s.text))
        .collect();
    let mut used = 0;
    let mut total = fixed;
    for section in &sections {
        let with = total + chars(section);
        if with > user_chars_allowed {
            break;
        }
        total = with;
        used += 1;
    }

    let mut body: Vec<String> = sections.into_iter().take(used).collect();
    if used == 0 {
        if let Some(best) = sources.first() {
            // Room for the code itself: what is left once the section without code is in.
            let empty = chars(&source_section(1, best, ""));
            let room = user_chars_allowed.checked_sub(fixed + empty);
            if let Some(text) = room.and_then(|room| fit_text(&best.text, room)) {
                body.push(source_section(1, best, &text));
                used = 1;
            }
        }
    }

    let sources_block = if body.is_empty() {
        NO_SOURCES.to_string()
    } else {
        body.concat()
    };
    let user = format!("{SOURCES_HEADING}{sources_block}{tail}");
    let estimated_tokens = estimate_tokens(&system) + estimate_tokens(&user);
    Prompt {
        messages: vec![
            ChatMessage {
                role: "system".into(),
                content: system,
            },
            ChatMessage {
                role: "user".into(),
                content: user,
            },
        ],
        used,
        estimated_tokens,
    }
}

const SOURCES_HEADING: &str = "Sources:\n\n";
const NO_SOURCES: &str = "(none were found)\n\n";
const EDITOR_HEADING: &str = "Editor context (what the user is looking at):\n";

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The editor context (if any) and the question, which end the user message.
fn tail_section(question: &str, editor: Option<&str>) -> String {
    match editor {
        Some(context) => format!("{EDITOR_HEADING}{context}\n\nQuestion: {question}"),
        None => format!("Question: {question}"),
    }
}

/// `[n] path:start-end (language) symbol`, then the code fenced, then a blank line.
fn source_section(n: usize, source: &PromptSource, text: &str) -> String {
    let language = source.language.as_str();
    let mut header = format!(
        "[{n}] {}:{}-{} ({language})",
        source.path, source.start_line, source.end_line,
    );
    if let Some(symbol) = source
        .symbol
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        header.push(' ');
        header.push_str(symbol);
    }
    // The fence must be longer than any backtick run in the code, or the code would close it.
    let fence = "`".repeat(longest_backtick_run(&source.text).max(2) + 1);
    let code = text.trim_end_matches(['\n', '\r']);
    format!("{header}\n{fence}{language}\n{code}\n{fence}\n\n")
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `text` (without trailing newlines) if it has at most `max_chars` characters; otherwise
/// its longest prefix of whole lines that, followed by a `… (truncated)` line, does; when not
/// even the first line fits, as much of the first line as fits. `None` when nothing of the
/// text would be left beside the marker.
fn fit_text(text: &str, max_chars: usize) -> Option<String> {
    let text = text.trim_end_matches(['\n', '\r']);
    if chars(text) <= max_chars {
        return Some(text.to_string());
    }
    let marker = chars(TRUNCATED_MARKER);
    let room = max_chars.checked_sub(marker)?;
    let mut kept = String::new();
    let mut kept_chars = 0;
    for line in text.lines() {
        let line_chars = chars(line) + 1; // with its newline
        if kept_chars + line_chars > room {
            break;
        }
        kept.push_str(line);
        kept.push('\n');
        kept_chars += line_chars;
    }
    if kept.is_empty() {
        // Not even one whole line (minified code, say): keep the start of the first line.
        if room < 2 {
            return None;
        }
        kept = text.chars().take(room - 1).collect();
        kept.push('\n');
    }
    kept.push_str(TRUNCATED_MARKER);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, lines: (u32, u32), symbol: Option<&str>, text: &str) -> PromptSource {
        PromptSource {
            path: path.into(),
            start_line: lines.0,
            end_line: lines.1,
            symbol: symbol.map(Into::into),
            language: Language::Rust,
            text: text.into(),
        }
    }

    fn options(max_context_tokens: usize) -> PromptOptions {
        PromptOptions {
            max_context_tokens,
            editor_context: None,
        }
    }

    fn user(prompt: &Prompt) -> &str {
        &prompt.messages[1].content
    }

    /// A source whose text is `lines` lines of 40 characters.
    fn big_source(path: &str, lines: usize) -> PromptSource {
        let text: String = (0..lines)
            .map(|i| format!("let line_{i:05} = \"{}\";\n", "x".repeat(20)))
            .collect();
        source(path, (1, lines as u32), None, &text)
    }

    #[test]
    fn a_small_prompt_numbers_and_locates_its_sources_exactly() {
        let sources = [
            source(
                "src/retry.rs",
                (10, 24),
                Some("impl Client > fn retry"),
                "fn retry(&self) {\n    backoff();\n}\n",
            ),
            PromptSource {
                language: Language::Python,
                ..source("tools/run.py", (3, 3), None, "run()")
            },
        ];
        let prompt = build("  How does retry work?\n", &sources, &options(8000));
        assert_eq!(prompt.used, 2);
        assert_eq!(
            prompt.messages[0],
            ChatMessage {
                role: "system".into(),
                content: SYSTEM_PROMPT.into()
            }
        );
        assert_eq!(prompt.messages[1].role, "user");
        assert_eq!(
            user(&prompt),
            "Sources:\n\
             \n\
             [1] src/retry.rs:10-24 (rust) impl Client > fn retry\n\
             ```rust\n\
             fn retry(&self) {\n    backoff();\n}\n\
             ```\n\
             \n\
             [2] tools/run.py:3-3 (python)\n\
             ```python\n\
             run()\n\
             ```\n\
             \n\
             Question: How does retry work?"
        );
        assert_eq!(
            prompt.estimated_tokens,
            estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(user(&prompt))
        );
    }

    #[test]
    fn the_system_message_asks_for_grounded_cited_concise_markdown_answers() {
        let system = build("q", &[], &options(8000)).messages[0]
            .content
            .to_lowercase();
        for required in [
            "only from the",
            "[n]",
            "not enough",
            "instead of guessing",
            "concise",
            "markdown",
        ] {
            assert!(
                system.contains(required),
                "system prompt lacks {required:?}"
            );
        }
    }

    #[test]
    fn the_editor_context_comes_between_the_sources_and_the_question() {
        let opts = PromptOptions {
            max_context_tokens: 8000,
            editor_context: Some("src/lib.rs:5-6\nfn selected() {}".into()),
        };
        let prompt = build(
            "What is this?",
            &[source("a.rs", (1, 1), None, "a()")],
            &opts,
        );
        assert!(
            user(&prompt).ends_with(
                "```\n\nEditor context (what the user is looking at):\nsrc/lib.rs:5-6\nfn selected() {}\n\nQuestion: What is this?"
            ),
            "{}",
            user(&prompt)
        );
    }

    #[test]
    fn with_no_sources_the_prompt_says_so_and_keeps_the_question() {
        let prompt = build("Where is X?", &[], &options(8000));
        assert_eq!(prompt.used, 0);
        assert_eq!(
            user(&prompt),
            "Sources:\n\n(none were found)\n\nQuestion: Where is X?"
        );
    }

    #[test]
    fn code_containing_a_fence_gets_a_longer_fence() {
        let prompt = build(
            "q",
            &[source("README.md", (1, 3), None, "```sh\nmake\n```")],
            &options(8000),
        );
        assert!(
            user(&prompt).contains("\n````rust\n```sh\nmake\n```\n````\n"),
            "{}",
            user(&prompt)
        );
    }

    #[test]
    fn the_lowest_ranked_sources_are_dropped_first_to_fit_the_budget() {
        let sources: Vec<PromptSource> = (0..6)
            .map(|i| big_source(&format!("f{i}.rs"), 40))
            .collect();
        // Each source is ~420 tokens; leave room for about three of them.
        let budget = estimate_tokens(SYSTEM_PROMPT) + 20 + 3 * 430;
        let prompt = build("q", &sources, &options(budget));
        assert_eq!(prompt.used, 3);
        assert!(prompt.estimated_tokens <= budget);
        let text = user(&prompt);
        assert!(
            text.contains("[1] f0.rs") && text.contains("[2] f1.rs") && text.contains("[3] f2.rs")
        );
        assert!(!text.contains("f3.rs") && !text.contains("[4]"));
        assert!(
            !text.contains(TRUNCATED_MARKER),
            "whole sources are dropped, not cut"
        );
        assert!(text.ends_with("Question: q"));
    }

    #[test]
    fn a_best_source_too_big_alone_is_cut_at_a_line_boundary() {
        let sources = [big_source("huge.rs", 5000), big_source("next.rs", 10)];
        let budget = 1000;
        let prompt = build("Why?", &sources, &options(budget));
        assert_eq!(prompt.used, 1);
        assert!(
            prompt.estimated_tokens <= budget,
            "{} > {budget}",
            prompt.estimated_tokens
        );
        assert!(
            prompt.estimated_tokens > budget - 20,
            "the cut uses the room there is"
        );
        let text = user(&prompt);
        assert!(text.contains("[1] huge.rs:1-5000 (rust)"));
        assert!(!text.contains("next.rs"));
        // Whole lines are kept, then the marker line, then the closing fence.
        assert!(
            text.contains(&format!("\";\n{TRUNCATED_MARKER}\n```\n\nQuestion: Why?")),
            "{text}"
        );
        assert!(text.contains("let line_00000 = "));
    }

    #[test]
    fn a_single_huge_line_is_cut_inside_the_line() {
        let minified = "x".repeat(100_000);
        let prompt = build(
            "q",
            &[source("min.js", (1, 1), None, &minified)],
            &options(500),
        );
        assert_eq!(prompt.used, 1);
        assert!(prompt.estimated_tokens <= 500);
        assert!(user(&prompt).contains(&format!("xxx\n{TRUNCATED_MARKER}\n```")));
    }

    #[test]
    fn the_question_is_kept_even_when_nothing_else_fits() {
        let question = "why ".repeat(1000);
        let prompt = build(&question, &[big_source("a.rs", 10)], &options(100));
        assert_eq!(prompt.used, 0);
        assert!(user(&prompt).ends_with(question.trim()));
        assert!(
            prompt.estimated_tokens > 100,
            "over budget, honestly reported"
        );
    }

    #[test]
    fn a_huge_editor_context_is_cut_to_half_the_budget_leaving_room_for_sources() {
        let selection: String = (0..2000).map(|i| format!("selected line {i}\n")).collect();
        let opts = PromptOptions {
            max_context_tokens: 2000,
            editor_context: Some(selection),
        };
        let prompt = build("q", &[big_source("a.rs", 20)], &opts);
        assert_eq!(prompt.used, 1);
        assert!(prompt.estimated_tokens <= 2000);
        let text = user(&prompt);
        assert!(text.contains("selected line 0\n"));
        assert!(
            text.contains(&format!("\n{TRUNCATED_MARKER}\n\nQuestion: q")),
            "{text}"
        );
    }

    #[test]
    fn at_any_budget_a_prompt_with_sources_fits_and_more_budget_never_uses_fewer() {
        let sources: Vec<PromptSource> = [300, 5, 80, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| big_source(&format!("f{i}.rs"), n))
            .collect();
        let opts = |max_context_tokens| PromptOptions {
            max_context_tokens,
            editor_context: Some("src/x.rs:1-1\nfn x() {}".into()),
        };
        let mut previous_used = 0;
        for budget in (0..6000).step_by(7) {
            let prompt = build("How?", &sources, &opts(budget));
            if prompt.used > 0 {
                assert!(
                    prompt.estimated_tokens <= budget,
                    "budget {budget}: {}",
                    prompt.estimated_tokens
                );
            }
            assert!(prompt.used >= previous_used, "budget {budget}");
            previous_used = prompt.used;
        }
        assert_eq!(previous_used, 4);
    }

    #[test]
    fn a_zero_budget_uses_no_source_but_still_asks() {
        let prompt = build("q", &[big_source("a.rs", 3)], &options(0));
        assert_eq!(prompt.used, 0);
        assert!(user(&prompt).ends_with("Question: q"));
    }

    #[test]
    fn the_estimate_is_characters_over_four_rounded_up() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // Characters, not bytes: four 2-byte characters are one token.
        assert_eq!(estimate_tokens("éééé"), 1);
    }
}
