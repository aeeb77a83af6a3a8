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
    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CoreError::io("open lock file", &path, e))?;
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
