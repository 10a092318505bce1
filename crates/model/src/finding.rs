//! A finding: one vendor signal, normalised (the shape of an OCSF Detection Finding), with the
//! vendor's payload kept verbatim so nothing the vendor said is lost in the mapping.

use crate::{Severity, SourceKind, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of thing an observable is. Serialised as the `type` of `{type, value}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservableKind {
    Hostname,
    Ip,
    Mac,
    User,
    Sha256,
    Sha1,
    Md5,
    FilePath,
    FileName,
    Url,
    Domain,
}

impl ObservableKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservableKind::Hostname => "hostname",
            ObservableKind::Ip => "ip",
            ObservableKind::Mac => "mac",
            ObservableKind::User => "user",
            ObservableKind::Sha256 => "sha256",
            ObservableKind::Sha1 => "sha1",
            ObservableKind::Md5 => "md5",
            ObservableKind::FilePath => "file_path",
            ObservableKind::FileName => "file_name",
            ObservableKind::Url => "url",
            ObservableKind::Domain => "domain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }
}

impl fmt::Display for ObservableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value an analyst can pivot on (a host, an address, a hash...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Observable {
    #[serde(rename = "type")]
    pub kind: ObservableKind,
    pub value: String,
}

impl Observable {
    pub fn new(kind: ObservableKind, value: impl Into<String>) -> Self {
        Observable {
            kind,
            value: value.into(),
        }
    }
}

/// What a finding is about, as far as correlation is concerned: a computer of Secure Endpoint,
/// an identity of Umbrella, an incident number of Symantec MSS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Subject {
    /// `computer`, `identity`, `vendor_incident`: matched by the correlation rules.
    pub kind: String,
    /// The vendor's stable identifier of the subject.
    pub id: String,
    /// A human label (hostname, identity label), when the vendor gives one.
    pub label: Option<String>,
}

/// One normalised vendor signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub source_kind: SourceKind,
    /// Recognises the vendor's record when it comes back (overlap windows, duplicated pages,
    /// push and poll both delivering it). Unique per (tenant, source). Each connector documents
    /// how it builds the key.
    pub vendor_key: String,
    /// When the vendor says the signal happened.
    pub observed_at: Timestamp,
    pub severity: Severity,
    pub title: String,
    /// The vendor's event type, as the vendor names it.
    pub event_type: String,
    pub subject: Option<Subject>,
    pub observables: Vec<Observable>,
    /// The vendor's record, byte for byte as received.
    pub raw: String,
}

/// A record that could not be understood: kept with its reason and exact bytes, so it can be
/// inspected and replayed, while the rest of its page flows on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub reason: String,
    pub raw: Vec<u8>,
}

/// Sorts and deduplicates observables, keeping the first-seen order irrelevant for storage.
pub fn normalise_observables(obs: &mut Vec<Observable>) {
    obs.retain(|o| !o.value.trim().is_empty());
    obs.sort();
    obs.dedup();
}
