//! socbridge's durable store: tenants, sources with their cursors, findings, incidents and the
//! quarantine, on SQLite (the embedded default) or PostgreSQL, behind one API.
//!
//! What this crate owns: the schema (`migrations/sqlite`, `migrations/postgres`, side by side),
//! every SQL statement (each beside the code that runs it), and these invariants:
//!
//! - A batch of findings, the incidents they touch and the cursor mark that covers them commit
//!   in **one transaction** or not at all ([`Store::ingest`]).
//! - Uniqueness is enforced by the database, not by hope: findings per tenant + source + vendor
//!   key, quarantined records per tenant + source + hash of their bytes, at most one open
//!   incident per subject (`UNIQUE (tenant_id, open_key)`).
//! - Secrets are opaque sealed bytes here; they never appear in a `Debug` output.
//! - A write made under a lease (an ingest with a [`Fence`]) commits only while that lease is
//!   still its job's current, unexpired grant: the fencing token is checked inside the
//!   committing transaction (module `leases`).
//!
//! One SQL text serves both backends through sqlx's `Any` driver with `$N` placeholders; only
//! 64-bit integers, text and bytes cross it (times are `Timestamp` microseconds). Where a
//! statement cannot be portable (row locks), the two versions sit side by side in a
//! `match self.backend`. The frequent write transactions (the ingest, the ticket worker's
//! results, leases, polls recorded) go through `db::Tx`, which on SQLite runs them on the
//! process's own writer connection without sqlx's worker-thread hop (see the `db` module).

#![forbid(unsafe_code)]

mod containment;
mod counts;
mod credentials;
mod db;
mod error;
mod incidents;
mod ingest;
mod leases;
mod records;
mod sinks;
mod sources;
mod status;
mod tenants;
mod tickets;
mod tokens;
mod xdr;

pub use containment::{ActionChange, ActionRecord, ManualAction};
pub use credentials::CredentialRecord;
pub use error::StoreError;
pub use leases::{
    Fence, Lease, LeaseView, Replica, ReplicaId, ReplicaRecord, fair_share, outbox_job, poll_job,
    sink_job, sync_job,
};
pub use records::{
    Counts, IngestBatch, IngestOutcome, NewSource, QuarantineRecord, SourceRecord,
    SourcesFingerprint, TenantRecord,
};
pub use sinks::{NewSink, SinkBatch, SinkRecord};
pub use status::{JobRef, NamedLease};
pub use tickets::{
    CORRELATION_PREFIX, Origin, OutboxItem, OutboxKind, OutboxStats, TARGET_CONTAINMENT,
    TARGET_SERVICENOW, TARGET_VENDOR, TicketLink, TicketRecord, TicketingRecord, correlation_id,
};
pub use tokens::{NewToken, TokenRecord, TokenRole, UnknownRole, token_hash};
pub use xdr::{TARGET_XDR, XdrIncidentRecord, XdrSinkRecord, external_id as xdr_external_id};

use error::ResultExt as _;
use sqlx::any::AnyPoolOptions;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How long a SQLite connection waits for another connection's (or process's) write lock
/// before failing with SQLITE_BUSY. Long enough for a CLI `incidents update` to wait out a
/// `serve` ingest batch.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections per pool. SQLite: readers run concurrently under WAL while writes are
/// serialised anyway. PostgreSQL: enough for the pollers and the API of one replica.
const SQLITE_POOL_SIZE: u32 = 8;
const POSTGRES_POOL_SIZE: u32 = 10;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The store. Cheap to clone: clones share the pool and the write lock.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serialises write transactions within this process on SQLite, which has one writer at a
    /// time: waiting here is cheaper and fairer than spinning on SQLITE_BUSY. It holds the
    /// writer connection the direct transactions run on (see `db`). Unused on PostgreSQL,
    /// where row locks do that job across replicas.
    write_lock: Arc<Mutex<db::Writer>>,
    /// Notified after a commit of this process that queued outbox work, so the outbox worker
    /// starts at once instead of on its next tick.
    outbox_wake: Arc<tokio::sync::Notify>,
    /// SQLite: what ingests wrote to the WAL since it was last checkpointed.
    wal: Arc<WalCheckpoints>,
}

