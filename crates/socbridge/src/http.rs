//! The HTTP side of `serve`: the ServiceNow webhook, and the REST API with the operations
//! routes (`crate::api`) on the same router.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use socbridge_engine::{Engine, WebhookError};
use std::net::SocketAddr;
use tokio_util::sync::CancellationToken;

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/hooks/servicenow", post(servicenow_hook))
        .with_state(engine.clone())
        .merge(crate::api::router(engine))
}

/// Binds `listen` and serves until `shutdown`, finishing requests in flight. Answers the
/// address bound (the port picked when `listen` asks for port 0).
pub async fn serve(
    engine: Engine,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP listening (/api/v1, POST /hooks/servicenow, /metrics, /healthz, /readyz)");
    let app = router(engine);
    let handle = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((addr, handle))
}

fn problem(status: StatusCode, detail: String) -> Response {
    (
        status,
        Json(serde_json::json!({"status": status.as_u16(), "detail": detail})),
    )
        .into_response()
}

async fn servicenow_hook(
    State(engine): State<Engine>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match engine.servicenow_webhook(&header, &body).await {
        Ok(report) => (StatusCode::OK, Json(report)).into_response(),
        Err(e) => {
            let status = match &e {
                WebhookError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                WebhookError::BadBody(_) => StatusCode::BAD_REQUEST,
                WebhookError::UnknownTicket(_) => StatusCode::NOT_FOUND,
                WebhookError::NotConfigured => StatusCode::NOT_FOUND,
                // The change is taken in by the next sync-in poll.
                WebhookError::Upstream(_) => StatusCode::ACCEPTED,
                WebhookError::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // Logged without the body: it is the caller's, and may hold anything.
            tracing::warn!(%status, error = %e, "ServiceNow webhook refused");
            problem(status, e.to_string())
        }
    }
}
