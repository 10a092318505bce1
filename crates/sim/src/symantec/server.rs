//! The service on the wire: a hand-written TLS accept loop (rustls requires a production
//! client certificate; refusals are counted by kind), hyper-util serving an axum router per
//! connection, the client certificate's tenant passed to handlers as a request extension,
//! and `POST`/`GET` of `/SWS/incidents.asmx` (paths compared case-insensitively, as IIS does).
//!
//! Every SOAP request passes, in order: content type (SOAP 1.1 or 1.2, else 415), the
//! envelope (a Fault when unreadable), the `SOAPAction` check, for `IncidentGetList` the
//! overlap witness (`crate::polls`: in flight per tenant until its answer is made, after the
//! answer delay a test may have set), the fault draw (error faults answer before anything is
//! applied), the operation under the lock, then commit-drop or a body fault.

use super::data::{self, Incident};
use super::soap::{self, FaultCode, SoapRequest, SoapVersion};
use super::{Plan, Sym, WorkflowCounters, bump, canonical, parse_timestamp, wsdl};
use crate::net::{self, KillStream};
use crate::state::BodyFault;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// The service's path.
const SERVICE_PATH: &str = "/SWS/incidents.asmx";
/// Largest request body accepted.
const MAX_BODY: usize = 4 << 20;
/// A client that has not finished its handshake by then is dropped (counted as `other`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Connections.

/// Who is on a connection, as handlers see it (a request extension): the tenant its
/// certificate names, and the switch that cuts the connection (commit-drop).
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    /// `None` for a certificate from the production CA that is no tenant's (answered 403).
    pub tenant: Option<usize>,
    pub addr: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Peer {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

/// Counts a refused handshake by its cause.
fn count_refusal(sym: &Sym, e: &io::Error) {
    let cause = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let mut st = sym.lock();
    let r = &mut st.counters.handshakes_refused;
    match cause {
        Some(rustls::Error::NoCertificatesPresented) => r.no_certificate += 1,
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            r.unknown_ca += 1
        }
        _ => r.other += 1,
    }
    drop(st);
    tracing::debug!("sim: Symantec TLS handshake refused: {e}");
}

/// Accepts until shutdown, then lets open connections finish their answers.
pub(crate) async fn serve(sym: Arc<Sym>, listener: TcpListener) {
    let acceptor = TlsAcceptor::from(sym.tls.clone());
    let router = Router::new().fallback(handle).with_state(sym.clone());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, addr) = tokio::select! {
            _ = sym.shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                // Out of descriptors and the like: wait a little instead of spinning.
                Err(e) => {
                    tracing::warn!("sim: Symantec accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let sym = sym.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return count_refusal(&sym, &e),
                Err(_) => {
                    sym.lock().counters.handshakes_refused.other += 1;
                    return;
                }
            };
            let tenant = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| sym.by_cert.get(c.as_ref()).copied());
            let killed = Arc::new(AtomicBool::new(false));
            let peer = Peer {
                tenant,
                addr,
                killed: killed.clone(),
            };
            let io = TokioIo::new(KillStream::new(tls, killed));
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let router = router.clone();
                    req.extensions_mut().insert(peer.clone());
                    router.oneshot(req.map(Body::new))
                },
            );
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(e) = watcher.watch(builder.serve_connection(io, svc)).await {
                tracing::debug!(peer = %addr, "sim: Symantec connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Answers.

fn respond(status: StatusCode, body: impl Into<Body>, content_type: &'static str) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// IIS's HTML error page.
fn iis_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Strict//EN\" \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd\">\r\n<html xmlns=\"http://www.w3.org/1999/xhtml\"><head><title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>\r\n"
    );
    respond(status, body, "text/html; charset=utf-8")
}

fn soap_answer(version: SoapVersion, body: Vec<u8>) -> Response {
    respond(StatusCode::OK, body, version.content_type())
}

fn soap_fault(version: SoapVersion, code: FaultCode, text: &str) -> Response {
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        soap::fault(version, code, text),
        version.content_type(),
    )
}

