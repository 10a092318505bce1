//! The Umbrella Reporting API emulator on the wire, as a client sees it: tokens (and their
//! per-key limit), the MSSP parent key acting for child orgs, child keys kept to their own
//! org, revoked orgs, strict parameters, relative times, legacy paths, the regional 302 and
//! the Authorization header it needs, the record shape of the recorded answers, the unstable
//! order within one second, the per-org rate limit, faults and the counters. Every test
//! starts its own emulator on free ports.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use socbridge_sim::{
    AddUmbrellaRecords, SimConfig, SimHandle, UmbrellaConfig, UmbrellaFaults, UmbrellaRateLimit,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/umbrella/xsoar"
);

/// An emulator with Umbrella configured as given (two tenants, the other emulators small).
async fn start_with(seed: u64, um: UmbrellaConfig) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed,
        initial_events_per_tenant: 1,
        umbrella: um,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// No rate limit and no redirects: the plain API.
fn plain() -> UmbrellaConfig {
    UmbrellaConfig {
        rate_limit: None,
        regional_share: 0.0,
        ..UmbrellaConfig::default()
    }
}

/// A client that does not follow redirects (tests follow them by hand).
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn base(sim: &SimHandle) -> String {
    sim.endpoints().umbrella.clone().unwrap().base_url
}

fn parent(sim: &SimHandle) -> (String, String) {
    let u = sim.endpoints().umbrella.clone().unwrap();
    (u.parent_key, u.parent_secret)
}

fn child(sim: &SimHandle, tenant: usize) -> (u64, String, String) {
    let c = sim.endpoints().tenants[tenant].umbrella.clone().unwrap();
    (c.org_id, c.key, c.secret)
}

async fn token_answer(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    secret: &str,
    grant: &str,
) -> (StatusCode, Value) {
    let r = http
        .post(format!("{url}/auth/v2/token"))
        .basic_auth(key, Some(secret))
        .form(&[("grant_type", grant)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn token(http: &reqwest::Client, url: &str, key: &str, secret: &str) -> String {
    let (status, v) = token_answer(http, url, key, secret, "client_credentials").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// GET `{url}{path}` with a bearer token and, optionally, the MSSP org header.
async fn get(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    org: Option<u64>,
) -> (StatusCode, HeaderMap, Value) {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(o) = org {
        req = req.header("X-Umbrella-OrgID", o.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every record of the last ten minutes, as one page.
const ALL: &str = "/reports/v2/activity?from=-10minutes&to=now&limit=5000";

fn data(v: &Value) -> &Vec<Value> {
    v["data"].as_array().expect("a data array")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn token_flow_legacy_paths_and_bad_credentials() {
    let sim = start_with(
        1,
        UmbrellaConfig {
            token_ttl: Duration::from_secs(2),
            ..plain()
        },
    )
    .await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);

    let (status, v) = token_answer(&http, &url, &key, &secret, "client_credentials").await;
    assert_eq!(status, StatusCode::OK);
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/access_token_data.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&v), keys(&fixture));
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 2);
    let t = v["access_token"].as_str().unwrap();
    assert!(t.len() > 32 && !t.contains(&key) && !t.contains(&secret));

    let (status, v) = token_answer(&http, &url, &key, "wrong", "client_credentials").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"message": "Unauthorized"}));
    let (status, v) = token_answer(&http, &url, &key, &secret, "password").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("grant_type"), "{v}");

    // The legacy token path, with POST and with GET.
    let r = http
        .post(format!("{url}/auth/v2/oauth2/token"))
        .basic_auth(&key, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(format!("{url}/auth/v2/oauth2/token"))
        .basic_auth(&key, Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let legacy: Value = r.json().await.unwrap();
    let legacy = legacy["access_token"].as_str().unwrap().to_string();

    // Unknown and expired tokens.
    let (org, _, _) = child(&sim, 0);
    let (status, _, v) = get(&http, &format!("{url}{ALL}"), Some("nope"), Some(org)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"message": "Unauthorized"}));
    let (status, _, _) = get(&http, &format!("{url}{ALL}"), None, Some(org)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = get(&http, &format!("{url}{ALL}"), Some(&legacy), Some(org)).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, _) = get(&http, &format!("{url}{ALL}"), Some(&legacy), Some(org)).await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = sim.counters().umbrella;
    assert_eq!(c.tokens["parent"].issued, 3);
    assert_eq!(c.by_kind["token"], 3);
    assert_eq!(c.by_kind["legacy_token"], 2);
    assert!(c.requests.by_status["401"] >= 4);
}

