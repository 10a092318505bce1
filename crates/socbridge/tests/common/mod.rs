//! Helpers shared by the binary's integration tests: an in-process emulator, and the real
//! `socbridge` binary run as a child process against it.
#![allow(dead_code)]

use socbridge_sim::{SimConfig, SimHandle};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_socbridge");

/// Starts an emulator with a fixed data set (no events arriving over time).
pub async fn start_sim(tenants: usize, seed: u64, initial_events: usize) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants,
        seed,
        rate_per_minute: 0.0,
        initial_events_per_tenant: initial_events,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// A `socbridge` command with a clean environment: no SOCBRIDGE_* leaking in from the
/// developer's shell, the given data dir, and logs off unless asked.
pub fn socbridge(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("SOCBRIDGE_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--data-dir").arg(data_dir);
    cmd.kill_on_drop(true);
    cmd
}

/// Runs to completion with a deadline, failing the test with the output if it hangs.
pub async fn run(mut cmd: Command) -> Output {
    cmd.stdin(std::process::Stdio::null());
    match tokio::time::timeout(Duration::from_secs(180), cmd.output()).await {
        Ok(out) => out.expect("socbridge runs"),
        Err(_) => panic!("socbridge did not finish within 180 s: {cmd:?}"),
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", describe(o)))
}

/// Writes the emulator's ready config into `dir` and returns its path.
pub fn write_config(sim: &SimHandle, dir: &Path) -> PathBuf {
    let path = dir.join("socbridge.toml");
    sim.write_config(&path).expect("config written");
    path
}

/// Adds settings to every source of a config written by the emulator.
pub fn tune_sources(config: &Path, extra: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let tuned = text.replace(
        "kind = \"secure_endpoint\"",
        &format!("kind = \"secure_endpoint\"\n{extra}"),
    );
    assert_ne!(
        text, tuned,
        "the config has secure_endpoint sources to tune"
    );
    std::fs::write(config, tuned).unwrap();
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Sends `signal` (`INT`, `TERM`) to a running child and waits for it to exit, with a
/// deadline; answers its exit status.
pub async fn stop_with(
    child: &mut tokio::process::Child,
    signal: &str,
) -> std::process::ExitStatus {
    let pid = child.id().expect("the child is running").to_string();
    let sent = std::process::Command::new("kill")
        .args([format!("-{signal}").as_str(), &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} {pid}");
    tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("the child did not stop within 60 s of SIG{signal}"))
        .expect("the child's status")
}

/// The figures of a `socbridge --output json chaos` run, checked for what every chaos run
/// promises: it passed its own check, nothing lost or doubled, one ticket per incident, on
/// a real load with isolations made and released.
pub fn chaos_figures_hold(out: &Output) -> serde_json::Value {
    let f = json(out);
    eprintln!("{}", serde_json::to_string_pretty(&f).unwrap());
    assert!(out.status.success(), "{}", describe(out));
    assert_eq!(f["ok"], true);
    assert_eq!(f["lost"], 0);
    assert_eq!(f["stored"], f["signals"]);
    assert_eq!(f["doubled_tickets"], 0);
    assert_eq!(f["tickets"].as_u64(), f["incidents"].as_u64());
    assert!(f["signals"].as_u64().unwrap() > 100, "a real load: {f}");
    assert!(f["isolations_started"].as_u64().unwrap() > 0);
    assert!(f["isolations_released"].as_u64().unwrap() > 0);
    f
}
