//! The Cisco XDR incident sink: one XDR incident per socbridge incident of a tenant with the
//! sink on, its status kept in step and a link to the ServiceNow ticket in its
//! `external_references`, through the outbox like ticket work (target `xdr`).
//!
//! The store enqueues `xdr_create` for each new incident and `xdr_sync` on every status
//! change (whatever its origin: an analyst, ServiceNow sync-in, the vendor) and when the
//! ticket gets its URL. The worker reads the incident when it runs, so an item carries every
//! change made before it:
//! - create: look the external id up → adopt; else POST (never repeated after it may have
//!   been sent) → after an ambiguous failure look up again → adopt, else retry later. The
//!   POST carries the current status and, when the ticket exists already, its link.
//! - sync (and after a create): GET the XDR incident, PATCH only what differs (status, the
//!   ticket reference), so doing an item twice writes nothing the second time.
//!
//! XDR is never the origin of an incident change, so nothing here can echo.

use crate::engine::Engine;
use crate::ticketing::WorkError;
use serde::{Deserialize, Serialize};
use socbridge_connectors::xdr::{
    IncidentPatch, IncidentTime, StatusMap, XdrClient, XdrEndpoint, XdrIncident, new_incident,
    ticket_reference,
};
use socbridge_model::{IncidentDetail, Timestamp};
use socbridge_secrets::aad_for_xdr_sink;
use socbridge_store::{OutboxItem, XdrIncidentRecord, XdrSinkRecord};

/// A tenant's XDR sink settings as stored (`xdr_sinks.settings`); the client secret is sealed
/// beside them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdrSettings {
    pub client_id: String,
    pub token_url: String,
    pub ctia_url: String,
    #[serde(default)]
    pub statuses: StatusMap,
}

impl XdrSettings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("XDR settings always serialise")
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("XDR sink settings: {e}"))
    }
}

/// The ticket's (number, URL), when the incident has a ticket with a URL.
fn ticket_of(d: &IncidentDetail) -> Option<(&str, &str)> {
    d.incident
        .ticket
        .as_ref()
        .filter(|t| !t.url.is_empty())
        .map(|t| (t.number.as_str(), t.url.as_str()))
}

