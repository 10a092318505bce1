//! The Symantec Managed Security Services "SWS" emulator: the `incidents.asmx` SOAP service
//! (`VENDOR-APIS.md` section 1) on its own TLS port, which requires a client certificate.
//!
//! - **Auth**: TLS client certificates only. The emulator runs a "production" CA (server
//!   certificate, every tenant's web-service certificate) and a "test API" CA; a handshake
//!   without a certificate, or with one of the test CA, is refused and counted. The
//!   certificate names the tenant (see [`pki`]).
//! - **Exports**: each tenant's identity as PKCS#12 in the field's two encodings (legacy
//!   3DES/RC2-40/SHA-1 MAC and modern PBES2/AES-256/HMAC-SHA256), plus a test-API `.p12`,
//!   all with one passphrase; listed in the endpoints file.
//! - **SOAP**: 1.1 and 1.2, dispatch on the local name of the Body's first child, answers in
//!   the request's version, Faults (HTTP 500) for what the service refuses.
//! - **Semantics**: `IncidentGetList` returns this tenant's incidents created *or updated*
//!   at or after `StartTimeStampGMT`, in ascending order of their last change (ties by
//!   number; the real order is not documented), truncated to `MaxIncidents`; an update makes
//!   an incident come back (upsert by number). Another tenant's incident number is "not
//!   found", never its data.
//! - **Hostile on request**: SOAP Fault 500, IIS 503, slow answers, dropped and truncated
//!   bodies, and commit-then-drop for `UpdateIncidentWorkflow` (applied, then the connection
//!   is closed without an answer).
//! - **Witness**: [`SymantecCounters`], per tenant the distinct incidents served in whole
//!   `IncidentGetList` answers and every accepted workflow update per incident.

mod data;
mod pkcs12;
mod pki;
mod server;
mod soap;
mod wsdl;

pub(crate) use server::serve;

use crate::RequestCounters;
use crate::world::purpose_rng as rng;
use chrono::{DateTime, NaiveDateTime, Utc};
use data::{Customer, Incident};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Default `Status` values `UpdateIncidentWorkflow` accepts (the workflow states of the MSS
/// portal; `VENDOR-APIS.md` only confirms `Closed`, so the set is configurable).
pub const DEFAULT_STATUSES: [&str; 6] = [
    "New",
    "Assigned",
    "In Progress",
    "Pending Customer",
    "Escalated",
    "Closed",
];

/// Default `Resolution` values (`Resolved` is confirmed; the rest are plausible, configurable).
pub const DEFAULT_RESOLUTIONS: [&str; 7] = [
    "Resolved",
    "False Positive",
    "Duplicate",
    "Not Actionable",
    "Risk Accepted",
    "Remediated",
    "Unresolved",
];

/// How to run the Symantec SWS emulator (part of [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct SymantecConfig {
    /// Serve it at all (default true). Off: no port, no endpoints entries.
    pub enabled: bool,
    /// Incidents each tenant holds at start, spread over [`crate::SimConfig::initial_spread`]
    /// (default 20).
    pub incidents_per_tenant: usize,
    /// New incidents per tenant per minute, arriving over time (default 0: a fixed set). A
    /// rate of its own, so Secure Endpoint benchmarks are not flooded with incidents.
    pub rate_per_minute: f64,
    /// Accepted `Status` values (matched case-insensitively); default [`DEFAULT_STATUSES`].
    pub statuses: Vec<String>,
    /// Accepted `Resolution` values; default [`DEFAULT_RESOLUTIONS`].
    pub resolutions: Vec<String>,
    /// Fault rates at start (all 0 by default).
    pub faults: SymantecFaults,
}

impl Default for SymantecConfig {
    fn default() -> Self {
        SymantecConfig {
            enabled: true,
            incidents_per_tenant: 20,
            rate_per_minute: 0.0,
            statuses: DEFAULT_STATUSES.iter().map(|s| (*s).to_string()).collect(),
            resolutions: DEFAULT_RESOLUTIONS
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            faults: SymantecFaults::default(),
        }
    }
}

