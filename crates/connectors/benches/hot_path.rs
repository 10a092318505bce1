//! The hot paths without I/O: parse a page answer, map every record to a finding (Secure
//! Endpoint events, Symantec MSS incidents, Umbrella activity). Prints records per second; run with
//! `cargo bench -p socbridge-connectors`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use socbridge_connectors::secure_endpoint::{map_page, parse_events_page};
use socbridge_connectors::symantec_mss::{map_list, parse_incident_get_list, summary_change_time};
use socbridge_connectors::umbrella::{map_page as umbrella_map_page, parse_activity_page};
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

/// A 500-incident `IncidentGetList` answer (SOAP 1.2), every summary with all its children,
/// both time formats alternating.
fn symantec_list_body() -> Vec<u8> {
    let mut body = String::from(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soap:Body><IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult><SecurityIncidentList xmlns="">"#,
    );
    for i in 0..500u32 {
        let created = if i % 2 == 0 {
            format!(
                "2017-12-20T10:{:02}:{:02}.4355923+00:00",
                i / 60 % 60,
                i % 60
            )
        } else {
            format!("2017-12-20T10:{:02}:{:02}.437", i / 60 % 60, i % 60)
        };
        let severity = ["Emergency", "Critical", "Warning", "Informational"][i as usize % 4];
        body.push_str(&format!(
            "<SecurityIncidentSummary><IncidentNumber>{n}</IncidentNumber><TimeCreated>{created}</TimeCreated>\
<Severity>{severity}</Severity><Category>Malicious Activity</Category><CountryOfOrigin>Germany</CountryOfOrigin>\
<DaysSeenGlobally>3</DaysSeenGlobally><SourceIPString>198.51.100.{a}, 203.0.113.{b}</SourceIPString><Correlation />\
<HostNameList><HostName>web{a}.acme.example</HostName></HostNameList><IsInternalExternal>External</IsInternalExternal>\
<GlobalLookbackDays>30</GlobalLookbackDays><LatestKeyEvent>2017-12-20T12:00:00.0000000+00:00</LatestKeyEvent>\
<CustomerSeverity /><CountryCode>DE</CountryCode><FirstSeenInLast30Days>false</FirstSeenInLast30Days>\
<DaysSeenInLast30Days>1</DaysSeenInLast30Days><DestOrganizationName>Acme Corp &amp; Sons</DestOrganizationName>\
<SourceOrganizationName>Hosting Ltd</SourceOrganizationName><FirstSeenGlobally>2017-12-18T00:00:00</FirstSeenGlobally>\
<CountryName>Germany</CountryName><UserList>alice,bob</UserList><Classification>Scan for Web Servers</Classification>\
<UpdateTimestampGMT>2017-12-20T11:30:00.4355923+00:00</UpdateTimestampGMT><PrevalenceGlobally>Low</PrevalenceGlobally>\
</SecurityIncidentSummary>",
            n = 565_000 + i,
            a = i % 250,
            b = (i * 7) % 250,
        ));
    }
    body.push_str("</SecurityIncidentList></IncidentGetListResult></IncidentGetListResponse></soap:Body></soap:Envelope>");
    body.into_bytes()
}

fn symantec_mss(c: &mut Criterion) {
    let body = symantec_list_body();
    let mut g = c.benchmark_group("symantec_mss");
    g.throughput(Throughput::Elements(500));
    g.bench_function("parse_map_correlate_list_500", |b| {
        b.iter(|| {
            let list = parse_incident_get_list(black_box(&body)).expect("list");
            let cursor = list.incidents.iter().map(summary_change_time).max();
            let (findings, _) = map_list(&list);
            for f in &findings {
                black_box(correlation_key(f));
            }
            black_box(cursor);
            findings.len()
        })
    });
    g.finish();
}

/// A 5,000-record activity answer (the practical maximum of `limit`): the recorded XSOAR
/// pages repeated with distinct timestamps, every fourth record a blocked Command and Control
/// lookup.
fn umbrella_page_body() -> Vec<u8> {
    let path = std::env::var_os("SOCBRIDGE_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
        .join("umbrella/xsoar/page_1_paze_size_5.json");
    let text = std::fs::read_to_string(&path).expect("fixture page_1_paze_size_5.json");
    let page: serde_json::Value = serde_json::from_str(&text).expect("json");
    let base: Vec<serde_json::Value> = page["data"].as_array().expect("data").clone();
    let records: Vec<serde_json::Value> = (0..5000u64)
        .map(|i| {
            let mut r = base[i as usize % base.len()].clone();
            r["timestamp"] = serde_json::json!(1_662_749_721_000u64 + i * 250);
            if i % 4 == 0 {
                r["verdict"] = serde_json::json!("blocked");
                r["categories"] = serde_json::json!([{"id": 65, "type": "security",
                    "label": "Command and Control", "integration": false, "deprecated": false}]);
            }
            r
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"meta": {}, "data": records})).expect("serialise")
}

fn umbrella(c: &mut Criterion) {
    let body = umbrella_page_body();
    let mut g = c.benchmark_group("umbrella");
    g.throughput(Throughput::Elements(5000));
    g.bench_function("parse_map_correlate_page_5000", |b| {
        b.iter(|| {
            let records = parse_activity_page(black_box(&body)).expect("page");
            let (findings, _) = umbrella_map_page("2001234", &records);
            for f in &findings {
                black_box(correlation_key(f));
            }
            findings.len()
        })
    });
    g.finish();
}

criterion_group!(benches, hot_path, symantec_mss, umbrella);
criterion_main!(benches);
