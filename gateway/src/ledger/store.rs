//! The ledger's storage, and the only module that knows the storage engine is redb: one place to change
//! should it ever have to.
//!
//! Layout: one file, `ledger.redb`, in the store's directory, holding one table, `ledger/v1`, with
//! one-byte key prefixes (one table, so that a whole group commit is a single write transaction):
//!
//! | key                                  | value                                  |
//! |--------------------------------------|----------------------------------------|
//! | `b` ‖ first index (u64 BE)           | bundle of entries (see `bundle`)       |
//! | `n` ‖ level (u8) ‖ index (u64 BE)    | hash of a perfect subtree, stored levels only |
//! | `c` ‖ size (u64 BE)                  | signed checkpoint note (UTF-8)         |
//! | `t` ‖ size (u64 BE)                  | when the checkpoint at that size was signed (i64 BE Unix seconds) |
//! | `k` ‖ vkey text                      | a key that signed checkpoints: its history (JSON, see `signing`), or empty when none was given |
//! | `m` ‖ name                           | metadata: `format`, `origin`, `size`; `raft` (the consortium's applied state, see `consortium::state`) |
//! | `x` ‖ caller's key                   | an attachment (see `attachments`): never read by proofs or `verify` |
//!
//! Durability: [`Store::commit`] returns only after redb's commit has `fdatasync`ed the file, in two
//! phases (data, then the header that points at it; see docs/ledger.md for why not one), and the file
//! and its directory were synced when the store was created. Nothing is acknowledged on the strength
//! of the page cache: the power-loss tests run the node on a file system that forgets everything not
//! synced.
//!
//! Big-endian indices make the key order the tree order, so the verifier reads everything in
//! sequential scans. Keeping each leaf hash beside its entry lets the verifier name the exact entry that
//! was changed, and proofs read leaf hashes without rehashing entries.
//!
//! Entries are stored in bundles (one key per run of up to 256 entries) and interior nodes only at
//! every third level ([`stores_level`]): the cost of a B-tree write is per key far more than per byte.
//! The levels in between are recomputed on read from at most four hashes, which keeps an inclusion
//! proof at a million entries to a few dozen reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keymgr::engine::{OpenError, open_file_with, prefix_end};
use redb::ReadableDatabase as _;

mod entries;

pub(crate) use entries::{Entries, StoredEntry, Value};
use entries::{Scan, StoredBundle, Table};

use super::bundle::{Bundle, encode_bundle, split};
use super::error::LedgerError;
use super::hash::Hash;
use super::proof::NodeSource;
use super::signing::CheckpointKey;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ledger/v1");
const FORMAT: &[u8] = b"ledgergate-ledger/2";
/// The database file inside the store's directory.
pub(crate) const DB_FILE: &str = "ledger.redb";
/// What the sled store of earlier versions left in the directory.
const SLED_FILES: [&str; 2] = ["conf", "db"];

const BUNDLE: u8 = b'b';
const NODE: u8 = b'n';
const CHECKPOINT: u8 = b'c';
const KEY: u8 = b'k';
const SIGNED_AT: u8 = b't';
const META: u8 = b'm';
const ATTACHMENT: u8 = b'x';

/// redb's page cache for a single pass over the store (see `keymgr::engine::open_file_with`): on a
/// node-written ledger 2 MiB verified at 267–304 MB/s, 16 MiB at 210–275, redb's default at 117–268.
const SCAN_CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Interior levels are stored when they are a multiple of this.
const NODE_STRIDE: u8 = 3;

/// Whether the nodes of `level` are kept in the store; the others are recomputed when read.
pub(crate) fn stores_level(level: u8) -> bool {
    level > 0 && level.is_multiple_of(NODE_STRIDE)
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(META);
    k.extend_from_slice(name.as_bytes());
    k
}

fn index_key(prefix: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = NODE;
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(bytes).ok().map(u64::from_be_bytes)
}

fn storage(e: impl Into<redb::Error>) -> LedgerError {
    match e.into() {
        redb::Error::Corrupted(why) => {
            LedgerError::Corrupt(format!("storage engine found damaged data: {why}"))
        }
        other => LedgerError::Storage(Box::new(other)),
    }
}

/// The open store.
pub(crate) struct Store {
    path: PathBuf,
    db: redb::Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A group of writes applied atomically by [`Store::commit`].
#[derive(Default)]
pub(crate) struct Batch {
    inner: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Batch {
    fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.inner.push((key.into(), value.into()));
    }

