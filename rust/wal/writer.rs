//! The WAL writer: one record per append, group commit, rotation, preallocation.
//!
//! ```text
//!  appender threads                          group commit
//!  ----------------                          ------------
//!  encode + crc (no lock)                    first waiter with no sync in flight = leader:
//!  lock state: seq, header,                    under the state lock: one pwrite of the
//!    Deferred: pwrite (held bytes first)         held bytes, read the last sequence,
//!    Immediate: copy into the held buffer      fdatasync with no lock held (appends go on),
//!  unlock                                      synced = that seq, wake the covered waiters
//!  Deferred: return
//!  Immediate: wait until synced >= my last
//! ```
//!
//! An Immediate record is not written by its appender: its bytes are *held* in a buffer and
//! the group's leader writes everything held in one `pwrite` just before its `fdatasync`. A
//! buffered `pwrite` costs ~6-7 µs of kernel CPU here (ext4), under the state lock and, for
//! the authority, under its lock too; 32 of them in a row took longer than the sync they
//! shared. Nobody has been told such a record is done until that sync returns, so holding it
//! in user space loses nothing a crash could not. Order is kept: held bytes always precede
//! anything written after them (a Deferred append writes them first, then its own record),
//! so the file never has a hole, and the file order is the append order.
//!
//! Space is preallocated by writing zeros ahead of the write position (in `preallocate`-sized
//! chunks), so a steady-state `fdatasync` flushes data into already-allocated blocks without a
//! size change (SPEC §10: ≈110 µs instead of ≈180 µs), and unwritten space reads as the zero
//! end-of-records marker. A write or sync error moves the writer into a failed state for good:
//! every later call returns [`CoreError::Failed`] naming the first cause; a failed `fdatasync`
//! is never retried as if it had succeeded (the kernel may have dropped the dirty pages).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use super::dir::{self, segment_name, TMP_SUFFIX};
use super::encoded::EncodedRecord;
use super::format::{
    RecordHeader, RecordKind, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::fs::{StdFs, WalFile, WalFs};
use super::lock::DirLock;
use super::scan::{read_segment_header, Item, Scanner};
use crate::error::CorruptionReason;
use crate::event::Event;
use crate::fork::ProcessOwner;
use crate::{CoreError, Result, DEFAULT_MAX_RECORD_SIZE, FORMAT_VERSION};

pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
pub const DEFAULT_PREALLOCATE: u64 = 4 * 1024 * 1024;
/// The last sequence an event can get: one below `u64::MAX`, so that the next sequence after
/// it (a segment's or sync mark's `first_seq`, a record's end) is representable too.
pub const MAX_SEQUENCE: u64 = u64::MAX - 1;
/// Largest `preallocate` step accepted: the zeros are written, so an unbounded step would fill
/// the disk. (A step larger than `segment_size` is used as `segment_size`.)
pub const MAX_PREALLOCATE: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Returns only after the record is on stable storage (`fdatasync`).
    Immediate,
    /// Returns after the write; synced by the next Immediate append, `flush`, `close` or the
    /// background sync.
    Deferred,
}

#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment rotates when the next record would take it past this size.
    pub segment_size: u64,
    /// Largest record payload accepted when writing and believed when reading.
    pub max_record_size: u64,
    /// Zero-filled space written ahead of the write position, in bytes per step (0: none).
    pub preallocate: u64,
    /// When set, a background thread syncs Deferred appends at this interval.
    pub sync_interval: Option<Duration>,
    /// First sequence of a log that has no segments yet.
    pub start_sequence: u64,
}

impl WalOptions {
    /// Refuses settings the writer cannot work with (what `open` checks first), so a caller
    /// can check them before it creates anything.
    pub fn validate(&self) -> Result<()> {
        validate(self)
    }
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            preallocate: DEFAULT_PREALLOCATE,
            sync_interval: None,
            start_sequence: 1,
        }
    }
}

/// What recovery at open found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// A crash tail was cut off.
    pub truncated: bool,
    /// The segment that was cut (or removed).
    pub segment: Option<PathBuf>,
    /// Where it was cut.
    pub offset: u64,
    /// Bytes removed from that segment (including torn bytes and zero padding after them).
    pub bytes_dropped: u64,
    /// Intact records found after the damage that were never durable (power loss kept a later
    /// page but not an earlier one); they are cut off with the tail.
    pub records_dropped: u64,
    pub events_dropped: u64,
    /// Why the tail was judged torn.
    pub reason: Option<String>,
    /// Last sequence in the log after recovery (`start_sequence - 1` for an empty log).
    pub last_sequence: u64,
    /// Files removed: torn segments, leftover `*.wal.tmp`.
    pub removed_files: Vec<PathBuf>,
}

/// Sequences given to one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Records appended (one per `append` call).
    pub appends: u64,
    pub events: u64,
    /// Record bytes written (headers included, zero padding excluded).
    pub bytes: u64,
    /// `fdatasync` calls on segments.
    pub syncs: u64,
}

struct State {
    file: Option<Arc<dyn WalFile>>,
    seg_path: PathBuf,
    pos: u64,
    zeroed_end: u64,
    next_seq: u64,
    dirty: bool,
    /// Immediate records appended but not written yet: they belong at `pos - held.len()`
    /// and are written, in one `pwrite`, before anything else is (the next sync, a Deferred
    /// append, a rotation, the close).
    held: Vec<u8>,
    lock: Option<DirLock>,
}

