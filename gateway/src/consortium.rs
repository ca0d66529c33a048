//! The consortium ledger (docs/consortium.md, issue #16): every member's ledger node keeps the whole
//! ledger, kept consistent by Raft (openraft 0.9, storage-v2) and vouched for by the members'
//! cosignatures (`crate::ledger::cosignature`).
//!
//! - `config`: the `consortium` section of `gateway.yaml`;
//! - `types`: what Raft carries (a proposal of ledger entries) and its type configuration;
//! - `raft_log`: Raft's log and vote, in their own redb file, durable before openraft hears so;
//! - `state`: the ledger as Raft's state machine (applied log id recorded atomically with entries);
//! - `network`: Raft's RPCs over the Noise channel, member to member;
//! - `cosigning`: cosignatures asked for, given and gathered; the checkpoint served;
//! - `roster`: the current members (Raft's membership; the config's list seeds it);
//! - `membership`: officers' changes to the members (learner, proof of its copy, voter);
//! - `audit_entry`: each membership Raft commits, as an audit entry every member appends alike;
//! - `node`: a running member: start, submissions as proposals, answers to other members;
//! - `witness`: a member's rules for cosigning a checkpoint (its own root, consistent with what it
//!   cosigned before).

pub mod audit_entry;
pub mod coalesce;
pub mod config;
pub mod cosigning;
pub mod membership;
pub mod network;
pub mod node;
pub mod raft_log;
pub mod roster;
pub mod snapshot;
pub mod state;
pub mod types;
pub mod witness;

pub use config::ConsortiumSection;
pub use node::Consortium;
