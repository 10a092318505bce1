//! SIEM sinks: new findings and incident changes forwarded as OCSF 1.8.0 NDJSON to a SIEM's
//! HTTP collector, at least once.
//!
//! **Durable.** The store queues one row per committed change batch (an ingest's new findings
//! and the incidents it opened or grew, or one incident's change) in the transaction of the
//! change (`store::sinks`). This worker reads a sink's rows in id order, builds the lines from
//! the store's current views with the export's mapping (`socbridge_ocsf`), POSTs them, and
//! records the rows delivered only after a 2xx. A crash, a lost answer or a 5xx sends the same
//! rows again: the collector may see a line twice (a replay), never miss one.
//!
//! **Idempotency header.** Every request carries `X-Request-Id: socbridge-<sink>-<first queue
//! id>-<last queue id>` (with `-<part>of<parts>` when one row is split to the batch size), the
//! same on every resend, so a collector that keeps recent ids can drop a replay.
//!
//! **Isolated.** Each sink runs in its own task with its own backoff: a failing collector
//! holds back only its own rows; polls, tickets and other sinks go on.

use crate::engine::{Engine, EngineError};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use socbridge_connectors::http::Retry;
use socbridge_secrets::{SecretFields, aad_for_source};
use socbridge_store::SinkBatch;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How errors and logs name a collector.
const VENDOR: &str = "SIEM collector";
/// Queue rows read per step of a pass.
const ROWS_PER_READ: i64 = 200;
/// `batch_size` when the config gives none: lines per request.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The largest `batch_size` accepted.
pub const MAX_BATCH_SIZE: usize = 50_000;
/// `timeout` when the config gives none: one request, sent and answered.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Non-secret settings of a sink, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkSettings {
    /// The collector's endpoint (http or https), POSTed NDJSON.
    pub url: String,
    /// The tenants forwarded; empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Lines per request at most.
    pub batch_size: usize,
    /// Deadline of one request.
    pub timeout_ms: u64,
}

impl SinkSettings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("settings are plain data")
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(v.clone())
            .map_err(|e| format!("stored sink settings are unreadable: {e}"))
    }

    /// Does this sink forward `tenant`'s changes?
    pub fn forwards(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// The associated data sealing a sink's credentials: bound to the sink's name.
pub(crate) fn sink_aad(name: &str) -> Vec<u8> {
    aad_for_source("", &format!("sink:{name}"))
}

/// What one pass of a sink delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkReport {
    /// Queue rows recorded as delivered (sent, or not this sink's tenants).
    pub rows: usize,
    /// Rows of tenants the sink does not forward.
    pub skipped: usize,
    /// Lines sent in requests answered 2xx.
    pub lines: usize,
    /// Requests answered 2xx.
    pub requests: usize,
}

/// The request id of the lines of queue rows `first..=last` (part `part` of `parts`).
pub fn request_id(sink: &str, first: i64, last: i64, part: usize, parts: usize) -> String {
    if parts > 1 {
        format!("socbridge-{sink}-{first}-{last}-{part}of{parts}")
    } else {
        format!("socbridge-{sink}-{first}-{last}")
    }
}

/// One request to send: the rows it completes and its lines.
struct Request {
    rows: Vec<i64>,
    id: String,
    body: Vec<u8>,
    lines: usize,
}

/// Packs rows (in order) into requests of at most `batch` lines; a row with more lines than
/// that is sent alone, in parts, and completes with its last part.
fn pack(sink: &str, rows: Vec<(i64, Vec<String>)>, batch: usize) -> Vec<Request> {
    let batch = batch.max(1);
    let mut out = Vec::new();
    let mut group: Vec<i64> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let flush = |group: &mut Vec<i64>, lines: &mut Vec<String>, out: &mut Vec<Request>| {
        if let (Some(first), Some(last)) = (group.first(), group.last()) {
            out.push(Request {
                id: request_id(sink, *first, *last, 1, 1),
                body: ndjson(lines),
                lines: lines.len(),
                rows: std::mem::take(group),
            });
            lines.clear();
        }
    };
    for (id, row_lines) in rows {
        if row_lines.len() > batch {
            flush(&mut group, &mut lines, &mut out);
            let parts = row_lines.len().div_ceil(batch);
            for (k, chunk) in row_lines.chunks(batch).enumerate() {
                out.push(Request {
                    rows: if k + 1 == parts { vec![id] } else { Vec::new() },
                    id: request_id(sink, id, id, k + 1, parts),
                    body: ndjson(chunk),
                    lines: chunk.len(),
                });
            }
            continue;
        }
        if lines.len() + row_lines.len() > batch {
            flush(&mut group, &mut lines, &mut out);
        }
        group.push(id);
        lines.extend(row_lines);
    }
    flush(&mut group, &mut lines, &mut out);
    out
}

