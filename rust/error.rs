//! The one error type of the core.
//!
//! Every fallible core operation returns [`CoreError`]. The binding layer (`py/`) maps each
//! variant to exactly one Python exception class of `actionqueue.errors` through
//! [`CoreError::python_class`], so the hierarchy users catch is defined once, in Python.

use std::fmt;
use std::path::PathBuf;

/// Why a WAL or snapshot byte range could not be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorruptionReason {
    IncompleteHeader,
    IncompletePayload,
    BadMagic,
    UnsupportedVersion(u32),
    CrcMismatch {
        stored: u32,
        computed: u32,
    },
    Decode(String),
    SequenceRegression {
        previous: u64,
        found: u64,
    },
    BadLength(u64),
    /// The first sequence of a segment or record is past the expected one (a missing record
    /// or segment).
    SequenceGap {
        expected: u64,
        found: u64,
    },
    /// A segment whose WAL id differs from the directory's other segments (copied in from
    /// another queue).
    ForeignSegment {
        expected: u64,
        found: u64,
    },
    /// A record kind this build does not know (written by a newer version?).
    UnknownRecordKind(u8),
    /// A header whose checksum is fine but whose fields contradict the file (e.g. the
    /// segment's name and its first sequence disagree, reserved bytes set).
    Malformed(String),
}

