//! Credentials shared by several sources (an MSSP's Umbrella parent key acting for many
//! customers' orgs): one row, one sealed secret, named by the sources that use it.

use crate::error::ResultExt as _;
use crate::{Store, StoreError};
use serde::Serialize;
use socbridge_model::Timestamp;
use sqlx::Row as _;
use std::fmt;

/// A shared credential as stored.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct CredentialRecord {
    pub name: String,
    pub kind: String,
    pub settings: serde_json::Value,
    /// Sealed; opaque to the store (never serialised).
    #[serde(skip)]
    pub secret: Option<Vec<u8>>,
    pub has_secret: bool,
    pub updated_at: Timestamp,
}

impl fmt::Debug for CredentialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("settings", &self.settings)
            .field("secret", &self.secret.as_ref().map(|_| "[sealed]"))
            .finish()
    }
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<CredentialRecord, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading a credential",
        error: e,
    };
    let settings: String = row.try_get("settings").map_err(read)?;
    let secret: Option<Vec<u8>> = row.try_get("secret").map_err(read)?;
    Ok(CredentialRecord {
        name: row.try_get("name").map_err(read)?,
        kind: row.try_get("kind").map_err(read)?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::corrupt(format!("credential settings: {e}")))?,
        has_secret: secret.is_some(),
        secret,
        updated_at: Timestamp::from_micros(row.try_get("updated_at").map_err(read)?),
    })
}

impl Store {
    /// Creates or replaces a credential (the secret only when one is given).
    pub async fn upsert_credential(
        &self,
        name: &str,
        kind: &str,
        settings: &serde_json::Value,
        secret: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        let mut w = self.begin_write("saving a credential").await?;
        sqlx::query(
            "INSERT INTO credentials (name, kind, settings, secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE
                SET kind = excluded.kind, settings = excluded.settings,
                    secret = COALESCE(excluded.secret, credentials.secret),
                    updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(kind)
        .bind(settings.to_string())
        .bind(secret)
        .bind(now)
        .execute(&mut *w.conn())
        .await
        .op("saving a credential")?;
        w.commit("saving a credential").await
    }

    /// One credential by name.
    pub async fn credential(&self, name: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT name, kind, settings, secret, updated_at FROM credentials WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .op("reading a credential")?;
        row.as_ref().map(from_row).transpose()
    }

    /// Every credential, by name.
    pub async fn list_credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, kind, settings, secret, updated_at FROM credentials ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .op("listing credentials")?;
        rows.iter().map(from_row).collect()
    }

    /// Removes a credential; `false` if there was none. Sources naming it then fail their
    /// polls with an error saying so.
    pub async fn remove_credential(&self, name: &str) -> Result<bool, StoreError> {
        let mut w = self.begin_write("removing a credential").await?;
        let done = sqlx::query("DELETE FROM credentials WHERE name = $1")
            .bind(name)
            .execute(&mut *w.conn())
            .await
            .op("removing a credential")?;
        w.commit("removing a credential").await?;
        Ok(done.rows_affected() > 0)
    }
}
