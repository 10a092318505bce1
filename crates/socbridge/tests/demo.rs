//! `socbridge demo --once`: the first command of the README. It runs every emulator and the
//! whole pipeline, and exits 0 only when its own check against the emulators holds.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_once_passes_its_check_against_the_emulators() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args(["--output", "json", "demo", "--once", "--tenants", "3"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let summary = json(&out);
    assert_eq!(summary["ok"], true, "{summary}");
    let rows = summary["tenants"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let signals = r["signals"].as_u64().unwrap();
        assert!(signals > 0, "{r}");
        assert_eq!(r["stored"], r["signals"], "{r}");
        assert_eq!(r["tickets"].as_u64(), r["incidents"].as_u64(), "{r}");
        assert_eq!(r["doubled"], 0, "{r}");
        assert!(r["isolated"].as_u64().unwrap() > 0, "{r}");
    }
}

/// `socbridge demo` without `--once`: prints where the console is and an admin token that
/// opens the API, keeps ingesting (incidents and their tickets appear, counted on /metrics),
/// and stops cleanly on Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_demo_prints_the_console_and_a_working_admin_token_until_ctrl_c() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args(["demo", "--tenants", "2", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("demo starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut console, mut token) = (None, None);
    while console.is_none() || token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo prints the console URL and a token")
            .unwrap()
            .expect("the demo keeps running");
        if let Some(url) = line.strip_prefix("console:") {
            console = Some(url.trim().to_string());
        } else if let Some(t) = line.strip_prefix("admin token:") {
            token = Some(t.trim().to_string());
        }
    }
    let (console, token) = (console.unwrap(), token.unwrap());
    assert!(console.starts_with("http://127.0.0.1:"), "{console}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Live data: incidents reach the API, and the engine's counters show polls and tickets.
    loop {
        let page: serde_json::Value = http
            .get(format!("{console}api/v1/incidents"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .expect("the admin token opens the API")
            .json()
            .await
            .unwrap();
        let metrics = http
            .get(format!("{console}metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counted = |name: &str| {
            metrics
                .lines()
                .filter(|l| l.starts_with(name))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        let items = page["items"].as_array().map_or(0, Vec::len);
        if items > 0
            && counted("socbridge_polls_total{") > 0.0
            && counted("socbridge_tickets_created_total{") > 0.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no incidents, polls or tickets after 120 s: {items} incidents\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let exit = stop_with(&mut child, "INT").await;
    assert!(exit.success(), "the demo exits 0 on Ctrl-C: {exit:?}");
}
