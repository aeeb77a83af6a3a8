//! Simulated power loss and injected I/O errors, through the real writer and the real recovery.
//!
//! A workload runs through [`WalWriter`] on a [`FaultFs`]; after every call returns, the test
//! notes the op-log position (an *acknowledgement mark*). Then, for every crash point `k` (the
//! first `k` file-system operations happened) and several crash choices (unsynced writes all
//! lost, all kept, an in-order prefix with the last write torn at any byte, a random subset of
//! 512-byte sectors; a prefix of the unsynced directory operations), the disk state is
//! materialised into a fresh directory and opened with the real recovery. Each must yield
//! exactly a prefix of the appended events, containing every event whose Immediate append (or
//! `flush`) had returned before the crash.
//!
//! `AQ_SOAK=1` runs more seeds, longer workloads and every torn byte of every write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::faultfs::{Crash, Fault, FaultFs, FileCrash, Op, OpKind, Rng};
use super::*;
use crate::event::Event;
use crate::CoreError;

fn soak() -> bool {
    std::env::var("AQ_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A base directory on tmpfs when there is one (thousands of small opens; fsync is free).
fn base_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

fn fresh(base: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    base.join(format!("s{}", N.fetch_add(1, Ordering::Relaxed)))
}

/// An event of roughly `size` bytes whose content identifies `i`.
fn ev(i: u64, size: usize) -> Event {
    let mut task_id = [0xA5u8; 16];
    task_id[..8].copy_from_slice(&i.to_le_bytes());
    Event::TaskCancel {
        task_id,
        reason: Some("r".repeat(size)),
        at: i64::try_from(i).unwrap(),
    }
}

fn opts() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        preallocate: 1024,
        ..WalOptions::default()
    }
}

fn read_all(dir: &Path) -> crate::Result<Vec<(u64, Event)>> {
    WalReader::open(dir, crate::DEFAULT_MAX_RECORD_SIZE)?
        .map(|r| r.map(|e| (e.sequence, e.event)))
        .collect()
}

/// What a workload did: the events in sequence order, and acknowledgement marks
/// `(op count when the call returned, every sequence <= this is durable)`.
#[derive(Default)]
struct Run {
    events: Vec<(u64, Event)>,
    acks: Vec<(usize, u64)>,
}

impl Run {
    fn acked_at(&self, k: usize) -> u64 {
        self.acks
            .iter()
            .filter(|(mark, _)| *mark <= k)
            .map(|(_, s)| *s)
            .max()
            .unwrap_or(0)
    }
}

/// Opens a crash state the way a restarted process would and checks the prefix rule.
/// Returns the number of events recovered.
fn check_state(dir: &Path, expected: &[(u64, Event)], acked: u64, what: &str) -> usize {
    // A reader on the raw state (before any repair) must not fail either.
    let raw = read_all(dir).unwrap_or_else(|e| panic!("{what}: reader on the crash state: {e}"));
    assert!(
        raw.len() <= expected.len() && raw[..] == expected[..raw.len()],
        "{what}: reader returned a non-prefix"
    );
    let w = WalWriter::open(dir, opts()).unwrap_or_else(|e| panic!("{what}: recovery: {e}"));
    let last = w.recovery_report().last_sequence;
    drop(w);
    let got = read_all(dir).unwrap_or_else(|e| panic!("{what}: read after recovery: {e}"));
    assert!(
        got.len() <= expected.len() && got[..] == expected[..got.len()],
        "{what}: recovered {} events, not a prefix of the {} appended",
        got.len(),
        expected.len()
    );
    assert_eq!(got.last().map_or(0, |e| e.0), last, "{what}: report");
    let first = expected.first().map_or(1, |e| e.0);
    let need = acked.saturating_add(1).saturating_sub(first) as usize;
    assert!(
        got.len() >= need,
        "{what}: lost acknowledged events: recovered {} (through sequence {last}), \
         acknowledged through sequence {acked}",
        got.len()
    );
    got.len()
}

