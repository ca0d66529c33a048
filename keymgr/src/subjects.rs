//! Data-subject keys: one per subject (the person a record is about), made on first use, so that
//! destroying it crypto-shreds everything sealed for that subject.
//!
//! They are made on the gateway's hot path, often one per record, so making one must be cheap:
//! - it is not synced on its own: the caller runs [`KeyManager::sync`] (one durable commit shared by
//!   everyone waiting) before it makes durable anything sealed under it;
//! - the keys missing in one round are written in one in-memory commit, however many there are;
//! - it has no audit event of its own: the key record says when and by whom it was made
//!   (`created_at`, `created_by`), and a trail with one event per record submitted would drown the
//!   officers' acts it exists for. Everything done *to* a subject key (shred, destroy, rotate,
//!   revoke) is audited as for any key.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use crate::Error;
use crate::cache::cache_insert;
use crate::lifecycle::Timestamp;
use crate::manager::{DEFAULT_MAX_AGE, KeyManager, PrimaryKey};
use crate::purpose::Purpose;
use crate::record::{KeyRecord, UseError};

/// The key name of a data subject's key. The subject id is personal data, so the name carries only a
/// hash of it (unkeyed: the key store itself must be protected; see docs/keys.md).
pub(crate) fn subject_key_name(subject: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"ledgergate-subject:")
        .chain_update(subject.as_bytes())
        .finalize();
    format!(
        "subject/{}",
        hex::encode(digest.get(..16).unwrap_or_default())
    )
}

/// One subject's key, or why it is not available.
type Answer = Result<Arc<PrimaryKey>, Error>;
/// The keys made (by position), and the positions whose keys already existed.
type Made = (Vec<(usize, Arc<PrimaryKey>)>, Vec<usize>);

impl KeyManager {
    /// The data key for new data of `subject`: made on first use, rotated on use once expired. A key
    /// made here is not yet durable: see [`KeyManager::subject_keys`].
    pub fn subject_key(
        &self,
        subject: &str,
        now: Timestamp,
        actor: &str,
    ) -> Result<Arc<PrimaryKey>, Error> {
        self.subject_keys(&[subject], now, actor)
            .pop()
            .unwrap_or(Err(Error::NoSuchKey(subject_key_name(subject))))
    }

    /// The data keys for new data of each of `subjects` (one answer each, in order): the missing
    /// ones are made together in one write, which is visible at once but durable only after the next
    /// [`KeyManager::sync`]: sync before making durable anything sealed under them.
    pub fn subject_keys(&self, subjects: &[&str], now: Timestamp, actor: &str) -> Vec<Answer> {
        let names: Vec<String> = subjects.iter().map(|s| subject_key_name(s)).collect();
        let mut out: Vec<Option<Answer>> = names.iter().map(|_| None).collect();
        // The hot path: keys already cached. The rest are made in one write, or looked up when they
        // exist (made earlier, or meanwhile by another caller).
        let mut missing = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match (self.cached_primary(name, now), out.get_mut(i)) {
                (Some(key), Some(slot)) => *slot = Some(Ok(key)),
                _ => missing.push(i),
            }
        }
        let existing = if missing.is_empty() {
            Vec::new()
        } else {
            match self.make_subject_keys(&names, &missing, now, actor) {
                Ok((made, existing)) => {
                    for (i, key) in made {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Some(Ok(key));
                        }
                    }
                    existing
                }
                Err(e) => {
                    let why = e.to_string();
                    for i in missing {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Some(Err(Error::Storage(why.clone())));
                        }
                    }
                    Vec::new()
                }
            }
        };
        for i in existing {
            let Some(name) = names.get(i) else { continue };
            let found = match self.primary(name, now) {
                // Expired, or shredded (the erasure covers what was sealed before it; new data gets
                // a fresh key): one new version, however many requests found it so at once.
                Err(Error::Unusable(UseError::Expired { .. } | UseError::NoUsableVersion(_))) => {
                    self.rotate_if(name, now, actor, |r| {
                        r.destroyed() || matches!(r.usable(now), Err(UseError::Expired { .. }))
                    })
                    .and_then(|_| self.primary(name, now))
                }
                other => other,
            };
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(found);
            }
        }
        out.into_iter()
            .zip(names)
            .map(|(o, name)| o.unwrap_or(Err(Error::NoSuchKey(name))))
            .collect()
    }

    /// Makes the keys `names[i]` for each `i` in `missing` that do not exist (unflushed), and caches
    /// them; a name repeated in `names` is made once. Returns what it made,
    /// and the positions whose keys already existed.
    fn make_subject_keys(
        &self,
        names: &[String],
        missing: &[usize],
        now: Timestamp,
        actor: &str,
    ) -> Result<Made, Error> {
        // Generating, wrapping and encoding need no lock: only the writes and the cache do, so
        // concurrent rounds do not queue behind each other's cryptography.
        let mut prepared: HashMap<&str, (KeyRecord, Arc<PrimaryKey>)> = HashMap::new();
        for &i in missing {
            let Some(name) = names.get(i) else { continue };
            if prepared.contains_key(name.as_str()) {
                continue;
            }
            let (first, material) = self.new_version(name, 1, Purpose::Subject, now, actor)?;
            let record = KeyRecord::new(name, Purpose::Subject, None, DEFAULT_MAX_AGE, first);
            let expires_at = record.version(1).map_or(now, |v| record.expires_at(v));
            let key = Arc::new(PrimaryKey {
                name: name.clone(),
                version: 1,
                purpose: Purpose::Subject,
                expires_at,
                cached_until: crate::cache::cached_until(expires_at, now),
                material,
            });
            prepared.insert(name, (record, key));
        }
        let mut made: HashMap<&str, Arc<PrimaryKey>> = HashMap::new();
        {
            let _guard = self.lock();
            let records: Vec<&KeyRecord> = prepared.values().map(|(record, _)| record).collect();
            // A key that exists (made earlier, not cached) is kept; the new material is dropped.
            let written = self.store.put_new_keys(&records)?;
            let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
            for ((name, (_, key)), new) in prepared.into_iter().zip(written) {
                if new {
                    // Cached while the write lock is held: no change to this key can slip in between.
                    cache_insert(&mut cache, name, Arc::clone(&key));
                    made.insert(name, key);
                }
            }
        }
        let mut out = Vec::with_capacity(missing.len());
        let mut existing = Vec::new();
        for &i in missing {
            match names.get(i).and_then(|name| made.get(name.as_str())) {
                Some(key) => out.push((i, Arc::clone(key))),
                None => existing.push(i),
            }
        }
        Ok((out, existing))
    }

    /// The name under which `subject`'s data key is kept.
    pub fn subject_key_name(subject: &str) -> String {
        subject_key_name(subject)
    }
}
