#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::fs::{StdFs, WalFile, WalFs};
use super::*;
use crate::codec::tests::{arb_event, every_event};
use crate::event::Event;
use crate::CoreError;

fn opts(segment_size: u64, preallocate: u64) -> WalOptions {
    WalOptions {
        segment_size,
        preallocate,
        ..WalOptions::default()
    }
}

/// A directory on tmpfs when there is one: for tests that reopen a log thousands of times and
/// check logic, not durability (fsync is free there).
fn fast_tempdir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

pub(super) fn ev(i: i64) -> Event {
    Event::Prune { before: i, at: i }
}

pub(super) fn read_all(dir: &Path) -> crate::Result<Vec<(u64, Event)>> {
    WalReader::open(dir, crate::DEFAULT_MAX_RECORD_SIZE)?
        .map(|r| r.map(|e| (e.sequence, e.event)))
        .collect()
}

/// Writes `n` single-event records (Immediate), with batches of 3 every 5th record.
fn write_log(dir: &Path, o: WalOptions, n: i64) -> Vec<(u64, Event)> {
    let w = WalWriter::open(dir, o).unwrap();
    let mut all = Vec::new();
    for i in 0..n {
        let batch: Vec<Event> = if i % 5 == 4 {
            vec![ev(i * 10), ev(i * 10 + 1), ev(i * 10 + 2)]
        } else {
            vec![ev(i * 10)]
        };
        let a = w.append(&batch, Durability::Immediate, None).unwrap();
        for (k, e) in batch.into_iter().enumerate() {
            all.push((a.first_seq + k as u64, e));
        }
    }
    w.close().unwrap();
    all
}

pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    dir::list(dir)
        .unwrap()
        .segments
        .into_iter()
        .map(|s| s.path)
        .collect()
}

#[test]
fn round_trip_every_event_across_segments_and_reopen() {
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), opts(4096, 1024)).unwrap();
    let mut expected = Vec::new();
    for round in 0..60 {
        let events = every_event();
        let a = w
            .append(&events, Durability::Deferred, Some(w.next_sequence()))
            .unwrap();
        assert_eq!(a.last_seq - a.first_seq + 1, events.len() as u64);
        for (k, e) in events.into_iter().enumerate() {
            expected.push((a.first_seq + k as u64, e));
        }
        if round % 7 == 0 {
            w.flush().unwrap();
        }
    }
    w.close().unwrap();
    assert!(segments(t.path()).len() > 3, "rotation happened");
    assert_eq!(read_all(t.path()).unwrap(), expected);
    // Reopen: sequences continue; nothing to recover.
    let w = WalWriter::open(t.path(), opts(4096, 1024)).unwrap();
    assert!(!w.recovery_report().truncated);
    assert_eq!(w.next_sequence(), expected.len() as u64 + 1);
    w.append(&[ev(1)], Durability::Immediate, None).unwrap();
    drop(w);
    assert_eq!(read_all(t.path()).unwrap().len(), expected.len() + 1);
    let v = verify(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    assert_eq!(v.events, expected.len() as u64 + 1);
    assert_eq!(v.first_sequence, 1);
    assert!(v.torn_tail.is_none());
}

#[test]
fn sequences_are_checked_and_batches_are_consecutive() {
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), WalOptions::default()).unwrap();
    let a = w
        .append(&[ev(1), ev(2)], Durability::Deferred, Some(1))
        .unwrap();
    assert_eq!((a.first_seq, a.last_seq), (1, 2));
    let err = w
        .append(&[ev(3)], Durability::Deferred, Some(2))
        .unwrap_err();
    assert!(
        matches!(
            err,
            CoreError::Sequence {
                expected: 3,
                got: 2
            }
        ),
        "{err}"
    );
    assert!(matches!(
        w.append(&[], Durability::Deferred, None),
        Err(CoreError::InvalidArgument(_))
    ));
    assert_eq!(w.next_sequence(), 3);
}

#[test]
fn start_sequence_applies_to_an_empty_log_and_seek_uses_segment_names() {
    let t = tempfile::tempdir().unwrap();
    let o = WalOptions {
        start_sequence: 1000,
        ..opts(4096, 0)
    };
    let w = WalWriter::open(t.path(), o).unwrap();
    for i in 0..400 {
        w.append(&[ev(i)], Durability::Deferred, None).unwrap();
    }
    w.close().unwrap();
    assert!(segments(t.path()).len() > 3);
    let mut r = WalReader::open_at(t.path(), crate::DEFAULT_MAX_RECORD_SIZE, 1350).unwrap();
    let first = r.next_event().unwrap().unwrap();
    assert_eq!(first.sequence, 1350);
    assert_eq!(first.event, ev(350));
    assert_eq!(r.by_ref().count(), 49);
    // Only the segment holding 1350 and later ones were read.
    assert!(r.records_read() < 200);
}

