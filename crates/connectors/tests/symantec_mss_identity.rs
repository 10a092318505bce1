//! PKCS#12 files made by another tool (the system `openssl`) load, in both the legacy
//! (RC2-40 certificates, 3DES key, SHA-1 MAC) and the modern (PBES2 AES-256, HMAC-SHA256 MAC)
//! form, with RSA and EC keys; each way a file can be wrong has its own error.

use base64::Engine as _;
use secrecy::SecretString;
use socbridge_connectors::symantec_mss::{ClientIdentity, SymantecMssError};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASS: &str = "s3cret pass";

/// Runs `openssl` with `args` in `dir`; a missing openssl fails the test with a clear message.
fn openssl(dir: &Path, args: &[&str]) -> String {
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
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A key and a self-signed certificate (`rsa` or `ec`), as `key.pem` and `cert.pem`.
fn key_and_cert(dir: &Path, kind: &str) {
    let newkey: &[&str] = match kind {
        "rsa" => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
        "-days",
        "30",
        "-subj",
        "/CN=acme-ws/O=Acme MSS tenant",
    ]);
    openssl(dir, &args);
}

/// Exports `key.pem` + `cert.pem` to `name`, legacy or with the default (modern) algorithms.
fn export(dir: &Path, name: &str, legacy: bool, extra: &[&str]) -> PathBuf {
    let pass = format!("pass:{PASS}");
    let mut args = vec!["pkcs12", "-export", "-out", name, "-passout", pass.as_str()];
    if legacy {
        args.push("-legacy");
    }
    if !extra.contains(&"-nokeys") {
        args.extend_from_slice(&["-inkey", "key.pem"]);
    }
    if !extra.contains(&"-nocerts") {
        args.extend_from_slice(&["-in", "cert.pem"]);
    }
    args.extend_from_slice(extra);
    openssl(dir, &args);
    dir.join(name)
}

/// What openssl says about the algorithms of a PKCS#12 file.
fn algorithms(dir: &Path, name: &str, legacy: bool) -> String {
    let pass = format!("pass:{PASS}");
    let mut args = vec![
        "pkcs12",
        "-info",
        "-noout",
        "-in",
        name,
        "-passin",
        pass.as_str(),
    ];
    if legacy {
        args.push("-legacy");
    }
    let out = Command::new("openssl")
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    // -info prints the algorithms on stderr.
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pass() -> SecretString {
    SecretString::from(PASS)
}

#[test]
fn legacy_and_modern_exports_load_with_rsa_and_ec_keys() {
    for kind in ["rsa", "ec"] {
        let dir = tempfile::tempdir().expect("tempdir");
        key_and_cert(dir.path(), kind);
        let legacy = export(dir.path(), "legacy.p12", true, &[]);
        let modern = export(dir.path(), "modern.p12", false, &[]);

        let info = algorithms(dir.path(), "legacy.p12", true);
        assert!(
            info.contains("pbeWithSHA1And40BitRC2-CBC") && info.contains("MAC: sha1"),
            "the legacy export is RC2-40 with a SHA-1 MAC: {info}"
        );
        assert!(info.contains("pbeWithSHA1And3-KeyTripleDES-CBC"), "{info}");
        let info = algorithms(dir.path(), "modern.p12", false);
        assert!(
            info.contains("AES-256-CBC") && info.contains("MAC: sha256"),
            "the modern export is PBES2 AES-256 with a SHA-256 MAC: {info}"
        );

        for path in [&legacy, &modern] {
            let der = std::fs::read(path).expect("p12");
            let id = ClientIdentity::from_pkcs12_der(&der, &pass())
                .unwrap_or_else(|e| panic!("{kind} {}: {e}", path.display()));
            assert!(id.info().subject.contains("CN=acme-ws"), "{:?}", id.info());
            assert!(id.info().not_after > id.info().not_before);

            // The base64 a tenant hands over, with line breaks, loads the same.
            let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
            let wrapped: String = b64
                .as_bytes()
                .chunks(76)
                .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
                .collect();
            let again = ClientIdentity::from_pkcs12_base64(&wrapped, &pass()).expect("base64");
            assert_eq!(again.info(), id.info());

            // And so does the file, raw or as base64 text.
            let from_file = ClientIdentity::from_pkcs12_file(path, &pass()).expect("file");
            assert_eq!(from_file.info(), id.info());
            let b64_path = dir.path().join("cert.b64");
            std::fs::write(&b64_path, &wrapped).expect("write");
            let from_b64_file = ClientIdentity::from_pkcs12_file(&b64_path, &pass()).expect("file");
            assert_eq!(from_b64_file.info(), id.info());

            let dbg = format!("{id:?}");
            assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        }
    }
}

#[test]
fn wrong_passphrase_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    key_and_cert(dir.path(), "rsa");
    for legacy in [true, false] {
        let p = export(dir.path(), "c.p12", legacy, &[]);
        let der = std::fs::read(p).expect("p12");
        let e = ClientIdentity::from_pkcs12_der(&der, &SecretString::from("nope"))
            .expect_err("wrong passphrase");
        assert!(matches!(e, SymantecMssError::WrongPassphrase), "{e}");
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
    }
}

