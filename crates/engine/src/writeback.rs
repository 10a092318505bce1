//! Vendor write-back: an incident change mirrored to the workflow of the vendor incident it
//! came from (Symantec MSS UpdateIncidentWorkflow), through the outbox like ticket work.
//!
//! The store enqueues a `writeback` item (target `vendor`) in the transaction of every change
//! to an incident holding findings of a source kind with a vendor workflow
//! ([`socbridge_model::SourceKind::has_vendor_workflow`]), unless the change came from the
//! vendor itself. The worker reads the incident's state when it runs, so one item carries
//! every change made while it waited; a comment is written once, by its own item.

use crate::engine::{Engine, SourceClient};
use crate::symantec;
use crate::ticketing::WorkError;
use socbridge_model::SourceKind;
use socbridge_store::OutboxItem;
use std::collections::{BTreeMap, BTreeSet};

impl Engine {
    /// Does one write-back item: every vendor incident the socbridge incident holds, source by
    /// source.
    pub(crate) async fn vendor_writeback(&self, item: &OutboxItem) -> Result<(), WorkError> {
        let store = &self.inner.store;
        let Some(detail) = store.get_incident(item.incident_id, None).await? else {
            // The incident is gone (its tenant removed): nothing left to write back.
            return Ok(());
        };
        let mut targets: BTreeMap<(String, SourceKind), BTreeSet<String>> = BTreeMap::new();
        for f in detail
            .findings
            .iter()
            .filter(|f| f.source_kind.has_vendor_workflow())
        {
            targets
                .entry((f.source.clone(), f.source_kind))
                .or_default()
                .insert(symantec::incident_number_of(&f.vendor_key).to_string());
        }
        let ticket_number = store
            .ticket_of_incident(item.incident_id)
            .await?
            .and_then(|t| t.number);
        let comment = item.payload.get("comment").and_then(|c| c.as_str());
        let actor = item
            .payload
            .get("actor")
            .and_then(|a| a.as_str())
            .unwrap_or("socbridge");
        for ((source, kind), numbers) in targets {
            let Some(src) = store.get_source(&item.tenant, &source).await? else {
                // The source was removed: its vendor is no longer socbridge's to write to.
                tracing::info!(tenant = %item.tenant, source = %source, "source removed; write-back skipped");
                continue;
            };
            let client = self
                .source_client(&src)
                .await
                .map_err(|e| WorkError::Permanent(format!("source `{source}`: {e}")))?;
            match client {
                SourceClient::SymantecMss(settings, client) => {
                    let numbers: Vec<String> = numbers.into_iter().collect();
                    symantec::writeback(
                        &client,
                        &settings,
                        &detail,
                        &numbers,
                        ticket_number.as_deref(),
                        comment.map(|c| (c, actor)),
                        item.id,
                    )
                    .await?;
                }
                _ => {
                    return Err(WorkError::Permanent(format!(
                        "source `{source}` of kind {kind} has no write-back"
                    )));
                }
            }
        }
        Ok(())
    }
}
