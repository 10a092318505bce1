//! The OCSF documents validated against the OCSF 1.8.0 JSON Schemas (`shared/ocsf/`) for
//! findings mapped from every recorded fixture of every vendor (`shared/fixtures/`) and a
//! hand-written Symantec MSS answer, and for incidents holding them in every status.

use serde_json::{Value, value::RawValue};
use socbridge_connectors::{secure_endpoint, symantec_mss, umbrella};
use socbridge_model::{
    ActionView, Finding, FindingView, IncidentDetail, IncidentStatus, IncidentView, Observable,
    ObservableKind, Severity, SourceKind, TicketView, Timestamp,
};
use socbridge_ocsf::{detection_finding, detection_findings, incident_finding};
use std::path::PathBuf;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn fixtures() -> PathBuf {
    std::env::var_os("SOCBRIDGE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("fixtures"))
}

fn validator(file: &str) -> jsonschema::Validator {
    let path = shared().join("ocsf").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema {} unreadable: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

/// Panics with every validation error (path and message) of `doc`.
fn assert_valid(v: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not validate:\n{}\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(doc).unwrap_or_default()
    );
}

/// A finding as the store gives it back: raw parsed as JSON when it is JSON.
fn view(f: &Finding, id: i64, source: &str) -> FindingView {
    FindingView {
        id,
        source: source.to_string(),
        source_kind: f.source_kind,
        vendor_key: f.vendor_key.clone(),
        observed_at: f.observed_at,
        severity: f.severity,
        title: f.title.clone(),
        event_type: f.event_type.clone(),
        observables: f.observables.clone(),
        raw: serde_json::from_str(&f.raw).unwrap_or_else(|_| Value::String(f.raw.clone())),
    }
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()))
}

/// Elastic's pipeline logs: one `GET /v1/events` envelope per line, `data` holding events.
fn elastic_events(file: &str) -> Vec<Box<RawValue>> {
    #[derive(serde::Deserialize)]
    struct Line {
        data: Box<RawValue>,
    }
    let text = String::from_utf8(read(&format!("secure_endpoint/elastic/{file}"))).expect("utf-8");
    text.lines()
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

fn files_under(rel: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures().join(rel))
        .expect("fixture dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn secure_endpoint_findings() -> Vec<Finding> {
    let mut out = Vec::new();
    for file in files_under("secure_endpoint/elastic") {
        if file.contains("empty") {
            continue;
        }
        let (findings, quarantined) = secure_endpoint::map_page(&elastic_events(&file));
        assert!(quarantined.is_empty(), "{file}");
        out.extend(findings);
    }
    // XSOAR's recorded event list holds placeholders only: quarantined, no finding to export.
    let v: Value = serde_json::from_slice(&read("secure_endpoint/xsoar/event_list_response.json"))
        .expect("json");
    let events: Vec<Box<RawValue>> = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| RawValue::from_string(e.to_string()).expect("raw"))
        .collect();
    let (findings, _) = secure_endpoint::map_page(&events);
    out.extend(findings);
    out
}

fn umbrella_findings() -> Vec<Finding> {
    let mut out = Vec::new();
    for file in files_under("umbrella/xsoar") {
        if file.contains("access_token") {
            continue;
        }
        let records = umbrella::parse_activity_page(&read(&format!("umbrella/xsoar/{file}")))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let (findings, _) = umbrella::map_page("2001234", &records);
        out.extend(findings);
    }
    out
}

/// A hand-written IncidentGetList answer (as the connector's tests use): a full incident with
/// hosts, addresses and users, a sparse one, and one with only its number and time.
const SYMANTEC_LIST: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">
 <soap:Body>
  <IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/">
   <IncidentGetListResult>
    <SecurityIncidentList xmlns="">
     <SecurityIncidentSummary>
      <IncidentNumber>565656</IncidentNumber>
      <TimeCreated>2017-12-20T10:04:35.437</TimeCreated>
      <Severity>Critical</Severity>
      <Category>Scan</Category>
      <SourceIPString>198.51.100.7, 203.0.113.9</SourceIPString>
      <HostNameList><HostName>web01.acme.example</HostName></HostNameList>
      <UserList>alice,ACME\bob</UserList>
      <Classification>Scan for Web Servers</Classification>
      <UpdateTimestampGMT>2017-12-20T11:30:00.4355923+00:00</UpdateTimestampGMT>
     </SecurityIncidentSummary>
     <SecurityIncidentSummary>
      <IncidentNumber>565657</IncidentNumber>
      <TimeCreated>2017-12-20T10:04:35.4355923+00:00</TimeCreated>
      <Severity>Emergency</Severity>
      <Category>Malware</Category>
      <SourceIPString>10.1.2.3</SourceIPString>
      <HostNameList />
      <UserList />
      <Classification />
      <UpdateTimestampGMT />
     </SecurityIncidentSummary>
     <SecurityIncidentSummary>
      <IncidentNumber>1001</IncidentNumber>
      <TimeCreated>2021-03-02T09:45:00.0000000Z</TimeCreated>
      <Severity>Informational</Severity>
     </SecurityIncidentSummary>
    </SecurityIncidentList>
   </IncidentGetListResult>
  </IncidentGetListResponse>
 </soap:Body>
