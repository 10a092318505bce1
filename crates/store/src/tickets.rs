//! Ticketing state: the installation's ticketing system, the ticket of each incident, the
//! outbox of work for the outside world, and the journal entries already taken in.
//!
//! Invariants kept here:
//! - One ticket per incident and one incident per ticket: `tickets` is keyed by incident and
//!   its `correlation_id` and `sys_id` are unique.
//! - Ticket work is enqueued in the transaction of the change that calls for it (an ingest
//!   that opens or grows an incident, an analyst's update), so a crash between the two is
//!   impossible.
//! - Changes that came *from* the ticket (sync-in) enqueue no ticket work: that is the first
//!   half of echo suppression; the second is that socbridge's own writes are recognised when
//!   read back.

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::leases::Fence;
use crate::{Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use socbridge_model::{IncidentStatus, IncidentUpdate, IncidentView, SourceKind, Timestamp};
use sqlx::{AnyConnection, Row as _};
use std::fmt;

/// The ticketing system configured for the installation.
#[derive(Clone, PartialEq)]
pub struct TicketingRecord {
    pub system: String,
    pub settings: serde_json::Value,
    /// Sealed credentials, opaque to the store.
    pub secret: Option<Vec<u8>>,
    /// Sync-in polling mark: the newest `sys_updated_on` taken in.
    pub sync_mark: Option<Timestamp>,
    pub last_sync_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl fmt::Debug for TicketingRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketingRecord")
            .field("system", &self.system)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "[sealed]"))
            .field("sync_mark", &self.sync_mark)
            .finish()
    }
}

/// An incident's ticket as socbridge knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketRecord {
    pub incident_id: i64,
    pub tenant: String,
    pub system: String,
    pub correlation_id: String,
    pub sys_id: Option<String>,
    pub number: Option<String>,
    pub state: Option<String>,
    pub url: Option<String>,
    pub remote_updated_on: Option<Timestamp>,
}

/// What a ticket is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// Create the ticket (after looking it up by correlation id).
    Create,
    /// Bring the ticket's fields in line with the incident.
    Update,
    /// Append a work note.
    Note,
    Close,
    Reopen,
    /// Write the incident's state back to the vendor it came from (target `vendor`).
    Writeback,
    /// Apply a containment action (target `containment`; payload `{"action": id}`).
    Contain,
    /// Revert a containment action.
    Release,
    /// Create the incident's XDR incident (after looking it up by external id; target `xdr`).
    XdrCreate,
    /// Bring the XDR incident's status and references in line with the incident.
    XdrSync,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Create => "create",
            OutboxKind::Update => "update",
            OutboxKind::Note => "note",
            OutboxKind::Close => "close",
            OutboxKind::Reopen => "reopen",
            OutboxKind::Writeback => "writeback",
            OutboxKind::Contain => "contain",
            OutboxKind::Release => "release",
            OutboxKind::XdrCreate => "xdr_create",
            OutboxKind::XdrSync => "xdr_sync",
        }
    }

    /// Where the work goes: the vendor for a write-back, the ticket otherwise.
    pub fn target(self) -> &'static str {
        match self {
            OutboxKind::Writeback => TARGET_VENDOR,
            OutboxKind::Contain | OutboxKind::Release => TARGET_CONTAINMENT,
            OutboxKind::XdrCreate | OutboxKind::XdrSync => crate::xdr::TARGET_XDR,
            _ => TARGET_SERVICENOW,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => OutboxKind::Create,
            "update" => OutboxKind::Update,
            "note" => OutboxKind::Note,
            "close" => OutboxKind::Close,
            "reopen" => OutboxKind::Reopen,
            "writeback" => OutboxKind::Writeback,
            "contain" => OutboxKind::Contain,
            "release" => OutboxKind::Release,
            "xdr_create" => OutboxKind::XdrCreate,
            "xdr_sync" => OutboxKind::XdrSync,
            _ => return None,
        })
    }
}

