//! The `consortium` section of `gateway.yaml` (docs/consortium.md): the members, how many of their
//! cosignatures a checkpoint needs, and Raft's timing.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::types::{Member, NodeId};
use crate::channel::Identity;

/// The consortium this ledger node belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsortiumSection {
    /// Every member's ledger node, this one included (found by its node identity).
    pub members: Vec<MemberConfig>,
    /// Cosignatures a checkpoint needs before it is served as the consortium's. Default: a majority
    /// of the members.
    #[serde(default)]
    pub cosignatures_required: Option<usize>,
    /// Raft's heartbeat, milliseconds. Default 250.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Raft's election timeout, milliseconds: a follower that hears no leader for a random time in
    /// `[min, 2 × min]` starts an election. Default 1500.
    #[serde(default = "default_election")]
    pub election_timeout_ms: u64,
    /// Seconds a submission waits for its entries to be committed and applied here before it is
    /// answered 503. Default 5.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_seconds: u64,
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Its Raft node id: a positive number, unique in the consortium, never reused.
    pub id: NodeId,
    /// Its name (the key name of its cosignatures).
    pub name: String,
    /// Its node identity (Ed25519 public key, 64 hex digits): its channel and cosignatures prove it.
    pub identity: String,
    /// Its ledger node's channel listener.
    pub address: SocketAddr,
}

fn default_heartbeat() -> u64 {
    250
}

fn default_election() -> u64 {
    1500
}

fn default_write_timeout() -> u64 {
    5
}

impl ConsortiumSection {
    /// What is wrong with the section, if anything (the loader adds file and position).
    pub fn problem(&self) -> Option<String> {
        if self.members.is_empty() {
            return Some("consortium.members: at least one member is needed".into());
        }
        let mut ids = HashSet::new();
        let mut identities = HashSet::new();
        let mut names = HashSet::new();
        for m in &self.members {
            if m.id == 0 {
                return Some(format!(
                    "consortium.members: {}: id must be positive",
                    m.name
                ));
            }
            if !ids.insert(m.id) {
                return Some(format!("consortium.members: id {} appears twice", m.id));
            }
            if Identity::from_hex(&m.identity).is_none() {
                return Some(format!(
                    "consortium.members: {}: identity must be 64 hex digits (an Ed25519 public key)",
                    m.name
                ));
            }
            if !identities.insert(m.identity.to_ascii_lowercase()) {
                return Some(format!(
                    "consortium.members: {}: identity appears twice",
                    m.name
                ));
            }
            if m.name.is_empty() || m.name.contains(char::is_whitespace) || m.name.contains('+') {
                return Some(format!(
                    "consortium.members: {:?}: a name is non-empty, without spaces or `+` (it names cosignatures)",
                    m.name
                ));
            }
            if !names.insert(m.name.clone()) {
                return Some(format!("consortium.members: name {} appears twice", m.name));
            }
        }
        let n = self.members.len();
        if let Some(k) = self.cosignatures_required
            && (k == 0 || k > n)
        {
            return Some(format!(
                "consortium.cosignatures_required: {k} is not between 1 and the {n} members"
            ));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 3 * self.heartbeat_ms {
            return Some(
                "consortium.election_timeout_ms must be at least 3 × heartbeat_ms (and heartbeat_ms positive)"
                    .into(),
            );
        }
        if self.write_timeout_seconds == 0 {
            return Some("consortium.write_timeout_seconds must be positive".into());
        }
        None
    }

    /// Cosignatures required: as configured, or a majority.
    pub fn quorum(&self) -> usize {
        self.cosignatures_required
            .unwrap_or(self.members.len() / 2 + 1)
    }

    /// The members as Raft knows them.
    pub fn membership(&self) -> BTreeMap<NodeId, Member> {
        self.members
            .iter()
            .map(|m| {
                (
                    m.id,
                    Member {
                        name: m.name.clone(),
                        address: m.address.to_string(),
                        identity: m.identity.to_ascii_lowercase(),
                    },
                )
            })
            .collect()
    }

    /// The member whose identity is `identity`.
    pub fn member_with(&self, identity: &Identity) -> Option<&MemberConfig> {
        self.members
            .iter()
            .find(|m| Identity::from_hex(&m.identity).as_ref() == Some(identity))
    }

    /// How long a submission waits for its entries.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }
}
