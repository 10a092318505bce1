//! Containment state: each tenant's policy and the actions taken on endpoints.
//!
//! Invariants kept here:
//! - An action is recorded (`planned`) and its `contain` outbox item written in the
//!   transaction that calls for it: the ingest that opens or grows a qualifying incident, or
//!   an analyst's `contain`. Nothing is attempted that is not recorded first.
//! - One action of a kind per incident and computer (a unique key): a page read twice, a
//!   re-plan or two replicas cannot make a second one.
//! - Closing an incident, from any side, enqueues the `release` of its planned and applied
//!   actions that revert on close, in the closing transaction; reopening re-plans them only
//!   when the policy says so.
//! - The unlock code is stored sealed (opaque bytes here).

use crate::db::Tx;
use crate::error::ResultExt as _;
use crate::incidents::{Arg, Sql};
use crate::ingest::add_event;
use crate::tickets::{OutboxKind, insert_outbox};
use crate::{Store, StoreError};
use socbridge_model::{
    ActionKind, ActionState, ActionView, ContainmentPolicy, Decision, IncidentView, Severity,
    SourceKind, Timestamp,
};
use sqlx::{AnyConnection, Row as _};
use std::collections::HashMap;

/// The prefix of the correlation key of an incident about one Secure Endpoint computer.
const COMPUTER_KEY: &str = "secure_endpoint:computer:";

/// An action as the worker needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub id: i64,
    pub tenant: String,
    pub incident_id: i64,
    pub source: String,
    pub kind: ActionKind,
    pub target: String,
    pub target_label: Option<String>,
    pub state: ActionState,
    pub reason: Option<String>,
    pub group_name: Option<String>,
    pub group_guid: Option<String>,
    pub previous_group_guid: Option<String>,
    /// Sealed; opaque to the store.
    pub unlock_code: Option<Vec<u8>>,
    /// The computer was already in the target state before socbridge acted: the revert
    /// leaves it so.
    pub preexisting: bool,
    pub manual: bool,
}

/// What the worker learned, to record. `None` members keep what is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionChange {
    pub state: Option<ActionState>,
    pub reason: Option<String>,
    pub group_guid: Option<String>,
    pub previous_group_guid: Option<String>,
    pub unlock_code: Option<Vec<u8>>,
    pub preexisting: Option<bool>,
}

/// What an analyst asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualAction {
    Isolate,
    MoveTo(String),
}

/// Incident, state, kind, hostname and target of an action, for its timeline entry.
type ActionHead = (i64, String, String, Option<String>, String);

const ACTION_COLUMNS: &str = "a.id, t.name AS tenant, a.incident_id, a.source, a.kind, a.target,
        a.target_label, a.state, a.reason, a.group_name, a.group_guid, a.previous_group_guid,
        a.unlock_code, a.preexisting, a.manual, a.created_at, a.updated_at";

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<ActionRecord, StoreError> {
    let read = |e| StoreError::Database {
        op: "reading an action",
        error: e,
    };
    let kind: String = row.try_get("kind").map_err(read)?;
    let state: String = row.try_get("state").map_err(read)?;
    Ok(ActionRecord {
        id: row.try_get("id").map_err(read)?,
        tenant: row.try_get("tenant").map_err(read)?,
        incident_id: row.try_get("incident_id").map_err(read)?,
        source: row.try_get("source").map_err(read)?,
        kind: ActionKind::parse(&kind)
            .ok_or_else(|| StoreError::corrupt(format!("unknown action kind `{kind}`")))?,
        target: row.try_get("target").map_err(read)?,
        target_label: row.try_get("target_label").map_err(read)?,
        state: ActionState::parse(&state)
            .ok_or_else(|| StoreError::corrupt(format!("unknown action state `{state}`")))?,
        reason: row.try_get("reason").map_err(read)?,
        group_name: row.try_get("group_name").map_err(read)?,
        group_guid: row.try_get("group_guid").map_err(read)?,
        previous_group_guid: row.try_get("previous_group_guid").map_err(read)?,
        unlock_code: row.try_get("unlock_code").map_err(read)?,
        preexisting: row.try_get::<i64, _>("preexisting").map_err(read)? != 0,
        manual: row.try_get::<i64, _>("manual").map_err(read)? != 0,
    })
}

