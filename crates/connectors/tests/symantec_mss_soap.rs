//! The SWS answer parsers and the mapping over hand-written answers in every variant
//! VENDOR-APIS.md §1 lists: SOAP 1.2 and 1.1, a default namespace, prefixes, `xmlns=""`, empty
//! elements, odd entities, both time formats, one-member lists, Faults of both versions. The
//! mapped findings are pinned in snapshots a reviewer can read.

use socbridge_connectors::symantec_mss::{
    IncidentList, SymantecMssError, map_incident, map_list, parse_fault, parse_incident_get_list,
    parse_incident_query, parse_incident_workflow_query, parse_update_incident_workflow,
    summary_change_time,
};
use socbridge_model::{Severity, Timestamp};

/// SOAP 1.2, the operation in a default namespace, the list in none (`xmlns=""`), both time
/// formats, empty elements, an odd entity, a one-member host list, and two records that cannot
/// be mapped.
const LIST_12: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soap:Body>
  <IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/">
   <IncidentGetListResult>
    <SecurityIncidentList xmlns="">
     <SecurityIncidentSummary>
      <IncidentNumber>565656</IncidentNumber>
      <TimeCreated>2017-12-20T10:04:35.437</TimeCreated>
      <Severity>Critical</Severity>
      <Category>Scan</Category>
      <CountryOfOrigin>Germany</CountryOfOrigin>
      <DaysSeenGlobally>3</DaysSeenGlobally>
      <SourceIPString>198.51.100.7, 203.0.113.9</SourceIPString>
      <Correlation />
      <HostNameList><HostName>web01.acme.example</HostName></HostNameList>
      <IsInternalExternal>External</IsInternalExternal>
      <GlobalLookbackDays>30</GlobalLookbackDays>
      <LatestKeyEvent>2017-12-20T12:00:00.0000000+00:00</LatestKeyEvent>
      <CustomerSeverity></CustomerSeverity>
      <CountryCode>DE</CountryCode>
      <FirstSeenInLast30Days>false</FirstSeenInLast30Days>
      <DaysSeenInLast30Days>1</DaysSeenInLast30Days>
      <DestOrganizationName>Acme&nbsp;Corp &amp; Sons</DestOrganizationName>
      <SourceOrganizationName/>
      <FirstSeenGlobally>2017-12-18T00:00:00</FirstSeenGlobally>
      <CountryName>Germany</CountryName>
      <UserList>alice,ACME\bob</UserList>
      <Classification>Scan for Web Servers</Classification>
      <UpdateTimestampGMT>2017-12-20T11:30:00.4355923+00:00</UpdateTimestampGMT>
      <PrevalenceGlobally>Low</PrevalenceGlobally>
     </SecurityIncidentSummary>
     <SecurityIncidentSummary>
      <IncidentNumber>565657</IncidentNumber>
      <TimeCreated>2017-12-20T10:04:35.4355923+00:00</TimeCreated>
      <Severity>Emergency</Severity>
      <Category>Malware</Category>
      <SourceIPString>10.1.2.3</SourceIPString>
      <HostNameList />
      <UserList />
      <Classification />
      <UpdateTimestampGMT />
     </SecurityIncidentSummary>
     <SecurityIncidentSummary>
      <TimeCreated>2017-12-20T10:04:35.437</TimeCreated>
      <Severity>Warning</Severity>
     </SecurityIncidentSummary>
     <SecurityIncidentSummary>
      <IncidentNumber>565659</IncidentNumber>
      <TimeCreated>yesterday</TimeCreated>
     </SecurityIncidentSummary>
    </SecurityIncidentList>
   </IncidentGetListResult>
  </IncidentGetListResponse>
 </soap:Body>
</soap:Envelope>"#;

/// SOAP 1.1 with a `mon:` prefix on the operation, no XML declaration, one incident.
const LIST_11: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><mon:IncidentGetListResponse xmlns:mon="https://www.monitoredsecurity.com/"><mon:IncidentGetListResult><SecurityIncidentList><SecurityIncidentSummary><IncidentNumber>1001</IncidentNumber><TimeCreated>2021-03-02T09:45:00.0000000Z</TimeCreated><Severity>Informational</Severity><Classification>Policy Violation</Classification></SecurityIncidentSummary></SecurityIncidentList></mon:IncidentGetListResult></mon:IncidentGetListResponse></s:Body></s:Envelope>"#;

