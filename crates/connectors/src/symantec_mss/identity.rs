//! The tenant's client certificate: a PKCS#12 (`.p12`/`.pfx`) export, read in pure Rust and
//! turned into a rustls client identity.
//!
//! Both kinds of export in circulation load: legacy ones (certificates under
//! `pbeWithSHA1And40BitRC2-CBC`, the key under `pbeWithSHA1And3-KeyTripleDES-CBC`, a SHA-1
//! MAC: what Windows and OpenSSL 1.x wrote, and `openssl pkcs12 -export -legacy`) and modern
//! ones (PBES2 with PBKDF2 and AES-256-CBC, an HMAC-SHA256 MAC: OpenSSL 3's default). The
//! reader is `p12-keystore`, whose default `pbes1` feature decrypts RC2-40 and 3DES.
//!
//! The certificate's validity is checked when it is loaded and before every call, so an
//! expired certificate is reported as such, with its date, rather than as a refused TLS
//! handshake.

use super::error::SymantecMssError;
use base64::Engine as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secrecy::{ExposeSecret, SecretString};
use socbridge_model::Timestamp;
use std::path::Path;

/// What the client certificate says about itself (no secret in here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject distinguished name, e.g. `CN=acme-ws, O=Acme`.
    pub subject: String,
    pub issuer: String,
    /// Hex serial number.
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

impl CertificateInfo {
    /// Whether the certificate is valid at `now`, with the error that says when it is not.
    pub fn check_validity(&self, now: Timestamp) -> Result<(), SymantecMssError> {
        if now > self.not_after {
            return Err(SymantecMssError::CertificateExpired {
                subject: self.subject.clone(),
                not_after: self.not_after,
            });
        }
        if now < self.not_before {
            return Err(SymantecMssError::CertificateNotYetValid {
                subject: self.subject.clone(),
                not_before: self.not_before,
            });
        }
        Ok(())
    }
}

/// A loaded client identity: the private key and certificate chain (leaf first), ready for
/// the TLS stack.
#[derive(Clone)]
pub struct ClientIdentity {
    /// PKCS#8 key then the chain, PEM-encoded: the form `reqwest::Identity::from_pem` reads.
    pem: SecretString,
    info: CertificateInfo,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("info", &self.info)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl ClientIdentity {
    /// Loads the base64 of a `.p12` file (whitespace and line breaks allowed, padding
    /// optional), as tenants hand it over, and checks that the certificate is valid now.
    pub fn from_pkcs12_base64(
        base64_text: &str,
        passphrase: &SecretString,
    ) -> Result<Self, SymantecMssError> {
        let der = decode_base64(base64_text)?;
        Self::from_pkcs12_der(&der, passphrase)
    }

    /// Loads a `.p12` file's bytes and checks that the certificate is valid now.
    pub fn from_pkcs12_der(
        der: &[u8],
        passphrase: &SecretString,
    ) -> Result<Self, SymantecMssError> {
        let identity = Self::from_pkcs12_der_unchecked(der, passphrase)?;
        identity.info.check_validity(Timestamp::now())?;
        Ok(identity)
    }

    /// Reads a `.p12` file from disk (raw bytes, or the base64 of them) and checks that the
    /// certificate is valid now.
    pub fn from_pkcs12_file(
        path: &Path,
        passphrase: &SecretString,
    ) -> Result<Self, SymantecMssError> {
        let bytes = std::fs::read(path).map_err(|e| SymantecMssError::ReadFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        if looks_like_pfx(&bytes) {
            return Self::from_pkcs12_der(&bytes, passphrase);
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) => Self::from_pkcs12_base64(text, passphrase),
            Err(_) => Self::from_pkcs12_der(&bytes, passphrase),
        }
    }

    /// Loads a `.p12` file's bytes without looking at the clock: the certificate may be
    /// expired. [`CertificateInfo::check_validity`] says whether it is usable at a given time.
    pub fn from_pkcs12_der_unchecked(
        der: &[u8],
        passphrase: &SecretString,
    ) -> Result<Self, SymantecMssError> {
        if !looks_like_pfx(der) {
            return Err(SymantecMssError::NotPkcs12 {
                detail: "the data does not start like a PKCS#12 structure".into(),
            });
        }
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(der, passphrase.expose_secret())
            .map_err(p12_error)?;
        if archive.keys.is_empty() {
            return Err(SymantecMssError::NoPrivateKey);
        }
        if archive.certs.is_empty() {
            return Err(SymantecMssError::NoCertificate);
        }
        let (key_der, leaf_index) = pick_key_and_leaf(&archive)?;
        let leaf = &archive.certs[leaf_index].cert;
        let info = certificate_info(leaf.as_der())?;

        let mut pem = pem_block("PRIVATE KEY", &key_der);
        pem.push_str(&pem_block("CERTIFICATE", leaf.as_der()));
        for (i, bag) in archive.certs.iter().enumerate() {
            if i != leaf_index && bag.cert.as_der() != leaf.as_der() {
                pem.push_str(&pem_block("CERTIFICATE", bag.cert.as_der()));
            }
        }
        Ok(ClientIdentity {
            pem: SecretString::from(pem),
            info,
        })
    }

    /// What the certificate says about itself.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The identity for reqwest's rustls backend.
    pub(crate) fn to_reqwest(&self) -> Result<reqwest::Identity, SymantecMssError> {
        reqwest::Identity::from_pem(self.pem.expose_secret().as_bytes()).map_err(|e| {
            SymantecMssError::BadIdentity {
                detail: format!("the key and certificate cannot be used for TLS: {e}"),
            }
        })
    }
}

/// The first bytes of a DER PFX: `SEQUENCE { INTEGER 3, ...`.
fn looks_like_pfx(der: &[u8]) -> bool {
    if der.first() != Some(&0x30) {
        return false;
    }
    let header = match der.get(1) {
        Some(&l) if l < 0x80 => 2,
        Some(&l) if (0x81..=0x84).contains(&l) => 2 + usize::from(l & 0x7f),
        _ => return false,
    };
    der.get(header..header + 3) == Some(&[0x02, 0x01, 0x03][..])
}

fn decode_base64(text: &str) -> Result<Vec<u8>, SymantecMssError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    // Armour lines (`-----BEGIN ...-----`) and whitespace are not part of the data.
    let compact: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(SymantecMssError::NotPkcs12 {
            detail: "the certificate text is empty".into(),
        });
    }
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    standard
        .decode(&compact)
        .or_else(|_| url_safe.decode(&compact))
        .map_err(|e| SymantecMssError::NotPkcs12 {
            detail: format!("the certificate text is not base64: {e}"),
        })
}