fn view_from_row(row: &sqlx::any::AnyRow) -> Result<ActionView, StoreError> {
    let r = record_from_row(row)?;
    let read = |e| StoreError::Database {
        op: "reading an action",
        error: e,
    };
    Ok(ActionView {
        id: r.id,
        kind: r.kind.as_str().to_string(),
        state: r.state.as_str().to_string(),
        target: r.target,
        target_label: r.target_label,
        group: r.group_name,
        reason: r.reason,
        manual: r.manual,
        created_at: Timestamp::from_micros(row.try_get("created_at").map_err(read)?),
        updated_at: Timestamp::from_micros(row.try_get("updated_at").map_err(read)?),
    })
}

/// Fills the actions of listed incidents (one query per chunk of ids).
pub(crate) async fn fill_actions(
    conn: &mut AnyConnection,
    ids: &[i64],
    index: &HashMap<i64, usize>,
    views: &mut [IncidentView],
) -> Result<(), StoreError> {
    let mut sql = Sql::default();
    let list = sql.list(ids.iter().map(|id| Arg::Int(*id)));
    sql.text = format!(
        "SELECT {ACTION_COLUMNS} FROM actions a JOIN tenants t ON t.id = a.tenant_id
          WHERE a.incident_id IN ({list}) ORDER BY a.id"
    );
    for row in sql.fetch_all(conn, "reading incident actions").await? {
        let v = view_from_row(&row)?;
        let incident: i64 = row.try_get("incident_id").op("reading incident actions")?;
        if let Some(&i) = index.get(&incident) {
            views[i].actions.push(v);
        }
    }
    Ok(())
}

/// A computer an ingest saw in an incident, for the policy to decide on.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub incident_id: i64,
    pub computer_guid: String,
    pub hostname: Option<String>,
}

/// Reads the tenant's policy inside the caller's transaction.
pub(crate) async fn policy_of(
    tx: &mut Tx<'_>,
    tenant_id: i64,
) -> Result<Option<ContainmentPolicy>, StoreError> {
    let text: Option<(Option<String>,)> = tx
        .fetch_optional(
            "reading the containment policy",
            "SELECT containment FROM tenants WHERE id = $1",
            &[tenant_id.into()],
        )
        .await?;
    match text.and_then(|(t,)| t) {
        None => Ok(None),
        Some(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| StoreError::corrupt(format!("containment policy: {e}"))),
    }
}

/// Applies the tenant's policy to the computers an ingest put into incidents: records each
/// action the policy takes (planned, with its `contain` item) or skips on purpose (deny
/// pattern, dry run), once per incident and computer.
pub(crate) async fn plan_for_ingest(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    source: &str,
    candidates: &[Candidate],
    now: Timestamp,
) -> Result<(), StoreError> {
    if candidates.is_empty() {
        return Ok(());
    }
    let Some(policy) = policy_of(tx, tenant_id).await? else {
        return Ok(());
    };
    for c in candidates {
        let row: Option<(i64, String)> = tx
            .fetch_optional(
                "reading an incident to contain",
                "SELECT severity, status FROM incidents WHERE id = $1",
                &[c.incident_id.into()],
            )
            .await?;
        let Some((rank, status)) = row else { continue };
        let open = status
            .parse::<socbridge_model::IncidentStatus>()
            .is_ok_and(|s| s.is_open());
        if !open {
            continue;
        }
        let severity = Severity::from_rank(rank).unwrap_or(Severity::Informational);
        let sources: Vec<SourceKind> = tx
            .fetch_all::<(String,)>(
                "reading an incident's sources",
                "SELECT source_kind FROM incident_sources WHERE incident_id = $1",
                &[c.incident_id.into()],
            )
            .await?
            .into_iter()
            .filter_map(|(k,)| k.parse().ok())
            .collect();
        let host = c.hostname.as_deref().unwrap_or(&c.computer_guid);
        let decision = policy.decide(severity, &sources, host);
        let (kind, state, reason) = match decision {
            Decision::NotCovered => continue,
            Decision::Act(kind) => (kind, ActionState::Planned, None),
            Decision::Skip(kind, why) => (kind, ActionState::Skipped, Some(why)),
        };
        let id = insert_action(
            tx,
            tenant_id,
            c,
            source,
            kind,
            state,
            reason.as_deref(),
            policy.group(),
            policy.revert_on_close,
            false,
            now,
        )
        .await?;
        if let Some(id) = id {
            let detail = match &reason {
                Some(why) => format!("{kind} {host}: skipped ({why})"),
                None => format!("{kind} {host}: planned by the tenant's policy"),
            };
            add_event(tx, c.incident_id, now, "containment", "socbridge", &detail).await?;
            if state == ActionState::Planned {
                enqueue(tx, tenant_id, c.incident_id, OutboxKind::Contain, id, now).await?;
            }
        }
    }
    Ok(())
}

