//! The domain values that are persisted: task specs, run states, attempt outcomes.
//!
//! These types are the contract between the Python domain model (`actionqueue.core`), the WAL
//! codec and the replay reducer. Their serde field order *is* the on-disk encoding order
//! (postcard, see `docs/FORMAT.md`): append new fields only through new event variants or new
//! format versions, never by reordering.
//!
//! Times are `i64` milliseconds since the Unix epoch (UTC). Ids are 16 raw UUID bytes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// 16 raw bytes of a UUID (task, run or attempt id). Nil (all zero) is never valid.
pub type Id = [u8; 16];
/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

pub const NIL_ID: Id = [0u8; 16];

/// The nine run states. The discriminant is the stable wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum RunState {
    Scheduled = 0,
    Ready = 1,
    Leased = 2,
    Running = 3,
    RetryWait = 4,
    Suspended = 5,
    Completed = 6,
    Failed = 7,
    Canceled = 8,
}

impl RunState {
    pub const ALL: [RunState; 9] = [
        Self::Scheduled,
        Self::Ready,
        Self::Leased,
        Self::Running,
        Self::RetryWait,
        Self::Suspended,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
    ];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }

    /// The legal transition table of SPEC §4. Self-transitions are never legal.
    pub fn can_transition_to(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Scheduled, Ready | Canceled)
                | (Ready, Leased | Canceled)
                | (Leased, Ready | Running | Canceled)
                | (
                    Running,
                    RetryWait | Suspended | Completed | Failed | Canceled
                )
                | (RetryWait, Ready | Failed | Canceled)
                | (Suspended, Ready | Canceled)
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Ready => "Ready",
            Self::Leased => "Leased",
            Self::Running => "Running",
            Self::RetryWait => "RetryWait",
            Self::Suspended => "Suspended",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }
}

/// How one attempt ended. The discriminant is the stable wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum AttemptOutcome {
    Success = 0,
    RetryableFailure = 1,
    TerminalFailure = 2,
    Timeout = 3,
    /// Does not count toward `max_attempts`.
    Suspended = 4,
    /// The runtime could not learn the outcome (lease expired, process crashed).
    Lost = 5,
    /// The run was canceled while the attempt was open (closed by the reducer).
    Canceled = 6,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 7] = [
        Self::Success,
        Self::RetryableFailure,
        Self::TerminalFailure,
        Self::Timeout,
        Self::Suspended,
        Self::Lost,
        Self::Canceled,
    ];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// Whether an attempt with this outcome counts toward `max_attempts`.
    pub fn counts_toward_cap(self) -> bool {
        !matches!(self, Self::Suspended)
    }
}

/// What to do with occurrences that fell due while the process was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum MisfireKind {
    /// Run every missed occurrence (optionally capped: the most recent `cap` run, the rest are
    /// canceled with a reason in their history).
    CatchUp = 0,
    /// One run for the whole missed window.
    Coalesce = 1,
    /// Drop missed occurrences, run the next one.
    Skip = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Misfire {
    pub kind: MisfireKind,
    /// For `CatchUp`: at most this many missed occurrences run.
    pub cap: Option<u32>,
    /// An occurrence late by at most this much is not a misfire.
    pub grace_ms: Option<Millis>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PolicyKind {
    /// One run at the schedule origin.
    Once,
    /// `count` runs at `origin + k * interval_ms`, k = 0..count-1.
    Repeat { count: u32, interval_ms: Millis },
    /// Cron occurrences after the origin, derived in a rolling window of `window` non-terminal
    /// runs, never more than `max_occurrences` in total.
    Cron {
        expression: String,
        timezone: String,
        max_occurrences: Option<u32>,
        window: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunPolicy {
    pub kind: PolicyKind,
    pub misfire: Misfire,
}

/// `RunPolicy.once()`'s default: one run, missed occurrences caught up.
impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            kind: PolicyKind::Once,
            misfire: Misfire {
                kind: MisfireKind::CatchUp,
                cap: None,
                grace_ms: None,
            },
        }
    }
}

