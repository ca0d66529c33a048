//! The one place where the steps of a submission are put in order:
//! identify → admit → parse → authorize → (lock the record id) → already seen? → desensitize →
//! seal to the vault → append to the ledger → index → receipt.
//! Every other module does one step and knows nothing of this order.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use keymgr::{Kek, KeyManager, Purpose};
use policies::{
    Action, JsonLimits, PeerIdentity, PolicySet, RecordError, RecordErrorCode, parse_json,
};
use serde_json::{Map, Value, json};

use crate::keys::{ManagedKeys, OsSalts};
use crate::ledger::{Ledger, LedgerError};
use crate::risk::RateLimiter;
use crate::vault::{SealedRecord, Submission, Vault, VaultError};

/// The managed key that makes request MACs (recognising retries without storing the record's hash).
pub const REQUEST_MAC_KEY: &str = "request-mac";
/// The role that may read raw ledger entries (`/v1/entries`).
pub const AUDITOR_ROLE: &str = "auditor";
/// Deepest JSON nesting a submission may have.
pub const MAX_JSON_DEPTH: usize = 32;
/// Record ids: 1 to this many characters.
const MAX_ID_CHARS: usize = 128;
/// Locks that serialise submissions of the same (provider, id), chosen by hash.
const ID_LOCKS: usize = 64;

/// Why a request failed; `ingress::problem` maps each to a status and a problem `code`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The policy refused the record.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The subject is over its rate.
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The same id was submitted before with another body.
    #[error("record `{id}` was already submitted with different content")]
    Conflict {
        /// The record id.
        id: String,
    },
    /// No such record for this provider.
    #[error("no record `{id}` from provider `{provider}`")]
    NotFound {
        /// The provider.
        provider: String,
        /// The record id.
        id: String,
    },
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The key store failed.
    #[error(transparent)]
    Keys(#[from] keymgr::Error),
    /// An officer's key command was refused or failed.
    #[error(transparent)]
    Admin(keymgr::Error),
}

/// A submission's outcome: new (201) or a retry of one already accepted (200).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// True when this request created the record.
    pub created: bool,
    /// `{index, leaf_hash, tree_size, checkpoint}`.
    pub receipt: Value,
}

/// Everything a submission passes through.
pub struct Pipeline {
    /// The policy in force; a reload swaps it, and each request keeps the one it started with.
    policy: std::sync::RwLock<Arc<PolicySet>>,
    keys: Arc<KeyManager>,
    ledger: Arc<Ledger>,
    vault: Vault,
    limiter: RateLimiter,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Held shared by a submission from key resolution to its durable append, and exclusively by an
    /// officer's command that takes a key version out of use (revoke, destroy, shred): once such a
    /// command returns, no later entry can carry the version it took away.
    key_changes: tokio::sync::RwLock<()>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("policy", &self.policy().digest_hex())
            .finish_non_exhaustive()
    }
}

fn invalid(path: &str, why: &str) -> PipelineError {
    PipelineError::Record(RecordError {
        code: RecordErrorCode::InvalidField,
        path: Some(path.to_owned()),
        reason: why.to_owned(),
    })
}

fn forbidden(why: &str) -> PipelineError {
    PipelineError::Record(RecordError {
        code: RecordErrorCode::Forbidden,
        path: None,
        reason: why.to_owned(),
    })
}

