//! The ServiceNow emulator: one instance shared by every tenant (what an MSSP has), serving
//! the Table API for `incident` and `sys_journal_field` and the OAuth token endpoint on its
//! own port, as `VENDOR-APIS.md` section 4 describes.
//!
//! Like the Secure Endpoint emulator it is hostile on request (injected 429/500/503, slow,
//! dropped and truncated answers, an outage switch, an opt-in rate limit), and it adds the
//! failure a ticketing client fears most: **commit then drop** — the write is saved (and its
//! business rules and webhook run), then the connection is closed without any answer, so the
//! client cannot tell whether it happened and must look before it writes again.
//!
//! It plays the instance's business rule too: with a webhook target set, every saved change
//! is pushed to socbridge (`POST {url}`, JSON, the shared secret in a header), in commit
//! order, a bounded number of attempts each; failures are counted, never retried forever.
//!
//! It is a witness: [`ServiceNowCounters`] says how many tickets were created per
//! `correlation_id` and which user wrote what, counted when the write commits (whether or
//! not the answer reached the client).

mod instance;
mod query;
mod server;
mod webhook;

pub(crate) use server::{bind, serve};
pub(crate) use webhook::worker as webhook_worker;

use crate::RequestCounters;
use crate::world::purpose_rng as rng;
use instance::{Instance, Rules};
use query::Unknown;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The header that carries the webhook's shared secret unless configured otherwise.
pub const DEFAULT_WEBHOOK_HEADER: &str = "X-Socbridge-Secret";

/// How to run the ServiceNow emulator (part of [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct ServiceNowConfig {
    /// Serve it at all (default true). Off: no port, `Endpoints::servicenow` is `None`.
    pub enabled: bool,
    /// Where socbridge listens for the business rule's pushes (`.../hooks/servicenow`); none
    /// by default. Settable later with `POST /_sim/servicenow/webhook`.
    pub webhook_url: Option<String>,
    /// The shared secret sent with every push; generated from the seed when absent (and
    /// listed in the endpoints and the env file either way).
    pub webhook_secret: Option<String>,
    /// Header carrying the secret (default [`DEFAULT_WEBHOOK_HEADER`]).
    pub webhook_header: String,
    /// Attempts per push before it is counted as failed (at least 1; default 3, 200 ms apart).
    pub webhook_attempts: u32,
    /// Fault rates at start (all 0 by default).
    pub faults: ServiceNowFaults,
    /// The instance's rate limit rule; off by default (rate limiting is opt-in per instance).
    pub rate_limit: Option<ServiceNowRateLimit>,
    /// Incidents the instance holds at start, opened by other people (not socbridge's).
    pub initial_incidents: usize,
    /// Accepted `close_code` values; empty accepts anything. Defaults to the instance's
    /// standard choice list (choices vary per instance: `VENDOR-APIS.md` marks them [U]).
    pub close_codes: Vec<String>,
    /// Closed (7) and canceled (8) incidents refuse updates with a 403 ACL exception, as
    /// for an `itil` user on a default instance (default true).
    pub closed_read_only: bool,
    /// `glide.invalid_query.returns_no_rows`: a query term on an unknown field matches
    /// nothing instead of being ignored (default false, as on a real instance).
    pub invalid_query_returns_no_rows: bool,
    /// Lifetime of OAuth access tokens (`expires_in`, default 1799 s).
    pub token_ttl: Duration,
}

impl Default for ServiceNowConfig {
    fn default() -> Self {
        ServiceNowConfig {
            enabled: true,
            webhook_url: None,
            webhook_secret: None,
            webhook_header: DEFAULT_WEBHOOK_HEADER.to_string(),
            webhook_attempts: 3,
            faults: ServiceNowFaults::default(),
            rate_limit: None,
            initial_incidents: 0,
            close_codes: instance::DEFAULT_CLOSE_CODES
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            closed_read_only: true,
            invalid_query_returns_no_rows: false,
            token_ttl: Duration::from_secs(1799),
        }
    }
}

