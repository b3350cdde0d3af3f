//! Specifications of the remote provider (PROTOCOL.md; shared/notes/openrouter-api.md):
//! batching, caching, retries, errors a user can act on, degraded mode and recovery,
//! remote rerank, streamed generation with citations, cancellation, the prompt budget,
//! and what must never leave the machine (the API key, secrets files).
//!
//! Everything runs against the fake OpenRouter server of `tests/support/fake_provider.rs`:
//! the library's async API directly (`RemoteEmbedder::embed_async`, `ChatClient::stream`),
//! and the real `ragls` binary on a sandboxed workspace (`ProviderSandbox` of
//! `tests/common/mod.rs`, built by `tests/support/provider_fixture.rs`).

use crate::fake_provider;
use crate::provider_fixture;

use fake_provider::{
    default_answer, fake_embedding, rerank_score, Endpoint, Failure, FakeProvider,
};
use provider_fixture::*;
use ragls::answer::prompt::{estimate_tokens, ChatMessage};
use ragls::config::{EmbeddingConfig, ProviderConfig};
use ragls::provider::chat::ChatClient;
use ragls::provider::{Provider, ProviderError, RemoteEmbedder};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Library-level helpers
// ---------------------------------------------------------------------------------------

/// The variable the library tests read their key from (never OPENROUTER_API_KEY, so a
/// developer's real key is never used).
const KEY_ENV: &str = "RAGLS_PROVIDER_TESTS_KEY";

/// Sets [`KEY_ENV`] once for this test process. Every library test calls it first.
fn key_env() -> &'static str {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var(KEY_ENV, KEY));
    KEY_ENV
}

fn provider(fake: &FakeProvider, max_retries: u32) -> Provider {
    let config = ProviderConfig {
        base_url: fake.base_url(),
        api_key_env: key_env().to_string(),
        timeout_s: 20,
        max_retries,
        ..ProviderConfig::default()
    };
    Provider::from_config(&config).expect("a remote provider is configured")
}

fn embedder(fake: &FakeProvider, batch_size: usize, concurrency: usize) -> RemoteEmbedder {
    let config = EmbeddingConfig {
        batch_size,
        concurrency,
        ..EmbeddingConfig::default()
    };
    RemoteEmbedder::new(provider(fake, 0), &config)
}

fn messages(user: &str) -> Vec<ChatMessage> {
    vec![
        ChatMessage {
            role: "system".into(),
            content: "Answer from the sources.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: user.into(),
        },
    ]
}

/// A user message with two numbered sources, as the prompt builder writes them.
const TWO_SOURCES: &str = "Sources:\n\n[1] src/retry.rs:1-9 (rust) fn retry\n```rust\nfn retry() {}\n```\n\n\
[2] src/client.rs:3-5 (rust) fn send\n```rust\nfn send() {}\n```\n\nQuestion: how are requests retried?";

async fn poll_until_async(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn inputs_of(body: &Value) -> Vec<String> {
    body["input"]
        .as_array()
        .unwrap_or_else(|| panic!("no input list in {body}"))
        .iter()
        .map(|v| v.as_str().expect("string input").to_string())
        .collect()
}

/// Every text sent to `/embeddings`, in arrival order.
fn embedded_texts(fake: &FakeProvider) -> Vec<String> {
    fake.requests_to(Endpoint::Embeddings)
        .iter()
        .flat_map(|r| inputs_of(&r.body))
        .collect()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: dimensions");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() < 1e-5, "{what}: component {i}: {x} vs {y}");
    }
}

fn notes_of(v: &Value) -> Vec<String> {
    v["notes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| n.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array in {v}"))
}

