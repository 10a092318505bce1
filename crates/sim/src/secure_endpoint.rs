//! The Secure Endpoint v1 routes: events, event types, computers (with group moves and
//! isolation), groups, and the gate every `/v1` request passes first.
//!
//! The gate runs, in order: HTTP Basic authentication (401 in the vendor's exact body), the
//! per-client rate limit (429 without `Retry-After`), then the injected faults drawn for this
//! request. Error faults (429/500/503) answer before the handler runs, so nothing changes;
//! body faults (drop/truncate) spoil the answer after the handler ran, so a mutation did
//! happen: the ambiguous failure a client must look up rather than blindly retry.
//!
//! An admitted `GET /v1/events` (a poll) is in flight for its API client from then until the
//! gate returns its answer, after the answer delay a test may have set: the overlap witness
//! (`crate::polls`) counts a second poll of the same client arriving meanwhile.

use crate::net;
use crate::state::{BodyFault, FaultPlan, RateInfo, Shared, StoredEvent};
use crate::wire::{self, RequestUrl};
use crate::world::{Computer, IsolationStatus, World};
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Router, routing};
use rand::Rng;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// What the gate learned about a request, for the handler.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    pub tenant: usize,
    pub plan: FaultPlan,
    pub url: RequestUrl,
}

/// The `/v1` router with its gate.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/version", get(version))
        .route("/v1/event_types", get(event_types))
        .route("/v1/events", get(events))
        .route("/v1/computers", get(computers))
        .route("/v1/computers/{guid}", get(computer).patch(move_computer))
        .route(
            "/v1/computers/{guid}/isolation",
            routing::options(isolation_options)
                .get(isolation_get)
                .put(isolation_put)
                .delete(isolation_delete),
        )
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{guid}", get(group))
        .route(
            "/v1/event_streams",
            get(crate::event_streams::list).post(crate::event_streams::create),
        )
        .route(
            "/v1/event_streams/{id}",
            get(crate::event_streams::get_one).delete(crate::event_streams::delete),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Both spellings of the rate-limit headers, `Reset` in seconds until the window resets.
fn rate_headers(headers: &mut HeaderMap, info: RateInfo) {
    let reset_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + info.reset_secs;
    let reset_date = wire::iso_z(i64::try_from(reset_at).unwrap_or(i64::MAX));
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    put("x-ratelimit-limit", info.limit.to_string());
    put("x-ratelimit-remaining", info.remaining.to_string());
    put("x-ratelimit-reset", info.reset_secs.to_string());
    put("x-ratelimit-resetdate", reset_date);
    put("x-rate-limit-limit", info.limit.to_string());
    put("x-rate-limit-remaining", info.remaining.to_string());
    put("x-rate-limit-reset", info.reset_secs.to_string());
}

/// Authentication, rate limit and fault injection in front of every `/v1` route; counts each
/// answer by status.
async fn gate(State(sim): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let url = RequestUrl::of(&req, &sim.base_url);
    let is_poll = req.method() == Method::GET && url.path == "/v1/events";
    let creds = net::basic_header(req.headers());
    let admitted = {
        let mut st = sim.lock();
        let tenant = creds
            .as_ref()
            .and_then(|(id, key)| st.authenticate(id, key));
        match tenant {
            None => {
                let known = creds
                    .as_ref()
                    .and_then(|(id, _)| st.by_client.get(id).copied());
                let info = st.peek_rate(known);
                st.count_request(401);
                Err((
                    wire::json_response(StatusCode::UNAUTHORIZED, wire::UNAUTHORIZED_BODY),
                    info,
                ))
            }
            Some(tenant) => match st.consume(tenant) {
                Err(info) => {
                    st.count_request(429);
                    let detail = format!(
                        "API rate limit of {} requests exceeded; retry after the reset",
                        info.limit
                    );
                    Err((
                        wire::error_response(StatusCode::TOO_MANY_REQUESTS, &detail),
                        info,
                    ))
                }
                Ok(info) => {
                    let faultable = url.path.starts_with("/v1/");
                    let plan = if faultable {
                        st.draw_faults()
                    } else {
                        FaultPlan::default()
                    };
                    if plan.slow.is_some() {
                        st.fault_counts.slow += 1;
                    }
                    match plan.error {
                        Some(429) => st.fault_counts.status_429 += 1,
                        Some(500) => st.fault_counts.status_500 += 1,
                        Some(503) => st.fault_counts.status_503 += 1,
                        _ => {}
                    }
                    // A poll: in flight for its API client until the answer is made.
                    let poll = is_poll.then(|| {
                        let w = &st.tenants[tenant].world;
                        (w.client_id.clone(), w.name.clone())
                    });
                    Ok((tenant, plan, info, st.rate_limit, poll))
                }
            },
        }
    };
    let (tenant, plan, info, limit, poll) = match admitted {
        Ok(a) => a,
        Err((mut resp, info)) => {
            rate_headers(resp.headers_mut(), info);
            return resp;
        }
    };
    // The overlap witness holds the poll until this function returns its answer.
    let _poll = match poll {
        Some((client_id, name)) => {
            let guard = sim.polls.enter(&client_id, &name);
            sim.polls.wait(&sim.shutdown).await;
            Some(guard)
        }
        None => None,
    };

    if let Some(delay) = plan.slow {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sim.shutdown.cancelled() => {}
        }
    }
    if let Some(code) = plan.error {
        let status = StatusCode::from_u16(code).expect("injected statuses are valid");
        let (mut resp, info) = match code {
            // An injected 429 looks like a spent budget that resets in a second.
            429 => (
                wire::error_response(status, "API rate limit exceeded (injected fault)"),
                RateInfo {
                    limit,
                    remaining: 0,
                    reset_secs: 1,
                },
            ),
            500 => (
                wire::error_response(status, "Internal server error (injected fault)"),
                info,
            ),
            _ => (
                wire::error_response(status, "Service temporarily unavailable (injected fault)"),
                info,
            ),
        };
        rate_headers(resp.headers_mut(), info);
        sim.lock().count_request(code);
        return resp;
    }

    req.extensions_mut().insert(Ctx { tenant, plan, url });
    let resp = next.run(req).await;
    let status = resp.status();
    let mut resp = match plan.body {
        Some(fault) if status.is_success() => spoil(&sim, resp, fault).await,
        _ => resp,
    };
    rate_headers(resp.headers_mut(), info);
    sim.lock().count_request(status.as_u16());
    resp
}

