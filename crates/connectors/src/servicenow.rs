//! ServiceNow Table API (`incident` and `sys_journal_field`): the wire types and a client.
//!
//! Every value ServiceNow returns is a string; reference fields come as `{link, value}`, or
//! with `sysparm_display_value=all` as `{display_value, value}`. [`Field`] reads all three so
//! the client works whatever the instance or a proxy in front of it adds. Times are
//! `YYYY-MM-DD HH:MM:SS` in UTC and are parsed here, at the edge, never compared as strings.
//!
//! Writes: a create or a journal append repeated after an ambiguous failure would act twice,
//! so they go out with [`Retry::NotAfterSending`] and the caller looks the result up
//! (`find_by_correlation_id`, the journal) before trying again. A PATCH of plain fields is
//! idempotent and is retried like a read.

use crate::ConnectorError;
use crate::http::{HttpStack, Retry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};
use socbridge_model::Timestamp;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use url::Url;

pub const VENDOR: &str = "ServiceNow";

/// The longest `correlation_id` socbridge writes (Kibana's connector uses the same bound; the
/// column is 100 characters on default instances).
pub const MAX_CORRELATION_ID: usize = 100;

/// Fields socbridge reads back from a ticket.
pub const TICKET_FIELDS: &str = "sys_id,number,state,close_code,close_notes,correlation_id,\
correlation_display,sys_updated_on,sys_updated_by,sys_created_on,closed_at,resolved_at,\
assigned_to,assignment_group,short_description,impact,urgency,active";

/// How socbridge signs in.
#[derive(Clone)]
pub enum Auth {
    /// Basic auth with an integration user.
    Basic {
        user: String,
        password: SecretString,
    },
    /// OAuth password grant (`POST /oauth_token.do`) with the integration user; the bearer
    /// token is cached until shortly before it expires.
    OAuth {
        client_id: String,
        client_secret: SecretString,
        user: String,
        password: SecretString,
    },
}

impl Auth {
    /// The ServiceNow user name socbridge writes as (`sys_updated_by`, `sys_created_by` of its
    /// own writes): how its echoes are recognised.
    pub fn user(&self) -> &str {
        match self {
            Auth::Basic { user, .. } | Auth::OAuth { user, .. } => user,
        }
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"[REDACTED]")
                .finish(),
            Auth::OAuth {
                client_id, user, ..
            } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("user", user)
                .field("secrets", &"[REDACTED]")
                .finish(),
        }
    }
}

/// A string field, a reference (`{link, value}`) or a display pair (`{display_value, value}`):
/// always read as its raw `value`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field(pub String);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Text(String),
            Object { value: Option<Value> },
            Null(()),
        }
        Ok(Field(match Wire::deserialize(d)? {
            Wire::Text(s) => s,
            Wire::Object { value } => match value {
                Some(Value::String(s)) => s,
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            },
            Wire::Null(()) => String::new(),
        }))
    }
}

impl Field {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// `None` for the empty string ServiceNow sends for "no value".
    pub fn non_empty(&self) -> Option<&str> {
        Some(self.0.as_str()).filter(|s| !s.is_empty())
    }
}

/// The ticket fields socbridge keeps in step.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Ticket {
    pub sys_id: Field,
    #[serde(default)]
    pub number: Field,
    #[serde(default)]
    pub state: Field,
    #[serde(default)]
    pub close_code: Field,
    #[serde(default)]
    pub close_notes: Field,
    #[serde(default)]
    pub correlation_id: Field,
    #[serde(default)]
    pub sys_updated_on: Field,
    #[serde(default)]
    pub sys_updated_by: Field,
    #[serde(default)]
    pub closed_at: Field,
    #[serde(default)]
    pub resolved_at: Field,
    #[serde(default)]
    pub assigned_to: Field,
    #[serde(default)]
    pub short_description: Field,
    #[serde(default)]
    pub impact: Field,
    #[serde(default)]
    pub urgency: Field,
}

impl Ticket {
    /// `sys_updated_on` as a time, if the instance sent one.
    pub fn updated_on(&self) -> Option<Timestamp> {
        parse_time(self.sys_updated_on.as_str())
    }
}

