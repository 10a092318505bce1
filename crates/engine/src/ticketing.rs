//! ServiceNow ticketing: the outbox worker (exactly one ticket per incident, kept in step)
//! and sync-in (ticket changes back into incidents), both without echo.
//!
//! **Exactly one ticket.** The ticket row and its `correlation_id` are written with the
//! incident's `create` work, in the ingest transaction. The worker looks the ticket up by
//! correlation id before creating it, and again after any ambiguous failure (a timeout, a
//! dropped answer, a 5xx), adopting what it finds. A create is never blindly repeated.
//!
//! **Kept in step.** Ticket work other than notes is reconciliation: the worker reads the
//! incident as it is now and the ticket as it is now, and writes only the difference, so
//! close and reopen are idempotent and an item done twice writes nothing the second time.
//! Notes are appends: each carries a marker `[socbridge note N]`, and the ticket's journal is
//! searched for the marker before the note is written, so a note whose write landed but was
//! never recorded (a lost answer, a kill) is not written twice.
//!
//! **No echo.** Changes taken in from the ticket enqueue no ticket work (the store's
//! `Origin::Ticket`); journal entries written by socbridge (its user, or the marker) are not
//! taken in; and ticket state is not taken in while the incident still has ticket work
//! pending, because that work carries the newer intent.

use crate::engine::{Engine, EngineError};
use crate::metrics::OutboxResult;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use socbridge_connectors::ConnectorError;
use socbridge_connectors::servicenow::{Auth, ServiceNowClient, Ticket};
use socbridge_model::{IncidentDetail, IncidentStatus, IncidentUpdate, Severity, Timestamp};
use socbridge_secrets::SecretFields;
use socbridge_store::{
    CORRELATION_PREFIX, OutboxItem, OutboxKind, StoreError, TARGET_SERVICENOW, TicketLink,
    TicketRecord,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const SYSTEM: &str = "servicenow";

/// The marker at the start of every journal entry socbridge writes.
pub const NOTE_MARKER: &str = "[socbridge";

/// Ticket fields a tenant may set (all optional; unset fields are not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketFields {
    pub category: Option<String>,
    /// sys_id of the assignment group.
    pub assignment_group: Option<String>,
    /// sys_id of the caller.
    pub caller_id: Option<String>,
}

impl TicketFields {
    /// These fields with `over`'s set ones replacing them.
    pub fn overlay_with(&self, over: &TicketFields) -> TicketFields {
        self.overlay(Some(over))
    }

    fn overlay(&self, over: Option<&TicketFields>) -> TicketFields {
        let Some(o) = over else { return self.clone() };
        TicketFields {
            category: o.category.clone().or_else(|| self.category.clone()),
            assignment_group: o
                .assignment_group
                .clone()
                .or_else(|| self.assignment_group.clone()),
            caller_id: o.caller_id.clone().or_else(|| self.caller_id.clone()),
        }
    }
}

/// Non-secret settings of the ServiceNow link, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketingSettings {
    pub instance_url: String,
    pub username: String,
    /// Set for OAuth (password grant); Basic auth otherwise.
    pub client_id: Option<String>,
    /// The header carrying the webhook's shared secret.
    pub webhook_header: String,
    /// The state socbridge sets when its incident is resolved or closed (default `6`
    /// Resolved: a default instance makes `7` Closed read-only, so a later reopen could not
    /// be written).
    pub close_state: String,
    /// The state socbridge sets on reopen (default `2` In Progress).
    pub reopen_state: String,
    /// The close code socbridge writes (must be one of the instance's choices).
    pub close_code: String,
    /// Ticket states that mean closed, each with the incident status it maps to (defaults:
    /// 6 resolved, 7 closed, 8 closed).
    pub closed_states: BTreeMap<String, IncidentStatus>,
    /// Sync-in polling interval, the webhook's safety net.
    pub sync_interval_secs: u64,
    pub fields: TicketFields,
    /// Per-tenant field overrides.
    pub tenants: BTreeMap<String, TicketFields>,
}

