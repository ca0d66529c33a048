//! The ledger's error type, grouped by who is at fault: the caller, the files on disk, or the machine.

use std::path::PathBuf;

use super::checkpoint::CheckpointError;

/// A boxed lower-level error, kept as the `source()` of a ledger error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong opening, writing or reading the ledger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    // --- the caller asked for something that does not exist ---
    /// An entry index at or past the published tree size.
    #[error("no entry at index {index}: the tree has {size} entries")]
    NoSuchEntry {
        /// The index asked for.
        index: u64,
        /// The published tree size.
        size: u64,
    },
    /// A proof for a tree larger than the published one, or with reversed sizes.
    #[error("cannot prove against tree size {asked}: the tree has {size} entries")]
    SizeBeyondTree {
        /// The size asked for.
        asked: u64,
        /// The published tree size.
        size: u64,
    },
    /// A proof request whose arguments do not fit each other (index ≥ size, from > to).
    #[error("invalid proof request: {0}")]
    BadProofRequest(String),

    // --- the files on disk ---
    /// There is no ledger at the path and creating one was not asked for.
    #[error("no ledger store at {}", path.display())]
    NotFound {
        /// The store directory.
        path: PathBuf,
    },
    /// Another process (a running gateway, or another CLI) holds the store's lock.
    #[error("ledger store at {} is locked by another process (is the gateway running?)", path.display())]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The path holds a database or files that are not a ledgergate ledger.
    #[error("{} is not a ledgergate ledger store: {why}", path.display())]
    Foreign {
        /// The store directory.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// The store could not be read back as a consistent ledger.
    #[error("ledger store is corrupt: {0}")]
    Corrupt(String),
    /// The store's origin differs from the configured one: a log never changes its name.
    #[error("ledger store belongs to log {stored:?}, not {configured:?}")]
    OriginMismatch {
        /// The origin in the store.
        stored: String,
        /// The origin in the configuration.
        configured: String,
    },
    /// The latest stored checkpoint does not verify or does not match the stored tree.
    #[error("latest checkpoint does not match the store: {0}")]
    BadCheckpoint(#[source] CheckpointError),
    /// The checkpoint signing key file is missing, unreadable, too open or malformed.
    #[error("checkpoint signing key {}: {why}", path.display())]
    SigningKey {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },

    // --- the keys ---
    /// No checkpoint key version may sign (revoked, expired or destroyed): nothing is appended
    /// rather than signed by a key that must not be used.
    #[error(
        "no usable checkpoint-signing key (revoked, expired or destroyed): nothing can be appended \
         until an officer rotates it"
    )]
    NoSigner,
    /// The checkpoint key could not sign (it is in a PKCS#11 token that does not answer now):
    /// nothing was appended; the client may retry.
    #[error(transparent)]
    Sign(#[from] super::note::SignError),

    // --- the machine ---
    /// The storage engine failed to read or write.
    #[error("ledger storage failed")]
    Storage(#[source] BoxError),
    /// A write failed earlier, so the writer stopped taking appends; restart the node to recover
    /// from what is durable.
    #[error("ledger is unavailable: an earlier write failed; restart the node to recover")]
    Poisoned,
    /// The ledger is shutting down or has shut down.
    #[error("ledger is closed")]
    Closed,
    /// A consortium member could not get entries committed and applied: no leader, no quorum, or no
    /// answer in time. Nothing was acknowledged; the client may retry.
    #[error("the consortium did not commit the entries: {0}")]
    NotReplicated(String),
    /// The durability barrier (see `Ledger::set_barrier`) failed, so the group was not written.
    #[error("what entries depend on could not be made durable: {0}")]
    Barrier(String),
}
