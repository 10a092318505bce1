//! Non-secret settings of a source, stored as JSON in the source's row: where the vendor is,
//! what to ask for, and how the cursor behaves. Secrets are kept apart, sealed.

use serde::{Deserialize, Serialize};
use socbridge_connectors::secure_endpoint::HIGH_PRIORITY_EVENT_TYPES;
use socbridge_model::SourceKind;
use std::time::Duration;

/// Default poll interval: the old workflows polled every 5 minutes; a minute keeps incidents
/// fresh well inside Secure Endpoint's 3000 requests an hour.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// First run looks back this far (what the XSOAR integration did).
pub const DEFAULT_LOOKBACK: Duration = Duration::from_secs(10 * 60);
/// Each poll re-asks this far behind the mark, catching late and same-second events; the
/// finding key drops what was already stored.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(2 * 60);
/// At most this many new findings per run (what XSOAR did), the rest on the next run.
pub const DEFAULT_CAP_PER_RUN: usize = 500;
/// Secure Endpoint's maximum page size.
pub const SECURE_ENDPOINT_MAX_PAGE: u32 = 500;
pub const SECURE_ENDPOINT_DEFAULT_URL: &str = "https://api.amp.cisco.com";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollSettings {
    pub poll_interval_secs: u64,
    pub lookback_secs: u64,
    pub overlap_secs: u64,
    pub cap_per_run: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            poll_interval_secs: DEFAULT_POLL_INTERVAL.as_secs(),
            lookback_secs: DEFAULT_LOOKBACK.as_secs(),
            overlap_secs: DEFAULT_OVERLAP.as_secs(),
            cap_per_run: DEFAULT_CAP_PER_RUN,
        }
    }
}

