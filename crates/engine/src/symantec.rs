//! Symantec MSS in the pipeline: the client of a source, the poll with a real cursor, and the
//! write-back of incident changes to the vendor's workflow.
//!
//! **Versions.** `IncidentGetList` returns incidents created *or updated* since its start, so
//! the same incident number comes back each time it changes. Each change is one finding, keyed
//! `<IncidentNumber>@<change time>` and observed at the change time; all findings of one number
//! share the subject `vendor_incident:<number>`, which the correlation rules keep in one
//! incident for its whole life. An update therefore grows the same incident (and updates its
//! ticket) and never opens a second; reading the same version again is a duplicate.
//!
//! **Cursor.** The mark is the newest change time stored. A poll asks from `mark - overlap`
//! with no `MaxIncidents` (the service's order within an answer is not documented), sorts the
//! answer by change time, and stores it oldest first in chunks, each chunk with its details
//! (`IncidentWorkflowQuery`) and the mark it justifies, stopping at the per-run cap: what is
//! over the cap comes on the next run, never skipped.
//!
//! **Write-back.** See [`crate::writeback`]: the incident's state is written with
//! `UpdateIncidentWorkflow`, the ticket number as `Reference`, a comment marked with the
//! outbox item, after reading the current workflow (a status already there is not written
//! again; a comment already there, from an attempt whose answer was lost, is not repeated).

use crate::engine::{Engine, EngineError};
use crate::poll::{PollError, PollReport, store_batch, window_start_for};
use crate::settings::{SourceSettings, SymantecMssSettings};
use crate::ticketing::WorkError;
use socbridge_connectors::http::HttpOptions;
use socbridge_connectors::symantec_mss::{
    ClientIdentity, ClientOptions, IncidentSummary, MssSeverity, SecurityIncident, SoapVersion,
    SymantecMssClient, SymantecMssError, WorkflowUpdate, map_incident, summary_change_time,
};
use socbridge_model::{Finding, IncidentDetail, SourceKind, Timestamp};
use socbridge_secrets::SecretFields;
use socbridge_store::{SourceRecord, Store};
use std::time::{Duration, Instant};

impl Engine {
    /// The Symantec MSS client of a tenant's source (`source`, or its only Symantec MSS
    /// source), for the `vendor symantec-mss` commands.
    pub async fn symantec_mss_client(
        &self,
        tenant: &str,
        source: Option<&str>,
    ) -> Result<(SymantecMssSettings, SymantecMssClient), EngineError> {
        let sources = self.select_sources(Some(tenant), source).await?;
        let mut mss = sources
            .into_iter()
            .filter(|s| s.kind == SourceKind::SymantecMss);
        let src = match (mss.next(), mss.next()) {
            (Some(one), None) => one,
            (None, _) => {
                return Err(EngineError::BadSource {
                    tenant: tenant.to_string(),
                    source_name: source.unwrap_or("*").to_string(),
                    detail: "not a Symantec MSS source (add one with `socbridge source add --kind symantec_mss`)".into(),
                });
            }
            (Some(_), Some(_)) => {
                return Err(EngineError::BadSource {
                    tenant: tenant.to_string(),
                    source_name: "*".into(),
                    detail: "the tenant has several Symantec MSS sources: name one with --source"
                        .into(),
                });
            }
        };
        let bad = |detail: String| EngineError::BadSource {
            tenant: src.tenant.clone(),
            source_name: src.name.clone(),
            detail,
        };
        let (settings, secrets) = self.open_source(&src).map_err(bad)?;
        let SourceSettings::SymantecMss(settings) = settings else {
            return Err(bad(
                "its stored settings are not Symantec MSS settings".into()
            ));
        };
        let client = client(&settings, &secrets, &self.inner.opts.http)?;
        Ok((settings, client))
    }
}

/// Incidents whose details are fetched and stored per transaction.
const CHUNK: usize = 25;

/// Builds the client of a source from its settings and opened secrets.
pub(crate) fn client(
    settings: &SymantecMssSettings,
    secrets: &SecretFields,
    http: &HttpOptions,
) -> Result<SymantecMssClient, SymantecMssError> {
    use secrecy::ExposeSecret as _;
    let p12 = secrets
        .get("p12")
        .ok_or_else(|| SymantecMssError::NotPkcs12 {
            detail: "the stored credentials lack the certificate (`p12`)".into(),
        })?;
    let empty = secrecy::SecretString::from(String::new());
    let passphrase = secrets.get("passphrase").unwrap_or(&empty);
    let identity = ClientIdentity::from_pkcs12_base64(p12.expose_secret(), passphrase)?;
    let mut opts = ClientOptions::new(settings.base_url.clone());
    opts.soap_version = if settings.soap_version == "1.1" {
        SoapVersion::Soap11
    } else {
        SoapVersion::Soap12
    };
    opts.root_ca_pem = settings.root_ca_pem.clone();
    opts.proxy = settings.proxy.clone();
    opts.http = http.clone();
    SymantecMssClient::new(&identity, opts)
}

/// The finding of one version of an MSS incident (see the module docs).
pub fn version_finding(summary: &IncidentSummary, detail: Option<&SecurityIncident>) -> Finding {
    let mut f = map_incident(summary, detail);
    let changed = summary_change_time(summary);
    f.vendor_key = format!("{}@{}", summary.incident_number, changed.as_micros());
    f.observed_at = changed;
    f
}

/// The MSS incident number of a finding key made by [`version_finding`].
pub fn incident_number_of(vendor_key: &str) -> &str {
    vendor_key.split('@').next().unwrap_or(vendor_key)
}

