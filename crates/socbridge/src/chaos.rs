//! `socbridge chaos`: the promises under faults and crashes, re-runnable by anyone.
//!
//! The emulators of all four services run in this process with faults on everywhere (429s,
//! 5xx, slow, dropped and truncated answers, writes committed and then their answer dropped,
//! events repeated across pages) and a long ServiceNow outage in the middle of the run. New
//! signals keep arriving at every vendor and analysts close incidents (so isolations are
//! released) while a driver starts `socbridge serve` as a child process and SIGKILLs it at
//! random instants, `--kills` times. With `--replicas N`, N `serve` processes share the
//! database (a fresh PostgreSQL database with `--database-url`) and each kill takes one of
//! them, restarted at once; the emulators then also count polls of one source that overlapped
//! (two replicas polling it at once), which must be none. Then the faults stop, `serve --until-idle` runs until
//! nothing is left, and the emulators' own counters are compared with the database: every
//! signal stored once, one ticket per incident, each isolation started once and stopped once.

use crate::cli::{ChaosArgs, Cli, Output};
use crate::commands::table;
use crate::demo::{TenantSummary, prepare_on, sim_config, summarise};
use crate::run_db::RunDatabase;
use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use socbridge_model::{IncidentFilter, IncidentStatus, IncidentUpdate};
use socbridge_sim::{
    AddEvents, AddSymantecIncidents, AddUmbrellaRecords, Faults, ServiceNowFaults, SimHandle,
    SymantecFaults, UmbrellaFaults,
};
use socbridge_store::Store;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The figures of a chaos run.
#[derive(Debug, serde::Serialize)]
struct Figures {
    seed: u64,
    /// `serve` processes running at once.
    replicas: u16,
    kills: usize,
    /// Runs of `serve` that ended on their own before their kill (should be 0: a daemon).
    exited_early: usize,
    /// Kills that landed while the ServiceNow emulator was down.
    kills_during_outage: usize,
    /// Incidents closed by the driver while `serve` ran and was killed.
    closed_by_analysts: usize,
    /// Faults the emulators injected, by service.
    faults: serde_json::Value,
    /// `serve --until-idle` runs needed to settle after the faults stopped.
    settle_runs: usize,
    signals: u64,
    stored: u64,
    lost: u64,
    incidents: i64,
    tickets: u64,
    doubled_tickets: u64,
    isolations_started: u64,
    isolations_released: u64,
    /// Polls of one source that overlapped another poll of it (two replicas polling it at
    /// once), as the vendor emulators saw them; must be 0.
    overlapping_polls: u64,
    /// The sources they were of, `vendor:source (tenant)`.
    overlapping_sources: Vec<String>,
    elapsed_s: f64,
    tenants: Vec<TenantSummary>,
    ok: bool,
}

