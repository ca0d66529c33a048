//! The ledger's storage, and the only module that knows the storage engine is sled: one place to change
//! should it ever have to.
//!
//! Layout: one sled tree, `ledger/v1`, with one-byte key prefixes (one tree, so that a whole group
//! commit is a single atomic `apply_batch`):
//!
//! | key                                  | value                                  |
//! |--------------------------------------|----------------------------------------|
//! | `b` ‖ first index (u64 BE)           | bundle of entries (see `bundle`)       |
//! | `n` ‖ level (u8) ‖ index (u64 BE)    | hash of a perfect subtree, stored levels only |
//! | `c` ‖ size (u64 BE)                  | signed checkpoint note (UTF-8)         |
//! | `k` ‖ vkey text                      | empty: a key that signed checkpoints   |
//! | `m` ‖ name                           | metadata: `format`, `origin`, `size`   |
//! | `x` ‖ caller's key                   | an attachment (see `attachments`): never read by proofs or `verify` |
//!
//! Big-endian indices make sled's key order the tree order, so the verifier reads everything in
//! sequential scans. Keeping each leaf hash beside its entry lets the verifier name the exact entry that
//! was changed, and proofs read leaf hashes without rehashing entries.
//!
//! sled's cost is per key far more than per byte, so entries are stored in bundles (one key per run of
//! up to 256 entries) and interior nodes only at every third level ([`stores_level`]): one node key per
//! entry halved append throughput, one per seven entries costs little. The levels in between are
//! recomputed on read from at most four hashes, which keeps an inclusion proof at a million entries to
//! a few dozen reads.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use super::bundle::{Bundle, encode_bundle, split};
use super::error::LedgerError;
use super::hash::{HASH_LEN, Hash};
use super::proof::NodeSource;

const TREE_NAME: &[u8] = b"ledger/v1";
const FORMAT: &[u8] = b"ledgergate-ledger/1";

/// How long `open` waits for a held lock before reporting `Locked`. sled releases its lock from I/O
/// threads a moment after the last handle is dropped, so an immediate reopen in the same process (a
/// restart, a test) would otherwise fail; a real second holder still gets a clear error quickly.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

const BUNDLE: u8 = b'b';
const NODE: u8 = b'n';
const CHECKPOINT: u8 = b'c';
const KEY: u8 = b'k';
const META: u8 = b'm';
const ATTACHMENT: u8 = b'x';

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

fn storage(e: sled::Error) -> LedgerError {
    match e {
        sled::Error::Corruption { at, .. } => {
            LedgerError::Corrupt(format!("storage engine found damaged data at {at:?}"))
        }
        other => LedgerError::Storage(Box::new(other)),
    }
}

/// One stored entry, borrowed from its bundle's stored value.
pub(crate) struct StoredEntry {
    pub(crate) index: u64,
    pub(crate) leaf: Hash,
    value: sled::IVec,
    start: usize,
    end: usize,
}

impl StoredEntry {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.value
            .get(self.start + HASH_LEN..self.end)
            .unwrap_or_default()
    }
}

/// A stored bundle: where it starts in the log, and its parsed layout.
struct StoredBundle {
    first: u64,
    bundle: Bundle<sled::IVec>,
}

impl StoredBundle {
    /// Decodes a bundle, checking every record's bounds (`full`) or only the header (for single reads,
    /// where each record access is bounds-checked anyway).
    fn decode(key: &[u8], value: sled::IVec, full: bool) -> Result<StoredBundle, LedgerError> {
        let first = key
            .get(1..)
            .and_then(be_u64)
            .ok_or_else(|| LedgerError::Corrupt("malformed bundle key".into()))?;
        let parsed = if full {
            Bundle::parse(value)
        } else {
            Bundle::parse_header(value)
        };
        let bundle = parsed.ok_or_else(|| {
            LedgerError::Corrupt(format!("the bundle of entries from {first} is malformed"))
        })?;
        Ok(StoredBundle { first, bundle })
    }

