//! What must hold when outside input reaches each of socbridge's parsers, whatever the bytes.
//!
//! One function per fuzz target, written once and used twice: by the cargo-fuzz targets under
//! `fuzz/fuzz_targets/` (libFuzzer feeds them arbitrary bytes) and by this crate's
//! `tests/corpus_replay.rs`, which feeds them every file under `fuzz/seeds/<target>/` and
//! `fuzz/regressions/<target>/` on stable Rust in `cargo test`.
//!
//! Each function calls the entry point production calls on that input and asserts with
//! `assert!`: a panic (a failed property, or one inside a parser) is what the fuzzer reports
//! as a crash. Refusing an input is fine; panicking, or accepting it into something that
//! breaks a promise (an empty finding key, a time that does not read back), is not.

use socbridge_connectors::http;
use socbridge_connectors::secure_endpoint;
use socbridge_connectors::servicenow::{self, JournalEntry, Ticket};
use socbridge_connectors::symantec_mss::{
    MssSeverity, WorkflowUpdate, map_incident, map_list, merge_workflow_update, parse_fault,
    parse_incident_get_list, parse_incident_query, parse_incident_workflow_query,
    parse_update_incident_workflow, summary_change_time,
};
use socbridge_connectors::umbrella;
use socbridge_engine::{Config, WebhookError, ticketing::webhook_sys_id};
use socbridge_model::{
    Finding, IncidentStatus, Quarantined, Severity, SourceKind, Timestamp, correlation_key,
    parse_since,
};
use std::collections::HashSet;
use std::path::Path;

