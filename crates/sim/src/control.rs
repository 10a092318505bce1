//! The control API under `/_sim/` (no authentication, same port): counters, fault rates,
//! adding events, the whole data set of a tenant (the witness tests compare against), the
//! rate limit, and `poll_delay` (how long every polled endpoint of Secure Endpoint, Umbrella
//! and Symantec MSS holds a poll in flight; see `crate::polls`). Its answers are plain JSON,
//! not the vendor's envelopes: it is ours.
//!
//! ServiceNow has its own part under `/_sim/servicenow/`: `faults`, `outage`, `rate_limit`,
//! `webhook`, `tokens/expire`, and the stored `incidents` and `journal` (the witness view).
//!
//! The Symantec SWS emulator's part is under `/_sim/symantec_mss/`: `faults`, `incidents`
//! (`POST` adds, `GET ?tenant=` dumps) and `analyst` (a change made at the vendor).
//!
//! The Umbrella emulator's part is under `/_sim/umbrella/`: `faults`, `rate_limit`,
//! `records` (`POST` adds, `GET ?org=` dumps), `revoke` and `tokens/expire`.
//!
//! The Cisco XDR emulator's part is under `/_sim/xdr/`: `faults`, `incidents` (`GET
//! [?tenant=]` dumps) and `tokens/expire`.

use crate::state::{self, Shared};
use crate::{AddEvents, Faults};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The `/_sim` router (nested under `/_sim` by the caller).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/counters", get(counters))
        .route("/endpoints", get(endpoints))
        .route("/faults", get(get_faults).post(set_faults))
        .route("/poll_delay", get(get_poll_delay).post(set_poll_delay))
        .route("/secure_endpoint/events", get(list_events).post(add_events))
        .route(
            "/secure_endpoint/rate_limit",
            get(get_rate_limit).post(set_rate_limit),
        )
        .route("/servicenow/faults", get(sn_get_faults).post(sn_set_faults))
        .route("/servicenow/outage", get(sn_get_outage).post(sn_set_outage))
        .route(
            "/servicenow/rate_limit",
            get(sn_get_rate_limit).post(sn_set_rate_limit),
        )
        .route(
            "/servicenow/webhook",
            get(sn_get_webhook)
                .post(sn_set_webhook)
                .delete(sn_delete_webhook),
        )
        .route("/servicenow/tokens/expire", post(sn_expire_tokens))
        .route("/servicenow/incidents", get(sn_incidents))
        .route("/servicenow/journal", get(sn_journal))
        .route(
            "/symantec_mss/faults",
            get(sy_get_faults).post(sy_set_faults),
        )
        .route(
            "/symantec_mss/incidents",
            get(sy_incidents).post(sy_add_incidents),
        )
        .route("/symantec_mss/analyst", post(sy_analyst))
        .route("/umbrella/faults", get(um_get_faults).post(um_set_faults))
        .route(
            "/umbrella/rate_limit",
            get(um_get_rate_limit).post(um_set_rate_limit),
        )
        .route("/umbrella/records", get(um_records).post(um_add_records))
        .route("/umbrella/revoke", post(um_revoke))
        .route("/umbrella/tokens/expire", post(um_expire_tokens))
        .route("/xdr/faults", get(xdr_get_faults).post(xdr_set_faults))
        .route("/xdr/incidents", get(xdr_incidents))
        .route("/xdr/tokens/expire", post(xdr_expire_tokens))
        .fallback(unknown)
        .with_state(shared)
}

/// A JSON answer.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let text = serde_json::to_string(body).expect("control answers serialise");
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// A control-API error: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// Parses a JSON body, or answers 400 naming what is wrong.
fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

async fn unknown() -> Response {
    error(StatusCode::NOT_FOUND, "no such control endpoint")
}

async fn counters(State(sim): State<Arc<Shared>>) -> Response {
    let c = sim.counters();
    json(StatusCode::OK, &c)
}

async fn endpoints(State(sim): State<Arc<Shared>>) -> Response {
    json(StatusCode::OK, &sim.endpoints)
}

