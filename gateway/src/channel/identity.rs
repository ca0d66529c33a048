//! Binding a node's Noise static key to its Ed25519 identity, the libp2p-noise way: a handshake
//! payload carries the identity public key and its signature over
//! `"ledgergate-noise-static:" ‖ static public key`, and the receiver checks that signature against
//! the static key the handshake actually authenticated. So a peer proves both that it holds the
//! static key (Noise's DH) and that the identity vouches for it (the signature); the identity is what
//! peers are authorised by, and it outlives static-key rotations.

use ed25519_dalek::{Signature, VerifyingKey};

use super::ChannelError;
use crate::ledger::SignError;
use crate::node_key::IdentityKey;

/// What the signature covers, before the static public key.
pub const BINDING_CONTEXT: &[u8] = b"ledgergate-noise-static:";
/// Bytes of a binding payload: identity public key (32) ‖ signature (64).
pub const BINDING_LEN: usize = 32 + 64;

/// A node's public identity: its Ed25519 verifying key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity(pub [u8; 32]);

impl Identity {
    /// The identity of `key`.
    pub fn of(key: &dyn IdentityKey) -> Identity {
        Identity(key.public().to_bytes())
    }

    /// Lowercase hex, as configuration and logs write it.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Identity> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(Identity(<[u8; 32]>::try_from(bytes.as_slice()).ok()?))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.to_hex())
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn signed_message(static_public: &[u8]) -> Vec<u8> {
    [BINDING_CONTEXT, static_public].concat()
}

/// The payload that binds `static_public` to `identity` (made once per configuration: a key in a
/// token signs once, not at every handshake).
pub fn bind(
    identity: &dyn IdentityKey,
    static_public: &[u8],
) -> Result<[u8; BINDING_LEN], SignError> {
    let signature = identity.sign(&signed_message(static_public))?;
    let mut out = [0u8; BINDING_LEN];
    let (key, sig) = out.split_at_mut(32);
    key.copy_from_slice(&identity.public().to_bytes());
    sig.copy_from_slice(&signature.to_bytes());
    Ok(out)
}

/// The identity a binding payload names, if its signature covers `remote_static` (the static key the
/// handshake authenticated). Strict verification: no malleable or small-order forms.
pub fn verify(payload: &[u8], remote_static: &[u8]) -> Result<Identity, ChannelError> {
    let bad = |why: &'static str| ChannelError::Identity(why);
    if payload.len() != BINDING_LEN {
        return Err(bad("the identity payload has the wrong length"));
    }
    let (key, sig) = payload.split_at(32);
    let key = <[u8; 32]>::try_from(key).map_err(|_| bad("the identity key is malformed"))?;
    let verifying =
        VerifyingKey::from_bytes(&key).map_err(|_| bad("the identity key is not a curve point"))?;
    let signature = Signature::from_slice(sig).map_err(|_| bad("the signature is malformed"))?;
    verifying
        .verify_strict(&signed_message(remote_static), &signature)
        .map_err(|_| bad("the identity does not vouch for this static key"))?;
    Ok(Identity(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn a_binding_verifies_only_for_its_static_key() {
        let id = SigningKey::from_bytes(&[7u8; 32]);
        let payload = bind(&id, &[1u8; 32]).unwrap();
        assert_eq!(verify(&payload, &[1u8; 32]), Ok(Identity::of(&id)));
        assert!(verify(&payload, &[2u8; 32]).is_err(), "another static key");
        let mut flipped = payload;
        flipped[40] ^= 1;
        assert!(
            verify(&flipped, &[1u8; 32]).is_err(),
            "a flipped signature bit"
        );
        assert!(verify(&payload[..95], &[1u8; 32]).is_err(), "truncated");
        let hex = Identity::of(&id).to_hex();
        assert_eq!(Identity::from_hex(&hex), Some(Identity::of(&id)));
    }
}
