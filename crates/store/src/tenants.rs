//! Tenants: create, list, remove. Removing a tenant removes everything it owns through the
//! schema's `ON DELETE CASCADE` keys, in one statement.

use crate::error::ResultExt as _;
use crate::{Store, StoreError, TenantRecord};
use socbridge_model::{TenantName, Timestamp};
use sqlx::Row as _;
use sqlx::any::AnyRow;

const TENANT_COLUMNS: &str = "id, name, display_name, created_at";

fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord, sqlx::Error> {
    Ok(TenantRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        display_name: row.try_get("display_name")?,
        created_at: Timestamp::from_micros(row.try_get("created_at")?),
    })
}

impl Store {
    /// Creates a tenant; `Conflict` if one of that name exists.
    pub async fn create_tenant(
        &self,
        name: &TenantName,
        display_name: Option<&str>,
    ) -> Result<TenantRecord, StoreError> {
        let mut w = self.begin_write("creating a tenant").await?;
        let row = sqlx::query(&format!(
            "INSERT INTO tenants (name, display_name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING
             RETURNING {TENANT_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(display_name)
        .bind(Timestamp::now().as_micros())
        .fetch_optional(w.conn())
        .await
        .op("creating a tenant")?;
        let Some(row) = row else {
            return Err(StoreError::Conflict {
                detail: format!("tenant `{name}` already exists"),
            });
        };
        let tenant = tenant_from_row(&row).op("reading the new tenant")?;
        w.commit("creating a tenant").await?;
        Ok(tenant)
    }

    /// Creates a tenant or, if it exists, updates its display name when one is given: the
    /// declarative config applies this on every start.
    pub async fn upsert_tenant(
        &self,
        name: &TenantName,
        display_name: Option<&str>,
    ) -> Result<TenantRecord, StoreError> {
        let mut w = self.begin_write("saving a tenant").await?;
        let row = sqlx::query(&format!(
            "INSERT INTO tenants (name, display_name, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                SET display_name = COALESCE(excluded.display_name, tenants.display_name)
             RETURNING {TENANT_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(display_name)
        .bind(Timestamp::now().as_micros())
        .fetch_one(w.conn())
        .await
        .op("saving a tenant")?;
        let tenant = tenant_from_row(&row).op("reading the saved tenant")?;
        w.commit("saving a tenant").await?;
        Ok(tenant)
    }

    /// Every tenant, by name.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await
        .op("listing tenants")?;
        rows.iter()
            .map(tenant_from_row)
            .collect::<Result<_, _>>()
            .op("reading tenants")
    }

    pub async fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .op("reading a tenant")?;
        row.as_ref()
            .map(tenant_from_row)
            .transpose()
            .op("reading a tenant")
    }

    /// Removes a tenant with its sources, findings, incidents and quarantine. `false` if there
    /// was no such tenant.
    pub async fn remove_tenant(&self, name: &str) -> Result<bool, StoreError> {
        let mut w = self.begin_write("removing a tenant").await?;
        let done = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name)
            .execute(w.conn())
            .await
            .op("removing a tenant")?;
        w.commit("removing a tenant").await?;
        Ok(done.rows_affected() > 0)
    }
}
