//! socbridge's findings and incidents in the Open Cybersecurity Schema Framework, version 1.8.0:
//! a finding is a Detection Finding (class 2004), an incident an Incident Finding (class 2005),
//! both in the Findings category (2).
//!
//! The mapping is a pure function of the model's views (no I/O, no clock), so the export, the
//! API or a test give the same document for the same incident. Every object it writes is one
//! the OCSF 1.8.0 schemas define, with their required attributes and enum ids; what OCSF has
//! no attribute for goes to `unmapped.socbridge`.
//!
//! Where things go:
//! - the vendor's payload, as received, is the Detection Finding's `raw_data` (a string: the
//!   JSON text of a Secure Endpoint event or an Umbrella record, the XML of a Symantec MSS
//!   incident);
//! - `metadata.uid` is socbridge's id of the finding or incident, `metadata.tenant_uid` the
//!   tenant's name, `metadata.correlation_uid` the incident id (`incident:<id>`) on both the
//!   incident and its findings, `metadata.original_event_uid` the finding's vendor key;
//! - `finding_info.product` names the vendor product that raised the signal, `metadata.product`
//!   socbridge, which wrote the document.

use serde_json::{Map, Value, json};
use socbridge_model::{
    FindingView, IncidentDetail, IncidentId, IncidentStatus, IncidentView, Observable,
    ObservableKind, Severity, SourceKind, Timestamp,
};

/// The OCSF version every document declares (`metadata.version`).
pub const OCSF_VERSION: &str = "1.8.0";
/// Detection Finding.
pub const DETECTION_FINDING_CLASS: i64 = 2004;
/// Incident Finding.
pub const INCIDENT_FINDING_CLASS: i64 = 2005;
/// The Findings category.
pub const FINDINGS_CATEGORY: i64 = 2;

/// The activities of both finding classes (`activity_id`); `type_uid` is
/// `class_uid * 100 + activity_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create = 1,
    Update = 2,
    Close = 3,
}

impl Activity {
    pub fn id(self) -> i64 {
        self as i64
    }

    pub fn name(self) -> &'static str {
        match self {
            Activity::Create => "Create",
            Activity::Update => "Update",
            Activity::Close => "Close",
        }
    }
}

/// The `type_uid` of a class and activity.
pub fn type_uid(class_uid: i64, activity: Activity) -> i64 {
    class_uid * 100 + activity.id()
}

/// A socbridge time as OCSF's `timestamp_t`: milliseconds since the Unix epoch.
pub fn epoch_millis(t: Timestamp) -> i64 {
    t.as_micros().div_euclid(1_000)
}

/// OCSF's caption of a severity (`severity`); the id is [`Severity::rank`].
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Informational => "Informational",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// An incident's status as the Incident Finding's `status_id` and caption: the two enums
/// match one to one (1 New, 2 In Progress, 3 On Hold, 4 Resolved, 5 Closed).
pub fn incident_status(s: IncidentStatus) -> (i64, &'static str) {
    match s {
        IncidentStatus::New => (1, "New"),
        IncidentStatus::InProgress => (2, "In Progress"),
        IncidentStatus::OnHold => (3, "On Hold"),
        IncidentStatus::Resolved => (4, "Resolved"),
        IncidentStatus::Closed => (5, "Closed"),
    }
}

/// A finding's Detection Finding `status_id` and caption, from the status of the incident
/// holding it. Detection Finding has no "On Hold" (its enum: 1 New, 2 In Progress,
/// 3 Suppressed, 4 Resolved, 5 Archived, 6 Deleted, 99 Other), so on hold is 99 with the
/// caption, and resolved and closed are both 4 Resolved (the finding itself needs no more
/// work either way). A finding in no incident is New.
pub fn finding_status(s: Option<IncidentStatus>) -> (i64, &'static str) {
    match s {
        None | Some(IncidentStatus::New) => (1, "New"),
        Some(IncidentStatus::InProgress) => (2, "In Progress"),
        Some(IncidentStatus::OnHold) => (99, "On Hold"),
        Some(IncidentStatus::Resolved) | Some(IncidentStatus::Closed) => (4, "Resolved"),
    }
}

/// The observable `type_id` of an observable kind: 1 Hostname (domains too: OCSF's hostname
/// type is a DNS name), 2 IP Address, 3 MAC Address, 4 User Name, 6 URL String, 7 File Name
/// (file names and paths), 8 Hash.
pub fn observable_type(kind: ObservableKind) -> (i64, &'static str) {
    match kind {
        ObservableKind::Hostname | ObservableKind::Domain => (1, "Hostname"),
        ObservableKind::Ip => (2, "IP Address"),
        ObservableKind::Mac => (3, "MAC Address"),
        ObservableKind::User => (4, "User Name"),
        ObservableKind::Url => (6, "URL String"),
        ObservableKind::FileName | ObservableKind::FilePath => (7, "File Name"),
        ObservableKind::Sha256 | ObservableKind::Sha1 | ObservableKind::Md5 => (8, "Hash"),
    }
}

