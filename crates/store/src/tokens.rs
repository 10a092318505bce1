//! Bearer tokens of the HTTP API: a role (admin, analyst) and, for an analyst, the tenants it
//! may see. Only the SHA-256 of a token is stored; a request's token is found by the hash of
//! what it presents (an index lookup, so no comparison of secret text leaks timing).
//!
//! The token itself is made by the caller (high-entropy random text) and shown once.

use crate::error::ResultExt as _;
use crate::{Store, StoreError};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use socbridge_model::Timestamp;
use sqlx::Row as _;
use std::fmt;
use std::str::FromStr;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Every tenant's incidents, and the management of tenants, sources and tokens.
    Admin,
    /// Only its tenants' incidents: read, update, contain, release.
    Analyst,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Analyst => "analyst",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role `{0}` (expected admin or analyst)")]
pub struct UnknownRole(pub String);

impl FromStr for TokenRole {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(TokenRole::Admin),
            "analyst" => Ok(TokenRole::Analyst),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

/// A stored token: never the token, only what identifies and limits it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: i64,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub label: Option<String>,
    pub role: TokenRole,
    /// An analyst's tenants, by name (empty for an admin).
    pub tenants: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl TokenRecord {
    /// The tenants the holder may see: `None` for every tenant (an admin).
    pub fn scope(&self) -> Option<&[String]> {
        match self.role {
            TokenRole::Admin => None,
            TokenRole::Analyst => Some(&self.tenants),
        }
    }
}

/// A token to store: its hash is taken here, the token is not kept.
pub struct NewToken<'a> {
    pub token: &'a str,
    pub label: Option<&'a str>,
    pub role: TokenRole,
    /// An analyst's tenants (at least one); must be empty for an admin.
    pub tenants: &'a [String],
}

/// How many characters of a token `token list` shows.
const PREFIX_LEN: usize = 10;

/// The stored form of a token: hex SHA-256.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Stores a token (its hash, role and tenants). `NotFound` for an unknown tenant;
    /// `Conflict` for an analyst without tenants or an admin with some.
    pub async fn create_token(&self, new: &NewToken<'_>) -> Result<TokenRecord, StoreError> {
        match (new.role, new.tenants.is_empty()) {
            (TokenRole::Analyst, true) => {
                return Err(StoreError::Conflict {
                    detail: "an analyst token needs at least one tenant".into(),
                });
            }
            (TokenRole::Admin, false) => {
                return Err(StoreError::Conflict {
                    detail: "an admin token sees every tenant; give no tenants".into(),
                });
            }
            _ => {}
        }
        let mut w = self.begin_write("creating a token").await?;
        let mut tenant_ids = Vec::new();
        for name in new.tenants {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(w.conn())
                .await
                .op("finding a token's tenant")?;
            let Some(id) = id else {
                return Err(StoreError::NotFound {
                    what: format!("tenant `{name}`"),
                });
            };
            if !tenant_ids.contains(&id) {
                tenant_ids.push(id);
            }
        }
        let prefix: String = new.token.chars().take(PREFIX_LEN).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (token_hash, prefix, label, role, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(token_hash(new.token))
        .bind(prefix.as_str())
        .bind(new.label)
        .bind(new.role.as_str())
        .bind(Timestamp::now().as_micros())
        .fetch_one(w.conn())
        .await
        .op("creating a token")?;
        for tenant_id in tenant_ids {
            sqlx::query("INSERT INTO api_token_tenants (token_id, tenant_id) VALUES ($1, $2)")
                .bind(id)
                .bind(tenant_id)
                .execute(w.conn())
                .await
                .op("scoping a token")?;
        }
        let record = load_tokens(w.conn(), Some(id))
            .await?
            .pop()
            .ok_or_else(|| StoreError::corrupt(format!("token {id} vanished")))?;
        w.commit("creating a token").await?;
        Ok(record)
    }

    /// The live (not revoked) token whose hash is that of `token`.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<TokenRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.op("authenticating a token")?;
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(token_hash(token))
        .fetch_optional(&mut *conn)
        .await
        .op("authenticating a token")?;
        let Some(id) = id else { return Ok(None) };
        Ok(load_tokens(&mut conn, Some(id)).await?.pop())
    }

    /// Every token, revoked ones included, by id.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut conn = self.pool.acquire().await.op("listing tokens")?;
        load_tokens(&mut conn, None).await
    }

    /// Revokes a token; `false` if there is no such live token.
    pub async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        let mut w = self.begin_write("revoking a token").await?;
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(Timestamp::now().as_micros())
        .execute(w.conn())
        .await
        .op("revoking a token")?;
        w.commit("revoking a token").await?;
        Ok(done.rows_affected() > 0)
    }
}

async fn load_tokens(
    conn: &mut sqlx::AnyConnection,
    id: Option<i64>,
) -> Result<Vec<TokenRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, prefix, label, role, created_at, revoked_at FROM api_tokens
          WHERE $1 IS NULL OR id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .op("reading tokens")?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").op("reading a token")?;
        let role: String = row.try_get("role").op("reading a token")?;
        let role = role
            .parse::<TokenRole>()
            .map_err(|e| StoreError::corrupt(format!("token {id}: {e}")))?;
        let tenants: Vec<String> = sqlx::query_scalar(
            "SELECT t.name FROM api_token_tenants a JOIN tenants t ON t.id = a.tenant_id
              WHERE a.token_id = $1 ORDER BY t.name",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await
        .op("reading a token's tenants")?;
        let revoked_at: Option<i64> = row.try_get("revoked_at").op("reading a token")?;
        out.push(TokenRecord {
            id,
            prefix: row.try_get("prefix").op("reading a token")?,
            label: row.try_get("label").op("reading a token")?,
            role,
            tenants,
            created_at: Timestamp::from_micros(row.try_get("created_at").op("reading a token")?),
            revoked_at: revoked_at.map(Timestamp::from_micros),
        });
    }
    Ok(out)
}

impl Store {
    /// Readiness (the API's `/readyz`): the database answers and the newest migration this
    /// binary carries is applied.
    pub async fn schema_ready(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            crate::Backend::Sqlite => &crate::SQLITE_MIGRATIONS,
            crate::Backend::Postgres => &crate::POSTGRES_MIGRATIONS,
        };
        let Some(latest) = migrator.iter().map(|m| m.version).max() else {
            return Ok(());
        };
        let applied: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE version = $1 AND success",
        )
        .bind(latest)
        .fetch_one(&self.pool)
        .await
        .op("checking the migrations")?;
        if applied == 0 {
            return Err(StoreError::Migration(format!(
                "migration {latest} is not applied"
            )));
        }
        Ok(())
    }
}
