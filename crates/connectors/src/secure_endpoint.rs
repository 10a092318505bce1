//! Cisco Secure Endpoint (formerly AMP for Endpoints) API v1: the wire types, the pure mapping
//! of an event to a [`Finding`], and the client.
//!
//! # The finding key
//!
//! An event is recognised by
//! `{id}:{timestamp}.{timestamp_nanoseconds:09}:{event_type_id}:{connector_guid}:{detection_id}`
//! (`-` for a member the event lacks). This is the fingerprint Elastic's integration uses, for
//! the same reason: `id` alone is not safe, because real dumps hold distinct events that share
//! an `id` once it went through a float somewhere. `id` is a 64-bit integer above 2^53 and is
//! read as `u64`, never through `f64`.
//!
//! # Severity
//!
//! The vendor's `severity` (`Low|Medium|High|Critical`, any case) is used when present. Some
//! event types carry none (Cloud IOC, Executed malware...): those of the high-priority list are
//! `high` (that is why they are on the list), the others `medium`; an unknown label is treated
//! as absent rather than losing a threat detection over a word.

pub mod event_streams;

use crate::ConnectorError;
use crate::http::{HttpStack, Retry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;
use socbridge_model::{
    Finding, Observable, ObservableKind, Quarantined, Severity, SourceKind, Subject, Timestamp,
    normalise_observables,
};
use std::borrow::Cow;
use url::Url;

pub const VENDOR: &str = "Secure Endpoint";

/// The event types the MSSP workflows polled by default (VENDOR-APIS.md §2), and socbridge's
/// default filter.
pub const HIGH_PRIORITY_EVENT_TYPES: &[u64] = &[
    1090519054, // Threat Detected
    2164260880, // Quarantine Failure
    2164260893, // Cloud Recall Quarantine Attempt Failed
    1090524040, // APK Threat Detected
    1090524041, // APK Custom Threat Detected
    1090519084, // DFC Threat Detected
    1107296257, // Potential Dropper Infection
    1107296258, // Multiple Infected Files
    1107296261, // Adobe Reader compromise
    1107296262, // Microsoft Word compromise
    1107296263, // Microsoft Excel compromise
    1107296264, // Microsoft PowerPoint compromise
    1107296266, // Adobe Reader launched a shell
    1107296267, // Microsoft Word launched a shell
    1107296268, // Microsoft Excel launched a shell
    1107296269, // Microsoft PowerPoint launched a shell
    1107296270, // Apple QuickTime compromise
    1107296271, // Apple QuickTime launched a shell
    1107296272, // Executed malware
    1107296273, // Suspected botnet connection
    1107296274, // Cloud IOC
    1107296275, // Microsoft Calculator compromise
    1107296276, // Microsoft Notepad compromise
    1091567670, // Endpoint IOC Scan Completed With Detections
    1107296277, // Connection to suspicious domain
    1107296278, // Threat Detected in Low Prevalence Executable
    1107296280, // Suspicious Download
    1107296281, // Microsoft CHM Compromise
    1107296282, // Suspicious Cscript Launch
    1107296284, // Potential Ransomware
    1107296283, // Possible Webshell
    2164260931, // Critical Fault Raised
    1090519081, // Rootkit Detection
    1090519105, // Malicious Activity Detection
    1090519102, // iOS Network Detection
    553648215,  // Endpoint Isolation Unlock Limit Reached
];

/// Why an event could not be mapped; the record is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("unreadable event: {0}")]
    Shape(String),
    #[error("the event has neither a usable `timestamp` nor a valid `date` ({0})")]
    NoTime(String),
    #[error("the event has no `event_type_id`")]
    NoEventType,
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    id: Option<u64>,
    timestamp: Option<i64>,
    timestamp_nanoseconds: Option<u32>,
    #[serde(borrow)]
    date: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_type: Option<Cow<'a, str>>,
    event_type_id: Option<u64>,
    #[serde(borrow)]
    detection: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detection_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    connector_guid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    severity: Option<Cow<'a, str>>,
    #[serde(borrow)]
    computer: Option<WireComputer<'a>>,
    #[serde(borrow)]
    file: Option<WireFile<'a>>,
    #[serde(borrow)]
    network_info: Option<WireNetworkInfo<'a>>,
    #[serde(borrow)]
    cloud_ioc: Option<WireCloudIoc<'a>>,
}

