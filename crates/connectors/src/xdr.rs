//! Cisco XDR (formerly SecureX) incidents, as a sink: the CTIA incident API behind an OAuth2
//! client-credentials token (`VENDOR-APIS.md` section 5).
//!
//! - **Tokens**: `POST {token_url}` (`/iroh/oauth2/token` on the region's `visibility` host)
//!   with HTTP Basic `client_id:client_secret` and the form `grant_type=client_credentials`,
//!   answering `{"access_token","token_type":"bearer","expires_in":600}`. Tokens are kept
//!   in a [`TokenCache`] per (token URL, client id), refreshed a tenth of their lifetime
//!   before they expire; a 401 on an API call with a cached token drops it and the call is
//!   made once more with a new one.
//! - **Incidents**: `GET /ctia/incident/external_id/{external_id}` (a list), `POST
//!   /ctia/incident` (201 with the stored incident), `GET` and `PATCH /ctia/incident/{id}`,
//!   where `{id}` is the last segment of the incident's `id` URL.
//! - Writes are sent with [`Retry::NotAfterSending`]: after an ambiguous failure the caller
//!   looks the external id up instead of creating again, and reads the incident before it
//!   patches again, so a create or a status change lands once.
//!
//! Errors carry CTIA's own words (its schema errors name the offending key) and never the
//! request, the token or the client secret.

use crate::ConnectorError;
use crate::http::{CallFailure, HttpStack, Retry};
use crate::umbrella::TokenCache;
use crate::umbrella::token::{IssuedToken, Lease, parse_token};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socbridge_model::{IncidentDetail, IncidentStatus, Severity};
use url::Url;

pub const VENDOR: &str = "Cisco XDR";

/// The regions of Cisco XDR: (name, token URL, CTIA base URL).
pub const REGIONS: [(&str, &str, &str); 3] = [
    (
        "us",
        "https://visibility.amp.cisco.com/iroh/oauth2/token",
        "https://private.intel.amp.cisco.com",
    ),
    (
        "eu",
        "https://visibility.eu.amp.cisco.com/iroh/oauth2/token",
        "https://private.intel.eu.amp.cisco.com",
    ),
    (
        "apjc",
        "https://visibility.apjc.amp.cisco.com/iroh/oauth2/token",
        "https://private.intel.apjc.amp.cisco.com",
    ),
];

/// The token URL and CTIA base URL of a region (`us`, `eu`, `apjc`).
pub fn region_urls(region: &str) -> Option<(&'static str, &'static str)> {
    REGIONS
        .iter()
        .find(|(name, _, _)| name.eq_ignore_ascii_case(region.trim()))
        .map(|(_, token, ctia)| (*token, *ctia))
}

/// CTIM incident statuses.
pub const STATUSES: [&str; 8] = [
    "New",
    "Open",
    "Hold",
    "Containment Achieved",
    "Restoration Achieved",
    "Incident Reported",
    "Closed",
    "Rejected",
];

/// What `external_references[].source_name` says for the ServiceNow ticket.
pub const TICKET_REFERENCE_SOURCE: &str = "ServiceNow";

/// `incident_time` of a CTIM incident (ISO 8601 instants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IncidentTime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<String>,
}

/// An entry of `external_references`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalReference {
    pub source_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// The body of `POST /ctia/incident` (a CTIM NewIncident).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewIncident {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: String,
    pub title: String,
    pub description: String,
    pub short_description: String,
    pub severity: &'static str,
    pub tlp: &'static str,
    pub confidence: &'static str,
    pub status: String,
    pub incident_time: IncidentTime,
    pub external_ids: Vec<String>,
    pub external_references: Vec<ExternalReference>,
}

/// A stored incident as CTIA answers it (what socbridge reads of it).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct XdrIncident {
    /// The incident's URL, e.g. `https://private.intel.amp.cisco.com/ctia/incident/incident-<uuid>`.
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub external_ids: Vec<String>,
    #[serde(default)]
    pub external_references: Vec<ExternalReference>,
    #[serde(default)]
    pub incident_time: IncidentTime,
    #[serde(default)]
    pub title: Option<String>,
}