async fn get_faults(State(sim): State<Arc<Shared>>) -> Response {
    let f = sim.lock().faults.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/faults`: replaces the fault rates (members left out are 0).
async fn set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let f: Faults = match parse(&body) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    if !state::faults_valid(&f) {
        return error(
            StatusCode::BAD_REQUEST,
            "every rate_* must be a probability between 0 and 1",
        );
    }
    sim.lock().faults = f.clone();
    json(StatusCode::OK, &f)
}

async fn get_poll_delay(State(sim): State<Arc<Shared>>) -> Response {
    let ms = u64::try_from(sim.polls.delay().as_millis()).unwrap_or(u64::MAX);
    json(StatusCode::OK, &crate::PollDelay { ms })
}

/// `POST /_sim/poll_delay` `{"ms": n}`: every poll request (Secure Endpoint, Umbrella,
/// Symantec MSS) waits n ms while in flight; 0 removes the delay.
async fn set_poll_delay(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let d: crate::PollDelay = match parse(&body) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let max = crate::polls::MAX_POLL_DELAY.as_millis();
    if u128::from(d.ms) > max {
        return error(
            StatusCode::BAD_REQUEST,
            format!("ms must be at most {max} (the delay holds every poll that long)"),
        );
    }
    sim.set_poll_delay(Duration::from_millis(d.ms));
    json(StatusCode::OK, &d)
}

/// `POST /_sim/secure_endpoint/events`: adds events stamped now; answers their ids.
async fn add_events(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: AddEvents = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    match crate::add_events(&sim, &req) {
        Ok(ids) => json(
            StatusCode::OK,
            &serde_json::json!({ "tenant": req.tenant, "added": req.count, "ids": ids }),
        ),
        Err(crate::AddError::UnknownTenant) => error(
            StatusCode::NOT_FOUND,
            format!("unknown tenant '{}'", req.tenant),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `GET /_sim/secure_endpoint/events?tenant=NAME`: the tenant's whole data set, newest
/// first, every record exactly as `/v1/events` serves it (malformed ones included).
async fn list_events(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let pairs = crate::wire::query_pairs(query.as_deref());
    let Some(name) = crate::wire::last_value(&pairs, "tenant") else {
        return error(StatusCode::BAD_REQUEST, "the tenant parameter is required");
    };
    let records: Vec<Arc<str>> = {
        let st = sim.lock();
        let Some(&i) = st.by_name.get(name) else {
            return error(StatusCode::NOT_FOUND, format!("unknown tenant '{name}'"));
        };
        st.tenants[i]
            .newest_first()
            .map(|e| e.json.clone())
            .collect()
    };
    let mut out = String::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
    out.push('[');
    for (n, r) in records.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(r);
    }
    out.push(']');
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

/// Body of `POST /_sim/secure_endpoint/rate_limit`.
#[derive(Serialize, Deserialize)]
struct RateLimit {
    limit: u64,
    #[serde(default = "default_window")]
    window_secs: u64,
}

fn default_window() -> u64 {
    state::DEFAULT_RATE_WINDOW.as_secs()
}

async fn get_rate_limit(State(sim): State<Arc<Shared>>) -> Response {
    let st = sim.lock();
    let rl = RateLimit {
        limit: st.rate_limit,
        window_secs: st.rate_window.as_secs(),
    };
    drop(st);
    json(StatusCode::OK, &rl)
}

/// Sets every client's budget; windows start afresh.
async fn set_rate_limit(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let rl: RateLimit = match parse(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if rl.window_secs == 0 {
        return error(StatusCode::BAD_REQUEST, "window_secs must be at least 1");
    }
    sim.lock()
        .set_rate_limit(rl.limit, Duration::from_secs(rl.window_secs));
    json(StatusCode::OK, &rl)
}

/// The ServiceNow instance, or the 404 that says it is disabled.
fn instance(sim: &Shared) -> Result<&Arc<crate::servicenow::Sn>, Box<Response>> {
    sim.servicenow.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "the ServiceNow emulator is disabled",
        ))
    })
}

/// Unwraps a `Result<T, Box<Response>>` in a handler.
macro_rules! or_answer {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return *r,
        }
    };
}

async fn sn_get_faults(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let f = sn.lock().faults.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/servicenow/faults`: replaces the rates (members left out are 0).
async fn sn_set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = or_answer!(instance(&sim));
    let f: crate::ServiceNowFaults = or_answer!(parse(&body));
    if !state::faults_valid(&f) {
        return error(
            StatusCode::BAD_REQUEST,
            "every rate_* must be a probability between 0 and 1",
        );
    }
    sn.lock().faults = f.clone();
    json(StatusCode::OK, &f)
}

