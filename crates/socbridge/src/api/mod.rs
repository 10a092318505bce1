//! The REST API under `/api/v1` (axum), its OpenAPI document (utoipa, generated from the
//! handlers' annotations) at `/api/v1/openapi.json`, the operations routes (`/metrics`,
//! `/healthz`, `/readyz`), and the web console at `/` (`console`).
//!
//! Access: every `/api/v1` route but the document needs `Authorization: Bearer <token>`
//! (`socbridge token create`). An analyst token sees and changes only its tenants' incidents,
//! and another tenant's incident answers 404 exactly like a missing one; the admin routes
//! (tenants, sources, tokens, and `status`: replicas, leases, lag) answer 403 to analysts.
//! Source secrets are write-only.
//! Every error is an RFC 9457 problem (`application/problem+json`).

pub mod admin;
pub mod auth;
pub mod console;
pub mod incidents;
pub mod ocsf;
pub mod ops;
pub mod problem;
pub mod schemas;
pub mod status;

use axum::Router;
use axum::routing::get;
use socbridge_engine::Engine;
use std::sync::Arc;
use utoipa::OpenApi;

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Engine,
    pub http: Arc<ops::HttpMetrics>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "socbridge API", version = "1", description = "Incidents of every tenant, \
        scoped by bearer token; tenants, sources and tokens for admins. Errors are RFC 9457 \
        problem details."),
    paths(
        incidents::list, incidents::get, incidents::findings, incidents::update,
        incidents::contain, incidents::release,
        admin::list_tenants, admin::create_tenant, admin::get_tenant, admin::remove_tenant,
        admin::list_sources, admin::put_source, admin::remove_source,
        admin::list_tokens, admin::create_token, admin::revoke_token,
        admin::sources_health, status::status,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerAuth, &CommonErrors),
    tags((name = "incidents"), (name = "admin", description = "admin tokens only"),
        (name = "operations")),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors every route may answer, added to each operation that does not list them itself,
/// so that the document names every status the API answers: 400 (a malformed path, query or
/// body), 401 (no or unknown token), 403 (an analyst on an admin route), 404, and for routes
/// with a body 415 (not JSON) and 422 (JSON of the wrong shape).
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |why: &str| {
            ResponseBuilder::new()
                .description(why)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                if op.security.is_none() {
                    continue;
                }
                let mut common = vec![
                    ("400", "malformed path, query or body"),
                    ("401", "no token, or not a live one"),
                    ("403", "the token's role may not do this"),
                    ("404", "no such resource, or not the caller's"),
                ];
                if op.request_body.is_some() {
                    common.push(("415", "the body is not `application/json`"));
                    common.push(("422", "the JSON does not have the shape asked for"));
                }
                for (status, why) in common {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| problem(why).into());
                }
            }
        }
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}

async fn openapi() -> axum::Json<serde_json::Value> {
    axum::Json(openapi_json())
}

async fn not_found() -> problem::Problem {
    problem::Problem::not_found("no such route")
}

/// The API and operations routes.
pub fn router(engine: Engine) -> Router {
    let state = ApiState {
        engine,
        http: Arc::new(ops::HttpMetrics::default()),
    };
    let api = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/incidents", get(incidents::list))
        .route(
            "/incidents/{id}",
            get(incidents::get).patch(incidents::update),
        )
        .route("/incidents/{id}/findings", get(incidents::findings))
        .route(
            "/incidents/{id}/contain",
            axum::routing::post(incidents::contain),
        )
        .route(
            "/incidents/{id}/release",
            axum::routing::post(incidents::release),
        )
        .route(
            "/tenants",
            get(admin::list_tenants).post(admin::create_tenant),
        )
        .route(
            "/tenants/{tenant}",
            get(admin::get_tenant).delete(admin::remove_tenant),
        )
        .route("/tenants/{tenant}/sources", get(admin::list_sources))
        .route(
            "/tenants/{tenant}/sources/{source}",
            axum::routing::put(admin::put_source).delete(admin::remove_source),
        )
        .route("/tokens", get(admin::list_tokens).post(admin::create_token))
        .route("/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/sources/health", get(admin::sources_health))
        .route("/status", get(status::status))
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .merge(console::routes())
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests;
