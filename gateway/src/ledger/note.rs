//! C2SP signed notes with Ed25519 (<https://c2sp.org/signed-note>): key names, key ids, the verifier
//! key (`vkey`) text form, signing and opening notes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The signature-type byte C2SP assigns to Ed25519.
const ALG_ED25519: u8 = 0x01;
/// The em dash that starts every signature line.
const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note, a key or a signature was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteError {
    /// The key name is empty, has white space or a `+`.
    #[error("invalid key name {0:?}")]
    BadKeyName(String),
    /// A verifier or signer key string is not of the C2SP form.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// The note is not text of the signed-note form.
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    /// No signature on the note is by a trusted key and valid.
    #[error("no valid signature by a trusted key")]
    Unverified,
    /// Fewer distinct trusted cosigners than required cosigned the note (`cosignature.rs`).
    #[error("{valid} valid cosignatures by distinct members; {required} required")]
    TooFewCosignatures {
        /// How many verified.
        valid: usize,
        /// How many were required.
        required: usize,
    },
    /// The signer could not sign.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// A signer could not sign now: its key is in a token that does not answer. Nothing was signed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("cannot sign: {0}")]
pub struct SignError(pub String);

/// Checks a C2SP key name: non-empty, no Unicode white space, no `+`.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::BadKeyName(name.to_owned()));
    }
    Ok(())
}

/// The 4-byte key id: first bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
pub fn key_id(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ALG_ED25519]);
    h.update(key.as_bytes());
    let digest: [u8; 32] = h.finalize().into();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A trusted public key for notes: name, key id and Ed25519 key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier for `key` under `name`.
    pub fn new(name: &str, key: VerifyingKey) -> Result<NoteVerifier, NoteError> {
        check_name(name)?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            id: key_id(name, &key),
            key,
        })
    }

    /// Parses the C2SP vkey form `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn from_vkey(text: &str) -> Result<NoteVerifier, NoteError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey("expected name+keyid+keydata"));
        };
        let raw = B64
            .decode(data)
            .map_err(|_| NoteError::MalformedKey("key data is not base64"))?;
        let Some((&ALG_ED25519, key)) = raw.split_first() else {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        };
        let key = <[u8; 32]>::try_from(key)
            .ok()
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or(NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        let verifier = NoteVerifier::new(name, key)?;
        if hex::encode(verifier.id) != id_hex {
            return Err(NoteError::MalformedKey("key id does not match the key"));
        }
        Ok(verifier)
    }

    /// The C2SP vkey text form.
    pub fn to_vkey(&self) -> String {
        let mut data = Vec::with_capacity(33);
        data.push(ALG_ED25519);
        data.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> [u8; 4] {
        self.id
    }
}

/// Something that signs note bodies. The ledger takes its checkpoint key through this, so the key can
/// live in a file today and in keymgr (or an HSM) later without the ledger knowing.
pub trait NoteSigner: Send + Sync {
    /// The public half, with its name.
    fn verifier(&self) -> &NoteVerifier;
    /// An Ed25519 signature over `msg`; fails only where the key is outside this process (a
    /// token) and cannot be reached.
    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError>;
}

/// An Ed25519 note signer holding its key in memory. The key is zeroized on drop (ed25519-dalek's
/// `zeroize` feature) and never printed: `Debug` shows only the public verifier.
pub struct Ed25519NoteSigner {
    key: SigningKey,
    verifier: NoteVerifier,
}