impl RunPolicy {
    /// Total runs the policy implies, or `None` when unbounded (cron without a cap).
    pub fn total_runs(&self) -> Option<u64> {
        match &self.kind {
            PolicyKind::Once => Some(1),
            PolicyKind::Repeat { count, .. } => Some(u64::from(*count)),
            PolicyKind::Cron {
                max_occurrences, ..
            } => max_occurrences.map(u64::from),
        }
    }
}

/// Whether a run keeps its concurrency key while waiting to retry or suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum HoldPolicy {
    HoldDuringRetry = 0,
    ReleaseOnRetry = 1,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backoff {
    /// Retry immediately.
    None,
    Fixed {
        delay_ms: Millis,
    },
    /// `min(cap, base * 2^(n-1))`, then +/- `jitter_ppm` parts per million of it.
    Exponential {
        base_ms: Millis,
        cap_ms: Millis,
        jitter_ppm: u32,
    },
}

/// Which failures are retried (before `max_attempts` is reached).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetryOn {
    pub timeout: bool,
    pub lost: bool,
    /// Qualified names of exception types that fail the run terminally.
    pub terminal_errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Constraints {
    pub max_attempts: u32,
    pub timeout_ms: Option<Millis>,
    pub concurrency_key: Option<String>,
    pub hold: HoldPolicy,
    pub backoff: Backoff,
    pub retry_on: RetryOn,
}

/// The defaults of Python's `TaskConstraints()`: one attempt, no timeout, no key, no backoff.
impl Default for Constraints {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            timeout_ms: None,
            concurrency_key: None,
            hold: HoldPolicy::HoldDuringRetry,
            backoff: Backoff::None,
            retry_on: RetryOn {
                timeout: true,
                lost: true,
                terminal_errors: vec![],
            },
        }
    }
}

/// `TaskMetadata()`'s defaults: priority 0, no tags, no description.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Metadata {
    /// Higher runs first.
    pub priority: i32,
    pub tags: Vec<String>,
    pub description: Option<String>,
}

/// What every task of one template shares: handler, run policy, constraints and metadata.
///
/// A [`TaskSpec`] holds it behind an [`Arc`], so the thousand tasks of one `submit_many` (or
/// of a replayed log, see the reducer's interning) keep one copy: a live task costs its id,
/// payload and a pointer instead of ~370 bytes of policy and strings. It is immutable once
/// shared; [`TaskSpec::shape_mut`] copies it on write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskShape {
    /// Routing name: which handler runs it.
    pub handler: Option<String>,
    pub policy: RunPolicy,
    pub constraints: Constraints,
    pub metadata: Metadata,
}

/// The last shape seen, so that equal consecutive shapes are kept once. Tasks come in runs of
/// one template (a `submit_many`, a handler's plain submits, a record of event tuples, the log
/// replaying any of them), and a converted or decoded spec brings its own copy.
#[derive(Debug, Default)]
pub struct ShapeCache(Option<Arc<TaskShape>>);

impl ShapeCache {
    /// A freshly converted shape: the cached one when equal (no `Arc` allocated), else this
    /// one, which becomes the cached one.
    #[inline]
    pub fn intern(&mut self, shape: TaskShape) -> Arc<TaskShape> {
        match &self.0 {
            Some(last) if **last == shape => Arc::clone(last),
            _ => Arc::clone(self.0.insert(Arc::new(shape))),
        }
    }

    /// Makes `shape` the cached one when it is a spec's own copy of an equal shape. A shape
    /// other specs hold already (a `submit_many` template: the whole batch shares it) is
    /// adopted as it is, without comparing: the rest of its batch is then found by pointer.
    #[inline]
    pub fn share(&mut self, shape: &mut Arc<TaskShape>) {
        match &self.0 {
            Some(last) if Arc::ptr_eq(last, shape) => {}
            Some(last) if Arc::strong_count(shape) == 1 && **last == **shape => {
                *shape = Arc::clone(last);
            }
            _ => self.0 = Some(Arc::clone(shape)),
        }
    }
}

