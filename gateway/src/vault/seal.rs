//! Sealing a value under its data subject's key, and opening it again: the one place that knows the
//! cipher, the AAD and the plaintext layout.
//!
//! - Cipher: XChaCha20-Poly1305 under the subject key (keymgr's envelope: `0x01 ‖ nonce ‖ ct ‖ tag`).
//! - AAD: `ledgergate-sealed/1 ‖ 0 ‖ provider ‖ 0 ‖ record id ‖ 0 ‖ field path`, so a sealed value
//!   cannot be moved to another record or field.
//! - Plaintext: `0x02 ‖ salt (16 bytes) ‖ canonical JSON of the value`. The salt is the one the ledger
//!   entry's commitment `SHA-256(salt ‖ canonical JSON)` was made with, kept so that whoever may
//!   unseal the value can open the commitment. Values sealed before the salt was kept are the
//!   canonical JSON alone (a JSON text never starts with byte 0x02): they open, but have no opening.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keymgr::{Kek, Secret};
use policies::SALT_LEN;
use serde_json::Value;

/// Marks a plaintext that carries its commitment's salt.
const WITH_SALT: u8 = 0x02;

/// Why a sealed value could not be sealed or opened. Never carries the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The subject key is not a 32-byte key.
    #[error("the subject key is malformed")]
    BadKey,
    /// The system's random source failed.
    #[error("no randomness for a nonce")]
    Random,
    /// The blob does not decrypt under this key for this record and field, or is not a sealed value.
    #[error("the sealed value does not open: altered, or sealed for another record or field")]
    Unopenable,
}

/// A sealed value, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The value.
    pub value: Value,
    /// The exact bytes that were committed to (the value's canonical JSON).
    pub canonical: Vec<u8>,
    /// The commitment's salt; `None` for values sealed before it was kept.
    pub salt: Option<[u8; SALT_LEN]>,
}

fn aad(provider: &str, id: &str, path: &str) -> String {
    format!("ledgergate-sealed/1\0{provider}\0{id}\0{path}")
}

/// Seals `canonical` (a value's canonical JSON) with its commitment's `salt`; returns the blob, base64.
pub fn seal(
    key: &Secret,
    (provider, id, path): (&str, &str, &str),
    salt: &[u8; SALT_LEN],
    canonical: &[u8],
) -> Result<String, SealError> {
    let kek = Kek::from_secret(key).ok_or(SealError::BadKey)?;
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(1 + SALT_LEN + canonical.len()));
    plain.push(WITH_SALT);
    plain.extend_from_slice(salt);
    plain.extend_from_slice(canonical);
    let blob = kek
        .wrap(&plain, aad(provider, id, path).as_bytes())
        .map_err(|_| SealError::Random)?;
    Ok(B64.encode(blob))
}

/// Opens a blob made by [`seal`] (or by the versions before the salt was kept).
pub fn open(
    key: &Secret,
    (provider, id, path): (&str, &str, &str),
    blob: &str,
) -> Result<Opened, SealError> {
    let kek = Kek::from_secret(key).ok_or(SealError::BadKey)?;
    let blob = B64.decode(blob).map_err(|_| SealError::Unopenable)?;
    let plain = kek
        .unwrap(&blob, aad(provider, id, path).as_bytes())
        .map_err(|_| SealError::Unopenable)?;
    let (salt, canonical) = match plain.expose().split_first() {
        Some((&WITH_SALT, rest)) => {
            let (salt, canonical) = rest
                .split_first_chunk::<SALT_LEN>()
                .ok_or(SealError::Unopenable)?;
            (Some(*salt), canonical)
        }
        _ => (None, plain.expose()),
    };
    let value = serde_json::from_slice(canonical).map_err(|_| SealError::Unopenable)?;
    Ok(Opened {
        value,
        canonical: canonical.to_vec(),
        salt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_with_the_salt_and_opens_only_for_the_same_record_and_field() {
        let key = Secret::new(vec![9; 32]);
        let at = ("provider-a", "R-1", "salary");
        let blob = seal(&key, at, &[7; SALT_LEN], b"52000.5").unwrap();
        let opened = open(&key, at, &blob).unwrap();
        assert_eq!(opened.value, serde_json::json!(52000.5));
        assert_eq!(opened.salt, Some([7; SALT_LEN]));
        assert_eq!(opened.canonical, b"52000.5");
        for other in [
            ("provider-b", "R-1", "salary"),
            ("provider-a", "R-2", "salary"),
            ("provider-a", "R-1", "amount"),
        ] {
            assert!(open(&key, other, &blob).is_err(), "{other:?}");
        }
        assert!(open(&Secret::new(vec![8; 32]), at, &blob).is_err());
    }

    #[test]
    fn a_value_sealed_before_the_salt_was_kept_opens_without_one() {
        let key = Secret::new(vec![9; 32]);
        let at = ("provider-a", "R-1", "salary");
        let kek = Kek::from_secret(&key).unwrap();
        let legacy = B64.encode(
            kek.wrap(b"52000.5", aad(at.0, at.1, at.2).as_bytes())
                .unwrap(),
        );
        let opened = open(&key, at, &legacy).unwrap();
        assert_eq!(
            (opened.value, opened.salt),
            (serde_json::json!(52000.5), None)
        );
    }
}