#[derive(Serialize, Deserialize)]
struct Outage {
    on: bool,
}

async fn sn_get_outage(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let on = sn.lock().outage;
    json(StatusCode::OK, &Outage { on })
}

/// `POST /_sim/servicenow/outage` `{"on": true}`: every instance request answers 503.
async fn sn_set_outage(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = or_answer!(instance(&sim));
    let o: Outage = or_answer!(parse(&body));
    sn.lock().outage = o.on;
    json(StatusCode::OK, &o)
}

async fn sn_get_rate_limit(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let rl = sn.lock().rate_limit.clone();
    json(StatusCode::OK, &rl)
}

/// `POST /_sim/servicenow/rate_limit` `{"limit": n, "window_secs": s}`; `null` or a limit
/// of 0 turns it off.
async fn sn_set_rate_limit(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = or_answer!(instance(&sim));
    let rl: Option<crate::ServiceNowRateLimit> = or_answer!(parse(&body));
    if rl.as_ref().is_some_and(|r| r.window_secs == 0) {
        return error(StatusCode::BAD_REQUEST, "window_secs must be at least 1");
    }
    let mut st = sn.lock();
    st.set_rate_limit(rl);
    let now = st.rate_limit.clone();
    drop(st);
    json(StatusCode::OK, &now)
}

async fn sn_get_webhook(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let v = crate::servicenow::webhook_setting(&sn.lock());
    json(StatusCode::OK, &v)
}

/// `POST /_sim/servicenow/webhook` `{"url", "secret"?, "header"?}`.
async fn sn_set_webhook(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sn = or_answer!(instance(&sim));
    let hook: crate::ServiceNowWebhook = or_answer!(parse(&body));
    if let Err(e) = crate::servicenow::webhook_valid(&hook) {
        return error(StatusCode::BAD_REQUEST, e);
    }
    let mut st = sn.lock();
    crate::servicenow::set_webhook(&mut st, Some(hook));
    let v = crate::servicenow::webhook_setting(&st);
    drop(st);
    json(StatusCode::OK, &v)
}

/// `DELETE /_sim/servicenow/webhook`: stop pushing.
async fn sn_delete_webhook(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let mut st = sn.lock();
    crate::servicenow::set_webhook(&mut st, None);
    let v = crate::servicenow::webhook_setting(&st);
    drop(st);
    json(StatusCode::OK, &v)
}

/// `POST /_sim/servicenow/tokens/expire`: every access token stops working.
async fn sn_expire_tokens(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let n = sn.lock().expire_tokens();
    json(StatusCode::OK, &serde_json::json!({ "expired": n }))
}

/// `GET /_sim/servicenow/incidents`: every incident as stored, oldest first.
async fn sn_incidents(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let v = crate::servicenow::dump_incidents(&sn.lock());
    json(StatusCode::OK, &v)
}

/// `GET /_sim/servicenow/journal`: every journal entry, oldest first.
async fn sn_journal(State(sim): State<Arc<Shared>>) -> Response {
    let sn = or_answer!(instance(&sim));
    let v = crate::servicenow::dump_journal(&sn.lock());
    json(StatusCode::OK, &v)
}

/// The Symantec emulator, or the 404 that says it is disabled.
fn symantec(sim: &Shared) -> Result<&Arc<crate::symantec::Sym>, Box<Response>> {
    sim.symantec.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "the Symantec MSS emulator is disabled",
        ))
    })
}

