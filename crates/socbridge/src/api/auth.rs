//! Bearer tokens: made here (32 random bytes), stored hashed by the store, presented as
//! `Authorization: Bearer <token>` and found again by their hash.

use super::ApiState;
use super::problem::Problem;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine as _;
use socbridge_store::{TokenRecord, TokenRole};

/// The prefix of every token, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "sbt_";

/// A new token: 256 bits from the OS-seeded CSPRNG, base64url.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The holder of a valid token.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenRecord);

impl Caller {
    /// The tenants the caller may see (`None`: every tenant).
    pub fn scope(&self) -> Option<&[String]> {
        self.0.scope()
    }
    pub fn may_see(&self, tenant: &str) -> bool {
        self.scope().is_none_or(|s| s.iter().any(|t| t == tenant))
    }
    /// Who made a change, for an incident's timeline.
    pub fn actor(&self) -> String {
        match &self.0.label {
            Some(l) => format!("api:{l}"),
            None => format!("api:token-{}", self.0.id),
        }
    }
}

/// The holder of a valid admin token.
#[derive(Debug, Clone)]
pub struct Admin;

impl FromRequestParts<ApiState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let unauthorized = |detail: &str| Problem::new(StatusCode::UNAUTHORIZED, detail);
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Err(unauthorized(
                "missing `Authorization: Bearer <token>` (see `socbridge token create`)",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| unauthorized("the Authorization header is not text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(unauthorized(
                    "the Authorization header must be `Bearer <token>`",
                ));
            }
        };
        if token.is_empty() {
            return Err(unauthorized("the bearer token is empty"));
        }
        match state.engine.store().authenticate_token(token).await {
            Ok(Some(record)) => Ok(Caller(record)),
            Ok(None) => Err(unauthorized("the bearer token is unknown or revoked")),
            Err(e) => Err(Problem::internal(e)),
        }
    }
}

impl FromRequestParts<ApiState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Problem> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.0.role != TokenRole::Admin {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "this route needs an admin token",
            ));
        }
        Ok(Admin)
    }
}
