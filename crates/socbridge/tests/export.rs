//! `socbridge export --format ocsf` over what the real pipeline stored from the emulators:
//! every line validates against the OCSF 1.8.0 JSON Schemas (`shared/ocsf/`), each incident
//! is followed by its findings, and bad input exits 2 naming what is wrong.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn validator(file: &str) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/ocsf")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("schema {} unreadable: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_served_store_validates_against_the_ocsf_schemas() {
    let sim = start_sim(2, 23, 40).await;
    let dir = tempfile::tempdir().unwrap();
    // Every vendor, and ServiceNow so incidents carry tickets.
    let config = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &config,
        &socbridge_sim::ConfigOptions {
            servicenow_section: true,
            symantec_sources: true,
            umbrella_sources: true,
        },
    )
    .expect("config written");
    let data = dir.path().join("data");

    let mut cmd = socbridge(&data);
    cmd.arg("--config")
        .arg(&config)
        .args(["--output", "json", "serve", "--until-idle"]);
    let served = run(cmd).await;
    assert!(served.status.success(), "{}", describe(&served));

    let out_file = dir.path().join("export.ndjson");
    let mut cmd = socbridge(&data);
    cmd.args(["export", "--format", "ocsf", "--out"])
        .arg(&out_file);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).is_empty(), "with --out nothing goes to stdout");
    assert!(!dir.path().join("export.ndjson.partial").exists());

    let detection = validator("detection_finding-1.8.0.schema.json");
    let incident = validator("incident_finding-1.8.0.schema.json");
    let text = std::fs::read_to_string(&out_file).expect("the export file");
    let mut per_class: BTreeMap<i64, usize> = BTreeMap::new();
    let mut per_vendor: BTreeMap<String, usize> = BTreeMap::new();
    let mut expected_findings = 0;
    let mut current_incident: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let doc: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", n + 1));
        let class = doc["class_uid"].as_i64().expect("class_uid");
        let errs = match class {
            2005 => errors(&incident, &doc),
            2004 => errors(&detection, &doc),
            other => panic!("line {}: unexpected class {other}", n + 1),
        };
        assert!(
            errs.is_empty(),
            "line {} does not validate:\n{}\n{line}",
            n + 1,
            errs.join("\n")
        );
        *per_class.entry(class).or_default() += 1;
        let correlation = doc["metadata"]["correlation_uid"]
            .as_str()
            .expect("correlation_uid")
            .to_string();
        if class == 2005 {
            expected_findings += doc["finding_info_list"].as_array().expect("list").len();
            current_incident = Some(correlation);
        } else {
            assert_eq!(
                current_incident.as_deref(),
                Some(correlation.as_str()),
                "line {}: a finding follows its incident",
                n + 1
            );
            assert!(doc["raw_data"].as_str().is_some_and(|r| !r.is_empty()));
            let vendor = doc["finding_info"]["product"]["uid"]
                .as_str()
                .expect("product uid")
                .to_string();
            *per_vendor.entry(vendor).or_default() += 1;
        }
    }
    let incidents = per_class.get(&2005).copied().unwrap_or(0);
    let findings = per_class.get(&2004).copied().unwrap_or(0);
    assert!(incidents > 0, "the export holds incidents");
    assert_eq!(
        findings, expected_findings,
        "every finding of every incident"
    );
    for vendor in ["secure_endpoint", "umbrella", "symantec_mss"] {
        assert!(
            per_vendor.get(vendor).copied().unwrap_or(0) > 0,
            "{vendor} findings exported: {per_vendor:?}"
        );
    }
    assert!(
        text.lines().any(|l| l.contains("\"tickets\"")),
        "incidents with their ServiceNow tickets"
    );
    eprintln!("validated {incidents} incidents, findings per vendor {per_vendor:?}");

    // One tenant only, to stdout, the same documents for it.
    let tenant = sim
        .counters()
        .secure_endpoint
        .tenants
        .keys()
        .next()
        .cloned();
    let tenant = tenant.expect("a tenant");
    let mut cmd = socbridge(&data);
    cmd.args([
        "export", "--format", "ocsf", "--since", "3650d", "--tenant", &tenant,
    ]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert!(!lines.is_empty());
    assert!(lines.len() < text.lines().count());
    assert!(
        lines
            .iter()
            .all(|d| d["metadata"]["tenant_uid"] == tenant.as_str())
    );

    // The API's `?format=ocsf` answers the export's documents: the Incident Finding, and the
    // Detection Findings as NDJSON, line for line.
    let mut exported: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    let mut last = String::new();
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).unwrap();
        if doc["class_uid"] == 2005 {
            last = doc["metadata"]["uid"].as_str().unwrap().to_string();
            exported.insert(last.clone(), (doc, Vec::new()));
        } else {
            exported.get_mut(&last).unwrap().1.push(doc);
        }
    }
    let mut cmd = socbridge(&data);
    cmd.args(["token", "create", "--role", "admin"]);
    let out = run(cmd).await;
    assert!(out.status.success(), "{}", describe(&out));
    let token = stdout(&out).trim().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let mut cmd = socbridge(&data);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("serve starts");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(std::time::Instant::now() < deadline, "serve never ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (id, (incident_doc, finding_docs)) in exported.iter().take(10) {
        let res = http
            .get(format!("{base}/incidents/{id}?format=ocsf"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let doc: Value = res.json().await.unwrap();
        assert_eq!(&doc, incident_doc, "incident {id}");
        let res = http
            .get(format!("{base}/incidents/{id}/findings?format=ocsf"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let body = res.text().await.unwrap();
        let docs: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
            .collect();
        assert_eq!(&docs, finding_docs, "findings of incident {id}");
    }
    let (id, _) = exported.iter().next().unwrap();
    let res = http
        .get(format!("{base}/incidents/{id}?format=xml"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let problem: Value = res.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("format"),
        "{problem}"
    );
    assert!(stop_with(&mut child, "TERM").await.success());
}

#[tokio::test]
async fn bad_input_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, named) in [
        (vec!["export", "--format", "csv"], "csv"),
        (vec!["export", "--since", "yesterday"], "yesterday"),
        (vec!["export", "--tenant", "nobody"], "nobody"),
    ] {
        let mut cmd = socbridge(&data);
        cmd.args(&args);
        let out = run(cmd).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", describe(&out));
        assert!(stdout(&out).is_empty());
    }
}
