//! The Cisco XDR incident sink against the in-process emulators (Secure Endpoint, ServiceNow,
//! XDR): one XDR incident per socbridge incident under commit-then-drop, carrying the ticket
//! link; a close made in ServiceNow closes the XDR incident exactly once with no echo; an
//! expired token is refreshed. The XDR emulator's counters are the witness.

mod common;
use common::*;
use serde_json::{Value, json};
use socbridge_engine::{Config, Engine};
use socbridge_model::{IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView};
use socbridge_secrets::MasterKey;
use socbridge_sim::{ConfigOptions, SimHandle, XdrFaults};
use socbridge_store::Store;
use std::collections::BTreeMap;
use std::time::Duration;

/// The emulators, their config with ServiceNow and a `[tenants.xdr]` section per tenant
/// (secrets in the env file), and an engine configured from it.
async fn rig(tenants: usize, events: usize, seed: u64) -> Rig {
    let sim = socbridge_sim::start(sim_config(tenants, seed, events))
        .await
        .expect("the emulators start");
    let dir = tempfile::tempdir().expect("a temp dir");
    let cfg_path = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &cfg_path,
        &ConfigOptions {
            servicenow_section: true,
            ..ConfigOptions::default()
        },
    )
    .expect("the config is written");
    let mut text = std::fs::read_to_string(&cfg_path).expect("the config reads back");
    let env_path = dir.path().join("socbridge.env");
    let mut env = std::fs::read_to_string(&env_path).expect("the env file reads back");
    let xdr = sim.endpoints().xdr.clone().expect("the XDR emulator runs");
    for c in &xdr.clients {
        let var = format!(
            "{}_XDR_CLIENT_SECRET",
            c.tenant.to_uppercase().replace('-', "_")
        );
        let head = format!("[[tenants]]\nname = \"{}\"\n", c.tenant);
        assert!(text.contains(&head), "the config lists {}", c.tenant);
        text = text.replace(
            &head,
            &format!(
                "{head}\n[tenants.xdr]\nclient_id = \"{}\"\nclient_secret_env = \"{var}\"\ntoken_url = \"{}\"\nctia_url = \"{}\"\n",
                c.client_id, xdr.token_url, xdr.ctia_url
            ),
        );
        env.push_str(&format!("{var}={}\n", c.client_secret));
    }
    std::fs::write(&cfg_path, text).expect("the config is written");
    std::fs::write(&env_path, env).expect("the env file is written");
    let config = Config::load(&cfg_path).expect("the config loads");
    let (store, schema) = test_store(dir.path()).await;
    let engine = Engine::new(store.clone(), MasterKey::generate(), engine_options());
    engine
        .apply_config(&config)
        .await
        .expect("the config applies");
    Rig::assemble(sim, engine, store, dir, schema)
}

