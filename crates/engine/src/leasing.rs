//! Which jobs this process does when several `serve` replicas share one database (DESIGN.md
//! section 7; the store's half is `socbridge_store::leases`).
//!
//! `serve`'s scheduler runs a **lease round** at start and then every third of the lease's
//! time to live: it marks this replica alive, counts the live replicas, and for each class of
//! job (the sources' polls; the tenants' outboxes; the singletons: ServiceNow's sync-in and
//! each SIEM sink) renews what it holds and takes free jobs up to its fair share, then gives
//! back what it holds beyond the share (jobs not running at that moment), so that a replica
//! that joins takes load off the others and one that dies (its leases expire) is replaced
//! without configuration. Work starts only on jobs held, and the writes that commit its
//! results carry the lease's [`Fence`]: a replica that lost a job (paused past its lease, cut
//! off from the database) cannot commit stale work; its next fenced write fails with
//! `StoreError::LeaseLost` and the work stops there.
//!
//! Work started outside the scheduler (`socbridge poll`, `serve --until-idle`, the demo)
//! claims each job for as long as it runs ([`Claim`]: renewed in the background, released
//! after); a job another replica holds is skipped and said so. Such a process registers as
//! a replica too (without heartbeats, so it soon stops counting in the fair share), so that
//! if it is killed holding a claim, the next process of the machine takes the job at once.
//!
//! A replica of this machine whose process is gone (killed, crashed: `/proc` says so) is
//! retired by the next round or contested claim of any process of the machine, so a
//! restart resumes at once instead of waiting for the dead one's leases to expire. Replicas
//! of other machines are left to expire.
//!
//! One process on SQLite goes through the same rounds: it is the only live replica, so its
//! share is every job.

use crate::engine::{Engine, EngineError};
use socbridge_store::{
    Fence, Lease, ReplicaId, Store, StoreError, fair_share, outbox_job, poll_job, sink_job,
    sync_job,
};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

/// This process as a replica: its identity, its lease time to live, and the leases its
/// scheduler holds.
pub(crate) struct Leasing {
    pub(crate) replica: socbridge_store::Replica,
    pub(crate) ttl: Duration,
    /// `None` while no scheduler runs in this process (one-shot work claims its jobs itself).
    held: Mutex<Option<HashMap<String, Lease>>>,
    /// Jobs whose work is running now: a round never gives those back.
    busy: Mutex<HashSet<String>>,
    /// Whether this replica is in the store's `replicas` (so that, should it die holding
    /// leases, the next process of this machine sees it gone and takes its jobs at once).
    registered: std::sync::atomic::AtomicBool,
}