/// The SOAP version of a content type, and the `action` parameter of a SOAP 1.2 one.
fn version_of(headers: &HeaderMap) -> Option<(SoapVersion, Option<String>)> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = ct.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    let action = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("action")
            .then(|| v.trim().trim_matches('"').to_string())
    });
    match essence.as_str() {
        "text/xml" => Some((SoapVersion::V11, None)),
        "application/soap+xml" => Some((SoapVersion::V12, action)),
        _ => None,
    }
}

/// `https://host[:port]` as the client addressed this server.
fn request_base(req: &Request, fallback: &str) -> String {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '"', '\\', '<', '>']))
        .map_or_else(|| fallback.to_string(), |h| format!("https://{h}"))
}

fn wants_wsdl(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|p| {
            let key = p.split('=').next().unwrap_or("");
            key.eq_ignore_ascii_case("wsdl")
        })
    })
}

/// The help page ASMX shows a browser.
fn help_page() -> Response {
    let mut ops = String::new();
    for (op, _) in wsdl::OPERATIONS {
        ops.push_str(&format!("<li>{op}</li>"));
    }
    respond(
        StatusCode::OK,
        format!(
            "<html><head><title>Incidents Web Service</title></head><body><h1>Incidents</h1><p>The following operations are supported. For a formal definition, please review the <a href=\"incidents.asmx?WSDL\">Service Description</a>.</p><ul>{ops}</ul></body></html>"
        ),
        "text/html; charset=utf-8",
    )
}

// ---------------------------------------------------------------------------------------
// The handler.

/// Every request of the service's port.
async fn handle(State(sym): State<Arc<Sym>>, req: Request) -> Response {
    let Some(peer) = req.extensions().get::<Peer>().cloned() else {
        return iis_page(
            StatusCode::FORBIDDEN,
            "403 - Forbidden",
            "Access is denied.",
        );
    };
    if !req.uri().path().eq_ignore_ascii_case(SERVICE_PATH) {
        sym.lock().count(404, "other");
        return iis_page(
            StatusCode::NOT_FOUND,
            "404 - File or directory not found.",
            "The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.",
        );
    }
    let Some(tenant) = peer.tenant else {
        sym.lock().count(403, "other");
        return iis_page(
            StatusCode::FORBIDDEN,
            "403 - Forbidden: Access is denied.",
            "You do not have permission to view this directory or page using the credentials that you supplied.",
        );
    };
    match *req.method() {
        Method::GET | Method::HEAD => {
            if wants_wsdl(req.uri().query()) {
                let location = format!("{}{}", request_base(&req, &sym.base_url), req.uri().path());
                sym.lock().count(200, "WSDL");
                respond(
                    StatusCode::OK,
                    wsdl::render(&location),
                    "text/xml; charset=utf-8",
                )
            } else {
                sym.lock().count(200, "other");
                help_page()
            }
        }
        Method::POST => soap_post(&sym, tenant, &peer, req).await,
        _ => {
            sym.lock().count(405, "other");
            iis_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 - HTTP verb used to access this page is not allowed.",
                "The page you are looking for cannot be displayed because an invalid method (HTTP verb) was used to attempt access.",
            )
        }
    }
}

/// Whether a `SOAPAction` (or 1.2 `action`) names `operation`: the full action, or a
/// client that sent only the operation's name.
fn action_matches(action: &str, operation: &str) -> bool {
    let a = action.trim().trim_matches('"');
    a.is_empty()
        || a == format!("{}{operation}", soap::OPERATION_NS)
        || a.rsplit('/').next() == Some(operation)
}

