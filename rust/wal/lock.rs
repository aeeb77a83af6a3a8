//! The directory lock: one writer per WAL directory.
//!
//! Two `flock(LOCK_EX | LOCK_NB)` locks (through `std::fs::File::try_lock`) are held for the
//! writer's lifetime:
//!
//! 1. on the **directory itself** (an `O_RDONLY | O_DIRECTORY` descriptor). This is the lock
//!    that decides: a directory cannot be unlinked while it holds files, so deleting or
//!    replacing the `LOCK` file cannot hand out a second copy of it;
//! 2. on the lock file `LOCK`, as earlier versions did (a writer of an older version only
//!    takes this one, so both are needed to exclude it), with the `LOCK` file's inode checked
//!    after locking: if the path no longer names the locked inode (deleted or replaced between
//!    our open and our lock), the lock is worthless and is taken again, a bounded number of
//!    times.
//!
//! `flock` locks belong to the open file description, so a second writer is refused whether it
//! lives in another process or in this one; the kernel drops the locks when the holder dies, so
//! a crash never leaves a stale lock. The file's content is informational only (the holder's
//! pid). Where a file system cannot lock directories (some network file systems), the
//! directory lock is skipped and the inode-checked file lock alone protects the directory.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{CoreError, Result};

pub const LOCK_FILE: &str = "LOCK";

/// How many times the lock file is reopened when it was replaced under us before giving up.
const LOCK_FILE_ATTEMPTS: usize = 8;

/// Held for as long as the writer lives; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    file: File,
    dir: Option<File>,
    path: PathBuf,
}

enum Attempt {
    Locked(File),
    /// The path no longer names the inode we locked: open and lock again.
    Replaced,
}

impl DirLock {
    /// Takes the lock of `dir` or fails at once with [`CoreError::DataDirLocked`].
    /// The directory must pass [`crate::fsguard::check_dir`] (no symlink, not world-writable);
    /// the lock file is opened with `O_NOFOLLOW`, so a symbolic link planted as `LOCK` is
    /// refused instead of followed (the holder truncates and writes it).
    pub fn acquire(dir: &Path) -> Result<Self> {
        crate::fsguard::check_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let locked = || CoreError::DataDirLocked {
            path: dir.to_path_buf(),
            lock: path.clone(),
        };
        let dir_file = lock_dir(dir).map_err(|e| match e {
            TryLockError::WouldBlock => locked(),
            TryLockError::Error(e) => CoreError::io("lock directory", dir, e),
        })?;
        let mut attempts = 0;
        let mut file = loop {
            attempts += 1;
            match lock_file(&path).map_err(|e| match e {
                TryLockError::WouldBlock => locked(),
                TryLockError::Error(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                    CoreError::UnexpectedFile {
                        path: path.clone(),
                        what: "the lock file is a symbolic link; remove it (the queue recreates \
                               it)"
                        .into(),
                    }
                }
                TryLockError::Error(e) => CoreError::io("lock", &path, e),
            })? {
                Attempt::Locked(f) => break f,
                Attempt::Replaced if attempts < LOCK_FILE_ATTEMPTS => continue,
                // Someone keeps replacing the file as fast as we lock it: not a lock we hold.
                Attempt::Replaced => return Err(locked()),
            }
        };
        // Best effort: who holds it, for humans looking at the directory.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Self {
            file,
            dir: dir_file,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock now (dropping does the same).
    pub fn release(self) {
        let _ = self.file.unlock();
        if let Some(d) = &self.dir {
            let _ = d.unlock();
        }
    }
}

/// Locks the directory itself; `Ok(None)` where the file system cannot lock a directory.
fn lock_dir(dir: &Path) -> std::result::Result<Option<File>, TryLockError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)
        .map_err(TryLockError::Error)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::Error(e))
            if matches!(
                e.raw_os_error(),
                Some(libc::EBADF | libc::EINVAL | libc::ENOLCK | libc::EOPNOTSUPP)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens (creating) and locks `LOCK`, then checks that the path still names the locked inode.
fn lock_file(path: &Path) -> std::result::Result<Attempt, TryLockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::fsguard::FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(TryLockError::Error)?;
    file.try_lock()?;
    if still_named(&file, path).map_err(TryLockError::Error)? {
        Ok(Attempt::Locked(file))
    } else {
        Ok(Attempt::Replaced)
    }
}

/// Whether `path` still names the inode open as `file` (false: deleted or replaced).
fn still_named(file: &File, path: &Path) -> std::io::Result<bool> {
    let held = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn locked(r: &Result<DirLock>) -> bool {
        matches!(r, Err(CoreError::DataDirLocked { .. }))
    }

    #[test]
    fn a_deleted_lock_file_does_not_let_a_second_holder_in() {
        let t = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(t.path()).unwrap();
        std::fs::remove_file(t.path().join(LOCK_FILE)).unwrap();
        let second = DirLock::acquire(t.path());
        assert!(locked(&second), "{second:?}");
        // Replaced by another file: same answer.
        std::fs::write(t.path().join(LOCK_FILE), b"").unwrap();
        assert!(locked(&DirLock::acquire(t.path())));
        first.release();
        let again = DirLock::acquire(t.path()).unwrap();
        assert!(locked(&DirLock::acquire(t.path())));
        again.release();
    }

    #[test]
    fn an_older_writer_holding_only_the_lock_file_excludes_us() {
        let t = tempfile::tempdir().unwrap();
        let old = File::create(t.path().join(LOCK_FILE)).unwrap();
        old.try_lock().unwrap();
        let err = DirLock::acquire(t.path());
        assert!(locked(&err), "{err:?}");
        // The directory lock taken before the refusal was released with it.
        old.unlock().unwrap();
        DirLock::acquire(t.path()).unwrap().release();
    }

    #[test]
    fn a_lock_file_symlink_is_refused_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let d = t.path().join("wal");
        std::fs::create_dir(&d).unwrap();
        std::os::unix::fs::symlink(&victim, d.join(LOCK_FILE)).unwrap();
        let err = DirLock::acquire(&d).unwrap_err();
        assert!(matches!(err, CoreError::UnexpectedFile { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // The directory lock went with the refusal.
        std::fs::remove_file(d.join(LOCK_FILE)).unwrap();
        DirLock::acquire(&d).unwrap().release();
    }

    #[test]
    fn a_lock_file_deleted_or_replaced_after_opening_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(LOCK_FILE);
        let opened = File::create(&path).unwrap();
        assert!(still_named(&opened, &path).unwrap());
        std::fs::remove_file(&path).unwrap();
        assert!(!still_named(&opened, &path).unwrap());
        std::fs::write(&path, b"").unwrap();
        assert!(!still_named(&opened, &path).unwrap());
        // A lock held on the unlinked inode does not count: the path is locked afresh.
        opened.try_lock().unwrap();
        assert!(matches!(lock_file(&path).unwrap(), Attempt::Locked(_)));
    }
}