struct SyncState {
    synced: u64,
    syncing: bool,
    failed: Option<String>,
    /// Parked waiters: `(sequence they need durable, their thread)`. The leader of a group
    /// sync wakes exactly the ones its sync covered, plus one to lead the next sync, instead of
    /// waking everyone to re-lock and re-check (a storm of futex wake-ups and lock hand-offs
    /// that on two cores costs more than the sync).
    waiters: Vec<(u64, Thread)>,
}

impl SyncState {
    /// Removes and returns the waiters to wake after `synced` moved (or the writer failed):
    /// those now covered, then (when a sync is not already in flight) the first uncovered one,
    /// which will lead the next sync.
    fn take_wakeable(&mut self) -> Vec<Thread> {
        let synced = self.synced;
        let all = self.failed.is_some();
        let mut wake = Vec::new();
        let mut leader: Option<Thread> = None;
        let need_leader = !self.syncing;
        self.waiters.retain(|(target, th)| {
            if all || *target <= synced {
                wake.push(th.clone());
                false
            } else if need_leader && leader.is_none() {
                leader = Some(th.clone());
                false
            } else {
                true
            }
        });
        // The next leader first: its sync starts while the covered waiters return.
        if let Some(l) = leader {
            wake.insert(0, l);
        }
        wake
    }
}

struct Shared {
    dir: PathBuf,
    /// The process that opened the writer: a forked child's copy refuses every call and only
    /// forgets its handles at close (see [`crate::fork`]).
    owner: ProcessOwner,
    fs: Arc<dyn WalFs>,
    opts: WalOptions,
    wal_id: u64,
    state: Mutex<State>,
    sync: Mutex<SyncState>,
    /// Signalled after an append while a leader holds back its sync (adaptive commit delay,
    /// `delaying` set): it wakes up to see whether the appenders it expects have arrived.
    append_cv: Condvar,
    delaying: AtomicBool,
    /// Appends covered by the previous group sync, and its duration: the adaptive delay.
    last_group: AtomicU64,
    last_sync_nanos: AtomicU64,
    appends_at_last_sync: AtomicU64,
    /// `SyncState::syncing`, readable without the lock (for followers spinning on a sync).
    sync_in_flight: AtomicBool,
    synced_seq: AtomicU64,
    failed: AtomicBool,
    closed: AtomicBool,
    appends: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    syncs: AtomicU64,
    stop: Mutex<bool>,
    stop_cv: Condvar,
}

/// The single writer of a WAL directory. All methods take `&self` and are thread-safe.
pub struct WalWriter {
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
}

static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

/// Followers spin (yield) instead of parking while the previous group sync covered at least
/// this many appends (see `Shared::spin_while_syncing`).
const SPIN_MIN_GROUP: u64 = 8;
/// A follower spins at most this long (or the last sync's duration, if shorter), then parks.
const SPIN_MAX_NANOS: u64 = 400_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lock when it is free now (poisoned or not), else `None`.
fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

impl WalWriter {
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Self> {
        Self::open_with_fs(dir, opts, Arc::new(StdFs))
    }

    /// Opens (creating if needed) the WAL in `dir`, takes its lock, and recovers its tail.
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        opts: WalOptions,
        fs: Arc<dyn WalFs>,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        validate(&opts)?;
        // Zeros past the point where the segment rotates would only be trimmed off again.
        let opts = WalOptions {
            preallocate: opts.preallocate.min(opts.segment_size),
            ..opts
        };
        let owner = ProcessOwner::current();
        if !dir.exists() {
            crate::fsguard::create_private_dir(&dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs.sync_dir(parent)
                    .map_err(|e| CoreError::io("fsync dir", parent, e))?;
            }
        } else if !dir.is_dir() {
            return Err(CoreError::UnexpectedFile {
                path: dir,
                what: "the WAL path exists and is not a directory".into(),
            });
        }
        let dir_lock = DirLock::acquire(&dir)?;
        let recovered = recover(&dir, &opts, fs.as_ref())?;
        let Recovered {
            mut report,
            wal_id,
            last,
        } = recovered;
        let (file, seg_path, pos, zeroed_end, next_seq) = match last {
            Some(l) => {
                let file = fs
                    .open_rw(&l.path)
                    .map_err(|e| CoreError::io("open", &l.path, e))?;
                // Certify what recovery read: it may still sit in the page cache of a
                // process that crashed; after this sync, new records may claim it durable.
                file.sync_data()
                    .map_err(|e| CoreError::io("fdatasync", &l.path, e))?;
                (file, l.path, l.end, l.zeroed_end, l.next_seq)
            }
            None => {
                let first = report.last_sequence.saturating_add(1);
                let (file, path) = create_segment(&dir, fs.as_ref(), &opts, wal_id, first)?;
                let zeroed = SEGMENT_HEADER_LEN as u64 + opts.preallocate;
                (file, path, SEGMENT_HEADER_LEN as u64, zeroed, first)
            }
        };
        report.last_sequence = next_seq.saturating_sub(1);
        let synced = next_seq.saturating_sub(1);
        let shared = Arc::new(Shared {
            dir,
            owner,
            fs,
            wal_id,
            state: Mutex::new(State {
                file: Some(file),
                seg_path,
                pos,
                zeroed_end,
                next_seq,
                dirty: false,
                held: Vec::new(),
                lock: Some(dir_lock),
            }),
            sync: Mutex::new(SyncState {
                synced,
                syncing: false,
                failed: None,
                waiters: Vec::new(),
            }),
            append_cv: Condvar::new(),
            delaying: AtomicBool::new(false),
            last_group: AtomicU64::new(1),
            last_sync_nanos: AtomicU64::new(0),
            sync_in_flight: AtomicBool::new(false),
            appends_at_last_sync: AtomicU64::new(0),
            synced_seq: AtomicU64::new(synced),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            appends: AtomicU64::new(0),
            events: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            syncs: AtomicU64::new(1),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            opts,
        });
        let background = shared.opts.sync_interval.map(|every| {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("actionqueue-wal-sync".into())
                .spawn(move || s.background_sync(every))
        });
        let background = match background {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => return Err(CoreError::io("spawn sync thread", &shared.dir, e)),
            None => None,
        };
        Ok(Self {
            shared,
            background: Mutex::new(background),
            report,
        })
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn wal_id(&self) -> u64 {
        self.shared.wal_id
    }

