//! `socbridge`: the one binary. This crate only wires: it parses the command line, opens the
//! store and the master key, and hands over to the engine, the store and the emulators.
//!
//! Exit codes: 0 success; 2 bad usage or bad input (the message names what is wrong);
//! 1 anything else.

mod api;
mod bench;
mod bench_replicas;
mod chaos;
mod cli;
mod commands;
mod demo;
mod export;
mod http;
mod incidents;
mod run_db;
mod status;
mod vendor;

use clap::Parser;
use cli::{Cli, Command};
use socbridge_engine::{Config, ConfigError, EngineError};
use socbridge_model::{NameError, TimestampError};
use socbridge_secrets::{MasterKey, SecretsError};
use socbridge_store::Store;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// An error in what the user asked for: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

pub fn bad_input(msg: impl Into<String>) -> anyhow::Error {
    BadInput(msg.into()).into()
}

/// glibc gives each thread that meets contention a malloc arena of its own, up to eight per
/// core, and memory freed in one arena is not reused by another: a long-running `serve` with
/// many tasks moving between worker threads ends up holding far more than it uses. So the
/// arenas are capped at two per core, before any thread starts, unless `MALLOC_ARENA_MAX`
/// says otherwise (glibc reads it itself). Measured on 2 cores (BENCHMARKS.md): the scale
/// run's peak RSS is 207 MiB with glibc's default, 174 MiB with four arenas, 156 MiB with two;
/// two cost the end-to-end run a fifth of its throughput in malloc lock waits, four less.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.saturating_mul(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets a tunable of the allocator; it is called before any other
    // thread exists, and a refused value (return 0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_bad_input(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn is_bad_input(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.is::<BadInput>()
            || e.is::<ConfigError>()
            || e.is::<NameError>()
            || e.is::<TimestampError>()
            || e.downcast_ref::<EngineError>()
                .is_some_and(EngineError::is_bad_input)
    })
}

fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Serve(_) | Command::Demo(_) | Command::Sim(_) | Command::Chaos(_) => {
            "info,sqlx=warn"
        }
        // The benchmark's own progress lines say what happens; per-poll logs would drown them.
        Command::Bench(_) => "warn",
        _ => "warn",
    };
    let filter = cli
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Sim(args) => demo::sim(args).await,
        Command::Demo(args) => demo::demo(&cli, args).await,
        Command::Chaos(args) => chaos::chaos(&cli, args).await,
        Command::Export(args) => export::run(&cli, args).await,
        Command::Bench(args) => bench::run(&cli, args).await,
        _ => commands::run(&cli).await,
    }
}

/// Opens the store named by `--database-url`, or SQLite in the data dir.
pub async fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    use anyhow::Context as _;
    match &cli.database_url {
        Some(url) => {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
            {
                return Err(bad_input(format!(
                    "--database-url `{}` must start with sqlite:// or postgres://",
                    redact_url(url)
                )));
            }
            Store::connect(url)
                .await
                .with_context(|| format!("cannot open the database at {}", redact_url(url)))
        }
        None => {
            std::fs::create_dir_all(&cli.data_dir).with_context(|| {
                format!("cannot create the data dir {}", cli.data_dir.display())
            })?;
            let path = cli.data_dir.join("socbridge.db");
            Store::open_sqlite(&path)
                .await
                .with_context(|| format!("cannot open the database {}", path.display()))
        }
    }
}

/// The master key from `SOCBRIDGE_MASTER_KEY` or the data dir's key file (created on first run).
pub fn master_key(cli: &Cli) -> Result<MasterKey, SecretsError> {
    let env = std::env::var("SOCBRIDGE_MASTER_KEY").ok();
    MasterKey::load_or_create(&cli.data_dir, env.as_deref())
}

/// Loads `--config` when given.
pub fn load_config(cli: &Cli) -> anyhow::Result<Option<Config>> {
    Ok(match &cli.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    })
}

/// A database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
