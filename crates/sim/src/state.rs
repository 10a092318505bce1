//! The emulator's mutable state: each tenant's organisation and data set, the counters, the
//! rate-limit windows and the fault generator, behind one mutex.
//!
//! One lock keeps every answer consistent with the counters (an event is counted as served
//! exactly when the answer that carries it is released) and is never held across an await:
//! handlers copy what they need and render outside it.

use crate::catalog::{self, EventType};
use crate::world::{self, EventSpec, IsolationStatus, Stream, World};
use crate::{
    AddEvents, Counters, FaultCounters, Faults, RequestCounters, SecureEndpointCounters,
    TenantCounters,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// How long an isolation request stays `pending_start` / `pending_stop` before it settles (a
/// GET of the isolation state settles it at once, like a connector checking in).
pub(crate) const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// The vendor's event ids carry the event's time in their upper 32 bits: seconds since this
/// epoch (see [`Tenant::fresh_id`]).
const EVENT_ID_EPOCH: i64 = 89_467_546;

/// The vendor's documented budget: 3000 requests per hour per API client.
pub(crate) const DEFAULT_RATE_LIMIT: u64 = 3000;
pub(crate) const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(3600);

/// Status codes the `/v1` routes can answer; counters list them all (at 0 until seen) so the
/// `by_status` map has a stable shape for dashboards and tests.
pub(crate) const STATUSES: [u16; 12] = [200, 201, 202, 204, 400, 401, 404, 405, 409, 429, 500, 503];

/// What every task and handler shares.
pub(crate) struct Shared {
    /// `http://127.0.0.1:P`: written into event links and used when a request has no Host.
    pub base_url: String,
    /// Wall-clock start: the initial data set and computers' dates are relative to it.
    pub start: SystemTime,
    /// URLs and credentials, fixed at start.
    pub endpoints: crate::Endpoints,
    pub state: Mutex<State>,
    /// Cancelled by `SimHandle::shutdown` (or drop): the server, the event generator and any
    /// injected slow answer stop waiting.
    pub shutdown: CancellationToken,
    /// The ServiceNow instance (its own lock), when enabled.
    pub servicenow: Option<Arc<crate::servicenow::Sn>>,
    /// The Symantec SWS service (its own lock), when enabled.
    pub symantec: Option<Arc<crate::symantec::Sym>>,
    /// The Umbrella Reporting API (its own lock), when enabled.
    pub umbrella: Option<Arc<crate::umbrella::Umb>>,
    /// The AMQP broker of the Event Streams, when enabled.
    pub broker: Option<crate::event_streams::Broker>,
    /// The Cisco XDR emulator (its own lock), when enabled.
    pub xdr: Option<Arc<crate::xdr::Xdr>>,
    /// `GET /v1/events` requests in flight per API client: the overlap witness and the
    /// answer delay.
    pub polls: Arc<crate::polls::PollWitness>,
}

impl Shared {
    /// The state, even if a panicking handler poisoned the lock: the emulator keeps serving
    /// (its data stays consistent because no update spans a panic point).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the answer delay of every polled endpoint (Secure Endpoint, Umbrella, Symantec).
    pub fn set_poll_delay(&self, delay: Duration) {
        self.polls.set_delay(delay);
        if let Some(u) = &self.umbrella {
            u.polls.set_delay(delay);
        }
        if let Some(s) = &self.symantec {
            s.polls.set_delay(delay);
        }
    }

    /// Every emulator's counters (one lock after the other, never two at once).
    pub fn counters(&self) -> Counters {
        let mut c = self.lock().counters();
        c.secure_endpoint.polls = self.polls.counters();
        if let Some(sn) = &self.servicenow {
            c.servicenow = sn.counters();
        }
        if let Some(sym) = &self.symantec {
            c.symantec_mss = sym.counters();
        }
        if let Some(umb) = &self.umbrella {
            c.umbrella = umb.counters();
        }
        if let Some(x) = &self.xdr {
            c.xdr = x.counters();
        }
        c
    }
}

/// One stored event: its rendered JSON and what filtering and counting need.
#[derive(Clone, Debug)]
pub(crate) struct StoredEvent {
    /// Emulator-internal identity (never on the wire): malformed records have no usable id.
    pub seq: u64,
    pub timestamp: i64,
    pub nanos: u32,
    pub id: u64,
    pub event_type_id: u64,
    pub connector_guid: String,
    pub group_guid: String,
    pub file_sha256: Option<String>,
    pub parent_sha256: Option<String>,
    pub high_priority: bool,
    pub malformed: bool,
    pub json: Arc<str>,
}

impl StoredEvent {
    /// Sort key, ascending; the API serves the reverse (newest first, ties by nanos then id).
    pub fn key(&self) -> (i64, u32, u64) {
        (self.timestamp, self.nanos, self.id)
    }
}

/// A rate-limit window of one API client.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    pub window_start: Instant,
    pub used: u64,
}