#[test]
fn second_writer_is_refused_until_the_first_closes() {
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), WalOptions::default()).unwrap();
    let err = WalWriter::open(t.path(), WalOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::DataDirLocked { .. }), "{err}");
    assert!(err.to_string().contains(&t.path().display().to_string()));
    w.close().unwrap();
    WalWriter::open(t.path(), WalOptions::default()).unwrap();
}

#[test]
fn oversized_record_is_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let o = WalOptions {
        max_record_size: 100,
        ..WalOptions::default()
    };
    let w = WalWriter::open(t.path(), o).unwrap();
    let big = Event::TaskCancel {
        task_id: [1; 16],
        reason: Some("x".repeat(200)),
        at: 0,
    };
    let err = w.append(&[big], Durability::Immediate, None).unwrap_err();
    assert!(
        matches!(err, CoreError::RecordTooLarge { max: 100, .. }),
        "{err}"
    );
    assert_eq!(w.next_sequence(), 1);
    assert_eq!(w.stats().appends, 0);
    w.append(&[ev(1)], Durability::Immediate, None).unwrap();
    drop(w);
    assert_eq!(read_all(t.path()).unwrap(), vec![(1, ev(1))]);
}

#[test]
fn garbage_file_is_reported_by_name() {
    let t = tempfile::tempdir().unwrap();
    write_log(t.path(), WalOptions::default(), 3);
    std::fs::write(t.path().join("notes.txt"), b"hi").unwrap();
    let err = WalWriter::open(t.path(), WalOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, CoreError::UnexpectedFile { .. }), "{err}");
    assert!(err.to_string().contains("notes.txt"));
    assert!(read_all(t.path()).is_err());
}

#[test]
fn foreign_segment_is_a_hard_error() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_log(a.path(), opts(4096, 0), 300);
    write_log(b.path(), opts(4096, 0), 300);
    let segs = segments(a.path());
    let last = segs.last().unwrap();
    std::fs::copy(segments(b.path()).last().unwrap(), last).unwrap();
    let err = WalWriter::open(a.path(), opts(4096, 0)).err().unwrap();
    assert!(
        err.to_string().contains("another WAL") || err.to_string().contains("sequence"),
        "{err}"
    );
}

#[test]
fn group_commit_shares_fsyncs() {
    let t = tempfile::tempdir().unwrap();
    let w = Arc::new(WalWriter::open(t.path(), WalOptions::default()).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|k| {
            let w = Arc::clone(&w);
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        w.append(&[ev(k * 1000 + i)], Durability::Immediate, None)
                            .unwrap()
                            .first_seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=800).collect::<Vec<_>>());
    let st = w.stats();
    assert_eq!(st.appends, 800);
    assert!(st.syncs < 700, "syncs {} for 800 appends", st.syncs);
    assert_eq!(w.synced_sequence(), 800);
    w.close().unwrap();
    assert_eq!(read_all(t.path()).unwrap().len(), 800);
}

#[test]
fn background_sync_bounds_the_loss_window() {
    let t = tempfile::tempdir().unwrap();
    let o = WalOptions {
        sync_interval: Some(std::time::Duration::from_millis(5)),
        ..WalOptions::default()
    };
    let w = WalWriter::open(t.path(), o).unwrap();
    w.append(&[ev(1)], Durability::Deferred, None).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while w.synced_sequence() < 1 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    w.close().unwrap();
}