impl TicketingSettings {
    pub fn defaults(instance_url: String, username: String) -> Self {
        TicketingSettings {
            instance_url,
            username,
            client_id: None,
            webhook_header: "X-Socbridge-Secret".into(),
            close_state: "6".into(),
            reopen_state: "2".into(),
            close_code: "Solution provided".into(),
            closed_states: [
                ("6".to_string(), IncidentStatus::Resolved),
                ("7".to_string(), IncidentStatus::Closed),
                ("8".to_string(), IncidentStatus::Closed),
            ]
            .into_iter()
            .collect(),
            sync_interval_secs: 60,
            fields: TicketFields {
                category: Some("security".into()),
                ..TicketFields::default()
            },
            tenants: BTreeMap::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("settings are plain data")
    }

    pub fn from_json(v: &Value) -> Result<Self, String> {
        serde_json::from_value(v.clone())
            .map_err(|e| format!("stored ServiceNow settings are unreadable: {e}"))
    }
}

/// ServiceNow impact and urgency (1 high .. 3 low) for an incident severity.
pub fn impact_urgency(sev: Severity) -> (&'static str, &'static str) {
    match sev {
        Severity::Critical => ("1", "1"),
        Severity::High => ("1", "2"),
        Severity::Medium => ("2", "2"),
        Severity::Low => ("3", "2"),
        Severity::Informational => ("3", "3"),
    }
}

/// The live link: settings, a client, the webhook secret.
pub(crate) struct Link {
    pub settings: TicketingSettings,
    pub client: ServiceNowClient,
    pub webhook_secret: Option<secrecy::SecretString>,
}

/// What one pass of the outbox worker did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct OutboxReport {
    pub done: usize,
    pub retried: usize,
    pub failed: usize,
}

/// What one sync-in pass did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    pub tickets_read: usize,
    pub incidents_changed: usize,
    pub notes_taken_in: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Cannot be done as asked; retrying will not help (the item is failed at once).
    #[error("{0}")]
    Permanent(String),
    /// A vendor's write-back failed.
    #[error("{detail}")]
    Vendor { detail: String, retryable: bool },
}

impl WorkError {
    fn retryable(&self) -> bool {
        match self {
            WorkError::Connector(e) => e.is_transient() || e.is_ambiguous() || e.is_auth(),
            WorkError::Store(_) => true,
            WorkError::Permanent(_) => false,
            WorkError::Vendor { retryable, .. } => *retryable,
        }
    }
}

fn desc_line(out: &mut String, line: impl AsRef<str>) {
    out.push_str(line.as_ref());
    out.push('\n');
}

/// The ticket description: what happened, on what, and where to look.
/// Findings a ticket's description lists (the rest are counted): all the ticket worker reads
/// of an incident's findings.
const DESCRIPTION_FINDINGS: usize = 20;

fn description(d: &IncidentDetail, console_url: Option<&str>) -> String {
    let i = &d.incident;
    let mut s = String::new();
    desc_line(
        &mut s,
        format!(
            "socbridge incident {} for tenant {}: {}",
            i.id, i.tenant, i.title
        ),
    );
    desc_line(
        &mut s,
        format!(
            "Severity: {}. Findings: {}. First seen {}, last seen {}.",
            i.severity,
            i.finding_count,
            i.first_seen.to_rfc3339_seconds(),
            i.last_seen.to_rfc3339_seconds()
        ),
    );
    if let Some(url) = console_url {
        desc_line(
            &mut s,
            format!(
                "In socbridge: {}/#/incidents/{}",
                url.trim_end_matches('/'),
                i.id
            ),
        );
    }
    if !i.observables.is_empty() {
        desc_line(&mut s, "\nObservables:");
        for o in i.observables.iter().take(50) {
            desc_line(&mut s, format!("- {}: {}", o.kind, o.value));
        }
    }
    desc_line(&mut s, "\nFindings:");
    for f in d.findings.iter().take(DESCRIPTION_FINDINGS) {
        desc_line(
            &mut s,
            format!(
                "- {} [{}] {} ({})",
                f.observed_at.to_rfc3339_seconds(),
                f.severity,
                f.title,
                f.source_kind
            ),
        );
    }
    let all = usize::try_from(i.finding_count)
        .unwrap_or(0)
        .max(d.findings.len());
    if all > DESCRIPTION_FINDINGS {
        desc_line(
            &mut s,
            format!("- ... and {} more", all - DESCRIPTION_FINDINGS),
        );
    }
    s
}

