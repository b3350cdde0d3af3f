//! A fake OpenRouter / OpenAI-compatible HTTP server for the test suite and the benchmark.
//! Tests must never call a real remote API: point the client's base URL at
//! [`FakeProvider::base_url`] instead.
//!
//! # Including it
//!
//! The file is self-contained (it needs no other support file). From a test in `tests/`:
//!
//! ```ignore
//! #[path = "support/fake_provider.rs"]
//! mod fake_provider;
//! use fake_provider::{Endpoint, Failure, FakeProvider};
//! ```
//!
//! and from a benchmark in `benches/`:
//!
//! ```ignore
//! #[path = "../tests/support/fake_provider.rs"]
//! mod fake_provider;
//! ```
//!
//! It uses the crate's dev/normal dependencies `axum` (0.8), `tokio`, `serde_json` and
//! `futures-util`.
//!
//! # Behaviour
//!
//! [`FakeProvider::start`] binds `127.0.0.1:0` and serves on its own multi-threaded tokio
//! runtime (two worker threads named `fake-provider`), so plain synchronous `#[test]` functions
//! and async tests alike can use it; dropping the value shuts the runtime down (without
//! blocking, so it may be dropped inside an async context too). Every endpoint is served at
//! the root, under `/api/v1` (the [`FakeProvider::base_url`]) and under `/v1`:
//!
//! * `POST /embeddings` — OpenAI shape. `data` comes back in REVERSED order (clients must
//!   reorder by `index`). Vectors are [`fake_embedding`]: deterministic bag of words.
//!   `encoding_format: "base64"` returns little-endian f32 bytes in base64, anything else floats.
//! * `POST /rerank` — Cohere shape, results best first, score = [`rerank_score`].
//! * `POST /chat/completions` — with `"stream": true` an SSE stream (see [`FakeProvider`] docs
//!   below for the exact event sequence), otherwise a plain chat completion object. The
//!   default answer cites the sources found in the messages ([`default_answer`]).
//!
//! Every request is processed in this order: recorded (with its parsed JSON body, `Null` when
//! the body is not JSON) → in-flight counter incremented → the next queued [`Failure`] for that
//! endpoint is popped (FIFO, so a failure is consumed even by a request that would also fail
//! the key check) → `Status` / `MalformedJson` failures answered → key check (401) → body
//! validation (400) → known-model check (400) → the real answer (where `DropStream` /
//! `ErrorMidStream` take effect); the answer, whichever it is, leaves once the latency
//! (+ `Slow` delay) has passed since the request arrived: the fake's own work is inside it.
//!
//! ## Word model (embeddings and rerank)
//!
//! [`words`]: the text is split on every character that is not alphanumeric (so `_`, `-`, `.`,
//! `::` and whitespace all separate words; camelCase is NOT split) and each word is
//! lower-cased. [`fake_embedding`]: for each word (with repetition) the bucket
//! `fnv1a_64(word) % dims` gets `+1.0`; then every component gets `+0.01` (so no vector is
//! zero) and the vector is L2-normalised. All components are positive, so every cosine is in
//! (0, 1]; texts that share words have a clearly higher cosine than texts that share none
//! (disjoint word sets only meet through hash collisions and the 0.01 floor).
//!
//! ## Chat stream event sequence (`"stream": true`, no failure)
//!
//! ```text
//! : OPENROUTER PROCESSING                 (comment)
//! data: {content chunk 1}
//! data: {"id":"gen-fake-N","object":"chat.completion.chunk",      <- chunk 2 spans two
//! data: "created":...,"choices":[...]}                               data: lines
//! : OPENROUTER PROCESSING                 (comment in the middle)
//! data: {content chunks 3..k}             (k = min(6, words in the answer), at least 1)
//! data: {final chunk: empty content, finish_reason "stop", usage {..., "cost":0.00012}}
//! data: [DONE]
//! ```
//!
//! Each event ends with a blank line; events are sent [`FakeProvider::set_event_gap`] apart
//! (20 ms by default). Concatenating the `delta.content` of all chunks gives the answer
//! exactly. The response carries `X-Generation-Id: gen-fake-N` (N counts chat requests from 1).
//! `after_events` in [`Failure::DropStream`] / [`Failure::ErrorMidStream`] counts `data:`
//! events (content chunks, then the final chunk), not comments.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::serve::ListenerExt;
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which API endpoint a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Embeddings,
    Rerank,
    Chat,
}

