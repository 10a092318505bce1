//! The client against an in-test mutual-TLS server (an rcgen CA, a server certificate for
//! 127.0.0.1, client authentication required): the tenant's identity is presented and
//! accepted; a certificate of another CA, a 403, a Fault, no server, an untrusted server and a
//! broken proxy each end in their own error.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::SecretString;
use socbridge_connectors::HttpOptions;
use socbridge_connectors::symantec_mss::{
    ClientIdentity, ClientOptions, MssSeverity, SoapVersion, SymantecMssClient, SymantecMssError,
    WorkflowUpdate,
};
use socbridge_model::Timestamp;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: &str = "tenant pass";

const LIST: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><IncidentGetListResponse xmlns="https://www.monitoredsecurity.com/"><IncidentGetListResult><SecurityIncidentList xmlns=""><SecurityIncidentSummary><IncidentNumber>565656</IncidentNumber><TimeCreated>2017-12-20T10:04:35.437</TimeCreated><Severity>Critical</Severity><Classification>Scan for Web Servers</Classification></SecurityIncidentSummary></SecurityIncidentList></IncidentGetListResult></IncidentGetListResponse></soap:Body></soap:Envelope>"#;

const UPDATED_11: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><UpdateIncidentWorkflowResponse xmlns="https://www.monitoredsecurity.com/"><UpdateIncidentWorkflowResult>true</UpdateIncidentWorkflowResult></UpdateIncidentWorkflowResponse></soap:Body></soap:Envelope>"#;

const FAULT: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body><soap:Fault><soap:Code><soap:Value>soap:Receiver</soap:Value></soap:Code><soap:Reason><soap:Text xml:lang="en">Server was unable to process request.</soap:Text></soap:Reason></soap:Fault></soap:Body></soap:Envelope>"#;

/// A CA of this test run.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf certificate and its key.
    fn leaf(&self, cn: &str, sans: &[&str], client: bool) -> (rcgen::Certificate, KeyPair) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert, key)
    }
}

/// A PKCS#12 export made by openssl from a PEM key and certificate.
fn p12(cert_pem: &str, key_pem: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), cert_pem).expect("cert");
    std::fs::write(dir.path().join("key.pem"), key_pem).expect("key");
    openssl(
        dir.path(),
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-inkey",
            "key.pem",
            "-in",
            "cert.pem",
            "-out",
            "c.p12",
            "-passout",
            &format!("pass:{PASS}"),
        ],
    );
    std::fs::read(dir.path().join("c.p12")).expect("p12")
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "these tests need the `openssl` command line tool to make PKCS#12 files \
                 (apt-get install openssl): {e}"
            )
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn identity(cert_pem: &str, key_pem: &str) -> ClientIdentity {
    ClientIdentity::from_pkcs12_der(&p12(cert_pem, key_pem), &SecretString::from(PASS))
        .expect("identity")
}

/// A client identity issued by `ca`, with its certificate's DER.
fn tenant(ca: &Ca) -> (ClientIdentity, Vec<u8>) {
    let (cert, key) = ca.leaf("acme-ws", &[], true);
    (
        identity(&cert.pem(), &key.serialize_pem()),
        cert.der().to_vec(),
    )
}

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    peer_cert: Option<Vec<u8>>,
    head: String,
    body: String,
}