/// Applies a body fault to a successful answer (counted only when there was a body to spoil).
async fn spoil(sim: &Shared, resp: Response, fault: BodyFault) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return wire::error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not buffer the answer",
        );
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    {
        let mut st = sim.lock();
        match fault {
            BodyFault::Drop => st.fault_counts.drop += 1,
            BodyFault::Truncate => st.fault_counts.truncate += 1,
        }
    }
    net::spoiled(parts, bytes, fault)
}

async fn no_route(Extension(ctx): Extension<Ctx>, req: Request) -> Response {
    wire::not_found(&format!(
        "No such resource: {} {}",
        req.method(),
        ctx.url.path
    ))
}

async fn method_not_allowed(req: Request) -> Response {
    wire::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "Method {} is not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
}

/// `GET /v1/version`: the cheap credential check.
async fn version(Extension(ctx): Extension<Ctx>) -> Response {
    wire::json_response(
        StatusCode::OK,
        wire::object_body(&ctx.url, &serde_json::json!({})),
    )
}

/// `GET /v1/event_types`: every type the emulator generates.
async fn event_types(Extension(ctx): Extension<Ctx>) -> Response {
    #[derive(Serialize)]
    struct Item {
        id: u64,
        name: &'static str,
        description: &'static str,
    }
    let items: Vec<String> = crate::catalog::EVENT_TYPES
        .iter()
        .map(|t| {
            serde_json::to_string(&Item {
                id: t.id,
                name: t.name,
                description: t.description,
            })
            .expect("an event type serialises")
        })
        .collect();
    let total = items.len();
    let links = wire::Links {
        self_: ctx.url.self_url(),
        next: None,
        prev: None,
    };
    wire::json_response(
        StatusCode::OK,
        wire::list_body(&links, total, 0, total, &items),
    )
}

/// The filters of `GET /v1/events`.
struct EventsQuery {
    event_types: Vec<u64>,
    connector_guids: Vec<String>,
    group_guids: Vec<String>,
    start: Option<(i64, u32)>,
    detection_sha256: Option<String>,
    application_sha256: Option<String>,
    limit: usize,
    offset: usize,
}

