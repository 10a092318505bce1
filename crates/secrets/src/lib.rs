//! Encryption at rest of tenant credentials.
//!
//! Owns: the master key (a key file in the data dir, mode 0600, created on first run, or
//! `SOCBRIDGE_MASTER_KEY`), sealing and opening of secret blobs with XChaCha20-Poly1305.
//!
//! Invariants: plaintext secrets exist only inside [`SecretString`] / [`Zeroizing`] buffers
//! that are wiped on drop and never printed by `Debug`; a sealed blob is bound (as AEAD
//! associated data) to the tenant and source it belongs to, so a blob copied onto another row
//! does not open.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
pub use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The name of the key file inside the data directory.
pub const KEY_FILE_NAME: &str = "master.key";

/// First byte of every sealed blob, so the format can evolve.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("master key file {path}: {source}")]
    KeyFileIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "master key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error("{origin} does not hold a master key: expected 32 bytes, base64- or hex-encoded")]
    BadKey { origin: String },
    #[error(
        "a stored secret could not be decrypted: the master key is not the one it was sealed with, or the data was altered"
    )]
    Undecryptable,
    #[error("a stored secret has an unknown format")]
    UnknownFormat,
}

/// The key that seals every stored secret. Wiped from memory on drop; `Debug` shows nothing.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key (tests, first run).
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        MasterKey { key }
    }

    /// Decodes a key given as base64 or hex text (the form of the key file and of
    /// `SOCBRIDGE_MASTER_KEY`). `origin` names where it came from, for the error message.
    pub fn from_encoded(text: &str, origin: &str) -> Result<Self, SecretsError> {
        let text = Zeroizing::new(text.trim().to_string());
        let bytes = Zeroizing::new(
            B64.decode(text.as_bytes())
                .ok()
                .filter(|b| b.len() == 32)
                .or_else(|| decode_hex(&text))
                .ok_or_else(|| SecretsError::BadKey {
                    origin: origin.to_string(),
                })?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&bytes);
        Ok(MasterKey { key })
    }

    /// The key from `env_value` when given (from `SOCBRIDGE_MASTER_KEY`), else from the key
    /// file in `data_dir`, created with mode 0600 when it does not exist yet.
    pub fn load_or_create(data_dir: &Path, env_value: Option<&str>) -> Result<Self, SecretsError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Self::from_encoded(v, "SOCBRIDGE_MASTER_KEY");
        }
        let path = data_dir.join(KEY_FILE_NAME);
        let io = |source| SecretsError::KeyFileIo {
            path: path.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(text) => {
                check_permissions(&path)?;
                let text = Zeroizing::new(text);
                Self::from_encoded(&text, &path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(data_dir).map_err(io)?;
                let key = Self::generate();
                write_new_private_file(&path, key.encoded().as_bytes()).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(self.key.as_ref()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.as_ref().into())
    }

    /// Encrypts `plaintext`, binding it to `aad` (use [`aad_for_source`]).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts a blob made by [`MasterKey::seal`] with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let (&version, rest) = sealed.split_first().ok_or(SecretsError::UnknownFormat)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err(SecretsError::UnknownFormat);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Undecryptable)
    }

    /// Seals a set of named secrets (e.g. `api_key`) of one source.
    pub fn seal_fields(&self, fields: &SecretFields, aad: &[u8]) -> Vec<u8> {
        let map: BTreeMap<&str, &str> = fields
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        // Written straight into a wiped buffer sized up front, so no reallocation leaves an
        // unwiped copy of the plaintext behind.
        let capacity = 64
            + map
                .iter()
                .map(|(k, v)| 2 * (k.len() + v.len()) + 8)
                .sum::<usize>();
        let mut json = Zeroizing::new(Vec::with_capacity(capacity));
        serde_json::to_writer(&mut *json, &map)
            .expect("serialising a map of strings into memory cannot fail");
        self.seal(&json, aad)
    }

    /// Opens a blob made by [`MasterKey::seal_fields`].
    pub fn open_fields(&self, sealed: &[u8], aad: &[u8]) -> Result<SecretFields, SecretsError> {
        let plain = self.open(sealed, aad)?;
        let map: BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|_| SecretsError::UnknownFormat)?;
        Ok(SecretFields(
            map.into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
        ))
    }
}