/// Fault rates of the Symantec emulator: each the probability (0..=1) that one SOAP request
/// meets that fault, drawn from a generator fixed by the seed (with the draw the emulators
/// share, so one seed replays the same decisions).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct SymantecFaults {
    /// HTTP 500 with a SOAP Fault (`soap:Server`); nothing is applied.
    pub rate_500: f64,
    /// HTTP 503 with IIS's HTML page; nothing is applied.
    pub rate_503: f64,
    /// Sleep `slow_ms`, then answer normally.
    pub rate_slow: f64,
    pub slow_ms: u64,
    /// A 200 whose body breaks off (an update has been applied).
    pub rate_drop: f64,
    /// A 200 whose body is cut in half (an update has been applied).
    pub rate_truncate: f64,
    /// `UpdateIncidentWorkflow` only: apply, then close the connection without an answer.
    pub rate_commit_drop: f64,
}

/// The Symantec part of [`crate::Endpoints`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SymantecEndpoints {
    /// `https://127.0.0.1:P+2`; the service is at `{url}/SWS/incidents.asmx`.
    pub url: String,
    /// The production CA (PEM) that issued the server certificate: what clients trust.
    pub ca_pem: String,
}

/// One tenant's web-service identity (part of [`crate::TenantEndpoints`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SymantecCreds {
    /// PKCS#12, PBES2/AES-256-CBC/PBKDF2-HMAC-SHA256 with an HMAC-SHA256 MAC, base64.
    pub p12_base64: String,
    /// The same identity as a legacy export: key under `pbeWithSHAAnd3-KeyTripleDES-CBC`,
    /// certificates under `pbeWithSHAAnd40BitRC2-CBC`, SHA-1 MAC, base64.
    pub p12_legacy_base64: String,
    /// A test-API certificate (modern encoding) issued by the test CA: production refuses it.
    pub test_api_p12_base64: String,
    /// The passphrase of all three.
    pub passphrase: String,
}

/// Counters of the Symantec emulator (`symantec_mss` in `GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SymantecCounters {
    /// HTTP answers by status (a commit-drop has none: counted in `total` and
    /// `faults.commit_drop` only).
    pub requests: RequestCounters,
    /// Requests by SOAP operation (`WSDL` for the WSDL, `unknown` for an operation the
    /// service lacks, `unreadable` for an envelope that could not be read).
    pub by_operation: BTreeMap<String, u64>,
    pub handshakes_refused: HandshakeRefusals,
    pub faults: SymantecFaultCounters,
    /// Per tenant name.
    pub tenants: BTreeMap<String, SymantecTenantCounters>,
    /// `IncidentGetList` calls per tenant (its client certificate) in flight at once:
    /// overlaps mean two pollers of one tenant (see [`crate::PollOverlapCounters`]).
    pub polls: crate::PollOverlapCounters,
}

/// TLS handshakes the server refused.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct HandshakeRefusals {
    /// The client sent no certificate.
    pub no_certificate: u64,
    /// The client's certificate is not from the production CA (a test-API certificate).
    pub unknown_ca: u64,
    /// Any other handshake failure (bad certificate, protocol error, timeout).
    pub other: u64,
}

/// Faults actually applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SymantecFaultCounters {
    #[serde(rename = "500")]
    pub status_500: u64,
    #[serde(rename = "503")]
    pub status_503: u64,
    pub slow: u64,
    pub drop: u64,
    pub truncate: u64,
    pub commit_drop: u64,
}

/// One tenant's incidents and what was done with them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct SymantecTenantCounters {
    /// Incidents the tenant holds.
    pub incidents_total: u64,
    /// Distinct incident numbers that appeared in an `IncidentGetList` answer delivered
    /// whole (a dropped or truncated answer does not count).
    pub served_distinct: u64,
    /// Changes to the tenant's incidents after creation (workflow updates and analysts'
    /// changes).
    pub updates_total: u64,
    /// Accepted `UpdateIncidentWorkflow` calls (answered `true`, or applied then dropped).
    pub workflow_updates: u64,
    /// `UpdateIncidentWorkflow` calls answered `false` (a value outside the accepted sets).
    pub workflow_refused: u64,
    /// Accepted workflow updates per incident number.
    pub workflow_by_incident: BTreeMap<String, WorkflowCounters>,
}

/// Workflow updates of one incident.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct WorkflowCounters {
    pub updates: u64,
    /// The last non-empty `Reference` given.
    pub last_reference: Option<String>,
}