/// Inserts an action unless one of its kind exists for the incident and computer; returns
/// the new id.
#[allow(clippy::too_many_arguments)]
async fn insert_action(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    c: &Candidate,
    source: &str,
    kind: ActionKind,
    state: ActionState,
    reason: Option<&str>,
    group: Option<&str>,
    revert_on_close: bool,
    manual: bool,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    let id: Option<(i64,)> = tx
        .fetch_optional(
            "recording an action",
            "INSERT INTO actions (tenant_id, incident_id, source, kind, target, target_label,
                                  state, reason, group_name, revert_on_close, manual,
                                  created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             ON CONFLICT (incident_id, kind, target) DO NOTHING
             RETURNING id",
            &[
                tenant_id.into(),
                c.incident_id.into(),
                source.into(),
                kind.as_str().into(),
                c.computer_guid.as_str().into(),
                c.hostname.as_deref().into(),
                state.as_str().into(),
                reason.into(),
                group.into(),
                i64::from(revert_on_close).into(),
                i64::from(manual).into(),
                now.as_micros().into(),
            ],
        )
        .await?;
    Ok(id.map(|(id,)| id))
}

async fn enqueue(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    kind: OutboxKind,
    action_id: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    let payload = serde_json::json!({ "action": action_id });
    insert_outbox(tx, tenant_id, incident_id, kind, &payload, now).await
}

/// On a status change of an incident, inside the updating transaction: closing releases what
/// reverts on close; reopening re-plans what the policy re-applies.
pub(crate) async fn on_status_change(
    tx: &mut Tx<'_>,
    tenant_id: i64,
    incident_id: i64,
    was_open: bool,
    is_open: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    if was_open && !is_open {
        let ids: Vec<(i64,)> = tx
            .fetch_all(
                "reading actions to release",
                "SELECT id FROM actions
                  WHERE incident_id = $1 AND revert_on_close = 1
                    AND state IN ('planned', 'applied')
                  ORDER BY id",
                &[incident_id.into()],
            )
            .await?;
        for (id,) in ids {
            enqueue(tx, tenant_id, incident_id, OutboxKind::Release, id, now).await?;
        }
    } else if !was_open && is_open {
        let reapply = policy_of(tx, tenant_id)
            .await?
            .is_some_and(|p| p.reapply_on_reopen);
        if reapply {
            let ids: Vec<(i64,)> = tx
                .fetch_all(
                    "reading actions to re-apply",
                    "SELECT id FROM actions
                      WHERE incident_id = $1 AND manual = 0 AND state = 'reverted'
                      ORDER BY id",
                    &[incident_id.into()],
                )
                .await?;
            for (id,) in ids {
                set_state(
                    tx,
                    id,
                    ActionState::Planned,
                    Some("re-applied on reopen"),
                    now,
                )
                .await?;
                enqueue(tx, tenant_id, incident_id, OutboxKind::Contain, id, now).await?;
            }
        }
    }
    Ok(())
}

async fn set_state(
    tx: &mut Tx<'_>,
    id: i64,
    state: ActionState,
    reason: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    tx.execute(
        "updating an action",
        "UPDATE actions SET state = $2, reason = $3, updated_at = $4 WHERE id = $1",
        &[
            id.into(),
            state.as_str().into(),
            reason.into(),
            now.as_micros().into(),
        ],
    )
    .await?;
    Ok(())
}

impl Store {
    /// Sets (or with `None` removes) a tenant's containment policy. `false` if no such tenant.
    pub async fn set_containment_policy(
        &self,
        tenant: &str,
        policy: Option<&ContainmentPolicy>,
    ) -> Result<bool, StoreError> {
        let text = policy
            .map(|p| serde_json::to_string(p).map_err(|e| StoreError::corrupt(e.to_string())))
            .transpose()?;
        let mut w = self.begin_write("saving a containment policy").await?;
        let done = sqlx::query("UPDATE tenants SET containment = $2 WHERE name = $1")
            .bind(tenant)
            .bind(text)
            .execute(&mut *w.conn())
            .await
            .op("saving a containment policy")?;
        w.commit("saving a containment policy").await?;
        Ok(done.rows_affected() > 0)
    }

