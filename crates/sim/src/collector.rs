//! A SIEM's HTTP event collector taking OCSF NDJSON (what a Splunk HEC, an Elastic or a data
//! lake ingest endpoint does), for socbridge's SIEM sinks: `POST /services/collector/ocsf`.
//!
//! Strict like a collector: a bearer token (401 otherwise), `Content-Type:
//! application/x-ndjson` (415 otherwise), and every line a JSON object with `class_uid` and
//! `metadata.uid` (400 naming the first bad line; nothing of that batch is kept). A batch is
//! kept whole or not at all.
//!
//! Counters make it a witness of at-least-once delivery: lines received, distinct events (by
//! `class_uid`, `metadata.uid`, `activity_id` and `time`, so a changed incident is a new event
//! and a resent line is not), replays, per class, and requests whose `X-Request-Id` was seen
//! before. Faults are drawn per request from the seed like the other emulators': 429 with
//! `Retry-After`, 500, 503, slow answers, a dropped or truncated 2xx body (the batch is kept),
//! and commit-then-drop (the batch is kept, the connection closed without an answer: the
//! classic case of at-least-once).
//!
//! It runs on a port of its own and can be stopped and started again on the same address with
//! its counters kept ([`CollectorHandle::stop`], [`CollectorHandle::restart`]), as a collector
//! that goes down and comes back. The control API is under `/_sim/collector/` on the same port.

use crate::net::{self, Conn, KillListener};
use crate::state::BodyFault;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where batches are POSTed.
pub const COLLECTOR_PATH: &str = "/services/collector/ocsf";
/// The environment variable [`CollectorHandle::write_sink_config`] names for the token.
pub const SINK_TOKEN_ENV: &str = "SOCBRIDGE_SIEM_TOKEN";
/// Largest batch accepted (413 above).
const MAX_BODY: usize = 64 << 20;
/// Lines kept for [`CollectorHandle::lines`]: a bound on memory, far above any test.
const MAX_KEPT_LINES: usize = 2_000_000;

/// How to start the collector.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Port 0 picks any free port.
    pub listen: SocketAddr,
    /// The bearer token clients must send.
    pub token: String,
    /// Fixes the fault draws.
    pub seed: u64,
    pub faults: CollectorFaults,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "collector-token".into(),
            seed: 1,
            faults: CollectorFaults::default(),
        }
    }
}

/// Fault rates (probabilities per batch POST), the same set as the ServiceNow emulator's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct CollectorFaults {
    /// 429 with `Retry-After: 1`; nothing is kept.
    pub rate_429: f64,
    /// 500; nothing is kept.
    pub rate_500: f64,
    /// 503; nothing is kept.
    pub rate_503: f64,
    /// Sleep `slow_ms`, then answer normally.
    pub rate_slow: f64,
    pub slow_ms: u64,
    /// A 2xx whose body breaks off (the batch is kept).
    pub rate_drop: f64,
    /// A 2xx whose JSON is cut in half (the batch is kept).
    pub rate_truncate: f64,
    /// Keep the batch, then close the connection without any answer.
    pub rate_commit_drop: f64,
}

crate::state::seven_fault_rates!(CollectorFaults, rate_commit_drop);

/// What the collector received (`GET /_sim/collector/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorCounters {
    /// Batch POSTs answered, by status (a commit-drop has no status: see `faults`).
    pub requests: BTreeMap<String, u64>,
    pub faults: CollectorFaultCounters,
    /// Batches kept.
    pub batches: u64,
    /// Lines in kept batches (a resent line counts again).
    pub lines_received: u64,
    /// Distinct events among them.
    pub distinct_events: u64,
    /// Lines whose event was already received.
    pub replays: u64,
    /// Kept batches whose `X-Request-Id` had been kept before.
    pub request_ids_repeated: u64,
    /// Batches refused as malformed (400).
    pub refused_batches: u64,
    /// Per `class_uid`.
    pub by_class: BTreeMap<String, ClassCounters>,
}