/// Truncating the last segment at every byte offset recovers exactly the records that fit.
#[test]
fn truncation_at_every_offset_of_the_last_segment_recovers_a_prefix() {
    for prealloc in [0u64, 512] {
        let t = fast_tempdir();
        let all = write_log(t.path(), opts(4096, prealloc), 250);
        let segs = segments(t.path());
        assert!(segs.len() >= 3);
        let last = segs.last().unwrap().clone();
        let original = std::fs::read(&last).unwrap();
        // Events per prefix length: records end at known offsets.
        for cut in 0..=original.len() {
            std::fs::write(&last, &original[..cut]).unwrap();
            let w = WalWriter::open(t.path(), opts(4096, prealloc)).unwrap();
            let rep = w.recovery_report().clone();
            drop(w);
            let got = read_all(t.path()).unwrap();
            assert!(got.len() <= all.len());
            assert_eq!(got[..], all[..got.len()], "cut {cut}");
            assert_eq!(rep.last_sequence, got.len() as u64, "cut {cut}");
            // Restore for the next cut (the open may have rewritten the file).
            for p in segments(t.path()) {
                if p > last {
                    std::fs::remove_file(p).unwrap();
                }
            }
            std::fs::write(&last, &original).unwrap();
        }
    }
}

/// Every single-bit flip is detected: a hard error, or a reported cut; never wrong data.
#[test]
fn every_bit_flip_is_detected() {
    let t = fast_tempdir();
    let all = write_log(t.path(), opts(4096, 0), 6);
    let seg = segments(t.path())[0].clone();
    let original = std::fs::read(&seg).unwrap();
    let mut hard = 0;
    let mut cut = 0;
    for bit in 0..original.len() * 8 {
        let mut bytes = original.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&seg, &bytes).unwrap();
        match WalWriter::open(t.path(), opts(4096, 0)) {
            Err(CoreError::WalCorruption { .. }) => hard += 1,
            Err(e) => panic!("bit {bit}: {e}"),
            Ok(w) => {
                let rep = w.recovery_report().clone();
                drop(w);
                assert!(rep.truncated, "bit {bit}: undetected");
                let got = read_all(t.path()).unwrap();
                assert_eq!(
                    got, all,
                    "bit {bit}: a flip in the sync mark loses no event"
                );
                cut += 1;
            }
        }
        std::fs::write(&seg, &original).unwrap();
    }
    // Only flips in the final sync mark (40 bytes) are a crash-like tail.
    assert_eq!(cut, 40 * 8);
    assert!(hard > 0);
}

