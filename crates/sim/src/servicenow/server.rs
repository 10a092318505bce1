//! The instance on the wire: `/oauth_token.do`, `/api/now[/v1|/v2]/table/{table}[/{sys_id}]`,
//! and what stands in front of them.
//!
//! Every request passes, in order: the outage switch (503 with the instance's HTML page,
//! not JSON, as a down instance answers), authentication (Basic or a Bearer token; 401 in
//! the error envelope), the opt-in per-user rate limit (429 with `Retry-After`), then the
//! injected faults. Error faults answer before anything is written; body faults spoil a 2xx
//! answer after the write; a commit-drop closes the connection after the write without any
//! answer: the listener wraps each connection so a handler can cut it (see [`Conn`]).

use super::instance::{self, Display, Refusal, Row, Table, View};
use super::query::Query;
use super::{Plan, Sn, Spoil, WriteOutcome, now_text};
use crate::net::{self, Conn, KillListener};
use crate::wire::{self, RequestUrl};
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Content type of every Table API answer (the instance's spelling).
const JSON: &str = "application/json;charset=UTF-8";
/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;
/// `sysparm_limit` when absent: the Table API's documented default.
const DEFAULT_LIMIT: usize = 10_000;

/// Binds the instance's port.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<(KillListener, SocketAddr)> {
    net::bind_killable(addr, "ServiceNow").await
}

/// Serves until shutdown.
pub(crate) async fn serve(sn: Arc<Sn>, listener: KillListener) {
    let stop = sn.shutdown.clone();
    let app = Router::new().fallback(handle).with_state(sn);
    if let Err(e) = axum::serve(listener, app.into_make_service_with_connect_info::<Conn>())
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("sim: ServiceNow server stopped: {e}");
    }
}

// ---------------------------------------------------------------------------------------
// Answers.

fn respond(status: StatusCode, body: impl Into<Body>, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_answer(status: StatusCode, v: &Value) -> Response {
    respond(status, v.to_string(), JSON)
}

/// `{"error":{"message","detail"},"status":"failure"}`.
pub(crate) fn failure(status: u16, message: &str, detail: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_answer(
        status,
        &json!({"error": {"message": message, "detail": detail}, "status": "failure"}),
    )
}

fn refused(r: &Refusal) -> Response {
    failure(r.status, &r.message, &r.detail)
}

fn bad_param(detail: &str) -> Response {
    failure(400, "Invalid request parameter", detail)
}

fn unauthenticated() -> Response {
    failure(
        401,
        "User Not Authenticated",
        "Required to provide Auth information",
    )
}

/// What a hibernating or down instance shows: an HTML page, not the JSON envelope.
fn outage_page() -> Response {
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        "<html><head><title>Instance Unavailable</title></head><body><h1>Instance \
         Unavailable</h1><p>This instance is currently unavailable. Please try again \
         later.</p></body></html>",
        "text/html;charset=UTF-8",
    )
}

fn put_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// 429 `Rate limit exceeded` with `Retry-After` and the rule headers (`limit` is absent for
/// an injected 429, which no configured rule produced).
fn rate_limited(retry_after: u64, limit: Option<u64>, detail: &str) -> Response {
    let mut r = failure(429, "Rate limit exceeded", detail);
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + retry_after;
    let h = r.headers_mut();
    put_header(h, "retry-after", &retry_after.to_string());
    if let Some(limit) = limit {
        put_header(h, "x-ratelimit-limit", &limit.to_string());
    }
    put_header(h, "x-ratelimit-reset", &reset.to_string());
    put_header(h, "x-ratelimit-rule", "socbridge-sim per-user rule");
    r
}

// ---------------------------------------------------------------------------------------
// Routing.

/// Which resource a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Token,
    Table {
        /// `/api/now/table`, `/api/now/v1/table` or `/api/now/v2/table`: links and
        /// `Location` keep the client's spelling.
        prefix: String,
        /// Explicit v1: an empty list is a 404 (the unversioned path is the latest, v2).
        v1: bool,
        table: String,
        id: Option<String>,
    },
    Unknown,
}

impl Route {
    fn of(path: &str) -> Route {
        if path == "/oauth_token.do" {
            return Route::Token;
        }
        let Some(rest) = path.strip_prefix("/api/now/") else {
            return Route::Unknown;
        };
        let (version, rest) = match rest.split_once('/') {
            Some((v @ ("v1" | "v2"), r)) => (Some(v), r),
            _ => (None, rest),
        };
        let Some(rest) = rest.strip_prefix("table/") else {
            return Route::Unknown;
        };
        let mut parts = rest.split('/');
        let table = parts.next().unwrap_or_default().to_string();
        let id = parts.next().map(str::to_string);
        if table.is_empty() || parts.next().is_some() || id.as_deref() == Some("") {
            return Route::Unknown;
        }
        Route::Table {
            prefix: match version {
                Some(v) => format!("/api/now/{v}/table"),
                None => "/api/now/table".to_string(),
            },
            v1: version == Some("v1"),
            table,
            id,
        }
    }
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    )
}

