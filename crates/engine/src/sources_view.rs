//! The stored sources as the loops that run every tick see them: the poll scheduler, the push
//! consumers and the lease rounds. Listing every source reads each row with its settings and
//! sealed credentials and parses the settings; with a thousand tenants of three sources and a
//! tick a second, doing that in each loop on every tick was most of an idle `serve`'s CPU. The
//! view is listed again only when the store's [`SourcesFingerprint`] changes (a source saved,
//! added or removed), and at least every [`RELIST_EVERY`] whatever it says.
//!
//! What moves with every poll is not in the view: the scheduler asks the store which sources
//! are due ([`Store::sources_polled_before`]) and each poll reads its source afresh (its cursor
//! mark moves with every ingest).
//!
//! [`Store::sources_polled_before`]: socbridge_store::Store::sources_polled_before

use crate::engine::{Engine, EngineError};
use crate::settings::SourceSettings;
use socbridge_model::Timestamp;
use socbridge_store::{SourceRecord, SourcesFingerprint};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a view is kept, even when the fingerprint says nothing changed (a save whose
/// clock ran behind the latest one would not move it).
pub(crate) const RELIST_EVERY: Duration = Duration::from_secs(30);

/// The interval of a source whose stored settings do not parse (its poll reports why).
const FALLBACK_INTERVAL: Duration = Duration::from_secs(60);

/// Every stored source, by tenant and name, with what the loops need of its settings.
pub(crate) struct SourcesView {
    fingerprint: SourcesFingerprint,
    listed_at: Instant,
    pub(crate) sources: Vec<ViewedSource>,
}

pub(crate) struct ViewedSource {
    /// The source as listed; its cursor and poll state may be behind.
    pub(crate) record: SourceRecord,
    pub(crate) interval: Duration,
    /// A Secure Endpoint source that asks for Event Streams.
    pub(crate) push: bool,
}

impl SourcesView {
    fn new(fingerprint: SourcesFingerprint, records: Vec<SourceRecord>) -> Self {
        let sources = records
            .into_iter()
            .map(|record| {
                let settings = SourceSettings::from_json(&record.settings).ok();
                ViewedSource {
                    interval: settings
                        .as_ref()
                        .map_or(FALLBACK_INTERVAL, |s| s.poll().poll_interval()),
                    push: matches!(&settings, Some(SourceSettings::SecureEndpoint(se)) if se.push),
                    record,
                }
            })
            .collect();
        SourcesView {
            fingerprint,
            listed_at: Instant::now(),
            sources,
        }
    }

    /// The shortest poll interval of any source: one polled more recently than that is not
    /// due, whatever its own interval.
    pub(crate) fn shortest_interval(&self) -> Duration {
        self.sources
            .iter()
            .map(|s| s.interval)
            .min()
            .unwrap_or(FALLBACK_INTERVAL)
    }
}

/// Whether a source polled every `interval`, last at `last_poll_at`, is due at `now`.
pub(crate) fn is_due(interval: Duration, last_poll_at: Option<Timestamp>, now: Timestamp) -> bool {
    match last_poll_at {
        None => true,
        Some(last) => {
            let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
            now.as_micros().saturating_sub(last.as_micros()) >= interval_us
        }
    }
}

/// `now` minus `interval`, clamped to the earliest time.
pub(crate) fn before(now: Timestamp, interval: Duration) -> Timestamp {
    let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
    Timestamp::from_micros(now.as_micros().saturating_sub(interval_us))
}

impl Engine {
    /// The current view of the stored sources: the cached one while the store's fingerprint
    /// matches it and it is younger than [`RELIST_EVERY`], else a fresh listing.
    pub(crate) async fn sources_view(&self) -> Result<Arc<SourcesView>, EngineError> {
        let mut cached = self.inner.sources_view.lock().await;
        // Read before listing: a change made during the listing moves the fingerprint past the
        // one kept with it, so the next call lists again.
        let fingerprint = self.inner.store.sources_fingerprint().await?;
        if let Some(view) = cached.as_ref() {
            if view.fingerprint == fingerprint && view.listed_at.elapsed() < RELIST_EVERY {
                return Ok(view.clone());
            }
        }
        let records = self.inner.store.list_sources(None).await?;
        let view = Arc::new(SourcesView::new(fingerprint, records));
        *cached = Some(view.clone());
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_the_interval_has_passed() {
        let now = Timestamp::from_micros(100_000_000);
        let minute = Duration::from_secs(60);
        assert!(is_due(minute, None, now));
        assert!(is_due(minute, Some(before(now, minute)), now));
        assert!(!is_due(
            minute,
            Some(before(now, minute - Duration::from_micros(1))),
            now
        ));
        assert_eq!(
            before(Timestamp::from_micros(5), Duration::MAX),
            Timestamp::from_micros(5 - i64::MAX)
        );
    }
}
