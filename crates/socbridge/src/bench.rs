//! `socbridge bench`: the whole pipeline against the built-in emulators, on a fresh database,
//! measured.
//!
//! Without `--scale`, three phases in one process:
//! 1. **Throughput.** The Secure Endpoint emulator holds `--events` events over `--tenants`
//!    tenants; every source is polled until idle (as `serve --until-idle` does) while the
//!    ticket worker runs beside it (as in `serve`). Findings per second = findings committed
//!    / time from the first request to the last commit.
//! 2. **Ticket latency.** The `serve` loop runs; each round resolves every open incident, then
//!    new events arrive over a few seconds and open new incidents. Latency = when the
//!    ServiceNow emulator created the ticket - when the Secure Endpoint emulator first served
//!    the event that opened the incident (both the emulators' own clocks). The same figure
//!    for the incidents of phase 1 (opened and ticketed under the backlog) is printed beside.
//! 3. **Raw insert.** The findings of phase 1, read back and inserted into a fresh SQLite file
//!    with the same table (columns, unique key, indexes) by a plain batched insert: one
//!    transaction per 500 rows, one prepared INSERT per row. Only insert and commit are timed.
//!
//! With `--scale`: `--scale-tenants` tenants with a Secure Endpoint, a Symantec MSS and an
//! Umbrella source each, polled every `--poll-interval` with time compressed `--speedup`
//! times (poll interval, look-back, overlap, scheduler tick, ticket sync and arrival rates all
//! scaled), measured over `--minutes` simulated minutes after one interval of warm-up. The
//! CPU share of one core is the CPU time used divided by the simulated time measured.
//!
//! The emulators run on a runtime of their own whose threads are named `sim`: their CPU time
//! is read per thread from `/proc` and shown apart from socbridge's. Memory figures are the
//! whole process (emulators included); the resident size once the emulators hold their data,
//! before the pipeline starts, is shown beside them.

use crate::cli::{BenchArgs, Cli, Output};
use anyhow::Context as _;
use serde::Serialize;
use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_model::{IncidentStatus, IncidentUpdate};
use socbridge_sim::{
    AddEvents, ConfigOptions, SimConfig, SimHandle, SymantecConfig, UmbrellaConfig,
};
use socbridge_store::Store;
use sqlx::{ConnectOptions as _, Connection as _};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// Name of the emulators' threads, told apart in `/proc/self/task/*/stat`.
const SIM_THREAD: &str = "sim";
/// `USER_HZ`: the unit of the CPU times in `/proc` (100 on every Linux ABI in use).
const CLOCK_TICKS: f64 = 100.0;
/// Rows per transaction of the raw insert: one page of a poll.
const RAW_BATCH: i64 = 500;
/// New events per tenant in each latency round (a tenant has 8 computers).
const LATENCY_EVENTS_PER_TENANT: usize = 16;
/// How long the arrivals of one latency round are spread over.
const LATENCY_ROUND: Duration = Duration::from_secs(3);
/// How long any waiting step may take before the run gives up.
const PHASE_DEADLINE: Duration = Duration::from_secs(600);
/// Scale run arrivals per tenant per simulated minute: a busy customer's high-severity
/// signals (about 70 endpoint events, 30 blocked DNS lookups and 7 MSS incidents a day).
const SCALE_SE_PER_MINUTE: f64 = 0.05;
const SCALE_MSS_PER_MINUTE: f64 = 0.005;
const SCALE_UMBRELLA_PER_MINUTE: f64 = 0.02;