// ---------------------------------------------------------------------------------------
// 1. Batching, ordering, headers, concurrency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_sent_in_batches_with_auth_and_attribution_headers_and_come_back_in_input_order(
) {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let e = embedder(&fake, 64, 4);
    let texts: Vec<String> = (0..150)
        .map(|i| format!("chunk number {i} handles word{i} and topic{}", i % 7))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let vectors = e.embed_async(&refs).await.expect("embedding succeeds");

    let reqs = fake.requests_to(Endpoint::Embeddings);
    let mut sizes: Vec<usize> = reqs.iter().map(|r| inputs_of(&r.body).len()).collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![22, 64, 64],
        "three requests of 64, 64 and 22 inputs"
    );
    // The batches are consecutive slices of the input, together the whole input once.
    let mut batches: Vec<Vec<String>> = reqs.iter().map(|r| inputs_of(&r.body)).collect();
    batches.sort_by_key(|b| texts.iter().position(|t| *t == b[0]).unwrap());
    assert_eq!(batches.concat(), texts, "batches split the input in order");
    for r in &reqs {
        assert_eq!(r.path, "/api/v1/embeddings");
        assert_eq!(
            r.header("authorization"),
            Some("Bearer sk-test-key-123"),
            "{:?}",
            r.headers
        );
        assert!(
            r.header("http-referer").is_some_and(|v| !v.is_empty()),
            "HTTP-Referer: {:?}",
            r.headers
        );
        assert!(
            r.header("x-title").is_some_and(|v| !v.is_empty()),
            "X-Title: {:?}",
            r.headers
        );
        assert_eq!(r.body["model"], EMBEDDING_MODEL);
    }
    // The fake answers with `data` reversed: the vectors must follow `index`.
    assert_eq!(vectors.len(), texts.len());
    for (t, v) in texts.iter().zip(&vectors) {
        assert_close(v, &fake_embedding(t, 64), t);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedding_requests_run_concurrently_up_to_the_concurrency_setting_and_never_beyond() {
    let fake = FakeProvider::start();
    fake.set_latency(Duration::from_millis(500));
    let e = embedder(&fake, 4, 4);
    // 8 requests' worth of texts.
    let texts: Vec<String> = (0..32).map(|i| format!("text {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let vectors = e.embed_async(&refs).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 32);
    assert_eq!(fake.requests_to(Endpoint::Embeddings).len(), 8);
    assert_eq!(
        fake.max_in_flight(Endpoint::Embeddings),
        4,
        "embedding.concurrency = 4: four requests in flight at once, never more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_at_the_same_time_share_the_concurrency_slots_the_earlier_call_first() {
    // The indexer embeds the next batch while the previous one finishes: the two calls
    // together keep `concurrency` requests in flight, never more (each alone could have
    // four), and the earlier call's requests take the slots first.
    let fake = FakeProvider::start();
    fake.set_latency(Duration::from_millis(300));
    let e = embedder(&fake, 4, 4);
    let first: Vec<String> = (0..20).map(|i| format!("first {i}")).collect();
    let second: Vec<String> = (0..8).map(|i| format!("second {i}")).collect();
    let first_refs: Vec<&str> = first.iter().map(String::as_str).collect();
    let second_refs: Vec<&str> = second.iter().map(String::as_str).collect();

    let (a, b) = tokio::join!(e.embed_async(&first_refs), e.embed_async(&second_refs));

    let (a, b) = (a.expect("first call"), b.expect("second call"));
    for (t, v) in first.iter().zip(&a).chain(second.iter().zip(&b)) {
        assert_close(v, &fake_embedding(t, 64), t);
    }
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(
        reqs.len(),
        7,
        "5 requests for the first call, 2 for the second"
    );
    assert_eq!(
        fake.max_in_flight(Endpoint::Embeddings),
        4,
        "both calls together: four in flight, never more"
    );
    // The earlier call takes every slot first; the later one starts only as they free up
    // (after the fake's 300 ms), so the first four requests to arrive are the first call's.
    let from_first: Vec<bool> = reqs
        .iter()
        .map(|r| {
            r.body["input"][0]
                .as_str()
                .unwrap_or("")
                .starts_with("first")
        })
        .collect();
    assert_eq!(
        from_first[..4],
        [true; 4],
        "the earlier call's requests take the slots first: {from_first:?}"
    );
    assert_eq!(from_first.iter().filter(|f| **f).count(), 5);
}

// ---------------------------------------------------------------------------------------
// 2. The embedding cache across runs
// ---------------------------------------------------------------------------------------

#[test]
fn unchanged_and_touched_files_are_never_re_embedded_and_an_edit_sends_only_the_changed_chunks() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());

    let first = sb.index();
    let after_first = fake.requests_to(Endpoint::Embeddings).len();
    assert!(after_first > 0, "the first index embeds: {first}");
    assert!(
        u(&first, "requests") > 0 && u(&first, "embedded") > 0,
        "{first}"
    );
    assert!(first.get("degraded").is_none(), "{first}");

    let second = sb.index();
    assert_eq!(
        fake.requests_to(Endpoint::Embeddings).len(),
        after_first,
        "a second index of an unchanged workspace sends no embedding request"
    );
    assert_eq!(u(&second, "requests"), 0, "{second}");
    assert_eq!(u(&second, "embedded"), 0, "{second}");

    // Same content, new mtime.
    sb.set_mtime("src/cache.rs", 1_000_000_000);
    let third = sb.index();
    assert_eq!(
        fake.requests_to(Endpoint::Embeddings).len(),
        after_first,
        "a touched but unchanged file is not re-embedded"
    );
    assert_eq!(u(&third, "requests"), 0, "{third}");
    assert_eq!(u(&third, "embedded"), 0, "{third}");

    // Edit one function of src/retry.rs: only its chunk's text is sent.
    let budget = ragls::chunk::ChunkBudget::default();
    let texts_of = |text: &str| -> HashSet<String> {
        ragls::chunk::chunk_file("src/retry.rs", text.as_bytes(), &budget)
            .iter()
            .map(|c| c.embedding_text("src/retry.rs"))
            .collect()
    };
    let before = sb.read("src/retry.rs");
    let after = before.replace(
        "delay_ms = delay_ms.saturating_mul(2);",
        "delay_ms = delay_ms.saturating_mul(3).min(60_000);",
    );
    assert_ne!(before, after);
    let expected: BTreeSet<String> = texts_of(&after)
        .difference(&texts_of(&before))
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert!(
        expected.len() < texts_of(&after).len(),
        "the fixture file must have chunks the edit leaves alone"
    );
    sb.write("src/retry.rs", &after);
    sb.set_mtime("src/retry.rs", 1_100_000_000);
    fake.reset();

    let fourth = sb.index();
    let sent: Vec<String> = embedded_texts(&fake);
    let sent_set: BTreeSet<String> = sent.iter().cloned().collect();
    assert_eq!(
        sent_set, expected,
        "only the edited function's chunk is embedded again"
    );
    assert_eq!(
        sent.len(),
        expected.len(),
        "each text is sent once: {sent:?}"
    );
    assert_eq!(u(&fourth, "embedded"), expected.len() as u64, "{fourth}");
    sb.assert_key_never_leaked();
}

// ---------------------------------------------------------------------------------------
// 3. Retries
// ---------------------------------------------------------------------------------------

/// Settings for the retry tests: a known dimension, so that no probe request comes first
/// and the whole (small) workspace is one embedding request.
fn one_batch(max_retries: u32) -> Settings {
    Settings::retries(max_retries).with("[embedding]\ndimensions = 64\nbatch_size = 64\n")
}

#[test]
fn a_429_with_retry_after_is_retried_after_the_wait_the_server_asked_for() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &one_batch(2));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        1,
    );

    let report = sb.index();

    assert!(report.get("degraded").is_none(), "{report}");
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(reqs.len(), 2, "the rate-limited batch is sent twice");
    assert_eq!(reqs[0].body, reqs[1].body, "the same batch is retried");
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After: 1 must be waited out, the retry came after {gap:?}"
    );
    assert!(u(&report, "embedded") > 0, "{report}");
    assert_eq!(sb.status()["state"], "ready");
}

