//! The mutation authority: the one write path into durable state (SPEC §5).
//!
//! ```text
//!  submit(events, durability)                        one mutex: WAL append order ==
//!  ───────────────────────────────────────────        projection apply order
//!  encode + checksum the record               no lock (its sequence goes in the header)
//!  lock ─ refuse if failed/closed
//!       ─ first = projection.next_sequence()  (caller's expected first must match)
//!       ─ projection.apply_tentative_owned(first, events)   the reducer's dry run =
//!                                              replay's code, kept with its undo log (one
//!                                              pass); the events are moved in, not cloned
//!       ─ wal.append_encoded(record, first)    one record, one checksum: written now
//!                                              (Deferred) or held for the group's sync
//!       ─ commit_tentative (or abort_tentative: undo, if the append failed)
//!       ─ every `snapshot_every` events: flush, snapshot, checkpoint
//!  unlock
//!  Immediate: wal.wait_durable(last)           group commit, no lock held
//! ```
//!
//! Holding the mutex only across check + write + apply (never across the fsync) is what lets
//! concurrent Immediate submitters share one `fdatasync`. A caller is told "done" only after its
//! record is durable; other threads may see its effects earlier (DESIGN.md, "Durability and
//! visibility"), and since the log is sequential anything acting on them is durable after it.
//!
//! Failure: a write or sync error, or an `apply` that fails after a successful `check` (a bug),
//! moves the authority into a failed state for good: every later call, queries included,
//! returns [`CoreError::Failed`] naming the first cause. Memory is never allowed to diverge
//! silently from the log; reopening (recovery) rebuilds it from the log.
//!
//! Snapshots: only the capture runs under the mutex ([`snapshot::Capture::take`]: freeze what
//! finished since the last freeze batch into the cold store, encode the live records, share
//! the cold segments), O(live records + at most one batch): the projection freezes finished
//! records in batches as they finish (`Projection::set_auto_freeze`). Flush,
//! write, fsync and checkpoint run after the mutex is released, serialized by their own
//! mutex, so submitters are not stopped for the file I/O.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use crate::event::Event;
use crate::model::Millis;
use crate::snapshot;
use crate::state::prune::PruneStats;
use crate::state::Projection;
use crate::wal::{Appended, Durability, EncodedRecord, WalWriter};
use crate::{CoreError, Result};

/// Default number of events between automatic snapshots.
pub const DEFAULT_SNAPSHOT_EVENTS: u64 = 100_000;
/// Default number of snapshots kept.
pub const DEFAULT_KEEP_SNAPSHOTS: usize = 2;

#[derive(Debug, Clone)]
pub struct AuthorityOptions {
    /// Take a snapshot after this many events since the last one (0: never automatically) —
    /// or, when more records than that are live, after as many events as there are live
    /// records (see [`Authority::snapshot_due`]).
    pub snapshot_every: u64,
    /// Snapshots kept after a new one is written (at least 1). WAL segments are deleted only
    /// when wholly before the **oldest** kept snapshot, so every kept snapshot stays usable
    /// as a fallback.
    pub keep_snapshots: usize,
    /// Take a snapshot at a clean close (when anything happened since the last one).
    pub snapshot_on_close: bool,
    /// Largest snapshot body the next open will read (`BootstrapOptions::max_snapshot_size`):
    /// a bigger snapshot is not kept, so no checkpoint deletes the log behind a snapshot that
    /// opening would skip.
    pub max_snapshot_size: u64,
}

impl AuthorityOptions {
    /// Refuses settings the authority cannot work with (what [`Authority::new`] checks first).
    pub fn validate(&self) -> Result<()> {
        if self.keep_snapshots == 0 {
            return Err(CoreError::InvalidArgument(
                "keep_snapshots must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        Self {
            snapshot_every: DEFAULT_SNAPSHOT_EVENTS,
            keep_snapshots: DEFAULT_KEEP_SNAPSHOTS,
            snapshot_on_close: true,
            max_snapshot_size: snapshot::DEFAULT_MAX_SNAPSHOT_SIZE,
        }
    }
}

/// A snapshot written by the authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub sequence: u64,
    pub bytes: u64,
    pub millis: u64,
    /// Of `millis`, the microseconds spent holding the authority's lock (the capture).
    pub locked_micros: u64,
    /// WAL segments deleted by the checkpoint that followed.
    pub segments_removed: usize,
    /// Older snapshot files deleted.
    pub snapshots_removed: usize,
}

/// Counters of the authority (the WAL's own are in [`WalWriter::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityStats {
    pub submits: u64,
    pub events: u64,
    pub rejected: u64,
    pub snapshots: u64,
    pub events_since_snapshot: u64,
    pub last_snapshot: Option<SnapshotInfo>,
    /// The last automatic snapshot or checkpoint error (they never fail the authority: the
    /// log is intact; the next interval retries).
    pub last_snapshot_error: Option<String>,
}

