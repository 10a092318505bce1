//! Push: consumers of Secure Endpoint Event Streams, one task per source that asks for it
//! (`push = true`), beside the polls of `serve`.
//!
//! Promises:
//! - **Acknowledged only after the commit.** Each batch of deliveries is stored in one ingest
//!   transaction ([`crate::poll::store_pushed`]: the poll's keys, correlation and ticketing)
//!   and acknowledged after it committed; a failed store gives the batch back to the queue.
//!   A connection that dies in between leaves the deliveries unacknowledged, and the broker
//!   hands them to the next connection: they are stored again as duplicates and dropped by
//!   their finding key.
//! - **The poll stays the safety net.** Pushed findings never move the cursor mark, and the
//!   poll keeps running on its interval, so what a stream loses (the broker down, a stream
//!   replaced after a restart) is read by the poll.
//! - **Reconnects with backoff** (jittered, 200 ms doubling to 30 s, started afresh after a
//!   session that got connected: a cut is retried at once, a broker that stays away is not
//!   hammered), and stops when `serve` stops, after the batch in hand is stored and
//!   acknowledged.

use crate::engine::{Engine, SourceClient};
use crate::poll::{PollReport, store_pushed};
use backon::{BackoffBuilder, ExponentialBuilder};
use socbridge_connectors::secure_endpoint::event_streams::{
    EventStream, StreamConsumer, StreamError,
};
use socbridge_store::SourceRecord;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Unacknowledged deliveries the broker may send ahead, and the most stored in one
/// transaction: enough to keep a burst moving, small enough that a redelivery after a cut is
/// cheap.
const PREFETCH: u16 = 100;
/// Reconnect waits start here and double up to [`BACKOFF_MAX`] (with jitter).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The name of a source's stream at the vendor (streams belong to the organisation, so the
/// source name keeps two sources of one organisation apart).
fn stream_name(src: &SourceRecord) -> String {
    format!("socbridge {}/{}", src.tenant, src.name)
}

/// Runs a consumer for every source that asks for push, starting and stopping them as the
/// stored sources change (looked at every tick, through `sources_view`), until `shutdown`.
pub(crate) async fn run(engine: Engine, shutdown: CancellationToken) {
    let mut consumers: HashMap<i64, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut ticker = tokio::time::interval(engine.inner.opts.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let view = match engine.sources_view().await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "push: cannot list sources; retrying on the next tick");
                continue;
            }
        };
        let wanted: HashSet<i64> = view
            .sources
            .iter()
            .filter(|s| s.push)
            .map(|s| s.record.id)
            .collect();
        consumers.retain(|id, (stop, task)| {
            let keep = wanted.contains(id) && !task.is_finished();
            if !keep {
                stop.cancel();
            }
            keep
        });
        for viewed in view.sources.iter().filter(|s| s.push) {
            let id = viewed.record.id;
            if consumers.contains_key(&id) {
                continue;
            }
            let stop = shutdown.child_token();
            let task = tokio::spawn(consume(engine.clone(), viewed.record.clone(), stop.clone()));
            consumers.insert(id, (stop, task));
        }
    }
    for (_, (stop, task)) in consumers {
        stop.cancel();
        let _ = task.await;
    }
}

/// One source's consumer: sessions one after the other, with backoff between failures.
async fn consume(engine: Engine, src: SourceRecord, stop: CancellationToken) {
    let mut stream: Option<EventStream> = None;
    let backoff = || {
        ExponentialBuilder::default()
            .with_min_delay(BACKOFF_MIN)
            .with_max_delay(BACKOFF_MAX)
            .with_jitter()
            .without_max_times()
            .build()
    };
    let mut delays = backoff();
    loop {
        let mut connected = false;
        match session(&engine, &src, &mut stream, &stop, &mut connected).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(tenant = %src.tenant, source = %src.name, error = %e,
                    "event stream interrupted; the poll covers the gap, reconnecting");
            }
        }
        if connected {
            delays = backoff();
        }
        let wait = delays.next().unwrap_or(BACKOFF_MAX);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Opens (or reuses) the stream, consumes it and stores what arrives until `stop` (`Ok`) or a
/// failure (`Err`, after which the caller waits and calls again). `stream` keeps the stream
/// and its password across sessions; it is emptied when the stream must be made anew.
/// `connected` tells whether the session got as far as consuming.
async fn session(
    engine: &Engine,
    src: &SourceRecord,
    stream: &mut Option<EventStream>,
    stop: &CancellationToken,
    connected: &mut bool,
) -> Result<(), String> {
    let (se, client) = match engine.source_client(src).await? {
        SourceClient::SecureEndpoint(se, client) => (se, client),
        _ => return Err("push is only for Secure Endpoint sources".into()),
    };
    let current = match stream.take() {
        Some(s) => s,
        None => client
            .open_event_stream(&stream_name(src), &se.event_types)
            .await
            .map_err(|e| e.to_string())?,
    };
    let tag = format!("socbridge-{}-{}", src.tenant, src.name);
    let mut consumer =
        match StreamConsumer::connect(&current.amqp_credentials, PREFETCH, &tag).await {
            Ok(c) => c,
            // The stream is gone at the vendor: the next session makes a new one.
            Err(e @ StreamError::QueueGone { .. }) => return Err(e.to_string()),
            Err(e) => {
                *stream = Some(current);
                return Err(e.to_string());
            }
        };
    *stream = Some(current);
    *connected = true;
    tracing::info!(tenant = %src.tenant, source = %src.name, "event stream connected");
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => {
                consumer.close().await;
                return Ok(());
            }
            next = consumer.next_batch(usize::from(PREFETCH)) => next,
        };
        let mut batch = next.map_err(|e| e.to_string())?;
        let mut report = PollReport::new(src);
        report.records = batch.deliveries;
        let findings = std::mem::take(&mut batch.findings);
        let quarantined = std::mem::take(&mut batch.quarantined);
        match store_pushed(&engine.inner.store, src, findings, quarantined, &mut report).await {
            Ok(()) => {
                engine.inner.metrics.record_push(&report);
                tracing::debug!(
                    tenant = %src.tenant, source = %src.name, deliveries = report.records,
                    new = report.new_findings, duplicates = report.duplicates,
                    redelivered = batch.redelivered, "event stream batch stored"
                );
                batch.ack().await.map_err(|e| e.to_string())?;
            }
            Err(e) => {
                batch.requeue().await;
                return Err(format!("storing pushed events: {e}"));
            }
        }
    }
}
