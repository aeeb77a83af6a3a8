//! Immediate records held for the group's sync (writer.rs): nobody writes them but the sync
//! leader, in one `pwrite`, and nothing is ever written after them before they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;

use super::faultfs::{Fault, FaultFs, Op, OpKind};
use super::tests::{ev, read_all};
use super::*;
use crate::event::Event;
use crate::CoreError;

fn writer(dir: &Path, segment_size: u64) -> (WalWriter, FaultFs) {
    let fs = FaultFs::new(dir).unwrap();
    let o = WalOptions {
        segment_size,
        preallocate: 4096,
        ..WalOptions::default()
    };
    (
        WalWriter::open_with_fs(dir, o, Arc::new(fs.clone())).unwrap(),
        fs,
    )
}

fn hold(w: &WalWriter, i: i64) -> Appended {
    let mut rec = w.encode(&[ev(i)]).unwrap();
    w.append_encoded(&mut rec, None, Durability::Immediate)
        .unwrap()
}

/// The writes of records (not of preallocated zeros) made since op `from`.
fn record_writes(fs: &FaultFs, from: usize) -> Vec<(u64, usize)> {
    fs.ops()[from..]
        .iter()
        .filter_map(|op| match op {
            Op::Write { offset, data, .. } if data.iter().any(|&b| b != 0) => {
                Some((*offset, data.len()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn held_records_are_written_by_the_sync_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let (w, fs) = writer(dir.path(), 1 << 20);
    let from = fs.op_count();
    let appended: Vec<Appended> = (0..3).map(|i| hold(&w, i)).collect();
    assert!(
        record_writes(&fs, from).is_empty(),
        "an Immediate append leaves its bytes to the sync"
    );
    w.wait_durable(appended[2].last_seq).unwrap();
    let writes = record_writes(&fs, from);
    assert_eq!(writes.len(), 1, "one write for the group: {writes:?}");
    assert_eq!(w.synced_sequence(), appended[2].last_seq);
    w.close().unwrap();
    let got: Vec<u64> = read_all(dir.path())
        .unwrap()
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(got, vec![1, 2, 3]);
}

#[test]
fn a_deferred_append_writes_the_held_records_first() {
    let dir = tempfile::tempdir().unwrap();
    let (w, fs) = writer(dir.path(), 1 << 20);
    hold(&w, 0);
    hold(&w, 1);
    let from = fs.op_count();
    w.append(&[ev(2)], Durability::Deferred, None).unwrap();
    let writes = record_writes(&fs, from);
    assert_eq!(writes.len(), 2, "held bytes, then the record: {writes:?}");
    assert!(
        writes[0].0 + writes[0].1 as u64 == writes[1].0,
        "back to back"
    );
    // In the OS now, unsynced: a reader of the live log sees all three, in order, no hole.
    let live: Vec<(u64, Event)> = read_all(dir.path()).unwrap();
    assert_eq!(
        live,
        vec![(1, ev(0)), (2, ev(1)), (3, ev(2))],
        "file order is append order"
    );
    w.close().unwrap();
}

#[test]
fn a_rotation_writes_the_held_records_into_the_segment_they_were_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    // The smallest segments: holding records past a segment's end forces rotations.
    let (w, _fs) = writer(dir.path(), 4096);
    let last = (0..400).map(|i| hold(&w, i)).last().unwrap();
    w.wait_durable(last.last_seq).unwrap();
    w.close().unwrap();
    let got = read_all(dir.path()).unwrap();
    assert_eq!(
        got,
        (0..400).map(|i| (i as u64 + 1, ev(i))).collect::<Vec<_>>()
    );
    let segments = dir::list(dir.path()).unwrap().segments;
    assert!(segments.len() > 3, "{} segments", segments.len());
}

#[test]
fn a_failed_write_of_held_records_fails_the_writer_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (w, fs) = writer(dir.path(), 1 << 20);
    let a = hold(&w, 0);
    fs.inject(Fault {
        kind: OpKind::Write,
        nth: 1,
        errno: libc::EIO,
        partial: 10,
        sticky: false,
    });
    // The leader of the failed group gets the write's own error (typed); every later call,
    // the fail-stop error naming it.
    let err = w.wait_durable(a.last_seq).unwrap_err();
    match &err {
        CoreError::Io { op, source, .. } => {
            assert_eq!(*op, "write");
            assert_eq!(source.raw_os_error(), Some(libc::EIO));
        }
        e => panic!("expected the write's error, got {e:?}"),
    }
    assert_eq!(w.failure(), Some(err.to_string()));
    let later = w.append(&[ev(1)], Durability::Deferred, None).unwrap_err();
    assert!(matches!(later, CoreError::Failed { .. }), "{later:?}");
    assert!(matches!(
        w.wait_durable(a.last_seq).unwrap_err(),
        CoreError::Failed { .. }
    ));
    drop(w);
    // Reopening drops the torn tail: nothing was acknowledged.
    let w = WalWriter::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(w.next_sequence(), 1);
    assert!(w.recovery_report().truncated);
}

#[test]
fn close_writes_and_syncs_held_records() {
    let dir = tempfile::tempdir().unwrap();
    let (w, _fs) = writer(dir.path(), 1 << 20);
    hold(&w, 7);
    w.close().unwrap();
    assert_eq!(read_all(dir.path()).unwrap(), vec![(1, ev(7))]);
}
