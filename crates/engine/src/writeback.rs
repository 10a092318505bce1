//! Vendor write-back: an incident change mirrored to the workflow of the vendor incident it
//! came from (Symantec MSS UpdateIncidentWorkflow), through the outbox like ticket work.
//!
//! The store enqueues a `writeback` item (target `vendor`) in the transaction of every change
//! to an incident holding findings of a source kind with a vendor workflow
//! ([`socbridge_model::SourceKind::has_vendor_workflow`]), unless the change came from the
//! vendor itself. The worker reads the incident's state when it runs, so one item carries
//! every change made while it waited; a comment is written once, by its own item.

use crate::engine::Engine;
use crate::ticketing::WorkError;
use socbridge_model::SourceKind;
use socbridge_store::OutboxItem;
use std::collections::BTreeSet;

impl Engine {
    /// Does one write-back item: every vendor incident the socbridge incident holds.
    pub(crate) async fn vendor_writeback(&self, item: &OutboxItem) -> Result<(), WorkError> {
        let Some(detail) = self
            .inner
            .store
            .get_incident(item.incident_id, None)
            .await?
        else {
            // The incident is gone (its tenant removed): nothing left to write back.
            return Ok(());
        };
        let targets: BTreeSet<(String, SourceKind)> = detail
            .findings
            .iter()
            .filter(|f| f.source_kind.has_vendor_workflow())
            .map(|f| (f.source.clone(), f.source_kind))
            .collect();
        if let Some((source, kind)) = targets.into_iter().next() {
            return Err(WorkError::Permanent(format!(
                "no write-back for source `{source}` of kind {kind}"
            )));
        }
        Ok(())
    }
}
