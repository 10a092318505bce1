//! Containment: what a tenant's policy asks to do to an endpoint when an incident opens or
//! grows, and the states an action goes through. Pure: deciding needs no I/O, so the store
//! decides inside the transaction that opens the incident, and the action is recorded as
//! intended before anything is attempted.

use crate::{Severity, SourceKind};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the policy does to the endpoint of a qualifying incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyAction {
    /// Nothing (the default).
    #[default]
    None,
    /// Isolate the computer (Secure Endpoint isolation).
    Isolate,
    /// Move the computer to the policy's `group` (a triage group with a stricter policy).
    MoveToGroup,
}

/// A tenant's containment policy. Serialised as the tenant's setting; built from the config
/// or the CLI with [`ContainmentPolicy::validate`] run on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentPolicy {
    pub action: PolicyAction,
    /// The triage group of `move-to-group`, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Act only on incidents at least this severe (default high).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Act only on incidents with findings of these sources (default Secure Endpoint).
    #[serde(default = "default_sources")]
    pub sources: Vec<SourceKind>,
    /// When set, act only on hosts whose name matches (a regular expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_hosts: Option<String>,
    /// Never act on hosts whose name matches (e.g. `^SRV-`); wins over `allow_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_hosts: Option<String>,
    /// Undo the action when the incident is resolved or closed (default on).
    #[serde(default = "yes")]
    pub revert_on_close: bool,
    /// Apply again when a closed incident is reopened (default off).
    #[serde(default)]
    pub reapply_on_reopen: bool,
    /// Record what would be done, do nothing.
    #[serde(default)]
    pub dry_run: bool,
}

fn default_min_severity() -> Severity {
    Severity::High
}

fn default_sources() -> Vec<SourceKind> {
    vec![SourceKind::SecureEndpoint]
}

fn yes() -> bool {
    true
}

impl Default for ContainmentPolicy {
    fn default() -> Self {
        ContainmentPolicy {
            action: PolicyAction::None,
            group: None,
            min_severity: default_min_severity(),
            sources: default_sources(),
            allow_hosts: None,
            deny_hosts: None,
            revert_on_close: true,
            reapply_on_reopen: false,
            dry_run: false,
        }
    }
}

/// A policy setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("`{field}` is not a valid regular expression: {detail}")]
    BadPattern { field: &'static str, detail: String },
    #[error("`group` must name a Secure Endpoint group (move-to-group needs one)")]
    NoGroup,
    #[error("`sources` must not be empty")]
    NoSources,
}

/// What the policy says about one incident's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The policy does not cover this incident (no action, below the severity, another
    /// source): nothing is recorded.
    NotCovered,
    /// Record the action as planned and do it.
    Act(ActionKind),
    /// Record the action as skipped, with the reason (a deny pattern, dry run), do nothing.
    Skip(ActionKind, String),
}

fn pattern(field: &'static str, p: &Option<String>) -> Result<Option<regex::Regex>, PolicyError> {
    p.as_deref()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| PolicyError::BadPattern {
                field,
                detail: e.to_string(),
            })
        })
        .transpose()
}

impl ContainmentPolicy {
    /// Checks the patterns compile and the action is complete.
    pub fn validate(&self) -> Result<(), PolicyError> {
        pattern("allow_hosts", &self.allow_hosts)?;
        pattern("deny_hosts", &self.deny_hosts)?;
        if self.action == PolicyAction::MoveToGroup
            && self.group.as_deref().is_none_or(|g| g.trim().is_empty())
        {
            return Err(PolicyError::NoGroup);
        }
        if self.sources.is_empty() {
            return Err(PolicyError::NoSources);
        }
        Ok(())
    }

    /// The kind of action the policy takes, if any.
    pub fn kind(&self) -> Option<ActionKind> {
        match self.action {
            PolicyAction::None => None,
            PolicyAction::Isolate => Some(ActionKind::Isolate),
            PolicyAction::MoveToGroup => Some(ActionKind::Move),
        }
    }

    /// The triage group of a move policy.
    pub fn group(&self) -> Option<&str> {
        match self.action {
            PolicyAction::MoveToGroup => self.group.as_deref(),
            _ => None,
        }
    }

    /// Decides for an incident of this severity, with findings of these sources, on `host`.
    pub fn decide(&self, severity: Severity, sources: &[SourceKind], host: &str) -> Decision {
        let Some(kind) = self.kind() else {
            return Decision::NotCovered;
        };
        if severity < self.min_severity || !sources.iter().any(|s| self.sources.contains(s)) {
            return Decision::NotCovered;
        }
        self.host_decision(kind, host)
    }

