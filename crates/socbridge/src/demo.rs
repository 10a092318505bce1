//! `socbridge sim` (the emulators alone) and `socbridge demo` (emulators + the whole pipeline
//! on a fresh embedded database, checked against the emulators' own counters).

use crate::cli::{Cli, DemoArgs, Output, SimArgs};
use crate::commands::{table, wait_for_signal};
use anyhow::Context as _;
use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_secrets::MasterKey;
use socbridge_sim::{AddEvents, ConfigOptions, SimConfig, SimHandle};
use socbridge_store::Store;
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub async fn sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(crate::bad_input(format!(
            "--rate must be a number >= 0, got {}",
            args.rate
        )));
    }
    let handle = socbridge_sim::start(SimConfig {
        listen: args.listen,
        tenants: usize::from(args.tenants),
        seed: args.seed,
        rate_per_minute: args.rate,
        initial_events_per_tenant: args.initial_events,
        ..SimConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the emulators on {}", args.listen))?;
    // The SIEM collector: P+10 with a fixed P (any free port with 0), same address.
    let mut collector_addr = args.listen;
    if args.listen.port() != 0 {
        collector_addr.set_port(args.listen.port().checked_add(10).ok_or_else(|| {
            crate::bad_input("--listen: the port leaves no room for the SIEM collector (P+10)")
        })?);
    }
    let collector = socbridge_sim::collector::start(socbridge_sim::CollectorConfig {
        listen: collector_addr,
        token: format!(
            "sim-collector-{:016x}",
            args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ),
        seed: args.seed,
        ..socbridge_sim::CollectorConfig::default()
    })
    .await
    .with_context(|| format!("cannot start the SIEM collector on {collector_addr}"))?;
    if let Some(path) = &args.write_config {
        // Written whole under another name and renamed, so that whoever waits for the file
        // never reads it without the sink section.
        let mut partial = path.as_os_str().to_os_string();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        handle
            .write_config(&partial)
            .and_then(|()| collector.write_sink_config(&partial, "sim-collector", false))
            .and_then(|()| std::fs::rename(&partial, path))
            .with_context(|| format!("cannot write the config {}", path.display()))?;
        eprintln!(
            "config written to {} (secrets in the env file beside it)",
            path.display()
        );
    }
    if let Some(path) = &args.endpoints_file {
        handle
            .write_endpoints_file(path)
            .with_context(|| format!("cannot write the endpoints file {}", path.display()))?;
        eprintln!("endpoints written to {}", path.display());
    }
    let ep = handle.endpoints();
    eprintln!("Secure Endpoint emulator: {}", ep.secure_endpoint);
    eprintln!("control API:              {}", ep.control);
    eprintln!("SIEM collector (OCSF NDJSON): {}", collector.url());
    if args.write_config.is_none() {
        eprintln!("  bearer token: {}", collector.token());
    }
    if let Some(x) = &ep.xdr {
        eprintln!(
            "Cisco XDR emulator:       {} (tokens at {})",
            x.ctia_url, x.token_url
        );
    }
    eprintln!(
        "tenants: {}",
        ep.tenants
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("Ctrl-C to stop");
    wait_for_signal().await;
    collector.shutdown().await;
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// A fresh world for the demo, the chaos run and the benchmarks: the emulators, a config
/// pointing at all four of them (ServiceNow on), an embedded database with the config applied,
/// and the demo containment policy on every tenant.
pub(crate) struct World {
    pub sim: SimHandle,
    pub config_path: std::path::PathBuf,
    pub store: Store,
    pub engine: Engine,
}

/// Empties `dir` (the folder is the command's own) and creates it.
pub(crate) fn fresh_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// An engine on `store` with the master key of `dir` (or `SOCBRIDGE_MASTER_KEY`), `config`
/// applied.
pub(crate) async fn start_engine(
    dir: &std::path::Path,
    store: &Store,
    config: &Config,
    opts: EngineOptions,
) -> anyhow::Result<Engine> {
    let key =
        MasterKey::load_or_create(dir, std::env::var("SOCBRIDGE_MASTER_KEY").ok().as_deref())?;
    let engine = Engine::new(store.clone(), key, opts);
    engine.apply_config(config).await?;
    Ok(engine)
}

/// Builds a [`World`] in `dir`: `tune` may change the config text the emulators wrote before
/// it is loaded.
pub(crate) async fn prepare(
    dir: &std::path::Path,
    sim_config: SimConfig,
    tune: impl Fn(String) -> String,
) -> anyhow::Result<World> {
    prepare_on(dir, None, sim_config, tune).await
}

/// [`prepare`] on the database at `database_url` (a fresh one), or SQLite in `dir` with `None`.
pub(crate) async fn prepare_on(
    dir: &std::path::Path,
    database_url: Option<&str>,
    sim_config: SimConfig,
    tune: impl Fn(String) -> String,
) -> anyhow::Result<World> {
    fresh_dir(dir)?;
    let sim = socbridge_sim::start(sim_config)
        .await
        .context("cannot start the emulators")?;
    // One malformed record, so quarantine is seen keeping it apart while the rest flows.
    if let Some(first) = sim.endpoints().tenants.first() {
        sim.add_events(AddEvents {
            tenant: first.name.clone(),
            count: 1,
            malformed: true,
            same_second: false,
            event_type_id: None,
        });
    }
    let config_path = dir.join("socbridge.toml");
    // Ticketing on: incidents get their ServiceNow tickets from the emulator.
    let opts = ConfigOptions {
        servicenow_section: true,
        symantec_sources: true,
        umbrella_sources: true,
    };
    sim.write_config_with(&config_path, &opts)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    std::fs::write(&config_path, tune(text))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    let store = match database_url {
        Some(url) => Store::connect(url).await?,
        None => Store::open_sqlite(&dir.join("socbridge.db")).await?,
    };
    let engine = start_engine(dir, &store, &config, EngineOptions::default()).await?;
    // The demo containment policy: isolate the workstation of every high or critical
    // incident, never a server.
    let policy = socbridge_model::ContainmentPolicy {
        action: socbridge_model::PolicyAction::Isolate,
        deny_hosts: Some("^SRV-".into()),
        ..socbridge_model::ContainmentPolicy::default()
    };
    for t in &config.tenants {
        store
            .set_containment_policy(t.name.as_str(), Some(&policy))
            .await?;
    }
    Ok(World {
        sim,
        config_path,
        store,
        engine,
    })
}

/// The emulators on free ports of 127.0.0.1.
pub(crate) fn sim_config(tenants: u16, seed: u64, rate_per_minute: f64) -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().expect("a literal socket address"),
        tenants: usize::from(tenants),
        seed,
        rate_per_minute,
        ..SimConfig::default()
    }
}

pub async fn demo(cli: &Cli, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // The demo owns a folder of its own inside the data dir and starts it afresh each time.
    let dir = cli.data_dir.join("demo");
    let started = Instant::now();
    let World {
        sim, store, engine, ..
    } = prepare(
        &dir,
        sim_config(args.tenants, args.seed, if args.once { 0.0 } else { 6.0 }),
        |text| text,
    )
    .await?;
    eprintln!(
        "demo: {} tenants on the Secure Endpoint emulator at {}, the Symantec MSS emulator at {} (client certificates) and the Umbrella emulator at {} (one MSSP parent key), tickets in the ServiceNow emulator at {}; data in {}",
        args.tenants,
        sim.endpoints().secure_endpoint,
        sim.endpoints()
            .symantec_mss
            .as_ref()
            .map_or("(none)", |s| s.url.as_str()),
        sim.endpoints()
            .umbrella
            .as_ref()
            .map_or("(none)", |u| u.base_url.as_str()),
        sim.endpoints()
            .servicenow
            .as_ref()
            .map_or("(none)", |s| s.instance_url.as_str()),
        dir.display()
    );

    let code = if args.once {
        run_once(cli, &engine, &store, &sim, started).await?
    } else {
        run_live(cli, args, &engine, &store, &sim, &dir).await?
    };
    store.close().await;
    sim.shutdown().await;
    Ok(code)
}

/// The demo as a service: the console and the API on `--listen`, an admin token to sign in
/// with, new events arriving every few seconds, live counters, until Ctrl-C.
async fn run_live(
    cli: &Cli,
    args: &DemoArgs,
    engine: &Engine,
    store: &Store,
    sim: &SimHandle,
    dir: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let (addr, http) = crate::http::serve(engine.clone(), args.listen, shutdown.clone())
        .await
        .map_err(|e| {
            crate::bad_input(format!(
                "{e:#} (another program holds the port? pick one with --listen 127.0.0.1:PORT, \
                 or port 0 for any free one)"
            ))
        })?;
    let token = crate::api::auth::new_token();
    store
        .create_token(&socbridge_store::NewToken {
            token: &token,
            label: Some("demo"),
            role: socbridge_store::TokenRole::Admin,
            tenants: &[],
        })
        .await?;
    let url = format!("http://{addr}/");
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"console": url, "api": format!("http://{addr}/api/v1"), "admin_token": token})
        ),
        Output::Table => {
            println!("console:     {url}");
            println!("API:         http://{addr}/api/v1 (OpenAPI at /api/v1/openapi.json)");
            println!("admin token: {token}");
        }
    }
    eprintln!(
        "demo running: new events arrive every few seconds; sign in to the console with the \
         admin token above. Or, in another shell:\n  socbridge --data-dir {} incidents list\nCtrl-C to stop.",
        dir.display()
    );
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        trigger.cancel();
    });
    let (run, ()) = tokio::join!(
        engine.run(shutdown.clone()),
        live_counters(store, sim, shutdown.clone())
    );
    run?;
    let _ = http.await;
    Ok(ExitCode::SUCCESS)
}