    /// Stores consecutive entries, starting at index `first`, as one or more bundles.
    pub(crate) fn put_entries(&mut self, first: u64, records: &[(Hash, &[u8])]) {
        let mut at = first;
        for run in split(records) {
            self.insert(index_key(BUNDLE, at), encode_bundle(run));
            at += run.len() as u64;
        }
    }

    pub(crate) fn put_node(&mut self, level: u8, index: u64, hash: &Hash) {
        self.insert(node_key(level, index), hash.as_bytes().as_slice());
    }

    pub(crate) fn put_checkpoint(&mut self, size: u64, note: &str) {
        self.insert(index_key(CHECKPOINT, size), note.as_bytes());
    }

    /// Records a key that signs checkpoints, with its history when there is one.
    pub(crate) fn put_key(&mut self, vkey: &str, history: Option<&CheckpointKey>) {
        let mut k = vec![KEY];
        k.extend_from_slice(vkey.as_bytes());
        // Serialising a struct of strings and integers cannot fail.
        let value = history
            .and_then(|h| serde_json::to_vec(h).ok())
            .unwrap_or_default();
        self.insert(k, value);
    }

    /// Records when the checkpoint at `size` was signed.
    pub(crate) fn put_signed_at(&mut self, size: u64, at: i64) {
        self.insert(index_key(SIGNED_AT, size), at.to_be_bytes());
    }

    pub(crate) fn set_size(&mut self, size: u64) {
        self.insert(meta_key("size"), size.to_be_bytes());
    }

    pub(crate) fn set_origin(&mut self, origin: &str) {
        self.insert(meta_key("origin"), origin.as_bytes());
    }

    /// Records a caller's state value (see [`super::Ledger::append_recording`]).
    pub(crate) fn put_recorded(&mut self, name: &str, value: &[u8]) {
        self.insert(meta_key(name), value);
    }

    pub(crate) fn put_attachment(&mut self, key: &[u8], value: &[u8]) {
        self.insert([&[ATTACHMENT], key].concat(), value);
    }

    fn set_format(&mut self) {
        self.insert(meta_key("format"), FORMAT);
    }
}

impl Store {
    /// Opens the store in the directory `path`, creating an empty one when `create` is set and nothing
    /// is there. Never panics on a damaged or foreign directory: the engine's own panics become errors.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Store, LedgerError> {
        Store::open_with(path, create, None)
    }

    /// Opens an existing store for one pass over it (the offline verifier), with a small page cache.
    pub(crate) fn open_for_scan(path: &Path) -> Result<Store, LedgerError> {
        Store::open_with(path, false, Some(SCAN_CACHE_BYTES))
    }