#[derive(Deserialize)]
struct WireComputer<'a> {
    #[serde(borrow)]
    connector_guid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    hostname: Option<Cow<'a, str>>,
    #[serde(borrow)]
    external_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    network_addresses: Vec<WireAddress<'a>>,
}

#[derive(Deserialize)]
struct WireAddress<'a> {
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    mac: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireFile<'a> {
    #[serde(borrow)]
    file_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    file_path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    identity: Option<WireIdentity<'a>>,
    #[serde(borrow)]
    parent: Option<WireParent<'a>>,
}

#[derive(Deserialize)]
struct WireParent<'a> {
    #[serde(borrow)]
    file_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    identity: Option<WireIdentity<'a>>,
}

#[derive(Deserialize)]
struct WireIdentity<'a> {
    #[serde(borrow)]
    sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sha1: Option<Cow<'a, str>>,
    #[serde(borrow)]
    md5: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireNetworkInfo<'a> {
    #[serde(borrow)]
    dirty_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    remote_ip: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireCloudIoc<'a> {
    #[serde(borrow)]
    short_description: Option<Cow<'a, str>>,
}

/// Words the vendor puts where it has no value.
fn meaningful(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty() && !t.eq_ignore_ascii_case("not available") && !t.eq_ignore_ascii_case("unknown")
}

fn severity_of(label: Option<&str>, event_type_id: u64) -> Severity {
    let parsed = label.and_then(|l| match l.trim().to_ascii_lowercase().as_str() {
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    });
    parsed.unwrap_or(if HIGH_PRIORITY_EVENT_TYPES.contains(&event_type_id) {
        Severity::High
    } else {
        Severity::Medium
    })
}