/// One line every 10 s while the live demo runs: what the emulators hold and what is stored.
async fn live_counters(store: &Store, sim: &SimHandle, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let counts = match store.counts(None).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the counts");
                continue;
            }
        };
        let c = sim.counters();
        let tickets: u64 = c.servicenow.tickets_by_correlation_id.values().sum();
        let isolations: u64 = c
            .secure_endpoint
            .tenants
            .values()
            .map(|t| t.isolation_start)
            .sum();
        eprintln!(
            "live: {} findings, {} incidents ({} open), {tickets} tickets, {isolations} isolations, {} quarantined",
            counts.findings, counts.incidents, counts.open_incidents, counts.quarantined
        );
    }
}

/// One row of the demo summary: the emulator's figures beside the store's.
#[derive(Debug, serde::Serialize)]
pub(crate) struct TenantSummary {
    pub tenant: String,
    pub signals: u64,
    pub served: u64,
    /// Signals stored: findings and quarantined records, an MSS incident counted once
    /// however many versions of it were stored.
    pub stored: u64,
    pub findings: i64,
    pub incidents: i64,
    /// Tickets the ServiceNow emulator created for the tenant's incidents.
    pub tickets: u64,
    /// Incidents with more than one ticket (must be 0).
    pub doubled: u64,
    /// Containment actions applied (workstations isolated, including those since released),
    /// and skipped by the deny pattern.
    pub isolated: u64,
    pub skipped: u64,
    /// Isolations stopped because their incident closed.
    pub released: u64,
    pub quarantined: i64,
    pub ok: bool,
}

