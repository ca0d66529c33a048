//! Raft's log and vote on disk: `raft.redb` in the node's data directory, two tables (`log`: index
//! → entry as JSON; `meta`: vote, committed, last purged), every change one durable redb transaction
//! (two-phase commit ending with `fdatasync`, as the ledger's).
//!
//! The rule Raft's safety rests on: openraft is told a vote or an append is flushed only after the
//! transaction holding it has committed durably. (openraft's own RocksDB example calls the flush
//! callback after an unsynced write; a power cut there can lose a vote already cast or an entry
//! already acknowledged to the leader, and with it a committed entry.) Each commit runs on the
//! blocking pool, not on the runtime's threads.

// openraft's trait methods return its `StorageError` (224 bytes); the helpers here return what they
// feed into them.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

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

/// The store. Clones share the database: openraft reads through one while it writes through another.
#[derive(Clone)]
pub struct RaftLog {
    db: Arc<redb::Database>,
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

/// A change to the store, applied in one durable transaction.
#[derive(Default)]
struct Change {
    puts: Vec<(u64, Vec<u8>)>,
    /// Remove log indexes in this range.
    remove: Option<(Bound<u64>, Bound<u64>)>,
    meta: Vec<(&'static str, Vec<u8>)>,
}

impl RaftLog {
    /// Opens (with `create`, makes) the store in `dir`.
    pub fn open(dir: &Path, create: bool) -> std::result::Result<RaftLog, String> {
        let (db, _) =
            keymgr::engine::open_file(dir, RAFT_FILE, create).map_err(|e| e.to_string())?;
        let log = RaftLog { db: Arc::new(db) };
        // The tables exist from the first open on, so reads never meet a missing table.
        log.commit_now(Change::default())
            .map_err(|e| e.to_string())?;
        Ok(log)
    }

    /// Applies `change` and makes it durable before returning.
    fn commit_now(&self, change: Change) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(write_err)?;
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

    /// [`RaftLog::commit_now`] on the blocking pool.
    async fn commit(&self, change: Change) -> Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit_now(change))
            .await
            .map_err(write_err)?
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
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOG).map_err(read_err)?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
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
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for RaftLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.meta("last_purged")?;
        let last = {
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

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        let change = Change {
            meta: vec![("committed", Self::encode(&committed)?)],
            ..Change::default()
        };
        self.commit(change).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        Ok(self.meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut change = Change::default();
        for entry in entries {
            change
                .puts
                .push((entry.log_id.index, Self::encode(&entry)?));
        }
        // Durable first; only then is openraft told the entries are flushed.
        let done = self.commit(change).await;
        callback.log_io_completed(
            done.as_ref()
                .copied()
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        done
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let change = Change {
            remove: Some((Bound::Included(log_id.index), Bound::Unbounded)),
            ..Change::default()
        };
        self.commit(change).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
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
            let machine =
                LedgerMachine::open(Arc::new(ledger), me, Pending::default()).map_err(write_err)?;
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
