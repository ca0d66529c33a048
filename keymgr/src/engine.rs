//! The storage engine's file, opened or created the one way every store of the node does it: created
//! durably (a 0700 directory, a 0600 file, both synced with the directories that name them), opened
//! with redb's panics on damaged files turned into errors, and the engine's failures sorted into what
//! a store reports. The key store and the gateway's ledger both open their database here.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::durable::{DurableError, create_private_dir, create_private_empty};

/// Why a store's database file could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or handle) has it open.
    #[error("it is open in another process")]
    Locked,
    /// The file is not a database of this engine.
    #[error("{file} is not a database ({why})")]
    NotADatabase {
        /// The file's name.
        file: String,
        /// The engine's reason.
        why: String,
    },
    /// The engine could not read it (it panicked on damaged contents).
    #[error("the storage engine could not read it (damaged files)")]
    Damaged,
    /// Creating the directory or file failed.
    #[error(transparent)]
    Create(#[from] DurableError),
    /// Any other failure of the engine.
    #[error(transparent)]
    Engine(#[from] redb::DatabaseError),
}

/// Opens `dir/file`; with `create`, first makes the directory and an empty file durably. An empty
/// file is initialised as a new database: creation stopped before its first commit, so nothing was
/// ever acknowledged from it. Says whether the database is new.
pub fn open_file(
    dir: &Path,
    file: &str,
    create: bool,
) -> Result<(redb::Database, bool), OpenError> {
    open_file_with(dir, file, create, None)
}

/// [`open_file`] with redb's page cache limited to `cache_bytes` (default: redb's). A single pass
/// over a large store (the offline verifier) wants a small cache: with redb's default every page read
/// stays cached, so each read lands in fresh memory the kernel must zero first, which took over half
/// of `ledger verify`'s time on a node-written ledger.
pub fn open_file_with(
    dir: &Path,
    file: &str,
    create: bool,
    cache_bytes: Option<usize>,
) -> Result<(redb::Database, bool), OpenError> {
    let path = dir.join(file);
    if create {
        create_private_dir(dir)?;
        if !path.exists() {
            create_private_empty(&path)?;
        }
    }
    let new = std::fs::metadata(&path).is_ok_and(|m| m.len() == 0);
    // redb panics in debug builds on some damaged files; a damaged store must be an error.
    let opened = catch_unwind(AssertUnwindSafe(|| {
        let mut builder = redb::Database::builder();
        if let Some(bytes) = cache_bytes {
            builder.set_cache_size(bytes);
        }
        if new {
            builder.create(&path)
        } else {
            builder.open(&path)
        }
    }));
    match opened {
        Ok(Ok(db)) => Ok((db, new)),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(OpenError::Locked),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            Err(OpenError::NotADatabase {
                file: file.to_owned(),
                why: e.to_string(),
            })
        }
        Ok(Err(e)) => Err(OpenError::Engine(e)),
        Err(_) => Err(OpenError::Damaged),
    }
}

/// The first key after every key that starts with `prefix` (`None`: no such key, scan to the end):
/// the exclusive end of a prefix scan in a table ordered by bytes.
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    #[test]
    fn garbage_is_not_a_database_and_a_second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.redb"), [0xA5u8; 4096]).unwrap();
        assert!(matches!(
            open_file(dir.path(), "x.redb", false),
            Err(OpenError::NotADatabase { .. } | OpenError::Damaged | OpenError::Engine(_))
        ));
        let (_held, new) = open_file(&dir.path().join("s"), "y.redb", true).unwrap();
        assert!(new);
        assert!(matches!(
            open_file(&dir.path().join("s"), "y.redb", false),
            Err(OpenError::Locked)
        ));
    }
}