/// A failure to inject with [`FakeProvider::fail_next`].
#[derive(Clone, Debug)]
pub enum Failure {
    /// HTTP `code` with the OpenRouter error body `{"error":{"code":code,"message":"..."}}`
    /// and, when given, a `Retry-After` header with that exact value ("1", an HTTP date, ...).
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// 200 with a body that is not valid JSON. For a streamed chat: an SSE stream whose first
    /// `data:` event is truncated JSON, then the stream ends (no `[DONE]`).
    MalformedJson,
    /// Delay this response by that much, on top of the latency; then answer normally.
    Slow(Duration),
    /// Streamed chat: send that many `data:` events, then abort the connection (no `[DONE]`,
    /// no chunked terminator). Elsewhere (embeddings, rerank, non-streamed chat): the
    /// connection is aborted before any body byte; hyper sends headers together with the
    /// first body bytes, so the client normally sees the request fail with an incomplete
    /// message and no status at all.
    DropStream { after_events: usize },
    /// Streamed chat: after that many `data:` events send
    /// `data: {"error":{"code":502,"message":message}}` and end the stream cleanly without
    /// `[DONE]` (status stays 200). Elsewhere: 200 with that error object as the whole body.
    ErrorMidStream {
        after_events: usize,
        message: String,
    },
    /// 200 with a plain JSON chat completion (`application/json`), even when the request
    /// asked for a stream: a gateway that ignores `"stream": true`.
    NotAStream,
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub endpoint: Endpoint,
    /// The request path as sent, e.g. `/api/v1/embeddings`.
    pub path: String,
    /// Lower-cased header names, in the order received.
    pub headers: Vec<(String, String)>,
    /// The parsed JSON body, `Null` if the body was not JSON.
    pub body: Value,
    /// When the request arrived (after its body was read).
    pub at: Instant,
}

impl RecordedRequest {
    /// The first value of a header, the name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Inner {
    latency: Duration,
    event_gap: Duration,
    dims: usize,
    failures: HashMap<Endpoint, VecDeque<Failure>>,
    expected_key: Option<String>,
    known_models: Option<Vec<String>>,
    chat_answer: Option<String>,
    requests: Vec<RecordedRequest>,
    in_flight: HashMap<Endpoint, usize>,
    max_in_flight: HashMap<Endpoint, usize>,
}

