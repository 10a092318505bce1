//! The Umbrella Reporting client: one API key (often an MSSP parent key), the activity
//! endpoints for any org the key may act for, through the shared HTTP stack.
//!
//! Reporting data lives in regional warehouses: a request may be answered with a 302 to
//! `api.us.reports.umbrella.com` or `api.eu.reports.umbrella.com`. reqwest drops the
//! `Authorization` header when a redirect changes host, so this client never lets reqwest
//! follow redirects ([`UmbrellaHttp`] is built with `redirect::Policy::none()`): it follows
//! them itself, at most [`MAX_REDIRECTS`] hops, re-sending `Authorization` and
//! `X-Umbrella-OrgID`, and only to a host it trusts with the token (the same host, a host
//! under `umbrella.com`, or loopback to loopback) and never from https down to http.

use super::VENDOR;
use super::error::UmbrellaError;
use super::token::{IssuedToken, Lease, TokenCache, parse_token};
use crate::ConnectorError;
use crate::http::{CallFailure, HttpOptions, HttpStack, Retry};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use serde_json::value::RawValue;
use socbridge_model::Timestamp;
use std::net::IpAddr;
use url::Url;

/// The current API host: token at `/auth/v2/token`, reports under `/reports/v2/`.
pub const CURRENT_BASE_URL: &str = "https://api.umbrella.com";
/// The legacy reports host: `/v2/organizations/{orgId}/...`.
pub const LEGACY_REPORTS_URL: &str = "https://reports.api.umbrella.com";
/// The legacy token endpoint (some clients call it with GET).
pub const LEGACY_TOKEN_URL: &str = "https://management.api.umbrella.com/auth/v2/oauth2/token";
/// The header with which a parent key acts for a child org.
pub const ORG_HEADER: &str = "X-Umbrella-OrgID";
/// The practical maximum of `limit`.
pub const MAX_LIMIT: u32 = 5000;
/// Redirect hops followed per request: a regional redirect is one hop; more than a few is a
/// loop.
pub const MAX_REDIRECTS: usize = 5;

/// How long a 429 without a hint is waited out (VENDOR-APIS: "back off about a second").
pub const RATE_LIMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Which reporting paths the client uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathStyle {
    /// `{base}/reports/v2/activity...`; a child org is named by `X-Umbrella-OrgID`.
    #[default]
    Current,
    /// `{base}/v2/organizations/{orgId}/activity...`; the org id is required.
    Legacy,
}

/// How the token endpoint is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenMethod {
    /// `POST` with the form `grant_type=client_credentials`.
    #[default]
    Post,
    /// `GET` without a body, as some clients call the legacy endpoint.
    Get,
}

/// One API key and where to use it.
#[derive(Clone)]
pub struct UmbrellaConfig {
    /// [`CURRENT_BASE_URL`] (a trailing `/reports/v2` is ignored), or for
    /// [`PathStyle::Legacy`] [`LEGACY_REPORTS_URL`] (a trailing `/v2` is ignored).
    pub base_url: String,
    /// The token endpoint; `None`: `{base_url}/auth/v2/token`.
    pub token_url: Option<String>,
    pub token_method: TokenMethod,
    pub path_style: PathStyle,
    /// The API key (the client id of the credentials).
    pub key: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for UmbrellaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmbrellaConfig")
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("token_method", &self.token_method)
            .field("path_style", &self.path_style)
            .field("key", &self.key)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl UmbrellaConfig {
    /// The current API at `base_url` with its own token endpoint, tokens by POST.
    pub fn new(base_url: impl Into<String>, key: impl Into<String>, secret: SecretString) -> Self {
        UmbrellaConfig {
            base_url: base_url.into(),
            token_url: None,
            token_method: TokenMethod::Post,
            path_style: PathStyle::Current,
            key: key.into(),
            secret,
        }
    }
}

/// The HTTP stack Umbrella clients use: the shared stack with a client that never follows
/// redirects itself. Build it once and give clones to every client, so all orgs share one
/// connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UmbrellaHttp(HttpStack);

impl UmbrellaHttp {
    pub fn new(mut opts: HttpOptions) -> Result<Self, UmbrellaError> {
        // The per-org limit (about 5 requests a second) answers 429 with no rate headers; the
        // documented remedy is to wait about a second, which quick retries would not give it.
        opts.rate_limit_default_wait.get_or_insert(RATE_LIMIT_WAIT);
        let client = HttpStack::client_builder(&opts)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| UmbrellaError::Service {
                org: None,
                source: ConnectorError::Config {
                    detail: format!("the Umbrella HTTP client cannot be built: {e}"),
                },
            })?;
        Ok(UmbrellaHttp(HttpStack::with_client(client, opts)))
    }

