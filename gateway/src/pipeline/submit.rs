//! A round of submissions: parse and admit each line, look for earlier submissions of the same ids,
//! desensitize and seal the new ones, and append them together with their vault attachments.

use std::sync::Arc;

use keymgr::PrimaryKey;
use policies::{
    Action, Desensitized, JsonLimits, Limits, PeerIdentity, PolicySet, RecordError,
    RecordErrorCode, RecordIds, RecordType, Subject, canonicalize_numbers, parse_json,
};
use serde_json::{Value, json};

use super::{Accepted, MAX_JSON_DEPTH, Pipeline, PipelineError, REQUEST_MAC_KEY};
use crate::keys::{ManagedKeys, OsSalts};
use crate::ledger::{Attachment, Hash};
use crate::vault::{SealedRecord, Vault, VaultError};

/// Record ids: 1 to this many characters.
const MAX_ID_CHARS: usize = 128;

/// A line that passed identification, admission, parsing and authorization.
pub(super) struct Parsed<'p> {
    provider: &'p str,
    rt: &'p RecordType,
    record_type: String,
    pub(super) id: String,
    record: Value,
}

impl<'p> Parsed<'p> {
    pub(super) fn provider(&self) -> &str {
        self.provider
    }

    /// The record type as the policy declares it (a bounded metrics label, unlike the client's text).
    pub(super) fn record_type_name(&self) -> &'p str {
        &self.rt.name
    }
}

/// A round's outcomes, by line position.
type Outcomes = Vec<(usize, Result<Accepted, PipelineError>)>;

/// The receipt as the API gives it.
fn receipt_json(index: u64, leaf: &Hash, tree_size: u64, checkpoint: &str) -> Value {
    json!({
        "index": index,
        "leaf_hash": leaf.to_base64(),
        "tree_size": tree_size,
        "checkpoint": checkpoint,
    })
}

/// A submission no larger than its subject's record limit.
fn check_size(limits: &Limits, body: &[u8]) -> Result<(), PipelineError> {
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
    Ok(())
}

/// A submission parsed (within `limits`), its envelope checked, its type authorized for `subject`
/// and its numbers made canonical: everything about a record that needs no key. The ledger node goes
/// on to desensitize it; an edge, which holds no keys, validates it ([`check_record`]).
fn parse_record<'p>(
    policy: &'p PolicySet,
    subject: &Subject,
    limits: &Limits,
    body: &[u8],
) -> Result<(&'p RecordType, String, String, Value), PipelineError> {
    let mut record = parse_json(
        body,
        JsonLimits {
            max_bytes: limits.max_record_bytes,
            max_depth: MAX_JSON_DEPTH,
        },
    )?;
    let (record_type, id, _) = envelope(&record)?;
    let (record_type, id) = (record_type.to_owned(), id.to_owned());
    let rt = policy.authorize(subject, Action::Submit, &record_type)?;
    // Before the request MAC and the idempotency check see it: equal values, equal records.
    if let Some(fields) = record.get_mut("fields") {
        canonicalize_numbers(rt, fields)?;
    }
    Ok((rt, record_type, id, record))
}

/// What an edge checks of one submission before it forwards it: parsed, authorized for `subject`
/// and valid for its type ([`PolicySet::validate`]), refused with exactly the problem the ledger node
/// would answer. The ledger node checks again: an edge is trusted for its clients' identities, not
/// for their records.
pub fn check_record(
    policy: &PolicySet,
    subject: &Subject,
    limits: &Limits,
    body: &[u8],
) -> Result<(), PipelineError> {
    check_size(limits, body)?;
    let (rt, _, _, record) = parse_record(policy, subject, limits, body)?;
    let fields = envelope(&record)?.2;
    Ok(policy.validate(rt, fields)?)
}