/// One piece of outbound work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub tenant_id: i64,
    pub tenant: String,
    pub incident_id: i64,
    pub target: String,
    pub kind: OutboxKind,
    pub payload: serde_json::Value,
    /// `pending`, `done` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
}

/// Depth and age of the outbox, for `serve --until-idle`, metrics and the demo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutboxStats {
    pub pending: i64,
    pub failed: i64,
    pub done: i64,
    pub oldest_pending: Option<Timestamp>,
}

/// Where an incident change comes from, which decides where it is mirrored to: nothing goes
/// back to where a change came from (the first half of echo suppression).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An analyst or socbridge itself: the ticket and the vendor follow.
    Local,
    /// The ticket (sync-in): the vendor follows.
    Ticket,
    /// The vendor's own workflow (an upsert of a vendor incident): the ticket follows.
    Vendor,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Ticket => "ticket",
            Origin::Vendor => "vendor",
        }
    }

    pub(crate) fn mirrors_to_ticket(self) -> bool {
        self != Origin::Ticket
    }

    pub(crate) fn mirrors_to_vendor(self) -> bool {
        self != Origin::Vendor
    }
}

pub const TARGET_SERVICENOW: &str = "servicenow";
/// Outbox target of vendor write-backs (Symantec MSS UpdateIncidentWorkflow).
pub const TARGET_VENDOR: &str = "vendor";
/// Outbox target of containment actions (Secure Endpoint isolation and group moves).
pub const TARGET_CONTAINMENT: &str = "containment";

/// The ticket's correlation id for an incident: `socbridge:<tenant>:<incident id>`, at most
/// 100 characters (a long tenant name is replaced by a hash of it). Stable: incident ids are
/// never reused.
pub fn correlation_id(tenant: &str, incident_id: i64) -> String {
    let plain = format!("socbridge:{tenant}:{incident_id}");
    if plain.len() <= 100 {
        return plain;
    }
    let digest = hex::encode(&Sha256::digest(tenant.as_bytes())[..16]);
    format!("socbridge:{digest}:{incident_id}")
}

/// The prefix every socbridge correlation id starts with (sync-in asks only for those).
pub const CORRELATION_PREFIX: &str = "socbridge:";

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_micros)
}

/// Is ticketing configured? Read inside the caller's transaction.
pub(crate) async fn ticketing_enabled(tx: &mut Tx<'_>) -> Result<bool, StoreError> {
    let n: Option<(i64,)> = tx
        .fetch_optional(
            "checking whether ticketing is on",
            "SELECT id FROM ticketing WHERE id = 1",
            &[],
        )
        .await?;
    Ok(n.is_some())
}

/// Enqueues ticket work for an incident, inside the caller's transaction. `Create` also makes
/// the ticket row (with its correlation id). `Update` is skipped when a create or update of
/// the same incident is still pending: that one will carry the change too.
pub(crate) async fn enqueue(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    tenant: &str,
    incident_id: i64,
    kind: OutboxKind,
    payload: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    if kind == OutboxKind::Writeback {
        return enqueue_writeback(tx, tenant_id, incident_id, payload, now).await;
    }
    if kind == OutboxKind::Create {
        let correlation = correlation_id(tenant, incident_id);
        tx.execute(
            "adding a ticket",
            "INSERT INTO tickets (incident_id, tenant_id, system, correlation_id, created_at,
                                  updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (incident_id) DO NOTHING",
            &[
                incident_id.into(),
                tenant_id.into(),
                TARGET_SERVICENOW.into(),
                correlation.as_str().into(),
                now.as_micros().into(),
            ],
        )
        .await?;
    } else {
        let has_ticket: Option<(i64,)> = tx
            .fetch_optional(
                "reading a ticket",
                "SELECT incident_id FROM tickets WHERE incident_id = $1",
                &[incident_id.into()],
            )
            .await?;
        if has_ticket.is_none() {
            // An incident from before ticketing was switched on: give it its ticket first.
            Box::pin(enqueue(
                tx,
                tenant_id,
                tenant,
                incident_id,
                OutboxKind::Create,
                serde_json::json!({}),
                now,
            ))
            .await?;
        }
    }
    if kind == OutboxKind::Update {
        let pending: Option<(i64,)> = tx
            .fetch_optional(
                "reading the outbox",
                "SELECT id FROM outbox
                  WHERE incident_id = $1 AND state = 'pending' AND kind IN ('create', 'update')
                  LIMIT 1",
                &[incident_id.into()],
            )
            .await?;
        if pending.is_some() {
            return Ok(());
        }
    }
    insert_outbox(tx, tenant_id, incident_id, kind, &payload, now).await
}