impl PollSettings {
    /// These settings with the given values replacing theirs.
    pub fn overlay(
        self,
        poll_interval: Option<Duration>,
        lookback: Option<Duration>,
        overlap: Option<Duration>,
        cap_per_run: Option<usize>,
    ) -> Self {
        PollSettings {
            poll_interval_secs: poll_interval.map_or(self.poll_interval_secs, |d| d.as_secs()),
            lookback_secs: lookback.map_or(self.lookback_secs, |d| d.as_secs()),
            overlap_secs: overlap.map_or(self.overlap_secs, |d| d.as_secs()),
            cap_per_run: cap_per_run.unwrap_or(self.cap_per_run),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.poll_interval_secs == 0 {
            return Err("`poll_interval` must be at least 1s".into());
        }
        if self.cap_per_run == 0 {
            return Err("`cap_per_run` must be at least 1".into());
        }
        Ok(())
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }
    pub fn lookback(&self) -> Duration {
        Duration::from_secs(self.lookback_secs)
    }
    pub fn overlap(&self) -> Duration {
        Duration::from_secs(self.overlap_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecureEndpointSettings {
    pub base_url: String,
    /// The API client id is an identifier, not a secret; the API key is sealed apart.
    pub client_id: String,
    pub event_types: Vec<u64>,
    pub page_size: u32,
    /// Also consume the organisation's Event Stream (AMQP push) while `serve` runs; the poll
    /// stays on as the safety net. Off unless asked for.
    #[serde(default)]
    pub push: bool,
    #[serde(flatten)]
    pub poll: PollSettings,
}

impl SecureEndpointSettings {
    pub fn new(
        base_url: Option<String>,
        client_id: String,
        event_types: Option<Vec<u64>>,
        page_size: Option<u32>,
        poll: PollSettings,
    ) -> Result<Self, String> {
        let base_url = base_url.unwrap_or_else(|| SECURE_ENDPOINT_DEFAULT_URL.to_string());
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| format!("`base_url` `{base_url}` is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`base_url` `{base_url}` must be http or https"));
        }
        if client_id.trim().is_empty() {
            return Err("`client_id` must not be empty".into());
        }
        let page_size = page_size.unwrap_or(SECURE_ENDPOINT_MAX_PAGE);
        if page_size == 0 || page_size > SECURE_ENDPOINT_MAX_PAGE {
            return Err(format!(
                "`page_size` must be between 1 and {SECURE_ENDPOINT_MAX_PAGE}"
            ));
        }
        let event_types = event_types.unwrap_or_else(|| HIGH_PRIORITY_EVENT_TYPES.to_vec());
        if event_types.is_empty() {
            return Err(
                "`event_types` must not be empty (leave it out for the 36 high-priority types)"
                    .into(),
            );
        }
        Ok(SecureEndpointSettings {
            base_url,
            client_id,
            event_types,
            page_size,
            push: false,
            poll,
        })
    }
}

pub const SYMANTEC_MSS_DEFAULT_URL: &str = "https://api.monitoredsecurity.com";
/// What the XSOAR integration fetched by default.
pub const SYMANTEC_MSS_DEFAULT_SEVERITIES: [&str; 2] = ["Emergency", "Critical"];
/// The severities `IncidentGetList` knows.
pub const SYMANTEC_MSS_SEVERITIES: [&str; 4] =
    ["Emergency", "Critical", "Warning", "Informational"];

/// How socbridge's incident states map onto the vendor's workflow values when it writes back
/// (`UpdateIncidentWorkflow`). The vendor's value sets are per contract, so they are settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowMapping {
    /// `Status` written when the incident is resolved or closed.
    pub closed_status: String,
    /// `Resolution` written with it.
    pub closed_resolution: String,
    /// `Status` written when the incident is reopened.
    pub reopened_status: String,
}

impl Default for WorkflowMapping {
    fn default() -> Self {
        WorkflowMapping {
            closed_status: "Closed".into(),
            closed_resolution: "Resolved".into(),
            reopened_status: "In Progress".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymantecMssSettings {
    /// The server URL (the service is at `{base_url}/SWS/incidents.asmx`).
    pub base_url: String,
    /// `IncidentGetList` severities (default Emergency and Critical).
    pub severities: Vec<String>,
    /// PEM of an extra root CA to trust (a private CA, e.g. the emulator's); not a secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca_pem: Option<String>,
    /// A proxy for this source only; without it HTTPS_PROXY / NO_PROXY apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// `1.2` (default) or `1.1`.
    pub soap_version: String,
    #[serde(default)]
    pub workflow: WorkflowMapping,
    #[serde(flatten)]
    pub poll: PollSettings,
}

impl SymantecMssSettings {
    pub fn new(
        base_url: Option<String>,
        severities: Option<Vec<String>>,
        root_ca_pem: Option<String>,
        proxy: Option<String>,
        soap_version: Option<String>,
        poll: PollSettings,
    ) -> Result<Self, String> {
        let base_url = base_url.unwrap_or_else(|| SYMANTEC_MSS_DEFAULT_URL.to_string());
        let parsed = url::Url::parse(&base_url)
            .map_err(|e| format!("`base_url` `{base_url}` is not a URL: {e}"))?;
        if parsed.scheme() != "https" {
            return Err(format!(
                "`base_url` `{base_url}` must be https (the service authenticates by client certificate over TLS)"
            ));
        }
        let severities = match severities {
            None => SYMANTEC_MSS_DEFAULT_SEVERITIES.map(String::from).to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for s in list {
                    let known = SYMANTEC_MSS_SEVERITIES
                        .iter()
                        .find(|k| k.eq_ignore_ascii_case(s.trim()))
                        .ok_or_else(|| {
                            format!(
                                "`severities`: `{s}` is not one of {}",
                                SYMANTEC_MSS_SEVERITIES.join(", ")
                            )
                        })?;
                    out.push((*known).to_string());
                }
                if out.is_empty() {
                    return Err(
                        "`severities` must not be empty (leave it out for Emergency and Critical)"
                            .into(),
                    );
                }
                out
            }
        };
        if let Some(p) = &proxy {
            url::Url::parse(p).map_err(|e| format!("`proxy` `{p}` is not a URL: {e}"))?;
        }
        let soap_version = soap_version.unwrap_or_else(|| "1.2".into());
        if !matches!(soap_version.as_str(), "1.1" | "1.2") {
            return Err(format!(
                "`soap_version` must be 1.1 or 1.2, not `{soap_version}`"
            ));
        }
        Ok(SymantecMssSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            severities,
            root_ca_pem,
            proxy,
            soap_version,
            workflow: WorkflowMapping::default(),
            poll,
        })
    }
}

/// What the MSSP workflows fetched: Command and Control (65) and Cryptomining (150).
pub const UMBRELLA_DEFAULT_CATEGORIES: [u32; 2] = [65, 150];
pub const UMBRELLA_DEFAULT_PAGE: u32 = 1000;
/// The activity endpoints a source may read.
pub const UMBRELLA_ACTIVITIES: [&str; 6] = ["all", "dns", "proxy", "firewall", "intrusion", "ip"];

/// An Umbrella source: one customer org read with a shared credential (an MSSP parent key, or
/// the org's own key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UmbrellaSettings {
    /// The name of the shared credential (`socbridge credential add`, `[[credentials]]`).
    pub credential: String,
    /// The child org a parent key acts for; `None`: the key's own org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// `all` (`/activity`) or one of `dns`, `proxy`, `firewall`, `intrusion`, `ip`.
    pub activity: String,
    /// `verdict` filter (default `blocked`); `None`: every verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Category ids (default 65, 150); empty: every category.
    pub categories: Vec<u32>,
    pub page_size: u32,
    #[serde(flatten)]
    pub poll: PollSettings,
}

impl UmbrellaSettings {
    pub fn new(
        credential: String,
        org_id: Option<String>,
        activity: Option<String>,
        verdict: Option<String>,
        categories: Option<Vec<u32>>,
        page_size: Option<u32>,
        poll: PollSettings,
    ) -> Result<Self, String> {
        if credential.trim().is_empty() {
            return Err("`credential` must name a shared credential".into());
        }
        if let Some(org) = &org_id {
            if org.is_empty() || !org.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!(
                    "`org_id` `{org}` must be the numeric Umbrella organisation id"
                ));
            }
        }
        let activity = activity
            .unwrap_or_else(|| "all".into())
            .to_ascii_lowercase();
        if !UMBRELLA_ACTIVITIES.contains(&activity.as_str()) {
            return Err(format!(
                "`activity` `{activity}` must be one of {}",
                UMBRELLA_ACTIVITIES.join(", ")
            ));
        }
        let page_size = page_size.unwrap_or(UMBRELLA_DEFAULT_PAGE);
        if page_size == 0 || page_size > 5000 {
            return Err("`page_size` must be between 1 and 5000".into());
        }
        let verdict = match verdict.as_deref().map(str::trim) {
            None => Some("blocked".to_string()),
            Some("" | "any") => None,
            Some(v) => Some(v.to_string()),
        };
        Ok(UmbrellaSettings {
            credential: credential.trim().to_string(),
            org_id,
            activity,
            verdict,
            categories: categories.unwrap_or_else(|| UMBRELLA_DEFAULT_CATEGORIES.to_vec()),
            page_size,
            poll,
        })
    }
}

/// A shared credential's settings, by kind (its secrets are sealed apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CredentialSettings {
    Umbrella {
        /// The API base (`https://api.umbrella.com`); the token endpoint is under it unless
        /// `token_url` says otherwise.
        base_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_url: Option<String>,
    },
}

/// The settings of a source, by kind (the JSON in the store carries the kind as a tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSettings {
    SecureEndpoint(SecureEndpointSettings),
    SymantecMss(SymantecMssSettings),
    Umbrella(UmbrellaSettings),
}

impl SourceSettings {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceSettings::SecureEndpoint(_) => SourceKind::SecureEndpoint,
            SourceSettings::SymantecMss(_) => SourceKind::SymantecMss,
            SourceSettings::Umbrella(_) => SourceKind::Umbrella,
        }
    }

    pub fn poll(&self) -> &PollSettings {
        match self {
            SourceSettings::SecureEndpoint(s) => &s.poll,
            SourceSettings::SymantecMss(s) => &s.poll,
            SourceSettings::Umbrella(s) => &s.poll,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("settings are plain data and always serialise")
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(v.clone())
            .map_err(|e| format!("stored settings are unreadable: {e}"))
    }
}
