//! The engine's integration tests share one rig: the in-process emulators, the config they
//! write, a fresh SQLite store and an engine with test timings, configured from that file.
#![allow(dead_code)]

use socbridge_engine::{Config, Engine, EngineOptions};
use socbridge_secrets::MasterKey;
use socbridge_sim::{ConfigOptions, SimConfig, SimHandle};
use socbridge_store::Store;
use std::time::Duration;

pub struct Rig {
    pub sim: SimHandle,
    pub engine: Engine,
    pub store: Store,
    pub dir: tempfile::TempDir,
}

/// A fixed data set (nothing arrives over time) of `tenants`, from `seed`.
pub fn sim_config(tenants: usize, seed: u64, events: usize) -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().expect("a literal address"),
        tenants,
        seed,
        rate_per_minute: 0.0,
        initial_events_per_tenant: events,
        ..SimConfig::default()
    }
}

/// Production behaviour with waits short enough for a test.
pub fn engine_options() -> EngineOptions {
    EngineOptions {
        http: socbridge_connectors::http::HttpOptions::for_tests(),
        outbox_backoff_min: Duration::from_millis(5),
        outbox_backoff_max: Duration::from_millis(50),
        isolation_deadline: Duration::from_secs(5),
        ..EngineOptions::default()
    }
}

/// Starts the emulators, writes their config with `options`, lets `tune` edit its text, and
/// applies it to a fresh engine.
pub async fn rig_with(
    sim: SimConfig,
    options: &ConfigOptions,
    tune: impl FnOnce(&SimHandle, String) -> String,
) -> Rig {
    let sim = socbridge_sim::start(sim)
        .await
        .expect("the emulators start");
    let dir = tempfile::tempdir().expect("a temp dir");
    let cfg_path = dir.path().join("socbridge.toml");
    sim.write_config_with(&cfg_path, options)
        .expect("the config is written");
    let text = std::fs::read_to_string(&cfg_path).expect("the config reads back");
    std::fs::write(&cfg_path, tune(&sim, text)).expect("the tuned config is written");
    let config = Config::load(&cfg_path).expect("the config loads");
    let store = Store::open_sqlite(&dir.path().join("socbridge.db"))
        .await
        .expect("the store opens");
    let engine = Engine::new(store.clone(), MasterKey::generate(), engine_options());
    engine
        .apply_config(&config)
        .await
        .expect("the config applies");
    Rig {
        sim,
        engine,
        store,
        dir,
    }
}

/// [`rig_with`] with the config as written.
pub async fn rig(sim: SimConfig, options: &ConfigOptions) -> Rig {
    rig_with(sim, options, |_, text| text).await
}