pub(crate) async fn poll(
    store: &Store,
    source: &SourceRecord,
    settings: &SymantecMssSettings,
    client: &SymantecMssClient,
    budget: Duration,
    report: &mut PollReport,
) -> Result<(), PollError> {
    let started = Instant::now();
    let since = window_start_for(source.cursor_mark, Timestamp::now(), &settings.poll);
    let severities: Vec<MssSeverity> = settings
        .severities
        .iter()
        .filter_map(|s| MssSeverity::parse(s))
        .collect();
    let list = client
        .incident_get_list(since, &severities, &[], None)
        .await?;
    report.pages += 1;
    report.records += list.incidents.len() + list.quarantined.len();
    let mut summaries = list.incidents;
    summaries.sort_by(|a, b| {
        summary_change_time(a)
            .cmp(&summary_change_time(b))
            .then_with(|| a.incident_number.cmp(&b.incident_number))
    });
    let mut quarantined = list.quarantined;
    let cap = settings.poll.cap_per_run;
    let mut chunks = summaries.chunks(CHUNK).peekable();
    if chunks.peek().is_none() && !quarantined.is_empty() {
        store_batch(
            store,
            source,
            Vec::new(),
            std::mem::take(&mut quarantined),
            cap,
            report,
        )
        .await?;
    }
    for chunk in chunks {
        if started.elapsed() >= budget {
            report.budget_exhausted = true;
            return Ok(());
        }
        let mut findings = Vec::with_capacity(chunk.len());
        for summary in chunk {
            let detail = match client
                .incident_workflow_query(&summary.incident_number)
                .await
            {
                Ok(d) => Some(d),
                // The list named it but the details are refused (a fault for this one
                // incident): store what the summary says rather than lose or block it.
                Err(
                    e @ (SymantecMssError::IncidentNotFound { .. }
                    | SymantecMssError::SoapFault { .. }),
                ) => {
                    tracing::warn!(tenant = %source.tenant, source = %source.name, incident = %summary.incident_number, error = %e, "details unavailable; storing the summary");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            findings.push(version_finding(summary, detail.as_ref()));
        }
        store_batch(
            store,
            source,
            findings,
            std::mem::take(&mut quarantined),
            cap,
            report,
        )
        .await?;
        if report.cap_reached {
            return Ok(());
        }
    }
    Ok(())
}

/// The marker of a write-back's comment: how a comment that landed without its answer is
/// recognised, and how socbridge's own comments are told apart when read back.
pub fn comment_marker(item_id: i64) -> String {
    format!("[socbridge writeback {item_id}]")
}

/// What to write for one vendor incident, given the incident and the vendor's current
/// workflow; `None` when the vendor already shows it all. What socbridge does not change is
/// sent as the vendor has it (status, resolution, severity, assignee), so the update changes
/// only what it means to; a value the vendor has none of is sent empty, which leaves it.
pub(crate) fn plan_writeback(
    number: &str,
    detail: &IncidentDetail,
    current: &SecurityIncident,
    settings: &SymantecMssSettings,
    ticket_number: Option<&str>,
    comment: Option<(&str, &str)>,
    item_id: i64,
) -> Option<WorkflowUpdate> {
    let mapping = &settings.workflow;
    let wf = current.workflow.clone().unwrap_or_default();
    let present = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let now_closed = wf
        .status
        .as_deref()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case(&mapping.closed_status));
    let (status, resolution) = match (detail.incident.status.is_open(), now_closed) {
        (true, true) => (Some(mapping.reopened_status.clone()), None),
        (false, false) => (
            Some(mapping.closed_status.clone()),
            Some(mapping.closed_resolution.clone()),
        ),
        _ => (None, None),
    };
    let marker = comment_marker(item_id);
    let comments = comment.and_then(|(text, actor)| {
        let landed = current
            .comments
            .iter()
            .any(|c| c.comment.as_deref().is_some_and(|t| t.contains(&marker)));
        (!landed).then(|| format!("{text}\n{marker} {actor}"))
    });
    if status.is_none() && comments.is_none() {
        return None;
    }
    let person = present(&wf.assigned_person);
    let organization = if person.is_none() {
        present(&wf.assigned_organization)
    } else {
        None
    };
    Some(WorkflowUpdate {
        number: number.to_string(),
        status: status.or_else(|| present(&wf.status)),
        resolution: resolution.or_else(|| present(&wf.resolution)),
        reference: ticket_number.map(str::to_string),
        severity: present(&current.severity),
        assigned_to_organization: organization,
        assigned_to_person: person,
        comments,
    })
}

/// Writes one incident's state back to the MSS incidents it holds from `source`.
pub(crate) async fn writeback(
    client: &SymantecMssClient,
    settings: &SymantecMssSettings,
    detail: &IncidentDetail,
    numbers: &[String],
    ticket_number: Option<&str>,
    comment: Option<(&str, &str)>,
    item_id: i64,
) -> Result<(), WorkError> {
    for number in numbers {
        let current = client.incident_workflow_query(number).await.map_err(mss)?;
        let plan = plan_writeback(
            number,
            detail,
            &current,
            settings,
            ticket_number,
            comment,
            item_id,
        );
        let Some(update) = plan else { continue };
        let applied = client
            .update_incident_workflow(&update)
            .await
            .map_err(mss)?;
        if !applied {
            return Err(WorkError::Permanent(format!(
                "Symantec MSS refused the workflow update of incident {number} (status `{}`, resolution `{}`): check the source's closed_status / closed_resolution / reopened_status against the values your contract allows",
                update.status.as_deref().unwrap_or(""),
                update.resolution.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

fn mss(e: SymantecMssError) -> WorkError {
    if e.is_bad_input() {
        WorkError::Permanent(e.to_string())
    } else {
        WorkError::Vendor {
            detail: e.to_string(),
            retryable: e.is_transient() || e.is_ambiguous() || e.is_auth(),
        }
    }
}