/// Lines of one OCSF class.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassCounters {
    pub lines: u64,
    pub distinct: u64,
    pub replays: u64,
}

/// Faults applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CollectorFaultCounters {
    #[serde(rename = "429")]
    pub status_429: u64,
    #[serde(rename = "500")]
    pub status_500: u64,
    #[serde(rename = "503")]
    pub status_503: u64,
    pub slow: u64,
    pub drop: u64,
    pub truncate: u64,
    pub commit_drop: u64,
}

struct ColState {
    faults: CollectorFaults,
    rng: ChaCha8Rng,
    counters: CollectorCounters,
    seen: HashSet<(i64, String, i64, i64)>,
    request_ids: HashSet<String>,
    lines: Vec<Value>,
}

struct Col {
    token: String,
    state: Mutex<ColState>,
}

impl Col {
    fn lock(&self) -> MutexGuard<'_, ColState> {
        self.state.lock().expect("collector state lock poisoned")
    }
}

/// A running (or stopped) collector.
pub struct CollectorHandle {
    col: Arc<Col>,
    addr: SocketAddr,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

/// Starts the collector; returns once it listens.
pub async fn start(cfg: CollectorConfig) -> io::Result<CollectorHandle> {
    let col = Arc::new(Col {
        token: cfg.token,
        state: Mutex::new(ColState {
            faults: crate::state::sanitise(cfg.faults),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x0c5f_c011_ec70),
            counters: CollectorCounters::default(),
            seen: HashSet::new(),
            request_ids: HashSet::new(),
            lines: Vec::new(),
        }),
    });
    let (listener, addr) = net::bind(cfg.listen).await?;
    let mut h = CollectorHandle {
        col,
        addr,
        running: None,
    };
    h.serve(listener);
    tracing::info!(url = %h.url(), "sim: SIEM collector listening");
    Ok(h)
}

impl CollectorHandle {
    /// The URL batches are POSTed to.
    pub fn url(&self) -> String {
        format!("http://{}{COLLECTOR_PATH}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn token(&self) -> &str {
        &self.col.token
    }

    pub fn counters(&self) -> CollectorCounters {
        self.col.lock().counters.clone()
    }

    /// Every line of every kept batch, in arrival order (replays included).
    pub fn lines(&self) -> Vec<Value> {
        self.col.lock().lines.clone()
    }

    /// Replaces the fault rates (clamped into 0..=1, NaN is 0).
    pub fn set_faults(&self, f: CollectorFaults) {
        self.col.lock().faults = crate::state::sanitise(f);
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let app = Router::new()
            .route("/_sim/collector/counters", axum::routing::get(counters))
            .route(
                "/_sim/collector/faults",
                axum::routing::get(get_faults).post(set_faults),
            )
            .fallback(handle)
            .with_state(self.col.clone());
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(
                KillListener::new(listener, "SIEM collector"),
                app.into_make_service_with_connect_info::<Conn>(),
            )
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
            if let Err(e) = served {
                tracing::error!("sim: SIEM collector stopped: {e}");
            }
        });
        self.running = Some((stop, task));
    }

    /// Stops listening (new connections are refused) and closes open ones; counters stay.
    pub async fn stop(&mut self) {
        if let Some((stop, mut task)) = self.running.take() {
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }

    /// Listens again on the same address, with the same counters and faults.
    pub async fn restart(&mut self) -> io::Result<()> {
        if self.running.is_some() {
            return Ok(());
        }
        let (listener, _) = net::bind(self.addr).await?;
        self.serve(listener);
        Ok(())
    }

    /// Appends a `[[sinks]]` section named `name` pointing at this collector to the socbridge
    /// config at `config` (as written by [`crate::SimHandle::write_config`]), commented out
    /// unless `active`, and the token as `SOCBRIDGE_SIEM_TOKEN` to the `socbridge.env` beside
    /// it (mode 0600 kept).
    pub fn write_sink_config(
        &self,
        config: &std::path::Path,
        name: &str,
        active: bool,
    ) -> io::Result<()> {
        use std::io::Write as _;
        let section = format!(
            "[[sinks]]\nname = \"{name}\"\nurl = \"{}\"\ntoken_env = \"{SINK_TOKEN_ENV}\"\n",
            self.url()
        );
        let section = if active {
            section
        } else {
            section.lines().map(|l| format!("# {l}\n")).collect()
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(config)?;
        write!(
            f,
            "\n# The emulated SIEM collector: new findings and incident changes as OCSF NDJSON.\n\
             {section}"
        )?;
        let env = config
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(crate::files::ENV_FILE);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(env)?;
        writeln!(f, "{SINK_TOKEN_ENV}={}", self.col.token)
    }

    pub async fn shutdown(mut self) {
        self.stop().await;
    }
}

impl Drop for CollectorHandle {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.running {
            stop.cancel();
        }
    }
}

