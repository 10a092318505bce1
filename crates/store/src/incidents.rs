//! Incidents as analysts see them: list with filters, read one with its findings and timeline,
//! update status, resolution, assignee and comments.
//!
//! Tenant scope: a caller limited to some tenants gets `None` for another tenant's incident,
//! exactly as for a missing one, so it cannot even learn that the id exists.

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::ingest::add_event;
use crate::tickets::{
    Origin, OutboxKind, enqueue, has_vendor_workflow, mark_journal_seen, ticketing_enabled,
    work_for_update,
};
use crate::{Backend, Store, StoreError, in_scope};
use socbridge_model::{
    FindingView, IncidentDetail, IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView,
    Observable, ObservableKind, Severity, SourceKind, TicketView, TimelineEntry, Timestamp,
};
use sqlx::AnyConnection;
use sqlx::Row as _;
use sqlx::any::AnyRow;
use std::collections::HashMap;

/// `incidents list` without `--limit`.
const DEFAULT_LIMIT: u32 = 100;
/// The most incidents one list returns: bounds memory and the size of an API answer.
const MAX_LIMIT: u32 = 10_000;
/// Ids per `IN (...)` of the batched look-ups, well under both backends' parameter limits.
const IDS_PER_QUERY: usize = 500;

const VIEW_SELECT: &str = "SELECT i.id, t.name AS tenant, i.title, i.severity, i.status,
        i.created_at, i.updated_at, i.first_seen, i.last_seen, i.finding_count,
        i.resolution, i.assignee
   FROM incidents i JOIN tenants t ON t.id = i.tenant_id";

/// A value bound to a statement built at run time.
pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// A statement built at run time with its `$N` placeholders numbered as values are added.
#[derive(Default)]
pub(crate) struct Sql {
    pub(crate) text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// Adds a value and returns its placeholder.
    pub(crate) fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    /// `$a, $b, ...` for a list of values.
    pub(crate) fn list(&mut self, args: impl IntoIterator<Item = Arg>) -> String {
        args.into_iter()
            .map(|a| self.arg(a))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) async fn fetch_all(
        &self,
        conn: &mut AnyConnection,
        op: &'static str,
    ) -> Result<Vec<AnyRow>, StoreError> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
            };
        }
        query.fetch_all(conn).await.op(op)
    }

    pub(crate) async fn execute(
        &self,
        conn: &mut AnyConnection,
        op: &'static str,
    ) -> Result<u64, StoreError> {
        let mut query = sqlx::query(&self.text);
        for arg in &self.args {
            query = match arg {
                Arg::Int(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.as_str()),
            };
        }
        Ok(query.execute(conn).await.op(op)?.rows_affected())
    }
}

fn view_from_row(row: &AnyRow) -> Result<IncidentView, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading an incident",
        error: e,
    };
    let id: i64 = row.try_get("id").map_err(read)?;
    let rank: i64 = row.try_get("severity").map_err(read)?;
    let severity = Severity::from_rank(rank)
        .ok_or_else(|| StoreError::corrupt(format!("incident {id} has severity rank {rank}")))?;
    let status: String = row.try_get("status").map_err(read)?;
    let status = status
        .parse::<IncidentStatus>()
        .map_err(|e| StoreError::corrupt(format!("incident {id}: {e}")))?;
    let ts = |col: &str| {
        row.try_get::<i64, _>(col)
            .map(Timestamp::from_micros)
            .map_err(read)
    };
    Ok(IncidentView {
        id,
        tenant: row.try_get("tenant").map_err(read)?,
        title: row.try_get("title").map_err(read)?,
        severity,
        status,
        sources: Vec::new(),
        created_at: ts("created_at")?,
        updated_at: ts("updated_at")?,
        first_seen: ts("first_seen")?,
        last_seen: ts("last_seen")?,
        finding_count: row.try_get("finding_count").map_err(read)?,
        observables: Vec::new(),
        ticket: None,
        actions: Vec::new(),
        resolution: row.try_get("resolution").map_err(read)?,
        assignee: row.try_get("assignee").map_err(read)?,
    })
}

