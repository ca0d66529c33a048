//! Writing the node's files: secrets 0600, never overwriting anything that exists.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub why: String,
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let err = |why: String| FileError {
        path: path.to_owned(),
        why,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options
        .open(path)
        .map_err(|e| err(format!("cannot create it: {e}")))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| err(format!("cannot write it: {e}")))
}

/// Writes a secret (mode 0600); refuses to overwrite.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write(path, bytes, 0o600)
}

/// Writes a non-secret file (mode 0644); refuses to overwrite.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write(path, bytes, 0o644)
}

/// Makes a directory (and its parents) that only the owner may use.
pub fn private_dir(path: &Path) -> Result<(), FileError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(path).map_err(|e| FileError {
        path: path.to_owned(),
        why: format!("cannot create it: {e}"),
    })
}
