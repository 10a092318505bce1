//! The SWS SOAP wire: request envelopes (SOAP 1.2 or 1.1) and the answers of the four
//! incident operations, read by local name whatever the prefixes and namespaces.
//!
//! Every answer parser takes the raw body and is total: any input yields a value or a
//! [`SymantecMssError`] (a [`SoapFault`](SymantecMssError::SoapFault), or
//! [`Malformed`](SymantecMssError::Malformed) naming the element), never a panic. A body that
//! is not well-formed only because of odd entity references (`&nbsp;`...) is parsed again with
//! them removed, as the XSOAR client does.

use super::error::SymantecMssError;
use super::xml::{self, Node, Source};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use socbridge_model::{Quarantined, Severity, Timestamp};

/// The namespace of the operations and their request elements.
pub const OPERATION_NS: &str = "https://www.monitoredsecurity.com/";
/// The SOAP 1.2 envelope namespace.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The SOAP 1.1 envelope namespace.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// Which SOAP the client speaks. The service accepts both and answers in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SoapVersion {
    /// `application/soap+xml; charset=utf-8`.
    #[default]
    Soap12,
    /// `text/xml; charset=utf-8` with a `SOAPAction` header.
    Soap11,
}

impl SoapVersion {
    pub fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::Soap12 => SOAP12_NS,
            SoapVersion::Soap11 => SOAP11_NS,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::Soap12 => "application/soap+xml; charset=utf-8",
            SoapVersion::Soap11 => "text/xml; charset=utf-8",
        }
    }

    /// The `SOAPAction` header value (SOAP 1.1 only).
    pub fn soap_action(self, operation: Operation) -> Option<String> {
        match self {
            SoapVersion::Soap12 => None,
            SoapVersion::Soap11 => Some(format!("{OPERATION_NS}{}", operation.name())),
        }
    }
}

impl std::str::FromStr for SoapVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '_', '-', '.'], "")
            .as_str()
        {
            "12" | "soap12" => Ok(SoapVersion::Soap12),
            "11" | "soap11" => Ok(SoapVersion::Soap11),
            _ => Err(format!("unknown SOAP version `{s}` (expected 1.1 or 1.2)")),
        }
    }
}

/// The incident operations of `incidents.asmx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    IncidentGetList,
    IncidentQuery,
    IncidentWorkflowQuery,
    UpdateIncidentWorkflow,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::IncidentGetList => "IncidentGetList",
            Operation::IncidentQuery => "IncidentQuery",
            Operation::IncidentWorkflowQuery => "IncidentWorkflowQuery",
            Operation::UpdateIncidentWorkflow => "UpdateIncidentWorkflow",
        }
    }

    fn response(self) -> &'static str {
        match self {
            Operation::IncidentGetList => "IncidentGetListResponse",
            Operation::IncidentQuery => "IncidentQueryResponse",
            Operation::IncidentWorkflowQuery => "IncidentWorkflowQueryResponse",
            Operation::UpdateIncidentWorkflow => "UpdateIncidentWorkflowResponse",
        }
    }

    fn result(self) -> &'static str {
        match self {
            Operation::IncidentGetList => "IncidentGetListResult",
            Operation::IncidentQuery => "IncidentQueryResult",
            Operation::IncidentWorkflowQuery => "IncidentWorkflowQueryResult",
            Operation::UpdateIncidentWorkflow => "UpdateIncidentWorkflowResult",
        }
    }
}

/// The vendor's four severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MssSeverity {
    Emergency,
    Critical,
    Warning,
    Informational,
}

impl MssSeverity {
    pub const ALL: [MssSeverity; 4] = [
        MssSeverity::Emergency,
        MssSeverity::Critical,
        MssSeverity::Warning,
        MssSeverity::Informational,
    ];