fn link_of(client: &ServiceNowClient, t: &Ticket) -> TicketLink {
    TicketLink {
        sys_id: t.sys_id.0.clone(),
        number: t.number.0.clone(),
        state: t.state.0.clone(),
        url: client.ticket_url(t.sys_id.as_str()),
        remote_updated_on: t.updated_on(),
    }
}

impl Engine {
    /// The ServiceNow link, if configured (cached after the first call).
    pub(crate) async fn link(&self) -> Result<Option<Arc<Link>>, EngineError> {
        if let Some(l) = self.inner.link.lock().await.clone() {
            return Ok(Some(l));
        }
        let Some(rec) = self.inner.store.ticketing().await? else {
            return Ok(None);
        };
        let bad = |detail: String| EngineError::Ticketing(detail);
        let settings = TicketingSettings::from_json(&rec.settings).map_err(bad)?;
        let secrets = match rec.secret.as_deref() {
            Some(sealed) => self.inner.key.open_fields(sealed, &ticketing_aad())?,
            None => SecretFields::new(),
        };
        let password = secrets
            .get("password")
            .cloned()
            .ok_or_else(|| bad("no ServiceNow password is stored".into()))?;
        let auth = match (&settings.client_id, secrets.get("client_secret")) {
            (Some(client_id), Some(secret)) => Auth::OAuth {
                client_id: client_id.clone(),
                client_secret: secret.clone(),
                user: settings.username.clone(),
                password,
            },
            _ => Auth::Basic {
                user: settings.username.clone(),
                password,
            },
        };
        let client = ServiceNowClient::new(&settings.instance_url, auth, self.inner.http.clone())
            .map_err(|e| bad(e.to_string()))?;
        let link = Arc::new(Link {
            settings,
            client,
            webhook_secret: secrets.get("webhook_secret").cloned(),
        });
        *self.inner.link.lock().await = Some(link.clone());
        Ok(Some(link))
    }

    /// Forgets the cached link (after the config changed it).
    pub(crate) async fn reset_link(&self) {
        *self.inner.link.lock().await = None;
    }

    /// Is a ServiceNow link configured?
    pub async fn ticketing_configured(&self) -> Result<bool, EngineError> {
        Ok(self.link().await?.is_some())
    }

    /// Checks the ServiceNow credentials, if ticketing is configured.
    pub async fn check_ticketing(&self) -> Result<Option<Result<(), String>>, EngineError> {
        let Some(link) = self.link().await? else {
            return Ok(None);
        };
        Ok(Some(link.client.check().await.map_err(|e| e.to_string())))
    }

