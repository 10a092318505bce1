//! The Cisco XDR emulator (`VENDOR-APIS.md` section 5): the IROH OAuth2 token endpoint and
//! the CTIA incident API, on their own plain-HTTP port, one XDR organisation per tenant.
//!
//! - **Tokens**: `POST /iroh/oauth2/token` with HTTP Basic `client_id:client_secret` and the
//!   form `grant_type=client_credentials` answers `{"access_token","token_type":"bearer",
//!   "expires_in":600,"scope"}`; a bad client is 401 `invalid_client`, a missing or other
//!   grant 400. Tokens expire after [`XdrConfig::token_ttl`] (600 s, settable for tests).
//! - **Incidents**: `POST /ctia/incident` (201), `GET /ctia/incident/{id}`, `PATCH
//!   /ctia/incident/{id}` and `GET /ctia/incident/external_id/{external_id}` (a list), each
//!   with a valid bearer token (401 otherwise) and within the token's organisation (another
//!   organisation's incident is 404, as if absent).
//! - **Strict like CTIA's schema**: a missing required key (`confidence`, `status`,
//!   `incident_time.opened`), a key the schema does not know, a value outside an enum
//!   (status, confidence, severity, tlp) or a `type` other than `incident` is 400 with
//!   `{"errors":{"<key>": "<problem>"}}`; `id` and `type` cannot be patched.
//! - **Hostile on request**: injected 429/500/503 (nothing written), slow, dropped and
//!   truncated answers, and commit-then-drop (the write is saved, the connection closed with
//!   no answer) on CTIA requests; token requests meet none.
//! - **Witness**: [`XdrCounters`]: incidents created, creates refused, status PATCHes applied
//!   by status, and creates whose external id an incident of the organisation already
//!   carried (`duplicates_by_external_id`, which a correct client keeps at 0).

use crate::RequestCounters;
use crate::net::{self, Conn, KillListener};
use crate::state::BodyFault;
use crate::world::purpose_rng;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How to run the XDR emulator (part of [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct XdrConfig {
    /// Serve it at all (default true). Off: no port, no endpoints entry.
    pub enabled: bool,
    /// Lifetime of access tokens (`expires_in`; default 600 s, as the real service).
    pub token_ttl: Duration,
    /// Fault rates at start (all 0 by default).
    pub faults: XdrFaults,
}

impl Default for XdrConfig {
    fn default() -> Self {
        XdrConfig {
            enabled: true,
            token_ttl: Duration::from_secs(600),
            faults: XdrFaults::default(),
        }
    }
}

/// Fault rates of the XDR emulator: each the probability (0..=1) that one CTIA request meets
/// that fault (token requests meet none).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct XdrFaults {
    /// 429 `{"message":"Too Many Requests"}`, no rate headers; nothing is written.
    pub rate_429: f64,
    /// 500; nothing is written.
    pub rate_500: f64,
    /// 503; nothing is written.
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

crate::state::seven_fault_rates!(XdrFaults, rate_commit_drop);

/// A tenant's XDR API client (part of [`XdrEndpoints`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct XdrClientCreds {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
}

/// The XDR part of [`crate::Endpoints`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct XdrEndpoints {
    /// `http://127.0.0.1:P+6/iroh/oauth2/token`.
    pub token_url: String,
    /// `http://127.0.0.1:P+6`: routes under `/ctia/`.
    pub ctia_url: String,
    /// One API client (and organisation) per tenant.
    pub clients: Vec<XdrClientCreds>,
}

/// Counters of the XDR emulator (`xdr` in `GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct XdrCounters {
    /// Answers by status (a commit-drop has none and is counted in `faults.commit_drop`).
    pub requests: RequestCounters,
    pub tokens_issued: u64,
    /// Token requests refused (bad client, bad grant).
    pub tokens_refused: u64,
    /// CTIA requests refused with 401 (no, unknown or expired token).
    pub unauthorized: u64,
    /// Incidents stored by `POST /ctia/incident` (whether or not the answer arrived).
    pub incidents_created: u64,
    /// Creates refused with 400 by the schema checks.
    pub creates_refused: u64,
    /// PATCHes refused with 400.
    pub patches_refused: u64,
    /// PATCHes applied (whatever they changed).
    pub patches_applied: u64,
    /// PATCHes applied that carried a `status`, by that status.
    pub status_patches: BTreeMap<String, u64>,
    /// Creates whose external id an incident of the organisation already carried: a
    /// duplicate XDR incident (CTIA does not refuse it). A correct client keeps it at 0.
    pub duplicates_by_external_id: u64,
    /// Incidents held now, per tenant.
    pub incidents_by_tenant: BTreeMap<String, u64>,
    pub faults: XdrFaultCounters,
}

