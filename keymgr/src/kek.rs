//! The key-encryption key (KEK) and envelope wrapping: every secret at rest is encrypted under the KEK,
//! with a fresh random nonce and AAD binding the key's name, version and purpose. The KEK is either
//! derived here (a passphrase or a key file; XChaCha20-Poly1305 in this process, [`Kek`]) or held in a
//! PKCS#11 token (AES-256-GCM inside the token, `token.rs`); [`StoreKek`] is whichever a store uses.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::secret::Secret;

/// Format byte of a wrapped blob: lets the layout change later without guessing.
const WRAP_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// Why unwrapping failed. Deliberately says nothing more: a wrong key, a changed blob and a changed AAD
/// look the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot unwrap: wrong key-encryption key, or the stored key or its binding was altered")]
pub struct UnwrapError;

/// The key-encryption key. Zeroized on drop; never printed.
pub struct Kek {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// A KEK from 32 bytes of key material.
    pub fn from_secret(key: &Secret) -> Option<Kek> {
        XChaCha20Poly1305::new_from_slice(key.expose())
            .ok()
            .map(|cipher| Kek { cipher })
    }

    /// Encrypts `secret`, bound to `aad`: `0x01 ‖ nonce (24) ‖ ciphertext ‖ tag (16)`.
    pub fn wrap(&self, secret: &[u8], aad: &[u8]) -> Result<Vec<u8>, getrandom::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: secret, aad })
            .unwrap_or_default(); // encryption of an in-memory buffer cannot fail
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(WRAP_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts a blob made by [`Kek::wrap`] with the same `aad`.
    pub fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Secret, UnwrapError> {
        let (&WRAP_V1, rest) = blob.split_first().ok_or(UnwrapError)? else {
            return Err(UnwrapError);
        };
        let (nonce, sealed) = rest.split_at_checked(NONCE_LEN).ok_or(UnwrapError)?;
        let nonce = XNonce::try_from(nonce).map_err(|_| UnwrapError)?;
        self.cipher
            .decrypt(&nonce, Payload { msg: sealed, aad })
            .map(Secret::new)
            .map_err(|_| UnwrapError)
    }
}

/// The KEK of an open store: derived in this process, or held in a token.
#[derive(Debug)]
pub(crate) enum StoreKek {
    /// From a passphrase or a key file.
    Local(Kek),
    /// An AES key in a PKCS#11 token (shared with the signers of the keys made there).
    Token(std::sync::Arc<crate::token::TokenKek>),
}

impl StoreKek {
    /// Wraps `secret` bound to `aad`.
    pub(crate) fn wrap(&self, secret: &[u8], aad: &[u8]) -> Result<Vec<u8>, crate::Error> {
        match self {
            StoreKek::Local(k) => Ok(k.wrap(secret, aad)?),
            StoreKek::Token(t) => t.wrap(secret, aad),
        }
    }

    /// Unwraps a blob made by [`StoreKek::wrap`]: `Ok(None)` when the blob, its binding or the KEK
    /// is wrong; `Err` when the token cannot be used now (the store is fine).
    pub(crate) fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Option<Secret>, crate::Error> {
        match self {
            StoreKek::Local(k) => Ok(k.unwrap(blob, aad).ok()),
            StoreKek::Token(t) => t.unwrap(blob, aad),
        }
    }

    /// Whether the KEK is held in a token.
    pub(crate) fn in_token(&self) -> bool {
        matches!(self, StoreKek::Token(_))
    }

    /// Whether `other` is a key of the same token as this one (both in a token).
    pub(crate) fn shares_token_with(&self, other: &StoreKek) -> bool {
        match (self.token(), other.token()) {
            (Some(a), Some(b)) => a.same_token(b),
            _ => false,
        }
    }

    /// The token, if the KEK is in one.
    pub(crate) fn token(&self) -> Option<&std::sync::Arc<crate::token::TokenKek>> {
        match self {
            StoreKek::Token(t) => Some(t),
            StoreKek::Local(_) => None,
        }
    }
}

