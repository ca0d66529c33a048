//! The offline verifier behind `gateway ledger verify`: recompute the whole tree from the stored entries in
//! one sequential pass and hold every stored hash and checkpoint against it.
//!
//! It checks, stopping at the first failure and naming it:
//! - every entry index from 0 to the tree size is present, and nothing lies beyond it;
//! - every entry matches its stored leaf hash, and every stored tree node matches the recomputed one
//!   (so that proofs served from the store are right);
//! - every stored checkpoint names this log, carries a signature line of a trusted key, and its root
//!   equals the root recomputed from the entries at its size — so any two checkpoints are consistent
//!   with each other by construction (a consistency proof between them would only re-read nodes
//!   already checked);
//! - the signature of the newest checkpoint each key signed is valid (with
//!   [`VerifyOptions::all_signatures`], every checkpoint's): a valid signature over a root recomputed
//!   from the entries vouches for every entry under it, so one per key shows the store is what that
//!   key signed, and checking 25,000 signatures of a node that commits small groups would cost far
//!   more than hashing its entries;
//! - no checkpoint was signed by a key version at or after the time it was compromised, unless the
//!   head is signed by a sound key (which vouches for the same entries): those are reported, and
//!   without such a head they fail the check;
//! - the latest checkpoint covers the whole tree.

use std::iter::Peekable;
use std::path::Path;
use std::time::{Duration, Instant};

use super::bundle::Bundle;
use super::compact::CompactRange;
use super::error::LedgerError;
use super::hash::{Hash, leaf_hash};
use super::note::NoteVerifier;
use super::signing::CheckpointKey;

mod checkpoints;

use super::store::{Store, stores_level};
use checkpoints::{CheckpointState, Item, read_checkpoints, trusted_keys};

/// What to trust and how thoroughly to check.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Trust only these checkpoint keys (obtained out of band); empty: the keys recorded in the store.
    pub pinned: Vec<NoteVerifier>,
    /// The checkpoint keys' history obtained out of band (`GET /v1/checkpoint/keys`): its keys are
    /// trusted and its compromise times used instead of those recorded in the store.
    pub history: Option<Vec<CheckpointKey>>,
    /// Check every checkpoint's signature, not only the newest of each key.
    pub all_signatures: bool,
}

/// A checkpoint signed by a key version at or after the time it was compromised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAfterCompromise {
    /// The checkpoint's tree size.
    pub size: u64,
    /// The key (C2SP vkey).
    pub vkey: String,
    /// When the checkpoint was signed (Unix seconds; `None` if the store does not say).
    pub signed_at: Option<i64>,
    /// When the key was compromised.
    pub compromised_at: i64,
}

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
    /// Checkpoint signatures verified.
    pub signatures_checked: u64,
    /// Checkpoints signed by a compromised key after its compromise, all vouched for by a later
    /// checkpoint of a sound key (otherwise verification fails).
    pub after_compromise: Vec<SignedAfterCompromise>,
    /// Bytes of entry data hashed.
    pub entry_bytes: u64,
    /// Wall time of opening the store, part of `elapsed` (the storage engine's recovery scan).
    pub opened_in: Duration,
    /// Wall time of the whole check.
    pub elapsed: Duration,
}

/// The first thing found wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyFailure {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] LedgerError),
    /// A checkpoint saved earlier whose tree the store no longer holds (`ledger verify
    /// --checkpoint`): entries removed from the end, a store rolled back, or a fork.
    #[error("saved checkpoint {0}")]
    Saved(String),
    /// An entry index below the tree size has no entry.
    #[error("entry {index} is missing")]
    MissingEntry {
        /// The first missing index.
        index: u64,
    },
    /// An entry index stored in two places (overlapping bundles).
    #[error("entry {index} is stored twice")]
    DuplicateEntry {
        /// The index.
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
    /// Checkpoints signed by a compromised key after its compromise, with no later checkpoint of a
    /// sound key to vouch for them.
    #[error(
        "{} checkpoint(s) signed by a compromised key at or after its compromise, and the head is not \
         signed by a sound key: {}",
        .0.len(),
        describe(.0)
    )]
    SignedAfterCompromise(Vec<SignedAfterCompromise>),
    /// No checkpoint covers the whole tree.
    #[error("no checkpoint covers the whole tree (size {size}, latest checkpoint at {latest})")]
    Uncovered {
        /// The tree size.
        size: u64,
        /// The latest checkpoint's size.
        latest: u64,
    },
}