    pub fn options(&self) -> &WalOptions {
        &self.shared.opts
    }

    /// The sequence the next appended event will get.
    pub fn next_sequence(&self) -> u64 {
        lock(&self.shared.state).next_seq
    }

    /// Every event with a sequence `<=` this is on stable storage.
    pub fn synced_sequence(&self) -> u64 {
        self.shared.synced_seq.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> WalStats {
        let s = &self.shared;
        WalStats {
            appends: s.appends.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
        }
    }

    /// Appends `events` as one atomic record with consecutive sequences. `expected_first`, when
    /// given, must equal the next sequence ([`CoreError::Sequence`] otherwise, nothing written).
    pub fn append(
        &self,
        events: &[Event],
        durability: Durability,
        expected_first: Option<u64>,
    ) -> Result<Appended> {
        let mut rec = EncodedRecord::encode(events, self.shared.opts.max_record_size)?;
        let appended = self.append_encoded(&mut rec, expected_first, durability)?;
        if durability == Durability::Immediate {
            self.shared.wait_durable(appended.last_seq)?;
        }
        Ok(appended)
    }

    /// Encodes `events` as one record for [`append_encoded`](Self::append_encoded), with this
    /// log's record size limit; needs no lock (encode before taking one).
    pub fn encode(&self, events: &[Event]) -> Result<EncodedRecord> {
        EncodedRecord::encode(events, self.shared.opts.max_record_size)
    }

    /// Appends a record encoded by [`encode`](Self::encode) without waiting for a sync: the
    /// header gets its sequence here. `durability` is the one the caller wants: with
    /// Deferred, the record is written (in the OS) when this returns; with Immediate, its
    /// bytes may be held until the sync that makes them durable, so the caller must follow
    /// with [`wait_durable`](Self::wait_durable) (or `flush`, or `close`).
    pub fn append_encoded(
        &self,
        rec: &mut EncodedRecord,
        expected_first: Option<u64>,
        durability: Durability,
    ) -> Result<Appended> {
        let s = &self.shared;
        s.check_process()?;
        let mut st = lock(&s.state);
        s.check_usable()?;
        if let Some(got) = expected_first {
            if got != st.next_seq {
                return Err(CoreError::Sequence {
                    expected: st.next_seq,
                    got,
                });
            }
        }
        let appended = s.write_record(&mut st, rec, durability)?;
        drop(st);
        s.appended();
        Ok(appended)
    }

    /// Appends each of `batches` as its own atomic record, in order and with consecutive
    /// sequences (no other append comes between them); returns the first and last sequence
    /// written (`None` for no batches). Everything is validated first: an empty batch, one
    /// too large, or a total past the last sequence is refused with nothing written. An I/O
    /// error part-way may leave the earlier records written (each whole), under the writer's
    /// usual failure rules; `next_sequence` then says how far it got.
    pub fn append_many(
        &self,
        batches: &[Vec<Event>],
        durability: Durability,
    ) -> Result<Option<Appended>> {
        let mut recs = batches
            .iter()
            .map(|b| self.encode(b))
            .collect::<Result<Vec<_>>>()?;
        let Some(appended) = self.append_encoded_many(&mut recs, durability)? else {
            return Ok(None);
        };
        if durability == Durability::Immediate {
            self.shared.wait_durable(appended.last_seq)?;
        }
        Ok(Some(appended))
    }

    /// [`append_many`](Self::append_many) for encoded records, without waiting for a sync
    /// (`durability` as for [`append_encoded`](Self::append_encoded)).
    pub fn append_encoded_many(
        &self,
        recs: &mut [EncodedRecord],
        durability: Durability,
    ) -> Result<Option<Appended>> {
        let s = &self.shared;
        let total: u64 = recs.iter().map(|r| u64::from(r.count)).sum();
        s.check_process()?;
        let mut st = lock(&s.state);
        s.check_usable()?;
        let Some(first_seq) = recs.first().map(|_| st.next_seq) else {
            return Ok(None);
        };
        last_sequence(first_seq, total)?;
        let mut last_seq = first_seq;
        for rec in recs.iter_mut() {
            last_seq = s.write_record(&mut st, rec, durability)?.last_seq;
        }
        drop(st);
        s.appended();
        Ok(Some(Appended {
            first_seq,
            last_seq,
        }))
    }

    /// Waits until every event with a sequence `<= seq` is durable. Concurrent waiters share
    /// one `fdatasync` (group commit): the first waiter with no sync in flight leads a sync of
    /// everything written so far and wakes the others. `seq` must already be appended.
    pub fn wait_durable(&self, seq: u64) -> Result<()> {
        let s = &self.shared;
        s.check_process()?;
        if s.synced_seq.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let written = lock(&s.state).next_seq.saturating_sub(1);
        if seq > written {
            // Waiting for a sequence nobody has written would lead syncs forever.
            return Err(CoreError::InvalidArgument(format!(
                "wait_durable({seq}): only sequences up to {written} have been appended"
            )));
        }
        s.wait_durable(seq)
    }

    /// The first cause of failure once a write or sync has failed (the writer then refuses
    /// every call until reopened), else `None`.
    pub fn failure(&self) -> Option<String> {
        let s = &self.shared;
        if !s.failed.load(Ordering::Acquire) {
            return None;
        }
        Some(
            lock(&s.sync)
                .failed
                .clone()
                .unwrap_or_else(|| "unknown".into()),
        )
    }

    /// Checkpoint: deletes the segments whose every event has a sequence `<= through` (their
    /// state is in a durable snapshot), never the segment being written, then fsyncs the
    /// directory. Returns the removed paths. A segment is wholly covered when the next
    /// segment starts at or before `through + 1`. Runs under the writer's state lock, so no
    /// rotation races with it. A failure leaves the log readable (some old segments may be
    /// left, which is harmless) and does not fail the writer.
    pub fn remove_segments_through(&self, through: u64) -> Result<Vec<PathBuf>> {
        let s = &self.shared;
        s.check_process()?;
        s.check_usable()?;
        let st = lock(&s.state);
        let listing = dir::list(&s.dir)?;
        let mut removed = Vec::new();
        for pair in listing.segments.windows(2) {
            let [seg, next] = pair else { continue };
            if seg.path == st.seg_path || next.first_seq > through.saturating_add(1) {
                break;
            }
            s.fs.remove_file(&seg.path)
                .map_err(|e| CoreError::io("remove", &seg.path, e))?;
            removed.push(seg.path.clone());
        }
        if !removed.is_empty() {
            s.fs.sync_dir(&s.dir)
                .map_err(|e| CoreError::io("fsync dir", &s.dir, e))?;
        }
        drop(st);
        Ok(removed)
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<()> {
        let s = &self.shared;
        s.check_process()?;
        s.check_usable()?;
        let target = lock(&s.state).next_seq.saturating_sub(1);
        s.wait_durable(target)
    }

    /// Syncs, writes a sync mark certifying the whole log durable, and releases the lock.
    /// Closing a failed writer only releases its resources. Idempotent. In a forked child it
    /// only forgets the inherited handles ([`forget_in_child`](Self::forget_in_child)).
    pub fn close(&self) -> Result<()> {
        let s = &self.shared;
        if !s.owner.is_current_strict() {
            self.forget_in_child();
            return Ok(());
        }
        if s.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        {
            *lock(&s.stop) = true;
            s.stop_cv.notify_all();
        }
        if let Some(h) = lock(&self.background).take() {
            let _ = h.join();
        }
        let result = if s.failed.load(Ordering::Acquire) {
            Ok(())
        } else {
            self.finish()
        };
        let mut st = lock(&s.state);
        st.file = None;
        if let Some(l) = st.lock.take() {
            l.release();
        }
        result
    }

    /// Refuses use from a process forked after the writer was opened
    /// ([`CoreError::ForkedProcess`]); one atomic load.
    pub fn check_process(&self) -> Result<()> {
        self.shared.check_process()
    }

    /// Whether this is the process that opened the writer (not a child forked since).
    pub fn in_owner_process(&self) -> bool {
        self.shared.owner.is_current_strict()
    }

    /// Close in a forked child: marks the copy closed and drops this process's descriptors,
    /// touching nothing on disk. No sync, no sync mark (the parent's next record goes where
    /// the child would write it), no `LOCK_UN` (the `flock` belongs to the open file
    /// description shared with the parent: unlocking would release the parent's lock, while
    /// closing a duplicate descriptor leaves it held). The sync thread exists only in the
    /// parent, so it is never joined (that would wait forever). Locks are only tried: one
    /// held by a parent thread at the fork stays held in the child for good, and then the
    /// descriptors are left open (leaked) rather than waited for.
    fn forget_in_child(&self) {
        let s = &self.shared;
        if s.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(mut bg) = try_lock(&self.background) {
            // Dropping a JoinHandle detaches the thread: not even that for a thread that is
            // not there.
            std::mem::forget(bg.take());
        }
        if let Some(mut st) = try_lock(&s.state) {
            st.file = None;
            drop(st.lock.take());
        }
    }

    fn finish(&self) -> Result<()> {
        let s = &self.shared;
        let target = lock(&s.state).next_seq.saturating_sub(1);
        s.wait_durable(target)?;
        let mut st = lock(&s.state);
        if !st.dirty {
            return Ok(());
        }
        // An append that got in before `closed` was set, after the sync above.
        s.write_held(&mut st)?;
        let mut rec = [0u8; RECORD_HEADER_LEN];
        RecordHeader {
            kind: RecordKind::SyncMark,
            payload_len: 0,
            event_count: 0,
            first_seq: st.next_seq,
            durable_through: st.next_seq.saturating_sub(1),
            payload_crc: crc32c::crc32c(&[]),
        }
        .encode_into(&mut rec);
        let end = st.pos + RECORD_HEADER_LEN as u64;
        s.ensure_zeroed(&mut st, end)?;
        let file = st.file.clone().ok_or(CoreError::Closed("WAL writer"))?;
        file.write_all_at(&rec, st.pos)
            .and_then(|()| file.sync_data())
            .map_err(|e| s.fail(CoreError::io("write sync mark", &st.seg_path, e)))?;
        s.syncs.fetch_add(1, Ordering::Relaxed);
        st.pos = end;
        st.dirty = false;
        Ok(())
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Shared {
    /// Appends one record at the next sequence (rotating first when it would not fit):
    /// written now for Deferred (after any held bytes), held for the next sync for Immediate.
    fn write_record(
        &self,
        st: &mut State,
        rec: &mut EncodedRecord,
        durability: Durability,
    ) -> Result<Appended> {
        let (count, payload_len, payload_crc) = (rec.count, rec.payload_len, rec.payload_crc);
        let buf = &mut rec.buf;
        let first_seq = st.next_seq;
        let last_seq = last_sequence(first_seq, u64::from(count))?;
        let record_len = buf.len() as u64;
        if st.pos > SEGMENT_HEADER_LEN as u64 && st.pos + record_len > self.opts.segment_size {
            self.rotate(st).map_err(|e| self.fail(e))?;
        }
        RecordHeader {
            kind: RecordKind::Events,
            payload_len,
            event_count: count,
            first_seq,
            durable_through: self.synced_seq.load(Ordering::Acquire),
            payload_crc,
        }
        .encode_into(buf);
        // Preallocation failing (ENOSPC) leaves only zeros behind: report it, stay usable.
        // Held records get their space here too, so that the leader's write of them only
        // overwrites allocated zeros.
        let need = st.pos + record_len;
        self.ensure_zeroed(st, need)?;
        if durability == Durability::Immediate {
            st.held.extend_from_slice(buf);
        } else {
            self.write_held(st)?;
            let file = st.file.as_ref().ok_or(CoreError::Closed("WAL writer"))?;
            if let Err(e) = file.write_all_at(buf, st.pos) {
                // A partial record may be on disk: never write after it. Reopen recovers.
                return Err(self.fail(CoreError::io("write", &st.seg_path, e)));
            }
        }
        st.pos += record_len;
        st.zeroed_end = st.zeroed_end.max(st.pos);
        st.next_seq = last_seq + 1;
        st.dirty = true;
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.events.fetch_add(u64::from(count), Ordering::Relaxed);
        self.bytes.fetch_add(record_len, Ordering::Relaxed);
        Ok(Appended {
            first_seq,
            last_seq,
        })
    }

    /// Writes the held Immediate records, in one `pwrite`, where they belong (just before
    /// `pos`). A failure fails the writer: those records are in memory already (the
    /// authority applied them), and part of them may be on disk.
    fn write_held(&self, st: &mut State) -> Result<()> {
        if st.held.is_empty() {
            return Ok(());
        }
        let at = st.pos - st.held.len() as u64;
        let file = st.file.as_ref().ok_or(CoreError::Closed("WAL writer"))?;
        if let Err(e) = file.write_all_at(&st.held, at) {
            return Err(self.fail(CoreError::io("write", &st.seg_path, e)));
        }
        st.held.clear();
        Ok(())
    }

    /// After appends, with the state lock released.
    fn appended(&self) {
        // A notify is a futex syscall: only when a leader is actually waiting for appends.
        if self.delaying.load(Ordering::SeqCst) {
            self.append_cv.notify_one();
        }
    }

    /// Checked before any lock is taken: in a forked child, a lock that a parent thread held
    /// at the fork is never released.
    #[inline]
    fn check_process(&self) -> Result<()> {
        self.owner.check("WAL writer", &self.dir)
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            let cause = lock(&self.sync)
                .failed
                .clone()
                .unwrap_or_else(|| "unknown".into());
            return Err(CoreError::Failed { cause });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(CoreError::Closed("WAL writer"));
        }
        Ok(())
    }

    /// Enters the failed state (first cause wins) and returns the error to report now.
    fn fail(&self, err: CoreError) -> CoreError {
        let mut g = lock(&self.sync);
        if g.failed.is_none() {
            g.failed = Some(err.to_string());
        }
        self.failed.store(true, Ordering::Release);
        let wake = g.take_wakeable();
        drop(g);
        wake.iter().for_each(Thread::unpark);
        err
    }

    /// Waits until every event `<= target` is durable, leading a group sync when no sync is
    /// in flight. Followers park until the leader wakes them: only the covered ones, and one
    /// uncovered one to lead next (see [`SyncState::take_wakeable`]).
    fn wait_durable(&self, target: u64) -> Result<()> {
        loop {
            // Woken followers return here without touching the lock.
            if self.synced_seq.load(Ordering::Acquire) >= target
                && !self.failed.load(Ordering::Acquire)
            {
                return Ok(());
            }
            let mut g = lock(&self.sync);
            if let Some(cause) = &g.failed {
                return Err(CoreError::Failed {
                    cause: cause.clone(),
                });
            }
            if g.synced >= target {
                return Ok(());
            }
            if g.syncing {
                g.waiters.push((target, std::thread::current()));
                drop(g);
                if !self.spin_while_syncing(target) {
                    // Unparked by the leader that covers `target` (or fails), or to lead the
                    // next sync; a spurious return just goes round the loop again.
                    std::thread::park();
                }
                continue;
            }
            g.syncing = true;
            self.sync_in_flight.store(true, Ordering::Release);
            g = self.commit_delay(g);
            drop(g);
            let result = self.lead_sync();
            let wake = {
                let mut g = lock(&self.sync);
                g.syncing = false;
                self.sync_in_flight.store(false, Ordering::Release);
                match &result {
                    Ok(through) => {
                        g.synced = g.synced.max(*through);
                        self.synced_seq.store(g.synced, Ordering::Release);
                    }
                    Err(e) => {
                        if g.failed.is_none() {
                            g.failed = Some(e.to_string());
                        }
                        self.failed.store(true, Ordering::Release);
                    }
                }
                g.take_wakeable()
            };
            wake.iter().for_each(Thread::unpark);
            // The leader reports the error it hit itself (typed: the call, the file, the
            // errno); its followers get the fail-stop error naming it.
            result?;
        }
    }

    /// A follower's wait for the sync in flight when groups are large: yield the CPU in a
    /// loop, for at most the last sync's duration, instead of parking. Waking a parked
    /// follower is a futex call by the leader, one per covered waiter and in turn, then a
    /// scheduler wake-up; with a group of dozens that chain is longer than the sync itself
    /// (32 Python threads: ~45k commits/s parked vs ~85k spinning here, less CPU per commit).
    /// Small groups (< [`SPIN_MIN_GROUP`]) park at once: their chain is short, and followers
    /// yielding to each other would only burn CPU. Returns `true` when parking is pointless
    /// (covered, failed, or no sync in flight: this thread may lead the next one).
    fn spin_while_syncing(&self, target: u64) -> bool {
        if self.last_group.load(Ordering::Relaxed) < SPIN_MIN_GROUP {
            return false;
        }
        let budget = Duration::from_nanos(
            self.last_sync_nanos
                .load(Ordering::Relaxed)
                .min(SPIN_MAX_NANOS),
        );
        let started = std::time::Instant::now();
        loop {
            if self.synced_seq.load(Ordering::Acquire) >= target
                || self.failed.load(Ordering::Acquire)
                || !self.sync_in_flight.load(Ordering::Acquire)
            {
                return true;
            }
            if started.elapsed() >= budget {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Adaptive commit delay (PostgreSQL's `commit_delay`/`commit_siblings`, made adaptive):
    /// when the previous group sync covered several appends, concurrent appenders are on
    /// their way (e.g. Python threads waiting for the GIL after their last append returned),
    /// so the leader waits — at most half the last sync's duration, capped at 200 µs — until
    /// as many appends as last time are in, instead of syncing for itself alone. A lone
    /// appender (last group of 1) never waits.
    fn commit_delay<'a>(&'a self, mut g: MutexGuard<'a, SyncState>) -> MutexGuard<'a, SyncState> {
        let group = self.last_group.load(Ordering::Relaxed);
        if group <= 1 {
            return g;
        }
        let nanos = (self.last_sync_nanos.load(Ordering::Relaxed) / 2).min(200_000);
        let deadline = std::time::Instant::now() + Duration::from_nanos(nanos);
        let want = self.appends_at_last_sync.load(Ordering::Relaxed) + group;
        self.delaying.store(true, Ordering::SeqCst);
        while self.appends.load(Ordering::SeqCst) < want {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            g = self
                .append_cv
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        self.delaying.store(false, Ordering::SeqCst);
        g
    }

    fn lead_sync(&self) -> Result<u64> {
        let (file, through, path, appends) = {
            let mut st = lock(&self.state);
            self.write_held(&mut st)?;
            let file = st.file.clone().ok_or(CoreError::Closed("WAL writer"))?;
            let appends = self.appends.load(Ordering::Relaxed);
            (
                file,
                st.next_seq.saturating_sub(1),
                st.seg_path.clone(),
                appends,
            )
        };
        let started = std::time::Instant::now();
        file.sync_data()
            .map_err(|e| CoreError::io("fdatasync", path, e))?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_sync_nanos.store(took, Ordering::Relaxed);
        let before = self.appends_at_last_sync.swap(appends, Ordering::Relaxed);
        self.last_group
            .store(appends.saturating_sub(before).max(1), Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(through)
    }

    /// Writes zeros so that `[pos, need)` (and one preallocation step beyond) is allocated.
    fn ensure_zeroed(&self, st: &mut State, need: u64) -> Result<()> {
        if self.opts.preallocate == 0 || need <= st.zeroed_end {
            return Ok(());
        }
        let target = need.max(st.zeroed_end + self.opts.preallocate);
        let file = st.file.clone().ok_or(CoreError::Closed("WAL writer"))?;
        let mut at = st.zeroed_end.max(st.pos);
        while at < target {
            let n = usize::try_from((target - at).min(ZEROS.len() as u64)).unwrap_or(0);
            file.write_all_at(ZEROS.get(..n).unwrap_or_default(), at)
                .map_err(|e| CoreError::io("preallocate", &st.seg_path, e))?;
            at += n as u64;
            st.zeroed_end = at;
        }
        Ok(())
    }

    /// Seals the current segment (synced, trimmed to its records) and starts the next one.
    fn rotate(&self, st: &mut State) -> Result<()> {
        self.write_held(st)?;
        let file = st.file.clone().ok_or(CoreError::Closed("WAL writer"))?;
        file.set_len(st.pos)
            .map_err(|e| CoreError::io("truncate", &st.seg_path, e))?;
        file.sync_data()
            .map_err(|e| CoreError::io("fdatasync", &st.seg_path, e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        let through = st.next_seq.saturating_sub(1);
        let wake = {
            let mut g = lock(&self.sync);
            g.synced = g.synced.max(through);
            self.synced_seq.store(g.synced, Ordering::Release);
            g.take_wakeable()
        };
        wake.iter().for_each(Thread::unpark);
        let (new, path) = create_segment(
            &self.dir,
            self.fs.as_ref(),
            &self.opts,
            self.wal_id,
            st.next_seq,
        )?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        st.file = Some(new);
        st.seg_path = path;
        st.pos = SEGMENT_HEADER_LEN as u64;
        st.zeroed_end = SEGMENT_HEADER_LEN as u64 + self.opts.preallocate;
        Ok(())
    }

    fn background_sync(&self, every: Duration) {
        let mut stop = lock(&self.stop);
        loop {
            let (g, _) = self
                .stop_cv
                .wait_timeout(stop, every)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            stop = g;
            if *stop || self.failed.load(Ordering::Acquire) {
                return;
            }
            let target = lock(&self.state).next_seq.saturating_sub(1);
            if target > self.synced_seq.load(Ordering::Acquire) {
                // A failure here fails the writer; the next call reports it.
                let _ = self.wait_durable(target);
            }
        }
    }
}

/// The last sequence of `count >= 1` events from `first_seq`, refused past [`MAX_SEQUENCE`].
fn last_sequence(first_seq: u64, count: u64) -> Result<u64> {
    first_seq
        .checked_add(count.saturating_sub(1))
        .filter(|&l| l <= MAX_SEQUENCE)
        .ok_or_else(|| {
            CoreError::InvalidArgument(format!(
                "{count} events from sequence {first_seq} would go past the last sequence a \
                 WAL can hold ({MAX_SEQUENCE}); nothing was written"
            ))
        })
}

fn validate(opts: &WalOptions) -> Result<()> {
    let min = 4096;
    if opts.segment_size < min {
        return Err(CoreError::InvalidArgument(format!(
            "segment_size must be at least {min} bytes, got {}",
            opts.segment_size
        )));
    }
    if opts.max_record_size == 0 || opts.max_record_size > u64::from(u32::MAX) {
        return Err(CoreError::InvalidArgument(format!(
            "max_record_size must be between 1 and {} bytes, got {}",
            u32::MAX,
            opts.max_record_size
        )));
    }
    if opts.start_sequence == 0 || opts.start_sequence > MAX_SEQUENCE {
        return Err(CoreError::InvalidArgument(format!(
            "start_sequence must be between 1 and {MAX_SEQUENCE}, got {}",
            opts.start_sequence
        )));
    }
    if opts.preallocate > MAX_PREALLOCATE {
        // Zeros are written, not reserved: an unbounded value fills the disk.
        return Err(CoreError::InvalidArgument(format!(
            "preallocate must be between 0 and {MAX_PREALLOCATE} bytes, got {}",
            opts.preallocate
        )));
    }
    Ok(())
}

/// Creates segment `first_seq`: header and preallocated zeros are written to a temporary
/// name and synced, then renamed into place and the directory synced, so a segment under its
/// final name always has a durable header.
fn create_segment(
    dir: &Path,
    fs: &dyn WalFs,
    opts: &WalOptions,
    wal_id: u64,
    first_seq: u64,
) -> Result<(Arc<dyn WalFile>, PathBuf)> {
    let name = segment_name(first_seq);
    let path = dir.join(&name);
    let tmp = dir.join(format!(
        "{}{TMP_SUFFIX}",
        name.trim_end_matches(dir::SEGMENT_SUFFIX)
    ));
    if tmp.exists() {
        fs.remove_file(&tmp)
            .map_err(|e| CoreError::io("remove", &tmp, e))?;
    }
    let file = fs
        .create_new(&tmp)
        .map_err(|e| CoreError::io("create", &tmp, e))?;
    if let Err(e) = fill_new_segment(file.as_ref(), &tmp, &path, fs, opts, wal_id, first_seq) {
        // Do not leave a (possibly huge) half-written file behind until the next open;
        // best effort: the error that matters is `e`, and recovery removes any leftover.
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    fs.sync_dir(dir)
        .map_err(|e| CoreError::io("fsync dir", dir, e))?;
    Ok((file, path))
}

/// Header and preallocated zeros into the new segment's temporary file `tmp`, synced, then
/// renamed to `path`.
fn fill_new_segment(
    file: &dyn WalFile,
    tmp: &Path,
    path: &Path,
    fs: &dyn WalFs,
    opts: &WalOptions,
    wal_id: u64,
    first_seq: u64,
) -> Result<()> {
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        wal_id,
        first_seq,
    }
    .encode();
    file.write_all_at(&header, 0)
        .map_err(|e| CoreError::io("write", tmp, e))?;
    let mut at = SEGMENT_HEADER_LEN as u64;
    let end = at + opts.preallocate;
    while at < end {
        let n = usize::try_from((end - at).min(ZEROS.len() as u64)).unwrap_or(0);
        file.write_all_at(ZEROS.get(..n).unwrap_or_default(), at)
            .map_err(|e| CoreError::io("preallocate", tmp, e))?;
        at += n as u64;
    }
    file.sync_data()
        .map_err(|e| CoreError::io("fdatasync", tmp, e))?;
    fs.rename(tmp, path)
        .map_err(|e| CoreError::io("rename", path, e))
}

struct LastSegment {
    path: PathBuf,
    end: u64,
    zeroed_end: u64,
    next_seq: u64,
}

struct Recovered {
    report: RecoveryReport,
    wal_id: u64,
    last: Option<LastSegment>,
}

/// Recovery at open: checks every segment header, scans the last segment and cuts off a
/// crash tail (see `scan.rs` for the rules), removes torn segments and temporary files.
fn recover(dir: &Path, opts: &WalOptions, fs: &dyn WalFs) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let listing = dir::list(dir)?;
    let mut segs = listing.segments;
    // Older segments: headers must be sound and agree on the WAL id. (Their records are
    // verified when read; they were synced before the next segment was created.)
    let mut wal_id = None;
    for s in segs.iter().take(segs.len().saturating_sub(1)) {
        let h = read_segment_header(&s.path)?;
        match wal_id {
            Some(id) if id != h.wal_id => {
                return Err(CoreError::WalCorruption {
                    segment: s.path.clone(),
                    offset: 0,
                    reason: CorruptionReason::ForeignSegment {
                        expected: id,
                        found: h.wal_id,
                    },
                })
            }
            _ => wal_id = Some(h.wal_id),
        }
    }
    // Every segment but the newest file was sealed by a rotation (synced and trimmed before
    // the next file was created). That stays true when the newest file turns out to be a torn
    // creation and is removed: the segment before it is then scanned last, but as sealed, so
    // damage in it is corruption, never a crash tail to cut.
    let sealed = segs.len().saturating_sub(1);
    let mut next_if_empty = opts.start_sequence;
    // A torn newest segment is removed only once the rest of the log checked out: a hard error
    // leaves every file as it was.
    let mut torn_creation = None;
    let last = loop {
        let Some(last) = segs.last().cloned() else {
            break None;
        };
        let idx = segs.len() - 1;
        let mut scanner = Scanner::new(segs.clone(), idx, opts.max_record_size, None, wal_id)
            .sealed_before(sealed);
        let tail = loop {
            match scanner.next_item()? {
                Item::Record { header, offset, .. } => {
                    if header.kind == RecordKind::Events {
                        // Checksum-valid records must also decode (else: hard corruption).
                        if let Err(e) =
                            crate::codec::decode_batch(scanner.payload(), header.event_count)
                        {
                            return Err(CoreError::WalCorruption {
                                segment: last.path.clone(),
                                offset,
                                reason: CorruptionReason::Decode(e.to_string()),
                            });
                        }
                    }
                }
                Item::End(t) => break t,
            }
        };
        wal_id = wal_id.or(scanner.wal_id());
        match &tail.damage {
            Some(d) if d.whole_segment => {
                // Crash while creating this segment: nothing in it to keep. (Only the newest
                // file can be one: the scanner treats every segment before it as sealed.)
                report.truncated = true;
                report.segment = Some(last.path.clone());
                report.offset = 0;
                report.bytes_dropped += tail.file_len;
                report.reason = Some(d.reason.to_string());
                torn_creation = Some(last.path.clone());
                next_if_empty = last.first_seq;
                segs.pop();
                continue;
            }
            Some(d) => {
                // Crash tail: cut the segment at the end of its last valid record.
                let file = fs
                    .open_rw(&last.path)
                    .map_err(|e| CoreError::io("open", &last.path, e))?;
                file.set_len(tail.offset)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| CoreError::io("truncate", &last.path, e))?;
                report.truncated = true;
                report.segment = Some(last.path.clone());
                report.offset = tail.offset;
                report.bytes_dropped += tail.file_len - tail.offset;
                report.records_dropped = d.after.records;
                report.events_dropped = d.after.events;
                report.reason = Some(d.reason.to_string());
                break Some(LastSegment {
                    path: last.path,
                    end: tail.offset,
                    zeroed_end: tail.offset,
                    next_seq: tail.next_seq.unwrap_or(last.first_seq),
                });
            }
            None => {
                break Some(LastSegment {
                    path: last.path,
                    end: tail.offset,
                    zeroed_end: tail.file_len,
                    next_seq: tail.next_seq.unwrap_or(last.first_seq),
                })
            }
        }
    };
    // Crash while creating a segment: the temporary file was never renamed into place.
    for tmp in &listing.temps {
        fs.remove_file(tmp)
            .map_err(|e| CoreError::io("remove", tmp, e))?;
        report.removed_files.push(tmp.clone());
    }
    if let Some(path) = torn_creation {
        fs.remove_file(&path)
            .map_err(|e| CoreError::io("remove", &path, e))?;
        report.removed_files.push(path);
    }
    if !report.removed_files.is_empty() {
        fs.sync_dir(dir)
            .map_err(|e| CoreError::io("fsync dir", dir, e))?;
    }
    report.last_sequence = match &last {
        Some(l) => l.next_seq.saturating_sub(1),
        None => next_if_empty.saturating_sub(1),
    };
    Ok(Recovered {
        report,
        wal_id: wal_id.unwrap_or_else(new_wal_id),
        last,
    })
}

/// A random 64-bit id for a new WAL (std's randomly keyed hasher over time and pid).
fn new_wal_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    h.finish() | 1
}
