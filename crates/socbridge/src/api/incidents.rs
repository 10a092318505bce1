//! `/api/v1/incidents`: list (the CLI's filters, cursor paging), get, findings, update,
//! contain, release. Every route is scoped to the caller's tenants: another tenant's incident
//! answers 404 exactly like a missing one.

use super::ApiState;
use super::auth::Caller;
use super::problem::{ApiResult, Problem};
use super::schemas;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use socbridge_model::{
    IncidentDetail, IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView, Severity,
    Timestamp,
};
use socbridge_store::{ManualAction, TokenRole};
use utoipa::{IntoParams, ToSchema};

/// The most incidents one page holds.
pub const MAX_PAGE: u32 = 1000;
const DEFAULT_PAGE: u32 = 100;
/// The longest free-text filter.
const MAX_TEXT: usize = 200;

/// The filters of `GET /api/v1/incidents` (those of `socbridge incidents list`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Tenants, comma-separated (default: every tenant the token may see).
    pub tenant: Option<String>,
    /// Active since: a duration back from now (`24h`, `90m`) or an RFC 3339 time.
    pub since: Option<String>,
    /// Severities, comma-separated (`informational,low,medium,high,critical`).
    pub severity: Option<String>,
    /// Statuses, comma-separated (`new,in_progress,on_hold,resolved,closed`).
    pub status: Option<String>,
    /// Incidents with this IP address as an observable.
    pub source_ip: Option<String>,
    /// Incidents with a finding from this source: a source's name or a source kind
    /// (`secure_endpoint`, `symantec_mss`, `umbrella`).
    pub source: Option<String>,
    /// Free text, any case: in the title, an observable's value (hostname, IP, user, hash...),
    /// the assignee or the ticket number; a number also finds the incident of that id.
    pub q: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of incidents, newest activity first.
#[derive(Debug, Serialize, ToSchema)]
pub struct IncidentPage {
    #[schema(value_type = Vec<schemas::Incident>)]
    pub items: Vec<IncidentView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn split(list: &Option<String>) -> impl Iterator<Item = &str> {
    list.iter()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A query parameter's value, trimmed; an empty one (`?since=`) counts as not given.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn encode_cursor(at: Timestamp, id: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.as_micros()))
}

fn decode_cursor(text: &str) -> Option<(Timestamp, i64)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once(':')?;
    Some((Timestamp::from_micros(at.parse().ok()?), id.parse().ok()?))
}

