//! The one sandbox helper of the integration tests: a sandbox per test (workspace, index
//! folder, HOME, XDG folders, all inside one temporary folder), a runner for the real `ragls`
//! binary, and the fixture projects the specifications search in.
//!
//! * [`Sandbox`]: offline (CLI, crash and language-server tests). OPENROUTER_API_KEY is
//!   removed so these runs never reach a network.
//! * [`ProviderSandbox`]: the same sandbox wired to a remote provider (the fake of
//!   `tests/support/fake_provider.rs`): it writes `.ragls.toml`, gives every run [`KEY`], and
//!   keeps every output for [`ProviderSandbox::assert_key_never_leaked`].
//!   `tests/support/provider_fixture.rs` builds it from a `FakeProvider` and exports it under
//!   its old name `Sandbox`.
//!
//! Nothing here touches the user's real cache or configuration: every command gets
//! `--index-dir <sandbox>/index`, and HOME / XDG_CACHE_HOME / XDG_CONFIG_HOME point into the
//! sandbox.

#![allow(dead_code)]

use serde_json::Value;
use std::cell::RefCell;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_ragls");

/// One test's private world: a workspace folder and an index folder, plus a fake home.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub ws: PathBuf,
    pub index: PathBuf,
}

impl Sandbox {
    /// An empty workspace.
    pub fn empty() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ws = tmp.path().join("workspace");
        let index = tmp.path().join("index");
        std::fs::create_dir_all(&ws).unwrap();
        for d in ["home", "cache", "config"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        Sandbox { tmp, ws, index }
    }

    /// A workspace holding the fixture project of [`FIXTURE`].
    pub fn with_project() -> Sandbox {
        let sb = Sandbox::empty();
        for (path, text) in FIXTURE {
            sb.write(path, text);
        }
        sb
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.ws.join(rel)
    }

    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    /// Sets a file's mtime to a fixed time far from "now", so a change is seen whatever the
    /// file system's timestamp resolution (no sleeping).
    pub fn set_mtime(&self, rel: &str, secs_since_epoch: u64) {
        let f = std::fs::File::options()
            .write(true)
            .open(self.path(rel))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs_since_epoch))
            .unwrap();
    }

    /// A `ragls` command with this sandbox's environment (no index flags added).
    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.tmp.path())
            .env("HOME", self.tmp.path().join("home"))
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env_remove("OPENROUTER_API_KEY")
            // A developer's shared index must not leak into the tests.
            .env_remove("RAGLS_STORE_URL")
            .env_remove("RAGLS_STORE_REF")
            .env_remove("RAGLS_FAULT_ABORT_AFTER_BATCHES")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        c
    }

    /// `ragls <sub> --workspace <ws> --index-dir <index> <args...>`.
    pub fn ragls_cmd(&self, sub: &str, args: &[&str]) -> Command {
        self.ragls_cmd_in(sub, &self.index, args)
    }

    pub fn ragls_cmd_in(&self, sub: &str, index: &Path, args: &[&str]) -> Command {
        let mut c = self.command();
        c.arg(sub)
            .arg("--workspace")
            .arg(&self.ws)
            .arg("--index-dir")
            .arg(index)
            .args(args);
        c
    }

    pub fn ragls(&self, sub: &str, args: &[&str]) -> Output {
        self.ragls_cmd(sub, args).output().expect("run ragls")
    }

    pub fn ragls_in(&self, sub: &str, index: &Path, args: &[&str]) -> Output {
        self.ragls_cmd_in(sub, index, args)
            .output()
            .expect("run ragls")
    }

    /// `ragls index --json`, which must succeed; returns the report.
    pub fn index(&self) -> Value {
        self.index_in(&self.index)
    }

    pub fn index_in(&self, index: &Path) -> Value {
        let out = self.ragls_in("index", index, &["--json"]);
        json_of(&ok(out, "ragls index --json"))
    }

    /// `ragls search --json QUERY`, which must succeed; returns the results array.
    pub fn search(&self, query: &str) -> Vec<Value> {
        self.search_in(&self.index, query)
    }

    pub fn search_in(&self, index: &Path, query: &str) -> Vec<Value> {
        let out = self.ragls_in("search", index, &["--json", query]);
        let v = json_of(&ok(out, &format!("ragls search --json {query:?}")));
        v["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results array in {v}"))
            .clone()
    }

    /// `ragls status --json`, which must succeed.
    pub fn status(&self) -> Value {
        self.status_in(&self.index)
    }

    pub fn status_in(&self, index: &Path) -> Value {
        json_of(&ok(
            self.ragls_in("status", index, &["--json"]),
            "ragls status --json",
        ))
    }
}

