//! The off-ledger vault: sealed field values, each encrypted with its data subject's key (from keymgr,
//! itself wrapped by the KEK), and the submission index that makes submissions idempotent.
//!
//! Both are kept as ledger *attachments* (see `ledger::Attachment`): written in the same atomic batch
//! and flush as the record's entry, so a submission is durable whole or not at all, with no fsync of
//! its own and no recovery protocol. They are never part of an entry, a proof or a checkpoint. This
//! module owns their encoding:
//!
//! | attachment key | value |
//! |---|---|
//! | `vault/submission/` ‖ provider ‖ 0 ‖ record id | locator: entry index, checkpoint size, then request MAC ‖ `\n` ‖ sealed values |
//!
//! Sealed values are JSON `{path: {key, version, blob}}` (blob: see `seal`, which owns the cipher,
//! the AAD and the plaintext layout), or nothing when the record sealed none. One key per record:
//! sled's cost is per key, and every key here is one more per submission.

mod seal;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use seal::{Opened, SealError, open, seal};

use serde::{Deserialize, Serialize};

use crate::ledger::{Attachment, Ledger, LedgerError};

const SUBMISSION: &[u8] = b"vault/submission/";

/// The vault failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The storage beneath failed.
    #[error("vault storage: {0}")]
    Storage(#[from] LedgerError),
    /// A stored value is damaged.
    #[error("vault record is damaged: {0}")]
    Corrupt(String),
}

/// One sealed value at rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedRecord {
    /// The subject key's name in keymgr.
    pub key: String,
    /// Its version.
    pub version: u32,
    /// `0x01 ‖ nonce ‖ ciphertext ‖ tag`, base64.
    pub blob: String,
}

/// An accepted submission: how to recognise a retry, and where its entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// HMAC of the canonical submitted record, under the node's request key.
    pub request_mac: String,
    /// The entry's index.
    pub index: u64,
    /// The size of the checkpoint first published with it (its receipt's).
    pub tree_size: u64,
}

/// A record's sealed values, by field path.
pub type SealedValues = Vec<(String, SealedRecord)>;

/// `request MAC ‖ \n ‖ sealed values as JSON` (nothing after the newline when none were sealed).
fn encode(request_mac: &str, sealed: &[(String, SealedRecord)]) -> Result<Vec<u8>, VaultError> {
    let mut out = request_mac.as_bytes().to_vec();
    out.push(b'\n');
    if !sealed.is_empty() {
        let map: BTreeMap<&str, &SealedRecord> =
            sealed.iter().map(|(p, r)| (p.as_str(), r)).collect();
        serde_json::to_writer(&mut out, &map).map_err(|e| VaultError::Corrupt(e.to_string()))?;
    }
    Ok(out)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<(String, SealedValues), VaultError> {
    let at = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| VaultError::Corrupt("malformed submission record".into()))?;
    let (mac, json) = (
        bytes.get(..at).unwrap_or_default(),
        bytes.get(at + 1..).unwrap_or_default(),
    );
    let mac = String::from_utf8(mac.to_vec())
        .map_err(|_| VaultError::Corrupt("request MAC is not UTF-8".into()))?;
    if json.is_empty() {
        return Ok((mac, Vec::new()));
    }
    let map: BTreeMap<String, SealedRecord> =
        serde_json::from_slice(json).map_err(|e| VaultError::Corrupt(e.to_string()))?;
    Ok((mac, map.into_iter().collect()))
}

fn key(prefix: &[u8], provider: &str, id: &str) -> Vec<u8> {
    [prefix, provider.as_bytes(), &[0], id.as_bytes()].concat()
}

/// The vault, kept beside the ledger.
#[derive(Debug, Clone)]
pub struct Vault {
    ledger: Arc<Ledger>,
}

impl Vault {
    /// The vault kept in `ledger`'s attachments.
    pub fn new(ledger: Arc<Ledger>) -> Vault {
        Vault { ledger }
    }

