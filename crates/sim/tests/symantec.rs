//! The Symantec SWS emulator on the wire, as a client sees it: client-certificate TLS (and
//! its refusals), SOAP 1.1 and 1.2 answered in kind, the request variants real clients send,
//! the WSDL, upsert semantics, MaxIncidents, tenant isolation, Faults, workflow updates,
//! injected faults, the counters, and the PKCS#12 exports read by the system's `openssl`.
//! Every test starts its own emulator on free ports.

use quick_xml::events::Event;
use reqwest::StatusCode;
use socbridge_sim::{
    AddSymantecIncidents, SimConfig, SimHandle, SymantecAnalystChange, SymantecConfig,
    SymantecCounters, SymantecFaults,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const NS11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const NS12: &str = "http://www.w3.org/2003/05/soap-envelope";
const OPS: &str = "https://www.monitoredsecurity.com/";

async fn start_with(seed: u64, sy: SymantecConfig) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        seed,
        initial_events_per_tenant: 1,
        symantec: sy,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

async fn start(seed: u64) -> SimHandle {
    start_with(seed, SymantecConfig::default()).await
}

fn url(sim: &SimHandle) -> String {
    sim.endpoints().symantec_mss.clone().unwrap().url
}

fn service(sim: &SimHandle) -> String {
    format!("{}/SWS/incidents.asmx", url(sim))
}

/// A client trusting the emulator's CA, with `identity` (PEM) if any.
fn client(sim: &SimHandle, identity: Option<String>) -> reqwest::Client {
    let ca = sim.endpoints().symantec_mss.clone().unwrap().ca_pem;
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .timeout(Duration::from_secs(20));
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn tenant_client(sim: &SimHandle, tenant: &str) -> reqwest::Client {
    client(sim, sim.symantec_identity_pem(tenant))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum V {
    S11,
    S12,
}

/// An envelope around `op` with `children` (raw XML) in the default operation namespace.
fn envelope(v: V, op: &str, children: &str) -> String {
    let ns = if v == V::S11 { NS11 } else { NS12 };
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{ns}"><soap:Body><{op} xmlns="{OPS}">{children}</{op}></soap:Body></soap:Envelope>"#
    )
}

async fn post_raw(
    c: &reqwest::Client,
    sim: &SimHandle,
    v: V,
    op: &str,
    body: String,
) -> (StatusCode, String, String) {
    let mut req = c.post(service(sim));
    req = match v {
        V::S11 => req
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"{OPS}{op}\"")),
        V::S12 => req.header("Content-Type", "application/soap+xml; charset=utf-8"),
    };
    let r = req.body(body).send().await.expect("an answer");
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.text().await.unwrap())
}

async fn call(
    c: &reqwest::Client,
    sim: &SimHandle,
    v: V,
    op: &str,
    children: &str,
) -> (StatusCode, String) {
    let (s, _, b) = post_raw(c, sim, v, op, envelope(v, op, children)).await;
    (s, b)
}

/// Texts of every element named `name` (local name), in document order.
fn texts(xml: &str, name: &str) -> Vec<String> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(e) if e.local_name().as_ref() == name.as_bytes() => {
                cur = Some(String::new())
            }
            Event::Empty(e) if e.local_name().as_ref() == name.as_bytes() => {
                out.push(String::new())
            }
            Event::Text(t) => {
                if let Some(c) = cur.as_mut() {
                    c.push_str(&t.unescape().unwrap());
                }
            }
            Event::End(e) if e.local_name().as_ref() == name.as_bytes() => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

fn numbers(xml: &str) -> Vec<u64> {
    // Summaries only: IncidentNumber directly in SecurityIncidentSummary.
    texts(xml, "IncidentNumber")
        .iter()
        .map(|n| n.parse().unwrap())
        .collect()
}