/// The associated data that binds a sealed blob to its tenant and source.
pub fn aad_for_source(tenant: &str, source: &str) -> Vec<u8> {
    format!("socbridge/source/v1/{tenant}/{source}").into_bytes()
}

/// The associated data that binds a sealed blob to a tenant's Cisco XDR incident sink.
pub fn aad_for_xdr_sink(tenant: &str) -> Vec<u8> {
    format!("socbridge/xdr/v1/{tenant}").into_bytes()
}

/// The associated data that binds a sealed blob to a shared credential.
pub fn aad_for_credential(name: &str) -> Vec<u8> {
    format!("socbridge/credential/v1/{name}").into_bytes()
}

/// The named secrets of one source (`api_key`, `secret`, `p12_passphrase`...). `Debug` lists
/// the names only.
#[derive(Default, Clone)]
pub struct SecretFields(pub BTreeMap<String, SecretString>);

impl SecretFields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: SecretString) -> Self {
        self.0.insert(name.to_string(), value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), SecretsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|source| SecretsError::KeyFileIo {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::KeyFilePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), SecretsError> {
    Ok(())
}

/// Creates `path` (failing if it exists, so a concurrent first run cannot overwrite a key
/// another process just wrote) readable by the owner only, and syncs it to disk.
fn write_new_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_source() {
        let key = MasterKey::generate();
        let aad = aad_for_source("acme", "amp");
        let sealed = key.seal(b"s3cret", &aad);
        assert!(
            !sealed.windows(6).any(|w| w == b"s3cret"),
            "ciphertext must not hold the plaintext"
        );
        assert_eq!(&key.open(&sealed, &aad).unwrap()[..], b"s3cret");
        assert!(matches!(
            key.open(&sealed, &aad_for_source("globex", "amp")),
            Err(SecretsError::Undecryptable)
        ));
        assert!(matches!(
            MasterKey::generate().open(&sealed, &aad),
            Err(SecretsError::Undecryptable)
        ));
    }

    #[test]
    fn fields_round_trip_with_awkward_characters() {
        let key = MasterKey::generate();
        let fields = SecretFields::new()
            .with("api_key", SecretString::from("a\"b\\c\u{1}é"))
            .with("client_secret", SecretString::from(""));
        let sealed = key.seal_fields(&fields, b"x");
        let back = key.open_fields(&sealed, b"x").unwrap();
        assert_eq!(
            back.get("api_key").unwrap().expose_secret(),
            "a\"b\\c\u{1}é"
        );
        assert_eq!(back.get("client_secret").unwrap().expose_secret(), "");
        assert_eq!(
            format!("{back:?}"),
            r#"{"api_key": "<redacted>", "client_secret": "<redacted>"}"#
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = MasterKey::load_or_create(dir.path(), None).unwrap();
        let k2 = MasterKey::load_or_create(dir.path(), None).unwrap();
        let sealed = k1.seal(b"v", b"a");
        assert_eq!(&k2.open(&sealed, b"a").unwrap()[..], b"v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(
                dir.path().join(KEY_FILE_NAME),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            assert!(matches!(
                MasterKey::load_or_create(dir.path(), None),
                Err(SecretsError::KeyFilePermissions { .. })
            ));
        }
        assert_eq!(format!("{k1:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn env_key_wins_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let hex_key = "00".repeat(32);
        assert!(MasterKey::load_or_create(dir.path(), Some(&hex_key)).is_ok());
        assert!(
            !dir.path().join(KEY_FILE_NAME).exists(),
            "no key file when the env key is used"
        );
        let err = MasterKey::load_or_create(dir.path(), Some("short")).unwrap_err();
        assert!(err.to_string().contains("SOCBRIDGE_MASTER_KEY"), "{err}");
    }
}