pub async fn chaos(cli: &Cli, args: &ChaosArgs) -> anyhow::Result<ExitCode> {
    if args.min_ms == 0 || args.min_ms > args.max_ms {
        return Err(crate::bad_input(format!(
            "--min-ms ({}) must be at least 1 and at most --max-ms ({})",
            args.min_ms, args.max_ms
        )));
    }
    let kills = args.kills as usize;
    let db = ChaosDb::create(cli.database_url.as_deref()).await?;
    let seed = args.seed.unwrap_or_else(rand::random);
    eprintln!("chaos: seed {seed} (pass --seed {seed} to replay the same schedule)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let dir = cli.data_dir.join("chaos");
    // Short intervals so that a run of a second or two polls, tickets and syncs; small pages
    // so that kills land between and inside commits.
    let world = prepare_on(
        &dir,
        db.url(),
        sim_config(args.tenants, seed, 0.0),
        |text| {
            let text = text
                .replace("[servicenow]\n", "[servicenow]\nsync_interval = \"2s\"\n")
                .replace(
                    "kind = \"secure_endpoint\"\n",
                    "kind = \"secure_endpoint\"\npage_size = 25\n",
                );
            format!("{text}\n[defaults]\npoll_interval = \"1s\"\ncap_per_run = 60\n")
        },
    )
    .await?;
    let sim = &world.sim;
    faults_on(sim, args.replicas > 1);
    if args.replicas > 1 {
        // Each poll is held a little, so that two replicas polling one source at once would
        // be seen overlapping.
        sim.set_poll_delay(Duration::from_millis(20));
    }
    let exe = std::env::current_exe().context("cannot find the socbridge binary")?;
    let log_path = dir.join("serve.log");
    let outage = (kills / 4, kills / 4 + kills / 5);

    let mut exited_early = 0;
    let mut kills_during_outage = 0;
    let mut closed_by_analysts = 0;
    let start = |n: usize| serve(&exe, &dir, &world.config_path, &log_path, db.url(), n);
    let mut replicas = (0..usize::from(args.replicas))
        .map(start)
        .collect::<anyhow::Result<Vec<_>>>()?;
    for i in 0..kills {
        if i == outage.0 && outage.1 > outage.0 {
            eprintln!("chaos: ServiceNow goes down");
            sim.set_servicenow_outage(true);
        }
        if i == outage.1 {
            eprintln!("chaos: ServiceNow is back");
            sim.set_servicenow_outage(false);
        }
        add_signals(sim, &mut rng);
        if i % 3 == 2 && close_one(&world.store, &mut rng).await? {
            closed_by_analysts += 1;
        }
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(args.min_ms..=args.max_ms),
        ))
        .await;
        for (n, child) in replicas.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().context("cannot check on serve")? {
                exited_early += 1;
                tracing::warn!(?status, replica = n, "serve ended before its kill");
                *child = start(n)?;
            }
        }
        let victim = rng.random_range(0..replicas.len());
        replicas[victim]
            .start_kill()
            .context("cannot SIGKILL serve")?;
        replicas[victim].wait().await.context("serve did not die")?;
        replicas[victim] = start(victim)?;
        if i >= outage.0 && i < outage.1 {
            kills_during_outage += 1;
        }
        if cli.output == Output::Table && ((i + 1) % 10 == 0 || i + 1 == kills) {
            let c = world.store.counts(None).await?;
            eprintln!(
                "chaos: {}/{} kills; {} findings, {} incidents so far ({:.0}s)",
                i + 1,
                kills,
                c.findings,
                c.incidents,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for child in &mut replicas {
        child.start_kill().context("cannot SIGKILL serve")?;
        child.wait().await.context("serve did not die")?;
    }
    sim.set_servicenow_outage(false);
    faults_off(sim);
    sim.set_poll_delay(Duration::ZERO);
    let faults = fault_figures(sim);

    // Settle: runs to completion until one stores nothing new and leaves no outbox work.
    let mut settle_runs = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        settle_runs += 1;
        let out = tokio::process::Command::new(&exe)
            .args(common_args(&dir, &world.config_path, db.url()))
            .args(["--output", "json", "serve", "--until-idle"])
            .env_remove("SOCBRIDGE_DATABASE_URL")
            .stdin(Stdio::null())
            .stderr(log_file(&log_path)?)
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run serve --until-idle")?;
        let new: u64 = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .map(|r| r["new_findings"].as_u64().unwrap_or(0))
                        .sum()
                })
            })
            .unwrap_or(u64::MAX);
        if out.status.success() && new == 0 {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "the store did not settle after {settle_runs} runs (see {})",
                log_path.display()
            );
        }
    }

    let rows = summarise(&world.store, sim).await?;
    let counters = sim.counters();
    let sum = |f: fn(&TenantSummary) -> u64| rows.iter().map(f).sum::<u64>();
    let overlapping_polls = counters.overlapping_polls();
    let figures = Figures {
        seed,
        replicas: args.replicas,
        kills,
        exited_early,
        kills_during_outage,
        closed_by_analysts,
        faults,
        settle_runs,
        signals: sum(|r| r.signals),
        stored: sum(|r| r.stored),
        lost: sum(|r| r.signals.saturating_sub(r.stored)),
        incidents: rows.iter().map(|r| r.incidents).sum(),
        tickets: sum(|r| r.tickets),
        doubled_tickets: sum(|r| r.doubled),
        isolations_started: sum(|r| r.isolated),
        isolations_released: sum(|r| r.released),
        overlapping_polls,
        overlapping_sources: counters.overlapping_sources(),
        elapsed_s: started.elapsed().as_secs_f64(),
        ok: rows.iter().all(|r| r.ok) && overlapping_polls == 0,
        tenants: rows,
    };
    report(cli.output, &figures)?;
    world.store.close().await;
    world.sim.shutdown().await;
    db.drop_database().await;
    Ok(if figures.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Faults everywhere. With `replicas`, the polled vendors answer slowly only by the short poll
/// delay: a killed replica's request held for long would still count as in flight when the
/// replica that takes its source over asks, an overlap no replica made.
fn faults_on(sim: &SimHandle, replicas: bool) {
    let polled_slow = if replicas { 0.0 } else { 0.03 };
    sim.set_faults(Faults {
        rate_429: 0.04,
        rate_500: 0.03,
        rate_503: 0.03,
        rate_slow: polled_slow,
        slow_ms: 200,
        rate_drop: 0.04,
        rate_truncate: 0.03,
        rate_duplicate: 0.3,
    });
    sim.set_servicenow_faults(ServiceNowFaults {
        rate_429: 0.04,
        rate_500: 0.03,
        rate_503: 0.03,
        rate_slow: 0.03,
        slow_ms: 200,
        rate_drop: 0.03,
        rate_truncate: 0.03,
        rate_commit_drop: 0.1,
    });
    sim.set_symantec_faults(SymantecFaults {
        rate_500: 0.04,
        rate_503: 0.04,
        rate_slow: polled_slow,
        slow_ms: 200,
        rate_drop: 0.03,
        rate_truncate: 0.03,
        rate_commit_drop: 0.1,
    });
    sim.set_umbrella_faults(UmbrellaFaults {
        rate_429: 0.04,
        rate_500: 0.03,
        rate_503: 0.03,
        rate_slow: polled_slow,
        slow_ms: 200,
        rate_drop: 0.03,
        rate_truncate: 0.03,
        rate_duplicate: 0.3,
    });
}

fn faults_off(sim: &SimHandle) {
    sim.set_faults(Faults::default());
    sim.set_servicenow_faults(ServiceNowFaults::default());
    sim.set_symantec_faults(SymantecFaults::default());
    sim.set_umbrella_faults(UmbrellaFaults::default());
}

fn fault_figures(sim: &SimHandle) -> serde_json::Value {
    let c = sim.counters();
    serde_json::json!({
        "secure_endpoint": c.secure_endpoint.faults,
        "servicenow": c.servicenow.faults,
        "symantec_mss": c.symantec_mss.faults,
        "umbrella": c.umbrella.faults,
    })
}

/// New signals at every vendor for a random tenant: the load keeps coming while `serve` dies.
fn add_signals(sim: &SimHandle, rng: &mut impl Rng) {
    let tenants = &sim.endpoints().tenants;
    if tenants.is_empty() {
        return;
    }
    let tenant = tenants[rng.random_range(0..tenants.len())].name.clone();
    sim.add_events(AddEvents {
        tenant: tenant.clone(),
        count: rng.random_range(1..=12),
        malformed: false,
        same_second: rng.random_bool(0.3),
        event_type_id: None,
    });
    if rng.random_bool(0.5) {
        let _ = sim.add_symantec_incidents(AddSymantecIncidents {
            tenant: tenant.clone(),
            count: rng.random_range(1..=3),
            severity: None,
        });
    }
    if rng.random_bool(0.5) {
        let _ = sim.add_umbrella_records(AddUmbrellaRecords {
            org: tenant,
            count: rng.random_range(1..=6),
            same_second: rng.random_bool(0.5),
            ..AddUmbrellaRecords::default()
        });
    }
}

/// An analyst closes an open incident, preferring one with an isolation to release.
async fn close_one(store: &Store, rng: &mut impl Rng) -> anyhow::Result<bool> {
    let open = store
        .list_incidents(&IncidentFilter {
            statuses: vec![IncidentStatus::New, IncidentStatus::InProgress],
            limit: Some(500),
            ..IncidentFilter::default()
        })
        .await?;
    let isolated: Vec<_> = open
        .iter()
        .filter(|i| i.actions.iter().any(|a| a.state == "applied"))
        .collect();
    let pick = if !isolated.is_empty() {
        isolated[rng.random_range(0..isolated.len())]
    } else if !open.is_empty() {
        &open[rng.random_range(0..open.len())]
    } else {
        return Ok(false);
    };
    let update = IncidentUpdate {
        status: Some(IncidentStatus::Closed),
        resolution: Some("chaos: closed by an analyst".into()),
        actor: "chaos".into(),
        ..IncidentUpdate::default()
    };
    Ok(store
        .update_incident(pick.id, None, &update)
        .await?
        .is_some())
}

/// The child's options: the chaos run's own data dir, database and config, logs at info.
fn common_args(dir: &Path, config: &Path, database_url: Option<&str>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--data-dir".into(),
        dir.into(),
        "--config".into(),
        config.into(),
        "--log".into(),
        "info,sqlx=warn".into(),
    ];
    if let Some(url) = database_url {
        args.push("--database-url".into());
        args.push(url.into());
    }
    args
}

