//! Reading a log while its writer appends (FORMAT §6): the reader sees a prefix of the records,
//! never an error the writer caused. Each test interleaves writer appends with a reader's steps
//! at the points that used to fail, so it is deterministic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use super::*;
use crate::event::Event;

/// About 1 KiB per record, so a few hundred records pass the reader's 256 KiB buffer.
fn ev(i: u64) -> Event {
    Event::Prune {
        before: i as i64,
        at: i as i64,
    }
}

fn batch(i: u64) -> Vec<Event> {
    (0..64).map(|k| ev(i * 1000 + k)).collect()
}

fn append(w: &WalWriter, i: u64, d: Durability) {
    w.append(&batch(i), d, None).unwrap();
}

fn events_of(records: std::ops::Range<u64>) -> Vec<Event> {
    records.flat_map(batch).collect()
}

fn read_rest(r: &mut WalReader, out: &mut Vec<Event>) {
    while let Some(e) = r.next_event().unwrap() {
        assert_eq!(e.sequence, out.len() as u64 + 1);
        out.push(e.event);
    }
}

fn open(dir: &Path, segment_size: u64, preallocate: u64) -> WalWriter {
    WalWriter::open(
        dir,
        WalOptions {
            segment_size,
            preallocate,
            ..WalOptions::default()
        },
    )
    .unwrap()
}

/// The reader buffers zeros the writer preallocated; the writer then fills them (and far
/// beyond the buffer) with records, each certifying the ones before it durable. The stale
/// zeros must not read as an end-of-records marker followed by "damage".
#[test]
fn records_written_over_buffered_zeros_are_read_not_called_corrupt() {
    let t = tempfile::tempdir().unwrap();
    let w = open(t.path(), 64 << 20, 4 << 20);
    for i in 0..3 {
        append(&w, i, Durability::Immediate);
    }
    let mut r = WalReader::open(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    let mut got = vec![r.next_event().unwrap().unwrap().event];
    // Past the reader's buffer, Immediate: later records certify earlier ones durable.
    for i in 3..600 {
        append(&w, i, Durability::Immediate);
    }
    read_rest(&mut r, &mut got);
    assert!(r.tail().unwrap().damage.is_none());
    assert_eq!(got, events_of(0..600));
    w.close().unwrap();
}

/// Rotation trims the preallocated zeros of the segment being read (the file shrinks below
/// the length the reader took) and starts a segment the reader never listed.
#[test]
fn a_segment_trimmed_by_rotation_under_the_reader_reads_to_its_end() {
    let t = tempfile::tempdir().unwrap();
    let w = open(t.path(), 1 << 20, 1 << 20);
    append(&w, 0, Durability::Deferred);
    let mut r = WalReader::open(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    let mut got = vec![r.next_event().unwrap().unwrap().event];
    let mut n = 1;
    while segments(t.path()) < 3 {
        append(&w, n, Durability::Deferred);
        n += 1;
    }
    read_rest(&mut r, &mut got);
    // All of the first segment: a prefix of the log, ending cleanly.
    assert!(r.tail().unwrap().damage.is_none());
    assert!(got.len() > 64 && got.len() < events_of(0..n).len());
    assert_eq!(got[..], events_of(0..n)[..got.len()]);
    // A reader opened now lists every segment and reads them all.
    let mut r = WalReader::open(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    let mut all = Vec::new();
    read_rest(&mut r, &mut all);
    assert_eq!(all, events_of(0..n));
    w.close().unwrap();
}

fn segments(dir: &Path) -> usize {
    dir::list(dir).unwrap().segments.len()
}