/// A control error of the Symantec emulator as an answer.
fn sy_error(e: &crate::SymantecError) -> Response {
    use crate::SymantecError as E;
    let status = match e {
        E::Disabled | E::UnknownTenant(_) | E::UnknownIncident(_) => StatusCode::NOT_FOUND,
        E::InvalidValue { .. } | E::TooMany(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

async fn sy_get_faults(State(sim): State<Arc<Shared>>) -> Response {
    let sym = or_answer!(symantec(&sim));
    let f = sym.lock().faults.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/symantec_mss/faults`: replaces the rates (members left out are 0).
async fn sy_set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sym = or_answer!(symantec(&sim));
    let f: crate::SymantecFaults = or_answer!(parse(&body));
    if !state::faults_valid(&f) {
        return error(
            StatusCode::BAD_REQUEST,
            "every rate_* must be a probability between 0 and 1",
        );
    }
    sym.lock().faults = f.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/symantec_mss/incidents` `{"tenant", "count", "severity"?}`: adds incidents
/// stamped now; answers their numbers.
async fn sy_add_incidents(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sym = or_answer!(symantec(&sim));
    let req: crate::AddSymantecIncidents = or_answer!(parse(&body));
    let added = sym.lock().add(&req);
    match added {
        Ok(numbers) => json(
            StatusCode::OK,
            &serde_json::json!({ "tenant": req.tenant, "added": numbers.len(), "numbers": numbers }),
        ),
        Err(e) => sy_error(&e),
    }
}

/// `GET /_sim/symantec_mss/incidents?tenant=NAME`: the tenant's incidents as stored.
async fn sy_incidents(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let sym = or_answer!(symantec(&sim));
    let pairs = crate::wire::query_pairs(query.as_deref());
    let Some(name) = crate::wire::last_value(&pairs, "tenant") else {
        return error(StatusCode::BAD_REQUEST, "the tenant parameter is required");
    };
    let dumped = sym.lock().dump(name);
    match dumped {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => sy_error(&e),
    }
}

/// `POST /_sim/symantec_mss/analyst` `{"tenant", "incident_number", "status"?,
/// "resolution"?, "severity"?, "comment"?, "analyst"?}`: a change made at the vendor.
async fn sy_analyst(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let sym = or_answer!(symantec(&sim));
    let c: crate::SymantecAnalystChange = or_answer!(parse(&body));
    let done = sym.lock().analyst_change(&c);
    match done {
        Ok(()) => json(
            StatusCode::OK,
            &serde_json::json!({ "tenant": c.tenant, "incident_number": c.incident_number }),
        ),
        Err(e) => sy_error(&e),
    }
}

/// The Umbrella emulator, or the 404 that says it is disabled.
fn umbrella(sim: &Shared) -> Result<&Arc<crate::umbrella::Umb>, Box<Response>> {
    sim.umbrella.as_ref().ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            "the Umbrella emulator is disabled",
        ))
    })
}