/// What the rate-limit headers of one answer say.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateInfo {
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window resets (the vendor's `Reset` is a delay, not an epoch).
    pub reset_secs: u64,
}

/// One tenant: its organisation, its data set (ascending time, so arrivals append) and counters.
pub(crate) struct Tenant {
    pub world: World,
    pub events: Vec<StoredEvent>,
    pub rng: ChaCha8Rng,
    used_ids: HashSet<u64>,
    /// Events delivered in a whole answer (by `seq`), with when they first were.
    served: HashMap<u64, SystemTime>,
    next_seq: u64,
    pub counters: TenantCounters,
    pub bucket: Bucket,
    /// Newest (timestamp, nanos) stored: arrivals are stamped strictly after it.
    newest: (i64, u32),
    /// Events owed by the arrival generator (fractional part carried between ticks).
    pub owed: f64,
    /// This tenant's place in `State::tenants`.
    index: usize,
    /// The organisation's Event Streams, oldest first.
    pub streams: Vec<crate::event_streams::StreamDef>,
    /// Where a new event goes for each stream it matches (when Event Streams are enabled).
    pub stream_tx: Option<tokio::sync::mpsc::UnboundedSender<crate::event_streams::Publication>>,
    /// Events the broker confirmed into one of the streams (by `seq`).
    published: HashSet<u64>,
}

/// Fault decisions for one request, drawn up front from the seeded generator.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FaultPlan {
    pub slow: Option<Duration>,
    pub error: Option<u16>,
    pub body: Option<BodyFault>,
    pub duplicate: bool,
}

impl FaultPlan {
    /// Draws one request's faults (see [`draw_faults`]) for an emulator whose seventh fault
    /// is the duplicate.
    pub fn draw(rng: &mut ChaCha8Rng, f: &impl FaultRates) -> FaultPlan {
        let (common, duplicate) = draw_faults(rng, f);
        FaultPlan {
            slow: common.slow,
            error: common.error,
            body: common.body,
            duplicate,
        }
    }
}

/// The fault rates every emulator has.
pub(crate) struct CommonRates {
    pub slow: f64,
    pub slow_ms: u64,
    pub status_429: f64,
    pub status_500: f64,
    pub status_503: f64,
    pub drop: f64,
    pub truncate: f64,
}

/// The faults drawn for one request from [`CommonRates`].
pub(crate) struct CommonPlan {
    pub slow: Option<Duration>,
    pub error: Option<u16>,
    pub body: Option<BodyFault>,
}

/// A vendor's fault rates, as the shared draw, the sanitiser and the control API see them.
pub(crate) trait FaultRates: Clone {
    /// Every probability the vendor has.
    fn rates_mut(&mut self) -> Vec<&mut f64>;
    /// The rates of the faults every emulator draws.
    fn common(&self) -> CommonRates;
    /// The rate of the emulator's own (seventh) fault.
    fn extra(&self) -> f64;
}

