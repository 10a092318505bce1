//! Tenant, source, fetch, check and serve commands.

use crate::cli::{Cli, Command, Output, SourceAddArgs, SourceCommand, TenantCommand};
use crate::{bad_input, incidents, load_config, master_key, open_store};
use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use secrecy::SecretString;
use socbridge_engine::{
    Engine, EngineOptions, PollReport, PollSettings, SecureEndpointSettings, SourceSettings,
    SymantecMssSettings, UmbrellaSettings,
};
use socbridge_model::{SourceKind, SourceName, TenantName, Timestamp};
use socbridge_secrets::SecretFields;
use socbridge_store::SourceRecord;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

pub async fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let store = open_store(cli).await?;
    let result = dispatch(cli, store.clone()).await;
    store.close().await;
    result
}

async fn dispatch(cli: &Cli, store: socbridge_store::Store) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Incidents(cmd) => {
            let engine = Engine::new(store.clone(), master_key(cli)?, EngineOptions::default());
            incidents::run(cli, &engine, cmd).await
        }
        Command::Outbox(cmd) => outbox(cli, &store, cmd).await,
        Command::Credential(cmd) => {
            let engine = Engine::new(store.clone(), master_key(cli)?, EngineOptions::default());
            credential(cli, &engine, cmd).await
        }
        Command::Vendor(cmd) => {
            let engine = engine_with_config(cli, store, EngineOptions::default()).await?;
            crate::vendor::run(cli, &engine, cmd).await
        }
        Command::Tenant(cmd) => tenant(cli, &store, cmd).await,
        Command::Status => crate::status::run(cli, &store).await,
        Command::Token(cmd) => token(cli, &store, cmd).await,
        Command::Source(cmd) => {
            let engine = Engine::new(store.clone(), master_key(cli)?, EngineOptions::default());
            source(cli, &engine, cmd).await
        }
        Command::Fetch(args) => {
            let engine = engine_with_config(cli, store, EngineOptions::default()).await?;
            let reports = engine
                .poll(Some(&args.tenant), args.source.as_deref())
                .await;
            engine.retire().await;
            let reports = reports?;
            print_reports(cli.output, &reports)?;
            Ok(exit_for(&reports))
        }
        Command::Check(args) => {
            let engine = engine_with_config(cli, store, EngineOptions::default()).await?;
            let results = engine.check(args.tenant.as_deref()).await?;
            // Each row: tenant, source, kind, result. ServiceNow serves every tenant.
            let mut rows: Vec<(String, String, String, Result<(), String>)> = results
                .into_iter()
                .map(|(s, r)| (s.tenant, s.name, s.kind.to_string(), r))
                .collect();
            if let Some(r) = engine.check_ticketing().await? {
                rows.push(("*".into(), "servicenow".into(), "ticketing".into(), r));
            }
            let tenants: Vec<String> = match args.tenant.as_deref() {
                Some(t) => vec![t.to_string()],
                None => engine
                    .store()
                    .list_tenants()
                    .await?
                    .into_iter()
                    .map(|t| t.name)
                    .collect(),
            };
            for t in tenants {
                if let Some(r) = engine.check_xdr(&t).await? {
                    rows.push((t, "xdr".into(), "xdr_sink".into(), r));
                }
            }
            let failed = rows.iter().filter(|r| r.3.is_err()).count();
            match cli.output {
                Output::Json => {
                    let json: Vec<_> = rows
                        .iter()
                        .map(|(tenant, source, kind, r)| {
                            serde_json::json!({
                                "tenant": tenant, "source": source, "kind": kind,
                                "ok": r.is_ok(), "error": r.as_ref().err(),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&json)?);
                }
                Output::Table => {
                    let mut t = table(&["TENANT", "SOURCE", "KIND", "RESULT"]);
                    for (tenant, source, kind, r) in &rows {
                        let res = match r {
                            Ok(()) => "ok".to_string(),
                            Err(e) => format!("FAILED: {e}"),
                        };
                        t.add_row(vec![tenant.clone(), source.clone(), kind.clone(), res]);
                    }
                    println!("{t}");
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Serve(args) => {
            let opts = EngineOptions {
                lease_ttl: args.lease_ttl,
                ..EngineOptions::default()
            };
            let engine = engine_with_config(cli, store, opts).await?;
            if args.until_idle {
                let code = until_idle(cli, &engine, args).await;
                engine.retire().await;
                return code;
            }
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                tracing::info!("shutting down: finishing polls in flight");
                trigger.cancel();
            });
            let (_, http) =
                crate::http::serve(engine.clone(), args.listen, shutdown.clone()).await?;
            tracing::info!("socbridge serve: scheduler running (Ctrl-C or SIGTERM to stop)");
            engine.run(shutdown).await?;
            let _ = http.await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(_)
        | Command::Demo(_)
        | Command::Chaos(_)
        | Command::Export(_)
        | Command::Bench(_) => {
            unreachable!("dispatched in main")
        }
    }
}

/// `serve --until-idle`: every source polled until idle, the outbox drained, ServiceNow's
/// changes taken in, the SIEM sinks fed.
async fn until_idle(
    cli: &Cli,
    engine: &Engine,
    args: &crate::cli::ServeArgs,
) -> anyhow::Result<ExitCode> {
    let reports = engine.poll_until_idle(1000).await?;
    print_reports(cli.output, &reports)?;
    let mut code = exit_for(&reports);
    // Ticket work and vendor write-backs first, then what changed at ServiceNow
    // (which queues no ticket work, only write-backs: drained again after).
    let mut left = engine.drain_outbox(args.drain_timeout).await?;
    if engine.ticketing_configured().await? {
        if let Err(e) = engine.sync_tickets().await {
            eprintln!("ServiceNow sync-in failed: {e}");
            code = ExitCode::from(1);
        }
        left = engine.drain_outbox(args.drain_timeout).await?;
    }
    if left > 0 {
        eprintln!(
            "{left} outbox item(s) still pending after {}; they stay queued for the next run",
            humantime::format_duration(args.drain_timeout)
        );
        code = ExitCode::from(1);
    }
    // What the run stored and changed, to the SIEM sinks.
    let sink_left = engine.drain_sinks(args.drain_timeout).await?;
    if sink_left > 0 {
        eprintln!(
            "{sink_left} change batch(es) not yet delivered to a SIEM sink after {}; they stay queued for the next run",
            humantime::format_duration(args.drain_timeout)
        );
        code = ExitCode::from(1);
    }
    Ok(code)
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn engine_with_config(
    cli: &Cli,
    store: socbridge_store::Store,
    opts: EngineOptions,
) -> anyhow::Result<Engine> {
    let config = load_config(cli)?;
    let engine = Engine::new(store, master_key(cli)?, opts);
    if let Some(cfg) = &config {
        let applied = engine.apply_config(cfg).await?;
        tracing::info!(tenants = applied.tenants, sources = applied.sources, config = %cfg.path.display(), "config applied");
    }
    Ok(engine)
}

async fn outbox(
    cli: &Cli,
    store: &socbridge_store::Store,
    cmd: &crate::cli::OutboxCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        crate::cli::OutboxCommand::List => {
            let items = store.open_outbox().await?;
            let stats = store.outbox_stats().await?;
            match cli.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"stats": stats, "items": items})
                    )?
                ),
                Output::Table => {
                    let mut t = table(&[
                        "ITEM",
                        "TENANT",
                        "INCIDENT",
                        "TARGET",
                        "KIND",
                        "STATE",
                        "ATTEMPTS",
                        "NEXT",
                        "LAST ERROR",
                    ]);
                    for w in &items {
                        t.add_row(vec![
                            w.id.to_string(),
                            w.tenant.clone(),
                            w.incident_id.to_string(),
                            w.target.clone(),
                            w.kind.as_str().to_string(),
                            w.state.clone(),
                            w.attempts.to_string(),
                            w.next_attempt_at.to_rfc3339_seconds(),
                            w.last_error.clone().unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                    println!(
                        "{} pending, {} failed, {} done",
                        stats.pending, stats.failed, stats.done
                    );
                }
            }
        }
        crate::cli::OutboxCommand::Retry { tenant } => {
            let n = store.outbox_retry_failed(tenant.as_deref()).await?;
            println!("{n} failed item(s) queued again");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// 0 when every poll succeeded, 1 when any source failed (its error is in the output).
fn exit_for(reports: &[PollReport]) -> ExitCode {
    let failed: Vec<_> = reports.iter().filter(|r| r.error.is_some()).collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("{} of {} source polls failed", failed.len(), reports.len());
        ExitCode::from(1)
    }
}

pub(crate) fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    t
}

fn print_reports(output: Output, reports: &[PollReport]) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(reports)?),
        Output::Table => {
            let mut t = table(&[
                "TENANT",
                "SOURCE",
                "PAGES",
                "RECORDS",
                "NEW",
                "DUPLICATE",
                "QUARANTINED",
                "INCIDENTS+",
                "MARK",
                "RESULT",
            ]);
            for r in reports {
                let result = match &r.error {
                    Some(e) => format!("FAILED: {e}"),
                    None if r.cap_reached => "ok (cap reached, more next run)".into(),
                    None if r.budget_exhausted => "ok (time budget reached, more next run)".into(),
                    None => "ok".into(),
                };
                t.add_row(vec![
                    r.tenant.clone(),
                    r.source.clone(),
                    r.pages.to_string(),
                    r.records.to_string(),
                    r.new_findings.to_string(),
                    r.duplicates.to_string(),
                    r.quarantined.to_string(),
                    r.incidents_created.to_string(),
                    r.mark
                        .map(|m| m.to_rfc3339_seconds())
                        .unwrap_or_else(|| "-".into()),
                    result,
                ]);
            }
            println!("{t}");
        }
    }
    Ok(())
}

