//! Specifications of the language server (`ragls serve --stdio`, PROTOCOL.md): lifecycle and
//! capabilities, indexing progress and status, the custom `rag/*` requests, streamed and
//! cancelled answers, unsaved buffers, hover within its budget, code actions and commands,
//! workspace symbols, watched files and renames, bad input, settings, restarts and
//! multi-root workspaces.
//!
//! Every test drives the real binary over stdio with the JSON-RPC client of
//! `support/lsp_client.rs` (which also fails on any non-JSON-RPC byte on stdout), in a
//! sandbox of its own (fake HOME and XDG folders). Offline tests have no API key; the
//! generation tests point the server at the fake OpenRouter of `support/fake_provider.rs`.

use crate::common;
use crate::fake_provider;
use crate::lsp_client;

use common::{chat_messages, prompt_headers, Expect, Sandbox, BIN, FIXTURE, KEY};
use fake_provider::{Endpoint, Failure, FakeProvider};
use lsp_client::{
    file_uri, Incoming, LspClient, ServerOptions, INVALID_PARAMS, METHOD_NOT_FOUND,
    REQUEST_CANCELLED,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long indexing the small fixture may take before a test gives up (a generous bound
/// for slow CI machines; not a performance assertion).
const READY: Duration = Duration::from_secs(120);
/// How long an incremental update (a buffer edit, a watched file) may take to show.
const VISIBLE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Client capabilities of an editor that shows work-done progress.
fn progress_caps() -> Value {
    json!({
        "window": { "workDoneProgress": true },
        "workspace": { "workspaceFolders": true, "configuration": false },
        "textDocument": { "hover": { "contentFormat": ["markdown", "plaintext"] } }
    })
}

/// Starts an offline server (no API key) in the sandbox's fake home.
fn start(sb: &Sandbox) -> LspClient {
    LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()))
}

/// Starts a server with the fake provider's key in its environment.
fn start_with_key(sb: &Sandbox) -> LspClient {
    LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()).env("OPENROUTER_API_KEY", KEY))
}

/// The workspace folder as the server sees it (canonical).
fn ws(sb: &Sandbox) -> PathBuf {
    sb.ws.canonicalize().expect("canonical workspace")
}

fn uri(root: &Path, rel: &str) -> String {
    file_uri(&root.join(rel))
}

/// Starts an offline server on the fixture project, initialised and indexed.
fn ready_offline(sb: &Sandbox) -> LspClient {
    let c = start(sb);
    c.initialize(&[&ws(sb)], Value::Null, progress_caps());
    c.wait_ready(READY);
    c
}

/// Writes `.ragls.toml` pointing the provider at the fake, and starts an initialised
/// server with the key, waiting until the (remote) index is ready.
fn ready_with_fake(sb: &Sandbox, fake: &FakeProvider, extra_toml: &str) -> LspClient {
    sb.write(
        ".ragls.toml",
        format!(
            "[provider]\nbase_url = \"{}\"\nmax_retries = 1\ntimeout_s = 60\n{extra_toml}\n",
            fake.base_url()
        ),
    );
    let c = start_with_key(sb);
    c.initialize(&[&ws(sb)], Value::Null, progress_caps());
    let status = c.wait_ready(READY);
    assert_eq!(
        status["embedding"]["provider"], "remote",
        "with a key, embeddings come from the provider: {status}"
    );
    c
}

fn search(c: &LspClient, query: &str) -> Vec<Value> {
    search_k(c, query, 10)
}

fn search_k(c: &LspClient, query: &str, top_k: usize) -> Vec<Value> {
    let r = c.request_ok("rag/search", json!({ "query": query, "topK": top_k }));
    r["results"]
        .as_array()
        .unwrap_or_else(|| panic!("rag/search: no results array in {r}"))
        .clone()
}

/// Results in short form, for failure messages.
fn brief(results: &[Value]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "  {} {}-{} {} ({}) {}",
                r["uri"],
                r["range"]["start"]["line"],
                r["range"]["end"]["line"],
                r["symbol"],
                r["kind"],
                r["score"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The LSP range of 1-based inclusive lines `start..=end` of `text`: from the start of the
/// first line to the end of the last.
fn lsp_range(text: &str, start: u64, end: u64) -> Value {
    let last = text.lines().nth(end as usize - 1).unwrap_or("");
    json!({
        "start": { "line": start - 1, "character": 0 },
        "end": { "line": end - 1, "character": last.encode_utf16().count() },
    })
}

/// Whether a search result is the expected function, by URI and exact range.
fn is_expected(r: &Value, root: &Path, e: &Expect) -> bool {
    let text = common::fixture_text(e.path);
    r["uri"] == uri(root, e.path) && r["range"] == lsp_range(text, e.start_line, e.end_line)
}

/// Polls `f` every 50 ms until it returns `Some`, up to `timeout`.
fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The 0-based line of the only line of `text` containing `needle`.
fn line0(text: &str, needle: &str) -> u32 {
    common::line_of(text, needle) as u32 - 1
}

/// The 0-based (line, UTF-16 column) of the first occurrence of `needle` in `text`.
fn position_of(text: &str, needle: &str) -> (u32, u32) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let col = before
        .rsplit('\n')
        .next()
        .unwrap_or("")
        .encode_utf16()
        .count() as u32;
    (line, col)
}

fn did_open(c: &LspClient, uri: &str, language: &str, version: i64, text: &str) {
    c.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri, "languageId": language, "version": version, "text": text } }),
    );
}

/// An incremental `didChange`: one edit replacing `range` by `text`.
fn did_change(c: &LspClient, uri: &str, version: i64, range: Value, text: &str) {
    c.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [ { "range": range, "text": text } ],
        }),
    );
}

fn point(line: u32, character: u32) -> Value {
    json!({ "line": line, "character": character })
}

fn at(line: u32, character: u32) -> Value {
    json!({ "start": point(line, character), "end": point(line, character) })
}

/// `$/progress` params with this token received after message `mark`, in order.
fn progress_of(c: &LspClient, token: &Value, mark: usize) -> Vec<(usize, Value)> {
    c.messages_since(mark)
        .into_iter()
        .filter(|m| m.is_notification() && m.method() == Some("$/progress"))
        .filter(|m| &m.params()["token"] == token)
        .map(|m| (m.seq, m.params()["value"].clone()))
        .collect()
}

/// Applies LSP text edits (non-overlapping) to `text`.
fn apply_edits(text: &str, edits: &[Value]) -> String {
    let offset = |pos: &Value| -> usize {
        let line = pos["line"].as_u64().unwrap() as usize;
        let ch = pos["character"].as_u64().unwrap() as usize;
        let mut off = 0;
        for (i, l) in text.split_inclusive('\n').enumerate() {
            if i == line {
                let mut units = 0;
                for (b, c) in l.char_indices() {
                    if units >= ch {
                        return off + b;
                    }
                    units += c.len_utf16();
                }
                return off + l.trim_end_matches('\n').len();
            }
            off += l.len();
        }
        text.len()
    };
    let mut spans: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    spans.sort_by(|a, b| b.0.cmp(&a.0));
    let mut out = text.to_string();
    for (s, e, t) in spans {
        out.replace_range(s..e, &t);
    }
    out
}

// ---------------------------------------------------------------------------------------
// 1. Lifecycle, capabilities, indexing progress and status
// ---------------------------------------------------------------------------------------

