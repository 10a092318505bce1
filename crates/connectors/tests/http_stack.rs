//! The shared HTTP stack against a local server that misbehaves on purpose: what a vendor
//! does on a bad day must not reach the caller as an error when waiting would fix it, and a
//! write whose effect is unknown must not be repeated.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use socbridge_connectors::{ConnectorError, HttpOptions, HttpStack, Retry};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn json(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[tokio::test]
async fn flaky_reads_are_retried_until_they_succeed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    // 503, then 429 with a reset of 0 seconds, then a truncated 200, then the real answer.
    let app = Router::new().route(
        "/r",
        get(move || {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut headers = HeaderMap::new();
                match n {
                    0 => (StatusCode::SERVICE_UNAVAILABLE, headers, "down").into_response(),
                    1 => {
                        headers.insert("x-rate-limit-reset", "0".parse().expect("hv"));
                        (StatusCode::TOO_MANY_REQUESTS, headers, "{}").into_response()
                    }
                    2 => (StatusCode::OK, headers, r#"{"data":[1,2"#).into_response(),
                    _ => (StatusCode::OK, headers, r#"{"data":[1,2,3]}"#).into_response(),
                }
            }
        }),
    );
    let base = serve(app).await;
    let http = HttpStack::new(HttpOptions::for_tests());
    let answer = http
        .call(
            "Test",
            "thing",
            Retry::Always,
            |c| c.get(format!("{base}/r")),
            json,
        )
        .await
        .expect("eventually succeeds");
    assert_eq!(answer.value["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_long_rate_limit_is_reported_with_the_vendors_wait() {
    let app = Router::new().route(
        "/r",
        get(|| async {
            let mut headers = HeaderMap::new();
            headers.insert("X-RateLimit-Reset", "3600".parse().expect("hv"));
            (StatusCode::TOO_MANY_REQUESTS, headers, "{}")
        }),
    );
    let base = serve(app).await;
    let http = HttpStack::new(HttpOptions::for_tests());
    let err = http
        .call(
            "Test",
            "thing",
            Retry::Always,
            |c| c.get(format!("{base}/r")),
            json,
        )
        .await
        .expect_err("over the limit");
    match err {
        ConnectorError::RateLimited { wait, .. } => assert_eq!(wait.as_secs(), 3600),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn an_ambiguous_write_is_not_repeated_and_auth_is_not_retried() {
    let puts = Arc::new(AtomicUsize::new(0));
    let p = puts.clone();
    let app = Router::new()
        .route(
            "/w",
            put(move || {
                p.fetch_add(1, Ordering::SeqCst);
                async { (StatusCode::BAD_GATEWAY, "upstream") }
            }),
        )
        .route(
            "/auth",
            get(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    r#"{"errors":[{"description":"Unauthorized","details":["Unknown API key or Client ID"]}]}"#,
                )
            }),
        );
    let base = serve(app).await;
    let http = HttpStack::new(HttpOptions::for_tests());
    let err = http
        .call(
            "Test",
            "write",
            Retry::NotAfterSending,
            |c| c.put(format!("{base}/w")),
            json,
        )
        .await
        .expect_err("502");
    assert!(err.is_ambiguous(), "{err}");
    assert_eq!(
        puts.load(Ordering::SeqCst),
        1,
        "an ambiguous write is sent once"
    );

    let err = http
        .call(
            "Test",
            "read",
            Retry::Always,
            |c| c.get(format!("{base}/auth")),
            json,
        )
        .await
        .expect_err("401");
    assert!(err.is_auth());
    assert_eq!(
        err.to_string(),
        "Test: credentials refused (Unknown API key or Client ID); check the API client id and key"
    );
}

#[tokio::test]
async fn nobody_listening_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let mut opts = HttpOptions::for_tests();
    opts.max_attempts = 2;
    let http = HttpStack::new(opts);
    let err = http
        .call(
            "Test",
            "read",
            Retry::Always,
            |c| c.get(format!("http://{addr}/")),
            json,
        )
        .await
        .expect_err("refused");
    assert!(matches!(err, ConnectorError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
}
