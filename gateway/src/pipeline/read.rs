//! Reading back: a record with its sealed values and an inclusion proof, and who may read raw entries.

use base64::Engine as _;
use policies::{Action, PeerIdentity};
use serde_json::{Map, Value, json};

use super::{AUDITOR_ROLE, Pipeline, PipelineError, forbidden};
use crate::vault::{SealedRecord, VaultError};

impl Pipeline {
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

    /// Reads a record back: the desensitized entry, its sealed fields, and an inclusion proof against
    /// the latest checkpoint.
    ///
    /// Who sees what: the provider that submitted the record may read it; any other subject needs the
    /// read role for its type and, without it, gets the same `not_found` as for an id that does not
    /// exist (no existence oracle). Sealed values come in clear only to the
    /// provider that submitted the record and to roles in the type's `unseal`, and every read in clear
    /// by anyone but the provider is in the audit trail before the answer is sent; everyone else sees
    /// `{"status": "sealed"}` (or `shredded`), never the value.
    pub fn read(
        &self,
        peer: &PeerIdentity,
        provider: Option<&str>,
        id: &str,
    ) -> Result<Value, PipelineError> {
        let policy = self.policy();
        let subject = policy.identify(peer)?;
        let provider = provider.unwrap_or(&subject.name);
        let found = self.find(&policy, subject, provider, id)?;
        let (owner, may_unseal) = (found.owner, found.may_unseal);
        let mut sealed = Map::new();
        let mut unsealed = Vec::new();
        for (path, rec) in self.vault.sealed(provider, id)? {
            let opened = if may_unseal {
                self.open_sealed(provider, id, &path, &rec)
            } else if self.destroyed(&rec) {
                json!({ "status": "shredded" })
            } else {
                json!({ "status": "sealed" })
            };
            if !owner && opened.get("value").is_some() {
                unsealed.push(path.clone());
            }
            sealed.insert(path, opened);
        }
        if !unsealed.is_empty() {
            let fields = unsealed.join(",");
            self.audit_unseal(&subject.name, provider, found.index, &fields)?;
            self.count_unseals(&subject.name, &found.record_type, unsealed.len());
        }
        let (proof, checkpoint) = self.proof(found.index)?;
        Ok(json!({
            "record": found.entry,
            "sealed": sealed,
            "proof": proof,
            "checkpoint": checkpoint,
        }))
    }

    /// A stored record as `subject` may see it: the provider that submitted it, or a role with read
    /// for its type; anyone else gets the answer for a missing id.
    fn find(
        &self,
        policy: &policies::PolicySet,
        subject: &policies::Subject,
        provider: &str,
        id: &str,
    ) -> Result<Found, PipelineError> {
        let not_found = || PipelineError::NotFound {
            provider: provider.to_owned(),
            id: id.to_owned(),
        };
        if provider != subject.name {
            // Tried or done, a read of another provider's record counts.
            self.risk.observe(crate::risk::Observation::ForeignRead {
                subject: &subject.name,
            });
        }
        let index = self
            .vault
            .submission(provider, id)?
            .ok_or_else(not_found)?
            .index;
        let bytes = self.ledger.entry(index)?;
        let entry: Value =
            serde_json::from_slice(&bytes).map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let record_type = entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let owner = subject.name == provider;
        let rt = if owner {
            policy
                .record_types()
                .get(record_type)
                .ok_or_else(not_found)?
        } else {
            policy
                .authorize(subject, Action::Read, record_type)
                .map_err(|_| not_found())?
        };
        let may_unseal = owner || subject.roles.iter().any(|r| rt.unseal.contains(r));
        Ok(Found {
            index,
            record_type: rt.name.clone(),
            bytes,
            entry,
            owner,
            may_unseal,
        })
    }

    /// Records a read in clear by someone other than the provider, durably, before anything is
    /// disclosed: no audit, no answer. The record is named by its ledger index, not its id (the
    /// journal is copied into the shared ledger, where ids are kept keyed).
    fn audit_unseal(
        &self,
        who: &str,
        provider: &str,
        index: u64,
        fields: &str,
    ) -> Result<(), PipelineError> {
        let detail = format!("provider {provider}, entry {index}, fields {fields}");
        Ok(self
            .keys
            .audit_event(crate::keys::unix_now(), who, "unseal", detail)?)
    }

    /// Counts and logs values read in clear by someone other than their owner (after the audit
    /// record). The log names the policy subject (an organisation) and the type, never the record.
    fn count_unseals(&self, reader: &str, record_type: &str, values: usize) {
        tracing::warn!(
            event = "unseal",
            reader,
            record_type,
            values,
            "sealed values read in clear by a non-owner"
        );
        self.metrics
            .unseals
            .with_label_values(&[record_type])
            .inc_by(u64::try_from(values).unwrap_or(u64::MAX));
    }

