//! Who signs the ledger's checkpoints, and the history of every key that ever did.
//!
//! The signer can change while the ledger runs (a rotation, a revocation): the change goes through the
//! writer like an append, so every group committed after it is signed by the new key, or refused when
//! there is none (a compromised key is never used again, not even until a restart). The history of the
//! checkpoint keys is kept in the store beside the checkpoints they signed, so that `ledger verify` can
//! tell, offline, which checkpoints a key signed after its compromise.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::checkpoint::SignedCheckpoint;
use super::error::LedgerError;
use super::note::{NoteError, NoteSigner, NoteVerifier, parse_note, sign_note};
use super::store::Batch;

/// One checkpoint key version as verifiers need to know it (`GET /v1/checkpoint/keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointKey {
    /// The C2SP verifier key.
    pub vkey: String,
    /// The key manager's version number.
    pub version: u32,
    /// `active`, `deactivated`, `compromised`, `destroy-scheduled` or `destroyed`.
    pub state: String,
    /// When the version was made (RFC 3339): it signed nothing before.
    #[serde(with = "rfc3339")]
    pub valid_from: i64,
    /// When it stopped being used for new checkpoints (rotated away, revoked or destroyed), if it did.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub valid_until: Option<i64>,
    /// When the version was compromised: nothing it signed at or after this time may be believed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rfc3339_option"
    )]
    pub compromised_at: Option<i64>,
}

impl CheckpointKey {
    /// Whether a signature this version made at `made_at` (unknown: `None`) may be believed.
    pub fn trusted_at(&self, made_at: Option<i64>) -> bool {
        match (self.compromised_at, made_at) {
            (None, _) => true,
            (Some(c), Some(t)) => t < c,
            // A compromised key's signature of unknown age proves nothing.
            (Some(_), None) => false,
        }
    }
}

/// The signer for new checkpoints (none: appends are refused) and the history of every checkpoint
/// key version.
#[derive(Clone, Default)]
pub struct Signing {
    /// Signs new checkpoints; `None` when no version may (revoked, expired, destroyed).
    pub signer: Option<Arc<dyn NoteSigner>>,
    /// When the signer expires (Unix seconds): from then on appends are refused, as with no signer.
    pub expires_at: Option<i64>,
    /// Every version, oldest first.
    pub keys: Vec<CheckpointKey>,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field(
                "signer",
                &self.signer.as_ref().map(|s| s.verifier().to_vkey()),
            )
            .field("expires_at", &self.expires_at)
            .field("keys", &self.keys)
            .finish()
    }
}

impl Signing {
    /// A fixed signer with no recorded history (tools, tests, benchmarks).
    pub fn fixed(signer: Arc<dyn NoteSigner>) -> Signing {
        Signing {
            signer: Some(signer),
            expires_at: None,
            keys: Vec::new(),
        }
    }

    /// The signer, unless there is none or it has expired at `now`.
    pub fn usable_signer(&self, now: i64) -> Option<&Arc<dyn NoteSigner>> {
        self.signer
            .as_ref()
            .filter(|_| self.expires_at.is_none_or(|at| now < at))
    }

    /// The history entry of `vkey`, if recorded.
    pub fn key(&self, vkey: &str) -> Option<&CheckpointKey> {
        self.keys.iter().find(|k| k.vkey == vkey)
    }
}

/// The note of `head` signed by `signer`, keeping the signature lines of keys in `keys` that are not
/// compromised: a rotation keeps the old key's signature (clients that know only it still verify the
/// head), a compromise drops it (it proves nothing any more).
pub(crate) fn countersign(
    head: &str,
    signer: &dyn NoteSigner,
    keys: &[CheckpointKey],
) -> Result<String, NoteError> {
    let parsed = parse_note(head)?;
    let mut note = sign_note(parsed.body, signer)?;
    let new_key = signer.verifier();
    for (line, text) in parsed.signatures.iter().zip(signature_lines(head)) {
        let keep = keys.iter().any(|k| {
            k.compromised_at.is_none()
                && NoteVerifier::from_vkey(&k.vkey).is_ok_and(|v| v.names(line) && v != *new_key)
        });
        if keep {
            note.push_str(text);
            note.push('\n');
        }
    }
    Ok(note)
}

