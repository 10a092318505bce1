//! The Cisco Umbrella Reporting API v2 emulator (`VENDOR-APIS.md` section 3) on its own
//! plain-HTTP port, with a second "regional warehouse" port serving the same API.
//!
//! - **Auth**: `POST /auth/v2/token` (and the legacy `/auth/v2/oauth2/token`, POST or GET)
//!   with HTTP Basic `key:secret` and `grant_type=client_credentials` issues opaque bearer
//!   tokens, about 20 a minute per key. One MSSP **parent** key acts for any child org with
//!   `X-Umbrella-OrgID`; each tenant's child-org key acts for its own org only. A revoked
//!   org answers 403 for that org alone.
//! - **Reports**: `/reports/v2/activity[/dns|proxy|firewall|intrusion|ip]` and the legacy
//!   `/v2/organizations/{orgId}/activity...`, parameters checked as the service does (`from`,
//!   `to` and `limit` required), `limit`+`offset` paging, `{"meta":{},"data":[...]}`.
//! - **Regional warehouses**: for some orgs (a share fixed by the seed) the main host answers
//!   302 to the same path on the regional host, which insists on the `Authorization` header
//!   a careless client drops on a host change.
//! - **Hostile**: the order of records within one second changes from call to call (offset
//!   paging across a second boundary skips or repeats, as on the real service); about 5
//!   requests a second per org, then 429 without rate headers; injected 429/500/503, slow,
//!   dropped and truncated answers and pages that repeat a record of the previous page.
//! - **Witness**: [`UmbrellaCounters`], per org the distinct records that appeared in a
//!   whole 200 answer (records are told apart by an internal id the wire never carries).

mod data;
mod query;
mod server;

pub(crate) use server::{Host, serve};

use crate::RequestCounters;
use crate::world::purpose_rng as rng;
use data::{Fingerprint, Kind, OrgWorld, Overrides, Record};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How to run the Umbrella emulator (part of [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct UmbrellaConfig {
    /// Serve it at all (default true). Off: no ports, no endpoints entries.
    pub enabled: bool,
    /// Records each org holds at start, spread over [`crate::SimConfig::initial_spread`] in
    /// bursts of several a second (default 200).
    pub records_per_org: usize,
    /// New records per org per minute, arriving over time (default 0: a fixed set).
    pub rate_per_minute: f64,
    /// Child orgs beyond the tenants' (default 0): `child-org-1`, ... reachable with the
    /// parent key only, so a test can have many orgs without many full tenants.
    pub extra_orgs: usize,
    /// The share of orgs (0..=1, drawn per org from the seed) whose reports live in the
    /// regional warehouse: the main host answers them with a 302 (default 0.2).
    pub regional_share: f64,
    /// Lifetime of access tokens (`expires_in`; default one hour).
    pub token_ttl: Duration,
    /// Token requests per key per minute before 429 (default 20; 0 = no limit).
    pub token_requests_per_minute: u64,
    /// The reports rate limit per org (default 5 requests a second); `None` turns it off.
    pub rate_limit: Option<UmbrellaRateLimit>,
    /// Fault rates at start (all 0 by default).
    pub faults: UmbrellaFaults,
}

impl Default for UmbrellaConfig {
    fn default() -> Self {
        UmbrellaConfig {
            enabled: true,
            records_per_org: 200,
            rate_per_minute: 0.0,
            extra_orgs: 0,
            regional_share: 0.2,
            token_ttl: Duration::from_secs(3600),
            token_requests_per_minute: 20,
            rate_limit: Some(UmbrellaRateLimit::default()),
            faults: UmbrellaFaults::default(),
        }
    }
}

/// The per-org reports rate limit: `limit` requests per `window_ms`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UmbrellaRateLimit {
    pub limit: u64,
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
}

fn default_window_ms() -> u64 {
    1000
}

impl Default for UmbrellaRateLimit {
    /// About 5 requests a second per organisation, as reported for the real service.
    fn default() -> Self {
        UmbrellaRateLimit {
            limit: 5,
            window_ms: 1000,
        }
    }
}

/// Fault rates of the Umbrella emulator: each the probability (0..=1) that one reports
/// request meets that fault, drawn with the draw the emulators share (token requests meet
/// none).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct UmbrellaFaults {
    /// 429 `{"message":"Too Many Requests"}`, no rate headers.
    pub rate_429: f64,
    /// 500 `{"message":"Internal Server Error"}`.
    pub rate_500: f64,
    /// 503 `{"message":"Service Unavailable"}`.
    pub rate_503: f64,
    /// Sleep `slow_ms`, then answer normally.
    pub rate_slow: f64,
    pub slow_ms: u64,
    /// A 200 whose body breaks off.
    pub rate_drop: f64,
    /// A 200 whose JSON is cut in half (Content-Length matches the cut body).
    pub rate_truncate: f64,
    /// A page with offset > 0 also carries the last record of the previous page.
    pub rate_duplicate: f64,
}

