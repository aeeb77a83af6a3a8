//! The directory lock: one writer per WAL directory.
//!
//! The lock file `LOCK` in the WAL directory is held with `flock(LOCK_EX | LOCK_NB)` (through
//! `std::fs::File::try_lock`) for the writer's lifetime. `flock` locks belong to the open file
//! description, so a second writer is refused whether it lives in another process or in this
//! one; the kernel drops the lock when the holder dies, so a crash never leaves a stale lock.
//! The file's content is informational only (the holder's pid).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{CoreError, Result};

pub const LOCK_FILE: &str = "LOCK";

/// Held for as long as the writer lives; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock of `dir` or fails at once with [`CoreError::DataDirLocked`].
    /// The directory must pass [`crate::fsguard::check_dir`] (no symlink, not world-writable);
    /// the lock file is opened with `O_NOFOLLOW`, so a symbolic link planted as `LOCK` is
    /// refused instead of followed (the holder truncates and writes it).
    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        crate::fsguard::check_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::fsguard::FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => CoreError::UnexpectedFile {
                    path: path.clone(),
                    what: "the lock file is a symbolic link; remove it (the queue recreates it)"
                        .into(),
                },
                _ => CoreError::io("open lock file", &path, e),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(CoreError::DataDirLocked {
                    path: dir.to_path_buf(),
                    lock: path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(CoreError::io("flock", &path, e)),
        }
        // Best effort: who holds it, for humans looking at the directory.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock now (dropping does the same).
    pub fn release(self) {
        let _ = self.file.unlock();
    }
}
