//! Ledgergate's gateway node: mTLS ingress, the policy pipeline, and the verifiable chain store.
//!
//! See the workspace `README.md` and `docs/` for the architecture; [`serve`] assembles a node from the
//! other modules.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod audit;
pub mod channel;
pub mod checkpoint_keys;
pub mod claims;
pub mod config;
pub mod consortium;
pub mod edge;
pub mod files;
pub mod forward;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod ingress;
pub mod init;
pub mod init_consortium;
pub mod init_edge;
pub mod keys;
pub mod ledger;
pub mod metrics;
pub mod node_key;
pub mod pipeline;
pub mod pki;
pub mod reload;
pub mod risk;
pub mod rotation;
pub mod serve;
pub mod usage;
pub mod vault;