</soap:Envelope>"#;

fn symantec_findings() -> Vec<Finding> {
    let list = symantec_mss::parse_incident_get_list(SYMANTEC_LIST.as_bytes()).expect("parses");
    let (findings, quarantined) = symantec_mss::map_list(&list);
    assert!(quarantined.is_empty());
    findings
}

fn vendors() -> Vec<(&'static str, Vec<Finding>)> {
    vec![
        ("secure_endpoint", secure_endpoint_findings()),
        ("umbrella", umbrella_findings()),
        ("symantec_mss", symantec_findings()),
    ]
}

/// An incident holding `findings`, in `status`, with or without an assignee and a ticket.
fn incident(
    id: i64,
    status: IncidentStatus,
    findings: Vec<FindingView>,
    rich: bool,
) -> IncidentDetail {
    let first = findings
        .iter()
        .map(|f| f.observed_at)
        .min()
        .unwrap_or_default();
    let last = findings
        .iter()
        .map(|f| f.observed_at)
        .max()
        .unwrap_or_default();
    let mut observables: Vec<Observable> = findings
        .iter()
        .flat_map(|f| f.observables.iter().cloned())
        .collect();
    observables.sort();
    observables.dedup();
    let mut sources: Vec<SourceKind> = findings.iter().map(|f| f.source_kind).collect();
    sources.sort();
    sources.dedup();
    IncidentDetail {
        incident: IncidentView {
            id,
            tenant: "acme".into(),
            title: findings
                .first()
                .map_or("empty".to_string(), |f| f.title.clone()),
            severity: findings
                .iter()
                .map(|f| f.severity)
                .max()
                .unwrap_or(Severity::Informational),
            status,
            sources,
            created_at: first,
            updated_at: if status == IncidentStatus::New {
                first
            } else {
                last.saturating_add_micros(1_000_000)
            },
            first_seen: first,
            last_seen: last,
            finding_count: findings.len() as i64,
            observables,
            ticket: rich.then(|| TicketView {
                system: "servicenow".into(),
                number: format!("INC00{id}"),
                sys_id: "0123456789abcdef0123456789abcdef".into(),
                state: "2".into(),
                url: format!("https://snow.example/nav_to.do?uri=incident.do?sys_id={id}"),
            }),
            actions: if rich {
                vec![ActionView {
                    id: 1,
                    kind: "isolate".into(),
                    state: "applied".into(),
                    target: "guid-1".into(),
                    target_label: Some("host".into()),
                    group: None,
                    reason: None,
                    manual: false,
                    created_at: first,
                    updated_at: last,
                }]
            } else {
                Vec::new()
            },
            resolution: (!status.is_open()).then(|| "false positive".to_string()),
            assignee: rich.then(|| "alice".to_string()),
        },
        findings,
        timeline: Vec::new(),
    }
}

#[test]
fn every_vendor_finding_validates_as_a_detection_finding() {
    let v = validator("detection_finding-1.8.0.schema.json");
    let mut total = 0;
    for (vendor, findings) in vendors() {
        assert!(!findings.is_empty(), "{vendor}: fixtures give findings");
        for (n, f) in findings.iter().enumerate() {
            let fv = view(f, n as i64 + 1, vendor);
            // Alone (not in an incident) and inside one of each status.
            assert_valid(&v, &detection_finding(&fv, "acme", None), vendor);
            for status in IncidentStatus::ALL {
                let d = incident(7, status, vec![fv.clone()], n % 2 == 0);
                for doc in detection_findings(&d) {
                    assert!(doc["status_id"].as_i64().is_some());
                    assert_valid(&v, &doc, vendor);
                }
            }
            total += 1;
        }
        eprintln!("{vendor}: {} findings validated", findings.len());
    }
    assert!(total > 0);
}

#[test]
fn incidents_of_every_vendor_and_status_validate_as_incident_findings() {
    let v = validator("incident_finding-1.8.0.schema.json");
    let mut id = 0;
    for (vendor, findings) in vendors() {
        let views: Vec<FindingView> = findings
            .iter()
            .enumerate()
            .map(|(n, f)| view(f, n as i64 + 1, vendor))
            .collect();
        for status in IncidentStatus::ALL {
            for rich in [false, true] {
                id += 1;
                let d = incident(id, status, views.clone(), rich);
                let doc = incident_finding(&d);
                assert_valid(&v, &doc, vendor);
                assert_eq!(
                    doc["finding_info_list"].as_array().map(Vec::len),
                    Some(views.len())
                );
            }
        }
    }
}

