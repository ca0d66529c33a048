//! The key manager: the store, the KEK, and the in-memory cache of primary keys for the hot path. Every
//! change is one atomic write (the key record and its audit event together); time is passed in.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::Error;
use crate::audit::AuditEvent;
use crate::cache::cache_insert;
use crate::kek::{KdfParams, KekSource, StoreKek, derive};
use crate::lifecycle::{RevocationReason, Timestamp};
use crate::purpose::Purpose;
use crate::record::{KeyRecord, VersionRecord};
use crate::secret::Secret;
use crate::store::{Batch, Store};

/// What the KEK verifier wraps: unwrapping it proves the KEK is the store's.
const VERIFIER_PLAINTEXT: &[u8] = b"ledgergate-kek-verifier";
const VERIFIER_AAD: &[u8] = b"ledgergate-kek-verifier/1";
/// Maximum age of a key whose creator gave none: no key is valid forever.
pub const DEFAULT_MAX_AGE: u64 = 365 * 24 * 3600;
/// Most items one page of a listing (keys, records, audit events) holds.
pub const MAX_PAGE: usize = 10_000;

/// Which keys a listing shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Data-subject keys instead of managed keys: a node can hold millions of them.
    pub subjects: bool,
    /// Only keys of this purpose.
    pub purpose: Option<Purpose>,
}

/// What a shred did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shredded {
    /// The subject's key name.
    pub key: String,
    /// The versions destroyed now (empty: there was nothing left to destroy).
    pub destroyed: Vec<u32>,
    /// What that means, in one sentence for the officer.
    pub message: String,
}

/// The AAD that binds wrapped material to its key: name, version and purpose.
fn aad(name: &str, version: u32, purpose: Purpose) -> Vec<u8> {
    format!("ledgergate-key/1\0{name}\0{version}\0{}", purpose.as_str()).into_bytes()
}

/// Numbers `event` as the next audit event and adds it to `batch`. The sequence lock comes back
/// held: the caller writes the batch, then stores the number through it, so numbers are dense and
/// in order.
fn next_event<'a>(
    audit_seq: &'a Mutex<u64>,
    batch: &mut Batch,
    mut event: AuditEvent,
) -> Result<(std::sync::MutexGuard<'a, u64>, u64), Error> {
    let last = audit_seq.lock().unwrap_or_else(PoisonError::into_inner);
    event.seq = *last + 1;
    batch.put_audit(&event)?;
    let seq = event.seq;
    Ok((last, seq))
}

/// Key names: lowercase letters, digits and `-_./`, starting with a letter or digit.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_./".contains(c))
}

/// The version new work uses, unwrapped and cached; material zeroized on drop.
#[derive(Debug)]
pub struct PrimaryKey {
    /// Key name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// Purpose.
    pub purpose: Purpose,
    /// When it stops being usable for new work.
    pub expires_at: Timestamp,
    /// Until when the cache may serve it without unwrapping it again: its expiry, or
    /// [`crate::CACHE_TTL`] after it was unwrapped, whichever is first.
    pub(crate) cached_until: Timestamp,
    /// The material.
    pub material: Secret,
}

/// Signs with a private key held in the PKCS#11 token (Ed25519, pure EdDSA).
#[derive(Clone)]
pub struct TokenSigner {
    token: Arc<crate::token::TokenKek>,
    id: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("id", &hex::encode(&self.id))
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// An Ed25519 signature over `msg`, made in the token; fails while the token is unavailable.
    pub fn sign(&self, msg: &[u8]) -> Result<[u8; 64], Error> {
        self.token.sign_ed25519(&self.id, msg)
    }
}