fn p12_error(e: p12_keystore::error::Error) -> SymantecMssError {
    use p12_keystore::error::Error as P;
    match e {
        // The MAC is keyed by the passphrase; without a MAC, a wrong passphrase shows as bad
        // padding or an undecryptable bag.
        P::MacError(_) | P::UnpadError | P::Pkcs5Error(_) => SymantecMssError::WrongPassphrase,
        P::UnsupportedEncryptionScheme | P::UnsupportedMacAlgorithm => {
            SymantecMssError::BadIdentity {
                detail: format!(
                    "the PKCS#12 file uses an encryption or MAC this reader does not support ({e}); export it again with AES-256 or 3DES"
                ),
            }
        }
        other => SymantecMssError::NotPkcs12 {
            detail: format!("the PKCS#12 structure cannot be read: {other}"),
        },
    }
}

/// The private key (PKCS#8 DER) and the index of the certificate that goes with it: the one
/// whose public key is the key's, else the one with the key's local key id, else the only
/// end-entity certificate.
fn pick_key_and_leaf(
    archive: &p12_keystore::Pkcs12Archive,
) -> Result<(Vec<u8>, usize), SymantecMssError> {
    let parsed: Vec<Option<(Vec<u8>, bool)>> = archive
        .certs
        .iter()
        .map(|bag| {
            x509_parser::parse_x509_certificate(bag.cert.as_der())
                .ok()
                .map(|(_, c)| (c.public_key().raw.to_vec(), c.is_ca()))
        })
        .collect();
    let mut unsupported = None;
    for key in &archive.keys {
        let key_der = key.key.as_der().to_vec();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.clone()));
        let signing = match rustls::crypto::ring::sign::any_supported_type(&der) {
            Ok(k) => k,
            Err(e) => {
                unsupported = Some(e.to_string());
                continue;
            }
        };
        if let Some(spki) = signing.public_key() {
            let spki: &[u8] = spki.as_ref();
            if let Some(i) = parsed
                .iter()
                .position(|p| p.as_ref().is_some_and(|(k, _)| k.as_slice() == spki))
            {
                return Ok((key_der, i));
            }
        }
        if let Some(id) = &key.local_key_id {
            if let Some(i) = archive
                .certs
                .iter()
                .position(|c| c.local_key_id.as_deref() == Some(id.0.as_slice()))
            {
                return Ok((key_der, i));
            }
        }
        let end_entities: Vec<usize> = parsed
            .iter()
            .enumerate()
            .filter(|(_, p)| p.as_ref().is_some_and(|(_, ca)| !ca))
            .map(|(i, _)| i)
            .collect();
        if let [only] = end_entities.as_slice() {
            return Ok((key_der, *only));
        }
    }
    Err(SymantecMssError::BadIdentity {
        detail: match unsupported {
            Some(e) => format!(
                "the private key is of a type TLS cannot use here ({e}); RSA, ECDSA P-256/P-384 and Ed25519 keys work"
            ),
            None => "no certificate in the PKCS#12 file matches its private key".into(),
        },
    })
}

