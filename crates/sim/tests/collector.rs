//! The SIEM collector on the wire: what it refuses (token, content type, bad lines), what it
//! counts (distinct events, replays, repeated request ids), its faults, and a stop and restart
//! on the same address with the counters kept.

use socbridge_sim::{CollectorConfig, CollectorFaults, CollectorHandle};

const TOKEN: &str = "wire-test-token";

async fn start(faults: CollectorFaults) -> CollectorHandle {
    socbridge_sim::collector::start(CollectorConfig {
        token: TOKEN.into(),
        faults,
        ..CollectorConfig::default()
    })
    .await
    .expect("the collector starts")
}

fn line(class: i64, uid: &str, time: i64) -> String {
    format!(
        "{{\"class_uid\":{class},\"activity_id\":1,\"time\":{time},\"metadata\":{{\"uid\":\"{uid}\"}}}}\n"
    )
}

async fn post(
    col: &CollectorHandle,
    token: Option<&str>,
    content_type: &str,
    request_id: &str,
    body: String,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut r = reqwest::Client::new()
        .post(col.url())
        .header("Content-Type", content_type)
        .header("X-Request-Id", request_id)
        .body(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await
}

#[tokio::test]
async fn refuses_what_a_collector_refuses_and_keeps_nothing_of_it() {
    let col = start(CollectorFaults::default()).await;
    let ndjson = "application/x-ndjson";
    let r = post(&col, None, ndjson, "a", line(2004, "1", 1))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = post(&col, Some("wrong"), ndjson, "a", line(2004, "1", 1))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(
        &col,
        Some(TOKEN),
        "application/json",
        "a",
        line(2004, "1", 1),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 415);
    let body = format!("{}{{\"class_uid\":2005}}\n", line(2004, "1", 1));
    let r = post(&col, Some(TOKEN), ndjson, "a", body).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("line 2") && text.contains("metadata.uid"),
        "{text}"
    );
    let c = col.counters();
    assert_eq!((c.batches, c.lines_received, c.refused_batches), (0, 0, 1));
    assert_eq!(c.requests["401"], 2);
}

#[tokio::test]
async fn counts_distinct_events_replays_and_repeated_request_ids() {
    let col = start(CollectorFaults::default()).await;
    let ct = "application/x-ndjson; charset=utf-8";
    let batch = format!("{}{}", line(2004, "1", 10), line(2005, "7", 10));
    for _ in 0..2 {
        let r = post(&col, Some(TOKEN), ct, "socbridge-s-1-1", batch.clone())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["accepted"], 2);
    }
    // The incident changed (new time): a new event.
    post(
        &col,
        Some(TOKEN),
        ct,
        "socbridge-s-2-2",
        line(2005, "7", 20),
    )
    .await
    .unwrap();
    let c = col.counters();
    assert_eq!(
        (
            c.batches,
            c.lines_received,
            c.distinct_events,
            c.replays,
            c.request_ids_repeated
        ),
        (3, 5, 3, 2, 1)
    );
    assert_eq!(c.by_class["2005"].distinct, 2);
    assert_eq!(col.lines().len(), 5);
}

#[tokio::test]
async fn faults_answer_429_with_retry_after_or_keep_the_batch_and_drop_the_answer() {
    let col = start(CollectorFaults {
        rate_429: 1.0,
        ..CollectorFaults::default()
    })
    .await;
    let ct = "application/x-ndjson";
    let r = post(&col, Some(TOKEN), ct, "a", line(2004, "1", 1))
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(col.counters().lines_received, 0);

    col.set_faults(CollectorFaults {
        rate_commit_drop: 1.0,
        ..CollectorFaults::default()
    });
    let r = post(&col, Some(TOKEN), ct, "a", line(2004, "1", 1)).await;
    assert!(r.is_err(), "no answer: {r:?}");
    let c = col.counters();
    assert_eq!((c.lines_received, c.faults.commit_drop), (1, 1), "kept");
}

#[tokio::test]
async fn stops_and_comes_back_on_the_same_address_with_its_counters() {
    let mut col = start(CollectorFaults::default()).await;
    let ct = "application/x-ndjson";
    post(&col, Some(TOKEN), ct, "a", line(2004, "1", 1))
        .await
        .unwrap();
    col.stop().await;
    assert!(
        post(&col, Some(TOKEN), ct, "b", line(2004, "2", 1))
            .await
            .is_err(),
        "refused while stopped"
    );
    col.restart().await.unwrap();
    let r = post(&col, Some(TOKEN), ct, "b", line(2004, "2", 1))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(col.counters().distinct_events, 2);
    let counters: serde_json::Value =
        reqwest::get(format!("http://{}/_sim/collector/counters", col.addr()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(counters["lines_received"], 2);
    col.shutdown().await;
}
