//! The driver layer of write transactions: their statements run through [`Tx`], which on
//! PostgreSQL hands them to sqlx (one round trip each, as everywhere else in the store) and on
//! SQLite runs them on [`Writer`], a connection of this process's own, in the calling thread.
//!
//! Why: sqlx's SQLite driver runs every statement on a worker thread of its own. Each one is a
//! channel send, two thread wake-ups and, through the `Any` driver, a copy of every argument
//! (the raw payload of each finding included) into owned buffers before SQLite copies it once
//! more. SQLite has one writer at a time, so every write transaction of the process holds the
//! write lock (see `Store::write`) across all of its hops: under load each hop waits for its
//! thread to be scheduled, and the transactions that only update a row or two (an outbox item
//! done, a ticket recorded, a lease taken) spent most of their time holding the lock while
//! waiting for a thread. [`Tx`] keeps one SQL text for both databases: on SQLite it prepares each
//! statement once per connection (rusqlite's statement cache) and steps it directly, `BEGIN
//! IMMEDIATE` and `COMMIT` included. Reads stay on sqlx's pool; so do the write transactions not
//! yet written against [`Tx`] (`Store::begin_write`), under the same process write lock.
//!
//! A statement of a direct transaction runs to its end in the calling thread (a few
//! milliseconds for a page of findings), so a dropped future can never leave one half-run; a
//! transaction dropped without its commit is rolled back at once (see `Writing`).

use crate::error::ResultExt as _;
use crate::{Backend, StoreError};
use rusqlite::ffi;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use std::borrow::Cow;
use std::os::raw::c_int;
use std::path::PathBuf;
use std::time::Duration;

/// Prepared statements kept per writer connection: the ingest, ticket, lease and outbox
/// statements, with room to spare.
const STATEMENT_CACHE: usize = 256;

/// SQLite: the connection this process's write transactions run on, opened beside sqlx's pool
/// on the same file (lazily, after the pool has created the file and migrated it), with the
/// pool's settings. `None` for a database without a file (`:memory:`), whose writes go through
/// the pool.
pub(crate) struct Writer {
    path: Option<PathBuf>,
    conn: Option<rusqlite::Connection>,
}

impl Writer {
    pub(crate) fn new(path: Option<PathBuf>) -> Self {
        Writer { path, conn: None }
    }

    /// The open connection, opening it first if needed; `None` when writes go through sqlx.
    pub(crate) fn connection(&mut self) -> Result<Option<&mut rusqlite::Connection>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        if self.conn.is_none() {
            let open = || -> rusqlite::Result<rusqlite::Connection> {
                use rusqlite::OpenFlags;
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // The pool's settings (see `Store::open_sqlite_url`). No busy timeout: `BEGIN
                // IMMEDIATE` is retried by `begin_immediate` without blocking the thread, and a
                // transaction that began holds the write lock.
                conn.busy_timeout(Duration::ZERO)?;
                conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
                conn.execute_batch(&format!(
                    "PRAGMA synchronous = NORMAL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA wal_autocheckpoint = {};
                     PRAGMA mmap_size = {};",
                    crate::SQLITE_WAL_AUTOCHECKPOINT_PAGES,
                    crate::SQLITE_MMAP_BYTES
                ))?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(conn)
            };
            let conn =
                open().map_err(|e| direct_error("opening the SQLite writer connection", e))?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut())
    }

    /// Closes the connection (the next write opens it again).
    pub(crate) fn close(&mut self) {
        self.conn = None;
    }

    /// The connection a transaction was begun on. Never opens one: statements run on a
    /// fresh connection would run outside that transaction.
    pub(crate) fn in_transaction(&mut self) -> Result<&mut rusqlite::Connection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::corrupt("the SQLite writer connection is gone"))
    }

    /// `COMMIT`s the transaction open on the connection.
    pub(crate) fn commit(&mut self, op: &'static str) -> Result<(), StoreError> {
        self.in_transaction()?
            .execute_batch("COMMIT")
            .map_err(|e| direct_error(op, e))
    }

    /// Rolls back the transaction open on the connection; should that fail, closes the
    /// connection, which rolls it back, so that the next write starts clean.
    pub(crate) fn rollback(&mut self) {
        let Some(conn) = &mut self.conn else { return };
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            if conn.is_autocommit() {
                // Nothing was open: SQLite had rolled it back itself.
                return;
            }
            tracing::warn!(error = %e, "rolling back on the SQLite writer failed; reconnecting");
            self.conn = None;
        }
    }
}

