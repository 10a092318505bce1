//! socbridge's domain model: what a finding, an incident, a severity and a correlation rule
//! *are*, independent of any vendor wire format or database.
//!
//! Invariant: this crate does no I/O (no network, no files, no clock reads except through
//! [`Timestamp::now`], which callers may avoid in pure code). Every other crate speaks these
//! types; vendor wire types never leave their connector module.

pub mod containment;
pub mod correlation;
pub mod finding;
pub mod incident;
pub mod severity;
pub mod source;
pub mod tenant;
pub mod time;

pub use containment::{
    ActionKind, ActionState, ContainmentPolicy, Decision, PolicyAction, PolicyError,
};
pub use correlation::{
    CorrelationRule, GroupBy, JoinRule, correlation_key, incident_title, rule_for,
};
pub use finding::{
    Finding, Observable, ObservableKind, Quarantined, Subject, normalise_observables,
};
pub use incident::{
    ActionView, FindingView, IncidentDetail, IncidentFilter, IncidentId, IncidentStatus,
    IncidentUpdate, IncidentView, TicketView, TimelineEntry,
};
pub use severity::Severity;
pub use source::SourceKind;
pub use tenant::{NameError, SourceName, TenantName};
pub use time::{SinceError, Timestamp, TimestampError, parse_since};