/// Body of `POST /_sim/symantec_mss/incidents` and argument of
/// [`crate::SimHandle::add_symantec_incidents`].
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct AddSymantecIncidents {
    pub tenant: String,
    pub count: usize,
    /// The severity of every new incident (`Emergency`, `Critical`, `Warning`,
    /// `Informational`); drawn per incident when absent.
    #[serde(default)]
    pub severity: Option<String>,
}

/// Body of `POST /_sim/symantec_mss/analyst` and argument of
/// [`crate::SimHandle::symantec_analyst_change`]: what an MSS analyst does at the vendor.
/// Members left out stay; any change bumps `UpdateTimestampGMT`.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct SymantecAnalystChange {
    pub tenant: String,
    pub incident_number: u64,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub resolution: Option<String>,
    #[serde(default)]
    pub severity: Option<String>,
    /// A comment by the analyst.
    #[serde(default)]
    pub comment: Option<String>,
    /// The analyst's name (a generated MSS analyst when absent).
    #[serde(default)]
    pub analyst: Option<String>,
}

/// Why a control call on the Symantec emulator failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SymantecError {
    #[error("the Symantec MSS emulator is disabled")]
    Disabled,
    #[error("unknown tenant '{0}'")]
    UnknownTenant(String),
    #[error("tenant has no incident {0}")]
    UnknownIncident(u64),
    #[error("{field} '{value}' is not accepted")]
    InvalidValue { field: &'static str, value: String },
    #[error("count must be at most {0}")]
    TooMany(usize),
}

/// Largest `count` one call may add: a bound on memory against a typo.
const MAX_ADD: usize = 100_000;

/// Status codes the service answers, listed at 0 until seen (a stable shape).
const STATUSES: [u16; 8] = [200, 403, 404, 405, 413, 415, 500, 503];

/// The fault decisions for one request.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plan {
    pub slow: Option<Duration>,
    pub error: Option<u16>,
    pub body: Option<crate::state::BodyFault>,
    pub commit_drop: bool,
}

/// One tenant's incidents.
pub(crate) struct TenantData {
    pub customer: Customer,
    /// By incident number.
    pub incidents: BTreeMap<u64, Incident>,
    rng: ChaCha8Rng,
    served: HashSet<u64>,
    /// Incidents created so far (every other one writes plain times).
    created: u64,
    pub counters: SymantecTenantCounters,
    /// Incidents owed by the arrival generator (fraction carried between ticks).
    owed: f64,
}

/// Everything mutable, behind one lock (never held across an await).
pub(crate) struct SymState {
    pub tenants: Vec<TenantData>,
    pub by_name: HashMap<String, usize>,
    /// Incident number → owning tenant.
    owner: HashMap<u64, usize>,
    next_number: u64,
    number_rng: ChaCha8Rng,
    pub faults: SymantecFaults,
    fault_rng: ChaCha8Rng,
    pub statuses: Vec<String>,
    pub resolutions: Vec<String>,
    pub counters: SymantecCounters,
}

/// What the server, the arrival generator and the control API share.
pub(crate) struct Sym {
    pub endpoints: SymantecEndpoints,
    /// Per tenant, in tenant order.
    pub creds: Vec<SymantecCreds>,
    /// Per tenant: certificate and key in PEM.
    pub identity_pem: Vec<String>,
    /// Per tenant: the test-API certificate and key in PEM.
    pub test_identity_pem: Vec<String>,
    pub base_url: String,
    pub tls: std::sync::Arc<rustls::ServerConfig>,
    /// Production client certificate DER → tenant index.
    pub by_cert: HashMap<Vec<u8>, usize>,
    state: Mutex<SymState>,
    pub shutdown: CancellationToken,
    /// `IncidentGetList` calls in flight per tenant: the overlap witness and the answer
    /// delay.
    pub polls: std::sync::Arc<crate::polls::PollWitness>,
}

impl crate::state::FaultRates for SymantecFaults {
    fn rates_mut(&mut self) -> Vec<&mut f64> {
        vec![
            &mut self.rate_500,
            &mut self.rate_503,
            &mut self.rate_slow,
            &mut self.rate_drop,
            &mut self.rate_truncate,
            &mut self.rate_commit_drop,
        ]
    }

