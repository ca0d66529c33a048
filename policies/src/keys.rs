//! How transforms reach keys and randomness without this crate owning either: the gateway passes in
//! keymgr's keys and the system's random source; tests pass fixed ones.

use std::fmt;

use zeroize::Zeroizing;

/// A managed key version used by a record, recorded so that a compromised version's records can be
/// found (`keymgr affected NAME --version V`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct KeyRef {
    /// Key name, e.g. `pseudonym`.
    pub name: String,
    /// Version number.
    pub version: u32,
}

impl fmt::Display for KeyRef {
    /// `name@version`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// Why a key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No key of that name exists.
    #[error("no key named `{0}`")]
    Unknown(String),
    /// The key exists but no version may be used for new work (revoked as compromised, destroyed, or
    /// past its maximum age).
    #[error("key `{0}` has no usable version")]
    NoUsableVersion(String),
    /// The key store failed.
    #[error("key `{0}` could not be read")]
    Unavailable(String),
}

/// Key material handed to a transform; zeroized when dropped.
pub type KeyBytes = Zeroizing<Vec<u8>>;

/// Named, versioned keys.
pub trait KeyProvider {
    /// The version to use for new work under `name`, and its bytes.
    fn current(&self, name: &str) -> Result<(u32, KeyBytes), KeyError>;
    /// The bytes of one version (to recompute or check an older pseudonym).
    fn version(&self, name: &str, version: u32) -> Result<KeyBytes, KeyError>;
}

/// A source of random salts for sealed fields.
pub trait SaltSource {
    /// Fills `salt` with unpredictable bytes.
    fn fill(&mut self, salt: &mut [u8]);
}
