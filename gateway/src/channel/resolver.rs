//! The primitives snow's handshake runs on. X25519 is aws-lc-rs's (its assembly ladder does a DH in
//! ~26 µs here against ~59 µs for curve25519-dalek's, and `XX` does three per side); SHA-256, the
//! handshake's ChaCha20-Poly1305 and the random generator are snow's ring resolver's. The
//! measurements are in `docs/channel.md` (`cargo bench -p gateway --bench channel`).
//!
//! ring cannot serve here: its X25519 keys are single-use, and in `XX` each side uses its ephemeral
//! key twice and its static key once.

use std::sync::Arc;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, FallbackResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use zeroize::Zeroizing;

/// A node's static key, made into an aws-lc key and its public half once: snow sets the static key
/// again at every handshake, and deriving its public key each time would cost a base multiplication.
pub struct StaticKey {
    private: Zeroizing<[u8; 32]>,
    key: PrivateKey,
    public: [u8; 32],
}

impl StaticKey {
    /// The key for `private`. Fails only if aws-lc refuses 32 bytes as an X25519 key, which it
    /// does not (any 32 bytes are a scalar once clamped).
    pub fn new(private: Zeroizing<[u8; 32]>) -> Result<StaticKey, snow::Error> {
        let key = PrivateKey::from_private_key(&X25519, private.as_slice())
            .map_err(|_| snow::Error::Dh)?;
        let public = public_of(&key)?;
        Ok(StaticKey {
            private,
            key,
            public,
        })
    }

    /// The X25519 public key.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The private key's bytes (snow's builder takes them).
    pub fn private(&self) -> &[u8; 32] {
        &self.private
    }
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn public_of(key: &PrivateKey) -> Result<[u8; 32], snow::Error> {
    let public = key.compute_public_key().map_err(|_| snow::Error::Dh)?;
    public.as_ref().try_into().map_err(|_| snow::Error::Dh)
}

/// The resolver for one handshake of a node with this static key.
pub fn resolver(static_key: Arc<StaticKey>) -> BoxedCryptoResolver {
    Box::new(FallbackResolver::new(
        Box::new(X25519Resolver { static_key }),
        Box::new(RingResolver),
    ))
}

struct X25519Resolver {
    static_key: Arc<StaticKey>,
}

impl CryptoResolver for X25519Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        None
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(AwsX25519 {
                static_key: Arc::clone(&self.static_key),
                key: None,
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }

    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

/// One X25519 key of a handshake: the node's static key or a fresh ephemeral one. aws-lc frees
/// (and on free, cleanses) its key objects; the bytes snow may ask for are kept in `Zeroizing`.
struct AwsX25519 {
    static_key: Arc<StaticKey>,
    key: Option<Key>,
}

enum Key {
    /// The node's static key (shared, made once).
    Static,
    /// A key of this handshake.
    Own {
        private: Zeroizing<[u8; 32]>,
        key: PrivateKey,
        public: [u8; 32],
    },
}

impl AwsX25519 {
    fn own(private: Zeroizing<[u8; 32]>) -> Option<Key> {
        let key = PrivateKey::from_private_key(&X25519, private.as_slice()).ok()?;
        let public = public_of(&key).ok()?;
        Some(Key::Own {
            private,
            key,
            public,
        })
    }
}

impl Dh for AwsX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let mut private = Zeroizing::new([0u8; 32]);
        if let Some(head) = privkey.get(..32) {
            private.copy_from_slice(head);
        }
        // The node's static key is recognised in constant time and not derived again.
        self.key = if verify_slices_are_equal(private.as_slice(), self.static_key.private()).is_ok()
        {
            Some(Key::Static)
        } else {
            AwsX25519::own(private)
        };
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut private = Zeroizing::new([0u8; 32]);
        rng.try_fill_bytes(private.as_mut_slice())?;
        self.key = Some(AwsX25519::own(private).ok_or(snow::Error::Dh)?);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        match &self.key {
            Some(Key::Static) => &self.static_key.public,
            Some(Key::Own { public, .. }) => public,
            None => &[],
        }
    }

    fn privkey(&self) -> &[u8] {
        match &self.key {
            Some(Key::Static) => self.static_key.private.as_slice(),
            Some(Key::Own { private, .. }) => private.as_slice(),
            None => &[],
        }
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let key = match &self.key {
            Some(Key::Static) => &self.static_key.key,
            Some(Key::Own { key, .. }) => key,
            None => return Err(snow::Error::Dh),
        };
        let peer = UnparsedPublicKey::new(&X25519, pubkey.get(..32).ok_or(snow::Error::Dh)?);
        // aws-lc refuses a low-order peer key (an all-zero shared secret): such a handshake fails
        // instead of deriving keys an attacker knows.
        agreement::agree(key, peer, snow::Error::Dh, |secret| {
            out.get_mut(..secret.len())
                .ok_or(snow::Error::Dh)?
                .copy_from_slice(secret);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_static_key_and_fresh_keys_agree_with_curve25519_dalek() {
        let s = Arc::new(StaticKey::new(Zeroizing::new([5u8; 32])).unwrap());
        let dalek = |private: [u8; 32]| {
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private)).to_bytes()
        };
        assert_eq!(s.public(), dalek([5u8; 32]));
        let mut ours = AwsX25519 {
            static_key: Arc::clone(&s),
            key: None,
        };
        ours.set(&[5u8; 32]);
        assert!(matches!(ours.key, Some(Key::Static)));
        let mut other = AwsX25519 {
            static_key: Arc::clone(&s),
            key: None,
        };
        other.set(&[6u8; 32]);
        assert_eq!(other.pubkey(), dalek([6u8; 32]));
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        ours.dh(other.pubkey(), &mut a).unwrap();
        other.dh(ours.pubkey(), &mut b).unwrap();
        assert_eq!(a, b);
        let expected = x25519_dalek::StaticSecret::from([5u8; 32])
            .diffie_hellman(&x25519_dalek::PublicKey::from(dalek([6u8; 32])));
        assert_eq!(&a, expected.as_bytes());
        // A low-order point (here the identity, all zeros) is refused.
        assert_eq!(ours.dh(&[0u8; 32], &mut a), Err(snow::Error::Dh));
    }
}