/// The user named by `Authorization` (Basic user/password, or a live Bearer token).
fn authenticate(st: &super::SnState, headers: &HeaderMap) -> Option<usize> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return st.bearer(cred.trim());
    }
    let (user, password) = net::basic(scheme, cred)?;
    st.inst.login(&user, &password)
}

/// Every request of the instance's port.
async fn handle(
    State(sn): State<Arc<Sn>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let url = RequestUrl::of(&req, &sn.base_url);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let route = Route::of(&url.path);
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            sn.lock().count(400);
            return failure(
                400,
                "Exception while reading request",
                "The request body could not be read (at most 4 MiB)",
            );
        }
    };

    // Gate: outage, authentication, rate limit, fault draw; one lock.
    let admitted = {
        let mut st = sn.lock();
        if st.outage {
            st.counters.faults.outage += 1;
            st.count(503);
            return outage_page();
        }
        let user = match &route {
            Route::Table { .. } => match authenticate(&st, &headers) {
                Some(u) => Some(u),
                None => {
                    st.count(401);
                    return unauthenticated();
                }
            },
            _ => None,
        };
        if let Some(u) = user
            && let Err((retry, limit)) = st.consume(u)
        {
            st.count(429);
            return rate_limited(
                retry,
                Some(limit),
                &format!("The per-user limit of {limit} requests per window is spent"),
            );
        }
        let plan = match route {
            Route::Unknown => Plan::default(),
            _ => st.draw(),
        };
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
        (user, plan)
    };
    let (user, plan) = admitted;

    if let Some(delay) = plan.slow {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sn.shutdown.cancelled() => {}
        }
    }
    if let Some(code) = plan.error {
        sn.lock().count(code);
        return match code {
            429 => rate_limited(1, None, "Too many requests (injected fault)"),
            500 => failure(500, "Internal Server Error", "Injected fault"),
            _ => failure(503, "Service Unavailable", "Injected fault"),
        };
    }

    let (resp, committed) = match (&route, user) {
        (Route::Token, _) => (token(&sn, &method, &headers, &body), false),
        (
            Route::Table {
                prefix,
                v1,
                table,
                id,
            },
            Some(user),
        ) => table_op(
            &sn,
            user,
            &method,
            &TableReq {
                prefix,
                v1: *v1,
                table,
                id: id.as_deref(),
                url: &url,
                body: &body,
            },
        ),
        _ => (
            failure(
                400,
                "Requested URI does not represent any resource",
                &format!("No resource at {}", url.path),
            ),
            false,
        ),
    };

    if plan.commit_drop && committed && is_write(&method) {
        // The write is saved; the answer never leaves: the socket fails before the head.
        conn.kill();
        tracing::debug!(peer = %conn.peer, path = %url.path, "sim: ServiceNow write committed, answer dropped");
        let mut st = sn.lock();
        st.counters.faults.commit_drop += 1;
        st.counters.requests.total += 1;
        return resp;
    }
    let status = resp.status();
    let resp = match plan.body {
        Some(s) if status.is_success() => spoil(&sn, resp, s).await,
        _ => resp,
    };
    sn.lock().count(status.as_u16());
    resp
}

/// Applies a body fault to a successful answer (counted only when there was a body).
async fn spoil(sn: &Sn, resp: Response, fault: Spoil) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return failure(500, "Internal Server Error", "could not buffer the answer");
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::from(bytes));
    }
    {
        let mut st = sn.lock();
        match fault {
            Spoil::Drop => st.counters.faults.drop += 1,
            Spoil::Truncate => st.counters.faults.truncate += 1,
        }
    }
    net::spoiled(parts, bytes, fault)
}

