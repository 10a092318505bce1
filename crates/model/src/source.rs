//! The kinds of vendor source socbridge polls.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    SecureEndpoint,
    Umbrella,
    SymantecMss,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [
        SourceKind::SecureEndpoint,
        SourceKind::Umbrella,
        SourceKind::SymantecMss,
    ];

    /// Does the vendor keep a workflow of its own that socbridge writes incident changes back
    /// to? (Symantec MSS: UpdateIncidentWorkflow.) Data, not scattered `if`s.
    pub fn has_vendor_workflow(self) -> bool {
        matches!(self, SourceKind::SymantecMss)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::SecureEndpoint => "secure_endpoint",
            SourceKind::Umbrella => "umbrella",
            SourceKind::SymantecMss => "symantec_mss",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown source kind `{0}` (expected secure_endpoint, umbrella or symantec_mss)")]
pub struct UnknownSourceKind(pub String);

impl FromStr for SourceKind {
    type Err = UnknownSourceKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        SourceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == norm)
            .ok_or_else(|| UnknownSourceKind(s.to_string()))
    }
}