#[test]
fn a_500_is_retried_with_backoff_and_the_index_completes() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &one_batch(2));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );

    let report = sb.index();

    assert!(report.get("degraded").is_none(), "{report}");
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(reqs.len(), 2, "one failure, one retry");
    assert_eq!(reqs[0].body, reqs[1].body);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(200),
        "the retry waits a backoff (about 0.25-0.5 s), came after {gap:?}"
    );
    assert_eq!(sb.status()["state"], "ready");
}

#[test]
fn a_persistent_429_gives_up_after_max_retries_and_the_index_is_degraded() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &one_batch(1));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 429,
            retry_after: Some("0".into()),
        },
        50,
    );

    let report = sb.index();

    let degraded = report["degraded"]
        .as_str()
        .unwrap_or_else(|| panic!("the report says why it is degraded: {report}"));
    assert!(degraded.to_lowercase().contains("rate limit"), "{degraded}");
    assert_eq!(
        fake.requests_to(Endpoint::Embeddings).len(),
        2,
        "max_retries = 1: one try and one retry, then no more requests in this run"
    );
    assert_eq!(u(&report, "embedded"), 0, "{report}");
    let status = sb.status();
    assert_eq!(status["state"], "degraded", "{status}");
    sb.assert_key_never_leaked();
}

#[test]
fn a_retry_after_given_as_an_http_date_is_waited_out_too() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &one_batch(2));
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 503,
            retry_after: Some(http_date(at)),
        },
        1,
    );

    let report = sb.index();

    assert!(report.get("degraded").is_none(), "{report}");
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "Retry-After: {} must be waited out, the retry came after {gap:?}",
        http_date(at)
    );
}

#[test]
fn a_retry_after_longer_than_two_minutes_is_not_waited_out_and_says_so() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &one_batch(4));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 429,
            retry_after: Some("600".into()),
        },
        50,
    );

    // A guard only: waiting the 600 s out would be the bug.
    let run = sb.ragls_with_deadline("index", &["--json"], Duration::from_secs(120));

    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = run.json();
    let degraded = report["degraded"]
        .as_str()
        .unwrap_or_else(|| panic!("degraded: {report}"));
    assert!(
        degraded.contains("600"),
        "the message says how long: {degraded}"
    );
    assert_eq!(
        fake.requests_to(Endpoint::Embeddings).len(),
        1,
        "no retry when the wait asked for is too long"
    );
}

#[test]
fn a_request_that_times_out_is_retried() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let mut settings = one_batch(1);
    settings.timeout_s = 1;
    let sb = Sandbox::with_project(&fake, &settings);
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Slow(Duration::from_secs(5)),
        1,
    );

    let report = sb.index();

    assert!(report.get("degraded").is_none(), "{report}");
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(reqs.len(), 2, "the timed-out request is sent again");
    assert_eq!(reqs[0].body, reqs[1].body);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "the retry comes after the 1 s timeout, came after {gap:?}"
    );
    assert!(u(&report, "embedded") > 0, "{report}");
}

#[test]
fn a_failing_embedding_service_is_asked_no_more_after_the_first_failure_of_a_run() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    // No embedding.dimensions: the model's dimension is unknown until it answers.
    let sb = Sandbox::with_project(&fake, &Settings::retries(1));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 503,
            retry_after: Some("0".into()),
        },
        1000,
    );

    let report = sb.index();

    assert!(report.get("degraded").is_some(), "{report}");
    let sent = fake.requests_to(Endpoint::Embeddings).len();
    assert!(
        sent <= 2,
        "max_retries = 1: one request and its retry, then the run asks no more \
         (the engine's contract: \"remembers why, and asks no more\"); {sent} requests were sent"
    );
}

#[test]
fn a_dimension_probe_that_fails_once_costs_neither_the_index_nor_its_vectors() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    // No embedding.dimensions and no retries: the first request (whatever it is) fails,
    // every later one succeeds.
    let sb = Sandbox::with_project(&fake, &Settings::retries(0));
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );

    let first = sb.index();
    let status = sb.status();
    assert_ne!(
        status["state"], "error",
        "the index just built must be usable: {status}\nreport: {first}"
    );
    let second = sb.index();
    let status = sb.status();
    assert_eq!(
        status["state"], "ready",
        "{status}\nreports: {first} {second}"
    );
    assert_eq!(status["embedding"]["dimensions"], 64, "{status}");

    // Each chunk text is embedded once over both runs: nothing is thrown away.
    let texts: Vec<String> = embedded_texts(&fake)
        .into_iter()
        .filter(|t| !t.contains("dimension probe"))
        .collect();
    let distinct: HashSet<&String> = texts.iter().collect();
    assert_eq!(
        texts.len(),
        distinct.len(),
        "chunks embedded twice (first run {first}, second run {second})"
    );
    fake.reset();
    let third = sb.index();
    assert_eq!(u(&third, "requests"), 0, "{third}");
}

// ---------------------------------------------------------------------------------------
// 4. Clear errors; lexical retrieval keeps working; the key never leaks
// ---------------------------------------------------------------------------------------