impl std::fmt::Debug for Ed25519NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519NoteSigner")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Ed25519NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Ed25519NoteSigner, NoteError> {
        let key = SigningKey::from_bytes(seed);
        let verifier = NoteVerifier::new(name, key.verifying_key())?;
        Ok(Ed25519NoteSigner { key, verifier })
    }

    /// A signer with a fresh random key.
    pub fn generate(name: &str) -> Result<Ed25519NoteSigner, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|_| NoteError::MalformedKey("no system randomness"))?;
        Ed25519NoteSigner::from_seed(name, &seed)
    }

    /// Parses the private key form `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 ‖ seed)>`
    /// (the form Go's `golang.org/x/mod/sumdb/note` uses).
    pub fn from_skey(text: &str) -> Result<Ed25519NoteSigner, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "expected PRIVATE+KEY+name+keyid+keydata",
            ))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NoteError::MalformedKey(
                "expected PRIVATE+KEY+name+keyid+keydata",
            ));
        };
        let raw = Zeroizing::new(
            B64.decode(data)
                .map_err(|_| NoteError::MalformedKey("key data is not base64"))?,
        );
        let Some((&ALG_ED25519, seed)) = raw.split_first() else {
            return Err(NoteError::MalformedKey("not an Ed25519 key"));
        };
        let seed = Zeroizing::new(
            <[u8; 32]>::try_from(seed)
                .map_err(|_| NoteError::MalformedKey("seed is not 32 bytes"))?,
        );
        let signer = Ed25519NoteSigner::from_seed(name, &seed)?;
        if hex::encode(signer.verifier.id) != id_hex {
            return Err(NoteError::MalformedKey("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key form; the caller must keep it secret (it is zeroized on drop).
    pub fn to_skey(&self) -> Zeroizing<String> {
        let mut data = Zeroizing::new(Vec::with_capacity(33));
        data.push(ALG_ED25519);
        data.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.verifier.name,
            hex::encode(self.verifier.id),
            B64.encode(data.as_slice())
        ))
    }
}

impl NoteSigner for Ed25519NoteSigner {
    fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(self.key.sign(msg))
    }
}

/// Signs `body` (which must end in a newline) and returns the whole note.
pub fn sign_note(body: &str, signer: &dyn NoteSigner) -> Result<String, SignError> {
    let v = signer.verifier();
    let mut sig = Vec::with_capacity(68);
    sig.extend_from_slice(&v.id);
    sig.extend_from_slice(&signer.sign(body.as_bytes())?.to_bytes());
    Ok(format!(
        "{body}\n{SIG_PREFIX}{} {}\n",
        v.name,
        B64.encode(sig)
    ))
}

/// One signature line of a note: who claims to have signed, and the signature bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature<'a> {
    /// The key name on the line.
    pub name: &'a str,
    /// The 4-byte key id.
    pub id: [u8; 4],
    /// The signature (for Ed25519, 64 bytes; other lengths are kept and never verify).
    pub sig: Vec<u8>,
}

/// A note split into its body and signature lines, nothing verified yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedNote<'a> {
    /// The signed text, ending with a newline.
    pub body: &'a str,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature<'a>>,
}

/// Splits a note into body and signature lines, checking only its form.
pub fn parse_note(note: &str) -> Result<ParsedNote<'_>, NoteError> {
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    let split = note
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no signature block"))?;
    let (body, sigs) = (&note[..=split], &note[split + 2..]);
    if !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end with a newline",
        ));
    }
    let mut signatures = Vec::new();
    for line in sigs.lines() {
        let rest = line
            .strip_prefix(SIG_PREFIX)
            .ok_or(NoteError::Malformed("bad signature line"))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("bad signature line"))?;
        let raw = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("signature is not base64"))?;
        if raw.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let (id, sig) = raw.split_at(4);
        let id =
            <[u8; 4]>::try_from(id).map_err(|_| NoteError::Malformed("signature too short"))?;
        signatures.push(NoteSignature {
            name,
            id,
            sig: sig.to_vec(),
        });
    }
    Ok(ParsedNote { body, signatures })
}

impl NoteVerifier {
    /// Whether `line` names this key (name and key id), whatever its signature.
    pub fn names(&self, line: &NoteSignature<'_>) -> bool {
        self.name == line.name && self.id == line.id
    }