#[test]
fn garbage_and_bad_base64_are_not_pkcs12() {
    for bytes in [&b"garbage, not a certificate"[..], &[0u8; 64][..], &[][..]] {
        let e = ClientIdentity::from_pkcs12_der(bytes, &pass()).expect_err("garbage");
        assert!(matches!(e, SymantecMssError::NotPkcs12 { .. }), "{e}");
        assert!(e.is_bad_input());
        assert!(e.to_string().contains("not a PKCS#12"), "{e}");
    }
    // A PEM certificate is not a PKCS#12 file either.
    let dir = tempfile::tempdir().expect("tempdir");
    key_and_cert(dir.path(), "ec");
    let pem = std::fs::read(dir.path().join("cert.pem")).expect("pem");
    assert!(matches!(
        ClientIdentity::from_pkcs12_der(&pem, &pass()),
        Err(SymantecMssError::NotPkcs12 { .. })
    ));
    let e = ClientIdentity::from_pkcs12_base64("this is *not* base64!", &pass()).expect_err("b64");
    assert!(matches!(e, SymantecMssError::NotPkcs12 { .. }), "{e}");
    assert!(e.to_string().contains("base64"), "{e}");
    let e = ClientIdentity::from_pkcs12_file(Path::new("/nonexistent/x.p12"), &pass())
        .expect_err("missing file");
    assert!(
        matches!(e, SymantecMssError::ReadFile { .. }) && e.is_bad_input(),
        "{e}"
    );
}

#[test]
fn missing_key_or_certificate_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    key_and_cert(dir.path(), "rsa");
    let no_key = export(dir.path(), "nokey.p12", false, &["-nokeys"]);
    let e = ClientIdentity::from_pkcs12_der(&std::fs::read(no_key).expect("p12"), &pass())
        .expect_err("no key");
    assert!(matches!(e, SymantecMssError::NoPrivateKey), "{e}");
    assert!(e.to_string().contains("no private key"), "{e}");
    let no_cert = export(dir.path(), "nocert.p12", false, &["-nocerts"]);
    let e = ClientIdentity::from_pkcs12_der(&std::fs::read(no_cert).expect("p12"), &pass())
        .expect_err("no cert");
    assert!(matches!(e, SymantecMssError::NoCertificate), "{e}");
    assert!(e.to_string().contains("no certificate"), "{e}");
}

/// A certificate with the given validity (rcgen), exported to PKCS#12 by openssl.
fn p12_with_validity(dir: &Path, not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["acme-ws".to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "acme-ws");
    params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("cert");
    std::fs::read(export(dir, "dated.p12", false, &[])).expect("p12")
}

#[test]
fn expired_and_not_yet_valid_certificates_say_when() {
    let dir = tempfile::tempdir().expect("tempdir");
    let der = p12_with_validity(dir.path(), (2019, 1, 1), (2020, 6, 30));
    let e = ClientIdentity::from_pkcs12_der(&der, &pass()).expect_err("expired");
    match &e {
        SymantecMssError::CertificateExpired { not_after, subject } => {
            assert_eq!(not_after.to_rfc3339(), "2020-06-30T00:00:00.000000Z");
            assert!(subject.contains("acme-ws"), "{subject}");
        }
        other => panic!("expected CertificateExpired, got {other}"),
    }
    assert!(e.is_bad_input() && e.is_auth());
    assert!(e.to_string().contains("expired at 2020-06-30"), "{e}");
    // Loaded without the clock, the same file reads, and says the same at any later time.
    let id = ClientIdentity::from_pkcs12_der_unchecked(&der, &pass()).expect("reads");
    assert!(
        id.info()
            .check_validity(socbridge_model::Timestamp::now())
            .is_err()
    );

    let der = p12_with_validity(dir.path(), (2090, 1, 1), (2091, 1, 1));
    let e = ClientIdentity::from_pkcs12_der(&der, &pass()).expect_err("not yet valid");
    assert!(
        matches!(e, SymantecMssError::CertificateNotYetValid { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("not valid before 2090-01-01"), "{e}");
}
