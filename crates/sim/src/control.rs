//! The control API under `/_sim/` (no authentication, same port): counters, fault rates,
//! adding events, the whole data set of a tenant (the witness tests compare against), and the
//! rate limit. Its answers are plain JSON, not the vendor's envelopes: it is ours.

use crate::state::{self, Shared};
use crate::{AddEvents, Faults};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// The `/_sim` router (nested under `/_sim` by the caller).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/counters", get(counters))
        .route("/endpoints", get(endpoints))
        .route("/faults", get(get_faults).post(set_faults))
        .route("/secure_endpoint/events", get(list_events).post(add_events))
        .route(
            "/secure_endpoint/rate_limit",
            get(get_rate_limit).post(set_rate_limit),
        )
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
    let c = sim.lock().counters();
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
