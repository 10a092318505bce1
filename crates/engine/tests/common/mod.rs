//! The engine's integration tests share one rig: the in-process emulators, the config they
//! write, a fresh store and an engine with test timings, configured from that file.
//!
//! The store is SQLite, or with `SOCBRIDGE_TEST_BACKEND=postgres` a schema of its own on the
//! PostgreSQL server at `SOCBRIDGE_TEST_POSTGRES_URL` (default 127.0.0.1:5432, database
//! `test`), dropped when the rig is: `scripts/test` runs the promise tests both ways.
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
    /// The PostgreSQL schema, dropped with the rig.
    schema: Option<SchemaGuard>,
}

/// A test's PostgreSQL schema (server URL, name), dropped with the guard.
pub struct SchemaGuard(String, String);

impl Drop for SchemaGuard {
    /// Drops the test's schema, best effort (also when the test failed), on a thread and
    /// runtime of its own because `Drop` cannot await.
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(Store::drop_schema(&url, &schema))
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test schema: {e}");
        }
    }
}

impl Rig {
    /// A rig from parts built by a test of its own (`schema` from [`test_store`]).
    pub fn assemble(
        sim: SimHandle,
        engine: Engine,
        store: Store,
        dir: tempfile::TempDir,
        schema: Option<SchemaGuard>,
    ) -> Rig {
        Rig {
            sim,
            engine,
            store,
            dir,
            schema,
        }
    }
}

/// A fresh store on the backend the environment asks for, and the schema to drop after.
pub async fn test_store(dir: &std::path::Path) -> (Store, Option<SchemaGuard>) {
    match std::env::var("SOCBRIDGE_TEST_BACKEND").as_deref() {
        Ok("postgres") => {
            let url = std::env::var("SOCBRIDGE_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            // Unique per test even when two start in the same clock tick.
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let schema = format!(
                "socbridge_engine_{}_{:08x}_{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            let store = Store::connect_in_schema(&url, &schema)
                .await
                .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
            (store, Some(SchemaGuard(url, schema)))
        }
        Ok("sqlite") | Err(_) => (
            Store::open_sqlite(&dir.join("socbridge.db"))
                .await
                .expect("the store opens"),
            None,
        ),
        Ok(other) => panic!("SOCBRIDGE_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
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
    let (store, schema) = test_store(dir.path()).await;
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
        schema,
    }
}

/// [`rig_with`] with the config as written.
pub async fn rig(sim: SimConfig, options: &ConfigOptions) -> Rig {
    rig_with(sim, options, |_, text| text).await
}

/// A TCP proxy in front of a server (the AMQP broker) whose connections a test can cut all at
/// once, as a network failure would, without touching the server.
pub struct CutProxy {
    pub addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: std::net::SocketAddr) -> CutProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the proxy binds");
        let addr = listener.local_addr().expect("a bound address");
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (cut_tx, count) = (cut.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut cut_rx = cut_tx.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    // Dropping both sockets closes them: the cut.
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        CutProxy {
            addr,
            cut,
            accepted,
            task,
        }
    }

    /// Closes every connection open now (new ones are accepted as before).
    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut_all();
    }
}

/// Waits until `check` holds, polling every 20 ms, or fails naming `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A rig whose tenants have only their Secure Endpoint source, each polled every second.
pub async fn secure_endpoint_rig(sim: SimConfig) -> Rig {
    rig_with(
        sim,
        &ConfigOptions {
            servicenow_section: false,
            symantec_sources: false,
            umbrella_sources: false,
        },
        |_, text| format!("{text}\n[defaults]\npoll_interval = \"1s\"\n"),
    )
    .await
}

/// Runs `serve`'s engine until the token is cancelled.
pub fn serve(
    engine: &Engine,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    let task = tokio::spawn(async move {
        e.run(s).await.expect("the engine runs");
    });
    (stop, task)
}
