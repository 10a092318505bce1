//! The store's errors: what went wrong, named by the operation that failed, so a log line or a
//! CLI message says "while inserting a finding" rather than only what the driver said.

/// An error of the store.
///
/// The driver's message is part of the `Display` text (not a separate `source`), because
/// callers often keep only `to_string()` (a poll report's `error`, a source's `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("database error while {op}: {error}")]
    Database {
        op: &'static str,
        error: sqlx::Error,
    },
    /// What the operation needs does not exist (e.g. the tenant of a new source).
    #[error("{what} not found")]
    NotFound { what: String },
    /// The change contradicts what is stored (a tenant that already exists, reopening an
    /// incident whose subject already has an open one). `detail` is a full sentence.
    #[error("{detail}")]
    Conflict { detail: String },
    /// The schema could not be brought up to date.
    #[error("database migration failed: {0}")]
    Migration(String),
    /// A write made under a lease was refused because the lease is no longer the one it was
    /// made under (taken over by another replica, released or expired): nothing was stored.
    /// Not transient: the work must stop, not be retried under the same lease.
    #[error("the lease of {job} was lost (expired or taken over); the write was refused")]
    LeaseLost { job: String },
    /// A stored value is not one the store writes (an unknown status, invalid JSON...).
    #[error("stored data is corrupt: {detail}")]
    Corrupt { detail: String },
}

impl StoreError {
    pub(crate) fn migration(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(e.to_string())
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            detail: detail.into(),
        }
    }

    /// A PostgreSQL deadlock or serialisation failure: the transaction was rolled back and
    /// running it again is the documented remedy.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            StoreError::Database { error, .. } => error
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code == "40P01" || code == "40001"),
            _ => false,
        }
    }

    /// A unique constraint refused the change.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database { error, .. } => error
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            _ => false,
        }
    }
}

/// Names the operation of a driver error.
pub(crate) trait ResultExt<T> {
    fn op(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> ResultExt<T> for Result<T, sqlx::Error> {
    fn op(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|error| StoreError::Database { op, error })
    }
}
