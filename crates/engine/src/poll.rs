//! One poll of one source: ask the vendor for everything since the cursor (minus the overlap),
//! store it, and move the cursor in the same transaction.
//!
//! Secure Endpoint serves events newest first with offset paging. Committing a mark taken from
//! the newest page before the older pages are stored would lose the older ones on a crash, so
//! the walk starts at the *oldest* page and moves toward the newest, committing each page with
//! the mark it justifies. New events arriving during the walk are inserted at the top of the
//! list and shift every offset by the number that arrived; each answer's `total` tells how many,
//! and the walk shifts its offset to match, so nothing is skipped (at worst a record is read
//! twice and the finding key drops it).
//!
//! The first request, at offset 0, is what tells the walk the window's size (`total`). When
//! the window fits in one page that answer is the whole poll; when it does not, its events are
//! the newest, which this poll stores last if at all. So a poll that follows one which stopped
//! at its cap (a backlog being worked through, where every poll stores its oldest page and
//! stops) asks for one event only: the vendor sends, and the API client's hourly request
//! budget pays for, no page that is thrown away. For the same reason the walk's later pages
//! ask for no more events than the cap still admits.

use crate::settings::{PollSettings, SecureEndpointSettings};
use serde::Serialize;
use socbridge_connectors::ConnectorError;
use socbridge_connectors::secure_endpoint::{
    EventQuery, EventsPage, SecureEndpointClient, map_page,
};
use socbridge_model::{SourceKind, Timestamp};
use socbridge_store::{IngestBatch, IngestOutcome, SourceRecord, Store, StoreError};
use std::time::{Duration, Instant};

/// What one poll did, for the CLI, logs and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct PollReport {
    pub tenant: String,
    pub source: String,
    pub kind: SourceKind,
    /// Pages read from the vendor.
    pub pages: usize,
    /// Records received (a record read twice counts twice).
    pub records: usize,
    pub new_findings: usize,
    pub duplicates: usize,
    pub quarantined: usize,
    pub incidents_created: usize,
    pub incidents_updated: usize,
    /// The per-run cap stopped the poll; the rest comes on the next run.
    pub cap_reached: bool,
    /// The time budget ran out before the newest page; the rest comes on the next run.
    pub budget_exhausted: bool,
    pub mark: Option<Timestamp>,
    pub error: Option<String>,
    pub elapsed_ms: u64,
    /// The lease the poll runs under: each page commits only while it is held.
    #[serde(skip)]
    pub(crate) fence: Option<socbridge_store::Fence>,
}

impl PollReport {
    pub fn new(source: &SourceRecord) -> Self {
        PollReport {
            tenant: source.tenant.clone(),
            source: source.name.clone(),
            kind: source.kind,
            pages: 0,
            records: 0,
            new_findings: 0,
            duplicates: 0,
            quarantined: 0,
            incidents_created: 0,
            incidents_updated: 0,
            cap_reached: false,
            budget_exhausted: false,
            mark: source.cursor_mark,
            error: None,
            elapsed_ms: 0,
            fence: None,
        }
    }

    /// Adds what one ingest stored.
    pub fn absorb(&mut self, outcome: &IngestOutcome) {
        self.new_findings += outcome.new_findings;
        self.duplicates += outcome.duplicates;
        self.quarantined += outcome.quarantined_new;
        self.incidents_created += outcome.incidents_created;
        self.incidents_updated += outcome.incidents_updated;
        self.cap_reached |= outcome.cap_reached;
        if outcome.mark.is_some() {
            self.mark = outcome.mark;
        }
    }

