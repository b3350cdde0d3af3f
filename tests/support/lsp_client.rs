//! A small, synchronous JSON-RPC / LSP client that drives the real `ragls serve --stdio`
//! binary, for the language-server tests (`tests/integration/lsp.rs`) and benchmark
//! (`benches/lsp.rs`).
//!
//! # Including it
//!
//! Self-contained (needs only `serde_json` and the standard library):
//!
//! ```ignore
//! #[path = "support/lsp_client.rs"]          // from tests/
//! #[path = "../tests/support/lsp_client.rs"] // from benches/
//! mod lsp_client;
//! ```
//!
//! # What it does
//!
//! * [`LspClient::spawn`] starts `<bin> serve --stdio` with HOME, XDG_CACHE_HOME and
//!   XDG_CONFIG_HOME pointing into a folder the caller owns (so a restart on the same folder
//!   finds the same index), OPENROUTER_API_KEY removed unless given, stdin/stdout piped and
//!   stderr written to `<home_root>/stderr-<n>.log`.
//! * A reader thread parses `Content-Length` frames from stdout. Any byte on stdout that is
//!   not part of a well-formed frame is recorded as "stray output"; [`LspClient::shutdown_and_exit`]
//!   (and [`LspClient::assert_clean_stdout`]) fail on it, because stdout must carry only JSON-RPC.
//! * Server -> client requests (`window/workDoneProgress/create`, `client/registerCapability`,
//!   anything else) are answered at once with a `null` result and recorded.
//! * Every incoming message is logged in arrival order with a sequence number, so tests can
//!   check what came before what (e.g. streamed `$/progress` before the final response).
//! * Dropping the client kills the process (SIGKILL) if it is still running.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long [`LspClient::request`] waits for a response by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// LSP / JSON-RPC error codes.
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INVALID_REQUEST: i64 = -32600;
pub const REQUEST_CANCELLED: i64 = -32800;

/// One message received from the server.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// Arrival order, from 0.
    pub seq: usize,
    pub at: Instant,
    pub message: Value,
}

impl Incoming {
    pub fn method(&self) -> Option<&str> {
        self.message.get("method").and_then(Value::as_str)
    }
    pub fn params(&self) -> &Value {
        self.message.get("params").unwrap_or(&Value::Null)
    }
    /// A notification (a method and no id).
    pub fn is_notification(&self) -> bool {
        self.method().is_some() && self.message.get("id").is_none()
    }
    /// A server -> client request (a method and an id).
    pub fn is_server_request(&self) -> bool {
        self.method().is_some() && self.message.get("id").is_some()
    }
    /// A response to one of our requests.
    pub fn is_response(&self) -> bool {
        self.method().is_none() && self.message.get("id").is_some()
    }
}

#[derive(Default)]
struct State {
    log: Vec<Incoming>,
    /// Responses by request id (as a JSON string of the id), with their `seq`.
    responses: HashMap<String, usize>,
    /// Bytes on stdout that were not a frame, as (lossy) text.
    stray: Vec<String>,
    /// The reader reached the end of stdout (or failed).
    closed: bool,
    reader_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where and how to start the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The `ragls` binary.
    pub bin: PathBuf,
    /// HOME is `<home_root>/home`, XDG_CACHE_HOME `<home_root>/cache`, XDG_CONFIG_HOME
    /// `<home_root>/config` (created if missing). Same layout as the CLI tests' sandbox.
    pub home_root: PathBuf,
    /// Extra environment (e.g. `OPENROUTER_API_KEY`).
    pub env: Vec<(String, String)>,
    /// Working directory of the process (default: `home_root`).
    pub cwd: Option<PathBuf>,
}