/// A task's definition. On the wire (postcard, snapshots) it is one struct with the fields
/// in this order — id, handler, payload, content_type, policy, constraints, metadata,
/// dedupe_key (FORMAT.md) — whatever the in-memory split into own fields and a shared
/// [`TaskShape`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskSpec {
    pub id: Id,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    /// A second live task with the same key is refused (the caller gets the existing one).
    pub dedupe_key: Option<String>,
    pub shape: Arc<TaskShape>,
}

impl TaskSpec {
    /// The shape for changing it: copied first when other specs share it.
    pub fn shape_mut(&mut self) -> &mut TaskShape {
        Arc::make_mut(&mut self.shape)
    }
}

/// The wire layout of a [`TaskSpec`], borrowed for encoding.
#[derive(Serialize)]
#[serde(rename = "TaskSpec")]
struct TaskSpecRef<'a> {
    id: &'a Id,
    handler: &'a Option<String>,
    /// Encoded as postcard bytes (varint length, then the bytes): the very layout of a
    /// sequence of `u8`, written and read in one copy instead of byte by byte.
    #[serde(serialize_with = "byte_vec::serialize")]
    payload: &'a [u8],
    content_type: &'a Option<String>,
    policy: &'a RunPolicy,
    constraints: &'a Constraints,
    metadata: &'a Metadata,
    dedupe_key: &'a Option<String>,
}

/// The wire layout of a [`TaskSpec`], owned for decoding.
#[derive(Deserialize)]
#[serde(rename = "TaskSpec")]
struct TaskSpecWire {
    id: Id,
    handler: Option<String>,
    #[serde(with = "byte_vec")]
    payload: Vec<u8>,
    content_type: Option<String>,
    policy: RunPolicy,
    constraints: Constraints,
    metadata: Metadata,
    dedupe_key: Option<String>,
}

impl Serialize for TaskSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let shape = &*self.shape;
        TaskSpecRef {
            id: &self.id,
            handler: &shape.handler,
            payload: self.payload.as_slice(),
            content_type: &self.content_type,
            policy: &shape.policy,
            constraints: &shape.constraints,
            metadata: &shape.metadata,
            dedupe_key: &self.dedupe_key,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = TaskSpecWire::deserialize(d)?;
        Ok(TaskSpec {
            id: w.id,
            payload: w.payload,
            content_type: w.content_type,
            dedupe_key: w.dedupe_key,
            shape: Arc::new(TaskShape {
                handler: w.handler,
                policy: w.policy,
                constraints: w.constraints,
                metadata: w.metadata,
            }),
        })
    }
}

/// `Vec<u8>` through serde's bytes methods. In postcard a byte string and a sequence of `u8`
/// have the same layout (varint length, then one raw byte per element), so this changes no
/// byte on disk, only the speed (one `extend_from_slice` instead of a call per byte). Decoding
/// also accepts a sequence, for other serde formats.
mod byte_vec {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(ByteVec)
    }

    struct ByteVec;

    impl<'de> Visitor<'de> for ByteVec {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Never trust a size hint for the allocation (decoding untrusted bytes).
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod byte_vec_tests {
    /// The old field (a plain `Vec<u8>`, serialized as a sequence).
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct AsSeq(Vec<u8>);

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct AsBytes(#[serde(with = "super::byte_vec")] Vec<u8>);

    #[test]
    fn bytes_and_sequences_of_u8_have_one_postcard_layout() {
        for n in [0usize, 1, 127, 128, 300, 70_000] {
            let v: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            let old = postcard::to_allocvec(&AsSeq(v.clone())).unwrap();
            let new = postcard::to_allocvec(&AsBytes(v.clone())).unwrap();
            assert_eq!(old, new, "length {n}");
            assert_eq!(postcard::from_bytes::<AsBytes>(&old).unwrap().0, v);
            assert_eq!(postcard::from_bytes::<AsSeq>(&new).unwrap().0, v);
        }
        // A length prefix longer than the input is an error, not an allocation.
        assert!(postcard::from_bytes::<AsBytes>(&[0xff, 0xff, 0xff, 0x0f, 1, 2]).is_err());
    }
}