/// Where the KEK comes from.
pub enum KekSource {
    /// A passphrase, stretched with Argon2id under the store's salt and parameters.
    Passphrase(Secret),
    /// A file holding 32 random bytes as 64 hex digits; refused unless only its owner can read it.
    File(std::path::PathBuf),
    /// A non-extractable AES-256 key in a PKCS#11 token.
    Pkcs11(crate::token::Pkcs11Config),
}

impl std::fmt::Debug for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::Passphrase(_) => f.write_str("KekSource::Passphrase(..)"),
            KekSource::File(p) => f.debug_tuple("KekSource::File").field(p).finish(),
            KekSource::Pkcs11(c) => f.debug_tuple("KekSource::Pkcs11").field(c).finish(),
        }
    }
}

/// How a store's KEK is derived; stored in the clear (none of it is secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KdfParams {
    /// Argon2id (RFC 9106) over a passphrase.
    Argon2id {
        /// Memory in KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// Salt, base64.
        salt: String,
    },
    /// A key file.
    File,
    /// A key in a PKCS#11 token, found by the token's and the key's labels. The module and the PIN
    /// are the node's configuration, not the store's.
    Pkcs11 {
        /// The token's label.
        token_label: String,
        /// The key's label.
        key_label: String,
    },
}

/// Argon2id cost for new stores: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended setting with
/// the lanes of a 2-core machine); about a quarter of a second here, paid once per CLI run.
pub const ARGON2_M_KIB: u32 = 64 * 1024;
/// See [`ARGON2_M_KIB`].
pub const ARGON2_T: u32 = 3;
/// See [`ARGON2_M_KIB`].
pub const ARGON2_P: u32 = 1;

impl KdfParams {
    /// Fresh parameters for `source`, with a new random salt for a passphrase.
    pub fn fresh(source: &KekSource) -> Result<KdfParams, getrandom::Error> {
        use base64::Engine as _;
        Ok(match source {
            KekSource::Passphrase(_) => {
                let salt = Secret::random(16)?;
                KdfParams::Argon2id {
                    m_kib: ARGON2_M_KIB,
                    t: ARGON2_T,
                    p: ARGON2_P,
                    salt: base64::engine::general_purpose::STANDARD.encode(salt.expose()),
                }
            }
            KekSource::File(_) => KdfParams::File,
            KekSource::Pkcs11(c) => KdfParams::Pkcs11 {
                token_label: c.token_label.clone(),
                key_label: c.key_label.clone(),
            },
        })
    }

    /// What kind of KEK, in a few words for an error message.
    fn kind(&self) -> &'static str {
        match self {
            KdfParams::Argon2id { .. } => "a passphrase: set LEDGERGATE_KEK_PASSPHRASE",
            KdfParams::File => "a key file: pass --kek-file",
            KdfParams::Pkcs11 { .. } => "in a PKCS#11 token: pass --pkcs11-module and its options",
        }
    }
}