/// Maps one event (its exact JSON text) to a finding. Pure: no I/O, no clock.
pub fn map_event(raw: &str) -> Result<Finding, MapError> {
    // The plain parser first (the hot path); only a record it refuses is read again with the
    // path-tracking one, so that the quarantine reason names the member at fault.
    let ev: WireEvent<'_> = match serde_json::from_str(raw) {
        Ok(ev) => ev,
        Err(_) => {
            let de = &mut serde_json::Deserializer::from_str(raw);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    MapError::Shape(inner.to_string())
                } else {
                    MapError::Shape(format!("`{path}`: {inner}"))
                }
            })?
        }
    };
    let event_type_id = ev.event_type_id.ok_or(MapError::NoEventType)?;
    let nanos = ev.timestamp_nanoseconds.unwrap_or(0);
    let observed_at = match (ev.timestamp, ev.date.as_deref()) {
        (Some(secs), _) => Timestamp::from_unix_seconds(secs, nanos.min(999_999_999))
            .ok_or_else(|| MapError::NoTime(format!("timestamp {secs} is out of range")))?,
        (None, Some(date)) => Timestamp::parse_lenient_utc(date)
            .map_err(|e| MapError::NoTime(format!("`date` {date:?}: {e}")))?,
        (None, None) => return Err(MapError::NoTime("both are missing".into())),
    };

    let dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_string();
    let computer = ev.computer.as_ref();
    let connector_guid = ev
        .connector_guid
        .as_deref()
        .or_else(|| computer.and_then(|c| c.connector_guid.as_deref()))
        .filter(|g| !g.is_empty());
    let vendor_key = format!(
        "{}:{}.{:09}:{}:{}:{}",
        ev.id.map_or_else(|| "-".to_string(), |id| id.to_string()),
        ev.timestamp
            .map_or_else(|| "-".to_string(), |t| t.to_string()),
        nanos,
        event_type_id,
        dash(connector_guid),
        dash(ev.detection_id.as_deref()),
    );

    let event_type = ev
        .event_type
        .as_deref()
        .filter(|s| meaningful(s))
        .map_or_else(|| format!("event type {event_type_id}"), str::to_string);
    let what = ev
        .detection
        .as_deref()
        .filter(|s| meaningful(s))
        .or_else(|| {
            ev.cloud_ioc
                .as_ref()
                .and_then(|c| c.short_description.as_deref())
                .filter(|s| meaningful(s))
        });
    let title = match what {
        Some(w) => format!("{event_type}: {w}"),
        None => event_type.clone(),
    };

    let hostname = computer
        .and_then(|c| c.hostname.as_deref())
        .filter(|h| meaningful(h));
    let subject = connector_guid.map(|guid| Subject {
        kind: "computer".to_string(),
        id: guid.to_string(),
        label: hostname.map(str::to_string),
    });

    let mut obs = Vec::new();
    let mut push = |kind: ObservableKind, v: Option<&str>| {
        if let Some(v) = v.filter(|v| meaningful(v)) {
            obs.push(Observable::new(kind, v.trim()));
        }
    };
    push(ObservableKind::Hostname, hostname);
    if let Some(c) = computer {
        push(ObservableKind::Ip, c.external_ip.as_deref());
        push(ObservableKind::User, c.user.as_deref());
        for a in &c.network_addresses {
            push(ObservableKind::Ip, a.ip.as_deref());
            push(ObservableKind::Mac, a.mac.as_deref());
        }
    }
    let mut identity = |id: Option<&WireIdentity<'_>>| {
        if let Some(id) = id {
            push(ObservableKind::Sha256, id.sha256.as_deref());
            push(ObservableKind::Sha1, id.sha1.as_deref());
            push(ObservableKind::Md5, id.md5.as_deref());
        }
    };
    if let Some(f) = &ev.file {
        identity(f.identity.as_ref());
        if let Some(p) = &f.parent {
            identity(p.identity.as_ref());
        }
    }
    if let Some(f) = &ev.file {
        push(ObservableKind::FileName, f.file_name.as_deref());
        push(ObservableKind::FilePath, f.file_path.as_deref());
        if let Some(p) = &f.parent {
            push(ObservableKind::FileName, p.file_name.as_deref());
        }
    }
    if let Some(n) = &ev.network_info {
        push(ObservableKind::Url, n.dirty_url.as_deref());
        push(ObservableKind::Ip, n.remote_ip.as_deref());
    }
    normalise_observables(&mut obs);

    Ok(Finding {
        source_kind: SourceKind::SecureEndpoint,
        vendor_key,
        observed_at,
        severity: severity_of(ev.severity.as_deref(), event_type_id),
        title,
        event_type,
        subject,
        observables: obs,
        raw: raw.to_string(),
    })
}

/// Maps a page of events: findings oldest first (the vendor sends newest first), and the
/// records that could not be mapped, quarantined with their reason and exact bytes. One bad
/// record never stops the rest of its page.
pub fn map_page(events: &[Box<RawValue>]) -> (Vec<Finding>, Vec<Quarantined>) {
    let mut findings = Vec::with_capacity(events.len());
    let mut quarantined = Vec::new();
    for raw in events.iter().rev() {
        match map_event(raw.get()) {
            Ok(f) => findings.push(f),
            Err(e) => quarantined.push(Quarantined {
                reason: format!("{VENDOR}: {e}"),
                raw: raw.get().as_bytes().to_vec(),
            }),
        }
    }
    // Stable: events of the same microsecond keep the vendor's order.
    findings.sort_by_key(|f| f.observed_at);
    (findings, quarantined)
}

/// The filters of one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events at or after this time (sent with seconds precision, rounded down).
    pub start_date: Timestamp,
    /// `event_type[]` values; empty means every type.
    pub event_types: Vec<u64>,
}

