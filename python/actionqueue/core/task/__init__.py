"""The task model: :class:`TaskSpec` and its parts (payload, run policy, constraints, metadata)."""

from __future__ import annotations

from actionqueue.core.task.constraints import (
    Backoff,
    ExponentialBackoff,
    FixedBackoff,
    HoldPolicy,
    NoBackoff,
    RetryOn,
    TaskConstraints,
)
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import (
    CronPolicy,
    MisfireKind,
    MisfirePolicy,
    OncePolicy,
    PolicyKind,
    RepeatPolicy,
    RunPolicy,
)
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec

__all__ = [
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
    "RunPolicy",
    "TaskConstraints",
    "TaskMetadata",
    "TaskPayload",
    "TaskSpec",
]
