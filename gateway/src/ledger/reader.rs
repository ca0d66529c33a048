//! Read-only access to a stopped node's ledger, for the operator CLI: no writer, no signing key.

use std::path::Path;

use super::checkpoint::SignedCheckpoint;
use super::error::LedgerError;
use super::hash::Hash;
use super::note::NoteVerifier;
use super::proof::{consistency_proof, inclusion_proof};
use super::store::Store;

/// A ledger opened for reading. It holds the store's lock like a writer would, so it cannot be used
/// while the node runs (the running node serves the same answers over HTTP).
#[derive(Debug)]
pub struct LedgerReader {
    store: Store,
}

impl LedgerReader {
    /// Opens an existing store.
    pub fn open(path: &Path) -> Result<LedgerReader, LedgerError> {
        Ok(LedgerReader {
            store: Store::open(path, false)?,
        })
    }

    /// The keys recorded as having signed this log's checkpoints.
    pub fn verifiers(&self) -> Result<Vec<NoteVerifier>, LedgerError> {
        self.store
            .keys()?
            .iter()
            .map(|(v, _)| {
                NoteVerifier::from_vkey(v).map_err(|e| {
                    LedgerError::Corrupt(format!("recorded checkpoint key {v:?}: {e}"))
                })
            })
            .collect()
    }

    /// The latest checkpoint, after checking its signature against the recorded keys.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, LedgerError> {
        let (_, note) = self
            .store
            .last_checkpoint()?
            .ok_or_else(|| LedgerError::Corrupt("the store has no checkpoint".into()))?;
        SignedCheckpoint::open(&note, &self.verifiers()?).map_err(LedgerError::BadCheckpoint)
    }

    /// The leaf hash stored for entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, LedgerError> {
        let size = self.store.size()?;
        if index >= size {
            return Err(LedgerError::NoSuchEntry { index, size });
        }
        let entry = self.store.entry(index)?;
        entry
            .map(|e| e.leaf)
            .ok_or_else(|| LedgerError::Corrupt(format!("entry {index} is missing")))
    }

    /// The audit path of entry `index` in the tree of `size` entries.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        inclusion_proof(&self.store.snapshot()?, index, size).map_err(super::proof_error)
    }

    /// The consistency proof between the trees of `from` and `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(to)?;
        consistency_proof(&self.store.snapshot()?, from, to).map_err(super::proof_error)
    }

    /// Calls `each` with every stored entry from `start` on, in order, until it returns false.
    pub fn for_each_entry(
        &self,
        start: u64,
        mut each: impl FnMut(u64, &[u8]) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let size = self.store.size()?;
        let mut expected = start;
        for item in self.store.entries_from(start)? {
            let e = item?;
            if e.index >= size {
                break;
            }
            if e.index != expected {
                return Err(LedgerError::Corrupt(format!("entry {expected} is missing")));
            }
            expected += 1;
            if !each(e.index, e.bytes())? {
                return Ok(());
            }
        }
        if expected < size {
            return Err(LedgerError::Corrupt(format!("entry {expected} is missing")));
        }
        Ok(())
    }

    fn check_size(&self, asked: u64) -> Result<(), LedgerError> {
        let size = self.store.size()?;
        if asked > size {
            return Err(LedgerError::SizeBeyondTree { asked, size });
        }
        Ok(())
    }
}