impl XdrIncident {
    /// The short id the `/ctia/incident/{id}` routes take: the last segment of `id`.
    pub fn short_id(&self) -> &str {
        short_id(&self.id)
    }

    /// Does it already link to this URL?
    pub fn references(&self, url: &str) -> bool {
        self.external_references
            .iter()
            .any(|r| r.url.as_deref() == Some(url))
    }
}

/// The last segment of an incident id URL (or the id itself when it is already short).
pub fn short_id(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// The body of `PATCH /ctia/incident/{id}`: only what changes.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct IncidentPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_time: Option<IncidentTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_references: Option<Vec<ExternalReference>>,
}

impl IncidentPatch {
    pub fn is_empty(&self) -> bool {
        self == &IncidentPatch::default()
    }
}

/// CTIM severity of a socbridge severity.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Informational => "Info",
        Severity::Low => "Low",
        Severity::Medium => "Medium",
        Severity::High => "High",
        Severity::Critical => "Critical",
    }
}

/// How socbridge statuses become XDR statuses (configurable per tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMap {
    pub new: String,
    pub in_progress: String,
    pub on_hold: String,
    pub resolved: String,
    pub closed: String,
}

impl Default for StatusMap {
    /// `new` → New, `in_progress` → Open, `on_hold` → Hold, `resolved` and `closed` →
    /// Closed: socbridge resolves a ticket closed in ServiceNow (state 6), and for XDR that is
    /// the end of the incident.
    fn default() -> Self {
        StatusMap {
            new: "New".into(),
            in_progress: "Open".into(),
            on_hold: "Hold".into(),
            resolved: "Closed".into(),
            closed: "Closed".into(),
        }
    }
}

impl StatusMap {
    pub fn of(&self, s: IncidentStatus) -> &str {
        match s {
            IncidentStatus::New => &self.new,
            IncidentStatus::InProgress => &self.in_progress,
            IncidentStatus::OnHold => &self.on_hold,
            IncidentStatus::Resolved => &self.resolved,
            IncidentStatus::Closed => &self.closed,
        }
    }

