"""The legal run state transitions (SPEC §4).

The table is the single Python copy of the rule the Rust reducer enforces
(``RunState::can_transition_to`` in ``rust/model.rs``); the tests check both against an
independent literal copy of the SPEC table. Everything not listed is illegal, including every
self-transition and every exit from a terminal state.

====================  ===============================================
from                  to
====================  ===============================================
Scheduled             Ready, Canceled
Ready                 Leased, Canceled
Leased                Ready (lease lost/expired/released), Running, Canceled
Running               RetryWait, Suspended, Completed, Failed, Canceled
RetryWait             Ready, Failed, Canceled
Suspended             Ready, Canceled
Completed/Failed/     nothing
Canceled
====================  ===============================================

>>> is_valid_transition(RunState.READY, RunState.LEASED)
True
>>> validate_transition(RunState.COMPLETED, RunState.READY)
Traceback (most recent call last):
...
actionqueue.errors.InvalidTransitionError: invalid run state transition Completed -> Ready: \
Completed is terminal and has no exits
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from actionqueue.core.run.state import RunState
from actionqueue.errors import InvalidTransitionError

__all__ = ["TRANSITIONS", "allowed_targets", "is_valid_transition", "validate_transition"]

_S = RunState

_TABLE: dict[RunState, frozenset[RunState]] = {
    _S.SCHEDULED: frozenset({_S.READY, _S.CANCELED}),
    _S.READY: frozenset({_S.LEASED, _S.CANCELED}),
    _S.LEASED: frozenset({_S.READY, _S.RUNNING, _S.CANCELED}),
    _S.RUNNING: frozenset({_S.RETRY_WAIT, _S.SUSPENDED, _S.COMPLETED, _S.FAILED, _S.CANCELED}),
    _S.RETRY_WAIT: frozenset({_S.READY, _S.FAILED, _S.CANCELED}),
    _S.SUSPENDED: frozenset({_S.READY, _S.CANCELED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELED: frozenset(),
}

# All legal (from, to) pairs, so the hot-path check is one hash lookup.
_PAIRS: frozenset[tuple[RunState, RunState]] = frozenset(
    (src, dst) for src, targets in _TABLE.items() for dst in targets
)

#: Read-only view of the table: state -> the states it may move to.
TRANSITIONS: Mapping[RunState, frozenset[RunState]] = MappingProxyType(_TABLE)


def is_valid_transition(from_state: RunState, to_state: RunState) -> bool:
    """Whether a run in ``from_state`` may move to ``to_state``. Self-transitions never may."""
    return (from_state, to_state) in _PAIRS


def allowed_targets(state: RunState) -> frozenset[RunState]:
    """The states a run in ``state`` may move to (empty for terminal states)."""
    try:
        return _TABLE[state]
    except (KeyError, TypeError):
        return _TABLE[RunState.from_wire(state, "state")]


def validate_transition(from_state: RunState, to_state: RunState) -> None:
    """Raise :class:`~actionqueue.errors.InvalidTransitionError` unless the move is legal.

    The message names both states and what the source state may move to instead.
    """
    if (from_state, to_state) in _PAIRS:
        return
    # Slow path only: plain int wire values are accepted (RunState is an IntEnum, so legal int
    # pairs already passed above); anything else is a type error naming the argument.
    from_state = RunState.from_wire(from_state, "from_state")
    to_state = RunState.from_wire(to_state, "to_state")
    targets = _TABLE[from_state]
    if from_state == to_state:
        why = "a run cannot transition to the state it is already in"
    elif not targets:
        why = f"{from_state} is terminal and has no exits"
    else:
        allowed = ", ".join(str(s) for s in sorted(targets))
        why = f"{from_state} may only move to {allowed}"
    raise InvalidTransitionError(f"invalid run state transition {from_state} -> {to_state}: {why}")
