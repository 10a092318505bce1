//! The Umbrella client against a small in-test Reporting API: one token for every org of a
//! parent key (also under concurrency), refresh before expiry and after a refusal, the
//! regional 302 followed with the token re-sent, 429 waited out, a revoked org named, refused
//! credentials, and the legacy paths and error bodies.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use secrecy::SecretString;
use socbridge_connectors::HttpOptions;
use socbridge_connectors::umbrella::{
    ActivityKind, ActivityQuery, PathStyle, TokenCache, TokenMethod, UmbrellaClient,
    UmbrellaConfig, UmbrellaError, UmbrellaHttp, map_page,
};
use socbridge_model::Timestamp;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "parent-key";
const SECRET: &str = "parent-s3cret";

/// What the fake API does and what it saw.
#[derive(Default)]
struct Api {
    /// Token lifetime handed out (`expires_in`).
    expires_in: AtomicU64,
    token_requests: AtomicUsize,
    token_delay_ms: AtomicU64,
    /// Tokens currently accepted.
    valid: Mutex<HashSet<String>>,
    /// Token 429s still to send.
    token_429s: AtomicUsize,
    /// Reports requests per org (`-` for none), all hosts together.
    hits: Mutex<HashMap<String, usize>>,
    /// 429s still to send per org.
    limited: Mutex<HashMap<String, usize>>,
    /// The last query string seen by the reports API.
    last_query: Mutex<String>,
    /// Where `/reports/v2/activity/proxy` redirects to (the regional host).
    region: Mutex<Option<String>>,
    region_hits: AtomicUsize,
}

impl Api {
    fn new() -> Arc<Self> {
        let api = Api::default();
        api.expires_in.store(3600, Ordering::SeqCst);
        Arc::new(api)
    }

    fn hits(&self, org: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(org)
            .copied()
            .unwrap_or(0)
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn record(org: &str, n: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "dns", "domain": format!("c2-{n}.evil.example"), "externalip": "198.51.100.1",
        "internalip": "10.0.0.1", "timestamp": 1_700_000_000_000u64 + n as u64,
        "date": "2023-11-14", "time": "22:13:20", "querytype": "A", "returncode": 3,
        "verdict": "blocked",
        "categories": [{"id": 65, "type": "security", "label": "Command and Control",
                        "integration": false, "deprecated": false}],
        "policycategories": [], "threats": [],
        "identities": [{"id": 42, "type": {"id": 9, "type": "roaming", "label": "Roaming Computers"},
                        "label": format!("HOST-{org}"), "deleted": false}],
        "allapplications": [], "allowedapplications": [], "blockedapplications": []
    })
}

async fn handle(
    State(api): State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };

    if path == "/auth/v2/token" || path == "/auth/v2/oauth2/token" {
        api.token_requests.fetch_add(1, Ordering::SeqCst);
        let legacy = path.ends_with("oauth2/token");
        if (legacy && method != Method::GET) || (!legacy && method != Method::POST) {
            return json(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"message": "Method Not Allowed"}),
            );
        }
        let delay = api.token_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if api
            .token_429s
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return json(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"message": "Too Many Requests"}),
            );
        }
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:{SECRET}"))
        );
        if header("authorization") != Some(expected) {
            return json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"message": "Unauthorized"}),
            );
        }
        let n = api.token_requests.load(Ordering::SeqCst);
        let token = format!("tok-{n}");
        api.valid.lock().expect("lock").insert(token.clone());
        return json(
            StatusCode::OK,
            serde_json::json!({"token_type": "bearer", "access_token": token,
                               "expires_in": api.expires_in.load(Ordering::SeqCst)}),
        );
    }

    // Reports: the org from the legacy path or from the header.
    let legacy_org = path
        .strip_prefix("/v2/organizations/")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_string);
    let org = legacy_org
        .clone()
        .or_else(|| header("x-umbrella-orgid"))
        .unwrap_or_else(|| "-".to_string());
    *api.hits
        .lock()
        .expect("lock")
        .entry(org.clone())
        .or_default() += 1;
    *api.last_query.lock().expect("lock") = uri.query().unwrap_or("").to_string();

    let bearer = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        .unwrap_or_default();
    let token_ok = api.valid.lock().expect("lock").contains(&bearer);
    if !token_ok || org == "noscope" {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Unauthorized"}),
        );
    }
    if org == "revoked" {
        return if legacy_org.is_some() {
            json(
                StatusCode::FORBIDDEN,
                serde_json::json!({"data": {"error": "Organization access revoked"}}),
            )
        } else {
            json(
                StatusCode::FORBIDDEN,
                serde_json::json!({"message": "Forbidden"}),
            )
        };
    }
    if org == "odd" {
        return json(
            StatusCode::OK,
            serde_json::json!({"data": {"error": "Invalid time range"}}),
        );
    }
    {
        let mut limited = api.limited.lock().expect("lock");
        if let Some(left) = limited.get_mut(&org)
            && *left > 0
        {
            *left -= 1;
            return json(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"message": "Too Many Requests"}),
            );
        }
    }
    if path == "/reports/v2/activity/proxy" {
        let region = api.region.lock().expect("lock").clone();
        if let Some(region) = region {
            let location = format!("{region}{path}?{}", uri.query().unwrap_or(""));
            return (StatusCode::FOUND, [("location", location)], "").into_response();
        }
    }
    json(
        StatusCode::OK,
        serde_json::json!({"meta": {}, "data": [record(&org, 1), record(&org, 2)]}),
    )
}

