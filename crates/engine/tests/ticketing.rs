//! ServiceNow ticketing against the in-process emulator: exactly one ticket per incident
//! under ambiguous failures and outages, both directions of close, reopen and notes, no echo,
//! and a webhook that refuses what it should. The emulator's counters are the witness.

mod common;
use common::*;
use serde_json::json;
use socbridge_engine::WebhookError;
use socbridge_model::{IncidentFilter, IncidentStatus, IncidentUpdate};
use socbridge_sim::{ConfigOptions, ServiceNowFaults, SimHandle};
use socbridge_store::Store;
use std::time::{Duration, Instant};

async fn rig(tenants: usize, events: usize, seed: u64) -> Rig {
    let options = ConfigOptions {
        servicenow_section: true,
        ..ConfigOptions::default()
    };
    let rig = common::rig(sim_config(tenants, seed, events), &options).await;
    assert!(
        std::fs::read_to_string(rig.dir.path().join("socbridge.toml"))
            .unwrap()
            .contains("\n[servicenow]\n"),
        "the config has a [servicenow] section"
    );
    rig
}

fn sn_counters(sim: &SimHandle) -> socbridge_sim::ServiceNowCounters {
    sim.counters().servicenow
}

fn integration_writes(sim: &SimHandle) -> socbridge_sim::WriteCounters {
    let user = sim
        .endpoints()
        .servicenow
        .as_ref()
        .unwrap()
        .integration
        .user_name
        .clone();
    sn_counters(sim)
        .by_user
        .get(&user)
        .cloned()
        .unwrap_or_default()
}

