//! Who may touch the data directory: owner-only permissions, no symlinked or world-writable
//! directories.
//!
//! The queue's files hold task payloads (often credentials, personal data) and its log is
//! the source of truth, so:
//!
//! * directories it creates get mode `0700` and files `0600` (the process umask can only
//!   narrow this further);
//! * a directory it writes into (the data directory, `wal/`, `snapshots/`) must be a real
//!   directory, not a symbolic link — a link swapped in by someone else would redirect every
//!   write; to use a link on purpose, pass its resolved path (`os.path.realpath`);
//! * it must not be world-writable: any local user could then plant, replace or delete
//!   segment and snapshot files (including the `LOCK` file, which is opened with
//!   `O_NOFOLLOW` so a planted link never redirects the lock holder's write either).
//!
//! Both refusals are [`CoreError::UnexpectedFile`] (`DataDirError` in Python) naming the
//! directory and saying how to fix it.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::{CoreError, Result};

/// Mode of the directories the queue creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the queue creates.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and any missing parents with mode [`DIR_MODE`]. An existing directory is left
/// as it is (see [`check_dir`]).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| CoreError::io("mkdir", dir, e))
}

/// Refuses a directory the queue should not write into: a symbolic link, not a directory, or
/// writable by every user.
pub fn check_dir(dir: &Path) -> Result<()> {
    let refuse = |what: String| CoreError::UnexpectedFile {
        path: dir.to_path_buf(),
        what,
    };
    let meta = std::fs::symlink_metadata(dir).map_err(|e| CoreError::io("stat", dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(refuse(
            "is a symbolic link; the queue writes only into real directories (a link swapped \
             in by someone else would redirect its writes). Pass the resolved path \
             (os.path.realpath) to use the link's target on purpose"
                .into(),
        ));
    }
    if !meta.is_dir() {
        return Err(refuse("exists and is not a directory".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(refuse(format!(
            "is world-writable (mode {mode:04o}): any local user could plant, replace or \
             delete the queue's files. Run `chmod o-w` on it (the queue creates its \
             directories with mode 0700) or choose another directory"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn creates_owner_only_and_refuses_links_and_world_writable() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        create_private_dir(&d).unwrap();
        for p in [t.path().join("a"), d.clone()] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{p:?} has mode {mode:o}");
        }
        check_dir(&d).unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        let e = check_dir(&link).unwrap_err().to_string();
        assert!(e.contains("symbolic link") && e.contains("link"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_dir(&d).unwrap_err().to_string();
        assert!(e.contains("world-writable") && e.contains("0777"), "{e}");
        let f = t.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(check_dir(&f).is_err());
    }
}
