//! The walking skeleton end to end: emulator -> `socbridge serve --until-idle` -> store ->
//! `incidents` commands, with the emulator's own counters as the witness.

mod common;
use common::*;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn until_idle_twice_stores_every_served_event_once() {
    let sim = start_sim(3, 11, 80).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    let data = dir.path().join("data");

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["--output", "json", "serve", "--until-idle"]);
    let first = run(cmd).await;
    assert!(first.status.success(), "{}", describe(&first));
    let new_first: u64 = json(&first)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["new_findings"].as_u64().unwrap())
        .sum();
    assert!(new_first > 0, "the first run stores findings");

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["--output", "json", "serve", "--until-idle"]);
    let second = run(cmd).await;
    assert!(second.status.success(), "{}", describe(&second));
    let reports = json(&second);
    let new_second: u64 = reports
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["new_findings"].as_u64().unwrap())
        .sum();
    assert_eq!(
        new_second,
        0,
        "the second run stores nothing new:\n{}",
        describe(&second)
    );

    // The emulator's own count of served matching events equals what the store holds.
    let counters = sim.counters();
    let mut stored_total = 0;
    for (tenant, c) in &counters.secure_endpoint.tenants {
        let mut cmd = socbridge(&data);
        cmd.args(["--output", "json", "tenant", "show", tenant]);
        let out = run(cmd).await;
        assert!(out.status.success(), "{}", describe(&out));
        let findings = json(&out)["findings"].as_u64().unwrap();
        assert_eq!(
            findings, c.served_distinct_high_priority,
            "tenant {tenant}: stored findings = distinct matching events served"
        );
        assert_eq!(
            findings, c.events_high_priority,
            "tenant {tenant}: every matching event in the look-back window was served"
        );
        stored_total += findings;
    }
    assert_eq!(stored_total, new_first);

    // `incidents list --output json` is valid JSON carrying the contract's fields.
    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "incidents", "list", "--limit", "1000"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let incidents = json(&out);
    let list = incidents.as_array().unwrap();
    assert!(!list.is_empty());
    let mut findings_in_incidents = 0;
    for inc in list {
        for field in [
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
        ] {
            assert!(inc.get(field).is_some(), "incident lacks `{field}`: {inc}");
        }
        assert!(
            ["informational", "low", "medium", "high", "critical"]
                .contains(&inc["severity"].as_str().unwrap())
        );
        assert_eq!(inc["status"], "new");
        assert_eq!(inc["sources"], serde_json::json!(["secure_endpoint"]));
        for o in inc["observables"].as_array().unwrap() {
            assert!(o["type"].is_string() && o["value"].is_string(), "{o}");
        }
        findings_in_incidents += inc["finding_count"].as_u64().unwrap();
    }
    assert_eq!(
        findings_in_incidents, stored_total,
        "every finding is in exactly one incident"
    );

    // One incident per computer while open: no two open incidents share a host.
    let mut per_host: BTreeMap<(String, String), u32> = BTreeMap::new();
    for inc in list {
        *per_host
            .entry((
                inc["tenant"].as_str().unwrap().into(),
                inc["title"]
                    .as_str()
                    .unwrap()
                    .rsplit(" on ")
                    .next()
                    .unwrap()
                    .into(),
            ))
            .or_default() += 1;
    }
    assert!(per_host.values().all(|n| *n == 1), "{per_host:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_get_and_update_from_the_cli() {
    let sim = start_sim(1, 5, 20).await;
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
        "--output",
        "json",
        "incidents",
        "list",
        "--severity",
        "critical,high,medium,low,informational",
    ]);
    let list = json(&run(cmd).await);
    let id = list[0]["id"].as_i64().unwrap();

    let mut cmd = socbridge(&data);
    cmd.args([
        "--output",
        "json",
        "incidents",
        "update",
        &id.to_string(),
        "--status",
        "closed",
        "--resolution",
        "false positive",
        "--assignee",
        "alice",
        "--comment",
        "checked the host",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(json(&out)["status"], "closed");

    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "incidents", "get", &id.to_string()]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let detail = json(&out);
    assert_eq!(detail["status"], "closed");
    assert_eq!(detail["assignee"], "alice");
    assert_eq!(detail["resolution"], "false positive");
    assert!(
        detail["findings"].as_array().unwrap().len() as u64
            == detail["finding_count"].as_u64().unwrap()
    );
    assert!(
        detail["findings"][0]["raw"]["id"].is_u64(),
        "the raw vendor payload is kept: {}",
        detail["findings"][0]
    );
    let timeline = detail["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|e| e["kind"] == "comment"
            && e["detail"].as_str().unwrap().contains("checked the host")),
        "{timeline:?}"
    );

    // Filters: the closed incident is found by status, not by another status.
    let mut cmd = socbridge(&data);
    cmd.args([
        "--output",
        "json",
        "incidents",
        "list",
        "--status",
        "closed",
    ]);
    let closed = json(&run(cmd).await);
    assert!(
        closed
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"].as_i64() == Some(id))
    );
    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "incidents", "list", "--status", "new"]);
    let open = json(&run(cmd).await);
    assert!(
        !open
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"].as_i64() == Some(id))
    );

    // Table output works too.
    let mut cmd = socbridge(&data);
    cmd.args(["incidents", "get", &id.to_string()]);
    let out = run(cmd).await;
    assert!(
        out.status.success() && stdout(&out).contains("timeline"),
        "{}",
        describe(&out)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_event_is_quarantined_and_the_rest_is_stored() {
    let sim = start_sim(1, 3, 30).await;
    let tenant = sim.endpoints().tenants[0].name.clone();
    sim.add_events(socbridge_sim::AddEvents {
        tenant: tenant.clone(),
        count: 1,
        malformed: true,
        same_second: false,
        event_type_id: None,
    });
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
    cmd.args(["--output", "json", "tenant", "show", &tenant]);
    let shown = json(&run(cmd).await);
    let c = &sim.counters().secure_endpoint.tenants[&tenant];
    assert_eq!(shown["quarantined"], 1, "{shown}");
    assert_eq!(
        shown["findings"].as_u64().unwrap(),
        c.events_high_priority,
        "the rest of the page is stored"
    );
    assert_eq!(c.malformed_served_distinct, 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_for_one_tenant_do_not_stop_the_others() {
    let sim = start_sim(3, 9, 25).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    let bad = sim.endpoints().tenants[1].name.clone();
    let env_file = dir.path().join("socbridge.env");
    let var = format!(
        "{}_SECURE_ENDPOINT_API_KEY",
        bad.to_uppercase().replace('-', "_")
    );
    let text = std::fs::read_to_string(&env_file).unwrap();
    let replaced: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{var}=")) {
                format!("{var}=0000wrong0000")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(text.trim(), replaced.trim(), "the env file names {var}");
    std::fs::write(&env_file, replaced).unwrap();

    let data = dir.path().join("data");
    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["--output", "json", "serve", "--until-idle"]);
    let out = run(cmd).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed source makes the run exit 1:\n{}",
        describe(&out)
    );
    let reports = json(&out);
    for r in reports.as_array().unwrap() {
        let tenant = r["tenant"].as_str().unwrap();
        if tenant == bad {
            let err = r["error"].as_str().unwrap_or_default();
            assert!(
                err.contains("401") || err.to_lowercase().contains("credentials"),
                "{err}"
            );
            assert!(
                err.contains("Unknown API key or Client ID"),
                "the vendor's reason is shown: {err}"
            );
        } else {
            assert!(r["error"].is_null(), "{r}");
            let c = &sim.counters().secure_endpoint.tenants[tenant];
            assert_eq!(r["new_findings"].as_u64().unwrap(), c.events_high_priority);
        }
    }
    // The failure is recorded on the source for `source list`.
    let mut cmd = socbridge(&data);
    cmd.args(["--output", "json", "source", "list", "--tenant", &bad]);
    let sources = json(&run(cmd).await);
    assert!(
        sources[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("Unknown API key"),
        "{sources}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_exits_2_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[[tenants]]\nname = \"acme\"\nshoe_size = 42\n").unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--config".into(),
                cfg.display().to_string(),
                "serve".into(),
                "--until-idle".into(),
            ],
            "shoe_size",
        ),
        (
            vec![
                "incidents".into(),
                "list".into(),
                "--severity".into(),
                "urgent".into(),
            ],
            "urgent",
        ),
        (
            vec![
                "incidents".into(),
                "list".into(),
                "--since".into(),
                "yesterday".into(),
            ],
            "yesterday",
        ),
        (
            vec![
                "incidents".into(),
                "list".into(),
                "--source-ip".into(),
                "10.0.0.300".into(),
            ],
            "10.0.0.300",
        ),
        (
            vec!["incidents".into(), "get".into(), "999999".into()],
            "999999",
        ),
        (
            vec!["incidents".into(), "update".into(), "1".into()],
            "nothing to update",
        ),
        (
            vec!["incidents".into(), "list".into(), "--no-such-flag".into()],
            "--no-such-flag",
        ),
        (
            vec!["fetch".into(), "--tenant".into(), "nobody".into()],
            "nobody",
        ),
        (
            vec!["tenant".into(), "add".into(), "Not Valid".into()],
            "Not Valid",
        ),
        (
            vec![
                "source".into(),
                "add".into(),
                "--tenant".into(),
                "x".into(),
                "--name".into(),
                "s".into(),
                "--kind".into(),
                "carrier-pigeon".into(),
            ],
            "carrier-pigeon",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = socbridge(&data);
        cmd.args(&args);
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", describe(&out));
        assert!(
            stderr(&out).contains(needle),
            "{args:?}: the message names `{needle}`\n{}",
            describe(&out)
        );
    }
}
