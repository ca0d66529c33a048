//! An Ed25519 private key as the node uses it to sign — its identity (channel bindings, consortium
//! cosignatures) and its checkpoints: in this process (a seed unwrapped from the key store, or an
//! edge's key file), or in the PKCS#11 token, where it was made and which it never leaves.

use ed25519_dalek::{Signature, SigningKey, Verifier as _, VerifyingKey};

use crate::ledger::SignError;

/// A key that signs; fallible only where the key lives outside this process.
pub trait IdentityKey: Send + Sync {
    /// The public half.
    fn public(&self) -> VerifyingKey;
    /// An Ed25519 signature over `msg`.
    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError>;
}

impl IdentityKey for SigningKey {
    fn public(&self) -> VerifyingKey {
        self.verifying_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        Ok(ed25519_dalek::Signer::sign(self, msg))
    }
}

/// A key held in the PKCS#11 token: every signature is made there and checked against the public
/// half before it is used, so a token that answers wrongly cannot put an unverifiable signature into
/// a checkpoint, a cosignature or a handshake.
pub struct TokenKey {
    signer: keymgr::TokenSigner,
    public: VerifyingKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("public", &hex::encode(self.public.as_bytes()))
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    /// The key `signer` signs with, whose public half is `public`.
    pub fn new(signer: keymgr::TokenSigner, public: VerifyingKey) -> TokenKey {
        TokenKey { signer, public }
    }
}

impl IdentityKey for TokenKey {
    fn public(&self) -> VerifyingKey {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Signature, SignError> {
        let bytes = self
            .signer
            .sign(msg)
            .map_err(|e| SignError(e.to_string()))?;
        let signature = Signature::from_bytes(&bytes);
        self.public
            .verify(msg, &signature)
            .map_err(|_| SignError("the token's signature does not verify".into()))?;
        Ok(signature)
    }
}

/// The primary version of the Ed25519 key `name` at `now`, from the token when it is held there,
/// else unwrapped from the key store.
pub fn primary(
    keys: &keymgr::KeyManager,
    name: &str,
    now: i64,
) -> Result<std::sync::Arc<dyn IdentityKey>, keymgr::Error> {
    let record = keys.show(name)?;
    if let Ok(v) = record.usable(now)
        && v.in_token()
    {
        let public = public_key(&record, v)?;
        return Ok(std::sync::Arc::new(TokenKey::new(
            keys.token_signer(name, v.version)?,
            public,
        )));
    }
    let key = keys.primary(name, now)?;
    let seed = zeroize::Zeroizing::new(
        <[u8; 32]>::try_from(key.material.expose())
            .map_err(|_| keymgr::Error::StoreCorrupt(format!("{name}: not a 32-byte seed")))?,
    );
    Ok(std::sync::Arc::new(SigningKey::from_bytes(&seed)))
}

/// A version's Ed25519 public key, as the key store records it.
pub fn public_key(
    record: &keymgr::KeyRecord,
    v: &keymgr::VersionRecord,
) -> Result<VerifyingKey, keymgr::Error> {
    let corrupt = |why: &str| {
        keymgr::Error::StoreCorrupt(format!("{} version {}: {why}", record.name, v.version))
    };
    let public: [u8; 32] = v
        .public_key
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("no Ed25519 public key"))?;
    VerifyingKey::from_bytes(&public).map_err(|_| corrupt("invalid public key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_key_signs_as_ed25519_dalek_does() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let dyn_key: &dyn IdentityKey = &key;
        let sig = dyn_key.sign(b"m").unwrap();
        assert_eq!(sig, ed25519_dalek::Signer::sign(&key, b"m"));
        assert!(dyn_key.public().verify(b"m", &sig).is_ok());
    }
}
