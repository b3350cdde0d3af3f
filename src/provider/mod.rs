//! The provider: one HTTP client (reqwest, rustls, one connection pool) for
//! OpenAI-compatible APIs — OpenRouter by default, or any base URL (Ollama, llama.cpp,
//! vLLM, LM Studio). It owns authentication, attribution headers, timeouts, retries with
//! backoff that honour `Retry-After`, and errors a user can act on.
//!
//! The API key is read from the environment only, held in a type whose `Debug` hides it,
//! and scrubbed from every error message; it is sent only to the configured base URL.
//! The endpoint modules (`embeddings`, `rerank`, `chat`) speak the wire formats; what to
//! do with the results is the engine's business.

pub mod chat;
pub mod embeddings;
pub mod rerank;
pub mod sse;

use crate::config::ProviderConfig;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use std::time::Duration;

pub use embeddings::RemoteEmbedder;
pub use rerank::RemoteReranker;

/// The default base URL; with it, a key is required.
pub const OPENROUTER_BASE_URL: &str = "https://openrouter.ai/api/v1";
/// The longest `Retry-After` that is waited out; longer asks fail with a clear error.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An API key. Never printed: `Debug` shows only that it is set.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// What went wrong talking to the provider, in words a user can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    #[error(
        "the provider refused the API key in ${var} (401): check that it is valid and enabled"
    )]
    Unauthorized { var: String },
    #[error("the provider account has no credits left (402): add credits, or unset ${var} to run offline")]
    NoCredits { var: String },
    #[error("the provider refused the request (403): {message}")]
    Forbidden { message: String },
    #[error("the model \"{model}\" is not known to {base_url}: {message}; check the model name in your settings")]
    UnknownModel {
        model: String,
        base_url: String,
        message: String,
    },
    #[error("the input is too long for the model \"{model}\": {message}")]
    InputTooLong { model: String, message: String },
    #[error(
        "the provider is rate limiting and still refused after {attempts} attempts: {message}"
    )]
    RateLimited { attempts: u32, message: String },
    #[error("the provider failed ({status}) after {attempts} attempts: {message}")]
    Server {
        status: u16,
        attempts: u32,
        message: String,
    },
    /// No answer within the step's budget; `seconds` is the time really spent, retries
    /// and waits included.
    #[error("the provider did not answer within {seconds} s ({attempts} attempt(s), {url}); raise provider.timeout_s or provider.total_timeout_s, or try again")]
    Timeout {
        url: String,
        seconds: u64,
        attempts: u32,
    },
    #[error("cannot reach {url}: {message}; check your network or provider.base_url")]
    Network { url: String, message: String },
    #[error("the provider sent a response ragls cannot read: {0}")]
    BadResponse(String),
    #[error("the answer stream failed: {0}")]
    Stream(String),
    #[error("the request failed ({status}): {message}")]
    Other { status: u16, message: String },
}

impl ProviderError {
    /// Failures that a retry or a later run may fix, as opposed to configuration errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Server { .. }
                | ProviderError::Timeout { .. }
                | ProviderError::Network { .. }
                | ProviderError::Stream(_)
        )
    }
}

impl From<ProviderError> for crate::error::Error {
    fn from(e: ProviderError) -> Self {
        crate::error::Error::Other(e.to_string())
    }
}

