//! The file-system seam of the writer.
//!
//! Every write, sync, truncate, rename and delete the writer performs goes through [`WalFs`] /
//! [`WalFile`], so a fault-injecting implementation (tests) can record them, fail them (ENOSPC,
//! EIO) or materialise "what the disk could hold" after a simulated power loss. [`StdFs`] is
//! the real thing: positioned writes (`pwrite`), `fdatasync`, `ftruncate`, `rename`,
//! directory `fsync`. Reading goes straight to `std::fs` (a crash simulator writes the state it
//! materialises to a real directory and opens that).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open segment file, shared between appenders and the group-commit leader.
pub trait WalFile: Send + Sync + Debug {
    /// Writes all of `buf` at `offset` (does not move any file position).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the written data (and the size, when it changed) on stable storage.
    fn sync_data(&self) -> io::Result<()>;
    /// `ftruncate`.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// The directory operations of the writer.
pub trait WalFs: Send + Sync + Debug {
    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn WalFile>>;
    /// Creates a new file (fails if it exists) for reading and writing.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn WalFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync` of a directory, making creations, renames and deletions in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile(File);

impl WalFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl WalFs for StdFs {
    fn open_rw(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
