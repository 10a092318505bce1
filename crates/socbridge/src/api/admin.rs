//! Admin routes: tenants, their sources (secrets write-only), tokens; and the health of each
//! source (any caller, scoped to its tenants).

use super::ApiState;
use super::auth::{Admin, Caller, new_token};
use super::problem::{ApiResult, Problem};
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use socbridge_engine::SourceSettings;
use socbridge_model::{SourceName, TenantName, Timestamp};
use socbridge_secrets::SecretFields;
use socbridge_store::{NewToken, SourceRecord, TokenRecord, TokenRole};
use std::collections::BTreeMap;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOut {
    pub name: String,
    pub display_name: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

fn tenant_out(t: socbridge_store::TenantRecord) -> TenantOut {
    TenantOut {
        name: t.name,
        display_name: t.display_name,
        created_at: t.created_at,
    }
}

/// A source as shown: settings and poll state, and whether a secret is stored (never it).
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOut {
    pub tenant: String,
    pub name: String,
    #[schema(value_type = String)]
    pub kind: socbridge_model::SourceKind,
    /// The source's settings (no secrets live here).
    pub settings: serde_json::Value,
    pub has_secret: bool,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cursor_mark: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_poll_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

fn source_out(s: SourceRecord) -> SourceOut {
    SourceOut {
        has_secret: s.secret.is_some(),
        tenant: s.tenant,
        name: s.name,
        kind: s.kind,
        settings: s.settings,
        cursor_mark: s.cursor_mark,
        last_poll_at: s.last_poll_at,
        last_ok_at: s.last_ok_at,
        last_error: s.last_error,
    }
}

fn text_path(path: Result<Path<String>, PathRejection>) -> ApiResult<String> {
    Ok(path?.0)
}

/// Every tenant.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<TenantOut>),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
pub async fn list_tenants(
    State(state): State<ApiState>,
    _admin: Admin,
) -> ApiResult<Json<Vec<TenantOut>>> {
    let tenants = state.engine.store().list_tenants().await?;
    Ok(Json(tenants.into_iter().map(tenant_out).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Lowercase letters, digits, `-` and `_`, starting with a letter or digit, up to 40.
    #[schema(example = "acme", pattern = "^[a-z0-9][a-z0-9_-]{0,39}$")]
    pub name: String,
    pub display_name: Option<String>,
}

/// Create a tenant.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "admin", security(("bearer" = [])),
    request_body = NewTenant,
    responses((status = 201, body = TenantOut),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_tenant(
    State(state): State<ApiState>,
    _admin: Admin,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<TenantOut>)> {
    let Json(new) = body?;
    let name =
        TenantName::new(new.name).map_err(|e| Problem::unprocessable(format!("name: {e}")))?;
    let t = state
        .engine
        .store()
        .create_tenant(&name, new.display_name.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(tenant_out(t))))
}

/// One tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "admin", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    responses((status = 200, body = TenantOut),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_tenant(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<TenantOut>> {
    let name = text_path(path)?;
    let t = state.engine.store().get_tenant(&name).await?;
    t.map(|t| Json(tenant_out(t)))
        .ok_or_else(|| Problem::not_found(format!("no tenant named `{name}`")))
}

/// Remove a tenant with everything it owns.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}", tag = "admin", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    responses((status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove_tenant(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let name = text_path(path)?;
    if state.engine.store().remove_tenant(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no tenant named `{name}`")))
    }
}

/// A tenant's sources (secrets are never returned: `has_secret` says one is stored).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/sources", tag = "admin",
    security(("bearer" = [])), params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<SourceOut>),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_sources(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Vec<SourceOut>>> {
    let tenant = text_path(path)?;
    let store = state.engine.store();
    if store.get_tenant(&tenant).await?.is_none() {
        return Err(Problem::not_found(format!("no tenant named `{tenant}`")));
    }
    let sources = store.list_sources(Some(&tenant)).await?;
    Ok(Json(sources.into_iter().map(source_out).collect()))
}

/// A source to create or replace. `secrets` is write-only: sealed with the master key and
/// never returned; omitted, the stored secrets stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceIn {
    /// The source's settings, tagged by `kind` (as in the config file).
    #[schema(value_type = Object)]
    pub settings: SourceSettings,
    /// Secret fields by name (`api_key` for Secure Endpoint; `p12` and `passphrase` for
    /// Symantec MSS). Write-only.
    #[schema(write_only)]
    pub secrets: Option<BTreeMap<String, String>>,
}

/// Create or replace a source.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/sources/{source}", tag = "admin",
    security(("bearer" = [])), params(("tenant" = String, Path), ("source" = String, Path)),
    request_body = SourceIn,
    responses((status = 200, body = SourceOut),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn put_source(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<SourceIn>, JsonRejection>,
) -> ApiResult<Json<SourceOut>> {
    let Path((tenant, name)) = path?;
    let Json(src) = body?;
    let name = SourceName::new(name).map_err(|e| Problem::unprocessable(format!("source: {e}")))?;
    if state.engine.store().get_tenant(&tenant).await?.is_none() {
        return Err(Problem::not_found(format!("no tenant named `{tenant}`")));
    }
    let secrets = src.secrets.map(|map| {
        map.into_iter().fold(SecretFields::new(), |acc, (k, v)| {
            acc.with(&k, SecretString::from(v))
        })
    });
    let rec = state
        .engine
        .save_source(&tenant, &name, &src.settings, secrets.as_ref())
        .await
        .map_err(|e| {
            if e.is_bad_input() {
                Problem::unprocessable(e.to_string())
            } else {
                Problem::internal(e)
            }
        })?;
    Ok(Json(source_out(rec)))
}

/// Remove a source with its findings (its incidents stay).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/sources/{source}", tag = "admin",
    security(("bearer" = [])), params(("tenant" = String, Path), ("source" = String, Path)),
    responses((status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn remove_source(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path((tenant, name)) = path?;
    if state.engine.store().remove_source(&tenant, &name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "tenant `{tenant}` has no source named `{name}`"
        )))
    }
}

/// A source's health: when it last polled, its last error, and how far its mark lags.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceHealth {
    pub tenant: String,
    pub source: String,
    #[schema(value_type = String)]
    pub kind: socbridge_model::SourceKind,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_poll_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Seconds from the newest vendor time stored to now (null before the first finding).
    pub lag_seconds: Option<f64>,
    /// The last poll succeeded.
    pub ok: bool,
}

