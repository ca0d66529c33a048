//! The verifier's checkpoint checks. A reader thread reads every stored checkpoint and when it was
//! signed, parses it and matches its signature lines against the trusted keys; the thread that
//! rebuilds the tree takes the parsed checkpoints in size order and holds each one's root against the
//! tree at that size. A node stores one checkpoint per group commit (one per 5–6 entries under light
//! load), and reading and parsing them on the tree's thread made it the slowest of the verifier's
//! threads.

use std::iter::Peekable;
use std::sync::mpsc::SyncSender;

use super::super::checkpoint::Checkpoint;
use super::super::compact::CompactRange;
use super::super::error::LedgerError;
use super::super::hash::Hash;
use super::super::note::{NoteVerifier, parse_note};
use super::super::store::Store;
use super::{SignedAfterCompromise, VerifyFailure, VerifyOptions};

/// A key the verifier trusts, and when (if ever) it was compromised.
pub(super) struct Trusted {
    verifier: NoteVerifier,
    compromised_at: Option<i64>,
}

impl Trusted {
    fn sound_at(&self, made_at: Option<i64>) -> bool {
        match (self.compromised_at, made_at) {
            (None, _) => true,
            (Some(c), Some(t)) => t < c,
            (Some(_), None) => false,
        }
    }
}

/// The keys to trust: the out-of-band history, else the pinned keys, else those the store records;
/// compromise times from the history, else from the store.
pub(super) fn trusted_keys(
    store: &Store,
    options: &VerifyOptions,
) -> Result<Vec<Trusted>, VerifyFailure> {
    let parse = |v: &str| {
        NoteVerifier::from_vkey(v)
            .map_err(|e| VerifyFailure::Store(LedgerError::Corrupt(format!("recorded key: {e}"))))
    };
    if let Some(history) = &options.history {
        return history
            .iter()
            .map(|k| {
                Ok(Trusted {
                    verifier: parse(&k.vkey)?,
                    compromised_at: k.compromised_at,
                })
            })
            .collect();
    }
    let recorded = store.keys()?;
    let compromised_at = |vkey: &str| {
        recorded
            .iter()
            .find(|(v, _)| v == vkey)
            .and_then(|(_, h)| h.as_ref())
            .and_then(|h| h.compromised_at)
    };
    if options.pinned.is_empty() {
        recorded
            .iter()
            .map(|(v, _)| {
                Ok(Trusted {
                    verifier: parse(v)?,
                    compromised_at: compromised_at(v),
                })
            })
            .collect()
    } else {
        Ok(options
            .pinned
            .iter()
            .map(|v| Trusted {
                compromised_at: compromised_at(&v.to_vkey()),
                verifier: v.clone(),
            })
            .collect())
    }
}

/// One stored checkpoint, read and parsed.
pub(super) enum Item {
    /// A well-formed checkpoint of this log, signed (by line) by the trusted keys listed.
    Checkpoint {
        size: u64,
        root: Hash,
        signers: Vec<usize>,
        made_at: Option<i64>,
    },
    /// The checkpoint stored at this size is invalid; reported when the tree reaches the size, so
    /// that the first failure in the log is the one reported.
    Invalid(u64, VerifyFailure),
    /// Reading the store failed: reported at once.
    Failed(VerifyFailure),
}

/// Parsed checkpoints are handed over in chunks of this many.
pub(super) const CHUNK: usize = 1024;

/// The reader thread: reads, parses and (with `all_signatures`) verifies every stored checkpoint, in
/// size order, and sends them in chunks; stops after the first failure.
pub(super) fn read_checkpoints(
    store: &Store,
    origin: &str,
    trusted: &[Trusted],
    all_signatures: bool,
    tx: &SyncSender<Vec<Item>>,
) {
    let mut times = store.signed_at().peekable();
    let mut chunk = Vec::with_capacity(CHUNK);
    for stored in store.checkpoints() {
        let item = match stored {
            Err(e) => Item::Failed(e.into()),
            Ok((size, note)) => match signed_at(&mut times, size) {
                Err(e) => Item::Failed(e.into()),
                Ok(made_at) => parse(size, &note, made_at, origin, trusted, all_signatures),
            },
        };
        let stop = !matches!(item, Item::Checkpoint { .. });
        chunk.push(item);
        if (chunk.len() == CHUNK || stop) && tx.send(std::mem::take(&mut chunk)).is_err() {
            return;
        }
        if stop {
            return;
        }
    }
    let _ = tx.send(chunk);
}

/// When the checkpoint at `size` was signed, if the store says.
fn signed_at(
    times: &mut Peekable<impl Iterator<Item = Result<(u64, i64), LedgerError>>>,
    size: u64,
) -> Result<Option<i64>, LedgerError> {
    while let Some(item) = times.peek() {
        match item {
            Ok((at, _)) if *at < size => {
                times.next();
            }
            Ok((at, t)) if *at == size => return Ok(Some(*t)),
            Ok(_) => return Ok(None),
            Err(_) => return times.next().map_or(Ok(None), |r| r.map(|_| None)),
        }
    }
    Ok(None)
}

