//! Authority and recovery tests: sequence rules, validation before append, failure
//! semantics, snapshots + checkpoint, recovery fallbacks, concurrency.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::RunState;
use crate::recovery::{bootstrap, BootstrapOptions, SNAPSHOT_DIR, WAL_DIR};
use crate::state::tests::gen::Driver;
use crate::state::tests::{cancel, id, rc, spec, tc, tr};
use crate::wal::tests::FlakyFs;
use crate::wal::{WalOptions, WalWriter};

fn small_opts(snapshot_every: u64) -> BootstrapOptions {
    BootstrapOptions {
        wal: WalOptions {
            segment_size: 4096,
            preallocate: 0,
            ..WalOptions::default()
        },
        authority: AuthorityOptions {
            snapshot_every,
            keep_snapshots: 2,
            snapshot_on_close: false,
            ..AuthorityOptions::default()
        },
        digest: true,
        ..BootstrapOptions::default()
    }
}

fn open(dir: &Path, o: BootstrapOptions) -> (Authority, crate::recovery::RecoveryReport) {
    bootstrap(dir, o).unwrap()
}

fn wal_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join(WAL_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn create_once(a: &Authority, n: u64, at: i64) -> Appended {
    a.submit(
        None,
        &[tc(spec(id(n)), at), rc(id(n + 1_000_000), id(n), 0, at)],
        Durability::Deferred,
    )
    .unwrap()
}

fn digest(a: &Authority) -> crate::state::Digest {
    a.read(|p| p.state_digest()).unwrap()
}

#[test]
fn expected_sequence_mismatch_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    let first = a
        .submit(Some(1), &[tc(spec(id(1)), 10)], Durability::Immediate)
        .unwrap();
    assert_eq!((first.first_seq, first.last_seq), (1, 1));
    let before = wal_bytes(t.path());
    match a.submit(Some(5), &[tc(spec(id(2)), 10)], Durability::Immediate) {
        Err(CoreError::Sequence {
            expected: 2,
            got: 5,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(before, wal_bytes(t.path()));
    let ok = a
        .submit(Some(2), &[tc(spec(id(2)), 10)], Durability::Immediate)
        .unwrap();
    assert_eq!(ok.first_seq, 2);
}

#[test]
fn rejected_command_leaves_log_and_state_untouched() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    create_once(&a, 1, 10);
    a.flush().unwrap();
    let (bytes, d) = (wal_bytes(t.path()), digest(&a));
    // A batch whose second event is refused (run of an unknown task): all or nothing.
    let bad = [tc(spec(id(2)), 11), rc(id(9), id(77), 0, 11)];
    assert!(a.submit(None, &bad, Durability::Immediate).is_err());
    // An illegal transition.
    let e = a
        .submit(
            None,
            &[tr(
                id(1_000_001),
                RunState::Scheduled,
                RunState::Running,
                12,
            )],
            Durability::Immediate,
        )
        .unwrap_err();
    assert_eq!(e.python_class(), "InvalidTransitionError");
    assert_eq!(bytes, wal_bytes(t.path()));
    assert_eq!(d, digest(&a));
    assert_eq!(a.stats().rejected, 2);
    assert!(a.failure().is_none());
}

#[test]
fn apply_equals_replay_across_reopen() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    for n in 0..50 {
        create_once(&a, n, 10 + n as i64);
    }
    a.submit(None, &[cancel(id(3), 99)], Durability::Deferred)
        .unwrap();
    let live = digest(&a);
    a.close().unwrap();
    let (b, report) = open(t.path(), small_opts(0));
    assert_eq!(report.digest, Some(live));
    assert_eq!(report.records_replayed, 51);
    assert_eq!(report.events_replayed, 101);
    assert!(report.snapshot.is_none());
    assert_eq!(digest(&b), live);
}

#[test]
fn closed_authority_refuses_everything() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    create_once(&a, 1, 10);
    a.close().unwrap();
    a.close().unwrap();
    assert!(matches!(
        a.submit(None, &[tc(spec(id(5)), 1)], Durability::Deferred),
        Err(CoreError::Closed(_))
    ));
    assert!(matches!(
        a.read(|p| p.latest_sequence()),
        Err(CoreError::Closed(_))
    ));
    // The lock is released: the directory opens again.
    let (b, _) = open(t.path(), small_opts(0));
    assert_eq!(b.read(|p| p.latest_sequence()).unwrap(), 2);
}