    /// Whether `line` is this key's valid signature over `body`.
    pub fn verifies(&self, body: &str, line: &NoteSignature<'_>) -> bool {
        // verify_strict rejects the malleable and small-order forms that plain verify allows.
        self.names(line)
            && Signature::from_slice(&line.sig)
                .is_ok_and(|sig| self.key.verify_strict(body.as_bytes(), &sig).is_ok())
    }
}

/// Checks a note's form and that at least one signature on it is by one of `trusted` and valid.
/// Returns the body. Signatures by unknown keys are ignored, as C2SP asks.
pub fn open_note<'a>(note: &'a str, trusted: &[NoteVerifier]) -> Result<&'a str, NoteError> {
    let parsed = parse_note(note)?;
    let verified = parsed
        .signatures
        .iter()
        .any(|line| trusted.iter().any(|v| v.verifies(parsed.body, line)));
    if verified {
        Ok(parsed.body)
    } else {
        Err(NoteError::Unverified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_opens_a_note() {
        let signer = Ed25519NoteSigner::from_seed("example.com/log", &[7u8; 32]).unwrap();
        let note = sign_note("example.com/log\n1\nAAAA\n", &signer).unwrap();
        assert!(note.starts_with("example.com/log\n1\nAAAA\n\n\u{2014} example.com/log "));
        let trusted = [signer.verifier().clone()];
        assert_eq!(open_note(&note, &trusted), Ok("example.com/log\n1\nAAAA\n"));
    }

    #[test]
    fn any_changed_byte_of_the_body_or_signature_fails() {
        let signer = Ed25519NoteSigner::from_seed("log", &[1u8; 32]).unwrap();
        let note = sign_note("log\n5\nabc=\n", &signer).unwrap();
        let trusted = [signer.verifier().clone()];
        for i in 0..note.len() {
            let mut bytes = note.clone().into_bytes();
            bytes[i] ^= 0x01;
            if let Ok(text) = String::from_utf8(bytes) {
                assert!(
                    open_note(&text, &trusted).is_err(),
                    "flipped byte {i} still verified"
                );
            }
        }
    }

    #[test]
    fn untrusted_key_is_refused() {
        let signer = Ed25519NoteSigner::from_seed("log", &[1u8; 32]).unwrap();
        let other = Ed25519NoteSigner::from_seed("log", &[2u8; 32]).unwrap();
        let note = sign_note("log\n5\nabc=\n", &signer).unwrap();
        assert_eq!(
            open_note(&note, &[other.verifier().clone()]),
            Err(NoteError::Unverified)
        );
    }

    #[test]
    fn key_forms_round_trip() {
        let signer = Ed25519NoteSigner::from_seed("ledgergate.local/log", &[9u8; 32]).unwrap();
        let vkey = signer.verifier().to_vkey();
        assert_eq!(NoteVerifier::from_vkey(&vkey).unwrap(), *signer.verifier());
        let again = Ed25519NoteSigner::from_skey(&signer.to_skey()).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        assert!(NoteVerifier::from_vkey("log+00000000+AQ==").is_err());
        assert!(NoteVerifier::new("bad name", signer.verifier().key).is_err());
        assert!(format!("{signer:?}").contains("verifier"));
        assert!(!format!("{signer:?}").contains(&signer.to_skey()[..]));
    }

    #[test]
    fn reproduces_the_go_sumdb_note_reference_vector() {
        // golang.org/x/mod/sumdb/note's published example: Ed25519 is deterministic, so signing the same
        // text with the same key must give the published note byte for byte.
        let skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
        let vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let want = format!(
            "{text}\n\u{2014} PeterNeumann \
             x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        let signer = Ed25519NoteSigner::from_skey(skey).unwrap();
        assert_eq!(signer.verifier().to_vkey(), vkey);
        assert_eq!(sign_note(text, &signer).unwrap(), want);
        let trusted = [NoteVerifier::from_vkey(vkey).unwrap()];
        assert_eq!(open_note(&want, &trusted), Ok(text));
        assert!(open_note(&want.replace("cryptography", "cryptographY"), &trusted).is_err());
    }
}
