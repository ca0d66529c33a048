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
//! | `p` ‖ identity (32 bytes) | a revoked peer identity (JSON, `peers.rs`) |
//!
//! and a second table, `subjects/v1`, for data-subject keys in their compact form (`compact`): the
//! 16-byte hash in the name → created-at ‖ wrapped material. A subject key is in exactly one of the two
//! tables: [`Batch::put_key`] writes the compact form whenever the record fits it, and removes the
//! other.
//!
//! Durability: [`Store::commit`] returns once the write is on stable storage (redb's commit ends with
//! `fdatasync`, in two phases). The hot path may instead [`Store::apply`] (a commit held in memory) and
//! later [`Store::sync`]: concurrent syncs share one durable commit, so many requests that each made a
//! new data-subject key pay for one sync between them, not one each. A durable commit makes every
//! earlier in-memory commit durable with it (redb's `Durability::None` contract); a crash before it
//! loses them, which is why nothing may be acknowledged that depends on them until `sync` returned.

mod rewrite;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use redb::{ReadableDatabase as _, ReadableTable as _};

use crate::Error;
use crate::audit::AuditEvent;
use crate::compact;
use crate::engine::{OpenError, prefix_end};
use crate::record::KeyRecord;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("keys/v1");
const SUBJECTS: redb::TableDefinition<&compact::Hash, &compact::Compact> =
    redb::TableDefinition::new("subjects/v1");
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
pub(crate) struct Batch {
    puts: Vec<(Vec<u8>, Vec<u8>)>,
    removes: Vec<Vec<u8>>,
    subject_puts: Vec<(compact::Hash, compact::Compact)>,
    subject_removes: Vec<compact::Hash>,
}

impl Batch {
    pub(crate) fn put_meta(&mut self, name: &str, value: &[u8]) {
        self.puts
            .push((prefixed(b'm', name.as_bytes()), value.to_vec()));
    }

    /// Stores a key record: in the compact subject table when it fits, as JSON otherwise; either way
    /// the copy in the other table, if any, is removed.
    pub(crate) fn put_key(&mut self, record: &KeyRecord) -> Result<(), Error> {
        let json_key = prefixed(b'k', record.name.as_bytes());
        if let Some((hash, value)) = compact::encode(record) {
            self.subject_puts.push((hash, value));
            self.removes.push(json_key);
            return Ok(());
        }
        let json = serde_json::to_vec(record).map_err(|e| Error::Storage(e.to_string()))?;
        self.puts.push((json_key, json));
        if let Some(hash) = compact::hash_of(&record.name) {
            self.subject_removes.push(hash);
        }
        Ok(())
    }

    pub(crate) fn put_audit(&mut self, event: &AuditEvent) -> Result<(), Error> {
        let json = serde_json::to_vec(event).map_err(|e| Error::Storage(e.to_string()))?;
        self.puts
            .push((prefixed(b'a', &event.seq.to_be_bytes()), json));
        Ok(())
    }