pub async fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    validate(cli, args)?;
    if !args.replicas.is_empty() {
        return crate::bench_replicas::run(cli, args).await;
    }
    let dir = cli.data_dir.join("bench");
    crate::demo::fresh_dir(&dir)?;
    let sim_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SIM_THREAD)
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .context("cannot start the emulators' runtime")?;
    let result = if args.scale {
        scale(cli, args, &dir, &sim_rt).await.map(Figures::Scale)
    } else {
        throughput(cli, args, &dir, &sim_rt)
            .await
            .map(Figures::Throughput)
    };
    sim_rt.shutdown_background();
    let figures = result?;
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&figures)?),
        Output::Table => print_table(&figures),
    }
    let ok = match &figures {
        Figures::Throughput(t) => t.ok,
        Figures::Scale(s) => s.ok,
    };
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn validate(cli: &Cli, a: &BenchArgs) -> anyhow::Result<()> {
    let bad = |m: String| Err(crate::bad_input(m));
    if let Some(url) = &cli.database_url {
        if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
            return bad(format!(
                "--database-url `{}`: the benchmark makes its own fresh SQLite database in \
                 <data-dir>/bench; give a postgres:// URL to measure PostgreSQL",
                crate::redact_url(url)
            ));
        }
    }
    if a.scale {
        if !(1..=10_000).contains(&a.scale_tenants) {
            return bad(format!(
                "--scale-tenants must be 1 to 10000, got {}",
                a.scale_tenants
            ));
        }
        if !(1..=60).contains(&a.speedup) {
            return bad(format!("--speedup must be 1 to 60, got {}", a.speedup));
        }
        let secs = a.poll_interval.as_secs();
        if a.poll_interval.subsec_nanos() != 0 || secs == 0 || secs % a.speedup != 0 {
            return bad(format!(
                "--poll-interval {} must be whole seconds divisible by --speedup {} (the \
                 compressed interval is whole seconds)",
                humantime::format_duration(a.poll_interval),
                a.speedup
            ));
        }
        if !(1..=1440).contains(&a.minutes) {
            return bad(format!("--minutes must be 1 to 1440, got {}", a.minutes));
        }
    } else {
        if !(1..=10_000_000).contains(&a.events) {
            return bad(format!("--events must be 1 to 10000000, got {}", a.events));
        }
        if !(1..=1000).contains(&a.tenants) || a.tenants > a.events {
            return bad(format!(
                "--tenants must be 1 to 1000 and at most --events ({}), got {}",
                a.events, a.tenants
            ));
        }
        if a.latency_rounds > 100 {
            return bad(format!(
                "--latency-rounds must be 0 to 100, got {}",
                a.latency_rounds
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The figures

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Figures {
    Throughput(ThroughputFigures),
    Scale(ScaleFigures),
}

#[derive(Debug, Serialize)]
struct ThroughputFigures {
    mode: &'static str,
    database: &'static str,
    tenants: u64,
    /// Events the emulator held at start, and those of them the default filter asks for.
    events: u64,
    events_high_priority: u64,
    /// Distinct high-priority events the emulator delivered (its own counter).
    served: u64,
    /// Records the emulator sent during phase 1, a record sent twice counting twice: what the
    /// polls read again (the overlap, the probes) on top of `served`.
    records_served: u64,
    /// Findings committed by phase 1 (must equal `served`).
    findings: i64,
    incidents: i64,
    /// Tickets the ServiceNow emulator created for them (must equal `incidents`).
    tickets: u64,
    seconds: f64,
    findings_per_second: f64,
    cpu_seconds: f64,
    cpu_seconds_emulators: f64,
    /// Ticket latency in the latency phase (the emulators answering normally).
    ticket_latency_ms: Latency,
    /// The same for the incidents opened during phase 1, under the whole backlog.
    ticket_latency_backlog_ms: Latency,
    /// Peak resident set (VmHWM) at the end of phases 1 and 2, emulators included.
    peak_rss_mib: f64,
    /// Resident set once the emulators held their data, before the pipeline started.
    rss_emulators_mib: f64,
    raw_insert: RawInsert,
    /// `findings_per_second` / `raw_insert.rows_per_second`.
    ratio_to_raw: f64,
    load_average_start: [f64; 3],
    load_average_end: [f64; 3],
    ok: bool,
}

#[derive(Debug, Serialize)]
struct RawInsert {
    rows: u64,
    seconds: f64,
    rows_per_second: f64,
}

#[derive(Debug, Serialize, Default)]
struct Latency {
    samples: usize,
    /// Incidents for which no time could be paired (no ticket, or the event never served).
    unmatched: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct ScaleFigures {
    mode: &'static str,
    database: &'static str,
    tenants: u64,
    sources: u64,
    poll_interval_secs: u64,
    speedup: u64,
    simulated_minutes: f64,
    wall_seconds: f64,
    /// CPU time / simulated time: the share of one core the real schedule would use.
    cpu_share_of_one_core: f64,
    cpu_share_emulators: f64,
    cpu_share_socbridge: f64,
    peak_rss_mib: f64,
    rss_emulators_mib: f64,
    /// Vendor requests per simulated minute in the measured window (a poll is at least one).
    requests_per_minute: VendorRequests,
    /// The longest time any source went without a poll at the end, in simulated seconds.
    max_poll_lag_secs: f64,
    findings: i64,
    incidents: i64,
    tickets: u64,
    load_average_start: [f64; 3],
    load_average_end: [f64; 3],
    /// Every source polled on schedule and every incident ticketed.
    ok: bool,
}

#[derive(Debug, Serialize)]
struct VendorRequests {
    secure_endpoint: f64,
    symantec_mss: f64,
    umbrella: f64,
}

fn print_table(f: &Figures) {
    match f {
        Figures::Throughput(t) => {
            println!("socbridge bench ({}, {} tenants)", t.database, t.tenants);
            println!(
                "  end to end:      {} findings in {:.2} s = {:.0} findings/s (emulator served {} in {} records; {})",
                t.findings,
                t.seconds,
                t.findings_per_second,
                t.served,
                t.records_served,
                if t.findings >= 0 && t.findings as u64 == t.served {
                    "all stored"
                } else {
                    "MISMATCH"
                }
            );
            println!(
                "  raw insert:      {} rows in {:.2} s = {:.0} rows/s; end to end is {:.0}% of it",
                t.raw_insert.rows,
                t.raw_insert.seconds,
                t.raw_insert.rows_per_second,
                t.ratio_to_raw * 100.0
            );
            println!(
                "  tickets:         {} for {} incidents",
                t.tickets, t.incidents
            );
            let lat = |name: &str, l: &Latency| {
                println!(
                    "  {name} p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} incidents)",
                    l.p50, l.p95, l.p99, l.max, l.samples
                );
            };
            lat("ticket latency: ", &t.ticket_latency_ms);
            lat("  under backlog:", &t.ticket_latency_backlog_ms);
            println!(
                "  CPU:             {:.2} s in phase 1 ({:.2} s of it the emulators')",
                t.cpu_seconds, t.cpu_seconds_emulators
            );
            println!(
                "  memory:          peak RSS {:.0} MiB ({:.0} MiB once the emulators held their data)",
                t.peak_rss_mib, t.rss_emulators_mib
            );
            println!(
                "  load average:    {:?} at start, {:?} at end",
                t.load_average_start, t.load_average_end
            );
        }
        Figures::Scale(s) => {
            println!(
                "socbridge bench --scale ({}, {} tenants, {} sources, every {} s, {}x time)",
                s.database, s.tenants, s.sources, s.poll_interval_secs, s.speedup
            );
            println!(
                "  CPU:           {:.1}% of one core ({:.1}% socbridge, {:.1}% emulators) over {:.0} simulated minutes",
                s.cpu_share_of_one_core * 100.0,
                s.cpu_share_socbridge * 100.0,
                s.cpu_share_emulators * 100.0,
                s.simulated_minutes
            );
            println!(
                "  memory:        peak RSS {:.0} MiB ({:.0} MiB once the emulators held their data)",
                s.peak_rss_mib, s.rss_emulators_mib
            );
            println!(
                "  requests/min:  Secure Endpoint {:.0}, Symantec MSS {:.0}, Umbrella {:.0}; longest without a poll {:.0} s",
                s.requests_per_minute.secure_endpoint,
                s.requests_per_minute.symantec_mss,
                s.requests_per_minute.umbrella,
                s.max_poll_lag_secs
            );
            println!(
                "  stored:        {} findings, {} incidents, {} tickets",
                s.findings, s.incidents, s.tickets
            );
            println!(
                "  load average:  {:?} at start, {:?} at end",
                s.load_average_start, s.load_average_end
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput, latency and the raw insert

async fn throughput(
    cli: &Cli,
    args: &BenchArgs,
    dir: &Path,
    sim_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ThroughputFigures> {
    let load_average_start = load_average();
    let per_tenant = args.events.div_ceil(args.tenants);
    eprintln!(
        "bench: generating {} events ({per_tenant} per tenant) in the emulators",
        per_tenant * args.tenants
    );
    // The backlog spreads over the last hour and the first poll looks back two: every event
    // is in reach, and what a poll re-reads behind its mark (the default 2-minute overlap) is
    // a thin slice of it, as it would be in service.
    let sim = start_sim(
        sim_rt,
        SimConfig {
            tenants: usize::try_from(args.tenants)?,
            seed: args.seed,
            initial_events_per_tenant: usize::try_from(per_tenant)?,
            initial_spread: Duration::from_secs(3600),
            symantec: SymantecConfig {
                enabled: false,
                ..SymantecConfig::default()
            },
            umbrella: UmbrellaConfig {
                enabled: false,
                ..UmbrellaConfig::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    let rss_emulators_mib = mib(status_kib("VmRSS"));
    let config = write_config(
        &sim,
        dir,
        &ConfigOptions {
            servicenow_section: true,
            symantec_sources: false,
            umbrella_sources: false,
        },
        "poll_interval = \"1s\"\nlookback = \"2h\"\n",
        None,
    )?;
    let (store, db) = open_db(cli, dir).await?;
    let result = throughput_on(args, dir, &sim, &store, &db, &config).await;
    store.close().await;
    db.finish().await;
    sim.shutdown().await;
    let mut figures = result?;
    figures.rss_emulators_mib = rss_emulators_mib;
    figures.load_average_start = load_average_start;
    figures.load_average_end = load_average();
    Ok(figures)
}

async fn throughput_on(
    args: &BenchArgs,
    dir: &Path,
    sim: &SimHandle,
    store: &Store,
    db: &Db,
    config: &Config,
) -> anyhow::Result<ThroughputFigures> {
    let engine = crate::demo::start_engine(dir, store, config, EngineOptions::default()).await?;
    let counters = sim.counters();
    let tenants: Vec<String> = counters.secure_endpoint.tenants.keys().cloned().collect();
    let events: u64 = counters
        .secure_endpoint
        .tenants
        .values()
        .map(|t| t.events_total)
        .sum();
    let events_high_priority: u64 = counters
        .secure_endpoint
        .tenants
        .values()
        .map(|t| t.events_high_priority)
        .sum();

    // Phase 1: poll until idle, the ticket worker beside it.
    eprintln!(
        "bench: phase 1: {} tenants' backlog of {events_high_priority} high-priority events, polled until idle",
        tenants.len()
    );
    let stop = CancellationToken::new();
    let worker = tokio::spawn(ticket_worker(engine.clone(), stop.clone()));
    let cpu0 = cpu_now();
    let started = Instant::now();
    let polled = {
        let poll = engine.poll_until_idle(usize::MAX);
        tokio::pin!(poll);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut poll => break r,
                _ = tick.tick() => {
                    let c = sim.counters();
                    let read: u64 = c
                        .secure_endpoint
                        .tenants
                        .values()
                        .map(|t| t.served_distinct_high_priority)
                        .sum();
                    eprintln!(
                        "bench:   {:>5.1} s: {read} of {events_high_priority} events read, {} tickets created",
                        started.elapsed().as_secs_f64(),
                        c.servicenow.writes.creates
                    );
                }
            }
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu1 = cpu_now();
    stop.cancel();
    let _ = worker.await;
    let reports = polled?;
    if let Some(r) = reports.iter().find(|r| r.error.is_some()) {
        anyhow::bail!(
            "the poll of {}/{} failed: {}",
            r.tenant,
            r.source,
            r.error.as_deref().unwrap_or_default()
        );
    }
    let counts = store.counts(None).await?;
    let se = sim.counters().secure_endpoint;
    let served: u64 = se
        .tenants
        .values()
        .map(|t| t.served_distinct_high_priority)
        .sum();
    let records_served: u64 = se.tenants.values().map(|t| t.records_served).sum();
    eprintln!(
        "bench: phase 1: {} findings stored in {seconds:.2} s; finishing the tickets",
        counts.findings
    );
    let left = engine.drain_outbox(PHASE_DEADLINE).await?;
    if left > 0 {
        anyhow::bail!("{left} outbox items still pending after the backlog");
    }
    let phase1_incidents = db.max_incident_id().await?;
    let phase1_findings = db.max_finding_id().await?;
    let tickets = socbridge_tickets(sim);
    let backlog = latencies(db, sim, 0, phase1_incidents).await?.into();

    // Phase 2: ticket latency with the emulators answering normally.
    let steady = latency_phase(args, &engine, store, db, sim, &tenants).await?;
    let peak_rss_mib = mib(status_kib("VmHWM"));

    // Phase 3: the same rows, a plain batched insert.
    eprintln!(
        "bench: phase 3: the same findings by a plain batched insert into a fresh SQLite file"
    );
    let raw = raw_insert(db, &dir.join("raw-insert.db"), phase1_findings).await?;
    let findings_per_second = counts.findings as f64 / seconds;
    let ok = u64::try_from(counts.findings).is_ok_and(|f| f == served)
        && u64::try_from(counts.incidents).is_ok_and(|i| i == tickets)
        && steady.unmatched == 0;
    Ok(ThroughputFigures {
        mode: "throughput",
        database: db.name(),
        tenants: tenants.len() as u64,
        events,
        events_high_priority,
        served,
        records_served,
        findings: counts.findings,
        incidents: counts.incidents,
        tickets,
        seconds,
        findings_per_second,
        cpu_seconds: cpu1.total - cpu0.total,
        cpu_seconds_emulators: cpu1.sim - cpu0.sim,
        ticket_latency_ms: steady,
        ticket_latency_backlog_ms: backlog,
        peak_rss_mib,
        rss_emulators_mib: 0.0,
        ratio_to_raw: findings_per_second / raw.rows_per_second,
        raw_insert: raw,
        load_average_start: [0.0; 3],
        load_average_end: [0.0; 3],
        ok,
    })
}

/// The outbox worker of `serve`, on its own: a pass every tick until stopped.
async fn ticket_worker(engine: Engine, stop: CancellationToken) {
    let mut tick = tokio::time::interval(EngineOptions::default().tick);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = engine.process_outbox().await {
            eprintln!("bench: outbox pass failed: {e}");
        }
    }
}

/// Tickets the ServiceNow emulator created for socbridge incidents.
fn socbridge_tickets(sim: &SimHandle) -> u64 {
    sim.counters()
        .servicenow
        .tickets_by_correlation_id
        .iter()
        .filter(|(id, _)| id.starts_with(socbridge_store::CORRELATION_PREFIX))
        .map(|(_, n)| *n)
        .sum()
}

/// Phase 2: rounds of "resolve every open incident, then new events open new ones", with the
/// `serve` loop running; the latencies of the incidents opened.
async fn latency_phase(
    args: &BenchArgs,
    engine: &Engine,
    store: &Store,
    db: &Db,
    sim: &SimHandle,
    tenants: &[String],
) -> anyhow::Result<Latency> {
    let mut samples = Vec::new();
    let mut unmatched = 0;
    if args.latency_rounds == 0 {
        return Ok(Latency::default());
    }
    let stop = CancellationToken::new();
    let serve = tokio::spawn({
        let engine = engine.clone();
        let stop = stop.clone();
        async move { engine.run(stop).await }
    });
    let result = async {
        for round in 1..=args.latency_rounds {
            eprintln!(
                "bench: phase 2, round {round} of {}: resolving the open incidents, then {} new events over {} s",
                args.latency_rounds,
                tenants.len() * LATENCY_EVENTS_PER_TENANT,
                LATENCY_ROUND.as_secs()
            );
            for id in db.open_incidents().await? {
                let update = IncidentUpdate {
                    status: Some(IncidentStatus::Resolved),
                    resolution: Some("benchmark round".into()),
                    actor: "bench".into(),
                    ..IncidentUpdate::default()
                };
                store.update_incident(id, None, &update).await?;
            }
            wait_for(move || async move { Ok(store.outbox_stats().await?.pending == 0) }).await?;
            let floor = db.max_incident_id().await?;
            let total = tenants.len() * LATENCY_EVENTS_PER_TENANT;
            let spacing = LATENCY_ROUND / u32::try_from(total).unwrap_or(u32::MAX);
            for i in 0..total {
                sim.add_events(AddEvents {
                    tenant: tenants[i % tenants.len()].clone(),
                    count: 1,
                    malformed: false,
                    same_second: false,
                    event_type_id: None,
                });
                tokio::time::sleep(spacing).await;
            }
            // Done when every event is stored and every incident has its ticket.
            wait_for(move || async move {
                let counts = store.counts(None).await?;
                let served: u64 = sim
                    .counters()
                    .secure_endpoint
                    .tenants
                    .values()
                    .map(|t| t.events_high_priority)
                    .sum();
                Ok(u64::try_from(counts.findings).is_ok_and(|f| f == served)
                    && u64::try_from(counts.incidents)
                        .is_ok_and(|i| i == socbridge_tickets(sim))
                    && store.outbox_stats().await?.pending == 0)
            })
            .await?;
            let upto = db.max_incident_id().await?;
            let l = latencies(db, sim, floor, upto).await?;
            unmatched += l.unmatched;
            samples.extend(l.samples_ms);
        }
        anyhow::Ok(())
    }
    .await;
    stop.cancel();
    serve.await.context("the serve loop panicked")??;
    result?;
    let mut l = summarise(samples);
    l.unmatched = unmatched;
    Ok(l)
}

/// Waits until `check` holds, polling every 100 ms, for at most [`PHASE_DEADLINE`].
async fn wait_for<F, Fut>(check: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let until = Instant::now() + PHASE_DEADLINE;
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() >= until {
            anyhow::bail!(
                "the pipeline did not catch up within {} s",
                PHASE_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Samples {
    samples_ms: Vec<f64>,
    unmatched: usize,
}

/// Ticket latencies of the incidents with ids in `(after, upto]`: from the emulator's first
/// delivery of the event that opened the incident to its ticket's creation at the emulator.
async fn latencies(db: &Db, sim: &SimHandle, after: i64, upto: i64) -> anyhow::Result<Samples> {
    let created = sim.servicenow_ticket_times();
    let mut served: HashMap<String, HashMap<u64, SystemTime>> = HashMap::new();
    let mut out = Samples {
        samples_ms: Vec::new(),
        unmatched: 0,
    };
    for (tenant, id, key) in db.incident_openers(after, upto).await? {
        let served = served
            .entry(tenant.clone())
            .or_insert_with(|| sim.secure_endpoint_served_at(&tenant));
        // A Secure Endpoint finding's key starts with the event id.
        let read = key
            .as_deref()
            .and_then(|k| k.split(':').next())
            .and_then(|id| id.parse::<u64>().ok())
            .and_then(|id| served.get(&id));
        let ticket = created.get(&socbridge_store::correlation_id(&tenant, id));
        match (read, ticket) {
            (Some(read), Some(ticket)) => out.samples_ms.push(
                ticket
                    .duration_since(*read)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0,
            ),
            _ => out.unmatched += 1,
        }
    }
    Ok(out)
}

impl From<Samples> for Latency {
    fn from(s: Samples) -> Latency {
        let mut l = summarise(s.samples_ms);
        l.unmatched = s.unmatched;
        l
    }
}

fn summarise(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let pick = |p: f64| -> f64 {
        if ms.is_empty() {
            return 0.0;
        }
        // Nearest rank.
        let rank = ((p / 100.0) * ms.len() as f64).ceil() as usize;
        ms[rank.clamp(1, ms.len()) - 1]
    };
    Latency {
        samples: ms.len(),
        unmatched: 0,
        p50: pick(50.0),
        p95: pick(95.0),
        p99: pick(99.0),
        max: ms.last().copied().unwrap_or(0.0),
    }
}

/// Phase 3: the findings with ids up to `upto` (phase 1's), in id order, inserted into a
/// fresh SQLite file with the findings table's columns, unique key and indexes, 500 rows per
/// transaction. Only the inserts and commits are timed.
async fn raw_insert(db: &Db, path: &Path, upto: i64) -> anyhow::Result<RawInsert> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
        }
    }
    // The store's settings: WAL, synchronous NORMAL, the file read through a memory map.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .pragma("mmap_size", socbridge_store::SQLITE_MMAP_BYTES.to_string())
        .connect()
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    sqlx::raw_sql(
        "CREATE TABLE findings (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            tenant_id   INTEGER NOT NULL,
            source_id   INTEGER NOT NULL,
            incident_id INTEGER,
            source_kind TEXT    NOT NULL,
            vendor_key  TEXT    NOT NULL,
            observed_at INTEGER NOT NULL,
            ingested_at INTEGER NOT NULL,
            severity    INTEGER NOT NULL,
            title       TEXT    NOT NULL,
            event_type  TEXT    NOT NULL,
            subject_key TEXT,
            observables TEXT    NOT NULL,
            raw         TEXT    NOT NULL,
            UNIQUE (tenant_id, source_id, vendor_key)
        ) STRICT;
        CREATE INDEX findings_by_incident ON findings (incident_id, observed_at);
        CREATE INDEX findings_by_source ON findings (source_id);",
    )
    .execute(&mut conn)
    .await
    .context("creating the raw-insert table")?;
    let mut after = 0;
    let mut rows = 0u64;
    let mut spent = Duration::ZERO;
    loop {
        let batch = db.findings_after(after, upto, RAW_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.0;
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        for r in &batch {
            sqlx::query(
                "INSERT INTO findings (tenant_id, source_id, source_kind, vendor_key, observed_at,
                                       ingested_at, severity, title, event_type, subject_key,
                                       observables, raw)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(r.1)
            .bind(r.2)
            .bind(&r.3)
            .bind(&r.4)
            .bind(r.5)
            .bind(r.6)
            .bind(r.7)
            .bind(&r.8)
            .bind(&r.9)
            .bind(&r.10)
            .bind(&r.11)
            .bind(&r.12)
            .execute(&mut *tx)
            .await
            .context("inserting a raw row")?;
        }
        tx.commit().await?;
        spent += started.elapsed();
        rows += batch.len() as u64;
    }
    conn.close().await?;
    let seconds = spent.as_secs_f64();
    Ok(RawInsert {
        rows,
        seconds,
        rows_per_second: if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The scale run

async fn scale(
    cli: &Cli,
    args: &BenchArgs,
    dir: &Path,
    sim_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ScaleFigures> {
    let load_average_start = load_average();
    let k = args.speedup;
    let kf = k as f64;
    let interval = args.poll_interval.as_secs() / k;
    eprintln!(
        "bench: scale run: starting the emulators with {} tenants (three vendors, ServiceNow)",
        args.scale_tenants
    );
    let sim = start_sim(
        sim_rt,
        SimConfig {
            tenants: usize::try_from(args.scale_tenants)?,
            seed: args.seed,
            rate_per_minute: SCALE_SE_PER_MINUTE * kf,
            // No backlog: the run measures the steady state of arrivals, not a first import.
            initial_events_per_tenant: 0,
            symantec: SymantecConfig {
                incidents_per_tenant: 0,
                rate_per_minute: SCALE_MSS_PER_MINUTE * kf,
                ..SymantecConfig::default()
            },
            umbrella: UmbrellaConfig {
                records_per_org: 0,
                rate_per_minute: SCALE_UMBRELLA_PER_MINUTE * kf,
                ..UmbrellaConfig::default()
            },
            ..SimConfig::default()
        },
    )
    .await?;
    let rss_emulators_mib = mib(status_kib("VmRSS"));
    // The windows of a poll are wall-clock windows over the events' times: scaled too.
    let defaults = format!(
        "poll_interval = \"{interval}s\"\nlookback = \"{}s\"\noverlap = \"{}s\"\n",
        (600 / k).max(1),
        (120 / k).max(1)
    );
    let config = write_config(
        &sim,
        dir,
        &ConfigOptions {
            servicenow_section: true,
            symantec_sources: true,
            umbrella_sources: true,
        },
        &defaults,
        Some((60 / k).max(1)),
    )?;
    let (store, db) = open_db(cli, dir).await?;
    let result = scale_on(args, dir, &sim, &store, &config, interval).await;
    store.close().await;
    db.finish().await;
    sim.shutdown().await;
    let mut figures = result?;
    figures.rss_emulators_mib = rss_emulators_mib;
    figures.database = db.name();
    figures.load_average_start = load_average_start;
    figures.load_average_end = load_average();
    Ok(figures)
}

async fn scale_on(
    args: &BenchArgs,
    dir: &Path,
    sim: &SimHandle,
    store: &Store,
    config: &Config,
    interval: u64,
) -> anyhow::Result<ScaleFigures> {
    let k = args.speedup;
    let kf = k as f64;
    let opts = EngineOptions {
        tick: Duration::from_secs(1) / u32::try_from(k)?,
        ..EngineOptions::default()
    };
    eprintln!("bench: scale run: applying the config (tenants, sources, sealed secrets)");
    let engine = crate::demo::start_engine(dir, store, config, opts.clone()).await?;
    let sources = store.list_sources(None).await?.len() as u64;
    let stop = CancellationToken::new();
    let serve = tokio::spawn({
        let engine = engine.clone();
        let stop = stop.clone();
        async move { engine.run(stop).await }
    });
    let result = async {
        // Warm-up: every source polled once and no ticket work waiting, then one more
        // interval.
        eprintln!("bench: scale run: warming up (every source polled once, then one interval)");
        wait_for(move || async move {
            Ok(store
                .list_sources(None)
                .await?
                .iter()
                .all(|s| s.last_poll_at.is_some())
                && store.outbox_stats().await?.pending == 0)
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let measured = Duration::from_secs(args.minutes * 60) / u32::try_from(k)?;
        eprintln!(
            "bench: scale run: measuring {} simulated minutes ({:.0} s)",
            args.minutes,
            measured.as_secs_f64()
        );
        let c0 = sim.counters();
        let cpu0 = cpu_now();
        let started = Instant::now();
        let mut left = measured;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(5));
            tokio::time::sleep(step).await;
            left -= step;
            eprintln!(
                "bench:   {:>5.1} s of {:.0} s, {:.1} CPU seconds",
                started.elapsed().as_secs_f64(),
                measured.as_secs_f64(),
                cpu_now().total - cpu0.total
            );
        }
        let wall = started.elapsed().as_secs_f64();
        let cpu1 = cpu_now();
        let c1 = sim.counters();
        let now = socbridge_model::Timestamp::now();
        let lag = store
            .list_sources(None)
            .await?
            .iter()
            .map(|s| {
                s.last_poll_at.map_or(f64::INFINITY, |t| {
                    now.as_micros().saturating_sub(t.as_micros()) as f64 / 1e6
                })
            })
            .fold(0.0, f64::max);
        anyhow::Ok((wall, cpu1 - cpu0, c0, c1, lag))
    }
    .await;
    stop.cancel();
    serve.await.context("the serve loop panicked")??;
    let (wall, cpu, c0, c1, lag) = result?;
    // Let the tickets of the last polls go out before counting them.
    let left = engine.drain_outbox(PHASE_DEADLINE).await?;
    let counts = store.counts(None).await?;
    let tickets = socbridge_tickets(sim);
    let simulated = wall * kf;
    let per_min = |a: u64, b: u64| b.saturating_sub(a) as f64 / (simulated / 60.0);
    // A source is on schedule if its last poll is no older than an interval plus a tick and
    // the time one poll takes, in simulated time.
    let max_poll_lag_secs = lag * kf;
    let on_schedule = max_poll_lag_secs <= args.poll_interval.as_secs_f64() * 1.5;
    Ok(ScaleFigures {
        mode: "scale",
        database: "",
        tenants: args.scale_tenants,
        sources,
        poll_interval_secs: args.poll_interval.as_secs(),
        speedup: k,
        simulated_minutes: simulated / 60.0,
        wall_seconds: wall,
        cpu_share_of_one_core: cpu.total / simulated,
        cpu_share_emulators: cpu.sim / simulated,
        cpu_share_socbridge: (cpu.total - cpu.sim) / simulated,
        peak_rss_mib: mib(status_kib("VmHWM")),
        rss_emulators_mib: 0.0,
        requests_per_minute: VendorRequests {
            secure_endpoint: per_min(
                c0.secure_endpoint.requests.total,
                c1.secure_endpoint.requests.total,
            ),
            symantec_mss: per_min(
                c0.symantec_mss.requests.total,
                c1.symantec_mss.requests.total,
            ),
            umbrella: per_min(c0.umbrella.requests.total, c1.umbrella.requests.total),
        },
        max_poll_lag_secs,
        findings: counts.findings,
        incidents: counts.incidents,
        tickets,
        load_average_start: [0.0; 3],
        load_average_end: [0.0; 3],
        ok: on_schedule && left == 0 && u64::try_from(counts.incidents).is_ok_and(|i| i == tickets),
    })
}

// ---------------------------------------------------------------------------------------------
// Set-up helpers

/// Starts the emulators on their own runtime (threads named [`SIM_THREAD`]).
async fn start_sim(rt: &tokio::runtime::Runtime, cfg: SimConfig) -> anyhow::Result<SimHandle> {
    rt.spawn(socbridge_sim::start(cfg))
        .await
        .context("the emulators' start panicked")?
        .context("cannot start the emulators")
}

/// Writes the emulators' config with `[defaults]` (and the ServiceNow sync interval, in
/// seconds) added, and loads it.
fn write_config(
    sim: &SimHandle,
    dir: &Path,
    opts: &ConfigOptions,
    defaults: &str,
    sync_secs: Option<u64>,
) -> anyhow::Result<Config> {
    let path = dir.join("socbridge.toml");
    sim.write_config_with(&path, opts)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let mut text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if let Some(secs) = sync_secs {
        text = text.replacen(
            "\n[servicenow]\n",
            &format!("\n[servicenow]\nsync_interval = \"{secs}s\"\n"),
            1,
        );
    }
    text.push_str("\n[defaults]\n");
    text.push_str(defaults);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Config::load(&path)?)
}

/// The database under measurement, and a second way in for the benchmark's own reads.
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres { pool: sqlx::PgPool, schema: String },
}

/// Runs the same statement on either backend (`$n` placeholders work on both).
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres { pool: $pool, .. } => $body,
        }
    };
}

/// A finding row: id, then the columns of the findings table an insert writes.
type FindingRow = (
    i64,
    i64,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
);

/// Opens a fresh store: SQLite in `dir`, or a schema of its own on the PostgreSQL server of
/// `--database-url` (dropped at the end).
async fn open_db(cli: &Cli, dir: &Path) -> anyhow::Result<(Store, Db)> {
    match &cli.database_url {
        None => {
            let path = dir.join("socbridge.db");
            let store = Store::open_sqlite(&path)
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(sqlx::sqlite::SqliteConnectOptions::new().filename(&path))
                .await
                .with_context(|| format!("cannot open {}", path.display()))?;
            Ok((store, Db::Sqlite(pool)))
        }
        Some(url) => {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            let schema = format!("socbridge_bench_{}_{nanos}", std::process::id());
            let store = Store::connect_in_schema(url, &schema)
                .await
                .with_context(|| format!("cannot open {}", crate::redact_url(url)))?;
            let opts: sqlx::postgres::PgConnectOptions = url
                .parse()
                .map_err(|e| crate::bad_input(format!("--database-url: {e}")))?;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.options([("search_path", schema.as_str())]))
                .await
                .with_context(|| format!("cannot open {}", crate::redact_url(url)))?;
            eprintln!("bench: PostgreSQL schema {schema} (dropped at the end)");
            Ok((store, Db::Postgres { pool, schema }))
        }
    }
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    /// Drops the PostgreSQL schema; closes the pool.
    async fn finish(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres { pool, schema } => {
                let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                if let Err(e) = sqlx::query(&drop).execute(pool).await {
                    eprintln!("bench: could not drop the schema {schema}: {e}");
                }
                pool.close().await;
            }
        }
    }

    async fn max_incident_id(&self) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM incidents";
        Ok(on_db!(self, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .fetch_one(pool)
            .await
            .context("reading the incidents")?))
    }

    async fn max_finding_id(&self) -> anyhow::Result<i64> {
        const SQL: &str = "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM findings";
        Ok(on_db!(self, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .fetch_one(pool)
            .await
            .context("reading the findings")?))
    }

    async fn open_incidents(&self) -> anyhow::Result<Vec<i64>> {
        const SQL: &str = "SELECT id FROM incidents WHERE open_key IS NOT NULL ORDER BY id";
        Ok(on_db!(self, |pool| sqlx::query_scalar::<_, i64>(SQL)
            .fetch_all(pool)
            .await
            .context("reading the open incidents")?))
    }

    /// (tenant, incident id, vendor key of its first finding) for ids in `(after, upto]`.
    async fn incident_openers(
        &self,
        after: i64,
        upto: i64,
    ) -> anyhow::Result<Vec<(String, i64, Option<String>)>> {
        const SQL: &str = "SELECT t.name, i.id,
                (SELECT f.vendor_key FROM findings f WHERE f.incident_id = i.id
                  ORDER BY f.id LIMIT 1)
             FROM incidents i JOIN tenants t ON t.id = i.tenant_id
            WHERE i.id > $1 AND i.id <= $2 ORDER BY i.id";
        Ok(on_db!(self, |pool| sqlx::query_as::<
            _,
            (String, i64, Option<String>),
        >(SQL)
        .bind(after)
        .bind(upto)
        .fetch_all(pool)
        .await
        .context("reading the incidents")?))
    }

    /// Findings with ids in `(after, upto]`, at most `limit`, in id order.
    async fn findings_after(
        &self,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<FindingRow>> {
        const SQL: &str = "SELECT id, tenant_id, source_id, source_kind, vendor_key, observed_at,
                ingested_at, severity, title, event_type, subject_key, observables, raw
             FROM findings WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3";
        Ok(on_db!(self, |pool| sqlx::query_as::<_, FindingRow>(SQL)
            .bind(after)
            .bind(upto)
            .bind(limit)
            .fetch_all(pool)
            .await
            .context("reading the findings")?))
    }
}

// ---------------------------------------------------------------------------------------------
// What the process used, from /proc

#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// User + system seconds of the whole process.
    total: f64,
    /// Of which the emulators' threads.
    sim: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            total: self.total - o.total,
            sim: self.sim - o.sim,
        }
    }
}

fn cpu_now() -> Cpu {
    let total = stat_cpu(Path::new("/proc/self/stat")).map_or(0.0, |(_, s)| s);
    let mut sim = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Some((name, secs)) = stat_cpu(&task.path().join("stat")) {
                if name == SIM_THREAD {
                    sim += secs;
                }
            }
        }
    }
    Cpu { total, sim }
}

/// (name, user + system seconds) from a `stat` file of /proc.
fn stat_cpu(path: &Path) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    // After the name: field 3 (state) onwards; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) as f64 / CLOCK_TICKS))
}

/// A `kB` line of /proc/self/status (`VmHWM`, `VmRSS`).
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(0.0, |k| k as f64 / 1024.0)
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = summarise((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        let one = summarise(vec![7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(summarise(Vec::new()).samples, 0);
    }

    #[test]
    fn proc_stat_names_the_thread_and_adds_user_and_system_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stat");
        std::fs::write(
            &path,
            "42 (sim (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 1 1 1\n",
        )
        .unwrap();
        assert_eq!(stat_cpu(&path), Some(("sim (x) y".to_string(), 3.0)));
    }
}