/// One SOAP call.
async fn soap_post(sym: &Arc<Sym>, tenant: usize, peer: &Peer, req: Request) -> Response {
    let Some((version, action12)) = version_of(req.headers()) else {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        sym.lock().count(415, "unreadable");
        return iis_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "415 - Unsupported Media Type",
            &quick_xml::escape::escape(format!(
                "Request format is invalid: '{ct}'. Use text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2)."
            )),
        );
    };
    let action = match version {
        SoapVersion::V11 => req
            .headers()
            .get("soapaction")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        SoapVersion::V12 => action12,
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            sym.lock().count(413, "unreadable");
            return iis_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 - Request Entity Too Large",
                "The request body could not be read (at most 4 MiB).",
            );
        }
    };
    let call = match soap::parse(&body, version) {
        Ok(c) => c,
        Err(e) => {
            let code = match e {
                soap::ParseError::VersionMismatch(..) => FaultCode::VersionMismatch,
                _ => FaultCode::Client,
            };
            sym.lock().count(500, "unreadable");
            return soap_fault(version, code, &e.to_string());
        }
    };
    let op = call.operation.clone();
    let known = wsdl::OPERATIONS.iter().any(|(o, _)| *o == op);
    let label = if known { op.as_str() } else { "unknown" };
    if let Some(a) = action.as_deref()
        && !action_matches(a, &op)
    {
        sym.lock().count(500, label);
        return soap_fault(
            version,
            FaultCode::Client,
            &format!("Server did not recognize the value of HTTP Header SOAPAction: {a}."),
        );
    }
    if !known {
        sym.lock().count(500, label);
        return soap_fault(
            version,
            FaultCode::Client,
            &format!("Server did not recognize the request element {op}."),
        );
    }

    // A poll (`IncidentGetList`) is in flight for its tenant from here until its answer is
    // made (the overlap witness), after the answer delay a test may have set.
    let _poll = if op == "IncidentGetList" {
        let name = sym.lock().tenants[tenant].customer.name.clone();
        let guard = sym.polls.enter(&name, &name);
        sym.polls.wait(&sym.shutdown).await;
        Some(guard)
    } else {
        None
    };

    // Faults, drawn up front.
    let plan: Plan = {
        let mut st = sym.lock();
        let plan = st.draw();
        let f = &mut st.counters.faults;
        if plan.slow.is_some() {
            f.slow += 1;
        }
        match plan.error {
            Some(500) => f.status_500 += 1,
            Some(503) => f.status_503 += 1,
            _ => {}
        }
        plan
    };
    if let Some(delay) = plan.slow {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = sym.shutdown.cancelled() => {}
        }
    }
    match plan.error {
        Some(500) => {
            sym.lock().count(500, &op);
            return soap_fault(
                version,
                FaultCode::Server,
                "Server was unable to process request. ---> The service is temporarily unable to process the request (injected fault).",
            );
        }
        Some(_) => {
            sym.lock().count(503, &op);
            return iis_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "HTTP Error 503. The service is unavailable.",
            );
        }
        None => {}
    }

    let outcome = execute(sym, tenant, version, &call);
    let status = outcome.response.status();
    if plan.commit_drop && outcome.committed {
        // Applied; the answer never leaves: the socket fails before the head.
        peer.kill();
        tracing::debug!(peer = %peer.addr, "sim: Symantec workflow update applied, answer dropped");
        let mut st = sym.lock();
        st.counters.faults.commit_drop += 1;
        st.counters.requests.total += 1;
        *st.counters.by_operation.entry(op).or_insert(0) += 1;
        return outcome.response;
    }
    let resp = match plan.body {
        Some(fault) if status.is_success() => spoil(sym, outcome.response, fault).await,
        _ => {
            if !outcome.served.is_empty() {
                sym.lock().mark_served(tenant, &outcome.served);
            }
            outcome.response
        }
    };
    sym.lock().count(status.as_u16(), &op);
    resp
}

