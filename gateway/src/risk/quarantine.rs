//! The quarantine list: subjects refused on every route (`403 quarantined`) until an officer
//! releases them. Kept in `DATA/risk/quarantine.json`, replaced whole and durably on each change
//! (written to a new file, synced, renamed over the old one, the directory synced), so a change an
//! officer was told about survives a crash and a restart; held in memory for the per-request check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

/// Most subjects the list holds (subjects are the policy's, so this only bounds a mistake).
const MAX_QUARANTINED: usize = 10_000;

/// A quarantined subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The policy subject.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// Who: an officer, or `gateway` for an automatic quarantine.
    pub by: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// Why the list could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuarantineError {
    /// The file could not be read, written or synced.
    #[error("quarantine list {path}: {why}")]
    Storage {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The list is full.
    #[error("the quarantine list holds {MAX_QUARANTINED} subjects already")]
    Full,
}

/// The list as the file holds it (a JSON array of [`Quarantined`]), by subject; a file naming one
/// subject twice, or more than the list may hold, is refused rather than half-read.
pub fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Quarantined>, String> {
    let list: Vec<Quarantined> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if list.len() > MAX_QUARANTINED {
        return Err(format!("more than {MAX_QUARANTINED} subjects"));
    }
    let mut subjects = BTreeMap::new();
    for q in list {
        if let Some(twice) = subjects.insert(q.subject.clone(), q) {
            return Err(format!("subject `{}` listed twice", twice.subject));
        }
    }
    Ok(subjects)
}

/// The list, with where it is kept (none: in memory only, on a node without a data directory).
#[derive(Debug)]
pub struct Quarantine {
    file: Option<PathBuf>,
    subjects: RwLock<BTreeMap<String, Quarantined>>,
}

fn storage(path: &Path, why: impl std::fmt::Display) -> QuarantineError {
    QuarantineError::Storage {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

impl Quarantine {
    /// An empty list kept in memory only.
    pub fn in_memory() -> Quarantine {
        Quarantine {
            file: None,
            subjects: RwLock::new(BTreeMap::new()),
        }
    }

    /// The list kept under `dir` (created if missing), as it was left.
    pub fn open(dir: &Path) -> Result<Quarantine, QuarantineError> {
        let file = dir.join("quarantine.json");
        if !dir.exists() {
            keymgr::durable::create_private_dir(dir).map_err(|e| storage(dir, e))?;
        }
        let subjects = match std::fs::read(&file) {
            Ok(bytes) => parse(&bytes).map_err(|e| storage(&file, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(storage(&file, e)),
        };
        Ok(Quarantine {
            file: Some(file),
            subjects: RwLock::new(subjects),
        })
    }

    /// Whether `subject` is quarantined.
    pub fn contains(&self, subject: &str) -> bool {
        self.subjects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(subject)
    }

    /// Every quarantined subject, by name.
    pub fn list(&self) -> Vec<Quarantined> {
        self.subjects
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Quarantines `subject`; durable when it returns; false if it already was (nothing changes).
    pub fn add(&self, subject: &str, reason: &str, by: &str) -> Result<bool, QuarantineError> {
        let mut subjects = self
            .subjects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if subjects.contains_key(subject) {
            return Ok(false);
        }
        if subjects.len() >= MAX_QUARANTINED {
            return Err(QuarantineError::Full);
        }
        let mut next = subjects.clone();
        next.insert(
            subject.to_owned(),
            Quarantined {
                subject: subject.to_owned(),
                reason: reason.to_owned(),
                by: by.to_owned(),
                since: keymgr::rfc3339(crate::keys::unix_now()),
            },
        );
        self.save(&next)?;
        *subjects = next;
        Ok(true)
    }

    /// Releases `subject`; durable when it returns; false if it was not quarantined.
    pub fn remove(&self, subject: &str) -> Result<bool, QuarantineError> {
        let mut subjects = self
            .subjects
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !subjects.contains_key(subject) {
            return Ok(false);
        }
        let mut next = subjects.clone();
        next.remove(subject);
        self.save(&next)?;
        *subjects = next;
        Ok(true)
    }

    /// Replaces the file with `subjects`: a new file, synced, renamed over the old, the directory
    /// synced. A crash leaves the old list or the new one.
    fn save(&self, subjects: &BTreeMap<String, Quarantined>) -> Result<(), QuarantineError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let list: Vec<&Quarantined> = subjects.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| storage(file, e))?;
        let tmp = file.with_extension("json.new");
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage(&tmp, e)),
        }
        keymgr::durable::create_file(&tmp, &bytes, 0o600).map_err(|e| storage(&tmp, e))?;
        std::fs::rename(&tmp, file).map_err(|e| storage(file, e))?;
        let dir = file.parent().unwrap_or_else(|| Path::new("."));
        keymgr::durable::sync_dir(dir).map_err(|e| storage(dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reopen_and_changes_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("risk");
        let q = Quarantine::open(&path).unwrap();
        assert!(q.add("bank-a", "burst", "officer").unwrap());
        assert!(!q.add("bank-a", "again", "officer").unwrap());
        assert!(q.add("bank-b", "burst", "gateway").unwrap());
        assert!(q.remove("bank-b").unwrap());
        assert!(!q.remove("bank-b").unwrap());
        drop(q);
        let q = Quarantine::open(&path).unwrap();
        assert!(q.contains("bank-a") && !q.contains("bank-b"));
        assert_eq!(q.list()[0].reason, "burst");
        assert!(!path.join("quarantine.json.new").exists());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("quarantine.json"), b"{not json").unwrap();
        assert!(Quarantine::open(dir.path()).is_err());
    }
}
