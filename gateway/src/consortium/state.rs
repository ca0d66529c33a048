//! Raft's state machine is the ledger itself: applying a committed proposal appends its entries
//! through the ledger's writer, and the Raft log id applied (with the membership in force) is
//! recorded in the same atomic write (`Ledger::queue_recording`). So after any crash the ledger
//! holds a proposal's entries exactly when it holds the record of having applied it: a restart
//! resumes right after the last applied entry, with no double append and no gap.
//!
//! The member that accepted a proposal adds its off-ledger half (the vault's attachments) when it
//! applies it, matched by `origin`, `started` and `tag` ([`Pending`]); no other member ever sees it.
//!
//! Snapshots are the ledger's first entries ([`super::snapshot`]). A member installing one checks
//! that its own copy is a prefix of it (a member never lets a snapshot rewrite what it holds) and
//! appends the rest, a page at a time. Those pages are recorded with the applied state as it was
//! before the snapshot, so a crash in the middle leaves entries past the recorded size: they are
//! history this member received but has not applied. Whatever brings it up to date next (the
//! snapshot again, or the Raft log from a leader that kept it) must agree with them entry for
//! entry, and appends only what follows them.

// openraft's trait methods return its `StorageError` (224 bytes).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::snapshot::{self, ImageReader, SnapshotData};

use super::types::{Applied, Member, NodeId, TypeConfig};
use crate::ledger::{Attachment, Ledger, LedgerError, Queued, Receipt};

/// Where the applied state is recorded in the ledger store.
const RECORDED: &str = "raft";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// What the state machine records beside the entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
    /// The ledger's size after the last applied entry (absent in stores written before snapshots:
    /// then the ledger's size).
    #[serde(default)]
    size: Option<u64>,
}

/// A proposal this member made, waiting to be applied here: its attachments go into the same
/// write, and its receipts go back to the submission.
#[derive(Debug)]
pub struct PendingWrite {
    /// One per entry, or none.
    pub attachments: Vec<Attachment>,
    /// Where the receipts go.
    pub reply: oneshot::Sender<std::result::Result<Vec<Receipt>, LedgerError>>,
}

/// How long a proposal's off-ledger half waits to be applied after its submission gave up: a
/// proposal that timed out may still commit (its leader was slow, not gone), and then its
/// attachments must join it, or the vault would not know the record and the client's retry would
/// append it again.
const KEEP_UNAPPLIED: std::time::Duration = std::time::Duration::from_secs(120);
/// Most proposals kept waiting at once (each holds one submission's attachments).
const MAX_UNAPPLIED: usize = 65_536;

/// This member's proposals not applied yet, by tag, with when each was proposed.
#[derive(Debug, Clone, Default)]
pub struct Pending(Arc<Mutex<HashMap<u64, (std::time::Instant, PendingWrite)>>>);

impl Pending {
    /// Registers a proposal before it is proposed (so its apply can never come first). Proposals
    /// older than [`KEEP_UNAPPLIED`] are forgotten (they will not commit now: their term is long
    /// over), and past [`MAX_UNAPPLIED`] the oldest are.
    pub fn insert(&self, tag: u64, write: PendingWrite) {
        let now = std::time::Instant::now();
        let mut pending = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() >= MAX_UNAPPLIED {
            pending.retain(|_, (at, _)| now.duration_since(*at) < KEEP_UNAPPLIED);
            while pending.len() >= MAX_UNAPPLIED {
                let Some(oldest) = pending
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(t, _)| *t)
                else {
                    break;
                };
                pending.remove(&oldest);
            }
        }
        pending.insert(tag, (now, write));
    }

    /// Takes a proposal's pending write away (applied, or given up on).
    pub fn take(&self, tag: u64) -> Option<PendingWrite> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tag)
            .map(|(_, write)| write)
    }
}

fn io_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn read_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::read_state_machine(AnyError::error(e.to_string())).into()
}

/// This member's identity in proposals: its node id and when its process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposer {
    /// Its node id.
    pub id: NodeId,
    /// When its process started (Unix nanoseconds).
    pub started: u64,
}

/// The current snapshot (the last built or installed): its description and how many of the
/// ledger's entries it holds, shared by the machine and its builders.
type Current = Arc<Mutex<Option<(SnapshotMeta<NodeId, Member>, u64)>>>;

/// The ledger as Raft's state machine.
#[derive(Debug)]
pub struct LedgerMachine {
    ledger: Arc<Ledger>,
    me: Proposer,
    pending: Pending,
    state: AppliedState,
    /// The ledger index of the next entry applied (queued writes included).
    next_index: u64,
    /// The ledger's size when opened (or after a snapshot): entries in `next_index..received` are
    /// history received by a snapshot install that a crash cut short, not applied yet.
    received: u64,
    snapshot: Current,
    /// Where snapshots' temporary files go.
    scratch: PathBuf,
}