fn describe(list: &[SignedAfterCompromise]) -> String {
    let mut text: Vec<String> = list
        .iter()
        .take(10)
        .map(|f| {
            let name = f.vkey.split('+').take(2).collect::<Vec<_>>().join("+");
            let when = f.signed_at.map_or("at an unknown time".to_owned(), |t| {
                format!("at {}", keymgr::rfc3339(t))
            });
            format!(
                "size {} by {name} {when} (compromised {})",
                f.size,
                keymgr::rfc3339(f.compromised_at)
            )
        })
        .collect();
    if list.len() > 10 {
        text.push(format!("and {} more", list.len() - 10));
    }
    text.join("; ")
}

/// Verifies the store at `path` (see the module's documentation for what is checked). Without pinned
/// keys or an out-of-band history the keys recorded in the store are trusted: pin them to defend
/// against someone who can rewrite the store itself.
pub fn verify_store(path: &Path, options: &VerifyOptions) -> Result<VerifyReport, VerifyFailure> {
    let started = Instant::now();
    let store = Store::open_for_scan(path)?;
    let opened_in = started.elapsed();
    let size = store.size()?;
    let origin = store
        .origin()?
        .ok_or_else(|| LedgerError::Corrupt("origin is missing".into()))?;
    let trusted = trusted_keys(&store, options)?;
    let mut state = CheckpointState::new(&trusted, options.all_signatures);
    let mut range = CompactRange::new();
    let mut entry_bytes = 0u64;
    // One sequential scan per stored level, advanced as the recomputed tree completes its nodes.
    let mut levels: Vec<Option<Peekable<_>>> = Vec::new();

    std::thread::scope(|scope| -> Result<(), VerifyFailure> {
        // Checkpoints are read and parsed on a thread of their own (see `checkpoints`); its
        // receiver lives in this closure, so that returning early lets the reader stop.
        let (cp_tx, cp_rx) = std::sync::mpsc::sync_channel::<Vec<Item>>(4);
        {
            let (store, origin, trusted) = (&store, origin.as_str(), trusted.as_slice());
            let all = options.all_signatures;
            scope.spawn(move || read_checkpoints(store, origin, trusted, all, &cp_tx));
        }
        let mut checkpoints = std::iter::from_fn(|| cp_rx.recv().ok())
            .flatten()
            .peekable();
        // The empty tree may have a checkpoint too.
        state.check_at(&mut checkpoints, &range)?;
        // The SHA-256 over every entry byte is most of the work, so two scanner threads (one per core)
        // take alternate segments of the log, read its bundles and check each entry against its leaf
        // hash, while this thread rebuilds the tree from the 32-byte leaf hashes alone. Results are taken
        // in segment order and a failure travels in its place among them, so the first failure in the
        // log is the one reported, as with a single scan.
        let segments = size / SEGMENT + 1; // the last one is open-ended, to catch entries past the tree
        let mut receivers = Vec::with_capacity(SCANNERS);
        for k in 0..SCANNERS {
            // Two segments in flight per scanner: enough for each to stay a whole segment ahead.
            let (tx, rx) = std::sync::mpsc::sync_channel::<Segment>(2);
            receivers.push(rx);
            let store = &store;
            scope.spawn(move || scan_segments(store, k as u64, segments, &tx));
        }
        // A scanner that stopped at a failure closes its channel; its later segments read as empty, and
        // the failure, sent in its place, has stopped this loop before they matter.
        let in_order = (0..segments).flat_map(|s| {
            let rx = receivers.get(usize::try_from(s % SCANNERS as u64).unwrap_or(0));
            rx.and_then(|rx| rx.recv().ok()).unwrap_or_default()
        });
        for chunk in in_order {
            let chunk = chunk?;
            let index = range.size();
            if chunk.first >= size {
                return Err(VerifyFailure::Extra {
                    what: format!("entry {}", chunk.first),
                    size,
                });
            }
            if chunk.first < index {
                return Err(VerifyFailure::DuplicateEntry { index: chunk.first });
            }
            if chunk.first > index {
                return Err(VerifyFailure::MissingEntry { index });
            }
            entry_bytes += chunk.bytes;
            for leaf in chunk.leaves {
                if range.size() >= size {
                    return Err(VerifyFailure::Extra {
                        what: format!("entry {}", range.size()),
                        size,
                    });
                }
                let mut bad_node: Option<VerifyFailure> = None;
                range.push(leaf, |level, index, hash| {
                    if !stores_level(level) || bad_node.is_some() {
                        return;
                    }
                    let l = usize::from(level);
                    if levels.len() <= l {
                        levels.resize_with(l + 1, || None);
                    }
                    let Some(slot) = levels.get_mut(l) else {
                        return;
                    };
                    let scan = slot.get_or_insert_with(|| store.nodes(level).peekable());
                    match scan.next() {
                        Some(Ok((i, h))) if i == index && h == *hash => {}
                        Some(Err(e)) => bad_node = Some(VerifyFailure::Store(e)),
                        _ => bad_node = Some(node_mismatch(level, index)),
                    }
                });
                if let Some(failure) = bad_node {
                    return Err(failure);
                }
                state.check_at(&mut checkpoints, &range)?;
            }
            if let Some(failure) = chunk.failure {
                return Err(failure);
            }
        }
        if range.size() < size {
            return Err(VerifyFailure::MissingEntry {
                index: range.size(),
            });
        }
        match checkpoints.next() {
            Some(Item::Checkpoint { size: at, .. } | Item::Invalid(at, _)) => {
                Err(VerifyFailure::Extra {
                    what: format!("checkpoint at size {at}"),
                    size,
                })
            }
            Some(Item::Failed(failure)) => Err(failure),
            None => Ok(()),
        }
    })?;
    // Nothing may be stored past the tree: look at every stored level, scanned or not.
    for level in (1..64u8).filter(|l| stores_level(*l)) {
        let scan = levels.get_mut(usize::from(level)).and_then(Option::take);
        let leftover = match scan {
            Some(mut scan) => scan.next(),
            None => store.nodes(level).next(),
        };
        if let Some(item) = leftover {
            let (i, _) = item?;
            let what = format!("tree node (level {level}, index {i})");
            return Err(VerifyFailure::Extra { what, size });
        }
    }
    let latest = state.latest.unwrap_or(0);
    if state.latest != Some(size) {
        return Err(VerifyFailure::Uncovered { size, latest });
    }
    state.check_newest_signatures(&store)?;
    let CheckpointState {
        checked,
        signatures_checked,
        after_compromise,
        head_sound,
        ..
    } = state;
    if !after_compromise.is_empty() && !head_sound {
        return Err(VerifyFailure::SignedAfterCompromise(after_compromise));
    }
    Ok(VerifyReport {
        origin,
        size,
        root: range.root(),
        checkpoints: checked,
        signatures_checked,
        after_compromise,
        entry_bytes,
        opened_in,
        elapsed: started.elapsed(),
    })
}