#[test]
fn torn_tail_is_cut_and_reported_and_middle_damage_is_hard() {
    let t = tempfile::tempdir().unwrap();
    // No close: the writer crashes (mem::forget keeps the lock file descriptor open, so
    // simulate by dropping without close via a child-like path: write then copy the dir).
    let w = WalWriter::open(t.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..10 {
        w.append(&[ev(i)], Durability::Immediate, None).unwrap();
    }
    let seg = segments(t.path())[0].clone();
    let snap = std::fs::read(&seg).unwrap();
    drop(w);
    std::fs::write(&seg, &snap).unwrap(); // the state at the "crash": no sync mark
                                          // Garbage after the last record, in the preallocated zeros: a torn write.
    let mut bytes = snap.clone();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
    bytes[end + 10] = 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let w = WalWriter::open(t.path(), opts(1 << 20, 4096)).unwrap();
    let rep = w.recovery_report().clone();
    assert!(rep.truncated);
    assert_eq!(rep.last_sequence, 10);
    assert_eq!(rep.offset as usize, end);
    drop(w);
    // Damage to record 3 when record 4 certifies it durable: hard error, named.
    std::fs::write(&seg, &snap).unwrap();
    let mut bytes = snap.clone();
    let rec_len = (end - 40) / 10;
    bytes[40 + 2 * rec_len + 41] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    let err = WalWriter::open(t.path(), opts(1 << 20, 4096))
        .err()
        .unwrap();
    match err {
        CoreError::WalCorruption {
            offset, segment, ..
        } => {
            assert_eq!(offset as usize, 40 + 2 * rec_len);
            assert_eq!(segment, seg);
        }
        other => panic!("{other}"),
    }
    // repair reports what a cut drops, and cuts only when asked.
    let r = repair(t.path(), crate::DEFAULT_MAX_RECORD_SIZE, false).unwrap();
    assert_eq!(r.records_after, 7);
    assert_eq!(r.last_good_sequence, 2);
    assert!(!r.truncated);
    assert!(WalWriter::open(t.path(), WalOptions::default()).is_err());
    let r = repair(t.path(), crate::DEFAULT_MAX_RECORD_SIZE, true).unwrap();
    assert!(r.truncated);
    assert_eq!(read_all(t.path()).unwrap().len(), 2);
    let w = WalWriter::open(t.path(), WalOptions::default()).unwrap();
    assert_eq!(w.next_sequence(), 3);
}

#[test]
fn unsynced_hole_followed_by_intact_unsynced_records_is_a_crash_tail() {
    // Power loss kept record 9 but not record 8 (neither was synced): a prefix survives.
    let t = tempfile::tempdir().unwrap();
    let w = WalWriter::open(t.path(), opts(1 << 20, 4096)).unwrap();
    for i in 0..6 {
        w.append(&[ev(i)], Durability::Immediate, None).unwrap();
    }
    for i in 6..10 {
        w.append(&[ev(i)], Durability::Deferred, None).unwrap();
    }
    let seg = segments(t.path())[0].clone();
    let snap = std::fs::read(&seg).unwrap();
    drop(w);
    let end = snap.iter().rposition(|&b| b != 0).unwrap() + 1;
    let rec_len = (end - 40) / 10;
    let mut bytes = snap.clone();
    let hole = 40 + 7 * rec_len;
    bytes[hole..hole + rec_len].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let w = WalWriter::open(t.path(), opts(1 << 20, 4096)).unwrap();
    let rep = w.recovery_report().clone();
    drop(w);
    assert!(rep.truncated);
    assert_eq!(rep.last_sequence, 7);
    assert_eq!(rep.records_dropped, 2);
    assert_eq!(read_all(t.path()).unwrap().len(), 7);
}

/// A file layer whose fsync fails on demand.
#[derive(Debug)]
pub(crate) struct FlakyFs {
    pub(crate) fail_sync: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FlakyFile {
    inner: Arc<dyn WalFile>,
    fail_sync: Arc<AtomicBool>,
}

impl WalFile for FlakyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        if self.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
}

impl WalFs for FlakyFs {
    fn open_rw(&self, path: &Path) -> std::io::Result<Arc<dyn WalFile>> {
        Ok(Arc::new(FlakyFile {
            inner: StdFs.open_rw(path)?,
            fail_sync: Arc::clone(&self.fail_sync),
        }))
    }
    fn create_new(&self, path: &Path) -> std::io::Result<Arc<dyn WalFile>> {
        Ok(Arc::new(FlakyFile {
            inner: StdFs.create_new(path)?,
            fail_sync: Arc::clone(&self.fail_sync),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

#[test]
fn failed_fsync_fails_the_writer_for_good() {
    let t = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let fs = Arc::new(FlakyFs {
        fail_sync: Arc::clone(&fail),
    });
    let w = WalWriter::open_with_fs(t.path(), WalOptions::default(), fs).unwrap();
    w.append(&[ev(1)], Durability::Immediate, None).unwrap();
    fail.store(true, Ordering::SeqCst);
    let err = w.append(&[ev(2)], Durability::Immediate, None).unwrap_err();
    assert!(err.to_string().contains("fdatasync"), "{err}");
    fail.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        match w.append(&[ev(3)], Durability::Deferred, None).unwrap_err() {
            CoreError::Failed { cause } => assert!(cause.contains("fdatasync"), "{cause}"),
            other => panic!("{other}"),
        }
    }
    assert!(matches!(w.flush(), Err(CoreError::Failed { .. })));
    w.close().unwrap();
    // Reopen recovers: event 2 may or may not be there, event 1 is.
    let got = read_all(t.path()).unwrap();
    assert_eq!(got[0], (1, ev(1)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_event_streams_round_trip(
        batches in proptest::collection::vec(proptest::collection::vec(arb_event(), 1..6), 1..30),
        seg in 4096u64..20_000,
    ) {
        let t = fast_tempdir();
        let w = WalWriter::open(t.path(), opts(seg, 1024)).unwrap();
        let mut expected = Vec::new();
        for b in &batches {
            let a = w.append(b, Durability::Deferred, None).unwrap();
            for (k, e) in b.iter().enumerate() {
                expected.push((a.first_seq + k as u64, e.clone()));
            }
        }
        w.close().unwrap();
        prop_assert_eq!(read_all(t.path()).unwrap(), expected);
    }

    #[test]
    fn random_bytes_as_a_segment_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000), magic in any::<bool>()) {
        let t = fast_tempdir();
        let mut data = bytes;
        if magic && data.len() > 8 {
            data[..8].copy_from_slice(b"AQWALSEG");
        }
        std::fs::write(t.path().join(dir::segment_name(1)), &data).unwrap();
        let _ = read_all(t.path());
        let _ = verify(t.path(), 1 << 20);
        let _ = WalWriter::open(t.path(), WalOptions::default());
    }
}