    fn entry(&self, j: usize) -> Result<StoredEntry, LedgerError> {
        let damaged = || {
            LedgerError::Corrupt(format!(
                "the bundle of entries from {} is malformed",
                self.first
            ))
        };
        let (start, end) = self.bundle.record_range(j).ok_or_else(damaged)?;
        let (leaf, _) = self.bundle.record(j).ok_or_else(damaged)?;
        let value = self.bundle.clone().into_inner();
        Ok(StoredEntry {
            index: self.first + j as u64,
            leaf,
            value,
            start,
            end,
        })
    }
}

/// Entries in index order from `start`, bundle by bundle.
pub(crate) struct Entries {
    scan: sled::Iter,
    current: Option<StoredBundle>,
    next: usize,
    start: u64,
    failed: bool,
}

impl Iterator for Entries {
    type Item = Result<StoredEntry, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if let Some(b) = &self.current
                && self.next < b.bundle.len()
            {
                let j = self.next;
                self.next += 1;
                if b.first + (j as u64) < self.start {
                    continue;
                }
                let item = b.entry(j);
                self.failed = item.is_err();
                return Some(item);
            }
            let decoded = match self.scan.next()? {
                Ok((k, v)) => StoredBundle::decode(&k, v, true),
                Err(e) => Err(storage(e)),
            };
            match decoded {
                Ok(b) => {
                    self.current = Some(b);
                    self.next = 0;
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The open store.
pub(crate) struct Store {
    path: PathBuf,
    tree: sled::Tree,
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
    inner: sled::Batch,
}

impl Batch {
    /// Stores consecutive entries, starting at index `first`, as one or more bundles.
    pub(crate) fn put_entries(&mut self, first: u64, records: &[(Hash, &[u8])]) {
        let mut at = first;
        for run in split(records) {
            self.inner
                .insert(&index_key(BUNDLE, at), encode_bundle(run));
            at += run.len() as u64;
        }
    }

    pub(crate) fn put_node(&mut self, level: u8, index: u64, hash: &Hash) {
        self.inner.insert(&node_key(level, index), hash.as_bytes());
    }

    pub(crate) fn put_checkpoint(&mut self, size: u64, note: &str) {
        self.inner
            .insert(&index_key(CHECKPOINT, size), note.as_bytes());
    }

    pub(crate) fn put_key(&mut self, vkey: &str) {
        let mut k = vec![KEY];
        k.extend_from_slice(vkey.as_bytes());
        self.inner.insert(k, &[]);
    }

    pub(crate) fn set_size(&mut self, size: u64) {
        self.inner.insert(meta_key("size"), &size.to_be_bytes());
    }

    pub(crate) fn set_origin(&mut self, origin: &str) {
        self.inner.insert(meta_key("origin"), origin.as_bytes());
    }

    pub(crate) fn put_attachment(&mut self, key: &[u8], value: &[u8]) {
        self.inner.insert([&[ATTACHMENT], key].concat(), value);
    }

    fn set_format(&mut self) {
        self.inner.insert(meta_key("format"), FORMAT);
    }
}

impl Store {
    /// Opens the store at `path`, creating an empty one when `create` is set and nothing is there.
    /// Never panics on a damaged or foreign directory: the engine's own panics become errors.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Store, LedgerError> {
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
        if !fresh && !path.join("conf").exists() && !path.join("db").exists() {
            return Err(LedgerError::Foreign {
                path: path.to_owned(),
                why: "no database files in it".into(),
            });
        }
        // No background flusher: every commit flushes itself, and a flusher thread would hold the
        // database (and its lock) for a moment after the store is dropped.
        let config = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .flush_every_ms(None);
        let try_open = || {
            catch_unwind(AssertUnwindSafe(
                || -> Result<(sled::Db, sled::Tree), sled::Error> {
                    let db = config.open()?;
                    let tree = db.open_tree(TREE_NAME)?;
                    Ok((db, tree))
                },
            ))
        };
        let mut opened = try_open();
        if matches!(&opened, Ok(Err(sled::Error::Io(e))) if is_lock_error(e))
            && Store::wait_released(path, LOCK_PATIENCE)
        {
            opened = try_open();
        }
        let (_db, tree) = match opened {
            Ok(Ok(pair)) => pair,
            Ok(Err(sled::Error::Io(e))) if is_lock_error(&e) => {
                return Err(LedgerError::Locked {
                    path: path.to_owned(),
                });
            }
            Ok(Err(sled::Error::Io(e))) => {
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    why: format!("cannot read it: {e}"),
                });
            }
            Ok(Err(e)) => return Err(storage(e)),
            Err(_) => {
                return Err(LedgerError::Corrupt(format!(
                    "the storage engine could not read {} (damaged files)",
                    path.display()
                )));
            }
        };
        // The tree keeps the database alive; the `Db` handle itself is not needed past this point.
        let store = Store {
            path: path.to_owned(),
            tree,
        };
        match store.tree.get(meta_key("format")).map_err(storage)? {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(LedgerError::Foreign {
                    path: path.to_owned(),
                    why: format!("unsupported format {:?}", String::from_utf8_lossy(&f)),
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

    /// Applies a batch atomically and makes it durable (one flush, i.e. one fsync of the log).
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), LedgerError> {
        self.tree.apply_batch(batch.inner).map_err(storage)?;
        self.tree.flush().map_err(storage)?;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn attachment(&self, key: &[u8]) -> Result<Option<sled::IVec>, LedgerError> {
        self.tree
            .get([&[ATTACHMENT], key].concat())
            .map_err(storage)
    }

    /// The checkpoint note stored for the tree of `size` entries, if one was published at that size.
    pub(crate) fn checkpoint_note(&self, size: u64) -> Result<Option<String>, LedgerError> {
        self.tree
            .get(index_key(CHECKPOINT, size))
            .map_err(storage)?
            .map(|v| decode_checkpoint(&index_key(CHECKPOINT, size), &v).map(|(_, note)| note))
            .transpose()
    }

    /// Waits until no handle of this process holds the database's lock any more. sled's I/O threads
    /// can keep the database open for a moment after the last handle is dropped; callers that reopen
    /// the store (restarts, tests, the CLI after a run) need it really released.
    pub(crate) fn wait_released(path: &Path, patience: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        let db_file = path.join("db");
        loop {
            match std::fs::File::open(&db_file).map(|f| f.try_lock()) {
                Ok(Ok(())) | Err(_) => return true, // unlocked on close of `f`; no file: nothing held
                Ok(Err(_)) if std::time::Instant::now() >= deadline => return false,
                Ok(Err(_)) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }

    pub(crate) fn size(&self) -> Result<u64, LedgerError> {
        match self.tree.get(meta_key("size")).map_err(storage)? {
            Some(v) => be_u64(&v).ok_or_else(|| LedgerError::Corrupt("malformed tree size".into())),
            None => Err(LedgerError::Corrupt("tree size is missing".into())),
        }
    }

    pub(crate) fn origin(&self) -> Result<Option<String>, LedgerError> {
        self.tree
            .get(meta_key("origin"))
            .map_err(storage)?
            .map(|v| {
                String::from_utf8(v.to_vec())
                    .map_err(|_| LedgerError::Corrupt("origin is not UTF-8".into()))
            })
            .transpose()
    }

    /// The bundle holding `index`, if any: the last bundle starting at or before it.
    fn bundle_at(&self, index: u64) -> Result<Option<(sled::IVec, sled::IVec)>, LedgerError> {
        let found = self
            .tree
            .range(index_key(BUNDLE, 0)..=index_key(BUNDLE, index))
            .next_back();
        found.transpose().map_err(storage)
    }

    pub(crate) fn entry(&self, index: u64) -> Result<Option<StoredEntry>, LedgerError> {
        let Some((k, v)) = self.bundle_at(index)? else {
            return Ok(None);
        };
        let b = StoredBundle::decode(&k, v, false)?;
        match usize::try_from(index - b.first) {
            Ok(j) if j < b.bundle.len() => b.entry(j).map(Some),
            _ => Ok(None),
        }
    }

    pub(crate) fn stored_node(&self, level: u8, index: u64) -> Result<Option<Hash>, LedgerError> {
        match self.tree.get(node_key(level, index)).map_err(storage)? {
            None => Ok(None),
            Some(v) => Hash::from_slice(&v).map(Some).ok_or_else(|| {
                LedgerError::Corrupt(format!("node ({level}, {index}) is not a hash"))
            }),
        }
    }

    /// The latest stored checkpoint note with its size.
    pub(crate) fn last_checkpoint(&self) -> Result<Option<(u64, String)>, LedgerError> {
        let last = self
            .tree
            .scan_prefix([CHECKPOINT])
            .next_back()
            .transpose()
            .map_err(storage)?;
        last.map(|(k, v)| decode_checkpoint(&k, &v)).transpose()
    }

    /// Every stored checkpoint in size order.
    pub(crate) fn checkpoints(
        &self,
    ) -> impl Iterator<Item = Result<(u64, String), LedgerError>> + '_ {
        self.tree.scan_prefix([CHECKPOINT]).map(|r| {
            r.map_err(storage)
                .and_then(|(k, v)| decode_checkpoint(&k, &v))
        })
    }

    /// Every stored entry from `start` on, in index order.
    pub(crate) fn entries_from(&self, start: u64) -> Result<Entries, LedgerError> {
        let from = match self.bundle_at(start)? {
            Some((k, _)) => k.to_vec(),
            None => index_key(BUNDLE, start).to_vec(),
        };
        let scan = self.tree.range(from..=index_key(BUNDLE, u64::MAX).to_vec());
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
    ) -> impl Iterator<Item = Result<(u64, Bundle<sled::IVec>), LedgerError>> + '_ {
        let from = index_key(BUNDLE, lo);
        let scan = match hi {
            Some(hi) => self.tree.range(from..index_key(BUNDLE, hi)),
            None => self.tree.range(from..=index_key(BUNDLE, u64::MAX)),
        };
        scan.map(|r| {
            let (k, v) = r.map_err(storage)?;
            let b = StoredBundle::decode(&k, v, true)?;
            Ok((b.first, b.bundle))
        })
    }

    /// Every stored node of one level in index order.
    pub(crate) fn nodes(
        &self,
        level: u8,
    ) -> impl Iterator<Item = Result<(u64, Hash), LedgerError>> + '_ {
        self.tree.scan_prefix([NODE, level]).map(move |r| {
            let (k, v) = r.map_err(storage)?;
            let index = k.get(2..).and_then(be_u64);
            match (index, Hash::from_slice(&v)) {
                (Some(i), Some(h)) => Ok((i, h)),
                _ => Err(LedgerError::Corrupt(format!(
                    "malformed node record at level {level}"
                ))),
            }
        })
    }

    /// The verifier keys (C2SP vkey text) recorded as having signed checkpoints.
    pub(crate) fn keys(&self) -> Result<Vec<String>, LedgerError> {
        self.tree
            .scan_prefix([KEY])
            .map(|r| {
                let (k, _) = r.map_err(storage)?;
                String::from_utf8(k.get(1..).unwrap_or_default().to_vec())
                    .map_err(|_| LedgerError::Corrupt("recorded key is not UTF-8".into()))
            })
            .collect()
    }
}

/// sled reports a held lock only as an I/O error of kind `Other` with this text.
fn is_lock_error(e: &std::io::Error) -> bool {
    e.to_string().contains("could not acquire lock")
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

impl NodeSource for Store {
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
