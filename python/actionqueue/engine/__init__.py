"""The scheduling engine: derivation, promotion, selection, leases and concurrency keys.

Decisions are made here in Python; the state they read and write lives in the Rust
projection behind the mutation authority.

The functions here are pure (an injected clock, no I/O): they take runs and policies and return
results or lists of mutation commands, which the caller submits as one atomic batch.

>>> from actionqueue.core import RunPolicy, TaskId
>>> from actionqueue.engine import ManualClock, derive_runs
>>> clock = ManualClock(0)
>>> derive_runs(clock, TaskId.new(), RunPolicy.repeat(3, 1.0), 0, clock.now()).derived_total
3
"""

from __future__ import annotations

from actionqueue.engine.concurrency import (
    ALWAYS_HOLDING_STATES,
    RETRY_HOLDING_STATES,
    holds_key,
    key_held_by,
    key_holders,
    may_lease,
)
from actionqueue.engine.derive import (
    DEFAULT_GRACE_MS,
    FOLD_COUNT_LIMIT,
    DerivationResult,
    FoldedOccurrences,
    derive_runs,
    effective_grace_ms,
    plan_task_create,
    run_create_commands,
)
from actionqueue.engine.dispatch import (
    COMMANDS_PER_DISPATCH,
    dispatched_attempts,
    plan_dispatch,
    plan_finish,
)

# Last: the Engine wires everything above to the authority.
from actionqueue.engine.engine import Dispatch, Engine, Finish, TickReport
from actionqueue.engine.index import RunIndex
from actionqueue.engine.lease import (
    DEFAULT_LEASE_MS,
    LEASE_TIMEOUT_MARGIN_MS,
    Lease,
    extend,
    heartbeat_interval_ms,
    is_expired,
    lease_duration_ms,
    plan_expiry,
    plan_expiry_sweep,
    plan_heartbeat,
    plan_release,
)
from actionqueue.engine.ports import AuthorityPort, TaskRecordLike
from actionqueue.engine.scheduler import (
    MisfirePlan,
    PlannedTransition,
    PromotionPlan,
    is_misfire,
    next_wakeup,
    plan_misfire,
    plan_retry_promotions,
    plan_task_promotion,
    retry_ready_at,
)
from actionqueue.engine.selection import (
    Candidate,
    DefaultSelector,
    Selector,
    default_order_key,
    select_ready,
)
from actionqueue.engine.time import Clock, ManualClock, SystemClock

__all__ = [
    "ALWAYS_HOLDING_STATES",
    "COMMANDS_PER_DISPATCH",
    "DEFAULT_GRACE_MS",
    "DEFAULT_LEASE_MS",
    "FOLD_COUNT_LIMIT",
    "LEASE_TIMEOUT_MARGIN_MS",
    "RETRY_HOLDING_STATES",
    "AuthorityPort",
    "Candidate",
    "Clock",
    "DefaultSelector",
    "DerivationResult",
    "Dispatch",
    "Engine",
    "Finish",
    "FoldedOccurrences",
    "Lease",
    "ManualClock",
    "MisfirePlan",
    "PlannedTransition",
    "PromotionPlan",
    "RunIndex",
    "Selector",
    "SystemClock",
    "TaskRecordLike",
    "TickReport",
    "default_order_key",
    "derive_runs",
    "dispatched_attempts",
    "effective_grace_ms",
    "extend",
    "heartbeat_interval_ms",
    "holds_key",
    "is_expired",
    "is_misfire",
    "key_held_by",
    "key_holders",
    "lease_duration_ms",
    "may_lease",
    "next_wakeup",
    "plan_dispatch",
    "plan_expiry",
    "plan_expiry_sweep",
    "plan_finish",
    "plan_heartbeat",
    "plan_misfire",
    "plan_release",
    "plan_retry_promotions",
    "plan_task_create",
    "plan_task_promotion",
    "retry_ready_at",
    "run_create_commands",
    "select_ready",
]