// ---------------------------------------------------------------------------------------
// OAuth.

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json_answer(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

/// `POST /oauth_token.do` (form): grant types `password`, `client_credentials` (runs as the
/// integration user) and `refresh_token`. Client credentials come in the form or in a Basic
/// header. Wrong credentials get the instance's terse 401.
fn token(sn: &Sn, method: &Method, headers: &HeaderMap, body: &[u8]) -> Response {
    if *method != Method::POST {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use POST with a form body",
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |k: &str| wire::last_value(&form, k).map(str::to_string);
    let from_header = net::basic_header(headers);
    let (client_id, client_secret) = match (get("client_id"), get("client_secret"), from_header) {
        (Some(id), Some(secret), _) => (id, secret),
        (_, _, Some((id, secret))) => (id, secret),
        (None, _, None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_id is required",
            );
        }
        (Some(_), None, None) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_secret is required",
            );
        }
    };
    let Some(grant) = get("grant_type") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        );
    };
    let denied = || oauth_error(StatusCode::UNAUTHORIZED, "server_error", "access_denied");
    let oauth = &sn.endpoints.oauth;
    if client_id != oauth.client_id || client_secret != oauth.client_secret {
        return denied();
    }
    let mut st = sn.lock();
    let (user, refresh) = match grant.as_str() {
        "password" => {
            let (Some(u), Some(p)) = (get("username"), get("password")) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "username and password are required for grant_type=password",
                );
            };
            match st.inst.login(&u, &p) {
                Some(user) => (user, true),
                None => return denied(),
            }
        }
        "client_credentials" => (instance::INTEGRATION, false),
        "refresh_token" => {
            let Some(r) = get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required for grant_type=refresh_token",
                );
            };
            match st.refresh_user(&r) {
                Some(user) => (user, false),
                None => return denied(),
            }
        }
        other => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!(
                    "grant_type '{other}' is not one of password, client_credentials, refresh_token"
                ),
            );
        }
    };
    let (access, refresh_token, ttl) = st.issue(user, refresh);
    drop(st);
    let mut v = json!({
        "access_token": access,
        "scope": "useraccount",
        "token_type": "Bearer",
        "expires_in": ttl,
    });
    if let Some(r) = refresh_token {
        v["refresh_token"] = Value::String(r);
    }
    json_answer(StatusCode::OK, &v)
}

// ---------------------------------------------------------------------------------------
// Table API.

struct TableReq<'a> {
    prefix: &'a str,
    v1: bool,
    table: &'a str,
    id: Option<&'a str>,
    url: &'a RequestUrl,
    body: &'a [u8],
}

/// The `sysparm_*` parameters.
struct Params {
    view: View,
    query: Query,
    limit: usize,
    offset: usize,
    suppress_pagination: bool,
    no_count: bool,
}

fn flag(pairs: &[(String, String)], name: &str) -> Result<bool, String> {
    match wire::last_value(pairs, name) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
        Some(v) => Err(format!("{name} must be true or false, got '{v}'")),
    }
}

impl Params {
    fn parse(raw: Option<&str>) -> Result<Params, String> {
        let pairs = wire::query_pairs(raw);
        let display = match wire::last_value(&pairs, "sysparm_display_value") {
            None => Display::False,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "false" | "" => Display::False,
                "true" => Display::True,
                "all" => Display::All,
                _ => {
                    return Err(format!(
                        "sysparm_display_value must be true, false or all, got '{v}'"
                    ));
                }
            },
        };
        let fields = wire::last_value(&pairs, "sysparm_fields")
            .map(|v| {
                v.split(',')
                    .map(|f| f.trim().to_string())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let limit = match wire::last_value(&pairs, "sysparm_limit") {
            None | Some("") => DEFAULT_LIMIT,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(format!(
                        "sysparm_limit must be a positive integer, got '{v}'"
                    ));
                }
            },
        };
        let offset = match wire::last_value(&pairs, "sysparm_offset") {
            None | Some("") => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("sysparm_offset must be a non-negative integer, got '{v}'"))?,
        };
        let query = Query::parse(wire::last_value(&pairs, "sysparm_query").unwrap_or(""))
            .map_err(|e| e.to_string())?;
        Ok(Params {
            view: View {
                display,
                exclude_reference_link: flag(&pairs, "sysparm_exclude_reference_link")?,
                fields,
            },
            query,
            limit,
            offset,
            suppress_pagination: flag(&pairs, "sysparm_suppress_pagination_header")?,
            no_count: flag(&pairs, "sysparm_no_count")?,
        })
    }
}

/// The request URL with `sysparm_limit`/`sysparm_offset` set, the other parameters kept in
/// order and re-encoded: a `,` (as in `sysparm_fields=a,b`) becomes `%2C`, so a client that
/// splits the `Link` header at commas gets whole URLs, as from the instance.
fn page_url(url: &RequestUrl, limit: usize, offset: usize) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in wire::query_pairs(url.raw_query.as_deref()) {
        if k != "sysparm_limit" && k != "sysparm_offset" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("sysparm_limit", &limit.to_string());
    out.append_pair("sysparm_offset", &offset.to_string());
    format!("{}{}?{}", url.base, url.path, out.finish())
}