    pub(crate) fn put_revoked_peer(
        &mut self,
        identity: &[u8; 32],
        peer: &crate::peers::RevokedPeer,
    ) -> Result<(), Error> {
        let json = serde_json::to_vec(peer).map_err(|e| Error::Storage(e.to_string()))?;
        self.puts.push((prefixed(b'p', identity), json));
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
        self.puts.push((k, locators.join("\n").into_bytes()));
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
        // A rewrite (a change of KEK) that stopped before its rename: the old file is in force.
        rewrite::remove_stray(&path.join(rewrite::REWRITE_FILE))?;
        let (mut db, _) = crate::engine::open_file(path, DB_FILE, create).map_err(|e| match e {
            OpenError::Locked => Error::StoreLocked(path.to_owned()),
            OpenError::NotADatabase { .. } => Error::StoreCorrupt(e.to_string()),
            OpenError::Damaged => Error::StoreCorrupt(format!(
                "the storage engine could not read {}",
                path.display()
            )),
            OpenError::Engine(e) => storage(e),
            other => Error::Storage(other.to_string()),
        })?;
        // Copy-on-write leaves pages freed by earlier commits in the file (a quarter of it after
        // many rounds of new subject keys); giving them back at every open keeps the store near its
        // live size (docs/keys.md, "Keys at rest"). Compaction is made of ordinary durable commits.
        while db
            .compact()
            .map_err(|e| Error::Storage(format!("compacting the store: {e}")))?
        {}
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
            for k in &batch.removes {
                table.remove(k.as_slice()).map_err(storage)?;
            }
            for (k, v) in &batch.puts {
                table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
            }
        }
        if !batch.subject_puts.is_empty() || !batch.subject_removes.is_empty() {
            let mut subjects = txn.open_table(SUBJECTS).map_err(storage)?;
            for h in &batch.subject_removes {
                subjects.remove(h).map_err(storage)?;
            }
            for (h, v) in &batch.subject_puts {
                subjects.insert(h, v).map_err(storage)?;
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
    /// how the hot path makes data-subject keys: one commit per round, however many keys, each in the
    /// compact form when it fits.
    pub(crate) fn put_new_keys(&self, records: &[&KeyRecord]) -> Result<Vec<bool>, Error> {
        let _ordered = self.ordered.lock().unwrap_or_else(PoisonError::into_inner);
        let txn = self.begin(false)?;
        let mut written = Vec::with_capacity(records.len());
        {
            let mut table = txn.open_table(TABLE).map_err(storage)?;
            let mut subjects = txn.open_table(SUBJECTS).map_err(storage)?;
            for record in records {
                let k = prefixed(b'k', record.name.as_bytes());
                let hash = compact::hash_of(&record.name);
                let exists = table.get(k.as_slice()).map_err(storage)?.is_some()
                    || match &hash {
                        Some(h) => subjects.get(h).map_err(storage)?.is_some(),
                        None => false,
                    };
                if !exists {
                    match compact::encode(record) {
                        Some((h, v)) => {
                            subjects.insert(&h, &v).map_err(storage)?;
                        }
                        None => {
                            let json = serde_json::to_vec(record)
                                .map_err(|e| Error::Storage(e.to_string()))?;
                            table
                                .insert(k.as_slice(), json.as_slice())
                                .map_err(storage)?;
                        }
                    }
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
        if let Some(v) = self.get(&prefixed(b'k', name.as_bytes()))? {
            return serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| Error::StoreCorrupt(format!("key `{name}` record: {e}")));
        }
        let Some(hash) = compact::hash_of(name) else {
            return Ok(None);
        };
        let txn = self.db.begin_read().map_err(storage)?;
        let table = match txn.open_table(SUBJECTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(storage(e)),
        };
        match table.get(&hash).map_err(storage)? {
            Some(v) => compact::decode(&hash, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Managed keys (every key but data-subject keys) in name order, after `after`, at most `limit`.
    pub(crate) fn managed_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error> {
        let subjects_from = prefixed(b'k', compact::SUBJECT_PREFIX.as_bytes());
        let subjects_end = prefix_end(&subjects_from).unwrap_or_default();
        let start = match after {
            Some(a) => {
                let mut k = prefixed(b'k', a.as_bytes());
                k.push(0);
                k
            }
            None => b"k".to_vec(),
        };
        let end = prefix_end(b"k").unwrap_or_default();
        let mut out = Vec::new();
        // Two ranges around the subject keys, which can be millions.
        for (from, to) in [
            (start.clone(), subjects_from.clone()),
            (start.max(subjects_end), end),
        ] {
            if from >= to || out.len() >= limit {
                continue;
            }
            for (_, v) in self.scan_range(&from, &to, limit - out.len())? {
                out.push(
                    serde_json::from_slice(&v)
                        .map_err(|e| Error::StoreCorrupt(format!("key record: {e}")))?,
                );
            }
        }
        Ok(out)
    }

    /// Data-subject keys in name order, after `after`, at most `limit`: the compact ones and those kept
    /// as JSON, merged.
    pub(crate) fn subject_keys(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error> {
        let prefix = prefixed(b'k', compact::SUBJECT_PREFIX.as_bytes());
        let from = match after {
            Some(a) => {
                let mut k = prefixed(b'k', a.as_bytes());
                k.push(0);
                k.max(prefix.clone())
            }
            None => prefix.clone(),
        };
        let to = prefix_end(&prefix).unwrap_or_default();
        let mut out: Vec<KeyRecord> = self
            .scan_range(&from, &to, limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::StoreCorrupt(format!("key record: {e}")))
            })
            .collect::<Result<_, _>>()?;
        // A cursor that is not a subject key name sorts after every hash.
        let after_hash = after.map(|a| compact::hash_of(a).unwrap_or([0xff; 16]));
        let txn = self.db.begin_read().map_err(storage)?;
        match txn.open_table(SUBJECTS) {
            Ok(table) => {
                let range = match &after_hash {
                    Some(h) => table.range::<&compact::Hash>((
                        std::ops::Bound::Excluded(h),
                        std::ops::Bound::Unbounded,
                    )),
                    None => table.range::<&compact::Hash>(..),
                }
                .map_err(storage)?;
                for item in range.take(limit) {
                    let (k, v) = item.map_err(storage)?;
                    out.push(compact::decode(k.value(), v.value())?);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(storage(e)),
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.truncate(limit);
        Ok(out)
    }

    /// Every key, managed and data-subject (for re-wrapping under a new KEK).
    pub(crate) fn all_keys(&self) -> Result<Vec<KeyRecord>, Error> {
        let mut all = self.managed_keys(None, usize::MAX)?;
        all.extend(self.subject_keys(None, usize::MAX)?);
        Ok(all)
    }

    /// Up to `limit` keys and values in `[from, to)`, in key order.
    fn scan_range(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Pair>, Error> {
        self.read(
            |table| {
                table
                    .range::<&[u8]>(from..to)
                    .map_err(storage)?
                    .take(limit)
                    .map(|r| {
                        let (k, v) = r.map_err(storage)?;
                        Ok((k.value().to_vec(), v.value().to_vec()))
                    })
                    .collect()
            },
            Vec::new(),
        )
    }

    /// Audit events after sequence number `after`, at most `limit`, oldest first.
    pub(crate) fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        let from = prefixed(b'a', &after.saturating_add(1).to_be_bytes());
        let to = prefix_end(b"a").unwrap_or_default();
        self.scan_range(&from, &to, limit)?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::StoreCorrupt(format!("audit event: {e}")))
            })
            .collect()
    }

    /// A revoked peer identity's record, if it is revoked.
    pub(crate) fn revoked_peer(
        &self,
        identity: &[u8; 32],
    ) -> Result<Option<crate::peers::RevokedPeer>, Error> {
        self.get(&prefixed(b'p', identity))?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::StoreCorrupt(format!("revoked peer: {e}")))
            })
            .transpose()
    }

    /// Every revoked peer identity, in identity order.
    pub(crate) fn revoked_peers(&self) -> Result<Vec<crate::peers::RevokedPeer>, Error> {
        self.scan_prefix(b"p")?
            .into_iter()
            .map(|(_, v)| {
                serde_json::from_slice(&v)
                    .map_err(|e| Error::StoreCorrupt(format!("revoked peer: {e}")))
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
