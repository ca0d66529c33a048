//! The off-ledger vault: sealed field values, each encrypted with its data subject's key (from keymgr,
//! itself wrapped by the KEK), and the submission index that makes submissions idempotent. Only this
//! module knows the vault is sled.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `sealed` | provider ‖ 0 ‖ record id ‖ 0 ‖ field path | JSON `{key, version, blob}`: blob = XChaCha20-Poly1305 of the value's canonical JSON, AAD = the key |
//! | `submissions` | provider ‖ 0 ‖ record id | JSON `{request_mac, receipt}` |

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::FileError;

/// The vault failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The storage engine failed.
    #[error("vault storage: {0}")]
    Storage(String),
    /// A stored value is damaged.
    #[error("vault record is damaged: {0}")]
    Corrupt(String),
    /// Its directory could not be made.
    #[error(transparent)]
    File(#[from] FileError),
}

fn storage(e: impl std::fmt::Display) -> VaultError {
    VaultError::Storage(e.to_string())
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

/// A submission: how to recognise a retry, and what was answered. Written *pending* (no receipt)
/// before the ledger append and completed after it, so that a crash in between is resolved on the next
/// start by looking for the entry in the ledger's tail, never by appending it twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// HMAC of the canonical submitted record, under the node's request key.
    pub request_mac: String,
    /// The receipt, as JSON; `None` while the append is in flight.
    pub receipt: Option<serde_json::Value>,
    /// The ledger's size just before the append: the entry, if it was written, is at or after it.
    pub after: u64,
}

fn record_key(provider: &str, id: &str) -> Vec<u8> {
    [provider.as_bytes(), &[0], id.as_bytes()].concat()
}

/// The open vault.
pub struct Vault {
    sealed: sled::Tree,
    submissions: sled::Tree,
    db: sled::Db,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

impl Vault {
    /// Opens (or creates) the vault at `dir`.
    pub fn open(dir: &Path) -> Result<Vault, VaultError> {
        if !dir.exists() {
            crate::files::private_dir(dir)?;
        }
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .map_err(storage)?;
        let sealed = db.open_tree("sealed").map_err(storage)?;
        let submissions = db.open_tree("submissions").map_err(storage)?;
        Ok(Vault {
            sealed,
            submissions,
            db,
        })
    }

    /// Stores sealed values of one record; durable when this returns.
    pub fn put_sealed(
        &self,
        provider: &str,
        id: &str,
        values: &[(String, SealedRecord)],
    ) -> Result<(), VaultError> {
        let mut batch = sled::Batch::default();
        for (path, rec) in values {
            let key = [record_key(provider, id), vec![0], path.as_bytes().to_vec()].concat();
            batch.insert(key, serde_json::to_vec(rec).map_err(storage)?);
        }
        self.sealed.apply_batch(batch).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// The sealed values of one record, by field path.
    pub fn sealed(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<Vec<(String, SealedRecord)>, VaultError> {
        let prefix = [record_key(provider, id), vec![0]].concat();
        self.sealed
            .scan_prefix(&prefix)
            .map(|r| {
                let (k, v) = r.map_err(storage)?;
                let path =
                    String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default()).into_owned();
                let rec =
                    serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt(e.to_string()))?;
                Ok((path, rec))
            })
            .collect()
    }

    /// An accepted submission, if any.
    pub fn submission(&self, provider: &str, id: &str) -> Result<Option<Submission>, VaultError> {
        match self
            .submissions
            .get(record_key(provider, id))
            .map_err(storage)?
        {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| VaultError::Corrupt(e.to_string())),
        }
    }

    /// Forgets a submission whose append did not happen.
    pub fn remove_submission(&self, provider: &str, id: &str) -> Result<(), VaultError> {
        self.submissions
            .remove(record_key(provider, id))
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Every pending submission: (provider, id, submission).
    pub fn pending(&self) -> Result<Vec<(String, String, Submission)>, VaultError> {
        let mut out = Vec::new();
        for r in self.submissions.iter() {
            let (k, v) = r.map_err(storage)?;
            let s: Submission =
                serde_json::from_slice(&v).map_err(|e| VaultError::Corrupt(e.to_string()))?;
            if s.receipt.is_none() {
                let mut parts = k.splitn(2, |b| *b == 0);
                let provider =
                    String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                out.push((provider, id, s));
            }
        }
        Ok(out)
    }

    /// Records a submission (pending or complete); durable when this returns.
    pub fn put_submission(
        &self,
        provider: &str,
        id: &str,
        s: &Submission,
    ) -> Result<(), VaultError> {
        self.submissions
            .insert(
                record_key(provider, id),
                serde_json::to_vec(s).map_err(storage)?,
            )
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}