/// Faults actually applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct XdrFaultCounters {
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

/// CTIM incident statuses.
const STATUSES: [&str; 8] = [
    "New",
    "Open",
    "Hold",
    "Containment Achieved",
    "Restoration Achieved",
    "Incident Reported",
    "Closed",
    "Rejected",
];
const CONFIDENCES: [&str; 6] = ["Info", "Low", "Medium", "High", "None", "Unknown"];
const SEVERITIES: [&str; 7] = [
    "Info", "Low", "Medium", "High", "Critical", "None", "Unknown",
];
const TLPS: [&str; 4] = ["red", "amber", "green", "white"];
/// Keys of a CTIM incident a client may write; any other is `disallowed-key`.
const KEYS: [&str; 22] = [
    "type",
    "source",
    "source_uri",
    "title",
    "description",
    "short_description",
    "severity",
    "tlp",
    "confidence",
    "status",
    "incident_time",
    "external_ids",
    "external_references",
    "assignees",
    "categories",
    "discovery_method",
    "intended_effect",
    "language",
    "revision",
    "timestamp",
    "schema_version",
    "promotion_method",
];
const REFERENCE_KEYS: [&str; 5] = ["source_name", "description", "url", "hashes", "external_id"];
const TIME_KEYS: [&str; 7] = [
    "opened",
    "discovered",
    "reported",
    "remediated",
    "closed",
    "rejected",
    "first_malicious_action",
];
/// The CTIM version the emulator stamps on what it stores.
const SCHEMA_VERSION: &str = "1.3.9";

struct Client {
    tenant: String,
    client_id: String,
    client_secret: String,
}

struct Token {
    org: usize,
    expires: Instant,
}

struct Stored {
    org: usize,
    doc: Map<String, Value>,
}

/// The emulator's state, behind one lock never held across an await.
pub(crate) struct XdrState {
    clients: Vec<Client>,
    tokens: HashMap<String, Token>,
    /// Incidents by short id, in creation order.
    incidents: Vec<(String, Stored)>,
    by_id: HashMap<String, usize>,
    pub token_ttl: Duration,
    pub faults: XdrFaults,
    fault_rng: ChaCha8Rng,
    id_rng: ChaCha8Rng,
    pub counters: XdrCounters,
}

impl XdrState {
    /// Makes every token invalid, as if they had all expired; returns how many there were.
    pub fn expire_tokens(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        n
    }

    fn count(&mut self, status: u16) {
        self.counters.requests.total += 1;
        *self
            .counters
            .requests
            .by_status
            .entry(status.to_string())
            .or_default() += 1;
    }

    /// Every incident as stored (oldest first), with its tenant; one tenant's when named.
    pub fn dump(&self, tenant: Option<&str>) -> Vec<Value> {
        self.incidents
            .iter()
            .filter(|(_, s)| tenant.is_none_or(|t| self.clients[s.org].tenant == t))
            .map(|(_, s)| {
                let mut doc = s.doc.clone();
                doc.insert(
                    "_tenant".into(),
                    Value::String(self.clients[s.org].tenant.clone()),
                );
                Value::Object(doc)
            })
            .collect()
    }
}

/// What the server and the control API share.
pub(crate) struct Xdr {
    pub endpoints: XdrEndpoints,
    pub base_url: String,
    state: Mutex<XdrState>,
    pub shutdown: CancellationToken,
}

