//! actionqueue core: the durable half of the queue.
//!
//! Holds what must be fast and exact: WAL framing and CRC32C checksums, the event codec,
//! segment files and the directory lock, group commit, the streaming reader and tail repair,
//! the replay reducer with its state indexes, snapshots and recovery.
//!
//! Nothing here knows about Python. The PyO3 binding layer lives in [`py`] behind the
//! `python` cargo feature, so `cargo test` exercises the core with no interpreter.
#![deny(unsafe_code)]

pub mod authority;
pub mod codec;
pub mod error;
pub mod event;
pub mod fork;
pub mod fsguard;
pub mod model;
pub mod recovery;
pub mod snapshot;
pub mod state;
pub mod wal;

#[cfg(feature = "python")]
mod py;

pub use error::{CoreError, Result};

/// Version of the on-disk formats written by this build (WAL segments and snapshots).
pub const FORMAT_VERSION: u32 = 1;

/// The default largest record the WAL accepts or allocates for while reading (64 MiB).
pub const DEFAULT_MAX_RECORD_SIZE: u64 = 64 * 1024 * 1024;

/// Refuses a record size over `max` before anything is allocated or written.
pub fn check_record_size(size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(CoreError::RecordTooLarge { size, max });
    }
    Ok(())
}

#[cfg(test)]
mod fuzz_tests;

#[cfg(test)]
mod authority_fault_tests;
