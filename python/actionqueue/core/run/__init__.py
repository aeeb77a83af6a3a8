"""Runs: states and their transition table, attempts and the retry decision, ``RunInstance``.

Seed module paths: ``actionqueue.core.run.state``, ``.transitions``, ``.run_instance``; attempt
outcomes and the retry decision live in ``actionqueue.core.run.attempt``.
"""

from __future__ import annotations

from actionqueue.core.run.attempt import (
    AttemptOutcome,
    RetryClassification,
    counts_toward_cap,
    decide,
)
from actionqueue.core.run.run_instance import AttemptRecord, Lease, RunInstance, StateChange
from actionqueue.core.run.state import TERMINAL_STATES, RunState, is_terminal
from actionqueue.core.run.transitions import (
    TRANSITIONS,
    allowed_targets,
    is_valid_transition,
    validate_transition,
)

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "AttemptOutcome",
    "AttemptRecord",
    "Lease",
    "RetryClassification",
    "RunInstance",
    "RunState",
    "StateChange",
    "allowed_targets",
    "counts_toward_cap",
    "decide",
    "is_terminal",
    "is_valid_transition",
    "validate_transition",
]