/// Fault rates of the ServiceNow emulator: each the probability (0..=1) that one request
/// (Table API or token endpoint) meets that fault, drawn from a generator fixed by the seed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct ServiceNowFaults {
    /// 429 `Rate limit exceeded` with `Retry-After: 1`; nothing is written.
    pub rate_429: f64,
    /// 500 in the error envelope; nothing is written.
    pub rate_500: f64,
    /// 503 in the error envelope; nothing is written.
    pub rate_503: f64,
    /// Sleep `slow_ms`, then answer normally.
    pub rate_slow: f64,
    pub slow_ms: u64,
    /// A 2xx whose body breaks off (a write has committed).
    pub rate_drop: f64,
    /// A 2xx whose JSON is cut in half (a write has committed).
    pub rate_truncate: f64,
    /// Writes only: commit, then close the connection without any answer.
    pub rate_commit_drop: f64,
}

/// The opt-in rate limit: `limit` requests per user per `window_secs`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowRateLimit {
    pub limit: u64,
    #[serde(default = "default_window")]
    pub window_secs: u64,
}

fn default_window() -> u64 {
    3600
}

/// Where the business rule pushes changes (`POST /_sim/servicenow/webhook` body).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowWebhook {
    pub url: String,
    /// Absent: the current secret stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Absent: the current header name stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// A user of the instance who can log in (Basic, or OAuth password grant).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowUser {
    pub user_name: String,
    pub password: String,
    /// The `sys_user` sys_id (what `caller_id`, `assigned_to` hold).
    pub sys_id: String,
}

/// The OAuth application registry entry (client credentials grant runs as the integration
/// user).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowOAuthClient {
    pub client_id: String,
    pub client_secret: String,
}

/// An assignment group of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowGroup {
    pub name: String,
    pub sys_id: String,
}

/// The ServiceNow part of [`crate::Endpoints`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceNowEndpoints {
    /// `http://127.0.0.1:P+1` (Table API under `/api/now/`, tokens at `/oauth_token.do`).
    pub instance_url: String,
    /// socbridge's user.
    pub integration: ServiceNowUser,
    /// A person working tickets (tests act as the analyst through the same Table API).
    pub analyst: ServiceNowUser,
    pub oauth: ServiceNowOAuthClient,
    pub groups: Vec<ServiceNowGroup>,
    /// The webhook's shared secret at start and the header it travels in.
    pub webhook_secret: String,
    pub webhook_header: String,
}

/// Counters of the ServiceNow emulator (`servicenow` in `GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ServiceNowCounters {
    /// Answers by status (Table API and token endpoint; control requests are not counted; a
    /// commit-drop has no status and is counted in `faults.commit_drop` only).
    pub requests: RequestCounters,
    pub faults: ServiceNowFaultCounters,
    /// Committed writes, all users.
    pub writes: WriteCounters,
    /// Committed writes per `user_name`.
    pub by_user: BTreeMap<String, WriteCounters>,
    /// Incidents created per `correlation_id` (an empty id is not listed): a value above 1
    /// is a duplicate ticket.
    pub tickets_by_correlation_id: BTreeMap<String, u64>,
    /// Incidents and journal entries the instance holds now.
    pub incidents_total: u64,
    pub journal_total: u64,
    pub tokens_issued: u64,
    pub webhook: WebhookCounters,
}

/// Faults actually applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct ServiceNowFaultCounters {
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
    /// Requests refused because the outage switch was on.
    pub outage: u64,
}

/// Committed writes by kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct WriteCounters {
    pub creates: u64,
    /// Updates that saved something.
    pub updates: u64,
    /// Updates that changed nothing (not saved, no webhook).
    pub unchanged: u64,
    pub journal_entries: u64,
    pub deletes: u64,
    /// Writes refused (400/403/404), nothing saved.
    pub refused: u64,
}

/// Webhook pushes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct WebhookCounters {
    /// Changes queued for a push.
    pub queued: u64,
    /// HTTP attempts made.
    pub attempts: u64,
    /// Pushes answered 2xx.
    pub delivered: u64,
    /// Pushes given up after every attempt failed.
    pub failed: u64,
    /// Answers by status (`"error"` for no answer at all).
    pub by_status: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

/// Status codes the instance can answer, listed at 0 until seen (a stable shape).
const STATUSES: [u16; 11] = [200, 201, 204, 400, 401, 403, 404, 405, 429, 500, 503];

/// A rate-limit window of one user.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    start: Instant,
    used: u64,
}

