//! keymgr's keys, as the policies' transforms and the vault take them: the crates stay apart, and this
//! is the only glue.

use std::sync::Arc;

use keymgr::KeyManager;
use policies::{KeyBytes, KeyError, KeyProvider, SaltSource};

/// Now, in Unix seconds: the gateway reads the clock and hands it to the libraries.
pub fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Managed keys for the transforms, at the time of the request.
#[derive(Debug, Clone)]
pub struct ManagedKeys {
    /// The key store.
    pub keys: Arc<KeyManager>,
    /// The request's time.
    pub now: i64,
}

fn key_error(name: &str, e: &keymgr::Error) -> KeyError {
    match e.code() {
        "not_found" => KeyError::Unknown(name.to_owned()),
        "key_revoked" | "key_expired" | "illegal_transition" => {
            KeyError::NoUsableVersion(name.to_owned())
        }
        _ => KeyError::Unavailable(name.to_owned()),
    }
}

impl KeyProvider for ManagedKeys {
    fn current(&self, name: &str) -> Result<(u32, KeyBytes), KeyError> {
        let k = self
            .keys
            .primary(name, self.now)
            .map_err(|e| key_error(name, &e))?;
        Ok((k.version, KeyBytes::new(k.material.expose().to_vec())))
    }

    fn version(&self, name: &str, version: u32) -> Result<KeyBytes, KeyError> {
        let s = self
            .keys
            .version_material(name, version)
            .map_err(|e| key_error(name, &e))?;
        Ok(KeyBytes::new(s.expose().to_vec()))
    }
}

/// Salts from the operating system's random source.
#[derive(Debug, Default)]
pub struct OsSalts;

impl SaltSource for OsSalts {
    fn fill(&mut self, salt: &mut [u8]) {
        // A failing OS random source leaves the process unable to do any cryptography; a zero salt
        // would silently weaken commitments, so stop instead.
        #[allow(clippy::panic)]
        if getrandom::fill(salt).is_err() {
            panic!("the operating system's random source failed");
        }
    }
}