    fn common(&self) -> crate::state::CommonRates {
        crate::state::CommonRates {
            slow: self.rate_slow,
            slow_ms: self.slow_ms,
            // 429 is not something IIS answers here.
            status_429: 0.0,
            status_500: self.rate_500,
            status_503: self.rate_503,
            drop: self.rate_drop,
            truncate: self.rate_truncate,
        }
    }

    fn extra(&self) -> f64 {
        self.rate_commit_drop
    }
}

/// Parses `StartTimeStampGMT` in the forms clients send: RFC 3339 with any fraction
/// (`2017-12-20T10:04:35.435Z`, `2021-03-02T09:45:00.0000000Z`), minutes only
/// (`2017-12-20T10:04Z`), or without an offset (taken as GMT).
pub(crate) fn parse_timestamp(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = v.strip_suffix('Z').unwrap_or(v);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    // Minutes with an offset (`2017-12-20T10:04+01:00`).
    if v.len() > 16 {
        let (head, off) = v.split_at(16);
        if let Ok(t) = DateTime::parse_from_str(&format!("{head}:00{off}"), "%Y-%m-%dT%H:%M:%S%:z")
        {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

/// The canonical spelling of `v` in `set` (case-insensitive).
fn canonical<'a>(set: &'a [String], v: &str) -> Option<&'a str> {
    set.iter()
        .find(|s| s.eq_ignore_ascii_case(v.trim()))
        .map(String::as_str)
}

/// The moment a change is stamped: now at .NET's resolution, strictly after `previous`.
fn bump(previous: DateTime<Utc>) -> DateTime<Utc> {
    let now = data::ticks(Utc::now());
    if now > previous {
        now
    } else {
        previous + chrono::Duration::nanoseconds(100)
    }
}

impl Sym {
    /// Builds the PKI, every tenant's incidents (from the seed) and the counters.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &SymantecConfig,
        seed: u64,
        tenant_names: &[String],
        base_url: String,
        listen_ip: IpAddr,
        start: DateTime<Utc>,
        spread: Duration,
        shutdown: CancellationToken,
    ) -> Result<Sym, String> {
        let customers: Vec<Customer> = tenant_names.iter().map(|n| Customer::new(n)).collect();
        let mut pki_rng = rng(seed, b"sbsy-pki", 1);
        let pairs: Vec<(String, String)> = customers
            .iter()
            .map(|c| (c.name.clone(), c.organization.clone()))
            .collect();
        let pki = pki::Pki::build(&mut pki_rng, &pairs, listen_ip).map_err(|e| e.to_string())?;
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        let creds = pki
            .tenants
            .iter()
            .map(|t| SymantecCreds {
                p12_base64: b64(&t.p12_modern),
                p12_legacy_base64: b64(&t.p12_legacy),
                test_api_p12_base64: b64(&t.test_p12),
                passphrase: t.passphrase.clone(),
            })
            .collect();
        let identity_pem = pki.tenants.iter().map(|t| t.identity_pem.clone()).collect();
        let test_identity_pem = pki
            .tenants
            .iter()
            .map(|t| t.test_identity_pem.clone())
            .collect();

        let mut number_rng = rng(seed, b"sbsy-num", 1);
        let next_number = 40_000_000 + number_rng.random_range(0..1_000_000u64);
        let mut st = SymState {
            tenants: customers
                .into_iter()
                .enumerate()
                .map(|(i, customer)| TenantData {
                    customer,
                    incidents: BTreeMap::new(),
                    rng: rng(seed, b"sbsy-dat", i as u64 + 1),
                    served: HashSet::new(),
                    created: 0,
                    counters: SymantecTenantCounters::default(),
                    owed: 0.0,
                })
                .collect(),
            by_name: tenant_names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i))
                .collect(),
            owner: HashMap::new(),
            next_number,
            number_rng,
            faults: crate::state::sanitise(cfg.faults.clone()),
            fault_rng: rng(seed, b"sbsyfalt", 2),
            statuses: cfg.statuses.clone(),
            resolutions: cfg.resolutions.clone(),
            counters: SymantecCounters {
                requests: RequestCounters {
                    total: 0,
                    by_status: STATUSES.iter().map(|s| (s.to_string(), 0)).collect(),
                },
                ..SymantecCounters::default()
            },
        };
        // The initial set, oldest first across the spread; about a quarter already moved.
        let n = cfg.incidents_per_tenant;
        let spread = chrono::Duration::from_std(spread).unwrap_or(chrono::Duration::minutes(8));
        for t in 0..st.tenants.len() {
            for k in 0..n {
                let frac = if n <= 1 {
                    1.0
                } else {
                    k as f64 / (n - 1) as f64
                };
                let at = start - spread + spread * ((frac * 1000.0) as i32) / 1000;
                let number = st.insert(t, at, None);
                let td = &mut st.tenants[t];
                if td.rng.random_bool(0.25) {
                    let later = at + (start - at) / 2;
                    let c = data::analyst_comment(&mut td.rng, later);
                    if let Some(i) = td.incidents.get_mut(&number) {
                        i.status = "Assigned".into();
                        i.assigned_person = c.by.clone();
                        i.comments.push(c);
                        i.updated = data::ticks(later.max(i.updated));
                    }
                }
            }
        }
        let endpoints = SymantecEndpoints {
            url: base_url.clone(),
            ca_pem: pki.ca_pem.clone(),
        };
        Ok(Sym {
            endpoints,
            creds,
            identity_pem,
            test_identity_pem,
            base_url,
            tls: pki.server,
            by_cert: pki.by_cert,
            state: Mutex::new(st),
            shutdown,
            polls: crate::polls::PollWitness::new(),
        })
    }

    /// The state, even if a panicking handler poisoned the lock.
    pub fn lock(&self) -> MutexGuard<'_, SymState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> SymantecCounters {
        let st = self.lock();
        let mut c = st.counters.clone();
        for t in &st.tenants {
            let mut tc = t.counters.clone();
            tc.incidents_total = t.incidents.len() as u64;
            tc.served_distinct = t.served.len() as u64;
            c.tenants.insert(t.customer.name.clone(), tc);
        }
        drop(st);
        c.polls = self.polls.counters();
        c
    }
}