impl Engine {
    /// The XDR client of a tenant's sink: its sealed secret opened for as long as the client
    /// lives. Tokens are shared through the engine's cache (one per API client).
    fn xdr_client(&self, sink: &XdrSinkRecord) -> Result<(XdrSettings, XdrClient), String> {
        let settings = XdrSettings::from_json(&sink.settings)?;
        let sealed = sink
            .secret
            .as_deref()
            .ok_or_else(|| "no XDR client secret is stored for this tenant".to_string())?;
        let secrets = self
            .inner
            .key
            .open_fields(sealed, &aad_for_xdr_sink(&sink.tenant))
            .map_err(|e| format!("the XDR client secret: {e}"))?;
        let secret = secrets
            .get("client_secret")
            .cloned()
            .ok_or_else(|| "the stored XDR credentials lack `client_secret`".to_string())?;
        let client = XdrClient::new(
            self.inner.http.clone(),
            &XdrEndpoint {
                token_url: settings.token_url.clone(),
                ctia_url: settings.ctia_url.clone(),
                client_id: settings.client_id.clone(),
            },
            secret,
            self.inner.xdr_tokens.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok((settings, client))
    }

    /// Asks a tenant's XDR for a token: `None` when the sink is off.
    pub async fn check_xdr(
        &self,
        tenant: &str,
    ) -> Result<Option<Result<(), String>>, crate::EngineError> {
        let Some(sink) = self.inner.store.xdr_sink(tenant).await? else {
            return Ok(None);
        };
        Ok(Some(match self.xdr_client(&sink) {
            Ok((_, client)) => client.check().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }))
    }

    /// Does one XDR item (create or sync; see the module docs).
    pub(crate) async fn xdr_item(&self, item: &OutboxItem) -> Result<(), WorkError> {
        let store = &self.inner.store;
        let Some(record) = store.xdr_incident(item.incident_id).await? else {
            return Ok(()); // The incident is gone (its tenant removed).
        };
        let Some(sink) = store.xdr_sink(&item.tenant).await? else {
            tracing::info!(tenant = %item.tenant, incident = item.incident_id, "the XDR sink is off; item skipped");
            return Ok(());
        };
        let Some(detail) = store.get_incident(item.incident_id, None).await? else {
            return Ok(());
        };
        let (settings, client) = self.xdr_client(&sink).map_err(WorkError::Permanent)?;
        let status = settings.statuses.of(detail.incident.status).to_string();
        let remote = self
            .ensure_xdr_incident(&client, &record, &detail, &status)
            .await?;
        let patch = xdr_patch(&remote, &status, ticket_of(&detail), Timestamp::now());
        if patch.is_empty() {
            if record.status.as_deref() != Some(remote.status.as_str())
                || record.xdr_id.as_deref() != Some(remote.id.as_str())
            {
                store
                    .record_xdr_incident(item.incident_id, &remote.id, &remote.status, None)
                    .await?;
            }
            return Ok(());
        }
        let updated = client
            .patch(remote.short_id(), &patch)
            .await?
            .ok_or_else(|| {
                WorkError::Permanent(format!(
                    "XDR incident {} no longer exists",
                    remote.short_id()
                ))
            })?;
        let mut what = Vec::new();
        if let Some(s) = &patch.status {
            what.push(format!("status {} -> {s}", remote.status));
        }
        if patch.external_references.is_some() {
            what.push("ticket link added".to_string());
        }
        let note = format!("XDR incident {}: {}", updated.short_id(), what.join(", "));
        store
            .record_xdr_incident(
                item.incident_id,
                &updated.id,
                &updated.status,
                Some(("xdr_updated", &note)),
            )
            .await?;
        Ok(())
    }

    /// Makes the XDR incident exist (adopting one found by external id) and returns it.
    async fn ensure_xdr_incident(
        &self,
        client: &XdrClient,
        record: &XdrIncidentRecord,
        detail: &IncidentDetail,
        status: &str,
    ) -> Result<XdrIncident, WorkError> {
        let store = &self.inner.store;
        if let Some(id) = &record.xdr_id {
            return client.get(id).await?.ok_or_else(|| {
                WorkError::Permanent(format!(
                    "XDR incident {} no longer exists",
                    socbridge_connectors::xdr::short_id(id)
                ))
            });
        }
        let id = detail.incident.id;
        if let Some(found) = client.find_by_external_id(&record.external_id).await? {
            let note = format!("adopted existing XDR incident {}", found.short_id());
            store
                .record_xdr_incident(id, &found.id, &found.status, Some(("xdr_linked", &note)))
                .await?;
            return Ok(found);
        }
        let body = new_incident(
            detail,
            &record.external_id,
            status,
            ticket_of(detail),
            self.inner.opts.console_url.as_deref(),
        );
        let created = match client.create_incident(&body).await {
            Ok(c) => c,
            Err(e) if e.is_ambiguous() => {
                // The create may have landed: look before trying again.
                tracing::warn!(error = %e, "XDR incident create answer lost; looking it up");
                match client.find_by_external_id(&record.external_id).await? {
                    Some(c) => c,
                    None => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let note = format!("XDR incident {} created", created.short_id());
        store
            .record_xdr_incident(
                id,
                &created.id,
                &created.status,
                Some(("xdr_linked", &note)),
            )
            .await?;
        Ok(created)
    }
}

/// What to change in the XDR incident: the status when it differs (closing also sets
/// `incident_time.closed`), and the ticket reference when it is missing. Empty when the
/// incident is in step.
pub fn xdr_patch(
    remote: &XdrIncident,
    status: &str,
    ticket: Option<(&str, &str)>,
    now: Timestamp,
) -> IncidentPatch {
    let mut patch = IncidentPatch::default();
    if remote.status != status {
        patch.status = Some(status.to_string());
        if status == "Closed" && remote.incident_time.closed.is_none() {
            patch.incident_time = Some(IncidentTime {
                opened: remote.incident_time.opened.clone(),
                closed: Some(now.to_rfc3339()),
            });
        }
    }
    if let Some((number, url)) = ticket
        && !remote.references(url)
    {
        let mut refs = remote.external_references.clone();
        refs.push(ticket_reference(number, url));
        patch.external_references = Some(refs);
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: &str, refs: &[&str]) -> XdrIncident {
        serde_json::from_value(serde_json::json!({
            "id": "https://ctia.example/ctia/incident/incident-1",
            "status": status,
            "incident_time": {"opened": "2026-11-30T09:58:00Z"},
            "external_references": refs.iter().map(|u| serde_json::json!({"source_name": "ServiceNow", "url": u})).collect::<Vec<_>>(),
        }))
        .expect("an incident")
    }

    #[test]
    fn only_what_differs_is_patched() {
        let now = Timestamp::parse_rfc3339("2026-11-30T12:00:00Z").expect("a time");
        let t = Some(("INC1", "https://sn/1"));
        assert!(xdr_patch(&remote("New", &["https://sn/1"]), "New", t, now).is_empty());
        let p = xdr_patch(&remote("New", &["https://sn/1"]), "Closed", t, now);
        assert_eq!(p.status.as_deref(), Some("Closed"));
        let time = p.incident_time.expect("closing sets the closed time");
        assert_eq!(time.opened.as_deref(), Some("2026-11-30T09:58:00Z"));
        assert_eq!(time.closed.as_deref(), Some("2026-11-30T12:00:00.000000Z"));
        assert!(p.external_references.is_none());
        let p = xdr_patch(&remote("Open", &[]), "Open", t, now);
        assert!(p.status.is_none());
        let refs = p.external_references.expect("the ticket link is added");
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].url.as_deref(), Some("https://sn/1"));
        assert!(xdr_patch(&remote("Open", &[]), "Open", None, now).is_empty());
    }

    #[test]
    fn settings_round_trip() {
        let s = XdrSettings {
            client_id: "c".into(),
            token_url: "https://t/iroh/oauth2/token".into(),
            ctia_url: "https://p".into(),
            statuses: StatusMap::default(),
        };
        assert_eq!(XdrSettings::from_json(&s.to_json()).unwrap(), s);
        assert!(XdrSettings::from_json(&serde_json::json!({"client_id": 1})).is_err());
    }
}