/// `BEGIN IMMEDIATE` on the writer connection: takes the database's write lock at once, so a
/// writer in another process makes this one wait instead of failing half-way with
/// SQLITE_BUSY. The wait is a retry with sleeps (up to `timeout`), not SQLite's busy handler,
/// so that no thread of the runtime blocks on another process.
pub(crate) async fn begin_immediate(
    conn: &mut rusqlite::Connection,
    op: &'static str,
    timeout: Duration,
) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        // A transaction left open would make every later BEGIN fail; none should be.
        tracing::warn!("the SQLite writer connection had a transaction open; rolling it back");
        conn.execute_batch("ROLLBACK")
            .map_err(|e| direct_error(op, e))?;
    }
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e) if is_busy(&e) && started.elapsed() < timeout => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(direct_error(op, e)),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.code == rusqlite::ErrorCode::DatabaseBusy || f.code == rusqlite::ErrorCode::DatabaseLocked)
}

/// A parameter of a statement run through [`Tx`]. Nulls keep their type: PostgreSQL is told
/// each parameter's type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v.as_str()))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Int(Some(v)) => ValueRef::Integer(v),
            Arg::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(v) => ValueRef::Blob(v),
            Arg::Int(None) | Arg::Text(None) => ValueRef::Null,
        }))
    }
}

/// A column type a row read through [`Tx`] may hold.
pub(crate) trait Col: Sized {
    fn from_any(row: &AnyRow, i: usize) -> Result<Self, sqlx::Error>;
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
}

macro_rules! col {
    ($($t:ty),*) => {$(
        impl Col for $t {
            fn from_any(row: &AnyRow, i: usize) -> Result<Self, sqlx::Error> {
                row.try_get(i)
            }
            fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                row.get(i)
            }
        }
    )*};
}
col!(
    i64,
    String,
    Option<i64>,
    Option<String>,
    Vec<u8>,
    Option<Vec<u8>>
);

/// A row read through [`Tx`]: a tuple of [`Col`]s.
pub(crate) trait FromRow: Sized {
    fn from_any(row: &AnyRow) -> Result<Self, sqlx::Error>;
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

macro_rules! from_row {
    ($($t:ident $i:tt),*) => {
        impl<$($t: Col),*> FromRow for ($($t,)*) {
            fn from_any(row: &AnyRow) -> Result<Self, sqlx::Error> {
                Ok(($($t::from_any(row, $i)?,)*))
            }
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($($t::from_sqlite(row, $i)?,)*))
            }
        }
    };
}
impl FromRow for () {
    fn from_any(_: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(())
    }
    fn from_sqlite(_: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(())
    }
}
from_row!(A 0);
from_row!(A 0, B 1);
from_row!(A 0, B 1, C 2);
from_row!(A 0, B 1, C 2, D 3);
from_row!(A 0, B 1, C 2, D 3, E 4);
from_row!(A 0, B 1, C 2, D 3, E 4, F 5);

/// The statements of one write transaction, on the connection that holds it; see the module
/// docs.
pub(crate) struct Tx<'c> {
    backend: Backend,
    conn: TxConn<'c>,
}

