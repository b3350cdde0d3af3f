//! `ragls mcp` driven by real MCP clients: the official Python SDK (`tests/mcp/client.py`)
//! and the official TypeScript SDK (`tests/mcp/client.mjs`), plus raw JSON-RPC for what an
//! SDK will not send (malformed lines) and for what must never happen (anything but
//! JSON-RPC on stdout).
//!
//! The clients are installed by `.ci/run` (step "MCP test clients") outside the clone;
//! `RAGLS_MCP_PYTHON` and `RAGLS_MCP_NODE_MODULES` say where (defaults under
//! `$HOME/.cache/ragls-ci/`). A missing client fails the test, naming that step.

use crate::fake_provider::{Endpoint, Failure, FakeProvider};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ragls");

const FIXTURE: &[(&str, &str)] = &[
    (
        "src/net/retry.rs",
        r#"//! Retrying requests.

use std::time::Duration;

/// Calls `op` until it succeeds, sleeping twice as long after each failure.
pub fn retry_with_backoff<T, E>(mut op: impl FnMut() -> Result<T, E>, attempts: u32) -> Result<T, E> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if attempt + 1 >= attempts => return Err(e),
            Err(_) => {
                std::thread::sleep(delay);
                delay *= 2; // exponential backoff
                attempt += 1;
            }
        }
    }
}
"#,
    ),
    (
        "src/cache.rs",
        r#"/// A least-recently-used cache.
pub struct LruCache {
    entries: Vec<(String, String)>,
    capacity: usize,
}

impl LruCache {
    /// Drops the entry used longest ago.
    pub fn evict(&mut self) {
        if !self.entries.is_empty() {
            self.entries.remove(0);
        }
    }

    pub fn insert(&mut self, key: String, value: String) {
        if self.entries.len() >= self.capacity {
            self.evict();
        }
        self.entries.push((key, value));
    }
}
"#,
    ),
    (
        "src/http/request.py",
        r#"class RequestParser:
    """Parses HTTP request lines."""

    def parse_request_line(self, line):
        method, target, version = line.split(" ")
        return {"method": method, "target": target, "version": version}
"#,
    ),
    (
        "README.md",
        "# Fixture\n\nA small project for the MCP tests.\n",
    ),
    (".env", "API_TOKEN=SECRET_VALUE\n"),
];

struct Fixture {
    tmp: tempfile::TempDir,
    ws: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ws = tmp.path().join("workspace");
    for (rel, text) in FIXTURE {
        let p = ws.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
    }
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, "outside secret\n").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, ws.join("escape.txt")).expect("symlink");
    for d in ["home", "cache", "config"] {
        std::fs::create_dir_all(tmp.path().join(d)).expect("mkdir");
    }
    Fixture { tmp, ws, outside }
}

/// The environment of a client run: a private cache and config, offline.
fn sandboxed(cmd: &mut Command, f: &Fixture) {
    cmd.env("XDG_CACHE_HOME", f.tmp.path().join("cache"))
        .env("XDG_CONFIG_HOME", f.tmp.path().join("config"))
        .env_remove("OPENROUTER_API_KEY")
        // A developer's shared index must not leak into the tests.
        .env_remove("RAGLS_STORE_URL")
        .env_remove("RAGLS_STORE_REF");
}

fn ci_cache() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".cache/ragls-ci")
}

fn python() -> PathBuf {
    let p = std::env::var_os("RAGLS_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| ci_cache().join("mcp-venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import mcp"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the MCP Python SDK is not installed at {} (RAGLS_MCP_PYTHON); run scripts/test.sh (it installs it), or: python3 -m venv ~/.cache/ragls-ci/mcp-venv && ~/.cache/ragls-ci/mcp-venv/bin/pip install mcp==2.3.0",
        p.display()
    );
    p
}