/// Fills the observables and source kinds of listed incidents: one query per table per chunk
/// of ids, never one per incident.
async fn fill_views(
    conn: &mut AnyConnection,
    views: &mut [IncidentView],
) -> Result<(), StoreError> {
    if views.is_empty() {
        return Ok(());
    }
    let index: HashMap<i64, usize> = views.iter().enumerate().map(|(i, v)| (v.id, i)).collect();
    let ids: Vec<i64> = views.iter().map(|v| v.id).collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let mut sql = Sql::default();
        let list = sql.list(chunk.iter().map(|id| Arg::Int(*id)));
        sql.text = format!(
            "SELECT incident_id, kind, value FROM incident_observables WHERE incident_id IN ({list})"
        );
        for row in sql.fetch_all(conn, "reading incident observables").await? {
            let (id, kind, value): (i64, String, String) = (
                row.try_get(0).op("reading incident observables")?,
                row.try_get(1).op("reading incident observables")?,
                row.try_get(2).op("reading incident observables")?,
            );
            let kind = ObservableKind::parse(&kind).ok_or_else(|| {
                StoreError::corrupt(format!("incident {id} has an observable of kind `{kind}`"))
            })?;
            if let Some(&i) = index.get(&id) {
                views[i].observables.push(Observable::new(kind, value));
            }
        }

        let mut sql = Sql::default();
        let list = sql.list(chunk.iter().map(|id| Arg::Int(*id)));
        sql.text = format!(
            "SELECT incident_id, source_kind FROM incident_sources WHERE incident_id IN ({list})"
        );
        for row in sql.fetch_all(conn, "reading incident sources").await? {
            let id: i64 = row.try_get(0).op("reading incident sources")?;
            let kind: String = row.try_get(1).op("reading incident sources")?;
            let kind = kind
                .parse::<SourceKind>()
                .map_err(|e| StoreError::corrupt(format!("incident {id}: {e}")))?;
            if let Some(&i) = index.get(&id) {
                views[i].sources.push(kind);
            }
        }

        // The ticket, once it exists at the ticketing system (a ticket still being created
        // shows as pending).
        let mut sql = Sql::default();
        let list = sql.list(chunk.iter().map(|id| Arg::Int(*id)));
        sql.text = format!(
            "SELECT incident_id, system, number, sys_id, state, url
               FROM tickets WHERE incident_id IN ({list})"
        );
        for row in sql.fetch_all(conn, "reading incident tickets").await? {
            let id: i64 = row.try_get(0).op("reading incident tickets")?;
            let text = |i: usize| -> Result<String, StoreError> {
                let v: Option<String> = row.try_get(i).op("reading incident tickets")?;
                Ok(v.unwrap_or_default())
            };
            let sys_id = text(3)?;
            let ticket = TicketView {
                system: text(1)?,
                number: text(2)?,
                state: if sys_id.is_empty() {
                    "pending".to_string()
                } else {
                    text(4)?
                },
                sys_id,
                url: text(5)?,
            };
            if let Some(&i) = index.get(&id) {
                views[i].ticket = Some(ticket);
            }
        }
        crate::containment::fill_actions(conn, chunk, &index, views).await?;
    }
    for v in views.iter_mut() {
        v.observables.sort();
        v.sources.sort();
    }
    Ok(())
}