/// One `sys_journal_field` row: a work note or comment.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    pub sys_id: Field,
    #[serde(default)]
    pub element: Field,
    #[serde(default)]
    pub element_id: Field,
    #[serde(default)]
    pub value: Field,
    #[serde(default)]
    pub sys_created_on: Field,
    #[serde(default)]
    pub sys_created_by: Field,
}

/// Parses ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn parse_time(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|dt| Timestamp::from_datetime(dt.and_utc()))
}

/// Formats a time the way encoded queries compare it.
pub fn format_time(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// Escapes a value for an encoded query: `^` is the separator and is written `^^`.
pub fn query_value(v: &str) -> String {
    v.replace('^', "^^")
}

#[derive(Deserialize)]
struct One<T> {
    result: T,
}

/// Reads a Table API answer `{"result": ...}` as `T` (a [`Ticket`], `Vec<Ticket>`,
/// `Vec<JournalEntry>`): what every call of [`ServiceNowClient`] does with a 2xx body. Public
/// so the answers' parsing can be exercised on its own (the fuzz checks).
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, One<T>>(de)
        .map(|o| o.result)
        .map_err(|e| format!("`{}`: {}", e.path(), e.inner()))
}

/// A page of a list query.
#[derive(Debug)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    /// `X-Total-Count`: matching records across all pages.
    pub total: Option<u64>,
}

/// A client for one ServiceNow instance.
pub struct ServiceNowClient {
    base: Url,
    auth: Auth,
    http: HttpStack,
    token: Mutex<Option<(SecretString, Instant)>>,
}

impl std::fmt::Debug for ServiceNowClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceNowClient")
            .field("base", &self.base.as_str())
            .field("auth", &self.auth)
            .finish()
    }
}

enum Method {
    Get,
    Post,
    Patch,
}

impl ServiceNowClient {
    /// `instance_url` is the instance's root (`https://acme.service-now.com`).
    pub fn new(instance_url: &str, auth: Auth, http: HttpStack) -> Result<Self, ConnectorError> {
        let mut base = Url::parse(instance_url.trim()).map_err(|e| ConnectorError::Config {
            detail: format!("ServiceNow instance URL `{instance_url}` is not a URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConnectorError::Config {
                detail: format!("ServiceNow instance URL `{instance_url}` must be an http(s) URL"),
            });
        }
        let path = base.path().trim_end_matches('/').to_string();
        base.set_path(&format!("{path}/"));
        base.set_query(None);
        if auth.user().trim().is_empty() {
            return Err(ConnectorError::Config {
                detail: "ServiceNow user is empty".into(),
            });
        }
        Ok(ServiceNowClient {
            base,
            auth,
            http,
            token: Mutex::new(None),
        })
    }

    /// The user socbridge writes as.
    pub fn user(&self) -> &str {
        self.auth.user()
    }

    /// The link an analyst follows to the ticket.
    pub fn ticket_url(&self, sys_id: &str) -> String {
        let mut u = self.base.join("nav_to.do").expect("relative path");
        u.query_pairs_mut()
            .append_pair("uri", &format!("incident.do?sys_id={sys_id}"));
        u.to_string()
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative path joins")
    }