fn node_modules() -> PathBuf {
    let p = std::env::var_os("RAGLS_MCP_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| ci_cache().join("mcp-node/node_modules"));
    assert!(
        p.join("@modelcontextprotocol/sdk/package.json").is_file(),
        "the MCP TypeScript SDK is not installed in {} (RAGLS_MCP_NODE_MODULES); run scripts/test.sh (it installs it), or: npm install --prefix ~/.cache/ragls-ci/mcp-node @modelcontextprotocol/sdk@1.32",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mcp")
        .join(name)
}

/// Runs a client script; returns the JSON line it printed last.
fn run_client(mut cmd: Command, f: &Fixture) -> Value {
    sandboxed(&mut cmd, f);
    let out = cmd.output().expect("the client runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "client failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not a JSON summary ({e}): {stdout}"))
}

#[test]
fn the_python_sdk_searches_asks_reads_safely_and_survives_malformed_calls() {
    let f = fixture();
    let mut cmd = Command::new(python());
    cmd.arg(script("client.py"))
        .arg(BIN)
        .arg(&f.ws)
        .arg(&f.outside);
    let seen = run_client(cmd, &f);
    assert_eq!(
        seen["search_top"]
            .as_str()
            .map(|s| s.starts_with("src/net/retry.rs:5-")),
        Some(true),
        "{seen}"
    );
    assert!(
        seen["search_top"]
            .as_str()
            .is_some_and(|s| s.ends_with("retry_with_backoff")),
        "{seen}"
    );
    assert!(
        seen["citations"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c.as_str() == Some("src/net/retry.rs:5-20"))),
        "{seen}"
    );
    assert_eq!(seen["malformed"], 200);
    assert!(seen["progress"].as_u64().is_some_and(|n| n >= 1), "{seen}");
    let refused = &seen["refused"];
    assert!(
        refused["parent"]
            .as_str()
            .is_some_and(|m| m.contains("'..'")),
        "{refused}"
    );
    assert!(
        refused["absolute"]
            .as_str()
            .is_some_and(|m| m.contains("outside the workspace")),
        "{refused}"
    );
    assert!(
        refused["symlink"]
            .as_str()
            .is_some_and(|m| m.contains("symlink that leads outside")),
        "{refused}"
    );
    assert!(
        refused["secret"]
            .as_str()
            .is_some_and(|m| m.contains("secrets file")),
        "{refused}"
    );
    // `.env` is not counted: it was never indexed.
    assert_eq!(seen["files"], 4, "{seen}");
}

#[test]
fn the_typescript_sdk_lists_the_tools_and_searches() {
    let f = fixture();
    let modules = node_modules();
    let mut cmd = Command::new("node");
    cmd.arg(script("client.mjs"))
        .arg(BIN)
        .arg(&f.ws)
        .env("RAGLS_MCP_NODE_MODULES", modules);
    let seen = run_client(cmd, &f);
    assert_eq!(seen["tools"].as_array().map(Vec::len), Some(6), "{seen}");
    assert!(
        seen["top"].as_str().is_some_and(
            |t| t.starts_with("src/net/retry.rs:5-") && t.ends_with("retry_with_backoff")
        ),
        "{seen}"
    );
}

/// Sends raw lines and reads replies until one carries `id`; every stdout line must be
/// JSON-RPC.
fn reply(
    stdin: &mut impl Write,
    stdout: &mut impl BufRead,
    line: &str,
    id: Option<i64>,
) -> Option<Value> {
    stdin.write_all(line.as_bytes()).expect("write");
    stdin.write_all(b"\n").expect("write");
    stdin.flush().expect("flush");
    let id = id?;
    loop {
        let mut buf = String::new();
        if stdout.read_line(&mut buf).expect("read") == 0 {
            panic!("the server closed stdout waiting for reply {id}");
        }
        let v: Value = serde_json::from_str(&buf)
            .unwrap_or_else(|e| panic!("stdout carried something else than JSON-RPC ({e}): {buf}"));
        assert_eq!(v["jsonrpc"], "2.0", "{buf}");
        if v["id"] == id {
            return Some(v);
        }
    }
}

#[test]
fn garbage_on_stdin_never_kills_the_server_and_stdout_is_only_json_rpc() {
    let f = fixture();
    let mut cmd = Command::new(BIN);
    cmd.args(["mcp", "--workspace"])
        .arg(&f.ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    sandboxed(&mut cmd, &f);
    let mut child = cmd.spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let r = reply(&mut stdin, &mut stdout, init, Some(1)).expect("initialize");
    assert_eq!(r["result"]["serverInfo"]["name"], "ragls", "{r}");
    reply(
        &mut stdin,
        &mut stdout,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        None,
    );
    for garbage in [
        "this is not json",
        "{\"jsonrpc\":\"2.0\",",
        "[]",
        "{}",
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":\"oops\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"no/such/method\",\"params\":{}}",
        "\u{0}\u{1}binary",
    ] {
        reply(&mut stdin, &mut stdout, garbage, None);
    }
    let call = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"read_code","arguments":{"path":"src/cache.rs","start_line":1,"end_line":2}}}"#;
    let r = reply(&mut stdin, &mut stdout, call, Some(42)).expect("tools/call");
    let text = r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        text, "src/cache.rs:1-2\n1\t/// A least-recently-used cache.\n2\tpub struct LruCache {\n",
        "{r}"
    );
    drop(stdin);
    let status = child.wait().expect("the server exits when stdin closes");
    assert!(status.success(), "{status}");
}

