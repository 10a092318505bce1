//! Secure Endpoint Event Streams: the REST calls that create, list and delete a stream, and
//! the AMQP 0-9-1 consumer of its queue.
//!
//! The vendor answers a stream's password only once, in the answer to the POST; a stream
//! listed later has none. So a consumer that lost the password (a restart) cannot reuse its
//! stream: [`SecureEndpointClient::open_event_stream`] deletes a stream of the same name and
//! creates it again. Events that waited in the old queue are not lost for that: the poll's
//! cursor reads them again (push is the fast path, the poll the safety net).
//!
//! Each message is one event in the JSON shape of an item of `GET /v1/events` `data`, so it is
//! mapped by [`super::map_page`], the parser of polled pages, and keyed the same way: an event
//! read by both paths is one finding. Deliveries are acknowledged only by the caller, after it
//! has stored them ([`StreamBatch::ack`]); until then the broker keeps them, and redelivers
//! them to the next connection if this one dies.

use super::{SecureEndpointClient, VENDOR, data_of, map_page};
use crate::ConnectorError;
use crate::http::Retry;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use socbridge_model::{Finding, Quarantined};
use std::time::Duration;

/// The AMQP credentials of a stream as the vendor answers them.
#[derive(Clone, Deserialize)]
pub struct AmqpCredentials {
    pub user_name: String,
    pub queue_name: String,
    /// Present only in the answer that created the stream.
    #[serde(default, deserialize_with = "secret_of")]
    pub password: Option<SecretString>,
    pub host: String,
    /// A string on the wire (`"443"`); a number is accepted too.
    #[serde(deserialize_with = "port_of")]
    pub port: u16,
    /// `https` at the vendor (AMQP over TLS), `amqps`, or `amqp` (plain, e.g. an emulator).
    pub proto: String,
}

impl std::fmt::Debug for AmqpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpCredentials")
            .field("user_name", &self.user_name)
            .field("queue_name", &self.queue_name)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("proto", &self.proto)
            .finish()
    }
}

fn secret_of<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(SecretString::from))
}

fn port_of<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Text(String),
        Number(u16),
    }
    match Port::deserialize(d)? {
        Port::Number(n) => Ok(n),
        Port::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("port `{s}` is not a port number"))),
    }
}

impl AmqpCredentials {
    /// The URI to connect with (default virtual host); TLS unless the vendor said `amqp`.
    fn uri(&self, password: &SecretString) -> String {
        let scheme = match self.proto.to_ascii_lowercase().as_str() {
            "amqp" | "http" => "amqp",
            _ => "amqps",
        };
        let enc =
            |s: &str| -> String { url::form_urlencoded::byte_serialize(s.as_bytes()).collect() };
        format!(
            "{scheme}://{}:{}@{}:{}/%2f",
            enc(&self.user_name),
            enc(password.expose_secret()),
            self.host,
            self.port
        )
    }
}

/// One event stream of the organisation.
#[derive(Debug, Clone, Deserialize)]
pub struct EventStream {
    pub id: u64,
    pub name: String,
    pub amqp_credentials: AmqpCredentials,
}

/// Why the stream could not be consumed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The REST side (creating or listing the stream) failed.
    #[error(transparent)]
    Api(#[from] ConnectorError),
    /// The stream came back without a password (only a creation answers one).
    #[error("{VENDOR}: event stream `{0}` was answered without its password")]
    NoPassword(String),
    /// The broker could not be reached, refused the credentials, or the connection broke.
    #[error("{VENDOR}: event stream broker {host}:{port}: {detail}")]
    Broker {
        host: String,
        port: u16,
        detail: String,
    },
    /// The stream's queue is not there (the stream was deleted at the vendor).
    #[error("{VENDOR}: event stream queue `{queue}` is gone: {detail}")]
    QueueGone { queue: String, detail: String },
    /// The broker ended the consumer (the connection closed or the queue was deleted).
    #[error("{VENDOR}: the event stream consumer was ended by the broker")]
    Ended,
    /// The connection broke while consuming or acknowledging (what was not acknowledged is
    /// delivered again to the next connection).
    #[error("{VENDOR}: the event stream connection was lost: {0}")]
    Lost(String),
}