/// The run's database: SQLite in its data dir, or a PostgreSQL database made for the run on
/// the server `--database-url` names, dropped at the end.
struct ChaosDb(Option<RunDatabase>);

impl ChaosDb {
    async fn create(server: Option<&str>) -> anyhow::Result<ChaosDb> {
        let Some(server) = server else {
            return Ok(ChaosDb(None));
        };
        if !(server.starts_with("postgres:") || server.starts_with("postgresql:")) {
            return Err(crate::bad_input(format!(
                "--database-url `{}`: chaos makes a database of its own on a PostgreSQL server \
                 (postgres://...); without the option it runs on SQLite in its data dir",
                crate::redact_url(server)
            )));
        }
        let db = RunDatabase::create(server, "socbridge_chaos").await?;
        eprintln!(
            "chaos: PostgreSQL database {} (dropped at the end)",
            db.name()
        );
        Ok(ChaosDb(Some(db)))
    }

    fn url(&self) -> Option<&str> {
        self.0.as_ref().map(RunDatabase::url)
    }

    async fn drop_database(&self) {
        if let Some(db) = &self.0 {
            db.drop_database().await;
        }
    }
}

fn log_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Starts replica `n` of `serve`, its log lines after the others' in `log`.
fn serve(
    exe: &Path,
    dir: &Path,
    config: &Path,
    log: &Path,
    database_url: Option<&str>,
    n: usize,
) -> anyhow::Result<tokio::process::Child> {
    tracing::debug!(replica = n, "starting serve");
    tokio::process::Command::new(exe)
        .args(common_args(dir, config, database_url))
        .args(["serve", "--listen", "127.0.0.1:0"])
        // Short leases, so that the jobs of a replica the driver stopped move within a second
        // or two (a killed one's are taken at once: its process is gone).
        .env("SOCBRIDGE_LEASE_TTL", "3s")
        // The child runs on the chaos run's own database, never on one named elsewhere.
        .env_remove("SOCBRIDGE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file(log)?)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start serve")
}