impl EventsQuery {
    fn parse(raw: Option<&str>) -> Result<EventsQuery, String> {
        let pairs = wire::query_pairs(raw);
        let event_types = wire::all_values(&pairs, "event_type")
            .into_iter()
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("event_type must be an integer, got '{v}'"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let start = match wire::last_value(&pairs, "start_date") {
            None => None,
            Some(v) => Some(wire::parse_start_date(v).ok_or_else(|| {
                format!("start_date must be an ISO 8601 date-time with a UTC offset, got '{v}'")
            })?),
        };
        let (limit, offset) = wire::paging(&pairs)?;
        let owned = |name: &str| {
            wire::all_values(&pairs, name)
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let lower = |name: &str| wire::last_value(&pairs, name).map(str::to_ascii_lowercase);
        Ok(EventsQuery {
            event_types,
            connector_guids: owned("connector_guid"),
            group_guids: owned("group_guid"),
            start,
            detection_sha256: lower("detection_sha256"),
            application_sha256: lower("application_sha256"),
            limit,
            offset,
        })
    }

    /// `detection_sha256` matches the detected file, `application_sha256` the process that
    /// acted (the file's parent).
    fn matches(&self, e: &StoredEvent) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&e.event_type_id))
            && (self.connector_guids.is_empty() || self.connector_guids.contains(&e.connector_guid))
            && (self.group_guids.is_empty() || self.group_guids.contains(&e.group_guid))
            && self
                .detection_sha256
                .as_ref()
                .is_none_or(|h| e.file_sha256.as_ref() == Some(h))
            && self
                .application_sha256
                .as_ref()
                .is_none_or(|h| e.parent_sha256.as_ref() == Some(h))
    }
}

/// `GET /v1/events`: newest first (timestamp, then nanoseconds, then id, descending), only
/// events at or after `start_date`, paged by `limit`/`offset`.
async fn events(State(sim): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    let q = match EventsQuery::parse(ctx.url.raw_query.as_deref()) {
        Ok(q) => q,
        Err(detail) => return wire::bad_request(&detail),
    };
    let (items, marks, total) = {
        let mut st = sim.lock();
        let t = &st.tenants[ctx.tenant];
        let from = q.start.map_or(0, |s| t.first_at_or_after(s));
        let matching: Vec<&StoredEvent> = t.events[from..]
            .iter()
            .rev()
            .filter(|e| q.matches(e))
            .collect();
        let total = matching.len();
        let mut page: Vec<&StoredEvent> = matching
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .copied()
            .collect();
        // Duplicate fault: the page repeats the last event of the previous page.
        let duplicated = ctx.plan.duplicate && q.offset > 0 && q.offset - 1 < total;
        if duplicated {
            page.insert(0, matching[q.offset - 1]);
        }
        let items: Vec<Arc<str>> = page.iter().map(|e| e.json.clone()).collect();
        let marks: Vec<(u64, bool, bool)> = page
            .iter()
            .map(|e| (e.seq, e.high_priority, e.malformed))
            .collect();
        if duplicated {
            st.fault_counts.duplicate += 1;
        }
        (items, marks, total)
    };
    let links = wire::page_links(&ctx.url, total, q.offset, q.limit);
    let body = wire::list_body(&links, total, q.offset, q.limit, &items);
    if ctx.plan.body.is_some() {
        // This answer will be dropped or truncated: its events are not delivered.
        return wire::json_response(StatusCode::OK, body);
    }
    served_when_sent(sim, ctx.tenant, marks, body)
}

/// An answer whose events count as served when the server writes the body, not before: a
/// request abandoned before its answer went out (HEAD, a client gone during a slow answer)
/// serves nothing. Marking happens before the bytes reach the socket, so a client that has
/// read the body always finds its events counted.
fn served_when_sent(
    sim: Arc<Shared>,
    tenant: usize,
    marks: Vec<(u64, bool, bool)>,
    body: String,
) -> Response {
    let len = body.len();
    let chunk = futures::stream::once(async move {
        sim.lock().tenants[tenant].mark_served(&marks);
        Ok::<Bytes, Infallible>(Bytes::from(body))
    });
    let mut resp = wire::json_response(StatusCode::OK, Body::from_stream(chunk));
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[derive(Serialize)]
struct ComputerLinks {
    computer: String,
    trajectory: String,
    group: String,
}

#[derive(Serialize)]
struct MacIp<'a> {
    mac: &'a str,
    ip: &'a str,
}

#[derive(Serialize)]
struct GuidName<'a> {
    guid: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct IsolationSummary {
    available: bool,
    status: &'static str,
}

