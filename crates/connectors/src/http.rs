//! The one outbound HTTP stack every connector shares: timeouts, retries with jittered
//! exponential backoff (`backon`) for answers that may succeed next time, and rate-limit waits
//! that honour what the vendor says (`Retry-After`, or `X-RateLimit-Reset` /
//! `X-Rate-Limit-Reset`, seconds until the window resets).
//!
//! A request is described by a closure that builds it afresh for each attempt, and its answer
//! is validated by a second closure inside the retry loop: a 200 whose body is cut off is
//! retried like a 503, because for a read it is the same thing.
//!
//! Writes that may not be repeated blindly (an isolation, a ticket) are sent with
//! [`Retry::NotAfterSending`]: they are retried only when the vendor certainly did not act
//! (429, connection refused before anything was sent); every other failure comes back to the
//! caller, whose job it is to look the result up (DESIGN.md §2).

use crate::ConnectorError;
use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder, Response};
use std::time::Duration;

/// Tunables of the stack. The defaults suit production; [`HttpOptions::for_tests`] keeps the
/// same behaviour with waits short enough for a test suite.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// Whole-request deadline (connect, send, and read the full body).
    pub request_timeout: Duration,
    /// Attempts per call, the first included, for retryable failures.
    pub max_attempts: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest single rate-limit wait a call sits through; a vendor asking for longer gets
    /// [`ConnectorError::RateLimited`] so the scheduler can come back later instead.
    pub max_rate_limit_wait: Duration,
    /// Rate-limit waits a single call sits through before giving up.
    pub max_rate_limit_waits: usize,
    /// How long a 429 that names no wait is waited out (`None`: backed off like any transient
    /// failure). Umbrella documents "about a second" for its per-org limit.
    pub rate_limit_default_wait: Option<Duration>,
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_attempts: 5,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(120),
            max_rate_limit_waits: 5,
            rate_limit_default_wait: None,
            user_agent: format!("socbridge/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl HttpOptions {
    /// The production behaviour with short waits: tests exercise retries without sleeping.
    pub fn for_tests() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            max_attempts: 8,
            min_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(100),
            max_rate_limit_wait: Duration::from_secs(5),
            max_rate_limit_waits: 20,
            ..HttpOptions::default()
        }
    }
}

/// Whether a request may be sent again after a failure whose effect is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: retry every transient failure.
    Always,
    /// Writes whose repetition could act twice: retry only when the vendor certainly did not
    /// act (429, or the connection could not be made).
    NotAfterSending,
}

/// A shared client (connection pool, TLS config) plus the retry policy. Cheap to clone.
#[derive(Clone)]
pub struct HttpStack {
    client: Client,
    opts: std::sync::Arc<HttpOptions>,
}

impl std::fmt::Debug for HttpStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStack")
            .field("opts", &self.opts)
            .finish()
    }
}

/// A successful (2xx) answer whose body passed validation.
#[derive(Debug)]
pub struct Answer<T> {
    pub headers: HeaderMap,
    pub value: T,
}

/// How a call ended when it failed: the stack's own description, plus the raw parts a vendor
/// whose errors say more than an HTTP status may read (a SOAP Fault in a 500 body, a TLS alert
/// deep inside the transport error). Returned by [`HttpStack::call_detailed`].
#[derive(Debug)]
pub struct CallFailure {
    /// What [`HttpStack::call`] would have returned.
    pub error: ConnectorError,
    /// The transport error of the last attempt, when no (complete) answer came.
    pub transport: Option<reqwest::Error>,
    /// The status of the last answer, when one came.
    pub status: Option<u16>,
    /// The body of the last non-2xx (or undecodable 2xx) answer; empty otherwise.
    pub body: Vec<u8>,
    /// The headers of the last answer, when one came (e.g. the `Location` of a redirect the
    /// caller follows itself); empty otherwise.
    pub headers: HeaderMap,
}

impl CallFailure {
    fn new(error: ConnectorError) -> Box<Self> {
        Box::new(CallFailure {
            error,
            transport: None,
            status: None,
            body: Vec::new(),
            headers: HeaderMap::new(),
        })
    }
}