fn answer(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn refuse(col: &Col, status: StatusCode, message: String) -> Response {
    col.lock().count(status.as_u16());
    answer(status, &json!({ "error": message }))
}

impl ColState {
    fn count(&mut self, status: u16) {
        *self
            .counters
            .requests
            .entry(status.to_string())
            .or_insert(0) += 1;
    }

    /// Keeps a checked batch and counts its events.
    fn keep(&mut self, request_id: Option<&str>, events: Vec<(Value, (i64, String, i64, i64))>) {
        let c = &mut self.counters;
        c.batches += 1;
        if let Some(id) = request_id
            && !self.request_ids.insert(id.to_string())
        {
            c.request_ids_repeated += 1;
        }
        for (doc, key) in events {
            let class = c.by_class.entry(key.0.to_string()).or_default();
            c.lines_received += 1;
            class.lines += 1;
            if self.seen.insert(key) {
                c.distinct_events += 1;
                class.distinct += 1;
            } else {
                c.replays += 1;
                class.replays += 1;
            }
            if self.lines.len() < MAX_KEPT_LINES {
                self.lines.push(doc);
            }
        }
    }
}

/// A line's event key, or why the line is refused.
fn event_key(doc: &Value) -> Result<(i64, String, i64, i64), &'static str> {
    let obj = doc.as_object().ok_or("not a JSON object")?;
    let class = obj
        .get("class_uid")
        .and_then(Value::as_i64)
        .ok_or("no integer `class_uid`")?;
    let uid = obj
        .get("metadata")
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or("no string `metadata.uid`")?;
    let activity = obj.get("activity_id").and_then(Value::as_i64).unwrap_or(0);
    let time = obj.get("time").and_then(Value::as_i64).unwrap_or(0);
    Ok((class, uid.to_string(), activity, time))
}

/// Checks every line of a body: the events, or a message naming the first bad line.
#[allow(clippy::type_complexity)]
fn check_batch(body: &[u8]) -> Result<Vec<(Value, (i64, String, i64, i64))>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let mut events = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let doc: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        let key = event_key(&doc).map_err(|why| format!("line {}: {why}", n + 1))?;
        events.push((doc, key));
    }
    if events.is_empty() {
        return Err("the batch holds no line".into());
    }
    Ok(events)
}

fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    // Constant-time enough for an emulator: compare whole strings of equal length only.
    scheme.eq_ignore_ascii_case("bearer") && given.trim().as_bytes() == token.as_bytes()
}

