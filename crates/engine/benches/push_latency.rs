//! Signal-to-ticket latency with push on (Secure Endpoint Event Streams on the local RabbitMQ,
//! 127.0.0.1:5672): one event at a time is added at the emulator, and the time from the
//! event's own timestamp (the emulator's, carried in the finding key) to the ticket's
//! creation at the ServiceNow emulator (its own clock) is measured; p50, p95 and p99 are
//! printed (target p99 < 2 s). Each incident is resolved before the next event, so every
//! event opens an incident of its own. The engine runs with production timings (1 s tick).
//! Run with `cargo bench -p socbridge-engine --bench push_latency`
//! (`SOCBRIDGE_BENCH_SAMPLES`, default 60).

use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_model::{IncidentFilter, IncidentStatus, IncidentUpdate};
use socbridge_secrets::MasterKey;
use socbridge_sim::{AddEvents, ConfigOptions, SimConfig};
use socbridge_store::{Store, correlation_id};
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

const THREAT_DETECTED: u64 = 1090519054;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The event time in a Secure Endpoint finding key (`{id}:{secs}.{nanos}:...`), as µs.
fn key_time_us(key: &str) -> i64 {
    let stamp = key.split(':').nth(1).expect("a finding key has a time");
    let (secs, nanos) = stamp.split_once('.').expect("seconds.nanoseconds");
    secs.parse::<i64>().expect("seconds") * 1_000_000 + nanos.parse::<i64>().expect("nanos") / 1000
}

fn us_of(t: SystemTime) -> i64 {
    i64::try_from(
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("fits")
}

async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let samples: usize = std::env::var("SOCBRIDGE_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 60 });
    let sim = socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tenants: 1,
        seed: 11,
        initial_events_per_tenant: 0,
        ..SimConfig::default()
    })
    .await
    .expect("emulator starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &cfg,
        &ConfigOptions {
            servicenow_section: true,
            ..Default::default()
        },
    )
    .expect("config");
    let text = std::fs::read_to_string(&cfg).expect("config reads");
    std::fs::write(
        &cfg,
        text.replace(
            "kind = \"secure_endpoint\"\n",
            "kind = \"secure_endpoint\"\npush = true\npoll_interval = \"1h\"\n",
        ),
    )
    .expect("config written");
    let config = Config::load(&cfg).expect("config loads");
    let store = Store::open_sqlite(&dir.path().join("socbridge.db"))
        .await
        .expect("store");
    let engine = Engine::new(
        store.clone(),
        MasterKey::generate(),
        EngineOptions::default(),
    );
    engine.apply_config(&config).await.expect("config applied");
    let stop = CancellationToken::new();
    let serve = tokio::spawn({
        let (e, s) = (engine.clone(), stop.clone());
        async move { e.run(s).await.expect("the engine runs") }
    });
    wait_for(Duration::from_secs(30), "the stream", || async {
        !sim.event_streams("acme").is_empty()
    })
    .await;

    let mut latencies_ms = Vec::with_capacity(samples);
    let mut seen: BTreeMap<String, SystemTime> = BTreeMap::new();
    for _ in 0..samples {
        let ids = sim.add_events(AddEvents {
            tenant: "acme".into(),
            count: 1,
            malformed: false,
            same_second: false,
            event_type_id: Some(THREAT_DETECTED),
        });
        let id = ids[0].to_string();
        wait_for(Duration::from_secs(30), "the ticket", || async {
            sim.servicenow_ticket_times().len() > seen.len()
        })
        .await;
        let times = sim.servicenow_ticket_times();
        let (cid, created) = times
            .iter()
            .find(|(c, _)| !seen.contains_key(*c))
            .map(|(c, t)| (c.clone(), *t))
            .expect("a new ticket");
        seen.insert(cid.clone(), created);
        let key = store
            .finding_keys("acme", "secure-endpoint")
            .await
            .expect("keys")
            .into_iter()
            .find(|k| k.starts_with(&format!("{id}:")))
            .expect("the event is stored");
        latencies_ms.push((us_of(created) - key_time_us(&key)) as f64 / 1000.0);
        // Resolve it, so that the next event on the same computer opens a new incident.
        let incident = store
            .list_incidents(&IncidentFilter::default())
            .await
            .expect("incidents")
            .into_iter()
            .find(|i| correlation_id(&i.tenant, i.id) == cid)
            .expect("the ticket's incident");
        store
            .update_incident(
                incident.id,
                None,
                &IncidentUpdate {
                    status: Some(IncidentStatus::Resolved),
                    resolution: Some("benchmark".into()),
                    assignee: None,
                    comment: None,
                    actor: "bench".into(),
                },
            )
            .await
            .expect("resolved");
    }
    stop.cancel();
    serve.await.expect("the engine stops");
    sim.shutdown().await;

    latencies_ms.sort_by(f64::total_cmp);
    println!(
        "push signal-to-ticket latency over {} events (engine tick 1 s): p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms (target p99 < 2000 ms)",
        latencies_ms.len(),
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 95.0),
        percentile(&latencies_ms, 99.0),
        latencies_ms.last().copied().unwrap_or(f64::NAN),
    );
}