    fn open_with(path: &Path, create: bool, cache: Option<usize>) -> Result<Store, LedgerError> {
        if path.exists() && !path.is_dir() {
            return Err(LedgerError::Foreign {
                path: path.to_owned(),
                why: "it is a file, not a directory".into(),
            });
        }
        // Only a missing or empty directory may become a new ledger. A directory that holds anything, even
        // a database that reads back empty because its files were damaged, must already be a ledger:
        // silently starting a new log over a damaged one would lose it.
        let fresh = match std::fs::read_dir(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => {
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    why: format!("cannot read it: {e}"),
                });
            }
            Ok(mut listing) => listing.next().is_none(),
        };
        if fresh && !create {
            return Err(LedgerError::NotFound {
                path: path.to_owned(),
            });
        }
        let file = path.join(DB_FILE);
        if !fresh && !file.exists() {
            let why = if SLED_FILES.iter().all(|f| path.join(f).exists()) {
                "it holds a ledger in the sled format of earlier versions, which could lose \
                 acknowledged records on a power cut; this version does not read it (docs/ledger.md, \
                 Storage engine)"
            } else {
                "no database files in it"
            };
            return Err(LedgerError::Foreign {
                path: path.to_owned(),
                why: why.into(),
            });
        }
        let (db, new) = open_file_with(path, DB_FILE, fresh, cache).map_err(|e| match e {
            OpenError::Locked => LedgerError::Locked {
                path: path.to_owned(),
            },
            OpenError::NotADatabase { .. } => LedgerError::Foreign {
                path: path.to_owned(),
                why: e.to_string(),
            },
            OpenError::Damaged => LedgerError::Corrupt(format!(
                "the storage engine could not read {} (damaged files)",
                path.display()
            )),
            OpenError::Engine(e) => storage(e),
            other => LedgerError::Storage(Box::new(other)),
        })?;
        // A new database (or one whose creation stopped before its first commit) gets its marker.
        let fresh = fresh || new;
        let store = Store {
            path: path.to_owned(),
            db,
        };
        match store.get(&meta_key("format"))? {
            Some(f) if f.as_ref() == FORMAT => {}
            Some(f) => {
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    why: format!(
                        "unsupported format {:?}",
                        String::from_utf8_lossy(f.as_ref())
                    ),
                });
            }
            None if fresh => {
                let mut batch = Batch::default();
                batch.set_format();
                batch.set_size(0);
                store.commit(batch)?;
            }
            None => {
                let why = "no ledger format marker (another database, or damaged files)".into();
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    why,
                });
            }
        }
        Ok(store)
    }

    /// Applies a batch atomically and makes it durable: when this returns, the file holds it on
    /// stable storage (redb's commit ends with `fdatasync`).
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), LedgerError> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| LedgerError::Storage(Box::new(e)))?;
        // Two phases: the data is synced before the header that makes it current is written and
        // synced. With one phase, a crash mid-commit leaves redb to tell a torn header by checksum,
        // which its own docs say a workload an attacker drives can defeat (docs/ledger.md).
        txn.set_two_phase_commit(true);
        {
            let mut table = txn.open_table(TABLE).map_err(storage)?;
            for (k, v) in &batch.inner {
                table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// The table as of the last commit, for reading.
    fn table(&self) -> Result<Option<Table>, LedgerError> {
        let txn = self.db.begin_read().map_err(storage)?;
        match txn.open_table(TABLE) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(storage(e)),
        }
    }

    /// One read transaction for many reads: they all see the same commit, and pay for one
    /// transaction between them (a proof makes dozens of node reads).
    pub(crate) fn snapshot(&self) -> Result<Snapshot, LedgerError> {
        Ok(Snapshot {
            table: self.table()?.map(Arc::new),
            last_bundle: std::cell::RefCell::new(None),
        })
    }

    fn get(&self, key: &[u8]) -> Result<Option<Value>, LedgerError> {
        self.snapshot()?.get(key)
    }

    /// Every key and value in `[from, to)` (`to` of `None`: to the end), in key order.
    fn scan(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Scan>, LedgerError> {
        self.snapshot()?.scan(from, to)
    }

    /// Every key and value that starts with `prefix`, in key order.
    fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(Vec<u8>, Value), LedgerError>> + use<> {
        let end = prefix_end(prefix);
        let (scan, failed) = match self.scan(prefix, end.as_deref()) {
            Ok(scan) => (scan, None),
            Err(e) => (None, Some(Err(e))),
        };
        failed.into_iter().chain(scan.into_iter().flatten())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn attachment(&self, key: &[u8]) -> Result<Option<Value>, LedgerError> {
        self.get(&[&[ATTACHMENT], key].concat())
    }

    /// The checkpoint note stored for the tree of `size` entries, if one was published at that size.
    pub(crate) fn checkpoint_note(&self, size: u64) -> Result<Option<String>, LedgerError> {
        self.get(&index_key(CHECKPOINT, size))?
            .map(|v| {
                decode_checkpoint(&index_key(CHECKPOINT, size), v.as_ref()).map(|(_, note)| note)
            })
            .transpose()
    }

    pub(crate) fn size(&self) -> Result<u64, LedgerError> {
        match self.get(&meta_key("size"))? {
            Some(v) => {
                be_u64(v.as_ref()).ok_or_else(|| LedgerError::Corrupt("malformed tree size".into()))
            }
            None => Err(LedgerError::Corrupt("tree size is missing".into())),
        }
    }

    /// A caller's state value recorded under `name`.
    pub(crate) fn recorded(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.get(&meta_key(name))?.map(|v| v.as_ref().to_vec()))
    }

    pub(crate) fn origin(&self) -> Result<Option<String>, LedgerError> {
        self.get(&meta_key("origin"))?
            .map(|v| {
                String::from_utf8(v.as_ref().to_vec())
                    .map_err(|_| LedgerError::Corrupt("origin is not UTF-8".into()))
            })
            .transpose()
    }

    pub(crate) fn entry(&self, index: u64) -> Result<Option<StoredEntry>, LedgerError> {
        self.snapshot()?.entry(index)
    }

    /// The latest stored checkpoint note with its size.
    pub(crate) fn last_checkpoint(&self) -> Result<Option<(u64, String)>, LedgerError> {
        let last = self.scan_prefix(&[CHECKPOINT]).next_back().transpose()?;
        last.map(|(k, v)| decode_checkpoint(&k, v.as_ref()))
            .transpose()
    }

    /// Every stored checkpoint in size order.
    pub(crate) fn checkpoints(
        &self,
    ) -> impl Iterator<Item = Result<(u64, String), LedgerError>> + use<> {
        self.scan_prefix(&[CHECKPOINT])
            .map(|r| r.and_then(|(k, v)| decode_checkpoint(&k, v.as_ref())))
    }

    /// Every stored entry from `start` on, in index order.
    pub(crate) fn entries_from(&self, start: u64) -> Result<Entries, LedgerError> {
        let snapshot = self.snapshot()?;
        let from = match snapshot.bundle_at(start)? {
            Some((k, _)) => k,
            None => index_key(BUNDLE, start).to_vec(),
        };
        let end = prefix_end(&[BUNDLE]);
        let scan = match snapshot.scan(&from, end.as_deref())? {
            Some(scan) => scan,
            // No table yet: an empty scan of an empty range.
            None => return Err(LedgerError::Corrupt("the ledger table is missing".into())),
        };
        Ok(Entries {
            scan,
            current: None,
            next: 0,
            start,
            failed: false,
        })
    }

    /// The stored bundles that start at an index in `[lo, hi)` (`hi` of `None`: no upper bound), in
    /// index order, each with its first index.
    pub(crate) fn bundles_between(
        &self,
        lo: u64,
        hi: Option<u64>,
    ) -> impl Iterator<Item = Result<(u64, Bundle<Value>), LedgerError>> + use<> {
        let to = match hi {
            Some(hi) => Some(index_key(BUNDLE, hi).to_vec()),
            None => prefix_end(&[BUNDLE]),
        };
        let (scan, failed) = match self.scan(&index_key(BUNDLE, lo), to.as_deref()) {
            Ok(scan) => (scan, None),
            Err(e) => (None, Some(Err(e))),
        };
        failed
            .into_iter()
            .chain(scan.into_iter().flatten().map(|item| {
                let (k, v) = item?;
                let b = StoredBundle::decode(&k, v, true)?;
                Ok((b.first, b.bundle))
            }))
    }

    /// Every stored node of one level in index order.
    pub(crate) fn nodes(
        &self,
        level: u8,
    ) -> impl Iterator<Item = Result<(u64, Hash), LedgerError>> + use<> {
        self.scan_prefix(&[NODE, level]).map(move |r| {
            let (k, v) = r?;
            let index = k.get(2..).and_then(be_u64);
            match (index, Hash::from_slice(v.as_ref())) {
                (Some(i), Some(h)) => Ok((i, h)),
                _ => Err(LedgerError::Corrupt(format!(
                    "malformed node record at level {level}"
                ))),
            }
        })
    }

    /// The verifier keys (C2SP vkey text) recorded as having signed checkpoints, each with its
    /// history if one was recorded.
    pub(crate) fn keys(&self) -> Result<Vec<(String, Option<CheckpointKey>)>, LedgerError> {
        self.scan_prefix(&[KEY])
            .map(|r| {
                let (k, v) = r?;
                let vkey = String::from_utf8(k.get(1..).unwrap_or_default().to_vec())
                    .map_err(|_| LedgerError::Corrupt("recorded key is not UTF-8".into()))?;
                let history = match v.as_ref() {
                    [] => None,
                    json => Some(serde_json::from_slice(json).map_err(|e| {
                        LedgerError::Corrupt(format!("history of checkpoint key {vkey}: {e}"))
                    })?),
                };
                Ok((vkey, history))
            })
            .collect()
    }

    /// When the checkpoint of the tree of `size` entries was signed, if that was recorded.
    pub(crate) fn signed_at_of(&self, size: u64) -> Result<Option<i64>, LedgerError> {
        Ok(self
            .get(&index_key(SIGNED_AT, size))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(i64::from_be_bytes))
    }

    /// When each checkpoint was signed, in size order (checkpoints of stores written before this was
    /// recorded have none).
    pub(crate) fn signed_at(
        &self,
    ) -> impl Iterator<Item = Result<(u64, i64), LedgerError>> + use<> {
        self.scan_prefix(&[SIGNED_AT]).map(|r| {
            let (k, v) = r?;
            let size = k.get(1..).and_then(be_u64);
            let at = <[u8; 8]>::try_from(v.as_ref()).ok().map(i64::from_be_bytes);
            size.zip(at)
                .ok_or_else(|| LedgerError::Corrupt("malformed checkpoint time".into()))
        })
    }
}

fn decode_checkpoint(key: &[u8], value: &[u8]) -> Result<(u64, String), LedgerError> {
    let size = key
        .get(1..)
        .and_then(be_u64)
        .ok_or_else(|| LedgerError::Corrupt("malformed checkpoint key".into()))?;
    let note = String::from_utf8(value.to_vec())
        .map_err(|_| LedgerError::Corrupt(format!("checkpoint at size {size} is not UTF-8")))?;
    Ok((size, note))
}

/// The store as of one commit (see [`Store::snapshot`]).
pub(crate) struct Snapshot {
    table: Option<Arc<Table>>,
    /// The bundle read last: a proof's leaf reads (the subtrees of the levels that are not stored)
    /// are neighbours, nearly always in one bundle, and finding a bundle is a reverse range scan.
    last_bundle: std::cell::RefCell<Option<StoredBundle>>,
}

impl Snapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Value>, LedgerError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        Ok(table
            .get(key)
            .map_err(storage)?
            .map(|guard| Value::held(guard, table)))
    }

    /// Every key and value in `[from, to)` (`to` of `None`: to the end), in key order.
    fn scan(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Scan>, LedgerError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let range = match to {
            Some(to) => table.range::<&[u8]>(from..to),
            None => table.range::<&[u8]>(from..),
        };
        range
            .map(|range| Some(Scan::new(range, table)))
            .map_err(storage)
    }

    /// The bundle holding `index`, if any: the last bundle starting at or before it.
    fn bundle_at(&self, index: u64) -> Result<Option<(Vec<u8>, Value)>, LedgerError> {
        let to = index
            .checked_add(1)
            .map(|next| index_key(BUNDLE, next).to_vec())
            .or_else(|| prefix_end(&[BUNDLE]));
        let Some(mut scan) = self.scan(&index_key(BUNDLE, 0), to.as_deref())? else {
            return Ok(None);
        };
        scan.next_back().transpose()
    }

    pub(crate) fn entry(&self, index: u64) -> Result<Option<StoredEntry>, LedgerError> {
        let within = |b: &StoredBundle| {
            index
                .checked_sub(b.first)
                .and_then(|j| usize::try_from(j).ok())
                .filter(|j| *j < b.bundle.len())
        };
        if let Some(b) = self.last_bundle.borrow().as_ref()
            && let Some(j) = within(b)
        {
            return b.entry(j).map(Some);
        }
        let Some((k, v)) = self.bundle_at(index)? else {
            return Ok(None);
        };
        let b = StoredBundle::decode(&k, v, false)?;
        let found = within(&b).map(|j| b.entry(j)).transpose();
        *self.last_bundle.borrow_mut() = Some(b);
        found
    }

    fn stored_node(&self, level: u8, index: u64) -> Result<Option<Hash>, LedgerError> {
        match self.get(&node_key(level, index))? {
            None => Ok(None),
            Some(v) => Hash::from_slice(v.as_ref()).map(Some).ok_or_else(|| {
                LedgerError::Corrupt(format!("node ({level}, {index}) is not a hash"))
            }),
        }
    }
}