#[test]
fn initialize_advertises_the_features_and_indexing_reports_progress_then_ready() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = start(&sb);
    let init = c.initialize(&[&root], Value::Null, progress_caps());

    let caps = &init["capabilities"];
    assert_eq!(caps["hoverProvider"], true, "{caps}");
    assert!(
        caps["codeActionProvider"] == true || caps["codeActionProvider"].is_object(),
        "{caps}"
    );
    let commands: Vec<&str> = caps["executeCommandProvider"]["commands"]
        .as_array()
        .unwrap_or_else(|| panic!("no executeCommandProvider.commands in {caps}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for cmd in [
        "ragls.ask",
        "ragls.explain",
        "ragls.related",
        "ragls.reindex",
    ] {
        assert!(commands.contains(&cmd), "{cmd} missing from {commands:?}");
    }
    assert_eq!(caps["workspaceSymbolProvider"], true, "{caps}");
    let sync = &caps["textDocumentSync"];
    assert_eq!(sync["change"], 2, "incremental sync: {sync}");
    assert_eq!(sync["openClose"], true, "{sync}");
    assert_eq!(
        caps["workspace"]["workspaceFolders"]["supported"], true,
        "{caps}"
    );
    assert_eq!(
        caps["workspace"]["workspaceFolders"]["changeNotifications"], true,
        "{caps}"
    );
    assert_eq!(init["serverInfo"]["name"], "ragls", "{init}");

    let status = c.wait_ready(READY);

    // Progress: created by the server, then begin "Indexing" "0/N files" ... end.
    let creates = c.server_requests("window/workDoneProgress/create");
    assert!(!creates.is_empty(), "the server creates a progress token");
    let token = creates[0].params()["token"].clone();
    assert!(
        c.wait_for(VISIBLE, |_| {
            progress_of(&c, &token, 0)
                .last()
                .is_some_and(|(_, v)| v["kind"] == "end")
        }),
        "indexing progress ends"
    );
    let progress = progress_of(&c, &token, 0);
    let (create_seq, begin) = (creates[0].seq, &progress[0].1);
    assert!(
        create_seq < progress[0].0,
        "create comes before the first $/progress"
    );
    assert_eq!(begin["kind"], "begin", "{progress:?}");
    assert_eq!(begin["title"], "Indexing", "{begin}");
    assert_eq!(
        begin["message"],
        format!("0/{} files", FIXTURE.len()),
        "the begin message counts the files to index"
    );
    for (_, v) in &progress[1..progress.len() - 1] {
        assert_eq!(v["kind"], "report", "{progress:?}");
        let msg = v["message"].as_str().unwrap_or("");
        assert!(
            msg.ends_with(&format!("/{} files", FIXTURE.len())),
            "report message like \"k/N files\": {v}"
        );
        assert!(v["percentage"].as_u64().is_some_and(|p| p <= 100), "{v}");
    }
    assert_eq!(progress.last().unwrap().1["kind"], "end", "{progress:?}");

    // rag/statusChanged: indexing, then ready last. The notification may trail the
    // `rag/status` reply that `wait_ready` saw, so wait for it rather than snapshot.
    let ready_last = |log: &[Incoming]| {
        log.iter()
            .filter(|m| m.is_notification() && m.method() == Some("rag/statusChanged"))
            .last()
            .is_some_and(|m| m.params()["state"] == "ready")
    };
    assert!(
        c.wait_for(VISIBLE, ready_last),
        "rag/statusChanged ends with ready"
    );
    let changes = c.notification_params("rag/statusChanged");
    let states: Vec<&str> = changes.iter().filter_map(|s| s["state"].as_str()).collect();
    assert!(states.contains(&"indexing"), "{states:?}");
    assert_eq!(states.last(), Some(&"ready"), "{states:?}");

    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["files"], FIXTURE.len() as u64, "{status}");
    assert!(
        status["chunks"]
            .as_u64()
            .is_some_and(|n| n > status["files"].as_u64().unwrap()),
        "{status}"
    );
    assert_eq!(status["pendingFiles"], 0, "{status}");
    assert!(
        status["indexBytes"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    assert_eq!(status["embedding"]["provider"], "builtin", "{status}");
    assert!(
        status["embedding"]["dimensions"]
            .as_u64()
            .is_some_and(|d| d > 0),
        "{status}"
    );

    c.shutdown_and_exit();
}

#[test]
fn exit_without_shutdown_ends_the_process_with_code_1() {
    let sb = Sandbox::with_project();
    let mut c = ready_offline(&sb);
    c.notify("exit", Value::Null);
    let status = c
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| c.fail("no exit within 20 s"));
    assert_eq!(
        status.code(),
        Some(1),
        "LSP: exit without shutdown is code 1"
    );
    c.assert_clean_stdout();
}

// ---------------------------------------------------------------------------------------
// 2. rag/search and offline rag/ask
// ---------------------------------------------------------------------------------------

#[test]
fn search_returns_sources_with_file_uris_and_the_functions_real_zero_based_ranges() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);

    let cases = [
        ("evict the least recently used entry", common::lru_evict()),
        (
            "retry a request with exponential backoff",
            common::retry_with_backoff(),
        ),
        (
            "parse the HTTP request line into method, target and version",
            common::parse_request_line(),
        ),
        (
            "token bucket rate limiter: may this request pass?",
            common::token_bucket_allow(),
        ),
    ];
    for (q, e) in cases {
        let results = search(&c, q);
        let hit = results
            .iter()
            .take(3)
            .find(|r| is_expected(r, &root, &e))
            .unwrap_or_else(|| {
                panic!(
                    "{q:?}: expected {} lines {}-{} (0-based {}-{}) in the top 3, got:\n{}",
                    e.path,
                    e.start_line,
                    e.end_line,
                    e.start_line - 1,
                    e.end_line - 1,
                    brief(&results)
                )
            });
        assert_eq!(hit["symbol"], e.symbol, "{hit}");
        assert_eq!(hit["kind"], e.kind, "{hit}");
        let lang = match e.path.rsplit('.').next().unwrap() {
            "rs" => "rust",
            "py" => "python",
            "go" => "go",
            other => other,
        };
        assert_eq!(hit["language"], lang, "{hit}");
        assert!(hit["score"].is_number(), "{hit}");
        let name = e.symbol.rsplit(' ').next().unwrap();
        assert!(
            hit["snippet"].as_str().is_some_and(|s| s.contains(name)),
            "the snippet shows the function: {hit}"
        );
    }
    let two = search_k(&c, "evict the least recently used entry", 2);
    assert_eq!(two.len(), 2, "topK is respected");
    c.shutdown_and_exit();
}

#[test]
fn search_with_explain_gives_each_source_why_it_ranked_there_and_not_by_default() {
    let sb = Sandbox::with_project();
    let c = ready_offline(&sb);
    let q = "evict the least recently used entry";
    let plain = search(&c, q);
    assert!(
        plain.iter().all(|r| r.get("explain").is_none()),
        "no explain unless asked: {}",
        brief(&plain)
    );

    let fused = c.request_ok(
        "rag/search",
        json!({ "query": q, "topK": 5, "rerank": false, "explain": true }),
    );
    let fused = fused["results"].as_array().expect("results").clone();
    assert!(!fused.is_empty());
    for (i, r) in fused.iter().enumerate() {
        let e = &r["explain"];
        assert_eq!(e["fused"]["rank"], i + 1, "fused order without rerank: {r}");
        assert_eq!(e["fused"]["score"].as_f64(), r["score"].as_f64(), "{r}");
        assert!(
            e.get("lexical").is_some() || e.get("vector").is_some(),
            "{r}"
        );
        assert!(e.get("offline").is_none(), "{r}");
    }

    let reranked = c.request_ok("rag/search", json!({ "query": q, "explain": true }));
    let reranked = reranked["results"].as_array().expect("results").clone();
    assert_eq!(plain.len(), reranked.len());
    for (a, b) in plain.iter().zip(&reranked) {
        assert_eq!(a["uri"], b["uri"], "explain does not change the results");
        let o = &b["explain"]["offline"];
        assert_eq!(o["score"].as_f64(), b["score"].as_f64(), "{b}");
        assert!(o["name"].is_number() && o["kind"].is_number(), "{b}");
        assert!(b["explain"]["fused"]["rank"].as_u64() >= Some(1), "{b}");
    }
    c.shutdown_and_exit();
}

#[test]
fn ask_offline_is_extractive_with_numbered_citations_pointing_at_the_sources() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);

    let r = c.request_ok(
        "rag/ask",
        json!({ "query": "how are failed requests retried with exponential backoff?" }),
    );
    assert_eq!(r["mode"], "extractive", "{r}");
    let answer = r["answer"].as_str().expect("answer");
    assert!(answer.contains("[1]"), "{answer}");
    let citations = r["citations"].as_array().expect("citations");
    let sources = r["sources"].as_array().expect("sources");
    assert!(!citations.is_empty(), "{r}");
    let e = common::retry_with_backoff();
    let text = common::fixture_text(e.path);
    assert!(
        citations.iter().any(|c| c["uri"] == uri(&root, e.path)
            && c["range"] == lsp_range(text, e.start_line, e.end_line)),
        "the retry helper is cited with its range: {r}"
    );
    for (k, cit) in citations.iter().enumerate() {
        assert_eq!(cit["n"], k as u64 + 1, "{cit}");
        assert!(
            cit["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("file:///")),
            "{cit}"
        );
        assert!(cit["range"]["start"]["line"].is_u64(), "{cit}");
        assert!(cit["snippet"].is_string(), "{cit}");
        // Offline, the answer lists the sources in order: citation n is source n.
        assert_eq!(cit["uri"], sources[k]["uri"], "{r}");
        assert_eq!(cit["range"], sources[k]["range"], "{r}");
    }
    assert!(r["models"]["embedding"].is_string(), "{r}");
    assert!(r["timings"]["retrieveMs"].is_u64(), "{r}");
    assert!(r.get("usage").is_none() || r["usage"].is_null(), "{r}");
    c.shutdown_and_exit();
}

