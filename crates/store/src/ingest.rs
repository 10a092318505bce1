//! The one transaction of the path of a signal: store a page of findings, correlate each new
//! one into an incident, keep the quarantined records, and move the source's cursor mark to
//! what was stored, all committed together or not at all.
//!
//! Deduplication is the database's: `INSERT ... ON CONFLICT DO NOTHING RETURNING id` returns
//! a row only for a finding (or quarantined record) not stored before, so a page read twice,
//! an overlap window or two pollers racing can never store anything twice.

use crate::containment::{Candidate, plan_for_ingest};
use crate::error::ResultExt as _;
use crate::tickets::{OutboxKind, enqueue, ticketing_enabled};
use crate::{Backend, IngestBatch, IngestOutcome, Store, StoreError};
use sha2::{Digest as _, Sha256};
use socbridge_model::{
    Finding, GroupBy, Observable, Severity, SourceKind, Timestamp, correlation_key, incident_title,
    rule_for,
};
use sqlx::AnyConnection;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

/// How often an ingest is tried when PostgreSQL aborts it for a deadlock or a serialisation
/// failure. Ingests of one tenant are serialised (see `lock_source`), so this is a safety
/// net for what remains (an ingest crossing an analyst's multi-row change). The whole
/// transaction rolled back, so running it again is safe.
const INGEST_ATTEMPTS: u32 = 5;

/// Who the timeline names for what socbridge itself does.
pub(crate) const SYSTEM_ACTOR: &str = "socbridge";

/// Observables per multi-row INSERT, well under both backends' bind-parameter limits.
const OBSERVABLES_PER_INSERT: usize = 200;

/// The source as the ingest needs it.
struct SourceCursor {
    tenant_id: i64,
    cursor_mark: Option<Timestamp>,
}

/// The incident a finding joins.
struct Attached {
    id: i64,
    created: bool,
}

impl Store {
    /// Stores one batch (a page of a poll) in one transaction; see the module docs and
    /// [`IngestBatch`]. Walks the findings in order and stops before the first one past
    /// `max_new` new findings; the mark becomes the newest `observed_at` among the findings
    /// walked (new or duplicate), never less than the mark before.
    pub async fn ingest(
        &self,
        source_id: i64,
        batch: IngestBatch,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_retrying(source_id, batch, true).await
    }

    /// [`Store::ingest`] for events that arrived by push (Secure Endpoint Event Streams): the
    /// same transaction, keys and correlation, but the cursor mark stays where the polls put
    /// it. A pushed event says nothing about older events having been stored (the stream may
    /// have lost some), so only a poll, which reads a whole window, may move the mark.
    pub async fn ingest_pushed(
        &self,
        source_id: i64,
        batch: IngestBatch,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_retrying(source_id, batch, false).await
    }