/// The full computer object of the vendor, members in its order.
#[derive(Serialize)]
struct ComputerOut<'a> {
    connector_guid: &'a str,
    hostname: &'a str,
    windows_processor_id: String,
    active: bool,
    links: ComputerLinks,
    connector_version: &'a str,
    operating_system: &'a str,
    os_version: &'a str,
    internal_ips: [&'a str; 1],
    external_ip: &'a str,
    group_guid: &'a str,
    install_date: String,
    is_compromised: bool,
    network_addresses: [MacIp<'a>; 1],
    policy: GuidName<'a>,
    groups: [GuidName<'a>; 1],
    faults: [(); 0],
    isolation: IsolationSummary,
    last_seen: String,
}

fn now_secs() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(i64::MAX)
}

/// Renders computer `i` of `world`; `compromised` says whether it has high-priority events.
fn computer_json(
    world: &World,
    i: usize,
    url: &RequestUrl,
    start: SystemTime,
    compromised: bool,
) -> String {
    let c: &Computer = &world.computers[i];
    let g = &world.groups[c.group];
    let start_secs = i64::try_from(
        start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(0);
    let out = ComputerOut {
        connector_guid: &c.connector_guid,
        hostname: &c.hostname,
        windows_processor_id: c.connector_guid.replace('-', "")[..16].to_uppercase(),
        active: true,
        links: ComputerLinks {
            computer: url.at(&format!("/v1/computers/{}", c.connector_guid)),
            trajectory: url.at(&format!("/v1/computers/{}/trajectory", c.connector_guid)),
            group: url.at(&format!("/v1/groups/{}", g.guid)),
        },
        connector_version: c.connector_version,
        operating_system: c.operating_system,
        os_version: c.os_version,
        internal_ips: [&c.internal_ip],
        external_ip: &c.external_ip,
        group_guid: &g.guid,
        install_date: wire::iso_z(start_secs - c.install_days_ago * 86_400),
        is_compromised: compromised,
        network_addresses: [MacIp {
            mac: &c.mac,
            ip: &c.internal_ip,
        }],
        policy: GuidName {
            guid: &g.policy_guid,
            name: &g.policy_name,
        },
        groups: [GuidName {
            guid: &g.guid,
            name: g.name,
        }],
        faults: [],
        isolation: IsolationSummary {
            available: c.isolation_available,
            status: c.isolation.as_str(),
        },
        last_seen: wire::iso_z(now_secs() - i64::try_from(i * 37 % 300).unwrap_or(0)),
    };
    serde_json::to_string(&out).expect("a computer serialises")
}

/// Connector guids of a tenant that have high-priority events (their `is_compromised`).
fn compromised(events: &[StoredEvent]) -> std::collections::HashSet<&str> {
    events
        .iter()
        .filter(|e| e.high_priority && !e.malformed)
        .map(|e| e.connector_guid.as_str())
        .collect()
}

/// `GET /v1/computers`: `hostname[]` (case-insensitive), `internal_ip`, `external_ip`,
/// `group_guid[]`, paged.
async fn computers(State(sim): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    let pairs = wire::query_pairs(ctx.url.raw_query.as_deref());
    let (limit, offset) = match wire::paging(&pairs) {
        Ok(p) => p,
        Err(detail) => return wire::bad_request(&detail),
    };
    let hostnames: Vec<String> = wire::all_values(&pairs, "hostname")
        .into_iter()
        .map(str::to_lowercase)
        .collect();
    let groups: Vec<&str> = wire::all_values(&pairs, "group_guid");
    let internal = wire::last_value(&pairs, "internal_ip");
    let external = wire::last_value(&pairs, "external_ip");
    let (items, total) = {
        let mut st = sim.lock();
        let t = &mut st.tenants[ctx.tenant];
        for i in 0..t.world.computers.len() {
            t.settle_isolation(i, false);
        }
        let hot = compromised(&t.events);
        let matching: Vec<usize> = t
            .world
            .computers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                (hostnames.is_empty() || hostnames.contains(&c.hostname.to_lowercase()))
                    && (groups.is_empty()
                        || groups.contains(&t.world.groups[c.group].guid.as_str()))
                    && internal.is_none_or(|ip| ip == c.internal_ip)
                    && external.is_none_or(|ip| ip == c.external_ip)
            })
            .map(|(i, _)| i)
            .collect();
        let items: Vec<String> = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|&i| {
                let c = &t.world.computers[i];
                computer_json(
                    &t.world,
                    i,
                    &ctx.url,
                    sim.start,
                    hot.contains(c.connector_guid.as_str()),
                )
            })
            .collect();
        (items, matching.len())
    };
    let links = wire::page_links(&ctx.url, total, offset, limit);
    wire::json_response(
        StatusCode::OK,
        wire::list_body(&links, total, offset, limit, &items),
    )
}

