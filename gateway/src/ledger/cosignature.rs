//! C2SP tlog cosignatures, Ed25519 form (`cosignature/v1`, <https://c2sp.org/tlog-cosignature>):
//! a consortium member's statement that, as of a time, the checkpoint is the largest consistent
//! tree head it has seen of the log. Each member cosigns with its node identity key; a client
//! trusts a checkpoint once `k` of the `n` members it knows have cosigned it ([`verify_quorum`]), so
//! no single member can show it a history the others did not check.
//!
//! A cosignature line is `— <name> base64(key id ‖ u64 BE timestamp ‖ Ed25519 signature)`; the key
//! id is `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]`; the signed message is
//! `"cosignature/v1\ntime <timestamp>\n"` followed by the whole note body.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use super::note::{NoteError, NoteSignature, NoteVerifier, parse_note};

/// The signature-type byte C2SP assigns to Ed25519 cosignatures.
const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Timestamp and signature: what follows the key id on a cosignature line.
const COSIGNATURE_LEN: usize = 8 + 64;
/// The largest timestamp the format allows.
const MAX_TIMESTAMP: u64 = (1 << 63) - 1;

/// A cosigner as clients know it: name and Ed25519 public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cosigner {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

/// The cosigned message: the header, the time and the note body.
fn message(timestamp: u64, body: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{body}").into_bytes()
}

