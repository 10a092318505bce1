//! The declarative configuration file (`--config socbridge.toml`): tenants and their sources,
//! with secrets referenced by environment variable name, never written in the file.
//!
//! Unknown keys are errors (a typo must not silently disable a source). Secrets are looked up
//! in the process environment first, then in the optional `env_file` beside the config.

use crate::settings::{
    PollSettings, SecureEndpointSettings, SourceSettings, SymantecMssSettings, UmbrellaSettings,
};
use base64::Engine as _;
use secrecy::SecretString;
use serde::Deserialize;
use socbridge_model::{ContainmentPolicy, SourceKind, SourceName, TenantName};
use socbridge_secrets::SecretFields;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: tenant `{tenant}`, source `{source_name}`: {message}")]
    Source {
        path: PathBuf,
        tenant: String,
        source_name: String,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("env file {path}: {message}")]
    EnvFile { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    env_file: Option<PathBuf>,
    #[serde(default)]
    defaults: FileDefaults,
    #[serde(default)]
    tenants: Vec<FileTenant>,
    servicenow: Option<FileServiceNow>,
    /// Credentials shared by several sources (an MSSP's Umbrella parent key).
    #[serde(default)]
    credentials: Vec<FileCredential>,
    /// SIEM sinks: OCSF NDJSON forwarders.
    #[serde(default)]
    sinks: Vec<FileSink>,
}

/// `[[sinks]]`: a SIEM's HTTP collector that receives new findings and incident changes as
/// OCSF NDJSON, its token by environment variable name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    name: String,
    url: String,
    /// Sent as `Authorization: Bearer <token>`.
    token_env: Option<String>,
    tenants: Option<Vec<String>>,
    batch_size: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    timeout: Option<Duration>,
}

/// `[[credentials]]`: a named credential, secrets by environment variable name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    name: String,
    kind: SourceKind,
    base_url: Option<String>,
    token_url: Option<String>,
    key_env: String,
    secret_env: String,
}

/// `[servicenow]`: the one instance every tenant's tickets go to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServiceNow {
    instance_url: String,
    username: String,
    password_env: String,
    client_id: Option<String>,
    client_secret_env: Option<String>,
    webhook_secret_env: Option<String>,
    webhook_header: Option<String>,
    close_state: Option<String>,
    reopen_state: Option<String>,
    close_code: Option<String>,
    closed_states: Option<BTreeMap<String, socbridge_model::IncidentStatus>>,
    #[serde(default, with = "humantime_serde_opt")]
    sync_interval: Option<Duration>,
    category: Option<String>,
    assignment_group: Option<String>,
    caller_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefaults {
    #[serde(default, with = "humantime_serde_opt")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    lookback: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    overlap: Option<Duration>,
    cap_per_run: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTenant {
    name: TenantName,
    display_name: Option<String>,
    /// Ticket field overrides for this tenant.
    ticket: Option<crate::ticketing::TicketFields>,
    /// The tenant's containment policy (`{ action = "isolate" | "move-to-group", ... }`).
    containment: Option<ContainmentPolicy>,
    /// The tenant's Cisco XDR incident sink (`[tenants.xdr]`); absent: off.
    xdr: Option<FileXdr>,
    #[serde(default)]
    sources: Vec<FileSource>,
}

/// `[tenants.xdr]`: where the tenant's Cisco XDR is, the API client socbridge uses there
/// (its secret by environment variable name), and how statuses map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileXdr {
    client_id: String,
    client_secret_env: String,
    /// `us` (default), `eu` or `apjc`: the region's token and CTIA URLs.
    region: Option<String>,
    /// Overrides the region's token URL (`.../iroh/oauth2/token`).
    token_url: Option<String>,
    /// Overrides the region's CTIA base URL (routes under `/ctia/`).
    ctia_url: Option<String>,
    /// `false` keeps the section but turns the sink off.
    enabled: Option<bool>,
    /// socbridge status → XDR status, for the statuses given.
    statuses: Option<FileXdrStatuses>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileXdrStatuses {
    new: Option<String>,
    in_progress: Option<String>,
    on_hold: Option<String>,
    resolved: Option<String>,
    closed: Option<String>,
}

/// Every key a source may have; which ones a kind needs is checked after parsing so the error
/// can name the tenant and source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    name: SourceName,
    kind: SourceKind,
    base_url: Option<String>,
    client_id: Option<String>,
    api_key_env: Option<String>,
    event_types: Option<Vec<u64>>,
    #[serde(default, with = "humantime_serde_opt")]
    poll_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    lookback: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    overlap: Option<Duration>,
    cap_per_run: Option<usize>,
    page_size: Option<u32>,
    /// Secure Endpoint: also consume the Event Stream (push) while serving.
    push: Option<bool>,
    // Symantec MSS.
    /// A PEM file of an extra root CA (relative to the config file).
    ca_file: Option<PathBuf>,
    /// The environment variable holding the base64 of the client certificate's `.p12`.
    p12_env: Option<String>,
    /// Or the `.p12` file itself (relative to the config file).
    p12_file: Option<PathBuf>,
    p12_passphrase_env: Option<String>,
    severities: Option<Vec<String>>,
    proxy: Option<String>,
    soap_version: Option<String>,
    closed_status: Option<String>,
    closed_resolution: Option<String>,
    reopened_status: Option<String>,
    // Umbrella.
    /// The shared credential's name.
    credential: Option<String>,
    org_id: Option<String>,
    activity: Option<String>,
    verdict: Option<String>,
    categories: Option<Vec<u32>>,
}

