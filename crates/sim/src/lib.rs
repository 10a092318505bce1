//! Wire-faithful vendor emulators for tests, demos and benchmarks: today Cisco Secure
//! Endpoint API v1 (events, event types, computers, groups, isolation) and one ServiceNow
//! instance shared by all tenants (Table API for `incident` and `sys_journal_field`, OAuth
//! tokens, a business-rule webhook): see [`ServiceNowConfig`]; and the Symantec Managed
//! Security Services SWS SOAP service (`incidents.asmx`) behind client-certificate TLS, with
//! each tenant's identity exported as PKCS#12: see [`SymantecConfig`]; and the Cisco Umbrella
//! Reporting API v2 (tokens, MSSP parent and child-org keys, activity reports, a regional
//! warehouse host): see [`UmbrellaConfig`]; and Cisco XDR (IROH tokens and the CTIA incident
//! API, one organisation per tenant): see [`XdrConfig`].
//!
//! Why it exists: no machine here reaches a real vendor, and socbridge's promises (nothing
//! lost, nothing twice) can only be proven against a service that behaves like the real one,
//! including when it misbehaves. So the emulator is:
//! - **wire-faithful**: paths, parameters, Basic auth, envelopes, field names, time formats,
//!   paging links, status codes and both spellings of the rate-limit headers, as in
//!   `VENDOR-APIS.md` and the recorded payloads; strict where the vendor is strict;
//! - **deterministic**: one seed fixes every tenant's credentials, hosts, event ids, types and
//!   hashes; only absolute times follow the start time;
//! - **hostile on request**: injected 429/500/503, slow answers, dropped connections,
//!   truncated bodies and pages that repeat an event, at configurable rates;
//! - **an independent witness**: it depends on none of socbridge's crates and counts what it
//!   really delivered ([`TenantCounters::served_distinct`] and kin), so a bug shared by a
//!   client and the emulator cannot hide; and per polled source it counts polls that overlap
//!   another poll of the same source ([`PollOverlapCounters`]): two pollers at once.
//!
//! The control API lives under `/_sim/` on the same port: see [`Endpoints::control`].

mod catalog;
pub mod collector;
mod control;
mod event_streams;
mod files;
mod net;
mod polls;
mod secure_endpoint;
mod servicenow;
mod state;
mod symantec;
mod umbrella;
mod wire;
mod world;
mod xdr;

pub use catalog::HIGH_PRIORITY_EVENT_TYPES;
pub use collector::{
    ClassCounters, CollectorConfig, CollectorCounters, CollectorFaultCounters, CollectorFaults,
    CollectorHandle,
};
pub use event_streams::{DEFAULT_AMQP_URL, EventStreamInfo, EventStreamsConfig};
pub use polls::{OverlappingSource, PollDelay, PollOverlapCounters};
pub use servicenow::{
    DEFAULT_WEBHOOK_HEADER, ServiceNowConfig, ServiceNowCounters, ServiceNowEndpoints,
    ServiceNowFaultCounters, ServiceNowFaults, ServiceNowGroup, ServiceNowOAuthClient,
    ServiceNowRateLimit, ServiceNowUser, ServiceNowWebhook, WebhookCounters, WriteCounters,
};

pub use symantec::{
    AddSymantecIncidents, DEFAULT_RESOLUTIONS, DEFAULT_STATUSES, HandshakeRefusals,
    SymantecAnalystChange, SymantecConfig, SymantecCounters, SymantecCreds, SymantecEndpoints,
    SymantecError, SymantecFaultCounters, SymantecFaults, SymantecTenantCounters, WorkflowCounters,
};

pub use xdr::{XdrClientCreds, XdrConfig, XdrCounters, XdrEndpoints, XdrFaultCounters, XdrFaults};

pub use umbrella::{
    AddUmbrellaRecords, RegionalCounters, UmbrellaConfig, UmbrellaCounters, UmbrellaCreds,
    UmbrellaEndpoints, UmbrellaError, UmbrellaFaultCounters, UmbrellaFaults, UmbrellaOrg,
    UmbrellaOrgCounters, UmbrellaRateLimit, UmbrellaTokenCounters,
};