enum TxConn<'c> {
    /// SQLite: the writer connection, stepped in the calling thread.
    Direct(&'c mut rusqlite::Connection),
    /// A sqlx connection inside a transaction begun through sqlx.
    Sqlx(&'c mut AnyConnection),
}

impl<'c> Tx<'c> {
    /// Statements of a transaction begun on the writer connection.
    pub(crate) fn direct(conn: &'c mut rusqlite::Connection) -> Self {
        Tx {
            backend: Backend::Sqlite,
            conn: TxConn::Direct(conn),
        }
    }

    /// Statements of a transaction begun through sqlx on `any`.
    pub(crate) fn sqlx(any: &'c mut AnyConnection, backend: Backend) -> Self {
        Tx {
            backend,
            conn: TxConn::Sqlx(any),
        }
    }

    /// Which database the statements run on.
    pub(crate) fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs a statement and answers every row.
    pub(crate) async fn fetch_all<R: FromRow>(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        match &mut self.conn {
            TxConn::Direct(conn) => {
                let run = || -> rusqlite::Result<Vec<R>> {
                    let mut stmt = conn.prepare_cached(sql)?;
                    bind(&mut stmt, args)?;
                    let mut rows = stmt.raw_query();
                    let mut out = Vec::new();
                    while let Some(row) = rows.next()? {
                        out.push(R::from_sqlite(row)?);
                    }
                    Ok(out)
                };
                run().map_err(|e| direct_error(op, e))
            }
            TxConn::Sqlx(any) => {
                let rows = sqlx_query(sql, args).fetch_all(&mut **any).await.op(op)?;
                rows.iter().map(|r| R::from_any(r).op(op)).collect()
            }
        }
    }

    /// Runs a statement and answers its first row, if any.
    pub(crate) async fn fetch_optional<R: FromRow>(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, StoreError> {
        match &mut self.conn {
            TxConn::Direct(conn) => {
                let run = || -> rusqlite::Result<Option<R>> {
                    let mut stmt = conn.prepare_cached(sql)?;
                    bind(&mut stmt, args)?;
                    let mut rows = stmt.raw_query();
                    match rows.next()? {
                        Some(row) => Ok(Some(R::from_sqlite(row)?)),
                        None => Ok(None),
                    }
                };
                run().map_err(|e| direct_error(op, e))
            }
            TxConn::Sqlx(any) => {
                let row = sqlx_query(sql, args)
                    .fetch_optional(&mut **any)
                    .await
                    .op(op)?;
                row.map(|r| R::from_any(&r).op(op)).transpose()
            }
        }
    }

    /// Runs a statement that answers one row; no row is an error naming `op`.
    pub(crate) async fn fetch_one<R: FromRow>(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<R, StoreError> {
        self.fetch_optional(op, sql, args)
            .await?
            .ok_or_else(|| StoreError::Database {
                op,
                error: sqlx::Error::RowNotFound,
            })
    }

    /// Runs a statement that answers no rows; answers how many rows it changed.
    pub(crate) async fn execute(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        match &mut self.conn {
            TxConn::Direct(conn) => {
                let run = || -> rusqlite::Result<usize> {
                    let mut stmt = conn.prepare_cached(sql)?;
                    bind(&mut stmt, args)?;
                    stmt.raw_execute()
                };
                run().map(|n| n as u64).map_err(|e| direct_error(op, e))
            }
            TxConn::Sqlx(any) => Ok(sqlx_query(sql, args)
                .execute(&mut **any)
                .await
                .op(op)?
                .rows_affected()),
        }
    }

    /// Whether statements run on the SQLite writer directly: then a statement costs no round
    /// trip, and one row per statement (prepared once) is as cheap as many.
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self.conn, TxConn::Direct(_))
    }
}

/// Binds `args` to `stmt`: in order for `?` parameters; by name for `$N` ones (SQLite numbers
/// named parameters in order of first appearance, so `$2` may come first).
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, args: &[Arg<'_>]) -> rusqlite::Result<()> {
    let numbered = stmt
        .parameter_name(1)
        .is_some_and(|name| name.starts_with('$'));
    for (i, arg) in args.iter().enumerate() {
        let index = if numbered {
            stmt.parameter_index(&format!("${}", i + 1))?
                .ok_or(rusqlite::Error::InvalidParameterCount(i + 1, args.len()))?
        } else {
            i + 1
        };
        stmt.raw_bind_parameter(index, arg)?;
    }
    Ok(())
}

fn sqlx_query<'q>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut query = sqlx::query(sql);
    for arg in args {
        query = match *arg {
            Arg::Int(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::Blob(v) => query.bind(v),
        };
    }
    query
}

/// A rusqlite error as the store reports driver errors, keeping whether a constraint refused
/// the change.
fn direct_error(op: &'static str, e: rusqlite::Error) -> StoreError {
    StoreError::Database {
        op,
        error: sqlx::Error::Database(Box::new(DirectError::from(e))),
    }
}

#[derive(Debug)]
struct DirectError {
    message: String,
    code: Option<c_int>,
}

impl From<rusqlite::Error> for DirectError {
    fn from(e: rusqlite::Error) -> Self {
        let code = match &e {
            rusqlite::Error::SqliteFailure(f, _) => Some(f.extended_code),
            _ => None,
        };
        DirectError {
            message: e.to_string(),
            code,
        }
    }
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DirectError {}

impl sqlx::error::DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => {
                ErrorKind::UniqueViolation
            }
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}
