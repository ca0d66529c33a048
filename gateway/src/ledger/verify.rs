//! The offline verifier behind `gateway ledger verify`: recompute the whole tree from the stored entries in
//! one sequential pass and hold every stored hash and checkpoint against it.
//!
//! It checks, stopping at the first failure and naming it:
//! - every entry index from 0 to the tree size is present, and nothing lies beyond it;
//! - every entry matches its stored leaf hash, and every stored tree node matches the recomputed one
//!   (so that proofs served from the store are right);
//! - every stored checkpoint is signed by a trusted key, names this log, and its root equals the root
//!   recomputed from the entries at its size;
//! - each checkpoint is consistent with the next, by an RFC 9162 consistency proof read from the (now
//!   checked) store and verified with the client-side verifier;
//! - the latest checkpoint covers the whole tree.

use std::iter::Peekable;
use std::path::Path;
use std::time::{Duration, Instant};

use super::checkpoint::SignedCheckpoint;
use super::compact::CompactRange;
use super::error::LedgerError;
use super::hash::{Hash, leaf_hash};
use super::note::NoteVerifier;
use super::proof::{consistency_proof, verify_consistency};
use super::store::Store;

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The log's origin.
    pub origin: String,
    /// Entries recomputed.
    pub size: u64,
    /// The root of the whole tree.
    pub root: Hash,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Bytes of entry data hashed.
    pub entry_bytes: u64,
    /// Wall time of the check.
    pub elapsed: Duration,
}

/// The first thing found wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] LedgerError),
    /// An entry index below the tree size has no entry.
    #[error("entry {index} is missing")]
    MissingEntry {
        /// The first missing index.
        index: u64,
    },
    /// An entry whose bytes do not hash to its stored leaf hash.
    #[error("entry {index} does not match its leaf hash: the entry was modified")]
    EntryModified {
        /// The entry.
        index: u64,
    },
    /// A stored tree node that differs from the one recomputed from the entries.
    #[error(
        "entries {first}..{end} do not match the stored tree node (level {level}, index {index})"
    )]
    NodeMismatch {
        /// The node's level.
        level: u8,
        /// The node's index in its level.
        index: u64,
        /// The first entry it covers.
        first: u64,
        /// One past the last entry it covers.
        end: u64,
    },
    /// An entry or node stored past the tree size.
    #[error("unexpected {what} beyond the tree size {size}")]
    Extra {
        /// What was found.
        what: String,
        /// The tree size.
        size: u64,
    },
    /// A checkpoint that fails its signature, names the wrong log, or is malformed.
    #[error("checkpoint at size {size}: {why}")]
    CheckpointInvalid {
        /// The checkpoint's tree size.
        size: u64,
        /// Why.
        why: String,
    },
    /// A checkpoint whose root differs from the root recomputed from the entries.
    #[error("checkpoint at size {size}: root does not match the entries")]
    CheckpointRootMismatch {
        /// The checkpoint's tree size.
        size: u64,
    },
    /// Two checkpoints that are not consistent with each other.
    #[error("checkpoint at size {from} is not consistent with checkpoint at size {to}")]
    Inconsistent {
        /// The older size.
        from: u64,
        /// The newer size.
        to: u64,
    },
    /// No checkpoint covers the whole tree.
    #[error("no checkpoint covers the whole tree (size {size}, latest checkpoint at {latest})")]
    Uncovered {
        /// The tree size.
        size: u64,
        /// The latest checkpoint's size.
        latest: u64,
    },
}