/// Asserts that a run succeeded and returns its stdout.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

pub fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}):\n{stdout}"))
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// The 1-based number of the only line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> u64 {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{needle:?} must occur on exactly one line, found on {hits:?}"
    );
    hits[0] as u64
}

/// The 1-based line span of an item: from the line containing `first` to the first line
/// after it that is exactly `last` (trailing spaces ignored), e.g. `"    }"`.
pub fn span_of(text: &str, first: &str, last: &str) -> (u64, u64) {
    let start = line_of(text, first);
    let end = text
        .lines()
        .enumerate()
        .skip(start as usize - 1)
        .find(|(_, l)| l.trim_end() == last)
        .map(|(i, _)| i as u64 + 1)
        .unwrap_or_else(|| panic!("no line {last:?} after {first:?}"));
    (start, end)
}

/// A search result's short form, for failure messages.
pub fn brief(results: &[Value]) -> String {
    results
        .iter()
        .map(|r| {
            format!(
                "  {}:{}-{} {} ({}) {}",
                r["path"], r["start_line"], r["end_line"], r["symbol"], r["kind"], r["score"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where a function is expected: its path, 1-based inclusive lines, symbol path and kind.
#[derive(Clone, Debug)]
pub struct Expect {
    pub path: &'static str,
    pub start_line: u64,
    pub end_line: u64,
    pub symbol: &'static str,
    pub kind: &'static str,
}

impl Expect {
    pub fn matches(&self, r: &Value) -> bool {
        r["path"] == self.path
            && r["start_line"] == self.start_line
            && r["end_line"] == self.end_line
            && r["symbol"] == self.symbol
            && r["kind"] == self.kind
    }
}

/// Asserts that `expect` is among the first `n` results; returns its rank (0-based).
pub fn assert_in_top(results: &[Value], n: usize, expect: &Expect, query: &str) -> usize {
    match results.iter().take(n).position(|r| expect.matches(r)) {
        Some(rank) => rank,
        None => panic!(
            "{query:?}: expected {expect:?} in the top {n}, got:\n{}",
            brief(results)
        ),
    }
}

pub fn paths_of(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| r["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// The sandbox wired to a remote provider, and helpers of the provider tests.
// ---------------------------------------------------------------------------------------

/// The API key every CLI run gets in `OPENROUTER_API_KEY`.
pub const KEY: &str = "sk-test-key-123";
/// The default models (PROTOCOL.md "Settings").
pub const EMBEDDING_MODEL: &str = "openai/text-embedding-3-small";
pub const RERANK_MODEL: &str = "cohere/rerank-v3.5";
pub const CHAT_MODEL: &str = "openai/gpt-4o-mini";

/// The settings a sandbox writes to `<workspace>/.ragls.toml`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub max_retries: u32,
    pub timeout_s: u64,
    /// More TOML, appended verbatim (other tables than `[provider]`).
    pub rest: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retries: 2,
            timeout_s: 20,
            rest: String::new(),
        }
    }
}

impl Settings {
    pub fn retries(max_retries: u32) -> Settings {
        Settings {
            max_retries,
            ..Settings::default()
        }
    }

    pub fn with(mut self, toml: &str) -> Settings {
        self.rest.push('\n');
        self.rest.push_str(toml);
        self.rest.push('\n');
        self
    }

    pub fn toml(&self, base_url: &str) -> String {
        format!(
            "[provider]\nbase_url = \"{base_url}\"\nmax_retries = {}\ntimeout_s = {}\n{}",
            self.max_retries, self.timeout_s, self.rest
        )
    }
}

/// What one `ragls` run printed.
#[derive(Clone, Debug)]
pub struct Run {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success; returns self for chaining.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not one JSON value ({e}):\n{}\n--- stderr\n{}",
                self.what, self.stdout, self.stderr
            )
        })
    }
}

/// A [`Sandbox`] wired to a remote provider at `base_url`: `.ragls.toml` points there and
/// every run gets [`KEY`] in OPENROUTER_API_KEY. The file helpers and the `tmp`, `ws` and
/// `index` fields are the inner sandbox's (through `Deref`); `command`, `ragls`, `index`,
/// `status` and `search` are its own: they pass the key and keep the output.
pub struct ProviderSandbox {
    sandbox: Sandbox,
    pub base_url: String,
    /// The key given to `ragls` in `OPENROUTER_API_KEY`.
    pub key: String,
    runs: RefCell<Vec<Run>>,
}