use serde::{Deserialize, Serialize};
use state::{Shared, State};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to start the emulators.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen. Port 0 picks any free port; with a fixed port P, Secure Endpoint
    /// listens on P (emulators added later take P+1, P+2...). The control API shares P.
    /// ServiceNow listens on P+1 (any free port when P is 0), same address; Symantec on P+2;
    /// Umbrella on P+3 and its regional warehouse host on P+4; Cisco XDR on P+6.
    pub listen: SocketAddr,
    /// Number of tenants (at least 1): `acme`, `globex`, ... then `tenant-11`...
    pub tenants: usize,
    /// Fixes all generated data.
    pub seed: u64,
    /// New events per tenant per minute, arriving over time; 0 keeps the data set fixed.
    pub rate_per_minute: f64,
    /// Events each tenant holds at start.
    pub initial_events_per_tenant: usize,
    /// Initial events are spread over `[start - spread, start]`. The default (8 minutes) sits
    /// inside socbridge's default 10-minute first look-back, so a first poll sees them all.
    pub initial_spread: Duration,
    /// Fault rates at start (all 0 by default).
    pub faults: Faults,
    /// The ServiceNow instance (on by default).
    pub servicenow: ServiceNowConfig,
    /// The Symantec SWS service (on by default): P+2 with a fixed P, any free port with 0.
    pub symantec: SymantecConfig,
    /// The Umbrella Reporting API (on by default): P+3 with a fixed P and its regional
    /// warehouse host on P+4 (any free ports with 0).
    pub umbrella: UmbrellaConfig,
    /// Secure Endpoint Event Streams on an AMQP broker (on by default; a POST answers 503
    /// while the broker cannot be reached).
    pub event_streams: EventStreamsConfig,
    /// Cisco XDR (IROH tokens and CTIA incidents; on by default): P+6 with a fixed P, any
    /// free port with 0.
    pub xdr: XdrConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            tenants: 3,
            seed: 1,
            rate_per_minute: 0.0,
            initial_events_per_tenant: 60,
            initial_spread: Duration::from_secs(8 * 60),
            faults: Faults::default(),
            servicenow: ServiceNowConfig::default(),
            symantec: SymantecConfig::default(),
            umbrella: UmbrellaConfig::default(),
            event_streams: EventStreamsConfig::default(),
            xdr: XdrConfig::default(),
        }
    }
}

/// Why the emulators could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot work (names the setting).
    #[error("invalid emulator configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    /// The Symantec emulator's certificates or TLS settings could not be built.
    #[error("cannot build the Symantec emulator's PKI: {0}")]
    Pki(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the emulators are and how each tenant logs in: the JSON of the endpoints file, a
/// contract other tools rely on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Base URL of Secure Endpoint, e.g. `http://127.0.0.1:P` (routes under `/v1`).
    pub secure_endpoint: String,
    /// Base URL of the control API, e.g. `http://127.0.0.1:P/_sim`.
    pub control: String,
    pub tenants: Vec<TenantEndpoints>,
    /// The ServiceNow instance all tenants share (absent when disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servicenow: Option<ServiceNowEndpoints>,
    /// The Symantec SWS service (absent when disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symantec_mss: Option<SymantecEndpoints>,
    /// The Umbrella Reporting API, its regional host and the MSSP parent key (absent when
    /// disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umbrella: Option<UmbrellaEndpoints>,
    /// Cisco XDR: its token and CTIA URLs and each tenant's API client (absent when
    /// disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdr: Option<XdrEndpoints>,
}

/// One tenant's credentials per vendor; a vendor the tenant lacks is absent from the JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TenantEndpoints {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure_endpoint: Option<SecureEndpointCreds>,
    /// The tenant's SWS web-service certificate (absent when the emulator is disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symantec_mss: Option<SymantecCreds>,
    /// The tenant's Umbrella child org and its own key (absent when the emulator is
    /// disabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umbrella: Option<UmbrellaCreds>,
}

/// A Secure Endpoint API client: HTTP Basic user and password.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecureEndpointCreds {
    pub client_id: String,
    pub api_key: String,
}

/// Fault rates: each is the probability (0..=1) that one `/v1` request meets that fault,
/// drawn per request from a generator seeded by [`SimConfig::seed`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// 429 with the errors envelope, `X-RateLimit-Reset: 1`, no `Retry-After`.
    pub rate_429: f64,
    /// 500 with the errors envelope.
    pub rate_500: f64,
    /// 503 with the errors envelope.
    pub rate_503: f64,
    /// Sleep `slow_ms`, then answer normally.
    pub rate_slow: f64,
    pub slow_ms: u64,
    /// A 200 whose body breaks off: the connection is aborted mid-body.
    pub rate_drop: f64,
    /// A 200 whose JSON body is cut roughly in half (Content-Length matches the cut body).
    pub rate_truncate: f64,
    /// `/v1/events` pages with offset > 0 also repeat the last event of the previous page.
    pub rate_duplicate: f64,
}

/// Body of `POST /_sim/secure_endpoint/events` and argument of [`SimHandle::add_events`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AddEvents {
    pub tenant: String,
    pub count: usize,
    /// Records with the usual members but `"id":"not-a-number"`, `"date":"not-a-date"` and no
    /// `timestamp`, with a high-priority `event_type_id` so that a default filter serves them.
    #[serde(default)]
    pub malformed: bool,
    /// All events of the call share one timestamp second (pairs even the nanosecond).
    #[serde(default)]
    pub same_second: bool,
    /// The type of every event; random (about 80% high-priority) when absent.
    #[serde(default)]
    pub event_type_id: Option<u64>,
}