/// The regional host: serves only what carries a valid token and the org header.
async fn region(State(api): State<Arc<Api>>, uri: Uri, headers: HeaderMap) -> Response {
    api.region_hits.fetch_add(1, Ordering::SeqCst);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    if !api.valid.lock().expect("lock").contains(&bearer) {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"message": "Unauthorized: no token reached the region"}),
        );
    }
    let Some(org) = headers
        .get("x-umbrella-orgid")
        .and_then(|v| v.to_str().ok())
    else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"message": "X-Umbrella-OrgID missing at the region"}),
        );
    };
    assert!(uri.query().unwrap_or("").contains("limit="));
    json(
        StatusCode::OK,
        serde_json::json!({"meta": {}, "data": [record(org, 7)]}),
    )
}

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

async fn start(api: &Arc<Api>) -> String {
    serve(Router::new().fallback(handle).with_state(api.clone())).await
}

fn http() -> UmbrellaHttp {
    UmbrellaHttp::new(HttpOptions::for_tests()).expect("http")
}

fn client(base: &str, tokens: &TokenCache) -> UmbrellaClient {
    UmbrellaClient::new(
        UmbrellaConfig::new(base, KEY, SecretString::from(SECRET.to_string())),
        tokens.clone(),
        http(),
    )
    .expect("client")
}

fn query(org: &str) -> ActivityQuery {
    let to = Timestamp::from_unix_millis(1_700_000_300_000).expect("ts");
    let from = Timestamp::from_unix_millis(1_700_000_000_000).expect("ts");
    ActivityQuery::new(Some(org.to_string()), ActivityKind::Dns, from, to)
}