impl SymState {
    /// Creates one incident for tenant `t` at `at`; returns its number.
    fn insert(&mut self, t: usize, at: DateTime<Utc>, severity: Option<&'static str>) -> u64 {
        self.next_number += self.number_rng.random_range(1..=37u64);
        let number = self.next_number;
        let td = &mut self.tenants[t];
        let earlier: Vec<u64> = td.incidents.keys().rev().take(20).copied().collect();
        let plain_times = td.created % 2 == 1;
        td.created += 1;
        let inc = data::generate(
            &mut td.rng,
            data::Spec {
                number,
                created: at,
                plain_times,
                severity,
                customer: &td.customer,
                earlier: &earlier,
            },
        );
        td.incidents.insert(number, inc);
        self.owner.insert(number, t);
        number
    }

    /// Adds incidents stamped now.
    pub fn add(&mut self, req: &AddSymantecIncidents) -> Result<Vec<u64>, SymantecError> {
        if req.count > MAX_ADD {
            return Err(SymantecError::TooMany(MAX_ADD));
        }
        let &t = self
            .by_name
            .get(&req.tenant)
            .ok_or_else(|| SymantecError::UnknownTenant(req.tenant.clone()))?;
        let severity = match &req.severity {
            None => None,
            Some(s) => Some(
                data::severity(s).ok_or_else(|| SymantecError::InvalidValue {
                    field: "severity",
                    value: s.clone(),
                })?,
            ),
        };
        let mut out = Vec::with_capacity(req.count);
        let mut at = data::ticks(Utc::now());
        for _ in 0..req.count {
            out.push(self.insert(t, at, severity));
            at += chrono::Duration::nanoseconds(100);
        }
        Ok(out)
    }