impl Cosigner {
    /// The cosigner `name` with `key`. The name follows the signed-note rules (non-empty, no white
    /// space, no `+`).
    pub fn new(name: &str, key: VerifyingKey) -> Result<Cosigner, NoteError> {
        if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
            return Err(NoteError::BadKeyName(name.to_owned()));
        }
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([b'\n', ALG_COSIGNATURE_V1]);
        h.update(key.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        Ok(Cosigner {
            name: name.to_owned(),
            id: [digest[0], digest[1], digest[2], digest[3]],
            key,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timestamp of `line` if it is this cosigner's valid cosignature over `body`.
    pub fn verifies(&self, body: &str, line: &NoteSignature<'_>) -> Option<u64> {
        if line.name != self.name || line.id != self.id || line.sig.len() != COSIGNATURE_LEN {
            return None;
        }
        let (time, sig) = line.sig.split_at(8);
        let timestamp = u64::from_be_bytes(time.try_into().ok()?);
        if timestamp > MAX_TIMESTAMP {
            return None;
        }
        let sig = Signature::from_slice(sig).ok()?;
        // verify_strict: no malleable or small-order forms.
        self.key
            .verify_strict(&message(timestamp, body), &sig)
            .ok()
            .map(|()| timestamp)
    }
}

/// The cosignature line of `signer` (named `name`) over a note body, at `timestamp`, newline
/// included: append it to the note's signature lines.
pub fn cosign(
    body: &str,
    name: &str,
    signer: &dyn crate::node_key::IdentityKey,
    timestamp: u64,
) -> Result<String, NoteError> {
    let cosigner = Cosigner::new(name, signer.public())?;
    if timestamp > MAX_TIMESTAMP {
        return Err(NoteError::Malformed("timestamp over 2^63 - 1"));
    }
    let mut value = Vec::with_capacity(4 + COSIGNATURE_LEN);
    value.extend_from_slice(&cosigner.id);
    value.extend_from_slice(&timestamp.to_be_bytes());
    value.extend_from_slice(&signer.sign(&message(timestamp, body))?.to_bytes());
    Ok(format!("\u{2014} {name} {}\n", B64.encode(value)))
}

/// A checkpoint as far as a client checked it: its body and who cosigned it, when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum<'a> {
    /// The note body (the checkpoint).
    pub body: &'a str,
    /// The cosigners whose cosignature verified, with their timestamps, in the note's order.
    pub cosigned_by: Vec<(String, u64)>,
}

/// Checks a note as a client of a consortium would: signed by the log (`log`), and cosigned by at
/// least `required` distinct members of `cosigners`. Lines by keys it does not know are ignored (C2SP
/// asks it); a known cosigner counts once however many lines it has.
pub fn verify_quorum<'a>(
    note: &'a str,
    log: &NoteVerifier,
    cosigners: &[Cosigner],
    required: usize,
) -> Result<Quorum<'a>, NoteError> {
    let parsed = parse_note(note)?;
    if !parsed
        .signatures
        .iter()
        .any(|line| log.verifies(parsed.body, line))
    {
        return Err(NoteError::Unverified);
    }
    let mut seen = HashSet::new();
    let mut cosigned_by = Vec::new();
    for line in &parsed.signatures {
        for c in cosigners {
            if let Some(t) = c.verifies(parsed.body, line)
                && seen.insert(c.name.clone())
            {
                cosigned_by.push((c.name.clone(), t));
            }
        }
    }
    if cosigned_by.len() < required {
        return Err(NoteError::TooFewCosignatures {
            valid: cosigned_by.len(),
            required,
        });
    }
    Ok(Quorum {
        body: parsed.body,
        cosigned_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::{Ed25519NoteSigner, NoteSigner as _, sign_note};
    use ed25519_dalek::SigningKey;

    const BODY: &str = "example.org/log\n7\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn member(i: u8) -> (String, SigningKey) {
        (
            format!("member-{i}.example.org"),
            SigningKey::from_bytes(&[i; 32]),
        )
    }

    fn cosigner(i: u8) -> Cosigner {
        let (name, key) = member(i);
        Cosigner::new(&name, key.verifying_key()).unwrap()
    }

    fn log() -> Ed25519NoteSigner {
        Ed25519NoteSigner::from_seed("example.org/log", &[9u8; 32]).unwrap()
    }

    /// The log's note with the cosignatures of `members` appended.
    fn cosigned(members: &[u8]) -> String {
        let mut note = sign_note(BODY, &log()).unwrap();
        for i in members {
            let (name, key) = member(*i);
            note.push_str(&cosign(BODY, &name, &key, 1_700_000_000 + u64::from(*i)).unwrap());
        }
        note
    }

    #[test]
    fn k_of_n_counts_distinct_valid_members_only() {
        let members = [cosigner(1), cosigner(2), cosigner(3)];
        let log = log().verifier().clone();
        let note = cosigned(&[1, 3]);
        let q = verify_quorum(&note, &log, &members, 2).unwrap();
        assert_eq!(q.body, BODY);
        assert_eq!(
            q.cosigned_by,
            vec![
                ("member-1.example.org".to_owned(), 1_700_000_001),
                ("member-3.example.org".to_owned(), 1_700_000_003)
            ]
        );
        assert_eq!(
            verify_quorum(&cosigned(&[1, 3]), &log, &members, 3),
            Err(NoteError::TooFewCosignatures {
                valid: 2,
                required: 3
            })
        );
        // One member twice is one cosignature; a stranger's is ignored.
        assert!(matches!(
            verify_quorum(&cosigned(&[1, 1, 7]), &log, &members, 2),
            Err(NoteError::TooFewCosignatures { valid: 1, .. })
        ));
        // Without the log's own signature nothing counts.
        let other_log = Ed25519NoteSigner::from_seed("example.org/log", &[8u8; 32]).unwrap();
        assert_eq!(
            verify_quorum(&cosigned(&[1, 2, 3]), other_log.verifier(), &members, 1),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn a_cosignature_binds_body_time_name_and_key() {
        let members = [cosigner(1)];
        let log = log().verifier().clone();
        let note = cosigned(&[1]);
        assert!(verify_quorum(&note, &log, &members, 1).is_ok());
        // Another body (a forked history) does not carry the cosignature over.
        let forked = note.replacen("\n7\n", "\n8\n", 1);
        assert!(verify_quorum(&forked, &log, &members, 1).is_err());
        // A changed byte anywhere in the cosignature line breaks it.
        let line_start = note.rfind('\u{2014}').unwrap();
        for at in line_start + "\u{2014} member-1.example.org ".len()..note.len() - 1 {
            let mut bytes = note.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            if changed == note {
                continue;
            }
            assert!(
                verify_quorum(&changed, &log, &members, 1).is_err(),
                "byte {at} changed and still verified"
            );
        }
        // A timestamp over 2^63 - 1 is refused when signing.
        let (name, key) = member(1);
        assert!(cosign(BODY, &name, &key, 1 << 63).is_err());
        assert!(Cosigner::new("bad name", key.verifying_key()).is_err());
    }

    #[test]
    fn an_independent_ed25519_agrees_both_ways() {
        // Python's `cryptography` package (OpenSSL's Ed25519; scripts/test installs it): it checks
        // our line, and makes one we check.
        let (name, key) = member(4);
        let line = cosign(BODY, &name, &key, 1_234_567_890).unwrap();
        let script = r#"
import base64, hashlib, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
body, name, line = sys.argv[1], sys.argv[2], sys.argv[3]
priv = Ed25519PrivateKey.from_private_bytes(bytes([4]) * 32)
pub = priv.public_key().public_bytes_raw()
key_id = hashlib.sha256(name.encode() + b"\n\x04" + pub).digest()[:4]
value = base64.b64decode(line.split(" ")[2])
assert value[:4] == key_id, "key id"
ts = int.from_bytes(value[4:12], "big")
priv.public_key().verify(value[12:], f"cosignature/v1\ntime {ts}\n{body}".encode())
mine = key_id + (987654321).to_bytes(8, "big") + priv.sign(f"cosignature/v1\ntime 987654321\n{body}".encode())
print("\u2014 " + name + " " + base64.b64encode(mine).decode())
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", script, BODY, &name, line.trim_end()])
            .output()
            .expect("python3 (scripts/test installs it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "python refused our cosignature: {stderr}"
        );
        let theirs = String::from_utf8(out.stdout).unwrap();
        let note = format!("{}{theirs}", sign_note(BODY, &log()).unwrap());
        let q = verify_quorum(&note, log().verifier(), &[cosigner(4)], 1).unwrap();
        assert_eq!(q.cosigned_by, vec![(name, 987_654_321)]);
    }
}