pub(crate) async fn summarise(
    store: &Store,
    sim: &SimHandle,
) -> anyhow::Result<Vec<TenantSummary>> {
    let counters = sim.counters();
    let mut rows = Vec::new();
    let tenants: BTreeMap<_, _> = counters.secure_endpoint.tenants.iter().collect();
    for (name, c) in tenants {
        let counts = store.counts(Some(name)).await?;
        // Symantec MSS: the incidents the default filter serves (Emergency, Critical), each
        // stored as one MSS incident number however many versions it has.
        let mss_signals = sim
            .symantec_incidents(name)
            .map(|all| {
                all.iter()
                    .filter(|i| matches!(i["severity"].as_str(), Some("Emergency" | "Critical")))
                    .count() as u64
            })
            .unwrap_or(0);
        let mss_versions = store.finding_keys(name, "symantec-mss").await?;
        let mss_numbers: BTreeSet<&str> = mss_versions
            .iter()
            .map(|k| socbridge_engine::symantec::incident_number_of(k))
            .collect();
        let mss_stored = mss_numbers.len() as u64;
        let mss_served = counters
            .symantec_mss
            .tenants
            .get(name)
            .map_or(0, |t| t.served_distinct);
        // Umbrella: the blocked Command and Control and Cryptomining records of the tenant's
        // org (the default filter), each stored once under its derived key.
        let umb_signals = sim
            .umbrella_records(name)
            .map(|all| {
                all.iter()
                    .filter(|r| r["verdict"] == "blocked")
                    .filter(|r| {
                        r["categories"]
                            .as_array()
                            .is_some_and(|c| c.iter().any(|c| c["id"] == 65 || c["id"] == 150))
                    })
                    .count() as u64
            })
            .unwrap_or(0);
        let umb_stored = store.finding_keys(name, "umbrella").await?.len() as u64;
        let umb_served = counters
            .umbrella
            .orgs
            .values()
            .filter(|o| &o.name == name)
            .map(|o| o.served_distinct)
            .sum::<u64>();
        let se_stored = u64::try_from(counts.findings + counts.quarantined)
            .unwrap_or(0)
            .saturating_sub(mss_versions.len() as u64 + umb_stored);
        let se_signals = c.events_high_priority + c.malformed_total;
        let signals = se_signals + mss_signals + umb_signals;
        let stored = se_stored + mss_stored + umb_stored;
        // The emulator's own count of tickets per correlation id (`socbridge:<tenant>:<id>`).
        let prefix = format!("{}{name}:", socbridge_store::CORRELATION_PREFIX);
        let per_incident: Vec<u64> = counters
            .servicenow
            .tickets_by_correlation_id
            .iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .map(|(_, n)| *n)
            .collect();
        let tickets = per_incident.iter().sum();
        let doubled = per_incident.iter().filter(|n| **n > 1).count() as u64;
        // Containment: every planned action done (applied, or failed with its reason), each
        // isolation started once at the emulator.
        let incidents = store
            .list_incidents(&socbridge_model::IncidentFilter {
                tenants: vec![name.clone()],
                limit: Some(10_000),
                ..Default::default()
            })
            .await?;
        let actions: Vec<_> = incidents.iter().flat_map(|i| i.actions.iter()).collect();
        let count = |state: &str| actions.iter().filter(|a| a.state == state).count() as u64;
        let released = count("reverted");
        let isolated = count("applied") + released;
        let skipped = count("skipped");
        // Each isolation started once at the emulator, each release stopped once, none left
        // half done.
        let contained_once =
            c.isolation_start == isolated && c.isolation_stop == released && count("planned") == 0;
        rows.push(TenantSummary {
            tenant: name.clone(),
            signals,
            stored,
            served: c.served_distinct_high_priority
                + c.malformed_served_distinct
                + mss_served
                + umb_served,
            findings: counts.findings,
            incidents: counts.incidents,
            tickets,
            doubled,
            isolated,
            skipped,
            released,
            quarantined: counts.quarantined,
            ok: se_stored == se_signals
                && mss_stored == mss_signals
                && umb_stored == umb_signals
                && stored == signals
                && doubled == 0
                && contained_once
                && u64::try_from(counts.incidents).is_ok_and(|n| n == tickets),
        });
    }
    Ok(rows)
}

