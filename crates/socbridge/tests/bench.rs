//! `socbridge bench` at a tiny size: the figures it prints are there and hang together, and
//! its counts are the emulators' (the benchmark's check, not timing, is under test here).

mod common;
use common::*;

fn number(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"))
}

fn assert_percentiles(l: &serde_json::Value) {
    let (p50, p95, p99, max) = (
        number(l, "p50"),
        number(l, "p95"),
        number(l, "p99"),
        number(l, "max"),
    );
    assert!(
        0.0 <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "percentiles out of order: {l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_stores_every_served_event_and_times_tickets_and_the_raw_insert() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args([
        "--output",
        "json",
        "bench",
        "--events",
        "300",
        "--tenants",
        "3",
        "--latency-rounds",
        "1",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let f = json(&out);
    assert_eq!(f["mode"], "throughput", "{f}");
    assert_eq!(f["database"], "sqlite", "{f}");
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(f["tenants"], 3, "{f}");
    // The emulator's witness: every high-priority event it held was served, and every one
    // served is a finding; every incident has exactly its ticket.
    assert!(number(&f, "events") >= 300.0, "{f}");
    let served = f["served"].as_u64().unwrap();
    assert!(served > 0, "{f}");
    assert_eq!(f["served"], f["events_high_priority"], "{f}");
    assert_eq!(f["findings"].as_u64(), Some(served), "{f}");
    // Records sent, re-reads included: at least every event once.
    assert!(f["records_served"].as_u64().unwrap() >= served, "{f}");
    assert!(f["incidents"].as_u64().unwrap() > 0, "{f}");
    assert_eq!(f["tickets"], f["incidents"], "{f}");
    // The raw insert wrote exactly the rows phase 1 stored.
    assert_eq!(f["raw_insert"]["rows"].as_u64(), Some(served), "{f}");
    for key in [
        "findings_per_second",
        "seconds",
        "ratio_to_raw",
        "cpu_seconds",
    ] {
        assert!(number(&f, key) > 0.0, "{key}: {f}");
    }
    assert!(number(&f["raw_insert"], "rows_per_second") > 0.0, "{f}");
    // Ticket latency: one round opens new incidents on every tenant, each paired with its
    // ticket and with the event that opened it.
    let lat = &f["ticket_latency_ms"];
    assert!(lat["samples"].as_u64().unwrap() >= 3, "{lat}");
    assert_eq!(lat["unmatched"], 0, "{lat}");
    assert_percentiles(lat);
    let backlog = &f["ticket_latency_backlog_ms"];
    assert_eq!(backlog["samples"], f["incidents"], "{f}");
    assert_eq!(backlog["unmatched"], 0, "{f}");
    assert_percentiles(backlog);
    // Memory: the peak is at least what the emulators alone held.
    assert!(
        number(&f, "peak_rss_mib") >= number(&f, "rss_emulators_mib"),
        "{f}"
    );
    assert!(number(&f, "rss_emulators_mib") > 0.0, "{f}");
    assert_eq!(f["load_average_start"].as_array().map(Vec::len), Some(3));
    // Progress went to stderr, the figures alone to stdout.
    assert!(stderr(&out).contains("phase 1"), "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scale_polls_every_source_on_schedule_and_reports_cpu_and_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args([
        "--output",
        "json",
        "bench",
        "--scale",
        "--scale-tenants",
        "20",
        "--speedup",
        "60",
        "--minutes",
        "2",
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let f = json(&out);
    assert_eq!(f["mode"], "scale", "{f}");
    assert_eq!(f["ok"], true, "{f}");
    assert_eq!(f["tenants"], 20, "{f}");
    // Three sources per tenant, each polled within its interval (60 s simulated).
    assert_eq!(f["sources"], 60, "{f}");
    assert!(number(&f, "max_poll_lag_secs") <= 90.0, "{f}");
    // Each Secure Endpoint source asks at least once per simulated minute.
    let se = number(&f["requests_per_minute"], "secure_endpoint");
    assert!(se >= 15.0, "{f}");
    assert!(
        number(&f["requests_per_minute"], "symantec_mss") > 0.0,
        "{f}"
    );
    assert!(number(&f["requests_per_minute"], "umbrella") > 0.0, "{f}");
    let cpu = number(&f, "cpu_share_of_one_core");
    assert!(cpu > 0.0, "{f}");
    let parts = number(&f, "cpu_share_socbridge") + number(&f, "cpu_share_emulators");
    assert!((parts - cpu).abs() < 1e-6, "{f}");
    assert!(
        number(&f, "peak_rss_mib") >= number(&f, "rss_emulators_mib"),
        "{f}"
    );
    // Arrivals are a few a minute here, so their number is left open; each incident they
    // opened has its ticket.
    assert_eq!(f["tickets"], f["incidents"], "{f}");
}

#[tokio::test]
async fn bench_refuses_bad_arguments_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (args, says) in [
        (vec!["bench", "--events", "0"], "--events"),
        (
            vec!["bench", "--events", "10", "--tenants", "20"],
            "--tenants",
        ),
        (
            vec!["bench", "--scale", "--speedup", "7"],
            "divisible by --speedup",
        ),
        (vec!["bench", "--scale", "--minutes", "0"], "--minutes"),
        (
            vec!["--database-url", "sqlite://x.db", "bench"],
            "postgres://",
        ),
        (vec!["bench", "--events", "many"], "--events"),
        (
            vec!["bench", "--replicas", "1,2"],
            "--database-url postgres://",
        ),
        (
            vec![
                "--database-url",
                "postgres://postgres@127.0.0.1:1/x",
                "bench",
                "--replicas",
                "0,2",
            ],
            "1 to 16",
        ),
        (
            vec![
                "--database-url",
                "postgres://postgres@127.0.0.1:1/x",
                "bench",
                "--scale",
                "--replicas",
                "2",
            ],
            "--scale",
        ),
    ] {
        let mut cmd = socbridge(&dir.path().join("data"));
        cmd.args(&args);
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", describe(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", describe(&out));
    }
}