    pub fn stack(&self) -> &HttpStack {
        &self.0
    }
}

/// Which activity endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ActivityKind {
    /// `/activity`: every type.
    #[default]
    All,
    Dns,
    Proxy,
    Firewall,
    Intrusion,
    Ip,
}

impl ActivityKind {
    /// The path under the reports root.
    pub fn path(self) -> &'static str {
        match self {
            ActivityKind::All => "activity",
            ActivityKind::Dns => "activity/dns",
            ActivityKind::Proxy => "activity/proxy",
            ActivityKind::Firewall => "activity/firewall",
            ActivityKind::Intrusion => "activity/intrusion",
            ActivityKind::Ip => "activity/ip",
        }
    }
}

/// `order` of the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first: what a cursor wants, as offset paging then moves forward in time.
    #[default]
    Asc,
    Desc,
}

impl Order {
    pub fn as_str(self) -> &'static str {
        match self {
            Order::Asc => "asc",
            Order::Desc => "desc",
        }
    }
}

/// The parameters of one activity request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    /// The child org a parent key acts for (sent as `X-Umbrella-OrgID`, or in the legacy
    /// path); `None`: the key's own organisation.
    pub org_id: Option<String>,
    pub kind: ActivityKind,
    /// Sent as epoch milliseconds.
    pub from: Timestamp,
    /// Sent as epoch milliseconds.
    pub to: Timestamp,
    /// 1..=[`MAX_LIMIT`].
    pub limit: u32,
    pub offset: u64,
    pub order: Order,
    /// `allowed`, `blocked`, `proxied` (comma list).
    pub verdict: Option<String>,
    /// Category ids (e.g. 65 Command and Control, 150 Cryptomining); empty: all.
    pub categories: Vec<u32>,
    /// More filters as (name, value): `domains`, `ip`, `identityids`, `threats`...
    pub filters: Vec<(String, String)>,
}

/// The parameters this client sets itself; a filter may not repeat them.
const RESERVED_PARAMETERS: &[&str] = &[
    "from",
    "to",
    "limit",
    "offset",
    "order",
    "verdict",
    "categories",
];

impl ActivityQuery {
    /// Every record of `kind` between `from` and `to`, oldest first, 100 a page.
    pub fn new(org_id: Option<String>, kind: ActivityKind, from: Timestamp, to: Timestamp) -> Self {
        ActivityQuery {
            org_id,
            kind,
            from,
            to,
            limit: 100,
            offset: 0,
            order: Order::Asc,
            verdict: None,
            categories: Vec::new(),
            filters: Vec::new(),
        }
    }
}

/// One page of activity.
#[derive(Debug)]
pub struct ActivityPage {
    pub org_id: Option<String>,
    /// The offset and limit this page was asked with.
    pub offset: u64,
    pub limit: u32,
    /// Each record's exact JSON text.
    pub records: Vec<Box<RawValue>>,
}

impl ActivityPage {
    /// A full page: another may follow at `offset + limit` (the API gives no total and no
    /// next link).
    pub fn may_have_more(&self) -> bool {
        self.records.len() as u64 >= u64::from(self.limit)
    }

    /// The offset of the next page.
    pub fn next_offset(&self) -> u64 {
        self.offset.saturating_add(self.records.len() as u64)
    }
}

