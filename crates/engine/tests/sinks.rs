//! The SIEM sink against the in-process collector emulator: every stored finding and every
//! incident reaches the collector at least once under dropped answers and 503s (the
//! collector's own counters and the Secure Endpoint emulator's are the witnesses), each line
//! is what the export writes and validates against the OCSF 1.8.0 schemas, a collector that is
//! down delays no ticket and is caught up once back, and a worker restarted after deliveries
//! whose answers were lost sends them again without losing any.

mod common;
use common::*;
use serde_json::Value;
use socbridge_engine::{Config, Engine};
use socbridge_model::{IncidentDetail, IncidentFilter, IncidentStatus, IncidentUpdate};
use socbridge_secrets::MasterKey;
use socbridge_sim::{CollectorConfig, CollectorFaults, CollectorHandle, ConfigOptions};
use socbridge_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

const SINK: &str = "siem";

async fn collector(seed: u64, faults: CollectorFaults) -> CollectorHandle {
    socbridge_sim::collector::start(CollectorConfig {
        token: format!("collector-token-{seed}"),
        seed,
        faults,
        ..CollectorConfig::default()
    })
    .await
    .expect("the collector starts")
}

/// The emulators, a config with a `[[sinks]]` section pointing at `col` (batches of 40 lines),
/// a fresh store and an engine with that config applied.
async fn rig(
    col: &CollectorHandle,
    (tenants, events, seed): (usize, usize, u64),
    batch: usize,
    tickets: bool,
) -> Rig {
    let sim = socbridge_sim::start(sim_config(tenants, seed, events))
        .await
        .expect("the emulators start");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("socbridge.toml");
    let options = ConfigOptions {
        servicenow_section: tickets,
        ..ConfigOptions::default()
    };
    sim.write_config_with(&path, &options)
        .expect("the config is written");
    col.write_sink_config(&path, SINK, true)
        .expect("the sink is added to the config");
    let mut text = std::fs::read_to_string(&path).expect("the config reads back");
    text.push_str(&format!("batch_size = {batch}\ntimeout = \"5s\"\n"));
    std::fs::write(&path, text).expect("the config is written back");
    let config = Config::load(&path).expect("the config loads");
    assert_eq!(config.sinks.len(), 1);
    let (store, schema) = test_store(dir.path()).await;
    let engine = Engine::new(store.clone(), MasterKey::generate(), engine_options());
    let report = engine
        .apply_config(&config)
        .await
        .expect("the config applies");
    assert_eq!(report.sinks, 1);
    Rig::assemble(sim, engine, store, dir, schema)
}

