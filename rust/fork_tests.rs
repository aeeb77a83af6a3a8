//! A real `fork()`: the child's copy of a WAL writer or authority refuses every call and writes
//! nothing when closed; the parent goes on and keeps its lock.
//!
//! The child runs only the closure given (no asserts: a panic hook would take the stderr
//! lock, which another test thread may have held at the fork) and leaves with `_exit`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::authority::{Authority, AuthorityOptions};
use crate::recovery::{bootstrap, BootstrapOptions};
use crate::state::tests::{id, rc, spec, tc};
use crate::wal::{Durability, WalOptions, WalReader, WalWriter};
use crate::CoreError;

/// Runs `f` in a forked child; its exit status (`f`'s result, 99 on a panic, 98 on a hang).
#[allow(unsafe_code)]
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: fork is safe to call; in the child only `f` runs (it takes no lock another
    // thread of the test harness could hold, other than glibc's malloc, which fork resets)
    // and `_exit` ends it without running destructors, atexit handlers or harness code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: ends the child at once, as above.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: kills and reaps our own child (it hung, e.g. joining a thread that
            // exists only in the parent).
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return 98;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(libc::WIFEXITED(status), "child died: status {status}");
    libc::WEXITSTATUS(status)
}

/// Every file under `dir`: path, bytes, modification time.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>, SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let m = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.push((p.clone(), std::fs::read(&p).unwrap(), m));
            }
        }
    }
    out.sort();
    out
}

fn forked(r: crate::Result<impl Sized>) -> bool {
    matches!(r, Err(CoreError::ForkedProcess { .. }))
}

fn create(n: u64) -> Vec<crate::event::Event> {
    vec![
        tc(spec(id(n)), 1_000),
        rc(id(n + 1_000_000), id(n), 0, 1_000),
    ]
}

fn opts() -> BootstrapOptions {
    BootstrapOptions {
        wal: WalOptions {
            segment_size: 4096,
            preallocate: 0,
            sync_interval: Some(Duration::from_millis(1)),
            ..WalOptions::default()
        },
        authority: AuthorityOptions {
            snapshot_every: 3,
            keep_snapshots: 1,
            snapshot_on_close: true,
            ..AuthorityOptions::default()
        },
        ..BootstrapOptions::default()
    }
}

/// What the child does with the inherited authority: 0 when every call was refused and close
/// succeeded; else the number of the first check that failed.
fn misuse_authority(a: &Authority) -> i32 {
    let big = vec![tc(spec(id(900)), 1_000)];
    if !forked(a.submit(None, &big, Durability::Immediate)) {
        return 1;
    }
    if !forked(a.submit_owned(None, create(901), Durability::Deferred)) {
        return 2;
    }
    if !matches!(
        a.try_submit(None, a.prepare(create(902)), Durability::Deferred),
        Ok(Err(CoreError::ForkedProcess { .. }))
    ) {
        return 3;
    }
    if !forked(a.read(|p| p.task_count())) || !forked(a.flush()) || !forked(a.snapshot()) {
        return 4;
    }
    if !forked(a.prune(0, 1, Durability::Immediate)) || !forked(a.wait_durable(1)) {
        return 5;
    }
    if !a
        .failure()
        .is_some_and(|f| f.starts_with("this queue (WAL directory"))
    {
        return 6;
    }
    if !forked(a.wal().append(&create(903), Durability::Immediate, None)) {
        return 7;
    }
    if !forked(a.wal().remove_segments_through(u64::MAX)) {
        return 8;
    }
    // Close only forgets (no flush, snapshot on close, checkpoint, sync mark or unlock) and
    // does not join the WAL's sync thread (it exists only in the parent).
    if a.close().is_err() || a.close().is_err() {
        return 9;
    }
    if !forked(a.submit(None, &create(904), Durability::Immediate)) {
        return 10;
    }
    0
}

#[test]
fn a_forked_child_cannot_use_the_authority_and_its_close_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("q");
    let (a, _) = bootstrap(&dir, opts()).unwrap();
    for n in 0..4 {
        a.submit(None, &create(n), Durability::Immediate).unwrap();
    }
    let before = tree(&dir);
    assert_eq!(in_child(|| misuse_authority(&a)), 0);
    assert_eq!(tree(&dir), before, "the child changed the data directory");

    // The parent goes on, still holding the directory lock.
    for n in 4..8 {
        a.submit(None, &create(n), Durability::Immediate).unwrap();
    }
    assert!(matches!(
        bootstrap(&dir, opts()),
        Err(CoreError::DataDirLocked { .. })
    ));
    let last = a.read(|p| p.latest_sequence()).unwrap();
    a.close().unwrap();
    drop(a);
    let (a, _) = bootstrap(&dir, opts()).unwrap();
    a.read(|p| {
        assert_eq!(p.latest_sequence(), last);
        assert_eq!(p.task_count(), 8);
        assert!((900..905).all(|n| p.task(&id(n)).is_none()));
    })
    .unwrap();
}

#[test]
fn a_forked_child_cannot_use_a_wal_writer_and_dropping_it_writes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let o = opts().wal;
    // The child takes its copy out to drop it; the parent's memory is its own.
    let cell = std::cell::RefCell::new(Some(WalWriter::open(t.path(), o.clone()).unwrap()));
    let w = || std::cell::Ref::map(cell.borrow(), |w| w.as_ref().unwrap());
    w().append(&create(0), Durability::Immediate, None).unwrap();
    let before = tree(t.path());
    let code = in_child(|| {
        let w = cell.borrow_mut().take().unwrap();
        let refused = forked(w.append(&create(1), Durability::Deferred, None))
            && forked(w.flush())
            && forked(w.wait_durable(1))
            && w.check_process().is_err()
            && !w.in_owner_process();
        if !refused {
            return 1;
        }
        // Drop runs `close`: in the child, it only forgets (no sync mark, no unlock, the
        // sync thread not joined).
        drop(w);
        0
    });
    assert_eq!(code, 0);
    assert_eq!(
        tree(t.path()),
        before,
        "the child changed the WAL directory"
    );
    w().append(&create(2), Durability::Immediate, None).unwrap();
    assert!(matches!(
        WalWriter::open(t.path(), o.clone()),
        Err(CoreError::DataDirLocked { .. })
    ));
    w().close().unwrap();
    let mut r = WalReader::open(t.path(), crate::DEFAULT_MAX_RECORD_SIZE).unwrap();
    let mut seqs = Vec::new();
    while let Some(e) = r.next_event().unwrap() {
        seqs.push(e.sequence);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}