/// Does the incident hold findings of a source whose vendor has a workflow to write back to
/// (Symantec MSS)? Read inside the caller's transaction.
pub(crate) async fn has_vendor_workflow(
    tx: &mut Tx<'_>,
    incident_id: i64,
) -> Result<bool, StoreError> {
    let kinds: Vec<(String,)> = tx
        .fetch_all(
            "reading an incident's sources",
            "SELECT source_kind FROM incident_sources WHERE incident_id = $1",
            &[incident_id.into()],
        )
        .await?;
    Ok(kinds.iter().any(|(k,)| {
        k.parse::<SourceKind>()
            .is_ok_and(SourceKind::has_vendor_workflow)
    }))
}

/// Enqueues a vendor write-back. The worker reads the incident's state when it runs, so one
/// pending write-back without a comment carries every later change too; a comment is its own
/// item (it is written once, in order).
async fn enqueue_writeback(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    payload: serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    let has_comment = payload.get("comment").is_some_and(|c| !c.is_null());
    if !has_comment {
        let pending: Option<(i64,)> = tx
            .fetch_optional(
                "reading the outbox",
                "SELECT id FROM outbox
                  WHERE incident_id = $1 AND state = 'pending' AND kind = 'writeback'
                  LIMIT 1",
                &[incident_id.into()],
            )
            .await?;
        if pending.is_some() {
            return Ok(());
        }
    }
    insert_outbox(
        tx,
        tenant_id,
        incident_id,
        OutboxKind::Writeback,
        &payload,
        now,
    )
    .await
}

/// Adds one pending outbox item for `kind`'s target, inside the caller's transaction.
pub(crate) async fn insert_outbox(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    kind: OutboxKind,
    payload: &serde_json::Value,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = payload.to_string();
    tx.execute(
        "adding to the outbox",
        "INSERT INTO outbox (tenant_id, incident_id, target, kind, payload, state, attempts,
                             next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6, $6)",
        &[
            tenant_id.into(),
            incident_id.into(),
            kind.target().into(),
            kind.as_str().into(),
            payload.as_str().into(),
            now.as_micros().into(),
        ],
    )
    .await?;
    Ok(())
}

/// The ticket work an analyst's change calls for.
pub(crate) fn work_for_update(
    before: IncidentStatus,
    after: IncidentStatus,
    fields_changed: bool,
    comment: Option<&str>,
    actor: &str,
) -> Vec<(OutboxKind, serde_json::Value)> {
    let mut work = Vec::new();
    if before.is_open() && !after.is_open() {
        work.push((OutboxKind::Close, serde_json::json!({})));
    } else if !before.is_open() && after.is_open() {
        work.push((OutboxKind::Reopen, serde_json::json!({})));
    } else if before != after || fields_changed {
        work.push((OutboxKind::Update, serde_json::json!({})));
    }
    if let Some(text) = comment {
        work.push((
            OutboxKind::Note,
            serde_json::json!({"text": text, "actor": actor}),
        ));
    }
    work
}