impl Deref for ProviderSandbox {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl ProviderSandbox {
    /// An empty workspace (only `.ragls.toml`).
    pub fn empty_at(base_url: &str, settings: &Settings) -> ProviderSandbox {
        let sb = ProviderSandbox {
            sandbox: Sandbox::empty(),
            base_url: base_url.to_string(),
            key: KEY.to_string(),
            runs: RefCell::new(Vec::new()),
        };
        sb.configure(settings);
        sb
    }

    /// The fixture project of [`PROJECT`], plus `.ragls.toml`.
    pub fn with_project_at(base_url: &str, settings: &Settings) -> ProviderSandbox {
        let sb = ProviderSandbox::empty_at(base_url, settings);
        for (path, text) in PROJECT {
            sb.write(path, text);
        }
        sb
    }

    /// Rewrites `.ragls.toml`.
    pub fn configure(&self, settings: &Settings) {
        self.write(".ragls.toml", settings.toml(&self.base_url));
    }

    /// `ragls <sub> --workspace WS --index-dir INDEX <args>` in this sandbox's environment.
    pub fn command(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = self.sandbox.ragls_cmd(sub, args);
        c.env("OPENROUTER_API_KEY", &self.key);
        c
    }

    /// Runs `ragls`; the output is kept for [`ProviderSandbox::assert_key_never_leaked`].
    pub fn ragls(&self, sub: &str, args: &[&str]) -> Run {
        let out = self.command(sub, args).output().expect("run ragls");
        let run = Run {
            what: format!("ragls {sub} {}", args.join(" ")),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        self.runs.borrow_mut().push(run.clone());
        run
    }

    /// Like [`ProviderSandbox::ragls`], but kills the run if it has not ended after `deadline` (a
    /// guard against a test hanging for minutes, not a timing assertion): `code` is `None`
    /// then.
    pub fn ragls_with_deadline(&self, sub: &str, args: &[&str], deadline: Duration) -> Run {
        use std::io::Read;
        let mut child = self
            .command(sub, args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run ragls");
        let mut out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out_pipe.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            s
        });
        let started = Instant::now();
        let code = loop {
            if let Some(status) = child.try_wait().expect("wait for ragls") {
                break status.code();
            }
            if started.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let run = Run {
            what: format!("ragls {sub} {}", args.join(" ")),
            code,
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        };
        self.runs.borrow_mut().push(run.clone());
        run
    }

    /// `ragls index --json`, which must succeed: the report.
    pub fn index(&self) -> Value {
        self.ragls("index", &["--json"]).ok().json()
    }

    /// `ragls status --json`, which must succeed.
    pub fn status(&self) -> Value {
        self.ragls("status", &["--json"]).ok().json()
    }

    /// `ragls ask --json QUESTION`, which must succeed.
    pub fn ask(&self, question: &str) -> Value {
        self.ragls("ask", &["--json", question]).ok().json()
    }

    /// `ragls search --json QUERY`, which must succeed: the results.
    pub fn search(&self, query: &str) -> Vec<Value> {
        let v = self.ragls("search", &["--json", query]).ok().json();
        v["results"]
            .as_array()
            .unwrap_or_else(|| panic!("no results in {v}"))
            .clone()
    }

    /// The key appears in no output of any run so far, and in no file of the index folder.
    pub fn assert_key_never_leaked(&self) {
        let needle = self.key.as_bytes();
        for run in self.runs.borrow().iter() {
            assert!(
                !run.stdout.contains(&self.key) && !run.stderr.contains(&self.key),
                "`{}` printed the API key:\n--- stdout\n{}\n--- stderr\n{}",
                run.what,
                run.stdout,
                run.stderr
            );
        }
        let files = files_under(&self.index);
        assert!(!files.is_empty(), "the index folder is empty");
        for file in files {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !contains_bytes(&bytes, needle),
                "the index file {} contains the API key",
                file.display()
            );
        }
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `t` as an HTTP date (IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!(
        "{weekday}, {d:02} {month} {y:04} {:02}:{:02}:{:02} GMT",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One `[n] path:start-end (language) symbol` source header of a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub n: usize,
    pub path: String,
    pub start_line: u64,
    pub end_line: u64,
    pub language: String,
    pub symbol: Option<String>,
}

/// The source headers of a prompt's user message, in order.
pub fn prompt_headers(user: &str) -> Vec<Header> {
    let mut out = Vec::new();
    for line in user.lines() {
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((n, rest)) = rest.split_once("] ") else {
            continue;
        };
        let Ok(n) = n.parse::<usize>() else {
            continue;
        };
        // path:start-end (language)[ symbol]
        let Some((loc, rest)) = rest.split_once(" (") else {
            continue;
        };
        let Some((language, symbol)) = rest.split_once(')') else {
            continue;
        };
        let Some((path, lines)) = loc.rsplit_once(':') else {
            continue;
        };
        let Some((start, end)) = lines.split_once('-') else {
            continue;
        };
        let (Ok(start_line), Ok(end_line)) = (start.parse(), end.parse()) else {
            continue;
        };
        let symbol = symbol.trim();
        out.push(Header {
            n,
            path: path.to_string(),
            start_line,
            end_line,
            language: language.to_string(),
            symbol: (!symbol.is_empty()).then(|| symbol.to_string()),
        });
    }
    out
}

/// The (system, user) messages of a recorded chat request body.
pub fn chat_messages(body: &Value) -> (String, String) {
    let msgs = body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {body}"));
    let find = |role: &str| {
        msgs.iter()
            .find(|m| m["role"] == role)
            .and_then(|m| m["content"].as_str())
            .unwrap_or_else(|| panic!("no {role} message in {body}"))
            .to_string()
    };
    (find("system"), find("user"))
}

/// The fixture project: small files in several languages, each function big enough
/// (over `index.chunk_min_bytes`) to be a chunk of its own.
pub const PROJECT: &[(&str, &str)] = &[
    (
        "src/retry.rs",
        r#"//! Retrying flaky operations.

use std::time::Duration;

/// Retries an operation with exponential backoff: the delay doubles after each failed
/// attempt, up to the given number of attempts.
pub fn retry_with_backoff<T, E>(
    mut op: impl FnMut() -> Result<T, E>,
    attempts: u32,
) -> Result<T, E> {
    let mut delay_ms = 100u64;
    let mut last_error = None;
    for _attempt in 0..attempts {
        match op() {
            Ok(value) => return Ok(value),
            Err(e) => {
                last_error = Some(e);
                std::thread::sleep(Duration::from_millis(delay_ms));
                delay_ms = delay_ms.saturating_mul(2);
            }
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// Spreads retries of many clients apart: a pseudo-random share of the base delay, so
/// that clients which failed together do not all come back at the same instant.
pub fn jitter_delay(base: Duration, seed: u64) -> Duration {
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let share = (x % 1000) as f64 / 1000.0;
    base.mul_f64(0.5 + share / 2.0)
}
"#,
    ),
    (
        "src/cache.rs",
        r#"//! A small least-recently-used cache.

use std::collections::HashMap;

pub struct LruCache {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, String)>,
}

impl LruCache {
    /// Stores a value under its key, evicting the least recently used entry when the
    /// cache is full.
    pub fn insert(&mut self, key: String, value: String) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.evict();
        }
        self.tick += 1;
        self.entries.insert(key, (self.tick, value));
    }

    /// Removes the least recently used entry: the one with the oldest tick.
    pub fn evict(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, (tick, _))| *tick)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.entries.remove(&k);
        }
    }
}
"#,
    ),
    (
        "src/http.rs",
        r#"//! Parsing HTTP/1.1 requests.

/// Splits an HTTP request line such as `GET /index.html HTTP/1.1` into its method,
/// target and protocol version; `None` when the line is malformed.
pub fn parse_request_line(line: &str) -> Option<(String, String, String)> {
    let mut parts = line.trim_end_matches("\r\n").split(' ');
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let version = parts.next()?.to_string();
    if parts.next().is_some() || !version.starts_with("HTTP/") {
        return None;
    }
    Some((method, target, version))
}

/// Reads the headers that follow a request line, one `Name: value` per line, until the
/// blank line; header names are lower-cased.
pub fn parse_headers(text: &str) -> Vec<(String, String)> {
    text.lines()
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_lowercase(), value.trim().to_string()))
        .collect()
}
"#,
    ),
    (
        "app/limiter.py",
        r#""""A token bucket rate limiter."""

import time


class TokenBucket:
    """Lets `rate` requests per second through, with bursts up to `capacity`."""

    def __init__(self, rate, capacity):
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def allow(self):
        """Refills the bucket for the time that passed, then takes one token if there is
        one: True when this request may pass, False when it is rate limited."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
"#,
    ),
    (
        "app/settings.py",
        r#""""Loading configuration."""

import json
import os


def load_settings(path):
    """Reads settings from a JSON file, then lets environment variables named
    APP_<KEY> override each of them; returns a dictionary of settings."""
    with open(path) as f:
        settings = json.load(f)
    for key in list(settings):
        override = os.environ.get("APP_" + key.upper())
        if override is not None:
            settings[key] = override
    return settings
"#,
    ),
    (
        "web/debounce.js",
        r#"// Postpones calling `fn` until `wait` milliseconds have passed since the last call:
// typing in a search box triggers one lookup when the user pauses, not one per key.
export function debounce(fn, wait) {
  let timer = null;
  return function debounced(...args) {
    if (timer !== null) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = null;
      fn.apply(this, args);
    }, wait);
  };
}
"#,
    ),
    (
        "README.md",
        r#"# demo

A small demo project: a retry helper with exponential backoff, an LRU cache, an HTTP
request parser, a token bucket rate limiter, settings loading and a debounce helper.

## Running

Build with `cargo build`, then run the tests with `cargo test`.
"#,
    ),
];

