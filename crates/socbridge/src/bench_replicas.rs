//! `socbridge bench --replicas 1,2,3`: the same backlog taken in by 1, 2, 3... `serve`
//! replicas sharing one PostgreSQL.
//!
//! For each count N in the list: a fresh PostgreSQL database on the server `--database-url`
//! names (dropped at the end), the emulators in this process with the same seeded data set
//! (`--events` Secure Endpoint events spread over `--tenants` tenants, plus each tenant's
//! Symantec MSS incidents and Umbrella records; ServiceNow ticketing on, the demo containment
//! policy), and N `serve` child processes of this executable with a short poll interval and
//! the default page size and cap. The clock runs from the children's start until the
//! database holds every signal the emulators have for the types the default filters ask for
//! (the emulators' own data and counters are the witness) and every incident has its ticket
//! at the ServiceNow emulator. Then, untimed, the demo's per-tenant check (every signal once,
//! one ticket per incident, each isolation once), the leases each replica holds, the
//! children's CPU time and peak RSS; the children are stopped with SIGTERM (they release
//! their leases) and the database is dropped.

use crate::cli::{BenchArgs, Cli, Output};
use crate::commands::table;
use crate::demo::{TenantSummary, prepare_on, sim_config, summarise};
use crate::run_db::RunDatabase;
use anyhow::Context as _;
use serde::Serialize;
use socbridge_sim::SimHandle;
use sqlx::Connection as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long one run may take to store the backlog before the benchmark gives up.
const RUN_DEADLINE: Duration = Duration::from_secs(600);
/// How long the untimed check after a run may wait for the last containment actions.
const CHECK_DEADLINE: Duration = Duration::from_secs(60);
/// The replicas' lease time to live: rounds every second, so that replicas started together
/// settle on their fair shares within the first seconds of the run.
const LEASE_TTL: &str = "3s";
/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`.
const CLOCK_TICKS: f64 = 100.0;

#[derive(Debug, Serialize)]
struct Figures {
    mode: &'static str,
    database: &'static str,
    tenants: u64,
    /// Secure Endpoint events the emulator held at start (every run has the same).
    events: u64,
    runs: Vec<Run>,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Run {
    replicas: usize,
    /// Signals the emulators hold for the default filters: high-priority Secure Endpoint
    /// events (and the one malformed record), Emergency/Critical MSS incidents, blocked
    /// Command and Control / Cryptomining Umbrella records.
    signals: u64,
    /// Signals stored when the clock stopped (findings, an MSS incident once, quarantined).
    stored: u64,
    findings: i64,
    incidents: i64,
    /// Tickets the ServiceNow emulator created for them (must equal `incidents`).
    tickets: u64,
    /// From the children's start until every signal was stored and every incident ticketed.
    seconds: f64,
    findings_per_second: f64,
    /// `findings_per_second` over that of the run with 1 replica (when the list has one).
    speedup: Option<f64>,
    /// CPU time of the `serve` children over the timed run, all of them together.
    cpu_seconds_replicas: f64,
    /// CPU time of this process meanwhile: the emulators (and the benchmark's waiting).
    cpu_seconds_emulators: f64,
    /// CPU time of the PostgreSQL server meanwhile, for this run's database: its backends
    /// and the server's shared processes (0 when the server runs on another machine).
    cpu_seconds_postgres: f64,
    /// Share of the machine's CPU time (all cores) that was busy meanwhile, anyone's.
    machine_busy: f64,
    per_replica: Vec<Replica>,
    /// Poll requests that overlapped another poll of the same source (must be 0).
    overlapping_polls: u64,
    overlapping_sources: Vec<String>,
    load_average_start: [f64; 3],
    load_average_end: [f64; 3],
    /// The demo's per-tenant check, run after the clock stopped.
    tenants_ok: bool,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Replica {
    pid: u32,
    cpu_seconds: f64,
    peak_rss_mib: f64,
    /// Leases held at the end, by kind of job (`poll`, `outbox`, ...).
    leases: BTreeMap<String, i64>,
}

/// Refuses what cannot be run (exit 2): a replica count out of range, `--scale`, no
/// PostgreSQL server.
fn validate(cli: &Cli, args: &BenchArgs) -> anyhow::Result<String> {
    if args.scale {
        return Err(crate::bad_input(
            "--replicas measures the throughput run; it cannot be combined with --scale",
        ));
    }
    if let Some(n) = args.replicas.iter().find(|n| !(1..=16).contains(*n)) {
        return Err(crate::bad_input(format!(
            "--replicas: each count must be 1 to 16, got {n}"
        )));
    }
    match cli.database_url.as_deref() {
        Some(url) if url.starts_with("postgres:") || url.starts_with("postgresql:") => {
            Ok(url.to_string())
        }
        _ => Err(crate::bad_input(
            "--replicas needs --database-url postgres://... (a PostgreSQL server: each run \
             makes a database of its own there and drops it after); replicas share their \
             jobs through PostgreSQL only",
        )),
    }
}

pub async fn run(cli: &Cli, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let server = validate(cli, args)?;
    let exe = std::env::current_exe().context("cannot find the socbridge binary")?;
    let mut runs: Vec<Run> = Vec::new();
    for &n in &args.replicas {
        let run = one_run(cli, args, &server, &exe, usize::from(n)).await?;
        runs.push(run);
    }
    let base = runs
        .iter()
        .find(|r| r.replicas == 1)
        .map(|r| r.findings_per_second);
    for r in &mut runs {
        r.speedup = base.filter(|b| *b > 0.0).map(|b| r.findings_per_second / b);
    }
    let per_tenant = args.events.div_ceil(args.tenants);
    let figures = Figures {
        mode: "replicas",
        database: "postgres",
        tenants: args.tenants,
        events: per_tenant * args.tenants,
        ok: runs.iter().all(|r| r.ok),
        runs,
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&figures)?),
        Output::Table => print_table(&figures),
    }
    Ok(if figures.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn one_run(
    cli: &Cli,
    args: &BenchArgs,
    server: &str,
    exe: &Path,
    n: usize,
) -> anyhow::Result<Run> {
    let db = RunDatabase::create(server, "socbridge_bench").await?;
    let result = measure(cli, args, &db, exe, n).await;
    db.drop_database().await;
    result
}

async fn measure(
    cli: &Cli,
    args: &BenchArgs,
    db: &RunDatabase,
    exe: &Path,
    n: usize,
) -> anyhow::Result<Run> {
    let dir = cli.data_dir.join("bench-replicas");
    let per_tenant = usize::try_from(args.events.div_ceil(args.tenants))?;
    let mut sim_cfg = sim_config(u16::try_from(args.tenants)?, args.seed, 0.0);
    sim_cfg.initial_events_per_tenant = per_tenant;
    // As in the throughput run: the backlog spreads over the last hour and the first poll
    // looks back two, so every event is in reach.
    sim_cfg.initial_spread = Duration::from_secs(3600);
    let world = prepare_on(&dir, Some(db.url()), sim_cfg, |text| {
        format!("{text}\n[defaults]\npoll_interval = \"1s\"\nlookback = \"2h\"\n")
    })
    .await?;
    let result = measure_on(&world, &dir, db, exe, n).await;
    world.store.close().await;
    world.sim.shutdown().await;
    result
}

async fn measure_on(
    world: &crate::demo::World,
    dir: &Path,
    db: &RunDatabase,
    exe: &Path,
    n: usize,
) -> anyhow::Result<Run> {
    let sim = &world.sim;
    // The emulators' data is fixed: with nothing stored yet, the check's rows give what each
    // tenant must end with.
    let signals: u64 = summarise(&world.store, sim)
        .await?
        .iter()
        .map(|r| r.signals)
        .sum();
    let mut conn = sqlx::postgres::PgConnection::connect(db.url())
        .await
        .context("cannot connect to the run's database")?;
    let log_path = dir.join("serve.log");
    eprintln!(
        "bench: {n} replica(s): {signals} signals in the emulators; starting {n} serve \
         process(es) (log in {})",
        log_path.display()
    );
    let load_average_start = load_average();
    let cpu_self0 = self_cpu_seconds();
    let cpu_pg0 = postgres_cpu_seconds(db.name());
    let machine0 = machine_cpu();
    let started = Instant::now();
    let mut children = (0..n)
        .map(|_| serve(exe, dir, &world.config_path, &log_path, db.url()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let result = async {
        let mut last_said = Instant::now();
        let (progress, seconds) = loop {
            let p = progress(&mut conn, sim).await?;
            if p.stored >= signals && p.incidents > 0 && p.tickets == p.incidents as u64 {
                break (p, started.elapsed().as_secs_f64());
            }
            for child in &mut children {
                if let Some(status) = child.try_wait().context("cannot check on serve")? {
                    anyhow::bail!(
                        "a serve replica ended on its own ({status}); see {}",
                        log_path.display()
                    );
                }
            }
            if started.elapsed() > RUN_DEADLINE {
                anyhow::bail!(
                    "{} of {signals} signals stored and {} of {} incidents ticketed after {} s; \
                     see {}",
                    p.stored,
                    p.tickets,
                    p.incidents,
                    RUN_DEADLINE.as_secs(),
                    log_path.display()
                );
            }
            if last_said.elapsed() >= Duration::from_secs(2) {
                last_said = Instant::now();
                eprintln!(
                    "bench:   {:>5.1} s: {} of {signals} signals stored, {} of {} incidents ticketed",
                    started.elapsed().as_secs_f64(),
                    p.stored,
                    p.tickets,
                    p.incidents
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let cpu: Vec<f64> = children
            .iter()
            .map(|c| c.id().and_then(pid_cpu_seconds).unwrap_or(0.0))
            .collect();
        let cpu_seconds_emulators = self_cpu_seconds() - cpu_self0;
        let cpu_seconds_postgres = (postgres_cpu_seconds(db.name()) - cpu_pg0).max(0.0);
        let machine1 = machine_cpu();
        let machine_busy = if machine1.1 > machine0.1 {
            (machine1.0 - machine0.0) / (machine1.1 - machine0.1)
        } else {
            0.0
        };
        let load_average_end = load_average();
        eprintln!(
            "bench: {n} replica(s): {} signals stored and {} incidents ticketed in {seconds:.2} s; \
             checking",
            progress.stored, progress.incidents
        );
        // Untimed: the demo's check, once the last isolations are done.
        let check_deadline = Instant::now() + CHECK_DEADLINE;
        let rows = loop {
            let rows = summarise(&world.store, sim).await?;
            if rows.iter().all(|r| r.ok) || Instant::now() >= check_deadline {
                break rows;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let leases = leases_by_pid(&mut conn).await?;
        let per_replica = children
            .iter()
            .zip(&cpu)
            .map(|(c, cpu)| {
                let pid = c.id().unwrap_or(0);
                Replica {
                    pid,
                    cpu_seconds: *cpu,
                    peak_rss_mib: peak_rss_mib(pid),
                    leases: leases.get(&pid).cloned().unwrap_or_default(),
                }
            })
            .collect::<Vec<_>>();
        let counters = sim.counters();
        let overlapping_polls = counters.overlapping_polls();
        let tenants_ok = rows.iter().all(|r| r.ok);
        let findings_per_second = progress.findings as f64 / seconds;
        Ok(Run {
            replicas: n,
            signals,
            stored: progress.stored,
            findings: progress.findings,
            incidents: progress.incidents,
            tickets: progress.tickets,
            seconds,
            findings_per_second,
            speedup: None,
            cpu_seconds_replicas: cpu.iter().sum(),
            cpu_seconds_emulators,
            cpu_seconds_postgres,
            machine_busy,
            per_replica,
            overlapping_polls,
            overlapping_sources: counters.overlapping_sources(),
            load_average_start,
            load_average_end,
            tenants_ok,
            ok: tenants_ok
                && overlapping_polls == 0
                && progress.stored == signals
                && summed(&rows, |r| r.tickets) == summed(&rows, |r| r.incidents.max(0) as u64),
        })
    }
    .await;
    for child in &mut children {
        stop(child).await;
    }
    let _ = conn.close().await;
    result
}

fn summed(rows: &[TenantSummary], f: impl Fn(&TenantSummary) -> u64) -> u64 {
    rows.iter().map(f).sum()
}

/// Where the run stands: one read of the database, the tickets from the emulator.
struct Progress {
    stored: u64,
    findings: i64,
    incidents: i64,
    tickets: u64,
}

async fn progress(
    conn: &mut sqlx::postgres::PgConnection,
    sim: &SimHandle,
) -> anyhow::Result<Progress> {
    // Signals stored as the demo's check counts them: an MSS incident once however many
    // versions of it (`<number>@<changed>`) were stored, a quarantined record once.
    let (findings, mss_versions, mss_incidents, quarantined, incidents): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM findings),
                    (SELECT COUNT(*) FROM findings f JOIN sources s ON s.id = f.source_id
                      WHERE s.name = 'symantec-mss'),
                    (SELECT COUNT(DISTINCT s.tenant_id::text || ' ' || split_part(f.vendor_key, '@', 1))
                       FROM findings f JOIN sources s ON s.id = f.source_id
                      WHERE s.name = 'symantec-mss'),
                    (SELECT COUNT(*) FROM quarantine),
                    (SELECT COUNT(*) FROM incidents)",
        )
        .fetch_one(&mut *conn)
        .await
        .context("cannot count what the replicas stored")?;
    let stored = findings - mss_versions + mss_incidents + quarantined;
    let tickets = sim
        .counters()
        .servicenow
        .tickets_by_correlation_id
        .iter()
        .filter(|(id, _)| id.starts_with(socbridge_store::CORRELATION_PREFIX))
        .map(|(_, n)| *n)
        .sum();
    Ok(Progress {
        stored: u64::try_from(stored).unwrap_or(0),
        findings,
        incidents,
        tickets,
    })
}

/// Leases held now, per process id of their holder and kind of job.
async fn leases_by_pid(
    conn: &mut sqlx::postgres::PgConnection,
) -> anyhow::Result<BTreeMap<u32, BTreeMap<String, i64>>> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT r.pid, split_part(l.job, ':', 1), COUNT(*)
           FROM leases l JOIN replicas r ON r.id = l.holder
          GROUP BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .context("cannot read the leases")?;
    let mut out: BTreeMap<u32, BTreeMap<String, i64>> = BTreeMap::new();
    for (pid, kind, count) in rows {
        if let Ok(pid) = u32::try_from(pid) {
            out.entry(pid).or_default().insert(kind, count);
        }
    }
    Ok(out)
}

/// Starts one `serve` replica on the run's database, its log lines after the others'.
fn serve(
    exe: &Path,
    dir: &Path,
    config: &Path,
    log: &Path,
    database_url: &str,
) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    tokio::process::Command::new(exe)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(config)
        .args(["--log", "info,sqlx=warn", "--database-url", database_url])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("SOCBRIDGE_LEASE_TTL", LEASE_TTL)
        // The child runs on the run's own database, never on one named elsewhere.
        .env_remove("SOCBRIDGE_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start serve")
}

/// SIGTERM (the replica releases its leases and exits), SIGKILL if it has not within 30 s.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(pid, "serve did not stop within 30 s of SIGTERM; killing it");
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// utime + stime of a process, from `/proc/<pid>/stat`.
fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

fn self_cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The fields after the command name (which may hold spaces) in parentheses: utime and
    // stime are the 12th and 13th of them.
    let rest = text.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

/// utime + stime of the processes of a PostgreSQL server on this machine that work for the
/// database `db`: its backends and autovacuum workers (their titles name it), and the
/// server's shared ones (postmaster, checkpointer, writers). Other databases' backends are
/// left out.
fn postgres_cpu_seconds(db: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| {
            let path = e.path().join("stat");
            let text = std::fs::read_to_string(&path).ok()?;
            let name = text.split_once('(')?.1.rsplit_once(')')?.0;
            if name != "postgres" {
                return None;
            }
            let title = std::fs::read(e.path().join("cmdline")).ok()?;
            let title = String::from_utf8_lossy(&title);
            let shared = !title.contains('(')
                && !title.contains("[local]")
                && !title.contains("autovacuum worker");
            if !(shared || title.contains(db)) {
                return None;
            }
            stat_cpu_seconds(path.to_str()?)
        })
        .sum()
}

/// (busy, total) jiffies of all cores, from the first line of `/proc/stat`.
fn machine_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let idle = fields.get(3).copied().unwrap_or(0.0) + fields.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// VmHWM of a running process.
fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0.0, |kib| kib as f64 / 1024.0)
}

fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, v) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = v.parse().unwrap_or(0.0);
    }
    out
}

fn print_table(f: &Figures) {
    println!(
        "socbridge bench --replicas (PostgreSQL, {} tenants, {} Secure Endpoint events plus \
         Symantec MSS and Umbrella; ServiceNow tickets)",
        f.tenants, f.events
    );
    let mut t = table(&[
        "REPLICAS",
        "FINDINGS",
        "SECONDS",
        "FINDINGS/S",
        "SPEEDUP",
        "TICKETS",
        "CPU S: REPLICAS",
        "EMULATORS",
        "POSTGRES",
        "MACHINE BUSY",
        "OVERLAPPING POLLS",
        "CHECK",
    ]);
    for r in &f.runs {
        t.add_row(vec![
            r.replicas.to_string(),
            r.findings.to_string(),
            format!("{:.2}", r.seconds),
            format!("{:.0}", r.findings_per_second),
            r.speedup.map_or("-".into(), |s| format!("{s:.2}x")),
            format!("{} of {}", r.tickets, r.incidents),
            format!("{:.1}", r.cpu_seconds_replicas),
            format!("{:.1}", r.cpu_seconds_emulators),
            format!("{:.1}", r.cpu_seconds_postgres),
            format!("{:.0}%", r.machine_busy * 100.0),
            r.overlapping_polls.to_string(),
            if r.ok { "ok" } else { "MISMATCH" }.to_string(),
        ]);
    }
    println!("{t}");
    for r in &f.runs {
        let each = |show: &dyn Fn(&Replica) -> String| {
            r.per_replica
                .iter()
                .map(show)
                .collect::<Vec<_>>()
                .join(" / ")
        };
        println!(
            "  {} replica(s): peak RSS {} MiB; leases held {}; load average {:.2} at start, {:.2} at end",
            r.replicas,
            each(&|p| format!("{:.0}", p.peak_rss_mib)),
            each(&|p| {
                let held = p
                    .leases
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(" + ");
                if held.is_empty() { "none".into() } else { held }
            }),
            r.load_average_start[0],
            r.load_average_end[0]
        );
        if !r.overlapping_sources.is_empty() {
            println!(
                "    polls overlapped at {}",
                r.overlapping_sources.join(", ")
            );
        }
    }
    println!(
        "  {}",
        if f.ok {
            "every signal stored once, one ticket per incident, no source polled by two replicas at once: check passed"
        } else {
            "CHECK FAILED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_read_past_a_command_name_with_spaces() {
        let dir = std::env::temp_dir().join(format!("socbridge-stat-{}", std::process::id()));
        std::fs::write(
            &dir,
            "42 (serve (x) y) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 9 0 1 1 1",
        )
        .unwrap();
        let secs = stat_cpu_seconds(dir.to_str().unwrap());
        let _ = std::fs::remove_file(&dir);
        assert_eq!(secs, Some(3.0));
        assert!(self_cpu_seconds() >= 0.0);
    }
}
