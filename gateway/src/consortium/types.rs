//! What the consortium's Raft carries, and openraft's type configuration for it.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// A proposal: desensitized ledger entries a member accepted, to be appended in this order once
/// committed. Never sealed values: those stay in the accepting member's vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The entries' bytes, as the ledger stores them.
    pub entries: Vec<Vec<u8>>,
}

/// What applying a proposal did: where its entries landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The ledger index of the proposal's first entry.
    pub first_index: u64,
    /// The ledger's size after it.
    pub tree_size: u64,
}

openraft::declare_raft_types!(
    /// The consortium's Raft: node ids are `u64`, nodes are openraft's `BasicNode` (an address),
    /// snapshots are bytes in memory; the rest is openraft's defaults.
    pub TypeConfig:
        D = Proposal,
        R = Applied,
);

/// A member's Raft node id.
pub type NodeId = u64;
