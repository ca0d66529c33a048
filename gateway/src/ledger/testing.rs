//! Tampering with a stopped ledger's files, the way an attacker with write access to the disk could:
//! for tests of what the verifier and `open` catch. Compiled only for tests (feature `testing`).

use std::path::Path;

use redb::ReadableDatabase as _;

use super::bundle::{Bundle, encode_bundle};
use super::hash::Hash;

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("ledger/v1");

/// Raw write access to a stopped store.
#[derive(Debug)]
pub struct Tamper {
    db: redb::Database,
}

fn key(prefix: u8, index: u64) -> Vec<u8> {
    [&[prefix][..], &index.to_be_bytes()].concat()
}

impl Tamper {
    /// Opens the store in the directory `path` (the node must be stopped).
    pub fn open(path: &Path) -> Tamper {
        let file = path.join(super::store::DB_FILE);
        let db =
            redb::Database::open(&file).unwrap_or_else(|e| panic!("open {}: {e}", file.display()));
        Tamper { db }
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        let txn = self.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let table = txn.open_table(TABLE).unwrap_or_else(|e| panic!("{e}"));
        let v = table.get(k).unwrap_or_else(|e| panic!("{e}"));
        v.map(|v| v.value().to_vec())
    }

    fn put(&self, k: &[u8], v: Option<&[u8]>) {
        let txn = self.db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut table = txn.open_table(TABLE).unwrap_or_else(|e| panic!("{e}"));
            match v {
                Some(v) => drop(table.insert(k, v).unwrap_or_else(|e| panic!("{e}"))),
                None => drop(table.remove(k).unwrap_or_else(|e| panic!("{e}"))),
            }
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
    }

    /// The bundle holding `index`: its first index and its records (leaf hash, entry).
    fn bundle_of(&self, index: u64) -> (u64, Vec<(Hash, Vec<u8>)>) {
        let txn = self.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let table = txn.open_table(TABLE).unwrap_or_else(|e| panic!("{e}"));
        let (k, v) = table
            .range::<&[u8]>(key(b'b', 0).as_slice()..=key(b'b', index).as_slice())
            .unwrap_or_else(|e| panic!("{e}"))
            .next_back()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("no bundle holds entry {index}"));
        let first = u64::from_be_bytes(k.value()[1..9].try_into().unwrap_or_default());
        let v = v.value().to_vec();
        let bundle =
            Bundle::parse(v.as_slice()).unwrap_or_else(|| panic!("bundle at {first} is malformed"));
        let records = (0..bundle.len())
            .filter_map(|j| bundle.record(j).map(|(h, e)| (h, e.to_vec())))
            .collect();
        (first, records)
    }

    fn put_bundle(&self, first: u64, records: &[(Hash, Vec<u8>)]) {
        if records.is_empty() {
            self.put(&key(b'b', first), None);
            return;
        }
        let borrowed: Vec<(Hash, &[u8])> =
            records.iter().map(|(h, e)| (*h, e.as_slice())).collect();
        self.put(&key(b'b', first), Some(&encode_bundle(&borrowed)));
    }

    /// Changes entry `index`'s stored bytes (its recorded leaf hash stays).
    pub fn edit_entry(&self, index: u64, f: impl FnOnce(&mut Vec<u8>)) {
        let (first, mut records) = self.bundle_of(index);
        f(&mut records[(index - first) as usize].1);
        self.put_bundle(first, &records);
    }

    /// Replaces entry `index` with `bytes` and a matching leaf hash.
    pub fn replace_entry(&self, index: u64, bytes: &[u8]) {
        let (first, mut records) = self.bundle_of(index);
        records[(index - first) as usize] = (super::hash::leaf_hash(bytes), bytes.to_vec());
        self.put_bundle(first, &records);
    }

    /// Deletes entry `index`; later entries of its bundle move down one place.
    pub fn delete_entry(&self, index: u64) {
        let (first, mut records) = self.bundle_of(index);
        records.remove((index - first) as usize);
        self.put_bundle(first, &records);
    }

    /// Swaps two entries, each with its leaf hash.
    pub fn swap_entries(&self, a: u64, b: u64) {
        let (fa, ra) = self.bundle_of(a);
        let ea = ra[(a - fa) as usize].clone();
        let (fb, rb) = self.bundle_of(b);
        let eb = rb[(b - fb) as usize].clone();
        let (fa, mut ra) = self.bundle_of(a);
        ra[(a - fa) as usize] = eb;
        self.put_bundle(fa, &ra);
        let (fb, mut rb) = self.bundle_of(b);
        rb[(b - fb) as usize] = ea;
        self.put_bundle(fb, &rb);
    }

    /// Appends a bundle of one entry at `index`, past whatever the tree says its size is.
    pub fn add_entry(&self, index: u64, bytes: &[u8]) {
        self.put_bundle(index, &[(super::hash::leaf_hash(bytes), bytes.to_vec())]);
    }

    /// The stored checkpoint note at `size`.
    pub fn checkpoint(&self, size: u64) -> String {
        let v = self
            .get(&key(b'c', size))
            .unwrap_or_else(|| panic!("no checkpoint at {size}"));
        String::from_utf8_lossy(&v).into_owned()
    }

    /// Overwrites the stored checkpoint note at `size`.
    pub fn set_checkpoint(&self, size: u64, note: &str) {
        self.put(&key(b'c', size), Some(note.as_bytes()));
    }

    /// Overwrites a stored tree node.
    pub fn set_node(&self, level: u8, index: u64, hash: &Hash) {
        let k = [&[b'n', level][..], &index.to_be_bytes()].concat();
        self.put(&k, Some(hash.as_bytes()));
    }
}