pub fn health_of(s: &SourceRecord, now: Timestamp) -> SourceHealth {
    SourceHealth {
        tenant: s.tenant.clone(),
        source: s.name.clone(),
        kind: s.kind,
        last_poll_at: s.last_poll_at,
        last_ok_at: s.last_ok_at,
        last_error: s.last_error.clone(),
        lag_seconds: s
            .cursor_mark
            .map(|m| (now.as_micros() - m.as_micros()).max(0) as f64 / 1e6),
        ok: s.last_poll_at.is_some() && s.last_error.is_none(),
    }
}

/// The health of every source the caller may see.
#[utoipa::path(get, path = "/api/v1/sources/health", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = Vec<SourceHealth>)))]
pub async fn sources_health(
    State(state): State<ApiState>,
    caller: Caller,
) -> ApiResult<Json<Vec<SourceHealth>>> {
    let now = Timestamp::now();
    let sources = state.engine.store().list_sources(None).await?;
    Ok(Json(
        sources
            .iter()
            .filter(|s| caller.may_see(&s.tenant))
            .map(|s| health_of(s, now))
            .collect(),
    ))
}

/// A token as listed (never the token).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    pub id: i64,
    pub prefix: String,
    pub label: Option<String>,
    /// `admin` or `analyst`.
    #[schema(value_type = String)]
    pub role: TokenRole,
    pub tenants: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

fn token_out(t: TokenRecord) -> TokenOut {
    TokenOut {
        id: t.id,
        prefix: t.prefix,
        label: t.label,
        role: t.role,
        tenants: t.tenants,
        created_at: t.created_at,
        revoked_at: t.revoked_at,
    }
}

/// Every token.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenOut>)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    _admin: Admin,
) -> ApiResult<Json<Vec<TokenOut>>> {
    let tokens = state.engine.store().list_tokens().await?;
    Ok(Json(tokens.into_iter().map(token_out).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenIn {
    #[schema(value_type = super::schemas::Role)]
    pub role: String,
    /// An analyst's tenants (at least one); none for an admin.
    #[serde(default)]
    pub tenants: Vec<String>,
    pub label: Option<String>,
}

/// The new token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub record: TokenOut,
}

/// Create a token; the answer is the only time it is shown.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "admin", security(("bearer" = [])),
    request_body = NewTokenIn,
    responses((status = 201, body = CreatedToken),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create_token(
    State(state): State<ApiState>,
    _admin: Admin,
    body: Result<Json<NewTokenIn>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let Json(new) = body?;
    let role: TokenRole = new
        .role
        .parse()
        .map_err(|e: socbridge_store::UnknownRole| Problem::unprocessable(format!("role: {e}")))?;
    let token = new_token();
    let label = new
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let rec = state
        .engine
        .store()
        .create_token(&NewToken {
            token: &token,
            label,
            role,
            tenants: &new.tenants,
        })
        .await
        .map_err(|e| match e {
            socbridge_store::StoreError::Conflict { detail } => {
                Problem::unprocessable(format!("tenants: {detail}"))
            }
            socbridge_store::StoreError::NotFound { what } => {
                Problem::unprocessable(format!("tenants: {what} does not exist"))
            }
            other => Problem::from(other),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            record: token_out(rec),
        }),
    ))
}

/// Revoke a token.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    _admin: Admin,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    let text = text_path(path)?;
    let id: i64 = text
        .parse()
        .map_err(|_| Problem::bad_request(format!("token id `{text}` is not an integer")))?;
    if state.engine.store().revoke_token(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no live token with id {id}")))
    }
}
