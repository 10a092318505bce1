//! The HTTP API through the real `serve` process: a token created by the CLI opens the API,
//! no token is refused with a problem document, and SIGTERM stops `serve` cleanly.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_api_with_a_cli_token_and_stops_on_sigterm() {
    let sim = start_sim(1, 97, 20).await;
    let tenant = sim.endpoints().tenants[0].name.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    let data = dir.path().join("data");
    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--until-idle"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut cmd = socbridge(&data);
    cmd.args([
        "--output", "json", "token", "create", "--role", "analyst", "--tenant", &tenant,
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let token = json(&out)["token"].as_str().unwrap().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("serve starts");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let list = http
        .get(format!("{base}/api/v1/incidents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let body: serde_json::Value = list.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i["tenant"] == tenant.as_str()));

    let refused = http
        .get(format!("{base}/api/v1/incidents"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let doc = http
        .get(format!("{base}/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);

    let exit = stop_with(&mut child, "TERM").await;
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
    sim.shutdown().await;
}

/// `socbridge status` as text and as JSON.
async fn status(data: &std::path::Path, url: Option<&str>) -> (String, serde_json::Value) {
    let with = |json: bool| {
        let mut cmd = socbridge(data);
        if let Some(u) = url {
            cmd.args(["--database-url", u]);
        }
        if json {
            cmd.args(["--output", "json"]);
        }
        cmd.arg("status");
        cmd
    };
    let text = run(with(false)).await;
    assert!(text.status.success(), "{}", describe(&text));
    let js = run(with(true)).await;
    assert!(js.status.success(), "{}", describe(&js));
    (stdout(&text), json(&js))
}

/// Registers a replica and gives it `job` for an hour, as a `serve` sharing the database
/// would; answers the replica's id.
async fn hold(store: &socbridge_store::Store, name: &str, job: &str) -> String {
    let replica = socbridge_store::Replica {
        id: socbridge_store::ReplicaId::new(format!("{name}-77-00c0ffee")),
        host: name.to_string(),
        pid: 77,
    };
    store.register_replica(&replica).await.unwrap();
    let lease = store
        .try_acquire(job, &replica.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(lease.is_some(), "{job} is free");
    replica.id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_replicas_leases_and_the_lag_of_every_source() {
    // An empty database says so plainly.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (text, js) = status(&data, None).await;
    for line in [
        "Database: sqlite",
        "Replicas: none registered.",
        "Leases: none granted yet.",
        "Sources: none.",
    ] {
        assert!(text.contains(line), "lacks {line}:\n{text}");
    }
    assert_eq!(js["database"], "sqlite");
    for key in ["replicas", "leases", "sources"] {
        assert_eq!(js[key], serde_json::json!([]), "{key}: {js}");
    }

    // Every source polled once.
    let sim = start_sim(2, 98, 10).await;
    let config = write_config(&sim, dir.path());
    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--until-idle"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let tenants: Vec<String> = sim
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let (text, js) = status(&data, None).await;
    assert!(text.contains("Sources: 2, 0 overdue"), "{text}");
    let sources = js["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{js}");
    for (s, tenant) in sources.iter().zip(&tenants) {
        assert_eq!(s["tenant"], tenant.as_str());
        assert_eq!(s["source"], "secure-endpoint");
        assert_eq!(s["kind"], "secure_endpoint");
        assert!(s["last_poll_at"].is_string(), "{s}");
        assert!(s["cursor_mark"].is_string(), "{s}");
        assert!(s["seconds_since_poll"].as_f64().is_some(), "{s}");
        assert!(s["lag_seconds"].as_f64().is_some(), "{s}");
        assert_eq!(s["poll_interval_seconds"], 60.0);
        assert_eq!(s["overdue"], false);
        assert!(s["last_error"].is_null(), "{s}");
        assert!(text.contains(tenant.as_str()), "{text}");
    }

    // A replica holding the first source's poll job: named after its tenant and source.
    let store = socbridge_store::Store::open_sqlite(&data.join("socbridge.db"))
        .await
        .unwrap();
    let first = store
        .get_source(&tenants[0], "secure-endpoint")
        .await
        .unwrap()
        .unwrap();
    let id = hold(&store, "node-1", &socbridge_store::poll_job(first.id)).await;
    store.close().await;
    let (text, js) = status(&data, None).await;
    let name = format!("{}/secure-endpoint", tenants[0]);
    for part in [id.as_str(), "node-1", "live", name.as_str(), "held"] {
        assert!(text.contains(part), "lacks {part}:\n{text}");
    }
    let replica = js["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no replica {id}: {js}"))
        .clone();
    assert_eq!(
        (replica["host"].as_str(), replica["pid"].as_i64()),
        (Some("node-1"), Some(77))
    );
    assert_eq!(replica["live"], true);
    let lease = js["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name.as_str())
        .unwrap_or_else(|| panic!("no lease {name}: {js}"))
        .clone();
    assert_eq!(lease["kind"], "poll");
    assert_eq!(lease["holder"], id.as_str());
    assert_eq!(lease["state"], "held");
    assert!(lease["token"].as_i64().is_some_and(|t| t >= 1), "{lease}");
    assert!(lease["expires_at"].is_string());
    assert_eq!(js["sources"][0]["polled_by"], id.as_str());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_a_postgres_database() {
    let server = std::env::var("SOCBRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("socbridge_status_{:016x}", rand::random::<u64>());
    let store = socbridge_store::Store::connect_in_schema(&server, &schema)
        .await
        .unwrap_or_else(|e| panic!("this test needs PostgreSQL at {server}: {e}"));
    let sep = if server.contains('?') { '&' } else { '?' };
    let url = format!("{server}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut cmd = socbridge(&data);
    cmd.args(["--database-url", &url, "tenant", "add", "acme"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let (text, js) = status(&data, Some(&url)).await;
    assert!(text.contains("Database: postgres"), "{text}");
    assert!(text.contains("Replicas: none registered."), "{text}");
    assert_eq!(js["database"], "postgres");
    assert_eq!(js["replicas"], serde_json::json!([]));

    // A replica holding acme's outbox: the lease is named after the tenant.
    let tenant = store.get_tenant("acme").await.unwrap().unwrap();
    let id = hold(&store, "node-2", &socbridge_store::outbox_job(tenant.id)).await;
    let (text, js) = status(&data, Some(&url)).await;
    assert!(text.contains(&id), "{text}");
    let leases = js["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{js}");
    assert_eq!(leases[0]["name"], "acme");
    assert_eq!(leases[0]["kind"], "outbox");
    assert_eq!(leases[0]["holder"], id.as_str());
    assert_eq!(leases[0]["token"], 1);
    assert_eq!(js["replicas"][0]["id"], id.as_str());
    store.close().await;

    // Best effort: the schema goes with the test.
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut conn)
            .await;
    }
}