impl Pipeline {
    /// identify → admit (size, then rate: one token, unless `prepaid` at admission) → parse →
    /// authorize.
    pub(super) fn parse_line<'p>(
        &self,
        policy: &'p PolicySet,
        peer: &PeerIdentity,
        body: &[u8],
        prepaid: bool,
    ) -> Result<Parsed<'p>, PipelineError> {
        let subject = policy.identify(peer)?;
        let limits = policy.limits_for(subject);
        check_size(&limits, body)?;
        if !prepaid {
            self.limiter
                .admit(&subject.name, &limits, 1)
                .map_err(|retry_after| self.rate_limited(retry_after))?;
        }
        let (rt, record_type, id, record) = parse_record(policy, subject, &limits, body)?;
        Ok(Parsed {
            provider: subject.name.as_str(),
            rt,
            record_type,
            id,
            record,
        })
    }

    /// Submits lines whose ids the caller has claimed: earlier submissions are answered from the
    /// vault, the new ones appended together.
    pub(super) async fn commit_round(
        &self,
        policy: &PolicySet,
        round: Vec<(usize, Parsed<'_>)>,
    ) -> Outcomes {
        let mut out = Vec::with_capacity(round.len());
        let mut fresh = Vec::with_capacity(round.len());
        for (i, p) in round {
            match self.seen(&p) {
                Ok(Some(accepted)) => out.push((i, Ok(accepted))),
                Ok(None) => fresh.push((i, p)),
                Err(e) => out.push((i, Err(e))),
            }
        }
        if fresh.is_empty() {
            return out;
        }
        // From here to the durable append no officer may take a key version out of use.
        let _keys_stable = self.key_changes.read().await;
        let now = crate::keys::unix_now();
        let keys = ManagedKeys {
            keys: Arc::clone(&self.keys),
            now,
        };
        // desensitize each, then make or find the subject keys of the whole round at once
        let mut done = Vec::with_capacity(fresh.len());
        for (i, p) in fresh {
            match envelope(&p.record).and_then(|(_, _, fields)| {
                Ok(policy.desensitize(p.rt, fields, &keys, &mut OsSalts)?)
            }) {
                Ok(d) => done.push((i, p, d)),
                Err(e) => out.push((i, Err(e))),
            }
        }
        let subjects: Vec<&str> = done
            .iter()
            .filter(|(_, _, d)| !d.sealed.is_empty())
            .map(|(_, _, d)| d.subject.as_str())
            .collect();
        let mut subject_keys = self
            .keys
            .subject_keys(&subjects, now, "gateway")
            .into_iter();
        let mut items = Vec::with_capacity(done.len());
        let mut lines = Vec::with_capacity(done.len());
        for (i, p, d) in done {
            let key = if d.sealed.is_empty() {
                None
            } else {
                match subject_keys.next() {
                    Some(Ok(k)) => Some(k),
                    Some(Err(e)) => {
                        out.push((i, Err(e.into())));
                        continue;
                    }
                    None => {
                        out.push((i, Err(PipelineError::Unavailable("no subject key".into()))));
                        continue;
                    }
                }
            };
            let sealed = (p.record_type_name(), d.sealed.len() as u64);
            match self.entry(policy, &p, d, key.as_deref(), now) {
                Ok(item) => {
                    items.push(item);
                    lines.push((i, sealed));
                }
                Err(e) => out.push((i, Err(e))),
            }
        }
        if items.is_empty() {
            return out;
        }
        // New subject keys reach the disk before this group does: the ledger's barrier (set in
        // `Pipeline::new`) flushes the key store before every group commit.
        let appended = self.append_with(items).await;
        match appended {
            Ok(receipts) => {
                for ((i, (record_type, sealed)), r) in lines.into_iter().zip(receipts) {
                    if sealed > 0 {
                        self.metrics
                            .sealed_values
                            .with_label_values(&[record_type])
                            .inc_by(sealed);
                    }
                    let receipt =
                        receipt_json(r.index, &r.leaf_hash, r.tree_size, &r.checkpoint.note);
                    let accepted = Accepted {
                        created: true,
                        receipt,
                    };
                    out.push((i, Ok(accepted)));
                }
            }
            // No key may sign checkpoints: a state officers put the node in, not a failure.
            Err(crate::ledger::LedgerError::NoSigner) => {
                for (i, _) in lines {
                    out.push((i, Err(crate::ledger::LedgerError::NoSigner.into())));
                }
            }
            // No leader, no quorum, or no answer in time: an expected state of a consortium
            // member, answered 503 and retried by the client, not a failure of this node.
            Err(crate::ledger::LedgerError::NotReplicated(why)) => {
                tracing::warn!(event = "not_replicated", error = %why, records = lines.len(), "append not committed");
                for (i, _) in lines {
                    let e = crate::ledger::LedgerError::NotReplicated(why.clone());
                    out.push((i, Err(e.into())));
                }
            }
            Err(e) => {
                let why = e.to_string();
                tracing::error!(error = %why, records = lines.len(), "append failed");
                for (i, _) in lines {
                    out.push((i, Err(PipelineError::Unavailable(why.clone()))));
                }
            }
        }
        out
    }

    /// An earlier submission of this id: the same request again (200 with its receipt), or another
    /// body under a used id (conflict).
    fn seen(&self, p: &Parsed<'_>) -> Result<Option<Accepted>, PipelineError> {
        let Some(seen) = self.vault.submission(p.provider, &p.id)? else {
            return Ok(None);
        };
        if !self.same_request(&seen.request_mac, &p.record)? {
            return Err(PipelineError::Conflict { id: p.id.clone() });
        }
        let (leaf, note) = self.ledger.receipt_parts(seen.index, seen.tree_size)?;
        Ok(Some(Accepted {
            created: false,
            receipt: receipt_json(seen.index, &leaf, seen.tree_size, &note),
        }))
    }

    /// Seals one desensitized record under its subject's key and builds its entry and what the vault
    /// keeps beside it.
    fn entry(
        &self,
        policy: &PolicySet,
        p: &Parsed<'_>,
        out: Desensitized,
        subject_key: Option<&PrimaryKey>,
        now: i64,
    ) -> Result<(Vec<u8>, Attachment), PipelineError> {
        let (provider, id) = (p.provider, p.id.as_str());
        let mut sealed = Vec::with_capacity(out.sealed.len());
        if let Some(key) = subject_key {
            for s in &out.sealed {
                let blob = crate::vault::seal(
                    &key.material,
                    (provider, id, s.path.as_str()),
                    &s.salt,
                    &s.value,
                )
                .map_err(|e| VaultError::Corrupt(e.to_string()))?;
                let rec = SealedRecord {
                    key: key.name.clone(),
                    version: key.version,
                    blob,
                };
                sealed.push((s.path.clone(), rec));
            }
        }
        // the entry is canonical JSON (sorted keys, no white space)
        let key_refs: Vec<String> = out.key_refs.iter().map(ToString::to_string).collect();
        let mut entry = json!({
            "v": 1,
            "provider": provider,
            "type": p.record_type,
            "payload": Value::Object(out.payload),
            "sealed": out.sealed.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
            "key_refs": key_refs,
            "policy": policy.digest_hex(),
            "time": keymgr::rfc3339(now),
        });
        let (name, reference) = match p.rt.record_id {
            RecordIds::Clear => ("id", Value::from(id)),
            RecordIds::Keyed => ("ref", Value::from(self.record_ref(provider, id, now)?)),
        };
        if let Value::Object(fields) = &mut entry {
            fields.insert(name.to_owned(), reference);
        }
        let bytes = serde_json::to_vec(&entry).map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let mac = self.request_mac(&p.record, now)?;
        Ok((bytes, Vault::attachments(provider, id, &mac, &sealed)?))
    }

    /// The keyed reference that stands for (provider, id) on the ledger: an HMAC under the node's
    /// request key, so nobody without the node's keys can test a guessed id against it. The input
    /// is a JSON array, never an object, so it cannot collide with a request MAC.
    fn record_ref(&self, provider: &str, id: &str, now: i64) -> Result<String, PipelineError> {
        let key = self.keys.primary(REQUEST_MAC_KEY, now)?;
        Ok(policies::pseudonym(
            key.material.expose(),
            key.version,
            &json!(["record-ref", provider, id]),
        ))
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
}

fn invalid(path: &str, why: &str) -> PipelineError {
    PipelineError::Record(RecordError {
        code: RecordErrorCode::InvalidField,
        path: Some(path.to_owned()),
        reason: why.to_owned(),
    })
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