/// Counters of all emulators (`GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub secure_endpoint: SecureEndpointCounters,
    /// All zero when the ServiceNow emulator is disabled.
    #[serde(default)]
    pub servicenow: ServiceNowCounters,
    /// All zero when the Symantec emulator is disabled.
    #[serde(default)]
    pub symantec_mss: SymantecCounters,
    /// All zero when the Umbrella emulator is disabled.
    #[serde(default)]
    pub umbrella: UmbrellaCounters,
    /// All zero when the XDR emulator is disabled.
    #[serde(default)]
    pub xdr: XdrCounters,
}

impl Counters {
    /// The overlap witness of each polled vendor: Secure Endpoint (`GET /v1/events` per API
    /// client id), Umbrella (activity reports per org id), Symantec MSS (`IncidentGetList`
    /// per tenant certificate).
    pub fn polls(&self) -> [(&'static str, &PollOverlapCounters); 3] {
        [
            ("secure_endpoint", &self.secure_endpoint.polls),
            ("umbrella", &self.umbrella.polls),
            ("symantec_mss", &self.symantec_mss.polls),
        ]
    }

    /// Poll requests, of every polled vendor, that arrived while another poll request for
    /// the same source was in flight: 0 when no source was ever polled by two pollers at
    /// once.
    pub fn overlapping_polls(&self) -> u64 {
        self.polls().iter().map(|(_, p)| p.overlapping_polls).sum()
    }

    /// Every source polled by two pollers at once, as `vendor:source (tenant)`.
    pub fn overlapping_sources(&self) -> Vec<String> {
        self.polls()
            .iter()
            .flat_map(|(vendor, p)| {
                p.overlapping_sources
                    .iter()
                    .map(move |s| format!("{vendor}:{} ({})", s.source, s.tenant))
            })
            .collect()
    }
}

/// Counters of the Secure Endpoint emulator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SecureEndpointCounters {
    pub requests: RequestCounters,
    pub faults: FaultCounters,
    /// Per tenant name.
    pub tenants: BTreeMap<String, TenantCounters>,
    /// `GET /v1/events` requests per API client id in flight at once: overlaps mean two
    /// pollers of one tenant's source (see [`PollOverlapCounters`]).
    #[serde(default)]
    pub polls: PollOverlapCounters,
}

/// `/v1` answers: total and per status code (every status the emulator can answer is listed,
/// at 0 until seen, so the map has a stable shape). Control requests are not counted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounters {
    pub total: u64,
    pub by_status: BTreeMap<String, u64>,
}

/// Faults actually applied (a drawn fault that did not apply, e.g. a duplicate on the first
/// page, is not counted).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounters {
    #[serde(rename = "429")]
    pub status_429: u64,
    #[serde(rename = "500")]
    pub status_500: u64,
    #[serde(rename = "503")]
    pub status_503: u64,
    pub slow: u64,
    pub drop: u64,
    pub truncate: u64,
    pub duplicate: u64,
}

/// One tenant's data set and what was delivered from it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantCounters {
    /// Well-formed events in the data set (malformed records are in `malformed_total`).
    pub events_total: u64,
    /// Well-formed events of a [`HIGH_PRIORITY_EVENT_TYPES`] type.
    pub events_high_priority: u64,
    /// Malformed records in the data set.
    pub malformed_total: u64,
    /// Distinct well-formed events that appeared in a `/v1/events` answer delivered whole
    /// (a dropped or truncated answer does not count).
    pub served_distinct: u64,
    /// The high-priority part of `served_distinct`.
    pub served_distinct_high_priority: u64,
    /// Distinct malformed records delivered in a whole answer.
    pub malformed_served_distinct: u64,
    /// Records in `/v1/events` answers delivered whole, each time one was sent (a record in
    /// two answers counts twice): what the pollers made the vendor send.
    #[serde(default)]
    pub records_served: u64,
    /// Accepted isolation starts (PUT answered 200).
    pub isolation_start: u64,
    /// Accepted isolation stops (DELETE answered 200).
    pub isolation_stop: u64,
    /// Accepted group moves (PATCH answered 202), including a move to the current group: a
    /// repeated move is visible to tests of "applied at most once".
    pub group_moves: u64,
    /// Distinct well-formed events the broker confirmed into one of the tenant's Event
    /// Streams.
    #[serde(default)]
    pub stream_published_distinct: u64,
    /// Distinct malformed records confirmed into a stream.
    #[serde(default)]
    pub stream_malformed_published_distinct: u64,
    /// Confirmed publications in all (an event matching two streams, or published again
    /// after a lost confirmation, counts each time).
    #[serde(default)]
    pub stream_publications: u64,
}

/// Options of [`SimHandle::write_config_with`].
#[derive(Clone, Debug, Default)]
pub struct ConfigOptions {
    /// Write the `[servicenow]` section active rather than commented out.
    pub servicenow_section: bool,
    /// Write each tenant's `symantec-mss` source active rather than commented out.
    pub symantec_sources: bool,
    /// Write the `umbrella-mssp` credential and each tenant's `umbrella` source active
    /// rather than commented out.
    pub umbrella_sources: bool,
}