/// An `IncidentWorkflowQuery` answer with one-member lists everywhere.
const DETAIL: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<soap12:Envelope xmlns:soap12="http://www.w3.org/2003/05/soap-envelope">
<soap12:Body>
<IncidentWorkflowQueryResponse xmlns="https://www.monitoredsecurity.com/">
<IncidentWorkflowQueryResult>
<SecurityIncident xmlns="">
 <IncidentNumber>565656</IncidentNumber>
 <TimeCreated>2017-12-20T10:04:35.437</TimeCreated>
 <Correlation>Host</Correlation>
 <Severity>Emergency</Severity>
 <Classification>Scan for Web Servers</Classification>
 <Description>Port scan of &lt;web&gt; servers&#160;seen</Description>
 <AnalystAssessment>Likely automated</AnalystAssessment>
 <CountryCode>DE</CountryCode>
 <CountryName>Germany</CountryName>
 <NumberOfAnalyzedSignatures>1</NumberOfAnalyzedSignatures>
 <SourceOrganizationList><Organization><OrganizationName>Evil Hosting</OrganizationName></Organization></SourceOrganizationList>
 <DestinationOrganizationList><Organization><OrganizationName>Acme</OrganizationName></Organization><Organization><OrganizationName>Acme EU</OrganizationName></Organization></DestinationOrganizationList>
 <RelatedTickets />
 <SignatureList>
  <Signature>
   <SourceIPString>198.51.100.7</SourceIPString>
   <SignatureName>HTTP Scan</SignatureName>
   <VendorSignature>SID 1000</VendorSignature>
   <NumberBlocked>0</NumberBlocked>
   <NumberNotBlocked>12</NumberNotBlocked>
   <IsKey>true</IsKey>
   <TimeCreated>2017-12-20T10:00:00</TimeCreated>
   <SourceHostDetailList><SourceHostDetail><UserName>carol</UserName><HostName>laptop-7</HostName><HostDomain>ACME</HostDomain></SourceHostDetail></SourceHostDetailList>
   <FileDetails><file><FileName>dropper.exe</FileName><URL>http://malware.example/dropper.exe</URL><TrustedOrUnknown>Unknown</TrustedOrUnknown><Prevalence>Low</Prevalence><FirstSeenTimeStamp>2017-12-19T00:00:00</FirstSeenTimeStamp><MD5Hash>D41D8CD98F00B204E9800998ECF8427E</MD5Hash><SHA256Hash>e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855</SHA256Hash></file></FileDetails>
  </Signature>
 </SignatureList>
 <WorkFlowDetail><Status>Open</Status><Resolution /><AssignedPerson /><AssignedOrganization>MSSP SOC</AssignedOrganization></WorkFlowDetail>
 <IncidentComments><IncidentComment><CommentedTimeStampGMT>2017-12-20T11:00:00</CommentedTimeStampGMT><Comment>Looking</Comment><CommentedBy>analyst1</CommentedBy></IncidentComment></IncidentComments>
 <ActivityLogs><ActivityLog><Action>Created</Action></ActivityLog></ActivityLogs>
 <IncidentAttachmentItems><IncidentAttachmentItem><AttachmentNumber>9</AttachmentNumber><AttachmentName>pcap.zip</AttachmentName><UploadDateGMT>2017-12-20T11:05:00</UploadDateGMT><UploadBy>analyst1</UploadBy><Comment /></IncidentAttachmentItem></IncidentAttachmentItems>
 <IsGroupIncidentAvailable>false</IsGroupIncidentAvailable>
 <RelatedIncidents><IncidentNumber>565650</IncidentNumber></RelatedIncidents>
</SecurityIncident>
</IncidentWorkflowQueryResult>
</IncidentWorkflowQueryResponse>
</soap12:Body>
</soap12:Envelope>"#;

const FAULT_12: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="en">Server was unable to process request. ---&gt; Incident 42 not found</soap:Text></soap:Reason><soap:Detail /></soap:Fault></soap:Body></soap:Envelope>"#;

const FAULT_11: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>Server did not recognize the value of HTTP Header SOAPAction: x.</faultstring><detail /></soap:Fault></soap:Body></soap:Envelope>"#;

fn list(body: &str) -> IncidentList {
    parse_incident_get_list(body.as_bytes()).unwrap_or_else(|e| panic!("parses: {e}"))
}

