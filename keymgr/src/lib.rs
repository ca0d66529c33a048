//! Ledgergate key management: every key the gateway uses has a name, numbered versions and a life —
//! active, deactivated, compromised, destroyed (NIST SP 800-57, KMIP) — and no key is valid forever.
//! Secrets at rest are wrapped under a key-encryption key; officers drive it all with the `keymgr` CLI.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin_client;
mod audit;
mod cache;
mod command;
pub mod compact;
pub mod durable;
pub mod engine;
mod error;
mod kek;
mod lifecycle;
mod manager;
mod peers;
mod purpose;
mod record;
mod secret;
mod store;
mod subjects;
mod token;
mod usage;

pub use audit::AuditEvent;
pub use cache::{CACHE_LIMIT, CACHE_TTL};
pub use command::{
    Backend, Command, DEFAULT_PAGE, KeyView, Outcome, ShredView, VersionView, execute,
};
pub use error::Error;
pub use kek::{
    ARGON2_M_KIB, ARGON2_P, ARGON2_T, KdfParams, Kek, KekSource, UnwrapError, create_key_file,
};
pub use lifecycle::{RevocationReason, Timestamp, TransitionError, VersionState, rfc3339};
pub use manager::{DEFAULT_MAX_AGE, KeyManager, PrimaryKey, Shredded, TokenSigner};
pub use manager::{KeyFilter, MAX_PAGE};
pub use peers::RevokedPeer;
pub use purpose::Purpose;
pub use record::{KeyRecord, UseError, VersionRecord};
pub use secret::Secret;
pub use token::{PinSource, Pkcs11Config};
