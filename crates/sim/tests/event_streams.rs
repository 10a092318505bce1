//! Secure Endpoint Event Streams in the emulator: the REST shapes and refusals of
//! `/v1/event_streams`, streams kept apart per organisation, events published to the local
//! RabbitMQ (127.0.0.1:5672, guest/guest) in the shape of `/v1/events` items and counted when
//! the broker confirmed them, and a POST refused with 503 when no broker answers.

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use socbridge_sim::{AddEvents, EventStreamsConfig, SimConfig, SimHandle};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const THREAT_DETECTED: u64 = 1090519054;
const CLOUD_IOC: u64 = 1107296274;

async fn start(event_streams: EventStreamsConfig) -> SimHandle {
    socbridge_sim::start(SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tenants: 2,
        initial_events_per_tenant: 5,
        event_streams,
        ..SimConfig::default()
    })
    .await
    .expect("the emulator starts")
}

/// Sends a request as tenant `tenant` (or unauthenticated with `None`); status and JSON body.
async fn call(
    sim: &SimHandle,
    tenant: Option<usize>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", sim.endpoints().secure_endpoint);
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = tenant {
        let c = sim.endpoints().tenants[t].secure_endpoint.clone().unwrap();
        req = req.basic_auth(c.client_id, Some(c.api_key));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the emulator answers");
    let status = resp.status();
    let text = resp.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn detail(body: &Value) -> String {
    body["errors"][0]["details"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn rest_shapes_strictness_limit_and_tenants_apart() {
    let sim = start(EventStreamsConfig::default()).await;

    // Authentication as for /v1/events.
    let (status, body) = call(&sim, None, Method::GET, "/v1/event_streams", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errors"][0]["error_code"], 401);

    // Creation: 201, the vendor's shape, the password only here.
    let (_, groups) = call(&sim, Some(0), Method::GET, "/v1/groups", None).await;
    let group = groups["data"][0]["guid"].as_str().unwrap().to_string();
    let (status, created) = call(
        &sim,
        Some(0),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "soc", "event_type": [THREAT_DETECTED], "group_guid": [group]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let data = &created["data"];
    let id = data["id"].as_u64().expect("an integer id");
    assert_eq!(data["name"], "soc");
    let creds = data["amqp_credentials"].as_object().unwrap();
    let keys: Vec<&str> = creds.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "host",
            "password",
            "port",
            "proto",
            "queue_name",
            "user_name"
        ]
    );
    assert_eq!(
        creds["port"], "5672",
        "the port is a string, as at the vendor"
    );
    assert_eq!(
        (&creds["proto"], &creds["host"]),
        (&json!("amqp"), &json!("127.0.0.1"))
    );
    assert_eq!(creds["user_name"], "guest");

    // Listing and reading: no password.
    let (status, list) = call(&sim, Some(0), Method::GET, "/v1/event_streams", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(
        list["data"][0]["amqp_credentials"]
            .get("password")
            .is_none()
    );
    assert_eq!(list["metadata"]["results"]["total"], 1);
    let path = format!("/v1/event_streams/{id}");
    let (status, one) = call(&sim, Some(0), Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        one["data"]["amqp_credentials"]["queue_name"],
        creds["queue_name"]
    );
    assert!(one["data"]["amqp_credentials"].get("password").is_none());

    // Refusals name what is wrong.
    for (body, expect) in [
        (json!({}), "name is required"),
        (json!({"name": "  "}), "name must not be blank"),
        (json!({"name": 3}), "name must be a string"),
        (
            json!({"name": "x", "event_type": "1"}),
            "event_type must be an array",
        ),
        (
            json!({"name": "x", "event_type": ["a"]}),
            "event_type must hold integers",
        ),
        (
            json!({"name": "x", "event_type": [42]}),
            "event_type 42 is not a known event type",
        ),
        (
            json!({"name": "x", "group_guid": ["nope"]}),
            "group_guid 'nope'",
        ),
        (json!({"name": "soc"}), "name has already been taken"),
    ] {
        let (status, answer) = call(
            &sim,
            Some(0),
            Method::POST,
            "/v1/event_streams",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(detail(&answer).contains(expect), "{body}: {answer}");
    }

    // Another organisation sees none of it, and cannot read or delete it.
    let (_, other) = call(&sim, Some(1), Method::GET, "/v1/event_streams", None).await;
    assert_eq!(other["data"], json!([]));
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = call(&sim, Some(1), method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    // At most 5 streams per organisation; the other organisation has its own 5.
    for n in 1..5 {
        let (status, _) = call(
            &sim,
            Some(0),
            Method::POST,
            "/v1/event_streams",
            Some(json!({"name": format!("s{n}")})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, answer) = call(
        &sim,
        Some(0),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "s6"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(detail(&answer).contains("limit of 5"), "{answer}");
    let (status, _) = call(
        &sim,
        Some(1),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "soc"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "names and limits are per organisation"
    );

    // Deletion frees a place; the stream is gone.
    let (status, _) = call(&sim, Some(0), Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&sim, Some(0), Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &sim,
        Some(0),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "s6"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = call(&sim, Some(0), Method::GET, "/v1/event_streams/abc", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}

#[tokio::test]
async fn new_events_of_the_stream_types_arrive_in_the_events_shape() {
    let sim = start(EventStreamsConfig::default()).await;
    let (status, created) = call(
        &sim,
        Some(0),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "soc", "event_type": [THREAT_DETECTED]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let creds = &created["data"]["amqp_credentials"];
    let uri = format!(
        "amqp://{}:{}@{}:{}/%2f",
        creds["user_name"].as_str().unwrap(),
        creds["password"].as_str().unwrap(),
        creds["host"].as_str().unwrap(),
        creds["port"].as_str().unwrap()
    );
    let queue = creds["queue_name"].as_str().unwrap().to_string();
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("the credentials connect");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        queue.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            durable: true,
            ..QueueDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("the queue exists, durable");
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "test".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    // Three events of the stream's type, two of another type, one for the other tenant.
    let mut wanted = sim.add_events(AddEvents {
        tenant: "acme".into(),
        count: 3,
        malformed: false,
        same_second: false,
        event_type_id: Some(THREAT_DETECTED),
    });
    sim.add_events(AddEvents {
        tenant: "acme".into(),
        count: 2,
        malformed: false,
        same_second: false,
        event_type_id: Some(CLOUD_IOC),
    });
    sim.add_events(AddEvents {
        tenant: sim.endpoints().tenants[1].name.clone(),
        count: 1,
        malformed: false,
        same_second: false,
        event_type_id: Some(THREAT_DETECTED),
    });
    let mut got = BTreeMap::new();
    while got.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the events arrive")
            .expect("the consumer runs")
            .expect("a delivery");
        // serde_json keeps an integer that fits a u64 exact (no float on the way).
        let event: Value = serde_json::from_slice(&d.data).expect("a JSON event");
        let id = event["id"].as_u64().expect("a numeric id");
        got.insert(id, event);
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    wanted.sort_unstable();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), wanted);

    // The same bytes as the items of /v1/events.
    let (_, page) = call(
        &sim,
        Some(0),
        Method::GET,
        &format!("/v1/events?event_type[]={THREAT_DETECTED}&limit=500"),
        None,
    )
    .await;
    for (id, pushed) in &got {
        let item = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"].as_u64() == Some(*id))
            .expect("the event is listed");
        assert_eq!(pushed, item);
    }
    // Nothing else arrives, and the witness counted the three.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), consumer.next())
            .await
            .is_err(),
        "other types and other tenants are not in this stream"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = sim.counters().secure_endpoint.tenants["acme"].clone();
        if c.stream_published_distinct == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "published: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close(200, "done".into()).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn without_a_broker_a_post_answers_503_and_polling_goes_on() {
    let sim = start(EventStreamsConfig {
        // Nothing listens on port 1.
        amqp_url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..EventStreamsConfig::default()
    })
    .await;
    let (status, body) = call(
        &sim,
        Some(0),
        Method::POST,
        "/v1/event_streams",
        Some(json!({"name": "soc"})),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(detail(&body).contains("unavailable"), "{body}");
    let (_, list) = call(&sim, Some(0), Method::GET, "/v1/event_streams", None).await;
    assert_eq!(list["data"], json!([]), "nothing was created");
    let (status, events) = call(&sim, Some(0), Method::GET, "/v1/events", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events["data"].as_array().unwrap().len(), 5);
    sim.shutdown().await;
}
