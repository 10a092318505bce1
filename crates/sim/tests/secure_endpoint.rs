//! The Secure Endpoint emulator on the wire: paging, exact ids, auth, rate limits, filters,
//! determinism, the served-distinct witness, isolation, group moves, faults, the control API
//! and the files it writes. Every test starts its own emulator on a free port.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use socbridge_sim::{AddEvents, Faults, HIGH_PRIORITY_EVENT_TYPES, SimConfig, SimHandle};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const UNAUTHORIZED: &str = r#"{"version":"v1.0.0","data":{},"errors":[{"error_code":401,"description":"Unauthorized","details":["Unknown API key or Client ID"]}]}"#;

async fn start(seed: u64, tenants: usize, initial: usize) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants,
        seed,
        initial_events_per_tenant: initial,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// A client logged in as one tenant.
struct Api {
    http: reqwest::Client,
    base: String,
    id: String,
    key: String,
}

impl Api {
    fn new(sim: &SimHandle, tenant: usize) -> Api {
        let creds = sim.endpoints().tenants[tenant]
            .secure_endpoint
            .clone()
            .unwrap();
        Api {
            http: reqwest::Client::new(),
            base: sim.endpoints().secure_endpoint.clone(),
            id: creds.client_id,
            key: creds.api_key,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, String) {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .basic_auth(&self.id, Some(&self.key));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        let (s, h, text) = self.send(reqwest::Method::GET, path, None).await;
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (s, h, v)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let (s, h, text) = self.send(method, path, body).await;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (s, h, v)
    }
}

/// The whole data set of a tenant from the control API (newest first).
async fn data_set(sim: &SimHandle, tenant: &str) -> Vec<Value> {
    reqwest::get(format!(
        "{}/secure_endpoint/events?tenant={tenant}",
        sim.endpoints().control
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

fn key(e: &Value) -> (i64, u64, u64) {
    (
        e["timestamp"].as_i64().unwrap(),
        e["timestamp_nanoseconds"].as_u64().unwrap(),
        e["id"].as_u64().unwrap(),
    )
}

fn name(sim: &SimHandle, i: usize) -> String {
    sim.endpoints().tenants[i].name.clone()
}

/// Waits for a condition with a deadline instead of sleeping and hoping.
async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pages_walk_newest_first_and_next_exists_only_when_another_page_does() {
    let sim = start(3, 1, 60).await;
    let api = Api::new(&sim, 0);
    let mut url = "/v1/events?limit=7".to_string();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let (s, _, v) = api.get(&url).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["version"], "v1.2.0");
        let r = &v["metadata"]["results"];
        let data = v["data"].as_array().unwrap();
        assert_eq!(r["total"], 60);
        assert_eq!(r["items_per_page"], 7);
        assert_eq!(r["index"].as_u64().unwrap() as usize, all.len());
        assert_eq!(
            r["current_item_count"].as_u64().unwrap() as usize,
            data.len()
        );
        let links = &v["metadata"]["links"];
        assert_eq!(
            links["prev"].is_string(),
            pages > 0,
            "prev only when offset > 0: {links}"
        );
        all.extend(data.iter().cloned());
        pages += 1;
        match links["next"].as_str() {
            Some(next) => {
                assert!(all.len() < 60, "next only when another page exists");
                assert!(
                    next.starts_with(&sim.endpoints().secure_endpoint),
                    "a full URL from the Host header: {next}"
                );
                assert!(
                    next.contains("limit=7") && next.contains(&format!("offset={}", all.len())),
                    "{next}"
                );
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 9);
    assert_eq!(all.len(), 60);
    for w in all.windows(2) {
        assert!(
            key(&w[0]) > key(&w[1]),
            "newest first: {:?} then {:?}",
            key(&w[0]),
            key(&w[1])
        );
    }
    // Collisions: events share a second, including across a page boundary.
    let same_second = all
        .windows(2)
        .filter(|w| w[0]["timestamp"] == w[1]["timestamp"])
        .count();
    assert!(same_second >= 5, "bursts in one second: {same_second}");
    let split_at = |limit: usize| {
        (1..)
            .map(|k| k * limit)
            .take_while(|&b| b < all.len())
            .any(|b| all[b - 1]["timestamp"] == all[b]["timestamp"])
    };
    let splitting: Vec<usize> = (2..=12).filter(|&l| split_at(l)).collect();
    assert!(
        splitting.len() >= 3,
        "same-second pairs split by page boundaries for limits {splitting:?}"
    );
    // Identical instants exist too (a detection and its quarantine), ordered by id.
    assert!(
        all.windows(2)
            .any(|w| w[0]["timestamp"] == w[1]["timestamp"]
                && w[0]["timestamp_nanoseconds"] == w[1]["timestamp_nanoseconds"])
    );
    // An offset past the end: empty data, prev, no next.
    let (_, _, v) = api.get("/v1/events?limit=7&offset=70").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 0);
    assert!(v["metadata"]["links"]["next"].is_null());
    assert!(
        v["metadata"]["links"]["prev"]
            .as_str()
            .unwrap()
            .ends_with("offset=63")
    );
    // Limits above 500 are clamped.
    let (_, _, v) = api.get("/v1/events?limit=900").await;
    assert_eq!(v["metadata"]["results"]["items_per_page"], 500);
    sim.shutdown().await;
}

#[tokio::test]
async fn ids_above_2_pow_53_survive_as_exact_integers() {
    let sim = start(11, 1, 40).await;
    let api = Api::new(&sim, 0);
    let (_, _, text) = api.send(reqwest::Method::GET, "/v1/events", None).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    for e in v["data"].as_array().unwrap() {
        let id = e["id"]
            .as_u64()
            .expect("id is a JSON integer that fits u64");
        assert!(id > 1u64 << 53, "{id}");
        assert!(
            text.contains(&format!("\"id\":{id},")),
            "written as the exact integer {id}"
        );
        assert!(e["date"].as_str().unwrap().ends_with("+00:00"));
        assert!(e["detection_id"].is_null() || e["detection_id"].is_string());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn ids_rise_with_event_time_like_the_recorded_ones() {
    // The recorded fixtures: id >> 32 counts seconds from one epoch, so ids sort by time.
    let recorded = [
        (6_533_669_671_340_605_000u64, 1_610_706_060i64),
        (6_533_669_929_038_643_000, 1_610_706_120),
    ];
    let epoch = |(id, ts): (u64, i64)| ts - i64::try_from(id >> 32).unwrap();
    assert_eq!(epoch(recorded[0]), epoch(recorded[1]));
    let sim = start(12, 1, 300).await;
    let t = name(&sim, 0);
    let added = sim.add_events(AddEvents {
        tenant: t.clone(),
        count: 5,
        malformed: false,
        same_second: false,
        event_type_id: None,
    });
    assert_eq!(added.len(), 5);
    let events = data_set(&sim, &t).await;
    assert_eq!(events.len(), 305);
    for e in &events {
        let id = e["id"].as_u64().unwrap();
        let ts = e["timestamp"].as_i64().unwrap();
        assert_eq!(epoch((id, ts)), epoch(recorded[0]), "event {id} at {ts}");
    }
    // Newest first by time, so the seconds part of the id never rises down the list.
    assert!(
        events
            .windows(2)
            .all(|w| key(&w[0]).2 >> 32 >= key(&w[1]).2 >> 32)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_the_vendors_401_and_tenants_stay_apart() {
    let sim = start(5, 2, 20).await;
    let base = sim.endpoints().secure_endpoint.clone();
    let http = reqwest::Client::new();
    let a = sim.endpoints().tenants[0].secure_endpoint.clone().unwrap();
    let b = sim.endpoints().tenants[1].secure_endpoint.clone().unwrap();
    let attempts = [
        http.get(format!("{base}/v1/events")),
        http.get(format!("{base}/v1/version"))
            .basic_auth(&a.client_id, Some("wrong")),
        http.get(format!("{base}/v1/version"))
            .basic_auth(&a.client_id, Some(&b.api_key)),
        http.get(format!("{base}/v1/version"))
            .basic_auth("nobody", Some(&a.api_key)),
        http.get(format!("{base}/v1/version"))
            .header("Authorization", "Bearer abc"),
        http.get(format!("{base}/v1/version"))
            .header("Authorization", "Basic !!!notbase64"),
    ];
    for rb in attempts {
        let resp = rb.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key("x-ratelimit-limit"));
        assert_eq!(resp.text().await.unwrap(), UNAUTHORIZED);
    }
    // Each client sees its own tenant only.
    let api_a = Api::new(&sim, 0);
    let api_b = Api::new(&sim, 1);
    let (_, _, ca) = api_a.get("/v1/computers").await;
    let (_, _, cb) = api_b.get("/v1/computers").await;
    let guids = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["connector_guid"].as_str().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    let (ga, gb) = (guids(&ca), guids(&cb));
    assert_eq!(ga.len(), 8);
    assert!(ga.is_disjoint(&gb));
    let (_, _, ev) = api_a.get("/v1/events").await;
    for e in ev["data"].as_array().unwrap() {
        assert!(ga.contains(e["connector_guid"].as_str().unwrap()));
    }
    let other = gb.iter().next().unwrap();
    let (s, _, v) = api_a.get(&format!("/v1/computers/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["errors"][0]["error_code"], 404);
    assert!(
        v["errors"][0]["details"][0]
            .as_str()
            .unwrap()
            .contains(other.as_str())
    );
    let c = sim.counters();
    assert_eq!(c.secure_endpoint.requests.by_status["401"], 6);
    sim.shutdown().await;
}

#[tokio::test]
async fn rate_limit_headers_in_both_spellings_and_429_when_spent() {
    let sim = start(1, 1, 5).await;
    let api = Api::new(&sim, 0);
    let (_, h, _) = api.get("/v1/version").await;
    assert_eq!(h["x-ratelimit-limit"], "3000");
    assert_eq!(h["x-rate-limit-limit"], "3000");
    assert_eq!(h["x-ratelimit-remaining"], "2999");
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(
        reset > 3500 && reset <= 3600,
        "seconds until the reset, not an epoch: {reset}"
    );

    let resp = reqwest::Client::new()
        .post(format!(
            "{}/secure_endpoint/rate_limit",
            sim.endpoints().control
        ))
        .json(&serde_json::json!({"limit": 3, "window_secs": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for remaining in [2, 1, 0] {
        let (s, h, _) = api.get("/v1/events?limit=1").await;
        assert_eq!(s, StatusCode::OK);
        for name in ["x-ratelimit-remaining", "x-rate-limit-remaining"] {
            assert_eq!(h[name].to_str().unwrap(), remaining.to_string(), "{name}");
        }
        for name in ["x-ratelimit-limit", "x-rate-limit-limit"] {
            assert_eq!(h[name], "3");
        }
        for name in ["x-ratelimit-reset", "x-rate-limit-reset"] {
            let r: u64 = h[name].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&r), "{name}: {r}");
        }
        let date = h["x-ratelimit-resetdate"].to_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(date).is_ok(), "{date}");
    }
    let (s, h, v) = api.get("/v1/events?limit=1").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !h.contains_key("retry-after"),
        "the vendor sends no Retry-After"
    );
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-rate-limit-remaining"], "0");
    assert_eq!(v["errors"][0]["error_code"], 429);
    // Another tenant's budget is its own; and the 429 spent nothing.
    assert_eq!(sim.counters().secure_endpoint.requests.by_status["429"], 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn start_date_filters_in_every_accepted_spelling_and_a_bad_one_is_a_400() {
    let sim = start(8, 1, 50).await;
    let api = Api::new(&sim, 0);
    let all = data_set(&sim, &name(&sim, 0)).await;
    let cut = all[20]["timestamp"].as_i64().unwrap();
    let expected = all
        .iter()
        .filter(|e| e["timestamp"].as_i64().unwrap() >= cut)
        .count();
    assert!((21..50).contains(&expected));
    let utc = chrono::DateTime::from_timestamp(cut, 0).unwrap();
    let minus5 = utc.with_timezone(&chrono::FixedOffset::west_opt(5 * 3600).unwrap());
    let spellings = [
        utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        utc.format("%Y-%m-%dT%H:%M:%S%%2B00:00").to_string(),
        // An unencoded `+` arrives as a space after form decoding.
        utc.format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        minus5.format("%Y-%m-%dT%H:%M:%S-05:00").to_string(),
        utc.format("%Y-%m-%dT%H:%M:%S.000Z").to_string(),
    ];
    for s in spellings {
        let (status, _, v) = api.get(&format!("/v1/events?start_date={s}")).await;
        assert_eq!(status, StatusCode::OK, "{s}: {v}");
        assert_eq!(
            v["metadata"]["results"]["total"].as_u64().unwrap() as usize,
            expected,
            "{s}"
        );
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["timestamp"].as_i64().unwrap() >= cut)
        );
        assert!(
            v["metadata"]["links"]["self"]
                .as_str()
                .unwrap()
                .contains("start_date=")
        );
    }
    for bad in ["yesterday", "2024-13-01T00:00:00Z", "2024-01-01T00:00:00"] {
        let (status, _, v) = api.get(&format!("/v1/events?start_date={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(v["errors"][0]["error_code"], 400);
        assert!(
            v["errors"][0]["details"][0]
                .as_str()
                .unwrap()
                .contains("start_date")
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn filters_and_bad_parameters() {
    let sim = start(21, 1, 80).await;
    let api = Api::new(&sim, 0);
    let all = data_set(&sim, &name(&sim, 0)).await;
    let count = |f: &dyn Fn(&Value) -> bool| all.iter().filter(|e| f(e)).count() as u64;

    let (_, _, v) = api
        .get("/v1/events?event_type[]=1090519054&event_type%5B%5D=1107296274&event_type=553648130")
        .await;
    let want = count(&|e| {
        [1090519054, 1107296274, 553648130].contains(&e["event_type_id"].as_u64().unwrap())
    });
    assert_eq!(v["metadata"]["results"]["total"], want);
    assert!(want > 0);

    let hp: String = HIGH_PRIORITY_EVENT_TYPES
        .iter()
        .map(|t| format!("event_type[]={t}&"))
        .collect();
    let (_, _, v) = api.get(&format!("/v1/events?{hp}limit=500")).await;
    let hp_count =
        count(&|e| HIGH_PRIORITY_EVENT_TYPES.contains(&e["event_type_id"].as_u64().unwrap()));
    assert_eq!(v["metadata"]["results"]["total"], hp_count);
    let share = hp_count as f64 / all.len() as f64;
    assert!(
        (0.6..0.95).contains(&share),
        "about 80% high priority: {share}"
    );
    assert_eq!(
        sim.counters().secure_endpoint.tenants[&name(&sim, 0)].events_high_priority,
        hp_count
    );

    let guid = all[0]["connector_guid"].as_str().unwrap();
    let (_, _, v) = api
        .get(&format!("/v1/events?connector_guid[]={guid}"))
        .await;
    assert_eq!(
        v["metadata"]["results"]["total"],
        count(&|e| e["connector_guid"] == guid)
    );

    let group = all[0]["group_guids"][0].as_str().unwrap();
    let (_, _, v) = api.get(&format!("/v1/events?group_guid[]={group}")).await;
    assert_eq!(
        v["metadata"]["results"]["total"],
        count(&|e| e["group_guids"][0] == group)
    );

    let with_file = all
        .iter()
        .find(|e| e["file"]["identity"]["sha256"].is_string())
        .unwrap();
    let sha = with_file["file"]["identity"]["sha256"].as_str().unwrap();
    let (_, _, v) = api.get(&format!("/v1/events?detection_sha256={sha}")).await;
    assert_eq!(
        v["metadata"]["results"]["total"],
        count(&|e| e["file"]["identity"]["sha256"] == sha)
    );

    for bad in ["limit=abc", "limit=-1", "offset=x", "event_type[]=threat"] {
        let (s, _, v) = api.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        let detail = v["errors"][0]["details"][0].as_str().unwrap();
        let param = bad.split(['=', '[']).next().unwrap();
        assert!(detail.contains(param), "{bad}: {detail}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_event_shape_follows_the_recorded_payloads() {
    let sim = start(4, 1, 300).await;
    let all = data_set(&sim, &name(&sim, 0)).await;
    let types: BTreeSet<u64> = all
        .iter()
        .map(|e| e["event_type_id"].as_u64().unwrap())
        .collect();
    assert!(types.len() > 20, "a varied mix: {}", types.len());
    for e in &all {
        for k in [
            "id",
            "timestamp",
            "timestamp_nanoseconds",
            "date",
            "event_type",
            "event_type_id",
            "connector_guid",
            "group_guids",
            "computer",
        ] {
            assert!(!e[k].is_null(), "{k} missing: {e}");
        }
        let c = &e["computer"];
        for k in [
            "connector_guid",
            "hostname",
            "external_ip",
            "active",
            "network_addresses",
            "links",
        ] {
            assert!(!c[k].is_null(), "computer.{k} missing: {e}");
        }
        assert!(
            c["links"]["trajectory"]
                .as_str()
                .unwrap()
                .ends_with("/trajectory")
        );
        if let Some(sev) = e["severity"].as_str() {
            assert!(["Low", "Medium", "High", "Critical"].contains(&sev));
        }
        if !e["file"].is_null() {
            assert_eq!(e["file"]["identity"]["sha256"].as_str().unwrap().len(), 64);
        }
        let date = chrono::DateTime::parse_from_rfc3339(e["date"].as_str().unwrap()).unwrap();
        assert_eq!(date.timestamp(), e["timestamp"].as_i64().unwrap());
    }
    let by_type = |id: u64| all.iter().filter(move |e| e["event_type_id"] == id);
    assert!(
        by_type(553648130).all(|e| e["severity"].is_null() && e["file"].is_null()),
        "Policy Update has neither"
    );
    assert!(by_type(1107296274).all(|e| e["cloud_ioc"]["short_description"].is_string()));
    assert!(
        by_type(1107296274).any(|e| e["file"].is_null()),
        "some Cloud IOC events carry no file"
    );
    assert!(
        by_type(1090519054).all(|e| e["detection"].is_string() && e["detection_id"].is_string())
    );
    assert!(
        HIGH_PRIORITY_EVENT_TYPES
            .iter()
            .filter(|t| by_type(**t).next().is_some())
            .count()
            > 20
    );
    // Initial events lie in [start - 8 min, start].
    let now = chrono::Utc::now().timestamp();
    assert!(
        all.iter()
            .all(|e| (now - 8 * 60 - 2..=now + 1).contains(&e["timestamp"].as_i64().unwrap()))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn two_emulators_with_one_seed_serve_the_same_data() {
    let fingerprint = |events: &[Value]| -> Vec<(u64, String, u64, Option<String>)> {
        events
            .iter()
            .map(|e| {
                (
                    e["id"].as_u64().unwrap(),
                    e["computer"]["hostname"].as_str().unwrap().to_string(),
                    e["event_type_id"].as_u64().unwrap(),
                    e["file"]["identity"]["sha256"].as_str().map(str::to_string),
                )
            })
            .collect()
    };
    let a = start(77, 2, 50).await;
    let b = start(77, 2, 50).await;
    let c = start(78, 2, 50).await;
    for i in 0..2 {
        // Symantec keys come from the system RNG: only the Secure Endpoint part is fixed.
        let (ta, tb) = (&a.endpoints().tenants[i], &b.endpoints().tenants[i]);
        assert_eq!(
            (&ta.name, &ta.secure_endpoint),
            (&tb.name, &tb.secure_endpoint),
            "same names and credentials"
        );
        let ea = Api::new(&a, i).get("/v1/events").await.2;
        let eb = Api::new(&b, i).get("/v1/events").await.2;
        let fa = fingerprint(ea["data"].as_array().unwrap());
        assert_eq!(fa, fingerprint(eb["data"].as_array().unwrap()));
        let ca = Api::new(&a, i).get("/v1/computers").await.2;
        let cb = Api::new(&b, i).get("/v1/computers").await.2;
        let hosts = |v: &Value| {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["hostname"].clone(),
                        c["connector_guid"].clone(),
                        c["network_addresses"].clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(hosts(&ca), hosts(&cb));
        let fc = fingerprint(&data_set(&c, &name(&c, i)).await);
        assert_ne!(fa, fc, "another seed, other data");
    }
    assert_ne!(a.endpoints().tenants[0], c.endpoints().tenants[0]);
    assert_eq!(a.endpoints().tenants[0].name, "acme");
    assert_eq!(a.endpoints().tenants[1].name, "globex");
    let creds = a.endpoints().tenants[0].secure_endpoint.clone().unwrap();
    assert_eq!(creds.api_key.len(), 40);
    assert!(creds.api_key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        creds.client_id.split('-').map(str::len).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn served_distinct_counts_events_in_answers_delivered_whole() {
    let sim = start(9, 1, 30).await;
    let t = name(&sim, 0);
    let api = Api::new(&sim, 0);
    let counters = |sim: &SimHandle| sim.counters().secure_endpoint.tenants[&t].clone();
    assert_eq!(counters(&sim).served_distinct, 0);

    let (_, _, p0) = api.get("/v1/events?limit=10").await;
    let (_, _, p1) = api.get("/v1/events?limit=10&offset=10").await;
    let (_, _, _again) = api.get("/v1/events?limit=10").await;
    let seen: Vec<&Value> = p0["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(p1["data"].as_array().unwrap())
        .collect();
    let hp = seen
        .iter()
        .filter(|e| HIGH_PRIORITY_EVENT_TYPES.contains(&e["event_type_id"].as_u64().unwrap()))
        .count() as u64;
    let c = counters(&sim);
    assert_eq!(c.served_distinct, 20, "distinct, not per answer");
    assert_eq!(c.served_distinct_high_priority, hp);

    // A truncated or dropped answer delivers nothing.
    for f in [
        Faults {
            rate_truncate: 1.0,
            ..Faults::default()
        },
        Faults {
            rate_drop: 1.0,
            ..Faults::default()
        },
    ] {
        sim.set_faults(f);
        let delivered = async {
            let url = format!(
                "{}/v1/events?limit=10&offset=20",
                sim.endpoints().secure_endpoint
            );
            let resp = reqwest::Client::new()
                .get(url)
                .basic_auth(&api.id, Some(&api.key))
                .send()
                .await?;
            let body = resp.bytes().await?;
            Ok::<bool, reqwest::Error>(serde_json::from_slice::<Value>(&body).is_ok())
        }
        .await;
        assert!(!matches!(delivered, Ok(true)), "the answer was spoiled");
        assert_eq!(counters(&sim).served_distinct, 20);
    }
    sim.set_faults(Faults::default());
    let (_, _, _) = api.get("/v1/events?limit=10&offset=20").await;
    assert_eq!(counters(&sim).served_distinct, 30);
    assert_eq!(
        counters(&sim).served_distinct_high_priority,
        counters(&sim).events_high_priority
    );

    // Malformed records are counted apart.
    let ids = sim.add_events(AddEvents {
        tenant: t.clone(),
        count: 2,
        malformed: true,
        same_second: false,
        event_type_id: None,
    });
    assert!(ids.is_empty(), "malformed records have no id");
    let c = counters(&sim);
    assert_eq!((c.malformed_total, c.events_total), (2, 30));
    let (_, _, v) = api.get("/v1/events?limit=5").await;
    let bad: Vec<&Value> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == "not-a-number")
        .collect();
    assert_eq!(bad.len(), 2, "newest, so on the first page");
    for e in bad {
        assert_eq!(e["date"], "not-a-date");
        assert!(e["timestamp"].is_null());
        assert!(HIGH_PRIORITY_EVENT_TYPES.contains(&e["event_type_id"].as_u64().unwrap()));
    }
    let c = counters(&sim);
    assert_eq!((c.malformed_served_distinct, c.served_distinct), (2, 30));
    sim.shutdown().await;
}

#[tokio::test]
async fn added_events_arrive_at_the_top_and_same_second_ones_share_a_second() {
    let sim = start(12, 2, 10).await;
    let t = name(&sim, 1);
    let ids = sim.add_events(AddEvents {
        tenant: t.clone(),
        count: 6,
        malformed: false,
        same_second: true,
        event_type_id: Some(1090519054),
    });
    assert_eq!(ids.len(), 6);
    let api = Api::new(&sim, 1);
    let (_, _, v) = api.get("/v1/events?limit=6").await;
    let top: Vec<&Value> = v["data"].as_array().unwrap().iter().collect();
    let got: BTreeSet<u64> = top.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(got, ids.iter().copied().collect());
    assert!(
        top.iter()
            .all(|e| e["timestamp"] == top[0]["timestamp"] && e["event_type_id"] == 1090519054)
    );
    // Over HTTP as well, with unknown tenants and types refused.
    let http = reqwest::Client::new();
    let url = format!("{}/secure_endpoint/events", sim.endpoints().control);
    let r = http
        .post(&url)
        .json(&serde_json::json!({"tenant": t, "count": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ids"].as_array().unwrap().len(), 3);
    assert!(body["ids"][0].as_u64().unwrap() > 1 << 53);
    let r = http
        .post(&url)
        .json(&serde_json::json!({"tenant": "nope", "count": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .post(&url)
        .json(&serde_json::json!({"tenant": t, "count": 1, "event_type_id": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sim.counters().secure_endpoint.tenants[&t].events_total, 19);
    assert_eq!(
        sim.counters().secure_endpoint.tenants[&name(&sim, 0)].events_total,
        10
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn isolation_walks_the_vendors_state_machine() {
    let sim = start(6, 1, 5).await;
    let api = Api::new(&sim, 0);
    let (_, _, list) = api.get("/v1/computers?hostname[]=WIN-ACME-0002").await;
    assert_eq!(list["metadata"]["results"]["total"], 1);
    let guid = list["data"][0]["connector_guid"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/computers/{guid}/isolation");
    use reqwest::Method;

    let (s, h, _) = api.call(Method::OPTIONS, &path, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(h["allow"], "OPTIONS, GET, PUT");
    let (_, _, v) = api.get(&path).await;
    assert_eq!(
        v["data"],
        serde_json::json!({"available": true, "status": "not_isolated"})
    );

    for bad in ["has space", "x23456789012345678901234567"] {
        let (s, _, v) = api
            .call(
                Method::PUT,
                &path,
                Some(serde_json::json!({"unlock_code": bad})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            v["errors"][0]["details"][0]
                .as_str()
                .unwrap()
                .contains("unlock_code")
        );
    }
    let (s, _, v) = api
        .call(
            Method::PUT,
            &path,
            Some(serde_json::json!({"comment": "incident 7", "unlock_code": "letmein42"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"],
        serde_json::json!({"available": true, "status": "pending_start", "unlock_code": "letmein42", "comment": "incident 7"})
    );
    let (_, h, _) = api.call(Method::OPTIONS, &path, None).await;
    assert_eq!(h["allow"], "OPTIONS, GET, DELETE");
    let (s, _, v) = api.call(Method::PUT, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["errors"][0]["error_code"], 409);
    let (_, _, v) = api.get(&path).await;
    assert_eq!(v["data"]["status"], "isolated", "the next GET settles it");
    let (s, _, v) = api.call(Method::PUT, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        v["errors"][0]["details"][0]
            .as_str()
            .unwrap()
            .contains("already isolated")
    );

    let (s, _, v) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["status"], "pending_stop");
    let (s, _, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Without a GET of the isolation state it settles by itself after about a second.
    let (a, g) = (&api, &guid);
    wait_for(
        "isolation to stop",
        Duration::from_secs(5),
        move || async move {
            a.get(&format!("/v1/computers/{g}")).await.2["data"]["isolation"]["status"]
                == "not_isolated"
        },
    )
    .await;
    let (s, _, _) = api.call(Method::DELETE, &path, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "not isolated");

    // Without a body the vendor picks an unlock code; the PUT answer names a null comment.
    let (s, _, v) = api.call(Method::PUT, &path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        v["data"]["unlock_code"]
            .as_str()
            .is_some_and(|c| !c.is_empty() && c.len() <= 24)
    );
    assert!(
        v["data"].as_object().unwrap().contains_key("comment") && v["data"]["comment"].is_null()
    );
    let p = &path;
    wait_for(
        "isolation to start",
        Duration::from_secs(5),
        move || async move {
            a.call(Method::OPTIONS, p, None).await.1["allow"] == "OPTIONS, GET, DELETE"
                && a.get(&format!("/v1/computers/{g}")).await.2["data"]["isolation"]["status"]
                    == "isolated"
        },
    )
    .await;

    // Servers: isolation is not available.
    let (_, _, list) = api.get("/v1/computers?hostname=srv-acme-0001").await;
    let srv = list["data"][0]["connector_guid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(list["data"][0]["isolation"]["available"], false);
    let spath = format!("/v1/computers/{srv}/isolation");
    let (s, _, _) = api.call(Method::OPTIONS, &spath, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, v) = api.call(Method::PUT, &spath, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["errors"][0]["error_code"], 405);
    let (s, _, _) = api
        .call(
            Method::PUT,
            "/v1/computers/00000000-0000-0000-0000-000000000000/isolation",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let c = &sim.counters().secure_endpoint.tenants["acme"];
    assert_eq!((c.isolation_start, c.isolation_stop), (2, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn computers_groups_and_moves() {
    let sim = start(14, 1, 40).await;
    let api = Api::new(&sim, 0);
    let (_, _, v) = api.get("/v1/version").await;
    assert_eq!(v["version"], "v1.2.0");

    let (_, _, groups) = api.get("/v1/groups").await;
    let names: Vec<&str> = groups["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Protect", "Triage", "Servers"]);
    let (_, _, triage) = api.get("/v1/groups?name=Triage").await;
    assert_eq!(triage["metadata"]["results"]["total"], 1);
    let triage_guid = triage["data"][0]["guid"].as_str().unwrap().to_string();
    let (s, _, g) = api.get(&format!("/v1/groups/{triage_guid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(g["data"]["name"], "Triage");
    assert_eq!(g["data"]["computers_count"], 0);
    let (s, _, _) = api.get("/v1/groups/not-a-group").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (_, _, all) = api.get("/v1/computers?limit=3").await;
    assert_eq!(all["metadata"]["results"]["total"], 8);
    assert!(
        all["metadata"]["links"]["next"]
            .as_str()
            .unwrap()
            .contains("offset=3")
    );
    let c = &all["data"][0];
    for k in [
        "connector_guid",
        "hostname",
        "active",
        "links",
        "connector_version",
        "operating_system",
        "os_version",
        "internal_ips",
        "external_ip",
        "group_guid",
        "install_date",
        "is_compromised",
        "network_addresses",
        "policy",
        "groups",
        "faults",
        "isolation",
        "last_seen",
    ] {
        assert!(!c[k].is_null(), "computer.{k} missing: {c}");
    }
    assert!(c["last_seen"].as_str().unwrap().ends_with('Z'));
    let guid = c["connector_guid"].as_str().unwrap().to_string();
    let old_group = c["group_guid"].as_str().unwrap().to_string();
    let ip = c["internal_ips"][0].as_str().unwrap();
    let (_, _, by_ip) = api.get(&format!("/v1/computers?internal_ip={ip}")).await;
    assert_eq!(by_ip["data"][0]["connector_guid"], guid.as_str());
    let (_, _, in_group) = api
        .get(&format!("/v1/computers?group_guid[]={old_group}"))
        .await;
    assert_eq!(
        in_group["metadata"]["results"]["total"], 6,
        "workstations in Protect"
    );

    use reqwest::Method;
    let path = format!("/v1/computers/{guid}");
    let (s, _, v) = api
        .call(
            Method::PATCH,
            &path,
            Some(serde_json::json!({"group_guid": triage_guid})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["data"]["group_guid"], triage_guid.as_str());
    assert_eq!(v["data"]["groups"][0]["name"], "Triage");
    let (_, _, v) = api.get(&path).await;
    assert_eq!(v["data"]["group_guid"], triage_guid.as_str());
    let (s, _, v) = api
        .call(
            Method::PATCH,
            &path,
            Some(serde_json::json!({"group_guid": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["errors"][0]["details"][0]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let (s, _, _) = api
        .call(Method::PATCH, &path, Some(serde_json::json!({})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = api
        .call(
            Method::PATCH,
            "/v1/computers/unknown",
            Some(serde_json::json!({"group_guid": triage_guid})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // New events of the moved computer carry its new group (the draws are seeded, so which
    // computers the 30 new events land on is fixed).
    let new: BTreeSet<u64> = sim
        .add_events(AddEvents {
            tenant: "acme".into(),
            count: 30,
            malformed: false,
            same_second: false,
            event_type_id: Some(1090519054),
        })
        .into_iter()
        .collect();
    let (_, _, ev) = api
        .get(&format!("/v1/events?connector_guid[]={guid}&limit=500"))
        .await;
    let moved: Vec<&Value> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| new.contains(&e["id"].as_u64().unwrap()))
        .collect();
    assert!(!moved.is_empty());
    assert!(moved.iter().all(|e| {
        e["group_guids"][0] == triage_guid.as_str()
            && e["computer"]["links"]["group"]
                .as_str()
                .unwrap()
                .ends_with(&triage_guid)
    }));
    assert_eq!(
        sim.counters().secure_endpoint.tenants["acme"].group_moves,
        1
    );

    let (_, _, types) = api.get("/v1/event_types").await;
    let ids: BTreeSet<u64> = types["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert!(HIGH_PRIORITY_EVENT_TYPES.iter().all(|t| ids.contains(t)));
    assert!(types["data"][0]["name"].is_string() && types["data"][0]["description"].is_string());

    let (s, _, v) = api.get("/v1/nothing_here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["errors"][0]["error_code"], 404);
    let (s, _, v) = api.call(Method::POST, "/v1/events", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(v["errors"][0]["error_code"], 405);
    sim.shutdown().await;
}

#[tokio::test]
async fn each_fault_at_rate_one_produces_its_answer() {
    let sim = start(15, 1, 20).await;
    let api = Api::new(&sim, 0);
    let (_, _, normal) = api
        .send(reqwest::Method::GET, "/v1/events?limit=10", None)
        .await;

    for (f, code) in [
        (
            Faults {
                rate_429: 1.0,
                ..Faults::default()
            },
            429,
        ),
        (
            Faults {
                rate_500: 1.0,
                ..Faults::default()
            },
            500,
        ),
        (
            Faults {
                rate_503: 1.0,
                ..Faults::default()
            },
            503,
        ),
    ] {
        sim.set_faults(f);
        let (s, h, v) = api.get("/v1/events").await;
        assert_eq!(s.as_u16(), code);
        assert_eq!(v["errors"][0]["error_code"], code);
        assert!(
            h.contains_key("x-ratelimit-remaining") && h.contains_key("x-rate-limit-remaining")
        );
        if code == 429 {
            assert_eq!(h["x-ratelimit-reset"], "1");
            assert_eq!(h["x-rate-limit-reset"], "1");
            assert_eq!(h["x-ratelimit-remaining"], "0");
            assert!(!h.contains_key("retry-after"));
        }
    }

    sim.set_faults(Faults {
        rate_slow: 1.0,
        slow_ms: 300,
        ..Faults::default()
    });
    let t0 = Instant::now();
    let (s, _, _) = api.get("/v1/version").await;
    assert_eq!(s, StatusCode::OK);
    assert!(t0.elapsed() >= Duration::from_millis(300));

    sim.set_faults(Faults {
        rate_truncate: 1.0,
        ..Faults::default()
    });
    let resp = api
        .http
        .get(api.url("/v1/events?limit=10"))
        .basic_auth(&api.id, Some(&api.key))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let declared: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = resp.bytes().await.unwrap();
    assert_eq!(body.len(), declared, "Content-Length matches the cut body");
    assert_eq!(body.len(), normal.len() / 2);
    assert!(
        serde_json::from_slice::<Value>(&body).is_err(),
        "the JSON is cut"
    );

    sim.set_faults(Faults {
        rate_drop: 1.0,
        ..Faults::default()
    });
    let outcome = async {
        let resp = api
            .http
            .get(api.url("/v1/events?limit=10"))
            .basic_auth(&api.id, Some(&api.key))
            .send()
            .await?;
        resp.bytes().await
    }
    .await;
    assert!(outcome.is_err(), "the connection breaks: {outcome:?}");

    sim.set_faults(Faults {
        rate_duplicate: 1.0,
        ..Faults::default()
    });
    let (_, _, first) = api.get("/v1/events?limit=5").await;
    assert_eq!(
        first["data"].as_array().unwrap().len(),
        5,
        "no duplicate on the first page"
    );
    let (_, _, second) = api.get("/v1/events?limit=5&offset=5").await;
    let data = second["data"].as_array().unwrap();
    assert_eq!(data.len(), 6);
    assert_eq!(second["metadata"]["results"]["current_item_count"], 6);
    assert_eq!(
        data[0], first["data"][4],
        "the last event of the previous page, again"
    );

    let f = sim.counters().secure_endpoint.faults;
    assert_eq!(
        (
            f.status_429,
            f.status_500,
            f.status_503,
            f.slow,
            f.truncate,
            f.drop,
            f.duplicate
        ),
        (1, 1, 1, 1, 1, 1, 1)
    );
    // The control API shows and sets the same faults.
    let http = reqwest::Client::new();
    let url = format!("{}/faults", sim.endpoints().control);
    let shown: Faults = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(shown.rate_duplicate, 1.0);
    let r = http
        .post(&url)
        .json(&serde_json::json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(&url)
        .json(&serde_json::json!({"rate_500": 1.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        api.get("/v1/version").await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // The control API itself is never faulted.
    let r = http
        .get(format!("{}/counters", sim.endpoints().control))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn counters_have_the_documented_json_shape() {
    let sim = start(2, 2, 3).await;
    let api = Api::new(&sim, 0);
    api.get("/v1/version").await;
    let v: Value = reqwest::get(format!("{}/counters", sim.endpoints().control))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let se = &v["secure_endpoint"];
    assert_eq!(se["requests"]["total"], 1);
    assert_eq!(se["requests"]["by_status"]["200"], 1);
    assert_eq!(se["requests"]["by_status"]["401"], 0);
    let faults: BTreeSet<&str> = se["faults"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        faults,
        BTreeSet::from(["429", "500", "503", "slow", "drop", "truncate", "duplicate"])
    );
    let t: BTreeSet<&str> = se["tenants"]["acme"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        t,
        BTreeSet::from([
            "events_total",
            "events_high_priority",
            "malformed_total",
            "served_distinct",
            "served_distinct_high_priority",
            "malformed_served_distinct",
            "records_served",
            "isolation_start",
            "isolation_stop",
            "group_moves",
            "stream_published_distinct",
            "stream_malformed_published_distinct",
            "stream_publications",
        ])
    );
    assert_eq!(se["tenants"]["globex"]["events_total"], 3);
    let back: socbridge_sim::Counters = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, sim.counters());
    sim.shutdown().await;
}

#[tokio::test]
async fn config_and_endpoints_files_point_at_the_emulator_and_keep_keys_private() {
    let sim = start(31, 4, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("socbridge.toml");
    sim.write_config(&cfg).unwrap();
    let toml = std::fs::read_to_string(&cfg).unwrap();
    let env = std::fs::read_to_string(dir.path().join("socbridge.env")).unwrap();
    let ep = sim.endpoints();
    assert!(toml.starts_with("# Written by `socbridge sim --write-config`: points socbridge at the emulators.\nenv_file = \"socbridge.env\"\n"));
    for t in &ep.tenants {
        let creds = t.secure_endpoint.as_ref().unwrap();
        let var = format!(
            "{}_SECURE_ENDPOINT_API_KEY",
            t.name.to_uppercase().replace('-', "_")
        );
        let block = format!(
            "[[tenants]]\nname = \"{}\"\n\n[[tenants.sources]]\nname = \"secure-endpoint\"\nkind = \"secure_endpoint\"\nbase_url = \"{}\"\nclient_id = \"{}\"\napi_key_env = \"{var}\"\n",
            t.name, ep.secure_endpoint, creds.client_id
        );
        assert!(toml.contains(&block), "{toml}");
        assert!(
            !toml.contains(&creds.api_key),
            "keys stay out of the config"
        );
        assert!(env.lines().any(|l| l == format!("{var}={}", creds.api_key)));
    }
    assert!(toml.contains("UMBRELLA_CORP_SECURE_ENDPOINT_API_KEY"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("socbridge.env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let ep_path = dir.path().join("endpoints.json");
    sim.write_endpoints_file(&ep_path).unwrap();
    let text = std::fs::read_to_string(&ep_path).unwrap();
    let back: socbridge_sim::Endpoints = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, ep);
    assert!(ep.control.ends_with("/_sim") && ep.secure_endpoint.starts_with("http://127.0.0.1:"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["tenants"][0]["secure_endpoint"]["client_id"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn events_arrive_over_time_at_the_configured_rate() {
    let sim = socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed: 40,
        rate_per_minute: 1200.0,
        initial_events_per_tenant: 5,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let s = &sim;
    wait_for(
        "arrivals for every tenant",
        Duration::from_secs(10),
        move || async move {
            s.counters()
                .secure_endpoint
                .tenants
                .values()
                .all(|c| c.events_total >= 15)
        },
    )
    .await;
    let all = data_set(&sim, "acme").await;
    for w in all.windows(2) {
        assert!(key(&w[0]) > key(&w[1]), "still newest first");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let sim = start(1, 1, 1).await;
    let url = format!("{}/v1/version", sim.endpoints().secure_endpoint);
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    sim.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh.get(&url).send().await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn bad_configurations_are_refused() {
    let zero = socbridge_sim::start(SimConfig {
        tenants: 0,
        ..SimConfig::default()
    })
    .await;
    assert!(matches!(zero, Err(socbridge_sim::SimError::Config(_))));
    let nan = socbridge_sim::start(SimConfig {
        rate_per_minute: f64::NAN,
        ..SimConfig::default()
    })
    .await;
    assert!(matches!(nan, Err(socbridge_sim::SimError::Config(_))));
    let names: Vec<String> = start(1, 12, 0)
        .await
        .endpoints()
        .tenants
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names[3], "umbrella-corp");
    assert_eq!(names[10], "tenant-11");
    assert_eq!(names[11], "tenant-12");
}
