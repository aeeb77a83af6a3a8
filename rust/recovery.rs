//! Recovery: open a data directory and rebuild the projection from snapshot + WAL tail.
//!
//! ```text
//!  DATA/                 (created 0700 when missing)
//!    wal/                segments + LOCK        → WalWriter::open: lock, cut a crash tail
//!    snapshots/          snapshot-<seq>.aqs     → newest valid one with seq <= log's last
//!  replay: records with sequence > snapshot's, one atomic batch at a time
//! ```
//!
//! Startup cost is the snapshot load plus the tail after it, never the whole history: the
//! reader seeks by segment name to the snapshot's sequence.
//!
//! The WAL writer is opened first: it takes the directory lock (so no second process replays
//! while another appends) and cuts a crash tail, so replay reads exactly the log that new
//! appends will extend.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::authority::{Authority, AuthorityOptions};
use crate::snapshot;
use crate::state::{Digest, Projection};
use crate::wal::{self, WalOptions, WalReader, WalWriter};
use crate::{CoreError, Result};

pub const WAL_DIR: &str = "wal";
pub const SNAPSHOT_DIR: &str = "snapshots";

#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub wal: WalOptions,
    pub authority: AuthorityOptions,
    /// Largest snapshot body read.
    pub max_snapshot_size: u64,
    /// Compute the state digest for the report (O(state); off by default).
    pub digest: bool,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            wal: WalOptions::default(),
            authority: AuthorityOptions::default(),
            max_snapshot_size: snapshot::DEFAULT_MAX_SNAPSHOT_SIZE,
            digest: false,
        }
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub data_dir: PathBuf,
    /// The snapshot the state was loaded from: `(path, sequence)`; `None`: the whole log was
    /// replayed.
    pub snapshot: Option<(PathBuf, u64)>,
    /// Snapshots passed over, newest first, with why.
    pub snapshots_skipped: Vec<(PathBuf, String)>,
    pub records_replayed: u64,
    pub events_replayed: u64,
    /// What opening the WAL did (crash-tail truncation, removed files).
    pub wal: wal::RecoveryReport,
    pub snapshot_load_ms: u64,
    pub replay_ms: u64,
    pub duration_ms: u64,
    /// The latest sequence after recovery.
    pub final_sequence: u64,
    pub digest: Option<Digest>,
}

