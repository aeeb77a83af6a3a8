"""The base of the model's enums (run states, attempt outcomes, policy kinds...)."""

from __future__ import annotations

import enum


class WireEnum(enum.IntEnum):
    """An ``IntEnum`` whose values are the wire values, and whose members are all true.

    A plain ``IntEnum`` member with the value 0 is false, so ``RunState.SCHEDULED`` or
    ``AttemptOutcome.SUCCESS`` would pass for "none" in ``if attempt.outcome:`` or
    ``outcome and outcome.label``, where ``None`` (an attempt still open) is what is meant.
    """

    def __bool__(self) -> bool:
        return True
