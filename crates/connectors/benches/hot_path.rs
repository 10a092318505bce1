//! The Secure Endpoint hot path without I/O: parse a page answer, map every event to a
//! finding. Prints events per second; run with `cargo bench -p socbridge-connectors`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use socbridge_connectors::secure_endpoint::{map_page, parse_events_page};
use socbridge_model::correlation_key;
use std::hint::black_box;

/// A realistic 500-event page: the events of Elastic's recorded logs, repeated with distinct
/// ids, in the vendor's envelope.
fn page_body() -> Vec<u8> {
    let dir = std::env::var_os("SOCBRIDGE_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
        .join("secure_endpoint/elastic/test-cisco-amp1.log");
    let text = std::fs::read_to_string(&dir).expect("fixture test-cisco-amp1.log");
    let mut events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["data"].clone())
        .collect();
    let base = events.clone();
    let mut n = 0u64;
    while events.len() < 500 {
        let mut e = base[events.len() % base.len()].clone();
        n += 1;
        e["id"] = serde_json::json!(6_411_425_813_945_647_000u64 + n);
        events.push(e);
    }
    events.truncate(500);
    serde_json::to_vec(&serde_json::json!({
        "version": "v1.2.0",
        "metadata": {"links": {"self": "x"}, "results": {"total": 500, "current_item_count": 500, "index": 0, "items_per_page": 500}},
        "data": events,
    }))
    .expect("serialise")
}

fn hot_path(c: &mut Criterion) {
    let body = page_body();
    let mut g = c.benchmark_group("secure_endpoint");
    g.throughput(Throughput::Elements(500));
    g.bench_function("parse_map_correlate_page_500", |b| {
        b.iter(|| {
            let page = parse_events_page(black_box(&body)).expect("page");
            let (findings, _) = map_page(&page.events);
            for f in &findings {
                black_box(correlation_key(f));
            }
            findings.len()
        })
    });
    g.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
