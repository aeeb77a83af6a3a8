"""Concurrency-key gate rules (SPEC §8, DESIGN "Concurrency-key gate"), as pure functions.

A run *holds* its task's concurrency key while it is Leased or Running, and — under
``HoldPolicy.HOLD_DURING_RETRY`` (the default) — while it is in RetryWait or Suspended. It never
holds it in Scheduled, Ready or a terminal state, so every terminal path (RetryWait → Failed,
cancellation, completion) releases it. At most one run per key may hold it; a run may enter
Leased only when its key is free or already held by itself. (Selection, not the gate, puts a
due retry under ``HOLD_DURING_RETRY`` ahead of the other Ready runs of its key: the core's
``ready_candidates`` offers it as the key's candidate.)

The Rust reducer enforces the same rules on durable state (so the gate survives restarts); this
module is the Python model of them, used by selection and by the property tests.

>>> from actionqueue.core import HoldPolicy, RunState
>>> holds_key(RunState.RETRY_WAIT, HoldPolicy.HOLD_DURING_RETRY)
True
>>> holds_key(RunState.RETRY_WAIT, HoldPolicy.RELEASE_ON_RETRY)
False
>>> holds_key(RunState.FAILED, HoldPolicy.HOLD_DURING_RETRY)
False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from actionqueue.core.ids import RunId
from actionqueue.core.run.run_instance import RunInstance
from actionqueue.core.run.state import RunState
from actionqueue.core.task.constraints import HoldPolicy, TaskConstraints
from actionqueue.errors import ValidationError

__all__ = [
    "ALWAYS_HOLDING_STATES",
    "RETRY_HOLDING_STATES",
    "holds_key",
    "key_held_by",
    "key_holders",
    "may_lease",
]

#: States in which a run always holds its key.
ALWAYS_HOLDING_STATES: frozenset[RunState] = frozenset({RunState.LEASED, RunState.RUNNING})
#: States in which a run holds its key only under ``HOLD_DURING_RETRY``.
RETRY_HOLDING_STATES: frozenset[RunState] = frozenset({RunState.RETRY_WAIT, RunState.SUSPENDED})

_HOLD = HoldPolicy.HOLD_DURING_RETRY


def holds_key(state: RunState, hold_policy: HoldPolicy = _HOLD) -> bool:
    """Whether a run in ``state`` holds its concurrency key under ``hold_policy``."""
    if state in ALWAYS_HOLDING_STATES:
        return True
    return hold_policy is _HOLD and state in RETRY_HOLDING_STATES


def key_held_by(run: RunInstance, constraints: TaskConstraints) -> str | None:
    """The key ``run`` holds right now, or ``None`` (no key, or not in a holding state)."""
    key = constraints.concurrency_key
    if key is None or not holds_key(run.state, constraints.hold_policy):
        return None
    return key


def key_holders(runs: Iterable[tuple[RunInstance, TaskConstraints]]) -> dict[str, RunId]:
    """Which run holds each key, computed from durable state alone (the gate's definition).

    Raises :class:`~actionqueue.errors.ValidationError` if two runs hold the same key — the
    invariant the gate exists to keep.
    """
    holders: dict[str, RunId] = {}
    for run, constraints in runs:
        key = key_held_by(run, constraints)
        if key is None:
            continue
        other = holders.setdefault(key, run.run_id)
        if other != run.run_id:
            raise ValidationError(
                f"concurrency key {key!r} is held by two runs: {other} and {run.run_id} "
                f"(state {run.state})"
            )
    return holders


def may_lease(run_id: RunId, key: str | None, holders: Mapping[str, RunId]) -> bool:
    """Whether a run may enter Leased: it has no key, or the key is free or its own."""
    if key is None:
        return True
    holder = holders.get(key)
    return holder is None or holder == run_id