impl NodeSource for Snapshot {
    type Error = LedgerError;

    fn node(&self, level: u8, index: u64) -> Result<Hash, LedgerError> {
        let found = if level == 0 {
            self.entry(index)?.map(|e| e.leaf)
        } else if stores_level(level) {
            self.stored_node(level, index)?
        } else {
            let left = self.node(level - 1, index * 2)?;
            let right = self.node(level - 1, index * 2 + 1)?;
            Some(super::hash::node_hash(&left, &right))
        };
        found.ok_or_else(|| {
            LedgerError::Corrupt(format!(
                "tree node (level {level}, index {index}) is missing"
            ))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A value read from the store stays what it was while later commits rewrite and free what it
    /// was read from, for as long as it is held: it keeps its read transaction alive, so redb does
    /// not free its page under it. Before, a value outlived its transaction, and redb's debug build
    /// panicked in the commit that freed its page (`!read_page_ref_counts.contains_key(&page)`):
    /// the member power-cut test found it, once in several runs, in the ledger writer.
    #[test]
    fn a_value_read_keeps_its_page_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), true).unwrap();
        let write = |fill: u8| {
            let mut batch = Batch::default();
            // Several pages' worth, so that the rewrite frees whole pages.
            batch.put_attachment(b"a", &vec![fill; 64 * 1024]);
            store.commit(batch).unwrap();
        };
        write(1);
        // From `get` (its snapshot is gone when it returns) and from a scan (dropped at once).
        let got = store.attachment(b"a").unwrap().unwrap();
        let scanned = store.scan_prefix(&[ATTACHMENT]).next().unwrap().unwrap().1;
        for fill in 2..8 {
            write(fill);
        }
        assert!(got.as_ref().iter().all(|b| *b == 1));
        assert!(scanned.as_ref().iter().all(|b| *b == 1));
        drop((got, scanned));
        write(9);
        assert_eq!(store.attachment(b"a").unwrap().unwrap().as_ref()[0], 9);
    }
}
