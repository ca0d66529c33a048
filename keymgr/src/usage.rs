//! The key-usage index: which records used which key version (`keymgr affected`). The caller (the
//! gateway) feeds it pass by pass from its log and keeps a durable cursor here, so that after a crash
//! it resumes where the index is complete.

use crate::Error;
use crate::manager::KeyManager;
use crate::store::Batch;

impl KeyManager {
    /// Feeds the usage index with the records of one indexing pass over positions `from..through` of
    /// the caller's log (`uses`: the key versions each record used, and its locator), and records that
    /// the index is now complete through `through`, in one durable write. After a crash the caller
    /// resumes from [`KeyManager::usage_cursor`]; a pass repeated from the same `from` replaces its
    /// own earlier record, so nothing is listed twice.
    pub fn record_usage_through(
        &self,
        uses: &[(Vec<(String, u32)>, String)],
        from: u64,
        through: u64,
    ) -> Result<(), Error> {
        let mut by_version: std::collections::BTreeMap<(&str, u32), Vec<&str>> =
            std::collections::BTreeMap::new();
        for (refs, locator) in uses {
            for (name, version) in refs {
                by_version
                    .entry((name.as_str(), *version))
                    .or_default()
                    .push(locator.as_str());
            }
        }
        let mut batch = Batch::default();
        for ((name, version), locators) in by_version {
            batch.put_usage_group(name, version, from, &locators);
        }
        batch.set_usage_cursor(through);
        self.store.commit(batch)
    }

    /// Through which position the usage index is complete (0 when nothing was recorded with a cursor).
    pub fn usage_cursor(&self) -> Result<u64, Error> {
        self.store.usage_cursor()
    }

    /// Everything recorded as having used `name`@`version`.
    pub fn affected(&self, name: &str, version: u32) -> Result<Vec<String>, Error> {
        let record = self.record(name)?;
        record.version(version).ok_or(Error::NoSuchVersion {
            name: name.to_owned(),
            version,
        })?;
        self.store.usage(name, version)
    }
}
