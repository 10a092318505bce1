//! The engine's own counters, since the process started: polls and what they stored, and the
//! outbox work done (tickets, write-backs, containment), by tenant and source or target.
//! `/metrics` renders them as Prometheus counters (`socbridge_polls_total`, ...); the store's
//! gauges (findings held, outbox depth) come from the database instead.

use crate::poll::PollReport;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What the polls of one (tenant, source) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollCounters {
    pub ok: u64,
    pub failed: u64,
    pub records: u64,
    pub new_findings: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub incidents_created: u64,
}

/// How an outbox item's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OutboxResult {
    Done,
    Retried,
    Failed,
}

impl OutboxResult {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxResult::Done => "done",
            OutboxResult::Retried => "retried",
            OutboxResult::Failed => "failed",
        }
    }
}

/// (tenant, source, kind).
pub type PollKey = (String, String, String);
/// (tenant, target, kind, result).
pub type OutboxKey = (String, String, String, OutboxResult);

/// A copy of the counters, for rendering.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub polls: BTreeMap<PollKey, PollCounters>,
    pub outbox: BTreeMap<OutboxKey, u64>,
    /// By sink name.
    pub sinks: BTreeMap<String, SinkCounters>,
    /// Work stopped because its lease was lost (another replica took the job over): its
    /// fenced write was refused. By kind of work (`poll`, `outbox`).
    pub leases_lost: BTreeMap<String, u64>,
}

/// What a SIEM sink delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCounters {
    /// Requests answered 2xx.
    pub requests: u64,
    /// Requests that failed after the HTTP stack's retries.
    pub failures: u64,
    /// Lines in requests answered 2xx (a resent line counts again).
    pub lines: u64,
}

#[derive(Debug, Default)]
pub struct EngineMetrics {
    inner: Mutex<MetricsSnapshot>,
}

impl EngineMetrics {
    pub(crate) fn record_poll(&self, report: &PollReport) {
        self.record(report, true);
    }

    /// What a batch of pushed events stored: counted with its source's findings, records and
    /// duplicates, but not as a poll.
    pub(crate) fn record_push(&self, report: &PollReport) {
        self.record(report, false);
    }

    fn record(&self, report: &PollReport, poll: bool) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let c = m
            .polls
            .entry((
                report.tenant.clone(),
                report.source.clone(),
                report.kind.to_string(),
            ))
            .or_default();
        if poll {
            if report.error.is_some() {
                c.failed += 1;
            } else {
                c.ok += 1;
            }
        }
        c.records += report.records as u64;
        c.new_findings += report.new_findings as u64;
        c.duplicates += report.duplicates as u64;
        c.quarantined += report.quarantined as u64;
        c.incidents_created += report.incidents_created as u64;
    }

    pub(crate) fn record_outbox(&self, tenant: &str, target: &str, kind: &str, r: OutboxResult) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        *m.outbox
            .entry((tenant.to_string(), target.to_string(), kind.to_string(), r))
            .or_default() += 1;
    }

    pub(crate) fn record_sink(&self, sink: &str, lines: usize, ok: bool) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        let c = m.sinks.entry(sink.to_string()).or_default();
        if ok {
            c.requests += 1;
            c.lines += lines as u64;
        } else {
            c.failures += 1;
        }
    }

    pub(crate) fn record_lease_lost(&self, work: &str) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        *m.leases_lost.entry(work.to_string()).or_default() += 1;
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socbridge_model::SourceKind;

    fn report(error: Option<&str>, new: usize) -> PollReport {
        PollReport {
            tenant: "acme".into(),
            source: "se".into(),
            kind: SourceKind::SecureEndpoint,
            pages: 1,
            records: new + 1,
            new_findings: new,
            duplicates: 1,
            quarantined: 0,
            incidents_created: new,
            incidents_updated: 0,
            cap_reached: false,
            budget_exhausted: false,
            mark: None,
            error: error.map(str::to_string),
            elapsed_ms: 1,
            fence: None,
        }
    }

    #[test]
    fn polls_add_up_per_source_and_failures_count_apart() {
        let m = EngineMetrics::default();
        m.record_poll(&report(None, 3));
        m.record_poll(&report(None, 2));
        m.record_poll(&report(Some("401"), 0));
        m.record_outbox("acme", "servicenow", "create", OutboxResult::Done);
        m.record_outbox("acme", "servicenow", "create", OutboxResult::Done);
        m.record_outbox("acme", "servicenow", "create", OutboxResult::Retried);
        let s = m.snapshot();
        let c = &s.polls[&("acme".into(), "se".into(), "secure_endpoint".into())];
        assert_eq!((c.ok, c.failed, c.new_findings, c.records), (2, 1, 5, 8));
        assert_eq!(
            s.outbox[&(
                "acme".into(),
                "servicenow".into(),
                "create".into(),
                OutboxResult::Done
            )],
            2
        );
    }
}