fn item_from_row(row: &sqlx::any::AnyRow) -> Result<OutboxItem, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading the outbox",
        error: e,
    };
    let kind: String = row.try_get("kind").map_err(read)?;
    let payload: String = row.try_get("payload").map_err(read)?;
    Ok(OutboxItem {
        id: row.try_get("id").map_err(read)?,
        tenant_id: row.try_get("tenant_id").map_err(read)?,
        tenant: row.try_get("tenant").map_err(read)?,
        incident_id: row.try_get("incident_id").map_err(read)?,
        target: row.try_get("target").map_err(read)?,
        kind: OutboxKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("unknown outbox kind `{kind}`")))?,
        payload: serde_json::from_str(&payload)
            .map_err(|e| StoreError::corrupt(format!("outbox payload: {e}")))?,
        state: row.try_get("state").map_err(read)?,
        attempts: row.try_get("attempts").map_err(read)?,
        next_attempt_at: Timestamp::from_micros(row.try_get("next_attempt_at").map_err(read)?),
        last_error: row.try_get("last_error").map_err(read)?,
        created_at: Timestamp::from_micros(row.try_get("created_at").map_err(read)?),
    })
}

const ITEM_COLUMNS: &str =
    "o.id, o.tenant_id, t.name AS tenant, o.incident_id, o.target, o.kind, o.payload,
        o.state, o.attempts, o.next_attempt_at, o.last_error, o.created_at";

fn ticket_from_row(row: &sqlx::any::AnyRow) -> Result<TicketRecord, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading a ticket",
        error: e,
    };
    Ok(TicketRecord {
        incident_id: row.try_get("incident_id").map_err(read)?,
        tenant: row.try_get("tenant").map_err(read)?,
        system: row.try_get("system").map_err(read)?,
        correlation_id: row.try_get("correlation_id").map_err(read)?,
        sys_id: row.try_get("sys_id").map_err(read)?,
        number: row.try_get("number").map_err(read)?,
        state: row.try_get("state").map_err(read)?,
        url: row.try_get("url").map_err(read)?,
        remote_updated_on: ts(row.try_get("remote_updated_on").map_err(read)?),
    })
}

const TICKET_COLUMNS: &str = "k.incident_id, t.name AS tenant, k.system, k.correlation_id,
        k.sys_id, k.number, k.state, k.url, k.remote_updated_on";

/// What socbridge learned of a ticket, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketLink {
    pub sys_id: String,
    pub number: String,
    pub state: String,
    pub url: String,
    pub remote_updated_on: Option<Timestamp>,
}

impl Store {
    /// Configures the ticketing system (replacing any previous one, keeping the sync mark).
    /// `secret: None` keeps the stored credentials.
    pub async fn set_ticketing(
        &self,
        system: &str,
        settings: &serde_json::Value,
        secret: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write("configuring ticketing").await?;
        let now = Timestamp::now().as_micros();
        sqlx::query(
            "INSERT INTO ticketing (id, system, settings, secret, updated_at)
             VALUES (1, $1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE
                SET system = excluded.system, settings = excluded.settings,
                    secret = COALESCE(excluded.secret, ticketing.secret),
                    updated_at = excluded.updated_at",
        )
        .bind(system)
        .bind(settings.to_string())
        .bind(secret)
        .bind(now)
        .execute(&mut *w.conn())
        .await
        .op("configuring ticketing")?;
        w.commit("configuring ticketing").await
    }

    /// The ticketing system, if one is configured.
    pub async fn ticketing(&self) -> Result<Option<TicketingRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT system, settings, secret, sync_mark, last_sync_at, last_error
               FROM ticketing WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await
        .op("reading the ticketing settings")?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| StoreError::Database {
            op: "reading the ticketing settings",
            error: e,
        };
        let settings: String = row.try_get("settings").map_err(read)?;
        Ok(Some(TicketingRecord {
            system: row.try_get("system").map_err(read)?,
            settings: serde_json::from_str(&settings)
                .map_err(|e| StoreError::corrupt(format!("ticketing settings: {e}")))?,
            secret: row.try_get("secret").map_err(read)?,
            sync_mark: ts(row.try_get("sync_mark").map_err(read)?),
            last_sync_at: ts(row.try_get("last_sync_at").map_err(read)?),
            last_error: row.try_get("last_error").map_err(read)?,
        }))
    }

