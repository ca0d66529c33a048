//! Raft's log and vote on disk: `raft.redb` in the node's data directory, two tables (`log`: index
//! → entry as JSON; `meta`: vote, last purged), every change one durable redb transaction
//! (two-phase commit ending with `fdatasync`, as the ledger's).
//!
//! The rule Raft's safety rests on: openraft is told a vote or an append is flushed only after the
//! transaction holding it has committed durably. (openraft's own RocksDB example calls the flush
//! callback after an unsynced write; a power cut there can lose a vote already cast or an entry
//! already acknowledged to the leader, and with it a committed entry.)
//!
//! One writer thread owns the writes, in order. An append returns at once (openraft asks it: the
//! entries are readable from then on, from an in-memory overlay), and the writer commits every
//! append queued behind the first in one transaction, then calls each one's flush callback: under
//! load many proposals share one `fdatasync`, as the ledger's group commit does. A vote, a
//! truncation or a purge waits for its own durable commit, after the appends queued before it.
//!
//! The committed index is not stored: the ledger records what it applied, atomically with it, and
//! openraft learns the commit point again from the log and the leader.

// openraft's trait methods return its `StorageError` (224 bytes); the helpers here return what they
// feed into them.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote,
};
use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};

use super::types::{NodeId, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log/v1");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta/v1");
/// The database file in the data directory.
pub const RAFT_FILE: &str = "raft.redb";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// Entries appended but perhaps not durable yet, by index: readable at once.
type Unflushed = Arc<Mutex<BTreeMap<u64, Entry<TypeConfig>>>>;

/// What the writer thread does, in order.
enum Op {
    /// Durable appends (index, encoded entry); then the flush callback.
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    /// Any other change; then the answer.
    Change(Change, tokio::sync::oneshot::Sender<Result<()>>),
}

/// The store. Clones share the database and the writer: openraft reads through one while it writes
/// through another.
#[derive(Clone)]
pub struct RaftLog {
    db: Arc<redb::Database>,
    unflushed: Unflushed,
    // Dropped before `_writer`: the last handle's drop closes the queue, then waits for the writer.
    ops: mpsc::Sender<Op>,
    _writer: Arc<Writer>,
}