/// `Link: <first>;rel="first",<prev>;rel="prev",<next>;rel="next",<last>;rel="last"`.
fn link_header(url: &RequestUrl, total: usize, limit: usize, offset: usize) -> String {
    let last = if total == 0 {
        0
    } else {
        (total - 1) / limit * limit
    };
    let mut links = vec![format!("<{}>;rel=\"first\"", page_url(url, limit, 0))];
    if offset > 0 {
        links.push(format!(
            "<{}>;rel=\"prev\"",
            page_url(url, limit, offset.saturating_sub(limit))
        ));
    }
    if offset.saturating_add(limit) < total {
        links.push(format!(
            "<{}>;rel=\"next\"",
            page_url(url, limit, offset + limit)
        ));
    }
    links.push(format!("<{}>;rel=\"last\"", page_url(url, limit, last)));
    links.join(",")
}

fn result(status: StatusCode, v: Value) -> Response {
    json_answer(status, &json!({ "result": v }))
}

/// The one record of a write: the detail of the 400 when the body is not a JSON object.
fn parse_body(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        // The API takes one record; of an array it works on the first (KB0534905).
        Ok(Value::Array(items)) => match items.into_iter().next() {
            Some(Value::Object(m)) => Ok(m),
            _ => Err("The payload must be a JSON object".into()),
        },
        Ok(_) => Err("The payload must be a JSON object".into()),
        Err(e) => Err(format!("The payload is not valid JSON: {e}")),
    }
}

fn unreadable(detail: &str) -> Response {
    failure(400, "Exception while reading request", detail)
}

fn not_allowed(method: &Method, what: &str) -> Response {
    failure(
        405,
        "Method not Supported",
        &format!("{method} is not supported on {what}"),
    )
}

/// One Table API request, answered under the lock. Returns whether a write was committed.
fn table_op(sn: &Sn, user: usize, method: &Method, r: &TableReq<'_>) -> (Response, bool) {
    let Some(table) = Table::parse(r.table) else {
        return (
            failure(
                400,
                &format!("Invalid table {}", r.table),
                "The table does not exist or is not served by this instance",
            ),
            false,
        );
    };
    let p = match Params::parse(r.url.raw_query.as_deref()) {
        Ok(p) => p,
        Err(detail) => return (bad_param(&detail), false),
    };
    let base = r.url.base.as_str();
    match (method.clone(), r.id) {
        (Method::GET, None) => (list(sn, table, &p, r), false),
        (Method::GET, Some(id)) => {
            let st = sn.lock();
            let row = match table {
                Table::Incident => st.inst.incident(id),
                Table::Journal => st
                    .inst
                    .journal
                    .iter()
                    .find(|e| e.row.get("sys_id").map(String::as_str) == Some(id))
                    .map(|e| &e.row),
            };
            match row {
                Some(row) => (
                    result(
                        StatusCode::OK,
                        Value::Object(st.inst.render(table, row, &p.view, base)),
                    ),
                    false,
                ),
                None => (refused(&instance::no_record()), false),
            }
        }
        (_, _) if table == Table::Journal && is_write(method) => {
            let mut st = sn.lock();
            st.write_outcome(user, WriteOutcome::Refused);
            (
                failure(
                    403,
                    "Operation Failed",
                    "ACL Exception: journal entries are written through the record's work_notes and comments",
                ),
                false,
            )
        }
        (Method::POST, None) => {
            let body = match parse_body(r.body) {
                Ok(b) => b,
                Err(detail) => return (unreadable(&detail), false),
            };
            let mut st = sn.lock();
            match st.inst.insert(user, &body, &now_text()) {
                Ok(change) => {
                    st.committed(user, &change, sn);
                    let id = change.record.get("sys_id").cloned().unwrap_or_default();
                    let v = Value::Object(st.inst.render(table, &change.record, &p.view, base));
                    drop(st);
                    let mut resp = result(StatusCode::CREATED, v);
                    put_header(
                        resp.headers_mut(),
                        "location",
                        &format!("{base}{}/incident/{id}", r.prefix),
                    );
                    (resp, true)
                }
                Err(e) => {
                    st.write_outcome(user, WriteOutcome::Refused);
                    (refused(&e), false)
                }
            }
        }
        (Method::PATCH | Method::PUT, Some(id)) => {
            let body = match parse_body(r.body) {
                Ok(b) => b,
                Err(detail) => return (unreadable(&detail), false),
            };
            let mut st = sn.lock();
            match st.inst.update(user, id, &body, &now_text()) {
                Ok(Some(change)) => {
                    st.committed(user, &change, sn);
                    let v = Value::Object(st.inst.render(table, &change.record, &p.view, base));
                    (result(StatusCode::OK, v), true)
                }
                Ok(None) => {
                    st.write_outcome(user, WriteOutcome::Unchanged);
                    let v = st
                        .inst
                        .incident(id)
                        .map(|row| Value::Object(st.inst.render(table, row, &p.view, base)))
                        .unwrap_or(Value::Null);
                    (result(StatusCode::OK, v), true)
                }
                Err(e) => {
                    st.write_outcome(user, WriteOutcome::Refused);
                    (refused(&e), false)
                }
            }
        }
        (Method::DELETE, Some(id)) => {
            let mut st = sn.lock();
            match st.inst.delete(id) {
                Ok(_) => {
                    st.write_outcome(user, WriteOutcome::Deleted);
                    let mut resp = Response::new(Body::empty());
                    *resp.status_mut() = StatusCode::NO_CONTENT;
                    (resp, true)
                }
                Err(e) => {
                    st.write_outcome(user, WriteOutcome::Refused);
                    (refused(&e), false)
                }
            }
        }
        (m, None) => (not_allowed(&m, &format!("{}/{}", r.prefix, r.table)), false),
        (m, Some(id)) => (
            not_allowed(&m, &format!("{}/{}/{id}", r.prefix, r.table)),
            false,
        ),
    }
}