/// Applies a body fault to a successful answer.
async fn spoil(sym: &Sym, resp: Response, fault: BodyFault) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return iis_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "500 - Internal server error.",
            "could not buffer the answer",
        );
    };
    {
        let mut st = sym.lock();
        match fault {
            BodyFault::Drop => st.counters.faults.drop += 1,
            BodyFault::Truncate => st.counters.faults.truncate += 1,
        }
    }
    net::spoiled(parts, bytes, fault)
}

// ---------------------------------------------------------------------------------------
// Operations.

/// What an operation produced.
struct Outcome {
    response: Response,
    /// An update was applied (what commit-drop needs).
    committed: bool,
    /// Incident numbers listed by an `IncidentGetList` answer.
    served: Vec<u64>,
}

impl Outcome {
    fn answer(response: Response) -> Outcome {
        Outcome {
            response,
            committed: false,
            served: Vec::new(),
        }
    }
}

/// The fault .NET's XML serializer raises for a value it cannot read.
fn unreadable_value(version: SoapVersion, value: &str, what: &str) -> Outcome {
    Outcome::answer(soap_fault(
        version,
        FaultCode::Client,
        &format!(
            "Server was unable to read request. ---> There is an error in XML document. ---> The string '{value}' is not a valid {what} value."
        ),
    ))
}

fn not_found(version: SoapVersion, number: &str) -> Outcome {
    Outcome::answer(soap_fault(
        version,
        FaultCode::Server,
        &format!("Server was unable to process request. ---> Incident {number} was not found."),
    ))
}

/// Runs one known operation under the lock.
fn execute(sym: &Sym, tenant: usize, version: SoapVersion, call: &SoapRequest) -> Outcome {
    match call.operation.as_str() {
        "IncidentGetList" => get_list(sym, tenant, version, call),
        "IncidentWorkflowQuery" => query(sym, tenant, version, call, true),
        "IncidentQuery" => query(sym, tenant, version, call, false),
        _ => update(sym, tenant, version, call),
    }
}

fn get_list(sym: &Sym, tenant: usize, version: SoapVersion, call: &SoapRequest) -> Outcome {
    let Some(raw) = call.param("StartTimeStampGMT") else {
        return Outcome::answer(soap_fault(
            version,
            FaultCode::Client,
            "Server was unable to process request. ---> StartTimeStampGMT is required.",
        ));
    };
    let Some(since) = parse_timestamp(raw) else {
        return unreadable_value(version, raw, "AllXsd");
    };
    let ips: Vec<&str> = call
        .param("SourceIP")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut severities = Vec::new();
    for s in call
        .param("Severity")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match data::severity(s) {
            Some(canon) => severities.push(canon),
            None => {
                return Outcome::answer(soap_fault(
                    version,
                    FaultCode::Client,
                    &format!(
                        "Server was unable to process request. ---> Severity '{s}' is not one of {}.",
                        data::SEVERITIES.join(", ")
                    ),
                ));
            }
        }
    }
    let max = match call.non_empty("MaxIncidents") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return unreadable_value(version, v, "Int32"),
        },
    };
    let st = sym.lock();
    let mut picked: Vec<&Incident> = st.tenants[tenant]
        .incidents
        .values()
        .filter(|i| i.updated >= since || i.created >= since)
        .filter(|i| severities.is_empty() || severities.contains(&i.severity.as_str()))
        .filter(|i| ips.is_empty() || i.source_ips.iter().any(|a| ips.contains(&a.as_str())))
        .collect();
    picked.sort_by_key(|i| (i.updated, i.number));
    if let Some(m) = max {
        picked.truncate(m);
    }
    let served = picked.iter().map(|i| i.number).collect();
    let body = soap::get_list_answer(version, &picked);
    drop(st);
    Outcome {
        response: soap_answer(version, body),
        committed: false,
        served,
    }
}

