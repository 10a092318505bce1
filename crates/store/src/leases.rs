//! Leases: which replica does which job when several `serve` processes share one database,
//! and the fencing that keeps a replica that lost its lease from committing stale work.
//!
//! A job is a unit of work done by one replica at a time: a source's polls (`poll:<source
//! id>`, [`poll_job`]) or a tenant's outbox (`outbox:<tenant id>`, [`outbox_job`]). Its row in
//! `leases` says who holds it until when, and carries a **fencing token** that grows by one at
//! every new grant (after a release, an expiry or a takeover) and never goes back, whoever the
//! holder: the row stays after release for that reason. A renewal keeps the token.
//!
//! The lease alone cannot stop a replica that paused (a long GC-free stall, a frozen VM, a
//! network partition) from waking after its lease expired and committing what it read before.
//! So a write made under a lease carries its [`Fence`] (job and token), and
//! [`check_fence`] runs **inside the committing transaction**: the write commits only if the
//! lease is still this grant and unexpired. On PostgreSQL the check locks the lease row
//! `FOR SHARE`, so a takeover (which updates the row) waits for that commit and cannot slip
//! between the check and the commit; on SQLite the write transaction holds the database's
//! write lock, which serialises the same way.
//!
//! Times are this process's clock: a skew between replicas stretches or shortens a lease by
//! the skew, but the fence compares tokens first, so no clock lets stale work commit.
//!
//! Invariants: at most one holder has an unexpired lease on a job at any time (a grant is one
//! atomic statement on a row: an upsert, or an update of rows locked `FOR UPDATE SKIP
//! LOCKED`); a job's token is strictly increasing across grants.

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::{Backend, Store, StoreError};
use serde::Serialize;
use socbridge_model::Timestamp;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

/// Candidate jobs per statement of [`Store::acquire_many`], well under both backends'
/// bind-parameter limits.
const JOBS_PER_STATEMENT: usize = 500;

/// The job of a source's polls.
pub fn poll_job(source_id: i64) -> String {
    format!("poll:{source_id}")
}

/// The job of a tenant's outbox.
pub fn outbox_job(tenant_id: i64) -> String {
    format!("outbox:{tenant_id}")
}

/// The job of ServiceNow's sync-in (one replica reads the changed tickets for all).
pub fn sync_job() -> String {
    "sync:servicenow".to_string()
}

/// The job of a SIEM sink's deliveries.
pub fn sink_job(sink: &str) -> String {
    format!("sink:{sink}")
}

/// How many of `jobs` one of `live_replicas` replicas should hold: the ceiling of the even
/// share, so that together they cover every job, and at least one replica (this one) is
/// counted even before it has registered.
pub fn fair_share(jobs: usize, live_replicas: usize) -> usize {
    jobs.div_ceil(live_replicas.max(1))
}

/// A replica's identity: `host-pid-random`, different for each start of a process, so that a
/// restarted process never mistakes its predecessor's leases for its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ReplicaId(String);

impl ReplicaId {
    /// An id read back from the store or given by an operator.
    pub fn new(id: impl Into<String>) -> Self {
        ReplicaId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This process as a replica: its id and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: ReplicaId,
    pub host: String,
    pub pid: u32,
}

impl Replica {
    /// This process, with a fresh random id.
    pub fn this_process() -> Replica {
        let host = host_name();
        let pid = std::process::id();
        // std's hasher keys are random per process (and differ per `RandomState` within
        // one), which is all a suffix that tells two starts of one pid apart needs.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let suffix = hasher.finish() & 0xffff_ffff;
        Replica {
            id: ReplicaId(format!("{host}-{pid}-{suffix:08x}")),
            host,
            pid,
        }
    }
}

/// The machine's name, for a replica id a person can place; `localhost` when unknown. Kept
/// to letters, digits, `.` and `-`, at most 64 characters.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .take(64)
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// A registered replica, for the status view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicaRecord {
    pub id: ReplicaId,
    pub host: String,
    pub pid: i64,
    pub started_at: Timestamp,
    pub last_seen_at: Timestamp,
}