/// Every incident with its findings, as the store has them now.
async fn details(store: &Store) -> Vec<IncidentDetail> {
    let views = store
        .list_incidents(&IncidentFilter {
            limit: Some(100_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    for v in views {
        out.push(store.get_incident(v.id, None).await.unwrap().unwrap());
    }
    out
}

fn uid(doc: &Value) -> String {
    doc["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The uids of each class among the lines.
fn uids_by_class(lines: &[Value]) -> BTreeMap<i64, BTreeSet<String>> {
    let mut out: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for l in lines {
        out.entry(l["class_uid"].as_i64().unwrap_or(0))
            .or_default()
            .insert(uid(l));
    }
    out
}

/// The last line received of each (class, uid).
fn last_lines(lines: &[Value]) -> BTreeMap<(i64, String), Value> {
    lines
        .iter()
        .map(|l| ((l["class_uid"].as_i64().unwrap_or(0), uid(l)), l.clone()))
        .collect()
}

/// Asserts that every finding and every incident of the store was received at least once,
/// and nothing else; returns (findings, incidents).
fn assert_all_delivered(col: &CollectorHandle, details: &[IncidentDetail]) -> (usize, usize) {
    let got = uids_by_class(&col.lines());
    let findings: BTreeSet<String> = details
        .iter()
        .flat_map(|d| d.findings.iter().map(|f| f.id.to_string()))
        .collect();
    let incidents: BTreeSet<String> = details.iter().map(|d| d.incident.id.to_string()).collect();
    let empty = BTreeSet::new();
    let got_findings = got.get(&2004).unwrap_or(&empty);
    let got_incidents = got.get(&2005).unwrap_or(&empty);
    let lost: Vec<_> = findings.difference(got_findings).collect();
    assert!(lost.is_empty(), "findings never delivered: {lost:?}");
    let lost: Vec<_> = incidents.difference(got_incidents).collect();
    assert!(lost.is_empty(), "incidents never delivered: {lost:?}");
    assert_eq!(got_findings, &findings, "no finding the store lacks");
    assert_eq!(got_incidents, &incidents, "no incident the store lacks");
    assert_eq!(got.len(), 2, "only Detection and Incident Findings");
    (findings.len(), incidents.len())
}

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn validator(file: &str) -> jsonschema::Validator {
    let path = shared().join("ocsf").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema {} unreadable: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_and_incident_reaches_the_collector_at_least_once_under_faults() {
    let col = collector(
        31,
        CollectorFaults {
            rate_commit_drop: 0.2,
            rate_503: 0.1,
            ..CollectorFaults::default()
        },
    )
    .await;
    let rig = rig(&col, (6, 60, 31), 10, false).await;
    rig.engine.poll_until_idle(100).await.unwrap();

    // An analyst closes one incident: its Incident Finding goes out again, closed.
    let closed = details(&rig.store).await[0].incident.id;
    rig.store
        .update_incident(
            closed,
            None,
            &IncidentUpdate {
                status: Some(IncidentStatus::Closed),
                resolution: Some("contained".into()),
                actor: "alice".into(),
                ..IncidentUpdate::default()
            },
        )
        .await
        .unwrap()
        .expect("the incident exists");

    let left = rig
        .engine
        .drain_sinks(Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(left, 0, "every queue row delivered");

    // The witnesses: Secure Endpoint served each stored finding, the collector got each one.
    let served: u64 = rig
        .sim
        .counters()
        .secure_endpoint
        .tenants
        .values()
        .map(|t| t.served_distinct_high_priority)
        .sum();
    let counts = rig.store.counts(None).await.unwrap();
    assert_eq!(
        u64::try_from(counts.findings).unwrap(),
        served,
        "every served high-priority event stored once"
    );
    let all = details(&rig.store).await;
    let (findings, incidents) = assert_all_delivered(&col, &all);
    assert_eq!(findings as i64, counts.findings);
    assert_eq!(incidents as i64, counts.incidents);

    // The closed incident's last line says closed.
    let lines = col.lines();
    let last = last_lines(&lines);
    let doc = &last[&(2005, closed.to_string())];
    assert_eq!(doc["status_id"], 5, "{doc}");
    assert_eq!(doc["activity_id"], 3, "Close: {doc}");
    assert_eq!(doc["status_detail"], "contained");

    // What was sent is what the export writes: each incident's last line is its Incident
    // Finding now; each finding's is its Detection Finding now (the closed incident's findings
    // went out while it was open, so their status is set aside).
    for d in &all {
        assert_eq!(
            last[&(2005, d.incident.id.to_string())],
            socbridge_ocsf::incident_finding(d),
            "incident {}",
            d.incident.id
        );
        for (f, mut want) in d.findings.iter().zip(socbridge_ocsf::detection_findings(d)) {
            let mut got = last[&(2004, f.id.to_string())].clone();
            if d.incident.id == closed {
                for doc in [&mut got, &mut want] {
                    doc["status_id"] = Value::Null;
                    doc["status"] = Value::Null;
                }
            }
            assert_eq!(got, want, "finding {}", f.id);
        }
    }

    // Every line received validates against the OCSF 1.8.0 schema of its class.
    let (vd, vi) = (
        validator("detection_finding-1.8.0.schema.json"),
        validator("incident_finding-1.8.0.schema.json"),
    );
    for l in &lines {
        let v = if l["class_uid"] == 2004 { &vd } else { &vi };
        let errors: Vec<String> = v
            .iter_errors(l)
            .map(|e| format!("{}: {e}", e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}:\n{}", uid(l), errors.join("\n"));
    }

    let c = col.counters();
    eprintln!(
        "{findings} findings and {incidents} incidents stored; collector: {} lines in {} batches, \
         {} distinct events, {} replays ({} repeated request ids); faults: {} commit-then-drop, \
         {} 503; by class: {:?}",
        c.lines_received,
        c.batches,
        c.distinct_events,
        c.replays,
        c.request_ids_repeated,
        c.faults.commit_drop,
        c.faults.status_503,
        c.by_class
    );
    assert!(
        c.faults.commit_drop > 0 && c.faults.status_503 > 0,
        "faults exercised"
    );
    assert!(c.replays > 0, "a dropped answer made a replay");
    assert_eq!(c.lines_received, c.distinct_events + c.replays);
    assert_eq!(c.lines_received as usize, lines.len());
    assert!(
        c.batches >= c.lines_received.div_ceil(10),
        "batches of at most 10 lines"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_delays_no_ticket_and_is_caught_up_when_back() {
    let mut col = collector(32, CollectorFaults::default()).await;
    col.stop().await;
    let rig = rig(&col, (2, 30, 32), 40, true).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serve = {
        let (engine, shutdown) = (rig.engine.clone(), shutdown.clone());
        tokio::spawn(async move { engine.run(shutdown).await })
    };

    // Tickets while the collector is down.
    let store = rig.store.clone();
    wait_until(
        Duration::from_secs(60),
        "a ticket for every incident",
        || {
            let store = store.clone();
            let sim = &rig.sim;
            async move {
                let n = store.counts(None).await.unwrap().incidents as usize;
                n > 0 && sim.counters().servicenow.tickets_by_correlation_id.len() == n
            }
        },
    )
    .await;
    let backlog = rig.store.sink_backlog(SINK).await.unwrap();
    assert!(backlog > 0, "the sink's rows wait");
    assert!(col.lines().is_empty());
    let failures = || {
        rig.engine
            .metrics()
            .snapshot()
            .sinks
            .get(SINK)
            .map_or(0, |c| c.failures)
    };
    wait_until(Duration::from_secs(30), "a failed delivery", || async {
        failures() > 0
    })
    .await;
    let failures = failures();

    // Back: the worker catches up by itself.
    col.restart().await.expect("the collector listens again");
    let store = rig.store.clone();
    wait_until(
        Duration::from_secs(60),
        "the sink's backlog delivered",
        || {
            let store = store.clone();
            async move { store.sink_backlog(SINK).await.unwrap() == 0 }
        },
    )
    .await;
    shutdown.cancel();
    serve.await.unwrap().unwrap();
    let all = details(&rig.store).await;
    let (findings, incidents) = assert_all_delivered(&col, &all);
    // Each incident's last line shows its ticket, as the export does.
    let last = last_lines(&col.lines());
    for d in &all {
        let doc = &last[&(2005, d.incident.id.to_string())];
        assert!(
            doc["tickets"][0]["uid"]
                .as_str()
                .is_some_and(|n| n.starts_with("INC")),
            "{doc}"
        );
        assert_eq!(doc, &socbridge_ocsf::incident_finding(d));
    }
    let c = col.counters();
    eprintln!(
        "down: {backlog} rows waited, {failures} failed passes, tickets unaffected; back: \
         {findings} findings and {incidents} incidents delivered in {} lines",
        c.lines_received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_sends_again_what_was_never_acknowledged() {
    // Every batch is kept and its answer lost: the worker never learns it was delivered.
    let col = collector(
        33,
        CollectorFaults {
            rate_commit_drop: 1.0,
            ..CollectorFaults::default()
        },
    )
    .await;
    let rig = rig(&col, (2, 30, 33), 40, false).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    let before = rig.store.sink_backlog(SINK).await.unwrap();
    let left = rig
        .engine
        .drain_sinks(Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(
        left, before,
        "nothing acknowledged, nothing marked delivered"
    );
    let first = col.counters();
    assert!(first.lines_received > 0, "the collector kept what it got");

    // The process goes away; a new one (new engine, same store and config) takes over.
    drop(rig.engine);
    col.set_faults(CollectorFaults::default());
    let config = Config::load(&rig.dir.path().join("socbridge.toml")).unwrap();
    let engine = Engine::new(rig.store.clone(), MasterKey::generate(), engine_options());
    engine.apply_config(&config).await.unwrap();
    let left = engine.drain_sinks(Duration::from_secs(60)).await.unwrap();
    assert_eq!(left, 0);
    let (findings, incidents) = assert_all_delivered(&col, &details(&rig.store).await);
    let c = col.counters();
    eprintln!(
        "{before} rows; before the restart {} lines kept with every answer lost; after: {} \
         lines, {} distinct, {} replays, {} repeated request ids ({findings} findings, \
         {incidents} incidents)",
        first.lines_received,
        c.lines_received,
        c.distinct_events,
        c.replays,
        c.request_ids_repeated
    );
    assert!(
        c.replays >= first.distinct_events,
        "what was kept came again"
    );
    assert!(c.request_ids_repeated > 0, "under the same request ids");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_reported_without_the_token_and_stored_sealed() {
    let col = collector(34, CollectorFaults::default()).await;
    let rig = rig(&col, (1, 10, 34), 40, false).await;
    // The config now names a token the collector refuses.
    let canary = "canary-sink-token-7d1e0b";
    let env = rig.dir.path().join("socbridge.env");
    let text = std::fs::read_to_string(&env).unwrap();
    let text = text.replace(col.token(), canary);
    std::fs::write(&env, text).unwrap();
    let config = Config::load(&rig.dir.path().join("socbridge.toml")).unwrap();
    assert!(!format!("{config:?}").contains(canary), "not in Debug");
    rig.engine.apply_config(&config).await.unwrap();
    rig.engine.poll_until_idle(100).await.unwrap();

    let err = rig.engine.deliver_sink(SINK).await.unwrap_err().to_string();
    assert!(
        err.contains(SINK) && err.contains("credentials refused"),
        "{err}"
    );
    assert!(!err.contains(canary), "{err}");
    assert!(col.lines().is_empty());
    assert_eq!(
        col.counters().requests.get("401"),
        Some(&1),
        "a 401 is not retried"
    );
    for entry in std::fs::read_dir(rig.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "socbridge.env") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
            "the token is in {} in plain text",
            path.display()
        );
    }
    eprintln!("refused: {err}");
}
