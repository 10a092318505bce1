//! The records the store hands in and out: tenants, sources, ingest batches and their outcome,
//! counts, quarantined records.

use crate::leases::Fence;
use serde::Serialize;
use socbridge_model::{Finding, Quarantined, SourceKind, SourceName, Timestamp};
use std::fmt;

/// A tenant: one customer (or business unit) whose sources, findings and incidents are kept
/// apart from every other's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRecord {
    pub id: i64,
    pub name: String,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
}

/// A source to create or update.
#[derive(Clone)]
pub struct NewSource {
    pub name: SourceName,
    pub kind: SourceKind,
    /// The source's settings (the engine's `SourceSettings` as JSON).
    pub settings: serde_json::Value,
    /// Sealed credentials; `None` keeps the stored ones.
    pub secret: Option<Vec<u8>>,
}

impl fmt::Debug for NewSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSource")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("secret", &SealedDebug(self.secret.as_deref()))
            .finish()
    }
}

/// What tells whether the stored sources changed since another reading: how many there are,
/// the highest id and the latest save (every save of a source stamps `updated_at`; a removal
/// changes the count). A poll's outcome and an ingest's cursor do not change it: loops that
/// run every tick list the sources again only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcesFingerprint {
    pub count: i64,
    pub max_id: i64,
    pub last_saved_at: i64,
}

/// A stored source with its cursor and the state of its last poll.
#[derive(Clone, PartialEq)]
pub struct SourceRecord {
    pub id: i64,
    pub tenant_id: i64,
    /// The tenant's name.
    pub tenant: String,
    pub name: String,
    pub kind: SourceKind,
    pub settings: serde_json::Value,
    /// Sealed credentials, opaque to the store. Never shown by `Debug`.
    pub secret: Option<Vec<u8>>,
    /// The newest vendor time stored: the next poll asks from here minus the overlap.
    pub cursor_mark: Option<Timestamp>,
    pub last_poll_at: Option<Timestamp>,
    pub last_ok_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

impl fmt::Debug for SourceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("secret", &SealedDebug(self.secret.as_deref()))
            .field("cursor_mark", &self.cursor_mark)
            .field("last_poll_at", &self.last_poll_at)
            .field("last_ok_at", &self.last_ok_at)
            .field("last_error", &self.last_error)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Shows that sealed bytes exist and how many, never the bytes: even ciphertext in a log is a
/// copy of a credential waiting for its key.
struct SealedDebug<'a>(Option<&'a [u8]>);

impl fmt::Debug for SealedDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => write!(f, "<sealed, {} bytes>", bytes.len()),
            None => f.write_str("None"),
        }
    }
}

/// What one page of a poll hands to [`crate::Store::ingest`].
#[derive(Debug, Clone, Default)]
pub struct IngestBatch {
    /// In ascending `observed_at` order, so that stopping at the cap leaves a mark below
    /// everything not yet stored.
    pub findings: Vec<Finding>,
    pub quarantined: Vec<Quarantined>,
    /// Stop before a finding once this many new findings were stored (the per-run cap).
    pub max_new: Option<usize>,
    /// The lease the batch was read under: the ingest commits only while it is still the
    /// current grant of its job (see `leases`). `None`: no lease (one process alone).
    pub fence: Option<Fence>,
}

/// What an ingest stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub new_findings: usize,
    /// Findings already stored (overlap windows, repeated pages): counted and dropped.
    pub duplicates: usize,
    pub quarantined_new: usize,
    /// Findings walked before the cap stopped the batch (new + duplicates).
    pub processed: usize,
    /// The cap stopped the batch before its end: the rest comes with the next poll.
    pub cap_reached: bool,
    pub incidents_created: usize,
    /// Incidents that existed before the batch and gained findings.
    pub incidents_updated: usize,
    /// The source's cursor mark after the batch, committed with it.
    pub mark: Option<Timestamp>,
}

/// How much the store holds, overall or for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub tenants: i64,
    pub sources: i64,
    pub findings: i64,
    pub incidents: i64,
    pub open_incidents: i64,
    pub quarantined: i64,
}

/// A record that could not be understood, kept with its reason and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub id: i64,
    pub tenant: String,
    pub source: String,
    pub reason: String,
    pub raw: Vec<u8>,
    pub received_at: Timestamp,
}
