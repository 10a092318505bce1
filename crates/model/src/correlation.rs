//! Correlation rules, as data: which findings belong to the same incident.
//!
//! A rule says, for a source kind, which subject kind groups its findings and whether the
//! grouping lasts only while the incident is open. Adding a vendor means adding a row here, not
//! an `if` in the pipeline.

use crate::{Finding, SourceKind};

/// How long findings of one subject keep joining the same incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Findings of one subject join its incident while that incident is open; after it closes,
    /// the next finding opens a new incident. (One compromised host: one incident at a time.)
    SubjectWhileOpen,
    /// The vendor's record is itself an incident: its updates always land on the same
    /// socbridge incident, open or closed.
    SubjectForever,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationRule {
    pub source: SourceKind,
    /// The `Subject::kind` this rule groups by.
    pub subject_kind: &'static str,
    pub group_by: GroupBy,
    /// When the subject has no open incident of its own: join the open incident of another
    /// source's subject that shares this observable (an Umbrella identity that is a computer
    /// joins the Secure Endpoint incident of the computer with the same hostname).
    pub join: Option<JoinRule>,
}

/// Joining another source's open incident by a shared observable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinRule {
    /// The correlation-key prefix of the incidents that may be joined.
    pub key_prefix: &'static str,
    /// The observable both must have (compared case-insensitively).
    pub by: crate::ObservableKind,
}

/// The rule table. Findings of a source with no matching subject each get an incident of their
/// own (keyed by their vendor key).
pub const RULES: &[CorrelationRule] = &[
    CorrelationRule {
        source: SourceKind::SecureEndpoint,
        subject_kind: "computer",
        group_by: GroupBy::SubjectWhileOpen,
        join: None,
    },
    CorrelationRule {
        source: SourceKind::Umbrella,
        subject_kind: "identity",
        group_by: GroupBy::SubjectWhileOpen,
        join: Some(JoinRule {
            key_prefix: "secure_endpoint:computer:",
            by: crate::ObservableKind::Hostname,
        }),
    },
    CorrelationRule {
        source: SourceKind::SymantecMss,
        subject_kind: "vendor_incident",
        group_by: GroupBy::SubjectForever,
        join: None,
    },
];

pub fn rule_for(source: SourceKind) -> Option<&'static CorrelationRule> {
    RULES.iter().find(|r| r.source == source)
}

/// The key under which a finding is grouped, and how long the grouping lasts. The key is
/// scoped by the caller to a tenant; it never crosses tenants.
pub fn correlation_key(f: &Finding) -> (String, GroupBy) {
    if let Some(rule) = rule_for(f.source_kind) {
        if let Some(subject) = f.subject.as_ref().filter(|s| s.kind == rule.subject_kind) {
            return (
                format!("{}:{}:{}", f.source_kind, subject.kind, subject.id),
                rule.group_by,
            );
        }
    }
    (
        format!("{}:finding:{}", f.source_kind, f.vendor_key),
        GroupBy::SubjectForever,
    )
}

/// The title of an incident opened by this finding: what happened, and to what.
pub fn incident_title(f: &Finding) -> String {
    match &f.subject {
        Some(subject) if subject.kind != "vendor_incident" => {
            let about = subject.label.as_deref().unwrap_or(&subject.id);
            format!("{} on {}", f.event_type, about)
        }
        _ => f.title.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Severity, Subject, Timestamp};

    fn finding(kind: SourceKind, subject: Option<Subject>) -> Finding {
        Finding {
            source_kind: kind,
            vendor_key: "k1".into(),
            observed_at: Timestamp::from_micros(0),
            severity: Severity::High,
            title: "t".into(),
            event_type: "e".into(),
            subject,
            observables: vec![],
            raw: "{}".into(),
        }
    }

    #[test]
    fn secure_endpoint_groups_by_computer_while_open() {
        let s = Subject {
            kind: "computer".into(),
            id: "guid-1".into(),
            label: None,
        };
        let (key, g) = correlation_key(&finding(SourceKind::SecureEndpoint, Some(s)));
        assert_eq!(key, "secure_endpoint:computer:guid-1");
        assert_eq!(g, GroupBy::SubjectWhileOpen);
    }

    #[test]
    fn finding_without_subject_is_its_own_incident() {
        let (key, g) = correlation_key(&finding(SourceKind::SecureEndpoint, None));
        assert_eq!(key, "secure_endpoint:finding:k1");
        assert_eq!(g, GroupBy::SubjectForever);
    }
}
