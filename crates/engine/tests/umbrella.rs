//! Cisco Umbrella against the in-process emulator, as an MSSP runs it: one parent key for 50
//! customer orgs, records without ids in an order that is not stable within a second,
//! duplicated across pages, some orgs behind a regional redirect, one org revoked. The
//! emulator's own records and counters are the witness.

mod common;
use common::*;
use socbridge_model::{IncidentFilter, SourceKind};
use socbridge_sim::{AddUmbrellaRecords, ConfigOptions, SimConfig, SimHandle, UmbrellaConfig};
use std::collections::BTreeSet;

const CHILD_ORGS: usize = 50;

/// The rig, and (tenant, org id) of every customer.
async fn rig(seed: u64) -> (Rig, Vec<(String, String)>) {
    let tenants = 2;
    let sim = SimConfig {
        umbrella: UmbrellaConfig {
            extra_orgs: CHILD_ORGS - tenants,
            records_per_org: 120,
            ..UmbrellaConfig::default()
        },
        ..sim_config(tenants, seed, 40)
    };
    let options = ConfigOptions {
        umbrella_sources: true,
        ..ConfigOptions::default()
    };
    // Small pages, so every org's window takes several; the extra orgs as more customers.
    let rig = rig_with(sim, &options, |sim, text| {
        let mut text = text.replace(
            "kind = \"umbrella\"\ncredential",
            "kind = \"umbrella\"\npage_size = 15\ncredential",
        );
        let u = sim.endpoints().umbrella.clone().expect("the Umbrella emulator runs");
        for (i, o) in u.extra_orgs.iter().enumerate() {
            text.push_str(&format!(
                "\n[[tenants]]\nname = \"customer-{i:02}\"\n\n[[tenants.sources]]\nname = \"umbrella\"\nkind = \"umbrella\"\npage_size = 15\ncredential = \"umbrella-mssp\"\norg_id = \"{}\"\n",
                o.org_id
            ));
        }
        text
    })
    .await;
    let ep = rig.sim.endpoints().clone();
    let mut orgs: Vec<(String, String)> = ep
        .tenants
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.umbrella.as_ref().unwrap().org_id.to_string(),
            )
        })
        .collect();
    for (i, o) in ep.umbrella.unwrap().extra_orgs.iter().enumerate() {
        orgs.push((format!("customer-{i:02}"), o.org_id.to_string()));
    }
    (rig, orgs)
}