    /// The host rules and dry run alone: what a manual action of `kind` on `host` meets too.
    pub fn host_decision(&self, kind: ActionKind, host: &str) -> Decision {
        // Patterns were validated when the policy was saved; one that no longer compiles
        // (it cannot, but stored data is outside data) blocks rather than permits.
        match pattern("deny_hosts", &self.deny_hosts) {
            Ok(Some(deny)) if deny.is_match(host) => {
                return Decision::Skip(
                    kind,
                    format!("host `{host}` matches the deny pattern `{}`", deny.as_str()),
                );
            }
            Err(e) => return Decision::Skip(kind, e.to_string()),
            _ => {}
        }
        match pattern("allow_hosts", &self.allow_hosts) {
            Ok(Some(allow)) if !allow.is_match(host) => {
                return Decision::Skip(
                    kind,
                    format!(
                        "host `{host}` does not match the allow pattern `{}`",
                        allow.as_str()
                    ),
                );
            }
            Err(e) => return Decision::Skip(kind, e.to_string()),
            _ => {}
        }
        if self.dry_run {
            let what = match (self.group(), kind) {
                (Some(group), ActionKind::Move) => format!("move `{host}` to group `{group}`"),
                _ => format!("{kind} `{host}`"),
            };
            return Decision::Skip(kind, format!("dry run: would {what}"));
        }
        Decision::Act(kind)
    }
}

/// What is done to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Isolate,
    Move,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Isolate => "isolate",
            ActionKind::Move => "move",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "isolate" => Some(ActionKind::Isolate),
            "move" => Some(ActionKind::Move),
            _ => None,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an action is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Recorded, not yet confirmed by the vendor.
    Planned,
    /// The vendor confirmed it.
    Applied,
    /// The vendor refused it, or it could not be done; the reason says why.
    Failed,
    /// Undone (isolation stopped, the computer back in its group).
    Reverted,
    /// Not done on purpose (a deny pattern, dry run, already in that state before socbridge).
    Skipped,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Planned => "planned",
            ActionState::Applied => "applied",
            ActionState::Failed => "failed",
            ActionState::Reverted => "reverted",
            ActionState::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            ActionState::Planned,
            ActionState::Applied,
            ActionState::Failed,
            ActionState::Reverted,
            ActionState::Skipped,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for ActionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isolate() -> ContainmentPolicy {
        ContainmentPolicy {
            action: PolicyAction::Isolate,
            deny_hosts: Some("^SRV-".into()),
            ..ContainmentPolicy::default()
        }
    }

    #[test]
    fn covers_by_severity_and_source_then_applies_host_rules() {
        let p = isolate();
        let se = [SourceKind::SecureEndpoint];
        assert_eq!(
            p.decide(Severity::Medium, &se, "PC-1"),
            Decision::NotCovered
        );
        assert_eq!(
            p.decide(Severity::High, &[SourceKind::SymantecMss], "PC-1"),
            Decision::NotCovered
        );
        assert_eq!(
            p.decide(Severity::Critical, &se, "PC-1"),
            Decision::Act(ActionKind::Isolate)
        );
        let Decision::Skip(_, why) = p.decide(Severity::Critical, &se, "SRV-DC1") else {
            panic!("a server is never isolated");
        };
        assert!(why.contains("^SRV-"), "{why}");
        let dry = ContainmentPolicy {
            dry_run: true,
            action: PolicyAction::MoveToGroup,
            group: Some("Triage".into()),
            ..isolate()
        };
        assert_eq!(
            dry.decide(Severity::High, &se, "PC-2"),
            Decision::Skip(
                ActionKind::Move,
                "dry run: would move `PC-2` to group `Triage`".into()
            )
        );
        assert_eq!(
            ContainmentPolicy::default().decide(Severity::Critical, &se, "PC-1"),
            Decision::NotCovered
        );
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let bad = ContainmentPolicy {
            deny_hosts: Some("(".into()),
            ..isolate()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("deny_hosts")
        );
        let no_group = ContainmentPolicy {
            action: PolicyAction::MoveToGroup,
            group: Some(" ".into()),
            ..isolate()
        };
        assert_eq!(no_group.validate(), Err(PolicyError::NoGroup));
    }

    #[test]
    fn policy_json_round_trips() {
        let p = ContainmentPolicy {
            action: PolicyAction::MoveToGroup,
            group: Some("Triage".into()),
            ..isolate()
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["action"], "move-to-group");
        assert_eq!(json["group"], "Triage");
        let back: ContainmentPolicy = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let minimal: ContainmentPolicy =
            serde_json::from_value(serde_json::json!({"action": "isolate"})).unwrap();
        assert!(minimal.revert_on_close);
        assert_eq!(minimal.min_severity, Severity::High);
        let typo = serde_json::from_value::<ContainmentPolicy>(
            serde_json::json!({"action": "isolate", "deny_host": "^SRV-"}),
        );
        assert!(typo.unwrap_err().to_string().contains("deny_host"));
    }
}