/// `GET /table/{table}`: filtered, sorted, paged; `X-Total-Count` and `Link` headers.
fn list(sn: &Sn, table: Table, p: &Params, r: &TableReq<'_>) -> Response {
    let (items, total) = {
        let st = sn.lock();
        let rows: Vec<&Row> = st.inst.select(table, &p.query);
        let total = rows.len();
        let items: Vec<Value> = rows
            .into_iter()
            .skip(p.offset)
            .take(p.limit)
            .map(|row| Value::Object(st.inst.render(table, row, &p.view, &r.url.base)))
            .collect();
        (items, total)
    };
    let mut resp = if items.is_empty() && r.v1 {
        refused(&instance::no_record())
    } else {
        result(StatusCode::OK, Value::Array(items))
    };
    let h = resp.headers_mut();
    if !p.no_count {
        put_header(h, "x-total-count", &total.to_string());
    }
    if !p.suppress_pagination {
        put_header(h, "link", &link_header(r.url, total, p.limit, p.offset));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/oauth_token.do"), Route::Token);
        assert_eq!(
            Route::of("/api/now/v2/table/incident/abc"),
            Route::Table {
                prefix: "/api/now/v2/table".into(),
                v1: false,
                table: "incident".into(),
                id: Some("abc".into()),
            }
        );
        assert!(matches!(
            Route::of("/api/now/v1/table/incident"),
            Route::Table {
                v1: true,
                id: None,
                ..
            }
        ));
        assert!(matches!(
            Route::of("/api/now/table/incident"),
            Route::Table { v1: false, .. }
        ));
        assert_eq!(Route::of("/api/now/table/"), Route::Unknown);
        assert_eq!(Route::of("/api/now/table/incident/a/b"), Route::Unknown);
        assert_eq!(Route::of("/api/now/stats/incident"), Route::Unknown);
    }

    #[test]
    fn links_page_through_and_keep_the_query() {
        let url = RequestUrl {
            base: "http://h:1".into(),
            path: "/api/now/table/incident".into(),
            raw_query: Some("sysparm_query=active%3Dtrue&sysparm_limit=2&sysparm_offset=2".into()),
        };
        let l = link_header(&url, 5, 2, 2);
        assert_eq!(
            l,
            "<http://h:1/api/now/table/incident?sysparm_query=active%3Dtrue&sysparm_limit=2&sysparm_offset=0>;rel=\"first\",\
             <http://h:1/api/now/table/incident?sysparm_query=active%3Dtrue&sysparm_limit=2&sysparm_offset=0>;rel=\"prev\",\
             <http://h:1/api/now/table/incident?sysparm_query=active%3Dtrue&sysparm_limit=2&sysparm_offset=4>;rel=\"next\",\
             <http://h:1/api/now/table/incident?sysparm_query=active%3Dtrue&sysparm_limit=2&sysparm_offset=4>;rel=\"last\""
        );
        assert!(!link_header(&url, 4, 2, 2).contains("next"));
    }
}