/// The store filter of a request, limited to the caller's tenants. `None`: the caller may see
/// none of the tenants asked for (an empty page, not an error: a tenant's existence is not
/// revealed).
pub fn filter_for(caller: &Caller, p: &ListParams) -> ApiResult<Option<IncidentFilter>> {
    let now = Timestamp::now();
    let since = match given(&p.since) {
        Some(s) => Some(
            crate::incidents::parse_since(s, now)
                .map_err(|e| Problem::bad_request(format!("since: {e:#}")))?,
        ),
        None => None,
    };
    let severities = split(&p.severity)
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| Problem::bad_request(format!("severity: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let statuses = split(&p.status)
        .map(|s| {
            s.parse::<IncidentStatus>()
                .map_err(|e| Problem::bad_request(format!("status: {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if let Some(ip) = given(&p.source_ip) {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| Problem::bad_request(format!("source_ip: `{ip}` is not an IP address")))?;
    }
    if let Some(q) = given(&p.q) {
        if q.chars().count() > MAX_TEXT {
            return Err(Problem::bad_request(format!(
                "q: longer than {MAX_TEXT} characters"
            )));
        }
    }
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit: {limit} is not between 1 and {MAX_PAGE}"
        )));
    }
    let before = match given(&p.cursor) {
        Some(c) => Some(decode_cursor(c).ok_or_else(|| {
            Problem::bad_request("cursor: not a cursor of this API (pass `next_cursor` as given)")
        })?),
        None => None,
    };
    let asked: Vec<String> = split(&p.tenant).map(str::to_string).collect();
    let tenants = match (caller.scope(), asked.is_empty()) {
        (None, _) => asked,
        (Some(scope), true) => scope.to_vec(),
        (Some(_), false) => asked.into_iter().filter(|t| caller.may_see(t)).collect(),
    };
    if caller.scope().is_some() && tenants.is_empty() {
        return Ok(None);
    }
    Ok(Some(IncidentFilter {
        tenants,
        since,
        severities,
        statuses,
        source_ip: given(&p.source_ip).map(str::to_string),
        source: given(&p.source).map(str::to_string),
        text: given(&p.q).map(str::to_string),
        limit: Some(limit),
        before,
    }))
}

/// List incidents, newest activity first, one page at a time.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", params(ListParams),
    security(("bearer" = [])),
    responses((status = 200, body = IncidentPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<IncidentPage>> {
    let Query(params) = params?;
    let Some(filter) = filter_for(&caller, &params)? else {
        return Ok(Json(IncidentPage {
            items: Vec::new(),
            next_cursor: None,
        }));
    };
    let items = state.engine.store().list_incidents(&filter).await?;
    let full = filter.limit.is_some_and(|l| items.len() >= l as usize);
    let next_cursor = match items.last() {
        Some(last) if full => Some(encode_cursor(last.updated_at, last.id)),
        _ => None,
    };
    Ok(Json(IncidentPage { items, next_cursor }))
}

fn id_of(path: Result<Path<String>, PathRejection>) -> ApiResult<i64> {
    let Path(text) = path?;
    text.parse::<i64>()
        .map_err(|_| Problem::bad_request(format!("incident id `{text}` is not an integer")))
}

fn missing(id: i64) -> Problem {
    Problem::not_found(format!("no incident with id {id}"))
}

/// One incident with its findings, observables, ticket, actions and timeline. An admin token
/// also gets each isolation's `unlock_code`; an analyst's never does.
#[utoipa::path(get, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path, description = "incident id"), super::ocsf::FormatParam),
    security(("bearer" = [])),
    responses((status = 200, body = schemas::IncidentOrOcsf,
            description = "the incident with its findings and timeline (admins also see \
            isolation unlock codes); with `format=ocsf`, an OCSF 1.8.0 Incident Finding"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    format: Result<Query<super::ocsf::FormatParam>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let id = id_of(path)?;
    let format = super::ocsf::format_of(format)?;
    let detail: IncidentDetail = state
        .engine
        .store()
        .get_incident(id, caller.scope())
        .await?
        .ok_or_else(|| missing(id))?;
    if format == super::ocsf::Format::Ocsf {
        return Ok(super::ocsf::incident(&detail));
    }
    let mut json = serde_json::to_value(&detail).map_err(Problem::internal)?;
    if caller.0.role == TokenRole::Admin {
        let codes = crate::incidents::unlock_codes(&state.engine, &detail.incident)
            .await
            .map_err(Problem::internal)?;
        crate::incidents::insert_unlock_codes(&mut json, &codes);
    }
    Ok(Json(json).into_response())
}

/// The findings of an incident, oldest first.
#[utoipa::path(get, path = "/api/v1/incidents/{id}/findings", tag = "incidents",
    params(("id" = i64, Path, description = "incident id"), super::ocsf::FormatParam),
    security(("bearer" = [])),
    responses((status = 200, description = "the incident's findings, oldest first; with \
            `format=ocsf`, one OCSF 1.8.0 Detection Finding per line (NDJSON)",
            content((Vec<schemas::Finding> = "application/json"),
                (String = "application/x-ndjson"))),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn findings(
    State(state): State<ApiState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    format: Result<Query<super::ocsf::FormatParam>, QueryRejection>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let id = id_of(path)?;
    let format = super::ocsf::format_of(format)?;
    let detail = state
        .engine
        .store()
        .get_incident(id, caller.scope())
        .await?
        .ok_or_else(|| missing(id))?;
    Ok(match format {
        super::ocsf::Format::Ocsf => super::ocsf::findings(&detail),
        super::ocsf::Format::Json => Json(detail.findings).into_response(),
    })
}

/// An analyst's change; absent fields stay as they are, `""` clears resolution or assignee.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentPatch {
    #[schema(value_type = Option<schemas::Status>, example = "in_progress")]
    pub status: Option<String>,
    pub resolution: Option<String>,
    pub assignee: Option<String>,
    /// Added to the timeline (and the ticket's work notes).
    pub comment: Option<String>,
}

/// Update status, resolution or assignee, or add a comment; mirrored to the ticket and vendor.
#[utoipa::path(patch, path = "/api/v1/incidents/{id}", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")), security(("bearer" = [])),
    request_body = IncidentPatch,
    responses((status = 200, body = schemas::Incident),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<IncidentPatch>, JsonRejection>,
) -> ApiResult<Json<IncidentView>> {
    let id = id_of(path)?;
    let Json(patch) = body?;
    let status = match &patch.status {
        Some(s) => Some(
            s.parse::<IncidentStatus>()
                .map_err(|e| Problem::unprocessable(format!("status: {e}")))?,
        ),
        None => None,
    };
    let update = IncidentUpdate {
        status,
        resolution: patch.resolution,
        assignee: patch.assignee,
        comment: patch.comment,
        actor: caller.actor(),
    };
    if update.is_empty() {
        return Err(Problem::unprocessable(
            "nothing to change: give status, resolution, assignee or comment",
        ));
    }
    let view = state
        .engine
        .store()
        .update_incident(id, caller.scope(), &update)
        .await?;
    view.map(Json).ok_or_else(|| missing(id))
}

/// What to contain the incident's computer with: `{"isolate": true}` or `{"move_to": "G"}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1, max_properties = 1)]
pub struct ContainRequest {
    /// `true` to isolate (`false` alone asks for nothing).
    #[serde(default)]
    pub isolate: bool,
    /// Move the computer to this group (instead of isolating it).
    pub move_to: Option<String>,
}

/// Contain the incident's computer now (the tenant's deny patterns and dry run apply).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/contain", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")), security(("bearer" = [])),
    request_body = ContainRequest,
    responses((status = 200, body = schemas::Action),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn contain(
    State(state): State<ApiState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<ContainRequest>, JsonRejection>,
) -> ApiResult<Json<socbridge_model::ActionView>> {
    let id = id_of(path)?;
    let Json(req) = body?;
    let what = match (req.isolate, req.move_to) {
        (true, None) => ManualAction::Isolate,
        (false, Some(g)) if !g.trim().is_empty() => ManualAction::MoveTo(g.trim().to_string()),
        (false, Some(_)) => return Err(Problem::unprocessable("move_to: the group name is empty")),
        _ => {
            return Err(Problem::unprocessable(
                "give exactly one of `isolate: true` or `move_to: GROUP`",
            ));
        }
    };
    let action = state
        .engine
        .store()
        .contain_incident(id, caller.scope(), &what, &caller.actor())
        .await?;
    action.map(Json).ok_or_else(|| missing(id))
}

/// How many releases a release queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResult {
    pub incident: i64,
    pub releases: usize,
}

/// Undo the incident's containment (stop isolation, move the computer back).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/release", tag = "incidents",
    params(("id" = i64, Path, description = "incident id")), security(("bearer" = [])),
    responses((status = 200, body = ReleaseResult),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn release(
    State(state): State<ApiState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ReleaseResult>> {
    let id = id_of(path)?;
    let n = state
        .engine
        .store()
        .release_incident(id, caller.scope(), &caller.actor())
        .await?;
    n.map(|releases| {
        Json(ReleaseResult {
            incident: id,
            releases,
        })
    })
    .ok_or_else(|| missing(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = Timestamp::from_micros(1_700_000_000_123_456);
        assert_eq!(decode_cursor(&encode_cursor(at, 42)), Some((at, 42)));
        assert_eq!(decode_cursor("not a cursor!"), None);
        assert_eq!(decode_cursor("MTIz"), None);
    }
}