/// The shared HTTP client and the settings every endpoint needs.
#[derive(Debug, Clone)]
pub struct Provider {
    http: reqwest::Client,
    base_url: String,
    key: Option<ApiKey>,
    key_env: String,
    timeout: Duration,
    max_retries: u32,
    /// The budget of one call to [`Provider::post`], every attempt and wait included.
    total_timeout: Duration,
    /// HTTP attempts made through this client (and its clones), retries included.
    attempts: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Provider {
    /// HTTP attempts so far, retries included.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Builds the client from settings and the environment. `None` when no remote is
    /// configured: no key in the environment and the default (OpenRouter) base URL.
    pub fn from_config(config: &ProviderConfig) -> Option<Provider> {
        let key = std::env::var(&config.api_key_env)
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| ApiKey(k.trim().to_string()));
        let base_url = config.base_url.trim_end_matches('/').to_string();
        if key.is_none() && base_url == OPENROUTER_BASE_URL {
            return None;
        }
        // One client (one connection pool) per process and settings: every engine of a
        // server shares it.
        type Shared = Vec<(ProviderConfig, Option<String>, Provider)>;
        static SHARED: std::sync::OnceLock<std::sync::Mutex<Shared>> = std::sync::OnceLock::new();
        let shared = SHARED.get_or_init(Default::default);
        let key_text = key.as_ref().map(|k| k.0.clone());
        let mut cache = shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, _, p)) = cache.iter().find(|(c, k, _)| c == config && *k == key_text) {
            return Some(p.clone());
        }
        let provider = Provider::new(&base_url, key, config)?;
        cache.push((config.clone(), key_text, provider.clone()));
        Some(provider)
    }

    fn new(base_url: &str, key: Option<ApiKey>, config: &ProviderConfig) -> Option<Provider> {
        let mut headers = HeaderMap::new();
        // OpenRouter's attribution headers; other servers ignore them.
        headers.insert(
            "HTTP-Referer",
            HeaderValue::from_static("https://github.com/ragls/ragls"),
        );
        headers.insert("X-Title", HeaderValue::from_static("ragls"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(Duration::from_secs(config.timeout_s.max(1)))
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("ragls/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Provider {
            http,
            base_url: base_url.to_string(),
            key,
            key_env: config.api_key_env.clone(),
            timeout: Duration::from_secs(config.timeout_s.max(1)),
            max_retries: config.max_retries.min(crate::config::MAX_RETRIES),
            total_timeout: Duration::from_secs(config.total_timeout_s.max(1)),
            attempts: Default::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/{}", self.base_url, endpoint.trim_start_matches('/'))
    }

    fn request(&self, endpoint: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let mut rb = self.http.post(self.url(endpoint)).json(body);
        if let Some(key) = &self.key {
            rb = rb.bearer_auth(&key.0);
        }
        rb
    }

    /// POSTs `body` to `endpoint` and returns the successful response, retrying rate
    /// limits, server errors and timeouts with exponential backoff and jitter, waiting
    /// what `Retry-After` asks when the server says. `total_timeout` is off for streams.
    pub async fn post(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
        total_timeout: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let model = body
            .get("model")
            .and_then(|m| m.as_str())
            .unwrap_or("")
            .to_string();
        let url = self.url(endpoint);
        let started = tokio::time::Instant::now();
        let out_of_time = |attempts: u32| ProviderError::Timeout {
            url: url.clone(),
            seconds: started.elapsed().as_secs_f64().round().max(1.0) as u64,
            attempts,
        };
        // Whether a wait of `wait` before the next attempt still fits the budget.
        let fits = |wait: Duration| started.elapsed() + wait < self.total_timeout;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = self.total_timeout.saturating_sub(started.elapsed());
            if remaining.is_zero() {
                return Err(out_of_time(attempt - 1));
            }
            let mut rb = self.request(endpoint, body);
            if total_timeout {
                rb = rb.timeout(self.timeout.min(remaining));
            }
            let last = attempt > self.max_retries;
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Ok(sent) = tokio::time::timeout(remaining, rb.send()).await else {
                return Err(out_of_time(attempt));
            };
            match sent {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(resp.headers());
                    let message = self.redact(&error_message(resp).await);
                    let retryable = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504);
                    if retryable && !last {
                        let wait = match retry_after {
                            Some(w) if w > MAX_RETRY_AFTER => {
                                return Err(ProviderError::RateLimited {
                                    attempts: attempt,
                                    message: format!(
                                        "the provider asks to wait {} s; try again later",
                                        w.as_secs()
                                    ),
                                })
                            }
                            Some(w) => w,
                            None => backoff(attempt),
                        };
                        if fits(wait) {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                    }
                    return Err(self.status_error(status, attempt, message, &model));
                }
                Err(e) => {
                    let transient = e.is_timeout() || e.is_connect() || e.is_request();
                    let wait = backoff(attempt);
                    if transient && !last && fits(wait) {
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(if e.is_timeout() {
                        out_of_time(attempt)
                    } else {
                        ProviderError::Network {
                            url: url.clone(),
                            message: self.redact(&error_chain(&e)),
                        }
                    });
                }
            }
        }
    }

    fn status_error(
        &self,
        status: StatusCode,
        attempts: u32,
        message: String,
        model: &str,
    ) -> ProviderError {
        let lower = message.to_lowercase();
        let too_long = lower.contains("too long")
            || lower.contains("maximum context")
            || lower.contains("context length")
            || lower.contains("too many tokens")
            || lower.contains("maximum input");
        match status.as_u16() {
            401 => ProviderError::Unauthorized {
                var: self.key_env.clone(),
            },
            402 => ProviderError::NoCredits {
                var: self.key_env.clone(),
            },
            403 => ProviderError::Forbidden { message },
            413 => ProviderError::InputTooLong {
                model: model.to_string(),
                message,
            },
            400 if too_long => ProviderError::InputTooLong {
                model: model.to_string(),
                message,
            },
            404 | 400 if lower.contains("model") => ProviderError::UnknownModel {
                model: model.to_string(),
                base_url: self.base_url.clone(),
                message,
            },
            429 => ProviderError::RateLimited { attempts, message },
            s if s >= 500 || s == 408 => ProviderError::Server {
                status: s,
                attempts,
                message,
            },
            s => ProviderError::Other { status: s, message },
        }
    }

    /// Removes the key from any text that might reach a user or a log.
    pub fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(k) if !k.0.is_empty() => text.replace(&k.0, "***"),
            _ => text.to_string(),
        }
    }
}

