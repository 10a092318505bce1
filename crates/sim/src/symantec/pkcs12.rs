//! PKCS#12 (`.p12`/`.pfx`) export of a client identity in the two encodings customers hand
//! over (RFC 7292):
//! - [`P12Profile::Legacy`]: the private key under `pbeWithSHAAnd3-KeyTripleDES-CBC`, the
//!   certificates under `pbeWithSHAAnd40BitRC2-CBC`, a SHA-1 MAC (what Windows and OpenSSL 1.x
//!   exported for years; OpenSSL 3 needs `-legacy` to read it);
//! - [`P12Profile::Modern`]: both under PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an
//!   HMAC-SHA256 MAC (OpenSSL 3's default).
//!
//! Why by hand rather than a PKCS#12 crate: `p12-keystore`'s writer encrypts keys and
//! certificates with one algorithm (so it cannot write the field's legacy layout, 3DES key
//! plus RC2-40 certificates) and draws salts and IVs from the thread RNG; `p12` writes only
//! the legacy layout. The structure is a few nested DER sequences; the cryptography is
//! RustCrypto's (`des`, `rc2`, `aes`, `cbc`, `pbkdf2`, `hmac`, `sha1`, `sha2`). Salts and IVs
//! come from the caller's seeded generator, so an export is a pure function of its inputs.

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, InnerIvInit, KeyIvInit};
use des::TdesEde3;
use hmac::{Hmac, Mac};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use rc2::Rc2;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Key-derivation and MAC iterations (OpenSSL's default count).
const ITERATIONS: u32 = 2048;

/// Which encoding to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum P12Profile {
    Legacy,
    Modern,
}

/// Why an export failed (only a malformed key or a cipher refusing its key length, both
/// internal invariants, can cause it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum P12Error {
    #[error("cipher key or IV of the wrong length")]
    KeyLength,
}

// ---------------------------------------------------------------------------------------
// DER, just what PKCS#12 needs.

mod der {
    /// Tag, length, value.
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = content.len();
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    /// A SET OF: members sorted by their encoding, as DER wants.
    pub fn set(parts: &[&[u8]]) -> Vec<u8> {
        let mut v: Vec<&[u8]> = parts.to_vec();
        v.sort();
        tlv(0x31, &v.concat())
    }

    pub fn octets(b: &[u8]) -> Vec<u8> {
        tlv(0x04, b)
    }

    pub fn null() -> Vec<u8> {
        vec![0x05, 0x00]
    }

    pub fn int(n: u64) -> Vec<u8> {
        let bytes = n.to_be_bytes();
        let skip = bytes
            .iter()
            .take_while(|b| **b == 0)
            .count()
            .min(bytes.len() - 1);
        let mut v = bytes[skip..].to_vec();
        if v[0] & 0x80 != 0 {
            v.insert(0, 0);
        }
        tlv(0x02, &v)
    }

    pub fn oid(arcs: &[u64]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut push = |mut n: u64| {
            let mut tmp = vec![(n & 0x7f) as u8];
            n >>= 7;
            while n > 0 {
                tmp.push(0x80 | (n & 0x7f) as u8);
                n >>= 7;
            }
            tmp.reverse();
            body.extend(tmp);
        };
        push(arcs[0] * 40 + arcs[1]);
        for a in &arcs[2..] {
            push(*a);
        }
        tlv(0x06, &body)
    }

    /// `[0] EXPLICIT`.
    pub fn explicit0(content: &[u8]) -> Vec<u8> {
        tlv(0xA0, content)
    }

    pub fn bmp(s: &str) -> Vec<u8> {
        let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
        tlv(0x1E, &units)
    }
}