// ---------------------------------------------------------------------------------------
// The fixture project: a small service with a Rust core, a Python client, a TypeScript web
// client, a Go rate limiter and some docs. Each function worth finding has a doc comment
// and a body long enough to be its own chunk (the chunker merges chunks under 250 bytes).
// ---------------------------------------------------------------------------------------

pub const LRU_RS: &str = r#"//! A fixed-capacity cache that forgets the least recently used entry first.

use std::collections::HashMap;
use std::hash::Hash;

/// One slot of the recency list: a doubly linked list threaded through a Vec.
#[derive(Debug)]
struct Node<K, V> {
    key: K,
    value: V,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A least-recently-used cache with a fixed capacity.
#[derive(Debug)]
pub struct LruCache<K, V> {
    capacity: usize,
    map: HashMap<K, usize>,
    nodes: Vec<Node<K, V>>,
    head: Option<usize>,
    tail: Option<usize>,
}

impl<K: Hash + Eq + Clone, V> LruCache<K, V> {
    /// Creates an empty cache that holds at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "an LRU cache needs room for at least one entry");
        LruCache { capacity, map: HashMap::with_capacity(capacity), nodes: Vec::with_capacity(capacity), head: None, tail: None }
    }

    /// Looks a key up and marks it as the most recently used entry.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let index = *self.map.get(key)?;
        self.detach(index);
        self.attach_front(index);
        Some(&self.nodes[index].value)
    }

    /// Inserts or replaces a value; when the cache is full, the least recently used
    /// entry makes room for it.
    pub fn put(&mut self, key: K, value: V) {
        if let Some(&index) = self.map.get(&key) {
            self.nodes[index].value = value;
            self.detach(index);
            self.attach_front(index);
            return;
        }
        if self.map.len() == self.capacity {
            self.evict();
        }
        let index = self.nodes.len();
        self.nodes.push(Node { key: key.clone(), value, prev: None, next: None });
        self.map.insert(key, index);
        self.attach_front(index);
    }

    /// Evicts the least recently used entry: unlinks the tail of the recency list and
    /// drops its key from the map. Returns the evicted key, if the cache was not empty.
    pub fn evict(&mut self) -> Option<K> {
        let tail = self.tail?;
        self.detach(tail);
        let key = self.nodes[tail].key.clone();
        self.map.remove(&key);
        Some(key)
    }

    fn detach(&mut self, index: usize) {
        let (prev, next) = (self.nodes[index].prev, self.nodes[index].next);
        match prev {
            Some(p) => self.nodes[p].next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => self.nodes[n].prev = prev,
            None => self.tail = prev,
        }
    }

    fn attach_front(&mut self, index: usize) {
        self.nodes[index].prev = None;
        self.nodes[index].next = self.head;
        if let Some(h) = self.head {
            self.nodes[h].prev = Some(index);
        }
        self.head = Some(index);
        if self.tail.is_none() {
            self.tail = Some(index);
        }
    }
}
"#;

