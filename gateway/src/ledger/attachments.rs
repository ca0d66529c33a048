//! Attachments: data a caller keeps *beside* the log, written in the same atomic batch and the same
//! flush as the entry it belongs to, under a key of the caller's, together with where the entry
//! landed. They are never part of an entry, a proof, a checkpoint or
//! `ledger verify`, and no read path of the log serves them.
//!
//! Why here and not in a database of the caller's own: a submission's off-ledger half (the vault's
//! sealed values, the index that recognises a retry) must be durable exactly when its entry is. Two
//! databases need either two fsyncs per record or a recovery protocol between them; one atomic batch
//! needs neither, and rides on the group commit's single flush.

use super::Ledger;
use super::error::LedgerError;
use super::hash::Hash;

/// What to keep beside one appended entry: under `key`, a [`Located`] (where the entry landed) with
/// the caller's `extra` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The caller's key.
    pub key: Vec<u8>,
    /// The caller's bytes, kept with the location.
    pub extra: Vec<u8>,
}

/// Where an entry landed, as stored under its locator key: its index, the size of the checkpoint that
/// first included it, and the caller's extra bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The entry's index.
    pub index: u64,
    /// The size of the tree of the checkpoint published with it.
    pub tree_size: u64,
    /// The caller's bytes.
    pub extra: Vec<u8>,
}

impl Located {
    /// `index (u64 BE) ‖ tree_size (u64 BE) ‖ extra`.
    pub fn encode(&self) -> Vec<u8> {
        [
            &self.index.to_be_bytes()[..],
            &self.tree_size.to_be_bytes(),
            &self.extra,
        ]
        .concat()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Located> {
        let index = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let tree_size = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Located {
            index,
            tree_size,
            extra: bytes.get(16..)?.to_vec(),
        })
    }
}

impl Ledger {
    /// Where the entry attached under `key` landed, with the caller's bytes.
    pub fn located(&self, key: &[u8]) -> Result<Option<Located>, LedgerError> {
        self.shared
            .store
            .attachment(key)?
            .map(|v| {
                Located::decode(v.as_ref())
                    .ok_or_else(|| LedgerError::Corrupt("malformed attachment".into()))
            })
            .transpose()
    }

    /// The leaf hash of entry `index` and the checkpoint note published at `tree_size`: with the
    /// index, what rebuilds the receipt an append gave.
    pub fn receipt_parts(&self, index: u64, tree_size: u64) -> Result<(Hash, String), LedgerError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(LedgerError::NoSuchEntry {
                index,
                size: tree_size,
            });
        }
        let leaf = self
            .shared
            .store
            .entry(index)?
            .map(|e| e.leaf)
            .ok_or_else(|| LedgerError::Corrupt(format!("entry {index} is missing")))?;
        let note = self
            .shared
            .store
            .checkpoint_note(tree_size)?
            .ok_or_else(|| {
                LedgerError::Corrupt(format!("no checkpoint was stored at size {tree_size}"))
            })?;
        Ok((leaf, note))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    proptest! {
        /// Every locator decodes to itself; every strict prefix shorter than the fixed part is refused.
        #[test]
        fn located_round_trips(index in any::<u64>(), tree_size in any::<u64>(),
                               extra in prop::collection::vec(any::<u8>(), 0..64), cut in 0usize..16) {
            let l = Located { index, tree_size, extra };
            let bytes = l.encode();
            prop_assert_eq!(Located::decode(&bytes), Some(l));
            prop_assert_eq!(Located::decode(&bytes[..cut]), None);
        }
    }
}
