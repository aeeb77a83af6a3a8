"""Recovery: rebuild the state from snapshot + WAL tail.

- :func:`~actionqueue.storage.recovery.bootstrap.bootstrap` opens a data directory and
  returns the authority with a :class:`~actionqueue.storage.recovery.bootstrap.RecoveryReport`;
- :class:`~actionqueue.storage.recovery.reducer.ReplayReducer` is the projection itself (the
  reducer replay and validation share).
"""

from __future__ import annotations

from actionqueue.storage.recovery.bootstrap import RecoveryReport, SkippedSnapshot, bootstrap
from actionqueue.storage.recovery.reducer import ReplayReducer

__all__ = ["RecoveryReport", "ReplayReducer", "SkippedSnapshot", "bootstrap"]
