//! Raft's state machine is the ledger itself: applying a committed proposal appends its entries
//! through the ledger's writer, and the Raft log id applied (with the membership in force) is
//! recorded in the same atomic write (`Ledger::queue_recording`). So after any crash the ledger
//! holds a proposal's entries exactly when it holds the record of having applied it: a restart
//! resumes right after the last applied entry, with no double append and no gap.
//!
//! The member that accepted a proposal adds its off-ledger half (the vault's attachments) when it
//! applies it, matched by `origin`, `started` and `tag` ([`Pending`]); no other member ever sees it.
//!
//! Snapshots are the ledger's entries. A member installing one checks that its own copy is a prefix
//! of it (a member never lets a snapshot rewrite what it holds) and appends the rest.

// openraft's trait methods return its `StorageError` (224 bytes).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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

/// The current snapshot (the last built or installed): its description and bytes, shared by the
/// machine and its builders.
type Current = Arc<Mutex<Option<Arc<(SnapshotMeta<NodeId, Member>, Vec<u8>)>>>>;

/// The ledger as Raft's state machine.
#[derive(Debug)]
pub struct LedgerMachine {
    ledger: Arc<Ledger>,
    me: Proposer,
    pending: Pending,
    state: AppliedState,
    /// The ledger index of the next entry applied (queued writes included).
    next_index: u64,
    snapshot: Current,
}

impl LedgerMachine {
    /// The state machine over `ledger`, resuming from the state recorded in it.
    pub fn open(
        ledger: Arc<Ledger>,
        me: Proposer,
        pending: Pending,
    ) -> std::result::Result<LedgerMachine, LedgerError> {
        let state = match ledger.recorded(RECORDED)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                LedgerError::Corrupt(format!("the consortium's applied state is unreadable: {e}"))
            })?,
            None => AppliedState::default(),
        };
        Ok(LedgerMachine {
            next_index: ledger.size(),
            ledger,
            me,
            pending,
            state,
            snapshot: Current::default(),
        })
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

    /// What applying an entry without ledger entries (blank, membership) answers.
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
                    let count = p.entries.len() as u64;
                    let queued = self.queue(p.entries, attachments).await?;
                    out.push(Applied {
                        first_index: self.next_index,
                        tree_size: self.next_index + count,
                    });
                    self.next_index += count;
                    if let Some(reply) = reply {
                        // The submission here is answered once its entries are durable.
                        tokio::spawn(async move {
                            let _ = reply.send(queued.wait().await);
                        });
                    }
                    unrecorded = false;
                }
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(self.no_entries());
                    unrecorded = true;
                }
                EntryPayload::Blank => {
                    out.push(self.no_entries());
                    unrecorded = true;
                }
            }
        }
        if unrecorded {
            // Blank and membership entries change no entry; they are recorded once, after the
            // rest (applying one again after a crash changes nothing).
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
            size: self.ledger.size(),
            current: Arc::clone(&self.snapshot),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let image: Image = serde_json::from_slice(&data).map_err(read_err)?;
        self.drain().await?;
        let have = self.ledger.size();
        let theirs = image.entries.len() as u64;
        // What this member holds must be a prefix of the snapshot: a snapshot never rewrites it.
        let mine = self.ledger.entries(0, have.min(theirs)).map_err(read_err)?;
        for (index, entry) in mine {
            let same = usize::try_from(index)
                .ok()
                .and_then(|i| image.entries.get(i))
                .is_some_and(|e| *e == entry);
            if !same {
                tracing::error!(
                    event = "consortium_history_disagrees",
                    index,
                    "a snapshot disagrees with this member's copy; not installed"
                );
                return Err(io_err(format!(
                    "the snapshot's entry {index} differs from this member's copy"
                )));
            }
        }
        if theirs < have {
            return Err(io_err(format!(
                "the snapshot holds {theirs} entries, fewer than this member's {have}"
            )));
        }
        self.state.last_applied = meta.last_log_id;
        self.state.membership = meta.last_membership.clone();
        let rest = image
            .entries
            .into_iter()
            .skip(usize::try_from(have).map_err(io_err)?)
            .collect();
        self.queue(rest, Vec::new())
            .await?
            .wait()
            .await
            .map_err(io_err)?;
        self.next_index = self.ledger.size();
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new((meta.clone(), data)));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let current = self
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Ok(current.map(|s| Snapshot {
            meta: s.0.clone(),
            snapshot: Box::new(Cursor::new(s.1.clone())),
        }))
    }
}

