//! The fault suite of the language server: a hostile client's frames must neither kill nor
//! deafen `ragls serve --stdio`.
//!
//! 1,000 generated malformed frames (seeded, so every run sends the same bytes): random
//! bytes, bad headers, lengths too short, too long and huge, bodies that are not JSON-RPC
//! requests, wrong parameter types, `$/` requests, responses nobody asked for, some of
//! them before `initialize`. They go in batches; after each batch a valid `rag/search` must
//! be answered within a bounded time, and the process must still run. The counts are
//! printed (`cargo test --test integration faults:: -- --nocapture`). The specific cases of the fault
//! probe (shutdown with params, `$/` requests, a 100 MB announcement) have tests of their
//! own.

use crate::common;
use crate::lsp_client;

use common::{Sandbox, BIN};
use lsp_client::{LspClient, ServerOptions, METHOD_NOT_FOUND};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How long indexing the small fixture may take (a bound against hangs, not a figure).
const READY: Duration = Duration::from_secs(120);
/// How long a probe may take before the server counts as hung.
const PROBE: Duration = Duration::from_secs(60);
const FRAMES: usize = 1000;
const BEFORE_INITIALIZE: usize = 100;
const BATCH: usize = 50;

/// xorshift64*: a small deterministic generator (no dependency, same bytes every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Between `min` and `max` random bytes.
    fn bytes(&mut self, min: usize, max: usize) -> Vec<u8> {
        let n = min + self.below(max - min + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A request the server handles (so wrong params reach real handlers).
fn valid_request(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "rag/search", "params": {"query": "evict entry"}})
}

/// Methods whose handlers get wrong params; none of them changes what the index holds.
const METHODS: [&str; 13] = [
    "rag/search",
    "rag/ask",
    "rag/status",
    "textDocument/hover",
    "textDocument/codeAction",
    "workspace/symbol",
    "workspace/executeCommand",
    "textDocument/didClose",
    "textDocument/didSave",
    "$/cancelRequest",
    "$/setTrace",
    "initialize",
    "no/such/method",
];

fn wrong_params(rng: &mut Rng) -> Value {
    let cases = [
        json!(5),
        json!("x"),
        json!(true),
        json!([1, 2]),
        json!({"query": 5}),
        json!({"query": ["a"]}),
        json!({"query": "", "topK": -1}),
        json!({"query": "evict", "topK": 1e12}),
        json!({"query": "evict", "topK": 4_294_967_296u64}),
        json!({"query": "x".repeat(5000)}),
        json!({"textDocument": 3, "position": "a"}),
        json!({"textDocument": {"uri": "not a uri"}, "position": {"line": -1, "character": 1e9}}),
        json!({"textDocument": {"uri": "file:///etc/passwd"}, "position": {"line": 4294967295u64, "character": 0}}),
        json!({"textDocument": {"uri": "file:///nowhere/x.rs"}, "range": {"start": 1, "end": null}, "context": {}}),
        json!({"command": 5}),
        json!({"command": "ragls.unknown", "arguments": 7}),
        json!({"command": "ragls.ask", "arguments": [null, 3, {"q": []}]}),
        json!({"id": {"nested": [1]}}),
        json!({"value": "verbose"}),
        json!({"capabilities": 3}),
        Value::Null,
    ];
    rng.pick(&cases).clone()
}