/// A child org reachable with the parent key only (part of [`UmbrellaEndpoints`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UmbrellaOrg {
    pub org_id: u64,
    pub name: String,
}

/// The Umbrella part of [`crate::Endpoints`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UmbrellaEndpoints {
    /// `http://127.0.0.1:P+3`: tokens at `/auth/v2/token`, reports under `/reports/v2/`.
    pub base_url: String,
    /// `http://127.0.0.1:P+4`: the regional warehouse some orgs are redirected to.
    pub regional_url: String,
    /// The MSSP parent organisation's API key and secret: act for any child org with
    /// `X-Umbrella-OrgID`.
    pub parent_key: String,
    pub parent_secret: String,
    pub parent_org_id: u64,
    /// Child orgs beyond the tenants' ([`UmbrellaConfig::extra_orgs`]).
    pub extra_orgs: Vec<UmbrellaOrg>,
}

/// A tenant's child org and its own API key (part of [`crate::TenantEndpoints`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UmbrellaCreds {
    pub org_id: u64,
    pub key: String,
    pub secret: String,
}

/// Counters of the Umbrella emulator (`umbrella` in `GET /_sim/counters`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct UmbrellaCounters {
    /// Answers of both hosts by status (control requests are not counted).
    pub requests: RequestCounters,
    /// Requests by path kind: `token`, `legacy_token`, `activity`, `activity/dns`, ...,
    /// `legacy/activity`, `legacy/activity/dns`, ..., `unknown`.
    pub by_kind: BTreeMap<String, u64>,
    /// Token requests per key: `parent`, or the child org's id.
    pub tokens: BTreeMap<String, UmbrellaTokenCounters>,
    /// Per org id.
    pub orgs: BTreeMap<String, UmbrellaOrgCounters>,
    /// Reports requests the parent key made for its own org (no `X-Umbrella-OrgID`):
    /// answered with no records, as the parent org has no activity of its own.
    pub parent_org_requests: u64,
    /// 302s from the main host to the regional one.
    pub redirects: u64,
    pub regional: RegionalCounters,
    pub faults: UmbrellaFaultCounters,
    /// Activity requests per org id in flight at once: overlaps mean two pollers of one
    /// org (see [`crate::PollOverlapCounters`]).
    pub polls: crate::PollOverlapCounters,
}

/// Token requests of one key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct UmbrellaTokenCounters {
    pub issued: u64,
    /// Refused with 429 (over the per-minute budget).
    pub refused_429: u64,
}

/// One org's records and what was done with them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct UmbrellaOrgCounters {
    pub name: String,
    /// Whether its reports live in the regional warehouse (the main host redirects).
    pub regional: bool,
    pub revoked: bool,
    pub records_total: u64,
    /// Distinct records that appeared in a whole 200 answer (a dropped or truncated answer
    /// does not count).
    pub served_distinct: u64,
    /// Reports requests for this org (whatever the answer).
    pub reports_requests: u64,
    #[serde(rename = "429")]
    pub status_429: u64,
    #[serde(rename = "403")]
    pub status_403: u64,
    pub redirects: u64,
}

/// Requests that reached the regional host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct RegionalCounters {
    pub with_authorization: u64,
    /// Answered 401: the client dropped the header when it followed the redirect.
    pub without_authorization: u64,
}

/// Faults actually applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct UmbrellaFaultCounters {
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