pub const REQUEST_RS: &str = r#"//! Parsing of HTTP/1.1 requests from raw bytes.

use std::collections::BTreeMap;

/// A parsed HTTP request: method, target, version and headers.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, PartialEq)]
pub enum ParseError {
    Incomplete,
    BadRequestLine(String),
    BadHeader(String),
}

/// Parses the request line of an HTTP request, e.g. `GET /index.html HTTP/1.1`, into
/// its method, request target and protocol version.
pub fn parse_request_line(line: &str) -> Result<(String, String, String), ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(ParseError::BadRequestLine(line.to_string()));
    };
    if !version.starts_with("HTTP/") {
        return Err(ParseError::BadRequestLine(line.to_string()));
    }
    Ok((method.to_string(), target.to_string(), version.to_string()))
}

/// Parses `Name: value` header lines until the blank line that ends the header block.
/// Header names are case-insensitive, so they are stored lower-cased.
pub fn parse_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Result<BTreeMap<String, String>, ParseError> {
    let mut headers = BTreeMap::new();
    for line in lines {
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line.split_once(':').ok_or_else(|| ParseError::BadHeader(line.to_string()))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Err(ParseError::Incomplete)
}

/// Parses a whole HTTP request head from raw bytes received on a socket.
pub fn parse_request(raw: &[u8]) -> Result<Request, ParseError> {
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::Incomplete)?;
    let mut lines = text.split("\r\n");
    let first = lines.next().ok_or(ParseError::Incomplete)?;
    let (method, target, version) = parse_request_line(first)?;
    let headers = parse_headers(lines)?;
    Ok(Request { method, target, version, headers })
}
"#;