struct Inner {
    p: Projection,
    failed: Option<String>,
    closed: bool,
    stats: AuthorityStats,
    /// An automatic snapshot captured by a submit, written once that submit has released
    /// the lock.
    pending: Option<SnapJob>,
    /// Live records the last capture encoded (its cost): see [`Authority::snapshot_due`].
    hot_at_capture: u64,
}

/// A record ready for [`Authority::submit_prepared`]: its events and their encoding (or the
/// encoding error, reported after the reducer's verdict).
pub struct Prepared {
    events: Vec<Event>,
    enc: Result<EncodedRecord>,
}

/// A captured snapshot waiting to be written.
struct SnapJob {
    cap: snapshot::Capture,
    started: Instant,
    locked_micros: u64,
}

/// How writing a snapshot failed.
enum SnapError {
    /// The log could not be flushed: the authority fails.
    Fatal(CoreError),
    /// The snapshot or checkpoint failed; the log is intact.
    Soft(CoreError),
}

/// The storage-owned mutation authority. All methods take `&self` and are thread-safe.
pub struct Authority {
    wal: Arc<WalWriter>,
    snapshot_dir: Option<PathBuf>,
    opts: AuthorityOptions,
    inner: Mutex<Inner>,
    /// Serializes snapshot writers (taken without `inner` held, or after it at close).
    writer: Mutex<()>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Errors after which nothing was written and the WAL is still usable.
fn nothing_written(e: &CoreError, wal: &WalWriter) -> bool {
    match e {
        CoreError::RecordTooLarge { .. } | CoreError::InvalidArgument(_) => true,
        // The WAL's next sequence differs from the projection's: memory and log disagree.
        CoreError::Sequence { .. } => false,
        // e.g. preallocation hit ENOSPC before the record was written: the WAL stays usable,
        // and says so by not having failed.
        CoreError::Io { .. } => wal.failure().is_none(),
        _ => false,
    }
}

/// Events in a record beyond which [`Authority::try_submit`] gives it back: about as long
/// as Python's own GIL switch interval (5 ms) to apply.
pub const LONG_RECORD_EVENTS: usize = 8192;

/// Whether applying `events` may take long: a Prune (O(runs and tasks removed): ~3 us each,
/// a second per 300k), a TaskCancel (O(the task's runs): ~20 us each), or a very large
/// record. [`Authority::try_submit`] gives such a record back, so that the binding releases
/// the GIL for it: kept, it froze every other Python thread of the process — handlers, the
/// dispatch loop, an event loop — for the whole apply.
pub fn long_record(events: &[Event]) -> bool {
    events.len() > LONG_RECORD_EVENTS
        || events
            .iter()
            .any(|e| matches!(e, Event::Prune { .. } | Event::TaskCancel { .. }))
}

impl Authority {
    /// An authority over an open WAL writer and the projection of exactly that log.
    ///
    /// Refuses a projection whose latest sequence is not the log's last one: they would
    /// describe different histories (recovery, [`crate::recovery::bootstrap`], builds a
    /// matching pair).
    pub fn new(
        wal: Arc<WalWriter>,
        mut p: Projection,
        snapshot_dir: Option<PathBuf>,
        opts: AuthorityOptions,
    ) -> Result<Self> {
        opts.validate()?;
        wal.check_process()?;
        if let Some(cause) = wal.failure() {
            return Err(CoreError::Failed { cause });
        }
        let wal_last = wal.next_sequence().saturating_sub(1);
        if p.latest_sequence() != wal_last {
            return Err(CoreError::InvalidArgument(format!(
                "the projection is at sequence {} but the WAL in {} ends at {wal_last}: they \
                 describe different histories; open the data directory with \
                 actionqueue.storage.recovery.bootstrap(), which rebuilds the state from \
                 snapshot + log",
                p.latest_sequence(),
                wal.dir().display()
            )));
        }
        // Terminal records move to the cold store in small batches as they finish, so a
        // snapshot capture (under the lock) never has a backlog to freeze.
        p.set_auto_freeze(true)?;
        Ok(Self {
            wal,
            snapshot_dir,
            opts,
            inner: Mutex::new(Inner {
                p,
                failed: None,
                closed: false,
                stats: AuthorityStats::default(),
                pending: None,
                hot_at_capture: 0,
            }),
            writer: Mutex::new(()),
        })
    }

