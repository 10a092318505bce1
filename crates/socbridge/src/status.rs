//! `socbridge status` and `GET /api/v1/status`: who is running on this database, which
//! replica does which job, and how far behind each source is.
//!
//! One report ([`StatusReport`]) read from the store: the replicas registered in it, every
//! lease with its job named after its tenant and source, and per source its last poll, its
//! cursor mark and whether its next poll is overdue. Read-only: a status read takes no lock
//! and changes nothing.

use crate::cli::{Cli, Output};
use crate::commands::table;
use serde::Serialize;
use socbridge_engine::SourceSettings;
use socbridge_model::Timestamp;
use socbridge_store::{Backend, NamedLease, ReplicaRecord, SourceRecord, Store, StoreError};
use std::process::ExitCode;
use std::time::Duration;
use utoipa::ToSchema;

/// A replica not seen for longer than this is shown as silent (`live: false`): its leases
/// lapse when they expire and the others take its jobs over.
pub const LIVE_WITHIN: Duration = Duration::from_secs(60);

/// A source is overdue when more than this many poll intervals went by since its last poll
/// (or, never polled, since it was added): one interval is the schedule, the second is the
/// slack for a poll that runs long or a scheduler tick.
const OVERDUE_AFTER_INTERVALS: u32 = 2;

/// The poll interval the scheduler assumes when a source's settings cannot be read.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// Everything `socbridge status` shows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatusReport {
    /// `sqlite` or `postgres`.
    #[schema(example = "postgres")]
    pub database: String,
    /// When the report was read (its ages are relative to this).
    #[schema(value_type = String, format = DateTime)]
    pub now: Timestamp,
    /// Replicas registered in the database, by id. Empty while no `serve` shares its work
    /// through leases on this database (one process alone, or none running).
    pub replicas: Vec<ReplicaStatus>,
    /// Every lease ever granted, by job: which replica does which job.
    pub leases: Vec<LeaseStatus>,
    /// Every source, by tenant and name, with how far behind it is.
    pub sources: Vec<SourceLag>,
}

/// A `serve` process registered as a replica.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaStatus {
    /// `host-pid-random`, new at each start of a process.
    pub id: String,
    pub host: String,
    pub pid: i64,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// Its last heartbeat.
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: Timestamp,
    pub seconds_since_seen: f64,
    /// Seen within the last minute.
    pub live: bool,
}

/// A job's lease: who holds it, as which grant, until when.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LeaseStatus {
    /// The job as stored: `poll:<source id>`, `outbox:<tenant id>`, ...
    #[schema(example = "poll:12")]
    pub job: String,
    /// `poll` (a source's polls), `outbox` (a tenant's outbox work), or another job kind.
    #[schema(example = "poll")]
    pub kind: String,
    /// `tenant/source` for a poll job, `tenant` for an outbox job, else the job itself.
    #[schema(example = "acme/secure-endpoint")]
    pub name: String,
    pub tenant: Option<String>,
    pub source: Option<String>,
    /// The replica holding it (null once released).
    pub holder: Option<String>,
    /// The fencing token: grows by one at every new grant; a write carrying an older one
    /// is refused.
    pub token: i64,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub acquired_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub renewed_at: Timestamp,
    /// `held`, `expired` (its holder stopped renewing) or `released`.
    #[schema(example = "held")]
    pub state: String,
    /// Expired or released: the next replica to ask takes it.
    pub free: bool,
}

/// How far behind one source is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceLag {
    pub tenant: String,
    pub source: String,
    /// `secure_endpoint`, `symantec_mss` or `umbrella`.
    pub kind: String,
    /// When its last poll ended (null before the first).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_poll_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_ok_at: Option<Timestamp>,
    /// The newest vendor time stored (the cursor's high-water mark).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cursor_mark: Option<Timestamp>,
    /// Seconds since its last poll ended (null before the first).
    pub seconds_since_poll: Option<f64>,
    /// Seconds from the cursor mark to now (null before the first finding).
    pub lag_seconds: Option<f64>,
    pub poll_interval_seconds: f64,
    /// More than two poll intervals since its last poll (or, never polled, since it was
    /// added): nothing is polling it.
    pub overdue: bool,
    pub last_error: Option<String>,
    /// The replica holding its poll job now, if one does.
    pub polled_by: Option<String>,
}

fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_micros().saturating_sub(from.as_micros())).max(0) as f64 / 1e6
}

fn replica_status(r: ReplicaRecord, now: Timestamp) -> ReplicaStatus {
    let since = seconds_between(r.last_seen_at, now);
    ReplicaStatus {
        id: r.id.to_string(),
        host: r.host,
        pid: r.pid,
        started_at: r.started_at,
        last_seen_at: r.last_seen_at,
        seconds_since_seen: since,
        live: since <= LIVE_WITHIN.as_secs_f64(),
    }
}

fn lease_status(l: NamedLease) -> LeaseStatus {
    let state = match (&l.lease.holder, l.lease.expired) {
        (None, _) => "released",
        (Some(_), true) => "expired",
        (Some(_), false) => "held",
    };
    LeaseStatus {
        job: l.lease.job,
        kind: l.kind,
        name: l.name,
        tenant: l.tenant,
        source: l.source,
        holder: l.lease.holder.map(|h| h.to_string()),
        token: l.lease.token,
        expires_at: l.lease.expires_at,
        acquired_at: l.lease.acquired_at,
        renewed_at: l.lease.renewed_at,
        state: state.to_string(),
        free: l.lease.expired,
    }
}

/// A source's lag; `holder` is the replica holding its poll job, if any.
pub fn source_lag(s: &SourceRecord, holder: Option<String>, now: Timestamp) -> SourceLag {
    let interval = SourceSettings::from_json(&s.settings)
        .map(|settings| settings.poll().poll_interval())
        .unwrap_or(DEFAULT_POLL_INTERVAL);
    let since_poll = s.last_poll_at.map(|t| seconds_between(t, now));
    let waiting = since_poll.unwrap_or_else(|| seconds_between(s.created_at, now));
    SourceLag {
        tenant: s.tenant.clone(),
        source: s.name.clone(),
        kind: s.kind.to_string(),
        last_poll_at: s.last_poll_at,
        last_ok_at: s.last_ok_at,
        cursor_mark: s.cursor_mark,
        seconds_since_poll: since_poll,
        lag_seconds: s.cursor_mark.map(|m| seconds_between(m, now)),
        poll_interval_seconds: interval.as_secs_f64(),
        overdue: waiting > (interval * OVERDUE_AFTER_INTERVALS).as_secs_f64(),
        last_error: s.last_error.clone(),
        polled_by: holder,
    }
}

/// Reads the report from the store.
pub async fn report(store: &Store) -> Result<StatusReport, StoreError> {
    let now = Timestamp::now();
    let replicas = store.replicas().await?;
    let leases: Vec<LeaseStatus> = store
        .named_leases()
        .await?
        .into_iter()
        .map(lease_status)
        .collect();
    let sources = store.list_sources(None).await?;
    let holder_of = |id: i64| {
        let job = socbridge_store::poll_job(id);
        leases
            .iter()
            .find(|l| l.job == job && l.state == "held")
            .and_then(|l| l.holder.clone())
    };
    let sources = sources
        .iter()
        .map(|s| source_lag(s, holder_of(s.id), now))
        .collect();
    Ok(StatusReport {
        database: match store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
        .to_string(),
        now,
        replicas: replicas
            .into_iter()
            .map(|r| replica_status(r, now))
            .collect(),
        leases,
        sources,
    })
}

/// `socbridge status`.
pub async fn run(cli: &Cli, store: &Store) -> anyhow::Result<ExitCode> {
    let report = report(store).await?;
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Table => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

fn when(t: Option<Timestamp>) -> String {
    t.map_or_else(|| "-".into(), Timestamp::to_rfc3339_seconds)
}

fn secs(s: Option<f64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s:.0}s"))
}