impl LedgerMachine {
    /// The state machine over `ledger`, resuming from the state recorded in it; snapshots' files
    /// are made in `scratch`.
    pub fn open(
        ledger: Arc<Ledger>,
        me: Proposer,
        pending: Pending,
        scratch: PathBuf,
    ) -> std::result::Result<LedgerMachine, LedgerError> {
        let mut state: AppliedState = match ledger.recorded(RECORDED)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LedgerError::Corrupt(format!("the consortium's applied state is unreadable: {e}"))
            })?,
            None => AppliedState::default(),
        };
        let received = ledger.size();
        let next_index = *state.size.get_or_insert(received);
        if next_index > received {
            return Err(LedgerError::Corrupt(format!(
                "the consortium's applied state says {next_index} entries, the ledger holds {received}"
            )));
        }
        Ok(LedgerMachine {
            next_index,
            received,
            ledger,
            me,
            pending,
            state,
            snapshot: Current::default(),
            scratch,
        })
    }

    /// Of `entries`, about to be applied at `next_index`, those this member does not hold yet:
    /// any it received before (a snapshot install cut short) must be the same, entry for entry.
    fn not_yet_held(&self, entries: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
        if self.next_index >= self.received {
            return Ok(entries);
        }
        self.beyond_held(self.next_index, self.received, entries, "a committed entry")
    }

    /// Of `entries`, which belong at `start`, those past `held_end` (the ledger's entries before it
    /// are history this member holds): the held ones must be the same, entry for entry, or `what`
    /// (a committed entry, a snapshot's) is refused and an alarm logged.
    fn beyond_held(
        &self,
        start: u64,
        held_end: u64,
        mut entries: Vec<Vec<u8>>,
        what: &str,
    ) -> Result<Vec<Vec<u8>>> {
        let end = (start + entries.len() as u64).min(held_end);
        let held = self.ledger.entries(start, end).map_err(read_err)?;
        if let Some(index) = held
            .iter()
            .zip(&entries)
            .find(|((_, a), b)| a != *b)
            .map(|x| x.0.0)
        {
            tracing::error!(
                event = "consortium_history_disagrees",
                index,
                "{what} differs from this member's copy; not applied"
            );
            return Err(io_err(format!(
                "{what} at index {index} differs from this member's copy"
            )));
        }
        entries.drain(..held.len());
        Ok(entries)
    }

    /// Waits until every write queued so far is durable: the writer is first in, first out, so an
    /// empty recorded write that is durable means all before it are.
    async fn drain(&self) -> Result<()> {
        self.queue(Vec::new(), Vec::new())
            .await?
            .wait()
            .await
            .map(drop)
            .map_err(io_err)
    }

    /// Appends the ledger entries of one applied Raft entry (with the accepting member's attachments,
    /// and where its submission waits for the receipts), recording the state with them.
    async fn append_applied(
        &mut self,
        entries: Vec<Vec<u8>>,
        attachments: Vec<Attachment>,
        reply: Option<oneshot::Sender<std::result::Result<Vec<Receipt>, LedgerError>>>,
    ) -> Result<Applied> {
        let count = entries.len() as u64;
        let entries = self.not_yet_held(entries)?;
        // Attachments go with this run's own proposals, which never reach back into history
        // received before it.
        let attachments = if entries.len() as u64 == count {
            attachments
        } else {
            Vec::new()
        };
        self.state.size = Some(self.next_index + count);
        let queued = self.queue(entries, attachments).await?;
        let applied = Applied {
            first_index: self.next_index,
            tree_size: self.next_index + count,
        };
        self.next_index += count;
        if let Some(reply) = reply {
            // The submission here is answered once its entries are durable.
            tokio::spawn(async move {
                let _ = reply.send(queued.wait().await);
            });
        }
        Ok(applied)
    }

    /// What applying an entry without ledger entries (a blank one) answers.
    fn no_entries(&self) -> Applied {
        Applied {
            first_index: self.next_index,
            tree_size: self.next_index,
        }
    }

    fn recorded(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.state).map_err(io_err)
    }

    /// Queues one write of `entries` recording the state as it is now.
    async fn queue(&self, entries: Vec<Vec<u8>>, attachments: Vec<Attachment>) -> Result<Queued> {
        self.ledger
            .queue_recording(entries, attachments, RECORDED, self.recorded()?)
            .await
            .map_err(io_err)
    }
}