fn ndjson(lines: &[String]) -> Vec<u8> {
    let mut body = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
    for l in lines {
        body.extend_from_slice(l.as_bytes());
        body.push(b'\n');
    }
    body
}

impl Engine {
    /// Makes the store's sinks those of the config (sealing their tokens); a sink no longer
    /// listed is removed with its pending rows. Returns how many are configured.
    pub(crate) async fn apply_sinks(&self, sinks: &[SinkSpec]) -> Result<usize, EngineError> {
        let sealed: Vec<(serde_json::Value, Option<Vec<u8>>)> = sinks
            .iter()
            .map(|s| {
                let secret = (!s.secrets.is_empty())
                    .then(|| self.inner.key.seal_fields(&s.secrets, &sink_aad(&s.name)));
                (s.settings.to_json(), secret)
            })
            .collect();
        let new: Vec<socbridge_store::NewSink<'_>> = sinks
            .iter()
            .zip(&sealed)
            .map(|(s, (settings, secret))| socbridge_store::NewSink {
                name: &s.name,
                settings,
                secret: secret.as_deref(),
            })
            .collect();
        self.inner.store.set_sinks(&new).await?;
        Ok(sinks.len())
    }

    /// The OCSF lines of one queue row, from the store's current views, with the export's
    /// mapping: each incident's Incident Finding, then a Detection Finding for each of the
    /// row's findings it holds. An incident gone since (its tenant removed) has no line.
    async fn sink_lines(&self, batch: &SinkBatch) -> Result<Vec<String>, EngineError> {
        let wanted: HashSet<i64> = batch.finding_ids.iter().copied().collect();
        let mut out = Vec::new();
        for id in &batch.incident_ids {
            let Some(detail) = self.inner.store.get_incident(*id, None).await? else {
                continue;
            };
            out.push(socbridge_ocsf::incident_finding(&detail).to_string());
            for f in detail.findings.iter().filter(|f| wanted.contains(&f.id)) {
                let doc = socbridge_ocsf::detection_finding(
                    f,
                    &detail.incident.tenant,
                    Some(&detail.incident),
                );
                out.push(doc.to_string());
            }
        }
        Ok(out)
    }

    /// One pass of a sink: delivers its pending rows in id order until none is left or a
    /// request fails (the rows of that request and after stay pending, in order). `None`
    /// when no sink has that name.
    pub async fn deliver_sink(&self, name: &str) -> Result<Option<SinkReport>, EngineError> {
        let store = &self.inner.store;
        let Some(rec) = store.sinks().await?.into_iter().find(|s| s.name == name) else {
            return Ok(None);
        };
        let err = |detail: String| EngineError::Sink {
            sink: name.to_string(),
            detail,
        };
        let settings = SinkSettings::from_json(&rec.settings).map_err(err)?;
        let token: Option<SecretString> = match &rec.secret {
            None => None,
            Some(sealed) => self
                .inner
                .key
                .open_fields(sealed, &sink_aad(name))?
                .get("token")
                .cloned(),
        };
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let mut report = SinkReport::default();
        loop {
            let batches = store.pending_sink_batches(name, ROWS_PER_READ).await?;
            let full = batches.len() as i64 >= ROWS_PER_READ;
            if batches.is_empty() {
                break;
            }
            let mut skipped = Vec::new();
            let mut rows = Vec::new();
            for b in &batches {
                if !settings.forwards(&b.tenant) {
                    skipped.push(b.id);
                    continue;
                }
                let lines = self.sink_lines(b).await?;
                if lines.is_empty() {
                    skipped.push(b.id);
                } else {
                    rows.push((b.id, lines));
                }
            }
            store.sink_delivered(name, &skipped).await?;
            report.rows += skipped.len();
            report.skipped += skipped.len();
            for req in pack(name, rows, settings.batch_size) {
                let sent = self
                    .inner
                    .http
                    .call(
                        VENDOR,
                        "collector's answer",
                        // A resend carries the same lines under the same request id.
                        Retry::Always,
                        |client| {
                            let mut r = client
                                .post(&settings.url)
                                .timeout(timeout)
                                .header("Content-Type", "application/x-ndjson")
                                .header("X-Request-Id", req.id.as_str())
                                .body(req.body.clone());
                            if let Some(t) = &token {
                                r = r.bearer_auth(t.expose_secret());
                            }
                            r
                        },
                        |_| Ok(()),
                    )
                    .await;
                if let Err(e) = sent {
                    self.inner.metrics.record_sink(name, 0, false);
                    return Err(err(e.to_string()));
                }
                self.inner.metrics.record_sink(name, req.lines, true);
                store.sink_delivered(name, &req.rows).await?;
                report.rows += req.rows.len();
                report.lines += req.lines;
                report.requests += 1;
            }
            if !full {
                break;
            }
        }
        Ok(Some(report))
    }

