//! Snapshot files: atomic write, listing, loading the newest valid one, removing old ones.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};
use crate::state::Projection;

use super::{decode_buf, decode_owned, log_id, Capture, HEADER_LEN};
use crate::state::cold::Buf;

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".aqs";
const TMP_SUFFIX: &str = ".aqs.tmp";

/// A snapshot file and the sequence its name carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
    pub sequence: u64,
}

/// `snapshot-<sequence zero-padded to 20 digits>.aqs`, so names sort like sequences.
pub fn file_name(sequence: u64) -> String {
    format!("{PREFIX}{sequence:020}{SUFFIX}")
}

fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CoreError::io("fsync directory", dir, e))
}

/// Writes the projection's snapshot into `dir` ([`Capture::take`] then [`write_capture`]).
pub fn write_atomic(dir: &Path, p: &mut Projection) -> Result<SnapshotFile> {
    let cap = Capture::take(p)?;
    write_capture(dir, &cap).map(|(f, _)| f)
}

/// Writes a captured snapshot into `dir`: temp file, write, fsync, rename, fsync the
/// directory; returns the file and its size. A crash at any point leaves either the old set
/// of snapshots or the new file complete (a leftover `.tmp` is ignored by [`list`] and
/// removed by [`remove_older`]).
pub fn write_capture(dir: &Path, cap: &Capture) -> Result<(SnapshotFile, u64)> {
    let sequence = cap.sequence();
    let path = dir.join(file_name(sequence));
    let tmp = dir.join(format!("{PREFIX}{sequence:020}{TMP_SUFFIX}"));
    let size = {
        // A leftover temp file (crash mid-write) is replaced; `create_new` (O_EXCL) never
        // follows a symbolic link planted under the temp name, and the mode is owner-only.
        use std::os::unix::fs::OpenOptionsExt;
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(CoreError::io("remove", &tmp, e))
            }
            _ => {}
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(crate::fsguard::FILE_MODE)
            .open(&tmp)
            .map_err(|e| CoreError::io("create", &tmp, e))?;
        let written = cap
            .write_to(&mut f)
            .map_err(|e| CoreError::io("write", &tmp, e))
            .and_then(|size| {
                f.sync_all()
                    .map_err(|e| CoreError::io("fsync", &tmp, e))
                    .map(|()| size)
            });
        match written {
            Ok(size) => size,
            Err(e) => {
                // A full disk (or an I/O error) mid-snapshot: give the space back at once
                // instead of leaving a partial temp file until the next snapshot. Best
                // effort: the error that matters is the one returned.
                drop(f);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
    };
    fs::rename(&tmp, &path).map_err(|e| CoreError::io("rename", &path, e))?;
    sync_dir(dir)?;
    Ok((SnapshotFile { path, sequence }, size))
}

/// Snapshot files in `dir`, newest (highest sequence) first. Other files are ignored.
pub fn list(dir: &Path) -> Result<Vec<SnapshotFile>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| CoreError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("read directory", dir, e))?;
        let name = entry.file_name();
        if let Some(sequence) = name.to_str().and_then(parse_name) {
            out.push(SnapshotFile {
                path: entry.path(),
                sequence,
            });
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.sequence));
    Ok(out)
}

/// Reads and decodes one snapshot file (at most `max_body` body bytes).
pub fn load_file(path: &Path, max_body: u64) -> Result<Projection> {
    load_file_bound(path, max_body).map(|(p, _)| p)
}

