//! keymgr's error type, grouped by who is at fault, each with a stable code for the CLI's JSON and the
//! admin API.

use std::path::PathBuf;

use crate::lifecycle::TransitionError;
use crate::record::UseError;

/// Everything that can go wrong managing keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- the request ---
    /// No key of that name.
    #[error("no key named `{0}`")]
    NoSuchKey(String),
    /// No such version of the key.
    #[error("key `{name}` has no version {version}")]
    NoSuchVersion {
        /// The key.
        name: String,
        /// The version.
        version: u32,
    },
    /// A key of that name exists already.
    #[error("a key named `{0}` exists already")]
    KeyExists(String),
    /// The lifecycle forbids the operation; nothing changed.
    #[error(transparent)]
    Illegal(#[from] TransitionError),
    /// The key may not be used for new work.
    #[error(transparent)]
    Unusable(#[from] UseError),
    /// A bad argument (name, duration, purpose mismatch).
    #[error("{0}")]
    InvalidArgument(String),

    // --- the key-encryption key ---
    /// The passphrase or key file does not open this store; nothing was changed.
    #[error("wrong passphrase or key file: it does not open this key store")]
    WrongKek,
    /// No KEK was given and none can be asked for.
    #[error(
        "no key-encryption key: set LEDGERGATE_KEK_PASSPHRASE, pass --kek-file or --pkcs11-module, or run in a terminal"
    )]
    NoKek,
    /// The key file is unreadable, malformed or readable by others.
    #[error("key-encryption key file {}: {why}", path.display())]
    KekFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },

    /// The PKCS#11 token cannot be used as configured (module, token, PIN or key wrong); nothing was
    /// changed.
    #[error("{0}")]
    Token(String),
    /// The PKCS#11 token does not answer now (removed, its daemon down); nothing was changed, and
    /// the next operation tries it again.
    #[error("PKCS#11 token unavailable: {0}")]
    TokenUnavailable(String),

    // --- the store ---
    /// No store at the path.
    #[error("no key store at {} (create one with `keymgr init`)", .0.display())]
    StoreNotFound(PathBuf),
    /// A store exists at the path already.
    #[error("a key store exists at {} already", .0.display())]
    StoreExists(PathBuf),
    /// Another process holds the store.
    #[error("key store at {} is locked by another process (is the gateway running? use --gateway)", .0.display())]
    StoreLocked(PathBuf),
    /// The store's files are damaged or not a key store.
    #[error("key store is damaged or not a key store: {0}")]
    StoreCorrupt(String),
    /// Reading or writing failed.
    #[error("key store I/O failed: {0}")]
    Storage(String),
    /// The system's random source failed.
    #[error("no system randomness")]
    Randomness,

    // --- a running gateway ---
    /// The gateway's admin API refused or failed the command.
    #[error("{detail}")]
    Remote {
        /// The problem `code` it answered.
        code: String,
        /// Its `detail`.
        detail: String,
    },
    /// The gateway could not be reached or answered nonsense.
    #[error("gateway: {0}")]
    Unreachable(String),
}

impl Error {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::NoSuchKey(_) | Error::NoSuchVersion { .. } => "not_found",
            Error::KeyExists(_) | Error::StoreExists(_) => "conflict",
            Error::Illegal(_) => "illegal_transition",
            Error::Unusable(UseError::Expired { .. }) => "key_expired",
            Error::Unusable(_) => "key_revoked",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::WrongKek => "wrong_passphrase",
            Error::NoKek | Error::KekFile { .. } | Error::Token(_) => "kek_unavailable",
            Error::StoreNotFound(_) => "store_not_found",
            Error::StoreLocked(_) => "store_locked",
            Error::StoreCorrupt(_) => "store_corrupt",
            Error::Storage(_)
            | Error::Randomness
            | Error::Unreachable(_)
            | Error::TokenUnavailable(_) => "unavailable",
            Error::Remote { code, .. } => match code.as_str() {
                "not_found" => "not_found",
                "conflict" => "conflict",
                "illegal_transition" => "illegal_transition",
                "invalid_argument" => "invalid_argument",
                "key_revoked" => "key_revoked",
                "key_expired" => "key_expired",
                "forbidden" => "forbidden",
                _ => "unavailable",
            },
        }
    }
}

impl From<getrandom::Error> for Error {
    fn from(_: getrandom::Error) -> Self {
        Error::Randomness
    }
}