impl ServerOptions {
    pub fn new(bin: impl Into<PathBuf>, home_root: impl Into<PathBuf>) -> ServerOptions {
        ServerOptions {
            bin: bin.into(),
            home_root: home_root.into(),
            env: Vec::new(),
            cwd: None,
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> ServerOptions {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

static SPAWNED: AtomicUsize = AtomicUsize::new(0);

/// A running `ragls serve --stdio` and the client side of its connection.
pub struct LspClient {
    child: Child,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    shared: Arc<Shared>,
    next_id: AtomicI64,
    stderr_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl LspClient {
    /// Starts the server. Panics if it cannot be started.
    pub fn spawn(opts: &ServerOptions) -> LspClient {
        for d in ["home", "cache", "config"] {
            std::fs::create_dir_all(opts.home_root.join(d)).expect("create the fake home");
        }
        let n = SPAWNED.fetch_add(1, Ordering::SeqCst);
        let stderr_path = opts
            .home_root
            .join(format!("stderr-{}-{n}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).expect("create the stderr log");
        let mut cmd = Command::new(&opts.bin);
        cmd.arg("serve")
            .arg("--stdio")
            .current_dir(opts.cwd.as_deref().unwrap_or(&opts.home_root))
            .env("HOME", opts.home_root.join("home"))
            .env("XDG_CACHE_HOME", opts.home_root.join("cache"))
            .env("XDG_CONFIG_HOME", opts.home_root.join("config"))
            .env_remove("OPENROUTER_API_KEY")
            // A developer's shared index must not leak into the tests.
            .env_remove("RAGLS_STORE_URL")
            .env_remove("RAGLS_STORE_REF")
            .env_remove("RAGLS_FAULT_ABORT_AFTER_BATCHES")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", opts.bin.display()));
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        let stdout = child.stdout.take().expect("piped stdout");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        {
            let shared = shared.clone();
            let stdin = stdin.clone();
            std::thread::Builder::new()
                .name("lsp-client-reader".into())
                .spawn(move || read_loop(stdout, shared, stdin))
                .expect("start the reader thread");
        }
        LspClient {
            child,
            stdin,
            shared,
            next_id: AtomicI64::new(1),
            stderr_path,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    // ---------------------------------------------------------------- sending

    /// Writes one raw JSON-RPC message.
    pub fn send(&self, message: &Value) {
        let body = serde_json::to_vec(message).expect("serialise a message");
        let mut guard = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let stdin = guard
            .as_mut()
            .unwrap_or_else(|| panic!("stdin is closed; cannot send {message}"));
        let header = format!("Content-Length: {}\r\n\r\n", body.len());
        let ok = stdin
            .write_all(header.as_bytes())
            .and_then(|_| stdin.write_all(&body))
            .and_then(|_| stdin.flush());
        if let Err(e) = ok {
            panic!(
                "cannot write to the server ({e}); it may have died.\n--- stderr\n{}",
                self.stderr()
            );
        }
    }

    /// Writes raw bytes (a header block, then a body), for malformed-input tests.
    pub fn send_raw(&self, header: &str, body: &[u8]) {
        let mut guard = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let stdin = guard.as_mut().expect("stdin is closed");
        stdin
            .write_all(header.as_bytes())
            .and_then(|_| stdin.write_all(body))
            .and_then(|_| stdin.flush())
            .expect("write to the server");
    }

    /// Sends a notification (`Value::Null` params are left out).
    pub fn notify(&self, method: &str, params: Value) {
        let mut msg = json!({ "jsonrpc": "2.0", "method": method });
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send(&msg);
    }

    /// Sends a request and returns its id at once (see [`LspClient::wait_response`]).
    pub fn send_request(&self, method: &str, params: Value) -> i64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut msg = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if !params.is_null() {
            msg["params"] = params;
        }
        self.send(&msg);
        id
    }

    /// Sends a request and waits (up to [`REQUEST_TIMEOUT`]) for its response: the whole
    /// response message, with either `result` or `error`.
    pub fn request(&self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        match self.wait_response(id, REQUEST_TIMEOUT) {
            Some(m) => m.message,
            None if self.shared.lock().closed => self.fail(&format!(
                "no response to {method} (id {id}): the server closed its stdout"
            )),
            None => self.fail(&format!(
                "no response to {method} (id {id}) within {REQUEST_TIMEOUT:?}"
            )),
        }
    }

    /// [`LspClient::request`] that must succeed; returns the `result`.
    pub fn request_ok(&self, method: &str, params: Value) -> Value {
        let resp = self.request(method, params.clone());
        if let Some(e) = resp.get("error") {
            self.fail(&format!("{method} {params} failed: {e}"));
        }
        resp.get("result").cloned().unwrap_or(Value::Null)
    }

    /// [`LspClient::request`] that must fail; returns the `error` object.
    pub fn request_err(&self, method: &str, params: Value) -> Value {
        let resp = self.request(method, params.clone());
        match resp.get("error") {
            Some(e) => e.clone(),
            None => self.fail(&format!("{method} {params} should have failed, got {resp}")),
        }
    }

    /// The response to request `id`, waiting up to `timeout`.
    pub fn wait_response(&self, id: i64, timeout: Duration) -> Option<Incoming> {
        let key = json!(id).to_string();
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(&seq) = st.responses.get(&key) {
                return Some(st.log[seq].clone());
            }
            if st.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    // ---------------------------------------------------------------- receiving

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Incoming> {
        self.shared.lock().log.clone()
    }

    /// How many messages were received so far (a mark for [`LspClient::messages_since`]).
    pub fn mark(&self) -> usize {
        self.shared.lock().log.len()
    }

    pub fn messages_since(&self, mark: usize) -> Vec<Incoming> {
        self.shared.lock().log[mark..].to_vec()
    }

    /// The notifications of `method` received so far (whole messages, with `seq`).
    pub fn notifications(&self, method: &str) -> Vec<Incoming> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|m| m.is_notification() && m.method() == Some(method))
            .cloned()
            .collect()
    }

    /// The params of the notifications of `method` received so far.
    pub fn notification_params(&self, method: &str) -> Vec<Value> {
        self.notifications(method)
            .into_iter()
            .map(|m| m.params().clone())
            .collect()
    }

    /// The server -> client requests of `method` received (and answered) so far.
    pub fn server_requests(&self, method: &str) -> Vec<Incoming> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|m| m.is_server_request() && m.method() == Some(method))
            .cloned()
            .collect()
    }

    /// `window/logMessage` and `window/showMessage` texts so far, with their type.
    pub fn log_messages(&self) -> Vec<(i64, String)> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|m| {
                m.is_notification()
                    && matches!(m.method(), Some("window/logMessage" | "window/showMessage"))
            })
            .map(|m| {
                (
                    m.params()["type"].as_i64().unwrap_or(0),
                    m.params()["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Waits until `pred` holds for the log of received messages; true if it did. `pred`
    /// sees a snapshot (the lock is not held), so it may call the client's methods.
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&[Incoming]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let (snapshot, closed) = {
                let st = self.shared.lock();
                (st.log.clone(), st.closed)
            };
            if pred(&snapshot) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || closed {
                return false;
            }
            let st = self.shared.lock();
            if st.log.len() == snapshot.len() && !st.closed {
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(st, (deadline - now).min(Duration::from_millis(100)))
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Waits for a notification of `method` (after message `mark`) whose params satisfy
    /// `pred`; returns it.
    pub fn wait_notification(
        &self,
        method: &str,
        mark: usize,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Incoming> {
        let mut found = None;
        self.wait_for(timeout, |log| {
            found = log
                .iter()
                .skip(mark)
                .find(|m| m.is_notification() && m.method() == Some(method) && pred(m.params()))
                .cloned();
            found.is_some()
        });
        found
    }

    // ---------------------------------------------------------------- lifecycle

    /// `initialize` (with these folders, options and client capabilities) then
    /// `initialized`; returns the initialize result.
    pub fn initialize(
        &self,
        folders: &[&Path],
        initialization_options: Value,
        capabilities: Value,
    ) -> Value {
        let workspace_folders: Vec<Value> = folders
            .iter()
            .map(|f| {
                json!({
                    "uri": file_uri(f),
                    "name": f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                })
            })
            .collect();
        let mut params = json!({
            "processId": std::process::id(),
            "clientInfo": { "name": "ragls-test-client", "version": "0" },
            "rootUri": folders.first().map(|f| Value::String(file_uri(f))).unwrap_or(Value::Null),
            "capabilities": capabilities,
            "workspaceFolders": workspace_folders,
        });
        if !initialization_options.is_null() {
            params["initializationOptions"] = initialization_options;
        }
        let result = self.request_ok("initialize", params);
        self.notify("initialized", json!({}));
        result
    }

    /// `rag/status`'s result.
    pub fn status(&self) -> Value {
        self.request_ok("rag/status", json!({}))
    }

    /// Polls `rag/status` until its state is "ready" or "degraded" with no pending file;
    /// returns that status. Panics after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            let state = s["state"].as_str().unwrap_or("");
            if matches!(state, "ready" | "degraded") && s["pendingFiles"].as_u64() == Some(0) {
                return s;
            }
            if state == "error" {
                self.fail(&format!("the index is in the error state: {s}"));
            }
            if Instant::now() >= deadline {
                self.fail(&format!("not ready after {timeout:?}: {s}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `shutdown`, then `exit`; asserts the process exits with code 0 and that stdout
    /// carried only JSON-RPC frames.
    pub fn shutdown_and_exit(mut self) {
        let resp = self.request("shutdown", Value::Null);
        assert!(
            resp.get("error").is_none(),
            "shutdown failed: {resp}\n--- stderr\n{}",
            self.stderr()
        );
        self.notify("exit", Value::Null);
        let status = self.wait_exit(Duration::from_secs(20)).unwrap_or_else(|| {
            self.fail("the server did not exit within 20 s of `exit`");
        });
        assert_eq!(
            status.code(),
            Some(0),
            "the server should exit with 0 after shutdown + exit, got {status:?}\n--- stderr\n{}",
            self.stderr()
        );
        // Let the reader drain what is left.
        self.wait_for(Duration::from_secs(5), |_| false);
        self.assert_clean_stdout();
    }

    /// Waits for the process to end; its status, `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(s)) => {
                    self.exit = Some(s);
                    return Some(s);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's exit status if it has ended.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// SIGKILL, like `kill -9`; waits for the process to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        if let Ok(s) = self.child.wait() {
            self.exit = Some(s);
        }
        if let Ok(mut g) = self.stdin.lock() {
            g.take();
        }
    }

    /// Peak resident set size of the server in KiB (`VmHWM` of /proc/<pid>/status).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        text.lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Panics if anything but JSON-RPC frames appeared on stdout.
    pub fn assert_clean_stdout(&self) {
        let st = self.shared.lock();
        assert!(
            st.stray.is_empty(),
            "stdout must carry only JSON-RPC frames, but it also had: {:?}",
            st.stray
        );
        assert!(
            st.reader_error.is_none(),
            "stdout must carry only well-formed JSON-RPC: {:?}",
            st.reader_error
        );
    }

    /// Panics with `what`, the server's stderr and the tail of the message log.
    pub fn fail(&self, what: &str) -> ! {
        let log = self.messages();
        let tail: Vec<String> = log
            .iter()
            .rev()
            .take(15)
            .rev()
            .map(|m| {
                let s = m.message.to_string();
                if s.len() > 400 {
                    format!("{}…", &s[..s.floor_char_boundary_compat(400)])
                } else {
                    s
                }
            })
            .collect();
        panic!(
            "{what}\n--- last messages from the server\n{}\n--- stderr\n{}",
            tail.join("\n"),
            self.stderr()
        );
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}
impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        i = i.min(self.len());
        while !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

/// `file://` URI of a path (absolute; not percent-encoded beyond what the fixtures need:
/// spaces and `%`).
pub fn file_uri(path: &Path) -> String {
    let p = path.to_string_lossy();
    let mut out = String::from("file://");
    for c in p.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '%' => out.push_str("%25"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            c => out.push(c),
        }
    }
    out
}

// -------------------------------------------------------------------- the reader

fn read_loop(
    stdout: std::process::ChildStdout,
    shared: Arc<Shared>,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
) {
    let mut r = BufReader::new(stdout);
    loop {
        match read_frame(&mut r) {
            Ok(Some(Frame::Message(v))) => dispatch(v, &shared, &stdin),
            Ok(Some(Frame::Stray(text))) => {
                let mut st = shared.lock();
                st.stray.push(text);
                shared.changed.notify_all();
            }
            Ok(None) => break,
            Err(e) => {
                let mut st = shared.lock();
                st.reader_error = Some(e);
                break;
            }
        }
    }
    // Whatever follows a broken frame is stray output too.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    let mut st = shared.lock();
    if !rest.is_empty() {
        st.stray.push(String::from_utf8_lossy(&rest).into_owned());
    }
    st.closed = true;
    shared.changed.notify_all();
}

enum Frame {
    Message(Value),
    Stray(String),
}

/// Reads one frame: header lines up to a blank line, then `Content-Length` bytes of JSON.
/// `Ok(None)` at a clean end of stream.
fn read_frame(r: &mut impl BufRead) -> Result<Option<Frame>, String> {
    let mut length: Option<usize> = None;
    let mut first = true;
    loop {
        let mut line = Vec::new();
        let n = r
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("read error: {e}"))?;
        if n == 0 {
            return if first {
                Ok(None)
            } else {
                Err("stdout ended inside a frame header".into())
            };
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        if !line.ends_with(b"\r\n") {
            return Ok(Some(Frame::Stray(text)));
        }
        let header = &text[..text.len() - 2];
        if header.is_empty() {
            if first {
                return Ok(Some(Frame::Stray(text)));
            }
            break;
        }
        first = false;
        let Some((name, value)) = header.split_once(':') else {
            return Ok(Some(Frame::Stray(text)));
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length header {header:?}"))?,
            );
        } else if !name.eq_ignore_ascii_case("content-type") {
            return Ok(Some(Frame::Stray(text)));
        }
    }
    let length = length.ok_or("a frame without Content-Length")?;
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)
        .map_err(|e| format!("stdout ended inside a frame body: {e}"))?;
    serde_json::from_slice(&body)
        .map(|v| Some(Frame::Message(v)))
        .map_err(|e| {
            format!(
                "a frame body that is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
}

fn dispatch(v: Value, shared: &Shared, stdin: &Mutex<Option<ChildStdin>>) {
    let has_method = v.get("method").and_then(Value::as_str).is_some();
    let id = v.get("id").cloned();
    if has_method {
        if let Some(id) = &id {
            // A server -> client request: answer `null` at once.
            let reply = json!({ "jsonrpc": "2.0", "id": id, "result": null });
            let body = serde_json::to_vec(&reply).unwrap_or_default();
            if let Ok(mut g) = stdin.lock() {
                if let Some(s) = g.as_mut() {
                    let _ = s
                        .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
                        .and_then(|_| s.write_all(&body))
                        .and_then(|_| s.flush());
                }
            }
        }
    }
    let mut st = shared.lock();
    let seq = st.log.len();
    if !has_method {
        if let Some(id) = &id {
            st.responses.insert(id.to_string(), seq);
        }
    }
    st.log.push(Incoming {
        seq,
        at: Instant::now(),
        message: v,
    });
    shared.changed.notify_all();
}