fn unknown_computer(guid: &str) -> Response {
    wire::not_found(&format!("Unknown computer: no connector_guid '{guid}'"))
}

/// `GET /v1/computers/{guid}`.
async fn computer(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
) -> Response {
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    t.settle_isolation(i, false);
    let hot = compromised(&t.events).contains(guid.as_str());
    let data = computer_json(&t.world, i, &ctx.url, sim.start, hot);
    drop(st);
    wire::json_response(StatusCode::OK, object_with_raw_data(&ctx.url, &data))
}

/// A single-object envelope around already rendered `data`.
fn object_with_raw_data(url: &RequestUrl, data: &str) -> String {
    let raw =
        serde_json::value::RawValue::from_string(data.to_string()).expect("rendered JSON is valid");
    wire::object_body(url, &raw)
}

/// A JSON object body, or `None` when the body is empty: optional bodies are optional.
fn optional_object(
    body: &[u8],
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err("the request body must be a JSON object".to_string()),
        Err(e) => Err(format!("the request body is not valid JSON: {e}")),
    }
}

/// An optional string member: absent or null is `None`; any other non-string is an error.
fn optional_string(
    m: &serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{key} must be a string, got {other}")),
    }
}

/// `PATCH /v1/computers/{guid}` with `{"group_guid": ...}` (JSON, or a form body): moves the
/// computer and answers the updated object with 202.
async fn move_computer(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let target = if is_form {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "group_guid")
            .map(|(_, v)| v.into_owned())
    } else {
        match optional_object(&body) {
            Ok(Some(m)) => match optional_string(&m, "group_guid") {
                Ok(v) => v,
                Err(detail) => return wire::bad_request(&detail),
            },
            Ok(None) => None,
            Err(detail) => return wire::bad_request(&detail),
        }
    };
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    let Some(target) = target else {
        return wire::bad_request("group_guid is required");
    };
    let Some(g) = t.world.group_index(&target) else {
        return wire::bad_request(&format!("Unknown group_guid: '{target}'"));
    };
    t.world.computers[i].group = g;
    t.counters.group_moves += 1;
    t.settle_isolation(i, false);
    let hot = compromised(&t.events).contains(guid.as_str());
    let data = computer_json(&t.world, i, &ctx.url, sim.start, hot);
    drop(st);
    wire::json_response(StatusCode::ACCEPTED, object_with_raw_data(&ctx.url, &data))
}

/// The isolation object of the vendor.
#[derive(Serialize)]
struct IsolationOut {
    available: bool,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unlock_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

/// The answer of PUT and DELETE: names `unlock_code` and `comment` even when null, as the
/// vendor's PUT answer does.
#[derive(Serialize)]
struct IsolationChange {
    available: bool,
    status: &'static str,
    unlock_code: Option<String>,
    comment: Option<String>,
}

fn isolation_change(c: &Computer) -> IsolationChange {
    IsolationChange {
        available: c.isolation_available,
        status: c.isolation.as_str(),
        unlock_code: c.unlock_code.clone(),
        comment: c.isolation_comment.clone(),
    }
}

fn isolation_out(c: &Computer) -> IsolationOut {
    IsolationOut {
        available: c.isolation_available,
        status: c.isolation.as_str(),
        unlock_code: c.unlock_code.clone(),
        comment: c.isolation_comment.clone(),
    }
}

/// 405 for a computer whose policy does not allow isolation.
fn isolation_unavailable(guid: &str) -> Response {
    let mut r = wire::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "Endpoint isolation is not available on computer '{guid}' (not supported or not enabled by policy)"
        ),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("OPTIONS, GET"));
    r
}