/// The report as text: three tables, each with a plain line when it is empty.
pub fn render(r: &StatusReport) -> String {
    let mut out = format!(
        "Database: {}    Now: {}\n\n",
        r.database,
        r.now.to_rfc3339_seconds()
    );
    let live = r.replicas.iter().filter(|x| x.live).count();
    if r.replicas.is_empty() {
        out.push_str(
            "Replicas: none registered. No `serve` shares its work through leases on this \
             database (one process works alone, or none is running).\n\n",
        );
    } else {
        out.push_str(&format!(
            "Replicas: {} registered, {live} live (seen within {}s)\n",
            r.replicas.len(),
            LIVE_WITHIN.as_secs()
        ));
        let mut t = table(&["ID", "HOST", "PID", "STARTED", "LAST SEEN", "STATE"]);
        for x in &r.replicas {
            t.add_row(vec![
                x.id.clone(),
                x.host.clone(),
                x.pid.to_string(),
                x.started_at.to_rfc3339_seconds(),
                format!(
                    "{} ({:.0}s ago)",
                    x.last_seen_at.to_rfc3339_seconds(),
                    x.seconds_since_seen
                ),
                if x.live { "live" } else { "silent" }.to_string(),
            ]);
        }
        out.push_str(&format!("{t}\n\n"));
    }
    if r.leases.is_empty() {
        out.push_str("Leases: none granted yet.\n\n");
    } else {
        let held = r.leases.iter().filter(|l| !l.free).count();
        out.push_str(&format!("Leases: {} jobs, {held} held\n", r.leases.len()));
        let mut t = table(&["JOB", "KIND", "HOLDER", "TOKEN", "EXPIRES", "STATE"]);
        for l in &r.leases {
            t.add_row(vec![
                l.name.clone(),
                l.kind.clone(),
                l.holder.clone().unwrap_or_else(|| "-".into()),
                l.token.to_string(),
                l.expires_at.to_rfc3339_seconds(),
                l.state.clone(),
            ]);
        }
        out.push_str(&format!("{t}\n\n"));
    }
    if r.sources.is_empty() {
        out.push_str("Sources: none.\n");
    } else {
        let overdue = r.sources.iter().filter(|s| s.overdue).count();
        out.push_str(&format!(
            "Sources: {}, {overdue} overdue\n",
            r.sources.len()
        ));
        let mut t = table(&[
            "TENANT",
            "SOURCE",
            "KIND",
            "LAST POLL",
            "SINCE",
            "EVERY",
            "CURSOR",
            "OVERDUE",
            "POLLED BY",
            "LAST ERROR",
        ]);
        for s in &r.sources {
            t.add_row(vec![
                s.tenant.clone(),
                s.source.clone(),
                s.kind.clone(),
                when(s.last_poll_at),
                secs(s.seconds_since_poll),
                format!("{:.0}s", s.poll_interval_seconds),
                when(s.cursor_mark),
                if s.overdue { "yes" } else { "no" }.to_string(),
                s.polled_by.clone().unwrap_or_else(|| "-".into()),
                s.last_error.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use socbridge_model::SourceKind;

    fn source(last_poll: Option<i64>, created: i64, interval_secs: u64) -> SourceRecord {
        let settings = socbridge_engine::SecureEndpointSettings::new(
            None,
            "client".into(),
            None,
            None,
            socbridge_engine::PollSettings::default().overlay(
                Some(Duration::from_secs(interval_secs)),
                None,
                None,
                None,
            ),
        )
        .expect("settings");
        SourceRecord {
            id: 1,
            tenant_id: 1,
            tenant: "acme".into(),
            name: "amp".into(),
            kind: SourceKind::SecureEndpoint,
            settings: serde_json::to_value(SourceSettings::SecureEndpoint(settings))
                .expect("settings as JSON"),
            secret: None,
            cursor_mark: None,
            last_poll_at: last_poll.map(|s| Timestamp::from_micros(s * 1_000_000)),
            last_ok_at: None,
            last_error: None,
            created_at: Timestamp::from_micros(created * 1_000_000),
        }
    }

    #[test]
    fn overdue_after_two_intervals_without_a_poll() {
        let now = Timestamp::from_micros(1_000 * 1_000_000);
        let lag = source_lag(&source(Some(900), 0, 60), None, now);
        assert_eq!(lag.poll_interval_seconds, 60.0);
        assert_eq!(lag.seconds_since_poll, Some(100.0));
        assert!(
            !lag.overdue,
            "100 s since a poll every 60 s is within two intervals"
        );
        assert!(source_lag(&source(Some(870), 0, 60), None, now).overdue);
        // Never polled: counted from when it was added.
        assert!(!source_lag(&source(None, 950, 60), None, now).overdue);
        let never = source_lag(&source(None, 500, 60), None, now);
        assert!(never.overdue);
        assert_eq!(never.seconds_since_poll, None);
    }
}