#[test]
fn a_refused_key_leaves_a_lexical_index_that_says_401_and_names_the_key_variable() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some("sk-some-other-key"));
    let sb = Sandbox::with_project(&fake, &Settings::default());

    let report = sb.index();

    let degraded = report["degraded"]
        .as_str()
        .unwrap_or_else(|| panic!("the report says why it is degraded: {report}"));
    assert!(degraded.contains("401"), "{degraded}");
    assert!(degraded.contains("OPENROUTER_API_KEY"), "{degraded}");
    assert!(u(&report, "filesSeen") > 0, "{report}");

    let status = sb.status();
    assert_eq!(status["state"], "degraded", "{status}");
    let last_error = status["lastError"]
        .as_str()
        .unwrap_or_else(|| panic!("lastError: {status}"));
    assert!(last_error.contains("401"), "{last_error}");
    assert!(status["chunks"].as_u64().unwrap_or(0) > 0, "{status}");

    let results = sb.search("evict the least recently used entry");
    assert!(
        results.iter().any(|r| r["path"] == "src/cache.rs"),
        "lexical search still finds the cache: {results:?}"
    );
    // Also the text forms of the commands.
    sb.ragls("status", &[]).ok();
    sb.ragls("search", &["parse the HTTP request line"]).ok();
    sb.ragls("ask", &["how is the request line parsed?"]);
    sb.assert_key_never_leaked();
}

#[test]
fn out_of_credits_says_so() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 402,
            retry_after: None,
        },
        50,
    );

    let report = sb.index();

    let degraded = report["degraded"]
        .as_str()
        .unwrap_or_else(|| panic!("degraded: {report}"));
    assert!(degraded.contains("credits"), "{degraded}");
    assert!(degraded.contains("402"), "{degraded}");
    let status = sb.status();
    assert_eq!(status["state"], "degraded", "{status}");
    assert!(
        status["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("credits")),
        "{status}"
    );
    sb.assert_key_never_leaked();
}

#[test]
fn an_unknown_model_is_named_in_the_error() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.set_known_models(Some(vec![RERANK_MODEL.to_string(), CHAT_MODEL.to_string()]));
    let sb = Sandbox::with_project(&fake, &Settings::default());

    let report = sb.index();

    let degraded = report["degraded"]
        .as_str()
        .unwrap_or_else(|| panic!("degraded: {report}"));
    assert!(
        degraded.contains(EMBEDDING_MODEL),
        "the message names the model: {degraded}"
    );
    let status = sb.status();
    assert_eq!(status["state"], "degraded", "{status}");
    assert!(
        status["lastError"]
            .as_str()
            .is_some_and(|e| e.contains(EMBEDDING_MODEL)),
        "{status}"
    );

    // An unknown chat model: the answer falls back and the note names the model.
    fake.set_known_models(Some(vec![
        EMBEDDING_MODEL.to_string(),
        RERANK_MODEL.to_string(),
    ]));
    let answer = sb.ask("how is the request line parsed?");
    assert_eq!(answer["mode"], "extractive", "{answer}");
    let notes = notes_of(&answer);
    assert!(
        notes.iter().any(|n| n.contains(CHAT_MODEL)),
        "a note names the chat model: {notes:?}"
    );
    sb.assert_key_never_leaked();
}

#[test]
fn status_of_a_degraded_index_answers_without_calling_the_provider() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some("sk-some-other-key"));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    let report = sb.index();
    assert!(report.get("degraded").is_some(), "{report}");
    fake.reset();

    let status = sb.status();

    assert_eq!(status["state"], "degraded", "{status}");
    let sent: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        sent.is_empty(),
        "`ragls status` reports what the index holds; it sent {sent:?} \
         (with an unreachable provider each such request waits out timeouts and retries)"
    );
}

#[test]
fn when_the_embedding_service_fails_at_question_time_retrieval_falls_back_to_lexical_with_a_note() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::retries(0));
    sb.index();
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 503,
            retry_after: None,
        },
        1,
    );

    let run = sb
        .ragls("ask", &["--json", "evict the least recently used entry"])
        .ok();
    let answer = run.json();

    let notes = notes_of(&answer);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("vector search unavailable") && n.contains("503")),
        "{notes:?}"
    );
    assert!(run.stderr.contains("note:"), "{}", run.stderr);
    assert_eq!(answer["mode"], "generated", "{answer}");
    assert_eq!(
        arr(&answer, "sources")[0]["path"],
        "src/cache.rs",
        "{answer}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Degraded, then recovered
// ---------------------------------------------------------------------------------------

#[test]
fn after_the_key_is_fixed_the_next_index_embeds_what_was_missing_and_is_ready_again() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some("sk-some-other-key"));
    let sb = Sandbox::with_project(&fake, &Settings::default());

    let first = sb.index();
    assert!(first.get("degraded").is_some(), "{first}");
    assert_eq!(u(&first, "embedded"), 0, "{first}");
    assert_eq!(sb.status()["state"], "degraded");

    fake.set_expected_key(Some(KEY));
    fake.reset();
    let second = sb.index();

    assert!(second.get("degraded").is_none(), "{second}");
    assert!(u(&second, "requests") > 0, "{second}");
    let status = sb.status();
    assert!(
        u(&second, "embedded") >= status["chunks"].as_u64().unwrap_or(0),
        "every chunk that had no vector is embedded now: {second} / {status}"
    );
    assert_eq!(status["state"], "ready", "{status}");
    assert!(status.get("lastError").is_none(), "{status}");
    assert_eq!(status["embedding"]["dimensions"], 64, "{status}");
    // And a third run has nothing left to embed.
    fake.reset();
    let third = sb.index();
    assert_eq!(u(&third, "requests"), 0, "{third}");
    assert!(fake.requests_to(Endpoint::Embeddings).is_empty());
    sb.assert_key_never_leaked();
}

// ---------------------------------------------------------------------------------------
// 6. Remote rerank
// ---------------------------------------------------------------------------------------

const RERANK_SETTINGS: &str = "[rerank]\ncandidates = 6\ntop_k = 3\n";

