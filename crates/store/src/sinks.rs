//! SIEM sinks: the forwarders configured, the durable queue of committed changes they deliver
//! (at least once), and which queue rows each sink has delivered.
//!
//! Invariants kept here:
//! - Work for the sinks is queued in the transaction of the change that calls for it (an
//!   ingest that stores findings, an incident change from any origin), one row per change
//!   batch: a crash between the change and its queue row is impossible.
//! - Nothing is queued while no sink is configured.
//! - A row is delivered to a sink when `sink_deliveries` says so, per row and per sink, never
//!   by a "delivered up to id N" cursor: PostgreSQL may commit a lower id after a higher one,
//!   and such a cursor would skip it. A row every sink delivered is deleted.

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::incidents::{Arg, Sql};
use crate::{Store, StoreError};
use socbridge_model::Timestamp;
use sqlx::{AnyConnection, Row as _};
use std::fmt;

/// A sink as configured (written when the config is applied).
#[derive(Clone, PartialEq)]
pub struct SinkRecord {
    pub name: String,
    pub settings: serde_json::Value,
    /// Sealed credentials, opaque to the store.
    pub secret: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

impl fmt::Debug for SinkRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkRecord")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "[sealed]"))
            .finish()
    }
}

/// A sink to configure: name, non-secret settings and sealed credentials.
#[derive(Clone)]
pub struct NewSink<'a> {
    pub name: &'a str,
    pub settings: &'a serde_json::Value,
    pub secret: Option<&'a [u8]>,
}

/// One queued change batch of a tenant: the findings it stored and the incidents it opened,
/// grew or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBatch {
    pub id: i64,
    pub tenant: String,
    pub finding_ids: Vec<i64>,
    pub incident_ids: Vec<i64>,
    pub created_at: Timestamp,
}

/// Is any sink configured? Read inside the caller's transaction.
async fn sinks_enabled(tx: &mut Tx<'_>) -> Result<bool, StoreError> {
    let n: Option<(String,)> = tx
        .fetch_optional(
            "checking whether a sink is configured",
            "SELECT name FROM sinks LIMIT 1",
            &[],
        )
        .await?;
    Ok(n.is_some())
}

/// Ids per `IN (...)`, well under both backends' parameter limits.
const IDS_PER_QUERY: usize = 500;

fn ids_text(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("a list of integers serialises")
}

async fn insert_row(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    finding_ids: &[i64],
    incident_ids: &[i64],
    now: Timestamp,
) -> Result<(), StoreError> {
    let (findings, incidents) = (ids_text(finding_ids), ids_text(incident_ids));
    tx.execute(
        "queueing work for the sinks",
        "INSERT INTO sink_queue (tenant_id, finding_ids, incident_ids, created_at)
         VALUES ($1, $2, $3, $4)",
        &[
            tenant_id.into(),
            findings.as_str().into(),
            incidents.as_str().into(),
            now.as_micros().into(),
        ],
    )
    .await?;
    Ok(())
}

/// Queues what one ingest transaction stored (its new findings and the incidents it opened or
/// grew), inside that transaction: one row, whatever the number of findings. Nothing when no
/// sink is configured or nothing is new.
pub(crate) async fn enqueue_ingest(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    finding_ids: &[i64],
    incident_ids: impl IntoIterator<Item = &i64>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut incidents: Vec<i64> = incident_ids.into_iter().copied().collect();
    if finding_ids.is_empty() && incidents.is_empty() {
        return Ok(());
    }
    if !sinks_enabled(tx).await? {
        return Ok(());
    }
    incidents.sort_unstable();
    incidents.dedup();
    insert_row(tx, tenant_id, finding_ids, &incidents, now).await
}

/// Queues one incident's change (status, resolution, assignee, a comment; from an analyst,
/// the ticket or the vendor), inside the changing transaction.
pub(crate) async fn enqueue_incident(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    if !sinks_enabled(tx).await? {
        return Ok(());
    }
    insert_row(tx, tenant_id, &[], &[incident_id], now).await
}

fn parse_ids(text: &str, what: &str) -> Result<Vec<i64>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("sink queue {what}: {e}")))
}

/// Deletes queue rows every sink has delivered (a sink created after a row does not wait for
/// it), and every row once no sink is left: among `ids`, or the whole queue.
async fn prune(conn: &mut AnyConnection, ids: Option<&[i64]>) -> Result<(), StoreError> {
    let all_delivered = "NOT EXISTS (SELECT 1 FROM sinks s
                             WHERE s.created_at <= sink_queue.created_at
                               AND NOT EXISTS (SELECT 1 FROM sink_deliveries d
                                                WHERE d.sink = s.name
                                                  AND d.queue_id = sink_queue.id))";
    let Some(ids) = ids else {
        sqlx::query(&format!("DELETE FROM sink_queue WHERE {all_delivered}"))
            .execute(&mut *conn)
            .await
            .op("pruning the sink queue")?;
        return Ok(());
    };
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let mut sql = Sql::default();
        let list = sql.list(chunk.iter().map(|id| Arg::Int(*id)));
        sql.text = format!("DELETE FROM sink_queue WHERE id IN ({list}) AND {all_delivered}");
        sql.execute(conn, "pruning the sink queue").await?;
    }
    Ok(())
}

