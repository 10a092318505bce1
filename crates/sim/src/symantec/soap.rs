//! SOAP on the wire: reading a request envelope (1.1 or 1.2, any prefix, any or no namespace
//! on the operation, matched by local name) and writing answers and Faults in the version the
//! request came in, as an ASMX service does.

use super::data::Incident;
use quick_xml::NsReader;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;

/// The operation namespace.
pub(crate) const OPERATION_NS: &str = "https://www.monitoredsecurity.com/";
const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// The SOAP version of a request (from its content type) and of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SoapVersion {
    /// `text/xml` with a `SOAPAction` header.
    V11,
    /// `application/soap+xml`.
    V12,
}

impl SoapVersion {
    fn envelope_ns(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11_NS,
            SoapVersion::V12 => SOAP12_NS,
        }
    }

    /// The answer's content type.
    pub fn content_type(self) -> &'static str {
        match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        }
    }
}

/// One request: the operation (local name of the Body's first child) and its children by
/// local name, text unescaped once (an element present but empty is `Some("")`).
#[derive(Clone, Debug, Default)]
pub(crate) struct SoapRequest {
    pub operation: String,
    pub params: Vec<(String, String)>,
}

impl SoapRequest {
    /// The (last) value of a parameter, trimmed; `None` when the element is absent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
    }

    /// A parameter that is absent or empty is `None`.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.param(name).filter(|v| !v.is_empty())
    }
}

/// Why a request envelope was refused (the Fault's text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("Server was unable to read request. ---> There is an error in XML document: {0}")]
    Xml(String),
    #[error("The message is not a SOAP envelope: the root element is not Envelope.")]
    NotEnvelope,
    /// The envelope's namespace is not the one of the content type's SOAP version.
    #[error(
        "Possible SOAP version mismatch: Envelope namespace {0} was unexpected. Expecting {1}."
    )]
    VersionMismatch(String, &'static str),
    #[error("The SOAP envelope has no Body.")]
    NoBody,
    #[error("The SOAP Body is empty: no operation was named.")]
    NoOperation,
}

/// Reads a request envelope.
pub(crate) fn parse(body: &[u8], version: SoapVersion) -> Result<SoapRequest, ParseError> {
    let mut r = NsReader::from_reader(body);
    r.config_mut().expand_empty_elements = true;
    let mut depth = 0usize;
    let mut in_body = false;
    let mut in_op = false;
    let mut seen_body = false;
    let mut op: Option<String> = None;
    let mut current: Option<(String, String)> = None;
    let mut params = Vec::new();
    let xml = |e: quick_xml::Error| ParseError::Xml(e.to_string());
    loop {
        let (ns, ev) = r.read_resolved_event().map_err(xml)?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match depth {
                    1 => {
                        if local != "Envelope" {
                            return Err(ParseError::NotEnvelope);
                        }
                        let found = match ns {
                            ResolveResult::Bound(n) => {
                                String::from_utf8_lossy(n.as_ref()).into_owned()
                            }
                            _ => String::new(),
                        };
                        if found != version.envelope_ns() {
                            return Err(ParseError::VersionMismatch(found, version.envelope_ns()));
                        }
                    }
                    2 if local == "Body" => {
                        in_body = true;
                        seen_body = true;
                    }
                    3 if in_body && op.is_none() => {
                        op = Some(local);
                        in_op = true;
                    }
                    4 if in_op => current = Some((local, String::new())),
                    _ => {}
                }
            }
            Event::End(_) => {
                match depth {
                    4 if in_op => {
                        if let Some(p) = current.take() {
                            params.push(p);
                        }
                    }
                    3 => in_op = false,
                    2 => in_body = false,
                    _ => {}
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) if depth == 4 && in_op => {
                let text = t.unescape().map_err(xml)?;
                if let Some((_, v)) = current.as_mut() {
                    v.push_str(&text);
                }
            }
            Event::CData(c) if depth == 4 && in_op => {
                if let Some((_, v)) = current.as_mut() {
                    v.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if depth != 0 {
        return Err(ParseError::Xml("unexpected end of document".into()));
    }
    if !seen_body {
        return Err(ParseError::NoBody);
    }
    let operation = op.ok_or(ParseError::NoOperation)?;
    Ok(SoapRequest { operation, params })
}

// ---------------------------------------------------------------------------------------
// Writing.

/// An XML document being written (into memory, which cannot fail).
pub(crate) struct Doc {
    w: quick_xml::Writer<Vec<u8>>,
}

const VEC_WRITE: &str = "writing XML into a Vec cannot fail";

impl Doc {
    pub fn new() -> Doc {
        let mut w = quick_xml::Writer::new(Vec::with_capacity(4096));
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("utf-8"), None)))
            .expect(VEC_WRITE);
        Doc { w }
    }

    pub fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut s = BytesStart::new(name);
        for a in attrs {
            s.push_attribute(*a);
        }
        self.w.write_event(Event::Start(s)).expect(VEC_WRITE);
    }

    pub fn close(&mut self, name: &str) {
        self.w
            .write_event(Event::End(BytesEnd::new(name)))
            .expect(VEC_WRITE);
    }

    /// `<name />` carrying only attributes.
    pub fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut s = BytesStart::new(name);
        for a in attrs {
            s.push_attribute(*a);
        }
        self.w.write_event(Event::Empty(s)).expect(VEC_WRITE);
    }

    /// `<name>text</name>`, escaped; `<name />` (null) when `text` is empty.
    pub fn leaf(&mut self, name: &str, text: &str) {
        if text.is_empty() {
            self.empty(name, &[]);
            return;
        }
        self.open(name, &[]);
        self.w
            .write_event(Event::Text(BytesText::new(text)))
            .expect(VEC_WRITE);
        self.close(name);
    }

    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// Starts `<?xml?><soap:Envelope ...><soap:Body>`.