/// The incident number of a call, or the Fault that answers it.
fn incident_number(version: SoapVersion, call: &SoapRequest) -> Result<u64, Box<Outcome>> {
    let Some(raw) = call.non_empty("IncidentNumber") else {
        return Err(Box::new(Outcome::answer(soap_fault(
            version,
            FaultCode::Client,
            "Server was unable to process request. ---> IncidentNumber is required.",
        ))));
    };
    raw.parse::<u64>()
        .map_err(|_| Box::new(not_found(version, raw)))
}

fn query(
    sym: &Sym,
    tenant: usize,
    version: SoapVersion,
    call: &SoapRequest,
    workflow: bool,
) -> Outcome {
    let number = match incident_number(version, call) {
        Ok(n) => n,
        Err(o) => return *o,
    };
    let st = sym.lock();
    // Another tenant's incident is not found, exactly like one that does not exist.
    let Some(inc) = st.tenants[tenant].incidents.get(&number) else {
        return not_found(version, &number.to_string());
    };
    let body = soap::query_answer(version, &call.operation, inc, workflow);
    drop(st);
    Outcome::answer(soap_answer(version, body))
}

/// `UpdateIncidentWorkflow`: `false` for a value outside the accepted sets (nothing
/// applied); otherwise applies every non-empty member, bumps `UpdateTimestampGMT`, `true`.
fn update(sym: &Sym, tenant: usize, version: SoapVersion, call: &SoapRequest) -> Outcome {
    let number = match incident_number(version, call) {
        Ok(n) => n,
        Err(o) => return *o,
    };
    let mut st = sym.lock();
    if st.owner(number) != Some(tenant) {
        return not_found(version, &number.to_string());
    }
    let status = match call.non_empty("Status") {
        None => Ok(None),
        Some(s) => canonical(&st.statuses, s)
            .map(|c| Some(c.to_string()))
            .ok_or(()),
    };
    let resolution = match call.non_empty("Resolution") {
        None => Ok(None),
        Some(s) => canonical(&st.resolutions, s)
            .map(|c| Some(c.to_string()))
            .ok_or(()),
    };
    let severity = match call.non_empty("Severity") {
        None => Ok(None),
        Some(s) => data::severity(s).map(Some).ok_or(()),
    };
    let (Ok(status), Ok(resolution), Ok(severity)) = (status, resolution, severity) else {
        st.tenants[tenant].counters.workflow_refused += 1;
        return Outcome::answer(soap_answer(version, soap::update_answer(version, false)));
    };
    let td = &mut st.tenants[tenant];
    let user = td.customer.web_service_user.clone();
    let Some(inc) = td.incidents.get_mut(&number) else {
        return not_found(version, &number.to_string());
    };
    let when = bump(inc.updated);
    inc.set_workflow(status, resolution, severity);
    if let Some(org) = call.non_empty("AssignedToOrganiztion") {
        inc.assigned_organization = org.to_string();
        inc.assigned_person.clear();
    }
    if let Some(person) = call.non_empty("AssignedToPerson") {
        inc.assigned_person = person.to_string();
    }
    let reference = call.non_empty("Reference").map(str::to_string);
    if let Some(r) = &reference
        && !inc.related_tickets.split(',').any(|t| t == r)
    {
        if !inc.related_tickets.is_empty() {
            inc.related_tickets.push(',');
        }
        inc.related_tickets.push_str(r);
    }
    if let Some(text) = call.non_empty("Comments") {
        inc.comments.push(data::Comment {
            time: when,
            text: text.to_string(),
            by: user,
        });
    }
    inc.updated = when;
    let c = &mut td.counters;
    c.updates_total += 1;
    c.workflow_updates += 1;
    let w: &mut WorkflowCounters = c
        .workflow_by_incident
        .entry(number.to_string())
        .or_default();
    w.updates += 1;
    if reference.is_some() {
        w.last_reference = reference;
    }
    drop(st);
    Outcome {
        response: soap_answer(version, soap::update_answer(version, true)),
        committed: true,
        served: Vec::new(),
    }
}
