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
