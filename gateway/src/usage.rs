//! The key-usage index (`keymgr affected`) follows the ledger instead of being written on the hot
//! path. Every entry names the key versions it used (`key_refs`), so the ledger is the truth and the
//! index is derived from it: the indexer reads the entries past keymgr's usage cursor and records them
//! with the new cursor in one durable key-store write. A crash loses nothing: the next pass starts from
//! the cursor again (recording a use twice is harmless).
//!
//! It runs at start, every second, before an officer's `affected`, and at shutdown, so an officer
//! always sees every record acknowledged before the question.

use std::sync::{Arc, Mutex, PoisonError};

use keymgr::KeyManager;
use serde::Deserialize;

use crate::ledger::Ledger;
use crate::pipeline::PipelineError;

/// Entries read per key-store write.
const CHUNK: u64 = 4096;

/// What the indexer reads of an entry.
#[derive(Deserialize)]
struct Refs {
    #[serde(default)]
    key_refs: Vec<String>,
}

/// The indexer.
#[derive(Debug)]
pub struct UsageIndex {
    keys: Arc<KeyManager>,
    ledger: Arc<Ledger>,
    /// One pass at a time: two would index the same entries for nothing.
    pass: Mutex<()>,
}

/// `name@version` → (name, version).
fn parse_ref(r: &str) -> Option<(String, u32)> {
    let (name, version) = r.rsplit_once('@')?;
    Some((name.to_owned(), version.parse().ok()?))
}

impl UsageIndex {
    /// An indexer from `ledger` into `keys`.
    pub fn new(keys: Arc<KeyManager>, ledger: Arc<Ledger>) -> UsageIndex {
        UsageIndex {
            keys,
            ledger,
            pass: Mutex::new(()),
        }
    }

    /// Indexes every entry past the cursor; returns the new cursor (the ledger size it reached).
    pub fn catch_up(&self) -> Result<u64, PipelineError> {
        let _one = self.pass.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cursor = self.keys.usage_cursor()?;
        let size = self.ledger.size();
        while cursor < size {
            let end = size.min(cursor + CHUNK);
            let mut uses = Vec::new();
            for (index, bytes) in self.ledger.entries(cursor, end)? {
                // An entry that is not ours (or names no keys) used none.
                let Ok(refs) = serde_json::from_slice::<Refs>(&bytes) else {
                    continue;
                };
                let refs: Vec<(String, u32)> =
                    refs.key_refs.iter().filter_map(|r| parse_ref(r)).collect();
                if !refs.is_empty() {
                    uses.push((refs, format!("ledger:{index}")));
                }
            }
            self.keys.record_usage_through(&uses, cursor, end)?;
            cursor = end;
        }
        Ok(cursor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ledger::{Ed25519NoteSigner, LedgerConfig};
    use keymgr::{KekSource, Purpose, Secret};

    #[test]
    fn the_index_follows_the_ledger_and_resumes_from_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(
            KeyManager::init(
                &dir.path().join("keys"),
                &KekSource::Passphrase(Secret::new(b"a long test passphrase".to_vec())),
                1_800_000_000,
                "t",
            )
            .unwrap(),
        );
        keys.create(
            "pseudonym",
            Purpose::Pseudonym,
            None,
            None,
            1_800_000_000,
            "t",
        )
        .unwrap();
        let signer = Arc::new(Ed25519NoteSigner::from_seed("t/log", &[1; 32]).unwrap());
        let ledger = Arc::new(
            Ledger::open(LedgerConfig::new(dir.path().join("l"), "t/log"), signer).unwrap(),
        );
        let index = UsageIndex::new(Arc::clone(&keys), Arc::clone(&ledger));
        let entry = |refs: &str| format!(r#"{{"key_refs":[{refs}]}}"#).into_bytes();
        ledger
            .append_blocking(vec![
                entry(r#""pseudonym@1""#),
                b"not json".to_vec(),
                entry(""),
            ])
            .unwrap();
        assert_eq!(index.catch_up().unwrap(), 3);
        ledger
            .append_blocking(vec![entry(r#""pseudonym@1","x@bad""#)])
            .unwrap();
        assert_eq!(index.catch_up().unwrap(), 4);
        assert_eq!(index.catch_up().unwrap(), 4);
        assert_eq!(
            keys.affected("pseudonym", 1).unwrap(),
            ["ledger:0", "ledger:3"]
        );
    }
}
