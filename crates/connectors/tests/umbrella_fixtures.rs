//! The Umbrella mapping over answers recorded by other projects (see
//! `shared/fixtures/SOURCES.md`): every file parses, every activity record maps, the derived
//! key behaves as documented, and the findings are pinned in snapshots a reviewer can read.

use serde_json::value::RawValue;
use socbridge_connectors::umbrella::{
    canonical_key, map_page, map_record, parse_activity_page, parse_token, vendor_key,
};
use socbridge_model::{Severity, correlation_key};
use std::collections::HashSet;
use std::path::PathBuf;

/// The org the records are read as fetched for.
const ORG: &str = "2001234";

fn fixtures() -> PathBuf {
    std::env::var_os("SOCBRIDGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
        })
        .join("umbrella")
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()))
}

/// Every file under `umbrella/`, relative.
fn all_files() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![fixtures()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path
                    .strip_prefix(fixtures())
                    .expect("under fixtures")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Activity answers (records with a time), as opposed to the token answer and the
/// destination/file summaries, which are other reports.
fn is_activity(rel: &str) -> bool {
    rel.contains("activity") || rel.contains("page_")
}

fn summary(records: &[Box<RawValue>]) -> String {
    let (findings, quarantined) = map_page(ORG, records);
    let mut out = String::new();
    for f in &findings {
        let obs: Vec<String> = f
            .observables
            .iter()
            .map(|o| format!("{}={}", o.kind, o.value))
            .collect();
        out.push_str(&format!(
            "{} | {} | {} | {} | {} | {} | {}\n",
            f.observed_at.to_rfc3339(),
            f.vendor_key,
            f.severity,
            f.title,
            f.event_type,
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
fn every_fixture_file_parses() {
    let files = all_files();
    assert!(files.len() >= 7, "fixtures found: {files:?}");
    for rel in &files {
        let body = read(rel);
        if rel.ends_with("access_token_data.json") {
            let token = parse_token(&body).expect("token answer");
            assert_eq!(token.expires_in.as_secs(), 3600);
            continue;
        }
        let records =
            parse_activity_page(&body).unwrap_or_else(|e| panic!("{rel}: does not parse: {e}"));
        assert!(!records.is_empty(), "{rel}: has records");
        let (findings, quarantined) = map_page(ORG, &records);
        assert_eq!(
            findings.len() + quarantined.len(),
            records.len(),
            "{rel}: every record is either a finding or quarantined"
        );
        if is_activity(rel) {
            assert!(
                quarantined.is_empty(),
                "{rel}: real activity must all map, got {:?}",
                quarantined.iter().map(|q| &q.reason).collect::<Vec<_>>()
            );
            for f in &findings {
                let s = f.subject.as_ref().expect("an identity");
                assert_eq!(s.kind, "identity");
                assert_eq!(s.id, format!("{ORG}:589064228"));
                assert_eq!(s.label.as_deref(), Some("DESKTOP-IIQVPJ7"));
                assert_eq!(
                    correlation_key(f).0,
                    format!("umbrella:identity:{ORG}:589064228")
                );
                assert!(
                    records.iter().any(|r| r.get() == f.raw),
                    "raw kept verbatim"
                );
            }
            let keys: HashSet<&str> = findings.iter().map(|f| f.vendor_key.as_str()).collect();
            let raws: HashSet<&str> = records.iter().map(|r| r.get()).collect();
            assert_eq!(
                keys.len(),
                raws.len(),
                "{rel}: distinct records get distinct keys"
            );
        } else {
            // Destination and file summaries are not activity: they carry no time.
            assert!(findings.is_empty(), "{rel}: summaries are not findings");
            for q in &quarantined {
                assert!(q.reason.starts_with("Umbrella: "), "{}", q.reason);
                assert!(q.reason.contains("`timestamp`"), "{}", q.reason);
            }
        }
        let name = rel
            .rsplit('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".json");
        insta::assert_snapshot!(name, summary(&records));
    }
}

#[test]
fn the_paged_answers_together_hold_ten_distinct_records() {
    let mut keys = HashSet::new();
    for page in [
        "xsoar/page_1_paze_size_5.json",
        "xsoar/page_2_paze_size_5.json",
    ] {
        for r in parse_activity_page(&read(page)).expect("page") {
            keys.insert(vendor_key(ORG, r.get()).expect("key"));
        }
    }
    // Page 1 holds an A and an AAAA lookup of the same name in the same second: two events.
    assert_eq!(keys.len(), 10);
}

const BLOCKED: &str = r#"{"type":"dns","domain":"c2.evil.example","externalip":"198.51.100.7","internalip":"10.0.0.5","timestamp":1662978435000,"date":"2022-09-12","time":"10:27:15","querytype":"A","returncode":3,"verdict":"blocked","categories":[{"id":67,"type":"security","label":"Malware","integration":false,"deprecated":false},{"id":65,"type":"security","label":"Command and Control","integration":false,"deprecated":false}],"policycategories":[],"threats":[],"identities":[{"id":11,"type":{"id":7,"type":"directory_user","label":"AD Users"},"label":"bob@acme.example"},{"id":589064228,"type":{"id":9,"type":"roaming","label":"Roaming Computers"},"label":"DESKTOP-IIQVPJ7","deleted":false}],"allapplications":[],"allowedapplications":[],"blockedapplications":[]}"#;

/// The same record with its members (and its arrays) in another order, and reformatted.
fn reordered(raw: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(raw).expect("json");
    let obj = v.as_object().expect("object");
    let mut members: Vec<(&String, &serde_json::Value)> = obj.iter().collect();
    members.reverse();
    let mut out = String::from("{\n");
    for (i, (k, val)) in members.iter().enumerate() {
        let mut val = (*val).clone();
        if let Some(arr) = val.as_array_mut() {
            arr.reverse();
        }
        out.push_str(&format!(
            "  {}: {}{}\n",
            serde_json::to_string(k).expect("key"),
            serde_json::to_string_pretty(&val).expect("value"),
            if i + 1 < members.len() { "," } else { "" }
        ));
    }
    out.push('}');
    out
}

#[test]
fn the_derived_key_is_stable_and_discriminating() {
    let key = vendor_key(ORG, BLOCKED).expect("key");
    assert_eq!(key.len(), 64);
    assert!(
        key.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    // Read twice, and read with its JSON members in another order: the same key.
    assert_eq!(vendor_key(ORG, BLOCKED).expect("key"), key);
    let other_order = reordered(BLOCKED);
    assert_ne!(other_order, BLOCKED);
    assert_eq!(vendor_key(ORG, &other_order).expect("key"), key);
    assert_eq!(
        map_record(ORG, &other_order).expect("maps").vendor_key,
        map_record(ORG, BLOCKED).expect("maps").vendor_key
    );
    // The canonical form is the documented one.
    assert_eq!(
        canonical_key(ORG, BLOCKED).expect("canonical"),
        r#"["umbrella-activity/v1","2001234","dns","1662978435000","11,589064228","c2.evil.example","65,67","A","blocked","","","","","",""]"#
    );

    // A change of any key member gives another key.
    let variants = [
        ("org", ORG.to_string(), "2009999"),
        (
            "timestamp",
            BLOCKED.replace("1662978435000", "1662978435001"),
            ORG,
        ),
        (
            "identity",
            BLOCKED.replace(r#""id":589064228"#, r#""id":589064229"#),
            ORG,
        ),
        (
            "domain",
            BLOCKED.replace("c2.evil.example", "c3.evil.example"),
            ORG,
        ),
        (
            "category",
            BLOCKED.replace(r#""id":67,"#, r#""id":68,"#),
            ORG,
        ),
        (
            "querytype",
            BLOCKED.replace(r#""querytype":"A""#, r#""querytype":"AAAA""#),
            ORG,
        ),
        (
            "type",
            BLOCKED.replace(r#""type":"dns""#, r#""type":"proxy""#),
            ORG,
        ),
    ];
    let mut seen = HashSet::from([key.clone()]);
    for (what, raw, org) in variants {
        let raw = if what == "org" {
            BLOCKED.to_string()
        } else {
            raw
        };
        let k = vendor_key(org, &raw).expect("key");
        assert!(seen.insert(k), "changing the {what} must change the key");
    }
    // Identities keyed by label when they have no id.
    let no_ids = BLOCKED
        .replace(r#""id":11,"#, "")
        .replace(r#""id":589064228,"#, "");
    let a = vendor_key(ORG, &no_ids).expect("key");
    let b = vendor_key(ORG, &no_ids.replace("DESKTOP-IIQVPJ7", "LAPTOP-2")).expect("key");
    assert_ne!(a, b);
    // Firewall records are told apart by their addresses and ports.
    let fw = r#"{"type":"firewall","timestamp":1662978435123,"verdict":"blocked","sourceip":"10.0.0.12","sourceport":50123,"destinationip":"192.0.2.66","destinationport":443,"protocol":{"id":6,"label":"TCP"},"categories":[{"id":67}],"identities":[{"id":77,"type":{"type":"network"},"label":"HQ"}]}"#;
    let fw_keys: HashSet<String> = [
        fw.to_string(),
        fw.replace("192.0.2.66", "192.0.2.67"),
        fw.replace("50123", "50124"),
        fw.replace(":443,", ":8443,"),
        fw.replace("10.0.0.12", "10.0.0.13"),
        fw.replace(r#""id":6,"#, r#""id":17,"#),
    ]
    .iter()
    .map(|r| vendor_key(ORG, r).expect("key"))
    .collect();
    assert_eq!(fw_keys.len(), 6);
    // Members outside the key (returncode, threats, applications) do not change it.
    assert_eq!(
        vendor_key(
            ORG,
            &BLOCKED.replace(r#""returncode":3"#, r#""returncode":0"#)
        )
        .expect("key"),
        key
    );
}

#[test]
fn blocked_command_and_control_reads_as_such() {
    let f = map_record(ORG, BLOCKED).expect("maps");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.title, "Blocked Command and Control: c2.evil.example");
    assert_eq!(f.event_type, "Command and Control, Malware");
    let s = f.subject.as_ref().expect("subject");
    assert_eq!(
        s.id,
        format!("{ORG}:589064228"),
        "the computer, not the user"
    );
    insta::assert_snapshot!(
        "blocked_c2",
        summary(&[RawValue::from_string(BLOCKED.to_string()).expect("raw")])
    );
}

#[test]
fn proxy_firewall_and_broken_records() {
    let proxy = r#"{"type":"proxy","timestamp":1662978436000,"verdict":"blocked","url":"https://miner.example/pool.js","domain":"miner.example","internalip":"10.0.0.9","externalip":"203.0.113.4","sha256":"275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f","categories":[{"id":150,"type":"security","label":"Cryptomining"}],"identities":[{"id":5,"type":{"id":21,"type":"directory_computer","label":"AD Computers"},"label":"WS-042"}]}"#;
    let firewall = r#"{"type":"firewall","date":"2022-09-12","time":"11:00:00","verdict":"blocked","sourceip":"10.0.0.12","sourceport":50123,"destinationip":"192.0.2.66","destinationport":443,"protocol":{"id":6,"label":"TCP"},"categories":[{"id":67,"label":"Malware"}],"identities":[{"id":77,"type":{"id":1,"type":"network","label":"Networks"},"label":"HQ"}]}"#;
    let records: Vec<Box<RawValue>> = [
        proxy,
        r#"{"type":"dns","domain":"x.example"}"#,
        firewall,
        r#"["not","an","object"]"#,
        r#"{"timestamp":"yesterday"}"#,
    ]
    .iter()
    .map(|s| RawValue::from_string(s.to_string()).expect("json"))
    .collect();
    let (findings, quarantined) = map_page(ORG, &records);
    assert_eq!(findings.len(), 2);
    assert_eq!(quarantined.len(), 3);
    assert_eq!(findings[0].severity, Severity::Medium, "cryptomining");
    assert_eq!(findings[1].severity, Severity::Medium, "malware by id");
    assert_eq!(
        findings[1].observed_at.to_rfc3339_seconds(),
        "2022-09-12T11:00:00+00:00"
    );
    insta::assert_snapshot!("proxy_firewall_broken", summary(&records));
}
