//! The overlap witness of the polled endpoints: a second poll request for a source arriving
//! while one is in flight is counted (Secure Endpoint per API client, Umbrella per org,
//! Symantec MSS per tenant certificate), polls one after another and polls of different
//! sources are not, and the answer delay is settable from the handle and the control API.
//! Each test starts its own emulator on free ports; overlaps are made certain by starting
//! the second request only once the witness shows the first in flight.

use reqwest::StatusCode;
use serde_json::{Value, json};
use socbridge_sim::{Counters, OverlappingSource, PollOverlapCounters, SimConfig, SimHandle};
use std::future::Future;
use std::time::{Duration, Instant};

/// Long enough that the second request surely arrives while the first waits.
const DELAY: Duration = Duration::from_millis(1500);

async fn start() -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed: 7,
        initial_events_per_tenant: 30,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

type Vendor = fn(&Counters) -> &PollOverlapCounters;

fn se(c: &Counters) -> &PollOverlapCounters {
    &c.secure_endpoint.polls
}
fn um(c: &Counters) -> &PollOverlapCounters {
    &c.umbrella.polls
}
fn sy(c: &Counters) -> &PollOverlapCounters {
    &c.symantec_mss.polls
}

/// Waits (deadline 10 s) until `n` polls of `vendor` are in flight.
async fn wait_in_flight(sim: &SimHandle, vendor: Vendor, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = sim.counters();
        if vendor(&c).in_flight == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} polls in flight: {:?}",
            vendor(&c)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One poll of tenant `i` of a vendor; answers its status.
trait Poller {
    fn poll(&self, tenant: usize) -> impl Future<Output = StatusCode> + Send;
}

/// Polls tenant 0 and, once that is in flight, tenant 0 again and tenant 1: exactly one
/// overlap, of tenant 0's source, with the delay applied to each poll.
async fn one_overlap(sim: &SimHandle, vendor: Vendor, p: &impl Poller) -> PollOverlapCounters {
    sim.set_poll_delay(DELAY);
    let first = async {
        let t = Instant::now();
        let s = p.poll(0).await;
        (s, t.elapsed())
    };
    let later = async {
        wait_in_flight(sim, vendor, 1).await;
        tokio::join!(p.poll(0), p.poll(1))
    };
    let ((s1, took), (s2, s3)) = tokio::join!(first, later);
    assert_eq!(
        (s1, s2, s3),
        (StatusCode::OK, StatusCode::OK, StatusCode::OK)
    );
    assert!(took >= DELAY, "the poll was answered after {took:?}");
    let c = sim.counters();
    let v = vendor(&c).clone();
    assert_eq!(v.polls, 3, "{v:?}");
    assert_eq!(v.in_flight, 0, "{v:?}");
    assert_eq!(v.overlapping_polls, 1, "{v:?}");
    assert_eq!(v.max_concurrent_polls, 2, "{v:?}");
    assert_eq!(c.overlapping_polls(), 1);
    assert_eq!(c.overlapping_sources().len(), 1);
    v
}

/// Polls one after another (and a second source alongside) overlap nothing.
async fn no_overlap(sim: &SimHandle, vendor: Vendor, p: &impl Poller) {
    sim.set_poll_delay(Duration::from_millis(100));
    let one_by_one = async {
        for _ in 0..3 {
            assert_eq!(p.poll(0).await, StatusCode::OK);
        }
    };
    let other = async {
        for _ in 0..3 {
            assert_eq!(p.poll(1).await, StatusCode::OK);
        }
    };
    tokio::join!(one_by_one, other);
    let c = sim.counters();
    let v = vendor(&c);
    assert_eq!(v.polls, 6, "{v:?}");
    assert_eq!(v.overlapping_polls, 0, "{v:?}");
    assert_eq!(v.max_concurrent_polls, 1, "{v:?}");
    assert!(v.overlapping_sources.is_empty(), "{v:?}");
    assert_eq!(c.overlapping_polls(), 0);
    assert!(c.overlapping_sources().is_empty());
}

// ---------------------------------------------------------------------------------------
// Secure Endpoint: `GET /v1/events` per API client id.

struct SecureEndpoint {
    http: reqwest::Client,
    base: String,
    creds: Vec<(String, String)>,
}

impl SecureEndpoint {
    fn new(sim: &SimHandle) -> Self {
        SecureEndpoint {
            http: reqwest::Client::new(),
            base: sim.endpoints().secure_endpoint.clone(),
            creds: sim
                .endpoints()
                .tenants
                .iter()
                .map(|t| {
                    let c = t.secure_endpoint.clone().unwrap();
                    (c.client_id, c.api_key)
                })
                .collect(),
        }
    }