fn random_json(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next() as i64),
        3 => json!(rng.next() as f64 / 7.0),
        4 => json!(String::from_utf8_lossy(&rng.bytes(0, 11)).into_owned()),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = ["jsonrpc", "id", "method", "params", "result", "error", "x"];
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(5) {
                map.insert(rng.pick(&keys).to_string(), random_json(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// One malformed frame of a kind chosen by the generator; returns (kind, bytes).
fn malformed(rng: &mut Rng, n: usize) -> (&'static str, Vec<u8>) {
    let fuzz_id = json!(format!("fuzz-{n}"));
    match rng.below(11) {
        0 => ("random bytes", rng.bytes(1, 300)),
        1 => {
            let body = valid_request(fuzz_id).to_string();
            let headers = [
                format!("Content-Type: application/vscode-jsonrpc\r\n\r\n{body}"),
                format!("Content-Length: abc\r\n\r\n{body}"),
                format!("Content-Length: 1\u{0}2\r\n\r\n{body}"),
                format!("Content-Length: -5\r\n\r\n{body}"),
                format!("Content-Length: {}\r\n{body}", body.len()),
                format!("Content-Length {}\r\n\r\n{body}", body.len()),
                format!("\u{0}Content-Length: {}\r\n\r\n{body}", body.len()),
                format!("Content-Length: 99999999999999999999999\r\n\r\n{body}"),
            ];
            let mut bytes = rng.pick(&headers).clone().into_bytes();
            if rng.below(3) == 0 {
                bytes.insert(rng.below(8), 0xff);
            }
            ("bad header", bytes)
        }
        2 => {
            let body = valid_request(fuzz_id).to_string();
            let short = 1 + rng.below(body.len() - 1);
            let mut bytes = format!("Content-Length: {short}\r\n\r\n").into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            ("length too short", bytes)
        }
        3 => {
            let body = valid_request(fuzz_id).to_string();
            let long = body.len() + 1 + rng.below(5000);
            let mut bytes = format!("Content-Length: {long}\r\n\r\n").into_bytes();
            bytes.extend_from_slice(body.as_bytes());
            ("length too long", bytes)
        }
        4 => {
            let huge = [100_000_000u64, 1 << 40, u64::MAX];
            (
                "huge length",
                format!("Content-Length: {}\r\n\r\n", rng.pick(&huge)).into_bytes(),
            )
        }
        5 => {
            let bodies = [
                "{}".to_string(),
                "null".into(),
                "[]".into(),
                "123".into(),
                "\"s\"".into(),
                "true".into(),
                format!("[{}]", valid_request(fuzz_id.clone())),
                r#"{"jsonrpc":"1.0","id":900001,"method":"rag/status"}"#.into(),
                r#"{"id":900002,"method":"rag/status"}"#.into(),
                r#"{"jsonrpc":"2.0","id":{"a":1},"method":"rag/status"}"#.into(),
                r#"{"jsonrpc":"2.0","id":[3],"method":"rag/status"}"#.into(),
                r#"{"jsonrpc":"2.0","id":900001.5,"method":"rag/status"}"#.into(),
                r#"{"jsonrpc":"2.0","id":900004,"method":42}"#.into(),
                r#"{"jsonrpc":"2.0","id":900005,"method":null}"#.into(),
                r#"{"jsonrpc":"2.0","method":"shutdown"}"#.into(),
                r#"{"jsonrpc":"2.0","id":"fz","method":"exit"}"#.into(),
                r#"{"jsonrpc":"2.0","id":"fz","method":"shutdown","params":[1]}"#.into(),
                r#"{"jsonrpc":"2.0","id":"fz","method":"rag/status","method":"x"}"#.into(),
                r#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"rag/status"}"#.into(),
                format!("{}{}", "[".repeat(300), "]".repeat(300)),
                r#"{"jsonrpc":"2.0","id":900006}"#.into(),
            ];
            (
                "not a JSON-RPC request",
                framed(rng.pick(&bodies).as_bytes()),
            )
        }
        6 => {
            let mut msg = json!({"jsonrpc": "2.0", "method": rng.pick(&METHODS)});
            let request = rng.below(4) != 0;
            if request {
                msg["id"] = fuzz_id;
            }
            let params = wrong_params(rng);
            if !params.is_null() {
                msg["params"] = params;
            }
            let kind = if request {
                "wrong params (request)"
            } else {
                "wrong params (notification)"
            };
            (kind, framed(msg.to_string().as_bytes()))
        }
        7 => {
            let method = rng.pick(&["$/cancelRequest", "$/progress", "$/x", "$/setTrace"]);
            let msg = json!({"jsonrpc": "2.0", "id": fuzz_id, "method": method, "params": {}});
            ("$/ request", framed(msg.to_string().as_bytes()))
        }
        8 => (
            "random JSON",
            framed(random_json(rng, 0).to_string().as_bytes()),
        ),
        9 => {
            let mut body = valid_request(fuzz_id).to_string().into_bytes();
            let cut = rng.below(body.len());
            body.truncate(cut);
            if rng.below(2) == 0 {
                body.extend(rng.bytes(1, 20));
            }
            ("not JSON", framed(&body))
        }
        _ => {
            let responses = [
                json!({"jsonrpc": "2.0", "id": 987654, "result": null}),
                json!({"jsonrpc": "2.0", "result": {"a": 1}}),
                json!({"jsonrpc": "2.0", "id": "zz", "error": {"code": "x"}}),
                json!({"jsonrpc": "2.0", "id": 900003, "error": {"code": -1, "message": "no"}}),
            ];
            (
                "response",
                framed(rng.pick(&responses).to_string().as_bytes()),
            )
        }
    }
}

fn ws(sb: &Sandbox) -> PathBuf {
    sb.ws.canonicalize().expect("canonical workspace")
}

/// A `rag/search` that must be answered (with results) within [`PROBE`].
fn probe(c: &mut LspClient, what: &str) {
    let id = c.send_request(
        "rag/search",
        json!({"query": "evict the least recently used entry", "topK": 3}),
    );
    let Some(reply) = c.wait_response(id, PROBE) else {
        let exited = c.try_exit();
        c.fail(&format!(
            "{what}: no answer to rag/search within {PROBE:?} (exited: {exited:?})"
        ));
    };
    let results = reply.message["result"]["results"].as_array();
    assert!(
        results.is_some_and(|r| !r.is_empty()),
        "{what}: rag/search answered {}",
        reply.message
    );
    assert!(c.try_exit().is_none(), "{what}: the server exited");
}

#[test]
fn a_thousand_malformed_frames_neither_kill_nor_deafen_the_server() {
    let sb = Sandbox::with_project();
    let mut c = LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()));
    let mut rng = Rng(0x5eed_0f_fa17);
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    // Frames whose request must still be answered, by id: `$/` requests (MethodNotFound),
    // requests with wrong params, and a valid request whose length ran into the next frame.
    let mut expected: Vec<String> = Vec::new();
    let mut send = |c: &LspClient, rng: &mut Rng, n: usize| {
        let (kind, bytes) = malformed(rng, n);
        *kinds.entry(kind).or_default() += 1;
        if matches!(
            kind,
            "$/ request" | "wrong params (request)" | "length too long"
        ) {
            expected.push(format!("fuzz-{n}"));
        }
        c.send_raw("", &bytes);
    };

    // Before `initialize`: the server must still initialise afterwards.
    for n in 0..BEFORE_INITIALIZE {
        send(&c, &mut rng, n);
    }
    c.initialize(&[&ws(&sb)], Value::Null, json!({}));
    c.wait_ready(READY);
    probe(&mut c, "after the frames sent before initialize");

    let mut batches = 1;
    for start in (BEFORE_INITIALIZE..FRAMES).step_by(BATCH) {
        for n in start..(start + BATCH).min(FRAMES) {
            send(&c, &mut rng, n);
        }
        probe(
            &mut c,
            &format!("after batch {batches} (frames up to {})", start + BATCH),
        );
        batches += 1;
    }

    let answered = |log: &[lsp_client::Incoming], id: &str| {
        log.iter()
            .filter(|m| m.is_response() && m.message["id"] == id)
            .count()
    };
    assert!(
        c.wait_for(PROBE, |log| expected.iter().all(|id| answered(log, id) > 0)),
        "unanswered requests: {:?}",
        expected
            .iter()
            .filter(|id| answered(&c.messages(), id) == 0)
            .collect::<Vec<_>>()
    );
    let log = c.messages();
    for id in &expected {
        assert_eq!(answered(&log, id), 1, "{id} answered once");
    }
    let mut codes: BTreeMap<i64, usize> = BTreeMap::new();
    for m in c.messages() {
        if let Some(code) = m.message["error"]["code"].as_i64() {
            *codes.entry(code).or_default() += 1;
        }
    }
    let stderr = c.stderr();
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    println!(
        "fault suite: {} malformed frames in {batches} batches ({BEFORE_INITIALIZE} before initialize); \
         {batches} of {batches} probes answered; {} of {} requests inside them answered; 0 exits; 0 hangs; \
         kinds {kinds:?}; error replies by code {codes:?}",
        kinds.values().sum::<usize>(),
        expected.len(),
        expected.len()
    );
    assert_eq!(kinds.values().sum::<usize>(), FRAMES);
    c.shutdown_and_exit();
}

#[test]
fn shutdown_with_bad_params_changes_nothing_and_with_empty_params_shuts_down() {
    let sb = Sandbox::with_project();
    let mut c = LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()));
    c.initialize(&[&ws(&sb)], Value::Null, json!({}));
    c.wait_ready(READY);
    let err = c.request_err("shutdown", json!({"force": true}));
    assert_eq!(err["code"], -32602, "{err}");
    probe(&mut c, "after a refused shutdown");
    let status = c.status();
    assert!(status["state"].is_string(), "{status}");
    // `{}` means no params: a real shutdown (indexers flushed), then exit 0.
    let reply = c.request("shutdown", json!({}));
    assert!(reply.get("error").is_none(), "{reply}");
    c.notify("exit", Value::Null);
    let exit = c.wait_exit(Duration::from_secs(30));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{exit:?}");
}

