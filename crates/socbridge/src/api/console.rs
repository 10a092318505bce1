//! The web console at `/`: static HTML, CSS and JavaScript embedded in the binary (no build
//! step, nothing fetched from elsewhere). The page talks only to `/api/v1`, with the bearer
//! token typed on its sign-in screen.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this origin
//! only, nothing inline, no framing), `nosniff`, and an `ETag` computed at build time with
//! `Cache-Control: no-cache`: browsers keep the files and ask again cheaply (304) each time.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell two versions of a file apart in an `ETag`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// `"<16 hex digits>"`, the quoted form an `ETag` takes.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../console/", $file));
        const ETAG: [u8; 18] = etag_of(BODY);
        Asset {
            path: $path,
            content_type: $type,
            body: BODY,
            // Hex digits and quotes only: always UTF-8.
            etag: match std::str::from_utf8(&ETAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

static ASSETS: [Asset; 4] = [
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!(
        "/console/app.js",
        "app.js",
        "text/javascript; charset=utf-8"
    ),
    asset!("/console/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/console/favicon.svg", "favicon.svg", "image/svg+xml"),
];

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == asset.etag || t.trim() == "*")
        });
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = asset.body.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        res
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// The console's routes: the page at `/` and its files under `/console/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get_with(path: &str, etag: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = Request::builder().uri(path);
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        let res = routes::<()>()
            .oneshot(req.body(Body::empty()).expect("a request"))
            .await
            .expect("an answer");
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("the body");
        (status, headers, body.to_vec())
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_their_types_and_a_strict_policy() {
        let (status, headers, body) = get_with("/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-cache");
        let page = text(&body);
        // Every file the page names is served, with the right type.
        for (path, kind) in [
            ("/console/app.js", "text/javascript; charset=utf-8"),
            ("/console/style.css", "text/css; charset=utf-8"),
            ("/console/favicon.svg", "image/svg+xml"),
        ] {
            assert!(
                page.contains(&format!("\"{path}\"")),
                "the page names {path}"
            );
            let (status, headers, body) = get_with(path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers["content-type"], kind, "{path}");
            assert!(!body.is_empty());
        }
        assert_eq!(
            get_with("/console/nope.js", None).await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn an_unchanged_file_is_answered_304_and_a_changed_one_in_full() {
        let (_, headers, _) = get_with("/console/app.js", None).await;
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
        let (status, _, body) = get_with("/console/app.js", Some(&etag)).await;
        assert_eq!(status, StatusCode::NOT_MODIFIED);
        assert!(body.is_empty());
        let (status, _, body) = get_with("/console/app.js", Some("\"0000000000000000\"")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!body.is_empty());
        // Each file has its own tag.
        let (_, css, _) = get_with("/console/style.css", None).await;
        assert_ne!(css["etag"], headers["etag"]);
    }

    #[test]
    fn the_page_has_no_inline_script_or_handler_and_the_script_never_writes_html() {
        let page = text(ASSETS[0].body);
        for tag in page.match_indices("<script") {
            let rest = &page[tag.0..];
            let open = &rest[..rest.find('>').unwrap_or(rest.len())];
            assert!(open.contains(" src="), "an inline script: {open}");
        }
        for handler in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onerror=",
            " style=",
        ] {
            assert!(!page.contains(handler), "the page has {handler}");
        }
        let script = text(ASSETS[1].body);
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!script.contains(sink), "app.js uses {sink}");
        }
        // It speaks only to the API of this origin.
        assert!(script.contains("const API = \"/api/v1\";"));
        assert!(!script.contains("http://") && !script.contains("https://"));
    }
}