    pub fn wal(&self) -> &WalWriter {
        &self.wal
    }

    pub fn snapshot_dir(&self) -> Option<&Path> {
        self.snapshot_dir.as_deref()
    }

    pub fn options(&self) -> &AuthorityOptions {
        &self.opts
    }

    /// Validates, appends and applies `events` as one atomic record; with Immediate
    /// durability, returns once the record is on stable storage. `expected_first`, when
    /// given, must be the next sequence ([`CoreError::Sequence`], nothing written).
    pub fn submit(
        &self,
        expected_first: Option<u64>,
        events: &[Event],
        durability: Durability,
    ) -> Result<Appended> {
        self.submit_prepared(expected_first, self.prepare(events.to_vec()), durability)
    }

    /// [`submit`](Self::submit) taking the events by value (what the projection keeps is
    /// moved in, not cloned).
    pub fn submit_owned(
        &self,
        expected_first: Option<u64>,
        events: Vec<Event>,
        durability: Durability,
    ) -> Result<Appended> {
        self.submit_prepared(expected_first, self.prepare(events), durability)
    }

    /// Encodes a record for [`submit_prepared`](Self::submit_prepared) without any lock (the
    /// encoding does not depend on the sequence; the WAL fills that in at append).
    pub fn prepare(&self, events: Vec<Event>) -> Prepared {
        let enc = self.wal.encode(&events);
        Prepared { events, enc }
    }

    /// Submits a [`prepare`](Self::prepare)d record (as [`submit`](Self::submit)).
    pub fn submit_prepared(
        &self,
        expected_first: Option<u64>,
        record: Prepared,
        durability: Durability,
    ) -> Result<Appended> {
        let appended = self.append_prepared(expected_first, record, durability)?;
        self.make_durable(appended, durability)
    }

    /// [`submit_prepared`](Self::submit_prepared) without the wait for durability: validated,
    /// appended and applied when it returns. With Immediate `durability` the record may be
    /// held for the next group sync (see [`WalWriter::append_encoded`]): the caller must then
    /// wait for it ([`wait_durable`](Self::wait_durable)).
    pub fn append_prepared(
        &self,
        expected_first: Option<u64>,
        record: Prepared,
        durability: Durability,
    ) -> Result<Appended> {
        self.check_process()?;
        let (appended, job) = {
            let mut g = lock(&self.inner);
            let a = self.submit_locked(&mut g, expected_first, record, durability)?;
            (a, g.pending.take())
        };
        self.write_pending(job);
        Ok(appended)
    }

    /// [`submit_prepared`](Self::submit_prepared) without waiting for a sync, when the lock
    /// is free right now and no automatic snapshot is due; gives the record back otherwise
    /// (nothing done). Lets the binding keep the GIL for a short uncontended submit — on an
    /// event-loop thread, releasing it mid-submit hands it to the completer thread and costs a
    /// GIL round trip per commit — and release it for anything that may block (a held lock, a
    /// snapshot), or that takes long to apply ([`long_record`]). With Immediate
    /// `durability` the record may be held for the next group sync
    /// (see [`WalWriter::append_encoded`]): the caller must then wait for it
    /// ([`wait_durable`](Self::wait_durable)).
    pub fn try_submit(
        &self,
        expected_first: Option<u64>,
        record: Prepared,
        durability: Durability,
    ) -> std::result::Result<Result<Appended>, Prepared> {
        if let Err(e) = self.check_process() {
            return Ok(Err(e));
        }
        if long_record(&record.events) {
            return Err(record);
        }
        let mut g = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(record),
        };
        if self.snapshot_due(&g, record.events.len() as u64) {
            return Err(record);
        }
        Ok(self.submit_locked(&mut g, expected_first, record, durability))
    }