/// Derives (or, for a token, connects to) the KEK from `source` as `params` say; `create` makes the
/// token's key if it has none (a new store only).
pub(crate) fn derive(
    source: &KekSource,
    params: &KdfParams,
    create: bool,
) -> Result<StoreKek, crate::Error> {
    use base64::Engine as _;
    if let KekSource::Pkcs11(config) = source {
        return match params {
            KdfParams::Pkcs11 {
                token_label,
                key_label,
            } if *token_label == config.token_label && *key_label == config.key_label => {
                Ok(StoreKek::Token(std::sync::Arc::new(
                    crate::token::TokenKek::open(config, create)?,
                )))
            }
            KdfParams::Pkcs11 {
                token_label,
                key_label,
            } => Err(crate::Error::InvalidArgument(format!(
                "this store's KEK is key `{key_label}` of token `{token_label}`, not key `{}` of token `{}`",
                config.key_label, config.token_label
            ))),
            other => Err(crate::Error::InvalidArgument(format!(
                "this store's KEK is {}",
                other.kind()
            ))),
        };
    }
    let key = match (source, params) {
        (KekSource::Passphrase(pass), KdfParams::Argon2id { m_kib, t, p, salt }) => {
            let salt = base64::engine::general_purpose::STANDARD
                .decode(salt)
                .map_err(|_| crate::Error::StoreCorrupt("KDF salt is not base64".into()))?;
            let argon_params = argon2::Params::new(*m_kib, *t, *p, Some(32))
                .map_err(|e| crate::Error::StoreCorrupt(format!("KDF parameters: {e}")))?;
            let argon = argon2::Argon2::new(
                argon2::Algorithm::Argon2id,
                argon2::Version::V0x13,
                argon_params,
            );
            let mut out = zeroize::Zeroizing::new([0u8; 32]);
            argon
                .hash_password_into(pass.expose(), &salt, out.as_mut())
                .map_err(|e| crate::Error::StoreCorrupt(format!("KDF: {e}")))?;
            Secret::new(out.to_vec())
        }
        (KekSource::File(path), KdfParams::File) => read_key_file(path)?,
        (_, other) => {
            return Err(crate::Error::InvalidArgument(format!(
                "this store's KEK is {}",
                other.kind()
            )));
        }
    };
    Kek::from_secret(&key)
        .map(StoreKek::Local)
        .ok_or(crate::Error::WrongKek)
}

fn read_key_file(path: &std::path::Path) -> Result<Secret, crate::Error> {
    let bad = |why: String| crate::Error::KekFile {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "permissions {mode:o} let others read it; run chmod 600"
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?,
    );
    let bytes = hex::decode(text.trim()).map_err(|_| bad("expected 64 hex digits".into()))?;
    if bytes.len() != 32 {
        return Err(bad("expected 64 hex digits (32 bytes)".into()));
    }
    Ok(Secret::new(bytes))
}

/// Writes a new random key file (mode 0600); never overwrites one.
pub fn create_key_file(path: &std::path::Path) -> Result<(), crate::Error> {
    let key = Secret::random(32)?;
    let mut text = zeroize::Zeroizing::new(hex::encode(key.expose()));
    text.push('\n');
    crate::durable::create_file(path, text.as_bytes(), crate::durable::PRIVATE_FILE_MODE).map_err(
        |e| crate::Error::KekFile {
            path: path.to_owned(),
            why: e.why,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kek() -> Kek {
        Kek::from_secret(&Secret::new(vec![7; 32])).unwrap()
    }

    proptest! {
        #[test]
        fn wrap_round_trips(secret in prop::collection::vec(any::<u8>(), 0..200), aad in prop::collection::vec(any::<u8>(), 0..64)) {
            let k = kek();
            let blob = k.wrap(&secret, &aad).unwrap();
            let opened = k.unwrap(&blob, &aad).unwrap();
            prop_assert_eq!(opened.expose(), secret.as_slice());
        }

        #[test]
        fn any_flipped_bit_or_changed_aad_fails(secret in prop::collection::vec(any::<u8>(), 1..100), aad in prop::collection::vec(any::<u8>(), 0..64), bit in any::<usize>(), other in prop::collection::vec(any::<u8>(), 0..64)) {
            let k = kek();
            let blob = k.wrap(&secret, &aad).unwrap();
            let mut bad = blob.clone();
            let i = bit % (bad.len() * 8);
            bad[i / 8] ^= 1 << (i % 8);
            prop_assert_eq!(k.unwrap(&bad, &aad).map(|_| ()), Err(UnwrapError));
            if other != aad {
                prop_assert_eq!(k.unwrap(&blob, &other).map(|_| ()), Err(UnwrapError));
            }
            let wrong = Kek::from_secret(&Secret::new(vec![8; 32])).unwrap();
            prop_assert_eq!(wrong.unwrap(&blob, &aad).map(|_| ()), Err(UnwrapError));
        }
    }

    #[test]
    fn fresh_nonces_make_every_wrap_different() {
        let k = kek();
        assert_ne!(k.wrap(b"s", b"a").unwrap(), k.wrap(b"s", b"a").unwrap());
    }
}