/// Close drops the in-memory state at once: calls are refused from then on, yet a closed
/// authority still referenced (a closed queue an application keeps) held every task and run,
/// and the snapshot it had loaded (used in place, mapped from 1 MiB) even after a checkpoint
/// deleted its file.
#[test]
fn close_drops_the_state_and_the_loaded_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    for n in 0..2_000u64 {
        a.submit(
            None,
            &[
                tc(spec(id(n)), 10),
                rc(id(n + 1_000_000), id(n), 0, 10),
                tr(
                    id(n + 1_000_000),
                    RunState::Scheduled,
                    RunState::Canceled,
                    11,
                ),
            ],
            Durability::Deferred,
        )
        .unwrap();
    }
    create_once(&a, 5_000, 12);
    a.snapshot().unwrap();
    a.close().unwrap();
    let (a, report) = open(t.path(), small_opts(0));
    let loaded = report.snapshot.clone().unwrap().0;
    let held = |a: &Authority| {
        let g = lock(&a.inner);
        (g.p.task_count(), g.p.run_count())
    };
    assert_eq!(held(&a), (2_001, 2_001));
    // Two more snapshots: the checkpoint deletes the one the state was loaded from.
    create_once(&a, 6_000, 13);
    a.snapshot().unwrap();
    create_once(&a, 7_000, 14);
    a.snapshot().unwrap();
    assert!(!loaded.exists());
    a.close().unwrap();
    assert_eq!(held(&a), (0, 0));
    assert!(matches!(
        a.read(|p| p.latest_sequence()),
        Err(CoreError::Closed(_))
    ));
    a.close().unwrap();
    let (b, _) = open(t.path(), small_opts(0));
    assert_eq!(b.read(|p| p.task_count()).unwrap(), 2_003);
}

#[test]
fn failed_fsync_is_sticky_and_refuses_reads() {
    let t = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let fs = Arc::new(FlakyFs {
        fail_sync: Arc::clone(&fail),
    });
    let wal = Arc::new(WalWriter::open_with_fs(t.path(), WalOptions::default(), fs).unwrap());
    let a = Authority::new(wal, Projection::new(), None, AuthorityOptions::default()).unwrap();
    a.submit(None, &[tc(spec(id(1)), 1)], Durability::Immediate)
        .unwrap();
    fail.store(true, Ordering::SeqCst);
    let e = a
        .submit(None, &[tc(spec(id(2)), 2)], Durability::Immediate)
        .unwrap_err();
    assert!(e.to_string().contains("fdatasync"), "{e}");
    fail.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        match a.submit(None, &[tc(spec(id(3)), 3)], Durability::Deferred) {
            Err(CoreError::Failed { cause }) => assert!(cause.contains("fdatasync"), "{cause}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.read(|_| ()), Err(CoreError::Failed { .. })));
    }
    assert!(a.failure().unwrap().contains("fdatasync"));
    a.close().unwrap();
}

#[test]
fn snapshots_are_spaced_by_the_live_records_they_encode() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(10));
    // 100 live tasks (200 records): captures at 10, 20, 40, 80, 160 events.
    for n in 0..100 {
        create_once(&a, n, n as i64);
    }
    let seqs: Vec<u64> = crate::snapshot::list(&t.path().join(SNAPSHOT_DIR))
        .unwrap()
        .iter()
        .map(|s| s.sequence)
        .collect();
    assert_eq!(a.stats().snapshots, 5);
    assert_eq!(seqs, vec![160, 80], "newest first, two kept");
    a.close().unwrap();
}

