//! The WSDL an ASMX service generates for this API (`GET ...incidents.asmx?WSDL`): two
//! bindings (`IncidentsSoap` for SOAP 1.1, `IncidentsSoap12`), `soapAction` on every
//! operation, every request element `minOccurs="0"`, results that carry un-namespaced XML
//! typed as .NET `XmlNode` (`mixed="true"` around `<s:any/>`), and `soap:address` built from
//! the URL the WSDL was requested at, so a client that reads it posts back to this host.

use super::soap::OPERATION_NS;

/// The operations and their request children, in the service's order.
pub(crate) const OPERATIONS: [(&str, &[&str]); 4] = [
    (
        "IncidentGetList",
        &["StartTimeStampGMT", "SourceIP", "Severity", "MaxIncidents"],
    ),
    ("IncidentWorkflowQuery", &["IncidentNumber"]),
    ("IncidentQuery", &["IncidentNumber"]),
    (
        "UpdateIncidentWorkflow",
        &[
            "IncidentNumber",
            "Status",
            "Resolution",
            "Reference",
            "Severity",
            "AssignedToOrganiztion",
            "AssignedToPerson",
            "Comments",
        ],
    ),
];

/// The WSDL with `soap:address location` = `location` (e.g.
/// `https://127.0.0.1:P/SWS/incidents.asmx`).
pub(crate) fn render(location: &str) -> String {
    let loc = quick_xml::escape::escape(location);
    let ns = OPERATION_NS;
    let mut types = String::new();
    let mut messages = String::new();
    let mut port_ops = String::new();
    let mut b11 = String::new();
    let mut b12 = String::new();
    for (op, params) in OPERATIONS {
        types.push_str(&format!(
            "      <s:element name=\"{op}\">\n        <s:complexType>\n          <s:sequence>\n"
        ));
        for p in params {
            types.push_str(&format!(
                "            <s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"{p}\" type=\"s:string\" />\n"
            ));
        }
        types.push_str("          </s:sequence>\n        </s:complexType>\n      </s:element>\n");
        let result = if op == "UpdateIncidentWorkflow" {
            format!(
                "            <s:element minOccurs=\"1\" maxOccurs=\"1\" name=\"{op}Result\" type=\"s:boolean\" />\n"
            )
        } else {
            format!(
                "            <s:element minOccurs=\"0\" maxOccurs=\"1\" name=\"{op}Result\">\n              <s:complexType mixed=\"true\">\n                <s:sequence>\n                  <s:any />\n                </s:sequence>\n              </s:complexType>\n            </s:element>\n"
            )
        };
        types.push_str(&format!(
            "      <s:element name=\"{op}Response\">\n        <s:complexType>\n          <s:sequence>\n{result}          </s:sequence>\n        </s:complexType>\n      </s:element>\n"
        ));
        messages.push_str(&format!(
            "  <wsdl:message name=\"{op}SoapIn\">\n    <wsdl:part name=\"parameters\" element=\"tns:{op}\" />\n  </wsdl:message>\n  <wsdl:message name=\"{op}SoapOut\">\n    <wsdl:part name=\"parameters\" element=\"tns:{op}Response\" />\n  </wsdl:message>\n"
        ));
        port_ops.push_str(&format!(
            "    <wsdl:operation name=\"{op}\">\n      <wsdl:input message=\"tns:{op}SoapIn\" />\n      <wsdl:output message=\"tns:{op}SoapOut\" />\n    </wsdl:operation>\n"
        ));
        for (out, prefix) in [(&mut b11, "soap"), (&mut b12, "soap12")] {
            out.push_str(&format!(
                "    <wsdl:operation name=\"{op}\">\n      <{prefix}:operation soapAction=\"{ns}{op}\" style=\"document\" />\n      <wsdl:input>\n        <{prefix}:body use=\"literal\" />\n      </wsdl:input>\n      <wsdl:output>\n        <{prefix}:body use=\"literal\" />\n      </wsdl:output>\n    </wsdl:operation>\n"
            ));
        }
    }
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<wsdl:definitions xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:tm="http://microsoft.com/wsdl/mime/textMatching/" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:mime="http://schemas.xmlsoap.org/wsdl/mime/" xmlns:tns="{ns}" xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/" xmlns:http="http://schemas.xmlsoap.org/wsdl/http/" targetNamespace="{ns}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">
  <wsdl:types>
    <s:schema elementFormDefault="qualified" targetNamespace="{ns}">
{types}    </s:schema>
  </wsdl:types>
{messages}  <wsdl:portType name="IncidentsSoap">
{port_ops}  </wsdl:portType>
  <wsdl:binding name="IncidentsSoap" type="tns:IncidentsSoap">
    <soap:binding transport="http://schemas.xmlsoap.org/soap/http" />
{b11}  </wsdl:binding>
  <wsdl:binding name="IncidentsSoap12" type="tns:IncidentsSoap">
    <soap12:binding transport="http://schemas.xmlsoap.org/soap/http" />
{b12}  </wsdl:binding>
  <wsdl:service name="Incidents">
    <wsdl:port name="IncidentsSoap" binding="tns:IncidentsSoap">
      <soap:address location="{loc}" />
    </wsdl:port>
    <wsdl:port name="IncidentsSoap12" binding="tns:IncidentsSoap12">
      <soap12:address location="{loc}" />
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#
    )
}
