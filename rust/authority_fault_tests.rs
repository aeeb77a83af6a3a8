//! The mutation authority over a fault-injecting file system: injected ENOSPC/EIO make it
//! fail stop (typed error, every later call names the cause), and every state a power loss
//! can leave — after a failure or at any point of a realistic history — bootstraps to exactly
//! the state of a prefix of the submitted records that holds every acknowledged one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::authority::{Authority, AuthorityOptions};
use crate::event::Event;
use crate::recovery::{bootstrap, BootstrapOptions, SNAPSHOT_DIR, WAL_DIR};
use crate::state::tests::gen::Driver;
use crate::state::{Digest, Projection};
use crate::wal::faultfs::{Crash, Fault, FaultFs, FileCrash, OpKind, Rng};
use crate::wal::{Durability, WalOptions, WalWriter};
use crate::CoreError;

fn soak() -> bool {
    std::env::var("AQ_SOAK").is_ok_and(|v| !v.is_empty() && v != "0")
}

fn wal_opts() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        preallocate: 1024,
        ..WalOptions::default()
    }
}

fn boot_opts() -> BootstrapOptions {
    BootstrapOptions {
        wal: wal_opts(),
        authority: AuthorityOptions {
            snapshot_every: 0,
            keep_snapshots: 1,
            snapshot_on_close: false,
            ..AuthorityOptions::default()
        },
        ..BootstrapOptions::default()
    }
}

/// A realistic accepted history and the digest after each record (by last sequence).
type Records = Vec<(u64, Vec<Event>)>;

fn history(steps: usize, seed: u64) -> (Records, HashMap<u64, Digest>) {
    let mut d = Driver::new();
    let mut x = seed | 1;
    for _ in 0..steps {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        d.step(((x >> 33) as u8, (x >> 41) as u16, (x >> 20) as u16));
    }
    let mut p = Projection::new();
    let mut digests = HashMap::new();
    digests.insert(0, p.state_digest());
    for (seq, events) in &d.records {
        p.apply(*seq, events).unwrap();
        digests.insert(p.latest_sequence(), p.state_digest());
    }
    (d.records, digests)
}