const OID_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 1];
const OID_ENCRYPTED_DATA: &[u64] = &[1, 2, 840, 113549, 1, 7, 6];
const OID_SHROUDED_KEY_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 2];
const OID_CERT_BAG: &[u64] = &[1, 2, 840, 113549, 1, 12, 10, 1, 3];
const OID_X509_CERT: &[u64] = &[1, 2, 840, 113549, 1, 9, 22, 1];
const OID_FRIENDLY_NAME: &[u64] = &[1, 2, 840, 113549, 1, 9, 20];
const OID_LOCAL_KEY_ID: &[u64] = &[1, 2, 840, 113549, 1, 9, 21];
const OID_PBE_SHA_3DES: &[u64] = &[1, 2, 840, 113549, 1, 12, 1, 3];
const OID_PBE_SHA_RC2_40: &[u64] = &[1, 2, 840, 113549, 1, 12, 1, 6];
const OID_PBES2: &[u64] = &[1, 2, 840, 113549, 1, 5, 13];
const OID_PBKDF2: &[u64] = &[1, 2, 840, 113549, 1, 5, 12];
const OID_HMAC_SHA256: &[u64] = &[1, 2, 840, 113549, 2, 9];
const OID_AES256_CBC: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 1, 42];
const OID_SHA1: &[u64] = &[1, 3, 14, 3, 2, 26];
const OID_SHA256: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 1];

// ---------------------------------------------------------------------------------------
// Key derivation.

/// The PKCS#12 password: BMPString (UTF-16BE) with a terminating NUL.
fn bmp_password(pass: &str) -> Vec<u8> {
    let mut v: Vec<u8> = pass.encode_utf16().flat_map(u16::to_be_bytes).collect();
    v.extend([0, 0]);
    v
}

/// The PKCS#12 key derivation (RFC 7292 appendix B.2) with hash `D`: `id` 1 for keys, 2 for
/// IVs, 3 for MAC keys.
fn pkcs12_kdf<D: Digest>(pass: &str, salt: &[u8], id: u8, iterations: u32, n: usize) -> Vec<u8> {
    const V: usize = 64; // block size of SHA-1 and SHA-256
    let u = <D as Digest>::output_size();
    let fill = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = V * src.len().div_ceil(V);
        src.iter().copied().cycle().take(len).collect()
    };
    let p = bmp_password(pass);
    let mut i: Vec<u8> = fill(salt);
    i.extend(fill(&p));
    let d = [id; V];
    let mut out = Vec::with_capacity(n + u);
    while out.len() < n {
        let mut a = D::new()
            .chain_update(d)
            .chain_update(&i)
            .finalize()
            .to_vec();
        for _ in 1..iterations {
            a = D::digest(&a).to_vec();
        }
        let b: Vec<u8> = a.iter().copied().cycle().take(V).collect();
        for block in i.chunks_mut(V) {
            // block = (block + b + 1) mod 2^(8V), big-endian.
            let mut carry = 1u16;
            for k in (0..V).rev() {
                let s = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = (s & 0xff) as u8;
                carry = s >> 8;
            }
        }
        out.extend_from_slice(&a);
    }
    out.truncate(n);
    out
}

// ---------------------------------------------------------------------------------------
// Encryption schemes: each returns (AlgorithmIdentifier DER, ciphertext).

fn pbe_params(salt: &[u8]) -> Vec<u8> {
    der::seq(&[&der::octets(salt), &der::int(u64::from(ITERATIONS))])
}

fn pbe_3des(pass: &str, rng: &mut ChaCha8Rng, data: &[u8]) -> Result<(Vec<u8>, Vec<u8>), P12Error> {
    let mut salt = [0u8; 8];
    rng.fill_bytes(&mut salt);
    let key = pkcs12_kdf::<Sha1>(pass, &salt, 1, ITERATIONS, 24);
    let iv = pkcs12_kdf::<Sha1>(pass, &salt, 2, ITERATIONS, 8);
    let enc = cbc::Encryptor::<TdesEde3>::new_from_slices(&key, &iv)
        .map_err(|_| P12Error::KeyLength)?
        .encrypt_padded_vec_mut::<Pkcs7>(data);
    let alg = der::seq(&[&der::oid(OID_PBE_SHA_3DES), &pbe_params(&salt)]);
    Ok((alg, enc))
}

