//! The key store on disk, and the only module that knows it is sled. One tree, `keys/v1`, with
//! one-byte prefixes so that every operation (the changed key, its audit event, the sequence number) is
//! one atomic `apply_batch`:
//!
//! | key | value |
//! |---|---|
//! | `m` ‖ `format` / `kdf` / `verifier` | format marker; KEK derivation parameters (JSON); a constant wrapped under the KEK, to detect a wrong one; `usage-cursor`: through which ledger index the usage index is complete (u64 BE) |
//! | `k` ‖ name | the key record (JSON): versions, states, wrapped material |
//! | `u` ‖ name ‖ 0x00 ‖ version (u32 BE) ‖ from (u64 BE) | key-usage index: the records (locators, one per line) that used that version, among those indexed in one pass starting at position `from` |
//! | `a` ‖ seq (u64 BE) | an audit event (JSON) |
//!
//! Durability: [`Store::commit`] returns once the write is on disk. The hot path may instead
//! [`Store::apply`] and later [`Store::sync`]: concurrent syncs share one flush (one fsync), so many
//! requests that each made a new data-subject key pay for one flush between them, not one each.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::Error;
use crate::audit::AuditEvent;
use crate::record::KeyRecord;

const TREE: &[u8] = b"keys/v1";
const FORMAT: &[u8] = b"ledgergate-keystore/1";

fn storage(e: sled::Error) -> Error {
    match e {
        sled::Error::Corruption { .. } => {
            Error::StoreCorrupt("the storage engine found damaged data".into())
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

/// The open store.
pub(crate) struct Store {
    path: PathBuf,
    tree: sled::Tree,
    /// Batches applied so far, and how many of them a finished flush covers.
    applied: AtomicU64,
    durable: AtomicU64,
    /// One flush at a time; a caller that waited here usually finds its writes already covered.
    flushing: Mutex<()>,
}

/// Writes applied together by [`Store::commit`].
#[derive(Default)]
pub(crate) struct Batch(sled::Batch);

impl Batch {
    pub(crate) fn put_meta(&mut self, name: &str, value: &[u8]) {
        self.0.insert(prefixed(b'm', name.as_bytes()), value);
    }

    pub(crate) fn put_key(&mut self, record: &KeyRecord) -> Result<(), Error> {
        let json = serde_json::to_vec(record).map_err(|e| Error::Storage(e.to_string()))?;
        self.0.insert(prefixed(b'k', record.name.as_bytes()), json);
        Ok(())
    }

    pub(crate) fn put_audit(&mut self, event: &AuditEvent) -> Result<(), Error> {
        let json = serde_json::to_vec(event).map_err(|e| Error::Storage(e.to_string()))?;
        self.0
            .insert(prefixed(b'a', &event.seq.to_be_bytes()), json);
        Ok(())
    }

    pub(crate) fn set_usage_cursor(&mut self, cursor: u64) {
        self.put_meta("usage-cursor", &cursor.to_be_bytes());
    }

    /// One key per key version and indexing pass, not one per record: sled's cost is per key, and
    /// a key used by every record would otherwise add a key to every submission. Keyed by where the
    /// pass started, so a pass repeated after a crash overwrites its own group.
    pub(crate) fn put_usage_group(
        &mut self,
        name: &str,
        version: u32,
        from: u64,
        locators: &[&str],
    ) {
        let mut k = usage_prefix(name, version);
        k.extend_from_slice(&from.to_be_bytes());
        self.0.insert(k, locators.join("\n").into_bytes());
    }
}

impl Store {
    /// Opens the store at `path`; `create` makes a new one and refuses an existing one.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Store, Error> {
        let exists = path.join("db").exists() || path.join("conf").exists();
        match (create, exists) {
            (true, true) => return Err(Error::StoreExists(path.to_owned())),
            (false, false) => return Err(Error::StoreNotFound(path.to_owned())),
            _ => {}
        }
        if path.exists() && !path.is_dir() {
            return Err(Error::StoreCorrupt(format!(
                "{} is a file, not a directory",
                path.display()
            )));
        }
        if create {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                b.mode(0o700);
            }
            b.create(path)
                .map_err(|e| Error::Storage(format!("cannot create {}: {e}", path.display())))?;
        }
        // No background flusher: every operation flushes itself.
        let config = sled::Config::new().path(path).flush_every_ms(None);
        let opened = catch_unwind(AssertUnwindSafe(|| {
            config
                .open()
                .and_then(|db| db.open_tree(TREE).map(|t| (db, t)))
        }));
        let tree = match opened {
            Ok(Ok((_db, tree))) => tree,
            Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                return Err(Error::StoreLocked(path.to_owned()));
            }
            Ok(Err(e)) => return Err(storage(e)),
            Err(_) => {
                return Err(Error::StoreCorrupt(format!(
                    "the storage engine could not read {}",
                    path.display()
                )));
            }
        };
        let store = Store {
            path: path.to_owned(),
            tree,
            applied: AtomicU64::new(0),
            durable: AtomicU64::new(0),
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

    /// Applies a batch atomically and makes it durable.
    pub(crate) fn commit(&self, batch: Batch) -> Result<(), Error> {
        self.apply(batch)?;
        self.sync()
    }

    /// Applies a batch atomically; it is visible at once and durable after the next [`Store::sync`].
    pub(crate) fn apply(&self, batch: Batch) -> Result<(), Error> {
        self.tree.apply_batch(batch.0).map_err(storage)?;
        // Counted only once applied: a flush that reads the count afterwards covers this batch.
        self.applied.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Writes a new key record alone, unless one of that name exists (then returns false): visible at
    /// once, durable after the next [`Store::sync`]. A single compare-and-swap is atomic by itself
    /// and, unlike a batch, does not make sled seal and write its log buffer (~70 µs): this is how
    /// the hot path makes data-subject keys.
    pub(crate) fn put_new_key(&self, name: &str, record_json: Vec<u8>) -> Result<bool, Error> {
        let swapped = self
            .tree
            .compare_and_swap(
                prefixed(b'k', name.as_bytes()),
                None as Option<&[u8]>,
                Some(record_json),
            )
            .map_err(storage)?;
        self.applied.fetch_add(1, Ordering::AcqRel);
        Ok(swapped.is_ok())
    }

    /// Makes every batch applied before this call durable, sharing a flush with concurrent callers.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        let target = self.applied.load(Ordering::Acquire);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _one_at_a_time = self.flushing.lock().unwrap_or_else(PoisonError::into_inner);
        // Whoever held the lock may have flushed our batches already.
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let covered = self.applied.load(Ordering::Acquire);
        self.tree.flush().map_err(storage)?;
        self.durable.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }

    pub(crate) fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .tree
            .get(prefixed(b'm', name.as_bytes()))
            .map_err(storage)?
            .map(|v| v.to_vec()))
    }

    pub(crate) fn key(&self, name: &str) -> Result<Option<KeyRecord>, Error> {
        match self
            .tree
            .get(prefixed(b'k', name.as_bytes()))
            .map_err(storage)?
        {
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
        self.tree
            .scan_prefix([prefix])
            .map(|r| {
                let (_, v) = r.map_err(storage)?;
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
        for r in self.tree.scan_prefix(&prefix) {
            let (_, v) = r.map_err(storage)?;
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
        match self
            .tree
            .scan_prefix([b'a'])
            .next_back()
            .transpose()
            .map_err(storage)?
        {
            None => Ok(0),
            Some((k, _)) => Ok(k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)),
        }
    }
}
