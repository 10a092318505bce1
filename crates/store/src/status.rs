//! Read-only views for `socbridge status` and `GET /api/v1/status`: the leases named for
//! people (a poll job as its tenant and source, an outbox job as its tenant).
//!
//! Nothing here writes or locks: a status read never delays the work it describes.

use crate::{LeaseView, Store, StoreError};
use std::collections::HashMap;

/// What a lease's job is about, read from its name (`leases::poll_job`, `leases::outbox_job`,
/// or a job kind this build does not know, shown as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRef {
    /// `poll:<source id>`: a source's polls.
    Poll(i64),
    /// `outbox:<tenant id>`: a tenant's outbox.
    Outbox(i64),
    /// Anything else: its kind (the part before the first `:`, or the whole name) and the
    /// rest.
    Other { kind: String, rest: String },
}

impl JobRef {
    pub fn parse(job: &str) -> JobRef {
        let (kind, rest) = job.split_once(':').unwrap_or((job, ""));
        match (kind, rest.parse::<i64>()) {
            ("poll", Ok(id)) => JobRef::Poll(id),
            ("outbox", Ok(id)) => JobRef::Outbox(id),
            _ => JobRef::Other {
                kind: kind.to_string(),
                rest: rest.to_string(),
            },
        }
    }

    /// `poll`, `outbox`, or the unknown job's own kind.
    pub fn kind(&self) -> &str {
        match self {
            JobRef::Poll(_) => "poll",
            JobRef::Outbox(_) => "outbox",
            JobRef::Other { kind, .. } => kind,
        }
    }
}

/// A lease with its job named: [`LeaseView`] plus whom the job is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedLease {
    pub lease: LeaseView,
    /// `poll`, `outbox`, or another job kind as named in the table.
    pub kind: String,
    /// The tenant the job is for (`None` for a job of no tenant, or one whose tenant or
    /// source was removed since).
    pub tenant: Option<String>,
    /// For a poll job, the source's name.
    pub source: Option<String>,
    /// For people: `tenant/source` for a poll job, `tenant` for an outbox job, the job
    /// itself otherwise (also when what it named was removed: `poll:17 (removed)`).
    pub name: String,
}

impl Store {
    /// Every lease ([`Store::leases_view`]) with its job named after the tenant and source
    /// it is for, by job.
    pub async fn named_leases(&self) -> Result<Vec<NamedLease>, StoreError> {
        let leases = self.leases_view().await?;
        let sources: HashMap<i64, (String, String)> = self
            .list_sources(None)
            .await?
            .into_iter()
            .map(|s| (s.id, (s.tenant, s.name)))
            .collect();
        let tenants: HashMap<i64, String> = self
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        Ok(leases
            .into_iter()
            .map(|lease| {
                let job = JobRef::parse(&lease.job);
                let removed = || format!("{} (removed)", lease.job);
                let (tenant, source, name) = match &job {
                    JobRef::Poll(id) => match sources.get(id) {
                        Some((t, s)) => (Some(t.clone()), Some(s.clone()), format!("{t}/{s}")),
                        None => (None, None, removed()),
                    },
                    JobRef::Outbox(id) => match tenants.get(id) {
                        Some(t) => (Some(t.clone()), None, t.clone()),
                        None => (None, None, removed()),
                    },
                    JobRef::Other { .. } => (None, None, lease.job.clone()),
                };
                NamedLease {
                    kind: job.kind().to_string(),
                    tenant,
                    source,
                    name,
                    lease,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{outbox_job, poll_job};

    #[test]
    fn job_names_are_read_back() {
        assert_eq!(JobRef::parse(&poll_job(17)), JobRef::Poll(17));
        assert_eq!(JobRef::parse(&outbox_job(3)), JobRef::Outbox(3));
        let other = JobRef::parse("sink:siem");
        assert_eq!(other.kind(), "sink");
        assert_eq!(
            other,
            JobRef::Other {
                kind: "sink".into(),
                rest: "siem".into()
            }
        );
        assert_eq!(JobRef::parse("poll:x").kind(), "poll");
        assert!(matches!(JobRef::parse("poll:x"), JobRef::Other { .. }));
        assert_eq!(JobRef::parse("odd").kind(), "odd");
    }
}