    async fn get(&self, tenant: usize, path: &str) -> StatusCode {
        let (id, key) = &self.creds[tenant];
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .basic_auth(id, Some(key))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(body["data"].is_array(), "{body}");
        status
    }
}

impl Poller for SecureEndpoint {
    async fn poll(&self, tenant: usize) -> StatusCode {
        self.get(tenant, "/v1/events?limit=10").await
    }
}

#[tokio::test]
async fn secure_endpoint_counts_a_second_poll_of_one_client_in_flight() {
    let sim = start().await;
    let api = SecureEndpoint::new(&sim);
    let v = one_overlap(&sim, se, &api).await;
    assert_eq!(
        v.overlapping_sources,
        vec![OverlappingSource {
            source: api.creds[0].0.clone(),
            tenant: sim.endpoints().tenants[0].name.clone(),
            overlapping_polls: 1,
            max_concurrent_polls: 2,
        }]
    );
    assert_eq!(
        sim.counters().overlapping_sources(),
        vec![format!(
            "secure_endpoint:{} ({})",
            api.creds[0].0,
            sim.endpoints().tenants[0].name
        )]
    );
    // Other vendors saw no poll.
    assert_eq!(
        sim.counters().umbrella.polls,
        PollOverlapCounters::default()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn secure_endpoint_pages_one_after_another_and_other_routes_overlap_nothing() {
    let sim = start().await;
    let api = SecureEndpoint::new(&sim);
    no_overlap(&sim, se, &api).await;

    // A poll in flight while the same client reads computers: not a second poll.
    sim.set_poll_delay(DELAY);
    let poll = api.poll(0);
    let other = async {
        wait_in_flight(&sim, se, 1).await;
        api.get(0, "/v1/computers").await
    };
    let (a, b) = tokio::join!(poll, other);
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    let c = sim.counters().secure_endpoint.polls;
    assert_eq!((c.polls, c.overlapping_polls), (7, 0), "{c:?}");
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Umbrella: activity reports per org id (the MSSP parent key acting for each child org).

struct Umbrella {
    http: reqwest::Client,
    base: String,
    token: String,
    orgs: Vec<u64>,
}

impl Umbrella {
    async fn new(sim: &SimHandle) -> Self {
        let u = sim.endpoints().umbrella.clone().unwrap();
        let http = reqwest::Client::new();
        let r: Value = http
            .post(format!("{}/auth/v2/token", u.base_url))
            .basic_auth(&u.parent_key, Some(&u.parent_secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Umbrella {
            http,
            base: u.base_url,
            token: r["access_token"].as_str().unwrap().to_string(),
            orgs: sim
                .endpoints()
                .tenants
                .iter()
                .map(|t| t.umbrella.clone().unwrap().org_id)
                .collect(),
        }
    }
}

impl Poller for Umbrella {
    async fn poll(&self, tenant: usize) -> StatusCode {
        let r = self
            .http
            .get(format!(
                "{}/reports/v2/activity?from=-10minutes&to=now&limit=100",
                self.base
            ))
            .bearer_auth(&self.token)
            .header("X-Umbrella-OrgID", self.orgs[tenant].to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(body["data"].is_array(), "{body}");
        status
    }
}

fn umbrella_config() -> SimConfig {
    SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed: 7,
        initial_events_per_tenant: 1,
        umbrella: socbridge_sim::UmbrellaConfig {
            rate_limit: None,
            regional_share: 0.0,
            ..Default::default()
        },
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn umbrella_counts_a_second_poll_of_one_org_in_flight() {
    let sim = socbridge_sim::start(umbrella_config()).await.unwrap();
    let api = Umbrella::new(&sim).await;
    let v = one_overlap(&sim, um, &api).await;
    assert_eq!(
        v.overlapping_sources,
        vec![OverlappingSource {
            source: api.orgs[0].to_string(),
            tenant: sim.endpoints().tenants[0].name.clone(),
            overlapping_polls: 1,
            max_concurrent_polls: 2,
        }]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn umbrella_polls_one_after_another_overlap_nothing() {
    let sim = socbridge_sim::start(umbrella_config()).await.unwrap();
    let api = Umbrella::new(&sim).await;
    no_overlap(&sim, um, &api).await;
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Symantec MSS: `IncidentGetList` per tenant (its client certificate).

struct Symantec {
    clients: Vec<reqwest::Client>,
    service: String,
}

impl Symantec {
    fn new(sim: &SimHandle) -> Self {
        let ep = sim.endpoints().symantec_mss.clone().unwrap();
        let clients = sim
            .endpoints()
            .tenants
            .iter()
            .map(|t| {
                let pem = sim.symantec_identity_pem(&t.name).unwrap();
                reqwest::Client::builder()
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(
                        reqwest::Certificate::from_pem(ep.ca_pem.as_bytes()).unwrap(),
                    )
                    .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap()
            })
            .collect();
        Symantec {
            clients,
            service: format!("{}/SWS/incidents.asmx", ep.url),
        }
    }

    async fn call(&self, tenant: usize, op: &str, children: &str) -> StatusCode {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><{op} xmlns="https://www.monitoredsecurity.com/">{children}</{op}></soap:Body></soap:Envelope>"#
        );
        let r = self.clients[tenant]
            .post(&self.service)
            .header("Content-Type", "application/soap+xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(text.contains(&format!("{op}Response")), "{text}");
        status
    }
}

impl Poller for Symantec {
    async fn poll(&self, tenant: usize) -> StatusCode {
        let since = (chrono::Utc::now() - chrono::Duration::minutes(30))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        self.call(
            tenant,
            "IncidentGetList",
            &format!("<StartTimeStampGMT>{since}</StartTimeStampGMT>"),
        )
        .await
    }
}

#[tokio::test]
async fn symantec_counts_a_second_get_list_of_one_certificate_in_flight() {
    let sim = start().await;
    let api = Symantec::new(&sim);
    let v = one_overlap(&sim, sy, &api).await;
    let tenant = sim.endpoints().tenants[0].name.clone();
    assert_eq!(
        v.overlapping_sources,
        vec![OverlappingSource {
            source: tenant.clone(),
            tenant,
            overlapping_polls: 1,
            max_concurrent_polls: 2,
        }]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn symantec_get_lists_one_after_another_overlap_nothing() {
    let sim = start().await;
    let api = Symantec::new(&sim);
    no_overlap(&sim, sy, &api).await;
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The control API.

#[tokio::test]
async fn control_api_sets_the_delay_and_shows_the_witness() {
    let sim = start().await;
    let control = sim.endpoints().control.clone();
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{control}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get("/poll_delay").await, (StatusCode::OK, json!({"ms": 0})));

    let r = http
        .post(format!("{control}/poll_delay"))
        .json(&json!({"ms": 1200}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sim.poll_delay(), Duration::from_millis(1200));
    assert_eq!(
        get("/poll_delay").await,
        (StatusCode::OK, json!({"ms": 1200}))
    );
    for bad in [json!({"ms": 600_001}), json!({"ms": "soon"})] {
        let r = http
            .post(format!("{control}/poll_delay"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    assert_eq!(sim.poll_delay(), Duration::from_millis(1200));

    // The witness as JSON, after one overlap of Secure Endpoint.
    let api = SecureEndpoint::new(&sim);
    let later = async {
        wait_in_flight(&sim, se, 1).await;
        api.poll(0).await
    };
    let (a, b) = tokio::join!(api.poll(0), later);
    assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));
    let (status, c) = get("/counters").await;
    assert_eq!(status, StatusCode::OK);
    let polls = &c["secure_endpoint"]["polls"];
    assert_eq!(polls["polls"], 2, "{polls}");
    assert_eq!(polls["in_flight"], 0, "{polls}");
    assert_eq!(polls["overlapping_polls"], 1, "{polls}");
    assert_eq!(polls["max_concurrent_polls"], 2, "{polls}");
    assert_eq!(
        polls["overlapping_sources"][0]["source"],
        api.creds[0].0.as_str()
    );
    for vendor in ["umbrella", "symantec_mss"] {
        assert_eq!(c[vendor]["polls"]["overlapping_polls"], 0, "{vendor}");
        assert_eq!(c[vendor]["polls"]["overlapping_sources"], json!([]));
    }

    // Faults replaced leave the delay be; 0 removes it.
    sim.set_faults(socbridge_sim::Faults::default());
    assert_eq!(sim.poll_delay(), Duration::from_millis(1200));
    sim.set_poll_delay(Duration::ZERO);
    assert_eq!(get("/poll_delay").await, (StatusCode::OK, json!({"ms": 0})));
    sim.shutdown().await;
}
