//! Reading back: a record with its sealed values and an inclusion proof, and who may read raw entries.

use base64::Engine as _;
use keymgr::Kek;
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