/// Creates `dir` (and missing parents) owner-only, fsyncing the parent so the entry is durable.
fn ensure_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        // No symlinked or world-writable directory (see fsguard.rs).
        return crate::fsguard::check_dir(dir);
    }
    if dir.exists() || dir.is_symlink() {
        return Err(CoreError::UnexpectedFile {
            path: dir.to_owned(),
            what: "exists and is not a directory".into(),
        });
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CoreError::io("mkdir", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| CoreError::io("fsync dir", parent, e))?;
    }
    Ok(())
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Opens `data_dir` (creating it if missing) and returns the authority over it with the
/// report of what recovery did.
pub fn bootstrap(data_dir: &Path, opts: BootstrapOptions) -> Result<(Authority, RecoveryReport)> {
    let started = Instant::now();
    // Bad settings are refused before anything is created.
    opts.wal.validate()?;
    opts.authority.validate()?;
    let wal_dir = data_dir.join(WAL_DIR);
    let snap_dir = data_dir.join(SNAPSHOT_DIR);
    // Snapshots but no log at all: the log was deleted or the directory half-copied. Opening
    // would create an empty log, skip every snapshot as "newer than the log" and start from
    // nothing — silently losing everything. Refuse instead.
    if !wal_dir.exists() && snap_dir.is_dir() && !snapshot::list(&snap_dir)?.is_empty() {
        return Err(CoreError::UnexpectedFile {
            path: wal_dir,
            what: format!(
                "the WAL directory is missing but {} holds snapshots; restore the WAL (the \
                 source of truth) or move the snapshots away to start an empty queue",
                snap_dir.display()
            ),
        });
    }
    ensure_dir(data_dir)?;
    ensure_dir(&wal_dir)?;
    ensure_dir(&snap_dir)?;
    let wal = Arc::new(WalWriter::open(&wal_dir, opts.wal.clone())?);
    let wal_report = wal.recovery_report().clone();
    let last = wal.next_sequence().saturating_sub(1);

    // A snapshot newer than the log describes a history the log no longer has: the log was
    // cut by an explicit `repair`, restored from an older copy, or lost synced records (the
    // authority flushes before snapshotting, so only a damaged disk gets there). It is set
    // aside, not just skipped: left in place it would be loaded again once the log grows past
    // its sequence, on top of records it never saw.
    let newer = set_aside_newer(&snap_dir, last, &wal_dir)?;
    let Rebuilt {
        snapshot,
        p,
        records,
        events,
        snapshot_load_ms,
        replay_ms,
        skipped,
    } = rebuild(&snap_dir, &wal_dir, last, wal.wal_id(), &opts, newer)?;
    let digest = opts.digest.then(|| p.state_digest());
    let final_sequence = p.latest_sequence();
    // The authority keeps no snapshot an open with these options could not read back.
    let aopts = AuthorityOptions {
        max_snapshot_size: opts.max_snapshot_size,
        ..opts.authority
    };
    let authority = Authority::new(wal, p, Some(snap_dir), aopts)?;
    let report = RecoveryReport {
        data_dir: data_dir.to_owned(),
        snapshot,
        snapshots_skipped: skipped,
        records_replayed: records,
        events_replayed: events,
        wal: wal_report,
        snapshot_load_ms,
        replay_ms,
        duration_ms: ms(started),
        final_sequence,
        digest,
    };
    Ok((authority, report))
}

/// The state rebuilt from a snapshot (or none) and the log after it.
struct Rebuilt {
    snapshot: Option<(PathBuf, u64)>,
    p: Projection,
    records: u64,
    events: u64,
    snapshot_load_ms: u64,
    replay_ms: u64,
    /// Snapshots passed over, newest first, with why (`newer` first).
    skipped: Vec<(PathBuf, String)>,
}

