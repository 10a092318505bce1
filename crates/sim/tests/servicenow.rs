//! The ServiceNow emulator on the wire, as a client sees it: create → 201 + Location, every
//! value a string, journal fields, encoded queries, paging headers, display values, auth
//! (Basic and OAuth), the data policy, faults (commit-drop above all), the outage switch,
//! the rate limit, the business-rule webhook, the counters and the files it writes. Every
//! test starts its own emulator on free ports.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use socbridge_sim::{
    ServiceNowConfig, ServiceNowFaults, ServiceNowRateLimit, ServiceNowWebhook, SimConfig,
    SimHandle,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/servicenow"
);

async fn start_with(seed: u64, sn: ServiceNowConfig) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed,
        initial_events_per_tenant: 1,
        servicenow: sn,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

async fn start(seed: u64) -> SimHandle {
    start_with(seed, ServiceNowConfig::default()).await
}

/// How a client logs in.
#[derive(Clone)]
enum Auth {
    Basic(String, String),
    Bearer(String),
    None,
}

/// A Table API client.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl Api {
    fn integration(sim: &SimHandle) -> Api {
        let sn = sim.endpoints().servicenow.clone().unwrap();
        Api::basic(sim, &sn.integration.user_name, &sn.integration.password)
    }

    fn analyst(sim: &SimHandle) -> Api {
        let sn = sim.endpoints().servicenow.clone().unwrap();
        Api::basic(sim, &sn.analyst.user_name, &sn.analyst.password)
    }

    fn basic(sim: &SimHandle, user: &str, password: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: sim.endpoints().servicenow.clone().unwrap().instance_url,
            auth: Auth::Basic(user.into(), password.into()),
        }
    }

    fn with(&self, auth: Auth) -> Api {
        Api {
            auth,
            ..self.clone()
        }
    }

    async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(StatusCode, HeaderMap, String)> {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut rb = self
            .http
            .request(method, url)
            .header("Accept", "application/json");
        rb = match &self.auth {
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p)),
            Auth::Bearer(t) => rb.bearer_auth(t),
            Auth::None => rb,
        };
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        Ok((status, headers, text))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, HeaderMap, Value) {
        let (s, h, text) = self.try_send(method, path, body).await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (s, h, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn create(&self, body: Value) -> Value {
        let (s, _, v) = self
            .call(Method::POST, "/api/now/table/incident", Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["result"].clone()
    }

    async fn patch(&self, sys_id: &str, body: Value) -> (StatusCode, Value) {
        let (s, _, v) = self
            .call(
                Method::PATCH,
                &format!("/api/now/table/incident/{sys_id}"),
                Some(body),
            )
            .await;
        (s, v)
    }
}

/// `?sysparm_query=...` with the query percent-encoded.
fn q(query: &str, rest: &str) -> String {
    let enc: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!("/api/now/table/incident?sysparm_query={enc}{rest}")
}

async fn control(sim: &SimHandle, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut rb =
        reqwest::Client::new().request(method, format!("{}{path}", sim.endpoints().control));
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "control {path}: {}",
        resp.status()
    );
    resp.json().await.unwrap()
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

fn is_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("x");
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// Every member a string, or a `{link, value}` / `{display_value, ...}` object of strings.
fn assert_all_strings(record: &Value) {
    for (k, v) in record.as_object().expect("a record is an object") {
        match v {
            Value::String(_) => {}
            Value::Object(o) => assert!(
                o.values().all(Value::is_string),
                "{k}: every inner value is a string: {v}"
            ),
            other => panic!("{k} is not a string: {other}"),
        }
    }
}

#[tokio::test]
async fn create_answers_201_with_location_and_the_record_in_strings() {
    let sim = start(1).await;
    let api = Api::integration(&sim);
    let sn = sim.endpoints().servicenow.clone().unwrap();
    let (s, h, v) = api
        .call(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({
                "short_description": "Threat detected on WIN-ACME-0001",
                "description": "Secure Endpoint event 1",
                "impact": 1, "urgency": "2", "priority": "5",
                "caller_id": sn.analyst.sys_id,
                "assignment_group": "SOC Tier 1",
                "correlation_id": "acme:se:6000000000000000001",
                "correlation_display": "socbridge",
                "work_notes": "opened by socbridge",
                "category": "security",
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let r = &v["result"];
    assert_all_strings(r);
    let sys_id = r["sys_id"].as_str().unwrap();
    assert_eq!(sys_id.len(), 32);
    assert!(sys_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(r["number"], "INC0010001");
    assert_eq!(r["state"], "1");
    assert_eq!(r["priority"], "2", "computed from impact 1 × urgency 2");
    assert_eq!(r["active"], "true");
    assert_eq!(r["work_notes"], "", "journal fields read empty");
    assert_eq!(r["sys_created_by"], sn.integration.user_name);
    assert_eq!(r["sys_updated_by"], sn.integration.user_name);
    assert_eq!(r["sys_mod_count"], "0");
    for f in ["sys_created_on", "sys_updated_on", "opened_at"] {
        assert!(is_time(&r[f]), "{f}: {}", r[f]);
    }
    assert_eq!(r["caller_id"]["value"], sn.analyst.sys_id);
    let group = &sn
        .groups
        .iter()
        .find(|g| g.name == "SOC Tier 1")
        .unwrap()
        .sys_id;
    assert_eq!(r["assignment_group"]["value"], *group, "a name resolves");
    assert_eq!(
        r["assignment_group"]["link"],
        format!("{}/api/now/table/sys_user_group/{group}", sn.instance_url)
    );
    assert_eq!(r["resolved_at"], "", "an empty reference or date is \"\"");
    assert_eq!(r["assigned_to"], "");
    let location = h.get("location").unwrap().to_str().unwrap();
    assert_eq!(
        location,
        format!("{}/api/now/table/incident/{sys_id}", sn.instance_url)
    );
    let (s, _, got) = api.get(location).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        got["result"], *r,
        "GET of Location gives the created record"
    );
    // Numbers count up.
    let second = api.create(json!({"short_description": "two"})).await;
    assert_eq!(second["number"], "INC0010002");
    assert_eq!(second["priority"], "5", "default impact/urgency 3 × 3");
    sim.shutdown().await;
}

#[tokio::test]
async fn journal_fields_append_and_read_back_as_sys_journal_field_rows() {
    let sim = start(2).await;
    let api = Api::integration(&sim);
    let analyst = Api::analyst(&sim);
    let inc = api
        .create(json!({"short_description": "j", "work_notes": "first note"}))
        .await;
    let id = inc["sys_id"].as_str().unwrap();
    let (s, r) = analyst
        .patch(
            id,
            json!({"comments": "customer says hi", "work_notes": "second note"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["result"]["work_notes"], "");
    assert_eq!(r["result"]["comments"], "");
    assert_eq!(r["result"]["sys_mod_count"], "1");
    assert_eq!(r["result"]["sys_updated_by"], "soc.analyst");

    let query = format!(
        "element_id={id}^element=work_notes^ORelement=comments^sys_created_on>2000-01-01 00:00:00^ORDERBYsys_created_on"
    );
    let enc: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
    let (s, h, v) = api
        .get(&format!(
            "/api/now/table/sys_journal_field?sysparm_query={enc}"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(h["x-total-count"], "3");
    let rows = v["result"].as_array().unwrap();
    let values: Vec<&str> = rows.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["first note", "customer says hi", "second note"]);
    for r in rows {
        assert_all_strings(r);
        assert_eq!(r["element_id"], id);
        assert_eq!(r["name"], "incident");
        assert!(is_time(&r["sys_created_on"]));
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(
            [
                "sys_id",
                "element",
                "element_id",
                "value",
                "sys_created_on",
                "sys_created_by"
            ]
            .iter()
            .all(|k| keys.contains(k))
        );
    }
    assert_eq!(rows[0]["sys_created_by"], "socbridge.integration");
    assert_eq!(rows[1]["element"], "comments");
    assert_eq!(rows[2]["sys_created_by"], "soc.analyst");
    // Only comments.
    let enc: String = url::form_urlencoded::byte_serialize(
        format!("element_id={id}^element=comments").as_bytes(),
    )
    .collect();
    let (_, _, v) = api
        .get(&format!(
            "/api/now/table/sys_journal_field?sysparm_query={enc}"
        ))
        .await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    // The display value of a journal field is its history, newest first.
    let (_, _, v) = api
        .get(&format!(
            "/api/now/table/incident/{id}?sysparm_display_value=true&sysparm_fields=work_notes"
        ))
        .await;
    let hist = v["result"]["work_notes"].as_str().unwrap();
    let second = hist.find("second note").unwrap();
    let first = hist.find("first note").unwrap();
    assert!(second < first, "{hist}");
    assert!(hist.contains("SOC Analyst (Work notes)"), "{hist}");
    // Journal rows are not written directly.
    let (s, _, v) = api
        .call(
            Method::POST,
            "/api/now/table/sys_journal_field",
            Some(json!({"element": "work_notes", "value": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["status"], "failure");
    sim.shutdown().await;
}

#[tokio::test]
async fn encoded_queries_filter_and_order() {
    let sim = start(3).await;
    let api = Api::integration(&sim);
    for (i, (desc, impact, cid)) in [
        ("Malware on host A", "1", "acme:1"),
        ("Phishing mail", "2", "acme:2"),
        ("Malware on host B", "3", "globex:1"),
        ("Port scan", "2", ""),
    ]
    .iter()
    .enumerate()
    {
        api.create(
            json!({"short_description": desc, "impact": impact, "urgency": "1",
            "correlation_id": cid, "description": format!("n{i}")}),
        )
        .await;
    }
    let count = |query: &'static str| {
        let api = api.clone();
        let path = q(query, "");
        async move {
            let (s, h, v) = api.get(&path).await;
            assert_eq!(s, StatusCode::OK, "{query}: {v}");
            let n = v["result"].as_array().unwrap().len();
            assert_eq!(h["x-total-count"].to_str().unwrap(), n.to_string());
            n
        }
    };
    assert_eq!(count("correlation_id=acme:1").await, 1);
    assert_eq!(count("correlation_id!=acme:1").await, 3);
    assert_eq!(count("short_descriptionLIKEmalware").await, 2);
    assert_eq!(count("short_descriptionSTARTSWITHPh").await, 1);
    assert_eq!(count("short_descriptionENDSWITHB").await, 1);
    assert_eq!(count("correlation_idINacme:1,acme:2,nope").await, 2);
    assert_eq!(count("correlation_idNOT INacme:1,acme:2").await, 2);
    assert_eq!(count("priority<=2").await, 3, "impact 1|2 × urgency 1");
    assert_eq!(count("priority>2").await, 1);
    assert_eq!(count("priority>=1^priority<3").await, 3);
    assert_eq!(
        count("correlation_idSTARTSWITHacme^short_descriptionLIKEmalware").await,
        1
    );
    assert_eq!(
        count("correlation_id=acme:1^ORcorrelation_id=globex:1").await,
        2
    );
    assert_eq!(count("correlation_idISEMPTY").await, 1);
    assert_eq!(count("sys_created_on>2000-01-01 00:00:00").await, 4);
    assert_eq!(count("sys_created_on<2000-01-01 00:00:00").await, 0);
    assert_eq!(
        count("u_no_such_field=1^correlation_id=acme:2").await,
        1,
        "unknown fields are ignored"
    );
    let (_, _, v) = api.get(&q("ORDERBYDESCdescription", "")).await;
    let order: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["description"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["n3", "n2", "n1", "n0"]);
    let (_, _, v) = api.get(&q("ORDERBYpriority^ORDERBYDESCnumber", "")).await;
    let order: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_str().unwrap())
        .collect();
    assert_eq!(
        order,
        ["INC0010001", "INC0010004", "INC0010002", "INC0010003"]
    );
    // A term without an operator is a 400 naming sysparm_query.
    let (s, _, v) = api.get(&q("state=1^garbage", "")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["status"], "failure");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("sysparm_query"),
        "{v}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn paging_headers_fields_and_versions() {
    let sim = start(4).await;
    let api = Api::integration(&sim);
    for i in 0..7 {
        api.create(json!({"short_description": format!("p{i}")}))
            .await;
    }
    // Walk pages with the Link header, as a client would.
    let mut next = Some(format!(
        "{}{}",
        sim.endpoints().servicenow.as_ref().unwrap().instance_url,
        q(
            "ORDERBYsys_id",
            "&sysparm_limit=3&sysparm_fields=sys_id,number"
        )
    ));
    let mut seen = Vec::new();
    let mut pages = 0;
    while let Some(url) = next.take() {
        let (s, h, v) = api.get(&url).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-total-count"], "7");
        pages += 1;
        for r in v["result"].as_array().unwrap() {
            let keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 2, "sysparm_fields: {keys:?}");
            seen.push(r["sys_id"].as_str().unwrap().to_string());
        }
        let link = h["link"].to_str().unwrap();
        assert!(
            link.contains("rel=\"first\"") && link.contains("rel=\"last\""),
            "{link}"
        );
        next = link
            .split(',')
            .find(|l| l.ends_with("rel=\"next\""))
            .map(|l| {
                l.trim()
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap()
                    .to_string()
            });
    }
    assert_eq!(pages, 3);
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), 7, "every record once");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ORDERBYsys_id across pages");

    let (_, h, v) = api.get(&q("", "&sysparm_limit=2&sysparm_offset=6")).await;
    assert_eq!(v["result"].as_array().unwrap().len(), 1);
    let link = h["link"].to_str().unwrap();
    assert!(link.contains("rel=\"prev\"") && !link.contains("rel=\"next\""));
    assert!(link.contains("sysparm_offset=6>;rel=\"last\""), "{link}");
    let (_, h, _) = api
        .get(&q("", "&sysparm_suppress_pagination_header=true"))
        .await;
    assert!(h.get("link").is_none());
    assert_eq!(h["x-total-count"], "7");

    // Nothing matches: v2 and the unversioned path answer [], v1 answers 404.
    let none = "?sysparm_query=number%3DINC9";
    let (s, h, v) = api.get(&format!("/api/now/v2/table/incident{none}")).await;
    assert_eq!((s, &v["result"]), (StatusCode::OK, &json!([])));
    assert_eq!(h["x-total-count"], "0");
    let (s, _, v) = api.get(&format!("/api/now/table/incident{none}")).await;
    assert_eq!((s, &v["result"]), (StatusCode::OK, &json!([])));
    let (s, _, v) = api.get(&format!("/api/now/v1/table/incident{none}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        v,
        json!({"error": {"message": "No Record found",
            "detail": "Record doesn't exist or ACL restricts the record retrieval"}, "status": "failure"})
    );
    // v2 create answers a v2 Location.
    let (s, h, _) = api
        .call(
            Method::POST,
            "/api/now/v2/table/incident",
            Some(json!({"short_description": "v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .contains("/api/now/v2/table/incident/")
    );

    // Bad parameters are 400s naming the parameter; unknown tables and records as the
    // instance answers them.
    for (path, name) in [
        ("/api/now/table/incident?sysparm_limit=abc", "sysparm_limit"),
        ("/api/now/table/incident?sysparm_limit=0", "sysparm_limit"),
        (
            "/api/now/table/incident?sysparm_offset=-1",
            "sysparm_offset",
        ),
        (
            "/api/now/table/incident?sysparm_display_value=maybe",
            "sysparm_display_value",
        ),
        (
            "/api/now/table/incident?sysparm_exclude_reference_link=yes",
            "sysparm_exclude_reference_link",
        ),
    ] {
        let (s, _, v) = api.get(path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert!(v["error"]["detail"].as_str().unwrap().contains(name), "{v}");
        assert_eq!(v["status"], "failure");
    }
    let (s, _, v) = api.get("/api/now/table/no_such_table").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["message"], "Invalid table no_such_table");
    let (s, _, v) = api
        .get(&format!("/api/now/table/incident/{}", "0".repeat(32)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["message"], "No Record found");
    let (s, _, v) = api
        .call(Method::POST, "/api/now/table/incident", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    sim.shutdown().await;
}

#[tokio::test]
async fn display_values_and_reference_links() {
    let sim = start(5).await;
    let api = Api::integration(&sim);
    let sn = sim.endpoints().servicenow.clone().unwrap();
    let inc = api
        .create(json!({"short_description": "d", "caller_id": sn.analyst.user_name, "impact": "2", "urgency": "2"}))
        .await;
    let id = inc["sys_id"].as_str().unwrap();
    let path = |p: &str| format!("/api/now/table/incident/{id}?{p}");
    let (_, _, v) = api.get(&path("sysparm_display_value=true")).await;
    let r = &v["result"];
    assert_eq!(r["state"], "New");
    assert_eq!(r["priority"], "3 - Moderate");
    assert_eq!(r["impact"], "2 - Medium");
    assert_eq!(r["caller_id"]["display_value"], "SOC Analyst");
    assert!(
        r["caller_id"]["link"]
            .as_str()
            .unwrap()
            .ends_with(&sn.analyst.sys_id)
    );
    let (_, _, v) = api
        .get(&path(
            "sysparm_display_value=true&sysparm_exclude_reference_link=true",
        ))
        .await;
    assert_eq!(v["result"]["caller_id"], "SOC Analyst");
    let (_, _, v) = api.get(&path("sysparm_exclude_reference_link=true")).await;
    assert_eq!(v["result"]["caller_id"], sn.analyst.sys_id);
    let (_, _, v) = api.get(&path("sysparm_display_value=all")).await;
    let r = &v["result"];
    assert_eq!(r["state"], json!({"display_value": "New", "value": "1"}));
    assert_eq!(r["caller_id"]["value"], sn.analyst.sys_id);
    assert_eq!(r["caller_id"]["display_value"], "SOC Analyst");
    for (k, v) in r.as_object().unwrap() {
        assert!(
            v["display_value"].is_string() && v["value"].is_string(),
            "{k}: {v}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn answers_match_the_recorded_fixture_shapes() {
    let sim = start(6).await;
    let api = Api::integration(&sim);
    let inc = api
        .create(json!({"short_description": "Unable to connect to email"}))
        .await;
    let id = inc["sys_id"].as_str().unwrap();
    // Elastic's recorded incident (display_value=all): each of its members, apart from
    // its own `table_name`, is in our answer with the same {display_value, value} shape.
    let log = std::fs::read_to_string(format!("{FIXTURES}/elastic/test-event-mmdd.log")).unwrap();
    let recorded: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["table_name"] == "incident")
        .expect("the recording holds an incident");
    let (_, _, v) = api
        .get(&format!(
            "/api/now/table/incident/{id}?sysparm_display_value=all"
        ))
        .await;
    let ours = &v["result"];
    for (k, rv) in recorded.as_object().unwrap() {
        if k == "table_name" || k == "activity_due" {
            continue; // a recorder's member, and an SLA field incidents here do not carry
        }
        let o = &ours[k];
        let keys =
            |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys(rv), keys(o), "{k}: recorded {rv}, ours {o}");
        assert!(
            o["value"].is_string() && o["display_value"].is_string(),
            "{k}"
        );
    }
    // XSOAR's recorded Table API answer: the task fields an incident shares with it have the
    // same names, and ours are all strings (the recording's numbers are XSOAR's mocking).
    let xsoar: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{FIXTURES}/xsoar/create_co_from_template_result.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let shared = [
        "active",
        "assigned_to",
        "assignment_group",
        "category",
        "close_code",
        "close_notes",
        "closed_at",
        "closed_by",
        "comments",
        "correlation_display",
        "correlation_id",
        "description",
        "impact",
        "number",
        "opened_at",
        "opened_by",
        "priority",
        "short_description",
        "state",
        "sys_class_name",
        "sys_created_by",
        "sys_created_on",
        "sys_domain",
        "sys_domain_path",
        "sys_id",
        "sys_mod_count",
        "sys_updated_by",
        "sys_updated_on",
        "urgency",
        "work_notes",
    ];
    for f in shared {
        assert!(xsoar["result"].get(f).is_some(), "{f} is in the recording");
        assert!(ours.get(f).is_some(), "{f} is in our answer");
    }
    assert_eq!(
        ours["sys_domain"],
        json!({"display_value": "global", "value": "global"})
    );
    assert_eq!(
        ours["work_notes"],
        json!({"display_value": "", "value": ""})
    );
    assert_eq!(
        ours["assignment_group"],
        json!({"display_value": "", "value": ""}),
        "an empty reference, as recorded"
    );
    let (_, _, raw) = api.get(&format!("/api/now/table/incident/{id}")).await;
    assert_all_strings(&raw["result"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn basic_and_oauth_auth_and_the_401_envelope() {
    let sim = start(7).await;
    let sn = sim.endpoints().servicenow.clone().unwrap();
    let api = Api::integration(&sim);
    let unauth = json!({"error": {"message": "User Not Authenticated",
        "detail": "Required to provide Auth information"}, "status": "failure"});
    for bad in [
        api.with(Auth::None),
        api.with(Auth::Basic(
            sn.integration.user_name.clone(),
            "wrong".into(),
        )),
        api.with(Auth::Bearer("nope".into())),
    ] {
        let (s, _, v) = bad.get("/api/now/table/incident").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(v, unauth);
    }
    let http = reqwest::Client::new();
    let token_url = format!("{}/oauth_token.do", sn.instance_url);
    let form = |pairs: &[(&str, &str)]| {
        let http = http.clone();
        let url = token_url.clone();
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        async move {
            let resp = http.post(url).form(&pairs).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }
    };
    let (s, tok) = form(&[
        ("grant_type", "password"),
        ("client_id", &sn.oauth.client_id),
        ("client_secret", &sn.oauth.client_secret),
        ("username", &sn.analyst.user_name),
        ("password", &sn.analyst.password),
    ])
    .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 1799);
    let access = tok["access_token"].as_str().unwrap().to_string();
    let refresh = tok["refresh_token"].as_str().unwrap().to_string();
    let bearer = api.with(Auth::Bearer(access));
    let inc = bearer
        .create(json!({"short_description": "via oauth"}))
        .await;
    assert_eq!(
        inc["sys_created_by"], "soc.analyst",
        "the token's user writes"
    );

    let (s, cc) = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &sn.oauth.client_id),
        ("client_secret", &sn.oauth.client_secret),
    ])
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(cc.get("refresh_token").is_none());
    let machine = api.with(Auth::Bearer(cc["access_token"].as_str().unwrap().into()));
    let inc = machine.create(json!({"short_description": "cc"})).await;
    assert_eq!(inc["sys_created_by"], sn.integration.user_name);

    // Expired tokens are refused; the refresh token gets a new one.
    let expired = control(&sim, Method::POST, "/servicenow/tokens/expire", None).await;
    assert_eq!(expired["expired"], 2);
    let (s, _, _) = bearer.get("/api/now/table/incident").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, again) = form(&[
        ("grant_type", "refresh_token"),
        ("client_id", &sn.oauth.client_id),
        ("client_secret", &sn.oauth.client_secret),
        ("refresh_token", &refresh),
    ])
    .await;
    assert_eq!(s, StatusCode::OK);
    let fresh = api.with(Auth::Bearer(again["access_token"].as_str().unwrap().into()));
    assert_eq!(fresh.get("/api/now/table/incident").await.0, StatusCode::OK);

    let (s, e) = form(&[
        ("grant_type", "password"),
        ("client_id", &sn.oauth.client_id),
        ("client_secret", "wrong"),
        ("username", &sn.analyst.user_name),
        ("password", &sn.analyst.password),
    ])
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        e,
        json!({"error": "server_error", "error_description": "access_denied"})
    );
    let (s, e) = form(&[
        ("client_id", &sn.oauth.client_id),
        ("client_secret", &sn.oauth.client_secret),
    ])
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        e["error_description"]
            .as_str()
            .unwrap()
            .contains("grant_type")
    );
    assert_eq!(sim.counters().servicenow.tokens_issued, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn data_policy_acl_and_resolution_stamps() {
    let sim = start(8).await;
    let api = Api::integration(&sim);
    let analyst = Api::analyst(&sim);
    let inc = api.create(json!({"short_description": "r"})).await;
    let id = inc["sys_id"].as_str().unwrap();
    let (s, v) = analyst.patch(id, json!({"state": "6"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["status"], "failure");
    assert_eq!(v["error"]["message"], "Operation Failed");
    assert!(
        v["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("Data Policy Exception"),
        "{v}"
    );
    let (s, v) = analyst
        .patch(
            id,
            json!({"state": "6", "close_code": "Not a code", "close_notes": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = analyst.patch(id, json!({"state": "42"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["detail"].as_str().unwrap().contains("state"));
    let (_, _, now) = api.get(&format!("/api/now/table/incident/{id}")).await;
    assert_eq!(now["result"]["state"], "1", "refused writes change nothing");
    assert_eq!(now["result"]["sys_mod_count"], "0");

    let (s, v) = analyst
        .patch(
            id,
            json!({"state": "6", "close_code": "Solution provided", "close_notes": "cleaned"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = &v["result"];
    assert!(is_time(&r["resolved_at"]));
    assert_eq!(r["closed_at"], "");
    assert_eq!(r["active"], "true", "resolved is still active");
    let (s, v) = api.patch(id, json!({"state": "7"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["active"], "false");
    assert!(is_time(&v["result"]["closed_at"]));
    assert_eq!(v["result"]["sys_updated_by"], "socbridge.integration");
    let (s, v) = api.patch(id, json!({"work_notes": "too late"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(v["error"]["detail"].as_str().unwrap().contains("ACL"));
    // Unchanged writes are answered but not saved.
    let other = api.create(json!({"short_description": "u"})).await;
    let oid = other["sys_id"].as_str().unwrap();
    let (s, v) = api.patch(oid, json!({"short_description": "u"})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["result"]["sys_mod_count"], "0");
    let c = sim.counters().servicenow;
    assert_eq!(c.writes.unchanged, 1);
    assert_eq!(c.writes.refused, 4);
    assert_eq!(c.by_user["soc.analyst"].refused, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn analyst_and_integration_writes_are_told_apart() {
    let sim = start(9).await;
    let api = Api::integration(&sim);
    let analyst = Api::analyst(&sim);
    let a = api
        .create(json!({"short_description": "a", "correlation_id": "acme:1", "work_notes": "n"}))
        .await;
    api.create(json!({"short_description": "b", "correlation_id": "acme:2"}))
        .await;
    api.create(json!({"short_description": "b again", "correlation_id": "acme:2"}))
        .await;
    let id = a["sys_id"].as_str().unwrap();
    let (_, v) = analyst
        .patch(id, json!({"state": "2", "comments": "looking"}))
        .await;
    assert_eq!(v["result"]["sys_updated_by"], "soc.analyst");
    assert_eq!(v["result"]["sys_created_by"], "socbridge.integration");
    let c = sim.counters().servicenow;
    assert_eq!(c.tickets_by_correlation_id["acme:1"], 1);
    assert_eq!(
        c.tickets_by_correlation_id["acme:2"], 2,
        "a duplicate shows"
    );
    let me = &c.by_user["socbridge.integration"];
    assert_eq!((me.creates, me.updates, me.journal_entries), (3, 0, 1));
    let them = &c.by_user["soc.analyst"];
    assert_eq!(
        (them.creates, them.updates, them.journal_entries),
        (0, 1, 1)
    );
    assert_eq!(c.writes.creates, 3);
    assert_eq!(c.incidents_total, 3);
    assert_eq!(c.journal_total, 2);
    // The witness view lists what is stored.
    let all = sim.servicenow_incidents();
    assert_eq!(all.len(), 3);
    assert_eq!(sim.servicenow_journal().len(), 2);
    let ctl = control(&sim, Method::GET, "/servicenow/incidents", None).await;
    assert_eq!(ctl.as_array().unwrap().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn commit_drop_saves_the_record_and_answers_nothing() {
    let sim = start(10).await;
    let api = Api::integration(&sim);
    sim.set_servicenow_faults(ServiceNowFaults {
        rate_commit_drop: 1.0,
        ..Default::default()
    });
    // Reads are not affected.
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    let sent = api
        .try_send(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({"short_description": "ambiguous", "correlation_id": "acme:amb"})),
        )
        .await;
    assert!(sent.is_err(), "no answer arrives: {sent:?}");
    sim.set_servicenow_faults(ServiceNowFaults::default());
    // The client that looks before writing again finds the ticket.
    let (s, h, v) = api.get(&q("correlation_id=acme:amb", "")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["x-total-count"], "1");
    let id = v["result"][0]["sys_id"].as_str().unwrap().to_string();
    let c = sim.counters().servicenow;
    assert_eq!(c.faults.commit_drop, 1);
    assert_eq!(c.tickets_by_correlation_id["acme:amb"], 1);
    // An update dropped the same way is saved too.
    sim.set_servicenow_faults(ServiceNowFaults {
        rate_commit_drop: 1.0,
        ..Default::default()
    });
    let sent = api
        .try_send(
            Method::PATCH,
            &format!("/api/now/table/incident/{id}"),
            Some(json!({"work_notes": "did it land?"})),
        )
        .await;
    assert!(sent.is_err());
    sim.set_servicenow_faults(ServiceNowFaults::default());
    let j = sim.servicenow_journal();
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["value"], "did it land?");
    assert_eq!(sim.counters().servicenow.faults.commit_drop, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_faults_and_their_answers() {
    let sim = start(11).await;
    let api = Api::integration(&sim);
    let set = |f: ServiceNowFaults| sim.set_servicenow_faults(f);
    set(ServiceNowFaults {
        rate_500: 1.0,
        ..Default::default()
    });
    let (s, _, v) = api
        .call(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({"short_description": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["status"], "failure");
    set(ServiceNowFaults {
        rate_503: 1.0,
        ..Default::default()
    });
    assert_eq!(
        api.get("/api/now/table/incident").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    set(ServiceNowFaults {
        rate_429: 1.0,
        ..Default::default()
    });
    let (s, h, v) = api
        .call(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({"short_description": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error"]["message"], "Rate limit exceeded");
    assert!(
        sim.servicenow_incidents().is_empty(),
        "error faults write nothing"
    );

    set(ServiceNowFaults {
        rate_truncate: 1.0,
        ..Default::default()
    });
    let (s, _, text) = api
        .try_send(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({"short_description": "t"})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::CREATED);
    assert!(
        serde_json::from_str::<Value>(&text).is_err(),
        "cut JSON: {text}"
    );
    assert_eq!(
        sim.servicenow_incidents().len(),
        1,
        "the write behind a spoiled answer landed"
    );
    set(ServiceNowFaults {
        rate_drop: 1.0,
        ..Default::default()
    });
    assert!(
        api.try_send(Method::GET, "/api/now/table/incident", None)
            .await
            .is_err()
    );
    set(ServiceNowFaults {
        rate_slow: 1.0,
        slow_ms: 150,
        ..Default::default()
    });
    let t = Instant::now();
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    set(ServiceNowFaults::default());
    let f = sim.counters().servicenow.faults;
    assert_eq!(
        (
            f.status_500,
            f.status_503,
            f.status_429,
            f.truncate,
            f.drop,
            f.slow
        ),
        (1, 1, 1, 1, 1, 1)
    );
    // The control API refuses rates outside 0..=1.
    let resp = reqwest::Client::new()
        .post(format!("{}/servicenow/faults", sim.endpoints().control))
        .json(&json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test]
async fn outage_and_rate_limit() {
    let sim = start(12).await;
    let api = Api::integration(&sim);
    control(
        &sim,
        Method::POST,
        "/servicenow/outage",
        Some(json!({"on": true})),
    )
    .await;
    let (s, h, text) = api
        .try_send(Method::GET, "/api/now/table/incident", None)
        .await
        .unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(text.contains("Unavailable"));
    let (s, _, _) = api
        .try_send(
            Method::POST,
            "/api/now/table/incident",
            Some(json!({"short_description": "o"})),
        )
        .await
        .unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let tok = reqwest::Client::new()
        .post(format!("{}/oauth_token.do", api.base))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(tok.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(sim.servicenow_incidents().is_empty());
    sim.set_servicenow_outage(false);
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    assert_eq!(sim.counters().servicenow.faults.outage, 3);

    // Rate limiting is off until switched on, then per user.
    let rl = control(
        &sim,
        Method::POST,
        "/servicenow/rate_limit",
        Some(json!({"limit": 2, "window_secs": 60})),
    )
    .await;
    assert_eq!(rl["limit"], 2);
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    let (s, h, v) = api.get("/api/now/table/incident").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(h["x-ratelimit-limit"], "2");
    assert!(h.get("x-ratelimit-reset").is_some() && h.get("x-ratelimit-rule").is_some());
    assert_eq!(v["error"]["message"], "Rate limit exceeded");
    assert_eq!(
        Api::analyst(&sim).get("/api/now/table/incident").await.0,
        StatusCode::OK
    );
    sim.set_servicenow_rate_limit(None);
    assert_eq!(api.get("/api/now/table/incident").await.0, StatusCode::OK);
    let c = sim.counters().servicenow;
    assert_eq!(c.requests.by_status["429"], 1);
    sim.set_servicenow_rate_limit(Some(ServiceNowRateLimit {
        limit: 0,
        window_secs: 1,
    }));
    assert_eq!(
        api.get("/api/now/table/incident").await.0,
        StatusCode::OK,
        "0 is off"
    );
    sim.shutdown().await;
}

/// A stand-in for socbridge's `/hooks/servicenow`: records each push (headers and body).
async fn hook_receiver(status: u16) -> (String, Arc<Mutex<Vec<(HeaderMap, Value)>>>) {
    let got: Arc<Mutex<Vec<(HeaderMap, Value)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hooks/servicenow",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut h = HeaderMap::new();
                    for (k, val) in &headers {
                        if let (Ok(k), Ok(val)) = (
                            reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
                            reqwest::header::HeaderValue::from_bytes(val.as_bytes()),
                        ) {
                            h.insert(k, val);
                        }
                    }
                    sink.lock().unwrap().push((h, v));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/servicenow", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

#[tokio::test]
async fn webhook_pushes_every_change_with_the_secret() {
    let (url, got) = hook_receiver(204).await;
    let sim = start_with(
        13,
        ServiceNowConfig {
            webhook_url: Some(url),
            ..ServiceNowConfig::default()
        },
    )
    .await;
    let sn = sim.endpoints().servicenow.clone().unwrap();
    let api = Api::integration(&sim);
    let inc = api
        .create(
            json!({"short_description": "w", "correlation_id": "acme:w", "work_notes": "opened"}),
        )
        .await;
    let id = inc["sys_id"].as_str().unwrap();
    Api::analyst(&sim)
        .patch(
            id,
            json!({"state": "6", "close_code": "Solution provided", "close_notes": "fixed",
                "comments": "all good"}),
        )
        .await;
    // A no-change write and a refused write push nothing.
    api.patch(id, json!({"short_description": "w"})).await;
    api.patch(id, json!({"state": "99"})).await;
    let s = &sim;
    wait_for("two pushes", Duration::from_secs(10), || async move {
        s.counters().servicenow.webhook.delivered >= 2
    })
    .await;
    let pushes = got.lock().unwrap().clone();
    assert_eq!(pushes.len(), 2);
    for (h, _) in &pushes {
        assert_eq!(h["x-socbridge-secret"].to_str().unwrap(), sn.webhook_secret);
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
    }
    let first = &pushes[0].1;
    assert_eq!(first["operation"], "insert");
    assert_eq!(first["sys_id"], id);
    assert_eq!(first["number"], inc["number"]);
    assert_eq!(first["correlation_id"], "acme:w");
    assert_eq!(first["state"], "1");
    assert_eq!(first["sys_updated_by"], "socbridge.integration");
    assert_eq!(first["work_notes"]["value"], "opened");
    assert_eq!(first["comments"], Value::Null);
    let second = &pushes[1].1;
    assert_eq!(second["operation"], "update");
    assert_eq!(second["state"], "6");
    assert_eq!(second["close_code"], "Solution provided");
    assert_eq!(second["sys_updated_by"], "soc.analyst");
    assert!(is_time(&second["sys_updated_on"]));
    assert_eq!(second["comments"]["value"], "all good");
    assert_eq!(second["comments"]["sys_created_by"], "soc.analyst");
    assert_eq!(
        second["work_notes"]["value"], "opened",
        "the newest of each field"
    );
    let w = sim.counters().servicenow.webhook;
    assert_eq!((w.queued, w.delivered, w.failed), (2, 2, 0));
    assert_eq!(w.by_status["204"], 2);

    // Retargeted through the control API with a new secret; a failing target is counted
    // after its bounded attempts.
    let (bad_url, bad) = hook_receiver(500).await;
    let set = control(
        &sim,
        Method::POST,
        "/servicenow/webhook",
        Some(json!({"url": bad_url, "secret": "s3cret"})),
    )
    .await;
    assert_eq!(set["header"], "X-Socbridge-Secret");
    api.patch(id, json!({"work_notes": "one more"})).await;
    wait_for("a failed push", Duration::from_secs(10), || async move {
        s.counters().servicenow.webhook.failed >= 1
    })
    .await;
    let tries = bad.lock().unwrap().clone();
    assert_eq!(tries.len(), 3, "three attempts, then given up");
    assert_eq!(tries[0].0["x-socbridge-secret"], "s3cret");
    let w = sim.counters().servicenow.webhook;
    assert_eq!(w.by_status["500"], 3);
    assert!(w.last_error.unwrap().contains("500"));
    // Off: nothing more is queued.
    control(&sim, Method::DELETE, "/servicenow/webhook", None).await;
    api.patch(id, json!({"work_notes": "quiet"})).await;
    assert_eq!(sim.counters().servicenow.webhook.queued, 3);
    assert!(
        sim.set_servicenow_webhook(Some(ServiceNowWebhook {
            url: "not a url".into(),
            secret: None,
            header: None,
        }))
        .is_err()
    );
    let resp = reqwest::Client::new()
        .post(format!("{}/servicenow/webhook", sim.endpoints().control))
        .json(&json!({"url": "ftp://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    sim.shutdown().await;
}

#[tokio::test]
async fn webhook_to_nowhere_is_counted_not_retried_forever() {
    // A port nobody listens on.
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/servicenow", free.local_addr().unwrap());
    drop(free);
    let sim = start_with(
        14,
        ServiceNowConfig {
            webhook_url: Some(url),
            webhook_attempts: 2,
            ..ServiceNowConfig::default()
        },
    )
    .await;
    Api::integration(&sim)
        .create(json!({"short_description": "x"}))
        .await;
    let s = &sim;
    wait_for(
        "the push to give up",
        Duration::from_secs(15),
        || async move { s.counters().servicenow.webhook.failed == 1 },
    )
    .await;
    let w = sim.counters().servicenow.webhook;
    assert_eq!((w.attempts, w.by_status["error"], w.delivered), (2, 2, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn endpoints_counters_files_and_determinism() {
    let sim = start(15).await;
    let twin = start(15).await;
    let ep = sim.endpoints();
    let sn = ep.servicenow.clone().unwrap();
    let tsn = twin.endpoints().servicenow.clone().unwrap();
    assert_ne!(sn.instance_url, ep.secure_endpoint, "its own port");
    assert_eq!(
        (&sn.integration, &sn.analyst, &sn.oauth, &sn.webhook_secret),
        (
            &tsn.integration,
            &tsn.analyst,
            &tsn.oauth,
            &tsn.webhook_secret
        ),
        "one seed, one set of credentials"
    );
    assert_ne!(sn.integration.password, sn.analyst.password);
    let a = Api::integration(&sim)
        .create(json!({"short_description": "d"}))
        .await;
    let b = Api::integration(&twin)
        .create(json!({"short_description": "d"}))
        .await;
    assert_eq!(a["sys_id"], b["sys_id"], "sys_ids follow the seed");
    twin.shutdown().await;

    let v = control(&sim, Method::GET, "/counters", None).await;
    let c = &v["servicenow"];
    for k in [
        "requests",
        "faults",
        "writes",
        "by_user",
        "tickets_by_correlation_id",
        "incidents_total",
        "journal_total",
        "tokens_issued",
        "webhook",
    ] {
        assert!(c.get(k).is_some(), "counters.servicenow.{k}");
    }
    let faults: BTreeSet<&str> = c["faults"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        faults,
        BTreeSet::from([
            "429",
            "500",
            "503",
            "slow",
            "drop",
            "truncate",
            "commit_drop",
            "outage"
        ])
    );
    assert_eq!(c["requests"]["by_status"]["201"], 1);
    let back: socbridge_sim::Counters = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, sim.counters());
    let ctl_ep: socbridge_sim::Endpoints =
        serde_json::from_value(control(&sim, Method::GET, "/endpoints", None).await).unwrap();
    assert_eq!(&ctl_ep, ep);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("socbridge.toml");
    sim.write_config(&cfg).unwrap();
    let toml = std::fs::read_to_string(&cfg).unwrap();
    let env = std::fs::read_to_string(dir.path().join("socbridge.env")).unwrap();
    assert!(
        toml.contains("# [servicenow]\n"),
        "commented out by default:\n{toml}"
    );
    assert!(toml.contains(&format!("# instance_url = \"{}\"\n", sn.instance_url)));
    assert!(toml.contains("# password_env = \"SERVICENOW_PASSWORD\"\n"));
    for secret in [
        &sn.integration.password,
        &sn.oauth.client_secret,
        &sn.webhook_secret,
    ] {
        assert!(
            !toml.contains(secret.as_str()),
            "secrets stay out of the config"
        );
    }
    assert!(
        env.lines()
            .any(|l| l == format!("SERVICENOW_PASSWORD={}", sn.integration.password))
    );
    assert!(
        env.lines()
            .any(|l| l == format!("SERVICENOW_CLIENT_SECRET={}", sn.oauth.client_secret))
    );
    assert!(
        env.lines()
            .any(|l| l == format!("SERVICENOW_WEBHOOK_SECRET={}", sn.webhook_secret))
    );
    sim.write_config_with(
        &cfg,
        &socbridge_sim::ConfigOptions {
            servicenow_section: true,
            ..Default::default()
        },
    )
    .unwrap();
    let toml = std::fs::read_to_string(&cfg).unwrap();
    assert!(toml.contains("\n[servicenow]\n"), "{toml}");
    assert!(toml.contains(&format!("username = \"{}\"\n", sn.integration.user_name)));
    let ep_path = dir.path().join("endpoints.json");
    sim.write_endpoints_file(&ep_path).unwrap();
    let back: socbridge_sim::Endpoints =
        serde_json::from_str(&std::fs::read_to_string(&ep_path).unwrap()).unwrap();
    assert_eq!(&back, ep);
    sim.shutdown().await;
}

#[tokio::test]
async fn disabled_instance_and_initial_incidents() {
    let off = start_with(
        16,
        ServiceNowConfig {
            enabled: false,
            ..ServiceNowConfig::default()
        },
    )
    .await;
    assert!(off.endpoints().servicenow.is_none());
    assert_eq!(off.counters().servicenow, Default::default());
    let resp = reqwest::get(format!("{}/servicenow/faults", off.endpoints().control))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    off.shutdown().await;

    let sim = start_with(
        17,
        ServiceNowConfig {
            initial_incidents: 5,
            ..ServiceNowConfig::default()
        },
    )
    .await;
    let api = Api::integration(&sim);
    let (_, h, v) = api.get("/api/now/table/incident").await;
    assert_eq!(h["x-total-count"], "5");
    for r in v["result"].as_array().unwrap() {
        assert_eq!(r["sys_created_by"], "admin", "not socbridge's tickets");
        assert_eq!(r["correlation_id"], "");
    }
    assert!(
        sim.counters()
            .servicenow
            .tickets_by_correlation_id
            .is_empty()
    );
    sim.shutdown().await;
}
