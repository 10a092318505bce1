//! The overlap witness of the polled endpoints: per polled source, how many poll requests
//! are in flight at once, and an optional answer delay that widens the window in which two
//! pollers would be seen.
//!
//! Why it exists: socbridge promises that each (tenant, source) is polled by one poller at a
//! time, even with several `serve` replicas on one database. One poller reads a source one
//! page after another (it sends the next request only after it has read the previous
//! answer), so a second poll request for the same source arriving while the first is still
//! being answered can only come from a second poller. The emulators count exactly that,
//! independently of socbridge's own bookkeeping.
//!
//! A poll request is in flight from when the emulator has authenticated it and knows its
//! source until its handler has produced the answer (or was abandoned). The guard is
//! released before the body is written, so a client that waits for the answer before its
//! next request is never counted against itself. A request the client gave up on (its
//! timeout) stays in flight until the emulator finishes it; keep [`PollWitness::delay`]
//! and the slow faults well below the client's request timeout (socbridge's is 60 s).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The overlap counters of one vendor's polled endpoint (`polls` in each vendor's part of
/// `GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct PollOverlapCounters {
    /// Poll requests admitted (authenticated and naming a known source), whatever their
    /// answer.
    pub polls: u64,
    /// Poll requests being answered now.
    pub in_flight: u64,
    /// Poll requests that arrived while another poll request for the same source was in
    /// flight: 0 when every source was polled by one poller at a time.
    pub overlapping_polls: u64,
    /// The most poll requests of one source in flight at once (1 once any poll was made and
    /// none overlapped; 2 or more means two pollers).
    pub max_concurrent_polls: u64,
    /// Every source that saw an overlap, by source id (ascending).
    pub overlapping_sources: Vec<OverlappingSource>,
}

/// A source polled by two pollers at once.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct OverlappingSource {
    /// The vendor's identity of the source: Secure Endpoint's API client id, Umbrella's org
    /// id, the Symantec MSS tenant its client certificate names.
    pub source: String,
    /// The tenant it belongs to (for an Umbrella org beyond the tenants', the org's name).
    pub tenant: String,
    /// Its poll requests that arrived while another of its polls was in flight.
    pub overlapping_polls: u64,
    /// The most of its poll requests in flight at once.
    pub max_concurrent_polls: u64,
}

/// Body of `POST /_sim/poll_delay` (and its `GET` answer): how long every poll request of
/// Secure Endpoint (`GET /v1/events`), Umbrella (the activity reports) and Symantec MSS
/// (`IncidentGetList`) waits, while in flight, before it is answered. 0 (the default) adds
/// nothing. Fault settings do not change it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct PollDelay {
    pub ms: u64,
}

/// The largest delay accepted: a typo must not hang a test for hours.
pub(crate) const MAX_POLL_DELAY: Duration = Duration::from_secs(600);

/// Per source: in flight now, and what it saw.
#[derive(Default)]
struct SourceState {
    tenant: String,
    in_flight: u64,
    overlapping: u64,
    max: u64,
}

#[derive(Default)]
struct Tally {
    polls: u64,
    in_flight: u64,
    overlapping: u64,
    max: u64,
    sources: HashMap<String, SourceState>,
}

/// One vendor's witness (its own lock: held for a few counter updates, never across an
/// await).
#[derive(Default)]
pub(crate) struct PollWitness {
    tally: Mutex<Tally>,
    delay_ms: AtomicU64,
}

impl PollWitness {
    pub fn new() -> Arc<PollWitness> {
        Arc::new(PollWitness::default())
    }

    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A poll request for `source` (of `tenant`) starts: counted, and in flight until the
    /// guard is dropped.
    pub fn enter(self: &Arc<Self>, source: &str, tenant: &str) -> PollGuard {
        let mut t = self.lock();
        t.polls += 1;
        t.in_flight += 1;
        let s = t.sources.entry(source.to_string()).or_default();
        if s.tenant.is_empty() {
            s.tenant = tenant.to_string();
        }
        let overlapped = s.in_flight > 0;
        s.in_flight += 1;
        if overlapped {
            s.overlapping += 1;
        }
        s.max = s.max.max(s.in_flight);
        let now = s.in_flight;
        if overlapped {
            t.overlapping += 1;
        }
        t.max = t.max.max(now);
        drop(t);
        if overlapped {
            tracing::warn!(
                source,
                tenant,
                in_flight = now,
                "sim: overlapping polls of one source"
            );
        }
        PollGuard {
            witness: self.clone(),
            source: source.to_string(),
        }
    }

    /// The answer delay now.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }

    /// Sets the answer delay (capped at [`MAX_POLL_DELAY`]).
    pub fn set_delay(&self, d: Duration) {
        let ms = u64::try_from(d.min(MAX_POLL_DELAY).as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Waits the answer delay, if any (shutdown cuts it short).
    pub async fn wait(&self, shutdown: &CancellationToken) {
        let d = self.delay();
        if !d.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> PollOverlapCounters {
        let t = self.lock();
        let overlapping: BTreeMap<&String, &SourceState> = t
            .sources
            .iter()
            .filter(|(_, s)| s.overlapping > 0)
            .collect();
        PollOverlapCounters {
            polls: t.polls,
            in_flight: t.in_flight,
            overlapping_polls: t.overlapping,
            max_concurrent_polls: t.max,
            overlapping_sources: overlapping
                .into_iter()
                .map(|(id, s)| OverlappingSource {
                    source: id.clone(),
                    tenant: s.tenant.clone(),
                    overlapping_polls: s.overlapping,
                    max_concurrent_polls: s.max,
                })
                .collect(),
        }
    }
}

/// A poll request in flight; dropping it (answer made, or the request abandoned) ends it.
pub(crate) struct PollGuard {
    witness: Arc<PollWitness>,
    source: String,
}

impl Drop for PollGuard {
    fn drop(&mut self) {
        let mut t = self.witness.lock();
        t.in_flight = t.in_flight.saturating_sub(1);
        if let Some(s) = t.sources.get_mut(&self.source) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_are_counted_per_source() {
        let w = PollWitness::new();
        {
            let _a = w.enter("c1", "acme");
        }
        {
            let _b = w.enter("c1", "acme");
        }
        let c = w.counters();
        assert_eq!(
            (c.polls, c.overlapping_polls, c.max_concurrent_polls),
            (2, 0, 1)
        );
        assert!(c.overlapping_sources.is_empty());

        let a = w.enter("c1", "acme");
        let other = w.enter("c2", "globex");
        let c = w.counters();
        assert_eq!(
            (c.in_flight, c.overlapping_polls),
            (2, 0),
            "another source is no overlap"
        );
        let b = w.enter("c1", "acme");
        let d = w.enter("c1", "acme");
        drop((a, b, other));
        let e = w.enter("c1", "acme");
        let c = w.counters();
        assert_eq!(c.overlapping_polls, 3);
        assert_eq!(c.max_concurrent_polls, 3);
        assert_eq!(c.in_flight, 2);
        assert_eq!(
            c.overlapping_sources,
            vec![OverlappingSource {
                source: "c1".into(),
                tenant: "acme".into(),
                overlapping_polls: 3,
                max_concurrent_polls: 3,
            }]
        );
        drop((d, e));
        assert_eq!(w.counters().in_flight, 0);
    }

    #[test]
    fn delay_is_capped() {
        let w = PollWitness::new();
        w.set_delay(Duration::from_secs(100_000));
        assert_eq!(w.delay(), MAX_POLL_DELAY);
        w.set_delay(Duration::ZERO);
        assert_eq!(w.delay(), Duration::ZERO);
    }
}
