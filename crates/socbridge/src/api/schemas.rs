//! The OpenAPI shapes of the model's JSON (DESIGN.md section 5). The model crate has no
//! OpenAPI dependency, so its views are described here; `tests/api.rs` checks that real
//! answers carry every property named here.

#![allow(dead_code)]

use utoipa::ToSchema;

/// Where an incident stands.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Status {
    New,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

/// What a token may do: an admin everything, an analyst its tenants' incidents.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Analyst,
}

/// `{type, value}`: an IP, hostname, user, hash, URL, domain...
#[derive(ToSchema)]
pub struct Observable {
    #[schema(example = "ip")]
    r#type: String,
    #[schema(example = "10.0.0.1")]
    value: String,
}

/// The incident's ticket in ServiceNow (`state` is `pending` until it exists there).
#[derive(ToSchema)]
pub struct Ticket {
    #[schema(example = "servicenow")]
    system: String,
    number: String,
    sys_id: String,
    state: String,
    url: String,
}

/// A containment action and where it stands.
#[derive(ToSchema)]
pub struct Action {
    id: i64,
    /// `isolate` or `move`.
    kind: String,
    /// `planned`, `applied`, `failed`, `reverted` or `skipped`.
    state: String,
    /// The endpoint (Secure Endpoint connector GUID).
    target: String,
    target_label: Option<String>,
    group: Option<String>,
    reason: Option<String>,
    manual: bool,
    /// The code that lifts an isolation at the computer: for admin tokens only, and only in
    /// `GET /api/v1/incidents/{id}`.
    unlock_code: Option<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
}

/// An incident as listed.
#[derive(ToSchema)]
pub struct Incident {
    id: i64,
    tenant: String,
    title: String,
    /// `informational|low|medium|high|critical`
    #[schema(example = "high")]
    severity: String,
    /// `new|in_progress|on_hold|resolved|closed`
    #[schema(example = "new")]
    status: String,
    /// Source kinds: `secure_endpoint`, `symantec_mss`, `umbrella`.
    sources: Vec<String>,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    #[schema(format = DateTime)]
    first_seen: String,
    #[schema(format = DateTime)]
    last_seen: String,
    finding_count: i64,
    observables: Vec<Observable>,
    ticket: Option<Ticket>,
    actions: Vec<Action>,
    resolution: Option<String>,
    assignee: Option<String>,
}

/// A finding of an incident, with the vendor's payload as received.
#[derive(ToSchema)]
pub struct Finding {
    id: i64,
    /// The source's name.
    source: String,
    source_kind: String,
    vendor_key: String,
    #[schema(format = DateTime)]
    observed_at: String,
    severity: String,
    title: String,
    event_type: String,
    observables: Vec<Observable>,
    /// The vendor payload (JSON when it was JSON, else text).
    raw: serde_json::Value,
}

/// One line of an incident's history.
#[derive(ToSchema)]
pub struct TimelineEntry {
    #[schema(format = DateTime)]
    at: String,
    kind: String,
    actor: String,
    detail: String,
}

/// An incident with its findings and timeline (the members of `Incident`, plus these).
#[derive(ToSchema)]
pub struct IncidentDetail {
    #[schema(inline)]
    #[serde(flatten)]
    incident: Incident,
    findings: Vec<Finding>,
    timeline: Vec<TimelineEntry>,
}

/// An OCSF 1.8.0 finding (`?format=ocsf`): an Incident Finding (class 2005) or a Detection
/// Finding (class 2004), as `socbridge export --format ocsf` writes it. Only the members every
/// such object has are listed; the OCSF schema defines the rest.
#[derive(ToSchema)]
pub struct OcsfFinding {
    #[schema(example = 2005)]
    class_uid: i64,
    #[schema(example = 2)]
    category_uid: i64,
    #[schema(example = 200501)]
    type_uid: i64,
    activity_id: i64,
    severity_id: i64,
    /// Milliseconds since the Unix epoch.
    time: i64,
    #[schema(value_type = Object)]
    metadata: serde_json::Value,
}

/// An incident in socbridge's shape, or with `format=ocsf` as an OCSF Incident Finding.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum IncidentOrOcsf {
    Incident(IncidentDetail),
    Ocsf(OcsfFinding),
}
