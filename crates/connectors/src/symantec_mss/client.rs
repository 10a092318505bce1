//! The SWS client: one tenant's client certificate, the `incidents.asmx` operations through the
//! shared HTTP stack, and failures read closely enough to say which of certificate, proxy,
//! network or service is at fault.

use super::VENDOR;
use super::error::SymantecMssError;
use super::identity::{CertificateInfo, ClientIdentity, pem_certificates};
use super::soap::{
    self, IncidentList, MssSeverity, Operation, SecurityIncident, SoapVersion, WorkflowUpdate,
};
use crate::ConnectorError;
use crate::http::{CallFailure, FailedAttempt, HttpOptions, HttpStack, Retry};
use socbridge_model::Timestamp;
use std::sync::Mutex;
use url::Url;

/// The path of the incident service under the server URL.
pub const INCIDENTS_PATH: &str = "/SWS/incidents.asmx";

/// How to reach the service.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server URL, e.g. `https://api.monitoredsecurity.com` (a trailing `/` is ignored).
    pub base_url: String,
    pub soap_version: SoapVersion,
    /// The PEM text of an extra root CA to trust, for a server with a private CA (the
    /// emulator). The bundled web PKI roots stay trusted.
    pub root_ca_pem: Option<String>,
    /// A proxy for this source only (`http://host:port`). Without it, `HTTPS_PROXY` /
    /// `ALL_PROXY` (and `HTTP_PROXY` for an http server URL) apply, minus `NO_PROXY`.
    pub proxy: Option<String>,
    pub http: HttpOptions,
}

impl ClientOptions {
    /// Options for `base_url` with SOAP 1.2, no extra CA, the environment's proxy, and the
    /// production HTTP behaviour.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            soap_version: SoapVersion::default(),
            root_ca_pem: None,
            proxy: None,
            http: HttpOptions::default(),
        }
    }
}

/// The proxy a client goes through, as resolved when it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInUse {
    /// The proxy URL without credentials, for messages.
    pub shown: String,
    /// Where it was configured: `source setting`, or the environment variable's name.
    pub from: String,
    url: Url,
}

/// A Symantec MSS SWS client for one tenant's certificate.
#[derive(Debug)]
pub struct SymantecMssClient {
    endpoint: Url,
    soap: SoapVersion,
    http: HttpStack,
    certificate: CertificateInfo,
    proxy: Option<ProxyInUse>,
}