/// Bootstraps `data` and checks: the state is exactly a prefix of the history (its digest is
/// the digest after some record), holding every acknowledged sequence.
fn check_boot(data: &Path, digests: &HashMap<u64, Digest>, acked: u64, what: &str) -> u64 {
    let (a, report) =
        bootstrap(data, boot_opts()).unwrap_or_else(|e| panic!("{what}: bootstrap: {e}"));
    let (seq, digest) = a.read(|p| (p.latest_sequence(), p.state_digest())).unwrap();
    assert!(
        seq >= acked,
        "{what}: lost acknowledged commits: recovered to {seq}, acknowledged {acked} ({report:?})"
    );
    assert_eq!(
        digests.get(&seq),
        Some(&digest),
        "{what}: recovered state at {seq} is not the state of that prefix"
    );
    a.close().unwrap();
    seq
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn base() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

/// Runs the history through an authority on a FaultFs with `fault` armed. Returns the fault
/// fs, the acknowledged sequence, and whether the fault hit.
fn run(
    data: &Path,
    records: &[(u64, Vec<Event>)],
    fault: Option<Fault>,
) -> (FaultFs, u64, bool, Vec<(usize, u64)>) {
    let wal_dir = data.join(WAL_DIR);
    let fs = FaultFs::new(&wal_dir).unwrap();
    std::fs::create_dir_all(data.join(SNAPSHOT_DIR)).unwrap();
    let wal =
        Arc::new(WalWriter::open_with_fs(&wal_dir, wal_opts(), Arc::new(fs.clone())).unwrap());
    let a = Authority::new(
        wal,
        Projection::new(),
        Some(data.join(SNAPSHOT_DIR)),
        boot_opts().authority,
    )
    .unwrap();
    if let Some(f) = fault {
        fs.inject(f);
    }
    let what = format!("{fault:?}");
    let mut acked = 0;
    let mut marks = Vec::new();
    let mut submitted = 0;
    let mut failed: Option<String> = None;
    for (i, (seq, events)) in records.iter().enumerate() {
        let d = if i % 3 == 0 {
            Durability::Immediate
        } else {
            Durability::Deferred
        };
        match a.submit(Some(*seq), events, d) {
            Ok(app) => {
                assert!(failed.is_none(), "{what}: a submit succeeded after failure");
                submitted = app.last_seq;
                if d == Durability::Immediate {
                    acked = app.last_seq;
                    marks.push((fs.op_count(), acked));
                }
            }
            Err(e) => {
                let errno = fault.unwrap().errno;
                let text = std::io::Error::from_raw_os_error(errno).to_string();
                match (&failed, &e) {
                    (None, CoreError::Io { source, .. }) => {
                        assert_eq!(source.raw_os_error(), Some(errno), "{what}: {e}");
                        if a.failure().is_none() {
                            // Preallocation refused (ENOSPC before the record was written):
                            // nothing written, the authority stays usable and the state did
                            // not move; the history cannot go on past this record.
                            assert_eq!(a.read(|p| p.next_sequence()).unwrap(), *seq, "{what}");
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                    (_, CoreError::Failed { cause }) => {
                        assert!(cause.contains(&text), "{what}: {cause}")
                    }
                    (_, other) => panic!("{what}: unexpected error {other}"),
                }
                failed = Some(e.to_string());
                // Fail stop: every later call says why, and the state is not advanced.
                let before = a.read(|p| p.latest_sequence());
                match a.flush() {
                    Err(CoreError::Failed { cause }) => assert!(cause.contains(&text), "{cause}"),
                    other => panic!("{what}: flush after failure: {other:?}"),
                }
                let again = a.submit(None, &[Event::EnginePause { at: 1 }], Durability::Deferred);
                assert!(
                    matches!(again, Err(CoreError::Failed { .. })),
                    "{what}: {again:?}"
                );
                let _ = before;
                break;
            }
        }
    }
    let closed = a.close();
    let hit = failed.is_some() || closed.is_err();
    if closed.is_ok() && a.failure().is_none() {
        // A clean close syncs everything submitted.
        acked = submitted;
    }
    (fs, acked, hit, marks)
}

#[test]
fn authority_fails_stop_on_io_errors_and_recovery_loses_nothing_acknowledged() {
    let (records, digests) = history(if soak() { 2000 } else { 500 }, 21);
    let t = base();
    let mut runs = 0;
    let mut hits = 0;
    let mut states = 0;
    for kind in [
        OpKind::Write,
        OpKind::Sync,
        OpKind::SetLen,
        OpKind::Create,
        OpKind::SyncDir,
    ] {
        for errno in [libc::ENOSPC, libc::EIO] {
            let step = if soak() { 1 } else { 5 };
            for nth in (1..2000u64).step_by(step) {
                let data = t.path().join(format!("r{runs}"));
                let fault = Fault {
                    kind,
                    nth,
                    errno,
                    partial: (nth as usize * 11) % 60,
                    sticky: errno == libc::ENOSPC,
                };
                let (fs, acked, hit, _) = run(&data, &records, Some(fault));
                runs += 1;
                if !hit {
                    break;
                }
                hits += 1;
                let what = format!("{fault:?}");
                // Reopen as a restarted process would (the OS kept its page cache)...
                let copy = t.path().join(format!("c{runs}"));
                copy_tree(&data, &copy);
                check_boot(&copy, &digests, acked, &format!("{what}, reopen"));
                // ...and after a power loss.
                let k = fs.op_count();
                for files in [FileCrash::DropAll, FileCrash::KeepAll] {
                    let out = t.path().join(format!("p{runs}-{states}"));
                    fs.materialize(
                        k,
                        Crash {
                            files,
                            dir_ops: usize::MAX,
                        },
                        &out.join(WAL_DIR),
                    )
                    .unwrap();
                    check_boot(
                        &out,
                        &digests,
                        acked,
                        &format!("{what}, power loss {files:?}"),
                    );
                    states += 1;
                }
            }
        }
    }
    assert!(hits > 20);
    println!("authority I/O faults: {runs} runs, {hits} faults hit, {states} power-loss states");
}

#[test]
fn power_loss_at_every_point_of_a_history_bootstraps_to_an_acknowledged_prefix() {
    let (records, digests) = history(if soak() { 2000 } else { 500 }, 33);
    let t = base();
    let data = t.path().join("live");
    let (fs, _, _, marks) = run(&data, &records, None);
    let ops = fs.ops();
    let mut rng = Rng(5);
    let mut states = 0;
    let every = if soak() { 1 } else { 3 };
    for k in (0..=ops.len()).step_by(every) {
        let p = fs.pending(k);
        for c in [
            Crash {
                files: FileCrash::DropAll,
                dir_ops: 0,
            },
            Crash {
                files: FileCrash::Sectors {
                    seed: rng.next_u64(),
                    keep_ppm: 500_000,
                },
                dir_ops: rng.below(p.dir_ops as u64 + 1) as usize,
            },
        ] {
            let out = t.path().join(format!("s{k}-{states}"));
            fs.materialize(k, c, &out.join(WAL_DIR)).unwrap();
            let acked = marks
                .iter()
                .filter(|m| m.0 <= k)
                .map(|m| m.1)
                .max()
                .unwrap_or(0);
            check_boot(&out, &digests, acked, &format!("crash after op {k} {c:?}"));
            states += 1;
        }
    }
    println!("authority power loss: {states} states bootstrapped to a prefix");
}
