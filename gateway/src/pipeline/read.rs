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
        let not_found = || PipelineError::NotFound {
            provider: provider.to_owned(),
            id: id.to_owned(),
        };
        let index = self
            .vault
            .submission(provider, id)?
            .ok_or_else(not_found)?
            .index;
        let entry: Value = serde_json::from_slice(&self.ledger.entry(index)?)
            .map_err(|e| VaultError::Corrupt(e.to_string()))?;
        let record_type = entry
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        // The provider that submitted a record may read it back; anyone else needs the read role
        // for its type, and without it gets the answer for a missing id.
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
            // Audited before anything is disclosed: no audit, no answer.
            let detail = format!(
                "provider {provider}, record {id}, fields {}",
                unsealed.join(",")
            );
            self.keys
                .audit_event(crate::keys::unix_now(), &subject.name, "unseal", detail)?;
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
        let not_found = || PipelineError::NotFound {
            provider: provider.to_owned(),
            id: id.to_owned(),
        };
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
        // Opening is unsealing: the owner, or the read and unseal roles; anyone else learns nothing.
        let may = owner
            || policy
                .authorize(subject, Action::Read, record_type)
                .is_ok_and(|rt| subject.roles.iter().any(|r| rt.unseal.contains(r)));
        if !may {
            return Err(not_found());
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
        let commitment = entry
            .pointer(&format!("/payload/{}", path.replace('.', "/")))
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix("sealed:sha256:"))
            .ok_or_else(|| VaultError::Corrupt(format!("no commitment at {path}")))?
            .to_owned();
        if !owner {
            let detail = format!("provider {provider}, record {id}, fields {path} (opening)");
            self.keys
                .audit_event(crate::keys::unix_now(), &subject.name, "unseal", detail)?;
        }
        let checkpoint = self.ledger.checkpoint();
        let size = checkpoint.checkpoint.size;
        let hashes: Vec<String> = self
            .ledger
            .inclusion_proof(index, size)?
            .iter()
            .map(|h| h.to_base64())
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(json!({
            "path": path,
            "value": opened.value,
            "canonical": b64.encode(&opened.canonical),
            "salt": b64.encode(salt),
            "commitment": commitment,
            "index": index,
            "entry": b64.encode(&bytes),
            "leaf_hash": crate::ledger::leaf_hash(&bytes).to_base64(),
            "proof": { "leaf_index": index, "tree_size": size, "hashes": hashes },
            "checkpoint": checkpoint.note,
        }))
    }
}