fn pbe_rc2_40(
    pass: &str,
    rng: &mut ChaCha8Rng,
    data: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), P12Error> {
    let mut salt = [0u8; 8];
    rng.fill_bytes(&mut salt);
    let key = pkcs12_kdf::<Sha1>(pass, &salt, 1, ITERATIONS, 5);
    let iv = pkcs12_kdf::<Sha1>(pass, &salt, 2, ITERATIONS, 8);
    let cipher = Rc2::new_with_eff_key_len(&key, 40);
    let enc = cbc::Encryptor::<Rc2>::inner_iv_slice_init(cipher, &iv)
        .map_err(|_| P12Error::KeyLength)?
        .encrypt_padded_vec_mut::<Pkcs7>(data);
    let alg = der::seq(&[&der::oid(OID_PBE_SHA_RC2_40), &pbe_params(&salt)]);
    Ok((alg, enc))
}

fn pbes2_aes256(
    pass: &str,
    rng: &mut ChaCha8Rng,
    data: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), P12Error> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut iv);
    let mut key = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(pass.as_bytes(), &salt, ITERATIONS, &mut key);
    let enc = cbc::Encryptor::<Aes256>::new_from_slices(&key, &iv)
        .map_err(|_| P12Error::KeyLength)?
        .encrypt_padded_vec_mut::<Pkcs7>(data);
    let kdf = der::seq(&[
        &der::oid(OID_PBKDF2),
        &der::seq(&[
            &der::octets(&salt),
            &der::int(u64::from(ITERATIONS)),
            &der::seq(&[&der::oid(OID_HMAC_SHA256), &der::null()]),
        ]),
    ]);
    let cipher = der::seq(&[&der::oid(OID_AES256_CBC), &der::octets(&iv)]);
    let alg = der::seq(&[&der::oid(OID_PBES2), &der::seq(&[&kdf, &cipher])]);
    Ok((alg, enc))
}

// ---------------------------------------------------------------------------------------
// The PFX.

fn attributes(name: &str, local_key_id: &[u8]) -> Vec<u8> {
    let friendly = der::seq(&[&der::oid(OID_FRIENDLY_NAME), &der::set(&[&der::bmp(name)])]);
    let key_id = der::seq(&[
        &der::oid(OID_LOCAL_KEY_ID),
        &der::set(&[&der::octets(local_key_id)]),
    ]);
    der::set(&[&friendly, &key_id])
}

/// A `data` ContentInfo holding `content`.
fn data_content(content: &[u8]) -> Vec<u8> {
    der::seq(&[&der::oid(OID_DATA), &der::explicit0(&der::octets(content))])
}

/// An `encryptedData` ContentInfo: `alg` names the scheme, `enc` the ciphertext.
fn encrypted_content(alg: &[u8], enc: &[u8]) -> Vec<u8> {
    let eci = der::seq(&[&der::oid(OID_DATA), alg, &der::tlv(0x80, enc)]);
    let ed = der::seq(&[&der::int(0), &eci]);
    der::seq(&[&der::oid(OID_ENCRYPTED_DATA), &der::explicit0(&ed)])
}

