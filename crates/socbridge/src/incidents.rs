//! `socbridge incidents list|get|update|contain|release`.

use crate::bad_input;
use crate::cli::{Cli, IncidentsCommand, ListArgs, Output, UpdateArgs};
use crate::commands::table;
use socbridge_engine::Engine;
use socbridge_model::{
    IncidentDetail, IncidentFilter, IncidentStatus, IncidentUpdate, IncidentView, Severity,
    Timestamp,
};
use socbridge_store::ManualAction;
use std::collections::BTreeMap;
use std::process::ExitCode;

pub async fn run(cli: &Cli, engine: &Engine, cmd: &IncidentsCommand) -> anyhow::Result<ExitCode> {
    let store = engine.store();
    match cmd {
        IncidentsCommand::List(args) => {
            let filter = filter_from_args(args, Timestamp::now())?;
            let incidents = store.list_incidents(&filter).await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&incidents)?),
                Output::Table => print_list(&incidents),
            }
        }
        IncidentsCommand::Get { id } => {
            let detail = store
                .get_incident(*id, None)
                .await?
                .ok_or_else(|| bad_input(format!("no incident with id {id}")))?;
            // The ticket's sync history: every piece of ticket work and where it stands.
            let work = store.outbox_of_incident(*id).await?;
            // Unlock codes of isolations: the CLI holds the master key, so it is an admin.
            let codes = unlock_codes(engine, &detail.incident).await?;
            // Its Cisco XDR incident, when the tenant's XDR sink made one.
            let xdr = store.xdr_incident(*id).await?;
            match cli.output {
                Output::Json => {
                    let mut v = serde_json::to_value(&detail)?;
                    insert_unlock_codes(&mut v, &codes);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("ticket_work".into(), serde_json::to_value(&work)?);
                        if let Some(x) = &xdr {
                            obj.insert("xdr".into(), serde_json::to_value(x)?);
                        }
                    }
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Output::Table => {
                    print_detail(&detail, &codes);
                    if let Some(x) = &xdr {
                        println!(
                            "XDR incident: {} ({})",
                            x.xdr_id.as_deref().unwrap_or("not yet created"),
                            x.status.as_deref().unwrap_or("-")
                        );
                    }
                    print_ticket_work(&work);
                }
            }
        }
        IncidentsCommand::Update(args) => {
            let update = update_from_args(args)?;
            let view = store
                .update_incident(args.id, None, &update)
                .await
                .map_err(|e| match e {
                    socbridge_store::StoreError::Conflict { detail } => bad_input(detail),
                    other => other.into(),
                })?
                .ok_or_else(|| bad_input(format!("no incident with id {}", args.id)))?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&view)?),
                Output::Table => println!(
                    "incident {} updated: status {}, severity {}",
                    view.id, view.status, view.severity
                ),
            }
        }
        IncidentsCommand::Contain(args) => {
            let what = match &args.move_to {
                Some(g) if g.trim().is_empty() => {
                    return Err(bad_input("--move-to needs a group name"));
                }
                Some(g) => ManualAction::MoveTo(g.trim().to_string()),
                None => ManualAction::Isolate,
            };
            let action = store
                .contain_incident(args.id, None, &what, &actor())
                .await
                .map_err(conflict_is_bad_input)?
                .ok_or_else(|| bad_input(format!("no incident with id {}", args.id)))?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&action)?),
                Output::Table => println!(
                    "incident {}: {} {} is {}{}; `socbridge serve` carries it out",
                    args.id,
                    action.kind,
                    action.target_label.as_deref().unwrap_or(&action.target),
                    action.state,
                    action
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ),
            }
        }
        IncidentsCommand::Release { id } => {
            let n = store
                .release_incident(*id, None, &actor())
                .await?
                .ok_or_else(|| bad_input(format!("no incident with id {id}")))?;
            match cli.output {
                Output::Json => println!("{}", serde_json::json!({"incident": id, "releases": n})),
                Output::Table => println!(
                    "incident {id}: {n} action(s) to undo queued; `socbridge serve` carries them out"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The unlock codes of an incident's isolations, by action id. For administrators only (the
/// CLI, an admin token): a code lifts the isolation at the computer itself.
pub async fn unlock_codes(
    engine: &Engine,
    incident: &IncidentView,
) -> Result<BTreeMap<i64, String>, socbridge_engine::EngineError> {
    let mut codes = BTreeMap::new();
    for a in incident.actions.iter().filter(|a| a.kind == "isolate") {
        if let Some(code) = engine.unlock_code(a.id).await? {
            codes.insert(a.id, code);
        }
    }
    Ok(codes)
}

/// Adds `unlock_code` to each action of an incident's JSON that has one in `codes`.
pub fn insert_unlock_codes(incident: &mut serde_json::Value, codes: &BTreeMap<i64, String>) {
    let Some(actions) = incident
        .pointer_mut("/actions")
        .and_then(|a| a.as_array_mut())
    else {
        return;
    };
    for a in actions {
        let code = a["id"].as_i64().and_then(|id| codes.get(&id));
        if let (Some(code), Some(obj)) = (code, a.as_object_mut()) {
            obj.insert("unlock_code".into(), code.clone().into());
        }
    }
}

fn conflict_is_bad_input(e: socbridge_store::StoreError) -> anyhow::Error {
    match e {
        socbridge_store::StoreError::Conflict { detail } => bad_input(detail),
        other => other.into(),
    }
}

/// Builds the list filter from the flags; every bad value is named.
pub fn filter_from_args(args: &ListArgs, now: Timestamp) -> anyhow::Result<IncidentFilter> {
    let since = args
        .since
        .as_deref()
        .map(|s| parse_since(s, now))
        .transpose()?;
    let severities = args
        .severity
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse::<Severity>()
                .map_err(|e| bad_input(format!("--severity: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let statuses = args
        .status
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.parse::<IncidentStatus>()
                .map_err(|e| bad_input(format!("--status: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(ip) = &args.source_ip {
        ip.parse::<std::net::IpAddr>()
            .map_err(|_| bad_input(format!("--source-ip: `{ip}` is not an IP address")))?;
    }
    Ok(IncidentFilter {
        tenants: args
            .tenant
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
        since,
        severities,
        statuses,
        source_ip: args.source_ip.clone(),
        source: nonblank(&args.source),
        text: nonblank(&args.text),
        limit: Some(args.limit),
        ..IncidentFilter::default()
    })
}

/// A text filter, trimmed; blank is no filter.
pub fn nonblank(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// `24h`, `90m`, `2d` back from `now`, or an RFC 3339 time (`socbridge_model::parse_since`).
pub fn parse_since(s: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    socbridge_model::parse_since(s, now).map_err(|e| bad_input(format!("--since: {e}")))
}

fn update_from_args(args: &UpdateArgs) -> anyhow::Result<IncidentUpdate> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            s.parse::<IncidentStatus>()
                .map_err(|e| bad_input(format!("--status: {e}")))
        })
        .transpose()?;
    let update = IncidentUpdate {
        status,
        resolution: args.resolution.clone(),
        assignee: args.assignee.clone(),
        comment: args.comment.clone(),
        actor: actor(),
    };
    if update.is_empty() {
        return Err(bad_input(
            "nothing to update: give at least one of --status, --resolution, --assignee, --comment",
        ));
    }
    Ok(update)
}

/// Who is making a change from the CLI, for the timeline.
fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

fn print_list(incidents: &[IncidentView]) {
    let mut t = table(&[
        "ID", "TENANT", "SEVERITY", "STATUS", "FINDINGS", "UPDATED", "TITLE",
    ]);
    for i in incidents {
        t.add_row(vec![
            i.id.to_string(),
            i.tenant.clone(),
            i.severity.to_string(),
            i.status.to_string(),
            i.finding_count.to_string(),
            i.updated_at.to_rfc3339_seconds(),
            i.title.clone(),
        ]);
    }
    println!("{t}");
    println!("{} incident(s)", incidents.len());
}

fn print_ticket_work(work: &[socbridge_store::OutboxItem]) {
    if work.is_empty() {
        return;
    }
    println!("\nticket work ({}):", work.len());
    let mut t = table(&["ITEM", "KIND", "STATE", "ATTEMPTS", "QUEUED", "LAST ERROR"]);
    for w in work {
        t.add_row(vec![
            w.id.to_string(),
            w.kind.as_str().to_string(),
            w.state.clone(),
            w.attempts.to_string(),
            w.created_at.to_rfc3339_seconds(),
            w.last_error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

fn print_detail(d: &IncidentDetail, codes: &std::collections::BTreeMap<i64, String>) {
    let i = &d.incident;
    println!("incident {}  [{}]  {}", i.id, i.tenant, i.title);
    println!("severity: {}   status: {}", i.severity, i.status);
    if let Some(a) = &i.assignee {
        println!("assignee: {a}");
    }
    if let Some(r) = &i.resolution {
        println!("resolution: {r}");
    }
    let sources: Vec<_> = i.sources.iter().map(|s| s.to_string()).collect();
    println!("sources: {}", sources.join(", "));
    println!(
        "created: {}   updated: {}   first seen: {}   last seen: {}",
        i.created_at.to_rfc3339_seconds(),
        i.updated_at.to_rfc3339_seconds(),
        i.first_seen.to_rfc3339_seconds(),
        i.last_seen.to_rfc3339_seconds()
    );
    match &i.ticket {
        Some(tk) => println!(
            "ticket: {} {} ({}) {}",
            tk.system, tk.number, tk.state, tk.url
        ),
        None => println!("ticket: none"),
    }
    if !i.actions.is_empty() {
        println!("\ncontainment:");
        let mut t = table(&["ACTION", "KIND", "HOST", "STATE", "REASON", "UNLOCK CODE"]);
        for a in &i.actions {
            let kind = match &a.group {
                Some(g) => format!("{} to {g}", a.kind),
                None => a.kind.clone(),
            };
            t.add_row(vec![
                a.id.to_string(),
                kind,
                a.target_label.clone().unwrap_or_else(|| a.target.clone()),
                a.state.clone(),
                a.reason.clone().unwrap_or_default(),
                codes.get(&a.id).cloned().unwrap_or_default(),
            ]);
        }
        println!("{t}");
    }
    println!("\nobservables:");
    let mut t = table(&["TYPE", "VALUE"]);
    for o in &i.observables {
        t.add_row(vec![o.kind.to_string(), o.value.clone()]);
    }
    println!("{t}");
    println!("\nfindings ({}):", d.findings.len());
    let mut t = table(&["ID", "OBSERVED", "SEVERITY", "SOURCE", "TITLE"]);
    for f in &d.findings {
        t.add_row(vec![
            f.id.to_string(),
            f.observed_at.to_rfc3339_seconds(),
            f.severity.to_string(),
            f.source.clone(),
            f.title.clone(),
        ]);
    }
    println!("{t}");
    println!("\ntimeline:");
    for e in &d.timeline {
        println!(
            "  {}  {:<18} {:<16} {}",
            e.at.to_rfc3339_seconds(),
            e.kind,
            e.actor,
            e.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times_and_names_bad_input() {
        let now = Timestamp::parse_rfc3339("2024-05-02T10:00:00Z").unwrap();
        assert_eq!(
            parse_since("24h", now).unwrap().to_rfc3339_seconds(),
            "2024-05-01T10:00:00+00:00"
        );
        assert_eq!(
            parse_since("2024-05-01T08:00:00Z", now)
                .unwrap()
                .to_rfc3339_seconds(),
            "2024-05-01T08:00:00+00:00"
        );
        let err = parse_since("yesterday", now).unwrap_err().to_string();
        assert!(err.contains("yesterday"), "{err}");
    }
}