async fn tenant(
    cli: &Cli,
    store: &socbridge_store::Store,
    cmd: &TenantCommand,
) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCommand::Add { name, display_name } => {
            let name = TenantName::new(name.clone())?;
            let t = store
                .create_tenant(&name, display_name.as_deref())
                .await
                .map_err(|e| match e {
                    socbridge_store::StoreError::Conflict { .. } => {
                        bad_input(format!("tenant `{name}` already exists"))
                    }
                    other => other.into(),
                })?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&tenant_json(&t))?),
                Output::Table => println!("tenant `{}` created", t.name),
            }
        }
        TenantCommand::List => {
            let tenants = store.list_tenants().await?;
            let sources = store.list_sources(None).await?;
            match cli.output {
                Output::Json => {
                    let rows: Vec<_> = tenants.iter().map(tenant_json).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => {
                    let mut t = table(&["TENANT", "DISPLAY NAME", "SOURCES", "CREATED"]);
                    for tn in &tenants {
                        let n = sources.iter().filter(|s| s.tenant == tn.name).count();
                        t.add_row(vec![
                            tn.name.clone(),
                            tn.display_name.clone().unwrap_or_default(),
                            n.to_string(),
                            tn.created_at.to_rfc3339_seconds(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        TenantCommand::Show { name } => {
            let t = store
                .get_tenant(name)
                .await?
                .ok_or_else(|| bad_input(format!("no tenant named `{name}`")))?;
            let sources = store.list_sources(Some(name)).await?;
            let counts = store.counts(Some(name)).await?;
            match cli.output {
                Output::Json => {
                    let mut v = tenant_json(&t);
                    v["sources"] =
                        serde_json::Value::Array(sources.iter().map(source_json).collect());
                    v["findings"] = counts.findings.into();
                    v["incidents"] = counts.incidents.into();
                    v["open_incidents"] = counts.open_incidents.into();
                    v["quarantined"] = counts.quarantined.into();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Output::Table => {
                    println!("tenant:        {}", t.name);
                    if let Some(d) = &t.display_name {
                        println!("display name:  {d}");
                    }
                    println!("created:       {}", t.created_at.to_rfc3339_seconds());
                    println!(
                        "findings: {}  incidents: {} ({} open)  quarantined: {}",
                        counts.findings,
                        counts.incidents,
                        counts.open_incidents,
                        counts.quarantined
                    );
                    print_sources(&sources);
                }
            }
        }
        TenantCommand::Remove { name } => {
            if !store.remove_tenant(name).await? {
                return Err(bad_input(format!("no tenant named `{name}`")));
            }
            if cli.output == Output::Table {
                println!("tenant `{name}` removed with its sources, findings and incidents");
            }
        }
        TenantCommand::Policy(args) => return policy(cli, store, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenant policy NAME [flags]`: shows the containment policy, or sets it from the flags.
async fn policy(
    cli: &Cli,
    store: &socbridge_store::Store,
    args: &crate::cli::PolicyArgs,
) -> anyhow::Result<ExitCode> {
    use socbridge_model::{ContainmentPolicy, PolicyAction, Severity};
    if store.get_tenant(&args.name).await?.is_none() {
        return Err(bad_input(format!("no tenant named `{}`", args.name)));
    }
    let action = if args.none {
        Some(PolicyAction::None)
    } else if args.isolate {
        Some(PolicyAction::Isolate)
    } else if args.move_to.is_some() {
        Some(PolicyAction::MoveToGroup)
    } else {
        None
    };
    let shaping = args.min_severity.is_some()
        || !args.sources.is_empty()
        || args.allow_hosts.is_some()
        || args.deny_hosts.is_some()
        || args.no_revert_on_close
        || args.reapply_on_reopen
        || args.dry_run;
    let policy = match action {
        None if shaping => {
            return Err(bad_input(
                "say what the policy does: --isolate, --move-to GROUP or --none",
            ));
        }
        None => store.containment_policy(&args.name).await?,
        Some(PolicyAction::None) => {
            store.set_containment_policy(&args.name, None).await?;
            None
        }
        Some(action) => {
            let min_severity = match &args.min_severity {
                None => Severity::High,
                Some(s) => s
                    .parse::<Severity>()
                    .map_err(|e| bad_input(format!("--min-severity: {e}")))?,
            };
            let sources = if args.sources.is_empty() {
                vec![SourceKind::SecureEndpoint]
            } else {
                args.sources
                    .iter()
                    .map(|s| {
                        s.parse::<SourceKind>()
                            .map_err(|e| bad_input(format!("--sources: {e}")))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            let p = ContainmentPolicy {
                action,
                group: args.move_to.clone(),
                min_severity,
                sources,
                allow_hosts: args.allow_hosts.clone(),
                deny_hosts: args.deny_hosts.clone(),
                revert_on_close: !args.no_revert_on_close,
                reapply_on_reopen: args.reapply_on_reopen,
                dry_run: args.dry_run,
            };
            p.validate().map_err(|e| bad_input(e.to_string()))?;
            store.set_containment_policy(&args.name, Some(&p)).await?;
            Some(p)
        }
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&policy)?),
        Output::Table => match &policy {
            None => println!("tenant `{}`: no containment", args.name),
            Some(p) => {
                let what = match p.group() {
                    Some(g) => format!("move to group `{g}`"),
                    None => "isolate".to_string(),
                };
                let sources: Vec<&str> = p.sources.iter().map(|s| s.as_str()).collect();
                println!(
                    "tenant `{}`: {what}{} for incidents of severity {} or more from {}",
                    args.name,
                    if p.dry_run { " (dry run)" } else { "" },
                    p.min_severity,
                    sources.join(", ")
                );
                if let Some(d) = &p.deny_hosts {
                    println!("  never on hosts matching {d}");
                }
                if let Some(a) = &p.allow_hosts {
                    println!("  only on hosts matching {a}");
                }
                println!(
                    "  revert on close: {}; re-apply on reopen: {}",
                    if p.revert_on_close { "yes" } else { "no" },
                    if p.reapply_on_reopen { "yes" } else { "no" }
                );
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn tenant_json(t: &socbridge_store::TenantRecord) -> serde_json::Value {
    serde_json::json!({"name": t.name, "display_name": t.display_name, "created_at": t.created_at})
}

/// A source as shown to users: settings and cursor, and whether a secret is stored (never it).
fn source_json(s: &SourceRecord) -> serde_json::Value {
    serde_json::json!({
        "tenant": s.tenant, "name": s.name, "kind": s.kind, "settings": s.settings,
        "has_secret": s.secret.is_some(), "cursor_mark": s.cursor_mark,
        "last_poll_at": s.last_poll_at, "last_ok_at": s.last_ok_at, "last_error": s.last_error,
    })
}

fn print_sources(sources: &[SourceRecord]) {
    let mut t = table(&[
        "TENANT",
        "SOURCE",
        "KIND",
        "CURSOR",
        "LAST POLL",
        "LAST ERROR",
    ]);
    let fmt = |t: Option<Timestamp>| {
        t.map(|t| t.to_rfc3339_seconds())
            .unwrap_or_else(|| "-".into())
    };
    for s in sources {
        t.add_row(vec![
            s.tenant.clone(),
            s.name.clone(),
            s.kind.to_string(),
            fmt(s.cursor_mark),
            fmt(s.last_poll_at),
            s.last_error.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
}

async fn source(cli: &Cli, engine: &Engine, cmd: &SourceCommand) -> anyhow::Result<ExitCode> {
    let store = engine.store();
    match cmd {
        SourceCommand::Add(args) => {
            let (name, settings, secrets) = source_from_args(args)?;
            let rec = engine
                .save_source(&args.tenant, &name, &settings, Some(&secrets))
                .await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&source_json(&rec))?),
                Output::Table => println!(
                    "source `{}/{}` saved ({}); its secret is stored encrypted",
                    rec.tenant, rec.name, rec.kind
                ),
            }
        }
        SourceCommand::List { tenant } => {
            if let Some(t) = tenant {
                if store.get_tenant(t).await?.is_none() {
                    return Err(bad_input(format!("no tenant named `{t}`")));
                }
            }
            let sources = store.list_sources(tenant.as_deref()).await?;
            match cli.output {
                Output::Json => {
                    let rows: Vec<_> = sources.iter().map(source_json).collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => print_sources(&sources),
            }
        }
        SourceCommand::Remove { tenant, name } => {
            if !store.remove_source(tenant, name).await? {
                return Err(bad_input(format!(
                    "tenant `{tenant}` has no source named `{name}`"
                )));
            }
            if cli.output == Output::Table {
                println!("source `{tenant}/{name}` removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn source_from_args(
    args: &SourceAddArgs,
) -> anyhow::Result<(SourceName, SourceSettings, SecretFields)> {
    let name = SourceName::new(args.name.clone())?;
    let kind: SourceKind = args
        .kind
        .parse()
        .map_err(|e: socbridge_model::source::UnknownSourceKind| bad_input(e.to_string()))?;
    let poll = PollSettings::default().overlay(
        args.poll_interval,
        args.lookback,
        args.overlap,
        args.cap_per_run,
    );
    poll.validate().map_err(bad_input)?;
    match kind {
        SourceKind::SecureEndpoint => {
            let client_id = args
                .client_id
                .clone()
                .ok_or_else(|| bad_input("--client-id is required for --kind secure_endpoint"))?;
            let settings = SecureEndpointSettings::new(
                args.base_url.clone(),
                client_id,
                args.event_types.clone(),
                None,
                poll,
            )
            .map_err(bad_input)?;
            let key = read_secret(args, "API key")?;
            Ok((
                name,
                SourceSettings::SecureEndpoint(settings),
                SecretFields::new().with("api_key", key),
            ))
        }
        SourceKind::SymantecMss => {
            use base64::Engine as _;
            let p12 = match (&args.p12_file, &args.p12_base64_env) {
                (Some(f), None) => {
                    let bytes = std::fs::read(f).map_err(|e| {
                        bad_input(format!("cannot read --p12-file {}: {e}", f.display()))
                    })?;
                    base64::engine::general_purpose::STANDARD.encode(bytes)
                }
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    bad_input(format!(
                        "environment variable `{var}` (--p12-base64-env) is not set"
                    ))
                })?,
                _ => {
                    return Err(bad_input(
                        "--kind symantec_mss needs the client certificate: --p12-file FILE or --p12-base64-env VAR",
                    ));
                }
            };
            let passphrase = if let Some(var) = &args.p12_passphrase_env {
                SecretString::from(std::env::var(var).map_err(|_| {
                    bad_input(format!(
                        "environment variable `{var}` (--p12-passphrase-env) is not set"
                    ))
                })?)
            } else {
                read_line_secret(
                    args.p12_passphrase_stdin,
                    "certificate passphrase",
                    "--p12-passphrase-env VAR or --p12-passphrase-stdin",
                )?
            };
            let root_ca_pem = match &args.ca_file {
                None => None,
                Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
                    bad_input(format!("cannot read --ca-file {}: {e}", f.display()))
                })?),
            };
            let settings = SymantecMssSettings::new(
                args.base_url.clone(),
                args.severities.clone(),
                root_ca_pem,
                args.proxy.clone(),
                None,
                poll,
            )
            .map_err(bad_input)?;
            // The certificate is read now, so a wrong passphrase or an expired certificate is
            // reported here rather than at the first poll.
            let identity = socbridge_connectors::symantec_mss::ClientIdentity::from_pkcs12_base64(
                &p12,
                &passphrase,
            )
            .map_err(|e| bad_input(e.to_string()))?;
            identity
                .info()
                .check_validity(socbridge_model::Timestamp::now())
                .map_err(|e| bad_input(e.to_string()))?;
            Ok((
                name,
                SourceSettings::SymantecMss(settings),
                SecretFields::new()
                    .with("p12", SecretString::from(p12))
                    .with("passphrase", passphrase),
            ))
        }
        SourceKind::Umbrella => {
            let credential = args.parent_credential.clone().ok_or_else(|| {
                bad_input("--kind umbrella needs --parent-credential NAME (see `socbridge credential add`)")
            })?;
            let settings = UmbrellaSettings::new(
                credential,
                args.org_id.clone(),
                None,
                None,
                None,
                None,
                poll,
            )
            .map_err(bad_input)?;
            Ok((
                name,
                SourceSettings::Umbrella(settings),
                SecretFields::new(),
            ))
        }
    }
}

async fn credential(
    cli: &Cli,
    engine: &Engine,
    cmd: &crate::cli::CredentialCommand,
) -> anyhow::Result<ExitCode> {
    use crate::cli::CredentialCommand;
    match cmd {
        CredentialCommand::Add(args) => {
            let kind: SourceKind =
                args.kind
                    .parse()
                    .map_err(|e: socbridge_model::source::UnknownSourceKind| {
                        bad_input(e.to_string())
                    })?;
            if kind != SourceKind::Umbrella {
                return Err(bad_input(format!(
                    "kind `{kind}` has no shared credentials (only umbrella)"
                )));
            }
            if args.name.trim().is_empty() {
                return Err(bad_input("--name must not be empty"));
            }
            let key = match (&args.key, &args.key_env) {
                (Some(k), None) => k.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    bad_input(format!(
                        "environment variable `{var}` (--key-env) is not set"
                    ))
                })?,
                _ => return Err(bad_input("give the API key: --key KEY or --key-env VAR")),
            };
            if key.trim().is_empty() {
                return Err(bad_input("the API key is empty"));
            }
            let secret = match &args.secret_env {
                Some(var) => SecretString::from(std::env::var(var).map_err(|_| {
                    bad_input(format!(
                        "environment variable `{var}` (--secret-env) is not set"
                    ))
                })?),
                None => read_line_secret(
                    args.secret_stdin,
                    "API secret",
                    "--secret-env VAR or --secret-stdin",
                )?,
            };
            let settings = socbridge_engine::CredentialSettings::Umbrella {
                base_url: args
                    .base_url
                    .clone()
                    .unwrap_or_else(|| socbridge_connectors::umbrella::CURRENT_BASE_URL.into()),
                token_url: args.token_url.clone(),
            };
            let secrets = SecretFields::new()
                .with("key", SecretString::from(key))
                .with("secret", secret);
            engine
                .save_credential(args.name.trim(), &settings, Some(&secrets))
                .await?;
            if cli.output == Output::Table {
                println!(
                    "credential `{}` saved; its secret is stored encrypted",
                    args.name.trim()
                );
            }
        }
        CredentialCommand::List => {
            let all = engine.store().list_credentials().await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&all)?),
                Output::Table => {
                    let mut t = table(&["NAME", "KIND", "SETTINGS", "SECRET", "UPDATED"]);
                    for c in &all {
                        t.add_row(vec![
                            c.name.clone(),
                            c.kind.clone(),
                            c.settings.to_string(),
                            if c.has_secret { "stored" } else { "none" }.to_string(),
                            c.updated_at.to_rfc3339_seconds(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        CredentialCommand::Remove { name } => {
            if !engine.store().remove_credential(name).await? {
                return Err(bad_input(format!("no credential named `{name}`")));
            }
            if cli.output == Output::Table {
                println!("credential `{name}` removed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret from `--api-key-env VAR`, `--api-key-stdin`, or a prompt on a terminal.
fn read_secret(args: &SourceAddArgs, what: &str) -> anyhow::Result<SecretString> {
    if let Some(var) = &args.api_key_env {
        let value = std::env::var(var).map_err(|_| {
            bad_input(format!(
                "environment variable `{var}` (--api-key-env) is not set"
            ))
        })?;
        if value.trim().is_empty() {
            return Err(bad_input(format!("the {what} is empty")));
        }
        return Ok(SecretString::from(value));
    }
    read_line_secret(
        args.api_key_stdin,
        what,
        "--api-key-env VAR or --api-key-stdin",
    )
}

/// A secret from the first line of stdin (`from_stdin`), or a prompt on a terminal; `how`
/// names the flags that give it otherwise.
fn read_line_secret(from_stdin: bool, what: &str, how: &str) -> anyhow::Result<SecretString> {
    let value = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the secret from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("{what}: "))
            .context("cannot read the secret at the prompt")?
    } else {
        return Err(bad_input(format!(
            "no {what} given: use {how}, or run in a terminal to be prompted"
        )));
    };
    if value.trim().is_empty() {
        return Err(bad_input(format!("the {what} is empty")));
    }
    Ok(SecretString::from(value))
}

async fn token(
    cli: &Cli,
    store: &socbridge_store::Store,
    cmd: &crate::cli::TokenCommand,
) -> anyhow::Result<ExitCode> {
    use crate::cli::TokenCommand;
    use socbridge_store::{NewToken, StoreError, TokenRole};
    match cmd {
        TokenCommand::Create(args) => {
            let role: TokenRole = args
                .role
                .parse()
                .map_err(|e: socbridge_store::UnknownRole| bad_input(format!("--role: {e}")))?;
            let tenants: Vec<String> = args
                .tenants
                .iter()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect();
            let secret = crate::api::auth::new_token();
            let label = args
                .label
                .as_deref()
                .map(str::trim)
                .filter(|l| !l.is_empty());
            let rec = store
                .create_token(&NewToken {
                    token: &secret,
                    label,
                    role,
                    tenants: &tenants,
                })
                .await
                .map_err(|e| match e {
                    StoreError::Conflict { detail } => bad_input(format!("--tenant: {detail}")),
                    StoreError::NotFound { what } => {
                        bad_input(format!("--tenant: {what} does not exist"))
                    }
                    other => other.into(),
                })?;
            match cli.output {
                Output::Json => {
                    let mut v = serde_json::to_value(&rec)?;
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert("token".into(), secret.clone().into());
                    }
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Output::Table => {
                    println!("{secret}");
                    eprintln!(
                        "token {} ({}{}) created; it is shown only now, keep it safe",
                        rec.id,
                        rec.role,
                        if rec.tenants.is_empty() {
                            String::new()
                        } else {
                            format!(" of {}", rec.tenants.join(", "))
                        }
                    );
                }
            }
        }
        TokenCommand::List => {
            let tokens = store.list_tokens().await?;
            match cli.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&tokens)?),
                Output::Table => {
                    let mut t = table(&[
                        "ID", "PREFIX", "ROLE", "TENANTS", "LABEL", "CREATED", "REVOKED",
                    ]);
                    for k in &tokens {
                        t.add_row(vec![
                            k.id.to_string(),
                            format!("{}…", k.prefix),
                            k.role.to_string(),
                            k.tenants.join(", "),
                            k.label.clone().unwrap_or_default(),
                            k.created_at.to_rfc3339_seconds(),
                            k.revoked_at
                                .map(|r| r.to_rfc3339_seconds())
                                .unwrap_or_default(),
                        ]);
                    }
                    println!("{t}");
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if !store.revoke_token(*id).await? {
                return Err(bad_input(format!("no live token with id {id}")));
            }
            if cli.output == Output::Table {
                println!("token {id} revoked");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
