//! Exercises the fake OpenRouter server of `tests/support/fake_provider.rs` with a real HTTP
//! client (reqwest), so the other tests can trust it.

use crate::fake_provider;

use fake_provider::{cosine, fake_embedding, Endpoint, Failure, FakeProvider};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post(fake: &FakeProvider, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(format!("{}{}", fake.base_url(), path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn vector(item: &Value) -> Vec<f32> {
    item["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Vectors of an embeddings response, put back in input order by `index`.
fn by_index(resp: &Value) -> Vec<Vec<f32>> {
    let data = resp["data"].as_array().unwrap();
    let mut out = vec![Vec::new(); data.len()];
    for item in data {
        out[item["index"].as_u64().unwrap() as usize] = vector(item);
    }
    out
}

/// Parse an SSE text into events: (data joined with "\n", or None for a comment-only event).
fn sse_events(raw: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for block in raw.split("\n\n") {
        if block.is_empty() {
            continue;
        }
        let data: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        if data.is_empty() {
            assert!(
                block.lines().all(|l| l.starts_with(':')),
                "odd block {block:?}"
            );
            out.push(None);
        } else {
            out.push(Some(data.join("\n")));
        }
    }
    out
}

/// The concatenated `delta.content` of an SSE chat stream.
fn streamed_content(raw: &str) -> String {
    sse_events(raw)
        .into_iter()
        .flatten()
        .filter(|d| d != "[DONE]")
        .map(|d| {
            let v: Value = serde_json::from_str(&d).unwrap();
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

fn markers(text: &str) -> Vec<u32> {
    // [1], [1][2], [1, 2]
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        let after = &rest[i + 1..];
        let Some(j) = after.find(']') else { break };
        for part in after[..j].split(',') {
            if let Ok(n) = part.trim().parse::<u32>() {
                out.push(n);
            }
        }
        rest = &after[j..];
    }
    out
}

fn chat_body(user: &str, stream: bool) -> Value {
    json!({
        "model": "openai/gpt-4o-mini",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "Answer from the sources and cite them like [1]."},
            {"role": "user", "content": user},
        ],
    })
}

const TWO_SOURCES: &str = "Question: where is the retry logic?\n\nSources:\n\
[1] src/retry.rs:10-24 (fn retry_with_backoff)\nfn retry_with_backoff() {}\n\n\
[2] src/client.rs:3-9 (fn send)\nfn send() { retry_with_backoff() }\n";

#[tokio::test]
async fn embeddings_shapes_order_determinism_similarity() {
    let fake = FakeProvider::start();
    let inputs = [
        "retry backoff",
        "fn retry_with_backoff(delay: Duration) { sleep(delay * 2) } // exponential backoff retry",
        "parse the configuration file from toml",
        "render html template for the homepage",
    ];
    let resp = post(
        &fake,
        "/embeddings",
        json!({"model": "openai/text-embedding-3-small", "input": inputs, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "openai/text-embedding-3-small");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["prompt_tokens"], v["usage"]["total_tokens"]);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    // Shuffled (reversed): position != index.
    let indices: Vec<u64> = data.iter().map(|d| d["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, vec![3, 2, 1, 0]);
    for d in data {
        assert_eq!(d["object"], "embedding");
        let e = vector(d);
        assert_eq!(e.len(), 64);
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert!(e.iter().all(|x| *x > 0.0));
    }
    let vecs = by_index(&v);
    for (i, text) in inputs.iter().enumerate() {
        let expect = fake_embedding(text, 64);
        for (a, b) in vecs[i].iter().zip(&expect) {
            assert!((a - b).abs() < 1e-6);
        }
    }
    // Word overlap means similarity.
    let near = cosine(&vecs[0], &vecs[1]);
    let far1 = cosine(&vecs[0], &vecs[2]);
    let far2 = cosine(&vecs[0], &vecs[3]);
    assert!(near > 0.4, "near {near}");
    assert!(
        near > far1 + 0.2 && near > far2 + 0.2,
        "{near} {far1} {far2}"
    );

    // Deterministic, a single string input works, `dimensions` is honoured.
    let again: Value = post(
        &fake,
        "/embeddings",
        json!({"model": "m", "input": "retry backoff"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(again["data"].as_array().unwrap().len(), 1);
    assert_eq!(vector(&again["data"][0]), vecs[0]);
    let small: Value = post(
        &fake,
        "/embeddings",
        json!({"model": "m", "input": ["a b", "c"], "dimensions": 16}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert!(by_index(&small).iter().all(|e| e.len() == 16));
    fake.set_dimensions(32);
    let d32: Value = post(&fake, "/embeddings", json!({"model": "m", "input": ["x"]}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(vector(&d32["data"][0]).len(), 32);

    // base64 encoding: little-endian f32.
    let b64: Value = post(
        &fake,
        "/embeddings",
        json!({"model": "m", "input": "retry backoff", "dimensions": 8, "encoding_format": "base64"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let s = b64["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(s.len(), 44); // 32 bytes -> 44 base64 chars
    assert!(s.ends_with('='));

    // Both roots serve, and requests are recorded.
    let root = client()
        .post(format!("{}/embeddings", fake.root_url()))
        .json(&json!({"model": "m", "input": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    let recs = fake.requests_to(Endpoint::Embeddings);
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[0].path, "/api/v1/embeddings");
    assert_eq!(recs[5].path, "/embeddings");
    assert_eq!(recs[0].body["input"][0], "retry backoff");
    assert_eq!(recs[0].header("Content-Type"), Some("application/json"));
    assert!(fake.requests_to(Endpoint::Chat).is_empty());
    fake.reset();
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn rerank_orders_best_first_with_top_n() {
    let fake = FakeProvider::start();
    let docs = [
        "parse configuration",
        "retry with exponential backoff and jitter",
        "retry once",
        "fn backoff_retry_loop() { retry; backoff; jitter }",
    ];
    let v: Value = post(
        &fake,
        "/rerank",
        json!({"model": "cohere/rerank-v3.5", "query": "retry backoff jitter", "documents": docs, "top_n": 3}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["model"], "cohere/rerank-v3.5");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let order: Vec<u64> = results
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(order, vec![1, 3, 2]); // 1.0, 1.0 (tie -> lower index first), 1/3
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["relevance_score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores[0], 1.0);
    assert_eq!(scores[1], 1.0);
    assert!((scores[2] - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(results[0]["document"]["text"], docs[1]);

    // Without top_n: every document, scores in [0,1] and non-increasing.
    let all: Value = post(
        &fake,
        "/rerank",
        json!({"model": "m", "query": "retry backoff jitter", "documents": docs}),
    )
    .await
    .json()
    .await
    .unwrap();
    let scores: Vec<f64> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["relevance_score"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.len(), 4);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert_eq!(*scores.last().unwrap(), 0.0);
}

#[tokio::test]
async fn chat_stream_wire_format_and_citations() {
    let fake = FakeProvider::start();
    let resp = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(
        resp.headers()["x-generation-id"].to_str().unwrap(),
        "gen-fake-1"
    );
    let raw = resp.text().await.unwrap();

    assert!(raw.starts_with(": OPENROUTER PROCESSING\n\n"), "{raw}");
    assert_eq!(raw.matches(": OPENROUTER PROCESSING\n\n").count(), 2);
    assert!(raw.ends_with("data: [DONE]\n\n"));
    assert_eq!(raw.matches("[DONE]").count(), 1);
    let events = sse_events(&raw);
    // A comment in the middle, i.e. not only the first event.
    assert!(events[1..events.len() - 1].iter().any(Option::is_none));
    // One event spans two data: lines.
    let multi = raw
        .split("\n\n")
        .filter(|b| b.lines().filter(|l| l.starts_with("data:")).count() == 2)
        .count();
    assert_eq!(multi, 1, "{raw}");
    let data: Vec<String> = events.into_iter().flatten().collect();
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("each event is JSON once lines are joined"))
        .collect();
    assert!(chunks.len() >= 5 && chunks.len() <= 9, "{}", chunks.len());
    for c in &chunks {
        assert_eq!(c["id"], "gen-fake-1");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "openai/gpt-4o-mini");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
    let usage = &last["usage"];
    let (p, c, t) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0 && t == p + c);
    assert_eq!(usage["cost"].as_f64().unwrap(), 0.00012);

    let answer = streamed_content(&raw);
    assert_eq!(
        answer,
        "The retry logic lives in the first source [1]. It is used by the client [1][2]. See also [1, 2]."
    );
    let m = markers(&answer);
    assert!(m.contains(&1) && m.contains(&2));
    assert!(m.iter().all(|n| *n == 1 || *n == 2));

    // One source: only [1]. None: no markers at all.
    let one = post(
        &fake,
        "/chat/completions",
        chat_body("Sources:\n[1] src/a.rs:1-3\nfn a() {}\n", true),
    )
    .await;
    assert_eq!(
        one.headers()["x-generation-id"].to_str().unwrap(),
        "gen-fake-2"
    );
    let one = streamed_content(&one.text().await.unwrap());
    assert!(!markers(&one).is_empty());
    assert!(markers(&one).iter().all(|n| *n == 1), "{one}");
    let none = post(
        &fake,
        "/chat/completions",
        chat_body("No sources here.", true),
    )
    .await;
    let none = streamed_content(&none.text().await.unwrap());
    assert_eq!(none, "The sources do not contain the answer.");

    // Override, streamed and not.
    fake.set_chat_answer(Some("Bogus [9] answer.".into()));
    let o = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    assert_eq!(
        streamed_content(&o.text().await.unwrap()),
        "Bogus [9] answer."
    );
    let o: Value = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(o["choices"][0]["message"]["content"], "Bogus [9] answer.");
    assert_eq!(o["choices"][0]["message"]["role"], "assistant");
    assert!(o["usage"]["total_tokens"].as_u64().unwrap() > 0);
    fake.set_chat_answer(None);
    let o: Value = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, false))
        .await
        .json()
        .await
        .unwrap();
    assert!(o["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("[1][2]"));
    assert_eq!(fake.requests_to(Endpoint::Chat).len(), 6);
    assert_eq!(fake.disconnects(), 0);
}

#[tokio::test]
async fn chat_stream_is_paced_by_event_gap() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(50));
    let start = Instant::now();
    let mut resp = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    let mut arrivals = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        arrivals.push((start.elapsed(), chunk));
    }
    // 1 comment + 6 content + 1 comment + final + [DONE] = 10 events, 9 gaps of 50 ms.
    let total = arrivals.last().unwrap().0;
    assert!(total >= Duration::from_millis(400), "{total:?}");
    assert!(
        arrivals.len() >= 5,
        "events arrive separately: {}",
        arrivals.len()
    );
}

#[tokio::test]
async fn status_429_with_retry_after_then_success() {
    let fake = FakeProvider::start();
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::Status {
            code: 429,
            retry_after: Some("1".into()),
        },
        1,
    );
    fake.fail_next(
        Endpoint::Rerank,
        Failure::Status {
            code: 503,
            retry_after: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        },
        2,
    );
    let body = json!({"model": "m", "input": ["a"]});
    let r = post(&fake, "/embeddings", body.clone()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"].to_str().unwrap(), "1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], 429);
    assert!(e["error"]["message"].as_str().unwrap().len() > 3);
    let r = post(&fake, "/embeddings", body.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(fake.requests_to(Endpoint::Embeddings).len(), 2);

    let rb = json!({"model": "m", "query": "q", "documents": ["d"]});
    for _ in 0..2 {
        let r = post(&fake, "/rerank", rb.clone()).await;
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers()["retry-after"].to_str().unwrap(),
            "Wed, 21 Oct 2015 07:28:00 GMT"
        );
    }
    assert_eq!(post(&fake, "/rerank", rb.clone()).await.status(), 200);

    // No Retry-After when none is given; reset drops queued failures.
    fake.fail_next(
        Endpoint::Chat,
        Failure::Status {
            code: 502,
            retry_after: None,
        },
        1,
    );
    let r = post(&fake, "/chat/completions", chat_body("x", false)).await;
    assert_eq!(r.status(), 502);
    assert!(r.headers().get("retry-after").is_none());
    fake.fail_next(
        Endpoint::Chat,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        3,
    );
    fake.reset();
    assert_eq!(
        post(&fake, "/chat/completions", chat_body("x", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_or_missing_key_gets_401() {
    let fake = FakeProvider::start();
    fake.set_expected_key(Some("sk-or-test"));
    let body = json!({"model": "m", "input": "x"});
    let url = format!("{}/embeddings", fake.base_url());
    let r = client().post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], 401);
    let r = client()
        .post(&url)
        .bearer_auth("sk-or-wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(&url)
        .bearer_auth("sk-or-test")
        .header("HTTP-Referer", "https://example.test")
        .header("X-Title", "ragls")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recs = fake.requests();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0].header("authorization"), None);
    assert_eq!(recs[1].header("authorization"), Some("Bearer sk-or-wrong"));
    assert_eq!(recs[2].header("x-title"), Some("ragls"));
    assert_eq!(recs[2].header("http-referer"), Some("https://example.test"));
    fake.set_expected_key(None);
    assert_eq!(
        client()
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn unknown_model_gets_400() {
    let fake = FakeProvider::start();
    fake.set_known_models(Some(vec!["openai/text-embedding-3-small".into()]));
    let r = post(
        &fake,
        "/embeddings",
        json!({"model": "nope/model", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        e,
        json!({"error": {"code": 400, "message": "nope/model is not a valid model ID"}})
    );
    let r = post(
        &fake,
        "/embeddings",
        json!({"model": "openai/text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_json_and_slow_failures() {
    let fake = FakeProvider::start();
    fake.fail_next(Endpoint::Embeddings, Failure::MalformedJson, 1);
    let r = post(&fake, "/embeddings", json!({"model": "m", "input": "x"})).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    // Then healthy again.
    let r = post(&fake, "/embeddings", json!({"model": "m", "input": "x"})).await;
    assert!(r.json::<Value>().await.is_ok());

    // Streamed chat: a truncated JSON event, no [DONE].
    fake.fail_next(Endpoint::Chat, Failure::MalformedJson, 1);
    let raw = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true))
        .await
        .text()
        .await
        .unwrap();
    assert!(!raw.contains("[DONE]"));
    let data: Vec<String> = sse_events(&raw).into_iter().flatten().collect();
    assert_eq!(data.len(), 1);
    assert!(serde_json::from_str::<Value>(&data[0]).is_err());

    fake.fail_next(
        Endpoint::Rerank,
        Failure::Slow(Duration::from_millis(300)),
        1,
    );
    let t = Instant::now();
    let r = post(
        &fake,
        "/rerank",
        json!({"model": "m", "query": "q", "documents": ["d"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn drop_stream_ends_without_done() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(5));
    fake.fail_next(Endpoint::Chat, Failure::DropStream { after_events: 2 }, 1);
    let mut resp = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    assert_eq!(resp.status(), 200);
    let mut raw = String::new();
    let mut error = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => raw.push_str(&String::from_utf8_lossy(&c)),
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(
        error.is_some(),
        "the connection is cut, not ended cleanly: {raw}"
    );
    assert!(!raw.contains("[DONE]"));
    let data: Vec<String> = sse_events(&raw).into_iter().flatten().collect();
    assert_eq!(data.len(), 2, "{raw}");
    assert!(streamed_content(&raw).starts_with("The retry"));
    // Server-side abort is not a client disconnect.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.disconnects(), 0);

    // Non-streamed endpoints: the body never arrives.
    fake.fail_next(
        Endpoint::Embeddings,
        Failure::DropStream { after_events: 0 },
        1,
    );
    let r = client()
        .post(format!("{}/embeddings", fake.base_url()))
        .json(&json!({"model": "m", "input": "x"}))
        .send()
        .await;
    // hyper sends the headers with the first body bytes, so the abort usually shows as a
    // failed request; if the headers did get out, reading the body fails.
    match r {
        Err(_) => {}
        Ok(r) => assert!(r.bytes().await.is_err()),
    }
    assert_eq!(fake.requests_to(Endpoint::Embeddings).len(), 1);
}

#[tokio::test]
async fn error_mid_stream_carries_error_object() {
    let fake = FakeProvider::start();
    fake.fail_next(
        Endpoint::Chat,
        Failure::ErrorMidStream {
            after_events: 3,
            message: "Provider disconnected".into(),
        },
        1,
    );
    let resp = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    assert_eq!(resp.status(), 200);
    let raw = resp.text().await.unwrap(); // ends cleanly
    assert!(!raw.contains("[DONE]"));
    let data: Vec<String> = sse_events(&raw).into_iter().flatten().collect();
    assert_eq!(data.len(), 4);
    let err: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(
        err,
        json!({"error": {"code": 502, "message": "Provider disconnected"}})
    );
    for d in &data[..3] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert!(v["choices"][0]["delta"]["content"].is_string());
    }
}

#[tokio::test]
async fn client_dropping_a_stream_is_counted() {
    let fake = FakeProvider::start();
    fake.set_event_gap(Duration::from_millis(50));
    // A completed stream is not a disconnect.
    post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(fake.disconnects(), 0);
    assert_eq!(fake.in_flight(Endpoint::Chat), 0);

    let resp = post(&fake, "/chat/completions", chat_body(TWO_SOURCES, true)).await;
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("OPENROUTER PROCESSING"));
    let second = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&second).contains("data:"));
    drop(body);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.disconnects() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.disconnects(), 1);
    // The stream ended early, well before its ~450 ms of events, and the in-flight count
    // went back to zero.
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.in_flight(Endpoint::Chat) != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.in_flight(Endpoint::Chat), 0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(fake.disconnects(), 1, "counted once");
}

#[tokio::test]
async fn latency_is_applied() {
    let fake = FakeProvider::start();
    let t = Instant::now();
    post(&fake, "/embeddings", json!({"model": "m", "input": "x"})).await;
    let fast = t.elapsed();
    fake.set_latency(Duration::from_millis(300));
    let t = Instant::now();
    let r = post(&fake, "/embeddings", json!({"model": "m", "input": "x"})).await;
    assert_eq!(r.status(), 200);
    let slow = t.elapsed();
    assert!(slow >= Duration::from_millis(300), "{slow:?}");
    assert!(slow > fast, "{slow:?} vs {fast:?}");
    // Latency comes before the headers of a stream too.
    let t = Instant::now();
    let r = post(&fake, "/chat/completions", chat_body("x", true)).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn max_in_flight_counts_concurrent_requests() {
    let fake = FakeProvider::start();
    fake.set_latency(Duration::from_millis(300));
    let url = format!("{}/embeddings", fake.base_url());
    let c = client();
    let reqs = (0..4).map(|i| {
        let c = c.clone();
        let url = url.clone();
        async move {
            c.post(&url)
                .json(&json!({"model": "m", "input": format!("text {i}")}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    let statuses = futures_util::future::join_all(reqs).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let m = fake.max_in_flight(Endpoint::Embeddings);
    assert!((2..=4).contains(&m), "max_in_flight {m}");
    assert_eq!(fake.max_in_flight(Endpoint::Rerank), 0);
    assert_eq!(fake.in_flight(Endpoint::Embeddings), 0);
    // Sequential requests never overlap.
    fake.reset();
    fake.set_latency(Duration::ZERO);
    for _ in 0..3 {
        post(&fake, "/embeddings", json!({"model": "m", "input": "x"})).await;
    }
    assert_eq!(fake.max_in_flight(Endpoint::Embeddings), 1);
}

/// The fake works from plain synchronous tests (no runtime in the caller): raw HTTP/1.1 over
/// std's TcpStream, and dropping it stops the server.
#[test]
fn usable_from_a_sync_test_and_stops_on_drop() {
    use std::io::{Read, Write};
    let fake = FakeProvider::start();
    let addr = fake.addr();
    let body = r#"{"model":"m","input":"hello world"}"#;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        body
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"object\":\"embedding\""));
    assert_eq!(fake.requests().len(), 1);
    drop(fake);
    // The listener goes away with the runtime.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = false;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refused, "server still accepting after drop");
}
