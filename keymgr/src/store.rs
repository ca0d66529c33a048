//! The key store on disk, and the only module that knows it is redb. One file, `keys.redb`, in the
//! store's directory, with one table, `keys/v1`, and one-byte prefixes so that every operation (the
//! changed key, its audit event, the sequence number) is one atomic write transaction:
//!
//! | key | value |
//! |---|---|
//! | `m` ‖ `format` / `kdf` / `verifier` | format marker; KEK derivation parameters (JSON); a constant wrapped under the KEK, to detect a wrong one; `usage-cursor`: through which ledger index the usage index is complete (u64 BE) |
//! | `k` ‖ name | the key record (JSON): versions, states, wrapped material |
//! | `u` ‖ name ‖ 0x00 ‖ version (u32 BE) ‖ from (u64 BE) | key-usage index: the records (locators, one per line) that used that version, among those indexed in one pass starting at position `from` |
//! | `a` ‖ seq (u64 BE) | an audit event (JSON) |
//!
//! Durability: [`Store::commit`] returns once the write is on stable storage (redb's commit ends with
//! `fdatasync`, in two phases). The hot path may instead [`Store::apply`] (a commit held in memory) and
//! later [`Store::sync`]: concurrent syncs share one durable commit, so many requests that each made a
//! new data-subject key pay for one sync between them, not one each. A durable commit makes every
//! earlier in-memory commit durable with it (redb's `Durability::None` contract); a crash before it
//! loses them, which is why nothing may be acknowledged that depends on them until `sync` returned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use redb::{ReadableDatabase as _, ReadableTable as _};

use crate::Error;
use crate::audit::AuditEvent;
use crate::engine::{OpenError, prefix_end};
use crate::record::KeyRecord;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("keys/v1");
const FORMAT: &[u8] = b"ledgergate-keystore/2";
/// The database file inside the store's directory.
const DB_FILE: &str = "keys.redb";
/// What the sled store of earlier versions left in the directory.
const SLED_FILES: [&str; 2] = ["conf", "db"];

fn storage(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(why) => {
            Error::StoreCorrupt(format!("the storage engine found damaged data: {why}"))
        }
        other => Error::Storage(other.to_string()),
    }
}

fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn usage_prefix(name: &str, version: u32) -> Vec<u8> {
    let mut k = prefixed(b'u', name.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// A stored key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// The open store.
pub(crate) struct Store {
    path: PathBuf,
    db: redb::Database,
    /// Commits applied so far, and how many of them a finished durable commit covers. Numbered in
    /// commit order: the number is taken under `ordered`, held from the start of the transaction to
    /// after its number, so a durable commit numbered n covers exactly the commits numbered up to n.
    /// (Numbered after the lock is released, a durable commit could take its number after a later
    /// in-memory commit's and seem to cover it.)
    applied: AtomicU64,
    durable: AtomicU64,
    ordered: Mutex<()>,
    /// One durable commit at a time; a caller that waited here usually finds its writes covered.
    flushing: Mutex<()>,
}

/// Writes applied together by [`Store::commit`].
#[derive(Default)]
pub(crate) struct Batch(Vec<(Vec<u8>, Vec<u8>)>);

impl Batch {
    pub(crate) fn put_meta(&mut self, name: &str, value: &[u8]) {
        self.0
            .push((prefixed(b'm', name.as_bytes()), value.to_vec()));
    }

    pub(crate) fn put_key(&mut self, record: &KeyRecord) -> Result<(), Error> {
        let json = serde_json::to_vec(record).map_err(|e| Error::Storage(e.to_string()))?;
        self.0.push((prefixed(b'k', record.name.as_bytes()), json));
        Ok(())
    }

    pub(crate) fn put_audit(&mut self, event: &AuditEvent) -> Result<(), Error> {
        let json = serde_json::to_vec(event).map_err(|e| Error::Storage(e.to_string()))?;
        self.0
            .push((prefixed(b'a', &event.seq.to_be_bytes()), json));
        Ok(())
    }

    pub(crate) fn set_usage_cursor(&mut self, cursor: u64) {
        self.put_meta("usage-cursor", &cursor.to_be_bytes());
    }

    /// One key per key version and indexing pass, not one per record: a key used by every record
    /// would otherwise add a key to every submission. Keyed by where the pass started, so a pass
    /// repeated after a crash overwrites its own group.
    pub(crate) fn put_usage_group(
        &mut self,
        name: &str,
        version: u32,
        from: u64,
        locators: &[&str],
    ) {
        let mut k = usage_prefix(name, version);
        k.extend_from_slice(&from.to_be_bytes());
        self.0.push((k, locators.join("\n").into_bytes()));
    }
}

impl Store {
    /// Opens the store in the directory `path`; `create` makes a new one and refuses an existing one.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Store, Error> {
        if path.exists() && !path.is_dir() {
            return Err(Error::StoreCorrupt(format!(
                "{} is a file, not a directory",
                path.display()
            )));
        }
        let file = path.join(DB_FILE);
        let old = SLED_FILES.iter().all(|f| path.join(f).exists());
        match (create, file.exists() || old) {
            (true, true) => return Err(Error::StoreExists(path.to_owned())),
            (false, false) => return Err(Error::StoreNotFound(path.to_owned())),
            _ => {}
        }
        if old {
            return Err(Error::StoreCorrupt(format!(
                "{} holds a key store in the sled format of earlier versions, which could lose \
                 acknowledged changes on a power cut; this version does not read it (docs/keys.md, \
                 Storage)",
                path.display()
            )));
        }
        let (db, _) = crate::engine::open_file(path, DB_FILE, create).map_err(|e| match e {
            OpenError::Locked => Error::StoreLocked(path.to_owned()),
            OpenError::NotADatabase { .. } => Error::StoreCorrupt(e.to_string()),
            OpenError::Damaged => Error::StoreCorrupt(format!(
                "the storage engine could not read {}",
                path.display()
            )),
            OpenError::Engine(e) => storage(e),
            other => Error::Storage(other.to_string()),
        })?;
        let store = Store {
            path: path.to_owned(),
            db,
            applied: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            ordered: Mutex::new(()),
            flushing: Mutex::new(()),
        };
        match store.meta("format")? {
            Some(f) if f == FORMAT => {}
            Some(_) => return Err(Error::StoreCorrupt("unsupported key store format".into())),
            None if create => {}
            None => {
                return Err(Error::StoreCorrupt(
                    "no key store format marker (another database, or damaged files)".into(),
                ));
            }
        }
        Ok(store)
    }

    /// A batch that marks a new store with the format.
    pub(crate) fn format_batch() -> Batch {
        let mut b = Batch::default();
        b.put_meta("format", FORMAT);
        b
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// A write transaction; `durable` ones end with `fdatasync`, in two phases (see docs/ledger.md).
    fn begin(&self, durable: bool) -> Result<redb::WriteTransaction, Error> {
        let mut txn = self.db.begin_write().map_err(storage)?;
        let durability = if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(durability)
            .map_err(|e| Error::Storage(e.to_string()))?;
        txn.set_two_phase_commit(true);
        Ok(txn)
    }

    /// Applies a batch atomically and makes it durable.
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), Error> {
        self.write(batch, true)
    }

    /// Applies a batch atomically; it is visible at once and durable after the next [`Store::sync`].
    pub(crate) fn apply(&self, batch: Batch) -> Result<(), Error> {
        self.write(batch, false)
    }

    fn write(&self, batch: Batch, durable: bool) -> Result<(), Error> {
        // redb runs one write transaction at a time anyway: this lock costs no concurrency.
        let _ordered = self.ordered.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.begin(durable)?;
        {
            let mut table = txn.open_table(TABLE).map_err(storage)?;
            for (k, v) in &batch.0 {
                table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        // Counted once committed, still in commit order (see `ordered`).
        let n = self.applied.fetch_add(1, Ordering::AcqRel) + 1;
        if durable {
            self.durable.fetch_max(n, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Writes new key records, each unless one of that name exists, in one in-memory commit (visible
    /// at once, durable after the next [`Store::sync`]); says for each whether it was written. This is
    /// how the hot path makes data-subject keys: one commit per round, however many keys.
    pub(crate) fn put_new_keys(&self, records: &[(&str, &[u8])]) -> Result<Vec<bool>, Error> {
        let _ordered = self.ordered.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.begin(false)?;
        let mut written = Vec::with_capacity(records.len());
        {
            let mut table = txn.open_table(TABLE).map_err(storage)?;
            for (name, json) in records {
                let k = prefixed(b'k', name.as_bytes());
                let exists = table.get(k.as_slice()).map_err(storage)?.is_some();
                if !exists {
                    table.insert(k.as_slice(), *json).map_err(storage)?;
                }
                written.push(!exists);
            }
        }
        txn.commit().map_err(storage)?;
        self.applied.fetch_add(1, Ordering::AcqRel);
        Ok(written)
    }

    /// Makes every commit applied before this call durable, sharing one durable commit with
    /// concurrent callers.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        let target = self.applied.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        // Whoever held the lock may have synced our commits already.
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        // An empty durable commit: redb writes out every in-memory commit before it.
        self.write(Batch::default(), true)
    }

    /// Runs `f` on the table as of the last commit (`None`: the store has never been written).
    fn read<R>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static [u8], &'static [u8]>) -> Result<R, Error>,
        empty: R,
    ) -> Result<R, Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        match txn.open_table(TABLE) {
            Ok(table) => f(&table),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(empty),
            Err(e) => Err(storage(e)),
        }
    }

    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.read(
            |t| Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec())),
            None,
        )
    }

    /// The keys and values that start with `prefix`, in key order (`last_only`: the last one).
    fn scan_prefix_of(&self, prefix: &[u8], last_only: bool) -> Result<Vec<Pair>, Error> {
        let end = prefix_end(prefix);
        self.read(
            |table| {
                let range = match &end {
                    Some(end) => table.range::<&[u8]>(prefix..end.as_slice()),
                    None => table.range::<&[u8]>(prefix..),
                };
                let pair = |r: Result<_, redb::StorageError>| {
                    let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
                        r.map_err(storage)?;
                    Ok((k.value().to_vec(), v.value().to_vec()))
                };
                let mut range = range.map_err(storage)?;
                if last_only {
                    range.next_back().map(pair).into_iter().collect()
                } else {
                    range.map(pair).collect()
                }
            },
            Vec::new(),
        )
    }

    /// Every key and value that starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Pair>, Error> {
        self.scan_prefix_of(prefix, false)
    }

    pub(crate) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.get(&prefixed(b'm', name.as_bytes()))
    }

    pub(crate) fn key(&self, name: &str) -> Result<Option<KeyRecord>, Error> {
        match self.get(&prefixed(b'k', name.as_bytes()))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error::StoreCorrupt(format!("key `{name}` record: {e}"))),
        }
    }

    pub(crate) fn keys(&self) -> Result<Vec<KeyRecord>, Error> {
        self.scan_json(b'k', "key record")
    }

    /// Every value under a one-byte prefix, decoded from JSON; `what` names them in errors.
    fn scan_json<T: serde::de::DeserializeOwned>(
        &self,
        prefix: u8,
        what: &str,
    ) -> Result<Vec<T>, Error> {
        self.scan_prefix(&[prefix])?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v).map_err(|e| Error::StoreCorrupt(format!("{what}: {e}")))
            })
            .collect()
    }

    /// Through which index the usage index is complete, as the last [`Batch::set_usage_cursor`] said.
    pub(crate) fn usage_cursor(&self) -> Result<u64, Error> {
        Ok(self
            .meta("usage-cursor")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_be_bytes))
    }

    /// The locators recorded for a key version, in the order they were indexed, each once.
    pub(crate) fn usage(&self, name: &str, version: u32) -> Result<Vec<String>, Error> {
        let prefix = usage_prefix(name, version);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (_, v) in self.scan_prefix(&prefix)? {
            for locator in String::from_utf8_lossy(&v).split('\n') {
                if !locator.is_empty() && seen.insert(locator.to_owned()) {
                    out.push(locator.to_owned());
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn audit(&self) -> Result<Vec<AuditEvent>, Error> {
        self.scan_json(b'a', "audit event")
    }

    pub(crate) fn last_audit_seq(&self) -> Result<u64, Error> {
        match self.scan_prefix_of(b"a", true)?.pop() {
            None => Ok(0),
            Some((k, _)) => Ok(k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)),
        }
    }
}
