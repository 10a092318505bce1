//! Secure Endpoint Event Streams against the local RabbitMQ (127.0.0.1:5672, guest/guest):
//! with `push = true` an event becomes a finding, an incident and a ServiceNow ticket while the
//! next poll is an hour away; and connections to the broker cut while events flow lose
//! nothing and double nothing (the emulator's count of what the broker confirmed is the
//! witness). Each emulator's queues carry a nonce of their own, so tests sharing the broker do
//! not meet.

mod common;
use common::*;
use socbridge_sim::{AddEvents, ConfigOptions, EventStreamsConfig, SimConfig, SimHandle};
use socbridge_store::Store;
use std::collections::HashSet;
use std::time::Duration;

const THREAT_DETECTED: u64 = 1090519054;
const SOURCE: &str = "secure-endpoint";
const BROKER: &str = "127.0.0.1:5672";

/// Turns push on for every Secure Endpoint source and moves the next poll an hour away.
fn push_on(_: &SimHandle, text: String) -> String {
    text.replace(
        "kind = \"secure_endpoint\"\n",
        "kind = \"secure_endpoint\"\npush = true\npoll_interval = \"1h\"\n",
    )
}

fn sim(tenants: usize, event_streams: EventStreamsConfig) -> SimConfig {
    SimConfig {
        event_streams,
        ..sim_config(tenants, 7, 0)
    }
}

/// Waits until the first poll of the tenant's source is recorded and its stream exists at the
/// emulator: from then on, only push can bring a new event in within the hour.
async fn wait_for_push(store: &Store, sim: &SimHandle, tenant: &str) -> i64 {
    wait_until(
        Duration::from_secs(30),
        "the first poll and the stream",
        || async {
            let polled = store
                .get_source(tenant, SOURCE)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.last_poll_at.is_some());
            polled && !sim.event_streams(tenant).is_empty()
        },
    )
    .await;
    store
        .get_source(tenant, SOURCE)
        .await
        .unwrap()
        .unwrap()
        .last_poll_at
        .unwrap()
        .as_micros()
}

fn add(sim: &SimHandle, tenant: &str, count: usize) -> Vec<u64> {
    sim.add_events(AddEvents {
        tenant: tenant.into(),
        count,
        malformed: false,
        same_second: false,
        event_type_id: Some(THREAT_DETECTED),
    })
}

/// The event id of a Secure Endpoint finding key (`{id}:{timestamp}...`).
fn event_id(key: &str) -> u64 {
    key.split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a finding key starts with the event id: {key}"))
}

#[tokio::test]
async fn a_pushed_event_becomes_a_ticketed_incident_without_a_poll() {
    let options = ConfigOptions {
        servicenow_section: true,
        ..ConfigOptions::default()
    };
    let rig = rig_with(sim(1, EventStreamsConfig::default()), &options, push_on).await;
    let (stop, task) = serve(&rig.engine);
    let polled_at = wait_for_push(&rig.store, &rig.sim, "acme").await;
    let streams = rig.sim.event_streams("acme");
    assert_eq!(streams.len(), 1, "one stream per source: {streams:?}");

    let ids = add(&rig.sim, "acme", 1);
    wait_until(Duration::from_secs(20), "the ticket", || async {
        rig.sim
            .counters()
            .servicenow
            .tickets_by_correlation_id
            .len()
            == 1
    })
    .await;

    let keys = rig.store.finding_keys("acme", SOURCE).await.unwrap();
    assert_eq!(keys.iter().map(|k| event_id(k)).collect::<Vec<_>>(), ids);
    wait_until(
        Duration::from_secs(10),
        "the broker's confirmation",
        || async {
            rig.sim.counters().secure_endpoint.tenants["acme"].stream_published_distinct == 1
        },
    )
    .await;
    let c = rig.sim.counters();
    assert_eq!(
        c.secure_endpoint.tenants["acme"].served_distinct, 0,
        "no poll served the event"
    );
    let tickets = &c.servicenow.tickets_by_correlation_id;
    assert!(tickets.values().all(|n| *n == 1), "{tickets:?}");
    let source = rig.store.get_source("acme", SOURCE).await.unwrap().unwrap();
    assert_eq!(
        source.last_poll_at.map(|t| t.as_micros()),
        Some(polled_at),
        "no poll ran in between"
    );
    assert_eq!(
        source.cursor_mark, None,
        "a pushed event does not move the poll's cursor"
    );
    let counted = rig.engine.metrics().snapshot();
    let counted: Vec<_> = counted
        .polls
        .iter()
        .filter(|((tenant, source, _), _)| tenant == "acme" && source == SOURCE)
        .map(|(_, c)| (c.new_findings, c.ok + c.failed))
        .collect();
    assert_eq!(
        counted,
        [(1, 1)],
        "the pushed finding is counted with its source's findings, and only the first poll as a poll"
    );

    stop.cancel();
    task.await.unwrap();
    rig.sim.shutdown().await;
}

#[tokio::test]
async fn connections_cut_while_events_flow_lose_nothing_and_double_nothing() {
    let proxy = CutProxy::start(BROKER.parse().unwrap()).await;
    let streams = EventStreamsConfig {
        advertised_port: Some(proxy.addr.port()),
        ..EventStreamsConfig::default()
    };
    let rig = rig_with(sim(1, streams), &ConfigOptions::default(), push_on).await;
    let (stop, task) = serve(&rig.engine);
    wait_for_push(&rig.store, &rig.sim, "acme").await;
    wait_until(
        Duration::from_secs(30),
        "the consumer's connection",
        || async { proxy.accepted() >= 1 },
    )
    .await;

    let mut added = Vec::new();
    for round in 0..12 {
        added.extend(add(&rig.sim, "acme", 25));
        if round % 3 == 1 {
            // Part of this round is on its way or stored but unacknowledged when the
            // connection dies; the next round waits for the consumer to be back.
            let before = proxy.accepted();
            proxy.cut_all();
            // Generous: a reconnection that failed once waits out a doubled backoff, and a
            // loaded machine slows each attempt; what is asserted is the outcome below.
            wait_until(Duration::from_secs(45), "a reconnection", || async {
                proxy.accepted() > before
            })
            .await;
        }
    }
    let total = added.len();
    wait_until(Duration::from_secs(60), "every event stored", || async {
        rig.store.finding_keys("acme", SOURCE).await.unwrap().len() >= total
    })
    .await;

    let keys = rig.store.finding_keys("acme", SOURCE).await.unwrap();
    let stored: Vec<u64> = keys.iter().map(|k| event_id(k)).collect();
    let distinct: HashSet<u64> = stored.iter().copied().collect();
    assert_eq!(distinct.len(), stored.len(), "an event stored twice");
    assert_eq!(distinct, added.iter().copied().collect::<HashSet<_>>());
    wait_until(
        Duration::from_secs(10),
        "the broker's confirmations",
        || async {
            rig.sim.counters().secure_endpoint.tenants["acme"].stream_published_distinct as usize
                == total
        },
    )
    .await;
    let c = rig.sim.counters().secure_endpoint.tenants["acme"].clone();
    assert_eq!(
        c.served_distinct, 0,
        "every event came by push, none by a poll"
    );
    assert!(
        proxy.accepted() >= 5,
        "the consumer reconnected after each of the 4 cuts: {} connections",
        proxy.accepted()
    );

    stop.cancel();
    task.await.unwrap();
    rig.sim.shutdown().await;
}