/// Reads an activity answer `{"meta":{},"data":[...]}` (a bare array is accepted too). The
/// outer error is an unreadable answer (retried like a truncated page); the inner one is an
/// error the API put in a 2xx answer (legacy `{"data":{"error":"..."}}`).
fn parse_activity_body(body: &[u8]) -> Result<Result<Vec<Box<RawValue>>, String>, String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        data: Option<Box<RawValue>>,
        message: Option<Value>,
    }
    let trimmed = body.trim_ascii_start();
    if trimmed.first() == Some(&b'[') {
        return serde_json::from_slice::<Vec<Box<RawValue>>>(body)
            .map(Ok)
            .map_err(|e| e.to_string());
    }
    let env: Envelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    match env.data {
        Some(data) if data.get().trim_start().starts_with('[') => {
            serde_json::from_str::<Vec<Box<RawValue>>>(data.get())
                .map(Ok)
                .map_err(|e| format!("`data`: {e}"))
        }
        Some(_) => Ok(Err(error_detail(body))),
        None if env.message.is_some() => Ok(Err(error_detail(body))),
        None => Err("the answer has no `data`".to_string()),
    }
}

/// Reads an activity answer: its records, each as its exact JSON text.
pub fn parse_activity_page(body: &[u8]) -> Result<Vec<Box<RawValue>>, String> {
    parse_activity_body(body)?
}

/// The API's own words from an error body: `{"message":"..."}`, the legacy
/// `{"data":{"error":"..."}}`, OAuth's `{"error":"...","error_description":"..."}`, else what
/// the shared stack reads.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let s = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        if let Some(data) = v.get("data").filter(|d| d.is_object()) {
            let err = data.get("error");
            if let Some(m) = s(err).or_else(|| s(err.and_then(|e| e.get("message")))) {
                return m;
            }
            if let Some(m) = s(data.get("message")) {
                return m;
            }
        }
        if let Some(m) = s(v.get("message")) {
            return m;
        }
        if let Some(e) = s(v.get("error")) {
            return match s(v.get("error_description")) {
                Some(d) => format!("{e}: {d}"),
                None => e,
            };
        }
    }
    crate::http::error_detail(body)
}

/// Checks an org id before it goes into a header or a path.
fn check_org(org: &str) -> Result<String, UmbrellaError> {
    let trimmed = org.trim();
    let bad = |detail: &str| UmbrellaError::BadOrgId {
        org: org.to_string(),
        detail: detail.to_string(),
    };
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    if trimmed.len() > 64 {
        return Err(bad("it is longer than 64 characters"));
    }
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad("only letters, digits, `-` and `_` may appear in it"));
    }
    Ok(trimmed.to_string())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// May the token follow a redirect from `from` to `to`?
fn redirect_allowed(from: &Url, to: &Url) -> Result<(), String> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(format!(
            "the target scheme `{}` is not http(s)",
            to.scheme()
        ));
    }
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err("it goes from https down to http".to_string());
    }
    let host = to.host_str().unwrap_or("").to_ascii_lowercase();
    let same_host = from.host_str().map(str::to_ascii_lowercase) == Some(host.clone());
    let umbrella = host == "umbrella.com" || host.ends_with(".umbrella.com");
    if same_host || umbrella || (is_loopback(from) && is_loopback(to)) {
        Ok(())
    } else {
        Err(format!(
            "the target host `{host}` is neither the requested host nor an umbrella.com host, so the token is not sent there"
        ))
    }
}

/// How one request (with its redirects) failed.
enum Refusal {
    /// 401: the token was refused.
    Unauthorized(String),
    Other(UmbrellaError),
}

/// An Umbrella Reporting client for one API key. Clients of the same key share its token
/// through the [`TokenCache`] they are given.
pub struct UmbrellaClient {
    /// Ends with `/`.
    base: Url,
    token_url: Url,
    token_method: TokenMethod,
    path_style: PathStyle,
    key: String,
    secret: SecretString,
    tokens: TokenCache,
    http: HttpStack,
}