/// What the default filter must store for an org: its blocked records of categories 65 and
/// 150, keyed as the connector keys them.
fn expected(sim: &SimHandle, org: &str) -> BTreeSet<String> {
    sim.umbrella_records(org)
        .unwrap()
        .iter()
        .filter(|r| r["verdict"] == "blocked")
        .filter(|r| {
            r["categories"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == 65 || c["id"] == 150))
        })
        .map(|r| socbridge_connectors::umbrella::vendor_key(org, &r.to_string()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_orgs_one_token_nothing_lost_nothing_doubled() {
    let (rig, orgs) = rig(81).await;
    let (revoked_tenant, revoked_org) = orgs[5].clone();
    rig.sim.set_umbrella_revoked(&revoked_org, true).unwrap();
    // Records colliding in one second, and pages that repeat a record of the previous one.
    for (_, org) in orgs.iter().take(10) {
        rig.sim
            .add_umbrella_records(AddUmbrellaRecords {
                org: org.clone(),
                count: 40,
                same_second: true,
                category: Some(65),
                verdict: Some("blocked".into()),
                identity: None,
                kind: Some("dns".into()),
            })
            .unwrap();
    }
    rig.sim.set_umbrella_faults(socbridge_sim::UmbrellaFaults {
        rate_duplicate: 0.3,
        rate_503: 0.05,
        ..Default::default()
    });

    let reports = rig.engine.poll_until_idle(50).await.unwrap();
    let umbrella: Vec<_> = reports
        .iter()
        .filter(|r| r.kind == SourceKind::Umbrella)
        .collect();
    for r in &umbrella {
        if r.tenant == revoked_tenant {
            let e = r.error.as_deref().unwrap_or("");
            assert!(e.contains(&revoked_org), "the revoked org is named: {e}");
        } else {
            assert!(r.error.is_none(), "{}: {:?}", r.tenant, r.error);
        }
    }

    let mut total = 0;
    for (tenant, org) in &orgs {
        if tenant == &revoked_tenant {
            continue;
        }
        let want = expected(&rig.sim, org);
        let stored = rig.store.finding_keys(tenant, "umbrella").await.unwrap();
        let have: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(stored.len(), have.len(), "{tenant}: nothing stored twice");
        let lost: Vec<_> = want.difference(&have).collect();
        let extra: Vec<_> = have.difference(&want).collect();
        assert!(lost.is_empty(), "{tenant}: {} lost", lost.len());
        assert!(extra.is_empty(), "{tenant}: {} unexpected", extra.len());
        total += have.len();
    }
    let c = rig.sim.counters().umbrella;
    // Each page after the first re-reads the second it starts in: what was stored is dropped.
    let reread: usize = umbrella.iter().map(|r| r.duplicates).sum();
    assert!(reread > 0, "records read twice were dropped by their key");
    let limited: u64 = c.orgs.values().map(|o| o.status_429).sum();
    assert_eq!(
        c.tokens.get("parent").map(|t| t.issued),
        Some(1),
        "one token for every org of the parent key: {:?}",
        c.tokens
    );
    let regional: Vec<_> = c.orgs.values().filter(|o| o.regional).collect();
    assert!(
        !regional.is_empty(),
        "some orgs live in the regional warehouse"
    );
    assert!(c.regional.with_authorization > 0);
    assert_eq!(
        c.regional.without_authorization, 0,
        "the token followed the redirect"
    );
    eprintln!(
        "{} orgs, {total} findings = the emulator's matching records, 0 lost, 0 doubled ({reread} re-read and dropped); {} token request(s); {} redirects; {limited} per-org 429s waited out",
        orgs.len() - 1,
        c.tokens["parent"].issued,
        c.redirects,
    );
    rig.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_seen_by_both_vendors_is_one_incident() {
    let (rig, orgs) = rig(83).await;
    rig.engine.poll_until_idle(50).await.unwrap();
    let (tenant, org) = orgs[0].clone();
    let incidents = rig
        .store
        .list_incidents(&IncidentFilter {
            tenants: vec![tenant.clone()],
            limit: Some(10_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap();
    let se = incidents
        .iter()
        .find(|i| i.sources == vec![SourceKind::SecureEndpoint] && i.status.is_open())
        .expect("an open Secure Endpoint incident");
    let host = se
        .observables
        .iter()
        .find(|o| o.kind == socbridge_model::ObservableKind::Hostname)
        .unwrap()
        .value
        .clone();
    // Umbrella blocks command and control from the same computer.
    rig.sim
        .add_umbrella_records(AddUmbrellaRecords {
            org: org.clone(),
            count: 3,
            same_second: false,
            category: Some(65),
            verdict: Some("blocked".into()),
            identity: Some(host.to_lowercase()),
            kind: Some("dns".into()),
        })
        .unwrap();
    rig.engine
        .poll(Some(&tenant), Some("umbrella"))
        .await
        .unwrap();
    let after = rig.store.get_incident(se.id, None).await.unwrap().unwrap();
    assert!(
        after.incident.sources.contains(&SourceKind::Umbrella),
        "the Umbrella findings joined incident {} of {host}: {:?}",
        se.id,
        after.incident.sources
    );
    let umbrella_only = rig
        .store
        .list_incidents(&IncidentFilter {
            tenants: vec![tenant.clone()],
            limit: Some(10_000),
            ..IncidentFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.sources == vec![SourceKind::Umbrella])
        .filter(|i| {
            i.observables
                .iter()
                .any(|o| o.value.eq_ignore_ascii_case(&host))
        })
        .count();
    assert_eq!(umbrella_only, 0, "no second incident for {host}");
    rig.sim.shutdown().await;
}