struct Shared {
    inner: Mutex<Inner>,
    disconnects: AtomicUsize,
    generation: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not poison the fake for the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake server. See the module documentation for what it serves.
pub struct FakeProvider {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
}

impl FakeProvider {
    /// Start a fake on `127.0.0.1:<free port>`. Panics if it cannot bind.
    pub fn start() -> FakeProvider {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                latency: Duration::ZERO,
                event_gap: Duration::from_millis(20),
                dims: 64,
                failures: HashMap::new(),
                expected_key: None,
                known_models: None,
                chat_answer: None,
                requests: Vec::new(),
                in_flight: HashMap::new(),
                max_in_flight: HashMap::new(),
            }),
            disconnects: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
        });
        // Bind synchronously so the port is listening (connections queue in the backlog)
        // before `start` returns, and so `start` works inside an async context too (no
        // `block_on`).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("fake provider: bind");
        listener
            .set_nonblocking(true)
            .expect("fake provider: set_nonblocking");
        let addr = listener.local_addr().expect("fake provider: local_addr");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-provider")
            .enable_all()
            .build()
            .expect("fake provider: runtime");
        let app = Router::new().fallback(dispatch).with_state(shared.clone());
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener)
                .expect("fake provider: tokio listener")
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            let _ = axum::serve(listener, app).await;
        });
        FakeProvider {
            shared,
            addr,
            rt: Some(rt),
        }
    }

    /// `http://127.0.0.1:PORT/api/v1` (the root and `/v1` serve the same endpoints).
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT` with no path.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Added to every endpoint response before its headers are sent (default zero).
    pub fn set_latency(&self, d: Duration) {
        self.shared.lock().latency = d;
    }

    /// Gap between two SSE events of a streamed chat (default 20 ms).
    pub fn set_event_gap(&self, d: Duration) {
        self.shared.lock().event_gap = d;
    }

    /// Embedding dimension used when the request has no `dimensions` (default 64).
    pub fn set_dimensions(&self, n: usize) {
        self.shared.lock().dims = n.max(1);
    }

    /// Queue `failure` for the next `times` requests to `endpoint` (FIFO after any already
    /// queued).
    pub fn fail_next(&self, endpoint: Endpoint, failure: Failure, times: usize) {
        let mut inner = self.shared.lock();
        let q = inner.failures.entry(endpoint).or_default();
        for _ in 0..times {
            q.push_back(failure.clone());
        }
    }

    /// When `Some`, requests without exactly `Authorization: Bearer <key>` get a 401.
    pub fn set_expected_key(&self, key: Option<&str>) {
        self.shared.lock().expected_key = key.map(str::to_string);
    }

    /// When `Some`, a request whose `model` is not in the list gets a 400
    /// `{"error":{"code":400,"message":"<model> is not a valid model ID"}}`.
    pub fn set_known_models(&self, models: Option<Vec<String>>) {
        self.shared.lock().known_models = models;
    }

    /// Replace the chat answer (streamed or not) with this exact text; `None` restores the
    /// default, citing answer.
    pub fn set_chat_answer(&self, text: Option<String>) {
        self.shared.lock().chat_answer = text;
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RecordedRequest> {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// How many response bodies (in practice: chat streams) the client dropped before the
    /// server finished sending them. Counted once per response, when the body channel's send
    /// fails or the body is dropped unfinished. Detection needs the kernel to report the
    /// closed socket, so poll this for a little while after dropping a stream.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// The highest number of concurrent requests seen on `endpoint` (a request counts from
    /// arrival until its response body is finished or dropped).
    pub fn max_in_flight(&self, endpoint: Endpoint) -> usize {
        self.shared
            .lock()
            .max_in_flight
            .get(&endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Requests to `endpoint` in progress right now.
    pub fn in_flight(&self, endpoint: Endpoint) -> usize {
        self.shared
            .lock()
            .in_flight
            .get(&endpoint)
            .copied()
            .unwrap_or(0)
    }

    /// Clear the recorded requests, queued failures, the disconnect count and the
    /// `max_in_flight` maxima (reset to the current in-flight counts). Settings (latency,
    /// key, known models, answer, dimensions, gap) are kept.
    pub fn reset(&self) {
        let mut inner = self.shared.lock();
        inner.requests.clear();
        inner.failures.clear();
        let current = inner.in_flight.clone();
        inner.max_in_flight = current;
        self.shared.disconnects.store(0, Ordering::SeqCst);
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Non-blocking: fine inside an async context, drops every connection task.
            rt.shutdown_background();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic models of embeddings, rerank and answers (public so tests can predict).
// ---------------------------------------------------------------------------------------

/// Lower-cased words of `text`: maximal runs of alphanumeric characters.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// 64-bit FNV-1a.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The embedding the fake returns for `text` with `dims` dimensions (see the module docs).
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    let dims = dims.max(1);
    let mut v = vec![0.0f32; dims];
    for w in words(text) {
        v[(fnv1a_64(w.as_bytes()) % dims as u64) as usize] += 1.0;
    }
    for x in v.iter_mut() {
        *x += 0.01;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for x in v.iter_mut() {
        *x /= norm;
    }
    v
}

/// Cosine similarity (the dot product for the fake's normalised vectors).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

/// Rerank score: the share of the query's distinct words of 3+ characters that are words of
/// the document (whole-word match), in [0, 1]; 0 when the query has no such word.
pub fn rerank_score(query: &str, document: &str) -> f64 {
    let q: HashSet<String> = words(query)
        .into_iter()
        .filter(|w| w.chars().count() >= 3)
        .collect();
    if q.is_empty() {
        return 0.0;
    }
    let d: HashSet<String> = words(document).into_iter().collect();
    q.iter().filter(|w| d.contains(*w)).count() as f64 / q.len() as f64
}

/// The source numbers found in `text`: lines that (after leading whitespace) start with
/// `[n]`, distinct, in order of first appearance.
pub fn source_numbers(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        let Some(rest) = t.strip_prefix('[') else {
            continue;
        };
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with(']') {
            continue;
        }
        if let Ok(n) = digits.parse::<u32>() {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The default chat answer for the given source numbers (as found by [`source_numbers`]):
/// * none: `The sources do not contain the answer.` (no marker);
/// * one (`a`): `The retry logic lives in the first source [a]. See also [a].`;
/// * two or more (`a`, `b` the first two):
///   `The retry logic lives in the first source [a]. It is used by the client [a][b]. See also [a, b].`
pub fn default_answer(sources: &[u32]) -> String {
    match sources {
        [] => "The sources do not contain the answer.".to_string(),
        [a] => format!("The retry logic lives in the first source [{a}]. See also [{a}]."),
        [a, b, ..] => format!(
            "The retry logic lives in the first source [{a}]. It is used by the client [{a}][{b}]. See also [{a}, {b}]."
        ),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP handling.
// ---------------------------------------------------------------------------------------

struct InFlight {
    shared: Arc<Shared>,
    endpoint: Endpoint,
}

impl InFlight {
    fn enter(shared: &Arc<Shared>, inner: &mut Inner, endpoint: Endpoint) -> InFlight {
        let n = inner.in_flight.entry(endpoint).or_insert(0);
        *n += 1;
        let n = *n;
        let m = inner.max_in_flight.entry(endpoint).or_insert(0);
        *m = (*m).max(n);
        InFlight {
            shared: shared.clone(),
            endpoint,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        if let Some(n) = inner.in_flight.get_mut(&self.endpoint) {
            *n = n.saturating_sub(1);
        }
    }
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    let p = path
        .strip_prefix("/api/v1")
        .or_else(|| path.strip_prefix("/v1"))
        .unwrap_or(path);
    match p.trim_end_matches('/') {
        "/embeddings" => Some(Endpoint::Embeddings),
        "/rerank" => Some(Endpoint::Rerank),
        "/chat/completions" => Some(Endpoint::Chat),
        _ => None,
    }
}

fn error_body(code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn error_response(code: u16, message: &str) -> Response {
    json_response(code, &error_body(code, message))
}

fn status_message(code: u16) -> &'static str {
    match code {
        400 => "Bad request (fake failure)",
        401 => "User not found.",
        402 => "Insufficient credits (fake failure)",
        403 => "Forbidden (fake failure)",
        408 => "Request timed out (fake failure)",
        429 => "Rate limit exceeded (fake failure)",
        500 => "Internal server error (fake failure)",
        502 => "Provider returned error (fake failure)",
        503 => "No available provider (fake failure)",
        _ => "Fake failure",
    }
}

/// 200 headers, then the connection is aborted (the body stream yields an error).
fn aborted_response(content_type: &str) -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "fake provider: dropped on purpose",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(stream))
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn dispatch(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    // The latency runs from the request's arrival to its answer, with the fake's own work
    // (reading the body, answering) inside it, as a remote server's is: a client is never
    // charged for the fake's CPU on top of the latency it was given.
    let arrived = tokio::time::Instant::now();
    let path = req.uri().path().to_string();
    let Some(endpoint) = endpoint_of(&path) else {
        return error_response(404, &format!("Not found: {path}"));
    };
    if req.method() != Method::POST {
        return error_response(405, "Method not allowed");
    }
    let headers: HeaderMap = req.headers().clone();
    let bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return error_response(400, &format!("Could not read body: {e}")),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);

    let (guard, failure, latency, gap, dims, expected_key, known_models, chat_answer) = {
        let mut inner = shared.lock();
        inner.requests.push(RecordedRequest {
            endpoint,
            path: path.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.clone(),
            at: Instant::now(),
        });
        let guard = InFlight::enter(&shared, &mut inner, endpoint);
        let failure = inner
            .failures
            .get_mut(&endpoint)
            .and_then(|q| q.pop_front());
        (
            guard,
            failure,
            inner.latency,
            inner.event_gap,
            inner.dims,
            inner.expected_key.clone(),
            inner.known_models.clone(),
            inner.chat_answer.clone(),
        )
    };

    let mut delay = latency;
    if let Some(Failure::Slow(d)) = &failure {
        delay += *d;
    }
    // In flight until answered: a streamed answer carries the guard along.
    let mut guard = Some(guard);
    let answer = answer(
        shared,
        endpoint,
        headers,
        body,
        failure,
        expected_key,
        known_models,
        chat_answer,
        gap,
        dims,
        &mut guard,
    )
    .await;
    tokio::time::sleep_until(arrived + delay).await;
    drop(guard);
    answer
}

/// What [`dispatch`] answers, once the latency has passed.
#[allow(clippy::too_many_arguments)]
async fn answer(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Value,
    failure: Option<Failure>,
    expected_key: Option<String>,
    known_models: Option<Vec<String>>,
    chat_answer: Option<String>,
    gap: Duration,
    dims: usize,
    guard: &mut Option<InFlight>,
) -> Response {
    let streaming = endpoint == Endpoint::Chat && body.get("stream") == Some(&Value::Bool(true));
    match &failure {
        Some(Failure::Status { code, retry_after }) => {
            let mut resp = error_response(*code, status_message(*code));
            if let Some(ra) = retry_after {
                if let Ok(v) = HeaderValue::from_str(ra) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            return resp;
        }
        Some(Failure::NotAStream) => {
            return json_response(
                200,
                &serde_json::json!({
                    "id": "gen-plain",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "A plain answer."}, "finish_reason": "stop"}]
                }),
            );
        }
        Some(Failure::MalformedJson) if !streaming => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    "{\"object\":\"list\",\"data\":[{\"index\":0,\"embedd",
                ))
                .unwrap();
        }
        _ => {}
    }

    if let Some(key) = &expected_key {
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match got {
            None => return error_response(401, "No auth credentials found"),
            Some(v) if v != format!("Bearer {key}") => {
                return error_response(401, "User not found.")
            }
            _ => {}
        }
    }

    if body.is_null() || !body.is_object() {
        return error_response(400, "Invalid JSON body: expected a JSON object");
    }
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(known) = &known_models {
        if !known.contains(&model) {
            return error_response(400, &format!("{model} is not a valid model ID"));
        }
    }
    let model = if model.is_empty() {
        "fake/model".to_string()
    } else {
        model
    };

    // Failures that replace the body of a non-streamed answer.
    if !streaming {
        match &failure {
            Some(Failure::DropStream { .. }) => return aborted_response("application/json"),
            Some(Failure::ErrorMidStream { message, .. }) => {
                return json_response(200, &error_body(502, message))
            }
            _ => {}
        }
    }

    match endpoint {
        Endpoint::Embeddings => embeddings(&body, &model, dims),
        Endpoint::Rerank => rerank(&body, &model),
        Endpoint::Chat => {
            let id = format!(
                "gen-fake-{}",
                shared.generation.fetch_add(1, Ordering::SeqCst) + 1
            );
            chat(
                &shared,
                &body,
                &model,
                id,
                chat_answer,
                failure,
                streaming,
                gap,
                guard.take().expect("the request is in flight"),
            )
        }
    }
}

fn embeddings(body: &Value, model: &str, default_dims: usize) -> Response {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().map(|v| v.as_str().unwrap().to_string()).collect()
        }
        _ => {
            return error_response(400, "input must be a string or an array of strings");
        }
    };
    if inputs.is_empty() {
        return error_response(400, "input must not be empty");
    }
    let dims = match body.get("dimensions") {
        None | Some(Value::Null) => default_dims,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 => n as usize,
            _ => return error_response(400, "dimensions must be a positive integer"),
        },
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let mut tokens = 0usize;
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += words(text).len().max(1);
            let v = fake_embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64_encode(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    data.reverse(); // shuffled: clients must reorder by `index`
    json_response(
        200,
        &json!({
            "object": "list",
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }),
    )
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn rerank(body: &Value, model: &str) -> Response {
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        return error_response(400, "query must be a string");
    };
    let Some(docs) = body.get("documents").and_then(Value::as_array) else {
        return error_response(400, "documents must be an array");
    };
    let mut texts = Vec::with_capacity(docs.len());
    for d in docs {
        match d {
            Value::String(s) => texts.push(s.clone()),
            Value::Object(o) => match o.get("text").and_then(Value::as_str) {
                Some(s) => texts.push(s.to_string()),
                None => return error_response(400, "document objects need a text field"),
            },
            _ => return error_response(400, "documents must be strings"),
        }
    }
    let mut scored: Vec<(usize, f64)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i, rerank_score(query, t)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(n) = body.get("top_n").and_then(Value::as_u64) {
        scored.truncate(n as usize);
    }
    let results: Vec<Value> = scored
        .iter()
        .map(|(i, s)| json!({"index": i, "relevance_score": s, "document": {"text": texts[*i]}}))
        .collect();
    json_response(
        200,
        &json!({"id": "rerank-fake", "model": model, "results": results}),
    )
}

fn message_texts(body: &Value) -> String {
    let mut all = String::new();
    if let Some(msgs) = body.get("messages").and_then(Value::as_array) {
        for m in msgs {
            match m.get("content") {
                Some(Value::String(s)) => {
                    all.push_str(s);
                    all.push('\n');
                }
                Some(Value::Array(parts)) => {
                    for p in parts {
                        if let Some(t) = p.get("text").and_then(Value::as_str) {
                            all.push_str(t);
                            all.push('\n');
                        }
                    }
                }
                _ => {}
            }
        }
    }
    all
}

/// Split `answer` into `k = min(6, words)` pieces (at least one) that concatenate to it.
fn split_answer(answer: &str) -> Vec<String> {
    let pieces: Vec<&str> = answer.split_inclusive(' ').collect();
    if pieces.is_empty() {
        return vec![String::new()];
    }
    let k = pieces.len().min(6);
    let mut out = Vec::with_capacity(k);
    let per = pieces.len() / k;
    let extra = pieces.len() % k;
    let mut it = pieces.into_iter();
    for i in 0..k {
        let take = per + usize::from(i < extra);
        out.push(it.by_ref().take(take).collect::<String>());
    }
    out
}

enum Ev {
    Bytes(Bytes),
    Abort,
}

struct StreamState {
    rx: tokio::sync::mpsc::Receiver<Ev>,
    finished: bool,
    counted: Arc<AtomicBool>,
    shared: Arc<Shared>,
    _guard: InFlight,
}

impl StreamState {
    fn mark_finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if !self.finished && !self.counted.swap(true, Ordering::SeqCst) {
            self.shared.disconnects.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn chat(
    shared: &Arc<Shared>,
    body: &Value,
    model: &str,
    id: String,
    chat_answer: Option<String>,
    failure: Option<Failure>,
    streaming: bool,
    gap: Duration,
    guard: InFlight,
) -> Response {
    if !body.get("messages").is_some_and(Value::is_array) {
        return error_response(400, "messages must be an array");
    }
    let prompt_text = message_texts(body);
    let answer = chat_answer.unwrap_or_else(|| default_answer(&source_numbers(&prompt_text)));
    let prompt_tokens = prompt_text.split_whitespace().count();
    let completion_tokens = answer.split_whitespace().count();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "cost": 0.00012,
    });
    let created = unix_now();

    if !streaming {
        let mut resp = json_response(
            200,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            }),
        );
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-generation-id", v);
        }
        return resp;
    }

    let js = |v: &str| Value::String(v.to_string()).to_string();
    let head = format!(r#"{{"id":{},"object":"chat.completion.chunk","#, js(&id));
    let chunk = |content: &str, multi_line: bool| -> String {
        let tail = format!(
            r#""created":{created},"model":{},"choices":[{{"index":0,"delta":{{"role":"assistant","content":{}}},"finish_reason":null}}]}}"#,
            js(model),
            js(content)
        );
        if multi_line {
            // One event over two `data:` lines; SSE joins them with "\n" (JSON whitespace).
            format!("data: {head}\ndata: {tail}\n\n")
        } else {
            format!("data: {head}{tail}\n\n")
        }
    };
    const COMMENT: &str = ": OPENROUTER PROCESSING\n\n";

    // The `data:` events, and after which of them the middle comment goes.
    let pieces = split_answer(&answer);
    let multi_at = if pieces.len() >= 2 { 1 } else { 0 };
    let mut data_events: Vec<String> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| chunk(p, i == multi_at))
        .collect();
    let comment_after = multi_at; // the comment follows the multi-line event
    let final_chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "finish_reason": "stop",
        }],
        "usage": usage,
    });
    data_events.push(format!("data: {final_chunk}\n\n"));

    let mut events: Vec<Ev> = vec![Ev::Bytes(Bytes::from_static(COMMENT.as_bytes()))];
    let push_data = |events: &mut Vec<Ev>, n: usize| {
        for (i, e) in data_events.iter().take(n).enumerate() {
            events.push(Ev::Bytes(Bytes::from(e.clone())));
            if i == comment_after {
                events.push(Ev::Bytes(Bytes::from_static(COMMENT.as_bytes())));
            }
        }
    };
    match &failure {
        Some(Failure::MalformedJson) => {
            events.push(Ev::Bytes(Bytes::from(format!(
                "data: {{\"id\":{},\"choices\":[{{\"delta\":{{\"content\":\"The ret\n\n",
                js(&id)
            ))));
        }
        Some(Failure::DropStream { after_events }) => {
            push_data(&mut events, *after_events);
            events.push(Ev::Abort);
        }
        Some(Failure::ErrorMidStream {
            after_events,
            message,
        }) => {
            push_data(&mut events, *after_events);
            events.push(Ev::Bytes(Bytes::from(format!(
                "data: {}\n\n",
                error_body(502, message)
            ))));
        }
        _ => {
            push_data(&mut events, data_events.len());
            events.push(Ev::Bytes(Bytes::from_static(b"data: [DONE]\n\n")));
        }
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Ev>(1);
    let counted = Arc::new(AtomicBool::new(false));
    {
        let shared = shared.clone();
        let counted = counted.clone();
        tokio::spawn(async move {
            for (i, ev) in events.into_iter().enumerate() {
                if i > 0 && !gap.is_zero() {
                    tokio::time::sleep(gap).await;
                }
                if tx.send(ev).await.is_err() {
                    // The body was dropped: hyper gave up on the connection (client gone).
                    if !counted.swap(true, Ordering::SeqCst) {
                        shared.disconnects.fetch_add(1, Ordering::SeqCst);
                    }
                    return;
                }
            }
        });
    }
    let state = StreamState {
        rx,
        finished: false,
        counted,
        shared: shared.clone(),
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.finished {
            return None;
        }
        match st.rx.recv().await {
            Some(Ev::Bytes(b)) => Some((Ok::<Bytes, std::io::Error>(b), st)),
            Some(Ev::Abort) => {
                st.finished = true; // dropped on purpose: not a client disconnect
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "fake provider: stream dropped on purpose",
                    )),
                    st,
                ))
            }
            None => {
                st.mark_finished(); // read by StreamState's Drop
                None
            }
        }
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-generation-id", id.as_str())
        .body(Body::from_stream(stream))
        .unwrap()
}