fn certificate_info(der: &[u8]) -> Result<CertificateInfo, SymantecMssError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| SymantecMssError::BadIdentity {
            detail: format!("the certificate is not a readable X.509 certificate: {e}"),
        })?;
    let time = |t: &x509_parser::time::ASN1Time| {
        Timestamp::from_unix_seconds(t.timestamp(), 0).ok_or_else(|| {
            SymantecMssError::BadIdentity {
                detail: format!("the certificate's validity date {t} is out of range"),
            }
        })
    };
    let validity = cert.validity();
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: time(&validity.not_before)?,
        not_after: time(&validity.not_after)?,
    })
}

/// A PEM block with 64-column base64 lines.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER certificates of a PEM text (for the optional extra root CA).
pub(crate) fn pem_certificates(
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, SymantecMssError> {
    let mut out = Vec::new();
    let mut inside = false;
    let mut body = String::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            body.clear();
        } else if line.starts_with("-----END CERTIFICATE") {
            if !inside {
                break;
            }
            inside = false;
            let der = base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .map_err(|e| SymantecMssError::BadRootCa {
                    detail: format!("a CERTIFICATE block is not base64: {e}"),
                })?;
            x509_parser::parse_x509_certificate(&der).map_err(|e| SymantecMssError::BadRootCa {
                detail: format!("a CERTIFICATE block is not an X.509 certificate: {e}"),
            })?;
            out.push(CertificateDer::from(der));
        } else if inside {
            body.push_str(line);
        }
    }
    if out.is_empty() {
        return Err(SymantecMssError::BadRootCa {
            detail: "the text holds no PEM CERTIFICATE block".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfx_sniffing() {
        assert!(looks_like_pfx(&[0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03]));
        assert!(looks_like_pfx(&[0x30, 0x10, 0x02, 0x01, 0x03]));
        assert!(!looks_like_pfx(b"hello"));
        assert!(!looks_like_pfx(&[0x30]));
        assert!(!looks_like_pfx(&[0x30, 0x85, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn base64_is_read_leniently() {
        assert_eq!(decode_base64("aGVs\nbG8=").expect("b64"), b"hello");
        assert_eq!(decode_base64("aGVsbG8").expect("b64"), b"hello");
        assert!(matches!(
            decode_base64("@@@"),
            Err(SymantecMssError::NotPkcs12 { .. })
        ));
        assert!(matches!(
            decode_base64("  "),
            Err(SymantecMssError::NotPkcs12 { .. })
        ));
    }

    #[test]
    fn garbage_is_not_pkcs12() {
        let pass = SecretString::from("x");
        assert!(matches!(
            ClientIdentity::from_pkcs12_der(b"definitely not a pfx", &pass),
            Err(SymantecMssError::NotPkcs12 { .. })
        ));
        // Looks like a PFX at first glance but is cut off.
        assert!(matches!(
            ClientIdentity::from_pkcs12_der(&[0x30, 0x10, 0x02, 0x01, 0x03, 0x30], &pass),
            Err(SymantecMssError::NotPkcs12 { .. })
        ));
    }

    #[test]
    fn pem_round_trip() {
        let block = pem_block("CERTIFICATE", &[1u8; 100]);
        assert!(block.lines().all(|l| l.len() <= 64));
        assert!(matches!(
            pem_certificates(&block),
            Err(SymantecMssError::BadRootCa { .. })
        ));
        assert!(matches!(
            pem_certificates("nothing"),
            Err(SymantecMssError::BadRootCa { .. })
        ));
    }
}