    /// Whether an automatic snapshot is due once `adding` more events are applied: after
    /// `snapshot_every` events, or — when the last capture encoded more live records than
    /// that — after as many events as it encoded. A capture runs under the lock and costs
    /// O(live records) (finished ones are frozen as they finish, live ones are encoded): with
    /// 200k live tasks, one every 100k events halved the runtime's throughput. Spacing them by
    /// the last capture's size keeps that to about one record encoded per event applied (a
    /// growing queue gets snapshots at doubling intervals), and recovery replays at most as
    /// many events after the snapshot as the snapshot held records.
    fn snapshot_due(&self, g: &Inner, adding: u64) -> bool {
        let every = self.opts.snapshot_every;
        if every == 0 || self.snapshot_dir.is_none() {
            return false;
        }
        g.stats.events_since_snapshot + adding >= every.max(g.hot_at_capture)
    }

    /// Submits a Prune of terminal runs whose last change is before `before` (and of finished
    /// tasks left empty); returns what it removed.
    pub fn prune(
        &self,
        before: Millis,
        at: Millis,
        durability: Durability,
    ) -> Result<(Appended, PruneStats)> {
        self.check_process()?;
        let (appended, stats, job) = {
            let mut g = lock(&self.inner);
            let record = self.prepare(vec![Event::Prune { before, at }]);
            let a = self.submit_locked(&mut g, None, record, durability)?;
            (a, g.p.last_prune(), g.pending.take())
        };
        self.write_pending(job);
        Ok((self.make_durable(appended, durability)?, stats))
    }

    /// Prunes all but the `keep` most recently finished terminal runs (see
    /// [`Projection::prune_cutoff_keeping`]); the cutoff is computed and submitted under one
    /// lock, so no other command slips in between. `None` when there is nothing to prune.
    pub fn prune_keeping(
        &self,
        keep: usize,
        at: Millis,
        durability: Durability,
    ) -> Result<Option<(Appended, PruneStats, Millis)>> {
        self.check_process()?;
        let (appended, stats, before, job) = {
            let mut g = lock(&self.inner);
            self.usable(&mut g)?;
            let Some(before) = g.p.prune_cutoff_keeping(keep) else {
                return Ok(None);
            };
            let record = self.prepare(vec![Event::Prune { before, at }]);
            let a = self.submit_locked(&mut g, None, record, durability)?;
            (a, g.p.last_prune(), before, g.pending.take())
        };
        self.write_pending(job);
        Ok(Some((
            self.make_durable(appended, durability)?,
            stats,
            before,
        )))
    }

    fn submit_locked(
        &self,
        g: &mut Inner,
        expected_first: Option<u64>,
        record: Prepared,
        durability: Durability,
    ) -> Result<Appended> {
        self.usable(g)?;
        let first = g.p.next_sequence();
        if let Some(got) = expected_first {
            if got != first {
                g.stats.rejected += 1;
                return Err(CoreError::Sequence {
                    expected: first,
                    got,
                });
            }
        }
        let Prepared { events, enc } = record;
        let count = events.len();
        // Validation is the reducer's own dry run (SPEC §11.1): nothing that replay would
        // refuse ever reaches the log. The dry run and the apply are one pass: the record is
        // applied tentatively (replay's code; a refusal rolls itself back), appended, and
        // kept — or taken back through its undo log if the append fails. Nobody sees the
        // tentative state: the mutex is held throughout. The record was encoded before the
        // lock, so the events themselves go to the projection (moved, not cloned). A Prune
        // cannot be undone, so its record takes the two-pass path.
        let tentative = !events.iter().any(|e| matches!(e, Event::Prune { .. }));
        let checked = if tentative {
            g.p.apply_tentative_owned(first, events).map(|()| None)
        } else {
            g.p.check(first, &events).map(|()| Some(events))
        };
        let two_pass = match checked {
            Ok(kept) => kept,
            Err(e) => {
                g.stats.rejected += 1;
                return Err(e);
            }
        };
        // An encoding error (record too large) is reported here, after the reducer's verdict,
        // as when the WAL encoded under the lock.
        let appended = match enc
            .and_then(|mut rec| self.wal.append_encoded(&mut rec, Some(first), durability))
        {
            Ok(a) => a,
            Err(e) => {
                if tentative {
                    g.p.abort_tentative();
                }
                if nothing_written(&e, &self.wal) {
                    g.stats.rejected += 1;
                    return Err(e);
                }
                return Err(Self::fail(g, e));
            }
        };
        if let Some(events) = two_pass {
            if let Err(e) = g.p.apply(first, &events) {
                // `check` accepted exactly this record a moment ago: this is a bug, and the log
                // now holds a record memory lacks. Stop rather than diverge.
                return Err(Self::fail(
                    g,
                    CoreError::Rejected(format!(
                        "internal error: record {first} was validated and appended but could \
                         not be applied ({e}); reopen the queue to rebuild the state from the \
                         log"
                    )),
                ));
            }
        } else {
            g.p.commit_tentative_count(first, count);
        }
        let events = count;
        g.stats.submits += 1;
        g.stats.events += events as u64;
        g.stats.events_since_snapshot += events as u64;
        if self.snapshot_due(g, 0) {
            // The submit succeeded whatever happens here: a snapshot problem is recorded and
            // retried at the next interval (the log is intact, recovery just replays more).
            // The file is written by the caller once the lock is released (`write_pending`).
            match self.capture(g) {
                Ok(job) => g.pending = Some(job),
                Err(e) => {
                    g.stats.last_snapshot_error = Some(e.to_string());
                    g.stats.events_since_snapshot = 0;
                }
            }
        }
        Ok(appended)
    }