/// Verifies the store at `path`. With `pinned` empty the keys recorded in the store are trusted; pin keys
/// (C2SP vkeys obtained out of band) to defend against someone who can rewrite the store itself.
pub fn verify_store(path: &Path, pinned: &[NoteVerifier]) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let store = Store::open(path, false)?;
    let size = store.size()?;
    let origin = store
        .origin()?
        .ok_or_else(|| LedgerError::Corrupt("origin is missing".into()))?;
    let trusted = if pinned.is_empty() {
        store
            .keys()?
            .iter()
            .map(|v| {
                NoteVerifier::from_vkey(v)
                    .map_err(|e| LedgerError::Corrupt(format!("recorded key: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        pinned.to_vec()
    };

    let mut checkpoints = store.checkpoints().peekable();
    let mut levels: Vec<Peekable<_>> = Vec::new();
    let mut range = CompactRange::new();
    let mut checked: Vec<(u64, Hash)> = Vec::new();
    let mut entry_bytes = 0u64;
    let mut bad_node: Option<VerifyFailure> = None;

    // The empty tree may have a checkpoint too.
    check_checkpoints_at(&mut checkpoints, &range, &origin, &trusted, &mut checked)?;
    for item in store.entries_from(0) {
        let entry = item?;
        let index = range.size();
        if entry.index >= size {
            return Err(VerifyFailure::Extra {
                what: format!("entry {}", entry.index),
                size,
            });
        }
        if entry.index != index {
            return Err(VerifyFailure::MissingEntry { index });
        }
        let bytes = entry.bytes();
        entry_bytes += bytes.len() as u64;
        if leaf_hash(bytes) != entry.leaf {
            return Err(VerifyFailure::EntryModified { index });
        }
        range.push(entry.leaf, |level, index, hash| {
            if level == 0 || bad_node.is_some() {
                return;
            }
            let l = usize::from(level);
            while levels.len() < l {
                let next_level = u8::try_from(levels.len() + 1).unwrap_or(u8::MAX);
                levels.push(store.nodes(next_level).peekable());
            }
            let Some(stored) = levels.get_mut(l - 1).and_then(Iterator::next) else {
                bad_node = Some(node_mismatch(level, index));
                return;
            };
            match stored {
                Ok((i, h)) if i == index && h == *hash => {}
                Ok(_) => bad_node = Some(node_mismatch(level, index)),
                Err(e) => bad_node = Some(VerifyFailure::Store(e)),
            }
        });
        if let Some(failure) = bad_node.take() {
            return Err(failure);
        }
        check_checkpoints_at(&mut checkpoints, &range, &origin, &trusted, &mut checked)?;
    }
    if range.size() < size {
        return Err(VerifyFailure::MissingEntry {
            index: range.size(),
        });
    }
    if let Some(extra) = checkpoints.next() {
        let (at, _) = extra?;
        return Err(VerifyFailure::Extra {
            what: format!("checkpoint at size {at}"),
            size,
        });
    }
    for (l, rest) in levels.iter_mut().enumerate() {
        if let Some(item) = rest.next() {
            let (i, _) = item?;
            return Err(VerifyFailure::Extra {
                what: format!("tree node (level {}, index {i})", l + 1),
                size,
            });
        }
    }
    let latest = checked.last().map_or(0, |(s, _)| *s);
    if latest != size || checked.is_empty() {
        return Err(VerifyFailure::Uncovered { size, latest });
    }
    for pair in checked.windows(2) {
        let [(from, from_root), (to, to_root)] = pair else {
            continue;
        };
        let proof = consistency_proof(&store, *from, *to).map_err(|e| match e {
            super::proof::ProofRequestError::Source(inner) => VerifyFailure::Store(inner),
            _ => VerifyFailure::Inconsistent {
                from: *from,
                to: *to,
            },
        })?;
        verify_consistency(*from, *to, &proof, from_root, to_root).map_err(|_| {
            VerifyFailure::Inconsistent {
                from: *from,
                to: *to,
            }
        })?;
    }
    Ok(VerifyReport {
        origin,
        size,
        root: range.root(),
        checkpoints: checked.len() as u64,
        entry_bytes,
        elapsed: started.elapsed(),
    })
}

fn node_mismatch(level: u8, index: u64) -> VerifyFailure {
    let first = index << level;
    VerifyFailure::NodeMismatch {
        level,
        index,
        first,
        end: first + (1u64 << level),
    }
}

/// Checks every stored checkpoint whose size equals the recomputed tree's size. Checkpoints come in size
/// order and this runs at every size, so none is skipped.
fn check_checkpoints_at(
    checkpoints: &mut Peekable<impl Iterator<Item = Result<(u64, String), LedgerError>>>,
    range: &CompactRange,
    origin: &str,
    trusted: &[NoteVerifier],
    checked: &mut Vec<(u64, Hash)>,
) -> Result<(), VerifyFailure> {
    loop {
        match checkpoints.peek() {
            Some(Ok((at, _))) if *at == range.size() => {}
            Some(Err(_)) => {
                return checkpoints
                    .next()
                    .map_or(Ok(()), |r| r.map(drop).map_err(Into::into));
            }
            _ => return Ok(()),
        }
        let Some(Ok((size, note))) = checkpoints.next() else {
            return Ok(());
        };
        let signed = SignedCheckpoint::open(&note, trusted).map_err(|e| {
            VerifyFailure::CheckpointInvalid {
                size,
                why: e.to_string(),
            }
        })?;
        let cp = &signed.checkpoint;
        if cp.origin != origin {
            return Err(VerifyFailure::CheckpointInvalid {
                size,
                why: format!("names log {:?}", cp.origin),
            });
        }
        if cp.size != size {
            let why = format!("is stored under size {size} but says {}", cp.size);
            return Err(VerifyFailure::CheckpointInvalid { size, why });
        }
        if cp.root != range.root() {
            return Err(VerifyFailure::CheckpointRootMismatch { size });
        }
        checked.push((size, cp.root));
    }
}