#[test]
fn offline_ask_streams_its_whole_answer_as_one_delta_before_the_result() {
    let sb = Sandbox::with_project();
    let c = ready_offline(&sb);
    let mark = c.mark();
    let id = c.send_request(
        "rag/ask",
        json!({ "query": "how does the LRU cache evict entries?", "partialResultToken": 7 }),
    );
    let resp = c
        .wait_response(id, Duration::from_secs(60))
        .unwrap_or_else(|| c.fail("no rag/ask response"));
    let r = &resp.message["result"];
    assert_eq!(r["mode"], "extractive", "{}", resp.message);
    // Let a late delta arrive, so that "late" and "missing" are told apart.
    c.wait_for(Duration::from_millis(500), |_| false);
    let mut deltas = progress_of(&c, &json!(7), mark);
    // First the numbered sources (issue 12: `[n]` is `sources[n-1]` from the start).
    assert!(!deltas.is_empty(), "no progress");
    let (_, first) = deltas.remove(0);
    assert_eq!(first["sources"], r["sources"], "the sources come first");
    assert_eq!(deltas.len(), 1, "one delta: {deltas:?}");
    assert_eq!(
        deltas[0].1["answerDelta"], r["answer"],
        "the delta is the whole answer"
    );
    assert!(
        deltas[0].0 < resp.seq,
        "the delta must arrive before the result (delta is message #{}, the result #{})",
        deltas[0].0,
        resp.seq
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 3. Generation with a provider: citations, streamed deltas, stage progress
// ---------------------------------------------------------------------------------------

#[test]
fn ask_with_a_provider_generates_streams_the_answer_and_reports_its_stages() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let answer = "Failed requests are retried with exponential backoff [1]. The delay doubles after every attempt [1][2].";
    fake.set_chat_answer(Some(answer.to_string()));
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_with_fake(&sb, &fake, "");
    fake.reset();

    let mark = c.mark();
    let id = c.send_request(
        "rag/ask",
        json!({
            "query": "how are failed requests retried with exponential backoff?",
            "partialResultToken": "tok",
            "workDoneToken": "work-1",
        }),
    );
    let resp = c
        .wait_response(id, Duration::from_secs(60))
        .unwrap_or_else(|| c.fail("no rag/ask response"));
    let r = resp
        .message
        .get("result")
        .cloned()
        .unwrap_or_else(|| c.fail(&format!("{}", resp.message)));

    assert_eq!(r["mode"], "generated", "{r}");
    let chats = fake.requests_to(Endpoint::Chat);
    assert_eq!(chats.len(), 1, "one chat request");
    let (_, user) = chat_messages(&chats[0].body);
    let headers = prompt_headers(&user);
    assert!(headers.len() >= 2, "{user}");

    // Citations: [1] and [2] are the prompt's sources 1 and 2, as file URIs and ranges.
    let citations = r["citations"].as_array().expect("citations");
    assert_eq!(citations.len(), 2, "{r}");
    for (k, cit) in citations.iter().enumerate() {
        let h = &headers[k];
        assert_eq!(cit["n"], k as u64 + 1, "{cit}");
        assert_eq!(cit["uri"], uri(&root, &h.path), "{cit} vs {h:?}");
        assert_eq!(
            cit["range"]["start"]["line"],
            h.start_line - 1,
            "{cit} vs {h:?}"
        );
        assert_eq!(
            cit["range"]["end"]["line"],
            h.end_line - 1,
            "{cit} vs {h:?}"
        );
    }
    let sources = r["sources"].as_array().expect("sources");
    assert_eq!(
        sources.len(),
        headers.len(),
        "sources are the prompt's: {r}"
    );
    assert_eq!(
        citations[0]["uri"],
        uri(&root, "client/retry.py"),
        "the retry helper is the best source: {r}"
    );
    let usage = &r["usage"];
    assert!(usage["promptTokens"].as_u64().is_some_and(|n| n > 0), "{r}");
    assert!(
        usage["completionTokens"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    assert!(r["timings"]["generateMs"].is_u64(), "{r}");
    assert!(r["models"]["chat"].is_string(), "{r}");

    // The streamed deltas, all before the result, concatenate to the raw answer. Before
    // them, the numbered sources the `[n]` markers refer to.
    let mut deltas = progress_of(&c, &json!("tok"), mark);
    assert!(!deltas.is_empty(), "no progress");
    let (_, first) = deltas.remove(0);
    assert_eq!(first["sources"], r["sources"], "the sources come first");
    assert!(
        deltas.len() >= 2,
        "the answer streams in pieces: {deltas:?}"
    );
    let streamed: String = deltas
        .iter()
        .map(|(_, v)| {
            v["answerDelta"]
                .as_str()
                .unwrap_or_else(|| panic!("not an answerDelta: {v}"))
        })
        .collect();
    assert_eq!(streamed, answer);
    assert!(
        deltas.iter().all(|(seq, _)| *seq < resp.seq),
        "every delta arrives before the final result"
    );

    // Stage progress on the workDoneToken: begin, report "Generating", end, all before
    // the result (the token is only valid until the response).
    assert!(
        c.wait_for(Duration::from_secs(5), |_| progress_of(
            &c,
            &json!("work-1"),
            mark
        )
        .iter()
        .any(|(_, v)| v["kind"] == "end")),
        "the stage progress ends: {:?}",
        progress_of(&c, &json!("work-1"), mark)
    );
    let stages = progress_of(&c, &json!("work-1"), mark);
    assert_eq!(stages[0].1["kind"], "begin", "{stages:?}");
    assert!(
        stages
            .iter()
            .any(|(_, v)| v["kind"] == "report" && v["message"] == "Generating"),
        "{stages:?}"
    );
    let (end_seq, end) = stages.last().unwrap();
    assert_eq!(end["kind"], "end", "{stages:?}");
    assert!(
        *end_seq < resp.seq,
        "the stage progress must end before the result (end is message #{end_seq}, the result #{})",
        resp.seq
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 4. Unsaved buffers
// ---------------------------------------------------------------------------------------

const NEW_FN: &str = "
/// Reconciles the quokka ledger against the zanzibar statement, line by line, so
/// that the nightly audit can flag mismatched totals before anyone notices them.
pub fn reconcile_quokka_ledger(entries: &[i64], statement: i64) -> bool {
    let total: i64 = entries.iter().copied().sum();
    let mismatch = (total - statement).abs();
    mismatch == 0 && !entries.is_empty()
}
";

const WOMBAT_FN: &str = "
/// Tallies the wombat receipts of one warehouse shift and reports the grand total
/// in cents, ignoring receipts that were voided by the shift supervisor later on.
pub fn tally_wombat_receipts(receipts: &[(i64, bool)]) -> i64 {
    receipts.iter().filter(|(_, voided)| !voided).map(|(cents, _)| cents).sum()
}
";

/// The results whose snippet contains `name`.
fn hits_naming(c: &LspClient, query: &str, name: &str) -> Vec<Value> {
    search(c, query)
        .into_iter()
        .filter(|r| r["snippet"].as_str().is_some_and(|s| s.contains(name)))
        .collect()
}

#[test]
fn unsaved_edits_are_searchable_in_version_order_and_closing_the_buffer_restores_the_disk() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let rel = "src/cache/lru.rs";
    let u = uri(&root, rel);
    let disk = sb.read(rel);
    did_open(&c, &u, "rust", 1, &disk);

    // v2: a new function at the end of the buffer, never saved.
    let end_line = disk.lines().count() as u32;
    did_change(&c, &u, 2, at(end_line, 0), NEW_FN);
    let buffer = format!("{disk}{NEW_FN}");
    let hit = poll(VISIBLE, || {
        hits_naming(&c, "reconcile quokka ledger", "reconcile_quokka_ledger")
            .into_iter()
            .next()
    })
    .unwrap_or_else(|| c.fail("the unsaved function never became searchable"));
    assert_eq!(hit["uri"], u, "{hit}");
    let doc = line0(&buffer, "/// Reconciles the quokka ledger");
    let last = buffer.lines().count() as u32 - 1;
    let (fn_line, _) = position_of(&buffer, "pub fn reconcile_quokka_ledger");
    let start = hit["range"]["start"]["line"].as_u64().unwrap() as u32;
    let end = hit["range"]["end"]["line"].as_u64().unwrap() as u32;
    assert!(
        start <= fn_line && fn_line <= end && end <= last,
        "the range {start}-{end} covers the function (line {fn_line}) inside the buffer (0..={last})"
    );
    assert_eq!(
        (start, end),
        (doc, last),
        "the new function's chunk is its doc comment to its closing brace"
    );
    assert_eq!(sb.read(rel), disk, "nothing was written to disk");

    // v4 arrives before v3; v4 renames what v3 inserts. The buffer ends up with both applied.
    let after_v2 = buffer.lines().count() as u32;
    let after_v3 = format!("{buffer}{WOMBAT_FN}");
    let (l, col) = position_of(&after_v3, "tally_wombat_receipts");
    let rename = json!({ "start": point(l, col), "end": point(l, col + "tally_wombat_receipts".len() as u32) });
    did_change(&c, &u, 4, rename, "tally_wombat_invoices");
    did_change(&c, &u, 3, at(after_v2, 0), WOMBAT_FN);
    let hit = poll(VISIBLE, || {
        hits_naming(&c, "tally wombat invoices", "tally_wombat_invoices")
            .into_iter()
            .next()
    })
    .unwrap_or_else(|| c.fail("the out-of-order edits never showed"));
    assert_eq!(hit["uri"], u, "{hit}");
    assert!(
        hits_naming(&c, "tally wombat receipts", "tally_wombat_receipts").is_empty(),
        "the intermediate name (v3) was replaced by v4"
    );
    let (fn_line, _) = position_of(&after_v3, "pub fn tally_wombat_");
    let start = hit["range"]["start"]["line"].as_u64().unwrap() as u32;
    let end = hit["range"]["end"]["line"].as_u64().unwrap() as u32;
    assert!(start <= fn_line && fn_line <= end, "{hit}");
    // The v2 function is still there, at the same place.
    assert!(!hits_naming(&c, "reconcile quokka ledger", "reconcile_quokka_ledger").is_empty());

    // A stale version is ignored.
    did_change(&c, &u, 3, at(0, 0), "fn stale_version_marmot_text() {}\n");

    // Closing the unsaved buffer: the disk content counts again.
    c.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": u } }),
    );
    let gone = poll(VISIBLE, || {
        (hits_naming(&c, "reconcile quokka ledger", "reconcile_quokka_ledger").is_empty()
            && hits_naming(&c, "tally wombat invoices", "tally_wombat").is_empty())
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "closing the buffer forgets its unsaved functions"
    );
    assert!(
        hits_naming(&c, "stale version marmot", "stale_version_marmot").is_empty(),
        "the stale change was never applied"
    );
    let disk_lines = disk.lines().count() as u64;
    for r in search(&c, "evict the least recently used entry") {
        if r["uri"] == u {
            assert!(
                r["range"]["end"]["line"].as_u64().unwrap() < disk_lines,
                "ranges fit the disk text again: {r}"
            );
        }
    }
    assert!(
        search(&c, "evict the least recently used entry")
            .iter()
            .take(3)
            .any(|r| is_expected(r, &root, &common::lru_evict())),
        "the disk's functions are found at their disk lines again"
    );
    c.shutdown_and_exit();
}

#[test]
fn an_edited_open_buffer_is_indexed_so_it_is_not_counted_as_pending() {
    // pendingFiles is what a re-index would still touch; an open buffer is indexed from
    // its text, and a re-index skips it.
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let u = uri(&root, "src/cache/lru.rs");
    let disk = sb.read("src/cache/lru.rs");
    did_open(&c, &u, "rust", 1, &disk);
    did_change(&c, &u, 2, at(disk.lines().count() as u32, 0), NEW_FN);
    assert!(poll(VISIBLE, || hits_naming(
        &c,
        "reconcile quokka ledger",
        "reconcile_quokka_ledger"
    )
    .first()
    .cloned())
    .is_some());
    // An incremental run while the buffer is open (e.g. after a watched-file event).
    let mark = c.mark();
    c.request_ok("rag/reindex", json!({}));
    c.wait_notification("rag/statusChanged", mark, READY, |s| s["state"] == "ready");
    let status = c.status();
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(
        status["pendingFiles"], 0,
        "an open, edited buffer is indexed, not pending: {status}"
    );
    // Closed again: the disk's text is indexed, nothing pending either.
    c.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": u } }),
    );
    assert!(poll(VISIBLE, || hits_naming(
        &c,
        "reconcile quokka ledger",
        "reconcile_quokka_ledger"
    )
    .is_empty()
    .then_some(()))
    .is_some());
    assert_eq!(c.status()["pendingFiles"], 0, "{}", c.status());
    c.shutdown_and_exit();
}

#[test]
fn a_buffer_for_a_file_not_yet_on_disk_is_searchable_until_it_is_closed() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let u = uri(&root, "src/scratch.rs");
    did_open(&c, &u, "rust", 1, NEW_FN);
    let hit = poll(VISIBLE, || {
        hits_naming(&c, "reconcile quokka ledger", "reconcile_quokka_ledger")
            .into_iter()
            .next()
    })
    .unwrap_or_else(|| c.fail("the new buffer never became searchable"));
    assert_eq!(hit["uri"], u, "{hit}");
    c.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": u } }),
    );
    assert!(
        poll(VISIBLE, || search(&c, "reconcile quokka ledger")
            .iter()
            .all(|r| r["uri"] != u)
            .then_some(()))
        .is_some(),
        "a closed buffer of a file that is not on disk leaves the index"
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 5. Cancellation
// ---------------------------------------------------------------------------------------

#[test]
fn cancelling_an_ask_answers_request_cancelled_and_closes_the_upstream_stream() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.set_chat_answer(Some(
        "Retries wait longer after each failure [1], doubling the delay every time until the attempts run out [1]."
            .into(),
    ));
    let sb = Sandbox::with_project();
    let c = ready_with_fake(&sb, &fake, "");
    fake.reset();
    fake.set_event_gap(Duration::from_millis(500));

    let mark = c.mark();
    let id = c.send_request(
        "rag/ask",
        json!({ "query": "how are failed requests retried?", "partialResultToken": "cancel-me" }),
    );
    let first = c.wait_notification("$/progress", mark, Duration::from_secs(60), |p| {
        p["token"] == "cancel-me" && p["value"]["answerDelta"].is_string()
    });
    assert!(first.is_some(), "the answer starts streaming");
    c.notify("$/cancelRequest", json!({ "id": id }));
    let resp = c
        .wait_response(id, Duration::from_secs(10))
        .unwrap_or_else(|| c.fail("no response to the cancelled request"));
    assert_eq!(
        resp.message["error"]["code"], REQUEST_CANCELLED,
        "a cancelled request answers RequestCancelled: {}",
        resp.message
    );
    assert!(
        poll(Duration::from_secs(5), || (fake.disconnects() >= 1)
            .then_some(()))
        .is_some(),
        "the upstream stream is dropped at once (disconnects: {})",
        fake.disconnects()
    );
    // The server goes on.
    fake.set_event_gap(Duration::from_millis(5));
    let r = c.request_ok(
        "rag/ask",
        json!({ "query": "how are failed requests retried?" }),
    );
    assert_eq!(r["mode"], "generated", "{r}");
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 6. Hover
// ---------------------------------------------------------------------------------------

fn hover(c: &LspClient, u: &str, pos: (u32, u32)) -> Value {
    c.request_ok(
        "textDocument/hover",
        json!({ "textDocument": { "uri": u }, "position": point(pos.0, pos.1) }),
    )
}

fn hover_text(h: &Value) -> String {
    assert_eq!(h["contents"]["kind"], "markdown", "{h}");
    h["contents"]["value"].as_str().unwrap_or("").to_string()
}

#[test]
fn hover_links_the_definition_answers_within_its_budget_and_caches_the_explanation() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_with_fake(&sb, &fake, "");
    let rel = "src/http/request.rs";
    let u = uri(&root, rel);
    let text = sb.read(rel);
    did_open(&c, &u, "rust", 1, &text);
    // The call of parse_request_line inside parse_request.
    let (line, col) = position_of(&text, "parse_request_line(first)");
    let pos = (line, col + 3);
    let def = common::parse_request_line();
    let link = format!("{u}#L{}", def.start_line);

    // A chat that takes 4 s, well past the 1.5 s budget: the hover answers at once with
    // the definition, and the explanation is generated in the background.
    let explanation =
        "`parse_request_line` splits a request line into method, target and version [1].";
    fake.reset();
    fake.set_chat_answer(Some(explanation.into()));
    fake.fail_next(Endpoint::Chat, Failure::Slow(Duration::from_secs(4)), 1);
    let t = Instant::now();
    let h = hover(&c, &u, pos);
    let took = t.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "hover must not wait for the slow model (took {took:?})"
    );
    let md = hover_text(&h);
    assert!(md.contains("parse_request_line"), "{md}");
    assert!(!md.contains("splits a request line"), "not ready yet: {md}");
    assert!(
        md.contains(&format!("]({link})")),
        "the hover links the definition as {link}:\n{md}"
    );
    assert!(
        poll(Duration::from_secs(5), || (!fake
            .requests_to(Endpoint::Chat)
            .is_empty())
        .then_some(()))
        .is_some(),
        "an explanation is being generated in the background"
    );
    // Hovering again while it is generated starts no second generation.
    let _ = hover(&c, &u, pos);
    assert_eq!(
        fake.requests_to(Endpoint::Chat).len(),
        1,
        "one generation per symbol at a time"
    );

    // Once the generation completes, the hover shows it, with its citations as links.
    let md = poll(Duration::from_secs(60), || {
        let md = hover_text(&hover(&c, &u, pos));
        md.contains("splits a request line into method")
            .then_some(md)
    })
    .unwrap_or_else(|| c.fail("the generated explanation never reached the hover"));
    assert!(
        md.contains("[[1]](file:///"),
        "citations become links:\n{md}"
    );
    assert!(md.contains(&format!("]({link})")), "{md}");

    // Cached: the next hover shows it without asking the model again.
    let chats = fake.requests_to(Endpoint::Chat).len();
    let md = hover_text(&hover(&c, &u, pos));
    assert!(md.contains("splits a request line into method"), "{md}");
    assert_eq!(
        fake.requests_to(Endpoint::Chat).len(),
        chats,
        "a cached explanation costs no chat request"
    );

    // No hover on whitespace / a number.
    let (l2, _) = position_of(&text, "use std::collections::BTreeMap;");
    let none = c.request_ok(
        "textDocument/hover",
        json!({ "textDocument": { "uri": u }, "position": point(l2 + 1, 0) }),
    );
    assert!(none.is_null(), "an empty line has no hover: {none}");
    c.shutdown_and_exit();
}

#[test]
fn hover_offline_shows_the_definition_and_related_code_as_file_links() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let rel = "src/http/request.rs";
    let u = uri(&root, rel);
    let text = sb.read(rel);
    did_open(&c, &u, "rust", 1, &text);
    let (line, col) = position_of(&text, "parse_request_line(first)");
    let md = hover_text(&hover(&c, &u, (line, col + 5)));
    let def = common::parse_request_line();
    assert!(
        md.contains(&format!("]({u}#L{})", def.start_line)),
        "the definition's location is a file link:\n{md}"
    );
    assert!(
        md.contains("```rust"),
        "the definition's code is shown:\n{md}"
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 7. Code actions and commands
// ---------------------------------------------------------------------------------------

const BILLING_RS: &str = "//! Invoices for the shop.

pub struct LineItem {
    pub cents: i64,
    pub quantity: u32,
}

#[inline]
pub fn compute_invoice_total(items: &[LineItem], discount_percent: u32) -> i64 {
    let gross: i64 = items.iter().map(|i| i.cents * i64::from(i.quantity)).sum();
    let discount = gross * i64::from(discount_percent.min(100)) / 100;
    let total = gross - discount;
    assert!(total >= 0, \"an invoice total is never negative\");
    total
}
";

const REPORT_PY: &str = "\"\"\"Reports for the accounting team.\"\"\"


def summarize_orders(orders, currency=\"EUR\"):
    totals = {}
    for order in orders:
        customer = order[\"customer\"]
        totals[customer] = totals.get(customer, 0) + order[\"amount\"]
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    lines = [f\"{name}: {amount:.2f} {currency}\" for name, amount in ranked]
    return \"\\n\".join(lines)
";

fn code_actions(c: &LspClient, u: &str, pos: (u32, u32)) -> Vec<Value> {
    let r = c.request_ok(
        "textDocument/codeAction",
        json!({
            "textDocument": { "uri": u },
            "range": at(pos.0, pos.1),
            "context": { "diagnostics": [] },
        }),
    );
    r.as_array()
        .unwrap_or_else(|| panic!("codeAction: not an array: {r}"))
        .clone()
}

fn titles(actions: &[Value]) -> Vec<String> {
    actions
        .iter()
        .map(|a| a["title"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The doc-comment action's edit applied to `text`.
fn apply_doc_action(actions: &[Value], title: &str, u: &str, text: &str) -> String {
    let action = actions
        .iter()
        .find(|a| a["title"] == title)
        .unwrap_or_else(|| panic!("no {title:?} in {:?}", titles(actions)));
    let edits = action["edit"]["changes"][u]
        .as_array()
        .unwrap_or_else(|| panic!("the action edits {u}: {action}"));
    apply_edits(text, edits)
}

#[test]
fn code_actions_offer_explain_ask_related_and_a_doc_comment_in_the_languages_style() {
    let sb = Sandbox::with_project();
    sb.write("src/billing.rs", BILLING_RS);
    sb.write("client/report.py", REPORT_PY);
    let root = ws(&sb);
    let c = ready_offline(&sb);

    // Rust: `///` lines right above the item (above its attributes).
    let u = uri(&root, "src/billing.rs");
    did_open(&c, &u, "rust", 1, BILLING_RS);
    let (l, col) = position_of(BILLING_RS, "compute_invoice_total");
    let actions = code_actions(&c, &u, (l, col + 2));
    let t = titles(&actions);
    for want in [
        "ragls: Explain this code",
        "ragls: Ask about compute_invoice_total",
        "ragls: Find related code",
        "Write a doc comment for compute_invoice_total",
    ] {
        assert!(t.iter().any(|x| x == want), "{want:?} missing from {t:?}");
    }
    // In the `refactor` family, so editors list them in Ctrl+. and the lightbulb.
    for a in actions
        .iter()
        .filter(|a| a["title"].as_str().unwrap().starts_with("ragls: "))
    {
        assert_eq!(a["kind"], "refactor.ragls", "{a}");
    }
    // Not on a keyword nor on whitespace: only on identifiers (or a selection).
    for (what, col) in [("`pub`", 1), ("the space after `pub`", 3)] {
        let (l, _) = position_of(BILLING_RS, "pub fn compute_invoice_total");
        let t = titles(&code_actions(&c, &u, (l, col)));
        assert!(
            !t.iter().any(|x| x.starts_with("ragls: ")),
            "no ragls action on {what}: {t:?}"
        );
    }
    let edited = apply_doc_action(
        &actions,
        "Write a doc comment for compute_invoice_total",
        &u,
        BILLING_RS,
    );
    let lines: Vec<&str> = edited.lines().collect();
    let fn_at = lines
        .iter()
        .position(|l| l.starts_with("pub fn compute_invoice_total"))
        .unwrap();
    assert_eq!(lines[fn_at - 1], "#[inline]", "{edited}");
    let mut first = fn_at - 1;
    while first > 0 && lines[first - 1].starts_with("///") {
        first -= 1;
    }
    assert!(
        first < fn_at - 1,
        "a /// comment goes above the attributes:\n{edited}"
    );
    assert_eq!(lines[first], "/// Compute invoice total.", "{edited}");
    let without: String = edited
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("///"))
        .collect();
    assert_eq!(without, BILLING_RS, "the edit only inserts the comment");

    // Python: a docstring inside the function, indented like its body.
    let u_py = uri(&root, "client/report.py");
    did_open(&c, &u_py, "python", 1, REPORT_PY);
    let (l, col) = position_of(REPORT_PY, "summarize_orders");
    let actions = code_actions(&c, &u_py, (l, col + 1));
    let edited = apply_doc_action(
        &actions,
        "Write a doc comment for summarize_orders",
        &u_py,
        REPORT_PY,
    );
    let lines: Vec<&str> = edited.lines().collect();
    let def_at = lines
        .iter()
        .position(|l| l.starts_with("def summarize_orders("))
        .unwrap();
    assert_eq!(
        lines[def_at + 1],
        "    \"\"\"Summarize orders.",
        "a docstring opens the body:\n{edited}"
    );
    let close = (def_at + 1..lines.len())
        .find(|&i| i > def_at + 1 && lines[i].trim_end().ends_with("\"\"\""))
        .unwrap_or_else(|| panic!("the docstring is closed:\n{edited}"));
    assert_eq!(lines[close], "    \"\"\"", "{edited}");
    assert_eq!(
        lines[close + 1],
        "    totals = {}",
        "the body follows:\n{edited}"
    );

    // A function that has a doc comment gets no doc-comment action.
    let lru = uri(&root, "src/cache/lru.rs");
    let lru_text = common::fixture_text("src/cache/lru.rs");
    let (l, col) = position_of(lru_text, "pub fn evict");
    let t = titles(&code_actions(&c, &lru, (l, col + 8)));
    assert!(t.iter().any(|x| x == "ragls: Ask about evict"), "{t:?}");
    assert!(
        !t.iter().any(|x| x.starts_with("Write a doc comment")),
        "evict is documented already: {t:?}"
    );

    // The commands the actions run.
    let (l, col) = position_of(BILLING_RS, "compute_invoice_total");
    let related = c.request_ok(
        "workspace/executeCommand",
        json!({ "command": "ragls.related", "arguments": [u, at(l, col + 2)] }),
    );
    let locations = related.as_array().unwrap_or_else(|| panic!("{related}"));
    assert!(!locations.is_empty(), "{related}");
    for loc in locations {
        assert!(
            loc["uri"]
                .as_str()
                .is_some_and(|u| u.starts_with("file:///")),
            "{loc}"
        );
        assert!(loc["range"]["start"]["line"].is_u64(), "{loc}");
        assert!(loc["range"]["end"]["line"].is_u64(), "{loc}");
    }
    assert!(
        locations.iter().any(|loc| loc["uri"] == u),
        "the function's own file is related: {related}"
    );

    let asked = c.request_ok(
        "workspace/executeCommand",
        json!({ "command": "ragls.ask", "arguments": [ { "query": "how is an invoice total computed?" } ] }),
    );
    assert_eq!(asked["mode"], "extractive", "{asked}");
    assert!(asked["answer"].is_string(), "{asked}");
    assert!(
        asked["citations"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["uri"] == u)),
        "{asked}"
    );

    let explained = c.request_ok(
        "workspace/executeCommand",
        json!({ "command": "ragls.explain", "arguments": [u, { "start": point(8, 0), "end": point(15, 0) }] }),
    );
    assert!(explained["answer"].is_string(), "{explained}");

    let err = c.request_err(
        "workspace/executeCommand",
        json!({ "command": "ragls.noSuchCommand", "arguments": [] }),
    );
    assert!(err["code"].is_i64(), "{err}");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("ragls.noSuchCommand")),
        "the error names the command: {err}"
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 8. Workspace symbols
// ---------------------------------------------------------------------------------------

#[test]
fn workspace_symbol_answers_a_natural_language_query_with_the_matching_function() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let e = common::parse_request_line();
    let syms = c.request_ok(
        "workspace/symbol",
        json!({ "query": "parse the HTTP request line into method, target and version" }),
    );
    let syms = syms.as_array().unwrap_or_else(|| panic!("{syms}"));
    let text = common::fixture_text(e.path);
    let hit = syms
        .iter()
        .take(3)
        .find(|s| s["location"]["uri"] == uri(&root, e.path))
        .unwrap_or_else(|| panic!("no symbol in {} in the top 3: {syms:?}", e.path));
    assert_eq!(
        hit["location"]["range"],
        lsp_range(text, e.start_line, e.end_line),
        "{hit}"
    );
    assert!(
        hit["name"]
            .as_str()
            .is_some_and(|n| n.contains("parse_request_line")),
        "{hit}"
    );
    assert_eq!(hit["kind"], 12, "a function: {hit}");
    assert_eq!(hit["containerName"], e.path, "{hit}");

    let empty = c.request_ok("workspace/symbol", json!({ "query": "" }));
    assert_eq!(empty, json!([]), "an empty query lists nothing");
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 9. Watched files, renames, deletions
// ---------------------------------------------------------------------------------------

const AUDIT_RS: &str = "//! Audits.

/// Audits the pelican vouchers issued this quarter: every voucher must have a matching
/// redemption, and no voucher may be redeemed twice by the same customer account.
pub fn audit_pelican_vouchers(issued: &[u64], redeemed: &[u64]) -> bool {
    let mut seen = std::collections::HashSet::new();
    redeemed.iter().all(|v| issued.contains(v) && seen.insert(*v))
}
";

fn uris_for(c: &LspClient, query: &str, name: &str) -> Vec<String> {
    hits_naming(c, query, name)
        .iter()
        .filter_map(|r| r["uri"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn watched_file_creation_renaming_and_deletion_update_the_index() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    let q = "audit pelican vouchers";
    let name = "audit_pelican_vouchers";
    assert!(uris_for(&c, q, name).is_empty());

    // Created on disk, announced by the editor's watcher.
    sb.write("src/ledger/audit.rs", AUDIT_RS);
    let old = uri(&root, "src/ledger/audit.rs");
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [ { "uri": old, "type": 1 } ] }),
    );
    assert!(
        poll(VISIBLE, || (uris_for(&c, q, name) == vec![old.clone()])
            .then_some(()))
        .is_some(),
        "a created file becomes searchable: {:?}",
        uris_for(&c, q, name)
    );

    // Renamed on disk, announced with didRenameFiles.
    std::fs::rename(
        sb.path("src/ledger/audit.rs"),
        sb.path("src/ledger/review.rs"),
    )
    .unwrap();
    let new = uri(&root, "src/ledger/review.rs");
    c.notify(
        "workspace/didRenameFiles",
        json!({ "files": [ { "oldUri": old, "newUri": new } ] }),
    );
    assert!(
        poll(VISIBLE, || (uris_for(&c, q, name) == vec![new.clone()])
            .then_some(()))
        .is_some(),
        "after a rename only the new path is found: {:?}",
        uris_for(&c, q, name)
    );

    // Deleted on disk, announced by the watcher.
    std::fs::remove_file(sb.path("src/ledger/review.rs")).unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({ "changes": [ { "uri": new, "type": 3 } ] }),
    );
    assert!(
        poll(VISIBLE, || uris_for(&c, q, name).is_empty().then_some(())).is_some(),
        "a deleted file leaves the index: {:?}",
        uris_for(&c, q, name)
    );
    let status = c.wait_ready(READY);
    assert_eq!(status["files"], FIXTURE.len() as u64, "{status}");
    c.shutdown_and_exit();
}

#[test]
fn renaming_an_open_file_leaves_no_trace_of_the_old_path() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    sb.write("src/ledger/audit.rs", AUDIT_RS);
    let c = ready_offline(&sb);
    let (q, name) = ("audit pelican vouchers", "audit_pelican_vouchers");
    let old = uri(&root, "src/ledger/audit.rs");
    let new = uri(&root, "src/ledger/review.rs");
    assert_eq!(uris_for(&c, q, name), vec![old.clone()]);
    did_open(&c, &old, "rust", 1, AUDIT_RS);

    // The editor renames the open file: on disk, then didRenameFiles.
    std::fs::rename(
        sb.path("src/ledger/audit.rs"),
        sb.path("src/ledger/review.rs"),
    )
    .unwrap();
    c.notify(
        "workspace/didRenameFiles",
        json!({ "files": [ { "oldUri": old, "newUri": new } ] }),
    );
    let settled = poll(VISIBLE, || {
        let found = uris_for(&c, q, name);
        (found == vec![new.clone()]).then_some(())
    });
    assert!(
        settled.is_some(),
        "after renaming an open file only its new path is found, got {:?}",
        uris_for(&c, q, name)
    );
    // Closing the (renamed) buffer changes nothing.
    c.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": new } }),
    );
    let _ = c.request_ok("rag/search", json!({ "query": q }));
    assert_eq!(uris_for(&c, q, name), vec![new.clone()]);
    let status = c.status();
    assert_eq!(
        status["files"],
        FIXTURE.len() as u64 + 1,
        "one file, under its new path: {status}"
    );
    c.shutdown_and_exit();
}

#[test]
fn a_file_saved_without_an_open_buffer_is_reindexed_on_did_save() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let c = ready_offline(&sb);
    sb.write("src/ledger/audit.rs", AUDIT_RS);
    let u = uri(&root, "src/ledger/audit.rs");
    c.notify(
        "textDocument/didSave",
        json!({ "textDocument": { "uri": u } }),
    );
    assert!(
        poll(VISIBLE, || (uris_for(
            &c,
            "audit pelican vouchers",
            "audit_pelican_vouchers"
        ) == vec![u.clone()])
        .then_some(()))
        .is_some(),
        "didSave re-reads the file"
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 10. Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_input_gets_errors_or_log_messages_and_never_kills_the_server() {
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    let mut c = ready_offline(&sb);

    let e = c.request_err("rag/noSuchMethod", json!({}));
    assert_eq!(e["code"], METHOD_NOT_FOUND, "{e}");
    let e = c.request_err("rag/search", json!({ "query": 5 }));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");
    let e = c.request_err("rag/search", json!({ "query": "x", "topK": 0 }));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");
    let e = c.request_err("rag/ask", json!({ "query": "" }));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");
    let e = c.request_err("rag/ask", json!({ "query": "   " }));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");
    let e = c.request_err("rag/ask", json!([1, 2]));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");
    let e = c.request_err("rag/reindex", json!({ "full": "yes" }));
    assert_eq!(e["code"], INVALID_PARAMS, "{e}");

    // A document outside every workspace folder: not indexed, said in a log message.
    let outside = sb.tmp.path().join("elsewhere/outside.rs");
    let outside_uri = file_uri(&outside);
    did_open(&c, &outside_uri, "rust", 1, "fn outside_marmot() {}\n");
    // A huge document (2 MB) and a binary one, inside the workspace.
    let huge: String = "// filler line for a very large generated document\n".repeat(42_000);
    assert!(huge.len() > 2_000_000);
    did_open(&c, &uri(&root, "src/huge.rs"), "rust", 1, &huge);
    let binary: String = (0u8..=255)
        .map(char::from)
        .cycle()
        .take(20_000)
        .collect::<String>()
        + "\u{0}\u{0}\u{0}";
    did_open(&c, &uri(&root, "src/blob.rs"), "rust", 1, &binary);
    // A change to a document that was never opened.
    did_change(&c, &uri(&root, "src/never_opened.rs"), 2, at(0, 0), "x");
    // Garbage positions in an incremental change.
    let lru = uri(&root, "src/cache/lru.rs");
    did_open(&c, &lru, "rust", 1, common::LRU_RS);
    did_change(
        &c,
        &lru,
        2,
        json!({ "start": point(9_999, 9_999), "end": point(3, 0) }),
        "",
    );
    // A hover and a code action on a document the server does not know.
    let unknown = uri(&root, "src/does_not_exist.rs");
    let h = c.request_ok(
        "textDocument/hover",
        json!({ "textDocument": { "uri": unknown }, "position": point(0, 0) }),
    );
    assert!(h.is_null(), "{h}");

    let logged = |needle: &str| {
        c.wait_for(VISIBLE, |log| {
            log.iter().any(|m| {
                m.method() == Some("window/logMessage")
                    && m.params()["message"]
                        .as_str()
                        .is_some_and(|s| s.contains(needle))
            })
        })
    };
    assert!(logged("outside the workspace"), "{:?}", c.log_messages());
    assert!(
        logged("src/huge.rs is larger than"),
        "{:?}",
        c.log_messages()
    );
    assert!(logged("src/blob.rs looks binary"), "{:?}", c.log_messages());
    assert!(logged("not open"), "{:?}", c.log_messages());

    assert!(c.try_exit().is_none(), "the server is still running");
    let status = c.status();
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(
        status["files"],
        FIXTURE.len() as u64,
        "nothing bad was indexed: {status}"
    );
    assert!(
        uris_for(&c, "outside marmot", "outside_marmot").is_empty(),
        "the outside document is not indexed"
    );
    assert!(
        search(&c, "evict the least recently used entry")
            .iter()
            .take(3)
            .any(|r| r["uri"] == lru),
        "search still works"
    );
    c.shutdown_and_exit();
}

#[test]
fn a_frame_whose_body_is_not_json_gets_a_parse_error_and_the_server_keeps_serving() {
    let sb = Sandbox::with_project();
    let mut c = ready_offline(&sb);
    let body = b"{ this is not json";
    c.send_raw(&format!("Content-Length: {}\r\n\r\n", body.len()), body);
    assert!(
        c.wait_for(VISIBLE, |log| log.iter().any(|m| m.is_response()
            && m.message["id"].is_null()
            && m.message["error"]["code"] == -32700)),
        "a body that is not JSON gets a parse error (JSON-RPC: id null, -32700)"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        c.try_exit().is_none(),
        "one malformed message must not end the server (it exited: {:?})",
        c.try_exit()
    );
    let status = c.status();
    assert_eq!(status["state"], "ready", "{status}");
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 11. Settings
// ---------------------------------------------------------------------------------------

#[test]
fn settings_from_the_editor_apply_bad_ones_are_reported_and_a_dimension_change_rebuilds() {
    let sb = Sandbox::with_project();
    let c = start(&sb);
    c.initialize(
        &[&ws(&sb)],
        json!({ "retrieve": { "lexical_candidates": 7 } }),
        progress_caps(),
    );
    let before = c.wait_ready(READY);
    let errors = |c: &LspClient| -> Vec<String> {
        c.notification_params("window/showMessage")
            .iter()
            .filter(|p| p["type"] == 1)
            .map(|p| p["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        errors(&c).is_empty(),
        "good initializationOptions: {:?}",
        errors(&c)
    );
    assert!(!search(&c, "evict the least recently used entry").is_empty());

    // A bad value: an error message, and the server keeps its settings and works.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": { "ragls": { "index": { "chunk_max_bytes": 1 } } } }),
    );
    assert!(
        c.wait_for(VISIBLE, |_| errors(&c)
            .iter()
            .any(|m| m.contains("chunk_max_bytes"))),
        "a bad setting is shown as an error naming it: {:?}",
        c.log_messages()
    );
    let after_bad = c.status();
    assert_eq!(after_bad["state"], "ready", "{after_bad}");
    assert_eq!(after_bad["chunks"], before["chunks"], "{after_bad}");
    assert!(!search(&c, "evict the least recently used entry").is_empty());

    // New embedding dimensions: the index is rebuilt, with progress.
    let creates = c.server_requests("window/workDoneProgress/create").len();
    let old_dims = before["embedding"]["dimensions"].as_u64().unwrap();
    let new_dims = if old_dims == 96 { 128 } else { 96 };
    c.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": { "ragls": { "embedding": { "provider": "builtin", "dimensions": new_dims } } } }),
    );
    let status = poll(READY, || {
        let s = c.status();
        (s["embedding"]["dimensions"] == new_dims
            && s["state"] == "ready"
            && s["pendingFiles"] == 0)
            .then_some(s)
    })
    .unwrap_or_else(|| c.fail("the new dimensions never showed in rag/status"));
    assert_eq!(
        status["chunks"], before["chunks"],
        "the same chunks, re-embedded: {status}"
    );
    let new_creates = c.server_requests("window/workDoneProgress/create");
    assert!(
        new_creates.len() > creates,
        "the rebuild reports progress again"
    );
    let token = new_creates.last().unwrap().params()["token"].clone();
    assert!(
        c.wait_for(VISIBLE, |_| progress_of(&c, &token, 0)
            .last()
            .is_some_and(|(_, v)| v["kind"] == "end")),
        "the rebuild's progress ends"
    );
    let begin = &progress_of(&c, &token, 0)[0].1;
    assert_eq!(begin["title"], "Indexing", "{begin}");
    assert_eq!(
        begin["message"],
        format!("0/{} files", FIXTURE.len()),
        "every file is indexed again: {begin}"
    );
    let root = ws(&sb);
    assert!(
        search(&c, "evict the least recently used entry")
            .iter()
            .take(3)
            .any(|r| is_expected(r, &root, &common::lru_evict())),
        "search works after the rebuild"
    );
    c.shutdown_and_exit();
}

#[test]
fn an_empty_did_change_configuration_keeps_the_initialization_options() {
    // PROTOCOL.md: settings layer, later wins: initializationOptions < didChangeConfiguration.
    // A client that sends `{"settings": {}}` (Neovim does at start-up) sets nothing.
    let sb = Sandbox::with_project();
    let c = start(&sb);
    c.initialize(
        &[&ws(&sb)],
        json!({ "embedding": { "dimensions": 128 } }),
        progress_caps(),
    );
    let status = c.wait_ready(READY);
    assert_eq!(status["embedding"]["dimensions"], 128, "{status}");
    let creates = c.server_requests("window/workDoneProgress/create").len();

    c.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": {} }),
    );
    c.notify(
        "workspace/didChangeConfiguration",
        json!({ "settings": { "ragls": { "retrieve": { "lexical_candidates": 40 } } } }),
    );
    // Give a (wrong) rebuild time to start, then check nothing was dropped.
    std::thread::sleep(Duration::from_millis(1500));
    let status = c.wait_ready(READY);
    assert_eq!(
        status["embedding"]["dimensions"], 128,
        "didChangeConfiguration without embedding keys must not reset embedding.dimensions: {status}"
    );
    assert_eq!(
        c.server_requests("window/workDoneProgress/create").len(),
        creates,
        "and must not rebuild the index"
    );
    c.shutdown_and_exit();
}

#[test]
fn rag_reindex_full_rebuilds_in_the_background_with_progress() {
    let sb = Sandbox::with_project();
    let c = ready_offline(&sb);
    let before = c.status();
    let mark = c.mark();
    let r = c.request_ok("rag/reindex", json!({ "full": true }));
    assert_eq!(r["started"], true, "{r}");
    assert_eq!(r["full"], true, "{r}");
    let begin = c
        .wait_notification("$/progress", mark, READY, |p| p["value"]["kind"] == "begin")
        .unwrap_or_else(|| c.fail("no progress for the rebuild"));
    assert_eq!(
        begin.params()["value"]["message"],
        format!("0/{} files", FIXTURE.len()),
        "a full rebuild reads every file"
    );
    assert!(c
        .wait_notification("$/progress", mark, READY, |p| p["value"]["kind"] == "end")
        .is_some());
    let after = c.wait_ready(READY);
    assert_eq!(after["files"], before["files"], "{after}");
    assert_eq!(after["chunks"], before["chunks"], "{after}");
    // Without params: an incremental run (nothing to do).
    let r = c.request_ok("rag/reindex", Value::Null);
    assert_eq!(r["full"], false, "{r}");
    c.shutdown_and_exit();
}

#[test]
fn initialization_options_that_are_invalid_are_reported_and_the_defaults_used() {
    let sb = Sandbox::with_project();
    let c = start(&sb);
    c.initialize(
        &[&ws(&sb)],
        json!({ "index": { "chunk_max_bytes": 1 } }),
        progress_caps(),
    );
    let status = c.wait_ready(READY);
    assert!(
        c.notification_params("window/showMessage")
            .iter()
            .any(|p| p["type"] == 1
                && p["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("chunk_max_bytes"))),
        "{:?}",
        c.log_messages()
    );
    assert_eq!(status["files"], FIXTURE.len() as u64, "{status}");
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 12. Restarts
// ---------------------------------------------------------------------------------------

#[test]
fn a_server_killed_while_indexing_resumes_to_a_complete_index_and_a_clean_restart_reindexes_nothing(
) {
    let sb = Sandbox::with_project();
    common::write_many_files(&sb, 3000);
    let root = ws(&sb);
    let total_files = FIXTURE.len() + 3000;

    // The reference: a clean index by the CLI, in its own folder.
    sb.index();
    let clean = sb.status();

    // First server: killed (SIGKILL) after its first committed batch.
    let mut c = start(&sb);
    c.initialize(&[&root], Value::Null, progress_caps());
    let report = c.wait_notification("$/progress", 0, READY, |p| p["value"]["kind"] == "report");
    let report = report.unwrap_or_else(|| c.fail("no progress report"));
    c.kill();
    let first_begin = c
        .notifications("$/progress")
        .into_iter()
        .find(|m| m.params()["value"]["kind"] == "begin")
        .unwrap();
    assert_eq!(
        first_begin.params()["value"]["message"],
        format!("0/{total_files} files"),
    );
    let done = report.params()["value"]["message"].clone();

    // Second server: resumes, and ends with the same index as a clean run.
    let c = start(&sb);
    c.initialize(&[&root], Value::Null, progress_caps());
    let status = c.wait_ready(Duration::from_secs(300));
    let begin = c
        .notifications("$/progress")
        .into_iter()
        .find(|m| m.params()["value"]["kind"] == "begin")
        .unwrap_or_else(|| c.fail("no progress begin"));
    let msg = begin.params()["value"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    let left: usize = msg
        .split('/')
        .nth(1)
        .unwrap()
        .trim_end_matches(" files")
        .parse()
        .unwrap();
    assert!(
        left < total_files,
        "committed batches survive the kill (killed at {done}; the restart reads {left} files)"
    );
    assert_eq!(status["files"], clean["files"], "{status} vs {clean}");
    assert_eq!(status["chunks"], clean["chunks"], "{status} vs {clean}");
    assert_eq!(status["pendingFiles"], 0, "{status}");
    let name = common::many_fn(2999);
    assert!(
        poll(VISIBLE, || search(&c, &name.replace('_', " "))
            .iter()
            .any(|r| r["uri"] == uri(&root, &common::many_path(2999)))
            .then_some(()))
        .is_some(),
        "the last file is searchable after the restart"
    );
    c.shutdown_and_exit();

    // Third server after a clean shutdown: nothing to re-index. The start-up check reads
    // no file: it shows no progress, or progress that says so.
    let c = start(&sb);
    c.initialize(&[&root], Value::Null, progress_caps());
    let status = c.wait_ready(READY);
    c.wait_for(Duration::from_millis(500), |_| false);
    let values: Vec<Value> = c
        .notification_params("$/progress")
        .into_iter()
        .map(|p| p["value"].clone())
        .collect();
    for v in &values {
        match v["kind"].as_str() {
            Some("begin") => assert_eq!(
                v["message"], "0/0 files",
                "no file is read again: {values:?}"
            ),
            Some("end") => {
                assert!(
                    v["message"].as_str().is_some_and(
                        |m| m.starts_with("0 files changed, 0 removed, 0 chunks embedded")
                    ),
                    "{values:?}"
                )
            }
            _ => panic!("no file is read again, yet: {values:?}"),
        }
    }
    assert_eq!(status["files"], clean["files"], "{status}");
    assert_eq!(status["chunks"], clean["chunks"], "{status}");
    assert_eq!(status["pendingFiles"], 0, "{status}");
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// 13. Multi-root
// ---------------------------------------------------------------------------------------

const IRRIGATION_RS: &str = "//! Garden irrigation.

/// Schedules the drip irrigation of the greenhouse beds: beds that dried out the most
/// since their last watering go first, and no two adjacent beds water at once.
pub fn schedule_drip_irrigation(moisture: &[f32], last_watered: &[u64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..moisture.len()).collect();
    order.sort_by(|a, b| moisture[*a].total_cmp(&moisture[*b]).then(last_watered[*a].cmp(&last_watered[*b])));
    order
}
";

#[test]
fn multi_root_searches_every_folder_and_a_removed_folder_is_no_longer_searched() {
    let sb = Sandbox::with_project();
    let a = ws(&sb);
    let b_dir = sb.tmp.path().join("garden");
    std::fs::create_dir_all(b_dir.join("src")).unwrap();
    std::fs::write(b_dir.join("src/irrigation.rs"), IRRIGATION_RS).unwrap();
    let b = b_dir.canonicalize().unwrap();
    let c = start(&sb);
    c.initialize(&[&a, &b], Value::Null, progress_caps());
    let status = c.wait_ready(READY);
    assert_eq!(
        status["files"],
        FIXTURE.len() as u64 + 1,
        "counts add up: {status}"
    );

    let irrigation = uri(&b, "src/irrigation.rs");
    assert_eq!(
        uris_for(&c, "schedule drip irrigation", "schedule_drip_irrigation"),
        vec![irrigation.clone()],
        "the second folder is searched"
    );
    assert!(
        search(&c, "evict the least recently used entry")
            .iter()
            .take(3)
            .any(|r| is_expected(r, &a, &common::lru_evict())),
        "the first folder is searched"
    );

    let b_uri = file_uri(&b);
    c.notify(
        "workspace/didChangeWorkspaceFolders",
        json!({ "event": { "added": [], "removed": [ { "uri": b_uri, "name": "garden" } ] } }),
    );
    assert!(
        poll(VISIBLE, || search(&c, "schedule drip irrigation")
            .iter()
            .all(|r| !r["uri"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("{b_uri}/")))
            .then_some(()))
        .is_some(),
        "a removed folder's files are no longer found"
    );
    let status = c.status();
    assert_eq!(status["files"], FIXTURE.len() as u64, "{status}");

    // Added back: searchable again.
    c.notify(
        "workspace/didChangeWorkspaceFolders",
        json!({ "event": { "added": [ { "uri": b_uri, "name": "garden" } ], "removed": [] } }),
    );
    assert!(
        poll(READY, || (uris_for(
            &c,
            "schedule drip irrigation",
            "schedule_drip_irrigation"
        ) == vec![irrigation.clone()])
        .then_some(()))
        .is_some(),
        "an added folder is indexed and searched"
    );
    c.shutdown_and_exit();
}

// ---------------------------------------------------------------------------------------
// Folders with the same relative paths; editor context that must never be read
// ---------------------------------------------------------------------------------------

const WALRUS_ALPHA: &str = "/// Parses a walrus manifest from the alpha harbour registry.
pub fn parse_walrus_manifest(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim().to_string()).collect()
}
";

const WALRUS_BETA: &str = "/// Parses a walrus manifest from the beta lighthouse archive, strictly.
pub fn parse_walrus_manifest(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            return Err(\"blank line in the walrus manifest\".into());
        }
        out.push(line.trim().to_string());
    }
    Ok(out)
}
";

/// Asserts that a source or citation points into the folder whose file holds its
/// snippet, with a range inside that file ending at the end of its last line.
fn assert_in_its_folder(v: &Value, folders: &[(&Path, &str)], what: &str) {
    let (root, text) = folders
        .iter()
        .find(|(root, _)| v["uri"] == uri(root, "src/lib.rs"))
        .unwrap_or_else(|| panic!("{what}: {v} is in neither folder's src/lib.rs"));
    let snippet = v["snippet"].as_str().unwrap_or_default();
    assert!(
        text.contains(snippet),
        "{what}: the snippet is not from {}'s file: {v}",
        root.display()
    );
    let lines: Vec<&str> = text.lines().collect();
    let end = v["range"]["end"]["line"].as_u64().expect("end line") as usize;
    assert!(end < lines.len(), "{what}: range past the file: {v}");
    assert_eq!(
        v["range"]["end"]["character"].as_u64(),
        Some(lines[end].len() as u64),
        "{what}: the range must end at its own file's line: {v}"
    );
}

#[test]
fn two_folders_with_the_same_paths_are_cited_in_the_right_folder() {
    let sb = Sandbox::empty();
    sb.write("src/lib.rs", WALRUS_ALPHA);
    let a = ws(&sb);
    let b_dir = sb.tmp.path().join("beta");
    std::fs::create_dir_all(b_dir.join("src")).unwrap();
    std::fs::write(b_dir.join("src/lib.rs"), WALRUS_BETA).unwrap();
    let b = b_dir.canonicalize().unwrap();
    let folders = [(a.as_path(), WALRUS_ALPHA), (b.as_path(), WALRUS_BETA)];
    let c = start(&sb);
    c.initialize(&[&a, &b], Value::Null, progress_caps());
    c.wait_ready(READY);

    let results = search(&c, "parse a walrus manifest");
    for r in &results {
        assert_in_its_folder(r, &folders, "rag/search");
    }
    for (root, _) in &folders {
        assert!(
            results.iter().any(|r| r["uri"] == uri(root, "src/lib.rs")),
            "both folders' files are found: {}",
            brief(&results)
        );
    }

    let r = c.request_ok("rag/ask", json!({ "query": "parse a walrus manifest" }));
    let sources = r["sources"].as_array().expect("sources");
    let citations = r["citations"].as_array().expect("citations");
    assert!(sources.len() >= 2 && !citations.is_empty(), "{r}");
    for s in sources {
        assert_in_its_folder(s, &folders, "rag/ask source");
    }
    for cit in citations {
        assert_in_its_folder(cit, &folders, "rag/ask citation");
    }
    c.shutdown_and_exit();
}

#[test]
fn editor_context_outside_the_workspace_or_secret_never_reaches_the_provider() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project();
    let root = ws(&sb);
    sb.write(".env", "API_TOKEN=walrus-secret-env-1111\n");
    sb.write(
        "id_rsa",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nwalrus-secret-key-2222\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    sb.write(
        "config.tfstate",
        "{\"token\": \"walrus-secret-state-3333\"}\n",
    );
    sb.write(".envrc", "export DB_PASSWORD=walrus-secret-envrc-5555\n");
    sb.write(
        ".docker/config.json",
        "{\"auths\": {\"r\": {\"auth\": \"walrus-secret-docker-6666\"}}}\n",
    );
    sb.write(
        "certs/server.pem",
        "-----BEGIN PRIVATE KEY-----\nwalrus-secret-pem-7777\n-----END PRIVATE KEY-----\n",
    );
    sb.write(
        "credentials.json",
        "{\"secret\": \"walrus-secret-cred-8888\"}\n",
    );
    let outside = sb.tmp.path().join("outside.txt");
    std::fs::write(&outside, "walrus-secret-outside-4444\n").unwrap();
    // A link inside the workspace that leads out of it.
    let escape = sb.tmp.path().join("escape.txt");
    std::fs::write(&escape, "walrus-secret-escape-9999\n").unwrap();
    std::os::unix::fs::symlink(&escape, sb.path("docs/escape.txt")).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let passwd_line = passwd
        .lines()
        .next()
        .expect("a line in /etc/passwd")
        .to_string();
    let c = ready_with_fake(&sb, &fake, "");
    fake.reset();

    let uris = [
        "file:///etc/passwd".to_string(),
        file_uri(&outside.canonicalize().unwrap()),
        uri(&root, ".env"),
        uri(&root, "id_rsa"),
        uri(&root, "config.tfstate"),
        uri(&root, ".envrc"),
        uri(&root, ".docker/config.json"),
        uri(&root, "certs/server.pem"),
        uri(&root, "credentials.json"),
        uri(&root, "docs/escape.txt"),
        // `..` out of the workspace, spelled inside it.
        format!("{}/../outside.txt", file_uri(&root)),
    ];
    assert_eq!(
        uris.len(),
        11,
        "ten outside or secret files, one spelled two ways"
    );
    let range =
        json!({ "start": { "line": 0, "character": 0 }, "end": { "line": 3, "character": 0 } });
    for u in &uris {
        let doc = json!({ "uri": u });
        let p = json!({ "query": "what is this?", "textDocument": doc, "range": range });
        c.request_ok("rag/ask", p.clone());
        c.request_ok("rag/search", p);
        c.request_ok(
            "workspace/executeCommand",
            json!({ "command": "ragls.explain", "arguments": [u, range] }),
        );
        c.request(
            "textDocument/hover",
            json!({ "textDocument": doc, "position": { "line": 0, "character": 2 } }),
        );
    }
    let requests = fake.requests();
    assert!(
        !requests.is_empty(),
        "the requests reached the provider (and were checked)"
    );
    for req in &requests {
        let body = req.body.to_string();
        for secret in [
            "walrus-secret-env-1111",
            "walrus-secret-key-2222",
            "walrus-secret-state-3333",
            "walrus-secret-outside-4444",
            "walrus-secret-envrc-5555",
            "walrus-secret-docker-6666",
            "walrus-secret-pem-7777",
            "walrus-secret-cred-8888",
            "walrus-secret-escape-9999",
            passwd_line.as_str(),
        ] {
            assert!(
                !body.contains(secret),
                "{secret:?} was sent to {}: {body}",
                req.path
            );
        }
    }
    let logs = c.log_messages();
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains(".env is not used as context")),
        "dropped context is logged: {logs:?}"
    );
    c.shutdown_and_exit();
}
