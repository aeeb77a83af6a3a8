//! `verify` (read-only full check) and `repair` (the operator's explicit cut).
//!
//! Recovery at open only ever cuts a crash tail. Anything else stops the open with
//! [`CoreError::WalCorruption`]; `repair` is how an operator decides what to do about it. It
//! finds the first bad spot, reports exactly what lies after it (intact records, events and
//! bytes, in that segment and in every later one) and only when asked cuts the log there —
//! unlike the original design, which dropped valid records after a corruption silently.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs::File;
use std::path::{Path, PathBuf};

use super::dir;
use super::format::{RecordKind, SEGMENT_HEADER_LEN};
use super::lock::DirLock;
use super::scan::{scan_valid_records, Item, Scanner, TailScan};
use crate::codec::decode_batch;
use crate::error::CorruptionReason;
use crate::{CoreError, Result};

/// Result of a full read-only check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    /// First and last event sequence (0 when the log holds no events).
    pub first_sequence: u64,
    pub last_sequence: u64,
    /// A crash tail the next open would cut off: (segment, offset, reason).
    pub torn_tail: Option<(PathBuf, u64, String)>,
}

/// What `repair` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The first bad spot: segment, offset, reason. `None`: the log is sound.
    pub segment: Option<PathBuf>,
    pub offset: u64,
    pub reason: Option<String>,
    /// Whether the first bad spot is a crash tail (open would have cut it anyway).
    pub crash_tail: bool,
    /// Last sequence before the bad spot (0 if none).
    pub last_good_sequence: u64,
    /// Intact records/events after the bad spot, which a cut drops.
    pub records_after: u64,
    pub events_after: u64,
    /// Bytes of intact records after the bad spot.
    pub valid_bytes_after: u64,
    /// Every byte a cut removes (file tails and whole later segments).
    pub bytes_after: u64,
    /// Later segments a cut deletes.
    pub later_segments: Vec<PathBuf>,
    /// Whether the cut was made.
    pub truncated: bool,
}

/// Reads and checks every record of the log (checksums, sequences, decoding). An intact record
/// larger than `max_record_size` is [`CoreError::RecordOverReadLimit`], not corruption.
pub fn verify(dir: &Path, max_record_size: u64) -> Result<VerifyReport> {
    let listing = dir::list(dir)?;
    let mut report = VerifyReport {
        segments: listing.segments.len() as u64,
        ..VerifyReport::default()
    };
    let mut scanner = Scanner::new(listing.segments, 0, max_record_size, None, None);
    loop {
        match scanner.next_item()? {
            Item::Record {
                seg,
                offset,
                header,
            } => {
                report.records += 1;
                report.bytes += header.record_len();
                if header.kind == RecordKind::Events {
                    decode_batch(scanner.payload(), header.event_count)
                        .map_err(|e| corruption(&scanner, seg, offset, e))?;
                    if report.first_sequence == 0 {
                        report.first_sequence = header.first_seq;
                    }
                    report.events += u64::from(header.event_count);
                    report.last_sequence = header.next_seq() - 1;
                }
            }
            Item::End(tail) => {
                if let (Some(d), Some(seg)) = (tail.damage, tail.seg) {
                    let path = scanner
                        .segments()
                        .get(seg)
                        .map(|s| s.path.clone())
                        .unwrap_or_default();
                    report.torn_tail = Some((path, tail.offset, d.reason.to_string()));
                }
                return Ok(report);
            }
        }
    }
}

fn corruption(scanner: &Scanner, seg: usize, offset: u64, e: CoreError) -> CoreError {
    CoreError::WalCorruption {
        segment: scanner
            .segments()
            .get(seg)
            .map(|s| s.path.clone())
            .unwrap_or_default(),
        offset,
        reason: CorruptionReason::Decode(match e {
            CoreError::Decode(s) => s,
            other => other.to_string(),
        }),
    }
}

/// Finds the first bad spot and reports what lies after it; with `truncate`, cuts the log
/// there (truncating that segment, deleting later ones, syncing). Takes the directory lock.
///
/// An intact record larger than `max_record_size` is not a bad spot: it stops the search with
/// [`CoreError::RecordOverReadLimit`] (run again with a larger maximum) and nothing is cut.
/// Records after a bad spot are counted whatever their size.
pub fn repair(dir: &Path, max_record_size: u64, truncate: bool) -> Result<RepairReport> {
    let lock = DirLock::acquire(dir)?;
    let listing = dir::list(dir)?;
    let segs = listing.segments;
    let mut scanner = Scanner::new(segs.clone(), 0, max_record_size, None, None);
    let mut report = RepairReport::default();
    let (seg, offset, reason, crash_tail) = loop {
        match scanner.next_item() {
            Ok(Item::Record {
                seg,
                offset,
                header,
            }) => {
                if header.kind == RecordKind::Events {
                    if let Err(e) = decode_batch(scanner.payload(), header.event_count) {
                        let reason = CorruptionReason::Decode(e.to_string());
                        break (seg, offset, reason, false);
                    }
                    report.last_good_sequence = header.next_seq() - 1;
                }
            }
            Ok(Item::End(tail)) => match (tail.damage, tail.seg) {
                (Some(d), Some(seg)) => break (seg, tail.offset, d.reason, true),
                _ => {
                    lock.release();
                    return Ok(report);
                }
            },
            Err(CoreError::WalCorruption {
                segment,
                offset,
                reason,
            }) => {
                let seg = segs.iter().position(|s| s.path == segment).unwrap_or(0);
                break (seg, offset, reason, false);
            }
            // Including an intact record over `max_record_size`: refused, never a place to
            // cut (it is acknowledged data; a larger maximum reads it).
            Err(e) => return Err(e),
        }
    };
    let Some(bad) = segs.get(seg) else {
        return Ok(report);
    };
    report.segment = Some(bad.path.clone());
    report.offset = offset;
    report.reason = Some(reason.to_string());
    report.crash_tail = crash_tail;
    // What lies after the bad spot: the rest of its segment, then every later segment.
    let mut after = count_after(&bad.path, offset.saturating_add(1))?;
    report.bytes_after = file_len(&bad.path)?.saturating_sub(offset);
    for later in segs.iter().skip(seg + 1) {
        let more = count_after(&later.path, 0)?;
        after.records += more.records;
        after.events += more.events;
        after.bytes += more.bytes;
        report.bytes_after += file_len(&later.path)?;
        report.later_segments.push(later.path.clone());
    }
    report.records_after = after.records;
    report.events_after = after.events;
    report.valid_bytes_after = after.bytes;
    if truncate {
        for later in &report.later_segments {
            std::fs::remove_file(later).map_err(|e| CoreError::io("remove", later, e))?;
        }
        if offset < SEGMENT_HEADER_LEN as u64 {
            std::fs::remove_file(&bad.path).map_err(|e| CoreError::io("remove", &bad.path, e))?;
        } else {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&bad.path)
                .map_err(|e| CoreError::io("open", &bad.path, e))?;
            f.set_len(offset)
                .and_then(|()| f.sync_all())
                .map_err(|e| CoreError::io("truncate", &bad.path, e))?;
        }
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CoreError::io("fsync dir", dir, e))?;
        report.truncated = true;
    }
    lock.release();
    Ok(report)
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| CoreError::io("stat", path, e))
}

fn count_after(path: &Path, from: u64) -> Result<TailScan> {
    let f = File::open(path).map_err(|e| CoreError::io("open", path, e))?;
    let len = file_len(path)?;
    scan_valid_records(&f, from, len).map_err(|e| CoreError::io("read", path, e))
}