pub const MAIN_RS: &str = r#"//! The server binary: reads its settings, then serves HTTP on the configured port.

mod cache;
mod http;

use std::net::TcpListener;

/// Starts the server: binds the listener and answers each connection in turn.
fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080u16);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    eprintln!("listening on port {port}");
    for stream in listener.incoming() {
        let stream = stream?;
        handle_connection(stream)?;
    }
    Ok(())
}
"#;

pub const RETRY_PY: &str = r#""""Retry helpers for flaky network calls."""

import random
import time


class RetryError(Exception):
    """Raised when every attempt failed; carries the last error."""

    def __init__(self, attempts, last_error):
        super().__init__(f"gave up after {attempts} attempts: {last_error}")
        self.attempts = attempts
        self.last_error = last_error


def retry_with_backoff(func, attempts=5, base_delay=0.1, max_delay=10.0, retry_on=(ConnectionError, TimeoutError)):
    """Call func, retrying failed requests with exponential backoff and jitter.

    The delay doubles after every failed attempt, up to max_delay.
    """
    last_error = None
    for attempt in range(attempts):
        try:
            return func()
        except retry_on as error:
            last_error = error
            delay = min(max_delay, base_delay * (2 ** attempt))
            time.sleep(delay * random.uniform(0.5, 1.5))
    raise RetryError(attempts, last_error)
"#;

pub const CONFIG_PY: &str = r#""""Application settings: a TOML file, overridden by environment variables."""

import os
import tomllib
from pathlib import Path

DEFAULTS = {"host": "127.0.0.1", "port": 8080, "log_level": "info", "cache_size": 1024}


class ConfigLoader:
    """Loads the application configuration."""

    def __init__(self, path, env_prefix="APP_"):
        self.path = Path(path)
        self.env_prefix = env_prefix

    def load(self):
        """Load the configuration file, then apply overrides from environment variables.

        Missing keys fall back to the defaults; unknown keys are an error.
        """
        settings = dict(DEFAULTS)
        if self.path.exists():
            with self.path.open("rb") as f:
                settings.update(tomllib.load(f))
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"{self.path}: unknown settings {sorted(unknown)}")
        return self._apply_env(settings)

    def _apply_env(self, settings):
        """Environment variables such as APP_PORT=9000 override the file's values."""
        for key, default in DEFAULTS.items():
            value = os.environ.get(self.env_prefix + key.upper())
            if value is not None:
                settings[key] = type(default)(value)
        return settings

    def validate(self, settings):
        """Check value ranges, so that a typo fails at start-up and not under load."""
        problems = []
        if not 0 < settings["port"] < 65536:
            problems.append(f"port {settings['port']} is not a TCP port")
        if settings["log_level"] not in ("debug", "info", "warning", "error"):
            problems.append(f"log_level {settings['log_level']!r} is not a level")
        if settings["cache_size"] <= 0:
            problems.append("cache_size must be positive")
        if problems:
            raise ValueError(f"{self.path}: " + "; ".join(problems))
        return settings

    def save(self, settings):
        """Write the settings back to the file, keeping only keys that differ from the defaults."""
        changed = {key: value for key, value in settings.items() if DEFAULTS.get(key) != value}
        lines = [f"{key} = {value!r}" for key, value in sorted(changed.items())]
        self.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
"#;