impl SecureEndpointClient {
    /// `GET /v1/event_streams`: the organisation's streams (without passwords).
    pub async fn event_streams(&self) -> Result<Vec<EventStream>, ConnectorError> {
        let url = self.url("v1/event_streams");
        let answer = self
            .http
            .call(
                VENDOR,
                "event streams",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                data_of::<Vec<EventStream>>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `POST /v1/event_streams`: a new stream of these event types (empty: all) with its
    /// credentials, password included. Sent once ([`Retry::NotAfterSending`]): after an
    /// ambiguous failure the caller lists the streams and finds it by name.
    pub async fn create_event_stream(
        &self,
        name: &str,
        event_types: &[u64],
        group_guids: &[String],
    ) -> Result<EventStream, ConnectorError> {
        let url = self.url("v1/event_streams");
        let mut body = serde_json::json!({ "name": name });
        if !event_types.is_empty() {
            body["event_type"] = serde_json::json!(event_types);
        }
        if !group_guids.is_empty() {
            body["group_guid"] = serde_json::json!(group_guids);
        }
        let answer = self
            .http
            .call(
                VENDOR,
                "event stream",
                Retry::NotAfterSending,
                |c| {
                    c.post(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                        .json(&body)
                },
                data_of::<EventStream>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `DELETE /v1/event_streams/{id}`; a stream already gone (404) counts as deleted.
    pub async fn delete_event_stream(&self, id: u64) -> Result<(), ConnectorError> {
        let url = self.url(&format!("v1/event_streams/{id}"));
        let deleted = self
            .http
            .call(
                VENDOR,
                "event stream deletion",
                Retry::Always,
                |c| {
                    c.delete(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                |_| Ok(()),
            )
            .await;
        match deleted {
            Ok(_) | Err(ConnectorError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The stream named `name` with a password to connect with: a stream of that name made
    /// before (whose password only its creator saw) is deleted and made again.
    pub async fn open_event_stream(
        &self,
        name: &str,
        event_types: &[u64],
    ) -> Result<EventStream, StreamError> {
        for old in self.event_streams().await? {
            if old.name == name {
                tracing::info!(
                    stream = old.id,
                    name,
                    "replacing an event stream whose password is not known here"
                );
                self.delete_event_stream(old.id).await?;
            }
        }
        // After an ambiguous failure the stream may exist, but its password was in the answer
        // that was lost: the next attempt replaces it.
        let stream = self.create_event_stream(name, event_types, &[]).await?;
        if stream.amqp_credentials.password.is_none() {
            return Err(StreamError::NoPassword(stream.name));
        }
        Ok(stream)
    }
}

/// A consumer of one stream's queue with manual acknowledgements and at most `prefetch`
/// unacknowledged deliveries in flight.
pub struct StreamConsumer {
    conn: Connection,
    _channel: Channel,
    consumer: lapin::Consumer,
}

/// How long connecting to the broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl StreamConsumer {
    /// Connects, declares the queue passive and durable (as the vendor asks: it must exist),
    /// sets the prefetch limit and starts consuming.
    pub async fn connect(
        creds: &AmqpCredentials,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<StreamConsumer, StreamError> {
        let password = creds
            .password
            .as_ref()
            .ok_or_else(|| StreamError::NoPassword(creds.queue_name.clone()))?;
        let broker = |detail: String| StreamError::Broker {
            host: creds.host.clone(),
            port: creds.port,
            detail,
        };
        let uri = creds.uri(password);
        let conn = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(
                &uri,
                ConnectionProperties::default().with_connection_name("socbridge".into()),
            ),
        )
        .await
        .map_err(|_| broker("no answer in time".into()))?
        .map_err(|e| broker(e.to_string()))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| broker(format!("opening a channel: {e}")))?;
        channel
            .queue_declare(
                creds.queue_name.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| StreamError::QueueGone {
                queue: creds.queue_name.clone(),
                detail: e.to_string(),
            })?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| broker(format!("setting the prefetch limit: {e}")))?;
        let consumer = channel
            .basic_consume(
                creds.queue_name.as_str().into(),
                consumer_tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| broker(format!("starting the consumer: {e}")))?;
        Ok(StreamConsumer {
            conn,
            _channel: channel,
            consumer,
        })
    }

    /// Waits for the next delivery, then takes the ones already received (up to `max`), and
    /// maps them with the poll's parser. `Err` when the connection broke or the broker ended
    /// the consumer: what was not acknowledged is redelivered to the next connection.
    pub async fn next_batch(&mut self, max: usize) -> Result<StreamBatch, StreamError> {
        let ended = |e: lapin::Error| StreamError::Lost(e.to_string());
        let first = match self.consumer.next().await {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(ended(e)),
            None => return Err(StreamError::Ended),
        };
        let mut deliveries = vec![first];
        while deliveries.len() < max.max(1) {
            match self.consumer.next().now_or_never() {
                Some(Some(Ok(d))) => deliveries.push(d),
                Some(Some(Err(e))) => return Err(ended(e)),
                Some(None) => break,
                None => break,
            }
        }
        Ok(StreamBatch::of(deliveries))
    }

    /// Closes the connection (unacknowledged deliveries go back to the queue).
    pub async fn close(self) {
        let _ = self.conn.close(200, "socbridge stops".into()).await;
    }
}

/// Deliveries taken together, mapped: stored in one transaction, then acknowledged together.
pub struct StreamBatch {
    /// Oldest first, as the store wants them.
    pub findings: Vec<Finding>,
    /// Messages that are not events (their bytes and why).
    pub quarantined: Vec<Quarantined>,
    /// Deliveries in the batch.
    pub deliveries: usize,
    /// Some delivery was delivered before (to a connection that died before acknowledging).
    pub redelivered: bool,
    /// The acker of the last delivery: acknowledging it with `multiple` covers the batch.
    last: Option<Acker>,
}

impl StreamBatch {
    fn of(deliveries: Vec<lapin::message::Delivery>) -> StreamBatch {
        let mut raws = Vec::with_capacity(deliveries.len());
        let mut quarantined = Vec::new();
        let redelivered = deliveries.iter().any(|d| d.redelivered);
        let count = deliveries.len();
        let mut last = None;
        for d in deliveries {
            let bytes = d.data;
            let raw = std::str::from_utf8(&bytes)
                .map_err(|e| format!("is not UTF-8: {e}"))
                .and_then(|t| {
                    RawValue::from_string(t.to_string()).map_err(|e| format!("is not JSON: {e}"))
                });
            match raw {
                Ok(raw) => raws.push(raw),
                Err(reason) => quarantined.push(Quarantined {
                    reason: format!("{VENDOR}: event stream message {reason}"),
                    raw: bytes,
                }),
            }
            last = Some(d.acker);
        }
        let (findings, mut bad) = map_page(&raws);
        quarantined.append(&mut bad);
        StreamBatch {
            findings,
            quarantined,
            deliveries: count,
            redelivered,
            last,
        }
    }

    /// Acknowledges every delivery of the batch (call it after they are committed).
    pub async fn ack(self) -> Result<(), StreamError> {
        let Some(last) = self.last else {
            return Ok(());
        };
        last.ack(BasicAckOptions { multiple: true })
            .await
            .map(|_| ())
            .map_err(|e| StreamError::Lost(format!("acknowledging: {e}")))
    }

    /// Gives every delivery of the batch back to the queue (storing failed).
    pub async fn requeue(self) {
        let Some(last) = self.last else {
            return;
        };
        let _ = last
            .nack(BasicNackOptions {
                multiple: true,
                requeue: true,
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_read_the_vendor_shape_and_build_a_tls_uri() {
        let body = br#"{"version":"v1.2.0","metadata":{"links":{"self":"x"}},"data":{"id":7,"name":"s","amqp_credentials":{"user_name":"1-ab","queue_name":"event_stream_7","password":"p@ss/w","host":"export-streaming.amp.cisco.com","port":"443","proto":"https"}}}"#;
        let s: EventStream = data_of(body).expect("the vendor's shape reads");
        assert_eq!((s.id, s.amqp_credentials.port), (7, 443));
        let pw = s.amqp_credentials.password.clone().expect("a password");
        assert_eq!(
            s.amqp_credentials.uri(&pw),
            "amqps://1-ab:p%40ss%2Fw@export-streaming.amp.cisco.com:443/%2f"
        );
        assert!(!format!("{s:?}").contains("p@ss"), "no password in Debug");
    }

    #[test]
    fn a_listed_stream_has_no_password_and_a_bad_port_is_named() {
        let body = br#"{"data":[{"id":1,"name":"a","amqp_credentials":{"user_name":"u","queue_name":"q","host":"h","port":5672,"proto":"amqp"}}]}"#;
        let list: Vec<EventStream> = data_of(body).expect("a list reads");
        assert!(list[0].amqp_credentials.password.is_none());
        let bad = br#"{"data":{"id":1,"name":"a","amqp_credentials":{"user_name":"u","queue_name":"q","host":"h","port":"x","proto":"amqp"}}}"#;
        let err = data_of::<EventStream>(bad).unwrap_err();
        assert!(err.contains("`x`"), "{err}");
    }
}