/// A lease held: the right to do `job` until `expires_at`, as grant `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub job: String,
    pub holder: ReplicaId,
    pub token: i64,
    pub expires_at: Timestamp,
}

impl Lease {
    /// What a write made under this lease carries, to be refused once the lease is lost.
    pub fn fence(&self) -> Fence {
        Fence {
            job: self.job.clone(),
            token: self.token,
        }
    }
}

/// A job and the token of the grant a write was made under; see [`check_fence`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fence {
    pub job: String,
    pub token: i64,
}

/// A lease as the status view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    pub job: String,
    /// `None` once released.
    pub holder: Option<ReplicaId>,
    pub token: i64,
    pub expires_at: Timestamp,
    pub acquired_at: Timestamp,
    pub renewed_at: Timestamp,
    /// Released, or past `expires_at` when the view was read: free to be taken.
    pub expired: bool,
}

type LeaseRow = (String, Option<String>, i64, i64);

fn lease_of(row: LeaseRow) -> Result<Lease, StoreError> {
    let (job, holder, token, expires_at) = row;
    let holder =
        holder.ok_or_else(|| StoreError::corrupt(format!("lease of {job} granted to no one")))?;
    Ok(Lease {
        job,
        holder: ReplicaId(holder),
        token,
        expires_at: Timestamp::from_micros(expires_at),
    })
}

/// `ttl` in microseconds, at least one (a lease that expires as it is granted protects
/// nothing), saturating at the largest.
fn ttl_micros(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX).max(1)
}

/// Appends `$first, $first+1, ...` (`count` of them) separated by commas.
fn push_params(sql: &mut String, first: usize, count: usize) {
    for n in first..first + count {
        if n > first {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&n.to_string());
    }
}

/// Refuses the transaction's commit when `fence` is no longer the current, unexpired grant of
/// its job (taken over, released or expired): [`StoreError::LeaseLost`], which is not
/// transient: running the work again under the same lease cannot succeed.
///
/// Call it inside the write transaction, just before its last statements; on PostgreSQL the
/// lease row stays locked `FOR SHARE` until the commit, so a takeover waits for it.
pub(crate) async fn check_fence(tx: &mut Tx<'_>, fence: &Fence) -> Result<(), StoreError> {
    let sql = match tx.backend() {
        Backend::Sqlite => "SELECT holder, token, expires_at FROM leases WHERE job = $1",
        Backend::Postgres => {
            "SELECT holder, token, expires_at FROM leases WHERE job = $1 FOR SHARE"
        }
    };
    let row: Option<(Option<String>, i64, i64)> = tx
        .fetch_optional(
            "checking the lease of a write",
            sql,
            &[fence.job.as_str().into()],
        )
        .await?;
    let now = Timestamp::now().as_micros();
    match row {
        Some((Some(_), token, expires_at)) if token == fence.token && expires_at > now => Ok(()),
        _ => Err(StoreError::LeaseLost {
            job: fence.job.clone(),
        }),
    }
}