    async fn ingest_retrying(
        &self,
        source_id: i64,
        batch: IngestBatch,
        move_mark: bool,
    ) -> Result<IngestOutcome, StoreError> {
        let mut attempt = 1;
        loop {
            match self.ingest_once(source_id, &batch, move_mark).await {
                Err(e) if e.is_transient() && attempt < INGEST_ATTEMPTS => {
                    tracing::warn!(source_id, attempt, error = %e, "ingest rolled back; retrying");
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn ingest_once(
        &self,
        source_id: i64,
        batch: &IngestBatch,
        move_mark: bool,
    ) -> Result<IngestOutcome, StoreError> {
        let mut w = self.begin_write("beginning an ingest").await?;
        let conn = w.conn();
        let source = self.lock_source(conn, source_id).await?;
        let now = Timestamp::now();
        let mut out = IngestOutcome::default();
        let mut created = HashSet::new();
        let mut touched = HashSet::new();
        let mut newest: Option<Timestamp> = None;
        // Computers put into incidents by this batch, for the containment policy.
        let mut candidates: BTreeMap<i64, Candidate> = BTreeMap::new();
        let mut new_finding_ids = Vec::new();

        for (i, finding) in batch.findings.iter().enumerate() {
            if batch.max_new.is_some_and(|cap| out.new_findings >= cap) {
                out.cap_reached = true;
                // The batch is ascending, so what is left is no older than what was walked.
                // Should a caller ever break that order, the mark still must not pass over a
                // finding left for the next poll.
                let oldest_left = batch.findings[i..].iter().map(|f| f.observed_at).min();
                newest = newest.min(oldest_left);
                break;
            }
            out.processed += 1;
            newest = newest.max(Some(finding.observed_at));
            let Some(finding_id) =
                insert_finding(conn, source_id, source.tenant_id, finding, now).await?
            else {
                out.duplicates += 1;
                continue;
            };
            out.new_findings += 1;
            new_finding_ids.push(finding_id);
            let incident = self
                .correlate(conn, source.tenant_id, finding_id, finding, now)
                .await?;
            if let Some(subject) = finding.subject.as_ref().filter(|s| {
                finding.source_kind == SourceKind::SecureEndpoint && s.kind == "computer"
            }) {
                candidates.insert(
                    incident.id,
                    Candidate {
                        incident_id: incident.id,
                        computer_guid: subject.id.clone(),
                        hostname: subject.label.clone(),
                    },
                );
            }
            if incident.created {
                created.insert(incident.id);
            } else {
                touched.insert(incident.id);
            }
        }

        for q in &batch.quarantined {
            let hash = hex::encode(Sha256::digest(&q.raw));
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO quarantine (tenant_id, source_id, record_hash, reason, raw, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant_id, source_id, record_hash) DO NOTHING
                 RETURNING id",
            )
            .bind(source.tenant_id)
            .bind(source_id)
            .bind(hash)
            .bind(q.reason.as_str())
            .bind(q.raw.as_slice())
            .bind(now.as_micros())
            .fetch_optional(&mut *conn)
            .await
            .op("quarantining a record")?;
            out.quarantined_new += usize::from(id.is_some());
        }

        // The mark covers what this transaction stored (or found stored), and never moves back.
        let mark = if move_mark {
            source.cursor_mark.max(newest)
        } else {
            source.cursor_mark
        };
        if mark != source.cursor_mark {
            sqlx::query("UPDATE sources SET cursor_mark = $2 WHERE id = $1")
                .bind(source_id)
                .bind(mark.map(Timestamp::as_micros))
                .execute(&mut *conn)
                .await
                .op("moving the cursor mark")?;
        }
        if (!created.is_empty() || !touched.is_empty()) && ticketing_enabled(conn).await? {
            let tenant: String = sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
                .bind(source.tenant_id)
                .fetch_one(&mut *conn)
                .await
                .op("reading the tenant of an ingest")?;
            let mut ids: Vec<(i64, OutboxKind)> = created
                .iter()
                .map(|id| (*id, OutboxKind::Create))
                .chain(
                    touched
                        .difference(&created)
                        .map(|id| (*id, OutboxKind::Update)),
                )
                .collect();
            ids.sort_unstable_by_key(|(id, _)| *id);
            for (id, kind) in ids {
                enqueue(
                    conn,
                    source.tenant_id,
                    &tenant,
                    id,
                    kind,
                    serde_json::json!({}),
                    now,
                )
                .await?;
            }
        }
        crate::sinks::enqueue_ingest(
            conn,
            source.tenant_id,
            &new_finding_ids,
            created.union(&touched),
            now,
        )
        .await?;
        crate::xdr::on_ingest(conn, source.tenant_id, &created, now).await?;
        if !candidates.is_empty() {
            let source_name: String = sqlx::query_scalar("SELECT name FROM sources WHERE id = $1")
                .bind(source_id)
                .fetch_one(&mut *conn)
                .await
                .op("reading the source of an ingest")?;
            let candidates: Vec<Candidate> = candidates.into_values().collect();
            plan_for_ingest(conn, source.tenant_id, &source_name, &candidates, now).await?;
        }
        w.commit("committing an ingest").await?;

        out.incidents_created = created.len();
        out.incidents_updated = touched.difference(&created).count();
        out.mark = mark;
        tracing::debug!(
            source_id,
            new = out.new_findings,
            duplicates = out.duplicates,
            quarantined = out.quarantined_new,
            incidents_created = out.incidents_created,
            incidents_updated = out.incidents_updated,
            "ingest committed"
        );
        Ok(out)
    }

    /// Reads the source's tenant and mark, and makes concurrent ingests of one tenant run one
    /// after the other, so that each computes its mark from the previous one's and they never
    /// lock the same incidents in opposite orders.
    ///
    /// On SQLite, BEGIN IMMEDIATE already holds the database's only write lock. On PostgreSQL
    /// the tenant's row is locked `FOR NO KEY UPDATE` (which, unlike `FOR UPDATE`, does not
    /// block the foreign-key checks of other writers: an analyst's update goes on), then the
    /// source's row. Serialising per tenant rather than per source costs little (a tenant has
    /// a few sources, and only the short ingest transaction waits, not the polls), and spares
    /// two sources that report on the same computers a deadlock the server would need a second
    /// (`deadlock_timeout`) to detect and break.
    async fn lock_source(
        &self,
        conn: &mut AnyConnection,
        source_id: i64,
    ) -> Result<SourceCursor, StoreError> {
        let not_found = || StoreError::NotFound {
            what: format!("source {source_id}"),
        };
        let row: Option<(i64, Option<i64>)> = match self.backend {
            Backend::Sqlite => {
                sqlx::query_as("SELECT tenant_id, cursor_mark FROM sources WHERE id = $1")
                    .bind(source_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .op("reading the source of an ingest")?
            }
            Backend::Postgres => {
                let tenant_id: Option<i64> =
                    sqlx::query_scalar("SELECT tenant_id FROM sources WHERE id = $1")
                        .bind(source_id)
                        .fetch_optional(&mut *conn)
                        .await
                        .op("reading the source of an ingest")?;
                let tenant_id = tenant_id.ok_or_else(not_found)?;
                sqlx::query("SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(tenant_id)
                    .execute(&mut *conn)
                    .await
                    .op("locking the tenant of an ingest")?;
                // Read after the lock: the mark the previous ingest committed.
                sqlx::query_as(
                    "SELECT tenant_id, cursor_mark FROM sources WHERE id = $1 FOR NO KEY UPDATE",
                )
                .bind(source_id)
                .fetch_optional(&mut *conn)
                .await
                .op("reading the source of an ingest")?
            }
        };
        let (tenant_id, cursor_mark) = row.ok_or_else(not_found)?;
        Ok(SourceCursor {
            tenant_id,
            cursor_mark: cursor_mark.map(Timestamp::from_micros),
        })
    }

    /// Puts a newly stored finding into its incident: the open (or, for vendor incidents, the
    /// latest) incident of its subject, or a new one.
    async fn correlate(
        &self,
        conn: &mut AnyConnection,
        tenant_id: i64,
        finding_id: i64,
        f: &Finding,
        now: Timestamp,
    ) -> Result<Attached, StoreError> {
        let (key, group_by) = correlation_key(f);
        let rank = f.severity.rank();
        // Two tries: on PostgreSQL another transaction may open the subject's incident between
        // our look-up and our insert; the unique open_key then drops our insert and the second
        // look-up finds theirs. (On SQLite writers are serialised and the first try decides.)
        for _ in 0..2 {
            let mut found = self.find_incident(conn, tenant_id, &key, group_by).await?;
            if found.is_none() {
                found = self.find_joinable(conn, tenant_id, f).await?;
            }
            if let Some((id, severity)) = found {
                attach(conn, id, finding_id, f, severity.max(rank), now).await?;
                if rank > severity {
                    let from = Severity::from_rank(severity)
                        .map_or_else(|| severity.to_string(), |s| s.to_string());
                    let detail = format!("{from} -> {} (finding {})", f.severity, f.vendor_key);
                    add_event(conn, id, now, "severity_raised", SYSTEM_ACTOR, &detail).await?;
                }
                return Ok(Attached { id, created: false });
            }
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO incidents (tenant_id, title, severity, status, correlation_key,
                                        open_key, finding_count, first_seen, last_seen,
                                        created_at, updated_at)
                 VALUES ($1, $2, $3, 'new', $4, $4, 0, $5, $5, $6, $6)
                 ON CONFLICT (tenant_id, open_key) DO NOTHING
                 RETURNING id",
            )
            .bind(tenant_id)
            .bind(incident_title(f))
            .bind(rank)
            .bind(key.as_str())
            .bind(f.observed_at.as_micros())
            .bind(now.as_micros())
            .fetch_optional(&mut *conn)
            .await
            .op("opening an incident")?;
            if let Some(id) = id {
                let detail = format!("opened by {} finding {}", f.source_kind, f.vendor_key);
                add_event(conn, id, now, "created", SYSTEM_ACTOR, &detail).await?;
                attach(conn, id, finding_id, f, rank, now).await?;
                return Ok(Attached { id, created: true });
            }
        }
        Err(StoreError::Conflict {
            detail: format!("the incident of `{key}` changed under this ingest; try again"),
        })
    }

    /// The incident a finding of `key` joins, with its severity rank; its row is locked on
    /// PostgreSQL until the ingest commits.
    /// The open incident of another source's subject that `f` joins by its rule's shared
    /// observable (see `model::correlation::JoinRule`), if any: the most recent one.
    async fn find_joinable(
        &self,
        conn: &mut AnyConnection,
        tenant_id: i64,
        f: &Finding,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let Some(join) = rule_for(f.source_kind).and_then(|r| r.join) else {
            return Ok(None);
        };
        let values: Vec<String> = f
            .observables
            .iter()
            .filter(|o| o.kind == join.by)
            .map(|o| o.value.to_lowercase())
            .collect();
        for value in values {
            let lock = match self.backend {
                Backend::Sqlite => "",
                Backend::Postgres => " FOR UPDATE OF i",
            };
            let found: Option<(i64, i64)> = sqlx::query_as(&format!(
                "SELECT i.id, i.severity FROM incidents i
                  WHERE i.tenant_id = $1 AND i.open_key IS NOT NULL
                    AND i.correlation_key LIKE $2
                    AND EXISTS (SELECT 1 FROM incident_observables o
                                 WHERE o.incident_id = i.id AND o.kind = $3
                                   AND LOWER(o.value) = $4)
                  ORDER BY i.id DESC LIMIT 1{lock}"
            ))
            .bind(tenant_id)
            .bind(format!("{}%", join.key_prefix))
            .bind(join.by.as_str())
            .bind(value)
            .fetch_optional(&mut *conn)
            .await
            .op("finding an incident to join")?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn find_incident(
        &self,
        conn: &mut AnyConnection,
        tenant_id: i64,
        key: &str,
        group_by: GroupBy,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let sql = match (group_by, self.backend) {
            // While open: the unique open_key names at most one incident.
            (GroupBy::SubjectWhileOpen, Backend::Sqlite) => {
                "SELECT id, severity FROM incidents WHERE tenant_id = $1 AND open_key = $2"
            }
            (GroupBy::SubjectWhileOpen, Backend::Postgres) => {
                "SELECT id, severity FROM incidents WHERE tenant_id = $1 AND open_key = $2
                 FOR UPDATE"
            }
            // Forever: the latest incident of the subject, open or not; reopening a closed
            // one is the analyst's (or the ticket sync's) decision, not the ingest's.
            (GroupBy::SubjectForever, Backend::Sqlite) => {
                "SELECT id, severity FROM incidents WHERE tenant_id = $1 AND correlation_key = $2
                 ORDER BY id DESC LIMIT 1"
            }
            (GroupBy::SubjectForever, Backend::Postgres) => {
                "SELECT id, severity FROM incidents WHERE tenant_id = $1 AND correlation_key = $2
                 ORDER BY id DESC LIMIT 1 FOR UPDATE"
            }
        };
        sqlx::query_as(sql)
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await
            .op("finding the incident of a finding")
    }
}

/// Inserts a finding; `None` if the tenant's source already holds its vendor key.
async fn insert_finding(
    conn: &mut AnyConnection,
    source_id: i64,
    tenant_id: i64,
    f: &Finding,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    let observables = serde_json::to_string(&f.observables).map_err(|e| {
        StoreError::corrupt(format!("observables of finding {}: {e}", f.vendor_key))
    })?;
    let subject_key = f.subject.as_ref().map(|s| format!("{}:{}", s.kind, s.id));
    sqlx::query_scalar(
        "INSERT INTO findings (tenant_id, source_id, source_kind, vendor_key, observed_at,
                               ingested_at, severity, title, event_type, subject_key,
                               observables, raw)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (tenant_id, source_id, vendor_key) DO NOTHING
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(source_id)
    .bind(f.source_kind.as_str())
    .bind(f.vendor_key.as_str())
    .bind(f.observed_at.as_micros())
    .bind(now.as_micros())
    .bind(f.severity.rank())
    .bind(f.title.as_str())
    .bind(f.event_type.as_str())
    .bind(subject_key)
    .bind(observables)
    .bind(f.raw.as_str())
    .fetch_optional(&mut *conn)
    .await
    .op("inserting a finding")
}

/// Links a finding to its incident and folds it in: count, severity (`severity`, the maximum
/// the caller computed from the locked row), first/last seen, observables, source kind.
async fn attach(
    conn: &mut AnyConnection,
    incident_id: i64,
    finding_id: i64,
    f: &Finding,
    severity: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE findings SET incident_id = $1 WHERE id = $2")
        .bind(incident_id)
        .bind(finding_id)
        .execute(&mut *conn)
        .await
        .op("linking a finding to its incident")?;
    sqlx::query(
        "UPDATE incidents SET
            finding_count = finding_count + 1,
            first_seen = CASE WHEN first_seen > $2 THEN $2 ELSE first_seen END,
            last_seen = CASE WHEN last_seen < $2 THEN $2 ELSE last_seen END,
            updated_at = $3,
            severity = $4
          WHERE id = $1",
    )
    .bind(incident_id)
    .bind(f.observed_at.as_micros())
    .bind(now.as_micros())
    .bind(severity)
    .execute(&mut *conn)
    .await
    .op("adding a finding to its incident")?;
    sqlx::query(
        "INSERT INTO incident_sources (incident_id, source_kind) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(incident_id)
    .bind(f.source_kind.as_str())
    .execute(&mut *conn)
    .await
    .op("adding a source kind to an incident")?;

    let observables: BTreeSet<&Observable> = f
        .observables
        .iter()
        .filter(|o| !o.value.trim().is_empty())
        .collect();
    let observables: Vec<&Observable> = observables.into_iter().collect();
    for chunk in observables.chunks(OBSERVABLES_PER_INSERT) {
        // ($1, $2, $3), ($1, $4, $5), ...: one statement per chunk rather than per value.
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO incident_observables (incident_id, kind, value) VALUES {}
             ON CONFLICT DO NOTHING",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(incident_id);
        for o in chunk {
            query = query.bind(o.kind.as_str()).bind(o.value.as_str());
        }
        query
            .execute(&mut *conn)
            .await
            .op("adding observables to an incident")?;
    }
    Ok(())
}

/// Appends a line to an incident's timeline.
pub(crate) async fn add_event(
    conn: &mut AnyConnection,
    incident_id: i64,
    at: Timestamp,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO incident_events (incident_id, at, kind, actor, detail)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(incident_id)
    .bind(at.as_micros())
    .bind(kind)
    .bind(actor)
    .bind(detail)
    .execute(&mut *conn)
    .await
    .op("adding to an incident's timeline")?;
    Ok(())
}