/// [`FaultRates`] for an emulator's fault settings holding the six common rates under their
/// usual names (`rate_slow`, `slow_ms`, `rate_429`, `rate_500`, `rate_503`, `rate_drop`,
/// `rate_truncate`) plus the named field of its own seventh fault.
macro_rules! seven_fault_rates {
    ($faults:ty, $extra:ident) => {
        impl $crate::state::FaultRates for $faults {
            fn rates_mut(&mut self) -> Vec<&mut f64> {
                vec![
                    &mut self.rate_429,
                    &mut self.rate_500,
                    &mut self.rate_503,
                    &mut self.rate_slow,
                    &mut self.rate_drop,
                    &mut self.rate_truncate,
                    &mut self.$extra,
                ]
            }

            fn common(&self) -> $crate::state::CommonRates {
                $crate::state::CommonRates {
                    slow: self.rate_slow,
                    slow_ms: self.slow_ms,
                    status_429: self.rate_429,
                    status_500: self.rate_500,
                    status_503: self.rate_503,
                    drop: self.rate_drop,
                    truncate: self.rate_truncate,
                }
            }

            fn extra(&self) -> f64 {
                self.$extra
            }
        }
    };
}
pub(crate) use seven_fault_rates;

/// Fault rates as probabilities: NaN and out-of-range values are clamped into [0, 1].
pub(crate) fn sanitise<F: FaultRates>(mut f: F) -> F {
    for r in f.rates_mut() {
        *r = if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) };
    }
    f
}

/// Whether every rate is a probability (what the control API insists on).
pub(crate) fn faults_valid<F: FaultRates>(f: &F) -> bool {
    let mut f = f.clone();
    f.rates_mut().iter().all(|r| (0.0..=1.0).contains(&**r))
}

/// Draws one request's faults: always seven draws in a fixed order (slow, 429, 500, 503,
/// drop, truncate, then the emulator's own `extra` fault), so a seed replays the same
/// decisions for the same sequence of requests. The first error drawn wins; a dropped body
/// wins over a truncated one.
pub(crate) fn draw_faults(rng: &mut ChaCha8Rng, f: &impl FaultRates) -> (CommonPlan, bool) {
    let r = f.common();
    let mut hit = |p: f64| rng.random::<f64>() < p;
    let slow = hit(r.slow);
    let e429 = hit(r.status_429);
    let e500 = hit(r.status_500);
    let e503 = hit(r.status_503);
    let drop = hit(r.drop);
    let truncate = hit(r.truncate);
    let extra = hit(f.extra());
    let plan = CommonPlan {
        slow: slow.then(|| Duration::from_millis(r.slow_ms)),
        error: [(e429, 429), (e500, 500), (e503, 503)]
            .iter()
            .find(|(h, _)| *h)
            .map(|(_, c)| *c),
        body: if drop {
            Some(BodyFault::Drop)
        } else if truncate {
            Some(BodyFault::Truncate)
        } else {
            None
        },
    };
    (plan, extra)
}

/// A fault applied to a 2xx body after the handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyFault {
    Drop,
    Truncate,
}

/// The mutable state behind [`Shared::state`].
pub(crate) struct State {
    pub tenants: Vec<Tenant>,
    pub by_name: HashMap<String, usize>,
    pub by_client: HashMap<String, usize>,
    pub faults: Faults,
    fault_rng: ChaCha8Rng,
    pub rate_limit: u64,
    pub rate_window: Duration,
    pub requests_total: u64,
    pub by_status: BTreeMap<String, u64>,
    pub fault_counts: FaultCounters,
    /// The last Event Stream id given (ids are unique across organisations, as at the vendor).
    pub next_stream_id: u64,
}

/// Wall-clock now as (epoch seconds, nanoseconds rounded down to microseconds).
fn wall_now() -> (i64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        d.subsec_micros() * 1000,
    )
}

fn to_ns(t: (i64, u32)) -> i128 {
    i128::from(t.0) * 1_000_000_000 + i128::from(t.1)
}

fn from_ns(ns: i128) -> (i64, u32) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    (
        i64::try_from(secs).unwrap_or(i64::MAX),
        u32::try_from(nanos).expect("a remainder below 10^9 fits"),
    )
}