impl fmt::Display for CorruptionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IncompleteHeader => write!(f, "incomplete header"),
            Self::IncompletePayload => write!(f, "incomplete payload"),
            Self::BadMagic => write!(f, "bad magic"),
            Self::UnsupportedVersion(v) => write!(f, "unsupported format version {v}"),
            Self::CrcMismatch { stored, computed } => {
                write!(
                    f,
                    "crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )
            }
            Self::Decode(why) => write!(f, "decode failure: {why}"),
            Self::SequenceRegression { previous, found } => {
                write!(
                    f,
                    "sequence regression (previous {previous}, found {found})"
                )
            }
            Self::BadLength(n) => write!(f, "implausible record length {n}"),
            Self::SequenceGap { expected, found } => {
                write!(f, "sequence gap (expected {expected}, found {found})")
            }
            Self::ForeignSegment { expected, found } => write!(
                f,
                "segment belongs to another WAL (WAL id {found:#018x}, this directory's is {expected:#018x})"
            ),
            Self::UnknownRecordKind(k) => {
                write!(f, "unknown record kind {k} (written by a newer version?)")
            }
            Self::Malformed(why) => write!(f, "malformed header: {why}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An I/O call failed. `op` says which (write, fdatasync, rename, ...).
    #[error("{op} failed on {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another writer (this process or another) holds the data directory lock.
    #[error("data directory {path} is locked by another writer (lock file {lock}); close the other queue or pick another directory")]
    DataDirLocked { path: PathBuf, lock: PathBuf },

    /// Bytes on disk failed verification somewhere recovery may not silently truncate.
    #[error("WAL corruption in {segment} at offset {offset}: {reason}")]
    WalCorruption {
        segment: PathBuf,
        offset: u64,
        reason: CorruptionReason,
    },

    /// The data directory holds an entry the store did not write (or cannot be used as is).
    #[error("unexpected entry in data directory: {path}: {what}")]
    UnexpectedFile { path: PathBuf, what: String },

    /// A snapshot file could not be used.
    #[error("snapshot {path} is unusable: {reason}")]
    SnapshotCorrupt { path: PathBuf, reason: String },

    /// A record's encoded size exceeds the configured maximum.
    #[error("record of {size} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge { size: u64, max: u64 },

    /// An intact record in the log (both checksums verified) is larger than the reader's
    /// maximum record size: a writer configured with a larger maximum wrote it. Not
    /// corruption; nothing may be cut for it. Raised as `RecordTooLargeError` (with
    /// `segment`, `offset` and `sequence` set).
    #[error("record at sequence {sequence} in segment {segment} (offset {offset}) is {size} bytes, above max_record_size {max}: the log was written with a larger limit; open it with max_record_size >= {size}")]
    RecordOverReadLimit {
        segment: PathBuf,
        offset: u64,
        sequence: u64,
        size: u64,
        max: u64,
    },

    /// A command named a sequence other than the next one.
    #[error("sequence mismatch: expected {expected}, got {got}")]
    Sequence { expected: u64, got: u64 },

    /// Bytes that should hold an encoded value do not.
    #[error("decode failure: {0}")]
    Decode(String),

    /// A command that the reducer refuses (precondition failed). Nothing was changed.
    #[error("{0}")]
    Rejected(String),

    /// An illegal run state transition.
    #[error("invalid run state transition {from} -> {to} for run {run}")]
    InvalidTransition {
        run: String,
        from: String,
        to: String,
    },

    /// A lease operation the reducer refuses (not held, held by another owner, expired, or
    /// still live). Nothing was changed.
    #[error("{0}")]
    Lease(String),

    /// A task or run id that is not in the projection.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },

    /// Snapshot + log cannot rebuild the state (events missing, or refused by the reducer).
    #[error("recovery failed: {0}")]
    Recovery(String),

    /// A write or fsync failed earlier; the handle refuses work until reopened.
    #[error("storage has failed and must be reopened: {cause}")]
    Failed { cause: String },

    /// The handle was closed.
    #[error("{0} is closed")]
    Closed(&'static str),

    /// A handle opened by another process was used from a child forked from it (see
    /// [`crate::fork`]). Nothing was written.
    #[error("this {what} (WAL directory {path}) was opened by process {owner_pid}; process {pid} is a child forked from it and cannot use it (refused, nothing written: one process owns a data directory). Open the data directory in the child after the parent has closed it, or fork before opening the queue")]
    ForkedProcess {
        what: &'static str,
        path: PathBuf,
        owner_pid: u32,
        pid: u32,
    },

    /// Bad argument values given to the core (not a domain rule violation).
    #[error("{0}")]
    InvalidArgument(String),

    /// An argument of the wrong type (e.g. a malformed wire tuple from Python).
    #[error("{0}")]
    WrongType(String),
}

impl CoreError {
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Name of the `actionqueue.errors` class this error is raised as.
    pub fn python_class(&self) -> &'static str {
        match self {
            Self::Io { .. } => "StorageIOError",
            Self::DataDirLocked { .. } => "DataDirLockedError",
            Self::WalCorruption { .. } => "WalCorruptionError",
            Self::SnapshotCorrupt { .. } => "SnapshotError",
            Self::RecordTooLarge { .. } | Self::RecordOverReadLimit { .. } => "RecordTooLargeError",
            Self::Sequence { .. } => "SequenceError",
            Self::Decode(_) => "CodecError",
            Self::Rejected(_) => "CommandRejectedError",
            Self::InvalidTransition { .. } => "InvalidTransitionError",
            Self::Lease(_) => "LeaseError",
            Self::NotFound { .. } => "NotFoundError",
            Self::Failed { .. } => "StorageFailedError",
            Self::Recovery(_) => "RecoveryError",
            Self::Closed(_) => "ClosedError",
            Self::ForkedProcess { .. } => "ForkedProcessError",
            Self::InvalidArgument(_) => "ValidationError",
            Self::WrongType(_) => "WrongTypeError",
            Self::UnexpectedFile { .. } => "DataDirError",
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_offending_values() {
        let e = CoreError::RecordTooLarge { size: 10, max: 5 };
        assert_eq!(
            e.to_string(),
            "record of 10 bytes exceeds the maximum record size of 5 bytes"
        );
        assert_eq!(e.python_class(), "RecordTooLargeError");
        let c = CoreError::WalCorruption {
            segment: "wal/00000001.seg".into(),
            offset: 42,
            reason: CorruptionReason::CrcMismatch {
                stored: 1,
                computed: 2,
            },
        };
        assert!(c.to_string().contains("offset 42"));
        let r = CoreError::RecordOverReadLimit {
            segment: "wal/00000000000000000001.wal".into(),
            offset: 40,
            sequence: 2,
            size: 4000,
            max: 1024,
        };
        assert_eq!(
            r.to_string(),
            "record at sequence 2 in segment wal/00000000000000000001.wal (offset 40) is 4000 \
             bytes, above max_record_size 1024: the log was written with a larger limit; open \
             it with max_record_size >= 4000"
        );
        assert_eq!(r.python_class(), "RecordTooLargeError");
        assert!(c.to_string().contains("crc mismatch"));
    }
}