    /// Applies an analyst's change at the vendor.
    pub fn analyst_change(&mut self, c: &SymantecAnalystChange) -> Result<(), SymantecError> {
        let &t = self
            .by_name
            .get(&c.tenant)
            .ok_or_else(|| SymantecError::UnknownTenant(c.tenant.clone()))?;
        let invalid = |field: &'static str, value: &str| SymantecError::InvalidValue {
            field,
            value: value.to_string(),
        };
        let status = match &c.status {
            Some(s) => Some(
                canonical(&self.statuses, s)
                    .ok_or_else(|| invalid("status", s))?
                    .to_string(),
            ),
            None => None,
        };
        let resolution = match &c.resolution {
            Some(s) => Some(
                canonical(&self.resolutions, s)
                    .ok_or_else(|| invalid("resolution", s))?
                    .to_string(),
            ),
            None => None,
        };
        let severity = match &c.severity {
            Some(s) => Some(data::severity(s).ok_or_else(|| invalid("severity", s))?),
            None => None,
        };
        let td = &mut self.tenants[t];
        let analyst = c
            .analyst
            .clone()
            .unwrap_or_else(|| data::analyst(&mut td.rng));
        let inc = td
            .incidents
            .get_mut(&c.incident_number)
            .ok_or(SymantecError::UnknownIncident(c.incident_number))?;
        let when = bump(inc.updated);
        inc.set_workflow(status, resolution, severity);
        if let Some(text) = c.comment.as_deref().filter(|s| !s.is_empty()) {
            inc.comments.push(data::Comment {
                time: when,
                text: text.to_string(),
                by: analyst,
            });
        }
        inc.updated = when;
        td.counters.updates_total += 1;
        Ok(())
    }

    /// Every incident of a tenant as JSON, oldest first (the witness view).
    pub fn dump(&self, tenant: &str) -> Result<Vec<serde_json::Value>, SymantecError> {
        let &t = self
            .by_name
            .get(tenant)
            .ok_or_else(|| SymantecError::UnknownTenant(tenant.to_string()))?;
        let mut v: Vec<&Incident> = self.tenants[t].incidents.values().collect();
        v.sort_by_key(|i| (i.created, i.number));
        Ok(v.into_iter()
            .map(|i| serde_json::to_value(i).unwrap_or(serde_json::Value::Null))
            .collect())
    }

    /// Draws one request's faults (the shared draw; 429 is not something IIS answers here).
    pub fn draw(&mut self) -> Plan {
        let (common, commit_drop) = crate::state::draw_faults(&mut self.fault_rng, &self.faults);
        Plan {
            slow: common.slow,
            error: common.error,
            body: common.body,
            commit_drop,
        }
    }

    /// Counts one answer.
    pub fn count(&mut self, status: u16, operation: &str) {
        let r = &mut self.counters.requests;
        r.total += 1;
        *r.by_status.entry(status.to_string()).or_insert(0) += 1;
        *self
            .counters
            .by_operation
            .entry(operation.to_string())
            .or_insert(0) += 1;
    }

    /// Marks incidents as delivered to tenant `t` in a whole answer.
    pub fn mark_served(&mut self, t: usize, numbers: &[u64]) {
        self.tenants[t].served.extend(numbers.iter().copied());
    }

    /// The tenant owning an incident number.
    pub fn owner(&self, number: u64) -> Option<usize> {
        self.owner.get(&number).copied()
    }
}

/// Adds `rate_per_minute` incidents per tenant per minute, stamped now, until shutdown (the
/// same pacing as the Secure Endpoint generator: fractions carried over, at most one tick a
/// second).
pub(crate) async fn arrivals(sym: std::sync::Arc<Sym>, rate_per_minute: f64) {
    let per_sec = rate_per_minute / 60.0;
    let tick = Duration::from_secs_f64((1.0 / per_sec).clamp(0.02, 1.0));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = sym.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let due = per_sec * now.duration_since(last).as_secs_f64();
        last = now;
        let mut st = sym.lock();
        for t in 0..st.tenants.len() {
            st.tenants[t].owed += due;
            let n = st.tenants[t].owed.floor();
            st.tenants[t].owed -= n;
            let stamp = data::ticks(Utc::now());
            for _ in 0..n as usize {
                st.insert(t, stamp, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_every_form_clients_send() {
        let a = parse_timestamp("2017-12-20T10:04:35.435Z").unwrap();
        assert_eq!(a.timestamp_subsec_millis(), 435);
        let b = parse_timestamp("2017-12-20T10:04Z").unwrap();
        assert_eq!(b.to_rfc3339(), "2017-12-20T10:04:00+00:00");
        let c = parse_timestamp("2021-03-02T09:45:00.0000000Z").unwrap();
        assert_eq!(c.to_rfc3339(), "2021-03-02T09:45:00+00:00");
        assert!(parse_timestamp("2017-12-20T10:04:35.437").is_some());
        assert!(parse_timestamp("2017-12-20T10:04+01:00").is_some());
        assert!(parse_timestamp("yesterday").is_none());
        assert!(parse_timestamp("").is_none());
    }
}