    /// A tenant's containment policy (`None`: none, or no such tenant).
    pub async fn containment_policy(
        &self,
        tenant: &str,
    ) -> Result<Option<ContainmentPolicy>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .op("reading a containment policy")?;
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .op("reading a containment policy")?;
        match id {
            None => Ok(None),
            Some(id) => policy_of(&mut Tx::sqlx(&mut conn, self.backend), id).await,
        }
    }

    /// One action, for the worker.
    pub async fn action(&self, id: i64) -> Result<Option<ActionRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions a JOIN tenants t ON t.id = a.tenant_id
              WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .op("reading an action")?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// The actions of an incident, oldest first.
    pub async fn actions_of_incident(
        &self,
        incident_id: i64,
    ) -> Result<Vec<ActionView>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions a JOIN tenants t ON t.id = a.tenant_id
              WHERE a.incident_id = $1 ORDER BY a.id"
        ))
        .bind(incident_id)
        .fetch_all(&self.pool)
        .await
        .op("reading an incident's actions")?;
        rows.iter().map(view_from_row).collect()
    }

    /// Records what the worker learned about an action, with a timeline entry when its state
    /// changes.
    pub async fn update_action(&self, id: i64, change: &ActionChange) -> Result<(), StoreError> {
        let mut w = self.begin_write("updating an action").await?;
        let conn = w.conn();
        let now = Timestamp::now();
        let before: Option<ActionHead> = sqlx::query_as(
            "SELECT incident_id, state, kind, target_label, target FROM actions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .op("updating an action")?;
        let Some((incident_id, state, kind, label, target)) = before else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE actions
                SET state = COALESCE($2, state), reason = COALESCE($3, reason),
                    group_guid = COALESCE($4, group_guid),
                    previous_group_guid = COALESCE($5, previous_group_guid),
                    unlock_code = COALESCE($6, unlock_code),
                    preexisting = COALESCE($7, preexisting), updated_at = $8
              WHERE id = $1",
        )
        .bind(id)
        .bind(change.state.map(ActionState::as_str))
        .bind(change.reason.as_deref())
        .bind(change.group_guid.as_deref())
        .bind(change.previous_group_guid.as_deref())
        .bind(change.unlock_code.as_deref())
        .bind(change.preexisting.map(i64::from))
        .bind(now.as_micros())
        .execute(&mut *conn)
        .await
        .op("updating an action")?;
        if let Some(new) = change.state.filter(|s| s.as_str() != state) {
            let host = label.unwrap_or(target);
            let mut detail = format!("{kind} {host}: {state} -> {new}");
            if let Some(why) = &change.reason {
                detail.push_str(&format!(" ({why})"));
            }
            add_event(
                &mut Tx::sqlx(conn, self.backend),
                incident_id,
                now,
                "containment",
                "socbridge",
                &detail,
            )
            .await?;
        }
        w.commit("updating an action").await
    }

    /// An analyst's containment of an incident's computer, with the tenant's host rules (a
    /// deny pattern still refuses; dry run records what would be done). An action of the same
    /// kind already planned or applied is returned as it is; one reverted, failed or skipped
    /// is planned again. `None` if the incident is missing or out of `scope`.
    pub async fn contain_incident(
        &self,
        incident_id: i64,
        scope: Option<&[String]>,
        what: &ManualAction,
        actor: &str,
    ) -> Result<Option<ActionView>, StoreError> {
        let mut w = self.begin_write("containing an incident").await?;
        let conn = w.conn();
        let row: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT i.tenant_id, t.name, i.correlation_key
               FROM incidents i JOIN tenants t ON t.id = i.tenant_id WHERE i.id = $1",
        )
        .bind(incident_id)
        .fetch_optional(&mut *conn)
        .await
        .op("reading an incident to contain")?;
        let Some((tenant_id, tenant, key)) = row else {
            return Ok(None);
        };
        if scope.is_some_and(|s| !s.contains(&tenant)) {
            return Ok(None);
        }
        let Some(guid) = key.strip_prefix(COMPUTER_KEY) else {
            return Err(StoreError::Conflict {
                detail: format!(
                    "incident {incident_id} is not about a Secure Endpoint computer; only those can be contained"
                ),
            });
        };
        // The computer's hostname and the source that saw it, from its newest finding.
        let seen: Option<(String, String)> = sqlx::query_as(
            "SELECT s.name, f.observables FROM findings f JOIN sources s ON s.id = f.source_id
              WHERE f.incident_id = $1 AND s.kind = 'secure_endpoint'
              ORDER BY f.id DESC LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(&mut *conn)
        .await
        .op("reading an incident's computer")?;
        let Some((source, observables)) = seen else {
            return Err(StoreError::Conflict {
                detail: format!(
                    "incident {incident_id} has no finding of a Secure Endpoint source left to act through"
                ),
            });
        };
        let hostname = serde_json::from_str::<Vec<socbridge_model::Observable>>(&observables)
            .ok()
            .and_then(|obs| {
                obs.into_iter()
                    .find(|o| o.kind == socbridge_model::ObservableKind::Hostname)
                    .map(|o| o.value)
            });
        let (kind, group) = match what {
            ManualAction::Isolate => (ActionKind::Isolate, None),
            ManualAction::MoveTo(g) => (ActionKind::Move, Some(g.clone())),
        };
        let policy = policy_of(&mut Tx::sqlx(conn, self.backend), tenant_id)
            .await?
            .unwrap_or_default();
        let host = hostname.clone().unwrap_or_else(|| guid.to_string());
        let (state, reason) = match policy.host_decision(kind, &host) {
            Decision::Skip(_, why) => (ActionState::Skipped, Some(why)),
            _ => (ActionState::Planned, None),
        };
        let now = Timestamp::now();
        let candidate = Candidate {
            incident_id,
            computer_guid: guid.to_string(),
            hostname,
        };
        let existing: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, state FROM actions WHERE incident_id = $1 AND kind = $2 AND target = $3",
        )
        .bind(incident_id)
        .bind(kind.as_str())
        .bind(guid)
        .fetch_optional(&mut *conn)
        .await
        .op("reading an action")?;
        // The action, and whether this request (re-)planned it: one already planned or
        // applied is under way and is not asked for again.
        let (id, requested) = match existing {
            Some((id, s)) if s == "planned" || s == "applied" => (id, false),
            Some((id, _)) => {
                sqlx::query(
                    "UPDATE actions SET state = $2, reason = $3, group_name = $4, manual = 1,
                            group_guid = NULL, updated_at = $5
                      WHERE id = $1",
                )
                .bind(id)
                .bind(state.as_str())
                .bind(reason.as_deref())
                .bind(group.as_deref())
                .bind(now.as_micros())
                .execute(&mut *conn)
                .await
                .op("re-planning an action")?;
                (id, true)
            }
            None => {
                let id = insert_action(
                    &mut Tx::sqlx(conn, self.backend),
                    tenant_id,
                    &candidate,
                    &source,
                    kind,
                    state,
                    reason.as_deref(),
                    group.as_deref(),
                    true,
                    true,
                    now,
                )
                .await?
                .ok_or_else(|| StoreError::corrupt("an action appeared while planning it"))?;
                (id, true)
            }
        };
        if requested && state == ActionState::Planned {
            let mut tx = Tx::sqlx(conn, self.backend);
            enqueue(
                &mut tx,
                tenant_id,
                incident_id,
                OutboxKind::Contain,
                id,
                now,
            )
            .await?;
        }
        let detail = match &reason {
            Some(why) => format!("{kind} {host}: refused ({why})"),
            None => format!("{kind} {host}: requested"),
        };
        add_event(
            &mut Tx::sqlx(conn, self.backend),
            incident_id,
            now,
            "containment",
            actor,
            &detail,
        )
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions a JOIN tenants t ON t.id = a.tenant_id
              WHERE a.id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .op("reading an action")?;
        let view = view_from_row(&row)?;
        w.commit_waking("containing an incident").await?;
        Ok(Some(view))
    }

    /// An analyst's release: enqueues the revert of every planned or applied action of the
    /// incident. Returns how many, or `None` if the incident is missing or out of `scope`.
    pub async fn release_incident(
        &self,
        incident_id: i64,
        scope: Option<&[String]>,
        actor: &str,
    ) -> Result<Option<usize>, StoreError> {
        let mut w = self.begin_write("releasing an incident").await?;
        let conn = w.conn();
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT i.tenant_id, t.name FROM incidents i JOIN tenants t ON t.id = i.tenant_id
              WHERE i.id = $1",
        )
        .bind(incident_id)
        .fetch_optional(&mut *conn)
        .await
        .op("reading an incident to release")?;
        let Some((tenant_id, tenant)) = row else {
            return Ok(None);
        };
        if scope.is_some_and(|s| !s.contains(&tenant)) {
            return Ok(None);
        }
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM actions WHERE incident_id = $1 AND state IN ('planned', 'applied')
              ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&mut *conn)
        .await
        .op("reading actions to release")?;
        let now = Timestamp::now();
        for id in &ids {
            enqueue(
                &mut Tx::sqlx(conn, self.backend),
                tenant_id,
                incident_id,
                OutboxKind::Release,
                *id,
                now,
            )
            .await?;
        }
        if !ids.is_empty() {
            add_event(
                &mut Tx::sqlx(conn, self.backend),
                incident_id,
                now,
                "containment",
                actor,
                &format!("release of {} action(s) requested", ids.len()),
            )
            .await?;
        }
        w.commit_waking("releasing an incident").await?;
        Ok(Some(ids.len()))
    }
}