    /// What to attach to the entry of a new submission: its index record and its sealed values.
    pub fn attachments(
        provider: &str,
        id: &str,
        request_mac: &str,
        sealed: &[(String, SealedRecord)],
    ) -> Result<Attachment, VaultError> {
        Ok(Attachment {
            key: key(SUBMISSION, provider, id),
            extra: encode(request_mac, sealed)?,
        })
    }

    /// The stored submission: where its entry is, and its sealed values.
    fn stored(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<Option<(Submission, SealedValues)>, VaultError> {
        let Some(located) = self.ledger.located(&key(SUBMISSION, provider, id))? else {
            return Ok(None);
        };
        let (request_mac, sealed) = decode(&located.extra)?;
        let submission = Submission {
            request_mac,
            index: located.index,
            tree_size: located.tree_size,
        };
        Ok(Some((submission, sealed)))
    }

    /// The sealed values of one record, by field path.
    pub fn sealed(&self, provider: &str, id: &str) -> Result<SealedValues, VaultError> {
        Ok(self
            .stored(provider, id)?
            .map(|(_, sealed)| sealed)
            .unwrap_or_default())
    }

    /// An accepted submission, if any.
    pub fn submission(&self, provider: &str, id: &str) -> Result<Option<Submission>, VaultError> {
        Ok(self.stored(provider, id)?.map(|(s, _)| s))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ledger::{Ed25519NoteSigner, LedgerConfig};
    use proptest::prelude::*;

    proptest! {
        /// Any MAC (MACs never hold a newline) and any sealed values decode to themselves, by path.
        #[test]
        fn submission_records_round_trip(mac in "v[0-9]{1,3}:[A-Za-z0-9+/=]{0,60}",
                                         fields in prop::collection::btree_map("[a-z.]{1,12}", ("[a-z/0-9]{1,20}", any::<u32>(), "[A-Za-z0-9+/=]{0,40}"), 0..6)) {
            let sealed: Vec<(String, SealedRecord)> = fields
                .into_iter()
                .map(|(p, (key, version, blob))| (p, SealedRecord { key, version, blob }))
                .collect();
            let (back_mac, back) = decode(&encode(&mac, &sealed).unwrap()).unwrap();
            prop_assert_eq!(back_mac, mac);
            prop_assert_eq!(back, sealed);
        }
    }

    #[test]
    fn a_damaged_submission_record_is_reported() {
        assert!(matches!(decode(b"no newline"), Err(VaultError::Corrupt(_))));
        assert!(matches!(
            decode(b"v1:x\n{not json"),
            Err(VaultError::Corrupt(_))
        ));
        assert!(matches!(decode(b"\xff\n"), Err(VaultError::Corrupt(_))));
    }

    #[tokio::test]
    async fn a_submission_and_its_sealed_values_land_with_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Arc::new(Ed25519NoteSigner::from_seed("t/log", &[1; 32]).unwrap());
        let ledger = Arc::new(
            Ledger::open(LedgerConfig::new(dir.path().join("l"), "t/log"), signer).unwrap(),
        );
        let vault = Vault::new(Arc::clone(&ledger));
        assert_eq!(vault.submission("p", "1").unwrap(), None);
        let sealed = vec![(
            "salary".to_owned(),
            SealedRecord {
                key: "subject/ab".into(),
                version: 1,
                blob: "AQID".into(),
            },
        )];
        let a = Vault::attachments("p", "1", "v1:mac", &sealed).unwrap();
        let receipt = ledger
            .append_with(vec![(b"{}".to_vec(), a)])
            .await
            .unwrap()
            .remove(0);
        let s = vault.submission("p", "1").unwrap().unwrap();
        assert_eq!((s.index, s.tree_size), (receipt.index, receipt.tree_size));
        assert_eq!(s.request_mac, "v1:mac");
        assert_eq!(vault.sealed("p", "1").unwrap(), sealed);
        // Another provider's record of the same id, and a prefix of the id, are other records.
        assert_eq!(vault.submission("q", "1").unwrap(), None);
        assert_eq!(vault.sealed("p", "").unwrap(), Vec::new());
    }
}
