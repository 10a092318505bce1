//! Secrets stay secret: an API key given to `source add` appears in no file of the data dir,
//! no log line (at trace level) and no CLI output, in plain text or in its Basic-auth form.

mod common;
use base64::Engine as _;
use common::*;
use std::process::Stdio;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_secret_is_found_nowhere() {
    let sim = start_sim(1, 17, 15).await;
    let ep = sim.endpoints().clone();
    let tenant = &ep.tenants[0];
    let creds = tenant.secure_endpoint.clone().unwrap();
    let canary = creds.api_key.clone();
    let wrong_canary = "canary-wrong-key-5f2b9c".to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut transcript = String::new();

    let step = |args: Vec<String>, stdin: Option<String>| {
        let data = data.clone();
        async move {
            let mut cmd = socbridge(&data);
            cmd.args(["--log", "trace"]).args(&args);
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut pipe = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                tokio::io::AsyncWriteExt::write_all(&mut pipe, s.as_bytes())
                    .await
                    .unwrap();
            }
            drop(pipe);
            let out = tokio::time::timeout(
                std::time::Duration::from_secs(120),
                child.wait_with_output(),
            )
            .await
            .expect("finishes")
            .unwrap();
            (args, out)
        }
    };

    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let steps: Vec<(Vec<String>, Option<String>)> = vec![
        (s(&["tenant", "add", &tenant.name]), None),
        (
            s(&[
                "source",
                "add",
                "--tenant",
                &tenant.name,
                "--name",
                "secure-endpoint",
                "--kind",
                "secure_endpoint",
                "--base-url",
                &ep.secure_endpoint,
                "--client-id",
                &creds.client_id,
                "--api-key-stdin",
            ]),
            Some(format!("{canary}\n")),
        ),
        (
            s(&[
                "source",
                "add",
                "--tenant",
                &tenant.name,
                "--name",
                "wrong",
                "--kind",
                "secure_endpoint",
                "--base-url",
                &ep.secure_endpoint,
                "--client-id",
                &creds.client_id,
                "--api-key-stdin",
            ]),
            Some(format!("{wrong_canary}\n")),
        ),
        (s(&["fetch", "--tenant", &tenant.name]), None),
        (
            s(&[
                "--output",
                "json",
                "fetch",
                "--tenant",
                &tenant.name,
                "--source",
                "secure-endpoint",
            ]),
            None,
        ),
        (s(&["check"]), None),
        (s(&["source", "list"]), None),
        (s(&["--output", "json", "source", "list"]), None),
        (
            s(&["--output", "json", "tenant", "show", &tenant.name]),
            None,
        ),
        (s(&["--output", "json", "incidents", "list"]), None),
        (s(&["incidents", "get", "1"]), None),
        (s(&["--output", "json", "incidents", "get", "1"]), None),
    ];
    let mut fetched = false;
    for (args, stdin) in steps {
        let (args, out) = step(args, stdin).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if args.first().map(String::as_str) == Some("fetch") && text.contains("secure-endpoint") {
            fetched = true;
        }
        transcript.push_str(&format!("$ socbridge {}\n{text}\n", args.join(" ")));
    }
    assert!(fetched, "the fetch ran:\n{transcript}");
    assert!(
        transcript.contains("TRACE") || transcript.contains("trace"),
        "logs were at trace level"
    );

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.client_id, canary));
    let basic_wrong = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.client_id, wrong_canary));
    for needle in [&canary, &wrong_canary, &basic, &basic_wrong] {
        assert!(
            !transcript.contains(needle.as_str()),
            "`{needle}` leaked into output or logs:\n{transcript}"
        );
    }
    let files = files_under(&data);
    assert!(
        files.iter().any(|f| f.ends_with("socbridge.db")),
        "{files:?}"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for needle in [&canary, &wrong_canary, &basic, &basic_wrong] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "`{needle}` found in {}",
                f.display()
            );
        }
    }
    // The source really authenticated with the key it was given (so the canary was in play).
    let c = &sim.counters().secure_endpoint;
    assert!(
        c.tenants[&tenant.name].served_distinct > 0,
        "events were served with the canary key"
    );
    sim.shutdown().await;
}

/// The same for the secrets a config brings: the ServiceNow password, OAuth client secret and
/// webhook secret, a Symantec MSS certificate (its base64, its bytes) and passphrase, and the
/// Umbrella parent key's secret. They
/// appear in no file of the data dir, no log line at trace level and no output of the commands
/// that use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_secrets_are_found_nowhere() {
    use socbridge_sim::ConfigOptions;
    let sim = start_sim(1, 19, 10).await;
    let ep = sim.endpoints().clone();
    let tenant = ep.tenants[0].name.clone();
    let sn = ep.servicenow.clone().unwrap();
    let mss = ep.tenants[0].symantec_mss.clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("socbridge.toml");
    sim.write_config_with(
        &config,
        &ConfigOptions {
            servicenow_section: true,
            symantec_sources: true,
            umbrella_sources: true,
        },
    )
    .unwrap();
    let data = dir.path().join("data");

    let mut transcript = String::new();
    let runs: Vec<Vec<&str>> = vec![
        vec!["serve", "--until-idle"],
        vec!["check"],
        vec!["--output", "json", "check"],
        vec![
            "vendor",
            "symantec-mss",
            "list",
            "--tenant",
            &tenant,
            "--since",
            "1h",
        ],
        vec!["--output", "json", "source", "list"],
        vec!["--output", "json", "incidents", "list"],
        vec!["--output", "json", "incidents", "get", "1"],
        vec!["outbox", "list"],
    ];
    for args in runs {
        let mut cmd = socbridge(&data);
        cmd.args(["--log", "trace", "--config"])
            .arg(&config)
            .args(&args);
        let out = run(cmd).await;
        transcript.push_str(&format!(
            "$ socbridge {}\n{}{}\n",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    assert!(transcript.contains("TRACE"), "logs were at trace level");
    assert!(
        !sim.counters()
            .servicenow
            .tickets_by_correlation_id
            .is_empty()
            && sim.counters().symantec_mss.tenants[&tenant].served_distinct > 0
            && sim
                .counters()
                .umbrella
                .tokens
                .get("parent")
                .is_some_and(|t| t.issued > 0),
        "ServiceNow, Symantec MSS and Umbrella were used with these secrets:\n{transcript}"
    );

    let b64 = base64::engine::general_purpose::STANDARD;
    let p12_bytes = b64.decode(&mss.p12_base64).unwrap();
    let text_needles = [
        sn.integration.password.clone(),
        b64.encode(format!(
            "{}:{}",
            sn.integration.user_name, sn.integration.password
        )),
        sn.oauth.client_secret.clone(),
        sn.webhook_secret.clone(),
        mss.passphrase.clone(),
        ep.umbrella.as_ref().unwrap().parent_secret.clone(),
        // Any stretch of the certificate's base64 long enough to be no accident.
        mss.p12_base64[..48].to_string(),
    ];
    for needle in &text_needles {
        assert!(
            !transcript.contains(needle.as_str()),
            "`{needle}` leaked into output or logs:\n{transcript}"
        );
    }
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        for needle in &text_needles {
            assert!(
                !found(needle.as_bytes()),
                "`{needle}` found in {}",
                f.display()
            );
        }
        assert!(
            !found(&p12_bytes[p12_bytes.len() - 64..]),
            "the certificate's bytes are in {}",
            f.display()
        );
    }
    sim.shutdown().await;
}
