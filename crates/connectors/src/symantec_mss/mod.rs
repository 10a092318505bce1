//! Symantec Managed Security Services (SWS): the SOAP incident service `incidents.asmx`,
//! reached with the tenant's TLS client certificate.
//!
//! * [`identity`]: the tenant's PKCS#12 export (legacy RC2-40/3DES or modern AES-256) read in
//!   pure Rust into a rustls client identity, its validity checked before any connection;
//! * [`soap`]: request envelopes (SOAP 1.2 by default, 1.1 selectable) and tolerant answer
//!   parsers (local names, both time formats, empty elements as null, odd entities);
//! * [`map`]: the pure mapping of incidents to findings, one MSS incident being one socbridge
//!   incident (subject `vendor_incident:<IncidentNumber>`);
//! * [`client`]: [`SymantecMssClient`] over the shared HTTP stack, whose failures say whether
//!   the certificate, the proxy, the network or the service is at fault.

pub mod client;
pub mod error;
pub mod identity;
pub mod map;
pub mod soap;
mod xml;

pub use client::{
    ClientOptions, INCIDENTS_PATH, ProxyInUse, SymantecMssClient, endpoint_url,
    merge_workflow_update, no_proxy_matches, resolve_proxy,
};
pub use error::SymantecMssError;
pub use identity::{CertificateInfo, ClientIdentity};
pub use map::{map_incident, map_list, severity_of, summary_change_time};
pub use soap::{
    FileDetail, IncidentAttachment, IncidentComment, IncidentList, IncidentSummary, MssSeverity,
    Operation, SecurityIncident, Signature, SoapVersion, SourceHostDetail, WorkflowDetail,
    WorkflowUpdate, parse_fault, parse_incident_get_list, parse_incident_query,
    parse_incident_workflow_query, parse_update_incident_workflow,
};

pub const VENDOR: &str = "Symantec MSS";
