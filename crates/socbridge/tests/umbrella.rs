//! Umbrella from the CLI: an MSSP adds its parent key once, then each customer with one
//! command naming its org; check and fetch work; bad input is named and exits 2; the secret
//! is never shown.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_credential_once_then_one_command_per_customer() {
    let sim = start_sim(2, 91, 5).await;
    let ep = sim.endpoints().clone();
    let u = ep.umbrella.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cli = |args: &[&str]| {
        let mut cmd = socbridge(&data);
        cmd.env("MSSP_KEY", &u.parent_key)
            .env("MSSP_SECRET", &u.parent_secret)
            .args(args);
        cmd
    };

    let out = run(cli(&[
        "credential",
        "add",
        "--name",
        "mssp",
        "--kind",
        "umbrella",
        "--base-url",
        &u.base_url,
        "--key-env",
        "MSSP_KEY",
        "--secret-env",
        "MSSP_SECRET",
    ]))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    for t in &ep.tenants {
        let org = t.umbrella.as_ref().unwrap().org_id.to_string();
        let out = run(cli(&["tenant", "add", &t.name])).await;
        assert!(out.status.success(), "{}", describe(&out));
        let out = run(cli(&[
            "source",
            "add",
            "--tenant",
            &t.name,
            "--name",
            "umbrella",
            "--kind",
            "umbrella",
            "--parent-credential",
            "mssp",
            "--org-id",
            &org,
        ]))
        .await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let out = run(cli(&["--output", "json", "check"])).await;
    assert!(out.status.success(), "{}", describe(&out));
    let out = run(cli(&[
        "--output",
        "json",
        "fetch",
        "--tenant",
        &ep.tenants[0].name,
    ]))
    .await;
    assert!(out.status.success(), "{}", describe(&out));
    let new: u64 = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["new_findings"].as_u64().unwrap())
        .sum();
    assert!(new > 0, "{}", describe(&out));

    // The secret is stored once and never shown.
    let out = run(cli(&["--output", "json", "credential", "list"])).await;
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("\"mssp\"") && !text.contains(&u.parent_secret),
        "{text}"
    );
    assert_eq!(json(&out).as_array().unwrap().len(), 1);

    // Bad input: named, exit 2.
    for (args, needle) in [
        (
            vec![
                "source",
                "add",
                "--tenant",
                &ep.tenants[0].name,
                "--name",
                "u2",
                "--kind",
                "umbrella",
            ],
            "--parent-credential",
        ),
        (
            vec![
                "source",
                "add",
                "--tenant",
                &ep.tenants[0].name,
                "--name",
                "u2",
                "--kind",
                "umbrella",
                "--parent-credential",
                "mssp",
                "--org-id",
                "acme",
            ],
            "org_id",
        ),
        (
            vec![
                "credential",
                "add",
                "--name",
                "x",
                "--kind",
                "secure_endpoint",
                "--key",
                "k",
                "--secret-env",
                "MSSP_SECRET",
            ],
            "only umbrella",
        ),
    ] {
        let out = run(cli(&args)).await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(stderr(&out).contains(needle), "{}", describe(&out));
    }

    // Without its credential a source says so when it polls.
    let out = run(cli(&["credential", "remove", "mssp"])).await;
    assert!(out.status.success());
    let out = run(cli(&["fetch", "--tenant", &ep.tenants[1].name])).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        format!("{}{}", stdout(&out), stderr(&out)).contains("no credential named `mssp`"),
        "{}",
        describe(&out)
    );
    sim.shutdown().await;
}