/// The writer thread, joined when the last handle goes: the file is closed (and its lock released)
/// when the store is dropped, as a single-threaded store's would be.
struct Writer(Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for Writer {
    fn drop(&mut self) {
        let handle = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog").finish_non_exhaustive()
    }
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn writer_gone() -> StorageError<NodeId> {
    write_err(std::io::Error::other("the raft log writer stopped"))
}

/// A change to the store, applied in one durable transaction.
#[derive(Default)]
struct Change {
    puts: Vec<(u64, Vec<u8>)>,
    /// Remove log indexes in this range.
    remove: Option<(Bound<u64>, Bound<u64>)>,
    meta: Vec<(&'static str, Vec<u8>)>,
}

/// Applies `change` and makes it durable before returning.
fn commit_now(db: &redb::Database, change: Change) -> Result<()> {
    let mut txn = db.begin_write().map_err(write_err)?;
    txn.set_durability(redb::Durability::Immediate)
        .map_err(write_err)?;
    // Two phases, as the ledger: data synced before the header that makes it current.
    txn.set_two_phase_commit(true);
    {
        let mut log = txn.open_table(LOG).map_err(write_err)?;
        if let Some(range) = change.remove {
            let doomed: Vec<u64> = log
                .range::<u64>(range)
                .map_err(write_err)?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<std::result::Result<_, _>>()
                .map_err(write_err)?;
            for k in doomed {
                log.remove(k).map_err(write_err)?;
            }
        }
        for (k, v) in &change.puts {
            log.insert(*k, v.as_slice()).map_err(write_err)?;
        }
        let mut meta = txn.open_table(META).map_err(write_err)?;
        for (k, v) in &change.meta {
            meta.insert(*k, v.as_slice()).map_err(write_err)?;
        }
    }
    txn.commit().map_err(write_err)
}

/// The writer thread: ops in order, consecutive appends in one durable transaction. Ends when
/// every handle is gone.
fn write_loop(db: &redb::Database, unflushed: &Unflushed, rx: &mpsc::Receiver<Op>) {
    let mut next = None;
    loop {
        let Some(op) = next.take().or_else(|| rx.recv().ok()) else {
            return;
        };
        let (puts, callback) = match op {
            Op::Change(change, reply) => {
                let _ = reply.send(commit_now(db, change));
                continue;
            }
            Op::Append(puts, callback) => (puts, callback),
        };
        let mut change = Change {
            puts,
            ..Change::default()
        };
        let mut callbacks = vec![callback];
        while let Ok(op) = rx.try_recv() {
            match op {
                Op::Append(more, callback) => {
                    change.puts.extend(more);
                    callbacks.push(callback);
                }
                other => {
                    next = Some(other);
                    break;
                }
            }
        }
        let written: Vec<u64> = change.puts.iter().map(|(i, _)| *i).collect();
        let done = commit_now(db, change);
        if done.is_ok() {
            // Durable: readable from the store from now on.
            let mut overlay = unflushed.lock().unwrap_or_else(PoisonError::into_inner);
            for index in written {
                overlay.remove(&index);
            }
        }
        for callback in callbacks {
            callback.log_io_completed(
                done.as_ref()
                    .copied()
                    .map_err(|e| std::io::Error::other(e.to_string())),
            );
        }
    }
}

impl RaftLog {
    /// Opens (with `create`, makes) the store in `dir`, and starts its writer.
    pub fn open(dir: &Path, create: bool) -> std::result::Result<RaftLog, String> {
        let (db, _) =
            keymgr::engine::open_file(dir, RAFT_FILE, create).map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        // The tables exist from the first open on, so reads never meet a missing table.
        commit_now(&db, Change::default()).map_err(|e| e.to_string())?;
        let unflushed = Unflushed::default();
        let (ops, rx) = mpsc::channel();
        let (writer_db, writer_overlay) = (Arc::clone(&db), Arc::clone(&unflushed));
        let handle = std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || write_loop(&writer_db, &writer_overlay, &rx))
            .map_err(|e| format!("cannot start the raft log writer: {e}"))?;
        Ok(RaftLog {
            db,
            unflushed,
            ops,
            _writer: Arc::new(Writer(Mutex::new(Some(handle)))),
        })
    }

    /// Has the writer apply `change` durably, after everything queued before it.
    async fn commit(&self, change: Change) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.ops
            .send(Op::Change(change, tx))
            .map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn overlay(&self) -> MutexGuard<'_, BTreeMap<u64, Entry<TypeConfig>>> {
        self.unflushed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        let Some(v) = table.get(key).map_err(read_err)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(read_err)
    }

    fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for RaftLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        // The overlay first: an entry the writer makes durable meanwhile is then in the store.
        let pending: Vec<Entry<TypeConfig>> = self
            .overlay()
            .range::<u64, _>(bounds)
            .map(|(_, e)| e.clone())
            .collect();
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOG).map_err(read_err)?;
        let mut out = BTreeMap::new();
        for item in table.range::<u64>(bounds).map_err(read_err)? {
            let (k, v) = item.map_err(read_err)?;
            let entry: Entry<TypeConfig> = serde_json::from_slice(v.value()).map_err(read_err)?;
            if entry.log_id.index != k.value() {
                return Err(StorageIOError::read_log_at_index(
                    k.value(),
                    AnyError::error("the entry stored at this index names another"),
                )
                .into());
            }
            out.insert(k.value(), entry);
        }
        for e in pending {
            out.insert(e.log_id.index, e);
        }
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for RaftLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta("last_purged")?;
        let pending = self.overlay().last_key_value().map(|(_, e)| e.log_id);
        let stored = {
            let txn = self.db.begin_read().map_err(read_err)?;
            let table = txn.open_table(LOG).map_err(read_err)?;
            match table.last().map_err(read_err)? {
                Some((_, v)) => Some(
                    serde_json::from_slice::<Entry<TypeConfig>>(v.value())
                        .map_err(read_err)?
                        .log_id,
                ),
                None => None,
            }
        };
        let last = match (pending, stored) {
            (Some(p), Some(s)) => Some(if p.index >= s.index { p } else { s }),
            (p, s) => p.or(s),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        let change = Change {
            meta: vec![("vote", Self::encode(vote)?)],
            ..Change::default()
        };
        self.commit(change).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        self.meta("vote")
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut puts = Vec::new();
        {
            let mut overlay = self.overlay();
            for entry in entries {
                puts.push((entry.log_id.index, Self::encode(&entry)?));
                overlay.insert(entry.log_id.index, entry);
            }
        }
        // Readable now; durable when the writer calls back (only then is openraft told).
        self.ops
            .send(Op::Append(puts, callback))
            .map_err(|_| writer_gone())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.overlay().retain(|index, _| *index < log_id.index);
        let change = Change {
            remove: Some((Bound::Included(log_id.index), Bound::Unbounded)),
            ..Change::default()
        };
        self.commit(change).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        self.overlay().retain(|index, _| *index > log_id.index);
        let change = Change {
            remove: Some((Bound::Unbounded, Bound::Included(log_id.index))),
            meta: vec![("last_purged", Self::encode(&log_id)?)],
            ..Change::default()
        };
        self.commit(change).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use openraft::testing::{StoreBuilder, Suite};

    use super::super::state::{LedgerMachine, Pending, Proposer};
    use super::*;
    use crate::ledger::{Ed25519NoteSigner, Ledger, LedgerConfig};

    /// A fresh log store and a fresh ledger as the state machine, in a temporary directory (kept
    /// alive by the guard).
    struct Fresh;

    impl StoreBuilder<TypeConfig, RaftLog, LedgerMachine, tempfile::TempDir> for Fresh {
        async fn build(&self) -> Result<(tempfile::TempDir, RaftLog, LedgerMachine)> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let log = RaftLog::open(&dir.path().join("raft"), true)
                .map_err(|e| StorageIOError::write_logs(AnyError::error(e)))?;
            let origin = "consortium.example/log";
            let signer =
                Arc::new(Ed25519NoteSigner::from_seed(origin, &[9; 32]).map_err(write_err)?);
            let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger"), origin), signer)
                .map_err(write_err)?;
            let me = Proposer { id: 1, started: 1 };
            let machine = LedgerMachine::open(
                Arc::new(ledger),
                me,
                Pending::default(),
                dir.path().to_path_buf(),
            )
            .map_err(write_err)?;
            Ok((dir, log, machine))
        }
    }

    /// Every test of openraft's storage suite: the log store's, and the state machine's (applied
    /// state and membership across blank and membership entries, snapshots built, transferred and
    /// installed) with the ledger as the state machine.
    #[test]
    fn openrafts_storage_suite_passes() {
        Suite::<TypeConfig, RaftLog, LedgerMachine, Fresh, tempfile::TempDir>::test_all(Fresh)
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn votes_and_entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft");
        let mut log = RaftLog::open(&path, true).unwrap();
        let vote = Vote::new(3, 2);
        log.save_vote(&vote).await.unwrap();
        let entries: Vec<Entry<TypeConfig>> = (1..=3)
            .map(|i| Entry {
                log_id: LogId::new(openraft::CommittedLeaderId::new(3, 2), i),
                payload: EntryPayload::Normal(super::super::types::Proposal {
                    origin: 1,
                    tag: i,
                    started: 0,
                    entries: vec![format!("entry {i}").into_bytes()],
                }),
            })
            .collect();
        for e in &entries {
            openraft::storage::RaftLogStorageExt::blocking_append(&mut log, [e.clone()])
                .await
                .unwrap();
        }
        drop(log);
        let mut log = RaftLog::open(&path, false).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.try_get_log_entries(1..4).await.unwrap(), entries);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(entries[2].log_id));
        // A directory that is not a store is refused, not made one, without `create`.
        assert!(RaftLog::open(&dir.path().join("absent"), false).is_err());
    }
}