    /// More is waiting at the vendor: polling again right away makes progress.
    pub fn has_more(&self) -> bool {
        self.error.is_none() && (self.cap_reached || self.budget_exhausted)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    SymantecMss(#[from] socbridge_connectors::symantec_mss::SymantecMssError),
    #[error(transparent)]
    Umbrella(#[from] socbridge_connectors::umbrella::UmbrellaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the poll starts asking from: the mark minus the overlap, or the look-back on the first
/// run. Never "now": that is how the old integrations lost events.
pub fn window_start(
    mark: Option<Timestamp>,
    now: Timestamp,
    settings: &SecureEndpointSettings,
) -> Timestamp {
    window_start_for(mark, now, &settings.poll)
}

/// [`window_start`] for any source's poll settings.
pub fn window_start_for(mark: Option<Timestamp>, now: Timestamp, poll: &PollSettings) -> Timestamp {
    let overlap_us = i64::try_from(poll.overlap().as_micros()).unwrap_or(i64::MAX);
    let lookback_us = i64::try_from(poll.lookback().as_micros()).unwrap_or(i64::MAX);
    match mark {
        Some(m) => m.saturating_sub_micros(overlap_us),
        None => now.saturating_sub_micros(lookback_us),
    }
}

pub(crate) async fn poll_secure_endpoint(
    store: &Store,
    source: &SourceRecord,
    settings: &SecureEndpointSettings,
    client: &SecureEndpointClient,
    budget: Duration,
    expect_backlog: bool,
    report: &mut PollReport,
) -> Result<(), PollError> {
    let started = Instant::now();
    let query = EventQuery {
        start_date: window_start(source.cursor_mark, Timestamp::now(), settings),
        event_types: settings.event_types.clone(),
    };
    let limit = settings.page_size;
    let cap = settings.poll.cap_per_run;

    // A backlog is expected: one event is enough to learn the window's size.
    let first_limit = if expect_backlog { 1 } else { limit };
    let first = client.events_page(&query, 0, first_limit).await?;
    report.pages += 1;
    if !first.has_next {
        // The whole window is in this answer.
        store_page(store, source, first, cap, report).await?;
        return Ok(());
    }

    // Several pages, or more than the probe: walk from the oldest page toward the newest (a
    // window that fits in one page after all is read whole at offset 0). The walk starts with
    // whole pages (the overlap's events, stored before, do not count against the cap); once
    // it has stored some, each page asks for no more than the cap still admits, so a capped
    // poll reads no event past the one it stops at.
    let mut want = limit;
    let mut total = first.total;
    let mut offset = total.saturating_sub(u64::from(want));
    loop {
        if started.elapsed() >= budget {
            report.budget_exhausted = true;
            return Ok(());
        }
        let page = client.events_page(&query, offset, want).await?;
        report.pages += 1;
        if page.total > total {
            // Events arrived at the top since `total` was read: everything moved down by that
            // many places. Re-read at the shifted offset.
            offset += page.total - total;
            total = page.total;
            continue;
        }
        if page.total < total {
            // Records left the window (they aged out or the vendor dropped them); restart the
            // walk from the oldest page of what is there now. Already stored ones are dropped
            // by their key.
            total = page.total;
            offset = total.saturating_sub(u64::from(want)).min(offset);
            continue;
        }
        store_page(store, source, page, cap, report).await?;
        if offset > 0 && report.new_findings >= cap {
            // The page held just what the cap admitted: newer pages wait for the next run.
            report.cap_reached = true;
        }
        if report.cap_reached || offset == 0 {
            return Ok(());
        }
        // The events just newer than this page, [offset - want, offset): no more than a page,
        // than the cap admits (at least one: a page that reached it ended the walk above) or
        // than are left.
        let admits = u64::try_from(cap.saturating_sub(report.new_findings)).unwrap_or(u64::MAX);
        want = u32::try_from(admits.min(offset)).map_or(limit, |n| n.min(limit));
        offset -= u64::from(want);
    }
}

/// Maps one page and stores it with the mark it justifies, in one transaction.
async fn store_page(
    store: &Store,
    source: &SourceRecord,
    page: EventsPage,
    cap: usize,
    report: &mut PollReport,
) -> Result<(), StoreError> {
    report.records += page.events.len();
    let (findings, quarantined) = map_page(&page.events);
    store_batch(store, source, findings, quarantined, cap, report).await
}

/// Stores one batch of a poll (findings oldest first, and the records that could not be
/// read) in one transaction, within what is left of the per-run cap, and adds the outcome to
/// the report. Every source kind's poll ends its pages here.
pub(crate) async fn store_batch(
    store: &Store,
    source: &SourceRecord,
    findings: Vec<socbridge_model::Finding>,
    quarantined: Vec<socbridge_model::Quarantined>,
    cap: usize,
    report: &mut PollReport,
) -> Result<(), StoreError> {
    store_with(
        store,
        source,
        findings,
        quarantined,
        Some(cap),
        true,
        report,
    )
    .await
}

/// Stores events that arrived by push ([`crate::push`]) the way a poll stores a page (same
/// keys, so an event both pushed and polled is stored once; same correlation and ticketing),
/// without the per-run cap (a delivery is acknowledged only if it was stored) and without
/// moving the cursor mark (only a poll, which reads a whole window, may).
pub(crate) async fn store_pushed(
    store: &Store,
    source: &SourceRecord,
    findings: Vec<socbridge_model::Finding>,
    quarantined: Vec<socbridge_model::Quarantined>,
    report: &mut PollReport,
) -> Result<(), StoreError> {
    store_with(store, source, findings, quarantined, None, false, report).await
}

async fn store_with(
    store: &Store,
    source: &SourceRecord,
    findings: Vec<socbridge_model::Finding>,
    quarantined: Vec<socbridge_model::Quarantined>,
    cap: Option<usize>,
    move_mark: bool,
    report: &mut PollReport,
) -> Result<(), StoreError> {
    for q in &quarantined {
        tracing::warn!(
            tenant = %source.tenant, source = %source.name, reason = %q.reason,
            "record quarantined"
        );
    }
    let batch = IngestBatch {
        findings,
        quarantined,
        max_new: cap.map(|cap| cap.saturating_sub(report.new_findings)),
        fence: report.fence.clone(),
    };
    let outcome = if move_mark {
        store.ingest(source.id, batch).await?
    } else {
        store.ingest_pushed(source.id, batch).await?
    };
    report.absorb(&outcome);
    Ok(())
}
