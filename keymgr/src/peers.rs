//! Revoked peer identities: the Ed25519 identities of other nodes that this node must no longer
//! accept on its channel, whatever its configuration lists. Revoking is how an officer cuts off a
//! peer whose identity key leaked or whose node was retired; a running node drops the peer's sessions
//! within a second (docs/channel.md). A revocation is permanent: a node that needs to come back
//! does so under a new identity.
//!
//! Stored under the key `p` ‖ identity (32 bytes) in the key store, written in the same durable
//! transaction as its audit event, and held in memory for the channel's checks, which run at every
//! handshake and every session tick.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::lifecycle::{RevocationReason, Timestamp};
use crate::manager::KeyManager;
use crate::store::Batch;

/// One revoked identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedPeer {
    /// The identity (Ed25519 public key), 64 lowercase hex digits.
    pub identity: String,
    /// Why.
    pub reason: RevocationReason,
    /// When it was revoked.
    pub revoked_at: Timestamp,
    /// Who revoked it.
    pub revoked_by: String,
}

/// The revoked identities, in memory.
#[derive(Debug, Default)]
pub(crate) struct RevokedSet(RwLock<HashSet<[u8; 32]>>);

impl RevokedSet {
    pub(crate) fn of(peers: &[RevokedPeer]) -> RevokedSet {
        RevokedSet(RwLock::new(
            peers
                .iter()
                .filter_map(|p| parse_identity(&p.identity).ok())
                .collect(),
        ))
    }

    fn contains(&self, identity: &[u8; 32]) -> bool {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(identity)
    }

    fn insert(&self, identity: [u8; 32]) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(identity);
    }
}

/// An identity as 64 hex digits.
fn parse_identity(text: &str) -> Result<[u8; 32], Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "`{text}` is not an identity: expected 64 hex digits (an Ed25519 public key)"
        ))
    };
    let bytes = hex::decode(text.trim()).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

impl KeyManager {
    /// Revokes a peer's identity, durably and with its audit event; at once in effect for
    /// [`KeyManager::is_peer_revoked`]. Revoking an identity again changes nothing and says so.
    pub fn revoke_peer(
        &self,
        identity: &str,
        reason: RevocationReason,
        now: Timestamp,
        actor: &str,
    ) -> Result<RevokedPeer, Error> {
        let bytes = parse_identity(identity)?;
        let _guard = self.lock();
        if let Some(earlier) = self.store.revoked_peer(&bytes)? {
            return Err(Error::InvalidArgument(format!(
                "identity {} was already revoked at {}",
                earlier.identity,
                crate::lifecycle::rfc3339(earlier.revoked_at)
            )));
        }
        let peer = RevokedPeer {
            identity: hex::encode(bytes),
            reason,
            revoked_at: now,
            revoked_by: actor.to_owned(),
        };
        let mut batch = Batch::default();
        batch.put_revoked_peer(&bytes, &peer)?;
        let reason_name = format!("{reason:?}").to_lowercase();
        self.commit_with_audit(
            batch,
            now,
            actor,
            "revoke-peer",
            None,
            None,
            format!("identity {}, reason {reason_name}", peer.identity),
        )?;
        self.revoked.insert(bytes);
        Ok(peer)
    }

    /// Every revoked peer identity, in identity order.
    pub fn revoked_peers(&self) -> Result<Vec<RevokedPeer>, Error> {
        self.store.revoked_peers()
    }

    /// Whether a peer's identity (Ed25519 public key) is revoked. In memory: cheap enough for every
    /// handshake and every session tick.
    pub fn is_peer_revoked(&self, identity: &[u8; 32]) -> bool {
        self.revoked.contains(identity)
    }
}