#[test]
fn soap12_list_with_every_variant() {
    let parsed = list(LIST_12);
    assert_eq!(parsed.incidents.len(), 2);
    let first = &parsed.incidents[0];
    assert_eq!(first.incident_number, "565656");
    assert_eq!(
        first.time_created.to_rfc3339(),
        "2017-12-20T10:04:35.437000Z"
    );
    assert_eq!(
        first.host_names,
        vec!["web01.acme.example"],
        "a one-member list"
    );
    assert_eq!(first.source_ips, vec!["198.51.100.7", "203.0.113.9"]);
    assert_eq!(first.users, vec!["alice", r"ACME\bob"]);
    assert_eq!(first.correlation, None, "an empty element is null");
    assert_eq!(first.customer_severity, None);
    assert_eq!(first.source_organization_name, None);
    assert_eq!(
        first.dest_organization_name.as_deref(),
        Some("AcmeCorp & Sons"),
        "the odd entity is stripped, the known one kept"
    );
    assert_eq!(
        first.update_timestamp.map(|t| t.to_rfc3339()).as_deref(),
        Some("2017-12-20T11:30:00.435592Z")
    );
    assert!(
        first.raw.contains("Acme&nbsp;Corp &amp; Sons"),
        "the raw XML is the answer as received: {}",
        first.raw
    );
    assert!(
        first.raw.starts_with("<SecurityIncidentSummary>"),
        "{}",
        first.raw
    );
    assert!(
        first.raw.ends_with("</SecurityIncidentSummary>"),
        "{}",
        first.raw
    );
    assert_eq!(
        summary_change_time(first).to_rfc3339(),
        "2017-12-20T12:00:00.000000Z",
        "LatestKeyEvent is the latest change"
    );
    let second = &parsed.incidents[1];
    assert_eq!(
        second.time_created.to_rfc3339(),
        "2017-12-20T10:04:35.435592Z"
    );
    assert!(second.host_names.is_empty() && second.classification.is_none());
    assert_eq!(summary_change_time(second), second.time_created);

    let (findings, quarantined) = map_list(&parsed);
    assert_eq!(
        findings
            .iter()
            .map(|f| f.vendor_key.as_str())
            .collect::<Vec<_>>(),
        vec!["565657", "565656"],
        "oldest first"
    );
    assert_eq!(findings[0].severity, Severity::Critical, "Emergency");
    assert_eq!(findings[1].severity, Severity::High, "Critical");
    assert_eq!(
        findings[0].title, "Malware",
        "Category when there is no Classification"
    );
    insta::assert_json_snapshot!("list_12_findings", findings);
    let reasons: Vec<&str> = quarantined.iter().map(|q| q.reason.as_str()).collect();
    insta::assert_snapshot!("list_12_quarantined", reasons.join("\n"));
    assert!(
        String::from_utf8_lossy(&quarantined[1].raw)
            .contains("<TimeCreated>yesterday</TimeCreated>")
    );
}

#[test]
fn soap11_list_with_prefixes() {
    let parsed = list(LIST_11);
    assert_eq!(parsed.incidents.len(), 1);
    assert!(parsed.quarantined.is_empty());
    let (findings, _) = map_list(&parsed);
    assert_eq!(findings[0].severity, Severity::Informational);
    assert_eq!(
        findings[0].observed_at,
        Timestamp::parse_rfc3339("2021-03-02T09:45:00Z").expect("time")
    );
    insta::assert_json_snapshot!("list_11_findings", findings);
}

#[test]
fn empty_and_string_results() {
    for body in [
        r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult /></IncidentGetListResponse></soap:Body></soap:Envelope>"#,
        r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult><SecurityIncidentList xmlns="" /></IncidentGetListResult></IncidentGetListResponse></soap:Body></soap:Envelope>"#,
    ] {
        assert_eq!(list(body), IncidentList::default());
    }
    // The list as escaped text (a string result), as some ASMX services answer.
    let escaped = r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult>&lt;SecurityIncidentList&gt;&lt;SecurityIncidentSummary&gt;&lt;IncidentNumber&gt;7&lt;/IncidentNumber&gt;&lt;TimeCreated&gt;2017-12-20T10:04Z&lt;/TimeCreated&gt;&lt;/SecurityIncidentSummary&gt;&lt;/SecurityIncidentList&gt;</IncidentGetListResult></IncidentGetListResponse></soap:Body></soap:Envelope>"#;
    let parsed = list(escaped);
    assert_eq!(parsed.incidents.len(), 1);
    assert_eq!(
        parsed.incidents[0].time_created.to_rfc3339(),
        "2017-12-20T10:04:00.000000Z",
        "a time without seconds"
    );
    assert_eq!(
        parsed.incidents[0].raw,
        "<SecurityIncidentSummary><IncidentNumber>7</IncidentNumber><TimeCreated>2017-12-20T10:04Z</TimeCreated></SecurityIncidentSummary>"
    );
}