#[test]
fn ask_reranks_the_fused_candidates_remotely_and_keeps_the_rerankers_best_top_k() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default().with(RERANK_SETTINGS));
    let chunks = sb.index();
    assert!(chunks.get("degraded").is_none(), "{chunks}");
    fake.reset();

    let q = "retry with exponential backoff delay";
    let answer = sb.ask(q);

    let reranks = fake.requests_to(Endpoint::Rerank);
    assert_eq!(reranks.len(), 1, "one rerank request");
    let body = &reranks[0].body;
    assert_eq!(body["model"], RERANK_MODEL);
    assert_eq!(body["query"], q);
    let docs: Vec<String> = arr(body, "documents")
        .iter()
        .map(|d| d.as_str().expect("document text").to_string())
        .collect();
    assert_eq!(
        docs.len(),
        6,
        "rerank.candidates = 6 of the fused candidates (the project has more chunks)"
    );
    assert_eq!(body["top_n"], 3, "top_n = top_k");
    assert_eq!(answer["models"]["rerank"], RERANK_MODEL, "{answer}");
    assert_eq!(answer["models"]["embedding"], EMBEDDING_MODEL, "{answer}");

    // The sources are the reranker's best three, in its order, with its scores.
    let mut scores: Vec<f64> = docs.iter().map(|d| rerank_score(q, d)).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let sources = arr(&answer, "sources");
    assert_eq!(sources.len(), 3, "{answer}");
    for (s, want) in sources.iter().zip(&scores) {
        let got = s["score"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-4, "score {got} vs {want}: {answer}");
    }
    assert_eq!(sources[0]["path"], "src/retry.rs", "{answer}");
    assert!(notes_of(&answer).is_empty(), "{answer}");
    sb.assert_key_never_leaked();
}

#[test]
fn search_explain_shows_the_cross_encoder_score_when_its_order_stands() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default().with(RERANK_SETTINGS));
    sb.index();
    let q = "retry with exponential backoff delay";
    let out = sb
        .ragls("search", &["--json", "--explain", "--top-k", "3", q])
        .ok()
        .json();
    let results = arr(&out, "results");
    assert_eq!(results.len(), 3, "{out}");
    for r in results {
        let e = &r["explain"];
        assert_eq!(e["remote"]["model"], RERANK_MODEL, "{r}");
        assert_eq!(e["remote"]["score"], r["score"], "{r}");
        assert!(
            e["offline"]["score"].is_number(),
            "the offline pass ran first: {r}"
        );
        assert!(
            e["fused"]["rank"].as_u64() <= Some(6),
            "one of the 6 candidates: {r}"
        );
    }
    let text = sb.ragls("search", &["--explain", q]).ok().stdout;
    assert!(
        text.contains(&format!("cross-encoder {RERANK_MODEL}: ")),
        "{text}"
    );
}

#[test]
fn rerank_min_score_drops_sources_the_reranker_scores_low() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(
        &fake,
        &Settings::default().with("[rerank]\ncandidates = 6\ntop_k = 5\nmin_score = 0.99\n"),
    );
    sb.index();
    fake.reset();

    let q = "retry with exponential backoff delay";
    let answer = sb.ask(q);

    let body = &fake.requests_to(Endpoint::Rerank)[0].body;
    let scores: Vec<f64> = arr(body, "documents")
        .iter()
        .map(|d| rerank_score(q, d.as_str().unwrap()))
        .collect();
    let high = scores.iter().filter(|s| **s >= 0.99).count();
    assert!(high >= 1, "the fixture has a document matching every word");
    assert!(high < scores.len(), "and documents that do not: {scores:?}");
    let sources = arr(&answer, "sources");
    assert_eq!(sources.len(), high.min(5), "{answer}");
    for s in sources {
        assert!(s["score"].as_f64().unwrap() >= 0.99, "{answer}");
    }
}

