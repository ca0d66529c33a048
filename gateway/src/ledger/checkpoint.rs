//! Checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed statement "the log named `origin` has
//! `size` entries and this root".

use super::hash::Hash;
use super::note::{NoteError, NoteSigner, NoteVerifier, open_note, sign_note};

/// An unsigned checkpoint body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name, by convention a schema-less URL (`ledgergate.local/log`).
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root of the first `size` entries.
    pub root: Hash,
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The signed-note envelope is bad or no trusted signature verifies.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The body is not `origin\nsize\nroot\n[extensions]`.
    #[error("malformed checkpoint body: {0}")]
    Malformed(&'static str),
}

impl Checkpoint {
    /// The note body: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Parses a body. Extension lines after the root are allowed by C2SP and ignored.
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("no final newline"))?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("empty origin"))?;
        let size_text = lines
            .next()
            .ok_or(CheckpointError::Malformed("no tree size"))?;
        // Decimal without sign or leading zeros, so that one size has one spelling.
        let canonical = !size_text.is_empty()
            && size_text.bytes().all(|b| b.is_ascii_digit())
            && (size_text == "0" || !size_text.starts_with('0'));
        let size = canonical
            .then(|| size_text.parse::<u64>().ok())
            .flatten()
            .ok_or(CheckpointError::Malformed(
                "tree size is not a canonical decimal",
            ))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or(CheckpointError::Malformed("root is not base64 of 32 bytes"))?;
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Signs the checkpoint.
    pub fn sign(
        &self,
        signer: &dyn NoteSigner,
    ) -> Result<SignedCheckpoint, super::note::SignError> {
        Ok(SignedCheckpoint {
            checkpoint: self.clone(),
            note: sign_note(&self.body(), signer)?,
        })
    }
}

/// A checkpoint with its signed-note text, exactly as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The whole signed note, byte for byte as it was published.
    pub note: String,
}

impl SignedCheckpoint {
    /// Verifies a signed note against the trusted keys and parses its body.
    pub fn open(note: &str, trusted: &[NoteVerifier]) -> Result<SignedCheckpoint, CheckpointError> {
        let body = open_note(note, trusted)?;
        Ok(SignedCheckpoint {
            checkpoint: Checkpoint::parse_body(body)?,
            note: note.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::hash::leaf_hash;
    use crate::ledger::note::Ed25519NoteSigner;

    #[test]
    fn body_round_trips_and_signature_verifies() {
        let signer = Ed25519NoteSigner::from_seed("ledgergate.local/log", &[3u8; 32]).unwrap();
        let cp = Checkpoint {
            origin: "ledgergate.local/log".into(),
            size: 42,
            root: leaf_hash(b"r"),
        };
        let signed = cp.sign(&signer).unwrap();
        let opened = SignedCheckpoint::open(&signed.note, &[signer.verifier().clone()]).unwrap();
        assert_eq!(opened, signed);
        assert!(signed.note.starts_with("ledgergate.local/log\n42\n"));
    }

    #[test]
    fn rejects_malformed_bodies() {
        let root = leaf_hash(b"r").to_base64();
        for bad in [
            format!("log\n42\n{root}"),
            format!("\n42\n{root}\n"),
            format!("log\n042\n{root}\n"),
            format!("log\n-1\n{root}\n"),
            format!("log\n+1\n{root}\n"),
            "log\n1\nAAAA\n".to_owned(),
            format!("log\n1\n{root}\n\n"),
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "accepted {bad:?}");
        }
        assert!(Checkpoint::parse_body(&format!("log\n1\n{root}\next line\n")).is_ok());
    }

    proptest::proptest! {
        /// Any single flipped bit of a checkpoint's signature, size or root makes it fail to verify.
        #[test]
        fn any_flipped_bit_fails(size in proptest::prelude::any::<u64>(), seed in proptest::prelude::any::<[u8; 32]>(), bit in 0usize..(68 * 8)) {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let signer = Ed25519NoteSigner::from_seed("ledgergate.local/log", &seed).unwrap();
            let trusted = [signer.verifier().clone()];
            let cp = Checkpoint { origin: "ledgergate.local/log".into(), size, root: leaf_hash(&seed) };
            let signed = cp.sign(&signer).unwrap();
            proptest::prop_assert!(SignedCheckpoint::open(&signed.note, &trusted).is_ok());
            // The signature: key id (4 bytes) and Ed25519 signature (64 bytes).
            let (head, sig) = signed.note.rsplit_once(' ').unwrap();
            let mut raw = b64.decode(sig.trim_end()).unwrap();
            raw[bit / 8] ^= 1 << (bit % 8);
            let forged = format!("{head} {}\n", b64.encode(&raw));
            proptest::prop_assert!(SignedCheckpoint::open(&forged, &trusted).is_err());
            // The body: another size or a root with one bit flipped, under the original signature.
            let other_size = Checkpoint { size: size ^ (1 << (bit % 64)), ..cp.clone() };
            let mut root = cp.root;
            root.0[(bit / 8) % 32] ^= 1 << (bit % 8);
            let other_root = Checkpoint { root, ..cp.clone() };
            for body in [other_size.body(), other_root.body()] {
                let note = signed.note.replacen(&cp.body(), &body, 1);
                proptest::prop_assert!(SignedCheckpoint::open(&note, &trusted).is_err());
            }
        }
    }
}
