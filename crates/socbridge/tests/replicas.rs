//! Several `serve` replicas on one PostgreSQL (127.0.0.1:5432 or
//! `SOCBRIDGE_TEST_POSTGRES_URL`; these tests fail, never skip, when it is not there): each
//! job done by one replica at a time, a dead replica's jobs taken over, and a replica that lost
//! its lease unable to commit what it read before. The emulators are the witness.

mod common;
use common::*;
use socbridge_sim::{ConfigOptions, Faults};
use sqlx::Connection as _;
use std::time::{Duration, Instant};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn postgres_url() -> String {
    std::env::var("SOCBRIDGE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into())
}

/// A database of the test's own on the server, dropped when the test ends well.
struct TestDb {
    server: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create(tag: &str) -> TestDb {
        let server = postgres_url();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("socbridge_{tag}_{}_{nanos}", std::process::id());
        let mut conn = sqlx::postgres::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        conn.close().await.unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        TestDb {
            server,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TestDb {
    /// Drops the test's database, best effort (also when the test failed), on a thread and
    /// runtime of its own because `Drop` cannot await.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let mut conn = sqlx::postgres::PgConnection::connect(&server).await?;
                sqlx::Executor::execute(
                    &mut conn,
                    format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                )
                .await?;
                conn.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// Waits for `cond` with a deadline, failing with `what`.
async fn wait_for<F, Fut>(what: &str, secs: u64, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("the replica runs").to_string();
    let sent = std::process::Command::new("kill")
        .args([format!("-{sig}").as_str(), &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{sig} {pid}");
}

/// Starts a `serve` replica on `db` with short leases, its log in `log`.
fn replica(
    data: &std::path::Path,
    config: &std::path::Path,
    db: &TestDb,
    port: u16,
    log: &std::path::Path,
) -> tokio::process::Child {
    let mut cmd = socbridge(data);
    cmd.arg("--config")
        .arg(config)
        .args(["--database-url", &db.url, "--log", "info,sqlx=warn"])
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SOCBRIDGE_LEASE_TTL", "2s")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    cmd.spawn().expect("serve starts")
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    let mut conn = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(sql)
        .fetch_one(&mut conn)
        .await
        .unwrap_or(-1);
    conn.close().await.unwrap();
    n
}

/// Replica A reads a page (the emulator holds its answer for 4 s) and is frozen with
/// SIGSTOP. Its 2 s lease expires; replica B takes the source over and stores the events.
/// When A resumes, its answer is waiting in its socket, and the page it read is refused at
/// commit: its lease is no longer the current grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paused_past_its_lease_cannot_commit_its_stale_page() {
    let db = TestDb::create("sigstop").await;
    let sim = start_sim(1, 41, 30).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &config,
        &ConfigOptions {
            servicenow_section: false,
            symantec_sources: false,
            umbrella_sources: false,
        },
    )
    .unwrap();
    sim.set_faults(Faults {
        rate_slow: 1.0,
        slow_ms: 4000,
        ..Faults::default()
    });

    let port_a = free_port();
    let log_a = dir.path().join("a.log");
    let mut a = replica(&data, &config, &db, port_a, &log_a);
    wait_for("replica A asks for its first page", 60, || async {
        sim.counters().secure_endpoint.faults.slow >= 1
    })
    .await;
    signal(&a, "STOP");
    let stopped_at = Instant::now();
    sim.set_faults(Faults::default());
    let job_token = "SELECT token FROM leases WHERE job LIKE 'poll:%'";
    let token_a = scalar(&db, job_token).await;
    assert_eq!(token_a, 1, "A polls under the first grant");

    let log_b = dir.path().join("b.log");
    let mut b = replica(&data, &config, &db, free_port(), &log_b);
    wait_for(
        "replica B takes the source over and stores it",
        60,
        || async {
            scalar(&db, job_token).await >= 2
                && scalar(&db, "SELECT COUNT(*) FROM findings").await > 0
                && scalar(
                    &db,
                    "SELECT COUNT(*) FROM sources WHERE last_poll_at IS NOT NULL",
                )
                .await
                    == 1
        },
    )
    .await;
    // A's answer went out while it was frozen: the emulator counts a request when it answers.
    wait_for("the emulator answered A's held request", 30, || async {
        sim.counters().secure_endpoint.requests.total >= 2
    })
    .await;
    let stored_before = scalar(&db, "SELECT COUNT(*) FROM findings").await;
    assert!(
        stopped_at.elapsed() > Duration::from_secs(2),
        "A stayed frozen past its lease"
    );

    signal(&a, "CONT");
    let metrics = format!("http://127.0.0.1:{port_a}/metrics");
    let client = reqwest::Client::new();
    let lost = "socbridge_leases_lost_total{work=\"poll\"} 1";
    wait_for("A's stale page is refused", 60, || async {
        match client.get(&metrics).send().await {
            Ok(r) => r.text().await.unwrap_or_default().contains(lost),
            Err(_) => false,
        }
    })
    .await;

    // Every event the emulator holds is stored once, and A committed nothing: no finding
    // came after B's, B still holds the job, under the grant that took it from A.
    let counters = sim.counters();
    let tenant = &sim.endpoints().tenants[0].name;
    let t = &counters.secure_endpoint.tenants[tenant];
    eprintln!("emulator: {t:?}");
    assert_eq!(
        scalar(&db, "SELECT COUNT(*) FROM findings").await,
        stored_before
    );
    assert_eq!(
        u64::try_from(stored_before).unwrap(),
        t.served_distinct_high_priority,
        "every high-priority event served is stored once"
    );
    assert_eq!(scalar(&db, job_token).await, 2, "the job stayed with B");
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(
        log.contains("another replica took this source over"),
        "A's log says why it stopped:\n{log}"
    );
    for child in [&mut a, &mut b] {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
    sim.shutdown().await;
}

/// `socbridge chaos --replicas 3` on a database of its own: three `serve` replicas under the
/// faults of every emulator and a ServiceNow outage, one of them SIGKILLed every few hundred
/// milliseconds to 2 s and restarted, 20 times. The emulators' counters against the store:
/// nothing lost or doubled, one ticket per incident, and no source polled by two replicas
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_under_kills_poll_each_source_once_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args(["--database-url", &postgres_url()]).args([
        "--output",
        "json",
        "chaos",
        "--replicas",
        "3",
        "--kills",
        "20",
        "--tenants",
        "3",
        "--min-ms",
        "300",
        "--max-ms",
        "2000",
    ]);
    if let Ok(seed) = std::env::var("SOCBRIDGE_TEST_SEED") {
        cmd.args(["--seed", &seed]);
    }
    let f = chaos_figures_hold(&run(cmd).await);
    assert_eq!(f["replicas"], 3);
    assert_eq!(f["kills"], 20);
    assert_eq!(f["overlapping_polls"], 0, "{}", f["overlapping_sources"]);
}