/// [`load_file`], with the log the snapshot says it belongs to ([`super::log_id`]).
pub fn load_file_bound(path: &Path, max_body: u64) -> Result<(Projection, Option<u64>)> {
    let corrupt = |reason: String| CoreError::SnapshotCorrupt {
        path: path.to_owned(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| CoreError::io("open", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| CoreError::io("stat", path, e))?
        .len();
    if len > max_body.saturating_add(HEADER_LEN as u64) {
        return Err(corrupt(format!(
            "file of {len} bytes exceeds the snapshot size limit of {max_body} bytes"
        )));
    }
    if len >= MAP_AT_LEAST {
        // A large snapshot is mapped rather than read: its cold section is used in place, so
        // the pages come straight from the page cache instead of being copied into freshly
        // zeroed memory (on a 200 MB snapshot: ~0.05 s instead of ~0.6 s here).
        // A filesystem that cannot map files gets the plain read below.
        if let Ok(map) = map_file(&f) {
            let log = log_id(&map);
            return decode_buf(Buf::Mapped(map), max_body)
                .map(|p| (p, log))
                .map_err(|r| corrupt(r.to_string()));
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.read_to_end(&mut bytes)
        .map_err(|e| CoreError::io("read", path, e))?;
    let log = log_id(&bytes);
    decode_owned(bytes, max_body)
        .map(|p| (p, log))
        .map_err(|r| corrupt(r.to_string()))
}

/// The log a snapshot file names ([`super::log_id`]) from its first bytes, unverified: for
/// sorting out another log's files, never for trusting one (loading checks the checksums).
pub fn log_id_of(path: &Path) -> Result<Option<u64>> {
    let mut head = Vec::with_capacity(HEADER_LEN + 8);
    File::open(path)
        .and_then(|f| f.take((HEADER_LEN + 8) as u64).read_to_end(&mut head))
        .map_err(|e| CoreError::io("read", path, e))?;
    Ok(log_id(&head))
}

/// Snapshot files at least this large are memory-mapped by [`load_file`].
pub const MAP_AT_LEAST: u64 = 1 << 20;

/// Maps a snapshot file read-only (pre-faulted).
#[allow(unsafe_code)]
fn map_file(f: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only (PROT_READ), and this file is never written again:
    // snapshot files are written under a temp name, fsynced and renamed into place, then only
    // ever read or unlinked (unlinking keeps the mapped pages alive). The data directory is
    // locked against other actionqueue processes. What mmap cannot rule out is another
    // program truncating or rewriting the file in place while it is mapped (SIGBUS or changed
    // bytes), the same caveat as for any memory-mapped database; every read of the mapped
    // bytes is bounds-checked and decoded as untrusted input, so changed bytes cannot cause
    // undefined behaviour in this code, only wrong answers.
    unsafe { memmap2::MmapOptions::new().populate().map(f) }
}

/// Renames a snapshot that must never be loaded again to `<name>.stale` (`.stale.1`, ... if
/// taken) and fsyncs the directory; returns the new path. Kept rather than deleted: it is the
/// only copy of the history it describes, for whoever investigates. [`list`] ignores it.
pub fn set_aside(file: &SnapshotFile) -> Result<PathBuf> {
    let dir = file.path.parent().unwrap_or_else(|| Path::new("."));
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut to = dir.join(format!("{name}.stale"));
    let mut n = 0u32;
    while to.symlink_metadata().is_ok() {
        n += 1;
        to = dir.join(format!("{name}.stale.{n}"));
    }
    fs::rename(&file.path, &to).map_err(|e| CoreError::io("rename", &file.path, e))?;
    sync_dir(dir)?;
    Ok(to)
}

/// What [`load_newest`] found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The newest valid snapshot and its projection, if any.
    pub loaded: Option<(SnapshotFile, Projection)>,
    /// Snapshots passed over, newest first, with the reason (for the recovery report).
    pub skipped: Vec<(PathBuf, String)>,
    /// Intact snapshots of another log (also in `skipped`): never to be loaded here.
    pub foreign: Vec<SnapshotFile>,
}

/// Loads the newest valid snapshot in `dir`, skipping (with a reason) unreadable or corrupt
/// ones and, when `max_sequence` is given (the log's last sequence), ones newer than the log,
/// and, when `log` is given (the log's `wal_id`), ones that name another log.
pub fn load_newest(
    dir: &Path,
    max_sequence: Option<u64>,
    max_body: u64,
    log: Option<u64>,
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    for file in list(dir)? {
        if let Some(max) = max_sequence {
            if file.sequence > max {
                report.skipped.push((
                    file.path,
                    format!(
                        "snapshot at sequence {} is newer than the log (last sequence {max})",
                        file.sequence
                    ),
                ));
                continue;
            }
        }
        match load_file_bound(&file.path, max_body) {
            Ok((_, Some(theirs))) if log.is_some_and(|ours| ours != theirs) => {
                let ours = log.unwrap_or_default();
                report.skipped.push((
                    file.path.clone(),
                    format!(
                        "snapshot of another log (log id {theirs:016x}; this log's is \
                         {ours:016x}): copied in from another data directory"
                    ),
                ));
                report.foreign.push(file);
            }
            Ok((p, _)) if p.latest_sequence() == file.sequence => {
                report.loaded = Some((file, p));
                break;
            }
            Ok((p, _)) => report.skipped.push((
                file.path,
                format!(
                    "file name says sequence {} but the snapshot holds {}",
                    file.sequence,
                    p.latest_sequence()
                ),
            )),
            Err(e) => report.skipped.push((file.path, e.to_string())),
        }
    }
    Ok(report)
}

/// Removes snapshots older than `keep_sequence` and leftover temp files; returns how many
/// files were removed. The directory is fsynced when anything was removed.
pub fn remove_older(dir: &Path, keep_sequence: u64) -> Result<usize> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| CoreError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CoreError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match parse_name(name) {
            Some(seq) => seq < keep_sequence,
            None => name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX),
        };
        if stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| CoreError::io("remove", &path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}