/// Why events could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddError {
    #[error("unknown tenant")]
    UnknownTenant,
    #[error("unknown event_type_id {0}: see GET /v1/event_types")]
    UnknownType(u64),
    #[error("count must be at most {0}")]
    TooMany(usize),
}

/// Largest `count` one call may add: a bound on memory against a typo.
const MAX_ADD: usize = 1_000_000;

/// Adds events to a tenant (shared by the handle and the control API).
pub(crate) fn add_events(shared: &Shared, req: &AddEvents) -> Result<Vec<u64>, AddError> {
    if req.count > MAX_ADD {
        return Err(AddError::TooMany(MAX_ADD));
    }
    let kind = match req.event_type_id {
        None => None,
        Some(id) => Some(catalog::event_type(id).ok_or(AddError::UnknownType(id))?),
    };
    let mut st = shared.lock();
    let &i = st.by_name.get(&req.tenant).ok_or(AddError::UnknownTenant)?;
    Ok(st.tenants[i].add(req, kind, &shared.base_url))
}

/// A running emulator. Dropping it stops the emulator too; [`SimHandle::shutdown`] also waits
/// until every task has finished.
pub struct SimHandle {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long shutdown waits for open connections to finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

impl SimHandle {
    /// URLs and credentials.
    pub fn endpoints(&self) -> &Endpoints {
        &self.shared.endpoints
    }

