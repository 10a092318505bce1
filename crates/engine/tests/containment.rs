//! Containment against the in-process emulator: isolation and triage-group moves applied at
//! most once and reverted at most once under ambiguous failures, refusals recorded with the
//! vendor's reason without blocking anything else, deny patterns and dry run honoured, and a
//! close made in ServiceNow reverting it all. The emulator's counters and computers are the
//! witness.

mod common;
use common::*;
use serde_json::{Value, json};
use socbridge_model::{
    ContainmentPolicy, IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView, PolicyAction,
    Severity,
};
use socbridge_sim::{ConfigOptions, Faults, SimHandle};
use socbridge_store::Store;
use std::collections::BTreeMap;
use std::time::Duration;

async fn rig(tenants: usize, seed: u64) -> Rig {
    let options = ConfigOptions {
        servicenow_section: true,
        ..ConfigOptions::default()
    };
    common::rig(sim_config(tenants, seed, 80), &options).await
}

fn policy(action: PolicyAction, group: Option<&str>) -> ContainmentPolicy {
    ContainmentPolicy {
        action,
        group: group.map(String::from),
        min_severity: Severity::Informational,
        ..ContainmentPolicy::default()
    }
}

async fn settle(rig: &Rig) {
    let reports = rig.engine.poll_until_idle(50).await.unwrap();
    assert!(reports.iter().all(|r| r.error.is_none()), "{reports:?}");
    let left = rig
        .engine
        .drain_outbox(Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox drains");
}

async fn incidents_of(store: &Store, tenant: &str) -> Vec<IncidentView> {
    store
        .list_incidents(&IncidentFilter {
            tenants: vec![tenant.to_string()],
            limit: Some(10_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap()
}

/// The tenant's computers as the vendor reports them: hostname -> (group name, isolation).
async fn computers(sim: &SimHandle, tenant: &str) -> BTreeMap<String, (String, String)> {
    let ep = sim.endpoints();
    let creds = ep
        .tenants
        .iter()
        .find(|t| t.name == tenant)
        .and_then(|t| t.secure_endpoint.clone())
        .unwrap();
    let http = reqwest::Client::new();
    let get = |path: String| {
        let req = http
            .get(format!("{}{path}", ep.secure_endpoint))
            .basic_auth(&creds.client_id, Some(&creds.api_key));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let groups: BTreeMap<String, String> = get("/v1/groups".into()).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["guid"].as_str().unwrap().to_string(),
                g["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut out = BTreeMap::new();
    for c in get("/v1/computers".into()).await["data"]
        .as_array()
        .unwrap()
    {
        let guid = c["connector_guid"].as_str().unwrap();
        let iso = get(format!("/v1/computers/{guid}/isolation")).await;
        out.insert(
            c["hostname"].as_str().unwrap().to_string(),
            (
                groups[c["group_guid"].as_str().unwrap()].clone(),
                iso["data"]["status"].as_str().unwrap_or("?").to_string(),
            ),
        );
    }
    out
}

/// Every action of the tenant's incidents: hostname -> (state, reason).
fn actions(incidents: &[IncidentView]) -> BTreeMap<String, (String, String)> {
    incidents
        .iter()
        .flat_map(|i| i.actions.iter())
        .map(|a| {
            (
                a.target_label.clone().unwrap_or_default(),
                (a.state.clone(), a.reason.clone().unwrap_or_default()),
            )
        })
        .collect()
}

async fn close_all(rig: &Rig, tenant: &str) {
    for i in incidents_of(&rig.store, tenant).await {
        rig.store
            .update_incident(
                i.id,
                None,
                &IncidentUpdate {
                    status: Some(IncidentStatus::Resolved),
                    actor: "test:alice".into(),
                    ..IncidentUpdate::default()
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_applies_once_and_reverts_once_under_ambiguous_failures() {
    let rig = rig(1, 61).await;
    let tenant = rig.sim.endpoints().tenants[0].name.clone();
    rig.store
        .set_containment_policy(&tenant, Some(&policy(PolicyAction::Isolate, None)))
        .await
        .unwrap();
    // Answers dropped after the change was made (the vendor did it; socbridge cannot tell),
    // and 503s, on every Secure Endpoint call.
    let hostile = Faults {
        rate_drop: 0.3,
        rate_503: 0.1,
        ..Faults::default()
    };
    rig.sim.set_faults(hostile.clone());
    settle(&rig).await;
    // The witness reads the vendor's state without faults.
    rig.sim.set_faults(Faults::default());

    let incidents = incidents_of(&rig.store, &tenant).await;
    let acts = actions(&incidents);
    let workstations: Vec<&String> = acts.keys().filter(|h| h.starts_with("WIN-")).collect();
    assert!(!workstations.is_empty(), "{acts:?}");
    for (host, (state, reason)) in &acts {
        if host.starts_with("SRV-") {
            // The servers' policy forbids isolation: refused, with the vendor's words.
            assert_eq!(state, "failed", "{host}: {reason}");
            assert!(reason.contains("not available"), "{host}: {reason}");
        } else {
            assert_eq!(state, "applied", "{host}: {reason}");
        }
    }
    // A refused isolation blocks neither the tickets nor the other actions.
    let tickets = rig.sim.counters().servicenow.tickets_by_correlation_id;
    assert_eq!(tickets.len(), incidents.len());
    let vendor = computers(&rig.sim, &tenant).await;
    for host in &workstations {
        assert_eq!(vendor[*host].1, "isolated", "{host}");
    }
    let c = &rig.sim.counters().secure_endpoint.tenants[&tenant];
    assert_eq!(
        c.isolation_start,
        workstations.len() as u64,
        "each isolation applied once"
    );
    let drops = rig.sim.counters().secure_endpoint.faults.drop;
    assert!(drops > 0, "ambiguous failures were injected");

    rig.sim.set_faults(hostile);
    close_all(&rig, &tenant).await;
    settle(&rig).await;
    rig.sim.set_faults(Faults::default());
    let incidents = incidents_of(&rig.store, &tenant).await;
    for (host, (state, reason)) in actions(&incidents) {
        let want = if host.starts_with("SRV-") {
            "failed"
        } else {
            "reverted"
        };
        assert_eq!(state, want, "{host}: {reason}");
    }
    let vendor = computers(&rig.sim, &tenant).await;
    assert!(
        vendor.values().all(|(_, iso)| iso == "not_isolated"),
        "{vendor:?}"
    );
    let c = &rig.sim.counters().secure_endpoint.tenants[&tenant];
    assert_eq!(
        (c.isolation_start, c.isolation_stop),
        (workstations.len() as u64, workstations.len() as u64),
        "applied once, reverted once"
    );
    eprintln!(
        "{} isolations applied and stopped once each under {} dropped answers; {} refused by policy",
        workstations.len(),
        rig.sim.counters().secure_endpoint.faults.drop,
        acts.len() - workstations.len()
    );
    rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_return_home_on_a_servicenow_close_and_deny_and_dry_run_hold() {
    let rig = rig(2, 67).await;
    let names: Vec<String> = rig
        .sim
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let (live, dry) = (&names[0], &names[1]);
    let mut p = policy(PolicyAction::MoveToGroup, Some("Triage"));
    p.deny_hosts = Some("^SRV-".into());
    rig.store
        .set_containment_policy(live, Some(&p))
        .await
        .unwrap();
    p.dry_run = true;
    rig.store
        .set_containment_policy(dry, Some(&p))
        .await
        .unwrap();
    let before = computers(&rig.sim, live).await;
    // Answers dropped after the move was made, while moving and while moving back; the
    // witness reads the vendor's state without faults.
    rig.sim.set_faults(Faults {
        rate_drop: 0.3,
        ..Faults::default()
    });
    settle(&rig).await;

    let acts = actions(&incidents_of(&rig.store, live).await);
    let moved: Vec<&String> = acts.keys().filter(|h| h.starts_with("WIN-")).collect();
    assert!(!moved.is_empty());
    for (host, (state, reason)) in &acts {
        if host.starts_with("SRV-") {
            assert_eq!(state, "skipped", "{host}");
            assert!(reason.contains("deny pattern"), "{host}: {reason}");
        } else {
            assert_eq!(state, "applied", "{host}: {reason}");
        }
    }
    rig.sim.set_faults(Faults::default());
    let during = computers(&rig.sim, live).await;
    for host in &moved {
        assert_eq!(during[*host].0, "Triage", "{host}");
    }
    for (host, (group, _)) in &during {
        if host.starts_with("SRV-") {
            assert_eq!(group, &before[host].0, "{host} never moved");
        }
    }
    // Dry run: recorded, nothing done.
    for (host, (state, reason)) in actions(&incidents_of(&rig.store, dry).await) {
        assert_eq!(state, "skipped", "{host}");
        assert!(
            reason.starts_with("dry run: would move") || reason.contains("deny pattern"),
            "{host}: {reason}"
        );
    }
    let counters = rig.sim.counters().secure_endpoint;
    assert_eq!(counters.tenants[dry].group_moves, 0);
    assert_eq!(counters.tenants[live].group_moves, moved.len() as u64);

    // Close every ticket in ServiceNow, as an analyst would: the moves are undone.
    let sn = rig.sim.endpoints().servicenow.clone().unwrap();
    let http = reqwest::Client::new();
    for i in incidents_of(&rig.store, live).await {
        let ticket = i.ticket.expect("ticketed");
        let resp = http
            .patch(format!(
                "{}/api/now/table/incident/{}",
                sn.instance_url, ticket.sys_id
            ))
            .basic_auth(&sn.analyst.user_name, Some(&sn.analyst.password))
            .json(&json!({"state": "6", "close_code": "Solution provided", "close_notes": "clean"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    rig.sim.set_faults(Faults {
        rate_drop: 0.3,
        ..Faults::default()
    });
    rig.engine.sync_tickets().await.unwrap();
    settle(&rig).await;
    rig.sim.set_faults(Faults::default());
    let after = computers(&rig.sim, live).await;
    for (host, (group, _)) in &after {
        assert_eq!(group, &before[host].0, "{host} is back in its group");
    }
    for (host, (state, _)) in actions(&incidents_of(&rig.store, live).await) {
        if host.starts_with("WIN-") {
            assert_eq!(state, "reverted", "{host}");
        }
    }
    let counters = rig.sim.counters().secure_endpoint;
    assert_eq!(
        counters.tenants[live].group_moves,
        2 * moved.len() as u64,
        "each computer moved once and moved back once"
    );
    rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_contains_without_ticketing() {
    // No [servicenow] section: containment must not wait for ticketing.
    let rig = common::rig(sim_config(1, 73, 60), &ConfigOptions::default()).await;
    let tenant = rig.sim.endpoints().tenants[0].name.clone();
    let mut p = policy(PolicyAction::Isolate, None);
    p.deny_hosts = Some("^SRV-".into());
    rig.store
        .set_containment_policy(&tenant, Some(&p))
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let daemon = tokio::spawn({
        let engine = rig.engine.clone();
        let stop = stop.clone();
        async move { engine.run(stop).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let incidents = incidents_of(&rig.store, &tenant).await;
        let acts = actions(&incidents);
        let workstations = acts.keys().filter(|h| h.starts_with("WIN-")).count();
        let applied = acts.values().filter(|(s, _)| s == "applied").count();
        if workstations > 0 && applied == workstations {
            let started = rig.sim.counters().secure_endpoint.tenants[&tenant].isolation_start;
            assert_eq!(started, workstations as u64);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not contain: {acts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    daemon.await.unwrap().unwrap();
    rig.sim.shutdown().await;
}