#[test]
fn seed_style_construction_checks_the_log_matches() {
    let t = tempfile::tempdir().unwrap();
    {
        let wal = Arc::new(WalWriter::open(t.path(), WalOptions::default()).unwrap());
        let a = Authority::new(wal, Projection::new(), None, AuthorityOptions::default()).unwrap();
        create_once(&a, 1, 1);
        a.close().unwrap();
    }
    let wal = Arc::new(WalWriter::open(t.path(), WalOptions::default()).unwrap());
    let e = Authority::new(wal, Projection::new(), None, AuthorityOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("bootstrap"), "{e}");
}

#[test]
fn snapshot_checkpoint_and_reopen() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(40));
    for n in 0..200 {
        create_once(&a, n, n as i64);
    }
    let st = a.stats();
    // Every 40 events, or after as many events as the last capture encoded live records
    // (all 400 created records stay live here): at 40, 80, 160 and 320.
    assert_eq!(st.snapshots, 4, "{st:?}");
    assert_eq!(st.last_snapshot.as_ref().map(|s| s.sequence), Some(320));
    let snaps = crate::snapshot::list(&t.path().join(SNAPSHOT_DIR)).unwrap();
    assert_eq!(snaps.len(), 2, "keep_snapshots = 2");
    // Segments wholly before the older kept snapshot are gone; the log starts at or before it.
    let listing = crate::wal::dir::list(&t.path().join(WAL_DIR)).unwrap();
    assert!(listing.segments[0].first_seq > 1);
    assert!(listing.segments[0].first_seq <= snaps[1].sequence + 1);
    let live = digest(&a);
    a.close().unwrap();
    let (b, r) = open(t.path(), small_opts(40));
    assert_eq!(r.snapshot.as_ref().unwrap().1, 320);
    assert_eq!(r.events_replayed, 80);
    assert_eq!(digest(&b), live);
    drop(b);

    // The newest snapshot is corrupt: fall back to the older one and replay more.
    let newest = &snaps[0].path;
    let mut bytes = std::fs::read(newest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(newest, bytes).unwrap();
    let (c, r) = open(t.path(), small_opts(0));
    assert_eq!(r.snapshot.as_ref().unwrap().1, snaps[1].sequence);
    assert_eq!(r.snapshots_skipped.len(), 1);
    assert_eq!(r.events_replayed, 400 - snaps[1].sequence);
    assert_eq!(digest(&c), live);
    drop(c);

    // Both unusable: the log no longer reaches back to sequence 1 -> a clear error.
    std::fs::remove_file(&snaps[1].path).unwrap();
    let e = bootstrap(t.path(), small_opts(0)).err().unwrap();
    assert_eq!(e.python_class(), "RecoveryError");
    assert!(e.to_string().contains("are missing"), "{e}");
}

#[test]
fn snapshot_newer_than_the_log_is_skipped() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    for n in 0..5 {
        create_once(&a, n, 1);
    }
    let live = digest(&a);
    let info = a.snapshot().unwrap().unwrap();
    assert_eq!(info.sequence, 10);
    a.close().unwrap();
    // A snapshot claiming a sequence past the log (e.g. the log was cut by `repair`).
    let fake = t
        .path()
        .join(SNAPSHOT_DIR)
        .join(crate::snapshot::files::file_name(99));
    std::fs::copy(&info.path, fake).unwrap();
    let (b, r) = open(t.path(), small_opts(0));
    assert_eq!(r.snapshot.as_ref().unwrap().1, 10);
    assert!(r.snapshots_skipped[0].1.contains("newer than the log"));
    assert_eq!(digest(&b), live);
}