/// Entries per scanning segment: large enough that switching between scanners costs nothing, small
/// enough that both stay busy on a log of a few segments.
const SEGMENT: u64 = 16_384;
/// Scanner threads: the machines we target have two cores.
const SCANNERS: usize = 2;

/// What a scanner sends for one segment: each bundle's checked leaves, in order, ending early at a failure.
type Segment = Vec<Result<Leaves, VerifyFailure>>;

/// Scans segments `k`, `k + SCANNERS`, … and sends each one's checked leaves.
fn scan_segments(store: &Store, k: u64, segments: u64, tx: &std::sync::mpsc::SyncSender<Segment>) {
    for s in (k..segments).step_by(SCANNERS) {
        let hi = (s + 1 < segments).then(|| (s + 1) * SEGMENT);
        let mut segment = Vec::new();
        let mut stop = false;
        for item in store.bundles_between(s * SEGMENT, hi) {
            let leaves = item
                .map_err(VerifyFailure::from)
                .and_then(|(first, bundle)| check_bundle(first, &bundle));
            stop = !matches!(&leaves, Ok(l) if l.failure.is_none());
            segment.push(leaves);
            if stop {
                break;
            }
        }
        // A closed channel means the checker stopped at an earlier failure.
        if tx.send(segment).is_err() || stop {
            return;
        }
    }
}

/// The leaf hashes of one bundle's entries, checked against the entries, in index order; a failure
/// found part way stops the list there.
struct Leaves {
    first: u64,
    leaves: Vec<Hash>,
    bytes: u64,
    failure: Option<VerifyFailure>,
}

fn check_bundle(first: u64, bundle: &Bundle<super::store::Value>) -> Result<Leaves, VerifyFailure> {
    let mut out = Leaves {
        first,
        leaves: Vec::with_capacity(bundle.len()),
        bytes: 0,
        failure: None,
    };
    for j in 0..bundle.len() {
        let index = first + j as u64;
        let Some((leaf, entry)) = bundle.record(j) else {
            let why = format!("the bundle of entries from {first} is malformed");
            out.failure = Some(VerifyFailure::Store(LedgerError::Corrupt(why)));
            break;
        };
        if leaf_hash(entry) != leaf {
            out.failure = Some(VerifyFailure::EntryModified { index });
            break;
        }
        out.bytes += entry.len() as u64;
        out.leaves.push(leaf);
    }
    Ok(out)
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