/// Writes a PFX holding `key_pkcs8` (PKCS#8 DER) and its certificate chain `certs` (DER, the
/// leaf first; the leaf carries the friendly name `name` and the key's local key id).
pub(crate) fn export(
    profile: P12Profile,
    name: &str,
    key_pkcs8: &[u8],
    certs: &[&[u8]],
    pass: &str,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<u8>, P12Error> {
    let local_key_id = match certs.first() {
        Some(leaf) => Sha1::digest(leaf).to_vec(),
        None => vec![1],
    };
    // Certificates, encrypted as one safe.
    let mut bags = Vec::new();
    for (n, cert) in certs.iter().enumerate() {
        let value = der::seq(&[
            &der::oid(OID_X509_CERT),
            &der::explicit0(&der::octets(cert)),
        ]);
        let bag = if n == 0 {
            der::seq(&[
                &der::oid(OID_CERT_BAG),
                &der::explicit0(&value),
                &attributes(name, &local_key_id),
            ])
        } else {
            der::seq(&[&der::oid(OID_CERT_BAG), &der::explicit0(&value)])
        };
        bags.push(bag);
    }
    let cert_contents = der::tlv(0x30, &bags.concat());
    let (alg, enc) = match profile {
        P12Profile::Legacy => pbe_rc2_40(pass, rng, &cert_contents)?,
        P12Profile::Modern => pbes2_aes256(pass, rng, &cert_contents)?,
    };
    let cert_safe = encrypted_content(&alg, &enc);

    // The key, shrouded, in a plain data safe.
    let (alg, enc) = match profile {
        P12Profile::Legacy => pbe_3des(pass, rng, key_pkcs8)?,
        P12Profile::Modern => pbes2_aes256(pass, rng, key_pkcs8)?,
    };
    let epki = der::seq(&[&alg, &der::octets(&enc)]);
    let key_bag = der::seq(&[
        &der::oid(OID_SHROUDED_KEY_BAG),
        &der::explicit0(&epki),
        &attributes(name, &local_key_id),
    ]);
    let key_safe = data_content(&der::seq(&[&key_bag]));

    let auth_safe = der::seq(&[&cert_safe, &key_safe]);

    // The MAC over the AuthenticatedSafe's bytes.
    let mut mac_salt = [0u8; 8];
    rng.fill_bytes(&mut mac_salt);
    let (digest_oid, mac) = match profile {
        P12Profile::Legacy => {
            let key = pkcs12_kdf::<Sha1>(pass, &mac_salt, 3, ITERATIONS, 20);
            let mut m =
                <Hmac<Sha1> as Mac>::new_from_slice(&key).map_err(|_| P12Error::KeyLength)?;
            m.update(&auth_safe);
            (OID_SHA1, m.finalize().into_bytes().to_vec())
        }
        P12Profile::Modern => {
            let key = pkcs12_kdf::<Sha256>(pass, &mac_salt, 3, ITERATIONS, 32);
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| P12Error::KeyLength)?;
            m.update(&auth_safe);
            (OID_SHA256, m.finalize().into_bytes().to_vec())
        }
    };
    let digest_info = der::seq(&[
        &der::seq(&[&der::oid(digest_oid), &der::null()]),
        &der::octets(&mac),
    ]);
    let mac_data = der::seq(&[
        &digest_info,
        &der::octets(&mac_salt),
        &der::int(u64::from(ITERATIONS)),
    ]);
    Ok(der::seq(&[
        &der::int(3),
        &data_content(&auth_safe),
        &mac_data,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_basics() {
        assert_eq!(der::int(0), [2, 1, 0]);
        assert_eq!(der::int(128), [2, 2, 0, 128]);
        assert_eq!(der::int(2048), [2, 2, 8, 0]);
        // sha1 = 1.3.14.3.2.26
        assert_eq!(der::oid(OID_SHA1), [6, 5, 0x2b, 14, 3, 2, 26]);
        let long = der::octets(&[0u8; 300]);
        assert_eq!(&long[..4], &[4, 0x82, 1, 44]);
    }

    /// RFC 7292's KDF against a vector computed with OpenSSL's `PKCS12_key_gen_utf8`
    /// (password "smeg", salt 0A58CF64530D823F, id 1, 1 iteration, 24 bytes).
    #[test]
    fn kdf_matches_the_reference_vector() {
        let salt = [0x0A, 0x58, 0xCF, 0x64, 0x53, 0x0D, 0x82, 0x3F];
        let key = pkcs12_kdf::<Sha1>("smeg", &salt, 1, 1, 24);
        assert_eq!(
            hex::encode(key),
            "8aaae6297b6cb04642ab5b077851284eb7128f1a2a7fbca3"
        );
    }
}