#[test]
fn a_checkpoint_ignores_and_sets_aside_a_snapshot_newer_than_the_log() {
    // A snapshot put into the directory of a running authority from elsewhere, with a
    // sequence past the log: counted among the kept ones, it made the checkpoint delete the
    // snapshot just written and every sealed segment up to its sequence.
    let t = tempfile::tempdir().unwrap();
    let mut o = small_opts(0);
    o.authority.keep_snapshots = 1;
    let (a, _) = open(t.path(), o.clone());
    for n in 0..5 {
        create_once(&a, n, 1);
    }
    let first = a.snapshot().unwrap().unwrap();
    let snap_dir = t.path().join(SNAPSHOT_DIR);
    let stray = snap_dir.join(crate::snapshot::files::file_name(1_000));
    std::fs::copy(&first.path, &stray).unwrap();
    for n in 5..60 {
        create_once(&a, n, 1);
    }
    let live = digest(&a);
    let info = a.snapshot().unwrap().unwrap();
    assert_eq!(info.sequence, 120);
    assert!(info.path.exists(), "the snapshot just written is kept");
    assert!(!stray.exists());
    let stale = format!("{}.stale", crate::snapshot::files::file_name(1_000));
    assert!(snap_dir.join(stale).exists());
    let listing = crate::wal::dir::list(&t.path().join(WAL_DIR)).unwrap();
    assert!(listing.segments[0].first_seq <= 121, "{listing:?}");
    a.close().unwrap();
    let (b, r) = open(t.path(), o);
    assert_eq!(r.snapshot.as_ref().unwrap().1, 120);
    assert_eq!(digest(&b), live);
}

#[test]
fn missing_wal_with_snapshots_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    create_once(&a, 1, 1);
    a.snapshot().unwrap();
    a.close().unwrap();
    std::fs::remove_dir_all(t.path().join(WAL_DIR)).unwrap();
    let e = bootstrap(t.path(), small_opts(0)).err().unwrap();
    assert!(e.to_string().contains("WAL directory is missing"), "{e}");
}

#[test]
fn prune_keeping_the_newest() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    for n in 0..10u64 {
        create_once(&a, n, 1);
        a.submit(None, &[cancel(id(n), 100 + n as i64)], Durability::Deferred)
            .unwrap();
    }
    assert_eq!(a.read(|p| p.terminal_count()).unwrap(), 10);
    let (_, stats, before) = a
        .prune_keeping(3, 1_000, Durability::Immediate)
        .unwrap()
        .unwrap();
    assert_eq!(before, 107);
    assert_eq!((stats.runs, stats.tasks), (7, 7));
    assert_eq!(a.read(|p| p.terminal_count()).unwrap(), 3);
    assert!(a
        .prune_keeping(3, 1_000, Durability::Immediate)
        .unwrap()
        .is_none());
    let (_, stats) = a.prune(i64::MAX, 1_000, Durability::Deferred).unwrap();
    assert_eq!(stats.runs, 3);
}

#[test]
fn concurrent_immediate_submits_share_fsyncs() {
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), BootstrapOptions::default());
    let a = Arc::new(a);
    let threads: Vec<_> = (0..16u64)
        .map(|k| {
            let a = Arc::clone(&a);
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let n = k * 1000 + i;
                    a.submit(None, &[tc(spec(id(n)), 1)], Durability::Immediate)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    assert_eq!(a.read(|p| p.task_count()).unwrap(), 800);
    let syncs = a.wal().stats().syncs;
    assert!(syncs < 400, "{syncs} fsyncs for 800 Immediate submits");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Snapshot at arbitrary points + tail replay == full replay == live state.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        choices in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<u16>()), 1..150),
        every in 0u64..30,
    ) {
        let mut d = Driver::new();
        for c in choices {
            d.step(c);
        }
        let t = tempfile::tempdir().unwrap();
        let (a, _) = open(t.path(), small_opts(every));
        for (seq, events) in &d.records {
            a.submit(Some(*seq), events, Durability::Deferred).unwrap();
        }
        let live = digest(&a);
        prop_assert_eq!(live, d.p.state_digest());
        a.close().unwrap();
        let (b, r) = open(t.path(), small_opts(every));
        prop_assert_eq!(r.digest, Some(live));
        let snap = r.snapshot.as_ref().map_or(0, |s| s.1);
        prop_assert_eq!(r.final_sequence - snap, r.events_replayed);
        drop(b);
        // Full replay from the log alone (snapshots moved away) gives the same state, twice,
        // unless a checkpoint deleted the log's beginning.
        let first_seg = crate::wal::dir::list(&t.path().join(WAL_DIR)).unwrap().segments[0].first_seq;
        if first_seg == 1 {
            std::fs::remove_dir_all(t.path().join(SNAPSHOT_DIR)).unwrap();
            for _ in 0..2 {
                let (c, r) = open(t.path(), small_opts(0));
                prop_assert!(r.snapshot.is_none());
                prop_assert_eq!(r.digest, Some(live));
                drop(c);
            }
        }
    }
}