async fn run_once(
    cli: &Cli,
    engine: &Engine,
    store: &Store,
    sim: &SimHandle,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    // Generous: a healthy run on two cores takes a few seconds.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    let rows = loop {
        round += 1;
        let reports = engine.poll_until_idle(100).await?;
        for r in reports.iter().filter(|r| r.error.is_some()) {
            eprintln!(
                "  {}/{}: {}",
                r.tenant,
                r.source,
                r.error.as_deref().unwrap_or_default()
            );
        }
        let left = engine
            .drain_outbox(deadline.saturating_duration_since(Instant::now()))
            .await?;
        let rows = summarise(store, sim).await?;
        let stored: u64 = rows.iter().map(|r| r.stored).sum();
        let signals: u64 = rows.iter().map(|r| r.signals).sum();
        let tickets: u64 = rows.iter().map(|r| r.tickets).sum();
        let incidents: i64 = rows.iter().map(|r| r.incidents).sum();
        eprintln!(
            "round {round}: {stored} of {signals} signals stored, {tickets} of {incidents} incidents ticketed ({left} outbox items pending)"
        );
        if rows.iter().all(|r| r.ok) || Instant::now() >= deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let all_ok = rows.iter().all(|r| r.ok);
    let elapsed = started.elapsed();
    match cli.output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "tenants": rows, "ok": all_ok, "elapsed_ms": elapsed.as_millis() as u64
            }))?
        ),
        Output::Table => {
            let mut t = table(&[
                "TENANT",
                "SIGNALS",
                "SERVED",
                "FINDINGS",
                "INCIDENTS",
                "TICKETS",
                "ISOLATED",
                "QUARANTINED",
                "CHECK",
            ]);
            for r in &rows {
                t.add_row(vec![
                    r.tenant.clone(),
                    r.signals.to_string(),
                    r.served.to_string(),
                    r.findings.to_string(),
                    r.incidents.to_string(),
                    r.tickets.to_string(),
                    format!("{} ({} servers spared)", r.isolated, r.skipped),
                    r.quarantined.to_string(),
                    if r.ok {
                        "ok: every signal once, one ticket each, each isolation once".into()
                    } else if r.doubled > 0 {
                        format!("MISMATCH: {} incidents with two tickets", r.doubled)
                    } else {
                        "MISMATCH".to_string()
                    },
                ]);
            }
            println!("{t}");
            let total_f: i64 = rows.iter().map(|r| r.findings).sum();
            let total_i: i64 = rows.iter().map(|r| r.incidents).sum();
            let total_s: u64 = rows.iter().map(|r| r.signals).sum();
            let total_t: u64 = rows.iter().map(|r| r.tickets).sum();
            let verdict = if all_ok {
                "0 lost, 0 doubled, one ticket per incident: check passed"
            } else {
                "CHECK FAILED (see the rows marked MISMATCH)"
            };
            println!(
                "{total_s} signals emulated, {total_f} findings, {total_i} incidents, {total_t} tickets; {verdict} in {:.1}s",
                elapsed.as_secs_f64()
            );
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