/// An OAuth access token.
#[derive(Clone, Debug)]
struct Token {
    user: usize,
    expires: Instant,
}

/// The fault decisions for one request, drawn up front.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plan {
    pub slow: Option<Duration>,
    pub error: Option<u16>,
    pub body: Option<Spoil>,
    pub commit_drop: bool,
}

/// A fault applied to a 2xx answer after the handler ran: the one the emulators share.
pub(crate) use crate::state::BodyFault as Spoil;

/// Everything mutable, behind one lock (never held across an await).
pub(crate) struct SnState {
    pub inst: Instance,
    pub faults: ServiceNowFaults,
    fault_rng: ChaCha8Rng,
    pub outage: bool,
    pub rate_limit: Option<ServiceNowRateLimit>,
    buckets: HashMap<usize, Bucket>,
    tokens: HashMap<String, Token>,
    refresh: HashMap<String, usize>,
    pub token_ttl: Duration,
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    pub webhook_header: String,
    pub counters: ServiceNowCounters,
    /// When the first ticket of each `correlation_id` was committed (latency benchmarks).
    pub ticket_created: BTreeMap<String, std::time::SystemTime>,
}

/// What the server, the webhook worker and the control API share.
pub(crate) struct Sn {
    pub endpoints: ServiceNowEndpoints,
    pub base_url: String,
    state: Mutex<SnState>,
    pub hooks: mpsc::UnboundedSender<webhook::Job>,
    pub shutdown: CancellationToken,
    pub webhook_attempts: u32,
}

/// A committed change's journal rows, newest per field, for the push.
pub(crate) use instance::Change;

crate::state::seven_fault_rates!(ServiceNowFaults, rate_commit_drop);

/// Wall-clock now as the instance writes times: `YYYY-MM-DD HH:MM:SS`, UTC.
pub(crate) fn now_text() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Sn {
    /// Builds the instance (users, groups, initial incidents) from the seed.
    pub fn new(
        cfg: &ServiceNowConfig,
        seed: u64,
        base_url: String,
        hooks: mpsc::UnboundedSender<webhook::Job>,
        shutdown: CancellationToken,
    ) -> Sn {
        let id_rng = rng(seed, b"sbsim-sn", 1);
        let mut secrets = rng(seed, b"sbsn-key", 0);
        let rules = Rules {
            close_codes: cfg.close_codes.clone(),
            closed_read_only: cfg.closed_read_only,
            unknown: if cfg.invalid_query_returns_no_rows {
                Unknown::NoRows
            } else {
                Unknown::Ignore
            },
        };
        let mut inst = Instance::new(id_rng, rules);
        let oauth = ServiceNowOAuthClient {
            client_id: crate::world::hex_string(&mut secrets, 16),
            client_secret: crate::world::hex_string(&mut secrets, 10),
        };
        let webhook_secret = cfg
            .webhook_secret
            .clone()
            .unwrap_or_else(|| crate::world::hex_string(&mut secrets, 24));
        let user = |i: usize| ServiceNowUser {
            user_name: inst.users[i].user_name.clone(),
            password: inst.users[i].password.clone().unwrap_or_default(),
            sys_id: inst.users[i].sys_id.clone(),
        };
        let endpoints = ServiceNowEndpoints {
            instance_url: base_url.clone(),
            integration: user(instance::INTEGRATION),
            analyst: user(instance::ANALYST),
            oauth,
            groups: inst
                .groups
                .iter()
                .map(|g| ServiceNowGroup {
                    name: g.name.clone(),
                    sys_id: g.sys_id.clone(),
                })
                .collect(),
            webhook_secret: webhook_secret.clone(),
            webhook_header: cfg.webhook_header.clone(),
        };
        // Tickets other people opened: a query that forgets its filter sees them.
        let mut data = rng(seed, b"sbsn-dat", 0);
        let now = now_text();
        for n in 0..cfg.initial_incidents {
            let caller = &inst.users[3 + n % 2].sys_id.clone();
            let body = serde_json::json!({
                "short_description": format!("User cannot reach printer on floor {}", n % 7 + 1),
                "description": "Opened by the service desk.",
                "impact": data.random_range(1..=3u8).to_string(),
                "urgency": data.random_range(1..=3u8).to_string(),
                "category": "hardware",
                "caller_id": caller,
            });
            let body = body.as_object().cloned().unwrap_or_default();
            if let Err(e) = inst.insert(2, &body, &now) {
                tracing::warn!("sim: initial incident refused: {}", e.detail);
            }
        }
        let mut counters = ServiceNowCounters {
            requests: RequestCounters {
                total: 0,
                by_status: STATUSES.iter().map(|s| (s.to_string(), 0)).collect(),
            },
            ..ServiceNowCounters::default()
        };
        counters.incidents_total = inst.incidents.len() as u64;
        let fault_rng = rng(seed, b"sbsnfalt", 2);
        let state = SnState {
            inst,
            faults: crate::state::sanitise(cfg.faults.clone()),
            fault_rng,
            outage: false,
            rate_limit: cfg.rate_limit.clone().filter(|r| r.limit > 0),
            buckets: HashMap::new(),
            tokens: HashMap::new(),
            refresh: HashMap::new(),
            token_ttl: cfg.token_ttl,
            webhook_url: cfg.webhook_url.clone(),
            webhook_secret,
            webhook_header: cfg.webhook_header.clone(),
            counters,
            ticket_created: BTreeMap::new(),
        };
        Sn {
            endpoints,
            base_url,
            state: Mutex::new(state),
            hooks,
            shutdown,
            webhook_attempts: cfg.webhook_attempts.max(1),
        }
    }

    /// The state, even if a panicking handler poisoned the lock.
    pub fn lock(&self) -> MutexGuard<'_, SnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> ServiceNowCounters {
        let st = self.lock();
        let mut c = st.counters.clone();
        c.incidents_total = st.inst.incidents.len() as u64;
        c.journal_total = st.inst.journal.len() as u64;
        c
    }
}