/// The configuration, validated and with its secrets resolved.
#[derive(Debug)]
pub struct Config {
    pub path: PathBuf,
    pub tenants: Vec<TenantSpec>,
    pub servicenow: Option<ServiceNowSpec>,
    pub credentials: Vec<CredentialSpec>,
    /// `[[sinks]]`; none: no sink (applying the config removes any stored one).
    pub sinks: Vec<crate::sinks::SinkSpec>,
}

/// A shared credential from `[[credentials]]`, secrets resolved (`key`, `secret`).
#[derive(Debug)]
pub struct CredentialSpec {
    pub name: String,
    pub settings: crate::settings::CredentialSettings,
    pub secrets: SecretFields,
}

/// The ServiceNow link from `[servicenow]`, secrets resolved.
#[derive(Debug)]
pub struct ServiceNowSpec {
    pub settings: crate::ticketing::TicketingSettings,
    /// `password`, and `client_secret`, `webhook_secret` when configured.
    pub secrets: SecretFields,
}

#[derive(Debug)]
pub struct TenantSpec {
    pub name: TenantName,
    pub display_name: Option<String>,
    pub sources: Vec<SourceSpec>,
    /// Set when the file gives one; a tenant without it keeps what the CLI set.
    pub containment: Option<ContainmentPolicy>,
    /// The Cisco XDR sink; `None` (no section, or `enabled = false`) turns it off.
    pub xdr: Option<XdrSpec>,
}

/// A tenant's Cisco XDR sink from `[tenants.xdr]`, its secret resolved.
#[derive(Debug)]
pub struct XdrSpec {
    pub settings: crate::xdr::XdrSettings,
    /// `client_secret`.
    pub secrets: SecretFields,
}

#[derive(Debug)]
pub struct SourceSpec {
    pub name: SourceName,
    pub settings: SourceSettings,
    /// `Debug` shows the names only.
    pub secrets: SecretFields,
}