/// `%text%` for a case-insensitive `LIKE` (of `LOWER(column)`), with `%`, `_` and the escape
/// character itself matched literally.
fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// One incident's view, whatever its tenant; the caller checks the scope.
async fn load_view(conn: &mut AnyConnection, id: i64) -> Result<Option<IncidentView>, StoreError> {
    let row = sqlx::query(&format!("{VIEW_SELECT} WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .op("reading an incident")?;
    let Some(row) = row else { return Ok(None) };
    let mut views = [view_from_row(&row)?];
    fill_views(conn, &mut views).await?;
    let [view] = views;
    Ok(Some(view))
}

/// The incident's row as an update needs it.
struct Current {
    tenant_id: i64,
    tenant: String,
    status: IncidentStatus,
    resolution: Option<String>,
    assignee: Option<String>,
    correlation_key: String,
    closed_at: Option<i64>,
}

/// `Some("")` (or blanks) clears a text field; the CLI has no other way to say "none".
fn normalise_text(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn show(v: Option<&str>) -> &str {
    v.unwrap_or("(none)")
}

impl Store {
    /// Incidents matching `filter`, newest activity first (`updated_at`, then id).
    pub async fn list_incidents(
        &self,
        filter: &IncidentFilter,
    ) -> Result<Vec<IncidentView>, StoreError> {
        let mut sql = Sql::default();
        let mut conditions = Vec::new();
        if !filter.tenants.is_empty() {
            let list = sql.list(filter.tenants.iter().map(|t| Arg::Text(t.clone())));
            conditions.push(format!("t.name IN ({list})"));
        }
        if let Some(since) = filter.since {
            conditions.push(format!(
                "i.updated_at >= {}",
                sql.arg(Arg::Int(since.as_micros()))
            ));
        }
        if !filter.severities.is_empty() {
            let list = sql.list(filter.severities.iter().map(|s| Arg::Int(s.rank())));
            conditions.push(format!("i.severity IN ({list})"));
        }
        if !filter.statuses.is_empty() {
            let list = sql.list(filter.statuses.iter().map(|s| Arg::Text(s.as_str().into())));
            conditions.push(format!("i.status IN ({list})"));
        }
        if let Some(ip) = &filter.source_ip {
            let kind = sql.arg(Arg::Text(ObservableKind::Ip.as_str().into()));
            let value = sql.arg(Arg::Text(ip.trim().to_string()));
            conditions.push(format!(
                "i.id IN (SELECT o.incident_id FROM incident_observables o
                           WHERE o.kind = {kind} AND o.value = {value})"
            ));
        }
        if let Some(source) = filter.source.as_deref().map(str::trim) {
            // A source's name (of the finding's source) or a source kind.
            let name = sql.arg(Arg::Text(source.to_string()));
            let kind = sql.arg(Arg::Text(source.to_ascii_lowercase()));
            conditions.push(format!(
                "(i.id IN (SELECT f.incident_id FROM findings f
                            JOIN sources s ON s.id = f.source_id
                           WHERE s.name = {name} AND f.incident_id IS NOT NULL)
                  OR i.id IN (SELECT k.incident_id FROM incident_sources k
                               WHERE k.source_kind = {kind}))"
            ));
        }
        if let Some(text) = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            let pattern = like_pattern(text);
            let mut like = |column: &str| {
                let p = sql.arg(Arg::Text(pattern.clone()));
                format!("LOWER({column}) LIKE {p} ESCAPE '\\'")
            };
            let (title, assignee, observable, ticket) = (
                like("i.title"),
                like("i.assignee"),
                like("o.value"),
                like("tk.number"),
            );
            // A number is also the incident's id.
            let id = match text.trim_start_matches('#').parse::<i64>() {
                Ok(id) => format!(" OR i.id = {}", sql.arg(Arg::Int(id))),
                Err(_) => String::new(),
            };
            conditions.push(format!(
                "({title} OR {assignee}{id}
                  OR i.id IN (SELECT o.incident_id FROM incident_observables o WHERE {observable})
                  OR i.id IN (SELECT tk.incident_id FROM tickets tk WHERE {ticket}))"
            ));
        }
        if let Some((at, id)) = filter.before {
            let at1 = sql.arg(Arg::Int(at.as_micros()));
            let at2 = sql.arg(Arg::Int(at.as_micros()));
            let id = sql.arg(Arg::Int(id));
            conditions.push(format!(
                "(i.updated_at < {at1} OR (i.updated_at = {at2} AND i.id < {id}))"
            ));
        }
        let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
        let limit = sql.arg(Arg::Int(i64::from(limit)));
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        sql.text = format!(
            "{VIEW_SELECT}{where_clause} ORDER BY i.updated_at DESC, i.id DESC LIMIT {limit}"
        );

        let mut tx = self.begin_read("listing incidents").await?;
        let rows = sql.fetch_all(&mut tx, "listing incidents").await?;
        let mut views = rows
            .iter()
            .map(view_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        fill_views(&mut tx, &mut views).await?;
        tx.commit().await.op("listing incidents")?;
        Ok(views)
    }

    /// One incident with its findings (by time observed) and timeline. `scope`: the tenants
    /// the caller may see (`None`: all); another tenant's incident is `None`, like a missing
    /// one.
    pub async fn get_incident(
        &self,
        id: i64,
        scope: Option<&[String]>,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        self.incident_detail(id, scope, None).await
    }

    /// [`Store::get_incident`] with only the first `max_findings` findings (by time
    /// observed); the incident's `finding_count` still counts them all. For readers that need
    /// the incident and a glimpse of its findings: the ticket worker reads the incident at
    /// every update, and an incident may hold thousands of findings with their raw payloads.
    pub async fn get_incident_head(
        &self,
        id: i64,
        scope: Option<&[String]>,
        max_findings: usize,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        self.incident_detail(id, scope, Some(max_findings)).await
    }

    async fn incident_detail(
        &self,
        id: i64,
        scope: Option<&[String]>,
        max_findings: Option<usize>,
    ) -> Result<Option<IncidentDetail>, StoreError> {
        let mut tx = self.begin_read("reading an incident").await?;
        let Some(incident) = load_view(&mut tx, id).await? else {
            return Ok(None);
        };
        if !in_scope(scope, &incident.tenant) {
            return Ok(None);
        }

        let mut sql = String::from(
            "SELECT f.id, s.name AS source, f.source_kind, f.vendor_key, f.observed_at,
                    f.severity, f.title, f.event_type, f.observables, f.raw
               FROM findings f JOIN sources s ON s.id = f.source_id
              WHERE f.incident_id = $1
              ORDER BY f.observed_at, f.id",
        );
        if max_findings.is_some() {
            sql.push_str(" LIMIT $2");
        }
        let limit = max_findings.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut query = sqlx::query(&sql).bind(id);
        if let Some(limit) = limit {
            query = query.bind(limit);
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .op("reading an incident's findings")?;
        let findings = rows
            .iter()
            .map(finding_from_row)
            .collect::<Result<Vec<_>, _>>()?;

        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT at, kind, actor, detail FROM incident_events
              WHERE incident_id = $1 ORDER BY at, id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .op("reading an incident's timeline")?;
        let timeline = rows
            .into_iter()
            .map(|(at, kind, actor, detail)| TimelineEntry {
                at: Timestamp::from_micros(at),
                kind,
                actor,
                detail,
            })
            .collect();
        tx.commit().await.op("reading an incident")?;
        Ok(Some(IncidentDetail {
            incident,
            findings,
            timeline,
        }))
    }

    /// Applies an analyst's change in one write transaction and returns the incident as it
    /// now is (`None` if missing or out of `scope`). Only what differs is written, each change
    /// with its timeline entry. Closing (resolved, closed) frees the subject for a new
    /// incident; reopening claims it back, and is a `Conflict` naming the incident that holds
    /// it if another one was opened meanwhile.
    ///
    /// When ticketing is on, the ticket work the change calls for (close, reopen, update, a
    /// note) is enqueued in the same transaction.
    pub async fn update_incident(
        &self,
        id: i64,
        scope: Option<&[String]>,
        update: &IncidentUpdate,
    ) -> Result<Option<IncidentView>, StoreError> {
        self.update_incident_from(id, scope, update, Origin::Local, None)
            .await
    }

    pub(crate) async fn update_incident_from(
        &self,
        id: i64,
        scope: Option<&[String]>,
        update: &IncidentUpdate,
        origin: Origin,
        journal_entry: Option<&str>,
    ) -> Result<Option<IncidentView>, StoreError> {
        let mut w = self.begin_write("updating an incident").await?;
        let conn = w.conn();
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT i.tenant_id, t.name AS tenant, i.status, i.resolution, i.assignee,
                        i.correlation_key, i.closed_at
                   FROM incidents i JOIN tenants t ON t.id = i.tenant_id
                  WHERE i.id = $1"
            }
            // Lock the incident (not the tenant) until the update commits.
            Backend::Postgres => {
                "SELECT i.tenant_id, t.name AS tenant, i.status, i.resolution, i.assignee,
                        i.correlation_key, i.closed_at
                   FROM incidents i JOIN tenants t ON t.id = i.tenant_id
                  WHERE i.id = $1
                    FOR UPDATE OF i"
            }
        };
        let row = sqlx::query(sql)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .op("reading an incident to update")?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| StoreError::Database {
            op: "reading an incident to update",
            error: e,
        };
        let status: String = row.try_get("status").map_err(read)?;
        let cur = Current {
            tenant_id: row.try_get("tenant_id").map_err(read)?,
            tenant: row.try_get("tenant").map_err(read)?,
            status: status
                .parse()
                .map_err(|e| StoreError::corrupt(format!("incident {id}: {e}")))?,
            resolution: row.try_get("resolution").map_err(read)?,
            assignee: row.try_get("assignee").map_err(read)?,
            correlation_key: row.try_get("correlation_key").map_err(read)?,
            closed_at: row.try_get("closed_at").map_err(read)?,
        };
        if !in_scope(scope, &cur.tenant) {
            return Ok(None);
        }

        let now = Timestamp::now();
        let actor = normalise_text(&update.actor).unwrap_or_else(|| "unknown".to_string());
        let mut events: Vec<(&str, String)> = Vec::new();

        let mut requested = update.status;
        if origin == Origin::Ticket && requested.is_some() {
            // Ticket work still pending carries a newer intent than what the ticket says.
            let pending: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM outbox
                  WHERE incident_id = $1 AND state = 'pending' AND target = 'servicenow'
                  LIMIT 1",
            )
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .op("reading the outbox")?;
            if pending.is_some() {
                requested = None;
            }
        }
        let status = requested.unwrap_or(cur.status);
        let mut closed_at = cur.closed_at;
        if status != cur.status {
            if status.is_open() && !cur.status.is_open() {
                let holder: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM incidents WHERE tenant_id = $1 AND open_key = $2 AND id <> $3",
                )
                .bind(cur.tenant_id)
                .bind(cur.correlation_key.as_str())
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .op("checking the subject of a reopened incident")?;
                if let Some(other) = holder {
                    return Err(reopen_conflict(id, Some(other)));
                }
                closed_at = None;
            } else if !status.is_open() && cur.status.is_open() {
                closed_at = Some(now.as_micros());
            }
            events.push(("status_changed", format!("{} -> {}", cur.status, status)));
        }
        let mut resolution = cur.resolution.clone();
        if let Some(new) = update.resolution.as_deref().map(normalise_text) {
            if new != cur.resolution {
                let detail = format!(
                    "{} -> {}",
                    show(cur.resolution.as_deref()),
                    show(new.as_deref())
                );
                events.push(("resolution_changed", detail));
                resolution = new;
            }
        }
        let mut assignee = cur.assignee.clone();
        if let Some(new) = update.assignee.as_deref().map(normalise_text) {
            if new != cur.assignee {
                let detail = format!(
                    "{} -> {}",
                    show(cur.assignee.as_deref()),
                    show(new.as_deref())
                );
                events.push(("assignee_changed", detail));
                assignee = new;
            }
        }
        let mut comment = update.comment.as_deref().and_then(normalise_text);
        if let Some(entry) = journal_entry {
            // A note taken in from the ticket: once, even if the ticket is read again.
            if !mark_journal_seen(conn, id, entry).await? {
                comment = None;
            }
        }
        if let Some(comment) = &comment {
            events.push(("comment", comment.clone()));
        }

        if !events.is_empty() {
            // open_key follows the status: the correlation key while open, NULL once closed.
            let open_key = status.is_open().then_some(cur.correlation_key.as_str());
            let written = sqlx::query(
                "UPDATE incidents
                    SET status = $2, resolution = $3, assignee = $4, open_key = $5,
                        closed_at = $6, updated_at = $7
                  WHERE id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(resolution.as_deref())
            .bind(assignee.as_deref())
            .bind(open_key)
            .bind(closed_at)
            .bind(now.as_micros())
            .execute(&mut *conn)
            .await
            .op("updating an incident");
            if let Err(e) = written {
                // PostgreSQL: an ingest opened an incident for the subject after our check.
                return Err(if e.is_unique_violation() {
                    reopen_conflict(id, None)
                } else {
                    e
                });
            }
            // What follows the change (timeline, ticket, sinks, XDR, containment, vendor)
            // is written by the helpers the ingest shares, over this transaction.
            let mut tx = Tx::sqlx(conn, self.backend);
            for (kind, detail) in &events {
                add_event(&mut tx, id, now, kind, &actor, detail).await?;
            }
            if origin.mirrors_to_ticket() && ticketing_enabled(&mut tx).await? {
                let fields_changed = resolution != cur.resolution || assignee != cur.assignee;
                let work = work_for_update(
                    cur.status,
                    status,
                    fields_changed,
                    comment.as_deref(),
                    &actor,
                );
                for (kind, payload) in work {
                    enqueue(&mut tx, cur.tenant_id, &cur.tenant, id, kind, payload, now).await?;
                }
            }
            crate::sinks::enqueue_incident(&mut tx, cur.tenant_id, id, now).await?;
            if status != cur.status {
                crate::xdr::on_status_change(&mut tx, cur.tenant_id, id, now).await?;
            }
            if status.is_open() != cur.status.is_open() {
                crate::containment::on_status_change(
                    &mut tx,
                    cur.tenant_id,
                    id,
                    cur.status.is_open(),
                    status.is_open(),
                    now,
                )
                .await?;
            }
            if origin.mirrors_to_vendor() && has_vendor_workflow(&mut tx, id).await? {
                let payload = serde_json::json!({
                    "comment": comment,
                    "actor": actor,
                    "origin": origin.as_str(),
                });
                let kind = OutboxKind::Writeback;
                enqueue(&mut tx, cur.tenant_id, &cur.tenant, id, kind, payload, now).await?;
            }
        }

        let view = load_view(conn, id).await?;
        w.commit_waking("updating an incident").await?;
        Ok(view)
    }
}

