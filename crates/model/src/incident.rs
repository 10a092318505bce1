//! Incidents as analysts see them: the JSON contract of the CLI (`--output json`) and the API.

use crate::{Observable, Severity, SourceKind, Timestamp};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

pub type IncidentId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentStatus {
    New,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

impl IncidentStatus {
    pub const ALL: [IncidentStatus; 5] = [
        IncidentStatus::New,
        IncidentStatus::InProgress,
        IncidentStatus::OnHold,
        IncidentStatus::Resolved,
        IncidentStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::New => "new",
            IncidentStatus::InProgress => "in_progress",
            IncidentStatus::OnHold => "on_hold",
            IncidentStatus::Resolved => "resolved",
            IncidentStatus::Closed => "closed",
        }
    }

    /// Open incidents still collect findings of their subject.
    pub fn is_open(self) -> bool {
        !matches!(self, IncidentStatus::Resolved | IncidentStatus::Closed)
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown status `{0}` (expected one of new, in_progress, on_hold, resolved, closed)")]
pub struct UnknownStatus(pub String);

impl FromStr for IncidentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        IncidentStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == norm)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The ticket of an incident in an outside ticketing system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    pub system: String,
    pub number: String,
    pub sys_id: String,
    pub state: String,
    pub url: String,
}

/// A containment or write-back action and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionView {
    pub id: i64,
    /// `isolate` or `move`.
    pub kind: String,
    /// `planned`, `applied`, `failed`, `reverted` or `skipped`.
    pub state: String,
    /// The endpoint: Secure Endpoint's connector GUID.
    pub target: String,
    /// The endpoint's hostname.
    pub target_label: Option<String>,
    /// The triage group of a move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Why it is in its state (a refusal, a deny pattern, dry run...).
    pub reason: Option<String>,
    /// Asked for by an analyst rather than the tenant's policy.
    pub manual: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One incident, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentView {
    pub id: IncidentId,
    pub tenant: String,
    pub title: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub sources: Vec<SourceKind>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub finding_count: i64,
    pub observables: Vec<Observable>,
    pub ticket: Option<TicketView>,
    pub actions: Vec<ActionView>,
    pub resolution: Option<String>,
    pub assignee: Option<String>,
}

/// A finding as shown inside an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingView {
    pub id: i64,
    pub source: String,
    pub source_kind: SourceKind,
    pub vendor_key: String,
    pub observed_at: Timestamp,
    pub severity: Severity,
    pub title: String,
    pub event_type: String,
    pub observables: Vec<Observable>,
    /// The vendor payload as received, parsed back as JSON when it is JSON.
    pub raw: serde_json::Value,
}

/// One line of an incident's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    pub kind: String,
    pub actor: String,
    pub detail: String,
}

/// One incident with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: IncidentView,
    pub findings: Vec<FindingView>,
    pub timeline: Vec<TimelineEntry>,
}

/// The filters of `incidents list` (and the API's list route).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    /// Only these tenants (empty: every tenant the caller may see).
    pub tenants: Vec<String>,
    pub since: Option<Timestamp>,
    pub severities: Vec<Severity>,
    pub statuses: Vec<IncidentStatus>,
    /// Incidents with an `ip` observable equal to this.
    pub source_ip: Option<String>,
    /// Incidents with a finding from this source: a source's name (`amp`) or a source kind
    /// (`secure_endpoint`, `symantec_mss`, `umbrella`).
    pub source: Option<String>,
    /// Free text, case-insensitive: in the title, an observable's value (hostnames, IPs,
    /// users, hashes...), the assignee or the ticket number; a number is also an incident id.
    pub text: Option<String>,
    pub limit: Option<u32>,
    /// Keyset paging: only incidents listed after this `(updated_at, id)` in the list's order
    /// (newest first), i.e. strictly older, or as old with a smaller id. The API's cursor.
    pub before: Option<(Timestamp, IncidentId)>,
}

/// An analyst's change to an incident. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentUpdate {
    pub status: Option<IncidentStatus>,
    pub resolution: Option<String>,
    pub assignee: Option<String>,
    pub comment: Option<String>,
    /// Who made the change, for the timeline.
    pub actor: String,
}

impl IncidentUpdate {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.resolution.is_none()
            && self.assignee.is_none()
            && self.comment.is_none()
    }
}
