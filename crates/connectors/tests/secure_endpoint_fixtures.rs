//! The Secure Endpoint mapping over payloads recorded by other projects (see
//! `shared/fixtures/SOURCES.md`): every real event maps, placeholder records are quarantined
//! with a reason, and the result is pinned in snapshots a reviewer can read.

use serde_json::value::RawValue;
use socbridge_connectors::secure_endpoint::{map_event, map_page, parse_events_page};
use std::collections::HashSet;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    std::env::var_os("SOCBRIDGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
        .join("secure_endpoint")
}

fn read(rel: &str) -> String {
    let path = fixtures().join(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()))
}

/// Elastic's pipeline logs: one `GET /v1/events` envelope per line, `data` holding one event.
fn elastic_events(file: &str) -> Vec<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Line {
        data: Box<RawValue>,
    }
    read(&format!("elastic/{file}"))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .flat_map(|l| {
            let line: Line = serde_json::from_str(l).expect("envelope line");
            if line.data.get().starts_with('[') {
                serde_json::from_str::<Vec<Box<RawValue>>>(line.data.get()).expect("data array")
            } else {
                vec![line.data]
            }
        })
        .collect()
}

fn summary(events: &[Box<RawValue>]) -> String {
    let (findings, quarantined) = map_page(events);
    let mut out = String::new();
    for f in &findings {
        let obs: Vec<String> = f
            .observables
            .iter()
            .map(|o| format!("{}={}", o.kind, o.value))
            .collect();
        out.push_str(&format!(
            "{} | {} | {} | {} | {} | {}\n",
            f.observed_at.to_rfc3339(),
            f.vendor_key,
            f.severity,
            f.title,
            f.subject.as_ref().map_or("-".to_string(), |s| format!(
                "{}:{}:{}",
                s.kind,
                s.id,
                s.label.as_deref().unwrap_or("-")
            )),
            obs.join(" ")
        ));
    }
    for q in &quarantined {
        out.push_str(&format!("QUARANTINED | {}\n", q.reason));
    }
    out
}

#[test]
fn elastic_logs_map_every_event() {
    for file in [
        "test-cisco-amp1.log",
        "test-cisco-amp2.log",
        "test-cisco-amp8.log",
        "test-cisco-amp9.log",
    ] {
        let events = elastic_events(file);
        assert!(!events.is_empty(), "{file} has events");
        let (findings, quarantined) = map_page(&events);
        assert_eq!(
            findings.len() + quarantined.len(),
            events.len(),
            "{file}: every record is either a finding or quarantined"
        );
        assert!(
            quarantined.is_empty(),
            "{file}: real events must all map, got {:?}",
            quarantined.iter().map(|q| &q.reason).collect::<Vec<_>>()
        );
        let keys: HashSet<&str> = findings.iter().map(|f| f.vendor_key.as_str()).collect();
        let raws: HashSet<&str> = events.iter().map(|e| e.get()).collect();
        assert_eq!(
            keys.len(),
            raws.len(),
            "{file}: distinct records get distinct keys, identical ones the same"
        );
        insta::assert_snapshot!(file, summary(&events));
    }
}

#[test]
fn elastic_expected_agrees_on_the_essentials() {
    // What Elastic made of test-cisco-amp9.log: the same time, action, host and file hash.
    let expected: serde_json::Value =
        serde_json::from_str(&read("elastic-expected/test-cisco-amp9.log-expected.json"))
            .expect("expected json");
    let doc = &expected["expected"][0];
    let events = elastic_events("test-cisco-amp9.log");
    let f = map_event(events[0].get()).expect("maps");
    let at = socbridge_model::Timestamp::parse_rfc3339(doc["@timestamp"].as_str().expect("ts"))
        .expect("@timestamp parses");
    assert_eq!(f.observed_at.unix_seconds(), at.unix_seconds());
    assert_eq!(
        f.event_type,
        doc["event"]["action"].as_str().expect("action")
    );
    let sha = doc["file"]["hash"]["sha256"].as_str().expect("sha256");
    assert!(f.observables.iter().any(|o| o.value == sha));
    // Elastic's event.id went through a float; ours keeps the integer as sent.
    assert!(f.vendor_key.starts_with("6419204901661835000:"));
}

#[test]
fn empty_page_reads() {
    let page = parse_events_page(read("elastic/test-cisco-amp-empty.log").trim().as_bytes())
        .expect("empty page");
    assert_eq!(page.total, 0);
    assert!(!page.has_next);
    assert!(page.events.is_empty());
}

#[test]
fn xsoar_placeholders_are_quarantined_not_lost() {
    // XSOAR's test data replaces every value by a placeholder string: `"id": "data[0]_id"`.
    // None of it is an event socbridge can trust, and all of it must be kept.
    let text = read("xsoar/event_list_response.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let events: Vec<Box<RawValue>> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| RawValue::from_string(e.to_string()).expect("raw"))
        .collect();
    assert!(!events.is_empty());
    let (findings, quarantined) = map_page(&events);
    assert!(findings.is_empty());
    assert_eq!(quarantined.len(), events.len());
    for q in &quarantined {
        assert!(q.reason.starts_with("Secure Endpoint: "), "{}", q.reason);
        assert!(!q.raw.is_empty());
    }
    insta::assert_snapshot!(
        "xsoar_event_list",
        quarantined
            .iter()
            .map(|q| q.reason.clone())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