/// One failed attempt as a caller's `is_final` sees it, before the stack decides to retry.
#[derive(Debug, Clone, Copy)]
pub enum FailedAttempt<'a> {
    /// No answer (connection, TLS, timeout, body cut off).
    Transport(&'a reqwest::Error),
    /// A non-2xx answer.
    Status { status: u16, body: &'a [u8] },
}

/// One failed attempt, and whether another may follow.
enum Attempt {
    /// Retry after the backoff delay.
    Retry(Box<CallFailure>),
    /// Wait this long (the vendor's rate-limit reset), then retry.
    RateLimited(Duration, Box<CallFailure>),
    /// Give up now.
    Fail(Box<CallFailure>),
}

impl HttpStack {
    /// Builds the stack. The client uses rustls with the bundled web PKI roots, whose set-up
    /// reads nothing from outside and cannot fail at run time.
    pub fn new(opts: HttpOptions) -> Self {
        let client = Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(opts.user_agent.clone())
            .build()
            .expect("a rustls client with bundled roots always builds");
        HttpStack {
            client,
            opts: std::sync::Arc::new(opts),
        }
    }

    /// The client builder [`HttpStack::new`] starts from (timeouts, user agent), for a connector
    /// that must add TLS material of its own (a client certificate, a private root CA) or a
    /// proxy before handing the client to [`HttpStack::with_client`].
    pub fn client_builder(opts: &HttpOptions) -> reqwest::ClientBuilder {
        Client::builder()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(opts.user_agent.clone())
    }

    /// Builds the stack around a client prepared from [`HttpStack::client_builder`].
    pub fn with_client(client: Client, opts: HttpOptions) -> Self {
        HttpStack {
            client,
            opts: std::sync::Arc::new(opts),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// Sends the request built by `build`, retrying per `retry`, and validates a 2xx body with
    /// `decode`. A body that fails `decode` is retried (for [`Retry::Always`]) and finally
    /// reported as [`ConnectorError::Decode`] naming `what`.
    pub async fn call<T>(
        &self,
        vendor: &'static str,
        what: &str,
        retry: Retry,
        build: impl Fn(&Client) -> RequestBuilder,
        decode: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<Answer<T>, ConnectorError> {
        self.call_detailed(vendor, what, retry, build, decode, |_| false)
            .await
            .map_err(|f| f.error)
    }

    /// [`HttpStack::call`], for vendors whose failures need a closer reading: `is_final` may
    /// declare a failed attempt not worth repeating (a SOAP Fault, a certificate the server
    /// refused), and the failure comes back with the last attempt's raw parts.
    pub async fn call_detailed<T>(
        &self,
        vendor: &'static str,
        what: &str,
        retry: Retry,
        build: impl Fn(&Client) -> RequestBuilder,
        decode: impl Fn(&[u8]) -> Result<T, String>,
        is_final: impl Fn(FailedAttempt<'_>) -> bool,
    ) -> Result<Answer<T>, Box<CallFailure>> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.opts.min_backoff)
            .with_max_delay(self.opts.max_backoff)
            .with_max_times(self.opts.max_attempts.saturating_sub(1))
            .with_jitter()
            .build();
        let mut rate_waits = 0usize;
        loop {
            let outcome = self
                .attempt(vendor, what, retry, &build, &decode, &is_final)
                .await;
            let err = match outcome {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::RateLimited(wait, e)) => {
                    rate_waits += 1;
                    if wait > self.opts.max_rate_limit_wait
                        || rate_waits > self.opts.max_rate_limit_waits
                    {
                        return Err(e);
                    }
                    tracing::info!(
                        vendor,
                        ?wait,
                        "rate limited; waiting for the vendor's reset"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(Attempt::Retry(e)) => e,
            };
            match backoff.next() {
                Some(delay) => {
                    tracing::debug!(vendor, what, error = %err.error, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(err),
            }
        }
    }

    async fn attempt<T>(
        &self,
        vendor: &'static str,
        what: &str,
        retry: Retry,
        build: &impl Fn(&Client) -> RequestBuilder,
        decode: &impl Fn(&[u8]) -> Result<T, String>,
        is_final: &impl Fn(FailedAttempt<'_>) -> bool,
    ) -> Result<Answer<T>, Attempt> {
        let may_repeat = retry == Retry::Always;
        let resp: Response = match build(&self.client).send().await {
            Ok(r) => r,
            Err(e) => {
                let err = ConnectorError::Transport {
                    vendor,
                    detail: transport_detail(&e),
                };
                // A refused connection sent nothing: always safe to try again.
                let repeat =
                    (may_repeat || e.is_connect()) && !is_final(FailedAttempt::Transport(&e));
                let mut failure = CallFailure::new(err);
                failure.transport = Some(e);
                return Err(if repeat {
                    Attempt::Retry(failure)
                } else {
                    Attempt::Fail(failure)
                });
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let err = ConnectorError::Transport {
                    vendor,
                    detail: format!("the answer was cut off: {}", transport_detail(&e)),
                };
                let repeat = may_repeat && !is_final(FailedAttempt::Transport(&e));
                let mut failure = CallFailure::new(err);
                failure.transport = Some(e);
                failure.status = Some(status.as_u16());
                failure.headers = headers;
                return Err(if repeat {
                    Attempt::Retry(failure)
                } else {
                    Attempt::Fail(failure)
                });
            }
        };
        if status.is_success() {
            return match decode(&body) {
                Ok(value) => Ok(Answer { headers, value }),
                Err(detail) => {
                    let err = ConnectorError::Decode {
                        vendor,
                        what: what.to_string(),
                        detail,
                    };
                    let mut failure = CallFailure::new(err);
                    failure.status = Some(status.as_u16());
                    failure.body = body.to_vec();
                    failure.headers = headers.clone();
                    Err(if may_repeat {
                        Attempt::Retry(failure)
                    } else {
                        Attempt::Fail(failure)
                    })
                }
            };
        }
        let detail = error_detail(&body);
        let s = status.as_u16();
        let final_by_caller = is_final(FailedAttempt::Status {
            status: s,
            body: &body,
        });
        let with_parts = |err: ConnectorError| {
            let mut failure = CallFailure::new(err);
            failure.status = Some(s);
            failure.body = body.to_vec();
            failure.headers = headers.clone();
            failure
        };
        match s {
            401 => Err(Attempt::Fail(with_parts(ConnectorError::Unauthorized {
                vendor,
                detail,
            }))),
            403 => Err(Attempt::Fail(with_parts(ConnectorError::Forbidden {
                vendor,
                detail,
            }))),
            404 => Err(Attempt::Fail(with_parts(ConnectorError::NotFound {
                vendor,
                detail,
            }))),
            429 => {
                let wait = rate_limit_wait(&headers).or(self.opts.rate_limit_default_wait);
                let err = with_parts(ConnectorError::RateLimited {
                    vendor,
                    wait: wait.unwrap_or(self.opts.max_backoff),
                });
                // Without a hint, back off like any transient failure.
                Err(match wait {
                    Some(w) => Attempt::RateLimited(w, err),
                    None => Attempt::Retry(err),
                })
            }
            s => {
                let err = with_parts(ConnectorError::Http {
                    vendor,
                    status: s,
                    detail,
                });
                Err(
                    if may_repeat && (s >= 500 || s == 408) && !final_by_caller {
                        Attempt::Retry(err)
                    } else {
                        Attempt::Fail(err)
                    },
                )
            }
        }
    }
}

/// How long the vendor asks us to wait: `Retry-After` (seconds, or an HTTP date), else the
/// seconds-until-reset of `X-RateLimit-Reset` / `X-Rate-Limit-Reset` (header names are
/// case-insensitive). `None` when the vendor gives no hint.
pub fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = chrono::DateTime::parse_from_rfc2822(v) {
            let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
            return Some(delta.to_std().unwrap_or(Duration::ZERO));
        }
    }
    ["x-ratelimit-reset", "x-rate-limit-reset"]
        .into_iter()
        .filter_map(text)
        .find_map(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        // A reset of 0 means "now": wait a moment so the new window has opened.
        .map(|s| Duration::from_secs_f64(s.max(0.2)))
}

/// A short, credential-free description of a transport failure.
fn transport_detail(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut parts = Vec::new();
    if e.is_timeout() {
        parts.push("timed out".to_string());
    } else if e.is_connect() {
        parts.push("connection failed".to_string());
    }
    // The innermost causes say what actually happened (refused, reset, certificate...). The
    // URL is left out: it may carry a query the vendor considers sensitive.
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(
            if e.is_body() {
                "the body could not be read"
            } else {
                "the request failed"
            }
            .to_string(),
        );
    }
    parts.join(": ")
}

/// The vendor's own words from an error body: Secure Endpoint's `errors[].details`/
/// `description`, ServiceNow's `error.message`/`detail`, Umbrella's `message`, or the start
/// of the body.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut parts: Vec<String> = Vec::new();
        if let Some(errors) = v.get("errors").and_then(|e| e.as_array()) {
            for e in errors {
                match e.get("details").and_then(|d| d.as_array()) {
                    Some(details) if !details.is_empty() => parts.extend(
                        details
                            .iter()
                            .filter_map(|d| d.as_str().map(str::to_string)),
                    ),
                    _ => parts.extend(
                        e.get("description")
                            .and_then(|d| d.as_str())
                            .map(str::to_string),
                    ),
                }
            }
        }
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            for key in ["message", "detail"] {
                if let Some(s) = err.get(key).and_then(|m| m.as_str())
                    && !s.is_empty()
                {
                    parts.push(s.to_string());
                }
            }
        }
        if parts.is_empty()
            && let Some(s) = v.get("message").and_then(|m| m.as_str())
        {
            parts.push(s.to_string());
        }
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty answer".to_string();
    }
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn rate_limit_wait_reads_every_spelling() {
        assert_eq!(
            rate_limit_wait(&headers(&[("Retry-After", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            rate_limit_wait(&headers(&[("X-RateLimit-Reset", "12")])),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            rate_limit_wait(&headers(&[("x-rate-limit-reset", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            rate_limit_wait(&headers(&[("X-RateLimit-Remaining", "0")])),
            None
        );
        assert_eq!(rate_limit_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn error_detail_reads_vendor_envelopes() {
        let se = br#"{"version":"v1.0.0","data":{},"errors":[{"error_code":401,"description":"Unauthorized","details":["Unknown API key or Client ID"]}]}"#;
        assert_eq!(error_detail(se), "Unknown API key or Client ID");
        let snow = br#"{"error":{"message":"No Record found","detail":"Record doesn't exist or ACL restricts the record retrieval"},"status":"failure"}"#;
        assert_eq!(
            error_detail(snow),
            "No Record found; Record doesn't exist or ACL restricts the record retrieval"
        );
        assert_eq!(error_detail(b""), "empty answer");
        assert_eq!(
            error_detail(b"<html>Bad gateway</html>"),
            "<html>Bad gateway</html>"
        );
    }
}