/// Single-threaded workload: Immediate and Deferred appends (batches of 1..3 events of varied
/// sizes, rotating small segments), an occasional flush, and a clean close.
fn workload(w: &WalWriter, fs: &FaultFs, rng: &mut Rng, appends: u64, run: &mut Run) {
    for i in 0..appends {
        let n = 1 + rng.below(3);
        let batch: Vec<Event> = (0..n)
            .map(|k| ev(i * 10 + k, 1 + rng.below(120) as usize))
            .collect();
        let immediate = rng.below(3) == 0;
        let d = if immediate {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        let a = w.append(&batch, d, None).unwrap();
        for (k, e) in batch.into_iter().enumerate() {
            run.events.push((a.first_seq + k as u64, e));
        }
        if immediate {
            run.acks.push((fs.op_count(), a.last_seq));
        }
        if rng.below(17) == 0 {
            w.flush().unwrap();
            run.acks.push((fs.op_count(), a.last_seq));
        }
    }
}

/// Crash choices for crash point `k`: everything lost, everything kept, and `random` each of
/// in-order prefixes (last write torn at a random byte) and random sector subsets.
fn crashes(fs: &FaultFs, k: usize, rng: &mut Rng, random: usize) -> Vec<Crash> {
    let p = fs.pending(k);
    let mut out = vec![
        Crash {
            files: FileCrash::DropAll,
            dir_ops: 0,
        },
        Crash {
            files: FileCrash::KeepAll,
            dir_ops: usize::MAX,
        },
    ];
    for _ in 0..random {
        out.push(Crash {
            files: FileCrash::Prefix {
                keep: rng.below(p.file_ops as u64 + 1) as usize,
                torn: rng.below(200) as usize,
            },
            dir_ops: rng.below(p.dir_ops as u64 + 1) as usize,
        });
        out.push(Crash {
            files: FileCrash::Sectors {
                seed: rng.next_u64(),
                keep_ppm: rng.below(1_000_001) as u32,
            },
            dir_ops: rng.below(p.dir_ops as u64 + 1) as usize,
        });
    }
    out
}

/// Every crash point of `fs`'s op log, several crash choices each, plus every torn byte of
/// the write just before the crash point (a sample of them outside soak mode).
fn crash_everywhere(fs: &FaultFs, run: &Run, base: &Path, seed: u64, random: usize) -> u64 {
    let ops = fs.ops();
    let mut rng = Rng(seed);
    let mut states = 0u64;
    for k in 0..=ops.len() {
        let acked = run.acked_at(k);
        let mut choices = crashes(fs, k, &mut rng, random);
        if let Some(Op::Write { data, .. }) = k.checked_sub(1).and_then(|i| ops.get(i)) {
            let p = fs.pending(k);
            let stride = if soak() { 1 } else { 1 + data.len() / 12 };
            for torn in (0..data.len()).step_by(stride) {
                choices.push(Crash {
                    files: FileCrash::Prefix {
                        keep: p.file_ops.saturating_sub(1),
                        torn,
                    },
                    dir_ops: usize::MAX,
                });
            }
        }
        for c in choices {
            let out = fresh(base);
            fs.materialize(k, c, &out).unwrap();
            let what = format!("seed {seed}, crash after op {k}/{} ({c:?})", ops.len());
            check_state(&out, &run.events, acked, &what);
            std::fs::remove_dir_all(&out).unwrap();
            states += 1;
        }
    }
    states
}

#[test]
fn power_loss_at_every_point_recovers_a_prefix_with_every_acknowledged_append() {
    let base = base_dir();
    let seeds: u64 = if soak() { 40 } else { 3 };
    let appends = if soak() { 120 } else { 45 };
    let mut states = 0;
    let mut points = 0;
    for seed in 0..seeds {
        let live = fresh(base.path());
        let fs = FaultFs::new(&live).unwrap();
        let w = WalWriter::open_with_fs(&live, opts(), Arc::new(fs.clone())).unwrap();
        let mut run = Run::default();
        let mut rng = Rng(seed);
        workload(&w, &fs, &mut rng, appends, &mut run);
        w.close().unwrap();
        let all = run.events.last().unwrap().0;
        run.acks.push((fs.op_count(), all));
        assert!(dir::list(&live).unwrap().segments.len() >= 3, "rotation");
        points += fs.op_count() + 1;
        states += crash_everywhere(&fs, &run, base.path(), seed, 2);
    }
    println!(
        "power loss: {seeds} workloads, {points} crash points, {states} disk states recovered"
    );
}

/// A crash, then recovery (which truncates a torn tail), more appends, and a crash at every
/// point of that second life, including inside recovery's own truncation.
#[test]
fn power_loss_during_and_after_recovery_keeps_the_prefix_rule() {
    let base = base_dir();
    let seeds: u64 = if soak() { 20 } else { 2 };
    let mut states = 0;
    for seed in 0..seeds {
        let live = fresh(base.path());
        let fs = FaultFs::new(&live).unwrap();
        let w = WalWriter::open_with_fs(&live, opts(), Arc::new(fs.clone())).unwrap();
        let mut run = Run::default();
        let mut rng = Rng(1000 + seed);
        workload(&w, &fs, &mut rng, 30, &mut run);
        let k = fs.op_count();
        // The state at the "crash": in-order writeback that tore some late write.
        let p = fs.pending(k);
        let crash = Crash {
            files: FileCrash::Prefix {
                keep: p.file_ops.saturating_sub(1 + rng.below(3) as usize),
                torn: 1 + rng.below(30) as usize,
            },
            dir_ops: usize::MAX,
        };
        drop(w);
        let second = fresh(base.path());
        fs.materialize(k, crash, &second).unwrap();
        let fs2 = FaultFs::new(&second).unwrap();
        let w2 = WalWriter::open_with_fs(&second, opts(), Arc::new(fs2.clone())).unwrap();
        let survivors = read_all(&second).unwrap();
        assert!(survivors[..] == run.events[..survivors.len()]);
        let mut run2 = Run {
            events: survivors.clone(),
            acks: vec![(0, survivors.last().map_or(0, |e| e.0))],
        };
        let mut tail = Run::default();
        workload(&w2, &fs2, &mut rng, 30, &mut tail);
        w2.close().unwrap();
        run2.events.extend(tail.events.iter().cloned());
        run2.acks.extend(tail.acks.iter().copied());
        run2.acks
            .push((fs2.op_count(), run2.events.last().unwrap().0));
        states += crash_everywhere(&fs2, &run2, base.path(), 5000 + seed, 1);
    }
    println!("crash after recovery: {seeds} workloads, {states} disk states recovered");
}

/// Concurrent Immediate and Deferred appenders (group commit): every crash state is a prefix
/// of the final log and holds every append acknowledged before the crash.
#[test]
fn power_loss_under_group_commit_loses_no_acknowledged_append() {
    let base = base_dir();
    let live = fresh(base.path());
    let fs = FaultFs::new(&live).unwrap();
    let w = Arc::new(WalWriter::open_with_fs(&live, opts(), Arc::new(fs.clone())).unwrap());
    let acks = Arc::new(Mutex::new(Vec::new()));
    let per_thread = if soak() { 60 } else { 15 };
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let (w, fs, acks) = (Arc::clone(&w), fs.clone(), Arc::clone(&acks));
            std::thread::spawn(move || {
                for i in 0..per_thread {
                    let d = if (t + i) % 3 == 0 {
                        Durability::Deferred
                    } else {
                        Durability::Immediate
                    };
                    let a = w.append(&[ev(t * 1000 + i, 40)], d, None).unwrap();
                    if d == Durability::Immediate {
                        acks.lock().unwrap().push((fs.op_count(), a.last_seq));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    w.close().unwrap();
    let run = Run {
        events: read_all(&live).unwrap(),
        acks: acks.lock().unwrap().clone(),
    };
    assert_eq!(run.events.len() as u64, 6 * per_thread);
    let states = crash_everywhere(&fs, &run, base.path(), 77, 1);
    println!("group commit power loss: {states} disk states recovered");
}

// ------------------------------------------------------------------------------------------
// Injected I/O errors: ENOSPC / EIO on every kind of operation, at every occurrence.
// ------------------------------------------------------------------------------------------

fn os_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// What one faulty run did.
struct FaultRun {
    triggered: bool,
}

fn run_with_fault(base: &Path, fault: Fault, seed: u64) -> FaultRun {
    let live = fresh(base);
    let fs = FaultFs::new(&live).unwrap();
    let w = WalWriter::open_with_fs(&live, opts(), Arc::new(fs.clone())).unwrap();
    fs.inject(fault);
    let mut rng = Rng(seed);
    // Events that may be in the log (appends that returned Ok, or failed after their write
    // began), in order, and what was acknowledged durable.
    let mut possible: Vec<Event> = Vec::new();
    let mut acked_events = 0usize;
    let mut first_err: Option<CoreError> = None;
    let what = format!("{fault:?}");
    for i in 0..40u64 {
        let batch: Vec<Event> = (0..1 + rng.below(2))
            .map(|k| ev(i * 10 + k, 20 + rng.below(200) as usize))
            .collect();
        let d = if i % 2 == 0 {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        match w.append(&batch, d, None) {
            Ok(_) => {
                assert!(
                    first_err.is_none() || is_preallocate(first_err.as_ref()),
                    "{what}: append succeeded after a fail-stop error"
                );
                possible.extend(batch);
                if d == Durability::Immediate {
                    acked_events = possible.len();
                }
            }
            Err(e) => match &first_err {
                None => {
                    // The first error is the cause itself, typed, with its errno and the file
                    // (the leader of a failed group sync gets it so); the followers of that
                    // sync get the fail-stop error, whose cause names the call, the file and
                    // the errno.
                    match &e {
                        CoreError::Io { op, source, path } => {
                            assert_eq!(source.raw_os_error(), Some(fault.errno), "{what}: {e}");
                            assert!(path.starts_with(&live), "{what}: {e} names {path:?}");
                            if matches!(*op, "write" | "fdatasync") {
                                possible.extend(batch);
                            }
                        }
                        CoreError::Failed { cause } => {
                            assert!(cause.contains(&os_text(fault.errno)), "{what}: {e}");
                            assert!(cause.contains(&*live.to_string_lossy()), "{what}: {e}");
                            // Written, then its sync failed.
                            possible.extend(batch);
                        }
                        other => panic!("{what}: first error is not an I/O error: {other}"),
                    }
                    first_err = Some(e);
                }
                Some(first) if is_preallocate(Some(first)) => {
                    // Preallocation refused (nothing but zeros written): the writer stays
                    // usable and reports each refusal, or fails stop on a later real error.
                    if let CoreError::Io { op, .. } = &e {
                        if matches!(*op, "write" | "fdatasync") {
                            possible.extend(batch);
                        }
                    }
                }
                Some(_) => match &e {
                    CoreError::Failed { cause } => {
                        assert!(cause.contains(&os_text(fault.errno)), "{what}: {cause}")
                    }
                    other => panic!("{what}: expected StorageFailed after the error, got {other}"),
                },
            },
        }
        if first_err.as_ref().is_some_and(|e| !is_preallocate(Some(e))) {
            // Fail-stop: every later call names the cause.
            for r in [
                w.append(&[ev(9_999, 3)], Durability::Deferred, None)
                    .map(|_| ()),
                w.flush(),
            ] {
                match r {
                    Err(CoreError::Failed { cause }) => {
                        assert!(cause.contains(&os_text(fault.errno)), "{what}: {cause}")
                    }
                    other => panic!("{what}: after a failure: {other:?}"),
                }
            }
        }
    }
    let close = w.close();
    let triggered = first_err.is_some() || close.is_err();
    if let Err(e) = &close {
        let ok = match e {
            CoreError::Io { source, .. } => source.raw_os_error() == Some(fault.errno),
            CoreError::Failed { cause } => cause.contains(&os_text(fault.errno)),
            _ => false,
        };
        assert!(ok, "{what}: close: {e}");
    } else if first_err.is_none() {
        acked_events = possible.len(); // a clean close makes everything durable
    }
    let expected: Vec<(u64, Event)> = possible
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    let acked = acked_events as u64;
    // Reopen without a power loss (the process restarted; the OS kept its page cache).
    let copy = fresh(base);
    copy_dir(&live, &copy);
    check_state(&copy, &expected, acked, &format!("{what}, reopen"));
    // And after a power loss at the end.
    let k = fs.op_count();
    let mut r = Rng(seed ^ 0xF00D);
    for c in crashes(&fs, k, &mut r, 2) {
        let out = fresh(base);
        fs.materialize(k, c, &out).unwrap();
        check_state(&out, &expected, acked, &format!("{what}, power loss {c:?}"));
    }
    FaultRun { triggered }
}

fn is_preallocate(e: Option<&CoreError>) -> bool {
    matches!(
        e,
        Some(CoreError::Io {
            op: "preallocate",
            ..
        })
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn enospc_and_eio_on_every_operation_fail_stop_and_lose_nothing_acknowledged() {
    let base = base_dir();
    let kinds = [
        OpKind::Write,
        OpKind::Sync,
        OpKind::SetLen,
        OpKind::Create,
        OpKind::Rename,
        OpKind::Remove,
        OpKind::SyncDir,
    ];
    let mut runs = 0;
    let mut triggered = 0;
    for kind in kinds {
        for errno in [libc::ENOSPC, libc::EIO] {
            for nth in 1..=200u64 {
                let fault = Fault {
                    kind,
                    nth,
                    errno,
                    partial: (nth as usize * 13) % 90,
                    sticky: errno == libc::ENOSPC,
                };
                let r = run_with_fault(base.path(), fault, nth);
                runs += 1;
                if !r.triggered {
                    break;
                }
                triggered += 1;
                if !soak() && kind == OpKind::Write && nth > 60 {
                    break;
                }
            }
        }
    }
    assert!(triggered > 50);
    println!("injected I/O errors: {runs} runs, {triggered} faults hit");
}

/// I/O errors while recovery repairs a torn tail: open fails with a clear error, the log is
/// untouched or repaired, and the next open recovers the same prefix.
#[test]
fn io_errors_during_recovery_are_reported_and_the_next_open_recovers() {
    let base = base_dir();
    let live = fresh(base.path());
    let fs = FaultFs::new(&live).unwrap();
    let w = WalWriter::open_with_fs(&live, opts(), Arc::new(fs.clone())).unwrap();
    let mut run = Run::default();
    workload(&w, &fs, &mut Rng(3), 30, &mut run);
    let k = fs.op_count();
    drop(w);
    let torn = fresh(base.path());
    // The last record write, torn after 7 bytes.
    let ops = fs.ops();
    let last_record = (0..k)
        .rev()
        .find(|&i| matches!(&ops[i], Op::Write { data, .. } if data.starts_with(b"AQRC")))
        .unwrap();
    let after = fs.pending(last_record + 1).file_ops;
    assert!(after > 0);
    fs.materialize(
        last_record + 1,
        Crash {
            files: FileCrash::Prefix {
                keep: after - 1,
                torn: 7,
            },
            dir_ops: usize::MAX,
        },
        &torn,
    )
    .unwrap();
    let survivors = {
        let c = fresh(base.path());
        copy_dir(&torn, &c);
        let w = WalWriter::open(&c, opts()).unwrap();
        assert!(
            w.recovery_report().truncated,
            "the state has a torn tail to cut"
        );
        drop(w);
        read_all(&c).unwrap()
    };
    for kind in [
        OpKind::SetLen,
        OpKind::Sync,
        OpKind::Remove,
        OpKind::SyncDir,
    ] {
        for errno in [libc::EIO, libc::ENOSPC] {
            let d = fresh(base.path());
            copy_dir(&torn, &d);
            let fs = FaultFs::new(&d).unwrap();
            fs.inject(Fault {
                kind,
                nth: 1,
                errno,
                partial: 0,
                sticky: false,
            });
            match WalWriter::open_with_fs(&d, opts(), Arc::new(fs.clone())) {
                Ok(w) => drop(w),
                Err(e) => {
                    assert!(
                        matches!(&e, CoreError::Io { source, .. } if source.raw_os_error() == Some(errno)),
                        "{kind:?}: {e}"
                    );
                }
            }
            let w = WalWriter::open(&d, opts()).unwrap();
            drop(w);
            assert_eq!(read_all(&d).unwrap(), survivors, "{kind:?} {errno}");
        }
    }
}

/// A group sync that fails while dozens of followers wait for it (large groups: followers
/// spin instead of parking) reaches every one of them: each gets an error, none hangs, and
/// nothing appended after the failure is acknowledged.
#[test]
fn failed_sync_reaches_every_waiter_of_large_groups() {
    let base = base_dir();
    let live = fresh(base.path());
    let fs = FaultFs::new(&live).unwrap();
    let o = WalOptions {
        segment_size: 1 << 20,
        ..opts()
    };
    let w = Arc::new(WalWriter::open_with_fs(&live, o, Arc::new(fs.clone())).unwrap());
    fs.inject(Fault {
        kind: OpKind::Sync,
        nth: 40,
        errno: libc::EIO,
        partial: 0,
        sticky: true,
    });
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..32u64 {
        let (w, tx) = (Arc::clone(&w), tx.clone());
        std::thread::spawn(move || {
            let mut acked = 0u64;
            for i in 0..200 {
                match w.append(&[ev(t * 1000 + i, 30)], Durability::Immediate, None) {
                    Ok(a) => acked = a.last_seq,
                    Err(e) => {
                        tx.send((acked, Some(e.to_string()))).unwrap();
                        return;
                    }
                }
            }
            tx.send((acked, None)).unwrap();
        });
    }
    drop(tx);
    let mut errors = 0;
    for _ in 0..32 {
        let (_, err) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a waiter of the failed sync hung");
        if let Some(e) = err {
            assert!(e.contains(&os_text(libc::EIO)), "{e}");
            errors += 1;
        }
    }
    assert_eq!(
        errors, 32,
        "every appender sees the failure (6,400 appends, sync 40 fails)"
    );
    assert!(w
        .append(&[ev(99_999, 5)], Durability::Deferred, None)
        .is_err());
}
