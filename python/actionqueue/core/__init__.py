"""The domain model: ids, task specs and policies, run states, attempts, mutation commands.

Everything here is pure Python and validates on construction; values cross into the Rust core
as the plain wire tuples of ``docs/DESIGN.md`` (``to_wire()`` / ``from_wire()``).
"""

from __future__ import annotations

from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.task import (
    Backoff,
    CronPolicy,
    ExponentialBackoff,
    FixedBackoff,
    HoldPolicy,
    MisfireKind,
    MisfirePolicy,
    NoBackoff,
    OncePolicy,
    PolicyKind,
    RepeatPolicy,
    RetryOn,
    RunPolicy,
    TaskConstraints,
    TaskMetadata,
    TaskPayload,
    TaskSpec,
)
from actionqueue.core.time import from_millis, now_ms, to_duration_ms, to_millis

__all__ = [
    "AttemptId",
    "Backoff",
    "CronPolicy",
    "ExponentialBackoff",
    "FixedBackoff",
    "HoldPolicy",
    "MisfireKind",
    "MisfirePolicy",
    "NoBackoff",
    "OncePolicy",
    "PolicyKind",
    "RepeatPolicy",
    "RetryOn",
    "RunId",
    "RunPolicy",
    "TaskConstraints",
    "TaskId",
    "TaskMetadata",
    "TaskPayload",
    "TaskSpec",
    "from_millis",
    "now_ms",
    "to_duration_ms",
    "to_millis",
]
