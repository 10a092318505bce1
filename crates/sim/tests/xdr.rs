//! The Cisco XDR emulator on the wire, as a client sees it: the IROH token endpoint (client
//! credentials, refusals, expiry), the CTIA incident routes behind a bearer token, the CTIM
//! schema checks that name the offending key, organisations kept apart, faults and the
//! counters. Every test starts its own emulator on free ports.

use reqwest::StatusCode;
use serde_json::{Value, json};
use socbridge_sim::{SimConfig, SimHandle, XdrFaults};
use std::time::Duration;

async fn start(seed: u64) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed,
        initial_events_per_tenant: 1,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

fn creds(sim: &SimHandle, i: usize) -> (String, String) {
    let c = &sim.endpoints().xdr.as_ref().unwrap().clients[i];
    (c.client_id.clone(), c.client_secret.clone())
}

fn ctia(sim: &SimHandle, path: &str) -> String {
    format!("{}{path}", sim.endpoints().xdr.as_ref().unwrap().ctia_url)
}

async fn token_answer(
    sim: &SimHandle,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let url = sim.endpoints().xdr.as_ref().unwrap().token_url.clone();
    let resp = reqwest::Client::new()
        .post(url)
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn token(sim: &SimHandle, i: usize) -> String {
    let (id, secret) = creds(sim, i);
    let (status, v) =
        token_answer(sim, &id, &secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

fn incident(external_id: &str) -> Value {
    json!({
        "type": "incident",
        "source": "socbridge",
        "title": "[acme] Threat Detected on WIN-1",
        "confidence": "High",
        "status": "New",
        "severity": "High",
        "tlp": "amber",
        "incident_time": {"opened": "2026-11-30T09:58:00.000000Z"},
        "external_ids": [external_id],
        "external_references": [{"source_name": "ServiceNow", "url": "https://sn/1"}]
    })
}

async fn send(
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut rb = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token);
    if let Some(b) = body {
        rb = rb.json(b);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_are_issued_to_known_clients_only_and_expire() {
    let sim = start(1).await;
    let (id, secret) = creds(&sim, 0);
    let (status, v) =
        token_answer(&sim, &id, &secret, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 600, "the real service's lifetime");
    let (status, v) =
        token_answer(&sim, &id, "wrong", &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"], "invalid_client");
    let (status, v) = token_answer(&sim, &id, &secret, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "invalid_request");
    let (status, _) = token_answer(&sim, &id, &secret, &[("grant_type", "password")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // No token, a made-up token, an expired one: 401.
    let resp = reqwest::Client::new()
        .get(ctia(&sim, "/ctia/incident/external_id/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/x"),
        "nope",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sim.set_xdr_token_ttl(Duration::from_millis(200));
    let short = token(&sim, 0).await;
    let (status, _) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/x"),
        &short,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/x"),
        &short,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error_description"], "Token expired");
    let fresh = token(&sim, 0).await;
    assert_eq!(sim.expire_xdr_tokens(), 2, "the two live tokens");
    let (status, _) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/x"),
        &fresh,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let c = sim.counters().xdr;
    assert_eq!(c.tokens_issued, 3);
    assert_eq!(c.tokens_refused, 3);
    assert_eq!(c.unauthorized, 4);
}

#[tokio::test]
async fn incidents_are_created_read_patched_and_found_by_external_id() {
    let sim = start(2).await;
    let t = token(&sim, 0).await;
    let (status, created) = send(
        reqwest::Method::POST,
        ctia(&sim, "/ctia/incident"),
        &t,
        Some(&incident("ext-1")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.contains("/ctia/incident/incident-"), "{id}");
    assert_eq!(created["type"], "incident");
    assert!(created["schema_version"].is_string());
    let short = id.rsplit('/').next().unwrap().to_string();

    let (status, found) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/ext-1"),
        &t,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["id"], id);
    let (_, none) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/ext-2"),
        &t,
        None,
    )
    .await;
    assert_eq!(none, json!([]));

    let (status, patched) = send(
        reqwest::Method::PATCH,
        ctia(&sim, &format!("/ctia/incident/{short}")),
        &t,
        Some(&json!({"status": "Closed"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["status"], "Closed");
    assert_eq!(
        patched["confidence"], "High",
        "a PATCH changes only what it names"
    );
    let (_, read) = send(
        reqwest::Method::GET,
        ctia(&sim, &format!("/ctia/incident/{short}")),
        &t,
        None,
    )
    .await;
    assert_eq!(read["status"], "Closed");

    // Unknown ids, and another organisation's incident, are 404 alike.
    let (status, _) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/incident-0000"),
        &t,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = token(&sim, 1).await;
    let (status, _) = send(
        reqwest::Method::GET,
        ctia(&sim, &format!("/ctia/incident/{short}")),
        &other,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        reqwest::Method::PATCH,
        ctia(&sim, &format!("/ctia/incident/{short}")),
        &other,
        Some(&json!({"status": "Open"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/ext-1"),
        &other,
        None,
    )
    .await;
    assert_eq!(theirs, json!([]));

    // A second incident with the same external id is stored (CTIA does not refuse it) and
    // counted as a duplicate.
    let (status, _) = send(
        reqwest::Method::POST,
        ctia(&sim, "/ctia/incident"),
        &t,
        Some(&incident("ext-1")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let c = sim.counters().xdr;
    assert_eq!(c.incidents_created, 2);
    assert_eq!(c.duplicates_by_external_id, 1);
    assert_eq!(c.status_patches.get("Closed"), Some(&1));
    assert_eq!(c.patches_refused, 1);
    let names: Vec<String> = sim
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(c.incidents_by_tenant.get(&names[0]), Some(&2));
    assert_eq!(sim.xdr_incidents(Some(&names[1])).len(), 0);
}

#[tokio::test]
async fn the_schema_refuses_what_ctim_refuses_naming_the_key() {
    let sim = start(3).await;
    let t = token(&sim, 0).await;
    let post = |body: Value| {
        let url = ctia(&sim, "/ctia/incident");
        let t = t.clone();
        async move { send(reqwest::Method::POST, url, &t, Some(&body)).await }
    };
    let mut missing = incident("e");
    missing.as_object_mut().unwrap().remove("confidence");
    let (status, v) = post(missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"]["confidence"], "missing-required-key");

    let mut no_opened = incident("e");
    no_opened["incident_time"] = json!({});
    let (status, v) = post(no_opened).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"]["incident_time.opened"], "missing-required-key");

    for (key, value) in [
        ("status", json!("Done")),
        ("confidence", json!("Sure")),
        ("severity", json!("Urgent")),
        ("tlp", json!("blue")),
        ("type", json!("sighting")),
    ] {
        let mut bad = incident("e");
        bad[key] = value.clone();
        let (status, v) = post(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        let problem = v["errors"][key].as_str().unwrap_or_default();
        assert!(problem.contains(&value.to_string()), "{key}: {v}");
    }
    let mut extra = incident("e");
    extra["colour"] = json!("red");
    let (status, v) = post(extra).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"]["colour"], "disallowed-key");
    let mut bad_ref = incident("e");
    bad_ref["external_references"] = json!([{"url": "https://x"}]);
    let (status, v) = post(bad_ref).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        v["errors"]["external_references.source_name"],
        "missing-required-key"
    );
    let mut bad_time = incident("e");
    bad_time["incident_time"] = json!({"opened": "yesterday"});
    let (status, _) = post(bad_time).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, created) = post(incident("e")).await;
    assert_eq!(status, StatusCode::CREATED);
    let short = created["id"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    for body in [
        json!({"status": "Finished"}),
        json!({"type": "sighting"}),
        json!({"id": "x"}),
    ] {
        let (status, _) = send(
            reqwest::Method::PATCH,
            ctia(&sim, &format!("/ctia/incident/{short}")),
            &t,
            Some(&body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let c = sim.counters().xdr;
    assert_eq!(c.incidents_created, 1);
    assert_eq!(c.creates_refused, 10);
    assert_eq!(c.patches_refused, 3);
    assert!(c.status_patches.is_empty());
}

#[tokio::test]
async fn commit_then_drop_saves_the_write_and_answers_nothing() {
    let sim = start(4).await;
    let t = token(&sim, 0).await;
    sim.set_xdr_faults(XdrFaults {
        rate_commit_drop: 1.0,
        ..XdrFaults::default()
    });
    let result = reqwest::Client::new()
        .post(ctia(&sim, "/ctia/incident"))
        .bearer_auth(&t)
        .json(&incident("dropped"))
        .send()
        .await;
    assert!(result.is_err(), "no answer: {result:?}");
    sim.set_xdr_faults(XdrFaults {
        rate_503: 1.0,
        ..XdrFaults::default()
    });
    let (status, _) = send(
        reqwest::Method::POST,
        ctia(&sim, "/ctia/incident"),
        &t,
        Some(&incident("refused")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "an error fault writes nothing"
    );
    sim.set_xdr_faults(XdrFaults::default());
    let (_, found) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/dropped"),
        &t,
        None,
    )
    .await;
    assert_eq!(
        found.as_array().unwrap().len(),
        1,
        "the dropped create was saved"
    );
    let (_, found) = send(
        reqwest::Method::GET,
        ctia(&sim, "/ctia/incident/external_id/refused"),
        &t,
        None,
    )
    .await;
    assert_eq!(found, json!([]));
    let c = sim.counters().xdr;
    assert_eq!(c.incidents_created, 1);
    assert_eq!(c.faults.commit_drop, 1);
    assert_eq!(c.faults.status_503, 1);

    // The control API speaks for the same emulator.
    let control = sim.endpoints().control.clone();
    let v: Value = reqwest::get(format!("{control}/xdr/incidents"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let resp = reqwest::Client::new()
        .post(format!("{control}/xdr/faults"))
        .json(&json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
