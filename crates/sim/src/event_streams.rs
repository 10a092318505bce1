//! Secure Endpoint Event Streams: `POST/GET /v1/event_streams`, `GET/DELETE
//! /v1/event_streams/{id}`, a queue per stream on a real AMQP 0-9-1 broker (RabbitMQ), and the
//! publisher that puts every new event of the stream's organisation there.
//!
//! The vendor creates a user and a queue per stream on its own broker and answers their
//! credentials once (the password only in the answer to the POST). The emulator has no right
//! to create users (that needs RabbitMQ's management API, not always enabled), so each stream
//! is a queue of its own, reached with the credentials of the configured broker URL (`guest`
//! on a test machine); the queue name is what keeps streams apart. Queue names carry a nonce
//! of this emulator instance, so emulators sharing one broker (parallel tests) never meet.
//!
//! Strict like the vendor: the same authentication gate as `/v1/events`, a body that must name
//! the stream and may only list known event types and groups, at most
//! [`EventStreamsConfig::max_streams`] streams per organisation, and a stream of one
//! organisation is not found through another's key. With no broker reachable, a POST answers
//! 503 and nothing is created; polling is unaffected.
//!
//! What was published is counted when the broker confirms it (publisher confirms):
//! `TenantCounters::stream_published_distinct` is the independent witness of push tests.