    /// The label on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            MssSeverity::Emergency => "Emergency",
            MssSeverity::Critical => "Critical",
            MssSeverity::Warning => "Warning",
            MssSeverity::Informational => "Informational",
        }
    }

    /// Reads a wire label in any case (`Info` too); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("info") {
            return Some(MssSeverity::Informational);
        }
        MssSeverity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }

    /// socbridge's severity: Emergency → critical, Critical → high, Warning → medium,
    /// Informational → informational.
    pub fn to_model(self) -> Severity {
        match self {
            MssSeverity::Emergency => Severity::Critical,
            MssSeverity::Critical => Severity::High,
            MssSeverity::Warning => Severity::Medium,
            MssSeverity::Informational => Severity::Informational,
        }
    }
}

impl std::fmt::Display for MssSeverity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `SecurityIncidentSummary` of an `IncidentGetList` answer. Empty elements are `None`
/// (or empty lists); counts and flags are kept as the vendor wrote them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSummary {
    pub incident_number: String,
    pub time_created: Timestamp,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub country_of_origin: Option<String>,
    pub days_seen_globally: Option<String>,
    /// `SourceIPString`, split on commas.
    pub source_ips: Vec<String>,
    pub correlation: Option<String>,
    /// `HostNameList`: child elements, or a comma-separated text.
    pub host_names: Vec<String>,
    pub is_internal_external: Option<String>,
    pub global_lookback_days: Option<String>,
    /// A time or a description, as the vendor wrote it; see
    /// [`IncidentSummary::latest_key_event_time`].
    pub latest_key_event: Option<String>,
    pub customer_severity: Option<String>,
    pub country_code: Option<String>,
    pub first_seen_in_last_30_days: Option<String>,
    pub days_seen_in_last_30_days: Option<String>,
    pub dest_organization_name: Option<String>,
    pub source_organization_name: Option<String>,
    pub first_seen_globally: Option<String>,
    pub country_name: Option<String>,
    /// `UserList`: child elements, or a comma-separated text.
    pub users: Vec<String>,
    pub classification: Option<String>,
    /// `UpdateTimestampGMT`; `None` when absent or unreadable.
    pub update_timestamp: Option<Timestamp>,
    pub prevalence_globally: Option<String>,
    /// The `SecurityIncidentSummary` element, verbatim.
    pub raw: String,
}

impl IncidentSummary {
    /// `LatestKeyEvent` when it is a time.
    pub fn latest_key_event_time(&self) -> Option<Timestamp> {
        self.latest_key_event
            .as_deref()
            .and_then(|s| Timestamp::parse_lenient_utc(s).ok())
    }
}

/// An `IncidentGetList` answer: the summaries that could be read, and those that could not
/// (no `IncidentNumber`, no readable `TimeCreated`), quarantined with their XML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentList {
    pub incidents: Vec<IncidentSummary>,
    pub quarantined: Vec<Quarantined>,
}

/// A `SecurityIncident` of an `IncidentQuery` or `IncidentWorkflowQuery` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityIncident {
    pub incident_number: String,
    /// `None` when absent or unreadable (the summary's time is authoritative).
    pub time_created: Option<Timestamp>,
    pub correlation: Option<String>,
    pub severity: Option<String>,
    pub classification: Option<String>,
    pub description: Option<String>,
    pub analyst_assessment: Option<String>,
    pub country_code: Option<String>,
    pub country_name: Option<String>,
    pub number_of_analyzed_signatures: Option<String>,
    /// `SourceOrganizationList/Organization/OrganizationName`.
    pub source_organizations: Vec<String>,
    /// `DestinationOrganizationList/Organization/OrganizationName`.
    pub destination_organizations: Vec<String>,
    /// The texts under `RelatedTickets`.
    pub related_tickets: Vec<String>,
    pub signatures: Vec<Signature>,
    /// `WorkFlowDetail` (IncidentWorkflowQuery only).
    pub workflow: Option<WorkflowDetail>,
    pub comments: Vec<IncidentComment>,
    /// Each child of `ActivityLogs`, verbatim (its shape is undocumented).
    pub activity_logs: Vec<String>,
    pub attachments: Vec<IncidentAttachment>,
    pub is_group_incident_available: Option<bool>,
    /// `RelatedIncidents/IncidentNumber`.
    pub related_incidents: Vec<String>,
    /// The `SecurityIncident` element, verbatim.
    pub raw: String,
}