impl std::fmt::Debug for UmbrellaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UmbrellaClient")
            .field("base", &self.base.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("path_style", &self.path_style)
            .field("key", &self.key)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

fn http_url(what: &'static str, raw: &str) -> Result<Url, UmbrellaError> {
    let bad = |detail: String| UmbrellaError::BadUrl {
        what,
        url: raw.to_string(),
        detail,
    };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(bad("is empty".into()));
    }
    let url = Url::parse(trimmed).map_err(|e| bad(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
        return Err(bad("must be an http(s) URL with a host".into()));
    }
    Ok(url)
}

impl UmbrellaClient {
    /// Builds the client: checks the URLs and that key and secret are given. Sends nothing.
    pub fn new(
        config: UmbrellaConfig,
        tokens: TokenCache,
        http: UmbrellaHttp,
    ) -> Result<Self, UmbrellaError> {
        let mut base = http_url("base", &config.base_url)?;
        let path = base.path().trim_end_matches('/');
        let suffix = match config.path_style {
            PathStyle::Current => "/reports/v2",
            PathStyle::Legacy => "/v2",
        };
        let path = path.strip_suffix(suffix).unwrap_or(path).to_string();
        base.set_path(&format!("{path}/"));
        base.set_query(None);
        base.set_fragment(None);
        let token_url = match config.token_url.as_deref() {
            Some(u) if !u.trim().is_empty() => http_url("token", u)?,
            _ => base
                .join("auth/v2/token")
                .map_err(|e| UmbrellaError::BadUrl {
                    what: "base",
                    url: config.base_url.clone(),
                    detail: format!("cannot hold the token path ({e})"),
                })?,
        };
        let key = config.key.trim().to_string();
        if key.is_empty() {
            return Err(UmbrellaError::MissingCredential { what: "key" });
        }
        if config.secret.expose_secret().trim().is_empty() {
            return Err(UmbrellaError::MissingCredential { what: "secret" });
        }
        Ok(UmbrellaClient {
            base,
            token_url,
            token_method: config.token_method,
            path_style: config.path_style,
            key,
            secret: config.secret,
            tokens,
            http: http.0,
        })
    }

    /// The token endpoint this client uses.
    pub fn token_url(&self) -> &Url {
        &self.token_url
    }

    /// The URL of an activity endpoint for `org` (before query parameters).
    pub fn activity_url(
        &self,
        org: Option<&str>,
        kind: ActivityKind,
    ) -> Result<Url, UmbrellaError> {
        let path = match (self.path_style, org) {
            (PathStyle::Current, _) => format!("reports/v2/{}", kind.path()),
            (PathStyle::Legacy, Some(org)) => {
                format!("v2/organizations/{}/{}", check_org(org)?, kind.path())
            }
            (PathStyle::Legacy, None) => return Err(UmbrellaError::MissingOrgId),
        };
        self.base.join(&path).map_err(|e| UmbrellaError::BadUrl {
            what: "base",
            url: self.base.to_string(),
            detail: format!("cannot hold the reporting path ({e})"),
        })
    }

    /// A token for this key: the shared one, or a new one when none is valid.
    async fn token(&self) -> Result<Lease, UmbrellaError> {
        self.tokens
            .get(self.token_url.as_str(), &self.key, || self.fetch_token())
            .await
    }

    /// Asks the token endpoint for a token. A 429 is waited out by the stack (`Retry-After`,
    /// else its backoff), within its bounds.
    async fn fetch_token(&self) -> Result<IssuedToken, UmbrellaError> {
        tracing::debug!(vendor = VENDOR, token_url = %self.token_url, "requesting a token");
        let result = self
            .http
            .call_detailed(
                VENDOR,
                "token answer",
                Retry::Always,
                |c| {
                    let rb = match self.token_method {
                        TokenMethod::Post => c
                            .post(self.token_url.clone())
                            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                            .body("grant_type=client_credentials"),
                        TokenMethod::Get => c.get(self.token_url.clone()),
                    };
                    rb.basic_auth(&self.key, Some(self.secret.expose_secret()))
                        .header(ACCEPT, "application/json")
                },
                parse_token,
                |_| false,
            )
            .await;
        match result {
            Ok(answer) => Ok(answer.value),
            Err(failure) => Err(self.token_failure(*failure)),
        }
    }

    fn token_failure(&self, failure: CallFailure) -> UmbrellaError {
        let detail = error_detail(&failure.body);
        match (failure.status, &failure.error) {
            (Some(status @ (401 | 403)), _) => UmbrellaError::TokenRefused { status, detail },
            (Some(400), _)
                if detail.contains("invalid_client") || detail.contains("unauthorized_client") =>
            {
                UmbrellaError::TokenRefused {
                    status: 400,
                    detail,
                }
            }
            (Some(404), _) => UmbrellaError::TokenEndpointNotFound {
                url: self.token_url.to_string(),
                detail,
            },
            (_, ConnectorError::Decode { detail, .. }) => UmbrellaError::TokenMalformed {
                detail: detail.clone(),
            },
            _ => UmbrellaError::Service {
                org: None,
                source: failure.error,
            },
        }
    }

    /// One page of activity for `query.org_id`.
    ///
    /// A 401 drops the key's token and retries once with a new one (another org's request may
    /// have been refused with the same token); a 401 with a new token is
    /// [`UmbrellaError::Unauthorized`]. A 403 for a child org is
    /// [`UmbrellaError::OrgNotDelegated`], not retried. A 429 is retried after a backoff
    /// (the stack's, starting near a second in production), for this request only.
    pub async fn activity_page(
        &self,
        query: &ActivityQuery,
    ) -> Result<ActivityPage, UmbrellaError> {
        let org = query.org_id.as_deref().map(check_org).transpose()?;
        let bad = |detail: String| UmbrellaError::BadQuery {
            org: org.clone(),
            detail,
        };
        if query.limit == 0 || query.limit > MAX_LIMIT {
            return Err(bad(format!(
                "limit {} is outside 1..={MAX_LIMIT}",
                query.limit
            )));
        }
        if query.from > query.to {
            return Err(bad(format!(
                "`from` {} is after `to` {}",
                query.from, query.to
            )));
        }
        for (name, _) in &query.filters {
            let n = name.trim();
            if n.is_empty() {
                return Err(bad("a filter has an empty name".into()));
            }
            if RESERVED_PARAMETERS.contains(&n.to_ascii_lowercase().as_str()) {
                return Err(bad(format!(
                    "the filter `{n}` is set by the query's own field, not as a filter"
                )));
            }
        }

        let mut url = self.activity_url(org.as_deref(), query.kind)?;
        {
            let millis = |t: Timestamp| t.as_micros().div_euclid(1_000).to_string();
            let mut q = url.query_pairs_mut();
            q.append_pair("from", &millis(query.from));
            q.append_pair("to", &millis(query.to));
            q.append_pair("limit", &query.limit.to_string());
            q.append_pair("offset", &query.offset.to_string());
            q.append_pair("order", query.order.as_str());
            if let Some(v) = query
                .verdict
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
            {
                q.append_pair("verdict", v);
            }
            if !query.categories.is_empty() {
                let list: Vec<String> = query.categories.iter().map(u32::to_string).collect();
                q.append_pair("categories", &list.join(","));
            }
            for (name, value) in &query.filters {
                q.append_pair(name.trim(), value);
            }
        }

        let mut retried = false;
        loop {
            let lease = self.token().await?;
            match self.get_records(&url, &lease, org.as_deref()).await {
                Ok(records) => {
                    return Ok(ActivityPage {
                        org_id: org,
                        offset: query.offset,
                        limit: query.limit,
                        records,
                    });
                }
                Err(Refusal::Unauthorized(detail)) => {
                    if lease.fresh || retried {
                        return Err(UmbrellaError::Unauthorized { org, detail });
                    }
                    tracing::info!(
                        vendor = VENDOR,
                        org = org.as_deref().unwrap_or("-"),
                        "token refused; getting a new one"
                    );
                    retried = true;
                    self.tokens
                        .invalidate(self.token_url.as_str(), &self.key, lease.generation)
                        .await;
                }
                Err(Refusal::Other(e)) => return Err(e),
            }
        }
    }

    /// GET with the token, following redirects by hand.
    async fn get_records(
        &self,
        url: &Url,
        lease: &Lease,
        org: Option<&str>,
    ) -> Result<Vec<Box<RawValue>>, Refusal> {
        let owned_org = || org.map(str::to_string);
        let send_org_header = self.path_style == PathStyle::Current;
        let mut current = url.clone();
        for _hop in 0..=MAX_REDIRECTS {
            let target = current.clone();
            let result = self
                .http
                .call_detailed(
                    VENDOR,
                    "activity page",
                    Retry::Always,
                    |c| {
                        let rb = c
                            .get(target.clone())
                            .bearer_auth(lease.token.expose_secret())
                            .header(ACCEPT, "application/json");
                        match (send_org_header, org) {
                            (true, Some(o)) => rb.header(ORG_HEADER, o),
                            _ => rb,
                        }
                    },
                    parse_activity_body,
                    |_| false,
                )
                .await;
            let failure = match result {
                Ok(answer) => {
                    return answer.value.map_err(|detail| {
                        Refusal::Other(UmbrellaError::Api {
                            org: owned_org(),
                            detail,
                        })
                    });
                }
                Err(f) => *f,
            };
            match failure.status {
                Some(301 | 302 | 303 | 307 | 308) => {
                    current = next_hop(&target, &failure.headers).map_err(|detail| {
                        Refusal::Other(UmbrellaError::Redirect {
                            org: owned_org(),
                            detail,
                        })
                    })?;
                    tracing::debug!(vendor = VENDOR, to = %current.host_str().unwrap_or(""), "following a redirect");
                }
                Some(401) => return Err(Refusal::Unauthorized(error_detail(&failure.body))),
                Some(403) => {
                    let detail = error_detail(&failure.body);
                    return Err(Refusal::Other(match org {
                        Some(o) => UmbrellaError::OrgNotDelegated {
                            org: o.to_string(),
                            detail,
                        },
                        None => UmbrellaError::Forbidden { detail },
                    }));
                }
                Some(status) if !(200..300).contains(&status) && status != 429 => {
                    let detail = error_detail(&failure.body);
                    let source = match failure.error {
                        ConnectorError::Http { vendor, status, .. } => ConnectorError::Http {
                            vendor,
                            status,
                            detail,
                        },
                        ConnectorError::NotFound { vendor, .. } => {
                            ConnectorError::NotFound { vendor, detail }
                        }
                        other => other,
                    };
                    return Err(Refusal::Other(UmbrellaError::Service {
                        org: owned_org(),
                        source,
                    }));
                }
                _ => {
                    return Err(Refusal::Other(UmbrellaError::Service {
                        org: owned_org(),
                        source: failure.error,
                    }));
                }
            }
        }
        Err(Refusal::Other(UmbrellaError::Redirect {
            org: owned_org(),
            detail: format!(
                "more than {MAX_REDIRECTS} redirects, last to {}",
                strip_query(&current)
            ),
        }))
    }

    /// The connection test: a token, and one activity request of the last minute with
    /// `limit=1` for `org_id` (`None`: the key's own organisation).
    pub async fn check(&self, org_id: Option<&str>) -> Result<(), UmbrellaError> {
        let to = Timestamp::now();
        let from = to.saturating_sub_micros(60_000_000);
        let mut query = ActivityQuery::new(org_id.map(str::to_string), ActivityKind::All, from, to);
        query.limit = 1;
        self.activity_page(&query).await.map(|_| ())
    }
}

/// A URL for messages: without its query.
fn strip_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// Where a redirect answer points, checked for the token's sake.
fn next_hop(from: &Url, headers: &HeaderMap) -> Result<Url, String> {
    let location = headers
        .get(LOCATION)
        .ok_or_else(|| "the redirect has no `Location`".to_string())?
        .to_str()
        .map_err(|_| "the redirect's `Location` is not text".to_string())?;
    let to = from
        .join(location.trim())
        .map_err(|e| format!("the redirect's `Location` is not a URL ({e})"))?;
    redirect_allowed(from, &to)
        .map_err(|why| format!("redirect to {} refused: {why}", strip_query(&to)))?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(style: PathStyle, base: &str) -> UmbrellaClient {
        let mut cfg = UmbrellaConfig::new(base, "key", SecretString::from("s3cret".to_string()));
        cfg.path_style = style;
        UmbrellaClient::new(
            cfg,
            TokenCache::new(),
            UmbrellaHttp::new(HttpOptions::for_tests()).expect("http"),
        )
        .expect("client")
    }

    #[test]
    fn urls_of_both_path_styles() {
        let c = client(PathStyle::Current, "https://api.umbrella.com/reports/v2/");
        assert_eq!(
            c.token_url().as_str(),
            "https://api.umbrella.com/auth/v2/token"
        );
        assert_eq!(
            c.activity_url(Some("123"), ActivityKind::Dns)
                .expect("url")
                .as_str(),
            "https://api.umbrella.com/reports/v2/activity/dns"
        );
        let l = client(PathStyle::Legacy, "https://reports.api.umbrella.com/v2");
        assert_eq!(
            l.activity_url(Some("123"), ActivityKind::All)
                .expect("url")
                .as_str(),
            "https://reports.api.umbrella.com/v2/organizations/123/activity"
        );
        assert!(matches!(
            l.activity_url(None, ActivityKind::All),
            Err(UmbrellaError::MissingOrgId)
        ));
        assert!(matches!(
            l.activity_url(Some("1/../2"), ActivityKind::All),
            Err(UmbrellaError::BadOrgId { .. })
        ));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
    }

    #[test]
    fn credentials_and_urls_are_checked() {
        let http = UmbrellaHttp::new(HttpOptions::for_tests()).expect("http");
        let empty = UmbrellaConfig::new(
            "https://api.umbrella.com",
            " ",
            SecretString::from("s".to_string()),
        );
        let err = UmbrellaClient::new(empty, TokenCache::new(), http.clone()).expect_err("no key");
        assert!(err.is_bad_input(), "{err}");
        let no_secret = UmbrellaConfig::new(
            "https://api.umbrella.com",
            "k",
            SecretString::from(String::new()),
        );
        assert!(matches!(
            UmbrellaClient::new(no_secret, TokenCache::new(), http.clone()),
            Err(UmbrellaError::MissingCredential { what: "secret" })
        ));
        let ftp = UmbrellaConfig::new("ftp://x", "k", SecretString::from("s".to_string()));
        assert!(matches!(
            UmbrellaClient::new(ftp, TokenCache::new(), http),
            Err(UmbrellaError::BadUrl { .. })
        ));
    }

    #[test]
    fn redirects_the_token_may_follow() {
        let u = |s: &str| Url::parse(s).expect("url");
        let api = u("https://api.umbrella.com/reports/v2/activity");
        assert!(
            redirect_allowed(
                &api,
                &u("https://api.eu.reports.umbrella.com/reports/v2/activity")
            )
            .is_ok()
        );
        assert!(redirect_allowed(&api, &u("http://api.eu.reports.umbrella.com/x")).is_err());
        assert!(redirect_allowed(&api, &u("https://evil.example/x")).is_err());
        assert!(redirect_allowed(&api, &u("https://umbrella.com.evil.example/x")).is_err());
        assert!(redirect_allowed(&u("http://127.0.0.1:1/a"), &u("http://127.0.0.1:2/a")).is_ok());
        assert!(redirect_allowed(&u("http://127.0.0.1:1/a"), &u("http://localhost:2/a")).is_ok());
    }

    #[test]
    fn bodies_and_error_words() {
        let recs = parse_activity_page(br#"{"meta":{},"data":[{"a":1},{"b":2}]}"#).expect("page");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].get(), r#"{"b":2}"#);
        assert!(matches!(
            parse_activity_body(br#"{"data":{"error":"Invalid organization"}}"#),
            Ok(Err(ref d)) if d == "Invalid organization"
        ));
        assert!(parse_activity_body(br#"{"data":[1,"#).is_err());
        assert_eq!(
            error_detail(br#"{"message":"Unauthorized"}"#),
            "Unauthorized"
        );
        assert_eq!(
            error_detail(br#"{"data":{"error":"Not authorized for organization"}}"#),
            "Not authorized for organization"
        );
        assert_eq!(
            error_detail(br#"{"error":"invalid_client","error_description":"bad secret"}"#),
            "invalid_client: bad secret"
        );
        assert_eq!(error_detail(b""), "empty answer");
    }
}
