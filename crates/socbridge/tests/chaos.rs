//! `socbridge chaos` in CI: 20 SIGKILLs of a running `serve` while every emulator injects
//! faults, ServiceNow is down for a stretch, signals keep arriving and analysts close
//! incidents. The figures come from the emulators' own counters set against the store.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_under_faults_lose_nothing_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args([
        "--output",
        "json",
        "chaos",
        "--kills",
        "20",
        "--tenants",
        "2",
    ]);
    if let Ok(seed) = std::env::var("SOCBRIDGE_TEST_SEED") {
        cmd.args(["--seed", &seed]);
    }
    // Nothing lost or doubled, one ticket per incident, isolations made and released.
    let f = chaos_figures_hold(&run(cmd).await);
    assert_eq!(f["kills"], 20);
    assert!(f["kills_during_outage"].as_u64().unwrap() >= 1);
    // The run exercised what it claims to: faults injected at every service.
    for service in ["secure_endpoint", "servicenow", "symantec_mss", "umbrella"] {
        let injected: u64 = f["faults"][service]
            .as_object()
            .unwrap_or_else(|| panic!("fault counters of {service}"))
            .values()
            .filter_map(serde_json::Value::as_u64)
            .sum();
        assert!(injected > 0, "no fault injected at {service}");
    }
}