fn parse(
    size: u64,
    note: &str,
    made_at: Option<i64>,
    origin: &str,
    trusted: &[Trusted],
    all_signatures: bool,
) -> Item {
    let invalid = |why: String| Item::Invalid(size, VerifyFailure::CheckpointInvalid { size, why });
    let parsed = match parse_note(note) {
        Ok(p) => p,
        Err(e) => return invalid(e.to_string()),
    };
    let cp = match Checkpoint::parse_body(parsed.body) {
        Ok(cp) => cp,
        Err(e) => return invalid(e.to_string()),
    };
    if cp.origin != origin {
        return invalid(format!("names log {:?}", cp.origin));
    }
    if cp.size != size {
        return invalid(format!("is stored under size {size} but says {}", cp.size));
    }
    let signers: Vec<usize> = trusted
        .iter()
        .enumerate()
        .filter(|(_, t)| parsed.signatures.iter().any(|line| t.verifier.names(line)))
        .map(|(i, _)| i)
        .collect();
    if signers.is_empty() {
        return invalid("no signature by a trusted key".into());
    }
    if all_signatures {
        let valid = signers.iter().filter_map(|&i| trusted.get(i)).any(|t| {
            parsed
                .signatures
                .iter()
                .any(|line| t.verifier.verifies(parsed.body, line))
        });
        if !valid {
            return invalid("no valid signature by a trusted key".into());
        }
    }
    Item::Checkpoint {
        size,
        root: cp.root,
        signers,
        made_at,
    }
}

/// What the checkpoint checks have found so far, on the tree's thread.
pub(super) struct CheckpointState<'a> {
    trusted: &'a [Trusted],
    all_signatures: bool,
    /// How many checkpoints were checked, and the size of the newest.
    pub(super) checked: u64,
    pub(super) latest: Option<u64>,
    /// Per trusted key, the size of the newest checkpoint it signed, whose signature is checked at
    /// the end.
    newest_by_key: Vec<Option<u64>>,
    pub(super) after_compromise: Vec<SignedAfterCompromise>,
    pub(super) signatures_checked: u64,
    /// Whether the newest checkpoint so far carries the line of a key sound when it signed.
    pub(super) head_sound: bool,
}

impl<'a> CheckpointState<'a> {
    pub(super) fn new(trusted: &'a [Trusted], all_signatures: bool) -> CheckpointState<'a> {
        CheckpointState {
            trusted,
            all_signatures,
            checked: 0,
            latest: None,
            newest_by_key: vec![None; trusted.len()],
            after_compromise: Vec::new(),
            signatures_checked: 0,
            head_sound: false,
        }
    }

    /// Checks every stored checkpoint whose size equals the recomputed tree's size. Checkpoints come
    /// in size order and this runs at every size, so none is skipped.
    pub(super) fn check_at(
        &mut self,
        items: &mut Peekable<impl Iterator<Item = Item>>,
        range: &CompactRange,
    ) -> Result<(), VerifyFailure> {
        loop {
            match items.peek() {
                Some(Item::Checkpoint { size, .. } | Item::Invalid(size, _))
                    if *size == range.size() => {}
                Some(Item::Failed(_)) => {}
                _ => return Ok(()),
            }
            match items.next() {
                Some(Item::Checkpoint {
                    size,
                    root,
                    signers,
                    made_at,
                }) => self.check_one(size, root, &signers, made_at, range)?,
                Some(Item::Invalid(_, failure) | Item::Failed(failure)) => return Err(failure),
                None => return Ok(()),
            }
        }
    }

    fn check_one(
        &mut self,
        size: u64,
        root: Hash,
        signers: &[usize],
        made_at: Option<i64>,
        range: &CompactRange,
    ) -> Result<(), VerifyFailure> {
        if root != range.root() {
            return Err(VerifyFailure::CheckpointRootMismatch { size });
        }
        if self.all_signatures {
            self.signatures_checked += 1;
        }
        self.head_sound = false;
        for &i in signers {
            let Some(t) = self.trusted.get(i) else {
                continue;
            };
            if t.sound_at(made_at) {
                self.head_sound = true;
            } else if let Some(compromised_at) = t.compromised_at {
                self.after_compromise.push(SignedAfterCompromise {
                    size,
                    vkey: t.verifier.to_vkey(),
                    signed_at: made_at,
                    compromised_at,
                });
            }
            if let Some(slot) = self.newest_by_key.get_mut(i) {
                *slot = Some(size);
            }
        }
        self.checked += 1;
        self.latest = Some(size);
        Ok(())
    }

    /// Checks the signature of the newest checkpoint each trusted key signed (unless every signature
    /// was checked already).
    pub(super) fn check_newest_signatures(&mut self, store: &Store) -> Result<(), VerifyFailure> {
        if self.all_signatures {
            return Ok(());
        }
        for (t, newest) in self.trusted.iter().zip(&self.newest_by_key) {
            let Some(size) = *newest else { continue };
            self.signatures_checked += 1;
            let note = store.checkpoint_note(size)?.unwrap_or_default();
            let valid = parse_note(&note).is_ok_and(|parsed| {
                parsed
                    .signatures
                    .iter()
                    .any(|line| t.verifier.verifies(parsed.body, line))
            });
            if !valid {
                let name = t.verifier.to_vkey();
                return Err(VerifyFailure::CheckpointInvalid {
                    size,
                    why: format!("the signature of {name} does not verify"),
                });
            }
        }
        Ok(())
    }
}