impl Xdr {
    pub fn new(
        cfg: &XdrConfig,
        seed: u64,
        tenants: &[String],
        base_url: String,
        shutdown: CancellationToken,
    ) -> Xdr {
        let mut creds_rng = purpose_rng(seed, b"xdr-cred", 0);
        let clients: Vec<Client> = tenants
            .iter()
            .map(|t| {
                let id: u64 = creds_rng.random();
                let secret: [u8; 24] = creds_rng.random();
                Client {
                    tenant: t.clone(),
                    client_id: format!("client-{id:016x}"),
                    client_secret: hex::encode(secret),
                }
            })
            .collect();
        let endpoints = XdrEndpoints {
            token_url: format!("{base_url}/iroh/oauth2/token"),
            ctia_url: base_url.clone(),
            clients: clients
                .iter()
                .map(|c| XdrClientCreds {
                    tenant: c.tenant.clone(),
                    client_id: c.client_id.clone(),
                    client_secret: c.client_secret.clone(),
                })
                .collect(),
        };
        Xdr {
            endpoints,
            base_url,
            state: Mutex::new(XdrState {
                clients,
                tokens: HashMap::new(),
                incidents: Vec::new(),
                by_id: HashMap::new(),
                token_ttl: cfg.token_ttl,
                faults: crate::state::sanitise(cfg.faults.clone()),
                fault_rng: purpose_rng(seed, b"xdr-flts", 0),
                id_rng: purpose_rng(seed, b"xdr-ids_", 0),
                counters: XdrCounters::default(),
            }),
            shutdown,
        }
    }

    /// The state, even if a panicking handler poisoned the lock.
    pub fn lock(&self) -> MutexGuard<'_, XdrState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn counters(&self) -> XdrCounters {
        let st = self.lock();
        let mut c = st.counters.clone();
        c.incidents_by_tenant = st.clients.iter().map(|cl| (cl.tenant.clone(), 0)).collect();
        for (_, s) in &st.incidents {
            *c.incidents_by_tenant
                .entry(st.clients[s.org].tenant.clone())
                .or_default() += 1;
        }
        c
    }
}

/// Binds the emulator's port.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<(KillListener, SocketAddr)> {
    net::bind_killable(addr, "XDR").await
}

/// Serves until shutdown.
pub(crate) async fn serve(xdr: Arc<Xdr>, listener: KillListener) {
    let stop = xdr.shutdown.clone();
    let app = Router::new().fallback(handle).with_state(xdr);
    if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("sim: XDR server stopped: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Answers.

fn answer(status: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn schema_error(key: &str, problem: String) -> Response {
    answer(
        StatusCode::BAD_REQUEST,
        &json!({
            "errors": { key: problem },
            "type": "compojure.api.exception/request-validation",
            "coercion": "schema",
            "in": ["request", "body-params"],
        }),
    )
}

fn unauthorized(description: &str) -> Response {
    answer(
        StatusCode::UNAUTHORIZED,
        &json!({"error": "invalid_token", "error_description": description}),
    )
}

fn not_found(id: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        &json!({"error": "not_found", "message": format!("The incident {id} does not exist")}),
    )
}

fn one_of(allowed: &[&str], given: &Value) -> String {
    let set: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!("(not (#{{{}}} {given}))", set.join(" "))
}

/// Checks an incident body (a whole one for a create, the members given for a patch):
/// the schema's first complaint as `(key, problem)`.
fn validate(body: &Map<String, Value>, create: bool) -> Result<(), (String, String)> {
    for key in body.keys() {
        if !KEYS.contains(&key.as_str()) {
            let problem = if create || key != "id" {
                "disallowed-key"
            } else {
                "the id of an incident cannot be changed"
            };
            return Err((key.clone(), problem.into()));
        }
    }
    if create {
        for key in ["confidence", "status", "incident_time"] {
            if !body.contains_key(key) {
                return Err((key.into(), "missing-required-key".into()));
            }
        }
    } else if body.contains_key("type") {
        return Err((
            "type".into(),
            "the type of an incident cannot be changed".into(),
        ));
    }
    let enum_check = |key: &str, allowed: &[&str]| -> Result<(), (String, String)> {
        match body.get(key) {
            None => Ok(()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
            Some(v) => Err((key.into(), one_of(allowed, v))),
        }
    };
    enum_check("status", &STATUSES)?;
    enum_check("confidence", &CONFIDENCES)?;
    enum_check("severity", &SEVERITIES)?;
    enum_check("tlp", &TLPS)?;
    enum_check("type", &["incident"])?;
    for key in ["title", "description", "short_description", "source"] {
        if let Some(v) = body.get(key)
            && !v.is_string()
        {
            return Err((
                key.into(),
                format!("(not (instance? java.lang.String {v}))"),
            ));
        }
    }
    if let Some(t) = body.get("incident_time") {
        let Value::Object(t) = t else {
            return Err(("incident_time".into(), "(not (map? a-map))".into()));
        };
        if !t.contains_key("opened") {
            return Err(("incident_time.opened".into(), "missing-required-key".into()));
        }
        for (k, v) in t {
            if !TIME_KEYS.contains(&k.as_str()) {
                return Err((format!("incident_time.{k}"), "disallowed-key".into()));
            }
            let ok = v
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok());
            if !ok {
                return Err((
                    format!("incident_time.{k}"),
                    format!("(not (instance? java.util.Date {v}))"),
                ));
            }
        }
    }
    if let Some(ids) = body.get("external_ids") {
        let ok = ids
            .as_array()
            .is_some_and(|a| a.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())));
        if !ok {
            return Err((
                "external_ids".into(),
                "[(not (instance? java.lang.String a-string))]".into(),
            ));
        }
    }
    if let Some(refs) = body.get("external_references") {
        let Some(refs) = refs.as_array() else {
            return Err((
                "external_references".into(),
                "(not (sequential? a-list))".into(),
            ));
        };
        for r in refs {
            let Some(r) = r.as_object() else {
                return Err(("external_references".into(), "[(not (map? a-map))]".into()));
            };
            if !r.get("source_name").is_some_and(Value::is_string) {
                return Err((
                    "external_references.source_name".into(),
                    "missing-required-key".into(),
                ));
            }
            if let Some(k) = r.keys().find(|k| !REFERENCE_KEYS.contains(&k.as_str())) {
                return Err((format!("external_references.{k}"), "disallowed-key".into()));
            }
        }
    }
    Ok(())
}

