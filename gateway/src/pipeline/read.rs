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