use crate::secure_endpoint::Ctx;
use crate::state::Shared;
use crate::wire::{self, RequestUrl};
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The broker the emulator's streams live on (part of [`crate::SimConfig`]).
#[derive(Clone, Debug)]
pub struct EventStreamsConfig {
    /// Serve `/v1/event_streams` at all (default true). Off: the routes answer 404 like any
    /// unknown path.
    pub enabled: bool,
    /// Where the emulator declares queues and publishes, credentials included (default
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`).
    pub amqp_url: String,
    /// The `host` the credentials name; the URL's host by default. A test puts a proxy here.
    pub advertised_host: Option<String>,
    /// The `port` the credentials name; the URL's port by default.
    pub advertised_port: Option<u16>,
    /// Streams per organisation (the vendor's limit: 5).
    pub max_streams: usize,
}

/// The default broker of a test machine.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Default for EventStreamsConfig {
    fn default() -> Self {
        EventStreamsConfig {
            enabled: true,
            amqp_url: DEFAULT_AMQP_URL.to_string(),
            advertised_host: None,
            advertised_port: None,
            max_streams: 5,
        }
    }
}

/// How long a connection to the broker may take before the request answers 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest stream name the emulator accepts [U].
const MAX_NAME: usize = 255;
/// Events live 10 days in a stream's queue, as at the vendor.
const MESSAGE_TTL_MS: i64 = 10 * 24 * 3600 * 1000;
/// A queue nobody consumed for an hour is removed by the broker: an emulator killed without
/// its shutdown leaves nothing behind for long.
const QUEUE_EXPIRES_MS: i64 = 3600 * 1000;
/// Events published in one round, each confirmed by the broker before the next round.
const PUBLISH_BATCH: usize = 256;

/// A stream as a test sees it ([`crate::SimHandle::event_streams`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventStreamInfo {
    pub id: u64,
    pub name: String,
    pub queue_name: String,
}

/// One stream of an organisation.
#[derive(Clone, Debug)]
pub(crate) struct StreamDef {
    pub id: u64,
    pub name: String,
    pub queue: String,
    /// Empty: every type.
    pub event_types: Vec<u64>,
    /// Empty: every group.
    pub group_guids: Vec<String>,
}

impl StreamDef {
    pub fn matches(&self, event_type_id: u64, group_guid: &str) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&event_type_id))
            && (self.group_guids.is_empty() || self.group_guids.iter().any(|g| g == group_guid))
    }
}

/// One event on its way to one stream's queue.
#[derive(Debug)]
pub(crate) struct Publication {
    pub tenant: usize,
    pub stream_id: u64,
    pub queue: String,
    pub seq: u64,
    pub malformed: bool,
    pub body: Arc<str>,
}

/// The broker side of the emulator: settings, the connection used for queue declarations,
/// and the queue every new event goes through to the publisher.
pub(crate) struct Broker {
    pub cfg: EventStreamsConfig,
    /// `host`, `port`, `user_name`, `password` of the credentials answered.
    host: String,
    port: u16,
    user: String,
    password: String,
    /// Makes queue names unique to this emulator instance.
    nonce: String,
    admin: tokio::sync::Mutex<Option<(Connection, Channel)>>,
    /// Held through a creation, so two POSTs cannot both pass the limit.
    admin_create: tokio::sync::Mutex<()>,
    pub tx: mpsc::UnboundedSender<Publication>,
}

impl Broker {
    /// Reads the URL; the receiver feeds [`publisher`].
    pub fn new(
        cfg: &EventStreamsConfig,
    ) -> Result<(Broker, mpsc::UnboundedReceiver<Publication>), String> {
        let url = url::Url::parse(&cfg.amqp_url)
            .map_err(|e| format!("event_streams.amqp_url is not a URL: {e}"))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return Err(format!(
                "event_streams.amqp_url must be amqp:// or amqps://, got {}://",
                url.scheme()
            ));
        }
        let host = cfg
            .advertised_host
            .clone()
            .or_else(|| url.host_str().map(str::to_string))
            .ok_or_else(|| "event_streams.amqp_url names no host".to_string())?;
        let default_port = if url.scheme() == "amqps" { 5671 } else { 5672 };
        let port = cfg
            .advertised_port
            .unwrap_or_else(|| url.port().unwrap_or(default_port));
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let user = match url.username() {
            "" => "guest".to_string(),
            u => decode(u),
        };
        let password = url.password().map_or_else(|| "guest".to_string(), decode);
        let nonce = format!("{:08x}", rand::random::<u32>());
        let (tx, rx) = mpsc::unbounded_channel();
        Ok((
            Broker {
                cfg: cfg.clone(),
                host,
                port,
                user,
                password,
                nonce,
                admin: tokio::sync::Mutex::new(None),
                admin_create: tokio::sync::Mutex::new(()),
                tx,
            },
            rx,
        ))
    }

    fn proto(&self) -> &'static str {
        if self.cfg.amqp_url.starts_with("amqps:") {
            "amqps"
        } else {
            "amqp"
        }
    }

    /// The channel for declarations, connecting when there is none (or it broke).
    async fn admin_channel(
        &self,
        slot: &mut Option<(Connection, Channel)>,
    ) -> Result<Channel, String> {
        if let Some((conn, ch)) = slot.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        *slot = None;
        let (conn, ch) = connect(&self.cfg.amqp_url).await?;
        *slot = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// Declares a stream's queue: durable (clients declare it passive and durable, as the
    /// vendor asks), events kept 10 days.
    async fn declare(&self, queue: &str) -> Result<(), String> {
        let mut slot = self.admin.lock().await;
        let ch = self.admin_channel(&mut slot).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(MESSAGE_TTL_MS),
        );
        args.insert("x-expires".into(), AMQPValue::LongLongInt(QUEUE_EXPIRES_MS));
        let declared = ch
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await;
        if let Err(e) = declared {
            *slot = None;
            return Err(format!("declaring the queue: {e}"));
        }
        Ok(())
    }

    /// Deletes a stream's queue (best effort: the stream is gone either way).
    async fn delete(&self, queue: &str) {
        let mut slot = self.admin.lock().await;
        let Ok(ch) = self.admin_channel(&mut slot).await else {
            return;
        };
        if let Err(e) = ch
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await
        {
            tracing::warn!(queue, "sim: could not delete an event stream's queue: {e}");
            *slot = None;
        }
    }
}

/// A connection and a channel, within [`CONNECT_TIMEOUT`].
async fn connect(url: &str) -> Result<(Connection, Channel), String> {
    let attempt = async {
        let conn = Connection::connect(
            url,
            ConnectionProperties::default().with_connection_name("socbridge-sim".into()),
        )
        .await
        .map_err(|e| format!("cannot reach the AMQP broker: {e}"))?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("cannot open an AMQP channel: {e}"))?;
        Ok::<_, String>((conn, ch))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| "the AMQP broker did not answer in time".to_string())?
}

/// The `amqp_credentials` member.
#[derive(Serialize)]
struct Credentials<'a> {
    user_name: &'a str,
    queue_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<&'a str>,
    host: &'a str,
    port: String,
    proto: &'a str,
}

#[derive(Serialize)]
struct StreamOut<'a> {
    id: u64,
    name: &'a str,
    amqp_credentials: Credentials<'a>,
}

fn stream_out<'a>(b: &'a Broker, s: &'a StreamDef, with_password: bool) -> StreamOut<'a> {
    StreamOut {
        id: s.id,
        name: &s.name,
        amqp_credentials: Credentials {
            user_name: &b.user,
            queue_name: &s.queue,
            password: with_password.then_some(b.password.as_str()),
            host: &b.host,
            port: b.port.to_string(),
            proto: b.proto(),
        },
    }
}

/// The body of a POST, checked.
struct NewStream {
    name: String,
    event_types: Vec<u64>,
    group_guids: Vec<String>,
}

/// Reads and checks a POST body: `name` required, `event_type` a list of known type ids and
/// `group_guid` a list of the organisation's groups, both optional.
fn parse_new(body: &[u8], groups: &dyn Fn(&str) -> bool) -> Result<NewStream, String> {
    let m = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => return Err("the request body must be a JSON object".into()),
        Err(e) => return Err(format!("the request body is not valid JSON: {e}")),
    };
    let name = match m.get("name") {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        None | Some(serde_json::Value::Null) => return Err("name is required".into()),
        Some(serde_json::Value::String(_)) => return Err("name must not be blank".into()),
        Some(other) => return Err(format!("name must be a string, got {other}")),
    };
    if name.chars().count() > MAX_NAME {
        return Err(format!("name must be at most {MAX_NAME} characters"));
    }
    let list = |key: &str| -> Result<Vec<serde_json::Value>, String> {
        match m.get(key) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(format!("{key} must be an array, got {other}")),
        }
    };
    let mut event_types = Vec::new();
    for v in list("event_type")? {
        let id = v
            .as_u64()
            .ok_or_else(|| format!("event_type must hold integers, got {v}"))?;
        if crate::catalog::event_type(id).is_none() {
            return Err(format!(
                "event_type {id} is not a known event type: see GET /v1/event_types"
            ));
        }
        if !event_types.contains(&id) {
            event_types.push(id);
        }
    }
    let mut group_guids = Vec::new();
    for v in list("group_guid")? {
        let g = v
            .as_str()
            .ok_or_else(|| format!("group_guid must hold strings, got {v}"))?;
        if !groups(g) {
            return Err(format!(
                "group_guid '{g}' is not a group of this organisation"
            ));
        }
        if !group_guids.iter().any(|x| x == g) {
            group_guids.push(g.to_string());
        }
    }
    Ok(NewStream {
        name,
        event_types,
        group_guids,
    })
}

fn disabled(url: &RequestUrl) -> Response {
    wire::not_found(&format!("No such resource: {}", url.path))
}

/// `POST /v1/event_streams`: 201 with the stream and its credentials (the only answer that
/// carries the password); 400 for a bad body, a name already used or the limit reached; 503
/// when the broker cannot be reached (nothing is created).
pub(crate) async fn create(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    body: Bytes,
) -> Response {
    let Some(broker) = sim.broker.as_ref() else {
        return disabled(&ctx.url);
    };
    let parsed = {
        let st = sim.lock();
        let world = &st.tenants[ctx.tenant].world;
        parse_new(&body, &|g| world.group_index(g).is_some())
    };
    let new = match parsed {
        Ok(n) => n,
        Err(detail) => return wire::bad_request(&detail),
    };
    // One creation at a time: the limit and the name are checked again after the await.
    let _one = broker.admin_create.lock().await;
    let check = |st: &crate::state::State| -> Result<(), String> {
        let streams = &st.tenants[ctx.tenant].streams;
        if streams.len() >= broker.cfg.max_streams {
            return Err(format!(
                "limit of {} event streams per organization reached; delete one first",
                broker.cfg.max_streams
            ));
        }
        if streams.iter().any(|s| s.name == new.name) {
            return Err(format!(
                "name has already been taken: an event stream named '{}' exists",
                new.name
            ));
        }
        Ok(())
    };
    let id = {
        let mut st = sim.lock();
        if let Err(detail) = check(&st) {
            return wire::bad_request(&detail);
        }
        st.next_stream_id += 1;
        st.next_stream_id
    };
    let queue = format!("event_stream_{}_{id}", broker.nonce);
    if let Err(e) = broker.declare(&queue).await {
        tracing::warn!("sim: event stream not created: {e}");
        return wire::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Event streaming is unavailable: {e}"),
        );
    }
    let def = StreamDef {
        id,
        name: new.name,
        queue,
        event_types: new.event_types,
        group_guids: new.group_guids,
    };
    let body = wire::object_body(&ctx.url, &stream_out(broker, &def, true));
    sim.lock().tenants[ctx.tenant].streams.push(def);
    wire::json_response(StatusCode::CREATED, body)
}

/// `GET /v1/event_streams`: the organisation's streams, without passwords.
pub(crate) async fn list(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
) -> Response {
    let Some(broker) = sim.broker.as_ref() else {
        return disabled(&ctx.url);
    };
    let items: Vec<String> = {
        let st = sim.lock();
        st.tenants[ctx.tenant]
            .streams
            .iter()
            .map(|s| {
                serde_json::to_string(&stream_out(broker, s, false)).expect("a stream serialises")
            })
            .collect()
    };
    let total = items.len();
    let links = wire::Links {
        self_: ctx.url.self_url(),
        next: None,
        prev: None,
    };
    wire::json_response(
        StatusCode::OK,
        wire::list_body(&links, total, 0, total.max(1), &items),
    )
}

/// The organisation's stream `id`; another organisation's stream is not found.
fn find(sim: &Shared, tenant: usize, id: &str) -> Option<StreamDef> {
    let id: u64 = id.parse().ok()?;
    sim.lock().tenants[tenant]
        .streams
        .iter()
        .find(|s| s.id == id)
        .cloned()
}

fn unknown_stream(id: &str) -> Response {
    wire::not_found(&format!(
        "Unknown event stream: no event stream with id '{id}'"
    ))
}

/// `GET /v1/event_streams/{id}`.
pub(crate) async fn get_one(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let Some(broker) = sim.broker.as_ref() else {
        return disabled(&ctx.url);
    };
    match find(&sim, ctx.tenant, &id) {
        Some(s) => wire::json_response(
            StatusCode::OK,
            wire::object_body(&ctx.url, &stream_out(broker, &s, false)),
        ),
        None => unknown_stream(&id),
    }
}

/// `DELETE /v1/event_streams/{id}`: the stream and its queue go (events not yet consumed
/// with them).
pub(crate) async fn delete(
    State(sim): State<Arc<Shared>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Response {
    let Some(broker) = sim.broker.as_ref() else {
        return disabled(&ctx.url);
    };
    let Some(s) = find(&sim, ctx.tenant, &id) else {
        return unknown_stream(&id);
    };
    sim.lock().tenants[ctx.tenant]
        .streams
        .retain(|x| x.id != s.id);
    broker.delete(&s.queue).await;
    wire::json_response(
        StatusCode::OK,
        wire::object_body(&ctx.url, &serde_json::json!({})),
    )
}

/// Publishes what [`crate::state::Tenant`] queued for the streams, in rounds: each round is
/// published on a confirming channel and counted once the broker confirmed it. A round whose
/// confirmation fails is published again on a new connection (at least once, as a broker
/// delivers: the client's finding key drops a repeat). Ends at shutdown.
pub(crate) async fn publisher(sim: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Publication>) {
    let Some(broker) = sim.broker.as_ref() else {
        return;
    };
    let mut conn: Option<(Connection, Channel)> = None;
    loop {
        let first = tokio::select! {
            _ = sim.shutdown.cancelled() => break,
            item = rx.recv() => match item {
                Some(p) => p,
                None => break,
            },
        };
        let mut round = vec![first];
        while round.len() < PUBLISH_BATCH {
            match rx.try_recv() {
                Ok(p) => round.push(p),
                Err(_) => break,
            }
        }
        let mut wait = Duration::from_millis(50);
        loop {
            // A stream deleted since its events were queued gets nothing more.
            round.retain(|p| {
                sim.lock().tenants[p.tenant]
                    .streams
                    .iter()
                    .any(|s| s.id == p.stream_id)
            });
            if round.is_empty() {
                break;
            }
            match publish_round(&mut conn, &broker.cfg.amqp_url, &round).await {
                Ok(()) => {
                    let mut st = sim.lock();
                    for p in &round {
                        st.tenants[p.tenant].mark_published(p.seq, p.malformed);
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("sim: event stream publication failed, retrying: {e}");
                    conn = None;
                    tokio::select! {
                        _ = sim.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
    // Shutdown: the emulator's queues go with it.
    let queues: Vec<String> = sim
        .lock()
        .tenants
        .iter()
        .flat_map(|t| t.streams.iter().map(|s| s.queue.clone()))
        .collect();
    let cleanup = async {
        for q in &queues {
            broker.delete(q).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), cleanup).await;
}

/// Publishes one round and waits for every confirmation.
async fn publish_round(
    slot: &mut Option<(Connection, Channel)>,
    url: &str,
    round: &[Publication],
) -> Result<(), String> {
    let usable = slot
        .as_ref()
        .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
    if !usable {
        let (conn, ch) = connect(url).await?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enabling publisher confirms: {e}"))?;
        *slot = Some((conn, ch));
    }
    let Some((_, ch)) = slot.as_ref() else {
        return Err("no channel".into());
    };
    let mut confirms = Vec::with_capacity(round.len());
    for p in round {
        let confirm = ch
            .basic_publish(
                "".into(),
                p.queue.as_str().into(),
                BasicPublishOptions::default(),
                p.body.as_bytes(),
                BasicProperties::default()
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2),
            )
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        confirms.push(confirm);
    }
    for c in confirms {
        let confirmation = c.await.map_err(|e| format!("confirmation: {e}"))?;
        if confirmation.is_nack() {
            return Err("the broker refused a message (nack)".into());
        }
    }
    Ok(())
}
