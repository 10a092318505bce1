//! `socbridge demo --once`: the first command of the README. It runs every emulator and the
//! whole pipeline, and exits 0 only when its own check against the emulators holds.

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_once_passes_its_check_against_the_emulators() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = socbridge(&dir.path().join("data"));
    cmd.args(["--output", "json", "demo", "--once", "--tenants", "3"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let summary = json(&out);
    assert_eq!(summary["ok"], true, "{summary}");
    let rows = summary["tenants"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let signals = r["signals"].as_u64().unwrap();
        assert!(signals > 0, "{r}");
        assert_eq!(r["stored"], r["signals"], "{r}");
        assert_eq!(r["tickets"].as_u64(), r["incidents"].as_u64(), "{r}");
        assert_eq!(r["doubled"], 0, "{r}");
        assert!(r["isolated"].as_u64().unwrap() > 0, "{r}");
    }
}