fn report(output: Output, f: &Figures) -> anyhow::Result<()> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(f)?),
        Output::Table => {
            let mut t = table(&[
                "TENANT",
                "SIGNALS",
                "STORED",
                "INCIDENTS",
                "TICKETS",
                "DOUBLED",
                "ISOLATED",
                "RELEASED",
                "CHECK",
            ]);
            for r in &f.tenants {
                t.add_row(vec![
                    r.tenant.clone(),
                    r.signals.to_string(),
                    r.stored.to_string(),
                    r.incidents.to_string(),
                    r.tickets.to_string(),
                    r.doubled.to_string(),
                    r.isolated.to_string(),
                    r.released.to_string(),
                    if r.ok { "ok" } else { "MISMATCH" }.to_string(),
                ]);
            }
            println!("{t}");
            println!(
                "{} SIGKILLs of {} replica(s) ({} during a ServiceNow outage), {} incidents \
                 closed meanwhile, faults injected: {}",
                f.kills, f.replicas, f.kills_during_outage, f.closed_by_analysts, f.faults
            );
            println!(
                "{} polls of one source overlapped another poll of it{}",
                f.overlapping_polls,
                if f.overlapping_sources.is_empty() {
                    String::new()
                } else {
                    format!(": {}", f.overlapping_sources.join(", "))
                }
            );
            println!(
                "{} signals, {} stored, {} lost, {} incidents, {} tickets, {} doubled, {} \
                 isolations started and {} released, each once; {} in {:.0}s",
                f.signals,
                f.stored,
                f.lost,
                f.incidents,
                f.tickets,
                f.doubled_tickets,
                f.isolations_started,
                f.isolations_released,
                if f.ok { "check passed" } else { "CHECK FAILED" },
                f.elapsed_s
            );
        }
    }
    Ok(())
}