impl SnState {
    /// Draws this request's faults (see [`crate::state::draw_faults`]; the seventh draw is
    /// commit-then-drop).
    pub fn draw(&mut self) -> Plan {
        let (common, commit_drop) = crate::state::draw_faults(&mut self.fault_rng, &self.faults);
        Plan {
            slow: common.slow,
            error: common.error,
            body: common.body,
            commit_drop,
        }
    }

    pub fn count(&mut self, status: u16) {
        let r = &mut self.counters.requests;
        r.total += 1;
        *r.by_status.entry(status.to_string()).or_insert(0) += 1;
    }

    /// Spends one request of `user`'s budget when a limit is on: `Err(seconds until the
    /// window resets, limit)` when it is spent.
    pub fn consume(&mut self, user: usize) -> Result<(), (u64, u64)> {
        let Some(rl) = self.rate_limit.clone() else {
            return Ok(());
        };
        let now = Instant::now();
        let window = Duration::from_secs(rl.window_secs.max(1));
        let b = self.buckets.entry(user).or_insert(Bucket {
            start: now,
            used: 0,
        });
        if now.duration_since(b.start) >= window {
            *b = Bucket {
                start: now,
                used: 0,
            };
        }
        if b.used >= rl.limit {
            let left = (b.start + window).saturating_duration_since(now);
            return Err((
                left.as_secs() + u64::from(left.subsec_nanos() > 0),
                rl.limit,
            ));
        }
        b.used += 1;
        Ok(())
    }

    pub fn set_rate_limit(&mut self, rl: Option<ServiceNowRateLimit>) {
        self.rate_limit = rl.filter(|r| r.limit > 0);
        self.buckets.clear();
    }

    /// Issues an access token (and a refresh token when `refresh`) for `user`.
    pub fn issue(&mut self, user: usize, refresh: bool) -> (String, Option<String>, u64) {
        let access = self.inst.fresh_id() + &self.inst.fresh_id();
        let ttl = self.token_ttl;
        self.tokens.insert(
            access.clone(),
            Token {
                user,
                expires: Instant::now() + ttl,
            },
        );
        let refresh_token = refresh.then(|| {
            let r = self.inst.fresh_id() + &self.inst.fresh_id();
            self.refresh.insert(r.clone(), user);
            r
        });
        self.counters.tokens_issued += 1;
        (access, refresh_token, ttl.as_secs())
    }