    /// A snapshot of the counters (the data of `GET /_sim/counters`).
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Makes every poll request (Secure Endpoint `GET /v1/events`, Umbrella activity,
    /// Symantec MSS `IncidentGetList`) wait `delay` while in flight before it is answered,
    /// like `POST /_sim/poll_delay`: a second poller of one source is then seen for sure.
    /// `Duration::ZERO` (the default) removes it; at most 600 s. Fault settings leave it be.
    pub fn set_poll_delay(&self, delay: Duration) {
        self.shared.set_poll_delay(delay);
    }

    /// The poll answer delay now.
    pub fn poll_delay(&self) -> Duration {
        self.shared.polls.delay()
    }

    /// Replaces the ServiceNow fault rates (clamped into 0..=1, NaN is 0), like
    /// `POST /_sim/servicenow/faults`. No effect when ServiceNow is disabled.
    pub fn set_servicenow_faults(&self, f: ServiceNowFaults) {
        if let Some(sn) = &self.shared.servicenow {
            sn.lock().faults = state::sanitise(f);
        }
    }

    /// Turns the ServiceNow outage on (every request answered 503) or off.
    pub fn set_servicenow_outage(&self, on: bool) {
        if let Some(sn) = &self.shared.servicenow {
            sn.lock().outage = on;
        }
    }

    /// Sets (or with `None` removes) the instance's rate limit; windows start afresh.
    pub fn set_servicenow_rate_limit(&self, rl: Option<ServiceNowRateLimit>) {
        if let Some(sn) = &self.shared.servicenow {
            sn.lock().set_rate_limit(rl);
        }
    }

    /// Points the business-rule webhook at socbridge (or with `None` stops pushing). A
    /// secret or header left out keeps the current one. `Err` names what is wrong with the
    /// setting (an URL that is not http(s), a header name or secret that cannot be sent);
    /// nothing changes then.
    pub fn set_servicenow_webhook(&self, hook: Option<ServiceNowWebhook>) -> Result<(), String> {
        if let Some(h) = &hook {
            servicenow::webhook_valid(h)?;
        }
        if let Some(sn) = &self.shared.servicenow {
            servicenow::set_webhook(&mut sn.lock(), hook);
        }
        Ok(())
    }

    /// Makes every OAuth access token invalid (refresh tokens keep working), as if they had
    /// all expired; returns how many there were.
    pub fn expire_servicenow_tokens(&self) -> usize {
        self.shared
            .servicenow
            .as_ref()
            .map_or(0, |sn| sn.lock().expire_tokens())
    }

    /// Every incident as stored (raw values, journal fields empty), oldest first: the data of
    /// `GET /_sim/servicenow/incidents`.
    pub fn servicenow_incidents(&self) -> Vec<serde_json::Value> {
        self.shared
            .servicenow
            .as_ref()
            .map_or_else(Vec::new, |sn| servicenow::dump_incidents(&sn.lock()))
    }

    /// When each of a tenant's Secure Endpoint events first went out in a whole answer, by
    /// event id (events never served are absent; so is an unknown tenant).
    pub fn secure_endpoint_served_at(
        &self,
        tenant: &str,
    ) -> std::collections::HashMap<u64, SystemTime> {
        let st = self.shared.lock();
        st.by_name
            .get(tenant)
            .map(|&i| st.tenants[i].served_at())
            .unwrap_or_default()
    }

    /// Every journal entry (`sys_journal_field` rows), oldest first.
    pub fn servicenow_journal(&self) -> Vec<serde_json::Value> {
        self.shared
            .servicenow
            .as_ref()
            .map_or_else(Vec::new, |sn| servicenow::dump_journal(&sn.lock()))
    }

    /// The Symantec emulator, or [`SymantecError::Disabled`].
    fn symantec(&self) -> Result<&Arc<symantec::Sym>, SymantecError> {
        self.shared.symantec.as_ref().ok_or(SymantecError::Disabled)
    }

    /// Replaces the Symantec fault rates (clamped into 0..=1, NaN is 0), like
    /// `POST /_sim/symantec_mss/faults`. No effect when the emulator is disabled.
    pub fn set_symantec_faults(&self, f: SymantecFaults) {
        if let Ok(sym) = self.symantec() {
            sym.lock().faults = state::sanitise(f);
        }
    }

    /// Adds incidents stamped now to a tenant, like `POST /_sim/symantec_mss/incidents`;
    /// returns their numbers.
    pub fn add_symantec_incidents(
        &self,
        req: AddSymantecIncidents,
    ) -> Result<Vec<u64>, SymantecError> {
        self.symantec()?.lock().add(&req)
    }

    /// An MSS analyst changes an incident at the vendor (status, resolution, severity, a
    /// comment), like `POST /_sim/symantec_mss/analyst`: `UpdateTimestampGMT` moves, so the
    /// incident comes back in the next `IncidentGetList`.
    pub fn symantec_analyst_change(&self, c: SymantecAnalystChange) -> Result<(), SymantecError> {
        self.symantec()?.lock().analyst_change(&c)
    }

    /// A tenant's incidents as stored (JSON, oldest first): the data of
    /// `GET /_sim/symantec_mss/incidents?tenant=NAME`.
    pub fn symantec_incidents(
        &self,
        tenant: &str,
    ) -> Result<Vec<serde_json::Value>, SymantecError> {
        self.symantec()?.lock().dump(tenant)
    }

    /// A tenant's production certificate and private key in PEM (for Rust clients that load
    /// an identity from PEM rather than PKCS#12); `None` for an unknown tenant or when the
    /// emulator is disabled.
    pub fn symantec_identity_pem(&self, tenant: &str) -> Option<String> {
        let sym = self.symantec().ok()?;
        let i = self
            .shared
            .endpoints
            .tenants
            .iter()
            .position(|t| t.name == tenant)?;
        sym.identity_pem.get(i).cloned()
    }

    /// A tenant's test-API certificate and key in PEM: production refuses it (for tests that
    /// prove a client reports the refusal).
    pub fn symantec_test_api_identity_pem(&self, tenant: &str) -> Option<String> {
        let sym = self.symantec().ok()?;
        let i = self
            .shared
            .endpoints
            .tenants
            .iter()
            .position(|t| t.name == tenant)?;
        sym.test_identity_pem.get(i).cloned()
    }

    /// The Umbrella emulator, or [`UmbrellaError::Disabled`].
    fn umbrella(&self) -> Result<&Arc<umbrella::Umb>, UmbrellaError> {
        self.shared.umbrella.as_ref().ok_or(UmbrellaError::Disabled)
    }

    /// Replaces the Umbrella fault rates (clamped into 0..=1, NaN is 0), like
    /// `POST /_sim/umbrella/faults`. No effect when the emulator is disabled.
    pub fn set_umbrella_faults(&self, f: UmbrellaFaults) {
        if let Ok(u) = self.umbrella() {
            u.lock().faults = state::sanitise(f);
        }
    }

    /// Sets (or with `None` removes) the per-org reports rate limit; windows start afresh.
    pub fn set_umbrella_rate_limit(&self, rl: Option<UmbrellaRateLimit>) {
        if let Ok(u) = self.umbrella() {
            u.lock().set_rate_limit(rl);
        }
    }

    /// Adds records stamped now to an org, like `POST /_sim/umbrella/records`; returns them
    /// as the service serves them (UTC).
    pub fn add_umbrella_records(
        &self,
        req: AddUmbrellaRecords,
    ) -> Result<Vec<serde_json::Value>, UmbrellaError> {
        self.umbrella()?.lock().add(&req)
    }

    /// Revokes an org's access (its reports answer 403) or, with `false`, restores it, like
    /// `POST /_sim/umbrella/revoke`; `org` is its id or name. Returns the org id.
    pub fn set_umbrella_revoked(&self, org: &str, revoked: bool) -> Result<u64, UmbrellaError> {
        self.umbrella()?.lock().set_revoked(org, revoked)
    }

    /// Every record of an org as stored (oldest first) and served in UTC: the data of
    /// `GET /_sim/umbrella/records?org=ID`.
    pub fn umbrella_records(&self, org: &str) -> Result<Vec<serde_json::Value>, UmbrellaError> {
        self.umbrella()?.lock().dump(org)
    }

    /// Makes every Umbrella access token invalid, as if they had all expired; returns how
    /// many there were.
    pub fn expire_umbrella_tokens(&self) -> usize {
        self.umbrella().map_or(0, |u| u.lock().expire_tokens())
    }

    /// Replaces the XDR fault rates (clamped into 0..=1, NaN is 0), like
    /// `POST /_sim/xdr/faults`. No effect when the emulator is disabled.
    pub fn set_xdr_faults(&self, f: XdrFaults) {
        if let Some(x) = &self.shared.xdr {
            x.lock().faults = state::sanitise(f);
        }
    }

    /// Makes every XDR access token invalid, as if they had all expired; returns how many
    /// there were.
    pub fn expire_xdr_tokens(&self) -> usize {
        self.shared
            .xdr
            .as_ref()
            .map_or(0, |x| x.lock().expire_tokens())
    }

    /// Sets the lifetime of XDR tokens issued from now on.
    pub fn set_xdr_token_ttl(&self, ttl: Duration) {
        if let Some(x) = &self.shared.xdr {
            x.lock().token_ttl = ttl;
        }
    }

    /// Every XDR incident as stored (oldest first), of one tenant or all, each with its
    /// tenant in `_tenant`: the data of `GET /_sim/xdr/incidents[?tenant=NAME]`.
    pub fn xdr_incidents(&self, tenant: Option<&str>) -> Vec<serde_json::Value> {
        self.shared
            .xdr
            .as_ref()
            .map_or_else(Vec::new, |x| x.lock().dump(tenant))
    }

    /// When the ServiceNow instance committed the first ticket of each `correlation_id`
    /// (empty when ServiceNow is disabled): the far end of signal-to-ticket latency.
    pub fn servicenow_ticket_times(&self) -> BTreeMap<String, SystemTime> {
        self.shared
            .servicenow
            .as_ref()
            .map(|sn| sn.lock().ticket_created.clone())
            .unwrap_or_default()
    }

    /// A tenant's Event Streams, oldest first (empty for an unknown tenant).
    pub fn event_streams(&self, tenant: &str) -> Vec<EventStreamInfo> {
        let st = self.shared.lock();
        st.by_name
            .get(tenant)
            .map(|&i| {
                st.tenants[i]
                    .streams
                    .iter()
                    .map(|s| EventStreamInfo {
                        id: s.id,
                        name: s.name.clone(),
                        queue_name: s.queue.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replaces the fault rates; rates outside 0..=1 are clamped (NaN is 0).
    pub fn set_faults(&self, f: Faults) {
        self.shared.lock().faults = state::sanitise(f);
    }

    /// Adds events stamped now, like `POST /_sim/secure_endpoint/events`; returns the ids of
    /// the well-formed ones (malformed records have no id). An unknown tenant or event type
    /// adds nothing and returns no id (logged as a warning).
    pub fn add_events(&self, req: AddEvents) -> Vec<u64> {
        match add_events(&self.shared, &req) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(tenant = %req.tenant, "sim: no events added: {e}");
                Vec::new()
            }
        }
    }

    /// Writes the endpoints file: `serde_json::to_string_pretty(&Endpoints)`. It holds API
    /// keys, so it is created with mode 0600.
    pub fn write_endpoints_file(&self, path: &Path) -> std::io::Result<()> {
        let mut text =
            serde_json::to_string_pretty(&self.shared.endpoints).map_err(std::io::Error::other)?;
        text.push('\n');
        files::write_private(path, &text)
    }

    /// Writes a socbridge config pointing at the emulators at `path`, and `socbridge.env` (the
    /// API keys, mode 0600) beside it. Keys appear only in the env file. The ServiceNow
    /// section is written commented out (its secrets are in the env file), so a socbridge that
    /// does not read it yet still loads the file; see [`SimHandle::write_config_with`].
    pub fn write_config(&self, path: &Path) -> std::io::Result<()> {
        files::write_config(&self.shared.endpoints, path, &ConfigOptions::default())
    }

    /// [`SimHandle::write_config`] with options.
    pub fn write_config_with(&self, path: &Path, opts: &ConfigOptions) -> std::io::Result<()> {
        files::write_config(&self.shared.endpoints, path, opts)
    }

    /// Stops accepting, lets open answers finish (up to a grace period), stops the event
    /// generator, and returns once no task of the emulator is left running.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        for mut task in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

/// A rate of arrivals must be a number >= 0.
fn check_rate(field: &str, rate: f64) -> Result<(), SimError> {
    if rate.is_finite() && rate >= 0.0 {
        Ok(())
    } else {
        Err(SimError::Config(format!(
            "{field} must be a number >= 0, got {rate}"
        )))
    }
}

/// Where an emulator with a port of its own listens: `offset` past the listen port, or any
/// free port when that is 0; `no_port` words the refusal when the sum passes 65535.
fn port_after(
    listen: SocketAddr,
    offset: u16,
    no_port: impl FnOnce(u16) -> String,
) -> Result<SocketAddr, SimError> {
    let port = match listen.port() {
        0 => 0,
        p => p
            .checked_add(offset)
            .ok_or_else(|| SimError::Config(no_port(p)))?,
    };
    Ok(SocketAddr::new(listen.ip(), port))
}

/// The base URL a client uses for a port on `ip`.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", SocketAddr::new(ip, port))
}

/// Binds, builds every tenant, spawns the server (and the arrival generator when
/// `rate_per_minute > 0`), and returns once the socket is listening.
pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    if cfg.tenants == 0 {
        return Err(SimError::Config("tenants must be at least 1".into()));
    }
    check_rate("rate_per_minute", cfg.rate_per_minute)?;
    let (listener, local) = net::bind(cfg.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: cfg.listen,
            source,
        })?;
    // A wildcard address is not somewhere a client can connect to: name loopback instead.
    let ip = match local.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let base_url = url("http", ip, local.port());

    // ServiceNow: its own port, P+1 with a fixed P, any free one with P = 0.
    let servicenow = if cfg.servicenow.enabled {
        let addr = port_after(cfg.listen, 1, |_| {
            "listen port 65535 leaves no port for ServiceNow".into()
        })?;
        let (listener, sn_local) = servicenow::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        Some((listener, url("http", ip, sn_local.port())))
    } else {
        None
    };

    // Symantec SWS: its own TLS port, P+2 with a fixed P, any free one with P = 0.
    let symantec = if cfg.symantec.enabled {
        check_rate("symantec.rate_per_minute", cfg.symantec.rate_per_minute)?;
        let addr = port_after(cfg.listen, 2, |_| {
            "listen port 65534 or above leaves no port for Symantec".into()
        })?;
        let (listener, sy_local) = net::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        Some((listener, url("https", ip, sy_local.port())))
    } else {
        None
    };

    // Umbrella: the main host on P+3 and the regional warehouse on P+4 (any free ports with
    // P = 0), same address.
    let umbrella = if cfg.umbrella.enabled {
        check_rate("umbrella.rate_per_minute", cfg.umbrella.rate_per_minute)?;
        let mut bound = Vec::with_capacity(2);
        for offset in [3u16, 4] {
            let addr = port_after(cfg.listen, offset, |p| {
                format!("listen port {p} leaves no port for Umbrella (P+3 and P+4)")
            })?;
            let (listener, local) = net::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })?;
            bound.push((listener, url("http", ip, local.port())));
        }
        let (regional, main) = (bound.pop(), bound.pop());
        main.zip(regional)
    } else {
        None
    };