fn envelope(version: SoapVersion) -> Doc {
    let mut d = Doc::new();
    d.open(
        "soap:Envelope",
        &[
            ("xmlns:soap", version.envelope_ns()),
            ("xmlns:xsi", XSI_NS),
            ("xmlns:xsd", XSD_NS),
        ],
    );
    d.open("soap:Body", &[]);
    d
}

fn end_envelope(mut d: Doc) -> Vec<u8> {
    d.close("soap:Body");
    d.close("soap:Envelope");
    d.finish()
}

/// Who is at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultCode {
    /// The request (1.1 `soap:Client`, 1.2 `soap:Sender`).
    Client,
    /// The service (1.1 `soap:Server`, 1.2 `soap:Receiver`).
    Server,
    /// The envelope's namespace does not match the SOAP version.
    VersionMismatch,
}

/// A SOAP Fault envelope in `version`.
pub(crate) fn fault(version: SoapVersion, code: FaultCode, text: &str) -> Vec<u8> {
    let mut d = envelope(version);
    d.open("soap:Fault", &[]);
    match version {
        SoapVersion::V11 => {
            let c = match code {
                FaultCode::Client => "soap:Client",
                FaultCode::Server => "soap:Server",
                FaultCode::VersionMismatch => "soap:VersionMismatch",
            };
            d.leaf("faultcode", c);
            d.leaf("faultstring", text);
            d.empty("detail", &[]);
        }
        SoapVersion::V12 => {
            let c = match code {
                FaultCode::Client => "soap:Sender",
                FaultCode::Server => "soap:Receiver",
                FaultCode::VersionMismatch => "soap:VersionMismatch",
            };
            d.open("soap:Code", &[]);
            d.leaf("soap:Value", c);
            d.close("soap:Code");
            d.open("soap:Reason", &[]);
            d.open("soap:Text", &[("xml:lang", "en")]);
            d.w.write_event(Event::Text(BytesText::new(text)))
                .expect(VEC_WRITE);
            d.close("soap:Text");
            d.close("soap:Reason");
            d.empty("soap:Detail", &[]);
        }
    }
    d.close("soap:Fault");
    end_envelope(d)
}

