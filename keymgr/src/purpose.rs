//! What a key is for, and how its material is made.

use crate::secret::Secret;

/// A key's purpose: fixes its algorithm and material.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// A node's long-term identity: Ed25519.
    NodeIdentity,
    /// A node's static Noise key: X25519.
    ChannelStatic,
    /// Signs ledger checkpoints: Ed25519.
    CheckpointSigning,
    /// HMAC-SHA-256 key for pseudonyms: 256 random bits.
    Pseudonym,
    /// A data subject's XChaCha20-Poly1305 data key (sealed fields): 256 random bits.
    Subject,
}

impl Purpose {
    /// Every purpose.
    pub const ALL: [Purpose; 5] = [
        Purpose::NodeIdentity,
        Purpose::ChannelStatic,
        Purpose::CheckpointSigning,
        Purpose::Pseudonym,
        Purpose::Subject,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::NodeIdentity => "node-identity",
            Purpose::ChannelStatic => "channel-static",
            Purpose::CheckpointSigning => "checkpoint-signing",
            Purpose::Pseudonym => "pseudonym",
            Purpose::Subject => "subject",
        }
    }

    /// Parses [`Purpose::as_str`].
    pub fn parse(text: &str) -> Option<Purpose> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// Whether a new version is made in the PKCS#11 token when the store's KEK is there: the
    /// Ed25519 keys, which only ever sign (checkpoints; channel bindings and cosignatures). The
    /// channel's static X25519 key does Diffie-Hellman in every handshake, inside snow, and stays
    /// wrapped in the store.
    pub fn held_in_token(self) -> bool {
        matches!(self, Purpose::CheckpointSigning | Purpose::NodeIdentity)
    }

    /// Fresh material, and the public half where there is one (hex).
    pub fn generate(self) -> Result<(Secret, Option<String>), getrandom::Error> {
        let seed = Secret::random(32)?;
        let public = match self {
            Purpose::NodeIdentity | Purpose::CheckpointSigning => {
                let bytes: [u8; 32] = seed.expose().try_into().unwrap_or_default();
                let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
                Some(hex::encode(key.verifying_key().as_bytes()))
            }
            Purpose::ChannelStatic => {
                let bytes: [u8; 32] = seed.expose().try_into().unwrap_or_default();
                let secret = x25519_dalek::StaticSecret::from(bytes);
                Some(hex::encode(
                    x25519_dalek::PublicKey::from(&secret).as_bytes(),
                ))
            }
            Purpose::Pseudonym | Purpose::Subject => None,
        };
        Ok((seed, public))
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
