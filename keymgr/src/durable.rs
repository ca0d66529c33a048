//! Files and directories that survive a power cut: what is written is `fsync`ed, and so is the directory
//! that names it. A node's secrets and stores are created only through here, so "created" always means
//! "on stable storage", and always with the owner-only modes the node checks at start.
//!
//! Why the directory too: a new file's name lives in its directory, and POSIX makes it durable only
//! when the directory is synced. The project's power-loss tests run on a file system that drops every
//! name whose directory was not synced since it was made (`tests/src/bin/powerfs.rs`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Mode of every directory a node creates for its data and secrets.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file a node creates for its data and secrets.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// A file or directory could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct DurableError {
    /// The path.
    pub path: PathBuf,
    /// What failed, with the system's reason.
    pub why: String,
}

fn failed(path: &Path, step: &str, e: &std::io::Error) -> DurableError {
    DurableError {
        path: path.to_owned(),
        why: format!("{step}: {e}"),
    }
}

/// `fsync`s a directory, making the names in it (new, renamed, removed) durable.
pub fn sync_dir(path: &Path) -> Result<(), DurableError> {
    std::fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed(path, "cannot sync the directory", &e))
}

/// The directory that names `path` (`.` for a bare relative name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes `path` and any missing parents with mode 0700, syncing each new directory's parent so that
/// the whole chain of names survives a power cut. An existing directory is left as it is.
pub fn create_private_dir(path: &Path) -> Result<(), DurableError> {
    if path.is_dir() {
        return Ok(());
    }
    create_private_dir(parent_of(path))?;
    let mut b = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(PRIVATE_DIR_MODE);
    }
    match b.create(path) {
        Ok(()) => {}
        // Made meanwhile by someone else: theirs to sync, and ours is the same directory.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
        Err(e) => return Err(failed(path, "cannot create it", &e)),
    }
    sync_dir(parent_of(path))
}

/// Creates a new file with `mode` holding `bytes`, syncs it and its directory; never overwrites.
pub fn create_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), DurableError> {
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
        .map_err(|e| failed(path, "cannot create it", &e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| failed(path, "cannot write it", &e))?;
    sync_dir(parent_of(path))
}

/// Creates a new, empty file with mode 0600 for a storage engine to fill, syncs it and its directory;
/// never overwrites. The engine's own commits sync the contents from then on.
pub fn create_private_empty(path: &Path) -> Result<(), DurableError> {
    create_file(path, &[], PRIVATE_FILE_MODE)
}

/// Refuses a file or directory that anyone but its owner may read, write or (for files) run: the
/// check a node makes at start on everything under its data directory.
pub fn check_private(path: &Path) -> Result<(), DurableError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta =
            std::fs::metadata(path).map_err(|e| failed(path, "cannot read its metadata", &e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let want = if meta.is_dir() {
                PRIVATE_DIR_MODE
            } else {
                PRIVATE_FILE_MODE
            };
            return Err(DurableError {
                path: path.to_owned(),
                why: format!(
                    "mode {mode:04o} lets others in; it must be the owner's alone (chmod {want:o})"
                ),
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    #[cfg(unix)]
    fn new_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        for p in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(p)), 0o700, "{p}");
        }
        let f = deep.join("f");
        create_private_empty(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        check_private(&f).unwrap();
        check_private(&deep).unwrap();
    }

    #[test]
    fn never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        create_file(&f, b"one", PRIVATE_FILE_MODE).unwrap();
        let err = create_file(&f, b"two", PRIVATE_FILE_MODE).unwrap_err();
        assert!(err.why.starts_with("cannot create it: "), "{err}");
        assert_eq!(std::fs::read(&f).unwrap(), b"one");
    }

    #[test]
    #[cfg(unix)]
    fn open_modes_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        create_private_empty(&f).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            check_private(&f).unwrap_err().to_string(),
            format!(
                "{}: mode 0644 lets others in; it must be the owner's alone (chmod 600)",
                f.display()
            )
        );
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            check_private(dir.path())
                .unwrap_err()
                .to_string()
                .ends_with("mode 0755 lets others in; it must be the owner's alone (chmod 700)")
        );
    }
}