/// Loads the newest usable snapshot at or below `last` and replays the log after it.
///
/// Snapshots that cannot be read are skipped (torn or bit-rotted files). A snapshot the log
/// cannot be replayed onto — the reducer refuses a record on its state, or it does not end at
/// a record boundary — is not this log's state (copied in from another queue, or a backup
/// mix-up): the next older snapshot is tried, down to the log alone. The log is the source of
/// truth, so when an older source replays cleanly that one is right, and the refused
/// snapshots are set aside (renamed `.stale`) only then. When none does, the error is the
/// newest snapshot's and nothing is renamed: the refusal may be the reducer's (a record a
/// newer build refuses), and an older source would not help.
fn rebuild(
    snap_dir: &Path,
    wal_dir: &Path,
    last: u64,
    log: u64,
    opts: &BootstrapOptions,
    newer: Vec<(PathBuf, String)>,
) -> Result<Rebuilt> {
    let mut skipped = newer;
    let mut refused: Vec<(snapshot::SnapshotFile, String)> = Vec::new();
    let mut first_error: Option<CoreError> = None;
    let mut below = last;
    loop {
        let t = Instant::now();
        let loaded =
            snapshot::load_newest(snap_dir, Some(below), opts.max_snapshot_size, Some(log))?;
        let snapshot_load_ms = ms(t);
        // Another log's snapshots (they name its wal_id) are set aside at once, like the ones
        // newer than the log: left in place they would take a kept slot at every checkpoint.
        for f in &loaded.foreign {
            snapshot::set_aside(f)?;
        }
        // Files above `below` are the refused ones (reported with their own reason), or were
        // reported by an earlier round.
        for (path, why) in loaded.skipped {
            let known = refused.iter().any(|(f, _)| f.path == path)
                || skipped.iter().any(|(seen, _)| *seen == path);
            if !known {
                skipped.push((path, why));
            }
        }
        let (file, snapshot, mut p) = match loaded.loaded {
            Some((file, p)) => {
                let snapshot = Some((file.path.clone(), file.sequence));
                (Some(file), snapshot, p)
            }
            None => (None, None, Projection::new()),
        };
        // The tail is replayed the way the authority will go on applying: terminal records
        // are frozen in batches as they finish (a full replay thus never leaves a million hot
        // terminal runs for the first snapshot to freeze under the lock).
        p.set_auto_freeze(true)?;
        let t = Instant::now();
        let replayed =
            replay_into(&mut p, wal_dir, opts.wal.max_record_size, &snapshot).and_then(|counts| {
                if p.latest_sequence() == last {
                    return Ok(counts);
                }
                // The log holds nothing after the state's end, yet ends later: the events
                // between were only in segments a checkpoint deleted.
                Err(gap_error(
                    p.next_sequence(),
                    last.saturating_add(1),
                    wal_dir,
                    0,
                    &snapshot,
                ))
            });
        let replay_ms = ms(t);
        match (replayed, file) {
            (Ok((records, events)), _) => {
                for (f, why) in refused {
                    let to = snapshot::set_aside(&f)?;
                    skipped.push((
                        f.path,
                        format!(
                            "the log cannot be replayed onto it ({why}) while it replays onto \
                             an older source: not this log's state (copied from another \
                             queue?); renamed to {} so that it is never loaded again",
                            to.display()
                        ),
                    ));
                }
                return Ok(Rebuilt {
                    snapshot,
                    p,
                    records,
                    events,
                    snapshot_load_ms,
                    replay_ms,
                    skipped,
                });
            }
            (Err(CoreError::Recovery(why)), Some(f)) => {
                below = f.sequence.saturating_sub(1);
                if first_error.is_none() {
                    first_error = Some(CoreError::Recovery(why.clone()));
                }
                refused.push((f, why));
            }
            (Err(e), _) => {
                let e = first_error.unwrap_or(e);
                return Err(naming_skipped(e, &skipped, opts.max_snapshot_size));
            }
        }
    }
}

/// Renames the snapshots newer than the log's `last` sequence out of the way (see
/// [`snapshot::set_aside`]) and returns them, newest first, with the reason for the report.
/// An empty log under such snapshots is refused instead: the log is gone (every segment
/// deleted), and opening would start an empty queue while the snapshots hold the state.
fn set_aside_newer(snap_dir: &Path, last: u64, wal_dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let newer: Vec<_> = snapshot::list(snap_dir)?
        .into_iter()
        .filter(|f| f.sequence > last)
        .collect();
    if let (0, Some(newest)) = (last, newer.first()) {
        return Err(CoreError::UnexpectedFile {
            path: wal_dir.to_owned(),
            what: format!(
                "the WAL holds no records but {} holds snapshots up to sequence {}; restore \
                 the WAL (the source of truth) or move the snapshots away to start an empty \
                 queue",
                snap_dir.display(),
                newest.sequence
            ),
        });
    }
    newer
        .into_iter()
        .map(|f| {
            let to = snapshot::set_aside(&f)?;
            let reason = format!(
                "snapshot at sequence {} is newer than the log (last sequence {last}): it \
                 describes a history this log no longer has (cut by repair, or restored from \
                 an older copy); renamed to {} so that it is never loaded again",
                f.sequence,
                to.display()
            );
            Ok((f.path, reason))
        })
        .collect()
}