/// `bench --replicas 1,2` on a PostgreSQL server (127.0.0.1:5432 or
/// `SOCBRIDGE_TEST_POSTGRES_URL`; fails, never skips, when it is not there): each count gets
/// the same data set on a database of its own, every signal is stored, every incident has its
/// ticket, and no source is polled by two replicas at once. Timings are not under test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_replicas_stores_everything_with_one_and_two_replicas() {
    let server = std::env::var("SOCBRIDGE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args(["--database-url", &server, "--output", "json"])
        .args([
            "bench",
            "--replicas",
            "1,2",
            "--events",
            "2000",
            "--tenants",
            "4",
        ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let f = json(&out);
    assert_eq!(f["mode"], "replicas", "{f}");
    assert_eq!(f["ok"], true, "{f}");
    let runs = f["runs"].as_array().expect("runs");
    let counts: Vec<u64> = runs.iter().filter_map(|r| r["replicas"].as_u64()).collect();
    assert_eq!(counts, [1, 2], "{f}");
    for r in runs {
        // The emulators' data set is the same for each count, and all of it was stored.
        assert_eq!(r["signals"], runs[0]["signals"], "{f}");
        assert!(r["signals"].as_u64().unwrap() > 1000, "{f}");
        assert_eq!(r["stored"], r["signals"], "{f}");
        assert_eq!(r["findings"], runs[0]["findings"], "{f}");
        assert!(r["incidents"].as_u64().unwrap() > 0, "{f}");
        assert_eq!(r["tickets"], r["incidents"], "{f}");
        assert_eq!(r["overlapping_polls"], 0, "{f}");
        assert_eq!(r["tenants_ok"], true, "{f}");
        let per = r["per_replica"].as_array().expect("per_replica");
        assert_eq!(per.len() as u64, r["replicas"].as_u64().unwrap(), "{f}");
        // Every source's polls are held by one of the replicas.
        let polls: u64 = per
            .iter()
            .filter_map(|p| p["leases"]["poll"].as_u64())
            .sum();
        assert_eq!(polls, 12, "4 tenants x 3 sources: {f}");
        for p in per {
            assert!(number(p, "cpu_seconds") > 0.0, "{f}");
            assert!(number(p, "peak_rss_mib") > 0.0, "{f}");
        }
    }
    assert!(runs[1]["speedup"].as_f64().is_some(), "{f}");
}
