//! Sources: a tenant's vendor connections with their settings, sealed credentials, cursor and
//! the state of their last poll. The cursor is written only by [`Store::ingest`], together with
//! what it covers.

use crate::error::ResultExt as _;
use crate::{NewSource, SourceRecord, SourcesFingerprint, Store, StoreError};
use socbridge_model::{SourceKind, Timestamp};
use sqlx::Row as _;
use sqlx::any::AnyRow;

const SOURCE_SELECT: &str =
    "SELECT s.id, s.tenant_id, t.name AS tenant, s.name, s.kind, s.settings, s.secret,
        s.cursor_mark, s.last_poll_at, s.last_ok_at, s.last_error, s.created_at
   FROM sources s JOIN tenants t ON t.id = s.tenant_id";

fn source_from_row(row: &AnyRow) -> Result<SourceRecord, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading a source",
        error: e,
    };
    let ts = |v: Option<i64>| v.map(Timestamp::from_micros);
    let name: String = row.try_get("name").map_err(read)?;
    let kind: String = row.try_get("kind").map_err(read)?;
    let kind = kind
        .parse::<SourceKind>()
        .map_err(|e| StoreError::corrupt(format!("source `{name}`: {e}")))?;
    let settings: String = row.try_get("settings").map_err(read)?;
    let settings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::corrupt(format!("settings of source `{name}`: {e}")))?;
    Ok(SourceRecord {
        id: row.try_get("id").map_err(read)?,
        tenant_id: row.try_get("tenant_id").map_err(read)?,
        tenant: row.try_get("tenant").map_err(read)?,
        name,
        kind,
        settings,
        secret: row.try_get("secret").map_err(read)?,
        cursor_mark: ts(row.try_get("cursor_mark").map_err(read)?),
        last_poll_at: ts(row.try_get("last_poll_at").map_err(read)?),
        last_ok_at: ts(row.try_get("last_ok_at").map_err(read)?),
        last_error: row.try_get("last_error").map_err(read)?,
        created_at: Timestamp::from_micros(row.try_get("created_at").map_err(read)?),
    })
}

impl Store {
    /// Creates a source of `tenant` or updates the one of that name (one row per tenant and
    /// name): kind and settings are replaced, the secret only when one is given. If the kind
    /// changes the cursor is cleared: another vendor's mark means nothing to this one.
    /// `NotFound` if the tenant does not exist.
    pub async fn upsert_source(
        &self,
        tenant: &str,
        src: NewSource,
    ) -> Result<SourceRecord, StoreError> {
        let settings = serde_json::to_string(&src.settings)
            .map_err(|e| StoreError::corrupt(format!("settings are not serialisable: {e}")))?;
        let now = Timestamp::now().as_micros();
        let mut w = self.begin_write("saving a source").await?;
        let tenant_id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(tenant)
            .fetch_optional(w.conn())
            .await
            .op("finding the tenant of a source")?;
        let Some(tenant_id) = tenant_id else {
            return Err(StoreError::NotFound {
                what: format!("tenant `{tenant}`"),
            });
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO sources (tenant_id, name, kind, settings, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
                kind = excluded.kind,
                settings = excluded.settings,
                secret = COALESCE(excluded.secret, sources.secret),
                cursor_mark = CASE WHEN sources.kind = excluded.kind
                                   THEN sources.cursor_mark ELSE NULL END,
                updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(tenant_id)
        .bind(src.name.as_str())
        .bind(src.kind.as_str())
        .bind(settings)
        .bind(src.secret)
        .bind(now)
        .fetch_one(w.conn())
        .await
        .op("saving a source")?;
        let row = sqlx::query(&format!("{SOURCE_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_one(w.conn())
            .await
            .op("reading the saved source")?;
        let record = source_from_row(&row)?;
        w.commit("saving a source").await?;
        Ok(record)
    }

    /// The sources of one tenant, or of all, by tenant and name.
    pub async fn list_sources(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<SourceRecord>, StoreError> {
        let rows = match tenant {
            Some(t) => {
                sqlx::query(&format!(
                    "{SOURCE_SELECT} WHERE t.name = $1 ORDER BY t.name, s.name"
                ))
                .bind(t)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!("{SOURCE_SELECT} ORDER BY t.name, s.name"))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .op("listing sources")?;
        rows.iter().map(source_from_row).collect()
    }

    pub async fn get_source(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<SourceRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "{SOURCE_SELECT} WHERE t.name = $1 AND s.name = $2"
        ))
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .op("reading a source")?;
        row.as_ref().map(source_from_row).transpose()
    }

    /// One source by its id, as stored now; `None` once removed.
    pub async fn source_by_id(&self, id: i64) -> Result<Option<SourceRecord>, StoreError> {
        let row = sqlx::query(&format!("{SOURCE_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .op("reading a source")?;
        row.as_ref().map(source_from_row).transpose()
    }

    /// Whether the stored sources changed since an earlier reading: one light query, where
    /// listing them all reads every row with its settings and sealed credentials.
    pub async fn sources_fingerprint(&self) -> Result<SourcesFingerprint, StoreError> {
        let (count, max_id, last_saved_at): (i64, i64, i64) = sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(MAX(id), 0) AS BIGINT),
                    CAST(COALESCE(MAX(updated_at), 0) AS BIGINT)
               FROM sources",
        )
        .fetch_one(&self.pool)
        .await
        .op("reading whether the sources changed")?;
        Ok(SourcesFingerprint {
            count,
            max_id,
            last_saved_at,
        })
    }

    /// The sources never polled or last polled at or before `before`, with that time: the
    /// candidates of a scheduler tick, without their settings or credentials.
    pub async fn sources_polled_before(
        &self,
        before: Timestamp,
    ) -> Result<Vec<(i64, Option<Timestamp>)>, StoreError> {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, last_poll_at FROM sources
              WHERE last_poll_at IS NULL OR last_poll_at <= $1",
        )
        .bind(before.as_micros())
        .fetch_all(&self.pool)
        .await
        .op("finding the sources due a poll")?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (id, at.map(Timestamp::from_micros)))
            .collect())
    }

    /// Removes a source with its findings and quarantined records (their incidents stay, with
    /// their observables and timeline). `false` if there was no such source.
    pub async fn remove_source(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let mut w = self.begin_write("removing a source").await?;
        let done = sqlx::query(
            "DELETE FROM sources
              WHERE name = $2 AND tenant_id = (SELECT id FROM tenants WHERE name = $1)",
        )
        .bind(tenant)
        .bind(name)
        .execute(w.conn())
        .await
        .op("removing a source")?;
        w.commit("removing a source").await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that a poll ran at `at`: on success (`error: None`) it is also the last good
    /// poll and the last error is cleared; on failure the error is kept for `source list`.
    pub async fn record_poll(
        &self,
        source_id: i64,
        at: Timestamp,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut w = self.write("recording a poll").await?;
        let mut tx = w.tx()?;
        let done = match error {
            None => {
                tx.execute(
                    "recording a poll",
                    "UPDATE sources SET last_poll_at = $2, last_ok_at = $2, last_error = NULL
                      WHERE id = $1",
                    &[source_id.into(), at.as_micros().into()],
                )
                .await?
            }
            Some(message) => {
                tx.execute(
                    "recording a poll",
                    "UPDATE sources SET last_poll_at = $2, last_error = $3 WHERE id = $1",
                    &[source_id.into(), at.as_micros().into(), message.into()],
                )
                .await?
            }
        };
        if done == 0 {
            return Err(StoreError::NotFound {
                what: format!("source {source_id}"),
            });
        }
        w.commit("recording a poll").await
    }
}