/// Body of `POST /_sim/umbrella/records` and argument of
/// [`crate::SimHandle::add_umbrella_records`]: records stamped now.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AddUmbrellaRecords {
    /// The org: its id, or the name of its tenant or extra org.
    pub org: String,
    pub count: usize,
    /// All records of the call share one second.
    #[serde(default)]
    pub same_second: bool,
    /// A category id of every record (its kind is then DNS or proxy); drawn when absent.
    #[serde(default)]
    pub category: Option<u32>,
    /// `allowed`, `blocked` or `proxied`; drawn when absent.
    #[serde(default)]
    pub verdict: Option<String>,
    /// The label of the identity of every record (a roaming computer of that name is
    /// created if the org has none).
    #[serde(default)]
    pub identity: Option<String>,
    /// `dns`, `proxy`, `firewall`, `intrusion` or `ip`; drawn when absent.
    #[serde(default)]
    pub kind: Option<String>,
}

/// Why a control call on the Umbrella emulator failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UmbrellaError {
    #[error("the Umbrella emulator is disabled")]
    Disabled,
    #[error("unknown org '{0}'")]
    UnknownOrg(String),
    #[error("{field} '{value}' is not accepted")]
    InvalidValue { field: &'static str, value: String },
    #[error("count must be at most {0}")]
    TooMany(usize),
}

/// Largest `count` one call may add: a bound on memory against a typo.
const MAX_ADD: usize = 200_000;

/// Status codes the service answers, listed at 0 until seen (a stable shape).
const STATUSES: [u16; 10] = [200, 302, 400, 401, 403, 404, 405, 429, 500, 503];

/// A key's power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Principal {
    Parent,
    /// A child org's own key (index into the orgs).
    Child(usize),
}

impl Principal {
    /// The counters' name of the key.
    fn label(self, orgs: &[Org]) -> String {
        match self {
            Principal::Parent => "parent".into(),
            Principal::Child(i) => orgs[i].id.to_string(),
        }
    }
}

/// A fixed rate-limit window.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    start: Instant,
    used: u64,
}

impl Bucket {
    /// Spends one unit of `limit` per `window`: false when the window's budget is spent.
    fn spend(slot: &mut Option<Bucket>, limit: u64, window: Duration) -> bool {
        let now = Instant::now();
        let b = slot.get_or_insert(Bucket {
            start: now,
            used: 0,
        });
        if now.duration_since(b.start) >= window {
            *b = Bucket {
                start: now,
                used: 0,
            };
        }
        if b.used >= limit {
            return false;
        }
        b.used += 1;
        true
    }
}

/// One child org: its identities, records and counters.
pub(crate) struct Org {
    pub id: u64,
    pub name: String,
    /// Its own API key, for a tenant's org; extra orgs have none.
    pub creds: Option<(String, String)>,
    pub regional: bool,
    pub revoked: bool,
    pub world: OrgWorld,
    /// Ascending by (timestamp, seq): arrivals append.
    pub records: Vec<Record>,
    taken: HashSet<Fingerprint>,
    served: HashSet<u64>,
    rng: ChaCha8Rng,
    bucket: Option<Bucket>,
    pub counters: UmbrellaOrgCounters,
    owed: f64,
}

impl Org {
    fn insert(&mut self, seq: u64, ts_ms: i64, o: &Overrides) -> usize {
        let r = data::generate(&mut self.rng, &self.world, seq, ts_ms, o, &mut self.taken);
        let key = (r.ts_ms, r.seq);
        let at = self.records.partition_point(|e| (e.ts_ms, e.seq) <= key);
        self.records.insert(at, r);
        at
    }
}

/// An access token.
struct Token {
    principal: Principal,
    expires: Instant,
}

/// The fault decisions for one request: those of Secure Endpoint (the seventh is the
/// duplicate).
pub(crate) use crate::state::FaultPlan as Plan;

/// Everything mutable, behind one lock (never held across an await).
pub(crate) struct UmbState {
    pub orgs: Vec<Org>,
    by_id: HashMap<u64, usize>,
    keys: HashMap<String, (String, Principal)>,
    tokens: HashMap<String, Token>,
    token_rng: ChaCha8Rng,
    token_buckets: HashMap<String, Option<Bucket>>,
    pub token_ttl: Duration,
    pub token_limit: u64,
    pub rate_limit: Option<UmbrellaRateLimit>,
    pub faults: UmbrellaFaults,
    fault_rng: ChaCha8Rng,
    /// Per-request draws of the order within a second.
    order_rng: ChaCha8Rng,
    next_seq: u64,
    pub counters: UmbrellaCounters,
}