#[test]
fn when_rerank_fails_the_answer_still_comes_with_sources_and_a_note() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::retries(0).with(RERANK_SETTINGS));
    sb.index();
    fake.fail_next(
        Endpoint::Rerank,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );

    let run = sb
        .ragls("ask", &["--json", "retry with exponential backoff"])
        .ok();
    let answer = run.json();

    assert_eq!(fake.requests_to(Endpoint::Rerank).len(), 1);
    let sources = arr(&answer, "sources");
    assert!(!sources.is_empty(), "{answer}");
    assert!(sources.len() <= 3, "{answer}");
    let notes = notes_of(&answer);
    assert!(
        notes.iter().any(|n| n.contains("rerank failed")),
        "a note says rerank failed: {notes:?}"
    );
    assert!(
        run.stderr.contains("note:") && run.stderr.contains("rerank failed"),
        "{}",
        run.stderr
    );
    assert_ne!(answer["models"]["rerank"], RERANK_MODEL, "{answer}");
    assert_eq!(
        answer["mode"], "generated",
        "generation still ran: {answer}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Generation and citations
// ---------------------------------------------------------------------------------------

#[test]
fn ask_generates_an_answer_whose_citations_point_at_the_sources_of_the_prompt() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    sb.index();
    fake.reset();

    let answer = sb.ask("how are failed requests retried with backoff?");

    assert_eq!(answer["mode"], "generated", "{answer}");
    assert_eq!(answer["models"]["chat"], CHAT_MODEL, "{answer}");
    let chats = fake.requests_to(Endpoint::Chat);
    assert_eq!(chats.len(), 1);
    let body = &chats[0].body;
    assert_eq!(body["model"], CHAT_MODEL);
    assert_eq!(body["stream"], true);
    let (system, user) = chat_messages(body);
    assert!(
        system.contains("[n]"),
        "the system prompt asks for [n] citations: {system}"
    );
    assert!(
        system.contains("not enough") || system.contains("insufficient"),
        "the system prompt says to admit missing information: {system}"
    );
    let headers = prompt_headers(&user);
    assert!(headers.len() >= 2, "{user}");
    let sources = arr(&answer, "sources");
    assert_eq!(
        sources.len(),
        headers.len(),
        "sources are exactly the prompt's"
    );
    for (h, s) in headers.iter().zip(sources) {
        assert_eq!(s["path"], h.path.as_str(), "{h:?} vs {s}");
        assert_eq!(s["start_line"], h.start_line, "{h:?} vs {s}");
        assert_eq!(s["end_line"], h.end_line, "{h:?} vs {s}");
        assert_eq!(s["language"], h.language.as_str(), "{h:?} vs {s}");
        assert_eq!(s["symbol"].as_str(), h.symbol.as_deref(), "{h:?} vs {s}");
    }
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.n, i + 1, "sources are numbered from 1 in order");
    }

    // The fake cites [1] and [2]: they stay [1] and [2], and map to headers 1 and 2.
    let text = answer["answer"].as_str().unwrap();
    assert_eq!(
        text,
        "The retry logic lives in the first source [1]. It is used by the client [1][2]. See also [1][2].",
    );
    let citations = arr(&answer, "citations");
    assert_eq!(citations.len(), 2, "{answer}");
    for (k, c) in citations.iter().enumerate() {
        let h = &headers[k];
        assert_eq!(c["n"], k + 1);
        assert_eq!(c["path"], h.path.as_str());
        assert_eq!(c["start_line"], h.start_line);
        assert_eq!(c["end_line"], h.end_line);
    }

    let usage = &answer["usage"];
    assert!(
        usage["promptTokens"].as_u64().is_some_and(|n| n > 0),
        "{answer}"
    );
    assert!(
        usage["completionTokens"].as_u64().is_some_and(|n| n > 0),
        "{answer}"
    );
    assert!(usage["cost"].as_f64().is_some(), "{answer}");
    assert!(answer["timings"]["generateMs"].is_u64(), "{answer}");
    assert!(answer["timings"]["retrieveMs"].is_u64(), "{answer}");
    sb.assert_key_never_leaked();
}

#[test]
fn ask_in_text_mode_streams_the_answer_then_lists_the_cited_locations() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    sb.index();
    fake.reset();

    let run = sb
        .ragls("ask", &["how are failed requests retried with backoff?"])
        .ok();

    let (_, user) = chat_messages(&fake.requests_to(Endpoint::Chat)[0].body);
    let headers = prompt_headers(&user);
    assert!(headers.len() >= 2, "{user}");
    let out = &run.stdout;
    let answer =
        "The retry logic lives in the first source [1]. It is used by the client [1][2]. See also [1, 2].";
    assert!(
        out.starts_with(answer),
        "the streamed text comes first:\n{out}"
    );
    let citation_lines: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(citation_lines.len(), 2, "{out}");
    for (k, line) in citation_lines.iter().enumerate() {
        let h = &headers[k];
        let want = format!("[{}] {}:{}", k + 1, h.path, h.start_line);
        assert!(
            line.starts_with(&want),
            "{line:?} should start with {want:?}\n{out}"
        );
    }
    assert!(
        out.find(answer).unwrap() < out.find(citation_lines[0]).unwrap(),
        "citations come after the answer"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Citation edge
// ---------------------------------------------------------------------------------------

#[test]
fn markers_for_sources_that_do_not_exist_are_removed_and_the_rest_keep_their_numbers() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.set_chat_answer(Some("It retries [2] and [9].".into()));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    sb.index();
    fake.reset();

    let answer = sb.ask("how are failed requests retried with backoff?");

    let sources = arr(&answer, "sources");
    assert!(
        sources.len() >= 2 && sources.len() < 9,
        "need 2..8 sources: {answer}"
    );
    assert_eq!(answer["mode"], "generated");
    // [2] keeps its number: the client showed it while streaming (issue 12).
    assert_eq!(answer["answer"], "It retries [2] and.", "{answer}");
    let citations = arr(&answer, "citations");
    assert_eq!(citations.len(), 1, "{answer}");
    let c = &citations[0];
    assert_eq!(c["n"], 2);
    assert_eq!(c["path"], sources[1]["path"], "[2] was the second source");
    assert_eq!(c["start_line"], sources[1]["start_line"]);
    assert_eq!(c["end_line"], sources[1]["end_line"]);
}

