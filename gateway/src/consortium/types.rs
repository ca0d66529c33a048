//! What the consortium's Raft carries, and openraft's type configuration for it.

use serde::{Deserialize, Serialize};

/// A proposal: desensitized ledger entries a member accepted, to be appended in this order once
/// committed. Never sealed values: those stay in the accepting member's vault, which adds them beside
/// the entries when it applies its own proposal (matched by `origin` and `tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The member that accepted the entries.
    pub origin: NodeId,
    /// That member's number for this proposal (unique per run of its process, with `started`).
    pub tag: u64,
    /// When that member's process started (Unix nanoseconds): a restarted member's tags never
    /// match a proposal of its previous run.
    pub started: u64,
    /// The entries' bytes, as the ledger stores them (base64 on the wire and in Raft's log).
    #[serde(with = "base64_entries")]
    pub entries: Vec<Vec<u8>>,
}

/// What applying a proposal did on the member that applied it: where its entries landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The ledger index of the proposal's first entry.
    pub first_index: u64,
    /// The ledger's size after it.
    pub tree_size: u64,
}

/// A consortium member as Raft knows it: its name, where its channel listens, and the identity its
/// channel and cosignatures prove.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The member's name (its cosignatures' key name).
    pub name: String,
    /// Its channel listener, `host:port`.
    pub address: String,
    /// Its node identity: an Ed25519 public key, 64 hex digits.
    pub identity: String,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

openraft::declare_raft_types!(
    /// The consortium's Raft: node ids are `u64`, nodes are [`Member`]s, snapshots are files of the
    /// ledger's entries ([`super::snapshot`]); the rest is openraft's defaults.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        Node = Member,
        SnapshotData = super::snapshot::SnapshotData,
);

/// A member's Raft node id.
pub type NodeId = u64;

/// The entries as base64 strings: JSON arrays of numbers would triple a proposal's size.
pub(super) mod base64_entries {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(in crate::consortium) fn serialize<S: Serializer>(
        entries: &[Vec<u8>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(entries.len()))?;
        for e in entries {
            seq.serialize_element(&STANDARD.encode(e))?;
        }
        seq.end()
    }

    pub(in crate::consortium) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| STANDARD.decode(t).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn proposals_survive_their_encoding(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8), tag in any::<u64>()) {
            let p = Proposal { origin: 3, tag, started: 7, entries };
            let text = serde_json::to_vec(&p).unwrap();
            prop_assert_eq!(serde_json::from_slice::<Proposal>(&text).unwrap(), p);
        }
    }

    #[test]
    fn entries_travel_as_base64() {
        let p = Proposal {
            origin: 1,
            tag: 2,
            started: 3,
            entries: vec![b"{}".to_vec()],
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"origin":1,"tag":2,"started":3,"entries":["e30="]}"#
        );
    }
}
