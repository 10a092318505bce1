//! Errors of the API in one shape: RFC 9457 problem details (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use socbridge_store::StoreError;
use utoipa::ToSchema;

/// An RFC 9457 problem: `type` is `about:blank`, so `title` is the status's reason phrase and
/// `detail` names what is wrong.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    #[schema(example = "Not Found")]
    pub title: &'static str,
    #[schema(example = 404)]
    pub status: u16,
    #[schema(example = "no incident with id 42")]
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, detail)
    }
    pub fn internal(error: impl std::fmt::Display) -> Problem {
        // The cause goes to the log; the caller learns only that it failed.
        tracing::error!(error = %error, "API request failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the request failed on the server; see its log",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (status, body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::Conflict { detail } => Problem::conflict(detail),
            StoreError::NotFound { what } => Problem::not_found(format!("{what} not found")),
            other => Problem::internal(other),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for Problem {
    fn from(e: axum::extract::rejection::JsonRejection) -> Problem {
        Problem::new(e.status(), format!("request body: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::QueryRejection> for Problem {
    fn from(e: axum::extract::rejection::QueryRejection) -> Problem {
        Problem::bad_request(format!("query: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for Problem {
    fn from(e: axum::extract::rejection::PathRejection) -> Problem {
        Problem::bad_request(format!("path: {}", e.body_text()))
    }
}

pub type ApiResult<T> = Result<T, Problem>;