/// Observables as OCSF observables; `name` is socbridge's kind (`sha256`, `file_path`, ...),
/// which tells apart what one OCSF type covers.
pub fn observables(obs: &[Observable]) -> Value {
    Value::Array(
        obs.iter()
            .map(|o| {
                let (type_id, type_name) = observable_type(o.kind);
                json!({
                    "name": o.kind.as_str(),
                    "type": type_name,
                    "type_id": type_id,
                    "value": o.value,
                })
            })
            .collect(),
    )
}

/// The vendor product behind a source kind (`finding_info.product`).
pub fn vendor_product(kind: SourceKind) -> Value {
    let (name, vendor) = match kind {
        SourceKind::SecureEndpoint => ("Secure Endpoint", "Cisco"),
        SourceKind::Umbrella => ("Umbrella", "Cisco"),
        SourceKind::SymantecMss => ("Managed Security Services", "Symantec"),
    };
    json!({ "name": name, "vendor_name": vendor, "uid": kind.as_str() })
}

/// socbridge itself, the product that wrote the document (`metadata.product`).
fn socbridge_product() -> Value {
    json!({
        "name": "socbridge",
        "vendor_name": "socbridge",
        "version": env!("CARGO_PKG_VERSION"),
    })
}

fn incident_uid(id: IncidentId) -> String {
    format!("incident:{id}")
}

fn first(obs: &[Observable], kind: ObservableKind) -> Option<&str> {
    obs.iter()
        .find(|o| o.kind == kind)
        .map(|o| o.value.as_str())
}

/// The evidence a finding's observables make: the device (by hostname), the file (name or
/// path, with its hashes), the URL, the domain (as a DNS query) and the user. `None` when the
/// observables give none of these (OCSF requires at least one in an evidence).
fn evidence(obs: &[Observable]) -> Option<Value> {
    let mut ev = Map::new();
    if let Some(host) = first(obs, ObservableKind::Hostname) {
        // type_id 0: Unknown; the vendors do not say which kind of device it is.
        ev.insert("device".into(), json!({ "hostname": host, "type_id": 0 }));
    }
    let path = first(obs, ObservableKind::FilePath);
    let name = first(obs, ObservableKind::FileName).or_else(|| {
        path.and_then(|p| p.rsplit(['/', '\\']).next())
            .filter(|n| !n.is_empty())
    });
    if let Some(name) = name {
        // Fingerprint algorithm_id: 1 MD5, 2 SHA-1, 3 SHA-256. File type_id 1: Regular File.
        let hashes: Vec<Value> = obs
            .iter()
            .filter_map(|o| {
                let (id, alg) = match o.kind {
                    ObservableKind::Md5 => (1, "MD5"),
                    ObservableKind::Sha1 => (2, "SHA-1"),
                    ObservableKind::Sha256 => (3, "SHA-256"),
                    _ => return None,
                };
                Some(json!({ "algorithm_id": id, "algorithm": alg, "value": o.value }))
            })
            .collect();
        let mut file = Map::new();
        file.insert("name".into(), json!(name));
        file.insert("type_id".into(), json!(1));
        file.insert("type".into(), json!("Regular File"));
        if let Some(path) = path {
            file.insert("path".into(), json!(path));
        }
        if !hashes.is_empty() {
            file.insert("hashes".into(), Value::Array(hashes));
        }
        ev.insert("file".into(), Value::Object(file));
    }
    if let Some(url) = first(obs, ObservableKind::Url) {
        ev.insert("url".into(), json!({ "url_string": url }));
    }
    if let Some(domain) = first(obs, ObservableKind::Domain) {
        ev.insert("query".into(), json!({ "hostname": domain }));
    }
    if let Some(user) = first(obs, ObservableKind::User) {
        ev.insert("user".into(), json!({ "name": user }));
    }
    (!ev.is_empty()).then_some(Value::Object(ev))
}