/// SQLite checkpoints SQLite's WAL by itself in the call that commits once the WAL passes its
/// `wal_autocheckpoint` pages, so the copy into the database file and its fsync would run
/// while the committing ingest still holds this process's write lock, and every other ingest
/// waits for it (a tenth of the whole pipeline's CPU in `socbridge bench`). So the ingest
/// counts what it wrote and, every [`CHECKPOINT_EVERY_BYTES`], runs a passive checkpoint on
/// another pooled connection after its commit, outside the write lock: the next ingest
/// writes meanwhile (a passive checkpoint never blocks a writer). SQLite's own checkpoint, at
/// [`SQLITE_WAL_AUTOCHECKPOINT_PAGES`], is left as the backstop for the other writers.
#[derive(Default)]
struct WalCheckpoints {
    written: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

/// How much an ingest writes between its checkpoints: about SQLite's default cadence (1,000
/// pages of 4 KiB).
const CHECKPOINT_EVERY_BYTES: u64 = 4 << 20;

/// SQLite's own checkpoint threshold on the store's connections (16 MiB of WAL).
pub(crate) const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 4000;

/// How much of the database file the SQLite writer connection (`db::Writer`) reads through
/// a memory map instead of `read` calls into its own page cache (`PRAGMA mmap_size`). The
/// ingest's B-tree descents under the write lock (the unique key's look-ups, the inserts into
/// the indexes) then read the file's pages where the kernel keeps them, without a system call
/// and a copy each: in `socbridge bench` the ingest held the write lock about a tenth less.
/// Address space, not memory of its own: the mapped pages are the kernel's file cache, which
/// it may drop at will, but the pages the writer has touched count toward the process's
/// resident size (up to this much, or the file's size). The pooled connections, which read
/// little, do not map the file, so no page counts twice. Writes still go through the WAL.
pub const SQLITE_MMAP_BYTES: u64 = 1 << 30;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating it if missing) the SQLite database file at `path`, in WAL mode, and
    /// brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let url = sqlite_file_url(path, "mode=rwc")?;
        Self::open_sqlite_url(&url, Some(path.to_path_buf())).await
    }

    /// Connects to `sqlite://PATH` (created if missing) or `postgres://...` and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        match backend_of(url)? {
            Backend::Sqlite => {
                let rest = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"));
                let rest = rest.unwrap_or(url);
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                if path.is_empty() || path == ":memory:" {
                    return Self::open_sqlite_url(url, None).await;
                }
                let mut query = query.to_string();
                if !query.split('&').any(|kv| kv.starts_with("mode=")) {
                    if !query.is_empty() {
                        query.push('&');
                    }
                    query.push_str("mode=rwc");
                }
                // Rebuilt from the decoded path: sqlx parses the URL as a URL first, which would
                // read `sqlite://Data/x.db` as a host and lowercase it.
                let path = std::path::PathBuf::from(percent_decode(path)?);
                let writes_allowed = !query.split('&').any(|kv| kv == "mode=ro");
                let url = sqlite_file_url(&path, &query)?;
                Self::open_sqlite_url(&url, writes_allowed.then_some(path)).await
            }
            Backend::Postgres => Self::open_postgres(url, None).await,
        }
    }

    /// Connects to PostgreSQL with every pooled connection's `search_path` set to `schema`
    /// (created if missing), so that one database can hold many independent stores: each test
    /// owns a fresh schema.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Store, StoreError> {
        check_schema(url, schema)?;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url)
            .await
            .op("connecting to PostgreSQL")?;
        // The name is validated above, so quoting it verbatim is safe.
        conn.execute(format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"").as_str())
            .await
            .op("creating the schema")?;
        conn.close().await.op("closing the set-up connection")?;
        Self::open_postgres(url, Some(schema.to_string())).await
    }

    /// Drops a schema made by [`Store::connect_in_schema`] with everything in it: what a test
    /// or a benchmark run on a database of its own does when it ends.
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema(url, schema)?;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url)
            .await
            .op("connecting to PostgreSQL")?;
        conn.execute("SET lock_timeout = '5s'")
            .await
            .op("dropping the schema")?;
        conn.execute(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE").as_str())
            .await
            .op("dropping the schema")?;
        conn.close().await.op("closing the set-up connection")?;
        Ok(())
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every pooled connection, waiting for those in use to come back. On SQLite the
    /// last connection to close checkpoints the WAL into the database file.
    pub async fn close(&self) {
        self.write_lock.lock().await.close();
        self.pool.close().await;
    }

    /// Opens the pool on `url`; `path` is the file the writer connection opens (see `db`),
    /// `None` when writes go through the pool.
    async fn open_sqlite_url(url: &str, path: Option<PathBuf>) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let path = match path {
            Some(p) => Some(std::path::absolute(&p).map_err(|e| StoreError::Database {
                op: "resolving the database path",
                error: e.into(),
            })?),
            None => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(SQLITE_POOL_SIZE)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // busy_timeout first: switching to WAL needs a lock another process may
                    // hold. WAL lets readers run beside the writer; NORMAL sync is durable
                    // across process crashes (a power cut may lose the last commits, never
                    // corrupt); foreign keys make tenant removal cascade.
                    let busy = SQLITE_BUSY_TIMEOUT.as_millis();
                    conn.execute(format!("PRAGMA busy_timeout = {busy}").as_str())
                        .await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // The ingest checkpoints by itself, outside the write lock (see
                    // `checkpoint_after_ingest`); SQLite's own checkpoint in the committing
                    // call is the backstop for everything else.
                    conn.execute(
                        format!("PRAGMA wal_autocheckpoint = {SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
                            .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .op("opening the SQLite database")?;
        let store = Store {
            pool,
            backend: Backend::Sqlite,
            write_lock: Arc::new(Mutex::new(db::Writer::new(path))),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            wal: Arc::new(WalCheckpoints::default()),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn open_postgres(url: &str, schema: Option<String>) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let schema: Option<Arc<str>> = schema.map(Arc::from);
        let pool = AnyPoolOptions::new()
            .max_connections(POSTGRES_POOL_SIZE)
            .after_connect(move |conn, _meta| {
                let schema = schema.clone();
                Box::pin(async move {
                    if let Some(schema) = schema {
                        // Validated by connect_in_schema.
                        conn.execute(format!("SET search_path TO \"{schema}\"").as_str())
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .op("connecting to PostgreSQL")?;
        let store = Store {
            pool,
            backend: Backend::Postgres,
            write_lock: Arc::new(Mutex::new(db::Writer::new(None))),
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            wal: Arc::new(WalCheckpoints::default()),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Brings the schema up to date; a no-op when it already is.
    async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => {
                // sqlx takes no lock for SQLite migrations, so two processes opening a fresh
                // file at once could both try to create the tables. Running the migrator
                // inside a BEGIN IMMEDIATE transaction makes the second one wait for the
                // first and then find everything applied (sqlx nests each migration in a
                // savepoint).
                let mut w = self.begin_write("starting the migrations").await?;
                SQLITE_MIGRATIONS
                    .run(w.conn())
                    .await
                    .map_err(StoreError::migration)?;
                w.commit("committing the migrations").await
            }
            // sqlx holds a PostgreSQL advisory lock while it migrates: replicas starting
            // together apply each migration once.
            Backend::Postgres => POSTGRES_MIGRATIONS
                .run(&self.pool)
                .await
                .map_err(StoreError::migration),
        }
    }

    /// After an ingest committed about `written` bytes (SQLite): a passive checkpoint on a
    /// pooled connection once [`CHECKPOINT_EVERY_BYTES`] were written since the last one,
    /// unless one is running. See [`WalCheckpoints`]. A failure is only logged: the WAL then
    /// waits for the next one, or SQLite's own.
    async fn checkpoint_after_ingest(&self, written: u64) {
        use std::sync::atomic::Ordering;
        if self.backend != Backend::Sqlite {
            return;
        }
        let total = self.wal.written.fetch_add(written, Ordering::Relaxed) + written;
        if total < CHECKPOINT_EVERY_BYTES || self.wal.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wal.written.store(0, Ordering::Relaxed);
        let done = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await;
        self.wal.running.store(false, Ordering::Release);
        if let Err(e) = done {
            tracing::warn!(error = %e, "passive WAL checkpoint failed");
        }
    }

    /// Resolves after a commit of this process queued outbox work (an incident opened or
    /// changed, a containment asked for); a wake-up that came while nobody waited is kept for
    /// the next call. Work queued by another process is found by the worker's regular tick.
    pub async fn outbox_queued(&self) {
        self.outbox_wake.notified().await
    }

    /// Starts a write transaction. On SQLite: waits for this process's write lock, then
    /// `BEGIN IMMEDIATE` takes the database's write lock at once, so a writer in another
    /// process makes this one wait (busy_timeout) instead of failing half-way with
    /// SQLITE_BUSY when a read would upgrade to a write. On PostgreSQL: a plain transaction;
    /// statements lock the rows they change. Its statements go through sqlx on a pooled
    /// connection: the path of the changes made seldom (configuration, analysts' updates,
    /// containment); the frequent ones use [`Store::write`].
    async fn begin_write(&self, op: &'static str) -> Result<WriteTx<'_>, StoreError> {
        match self.backend {
            Backend::Sqlite => {
                let guard = self.write_lock.lock().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.op(op)?;
                Ok(WriteTx {
                    tx,
                    _guard: Some(guard),
                    outbox_wake: &self.outbox_wake,
                })
            }
            Backend::Postgres => {
                let tx = self.pool.begin().await.op(op)?;
                Ok(WriteTx {
                    tx,
                    _guard: None,
                    outbox_wake: &self.outbox_wake,
                })
            }
        }
    }

    /// Starts a write transaction whose statements run through [`db::Tx`]: on SQLite on the
    /// writer connection, directly (see `db`), after this process's write lock and `BEGIN
    /// IMMEDIATE`, as [`Store::begin_write`] would; on PostgreSQL (and a SQLite database
    /// without a file) a sqlx transaction.
    async fn write(&self, op: &'static str) -> Result<Writing<'_>, StoreError> {
        let sqlx_tx = |tx, backend, guard| Writing {
            inner: WritingInner::Sqlx {
                tx,
                backend,
                _guard: guard,
            },
            outbox_wake: &self.outbox_wake,
        };
        match self.backend {
            Backend::Sqlite => {
                let mut guard = self.write_lock.lock().await;
                match guard.connection()? {
                    Some(conn) => {
                        db::begin_immediate(conn, op, SQLITE_BUSY_TIMEOUT).await?;
                        Ok(Writing {
                            inner: WritingInner::Direct(guard),
                            outbox_wake: &self.outbox_wake,
                        })
                    }
                    None => {
                        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.op(op)?;
                        Ok(sqlx_tx(tx, Backend::Sqlite, Some(guard)))
                    }
                }
            }
            Backend::Postgres => Ok(sqlx_tx(
                self.pool.begin().await.op(op)?,
                Backend::Postgres,
                None,
            )),
        }
    }

    /// Starts a read-only transaction, so that a view assembled from several queries (an
    /// incident, its findings, its timeline) comes from one snapshot.
    async fn begin_read(&self, op: &'static str) -> Result<Transaction<'static, Any>, StoreError> {
        match self.backend {
            // A deferred BEGIN: the first SELECT takes a WAL snapshot; no write lock.
            Backend::Sqlite => self.pool.begin().await.op(op),
            Backend::Postgres => self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .await
                .op(op),
        }
    }
}

/// A write transaction and, on SQLite, the in-process write lock it holds. Dropping it
/// without [`WriteTx::commit`] rolls back.
struct WriteTx<'a> {
    // Field order matters: the transaction is dropped (rolled back) before the lock is freed.
    tx: Transaction<'static, Any>,
    _guard: Option<MutexGuard<'a, db::Writer>>,
    outbox_wake: &'a tokio::sync::Notify,
}

impl WriteTx<'_> {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    async fn commit(self, op: &'static str) -> Result<(), StoreError> {
        self.tx.commit().await.op(op)
    }

    /// Commits a transaction that queued outbox work, then wakes the outbox worker.
    async fn commit_waking(self, op: &'static str) -> Result<(), StoreError> {
        let wake = self.outbox_wake;
        self.tx.commit().await.op(op)?;
        wake.notify_one();
        Ok(())
    }
}

/// A write transaction begun by [`Store::write`]. Dropping it without [`Writing::commit`]
/// rolls back: on the writer connection at once (no statement of it can be running, see
/// `db`); through sqlx as sqlx does.
struct Writing<'a> {
    inner: WritingInner<'a>,
    outbox_wake: &'a tokio::sync::Notify,
}

enum WritingInner<'a> {
    /// Open on the writer connection, which the guard holds.
    Direct(MutexGuard<'a, db::Writer>),
    Sqlx {
        // Field order matters: rolled back before the lock is freed.
        tx: Transaction<'static, Any>,
        backend: Backend,
        _guard: Option<MutexGuard<'a, db::Writer>>,
    },
    /// Committed.
    Done,
}

impl Writing<'_> {
    /// The transaction's statements.
    fn tx(&mut self) -> Result<db::Tx<'_>, StoreError> {
        match &mut self.inner {
            WritingInner::Direct(guard) => Ok(db::Tx::direct(guard.in_transaction()?)),
            WritingInner::Sqlx { tx, backend, .. } => Ok(db::Tx::sqlx(tx, *backend)),
            WritingInner::Done => Err(StoreError::corrupt("the transaction has ended")),
        }
    }

    async fn commit(mut self, op: &'static str) -> Result<(), StoreError> {
        match std::mem::replace(&mut self.inner, WritingInner::Done) {
            WritingInner::Direct(mut guard) => {
                let committed = guard.commit(op);
                if committed.is_err() {
                    guard.rollback();
                }
                committed
            }
            WritingInner::Sqlx { tx, .. } => tx.commit().await.op(op),
            WritingInner::Done => Ok(()),
        }
    }

    /// Commits a transaction that queued outbox work, then wakes the outbox worker.
    async fn commit_waking(self, op: &'static str) -> Result<(), StoreError> {
        let wake = self.outbox_wake;
        self.commit(op).await?;
        wake.notify_one();
        Ok(())
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let WritingInner::Direct(guard) = &mut self.inner {
            guard.rollback();
        }
    }
}

fn backend_of(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(config_error(
            "choosing the database driver",
            "the database URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

fn config_error(op: &'static str, message: String) -> StoreError {
    StoreError::Database {
        op,
        error: sqlx::Error::Configuration(message.into()),
    }
}

/// The `sqlite://` URL of a database file: the absolute path (so the URL means the same file
/// whatever the working directory of whoever reads it later), percent-encoded, since sqlx
/// decodes it and `%`, `?`, `#` or spaces in a directory name must not be taken for URL syntax.
fn sqlite_file_url(path: &Path, query: &str) -> Result<String, StoreError> {
    let absolute = std::path::absolute(path).map_err(|e| StoreError::Database {
        op: "resolving the database path",
        error: e.into(),
    })?;
    let Some(text) = absolute.to_str() else {
        return Err(config_error(
            "resolving the database path",
            format!("the database path {} is not UTF-8", absolute.display()),
        ));
    };
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("sqlite://{encoded}?{query}"))
}

/// Decodes `%XX` escapes of a path given in a `sqlite://` URL.
fn percent_decode(s: &str) -> Result<String, StoreError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| {
        config_error(
            "reading the database URL",
            "the database path is not UTF-8".into(),
        )
    })
}

/// Whether a caller limited to `scope` (tenant names; `None`: every tenant) may see `tenant`.
fn in_scope(scope: Option<&[String]>, tenant: &str) -> bool {
    scope.is_none_or(|names| names.iter().any(|n| n == tenant))
}

/// Refuses a schema name that is not a plain lowercase identifier (it is quoted verbatim),
/// or a database that is not PostgreSQL.
fn check_schema(url: &str, schema: &str) -> Result<(), StoreError> {
    if backend_of(url)? != Backend::Postgres {
        return Err(config_error(
            "choosing the schema",
            "a schema can only be chosen on PostgreSQL".into(),
        ));
    }
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(config_error(
            "choosing the schema",
            format!(
                "schema name `{schema}` must be lowercase letters, digits and `_` (at most 63)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded_for_sqlite_urls_and_decoded_back() {
        let url = sqlite_file_url(Path::new("/tmp/a b/x?y#z%.db"), "mode=rwc").unwrap();
        assert_eq!(url, "sqlite:///tmp/a%20b/x%3Fy%23z%25.db?mode=rwc");
        assert_eq!(
            percent_decode("/tmp/a%20b/x%3Fy%23z%25.db").unwrap(),
            "/tmp/a b/x?y#z%.db"
        );
        assert_eq!(percent_decode("/odd/100%/x%zz").unwrap(), "/odd/100%/x%zz");
        let url = sqlite_file_url(Path::new("/data/Socbridge.db"), "mode=ro").unwrap();
        assert_eq!(url, "sqlite:///data/Socbridge.db?mode=ro");
    }

    #[test]
    fn scope_none_sees_everything_and_empty_scope_nothing() {
        assert!(in_scope(None, "acme"));
        assert!(in_scope(Some(&["acme".to_string()]), "acme"));
        assert!(!in_scope(Some(&["acme".to_string()]), "globex"));
        assert!(!in_scope(Some(&[]), "acme"));
    }
}
