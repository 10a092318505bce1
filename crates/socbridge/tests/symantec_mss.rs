//! Symantec MSS with the real binary against the emulator (TLS with client certificates):
//! `serve --until-idle` turns MSS incidents into incidents with tickets, the `vendor
//! symantec-mss` commands work straight at the service, and every certificate problem gets a
//! message of its own (exit 2 when it is the operator's input).

mod common;
use common::*;
use socbridge_sim::ConfigOptions;
use std::path::Path;

fn mss_config(sim: &socbridge_sim::SimHandle, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("socbridge.toml");
    sim.write_config_with(
        &path,
        &ConfigOptions {
            servicenow_section: true,
            symantec_sources: true,
            ..Default::default()
        },
    )
    .expect("config written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mss_incidents_are_fetched_ticketed_and_the_vendor_commands_work() {
    let sim = start_sim(1, 51, 5).await;
    let dir = tempfile::tempdir().unwrap();
    let config = mss_config(&sim, dir.path());
    let data = dir.path().join("data");
    let tenant = sim.endpoints().tenants[0].name.clone();

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--until-idle"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));

    // Every Emergency / Critical MSS incident is an incident with a ticket.
    let served: Vec<String> = sim
        .symantec_incidents(&tenant)
        .unwrap()
        .iter()
        .filter(|i| matches!(i["severity"].as_str(), Some("Emergency" | "Critical")))
        .map(|i| i["number"].to_string())
        .collect();
    assert!(!served.is_empty());
    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "incidents", "list", "--limit", "1000"]);
    let incidents = json(&run(cmd).await);
    let mss: Vec<_> = incidents
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| {
            i["sources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == "symantec_mss")
        })
        .collect();
    assert_eq!(mss.len(), served.len(), "one incident per MSS incident");
    assert!(mss.iter().all(|i| i["ticket"]["number"].is_string()));

    // list: all severities of the last hour, as JSON and as a table.
    let mut cmd = socbridge(&data);
    cmd.arg("--config").arg(&config).args([
        "--output",
        "json",
        "vendor",
        "symantec-mss",
        "list",
        "--tenant",
        &tenant,
        "--since",
        "1h",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let listed = json(&out);
    let all = sim.symantec_incidents(&tenant).unwrap().len();
    assert_eq!(listed["incidents"].as_array().unwrap().len(), all);
    let number = served[0].clone();
    let mut cmd = socbridge(&data);
    cmd.arg("--config").arg(&config).args([
        "vendor",
        "symantec-mss",
        "list",
        "--tenant",
        &tenant,
        "--severity",
        "Emergency,Critical",
        "--since",
        "1h",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&number), "{}", describe(&out));

    // get, then update with the XSOAR merge (resolution and severity kept from the workflow).
    let mut cmd = socbridge(&data);
    cmd.arg("--config").arg(&config).args([
        "vendor",
        "symantec-mss",
        "get",
        "--tenant",
        &tenant,
        &number,
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains(&number));
    let mut cmd = socbridge(&data);
    cmd.arg("--config").arg(&config).args([
        "--output",
        "json",
        "vendor",
        "symantec-mss",
        "update",
        "--tenant",
        &tenant,
        &number,
        "--status",
        "Closed",
        "--resolution",
        "Resolved",
        "--comment",
        "checked from the CLI",
        "--reference",
        "CHG0001",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json(&out)["applied"], true);
    let w = &sim.counters().symantec_mss.tenants[&tenant].workflow_by_incident[&number];
    assert_eq!(
        (w.updates, w.last_reference.as_deref()),
        (1, Some("CHG0001"))
    );

    // Bad input at the vendor command: exit 2, naming it.
    let mut cmd = socbridge(&data);
    cmd.arg("--config").arg(&config).args([
        "vendor",
        "symantec-mss",
        "list",
        "--tenant",
        &tenant,
        "--severity",
        "Urgent",
    ]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("Urgent"), "{}", describe(&out));
    sim.shutdown().await;
}

/// `source add --kind symantec_mss` with the certificate in an env var (base64) and its
/// passphrase in another.
async fn add_source(
    data: &Path,
    p12_b64: &str,
    passphrase: &str,
    url: &str,
    ca: &Path,
) -> std::process::Output {
    let mut cmd = socbridge(data);
    cmd.env("TEST_P12", p12_b64)
        .env("TEST_PASS", passphrase)
        .args([
            "source",
            "add",
            "--tenant",
            "t1",
            "--name",
            "mss",
            "--kind",
            "symantec_mss",
            "--base-url",
            url,
            "--p12-base64-env",
            "TEST_P12",
            "--p12-passphrase-env",
            "TEST_PASS",
            "--ca-file",
        ])
        .arg(ca);
    run(cmd).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_certificate_problem_has_its_own_message() {
    let sim = start_sim(1, 53, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ep = sim.endpoints().clone();
    let mss = ep.symantec_mss.clone().expect("the Symantec emulator runs");
    let creds = ep.tenants[0].symantec_mss.clone().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &mss.ca_pem).unwrap();
    let mut cmd = socbridge(&data);
    cmd.args(["tenant", "add", "t1"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));

    // Wrong passphrase, and not a PKCS#12 at all: bad input, each named.
    let out = add_source(
        &data,
        &creds.p12_base64,
        "not-the-passphrase",
        &mss.url,
        &ca,
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("passphrase"), "{}", describe(&out));
    let garbage = base64_of(b"this is not a certificate");
    let out = add_source(&data, &garbage, &creds.passphrase, &mss.url, &ca).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("PKCS#12"), "{}", describe(&out));

    // Both encodings of the tenant's certificate load; check passes with either.
    for p12 in [&creds.p12_legacy_base64, &creds.p12_base64] {
        let out = add_source(&data, p12, &creds.passphrase, &mss.url, &ca).await;
        assert!(out.status.success(), "{}", describe(&out));
        let mut cmd = socbridge(&data);
        cmd.args(["--output", "json", "check", "--tenant", "t1"]);
        let out = run(cmd).await;
        assert!(out.status.success(), "{}", describe(&out));
    }

    // The test-API certificate is refused by the (production) service.
    let out = add_source(
        &data,
        &creds.test_api_p12_base64,
        &creds.passphrase,
        &mss.url,
        &ca,
    )
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut cmd = socbridge(&data);
    cmd.args(["check", "--tenant", "t1"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        stdout(&out).to_lowercase().contains("refused")
            || stderr(&out).to_lowercase().contains("refused"),
        "{}",
        describe(&out)
    );
    let refused = sim.counters().symantec_mss.handshakes_refused;
    assert!(
        refused.unknown_ca > 0,
        "the emulator refused the handshake: {refused:?}"
    );

    // Nobody listening: unreachable, naming the URL.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let out = add_source(&data, &creds.p12_base64, &creds.passphrase, &closed, &ca).await;
    assert!(out.status.success(), "{}", describe(&out));
    let mut cmd = socbridge(&data);
    cmd.args(["check", "--tenant", "t1"]);
    let out = run(cmd).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out)).to_lowercase();
    assert!(
        text.contains("unreachable") || text.contains("cannot reach") || text.contains("connect"),
        "{}",
        describe(&out)
    );
    sim.shutdown().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