#[test]
fn workflow_detail_and_mapping_with_it() {
    let detail = parse_incident_workflow_query(DETAIL.as_bytes())
        .expect("parses")
        .expect("an incident");
    assert_eq!(detail.signatures.len(), 1, "a one-member list");
    assert_eq!(detail.signatures[0].source_hosts.len(), 1);
    assert_eq!(detail.signatures[0].files.len(), 1);
    assert_eq!(
        detail.workflow.as_ref().and_then(|w| w.status.as_deref()),
        Some("Open")
    );
    assert_eq!(
        detail
            .workflow
            .as_ref()
            .and_then(|w| w.resolution.as_deref()),
        None
    );
    assert_eq!(
        detail.description.as_deref(),
        Some("Port scan of <web> servers\u{a0}seen")
    );
    assert_eq!(detail.related_incidents, vec!["565650"]);
    assert!(detail.raw.starts_with("<SecurityIncident xmlns=\"\">"));
    insta::assert_debug_snapshot!("workflow_detail", detail);

    // The same answer for IncidentQuery's element names reads through the other parser.
    let as_query = DETAIL.replace("IncidentWorkflowQuery", "IncidentQuery");
    let q = parse_incident_query(as_query.as_bytes())
        .expect("parses")
        .expect("an incident");
    assert_eq!(q.incident_number, "565656");

    let summary = list(LIST_12).incidents.remove(0);
    let finding = map_incident(&summary, Some(&detail));
    assert_eq!(
        finding.severity,
        Severity::Critical,
        "the detail's severity is fresher"
    );
    assert_eq!(finding.raw, detail.raw);
    insta::assert_json_snapshot!("finding_with_detail", finding);
}

#[test]
fn no_incident_in_a_query_answer() {
    let body = r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><IncidentQueryResponse xmlns="https://www.monitoredsecurity.com/"><IncidentQueryResult /></IncidentQueryResponse></soap:Body></soap:Envelope>"#;
    assert_eq!(parse_incident_query(body.as_bytes()).expect("parses"), None);
}

#[test]
fn faults_of_both_versions() {
    for (body, code, reason) in [
        (
            FAULT_12,
            "soap:Receiver",
            "Server was unable to process request. ---> Incident 42 not found",
        ),
        (
            FAULT_11,
            "soap:Client",
            "Server did not recognize the value of HTTP Header SOAPAction: x.",
        ),
    ] {
        for result in [
            parse_incident_get_list(body.as_bytes()).map(|_| ()),
            parse_incident_workflow_query(body.as_bytes()).map(|_| ()),
            parse_update_incident_workflow(body.as_bytes()).map(|_| ()),
        ] {
            match result {
                Err(SymantecMssError::SoapFault { code: c, reason: r }) => {
                    assert_eq!((c.as_str(), r.as_str()), (code, reason));
                }
                other => panic!("expected a fault, got {other:?}"),
            }
        }
        let e = parse_fault(body.as_bytes()).expect("a fault");
        assert!(e.to_string().contains(reason), "{e}");
        assert!(!e.is_bad_input());
    }
    assert!(parse_fault(LIST_12.as_bytes()).is_none());
    assert!(parse_fault(b"<html>502 Bad Gateway</html>").is_none());
}

#[test]
fn malformed_answers_name_the_element() {
    let cases: [(&[u8], &str); 6] = [
        (b"", "document"),
        (b"<html><body>Service Unavailable</body></html>", "Envelope"),
        (
            br#"<soap:Envelope xmlns:soap="x"><soap:Header/></soap:Envelope>"#,
            "Body",
        ),
        (
            br#"<soap:Envelope xmlns:soap="x"><soap:Body><Other/></soap:Body></soap:Envelope>"#,
            "IncidentGetListResponse",
        ),
        (
            br#"<soap:Envelope xmlns:soap="x"><soap:Body><IncidentGetListResponse/></soap:Body></soap:Envelope>"#,
            "IncidentGetListResult",
        ),
        (
            br#"<soap:Envelope xmlns:soap="x"><soap:Body><IncidentGetListResponse><IncidentGetListResult><SecurityIncidentList><SecurityIncidentSummary><IncidentNumber>1</IncidentNumber>"#,
            "SecurityIncidentSummary",
        ),
    ];
    for (body, element) in cases {
        match parse_incident_get_list(body) {
            Err(SymantecMssError::Malformed { element: e, .. }) => {
                assert_eq!(e, element, "{}", String::from_utf8_lossy(body));
            }
            other => panic!(
                "expected Malformed for {}, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
    let missing_number = DETAIL.replace("<IncidentNumber>565656</IncidentNumber>", "");
    assert!(matches!(
        parse_incident_workflow_query(missing_number.as_bytes()),
        Err(SymantecMssError::Malformed { element, .. }) if element == "IncidentNumber"
    ));
}
