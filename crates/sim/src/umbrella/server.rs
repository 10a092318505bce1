//! The service on the wire, on two hosts: the main one (`api.umbrella.com`) and a regional
//! warehouse (`api.us.reports.umbrella.com`) that serves the same API.
//!
//! A reports request passes, in order: authentication (a live Bearer token, 401
//! `{"message":"Unauthorized"}`), the org it acts for (its own, `X-Umbrella-OrgID`, or the
//! legacy path's; 403 when the key may not act for it or it is revoked), the redirect of a
//! regional org's request from the main host (302, nothing spent), the per-org rate limit
//! (429 without rate headers), the parameters (400 naming the one at fault), then the
//! injected faults. Error faults answer at once; body faults spoil a 200 after the page is
//! made, and only a page delivered whole counts as served. From the fault draw until its
//! answer is made, the request counts as in flight for its org (the overlap witness,
//! `crate::polls`), after the answer delay a test may have set.

use super::data::Kind;
use super::query::Params;
use super::{Principal, Umb, now_ms};
use crate::net;
use crate::state::BodyFault;
use crate::wire::{self, RequestUrl};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Content type of every answer.
const JSON: &str = "application/json";
/// Largest request body accepted (token forms are tiny).
const MAX_BODY: usize = 64 << 10;
/// The MSSP header naming the child org a parent key acts for.
const ORG_HEADER: &str = "x-umbrella-orgid";
/// The header that narrows `/activity` to one kind of traffic.
const TRAFFIC_HEADER: &str = "x-traffic-type";

/// Which of the two hosts a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Host {
    Main,
    Regional,
}

/// Serves one host until shutdown.
pub(crate) async fn serve(umb: Arc<Umb>, listener: TcpListener, host: Host) {
    let stop = umb.shutdown.clone();
    let app = Router::new().fallback(handle).with_state((umb, host));
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("sim: Umbrella server ({host:?}) stopped: {e}");
    }
}

fn answer(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

/// `{"message": "..."}`, the service's error body.
fn message(status: u16, text: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    answer(status, json!({ "message": text }).to_string())
}

/// What a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Token {
        legacy: bool,
    },
    Activity {
        /// The org of a legacy path.
        org: Option<String>,
        kind: Option<Kind>,
    },
    Unknown,
}

impl Route {
    fn of(path: &str) -> Route {
        let path = path.trim_end_matches('/');
        match path {
            "/auth/v2/token" => return Route::Token { legacy: false },
            "/auth/v2/oauth2/token" => return Route::Token { legacy: true },
            _ => {}
        }
        let (org, rest) = if let Some(rest) = path.strip_prefix("/reports/v2/") {
            (None, rest)
        } else if let Some(rest) = path.strip_prefix("/v2/organizations/") {
            match rest.split_once('/') {
                Some((org, rest)) if !org.is_empty() => (Some(org.to_string()), rest),
                _ => return Route::Unknown,
            }
        } else {
            return Route::Unknown;
        };
        let kind = match rest {
            "activity" => None,
            _ => match rest.strip_prefix("activity/").and_then(Kind::parse) {
                Some(k) => Some(k),
                None => return Route::Unknown,
            },
        };
        Route::Activity { org, kind }
    }