    /// Records a sync-in poll: the new mark (never moved back) and its error, if any.
    pub async fn record_ticket_sync(
        &self,
        mark: Option<Timestamp>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write("recording a ticket sync").await?;
        sqlx::query(
            "UPDATE ticketing
                SET sync_mark = CASE WHEN sync_mark IS NULL OR $1 > sync_mark THEN $1
                                     ELSE sync_mark END,
                    last_sync_at = $2, last_error = $3
              WHERE id = 1",
        )
        .bind(mark.map(Timestamp::as_micros))
        .bind(Timestamp::now().as_micros())
        .bind(error)
        .execute(&mut *w.conn())
        .await
        .op("recording a ticket sync")?;
        w.commit("recording a ticket sync").await
    }

    /// Outbox items due now, oldest first per tenant, at most `limit`. Work of one incident for
    /// one target is done in order: an item waits while an earlier one of its incident and
    /// target is still pending (due or not) or failed, so each pass holds at most one item per
    /// incident and target (a ServiceNow outage does not hold up vendor write-backs).
    pub async fn due_outbox(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS}
               FROM outbox o JOIN tenants t ON t.id = o.tenant_id
              WHERE o.state = 'pending' AND o.next_attempt_at <= $1
                AND NOT EXISTS (SELECT 1 FROM outbox e
                                 WHERE e.incident_id = o.incident_id AND e.id < o.id
                                   AND e.target = o.target
                                   AND e.state IN ('pending', 'failed'))
              ORDER BY o.tenant_id, o.id
              LIMIT $2"
        ))
        .bind(now.as_micros())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .op("reading due outbox items")?;
        rows.iter().map(item_from_row).collect()
    }

    /// Items not yet done (pending and failed), oldest first, at most 10,000.
    pub async fn open_outbox(&self) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS}
               FROM outbox o JOIN tenants t ON t.id = o.tenant_id
              WHERE o.state IN ('pending', 'failed')
              ORDER BY o.id
              LIMIT 10000"
        ))
        .fetch_all(&self.pool)
        .await
        .op("reading the outbox")?;
        rows.iter().map(item_from_row).collect()
    }

    /// Every outbox item of an incident, oldest first (the sync history of `incidents get`).
    pub async fn outbox_of_incident(
        &self,
        incident_id: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ITEM_COLUMNS}
               FROM outbox o JOIN tenants t ON t.id = o.tenant_id
              WHERE o.incident_id = $1
              ORDER BY o.id"
        ))
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await
        .op("reading an incident's outbox")?;
        rows.iter().map(item_from_row).collect()
    }

    /// Does this incident have ticket work not yet done?
    pub async fn has_pending_ticket_work(&self, incident_id: i64) -> Result<bool, StoreError> {
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM outbox
              WHERE incident_id = $1 AND state = 'pending' AND target = 'servicenow' LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await
        .op("reading the outbox")?;
        Ok(id.is_some())
    }

    /// Marks an item done. With a `fence` (the lease of the tenant's outbox this replica did
    /// the work under), the change commits only while that lease is held
    /// ([`StoreError::LeaseLost`] otherwise): a replica that lost the tenant to another
    /// cannot overwrite what the new holder records.
    pub async fn outbox_done(&self, id: i64, fence: Option<&Fence>) -> Result<(), StoreError> {
        self.outbox_set(id, "done", None, None, fence).await
    }

    /// Records a failed attempt; the item is tried again at `next_attempt_at`. `fence` as in
    /// [`Store::outbox_done`].
    pub async fn outbox_retry(
        &self,
        id: i64,
        error: &str,
        next_attempt_at: Timestamp,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.outbox_set(id, "pending", Some(error), Some(next_attempt_at), fence)
            .await
    }

    /// Gives up on an item: it stays visible as `failed` with its error until retried by hand.
    /// `fence` as in [`Store::outbox_done`].
    pub async fn outbox_failed(
        &self,
        id: i64,
        error: &str,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        self.outbox_set(id, "failed", Some(error), None, fence)
            .await
    }

    async fn outbox_set(
        &self,
        id: i64,
        state: &str,
        error: Option<&str>,
        next: Option<Timestamp>,
        fence: Option<&Fence>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("updating an outbox item").await?;
        let mut tx = w.tx()?;
        if let Some(fence) = fence {
            crate::leases::check_fence(&mut tx, fence).await?;
        }
        let now = Timestamp::now().as_micros();
        tx.execute(
            "updating an outbox item",
            "UPDATE outbox
                SET state = $2, attempts = attempts + $3, last_error = $4,
                    next_attempt_at = COALESCE($5, next_attempt_at), updated_at = $6,
                    done_at = CASE WHEN $2 = 'done' THEN $6 ELSE done_at END
              WHERE id = $1",
            &[
                id.into(),
                state.into(),
                1_i64.into(),
                error.into(),
                next.map(Timestamp::as_micros).into(),
                now.into(),
            ],
        )
        .await?;
        w.commit("updating an outbox item").await
    }

    /// Puts failed items back in the queue (all, or one tenant's), returning how many.
    pub async fn outbox_retry_failed(&self, tenant: Option<&str>) -> Result<u64, StoreError> {
        let mut w = self.begin_write("retrying failed outbox items").await?;
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', next_attempt_at = $2, updated_at = $2
              WHERE state = 'failed'
                AND ($1 IS NULL OR tenant_id = (SELECT id FROM tenants WHERE name = $1))",
        )
        .bind(tenant)
        .bind(Timestamp::now().as_micros())
        .execute(&mut *w.conn())
        .await
        .op("retrying failed outbox items")?;
        w.commit_waking("retrying failed outbox items").await?;
        Ok(done.rows_affected())
    }

    /// Depth and age of the outbox.
    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.outbox_stats_without(None).await
    }

    /// Depth and age of the outbox without one target's items (`servicenow` while ticketing
    /// is not configured), or of all.
    pub async fn outbox_stats_without(
        &self,
        target: Option<&str>,
    ) -> Result<OutboxStats, StoreError> {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT state, COUNT(*), MIN(created_at) FROM outbox
              WHERE $1 IS NULL OR target <> $1
              GROUP BY state",
        )
        .bind(target)
        .fetch_all(&self.pool)
        .await
        .op("counting the outbox")?;
        let mut s = OutboxStats::default();
        for (state, n, oldest) in rows {
            match state.as_str() {
                "pending" => {
                    s.pending = n;
                    s.oldest_pending = ts(oldest);
                }
                "failed" => s.failed = n,
                _ => s.done += n,
            }
        }
        Ok(s)
    }

    /// The ticket of an incident.
    pub async fn ticket_of_incident(
        &self,
        incident_id: i64,
    ) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets k JOIN tenants t ON t.id = k.tenant_id
              WHERE k.incident_id = $1"
        ))
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await
        .op("reading a ticket")?;
        row.as_ref().map(ticket_from_row).transpose()
    }

    /// The ticket with this ServiceNow sys_id. (A record that merely carries one of
    /// socbridge's correlation ids is not its ticket: only the sys_id socbridge created or
    /// adopted counts.)
    pub async fn find_ticket(&self, sys_id: &str) -> Result<Option<TicketRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets k JOIN tenants t ON t.id = k.tenant_id
              WHERE k.sys_id = $1"
        ))
        .bind(sys_id)
        .fetch_optional(&self.pool)
        .await
        .op("finding a ticket")?;
        row.as_ref().map(ticket_from_row).transpose()
    }

    /// Records what socbridge learned of an incident's ticket, with a timeline line when
    /// `event` is given.
    pub async fn record_ticket(
        &self,
        incident_id: i64,
        link: &TicketLink,
        event: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("recording a ticket").await?;
        let mut tx = w.tx()?;
        let now = Timestamp::now();
        let url_before: Option<(Option<String>,)> = tx
            .fetch_optional(
                "reading a ticket",
                "SELECT url FROM tickets WHERE incident_id = $1",
                &[incident_id.into()],
            )
            .await?;
        tx.execute(
            "recording a ticket",
            "UPDATE tickets
                SET sys_id = $2, number = $3, state = $4, url = $5,
                    remote_updated_on = CASE
                        WHEN remote_updated_on IS NULL OR $6 > remote_updated_on THEN $6
                        ELSE remote_updated_on END,
                    updated_at = $7
              WHERE incident_id = $1",
            &[
                incident_id.into(),
                link.sys_id.as_str().into(),
                link.number.as_str().into(),
                link.state.as_str().into(),
                link.url.as_str().into(),
                link.remote_updated_on.map(Timestamp::as_micros).into(),
                now.as_micros().into(),
            ],
        )
        .await?;
        if let Some((kind, detail)) = event {
            crate::ingest::add_event(&mut tx, incident_id, now, kind, "servicenow", detail).await?;
            // The incident now shows its ticket (or the ticket's new state): the sinks follow.
            let tenant_id: Option<(i64,)> = tx
                .fetch_optional(
                    "reading a ticket",
                    "SELECT tenant_id FROM tickets WHERE incident_id = $1",
                    &[incident_id.into()],
                )
                .await?;
            if let Some((tenant_id,)) = tenant_id {
                crate::sinks::enqueue_incident(&mut tx, tenant_id, incident_id, now).await?;
            }
        }
        if url_before.is_some_and(|(before,)| before.as_deref() != Some(link.url.as_str())) {
            crate::xdr::on_ticket_linked(&mut tx, incident_id, now).await?;
        }
        w.commit("recording a ticket").await
    }

    /// Has this journal entry of the incident's ticket been taken in (or written) already?
    pub async fn journal_seen(&self, incident_id: i64, entry_id: &str) -> Result<bool, StoreError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT incident_id FROM ticket_journal_seen WHERE incident_id = $1 AND entry_id = $2",
        )
        .bind(incident_id)
        .bind(entry_id)
        .fetch_optional(&self.pool)
        .await
        .op("reading the journal entries seen")?;
        Ok(n.is_some())
    }

    /// Applies a change that came from the ticket: no ticket work is enqueued for it. A
    /// journal entry taken in is recorded as seen in the same transaction, so a note flows in
    /// once even if the process dies right after. Returns `None` if the incident is gone.
    pub async fn apply_ticket_change(
        &self,
        incident_id: i64,
        update: &IncidentUpdate,
        journal_entry: Option<&str>,
    ) -> Result<Option<IncidentView>, StoreError> {
        self.update_incident_from(incident_id, None, update, Origin::Ticket, journal_entry)
            .await
    }
}