    /// One pass over the due outbox items: each tenant's in order, one writer per tenant,
    /// tenants in parallel. Ticket work waits while ticketing is not configured; vendor
    /// write-backs go on regardless.
    pub async fn process_outbox(&self) -> Result<OutboxReport, EngineError> {
        let link = self.link().await?;
        let items = self.inner.store.due_outbox(Timestamp::now(), 1000).await?;
        let mut by_tenant: BTreeMap<(i64, String), Vec<OutboxItem>> = BTreeMap::new();
        for item in items {
            if item.target == TARGET_SERVICENOW && link.is_none() {
                continue;
            }
            by_tenant
                .entry((item.tenant_id, item.tenant.clone()))
                .or_default()
                .push(item);
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(
            self.inner.opts.concurrency.max(1),
        ));
        let mut set = tokio::task::JoinSet::new();
        for ((tenant_id, tenant), items) in by_tenant {
            let engine = self.clone();
            let link = link.clone();
            let sem = sem.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                // One writer per tenant in this process...
                let lock = engine.tenant_lock(&tenant).await;
                let _held = lock.lock().await;
                // ...and across replicas: the one holding the tenant's outbox lease.
                let job = socbridge_store::outbox_job(tenant_id);
                let _busy = engine.try_busy(&job);
                let access = engine.access(&job).await?;
                let Some(fence) = access.fence() else {
                    return Ok(OutboxReport::default());
                };
                let result = engine
                    .process_tenant(link.as_deref(), items, Some(&fence))
                    .await;
                access.finish(&engine.inner.store).await;
                result
            });
        }
        let mut report = OutboxReport::default();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(r)) => {
                    report.done += r.done;
                    report.retried += r.retried;
                    report.failed += r.failed;
                }
                Ok(Err(EngineError::Store(StoreError::LeaseLost { job }))) => {
                    tracing::warn!(%job, "outbox pass stopped: another replica took this tenant over");
                    self.inner.metrics.record_lease_lost("outbox");
                }
                Ok(Err(e)) => tracing::error!(error = %e, "outbox pass failed"),
                Err(e) => tracing::error!(error = %e, "an outbox task panicked"),
            }
        }
        Ok(report)
    }

    async fn tenant_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.tenant_locks.lock().await;
        locks.entry(tenant.to_string()).or_default().clone()
    }

    /// Does a tenant's due items in order; each result is recorded under `fence`, the lease
    /// of the tenant's outbox, and the pass stops once that lease is lost.
    async fn process_tenant(
        &self,
        link: Option<&Link>,
        items: Vec<OutboxItem>,
        fence: Option<&socbridge_store::Fence>,
    ) -> Result<OutboxReport, EngineError> {
        // `due_outbox` hands out at most one item per incident, the oldest open one, so the
        // items of an incident are done in order without a check here.
        let mut report = OutboxReport::default();
        for item in items {
            let span = tracing::info_span!("outbox", tenant = %item.tenant, incident = item.incident_id, target = %item.target, kind = item.kind.as_str(), item = item.id);
            let result = tracing::Instrument::instrument(self.do_item(link, &item), span).await;
            let outcome = match &result {
                Ok(()) => OutboxResult::Done,
                Err(e) if e.retryable() || item.attempts + 1 < 3 => OutboxResult::Retried,
                Err(_) => OutboxResult::Failed,
            };
            self.inner.metrics.record_outbox(
                &item.tenant,
                &item.target,
                item.kind.as_str(),
                outcome,
            );
            let error = result.err().map(|e| e.to_string()).unwrap_or_default();
            match outcome {
                OutboxResult::Done => {
                    self.inner.store.outbox_done(item.id, fence).await?;
                    report.done += 1;
                }
                OutboxResult::Retried => {
                    let wait = self.outbox_backoff(item.attempts + 1);
                    tracing::warn!(tenant = %item.tenant, incident = item.incident_id, kind = item.kind.as_str(), %error, ?wait, "outbox work failed; will retry");
                    let next = Timestamp::now()
                        .saturating_add_micros(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
                    self.inner
                        .store
                        .outbox_retry(item.id, &error, next, fence)
                        .await?;
                    report.retried += 1;
                }
                OutboxResult::Failed => {
                    tracing::error!(tenant = %item.tenant, incident = item.incident_id, kind = item.kind.as_str(), %error, "outbox work failed for good");
                    self.inner
                        .store
                        .outbox_failed(item.id, &error, fence)
                        .await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    fn outbox_backoff(&self, attempts: i64) -> Duration {
        let min = self.inner.opts.outbox_backoff_min;
        let max = self.inner.opts.outbox_backoff_max;
        let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
        let base = min.saturating_mul(2u32.saturating_pow(exp)).min(max);
        // Jitter in [base/2, base]: replicas and tenants do not retry in lockstep.
        base.mul_f64(0.5 + 0.5 * rand::random::<f64>())
    }

    async fn do_item(&self, link: Option<&Link>, item: &OutboxItem) -> Result<(), WorkError> {
        if item.kind == OutboxKind::Writeback {
            return self.vendor_writeback(item).await;
        }
        if matches!(item.kind, OutboxKind::Contain | OutboxKind::Release) {
            return self.containment_item(item).await;
        }
        if matches!(item.kind, OutboxKind::XdrCreate | OutboxKind::XdrSync) {
            return self.xdr_item(item).await;
        }
        let link = link.ok_or_else(|| {
            WorkError::Permanent("ticketing is not configured (no [servicenow] section)".into())
        })?;
        match item.kind {
            OutboxKind::Note => self.append_note(link, item).await,
            kind => self.reconcile(link, item.incident_id, kind).await,
        }
    }

    /// Makes the ticket exist (adopting one found by correlation id) and returns it.
    async fn ensure_ticket(
        &self,
        link: &Link,
        ticket: &TicketRecord,
        detail: &IncidentDetail,
    ) -> Result<Ticket, WorkError> {
        let client = &link.client;
        if let Some(sys_id) = &ticket.sys_id {
            return match client.get(sys_id).await? {
                Some(t) => Ok(t),
                None => Err(WorkError::Permanent(format!(
                    "ticket {} ({sys_id}) no longer exists in ServiceNow",
                    ticket.number.as_deref().unwrap_or("?")
                ))),
            };
        }
        if let Some(found) = client
            .find_by_correlation_id(&ticket.correlation_id)
            .await?
        {
            let link_rec = link_of(client, &found);
            let note = format!("adopted existing ticket {}", found.number.as_str());
            self.inner
                .store
                .record_ticket(
                    detail.incident.id,
                    &link_rec,
                    Some(("ticket_linked", &note)),
                )
                .await?;
            return Ok(found);
        }
        let fields = self.create_fields(link, ticket, detail);
        let created = match client.create(&fields).await {
            Ok(t) => t,
            Err(e) if e.is_ambiguous() => {
                // The create may have landed: look before trying again.
                tracing::warn!(error = %e, "ticket create answer lost; looking it up");
                match client
                    .find_by_correlation_id(&ticket.correlation_id)
                    .await?
                {
                    Some(t) => t,
                    None => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let link_rec = link_of(client, &created);
        let note = format!("ticket {} created", created.number.as_str());
        self.inner
            .store
            .record_ticket(
                detail.incident.id,
                &link_rec,
                Some(("ticket_linked", &note)),
            )
            .await?;
        Ok(created)
    }

    fn create_fields(
        &self,
        link: &Link,
        ticket: &TicketRecord,
        d: &IncidentDetail,
    ) -> Map<String, Value> {
        let i = &d.incident;
        let (impact, urgency) = impact_urgency(i.severity);
        let f = link
            .settings
            .fields
            .overlay(link.settings.tenants.get(&i.tenant));
        let mut m = Map::new();
        m.insert("short_description".into(), json!(short_description(d)));
        m.insert(
            "description".into(),
            json!(description(d, self.inner.opts.console_url.as_deref())),
        );
        m.insert("impact".into(), json!(impact));
        m.insert("urgency".into(), json!(urgency));
        m.insert("correlation_id".into(), json!(ticket.correlation_id));
        m.insert("correlation_display".into(), json!("socbridge"));
        if let Some(c) = f.category {
            m.insert("category".into(), json!(c));
        }
        if let Some(g) = f.assignment_group {
            m.insert("assignment_group".into(), json!(g));
        }
        if let Some(c) = f.caller_id {
            m.insert("caller_id".into(), json!(c));
        }
        m
    }

    /// Brings the ticket in line with the incident: creates it if needed, then writes the
    /// fields that differ (state on close and reopen, impact/urgency, the summary).
    async fn reconcile(
        &self,
        link: &Link,
        incident_id: i64,
        kind: OutboxKind,
    ) -> Result<(), WorkError> {
        let store = &self.inner.store;
        let Some(detail) = store
            .get_incident_head(incident_id, None, DESCRIPTION_FINDINGS)
            .await?
        else {
            return Ok(()); // The incident is gone (its tenant removed): nothing to do.
        };
        let Some(ticket) = store.ticket_of_incident(incident_id).await? else {
            return Err(WorkError::Permanent(
                "the incident has no ticket row".into(),
            ));
        };
        let remote = self.ensure_ticket(link, &ticket, &detail).await?;
        let s = &link.settings;
        let i = &detail.incident;
        let remote_closed = s.closed_states.contains_key(remote.state.as_str());
        let mut patch = Map::new();
        if !i.status.is_open() && !remote_closed {
            patch.insert("state".into(), json!(s.close_state));
            patch.insert("close_code".into(), json!(s.close_code));
            let notes = match &i.resolution {
                Some(r) => format!("Closed in socbridge ({}): {r}", i.status),
                None => format!("Closed in socbridge ({})", i.status),
            };
            patch.insert("close_notes".into(), json!(notes));
        } else if i.status.is_open() && remote_closed && kind == OutboxKind::Reopen {
            patch.insert("state".into(), json!(s.reopen_state));
        }
        // Severity may rise as findings arrive: impact, urgency and the summary follow while
        // the incident is open, written only where the ticket differs.
        if i.status.is_open() && kind == OutboxKind::Update {
            let (impact, urgency) = impact_urgency(i.severity);
            let summary = short_description(&detail);
            for (field, want, have) in [
                ("impact", impact, &remote.impact),
                ("urgency", urgency, &remote.urgency),
                (
                    "short_description",
                    summary.as_str(),
                    &remote.short_description,
                ),
            ] {
                if have.as_str() != want {
                    patch.insert(field.into(), json!(want));
                }
            }
        }
        let result = if patch.is_empty() {
            remote
        } else {
            let sys_id = remote.sys_id.0.clone();
            match link.client.update(&sys_id, &patch).await {
                Ok(t) => t,
                Err(ConnectorError::Forbidden { detail, .. }) => {
                    return Err(WorkError::Permanent(format!(
                        "ServiceNow refused the change to {}: {detail}",
                        remote.number.as_str()
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let event = match (kind, patch.contains_key("state")) {
            (OutboxKind::Close, true) => {
                Some(format!("ticket {} resolved", result.number.as_str()))
            }
            (OutboxKind::Reopen, true) => {
                Some(format!("ticket {} reopened", result.number.as_str()))
            }
            _ => None,
        };
        store
            .record_ticket(
                incident_id,
                &link_of(&link.client, &result),
                event.as_deref().map(|e| ("ticket_sync", e)),
            )
            .await?;
        Ok(())
    }

    async fn append_note(&self, link: &Link, item: &OutboxItem) -> Result<(), WorkError> {
        let store = &self.inner.store;
        let Some(ticket) = store.ticket_of_incident(item.incident_id).await? else {
            return Err(WorkError::Permanent(
                "the incident has no ticket row".into(),
            ));
        };
        let Some(sys_id) = ticket.sys_id.clone() else {
            // The create is still to come (it is earlier in the queue).
            return Err(WorkError::Store(StoreError::NotFound {
                what: "the ticket (not created yet)".into(),
            }));
        };
        let marker = format!("[socbridge note {}]", item.id);
        // An earlier attempt may have landed without being recorded: its answer lost, or the
        // process killed between the write and `outbox_done` (which leaves no failed attempt
        // behind). So look for the marker before every write, not only after a failure.
        let since = item.created_at.saturating_sub_micros(120_000_000);
        let journal = link.client.journal(&sys_id, Some(since)).await?;
        if journal.iter().any(|e| e.value.as_str().contains(&marker)) {
            return Ok(());
        }
        let text = item.payload["text"].as_str().unwrap_or_default();
        let actor = item.payload["actor"].as_str().unwrap_or("socbridge");
        let mut patch = Map::new();
        patch.insert(
            "work_notes".into(),
            json!(format!("{marker} {actor}: {text}")),
        );
        let t = link.client.update(&sys_id, &patch).await?;
        store
            .record_ticket(item.incident_id, &link_of(&link.client, &t), None)
            .await?;
        Ok(())
    }

    /// Takes one ticket's state and notes into its incident (used by the webhook and the
    /// sync-in poll). `local` is socbridge's record of the ticket, found by its sys_id.
    pub(crate) async fn sync_ticket(
        &self,
        link: &Link,
        local: &TicketRecord,
        remote: &Ticket,
        report: &mut SyncReport,
    ) -> Result<(), WorkError> {
        let store = &self.inner.store;
        let id = local.incident_id;
        let Some(detail) = store.get_incident_head(id, None, 0).await? else {
            return Ok(());
        };
        report.tickets_read += 1;
        let s = &link.settings;
        let by = remote.sys_updated_by.non_empty().unwrap_or("servicenow");
        let actor = format!("servicenow:{by}");
        let pending = store.has_pending_ticket_work(id).await?;
        let open = detail.incident.status.is_open();
        let closed_as = s.closed_states.get(remote.state.as_str()).copied();
        if !pending {
            let update = match closed_as {
                Some(status) if open => Some(IncidentUpdate {
                    status: Some(status),
                    resolution: remote.close_code.non_empty().map(|c| {
                        match remote.close_notes.non_empty() {
                            Some(n) => format!("{c}: {n}"),
                            None => c.to_string(),
                        }
                    }),
                    assignee: None,
                    comment: None,
                    actor: actor.clone(),
                }),
                None if !open => Some(IncidentUpdate {
                    status: Some(IncidentStatus::InProgress),
                    resolution: None,
                    assignee: None,
                    comment: None,
                    actor: actor.clone(),
                }),
                _ => None,
            };
            if let Some(u) = update {
                match store.apply_ticket_change(id, &u, None).await {
                    Ok(_) => report.incidents_changed += 1,
                    Err(StoreError::Conflict { detail }) => {
                        tracing::warn!(incident = id, %detail, "ticket reopened but the incident cannot be");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        // Notes since a little before what we last saw of the ticket.
        let since = local
            .remote_updated_on
            .map(|t| t.saturating_sub_micros(300_000_000));
        let journal = link.client.journal(remote.sys_id.as_str(), since).await?;
        for e in journal {
            let mine = e.sys_created_by.as_str() == link.client.user()
                || e.value.as_str().trim_start().starts_with(NOTE_MARKER);
            if mine || e.value.as_str().trim().is_empty() {
                continue;
            }
            let entry_id = e.sys_id.as_str();
            if store.journal_seen(id, entry_id).await? {
                continue;
            }
            let who = e.sys_created_by.non_empty().unwrap_or("servicenow");
            let u = IncidentUpdate {
                status: None,
                resolution: None,
                assignee: None,
                comment: Some(format!(
                    "{} from ServiceNow: {}",
                    e.element.as_str(),
                    e.value.as_str()
                )),
                actor: format!("servicenow:{who}"),
            };
            store.apply_ticket_change(id, &u, Some(entry_id)).await?;
            report.notes_taken_in += 1;
        }
        store
            .record_ticket(id, &link_of(&link.client, remote), None)
            .await?;
        Ok(())
    }

    /// The safety net: reads every socbridge ticket changed since the mark (all pages) and
    /// takes each in. The mark never passes the poll's own start, so a ticket changed while
    /// the pages were read is read again next time.
    pub async fn sync_tickets(&self) -> Result<SyncReport, EngineError> {
        let Some(link) = self.link().await? else {
            return Ok(SyncReport::default());
        };
        let store = &self.inner.store;
        let rec = store.ticketing().await?;
        let started = Timestamp::now();
        let since = match rec.and_then(|r| r.sync_mark) {
            Some(m) => m.saturating_sub_micros(120_000_000),
            None => started.saturating_sub_micros(3_600_000_000),
        };
        let mut report = SyncReport::default();
        let mut offset = 0u64;
        let mut newest: Option<Timestamp> = None;
        let limit = 200u32;
        let result: Result<(), String> = async {
            loop {
                let page = link
                    .client
                    .updated_since(since, CORRELATION_PREFIX, offset, limit)
                    .await
                    .map_err(|e| e.to_string())?;
                let n = page.items.len();
                for t in &page.items {
                    newest = newest.max(t.updated_on());
                    // Only tickets socbridge created or adopted: a record that merely carries
                    // one of its correlation ids is someone else's.
                    let Some(local) = store
                        .find_ticket(t.sys_id.as_str())
                        .await
                        .map_err(|e| e.to_string())?
                    else {
                        continue;
                    };
                    self.sync_ticket(&link, &local, t, &mut report)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                offset += n as u64;
                let more = page.total.map_or(n == limit as usize, |t| offset < t);
                if n == 0 || !more {
                    return Ok(());
                }
            }
        }
        .await;
        let mark = newest.map(|n| n.min(started));
        store
            .record_ticket_sync(mark, result.as_ref().err().map(String::as_str))
            .await?;
        result.map_err(EngineError::Ticketing)?;
        Ok(report)
    }

    /// Runs the outbox until nothing is due, waiting for retries up to `deadline`. Returns
    /// the pending count left. Without ticketing configured, ticket work is not waited for (it
    /// stays queued for when it is).
    pub async fn drain_outbox(&self, deadline: Duration) -> Result<i64, EngineError> {
        let until = std::time::Instant::now() + deadline;
        let without = match self.link().await? {
            Some(_) => None,
            None => Some(TARGET_SERVICENOW),
        };
        loop {
            let pass = self.process_outbox().await?;
            let stats = self.inner.store.outbox_stats_without(without).await?;
            if stats.pending == 0 || std::time::Instant::now() >= until {
                return Ok(stats.pending);
            }
            // A pass that did nothing means the rest waits for its retry time.
            if pass.done + pass.retried + pass.failed == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn short_description(d: &IncidentDetail) -> String {
    let mut s = format!("[{}] {}", d.incident.tenant, d.incident.title);
    if s.chars().count() > 160 {
        s = s.chars().take(159).collect::<String>() + "…";
    }
    s
}

/// The associated data sealing the ServiceNow secrets (no tenant is named with an empty
/// string, so it cannot collide with a source's).
pub(crate) fn ticketing_aad() -> Vec<u8> {
    socbridge_secrets::aad_for_source("", SYSTEM)
}

/// Why a webhook call was refused (each maps to a 4xx the caller can act on).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("ServiceNow ticketing is not configured")]
    NotConfigured,
    #[error("missing or wrong shared secret in header `{0}`")]
    Unauthorized(String),
    #[error("invalid body: {0}")]
    BadBody(String),
    #[error("no socbridge ticket has sys_id `{0}`")]
    UnknownTicket(String),
    #[error("could not read the ticket from ServiceNow: {0}")]
    Upstream(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Compares in time independent of where the strings differ.
fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

/// The ticket a webhook body names: its `sys_id`, a non-blank string (anything else in the
/// body is ignored). Public so the body's parsing can be exercised on its own (the fuzz checks).
pub fn webhook_sys_id(body: &[u8]) -> Result<String, WebhookError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadBody(e.to_string()))?;
    v.get("sys_id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| WebhookError::BadBody("`sys_id` (a string) is required".into()))
}

impl Engine {
    /// `POST /hooks/servicenow`: checks the shared secret (constant time), reads the ticket's
    /// `sys_id` from the body, and takes the ticket in as sync-in would. The body is only a
    /// trigger: state and notes are read back from ServiceNow, so a forged body can change
    /// nothing it does not already say there.
    pub async fn servicenow_webhook(
        &self,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: &[u8],
    ) -> Result<SyncReport, WebhookError> {
        let link = self.link().await?.ok_or(WebhookError::NotConfigured)?;
        let Some(expected) = &link.webhook_secret else {
            return Err(WebhookError::NotConfigured);
        };
        let name = link.settings.webhook_header.clone();
        let given = header(&name).unwrap_or_default();
        if !secret_matches(
            given.as_bytes(),
            secrecy::ExposeSecret::expose_secret(expected).as_bytes(),
        ) {
            return Err(WebhookError::Unauthorized(name));
        }
        let sys_id = webhook_sys_id(body)?;
        let sys_id = sys_id.as_str();
        let local = self
            .inner
            .store
            .find_ticket(sys_id)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| WebhookError::UnknownTicket(sys_id.to_string()))?;
        let remote = link
            .client
            .get(sys_id)
            .await
            .map_err(|e| WebhookError::Upstream(e.to_string()))?
            .ok_or_else(|| WebhookError::UnknownTicket(sys_id.to_string()))?;
        let mut report = SyncReport::default();
        self.sync_ticket(&link, &local, &remote, &mut report)
            .await
            .map_err(|e| WebhookError::Upstream(e.to_string()))?;
        Ok(report)
    }
}