fn opt_num<T: ToString>(v: Option<T>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// One `SecurityIncidentSummary` (every child, empty elements for nulls).
fn summary(d: &mut Doc, i: &Incident) {
    d.open("SecurityIncidentSummary", &[]);
    d.leaf("IncidentNumber", &i.number.to_string());
    d.leaf("TimeCreated", &i.time(i.created));
    d.leaf("Severity", &i.severity);
    d.leaf("Category", &i.category);
    d.leaf("CountryOfOrigin", &i.country_name);
    d.leaf("DaysSeenGlobally", &opt_num(i.days_seen_globally));
    d.leaf("SourceIPString", &i.source_ips.join(","));
    d.leaf("Correlation", &i.correlation);
    d.leaf("HostNameList", &i.host_names.join(","));
    d.leaf("IsInternalExternal", &i.internal_external);
    d.leaf("GlobalLookbackDays", &i.global_lookback_days.to_string());
    d.leaf("LatestKeyEvent", &i.time(i.latest_key_event));
    d.leaf("CustomerSeverity", &i.customer_severity);
    d.leaf("CountryCode", &i.country_code);
    d.leaf(
        "FirstSeenInLast30Days",
        &i.first_seen_in_last_30_days
            .map(|t| i.time(t))
            .unwrap_or_default(),
    );
    d.leaf(
        "DaysSeenInLast30Days",
        &opt_num(i.days_seen_in_last_30_days),
    );
    d.leaf("DestOrganizationName", &i.destination_organization);
    d.leaf("SourceOrganizationName", &i.source_organization);
    d.leaf(
        "FirstSeenGlobally",
        &i.first_seen_globally.map(|t| i.time(t)).unwrap_or_default(),
    );
    d.leaf("CountryName", &i.country_name);
    d.leaf("UserList", &i.users.join(","));
    d.leaf("Classification", &i.classification);
    d.leaf("UpdateTimestampGMT", &i.time(i.updated));
    d.leaf("PrevalenceGlobally", &i.prevalence_globally);
    d.close("SecurityIncidentSummary");
}

/// The answer to `IncidentGetList`.
pub(crate) fn get_list_answer(version: SoapVersion, incidents: &[&Incident]) -> Vec<u8> {
    let mut d = envelope(version);
    d.open("IncidentGetListResponse", &[("xmlns", OPERATION_NS)]);
    d.open("IncidentGetListResult", &[]);
    if incidents.is_empty() {
        d.empty("SecurityIncidentList", &[("xmlns", "")]);
    } else {
        d.open("SecurityIncidentList", &[("xmlns", "")]);
        for i in incidents {
            summary(&mut d, i);
        }
        d.close("SecurityIncidentList");
    }
    d.close("IncidentGetListResult");
    d.close("IncidentGetListResponse");
    end_envelope(d)
}

/// `<List><Item>...</Item>...</List>`, or `<List />` when empty: a one-member list is still
/// a list.
fn list<T>(d: &mut Doc, name: &str, items: &[T], mut each: impl FnMut(&mut Doc, &T)) {
    if items.is_empty() {
        d.empty(name, &[]);
        return;
    }
    d.open(name, &[]);
    for it in items {
        each(d, it);
    }
    d.close(name);
}

/// One `SecurityIncident`; `workflow` adds `WorkFlowDetail`.
fn incident(d: &mut Doc, i: &Incident, workflow: bool) {
    d.open("SecurityIncident", &[("xmlns", "")]);
    d.leaf("IncidentNumber", &i.number.to_string());
    d.leaf("TimeCreated", &i.time(i.created));
    d.leaf("Correlation", &i.correlation);
    d.leaf("Severity", &i.severity);
    d.leaf("Classification", &i.classification);
    d.leaf("Description", &i.description);
    d.leaf("AnalystAssessment", &i.analyst_assessment);
    d.leaf("CountryCode", &i.country_code);
    d.leaf("CountryName", &i.country_name);
    d.leaf(
        "NumberOfAnalyzedSignatures",
        &i.signatures.len().to_string(),
    );
    for (list_name, org) in [
        ("SourceOrganizationList", &i.source_organization),
        ("DestinationOrganizationList", &i.destination_organization),
    ] {
        d.open(list_name, &[]);
        d.open("Organization", &[]);
        d.leaf("OrganizationName", org);
        d.close("Organization");
        d.close(list_name);
    }
    d.leaf("RelatedTickets", &i.related_tickets);
    list(d, "SignatureList", &i.signatures, |d, s| {
        d.open("Signature", &[]);
        d.leaf("SourceIPString", &s.source_ip);
        d.leaf("SignatureName", &s.name);
        d.leaf("VendorSignature", &s.vendor_signature);
        d.leaf("NumberBlocked", &s.blocked.to_string());
        d.leaf("NumberNotBlocked", &s.not_blocked.to_string());
        d.leaf("IsKey", if s.is_key { "true" } else { "false" });
        d.leaf("TimeCreated", &i.time(s.time_created));
        list(d, "SourceHostDetailList", &s.hosts, |d, h| {
            d.open("SourceHostDetail", &[]);
            d.leaf("UserName", &h.user_name);
            d.leaf("HostName", &h.host_name);
            d.leaf("HostDomain", &h.host_domain);
            d.close("SourceHostDetail");
        });
        list(d, "FileDetails", &s.files, |d, f| {
            d.open("file", &[]);
            d.leaf("FileName", &f.file_name);
            d.leaf("URL", &f.url);
            d.leaf("TrustedOrUnknown", &f.trusted_or_unknown);
            d.leaf("Prevalence", &f.prevalence);
            d.leaf("FirstSeenTimeStamp", &i.time(f.first_seen));
            d.leaf("MD5Hash", &f.md5);
            d.leaf("SHA256Hash", &f.sha256);
            d.close("file");
        });
        d.close("Signature");
    });
    if workflow {
        d.open("WorkFlowDetail", &[]);
        d.leaf("Status", &i.status);
        d.leaf("Resolution", &i.resolution);
        d.leaf("AssignedPerson", &i.assigned_person);
        d.leaf("AssignedOrganization", &i.assigned_organization);
        d.close("WorkFlowDetail");
    }
    list(d, "IncidentComments", &i.comments, |d, c| {
        d.open("IncidentComment", &[]);
        d.leaf("CommentedTimeStampGMT", &i.time(c.time));
        d.leaf("Comment", &c.text);
        d.leaf("CommentedBy", &c.by);
        d.close("IncidentComment");
    });
    d.empty("ActivityLogs", &[]);
    d.empty("IncidentAttachmentItems", &[]);
    d.leaf("IsGroupIncidentAvailable", "false");
    list(d, "RelatedIncidents", &i.related_incidents, |d, n| {
        d.leaf("IncidentNumber", &n.to_string());
    });
    d.close("SecurityIncident");
}

/// The answer to `IncidentWorkflowQuery` (`workflow`) or `IncidentQuery`.
pub(crate) fn query_answer(
    version: SoapVersion,
    operation: &str,
    i: &Incident,
    workflow: bool,
) -> Vec<u8> {
    let mut d = envelope(version);
    let response = format!("{operation}Response");
    let result = format!("{operation}Result");
    d.open(&response, &[("xmlns", OPERATION_NS)]);
    d.open(&result, &[]);
    incident(&mut d, i, workflow);
    d.close(&result);
    d.close(&response);
    end_envelope(d)
}

/// The answer to `UpdateIncidentWorkflow`.
pub(crate) fn update_answer(version: SoapVersion, ok: bool) -> Vec<u8> {
    let mut d = envelope(version);
    d.open("UpdateIncidentWorkflowResponse", &[("xmlns", OPERATION_NS)]);
    d.leaf(
        "UpdateIncidentWorkflowResult",
        if ok { "true" } else { "false" },
    );
    d.close("UpdateIncidentWorkflowResponse");
    end_envelope(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prefixes_namespaces_and_empty_elements() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body>
<mon:IncidentGetList xmlns:mon="https://www.monitoredsecurity.com/">
<mon:StartTimeStampGMT>2021-03-02T09:45:00.0000000Z</mon:StartTimeStampGMT>
<mon:SourceIP/><mon:Severity >Critical,Emergency</mon:Severity ><mon:MaxIncidents></mon:MaxIncidents>
</mon:IncidentGetList></s:Body></s:Envelope>"#;
        let r = parse(body, SoapVersion::V12).unwrap();
        assert_eq!(r.operation, "IncidentGetList");
        assert_eq!(r.param("SourceIP"), Some(""));
        assert_eq!(r.param("Severity"), Some("Critical,Emergency"));
        assert_eq!(r.non_empty("MaxIncidents"), None);
        assert_eq!(r.param("Nope"), None);
    }

    #[test]
    fn unescapes_once() {
        let body = br#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><UpdateIncidentWorkflow xmlns=""><Comments>a &amp;amp; b &lt;c&gt;</Comments></UpdateIncidentWorkflow></Body></Envelope>"#;
        let r = parse(body, SoapVersion::V11).unwrap();
        assert_eq!(r.param("Comments"), Some("a &amp; b <c>"));
    }

    #[test]
    fn refuses_the_wrong_version_and_bad_xml() {
        let body = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><X/></soap:Body></soap:Envelope>"#;
        assert!(matches!(
            parse(body, SoapVersion::V12),
            Err(ParseError::VersionMismatch(..))
        ));
        assert!(matches!(
            parse(b"<soap:Envelope", SoapVersion::V11),
            Err(ParseError::Xml(_))
        ));
        let empty = br#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body></soap:Body></soap:Envelope>"#;
        assert_eq!(
            parse(empty, SoapVersion::V11).unwrap_err(),
            ParseError::NoOperation
        );
    }

    #[test]
    fn faults_in_both_versions() {
        let f = String::from_utf8(fault(SoapVersion::V11, FaultCode::Client, "bad <x>")).unwrap();
        assert!(
            f.contains(
                "<faultcode>soap:Client</faultcode><faultstring>bad &lt;x&gt;</faultstring>"
            ),
            "{f}"
        );
        let f = String::from_utf8(fault(SoapVersion::V12, FaultCode::Server, "oops")).unwrap();
        assert!(f.contains("<soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang=\"en\">oops</soap:Text></soap:Reason>"), "{f}");
    }
}
