//! A record larger than the reader's `max_record_size` — written by a writer configured with a
//! larger one — is intact data: reading, verifying, repairing or opening the log with the
//! smaller limit reports it as too large ([`CoreError::RecordOverReadLimit`]) and changes
//! nothing. Damage to such a record is judged like damage to any other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use super::dir::segment_name;
use super::format::{RecordHeader, RecordKind, SegmentHeader, RECORD_HEADER_LEN};
use super::tests::{ev, segments};
use super::*;
use crate::error::CorruptionReason;
use crate::event::Event;
use crate::{CoreError, FORMAT_VERSION};

const WRITER_MAX: u64 = 4096;
const READER_MAX: u64 = 1024;
const H: u64 = RECORD_HEADER_LEN as u64;

fn big() -> Event {
    Event::LeaseRelease {
        run_id: [7; 16],
        owner: "x".repeat(3000),
        at: 5,
    }
}

fn opts(max_record_size: u64) -> WalOptions {
    WalOptions {
        max_record_size,
        preallocate: 0,
        ..WalOptions::default()
    }
}

/// Small, big (over `READER_MAX`), small; closed cleanly (`sync_mark`: the close's sync mark
/// is kept, else removed as if the writer had died). Returns the segment and the big record's
/// offset and payload length.
fn write_log(dir: &Path, sync_mark: bool) -> (PathBuf, u64, u64) {
    let w = WalWriter::open(dir, opts(WRITER_MAX)).unwrap();
    w.append(&[ev(1)], Durability::Immediate, None).unwrap();
    w.append(&[big()], Durability::Immediate, None).unwrap();
    w.append(&[ev(3)], Durability::Immediate, None).unwrap();
    w.close().unwrap();
    if !sync_mark {
        let seg = segments(dir)[0].clone();
        let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - H).unwrap();
        assert_eq!(verify(dir, WRITER_MAX).unwrap().records, 3);
    }
    let mut r = WalReader::open(dir, WRITER_MAX).unwrap();
    let mut offsets = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        offsets.push(rec.offset);
    }
    assert_eq!(offsets.len(), 3);
    let seg = r.segment_paths()[0].clone();
    (seg, offsets[1], offsets[2] - offsets[1] - H)
}

/// The sequences read with the limit `max` (`tests::read_all` reads with the default one).
fn sequences(dir: &Path, max: u64) -> crate::Result<Vec<u64>> {
    WalReader::open(dir, max)?
        .map(|r| r.map(|e| e.sequence))
        .collect()
}

fn assert_over_limit(e: CoreError, seg: &Path, offset: u64, size: u64) {
    match &e {
        CoreError::RecordOverReadLimit {
            segment,
            offset: o,
            sequence,
            size: s,
            max,
        } => {
            assert_eq!(segment, seg);
            assert_eq!((*o, *sequence, *s, *max), (offset, 2, size, READER_MAX));
        }
        other => panic!("expected RecordOverReadLimit, got {other}"),
    }
    let text = e.to_string();
    assert!(
        text.contains(&format!("open it with max_record_size >= {size}")),
        "{text}"
    );
    assert_eq!(e.python_class(), "RecordTooLargeError");
}

