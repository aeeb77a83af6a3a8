//! The writer's limits: the last representable sequence, the preallocation bound, and what a
//! failed segment creation leaves behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::Arc;

use super::dir::TMP_SUFFIX;
use super::faultfs::{Fault, FaultFs, OpKind};
use super::tests::{ev, read_all};
use super::writer::{MAX_PREALLOCATE, MAX_SEQUENCE};
use super::*;
use crate::event::Event;
use crate::CoreError;

fn start_at(start_sequence: u64) -> WalOptions {
    WalOptions {
        start_sequence,
        preallocate: 0,
        ..WalOptions::default()
    }
}

fn invalid(r: crate::Result<impl Sized>, names: &str) {
    match r {
        Err(CoreError::InvalidArgument(m)) => assert!(m.contains(names), "{m}"),
        Err(e) => panic!("expected InvalidArgument naming {names}, got {e}"),
        Ok(_) => panic!("expected InvalidArgument naming {names}, got Ok"),
    }
}

#[test]
fn an_append_past_the_last_sequence_is_refused_and_the_log_stays_readable() {
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), start_at(MAX_SEQUENCE - 1)).unwrap();
    // Three events would need MAX_SEQUENCE + 1: refused, nothing written, still usable.
    invalid(
        w.append(&[ev(1), ev(2), ev(3)], Durability::Immediate, None),
        "last sequence",
    );
    assert_eq!(w.next_sequence(), MAX_SEQUENCE - 1);
    assert!(w.failure().is_none());
    let a = w
        .append(&[ev(1), ev(2)], Durability::Immediate, None)
        .unwrap();
    assert_eq!((a.first_seq, a.last_seq), (MAX_SEQUENCE - 1, MAX_SEQUENCE));
    assert_eq!(w.next_sequence(), u64::MAX);
    invalid(
        w.append(&[ev(3)], Durability::Immediate, None),
        "last sequence",
    );
    assert_eq!(w.stats().appends, 1);
    w.close().unwrap();
    // The full log opens, reads and verifies; a new writer is refused the same way.
    assert_eq!(
        read_all(t.path()).unwrap(),
        vec![(MAX_SEQUENCE - 1, ev(1)), (MAX_SEQUENCE, ev(2))]
    );
    let v = verify(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    assert_eq!(v.last_sequence, MAX_SEQUENCE);
    let w = WalWriter::open(t.path(), WalOptions::default()).unwrap();
    assert_eq!(w.next_sequence(), u64::MAX);
    invalid(
        w.append(&[ev(4)], Durability::Deferred, None),
        "last sequence",
    );
    w.close().unwrap();
    assert_eq!(read_all(t.path()).unwrap().len(), 2);
}

#[test]
fn start_sequence_outside_the_representable_range_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for bad in [0, u64::MAX] {
        invalid(WalWriter::open(t.path(), start_at(bad)), "start_sequence");
    }
    let w = WalWriter::open(t.path(), start_at(MAX_SEQUENCE)).unwrap();
    assert_eq!(
        w.append(&[ev(1)], Durability::Immediate, None)
            .unwrap()
            .last_seq,
        MAX_SEQUENCE
    );
    w.close().unwrap();
}

#[test]
fn preallocate_is_bounded_and_never_past_the_segment_size() {
    let t = tempfile::tempdir().unwrap();
    let with = |segment_size, preallocate| WalOptions {
        segment_size,
        preallocate,
        ..WalOptions::default()
    };
    for pre in [MAX_PREALLOCATE + 1, 1 << 62, u64::MAX] {
        invalid(
            WalWriter::open(t.path(), with(u64::MAX, pre)),
            "preallocate",
        );
        // Refused before anything was created.
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
    }
    // More than a segment is pointless (rotation trims it): a segment's worth is used.
    let w = WalWriter::open(t.path(), with(8192, MAX_PREALLOCATE)).unwrap();
    assert_eq!(w.options().preallocate, 8192);
    let seg = std::fs::read_dir(t.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    assert_eq!(std::fs::metadata(seg).unwrap().len(), 40 + 8192);
    w.close().unwrap();
}

fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(TMP_SUFFIX))
        .collect()
}