impl Store {
    /// Makes the configured sinks exactly `sinks`: each is created or updated (`secret: None`
    /// keeps the stored credentials), any other is removed with its delivery records, and rows
    /// no sink waits for any more are deleted.
    pub async fn set_sinks(&self, sinks: &[NewSink<'_>]) -> Result<(), StoreError> {
        let mut w = self.begin_write("configuring the sinks").await?;
        let conn = w.conn();
        let now = Timestamp::now().as_micros();
        let existing: Vec<String> = sqlx::query_scalar("SELECT name FROM sinks")
            .fetch_all(&mut *conn)
            .await
            .op("reading the sinks")?;
        for name in existing {
            if !sinks.iter().any(|s| s.name == name) {
                sqlx::query("DELETE FROM sinks WHERE name = $1")
                    .bind(name.as_str())
                    .execute(&mut *conn)
                    .await
                    .op("removing a sink")?;
            }
        }
        for s in sinks {
            sqlx::query(
                "INSERT INTO sinks (name, settings, secret, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (name) DO UPDATE
                    SET settings = excluded.settings,
                        secret = COALESCE(excluded.secret, sinks.secret),
                        updated_at = excluded.updated_at",
            )
            .bind(s.name)
            .bind(s.settings.to_string())
            .bind(s.secret)
            .bind(now)
            .execute(&mut *conn)
            .await
            .op("configuring a sink")?;
        }
        prune(conn, None).await?;
        w.commit("configuring the sinks").await
    }

    /// The configured sinks, by name.
    pub async fn sinks(&self) -> Result<Vec<SinkRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT name, settings, secret, created_at FROM sinks ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .op("reading the sinks")?;
        rows.iter()
            .map(|row| {
                let read = |e| StoreError::Database {
                    op: "reading the sinks",
                    error: e,
                };
                let settings: String = row.try_get("settings").map_err(read)?;
                Ok(SinkRecord {
                    name: row.try_get("name").map_err(read)?,
                    settings: serde_json::from_str(&settings)
                        .map_err(|e| StoreError::corrupt(format!("sink settings: {e}")))?,
                    secret: row.try_get("secret").map_err(read)?,
                    created_at: Timestamp::from_micros(row.try_get("created_at").map_err(read)?),
                })
            })
            .collect()
    }

    /// Queue rows `sink` has not delivered yet, oldest id first, at most `limit`.
    pub async fn pending_sink_batches(
        &self,
        sink: &str,
        limit: i64,
    ) -> Result<Vec<SinkBatch>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.id, t.name AS tenant, q.finding_ids, q.incident_ids, q.created_at
               FROM sink_queue q
               JOIN tenants t ON t.id = q.tenant_id
               JOIN sinks s ON s.name = $1
              WHERE q.created_at >= s.created_at
                AND NOT EXISTS (SELECT 1 FROM sink_deliveries d
                                 WHERE d.sink = $1 AND d.queue_id = q.id)
              ORDER BY q.id
              LIMIT $2",
        )
        .bind(sink)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op("reading the sink queue")?;
        rows.iter()
            .map(|row| {
                let read = |e| StoreError::Database {
                    op: "reading the sink queue",
                    error: e,
                };
                let findings: String = row.try_get("finding_ids").map_err(read)?;
                let incidents: String = row.try_get("incident_ids").map_err(read)?;
                Ok(SinkBatch {
                    id: row.try_get("id").map_err(read)?,
                    tenant: row.try_get("tenant").map_err(read)?,
                    finding_ids: parse_ids(&findings, "finding ids")?,
                    incident_ids: parse_ids(&incidents, "incident ids")?,
                    created_at: Timestamp::from_micros(row.try_get("created_at").map_err(read)?),
                })
            })
            .collect()
    }

    /// How many queue rows `sink` has not delivered yet.
    pub async fn sink_backlog(&self, sink: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM sink_queue q JOIN sinks s ON s.name = $1
              WHERE q.created_at >= s.created_at
                AND NOT EXISTS (SELECT 1 FROM sink_deliveries d
                                 WHERE d.sink = $1 AND d.queue_id = q.id)",
        )
        .bind(sink)
        .fetch_one(&self.pool)
        .await
        .op("counting the sink queue")
    }

    /// Records queue rows as delivered to `sink` (after the collector's 2xx), and deletes the
    /// rows every sink has now delivered.
    pub async fn sink_delivered(&self, sink: &str, queue_ids: &[i64]) -> Result<(), StoreError> {
        if queue_ids.is_empty() {
            return Ok(());
        }
        let mut w = self.begin_write("recording a sink delivery").await?;
        let conn = w.conn();
        let now = Timestamp::now().as_micros();
        for id in queue_ids {
            sqlx::query(
                "INSERT INTO sink_deliveries (sink, queue_id, delivered_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sink, queue_id) DO NOTHING",
            )
            .bind(sink)
            .bind(*id)
            .bind(now)
            .execute(&mut *conn)
            .await
            .op("recording a sink delivery")?;
        }
        prune(conn, Some(queue_ids)).await?;
        w.commit("recording a sink delivery").await
    }
}
