//! The write-ahead log: a directory of segment files holding checksummed records.
//!
//! ```text
//! segment file  = segment header (40 B) , record* , zero padding (preallocated)
//! record        = record header (40 B) , payload (payload_len B)
//! payload       = event_count postcard-encoded events, back to back (codec.rs)
//! ```
//!
//! Byte layouts are in [`format`] and, normatively, in `docs/FORMAT.md`. One module per
//! concern:
//!
//! | module | concern |
//! |---|---|
//! | [`format`] | header layouts, magics, checksums |
//! | [`dir`] | segment naming, directory listing, unexpected files |
//! | [`lock`] | the `LOCK` file (`flock`) |
//! | [`fs`] | the I/O seam (real files, or a fault injector in tests) |
//! | [`scan`] | sequential verification, crash-tail vs corruption |
//! | [`encoded`] | a record encoded before its append (no lock held) |
//! | [`writer`] | appends, group commit, rotation, preallocation, recovery at open |
//! | [`reader`] | streaming reads and `seek` |
//! | [`repair`] | `verify` and the explicit `repair` cut |

pub mod dir;
pub mod encoded;
pub mod format;
pub mod fs;
pub mod lock;
pub mod reader;
pub mod repair;
pub mod scan;
pub mod writer;

pub use encoded::EncodedRecord;
pub use reader::{ReadEvent, ReadRecord, WalReader};
pub use repair::{repair, verify, RepairReport, VerifyReport};
pub use writer::{Appended, Durability, RecoveryReport, WalOptions, WalStats, WalWriter};

#[cfg(test)]
mod crash_tests;
#[cfg(test)]
pub(crate) mod faultfs;
#[cfg(test)]
mod held_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod over_limit_tests;
#[cfg(test)]
mod sealed_tests;
#[cfg(test)]
pub(crate) mod tests;
