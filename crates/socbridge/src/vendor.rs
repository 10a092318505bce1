//! `socbridge vendor ...`: straight at a vendor with a tenant's stored credentials, for
//! troubleshooting. Nothing is stored; what the vendor answers is printed.

use crate::bad_input;
use crate::cli::{Cli, MssListArgs, MssUpdateArgs, Output, SymantecMssCommand, VendorCommand};
use crate::commands::table;
use crate::incidents::parse_since;
use socbridge_connectors::symantec_mss::{
    IncidentSummary, MssSeverity, SecurityIncident, SymantecMssError, WorkflowUpdate,
    merge_workflow_update,
};
use socbridge_engine::Engine;
use socbridge_model::Timestamp;
use std::process::ExitCode;

pub async fn run(cli: &Cli, engine: &Engine, cmd: &VendorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        VendorCommand::SymantecMss(cmd) => symantec_mss(cli, engine, cmd).await,
    }
}

/// A `--severity` value, or bad input naming it.
fn severity_arg(s: &str) -> anyhow::Result<MssSeverity> {
    MssSeverity::parse(s).ok_or_else(|| {
        bad_input(format!(
            "--severity: `{s}` is not one of Emergency, Critical, Warning, Informational"
        ))
    })
}

/// A vendor error: bad input (a wrong passphrase, a missing workflow field) exits 2.
fn vendor_error(e: SymantecMssError) -> anyhow::Error {
    if e.is_bad_input() {
        bad_input(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
}

async fn symantec_mss(
    cli: &Cli,
    engine: &Engine,
    cmd: &SymantecMssCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        SymantecMssCommand::List(args) => list(cli, engine, args).await,
        SymantecMssCommand::Get(t) => {
            let (_, client) = engine
                .symantec_mss_client(&t.from.tenant, t.from.source.as_deref())
                .await?;
            let incident = client
                .incident_workflow_query(&t.number)
                .await
                .map_err(vendor_error)?;
            print_incident(cli.output, &incident)?;
            Ok(ExitCode::SUCCESS)
        }
        SymantecMssCommand::Update(args) => update(cli, engine, args).await,
    }
}

async fn list(cli: &Cli, engine: &Engine, args: &MssListArgs) -> anyhow::Result<ExitCode> {
    let since = parse_since(&args.since, Timestamp::now())?;
    let severities = args
        .severity
        .iter()
        .map(|s| severity_arg(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, client) = engine
        .symantec_mss_client(&args.from.tenant, args.from.source.as_deref())
        .await?;
    let list = client
        .incident_get_list(since, &severities, &args.source_ip, args.limit)
        .await
        .map_err(vendor_error)?;
    match cli.output {
        Output::Json => {
            let rows: Vec<_> = list.incidents.iter().map(summary_json).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "incidents": rows,
                    "unreadable": list.quarantined.iter().map(|q| &q.reason).collect::<Vec<_>>(),
                }))?
            );
        }
        Output::Table => {
            let mut t = table(&[
                "NUMBER",
                "CREATED",
                "UPDATED",
                "SEVERITY",
                "CLASSIFICATION",
                "SOURCE IPS",
                "HOSTS",
            ]);
            for i in &list.incidents {
                t.add_row(vec![
                    i.incident_number.clone(),
                    i.time_created.to_rfc3339_seconds(),
                    i.update_timestamp
                        .map(|u| u.to_rfc3339_seconds())
                        .unwrap_or_default(),
                    i.severity.clone().unwrap_or_default(),
                    i.classification.clone().unwrap_or_default(),
                    i.source_ips.join(", "),
                    i.host_names.join(", "),
                ]);
            }
            println!("{t}");
            println!(
                "{} incidents since {}",
                list.incidents.len(),
                since.to_rfc3339_seconds()
            );
            for q in &list.quarantined {
                eprintln!("unreadable record: {}", q.reason);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(cli: &Cli, engine: &Engine, args: &MssUpdateArgs) -> anyhow::Result<ExitCode> {
    let t = &args.target;
    if let Some(s) = &args.severity {
        severity_arg(s)?;
    }
    let (_, client) = engine
        .symantec_mss_client(&t.from.tenant, t.from.source.as_deref())
        .await?;
    let current = client
        .incident_workflow_query(&t.number)
        .await
        .map_err(vendor_error)?;
    let requested = WorkflowUpdate {
        number: t.number.clone(),
        status: args.status.clone(),
        resolution: args.resolution.clone(),
        reference: args.reference.clone(),
        severity: args.severity.clone(),
        assigned_to_organization: args.assign_organization.clone(),
        assigned_to_person: args.assignee.clone(),
        comments: args.comment.clone(),
    };
    let merged = merge_workflow_update(&requested, &current).map_err(vendor_error)?;
    let applied = client
        .update_incident_workflow(&merged)
        .await
        .map_err(vendor_error)?;
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "number": merged.number,
                "applied": applied,
                "status": merged.status,
                "resolution": merged.resolution,
                "severity": merged.severity,
                "assigned_to_person": merged.assigned_to_person,
                "assigned_to_organization": merged.assigned_to_organization,
                "reference": merged.reference,
            }))?
        ),
        Output::Table => {
            if applied {
                println!(
                    "incident {} updated: status {}, resolution {}",
                    merged.number,
                    merged.status.as_deref().unwrap_or("-"),
                    merged.resolution.as_deref().unwrap_or("-")
                );
            } else {
                eprintln!(
                    "the service refused the update of incident {} (it answered false): check the status and resolution values",
                    merged.number
                );
            }
        }
    }
    Ok(if applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn summary_json(i: &IncidentSummary) -> serde_json::Value {
    serde_json::json!({
        "number": i.incident_number,
        "time_created": i.time_created,
        "updated": i.update_timestamp,
        "severity": i.severity,
        "category": i.category,
        "classification": i.classification,
        "source_ips": i.source_ips,
        "host_names": i.host_names,
        "users": i.users,
        "country_code": i.country_code,
        "customer_severity": i.customer_severity,
    })
}

fn print_incident(output: Output, i: &SecurityIncident) -> anyhow::Result<()> {
    let wf = i.workflow.clone().unwrap_or_default();
    match output {
        Output::Json => {
            let json = serde_json::json!({
                "number": i.incident_number,
                "time_created": i.time_created,
                "severity": i.severity,
                "classification": i.classification,
                "description": i.description,
                "analyst_assessment": i.analyst_assessment,
                "country": i.country_name,
                "workflow": {
                    "status": wf.status,
                    "resolution": wf.resolution,
                    "assigned_person": wf.assigned_person,
                    "assigned_organization": wf.assigned_organization,
                },
                "signatures": i.signatures.iter().map(|s| serde_json::json!({
                    "name": s.signature_name,
                    "source_ips": s.source_ips,
                    "hosts": s.source_hosts.iter().filter_map(|h| h.host_name.clone()).collect::<Vec<_>>(),
                    "files": s.files.iter().map(|f| serde_json::json!({
                        "name": f.file_name, "md5": f.md5, "sha256": f.sha256, "url": f.url,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "comments": i.comments.iter().map(|c| serde_json::json!({
                    "at": c.time, "by": c.commented_by, "comment": c.comment,
                })).collect::<Vec<_>>(),
                "related_incidents": i.related_incidents,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Output::Table => {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let mut t = table(&["FIELD", "VALUE"]);
            t.add_row(vec!["number".into(), i.incident_number.clone()]);
            t.add_row(vec![
                "created".into(),
                i.time_created
                    .map(|c| c.to_rfc3339_seconds())
                    .unwrap_or_else(|| "-".into()),
            ]);
            t.add_row(vec!["severity".into(), show(&i.severity)]);
            t.add_row(vec!["classification".into(), show(&i.classification)]);
            t.add_row(vec!["status".into(), show(&wf.status)]);
            t.add_row(vec!["resolution".into(), show(&wf.resolution)]);
            t.add_row(vec![
                "assigned".into(),
                wf.assigned_person
                    .clone()
                    .or(wf.assigned_organization.clone())
                    .unwrap_or_else(|| "-".into()),
            ]);
            t.add_row(vec!["description".into(), show(&i.description)]);
            t.add_row(vec!["signatures".into(), i.signatures.len().to_string()]);
            println!("{t}");
            if !i.comments.is_empty() {
                let mut c = table(&["AT", "BY", "COMMENT"]);
                for cm in &i.comments {
                    c.add_row(vec![
                        cm.time.map(|t| t.to_rfc3339_seconds()).unwrap_or_default(),
                        show(&cm.commented_by),
                        show(&cm.comment),
                    ]);
                }
                println!("{c}");
            }
        }
    }
    Ok(())
}
