//! `GET /api/v1/status` (admin tokens only): the replicas, which replica holds which job, and
//! each source's lag, as `socbridge status --output json` prints them. Admin only because the
//! leases name every tenant and the replicas name the machines.

use super::ApiState;
use super::auth::Admin;
use super::problem::ApiResult;
use crate::status::StatusReport;
use axum::Json;
use axum::extract::State;

/// Replicas, leases and the lag of every source.
#[utoipa::path(get, path = "/api/v1/status", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = StatusReport)))]
pub async fn status(State(state): State<ApiState>, _admin: Admin) -> ApiResult<Json<StatusReport>> {
    Ok(Json(crate::status::report(state.engine.store()).await?))
}
