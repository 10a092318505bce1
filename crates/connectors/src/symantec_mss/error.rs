//! Everything that can go wrong with the Symantec MSS client, each case in words that say what
//! is wrong and what to do about it.
//!
//! The variants fall in two groups, told apart by [`SymantecMssError::is_bad_input`]: what the
//! operator gave is wrong (passphrase, file, expired certificate, URL, proxy URL, a workflow
//! update that cannot be made) and retrying cannot help until someone fixes it; or the service
//! or the network misbehaved. No variant carries the passphrase or key material.

use crate::ConnectorError;
use socbridge_model::Timestamp;

/// A Symantec MSS client failure.
#[derive(Debug, thiserror::Error)]
pub enum SymantecMssError {
    /// The PKCS#12 MAC (or decryption) failed: the passphrase is not the file's.
    #[error(
        "Symantec MSS certificate: wrong passphrase for the PKCS#12 file; give the passphrase the certificate was exported with"
    )]
    WrongPassphrase,

    /// The bytes are not a PKCS#12 (`.p12`/`.pfx`) file, or not base64 of one.
    #[error(
        "Symantec MSS certificate: not a PKCS#12 (.p12/.pfx) file ({detail}); give the base64 of the exported .p12 file, or the file itself"
    )]
    NotPkcs12 { detail: String },

    /// The certificate file could not be read.
    #[error("Symantec MSS certificate: cannot read `{path}`: {detail}")]
    ReadFile { path: String, detail: String },

    /// The PKCS#12 file holds certificates but no private key.
    #[error(
        "Symantec MSS certificate: the PKCS#12 file holds no private key; export the web-service certificate again with its private key"
    )]
    NoPrivateKey,

    /// The PKCS#12 file holds a key but no certificate.
    #[error(
        "Symantec MSS certificate: the PKCS#12 file holds no certificate; export the web-service certificate again with its certificate"
    )]
    NoCertificate,

    /// The certificate or key inside could not be used (unreadable X.509, unsupported key type,
    /// key and certificate not matching).
    #[error("Symantec MSS certificate: {detail}")]
    BadIdentity { detail: String },

    /// The certificate's validity ended.
    #[error(
        "Symantec MSS certificate `{subject}` expired at {not_after}; export a current web-service certificate from the MSS portal"
    )]
    CertificateExpired {
        subject: String,
        not_after: Timestamp,
    },

    /// The certificate's validity has not begun (or the local clock is wrong).
    #[error(
        "Symantec MSS certificate `{subject}` is not valid before {not_before}; check the clock of this machine or use the current certificate"
    )]
    CertificateNotYetValid {
        subject: String,
        not_before: Timestamp,
    },

    /// The extra root CA (PEM) could not be read.
    #[error(
        "Symantec MSS root CA: {detail}; give the PEM file of the CA that issued the server's certificate"
    )]
    BadRootCa { detail: String },

    /// The server URL is not an http(s) URL.
    #[error(
        "Symantec MSS server URL `{url}` {detail}; give e.g. https://api.monitoredsecurity.com"
    )]
    BadUrl { url: String, detail: String },

    /// The proxy URL (per source, or from the environment) cannot be used.
    #[error(
        "proxy misconfigured: `{proxy}` {detail}; give an http(s) proxy URL like http://proxy.example:3128"
    )]
    ProxyUrl { proxy: String, detail: String },

    /// The proxy could not be reached, or refused to open the tunnel to the server.
    #[error(
        "proxy misconfigured: could not go through the proxy `{proxy}` to {url} ({detail}); check the proxy address, that it is running and that it allows CONNECT to the server"
    )]
    ProxyUnreachable {
        proxy: String,
        url: String,
        detail: String,
    },

    /// The server refused the client certificate (a TLS alert, or HTTP 401/403).
    #[error(
        "Symantec MSS refused the client certificate at {url} ({detail}); check it is the production web-service certificate (a test-API certificate is refused by production) and that it is not revoked"
    )]
    CertificateRefused { url: String, detail: String },

    /// The server's own certificate is not trusted.
    #[error(
        "the server at {url} presented a certificate this client does not trust ({detail}); if the server uses a private CA, give that CA's PEM file"
    )]
    ServerNotTrusted { url: String, detail: String },

    /// No connection could be made (DNS, refused, timeout while connecting).
    #[error(
        "Symantec MSS unreachable at {url} ({detail}); check the server URL, DNS, and that the network lets this machine reach it"
    )]
    Unreachable { url: String, detail: String },

    /// The connection broke after the request went out (reset, timeout waiting for the
    /// answer): the server may have acted.
    #[error("Symantec MSS at {url}: the connection broke before the answer came ({detail})")]
    ConnectionLost { url: String, detail: String },

    /// The service answered with a SOAP Fault.
    #[error("Symantec MSS answered with a SOAP Fault: {code}: {reason}")]
    SoapFault { code: String, reason: String },

    /// The answer could not be understood.
    #[error("Symantec MSS answer is malformed: <{element}>: {detail}")]
    Malformed { element: String, detail: String },

    /// The incident asked for does not exist (the answer holds none).
    #[error("Symantec MSS has no incident {number}")]
    IncidentNotFound { number: String },

    /// A workflow update lacks a value that neither the request nor the current workflow gives.
    #[error(
        "Symantec MSS workflow update of incident {number}: `{field}` is empty and the incident's current workflow has none; give it"
    )]
    MissingWorkflowField { number: String, field: &'static str },

    /// A workflow update names both an organisation and a person as assignee.
    #[error(
        "Symantec MSS workflow update of incident {number}: assign to an organisation or to a person, not both"
    )]
    AssigneeConflict { number: String },

    /// Any other failure of the shared HTTP stack (other HTTP statuses, rate limits).
    #[error(transparent)]
    Service(#[from] ConnectorError),
}

impl SymantecMssError {
    /// What the operator gave is wrong: retrying cannot help until someone fixes it. The CLI
    /// exits with code 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SymantecMssError::WrongPassphrase
                | SymantecMssError::NotPkcs12 { .. }
                | SymantecMssError::ReadFile { .. }
                | SymantecMssError::NoPrivateKey
                | SymantecMssError::NoCertificate
                | SymantecMssError::BadIdentity { .. }
                | SymantecMssError::CertificateExpired { .. }
                | SymantecMssError::CertificateNotYetValid { .. }
                | SymantecMssError::BadRootCa { .. }
                | SymantecMssError::BadUrl { .. }
                | SymantecMssError::ProxyUrl { .. }
                | SymantecMssError::MissingWorkflowField { .. }
                | SymantecMssError::AssigneeConflict { .. }
        )
    }

    /// The certificate is the problem (bad, expired or refused): polling stops being useful
    /// until someone installs another.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            SymantecMssError::CertificateExpired { .. }
                | SymantecMssError::CertificateNotYetValid { .. }
                | SymantecMssError::CertificateRefused { .. }
        ) || matches!(self, SymantecMssError::Service(e) if e.is_auth())
    }

    /// Trying again later may well succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SymantecMssError::Unreachable { .. }
            | SymantecMssError::ConnectionLost { .. }
            | SymantecMssError::ProxyUnreachable { .. }
            | SymantecMssError::Malformed { .. } => true,
            SymantecMssError::Service(e) => e.is_transient(),
            _ => false,
        }
    }

    /// A workflow update may or may not have been applied: look before writing again.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            SymantecMssError::ConnectionLost { .. } | SymantecMssError::Malformed { .. } => true,
            SymantecMssError::Service(e) => e.is_ambiguous(),
            _ => false,
        }
    }
}