async fn handle(
    State(col): State<Arc<Col>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    if parts.uri.path() != COLLECTOR_PATH {
        return refuse(
            &col,
            StatusCode::NOT_FOUND,
            format!(
                "no collector at {}; POST to {COLLECTOR_PATH}",
                parts.uri.path()
            ),
        );
    }
    if parts.method != Method::POST {
        return refuse(
            &col,
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is accepted".into(),
        );
    }
    if !bearer_ok(&parts.headers, &col.token) {
        let mut r = refuse(
            &col,
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required".into(),
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    let ndjson = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-ndjson"));
    if !ndjson {
        return refuse(
            &col,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-ndjson".into(),
        );
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refuse(
            &col,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a batch is at most {MAX_BODY} bytes"),
        );
    };
    let plan = {
        let mut st = col.lock();
        let faults = st.faults.clone();
        let (common, commit_drop) = crate::state::draw_faults(&mut st.rng, &faults);
        let f = &mut st.counters.faults;
        if common.slow.is_some() {
            f.slow += 1;
        }
        match common.error {
            Some(429) => f.status_429 += 1,
            Some(500) => f.status_500 += 1,
            Some(503) => f.status_503 += 1,
            _ => {}
        }
        (common, commit_drop)
    };
    let (common, commit_drop) = plan;
    if let Some(delay) = common.slow {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = common.error {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut r = refuse(&col, status, format!("injected fault {code}"));
        if code == 429 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return r;
    }
    let events = match check_batch(&body) {
        Ok(e) => e,
        Err(message) => {
            col.lock().counters.refused_batches += 1;
            return refuse(&col, StatusCode::BAD_REQUEST, message);
        }
    };
    let n = events.len();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok());
    let mut st = col.lock();
    st.keep(request_id, events);
    if commit_drop {
        // Kept; the answer never leaves.
        conn.kill();
        st.counters.faults.commit_drop += 1;
        return answer(StatusCode::OK, &json!({}));
    }
    st.count(200);
    let body = json!({ "text": "Success", "code": 0, "accepted": n }).to_string();
    match common.body {
        Some(fault) => {
            match fault {
                BodyFault::Drop => st.counters.faults.drop += 1,
                BodyFault::Truncate => st.counters.faults.truncate += 1,
            }
            drop(st);
            let (parts, _) = answer(StatusCode::OK, &json!({})).into_parts();
            net::spoiled(parts, Bytes::from(body), fault)
        }
        None => {
            drop(st);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body),
            )
                .into_response()
        }
    }
}

async fn counters(State(col): State<Arc<Col>>) -> Response {
    let c = col.lock().counters.clone();
    answer(StatusCode::OK, &json!(c))
}

async fn get_faults(State(col): State<Arc<Col>>) -> Response {
    let f = col.lock().faults.clone();
    answer(StatusCode::OK, &json!(f))
}

/// `POST /_sim/collector/faults`: replaces the rates (members left out are 0).
async fn set_faults(State(col): State<Arc<Col>>, body: Bytes) -> Response {
    let f: CollectorFaults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("invalid JSON body: {e}") }),
            );
        }
    };
    if !crate::state::faults_valid(&f) {
        return answer(
            StatusCode::BAD_REQUEST,
            &json!({ "error": "every rate_* must be a probability between 0 and 1" }),
        );
    }
    col.lock().faults = f.clone();
    answer(StatusCode::OK, &json!(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_line_is_named() {
        let ok =
            b"{\"class_uid\":2004,\"metadata\":{\"uid\":\"1\"},\"activity_id\":1,\"time\":5}\n";
        assert_eq!(check_batch(ok).unwrap().len(), 1);
        let e = check_batch(b"{\"class_uid\":2004,\"metadata\":{\"uid\":\"1\"}}\n{\"x\":1}\n")
            .unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("class_uid"), "{e}");
        let e = check_batch(b"{\"class_uid\":2004,\"metadata\":{}}\n").unwrap_err();
        assert!(e.contains("metadata.uid"), "{e}");
        let e = check_batch(b"not json\n").unwrap_err();
        assert!(e.starts_with("line 1: not JSON"), "{e}");
        assert!(check_batch(b"\n\n").is_err());
    }
}