impl Leasing {
    pub(crate) fn new(ttl: Duration) -> Self {
        Leasing {
            replica: socbridge_store::Replica::this_process(),
            ttl: ttl.max(Duration::from_millis(300)),
            held: Mutex::new(None),
            busy: Mutex::new(HashSet::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// How often the scheduler renews: a third of the time to live, so that one late round
    /// loses nothing.
    pub(crate) fn round_every(&self) -> Duration {
        self.ttl / 3
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Lease>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn busy_set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `serve`'s scheduler runs in this process (its rounds decide the jobs).
    pub(crate) fn scheduled(&self) -> bool {
        self.held().is_some()
    }

    /// The fence of `job` while this process's scheduler holds it.
    pub(crate) fn held_fence(&self, job: &str) -> Option<Fence> {
        self.held().as_ref()?.get(job).map(Lease::fence)
    }

    /// The jobs the scheduler holds, by name.
    pub(crate) fn held_jobs(&self) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .held()
            .as_ref()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        jobs.sort();
        jobs
    }

    fn is_busy(&self, job: &str) -> bool {
        self.busy_set().contains(job)
    }
}

/// A job marked running; see [`Engine::try_busy`].
pub(crate) struct Busy {
    engine: Engine,
    job: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.engine.inner.leasing.busy_set().remove(&self.job);
    }
}

/// A job claimed by one-shot work: renewed in the background until [`Claim::release`] (or,
/// dropped, until its lease expires).
pub(crate) struct Claim {
    lease: Lease,
    keeper: tokio::task::JoinHandle<()>,
}

impl Claim {
    pub(crate) fn fence(&self) -> Fence {
        self.lease.fence()
    }

    /// Gives the job back at once.
    pub(crate) async fn release(self, store: &Store) {
        self.keeper.abort();
        if let Err(e) = store.release(&self.lease).await {
            tracing::warn!(job = %self.lease.job, error = %e, "could not release a lease; it expires on its own");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// How a unit of work may run: under the scheduler's lease, under a claim of its own, or not
/// at all because another replica does it.
pub(crate) enum Access {
    Held(Fence),
    Claimed(Claim),
    Elsewhere,
}

impl Access {
    pub(crate) fn fence(&self) -> Option<Fence> {
        match self {
            Access::Held(f) => Some(f.clone()),
            Access::Claimed(c) => Some(c.fence()),
            Access::Elsewhere => None,
        }
    }

    /// Ends the work: a claim is released, a scheduler's lease stays held.
    pub(crate) async fn finish(self, store: &Store) {
        if let Access::Claimed(c) = self {
            c.release(store).await;
        }
    }
}

/// What a round decided, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub live_replicas: usize,
    pub held: usize,
    pub taken: usize,
    pub released: usize,
    pub lost: usize,
}

impl Engine {
    /// The id under which this process's scheduler holds leases.
    pub fn replica_id(&self) -> &ReplicaId {
        &self.inner.leasing.replica.id
    }

    /// The jobs this process's scheduler holds now, by name (empty when none runs).
    pub fn held_jobs(&self) -> Vec<String> {
        self.inner.leasing.held_jobs()
    }

    /// Marks `job` as running in this process until the guard drops; `None` when it already
    /// runs (one poll of a source at a time). A round never gives a running job back.
    pub(crate) fn try_busy(&self, job: &str) -> Option<Busy> {
        if !self.inner.leasing.busy_set().insert(job.to_string()) {
            return None;
        }
        Some(Busy {
            engine: self.clone(),
            job: job.to_string(),
        })
    }

    /// How `job` may run now; see [`Access`].
    pub(crate) async fn access(&self, job: &str) -> Result<Access, StoreError> {
        let leasing = &self.inner.leasing;
        if leasing.scheduled() {
            return Ok(match leasing.held_fence(job) {
                Some(f) => Access::Held(f),
                None => Access::Elsewhere,
            });
        }
        let store = &self.inner.store;
        if !leasing.registered.load(std::sync::atomic::Ordering::SeqCst) {
            // Two claims racing here both register: an upsert, so no harm.
            store.register_replica(&leasing.replica).await?;
            leasing
                .registered
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let me = &leasing.replica.id;
        let ttl = leasing.ttl;
        let mut lease = store.try_acquire(job, me, ttl).await?;
        if lease.is_none() {
            // Held by a process of this machine that was killed? Then it is this one's now.
            self.retire_dead_neighbours().await?;
            lease = store.try_acquire(job, me, ttl).await?;
        }
        let Some(lease) = lease else {
            return Ok(Access::Elsewhere);
        };
        let store = self.inner.store.clone();
        let mut kept = lease.clone();
        let keeper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.renew(&kept, ttl).await {
                    Ok(l) => kept = l,
                    Err(StoreError::LeaseLost { job }) => {
                        tracing::warn!(%job, "lease lost; the work under it stops at its next write");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(job = %kept.job, error = %e, "lease renewal failed; retrying")
                    }
                }
            }
        });
        Ok(Access::Claimed(Claim { lease, keeper }))
    }

    /// Starts the scheduler's rounds: from now on work runs only on jobs the rounds took.
    pub(crate) fn start_leasing(&self) {
        let mut held = self.inner.leasing.held();
        if held.is_none() {
            *held = Some(HashMap::new());
        }
    }

    /// Stops the scheduler's rounds and retires this replica.
    pub(crate) async fn stop_leasing(&self) {
        *self.inner.leasing.held() = None;
        self.retire().await;
    }

    /// Releases every lease this process holds and removes its registration, so that others
    /// take its jobs at once rather than at expiry. What a command that polled or did outbox
    /// work calls before it exits; `serve` does it on shutdown.
    pub async fn retire(&self) {
        let leasing = &self.inner.leasing;
        if !leasing
            .registered
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if let Err(e) = self.inner.store.retire_replica(&leasing.replica.id).await {
            tracing::warn!(error = %e, "could not retire this replica; its leases expire on their own");
        }
    }

    /// Retires the replicas registered from this machine whose process is gone (killed,
    /// crashed), so that their jobs are taken at once rather than when their leases expire:
    /// a process restarted after a crash resumes its work without waiting. Replicas on other
    /// machines, and any whose state cannot be read, are left to expire.
    async fn retire_dead_neighbours(&self) -> Result<(), StoreError> {
        let me = &self.inner.leasing.replica;
        for r in self.inner.store.replicas().await? {
            let Ok(pid) = u32::try_from(r.pid) else {
                continue;
            };
            if r.id != me.id && r.host == me.host && pid != me.pid && process_gone(pid) {
                tracing::info!(replica = %r.id, pid, "a replica of this machine is gone; taking its jobs over");
                self.inner.store.retire_replica(&r.id).await?;
            }
        }
        Ok(())
    }

    /// One lease round; see the module's documentation.
    pub async fn lease_round(&self) -> Result<RoundReport, EngineError> {
        let store = &self.inner.store;
        let leasing = &self.inner.leasing;
        let me = &leasing.replica.id;
        leasing
            .registered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        match store.heartbeat(me).await {
            Err(StoreError::NotFound { .. }) => store.register_replica(&leasing.replica).await?,
            other => other?,
        }
        self.retire_dead_neighbours().await?;
        let live = store.live_replicas(leasing.ttl).await?;
        let polls: Vec<String> = self
            .sources_view()
            .await?
            .sources
            .iter()
            .map(|s| poll_job(s.record.id))
            .collect();
        let outboxes: Vec<String> = store
            .list_tenants()
            .await?
            .iter()
            .map(|t| outbox_job(t.id))
            .collect();
        let mut singles: Vec<String> = store
            .sinks()
            .await?
            .iter()
            .map(|s| sink_job(&s.name))
            .collect();
        if self.ticketing_configured().await.unwrap_or(false) {
            singles.push(sync_job());
        }
        let before: HashSet<String> = leasing.held_jobs().into_iter().collect();
        let mut report = RoundReport {
            live_replicas: live,
            ..RoundReport::default()
        };
        let mut held: HashMap<String, Lease> = HashMap::new();
        let mut released: HashSet<String> = HashSet::new();
        for class in [polls, outboxes, singles] {
            if class.is_empty() {
                continue;
            }
            let share = fair_share(class.len(), live);
            let mut got = store.acquire_many(me, &class, share, leasing.ttl).await?;
            if got.len() > share {
                // More replicas than when these were taken: give back the surplus, idle jobs
                // first (a running one finishes and goes back on a later round).
                got.sort_by_key(|l| leasing.is_busy(&l.job));
                let mut surplus = got.len() - share;
                let mut kept = Vec::with_capacity(got.len());
                for lease in got {
                    if surplus > 0 && !leasing.is_busy(&lease.job) {
                        surplus -= 1;
                        if store.release(&lease).await? {
                            released.insert(lease.job.clone());
                        }
                        continue;
                    }
                    kept.push(lease);
                }
                got = kept;
            }
            held.extend(got.into_iter().map(|l| (l.job.clone(), l)));
        }
        report.held = held.len();
        report.released = released.len();
        report.taken = held.keys().filter(|j| !before.contains(*j)).count();
        report.lost = before
            .iter()
            .filter(|j| !held.contains_key(*j) && !released.contains(*j))
            .count();
        if report.taken + report.released + report.lost > 0 {
            tracing::info!(
                replica = %me, live = live, held = report.held, taken = report.taken,
                released = report.released, lost = report.lost, "leases changed"
            );
        }
        let mut slot = leasing.held();
        if slot.is_some() {
            *slot = Some(held);
        }
        Ok(report)
    }
}

/// Whether process `pid` of this machine has ended (or is a zombie waiting to be reaped).
/// `false` when that cannot be told (no `/proc`): such a replica's leases expire instead.
fn process_gone(pid: u32) -> bool {
    if !std::path::Path::new("/proc/self/stat").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X')),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone_and_a_reaped_one_is() {
        assert!(!process_gone(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawning `true`");
        let pid = child.id();
        child.wait().expect("waiting for `true`");
        assert!(process_gone(pid), "pid {pid} was reaped");
    }
}
