//! Symantec MSS against the in-process emulator (SOAP over TLS with a client certificate):
//! fetch with a real cursor and per-run cap, upsert of updated MSS incidents into the same
//! socbridge incident and ticket, and the write-back of a close made in ServiceNow. The
//! emulators' own data and counters are the witness.

mod common;
use common::*;
use serde_json::json;
use socbridge_model::{IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView, SourceKind};
use socbridge_sim::{
    AddSymantecIncidents, ConfigOptions, SimHandle, SymantecAnalystChange, SymantecFaults,
};
use socbridge_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

async fn rig(tenants: usize, seed: u64) -> Rig {
    let options = ConfigOptions {
        servicenow_section: true,
        symantec_sources: true,
        ..ConfigOptions::default()
    };
    common::rig(sim_config(tenants, seed, 0), &options).await
}

/// Polls until nothing is left at the vendors and drains the outbox, failing on any poll
/// error of a Symantec source.
async fn settle(rig: &Rig) {
    let reports = rig.engine.poll_until_idle(50).await.unwrap();
    for r in reports.iter().filter(|r| r.kind == SourceKind::SymantecMss) {
        assert!(
            r.error.is_none(),
            "{}/{}: {:?}",
            r.tenant,
            r.source,
            r.error
        );
    }
    let left = rig
        .engine
        .drain_outbox(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(left, 0, "the outbox drains");
}

async fn mss_incidents(store: &Store) -> Vec<IncidentView> {
    store
        .list_incidents(&IncidentFilter {
            limit: Some(100_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.sources.contains(&SourceKind::SymantecMss))
        .collect()
}

/// The MSS incident number of each socbridge incident of a tenant, read from its findings.
async fn numbers_by_incident(store: &Store, tenant: &str) -> BTreeMap<i64, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for i in mss_incidents(store)
        .await
        .iter()
        .filter(|i| i.tenant == tenant)
    {
        let d = store.get_incident(i.id, None).await.unwrap().unwrap();
        let numbers = d
            .findings
            .iter()
            .filter(|f| f.source_kind == SourceKind::SymantecMss)
            .map(|f| socbridge_engine::symantec::incident_number_of(&f.vendor_key).to_string())
            .collect();
        out.insert(i.id, numbers);
    }
    out
}

/// The emulator's incidents of a tenant that the default filter (Emergency, Critical) serves:
/// number -> last change as the emulator recorded it.
fn expected(sim: &SimHandle, tenant: &str) -> BTreeMap<String, String> {
    sim.symantec_incidents(tenant)
        .unwrap()
        .iter()
        .filter(|i| matches!(i["severity"].as_str(), Some("Emergency" | "Critical")))
        .map(|i| (i["number"].to_string(), i["updated"].to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mss_incident_is_one_incident_and_one_ticket_and_updates_land() {
    let rig = rig(2, 41).await;
    settle(&rig).await;
    let tenants: Vec<String> = rig
        .sim
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();

    // 1,200 new incidents, and analysts at the vendor change some of the existing ones.
    for t in &tenants {
        rig.sim
            .add_symantec_incidents(AddSymantecIncidents {
                tenant: t.clone(),
                count: 600,
                severity: Some("Critical".into()),
            })
            .unwrap();
    }
    let mut changed = BTreeMap::new();
    for t in &tenants {
        for (number, _) in expected(&rig.sim, t).into_iter().take(5) {
            let n: u64 = number.parse().unwrap();
            rig.sim
                .symantec_analyst_change(SymantecAnalystChange {
                    tenant: t.clone(),
                    incident_number: n,
                    comment: Some("escalated to the customer".into()),
                    ..SymantecAnalystChange::default()
                })
                .unwrap();
            changed.insert((t.clone(), number), ());
        }
    }
    settle(&rig).await;

    let counters = rig.sim.counters();
    let tickets = &counters.servicenow.tickets_by_correlation_id;
    for t in &tenants {
        let want = expected(&rig.sim, t);
        let have = numbers_by_incident(&rig.store, t).await;
        // Each socbridge incident holds one MSS number, each MSS number is in one incident.
        let mut seen = BTreeSet::new();
        for (id, numbers) in &have {
            assert_eq!(numbers.len(), 1, "{t}: incident {id} holds {numbers:?}");
            let n = numbers.iter().next().unwrap().clone();
            assert!(
                seen.insert(n.clone()),
                "{t}: MSS incident {n} is in two incidents"
            );
            let cid = socbridge_store::correlation_id(t, *id);
            assert_eq!(
                tickets.get(&cid),
                Some(&1),
                "{t}: incident {id}: one ticket"
            );
        }
        let want_numbers: BTreeSet<String> = want.keys().cloned().collect();
        assert_eq!(
            seen, want_numbers,
            "{t}: every served MSS incident, nothing else"
        );
        assert!(want.len() >= 600, "{t}: {} incidents", want.len());
        eprintln!(
            "{t}: {} MSS incidents = {} socbridge incidents = {} tickets",
            want.len(),
            have.len(),
            have.keys()
                .filter(|id| tickets.contains_key(&socbridge_store::correlation_id(t, **id)))
                .count()
        );
    }
    // Updates landed: each changed incident has a second version in the same incident.
    for (t, number) in changed.keys() {
        let have = numbers_by_incident(&rig.store, t).await;
        let (id, _) = have
            .iter()
            .find(|(_, ns)| ns.contains(number))
            .expect("the changed incident is stored");
        let d = rig.store.get_incident(*id, None).await.unwrap().unwrap();
        assert!(
            d.findings.len() >= 2,
            "{t}: MSS {number}: the update is a second version of incident {id}"
        );
    }
    let total: usize = tickets.values().map(|n| *n as usize).sum();
    assert_eq!(total, tickets.len(), "no ticket created twice");
    rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_in_servicenow_is_written_back_once_with_the_ticket_number() {
    let rig = rig(1, 43).await;
    // Ambiguous failures on the vendor side: the write-back must still land exactly once.
    rig.sim.set_symantec_faults(SymantecFaults {
        rate_commit_drop: 0.5,
        ..SymantecFaults::default()
    });
    settle(&rig).await;
    let incidents = mss_incidents(&rig.store).await;
    assert!(incidents.len() >= 6, "{} MSS incidents", incidents.len());
    let tenant = incidents[0].tenant.clone();
    let closing: Vec<_> = incidents.iter().take(5).collect();

    let sn = rig.sim.endpoints().servicenow.clone().unwrap();
    let http = reqwest::Client::new();
    for i in &closing {
        let ticket = i.ticket.as_ref().expect("ticketed");
        let resp = http
            .patch(format!(
                "{}/api/now/table/incident/{}",
                sn.instance_url, ticket.sys_id
            ))
            .basic_auth(&sn.analyst.user_name, Some(&sn.analyst.password))
            .json(&json!({"state": "6", "close_code": "Solution provided", "close_notes": "cleaned up"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }
    // An analyst comments an incident that stays open: the comment is written back once.
    let commented = &incidents[closing.len()];
    rig.store
        .update_incident(
            commented.id,
            None,
            &IncidentUpdate {
                comment: Some("customer confirms the host is a lab machine".into()),
                actor: "cli:alice".into(),
                ..IncidentUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    // Sync-in takes the closes; the write-backs go out; a later poll reads the vendor's new
    // versions back without writing anything again.
    rig.engine.sync_tickets().await.unwrap();
    settle(&rig).await;
    settle(&rig).await;

    let counters = rig.sim.counters().symantec_mss;
    let per_incident = &counters.tenants[&tenant].workflow_by_incident;
    for i in &closing {
        let d = rig.store.get_incident(i.id, None).await.unwrap().unwrap();
        assert_eq!(d.incident.status, IncidentStatus::Resolved);
        let number = socbridge_engine::symantec::incident_number_of(&d.findings[0].vendor_key);
        let w = per_incident
            .get(number)
            .unwrap_or_else(|| panic!("MSS {number} was written back: {per_incident:?}"));
        assert_eq!(w.updates, 1, "MSS {number}: one UpdateIncidentWorkflow");
        assert_eq!(
            w.last_reference.as_deref(),
            Some(i.ticket.as_ref().unwrap().number.as_str()),
            "the ticket number is the Reference"
        );
    }
    let d = rig
        .store
        .get_incident(commented.id, None)
        .await
        .unwrap()
        .unwrap();
    assert!(d.incident.status.is_open());
    let number = socbridge_engine::symantec::incident_number_of(&d.findings[0].vendor_key);
    assert_eq!(per_incident[number].updates, 1, "the comment, once");
    let at_vendor = rig.sim.symantec_incidents(&tenant).unwrap();
    let comments = at_vendor
        .iter()
        .find(|i| {
            i["number"]
                .as_u64()
                .is_some_and(|n| n.to_string() == number)
        })
        .map(|i| i["comments"].to_string())
        .unwrap();
    assert!(
        comments.contains("customer confirms the host is a lab machine"),
        "{comments}"
    );
    assert_eq!(
        counters.tenants[&tenant].workflow_updates,
        closing.len() as u64 + 1,
        "nothing else was written back"
    );
    eprintln!(
        "{} closes written back once each; {} commit-then-drop faults hit",
        closing.len(),
        counters.faults.commit_drop
    );
    assert!(
        counters.faults.commit_drop > 0,
        "the ambiguous failure was exercised"
    );
    rig.sim.shutdown().await;
}