/// What the servers, the arrival generator and the control API share.
pub(crate) struct Umb {
    pub endpoints: UmbrellaEndpoints,
    /// Per tenant, in tenant order.
    pub creds: Vec<UmbrellaCreds>,
    pub base_url: String,
    pub regional_url: String,
    pub parent_org_id: u64,
    state: Mutex<UmbState>,
    pub shutdown: CancellationToken,
    /// Activity requests in flight per org: the overlap witness and the answer delay.
    pub polls: Arc<crate::polls::PollWitness>,
}

crate::state::seven_fault_rates!(UmbrellaFaults, rate_duplicate);

/// Wall-clock now in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An API key or secret: 32 lower-case hex characters, as the service's look.
fn key_text(r: &mut ChaCha8Rng) -> String {
    crate::world::hex_string(r, 16)
}

impl Umb {
    /// Builds every org (tenants' first, then the extra ones), their keys and records.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &UmbrellaConfig,
        seed: u64,
        tenant_names: &[String],
        base_url: String,
        regional_url: String,
        start: SystemTime,
        spread: Duration,
        shutdown: CancellationToken,
    ) -> Umb {
        let mut ids = rng(seed, b"sbum-ids", 1);
        let mut secrets = rng(seed, b"sbum-key", 1);
        let mut regional_draw = rng(seed, b"sbum-reg", 1);
        let parent_org_id = ids.random_range(2_000_000..3_000_000u64);
        let parent_key = key_text(&mut secrets);
        let parent_secret = key_text(&mut secrets);
        let mut used = HashSet::from([parent_org_id]);
        let mut fresh_id = |r: &mut ChaCha8Rng| loop {
            let id = r.random_range(7_000_000..9_999_999u64);
            if used.insert(id) {
                return id;
            }
        };
        let share = if cfg.regional_share.is_nan() {
            0.0
        } else {
            cfg.regional_share.clamp(0.0, 1.0)
        };
        let names: Vec<(String, bool)> = tenant_names
            .iter()
            .map(|n| (n.clone(), true))
            .chain((1..=cfg.extra_orgs).map(|i| (format!("child-org-{i}"), false)))
            .collect();
        let mut orgs = Vec::with_capacity(names.len());
        for (i, (name, tenant)) in names.into_iter().enumerate() {
            let id = fresh_id(&mut ids);
            let creds = tenant.then(|| (key_text(&mut secrets), key_text(&mut secrets)));
            let regional = regional_draw.random::<f64>() < share;
            let mut world_rng = rng(seed, b"sbum-wld", i as u64 + 1);
            let world = OrgWorld::generate(&mut world_rng, &format!("{name}.example"));
            orgs.push(Org {
                id,
                counters: UmbrellaOrgCounters {
                    name: name.clone(),
                    regional,
                    ..Default::default()
                },
                name,
                creds,
                regional,
                revoked: false,
                world,
                records: Vec::new(),
                taken: HashSet::new(),
                served: HashSet::new(),
                rng: rng(seed, b"sbum-dat", i as u64 + 1),
                bucket: None,
                owed: 0.0,
            });
        }
        let mut keys = HashMap::new();
        keys.insert(
            parent_key.clone(),
            (parent_secret.clone(), Principal::Parent),
        );
        for (i, o) in orgs.iter().enumerate() {
            if let Some((k, s)) = &o.creds {
                keys.insert(k.clone(), (s.clone(), Principal::Child(i)));
            }
        }
        let creds = orgs
            .iter()
            .filter_map(|o| {
                o.creds.as_ref().map(|(key, secret)| UmbrellaCreds {
                    org_id: o.id,
                    key: key.clone(),
                    secret: secret.clone(),
                })
            })
            .collect();
        let endpoints = UmbrellaEndpoints {
            base_url: base_url.clone(),
            regional_url: regional_url.clone(),
            parent_key,
            parent_secret,
            parent_org_id,
            extra_orgs: orgs
                .iter()
                .filter(|o| o.creds.is_none())
                .map(|o| UmbrellaOrg {
                    org_id: o.id,
                    name: o.name.clone(),
                })
                .collect(),
        };
        let mut st = UmbState {
            by_id: orgs.iter().enumerate().map(|(i, o)| (o.id, i)).collect(),
            orgs,
            keys,
            tokens: HashMap::new(),
            token_rng: rng(seed, b"sbum-tok", 1),
            token_buckets: HashMap::new(),
            token_ttl: cfg.token_ttl,
            token_limit: cfg.token_requests_per_minute,
            rate_limit: cfg.rate_limit.clone().filter(|r| r.limit > 0),
            faults: crate::state::sanitise(cfg.faults.clone()),
            fault_rng: rng(seed, b"sbumfalt", 2),
            order_rng: rng(seed, b"sbum-ord", 3),
            next_seq: 0,
            counters: UmbrellaCounters {
                requests: RequestCounters {
                    total: 0,
                    by_status: STATUSES.iter().map(|s| (s.to_string(), 0)).collect(),
                },
                ..Default::default()
            },
        };
        st.initial(cfg.records_per_org, start, spread);
        Umb {
            endpoints,
            creds,
            base_url,
            regional_url,
            parent_org_id,
            state: Mutex::new(st),
            shutdown,
            polls: crate::polls::PollWitness::new(),
        }
    }

    /// The state, even if a panicking handler poisoned the lock.
    pub fn lock(&self) -> MutexGuard<'_, UmbState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> UmbrellaCounters {
        let st = self.lock();
        let mut c = st.counters.clone();
        for o in &st.orgs {
            let mut oc = o.counters.clone();
            oc.records_total = o.records.len() as u64;
            oc.served_distinct = o.served.len() as u64;
            oc.revoked = o.revoked;
            c.orgs.insert(o.id.to_string(), oc);
        }
        drop(st);
        c.polls = self.polls.counters();
        c
    }
}

