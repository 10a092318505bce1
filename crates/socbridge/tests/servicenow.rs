//! ServiceNow end to end with the real binary: `serve --until-idle` tickets every incident
//! once, `check` verifies the ServiceNow credentials, and a running `serve` takes an
//! analyst's close in through the webhook the emulator pushes, with sync-in polling set too
//! far apart to be the cause.

mod common;
use common::*;
use socbridge_sim::{ConfigOptions, ServiceNowWebhook};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_idle_tickets_every_incident_and_the_webhook_closes_one() {
    let sim = start_sim(2, 31, 20).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &config,
        &ConfigOptions {
            servicenow_section: true,
            ..Default::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let tuned = text.replacen(
        "[servicenow]\n",
        "[servicenow]\nsync_interval = \"1h\"\n",
        1,
    );
    assert_ne!(text, tuned, "the config has a [servicenow] section");
    std::fs::write(&config, tuned).unwrap();
    let data = dir.path().join("data");

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--until-idle"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["--output", "json", "check"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows = json(&out);
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "servicenow" && r["ok"] == true),
        "{rows}"
    );

    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "incidents", "list", "--limit", "1000"]);
    let incidents = json(&run(cmd).await);
    let incidents = incidents.as_array().unwrap().clone();
    let counters = sim.counters().servicenow;
    assert_eq!(counters.tickets_by_correlation_id.len(), incidents.len());
    assert!(counters.tickets_by_correlation_id.values().all(|n| *n == 1));
    let first = &incidents[0];
    let ticket = &first["ticket"];
    assert_eq!(ticket["system"], "servicenow");
    let sys_id = ticket["sys_id"].as_str().unwrap().to_string();
    assert!(ticket["url"].as_str().unwrap().contains(&sys_id));
    let mut cmd = socbridge(&data);
    cmd.args([
        "--output",
        "json",
        "incidents",
        "get",
        &first["id"].to_string(),
    ]);
    let detail = json(&run(cmd).await);
    let work = detail["ticket_work"].as_array().unwrap();
    assert_eq!(work[0]["kind"], "create", "{detail}");
    assert!(work.iter().all(|w| w["state"] == "done"), "{detail}");
    assert!(
        detail["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "ticket_linked"),
        "the timeline records the ticket"
    );

    // Nothing is left in the outbox, and `outbox retry` has nothing to do.
    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "outbox", "list"]);
    let outbox = json(&run(cmd).await);
    assert_eq!(outbox["stats"]["pending"], 0, "{outbox}");
    assert_eq!(outbox["stats"]["failed"], 0, "{outbox}");
    assert!(outbox["stats"]["done"].as_i64().unwrap() >= incidents.len() as i64);
    let mut cmd = socbridge(&data);
    cmd.args(["outbox", "retry"]);
    let out = run(cmd).await;
    assert!(
        stdout(&out).contains("0 failed item(s) queued again"),
        "{}",
        describe(&out)
    );

    // A running serve, with the emulator's business rule pointed at its webhook.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut serve = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let up = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break;
        }
        assert!(Instant::now() < until, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.set_servicenow_webhook(Some(ServiceNowWebhook {
        url: format!("http://127.0.0.1:{port}/hooks/servicenow"),
        secret: None,
        header: None,
    }))
    .unwrap();

    let sn = sim.endpoints().servicenow.clone().unwrap();
    let closed_at = Instant::now();
    let resp = client
        .patch(format!(
            "{}/api/now/table/incident/{sys_id}",
            sn.instance_url
        ))
        .basic_auth(&sn.analyst.user_name, Some(&sn.analyst.password))
        .json(&serde_json::json!({
            "state": "6", "close_code": "Solution provided", "close_notes": "reimaged"
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let id = first["id"].to_string();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let mut cmd = socbridge(&data);
        cmd.args(["--output", "json", "incidents", "get", &id]);
        let got = json(&run(cmd).await);
        if got["status"] == "resolved" {
            assert_eq!(got["resolution"], "Solution provided: reimaged");
            break;
        }
        assert!(
            Instant::now() < until,
            "the webhook did not close the incident: {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "close in ServiceNow -> incident resolved via webhook in {} ms",
        closed_at.elapsed().as_millis()
    );
    let hooks = sim.counters().servicenow.webhook;
    assert!(hooks.delivered >= 1, "{hooks:?}");
    serve.start_kill().unwrap();
    let _ = serve.wait().await;
}
