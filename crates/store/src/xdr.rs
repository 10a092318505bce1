//! The optional Cisco XDR incident sink: each tenant's sink settings (sealed secret), the XDR
//! incident of each socbridge incident, and the outbox work that keeps them in step.
//!
//! Invariants kept here:
//! - One XDR incident per socbridge incident: `xdr_incidents` is keyed by incident, and its
//!   `external_id` (which the worker looks up in XDR before it creates anything) is unique
//!   and names this store, the tenant and the incident.
//! - XDR work is enqueued in the transaction of the change that calls for it: a new
//!   incident (ingest), a status change from any side (an analyst, ServiceNow sync-in, the
//!   vendor), and the incident's ticket getting its URL. XDR is never the origin of a change,
//!   so nothing here can echo.

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::tickets::{OutboxKind, insert_outbox};
use crate::{Store, StoreError};
use serde::Serialize;
use socbridge_model::Timestamp;
use sqlx::Row as _;
use std::collections::HashSet;
use std::fmt;

/// Outbox target of the XDR sink's work.
pub const TARGET_XDR: &str = "xdr";

/// A tenant's XDR sink as stored.
#[derive(Clone, PartialEq)]
pub struct XdrSinkRecord {
    pub tenant: String,
    pub settings: serde_json::Value,
    /// Sealed client secret, opaque to the store.
    pub secret: Option<Vec<u8>>,
    pub updated_at: Timestamp,
}

impl fmt::Debug for XdrSinkRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdrSinkRecord")
            .field("tenant", &self.tenant)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "[sealed]"))
            .finish()
    }
}

/// The XDR incident of a socbridge incident as socbridge knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct XdrIncidentRecord {
    pub incident_id: i64,
    pub tenant: String,
    pub external_id: String,
    /// The CTIA id (a URL), once created or adopted.
    pub xdr_id: Option<String>,
    /// The XDR status last written or read back.
    pub status: Option<String>,
}

/// The XDR external id of an incident: `socbridge:<store>:<tenant>:incident:<id>`. The store's
/// random install id keeps two socbridge stores apart in one XDR organisation; incident ids
/// are never reused within a store.
pub fn external_id(install_id: &str, tenant: &str, incident_id: i64) -> String {
    format!("socbridge:{install_id}:{tenant}:incident:{incident_id}")
}

async fn install_id(tx: &mut Tx<'_>) -> Result<String, StoreError> {
    let (id,): (String,) = tx
        .fetch_one(
            "reading the installation id",
            "SELECT install_id FROM installation WHERE id = 1",
            &[],
        )
        .await?;
    Ok(id)
}

/// The tenant's name when its XDR sink is on, inside the caller's transaction.
async fn sink_tenant(tx: &mut Tx<'_>, tenant_id: i64) -> Result<Option<String>, StoreError> {
    let name: Option<(String,)> = tx
        .fetch_optional(
            "checking whether the XDR sink is on",
            "SELECT t.name FROM xdr_sinks x JOIN tenants t ON t.id = x.tenant_id
              WHERE x.tenant_id = $1",
            &[tenant_id.into()],
        )
        .await?;
    Ok(name.map(|(n,)| n))
}

/// Records the incident's XDR incident (with its external id) and enqueues its create,
/// unless it has one already. Returns whether it was new.
async fn enqueue_create(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    tenant: &str,
    install: &str,
    incident_id: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let external = external_id(install, tenant, incident_id);
    let added = tx
        .execute(
            "adding an XDR incident",
            "INSERT INTO xdr_incidents (incident_id, tenant_id, external_id, created_at,
                                        updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (incident_id) DO NOTHING",
            &[
                incident_id.into(),
                tenant_id.into(),
                external.as_str().into(),
                now.as_micros().into(),
            ],
        )
        .await?;
    if added == 0 {
        return Ok(false);
    }
    let payload = serde_json::json!({});
    insert_outbox(
        tx,
        tenant_id,
        incident_id,
        OutboxKind::XdrCreate,
        &payload,
        now,
    )
    .await?;
    Ok(true)
}

/// An ingest created these incidents: each gets its XDR incident's create when the tenant's
/// sink is on. Called once per ingest transaction.
pub(crate) async fn on_ingest(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    created: &HashSet<i64>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if created.is_empty() {
        return Ok(());
    }
    let Some(tenant) = sink_tenant(tx, tenant_id).await? else {
        return Ok(());
    };
    let install = install_id(tx).await?;
    let mut ids: Vec<i64> = created.iter().copied().collect();
    ids.sort_unstable();
    for id in ids {
        enqueue_create(tx, tenant_id, &tenant, &install, id, now).await?;
    }
    Ok(())
}

/// The incident's status changed (from any origin): its XDR incident follows. An incident
/// from before the sink was switched on gets its create (which writes the current status).
/// The worker reads the incident when it runs, so a sync carries every change made before.
pub(crate) async fn on_status_change(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let Some(tenant) = sink_tenant(tx, tenant_id).await? else {
        return Ok(());
    };
    let install = install_id(tx).await?;
    if enqueue_create(tx, tenant_id, &tenant, &install, incident_id, now).await? {
        return Ok(());
    }
    enqueue_sync(tx, tenant_id, incident_id, now).await
}

/// The incident's ticket got (or changed) its URL: the XDR incident's references follow.
pub(crate) async fn on_ticket_linked(
    tx: &mut Tx<'_>,
    incident_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let tenant_id: Option<(i64,)> = tx
        .fetch_optional(
            "reading an XDR incident",
            "SELECT x.tenant_id FROM xdr_incidents x JOIN xdr_sinks s ON s.tenant_id = x.tenant_id
              WHERE x.incident_id = $1",
            &[incident_id.into()],
        )
        .await?;
    match tenant_id {
        Some((tenant_id,)) => enqueue_sync(tx, tenant_id, incident_id, now).await,
        None => Ok(()),
    }
}