/// A fuzz target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the folders
/// `fuzz/seeds/<name>/`, `fuzz/regressions/<name>/`) and its check.
pub struct Target {
    pub name: &'static str,
    pub check: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz.sh` documents them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "symantec_soap",
        check: symantec_soap,
    },
    Target {
        name: "secure_endpoint_events",
        check: secure_endpoint_events,
    },
    Target {
        name: "umbrella_activity",
        check: umbrella_activity,
    },
    Target {
        name: "servicenow_records",
        check: servicenow_records,
    },
    Target {
        name: "servicenow_webhook",
        check: servicenow_webhook,
    },
    Target {
        name: "config_toml",
        check: config_toml,
    },
    Target {
        name: "cli_time",
        check: cli_time,
    },
    Target {
        name: "cli_filter",
        check: cli_filter,
    },
];

/// The fixed "now" of the time checks, so a crash reproduces whenever it is replayed.
const NOW: Timestamp = Timestamp::from_micros(1_780_000_000_000_000);

/// What every finding of every vendor must be before it reaches the store: a key (the
/// store's uniqueness rests on it), its vendor, the vendor's bytes, a correlation key, and a
/// time that prints as RFC 3339 and reads back as the same instant (every API and CLI answer
/// prints it).
fn finding_holds(f: &Finding, kind: SourceKind) {
    assert_eq!(f.source_kind, kind);
    assert!(!f.vendor_key.is_empty(), "a finding without a key: {f:?}");
    assert!(!f.raw.is_empty(), "a finding without the vendor's record");
    assert!(!correlation_key(f).0.is_empty());
    assert_eq!(
        Timestamp::parse_rfc3339(&f.observed_at.to_rfc3339()),
        Ok(f.observed_at),
        "observed_at {} does not read back",
        f.observed_at.as_micros()
    );
    assert!(f.observables.iter().all(|o| !o.value.trim().is_empty()));
}

/// A page mapped: every record is a finding or quarantined with a reason, findings oldest
/// first.
fn page_holds(records: usize, findings: &[Finding], quarantined: &[Quarantined], kind: SourceKind) {
    assert_eq!(
        findings.len() + quarantined.len(),
        records,
        "a record was lost"
    );
    assert!(
        findings
            .windows(2)
            .all(|w| w[0].observed_at <= w[1].observed_at),
        "findings are not oldest first"
    );
    for f in findings {
        finding_holds(f, kind);
    }
    for q in quarantined {
        assert!(!q.reason.is_empty(), "quarantined without a reason");
    }
}

/// Symantec MSS: every SOAP answer parser (`IncidentGetList`, `IncidentWorkflowQuery`,
/// `IncidentQuery`, `UpdateIncidentWorkflow`, faults) and what parses through the mapping.
pub fn symantec_soap(data: &[u8]) {
    let list = parse_incident_get_list(data);
    let detail = parse_incident_workflow_query(data);
    if let Ok(list) = &list {
        let (findings, quarantined) = map_list(list);
        assert_eq!(findings.len(), list.incidents.len());
        assert_eq!(quarantined.len(), list.quarantined.len());
        for f in &findings {
            finding_holds(f, SourceKind::SymantecMss);
        }
        for s in &list.incidents {
            assert!(summary_change_time(s) >= s.time_created);
            if let Ok(Some(d)) = &detail {
                let f = map_incident(s, Some(d));
                assert_eq!(f.vendor_key, s.incident_number);
            }
        }
    }
    if let Ok(Some(d)) = &detail {
        let asked = WorkflowUpdate {
            number: d.incident_number.clone(),
            ..WorkflowUpdate::default()
        };
        let _ = merge_workflow_update(&asked, d);
    }
    let _ = parse_incident_query(data);
    let _ = parse_update_incident_workflow(data);
    let _ = parse_fault(data);
}

/// Cisco Secure Endpoint: a `GET /v1/events` page (`parse_events_page`, then `map_page` as
/// the poll does), one event alone (`map_event`), and an error body (`http::error_detail`).
pub fn secure_endpoint_events(data: &[u8]) {
    if let Ok(page) = secure_endpoint::parse_events_page(data) {
        let (findings, quarantined) = secure_endpoint::map_page(&page.events);
        page_holds(
            page.events.len(),
            &findings,
            &quarantined,
            SourceKind::SecureEndpoint,
        );
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(f) = secure_endpoint::map_event(text)
    {
        finding_holds(&f, SourceKind::SecureEndpoint);
        assert_eq!(f.raw, text, "the vendor's bytes are kept verbatim");
    }
    let _ = http::error_detail(data);
}

/// The org every Umbrella record is mapped for.
const ORG: &str = "2001";

/// Cisco Umbrella: an activity answer (`parse_activity_page`, then `map_page` as the poll
/// does, each record's key as `vendor_key` documents it), a token answer (`parse_token`) and
/// an error body (`umbrella::error_detail`).
pub fn umbrella_activity(data: &[u8]) {
    if let Ok(records) = umbrella::parse_activity_page(data) {
        let (findings, quarantined) = umbrella::map_page(ORG, &records);
        page_holds(records.len(), &findings, &quarantined, SourceKind::Umbrella);
        for raw in &records {
            match (
                umbrella::map_record(ORG, raw.get()),
                umbrella::vendor_key(ORG, raw.get()),
            ) {
                (Ok(f), Ok(key)) => {
                    assert_eq!(f.vendor_key, key, "the finding's key is the documented key");
                    assert_eq!(key.len(), 64, "a SHA-256 in hex");
                }
                (Err(_), Err(_)) => {}
                (f, key) => panic!("mapping and key disagree: {f:?} / {key:?}"),
            }
        }
    }
    if let Ok(token) = umbrella::parse_token(data) {
        use secrecy::ExposeSecret as _;
        assert!(!token.access_token.expose_secret().trim().is_empty());
    }
    let _ = umbrella::error_detail(data);
}

/// ServiceNow: Table API answers as the client reads them (one ticket, a page of tickets, a
/// page of journal entries), their `YYYY-MM-DD HH:MM:SS` times, and an error body.
pub fn servicenow_records(data: &[u8]) {
    let time_holds = |text: &str| {
        if let Some(t) = servicenow::parse_time(text) {
            assert_eq!(
                servicenow::parse_time(&servicenow::format_time(t)),
                Some(t),
                "{text:?} does not read back"
            );
        }
    };
    if let Ok(t) = servicenow::decode::<Ticket>(data) {
        let _ = t.updated_on();
        time_holds(t.sys_updated_on.as_str());
    }
    if let Ok(page) = servicenow::decode::<Vec<Ticket>>(data) {
        for t in &page {
            time_holds(t.sys_updated_on.as_str());
        }
    }
    if let Ok(page) = servicenow::decode::<Vec<JournalEntry>>(data) {
        for e in &page {
            time_holds(e.sys_created_on.as_str());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        time_holds(text);
    }
    let _ = http::error_detail(data);
}

/// ServiceNow's push to `POST /hooks/servicenow`: the body names a ticket by `sys_id`, or is
/// refused as a bad body (400), never anything else.
pub fn servicenow_webhook(data: &[u8]) {
    match webhook_sys_id(data) {
        Ok(sys_id) => {
            assert!(!sys_id.trim().is_empty());
            let again = serde_json::json!({ "sys_id": sys_id }).to_string();
            assert_eq!(
                webhook_sys_id(again.as_bytes()).ok().as_deref(),
                Some(sys_id.as_str())
            );
        }
        Err(e) => {
            assert!(matches!(e, WebhookError::BadBody(_)), "{e}");
            assert!(!e.to_string().is_empty());
        }
    }
}

/// The config file (`Config::parse`): accepted, with tenants and sources unique as promised,
/// or refused with a message.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("/nonexistent/socbridge.toml")) {
        Ok(config) => {
            let mut tenants = HashSet::new();
            for t in &config.tenants {
                assert!(tenants.insert(t.name.to_string()), "tenant listed twice");
                let mut sources = HashSet::new();
                for s in &t.sources {
                    assert!(sources.insert(s.name.to_string()), "source listed twice");
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// `--since` of the CLI (and `since=` of the API): a duration back from now or an RFC 3339
/// time. Accepted: at or before now, or the very time given, which prints and reads back.
/// Refused: the message names the input.
pub fn cli_time(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_since(text, NOW) {
        Ok(t) => {
            let as_time = Timestamp::parse_rfc3339(text);
            assert!(t <= NOW || as_time == Ok(t), "{text:?} gave {t:?}");
            if as_time == Ok(t) {
                assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Ok(t));
            }
        }
        Err(e) => assert!(e.to_string().contains(text), "{e}"),
    }
}

/// The comma lists of `incidents list --severity/--status` (clap splits on `,`, blank items
/// are skipped) and `vendor symantec-mss list --severity`: each item is a known value, which
/// prints and parses back to itself, or is refused naming the item.
pub fn cli_filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for item in text.split(',').filter(|s| !s.trim().is_empty()) {
        match item.parse::<Severity>() {
            Ok(s) => assert_eq!(s.to_string().parse::<Severity>(), Ok(s)),
            Err(e) => assert!(e.to_string().contains(item), "{e}"),
        }
        match item.parse::<IncidentStatus>() {
            Ok(s) => assert_eq!(s.to_string().parse::<IncidentStatus>(), Ok(s)),
            Err(e) => assert!(e.to_string().contains(item), "{e}"),
        }
        if let Some(s) = MssSeverity::parse(item) {
            assert_eq!(MssSeverity::parse(s.as_str()), Some(s));
        }
    }
}