#[test]
fn the_raw_payload_is_kept_and_ids_are_consistent() {
    let (_, findings) = vendors().remove(2);
    let f = &findings[0];
    let d = incident(42, IncidentStatus::OnHold, vec![view(f, 9, "mss")], true);
    let doc = &detection_findings(&d)[0];
    // Symantec's XML is a string in the store: raw_data is it, byte for byte.
    assert_eq!(doc["raw_data"].as_str(), Some(f.raw.as_str()));
    assert_eq!(doc["class_uid"], 2004);
    assert_eq!(doc["type_uid"], 200401);
    assert_eq!(doc["status_id"], 99);
    assert_eq!(doc["metadata"]["correlation_uid"], "incident:42");
    assert_eq!(doc["metadata"]["tenant_uid"], "acme");
    assert_eq!(doc["metadata"]["version"], "1.8.0");
    let inc = incident_finding(&d);
    assert_eq!(inc["class_uid"], 2005);
    assert_eq!(inc["type_uid"], 200502);
    assert_eq!(inc["status_id"], 3);
    assert_eq!(inc["assignee"]["name"], "alice");
    assert_eq!(inc["tickets"][0]["uid"], "INC0042");

    // A Secure Endpoint event is JSON: raw_data is its JSON text.
    let (_, se) = vendors().remove(0);
    let doc = detection_finding(&view(&se[0], 1, "amp"), "acme", None);
    let raw: Value = serde_json::from_str(doc["raw_data"].as_str().expect("string")).expect("json");
    assert_eq!(
        raw,
        serde_json::from_str::<Value>(&se[0].raw).expect("json")
    );
}

#[test]
fn a_dropped_required_attribute_fails_validation() {
    let vd = validator("detection_finding-1.8.0.schema.json");
    let vi = validator("incident_finding-1.8.0.schema.json");
    let f = &symantec_findings()[0];
    let fv = view(f, 1, "mss");
    let d = incident(1, IncidentStatus::New, vec![fv.clone()], false);
    for field in [
        "class_uid",
        "category_uid",
        "type_uid",
        "activity_id",
        "severity_id",
        "time",
        "metadata",
        "finding_info",
    ] {
        let mut doc = detection_finding(&fv, "acme", None);
        doc.as_object_mut().expect("object").remove(field);
        assert!(
            !vd.is_valid(&doc),
            "a finding without {field} must not validate"
        );
    }
    for field in ["status_id", "finding_info_list", "assignee_group"] {
        let mut doc = incident_finding(&d);
        doc.as_object_mut().expect("object").remove(field);
        assert!(
            !vi.is_valid(&doc),
            "an incident without {field} must not validate"
        );
    }
    let mut doc = detection_finding(&fv, "acme", None);
    doc["observables"][0]["type_id"] = Value::from(1000);
    assert!(
        !vd.is_valid(&doc),
        "an unknown observable type must not validate"
    );
}

#[test]
fn every_observable_kind_maps_to_a_valid_observable_and_evidence() {
    let v = validator("detection_finding-1.8.0.schema.json");
    let kinds = [
        (ObservableKind::Hostname, "host-1"),
        (ObservableKind::Ip, "192.0.2.1"),
        (ObservableKind::Mac, "00:11:22:33:44:55"),
        (ObservableKind::User, "ACME\\bob"),
        (ObservableKind::Sha256, "a".repeat(64).leak() as &str),
        (ObservableKind::Sha1, "b".repeat(40).leak() as &str),
        (ObservableKind::Md5, "c".repeat(32).leak() as &str),
        (ObservableKind::FilePath, "C:\\Windows\\evil.exe"),
        (ObservableKind::FileName, "evil.exe"),
        (ObservableKind::Url, "https://bad.example/x"),
        (ObservableKind::Domain, "bad.example"),
    ];
    let f = FindingView {
        id: 1,
        source: "amp".into(),
        source_kind: SourceKind::SecureEndpoint,
        vendor_key: "k".into(),
        observed_at: Timestamp::from_micros(1_700_000_000_000_000),
        severity: Severity::High,
        title: "t".into(),
        event_type: "e".into(),
        observables: kinds
            .iter()
            .map(|(k, val)| Observable::new(*k, *val))
            .collect(),
        raw: serde_json::json!({"x": 1}),
    };
    let doc = detection_finding(&f, "acme", None);
    assert_valid(&v, &doc, "every kind");
    assert_eq!(
        doc["evidences"][0]["file"]["hashes"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // Each kind alone, too: an evidence only when there is something to show.
    for (k, val) in kinds {
        let one = FindingView {
            observables: vec![Observable::new(k, val)],
            ..f.clone()
        };
        assert_valid(&v, &detection_finding(&one, "acme", None), k.as_str());
    }
}
