//! The checkpoint signing key kept in a file in the data directory, in the C2SP/Go `PRIVATE+KEY+…` form.
//!
//! This is the interim home of the key until keymgr manages it wrapped under the KEK; until then the file
//! is created with mode 0600, never overwritten, and refused when anyone but the owner can read it.

use std::path::Path;

use zeroize::Zeroizing;

use super::error::LedgerError;
use super::note::Ed25519NoteSigner;

fn key_error(path: &Path, why: impl Into<String>) -> LedgerError {
    LedgerError::SigningKey {
        path: path.to_owned(),
        why: why.into(),
    }
}

/// Loads the signing key at `path`.
pub fn load_signing_key(path: &Path) -> Result<Ed25519NoteSigner, LedgerError> {
    let meta =
        std::fs::metadata(path).map_err(|e| key_error(path, format!("cannot read it: {e}")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!("permissions {mode:o} let others read it; run chmod 600"),
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| key_error(path, format!("cannot read it: {e}")))?,
    );
    Ed25519NoteSigner::from_skey(&text).map_err(|e| key_error(path, e.to_string()))
}

/// Loads the signing key at `path`, or makes a new one named `name` there if there is no file yet.
pub fn load_or_create_signing_key(
    path: &Path,
    name: &str,
) -> Result<Ed25519NoteSigner, LedgerError> {
    if path.exists() {
        return load_signing_key(path);
    }
    let signer = Ed25519NoteSigner::generate(name).map_err(|e| key_error(path, e.to_string()))?;
    if let Some(dir) = path.parent() {
        // The data directory holds secrets: only the owner may list it.
        keymgr::durable::create_private_dir(dir)
            .map_err(|e| key_error(path, format!("cannot create its directory: {}", e.why)))?;
    }
    let mut text = signer.to_skey();
    text.push('\n');
    keymgr::durable::create_file(path, text.as_bytes(), keymgr::durable::PRIVATE_FILE_MODE)
        .map_err(|e| key_error(path, e.why))?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::note::NoteSigner as _;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let a = load_or_create_signing_key(&path, "log").unwrap();
        let b = load_or_create_signing_key(&path, "other-name-ignored").unwrap();
        assert_eq!(a.verifier(), b.verifier());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_others_can_read() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create_signing_key(&path, "log").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&path).unwrap_err().to_string();
        assert!(err.contains("permissions 644 let others read it"), "{err}");
    }
}