impl SymantecMssClient {
    /// Builds the client: checks the certificate's validity now, resolves the proxy, and
    /// prepares TLS with the client certificate (and the extra root CA). Sends nothing.
    pub fn new(
        identity: &ClientIdentity,
        options: ClientOptions,
    ) -> Result<Self, SymantecMssError> {
        identity.info().check_validity(Timestamp::now())?;
        let endpoint = endpoint_url(&options.base_url)?;
        let proxy = resolve_proxy(options.proxy.as_deref(), &endpoint, |name| {
            std::env::var(name).ok()
        })?;

        let mut builder = HttpStack::client_builder(&options.http)
            .identity(identity.to_reqwest()?)
            // The proxy is resolved above, so that failures can name it; reqwest's own reading
            // of the environment is off.
            .no_proxy();
        if let Some(pem) = &options.root_ca_pem {
            for der in pem_certificates(pem)? {
                let cert = reqwest::Certificate::from_der(der.as_ref()).map_err(|e| {
                    SymantecMssError::BadRootCa {
                        detail: format!("the certificate cannot be used as a root: {e}"),
                    }
                })?;
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(p) = &proxy {
            let reqwest_proxy =
                reqwest::Proxy::all(p.url.as_str()).map_err(|e| SymantecMssError::ProxyUrl {
                    proxy: p.shown.clone(),
                    detail: format!("is not usable ({e})"),
                })?;
            builder = builder.proxy(reqwest_proxy);
        }
        let client = builder.build().map_err(|e| SymantecMssError::BadIdentity {
            detail: format!(
                "the TLS client cannot be set up with this certificate: {}",
                error_chain(&e)
            ),
        })?;
        Ok(SymantecMssClient {
            endpoint,
            soap: options.soap_version,
            http: HttpStack::with_client(client, options.http),
            certificate: identity.info().clone(),
            proxy,
        })
    }

    /// The URL requests are posted to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The client certificate this client presents.
    pub fn certificate(&self) -> &CertificateInfo {
        &self.certificate
    }

    /// The proxy in use, if any.
    pub fn proxy(&self) -> Option<&ProxyInUse> {
        self.proxy.as_ref()
    }

    /// The connection test (XSOAR's "Test"): the certificate is valid and the service answers
    /// an `IncidentGetList` for the last minute, at most one incident.
    pub async fn check(&self) -> Result<(), SymantecMssError> {
        let since = Timestamp::now().saturating_sub_micros(60_000_000);
        self.incident_get_list(since, &[], &[], Some(1))
            .await
            .map(|_| ())
    }

    /// `IncidentGetList`: incidents created or updated since `since`. Empty `severities` or
    /// `source_ips` mean all; `max` `None` means no limit.
    pub async fn incident_get_list(
        &self,
        since: Timestamp,
        severities: &[MssSeverity],
        source_ips: &[String],
        max: Option<u32>,
    ) -> Result<IncidentList, SymantecMssError> {
        let body = soap::incident_get_list_request(self.soap, since, severities, source_ips, max);
        self.soap_call(
            Operation::IncidentGetList,
            Retry::Always,
            body,
            soap::parse_incident_get_list,
        )
        .await
    }

    /// `IncidentQuery`: one incident without its workflow.
    pub async fn incident_query(&self, number: &str) -> Result<SecurityIncident, SymantecMssError> {
        self.query(Operation::IncidentQuery, number).await
    }

    /// `IncidentWorkflowQuery`: one incident with its workflow (`WorkFlowDetail`), comments and
    /// attachments.
    pub async fn incident_workflow_query(
        &self,
        number: &str,
    ) -> Result<SecurityIncident, SymantecMssError> {
        self.query(Operation::IncidentWorkflowQuery, number).await
    }

    async fn query(
        &self,
        operation: Operation,
        number: &str,
    ) -> Result<SecurityIncident, SymantecMssError> {
        let body = soap::incident_query_request(self.soap, operation, number);
        let parse = match operation {
            Operation::IncidentQuery => soap::parse_incident_query,
            _ => soap::parse_incident_workflow_query,
        };
        self.soap_call(operation, Retry::Always, body, parse)
            .await?
            .ok_or_else(|| SymantecMssError::IncidentNotFound {
                number: number.trim().to_string(),
            })
    }

    /// `UpdateIncidentWorkflow`, sent as given (see [`merge_workflow_update`] for the XSOAR
    /// merge with the current workflow). Returns the service's verdict (`true`: applied).
    ///
    /// Not repeated after the request may have reached the service: on an ambiguous failure
    /// ([`SymantecMssError::is_ambiguous`]) the caller looks at the workflow before writing
    /// again.
    pub async fn update_incident_workflow(
        &self,
        update: &WorkflowUpdate,
    ) -> Result<bool, SymantecMssError> {
        check_assignee(update)?;
        let body = soap::update_incident_workflow_request(self.soap, update);
        self.soap_call(
            Operation::UpdateIncidentWorkflow,
            Retry::NotAfterSending,
            body,
            soap::parse_update_incident_workflow,
        )
        .await
    }

    async fn soap_call<T>(
        &self,
        operation: Operation,
        retry: Retry,
        body: String,
        parse: fn(&[u8]) -> Result<T, SymantecMssError>,
    ) -> Result<T, SymantecMssError> {
        // A certificate that expired since the client was built is reported as such.
        self.certificate.check_validity(Timestamp::now())?;
        let malformed: Mutex<Option<SymantecMssError>> = Mutex::new(None);
        let action = self.soap.soap_action(operation);
        let result = self
            .http
            .call_detailed(
                VENDOR,
                &format!("{} answer", operation.name()),
                retry,
                |c| {
                    let rb = c
                        .post(self.endpoint.clone())
                        .header(reqwest::header::CONTENT_TYPE, self.soap.content_type())
                        .body(body.clone());
                    match &action {
                        Some(a) => rb.header("SOAPAction", a.as_str()),
                        None => rb,
                    }
                },
                |bytes| match parse(bytes) {
                    Ok(v) => Ok(Ok(v)),
                    // A truncated or garbled answer may come right next time (for reads).
                    Err(e @ SymantecMssError::Malformed { .. }) => {
                        let text = e.to_string();
                        if let Ok(mut slot) = malformed.lock() {
                            *slot = Some(e);
                        }
                        Err(text)
                    }
                    // A Fault in a 2xx answer is the service's word: no retry.
                    Err(e) => Ok(Err(e)),
                },
                |attempt| is_final(&attempt),
            )
            .await;
        match result {
            Ok(answer) => answer.value,
            Err(failure) => {
                let last_malformed = malformed.lock().ok().and_then(|mut s| s.take());
                Err(self.classify(*failure, last_malformed))
            }
        }
    }

    /// Turns the stack's failure into the error that names what is wrong.
    fn classify(
        &self,
        failure: CallFailure,
        last_malformed: Option<SymantecMssError>,
    ) -> SymantecMssError {
        let url = self.endpoint.to_string();
        if let Some(e) = &failure.transport {
            if let Some(detail) = certificate_refusal(e) {
                return SymantecMssError::CertificateRefused { url, detail };
            }
            if let Some(detail) = server_not_trusted(e) {
                return SymantecMssError::ServerNotTrusted { url, detail };
            }
            let detail = error_chain(e);
            if e.is_connect() {
                return match &self.proxy {
                    Some(p) => SymantecMssError::ProxyUnreachable {
                        proxy: format!("{} (from {})", p.shown, p.from),
                        url,
                        detail,
                    },
                    None => SymantecMssError::Unreachable { url, detail },
                };
            }
            return SymantecMssError::ConnectionLost { url, detail };
        }
        if let Some(status) = failure.status {
            if status == 401 || status == 403 {
                let said = crate::http::error_detail(&failure.body);
                return SymantecMssError::CertificateRefused {
                    url,
                    detail: format!("HTTP {status}: {said}"),
                };
            }
            if status == 407
                && let Some(p) = &self.proxy
            {
                return SymantecMssError::ProxyUnreachable {
                    proxy: format!("{} (from {})", p.shown, p.from),
                    url,
                    detail: "the proxy asks for authentication (HTTP 407)".into(),
                };
            }
            if !(200..300).contains(&status)
                && let Some(fault) = soap::parse_fault(&failure.body)
            {
                return fault;
            }
        }
        if let (ConnectorError::Decode { .. }, Some(m)) = (&failure.error, last_malformed) {
            return m;
        }
        SymantecMssError::Service(failure.error)
    }
}

/// A failed attempt not worth repeating: a certificate refused or a server not trusted (the
/// next handshake ends the same way), a SOAP Fault (the service's answer).
fn is_final(attempt: &FailedAttempt<'_>) -> bool {
    match attempt {
        FailedAttempt::Transport(e) => {
            certificate_refusal(e).is_some() || server_not_trusted(e).is_some()
        }
        FailedAttempt::Status { body, .. } => soap::parse_fault(body).is_some(),
    }
}

/// Every `rustls::Error` in the error's chain, including those wrapped in an `io::Error`
/// (whose `source()` skips the wrapped error itself).
fn rustls_errors<'a>(e: &'a (dyn std::error::Error + 'static)) -> Vec<&'a rustls::Error> {
    let mut out = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut guard = 0;
    while let Some(err) = cur {
        guard += 1;
        if guard > 32 {
            break;
        }
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            out.push(r);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(r) = inner.downcast_ref::<rustls::Error>() {
                out.push(r);
            }
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    out
}

/// The TLS alert by which the server refused our certificate, if that is what happened.
fn certificate_refusal(e: &reqwest::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    rustls_errors(e).into_iter().find_map(|r| match r {
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::CertificateRequired
            | A::HandshakeFailure),
        ) => Some(format!("TLS alert {alert:?} from the server")),
        _ => None,
    })
}

/// Why the server's certificate was not accepted, if that is what happened.
fn server_not_trusted(e: &reqwest::Error) -> Option<String> {
    rustls_errors(e).into_iter().find_map(|r| match r {
        rustls::Error::InvalidCertificate(c) => Some(format!("{c:?}")),
        _ => None,
    })
}

/// The error and its causes, joined: what actually happened, without the URL's query.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
        if parts.len() > 8 {
            break;
        }
    }
    parts.join(": ")
}