/// One page of `GET /v1/events`, newest first.
#[derive(Debug)]
pub struct EventsPage {
    /// Events matching the query across all pages, as the vendor counted them for this answer.
    pub total: u64,
    /// The vendor announced another page (`metadata.links.next`).
    pub has_next: bool,
    /// The offset of this page's first event.
    pub index: u64,
    /// Each event's exact JSON text.
    pub events: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct EventsEnvelope {
    metadata: Metadata,
    data: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct Metadata {
    links: Links,
    results: Results,
}

#[derive(Deserialize)]
struct Links {
    next: Option<String>,
}

#[derive(Deserialize)]
struct Results {
    total: u64,
    #[serde(default)]
    index: u64,
}

/// Reads a `GET /v1/events` answer.
pub fn parse_events_page(body: &[u8]) -> Result<EventsPage, String> {
    let env: EventsEnvelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(EventsPage {
        total: env.metadata.results.total,
        has_next: env.metadata.links.next.is_some(),
        index: env.metadata.results.index,
        events: env.data,
    })
}

/// A Secure Endpoint API client for one tenant's credentials.
pub struct SecureEndpointClient {
    base: Url,
    client_id: String,
    api_key: SecretString,
    http: HttpStack,
}

impl std::fmt::Debug for SecureEndpointClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureEndpointClient")
            .field("base", &self.base.as_str())
            .field("client_id", &self.client_id)
            .field("api_key", &"[REDACTED]")
            .finish()
    }
}

impl SecureEndpointClient {
    /// `base_url` is the API host (`https://api.amp.cisco.com`, or with a trailing `/v1`).
    pub fn new(
        base_url: &str,
        client_id: &str,
        api_key: SecretString,
        http: HttpStack,
    ) -> Result<Self, ConnectorError> {
        let mut base = Url::parse(base_url.trim()).map_err(|e| ConnectorError::Config {
            detail: format!("Secure Endpoint base URL `{base_url}` is not a URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConnectorError::Config {
                detail: format!("Secure Endpoint base URL `{base_url}` must be an http(s) URL"),
            });
        }
        let path = base.path().trim_end_matches('/');
        let path = path.strip_suffix("/v1").unwrap_or(path).to_string();
        base.set_path(&format!("{path}/"));
        base.set_query(None);
        if client_id.trim().is_empty() {
            return Err(ConnectorError::Config {
                detail: "Secure Endpoint client id is empty".into(),
            });
        }
        if api_key.expose_secret().is_empty() {
            return Err(ConnectorError::Config {
                detail: "Secure Endpoint API key is empty".into(),
            });
        }
        Ok(SecureEndpointClient {
            base,
            client_id: client_id.trim().to_string(),
            api_key,
            http,
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base
            .join(path)
            .expect("a relative path joins onto an http base")
    }

    /// `GET /v1/version`: the cheap credential check.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        let url = self.url("v1/version");
        self.http
            .call(
                VENDOR,
                "version answer",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                |body| {
                    serde_json::from_slice::<serde_json::Value>(body)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                },
            )
            .await
            .map(|_| ())
    }

    /// One page of `GET /v1/events`.
    pub async fn events_page(
        &self,
        query: &EventQuery,
        offset: u64,
        limit: u32,
    ) -> Result<EventsPage, ConnectorError> {
        let mut url = self.url("v1/events");
        {
            let mut q = url.query_pairs_mut();
            for t in &query.event_types {
                q.append_pair("event_type[]", &t.to_string());
            }
            q.append_pair("start_date", &query.start_date.to_rfc3339_seconds());
            q.append_pair("limit", &limit.to_string());
            q.append_pair("offset", &offset.to_string());
        }
        let answer = self
            .http
            .call(
                VENDOR,
                "events page",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                parse_events_page,
            )
            .await?;
        Ok(answer.value)
    }
}

/// A computer's isolation as the vendor reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Isolation {
    pub available: bool,
    /// `not_isolated`, `pending_start`, `isolated` or `pending_stop`.
    pub status: String,
    #[serde(default)]
    pub unlock_code: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
}

impl Isolation {
    /// Isolated, or on its way (the connector has not checked in yet).
    pub fn is_on(&self) -> bool {
        matches!(self.status.as_str(), "isolated" | "pending_start")
    }

    /// Not isolated, or on its way back.
    pub fn is_off(&self) -> bool {
        matches!(self.status.as_str(), "not_isolated" | "pending_stop")
    }
}

