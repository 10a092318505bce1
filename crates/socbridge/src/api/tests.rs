//! The API in process: a router on a temp SQLite store, called with `oneshot`.
//!
//! The scoping walk takes every route from the OpenAPI document, so a route added later is
//! walked too: an analyst of tenant A gets 404 (like a missing id) for each of tenant B's
//! incidents on every incident route, 403 on every admin route, and never sees B in a list;
//! and a canary secret is in no answer of any route, for any token.

use super::router;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use secrecy::SecretString;
use socbridge_engine::{
    Engine, EngineOptions, PollSettings, SecureEndpointSettings, SourceSettings,
};
use socbridge_model::{
    Finding, Observable, ObservableKind, Severity, SourceKind, SourceName, Subject, TenantName,
    Timestamp,
};
use socbridge_secrets::{MasterKey, SecretFields};
use socbridge_store::{IngestBatch, NewToken, TokenRole};
use tower::ServiceExt as _;

const CANARY: &str = "CANARY-7f3e9b1c-secret-never-returned";
/// The rig's master key, so that a test can seal what the engine would (an unlock code).
const MASTER_KEY: &str = "6d1f0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a0918273645546372819a0b1c2";

struct Rig {
    app: Router,
    engine: Engine,
    admin: String,
    analyst_a: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("a request");
    let res = app.clone().oneshot(req).await.expect("an answer");
    let status = res.status();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .expect("the body");
    Answer {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn finding(key: &str, computer: &str, second: i64) -> Finding {
    Finding {
        source_kind: SourceKind::SecureEndpoint,
        vendor_key: key.to_string(),
        observed_at: Timestamp::from_micros((1_700_000_000 + second) * 1_000_000),
        severity: Severity::High,
        title: format!("Threat detected ({key})"),
        event_type: "Threat Detected".into(),
        subject: Some(Subject {
            kind: "computer".into(),
            id: format!("guid-{computer}"),
            label: Some(computer.to_string()),
        }),
        observables: vec![
            Observable::new(ObservableKind::Hostname, computer),
            Observable::new(ObservableKind::Ip, "10.0.0.1"),
        ],
        raw: serde_json::json!({"id": key, "computer": computer}).to_string(),
    }
}

/// Tenants acme and globex, each with a source holding the canary secret and `n` incidents.
async fn rig(n: i64) -> Rig {
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = socbridge_store::Store::open_sqlite(&dir.path().join("socbridge.db"))
        .await
        .expect("the store");
    let engine = Engine::new(
        store.clone(),
        MasterKey::from_encoded(MASTER_KEY, "the test key").expect("a key"),
        EngineOptions::default(),
    );
    for tenant in ["acme", "globex"] {
        store
            .create_tenant(&TenantName::new(tenant.to_string()).unwrap(), None)
            .await
            .unwrap();
        let settings = SecureEndpointSettings::new(
            None,
            format!("client-{tenant}"),
            None,
            None,
            PollSettings::default(),
        )
        .unwrap();
        let src = engine
            .save_source(
                tenant,
                &SourceName::new("amp".to_string()).unwrap(),
                &SourceSettings::SecureEndpoint(settings),
                Some(&SecretFields::new().with("api_key", SecretString::from(CANARY))),
            )
            .await
            .unwrap();
        let findings = (0..n)
            .map(|i| finding(&format!("{tenant}-{i}"), &format!("{tenant}-pc{i}"), i))
            .collect();
        store
            .ingest(
                src.id,
                IngestBatch {
                    findings,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let token = |role, tenants: Vec<String>, t: &'static str| {
        let store = store.clone();
        async move {
            store
                .create_token(&NewToken {
                    token: t,
                    label: None,
                    role,
                    tenants: &tenants,
                })
                .await
                .unwrap();
            t.to_string()
        }
    };
    let admin = token(TokenRole::Admin, vec![], "sbt_admin-7a1c9e2b4d6f8a0c").await;
    let analyst_a = token(
        TokenRole::Analyst,
        vec!["acme".into()],
        "sbt_analyst-acme-3b5d7f9a1c",
    )
    .await;
    Rig {
        app: router(engine.clone()),
        engine,
        admin,
        analyst_a,
        _dir: dir,
    }
}

async fn ids_of(engine: &Engine, tenant: &str) -> Vec<i64> {
    engine
        .store()
        .list_incidents(&socbridge_model::IncidentFilter {
            tenants: vec![tenant.into()],
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect()
}

/// A body that a route accepts, so that a 404 is about the incident, not the body.
fn body_for(method: &Method, path: &str) -> Option<serde_json::Value> {
    match (method.as_str(), path) {
        ("PATCH", _) => Some(serde_json::json!({"status": "in_progress", "comment": "x"})),
        ("POST", p) if p.ends_with("/contain") => Some(serde_json::json!({"isolate": true})),
        ("POST", "/api/v1/tenants") => Some(serde_json::json!({"name": "initech"})),
        ("POST", "/api/v1/tokens") => Some(serde_json::json!({"role": "admin"})),
        ("PUT", _) => Some(serde_json::json!({
            "settings": serde_json::to_value(SourceSettings::SecureEndpoint(
                SecureEndpointSettings::new(None, "c".into(), None, None, PollSettings::default())
                    .expect("settings"),
            ))
            .expect("settings as JSON"),
            "secrets": {"api_key": CANARY}
        })),
        _ => None,
    }
}

#[tokio::test]
async fn an_analyst_of_a_gets_404_for_every_incident_of_b_on_every_route() {
    let rig = rig(4).await;
    let doc = super::openapi_json();
    let paths = doc["paths"].as_object().expect("paths in the document");
    let b_ids = ids_of(&rig.engine, "globex").await;
    let a_ids = ids_of(&rig.engine, "acme").await;
    assert_eq!((a_ids.len(), b_ids.len()), (4, 4));
    let missing = 999_999;
    let mut walked = 0;
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let admin_only = item[method]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "admin"));
            let fill = |id: i64| {
                path.replace("{id}", &id.to_string())
                    .replace("{tenant}", "globex")
                    .replace("{source}", "amp")
            };
            if admin_only {
                let uri = fill(1);
                let a = call(
                    &rig.app,
                    m.clone(),
                    &uri,
                    Some(&rig.analyst_a),
                    body_for(&m, path),
                )
                .await;
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{method} {uri}: {}",
                    a.body
                );
                assert_eq!(a.content_type, "application/problem+json");
                walked += 1;
                continue;
            }
            if !path.contains("{id}") {
                // A collection: never anything of globex in it.
                let a = call(&rig.app, m.clone(), path, Some(&rig.analyst_a), None).await;
                assert_eq!(a.status, StatusCode::OK, "{method} {path}: {}", a.body);
                assert!(
                    !a.body.contains("globex"),
                    "{method} {path} shows globex: {}",
                    a.body
                );
                walked += 1;
                continue;
            }
            let none = call(
                &rig.app,
                m.clone(),
                &fill(missing),
                Some(&rig.analyst_a),
                body_for(&m, path),
            )
            .await;
            assert_eq!(
                none.status,
                StatusCode::NOT_FOUND,
                "{method} {path} missing: {}",
                none.body
            );
            for id in &b_ids {
                let uri = fill(*id);
                let a = call(
                    &rig.app,
                    m.clone(),
                    &uri,
                    Some(&rig.analyst_a),
                    body_for(&m, path),
                )
                .await;
                assert_eq!(
                    a.status,
                    StatusCode::NOT_FOUND,
                    "{method} {uri}: {}",
                    a.body
                );
                assert_eq!(a.content_type, "application/problem+json");
                assert_eq!(
                    a.body,
                    none.body.replace(&missing.to_string(), &id.to_string()),
                    "{method} {uri} must answer exactly like a missing incident"
                );
                walked += 1;
            }
            // The same route works for A's own incident (the 404 is about scope, not the route).
            let uri = fill(a_ids[0]);
            let a = call(
                &rig.app,
                m.clone(),
                &uri,
                Some(&rig.analyst_a),
                body_for(&m, path),
            )
            .await;
            assert!(
                a.status == StatusCode::OK || a.status == StatusCode::CONFLICT,
                "{method} {uri} on A's incident: {} {}",
                a.status,
                a.body
            );
        }
    }
    assert!(walked >= 4 * 5 + 10, "walked only {walked} route calls");
    // B's incidents are untouched by all of that.
    for id in &b_ids {
        let d = rig
            .engine
            .store()
            .get_incident(*id, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.incident.status, socbridge_model::IncidentStatus::New);
        assert!(d.timeline.iter().all(|e| !e.actor.starts_with("api:")));
    }

    // Lists: never B, whatever the filter, on every page.
    for query in [
        "",
        "?tenant=globex",
        "?tenant=globex,acme",
        "?limit=1",
        "?severity=high",
    ] {
        let mut seen = Vec::new();
        let mut uri = format!("/api/v1/incidents{query}");
        loop {
            let a = call(&rig.app, Method::GET, &uri, Some(&rig.analyst_a), None).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
            let page = a.json();
            for i in page["items"].as_array().unwrap() {
                assert_eq!(i["tenant"], "acme", "{uri}");
                seen.push(i["id"].as_i64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(c) => uri = format!("/api/v1/incidents?limit=1&cursor={c}"),
                None => break,
            }
        }
        let want: Vec<i64> = if query.contains("tenant=globex") && !query.contains("acme") {
            vec![]
        } else {
            a_ids.clone()
        };
        assert_eq!(seen, want, "{query}");
    }
    // The admin sees both tenants, page by page, each once.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/incidents?limit=3".to_string();
    loop {
        let page = call(&rig.app, Method::GET, &uri, Some(&rig.admin), None)
            .await
            .json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/incidents?limit=3&cursor={c}"),
            None => break,
        }
    }
    seen.sort();
    let mut all = [a_ids, b_ids].concat();
    all.sort();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn no_route_returns_a_secret() {
    let rig = rig(2).await;
    let doc = super::openapi_json();
    let id = ids_of(&rig.engine, "acme").await[0];
    let mut answers = Vec::new();
    for token in [&rig.admin, &rig.analyst_a] {
        for (path, item) in doc["paths"].as_object().unwrap() {
            // Reads first, then writes, so that removals come last.
            for method in ["get", "post", "patch", "put"] {
                if item.get(method).is_none() {
                    continue;
                }
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let uri = path
                    .replace("{id}", &id.to_string())
                    .replace("{tenant}", "acme")
                    .replace("{source}", "amp");
                answers.push((
                    uri.clone(),
                    call(&rig.app, m.clone(), &uri, Some(token), body_for(&m, path)).await,
                ));
            }
        }
    }
    for uri in ["/metrics", "/healthz", "/readyz", "/api/v1/openapi.json"] {
        answers.push((
            uri.to_string(),
            call(&rig.app, Method::GET, uri, None, None).await,
        ));
    }
    let put = answers
        .iter()
        .find(|(u, a)| u.ends_with("/sources/amp") && a.status == StatusCode::OK)
        .unwrap_or_else(|| {
            let tried: Vec<_> = answers
                .iter()
                .filter(|(u, _)| u.ends_with("/sources/amp"))
                .map(|(u, a)| format!("{u} {} {}", a.status, a.body))
                .collect();
            panic!("the admin's PUT of a source worked: {tried:?}")
        });
    assert_eq!(put.1.json()["has_secret"], true);
    let sources = call(
        &rig.app,
        Method::GET,
        "/api/v1/tenants/acme/sources",
        Some(&rig.admin),
        None,
    )
    .await;
    assert_eq!(sources.json()[0]["has_secret"], true);
    answers.push(("sources".into(), sources));
    for (uri, a) in &answers {
        assert!(!a.body.contains(CANARY), "{uri} returned the secret");
        assert!(
            !a.body.contains("sbt_admin-7a1c9e2b4d6f8a0c")
                && !a.body.contains("sbt_analyst-acme-3b5d7f9a1c"),
            "{uri} returned a token"
        );
    }
    assert!(answers.len() > 30);
}

#[tokio::test]
async fn errors_are_problem_details_naming_what_is_wrong() {
    let rig = rig(1).await;
    let id = ids_of(&rig.engine, "acme").await[0];
    #[allow(clippy::type_complexity)]
    let cases: Vec<(
        Method,
        String,
        Option<&str>,
        Option<serde_json::Value>,
        StatusCode,
        &str,
    )> = vec![
        (
            Method::GET,
            "/api/v1/incidents".into(),
            None,
            None,
            StatusCode::UNAUTHORIZED,
            "Authorization",
        ),
        (
            Method::GET,
            "/api/v1/incidents".into(),
            Some("sbt_wrong"),
            None,
            StatusCode::UNAUTHORIZED,
            "unknown or revoked",
        ),
        (
            Method::GET,
            "/api/v1/incidents?severity=huge".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "severity",
        ),
        (
            Method::GET,
            "/api/v1/incidents?since=yesterday-ish".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            Method::GET,
            "/api/v1/incidents?limit=0".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/incidents?cursor=zzz".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            Method::GET,
            "/api/v1/incidents?colour=red".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "colour",
        ),
        (
            Method::GET,
            "/api/v1/incidents/abc".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::BAD_REQUEST,
            "abc",
        ),
        (
            Method::PATCH,
            format!("/api/v1/incidents/{id}"),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({"status": "done"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "status",
        ),
        (
            Method::PATCH,
            format!("/api/v1/incidents/{id}"),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to change",
        ),
        (
            Method::PATCH,
            format!("/api/v1/incidents/{id}"),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({"owner": "x"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "owner",
        ),
        (
            Method::POST,
            format!("/api/v1/incidents/{id}/contain"),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "isolate",
        ),
        (
            Method::POST,
            "/api/v1/tenants".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({"name": "acme"})),
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({"role": "analyst"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least one tenant",
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            Some(serde_json::json!({"role": "root"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role",
        ),
        (
            Method::GET,
            "/api/v1/tokens".into(),
            Some("sbt_analyst-acme-3b5d7f9a1c"),
            None,
            StatusCode::FORBIDDEN,
            "admin",
        ),
        (
            Method::GET,
            "/api/v1/nope".into(),
            Some("sbt_admin-7a1c9e2b4d6f8a0c"),
            None,
            StatusCode::NOT_FOUND,
            "route",
        ),
    ];
    for (m, uri, token, body, status, needle) in cases {
        let a = call(&rig.app, m.clone(), &uri, token, body).await;
        assert_eq!(a.status, status, "{m} {uri}: {}", a.body);
        assert_eq!(a.content_type, "application/problem+json", "{m} {uri}");
        let p = a.json();
        assert_eq!(p["status"], status.as_u16(), "{m} {uri}");
        assert_eq!(p["type"], "about:blank");
        assert!(p["title"].is_string());
        let detail = p["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(needle),
            "{m} {uri}: `{detail}` should name `{needle}`"
        );
    }
}

#[tokio::test]
async fn writes_tokens_operations_and_the_document() {
    let rig = rig(1).await;
    let id = ids_of(&rig.engine, "acme").await[0];
    // Update by an analyst of the tenant: the timeline names the token.
    let a = call(
        &rig.app,
        Method::PATCH,
        &format!("/api/v1/incidents/{id}"),
        Some(&rig.analyst_a),
        Some(
            serde_json::json!({"status": "in_progress", "assignee": "alice", "comment": "looking"}),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.json()["status"], "in_progress");
    assert_eq!(a.json()["assignee"], "alice");
    let d = call(
        &rig.app,
        Method::GET,
        &format!("/api/v1/incidents/{id}"),
        Some(&rig.analyst_a),
        None,
    )
    .await
    .json();
    assert!(
        d["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"].as_str().unwrap_or("").starts_with("api:token-"))
    );
    for key in [
        "id",
        "tenant",
        "title",
        "severity",
        "status",
        "sources",
        "created_at",
        "updated_at",
        "finding_count",
        "observables",
        "ticket",
        "actions",
        "findings",
        "timeline",
    ] {
        assert!(d.get(key).is_some(), "incident JSON lacks {key}");
    }
    let f = call(
        &rig.app,
        Method::GET,
        &format!("/api/v1/incidents/{id}/findings"),
        Some(&rig.analyst_a),
        None,
    )
    .await
    .json();
    assert_eq!(f.as_array().map(Vec::len), Some(1));
    // Contain and release.
    let c = call(
        &rig.app,
        Method::POST,
        &format!("/api/v1/incidents/{id}/contain"),
        Some(&rig.analyst_a),
        Some(serde_json::json!({"isolate": true})),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.json()["kind"], "isolate");
    let r = call(
        &rig.app,
        Method::POST,
        &format!("/api/v1/incidents/{id}/release"),
        Some(&rig.analyst_a),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["incident"], id);

    // Tokens: created once, usable, revoked.
    let t = call(
        &rig.app,
        Method::POST,
        "/api/v1/tokens",
        Some(&rig.admin),
        Some(serde_json::json!({"role": "analyst", "tenants": ["globex"], "label": "bob"})),
    )
    .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let t = t.json();
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("sbt_") && token.len() > 40);
    let list = call(
        &rig.app,
        Method::GET,
        "/api/v1/tokens",
        Some(&rig.admin),
        None,
    )
    .await;
    assert!(!list.body.contains(&token));
    let page = call(
        &rig.app,
        Method::GET,
        "/api/v1/incidents",
        Some(&token),
        None,
    )
    .await
    .json();
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["tenant"] == "globex")
    );
    let del = call(
        &rig.app,
        Method::DELETE,
        &format!("/api/v1/tokens/{}", t["id"]),
        Some(&rig.admin),
        None,
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let gone = call(
        &rig.app,
        Method::GET,
        "/api/v1/incidents",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);

    // Tenants.
    let t = call(
        &rig.app,
        Method::POST,
        "/api/v1/tenants",
        Some(&rig.admin),
        Some(serde_json::json!({"name": "initech", "display_name": "Initech"})),
    )
    .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let del = call(
        &rig.app,
        Method::DELETE,
        "/api/v1/tenants/initech",
        Some(&rig.admin),
        None,
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let h = call(
        &rig.app,
        Method::GET,
        "/api/v1/sources/health",
        Some(&rig.analyst_a),
        None,
    )
    .await
    .json();
    assert_eq!(h.as_array().map(Vec::len), Some(1));
    assert_eq!(h[0]["tenant"], "acme");

    // Operations.
    assert_eq!(
        call(&rig.app, Method::GET, "/healthz", None, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&rig.app, Method::GET, "/readyz", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let m = call(&rig.app, Method::GET, "/metrics", None, None).await;
    assert!(m.content_type.starts_with("text/plain"));
    for name in [
        "socbridge_findings{tenant=\"acme\"} 1",
        "socbridge_incidents{tenant=\"globex\"} 1",
        "socbridge_outbox_depth",
        "socbridge_outbox_oldest_age_seconds",
        "socbridge_source_errors{tenant=\"acme\"",
        "socbridge_http_request_duration_seconds_bucket{method=\"PATCH\",route=\"/api/v1/incidents/{id}\",status=\"200\"",
    ] {
        assert!(m.body.contains(name), "metrics lack {name}:\n{}", m.body);
    }
    // The document: OpenAPI 3, every route, the bearer scheme, problem details.
    let doc = call(&rig.app, Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .json();
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    assert_eq!(doc["paths"].as_object().map(|p| p.len()), Some(13));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn unlock_codes_are_shown_to_admin_tokens_only() {
    let rig = rig(1).await;
    let id = ids_of(&rig.engine, "acme").await[0];
    let c = call(
        &rig.app,
        Method::POST,
        &format!("/api/v1/incidents/{id}/contain"),
        Some(&rig.admin),
        Some(serde_json::json!({"isolate": true})),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    let action = c.json()["id"].as_i64().expect("an action id");
    // What the engine records before it isolates: the code, sealed for this action.
    let code = "Q7xK2mP9";
    let sealed = MasterKey::from_encoded(MASTER_KEY, "the test key")
        .unwrap()
        .seal(
            code.as_bytes(),
            format!("socbridge:action:{action}:unlock_code").as_bytes(),
        );
    rig.engine
        .store()
        .update_action(
            action,
            &socbridge_store::ActionChange {
                unlock_code: Some(sealed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The witness: the engine itself opens the code (as the CLI's `incidents get` does).
    assert_eq!(
        rig.engine.unlock_code(action).await.unwrap().as_deref(),
        Some(code)
    );

    let uri = format!("/api/v1/incidents/{id}");
    let admin = call(&rig.app, Method::GET, &uri, Some(&rig.admin), None).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    let actions = admin.json()["actions"].clone();
    let shown = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == action)
        .expect("the isolation is listed");
    assert_eq!(shown["kind"], "isolate");
    assert_eq!(shown["unlock_code"], code, "the admin sees the unlock code");

    let analyst = call(&rig.app, Method::GET, &uri, Some(&rig.analyst_a), None).await;
    assert_eq!(analyst.status, StatusCode::OK, "{}", analyst.body);
    let actions = analyst.json()["actions"].clone();
    let shown = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == action)
        .expect("the analyst sees the isolation");
    assert!(shown.get("unlock_code").is_none(), "{shown}");
    // Nowhere else either, for anyone: lists and findings never carry it.
    for (uri, token) in [
        (uri.clone(), &rig.analyst_a),
        (format!("{uri}/findings"), &rig.analyst_a),
        ("/api/v1/incidents".to_string(), &rig.analyst_a),
        ("/api/v1/incidents".to_string(), &rig.admin),
        (format!("{uri}/findings"), &rig.admin),
    ] {
        let a = call(&rig.app, Method::GET, &uri, Some(token), None).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
        assert!(!a.body.contains(code), "{uri} shows the unlock code");
    }
}

#[tokio::test]
async fn the_list_filters_by_source_and_free_text() {
    let rig = rig(3).await;
    let list = |query: &'static str, token: String| {
        let app = rig.app.clone();
        async move {
            let a = call(
                &app,
                Method::GET,
                &format!("/api/v1/incidents{query}"),
                Some(&token),
                None,
            )
            .await;
            assert_eq!(a.status, StatusCode::OK, "{query}: {}", a.body);
            a.json()["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["title"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    let admin = rig.admin.clone();
    let analyst = rig.analyst_a.clone();
    // The hostname, in another case: one incident of one tenant.
    let found = list("?q=GLOBEX-PC1", admin.clone()).await;
    assert_eq!(found.len(), 1, "{found:?}");
    // The analyst of acme never finds globex's incident by its text.
    assert!(list("?q=globex-pc1", analyst.clone()).await.is_empty());
    assert_eq!(list("?q=acme-pc", analyst.clone()).await.len(), 3);
    // Source by name (both tenants call theirs `amp`) and by kind.
    assert_eq!(list("?source=amp", admin.clone()).await.len(), 6);
    assert_eq!(
        list("?source=secure_endpoint", analyst.clone()).await.len(),
        3
    );
    assert!(list("?source=umbrella", admin.clone()).await.is_empty());
    assert_eq!(
        list("?source=amp&q=pc2&tenant=acme", admin.clone())
            .await
            .len(),
        1
    );
    // Blank filters filter nothing; an over-long text is refused by name.
    assert_eq!(list("?q=%20&source=", admin.clone()).await.len(), 6);
    let long = format!("/api/v1/incidents?q={}", "x".repeat(201));
    let a = call(&rig.app, Method::GET, &long, Some(&admin), None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .starts_with("q:")
    );
}

#[tokio::test]
async fn status_is_for_admins_and_names_each_job_after_its_tenant_and_source() {
    let rig = rig(1).await;
    let store = rig.engine.store().clone();
    let status = |token: Option<String>| {
        let app = rig.app.clone();
        async move { call(&app, Method::GET, "/api/v1/status", token.as_deref(), None).await }
    };
    let a = status(None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.content_type, "application/problem+json");
    let a = status(Some(rig.analyst_a.clone())).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.content_type, "application/problem+json");

    // One process, nothing shared yet: no replica, no lease, every source listed.
    let a = status(Some(rig.admin.clone())).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let s = a.json();
    assert_eq!(s["database"], "sqlite");
    assert_eq!(s["replicas"], serde_json::json!([]));
    assert_eq!(s["leases"], serde_json::json!([]));
    let sources = s["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    for (src, tenant) in sources.iter().zip(["acme", "globex"]) {
        assert_eq!(src["tenant"], tenant);
        assert_eq!(src["source"], "amp");
        assert_eq!(src["kind"], "secure_endpoint");
        assert_eq!(src["poll_interval_seconds"], 60.0);
        assert_eq!(src["overdue"], false, "just added: {src}");
        assert!(src["cursor_mark"].is_string(), "{src}");
        assert!(src["lag_seconds"].as_f64().is_some(), "{src}");
        for key in [
            "last_poll_at",
            "seconds_since_poll",
            "last_error",
            "polled_by",
        ] {
            assert!(src[key].is_null(), "{key}: {src}");
        }
    }

    // A replica holding acme's poll job and globex's outbox, and a lease left to lapse.
    let replica = socbridge_store::Replica {
        id: socbridge_store::ReplicaId::new("host-a-4242-0000beef"),
        host: "host-a".into(),
        pid: 4242,
    };
    store.register_replica(&replica).await.unwrap();
    let ids: std::collections::BTreeMap<String, (i64, i64)> = store
        .list_sources(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tenant, (s.tenant_id, s.id)))
        .collect();
    let hour = std::time::Duration::from_secs(3600);
    let poll = socbridge_store::poll_job(ids["acme"].1);
    let outbox = socbridge_store::outbox_job(ids["globex"].0);
    assert!(
        store
            .try_acquire(&poll, &replica.id, hour)
            .await
            .unwrap()
            .is_some()
    );
    let lapsing = store
        .try_acquire(&outbox, &replica.id, std::time::Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .release(
            &store
                .try_acquire(
                    &socbridge_store::poll_job(ids["globex"].1),
                    &replica.id,
                    hour,
                )
                .await
                .unwrap()
                .unwrap(),
        )
        .await
        .unwrap();

    let s = status(Some(rig.admin.clone())).await.json();
    let replicas = s["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0]["id"], "host-a-4242-0000beef");
    assert_eq!(replicas[0]["host"], "host-a");
    assert_eq!(replicas[0]["pid"], 4242);
    assert_eq!(replicas[0]["live"], true);
    assert!(replicas[0]["started_at"].is_string());
    let leases = s["leases"].as_array().unwrap();
    let by_name = |name: &str| {
        leases
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("no lease named {name}: {leases:?}"))
            .clone()
    };
    let l = by_name("acme/amp");
    assert_eq!(l["job"], poll.as_str());
    assert_eq!(
        (&l["kind"], &l["tenant"], &l["source"]),
        (&"poll".into(), &"acme".into(), &"amp".into())
    );
    assert_eq!(l["holder"], "host-a-4242-0000beef");
    assert_eq!(l["token"], 1);
    assert_eq!((&l["state"], &l["free"]), (&"held".into(), &false.into()));
    let l = by_name("globex");
    assert_eq!(
        (&l["kind"], &l["job"]),
        (&"outbox".into(), &outbox.as_str().into())
    );
    assert_eq!(l["token"], lapsing.token);
    assert_eq!((&l["state"], &l["free"]), (&"expired".into(), &true.into()));
    let l = by_name("globex/amp");
    assert_eq!(
        (&l["state"], &l["free"]),
        (&"released".into(), &true.into())
    );
    assert!(l["holder"].is_null());
    let sources = s["sources"].as_array().unwrap();
    assert_eq!(sources[0]["polled_by"], "host-a-4242-0000beef");
    assert!(
        sources[1]["polled_by"].is_null(),
        "a released job is polled by no one"
    );

    // The document names the route and what it answers.
    let doc = super::openapi_json();
    let op = &doc["paths"]["/api/v1/status"]["get"];
    for code in ["200", "401", "403"] {
        assert!(op["responses"][code].is_object(), "status lacks {code}");
    }
    assert!(doc["components"]["schemas"]["StatusReport"].is_object());
}