impl RaftStateMachine<TypeConfig> for LedgerMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        Ok((self.state.last_applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Applying queues the writes and returns: openraft hands over the next committed entries
        // at once, and the ledger's writer commits them all in few groups. Waiting here for each
        // batch's sync made every commit advance cost a sync of its own (single records at a
        // quarter of the single node). Nothing is acknowledged early: a submission is answered
        // when its own write is durable (below). A write that fails poisons the writer (a recorded
        // write never leaves a gap), so the next apply fails and Raft stops; after a restart the
        // ledger's recorded state says where to resume.
        let mut out = Vec::new();
        let mut unrecorded = false;
        for entry in entries {
            self.state.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Normal(p) => {
                    let mine = (p.origin == self.me.id && p.started == self.me.started)
                        .then(|| self.pending.take(p.tag))
                        .flatten();
                    let origin = self.state.membership.membership().get_node(&p.origin);
                    if let Some(why) =
                        super::audit_entry::refusal(&p.entries, origin.map(|m| m.name.as_str()))
                    {
                        // Every member refuses it alike: it is applied as nothing.
                        tracing::error!(
                            event = "consortium_proposal_refused",
                            origin = p.origin,
                            why,
                            "a proposal with an audit entry its member may not write; not applied"
                        );
                        if let Some(w) = mine {
                            let _ = w.reply.send(Err(LedgerError::NotReplicated(format!(
                                "the consortium refused the proposal: {why}"
                            ))));
                        }
                        out.push(self.no_entries());
                        unrecorded = true;
                        continue;
                    }
                    let (attachments, reply) = match mine {
                        Some(w)
                            if w.attachments.is_empty()
                                || w.attachments.len() == p.entries.len() =>
                        {
                            (w.attachments, Some(w.reply))
                        }
                        Some(w) => (Vec::new(), Some(w.reply)),
                        None => (Vec::new(), None),
                    };
                    out.push(self.append_applied(p.entries, attachments, reply).await?);
                    unrecorded = false;
                }
                EntryPayload::Membership(m) => {
                    // The member list goes into the ledger's audit trail, the same bytes at the
                    // same index on every member (`audit_entry`).
                    let audit = super::audit_entry::membership(&entry.log_id, &m);
                    self.state.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(self.append_applied(vec![audit], Vec::new(), None).await?);
                    unrecorded = false;
                }
                EntryPayload::Blank => {
                    out.push(self.no_entries());
                    unrecorded = true;
                }
            }
        }
        if unrecorded {
            // Blank entries change no entry; they are recorded once, after the rest (applying one
            // again after a crash changes nothing).
            self.queue(Vec::new(), Vec::new()).await?;
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Everything applied is in the ledger before the builder reads it.
        if let Err(e) = self.drain().await {
            tracing::error!(event = "consortium_apply_failed", error = %e, "applying committed entries failed");
        }
        SnapshotBuilder {
            ledger: Arc::clone(&self.ledger),
            state: self.state.clone(),
            size: self.next_index,
            current: Arc::clone(&self.snapshot),
            scratch: self.scratch.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotData>> {
        Ok(Box::new(
            SnapshotData::receiving(&self.scratch).map_err(io_err)?,
        ))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotData>,
    ) -> Result<()> {
        self.drain().await?;
        let file = snapshot.into_file().await.map_err(read_err)?;
        let reader = tokio::task::spawn_blocking(move || ImageReader::new(BufReader::new(file)))
            .await
            .map_err(read_err)?
            .map_err(read_err)?;
        let theirs = reader.count();
        if theirs < self.next_index {
            return Err(io_err(format!(
                "the snapshot holds {theirs} entries, fewer than the {} this member applied",
                self.next_index
            )));
        }
        // Pages are read on a blocking thread, one ahead of the one being written.
        let (pages, mut next) = mpsc::channel(1);
        tokio::task::spawn_blocking(move || {
            let mut reader = reader;
            loop {
                let page = reader.next_page(snapshot::PAGE);
                let last = matches!(&page, Ok(p) if p.is_empty()) || page.is_err();
                if pages.blocking_send(page).is_err() || last {
                    return;
                }
            }
        });
        let mut at = 0u64;
        let mut held = self.ledger.size();
        while let Some(page) = next.recv().await {
            let page = page.map_err(read_err)?;
            if page.is_empty() {
                break;
            }
            let n = page.len() as u64;
            // What this member holds must be a prefix of the snapshot: a snapshot never rewrites it.
            let rest = self.beyond_held(at, held, page, "the snapshot's entry")?;
            if !rest.is_empty() {
                // Recorded with the state before the snapshot: see the module's comment.
                held += rest.len() as u64;
                self.queue(rest, Vec::new()).await?;
            }
            at += n;
        }
        if at != theirs {
            return Err(read_err(format!(
                "the snapshot ends after {at} of its {theirs} entries"
            )));
        }
        self.state.last_applied = meta.last_log_id;
        self.state.membership = meta.last_membership.clone();
        self.state.size = Some(theirs);
        self.drain().await?;
        self.next_index = theirs;
        self.received = held;
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((meta.clone(), theirs));
        tracing::info!(
            event = "consortium_snapshot_installed",
            entries = theirs,
            "installed a snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let current = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(current.map(|(meta, size)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::image_of(
                Arc::clone(&self.ledger),
                size,
                self.scratch.clone(),
            )),
        }))
    }
}

/// Builds a snapshot of the ledger as it was when the builder was made: its description only, as
/// the ledger keeps the entries (their file is made when the snapshot is read).
#[derive(Debug)]
pub struct SnapshotBuilder {
    ledger: Arc<Ledger>,
    state: AppliedState,
    size: u64,
    current: Current,
    scratch: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let meta = SnapshotMeta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.state.last_applied.map_or(0, |l| l.index),
                self.size
            ),
        };
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((meta.clone(), self.size));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotData::image_of(
                Arc::clone(&self.ledger),
                self.size,
                self.scratch.clone(),
            )),
        })
    }
}

#[cfg(test)]
mod tests;