/// The organisation of a bearer token, or why it is refused (the 401's description).
fn organisation(st: &mut XdrState, headers: &HeaderMap) -> Result<usize, &'static str> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return Err("Authorization header missing");
    };
    match st.tokens.get(&token) {
        None => Err("Invalid token"),
        Some(t) if Instant::now() >= t.expires => {
            st.tokens.remove(&token);
            Err("Token expired")
        }
        Some(t) => Ok(t.org),
    }
}

fn token(xdr: &Xdr, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    let mut st = xdr.lock();
    if method != Method::POST {
        st.count(405);
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "invalid_request", "error_description": "Use POST"}),
        );
    }
    let client = net::basic_header(headers).and_then(|(id, secret)| {
        st.clients
            .iter()
            .position(|c| c.client_id == id && c.client_secret == secret)
    });
    let Some(org) = client else {
        st.count(401);
        st.counters.tokens_refused += 1;
        return answer(
            StatusCode::UNAUTHORIZED,
            &json!({"error": "invalid_client", "error_description": "Invalid client credentials"}),
        );
    };
    let form = crate::wire::query_pairs(std::str::from_utf8(body).ok());
    match crate::wire::last_value(&form, "grant_type") {
        Some("client_credentials") => {}
        other => {
            st.count(400);
            st.counters.tokens_refused += 1;
            let (error, description) = match other {
                None => ("invalid_request", "Missing grant_type".to_string()),
                Some(g) => (
                    "unsupported_grant_type",
                    format!("Unsupported grant type {g}"),
                ),
            };
            return answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": error, "error_description": description}),
            );
        }
    }
    let raw: [u8; 32] = st.id_rng.random();
    let access = hex::encode(raw);
    let ttl = st.token_ttl;
    st.tokens.insert(
        access.clone(),
        Token {
            org,
            expires: Instant::now() + ttl,
        },
    );
    st.counters.tokens_issued += 1;
    st.count(200);
    answer(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ttl.as_secs(),
            "scope": "private-intel casebook enrich:read inspect:read",
        }),
    )
}

/// What a CTIA request asks.
enum Route {
    Create,
    ByExternalId(String),
    One(String),
    Unknown,
}

fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/ctia/incident") else {
        return Route::Unknown;
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Route::Create;
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Route::Unknown;
    };
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    if let Some(ext) = rest.strip_prefix("external_id/") {
        return Route::ByExternalId(decode(ext));
    }
    if rest.contains('/') {
        return Route::Unknown;
    }
    Route::One(decode(rest))
}

fn is_write(method: &Method) -> bool {
    method == Method::POST || method == Method::PATCH
}