impl Config {
    /// Reads, validates and resolves the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates and resolves config text; `path` names it in errors and anchors `env_file`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let env_file = match &file.env_file {
            Some(rel) => {
                let p = path.parent().unwrap_or(Path::new(".")).join(rel);
                read_env_file(&p)?
            }
            None => BTreeMap::new(),
        };
        let lookup = |var: &str| -> Option<String> {
            std::env::var(var)
                .ok()
                .or_else(|| env_file.get(var).cloned())
        };
        let defaults = PollSettings::default().overlay(
            file.defaults.poll_interval,
            file.defaults.lookback,
            file.defaults.overlap,
            file.defaults.cap_per_run,
        );
        let mut seen_tenants = HashSet::new();
        let mut tenants = Vec::new();
        let mut ticket_overrides = BTreeMap::new();
        for t in file.tenants {
            if let Some(f) = &t.ticket {
                ticket_overrides.insert(t.name.to_string(), f.clone());
            }
            if !seen_tenants.insert(t.name.clone()) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("tenant `{}` is listed twice", t.name),
                });
            }
            let mut seen_sources = HashSet::new();
            let mut sources = Vec::new();
            for s in t.sources {
                let err = |message: String| ConfigError::Source {
                    path: path.to_path_buf(),
                    tenant: t.name.to_string(),
                    source_name: s.name.to_string(),
                    message,
                };
                if !seen_sources.insert(s.name.clone()) {
                    return Err(err("listed twice in this tenant".into()));
                }
                let poll = defaults.overlay(s.poll_interval, s.lookback, s.overlap, s.cap_per_run);
                poll.validate().map_err(err)?;
                if s.push.is_some() && s.kind != SourceKind::SecureEndpoint {
                    return Err(err(format!(
                        "`push` is only for kind secure_endpoint (Event Streams), not {}",
                        s.kind
                    )));
                }
                let (settings, secrets) = match s.kind {
                    SourceKind::SecureEndpoint => {
                        let client_id = s.client_id.clone().ok_or_else(|| {
                            err("`client_id` is required for kind secure_endpoint".into())
                        })?;
                        let var = s
                            .api_key_env
                            .clone()
                            .ok_or_else(|| err("`api_key_env` is required for kind secure_endpoint (the name of the environment variable holding the API key)".into()))?;
                        let key = lookup(&var).ok_or_else(|| {
                            err(format!(
                                "environment variable `{var}` (api_key_env) is not set{}",
                                if file.env_file.is_some() {
                                    " in the environment or the env file"
                                } else {
                                    ""
                                }
                            ))
                        })?;
                        let mut se = SecureEndpointSettings::new(
                            s.base_url.clone(),
                            client_id,
                            s.event_types.clone(),
                            s.page_size,
                            poll,
                        )
                        .map_err(err)?;
                        se.push = s.push.unwrap_or(false);
                        (
                            SourceSettings::SecureEndpoint(se),
                            SecretFields::new().with("api_key", SecretString::from(key)),
                        )
                    }
                    SourceKind::SymantecMss => {
                        let base = path.parent().unwrap_or(Path::new("."));
                        let env_var = |key: &str, var: &str| {
                            lookup(var).ok_or_else(|| {
                                err(format!(
                                    "environment variable `{var}` ({key}) is not set{}",
                                    if file.env_file.is_some() {
                                        " in the environment or the env file"
                                    } else {
                                        ""
                                    }
                                ))
                            })
                        };
                        let p12 = match (&s.p12_env, &s.p12_file) {
                            (Some(var), None) => env_var("p12_env", var)?,
                            (None, Some(f)) => {
                                let f = base.join(f);
                                let bytes = std::fs::read(&f).map_err(|e| {
                                    err(format!("cannot read `p12_file` {}: {e}", f.display()))
                                })?;
                                base64::engine::general_purpose::STANDARD.encode(bytes)
                            }
                            _ => {
                                return Err(err("exactly one of `p12_env` (the base64 of the client certificate's .p12) and `p12_file` is required for kind symantec_mss".into()));
                            }
                        };
                        let var = s.p12_passphrase_env.clone().ok_or_else(|| {
                            err("`p12_passphrase_env` is required for kind symantec_mss (the name of the environment variable holding the .p12 passphrase)".into())
                        })?;
                        let passphrase = env_var("p12_passphrase_env", &var)?;
                        let root_ca_pem = match &s.ca_file {
                            None => None,
                            Some(f) => {
                                let f = base.join(f);
                                Some(std::fs::read_to_string(&f).map_err(|e| {
                                    err(format!("cannot read `ca_file` {}: {e}", f.display()))
                                })?)
                            }
                        };
                        let mut mss = SymantecMssSettings::new(
                            s.base_url.clone(),
                            s.severities.clone(),
                            root_ca_pem,
                            s.proxy.clone(),
                            s.soap_version.clone(),
                            poll,
                        )
                        .map_err(err)?;
                        let wf = &mut mss.workflow;
                        for (value, slot) in [
                            (&s.closed_status, &mut wf.closed_status),
                            (&s.closed_resolution, &mut wf.closed_resolution),
                            (&s.reopened_status, &mut wf.reopened_status),
                        ] {
                            if let Some(v) = value {
                                *slot = v.clone();
                            }
                        }
                        (
                            SourceSettings::SymantecMss(mss),
                            SecretFields::new()
                                .with("p12", SecretString::from(p12))
                                .with("passphrase", SecretString::from(passphrase)),
                        )
                    }
                    SourceKind::Umbrella => {
                        let credential = s.credential.clone().ok_or_else(|| {
                            err("`credential` is required for kind umbrella (the name of a [[credentials]] entry)".into())
                        })?;
                        let u = UmbrellaSettings::new(
                            credential,
                            s.org_id.clone(),
                            s.activity.clone(),
                            s.verdict.clone(),
                            s.categories.clone(),
                            s.page_size,
                            poll,
                        )
                        .map_err(err)?;
                        (SourceSettings::Umbrella(u), SecretFields::new())
                    }
                };
                sources.push(SourceSpec {
                    name: s.name,
                    settings,
                    secrets,
                });
            }
            if let Some(p) = &t.containment {
                p.validate().map_err(|e| ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("tenant `{}`: containment: {e}", t.name),
                })?;
            }
            let xdr = match t.xdr {
                Some(x) if x.enabled != Some(false) => Some(xdr_spec(x, &t.name, &lookup, path)?),
                _ => None,
            };
            tenants.push(TenantSpec {
                name: t.name,
                display_name: t.display_name,
                sources,
                containment: t.containment,
                xdr,
            });
        }
        let mut credentials = Vec::new();
        let mut seen_credentials = HashSet::new();
        for c in file.credentials {
            let err = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("credential `{}`: {message}", c.name),
            };
            if !seen_credentials.insert(c.name.clone()) {
                return Err(err("listed twice".into()));
            }
            let settings = match c.kind {
                SourceKind::Umbrella => crate::settings::CredentialSettings::Umbrella {
                    base_url: c
                        .base_url
                        .clone()
                        .unwrap_or_else(|| socbridge_connectors::umbrella::CURRENT_BASE_URL.into()),
                    token_url: c.token_url.clone(),
                },
                other => {
                    return Err(err(format!(
                        "kind `{other}` has no shared credentials (only umbrella)"
                    )));
                }
            };
            let mut secrets = SecretFields::new();
            for (field, var) in [("key", &c.key_env), ("secret", &c.secret_env)] {
                let value = lookup(var).ok_or_else(|| {
                    err(format!(
                        "environment variable `{var}` ({field}_env) is not set{}",
                        if file.env_file.is_some() {
                            " in the environment or the env file"
                        } else {
                            ""
                        }
                    ))
                })?;
                secrets = secrets.with(field, SecretString::from(value));
            }
            credentials.push(CredentialSpec {
                name: c.name,
                settings,
                secrets,
            });
        }
        let servicenow = match file.servicenow {
            None => None,
            Some(sn) => Some(servicenow_spec(sn, ticket_overrides, &lookup, path)?),
        };
        let mut sinks = Vec::new();
        for sink in file.sinks {
            if sinks
                .iter()
                .any(|s: &crate::sinks::SinkSpec| s.name == sink.name)
            {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("sink `{}` is listed twice", sink.name),
                });
            }
            sinks.push(sink_spec(sink, &lookup, path)?);
        }
        Ok(Config {
            path: path.to_path_buf(),
            tenants,
            servicenow,
            credentials,
            sinks,
        })
    }
}