// ---------------------------------------------------------------------------------------
// 9. SSE edge cases
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_stream_with_comments_and_a_multi_line_event_yields_the_exact_text_and_usage() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    fake.set_event_gap(Duration::from_millis(5));
    let chat = ChatClient::new(provider(&fake, 0), CHAT_MODEL);
    let mut deltas: Vec<String> = Vec::new();
    let mut on_delta = |t: &str| deltas.push(t.to_string());

    let outcome = chat
        .stream(&messages(TWO_SOURCES), &mut on_delta)
        .await
        .expect("the stream succeeds");

    let expected = default_answer(&[1, 2]);
    assert_eq!(outcome.text, expected);
    assert!(deltas.len() >= 2, "the text came in pieces: {deltas:?}");
    assert_eq!(deltas.concat(), expected);
    let usage = outcome.usage.expect("usage from the final chunk");
    assert!(usage.prompt_tokens > 0 && usage.completion_tokens > 0);
    assert_eq!(usage.cost, Some(0.00012));
    assert_eq!(outcome.generation_id.as_deref(), Some("gen-fake-1"));
    assert_eq!(outcome.finish_reason.as_deref(), Some("stop"));
    let req = &fake.requests_to(Endpoint::Chat)[0];
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.header("authorization"), Some("Bearer sk-test-key-123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_mid_stream_fails_the_answer_with_its_message() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(5));
    fake.fail_next(
        Endpoint::Chat,
        Failure::ErrorMidStream {
            after_events: 2,
            message: "upstream model crashed".into(),
        },
        1,
    );
    let chat = ChatClient::new(provider(&fake, 3), CHAT_MODEL);
    let mut on_delta = |_: &str| {};

    let result = chat.stream(&messages(TWO_SOURCES), &mut on_delta).await;

    match result {
        Err(ProviderError::Stream(m)) => assert!(m.contains("upstream model crashed"), "{m}"),
        other => panic!("expected a stream error, got {other:?}"),
    }
    assert_eq!(fake.requests_to(Endpoint::Chat).len(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_before_done_is_an_error() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(5));
    fake.fail_next(Endpoint::Chat, Failure::DropStream { after_events: 2 }, 1);
    let chat = ChatClient::new(provider(&fake, 0), CHAT_MODEL);
    let mut text = String::new();
    let mut on_delta = |t: &str| text.push_str(t);

    let result = chat.stream(&messages(TWO_SOURCES), &mut on_delta).await;

    assert!(
        matches!(result, Err(ProviderError::Stream(_))),
        "a connection closed early is a failed answer: {result:?}"
    );
    assert!(!text.is_empty(), "the first pieces did arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_stream_event_is_an_error() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(5));
    fake.fail_next(Endpoint::Chat, Failure::MalformedJson, 1);
    let chat = ChatClient::new(provider(&fake, 0), CHAT_MODEL);
    let mut on_delta = |_: &str| {};

    let result = chat.stream(&messages(TWO_SOURCES), &mut on_delta).await;

    assert!(
        matches!(result, Err(ProviderError::Stream(_))),
        "truncated JSON then end of stream: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_stalls_longer_than_the_timeout_fails_with_a_clear_error() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(2500));
    let config = ProviderConfig {
        base_url: fake.base_url(),
        api_key_env: key_env().to_string(),
        timeout_s: 1,
        max_retries: 0,
        ..ProviderConfig::default()
    };
    let chat = ChatClient::new(Provider::from_config(&config).unwrap(), CHAT_MODEL);
    let mut on_delta = |_: &str| {};

    let result = chat.stream(&messages(TWO_SOURCES), &mut on_delta).await;

    match result {
        // chat.rs means to say "no data for 1 s; the model stopped answering"; the client's
        // read timeout (the same 1 s) may fire first with its own wording.
        Err(ProviderError::Stream(m)) => assert!(
            m.contains("no data for 1 s") || m.contains("timed out"),
            "{m}"
        ),
        other => panic!("expected a stall error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// 10. Cancellation
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_after_the_first_delta_closes_the_upstream_connection() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(300));
    let chat = ChatClient::new(provider(&fake, 0), CHAT_MODEL);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut on_delta = move |t: &str| {
        let _ = tx.send(t.to_string());
    };
    let msgs = messages(TWO_SOURCES);
    let mut stream = Box::pin(chat.stream(&msgs, &mut on_delta));

    tokio::select! {
        r = &mut stream => panic!("the stream ended before it was cancelled: {r:?}"),
        first = rx.recv() => assert!(first.is_some_and(|t| !t.is_empty())),
    }
    drop(stream);

    assert!(
        poll_until_async(Duration::from_secs(5), || fake.disconnects() == 1).await,
        "the fake saw the client go away (disconnects = {})",
        fake.disconnects()
    );
    assert!(
        poll_until_async(Duration::from_secs(5), || fake.in_flight(Endpoint::Chat)
            == 0)
        .await,
        "no chat request left in flight"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_stream_closes_the_upstream_connection() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(300));
    let chat = ChatClient::new(provider(&fake, 0), CHAT_MODEL);
    let mut on_delta = |_: &str| {};
    let msgs = messages(TWO_SOURCES);

    let r = tokio::time::timeout(
        Duration::from_millis(400),
        chat.stream(&msgs, &mut on_delta),
    )
    .await;

    assert!(r.is_err(), "the stream takes seconds; it timed out: {r:?}");
    assert!(
        poll_until_async(Duration::from_secs(5), || fake.disconnects() == 1).await,
        "the fake saw the client go away (disconnects = {})",
        fake.disconnects()
    );
}

// ---------------------------------------------------------------------------------------
// 11. Token budget
// ---------------------------------------------------------------------------------------

#[test]
fn a_small_context_budget_keeps_the_best_sources_that_fit_and_reports_exactly_those() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let top_k = "[rerank]\ntop_k = 5\n";
    let sb = Sandbox::with_project(&fake, &Settings::default().with(top_k));
    sb.index();
    let q = "how are failed requests retried with backoff?";

    // The full ranking, with the default budget.
    let full = sb.ask(q);
    let full_sources = arr(&full, "sources").clone();
    assert_eq!(full_sources.len(), 5, "{full}");

    sb.configure(&Settings::default().with(&format!("{top_k}[chat]\nmax_context_tokens = 300\n")));
    fake.reset();
    let small = sb.ask(q);

    let (system, user) = chat_messages(&fake.requests_to(Endpoint::Chat)[0].body);
    let tokens = estimate_tokens(&system) + estimate_tokens(&user);
    assert!(
        tokens <= 300,
        "the prompt fits the budget: {tokens} tokens\n{user}"
    );
    let headers = prompt_headers(&user);
    assert!(
        !headers.is_empty() && headers.len() < 5,
        "fewer sources than top_k: {user}"
    );
    let sources = arr(&small, "sources");
    assert_eq!(
        sources.len(),
        headers.len(),
        "sources are exactly those in the prompt"
    );
    for (i, (h, s)) in headers.iter().zip(sources).enumerate() {
        assert_eq!(s["path"], h.path.as_str());
        assert_eq!(s["start_line"], h.start_line);
        // The best ones are kept: the lowest ranked are dropped.
        assert_eq!(s["path"], full_sources[i]["path"], "{small}\n{full}");
        assert_eq!(s["start_line"], full_sources[i]["start_line"]);
    }
}

// ---------------------------------------------------------------------------------------
// 12. Secrets never reach the provider
// ---------------------------------------------------------------------------------------

#[test]
fn secrets_files_are_never_sent_to_the_provider() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    sb.write(
        ".env",
        "SECRET_TOKEN=zzsecretzz\nDATABASE_URL=postgres://zzdbpasszz@db\n",
    );
    sb.write(
        "id_rsa",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nzzrsakeyzz\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    sb.write("credentials.json", "{\"token\": \"zzcredzz\"}\n");

    sb.index();
    sb.ask("where is the secret token or the database password configured?");
    sb.ragls("search", &["--json", "secret token database password"])
        .ok();

    let reqs = fake.requests();
    assert!(reqs.iter().any(|r| r.endpoint == Endpoint::Embeddings));
    assert!(reqs.iter().any(|r| r.endpoint == Endpoint::Rerank));
    assert!(reqs.iter().any(|r| r.endpoint == Endpoint::Chat));
    for r in &reqs {
        let body = r.body.to_string();
        for secret in [
            "zzsecretzz",
            "zzdbpasszz",
            "zzrsakeyzz",
            "zzcredzz",
            "PRIVATE KEY",
        ] {
            assert!(
                !body.contains(secret),
                "{:?} request {} carries {secret:?}",
                r.endpoint,
                r.path
            );
        }
    }
    for text in embedded_texts(&fake) {
        for name in [".env\n", "id_rsa\n", "credentials.json\n"] {
            assert!(!text.starts_with(name), "{name:?} was embedded: {text:?}");
        }
    }
    let status = sb.status();
    assert!(
        status["skipped"]["secret"].as_u64().unwrap_or(0) >= 3,
        "the secrets are skipped as such: {status}"
    );
}

// ---------------------------------------------------------------------------------------
// 13. Extractive fallback
// ---------------------------------------------------------------------------------------

#[test]
fn when_generation_fails_ask_answers_extractively_with_a_note_and_exit_code_0() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::retries(0));
    sb.index();
    fake.fail_next(
        Endpoint::Chat,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );

    let run = sb.ragls(
        "ask",
        &["--json", "how are failed requests retried with backoff?"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer = run.json();

    assert_eq!(answer["mode"], "extractive", "{answer}");
    assert_eq!(fake.requests_to(Endpoint::Chat).len(), 1);
    let notes = notes_of(&answer);
    assert!(
        notes.iter().any(|n| n.contains("generation failed")),
        "{notes:?}"
    );
    assert!(run.stderr.contains("note:"), "{}", run.stderr);
    let sources = arr(&answer, "sources");
    assert!(!sources.is_empty(), "{answer}");
    assert_eq!(arr(&answer, "citations").len(), sources.len(), "{answer}");
    assert!(answer.get("usage").is_none(), "{answer}");
    sb.assert_key_never_leaked();
}

#[test]
fn an_error_in_the_middle_of_the_answer_stream_falls_back_to_the_sources_with_its_message() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let sb = Sandbox::with_project(&fake, &Settings::default());
    sb.index();
    fake.fail_next(
        Endpoint::Chat,
        Failure::ErrorMidStream {
            after_events: 2,
            message: "the upstream model crashed".into(),
        },
        1,
    );

    let run = sb.ragls(
        "ask",
        &["--json", "how are failed requests retried with backoff?"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let answer = run.json();

    assert_eq!(answer["mode"], "extractive", "{answer}");
    let notes = notes_of(&answer);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("generation failed") && n.contains("the upstream model crashed")),
        "{notes:?}"
    );
    assert!(!arr(&answer, "sources").is_empty(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_too_long_for_the_model_is_sent_truncated_and_counted_not_dropped() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let config = EmbeddingConfig {
        max_input_chars: 1000,
        max_request_chars: 5000,
        ..EmbeddingConfig::default()
    };
    let e = RemoteEmbedder::new(provider(&fake, 0), &config);
    let long = "word ".repeat(1000); // 5000 characters
    let texts = ["short text", long.as_str()];

    let vectors = e.embed_async(&texts).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 2, "no input is dropped");
    let sent: Vec<String> = fake
        .requests_to(Endpoint::Embeddings)
        .iter()
        .flat_map(|r| inputs_of(&r.body))
        .collect();
    assert!(
        sent.iter().all(|t| t.len() <= 1000),
        "{:?}",
        sent.iter().map(String::len).collect::<Vec<_>>()
    );
    assert!(sent.contains(&"short text".to_string()));
    assert_eq!(ragls::embed::Embedder::truncated_inputs(&e), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_split_by_the_character_cap_as_well_as_the_batch_size() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some(KEY));
    let config = EmbeddingConfig {
        batch_size: 64,
        max_input_chars: 1000,
        max_request_chars: 2500,
        ..EmbeddingConfig::default()
    };
    let e = RemoteEmbedder::new(provider(&fake, 0), &config);
    let texts: Vec<String> = (0..6).map(|i| format!("{i} {}", "x".repeat(998))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let vectors = e.embed_async(&refs).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 6);
    let reqs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(
        reqs.len(),
        3,
        "two 1000-character inputs per 2500-character request"
    );
    for r in &reqs {
        let chars: usize = inputs_of(&r.body).iter().map(String::len).sum();
        assert!(chars <= 2500, "{chars}");
    }
}