/// The in-test SWS: mutual TLS (client certificates of `client_ca` required), and a fixed
/// answer per request.
struct Server {
    addr: SocketAddr,
    ca_pem: String,
    handshakes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(client_ca: &Ca, status: u16, answer: &'static str) -> Server {
        let server_ca = Ca::new("server CA");
        let (cert, key) = server_ca.leaf("sws", &["127.0.0.1", "localhost"], false);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca.der()).expect("root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, s) = (handshakes.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, h, s) = (acceptor.clone(), h.clone(), s.clone());
                tokio::spawn(async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let peer_cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(|c| c.to_vec());
                    let Some((head, body)) = read_request(&mut tls).await else {
                        return;
                    };
                    s.lock().expect("lock").push(Seen {
                        peer_cert,
                        head,
                        body,
                    });
                    let content_type = if answer.contains("schemas.xmlsoap.org") {
                        "text/xml; charset=utf-8"
                    } else {
                        "application/soap+xml; charset=utf-8"
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Server {
            addr,
            ca_pem: server_ca.pem(),
            handshakes,
            seen,
        }
    }

    fn options(&self, version: SoapVersion) -> ClientOptions {
        ClientOptions {
            base_url: format!("https://{}/", self.addr),
            soap_version: version,
            root_ca_pem: Some(self.ca_pem.clone()),
            proxy: None,
            http: HttpOptions::for_tests(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Reads one HTTP/1.1 request: its head and its body (by Content-Length).
async fn read_request<S: AsyncReadExt + Unpin>(s: &mut S) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((head, body))
}

#[tokio::test]
async fn identity_is_presented_and_accepted() {
    let ca = Ca::new("tenant CA");
    let (id, cert_der) = tenant(&ca);
    let server = Server::start(&ca, 200, LIST).await;
    let client = SymantecMssClient::new(&id, server.options(SoapVersion::Soap12)).expect("client");
    assert_eq!(
        client.endpoint().as_str(),
        format!("https://{}/SWS/incidents.asmx", server.addr)
    );

    client.check().await.expect("the service answers");
    let since = Timestamp::parse_rfc3339("2017-12-20T10:00:00Z").expect("time");
    let list = client
        .incident_get_list(
            since,
            &[MssSeverity::Emergency, MssSeverity::Critical],
            &[],
            Some(500),
        )
        .await
        .expect("list");
    assert_eq!(list.incidents.len(), 1);
    assert_eq!(list.incidents[0].incident_number, "565656");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(
            s.peer_cert.as_deref(),
            Some(cert_der.as_slice()),
            "the tenant's certificate"
        );
        assert!(
            s.head.starts_with("POST /SWS/incidents.asmx HTTP/1.1\r\n"),
            "{}",
            s.head
        );
        assert!(
            s.head
                .to_ascii_lowercase()
                .contains("content-type: application/soap+xml; charset=utf-8"),
            "{}",
            s.head
        );
        assert!(
            !s.head.to_ascii_lowercase().contains("soapaction"),
            "{}",
            s.head
        );
    }
    assert!(
        seen[0].body.contains("<MaxIncidents>1</MaxIncidents>"),
        "{}",
        seen[0].body
    );
    assert!(
        seen[1].body.contains(
            "<StartTimeStampGMT>2017-12-20T10:00:00.000Z</StartTimeStampGMT><SourceIP/><Severity>Emergency,Critical</Severity><MaxIncidents>500</MaxIncidents>"
        ),
        "{}",
        seen[1].body
    );
}

#[tokio::test]
async fn soap11_update_carries_the_action() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let server = Server::start(&ca, 200, UPDATED_11).await;
    let client = SymantecMssClient::new(&id, server.options(SoapVersion::Soap11)).expect("client");
    let applied = client
        .update_incident_workflow(&WorkflowUpdate {
            number: "565656".into(),
            status: Some("Closed".into()),
            resolution: Some("Resolved".into()),
            severity: Some("Critical".into()),
            assigned_to_organization: Some("MSSP SOC".into()),
            comments: Some("Closed by socbridge".into()),
            ..WorkflowUpdate::default()
        })
        .await
        .expect("update");
    assert!(applied);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let head = seen[0].head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: text/xml; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("soapaction: https://www.monitoredsecurity.com/updateincidentworkflow"),
        "{head}"
    );
    assert!(
        seen[0]
            .body
            .contains("<AssignedToOrganiztion>MSSP SOC</AssignedToOrganiztion><AssignedToPerson/>"),
        "{}",
        seen[0].body
    );
}

#[tokio::test]
async fn certificate_of_another_ca_is_refused() {
    let ca = Ca::new("tenant CA");
    let other = Ca::new("test API CA");
    let (id, _) = tenant(&other);
    let server = Server::start(&ca, 200, LIST).await;
    let client = SymantecMssClient::new(&id, server.options(SoapVersion::Soap12)).expect("client");
    let e = client.check().await.expect_err("refused");
    assert!(
        matches!(e, SymantecMssError::CertificateRefused { .. }),
        "{e}"
    );
    assert!(e.is_auth() && !e.is_bad_input() && !e.is_transient(), "{e}");
    assert!(
        e.to_string().contains("refused the client certificate"),
        "{e}"
    );
    assert!(e.to_string().contains("test-API certificate"), "{e}");
    assert_eq!(
        server.handshakes.load(Ordering::SeqCst),
        1,
        "a refused certificate is not tried again"
    );
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn http_403_is_a_refused_certificate() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let server = Server::start(
        &ca,
        403,
        "403.16 Client certificate is untrusted or invalid",
    )
    .await;
    let client = SymantecMssClient::new(&id, server.options(SoapVersion::Soap12)).expect("client");
    let e = client.check().await.expect_err("403");
    assert!(
        matches!(e, SymantecMssError::CertificateRefused { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("HTTP 403"), "{e}");
}

#[tokio::test]
async fn a_fault_is_the_services_answer_and_not_retried() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let server = Server::start(&ca, 500, FAULT).await;
    let client = SymantecMssClient::new(&id, server.options(SoapVersion::Soap12)).expect("client");
    let e = client
        .incident_workflow_query("42")
        .await
        .expect_err("fault");
    match &e {
        SymantecMssError::SoapFault { code, reason } => {
            assert_eq!(code, "soap:Receiver");
            assert_eq!(reason, "Server was unable to process request.");
        }
        other => panic!("expected a fault, got {other}"),
    }
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn untrusted_server_certificate_is_named() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let server = Server::start(&ca, 200, LIST).await;
    let mut options = server.options(SoapVersion::Soap12);
    options.root_ca_pem = None;
    let client = SymantecMssClient::new(&id, options).expect("client");
    let e = client.check().await.expect_err("untrusted");
    assert!(
        matches!(e, SymantecMssError::ServerNotTrusted { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("private CA"), "{e}");
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

#[tokio::test]
async fn no_server_is_unreachable() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let addr = closed_port().await;
    let options = ClientOptions {
        http: HttpOptions::for_tests(),
        ..ClientOptions::new(format!("https://{addr}"))
    };
    let client = SymantecMssClient::new(&id, options).expect("client");
    let e = client.check().await.expect_err("unreachable");
    assert!(matches!(e, SymantecMssError::Unreachable { .. }), "{e}");
    assert!(e.is_transient() && !e.is_bad_input() && !e.is_ambiguous());
    assert!(
        e.to_string()
            .contains(&format!("https://{addr}/SWS/incidents.asmx")),
        "names the URL: {e}"
    );
    // A write that could not even connect is not ambiguous either.
    let e = client
        .update_incident_workflow(&WorkflowUpdate {
            number: "1".into(),
            ..WorkflowUpdate::default()
        })
        .await
        .expect_err("unreachable");
    assert!(
        matches!(e, SymantecMssError::Unreachable { .. }) && !e.is_ambiguous(),
        "{e}"
    );
}

/// A CONNECT proxy that answers every tunnel request with `reply`, or, with `None`, opens the
/// tunnel.
async fn proxy(reply: Option<&'static str>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let Some((head, _)) = read_request(&mut inbound).await else {
                    return;
                };
                if let Some(reply) = reply {
                    let _ = inbound.write_all(reply.as_bytes()).await;
                    return;
                }
                let Some(target) = head
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split_whitespace().next())
                else {
                    return;
                };
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = inbound
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, tunnels)
}

#[tokio::test]
async fn proxies_used_and_misconfigured() {
    let ca = Ca::new("tenant CA");
    let (id, _) = tenant(&ca);
    let server = Server::start(&ca, 200, LIST).await;

    // Through a working proxy.
    let (good, tunnels) = proxy(None).await;
    let mut options = server.options(SoapVersion::Soap12);
    options.proxy = Some(format!("http://{good}"));
    let client = SymantecMssClient::new(&id, options).expect("client");
    client.check().await.expect("through the proxy");
    assert_eq!(tunnels.load(Ordering::SeqCst), 1);

    // A proxy URL that is not one: refused before any connection, as bad input.
    for bad in ["http://exa mple:3128", "socks5://127.0.0.1:1080", "http://"] {
        let mut options = server.options(SoapVersion::Soap12);
        options.proxy = Some(bad.to_string());
        let e = SymantecMssClient::new(&id, options).expect_err(bad);
        assert!(matches!(e, SymantecMssError::ProxyUrl { .. }), "{e}");
        assert!(e.is_bad_input());
        assert!(e.to_string().starts_with("proxy misconfigured"), "{e}");
    }

    // A proxy nobody listens on.
    let closed = closed_port().await;
    let mut options = server.options(SoapVersion::Soap12);
    options.proxy = Some(format!("http://{closed}"));
    let client = SymantecMssClient::new(&id, options).expect("client");
    let e = client.check().await.expect_err("no proxy there");
    assert!(
        matches!(e, SymantecMssError::ProxyUnreachable { .. }),
        "{e}"
    );
    assert!(e.to_string().starts_with("proxy misconfigured"), "{e}");
    assert!(
        e.to_string().contains(&closed.to_string()),
        "names the proxy: {e}"
    );

    // A proxy that refuses the tunnel.
    let (refusing, _) = proxy(Some("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")).await;
    let mut options = server.options(SoapVersion::Soap12);
    options.proxy = Some(format!("http://{refusing}"));
    let client = SymantecMssClient::new(&id, options).expect("client");
    let e = client.check().await.expect_err("tunnel refused");
    assert!(
        matches!(e, SymantecMssError::ProxyUnreachable { .. }),
        "{e}"
    );
    assert!(e.to_string().contains(&refusing.to_string()), "{e}");
}
