//! keymgr's checkpoint-signing key as the ledger takes it: the signer for new checkpoints (none while
//! no version may sign) and the history of every version, for `GET /v1/checkpoint/keys` and for
//! `ledger verify`. The ledger never sees the key store; this is the glue, as `keys` is for transforms.

use std::sync::Arc;

use ed25519_dalek::Signature;
use keymgr::{KeyManager, KeyRecord, Timestamp, VersionRecord, VersionState};

use crate::init::CHECKPOINT_KEY;
use crate::ledger::{
    CheckpointKey, Ed25519NoteSigner, NoteSigner, NoteVerifier, SignError, Signing,
};
use crate::node_key::{IdentityKey as _, TokenKey, public_key};

/// A checkpoint signer whose key is held in the PKCS#11 token (each signature checked, see
/// [`TokenKey`]).
struct TokenNoteSigner {
    key: TokenKey,
    verifier: NoteVerifier,
}

impl NoteSigner for TokenNoteSigner {
    fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        self.key.sign(msg)
    }
}

/// The signer and history of the checkpoint key at `now`, for the log named `origin`.
pub fn signing(keys: &KeyManager, origin: &str, now: Timestamp) -> Result<Signing, keymgr::Error> {
    let record = keys.show(CHECKPOINT_KEY)?;
    let history = record
        .versions
        .iter()
        .map(|v| history(&record, v, origin))
        .collect::<Result<Vec<_>, _>>()?;
    if let Ok(v) = record.usable(now)
        && v.in_token()
    {
        let public = public_key(&record, v)?;
        let verifier = NoteVerifier::new(origin, public).map_err(|e| {
            keymgr::Error::InvalidArgument(format!(
                "the log origin {origin:?} cannot name a checkpoint key: {e}"
            ))
        })?;
        let signer = TokenNoteSigner {
            key: TokenKey::new(keys.token_signer(CHECKPOINT_KEY, v.version)?, public),
            verifier,
        };
        return Ok(Signing {
            signer: Some(Arc::new(signer)),
            expires_at: Some(record.expires_at(v)),
            keys: history,
        });
    }
    let signer = match keys.primary(CHECKPOINT_KEY, now) {
        Ok(key) => {
            let seed: [u8; 32] = key.material.expose().try_into().map_err(|_| {
                keymgr::Error::StoreCorrupt("checkpoint key is not 32 bytes".into())
            })?;
            let seed = zeroize::Zeroizing::new(seed);
            let signer = Ed25519NoteSigner::from_seed(origin, &seed).map_err(|e| {
                keymgr::Error::InvalidArgument(format!(
                    "the log origin {origin:?} cannot name a checkpoint key: {e}"
                ))
            })?;
            Some((
                Arc::new(signer) as Arc<dyn crate::ledger::NoteSigner>,
                key.expires_at,
            ))
        }
        // Revoked, destroyed or expired: the ledger refuses appends until an officer rotates.
        Err(e) if matches!(e.code(), "key_revoked" | "key_expired") => None,
        Err(e) => return Err(e),
    };
    Ok(Signing {
        expires_at: signer.as_ref().map(|(_, at)| *at),
        signer: signer.map(|(s, _)| s),
        keys: history,
    })
}

/// One version as verifiers need it.
fn history(
    record: &KeyRecord,
    v: &VersionRecord,
    origin: &str,
) -> Result<CheckpointKey, keymgr::Error> {
    let corrupt = |why: &str| {
        keymgr::Error::StoreCorrupt(format!("{} version {}: {why}", record.name, v.version))
    };
    let key = public_key(record, v)?;
    let verifier = NoteVerifier::new(origin, key).map_err(|e| corrupt(&e.to_string()))?;
    let states = || v.history.iter().chain(std::iter::once(&v.state));
    Ok(CheckpointKey {
        vkey: verifier.to_vkey(),
        version: v.version,
        state: v.state.name().to_owned(),
        valid_from: v.created_at,
        valid_until: states().find_map(left_service_at),
        compromised_at: states().find_map(compromised_at),
    })
}

/// When a version in this state stopped being used for new work, if the state says.
fn left_service_at(state: &VersionState) -> Option<Timestamp> {
    match state {
        VersionState::Active => None,
        VersionState::Deactivated { at, .. } | VersionState::Destroyed { at, .. } => Some(*at),
        VersionState::Compromised { revoked_at, .. } => Some(*revoked_at),
        VersionState::DestroyScheduled { from, .. } => left_service_at(from),
    }
}

fn compromised_at(state: &VersionState) -> Option<Timestamp> {
    match state {
        VersionState::Compromised { occurred_at, .. } => Some(*occurred_at),
        VersionState::DestroyScheduled { from, .. } => compromised_at(from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymgr::{KekSource, Purpose, RevocationReason, Secret};

    #[test]
    fn follows_rotation_and_compromise() {
        let dir = tempfile::tempdir().unwrap();
        let k = KeyManager::init(
            &dir.path().join("k"),
            &KekSource::Passphrase(Secret::new(b"p".to_vec())),
            0,
            "t",
        )
        .unwrap();
        k.create(
            CHECKPOINT_KEY,
            Purpose::CheckpointSigning,
            None,
            None,
            10,
            "t",
        )
        .unwrap();
        let first = signing(&k, "log", 20).unwrap();
        let v1 = first.signer.as_ref().unwrap().verifier().to_vkey();
        assert_eq!(first.keys.len(), 1);
        assert_eq!(first.keys[0].vkey, v1);
        k.revoke(
            CHECKPOINT_KEY,
            1,
            RevocationReason::Compromised,
            Some(15),
            30,
            "t",
        )
        .unwrap();
        let revoked = signing(&k, "log", 31).unwrap();
        assert!(
            revoked.signer.is_none(),
            "a compromised key never signs again"
        );
        assert_eq!(revoked.keys[0].compromised_at, Some(15));
        assert_eq!(revoked.keys[0].valid_until, Some(30));
        k.rotate(CHECKPOINT_KEY, 40, "t").unwrap();
        let rotated = signing(&k, "log", 41).unwrap();
        let v2 = rotated.signer.as_ref().unwrap().verifier().to_vkey();
        assert_ne!(v1, v2);
        assert_eq!(rotated.keys[1].vkey, v2);
        assert_eq!(rotated.keys[1].state, "active");
    }
}