async fn all_incidents(store: &Store) -> Vec<socbridge_model::IncidentView> {
    store
        .list_incidents(&IncidentFilter {
            limit: Some(100_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap()
}

/// Asserts the witness: one ticket per incident, none twice, none without an incident.
async fn assert_one_ticket_each(rig: &Rig) -> usize {
    let incidents = all_incidents(&rig.store).await;
    let by_cid = sn_counters(&rig.sim).tickets_by_correlation_id;
    let doubled: Vec<_> = by_cid.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "tickets created more than once: {doubled:?}"
    );
    let expected: std::collections::BTreeSet<String> = incidents
        .iter()
        .map(|i| socbridge_store::correlation_id(&i.tenant, i.id))
        .collect();
    let got: std::collections::BTreeSet<String> = by_cid.keys().cloned().collect();
    assert_eq!(
        expected, got,
        "one ticket per incident, no ticket without one"
    );
    for i in &incidents {
        let t = i.ticket.as_ref().expect("every incident shows its ticket");
        assert!(t.number.starts_with("INC"), "{t:?}");
    }
    incidents.len()
}

/// An analyst's PATCH through the Table API.
async fn analyst_patch(sim: &SimHandle, sys_id: &str, body: serde_json::Value) {
    let sn = sim.endpoints().servicenow.clone().unwrap();
    let resp = reqwest::Client::new()
        .patch(format!(
            "{}/api/now/table/incident/{sys_id}",
            sn.instance_url
        ))
        .basic_auth(&sn.analyst.user_name, Some(&sn.analyst.password))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "analyst PATCH: {}",
        resp.status()
    );
}

async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    while !check().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_failures_and_503s_give_exactly_one_ticket_per_incident() {
    // 64 tenants of 8 computers: about 500 incidents.
    let rig = rig(64, 60, 11).await;
    rig.sim.set_servicenow_faults(ServiceNowFaults {
        rate_commit_drop: 0.2,
        rate_503: 0.1,
        ..ServiceNowFaults::default()
    });
    rig.engine.poll_until_idle(100).await.unwrap();
    let left = rig
        .engine
        .drain_outbox(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(left, 0, "every ticket item done");
    let n = assert_one_ticket_each(&rig).await;
    assert!(n >= 500, "{n} incidents");
    let c = sn_counters(&rig.sim);
    eprintln!(
        "{n} incidents, {} tickets; faults: {} commit-then-drop, {} 503",
        c.tickets_by_correlation_id.len(),
        c.faults.commit_drop,
        c.faults.status_503
    );
    assert!(
        c.faults.commit_drop > 0,
        "the ambiguous fault was exercised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_delays_tickets_and_loses_none() {
    let rig = rig(2, 40, 12).await;
    rig.sim.set_servicenow_outage(true);
    rig.engine.poll_until_idle(100).await.unwrap();
    let incidents = all_incidents(&rig.store).await;
    assert!(
        !incidents.is_empty(),
        "incidents are stored while ServiceNow is down"
    );
    let left = rig
        .engine
        .drain_outbox(Duration::from_millis(300))
        .await
        .unwrap();
    assert!(left > 0, "nothing can be ticketed during the outage");
    assert!(sn_counters(&rig.sim).tickets_by_correlation_id.is_empty());
    rig.sim.set_servicenow_outage(false);
    let left = rig
        .engine
        .drain_outbox(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(assert_one_ticket_each(&rig).await, incidents.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reopen_and_notes_flow_both_ways_once_without_echo() {
    let rig = rig(1, 12, 13).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let incidents = all_incidents(&rig.store).await;
    let first = incidents[0].clone();
    let second = incidents[1].clone();
    let sys_id = |i: &socbridge_model::IncidentView| i.ticket.as_ref().unwrap().sys_id.clone();

    // Close in socbridge, with a comment: the ticket is resolved and gets one note.
    let before = integration_writes(&rig.sim);
    rig.store
        .update_incident(
            first.id,
            None,
            &IncidentUpdate {
                status: Some(IncidentStatus::Resolved),
                resolution: Some("false positive".into()),
                assignee: None,
                comment: Some("checked with the customer".into()),
                actor: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let after = integration_writes(&rig.sim);
    assert_eq!(
        after.updates - before.updates,
        2,
        "one state change, one note"
    );
    assert_eq!(after.journal_entries - before.journal_entries, 1);
    let ticket = rig
        .sim
        .servicenow_incidents()
        .into_iter()
        .find(|t| t["sys_id"] == sys_id(&first))
        .unwrap();
    assert_eq!(ticket["state"], "6");
    // The echo: taking the ticket in changes nothing and writes nothing.
    rig.engine.sync_tickets().await.unwrap();
    assert_eq!(rig.store.outbox_stats().await.unwrap().pending, 0);
    let detail = rig
        .store
        .get_incident(first.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.incident.status, IncidentStatus::Resolved);
    assert_eq!(
        detail
            .timeline
            .iter()
            .filter(|e| e.kind == "comment")
            .count(),
        1,
        "our own note is not read back"
    );
    assert_eq!(integration_writes(&rig.sim), after);

    // Close in ServiceNow (the analyst): polling alone closes the incident, writing nothing.
    analyst_patch(
        &rig.sim,
        &sys_id(&second),
        json!({"state": "6", "close_code": "Solution provided", "close_notes": "cleaned"}),
    )
    .await;
    let quiet = integration_writes(&rig.sim);
    rig.engine.sync_tickets().await.unwrap();
    let d = rig
        .store
        .get_incident(second.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.incident.status, IncidentStatus::Resolved);
    assert_eq!(
        d.incident.resolution.as_deref(),
        Some("Solution provided: cleaned")
    );
    assert_eq!(
        rig.store.outbox_stats().await.unwrap().pending,
        0,
        "no echo queued"
    );
    rig.engine
        .drain_outbox(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        integration_writes(&rig.sim),
        quiet,
        "no write back to ServiceNow"
    );

    // Reopen in ServiceNow and add a work note: the incident reopens, the note arrives once.
    analyst_patch(
        &rig.sim,
        &sys_id(&second),
        json!({"state": "2", "work_notes": "reinfected after reboot"}),
    )
    .await;
    rig.engine.sync_tickets().await.unwrap();
    rig.engine.sync_tickets().await.unwrap();
    let d = rig
        .store
        .get_incident(second.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.incident.status, IncidentStatus::InProgress);
    let notes: Vec<_> = d
        .timeline
        .iter()
        .filter(|e| e.kind == "comment" && e.detail.contains("reinfected after reboot"))
        .collect();
    assert_eq!(notes.len(), 1, "{:?}", d.timeline);
    rig.engine
        .drain_outbox(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(integration_writes(&rig.sim), quiet, "still no write back");

    // Reopen in socbridge: the ticket follows.
    rig.store
        .update_incident(
            first.id,
            None,
            &IncidentUpdate {
                status: Some(IncidentStatus::InProgress),
                resolution: None,
                assignee: None,
                comment: None,
                actor: "alice".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let ticket = rig
        .sim
        .servicenow_incidents()
        .into_iter()
        .find(|t| t["sys_id"] == sys_id(&first))
        .unwrap();
    assert_eq!(ticket["state"], "2");
    assert_one_ticket_each(&rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_refuses_bad_calls_and_takes_a_real_change_in() {
    let rig = rig(1, 8, 14).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let inc = all_incidents(&rig.store).await[0].clone();
    let sys_id = inc.ticket.as_ref().unwrap().sys_id.clone();
    let sn = rig.sim.endpoints().servicenow.clone().unwrap();
    let secret = sn.webhook_secret.clone();
    let header_name = sn.webhook_header.clone();
    let with = |value: &'static str| {
        let name = header_name.clone();
        let v = if value == "right" {
            secret.clone()
        } else {
            value.to_string()
        };
        move |h: &str| (h.eq_ignore_ascii_case(&name)).then(|| v.clone())
    };
    let body = json!({"sys_id": sys_id}).to_string();

    let wrong = with("not-the-secret");
    let e = rig
        .engine
        .servicenow_webhook(&wrong, body.as_bytes())
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::Unauthorized(_)), "{e}");
    let right = with("right");
    let e = rig
        .engine
        .servicenow_webhook(&right, b"{not json")
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::BadBody(_)), "{e}");
    let e = rig
        .engine
        .servicenow_webhook(&right, br#"{"sys_id":"0123456789abcdef0123456789abcdef"}"#)
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::UnknownTicket(_)), "{e}");
    let d = rig.store.get_incident(inc.id, None).await.unwrap().unwrap();
    assert!(d.incident.status.is_open(), "bad calls changed nothing");

    analyst_patch(
        &rig.sim,
        &sys_id,
        json!({"state": "7", "close_code": "Duplicate", "close_notes": "dup of INC1"}),
    )
    .await;
    let report = rig
        .engine
        .servicenow_webhook(&right, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(report.incidents_changed, 1);
    let d = rig.store.get_incident(inc.id, None).await.unwrap().unwrap();
    assert_eq!(d.incident.status, IncidentStatus::Closed);
    wait_for("nothing queued", Duration::from_secs(2), || async {
        rig.store.outbox_stats().await.unwrap().pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_that_landed_unrecorded_is_not_written_again() {
    let rig = rig(1, 6, 15).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let inc = all_incidents(&rig.store).await[0].clone();
    let sys_id = inc.ticket.as_ref().unwrap().sys_id.clone();
    rig.store
        .update_incident(
            inc.id,
            None,
            &IncidentUpdate {
                status: None,
                resolution: None,
                assignee: None,
                comment: Some("called the user".into()),
                actor: "alice".into(),
            },
        )
        .await
        .unwrap();
    let note = rig
        .store
        .outbox_of_incident(inc.id)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.state == "pending")
        .expect("the note is queued");
    // The write lands at ServiceNow as socbridge would make it, and socbridge dies before
    // recording it: the item is still pending with no failed attempt.
    let sn = rig.sim.endpoints().servicenow.clone().unwrap();
    let marker = format!("[socbridge note {}]", note.id);
    let resp = reqwest::Client::new()
        .patch(format!(
            "{}/api/now/table/incident/{sys_id}",
            sn.instance_url
        ))
        .basic_auth(&sn.integration.user_name, Some(&sn.integration.password))
        .json(&json!({"work_notes": format!("{marker} alice: called the user")}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(
        rig.engine
            .drain_outbox(Duration::from_secs(30))
            .await
            .unwrap(),
        0
    );
    let copies = rig
        .sim
        .servicenow_journal()
        .into_iter()
        .filter(|e| e["value"].as_str().is_some_and(|v| v.contains(&marker)))
        .count();
    assert_eq!(copies, 1, "the note is in the ticket once");
}