    async fn bearer(&self) -> Result<Option<SecretString>, ConnectorError> {
        let Auth::OAuth {
            client_id,
            client_secret,
            user,
            password,
        } = &self.auth
        else {
            return Ok(None);
        };
        if let Some((tok, until)) = self.token.lock().expect("token lock").clone()
            && Instant::now() < until
        {
            return Ok(Some(tok));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let url = self.url("oauth_token.do");
        let answer = self
            .http
            .call(
                VENDOR,
                "OAuth token answer",
                Retry::Always,
                |c| {
                    c.post(url.clone()).form(&[
                        ("grant_type", "password"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", client_secret.expose_secret()),
                        ("username", user.as_str()),
                        ("password", password.expose_secret()),
                    ])
                },
                |b| serde_json::from_slice::<TokenAnswer>(b).map_err(|e| e.to_string()),
            )
            .await?;
        let lifetime = Duration::from_secs(answer.value.expires_in.unwrap_or(1799));
        // Renew a minute early so no request goes out with a token about to lapse.
        let until = Instant::now() + lifetime.saturating_sub(Duration::from_secs(60));
        let tok = SecretString::from(answer.value.access_token);
        *self.token.lock().expect("token lock") = Some((tok.clone(), until));
        Ok(Some(tok))
    }

    async fn request<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
        retry: Retry,
    ) -> Result<crate::http::Answer<T>, ConnectorError> {
        let bearer = self.bearer().await?;
        let result = self
            .http
            .call(
                VENDOR,
                what,
                retry,
                |c| {
                    let rb = match method {
                        Method::Get => c.get(url.clone()),
                        Method::Post => c.post(url.clone()),
                        Method::Patch => c.patch(url.clone()),
                    };
                    let rb = rb.header(reqwest::header::ACCEPT, "application/json");
                    let rb = match (&bearer, &self.auth) {
                        (Some(tok), _) => rb.bearer_auth(tok.expose_secret()),
                        (None, Auth::Basic { user, password }) => {
                            rb.basic_auth(user, Some(password.expose_secret()))
                        }
                        (None, Auth::OAuth { .. }) => rb,
                    };
                    match body {
                        Some(b) => rb.json(b),
                        None => rb,
                    }
                },
                decode::<T>,
            )
            .await;
        if let Err(e) = &result
            && e.is_auth()
        {
            // A revoked or expired token: the next call fetches a new one.
            *self.token.lock().expect("token lock") = None;
        }
        result
    }

    fn list_url(&self, table: &str, query: &str, fields: &str, offset: u64, limit: u32) -> Url {
        let mut url = self.url(&format!("api/now/table/{table}"));
        url.query_pairs_mut()
            .append_pair("sysparm_query", query)
            .append_pair("sysparm_fields", fields)
            .append_pair("sysparm_limit", &limit.to_string())
            .append_pair("sysparm_offset", &offset.to_string())
            .append_pair("sysparm_exclude_reference_link", "true");
        url
    }

    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        query: &str,
        fields: &str,
        offset: u64,
        limit: u32,
        what: &str,
    ) -> Result<ListPage<T>, ConnectorError> {
        let url = self.list_url(table, query, fields, offset, limit);
        let answer = self
            .request::<Vec<T>>(Method::Get, url, None, what, Retry::Always)
            .await?;
        let total = answer
            .headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(ListPage {
            items: answer.value,
            total,
        })
    }

    /// Reads one ticket to prove the credentials and the table access work.
    pub async fn check(&self) -> Result<(), ConnectorError> {
        self.list::<Ticket>("incident", "", "sys_id", 0, 1, "incident list")
            .await
            .map(|_| ())
    }

