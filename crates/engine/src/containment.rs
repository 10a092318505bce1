//! Containment through the outbox: isolate a Secure Endpoint computer or move it to a triage
//! group, and undo it when the incident closes.
//!
//! Every change is preceded by a read of the vendor's state, so a retry after an ambiguous
//! failure (the change may have landed) finds it done instead of doing it twice, and a revert
//! undoes only what socbridge did:
//! - **isolate**: `OPTIONS` (405: the computer's policy forbids it, the action fails with the
//!   vendor's words), `GET` (already isolated: by an earlier attempt of ours if the comment
//!   names our incident, else by someone else, and then the revert leaves it isolated), the
//!   unlock code recorded (sealed) *before* the `PUT`, then `pending_start` followed until
//!   `isolated` or a deadline;
//! - **move**: the triage group found by exact name, the computer's current group recorded
//!   *before* the `PATCH`; already in the triage group before socbridge acted means nothing
//!   to revert;
//! - **revert**: `DELETE` isolation unless it is already stopping or stopped; move back to
//!   the recorded group unless the computer is there already or was moved elsewhere since.

use crate::engine::{Engine, SourceClient};
use crate::ticketing::WorkError;
use rand::Rng as _;
use socbridge_connectors::ConnectorError;
use socbridge_connectors::secure_endpoint::SecureEndpointClient;
use socbridge_model::{ActionKind, ActionState};
use socbridge_store::{ActionChange, ActionRecord, OutboxItem, OutboxKind};
use std::time::{Duration, Instant};

/// Unlock codes: the vendor takes up to 24 characters without spaces.
const UNLOCK_CODE_LEN: usize = 12;

fn unlock_aad(action_id: i64) -> Vec<u8> {
    format!("socbridge:action:{action_id}:unlock_code").into_bytes()
}

/// The comment that marks an isolation as socbridge's, for this incident.
fn isolation_marker(action: &ActionRecord) -> String {
    format!("socbridge incident {}", action.incident_id)
}