pub const CLIENT_TS: &str = r#"// A small typed client for the service's JSON API.

export interface User {
  id: number;
  name: string;
  email: string;
}

export class ApiClient {
  constructor(private readonly baseUrl: string, private readonly token?: string) {}

  /** Sends a GET request and decodes the JSON body, throwing on HTTP errors. */
  async fetchJson<T>(path: string): Promise<T> {
    const headers: Record<string, string> = { Accept: "application/json" };
    if (this.token) {
      headers["Authorization"] = `Bearer ${this.token}`;
    }
    const response = await fetch(this.baseUrl + path, { headers });
    if (!response.ok) {
      throw new Error(`GET ${path} failed with status ${response.status}`);
    }
    return (await response.json()) as T;
  }

  /** Lists the users of the account, one page at a time. */
  async listUsers(page = 1): Promise<User[]> {
    const users = await this.fetchJson<User[]>(`/users?page=${page}`);
    return users.filter((user) => user.email.length > 0).sort((a, b) => a.name.localeCompare(b.name));
  }
}
"#;

pub const DEBOUNCE_TS: &str = r#"// Timing helpers for the web client.

/**
 * Debounce a function: postpone calling it until `waitMs` milliseconds have passed
 * since the last call, so a burst of keystrokes triggers a single search request.
 */
export function debounce<A extends unknown[]>(fn: (...args: A) => void, waitMs: number): (...args: A) => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return (...args: A) => {
    if (timer !== undefined) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = undefined;
      fn(...args);
    }, waitMs);
  };
}
"#;

pub const LIMITER_GO: &str = r#"// Package ratelimit limits how many requests a client may make per second.
package ratelimit

import (
	"sync"
	"time"
)

// TokenBucket is a token bucket rate limiter: it refills at a steady rate and
// allows a burst up to its capacity.
type TokenBucket struct {
	mu       sync.Mutex
	capacity float64
	tokens   float64
	rate     float64
	last     time.Time
}

// NewTokenBucket returns a full bucket that refills `rate` tokens per second.
func NewTokenBucket(capacity, rate float64) *TokenBucket {
	return &TokenBucket{capacity: capacity, tokens: capacity, rate: rate, last: time.Now()}
}

// Allow reports whether one more request may pass the rate limit now, taking a
// token from the bucket if so. Tokens refill in proportion to the time elapsed.
func (b *TokenBucket) Allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.capacity {
		b.tokens = b.capacity
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
"#;

pub const HANDLERS_GO: &str = r#"package main

import (
	"encoding/json"
	"net/http"
)

// healthHandler answers liveness probes with a small JSON document so that the
// load balancer knows this instance is up and which version it runs.
func healthHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok", "version": version})
}
"#;

pub const README_MD: &str = r#"# Orchard

Orchard is a small web service with a Rust core, a Python client library and a
TypeScript web front end.

## Install

Build the server with `cargo build --release` and install the client with
`pip install ./client`.

## Configuration

Settings are read from `orchard.toml`; every key can be overridden with an
environment variable such as `APP_PORT=9000`. See `client/config_loader.py`.

## Rate limiting

Each API client gets a token bucket that refills ten times per second; requests
over the limit get status 429.
"#;

pub const ARCHITECTURE_MD: &str = r#"# Architecture

## Request flow

A connection is accepted in `src/main.rs`, its bytes are parsed by
`src/http/request.rs`, and responses for hot paths are served from the LRU cache in
`src/cache/lru.rs`.

## Failure handling

Calls to upstream services go through `retry_with_backoff`, which waits longer after
each failure.
"#;

/// The fixture project: (path, text).
pub const FIXTURE: &[(&str, &str)] = &[
    ("README.md", README_MD),
    ("docs/architecture.md", ARCHITECTURE_MD),
    ("src/main.rs", MAIN_RS),
    ("src/cache/lru.rs", LRU_RS),
    ("src/http/request.rs", REQUEST_RS),
    ("client/retry.py", RETRY_PY),
    ("client/config_loader.py", CONFIG_PY),
    ("web/src/api/client.ts", CLIENT_TS),
    ("web/src/util/debounce.ts", DEBOUNCE_TS),
    ("server/ratelimit/limiter.go", LIMITER_GO),
    ("server/handlers.go", HANDLERS_GO),
];

pub fn fixture_text(path: &str) -> &'static str {
    FIXTURE
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no fixture file {path}"))
}

// The functions the specifications look for.