fn reopen_conflict(id: i64, holder: Option<i64>) -> StoreError {
    let who = holder.map_or_else(
        || "another incident".to_string(),
        |other| format!("incident {other}"),
    );
    StoreError::Conflict {
        detail: format!(
            "cannot reopen incident {id}: {who} is already open for the same subject; \
             close that one first or keep working in it"
        ),
    }
}

fn finding_from_row(row: &AnyRow) -> Result<FindingView, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading a finding",
        error: e,
    };
    let id: i64 = row.try_get("id").map_err(read)?;
    let kind: String = row.try_get("source_kind").map_err(read)?;
    let source_kind = kind
        .parse::<SourceKind>()
        .map_err(|e| StoreError::corrupt(format!("finding {id}: {e}")))?;
    let rank: i64 = row.try_get("severity").map_err(read)?;
    let severity = Severity::from_rank(rank)
        .ok_or_else(|| StoreError::corrupt(format!("finding {id} has severity rank {rank}")))?;
    let observables: String = row.try_get("observables").map_err(read)?;
    let observables = serde_json::from_str(&observables)
        .map_err(|e| StoreError::corrupt(format!("observables of finding {id}: {e}")))?;
    let raw: String = row.try_get("raw").map_err(read)?;
    // The vendor's bytes are kept verbatim; shown as JSON when they are JSON, else as text.
    let raw = match serde_json::from_str(&raw) {
        Ok(json) => json,
        Err(_) => serde_json::Value::String(raw),
    };
    Ok(FindingView {
        id,
        source: row.try_get("source").map_err(read)?,
        source_kind,
        vendor_key: row.try_get("vendor_key").map_err(read)?,
        observed_at: Timestamp::from_micros(row.try_get("observed_at").map_err(read)?),
        severity,
        title: row.try_get("title").map_err(read)?,
        event_type: row.try_get("event_type").map_err(read)?,
        observables,
        raw,
    })
}