/// The head countersigned by `signing`'s signer, or `None` when it needs no countersignature (the
/// signer signed it already, or there is no signer).
pub(crate) fn countersigned(
    head: &SignedCheckpoint,
    signing: &Signing,
) -> Result<Option<SignedCheckpoint>, LedgerError> {
    let Some(signer) = &signing.signer else {
        return Ok(None);
    };
    let corrupt = |e: NoteError| LedgerError::Corrupt(format!("latest checkpoint: {e}"));
    let parsed = parse_note(&head.note).map_err(corrupt)?;
    if parsed
        .signatures
        .iter()
        .any(|line| signer.verifier().verifies(parsed.body, line))
    {
        return Ok(None);
    }
    let note = countersign(&head.note, signer.as_ref(), &signing.keys).map_err(corrupt)?;
    Ok(Some(SignedCheckpoint {
        checkpoint: head.checkpoint.clone(),
        note,
    }))
}

/// Adds to `batch` every key of `signing` whose recorded history differs from `recorded`, and the
/// signer's key if it is not recorded at all; says whether it added anything.
pub(crate) fn record_keys(
    batch: &mut Batch,
    recorded: &[(String, Option<CheckpointKey>)],
    signing: &Signing,
) -> bool {
    let mut changed = false;
    for key in &signing.keys {
        let same = recorded
            .iter()
            .any(|(vkey, history)| *vkey == key.vkey && history.as_ref() == Some(key));
        if !same {
            batch.put_key(&key.vkey, Some(key));
            changed = true;
        }
    }
    if let Some(signer) = &signing.signer {
        let vkey = signer.verifier().to_vkey();
        let known = recorded.iter().any(|(v, _)| *v == vkey) || signing.key(&vkey).is_some();
        if !known {
            batch.put_key(&vkey, None);
            changed = true;
        }
    }
    changed
}

/// The signature lines of a well-formed note, as text.
fn signature_lines(note: &str) -> impl Iterator<Item = &str> {
    let start = note.rfind("\n\n").map_or(note.len(), |i| i + 2);
    note.get(start..).unwrap_or_default().lines()
}

mod rfc3339 {
    use serde::{Deserialize as _, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        let text = OffsetDateTime::from_unix_timestamp(*t)
            .ok()
            .and_then(|d| d.format(&Rfc3339).ok())
            .ok_or_else(|| serde::ser::Error::custom("time out of range"))?;
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(OffsetDateTime::unix_timestamp)
            .map_err(|_| serde::de::Error::custom("expected an RFC 3339 time"))
    }
}

mod rfc3339_option {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wrapped(#[serde(with = "super::rfc3339")] i64);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::{Ed25519NoteSigner, open_note};

    fn key(signer: &Ed25519NoteSigner, version: u32, compromised_at: Option<i64>) -> CheckpointKey {
        CheckpointKey {
            vkey: signer.verifier().to_vkey(),
            version,
            state: "active".into(),
            valid_from: 0,
            valid_until: None,
            compromised_at,
        }
    }

    #[test]
    fn a_countersignature_keeps_a_sound_old_signature_and_drops_a_compromised_one() {
        let old = Ed25519NoteSigner::from_seed("log", &[1; 32]).unwrap();
        let new = Ed25519NoteSigner::from_seed("log", &[2; 32]).unwrap();
        let head = sign_note(
            "log\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            &old,
        )
        .unwrap();
        let rotated = countersign(&head, &new, &[key(&old, 1, None), key(&new, 2, None)]).unwrap();
        assert!(open_note(&rotated, &[old.verifier().clone()]).is_ok());
        assert!(open_note(&rotated, &[new.verifier().clone()]).is_ok());
        let revoked =
            countersign(&head, &new, &[key(&old, 1, Some(5)), key(&new, 2, None)]).unwrap();
        assert!(open_note(&revoked, &[old.verifier().clone()]).is_err());
        assert!(open_note(&revoked, &[new.verifier().clone()]).is_ok());
        assert_eq!(parse_note(&revoked).unwrap().signatures.len(), 1);
    }

    #[test]
    fn history_round_trips_through_json_with_rfc3339_times() {
        let k = CheckpointKey {
            vkey: "log+01020304+AQ".into(),
            version: 2,
            state: "compromised".into(),
            valid_from: 1_764_547_200,
            valid_until: Some(1_764_547_260),
            compromised_at: Some(1_764_547_230),
        };
        let json = serde_json::to_value(&k).unwrap();
        assert_eq!(json["valid_from"], "2025-12-01T00:00:00Z");
        assert_eq!(json["compromised_at"], "2025-12-01T00:00:30Z");
        assert_eq!(serde_json::from_value::<CheckpointKey>(json).unwrap(), k);
        assert!(k.trusted_at(Some(1_764_547_229)));
        assert!(!k.trusted_at(Some(1_764_547_230)));
        assert!(!k.trusted_at(None));
    }
}
