//! The driver layer of the ingest: the statements of [`crate::Store::ingest`] run through
//! [`Tx`], which on PostgreSQL hands them to sqlx (one round trip each, as everywhere else in
//! the store) and on SQLite runs them on the connection's own handle, in the calling thread.
//!
//! Why: sqlx's SQLite driver runs every statement on a worker thread of its own. Each one is a
//! channel send, two thread wake-ups and, through the `Any` driver, a copy of every argument
//! (the raw payload of each finding included) into owned buffers before SQLite copies it once
//! more. For the ingest, which writes hundreds of rows per page, that hop and those copies
//! were most of the cost, not SQLite's work. [`Tx`] keeps the one SQL text and the one
//! transaction: on SQLite it borrows the raw handle of the very connection that holds the
//! transaction (see [`install_handle_function`]), prepares each statement once per ingest and
//! steps it directly; statements of other modules (ticket outbox, sinks, containment, lease
//! fence) keep going through sqlx on that same connection, in the same transaction.
//!
//! Soundness of the shared handle: sqlx opens SQLite connections in multi-thread mode (a
//! connection may be used by one thread at a time). The handle is used only while [`Tx`] holds
//! the `&mut AnyConnection` exclusively and no sqlx call on it is in flight, so sqlx's worker
//! thread is idle, waiting for its next command; the channel hand-off of that next command
//! orders our use before its. The rusqlite connection made from the handle does not own it
//! (it never closes it) and finalises its prepared statements when [`Tx`] is dropped, before
//! the transaction is committed or rolled back through sqlx.

use crate::error::ResultExt as _;
use crate::{Backend, StoreError};
use rusqlite::ffi;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use std::borrow::Cow;
use std::os::raw::{c_char, c_int};

/// The SQL function, present on every SQLite connection of this process, that answers the
/// connection's own handle (see [`install_handle_function`]).
const HANDLE_FUNCTION: &str = "socbridge_connection_handle";

/// Registers, once per process, an SQLite auto-extension that gives every connection opened
/// afterwards the SQL function `socbridge_connection_handle()`: the address of that
/// connection's `sqlite3` handle, as an integer. It is how [`Tx`] finds the handle behind a
/// sqlx connection, which sqlx's `Any` driver does not expose. The function is direct-only
/// (no trigger or view can call it) and takes no argument.
pub(crate) fn install_handle_function() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `register_handle_function` has the signature SQLite expects of an
        // auto-extension entry point; registering is thread-safe and done once.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(register_handle_function)) };
        if rc != ffi::SQLITE_OK {
            // Without the function every ingest fails naming it; nothing else is affected.
            tracing::error!(
                rc,
                "could not register the SQLite connection-handle function"
            );
        }
    });
}

unsafe extern "C" fn register_handle_function(
    db: *mut ffi::sqlite3,
    _err: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection SQLite is opening; the name is a NUL-terminated static.
    unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"socbridge_connection_handle".as_ptr(),
            0,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY,
            std::ptr::null_mut(),
            Some(connection_handle),
            None,
            None,
            None,
        )
    }
}

unsafe extern "C" fn connection_handle(
    ctx: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite calls this with a valid context of the connection running the statement.
    unsafe {
        let db = ffi::sqlite3_context_db_handle(ctx);
        ffi::sqlite3_result_int64(ctx, db as usize as i64);
    }
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
col!(i64, String, Option<i64>, Option<String>);

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

/// The statements of one write transaction, on the connection that holds it; see the module
/// docs. Dropped before that transaction commits or rolls back.
pub(crate) struct Tx<'c> {
    any: &'c mut AnyConnection,
    /// SQLite: the same connection, by its handle.
    direct: Option<rusqlite::Connection>,
}

impl<'c> Tx<'c> {
    /// Wraps the connection of a write transaction already begun.
    pub(crate) async fn new(
        any: &'c mut AnyConnection,
        backend: Backend,
    ) -> Result<Self, StoreError> {
        let direct = match backend {
            Backend::Postgres => None,
            Backend::Sqlite => {
                let handle: i64 = sqlx::query_scalar(&format!("SELECT {HANDLE_FUNCTION}()"))
                    .fetch_one(&mut *any)
                    .await
                    .op("finding the SQLite connection's handle")?;
                let db = handle as usize as *mut ffi::sqlite3;
                if db.is_null() {
                    return Err(StoreError::corrupt("the SQLite connection handle is null"));
                }
                // SAFETY: the handle is this very connection's, answered by the function
                // `install_handle_function` gave it; it stays open while `any` is borrowed,
                // which outlives the rusqlite connection (dropped with `self`), and it is
                // used only between sqlx calls (see the module docs). `from_handle` never
                // closes it.
                let conn = unsafe { rusqlite::Connection::from_handle(db) }
                    .map_err(|e| direct_error("borrowing the SQLite connection", e))?;
                Some(conn)
            }
        };
        Ok(Tx { any, direct })
    }

    /// The connection, for statements of other modules (run through sqlx, same transaction).
    pub(crate) fn any(&mut self) -> &mut AnyConnection {
        self.any
    }

    /// Runs a statement and answers every row.
    pub(crate) async fn fetch_all<R: FromRow>(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        if let Some(conn) = &self.direct {
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
            return run().map_err(|e| direct_error(op, e));
        }
        let rows = sqlx_query(sql, args)
            .fetch_all(&mut *self.any)
            .await
            .op(op)?;
        rows.iter().map(|r| R::from_any(r).op(op)).collect()
    }

    /// Runs a statement and answers its first row, if any.
    pub(crate) async fn fetch_optional<R: FromRow>(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, StoreError> {
        if let Some(conn) = &self.direct {
            let run = || -> rusqlite::Result<Option<R>> {
                let mut stmt = conn.prepare_cached(sql)?;
                bind(&mut stmt, args)?;
                let mut rows = stmt.raw_query();
                match rows.next()? {
                    Some(row) => Ok(Some(R::from_sqlite(row)?)),
                    None => Ok(None),
                }
            };
            return run().map_err(|e| direct_error(op, e));
        }
        let row = sqlx_query(sql, args)
            .fetch_optional(&mut *self.any)
            .await
            .op(op)?;
        row.map(|r| R::from_any(&r).op(op)).transpose()
    }

    /// Runs a statement that answers no rows; answers how many rows it changed.
    pub(crate) async fn execute(
        &mut self,
        op: &'static str,
        sql: &str,
        args: &[Arg<'_>],
    ) -> Result<u64, StoreError> {
        if let Some(conn) = &self.direct {
            let run = || -> rusqlite::Result<usize> {
                let mut stmt = conn.prepare_cached(sql)?;
                bind(&mut stmt, args)?;
                stmt.raw_execute()
            };
            return run().map(|n| n as u64).map_err(|e| direct_error(op, e));
        }
        Ok(sqlx_query(sql, args)
            .execute(&mut *self.any)
            .await
            .op(op)?
            .rows_affected())
    }

    /// Whether statements run on the SQLite handle directly: then a statement costs no round
    /// trip, and one row per statement (prepared once) is as cheap as many.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
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