/// The part of a computer containment needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Computer {
    pub connector_guid: String,
    #[serde(default)]
    pub hostname: Option<String>,
    pub group_guid: String,
}

/// A group of computers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Group {
    pub guid: String,
    pub name: String,
}

#[derive(Deserialize)]
struct DataEnvelope<T> {
    data: T,
}

fn data_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice::<DataEnvelope<T>>(body)
        .map(|e| e.data)
        .map_err(|e| e.to_string())
}

/// Containment: isolation and group moves. Reads retry; every change is sent with
/// `Retry::NotAfterSending`, so after an ambiguous failure the caller reads the state before
/// it changes anything again.
impl SecureEndpointClient {
    fn computer_path(guid: &str, rest: &str) -> String {
        let guid: String = url::form_urlencoded::byte_serialize(guid.as_bytes()).collect();
        format!("v1/computers/{guid}{rest}")
    }

    /// `OPTIONS /v1/computers/{guid}/isolation`: the methods possible now (`Allow`). A
    /// computer whose policy forbids isolation answers 405, returned as the error with the
    /// vendor's words.
    pub async fn isolation_options(&self, guid: &str) -> Result<Vec<String>, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, "/isolation"));
        let answer = self
            .http
            .call(
                VENDOR,
                "isolation options",
                Retry::Always,
                |c| {
                    c.request(reqwest::Method::OPTIONS, url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                |_| Ok(()),
            )
            .await?;
        Ok(answer
            .headers
            .get(reqwest::header::ALLOW)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(|m| m.trim().to_ascii_uppercase())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /v1/computers/{guid}/isolation`.
    pub async fn isolation(&self, guid: &str) -> Result<Isolation, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, "/isolation"));
        let answer = self
            .http
            .call(
                VENDOR,
                "isolation",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                data_of::<Isolation>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `PUT /v1/computers/{guid}/isolation` with a comment and an unlock code (at most 24
    /// characters, no spaces).
    pub async fn start_isolation(
        &self,
        guid: &str,
        comment: &str,
        unlock_code: &str,
    ) -> Result<Isolation, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, "/isolation"));
        let body = serde_json::json!({"comment": comment, "unlock_code": unlock_code});
        let answer = self
            .http
            .call(
                VENDOR,
                "isolation start",
                Retry::NotAfterSending,
                |c| {
                    c.put(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                        .json(&body)
                },
                data_of::<Isolation>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `DELETE /v1/computers/{guid}/isolation` with a comment.
    pub async fn stop_isolation(
        &self,
        guid: &str,
        comment: &str,
    ) -> Result<Isolation, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, "/isolation"));
        let body = serde_json::json!({ "comment": comment });
        let answer = self
            .http
            .call(
                VENDOR,
                "isolation stop",
                Retry::NotAfterSending,
                |c| {
                    c.delete(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                        .json(&body)
                },
                data_of::<Isolation>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `GET /v1/computers/{guid}`.
    pub async fn computer(&self, guid: &str) -> Result<Computer, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, ""));
        let answer = self
            .http
            .call(
                VENDOR,
                "computer",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                data_of::<Computer>,
            )
            .await?;
        Ok(answer.value)
    }

    /// `PATCH /v1/computers/{guid}` with `{"group_guid": ...}`: moves the computer.
    pub async fn move_computer(
        &self,
        guid: &str,
        group_guid: &str,
    ) -> Result<Computer, ConnectorError> {
        let url = self.url(&Self::computer_path(guid, ""));
        let body = serde_json::json!({ "group_guid": group_guid });
        let answer = self
            .http
            .call(
                VENDOR,
                "computer move",
                Retry::NotAfterSending,
                |c| {
                    c.patch(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                        .json(&body)
                },
                data_of::<Computer>,
            )
            .await?;
        Ok(answer.value)
    }

    /// The group named exactly `name` (case-insensitive), if there is one: `GET
    /// /v1/groups?name=` matches parts of names, so the answer is filtered here.
    pub async fn group_by_name(&self, name: &str) -> Result<Option<Group>, ConnectorError> {
        let mut url = self.url("v1/groups");
        url.query_pairs_mut().append_pair("name", name);
        let answer = self
            .http
            .call(
                VENDOR,
                "groups",
                Retry::Always,
                |c| {
                    c.get(url.clone())
                        .basic_auth(&self.client_id, Some(self.api_key.expose_secret()))
                },
                data_of::<Vec<Group>>,
            )
            .await?;
        Ok(answer
            .value
            .into_iter()
            .find(|g| g.name.trim().eq_ignore_ascii_case(name.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"id":6419204901661835278,"timestamp":1610629577,"timestamp_nanoseconds":443000000,"date":"2021-01-14T13:06:17+00:00","event_type":"Threat Detected","event_type_id":1090519054,"detection":"W32.File.MalParent","detection_id":"6419204901661835278","connector_guid":"g-1","group_guids":["x"],"severity":"Medium","computer":{"connector_guid":"g-1","hostname":"Demo_WannaCry","external_ip":"81.2.69.144","user":"Not Available","active":true,"network_addresses":[{"ip":"10.10.10.10","mac":"53:74:31:cb:37:50"}]},"file":{"disposition":"Malicious","file_name":"tasksche.exe","identity":{"sha256":"ed01ebfbc9eb5bbea545af4d01bf5f1071661840480439c6e5babe8e080e41aa"}}}"#;

    #[test]
    fn id_above_2_pow_53_keeps_every_digit() {
        let f = map_event(EVENT).expect("maps");
        assert_eq!(
            f.vendor_key,
            "6419204901661835278:1610629577.443000000:1090519054:g-1:6419204901661835278"
        );
        assert_eq!(f.severity, Severity::Medium);
        assert_eq!(f.title, "Threat Detected: W32.File.MalParent");
        assert_eq!(f.subject.as_ref().map(|s| s.id.as_str()), Some("g-1"));
        assert!(
            !f.observables.iter().any(|o| o.kind == ObservableKind::User),
            "`Not Available` is not a user"
        );
        assert_eq!(f.raw, EVENT);
        assert_eq!(
            f.observed_at.to_rfc3339_seconds(),
            "2021-01-14T13:06:17+00:00"
        );
    }

    #[test]
    fn bad_records_are_named() {
        assert!(matches!(
            map_event(r#"{"id":"not-a-number","event_type_id":1}"#),
            Err(MapError::Shape(_))
        ));
        assert!(matches!(
            map_event(r#"{"id":1,"event_type_id":1,"date":"not-a-date"}"#),
            Err(MapError::NoTime(_))
        ));
        assert_eq!(
            map_event(r#"{"id":1,"timestamp":5}"#),
            Err(MapError::NoEventType)
        );
    }

    #[test]
    fn page_is_oldest_first_and_bad_records_do_not_stop_it() {
        let newer = EVENT.replace("1610629577", "1610629999");
        let events: Vec<Box<RawValue>> = [newer.as_str(), r#"{"id":"x"}"#, EVENT]
            .iter()
            .map(|s| RawValue::from_string(s.to_string()).expect("json"))
            .collect();
        let (findings, quarantined) = map_page(&events);
        assert_eq!(findings.len(), 2);
        assert!(findings[0].observed_at < findings[1].observed_at);
        assert_eq!(quarantined.len(), 1);
        assert_eq!(quarantined[0].raw, br#"{"id":"x"}"#);
    }

    #[test]
    fn client_normalises_base_url() {
        let http = HttpStack::new(crate::http::HttpOptions::for_tests());
        let c = SecureEndpointClient::new(
            "https://api.eu.amp.cisco.com/v1/",
            "id",
            SecretString::from("k"),
            http.clone(),
        )
        .expect("valid");
        assert_eq!(
            c.url("v1/events").as_str(),
            "https://api.eu.amp.cisco.com/v1/events"
        );
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("\"k\""), "{dbg}");
        assert!(SecureEndpointClient::new("ftp://x", "id", SecretString::from("k"), http).is_err());
    }
}
