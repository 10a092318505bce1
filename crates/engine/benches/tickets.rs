//! Ticket throughput and latency against the ServiceNow emulator: polls N tenants' Secure
//! Endpoint events into incidents, then drains the outbox and prints tickets per second and
//! the incident-opened -> ticket-linked latency percentiles. Run with
//! `cargo bench -p socbridge-engine --bench tickets` (`SOCBRIDGE_BENCH_TENANTS`, default 64).

use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_model::IncidentFilter;
use socbridge_secrets::MasterKey;
use socbridge_sim::{ConfigOptions, SimConfig};
use socbridge_store::Store;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let tenants: usize = std::env::var("SOCBRIDGE_BENCH_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 64 });
    let sim = socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        tenants,
        seed: 5,
        rate_per_minute: 0.0,
        initial_events_per_tenant: 60,
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
    let config = Config::load(&cfg).expect("config loads");
    let store = Store::open_sqlite(&dir.path().join("socbridge.db"))
        .await
        .expect("store");
    let opts = EngineOptions {
        http: socbridge_connectors::http::HttpOptions::for_tests(),
        ..EngineOptions::default()
    };
    let engine = Engine::new(store.clone(), MasterKey::generate(), opts);
    engine.apply_config(&config).await.expect("config applied");
    engine.poll_until_idle(100).await.expect("polls");

    let started = Instant::now();
    let left = engine
        .drain_outbox(Duration::from_secs(600))
        .await
        .expect("drain");
    let elapsed = started.elapsed();
    assert_eq!(left, 0, "every ticket created");

    let incidents = store
        .list_incidents(&IncidentFilter {
            limit: Some(1_000_000),
            ..IncidentFilter::default()
        })
        .await
        .expect("incidents");
    let mut latencies = Vec::new();
    for i in &incidents {
        let d = store
            .get_incident(i.id, None)
            .await
            .expect("incident")
            .expect("exists");
        if let Some(linked) = d.timeline.iter().find(|e| e.kind == "ticket_linked") {
            let ms = (linked.at.as_micros() - i.created_at.as_micros()) as f64 / 1000.0;
            latencies.push(ms);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let tickets = sim.counters().servicenow.tickets_by_correlation_id.len();
    println!(
        "tickets: {tickets} for {} incidents of {tenants} tenants in {:.2} s = {:.0} tickets/s",
        incidents.len(),
        elapsed.as_secs_f64(),
        tickets as f64 / elapsed.as_secs_f64()
    );
    println!(
        "incident opened -> ticket linked (ms, the whole backlog queued at once): p50 {:.0}  p95 {:.0}  p99 {:.0}",
        percentile(&latencies, 50.0),
        percentile(&latencies, 95.0),
        percentile(&latencies, 99.0)
    );
    sim.shutdown().await;
}
