//! Crash safety: `serve --until-idle` is SIGKILLed at random instants while the emulator
//! injects faults and duplicates events across pages; after restarts, the store holds every
//! served event exactly once. The emulator's data set and counters are the witness.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use socbridge_sim::Faults;
use std::collections::BTreeSet;
use std::time::Duration;

const KILLS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_and_doubles_nothing() {
    let sim = start_sim(2, 23, 300).await;
    sim.set_faults(Faults {
        rate_429: 0.04,
        rate_500: 0.04,
        rate_503: 0.04,
        rate_slow: 0.05,
        slow_ms: 300,
        rate_drop: 0.04,
        rate_truncate: 0.04,
        rate_duplicate: 0.3,
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    // Small pages and a small cap: many commits per run, so kills land between and inside them.
    tune_sources(&config, "page_size = 20\ncap_per_run = 70");
    let data = dir.path().join("data");

    let seed: u64 = std::env::var("SOCBRIDGE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill schedule seed: {seed} (set SOCBRIDGE_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (killed, finished_early) =
        kill_serve_repeatedly(&data, &config, &mut rng, KILLS, 30..900).await;
    assert_eq!(
        killed, KILLS,
        "runs keep finishing before the kill; nothing left to test"
    );
    eprintln!("{killed} SIGKILLs, {finished_early} runs finished before their kill");

    // Restart until a run completes cleanly and stores nothing more (faults still on).
    let mut settled = false;
    for _ in 0..30 {
        let mut cmd = socbridge(&data);
        cmd.arg("--config")
            .arg(&config)
            .args(["--output", "json", "serve", "--until-idle"]);
        let out = run(cmd).await;
        if out.status.success() {
            let new: u64 = json(&out)
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["new_findings"].as_u64().unwrap())
                .sum();
            if new == 0 {
                settled = true;
                break;
            }
        }
    }
    assert!(settled, "a clean final run that stores nothing new");

    let store = socbridge_store::Store::open_sqlite(&data.join("socbridge.db"))
        .await
        .unwrap();
    let counters = sim.counters();
    let client = reqwest::Client::new();
    for t in &sim.endpoints().tenants {
        let c = &counters.secure_endpoint.tenants[&t.name];
        // The witness: every high-priority event of the emulator's data set, keyed the way the
        // vendor's records are recognised.
        let events: Vec<serde_json::Value> = client
            .get(format!(
                "{}/secure_endpoint/events?tenant={}",
                sim.endpoints().control,
                t.name
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected: BTreeSet<String> = events
            .iter()
            .filter_map(|e| socbridge_connectors::secure_endpoint::map_event(&e.to_string()).ok())
            .filter(|f| {
                serde_json::from_str::<serde_json::Value>(&f.raw).unwrap()["event_type_id"]
                    .as_u64()
                    .is_some_and(|id| {
                        socbridge_connectors::secure_endpoint::HIGH_PRIORITY_EVENT_TYPES
                            .contains(&id)
                    })
            })
            .map(|f| f.vendor_key)
            .collect();
        let stored_keys = store
            .finding_keys(&t.name, "secure-endpoint")
            .await
            .unwrap();
        let stored: BTreeSet<String> = stored_keys.iter().cloned().collect();
        assert_eq!(
            stored_keys.len(),
            stored.len(),
            "{}: no finding stored twice",
            t.name
        );
        let lost: Vec<_> = expected.difference(&stored).collect();
        let extra: Vec<_> = stored.difference(&expected).collect();
        assert!(lost.is_empty(), "{}: {} lost: {lost:?}", t.name, lost.len());
        assert!(
            extra.is_empty(),
            "{}: {} unexpected: {extra:?}",
            t.name,
            extra.len()
        );
        assert_eq!(
            stored.len() as u64,
            c.events_high_priority,
            "{}: emulator's count",
            t.name
        );
        assert_eq!(
            stored.len() as u64,
            c.served_distinct_high_priority,
            "{}: served = stored",
            t.name
        );

        // Every finding sits in exactly one incident.
        let incidents = store
            .list_incidents(&socbridge_model::IncidentFilter {
                tenants: vec![t.name.clone()],
                limit: Some(10_000),
                ..Default::default()
            })
            .await
            .unwrap();
        let in_incidents: i64 = incidents.iter().map(|i| i.finding_count).sum();
        assert_eq!(in_incidents as usize, stored.len(), "{}", t.name);
        eprintln!(
            "{}: {} events, {} stored, 0 lost, 0 doubled, {} incidents",
            t.name,
            expected.len(),
            stored.len(),
            incidents.len()
        );
    }
    let f = &counters.secure_endpoint.faults;
    eprintln!("faults injected: {f:?}");
    store.close().await;
    sim.shutdown().await;
}

/// Ticketing under SIGKILL: `serve --until-idle` is killed at random instants while it opens
/// tickets against a ServiceNow that commits writes and drops the answer, then again while
/// it closes them and writes analysts' notes. The emulator's counters are the witness: one
/// ticket per incident, every ticket resolved, every note in its ticket exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_ticketing_gives_one_ticket_and_one_note_each() {
    use socbridge_sim::{ConfigOptions, ServiceNowFaults};
    let sim = start_sim(2, 29, 60).await;
    sim.set_servicenow_faults(ServiceNowFaults {
        rate_commit_drop: 0.15,
        rate_503: 0.05,
        rate_slow: 0.05,
        slow_ms: 200,
        ..ServiceNowFaults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &config,
        &ConfigOptions {
            servicenow_section: true,
            ..ConfigOptions::default()
        },
    )
    .unwrap();
    // Retries come quickly, so that kills land in the middle of ticket work.
    let text = std::fs::read_to_string(&config).unwrap();
    let tuned = text.replacen(
        "[servicenow]\n",
        "[servicenow]\nsync_interval = \"1h\"\n",
        1,
    );
    assert_ne!(text, tuned, "the config has a [servicenow] section");
    std::fs::write(&config, tuned).unwrap();
    let data = dir.path().join("data");

    let seed: u64 = std::env::var("SOCBRIDGE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill schedule seed: {seed} (set SOCBRIDGE_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    // Phase 1: tickets opened under kills.
    let (kills, _) = kill_serve_repeatedly(&data, &config, &mut rng, KILLS / 2, 50..1200).await;
    settle(&data, &config).await;
    let incidents = list_incidents(&data).await;
    assert!(!incidents.is_empty());
    assert_one_ticket_each(&sim, &incidents);

    // Phase 2: analysts close every incident with a note, then kills while that is mirrored.
    for i in &incidents {
        let mut cmd = socbridge(&data);
        cmd.args([
            "incidents",
            "update",
            &i["id"].to_string(),
            "--status",
            "resolved",
            "--resolution",
            "remediated",
            "--comment",
            &format!("closing note for {}", i["id"]),
        ]);
        let out = run(cmd).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let (kills2, _) = kill_serve_repeatedly(&data, &config, &mut rng, KILLS / 2, 50..1200).await;
    settle(&data, &config).await;
    let incidents = list_incidents(&data).await;
    assert_one_ticket_each(&sim, &incidents);

    let tickets = sim.servicenow_incidents();
    let journal = sim.servicenow_journal();
    for i in &incidents {
        let sys_id = i["ticket"]["sys_id"].as_str().expect("a ticket");
        let t = tickets
            .iter()
            .find(|t| t["sys_id"] == sys_id)
            .expect("the ticket exists");
        assert_eq!(t["state"], "6", "resolved: {t}");
        let note = format!("closing note for {}", i["id"]);
        let copies = journal
            .iter()
            .filter(|j| {
                j["element_id"] == sys_id && j["value"].as_str().unwrap_or("").contains(&note)
            })
            .count();
        assert_eq!(copies, 1, "the note is in ticket {sys_id} once");
    }
    let f = sim.counters().servicenow.faults;
    eprintln!(
        "{} SIGKILLs; {} incidents, one ticket and one note each; faults hit: {} commit-then-drop, {} 503",
        kills + kills2,
        incidents.len(),
        f.commit_drop,
        f.status_503
    );
    assert!(f.commit_drop > 0, "the ambiguous failure was exercised");
    sim.shutdown().await;
}

/// Starts `serve --until-idle` and SIGKILLs it after a random delay within `window_ms`,
/// `kills` times (runs that finish first do not count; after 200 of those there is nothing
/// left to interrupt). Returns the kills done and the runs that finished first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_forwarding_to_a_siem_sink_loses_no_line() {
    let sim = start_sim(2, 27, 200).await;
    // Slow answers so kills land inside requests; lost answers so lines come twice.
    let col = socbridge_sim::collector::start(socbridge_sim::CollectorConfig {
        token: "kill-test-collector-token".into(),
        seed: 27,
        faults: socbridge_sim::CollectorFaults {
            rate_commit_drop: 0.2,
            rate_slow: 0.3,
            slow_ms: 150,
            ..socbridge_sim::CollectorFaults::default()
        },
        ..socbridge_sim::CollectorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    tune_sources(&config, "page_size = 20\ncap_per_run = 70");
    col.write_sink_config(&config, "siem", true).unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("batch_size = 15\n");
    std::fs::write(&config, text).unwrap();
    let data = dir.path().join("data");

    let seed: u64 = std::env::var("SOCBRIDGE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill schedule seed: {seed} (set SOCBRIDGE_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // The daemon: its sink task delivers beside the polls and the outbox, every tick, so the
    // kills land between a request and the record of its answer.
    let mut killed = 0;
    for _ in 0..8 {
        let mut cmd = socbridge(&data);
        cmd.arg("--config")
            .arg(&config)
            .args(["serve", "--listen", "127.0.0.1:0"]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("socbridge starts");
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..2500))).await;
        child.start_kill().expect("SIGKILL delivered");
        let _ = child.wait().await;
        killed += 1;
    }
    let before = col.counters();
    assert!(
        before.lines_received > 0,
        "the sink delivered between the kills"
    );

    // Faults off: runs until one stores nothing new and leaves nothing for the sink.
    col.set_faults(socbridge_sim::CollectorFaults::default());
    let mut settled = false;
    for _ in 0..30 {
        let mut cmd = socbridge(&data);
        cmd.arg("--config")
            .arg(&config)
            .args(["--output", "json", "serve", "--until-idle"]);
        let out = run(cmd).await;
        let new: u64 = json(&out)
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["new_findings"].as_u64()).sum())
            .unwrap_or(1);
        if out.status.success() && new == 0 {
            settled = true;
            break;
        }
    }
    assert!(settled, "a clean final run with nothing left to deliver");

    let store = socbridge_store::Store::open_sqlite(&data.join("socbridge.db"))
        .await
        .unwrap();
    assert_eq!(store.sink_backlog("siem").await.unwrap(), 0);
    let mut findings = BTreeSet::new();
    let mut incidents = BTreeSet::new();
    for v in store
        .list_incidents(&socbridge_model::IncidentFilter {
            limit: Some(100_000),
            ..Default::default()
        })
        .await
        .unwrap()
    {
        incidents.insert(v.id.to_string());
        let d = store.get_incident(v.id, None).await.unwrap().unwrap();
        findings.extend(d.findings.iter().map(|f| f.id.to_string()));
    }
    let lines = col.lines();
    let got = |class: i64| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l["class_uid"] == class)
            .filter_map(|l| l["metadata"]["uid"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(
        got(2004),
        findings,
        "every stored finding delivered, nothing else"
    );
    assert_eq!(
        got(2005),
        incidents,
        "every incident delivered, nothing else"
    );
    let c = col.counters();
    eprintln!(
        "{killed} SIGKILLs of serve, {} lines received before the last run; {} findings, {} \
         incidents; collector: {} lines, {} distinct, {} replays, {} commit-then-drop",
        before.lines_received,
        findings.len(),
        incidents.len(),
        c.lines_received,
        c.distinct_events,
        c.replays,
        c.faults.commit_drop
    );
    assert!(!findings.is_empty());
}

async fn kill_serve_repeatedly(
    data: &std::path::Path,
    config: &std::path::Path,
    rng: &mut rand::rngs::StdRng,
    kills: usize,
    window_ms: std::ops::Range<u64>,
) -> (usize, usize) {
    let mut killed = 0;
    let mut finished_early = 0;
    while killed < kills && finished_early < 200 {
        let mut cmd = socbridge(data);
        cmd.arg("--config")
            .arg(config)
            .args(["serve", "--until-idle"]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("socbridge starts");
        let after = Duration::from_millis(rng.random_range(window_ms.clone()));
        tokio::select! {
            _ = tokio::time::sleep(after) => {
                child.start_kill().expect("SIGKILL delivered");
                let _ = child.wait().await;
                killed += 1;
            }
            _ = child.wait() => finished_early += 1,
        }
    }
    (killed, finished_early)
}

/// Runs `serve --until-idle` until a run succeeds with no ticket work left.
async fn settle(data: &std::path::Path, config: &std::path::Path) {
    for _ in 0..30 {
        let mut cmd = socbridge(data);
        cmd.arg("--config")
            .arg(config)
            .args(["serve", "--until-idle"]);
        let out = run(cmd).await;
        let mut cmd = socbridge(data);
        cmd.args(["--output", "json", "outbox", "list"]);
        let open = json(&run(cmd).await);
        if out.status.success() && open["items"].as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
    }
    panic!("the outbox never drained");
}

async fn list_incidents(data: &std::path::Path) -> Vec<serde_json::Value> {
    let mut cmd = socbridge(data);
    cmd.args(["--output", "json", "incidents", "list", "--limit", "10000"]);
    json(&run(cmd).await).as_array().unwrap().clone()
}

/// The emulator created exactly one ticket per incident and none for anything else.
fn assert_one_ticket_each(sim: &socbridge_sim::SimHandle, incidents: &[serde_json::Value]) {
    let by_id = sim.counters().servicenow.tickets_by_correlation_id;
    let expected: BTreeSet<String> = incidents
        .iter()
        .map(|i| {
            socbridge_store::correlation_id(
                i["tenant"].as_str().unwrap(),
                i["id"].as_i64().unwrap(),
            )
        })
        .collect();
    let created: BTreeSet<String> = by_id.keys().cloned().collect();
    assert_eq!(
        created, expected,
        "a ticket for every incident and nothing else"
    );
    let doubled: Vec<_> = by_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "tickets created twice: {doubled:?}");
}

/// Containment under SIGKILL: the tenant isolates every workstation of a qualifying incident
/// (servers are denied by pattern); `serve` is killed at random while it isolates, under
/// dropped answers, and again while it stops the isolations after analysts close the
/// incidents. The emulator's counters: each isolation started once and stopped once, and no
/// computer is left isolated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_containing_applies_and_reverts_each_isolation_once() {
    let sim = start_sim(1, 71, 80).await;
    let tenant = sim.endpoints().tenants[0].name.clone();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&sim, dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let with_policy = text.replacen(
        &format!("name = \"{tenant}\"\n"),
        &format!(
            "name = \"{tenant}\"\ncontainment = {{ action = \"isolate\", min_severity = \"informational\", deny_hosts = \"^SRV-\" }}\n"
        ),
        1,
    );
    assert_ne!(text, with_policy);
    std::fs::write(&config, with_policy).unwrap();
    let data = dir.path().join("data");
    sim.set_faults(Faults {
        rate_drop: 0.1,
        ..Faults::default()
    });

    let seed: u64 = std::env::var("SOCBRIDGE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill schedule seed: {seed} (set SOCBRIDGE_TEST_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (kills, _) = kill_serve_repeatedly(&data, &config, &mut rng, KILLS / 2, 50..1200).await;
    settle(&data, &config).await;
    let incidents = list_incidents(&data).await;
    let isolated: BTreeSet<String> = incidents
        .iter()
        .flat_map(|i| i["actions"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["state"] == "applied")
        .map(|a| a["target_label"].as_str().unwrap().to_string())
        .collect();
    assert!(!isolated.is_empty());
    assert!(
        isolated.iter().all(|h| h.starts_with("WIN-")),
        "{isolated:?}"
    );
    let c = &sim.counters().secure_endpoint.tenants[&tenant];
    assert_eq!(
        c.isolation_start,
        isolated.len() as u64,
        "each isolation started once"
    );

    // The policy is visible, and an isolated incident shows its unlock code to the CLI.
    let mut cmd = socbridge(&data);
    cmd.args(["tenant", "policy", &tenant]);
    let out = run(cmd).await;
    assert!(stdout(&out).contains("isolate"), "{}", describe(&out));
    let with_action = incidents
        .iter()
        .find(|i| {
            i["actions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["state"] == "applied"))
        })
        .unwrap();
    let mut cmd = socbridge(&data);
    cmd.args([
        "--output",
        "json",
        "incidents",
        "get",
        &with_action["id"].to_string(),
    ]);
    let detail = json(&run(cmd).await);
    let code = detail["actions"][0]["unlock_code"].as_str().unwrap_or("");
    assert_eq!(code.len(), 12, "{detail}");

    for i in &incidents {
        let mut cmd = socbridge(&data);
        cmd.args([
            "incidents",
            "update",
            &i["id"].to_string(),
            "--status",
            "resolved",
        ]);
        let out = run(cmd).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    let (kills2, _) = kill_serve_repeatedly(&data, &config, &mut rng, KILLS / 2, 50..1200).await;
    settle(&data, &config).await;
    let c = &sim.counters().secure_endpoint.tenants[&tenant];
    assert_eq!(
        (c.isolation_start, c.isolation_stop),
        (isolated.len() as u64, isolated.len() as u64),
        "started once and stopped once each"
    );
    let reverted = list_incidents(&data)
        .await
        .iter()
        .flat_map(|i| i["actions"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["state"] == "reverted")
        .count();
    assert_eq!(reverted, isolated.len());
    // The vendor's view, read without faults: nothing left isolated.
    sim.set_faults(Faults::default());
    let ep = sim.endpoints();
    let creds = ep.tenants[0].secure_endpoint.clone().unwrap();
    let http = reqwest::Client::new();
    let computers: serde_json::Value = http
        .get(format!("{}/v1/computers", ep.secure_endpoint))
        .basic_auth(&creds.client_id, Some(&creds.api_key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for c in computers["data"].as_array().unwrap() {
        let guid = c["connector_guid"].as_str().unwrap();
        let iso: serde_json::Value = http
            .get(format!(
                "{}/v1/computers/{guid}/isolation",
                ep.secure_endpoint
            ))
            .basic_auth(&creds.client_id, Some(&creds.api_key))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(iso["data"]["status"], "not_isolated", "{}", c["hostname"]);
    }
    eprintln!(
        "{} SIGKILLs; {} isolations started and stopped once each; {} dropped answers",
        kills + kills2,
        isolated.len(),
        sim.counters().secure_endpoint.faults.drop
    );
    sim.shutdown().await;
}