    /// Waits until every event `<= seq` (already submitted) is durable, sharing the WAL's
    /// group commit; a sync failure fails the authority, as for an Immediate submit.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        self.check_process()?;
        self.make_durable(
            Appended {
                first_seq: seq,
                last_seq: seq,
            },
            Durability::Immediate,
        )
        .map(|_| ())
    }

    fn make_durable(&self, appended: Appended, durability: Durability) -> Result<Appended> {
        if durability == Durability::Immediate {
            if let Err(e) = self.wal.wait_durable(appended.last_seq) {
                // The record is in memory (others may have acted on it) but not durable: the
                // authority must not go on as if it were.
                let mut g = lock(&self.inner);
                return Err(Self::fail(&mut g, e));
            }
        }
        Ok(appended)
    }

    /// Enters the failed state (the first cause wins) and returns the error to report now.
    fn fail(g: &mut Inner, e: CoreError) -> CoreError {
        if g.failed.is_none() {
            g.failed = Some(e.to_string());
        }
        e
    }

    /// Refuses every call from a process forked after the WAL was opened
    /// ([`CoreError::ForkedProcess`]), before any lock is taken (one a parent thread held at
    /// the fork is never released in the child). Queries are refused too: the child's copy
    /// of the state stops at the fork while the parent's log goes on.
    #[inline]
    fn check_process(&self) -> Result<()> {
        self.wal.check_process().map_err(|e| match e {
            CoreError::ForkedProcess {
                path,
                owner_pid,
                pid,
                ..
            } => CoreError::ForkedProcess {
                what: "queue",
                path,
                owner_pid,
                pid,
            },
            e => e,
        })
    }

    fn usable(&self, g: &mut Inner) -> Result<()> {
        if let Some(cause) = &g.failed {
            return Err(CoreError::Failed {
                cause: cause.clone(),
            });
        }
        if g.closed {
            return Err(CoreError::Closed("mutation authority"));
        }
        // The WAL can also fail on its own (background sync): adopt its cause.
        if let Some(cause) = self.wal.failure() {
            g.failed = Some(cause.clone());
            return Err(CoreError::Failed { cause });
        }
        Ok(())
    }

    /// Runs `f` on the projection under the lock (refused when failed or closed). Keep `f`
    /// short and copy out what is needed: submitters wait meanwhile.
    pub fn read<R>(&self, f: impl FnOnce(&Projection) -> R) -> Result<R> {
        self.check_process()?;
        let mut g = lock(&self.inner);
        self.usable(&mut g)?;
        Ok(f(&g.p))
    }

    /// [`read`](Self::read) when the lock is free right now; `None` when it is taken (the
    /// binding then releases the GIL before blocking).
    pub fn try_read<R>(&self, f: impl FnOnce(&Projection) -> R) -> Option<Result<R>> {
        if let Err(e) = self.check_process() {
            return Some(Err(e));
        }
        let mut g = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(self.usable(&mut g).map(|()| f(&g.p)))
    }

    /// The first failure cause, or `None` while healthy (in a forked child: why it cannot be
    /// used there).
    pub fn failure(&self) -> Option<String> {
        if let Err(e) = self.check_process() {
            return Some(e.to_string());
        }
        let mut g = lock(&self.inner);
        match self.usable(&mut g) {
            Err(CoreError::Failed { cause }) => Some(cause),
            _ => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.inner).closed
    }

    pub fn stats(&self) -> AuthorityStats {
        lock(&self.inner).stats.clone()
    }

    /// Makes every submitted record durable.
    pub fn flush(&self) -> Result<()> {
        self.check_process()?;
        {
            let mut g = lock(&self.inner);
            self.usable(&mut g)?;
        }
        self.wal.flush().map_err(|e| {
            let mut g = lock(&self.inner);
            Self::fail(&mut g, e)
        })
    }

    /// Takes a snapshot now (and checkpoints). `None` without a snapshot directory.
    pub fn snapshot(&self) -> Result<Option<SnapshotInfo>> {
        self.check_process()?;
        let job = {
            let mut g = lock(&self.inner);
            self.usable(&mut g)?;
            if self.snapshot_dir.is_none() {
                return Ok(None);
            }
            self.capture(&mut g)?
        };
        let res = self.write_job(job);
        let mut g = lock(&self.inner);
        self.record(&mut g, res).map(Some)
    }

    /// Captures a snapshot under the lock (the only part of a snapshot that stops writers).
    fn capture(&self, g: &mut Inner) -> Result<SnapJob> {
        let started = Instant::now();
        let cap = snapshot::Capture::take(&mut g.p)?.bound_to(self.wal.wal_id());
        g.stats.events_since_snapshot = 0;
        g.hot_at_capture = g.p.hot_len() as u64;
        Ok(SnapJob {
            cap,
            started,
            locked_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        })
    }

    /// Writes an automatic snapshot a submit captured (errors are recorded in the stats).
    fn write_pending(&self, job: Option<SnapJob>) {
        if let Some(job) = job {
            let res = self.write_job(job);
            let mut g = lock(&self.inner);
            let _ = self.record(&mut g, res);
        }
    }

    /// Flush, write, checkpoint; without the authority's lock. The flush comes first so the
    /// snapshot never covers a record the log could still lose (it syncs everything appended,
    /// which includes everything captured): a checkpoint may then delete the segments before
    /// it.
    fn write_job(&self, job: SnapJob) -> std::result::Result<SnapshotInfo, SnapError> {
        let dir = self.snapshot_dir.as_deref().ok_or_else(|| {
            SnapError::Soft(CoreError::InvalidArgument("no snapshot directory".into()))
        })?;
        let _w = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.wal.flush().map_err(SnapError::Fatal)?;
        let (file, bytes) = snapshot::write_capture(dir, &job.cap).map_err(SnapError::Soft)?;
        let body = bytes.saturating_sub(snapshot::HEADER_LEN as u64);
        if body > self.opts.max_snapshot_size {
            // Opening would skip it (too large to read): keeping it, and above all deleting the
            // log behind it, would leave a directory that only opens with a larger limit.
            let _ = std::fs::remove_file(&file.path);
            return Err(SnapError::Soft(CoreError::SnapshotCorrupt {
                path: file.path,
                reason: format!(
                    "its body of {body} bytes exceeds max_snapshot_size ({} bytes), so an open \
                     would skip it: not kept, and no log segment was deleted (the log is \
                     complete); raise max_snapshot_size to snapshot a state this large",
                    self.opts.max_snapshot_size
                ),
            }));
        }
        let millis = u64::try_from(job.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut info = SnapshotInfo {
            path: file.path,
            sequence: file.sequence,
            bytes,
            millis,
            locked_micros: job.locked_micros,
            segments_removed: 0,
            snapshots_removed: 0,
        };
        // The snapshot is durable: a checkpoint failure leaves it valid (and is reported).
        match self.checkpoint(dir) {
            Ok((segments, snapshots)) => {
                info.segments_removed = segments;
                info.snapshots_removed = snapshots;
                Ok(info)
            }
            Err(e) => Err(SnapError::Soft(e)),
        }
    }

    /// Records a snapshot's outcome in the stats (and fails the authority on a flush error).
    fn record(
        &self,
        g: &mut Inner,
        res: std::result::Result<SnapshotInfo, SnapError>,
    ) -> Result<SnapshotInfo> {
        match res {
            Ok(info) => {
                g.stats.snapshots += 1;
                g.stats.last_snapshot = Some(info.clone());
                g.stats.last_snapshot_error = None;
                Ok(info)
            }
            Err(SnapError::Fatal(e)) => Err(Self::fail(g, e)),
            Err(SnapError::Soft(e)) => {
                g.stats.last_snapshot_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Keeps the newest `keep_snapshots` snapshots and deletes the WAL segments wholly before
    /// the oldest of them, so any kept snapshot plus the log still rebuilds the state.
    ///
    /// Only this log's snapshots count: one newer than the log (the log never shrinks under a
    /// running authority, so it was put there from elsewhere — another queue's, or one of a
    /// history cut since) is set aside as `.stale`, as `bootstrap` does at open. Counted, it
    /// made the checkpoint delete the snapshot just written and every sealed segment up to its
    /// sequence (with `keep_snapshots = 1`: nothing left to rebuild the state from); left in
    /// place, it would be loaded at the next open once the log had grown past it.
    fn checkpoint(&self, dir: &Path) -> Result<(usize, usize)> {
        let last = self.wal.next_sequence().saturating_sub(1);
        let mut files = snapshot::list(dir)?;
        let ours = self.wal.wal_id();
        let mut own = Vec::with_capacity(files.len());
        for f in files.drain(..) {
            // Newer than the log, or naming another log: not this log's state (see bootstrap).
            let theirs = snapshot::log_id_of(&f.path)?;
            if f.sequence > last || theirs.is_some_and(|id| id != ours) {
                snapshot::set_aside(&f)?;
            } else {
                own.push(f);
            }
        }
        let files = own;
        let Some(oldest_kept) = files
            .get(..self.opts.keep_snapshots.min(files.len()))
            .and_then(|kept| kept.last())
            .map(|f| f.sequence)
        else {
            return Ok((0, 0));
        };
        let snapshots = snapshot::remove_older(dir, oldest_kept)?;
        let segments = self.wal.remove_segments_through(oldest_kept)?.len();
        Ok((segments, snapshots))
    }

    /// Flushes, optionally snapshots, and closes the WAL (releasing the directory lock), then
    /// drops the in-memory state: every call is refused from then on, so it goes at the close,
    /// not when the last reference to the authority does (a closed queue an application still
    /// holds kept all of it, a mapped snapshot that a checkpoint had deleted included, whose
    /// disk space came back only then). Closing a failed authority only releases resources.
    /// Idempotent. In a forked child it only forgets the inherited handles: no flush,
    /// snapshot or checkpoint (see [`crate::fork`]).
    pub fn close(&self) -> Result<()> {
        if !self.wal.in_owner_process() {
            // Only tried: a lock a parent thread held at the fork is never released here.
            let g = match self.inner.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut g) = g {
                g.closed = true;
            }
            return self.wal.close();
        }
        let mut g = lock(&self.inner);
        if g.closed {
            return Ok(());
        }
        g.closed = true;
        let result = self.close_locked(&mut g);
        let state = std::mem::take(&mut g.p);
        g.pending = None;
        drop(g);
        drop(state);
        result
    }

    /// [`close`](Self::close) once the authority is marked closed: the final snapshot and the
    /// WAL's close.
    fn close_locked(&self, g: &mut Inner) -> Result<()> {
        if g.failed.is_some() || self.wal.failure().is_some() {
            let _ = self.wal.close();
            return Ok(());
        }
        let mut result = Ok(());
        if self.opts.snapshot_on_close
            && self.snapshot_dir.is_some()
            && g.stats.events_since_snapshot > 0
        {
            // A failed snapshot at close loses nothing (the log is complete); report it after
            // the log is closed properly. (Lock order: `inner` then `writer`; writers never
            // take `inner` while holding `writer`.)
            let res = self.capture(g).map(|job| self.write_job(job));
            let res = match res {
                Ok(r) => self.record(g, r),
                Err(e) => Err(e),
            };
            if let Err(e) = res {
                result = Err(e);
            }
        }
        let closed = self.wal.close();
        if let Err(e) = closed {
            Self::fail(
                g,
                CoreError::Failed {
                    cause: e.to_string(),
                },
            );
            return Err(e);
        }
        result
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