/// A control error of the Umbrella emulator as an answer.
fn um_error(e: &crate::UmbrellaError) -> Response {
    use crate::UmbrellaError as E;
    let status = match e {
        E::Disabled | E::UnknownOrg(_) => StatusCode::NOT_FOUND,
        E::InvalidValue { .. } | E::TooMany(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

async fn um_get_faults(State(sim): State<Arc<Shared>>) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let f = umb.lock().faults.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/umbrella/faults`: replaces the rates (members left out are 0).
async fn um_set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let f: crate::UmbrellaFaults = or_answer!(parse(&body));
    if !state::faults_valid(&f) {
        return error(
            StatusCode::BAD_REQUEST,
            "every rate_* must be a probability between 0 and 1",
        );
    }
    umb.lock().faults = f.clone();
    json(StatusCode::OK, &f)
}

async fn um_get_rate_limit(State(sim): State<Arc<Shared>>) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let rl = umb.lock().rate_limit.clone();
    json(StatusCode::OK, &rl)
}

/// `POST /_sim/umbrella/rate_limit` `{"limit": n, "window_ms": ms}`; `null` or a limit of 0
/// turns it off.
async fn um_set_rate_limit(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let rl: Option<crate::UmbrellaRateLimit> = or_answer!(parse(&body));
    if rl.as_ref().is_some_and(|r| r.window_ms == 0) {
        return error(StatusCode::BAD_REQUEST, "window_ms must be at least 1");
    }
    let mut st = umb.lock();
    st.set_rate_limit(rl);
    let now = st.rate_limit.clone();
    drop(st);
    json(StatusCode::OK, &now)
}

/// `POST /_sim/umbrella/records` `{"org", "count", "same_second"?, "category"?, "verdict"?,
/// "identity"?, "kind"?}`: adds records stamped now; answers them as served.
async fn um_add_records(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let req: crate::AddUmbrellaRecords = or_answer!(parse(&body));
    let added = umb.lock().add(&req);
    match added {
        Ok(records) => json(
            StatusCode::OK,
            &serde_json::json!({ "org": req.org, "added": records.len(), "records": records }),
        ),
        Err(e) => um_error(&e),
    }
}

/// `GET /_sim/umbrella/records?org=ID|NAME`: every record of the org as stored, oldest
/// first, as served in UTC.
async fn um_records(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let pairs = crate::wire::query_pairs(query.as_deref());
    let Some(org) = crate::wire::last_value(&pairs, "org") else {
        return error(StatusCode::BAD_REQUEST, "the org parameter is required");
    };
    let dumped = umb.lock().dump(org);
    match dumped {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => um_error(&e),
    }
}

/// Body of `POST /_sim/umbrella/revoke`.
#[derive(Serialize, Deserialize)]
struct Revoke {
    org: String,
    #[serde(default = "yes")]
    revoked: bool,
}

fn yes() -> bool {
    true
}

/// `POST /_sim/umbrella/revoke` `{"org", "revoked"?: true}`: the org's reports answer 403
/// (or, with `false`, work again).
async fn um_revoke(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let r: Revoke = or_answer!(parse(&body));
    let done = umb.lock().set_revoked(&r.org, r.revoked);
    match done {
        Ok(id) => json(
            StatusCode::OK,
            &serde_json::json!({ "org_id": id, "revoked": r.revoked }),
        ),
        Err(e) => um_error(&e),
    }
}

/// `POST /_sim/umbrella/tokens/expire`: every access token stops working.
async fn um_expire_tokens(State(sim): State<Arc<Shared>>) -> Response {
    let umb = or_answer!(umbrella(&sim));
    let n = umb.lock().expire_tokens();
    json(StatusCode::OK, &serde_json::json!({ "expired": n }))
}

/// The XDR emulator, or the 404 that says it is disabled.
fn xdr(sim: &Shared) -> Result<&Arc<crate::xdr::Xdr>, Box<Response>> {
    sim.xdr
        .as_ref()
        .ok_or_else(|| Box::new(error(StatusCode::NOT_FOUND, "the XDR emulator is disabled")))
}

async fn xdr_get_faults(State(sim): State<Arc<Shared>>) -> Response {
    let x = or_answer!(xdr(&sim));
    let f = x.lock().faults.clone();
    json(StatusCode::OK, &f)
}

/// `POST /_sim/xdr/faults`: replaces the rates (members left out are 0).
async fn xdr_set_faults(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let x = or_answer!(xdr(&sim));
    let f: crate::XdrFaults = or_answer!(parse(&body));
    if !state::faults_valid(&f) {
        return error(
            StatusCode::BAD_REQUEST,
            "every rate_* must be a probability between 0 and 1",
        );
    }
    x.lock().faults = f.clone();
    json(StatusCode::OK, &f)
}

/// `GET /_sim/xdr/incidents[?tenant=NAME]`: the incidents as stored, oldest first.
async fn xdr_incidents(State(sim): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    let x = or_answer!(xdr(&sim));
    let pairs = crate::wire::query_pairs(query.as_deref());
    let v = x.lock().dump(crate::wire::last_value(&pairs, "tenant"));
    json(StatusCode::OK, &v)
}

/// `POST /_sim/xdr/tokens/expire`: every access token stops working.
async fn xdr_expire_tokens(State(sim): State<Arc<Shared>>) -> Response {
    let x = or_answer!(xdr(&sim));
    let n = x.lock().expire_tokens();
    json(StatusCode::OK, &serde_json::json!({ "expired": n }))
}
