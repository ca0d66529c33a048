//! What the ledger store hands out: stored values shared by the entries read from them, bundles
//! decoded from them, and the scan of entries in index order. redb types appear here and in
//! `store.rs` only.

use std::sync::Arc;

use super::super::bundle::Bundle;
use super::super::error::LedgerError;
use super::super::hash::{HASH_LEN, Hash};
use super::{be_u64, storage};

/// A stored value, shared by every entry read from it (a bundle is read once, not once per entry).
///
/// It keeps the read transaction it came from alive. redb's `AccessGuard` from a table's `get` or a
/// range's items holds the page, not the transaction: a value that outlived its table would hold a
/// page that a later commit frees and reuses (redb's debug build panics on it: the member
/// power-cut test found this, docs/ledger.md).
#[derive(Clone)]
pub(crate) struct Value(Arc<Held>);

/// A value's page and its transaction; the page is released first (fields drop in order).
struct Held {
    guard: Guard,
    _table: Arc<Table>,
}

impl Value {
    /// `guard`, read from `table`, keeping `table`'s transaction alive as long as it lives.
    pub(super) fn held(guard: Guard, table: &Arc<Table>) -> Value {
        Value(Arc::new(Held {
            guard,
            _table: Arc::clone(table),
        }))
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self.0.guard.value()
    }
}

type Guard = redb::AccessGuard<'static, &'static [u8]>;
pub(super) type Table = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A scan of keys in order, each value keeping the scan's transaction alive ([`Value`]).
pub(super) struct Scan {
    range: redb::Range<'static, &'static [u8], &'static [u8]>,
    table: Arc<Table>,
}

impl Scan {
    pub(super) fn new(
        range: redb::Range<'static, &'static [u8], &'static [u8]>,
        table: &Arc<Table>,
    ) -> Scan {
        Scan {
            range,
            table: Arc::clone(table),
        }
    }

    fn item(
        &self,
        item: Result<(Guard, Guard), redb::StorageError>,
    ) -> Result<(Vec<u8>, Value), LedgerError> {
        let (k, v) = item.map_err(storage)?;
        Ok((k.value().to_vec(), Value::held(v, &self.table)))
    }
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Value), LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.range.next()?;
        Some(self.item(item))
    }
}

impl DoubleEndedIterator for Scan {
    fn next_back(&mut self) -> Option<Self::Item> {
        let item = self.range.next_back()?;
        Some(self.item(item))
    }
}

/// One stored entry, borrowed from its bundle's stored value.
pub(crate) struct StoredEntry {
    pub(crate) index: u64,
    pub(crate) leaf: Hash,
    value: Value,
    start: usize,
    end: usize,
}

impl StoredEntry {
    pub(crate) fn bytes(&self) -> &[u8] {
        self.value
            .as_ref()
            .get(self.start + HASH_LEN..self.end)
            .unwrap_or_default()
    }
}

/// A stored bundle: where it starts in the log, and its parsed layout.
pub(super) struct StoredBundle {
    pub(super) first: u64,
    pub(super) bundle: Bundle<Value>,
}

impl StoredBundle {
    /// Decodes a bundle, checking every record's bounds (`full`) or only the header (for single reads,
    /// where each record access is bounds-checked anyway).
    pub(super) fn decode(
        key: &[u8],
        value: Value,
        full: bool,
    ) -> Result<StoredBundle, LedgerError> {
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

    pub(super) fn entry(&self, j: usize) -> Result<StoredEntry, LedgerError> {
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
    pub(super) scan: Scan,
    pub(super) current: Option<StoredBundle>,
    pub(super) next: usize,
    pub(super) start: u64,
    pub(super) failed: bool,
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
            let decoded = self
                .scan
                .next()?
                .and_then(|(k, v)| StoredBundle::decode(&k, v, true));
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