/// The error message in an OpenAI/OpenRouter error body, or the start of the body.
async fn error_message(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("message"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    match message {
        Some(m) => one_line(&m),
        None if text.trim().is_empty() => status
            .canonical_reason()
            .unwrap_or("no details")
            .to_string(),
        None => one_line(&text.chars().take(200).collect::<String>()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Retry-After` as seconds or an HTTP date (IMF-fixdate).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs >= 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs));
    }
    let at = parse_http_date(value)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// Parses `Sun, 06 Nov 1994 08:49:37 GMT` into seconds since the epoch.
fn parse_http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as u64
        + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<u64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days)
        .ok()
        .map(|d| d * 86_400 + h * 3600 + m * 60 + sec)
}

/// Exponential backoff with jitter: about 0.5 s, 1 s, 2 s... (capped at 20 s), each
/// scaled by a random factor in [0.5, 1) so that many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.saturating_sub(1).min(6) as i32);
    Duration::from_secs_f64(base.min(20.0) * (0.5 + 0.5 * jitter()))
}

/// A number in [0, 1) from the clock; good enough to spread retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    (x % 10_000) as f64 / 10_000.0
}

/// The runtime that blocking callers (the indexer, the CLI) run provider calls on:
/// created on first use, shared by every endpoint, so there is one connection pool.
pub fn blocking_runtime() -> Result<&'static tokio::runtime::Runtime, crate::error::Error> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ragls-http")
        .build()
        .map_err(|e| crate::error::Error::io("cannot start the HTTP runtime", e))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..10 {
            let d = backoff(attempt).as_secs_f64();
            let base = (0.5 * 2f64.powi(attempt as i32 - 1)).min(20.0);
            assert!(d >= base * 0.5 && d < base, "attempt {attempt}: {d}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_or_errors() {
        let config = ProviderConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            ..ProviderConfig::default()
        };
        let p = Provider::new(
            "http://127.0.0.1:9/v1",
            Some(ApiKey("sk-secret-123".into())),
            &config,
        )
        .unwrap();
        assert!(!format!("{p:?}").contains("sk-secret-123"));
        assert_eq!(p.redact("bad key sk-secret-123 given"), "bad key *** given");
    }

    #[test]
    fn status_codes_become_actionable_errors() {
        let config = ProviderConfig::default();
        let p = Provider::new("http://x/v1", None, &config).unwrap();
        let e = p.status_error(StatusCode::UNAUTHORIZED, 1, "no".into(), "m");
        assert!(e.to_string().contains("$OPENROUTER_API_KEY"), "{e}");
        let e = p.status_error(
            StatusCode::BAD_REQUEST,
            1,
            "foo/bar is not a valid model ID".into(),
            "foo/bar",
        );
        assert!(matches!(e, ProviderError::UnknownModel { .. }), "{e:?}");
        assert!(e.to_string().contains("\"foo/bar\""));
        let e = p.status_error(
            StatusCode::BAD_REQUEST,
            1,
            "This model's maximum context length is 8192 tokens".into(),
            "m",
        );
        assert!(matches!(e, ProviderError::InputTooLong { .. }));
        let e = p.status_error(StatusCode::PAYMENT_REQUIRED, 1, "".into(), "m");
        assert!(e.to_string().contains("credits"));
        assert!(p
            .status_error(StatusCode::BAD_GATEWAY, 5, "".into(), "m")
            .is_transient());
    }
}
