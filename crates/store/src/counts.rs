//! What the store holds, for summaries and for tests that count: tenants, sources, findings,
//! incidents, the quarantine, and the vendor keys stored per source (the witness compared with
//! what an emulator served).

use crate::error::ResultExt as _;
use crate::{Counts, QuarantineRecord, Store, StoreError};
use socbridge_model::Timestamp;
use sqlx::Row as _;

impl Store {
    /// How much the store holds, overall or for one tenant (all zero for an unknown one).
    pub async fn counts(&self, tenant: Option<&str>) -> Result<Counts, StoreError> {
        // The tenant filter is one `$1` that every statement shares; NULL means all tenants.
        const TENANT: &str = "tenant_id IN (SELECT id FROM tenants WHERE $1 IS NULL OR name = $1)";
        let statements = [
            "SELECT COUNT(*) FROM tenants WHERE $1 IS NULL OR name = $1".to_string(),
            format!("SELECT COUNT(*) FROM sources WHERE {TENANT}"),
            format!("SELECT COUNT(*) FROM findings WHERE {TENANT}"),
            format!("SELECT COUNT(*) FROM incidents WHERE {TENANT}"),
            format!("SELECT COUNT(*) FROM incidents WHERE open_key IS NOT NULL AND {TENANT}"),
            format!("SELECT COUNT(*) FROM quarantine WHERE {TENANT}"),
        ];
        let mut tx = self.begin_read("counting").await?;
        let mut n = [0i64; 6];
        for (slot, sql) in n.iter_mut().zip(&statements) {
            *slot = sqlx::query_scalar(sql)
                .bind(tenant)
                .fetch_one(&mut *tx)
                .await
                .op("counting")?;
        }
        tx.commit().await.op("counting")?;
        let [
            tenants,
            sources,
            findings,
            incidents,
            open_incidents,
            quarantined,
        ] = n;
        Ok(Counts {
            tenants,
            sources,
            findings,
            incidents,
            open_incidents,
            quarantined,
        })
    }

    /// Quarantined records, overall or for one tenant, oldest first.
    pub async fn list_quarantine(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<QuarantineRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT q.id, t.name AS tenant, s.name AS source, q.reason, q.raw, q.received_at
               FROM quarantine q
               JOIN tenants t ON t.id = q.tenant_id
               JOIN sources s ON s.id = q.source_id
              WHERE $1 IS NULL OR t.name = $1
              ORDER BY q.id",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .op("listing the quarantine")?;
        rows.iter()
            .map(|row| {
                Ok(QuarantineRecord {
                    id: row.try_get("id")?,
                    tenant: row.try_get("tenant")?,
                    source: row.try_get("source")?,
                    reason: row.try_get("reason")?,
                    raw: row.try_get("raw")?,
                    received_at: Timestamp::from_micros(row.try_get("received_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .op("reading the quarantine")
    }

    /// The vendor keys stored for one source, in the order they were stored.
    pub async fn finding_keys(
        &self,
        tenant: &str,
        source: &str,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT f.vendor_key
               FROM findings f
               JOIN sources s ON s.id = f.source_id
               JOIN tenants t ON t.id = s.tenant_id
              WHERE t.name = $1 AND s.name = $2
              ORDER BY f.id",
        )
        .bind(tenant)
        .bind(source)
        .fetch_all(&self.pool)
        .await
        .op("listing finding keys")
    }
}
