//! The emulator's PKI and TLS settings: a "production" CA that issues the server certificate
//! and every tenant's web-service certificate, and a separate "test API" CA whose
//! certificates production refuses, as the real service does [V].
//!
//! Keys are drawn by `rcgen` (ring's system RNG): they, and so the certificates' signatures,
//! differ between runs. Everything else is fixed by the seed: names, serial numbers,
//! validity, passphrases, and the salts and IVs of the PKCS#12 exports.

use super::pkcs12::{self, P12Profile};
use base64::Engine as _;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Why the PKI could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PkiError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client verifier configuration failed: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("PKCS#12 export failed: {0}")]
    P12(#[from] pkcs12::P12Error),
}

/// One tenant's identities as handed to the customer.
pub(crate) struct TenantPki {
    /// Certificate and key in PEM (for clients that do not read PKCS#12).
    pub identity_pem: String,
    /// The test-API certificate and key in PEM.
    pub test_identity_pem: String,
    pub p12_modern: Vec<u8>,
    pub p12_legacy: Vec<u8>,
    /// A test-API certificate (modern encoding), same passphrase: production refuses it.
    pub test_p12: Vec<u8>,
    pub passphrase: String,
}

/// Everything the server and the endpoints file need.
pub(crate) struct Pki {
    /// The production CA certificate, PEM.
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    pub tenants: Vec<TenantPki>,
    /// Production client certificate DER → tenant index.
    pub by_cert: HashMap<Vec<u8>, usize>,
}

/// Validity of every certificate: fixed (deterministic) and wide enough for any test clock.
fn validity(p: &mut CertificateParams) {
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
}

fn serial(rng: &mut ChaCha8Rng) -> SerialNumber {
    let mut b = [0u8; 16];
    rng.fill(&mut b);
    b[0] &= 0x7f; // positive
    b[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&b)
}

fn dn(cn: &str, org: &str, unit: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CountryName, "US");
    d.push(DnType::OrganizationName, org);
    if let Some(u) = unit {
        d.push(DnType::OrganizationalUnitName, u);
    }
    d.push(DnType::CommonName, cn);
    d
}

fn ca_params(cn: &str, rng: &mut ChaCha8Rng) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, "socbridge-sim Managed Security Services", None);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial(rng));
    validity(&mut p);
    p
}

/// A client certificate for `cn`, signed by `issuer`.
fn client_cert(
    cn: &str,
    org: &str,
    issuer: &Issuer<'_, KeyPair>,
    rng: &mut ChaCha8Rng,
) -> Result<(Vec<u8>, KeyPair), PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, org, Some("Web Service API"));
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(serial(rng));
    validity(&mut p);
    let cert = p.signed_by(&key, issuer)?;
    Ok((cert.der().to_vec(), key))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A passphrase of 20 letters and digits (no characters a shell or an env file would mangle).
fn passphrase(rng: &mut ChaCha8Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl Pki {
    /// Builds both CAs, the server certificate (valid for loopback, `localhost` and
    /// `listen_ip`), each tenant's identities (`tenants`: (name, organisation)), and the
    /// rustls server configuration that requires a production client certificate.
    pub fn build(
        rng: &mut ChaCha8Rng,
        tenants: &[(String, String)],
        listen_ip: IpAddr,
    ) -> Result<Pki, PkiError> {
        let ca_key = KeyPair::generate()?;
        let ca_p = ca_params("socbridge-sim MSS Production Root CA", rng);
        let ca_cert = ca_p.self_signed(&ca_key)?;
        let ca_der = ca_cert.der().to_vec();
        let ca = Issuer::new(ca_p, ca_key);

        let test_key = KeyPair::generate()?;
        let test_p = ca_params("socbridge-sim MSS Test API Root CA", rng);
        let test_ca_cert = test_p.self_signed(&test_key)?;
        let test_ca_der = test_ca_cert.der().to_vec();
        let test_ca = Issuer::new(test_p, test_key);

        // The server certificate.
        let server_key = KeyPair::generate()?;
        let mut sp = CertificateParams::default();
        sp.distinguished_name = dn("localhost", "socbridge-sim Managed Security Services", None);
        let mut ips = vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ];
        if !listen_ip.is_unspecified() && !ips.contains(&listen_ip) {
            ips.push(listen_ip);
        }
        sp.subject_alt_names = ips.into_iter().map(SanType::IpAddress).collect();
        sp.subject_alt_names
            .push(SanType::DnsName("localhost".try_into()?));
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.use_authority_key_identifier_extension = true;
        sp.serial_number = Some(serial(rng));
        validity(&mut sp);
        let server_cert = sp.signed_by(&server_key, &ca)?;

        let mut out = Vec::with_capacity(tenants.len());
        let mut by_cert = HashMap::new();
        for (i, (name, org)) in tenants.iter().enumerate() {
            let pass = passphrase(rng);
            let (der, key) = client_cert(&format!("{name} Production Web Service"), org, &ca, rng)?;
            let key_der = key.serialize_der();
            let chain: [&[u8]; 2] = [&der, &ca_der];
            let friendly = format!("{name} sws production");
            let p12_modern =
                pkcs12::export(P12Profile::Modern, &friendly, &key_der, &chain, &pass, rng)?;
            let p12_legacy =
                pkcs12::export(P12Profile::Legacy, &friendly, &key_der, &chain, &pass, rng)?;
            let (test_der, test_key) =
                client_cert(&format!("{name} Test API Web Service"), org, &test_ca, rng)?;
            let test_chain: [&[u8]; 2] = [&test_der, &test_ca_der];
            let test_p12 = pkcs12::export(
                P12Profile::Modern,
                &format!("{name} sws test api"),
                &test_key.serialize_der(),
                &test_chain,
                &pass,
                rng,
            )?;
            let identity_pem = format!("{}{}", pem("CERTIFICATE", &der), key.serialize_pem());
            let test_identity_pem = format!(
                "{}{}",
                pem("CERTIFICATE", &test_der),
                test_key.serialize_pem()
            );
            by_cert.insert(der, i);
            out.push(TenantPki {
                identity_pem,
                test_identity_pem,
                p12_modern,
                p12_legacy,
                test_p12,
                passphrase: pass,
            });
        }

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_der.clone()))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )?;
        // IIS in front of an ASMX service speaks HTTP/1.1.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Pki {
            ca_pem: pem("CERTIFICATE", &ca_der),
            server: Arc::new(server),
            tenants: out,
            by_cert,
        })
    }
}