fn servicenow_spec(
    sn: FileServiceNow,
    tenants: BTreeMap<String, crate::ticketing::TicketFields>,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &Path,
) -> Result<ServiceNowSpec, ConfigError> {
    let err = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: format!("[servicenow]: {message}"),
    };
    let url = url::Url::parse(&sn.instance_url).map_err(|e| {
        err(format!(
            "`instance_url` `{}` is not a URL: {e}",
            sn.instance_url
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(format!(
            "`instance_url` `{}` must be http or https",
            sn.instance_url
        )));
    }
    if sn.username.trim().is_empty() {
        return Err(err("`username` must not be empty".into()));
    }
    let secret = |key: &str, var: &str| {
        lookup(var).ok_or_else(|| err(format!("environment variable `{var}` ({key}) is not set")))
    };
    let mut secrets = SecretFields::new().with(
        "password",
        SecretString::from(secret("password_env", &sn.password_env)?),
    );
    if let Some(var) = &sn.client_secret_env {
        if sn.client_id.is_none() {
            return Err(err("`client_secret_env` needs `client_id` (OAuth)".into()));
        }
        secrets = secrets.with(
            "client_secret",
            SecretString::from(secret("client_secret_env", var)?),
        );
    }
    if let Some(var) = &sn.webhook_secret_env {
        secrets = secrets.with(
            "webhook_secret",
            SecretString::from(secret("webhook_secret_env", var)?),
        );
    }
    let mut settings = crate::ticketing::TicketingSettings::defaults(sn.instance_url, sn.username);
    // OAuth only when both halves are given; a client id alone keeps Basic auth.
    settings.client_id = sn.client_id.filter(|_| sn.client_secret_env.is_some());
    if let Some(h) = sn.webhook_header {
        settings.webhook_header = h;
    }
    if let Some(v) = sn.close_state {
        settings.close_state = v;
    }
    if let Some(v) = sn.reopen_state {
        settings.reopen_state = v;
    }
    if let Some(v) = sn.close_code {
        settings.close_code = v;
    }
    if let Some(v) = sn.closed_states {
        if v.values().any(|s| s.is_open()) {
            return Err(err(
                "`closed_states` may map only to `resolved` or `closed`".into(),
            ));
        }
        settings.closed_states = v;
    }
    if !settings.closed_states.contains_key(&settings.close_state) {
        return Err(err(format!(
            "`close_state` {} is not one of `closed_states`",
            settings.close_state
        )));
    }
    if let Some(d) = sn.sync_interval {
        settings.sync_interval_secs = d.as_secs().max(1);
    }
    settings.fields = settings
        .fields
        .overlay_with(&crate::ticketing::TicketFields {
            category: sn.category,
            assignment_group: sn.assignment_group,
            caller_id: sn.caller_id,
        });
    settings.tenants = tenants;
    Ok(ServiceNowSpec { settings, secrets })
}

fn sink_spec(
    s: FileSink,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &Path,
) -> Result<crate::sinks::SinkSpec, ConfigError> {
    let err = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: format!("sink `{}`: {message}", s.name),
    };
    let name_ok = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        return Err(err(
            "`name` must be 1 to 64 lowercase letters, digits, `-` or `_`".into(),
        ));
    }
    let url =
        url::Url::parse(&s.url).map_err(|e| err(format!("`url` `{}` is not a URL: {e}", s.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(err(format!("`url` `{}` must be http or https", s.url)));
    }
    let batch_size = s.batch_size.unwrap_or(crate::sinks::DEFAULT_BATCH_SIZE);
    if !(1..=crate::sinks::MAX_BATCH_SIZE).contains(&batch_size) {
        return Err(err(format!(
            "`batch_size` must be between 1 and {}, got {batch_size}",
            crate::sinks::MAX_BATCH_SIZE
        )));
    }
    let timeout = s.timeout.unwrap_or(crate::sinks::DEFAULT_TIMEOUT);
    if timeout.is_zero() || timeout > Duration::from_secs(600) {
        return Err(err(format!(
            "`timeout` must be more than 0 and at most 10m, got {}",
            humantime::format_duration(timeout)
        )));
    }
    let mut tenants = Vec::new();
    for t in s.tenants.unwrap_or_default() {
        let t = t.trim().to_string();
        if TenantName::new(&t).is_err() {
            return Err(err(format!("`tenants`: `{t}` is not a tenant name")));
        }
        if !tenants.contains(&t) {
            tenants.push(t);
        }
    }
    let mut secrets = SecretFields::new();
    if let Some(var) = &s.token_env {
        let token = lookup(var).ok_or_else(|| {
            err(format!(
                "environment variable `{var}` (token_env) is not set"
            ))
        })?;
        secrets = secrets.with("token", SecretString::from(token));
    }
    Ok(crate::sinks::SinkSpec {
        name: s.name.clone(),
        settings: crate::sinks::SinkSettings {
            url: s.url.clone(),
            tenants,
            batch_size,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        secrets,
    })
}

fn xdr_spec(
    x: FileXdr,
    tenant: &TenantName,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &Path,
) -> Result<XdrSpec, ConfigError> {
    let err = |message: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: format!("tenant `{tenant}`: [tenants.xdr]: {message}"),
    };
    if x.client_id.trim().is_empty() {
        return Err(err("`client_id` must not be empty".into()));
    }
    let region = x.region.as_deref().unwrap_or("us");
    let (token_url, ctia_url) = socbridge_connectors::xdr::region_urls(region).ok_or_else(|| {
        err(format!(
            "`region` `{region}` is not one of us, eu, apjc (or give `token_url` and `ctia_url`)"
        ))
    })?;
    let token_url = x.token_url.unwrap_or_else(|| token_url.to_string());
    let ctia_url = x.ctia_url.unwrap_or_else(|| ctia_url.to_string());
    for (key, value) in [("token_url", &token_url), ("ctia_url", &ctia_url)] {
        let url = url::Url::parse(value)
            .map_err(|e| err(format!("`{key}` `{value}` is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(format!("`{key}` `{value}` must be http or https")));
        }
    }
    let mut statuses = socbridge_connectors::xdr::StatusMap::default();
    if let Some(s) = x.statuses {
        for (value, slot) in [
            (s.new, &mut statuses.new),
            (s.in_progress, &mut statuses.in_progress),
            (s.on_hold, &mut statuses.on_hold),
            (s.resolved, &mut statuses.resolved),
            (s.closed, &mut statuses.closed),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
    }
    statuses
        .validate()
        .map_err(|e| err(format!("`statuses`: {e}")))?;
    let var = &x.client_secret_env;
    let secret = lookup(var).ok_or_else(|| {
        err(format!(
            "environment variable `{var}` (client_secret_env) is not set"
        ))
    })?;
    Ok(XdrSpec {
        settings: crate::xdr::XdrSettings {
            client_id: x.client_id.trim().to_string(),
            token_url,
            ctia_url,
            statuses,
        },
        secrets: SecretFields::new().with("client_secret", SecretString::from(secret)),
    })
}

fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let iter = dotenvy::from_path_iter(path).map_err(|e| ConfigError::EnvFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut map = BTreeMap::new();
    for item in iter {
        let (k, v) = item.map_err(|e| ConfigError::EnvFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        map.insert(k, v);
    }
    Ok(map)
}

/// `"10m"`, `"90s"`, `"1h 30m"` via humantime, for optional fields.
mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a duration like \"90s\" or \"10m\": {e}"
                ))
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/nonexistent/socbridge.toml"))
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse("[[tenants]]\nname = \"acme\"\ncolour = \"red\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("colour"), "{msg}");
    }

    #[test]
    fn missing_secret_env_is_named() {
        let text = r#"
[[tenants]]
name = "acme"
[[tenants.sources]]
name = "amp"
kind = "secure_endpoint"
client_id = "c"
api_key_env = "SOCBRIDGE_TEST_SURELY_UNSET_VAR"
"#;
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.contains("SOCBRIDGE_TEST_SURELY_UNSET_VAR"), "{msg}");
        assert!(msg.contains("acme") && msg.contains("amp"), "{msg}");
    }

    #[test]
    fn push_is_read_for_secure_endpoint_and_refused_elsewhere() {
        // The key is read from a variable every environment has; its value does not matter.
        let text = |kind: &str, extra: &str| {
            format!(
                "[[tenants]]\nname = \"acme\"\n[[tenants.sources]]\nname = \"s\"\nkind = \"{kind}\"\nclient_id = \"c\"\napi_key_env = \"PATH\"\ncredential = \"u\"\n{extra}"
            )
        };
        let push_of = |cfg: Config| match &cfg.tenants[0].sources[0].settings {
            SourceSettings::SecureEndpoint(se) => se.push,
            other => panic!("not Secure Endpoint: {other:?}"),
        };
        assert!(push_of(
            parse(&text("secure_endpoint", "push = true\n")).unwrap()
        ));
        assert!(!push_of(parse(&text("secure_endpoint", "")).unwrap()));
        let msg = parse(&text("umbrella", "push = true\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`push`") && msg.contains("umbrella"), "{msg}");
    }

    #[test]
    fn sinks_are_read_with_defaults_and_their_mistakes_named() {
        let cfg = parse(
            "[[sinks]]\nname = \"siem\"\nurl = \"https://siem.example/ingest\"\ntoken_env = \"PATH\"\n\
             [[sinks]]\nname = \"lake\"\nurl = \"http://lake:8080/x\"\ntenants = [\"acme\"]\nbatch_size = 10\ntimeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(cfg.sinks.len(), 2);
        let siem = &cfg.sinks[0];
        assert_eq!(siem.settings.batch_size, crate::sinks::DEFAULT_BATCH_SIZE);
        assert_eq!(siem.settings.timeout_ms, 30_000);
        assert!(siem.settings.tenants.is_empty());
        assert!(siem.secrets.get("token").is_some());
        // The token is never shown.
        let token = std::env::var("PATH").unwrap();
        assert!(!format!("{cfg:?}").contains(&token));
        let lake = &cfg.sinks[1];
        assert_eq!(
            (lake.settings.batch_size, lake.settings.timeout_ms),
            (10, 5_000)
        );
        assert_eq!(lake.settings.tenants, vec!["acme".to_string()]);
        assert!(lake.secrets.is_empty());

        let bad = |extra: &str| {
            parse(&format!(
                "[[sinks]]\nname = \"siem\"\nurl = \"https://x/\"\n{extra}"
            ))
            .unwrap_err()
            .to_string()
        };
        let m = bad("token_env = \"SOCBRIDGE_TEST_SURELY_UNSET_SINK\"\n");
        assert!(
            m.contains("SOCBRIDGE_TEST_SURELY_UNSET_SINK") && m.contains("siem"),
            "{m}"
        );
        let m = bad("batch_size = 0\n");
        assert!(m.contains("batch_size") && m.contains("siem"), "{m}");
        let m = bad("timeout = \"0s\"\n");
        assert!(m.contains("timeout"), "{m}");
        let m = bad("tenants = [\"Not A Tenant\"]\n");
        assert!(m.contains("tenants") && m.contains("Not A Tenant"), "{m}");
        let m = bad("colour = \"red\"\n");
        assert!(m.contains("colour"), "{m}");
        let m = parse("[[sinks]]\nname = \"siem\"\nurl = \"ftp://x/\"\n")
            .unwrap_err()
            .to_string();
        assert!(m.contains("`url`") && m.contains("http or https"), "{m}");
        let m = parse("[[sinks]]\nname = \"s\"\nurl = \"http://x/\"\n[[sinks]]\nname = \"s\"\nurl = \"http://y/\"\n")
            .unwrap_err()
            .to_string();
        assert!(m.contains("listed twice"), "{m}");
    }

    #[test]
    fn xdr_sinks_are_read_and_their_mistakes_named() {
        // The secret is read from a variable every environment has; its value does not matter.
        let text = |extra: &str| {
            format!(
                "[[tenants]]\nname = \"acme\"\n[tenants.xdr]\nclient_id = \"client-01\"\nclient_secret_env = \"PATH\"\n{extra}"
            )
        };
        let cfg = parse(&text(
            "region = \"eu\"\n[tenants.xdr.statuses]\nresolved = \"Incident Reported\"\n",
        ))
        .unwrap();
        let x = cfg.tenants[0].xdr.as_ref().expect("the sink is on");
        assert_eq!(
            x.settings.token_url,
            "https://visibility.eu.amp.cisco.com/iroh/oauth2/token"
        );
        assert_eq!(
            x.settings.ctia_url,
            "https://private.intel.eu.amp.cisco.com"
        );
        assert_eq!(x.settings.statuses.resolved, "Incident Reported");
        assert_eq!(x.settings.statuses.closed, "Closed");
        assert!(!format!("{x:?}").contains("/usr"), "no secret in Debug");
        let off = parse(&text("enabled = false\n")).unwrap();
        assert!(off.tenants[0].xdr.is_none());
        for (extra, named) in [
            ("region = \"mars\"\n", "mars"),
            ("ctia_url = \"ftp://x\"\n", "ctia_url"),
            ("[tenants.xdr.statuses]\nclosed = \"Done\"\n", "Done"),
            ("colour = \"red\"\n", "colour"),
        ] {
            let msg = parse(&text(extra)).unwrap_err().to_string();
            assert!(msg.contains(named), "{extra}: {msg}");
        }
        let msg = parse(
            "[[tenants]]\nname = \"acme\"\n[tenants.xdr]\nclient_id = \"c\"\nclient_secret_env = \"SOCBRIDGE_TEST_SURELY_UNSET_XDR\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("SOCBRIDGE_TEST_SURELY_UNSET_XDR") && msg.contains("acme"),
            "{msg}"
        );
    }

    #[test]
    fn bad_duration_and_bad_names_are_named() {
        let msg = parse("[defaults]\nlookback = \"ten minutes\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("ten minutes"), "{msg}");
        let msg = parse("[[tenants]]\nname = \"Acme Corp\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("Acme Corp"), "{msg}");
    }
}
