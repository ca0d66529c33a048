//! Rewriting the whole store into a fresh file, for a change of KEK. redb is copy-on-write: after an
//! ordinary commit that re-wraps every key, the blobs wrapped under the old KEK stay in pages the
//! database freed but has not overwritten, so whoever has the file and the old passphrase could still
//! open them. A new file holds only the live data; it replaces the old one by a rename.
//!
//! Crash safety: the new file is complete and durable (redb's durable commit ends with `fdatasync`)
//! before the rename, and the directory is synced after it. A crash before the rename leaves the old
//! store in force and a stray new file, which the next open removes; after it, the new store.

use std::path::PathBuf;

use redb::{ReadableDatabase as _, ReadableTable as _};

use super::{Batch, DB_FILE, Error, SUBJECTS, Store, TABLE, storage};

/// The new file while it is written.
pub(super) const REWRITE_FILE: &str = "keys.redb.rewrite";

impl Store {
    /// Applies `batch` to a copy of the whole store in a new file, makes it durable, and puts it in
    /// place of the current file.
    pub(crate) fn rewrite(&mut self, batch: Batch) -> Result<(), Error> {
        let fresh_path: PathBuf = self.path.join(REWRITE_FILE);
        remove_stray(&fresh_path)?;
        let (fresh, _) = crate::engine::open_file(&self.path, REWRITE_FILE, true)
            .map_err(|e| Error::Storage(format!("creating {REWRITE_FILE}: {e}")))?;
        let _ordered = self
            .ordered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut txn = fresh.begin_write().map_err(storage)?;
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| Error::Storage(e.to_string()))?;
        txn.set_two_phase_commit(true);
        {
            let old = self.db.begin_read().map_err(storage)?;
            let mut table = txn.open_table(TABLE).map_err(storage)?;
            match old.open_table(TABLE) {
                Ok(from) => {
                    for pair in from.iter().map_err(storage)? {
                        let (k, v) = pair.map_err(storage)?;
                        table.insert(k.value(), v.value()).map_err(storage)?;
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(storage(e)),
            }
            for k in &batch.removes {
                table.remove(k.as_slice()).map_err(storage)?;
            }
            for (k, v) in &batch.puts {
                table.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
            }
            let mut subjects = txn.open_table(SUBJECTS).map_err(storage)?;
            match old.open_table(SUBJECTS) {
                Ok(from) => {
                    for pair in from.iter().map_err(storage)? {
                        let (k, v) = pair.map_err(storage)?;
                        subjects.insert(k.value(), v.value()).map_err(storage)?;
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(storage(e)),
            }
            for h in &batch.subject_removes {
                subjects.remove(h).map_err(storage)?;
            }
            for (h, v) in &batch.subject_puts {
                subjects.insert(h, v).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        let durable = |e: crate::durable::DurableError| Error::Storage(e.to_string());
        std::fs::rename(&fresh_path, self.path.join(DB_FILE))
            .map_err(|e| Error::Storage(format!("replacing {DB_FILE}: {e}")))?;
        crate::durable::sync_dir(&self.path).map_err(durable)?;
        // The handle on the new file (now named keys.redb) replaces the old one, whose file is gone.
        self.db = fresh;
        Ok(())
    }
}

/// Removes a new file left by a rewrite that stopped before its rename (the old file is in force).
pub(super) fn remove_stray(path: &std::path::Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Storage(format!("removing {}: {e}", path.display()))),
    }
}