#[test]
fn a_segment_creation_that_fails_removes_its_temporary_file() {
    let base = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 4096,
        preallocate: 4096,
        ..WalOptions::default()
    };
    // At open: the disk fills while preallocating the first segment.
    let live = base.path().join("open");
    std::fs::create_dir(&live).unwrap();
    let fs = FaultFs::new(&live).unwrap();
    fs.inject(Fault {
        kind: OpKind::Write,
        nth: 2,
        errno: libc::ENOSPC,
        partial: 100,
        sticky: true,
    });
    let err = WalWriter::open_with_fs(&live, opts.clone(), Arc::new(fs.clone()))
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            CoreError::Io {
                op: "preallocate",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(temp_files(&live), Vec::<String>::new());

    // At rotation: the writer fails (its segment is sealed), the temporary file is gone, and
    // reopening finds every appended event.
    let live = base.path().join("rotate");
    std::fs::create_dir(&live).unwrap();
    let fs = FaultFs::new(&live).unwrap();
    let w = WalWriter::open_with_fs(&live, opts, Arc::new(fs.clone())).unwrap();
    let mut appended = 0;
    let before = std::fs::read_dir(&live).unwrap().count();
    fs.inject(Fault {
        kind: OpKind::Sync,
        nth: 2,
        errno: libc::EIO,
        partial: 0,
        sticky: false,
    });
    let err = loop {
        match w.append(&[ev(appended)], Durability::Deferred, None) {
            Ok(_) => appended += 1,
            Err(e) => break e,
        }
        assert!(appended < 10_000, "no rotation happened");
    };
    assert!(matches!(err, CoreError::Io { .. }), "{err}");
    assert_eq!(temp_files(&live), Vec::<String>::new());
    assert_eq!(std::fs::read_dir(&live).unwrap().count(), before);
    drop(w);
    assert_eq!(
        read_all(&live).unwrap().len(),
        usize::try_from(appended).unwrap()
    );
}

#[test]
fn append_many_validates_every_batch_before_writing_any() {
    let t = tempfile::tempdir().unwrap();
    let o = WalOptions {
        max_record_size: 1000,
        preallocate: 0,
        ..WalOptions::default()
    };
    let w = WalWriter::open(t.path(), o).unwrap();
    w.append(&[ev(0)], Durability::Immediate, None).unwrap();
    let big = Event::TaskCancel {
        task_id: [1; 16],
        reason: Some("x".repeat(5000)),
        at: 2,
    };
    let oversized = vec![vec![ev(1)], vec![big]];
    let err = w
        .append_many(&oversized, Durability::Immediate)
        .unwrap_err();
    assert!(matches!(err, CoreError::RecordTooLarge { .. }), "{err}");
    let empty = vec![vec![ev(1)], vec![], vec![ev(2)]];
    invalid(
        w.append_many(&empty, Durability::Immediate),
        "at least one event",
    );
    assert_eq!((w.next_sequence(), w.synced_sequence()), (2, 1));
    assert_eq!(w.stats().appends, 1);
    // Still usable; the batches get consecutive sequences, each its own record.
    let a = w
        .append_many(&[vec![ev(1), ev(2)], vec![ev(3)]], Durability::Immediate)
        .unwrap()
        .unwrap();
    assert_eq!((a.first_seq, a.last_seq), (2, 4));
    assert_eq!(w.synced_sequence(), 4);
    assert_eq!(w.stats().appends, 3);
    assert!(w.append_many(&[], Durability::Immediate).unwrap().is_none());
    w.close().unwrap();
    let seqs: Vec<u64> = read_all(t.path()).unwrap().iter().map(|e| e.0).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

#[test]
fn append_many_past_the_last_sequence_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), start_at(MAX_SEQUENCE - 2)).unwrap();
    // Each batch fits alone; together they do not.
    let batches = vec![vec![ev(1), ev(2)], vec![ev(3), ev(4)]];
    invalid(
        w.append_many(&batches, Durability::Immediate),
        "last sequence",
    );
    assert_eq!(w.next_sequence(), MAX_SEQUENCE - 2);
    let a = w
        .append_many(&batches[..1], Durability::Immediate)
        .unwrap()
        .unwrap();
    assert_eq!(a.last_seq, MAX_SEQUENCE - 1);
    w.close().unwrap();
}