#[test]
fn record_refused_by_the_log_is_taken_back_from_memory() {
    // The reducer accepts the record (applied tentatively), the WAL refuses it (too large):
    // the undo log puts memory back exactly, and the same ids can be used afterwards.
    let t = tempfile::tempdir().unwrap();
    let mut o = small_opts(0);
    o.wal.max_record_size = 512;
    let (a, _) = open(t.path(), o);
    create_once(&a, 1, 10);
    let (bytes, d) = (wal_bytes(t.path()), digest(&a));
    let mut big = spec(id(2));
    big.payload = vec![7u8; 4096];
    let batch = [
        tc(big, 11),
        rc(id(2_000_000), id(2), 0, 11),
        tr(id(1_000_001), RunState::Scheduled, RunState::Ready, 11),
    ];
    let e = a.submit(None, &batch, Durability::Deferred).unwrap_err();
    assert!(matches!(e, CoreError::RecordTooLarge { .. }), "{e}");
    assert!(a.failure().is_none());
    assert_eq!(d, digest(&a));
    assert_eq!(bytes, wal_bytes(t.path()));
    assert_eq!(a.read(|p| p.next_sequence()).unwrap(), 3);
    a.submit(
        None,
        &[tc(spec(id(2)), 12), rc(id(2_000_000), id(2), 0, 12)],
        Durability::Immediate,
    )
    .unwrap();
    let live = digest(&a);
    a.close().unwrap();
    let (_b, report) = open(t.path(), small_opts(0));
    assert_eq!(report.digest, Some(live));
}

#[test]
fn try_submit_gives_back_records_that_take_long_to_apply() {
    // Kept, the GIL froze every other Python thread for the whole apply: a Prune of 300k runs
    // held it for ~1 s. Given back, the binding releases it and submits the record blocking.
    let t = tempfile::tempdir().unwrap();
    let (a, _) = open(t.path(), small_opts(0));
    create_once(&a, 1, 10);
    let seq = || a.read(|p| p.latest_sequence()).unwrap();
    let long: [Vec<Event>; 3] = [
        vec![Event::Prune { before: 5, at: 20 }],
        vec![cancel(id(1), 20)],
        (0..=LONG_RECORD_EVENTS as u64)
            .map(|n| tc(spec(id(100 + n)), 20))
            .collect(),
    ];
    for events in long {
        assert!(long_record(&events));
        let before = seq();
        let back = a.try_submit(None, a.prepare(events), Durability::Deferred);
        let Err(record) = back else {
            panic!("a long record is given back")
        };
        assert_eq!(seq(), before); // nothing was done
        a.append_prepared(None, record, Durability::Deferred)
            .unwrap();
        assert!(seq() > before);
    }
    let short = vec![tc(spec(id(2)), 30), rc(id(2_000_002), id(2), 0, 30)];
    assert!(!long_record(&short));
    let kept = a.try_submit(None, a.prepare(short), Durability::Deferred);
    assert!(matches!(kept, Ok(Ok(_))));
}