#[tokio::test]
async fn token_endpoint_allows_about_20_a_minute_per_key() {
    let sim = start_with(2, plain()).await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    for _ in 0..20 {
        token(&http, &url, &key, &secret).await;
    }
    let (status, v) = token_answer(&http, &url, &key, &secret, "client_credentials").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // Per key: a child's key still gets one.
    let (org, ck, cs) = child(&sim, 0);
    token(&http, &url, &ck, &cs).await;
    let c = sim.counters().umbrella;
    assert_eq!(c.tokens["parent"].issued, 20);
    assert_eq!(c.tokens["parent"].refused_429, 1);
    assert_eq!(c.tokens[&org.to_string()].issued, 1);
}

#[tokio::test]
async fn parent_acts_for_children_and_child_keys_stay_home() {
    let sim = start_with(
        3,
        UmbrellaConfig {
            extra_orgs: 50,
            ..plain()
        },
    )
    .await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    let pt = token(&http, &url, &key, &secret).await;
    let (acme, ak, asec) = child(&sim, 0);
    let (globex, _, _) = child(&sim, 1);
    let all = format!("{url}{ALL}");

    // The parent, for each child org (tenants' and the 50 extra ones).
    let extra = sim.endpoints().umbrella.clone().unwrap().extra_orgs;
    assert_eq!(extra.len(), 50);
    let mut ids: HashSet<u64> = extra.iter().map(|o| o.org_id).collect();
    ids.insert(acme);
    ids.insert(globex);
    assert_eq!(ids.len(), 52, "org ids are distinct");
    for org in [acme, globex, extra[0].org_id, extra[49].org_id] {
        let (status, _, v) = get(&http, &all, Some(&pt), Some(org)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["meta"], json!({}));
        assert_eq!(data(&v).len(), 200);
    }
    // Different orgs hold different records.
    let (_, _, a) = get(&http, &all, Some(&pt), Some(acme)).await;
    let (_, _, g) = get(&http, &all, Some(&pt), Some(globex)).await;
    assert_ne!(a, g);
    // The parent for itself: no activity of its own.
    let (status, _, v) = get(&http, &all, Some(&pt), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(data(&v).is_empty());
    // An org that is not its child.
    let (status, _, v) = get(&http, &all, Some(&pt), Some(1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(v["message"].is_string());

    // The child key: its own org, with or without the header; never another.
    let ct = token(&http, &url, &ak, &asec).await;
    let (status, _, own) = get(&http, &all, Some(&ct), None).await;
    assert_eq!(status, StatusCode::OK);
    let own_set: BTreeSet<String> = data(&own).iter().map(Value::to_string).collect();
    let a_set: BTreeSet<String> = data(&a).iter().map(Value::to_string).collect();
    assert_eq!(own_set, a_set);
    let (status, _, _) = get(&http, &all, Some(&ct), Some(acme)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&http, &all, Some(&ct), Some(globex)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&http, &all, Some(&ct), Some(extra[3].org_id)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let c = sim.counters().umbrella;
    assert_eq!(c.parent_org_requests, 1);
    assert_eq!(c.orgs[&globex.to_string()].status_403, 1);
    assert_eq!(c.orgs[&extra[3].org_id.to_string()].status_403, 1);
    assert_eq!(c.orgs[&acme.to_string()].status_403, 0);
    assert_eq!(c.orgs.len(), 52);
}

#[tokio::test]
async fn a_revoked_org_answers_403_alone() {
    let sim = start_with(4, plain()).await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    let pt = token(&http, &url, &key, &secret).await;
    let (acme, ak, asec) = child(&sim, 0);
    let (globex, _, _) = child(&sim, 1);
    let ct = token(&http, &url, &ak, &asec).await;
    let all = format!("{url}{ALL}");

    assert_eq!(sim.set_umbrella_revoked("acme", true).unwrap(), acme);
    let (status, _, v) = get(&http, &all, Some(&pt), Some(acme)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _, _) = get(&http, &all, Some(&ct), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get(&http, &all, Some(&pt), Some(globex)).await;
    assert_eq!(status, StatusCode::OK);

    // Through the control API too.
    let control = sim.endpoints().control.clone();
    let r = http
        .post(format!("{control}/umbrella/revoke"))
        .json(&json!({"org": acme.to_string(), "revoked": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _, _) = get(&http, &all, Some(&pt), Some(acme)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sim.set_umbrella_revoked("nobody", true).is_err());
    let c = sim.counters().umbrella;
    assert_eq!(c.orgs[&acme.to_string()].status_403, 2);
    assert!(!c.orgs[&acme.to_string()].revoked);
}

#[tokio::test]
async fn parameters_are_required_and_named() {
    let sim = start_with(5, plain()).await;
    let http = http();
    let url = base(&sim);
    let (org, k, s) = child(&sim, 0);
    let t = token(&http, &url, &k, &s).await;
    let q = |query: &str| format!("{url}/reports/v2/activity/dns?{query}");
    for (query, named) in [
        ("to=now&limit=10", "from"),
        ("from=-1hours&limit=10", "to"),
        ("from=-1hours&to=now", "limit"),
        ("from=-1hours&to=now&limit=0", "limit"),
        ("from=-1hours&to=now&limit=5001", "limit"),
        ("from=yesterday&to=now&limit=10", "from"),
        ("from=-1hours&to=now&limit=10&offset=-1", "offset"),
        ("from=-1hours&to=now&limit=10&order=sideways", "order"),
        ("from=-1hours&to=now&limit=10&verdict=maybe", "verdict"),
        (
            "from=-1hours&to=now&limit=10&categories=65,abc",
            "categories",
        ),
    ] {
        let (status, _, v) = get(&http, &q(query), Some(&t), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {v}");
        let m = v["message"].as_str().unwrap();
        assert!(m.contains(named), "{query}: {m}");
    }
    // Relative times and epoch milliseconds select the same records.
    let records = sim.umbrella_records(&org.to_string()).unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let (_, _, rel) = get(&http, &q("from=-2days&to=now&limit=5000"), Some(&t), None).await;
    let (_, _, abs) = get(
        &http,
        &q(&format!(
            "from={}&to={}&limit=5000",
            now - 2 * 86_400_000,
            now + 60_000
        )),
        Some(&t),
        None,
    )
    .await;
    let dns = records.iter().filter(|r| r["type"] == "dns").count();
    assert_eq!(data(&rel).len(), dns);
    assert_eq!(data(&abs).len(), dns);
    assert!(data(&rel).iter().all(|r| r["type"] == "dns"));
    let (_, _, none) = get(
        &http,
        &q("from=-2days&to=-1days&limit=5000"),
        Some(&t),
        None,
    )
    .await;
    assert!(data(&none).is_empty());
    let (_, _, few) = get(&http, &q("from=-1hours&to=now&limit=7"), Some(&t), None).await;
    assert_eq!(data(&few).len(), 7);
    // Newest first by default, oldest first on request.
    let times = |v: &Value| -> Vec<i64> {
        data(v)
            .iter()
            .map(|r| r["timestamp"].as_i64().unwrap())
            .collect()
    };
    let desc = times(&rel);
    assert!(desc.windows(2).all(|w| w[0] >= w[1]));
    let (_, _, asc) = get(
        &http,
        &q("from=-2days&to=now&limit=5000&order=asc"),
        Some(&t),
        None,
    )
    .await;
    assert!(times(&asc).windows(2).all(|w| w[0] <= w[1]));
    // A timezone moves date and time, never the timestamp.
    let (_, _, tz) = get(
        &http,
        &q("from=-2days&to=now&limit=1&timezone=%2B05:30"),
        Some(&t),
        None,
    )
    .await;
    let r = &data(&tz)[0];
    let ts = chrono::DateTime::from_timestamp_millis(r["timestamp"].as_i64().unwrap()).unwrap()
        + chrono::Duration::minutes(330);
    assert_eq!(r["time"], ts.format("%H:%M:%S").to_string());
    assert_eq!(r["date"], ts.format("%Y-%m-%d").to_string());
}

#[tokio::test]
async fn legacy_paths_take_the_org_from_the_path() {
    let sim = start_with(6, plain()).await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    let pt = token(&http, &url, &key, &secret).await;
    let (acme, ak, asec) = child(&sim, 0);
    let (globex, _, _) = child(&sim, 1);
    let ct = token(&http, &url, &ak, &asec).await;
    let legacy = |org: u64, kind: &str| {
        format!("{url}/v2/organizations/{org}/activity{kind}?from=-10minutes&to=now&limit=5000")
    };
    let (status, _, v) = get(&http, &legacy(acme, ""), Some(&pt), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(data(&v).len(), 200);
    let (status, _, v) = get(&http, &legacy(acme, "/proxy"), Some(&ct), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(data(&v).iter().all(|r| r["type"] == "proxy"));
    let (status, _, _) = get(&http, &legacy(globex, "/dns"), Some(&ct), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let c = sim.counters().umbrella;
    assert_eq!(c.by_kind["legacy/activity"], 1);
    assert_eq!(c.by_kind["legacy/activity/proxy"], 1);
    assert_eq!(c.by_kind["legacy/activity/dns"], 1);
}

#[tokio::test]
async fn regional_orgs_are_redirected_and_the_header_must_follow() {
    let sim = start_with(
        7,
        UmbrellaConfig {
            regional_share: 1.0,
            ..plain()
        },
    )
    .await;
    let http = http();
    let u = sim.endpoints().umbrella.clone().unwrap();
    let (key, secret) = parent(&sim);
    let pt = token(&http, &u.base_url, &key, &secret).await;
    let (acme, _, _) = child(&sim, 0);
    let path = "/reports/v2/activity/dns?from=-10minutes&to=now&limit=50&verdict=blocked";
    let (status, headers, _) = get(
        &http,
        &format!("{}{path}", u.base_url),
        Some(&pt),
        Some(acme),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    let location = headers["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("{}{path}", u.regional_url));
    assert_ne!(u.regional_url, u.base_url);

    // Followed with the Authorization header: the data. Without it: 401.
    let (status, _, v) = get(&http, &location, Some(&pt), Some(acme)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(!data(&v).is_empty());
    assert!(data(&v).iter().all(|r| r["verdict"] == "blocked"));
    let (status, _, v) = get(&http, &location, None, Some(acme)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"message": "Unauthorized"}));
    // A client that follows redirects the usual way drops the header on the host change.
    let following = reqwest::Client::new();
    let (status, _, _) = get(
        &following,
        &format!("{}{path}", u.base_url),
        Some(&pt),
        Some(acme),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let c = sim.counters().umbrella;
    assert_eq!(c.redirects, 2);
    assert_eq!(c.orgs[&acme.to_string()].redirects, 2);
    assert!(c.orgs[&acme.to_string()].regional);
    assert_eq!(c.regional.with_authorization, 1);
    assert_eq!(c.regional.without_authorization, 2);
    assert_eq!(c.requests.by_status["302"], 2);
}

#[tokio::test]
async fn about_one_org_in_five_is_regional_by_default() {
    let sim = start_with(
        8,
        UmbrellaConfig {
            extra_orgs: 98,
            records_per_org: 1,
            ..UmbrellaConfig::default()
        },
    )
    .await;
    let regional = sim
        .counters()
        .umbrella
        .orgs
        .values()
        .filter(|o| o.regional)
        .count();
    assert!((8..=35).contains(&regional), "{regional} of 100");
}

#[tokio::test]
async fn records_have_the_recorded_shape() {
    let sim = start_with(9, plain()).await;
    let (org, _, _) = child(&sim, 0);
    let records = sim.umbrella_records(&org.to_string()).unwrap();
    assert_eq!(records.len(), 200);
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{FIXTURES}/activity_dns_data.json")).unwrap(),
    )
    .unwrap();
    let want = &fixture["data"][0];
    let dns: Vec<&Value> = records.iter().filter(|r| r["type"] == "dns").collect();
    assert!(dns.len() > 100, "mostly DNS");
    for r in &dns {
        assert_eq!(keys(r), keys(want), "{r}");
        assert!(r["timestamp"].is_i64());
        assert_eq!(r["timestamp"].as_i64().unwrap() % 1000, 0, "whole seconds");
        for c in r["categories"].as_array().unwrap() {
            assert_eq!(keys(c), keys(&want["categories"][0]));
        }
        for i in r["identities"].as_array().unwrap() {
            assert_eq!(keys(i), keys(&want["identities"][0]));
            assert!(i["type"].is_object(), "identities[].type is an object: {i}");
            assert_eq!(keys(&i["type"]), keys(&want["identities"][0]["type"]));
        }
    }
    // The other recorded DNS answers share the shape.
    for f in ["activity_data.json", "page_1_paze_size_5.json"] {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{f}")).unwrap())
                .unwrap();
        assert_eq!(keys(&v), ["data", "meta"].map(String::from).into());
        assert_eq!(keys(&v["data"][0]), keys(want));
    }
    // A realistic mix: a good share blocked Command and Control or Cryptomining, labels like
    // DESKTOP-..., several records in one second.
    let c2_or_mining = |r: &Value| {
        r["verdict"] == "blocked"
            && r["categories"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["id"] == 65 || c["id"] == 150))
    };
    let hits = records.iter().filter(|r| c2_or_mining(r)).count();
    assert!((30..=120).contains(&hits), "{hits} of 200");
    let verdicts: BTreeSet<&str> = records
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert!(verdicts.contains("allowed") && verdicts.contains("proxied"));
    assert!(records.iter().any(|r| {
        r["identities"][0]["label"]
            .as_str()
            .unwrap()
            .starts_with("DESKTOP-")
    }));
    let mut per_ms: HashMap<i64, usize> = HashMap::new();
    for r in &records {
        *per_ms.entry(r["timestamp"].as_i64().unwrap()).or_default() += 1;
    }
    assert!(
        per_ms.values().any(|n| *n >= 3),
        "records collide in one millisecond"
    );
    // Each record renders uniquely.
    let distinct: HashSet<String> = records.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), records.len());
    // Other kinds carry their own fields.
    let proxy = records.iter().find(|r| r["type"] == "proxy").unwrap();
    for k in [
        "url",
        "externalip",
        "internalip",
        "categories",
        "identities",
    ] {
        assert!(proxy.get(k).is_some(), "proxy lacks {k}: {proxy}");
    }
    let fw = records.iter().find(|r| r["type"] == "firewall").unwrap();
    for k in [
        "sourceip",
        "destinationip",
        "sourceport",
        "destinationport",
        "protocol",
    ] {
        assert!(fw.get(k).is_some(), "firewall lacks {k}: {fw}");
    }
}

#[tokio::test]
async fn the_mssp_filter_returns_exactly_the_expected_set() {
    let sim = start_with(10, plain()).await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    let pt = token(&http, &url, &key, &secret).await;
    let (acme, _, _) = child(&sim, 0);
    let expected: BTreeSet<String> = sim
        .umbrella_records("acme")
        .unwrap()
        .into_iter()
        .filter(|r| {
            r["verdict"] == "blocked"
                && r["categories"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["id"] == 65 || c["id"] == 150))
        })
        .map(|r| r.to_string())
        .collect();
    assert!(!expected.is_empty());
    let (status, _, v) = get(
        &http,
        &format!("{url}/reports/v2/activity?from=-10minutes&to=now&limit=5000&verdict=blocked&categories=65,150"),
        Some(&pt),
        Some(acme),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let got: BTreeSet<String> = data(&v).iter().map(Value::to_string).collect();
    assert_eq!(got, expected);
    let c = sim.counters().umbrella;
    assert_eq!(
        c.orgs[&acme.to_string()].served_distinct,
        expected.len() as u64
    );
}

#[tokio::test]
async fn order_within_one_second_is_not_stable() {
    let sim = start_with(11, plain()).await;
    let http = http();
    let url = base(&sim);
    let (_, k, s) = child(&sim, 0);
    let t = token(&http, &url, &k, &s).await;
    let added = sim
        .add_umbrella_records(AddUmbrellaRecords {
            org: "acme".into(),
            count: 40,
            same_second: true,
            category: Some(65),
            verdict: Some("blocked".into()),
            identity: Some("DESKTOP-TESTBOX".into()),
            kind: Some("dns".into()),
        })
        .unwrap();
    assert_eq!(added.len(), 40);
    let second = added[0]["timestamp"].as_i64().unwrap();
    assert!(
        added
            .iter()
            .all(|r| r["timestamp"].as_i64() == Some(second))
    );
    assert!(
        added
            .iter()
            .all(|r| r["identities"][0]["label"] == "DESKTOP-TESTBOX")
    );
    let window = format!(
        "{url}/reports/v2/activity?from={second}&to={}&limit=5000",
        second + 999
    );
    let (_, _, first) = get(&http, &window, Some(&t), None).await;
    assert_eq!(data(&first).len(), 40);
    let mut changed = false;
    for _ in 0..10 {
        let (_, _, again) = get(&http, &window, Some(&t), None).await;
        let a: BTreeSet<String> = data(&again).iter().map(Value::to_string).collect();
        let b: BTreeSet<String> = data(&first).iter().map(Value::to_string).collect();
        assert_eq!(a, b, "the same records");
        if again != first {
            changed = true;
            break;
        }
    }
    assert!(changed, "the order within one second never changed");

    // Offset paging through the second skips or repeats records.
    let mut broken = false;
    for _ in 0..10 {
        let mut seen: Vec<String> = Vec::new();
        for offset in (0..40).step_by(8) {
            let (_, _, v) = get(
                &http,
                &format!("{window}&limit=8&offset={offset}"),
                Some(&t),
                None,
            )
            .await;
            seen.extend(data(&v).iter().map(Value::to_string));
        }
        let distinct: HashSet<&String> = seen.iter().collect();
        if distinct.len() < 40 {
            broken = true;
            break;
        }
    }
    assert!(broken, "offset paging never skipped or repeated a record");
}

#[tokio::test]
async fn about_five_requests_a_second_per_org_then_429() {
    let sim = start_with(
        12,
        UmbrellaConfig {
            regional_share: 0.0,
            rate_limit: Some(UmbrellaRateLimit {
                limit: 5,
                window_ms: 60_000,
            }),
            ..UmbrellaConfig::default()
        },
    )
    .await;
    let http = http();
    let url = base(&sim);
    let (key, secret) = parent(&sim);
    let pt = token(&http, &url, &key, &secret).await;
    let (acme, _, _) = child(&sim, 0);
    let (globex, _, _) = child(&sim, 1);
    let all = format!("{url}{ALL}");
    for _ in 0..5 {
        let (status, _, _) = get(&http, &all, Some(&pt), Some(acme)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, v) = get(&http, &all, Some(&pt), Some(acme)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(v["message"].is_string());
    for h in headers.keys() {
        let h = h.as_str();
        assert!(
            h != "retry-after" && !h.starts_with("x-ratelimit"),
            "a rate header: {h}"
        );
    }
    // Per org: another org still has its budget.
    let (status, _, _) = get(&http, &all, Some(&pt), Some(globex)).await;
    assert_eq!(status, StatusCode::OK);
    // Off: no limit.
    sim.set_umbrella_rate_limit(None);
    for _ in 0..10 {
        let (status, _, _) = get(&http, &all, Some(&pt), Some(acme)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let c = sim.counters().umbrella;
    assert_eq!(c.orgs[&acme.to_string()].status_429, 1);
    assert_eq!(c.orgs[&acme.to_string()].reports_requests, 16);
    assert_eq!(c.requests.by_status["429"], 1);

    // The default is about five a second: a burst meets 429, a second later it passes.
    sim.set_umbrella_rate_limit(Some(UmbrellaRateLimit::default()));
    let mut refused = false;
    for _ in 0..10 {
        let (status, _, _) = get(&http, &all, Some(&pt), Some(globex)).await;
        refused |= status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(refused);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _, _) = get(&http, &all, Some(&pt), Some(globex)).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the window never reset");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn faults_and_the_served_witness() {
    let sim = start_with(13, plain()).await;
    let http = http();
    let url = base(&sim);
    let (org, k, s) = child(&sim, 0);
    let t = token(&http, &url, &k, &s).await;
    let all = format!("{url}{ALL}");

    sim.set_umbrella_faults(UmbrellaFaults {
        rate_500: 1.0,
        ..Default::default()
    });
    let (status, _, v) = get(&http, &all, Some(&t), None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(v["message"].is_string());

    sim.set_umbrella_faults(UmbrellaFaults {
        rate_truncate: 1.0,
        ..Default::default()
    });
    let r = http.get(&all).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "cut in half");
    assert_eq!(
        sim.counters().umbrella.orgs[&org.to_string()].served_distinct,
        0
    );

    sim.set_umbrella_faults(UmbrellaFaults {
        rate_duplicate: 1.0,
        ..Default::default()
    });
    let page = |offset: usize| format!("{all}&limit=10&offset={offset}");
    let (_, _, p1) = get(&http, &page(0), Some(&t), None).await;
    assert_eq!(data(&p1).len(), 10);
    let (_, _, p2) = get(&http, &page(10), Some(&t), None).await;
    assert_eq!(data(&p2).len(), 11, "a record of the previous page repeats");

    // Through the control API: an invalid rate is refused.
    let control = sim.endpoints().control.clone();
    let r = http
        .post(format!("{control}/umbrella/faults"))
        .json(&json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(format!("{control}/umbrella/faults"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, _, whole) = get(&http, &all, Some(&t), None).await;
    assert_eq!(data(&whole).len(), 200);

    let c = sim.counters().umbrella;
    assert_eq!(c.faults.status_500, 1);
    assert_eq!(c.faults.truncate, 1);
    assert_eq!(c.faults.duplicate, 1);
    let oc = &c.orgs[&org.to_string()];
    assert_eq!(oc.records_total, 200);
    assert_eq!(oc.served_distinct, 200);
    assert_eq!(oc.reports_requests, 5);
    assert_eq!(c.by_kind["activity"], 5);
    // The counters over HTTP hold the same.
    let v: Value = http
        .get(format!("{control}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["umbrella"]["orgs"][org.to_string()]["served_distinct"],
        200
    );
    assert_eq!(v["umbrella"]["faults"]["500"], 1);
}

#[tokio::test]
async fn control_api_adds_and_dumps_records() {
    let sim = start_with(14, plain()).await;
    let http = http();
    let control = sim.endpoints().control.clone();
    let (org, _, _) = child(&sim, 1);
    let r = http
        .post(format!("{control}/umbrella/records"))
        .json(&json!({"org": "globex", "count": 5, "category": 150, "verdict": "blocked"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["added"], 5);
    let dump: Vec<Value> = http
        .get(format!("{control}/umbrella/records?org={org}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump.len(), 205);
    let mining = dump
        .iter()
        .filter(|r| r["categories"][0]["id"] == 150 && r["verdict"] == "blocked")
        .count();
    assert!(mining >= 5);
    for bad in [
        json!({"org": "nobody", "count": 1}),
        json!({"org": "globex", "count": 1, "verdict": "maybe"}),
        json!({"org": "globex", "count": 1, "category": 99999}),
    ] {
        let r = http
            .post(format!("{control}/umbrella/records"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{bad}");
    }
    assert_eq!(
        sim.counters().umbrella.orgs[&org.to_string()].records_total,
        205
    );
}

#[tokio::test]
async fn records_arrive_over_time() {
    let sim = start_with(
        15,
        UmbrellaConfig {
            rate_per_minute: 600.0,
            records_per_org: 10,
            ..plain()
        },
    )
    .await;
    let (org, _, _) = child(&sim, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = sim.counters().umbrella.orgs[&org.to_string()].records_total;
        if n >= 15 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} records after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_seed_one_data_set() {
    let a = start_with(16, plain()).await;
    let b = start_with(16, plain()).await;
    let c = start_with(17, plain()).await;
    let strip = |sim: &SimHandle| -> Vec<Value> {
        sim.umbrella_records("acme")
            .unwrap()
            .into_iter()
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                o.remove("timestamp");
                o.remove("date");
                o.remove("time");
                r
            })
            .collect()
    };
    let ua = a.endpoints().umbrella.clone().unwrap();
    let ub = b.endpoints().umbrella.clone().unwrap();
    assert_eq!(ua.parent_key, ub.parent_key);
    assert_eq!(ua.parent_org_id, ub.parent_org_id);
    assert_eq!(child(&a, 0), child(&b, 0));
    assert_ne!(child(&a, 0), child(&c, 0));
    assert_eq!(strip(&a), strip(&b));
    assert_ne!(strip(&a), strip(&c));
    // Tokens too are fixed by the seed.
    let (ta, tb) = (
        token(&http(), &ua.base_url, &ua.parent_key, &ua.parent_secret).await,
        token(&http(), &ub.base_url, &ub.parent_key, &ub.parent_secret).await,
    );
    assert_eq!(ta, tb);
}

#[tokio::test]
async fn disabled_means_absent() {
    let sim = start_with(
        18,
        UmbrellaConfig {
            enabled: false,
            ..UmbrellaConfig::default()
        },
    )
    .await;
    assert!(sim.endpoints().umbrella.is_none());
    assert!(sim.endpoints().tenants[0].umbrella.is_none());
    assert!(sim.umbrella_records("acme").is_err());
    let json = serde_json::to_string(sim.endpoints()).unwrap();
    assert!(!json.contains("umbrella"));
}

#[tokio::test]
async fn write_config_with_umbrella_sources_parses() {
    let sim = start_with(19, plain()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &path,
        &socbridge_sim::ConfigOptions {
            umbrella_sources: true,
            ..Default::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let u = sim.endpoints().umbrella.clone().unwrap();
    assert_eq!(
        doc["credentials"][0]["base_url"].as_str(),
        Some(u.base_url.as_str())
    );
    let (org, _, _) = child(&sim, 0);
    let src = doc["tenants"][0]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["kind"].as_str() == Some("umbrella"))
        .unwrap();
    assert_eq!(src["org_id"].as_str(), Some(org.to_string().as_str()));
    assert_eq!(src["credential"].as_str(), Some("umbrella-mssp"));
    let env = std::fs::read_to_string(dir.path().join("socbridge.env")).unwrap();
    assert!(env.contains(&format!("UMBRELLA_MSSP_KEY={}\n", u.parent_key)));
    assert!(env.contains(&format!("UMBRELLA_MSSP_SECRET={}\n", u.parent_secret)));
    assert!(!text.contains(&u.parent_secret));
}