async fn all_incidents(store: &Store) -> Vec<IncidentView> {
    store
        .list_incidents(&IncidentFilter {
            limit: Some(100_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap()
}

async fn drain(rig: &Rig) {
    let left = rig
        .engine
        .drain_outbox(Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(left, 0, "every outbox item done");
}

/// The emulator's incidents by their external id.
fn xdr_by_external_id(sim: &SimHandle) -> BTreeMap<String, Vec<Value>> {
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for i in sim.xdr_incidents(None) {
        for e in i["external_ids"].as_array().cloned().unwrap_or_default() {
            by.entry(e.as_str().unwrap_or_default().to_string())
                .or_default()
                .push(i.clone());
        }
    }
    by
}

fn ticket_urls(i: &Value) -> Vec<String> {
    i["external_references"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["url"].as_str().map(str::to_string))
        .collect()
}

/// An analyst's PATCH through ServiceNow's Table API.
async fn analyst_patch(sim: &SimHandle, sys_id: &str, body: Value) {
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

fn integration_updates(sim: &SimHandle) -> u64 {
    let user = sim
        .endpoints()
        .servicenow
        .as_ref()
        .unwrap()
        .integration
        .user_name
        .clone();
    sim.counters()
        .servicenow
        .by_user
        .get(&user)
        .map_or(0, |w| w.updates)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_incident_gets_one_xdr_incident_with_its_ticket_link_under_commit_then_drop() {
    let rig = rig(8, 60, 21).await;
    rig.sim.set_xdr_faults(XdrFaults {
        rate_commit_drop: 0.2,
        rate_503: 0.05,
        ..XdrFaults::default()
    });
    // ServiceNow is down at first: the XDR incidents are made without the ticket link, which
    // is added once the tickets exist.
    rig.sim.set_servicenow_outage(true);
    rig.engine.poll_until_idle(100).await.unwrap();
    let incidents = all_incidents(&rig.store).await;
    let n = incidents.len() as u64;
    wait_until(
        Duration::from_secs(60),
        "every XDR incident made",
        || async {
            rig.engine.process_outbox().await.unwrap();
            rig.sim.counters().xdr.incidents_created >= n
        },
    )
    .await;
    let unlinked = rig
        .sim
        .xdr_incidents(None)
        .iter()
        .filter(|x| ticket_urls(x).is_empty())
        .count();
    assert_eq!(unlinked as u64, n, "no ticket yet, no link yet");
    rig.sim.set_servicenow_outage(false);
    drain(&rig).await;

    let incidents = all_incidents(&rig.store).await;
    let c = rig.sim.counters().xdr;
    let by_ext = xdr_by_external_id(&rig.sim);
    eprintln!(
        "{} incidents, {} XDR incidents created, {} duplicates by external id; faults: {} commit-then-drop, {} 503; {} PATCHes, {} tokens",
        incidents.len(),
        c.incidents_created,
        c.duplicates_by_external_id,
        c.faults.commit_drop,
        c.faults.status_503,
        c.patches_applied,
        c.tokens_issued
    );
    assert!(incidents.len() >= 40, "{} incidents", incidents.len());
    assert!(
        c.faults.commit_drop > 0,
        "the ambiguous fault was exercised"
    );
    assert_eq!(c.duplicates_by_external_id, 0, "no XDR incident twice");
    assert_eq!(c.incidents_created, incidents.len() as u64);
    assert_eq!(by_ext.len(), incidents.len());
    assert!(c.status_patches.is_empty(), "{:?}", c.status_patches);
    assert!(
        c.patches_applied >= n,
        "a link added to each: {}",
        c.patches_applied
    );
    for i in &incidents {
        let rec = rig
            .store
            .xdr_incident(i.id)
            .await
            .unwrap()
            .expect("every incident has its XDR incident");
        let found = by_ext
            .get(&rec.external_id)
            .unwrap_or_else(|| panic!("no XDR incident for {}", rec.external_id));
        assert_eq!(found.len(), 1, "{}", rec.external_id);
        let x = &found[0];
        assert_eq!(
            x["_tenant"],
            json!(i.tenant),
            "in the tenant's own organisation"
        );
        assert_eq!(rec.xdr_id.as_deref(), x["id"].as_str(), "recorded");
        assert_eq!(x["status"], "New");
        assert_eq!(x["confidence"], "High");
        assert_eq!(x["tlp"], "amber");
        let ticket = i.ticket.as_ref().expect("every incident has its ticket");
        assert_eq!(
            ticket_urls(x),
            vec![ticket.url.clone()],
            "the ticket link, once"
        );
    }
    // Nothing left to do: another pass writes nothing.
    let before = rig.sim.counters().xdr;
    rig.engine.sync_tickets().await.unwrap();
    drain(&rig).await;
    let after = rig.sim.counters().xdr;
    assert_eq!(after.incidents_created, before.incidents_created);
    assert_eq!(after.patches_applied, before.patches_applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_in_servicenow_closes_the_xdr_incident_exactly_once_without_echo() {
    let rig = rig(1, 12, 22).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    drain(&rig).await;
    let incidents = all_incidents(&rig.store).await;
    let target = incidents[0].clone();
    let sys_id = target.ticket.as_ref().unwrap().sys_id.clone();
    assert!(rig.sim.counters().xdr.status_patches.is_empty());

    // Every write's answer is lost: the close still lands once (the retry reads first).
    rig.sim.set_xdr_faults(XdrFaults {
        rate_commit_drop: 1.0,
        ..XdrFaults::default()
    });
    analyst_patch(
        &rig.sim,
        &sys_id,
        json!({"state": "6", "close_code": "Solution provided", "close_notes": "cleaned"}),
    )
    .await;
    let quiet = integration_updates(&rig.sim);
    rig.engine.sync_tickets().await.unwrap();
    let d = rig
        .store
        .get_incident(target.id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.incident.status, IncidentStatus::Resolved);
    drain(&rig).await;
    rig.sim.set_xdr_faults(XdrFaults::default());
    // Taking the ticket in again, and another drain, change nothing.
    rig.engine.sync_tickets().await.unwrap();
    drain(&rig).await;

    let c = rig.sim.counters().xdr;
    eprintln!(
        "status PATCHes {:?}; {} commit-then-drop; ServiceNow updates by socbridge after the close: {}",
        c.status_patches,
        c.faults.commit_drop,
        integration_updates(&rig.sim) - quiet
    );
    assert_eq!(
        c.status_patches,
        BTreeMap::from([("Closed".to_string(), 1)]),
        "closed exactly once, and nothing else"
    );
    assert_eq!(c.faults.commit_drop, 1, "the close's answer was lost");
    assert_eq!(
        integration_updates(&rig.sim),
        quiet,
        "no echo to ServiceNow"
    );
    let rec = rig.store.xdr_incident(target.id).await.unwrap().unwrap();
    let x = &xdr_by_external_id(&rig.sim)[&rec.external_id][0];
    assert_eq!(x["status"], "Closed");
    assert!(x["incident_time"]["closed"].is_string(), "{x}");
    assert_eq!(rec.status.as_deref(), Some("Closed"));
    // The other incidents stay open in XDR.
    for i in incidents.iter().skip(1) {
        let rec = rig.store.xdr_incident(i.id).await.unwrap().unwrap();
        assert_eq!(
            xdr_by_external_id(&rig.sim)[&rec.external_id][0]["status"],
            "New"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed() {
    let rig = rig(1, 6, 23).await;
    rig.engine.poll_until_idle(100).await.unwrap();
    drain(&rig).await;
    let incidents = all_incidents(&rig.store).await;
    assert_eq!(
        rig.sim.counters().xdr.tokens_issued,
        1,
        "one token for the tenant"
    );
    let tenant = incidents[0].tenant.clone();
    assert_eq!(rig.engine.check_xdr(&tenant).await.unwrap(), Some(Ok(())));
    assert_eq!(rig.engine.check_xdr("nobody").await.unwrap(), None);
    assert_eq!(
        rig.sim.counters().xdr.tokens_issued,
        1,
        "the check used the cached token"
    );

    let set = |i: &IncidentView, status| {
        let store = rig.store.clone();
        let id = i.id;
        async move {
            store
                .update_incident(
                    id,
                    None,
                    &IncidentUpdate {
                        status: Some(status),
                        resolution: None,
                        assignee: None,
                        comment: None,
                        actor: "alice".into(),
                    },
                )
                .await
                .unwrap()
                .unwrap();
        }
    };

    // The service forgets every token: the next call meets a 401, gets a new token once and
    // goes on.
    rig.sim.expire_xdr_tokens();
    set(&incidents[0], IncidentStatus::InProgress).await;
    drain(&rig).await;
    let c = rig.sim.counters().xdr;
    assert_eq!(c.unauthorized, 1);
    assert_eq!(c.tokens_issued, 2);
    assert_eq!(c.status_patches.get("Open"), Some(&1));

    // Short-lived tokens are refreshed before they expire: no 401 at all.
    rig.sim.set_xdr_token_ttl(Duration::from_secs(1));
    rig.sim.expire_xdr_tokens();
    set(&incidents[0], IncidentStatus::OnHold).await;
    drain(&rig).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    set(&incidents[0], IncidentStatus::Closed).await;
    drain(&rig).await;
    let c = rig.sim.counters().xdr;
    eprintln!(
        "tokens issued {}, 401s {}, status PATCHes {:?}",
        c.tokens_issued, c.unauthorized, c.status_patches
    );
    assert_eq!(c.unauthorized, 2, "one 401 for the forgotten token only");
    assert_eq!(c.tokens_issued, 4, "a new token after the 1 s one ran out");
    assert_eq!(c.status_patches.get("Hold"), Some(&1));
    assert_eq!(c.status_patches.get("Closed"), Some(&1));
}
