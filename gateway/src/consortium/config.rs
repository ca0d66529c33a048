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
    /// This node joins a running consortium (an officer adds it through the admin API) instead of
    /// founding one: its Raft is never initialized here, and `members` lists the consortium as it
    /// is now and this node. Default false: `members` are the founders, and the first start of
    /// each initializes Raft with them.
    #[serde(default)]
    pub join: bool,
    /// Most KiB of entries in one Raft append-entries message (a member catching up gets several).
    /// openraft gives each message one heartbeat interval to cross and be stored: over a slow link,
    /// lower this (or raise `heartbeat_ms`). Default 1024; 64 to 8192.
    #[serde(default = "default_max_message_kib")]
    pub max_message_kib: usize,
    /// Raft log entries applied between two snapshots. After one, the Raft log is cut down to its
    /// last `min(1000, snapshot_every)` entries; a member further behind (a new one, or one down
    /// for long) gets the snapshot (the ledger's entries) and then the log. Default 10000; at
    /// least 10.
    #[serde(default = "default_snapshot_every")]
    pub snapshot_every: u64,
}

fn default_max_message_kib() -> usize {
    1024
}

fn default_snapshot_every() -> u64 {
    10_000
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

/// What is wrong with one member's entry, if anything: the rules for the config's list and for a
/// member added at run time alike.
pub fn member_problem(id: NodeId, name: &str, identity: &str) -> Option<String> {
    if name.is_empty() || name.contains(char::is_whitespace) || name.contains('+') {
        return Some(format!(
            "{name:?}: a name is non-empty, without spaces or `+` (it names cosignatures)"
        ));
    }
    if id == 0 {
        return Some(format!("{name}: id must be positive"));
    }
    if Identity::from_hex(identity).is_none() {
        return Some(format!(
            "{name}: identity must be 64 hex digits (an Ed25519 public key)"
        ));
    }
    None
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
            if let Some(why) = member_problem(m.id, &m.name, &m.identity) {
                return Some(format!("consortium.members: {why}"));
            }
            if !ids.insert(m.id) {
                return Some(format!("consortium.members: id {} appears twice", m.id));
            }
            if !identities.insert(m.identity.to_ascii_lowercase()) {
                return Some(format!(
                    "consortium.members: {}: identity appears twice",
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
        if !(64..=8192).contains(&self.max_message_kib) {
            return Some(format!(
                "consortium.max_message_kib: {} is not between 64 and 8192",
                self.max_message_kib
            ));
        }
        if self.snapshot_every < 10 {
            return Some(format!(
                "consortium.snapshot_every: {} is less than 10",
                self.snapshot_every
            ));
        }
        if self.write_timeout_seconds == 0 {
            return Some("consortium.write_timeout_seconds must be positive".into());
        }
        None
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

    /// Most bytes of entries in one Raft message.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_kib * 1024
    }

    /// How long a submission waits for its entries.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
    const B: &str = "9c01b4e1c5b4f6a0d6f3a1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";

    fn section(text: &str) -> ConsortiumSection {
        serde_yaml::from_str(text).unwrap()
    }

    fn two(extra: &str) -> String {
        format!(
            "members:\n  - {{ id: 1, name: alpha, identity: {A}, address: \"127.0.0.1:7501\" }}\n  - {{ id: 2, name: bravo, identity: {B}, address: \"127.0.0.1:7502\" }}\n{extra}"
        )
    }

    #[test]
    fn a_good_section_has_defaults_and_a_majority_quorum() {
        let s = section(&two(""));
        assert_eq!(s.problem(), None);
        assert_eq!(s.cosignatures_required, None);
        assert!(!s.join);
        assert_eq!((s.heartbeat_ms, s.election_timeout_ms), (250, 1500));
        assert_eq!(s.write_timeout(), Duration::from_secs(5));
        assert_eq!(s.snapshot_every, 10_000);
        let members = s.membership();
        assert_eq!(members[&2].name, "bravo");
        assert_eq!(members[&2].address, "127.0.0.1:7502");
        let a = Identity::from_hex(A).unwrap();
        assert_eq!(s.member_with(&a).map(|m| m.id), Some(1));
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            (
                two("cosignatures_required: 3\n"),
                "consortium.cosignatures_required: 3 is not between 1 and the 2 members",
            ),
            (
                two("cosignatures_required: 0\n"),
                "consortium.cosignatures_required: 0 is not between 1 and the 2 members",
            ),
            (
                two("heartbeat_ms: 500\nelection_timeout_ms: 1000\n"),
                "consortium.election_timeout_ms must be at least 3 × heartbeat_ms (and heartbeat_ms positive)",
            ),
            (
                two("max_message_kib: 10\n"),
                "consortium.max_message_kib: 10 is not between 64 and 8192",
            ),
            (
                two("snapshot_every: 9\n"),
                "consortium.snapshot_every: 9 is less than 10",
            ),
            (
                two("write_timeout_seconds: 0\n"),
                "consortium.write_timeout_seconds must be positive",
            ),
            (
                two("").replace("id: 2", "id: 1"),
                "consortium.members: id 1 appears twice",
            ),
            (
                two("").replace("id: 1", "id: 0"),
                "consortium.members: alpha: id must be positive",
            ),
            (
                two("").replace(B, A),
                "consortium.members: bravo: identity appears twice",
            ),
            (
                two("").replace(B, "beef"),
                "consortium.members: bravo: identity must be 64 hex digits (an Ed25519 public key)",
            ),
            (
                two("").replace("bravo", "alpha"),
                "consortium.members: name alpha appears twice",
            ),
            (
                two("").replace("name: bravo", "name: \"b c\""),
                "consortium.members: \"b c\": a name is non-empty, without spaces or `+` (it names cosignatures)",
            ),
            (
                "members: []\n".to_owned(),
                "consortium.members: at least one member is needed",
            ),
        ];
        for (text, why) in cases {
            assert_eq!(section(&text).problem().as_deref(), Some(why), "{text}");
        }
    }
}