/// One CTIA operation under the lock: the answer and whether something was written.
fn ctia(
    xdr: &Xdr,
    st: &mut XdrState,
    org: usize,
    method: &Method,
    route: Route,
    body: &[u8],
) -> (Response, bool) {
    let parse_body = |body: &[u8]| match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };
    let malformed = || {
        answer(
            StatusCode::BAD_REQUEST,
            &json!({"errors": {"body": "(not (map? a-map))"}, "message": "Malformed JSON body"}),
        )
    };
    match (route, method.clone()) {
        (Route::Create, Method::POST) => {
            let Some(mut doc) = parse_body(body) else {
                st.counters.creates_refused += 1;
                return (malformed(), false);
            };
            if let Err((key, problem)) = validate(&doc, true) {
                st.counters.creates_refused += 1;
                return (schema_error(&key, problem), false);
            }
            let ids: Vec<String> = doc
                .get("external_ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let duplicate = st.incidents.iter().any(|(_, s)| {
                s.org == org
                    && s.doc
                        .get("external_ids")
                        .and_then(Value::as_array)
                        .is_some_and(|a| {
                            a.iter()
                                .any(|v| v.as_str().is_some_and(|e| ids.iter().any(|i| i == e)))
                        })
            });
            if duplicate {
                st.counters.duplicates_by_external_id += 1;
            }
            let raw: [u8; 16] = st.id_rng.random();
            let h = hex::encode(raw);
            let short = format!(
                "incident-{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            );
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            doc.insert(
                "id".into(),
                Value::String(format!("{}/ctia/incident/{short}", xdr.base_url)),
            );
            doc.insert("type".into(), Value::String("incident".into()));
            doc.insert(
                "schema_version".into(),
                Value::String(SCHEMA_VERSION.into()),
            );
            doc.entry("tlp").or_insert(Value::String("green".into()));
            doc.entry("timestamp").or_insert(Value::String(now));
            doc.insert(
                "owner".into(),
                Value::String(st.clients[org].client_id.clone()),
            );
            doc.insert("groups".into(), json!([format!("org-{org}")]));
            let answer_doc = Value::Object(doc.clone());
            st.by_id.insert(short.clone(), st.incidents.len());
            st.incidents.push((short, Stored { org, doc }));
            st.counters.incidents_created += 1;
            (answer(StatusCode::CREATED, &answer_doc), true)
        }
        (Route::ByExternalId(ext), Method::GET) => {
            let found: Vec<Value> = st
                .incidents
                .iter()
                .filter(|(_, s)| {
                    s.org == org
                        && s.doc
                            .get("external_ids")
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(ext.as_str())))
                })
                .map(|(_, s)| Value::Object(s.doc.clone()))
                .collect();
            (answer(StatusCode::OK, &Value::Array(found)), false)
        }
        (Route::One(id), m) if m == Method::GET || m == Method::PATCH => {
            let Some(&i) = st.by_id.get(&id).filter(|&&i| st.incidents[i].1.org == org) else {
                if m == Method::PATCH {
                    st.counters.patches_refused += 1;
                }
                return (not_found(&id), false);
            };
            if m == Method::GET {
                return (
                    answer(
                        StatusCode::OK,
                        &Value::Object(st.incidents[i].1.doc.clone()),
                    ),
                    false,
                );
            }
            let Some(change) = parse_body(body) else {
                st.counters.patches_refused += 1;
                return (malformed(), false);
            };
            if let Err((key, problem)) = validate(&change, false) {
                st.counters.patches_refused += 1;
                return (schema_error(&key, problem), false);
            }
            let status = change
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string);
            let doc = &mut st.incidents[i].1.doc;
            for (k, v) in change {
                doc.insert(k, v);
            }
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            doc.insert("timestamp".into(), Value::String(now));
            let answer_doc = Value::Object(doc.clone());
            st.counters.patches_applied += 1;
            if let Some(s) = status {
                *st.counters.status_patches.entry(s).or_default() += 1;
            }
            (answer(StatusCode::OK, &answer_doc), true)
        }
        (Route::Unknown, _) => (
            answer(
                StatusCode::NOT_FOUND,
                &json!({"error": "not_found", "message": "No such route"}),
            ),
            false,
        ),
        _ => (
            answer(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method_not_allowed", "message": format!("{method} is not allowed here")}),
            ),
            false,
        ),
    }
}

/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;

