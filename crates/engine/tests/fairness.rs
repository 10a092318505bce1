//! Per-tenant fairness: one tenant's flood of events and another tenant's vendor that never
//! answers do not delay the other tenants' polls beyond their interval.

mod common;
use common::*;
use socbridge_engine::SourceSettings;
use socbridge_model::Timestamp;
use socbridge_sim::AddEvents;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_tenant_and_a_hanging_vendor_do_not_hold_up_the_others() {
    let rig = secure_endpoint_rig(sim_config(6, 77, 20)).await;
    let tenants: Vec<String> = rig
        .sim
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();
    let (flood, hang, others) = (&tenants[0], &tenants[1], &tenants[2..]);

    // The flood: far more than one poll stores (500 new findings per run by default).
    rig.sim.add_events(AddEvents {
        tenant: flood.clone(),
        count: 20_000,
        malformed: false,
        same_second: false,
        event_type_id: None,
    });
    // The hanging vendor: a server that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole = black_hole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = black_hole.accept().await {
            conns.push(c);
        }
    });
    let src = rig.store.list_sources(Some(hang)).await.unwrap().remove(0);
    let SourceSettings::SecureEndpoint(mut se) = SourceSettings::from_json(&src.settings).unwrap()
    else {
        panic!("a Secure Endpoint source");
    };
    se.base_url = format!("http://{hole}");
    let name = socbridge_model::SourceName::new(src.name.clone()).unwrap();
    rig.engine
        .save_source(hang, &name, &SourceSettings::SecureEndpoint(se), None)
        .await
        .unwrap();

    let (stop, running) = serve(&rig.engine);

    // When each source's polls end, as the store records them, over 10 seconds.
    let mut ends: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    let started = Timestamp::now();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for s in rig.store.list_sources(None).await.unwrap() {
            if let Some(at) = s.last_poll_at {
                let seen = ends.entry(s.tenant.clone()).or_default();
                if seen.last() != Some(&at) {
                    seen.push(at);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    // Shutdown does not wait out the hanging vendor's retries either.
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("serve stops within its grace though a poll hangs")
        .unwrap();
    held.abort();

    // A poll is due one interval after the last one ended, and the scheduler looks every
    // tick (1 s): a gap of interval + tick + a poll's own time. 3.5 s is far below what a
    // held-up scheduler shows (the hanging vendor alone holds a poll for 20 s per attempt).
    let limit = INTERVAL + Duration::from_secs(1) + Duration::from_millis(1500);
    let limit_us = i64::try_from(limit.as_micros()).unwrap();
    for t in others {
        let polls = ends.get(t).cloned().unwrap_or_default();
        assert!(
            polls.len() >= 4,
            "{t} was polled {} times in 10 s: {polls:?}",
            polls.len()
        );
        let mut last = started;
        let mut widest = 0;
        for at in &polls {
            let gap = at.as_micros() - last.as_micros();
            widest = widest.max(gap);
            assert!(
                gap <= limit_us,
                "{t}: {gap} µs between polls (limit {limit:?}): {polls:?}"
            );
            last = *at;
        }
        eprintln!(
            "{t}: {} polls in 10 s, at most {} ms apart",
            polls.len(),
            widest / 1000
        );
    }
    // The flood kept being worked through, a capped run at a time, beside them.
    let flood_findings = rig.store.counts(Some(flood)).await.unwrap().findings;
    assert!(
        flood_findings >= 1_000,
        "the flooding tenant progressed too: {flood_findings} findings"
    );
    assert!(
        ends.get(hang).is_none_or(|p| p.len() <= 1),
        "the hanging vendor's poll is still waiting: {:?}",
        ends.get(hang)
    );
}