/// A raw MCP session on the fixture: initialize, then `tools/call`s by hand.
struct RawSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    next: i64,
}

impl RawSession {
    fn start(f: &Fixture) -> RawSession {
        RawSession::start_with(f, &[])
    }

    fn start_with(f: &Fixture, env: &[(&str, &str)]) -> RawSession {
        RawSession::start_with_args(f, env, &[])
    }

    fn start_with_args(f: &Fixture, env: &[(&str, &str)], args: &[&str]) -> RawSession {
        let mut cmd = Command::new(BIN);
        cmd.args(["mcp", "--workspace"])
            .arg(&f.ws)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        sandboxed(&mut cmd, f);
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().expect("spawn");
        let mut s = RawSession {
            stdin: child.stdin.take().expect("stdin"),
            stdout: BufReader::new(child.stdout.take().expect("stdout")),
            child,
            next: 0,
        };
        s.request(
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}),
        );
        reply(
            &mut s.stdin,
            &mut s.stdout,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            None,
        );
        s
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let line = serde_json::json!({"jsonrpc": "2.0", "id": self.next, "method": method, "params": params});
        reply(
            &mut self.stdin,
            &mut self.stdout,
            &line.to_string(),
            Some(self.next),
        )
        .expect("a reply")
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request(
            "tools/call",
            serde_json::json!({"name": tool, "arguments": args}),
        )["result"]
            .clone()
    }
}

impl Drop for RawSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn search_code_with_explain_says_why_each_result_ranked_there() {
    let f = fixture();
    let mut index = Command::new(BIN);
    index.args(["index", "--workspace"]).arg(&f.ws);
    sandboxed(&mut index, &f);
    assert!(index.status().expect("ragls index").success());

    let mut s = RawSession::start(&f);
    let tools = s.request("tools/list", serde_json::json!({}));
    let search = tools["result"]["tools"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "search_code"))
        .cloned()
        .expect("search_code listed");
    assert_eq!(
        search["inputSchema"]["properties"]["explain"]["type"], "boolean",
        "{search}"
    );

    let q = "evict the least recently used entry";
    let plain = s.call("search_code", serde_json::json!({"query": q}));
    assert_eq!(plain["isError"], false, "{plain}");
    assert!(
        plain["structuredContent"]["results"][0]
            .get("explain")
            .is_none(),
        "no explain unless asked: {plain}"
    );
    assert!(!plain["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("why:"));

    let r = s.call(
        "search_code",
        serde_json::json!({"query": q, "explain": true}),
    );
    assert_eq!(r["isError"], false, "{r}");
    let results = r["structuredContent"]["results"]
        .as_array()
        .expect("results")
        .clone();
    assert_eq!(results[0]["path"], "src/cache.rs", "{r}");
    for hit in &results {
        let e = &hit["explain"];
        assert!(e["fused"]["rank"].as_u64() >= Some(1), "{hit}");
        assert!(
            e.get("lexical").is_some() || e.get("vector").is_some(),
            "{hit}"
        );
        // The offline reranker ordered them; its score is the result's (rounded alike).
        assert_eq!(e["offline"]["score"], hit["score"], "{hit}");
    }
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    let why = text.lines().nth(1).unwrap_or_default();
    assert!(
        why.starts_with("    why: ") && why.contains("fused ") && why.contains("offline "),
        "{text}"
    );

    let bad = s.call(
        "search_code",
        serde_json::json!({"query": q, "explain": "yes"}),
    );
    assert_eq!(bad["isError"], true, "{bad}");
    assert_eq!(
        bad["content"][0]["text"], "explain must be true or false, not the string \"yes\"",
        "{bad}"
    );
}

#[test]
fn while_another_process_holds_the_index_the_server_reads_it_and_says_so() {
    let f = fixture();
    // `ragls index` builds the index; then "another process" (this test) holds its lock.
    let mut index = Command::new(BIN);
    index.args(["index", "--workspace"]).arg(&f.ws);
    sandboxed(&mut index, &f);
    assert!(index.status().expect("ragls index").success());
    let mut status = Command::new(BIN);
    status.args(["status", "--json", "--workspace"]).arg(&f.ws);
    sandboxed(&mut status, &f);
    let out = status.output().expect("ragls status");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let index_dir = PathBuf::from(status["indexDir"].as_str().expect("indexDir"));
    let lock = std::fs::File::options()
        .write(true)
        .open(index_dir.join("lock"))
        .expect("the lock file");
    lock.lock().expect("take the writer lock");

    let mut s = RawSession::start(&f);
    let r = s.call(
        "search_code",
        serde_json::json!({"query": "evict the least recently used entry"}),
    );
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(
        r["structuredContent"]["results"][0]["path"], "src/cache.rs",
        "{r}"
    );
    let r = s.call("reindex", serde_json::json!({}));
    assert_eq!(r["isError"], true, "{r}");
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("another ragls process (an editor or `ragls index`) holds the index"),
        "{text}"
    );
    let r = s.call("index_status", serde_json::json!({}));
    assert!(
        r["structuredContent"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("this server answers from it")),
        "{r}"
    );
    assert_eq!(r["structuredContent"]["files"], 4, "{r}");
    drop(lock);
}

