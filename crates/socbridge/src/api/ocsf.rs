//! `?format=ocsf` on the incident routes: the same mapping as `socbridge export --format
//! ocsf` (`socbridge-ocsf`, OCSF 1.8.0). `GET /incidents/{id}?format=ocsf` answers the
//! Incident Finding (class 2005); `GET /incidents/{id}/findings?format=ocsf` streams one
//! Detection Finding (class 2004) per line as NDJSON, for a SIEM or data lake to read as is.

use super::problem::Problem;
use axum::body::Body;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use socbridge_model::IncidentDetail;
use utoipa::{IntoParams, ToSchema};

/// How an incident route answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// socbridge's own JSON (the default).
    #[default]
    Json,
    /// OCSF 1.8.0: an Incident Finding (2005) for an incident, NDJSON of Detection Findings
    /// (2004) for its findings.
    Ocsf,
}

/// The `format` query parameter of the incident routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FormatParam {
    /// `json` (default) or `ocsf`.
    pub format: Option<Format>,
}

/// The format asked for; an unknown one is a 400 naming the choices.
pub fn format_of(q: Result<Query<FormatParam>, QueryRejection>) -> Result<Format, Problem> {
    match q {
        Ok(Query(p)) => Ok(p.format.unwrap_or_default()),
        Err(e) => Err(Problem::bad_request(format!(
            "{}; format is `json` or `ocsf`",
            e.body_text()
        ))),
    }
}

/// The incident as one OCSF Incident Finding.
pub fn incident(detail: &IncidentDetail) -> Response {
    axum::Json(socbridge_ocsf::incident_finding(detail)).into_response()
}

/// The incident's findings as OCSF Detection Findings, one JSON document per line.
pub fn findings(detail: &IncidentDetail) -> Response {
    let mut body = Vec::new();
    for doc in socbridge_ocsf::detection_findings(detail) {
        // A Value always serialises.
        if serde_json::to_writer(&mut body, &doc).is_ok() {
            body.push(b'\n');
        }
    }
    let mut res = Body::from(body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    res
}
