//! The one transaction of the path of a signal: store a page of findings, correlate each new
//! one into an incident, keep the quarantined records, and move the source's cursor mark to
//! what was stored, all committed together or not at all.
//!
//! The work is done per page, not per finding: one look-up of which of the page's vendor keys
//! are stored, correlation once per subject (its findings go where the first goes), the new
//! findings inserted (in multi-row statements where each statement is a round trip, see
//! `insert_rows`), each incident touched updated once with what the page adds to it. The
//! statements go through `db::Tx`: the same SQL on both backends, run on SQLite without the
//! hop to sqlx's worker thread.
//!
//! Deduplication is the database's: the unique key (tenant, source, vendor key) holds, the
//! look-up runs under the tenant's ingest lock (see `lock_source`), and the insert still says
//! `ON CONFLICT DO NOTHING`: a row it did not insert fails the transaction instead of being
//! counted, so a page read twice, an overlap window or two pollers racing can never store
//! anything twice. Quarantined records are deduplicated by the hash of their bytes.

use crate::containment::{Candidate, plan_for_ingest};
use crate::db::{Arg, FromRow, Tx};
use crate::error::ResultExt as _;
use crate::tickets::{OutboxKind, enqueue, ticketing_enabled};
use crate::{Backend, IngestBatch, IngestOutcome, Store, StoreError};
use sha2::{Digest as _, Sha256};
use socbridge_model::{
    Finding, GroupBy, Observable, Severity, SourceKind, Timestamp, correlation_key, incident_title,
    rule_for,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// How often an ingest is tried when PostgreSQL aborts it for a deadlock or a serialisation
/// failure. Ingests of one tenant are serialised (see `lock_source`), so this is a safety
/// net for what remains (an ingest crossing an analyst's multi-row change). The whole
/// transaction rolled back, so running it again is safe.
const INGEST_ATTEMPTS: u32 = 5;

/// Who the timeline names for what socbridge itself does.
pub(crate) const SYSTEM_ACTOR: &str = "socbridge";

/// Rows per multi-row statement, well under both backends' bind-parameter limits (SQLite
/// 32,766, PostgreSQL 65,535): findings take 13 parameters a row, the others 2 or 3.
const FINDINGS_PER_INSERT: usize = 100;
const ROWS_PER_INSERT: usize = 500;
const KEYS_PER_LOOKUP: usize = 500;

/// The source as the ingest needs it.
struct SourceCursor {
    tenant_id: i64,
    cursor_mark: Option<Timestamp>,
}

/// The incident a finding joins.
struct Attached {
    id: i64,
    created: bool,
    /// Its severity rank before this ingest adds to it.
    severity: i64,
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
        if batch.findings.is_empty() && batch.quarantined.is_empty() {
            // Nothing to store and nothing to move the mark: no write transaction.
            let mark: Option<Option<i64>> =
                sqlx::query_scalar("SELECT cursor_mark FROM sources WHERE id = $1")
                    .bind(source_id)
                    .fetch_optional(&self.pool)
                    .await
                    .op("reading the source of an ingest")?;
            let mark = mark.ok_or_else(|| StoreError::NotFound {
                what: format!("source {source_id}"),
            })?;
            return Ok(IngestOutcome {
                mark: mark.map(Timestamp::from_micros),
                ..IngestOutcome::default()
            });
        }
        // What each finding's rows need that no other row decides, worked out before the
        // write lock: only the transaction itself runs while every other ingest waits.
        let prepared = batch
            .findings
            .iter()
            .map(Prepared::of)
            .collect::<Result<Vec<_>, _>>()?;
        let mut w = self.write("beginning an ingest").await?;
        let (out, queued, written) = self
            .ingest_in(&mut w.tx()?, source_id, batch, &prepared, move_mark)
            .await?;
        if queued {
            w.commit_waking("committing an ingest").await?;
        } else {
            w.commit("committing an ingest").await?;
        }
        self.checkpoint_after_ingest(written).await;
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

    /// The statements of one ingest, inside its write transaction; answers the outcome,
    /// whether outbox work was queued (the commit then wakes the worker) and about how many
    /// bytes it wrote.
    async fn ingest_in(
        &self,
        tx: &mut Tx<'_>,
        source_id: i64,
        batch: &IngestBatch,
        prepared: &[Prepared],
        move_mark: bool,
    ) -> Result<(IngestOutcome, bool, u64), StoreError> {
        let source = self.lock_source(tx, source_id).await?;
        if let Some(fence) = &batch.fence {
            crate::leases::check_fence(tx, fence).await?;
        }
        let now = Timestamp::now();
        let mut out = IngestOutcome::default();
        let mut newest: Option<Timestamp> = None;

        // Which findings are new: one look-up for the page, then the walk in order, which
        // also drops a key repeated within the page and stops at the cap.
        let stored = stored_keys(
            tx,
            self.backend,
            source.tenant_id,
            source_id,
            &batch.findings,
        )
        .await?;
        let mut seen: HashSet<&str> = HashSet::new();
        let mut fresh: Vec<&Finding> = Vec::new();
        let mut fresh_prepared: Vec<&Prepared> = Vec::new();
        for (i, finding) in batch.findings.iter().enumerate() {
            if batch.max_new.is_some_and(|cap| fresh.len() >= cap) {
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
            let key = finding.vendor_key.as_str();
            if stored.contains(key) || !seen.insert(key) {
                out.duplicates += 1;
                continue;
            }
            fresh.push(finding);
            fresh_prepared.push(&prepared[i]);
        }
        out.new_findings = fresh.len();

        // Correlation, once per subject: the findings of one correlation key go where the
        // first of them goes (see `place_group`), in the order the keys first appear.
        let mut groups: Vec<(&str, GroupBy, Vec<usize>)> = Vec::new();
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        for (i, p) in fresh_prepared.iter().enumerate() {
            let (key, group_by) = (p.correlation_key.as_str(), p.group_by);
            match group_of.get(key) {
                Some(&g) => groups[g].2.push(i),
                None => {
                    group_of.insert(key, groups.len());
                    groups.push((key, group_by, vec![i]));
                }
            }
        }
        let mut folds: BTreeMap<i64, Fold> = BTreeMap::new();
        let mut incident_of: Vec<i64> = vec![0; fresh.len()];
        for (key, group_by, members) in &groups {
            let findings: Vec<&Finding> = members.iter().map(|&i| fresh[i]).collect();
            let ids = self
                .place_group(
                    tx,
                    source.tenant_id,
                    key,
                    *group_by,
                    &findings,
                    now,
                    &mut folds,
                )
                .await?;
            for (&i, id) in members.iter().zip(ids) {
                incident_of[i] = id;
            }
        }
        // Stored in the page's order, so ids follow the order findings arrived in.
        let placed: Vec<(i64, &Finding)> =
            incident_of.into_iter().zip(fresh.iter().copied()).collect();
        let new_finding_ids = insert_findings(
            tx,
            self.backend,
            source_id,
            source.tenant_id,
            &placed,
            &fresh_prepared,
            now,
        )
        .await?;
        fold_in(tx, self.backend, &folds, now).await?;

        // Computers put into incidents by this batch, for the containment policy.
        let mut candidates: BTreeMap<i64, Candidate> = BTreeMap::new();
        for (incident_id, finding) in &placed {
            if let Some(subject) = finding.subject.as_ref().filter(|s| {
                finding.source_kind == SourceKind::SecureEndpoint && s.kind == "computer"
            }) {
                candidates.insert(
                    *incident_id,
                    Candidate {
                        incident_id: *incident_id,
                        computer_guid: subject.id.clone(),
                        hostname: subject.label.clone(),
                    },
                );
            }
        }
        let created: HashSet<i64> = folds
            .iter()
            .filter(|(_, f)| f.created)
            .map(|(id, _)| *id)
            .collect();
        let touched: HashSet<i64> = folds.keys().copied().collect();
        debug_assert_eq!(new_finding_ids.len(), out.new_findings);

        for q in &batch.quarantined {
            let hash = hex::encode(Sha256::digest(&q.raw));
            let id: Option<(i64,)> = tx
                .fetch_optional(
                    "quarantining a record",
                    "INSERT INTO quarantine (tenant_id, source_id, record_hash, reason, raw,
                                             received_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tenant_id, source_id, record_hash) DO NOTHING
                     RETURNING id",
                    &[
                        source.tenant_id.into(),
                        source_id.into(),
                        hash.as_str().into(),
                        q.reason.as_str().into(),
                        q.raw.as_slice().into(),
                        now.as_micros().into(),
                    ],
                )
                .await?;
            out.quarantined_new += usize::from(id.is_some());
        }

        // The mark covers what this transaction stored (or found stored), and never moves back.
        let mark = if move_mark {
            source.cursor_mark.max(newest)
        } else {
            source.cursor_mark
        };
        if mark != source.cursor_mark {
            tx.execute(
                "moving the cursor mark",
                "UPDATE sources SET cursor_mark = $2 WHERE id = $1",
                &[source_id.into(), mark.map(Timestamp::as_micros).into()],
            )
            .await?;
        }
        if (!created.is_empty() || !touched.is_empty()) && ticketing_enabled(tx).await? {
            let (tenant,): (String,) = tx
                .fetch_one(
                    "reading the tenant of an ingest",
                    "SELECT name FROM tenants WHERE id = $1",
                    &[source.tenant_id.into()],
                )
                .await?;
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
                    tx,
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
            tx,
            source.tenant_id,
            &new_finding_ids,
            created.union(&touched),
            now,
        )
        .await?;
        crate::xdr::on_ingest(tx, source.tenant_id, &created, now).await?;
        if !candidates.is_empty() {
            let (source_name,): (String,) = tx
                .fetch_one(
                    "reading the source of an ingest",
                    "SELECT name FROM sources WHERE id = $1",
                    &[source_id.into()],
                )
                .await?;
            let candidates: Vec<Candidate> = candidates.into_values().collect();
            plan_for_ingest(tx, source.tenant_id, &source_name, &candidates, now).await?;
        }

        out.incidents_created = created.len();
        out.incidents_updated = touched.difference(&created).count();
        out.mark = mark;
        // Each row also carries its other columns and index entries: about half a KiB.
        let written = placed.iter().map(|(_, f)| f.raw.len() as u64 + 512).sum();
        Ok((out, !folds.is_empty(), written))
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
        tx: &mut Tx<'_>,
        source_id: i64,
    ) -> Result<SourceCursor, StoreError> {
        let not_found = || StoreError::NotFound {
            what: format!("source {source_id}"),
        };
        const OP: &str = "reading the source of an ingest";
        let row: Option<(i64, Option<i64>)> = match self.backend {
            Backend::Sqlite => {
                tx.fetch_optional(
                    OP,
                    "SELECT tenant_id, cursor_mark FROM sources WHERE id = $1",
                    &[source_id.into()],
                )
                .await?
            }
            Backend::Postgres => {
                let tenant_id: Option<(i64,)> = tx
                    .fetch_optional(
                        OP,
                        "SELECT tenant_id FROM sources WHERE id = $1",
                        &[source_id.into()],
                    )
                    .await?;
                let (tenant_id,) = tenant_id.ok_or_else(not_found)?;
                tx.execute(
                    "locking the tenant of an ingest",
                    "SELECT id FROM tenants WHERE id = $1 FOR NO KEY UPDATE",
                    &[tenant_id.into()],
                )
                .await?;
                // Read after the lock: the mark the previous ingest committed.
                tx.fetch_optional(
                    OP,
                    "SELECT tenant_id, cursor_mark FROM sources WHERE id = $1 FOR NO KEY UPDATE",
                    &[source_id.into()],
                )
                .await?
            }
        };
        let (tenant_id, cursor_mark) = row.ok_or_else(not_found)?;
        Ok(SourceCursor {
            tenant_id,
            cursor_mark: cursor_mark.map(Timestamp::from_micros),
        })
    }

    /// Places the new findings of one correlation key, in order: all into the subject's own
    /// incident (open, or for vendor incidents the latest) when there is one; otherwise each
    /// in turn joins another source's open incident by its rule's shared observable
    /// (`model::correlation::JoinRule`) or opens the subject's incident, which the rest of the
    /// group then joins. What each incident gains is gathered in `folds` and written once.
    /// Answers the incident of each finding, in order.
    #[allow(clippy::too_many_arguments)]
    async fn place_group<'f>(
        &self,
        tx: &mut Tx<'_>,
        tenant_id: i64,
        key: &str,
        group_by: GroupBy,
        findings: &[&'f Finding],
        now: Timestamp,
        folds: &mut BTreeMap<i64, Fold<'f>>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut placed = Vec::with_capacity(findings.len());
        let mut own = self.find_incident(tx, tenant_id, key, group_by).await?;
        for f in findings {
            let (id, base, created) = match own {
                Some((id, severity)) => (id, severity, false),
                None => match self.find_joinable(tx, tenant_id, f).await? {
                    Some((id, severity)) => (id, severity, false),
                    None => {
                        let opened = self
                            .open_incident(tx, tenant_id, key, group_by, f, now)
                            .await?;
                        own = Some((opened.id, opened.severity));
                        (opened.id, opened.severity, opened.created)
                    }
                },
            };
            folds
                .entry(id)
                .or_insert_with(|| Fold::new(created, base))
                .add(f);
            placed.push(id);
        }
        Ok(placed)
    }

    /// Opens the subject's incident for `f`, or, should another transaction have opened it
    /// between the look-up and this insert (PostgreSQL; the unique open_key drops this one),
    /// finds theirs.
    async fn open_incident(
        &self,
        tx: &mut Tx<'_>,
        tenant_id: i64,
        key: &str,
        group_by: GroupBy,
        f: &Finding,
        now: Timestamp,
    ) -> Result<Attached, StoreError> {
        let title = incident_title(f);
        let id: Option<(i64,)> = tx
            .fetch_optional(
                "opening an incident",
                "INSERT INTO incidents (tenant_id, title, severity, status, correlation_key,
                                        open_key, finding_count, first_seen, last_seen,
                                        created_at, updated_at)
                 VALUES ($1, $2, $3, 'new', $4, $4, 0, $5, $5, $6, $6)
                 ON CONFLICT (tenant_id, open_key) DO NOTHING
                 RETURNING id",
                &[
                    tenant_id.into(),
                    title.as_str().into(),
                    f.severity.rank().into(),
                    key.into(),
                    f.observed_at.as_micros().into(),
                    now.as_micros().into(),
                ],
            )
            .await?;
        if let Some((id,)) = id {
            let detail = format!("opened by {} finding {}", f.source_kind, f.vendor_key);
            add_event(tx, id, now, "created", SYSTEM_ACTOR, &detail).await?;
            return Ok(Attached {
                id,
                created: true,
                severity: f.severity.rank(),
            });
        }
        match self.find_incident(tx, tenant_id, key, group_by).await? {
            Some((id, severity)) => Ok(Attached {
                id,
                created: false,
                severity,
            }),
            None => Err(StoreError::Conflict {
                detail: format!("the incident of `{key}` changed under this ingest; try again"),
            }),
        }
    }

    /// The incident a finding of `key` joins, with its severity rank; its row is locked on
    /// PostgreSQL until the ingest commits.
    /// The open incident of another source's subject that `f` joins by its rule's shared
    /// observable (see `model::correlation::JoinRule`), if any: the most recent one.
    async fn find_joinable(
        &self,
        tx: &mut Tx<'_>,
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
            let prefix = format!("{}%", join.key_prefix);
            let found: Option<(i64, i64)> = tx
                .fetch_optional(
                    "finding an incident to join",
                    &format!(
                        "SELECT i.id, i.severity FROM incidents i
                          WHERE i.tenant_id = $1 AND i.open_key IS NOT NULL
                            AND i.correlation_key LIKE $2
                            AND EXISTS (SELECT 1 FROM incident_observables o
                                         WHERE o.incident_id = i.id AND o.kind = $3
                                           AND LOWER(o.value) = $4)
                          ORDER BY i.id DESC LIMIT 1{lock}"
                    ),
                    &[
                        tenant_id.into(),
                        prefix.as_str().into(),
                        join.by.as_str().into(),
                        value.as_str().into(),
                    ],
                )
                .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn find_incident(
        &self,
        tx: &mut Tx<'_>,
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
        tx.fetch_optional(
            "finding the incident of a finding",
            sql,
            &[tenant_id.into(), key.into()],
        )
        .await
    }
}

/// The vendor keys of `findings` the tenant's source already holds.
async fn stored_keys(
    tx: &mut Tx<'_>,
    backend: Backend,
    tenant_id: i64,
    source_id: i64,
    findings: &[Finding],
) -> Result<HashSet<String>, StoreError> {
    let mut stored = HashSet::new();
    for chunk in findings.chunks(KEYS_PER_LOOKUP) {
        let mut sql = String::from("SELECT vendor_key FROM findings WHERE tenant_id = ");
        push_params(&mut sql, backend, 1, 1);
        sql.push_str(" AND source_id = ");
        push_params(&mut sql, backend, 2, 1);
        sql.push_str(" AND vendor_key IN (");
        push_params(&mut sql, backend, 3, chunk.len());
        sql.push(')');
        let mut args: Vec<Arg> = Vec::with_capacity(chunk.len() + 2);
        args.push(tenant_id.into());
        args.push(source_id.into());
        args.extend(chunk.iter().map(|f| Arg::from(f.vendor_key.as_str())));
        let keys: Vec<(String,)> = tx
            .fetch_all("looking up stored findings", &sql, &args)
            .await?;
        stored.extend(keys.into_iter().map(|(k,)| k));
    }
    Ok(stored)
}

/// Inserts rows of `columns` parameters each (`args`, row after row) with the statement
/// `head (...), (...) tail`, and answers what it returns. Through sqlx, up to
/// `rows_per_statement` rows go in one statement, since each statement is a round trip; on a
/// direct SQLite connection there is no round trip to save, so the one-row statement is
/// prepared once and stepped for each row. The SQL is the same either way.
#[allow(clippy::too_many_arguments)]
async fn insert_rows<R: FromRow>(
    tx: &mut Tx<'_>,
    backend: Backend,
    op: &'static str,
    head: &str,
    columns: usize,
    tail: &str,
    rows_per_statement: usize,
    args: &[Arg<'_>],
) -> Result<Vec<R>, StoreError> {
    let rows = if tx.is_direct() {
        1
    } else {
        rows_per_statement
    };
    let mut out = Vec::new();
    let mut sql = (0, String::new());
    for chunk in args.chunks(rows * columns) {
        let n = chunk.len() / columns;
        if sql.0 != n {
            sql = (n, multi_row(backend, head, n, columns, tail));
        }
        out.extend(tx.fetch_all::<R>(op, &sql.1, chunk).await?);
    }
    Ok(out)
}

/// Inserts the new findings, each with its incident; answers their ids. None of them is
/// stored yet (the caller looked, under the tenant's lock), so a key found stored after all
/// means a writer the lock did not stop: the transaction fails rather than count a finding
/// that is not there.
async fn insert_findings(
    tx: &mut Tx<'_>,
    backend: Backend,
    source_id: i64,
    tenant_id: i64,
    placed: &[(i64, &Finding)],
    prepared: &[&Prepared],
    now: Timestamp,
) -> Result<Vec<i64>, StoreError> {
    const COLUMNS: usize = 13;
    let mut args: Vec<Arg> = Vec::with_capacity(placed.len() * COLUMNS);
    for ((incident_id, f), p) in placed.iter().zip(prepared) {
        let (observables, subject_key) = (&p.observables, &p.subject_key);
        args.extend::<[Arg; COLUMNS]>([
            tenant_id.into(),
            source_id.into(),
            (*incident_id).into(),
            f.source_kind.as_str().into(),
            f.vendor_key.as_str().into(),
            f.observed_at.as_micros().into(),
            now.as_micros().into(),
            f.severity.rank().into(),
            f.title.as_str().into(),
            f.event_type.as_str().into(),
            subject_key.as_deref().into(),
            observables.as_str().into(),
            f.raw.as_str().into(),
        ]);
    }
    let ids: Vec<(i64,)> = insert_rows(
        tx,
        backend,
        "inserting findings",
        "INSERT INTO findings (tenant_id, source_id, incident_id, source_kind, vendor_key,
                               observed_at, ingested_at, severity, title, event_type,
                               subject_key, observables, raw)
         VALUES",
        COLUMNS,
        "ON CONFLICT (tenant_id, source_id, vendor_key) DO NOTHING RETURNING id",
        FINDINGS_PER_INSERT,
        &args,
    )
    .await?;
    if ids.len() != placed.len() {
        return Err(StoreError::Conflict {
            detail: format!(
                "{} of {} findings were stored by another writer during this ingest; try again",
                placed.len() - ids.len(),
                placed.len()
            ),
        });
    }
    Ok(ids.into_iter().map(|(id,)| id).collect())
}

/// What a finding's rows need that depends on the finding alone, computed before the write
/// lock is taken.
struct Prepared {
    /// The observables as the findings table keeps them (JSON).
    observables: String,
    /// `kind:id` of the subject, when there is one.
    subject_key: Option<String>,
    correlation_key: String,
    group_by: GroupBy,
}

impl Prepared {
    fn of(f: &Finding) -> Result<Self, StoreError> {
        let observables = serde_json::to_string(&f.observables).map_err(|e| {
            StoreError::corrupt(format!("observables of finding {}: {e}", f.vendor_key))
        })?;
        let (correlation_key, group_by) = correlation_key(f);
        Ok(Prepared {
            observables,
            subject_key: f.subject.as_ref().map(|s| format!("{}:{}", s.kind, s.id)),
            correlation_key,
            group_by,
        })
    }
}

/// `head ($1, $2), ($3, $4), ... tail`: a statement of `rows` rows of `columns` parameters.
fn multi_row(backend: Backend, head: &str, rows: usize, columns: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 6);
    sql.push_str(head);
    for r in 0..rows {
        sql.push_str(if r == 0 { " (" } else { ", (" });
        push_params(&mut sql, backend, r * columns + 1, columns);
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Appends `count` parameters, numbered from `first`, separated by commas: `$first, ...` on
/// PostgreSQL; on SQLite plain `?`, bound in order. (Binding a numbered parameter costs
/// SQLite a scan of the statement's parameter names, so a statement of thousands of them
/// would spend most of its time there.)
fn push_params(sql: &mut String, backend: Backend, first: usize, count: usize) {
    for n in first..first + count {
        if n > first {
            sql.push_str(", ");
        }
        match backend {
            Backend::Sqlite => sql.push('?'),
            Backend::Postgres => {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
    }
}

/// What one ingest adds to one incident.
struct Fold<'f> {
    created: bool,
    /// The incident's severity rank before this ingest's findings (for a new incident, its
    /// opening finding's).
    base: i64,
    /// The first finding with the highest severity.
    top: Option<&'f Finding>,
    count: i64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    kinds: BTreeSet<&'static str>,
    observables: BTreeSet<&'f Observable>,
}

impl<'f> Fold<'f> {
    fn new(created: bool, base: i64) -> Self {
        Fold {
            created,
            base,
            top: None,
            count: 0,
            first: None,
            last: None,
            kinds: BTreeSet::new(),
            observables: BTreeSet::new(),
        }
    }

    fn add(&mut self, f: &'f Finding) {
        self.count += 1;
        if self
            .top
            .is_none_or(|t| f.severity.rank() > t.severity.rank())
        {
            self.top = Some(f);
        }
        self.first = Some(self.first.map_or(f.observed_at, |t| t.min(f.observed_at)));
        self.last = Some(self.last.map_or(f.observed_at, |t| t.max(f.observed_at)));
        self.kinds.insert(f.source_kind.as_str());
        self.observables
            .extend(f.observables.iter().filter(|o| !o.value.trim().is_empty()));
    }

    fn severity(&self) -> i64 {
        self.top
            .map_or(self.base, |t| t.severity.rank().max(self.base))
    }
}

/// Folds what the ingest added into each incident: count, severity, first/last seen (one
/// `UPDATE` each), a `severity_raised` line when it rose, and the source kinds and
/// observables (multi-row inserts over all the incidents).
async fn fold_in(
    tx: &mut Tx<'_>,
    backend: Backend,
    folds: &BTreeMap<i64, Fold<'_>>,
    now: Timestamp,
) -> Result<(), StoreError> {
    for (&id, fold) in folds {
        let (Some(first), Some(last)) = (fold.first, fold.last) else {
            continue;
        };
        tx.execute(
            "adding findings to their incident",
            "UPDATE incidents SET
                finding_count = finding_count + $2,
                first_seen = CASE WHEN first_seen > $3 THEN $3 ELSE first_seen END,
                last_seen = CASE WHEN last_seen < $4 THEN $4 ELSE last_seen END,
                updated_at = $5,
                severity = $6
              WHERE id = $1",
            &[
                id.into(),
                fold.count.into(),
                first.as_micros().into(),
                last.as_micros().into(),
                now.as_micros().into(),
                fold.severity().into(),
            ],
        )
        .await?;
        if let Some(top) = fold.top.filter(|t| t.severity.rank() > fold.base) {
            let from = Severity::from_rank(fold.base)
                .map_or_else(|| fold.base.to_string(), |s| s.to_string());
            let detail = format!("{from} -> {} (finding {})", top.severity, top.vendor_key);
            add_event(tx, id, now, "severity_raised", SYSTEM_ACTOR, &detail).await?;
        }
    }

    let kinds: Vec<Arg> = folds
        .iter()
        .flat_map(|(&id, f)| f.kinds.iter().flat_map(move |k| [id.into(), (*k).into()]))
        .collect();
    insert_rows::<()>(
        tx,
        backend,
        "adding source kinds to incidents",
        "INSERT INTO incident_sources (incident_id, source_kind) VALUES",
        2,
        "ON CONFLICT DO NOTHING",
        ROWS_PER_INSERT,
        &kinds,
    )
    .await?;

    let observables: Vec<Arg> = folds
        .iter()
        .flat_map(|(&id, f)| {
            f.observables
                .iter()
                .flat_map(move |o| [id.into(), o.kind.as_str().into(), o.value.as_str().into()])
        })
        .collect();
    insert_rows::<()>(
        tx,
        backend,
        "adding observables to incidents",
        "INSERT INTO incident_observables (incident_id, kind, value) VALUES",
        3,
        "ON CONFLICT DO NOTHING",
        ROWS_PER_INSERT,
        &observables,
    )
    .await?;
    Ok(())
}

/// Appends a line to an incident's timeline.
pub(crate) async fn add_event(
    tx: &mut Tx<'_>,
    incident_id: i64,
    at: Timestamp,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "adding to an incident's timeline",
        "INSERT INTO incident_events (incident_id, at, kind, actor, detail)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            incident_id.into(),
            at.as_micros().into(),
            kind.into(),
            actor.into(),
            detail.into(),
        ],
    )
    .await?;
    Ok(())
}