/// One `Signature` of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signature {
    /// `SourceIPString`, split on commas.
    pub source_ips: Vec<String>,
    pub signature_name: Option<String>,
    pub vendor_signature: Option<String>,
    pub number_blocked: Option<String>,
    pub number_not_blocked: Option<String>,
    pub is_key: Option<bool>,
    pub time_created: Option<Timestamp>,
    pub source_hosts: Vec<SourceHostDetail>,
    pub files: Vec<FileDetail>,
}

/// `SourceHostDetailList/SourceHostDetail`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceHostDetail {
    pub user_name: Option<String>,
    pub host_name: Option<String>,
    pub host_domain: Option<String>,
}

/// `FileDetails/file`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileDetail {
    pub file_name: Option<String>,
    pub url: Option<String>,
    pub trusted_or_unknown: Option<String>,
    pub prevalence: Option<String>,
    pub first_seen: Option<Timestamp>,
    pub md5: Option<String>,
    pub sha256: Option<String>,
}

/// `WorkFlowDetail`: the vendor's own workflow state of the incident.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkflowDetail {
    pub status: Option<String>,
    pub resolution: Option<String>,
    pub assigned_person: Option<String>,
    pub assigned_organization: Option<String>,
}

/// `IncidentComments/IncidentComment`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentComment {
    pub time: Option<Timestamp>,
    pub comment: Option<String>,
    pub commented_by: Option<String>,
}

/// `IncidentAttachmentItems/IncidentAttachmentItem`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IncidentAttachment {
    pub number: Option<String>,
    pub name: Option<String>,
    pub upload_date: Option<Timestamp>,
    pub upload_by: Option<String>,
    pub comment: Option<String>,
}

/// The parameters of `UpdateIncidentWorkflow`. `None` is sent as an empty element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkflowUpdate {
    pub number: String,
    pub status: Option<String>,
    pub resolution: Option<String>,
    pub reference: Option<String>,
    /// A vendor severity label (`Emergency`, `Critical`, `Warning`, `Informational`).
    pub severity: Option<String>,
    /// Sent as `AssignedToOrganiztion`, the service's own spelling.
    pub assigned_to_organization: Option<String>,
    pub assigned_to_person: Option<String>,
    pub comments: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Requests