impl UmbState {
    /// The initial records: bursts of 1 to 6 records in one second, spread over
    /// `[start - spread, start]` (times relative to the start's whole second, so one seed
    /// gives the same relative times).
    fn initial(&mut self, per_org: usize, start: SystemTime, spread: Duration) {
        let start_ms = i64::try_from(
            start
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let anchor = start_ms - start_ms.rem_euclid(1000);
        let spread_s = i64::try_from(spread.as_secs()).unwrap_or(480).max(1);
        for i in 0..self.orgs.len() {
            let mut made = 0;
            while made < per_org {
                let org = &mut self.orgs[i];
                let second = anchor - org.rng.random_range(1..=spread_s) * 1000;
                let burst = org.rng.random_range(1..=6usize).min(per_org - made);
                for _ in 0..burst {
                    let ms = org.rng.random_range(0..1000i64);
                    org.insert(self.next_seq, second + ms, &Overrides::default());
                    self.next_seq += 1;
                }
                made += burst;
            }
        }
    }

    /// The org named by an id, a tenant's name or an extra org's name.
    pub fn org_index(&self, org: &str) -> Option<usize> {
        let org = org.trim();
        if let Ok(id) = org.parse::<u64>()
            && let Some(&i) = self.by_id.get(&id)
        {
            return Some(i);
        }
        self.orgs.iter().position(|o| o.name == org)
    }

    /// The org with this id.
    pub fn org_by_id(&self, id: u64) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// The principal of a key whose secret matches.
    pub fn login(&self, key: &str, secret: &str) -> Option<Principal> {
        let (s, p) = self.keys.get(key)?;
        (s == secret).then_some(*p)
    }

    /// The principal of a live token.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        self.tokens
            .get(token)
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.principal)
    }

    /// Spends one token request of a key: `Err(())` past the per-minute budget (counted).
    pub fn issue(&mut self, p: Principal) -> Result<(String, u64), ()> {
        let label = p.label(&self.orgs);
        let limit = self.token_limit;
        let slot = self.token_buckets.entry(label.clone()).or_default();
        let c = self.counters.tokens.entry(label).or_default();
        if limit > 0 && !Bucket::spend(slot, limit, Duration::from_secs(60)) {
            c.refused_429 += 1;
            return Err(());
        }
        c.issued += 1;
        // Opaque, random-looking, fixed by the seed: three base64url parts like a JWT.
        let part = |r: &mut ChaCha8Rng, n: usize| {
            use base64::Engine as _;
            let mut b = vec![0u8; n];
            r.fill(&mut b[..]);
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        let token = format!(
            "{}.{}.{}",
            part(&mut self.token_rng, 27),
            part(&mut self.token_rng, 96),
            part(&mut self.token_rng, 48)
        );
        let now = Instant::now();
        self.tokens.retain(|_, t| t.expires > now);
        self.tokens.insert(
            token.clone(),
            Token {
                principal: p,
                expires: now + self.token_ttl,
            },
        );
        Ok((token, self.token_ttl.as_secs()))
    }

    /// Every token stops working; returns how many there were.
    pub fn expire_tokens(&mut self) -> usize {
        let n = self.tokens.len();
        self.tokens.clear();
        n
    }

    /// Spends one reports request of an org when a limit is on: false when over.
    pub fn consume(&mut self, org: usize) -> bool {
        let Some(rl) = self.rate_limit.clone() else {
            return true;
        };
        let window = Duration::from_millis(rl.window_ms.max(1));
        Bucket::spend(&mut self.orgs[org].bucket, rl.limit, window)
    }

    /// Sets (or with `None` removes) the reports rate limit; windows start afresh.
    pub fn set_rate_limit(&mut self, rl: Option<UmbrellaRateLimit>) {
        self.rate_limit = rl.filter(|r| r.limit > 0);
        for o in &mut self.orgs {
            o.bucket = None;
        }
    }

    /// Draws one request's faults (the shared draw; the seventh is the duplicate).
    pub fn draw(&mut self) -> Plan {
        Plan::draw(&mut self.fault_rng, &self.faults)
    }

    /// Counts one answer and its path kind.
    pub fn count(&mut self, status: u16) {
        let r = &mut self.counters.requests;
        r.total += 1;
        *r.by_status.entry(status.to_string()).or_insert(0) += 1;
    }

    /// Counts a request's path kind.
    pub fn count_kind(&mut self, kind: &str) {
        *self.counters.by_kind.entry(kind.to_string()).or_insert(0) += 1;
    }

    /// The page of an org's records an `/activity` request selects: records that share a
    /// second are shuffled with a fresh draw per request (the service's order within a
    /// second is not stable), then `offset`/`limit` cut the page. With `duplicate`, a page
    /// past the first also carries the record just before it. Returns the records (by
    /// internal id and rendering) and whether a duplicate was added.
    pub fn page(
        &mut self,
        org: usize,
        p: &query::Params,
        kind: Option<Kind>,
        duplicate: bool,
    ) -> (Vec<(u64, serde_json::Value)>, bool) {
        let o = &self.orgs[org];
        let lo = o.records.partition_point(|r| r.ts_ms < p.from_ms);
        let hi = o.records.partition_point(|r| r.ts_ms <= p.to_ms);
        let mut hits: Vec<&Record> = o.records[lo..hi.max(lo)]
            .iter()
            .filter(|r| p.matches(r, &o.world, kind))
            .collect();
        if !p.ascending {
            hits.reverse();
        }
        let mut start = 0;
        while start < hits.len() {
            let second = hits[start].ts_ms.div_euclid(1000);
            let end = start
                + hits[start..]
                    .iter()
                    .take_while(|r| r.ts_ms.div_euclid(1000) == second)
                    .count();
            hits[start..end].shuffle(&mut self.order_rng);
            start = end;
        }
        let from = p.offset.min(hits.len());
        let to = p.offset.saturating_add(p.limit).min(hits.len());
        let mut page: Vec<&Record> = hits[from..to].to_vec();
        let dup = duplicate && p.offset > 0 && from > 0 && from <= hits.len() && !page.is_empty();
        if dup {
            page.insert(0, hits[from - 1]);
        }
        (
            page.into_iter()
                .map(|r| (r.seq, r.render(&o.world, p.tz)))
                .collect(),
            dup,
        )
    }

    /// Records that were in an answer delivered whole.
    pub fn mark_served(&mut self, org: usize, seqs: &[u64]) {
        self.orgs[org].served.extend(seqs.iter().copied());
    }

    /// Adds records stamped now; returns them as served (UTC).
    pub fn add(
        &mut self,
        req: &AddUmbrellaRecords,
    ) -> Result<Vec<serde_json::Value>, UmbrellaError> {
        if req.count > MAX_ADD {
            return Err(UmbrellaError::TooMany(MAX_ADD));
        }
        let i = self
            .org_index(&req.org)
            .ok_or_else(|| UmbrellaError::UnknownOrg(req.org.clone()))?;
        let invalid =
            |field: &'static str, value: String| UmbrellaError::InvalidValue { field, value };
        let verdict = match &req.verdict {
            None => None,
            Some(v) => Some(
                *data::VERDICTS
                    .iter()
                    .find(|x| x.eq_ignore_ascii_case(v.trim()))
                    .ok_or_else(|| invalid("verdict", v.clone()))?,
            ),
        };
        if let Some(c) = req.category
            && data::category(c).is_none()
        {
            return Err(invalid("category", c.to_string()));
        }
        let kind = match &req.kind {
            None => None,
            Some(k) => Some(Kind::parse(k).ok_or_else(|| invalid("kind", k.clone()))?),
        };
        if kind.is_some_and(|k| !matches!(k, Kind::Dns | Kind::Proxy)) && req.category.is_some() {
            return Err(invalid(
                "kind",
                format!(
                    "{} (a category needs dns or proxy)",
                    req.kind.clone().unwrap_or_default()
                ),
            ));
        }
        let org = &mut self.orgs[i];
        let identity = req
            .identity
            .as_deref()
            .map(|label| org.world.identity_named(&mut org.rng, label));
        let o = Overrides {
            kind,
            category: req.category,
            verdict,
            identity,
        };
        let now = now_ms();
        let mut out = Vec::with_capacity(req.count);
        for n in 0..req.count {
            let ts = if req.same_second {
                let second = now - now.rem_euclid(1000);
                second + (now.rem_euclid(1000) + n as i64).min(999)
            } else {
                now + n as i64
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            let org = &mut self.orgs[i];
            let at = org.insert(seq, ts, &o);
            out.push(org.records[at].render(
                &org.world,
                chrono::FixedOffset::east_opt(0).expect("a zero offset is valid"),
            ));
        }
        Ok(out)
    }

    /// Revokes (or restores) an org's access: its reports answer 403 while revoked.
    pub fn set_revoked(&mut self, org: &str, revoked: bool) -> Result<u64, UmbrellaError> {
        let i = self
            .org_index(org)
            .ok_or_else(|| UmbrellaError::UnknownOrg(org.to_string()))?;
        self.orgs[i].revoked = revoked;
        Ok(self.orgs[i].id)
    }

    /// Every record of an org as stored (ascending time) and as served in UTC.
    pub fn dump(&self, org: &str) -> Result<Vec<serde_json::Value>, UmbrellaError> {
        let i = self
            .org_index(org)
            .ok_or_else(|| UmbrellaError::UnknownOrg(org.to_string()))?;
        let o = &self.orgs[i];
        let utc = chrono::FixedOffset::east_opt(0).expect("a zero offset is valid");
        Ok(o.records.iter().map(|r| r.render(&o.world, utc)).collect())
    }
}

/// Adds `rate_per_minute` records per org per minute, stamped now, until shutdown (the same
/// pacing as the other generators: fractions carried over, at most one tick a second).
pub(crate) async fn arrivals(umb: std::sync::Arc<Umb>, rate_per_minute: f64) {
    let per_sec = rate_per_minute / 60.0;
    let tick = Duration::from_secs_f64((1.0 / per_sec).clamp(0.02, 1.0));
    {
        let mut st = umb.lock();
        let n = st.orgs.len() as f64;
        for (i, o) in st.orgs.iter_mut().enumerate() {
            o.owed = i as f64 / n;
        }
    }
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = umb.shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = tokio::time::Instant::now();
        let due = per_sec * now.duration_since(last).as_secs_f64();
        last = now;
        let mut st = umb.lock();
        let stamp = now_ms();
        for i in 0..st.orgs.len() {
            st.orgs[i].owed += due;
            let n = st.orgs[i].owed.floor();
            st.orgs[i].owed -= n;
            for k in 0..n as i64 {
                let seq = st.next_seq;
                st.next_seq += 1;
                st.orgs[i].insert(seq, stamp + k, &Overrides::default());
            }
        }
    }
}