/// The socbridge incident an isolation's comment names (`socbridge incident <id> (...`), if
/// any; the id is read whole, so incident 7 is not 70.
fn isolating_incident(comment: Option<&str>) -> Option<i64> {
    let rest = comment?.split("socbridge incident ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..]
        .starts_with(" (")
        .then(|| digits.parse().ok())
        .flatten()
}

/// Did this action ask for the isolation the vendor reports? Its comment is
/// `socbridge incident <id> (<tenant>): ...`: the id is matched whole (incident 7 is not 70).
fn isolation_is_ours(comment: Option<&str>, action: &ActionRecord) -> bool {
    isolating_incident(comment) == Some(action.incident_id)
}

/// A vendor refusal that retrying cannot change (the vendor's words), as opposed to a failure
/// to reach it.
fn refusal(e: &ConnectorError) -> Option<String> {
    match e {
        ConnectorError::Http { status, detail, .. }
            if (400..500).contains(status) && ![408, 409, 423, 429].contains(status) =>
        {
            Some(format!("HTTP {status}: {detail}"))
        }
        ConnectorError::NotFound { detail, .. } => Some(format!("not found: {detail}")),
        ConnectorError::Forbidden { detail, .. } => Some(format!(
            "forbidden: {detail} (the API key needs read & write scope)"
        )),
        _ => None,
    }
}

impl Engine {
    /// Does one containment outbox item (`contain` or `release` of one action).
    pub(crate) async fn containment_item(&self, item: &OutboxItem) -> Result<(), WorkError> {
        let id = item
            .payload
            .get("action")
            .and_then(|a| a.as_i64())
            .ok_or_else(|| WorkError::Permanent("the item names no action".into()))?;
        let store = &self.inner.store;
        let Some(action) = store.action(id).await? else {
            return Ok(()); // the incident (or its tenant) is gone
        };
        let Some(src) = store.get_source(&action.tenant, &action.source).await? else {
            let why = format!("source `{}` was removed", action.source);
            if item.kind == OutboxKind::Contain {
                self.record(id, ActionState::Failed, Some(why)).await?;
            }
            return Ok(());
        };
        let client = match self.source_client(&src).await {
            Ok(SourceClient::SecureEndpoint(_, client)) => client,
            Ok(_) => {
                return Err(WorkError::Permanent(format!(
                    "source `{}` is not a Secure Endpoint source",
                    action.source
                )));
            }
            Err(e) => {
                return Err(WorkError::Permanent(format!(
                    "source `{}`: {e}",
                    action.source
                )));
            }
        };
        let result = match (item.kind, action.kind) {
            (OutboxKind::Contain, ActionKind::Isolate) => self.isolate(&client, &action).await,
            (OutboxKind::Contain, ActionKind::Move) => self.move_to_group(&client, &action).await,
            (OutboxKind::Release, ActionKind::Isolate) => {
                self.stop_isolation(&client, &action).await
            }
            (OutboxKind::Release, ActionKind::Move) => self.move_back(&client, &action).await,
            (kind, _) => {
                return Err(WorkError::Permanent(format!(
                    "`{}` is not containment work",
                    kind.as_str()
                )));
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(WorkError::Connector(e)) => match refusal(&e) {
                // The vendor refused for good: the action fails with its reason; the item is
                // done (retrying would be refused the same way).
                Some(why) => {
                    let state = if item.kind == OutboxKind::Contain {
                        ActionState::Failed
                    } else {
                        action.state
                    };
                    self.record(id, state, Some(why)).await?;
                    Ok(())
                }
                None => Err(WorkError::Connector(e)),
            },
            Err(other) => Err(other),
        }
    }

    async fn record(
        &self,
        id: i64,
        state: ActionState,
        reason: Option<String>,
    ) -> Result<(), WorkError> {
        let change = ActionChange {
            state: Some(state),
            reason,
            ..ActionChange::default()
        };
        self.inner.store.update_action(id, &change).await?;
        Ok(())
    }

    async fn isolate(
        &self,
        client: &SecureEndpointClient,
        action: &ActionRecord,
    ) -> Result<(), WorkError> {
        if action.state != ActionState::Planned {
            return Ok(()); // applied by an earlier item, or no longer wanted
        }
        let guid = &action.target;
        // 405 when the computer's policy forbids isolation: a refusal, recorded as such.
        client.isolation_options(guid).await?;
        let now = client.isolation(guid).await?;
        let marker = isolation_marker(action);
        if now.is_on() {
            let ours = isolation_is_ours(now.comment.as_deref(), action);
            if !ours {
                self.wait_for_release_of_other(action, now.comment.as_deref())
                    .await?;
            }
            let change = if ours {
                ActionChange {
                    state: Some(ActionState::Applied),
                    reason: Some(format!("isolation {}", now.status)),
                    ..ActionChange::default()
                }
            } else {
                ActionChange {
                    state: Some(ActionState::Applied),
                    reason: Some(
                        "already isolated before socbridge acted; the release will leave it isolated"
                            .into(),
                    ),
                    preexisting: Some(true),
                    ..ActionChange::default()
                }
            };
            self.save(action.id, &change).await?;
            return Ok(());
        }
        if !now.available {
            self.save(
                action.id,
                &ActionChange {
                    state: Some(ActionState::Failed),
                    reason: Some("isolation is not available on this computer".into()),
                    ..ActionChange::default()
                },
            )
            .await?;
            return Ok(());
        }
        // The unlock code is recorded before the isolation is asked for.
        let code = match self.unlock_code_of(action) {
            Some(code) => code,
            None => {
                let code: String = rand::rng()
                    .sample_iter(rand::distr::Alphanumeric)
                    .take(UNLOCK_CODE_LEN)
                    .map(char::from)
                    .collect();
                let sealed = self.inner.key.seal(code.as_bytes(), &unlock_aad(action.id));
                let change = ActionChange {
                    unlock_code: Some(sealed),
                    ..ActionChange::default()
                };
                self.inner.store.update_action(action.id, &change).await?;
                code
            }
        };
        let host = action.target_label.as_deref().unwrap_or(guid);
        let comment = format!("{marker} ({}): isolated by socbridge", action.tenant);
        let started = client.start_isolation(guid, &comment, &code).await?;
        let status = self.follow_isolation(client, guid, started.status).await;
        self.save(
            action.id,
            &ActionChange {
                state: Some(ActionState::Applied),
                reason: Some(if status == "isolated" {
                    format!("{host} isolated")
                } else {
                    format!("isolation of {host} requested; the vendor still says `{status}`")
                }),
                ..ActionChange::default()
            },
        )
        .await?;
        Ok(())
    }

    /// The computer is isolated for another socbridge incident: when that incident is closed
    /// and its isolation not yet released, this one waits (a retryable error) for the release,
    /// rather than taking the isolation as someone else's and keeping nothing in place once
    /// the release lands.
    async fn wait_for_release_of_other(
        &self,
        action: &ActionRecord,
        comment: Option<&str>,
    ) -> Result<(), WorkError> {
        let Some(other) = isolating_incident(comment) else {
            return Ok(());
        };
        let Some(detail) = self.inner.store.get_incident(other, None).await? else {
            return Ok(());
        };
        let releasing =
            !detail.incident.status.is_open()
                && detail.incident.actions.iter().any(|a| {
                    a.kind == "isolate" && a.target == action.target && a.state == "applied"
                });
        if releasing {
            return Err(WorkError::Vendor {
                detail: format!(
                    "{} is still isolated for socbridge incident {other}, which is closed and \
                     being released; isolating again after that",
                    action.target_label.as_deref().unwrap_or(&action.target)
                ),
                retryable: true,
            });
        }
        Ok(())
    }

    /// Follows `pending_start` until `isolated` or the deadline; returns the last status.
    async fn follow_isolation(
        &self,
        client: &SecureEndpointClient,
        guid: &str,
        mut status: String,
    ) -> String {
        let until = Instant::now() + self.inner.opts.isolation_deadline;
        while status == "pending_start" && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match client.isolation(guid).await {
                Ok(i) => status = i.status,
                Err(_) => break,
            }
        }
        status
    }

    async fn stop_isolation(
        &self,
        client: &SecureEndpointClient,
        action: &ActionRecord,
    ) -> Result<(), WorkError> {
        if action.state != ActionState::Applied {
            return Ok(()); // never applied: nothing to undo
        }
        if action.preexisting {
            self.save(
                action.id,
                &ActionChange {
                    state: Some(ActionState::Reverted),
                    reason: Some("left isolated: it was isolated before socbridge acted".into()),
                    ..ActionChange::default()
                },
            )
            .await?;
            return Ok(());
        }
        let guid = &action.target;
        let now = client.isolation(guid).await?;
        // Only our own isolation is stopped: once it is off, the computer may have been
        // isolated again since (by a later incident, or by someone at the vendor), and that
        // isolation is not this action's to undo.
        let reason = if now.is_off() {
            "isolation stopped".to_string()
        } else if !isolation_is_ours(now.comment.as_deref(), action) {
            format!(
                "left isolated: isolated again since ({})",
                now.comment.as_deref().unwrap_or("no comment")
            )
        } else {
            let comment = format!(
                "{} closed: isolation stopped by socbridge",
                isolation_marker(action)
            );
            client.stop_isolation(guid, &comment).await?;
            "isolation stopped".to_string()
        };
        self.save(
            action.id,
            &ActionChange {
                state: Some(ActionState::Reverted),
                reason: Some(reason),
                ..ActionChange::default()
            },
        )
        .await?;
        Ok(())
    }

    async fn move_to_group(
        &self,
        client: &SecureEndpointClient,
        action: &ActionRecord,
    ) -> Result<(), WorkError> {
        if action.state != ActionState::Planned {
            return Ok(());
        }
        let guid = &action.target;
        let name = action.group_name.clone().unwrap_or_default();
        let group = match &action.group_guid {
            Some(g) => g.clone(),
            None => match client.group_by_name(&name).await? {
                Some(g) => {
                    self.save(
                        action.id,
                        &ActionChange {
                            group_guid: Some(g.guid.clone()),
                            ..ActionChange::default()
                        },
                    )
                    .await?;
                    g.guid
                }
                None => {
                    self.save(
                        action.id,
                        &ActionChange {
                            state: Some(ActionState::Failed),
                            reason: Some(format!(
                                "no group named `{name}` in Secure Endpoint: create it, or fix the tenant's containment policy"
                            )),
                            ..ActionChange::default()
                        },
                    )
                    .await?;
                    return Ok(());
                }
            },
        };
        let computer = client.computer(guid).await?;
        if action.previous_group_guid.is_none() {
            if computer.group_guid == group {
                self.save(
                    action.id,
                    &ActionChange {
                        state: Some(ActionState::Applied),
                        reason: Some(format!(
                            "already in `{name}` before socbridge acted; the release will leave it there"
                        )),
                        preexisting: Some(true),
                        ..ActionChange::default()
                    },
                )
                .await?;
                return Ok(());
            }
            // Where it was, recorded before it moves, so the revert can bring it back.
            let change = ActionChange {
                previous_group_guid: Some(computer.group_guid.clone()),
                ..ActionChange::default()
            };
            self.inner.store.update_action(action.id, &change).await?;
        }
        if computer.group_guid != group {
            client.move_computer(guid, &group).await?;
        }
        self.save(
            action.id,
            &ActionChange {
                state: Some(ActionState::Applied),
                reason: Some(format!("moved to `{name}`")),
                ..ActionChange::default()
            },
        )
        .await?;
        Ok(())
    }

    async fn move_back(
        &self,
        client: &SecureEndpointClient,
        action: &ActionRecord,
    ) -> Result<(), WorkError> {
        if action.state != ActionState::Applied {
            return Ok(());
        }
        let (Some(previous), false) = (&action.previous_group_guid, action.preexisting) else {
            self.save(
                action.id,
                &ActionChange {
                    state: Some(ActionState::Reverted),
                    reason: Some("left in its group: it was there before socbridge acted".into()),
                    ..ActionChange::default()
                },
            )
            .await?;
            return Ok(());
        };
        let computer = client.computer(&action.target).await?;
        let reason = if &computer.group_guid == previous {
            "back in its group".to_string()
        } else if action.group_guid.as_ref() != Some(&computer.group_guid) {
            "moved elsewhere since; left where it is".to_string()
        } else {
            client.move_computer(&action.target, previous).await?;
            "moved back to its group".to_string()
        };
        self.save(
            action.id,
            &ActionChange {
                state: Some(ActionState::Reverted),
                reason: Some(reason),
                ..ActionChange::default()
            },
        )
        .await?;
        Ok(())
    }

    /// Records a change. A failure to record fails the item, which is tried again: the next
    /// attempt reads the vendor's state again and records it then.
    async fn save(&self, id: i64, change: &ActionChange) -> Result<(), WorkError> {
        self.inner.store.update_action(id, change).await?;
        Ok(())
    }

    fn unlock_code_of(&self, action: &ActionRecord) -> Option<String> {
        let sealed = action.unlock_code.as_deref()?;
        let plain = self.inner.key.open(sealed, &unlock_aad(action.id)).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    /// The unlock code of an isolation, for an administrator (`None` if there is none).
    pub async fn unlock_code(&self, action_id: i64) -> Result<Option<String>, crate::EngineError> {
        let action = self.inner.store.action(action_id).await?;
        Ok(action.and_then(|a| self.unlock_code_of(&a)))
    }
}

#[cfg(test)]
mod tests {
    use super::isolating_incident;

    #[test]
    fn the_isolating_incident_is_read_whole_from_our_comment_only() {
        let ours = |id: i64| format!("socbridge incident {id} (acme): isolated by socbridge");
        assert_eq!(isolating_incident(Some(&ours(7))), Some(7));
        assert_eq!(isolating_incident(Some(&ours(70))), Some(70));
        assert_ne!(isolating_incident(Some(&ours(70))), Some(7));
        // The release's own comment, someone else's, none.
        assert_eq!(
            isolating_incident(Some("socbridge incident 7 closed: isolation stopped")),
            None
        );
        assert_eq!(isolating_incident(Some("isolated by the SOC lead")), None);
        assert_eq!(isolating_incident(None), None);
    }
}
