//! Recovery when the newest segment is a torn creation: the segment before it stays sealed.
//!
//! Rotation syncs and trims a segment before it creates the next file, so once a later
//! segment file exists (even one whose creation was torn by a crash and is removed at open),
//! no crash can explain damage in the earlier one: it is corruption (FORMAT §8), never a crash
//! tail to cut.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::format::{RECORD_HEADER_LEN, RECORD_MAGIC, SEGMENT_HEADER_LEN};
use super::tests::segments;
use super::*;
use crate::event::Event;
use crate::CoreError;

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        preallocate: 0,
        ..WalOptions::default()
    }
}

/// Every file of the log but `LOCK` (which the writer rewrites with its pid).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with(super::lock::LOCK_FILE))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn read_all(dir: &Path) -> Vec<(u64, Event)> {
    WalReader::open(dir, crate::DEFAULT_MAX_RECORD_SIZE)
        .unwrap()
        .map(|r| r.map(|e| (e.sequence, e.event)).unwrap())
        .collect()
}

/// Start offsets of the records of a segment file.
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while pos + RECORD_HEADER_LEN <= bytes.len() && bytes[pos..pos + 4] == RECORD_MAGIC {
        out.push(pos);
        let len = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        pos += RECORD_HEADER_LEN + len;
    }
    out
}

/// A log of Deferred appends only (no record certifies an earlier one durable, so the
/// `durable_through` rule cannot tell damage from a crash tail) over at least three segments.
/// Returns the events of every segment but the last.
fn deferred_log(dir: &Path) -> Vec<(u64, Event)> {
    let w = WalWriter::open(dir, opts()).unwrap();
    for i in 0..200 {
        w.append(
            &[Event::Prune { before: i, at: i }],
            Durability::Deferred,
            None,
        )
        .unwrap();
    }
    w.close().unwrap();
    let segs = segments(dir);
    assert!(segs.len() >= 3, "{segs:?}");
    let last_first = dir::list(dir).unwrap().segments.last().unwrap().first_seq;
    read_all(dir)
        .into_iter()
        .filter(|(seq, _)| *seq < last_first)
        .collect()
}

/// What a crash while creating a segment can leave under its final name.
const TORN: [&[u8]; 4] = [b"", &[0u8; 10], b"AQWAL", b"AQWALSEG\x01\x00"];

type Damage = fn(&mut Vec<u8>);

/// Damage to the sealed segment, each of which a crash tail would excuse in the last one.
fn damages() -> Vec<(&'static str, Damage)> {
    vec![
        ("payload bit of the first record", |b| {
            let p = record_starts(b)[0];
            b[p + RECORD_HEADER_LEN] ^= 0x01;
        }),
        ("header bit of the last record", |b| {
            let p = *record_starts(b).last().unwrap();
            b[p + 20] ^= 0x80;
        }),
        ("last record cut short", |b| {
            let p = *record_starts(b).last().unwrap();
            b.truncate(p + RECORD_HEADER_LEN + 1);
        }),
        ("zeros over a middle record", |b| {
            let s = record_starts(b);
            let p = s[s.len() / 2];
            b[p..p + RECORD_HEADER_LEN].fill(0);
        }),
        ("garbage after the last record", |b| {
            b.extend_from_slice(b"junk")
        }),
        ("segment header cut short", |b| b.truncate(5)),
    ]
}

#[test]
fn damage_before_a_torn_newest_segment_is_a_hard_error_and_nothing_is_cut() {
    for torn in TORN {
        for (what, damage) in damages() {
            let t = tempfile::tempdir().unwrap();
            deferred_log(t.path());
            let segs = segments(t.path());
            let (prev, last) = (&segs[segs.len() - 2], &segs[segs.len() - 1]);
            std::fs::write(last, torn).unwrap();
            let mut bytes = std::fs::read(prev).unwrap();
            damage(&mut bytes);
            std::fs::write(prev, &bytes).unwrap();
            let before = files(t.path());
            match WalWriter::open(t.path(), opts()) {
                Err(CoreError::WalCorruption { segment, .. }) => {
                    assert_eq!(&segment, prev, "torn {torn:?}, {what}")
                }
                Err(e) => panic!("torn {torn:?}, {what}: {e}"),
                Ok(w) => panic!("torn {torn:?}, {what}: opened, {:?}", w.recovery_report()),
            }
            assert_eq!(
                files(t.path()),
                before,
                "torn {torn:?}, {what}: files changed"
            );
        }
    }
}

#[test]
fn a_torn_newest_segment_is_removed_and_reported_and_the_sealed_one_kept() {
    for torn in TORN {
        let t = tempfile::tempdir().unwrap();
        let kept = deferred_log(t.path());
        let segs = segments(t.path());
        let last = segs.last().unwrap().clone();
        std::fs::write(&last, torn).unwrap();
        let w = WalWriter::open(t.path(), opts()).unwrap();
        let rep = w.recovery_report().clone();
        assert!(rep.truncated, "torn {torn:?}");
        assert_eq!(rep.segment.as_ref(), Some(&last), "torn {torn:?}");
        assert_eq!(rep.removed_files, vec![last.clone()], "torn {torn:?}");
        assert_eq!(rep.bytes_dropped, torn.len() as u64, "torn {torn:?}");
        assert_eq!(rep.last_sequence, kept.len() as u64, "torn {torn:?}");
        // The log goes on from the sealed segment.
        let a = w
            .append(
                &[Event::Prune { before: -1, at: -1 }],
                Durability::Immediate,
                None,
            )
            .unwrap();
        assert_eq!(a.first_seq, kept.len() as u64 + 1);
        w.close().unwrap();
        assert!(!last.exists() || segments(t.path()).len() == segs.len());
        let got = read_all(t.path());
        assert_eq!(got[..kept.len()], kept[..], "torn {torn:?}");
        assert_eq!(got.len(), kept.len() + 1);
    }
}

/// A torn creation of the only segment is still removed (nothing was sealed).
#[test]
fn a_torn_only_segment_is_removed() {
    for torn in TORN {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join(dir::segment_name(1)), torn).unwrap();
        let w = WalWriter::open(t.path(), opts()).unwrap();
        assert!(w.recovery_report().truncated);
        assert_eq!(w.recovery_report().last_sequence, 0);
        w.close().unwrap();
        assert!(read_all(t.path()).is_empty());
    }
}
