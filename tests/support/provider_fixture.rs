//! Helpers of `tests/provider.rs`: a sandboxed workspace wired to a [`FakeProvider`]
//! (settings file, fake home and XDG folders, `--index-dir`), a runner for the real `ragls`
//! binary that keeps every output for leak checks, and the small project the specifications
//! index.
//!
//! Include it after the fake:
//!
//! ```ignore
//! #[path = "support/fake_provider.rs"]
//! mod fake_provider;
//! #[path = "support/provider_fixture.rs"]
//! mod provider_fixture;
//! ```

#![allow(dead_code)]

use super::fake_provider::FakeProvider;
use serde_json::Value;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

pub const BIN: &str = env!("CARGO_BIN_EXE_ragls");
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

/// One test's workspace, index folder and fake home, wired to a fake provider.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub ws: PathBuf,
    pub index: PathBuf,
    pub base_url: String,
    /// The key given to `ragls` in `OPENROUTER_API_KEY`.
    pub key: String,
    runs: RefCell<Vec<Run>>,
}

impl Sandbox {
    /// An empty workspace (only `.ragls.toml`).
    pub fn empty(fake: &FakeProvider, settings: &Settings) -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ws = tmp.path().join("workspace");
        let index = tmp.path().join("index");
        std::fs::create_dir_all(&ws).unwrap();
        for d in ["home", "cache", "config"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        let sb = Sandbox {
            tmp,
            ws,
            index,
            base_url: fake.base_url(),
            key: KEY.to_string(),
            runs: RefCell::new(Vec::new()),
        };
        sb.configure(settings);
        sb
    }

    /// The fixture project of [`PROJECT`], plus `.ragls.toml`.
    pub fn with_project(fake: &FakeProvider, settings: &Settings) -> Sandbox {
        let sb = Sandbox::empty(fake, settings);
        for (path, text) in PROJECT {
            sb.write(path, text);
        }
        sb
    }

    /// Rewrites `.ragls.toml`.
    pub fn configure(&self, settings: &Settings) {
        self.write(".ragls.toml", settings.toml(&self.base_url));
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

    /// Sets a file's mtime far from now, so the change is seen whatever the file system's
    /// timestamp resolution.
    pub fn set_mtime(&self, rel: &str, secs_since_epoch: u64) {
        let f = std::fs::File::options()
            .write(true)
            .open(self.path(rel))
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs_since_epoch))
            .unwrap();
    }

    /// `ragls <sub> --workspace WS --index-dir INDEX <args>` in this sandbox's environment.
    pub fn command(&self, sub: &str, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.tmp.path())
            .env("HOME", self.tmp.path().join("home"))
            .env("XDG_CACHE_HOME", self.tmp.path().join("cache"))
            .env("XDG_CONFIG_HOME", self.tmp.path().join("config"))
            .env("OPENROUTER_API_KEY", &self.key)
            .env_remove("RAGLS_FAULT_ABORT_AFTER_BATCHES")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .arg(sub)
            .arg("--workspace")
            .arg(&self.ws)
            .arg("--index-dir")
            .arg(&self.index)
            .args(args);
        c
    }

    /// Runs `ragls`; the output is kept for [`Sandbox::assert_key_never_leaked`].
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

    /// Like [`Sandbox::ragls`], but kills the run if it has not ended after `deadline` (a
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

pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
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