    /// Every value is a CTIM status; `Err` names the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("new", &self.new),
            ("in_progress", &self.in_progress),
            ("on_hold", &self.on_hold),
            ("resolved", &self.resolved),
            ("closed", &self.closed),
        ] {
            if !STATUSES.contains(&v.as_str()) {
                return Err(format!(
                    "status `{key}` maps to `{v}`, which is not an XDR status (one of {})",
                    STATUSES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The ServiceNow ticket as an external reference.
pub fn ticket_reference(number: &str, url: &str) -> ExternalReference {
    ExternalReference {
        source_name: TICKET_REFERENCE_SOURCE.into(),
        description: Some(format!("ServiceNow ticket {number}")),
        url: Some(url.into()),
        external_id: Some(number.into()),
    }
}

/// The markdown description: what happened, on which hosts, the findings.
pub fn description(d: &IncidentDetail, console_url: Option<&str>) -> String {
    let i = &d.incident;
    let mut s = format!(
        "**socbridge incident {}** for tenant `{}`: {}\n\n",
        i.id, i.tenant, i.title
    );
    s.push_str(&format!(
        "- Severity: {}\n- Findings: {}\n- First seen: {}\n- Last seen: {}\n",
        i.severity,
        i.finding_count,
        i.first_seen.to_rfc3339_seconds(),
        i.last_seen.to_rfc3339_seconds()
    ));
    if let Some(url) = console_url {
        s.push_str(&format!(
            "- In socbridge: {}/#/incidents/{}\n",
            url.trim_end_matches('/'),
            i.id
        ));
    }
    let hosts: Vec<&str> = i
        .observables
        .iter()
        .filter(|o| o.kind == socbridge_model::ObservableKind::Hostname)
        .map(|o| o.value.as_str())
        .collect();
    if !hosts.is_empty() {
        s.push_str("\n### Hosts\n\n");
        for h in hosts.iter().take(50) {
            s.push_str(&format!("- `{h}`\n"));
        }
    }
    s.push_str("\n### Findings\n\n");
    for f in d.findings.iter().take(20) {
        s.push_str(&format!(
            "- {} **{}** {} ({})\n",
            f.observed_at.to_rfc3339_seconds(),
            f.severity,
            f.title,
            f.source_kind
        ));
    }
    if d.findings.len() > 20 {
        s.push_str(&format!("- ... and {} more\n", d.findings.len() - 20));
    }
    s
}

/// The CTIM incident for a socbridge incident: the pure mapping, tested without a network.
/// `opened` is the incident's first seen; the ticket, when there is one, is a reference.
pub fn new_incident(
    d: &IncidentDetail,
    external_id: &str,
    status: &str,
    ticket: Option<(&str, &str)>,
    console_url: Option<&str>,
) -> NewIncident {
    let i = &d.incident;
    let mut title = format!("[{}] {}", i.tenant, i.title);
    if title.chars().count() > 1024 {
        title = title.chars().take(1023).collect::<String>() + "…";
    }
    NewIncident {
        kind: "incident",
        source: "socbridge".into(),
        short_description: format!("socbridge incident {} ({} findings)", i.id, i.finding_count),
        title,
        description: description(d, console_url),
        severity: severity(i.severity),
        tlp: "amber",
        confidence: "High",
        status: status.into(),
        incident_time: IncidentTime {
            opened: Some(i.first_seen.to_rfc3339()),
            closed: None,
        },
        external_ids: vec![external_id.into()],
        external_references: ticket
            .map(|(number, url)| vec![ticket_reference(number, url)])
            .unwrap_or_default(),
    }
}

/// CTIA's words from an error body: schema errors (`{"errors":{"confidence":
/// "missing-required-key"}}`) as `key: problem`, else `error_description`, `message` or
/// `error`, else the shared reading.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(body) {
        if let Some(Value::Object(errors)) = v.get("errors") {
            let parts: Vec<String> = errors
                .iter()
                .map(|(k, e)| match e {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect();
            if !parts.is_empty() {
                return parts.join("; ");
            }
        }
        for key in ["error_description", "message", "error"] {
            if let Some(s) = v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                return s.to_string();
            }
        }
    }
    crate::http::error_detail(body)
}

/// The stack's error with CTIA's words in place of the generic reading.
fn vendor_error(failure: CallFailure) -> ConnectorError {
    if failure.body.is_empty() {
        return failure.error;
    }
    let detail = error_detail(&failure.body);
    match failure.error {
        ConnectorError::Unauthorized { vendor, .. } => {
            ConnectorError::Unauthorized { vendor, detail }
        }
        ConnectorError::Forbidden { vendor, .. } => ConnectorError::Forbidden { vendor, detail },
        ConnectorError::NotFound { vendor, .. } => ConnectorError::NotFound { vendor, detail },
        ConnectorError::Http { vendor, status, .. } => ConnectorError::Http {
            vendor,
            status,
            detail,
        },
        other => other,
    }
}

/// Where a tenant's XDR is and who socbridge is there.
#[derive(Debug, Clone)]
pub struct XdrEndpoint {
    pub token_url: String,
    pub ctia_url: String,
    pub client_id: String,
}

/// A CTIA incident client for one API client (one tenant's XDR organisation).
pub struct XdrClient {
    http: HttpStack,
    token_url: Url,
    ctia_url: Url,
    client_id: String,
    secret: SecretString,
    tokens: TokenCache,
}

impl std::fmt::Debug for XdrClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdrClient")
            .field("token_url", &self.token_url.as_str())
            .field("ctia_url", &self.ctia_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn http_url(what: &str, u: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(u.trim()).map_err(|e| ConnectorError::Config {
        detail: format!("the XDR {what} URL `{u}` is not a URL ({e})"),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConnectorError::Config {
            detail: format!("the XDR {what} URL `{u}` must be http(s) with a host"),
        });
    }
    Ok(url)
}

/// What an API call met: an answer, or a refused token.
enum Outcome<T> {
    Done(T),
    TokenRefused(ConnectorError),
}

impl XdrClient {
    /// A client; tokens are shared through `tokens` with every client of the same API client.
    pub fn new(
        http: HttpStack,
        endpoint: &XdrEndpoint,
        secret: SecretString,
        tokens: TokenCache,
    ) -> Result<Self, ConnectorError> {
        if endpoint.client_id.trim().is_empty() {
            return Err(ConnectorError::Config {
                detail: "the XDR client id is empty".into(),
            });
        }
        let token_url = http_url("token", &endpoint.token_url)?;
        let mut ctia_url = http_url("CTIA", &endpoint.ctia_url)?;
        if !ctia_url.path().ends_with('/') {
            let path = format!("{}/", ctia_url.path());
            ctia_url.set_path(&path);
        }
        Ok(XdrClient {
            http,
            token_url,
            ctia_url,
            client_id: endpoint.client_id.trim().to_string(),
            secret,
            tokens,
        })
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.ctia_url.clone();
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}/{path}"));
        u
    }

    async fn fetch_token(&self) -> Result<IssuedToken, ConnectorError> {
        tracing::debug!(vendor = VENDOR, token_url = %self.token_url, "requesting a token");
        self.http
            .call_detailed(
                VENDOR,
                "token answer",
                Retry::Always,
                |c| {
                    c.post(self.token_url.clone())
                        .basic_auth(&self.client_id, Some(self.secret.expose_secret()))
                        .header(reqwest::header::ACCEPT, "application/json")
                        .form(&[("grant_type", "client_credentials")])
                },
                parse_token,
                |_| false,
            )
            .await
            .map(|a| a.value)
            .map_err(|f| vendor_error(*f))
    }

    async fn token(&self) -> Result<Lease, ConnectorError> {
        self.tokens
            .get(self.token_url.as_str(), &self.client_id, || {
                self.fetch_token()
            })
            .await
    }

    /// Asks for a token: proves the client id and secret work.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        self.token().await.map(|_| ())
    }

    /// Runs one API call with a token; a 401 with a cached token drops it and runs the call
    /// once more with a new one (the token expired early, or was revoked).
    async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, ConnectorError>
    where
        F: Fn(SecretString) -> Fut,
        Fut: std::future::Future<Output = Result<Outcome<T>, ConnectorError>>,
    {
        let mut retried = false;
        loop {
            let lease = self.token().await?;
            match call(lease.token.clone()).await? {
                Outcome::Done(v) => return Ok(v),
                Outcome::TokenRefused(e) => {
                    if lease.fresh || retried {
                        return Err(e);
                    }
                    tracing::info!(vendor = VENDOR, "token refused; getting a new one");
                    self.tokens
                        .invalidate(self.token_url.as_str(), &self.client_id, lease.generation)
                        .await;
                    retried = true;
                }
            }
        }
    }

    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
        retry: Retry,
        token: SecretString,
    ) -> Result<Outcome<Option<T>>, ConnectorError> {
        let answer = self
            .http
            .call_detailed(
                VENDOR,
                what,
                retry,
                |c| {
                    let mut rb = c
                        .request(method.clone(), url.clone())
                        .bearer_auth(token.expose_secret())
                        .header(reqwest::header::ACCEPT, "application/json");
                    if let Some(b) = body {
                        rb = rb.json(b);
                    }
                    rb
                },
                |bytes| serde_json::from_slice::<T>(bytes).map_err(|e| e.to_string()),
                |_| false,
            )
            .await;
        match answer {
            Ok(a) => Ok(Outcome::Done(Some(a.value))),
            Err(f) if f.status == Some(404) => Ok(Outcome::Done(None)),
            Err(f) if f.status == Some(401) => Ok(Outcome::TokenRefused(vendor_error(*f))),
            Err(f) => Err(vendor_error(*f)),
        }
    }

    /// The incident carrying this external id, if any (the oldest, should there be several).
    pub async fn find_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<XdrIncident>, ConnectorError> {
        let mut url = self.url("ctia/incident/external_id/");
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Config {
                detail: "the CTIA URL cannot hold a path".into(),
            })?
            .pop_if_empty()
            .push(external_id);
        let found: Vec<XdrIncident> = self
            .with_token(|token| {
                self.request::<Vec<XdrIncident>>(
                    reqwest::Method::GET,
                    url.clone(),
                    None,
                    "incidents by external id",
                    Retry::Always,
                    token,
                )
            })
            .await?
            .unwrap_or_default();
        Ok(found
            .into_iter()
            .find(|i| i.external_ids.iter().any(|e| e == external_id)))
    }

    /// `GET /ctia/incident/{id}`; `None` when XDR has no such incident.
    pub async fn get(&self, id: &str) -> Result<Option<XdrIncident>, ConnectorError> {
        let url = self.incident_url(id)?;
        self.with_token(|token| {
            self.request::<XdrIncident>(
                reqwest::Method::GET,
                url.clone(),
                None,
                "incident",
                Retry::Always,
                token,
            )
        })
        .await
    }

    fn incident_url(&self, id: &str) -> Result<Url, ConnectorError> {
        let mut url = self.url("ctia/incident/");
        url.path_segments_mut()
            .map_err(|()| ConnectorError::Config {
                detail: "the CTIA URL cannot hold a path".into(),
            })?
            .pop_if_empty()
            .push(short_id(id));
        Ok(url)
    }

    /// `POST /ctia/incident`, never repeated after it may have reached XDR: on an ambiguous
    /// error the caller looks the external id up before trying again.
    pub async fn create_incident(
        &self,
        incident: &NewIncident,
    ) -> Result<XdrIncident, ConnectorError> {
        let url = self.url("ctia/incident");
        let body = serde_json::to_value(incident).map_err(|e| ConnectorError::Config {
            detail: format!("the incident cannot be written as JSON ({e})"),
        })?;
        let created = self
            .with_token(|token| {
                self.request::<XdrIncident>(
                    reqwest::Method::POST,
                    url.clone(),
                    Some(&body),
                    "created incident",
                    Retry::NotAfterSending,
                    token,
                )
            })
            .await?;
        created.ok_or_else(|| ConnectorError::NotFound {
            vendor: VENDOR,
            detail: "POST /ctia/incident answered 404; check the CTIA URL".into(),
        })
    }

    /// `PATCH /ctia/incident/{id}` with only what changes; `None` when XDR has no such
    /// incident. Not repeated after it may have been sent: the caller reads the incident
    /// again and patches only what is still different, so a change lands once.
    pub async fn patch(
        &self,
        id: &str,
        patch: &IncidentPatch,
    ) -> Result<Option<XdrIncident>, ConnectorError> {
        let url = self.incident_url(id)?;
        let body = serde_json::to_value(patch).map_err(|e| ConnectorError::Config {
            detail: format!("the change cannot be written as JSON ({e})"),
        })?;
        self.with_token(|token| {
            self.request::<XdrIncident>(
                reqwest::Method::PATCH,
                url.clone(),
                Some(&body),
                "updated incident",
                Retry::NotAfterSending,
                token,
            )
        })
        .await
    }

    /// Sets the incident's status (a [`IncidentPatch`] of the status alone).
    pub async fn patch_status(
        &self,
        id: &str,
        status: &str,
    ) -> Result<Option<XdrIncident>, ConnectorError> {
        let patch = IncidentPatch {
            status: Some(status.into()),
            ..IncidentPatch::default()
        };
        self.patch(id, &patch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socbridge_model::{FindingView, IncidentView, Observable, SourceKind, Timestamp};

    fn detail() -> IncidentDetail {
        let t = |s: &str| Timestamp::parse_rfc3339(s).expect("a literal time");
        let obs: Vec<Observable> = serde_json::from_value(serde_json::json!([
            {"type": "hostname", "value": "WIN-ACME-07"},
            {"type": "ip", "value": "10.0.0.7"}
        ]))
        .expect("observables");
        IncidentDetail {
            incident: IncidentView {
                id: 42,
                tenant: "acme".into(),
                title: "Threat Detected on WIN-ACME-07".into(),
                severity: Severity::High,
                status: IncidentStatus::New,
                sources: vec![SourceKind::SecureEndpoint],
                created_at: t("2026-11-30T10:00:05Z"),
                updated_at: t("2026-11-30T10:00:05Z"),
                first_seen: t("2026-11-30T09:58:00Z"),
                last_seen: t("2026-11-30T09:59:00Z"),
                finding_count: 2,
                observables: obs.clone(),
                ticket: None,
                actions: vec![],
                resolution: None,
                assignee: None,
            },
            findings: vec![FindingView {
                id: 1,
                source: "secure-endpoint".into(),
                source_kind: SourceKind::SecureEndpoint,
                vendor_key: "k".into(),
                observed_at: t("2026-11-30T09:58:00Z"),
                severity: Severity::High,
                title: "Threat Detected".into(),
                event_type: "Threat Detected".into(),
                observables: obs,
                raw: serde_json::json!({}),
            }],
            timeline: vec![],
        }
    }

    #[test]
    fn the_incident_maps_to_a_ctim_incident() {
        let d = detail();
        let inc = new_incident(
            &d,
            "socbridge:ab:acme:incident:42",
            "New",
            Some((
                "INC0010001",
                "https://sn.example/nav_to.do?uri=incident.do?sys_id=1",
            )),
            None,
        );
        let v = serde_json::to_value(&inc).expect("JSON");
        assert_eq!(v["type"], "incident");
        assert_eq!(v["confidence"], "High");
        assert_eq!(v["tlp"], "amber");
        assert_eq!(v["severity"], "High");
        assert_eq!(v["status"], "New");
        assert_eq!(v["title"], "[acme] Threat Detected on WIN-ACME-07");
        assert_eq!(v["incident_time"]["opened"], "2026-11-30T09:58:00.000000Z");
        assert!(v["incident_time"].get("closed").is_none());
        assert_eq!(v["external_ids"][0], "socbridge:ab:acme:incident:42");
        assert_eq!(v["external_references"][0]["source_name"], "ServiceNow");
        assert_eq!(v["external_references"][0]["external_id"], "INC0010001");
        let desc = v["description"].as_str().expect("a description");
        assert!(desc.contains("`WIN-ACME-07`"), "{desc}");
        assert!(desc.contains("### Findings"), "{desc}");
        let bare = new_incident(&d, "x", "New", None, None);
        assert!(bare.external_references.is_empty());
    }

    #[test]
    fn statuses_and_severities() {
        let m = StatusMap::default();
        assert_eq!(m.of(IncidentStatus::New), "New");
        assert_eq!(m.of(IncidentStatus::InProgress), "Open");
        assert_eq!(m.of(IncidentStatus::OnHold), "Hold");
        assert_eq!(m.of(IncidentStatus::Resolved), "Closed");
        assert_eq!(m.of(IncidentStatus::Closed), "Closed");
        assert!(m.validate().is_ok());
        let bad = StatusMap {
            resolved: "Done".into(),
            ..StatusMap::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("resolved") && e.contains("Done"), "{e}");
        assert_eq!(severity(Severity::Informational), "Info");
        assert_eq!(severity(Severity::Critical), "Critical");
    }

    #[test]
    fn ctia_answers_and_errors_are_read() {
        let inc: XdrIncident = serde_json::from_str(
            r#"{"id":"https://private.intel.amp.cisco.com:443/ctia/incident/incident-5e1d","type":"incident",
                "status":"Open","confidence":"High","schema_version":"1.3.9",
                "incident_time":{"opened":"2026-11-30T09:58:00.000Z"},
                "external_ids":["socbridge:ab:acme:incident:42"],
                "external_references":[{"source_name":"ServiceNow","url":"https://sn/x"}]}"#,
        )
        .expect("an incident");
        assert_eq!(inc.short_id(), "incident-5e1d");
        assert!(inc.references("https://sn/x"));
        assert!(!inc.references("https://sn/y"));
        assert_eq!(short_id("incident-1"), "incident-1");
        assert_eq!(
            error_detail(br#"{"errors":{"confidence":"missing-required-key"}}"#),
            "confidence: missing-required-key"
        );
        assert_eq!(
            error_detail(br#"{"error":"invalid_client","error_description":"Bad client"}"#),
            "Bad client"
        );
        assert_eq!(error_detail(b"oops"), "oops");
        assert_eq!(
            region_urls("EU").map(|(t, _)| t),
            Some("https://visibility.eu.amp.cisco.com/iroh/oauth2/token")
        );
        assert!(region_urls("mars").is_none());
        let p = IncidentPatch::default();
        assert!(p.is_empty());
        assert_eq!(
            serde_json::to_value(IncidentPatch {
                status: Some("Closed".into()),
                ..IncidentPatch::default()
            })
            .expect("JSON"),
            serde_json::json!({"status": "Closed"})
        );
    }
}