/// Records a journal entry as seen, inside the caller's transaction.
pub(crate) async fn mark_journal_seen(
    conn: &mut AnyConnection,
    incident_id: i64,
    entry_id: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO ticket_journal_seen (incident_id, entry_id) VALUES ($1, $2)
         ON CONFLICT (incident_id, entry_id) DO NOTHING",
    )
    .bind(incident_id)
    .bind(entry_id)
    .execute(&mut *conn)
    .await
    .op("recording a journal entry")?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_are_bounded_and_stable() {
        assert_eq!(correlation_id("acme", 42), "socbridge:acme:42");
        let long = "t".repeat(120);
        let a = correlation_id(&long, 7);
        assert!(a.len() <= 100, "{a}");
        assert_eq!(a, correlation_id(&long, 7));
        assert!(a.starts_with(CORRELATION_PREFIX));
    }

    #[test]
    fn update_work_follows_the_status() {
        use IncidentStatus::*;
        let kinds = |b, a, f, c: Option<&str>| {
            work_for_update(b, a, f, c, "alice")
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(New, Resolved, false, None), vec![OutboxKind::Close]);
        assert_eq!(
            kinds(Closed, InProgress, false, None),
            vec![OutboxKind::Reopen]
        );
        assert_eq!(
            kinds(New, New, true, Some("x")),
            vec![OutboxKind::Update, OutboxKind::Note]
        );
        assert!(kinds(New, New, false, None).is_empty());
    }
}