/// An open key store.
pub struct KeyManager {
    pub(crate) store: Store,
    kek: StoreKek,
    /// Serialises changes: read-modify-write of a record.
    write: Mutex<()>,
    /// The last audit sequence number written; held while an event is applied, so numbers are dense.
    audit_seq: Mutex<u64>,
    /// Primary keys by name, for the hot path; a change to a key drops its entry.
    pub(crate) cache: RwLock<HashMap<String, Arc<PrimaryKey>>>,
    /// Revoked peer identities, for the channel's checks (`peers.rs`).
    pub(crate) revoked: crate::peers::RevokedSet,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("path", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl KeyManager {
    /// Creates a new store at `dir` protected by `source`.
    pub fn init(
        dir: &Path,
        source: &KekSource,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyManager, Error> {
        let store = Store::open(dir, true)?;
        let params = KdfParams::fresh(source)?;
        let kek = derive(source, &params, true)?;
        let mut batch = Store::format_batch();
        batch.put_meta(
            "kdf",
            &serde_json::to_vec(&params).map_err(|e| Error::Storage(e.to_string()))?,
        );
        batch.put_meta("verifier", &kek.wrap(VERIFIER_PLAINTEXT, VERIFIER_AAD)?);
        let m = KeyManager {
            store,
            kek,
            write: Mutex::new(()),
            audit_seq: Mutex::new(0),
            cache: RwLock::new(HashMap::new()),
            revoked: crate::peers::RevokedSet::default(),
        };
        m.commit_with_audit(batch, now, actor, "init", None, None, String::new())?;
        Ok(m)
    }

    /// Opens the store at `dir`; a wrong passphrase or key file is detected before anything changes.
    pub fn open(dir: &Path, source: &KekSource) -> Result<KeyManager, Error> {
        let store = Store::open(dir, false)?;
        let params: KdfParams = store
            .meta("kdf")?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .ok_or_else(|| Error::StoreCorrupt("missing KEK parameters".into()))?;
        let kek = derive(source, &params, false)?;
        let verifier = store
            .meta("verifier")?
            .ok_or_else(|| Error::StoreCorrupt("missing KEK verifier".into()))?;
        if kek.unwrap(&verifier, VERIFIER_AAD)?.is_none() {
            return Err(match kek.token() {
                Some(token) => Error::Token(format!(
                    "{} does not open this key store (another key of that label?)",
                    token.describe()
                )),
                None => Error::WrongKek,
            });
        }
        let last_seq = store.last_audit_seq()?;
        let revoked = crate::peers::RevokedSet::of(&store.revoked_peers()?);
        Ok(KeyManager {
            store,
            kek,
            write: Mutex::new(()),
            audit_seq: Mutex::new(last_seq),
            cache: RwLock::new(HashMap::new()),
            revoked,
        })
    }

    /// Whether the store's KEK is a key in a PKCS#11 token (not a passphrase or key file).
    pub fn kek_in_token(&self) -> bool {
        self.kek.in_token()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `batch` with its audit event and makes both durable; drops the key's cache entry.
    #[allow(clippy::too_many_arguments)] // every field of the event, named at the call site
    pub(crate) fn commit_with_audit(
        &self,
        mut batch: Batch,
        now: Timestamp,
        actor: &str,
        action: &str,
        key: Option<&str>,
        version: Option<u32>,
        detail: String,
    ) -> Result<(), Error> {
        let event = AuditEvent {
            seq: 0,
            at: now,
            actor: actor.to_owned(),
            action: action.to_owned(),
            key: key.map(str::to_owned),
            version,
            detail,
        };
        let (mut last, seq) = next_event(&self.audit_seq, &mut batch, event)?;
        self.store.apply(batch)?;
        *last = seq;
        drop(last);
        self.store.sync()?;
        if let Some(k) = key {
            self.cache
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(k);
        }
        Ok(())
    }

    pub(crate) fn new_version(
        &self,
        name: &str,
        version: u32,
        purpose: Purpose,
        now: Timestamp,
        actor: &str,
    ) -> Result<(VersionRecord, Secret), Error> {
        let fresh = |public_key, wrapped, token_id| VersionRecord {
            version,
            created_at: now,
            created_by: actor.to_owned(),
            state: crate::lifecycle::VersionState::Active,
            public_key,
            history: Vec::new(),
            wrapped,
            token_id,
        };
        if let Some(token) = self.kek.token().filter(|_| purpose.held_in_token()) {
            // Made in the token, never outside it: there is no material to return.
            let (id, public) = token.generate_ed25519(&format!("ledgergate {name} v{version}"))?;
            let record = fresh(Some(hex::encode(public)), None, Some(hex::encode(id)));
            return Ok((record, Secret::new(Vec::new())));
        }
        let (material, public_key) = purpose.generate()?;
        let wrapped = self
            .kek
            .wrap(material.expose(), &aad(name, version, purpose))?;
        Ok((fresh(public_key, Some(B64.encode(wrapped)), None), material))
    }

    pub(crate) fn record(&self, name: &str) -> Result<KeyRecord, Error> {
        self.store
            .key(name)?
            .ok_or_else(|| Error::NoSuchKey(name.to_owned()))
    }

    /// Applies `change` to the key's record and stores it with its audit event.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        name: &str,
        now: Timestamp,
        actor: &str,
        action: &str,
        version: Option<u32>,
        detail: String,
        change: impl FnOnce(&mut KeyRecord) -> Result<(), Error>,
    ) -> Result<KeyRecord, Error> {
        let _guard = self.lock();
        let mut record = self.record(name)?;
        change(&mut record)?;
        let mut batch = Batch::default();
        batch.put_key(&record)?;
        self.commit_with_audit(batch, now, actor, action, Some(name), version, detail)?;
        Ok(record)
    }

    /// Creates a key whose version 1 is primary.
    pub fn create(
        &self,
        name: &str,
        purpose: Purpose,
        rotate_every: Option<u64>,
        max_age: Option<u64>,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        let spec = (purpose, rotate_every, max_age);
        self.create_with(name, spec, now, actor)
    }

    fn create_with(
        &self,
        name: &str,
        (purpose, rotate_every, max_age): (Purpose, Option<u64>, Option<u64>),
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid key name `{name}`: use lowercase letters, digits and -_./"
            )));
        }
        if max_age == Some(0) || rotate_every == Some(0) {
            return Err(Error::InvalidArgument(
                "durations must be longer than zero".into(),
            ));
        }
        let _guard = self.lock();
        if self.store.key(name)?.is_some() {
            return Err(Error::KeyExists(name.to_owned()));
        }
        let (first, _) = self.new_version(name, 1, purpose, now, actor)?;
        let record = KeyRecord::new(
            name,
            purpose,
            rotate_every,
            max_age.unwrap_or(DEFAULT_MAX_AGE),
            first,
        );
        let mut batch = Batch::default();
        batch.put_key(&record)?;
        self.commit_with_audit(
            batch,
            now,
            actor,
            "create",
            Some(name),
            Some(1),
            format!("purpose {purpose}"),
        )?;
        Ok(record)
    }

    /// Makes a new primary version; the old one is deactivated (verify/decrypt only).
    pub fn rotate(&self, name: &str, now: Timestamp, actor: &str) -> Result<KeyRecord, Error> {
        self.rotate_if(name, now, actor, |_| true)
            .map(|(record, _)| record)
    }

    /// Rotates `name` if `wanted` holds for its record as read under the write lock; says whether it
    /// did. Two requests that both find a subject key expired (or shredded) make one new version
    /// between them, not two.
    pub(crate) fn rotate_if(
        &self,
        name: &str,
        now: Timestamp,
        actor: &str,
        wanted: impl FnOnce(&KeyRecord) -> bool,
    ) -> Result<(KeyRecord, bool), Error> {
        let _guard = self.lock();
        let mut record = self.record(name)?;
        if !wanted(&record) {
            return Ok((record, false));
        }
        let version = record.next_version();
        let (new, _) = self.new_version(name, version, record.purpose, now, actor)?;
        record.rotate(new, now, actor)?;
        let mut batch = Batch::default();
        batch.put_key(&record)?;
        self.commit_with_audit(
            batch,
            now,
            actor,
            "rotate",
            Some(name),
            Some(version),
            String::new(),
        )?;
        Ok((record, true))
    }

    /// Revokes a version. A compromise may be dated back with `occurred_at`.
    #[allow(clippy::too_many_arguments)]
    pub fn revoke(
        &self,
        name: &str,
        version: u32,
        reason: RevocationReason,
        occurred_at: Option<Timestamp>,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        let when = occurred_at.unwrap_or(now);
        let reason_name = format!("{reason:?}").to_lowercase();
        let detail = format!(
            "reason {reason_name}, occurred at {}",
            crate::lifecycle::rfc3339(when)
        );
        self.change(name, now, actor, "revoke", Some(version), detail, |r| {
            r.revoke(version, reason, when, now, actor)
        })
    }

    /// Schedules a version's destruction after `window` seconds.
    pub fn schedule_destroy(
        &self,
        name: &str,
        version: u32,
        window: u64,
        force: bool,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        let detail = format!("window {}s{}", window, if force { ", forced" } else { "" });
        self.change(
            name,
            now,
            actor,
            "schedule-destroy",
            Some(version),
            detail,
            |r| r.schedule_destroy(version, window, force, now, actor),
        )
    }

    /// Cancels a scheduled destruction.
    pub fn cancel_destroy(
        &self,
        name: &str,
        version: u32,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        self.change(
            name,
            now,
            actor,
            "cancel-destroy",
            Some(version),
            String::new(),
            |r| r.cancel_destroy(version),
        )
    }

    /// Destroys a version whose window has passed: its wrapped material is erased from the record,
    /// and a key held in the token is destroyed there first (a destruction that stops between the
    /// two leaves a record whose key is gone already; doing it again finishes it).
    pub fn destroy(
        &self,
        name: &str,
        version: u32,
        now: Timestamp,
        actor: &str,
    ) -> Result<KeyRecord, Error> {
        let record = self.record(name)?;
        if let Some(id) = record.version(version).and_then(|v| v.token_id.as_ref()) {
            // Only when the lifecycle allows it now: a check on a copy, then the real change below.
            let mut check = record.clone();
            check.destroy(version, now, actor, false)?;
            let token = self.token_of(name, version)?;
            let id = hex::decode(id).map_err(|_| {
                Error::StoreCorrupt(format!("key `{name}` version {version}: bad token id"))
            })?;
            token.destroy(&id)?;
        }
        self.change(
            name,
            now,
            actor,
            "destroy",
            Some(version),
            String::new(),
            |r| r.destroy(version, now, actor, false),
        )
    }

    /// Crypto-shredding: destroys every version of a data subject's key at once, so that nothing
    /// sealed for the subject so far can be decrypted again. Records submitted for the subject later
    /// get a fresh key (the erasure covers the past). A subject with no key (no sealed values) or one
    /// shredded already is not an error: the answer says there was nothing to destroy, and the request
    /// is audited all the same.
    pub fn shred_subject(
        &self,
        subject: &str,
        now: Timestamp,
        actor: &str,
    ) -> Result<Shredded, Error> {
        let name = crate::subjects::subject_key_name(subject);
        let _guard = self.lock();
        let mut batch = Batch::default();
        let (destroyed, message) = match self.store.key(&name)? {
            None => (
                Vec::new(),
                "no sealed values were ever stored for this subject: nothing to destroy".to_owned(),
            ),
            Some(mut record) => {
                let live: Vec<u32> = record
                    .versions
                    .iter()
                    .filter(|v| {
                        !matches!(v.state, crate::lifecycle::VersionState::Destroyed { .. })
                    })
                    .map(|v| v.version)
                    .collect();
                for v in &live {
                    record.destroy(*v, now, actor, true)?;
                }
                batch.put_key(&record)?;
                let message = if live.is_empty() {
                    "already shredded: nothing left to destroy".to_owned()
                } else {
                    "every sealed value of this subject is now unreadable; records submitted later \
                     get a fresh key"
                        .to_owned()
                };
                (live, message)
            }
        };
        let detail = if destroyed.is_empty() {
            "nothing to destroy".to_owned()
        } else {
            format!(
                "destroyed versions {}",
                destroyed
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            )
        };
        self.commit_with_audit(batch, now, actor, "shred", Some(&name), None, detail)?;
        Ok(Shredded {
            key: name,
            destroyed,
            message,
        })
    }

    /// Keys in name order after `after` (a key name), at most `limit` (capped at [`MAX_PAGE`]):
    /// managed keys, or data-subject keys with `filter.subjects`.
    pub fn list(
        &self,
        filter: KeyFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRecord>, Error> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut out = Vec::new();
        let mut cursor = after.map(str::to_owned);
        // A purpose filter may skip many keys: read on until the page is full or the keys run out.
        loop {
            let page = if filter.subjects {
                self.store.subject_keys(cursor.as_deref(), limit)?
            } else {
                self.store.managed_keys(cursor.as_deref(), limit)?
            };
            let exhausted = page.len() < limit;
            cursor = page.last().map(|r| r.name.clone());
            out.extend(
                page.into_iter()
                    .filter(|r| filter.purpose.is_none_or(|p| p == r.purpose)),
            );
            if exhausted || out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    /// One key.
    pub fn show(&self, name: &str) -> Result<KeyRecord, Error> {
        self.record(name)
    }

    /// Managed keys past their rotation period or without a usable primary. (Data-subject keys rotate
    /// on use once expired, and are not looked at here: there can be millions.)
    pub fn due(&self, now: Timestamp) -> Result<Vec<KeyRecord>, Error> {
        Ok(self
            .store
            .managed_keys(None, usize::MAX)?
            .into_iter()
            .filter(|k| k.due(now))
            .collect())
    }

    /// The primary key of `name` for new work: from the cache when it can be (the hot path), checked
    /// against its expiry at `now` on every call.
    pub fn primary(&self, name: &str, now: Timestamp) -> Result<Arc<PrimaryKey>, Error> {
        let cached = |cache: &HashMap<String, Arc<PrimaryKey>>| {
            cache
                .get(name)
                .filter(|k| now < k.cached_until)
                .map(Arc::clone)
        };
        if let Some(k) = self.cached_primary(name, now) {
            return Ok(k);
        }
        // On a miss, read the record and fill the cache under the write lock: a change commits first
        // and then drops the entry under this same lock, so an older record read here can never be
        // inserted after that drop (which would serve a rotated-away version).
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = cached(&cache) {
            return Ok(k);
        }
        let record = self.record(name)?;
        let v = record.usable(now)?;
        let material = self.unwrap_version(&record, v)?;
        let key = Arc::new(PrimaryKey {
            name: name.to_owned(),
            version: v.version,
            purpose: record.purpose,
            expires_at: record.expires_at(v),
            cached_until: crate::cache::cached_until(record.expires_at(v), now),
            material,
        });
        cache_insert(&mut cache, name, Arc::clone(&key));
        Ok(key)
    }

    /// The cached primary key of `name`, if cached, not expired and not cached too long at `now`.
    pub(crate) fn cached_primary(&self, name: &str, now: Timestamp) -> Option<Arc<PrimaryKey>> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .filter(|k| now < k.cached_until)
            .map(Arc::clone)
    }

    fn unwrap_version(&self, record: &KeyRecord, v: &VersionRecord) -> Result<Secret, Error> {
        if v.token_id.is_some() {
            return Err(Error::InvalidArgument(format!(
                "key `{}` version {} is held in the PKCS#11 token: it signs there and never leaves it",
                record.name, v.version
            )));
        }
        let destroyed = Error::Illegal(crate::lifecycle::TransitionError::Destroyed(v.version));
        let blob = v
            .wrapped
            .as_ref()
            .and_then(|b| B64.decode(b).ok())
            .ok_or(destroyed)?;
        self.kek
            .unwrap(&blob, &aad(&record.name, v.version, record.purpose))?
            .ok_or_else(|| {
                Error::StoreCorrupt(format!(
                    "key `{}` version {} does not unwrap: altered",
                    record.name, v.version
                ))
            })
    }

    /// The material of any version that is not destroyed, to verify or decrypt old work.
    pub fn version_material(&self, name: &str, version: u32) -> Result<Secret, Error> {
        let record = self.record(name)?;
        let v = record.version(version).ok_or(Error::NoSuchVersion {
            name: name.to_owned(),
            version,
        })?;
        self.unwrap_version(&record, v)
    }

    /// The token that holds `name`'s `version`: the store's KEK's (a store opened without it cannot
    /// use the key).
    fn token_of(&self, name: &str, version: u32) -> Result<&Arc<crate::token::TokenKek>, Error> {
        self.kek.token().ok_or_else(|| {
            Error::Token(format!(
                "key `{name}` version {version} is held in a PKCS#11 token: open the store with it"
            ))
        })
    }

    /// A signer for a version held in the PKCS#11 token: every signature is made in the token.
    /// Whether the version may sign new work is the caller's rule (the ledger asks [`KeyManager::
    /// primary`]'s question with [`KeyRecord::usable`] first).
    pub fn token_signer(&self, name: &str, version: u32) -> Result<TokenSigner, Error> {
        let record = self.record(name)?;
        let v = record.version(version).ok_or(Error::NoSuchVersion {
            name: name.to_owned(),
            version,
        })?;
        let id = v
            .token_id
            .as_ref()
            .and_then(|id| hex::decode(id).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("key `{name}` version {version} is not in a token"))
            })?;
        let token = self.token_of(name, version)?;
        Ok(TokenSigner {
            token: Arc::clone(token),
            id,
        })
    }

    /// Whether work (a signature, a ciphertext) made by `name`@`version` at `made_at` may be believed:
    /// not if the version is destroyed, nor if it was compromised at or before `made_at`.
    pub fn trusted_at(&self, name: &str, version: u32, made_at: Timestamp) -> Result<bool, Error> {
        Ok(self.record(name)?.trusted_at(version, made_at))
    }

    /// Records an event that is not a key change (a sealed value read in clear by someone other than
    /// its provider, …) in the audit trail, durably, before the caller acts on it.
    pub fn audit_event(
        &self,
        now: Timestamp,
        actor: &str,
        action: &str,
        detail: String,
    ) -> Result<(), Error> {
        self.commit_with_audit(Batch::default(), now, actor, action, None, None, detail)
    }

    /// Makes every change written so far durable; concurrent callers share one flush, and it returns
    /// at once when nothing is pending.
    pub fn sync(&self) -> Result<(), Error> {
        self.store.sync()
    }

    /// The sequence number of the last event in the audit trail (0: none yet).
    pub fn last_audit_seq(&self) -> u64 {
        *self
            .audit_seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit trail after sequence number `after` (0: from the start), oldest first, at most
    /// `limit` events (capped at [`MAX_PAGE`]).
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEvent>, Error> {
        self.store.audit_page(after, limit.clamp(1, MAX_PAGE))
    }

    /// Re-wraps every secret under a new KEK and stores the new KEK parameters, all in one atomic write:
    /// a crash leaves either the old KEK in force or the new one.
    pub fn change_kek(
        &mut self,
        new: &KekSource,
        now: Timestamp,
        actor: &str,
    ) -> Result<(), Error> {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let params = KdfParams::fresh(new)?;
        let new_kek = derive(new, &params, true)?;
        // Keys held in the token stay where they are when the new KEK is in the same token.
        let same_token = self.kek.shares_token_with(&new_kek);
        let mut batch = Batch::default();
        for mut record in self.store.all_keys()? {
            if let Some(v) = record.versions.iter().find(|v| v.token_id.is_some())
                && !same_token
            {
                return Err(Error::InvalidArgument(format!(
                    "key `{}` version {} is held in the PKCS#11 token and cannot leave it: rotate \
                     the key, destroy that version, then change the KEK (or change to another key \
                     of the same token)",
                    record.name, v.version
                )));
            }
            for v in &mut record.versions {
                let Some(blob) = v.wrapped.as_ref().and_then(|b| B64.decode(b).ok()) else {
                    continue;
                };
                let a = aad(&record.name, v.version, record.purpose);
                let secret = self.kek.unwrap(&blob, &a)?.ok_or_else(|| {
                    Error::StoreCorrupt(format!("key `{}` does not unwrap", record.name))
                })?;
                v.wrapped = Some(B64.encode(new_kek.wrap(secret.expose(), &a)?));
            }
            batch.put_key(&record)?;
        }
        batch.put_meta(
            "kdf",
            &serde_json::to_vec(&params).map_err(|e| Error::Storage(e.to_string()))?,
        );
        batch.put_meta("verifier", &new_kek.wrap(VERIFIER_PLAINTEXT, VERIFIER_AAD)?);
        drop(_guard);
        // The audit event goes into the same rewrite: the change and its record are one write.
        let detail = if new_kek.in_token() {
            "to a key in a PKCS#11 token"
        } else {
            "to a passphrase or key file"
        };
        let event = AuditEvent {
            seq: 0,
            at: now,
            actor: actor.to_owned(),
            action: "change-passphrase".to_owned(),
            key: None,
            version: None,
            detail: detail.to_owned(),
        };
        let (mut last, seq) = next_event(&self.audit_seq, &mut batch, event)?;
        // A fresh file, not a commit: no page of the old file, with blobs the old KEK opens, stays.
        self.store.rewrite(batch)?;
        *last = seq;
        drop(last);
        self.cache
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.kek = new_kek;
        Ok(())
    }

    /// Every wrapped blob in the store as stored: only for tests that look for blobs a KEK no longer
    /// in force could open.
    #[cfg(any(test, feature = "testing"))]
    pub fn all_wrapped_for_tests(&self) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        for record in self.store.all_keys()? {
            for v in &record.versions {
                if let Some(blob) = v.wrapped.as_ref().and_then(|b| B64.decode(b).ok()) {
                    out.push(blob);
                }
            }
        }
        Ok(out)
    }

    /// Every secret in the store, unwrapped: only for tests that check no secret reaches the disk.
    #[cfg(any(test, feature = "testing"))]
    pub fn all_material_for_tests(&self) -> Result<Vec<Secret>, Error> {
        let mut out = Vec::new();
        for record in self.store.all_keys()? {
            for v in &record.versions {
                if v.wrapped.is_some() {
                    out.push(self.unwrap_version(&record, v)?);
                }
            }
        }
        Ok(out)
    }
}