    // Cisco XDR: its own port, P+6 with a fixed P, any free one with P = 0.
    let xdr_bound = if cfg.xdr.enabled {
        let addr = port_after(cfg.listen, 6, |p| {
            format!("listen port {p} leaves no port for XDR (P+6)")
        })?;
        let (listener, local) = xdr::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        Some((listener, url("http", ip, local.port())))
    } else {
        None
    };

    let (broker, publications) = if cfg.event_streams.enabled {
        let (b, rx) = event_streams::Broker::new(&cfg.event_streams).map_err(SimError::Config)?;
        (Some(b), Some(rx))
    } else {
        (None, None)
    };
    let start = SystemTime::now();
    let mut state = State::new(&cfg, start, &base_url);
    if let Some(b) = &broker {
        for t in &mut state.tenants {
            t.stream_tx = Some(b.tx.clone());
        }
    }
    let shutdown = CancellationToken::new();
    let (hook_tx, hook_rx) = tokio::sync::mpsc::unbounded_channel();
    let sn = servicenow.as_ref().map(|(_, url)| {
        Arc::new(servicenow::Sn::new(
            &cfg.servicenow,
            cfg.seed,
            url.clone(),
            hook_tx,
            shutdown.clone(),
        ))
    });
    let sym = match &symantec {
        Some((_, url)) => {
            let names: Vec<String> = state.tenants.iter().map(|t| t.world.name.clone()).collect();
            let sym = symantec::Sym::new(
                &cfg.symantec,
                cfg.seed,
                &names,
                url.clone(),
                ip,
                chrono::DateTime::<chrono::Utc>::from(start),
                cfg.initial_spread,
                shutdown.clone(),
            )
            .map_err(SimError::Pki)?;
            Some(Arc::new(sym))
        }
        None => None,
    };
    let umb = umbrella.as_ref().map(|((_, url), (_, regional_url))| {
        let names: Vec<String> = state.tenants.iter().map(|t| t.world.name.clone()).collect();
        Arc::new(umbrella::Umb::new(
            &cfg.umbrella,
            cfg.seed,
            &names,
            url.clone(),
            regional_url.clone(),
            start,
            cfg.initial_spread,
            shutdown.clone(),
        ))
    });
    let xdr_emulator = xdr_bound.as_ref().map(|(_, url)| {
        let names: Vec<String> = state.tenants.iter().map(|t| t.world.name.clone()).collect();
        Arc::new(xdr::Xdr::new(
            &cfg.xdr,
            cfg.seed,
            &names,
            url.clone(),
            shutdown.clone(),
        ))
    });
    let endpoints = Endpoints {
        secure_endpoint: base_url.clone(),
        control: format!("{base_url}/_sim"),
        tenants: state
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| TenantEndpoints {
                name: t.world.name.clone(),
                secure_endpoint: Some(SecureEndpointCreds {
                    client_id: t.world.client_id.clone(),
                    api_key: t.world.api_key.clone(),
                }),
                symantec_mss: sym.as_ref().and_then(|s| s.creds.get(i).cloned()),
                umbrella: umb.as_ref().and_then(|u| u.creds.get(i).cloned()),
            })
            .collect(),
        servicenow: sn.as_ref().map(|sn| sn.endpoints.clone()),
        symantec_mss: sym.as_ref().map(|s| s.endpoints.clone()),
        umbrella: umb.as_ref().map(|u| u.endpoints.clone()),
        xdr: xdr_emulator.as_ref().map(|x| x.endpoints.clone()),
    };
    let shared = Arc::new(Shared {
        base_url,
        start,
        endpoints,
        state: Mutex::new(state),
        shutdown,
        servicenow: sn.clone(),
        symantec: sym.clone(),
        umbrella: umb.clone(),
        broker,
        xdr: xdr_emulator.clone(),
        polls: polls::PollWitness::new(),
    });