#[test]
fn dollar_requests_get_method_not_found_and_a_huge_announcement_is_refused_at_once() {
    let sb = Sandbox::with_project();
    let mut c = LspClient::spawn(&ServerOptions::new(BIN, sb.tmp.path()));
    c.initialize(&[&ws(&sb)], Value::Null, json!({}));
    c.wait_ready(READY);
    for method in ["$/x", "$/cancelRequest"] {
        let err = c.request_err(method, json!({"id": 1}));
        assert_eq!(err["code"], METHOD_NOT_FOUND, "{method}: {err}");
    }
    // 100 MB announced, no body: refused without waiting for it; the next frame is served.
    let mark = c.mark();
    c.send_raw("Content-Length: 100000000\r\n\r\n", b"");
    assert!(
        c.wait_for(PROBE, |log| log[mark..]
            .iter()
            .any(|m| m.is_response() && m.message["error"]["code"] == -32600)),
        "a 100 MB announcement is refused at once"
    );
    probe(&mut c, "after a 100 MB announcement");
    // A length that runs into the next frame: the request it announced is still answered.
    let body = json!({"jsonrpc":"2.0","id":"long","method":"rag/status","params":{}}).to_string();
    c.send_raw(
        &format!("Content-Length: {}\r\n\r\n", body.len() + 40),
        body.as_bytes(),
    );
    probe(&mut c, "after a length too long");
    assert!(
        c.messages()
            .iter()
            .any(|m| m.message["id"] == "long" && m.message["result"]["state"].is_string()),
        "the frame whose length was too long is answered"
    );
    c.shutdown_and_exit();
}
