//! The command line: every option also reads `SOCBRIDGE_<NAME>` from the environment.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "socbridge",
    version,
    about = "Vendor alert -> incident -> ticket -> containment -> closure, for many tenants at once.",
    propagate_version = true
)]
pub struct Cli {
    /// Declarative configuration (TOML): tenants and their sources, secrets by env var name.
    #[arg(long, global = true, env = "SOCBRIDGE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Holds the embedded SQLite database and the master key file.
    #[arg(
        long,
        global = true,
        env = "SOCBRIDGE_DATA_DIR",
        default_value = "./socbridge-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://...`; default: SQLite in the data dir.
    #[arg(
        long,
        global = true,
        env = "SOCBRIDGE_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// How listings and results are printed.
    #[arg(long, global = true, env = "SOCBRIDGE_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Log filter (tracing syntax, e.g. `debug` or `socbridge_engine=trace`); logs go to stderr.
    #[arg(long, global = true, env = "SOCBRIDGE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the built-in emulators and the whole pipeline on a fresh demo database.
    Demo(DemoArgs),
    /// The promises under faults and crashes: `serve` SIGKILLed at random instants while
    /// every emulator injects faults, then the emulators' counters checked against the store.
    Chaos(ChaosArgs),
    /// The daemon: scheduler and workers (`--until-idle`: poll every source once and exit).
    Serve(ServeArgs),
    /// The vendor emulators alone, for tests, demos and benchmarks.
    Sim(SimArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage a tenant's sources.
    #[command(subcommand)]
    Source(SourceCommand),
    /// Authenticate against each configured source and say what works.
    Check(CheckArgs),
    /// Who runs on this database and how far behind each source is: the `serve` replicas,
    /// which replica holds which job (leases), and per source its last poll, cursor mark and
    /// whether it is overdue.
    Status,
    /// Poll now: one tenant's sources, or one of them.
    Fetch(FetchArgs),
    /// List, read and update incidents.
    #[command(subcommand)]
    Incidents(IncidentsCommand),
    /// Work waiting for ServiceNow (ticket create, update, note, close, reopen) and vendor
    /// write-backs.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Straight at a vendor, for troubleshooting (nothing is stored).
    #[command(subcommand)]
    Vendor(VendorCommand),
    /// Credentials shared by several sources (an MSSP's Umbrella parent key).
    #[command(subcommand)]
    Credential(CredentialCommand),
    /// Bearer tokens of the HTTP API (shown once, stored hashed).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Incidents and their findings as OCSF 1.8.0 NDJSON (Incident and Detection Findings).
    Export(ExportArgs),
    /// Measure the pipeline against the built-in emulators on a fresh database: findings per
    /// second, ticket latency, memory and CPU (`--scale`: many tenants polled on schedule).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Secure Endpoint events the emulator holds at start, shared out over the tenants.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Tenants of the throughput run, each with one Secure Endpoint source.
    #[arg(long, default_value_t = 20)]
    pub tenants: u64,
    /// Rounds of the ticket-latency phase: each resolves every open incident, then new
    /// events arriving over a few seconds open new ones.
    #[arg(long, default_value_t = 3)]
    pub latency_rounds: u64,
    /// Run the scale run instead: many tenants with three sources each, polled on schedule
    /// in compressed time; prints the CPU share of one core and the peak memory.
    #[arg(long)]
    pub scale: bool,
    /// Scale run: tenants, each with a Secure Endpoint, a Symantec MSS and an Umbrella source.
    #[arg(long, default_value_t = 1000)]
    pub scale_tenants: u64,
    /// Scale run: every source's poll interval, in simulated time.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub poll_interval: std::time::Duration,
    /// Scale run: how much faster than real time it runs (the poll interval, the scheduler's
    /// tick and the arrival rates are scaled by it).
    #[arg(long, default_value_t = 3)]
    pub speedup: u64,
    /// Scale run: simulated minutes measured, after one poll interval of warm-up.
    #[arg(long, default_value_t = 6)]
    pub minutes: u64,
    /// Fixes the generated data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Measure the throughput run with this many `serve` replicas sharing one PostgreSQL,
    /// each count in turn (`1,2,3`): the same emulated data set each time, a fresh database
    /// of its own on the server `--database-url` names (needed), dropped after.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub replicas: Vec<u16>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The export format; `ocsf` (OCSF 1.8.0 NDJSON) is the only one today.
    #[arg(long, default_value = "ocsf")]
    pub format: String,
    /// Incidents active since: a duration back from now (`24h`, `90m`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Only these tenants (repeat or comma-separate); default every tenant.
    #[arg(long, value_delimiter = ',')]
    pub tenant: Vec<String>,
    /// Write to this file (replaced once the export is complete) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (once: only its hash is kept).
    Create(TokenCreateArgs),
    /// List tokens (never the tokens themselves: id, prefix, role, tenants).
    List,
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// `admin` (every tenant; manages tenants, sources and tokens) or `analyst` (its tenants'
    /// incidents only).
    #[arg(long)]
    pub role: String,
    /// A tenant the analyst may see (repeat for several). Not for admins.
    #[arg(long = "tenant", value_name = "TENANT")]
    pub tenants: Vec<String>,
    /// A label to recognise the token by (who or what holds it).
    #[arg(long)]
    pub label: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Add (or replace) a shared credential; its secret is stored encrypted, once.
    Add(CredentialAddArgs),
    /// List shared credentials (never their secrets).
    List,
    /// Remove a shared credential (sources naming it stop polling, saying why).
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct CredentialAddArgs {
    #[arg(long)]
    pub name: String,
    /// `umbrella`.
    #[arg(long)]
    pub kind: String,
    /// API base (default https://api.umbrella.com).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Token endpoint, when not under the API base.
    #[arg(long)]
    pub token_url: Option<String>,
    /// The API key (an identifier).
    #[arg(long, conflicts_with = "key_env")]
    pub key: Option<String>,
    /// Read the API key from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// Read the API secret from this environment variable (else stdin with --secret-stdin,
    /// or a prompt).
    #[arg(long, value_name = "VAR", conflicts_with = "secret_stdin")]
    pub secret_env: Option<String>,
    #[arg(long)]
    pub secret_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum VendorCommand {
    /// Symantec MSS (SWS), with the parameters of the Cortex XSOAR integration's commands.
    #[command(subcommand, name = "symantec-mss")]
    SymantecMss(SymantecMssCommand),
}

#[derive(Debug, Subcommand)]
pub enum SymantecMssCommand {
    /// IncidentGetList: incidents created or updated since a time.
    List(MssListArgs),
    /// IncidentWorkflowQuery: one incident with its workflow, signatures and comments.
    Get(MssTarget),
    /// UpdateIncidentWorkflow; status, resolution and severity not given are taken from the
    /// current workflow.
    Update(MssUpdateArgs),
}

#[derive(Debug, Args)]
pub struct MssSource {
    #[arg(long)]
    pub tenant: String,
    /// The tenant's Symantec MSS source (needed only when it has several).
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct MssListArgs {
    #[command(flatten)]
    pub from: MssSource,
    /// How far back (`10m`, `24h`) or since when (RFC 3339); default 10m.
    #[arg(long, default_value = "10m")]
    pub since: String,
    /// Comma list of Emergency, Critical, Warning, Informational (default: all).
    #[arg(long, value_delimiter = ',')]
    pub severity: Vec<String>,
    /// Comma list of source IPs (default: all).
    #[arg(long, value_delimiter = ',')]
    pub source_ip: Vec<String>,
    /// At most this many incidents (MaxIncidents).
    #[arg(long)]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct MssTarget {
    #[command(flatten)]
    pub from: MssSource,
    /// The MSS incident number.
    pub number: String,
}

#[derive(Debug, Args)]
pub struct MssUpdateArgs {
    #[command(flatten)]
    pub target: MssTarget,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub resolution: Option<String>,
    /// Emergency, Critical, Warning or Informational.
    #[arg(long)]
    pub severity: Option<String>,
    /// Assign to a person (exclusive with --assign-organization).
    #[arg(long, conflicts_with = "assign_organization")]
    pub assignee: Option<String>,
    /// Assign to an organisation.
    #[arg(long)]
    pub assign_organization: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Your reference, e.g. a ticket number.
    #[arg(long)]
    pub reference: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Items not yet done (pending and failed), oldest first.
    List,
    /// Put failed items back in the queue (all, or one tenant's).
    Retry {
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run until every emulated signal is stored, print a summary and exit.
    #[arg(long, env = "SOCBRIDGE_ONCE")]
    pub once: bool,
    /// Demo tenants to create.
    #[arg(long, env = "SOCBRIDGE_TENANTS", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub tenants: u16,
    /// Fixes the generated data.
    #[arg(long, env = "SOCBRIDGE_SEED", default_value_t = 7)]
    pub seed: u64,
    /// Where the web console and the API listen (without `--once`); port 0 picks a free one.
    #[arg(long, env = "SOCBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// How many times `serve` is SIGKILLed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub kills: u32,
    /// Tenants of the emulators.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub tenants: u16,
    /// Fixes the data and the kill schedule (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shortest life of a `serve` before its kill, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub min_ms: u64,
    /// Longest life of a `serve` before its kill, in milliseconds.
    #[arg(long, default_value_t = 2500)]
    pub max_ms: u64,
    /// `serve` replicas running at once on the same database; each kill takes one of them,
    /// chosen at random, which is restarted at once. More than one needs `--database-url`
    /// (a PostgreSQL server: the run makes a database of its own there and drops it after).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replicas: u16,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Poll every source once (more rounds while a cap or budget left work), then exit.
    #[arg(long, env = "SOCBRIDGE_UNTIL_IDLE")]
    pub until_idle: bool,
    /// Where the HTTP side listens (the web console, `/api/v1`, the ServiceNow webhook
    /// `POST /hooks/servicenow`, `/metrics`, `/healthz`). Not used with `--until-idle`.
    #[arg(long, env = "SOCBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// With `--until-idle`: how long to keep retrying ticket work before giving up (exit 1,
    /// the work stays queued for the next run).
    #[arg(long, env = "SOCBRIDGE_DRAIN_TIMEOUT", default_value = "2m", value_parser = humantime::parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// How long a replica's lease on a job (a source's polls, a tenant's outbox) lasts
    /// without renewal: how soon other replicas on the same database take over the jobs of
    /// one that stopped answering. Renewed every third of it. At least 1s.
    #[arg(long, env = "SOCBRIDGE_LEASE_TTL", default_value = "30s", value_parser = parse_lease_ttl)]
    pub lease_ttl: std::time::Duration,
}

fn parse_lease_ttl(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!(
            "`{s}` is shorter than 1s; a lease must outlive a database round trip"
        ));
    }
    if d > std::time::Duration::from_secs(3600) {
        return Err(format!(
            "`{s}` is longer than 1h; a dead replica's work would wait that long"
        ));
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address of the first emulator; port 0 picks free ports.
    #[arg(long, env = "SOCBRIDGE_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[arg(long, env = "SOCBRIDGE_TENANTS", default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub tenants: u16,
    #[arg(long, env = "SOCBRIDGE_SEED", default_value_t = 7)]
    pub seed: u64,
    /// New events per tenant per minute; 0 serves a fixed data set.
    #[arg(long, env = "SOCBRIDGE_RATE", default_value_t = 6.0)]
    pub rate: f64,
    /// Events each tenant starts with, spread over the last 8 minutes.
    #[arg(long, env = "SOCBRIDGE_INITIAL_EVENTS", default_value_t = 60)]
    pub initial_events: usize,
    /// Write the URLs and tenant credentials here (JSON) once every emulator listens.
    #[arg(long, env = "SOCBRIDGE_ENDPOINTS_FILE", value_name = "FILE")]
    pub endpoints_file: Option<PathBuf>,
    /// Write a ready socbridge.toml pointing at the emulators (secrets in an env file beside it).
    #[arg(long, env = "SOCBRIDGE_WRITE_CONFIG", value_name = "FILE")]
    pub write_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Add {
        name: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List tenants.
    List,
    /// Show one tenant with its sources.
    Show { name: String },
    /// Remove a tenant and everything it owns (sources, findings, incidents).
    Remove { name: String },
    /// Show the tenant's containment policy, or set it with the flags.
    Policy(PolicyArgs),
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Add (or update) a source of a tenant. The secret comes from an environment variable,
    /// stdin or a prompt, never from a plain flag.
    Add(Box<SourceAddArgs>),
    /// List sources with their cursor and last poll.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a source.
    Remove {
        #[arg(long)]
        tenant: String,
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct SourceAddArgs {
    #[arg(long)]
    pub tenant: String,
    /// Unique within the tenant, e.g. `secure-endpoint`.
    #[arg(long)]
    pub name: String,
    /// `secure_endpoint`, `symantec_mss` or `umbrella`.
    #[arg(long)]
    pub kind: String,
    /// Vendor API base URL (default: the vendor's North America host).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Secure Endpoint API client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Read the API key from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "api_key_stdin")]
    pub api_key_env: Option<String>,
    /// Read the API key from the first line of stdin.
    #[arg(long)]
    pub api_key_stdin: bool,
    /// Event type ids to fetch (default: the 36 high-priority types).
    #[arg(long, value_delimiter = ',')]
    pub event_types: Option<Vec<u64>>,
    /// e.g. `60s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub poll_interval: Option<std::time::Duration>,
    /// First run looks back this far, e.g. `10m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lookback: Option<std::time::Duration>,
    /// Each poll re-reads this far behind its mark, e.g. `2m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub overlap: Option<std::time::Duration>,
    /// New findings per run at most; the rest come on the next run.
    #[arg(long)]
    pub cap_per_run: Option<usize>,
    /// Symantec MSS: the client certificate's PKCS#12 file (`.p12` / `.pfx`); its content is
    /// stored encrypted.
    #[arg(long, value_name = "FILE", conflicts_with = "p12_base64_env")]
    pub p12_file: Option<std::path::PathBuf>,
    /// Symantec MSS: read the base64 of the `.p12` from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub p12_base64_env: Option<String>,
    /// Symantec MSS: read the `.p12` passphrase from this environment variable (else stdin
    /// with --p12-passphrase-stdin, or a prompt).
    #[arg(long, value_name = "VAR", conflicts_with = "p12_passphrase_stdin")]
    pub p12_passphrase_env: Option<String>,
    /// Symantec MSS: read the passphrase from the first line of stdin.
    #[arg(long)]
    pub p12_passphrase_stdin: bool,
    /// Symantec MSS: a PEM file of an extra root CA to trust (a private CA).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Symantec MSS: severities to fetch (default Emergency,Critical).
    #[arg(long, value_delimiter = ',')]
    pub severities: Option<Vec<String>>,
    /// A proxy for this source only (else HTTPS_PROXY / NO_PROXY apply).
    #[arg(long)]
    pub proxy: Option<String>,
    /// Umbrella: the shared credential (a parent key) to read with.
    #[arg(long, value_name = "NAME")]
    pub parent_credential: Option<String>,
    /// Umbrella: the customer's child org id.
    #[arg(long)]
    pub org_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum IncidentsCommand {
    /// List incidents, most recently active first.
    List(ListArgs),
    /// One incident with its findings, observables, ticket, actions and timeline.
    Get { id: i64 },
    /// Change status, resolution, assignee, or add a comment.
    Update(UpdateArgs),
    /// Contain the incident's computer now (the tenant's deny patterns and dry run apply).
    Contain(ContainArgs),
    /// Undo the incident's containment now (stop isolation, move the computer back).
    Release { id: i64 },
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    pub name: String,
    /// No containment.
    #[arg(long, conflicts_with_all = ["isolate", "move_to"])]
    pub none: bool,
    /// Isolate the computer of each qualifying incident.
    #[arg(long, conflicts_with = "move_to")]
    pub isolate: bool,
    /// Move the computer of each qualifying incident to this Secure Endpoint group.
    #[arg(long, value_name = "GROUP")]
    pub move_to: Option<String>,
    /// Act on incidents at least this severe (default high).
    #[arg(long)]
    pub min_severity: Option<String>,
    /// Act on incidents with findings of these sources (default secure_endpoint).
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<String>,
    /// Act only on hosts matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub allow_hosts: Option<String>,
    /// Never act on hosts matching this regular expression (e.g. `^SRV-`).
    #[arg(long, value_name = "REGEX")]
    pub deny_hosts: Option<String>,
    /// Leave the containment in place when the incident closes.
    #[arg(long)]
    pub no_revert_on_close: bool,
    /// Apply again when a closed incident is reopened.
    #[arg(long)]
    pub reapply_on_reopen: bool,
    /// Record what would be done; do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "how")]
pub struct ContainArgs {
    pub id: i64,
    /// Isolate the computer (Secure Endpoint isolation).
    #[arg(long, group = "how")]
    pub isolate: bool,
    /// Move the computer to this Secure Endpoint group.
    #[arg(long, value_name = "GROUP", group = "how")]
    pub move_to: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only these tenants (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub tenant: Vec<String>,
    /// Active since: a duration back from now (`24h`, `90m`) or an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Comma list of informational, low, medium, high, critical.
    #[arg(long, value_delimiter = ',')]
    pub severity: Vec<String>,
    /// Incidents that involve this IP address.
    #[arg(long)]
    pub source_ip: Option<String>,
    /// Comma list of new, in_progress, on_hold, resolved, closed.
    #[arg(long, value_delimiter = ',')]
    pub status: Vec<String>,
    /// Incidents with a finding from this source (a source's name, or a kind such as
    /// `secure_endpoint`).
    #[arg(long)]
    pub source: Option<String>,
    /// Free text, any case: in the title, an observable (hostname, IP, user...), the assignee
    /// or the ticket number.
    #[arg(long)]
    pub text: Option<String>,
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub limit: u32,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    pub id: i64,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub resolution: Option<String>,
    #[arg(long)]
    pub assignee: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
}