impl Tenant {
    /// Builds tenant `index` and its initial data set: `initial` events spread over
    /// `[start - spread, start]`, with bursts sharing one second (and some sharing the exact
    /// nanosecond, as a Threat Detected and its Threat Quarantined do), so that collisions
    /// fall across page boundaries.
    pub fn new(
        seed: u64,
        index: usize,
        initial: usize,
        spread: Duration,
        start: SystemTime,
        base_url: &str,
    ) -> Tenant {
        let world = World::generate(seed, index);
        let mut t = Tenant {
            world,
            events: Vec::with_capacity(initial),
            rng: world::tenant_rng(seed, index, Stream::Later),
            used_ids: HashSet::new(),
            served: HashMap::new(),
            next_seq: 0,
            counters: TenantCounters::default(),
            bucket: Bucket {
                window_start: Instant::now(),
                used: 0,
            },
            newest: (i64::MIN, 0),
            owed: 0.0,
            index,
            streams: Vec::new(),
            stream_tx: None,
            published: HashSet::new(),
        };
        let mut rng = world::tenant_rng(seed, index, Stream::Initial);
        // Times are offsets from the start's whole second, so two runs with one seed hold the
        // same relative times (and order); offsets stay a second short of `spread`, so every
        // event lies in [start - spread, start].
        let start_ms = i64::try_from(
            start
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX);
        let anchor_ms = start_ms - start_ms.rem_euclid(1000);
        let spread_ms = i64::try_from(spread.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_sub(1000)
            .max(0);
        let mut prev: Option<(i64, u32)> = None;
        let mut made = 0;
        while made < initial {
            let when = match prev {
                Some((secs, _)) if rng.random_bool(0.35) => {
                    // Another event in the same second, never after the start.
                    let max_ms = (anchor_ms - secs * 1000).clamp(0, 999);
                    let ms = rng.random_range(0..=max_ms);
                    (secs, u32::try_from(ms).expect("below 1000") * 1_000_000)
                }
                _ => {
                    let at = anchor_ms - rng.random_range(0..=spread_ms);
                    (
                        at.div_euclid(1000),
                        u32::try_from(at.rem_euclid(1000)).expect("below 1000") * 1_000_000,
                    )
                }
            };
            prev = Some(when);
            let kind = world::draw_event_type(&mut rng);
            let computer = rng.random_range(0..t.world.computers.len());
            let sample = rng.random_range(0..t.world.malware.len());
            let id = t.fresh_id(&mut rng, when.0);
            let spec = EventSpec {
                kind,
                computer,
                id,
                timestamp: when.0,
                nanos: when.1,
                detection_id: None,
                sample: Some(sample),
                malformed: false,
                base_url,
            };
            let ev = t.synthesise(&mut rng, spec);
            t.events.push(ev);
            made += 1;
            // A detection is often followed by its quarantine in the same instant.
            if kind.id == 1090519054 && made < initial && rng.random_bool(0.3) {
                let q = catalog::event_type(553648143).expect("Threat Quarantined is catalogued");
                let qid = t.fresh_id(&mut rng, when.0);
                let spec = EventSpec {
                    kind: q,
                    computer,
                    id: qid,
                    timestamp: when.0,
                    nanos: when.1,
                    detection_id: Some(id.wrapping_add(251).to_string()),
                    sample: Some(sample),
                    malformed: false,
                    base_url,
                };
                let ev = t.synthesise(&mut rng, spec);
                t.events.push(ev);
                made += 1;
            }
        }
        // Sorted once at the end (a stable sort keeps the order of equal keys, as inserting
        // each in place did): a large data set is built in n log n, not n².
        t.events.sort_by_key(StoredEvent::key);
        t
    }

    /// A new event id for an event at `timestamp` (Unix seconds), unique in the tenant.
    ///
    /// The vendor's ids rise with time: their upper 32 bits count seconds since an epoch and
    /// the lower 32 bits tell apart events of one second. In the recorded fixtures, id
    /// 6533669671340605000 is an event at 1610706060 and 6533669929038643000 one at
    /// 1610706120, 60 x 2^32 further on; `id >> 32` is `timestamp - 89,467,546` throughout
    /// that family. Ids made here keep that shape (so they stay above 2^53, like the vendor's,
    /// and a client storing them in time order sees them rise), with random lower bits.
    fn fresh_id(&mut self, rng: &mut ChaCha8Rng, timestamp: i64) -> u64 {
        let seconds = u64::try_from(timestamp.saturating_sub(EVENT_ID_EPOCH))
            .unwrap_or(0)
            .clamp(1 << 22, u64::from(u32::MAX));
        loop {
            let id = (seconds << 32) | u64::from(rng.random::<u32>());
            if self.used_ids.insert(id) {
                return id;
            }
        }
    }

    /// Synthesises and stores one event, keeping the list sorted and the counters in step.
    fn store(&mut self, rng: &mut ChaCha8Rng, spec: EventSpec<'_>) {
        let ev = self.synthesise(rng, spec);
        if let Some(tx) = &self.stream_tx {
            for s in self
                .streams
                .iter()
                .filter(|s| s.matches(ev.event_type_id, &ev.group_guid))
            {
                // The receiver lives as long as the emulator; after shutdown nothing is owed.
                let _ = tx.send(crate::event_streams::Publication {
                    tenant: self.index,
                    stream_id: s.id,
                    queue: s.queue.clone(),
                    seq: ev.seq,
                    malformed: ev.malformed,
                    body: ev.json.clone(),
                });
            }
        }
        let key = ev.key();
        let at = self.events.partition_point(|e| e.key() <= key);
        self.events.insert(at, ev);
    }

    /// Synthesises one event and counts it, leaving where it goes to the caller.
    fn synthesise(&mut self, rng: &mut ChaCha8Rng, spec: EventSpec<'_>) -> StoredEvent {
        let malformed = spec.malformed;
        let (timestamp, nanos, id) = (spec.timestamp, spec.nanos, spec.id);
        let s = world::synthesise(rng, &self.world, spec);
        let high_priority = catalog::is_high_priority(s.event_type_id);
        let ev = StoredEvent {
            seq: self.next_seq,
            timestamp,
            nanos,
            id,
            event_type_id: s.event_type_id,
            connector_guid: s.connector_guid,
            group_guid: s.group_guid,
            file_sha256: s.file_sha256,
            parent_sha256: s.parent_sha256,
            high_priority,
            malformed,
            json: Arc::from(s.json),
        };
        self.next_seq += 1;
        if malformed {
            self.counters.malformed_total += 1;
        } else {
            self.counters.events_total += 1;
            if high_priority {
                self.counters.events_high_priority += 1;
            }
        }
        self.newest = self.newest.max((timestamp, nanos));
        ev
    }

    /// Adds `req.count` events stamped now (strictly after every stored event, so arrivals
    /// enter at the top of the newest-first list). Returns the ids of the well-formed ones.
    pub fn add(
        &mut self,
        req: &AddEvents,
        kind: Option<&'static EventType>,
        base_url: &str,
    ) -> Vec<u64> {
        let start = to_ns(wall_now()).max(to_ns(self.newest) + 1000);
        let mut ids = Vec::with_capacity(req.count);
        // A copy of the generator, written back at the end: the helpers below borrow `self`.
        let mut rng = self.rng.clone();
        for i in 0..req.count {
            let i = i128::try_from(i).unwrap_or(i128::MAX);
            let (timestamp, nanos) = if req.same_second {
                // One second for all; pairs share the exact nanosecond too.
                let (secs, base) = from_ns(start);
                let n = (i128::from(base) + (i / 2) * 1000).min(999_999_000);
                (secs, u32::try_from(n).expect("below 10^9"))
            } else {
                from_ns(start + i * 1_000_000)
            };
            let kind = match kind {
                Some(k) => k,
                None if req.malformed => {
                    let id = catalog::HIGH_PRIORITY_EVENT_TYPES
                        [rng.random_range(0..catalog::HIGH_PRIORITY_EVENT_TYPES.len())];
                    catalog::event_type(id).expect("every high-priority id has a catalogue entry")
                }
                None => world::draw_event_type(&mut rng),
            };
            let computer = rng.random_range(0..self.world.computers.len());
            let id = self.fresh_id(&mut rng, timestamp);
            let spec = EventSpec {
                kind,
                computer,
                id,
                timestamp,
                nanos,
                detection_id: None,
                sample: None,
                malformed: req.malformed,
                base_url,
            };
            self.store(&mut rng, spec);
            if !req.malformed {
                ids.push(id);
            }
        }
        self.rng = rng;
        ids
    }

    /// When each well-formed event delivered in a whole answer first was, by event id.
    pub fn served_at(&self) -> HashMap<u64, SystemTime> {
        self.events
            .iter()
            .filter(|e| !e.malformed)
            .filter_map(|e| self.served.get(&e.seq).map(|at| (e.id, *at)))
            .collect()
    }

    /// Records that these events were in an answer delivered whole.
    pub fn mark_served(&mut self, events: &[(u64, bool, bool)]) {
        let now = SystemTime::now();
        self.counters.records_served += events.len() as u64;
        for &(seq, high_priority, malformed) in events {
            if let std::collections::hash_map::Entry::Vacant(v) = self.served.entry(seq) {
                v.insert(now);
                if malformed {
                    self.counters.malformed_served_distinct += 1;
                } else {
                    self.counters.served_distinct += 1;
                    if high_priority {
                        self.counters.served_distinct_high_priority += 1;
                    }
                }
            }
        }
    }

    /// Records that the broker confirmed this event into one of the tenant's streams.
    pub fn mark_published(&mut self, seq: u64, malformed: bool) {
        self.counters.stream_publications += 1;
        if self.published.insert(seq) {
            if malformed {
                self.counters.stream_malformed_published_distinct += 1;
            } else {
                self.counters.stream_published_distinct += 1;
            }
        }
    }

    /// Moves pending isolation states on: after [`SETTLE_AFTER`], or at once with `force`.
    pub fn settle_isolation(&mut self, computer: usize, force: bool) {
        let c = &mut self.world.computers[computer];
        let due = force
            || c.isolation_since
                .is_some_and(|t| t.elapsed() >= SETTLE_AFTER);
        if !due {
            return;
        }
        match c.isolation {
            IsolationStatus::PendingStart => {
                c.isolation = IsolationStatus::Isolated;
                c.isolation_since = None;
            }
            IsolationStatus::PendingStop => {
                c.isolation = IsolationStatus::NotIsolated;
                c.isolation_since = None;
                c.unlock_code = None;
                c.isolation_comment = None;
            }
            IsolationStatus::NotIsolated | IsolationStatus::Isolated => {}
        }
    }

    /// The whole data set, newest first, as the API would order it.
    pub fn newest_first(&self) -> impl Iterator<Item = &StoredEvent> {
        self.events.iter().rev()
    }

    /// Index of the first event (ascending) at or after `t`.
    pub fn first_at_or_after(&self, t: (i64, u32)) -> usize {
        self.events.partition_point(|e| (e.timestamp, e.nanos) < t)
    }
}

impl State {
    /// Builds every tenant from the configuration.
    pub fn new(cfg: &crate::SimConfig, start: SystemTime, base_url: &str) -> State {
        let tenants: Vec<Tenant> = (0..cfg.tenants)
            .map(|i| {
                Tenant::new(
                    cfg.seed,
                    i,
                    cfg.initial_events_per_tenant,
                    cfg.initial_spread,
                    start,
                    base_url,
                )
            })
            .collect();
        let by_name = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.world.name.clone(), i))
            .collect();
        let by_client = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.world.client_id.clone(), i))
            .collect();
        State {
            tenants,
            by_name,
            by_client,
            faults: sanitise(cfg.faults.clone()),
            fault_rng: world::purpose_rng(cfg.seed, b"sbfaults", 0),
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_window: DEFAULT_RATE_WINDOW,
            requests_total: 0,
            by_status: STATUSES.iter().map(|s| (s.to_string(), 0)).collect(),
            fault_counts: FaultCounters::default(),
            next_stream_id: 0,
        }
    }

    /// The tenant whose API client these Basic credentials name, if the key matches.
    pub fn authenticate(&self, client_id: &str, api_key: &str) -> Option<usize> {
        let &i = self.by_client.get(client_id)?;
        (self.tenants[i].world.api_key == api_key).then_some(i)
    }

    /// The rate-limit window of `tenant`, renewed if it has run out.
    fn bucket(&mut self, tenant: usize, now: Instant) -> &mut Bucket {
        let window = self.rate_window;
        let b = &mut self.tenants[tenant].bucket;
        if now.duration_since(b.window_start) >= window {
            *b = Bucket {
                window_start: now,
                used: 0,
            };
        }
        b
    }

    fn rate_info(&self, tenant: usize, now: Instant) -> RateInfo {
        let b = self.tenants[tenant].bucket;
        let left = (b.window_start + self.rate_window).saturating_duration_since(now);
        RateInfo {
            limit: self.rate_limit,
            remaining: self.rate_limit.saturating_sub(b.used),
            reset_secs: left.as_secs() + u64::from(left.subsec_nanos() > 0),
        }
    }

    /// Spends one request of `tenant`'s budget: `Err` (nothing spent) when it is exhausted.
    pub fn consume(&mut self, tenant: usize) -> Result<RateInfo, RateInfo> {
        let now = Instant::now();
        let limit = self.rate_limit;
        let b = self.bucket(tenant, now);
        if b.used >= limit {
            return Err(self.rate_info(tenant, now));
        }
        b.used += 1;
        Ok(self.rate_info(tenant, now))
    }

    /// Headers for an answer that spent nothing (a 401): the known client's window, or a
    /// fresh one.
    pub fn peek_rate(&mut self, tenant: Option<usize>) -> RateInfo {
        let now = Instant::now();
        match tenant {
            Some(t) => {
                self.bucket(t, now);
                self.rate_info(t, now)
            }
            None => RateInfo {
                limit: self.rate_limit,
                remaining: self.rate_limit,
                reset_secs: self.rate_window.as_secs(),
            },
        }
    }

    /// New budget for every client; the windows start afresh.
    pub fn set_rate_limit(&mut self, limit: u64, window: Duration) {
        self.rate_limit = limit;
        self.rate_window = window;
        let now = Instant::now();
        for t in &mut self.tenants {
            t.bucket = Bucket {
                window_start: now,
                used: 0,
            };
        }
    }

    /// Draws this request's faults (see [`draw_faults`]; the seventh draw is the duplicate).
    pub fn draw_faults(&mut self) -> FaultPlan {
        FaultPlan::draw(&mut self.fault_rng, &self.faults)
    }

    /// Counts one `/v1` answer.
    pub fn count_request(&mut self, status: u16) {
        self.requests_total += 1;
        *self.by_status.entry(status.to_string()).or_insert(0) += 1;
    }

    /// A snapshot for `GET /_sim/counters` and `SimHandle::counters`.
    pub fn counters(&self) -> Counters {
        Counters {
            servicenow: Default::default(),
            symantec_mss: Default::default(),
            umbrella: Default::default(),
            xdr: Default::default(),
            secure_endpoint: SecureEndpointCounters {
                requests: RequestCounters {
                    total: self.requests_total,
                    by_status: self.by_status.clone(),
                },
                faults: self.fault_counts.clone(),
                tenants: self
                    .tenants
                    .iter()
                    .map(|t| (t.world.name.clone(), t.counters.clone()))
                    .collect(),
                polls: Default::default(),
            },
        }
    }
}

crate::state::seven_fault_rates!(Faults, rate_duplicate);