#[test]
fn a_log_written_with_a_larger_limit_is_too_large_for_a_smaller_reader_not_corrupt() {
    let t = tempfile::tempdir().unwrap();
    let (seg, offset, size) = write_log(t.path(), true);
    assert!(size > READER_MAX && size <= WRITER_MAX, "{size}");
    let before = std::fs::read(&seg).unwrap();

    // The reader hands out what comes before the record, then stops with the typed error.
    let mut r = WalReader::open(t.path(), READER_MAX).unwrap();
    assert_eq!(r.next_event().unwrap().unwrap().sequence, 1);
    assert_over_limit(r.next_event().unwrap_err(), &seg, offset, size);
    assert_over_limit(
        verify(t.path(), READER_MAX).unwrap_err(),
        &seg,
        offset,
        size,
    );
    // Repair never offers to cut it, asked to cut or not.
    assert_over_limit(
        repair(t.path(), READER_MAX, false).unwrap_err(),
        &seg,
        offset,
        size,
    );
    assert_over_limit(
        repair(t.path(), READER_MAX, true).unwrap_err(),
        &seg,
        offset,
        size,
    );
    // Recovery at open refuses too (the record is in the last segment it scans).
    match WalWriter::open(t.path(), opts(READER_MAX)) {
        Err(e) => assert_over_limit(e, &seg, offset, size),
        Ok(_) => panic!("a writer opened past a record it cannot read"),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), before, "nothing may change");

    // With the writer's limit everything reads, verifies and repairs as sound.
    assert_eq!(sequences(t.path(), WRITER_MAX).unwrap(), vec![1, 2, 3]);
    assert_eq!(sequences(t.path(), size).unwrap(), vec![1, 2, 3]);
    let v = verify(t.path(), size).unwrap();
    assert_eq!((v.records, v.events, v.torn_tail), (4, 3, None));
    assert_eq!(repair(t.path(), size, true).unwrap().segment, None);
    let w = WalWriter::open(t.path(), opts(size)).unwrap();
    assert!(!w.recovery_report().truncated);
    w.close().unwrap();
    assert_eq!(sequences(t.path(), WRITER_MAX).unwrap(), vec![1, 2, 3]);
}

#[test]
fn damage_certified_by_a_later_over_limit_record_is_corruption_not_a_crash_tail() {
    // Record 1, then the big record, and no sync mark (the writer died): the only record that
    // certifies record 1 durable is the big one. A tail scan that skipped it for its size
    // would cut both as a crash tail.
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), opts(WRITER_MAX)).unwrap();
    w.append(&[ev(1)], Durability::Immediate, None).unwrap();
    w.append(&[big()], Durability::Immediate, None).unwrap();
    w.close().unwrap();
    let seg = segments(t.path())[0].clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(bytes.len() - RECORD_HEADER_LEN); // the sync mark
    bytes[40 + RECORD_HEADER_LEN] ^= 0x01; // record 1's payload
    std::fs::write(&seg, &bytes).unwrap();
    match WalWriter::open(t.path(), opts(READER_MAX)) {
        Err(CoreError::WalCorruption { offset, reason, .. }) => {
            assert_eq!(offset, 40);
            assert!(matches!(reason, CorruptionReason::CrcMismatch { .. }));
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("damage to durable data was cut as a crash tail"),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    // Repair counts the big record among what a cut would drop.
    let r = repair(t.path(), READER_MAX, false).unwrap();
    assert_eq!((r.offset, r.crash_tail), (40, false));
    assert_eq!((r.records_after, r.events_after), (1, 1));
}

#[test]
fn a_torn_over_limit_record_is_a_crash_tail() {
    let t = tempfile::tempdir().unwrap();
    let (seg, offset, size) = write_log(t.path(), true);
    let full = std::fs::read(&seg).unwrap();
    // Cut inside the big record's payload (a crash while writing it): a crash tail for any
    // limit, as for a small record.
    let cut = offset + H + size / 2;
    std::fs::write(&seg, &full[..cut as usize]).unwrap();
    for max in [READER_MAX, WRITER_MAX] {
        assert_eq!(sequences(t.path(), max).unwrap(), vec![1]);
        let v = verify(t.path(), max).unwrap();
        let (_, o, reason) = v.torn_tail.unwrap();
        assert_eq!((o, reason.as_str()), (offset, "incomplete payload"));
    }
    // Its payload damaged in place (the bytes of a torn write into preallocated space), with
    // nothing after it certifying it: a crash tail, found without reading it into memory.
    let mut torn = full[..(offset + H + size) as usize].to_vec();
    torn[(offset + H + 10) as usize] ^= 0x40;
    std::fs::write(&seg, &torn).unwrap();
    let v = verify(t.path(), READER_MAX).unwrap();
    let (_, o, reason) = v.torn_tail.unwrap();
    assert_eq!(o, offset);
    assert!(reason.starts_with("crc mismatch"), "{reason}");
    let w = WalWriter::open(t.path(), opts(READER_MAX)).unwrap();
    assert!(w.recovery_report().truncated);
    assert_eq!(w.recovery_report().offset, offset);
    w.close().unwrap();
    assert_eq!(sequences(t.path(), READER_MAX).unwrap(), vec![1]);
}

#[test]
fn every_bit_flip_in_an_over_limit_record_is_detected() {
    let t = tempfile::tempdir().unwrap();
    let (seg, offset, size) = write_log(t.path(), true);
    let clean = std::fs::read(&seg).unwrap();
    let start = offset as usize;
    let end = (offset + H + size) as usize;
    // Every header bit, and every 13th payload bit (the payload's checksum is one CRC).
    let bits = (start * 8..(start + RECORD_HEADER_LEN) * 8)
        .chain(((start + RECORD_HEADER_LEN) * 8..end * 8).step_by(13));
    for bit in bits {
        let mut b = clean.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&seg, &b).unwrap();
        // The clean close's sync mark certifies the record: damage to it is corruption.
        match verify(t.path(), READER_MAX) {
            Err(CoreError::WalCorruption { offset: o, .. }) => assert_eq!(o, offset, "bit {bit}"),
            other => panic!("bit {bit}: expected corruption, got {other:?}"),
        }
    }
}