fn since(d: Duration) -> String {
    (chrono::Utc::now() - chrono::Duration::from_std(d).unwrap())
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

async fn get_list(c: &reqwest::Client, sim: &SimHandle, children: &str) -> String {
    let (s, body) = call(c, sim, V::S12, "IncidentGetList", children).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body
}

/// Waits until `check` holds on the counters (deadline 10 s).
async fn wait_counters(sim: &SimHandle, what: &str, check: impl Fn(&SymantecCounters) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = sim.counters().symantec_mss;
        if check(&c) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const SUMMARY_CHILDREN: [&str; 24] = [
    "IncidentNumber",
    "TimeCreated",
    "Severity",
    "Category",
    "CountryOfOrigin",
    "DaysSeenGlobally",
    "SourceIPString",
    "Correlation",
    "HostNameList",
    "IsInternalExternal",
    "GlobalLookbackDays",
    "LatestKeyEvent",
    "CustomerSeverity",
    "CountryCode",
    "FirstSeenInLast30Days",
    "DaysSeenInLast30Days",
    "DestOrganizationName",
    "SourceOrganizationName",
    "FirstSeenGlobally",
    "CountryName",
    "UserList",
    "Classification",
    "UpdateTimestampGMT",
    "PrevalenceGlobally",
];

#[tokio::test]
async fn soap_11_and_12_answered_in_kind_with_every_summary_child() {
    let sim = start(11).await;
    let c = tenant_client(&sim, "acme");
    let children = format!(
        "<StartTimeStampGMT>{}</StartTimeStampGMT>",
        since(Duration::from_secs(3600))
    );
    let (s, ct, b11) = post_raw(
        &c,
        &sim,
        V::S11,
        "IncidentGetList",
        envelope(V::S11, "IncidentGetList", &children),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b11}");
    assert!(ct.starts_with("text/xml"), "{ct}");
    assert!(b11.contains(NS11) && !b11.contains(NS12));
    let (s, ct, b12) = post_raw(
        &c,
        &sim,
        V::S12,
        "IncidentGetList",
        envelope(V::S12, "IncidentGetList", &children),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("application/soap+xml"), "{ct}");
    assert!(b12.contains(NS12) && !b12.contains(NS11));
    assert!(b12.contains(r#"<IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult><SecurityIncidentList xmlns="">"#), "{b12}");
    assert_eq!(numbers(&b11), numbers(&b12));
    assert_eq!(
        numbers(&b12).len(),
        20,
        "all initial incidents sit in the last hour"
    );
    for child in SUMMARY_CHILDREN {
        assert_eq!(texts(&b12, child).len(), 20, "{child} in every summary");
    }
    // Both time formats across incidents.
    let created = texts(&b12, "TimeCreated");
    assert!(
        created
            .iter()
            .any(|t| t.ends_with("+00:00") && t.split('.').nth(1).unwrap().len() == 7 + 6),
        "{created:?}"
    );
    assert!(
        created
            .iter()
            .any(|t| !t.contains('+') && t.split('.').nth(1).unwrap().len() == 3),
        "{created:?}"
    );
    // Severities spread, nulls as empty elements.
    assert!(
        texts(&b12, "Severity").iter().all(|s| [
            "Emergency",
            "Critical",
            "Warning",
            "Informational"
        ]
        .contains(&s.as_str()))
    );
    assert!(texts(&b12, "CustomerSeverity").iter().all(String::is_empty));
    assert!(
        b12.contains("<CustomerSeverity/>"),
        "nulls are empty elements"
    );
    // Ascending by last change.
    let updated: Vec<chrono::DateTime<chrono::Utc>> = texts(&b12, "UpdateTimestampGMT")
        .iter()
        .map(|t| parse_time(t))
        .collect();
    assert!(updated.windows(2).all(|w| w[0] <= w[1]), "{updated:?}");
    let c = sim.counters().symantec_mss;
    assert_eq!(c.by_operation["IncidentGetList"], 2);
    assert_eq!(c.tenants["acme"].served_distinct, 20);
    assert_eq!(c.tenants["acme"].incidents_total, 20);
    assert_eq!(c.tenants["globex"].served_distinct, 0);
}

fn parse_time(t: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&chrono::Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc())
        })
        .unwrap()
}

#[tokio::test]
async fn no_certificate_and_test_api_certificate_are_refused() {
    let sim = start(12).await;
    let none = client(&sim, None);
    let r = none.get(format!("{}?WSDL", service(&sim))).send().await;
    assert!(r.is_err(), "no certificate must be refused: {r:?}");
    wait_counters(&sim, "a refusal without certificate", |c| {
        c.handshakes_refused.no_certificate >= 1
    })
    .await;

    let test = client(&sim, sim.symantec_test_api_identity_pem("acme"));
    let r = test.get(format!("{}?WSDL", service(&sim))).send().await;
    assert!(r.is_err(), "a test-API certificate must be refused: {r:?}");
    wait_counters(&sim, "a refusal of the test CA", |c| {
        c.handshakes_refused.unknown_ca >= 1
    })
    .await;

    // The production identity works on the same server.
    let ok = tenant_client(&sim, "acme")
        .get(format!("{}?wsdl", service(&sim)))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let c = sim.counters().symantec_mss;
    assert_eq!(c.requests.total, 1, "refused handshakes are no requests");
}

#[tokio::test]
async fn wsdl_has_both_bindings_and_points_back_where_it_was_asked() {
    let sim = start(13).await;
    let c = tenant_client(&sim, "acme");
    for q in ["WSDL", "wsdl", "Wsdl"] {
        let r = c
            .get(format!("{}?{q}", service(&sim)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.unwrap();
        let mut bindings = Vec::new();
        let mut actions = Vec::new();
        let mut locations = Vec::new();
        let mut reader = quick_xml::Reader::from_str(&text);
        loop {
            match reader.read_event().expect("the WSDL parses") {
                Event::Start(e) | Event::Empty(e) => {
                    let local = String::from_utf8(e.local_name().as_ref().to_vec()).unwrap();
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let v = a.unescape_value().unwrap().to_string();
                        match (local.as_str(), a.key.as_ref()) {
                            ("binding", b"name") => bindings.push(v),
                            ("operation", b"soapAction") => actions.push(v),
                            ("address", b"location") => locations.push(v),
                            _ => {}
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(bindings, ["IncidentsSoap", "IncidentsSoap12"]);
        for op in [
            "IncidentGetList",
            "IncidentWorkflowQuery",
            "IncidentQuery",
            "UpdateIncidentWorkflow",
        ] {
            assert_eq!(
                actions
                    .iter()
                    .filter(|a| **a == format!("{OPS}{op}"))
                    .count(),
                2,
                "{op}"
            );
        }
        assert_eq!(locations, [service(&sim), service(&sim)]);
        assert!(text.contains(r#"name="AssignedToOrganiztion""#));
        assert!(text.contains(r#"<s:complexType mixed="true">"#));
        assert!(text.contains(r#"name="UpdateIncidentWorkflowResult" type="s:boolean""#));
    }
    // Asked through `localhost` (the certificate's DNS name), it points back there.
    let port = url(&sim).rsplit(':').next().unwrap().to_string();
    let r = c
        .get(format!("https://localhost:{port}/sws/Incidents.asmx?wsdl"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains(&format!(
        "location=\"https://localhost:{port}/sws/Incidents.asmx\""
    )));
}

#[tokio::test]
async fn request_variants_real_clients_send_are_accepted() {
    let sim = start(14).await;
    let c = tenant_client(&sim, "acme");
    let t = since(Duration::from_secs(3600));
    let minute = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%MZ")
        .to_string();
    let seven = (chrono::Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S.0000000Z")
        .to_string();
    let bodies = [
        // Omitted optional elements, default namespace, XML declaration.
        (
            V::S12,
            envelope(
                V::S12,
                "IncidentGetList",
                &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>"),
            ),
        ),
        // Every element present, empties, `<Severity >`, a `mon:` prefix, no declaration.
        (
            V::S11,
            format!(
                r#"<soapenv:Envelope xmlns:soapenv="{NS11}" xmlns:mon="{OPS}"><soapenv:Header/><soapenv:Body><mon:IncidentGetList><mon:StartTimeStampGMT>{t}</mon:StartTimeStampGMT><mon:SourceIP></mon:SourceIP><mon:Severity ></mon:Severity ><mon:MaxIncidents/></mon:IncidentGetList></soapenv:Body></soapenv:Envelope>"#
            ),
        ),
        // No namespace on the operation at all; minutes-only timestamp.
        (
            V::S12,
            format!(
                r#"<Envelope xmlns="{NS12}"><Body><IncidentGetList xmlns=""><StartTimeStampGMT>{minute}</StartTimeStampGMT></IncidentGetList></Body></Envelope>"#
            ),
        ),
        // Seven fractional digits.
        (
            V::S11,
            envelope(
                V::S11,
                "IncidentGetList",
                &format!(
                    "<StartTimeStampGMT>{seven}</StartTimeStampGMT><Severity>Emergency,Critical,Warning,Informational</Severity><MaxIncidents>500</MaxIncidents>"
                ),
            ),
        ),
    ];
    for (v, body) in bodies {
        let (s, _, text) = post_raw(&c, &sim, v, "IncidentGetList", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{body}\n{text}");
        assert_eq!(numbers(&text).len(), 20, "{body}");
    }
    // A doubly escaped comment is accepted and stored as unescaped once.
    let n = numbers(
        &get_list(
            &c,
            &sim,
            &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>"),
        )
        .await,
    )[0];
    let (s, b) = call(&c, &sim, V::S11, "UpdateIncidentWorkflow", &format!("<IncidentNumber>{n}</IncidentNumber><Status></Status><Resolution/><Reference></Reference><Severity/><AssignedToOrganiztion/><AssignedToPerson/><Comments>Fish &amp;amp; chips &lt;ok&gt;</Comments>")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(texts(&b, "UpdateIncidentWorkflowResult"), ["true"]);
    let (_, b) = call(
        &c,
        &sim,
        V::S12,
        "IncidentWorkflowQuery",
        &format!("<IncidentNumber>{n}</IncidentNumber>"),
    )
    .await;
    assert!(
        texts(&b, "Comment").contains(&"Fish &amp; chips <ok>".to_string()),
        "{b}"
    );
}

#[tokio::test]
async fn analyst_and_workflow_updates_bring_an_incident_back() {
    let sim = start(15).await;
    let c = tenant_client(&sim, "acme");
    let now = since(Duration::ZERO);
    let b = get_list(
        &c,
        &sim,
        &format!("<StartTimeStampGMT>{now}</StartTimeStampGMT>"),
    )
    .await;
    assert!(numbers(&b).is_empty(), "{b}");
    assert!(
        b.contains(r#"<SecurityIncidentList xmlns="" />"#)
            || b.contains(r#"<SecurityIncidentList xmlns=""/>"#),
        "{b}"
    );

    let all = sim.symantec_incidents("acme").unwrap();
    let n = all[3]["number"].as_u64().unwrap();
    sim.symantec_analyst_change(SymantecAnalystChange {
        tenant: "acme".into(),
        incident_number: n,
        status: Some("Escalated".into()),
        comment: Some("Customer called.".into()),
        ..Default::default()
    })
    .unwrap();
    let b = get_list(
        &c,
        &sim,
        &format!("<StartTimeStampGMT>{now}</StartTimeStampGMT>"),
    )
    .await;
    assert_eq!(numbers(&b), [n]);
    let (_, d) = call(
        &c,
        &sim,
        V::S12,
        "IncidentWorkflowQuery",
        &format!("<IncidentNumber>{n}</IncidentNumber>"),
    )
    .await;
    assert_eq!(texts(&d, "Status"), ["Escalated"]);

    // A workflow update from the client moves it again.
    let after = since(Duration::ZERO);
    let (s, r) = call(&c, &sim, V::S11, "UpdateIncidentWorkflow", &format!("<IncidentNumber>{n}</IncidentNumber><Status>Closed</Status><Resolution>False Positive</Resolution><Reference>INC0010001</Reference><Comments>Closed by socbridge</Comments>")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(texts(&r, "UpdateIncidentWorkflowResult"), ["true"]);
    let b = get_list(
        &c,
        &sim,
        &format!("<StartTimeStampGMT>{after}</StartTimeStampGMT>"),
    )
    .await;
    assert_eq!(numbers(&b), [n]);
    let (_, d) = call(
        &c,
        &sim,
        V::S12,
        "IncidentWorkflowQuery",
        &format!("<IncidentNumber>{n}</IncidentNumber>"),
    )
    .await;
    assert_eq!(texts(&d, "Status"), ["Closed"]);
    assert_eq!(texts(&d, "Resolution"), ["False Positive"]);
    assert_eq!(texts(&d, "RelatedTickets"), ["INC0010001"]);
    assert!(texts(&d, "CommentedBy").contains(&"acme-sws-api".to_string()));
    // An unknown value answers false and changes nothing.
    let (_, r) = call(&c, &sim, V::S12, "UpdateIncidentWorkflow", &format!("<IncidentNumber>{n}</IncidentNumber><Status>Vaporised</Status><Reference>INC0010002</Reference>")).await;
    assert_eq!(texts(&r, "UpdateIncidentWorkflowResult"), ["false"]);
    let t = &sim.counters().symantec_mss.tenants["acme"];
    assert_eq!(t.workflow_updates, 1);
    assert_eq!(t.workflow_refused, 1);
    assert_eq!(t.updates_total, 2);
    assert_eq!(t.workflow_by_incident[&n.to_string()].updates, 1);
    assert_eq!(
        t.workflow_by_incident[&n.to_string()]
            .last_reference
            .as_deref(),
        Some("INC0010001")
    );
}

#[tokio::test]
async fn max_incidents_truncates_and_keeps_ascending_order() {
    let sim = start(16).await;
    let c = tenant_client(&sim, "acme");
    let t = since(Duration::from_secs(3600));
    let all = numbers(
        &get_list(
            &c,
            &sim,
            &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>"),
        )
        .await,
    );
    let five = get_list(
        &c,
        &sim,
        &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT><MaxIncidents>5</MaxIncidents>"),
    )
    .await;
    assert_eq!(numbers(&five), all[..5]);
    // The next window starts at the last change served: the rest follow in order.
    let last = texts(&five, "UpdateTimestampGMT").pop().unwrap();
    let rest = numbers(
        &get_list(
            &c,
            &sim,
            &format!(
                "<StartTimeStampGMT>{}</StartTimeStampGMT>",
                parse_time(&last).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            ),
        )
        .await,
    );
    assert_eq!(rest[0], all[4], "inclusive: the last one comes back");
    assert_eq!(rest[1..], all[5..]);
    // Severity and SourceIP filters.
    let crit = get_list(
        &c,
        &sim,
        &format!(
            "<StartTimeStampGMT>{t}</StartTimeStampGMT><Severity>Emergency, critical</Severity>"
        ),
    )
    .await;
    assert!(
        texts(&crit, "Severity")
            .iter()
            .all(|s| s == "Emergency" || s == "Critical")
    );
    let ip = texts(&crit, "SourceIPString")
        .first()
        .cloned()
        .unwrap_or_default();
    if let Some(first_ip) = ip.split(',').next().filter(|s| !s.is_empty()) {
        let by_ip = get_list(
            &c,
            &sim,
            &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT><SourceIP>{first_ip}</SourceIP>"),
        )
        .await;
        assert!(!numbers(&by_ip).is_empty());
        assert!(
            texts(&by_ip, "SourceIPString")
                .iter()
                .all(|s| s.split(',').any(|a| a == first_ip))
        );
    }
}

#[tokio::test]
async fn tenants_see_only_their_own_incidents() {
    let sim = start(17).await;
    let acme = tenant_client(&sim, "acme");
    let globex = tenant_client(&sim, "globex");
    let t = since(Duration::from_secs(3600));
    let a = numbers(
        &get_list(
            &acme,
            &sim,
            &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>"),
        )
        .await,
    );
    let g = numbers(
        &get_list(
            &globex,
            &sim,
            &format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>"),
        )
        .await,
    );
    assert!(a.iter().all(|n| !g.contains(n)));
    for op in [
        "IncidentQuery",
        "IncidentWorkflowQuery",
        "UpdateIncidentWorkflow",
    ] {
        let (s, b) = call(
            &acme,
            &sim,
            V::S11,
            op,
            &format!(
                "<IncidentNumber>{}</IncidentNumber><Status>Closed</Status>",
                g[0]
            ),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{op}: {b}");
        assert!(b.contains("was not found"), "{b}");
        assert!(
            !b.contains("SecurityIncident"),
            "never another tenant's data"
        );
    }
    assert_eq!(
        sim.counters().symantec_mss.tenants["globex"].workflow_updates,
        0
    );
    // Its own incident: the full shape, one-member lists still lists.
    let (s, b) = call(
        &acme,
        &sim,
        V::S12,
        "IncidentQuery",
        &format!("<IncidentNumber>{}</IncidentNumber>", a[0]),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b.contains(r#"<IncidentQueryResult><SecurityIncident xmlns="">"#),
        "{b}"
    );
    assert!(
        !b.contains("WorkFlowDetail"),
        "IncidentQuery has no workflow detail"
    );
    assert_eq!(texts(&b, "SignatureList").len(), 1);
    assert!(!texts(&b, "SignatureName").is_empty());
    assert_eq!(
        texts(&b, "SourceHostDetailList").len(),
        texts(&b, "Signature").len()
    );
    assert_eq!(texts(&b, "OrganizationName").len(), 2);
    let (_, w) = call(
        &acme,
        &sim,
        V::S12,
        "IncidentWorkflowQuery",
        &format!("<IncidentNumber>{}</IncidentNumber>", a[0]),
    )
    .await;
    assert_eq!(texts(&w, "WorkFlowDetail").len(), 1);
    assert_eq!(texts(&w, "IsKey")[0], "true");
}

#[tokio::test]
async fn faults_in_both_versions_and_wrong_content_type() {
    let sim = start(18).await;
    let c = tenant_client(&sim, "acme");
    for v in [V::S11, V::S12] {
        for (op, children, needle) in [
            (
                "IncidentGetDetails",
                "<IncidentNumber>1</IncidentNumber>".to_string(),
                "did not recognize",
            ),
            (
                "IncidentGetList",
                "<StartTimeStampGMT>yesterday</StartTimeStampGMT>".to_string(),
                "not a valid AllXsd value",
            ),
            (
                "IncidentGetList",
                String::new(),
                "StartTimeStampGMT is required",
            ),
            (
                "IncidentGetList",
                format!(
                    "<StartTimeStampGMT>{}</StartTimeStampGMT><Severity>Severe</Severity>",
                    since(Duration::ZERO)
                ),
                "Severity 'Severe'",
            ),
            (
                "IncidentWorkflowQuery",
                "<IncidentNumber>1</IncidentNumber>".to_string(),
                "Incident 1 was not found",
            ),
        ] {
            let (s, b) = call(&c, &sim, v, op, &children).await;
            assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{op}: {b}");
            match v {
                V::S11 => {
                    assert_eq!(texts(&b, "faultcode").len(), 1, "{b}");
                    assert!(texts(&b, "faultstring")[0].contains(needle), "{b}");
                }
                V::S12 => {
                    assert!(texts(&b, "Value")[0].starts_with("soap:"), "{b}");
                    assert!(texts(&b, "Text")[0].contains(needle), "{b}");
                }
            }
        }
        let (s, _, b) = post_raw(
            &c,
            &sim,
            v,
            "IncidentGetList",
            "<soap:Envelope><oops".into(),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
    }
    // The 1.1 content type with a 1.2 envelope: VersionMismatch.
    let (s, _, b) = post_raw(
        &c,
        &sim,
        V::S11,
        "IncidentGetList",
        envelope(V::S12, "IncidentGetList", ""),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(texts(&b, "faultcode"), ["soap:VersionMismatch"]);
    // A SOAPAction naming another operation.
    let r = c
        .post(service(&sim))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", format!("\"{OPS}IncidentQuery\""))
        .body(envelope(V::S11, "IncidentGetList", ""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(r.text().await.unwrap().contains("SOAPAction"));
    // Not SOAP at all.
    let r = c
        .post(service(&sim))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let counters = sim.counters().symantec_mss;
    assert!(counters.requests.by_status["500"] >= 10);
    assert!(counters.by_operation["unknown"] >= 2);
    assert_eq!(counters.requests.by_status["415"], 1);
}

#[tokio::test]
async fn injected_faults_and_commit_then_drop() {
    let sim = start(19).await;
    let c = tenant_client(&sim, "acme");
    let t = since(Duration::from_secs(3600));
    let list = format!("<StartTimeStampGMT>{t}</StartTimeStampGMT>");
    sim.set_symantec_faults(SymantecFaults {
        rate_500: 1.0,
        ..Default::default()
    });
    let (s, b) = call(&c, &sim, V::S12, "IncidentGetList", &list).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(texts(&b, "Value"), ["soap:Receiver"]);
    sim.set_symantec_faults(SymantecFaults {
        rate_503: 1.0,
        ..Default::default()
    });
    let (s, _) = call(&c, &sim, V::S12, "IncidentGetList", &list).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    sim.set_symantec_faults(SymantecFaults {
        rate_drop: 1.0,
        ..Default::default()
    });
    let r = c
        .post(service(&sim))
        .header("Content-Type", "application/soap+xml")
        .body(envelope(V::S12, "IncidentGetList", &list))
        .send()
        .await;
    let whole = match r {
        Ok(r) => r.text().await.is_ok(),
        Err(_) => false,
    };
    assert!(!whole, "a dropped answer never arrives whole");
    assert_eq!(
        sim.counters().symantec_mss.tenants["acme"].served_distinct,
        0,
        "nothing served whole yet"
    );

    // Commit-then-drop: applied, no answer.
    let n = sim.symantec_incidents("acme").unwrap()[0]["number"]
        .as_u64()
        .unwrap();
    sim.set_symantec_faults(SymantecFaults {
        rate_commit_drop: 1.0,
        ..Default::default()
    });
    let r = c.post(service(&sim)).header("Content-Type", "application/soap+xml")
        .body(envelope(V::S12, "UpdateIncidentWorkflow", &format!("<IncidentNumber>{n}</IncidentNumber><Status>Closed</Status><Reference>CHG-7</Reference>"))).send().await;
    assert!(r.is_err(), "no answer after commit: {r:?}");
    // Reads are not dropped by commit-drop.
    let (s, _) = call(&c, &sim, V::S12, "IncidentGetList", &list).await;
    assert_eq!(s, StatusCode::OK);
    sim.set_symantec_faults(SymantecFaults::default());
    let dump = sim.symantec_incidents("acme").unwrap();
    let inc = dump
        .iter()
        .find(|i| i["number"].as_u64() == Some(n))
        .unwrap();
    assert_eq!(inc["status"], "Closed");
    let counters = sim.counters().symantec_mss;
    assert_eq!(counters.faults.commit_drop, 1);
    assert_eq!(counters.faults.status_500, 1);
    assert_eq!(counters.faults.status_503, 1);
    assert_eq!(counters.faults.drop, 1);
    let w = &counters.tenants["acme"].workflow_by_incident[&n.to_string()];
    assert_eq!((w.updates, w.last_reference.as_deref()), (1, Some("CHG-7")));
    assert_eq!(counters.tenants["acme"].served_distinct, 20);
}

#[tokio::test]
async fn control_api_adds_changes_and_dumps() {
    let sim = start(20).await;
    let before = since(Duration::ZERO);
    let http = reqwest::Client::new();
    let control = sim.endpoints().control.clone();
    let r: serde_json::Value = http
        .post(format!("{control}/symantec_mss/incidents"))
        .json(&serde_json::json!({"tenant": "globex", "count": 3, "severity": "Emergency"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let added: Vec<u64> = r["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    assert_eq!(added.len(), 3);
    let r = http.post(format!("{control}/symantec_mss/analyst"))
        .json(&serde_json::json!({"tenant": "globex", "incident_number": added[0], "resolution": "Resolved", "comment": "done"}))
        .send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{control}/symantec_mss/analyst"))
        .json(&serde_json::json!({"tenant": "acme", "incident_number": added[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not acme's incident");
    let dump: Vec<serde_json::Value> = http
        .get(format!("{control}/symantec_mss/incidents?tenant=globex"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump.len(), 23);
    let first = dump
        .iter()
        .find(|i| i["number"].as_u64() == Some(added[0]))
        .unwrap();
    assert_eq!(first["severity"], "Emergency");
    assert_eq!(first["resolution"], "Resolved");
    let r = http
        .post(format!("{control}/symantec_mss/faults"))
        .json(&serde_json::json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let counters: serde_json::Value = http
        .get(format!("{control}/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["symantec_mss"]["tenants"]["globex"]["incidents_total"],
        23
    );
    assert_eq!(
        counters["symantec_mss"]["tenants"]["globex"]["updates_total"],
        1
    );
    // The new ones come first for a window starting now-ish, in ascending order.
    let c = tenant_client(&sim, "globex");
    let b = get_list(
        &c,
        &sim,
        &format!("<StartTimeStampGMT>{before}</StartTimeStampGMT>"),
    )
    .await;
    assert_eq!(numbers(&b), [added[1], added[2], added[0]]);
}

#[tokio::test]
async fn same_seed_same_incidents_and_disabled_means_absent() {
    let a = start(21).await;
    let b = start(21).await;
    let strip = |v: Vec<serde_json::Value>| -> Vec<(u64, String, String, String)> {
        v.iter()
            .map(|i| {
                (
                    i["number"].as_u64().unwrap(),
                    i["classification"].to_string(),
                    i["severity"].to_string(),
                    i["source_ips"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        strip(a.symantec_incidents("acme").unwrap()),
        strip(b.symantec_incidents("acme").unwrap())
    );
    let pa = &a.endpoints().tenants[0]
        .symantec_mss
        .as_ref()
        .unwrap()
        .passphrase;
    let pb = &b.endpoints().tenants[0]
        .symantec_mss
        .as_ref()
        .unwrap()
        .passphrase;
    assert_eq!(pa, pb);
    let json = serde_json::to_value(a.endpoints()).unwrap();
    assert!(
        json["symantec_mss"]["url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(json["tenants"][0]["symantec_mss"]["p12_legacy_base64"].is_string());
    let off = start_with(
        21,
        SymantecConfig {
            enabled: false,
            ..Default::default()
        },
    )
    .await;
    let json = serde_json::to_value(off.endpoints()).unwrap();
    assert!(json.get("symantec_mss").is_none());
    assert!(json["tenants"][0].get("symantec_mss").is_none());
    assert_eq!(
        off.symantec_incidents("acme").unwrap_err(),
        socbridge_sim::SymantecError::Disabled
    );
    let _ = off.add_symantec_incidents(AddSymantecIncidents {
        tenant: "acme".into(),
        count: 1,
        severity: None,
    });
}

/// Runs `openssl` with `args`; `None` when it is not installed.
fn openssl(args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new("openssl").args(args).output() {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run openssl: {e}"),
    }
}

#[tokio::test]
async fn both_p12_encodings_are_read_by_openssl_and_work() {
    use base64::Engine as _;
    let sim = start(22).await;
    let creds = sim.endpoints().tenants[0].symantec_mss.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let decode = |b: &str| base64::engine::general_purpose::STANDARD.decode(b).unwrap();
    let files: BTreeMap<&str, Vec<u8>> = [
        ("modern", decode(&creds.p12_base64)),
        ("legacy", decode(&creds.p12_legacy_base64)),
        ("test", decode(&creds.test_api_p12_base64)),
    ]
    .into_iter()
    .collect();
    let pass = format!("pass:{}", creds.passphrase);
    let Some(v) = openssl(&["version"]) else {
        eprintln!("SKIPPED: openssl is not installed; the .p12 exports were not checked");
        return;
    };
    assert!(v.status.success());
    let mut pems = BTreeMap::new();
    for (name, bytes) in &files {
        let path = dir.path().join(format!("{name}.p12"));
        std::fs::write(&path, bytes).unwrap();
        let p = path.to_str().unwrap();
        let mut args = vec!["pkcs12", "-in", p, "-passin", &pass, "-nodes"];
        if *name == "legacy" {
            args.push("-legacy");
        }
        let out = openssl(&args).unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8(out.stdout).unwrap();
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{name}: {pem}");
        assert_eq!(
            pem.matches("-----BEGIN CERTIFICATE-----").count(),
            2,
            "leaf and CA"
        );
        let mut info = vec!["pkcs12", "-in", p, "-passin", &pass, "-info", "-noout"];
        if *name == "legacy" {
            info.push("-legacy");
        }
        let out = openssl(&info).unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if *name == "legacy" {
            assert!(text.contains("MAC: sha1"), "{text}");
            assert!(
                text.contains("PKCS7 Encrypted data: pbeWithSHA1And40BitRC2-CBC"),
                "{text}"
            );
            assert!(
                text.contains("Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC"),
                "{text}"
            );
        } else {
            assert!(text.contains("MAC: sha256"), "{text}");
            assert!(
                text.contains("PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC"),
                "{text}"
            );
            assert!(
                text.contains("Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"),
                "{text}"
            );
            assert!(text.contains("hmacWithSHA256"), "{text}");
        }
        // A wrong passphrase is refused.
        let out = openssl(&[
            "pkcs12",
            "-in",
            p,
            "-passin",
            "pass:wrong",
            "-nodes",
            "-legacy",
        ])
        .unwrap();
        assert!(
            !out.status.success(),
            "{name} opened with a wrong passphrase"
        );
        pems.insert(*name, pem);
    }
    // What openssl extracted works as a TLS identity: production yes, test API no.
    for name in ["modern", "legacy"] {
        let c = client(&sim, Some(pems[name].clone()));
        let r = c
            .get(format!("{}?WSDL", service(&sim)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    let c = client(&sim, Some(pems["test"].clone()));
    assert!(
        c.get(format!("{}?WSDL", service(&sim)))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn write_config_writes_the_ca_and_the_commented_source() {
    let sim = start(23).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("socbridge.toml");
    sim.write_config(&path).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("sim-ca.pem")).unwrap();
    assert_eq!(ca, sim.endpoints().symantec_mss.clone().unwrap().ca_pem);
    let toml = std::fs::read_to_string(&path).unwrap();
    assert!(
        toml.contains(&format!("# base_url = \"{}\"\n", url(&sim))),
        "{toml}"
    );
    assert!(toml.contains("# p12_env = \"GLOBEX_SYMANTEC_MSS_P12\"\n"));
    let env = std::fs::read_to_string(dir.path().join("socbridge.env")).unwrap();
    let creds = sim.endpoints().tenants[1].symantec_mss.clone().unwrap();
    assert!(env.contains(&format!("GLOBEX_SYMANTEC_MSS_P12={}\n", creds.p12_base64)));
    assert!(env.contains(&format!(
        "GLOBEX_SYMANTEC_MSS_P12_PASSPHRASE={}\n",
        creds.passphrase
    )));
}