#[test]
fn ask_with_a_chat_model_cites_real_lines_and_a_failed_generation_falls_back_with_a_note() {
    let f = fixture();
    let fake = FakeProvider::start();
    std::fs::write(
        f.ws.join(".ragls.toml"),
        format!(
            "[provider]\nbase_url = \"{}\"\napi_key_env = \"RAGLS_MCP_TEST_KEY\"\nmax_retries = 0\n\n[embedding]\nprovider = \"builtin\"\n\n[rerank]\nenabled = false\n",
            fake.base_url()
        ),
    )
    .expect("settings");
    let mut s = RawSession::start_with(&f, &[("RAGLS_MCP_TEST_KEY", "sk-test")]);
    s.call("reindex", serde_json::json!({}));

    let r = s.call("ask", serde_json::json!({"question": "How are failed requests retried with exponential backoff?"}));
    assert_eq!(r["isError"], false, "{r}");
    let answer = &r["structuredContent"];
    assert_eq!(answer["mode"], "generated", "{r}");
    let citations = answer["citations"].as_array().expect("citations");
    assert!(!citations.is_empty(), "{r}");
    for c in citations {
        let path = c["path"].as_str().expect("path");
        let text = std::fs::read_to_string(f.ws.join(path)).expect("a real file");
        let lines = text.lines().count() as u64;
        let (start, end) = (
            c["start_line"].as_u64().unwrap_or(0),
            c["end_line"].as_u64().unwrap_or(0),
        );
        assert!(1 <= start && start <= end && end <= lines + 1, "{c}");
    }
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("[1]"), "{text}");
    assert!(text.contains("\n\nSources:\n[1] "), "{text}");
    assert_eq!(fake.requests_to(Endpoint::Chat).len(), 1);

    fake.fail_next(
        Endpoint::Chat,
        Failure::Status {
            code: 500,
            retry_after: None,
        },
        1,
    );
    let r = s.call(
        "ask",
        serde_json::json!({"question": "How are failed requests retried?"}),
    );
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["mode"], "extractive", "{r}");
    let text = r["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("\nnote: generation failed"), "{text}");
    assert!(text.contains("src/net/retry.rs:5"), "{text}");
}

#[test]
fn settings_given_with_set_apply_to_the_mcp_server() {
    let f = fixture();
    let mut index = Command::new(BIN);
    index.args(["index", "--workspace"]).arg(&f.ws);
    sandboxed(&mut index, &f);
    assert!(index.status().expect("ragls index").success());
    let q = "evict the least recently used entry";
    let snippet_of = |s: &mut RawSession| {
        let r = s.call("search_code", serde_json::json!({"query": q}));
        assert_eq!(r["isError"], false, "{r}");
        r["structuredContent"]["results"][0]["snippet"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let default = snippet_of(&mut RawSession::start(&f));
    let one = snippet_of(&mut RawSession::start_with_args(
        &f,
        &[],
        &["--set", "mcp.snippet_lines=1"],
    ));
    assert!(
        default.lines().count() > 1,
        "default snippets are several lines: {default:?}"
    );
    assert_eq!(
        one.lines().count(),
        1,
        "--set mcp.snippet_lines=1 applies: {one:?}"
    );
}