/// The vendor payload as a string for `raw_data`: verbatim when the store kept it as text
/// (XML), the JSON text otherwise.
fn raw_text(raw: &Value) -> String {
    match raw {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One finding as an OCSF Detection Finding (class 2004, activity Create).
///
/// `tenant` is the tenant's name; `incident` the incident holding the finding, when it is in
/// one: its id becomes `metadata.correlation_uid` and its status the finding's `status_id`
/// (see [`finding_status`]).
pub fn detection_finding(f: &FindingView, tenant: &str, incident: Option<&IncidentView>) -> Value {
    let activity = Activity::Create;
    let at = epoch_millis(f.observed_at);
    let (status_id, status) = finding_status(incident.map(|i| i.status));

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert("product".into(), socbridge_product());
    metadata.insert("uid".into(), json!(f.id.to_string()));
    metadata.insert("tenant_uid".into(), json!(tenant));
    metadata.insert("original_event_uid".into(), json!(f.vendor_key));
    metadata.insert("log_name".into(), json!(f.source));
    metadata.insert("log_provider".into(), json!(f.source_kind.as_str()));
    if let Some(i) = incident {
        metadata.insert("correlation_uid".into(), json!(incident_uid(i.id)));
    }

    let mut finding_info = Map::new();
    finding_info.insert("uid".into(), json!(f.id.to_string()));
    finding_info.insert("uid_alt".into(), json!(f.vendor_key));
    finding_info.insert("title".into(), json!(f.title));
    finding_info.insert("types".into(), json!([f.event_type]));
    finding_info.insert("product".into(), vendor_product(f.source_kind));
    finding_info.insert("data_sources".into(), json!([f.source_kind.as_str()]));
    finding_info.insert("created_time".into(), json!(at));
    finding_info.insert("first_seen_time".into(), json!(at));
    finding_info.insert("last_seen_time".into(), json!(at));

    let mut doc = Map::new();
    doc.insert("class_uid".into(), json!(DETECTION_FINDING_CLASS));
    doc.insert("class_name".into(), json!("Detection Finding"));
    doc.insert("category_uid".into(), json!(FINDINGS_CATEGORY));
    doc.insert("category_name".into(), json!("Findings"));
    doc.insert("activity_id".into(), json!(activity.id()));
    doc.insert("activity_name".into(), json!(activity.name()));
    doc.insert(
        "type_uid".into(),
        json!(type_uid(DETECTION_FINDING_CLASS, activity)),
    );
    doc.insert(
        "type_name".into(),
        json!(format!("Detection Finding: {}", activity.name())),
    );
    doc.insert("severity_id".into(), json!(f.severity.rank()));
    doc.insert("severity".into(), json!(severity_name(f.severity)));
    doc.insert("status_id".into(), json!(status_id));
    doc.insert("status".into(), json!(status));
    doc.insert("time".into(), json!(at));
    doc.insert("is_alert".into(), json!(true));
    doc.insert("message".into(), json!(f.title));
    doc.insert("metadata".into(), Value::Object(metadata));
    doc.insert("finding_info".into(), Value::Object(finding_info));
    if !f.observables.is_empty() {
        doc.insert("observables".into(), observables(&f.observables));
    }
    if let Some(host) = first(&f.observables, ObservableKind::Hostname) {
        doc.insert("device".into(), json!({ "hostname": host, "type_id": 0 }));
    }
    if let Some(ev) = evidence(&f.observables) {
        doc.insert("evidences".into(), json!([ev]));
    }
    doc.insert("raw_data".into(), json!(raw_text(&f.raw)));
    let mut extra = json!({
        "source": f.source,
        "source_kind": f.source_kind.as_str(),
        "vendor_key": f.vendor_key,
        "event_type": f.event_type,
    });
    if let (Some(i), Some(m)) = (incident, extra.as_object_mut()) {
        m.insert("incident_id".into(), json!(i.id));
    }
    doc.insert("unmapped".into(), json!({ "socbridge": extra }));
    Value::Object(doc)
}

/// One incident as an OCSF Incident Finding (class 2005), with one `finding_info_list` entry
/// per finding (whose own Detection Findings [`detection_findings`] gives).
///
/// The activity says where the incident is: Close once resolved or closed, Create while it
/// was never changed after its creation, Update otherwise. `time` is its last change. An
/// unassigned incident names its tenant's queue as `assignee_group` (OCSF requires an
/// assignee or a group).
pub fn incident_finding(d: &IncidentDetail) -> Value {
    let i = &d.incident;
    let activity = if !i.status.is_open() {
        Activity::Close
    } else if i.updated_at == i.created_at {
        Activity::Create
    } else {
        Activity::Update
    };
    let (status_id, status) = incident_status(i.status);

    let metadata = json!({
        "version": OCSF_VERSION,
        "product": socbridge_product(),
        "uid": i.id.to_string(),
        "tenant_uid": i.tenant,
        "correlation_uid": incident_uid(i.id),
    });

    let finding_info_list: Vec<Value> = d
        .findings
        .iter()
        .map(|f| {
            let at = epoch_millis(f.observed_at);
            json!({
                "uid": f.id.to_string(),
                "uid_alt": f.vendor_key,
                "title": f.title,
                "types": [f.event_type],
                "product": vendor_product(f.source_kind),
                "data_sources": [f.source_kind.as_str()],
                "created_time": at,
                "first_seen_time": at,
                "last_seen_time": at,
            })
        })
        .collect();

    let mut doc = Map::new();
    doc.insert("class_uid".into(), json!(INCIDENT_FINDING_CLASS));
    doc.insert("class_name".into(), json!("Incident Finding"));
    doc.insert("category_uid".into(), json!(FINDINGS_CATEGORY));
    doc.insert("category_name".into(), json!("Findings"));
    doc.insert("activity_id".into(), json!(activity.id()));
    doc.insert("activity_name".into(), json!(activity.name()));
    doc.insert(
        "type_uid".into(),
        json!(type_uid(INCIDENT_FINDING_CLASS, activity)),
    );
    doc.insert(
        "type_name".into(),
        json!(format!("Incident Finding: {}", activity.name())),
    );
    doc.insert("severity_id".into(), json!(i.severity.rank()));
    doc.insert("severity".into(), json!(severity_name(i.severity)));
    doc.insert("status_id".into(), json!(status_id));
    doc.insert("status".into(), json!(status));
    if let Some(resolution) = i.resolution.as_deref().filter(|r| !r.is_empty()) {
        doc.insert("status_detail".into(), json!(resolution));
    }
    doc.insert("time".into(), json!(epoch_millis(i.updated_at)));
    doc.insert("start_time".into(), json!(epoch_millis(i.first_seen)));
    doc.insert("end_time".into(), json!(epoch_millis(i.last_seen)));
    doc.insert("count".into(), json!(i.finding_count));
    doc.insert("message".into(), json!(i.title));
    doc.insert("desc".into(), json!(i.title));
    doc.insert("metadata".into(), metadata);
    doc.insert("finding_info_list".into(), Value::Array(finding_info_list));
    match i.assignee.as_deref().filter(|a| !a.trim().is_empty()) {
        Some(a) => doc.insert("assignee".into(), json!({ "name": a })),
        None => doc.insert(
            "assignee_group".into(),
            json!({ "name": i.tenant, "type": "tenant queue" }),
        ),
    };
    if !i.observables.is_empty() {
        doc.insert("observables".into(), observables(&i.observables));
    }
    if let Some(t) = &i.ticket {
        // Ticket type_id 2: External.
        let mut ticket = Map::new();
        ticket.insert("uid".into(), json!(t.number));
        ticket.insert("type_id".into(), json!(2));
        ticket.insert("type".into(), json!("External"));
        ticket.insert("status".into(), json!(t.state));
        if !t.url.is_empty() {
            ticket.insert("src_url".into(), json!(t.url));
        }
        doc.insert("tickets".into(), json!([Value::Object(ticket)]));
    }
    let actions: Vec<Value> = i
        .actions
        .iter()
        .map(|a| json!({ "kind": a.kind, "state": a.state, "target": a.target }))
        .collect();
    let sources: Vec<&str> = i.sources.iter().map(|s| s.as_str()).collect();
    let mut extra = json!({
        "incident_id": i.id,
        "status": i.status.as_str(),
        "sources": sources,
        "created_at": epoch_millis(i.created_at),
        "actions": actions,
    });
    if let (Some(t), Some(m)) = (&i.ticket, extra.as_object_mut()) {
        m.insert(
            "ticket".into(),
            json!({ "system": t.system, "number": t.number, "sys_id": t.sys_id }),
        );
    }
    doc.insert("unmapped".into(), json!({ "socbridge": extra }));
    Value::Object(doc)
}

/// The Detection Findings of an incident's findings, in the incident's order.
pub fn detection_findings(d: &IncidentDetail) -> Vec<Value> {
    d.findings
        .iter()
        .map(|f| detection_finding(f, &d.incident.tenant, Some(&d.incident)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_schema_rules() {
        assert_eq!(type_uid(DETECTION_FINDING_CLASS, Activity::Create), 200401);
        assert_eq!(type_uid(INCIDENT_FINDING_CLASS, Activity::Close), 200503);
        assert_eq!(
            epoch_millis(Timestamp::from_micros(1_700_000_000_123_456)),
            1_700_000_000_123
        );
        assert_eq!(epoch_millis(Timestamp::from_micros(-1)), -1);
        assert_eq!(incident_status(IncidentStatus::OnHold), (3, "On Hold"));
        assert_eq!(finding_status(Some(IncidentStatus::Closed)).0, 4);
        assert_eq!(observable_type(ObservableKind::Sha1).0, 8);
    }
}
