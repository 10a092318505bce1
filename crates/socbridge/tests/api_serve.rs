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