    /// The user of a live access token.
    pub fn bearer(&self, token: &str) -> Option<usize> {
        self.tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.user)
    }

    pub fn refresh_user(&self, token: &str) -> Option<usize> {
        self.refresh.get(token).copied()
    }

    /// Every access token stops working (refresh tokens keep working).
    pub fn expire_tokens(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        n
    }

    /// Counts a committed change and queues its push.
    pub fn committed(&mut self, user: usize, change: &Change, sn: &Sn) {
        let name = self.inst.users[user].user_name.clone();
        let journal = change.journal.len() as u64;
        let create = change.operation == "insert";
        for w in [
            &mut self.counters.writes,
            self.counters.by_user.entry(name).or_default(),
        ] {
            if create {
                w.creates += 1;
            } else {
                w.updates += 1;
            }
            w.journal_entries += journal;
        }
        if create {
            let cid = change
                .record
                .get("correlation_id")
                .cloned()
                .unwrap_or_default();
            if !cid.is_empty() {
                self.ticket_created
                    .entry(cid.clone())
                    .or_insert_with(std::time::SystemTime::now);
                *self
                    .counters
                    .tickets_by_correlation_id
                    .entry(cid)
                    .or_insert(0) += 1;
            }
        }
        if let Some(url) = self.webhook_url.clone() {
            let job = webhook::Job {
                url,
                header: self.webhook_header.clone(),
                secret: self.webhook_secret.clone(),
                body: webhook::body(change),
            };
            self.counters.webhook.queued += 1;
            if sn.hooks.send(job).is_err() {
                self.counters.webhook.failed += 1;
                self.counters.webhook.last_error = Some("the push worker has stopped".into());
            }
        }
    }

    /// Counts a write that saved nothing.
    pub fn write_outcome(&mut self, user: usize, outcome: WriteOutcome) {
        let name = self.inst.users[user].user_name.clone();
        for w in [
            &mut self.counters.writes,
            self.counters.by_user.entry(name).or_default(),
        ] {
            match outcome {
                WriteOutcome::Unchanged => w.unchanged += 1,
                WriteOutcome::Refused => w.refused += 1,
                WriteOutcome::Deleted => w.deletes += 1,
            }
        }
    }
}

/// Writes that are not a saved change.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WriteOutcome {
    Unchanged,
    Refused,
    Deleted,
}

/// Applies a webhook setting (`None`: stop pushing). Secret and header left out stay.
pub(crate) fn set_webhook(st: &mut SnState, hook: Option<ServiceNowWebhook>) {
    match hook {
        None => st.webhook_url = None,
        Some(h) => {
            st.webhook_url = Some(h.url);
            if let Some(s) = h.secret {
                st.webhook_secret = s;
            }
            if let Some(name) = h.header {
                st.webhook_header = name;
            }
        }
    }
}

/// Whether a webhook setting can be used: an http(s) URL and a valid header name.
pub(crate) fn webhook_valid(h: &ServiceNowWebhook) -> Result<(), String> {
    let u = url::Url::parse(&h.url).map_err(|e| format!("url '{}' is not a URL: {e}", h.url))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("url '{}' must be http or https", h.url));
    }
    if let Some(name) = &h.header
        && axum::http::HeaderName::from_bytes(name.as_bytes()).is_err()
    {
        return Err(format!("header '{name}' is not a valid header name"));
    }
    if let Some(secret) = &h.secret
        && axum::http::HeaderValue::from_str(secret).is_err()
    {
        return Err("secret must be printable ASCII".into());
    }
    Ok(())
}

/// The current webhook setting, for `GET /_sim/servicenow/webhook`.
pub(crate) fn webhook_setting(st: &SnState) -> serde_json::Value {
    serde_json::json!({
        "url": st.webhook_url,
        "secret": st.webhook_secret,
        "header": st.webhook_header,
    })
}

fn row_json(row: &instance::Row) -> serde_json::Value {
    serde_json::Value::Object(
        row.iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// Every incident as stored, oldest first.
pub(crate) fn dump_incidents(st: &SnState) -> Vec<serde_json::Value> {
    st.inst.incidents.iter().map(row_json).collect()
}

/// Every journal entry, oldest first.
pub(crate) fn dump_journal(st: &SnState) -> Vec<serde_json::Value> {
    st.inst.journal.iter().map(|e| row_json(&e.row)).collect()
}