pub fn lru_evict() -> Expect {
    let (start_line, end_line) =
        span_of(LRU_RS, "/// Evicts the least recently used entry", "    }");
    Expect {
        path: "src/cache/lru.rs",
        start_line,
        end_line,
        symbol: "impl LruCache<K, V> > fn evict",
        kind: "method",
    }
}

pub fn retry_with_backoff() -> Expect {
    let start_line = line_of(RETRY_PY, "def retry_with_backoff(");
    let end_line = line_of(RETRY_PY, "raise RetryError(attempts, last_error)");
    Expect {
        path: "client/retry.py",
        start_line,
        end_line,
        symbol: "def retry_with_backoff",
        kind: "function",
    }
}

pub fn parse_request_line() -> Expect {
    let (start_line, end_line) = span_of(
        REQUEST_RS,
        "/// Parses the request line of an HTTP request",
        "}",
    );
    Expect {
        path: "src/http/request.rs",
        start_line,
        end_line,
        symbol: "fn parse_request_line",
        kind: "function",
    }
}

pub fn config_load() -> Expect {
    let start_line = line_of(CONFIG_PY, "def load(self):");
    let end_line = line_of(CONFIG_PY, "return self._apply_env(settings)");
    Expect {
        path: "client/config_loader.py",
        start_line,
        end_line,
        symbol: "class ConfigLoader > def load",
        kind: "method",
    }
}

pub fn token_bucket_allow() -> Expect {
    let (start_line, end_line) =
        span_of(LIMITER_GO, "// Allow reports whether one more request", "}");
    Expect {
        path: "server/ratelimit/limiter.go",
        start_line,
        end_line,
        symbol: "func (*TokenBucket) Allow",
        kind: "method",
    }
}

pub fn debounce() -> Expect {
    let (start_line, end_line) = span_of(DEBOUNCE_TS, "/**", "}");
    Expect {
        path: "web/src/util/debounce.ts",
        start_line,
        end_line,
        symbol: "function debounce",
        kind: "function",
    }
}

// ---------------------------------------------------------------------------------------
// Many-file fixtures for the crash tests.
// ---------------------------------------------------------------------------------------

const WORDS_A: &[&str] = &[
    "amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
    "kestrel", "lagoon", "marble", "nectar", "onyx", "pepper", "quartz", "raven", "saffron",
    "tundra",
];
const WORDS_B: &[&str] = &[
    "ledger", "beacon", "cipher", "drawer", "engine", "falcon", "glacier", "hammer", "island",
    "jacket", "kernel", "lantern", "meadow", "needle", "orbit", "parcel", "quiver", "ribbon",
    "signal", "turbine",
];
const WORDS_C: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// A unique two-word name for file `i` (up to 400 without a third word, 4000 with one).
pub fn unique_words(i: usize) -> String {
    let a = WORDS_A[i % WORDS_A.len()];
    let b = WORDS_B[(i / WORDS_A.len()) % WORDS_B.len()];
    if i < WORDS_A.len() * WORDS_B.len() {
        format!("{a}_{b}")
    } else {
        let c = WORDS_C[(i / (WORDS_A.len() * WORDS_B.len())) % WORDS_C.len()];
        format!("{a}_{b}_{c}")
    }
}

/// The path of file `i` of a many-file fixture: sorted by `i`, spread over folders.
pub fn many_path(i: usize) -> String {
    format!("crates/m{:02}/src/file_{i:05}.rs", i / 100)
}

/// The name of the first function of file `i`.
pub fn many_fn(i: usize) -> String {
    format!("reconcile_{}", unique_words(i))
}

/// Writes `n` small Rust files, each with three functions whose names are unique.
pub fn write_many_files(sb: &Sandbox, n: usize) {
    for i in 0..n {
        let w = unique_words(i);
        let text = format!(
            "//! Module {i}: bookkeeping for the {w} records.\n\n\
             /// Reconciles the {w} ledger entries against the bank statement.\n\
             pub fn reconcile_{w}(entries: &[i64], statement: i64) -> bool {{\n    entries.iter().sum::<i64>() == statement\n}}\n\n\
             /// Formats one {w} amount for display.\n\
             pub fn format_{w}(cents: i64) -> String {{\n    format!(\"{{}}.{{:02}}\", cents / 100, cents % 100)\n}}\n\n\
             /// Counts the {w} entries above a threshold.\n\
             pub fn count_{w}(entries: &[i64], threshold: i64) -> usize {{\n    entries.iter().filter(|e| **e > threshold).count()\n}}\n"
        );
        sb.write(&many_path(i), text);
    }
}
