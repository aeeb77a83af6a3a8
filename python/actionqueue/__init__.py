"""actionqueue: a durable, embedded task queue and scheduler with a Rust write-ahead-log core.

The domain model is re-exported here for short imports; the full module paths follow the seed
(``actionqueue.core.task.task_spec.TaskSpec``, ``actionqueue.core.mutation.DurabilityPolicy``,
``actionqueue.core.run.state.RunState``, ...).

>>> from actionqueue import RunPolicy, TaskId, TaskPayload, TaskSpec
>>> spec = TaskSpec(TaskId.new(), TaskPayload(b"hello"), RunPolicy.once())
>>> spec.run_policy.total_runs()
1
"""

from __future__ import annotations

from actionqueue import errors
from actionqueue.core.ids import AttemptId, RunId, TaskId
from actionqueue.core.mutation import DurabilityPolicy
from actionqueue.core.run.attempt import AttemptOutcome
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import Backoff, HoldPolicy, RetryOn, TaskConstraints
from actionqueue.core.task.metadata import TaskMetadata
from actionqueue.core.task.run_policy import MisfirePolicy, RunPolicy
from actionqueue.core.task.task_spec import TaskPayload, TaskSpec
from actionqueue.engine.time import ManualClock, SystemClock
from actionqueue.errors import ActionQueueError
from actionqueue.runtime.api import Cancelled, Fail, Retry, Suspend, every, exponential, fixed
from actionqueue.runtime.queue import ActionQueue

__version__ = "0.1.0"

__all__ = [
    # runtime facade (numbers are seconds here: see actionqueue.runtime.units)
    "ActionQueue",
    "ActionQueueError",
    "AttemptId",
    "AttemptOutcome",
    "Backoff",
    "Cancelled",
    "DurabilityPolicy",
    "Fail",
    "HoldPolicy",
    "ManualClock",
    "MisfirePolicy",
    "Retry",
    "RetryOn",
    "RunId",
    "RunPolicy",
    "RunState",
    "Suspend",
    "SystemClock",
    "TaskConstraints",
    "TaskId",
    "TaskMetadata",
    "TaskPayload",
    "TaskSpec",
    "__version__",
    "errors",
    "every",
    "exponential",
    "fixed",
]