/// A one-segment log whose only record header (valid checksum) claims `claim` payload bytes
/// with a payload checksum of `payload_crc`, then `payload` bytes.
fn crafted(dir: &Path, claim: u32, first_seq: u64, payload: &[u8]) -> PathBuf {
    let mut bytes = SegmentHeader {
        version: FORMAT_VERSION,
        wal_id: 9,
        first_seq: 1,
    }
    .encode()
    .to_vec();
    let mut h = vec![0u8; RECORD_HEADER_LEN];
    RecordHeader {
        kind: RecordKind::Events,
        payload_len: claim,
        event_count: 1,
        first_seq,
        durable_through: 0,
        payload_crc: crc32c::crc32c(payload),
    }
    .encode_into(&mut h);
    bytes.extend(h);
    bytes.extend(payload);
    let path = dir.join(segment_name(1));
    std::fs::write(&path, &bytes).unwrap();
    path
}

#[test]
fn a_hostile_length_past_the_end_of_the_file_is_torn_or_corrupt_never_too_large() {
    let t = tempfile::tempdir().unwrap();
    // 1 GiB claimed by a 100-byte file: the last segment ends in a crash tail.
    crafted(t.path(), 1 << 30, 1, &[1u8; 100]);
    let v = verify(t.path(), READER_MAX).unwrap();
    let (_, o, reason) = v.torn_tail.unwrap();
    assert_eq!((o, reason.as_str()), (40, "incomplete payload"));
    assert_eq!(sequences(t.path(), READER_MAX).unwrap(), Vec::<u64>::new());

    // The same claim in a segment that another follows: corruption.
    let t = tempfile::tempdir().unwrap();
    let seg = crafted(t.path(), 1 << 30, 1, &[1u8; 100]);
    let mut next = SegmentHeader {
        version: FORMAT_VERSION,
        wal_id: 9,
        first_seq: 2,
    }
    .encode()
    .to_vec();
    next.truncate(40);
    std::fs::write(t.path().join(segment_name(2)), &next).unwrap();
    match verify(t.path(), READER_MAX) {
        Err(CoreError::WalCorruption {
            segment,
            offset,
            reason,
        }) => {
            assert_eq!((segment, offset), (seg, 40));
            assert_eq!(reason, CorruptionReason::IncompletePayload);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn an_intact_over_limit_record_out_of_sequence_is_corruption() {
    let t = tempfile::tempdir().unwrap();
    crafted(t.path(), 2000, 5, &[0u8; 2000]);
    match sequences(t.path(), READER_MAX) {
        Err(CoreError::WalCorruption { reason, .. }) => assert_eq!(
            reason,
            CorruptionReason::SequenceGap {
                expected: 1,
                found: 5
            }
        ),
        other => panic!("expected a sequence gap, got {other:?}"),
    }
    // In sequence it is merely too large (it would fail to decode with a large enough limit,
    // which then is corruption: a checksum-valid record that does not decode).
    crafted(t.path(), 2000, 1, &[0u8; 2000]);
    assert!(matches!(
        sequences(t.path(), READER_MAX),
        Err(CoreError::RecordOverReadLimit { size: 2000, .. })
    ));
    assert!(matches!(
        sequences(t.path(), 2000),
        Err(CoreError::WalCorruption {
            reason: CorruptionReason::Decode(_),
            ..
        })
    ));
}