/// `{base_url}/SWS/incidents.asmx`, the base without its trailing `/`.
pub fn endpoint_url(base_url: &str) -> Result<Url, SymantecMssError> {
    let bad = |detail: &str| SymantecMssError::BadUrl {
        url: base_url.to_string(),
        detail: detail.to_string(),
    };
    let trimmed = base_url.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Err(bad("is empty"));
    }
    let mut url = Url::parse(trimmed).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() || url.host().is_none() {
        return Err(bad("must be an http(s) URL with a host"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    if !path
        .to_ascii_lowercase()
        .ends_with(&INCIDENTS_PATH.to_ascii_lowercase())
    {
        url.set_path(&format!("{path}{INCIDENTS_PATH}"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The proxy for `endpoint`: the per-source setting, else the environment's
/// (`HTTPS_PROXY`/`https_proxy`/`ALL_PROXY`/`all_proxy` for https, `http_proxy`/`HTTP_PROXY`/
/// `ALL_PROXY`/`all_proxy` for http) unless `NO_PROXY`/`no_proxy` exempts the host. `env`
/// reads a variable (a parameter so that this stays testable without touching the process
/// environment).
pub fn resolve_proxy(
    per_source: Option<&str>,
    endpoint: &Url,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<ProxyInUse>, SymantecMssError> {
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(p) = per_source.map(str::trim).filter(|p| !p.is_empty()) {
        return proxy_url(p, "the source's proxy setting").map(Some);
    }
    let host = endpoint.host_str().unwrap_or_default();
    if let Some(no_proxy) = env("NO_PROXY").or_else(|| env("no_proxy"))
        && no_proxy_matches(&no_proxy, host)
    {
        return Ok(None);
    }
    let names: &[&str] = if endpoint.scheme() == "https" {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"]
    };
    for name in names {
        if let Some(v) = env(name) {
            return proxy_url(v.trim(), name).map(Some);
        }
    }
    Ok(None)
}

fn proxy_url(text: &str, from: &str) -> Result<ProxyInUse, SymantecMssError> {
    // A bare `host:port` means http, as curl and reqwest read it.
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let shown_raw = redact_userinfo(text);
    let bad = |detail: String| SymantecMssError::ProxyUrl {
        proxy: format!("{shown_raw} (from {from})"),
        detail,
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "has the scheme `{}`, which is not supported (http or https only)",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    Ok(ProxyInUse {
        shown: shown.as_str().trim_end_matches('/').to_string(),
        from: from.to_string(),
        url,
    })
}

/// `user:secret@` out of a proxy text that may not even parse.
fn redact_userinfo(text: &str) -> String {
    match (text.find("://"), text.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &text[..s + 3], &text[at + 1..]),
        (None, Some(at)) => text[at + 1..].to_string(),
        _ => text.to_string(),
    }
}

/// Whether `NO_PROXY` exempts `host`: `*`, a domain (with or without a leading `.`, matching
/// the domain and its subdomains), an IP address, or an IP network in CIDR notation. A port on
/// an entry is ignored.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    use std::net::IpAddr;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            if let Some((net, bits)) = entry.split_once('/') {
                return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Some(h), Ok(n), Ok(bits)) => in_network(h, n, bits),
                    _ => false,
                };
            }
            let entry = entry.trim_start_matches('[');
            let entry = match entry.find(']') {
                Some(end) => &entry[..end],
                None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(entry),
                None => entry,
            };
            let e = entry
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .to_ascii_lowercase();
            if let (Some(h), Ok(ip)) = (host_ip, e.parse::<IpAddr>()) {
                return h == ip;
            }
            !e.is_empty() && (host == e || host.ends_with(&format!(".{e}")))
        })
}

fn in_network(host: std::net::IpAddr, net: std::net::IpAddr, bits: u32) -> bool {
    use std::net::IpAddr;
    match (host, net) {
        (IpAddr::V4(h), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(h) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(h), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(h) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn check_assignee(update: &WorkflowUpdate) -> Result<(), SymantecMssError> {
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    if given(&update.assigned_to_organization) && given(&update.assigned_to_person) {
        return Err(SymantecMssError::AssigneeConflict {
            number: update.number.clone(),
        });
    }
    Ok(())
}

/// The XSOAR update merge: a status, resolution or severity the request leaves out is taken
/// from the incident's current workflow (`WorkFlowDetail.Status`, `.Resolution`, the incident's
/// `Severity`), and it is an error if there is none there either. The assignee is an
/// organisation or a person, never both; when the request names neither, the current one is
/// kept. `Reference` and `Comments` are sent as requested.
pub fn merge_workflow_update(
    requested: &WorkflowUpdate,
    current: &SecurityIncident,
) -> Result<WorkflowUpdate, SymantecMssError> {
    check_assignee(requested)?;
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let workflow = current.workflow.clone().unwrap_or_default();
    let number = requested.number.trim().to_string();
    let required = |asked: &Option<String>,
                    now: &Option<String>,
                    field: &'static str|
     -> Result<String, SymantecMssError> {
        given(asked)
            .or_else(|| given(now))
            .ok_or_else(|| SymantecMssError::MissingWorkflowField {
                number: number.clone(),
                field,
            })
    };
    let status = required(&requested.status, &workflow.status, "Status")?;
    let resolution = required(&requested.resolution, &workflow.resolution, "Resolution")?;
    let severity = required(&requested.severity, &current.severity, "Severity")?;
    let (org, person) = match (
        given(&requested.assigned_to_organization),
        given(&requested.assigned_to_person),
    ) {
        (None, None) => match given(&workflow.assigned_person) {
            Some(p) => (None, Some(p)),
            None => (given(&workflow.assigned_organization), None),
        },
        other => other,
    };
    Ok(WorkflowUpdate {
        number,
        status: Some(status),
        resolution: Some(resolution),
        reference: given(&requested.reference),
        severity: Some(severity),
        assigned_to_organization: org,
        assigned_to_person: person,
        comments: requested.comments.clone().filter(|c| !c.trim().is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn endpoint_is_built_from_the_server_url() {
        let u = endpoint_url("https://api.monitoredsecurity.com/").expect("url");
        assert_eq!(
            u.as_str(),
            "https://api.monitoredsecurity.com/SWS/incidents.asmx"
        );
        let u = endpoint_url("https://127.0.0.1:8443/SWS/incidents.asmx").expect("url");
        assert_eq!(u.as_str(), "https://127.0.0.1:8443/SWS/incidents.asmx");
        let u = endpoint_url("https://h/prefix/").expect("url");
        assert_eq!(u.as_str(), "https://h/prefix/SWS/incidents.asmx");
        for bad in ["", "ftp://x", "not a url", "https://"] {
            let e = endpoint_url(bad).expect_err(bad);
            assert!(e.is_bad_input(), "{e}");
        }
    }

    #[test]
    fn proxy_resolution() {
        let ep = endpoint_url("https://api.monitoredsecurity.com").expect("url");
        let none = env_of(&[]);
        assert_eq!(resolve_proxy(None, &ep, &none).expect("ok"), None);
        let p = resolve_proxy(Some("http://user:pw@proxy:3128"), &ep, &none)
            .expect("ok")
            .expect("some");
        assert_eq!(p.shown, "http://proxy:3128");
        assert_eq!(p.from, "the source's proxy setting");
        let env = env_of(&[("https_proxy", "proxy.corp:8080")]);
        let p = resolve_proxy(None, &ep, &env).expect("ok").expect("some");
        assert_eq!(
            (p.shown.as_str(), p.from.as_str()),
            ("http://proxy.corp:8080", "https_proxy")
        );
        let env = env_of(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("NO_PROXY", "localhost,.monitoredsecurity.com"),
        ]);
        assert_eq!(resolve_proxy(None, &ep, &env).expect("ok"), None);
        let env = env_of(&[("HTTP_PROXY", "http://p:1")]);
        assert_eq!(
            resolve_proxy(None, &ep, &env).expect("ok"),
            None,
            "HTTP_PROXY is for http only"
        );
        for bad in [
            "socks5://p:1",
            "http://",
            "http://exa mple:1",
            "http://u:secret@:1",
        ] {
            let e = resolve_proxy(Some(bad), &ep, &none).expect_err(bad);
            assert!(
                matches!(e, SymantecMssError::ProxyUrl { .. }) && e.is_bad_input(),
                "{e}"
            );
            assert!(e.to_string().starts_with("proxy misconfigured"), "{e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn no_proxy_entries() {
        assert!(no_proxy_matches("*", "x"));
        assert!(no_proxy_matches("example.com", "api.example.com"));
        assert!(no_proxy_matches(".example.com", "example.com"));
        assert!(!no_proxy_matches("example.com", "badexample.com"));
        assert!(no_proxy_matches("10.0.0.0/8", "10.2.3.4"));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.2.3.4"));
        assert!(no_proxy_matches("localhost:8443, 127.0.0.1", "127.0.0.1"));
        assert!(no_proxy_matches("[::1]", "[::1]"));
        assert!(no_proxy_matches("::1/128", "::1"));
    }

    fn current() -> SecurityIncident {
        SecurityIncident {
            incident_number: "7".into(),
            time_created: None,
            correlation: None,
            severity: Some("Critical".into()),
            classification: None,
            description: None,
            analyst_assessment: None,
            country_code: None,
            country_name: None,
            number_of_analyzed_signatures: None,
            source_organizations: vec![],
            destination_organizations: vec![],
            related_tickets: vec![],
            signatures: vec![],
            workflow: Some(soap::WorkflowDetail {
                status: Some("Open".into()),
                resolution: None,
                assigned_person: None,
                assigned_organization: Some("MSSP SOC".into()),
            }),
            comments: vec![],
            activity_logs: vec![],
            attachments: vec![],
            is_group_incident_available: None,
            related_incidents: vec![],
            raw: String::new(),
        }
    }

    #[test]
    fn workflow_merge() {
        let asked = WorkflowUpdate {
            number: "7".into(),
            resolution: Some("Resolved".into()),
            comments: Some("done".into()),
            ..WorkflowUpdate::default()
        };
        let merged = merge_workflow_update(&asked, &current()).expect("merges");
        assert_eq!(merged.status.as_deref(), Some("Open"));
        assert_eq!(merged.resolution.as_deref(), Some("Resolved"));
        assert_eq!(merged.severity.as_deref(), Some("Critical"));
        assert_eq!(merged.assigned_to_organization.as_deref(), Some("MSSP SOC"));
        assert_eq!(merged.assigned_to_person, None);

        let e = merge_workflow_update(
            &WorkflowUpdate {
                number: "7".into(),
                ..WorkflowUpdate::default()
            },
            &current(),
        )
        .expect_err("no resolution anywhere");
        assert!(matches!(
            e,
            SymantecMssError::MissingWorkflowField {
                field: "Resolution",
                ..
            }
        ));
        assert!(e.to_string().contains("Resolution"), "{e}");

        let both = WorkflowUpdate {
            assigned_to_organization: Some("A".into()),
            assigned_to_person: Some("B".into()),
            ..asked.clone()
        };
        assert!(matches!(
            merge_workflow_update(&both, &current()),
            Err(SymantecMssError::AssigneeConflict { .. })
        ));
        let person = WorkflowUpdate {
            assigned_to_person: Some("alice".into()),
            ..asked
        };
        let merged = merge_workflow_update(&person, &current()).expect("merges");
        assert_eq!(merged.assigned_to_person.as_deref(), Some("alice"));
        assert_eq!(
            merged.assigned_to_organization, None,
            "the current org is not kept"
        );
    }
}
