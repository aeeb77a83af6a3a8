//! What a WAL directory holds, and how segment files are named.
//!
//! ```text
//! <wal dir>/
//!   LOCK                          the writer's flock (see lock.rs)
//!   00000000000000000001.wal      segment whose first event has sequence 1
//!   00000000000000004711.wal      next segment: first sequence 4711
//!   00000000000000009000.wal.tmp  a segment being created (renamed into place when ready)
//! ```
//!
//! Names are the first sequence as 20 zero-padded decimal digits, so a plain listing sorts in
//! log order and `seek(sequence)` is a binary search over names. Anything else in the
//! directory is reported as [`CoreError::UnexpectedFile`] naming it: the WAL never guesses
//! about files it did not write.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use super::lock::LOCK_FILE;
use crate::{CoreError, Result};

pub const SEGMENT_SUFFIX: &str = ".wal";
pub const TMP_SUFFIX: &str = ".wal.tmp";

pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SEGMENT_SUFFIX}")
}

/// Parses `00000000000000000042.wal` → 42.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    pub first_seq: u64,
    pub path: PathBuf,
}

impl SegmentEntry {
    pub fn name(&self) -> String {
        segment_name(self.first_seq)
    }
}

#[derive(Debug, Default)]
pub struct Listing {
    /// Sorted by first sequence.
    pub segments: Vec<SegmentEntry>,
    /// Leftovers of a segment creation interrupted by a crash.
    pub temps: Vec<PathBuf>,
}

impl Listing {
    /// Index of the segment that holds `seq` (the last one whose first sequence is `<= seq`).
    pub fn segment_for(&self, seq: u64) -> usize {
        self.segments
            .partition_point(|s| s.first_seq <= seq)
            .saturating_sub(1)
    }
}

pub fn list(dir: &Path) -> Result<Listing> {
    let entries = std::fs::read_dir(dir).map_err(|e| CoreError::io("read_dir", dir, e))?;
    let mut out = Listing::default();
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("read_dir", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(unexpected(path, "file name is not UTF-8"));
        };
        let file_type = entry
            .file_type()
            .map_err(|e| CoreError::io("stat", &path, e))?;
        if name == LOCK_FILE {
            continue;
        }
        if name.ends_with(TMP_SUFFIX) && file_type.is_file() {
            out.temps.push(path);
            continue;
        }
        match parse_segment_name(name) {
            Some(first_seq) if file_type.is_file() => {
                out.segments.push(SegmentEntry { first_seq, path })
            }
            Some(_) => {
                return Err(unexpected(
                    path,
                    "a segment name that is not a regular file",
                ))
            }
            None => {
                return Err(unexpected(
                    path,
                    "not a WAL file (expected LOCK or <20-digit first sequence>.wal); \
                     move it out of the WAL directory",
                ))
            }
        }
    }
    out.segments.sort_by_key(|s| s.first_seq);
    out.temps.sort();
    Ok(out)
}

fn unexpected(path: PathBuf, what: &str) -> CoreError {
    CoreError::UnexpectedFile {
        path,
        what: what.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_in_log_order_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.wal"), None);
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn segment_for_is_a_binary_search() {
        let l = Listing {
            segments: [1u64, 100, 200]
                .iter()
                .map(|&s| SegmentEntry {
                    first_seq: s,
                    path: segment_name(s).into(),
                })
                .collect(),
            temps: vec![],
        };
        assert_eq!(l.segment_for(1), 0);
        assert_eq!(l.segment_for(99), 0);
        assert_eq!(l.segment_for(100), 1);
        assert_eq!(l.segment_for(10_000), 2);
        assert_eq!(l.segment_for(0), 0);
    }
}
