//! WAL events: one per mutation command of SPEC §5.
//!
//! A WAL record holds one event or an atomic batch of them; event *i* of a record whose first
//! sequence is *s* has sequence *s + i*. Every event carries `at`, the command's timestamp.
//!
//! Compatibility: the postcard encoding tags each variant with its index (a varint), so new
//! event kinds are added **only at the end** of this enum; old logs keep decoding. An unknown
//! tag is a clean decode error, never a panic.

use serde::{Deserialize, Serialize};

use crate::model::{AttemptOutcome, Id, Millis, RunState, TaskSpec};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// Creates a task. `origin` is the resolved schedule origin its runs derive from.
    /// (Boxed only to keep `Event` small; the encoding is the same as unboxed.)
    TaskCreate {
        spec: Box<TaskSpec>,
        origin: Millis,
        at: Millis,
    },
    /// Creates run number `ordinal` (0-based, per task) in state Scheduled.
    RunCreate {
        run_id: Id,
        task_id: Id,
        ordinal: u32,
        scheduled_at: Millis,
        at: Millis,
    },
    /// Moves a run from `from` (must be its current state) to `to` (must be legal).
    /// `not_before` is required entering RetryWait (when it may become Ready again).
    /// `reason` is free text kept in the run's history (misfire, lease expiry, cancel...).
    RunTransition {
        run_id: Id,
        from: RunState,
        to: RunState,
        not_before: Option<Millis>,
        reason: Option<String>,
        at: Millis,
    },
    /// Opens an attempt; the run must be Running with no open attempt.
    AttemptStart {
        run_id: Id,
        attempt_id: Id,
        at: Millis,
    },
    /// Closes the open attempt `attempt_id` with its outcome.
    AttemptFinish {
        run_id: Id,
        attempt_id: Id,
        outcome: AttemptOutcome,
        error: Option<String>,
        output: Option<Vec<u8>>,
        at: Millis,
    },
    /// Grants a lease to `owner` until `expires_at`; the run must be Leased with no lease.
    LeaseAcquire {
        run_id: Id,
        owner: String,
        expires_at: Millis,
        at: Millis,
    },
    /// Extends the owner's lease (never shortens: the later expiry wins).
    LeaseHeartbeat {
        run_id: Id,
        owner: String,
        expires_at: Millis,
        at: Millis,
    },
    /// Records that the owner's lease ran out (`at >= expires_at`); removes it.
    LeaseExpire {
        run_id: Id,
        owner: String,
        at: Millis,
    },
    /// The owner gives the lease back; removes it.
    LeaseRelease {
        run_id: Id,
        owner: String,
        at: Millis,
    },
    /// Cancels the task and every non-terminal run of it.
    TaskCancel {
        task_id: Id,
        reason: Option<String>,
        at: Millis,
    },
    EnginePause {
        at: Millis,
    },
    EngineResume {
        at: Millis,
    },
    /// Retention: forgets terminal runs whose last change is before `before`, and finished
    /// tasks left with no runs.
    Prune {
        before: Millis,
        at: Millis,
    },
}

impl Event {
    pub fn at(&self) -> Millis {
        match self {
            Self::TaskCreate { at, .. }
            | Self::RunCreate { at, .. }
            | Self::RunTransition { at, .. }
            | Self::AttemptStart { at, .. }
            | Self::AttemptFinish { at, .. }
            | Self::LeaseAcquire { at, .. }
            | Self::LeaseHeartbeat { at, .. }
            | Self::LeaseExpire { at, .. }
            | Self::LeaseRelease { at, .. }
            | Self::TaskCancel { at, .. }
            | Self::EnginePause { at }
            | Self::EngineResume { at }
            | Self::Prune { at, .. } => *at,
        }
    }

    /// Stable kind name (used in dumps and error messages).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TaskCreate { .. } => "TaskCreate",
            Self::RunCreate { .. } => "RunCreate",
            Self::RunTransition { .. } => "RunTransition",
            Self::AttemptStart { .. } => "AttemptStart",
            Self::AttemptFinish { .. } => "AttemptFinish",
            Self::LeaseAcquire { .. } => "LeaseAcquire",
            Self::LeaseHeartbeat { .. } => "LeaseHeartbeat",
            Self::LeaseExpire { .. } => "LeaseExpire",
            Self::LeaseRelease { .. } => "LeaseRelease",
            Self::TaskCancel { .. } => "TaskCancel",
            Self::EnginePause { .. } => "EnginePause",
            Self::EngineResume { .. } => "EngineResume",
            Self::Prune { .. } => "Prune",
        }
    }
}