/// Replays every record of the WAL in `wal_dir` after `p`'s latest sequence into `p`, one
/// atomic record at a time. Returns `(records, events)` replayed. `snapshot` only names the
/// source of `p` in error messages.
pub fn replay_into(
    p: &mut Projection,
    wal_dir: &Path,
    max_record_size: u64,
    snapshot: &Option<(PathBuf, u64)>,
) -> Result<(u64, u64)> {
    let from = p.next_sequence();
    let mut reader = WalReader::open_at(wal_dir, max_record_size, from)?;
    let (mut records, mut events) = (0u64, 0u64);
    while let Some(rec) = reader.next_record()? {
        let segment = reader
            .segment_paths()
            .get(rec.segment)
            .cloned()
            .unwrap_or_default();
        if rec.first_seq != p.next_sequence() {
            return Err(gap_error(
                p.next_sequence(),
                rec.first_seq,
                &segment,
                rec.offset,
                snapshot,
            ));
        }
        // A checksum-valid record the reducer refuses: written by a build with weaker
        // validation, or a snapshot that is not this log's state.
        let count = rec.events.len() as u64;
        p.apply_owned(rec.first_seq, rec.events).map_err(|e| {
            CoreError::Recovery(format!(
                "record {} in {} (offset {}) cannot be replayed on {}: {e}",
                rec.first_seq,
                segment.display(),
                rec.offset,
                describe(snapshot)
            ))
        })?;
        records += 1;
        events += count;
    }
    Ok((records, events))
}

/// A recovery error with the snapshots that were passed over and why: the snapshot that
/// would have bridged a gap may be intact but unreadable with these options (too large) —
/// then the fix is a larger `max_snapshot_size`, not a restore, and the message says so.
fn naming_skipped(
    e: CoreError,
    skipped: &[(PathBuf, String)],
    max_snapshot_size: u64,
) -> CoreError {
    match e {
        CoreError::Recovery(msg) if !skipped.is_empty() => {
            let why: Vec<String> = skipped
                .iter()
                .map(|(path, reason)| format!("{}: {reason}", path.display()))
                .collect();
            let largest = skipped
                .iter()
                .filter_map(|(path, _)| std::fs::metadata(path).ok().map(|m| m.len()))
                .filter(|&len| len > max_snapshot_size)
                .max();
            let hint = largest.map_or_else(String::new, |len| {
                format!(
                    "; a snapshot skipped for its size may be intact: open with \
                     max_snapshot_size >= {len} before restoring anything"
                )
            });
            CoreError::Recovery(format!(
                "{msg} (snapshots skipped: {}){hint}",
                why.join("; ")
            ))
        }
        e => e,
    }
}

/// The log does not continue where the state ends: it resumes at `resume` (a record at
/// `offset` of `segment`, or the log's end) instead of `need`.
fn gap_error(
    need: u64,
    resume: u64,
    segment: &Path,
    offset: u64,
    snapshot: &Option<(PathBuf, u64)>,
) -> CoreError {
    let source = describe(snapshot);
    let reason = if resume > need {
        // Crash/checkpoint case: segments before a snapshot were deleted, and that snapshot
        // is now unusable (corrupt, missing), so the events in between exist nowhere.
        format!(
            "the state needs events from sequence {need} (after {source}) but the log resumes \
             at {resume}: events {need}..{} are missing; their segments were deleted by a \
             checkpoint after a snapshot that is no longer usable; restore that snapshot or \
             the deleted segments",
            resume - 1
        )
    } else {
        // The snapshot ends inside a record: it was not taken at a record boundary of this
        // log (a foreign snapshot).
        format!(
            "record {resume} starts before sequence {need}: {source} does not end at a record \
             boundary of this log"
        )
    };
    CoreError::Recovery(format!(
        "cannot rebuild the state from {} (offset {offset}): {reason}",
        segment.display()
    ))
}

fn describe(snapshot: &Option<(PathBuf, u64)>) -> String {
    match snapshot {
        Some((path, seq)) => format!("the snapshot {} (sequence {seq})", path.display()),
        None => "no usable snapshot (replaying the whole log)".into(),
    }
}
