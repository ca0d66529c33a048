//! Writing the node's files: secrets 0600, never overwriting anything that exists, and every file and
//! the directory entry that names it synced before the caller goes on (keymgr's `durable` module does
//! the syncing for the whole workspace).

use std::path::{Path, PathBuf};

use keymgr::durable;

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

impl From<durable::DurableError> for FileError {
    fn from(e: durable::DurableError) -> FileError {
        FileError {
            path: e.path,
            why: e.why,
        }
    }
}

/// Writes a secret (mode 0600) durably; refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    Ok(durable::create_file(
        path,
        bytes,
        durable::PRIVATE_FILE_MODE,
    )?)
}

/// Writes a non-secret file (mode 0644) durably; refuses to overwrite.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    Ok(durable::create_file(path, bytes, 0o644)?)
}

/// Makes a directory (and its parents) that only the owner may use, durably.
pub fn private_dir(path: &Path) -> Result<(), FileError> {
    Ok(durable::create_private_dir(path)?)
}

/// Replaces a non-secret file whole, durably: the new content is written and synced beside the old
/// (`NAME.new`), renamed over it, and the directory synced; a crash leaves the old file or the new.
pub fn replace_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut fresh = path.as_os_str().to_owned();
    fresh.push(".new");
    let fresh = std::path::PathBuf::from(fresh);
    write_public(&fresh, bytes)?;
    std::fs::rename(&fresh, path).map_err(|e| FileError {
        path: path.to_owned(),
        why: format!("cannot replace it: {e}"),
    })?;
    if let Some(dir) = path.parent() {
        durable::sync_dir(dir)?;
    }
    Ok(())
}