    /// The oldest ticket carrying this correlation id, if any.
    pub async fn find_by_correlation_id(
        &self,
        correlation_id: &str,
    ) -> Result<Option<Ticket>, ConnectorError> {
        let query = format!(
            "correlation_id={}^ORDERBYsys_created_on^ORDERBYsys_id",
            query_value(correlation_id)
        );
        let page = self
            .list::<Ticket>("incident", &query, TICKET_FIELDS, 0, 1, "incident lookup")
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// `GET /api/now/table/incident/{sys_id}`; `None` when the ticket is gone.
    pub async fn get(&self, sys_id: &str) -> Result<Option<Ticket>, ConnectorError> {
        let mut url = self.url(&format!("api/now/table/incident/{sys_id}"));
        url.query_pairs_mut()
            .append_pair("sysparm_fields", TICKET_FIELDS)
            .append_pair("sysparm_exclude_reference_link", "true");
        match self
            .request::<Ticket>(Method::Get, url, None, "incident", Retry::Always)
            .await
        {
            Ok(a) => Ok(Some(a.value)),
            Err(ConnectorError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/now/table/incident`. Not repeated after an ambiguous failure: look the ticket
    /// up by correlation id instead.
    pub async fn create(&self, fields: &Map<String, Value>) -> Result<Ticket, ConnectorError> {
        let mut url = self.url("api/now/table/incident");
        url.query_pairs_mut()
            .append_pair("sysparm_fields", TICKET_FIELDS)
            .append_pair("sysparm_exclude_reference_link", "true");
        let body = Value::Object(fields.clone());
        self.request::<Ticket>(
            Method::Post,
            url,
            Some(&body),
            "created incident",
            Retry::NotAfterSending,
        )
        .await
        .map(|a| a.value)
    }

    /// `PATCH /api/now/table/incident/{sys_id}`. With a journal field (`work_notes`,
    /// `comments`) in `fields` the write is not repeated after an ambiguous failure, since
    /// a repeat would append the note twice.
    pub async fn update(
        &self,
        sys_id: &str,
        fields: &Map<String, Value>,
    ) -> Result<Ticket, ConnectorError> {
        let mut url = self.url(&format!("api/now/table/incident/{sys_id}"));
        url.query_pairs_mut()
            .append_pair("sysparm_fields", TICKET_FIELDS)
            .append_pair("sysparm_exclude_reference_link", "true");
        let journal = fields.contains_key("work_notes") || fields.contains_key("comments");
        let retry = if journal {
            Retry::NotAfterSending
        } else {
            Retry::Always
        };
        let body = Value::Object(fields.clone());
        self.request::<Ticket>(Method::Patch, url, Some(&body), "updated incident", retry)
            .await
            .map(|a| a.value)
    }

    /// Tickets changed at or after `since` (socbridge's own included; the caller filters),
    /// oldest change first, one page. Paging is stable: ordered by `sys_updated_on`, then
    /// `sys_id`.
    pub async fn updated_since(
        &self,
        since: Timestamp,
        correlation_prefix: &str,
        offset: u64,
        limit: u32,
    ) -> Result<ListPage<Ticket>, ConnectorError> {
        let query = format!(
            "sys_updated_on>={}^correlation_idSTARTSWITH{}^ORDERBYsys_updated_on^ORDERBYsys_id",
            format_time(since),
            query_value(correlation_prefix)
        );
        self.list(
            "incident",
            &query,
            TICKET_FIELDS,
            offset,
            limit,
            "changed incidents",
        )
        .await
    }

    /// Work notes and comments of one ticket created at or after `since`, oldest first, all
    /// pages.
    pub async fn journal(
        &self,
        sys_id: &str,
        since: Option<Timestamp>,
    ) -> Result<Vec<JournalEntry>, ConnectorError> {
        let mut query = format!(
            "element_id={}^element=work_notes^ORelement=comments",
            query_value(sys_id)
        );
        if let Some(t) = since {
            query.push_str(&format!("^sys_created_on>={}", format_time(t)));
        }
        query.push_str("^ORDERBYsys_created_on^ORDERBYsys_id");
        let fields = "sys_id,element,element_id,value,sys_created_on,sys_created_by";
        let mut out = Vec::new();
        let limit = 500u32;
        loop {
            let page = self
                .list::<JournalEntry>(
                    "sys_journal_field",
                    &query,
                    fields,
                    out.len() as u64,
                    limit,
                    "journal entries",
                )
                .await?;
            let n = page.items.len();
            out.extend(page.items);
            let more = page
                .total
                .map_or(n == limit as usize, |t| (out.len() as u64) < t);
            if n == 0 || !more {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_strings_references_and_display_pairs() {
        let t: Ticket = serde_json::from_str(
            r#"{"sys_id":"a1","number":"INC0010001","state":{"display_value":"New","value":"1"},
                "assigned_to":{"link":"https://x/api/now/table/sys_user/u1","value":"u1"},
                "close_code":"","sys_updated_on":"2026-11-30 04:05:06"}"#,
        )
        .expect("ticket");
        assert_eq!(t.state.as_str(), "1");
        assert_eq!(t.assigned_to.as_str(), "u1");
        assert_eq!(t.close_code.non_empty(), None);
        assert_eq!(
            t.updated_on().map(format_time).as_deref(),
            Some("2026-11-30 04:05:06")
        );
    }

    #[test]
    fn query_values_escape_the_separator() {
        assert_eq!(query_value("a^b"), "a^^b");
    }

    #[test]
    fn debug_hides_secrets() {
        let auth = Auth::Basic {
            user: "socbridge".into(),
            password: SecretString::from("hunter2"),
        };
        let c = ServiceNowClient::new(
            "https://acme.service-now.com",
            auth,
            HttpStack::new(crate::HttpOptions::for_tests()),
        )
        .expect("client");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert_eq!(
            c.ticket_url("abc"),
            "https://acme.service-now.com/nav_to.do?uri=incident.do%3Fsys_id%3Dabc"
        );
    }
}
