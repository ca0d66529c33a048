//! The compact at-rest form of a data-subject key that nobody has touched since the gateway made it:
//! one version, active, made by the gateway, with the default maximum age. That is nearly every subject
//! key, and a store may hold millions, so the form is 16 + 81 bytes of fixed width instead of a JSON
//! record (~840 bytes):
//!
//! | key | value |
//! |---|---|
//! | the 16-byte hash in the key's name (`subject/<32 hex>`) | `created_at` (i64 BE) ‖ the wrapped material (73 bytes: the same `0x01 ‖ nonce ‖ ciphertext ‖ tag` blob, under the same AAD, as any key) |
//!
//! The wrapping is unchanged: only the metadata that every such key shares is left out. Any change to
//! the key (rotation, revocation, shredding) stores it as a full JSON record instead, and removes this
//! one in the same write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::lifecycle::VersionState;
use crate::manager::DEFAULT_MAX_AGE;
use crate::purpose::Purpose;
use crate::record::{KeyRecord, VersionRecord};

/// Length of a wrapped 32-byte key: version byte, 24-byte nonce, 32 bytes, 16-byte tag.
pub const WRAPPED_LEN: usize = 1 + 24 + 32 + 16;
/// Length of a compact value.
pub const VALUE_LEN: usize = 8 + WRAPPED_LEN;
/// The actor the gateway records for the subject keys it makes.
pub const GATEWAY: &str = "gateway";
/// The name prefix of data-subject keys.
pub const SUBJECT_PREFIX: &str = "subject/";

/// A compact key: the hash in its name.
pub type Hash = [u8; 16];
/// A compact value.
pub type Compact = [u8; VALUE_LEN];

/// The hash in a subject key's name, if `name` is one.
pub fn hash_of(name: &str) -> Option<Hash> {
    let hex_part = name.strip_prefix(SUBJECT_PREFIX)?;
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex_part, &mut out).ok()?;
    // One spelling per key: lowercase, as names are made.
    (hex::encode(out) == hex_part).then_some(out)
}

/// The name of the subject key with hash `hash`.
pub fn name_of(hash: &Hash) -> String {
    format!("{SUBJECT_PREFIX}{}", hex::encode(hash))
}

/// The compact form of `record`, if it has one (see the module's documentation).
pub fn encode(record: &KeyRecord) -> Option<(Hash, Compact)> {
    let hash = hash_of(&record.name)?;
    let [v] = record.versions.as_slice() else {
        return None;
    };
    let plain = record.purpose == Purpose::Subject
        && record.rotate_every.is_none()
        && record.max_age == DEFAULT_MAX_AGE
        && record.primary == Some(1)
        && record.created_by == GATEWAY
        && v.version == 1
        && v.state == VersionState::Active
        && v.history.is_empty()
        && v.public_key.is_none()
        && v.token_id.is_none()
        && v.created_by == GATEWAY
        && v.created_at == record.created_at;
    if !plain {
        return None;
    }
    let wrapped: [u8; WRAPPED_LEN] = B64.decode(v.wrapped.as_deref()?).ok()?.try_into().ok()?;
    let mut out = [0u8; VALUE_LEN];
    out.get_mut(..8)?
        .copy_from_slice(&v.created_at.to_be_bytes());
    out.get_mut(8..)?.copy_from_slice(&wrapped);
    Some((hash, out))
}

/// The full record of a compact key.
pub fn decode(hash: &Hash, value: &[u8]) -> Result<KeyRecord, Error> {
    let name = name_of(hash);
    let (at, wrapped) = value
        .split_at_checked(8)
        .filter(|(_, w)| w.len() == WRAPPED_LEN)
        .ok_or_else(|| Error::StoreCorrupt(format!("key `{name}`: malformed compact record")))?;
    let created_at = i64::from_be_bytes(
        at.try_into()
            .map_err(|_| Error::StoreCorrupt(format!("key `{name}`: malformed compact record")))?,
    );
    let first = VersionRecord {
        version: 1,
        created_at,
        created_by: GATEWAY.to_owned(),
        state: VersionState::Active,
        history: Vec::new(),
        public_key: None,
        wrapped: Some(B64.encode(wrapped)),
        token_id: None,
    };
    Ok(KeyRecord::new(
        &name,
        Purpose::Subject,
        None,
        DEFAULT_MAX_AGE,
        first,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(hash: Hash, created_at: i64, wrapped: &[u8]) -> KeyRecord {
        KeyRecord::new(
            &name_of(&hash),
            Purpose::Subject,
            None,
            DEFAULT_MAX_AGE,
            VersionRecord {
                version: 1,
                created_at,
                created_by: GATEWAY.to_owned(),
                state: VersionState::Active,
                history: Vec::new(),
                public_key: None,
                wrapped: Some(B64.encode(wrapped)),
                token_id: None,
            },
        )
    }

    proptest! {
        /// Every record in the compact form's reach comes back exactly.
        #[test]
        fn round_trips(hash in any::<[u8; 16]>(), at in any::<i64>(), wrapped in proptest::collection::vec(any::<u8>(), WRAPPED_LEN)) {
            let r = record(hash, at, &wrapped);
            let (h, v) = encode(&r).unwrap();
            prop_assert_eq!(h, hash);
            prop_assert_eq!(decode(&h, &v).unwrap(), r);
        }

        /// A key whose material is in a token (or wrapped there: a shorter blob) is never compact.
        #[test]
        fn keys_of_a_token_stay_json(hash in any::<[u8; 16]>(), at in any::<i64>(), wrapped in proptest::collection::vec(any::<u8>(), WRAPPED_LEN)) {
            let mut r = record(hash, at, &wrapped);
            r.versions[0].token_id = Some("00".into());
            prop_assert!(encode(&r).is_none());
            let json = serde_json::to_vec(&r).unwrap();
            let back: KeyRecord = serde_json::from_slice(&json).unwrap();
            prop_assert!(back.versions[0].in_token());
            let short = record(hash, at, &wrapped[..1 + 12 + 32 + 16]);
            prop_assert!(encode(&short).is_none());
        }

        /// Any bytes decode to a record or an error, never a panic.
        #[test]
        fn decoding_never_panics(hash in any::<[u8; 16]>(), value in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode(&hash, &value);
        }
    }

    #[test]
    fn anything_out_of_reach_stays_json() {
        let base = record([7; 16], 5, &[1; WRAPPED_LEN]);
        assert!(encode(&base).is_some());
        let mut by_officer = base.clone();
        by_officer.created_by = "alice".into();
        let mut rotated = base.clone();
        rotated.primary = Some(2);
        let mut revoked = base.clone();
        revoked.versions[0].state = VersionState::Compromised {
            occurred_at: 1,
            revoked_at: 2,
            by: "alice".into(),
        };
        let mut managed = base.clone();
        managed.name = "pseudonym".into();
        let mut short = base.clone();
        short.versions[0].wrapped = Some(B64.encode([1u8; 10]));
        for r in [by_officer, rotated, revoked, managed, short] {
            assert!(encode(&r).is_none(), "{r:?}");
        }
        assert_eq!(hash_of("subject/0707070707070707070707070707070A"), None);
    }
}