/// `StartTimeStampGMT` as the service's own clients write it: `2017-12-20T10:04:35.435Z`.
pub fn format_start_time(t: Timestamp) -> String {
    t.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The body of an `IncidentGetList` request. Empty `severities`/`source_ips` mean all, no
/// `max` means no limit (the elements are sent empty).
pub fn incident_get_list_request(
    version: SoapVersion,
    since: Timestamp,
    severities: &[MssSeverity],
    source_ips: &[String],
    max: Option<u32>,
) -> String {
    let start = format_start_time(since);
    let ips = source_ips
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    let sevs = severities
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let max = max.map(|m| m.to_string()).unwrap_or_default();
    envelope(
        version,
        Operation::IncidentGetList,
        &[
            ("StartTimeStampGMT", start.as_str()),
            ("SourceIP", ips.as_str()),
            ("Severity", sevs.as_str()),
            ("MaxIncidents", max.as_str()),
        ],
    )
}

/// The body of an `IncidentQuery` or `IncidentWorkflowQuery` request.
pub fn incident_query_request(version: SoapVersion, operation: Operation, number: &str) -> String {
    envelope(version, operation, &[("IncidentNumber", number.trim())])
}

/// The body of an `UpdateIncidentWorkflow` request.
pub fn update_incident_workflow_request(version: SoapVersion, update: &WorkflowUpdate) -> String {
    let v = |o: &Option<String>| o.as_deref().map(str::trim).unwrap_or_default().to_string();
    let (status, resolution, reference, severity, org, person, comments) = (
        v(&update.status),
        v(&update.resolution),
        v(&update.reference),
        v(&update.severity),
        v(&update.assigned_to_organization),
        v(&update.assigned_to_person),
        // Comments keep their inner line breaks and spacing.
        update.comments.clone().unwrap_or_default(),
    );
    envelope(
        version,
        Operation::UpdateIncidentWorkflow,
        &[
            ("IncidentNumber", update.number.trim()),
            ("Status", &status),
            ("Resolution", &resolution),
            ("Reference", &reference),
            ("Severity", &severity),
            ("AssignedToOrganiztion", &org),
            ("AssignedToPerson", &person),
            ("Comments", &comments),
        ],
    )
}

fn envelope(version: SoapVersion, operation: Operation, params: &[(&str, &str)]) -> String {
    let mut w = Writer::new(Vec::with_capacity(512));
    let written: std::io::Result<()> = (|| {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))?;
        w.create_element("soap:Envelope")
            .with_attribute(("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"))
            .with_attribute(("xmlns:xsd", "http://www.w3.org/2001/XMLSchema"))
            .with_attribute(("xmlns:soap", version.envelope_ns()))
            .write_inner_content(|w| {
                w.create_element("soap:Body").write_inner_content(|w| {
                    w.create_element(operation.name())
                        .with_attribute(("xmlns", OPERATION_NS))
                        .write_inner_content(|w| {
                            for (name, value) in params {
                                let clean = xml_chars(value);
                                if clean.is_empty() {
                                    w.create_element(*name).write_empty()?;
                                } else {
                                    w.create_element(*name)
                                        .write_text_content(BytesText::new(&clean))?;
                                }
                            }
                            Ok(())
                        })?;
                    Ok(())
                })?;
                Ok(())
            })?;
        Ok(())
    })();
    // Writing into memory cannot fail; an error here would be a bug in the writer.
    debug_assert!(written.is_ok(), "{written:?}");
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

/// Drops the characters XML 1.0 cannot carry (control characters other than tab and line
/// breaks), which would make the whole request unreadable.
fn xml_chars(s: &str) -> String {
    s.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Answers

/// Reads an `IncidentGetList` answer.
pub fn parse_incident_get_list(body: &[u8]) -> Result<IncidentList, SymantecMssError> {
    with_result(body, Operation::IncidentGetList, |result, src| {
        Ok(collect_in_result(
            result,
            src,
            "SecurityIncidentSummary",
            |nodes, src| {
                let mut list = IncidentList::default();
                for node in nodes {
                    match summary(node, src) {
                        Ok(s) => list.incidents.push(s),
                        Err(q) => list.quarantined.push(q),
                    }
                }
                list
            },
        ))
    })
}

/// Reads an `IncidentQuery` answer; `None` when it holds no incident.
pub fn parse_incident_query(body: &[u8]) -> Result<Option<SecurityIncident>, SymantecMssError> {
    parse_security_incident(body, Operation::IncidentQuery)
}

/// Reads an `IncidentWorkflowQuery` answer; `None` when it holds no incident.
pub fn parse_incident_workflow_query(
    body: &[u8],
) -> Result<Option<SecurityIncident>, SymantecMssError> {
    parse_security_incident(body, Operation::IncidentWorkflowQuery)
}

fn parse_security_incident(
    body: &[u8],
    operation: Operation,
) -> Result<Option<SecurityIncident>, SymantecMssError> {
    with_result(body, operation, |result, src| {
        collect_in_result(result, src, "SecurityIncident", |nodes, src| {
            nodes.first().map(|n| security_incident(n, src)).transpose()
        })
    })
}

/// Reads an `UpdateIncidentWorkflow` answer: whether the service applied the update.
pub fn parse_update_incident_workflow(body: &[u8]) -> Result<bool, SymantecMssError> {
    with_result(body, Operation::UpdateIncidentWorkflow, |result, _| {
        let text = result.all_text();
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(malformed(
                Operation::UpdateIncidentWorkflow.result(),
                format!("expected true or false, found {:?}", shorten(&text)),
            )),
        }
    })
}