impl Store {
    /// Records this process as a replica (again, after a restart of its registration), seen
    /// now.
    pub async fn register_replica(&self, replica: &Replica) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        let mut w = self.begin_write("beginning a replica registration").await?;
        sqlx::query(
            "INSERT INTO replicas (id, host, pid, started_at, last_seen_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (id) DO UPDATE
                SET host = excluded.host, pid = excluded.pid,
                    last_seen_at = excluded.last_seen_at",
        )
        .bind(replica.id.as_str())
        .bind(&replica.host)
        .bind(i64::from(replica.pid))
        .bind(now)
        .execute(w.conn())
        .await
        .op("registering a replica")?;
        w.commit("committing a replica registration").await
    }

    /// Marks a registered replica as seen now. [`StoreError::NotFound`] when it is not
    /// registered (it was retired): register it again.
    pub async fn heartbeat(&self, replica: &ReplicaId) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        let mut w = self.begin_write("beginning a replica heartbeat").await?;
        let done = sqlx::query("UPDATE replicas SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(replica.as_str())
            .execute(w.conn())
            .await
            .op("recording a replica heartbeat")?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                what: format!("replica {replica}"),
            });
        }
        w.commit("committing a replica heartbeat").await
    }

    /// A replica that stops: releases every lease it holds (so that others take its jobs at
    /// once, not at expiry) and removes its registration, in one transaction.
    pub async fn retire_replica(&self, replica: &ReplicaId) -> Result<(), StoreError> {
        let now = Timestamp::now().as_micros();
        let mut w = self.begin_write("beginning a replica retirement").await?;
        sqlx::query("UPDATE leases SET holder = NULL, expires_at = $1 WHERE holder = $2")
            .bind(now)
            .bind(replica.as_str())
            .execute(w.conn())
            .await
            .op("releasing a retiring replica's leases")?;
        sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(replica.as_str())
            .execute(w.conn())
            .await
            .op("removing a retiring replica")?;
        w.commit("committing a replica retirement").await
    }

    /// How many replicas were seen within `within` (this one included once it registered):
    /// the divisor of [`fair_share`].
    pub async fn live_replicas(&self, within: Duration) -> Result<usize, StoreError> {
        let since = Timestamp::now()
            .as_micros()
            .saturating_sub(ttl_micros(within));
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM replicas WHERE last_seen_at > $1")
                .bind(since)
                .fetch_one(&self.pool)
                .await
                .op("counting the live replicas")?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    /// Every registered replica, by id.
    pub async fn replicas(&self) -> Result<Vec<ReplicaRecord>, StoreError> {
        let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, host, pid, started_at, last_seen_at FROM replicas ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .op("listing the replicas")?;
        Ok(rows
            .into_iter()
            .map(|(id, host, pid, started_at, last_seen_at)| ReplicaRecord {
                id: ReplicaId(id),
                host,
                pid,
                started_at: Timestamp::from_micros(started_at),
                last_seen_at: Timestamp::from_micros(last_seen_at),
            })
            .collect())
    }

    /// Takes `job` for `holder` until `ttl` from now, when it is free (never held, released or
    /// expired: a new grant, token + 1) or already the holder's and unexpired (a renewal, the
    /// same token). `None` when another replica holds it.
    ///
    /// One upsert decides: on PostgreSQL two replicas racing for a job serialise on its row
    /// (or on its key when it is new) and the second sees the first's grant; on SQLite the
    /// write transaction serialises them.
    pub async fn try_acquire(
        &self,
        job: &str,
        holder: &ReplicaId,
        ttl: Duration,
    ) -> Result<Option<Lease>, StoreError> {
        let now = Timestamp::now().as_micros();
        let expires_at = now.saturating_add(ttl_micros(ttl));
        let mut w = self.write("beginning a lease acquisition").await?;
        let row: Option<LeaseRow> = w
            .tx()?
            .fetch_optional(
                "acquiring a lease",
                "INSERT INTO leases (job, holder, token, expires_at, acquired_at, renewed_at)
             VALUES ($1, $2, 1, $3, $4, $4)
             ON CONFLICT (job) DO UPDATE
                SET token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $4
                                 THEN leases.token ELSE leases.token + 1 END,
                    acquired_at = CASE WHEN leases.holder = excluded.holder
                                            AND leases.expires_at > $4
                                       THEN leases.acquired_at ELSE excluded.acquired_at END,
                    holder = excluded.holder,
                    expires_at = excluded.expires_at,
                    renewed_at = excluded.renewed_at
                WHERE leases.holder IS NULL OR leases.expires_at <= $4
                      OR leases.holder = excluded.holder
             RETURNING job, holder, token, expires_at",
                &[
                    job.into(),
                    holder.as_str().into(),
                    expires_at.into(),
                    now.into(),
                ],
            )
            .await?;
        w.commit("committing a lease acquisition").await?;
        row.map(lease_of).transpose()
    }

    /// One scheduling round of `holder` over `candidates`: renews every lease it holds among
    /// them, then takes free ones (in job order, skipping those another replica is taking at
    /// the same moment) until it holds `max`. Answers the leases it holds, in job order.
    /// It does not give any up when it holds more than `max` (more replicas joined): that is
    /// the caller's choice ([`Store::release`]).
    ///
    /// With `max` = [`fair_share`] of the live replicas, replicas spread the jobs between
    /// them without configuration. One transaction of three statements per 500 candidates:
    /// make the missing rows, renew, claim.
    pub async fn acquire_many(
        &self,
        holder: &ReplicaId,
        candidates: &[String],
        max: usize,
        ttl: Duration,
    ) -> Result<Vec<Lease>, StoreError> {
        let now = Timestamp::now().as_micros();
        let expires_at = now.saturating_add(ttl_micros(ttl));
        // In one order for every replica, so that two rounds making the same new rows (or
        // renewing) lock them in the same order and never deadlock.
        let mut candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut w = self.begin_write("beginning a lease round").await?;
        let mut held: Vec<Lease> = Vec::new();
        let mut free_chunks: Vec<&[&str]> = Vec::new();
        for chunk in candidates.chunks(JOBS_PER_STATEMENT) {
            // A never-seen job gets its row (free, token 0) so that it can be claimed below.
            let mut sql = String::from(
                "INSERT INTO leases (job, holder, token, expires_at, acquired_at, renewed_at)
                 VALUES",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { " ($" } else { ", ($" });
                sql.push_str(&(i + 2).to_string());
                sql.push_str(", NULL, 0, $1, $1, $1)");
            }
            sql.push_str(" ON CONFLICT (job) DO NOTHING");
            let mut q = sqlx::query(&sql).bind(now);
            for job in chunk {
                q = q.bind(*job);
            }
            q.execute(w.conn())
                .await
                .op("making the rows of new leases")?;

            let mut sql = String::from(
                "UPDATE leases SET expires_at = $1, renewed_at = $2
                 WHERE holder = $3 AND expires_at > $2 AND job IN (",
            );
            push_params(&mut sql, 4, chunk.len());
            sql.push_str(") RETURNING job, holder, token, expires_at");
            let mut q = sqlx::query_as::<_, LeaseRow>(&sql)
                .bind(expires_at)
                .bind(now)
                .bind(holder.as_str());
            for job in chunk {
                q = q.bind(*job);
            }
            for row in q.fetch_all(w.conn()).await.op("renewing leases")? {
                held.push(lease_of(row)?);
            }
            free_chunks.push(chunk);
        }
        for chunk in free_chunks {
            let wanted = max.saturating_sub(held.len());
            if wanted == 0 {
                break;
            }
            let lock = match self.backend {
                Backend::Sqlite => "",
                // A row another replica is claiming (or an ingest is fencing) is skipped, not
                // waited for: it is not free for this one anyway.
                Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            };
            let mut sql = String::from(
                "UPDATE leases
                 SET holder = $1, token = token + 1, expires_at = $2,
                     acquired_at = $3, renewed_at = $3
                 WHERE job IN (
                    SELECT job FROM leases
                    WHERE (holder IS NULL OR expires_at <= $3) AND job IN (",
            );
            push_params(&mut sql, 5, chunk.len());
            sql.push_str(") ORDER BY job LIMIT $4");
            sql.push_str(lock);
            sql.push_str(") RETURNING job, holder, token, expires_at");
            let mut q = sqlx::query_as::<_, LeaseRow>(&sql)
                .bind(holder.as_str())
                .bind(expires_at)
                .bind(now)
                .bind(i64::try_from(wanted).unwrap_or(i64::MAX));
            for job in chunk {
                q = q.bind(*job);
            }
            for row in q.fetch_all(w.conn()).await.op("claiming free leases")? {
                held.push(lease_of(row)?);
            }
        }
        w.commit("committing a lease round").await?;
        held.sort_by(|a, b| a.job.cmp(&b.job));
        Ok(held)
    }

    /// Extends a lease its holder still has until `ttl` from now, same token.
    /// [`StoreError::LeaseLost`] when it expired, was released or was taken over: the work
    /// under it must stop (its writes would be refused anyway).
    pub async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease, StoreError> {
        let now = Timestamp::now().as_micros();
        let expires_at = now.saturating_add(ttl_micros(ttl));
        let mut w = self.write("beginning a lease renewal").await?;
        let row: Option<LeaseRow> = w
            .tx()?
            .fetch_optional(
                "renewing a lease",
                "UPDATE leases SET expires_at = $1, renewed_at = $2
                 WHERE job = $3 AND holder = $4 AND token = $5 AND expires_at > $2
                 RETURNING job, holder, token, expires_at",
                &[
                    expires_at.into(),
                    now.into(),
                    lease.job.as_str().into(),
                    lease.holder.as_str().into(),
                    lease.token.into(),
                ],
            )
            .await?;
        w.commit("committing a lease renewal").await?;
        match row {
            Some(row) => lease_of(row),
            None => Err(StoreError::LeaseLost {
                job: lease.job.clone(),
            }),
        }
    }

    /// Gives a lease up so another replica can take the job at once. Answers whether it was
    /// still held (releasing a lost lease changes nothing).
    pub async fn release(&self, lease: &Lease) -> Result<bool, StoreError> {
        let now = Timestamp::now().as_micros();
        let mut w = self.write("beginning a lease release").await?;
        let done = w
            .tx()?
            .execute(
                "releasing a lease",
                "UPDATE leases SET holder = NULL, expires_at = $1
                 WHERE job = $2 AND holder = $3 AND token = $4",
                &[
                    now.into(),
                    lease.job.as_str().into(),
                    lease.holder.as_str().into(),
                    lease.token.into(),
                ],
            )
            .await?;
        w.commit("committing a lease release").await?;
        Ok(done > 0)
    }

    /// Every lease, by job, with whether it is free now: who does what, for the status view.
    pub async fn leases_view(&self) -> Result<Vec<LeaseView>, StoreError> {
        let rows: Vec<(String, Option<String>, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT job, holder, token, expires_at, acquired_at, renewed_at
             FROM leases ORDER BY job",
        )
        .fetch_all(&self.pool)
        .await
        .op("listing the leases")?;
        let now = Timestamp::now().as_micros();
        Ok(rows
            .into_iter()
            .map(
                |(job, holder, token, expires_at, acquired_at, renewed_at)| LeaseView {
                    job,
                    expired: holder.is_none() || expires_at <= now,
                    holder: holder.map(ReplicaId),
                    token,
                    expires_at: Timestamp::from_micros(expires_at),
                    acquired_at: Timestamp::from_micros(acquired_at),
                    renewed_at: Timestamp::from_micros(renewed_at),
                },
            )
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_covers_every_job() {
        assert_eq!(fair_share(10, 3), 4);
        assert_eq!(fair_share(9, 3), 3);
        assert_eq!(fair_share(2, 3), 1);
        assert_eq!(fair_share(0, 3), 0);
        assert_eq!(
            fair_share(5, 0),
            5,
            "no replica registered yet: this one takes all"
        );
    }

    #[test]
    fn replica_ids_differ_per_start_and_name_the_process() {
        let a = Replica::this_process();
        let b = Replica::this_process();
        assert_ne!(a.id, b.id);
        assert_eq!(a.pid, std::process::id());
        assert!(
            a.id.as_str().starts_with(&format!("{}-{}-", a.host, a.pid)),
            "{}",
            a.id
        );
        assert!(!a.host.is_empty());
    }

    #[test]
    fn ttl_is_at_least_one_microsecond() {
        assert_eq!(ttl_micros(Duration::ZERO), 1);
        assert_eq!(ttl_micros(Duration::from_millis(2)), 2_000);
        assert_eq!(ttl_micros(Duration::MAX), i64::MAX);
    }
}