#[tokio::test]
async fn one_token_serves_every_org_of_the_parent_key() {
    let api = Api::new();
    api.token_delay_ms.store(50, Ordering::SeqCst);
    let base = start(&api).await;
    let tokens = TokenCache::new();
    // Two clients of the same key (e.g. two sources), one cache.
    let a = Arc::new(client(&base, &tokens));
    let b = Arc::new(client(&base, &tokens));

    // Concurrently, from cold: 40 requests over 20 orgs wait on a single refresh.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let org = format!("{}", 8_000_000 + i % 20);
            let page = c.activity_page(&query(&org)).await.expect("page");
            (org, page)
        }));
    }
    for t in tasks {
        let (org, page) = t.await.expect("task");
        assert_eq!(page.org_id.as_deref(), Some(org.as_str()));
        assert_eq!(page.records.len(), 2);
        // The records are the child org's: the header reached the API.
        let (findings, quarantined) = map_page(&org, &page.records);
        assert!(quarantined.is_empty());
        for f in &findings {
            let s = f.subject.as_ref().expect("subject");
            assert_eq!(s.id, format!("{org}:42"));
            assert_eq!(s.label.as_deref(), Some(format!("HOST-{org}").as_str()));
        }
    }
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);
    for i in 0..20 {
        assert_eq!(api.hits(&format!("{}", 8_000_000 + i)), 2);
    }

    // Then sequentially: still the same token.
    for i in 0..20 {
        a.activity_page(&query(&format!("{}", 9_000_000 + i)))
            .await
            .expect("page");
    }
    a.check(Some("9000001")).await.expect("check");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);

    // Another cache (another process, say) has its own token.
    let other = client(&base, &TokenCache::new());
    other.activity_page(&query("1")).await.expect("page");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_and_after_a_refusal() {
    let api = Api::new();
    api.expires_in.store(2, Ordering::SeqCst);
    let base = start(&api).await;
    let tokens = TokenCache::new();
    let c = client(&base, &tokens);

    c.activity_page(&query("1")).await.expect("page");
    c.activity_page(&query("2")).await.expect("page");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);
    // Past lifetime minus the margin (a tenth of 2 s): a new token before the old one expires.
    tokio::time::sleep(Duration::from_millis(1850)).await;
    c.activity_page(&query("3")).await.expect("page");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 2);

    // The API forgets the token early: the 401 drops it and one new token is fetched.
    api.expires_in.store(3600, Ordering::SeqCst);
    api.valid.lock().expect("lock").clear();
    c.activity_page(&query("4"))
        .await
        .expect("page after a refused token");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 3);
    assert_eq!(api.hits("4"), 2);

    // Refused with a brand-new token too: the key lacks the scope, said once, not looped.
    let err = c
        .activity_page(&query("noscope"))
        .await
        .expect_err("refused");
    assert!(matches!(err, UmbrellaError::Unauthorized { .. }), "{err}");
    assert!(err.is_auth() && !err.is_transient());
    assert!(err.to_string().contains("org noscope"), "{err}");
    assert_eq!(api.hits("noscope"), 2, "one retry with a new token");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_regional_redirect_gets_the_token_again() {
    let api = Api::new();
    let base = start(&api).await;
    let region_base = serve(Router::new().fallback(region).with_state(api.clone())).await;
    assert_ne!(base, region_base, "another port");
    *api.region.lock().expect("lock") = Some(region_base);
    let c = client(&base, &TokenCache::new());

    let mut q = query("7001");
    q.kind = ActivityKind::Proxy;
    let page = c.activity_page(&q).await.expect("followed the redirect");
    assert_eq!(page.records.len(), 1);
    assert!(page.records[0].get().contains("HOST-7001"));
    assert_eq!(api.region_hits.load(Ordering::SeqCst), 1);
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_redirect_loop_is_cut() {
    let api = Api::new();
    let base = start(&api).await;
    // The region is the API itself: every proxy request redirects again.
    *api.region.lock().expect("lock") = Some(base.clone());
    let c = client(&base, &TokenCache::new());
    let mut q = query("7002");
    q.kind = ActivityKind::Proxy;
    let err = c.activity_page(&q).await.expect_err("loop");
    assert!(matches!(err, UmbrellaError::Redirect { .. }), "{err}");
    assert!(err.to_string().contains("org 7002"), "{err}");
    assert_eq!(api.hits("7002"), 6);
}

#[tokio::test]
async fn rate_limits_are_waited_out_for_that_org_only() {
    let api = Api::new();
    let base = start(&api).await;
    api.limited
        .lock()
        .expect("lock")
        .insert("busy".to_string(), 2);
    api.token_429s.store(1, Ordering::SeqCst);
    let c = client(&base, &TokenCache::new());

    let page = c
        .activity_page(&query("busy"))
        .await
        .expect("after waiting");
    assert_eq!(page.records.len(), 2);
    assert_eq!(api.hits("busy"), 3);
    assert_eq!(
        api.token_requests.load(Ordering::SeqCst),
        2,
        "the token endpoint's 429 was waited out too"
    );
    c.activity_page(&query("calm")).await.expect("page");
    assert_eq!(api.hits("calm"), 1);

    // A rate limit that does not end is reported as such, for that org.
    api.limited
        .lock()
        .expect("lock")
        .insert("flooded".to_string(), 1000);
    let err = c
        .activity_page(&query("flooded"))
        .await
        .expect_err("limited");
    assert!(err.is_transient() && !err.is_auth(), "{err}");
    assert!(err.to_string().contains("org flooded"), "{err}");
}

#[tokio::test]
async fn a_revoked_org_is_named_and_not_retried() {
    let api = Api::new();
    let base = start(&api).await;
    let c = client(&base, &TokenCache::new());
    let err = c
        .activity_page(&query("revoked"))
        .await
        .expect_err("revoked");
    assert!(
        matches!(err, UmbrellaError::OrgNotDelegated { .. }),
        "{err}"
    );
    assert!(err.is_org_revoked() && err.is_auth() && !err.is_transient());
    assert!(
        err.to_string()
            .contains("org revoked revoked or not delegated to this key"),
        "{err}"
    );
    assert_eq!(err.org_id(), Some("revoked"));
    assert_eq!(api.hits("revoked"), 1);
    // The key's other orgs go on with the same token.
    c.activity_page(&query("8000001")).await.expect("page");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_or_missing_credentials_are_named() {
    let api = Api::new();
    let base = start(&api).await;
    let wrong = UmbrellaClient::new(
        UmbrellaConfig::new(&base, KEY, SecretString::from("not-the-secret".to_string())),
        TokenCache::new(),
        http(),
    )
    .expect("client");
    let err = wrong.activity_page(&query("1")).await.expect_err("refused");
    assert!(
        matches!(err, UmbrellaError::TokenRefused { status: 401, .. }),
        "{err}"
    );
    assert!(err.is_auth() && !err.is_transient() && !err.is_bad_input());
    assert!(err.to_string().contains("Unauthorized"), "{err}");
    assert!(!err.to_string().contains("not-the-secret"), "{err}");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(api.hits("1"), 0, "no report asked without a token");
    let check = wrong.check(Some("1")).await.expect_err("check fails too");
    assert!(check.is_auth());

    let empty = UmbrellaClient::new(
        UmbrellaConfig::new(&base, KEY, SecretString::from(String::new())),
        TokenCache::new(),
        http(),
    )
    .expect_err("no secret");
    assert!(empty.is_bad_input(), "{empty}");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn legacy_paths_token_by_get_and_legacy_error_bodies() {
    let api = Api::new();
    let base = start(&api).await;
    let mut cfg = UmbrellaConfig::new(
        format!("{base}/v2"),
        KEY,
        SecretString::from(SECRET.to_string()),
    );
    cfg.path_style = PathStyle::Legacy;
    cfg.token_method = TokenMethod::Get;
    cfg.token_url = Some(format!("{base}/auth/v2/oauth2/token"));
    let c = UmbrellaClient::new(cfg, TokenCache::new(), http()).expect("client");

    let mut q = query("5550001");
    q.kind = ActivityKind::All;
    let page = c.activity_page(&q).await.expect("legacy page");
    assert_eq!(page.records.len(), 2);
    assert_eq!(api.hits("5550001"), 1, "org taken from the path");

    let err = c
        .activity_page(&ActivityQuery {
            org_id: Some("revoked".into()),
            ..q.clone()
        })
        .await
        .expect_err("403");
    assert!(err.is_org_revoked(), "{err}");
    assert!(
        err.to_string().contains("Organization access revoked"),
        "the legacy body's words: {err}"
    );

    let err = c
        .activity_page(&ActivityQuery {
            org_id: Some("odd".into()),
            ..q.clone()
        })
        .await
        .expect_err("an error in a 200");
    assert!(matches!(err, UmbrellaError::Api { .. }), "{err}");
    assert!(err.to_string().contains("Invalid time range"), "{err}");

    let err = c
        .activity_page(&ActivityQuery {
            org_id: None,
            ..q.clone()
        })
        .await
        .expect_err("legacy needs an org");
    assert!(err.is_bad_input(), "{err}");
    assert_eq!(api.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_query_goes_out_as_documented() {
    let api = Api::new();
    let base = start(&api).await;
    let c = client(&base, &TokenCache::new());
    let mut q = query("42");
    q.limit = 500;
    q.offset = 1000;
    q.verdict = Some("blocked".into());
    q.categories = vec![65, 150];
    q.filters = vec![("identitytypes".into(), "roaming".into())];
    let page = c.activity_page(&q).await.expect("page");
    assert!(!page.may_have_more());
    assert_eq!(page.next_offset(), 1002);
    let sent = api.last_query.lock().expect("lock").clone();
    assert_eq!(
        sent,
        "from=1700000000000&to=1700000300000&limit=500&offset=1000&order=asc&verdict=blocked&categories=65%2C150&identitytypes=roaming"
    );

    for bad in [
        ActivityQuery {
            limit: 0,
            ..q.clone()
        },
        ActivityQuery {
            limit: 5001,
            ..q.clone()
        },
        ActivityQuery {
            from: q.to,
            to: q.from,
            ..q.clone()
        },
        ActivityQuery {
            filters: vec![("limit".into(), "9".into())],
            ..q.clone()
        },
        ActivityQuery {
            org_id: Some("42 OR 1=1".into()),
            ..q.clone()
        },
    ] {
        let err = c.activity_page(&bad).await.expect_err("bad query");
        assert!(err.is_bad_input(), "{err}");
    }
    assert_eq!(api.hits("42"), 1);
}