    /// The inclusion proof of entry `index` against the latest checkpoint, and that checkpoint.
    fn proof(&self, index: u64) -> Result<(Value, String), PipelineError> {
        let checkpoint = self.ledger.checkpoint();
        let proof = self.proof_at(index, checkpoint.checkpoint.size)?;
        Ok((proof, checkpoint.note.clone()))
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries, as answers carry it:
    /// `{leaf_index, tree_size, hashes}`.
    pub(super) fn proof_at(&self, index: u64, size: u64) -> Result<Value, PipelineError> {
        let hashes: Vec<String> = self
            .ledger
            .inclusion_proof(index, size)?
            .iter()
            .map(|h| h.to_base64())
            .collect();
        Ok(json!({ "leaf_index": index, "tree_size": size, "hashes": hashes }))
    }

    /// Whether the key a value was sealed under is destroyed (shredded), without unwrapping it.
    fn destroyed(&self, rec: &SealedRecord) -> bool {
        self.keys.show(&rec.key).is_ok_and(|r| {
            r.version(rec.version)
                .is_none_or(|v| matches!(v.state, keymgr::VersionState::Destroyed { .. }))
        })
    }

    fn open_sealed(&self, provider: &str, id: &str, path: &str, rec: &SealedRecord) -> Value {
        match self.unseal(provider, id, path, rec) {
            Ok(opened) => json!({ "status": "sealed", "value": opened.value }),
            Err(PipelineError::Shredded { .. }) => json!({ "status": "shredded" }),
            Err(_) => json!({ "status": "unavailable" }),
        }
    }

    /// Opens one sealed value under its subject key.
    fn unseal(
        &self,
        provider: &str,
        id: &str,
        path: &str,
        rec: &SealedRecord,
    ) -> Result<crate::vault::Opened, PipelineError> {
        let material = match self.keys.version_material(&rec.key, rec.version) {
            Ok(m) => m,
            Err(keymgr::Error::Illegal(keymgr::TransitionError::Destroyed(_))) => {
                return Err(PipelineError::Shredded {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        crate::vault::open(&material, (provider, id, path), &rec.blob)
            .map_err(|e| VaultError::Corrupt(e.to_string()).into())
    }

    /// The opening of one sealed field's commitment, for the provider that submitted the record or
    /// a role in the type's `unseal` (audited as a read in clear): the value, the salt, the exact
    /// entry bytes that hold the commitment, and the entry's inclusion proof against the latest
    /// checkpoint, so that anyone can check the value against the ledger (docs/gateway.md,
    /// "Openings"). A shredded field has none.
    pub fn opening(
        &self,
        peer: &PeerIdentity,
        provider: Option<&str>,
        id: &str,
        path: &str,
    ) -> Result<Value, PipelineError> {
        let policy = self.policy();
        let subject = policy.identify(peer)?;
        let provider = provider.unwrap_or(&subject.name);
        let found = self.find(&policy, subject, provider, id)?;
        // Opening is unsealing: the owner, or the read and unseal roles; anyone else learns nothing.
        if !found.may_unseal {
            return Err(PipelineError::NotFound {
                provider: provider.to_owned(),
                id: id.to_owned(),
            });
        }
        let rec = self
            .vault
            .sealed(provider, id)?
            .into_iter()
            .find(|(p, _)| p == path)
            .map(|(_, rec)| rec)
            .ok_or_else(|| PipelineError::NoOpening {
                path: path.to_owned(),
                why: "the record has no sealed field at that path".into(),
            })?;
        let opened = self.unseal(provider, id, path, &rec)?;
        let salt = opened.salt.ok_or_else(|| PipelineError::NoOpening {
            path: path.to_owned(),
            why: "sealed before commitments could be opened (its salt was not kept)".into(),
        })?;
        let commitment = found
            .entry
            .pointer(&format!("/payload/{}", path.replace('.', "/")))
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix("sealed:sha256:"))
            .ok_or_else(|| VaultError::Corrupt(format!("no commitment at {path}")))?
            .to_owned();
        if !found.owner {
            self.audit_unseal(
                &subject.name,
                provider,
                found.index,
                &format!("{path} (opening)"),
            )?;
            self.count_unseals(&subject.name, &found.record_type, 1);
        }
        let (proof, checkpoint) = self.proof(found.index)?;
        let (index, bytes) = (found.index, &found.bytes);
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(json!({
            "path": path,
            "value": opened.value,
            "canonical": b64.encode(&opened.canonical),
            "salt": b64.encode(salt),
            "commitment": commitment,
            "index": index,
            "entry": b64.encode(bytes),
            "leaf_hash": crate::ledger::leaf_hash(bytes).to_base64(),
            "proof": proof,
            "checkpoint": checkpoint,
        }))
    }
}

/// A stored record found for a reader.
struct Found {
    index: u64,
    /// Its record type, as the policy declares it.
    record_type: String,
    /// The entry's exact bytes, and parsed.
    bytes: Vec<u8>,
    entry: Value,
    /// Whether the reader is the provider that submitted it.
    owner: bool,
    /// Whether the reader may see its sealed values in clear.
    may_unseal: bool,
}
