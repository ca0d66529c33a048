//! The consortium ledger (docs/consortium.md, issue #16, in progress): every member's ledger node
//! keeps the whole ledger, kept consistent by Raft (openraft 0.9, storage-v2) and vouched for by
//! the members' cosignatures (`crate::ledger::cosignature`).
//!
//! - `types`: what Raft carries (a proposal of ledger entries) and its type configuration;
//! - `raft_log`: Raft's log and vote, in their own redb file, durable before openraft hears so;
//! - `witness`: a member's rules for cosigning a checkpoint (its own root, consistent with what it
//!   cosigned before).
//!
//! The state machine (the ledger), the network over the Noise channel, gathering cosignatures and
//! membership come next.

pub mod raft_log;
pub mod types;
pub mod witness;