    let app = axum::Router::new()
        .nest("/_sim", control::router(shared.clone()))
        .fallback_service(secure_endpoint::router(shared.clone()));
    let stop = shared.shutdown.clone();
    let server = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!("sim: server stopped: {e}");
        }
    });
    let mut tasks = vec![server];
    if let (Some(sn), Some((listener, _))) = (sn, servicenow) {
        tasks.push(tokio::spawn(servicenow::serve(sn.clone(), listener)));
        tasks.push(tokio::spawn(servicenow::webhook_worker(
            sn.clone(),
            hook_rx,
        )));
        tracing::info!(url = %sn.base_url, "sim: ServiceNow emulator listening");
    }
    if let (Some(sym), Some((listener, _))) = (sym, symantec) {
        tasks.push(tokio::spawn(symantec::serve(sym.clone(), listener)));
        if cfg.symantec.rate_per_minute > 0.0 {
            tasks.push(tokio::spawn(symantec::arrivals(
                sym.clone(),
                cfg.symantec.rate_per_minute,
            )));
        }
        tracing::info!(url = %sym.base_url, "sim: Symantec SWS emulator listening (client certificates required)");
    }
    if let (Some(umb), Some(((main, _), (regional, _)))) = (umb, umbrella) {
        tasks.push(tokio::spawn(umbrella::serve(
            umb.clone(),
            main,
            umbrella::Host::Main,
        )));
        tasks.push(tokio::spawn(umbrella::serve(
            umb.clone(),
            regional,
            umbrella::Host::Regional,
        )));
        if cfg.umbrella.rate_per_minute > 0.0 {
            tasks.push(tokio::spawn(umbrella::arrivals(
                umb.clone(),
                cfg.umbrella.rate_per_minute,
            )));
        }
        tracing::info!(url = %umb.base_url, regional = %umb.regional_url, "sim: Umbrella Reporting emulator listening");
    }
    if let (Some(x), Some((listener, _))) = (xdr_emulator, xdr_bound) {
        tasks.push(tokio::spawn(xdr::serve(x.clone(), listener)));
        tracing::info!(url = %x.base_url, "sim: Cisco XDR emulator listening");
    }
    if cfg.rate_per_minute > 0.0 {
        tasks.push(tokio::spawn(arrivals(shared.clone(), cfg.rate_per_minute)));
    }
    if let Some(rx) = publications {
        tasks.push(tokio::spawn(event_streams::publisher(shared.clone(), rx)));
    }
    tracing::info!(url = %shared.base_url, tenants = cfg.tenants, seed = cfg.seed, "sim: Secure Endpoint emulator listening");
    Ok(SimHandle { shared, tasks })
}

/// Adds `rate_per_minute` events per tenant per minute, stamped now, until shutdown. Ticks at
/// most once a second (more often for high rates, down to 20 ms) and carries fractions over,
/// so the long-run rate is exact; tenants are staggered so they do not all tick together.
async fn arrivals(shared: Arc<Shared>, rate_per_minute: f64) {
    let per_sec = rate_per_minute / 60.0;
    let tick = Duration::from_secs_f64((1.0 / per_sec).clamp(0.02, 1.0));
    {
        let mut st = shared.lock();
        let n = st.tenants.len() as f64;
        for (i, t) in st.tenants.iter_mut().enumerate() {
            t.owed = i as f64 / n;
        }
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = Instant::now();
        let due = per_sec * now.duration_since(last).as_secs_f64();
        last = now;
        let mut st = shared.lock();
        for t in st.tenants.iter_mut() {
            t.owed += due;
            let n = t.owed.floor();
            t.owed -= n;
            if n >= 1.0 {
                let req = AddEvents {
                    tenant: t.world.name.clone(),
                    count: n as usize,
                    malformed: false,
                    same_second: false,
                    event_type_id: None,
                };
                t.add(&req, None, &shared.base_url);
            }
        }
    }
}