/// `OPTIONS /v1/computers/{guid}/isolation`: 204 with `Allow` naming what is possible now
/// (PUT when not isolated, DELETE when isolated or starting), 405 when isolation is not
/// available. While stopping, neither is possible.
async fn isolation_options(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
) -> Response {
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    t.settle_isolation(i, false);
    let c = &t.world.computers[i];
    if !c.isolation_available {
        return isolation_unavailable(&guid);
    }
    let allow = match c.isolation {
        IsolationStatus::NotIsolated => "OPTIONS, GET, PUT",
        IsolationStatus::Isolated | IsolationStatus::PendingStart => "OPTIONS, GET, DELETE",
        IsolationStatus::PendingStop => "OPTIONS, GET",
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// `GET /v1/computers/{guid}/isolation`: a pending state settles on this read, as if the
/// connector had checked in.
async fn isolation_get(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
) -> Response {
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    t.settle_isolation(i, true);
    let out = isolation_out(&t.world.computers[i]);
    drop(st);
    wire::json_response(StatusCode::OK, wire::object_body(&ctx.url, &out))
}

/// Longest unlock code the vendor accepts.
const MAX_UNLOCK_CODE: usize = 24;

/// `PUT /v1/computers/{guid}/isolation` with optional `{comment, unlock_code}`: starts
/// isolation (`pending_start`). Already isolated or in a transitional state: 409.
async fn isolation_put(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
    body: Bytes,
) -> Response {
    let (comment, unlock_code) = match optional_object(&body) {
        Err(detail) => return wire::bad_request(&detail),
        Ok(None) => (None, None),
        Ok(Some(m)) => match (
            optional_string(&m, "comment"),
            optional_string(&m, "unlock_code"),
        ) {
            (Ok(c), Ok(u)) => (c, u.filter(|u| !u.is_empty())),
            (Err(detail), _) | (_, Err(detail)) => return wire::bad_request(&detail),
        },
    };
    let bad_code = |code: &String| {
        code.chars().count() > MAX_UNLOCK_CODE || code.chars().any(char::is_whitespace)
    };
    if unlock_code.as_ref().is_some_and(bad_code) {
        return wire::bad_request(&format!(
            "unlock_code must be at most {MAX_UNLOCK_CODE} characters without spaces"
        ));
    }
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    if !t.world.computers[i].isolation_available {
        return isolation_unavailable(&guid);
    }
    t.settle_isolation(i, false);
    match t.world.computers[i].isolation {
        IsolationStatus::NotIsolated => {}
        IsolationStatus::Isolated => {
            return wire::error_response(
                StatusCode::CONFLICT,
                &format!("Computer '{guid}' is already isolated"),
            );
        }
        s @ (IsolationStatus::PendingStart | IsolationStatus::PendingStop) => {
            return wire::error_response(
                StatusCode::CONFLICT,
                &format!(
                    "Computer '{guid}' is in a transitional isolation state ({})",
                    s.as_str()
                ),
            );
        }
    }
    let code = unlock_code.unwrap_or_else(|| {
        const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
        (0..8)
            .map(|_| char::from(ALPHABET[t.rng.random_range(0..ALPHABET.len())]))
            .collect()
    });
    let c = &mut t.world.computers[i];
    c.isolation = IsolationStatus::PendingStart;
    c.isolation_since = Some(Instant::now());
    c.unlock_code = Some(code);
    c.isolation_comment = comment;
    let out = isolation_change(c);
    t.counters.isolation_start += 1;
    drop(st);
    wire::json_response(StatusCode::OK, wire::object_body(&ctx.url, &out))
}

/// `DELETE /v1/computers/{guid}/isolation` with optional `{comment}`: stops isolation
/// (`pending_stop`). Not isolated or already stopping: 409.
async fn isolation_delete(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
    body: Bytes,
) -> Response {
    let comment = match optional_object(&body) {
        Err(detail) => return wire::bad_request(&detail),
        Ok(None) => None,
        Ok(Some(m)) => match optional_string(&m, "comment") {
            Ok(c) => c,
            Err(detail) => return wire::bad_request(&detail),
        },
    };
    let mut st = sim.lock();
    let t = &mut st.tenants[ctx.tenant];
    let Some(i) = t.world.computer_index(&guid) else {
        return unknown_computer(&guid);
    };
    if !t.world.computers[i].isolation_available {
        return isolation_unavailable(&guid);
    }
    t.settle_isolation(i, false);
    match t.world.computers[i].isolation {
        IsolationStatus::Isolated | IsolationStatus::PendingStart => {}
        IsolationStatus::NotIsolated => {
            return wire::error_response(
                StatusCode::CONFLICT,
                &format!("Computer '{guid}' is not isolated"),
            );
        }
        IsolationStatus::PendingStop => {
            return wire::error_response(
                StatusCode::CONFLICT,
                &format!("Computer '{guid}' is in a transitional isolation state (pending_stop)"),
            );
        }
    }
    let c = &mut t.world.computers[i];
    c.isolation = IsolationStatus::PendingStop;
    c.isolation_since = Some(Instant::now());
    if comment.is_some() {
        c.isolation_comment = comment;
    }
    let out = isolation_change(c);
    t.counters.isolation_stop += 1;
    drop(st);
    wire::json_response(StatusCode::OK, wire::object_body(&ctx.url, &out))
}

#[derive(Serialize)]
struct GroupLinks {
    group: String,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    name: &'a str,
    description: &'a str,
    guid: &'a str,
    source: &'static str,
    links: GroupLinks,
}

#[derive(Serialize)]
struct PolicyOut<'a> {
    name: &'a str,
    description: &'a str,
    guid: &'a str,
    product: &'static str,
    default: bool,
    serial_number: u64,
    links: PolicyLinks,
}

#[derive(Serialize)]
struct PolicyLinks {
    policy: String,
}

#[derive(Serialize)]
struct GroupDetail<'a> {
    name: &'a str,
    description: &'a str,
    guid: &'a str,
    source: &'static str,
    creator: &'static str,
    created_at: String,
    computers_count: usize,
    descendant_computers_count: usize,
    policies: [PolicyOut<'a>; 1],
}

/// `GET /v1/groups`: `name` filter (case-insensitive, partial match, so a client must pick
/// the exact name itself), paged.
async fn groups(State(sim): State<Arc<Shared>>, Extension(ctx): Extension<Ctx>) -> Response {
    let pairs = wire::query_pairs(ctx.url.raw_query.as_deref());
    let (limit, offset) = match wire::paging(&pairs) {
        Ok(p) => p,
        Err(detail) => return wire::bad_request(&detail),
    };
    let name = wire::last_value(&pairs, "name").map(str::to_lowercase);
    let (items, total) = {
        let st = sim.lock();
        let w = &st.tenants[ctx.tenant].world;
        let matching: Vec<String> = w
            .groups
            .iter()
            .filter(|g| {
                name.as_ref()
                    .is_none_or(|n| g.name.to_lowercase().contains(n.as_str()))
            })
            .map(|g| {
                serde_json::to_string(&GroupOut {
                    name: g.name,
                    description: g.description,
                    guid: &g.guid,
                    source: "Created through the console",
                    links: GroupLinks {
                        group: ctx.url.at(&format!("/v1/groups/{}", g.guid)),
                    },
                })
                .expect("a group serialises")
            })
            .collect();
        let total = matching.len();
        (
            matching
                .into_iter()
                .skip(offset)
                .take(limit)
                .collect::<Vec<_>>(),
            total,
        )
    };
    let links = wire::page_links(&ctx.url, total, offset, limit);
    wire::json_response(
        StatusCode::OK,
        wire::list_body(&links, total, offset, limit, &items),
    )
}

/// `GET /v1/groups/{guid}`.
async fn group(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(guid): Path<String>,
) -> Response {
    let st = sim.lock();
    let w = &st.tenants[ctx.tenant].world;
    let Some(gi) = w.group_index(&guid) else {
        return wire::not_found(&format!("Unknown group: no group_guid '{guid}'"));
    };
    let g = &w.groups[gi];
    let count = w.computers.iter().filter(|c| c.group == gi).count();
    let start_secs = i64::try_from(
        sim.start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(0);
    let out = GroupDetail {
        name: g.name,
        description: g.description,
        guid: &g.guid,
        source: "Created through the console",
        creator: "admin@mssp.example",
        created_at: wire::iso_z(start_secs - g.created_days_ago * 86_400),
        computers_count: count,
        descendant_computers_count: count,
        policies: [PolicyOut {
            name: &g.policy_name,
            description: g.description,
            guid: &g.policy_guid,
            product: "windows",
            default: gi == crate::world::GROUP_PROTECT,
            serial_number: 10 + gi as u64,
            links: PolicyLinks {
                policy: ctx.url.at(&format!("/v1/policies/{}", g.policy_guid)),
            },
        }],
    };
    let body = wire::object_body(&ctx.url, &out);
    drop(st);
    wire::json_response(StatusCode::OK, body)
}