/// The SOAP Fault in a body (any SOAP version), if it holds one: what an HTTP 500 carries.
pub fn parse_fault(body: &[u8]) -> Option<SymantecMssError> {
    with_document(body, |root, _| {
        Ok(body_element(root)?.child("Fault").map(fault))
    })
    .ok()?
}

/// Parses the body, again without odd entities if that is what stood in the way.
fn with_document<T>(
    body: &[u8],
    f: impl Fn(&Node, &Source<'_>) -> Result<T, SymantecMssError>,
) -> Result<T, SymantecMssError> {
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    match xml::parse(text) {
        Ok(root) => f(&root, &Source::plain(text)),
        Err(first) => {
            if let Some(stripped) = xml::strip_odd_entities(text)
                && let Ok(root) = xml::parse(&stripped.text)
            {
                return f(&root, &Source::stripped(text, &stripped));
            }
            Err(malformed(
                &first.element,
                format!("not well-formed XML: {}", first.detail),
            ))
        }
    }
}

/// The `Body` of the envelope.
fn body_element(root: &Node) -> Result<&Node, SymantecMssError> {
    if !root.name.eq_ignore_ascii_case("Envelope") {
        return Err(malformed(
            "Envelope",
            format!(
                "the answer is not a SOAP envelope (its root is <{}>)",
                root.name
            ),
        ));
    }
    root.child("Body")
        .ok_or_else(|| malformed("Body", "the envelope has no Body"))
}

/// Finds `<Operation>Response/<Operation>Result` in the body, a Fault being the error it says.
fn with_result<T>(
    body: &[u8],
    operation: Operation,
    f: impl Fn(&Node, &Source<'_>) -> Result<T, SymantecMssError>,
) -> Result<T, SymantecMssError> {
    with_document(body, |root, src| {
        let body = body_element(root)?;
        if let Some(fault_node) = body.child("Fault") {
            return Err(fault(fault_node));
        }
        let response = body.child(operation.response()).ok_or_else(|| {
            let found = body
                .children
                .first()
                .map_or_else(|| "an empty Body".to_string(), |c| format!("<{}>", c.name));
            malformed(
                operation.response(),
                format!("missing; the Body holds {found}"),
            )
        })?;
        let result = response.child(operation.result()).ok_or_else(|| {
            malformed(
                operation.result(),
                format!("missing from <{}>", operation.response()),
            )
        })?;
        f(result, src)
    })
}

/// Runs `f` on the outermost elements named `name` under the result, or, when the result
/// carries its XML as escaped text (a string result), under that text parsed.
fn collect_in_result<T>(
    result: &Node,
    src: &Source<'_>,
    name: &str,
    f: impl Fn(&[&Node], &Source<'_>) -> T,
) -> T {
    let found = result.find_all(name);
    if found.is_empty() && result.children.is_empty() {
        let inner = result.text.trim();
        if inner.starts_with('<') {
            if let Ok(root) = xml::parse(inner) {
                return f(&nodes_named(&root, name), &Source::plain(inner));
            }
            if let Some(stripped) = xml::strip_odd_entities(inner)
                && let Ok(root) = xml::parse(&stripped.text)
            {
                return f(
                    &nodes_named(&root, name),
                    &Source::stripped(inner, &stripped),
                );
            }
        }
    }
    f(&found, src)
}

fn nodes_named<'a>(root: &'a Node, name: &str) -> Vec<&'a Node> {
    if root.name.eq_ignore_ascii_case(name) {
        vec![root]
    } else {
        root.find_all(name)
    }
}

fn fault(node: &Node) -> SymantecMssError {
    // SOAP 1.2: Code/Value (+ Subcode/Value...), Reason/Text; SOAP 1.1: faultcode, faultstring.
    let code = match node.child("Code") {
        Some(code) => {
            let mut parts = Vec::new();
            let mut level = Some(code);
            while let Some(c) = level {
                parts.extend(c.text_of("Value"));
                level = c.child("Subcode");
            }
            (!parts.is_empty()).then(|| parts.join(" / "))
        }
        None => node.text_of("faultcode"),
    };
    let reason = node
        .child("Reason")
        .and_then(|r| r.text_of("Text").or_else(|| r.value()))
        .or_else(|| node.text_of("faultstring"));
    let detail = node
        .child("Detail")
        .or_else(|| node.child("detail"))
        .map(Node::all_text)
        .filter(|d| !d.is_empty());
    let mut reason = reason.unwrap_or_else(|| "the fault gives no reason".to_string());
    if let Some(d) = detail {
        reason = format!("{reason} ({})", shorten(&d));
    }
    SymantecMssError::SoapFault {
        code: code.unwrap_or_else(|| "unknown".to_string()),
        reason,
    }
}

fn malformed(element: &str, detail: impl Into<String>) -> SymantecMssError {
    SymantecMssError::Malformed {
        element: element.to_string(),
        detail: detail.into(),
    }
}

fn shorten(s: &str) -> String {
    let mut cut: String = s.chars().take(200).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    cut
}

/// Values of a list element: its children's texts, or its own text split on commas and
/// semicolons.
fn list(node: &Node, name: &str) -> Vec<String> {
    let Some(el) = node.child(name) else {
        return Vec::new();
    };
    if el.children.is_empty() {
        split_list(&el.text)
    } else {
        el.leaf_texts().iter().flat_map(|t| split_list(t)).collect()
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split([',', ';', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn time_of(node: &Node, name: &str) -> Option<Timestamp> {
    node.text_of(name)
        .and_then(|t| Timestamp::parse_lenient_utc(&t).ok())
}

fn bool_of(node: &Node, name: &str) -> Option<bool> {
    node.text_of(name)
        .and_then(|t| match t.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        })
}

fn summary(node: &Node, src: &Source<'_>) -> Result<IncidentSummary, Quarantined> {
    let raw = src.raw(node).to_string();
    let quarantine = |reason: String| Quarantined {
        reason: format!("{}: {reason}", super::VENDOR),
        raw: raw.as_bytes().to_vec(),
    };
    let Some(incident_number) = node.text_of("IncidentNumber") else {
        return Err(quarantine(
            "the SecurityIncidentSummary has no IncidentNumber".into(),
        ));
    };
    let time_created = match node.text_of("TimeCreated") {
        None => {
            return Err(quarantine(format!(
                "incident {incident_number}: the SecurityIncidentSummary has no TimeCreated"
            )));
        }
        Some(t) => Timestamp::parse_lenient_utc(&t).map_err(|_| {
            quarantine(format!(
                "incident {incident_number}: TimeCreated {:?} is not a date-time",
                shorten(&t)
            ))
        })?,
    };
    let t = |name: &str| node.text_of(name);
    Ok(IncidentSummary {
        incident_number,
        time_created,
        severity: t("Severity"),
        category: t("Category"),
        country_of_origin: t("CountryOfOrigin"),
        days_seen_globally: t("DaysSeenGlobally"),
        source_ips: list(node, "SourceIPString"),
        correlation: t("Correlation"),
        host_names: list(node, "HostNameList"),
        is_internal_external: t("IsInternalExternal"),
        global_lookback_days: t("GlobalLookbackDays"),
        latest_key_event: t("LatestKeyEvent"),
        customer_severity: t("CustomerSeverity"),
        country_code: t("CountryCode"),
        first_seen_in_last_30_days: t("FirstSeenInLast30Days"),
        days_seen_in_last_30_days: t("DaysSeenInLast30Days"),
        dest_organization_name: t("DestOrganizationName"),
        source_organization_name: t("SourceOrganizationName"),
        first_seen_globally: t("FirstSeenGlobally"),
        country_name: t("CountryName"),
        users: list(node, "UserList"),
        classification: t("Classification"),
        update_timestamp: time_of(node, "UpdateTimestampGMT"),
        prevalence_globally: t("PrevalenceGlobally"),
        raw,
    })
}

fn security_incident(node: &Node, src: &Source<'_>) -> Result<SecurityIncident, SymantecMssError> {
    let incident_number = node
        .text_of("IncidentNumber")
        .ok_or_else(|| malformed("IncidentNumber", "the SecurityIncident has none"))?;
    let t = |name: &str| node.text_of(name);
    let organizations = |name: &str| {
        node.child(name)
            .map(|l| {
                l.find_all("OrganizationName")
                    .iter()
                    .filter_map(|n| n.value())
                    .collect()
            })
            .unwrap_or_default()
    };
    let signatures = node
        .child("SignatureList")
        .map(|l| l.find_all("Signature").into_iter().map(signature).collect())
        .unwrap_or_default();
    let workflow = node.child("WorkFlowDetail").map(|w| WorkflowDetail {
        status: w.text_of("Status"),
        resolution: w.text_of("Resolution"),
        assigned_person: w.text_of("AssignedPerson"),
        assigned_organization: w.text_of("AssignedOrganization"),
    });
    let comments = node
        .child("IncidentComments")
        .map(|l| {
            l.find_all("IncidentComment")
                .into_iter()
                .map(|c| IncidentComment {
                    time: time_of(c, "CommentedTimeStampGMT"),
                    comment: c.text_of("Comment"),
                    commented_by: c.text_of("CommentedBy"),
                })
                .collect()
        })
        .unwrap_or_default();
    let attachments = node
        .child("IncidentAttachmentItems")
        .map(|l| {
            l.find_all("IncidentAttachmentItem")
                .into_iter()
                .map(|a| IncidentAttachment {
                    number: a.text_of("AttachmentNumber"),
                    name: a.text_of("AttachmentName"),
                    upload_date: time_of(a, "UploadDateGMT"),
                    upload_by: a.text_of("UploadBy"),
                    comment: a.text_of("Comment"),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(SecurityIncident {
        incident_number,
        time_created: time_of(node, "TimeCreated"),
        correlation: t("Correlation"),
        severity: t("Severity"),
        classification: t("Classification"),
        description: t("Description"),
        analyst_assessment: t("AnalystAssessment"),
        country_code: t("CountryCode"),
        country_name: t("CountryName"),
        number_of_analyzed_signatures: t("NumberOfAnalyzedSignatures"),
        source_organizations: organizations("SourceOrganizationList"),
        destination_organizations: organizations("DestinationOrganizationList"),
        related_tickets: node
            .child("RelatedTickets")
            .map(Node::leaf_texts)
            .unwrap_or_default(),
        signatures,
        workflow,
        comments,
        activity_logs: node
            .child("ActivityLogs")
            .map(|l| l.children.iter().map(|c| src.raw(c).to_string()).collect())
            .unwrap_or_default(),
        attachments,
        is_group_incident_available: bool_of(node, "IsGroupIncidentAvailable"),
        related_incidents: node
            .child("RelatedIncidents")
            .map(|l| {
                let numbers: Vec<String> = l
                    .children_named("IncidentNumber")
                    .filter_map(Node::value)
                    .collect();
                if numbers.is_empty() {
                    l.leaf_texts()
                } else {
                    numbers
                }
            })
            .unwrap_or_default(),
        raw: src.raw(node).to_string(),
    })
}

fn signature(node: &Node) -> Signature {
    let t = |name: &str| node.text_of(name);
    Signature {
        source_ips: list(node, "SourceIPString"),
        signature_name: t("SignatureName"),
        vendor_signature: t("VendorSignature"),
        number_blocked: t("NumberBlocked"),
        number_not_blocked: t("NumberNotBlocked"),
        is_key: bool_of(node, "IsKey"),
        time_created: time_of(node, "TimeCreated"),
        source_hosts: node
            .child("SourceHostDetailList")
            .map(|l| {
                l.find_all("SourceHostDetail")
                    .into_iter()
                    .map(|h| SourceHostDetail {
                        user_name: h.text_of("UserName"),
                        host_name: h.text_of("HostName"),
                        host_domain: h.text_of("HostDomain"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        files: node
            .child("FileDetails")
            .map(|l| {
                l.find_all("file")
                    .into_iter()
                    .map(|f| FileDetail {
                        file_name: f.text_of("FileName"),
                        url: f.text_of("URL"),
                        trusted_or_unknown: f.text_of("TrustedOrUnknown"),
                        prevalence: f.text_of("Prevalence"),
                        first_seen: time_of(f, "FirstSeenTimeStamp"),
                        md5: f.text_of("MD5Hash"),
                        sha256: f.text_of("SHA256Hash"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_both_versions() {
        let since = Timestamp::parse_rfc3339("2017-12-20T10:04:35.435Z").expect("time");
        let body = incident_get_list_request(
            SoapVersion::Soap12,
            since,
            &[MssSeverity::Emergency, MssSeverity::Critical],
            &[],
            Some(500),
        );
        assert!(
            body.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
            "{body}"
        );
        assert!(body.contains(r#"xmlns:soap="http://www.w3.org/2003/05/soap-envelope""#));
        assert!(body.contains(
            r#"<IncidentGetList xmlns="https://www.monitoredsecurity.com/"><StartTimeStampGMT>2017-12-20T10:04:35.435Z</StartTimeStampGMT><SourceIP/><Severity>Emergency,Critical</Severity><MaxIncidents>500</MaxIncidents></IncidentGetList>"#
        ), "{body}");
        let update = WorkflowUpdate {
            number: "42".into(),
            status: Some("Closed".into()),
            assigned_to_organization: Some("SOC".into()),
            comments: Some("a < b & \u{1}c".into()),
            ..WorkflowUpdate::default()
        };
        let body = update_incident_workflow_request(SoapVersion::Soap11, &update);
        assert!(body.contains(r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#));
        assert!(
            body.contains("<AssignedToOrganiztion>SOC</AssignedToOrganiztion>"),
            "{body}"
        );
        assert!(
            body.contains("<Comments>a &lt; b &amp; c</Comments>"),
            "{body}"
        );
        assert_eq!(
            SoapVersion::Soap11
                .soap_action(Operation::UpdateIncidentWorkflow)
                .as_deref(),
            Some("https://www.monitoredsecurity.com/UpdateIncidentWorkflow")
        );
    }

    #[test]
    fn severities() {
        assert_eq!(
            MssSeverity::parse(" critical "),
            Some(MssSeverity::Critical)
        );
        assert_eq!(
            MssSeverity::parse("Emergency").map(MssSeverity::to_model),
            Some(Severity::Critical)
        );
        assert_eq!(MssSeverity::parse("nope"), None);
    }

    #[test]
    fn update_answer() {
        let ok = br#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><UpdateIncidentWorkflowResponse xmlns="https://www.monitoredsecurity.com/"><UpdateIncidentWorkflowResult>true</UpdateIncidentWorkflowResult></UpdateIncidentWorkflowResponse></s:Body></s:Envelope>"#;
        assert!(parse_update_incident_workflow(ok).expect("parses"));
        let odd = String::from_utf8_lossy(ok).replace(">true<", ">maybe<");
        assert!(matches!(
            parse_update_incident_workflow(odd.as_bytes()),
            Err(SymantecMssError::Malformed { element, .. }) if element == "UpdateIncidentWorkflowResult"
        ));
    }
}