async fn handle(
    State(xdr): State<Arc<Xdr>>,
    axum::extract::ConnectInfo(conn): axum::extract::ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        xdr.lock().count(413);
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({"error": "too_large", "message": "The body is too large"}),
        );
    };
    if path == "/iroh/oauth2/token" {
        return token(&xdr, &method, &parts.headers, &body);
    }
    // Authentication first, then the injected faults, as a gateway in front of CTIA would.
    let (org, plan) = {
        let mut st = xdr.lock();
        let org = match organisation(&mut st, &parts.headers) {
            Ok(o) => o,
            Err(why) => {
                st.count(401);
                st.counters.unauthorized += 1;
                return unauthorized(why);
            }
        };
        let rates = st.faults.clone();
        let (plan, commit_drop) = crate::state::draw_faults(&mut st.fault_rng, &rates);
        let f = &mut st.counters.faults;
        if plan.slow.is_some() {
            f.slow += 1;
        }
        match plan.error {
            Some(429) => f.status_429 += 1,
            Some(500) => f.status_500 += 1,
            Some(503) => f.status_503 += 1,
            _ => {}
        }
        (org, (plan, commit_drop))
    };
    let (plan, commit_drop) = plan;
    if let Some(delay) = plan.slow {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = xdr.shutdown.cancelled() => {}
        }
    }
    if let Some(code) = plan.error {
        xdr.lock().count(code);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let message = match code {
            429 => "Too Many Requests",
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        };
        return answer(status, &json!({"message": message}));
    }
    let (resp, written) = {
        let mut st = xdr.lock();
        ctia(&xdr, &mut st, org, &method, route(&path), &body)
    };
    if commit_drop && written && is_write(&method) {
        conn.kill();
        tracing::debug!(peer = %conn.peer, %path, "sim: XDR write committed, answer dropped");
        let mut st = xdr.lock();
        st.counters.faults.commit_drop += 1;
        st.counters.requests.total += 1;
        return resp;
    }
    let status = resp.status();
    let resp = match plan.body {
        Some(fault) if status.is_success() => spoil(&xdr, resp, fault).await,
        _ => resp,
    };
    xdr.lock().count(status.as_u16());
    resp
}

/// Applies a body fault to a successful answer (counted only when there was a body).
async fn spoil(xdr: &Xdr, resp: Response, fault: BodyFault) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"message": "could not buffer the answer"}),
        );
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::from(Bytes::new()));
    }
    {
        let mut st = xdr.lock();
        match fault {
            BodyFault::Drop => st.counters.faults.drop += 1,
            BodyFault::Truncate => st.counters.faults.truncate += 1,
        }
    }
    net::spoiled(parts, bytes, fault)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn the_schema_names_what_is_wrong() {
        let good = json!({"confidence": "High", "status": "New",
                          "incident_time": {"opened": "2026-11-30T09:58:00Z"}});
        assert!(validate(&body(good.clone()), true).is_ok());
        let mut missing = good.clone();
        missing.as_object_mut().map(|m| m.remove("confidence"));
        assert_eq!(
            validate(&body(missing), true).unwrap_err(),
            ("confidence".to_string(), "missing-required-key".to_string())
        );
        let mut bad = good.clone();
        bad["status"] = json!("Done");
        let (key, problem) = validate(&body(bad), true).unwrap_err();
        assert_eq!(key, "status");
        assert!(problem.contains("\"Done\""), "{problem}");
        let mut extra = good.clone();
        extra["colour"] = json!("red");
        assert_eq!(
            validate(&body(extra), true).unwrap_err().1,
            "disallowed-key"
        );
        let no_opened = json!({"confidence": "High", "status": "New", "incident_time": {}});
        assert_eq!(
            validate(&body(no_opened), true).unwrap_err().0,
            "incident_time.opened"
        );
        assert!(validate(&body(json!({"status": "Closed"})), false).is_ok());
        assert!(validate(&body(json!({"type": "incident"})), false).is_err());
        assert!(validate(&body(json!({"id": "x"})), false).is_err());
    }

    #[test]
    fn routes() {
        assert!(matches!(route("/ctia/incident"), Route::Create));
        assert!(matches!(route("/ctia/incident/incident-1"), Route::One(id) if id == "incident-1"));
        assert!(matches!(
            route("/ctia/incident/external_id/socbridge%3Aa%3Aacme%3Aincident%3A4"),
            Route::ByExternalId(e) if e == "socbridge:a:acme:incident:4"
        ));
        assert!(matches!(route("/ctia/judgement"), Route::Unknown));
    }
}