/// A snapshot's bytes: every entry of the ledger up to the applied state.
#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(with = "super::types::base64_entries")]
    entries: Vec<Vec<u8>>,
}

/// Builds a snapshot of the ledger as it was when the builder was made.
#[derive(Debug)]
pub struct SnapshotBuilder {
    ledger: Arc<Ledger>,
    state: AppliedState,
    size: u64,
    current: Current,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let entries = self
            .ledger
            .entries(0, self.size)
            .map_err(read_err)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let data = serde_json::to_vec(&Image { entries }).map_err(read_err)?;
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
            Some(Arc::new((meta.clone(), data.clone())));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::consortium::types::Proposal;
    use crate::ledger::{Ed25519NoteSigner, LedgerConfig};

    const ORIGIN: &str = "consortium.example/log";

    fn ledger(dir: &std::path::Path) -> Arc<Ledger> {
        let signer = Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap());
        Arc::new(Ledger::open(LedgerConfig::new(dir.join("ledger"), ORIGIN), signer).unwrap())
    }

    fn proposal(index: u64, origin: NodeId, tag: u64, entries: &[&str]) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                origin,
                tag,
                started: 7,
                entries: entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
            }),
        }
    }

    /// Applying appends each proposal's entries in order; this member's own proposal gets its
    /// attachments in the same write and its receipts; another member's gets neither; the applied
    /// log id survives a restart, so nothing is applied twice.
    #[tokio::test(flavor = "multi_thread")]
    async fn proposals_are_appended_once_with_their_own_attachments_only() {
        let dir = tempfile::tempdir().unwrap();
        let me = Proposer { id: 1, started: 7 };
        let pending = Pending::default();
        let (reply, receipts) = oneshot::channel();
        pending.insert(
            5,
            PendingWrite {
                attachments: vec![Attachment {
                    key: b"mine".to_vec(),
                    extra: b"sealed".to_vec(),
                }],
                reply,
            },
        );
        let l = ledger(dir.path());
        let mut m = LedgerMachine::open(Arc::clone(&l), me, pending.clone()).unwrap();
        let applied = m
            .apply([
                proposal(1, 2, 5, &["theirs-a", "theirs-b"]),
                proposal(2, 1, 5, &["mine"]),
                // Another run of member 1 (`started` differs): not this process's proposal.
                Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), 3),
                    payload: EntryPayload::Normal(Proposal {
                        origin: 1,
                        tag: 5,
                        started: 6,
                        entries: vec![b"old run".to_vec()],
                    }),
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            applied,
            vec![
                Applied {
                    first_index: 0,
                    tree_size: 2
                },
                Applied {
                    first_index: 2,
                    tree_size: 3
                },
                Applied {
                    first_index: 3,
                    tree_size: 4
                },
            ]
        );
        // Applying queued the writes; this member's submission is answered once they are durable.
        m.drain().await.unwrap();
        assert_eq!(l.size(), 4);
        assert_eq!(l.entry(2).unwrap(), b"mine");
        let receipts = receipts.await.unwrap().unwrap();
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].index, 2);
        assert_eq!(
            l.located(b"mine").unwrap().map(|x| (x.index, x.extra)),
            Some((2, b"sealed".to_vec()))
        );
        assert!(pending.take(5).is_none());
        let (last, _) = m.applied_state().await.unwrap();
        assert_eq!(last.map(|l| l.index), Some(3));
        drop(m);
        let l = Arc::into_inner(l).unwrap();
        l.close();

        // Restarted: the applied id comes back from the ledger, with the entries.
        let l = ledger(dir.path());
        let mut m = LedgerMachine::open(Arc::clone(&l), me, Pending::default()).unwrap();
        let (last, _) = m.applied_state().await.unwrap();
        assert_eq!(last.map(|l| l.index), Some(3));
        assert_eq!(l.size(), 4);
    }
}