    /// The counters' name of the path kind.
    fn kind_name(&self) -> String {
        match self {
            Route::Token { legacy: false } => "token".into(),
            Route::Token { legacy: true } => "legacy_token".into(),
            Route::Activity { org, kind } => {
                let base = if org.is_some() {
                    "legacy/activity"
                } else {
                    "activity"
                };
                match kind {
                    Some(k) => format!("{base}/{}", k.as_str()),
                    None => base.into(),
                }
            }
            Route::Unknown => "unknown".into(),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Every request of both hosts.
async fn handle(State((umb, host)): State<(Arc<Umb>, Host)>, req: Request) -> Response {
    let fallback = match host {
        Host::Main => umb.base_url.clone(),
        Host::Regional => umb.regional_url.clone(),
    };
    let url = RequestUrl::of(&req, &fallback);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let route = Route::of(&url.path);
    {
        let mut st = umb.lock();
        st.count_kind(&route.kind_name());
        if host == Host::Regional {
            if headers.contains_key(header::AUTHORIZATION) {
                st.counters.regional.with_authorization += 1;
            } else {
                st.counters.regional.without_authorization += 1;
            }
        }
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            umb.lock().count(400);
            return message(400, "The request body could not be read");
        }
    };
    let resp = match route {
        Route::Token { .. } => token(&umb, &method, &headers, &url, &body),
        Route::Activity { org, kind } => {
            return activity(&umb, host, &method, &headers, &url, org.as_deref(), kind).await;
        }
        Route::Unknown => message(404, "Not Found"),
    };
    umb.lock().count(resp.status().as_u16());
    resp
}

/// `POST /auth/v2/token` (and the legacy path, POST or GET): Basic `key:secret`,
/// `grant_type=client_credentials` in the form (or, for GET, the query; absent is taken as
/// client credentials there).
fn token(
    umb: &Umb,
    method: &Method,
    headers: &HeaderMap,
    url: &RequestUrl,
    body: &Bytes,
) -> Response {
    let legacy = url.path.trim_end_matches('/').ends_with("/oauth2/token");
    let grant = if *method == Method::POST {
        let form = wire::query_pairs(std::str::from_utf8(body).ok());
        wire::last_value(&form, "grant_type").map(str::to_string)
    } else if *method == Method::GET && legacy {
        let q = wire::query_pairs(url.raw_query.as_deref());
        Some(
            wire::last_value(&q, "grant_type")
                .unwrap_or("client_credentials")
                .to_string(),
        )
    } else {
        return message(405, "Method Not Allowed");
    };
    let mut st = umb.lock();
    let Some(principal) = net::basic_header(headers).and_then(|(k, s)| st.login(&k, &s)) else {
        return message(401, "Unauthorized");
    };
    match grant.as_deref() {
        Some("client_credentials") => {}
        None => return message(400, "Missing required parameter: grant_type"),
        Some(other) => {
            return message(
                400,
                &format!("Unsupported grant_type '{other}': use client_credentials"),
            );
        }
    }
    match st.issue(principal) {
        Ok((access, ttl)) => answer(
            StatusCode::OK,
            json!({"token_type": "bearer", "access_token": access, "expires_in": ttl}).to_string(),
        ),
        Err(()) => message(429, "Too Many Requests"),
    }
}

/// Whom a reports request acts for.
enum Target {
    /// The parent org itself (no records of its own).
    Parent,
    Org(usize),
}

/// The child org a principal acts for, or the 403 that refuses it (a parent naming its own
/// org is recognised before this).
fn target(
    st: &super::UmbState,
    principal: Principal,
    named: Option<&str>,
) -> Result<Target, &'static str> {
    let named = match named {
        None => {
            return Ok(match principal {
                Principal::Parent => Target::Parent,
                Principal::Child(i) => Target::Org(i),
            });
        }
        Some(n) => n.trim(),
    };
    let id = named.parse::<u64>().map_err(|_| "Forbidden")?;
    match principal {
        Principal::Parent => st.org_by_id(id).map(Target::Org).ok_or("Forbidden"),
        Principal::Child(i) if st.orgs[i].id == id => Ok(Target::Org(i)),
        Principal::Child(_) => Err("Forbidden"),
    }
}

/// `/activity[/kind]` on either host.
async fn activity(
    umb: &Umb,
    host: Host,
    method: &Method,
    headers: &HeaderMap,
    url: &RequestUrl,
    path_org: Option<&str>,
    kind: Option<Kind>,
) -> Response {
    let finish = |st: &mut super::UmbState, r: Response| {
        st.count(r.status().as_u16());
        r
    };
    // Gate: method, token, org, revocation, redirect, rate limit, parameters, fault draw.
    let (org, params, kind, plan, source) = {
        let mut st = umb.lock();
        if *method != Method::GET {
            return finish(&mut st, message(405, "Method Not Allowed"));
        }
        let Some(principal) = bearer(headers).and_then(|t| st.bearer(&t)) else {
            return finish(&mut st, message(401, "Unauthorized"));
        };
        let header_org = headers.get(ORG_HEADER).map(|v| v.to_str().unwrap_or(""));
        let named = path_org.or(header_org);
        let parent_self = named
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|id| id == umb.parent_org_id && principal == Principal::Parent);
        let t = if parent_self {
            Ok(Target::Parent)
        } else {
            target(&st, principal, named)
        };
        let org = match t {
            Ok(Target::Org(i)) => i,
            Ok(Target::Parent) => {
                st.counters.parent_org_requests += 1;
                let pairs = wire::query_pairs(url.raw_query.as_deref());
                let r = match Params::parse(&pairs, now_ms()) {
                    Ok(_) => answer(StatusCode::OK, r#"{"meta":{},"data":[]}"#),
                    Err(e) => message(400, &e.to_string()),
                };
                return finish(&mut st, r);
            }
            Err(text) => {
                // Counted against the org named, when it exists.
                if let Some(i) = named
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .and_then(|id| st.org_by_id(id))
                {
                    st.orgs[i].counters.reports_requests += 1;
                    st.orgs[i].counters.status_403 += 1;
                }
                return finish(&mut st, message(403, text));
            }
        };
        st.orgs[org].counters.reports_requests += 1;
        if st.orgs[org].revoked {
            st.orgs[org].counters.status_403 += 1;
            return finish(&mut st, message(403, "Forbidden"));
        }
        if host == Host::Main && st.orgs[org].regional {
            st.counters.redirects += 1;
            st.orgs[org].counters.redirects += 1;
            let location = match &url.raw_query {
                Some(q) => format!("{}{}?{q}", umb.regional_url, url.path),
                None => format!("{}{}", umb.regional_url, url.path),
            };
            let mut r = message(302, "Found");
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return finish(&mut st, r);
        }
        if !st.consume(org) {
            st.orgs[org].counters.status_429 += 1;
            return finish(&mut st, message(429, "Too Many Requests"));
        }
        let pairs = wire::query_pairs(url.raw_query.as_deref());
        let params = match Params::parse(&pairs, now_ms()) {
            Ok(p) => p,
            Err(e) => return finish(&mut st, message(400, &e.to_string())),
        };
        let kind = match (kind, headers.get(TRAFFIC_HEADER)) {
            (Some(k), _) => Some(k),
            (None, None) => None,
            (None, Some(v)) => match v.to_str().ok().and_then(Kind::parse) {
                Some(k) => Some(k),
                None => {
                    return finish(
                        &mut st,
                        message(400, "Invalid value for header x-traffic-type"),
                    );
                }
            },
        };
        let plan = st.draw();
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
        let source = (st.orgs[org].id.to_string(), st.orgs[org].name.clone());
        (org, params, kind, plan, source)
    };

    // In flight from here until the page is made (the overlap witness), after the answer
    // delay a test may have set.
    let _poll = umb.polls.enter(&source.0, &source.1);
    umb.polls.wait(&umb.shutdown).await;
    if let Some(delay) = plan.slow {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = umb.shutdown.cancelled() => {}
        }
    }
    let mut st = umb.lock();
    if let Some(code) = plan.error {
        let text = match code {
            429 => {
                st.orgs[org].counters.status_429 += 1;
                "Too Many Requests"
            }
            500 => "Internal Server Error",
            _ => "Service Unavailable",
        };
        return finish(&mut st, message(code, text));
    }
    let (page, duplicated) = st.page(org, &params, kind, plan.duplicate);
    if duplicated {
        st.counters.faults.duplicate += 1;
    }
    let seqs: Vec<u64> = page.iter().map(|(s, _)| *s).collect();
    let data: Vec<Value> = page.into_iter().map(|(_, v)| v).collect();
    let text = json!({"meta": {}, "data": data}).to_string();
    match plan.body {
        None => st.mark_served(org, &seqs),
        Some(BodyFault::Drop) => st.counters.faults.drop += 1,
        Some(BodyFault::Truncate) => st.counters.faults.truncate += 1,
    }
    st.count(200);
    drop(st);
    let resp = answer(StatusCode::OK, text.clone());
    match plan.body {
        None => resp,
        Some(fault) => net::spoiled(resp.into_parts().0, Bytes::from(text), fault),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/auth/v2/token"), Route::Token { legacy: false });
        assert_eq!(
            Route::of("/auth/v2/oauth2/token"),
            Route::Token { legacy: true }
        );
        assert_eq!(
            Route::of("/reports/v2/activity"),
            Route::Activity {
                org: None,
                kind: None
            }
        );
        assert_eq!(
            Route::of("/reports/v2/activity/dns"),
            Route::Activity {
                org: None,
                kind: Some(Kind::Dns)
            }
        );
        assert_eq!(
            Route::of("/v2/organizations/1234567/activity/proxy"),
            Route::Activity {
                org: Some("1234567".into()),
                kind: Some(Kind::Proxy)
            }
        );
        assert_eq!(Route::of("/reports/v2/activity/smtp"), Route::Unknown);
        assert_eq!(Route::of("/v2/organizations//activity"), Route::Unknown);
        assert_eq!(
            Route::of("/v2/organizations/1/activity/ip").kind_name(),
            "legacy/activity/ip"
        );
    }
}