impl Pipeline {
    /// Assembles the pipeline; makes the request-MAC key on first use.
    pub fn new(
        policy: Arc<PolicySet>,
        keys: Arc<KeyManager>,
        ledger: Arc<Ledger>,
        vault: Vault,
    ) -> Result<Pipeline, PipelineError> {
        if let Err(keymgr::Error::NoSuchKey(_)) = keys.show(REQUEST_MAC_KEY) {
            keys.create(
                REQUEST_MAC_KEY,
                Purpose::Pseudonym,
                Some(90 * 86_400),
                None,
                crate::keys::unix_now(),
                "gateway",
            )?;
        }
        let locks = (0..ID_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        let p = Pipeline {
            policy: std::sync::RwLock::new(policy),
            keys,
            ledger,
            vault,
            limiter: RateLimiter::default(),
            locks,
            key_changes: tokio::sync::RwLock::new(()),
        };
        p.resolve_pending()?;
        Ok(p)
    }

    /// After a crash: each pending submission either reached the ledger (its entry is in the tail after
    /// `after`), and is completed with its receipt and key usage, or did not, and is forgotten. No
    /// client was told "accepted" for either, so both are safe; a retry then finds the truth.
    fn resolve_pending(&self) -> Result<(), PipelineError> {
        for (provider, id, pending) in self.vault.pending()? {
            let size = self.ledger.size();
            let mut found = None;
            for (index, bytes) in self.ledger.entries(pending.after, size)? {
                let Ok(entry) = serde_json::from_slice::<Value>(&bytes) else {
                    continue;
                };
                let field = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_owned);
                if field("provider").as_deref() == Some(provider.as_str())
                    && field("id").as_deref() == Some(id.as_str())
                {
                    found = Some((index, bytes, entry));
                    break;
                }
            }
            let Some((index, bytes, entry)) = found else {
                tracing::warn!(%provider, %id, "an unacknowledged submission did not reach the ledger before a crash; forgotten");
                self.vault.remove_submission(&provider, &id)?;
                continue;
            };
            let checkpoint = self.ledger.checkpoint();
            let receipt = json!({
                "index": index,
                "leaf_hash": crate::ledger::leaf_hash(&bytes).to_base64(),
                "tree_size": checkpoint.checkpoint.size,
                "checkpoint": checkpoint.note,
            });
            let refs: Vec<(String, u32)> = entry
                .get("key_refs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter_map(|r| r.split_once('@'))
                .filter_map(|(n, v)| v.parse().ok().map(|v| (n.to_owned(), v)))
                .collect();
            self.keys.record_usage(&refs, &format!("ledger:{index}"))?;
            let done = Submission {
                request_mac: pending.request_mac,
                receipt: Some(receipt),
                after: pending.after,
            };
            self.vault.put_submission(&provider, &id, &done)?;
            tracing::info!(%provider, %id, index, "completed a submission interrupted by a crash");
        }
        Ok(())
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts a new policy in force for the requests that start from now on.
    pub fn set_policy(&self, policy: Arc<PolicySet>) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    /// The key store.
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// Waits until no submission is between key resolution and append, and keeps new ones out while
    /// the guard lives: for officer commands that take a key version out of use.
    pub async fn exclusive_key_change(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.key_changes.write().await
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn lock_for(&self, provider: &str, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::BuildHasher as _;
        let hashed =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one((provider, id));
        let i = usize::try_from(hashed % ID_LOCKS as u64).unwrap_or(0);
        // `locks` has ID_LOCKS entries and i < ID_LOCKS.
        #[allow(clippy::indexing_slicing)]
        &self.locks[i]
    }

    /// Submits one record (`{type, id, fields}`) from `peer`.
    pub async fn submit(
        &self,
        peer: &PeerIdentity,
        body: &[u8],
    ) -> Result<Accepted, PipelineError> {
        let policy = self.policy();
        // identify
        let subject = policy.identify(peer)?;
        // admit: size first (cheap, and before parsing), then rate
        let limits = policy.limits_for(subject);
        if body.len() > limits.max_record_bytes {
            let why = format!(
                "{} bytes is more than the limit of {}",
                body.len(),
                limits.max_record_bytes
            );
            return Err(RecordError {
                code: RecordErrorCode::PayloadTooLarge,
                path: None,
                reason: why,
            }
            .into());
        }
        self.limiter
            .admit(&subject.name, &limits, 1, Instant::now())
            .map_err(|retry_after| PipelineError::RateLimited { retry_after })?;
        // parse
        let record = parse_json(
            body,
            JsonLimits {
                max_bytes: limits.max_record_bytes,
                max_depth: MAX_JSON_DEPTH,
            },
        )?;
        let (record_type, id, fields) = envelope(&record)?;
        // authorize
        let rt = policy.authorize(subject, Action::Submit, record_type)?;
        let provider = subject.name.as_str();
        // one submission per (provider, id) at a time, so a retry racing the original sees it
        let _guard = self.lock_for(provider, id).lock().await;
        let now = crate::keys::unix_now();
        if let Some(seen) = self.vault.submission(provider, id)? {
            // Pending records are resolved at start-up and this id's lock is held: seen is complete.
            let receipt = seen
                .receipt
                .ok_or(PipelineError::Ledger(LedgerError::Closed))?;
            return if self.same_request(&seen.request_mac, &record)? {
                Ok(Accepted {
                    created: false,
                    receipt,
                })
            } else {
                Err(PipelineError::Conflict { id: id.to_owned() })
            };
        }
        // From here to the durable append no officer may take a key version out of use.
        let _keys_stable = self.key_changes.read().await;
        // desensitize
        let keys = ManagedKeys {
            keys: Arc::clone(&self.keys),
            now,
        };
        let out = policy.desensitize(rt, fields, &keys, &mut OsSalts)?;
        // seal to the vault, under the data subject's key
        if !out.sealed.is_empty() {
            let key = self.keys.subject_key(&out.subject, now, "gateway")?;
            let kek = Kek::from_secret(&key.material)
                .ok_or(keymgr::Error::StoreCorrupt("subject key".into()))?;
            let mut values = Vec::with_capacity(out.sealed.len());
            for s in &out.sealed {
                let aad = format!("ledgergate-sealed/1\0{provider}\0{id}\0{}", s.path);
                let blob = kek
                    .wrap(&s.value, aad.as_bytes())
                    .map_err(keymgr::Error::from)?;
                let rec = SealedRecord {
                    key: key.name.clone(),
                    version: key.version,
                    blob: base64::engine::general_purpose::STANDARD.encode(blob),
                };
                values.push((s.path.clone(), rec));
            }
            self.vault.put_sealed(provider, id, &values)?;
        }
        // append: the entry is canonical JSON (sorted keys, no white space)
        let key_refs: Vec<String> = out.key_refs.iter().map(ToString::to_string).collect();
        let entry = json!({
            "v": 1,
            "provider": provider,
            "type": record_type,
            "id": id,
            "payload": Value::Object(out.payload),
            "sealed": out.sealed.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
            "key_refs": key_refs,
            "policy": policy.digest_hex(),
            "time": keymgr::rfc3339(now),
        });
        let bytes = serde_json::to_vec(&entry).map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let mac = self.request_mac(&record, now)?;
        let pending = Submission {
            request_mac: mac.clone(),
            receipt: None,
            after: self.ledger.size(),
        };
        self.vault.put_submission(provider, id, &pending)?;
        // On failure the pending record stays: a failed flush may still have left the entry on disk, so
        // only the next start, reading the ledger, can tell. Until then a retry answers `unavailable`
        // rather than risk a second entry.
        let receipt = self
            .ledger
            .append(vec![bytes])
            .await?
            .into_iter()
            .next()
            .ok_or(LedgerError::Closed)?;
        let receipt = json!({
            "index": receipt.index,
            "leaf_hash": receipt.leaf_hash.to_base64(),
            "tree_size": receipt.tree_size,
            "checkpoint": receipt.checkpoint.note,
        });
        // index: `keymgr affected` first, then the submission record last, so that a crash anywhere
        // before it leaves a pending record that start-up completes (usage included).
        let refs: Vec<(String, u32)> = out
            .key_refs
            .iter()
            .map(|k| (k.name.clone(), k.version))
            .collect();
        if let Some(index) = receipt.get("index").and_then(Value::as_u64) {
            self.keys.record_usage(&refs, &format!("ledger:{index}"))?;
        }
        let done = Submission {
            request_mac: mac,
            receipt: Some(receipt.clone()),
            after: pending.after,
        };
        self.vault.put_submission(provider, id, &done)?;
        Ok(Accepted {
            created: true,
            receipt,
        })
    }

    fn request_mac(&self, record: &Value, now: i64) -> Result<String, PipelineError> {
        let key = self.keys.primary(REQUEST_MAC_KEY, now)?;
        Ok(policies::pseudonym(
            key.material.expose(),
            key.version,
            record,
        ))
    }

    /// Whether `record` is the request that produced `mac` (under the key version the MAC names).
    fn same_request(&self, mac: &str, record: &Value) -> Result<bool, PipelineError> {
        let version = mac
            .strip_prefix('v')
            .and_then(|r| r.split_once(':'))
            .and_then(|(v, _)| v.parse::<u32>().ok());
        let Some(version) = version else {
            return Ok(false);
        };
        let key = self.keys.version_material(REQUEST_MAC_KEY, version)?;
        let again = policies::pseudonym(key.expose(), version, record);
        // Constant time: the MAC is a secret-keyed value an attacker may probe.
        Ok(again.len() == mac.len()
            && again
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0)
    }

    /// The `/v1/entries` rule: only subjects with the `auditor` role read raw entries.
    pub fn authorize_auditor(&self, peer: &PeerIdentity) -> Result<(), PipelineError> {
        let policy = self.policy();
        let subject = policy.identify(peer)?;
        if subject.roles.contains(AUDITOR_ROLE) {
            Ok(())
        } else {
            Err(forbidden("reading raw entries needs the auditor role"))
        }
    }

    /// Reads a record back: the desensitized entry, its sealed fields (or that they were shredded), and
    /// an inclusion proof against the latest checkpoint.
    pub fn read(
        &self,
        peer: &PeerIdentity,
        provider: Option<&str>,
        id: &str,
    ) -> Result<Value, PipelineError> {
        let policy = self.policy();
        let subject = policy.identify(peer)?;
        let provider = provider.unwrap_or(&subject.name);
        let not_found = || PipelineError::NotFound {
            provider: provider.to_owned(),
            id: id.to_owned(),
        };
        let seen = self.vault.submission(provider, id)?.ok_or_else(not_found)?;
        let index = seen
            .receipt
            .as_ref()
            .and_then(|r| r.get("index"))
            .and_then(Value::as_u64)
            .ok_or_else(not_found)?;
        let entry: Value = serde_json::from_slice(&self.ledger.entry(index)?)
            .map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let record_type = entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Reading needs the read role for the record's type, whoever submitted it.
        policy
            .authorize(subject, Action::Read, record_type)
            .map_err(|_| forbidden("may not read this record"))?;
        let mut sealed = Map::new();
        for (path, rec) in self.vault.sealed(provider, id)? {
            let opened = self.open_sealed(provider, id, &path, &rec);
            sealed.insert(path, opened);
        }
        let checkpoint = self.ledger.checkpoint();
        let size = checkpoint.checkpoint.size;
        let hashes: Vec<String> = self
            .ledger
            .inclusion_proof(index, size)?
            .iter()
            .map(|h| h.to_base64())
            .collect();
        Ok(json!({
            "record": entry,
            "sealed": sealed,
            "proof": { "leaf_index": index, "tree_size": size, "hashes": hashes },
            "checkpoint": checkpoint.note,
        }))
    }

    fn open_sealed(&self, provider: &str, id: &str, path: &str, rec: &SealedRecord) -> Value {
        let material = match self.keys.version_material(&rec.key, rec.version) {
            Ok(m) => m,
            Err(keymgr::Error::Illegal(keymgr::TransitionError::Destroyed(_))) => {
                return json!({ "status": "shredded" });
            }
            Err(_) => return json!({ "status": "unavailable" }),
        };
        let aad = format!("ledgergate-sealed/1\0{provider}\0{id}\0{path}");
        let value = Kek::from_secret(&material)
            .zip(
                base64::engine::general_purpose::STANDARD
                    .decode(&rec.blob)
                    .ok(),
            )
            .and_then(|(k, blob)| k.unwrap(&blob, aad.as_bytes()).ok())
            .and_then(|plain| serde_json::from_slice::<Value>(plain.expose()).ok());
        match value {
            Some(v) => json!({ "status": "sealed", "value": v }),
            None => json!({ "status": "unavailable" }),
        }
    }
}

/// The submission envelope: `{type, id, fields}` and nothing else.
fn envelope(record: &Value) -> Result<(&str, &str, &Value), PipelineError> {
    let Value::Object(o) = record else {
        return Err(invalid("$", "a submission is an object {type, id, fields}"));
    };
    if let Some(extra) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "id" | "fields"))
    {
        let e = RecordError {
            code: RecordErrorCode::UnknownField,
            path: Some(extra.clone()),
            reason: "a submission has only type, id and fields".into(),
        };
        return Err(e.into());
    }
    let missing = |p: &str| {
        PipelineError::Record(RecordError {
            code: RecordErrorCode::MissingField,
            path: Some(p.to_owned()),
            reason: "required".into(),
        })
    };
    let record_type = o
        .get("type")
        .ok_or_else(|| missing("type"))?
        .as_str()
        .ok_or_else(|| invalid("type", "expected a string"))?;
    let id = o
        .get("id")
        .ok_or_else(|| missing("id"))?
        .as_str()
        .ok_or_else(|| invalid("id", "expected a string"))?;
    let count = id.chars().count();
    if count == 0 || count > MAX_ID_CHARS || id.chars().any(char::is_control) {
        return Err(invalid("id", "1 to 128 characters, no control characters"));
    }
    let fields = o.get("fields").ok_or_else(|| missing("fields"))?;
    Ok((record_type, id, fields))
}