    /// Runs every sink's pass until no sink has pending rows or `deadline` passes; returns the
    /// rows still pending (all sinks). Failures wait the outbox backoff and try again. For
    /// `serve --until-idle`, the demo and tests.
    pub async fn drain_sinks(&self, deadline: Duration) -> Result<i64, EngineError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut backoff = self.inner.opts.outbox_backoff_min;
        loop {
            let mut left = 0;
            let mut failed = false;
            for s in self.inner.store.sinks().await? {
                if let Err(e) = self.deliver_sink(&s.name).await {
                    tracing::warn!(error = %e, "sink delivery failed; retrying");
                    failed = true;
                }
                left += self.inner.store.sink_backlog(&s.name).await?;
            }
            if left == 0 || tokio::time::Instant::now() >= until {
                return Ok(left);
            }
            if failed {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.inner.opts.outbox_backoff_max);
            } else {
                tokio::time::sleep(self.inner.opts.tick.min(Duration::from_millis(50))).await;
            }
        }
    }

    /// The sinks' half of `serve`: one task per configured sink, started as sinks appear,
    /// each delivering on every tick and backing off on its own failures.
    pub(crate) async fn run_sinks(self, shutdown: CancellationToken) {
        let mut tasks: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut ticker = tokio::time::interval(self.inner.opts.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tasks.retain(|_, t| !t.is_finished());
            let sinks = match self.inner.store.sinks().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the sinks; retrying on the next tick");
                    continue;
                }
            };
            for s in sinks {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(s.name) {
                    let name = slot.key().clone();
                    slot.insert(tokio::spawn(self.clone().run_sink(name, shutdown.clone())));
                }
            }
        }
        for (_, t) in tasks {
            let _ = t.await;
        }
    }

    /// One sink's loop: a pass every tick while it delivers, the outbox backoff (doubling)
    /// after a failure; ends when the sink is removed or on shutdown.
    async fn run_sink(self, name: String, shutdown: CancellationToken) {
        let (min, max) = (
            self.inner.opts.outbox_backoff_min,
            self.inner.opts.outbox_backoff_max,
        );
        let mut backoff = min;
        let job = socbridge_store::sink_job(&name);
        loop {
            // One replica delivers each sink: the one holding its lease.
            if self.inner.leasing.held_fence(&job).is_none() {
                if let Ok(sinks) = self.inner.store.sinks().await {
                    if !sinks.iter().any(|s| s.name == name) {
                        return;
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(self.inner.opts.tick) => {}
                }
                continue;
            }
            let wait = match self.deliver_sink(&name).await {
                Ok(None) => return,
                Ok(Some(r)) => {
                    if r.lines > 0 {
                        tracing::info!(sink = %name, lines = r.lines, rows = r.rows, "sink delivered");
                    }
                    backoff = min;
                    self.inner.opts.tick
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "sink delivery failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(max);
                    wait
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// A sink from `[[sinks]]`, secrets resolved (`token`, when `token_env` is given).
#[derive(Debug)]
pub struct SinkSpec {
    pub name: String,
    pub settings: SinkSettings,
    /// `Debug` shows the names only.
    pub secrets: SecretFields,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(spec: &[(i64, usize)]) -> Vec<(i64, Vec<String>)> {
        spec.iter()
            .map(|(id, n)| (*id, (0..*n).map(|i| format!("{{\"l\":{i}}}")).collect()))
            .collect()
    }

    #[test]
    fn rows_are_packed_in_order_and_a_large_row_is_split() {
        let reqs = pack("s", rows(&[(1, 2), (2, 2), (3, 7), (4, 1)]), 3);
        let got: Vec<(Vec<i64>, usize, String)> = reqs
            .iter()
            .map(|r| (r.rows.clone(), r.lines, r.id.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (vec![1], 2, "socbridge-s-1-1".to_string()),
                (vec![2], 2, "socbridge-s-2-2".to_string()),
                (vec![], 3, "socbridge-s-3-3-1of3".to_string()),
                (vec![], 3, "socbridge-s-3-3-2of3".to_string()),
                (vec![3], 1, "socbridge-s-3-3-3of3".to_string()),
                (vec![4], 1, "socbridge-s-4-4".to_string()),
            ]
        );
        let reqs = pack("s", rows(&[(5, 1), (6, 1), (9, 1)]), 10);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].id, "socbridge-s-5-9");
        assert_eq!(reqs[0].body, b"{\"l\":0}\n{\"l\":0}\n{\"l\":0}\n");
    }

    #[test]
    fn a_tenant_filter_keeps_only_its_tenants() {
        let mut s = SinkSettings {
            url: "http://x".into(),
            tenants: vec![],
            batch_size: 1,
            timeout_ms: 1,
        };
        assert!(s.forwards("acme"));
        s.tenants = vec!["globex".into()];
        assert!(!s.forwards("acme") && s.forwards("globex"));
    }
}