/// Queues a sync. Always a new item: one already queued may be running and have read the
/// incident before this change; a sync finding nothing to change writes nothing.
async fn enqueue_sync(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = serde_json::json!({});
    insert_outbox(
        tx,
        tenant_id,
        incident_id,
        OutboxKind::XdrSync,
        &payload,
        now,
    )
    .await
}

fn incident_from_row(row: &sqlx::any::AnyRow) -> Result<XdrIncidentRecord, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading an XDR incident",
        error: e,
    };
    Ok(XdrIncidentRecord {
        incident_id: row.try_get("incident_id").map_err(read)?,
        tenant: row.try_get("tenant").map_err(read)?,
        external_id: row.try_get("external_id").map_err(read)?,
        xdr_id: row.try_get("xdr_id").map_err(read)?,
        status: row.try_get("status").map_err(read)?,
    })
}

const INCIDENT_COLUMNS: &str = "x.incident_id, t.name AS tenant, x.external_id, x.xdr_id, x.status";

impl Store {
    /// Turns a tenant's XDR sink on with these settings (`secret: None` keeps the stored
    /// one), or off with `None`. `false` when there is no such tenant.
    pub async fn set_xdr_sink(
        &self,
        tenant: &str,
        sink: Option<(&serde_json::Value, Option<&[u8]>)>,
    ) -> Result<bool, StoreError> {
        let mut w = self.begin_write("configuring an XDR sink").await?;
        let conn = w.conn();
        let tenant_id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .op("configuring an XDR sink")?;
        let Some(tenant_id) = tenant_id else {
            return Ok(false);
        };
        match sink {
            Some((settings, secret)) => {
                sqlx::query(
                    "INSERT INTO xdr_sinks (tenant_id, settings, secret, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (tenant_id) DO UPDATE
                        SET settings = excluded.settings,
                            secret = COALESCE(excluded.secret, xdr_sinks.secret),
                            updated_at = excluded.updated_at",
                )
                .bind(tenant_id)
                .bind(settings.to_string())
                .bind(secret)
                .bind(Timestamp::now().as_micros())
                .execute(&mut *conn)
                .await
                .op("configuring an XDR sink")?;
            }
            None => {
                sqlx::query("DELETE FROM xdr_sinks WHERE tenant_id = $1")
                    .bind(tenant_id)
                    .execute(&mut *conn)
                    .await
                    .op("removing an XDR sink")?;
            }
        }
        w.commit("configuring an XDR sink").await?;
        Ok(true)
    }

    /// A tenant's XDR sink, if it is on.
    pub async fn xdr_sink(&self, tenant: &str) -> Result<Option<XdrSinkRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT t.name AS tenant, x.settings, x.secret, x.updated_at
               FROM xdr_sinks x JOIN tenants t ON t.id = x.tenant_id
              WHERE t.name = $1",
        )
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .op("reading an XDR sink")?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| StoreError::Database {
            op: "reading an XDR sink",
            error: e,
        };
        let settings: String = row.try_get("settings").map_err(read)?;
        Ok(Some(XdrSinkRecord {
            tenant: row.try_get("tenant").map_err(read)?,
            settings: serde_json::from_str(&settings)
                .map_err(|e| StoreError::corrupt(format!("XDR sink settings: {e}")))?,
            secret: row.try_get("secret").map_err(read)?,
            updated_at: Timestamp::from_micros(row.try_get("updated_at").map_err(read)?),
        }))
    }

    /// The XDR incident of an incident.
    pub async fn xdr_incident(
        &self,
        incident_id: i64,
    ) -> Result<Option<XdrIncidentRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM xdr_incidents x JOIN tenants t ON t.id = x.tenant_id
              WHERE x.incident_id = $1"
        ))
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await
        .op("reading an XDR incident")?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Every XDR incident (of one tenant, or all), by incident id.
    pub async fn xdr_incidents(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<XdrIncidentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM xdr_incidents x JOIN tenants t ON t.id = x.tenant_id
              WHERE $1 IS NULL OR t.name = $1
              ORDER BY x.incident_id"
        ))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .op("listing XDR incidents")?;
        rows.iter().map(incident_from_row).collect()
    }

    /// Records what socbridge learned of an incident's XDR incident (its id once created or
    /// adopted, the status written or read back), with a timeline line when `event` is given.
    pub async fn record_xdr_incident(
        &self,
        incident_id: i64,
        xdr_id: &str,
        status: &str,
        event: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let mut w = self.begin_write("recording an XDR incident").await?;
        let conn = w.conn();
        let now = Timestamp::now();
        sqlx::query(
            "UPDATE xdr_incidents SET xdr_id = $2, status = $3, updated_at = $4
              WHERE incident_id = $1",
        )
        .bind(incident_id)
        .bind(xdr_id)
        .bind(status)
        .bind(now.as_micros())
        .execute(&mut *conn)
        .await
        .op("recording an XDR incident")?;
        if let Some((kind, detail)) = event {
            crate::ingest::add_event(
                &mut Tx::sqlx(conn, self.backend),
                incident_id,
                now,
                kind,
                "xdr",
                detail,
            )
            .await?;
        }
        w.commit("recording an XDR incident").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ids_name_the_store_the_tenant_and_the_incident() {
        assert_eq!(
            external_id("0a1b2c3d4e5f6071", "acme", 42),
            "socbridge:0a1b2c3d4e5f6071:acme:incident:42"
        );
        assert_ne!(external_id("a", "acme", 4), external_id("b", "acme", 4));
        assert_ne!(external_id("a", "acme", 4), external_id("a", "globex", 4));
    }
}
