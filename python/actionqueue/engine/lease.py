"""Lease math and the expiry sweep plan (SPEC §8 "lease", §11.5).

A lease is ``(owner, expires_at)``; it is **expired when** ``now >= expires_at`` (so at
``expires_at - 1`` it is live, at ``expires_at`` it is not, and a clock moved back makes an
expired lease live again until the sweep has acted). A heartbeat by the owner extends it and
never shortens it.

Durations
---------

* :data:`DEFAULT_LEASE_MS` (30 s) — long enough that a heartbeat every
  ``lease_ms // 3`` (:func:`heartbeat_interval_ms`) survives a couple of missed beats.
* A task with a ``timeout`` gets a lease of at least ``timeout + LEASE_TIMEOUT_MARGIN_MS`` (5 s),
  so even without heartbeats the attempt times out (and is recorded as Timeout) before its lease
  expires (and it would be recorded as Lost). :func:`lease_duration_ms` computes this.

The sweep
---------

The runtime cannot always learn an outcome: the worker died, the process crashed. The sweep
turns expired leases back into progress (:func:`plan_expiry`):

* expired **Leased** run → ``LeaseExpire`` + Leased → Ready (``"lease expired"``);
* expired **Running** run → ``LeaseExpire`` + ``AttemptFinish(Lost)`` + Running → the state
  :func:`~actionqueue.core.run.attempt.decide` picks (RetryWait with ``not_before`` from the
  task's backoff, or Failed when attempts are used up or Lost is not retryable).

A Leased/Running run with *no* lease (a crash between records) is treated as expired; the
commands then omit ``LeaseExpire``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Protocol

from actionqueue.core._validate import I64_MAX
from actionqueue.core.mutation import (
    AttemptFinishCommand,
    LeaseExpireCommand,
    LeaseHeartbeatCommand,
    LeaseReleaseCommand,
    MutationCommand,
    RunStateTransitionCommand,
)
from actionqueue.core.run.attempt import AttemptOutcome, decide
from actionqueue.core.run.run_instance import Lease, RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import TaskConstraints
from actionqueue.errors import LeaseError, ValidationError

__all__ = [
    "DEFAULT_LEASE_MS",
    "LEASE_TIMEOUT_MARGIN_MS",
    "Lease",
    "extend",
    "heartbeat_interval_ms",
    "is_expired",
    "lease_duration_ms",
    "plan_expiry",
    "plan_expiry_sweep",
    "plan_heartbeat",
    "plan_release",
]

#: Lease duration when nothing else says otherwise.
DEFAULT_LEASE_MS = 30_000
#: A lease outlives the task's timeout by at least this much.
LEASE_TIMEOUT_MARGIN_MS = 5_000

_LEASED = RunState.LEASED
_RUNNING = RunState.RUNNING
_READY = RunState.READY
_RETRY_WAIT = RunState.RETRY_WAIT
_LOST = AttemptOutcome.LOST


class _Rng(Protocol):
    def random(self) -> float: ...


def is_expired(lease: Lease, now: int) -> bool:
    """``now >= lease.expires_at``.

    >>> lease = Lease("worker-1", 31_000)
    >>> is_expired(lease, 30_999), is_expired(lease, 31_000)
    (False, True)
    """
    return now >= lease.expires_at


def extend(lease: Lease, now: int, duration_ms: int) -> Lease:
    """The lease after a heartbeat at ``now``: expiry ``max(old, now + duration_ms)``.

    >>> extend(Lease("w", 50_000), 10_000, 30_000)   # never shortens
    Lease(owner='w', expires_at=50000)
    >>> extend(Lease("w", 50_000), 40_000, 30_000)
    Lease(owner='w', expires_at=70000)
    """
    new = min(I64_MAX, now + duration_ms)
    return lease if new <= lease.expires_at else Lease(lease.owner, new)


def lease_duration_ms(
    constraints: TaskConstraints | None = None, default_ms: int = DEFAULT_LEASE_MS
) -> int:
    """The lease to grant for a task: ``default_ms``, or longer for a task whose timeout needs it.

    >>> from actionqueue.core import TaskConstraints
    >>> lease_duration_ms(), lease_duration_ms(TaskConstraints(timeout=60.0))
    (30000, 65000)
    """
    if type(default_ms) is not int or default_ms <= 0:
        raise ValidationError(f"default_ms must be an int > 0, got {default_ms!r}")
    timeout = None if constraints is None else constraints.timeout_ms
    if timeout is None:
        return default_ms
    return max(default_ms, timeout + LEASE_TIMEOUT_MARGIN_MS)


def heartbeat_interval_ms(lease_ms: int) -> int:
    """How often the owner should heartbeat a lease of ``lease_ms``: a third of it (>= 1 ms)."""
    return max(1, lease_ms // 3)


def plan_heartbeat(run: RunInstance, owner: str, now: int, lease_ms: int) -> LeaseHeartbeatCommand:
    """The heartbeat extending ``owner``'s lease on ``run`` to ``now + lease_ms``.

    Raises :class:`~actionqueue.errors.LeaseError` if the run has no lease, another owner
    holds it, or it has already expired (the sweep may have handed the run to someone else:
    the owner must stop working on it).
    """
    lease = run.lease
    if lease is None or lease.owner != owner:
        holder = "nobody" if lease is None else repr(lease.owner)
        raise LeaseError(f"run {run.run_id} is not leased by {owner!r} (held by {holder})")
    if now >= lease.expires_at:
        raise LeaseError(
            f"lease of {owner!r} on run {run.run_id} expired at {lease.expires_at} (now {now}); "
            "it can no longer be extended"
        )
    expires = extend(lease, now, lease_ms).expires_at
    return LeaseHeartbeatCommand(None, run.run_id, owner, expires, now)


def plan_release(
    run: RunInstance, owner: str, now: int, reason: str = "lease released"
) -> list[MutationCommand]:
    """``owner`` gives a Leased run back: ``LeaseRelease`` + Leased → Ready (with ``reason``).

    A Running run cannot be released: finish its attempt instead.
    """
    lease = run.lease
    if run.state is not _LEASED:
        raise LeaseError(
            f"only a Leased run can be released, run {run.run_id} is {run.state}; "
            "finish the attempt of a Running run instead"
        )
    if lease is None or lease.owner != owner:
        holder = "nobody" if lease is None else repr(lease.owner)
        raise LeaseError(f"run {run.run_id} is not leased by {owner!r} (held by {holder})")
    return [
        LeaseReleaseCommand(None, run.run_id, owner, now),
        RunStateTransitionCommand(None, run.run_id, _LEASED, _READY, now, reason=reason),
    ]


def plan_expiry(
    run: RunInstance,
    constraints: TaskConstraints,
    now: int,
    rng: _Rng | None = None,
) -> list[MutationCommand]:
    """The commands that recover ``run`` if its lease has expired at ``now``; ``[]`` otherwise.

    See the module docs. ``rng`` drives backoff jitter (pass a seeded ``random.Random`` for
    determinism).
    """
    state = run.state
    if state is not _LEASED and state is not _RUNNING:
        return []
    lease = run.lease
    if lease is not None and now < lease.expires_at:
        return []
    rid = run.run_id
    out: list[MutationCommand] = []
    if lease is not None:
        out.append(LeaseExpireCommand(None, rid, lease.owner, now))
    if state is _LEASED:
        out.append(
            RunStateTransitionCommand(None, rid, _LEASED, _READY, now, reason="lease expired")
        )
        return out
    counted = run.attempt_count
    attempt = run.current_attempt
    if attempt is not None:
        out.append(AttemptFinishCommand(None, rid, attempt, _LOST, now, error="lease expired"))
        target = decide(_LOST, counted, constraints.max_attempts, constraints.retry_on)
    else:
        # Running without an open attempt (crash between records): nothing was tried, so no
        # attempt is used up; retry at once while the cap allows it.
        target = _RETRY_WAIT if counted < constraints.max_attempts else RunState.FAILED
    not_before = None
    if target is _RETRY_WAIT:
        if attempt is None:
            not_before = now
        else:
            delay = constraints.retry.delay_for(max(1, counted), rng or random)
            not_before = min(I64_MAX, now + delay)
    reason = "lease expired: attempt lost"
    if target is RunState.FAILED:
        reason += f" ({counted} of {constraints.max_attempts} attempts used)"
    out.append(
        RunStateTransitionCommand(
            None, rid, _RUNNING, target, now, not_before=not_before, reason=reason
        )
    )
    return out


def plan_expiry_sweep(
    runs: Iterable[tuple[RunInstance, TaskConstraints]],
    now: int,
    rng: _Rng | None = None,
    *,
    ordered: bool = True,
) -> list[MutationCommand]:
    """:func:`plan_expiry` over many runs.

    With ``ordered=True`` (the lease-expiry index order: lease-less runs first, then by
    ``expires_at``) the scan stops at the first run whose lease is still live.
    """
    out: list[MutationCommand] = []
    for run, constraints in runs:
        cmds = plan_expiry(run, constraints, now, rng)
        if cmds:
            out.extend(cmds)
        elif ordered and run.lease is not None and now < run.lease.expires_at:
            break
    return out
